// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave migrate --qmp PATH tcp:HOST:PORT [--channels N]
 *                 [--max-bandwidth BYTES] [--downtime-limit MS]`
 *
 * Sets the migration capabilities (multifd when N > 1, events) and
 * parameters over QMP, issues `migrate`, follows `query-migrate` with a
 * one-line progress bar on a terminal (plain lines otherwise), prints a
 * summary and exits 0 only when the migration completed.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "launcher/commands.h"
#include "monitor/qmp-client.h"

#define MIG_TIMEOUT_MS	  30000
#define MIG_POLL_MS	  100
#define MIG_LINE_EVERY_MS 1000 /* plain-line output rate when not on a terminal */

struct mig_opts {
	const char *qmp;
	const char *uri;
	long long channels;	  /* 0: leave as is */
	long long max_bandwidth;  /* -1: leave as is */
	long long downtime_limit; /* -1: leave as is */
};

static void mig_usage(void)
{
	fprintf(stderr, "usage: cleave migrate --qmp PATH tcp:HOST:PORT [--channels N]\n"
			"                      [--max-bandwidth BYTES] [--downtime-limit MS]\n");
}

static long long mig_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs @cmd; on an error reply prints it and returns -1.  *ret gets "return" (owned) if asked. */
static int mig_cmd(struct qmp_client *c, const char *cmd, json_t *args, json_t **ret)
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

static long long mig_int(json_t *o, const char *k)
{
	return json_integer_value(json_object_get(o, k));
}

static void mig_progress(json_t *info, int tty, long long *last_line)
{
	json_t *ram = json_object_get(info, "ram");
	const char *status = json_string_value(json_object_get(info, "status"));
	long long total = mig_int(ram, "total"), remaining = mig_int(ram, "remaining");
	long long xfer = mig_int(ram, "transferred");
	double mbps = json_number_value(json_object_get(ram, "mbps"));
	int pct = total ? (int)(100 * (total - remaining) / total) : 0;
	char bar[41];
	int i;

	if (pct < 0)
		pct = 0;
	if (pct > 100)
		pct = 100;
	if (tty) {
		for (i = 0; i < 40; i++)
			bar[i] = i < pct * 40 / 100 ? '#' : '.';
		bar[40] = '\0';
		fprintf(stderr, "\r[%s] %3d%% %-10s %8.1f MiB sent %8.1f Mbit/s pass %lld", bar,
			pct, status ? status : "?", (double)xfer / (1 << 20), mbps,
			mig_int(ram, "dirty-sync-count"));
		fflush(stderr);
	} else if (mig_now_ms() - *last_line >= MIG_LINE_EVERY_MS) {
		*last_line = mig_now_ms();
		printf("status=%s progress=%d%% transferred=%lld remaining=%lld mbps=%.1f\n",
		       status ? status : "?", pct, xfer, remaining, mbps);
		fflush(stdout);
	}
}

static void mig_summary(json_t *info)
{
	json_t *ram = json_object_get(info, "ram");
	long long total_ms = mig_int(info, "total-time");
	long long xfer = mig_int(ram, "transferred");
	json_t *err = json_object_get(info, "error-desc");

	printf("status: %s\n", json_string_value(json_object_get(info, "status")));
	printf("total time: %lld ms\n", total_ms);
	if (json_object_get(info, "downtime"))
		printf("downtime: %lld ms\n", mig_int(info, "downtime"));
	printf("transferred: %lld bytes (%.1f MiB)\n", xfer, (double)xfer / (1 << 20));
	if (total_ms > 0)
		printf("throughput: %.1f MiB/s\n",
		       (double)xfer / (1 << 20) * 1000.0 / (double)total_ms);
	if (err)
		printf("error: %s\n", json_string_value(err));
}

static int mig_parse(int argc, char **argv, struct mig_opts *o)
{
	static const struct option opts[] = {
		{"qmp", required_argument, NULL, 'q'},
		{"channels", required_argument, NULL, 'c'},
		{"max-bandwidth", required_argument, NULL, 'b'},
		{"downtime-limit", required_argument, NULL, 'd'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->max_bandwidth = o->downtime_limit = -1;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (c) {
		case 'q':
			o->qmp = optarg;
			break;
		case 'c':
			o->channels = strtoll(optarg, &end, 10);
			if (*end || o->channels < 1 || o->channels > 255)
				return -1;
			break;
		case 'b':
			o->max_bandwidth = strtoll(optarg, &end, 10);
			if (*end || o->max_bandwidth < 0)
				return -1;
			break;
		case 'd':
			o->downtime_limit = strtoll(optarg, &end, 10);
			if (*end || o->downtime_limit < 0)
				return -1;
			break;
		default:
			return -1;
		}
	}
	if (optind != argc - 1 || !o->qmp)
		return -1;
	o->uri = argv[optind];
	return 0;
}

int cmd_migrate_main(int argc, char **argv)
{
	long long last_line = 0;
	struct qmp_client *c = NULL;
	json_t *params, *info = NULL;
	struct mig_opts o;
	const char *status = NULL;
	int tty = isatty(STDERR_FILENO), ret, exit_status = 1;

	if (mig_parse(argc, argv, &o)) {
		mig_usage();
		return 2;
	}
	ret = qmp_client_connect(&c, o.qmp, MIG_TIMEOUT_MS);
	if (!ret)
		ret = qmp_client_negotiate(c, MIG_TIMEOUT_MS);
	if (ret) {
		fprintf(stderr, "cleave migrate: %s: %s\n", o.qmp, strerror(-ret));
		qmp_client_close(c);
		return 2;
	}
	if (mig_cmd(c, "migrate-set-capabilities",
		    json_pack("{s:[{s:s,s:b},{s:s,s:b}]}", "capabilities", "capability", "multifd",
			      "state", o.channels > 1, "capability", "events", "state", 1),
		    NULL))
		goto out;
	params = json_object();
	if (o.channels > 1)
		json_object_set_new(params, "multifd-channels", json_integer(o.channels));
	if (o.max_bandwidth >= 0)
		json_object_set_new(params, "max-bandwidth", json_integer(o.max_bandwidth));
	if (o.downtime_limit >= 0)
		json_object_set_new(params, "downtime-limit", json_integer(o.downtime_limit));
	if (json_object_size(params) == 0) {
		json_decref(params);
	} else if (mig_cmd(c, "migrate-set-parameters", params, NULL)) {
		goto out;
	}
	if (mig_cmd(c, "migrate", json_pack("{s:s}", "uri", o.uri), NULL))
		goto out;
	for (;;) {
		json_decref(info);
		info = NULL;
		if (mig_cmd(c, "query-migrate", NULL, &info))
			goto out;
		status = json_string_value(json_object_get(info, "status"));
		if (status && (!strcmp(status, "completed") || !strcmp(status, "failed") ||
			       !strcmp(status, "cancelled")))
			break;
		mig_progress(info, tty, &last_line);
		usleep(MIG_POLL_MS * 1000);
	}
	if (tty)
		fprintf(stderr, "\n");
	mig_summary(info);
	exit_status = !strcmp(status, "completed") ? 0 : 1;
out:
	json_decref(info);
	qmp_client_close(c);
	return exit_status;
}
