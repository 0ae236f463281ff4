// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave qmp [TLS options] PATH COMMAND ['{json args}']`: runs one QMP
 * command and prints the reply as pretty JSON; exit 1 on an error reply, 2
 * on a usage or connection failure (a TLS refusal included).
 * `cleave qmp [TLS options] PATH --events`: prints every event, one per
 * line, until the monitor closes the connection.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "launcher/commands.h"
#include "launcher/qmp-connect.h"
#include "monitor/qmp-client.h"

#define CMD_QMP_TIMEOUT_MS 30000

static void cmd_qmp_usage(void)
{
	fprintf(stderr,
		"usage: cleave qmp [TLS options] PATH COMMAND ['{json arguments}']\n"
		"       cleave qmp [TLS options] PATH --events\n"
		"PATH is a socket path, unix:PATH or tcp:HOST:PORT.\n"
		"TLS options (tcp: only, one of --tls-x509 and --tls-psk):\n" QMP_TLS_USAGE);
}

static int cmd_qmp_events(struct qmp_client *c)
{
	json_t *msg;
	char *text;
	int ret;

	for (;;) {
		ret = qmp_client_recv(c, &msg, -1);
		if (ret == -ECONNRESET)
			return 0; /* the monitor went away: the stream ends */
		if (ret) {
			fprintf(stderr, "cleave qmp: %s\n", strerror(-ret));
			return 2;
		}
		text = json_dumps(msg, JSON_COMPACT);
		json_decref(msg);
		if (text) {
			printf("%s\n", text);
			fflush(stdout);
		}
		free(text);
	}
}

/*
 * The options before PATH ('+': parsing stops at PATH, so that --events
 * and a command's JSON stay positional).  Returns optind, or -1.
 */
static int cmd_qmp_parse(int argc, char **argv, struct qmp_connect_opts *o)
{
	static const struct option opts[] = {
		QMP_TLS_LONG_OPTIONS,
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	optind = 1;
	while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1)
		if (!qmp_connect_option(o, c, optarg))
			return -1;
	if (qmp_connect_check(o, "cleave qmp"))
		return -1;
	return optind;
}

int cmd_qmp_main(int argc, char **argv)
{
	json_t *args = NULL, *reply = NULL;
	struct qmp_connect_opts o;
	struct qmp_client *c = NULL;
	json_error_t jerr;
	int ret, status = 2, first = cmd_qmp_parse(argc, argv, &o);

	if (first < 0 || argc - first < 2 || argc - first > 3) {
		cmd_qmp_usage();
		return 2;
	}
	argc -= first - 1;
	argv += first - 1;
	if (argc == 4) {
		args = json_loads(argv[3], 0, &jerr);
		if (!json_is_object(args)) {
			fprintf(stderr, "cleave qmp: arguments must be a JSON object: %s\n",
				args ? "not an object" : jerr.text);
			goto out;
		}
	}
	if (qmp_connect(&c, &o, argv[1], "cleave qmp", CMD_QMP_TIMEOUT_MS))
		goto out;
	if (!strcmp(argv[2], "--events")) {
		status = args ? 2 : cmd_qmp_events(c);
		goto out;
	}
	ret = qmp_client_execute(c, argv[2], args, &reply, CMD_QMP_TIMEOUT_MS);
	if (ret) {
		fprintf(stderr, "cleave qmp: %s: %s\n", argv[2], strerror(-ret));
		goto out;
	}
	json_dumpf(reply, stdout, JSON_INDENT(2));
	printf("\n");
	status = json_object_get(reply, "error") ? 1 : 0;
out:
	json_decref(reply);
	json_decref(args);
	qmp_client_close(c);
	return status;
}
