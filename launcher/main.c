// SPDX-License-Identifier: GPL-2.0-only
/* `cleave`: dispatches to a subcommand; each returns the process exit status. */
#include <stdio.h>
#include <string.h>

#include "launcher/commands.h"

struct cleave_cmd {
	const char *name;
	int (*main)(int argc, char **argv);
	const char *help;
};

static const struct cleave_cmd cleave_cmds[] = {
	{"run", cmd_run_main, "boot a VM as supervised processes"},
	{"qmp", cmd_qmp_main, "send one QMP command to a running VM, or follow its events"},
	{"migrate", cmd_migrate_main, "live-migrate a running VM, with progress"},
	{"demo", cmd_demo_main, "boot the embedded guest and live-migrate it on loopback"},
	{"check-host", cmd_check_host_main,
	 "check what this host offers cleave (KVM, memory, isolation)"},
};

#define CLEAVE_NR_CMDS (sizeof(cleave_cmds) / sizeof(cleave_cmds[0]))

static void cleave_usage(FILE *out)
{
	size_t i;

	fprintf(out, "Usage: cleave COMMAND [OPTIONS]\n\nCommands:\n");
	for (i = 0; i < CLEAVE_NR_CMDS; i++)
		fprintf(out, "  %-11s %s\n", cleave_cmds[i].name, cleave_cmds[i].help);
	fprintf(out, "\n'cleave COMMAND --help' describes a command's options.\n");
}

int main(int argc, char **argv)
{
	size_t i;

	if (argc < 2) {
		cleave_usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
		cleave_usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("cleave %s\n", CLEAVE_VERSION);
		return 0;
	}
	for (i = 0; i < CLEAVE_NR_CMDS; i++)
		if (!strcmp(argv[1], cleave_cmds[i].name))
			return cleave_cmds[i].main(argc - 1, argv + 1);
	fprintf(stderr, "cleave: unknown command '%s'\n", argv[1]);
	cleave_usage(stderr);
	return 2;
}
