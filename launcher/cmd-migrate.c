// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave migrate --qmp PATH tcp:HOST:PORT|file:PATH [--channels N]
 *                 [--max-bandwidth BYTES] [--downtime-limit MS]
 *                 [--reconnect-timeout MS] [--then cont|quit] [--postcopy]
 *                 [--tls-x509 DIR [--tls-hostname NAME] | --tls-psk FILE
 *                  [--tls-psk-identity NAME]]`
 *
 * The TLS options are the QMP connection's (PATH tcp:HOST:PORT); the
 * migration's own TLS is the VM's, set by `cleave run --migrate-tls-*`.
 *
 * Sets the migration capabilities (multifd when N > 1, events) and
 * parameters over QMP, issues `migrate` (and with --postcopy, the
 * postcopy-ram capability and `migrate-start-postcopy` at once: the
 * destination needs postcopy-ram set too), follows `query-migrate` with a
 * one-line progress bar on a terminal (plain lines otherwise), prints a
 * summary and exits 0 only when the migration completed (1: failed or
 * cancelled, or --then failed, 2: usage or no QMP, 3: switchover outcome
 * unknown).  A save to a file leaves the guest paused, as QEMU does;
 * --then cont runs it on, --then quit ends the VM.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher/commands.h"
#include "launcher/qmp-connect.h"
#include "migrator/mig-limits.h"
#include "monitor/qmp-client.h"

#define MIG_TIMEOUT_MS	  30000
#define MIG_POLL_MS	  100
#define MIG_LINE_EVERY_MS 1000 /* plain-line output rate when not on a terminal */
/*
 * While the launcher restarts a killed migrator, query-migrate fails for a
 * while; the migration itself waits up to the reconnect timeout (the
 * migrator's default is 10 s) for its peer, so we wait that long plus this.
 */
#define MIG_RECONNECT_DEFAULT_MS 10000
#define MIG_RESTART_GRACE_MS	 5000
#define MIG_EXIT_UNKNOWN	 3 /* x-switchover-unknown: the operator decides */

struct cli_opts {
	const char *qmp;
	const char *uri;
	long long channels;	      /* 0: leave as is */
	long long max_bandwidth;      /* -1: leave as is */
	long long downtime_limit;     /* -1: leave as is */
	long long reconnect_timeout;  /* -1: leave as is */
	const char *then;	      /* "cont", "quit" after a completed save, or NULL */
	bool postcopy;		      /* switch to postcopy at once */
	struct qmp_connect_opts conn; /* TLS to the QMP socket */
};

static void cli_usage(void)
{
	fprintf(stderr,
		"usage: cleave migrate --qmp PATH tcp:HOST:PORT|file:PATH [--channels N]\n"
		"                      [--max-bandwidth BYTES] [--downtime-limit MS]\n"
		"                      [--reconnect-timeout MS] [--then cont|quit] [--postcopy]\n"
		"                      [--tls-x509 DIR [--tls-hostname NAME]]\n"
		"                      [--tls-psk FILE [--tls-psk-identity NAME]]\n"
		"  file:PATH saves the VM (PATH in cleave run's --snapshot-dir); the guest\n"
		"  then stays paused unless --then cont (runs on) or quit (ends the VM)\n"
		"  --postcopy: the guest runs on the destination at once, its pages follow\n"
		"  (the destination needs the postcopy-ram capability: cleave qmp)\n"
		"TLS options, for a --qmp tcp:HOST:PORT (the migration's TLS is the "
		"VM's):\n" QMP_TLS_USAGE);
}

static long long cli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs @cmd; on an error reply prints it and returns -1.  *ret gets "return" (owned) if asked. */
static int cli_cmd(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret)
{
	json_t *reply = NULL, *err;
	int r = qmp_client_execute(c, cmd, args, &reply, MIG_TIMEOUT_MS);

	json_decref(args);
	if (r) {
		fprintf(stderr, "cleave migrate: %s: %s\n", cmd, strerror(-r));
		return -1;
	}
	err = json_object_get(reply, "error");
	if (err) {
		fprintf(stderr, "cleave migrate: %s: %s\n", cmd,
			json_string_value(json_object_get(err, "desc")));
		json_decref(reply);
		return -1;
	}
	if (ret)
		*ret = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	return 0;
}

static long long cli_int(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

/* " restarts 1 resumes 2" when the migration survived migrator restarts, else "". */
static void cli_resume_counts(json_t *info, char *buf, size_t len)
{
	long long restarts = cli_int(info, "x-cleave-restarts");
	long long resumes = cli_int(info, "x-cleave-resumes");

	buf[0] = '\0';
	if (restarts || resumes)
		snprintf(buf, len, " restarts %lld resumes %lld", restarts, resumes);
}

static void cli_progress(json_t *info, int tty, long long *last_line)
{
	json_t *ram = json_object_get(info, "ram");
	const char *status = json_string_value(json_object_get(info, "status"));
	long long total = cli_int(ram, "total"), remaining = cli_int(ram, "remaining");
	long long xfer = cli_int(ram, "transferred");
	double mbps = json_number_value(json_object_get(ram, "mbps"));
	int pct = total ? (int)(100 * (total - remaining) / total) : 0;
	char bar[41], counts[64];
	int i;

	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	cli_resume_counts(info, counts, sizeof(counts));
	if (tty) {
		for (i = 0; i < 40; i++)
			bar[i] = i < pct * 40 / 100 ? '#' : '.';
		bar[40] = '\0';
		fprintf(stderr, "\r[%s] %3d%% %-10s %8.1f MiB sent %8.1f Mbit/s pass %lld%s", bar,
			pct, status ? status : "?", (double)xfer / (1 << 20), mbps,
			cli_int(ram, "dirty-sync-count"), counts);
		fflush(stderr);
	} else if (cli_now_ms() - *last_line >= MIG_LINE_EVERY_MS) {
		*last_line = cli_now_ms();
		printf("status=%s progress=%d%% transferred=%lld remaining=%lld mbps=%.1f",
		       status ? status : "?", pct, xfer, remaining, mbps);
		if (counts[0])
			printf(" restarts=%lld resumes=%lld", cli_int(info, "x-cleave-restarts"),
			       cli_int(info, "x-cleave-resumes"));
		printf("\n");
		fflush(stdout);
	}
}

static void cli_summary(json_t *info)
{
	json_t *ram = json_object_get(info, "ram");
	long long total_ms = cli_int(info, "total-time");
	long long xfer = cli_int(ram, "transferred");
	json_t *err = json_object_get(info, "error-desc");

	printf("status: %s\n", json_string_value(json_object_get(info, "status")));
	printf("total time: %lld ms\n", total_ms);
	if (json_object_get(info, "downtime"))
		printf("downtime: %lld ms\n", cli_int(info, "downtime"));
	printf("transferred: %lld bytes (%.1f MiB)\n", xfer, (double)xfer / (1 << 20));
	if (total_ms > 0)
		printf("throughput: %.1f MiB/s\n",
		       (double)xfer / (1 << 20) * 1000.0 / (double)total_ms);
	/* Only when something was survived: a quiet migration keeps its short summary. */
	if (cli_int(info, "x-cleave-restarts") || cli_int(info, "x-cleave-resumes"))
		printf("restarts: %lld, resumes: %lld, resent: %lld bytes\n",
		       cli_int(info, "x-cleave-restarts"), cli_int(info, "x-cleave-resumes"),
		       cli_int(info, "x-cleave-resent-bytes"));
	if (err)
		printf("error: %s\n", json_string_value(err));
}

/* A non-negative decimal option value, or -1. */
static long long cli_parse_count(const char *arg)
{
	char *end;
	long long v;

	errno = 0;
	v = strtoll(arg, &end, 10);
	if (!*arg || *end || errno || v < 0)
		return -1;
	return v;
}

static int cli_parse(int argc, char **argv, struct cli_opts *o)
{
	char err[128];
	static const struct option opts[] = {
		{"qmp", required_argument, NULL, 'q'},
		{"channels", required_argument, NULL, 'c'},
		{"max-bandwidth", required_argument, NULL, 'b'},
		{"downtime-limit", required_argument, NULL, 'd'},
		{"reconnect-timeout", required_argument, NULL, 'r'},
		{"then", required_argument, NULL, 't'},
		{"postcopy", no_argument, NULL, 'p'},
		QMP_TLS_LONG_OPTIONS,
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	int c;

	memset(o, 0, sizeof(*o));
	o->max_bandwidth = o->downtime_limit = o->reconnect_timeout = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			o->qmp = optarg;
			break;
		case 'c':
			o->channels = cli_parse_count(optarg);
			if (mig_check_channels(o->channels, err, sizeof(err))) {
				fprintf(stderr, "cleave migrate: --channels: %s\n", err);
				return -1;
			}
			break;
		case 'b':
			o->max_bandwidth = cli_parse_count(optarg);
			if (o->max_bandwidth < 0)
				return -1;
			break;
		case 'd':
			o->downtime_limit = cli_parse_count(optarg);
			if (o->downtime_limit < 0)
				return -1;
			break;
		case 'r':
			o->reconnect_timeout = cli_parse_count(optarg);
			if (o->reconnect_timeout < 0)
				return -1;
			break;
		case 't':
			if (strcmp(optarg, "cont") && strcmp(optarg, "quit"))
				return -1;
			o->then = optarg;
			break;
		case 'p':
			o->postcopy = true;
			break;
		default:
			if (!qmp_connect_option(&o->conn, c, optarg))
				return -1;
			break;
		}
	}
	if (optind != argc - 1 || !o->qmp || qmp_connect_check(&o->conn, "cleave migrate"))
		return -1;
	o->uri = argv[optind];
	if (o->postcopy && !strncmp(o->uri, "file:", 5)) {
		fprintf(stderr, "cleave migrate: --postcopy is for a migration to another VM, not "
				"a save\n");
		return -1;
	}
	/* After a migration the guest runs on the destination: never here too. */
	if (o->then && strncmp(o->uri, "file:", 5)) {
		fprintf(stderr, "cleave migrate: --then is for a save (file:PATH): after a "
				"migration the guest runs on the destination\n");
		return -1;
	}
	return 0;
}

/* The parameters the options name, or NULL when none is given. */
static json_t *cli_params(const struct cli_opts *o)
{
	json_t *params = json_object();

	if (o->channels > 1)
		json_object_set_new(params, "multifd-channels", json_integer(o->channels));
	if (o->max_bandwidth >= 0)
		json_object_set_new(params, "max-bandwidth", json_integer(o->max_bandwidth));
	if (o->downtime_limit >= 0)
		json_object_set_new(params, "downtime-limit", json_integer(o->downtime_limit));
	if (o->reconnect_timeout >= 0)
		json_object_set_new(params, "x-reconnect-timeout",
				    json_integer(o->reconnect_timeout));
	if (json_object_size(params) == 0) {
		json_decref(params);
		return NULL;
	}
	return params;
}

static int cli_setup(struct qmp_client *c, const struct cli_opts *o)
{
	json_t *params;

	if (cli_cmd(c, "migrate-set-capabilities",
		    json_pack("{s:[{s:s,s:b},{s:s,s:b},{s:s,s:b}]}", "capabilities", "capability",
			      "multifd", "state", o->channels > 1, "capability", "events", "state",
			      1, "capability", "postcopy-ram", "state", o->postcopy),
		    NULL))
		return -1;
	params = cli_params(o);
	if (params && cli_cmd(c, "migrate-set-parameters", params, NULL))
		return -1;
	if (cli_cmd(c, "migrate", json_pack("{s:s}", "uri", o->uri), NULL))
		return -1;
	return o->postcopy ? cli_cmd(c, "migrate-start-postcopy", NULL, NULL) : 0;
}

/*
 * query-migrate, waiting out a migrator restart: an error reply is retried
 * until @grace_ms have passed since the last answer.  Returns the info
 * (owned) or NULL after printing why.
 */
static json_t *cli_query(struct qmp_client *c, long long grace_ms)
{
	long long since = cli_now_ms();
	json_t *reply = NULL, *err, *info;
	bool told = false;
	int r;

	for (;;) {
		r = qmp_client_execute(c, "query-migrate", NULL, &reply, MIG_TIMEOUT_MS);
		if (r) {
			fprintf(stderr, "cleave migrate: query-migrate: %s\n", strerror(-r));
			return NULL;
		}
		err = json_object_get(reply, "error");
		if (!err)
			break;
		if (cli_now_ms() - since >= grace_ms) {
			fprintf(stderr, "cleave migrate: query-migrate: %s\n",
				json_string_value(json_object_get(err, "desc")));
			json_decref(reply);
			return NULL;
		}
		if (!told)
			fprintf(stderr,
				"\ncleave migrate: query-migrate: %s (waiting for a restart)\n",
				json_string_value(json_object_get(err, "desc")));
		told = true;
		json_decref(reply);
		usleep(MIG_POLL_MS * 1000);
	}
	info = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	return info;
}

static bool cli_status_final(const char *status)
{
	return status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
			  !strcmp(status, "cancelled") || !strcmp(status, "x-switchover-unknown"));
}

/* The exit status for the last query-migrate, with advice when the operator must act. */
static int cli_outcome(const char *status)
{
	if (!strcmp(status, "completed"))
		return 0;
	if (strcmp(status, "x-switchover-unknown"))
		return 1;
	fprintf(stderr,
		"cleave migrate: the switchover's outcome is unknown: the source committed, then "
		"lost the destination.\n"
		"The guest is paused on the source.  Find out whether it runs on the destination,\n"
		"then run: cleave qmp PATH x-cleave-migrate-resolve "
		"'{\"run-on\": \"destination\"}'\n"
		"(or \"source\" to resume it on the source).  Never both.\n");
	return MIG_EXIT_UNKNOWN;
}

int cmd_migrate_main(int argc, char **argv)
{
	long long last_line = 0, grace_ms;
	struct qmp_client *c = NULL;
	json_t *info = NULL;
	struct cli_opts o;
	const char *status = NULL;
	int tty = isatty(STDERR_FILENO), exit_status = 1;

	if (cli_parse(argc, argv, &o)) {
		cli_usage();
		return 2;
	}
	grace_ms = (o.reconnect_timeout >= 0 ? o.reconnect_timeout : MIG_RECONNECT_DEFAULT_MS) +
		   MIG_RESTART_GRACE_MS;
	if (qmp_connect(&c, &o.conn, o.qmp, "cleave migrate", MIG_TIMEOUT_MS))
		return 2;
	if (cli_setup(c, &o))
		goto out;
	for (;;) {
		json_decref(info);
		info = cli_query(c, grace_ms);
		if (!info)
			goto out;
		status = json_string_value(json_object_get(info, "status"));
		if (cli_status_final(status))
			break;
		cli_progress(info, tty, &last_line);
		usleep(MIG_POLL_MS * 1000);
	}
	if (tty)
		fprintf(stderr, "\n");
	cli_summary(info);
	exit_status = cli_outcome(status);
	if (!exit_status && o.then) {
		if (cli_cmd(c, o.then, NULL, NULL))
			exit_status = 1;
		else
			fprintf(stderr, "%s\n",
				!strcmp(o.then, "cont") ? "the guest runs on" : "the VM quits");
	}
out:
	json_decref(info);
	qmp_client_close(c);
	return exit_status;
}
