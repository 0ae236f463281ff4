/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Subcommands of the `cleave` command; each takes its own argv (argv[0] is
 * the subcommand name) and returns the process exit status.
 */
#ifndef CLEAVE_LAUNCHER_COMMANDS_H
#define CLEAVE_LAUNCHER_COMMANDS_H

int cmd_run_main(int argc, char **argv);     /* launcher/run.c: boot a VM */
int cmd_qmp_main(int argc, char **argv);     /* launcher/cmd-qmp.c: one QMP command or --events */
int cmd_migrate_main(int argc, char **argv); /* launcher/cmd-migrate.c: migrate with progress */
int cmd_demo_main(int argc, char **argv);    /* launcher/demo.c: boot + live-migrate on loopback */
int cmd_check_host_main(int argc, char **argv); /* launcher/cmd-check-host.c: host checks */

#endif
