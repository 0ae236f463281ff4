// SPDX-License-Identifier: GPL-2.0-only
/*
 * human-monitor-command against in-test vcpu-proc and migrator RPC servers:
 * where each command line runs (backend, flags) and the text it returns.
 *
 * The expected texts are QEMU 7.2's: each reply line is what QEMU 7.2's
 * hmp_info_*() / monitor_parse_command() / help_cmd() print (taken from
 * QEMU's monitor/hmp-cmds.c, monitor/hmp.c, hmp-commands.hx and
 * hmp-commands-info.hx; no QEMU was run here) for the values the fake
 * backends give, with QEMU's "\n" -> "\r\n".  Where cleave differs, the
 * case says so.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-dispatch.h"
#include "proto/rpc.h"
#include "tests/unit/monitor/fake-backend.h"

struct hmp_env {
	struct fake_backend *fb;
	struct mon_ctx ctx;
};

static int hmp_setup(void **state)
{
	struct hmp_env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(fake_backend_start(&e->fb), 0);
	assert_int_equal(rpc_client_open(&e->ctx.rpc[MON_BACKEND_VCPU], e->fb->vcpu_rpc), 0);
	assert_int_equal(rpc_client_open(&e->ctx.rpc[MON_BACKEND_MIGRATOR], e->fb->mig_rpc), 0);
	e->ctx.timeout_ms = 300;
	e->ctx.name = "vm1";
	*state = e;
	return 0;
}

static int hmp_teardown(void **state)
{
	struct hmp_env *e = *state;

	rpc_client_close(e->ctx.rpc[MON_BACKEND_VCPU]);
	rpc_client_close(e->ctx.rpc[MON_BACKEND_MIGRATOR]);
	fake_backend_stop(e->fb);
	free(e);
	return 0;
}

/*
 * Parses @request as the server does, checks where it was routed, runs it
 * on this thread (the worker's job) and returns the reply line without CRLF.
 */
static char *hmp_run(struct hmp_env *e, const char *request, enum mon_backend want_backend,
		     unsigned want_flags)
{
	struct mon_result res = {0};
	struct mon_request req;
	size_t len;
	char *line;

	assert_int_equal(mon_request_parse(request, strlen(request), true, &req, &res), 0);
	assert_string_equal(req.cmd->name, "human-monitor-command");
	if (req.cmd->backend != want_backend || req.cmd->flags != want_flags)
		fail_msg("%s: routed to backend %d flags %u, want %d %u", request, req.cmd->backend,
			 req.cmd->flags, want_backend, want_flags);
	req.cmd->run(&e->ctx, req.args, &res);
	line = mon_reply_format_text(req.id_text, &res, &len);
	assert_non_null(line);
	line[len - 2] = '\0';
	mon_request_fini(&req);
	mon_result_fini(&res);
	return line;
}

/* Any QMP command through the same path: its reply line (argument errors included). */
static char *qmp_run(struct hmp_env *e, const char *request)
{
	struct mon_result res = {0};
	struct mon_request req;
	size_t len;
	char *line;

	if (!mon_request_parse(request, strlen(request), true, &req, &res))
		req.cmd->run(&e->ctx, req.args, &res);
	line = mon_reply_format_text(req.id_text, &res, &len);
	assert_non_null(line);
	line[len - 2] = '\0';
	mon_request_fini(&req);
	mon_result_fini(&res);
	return line;
}

struct hmp_case {
	const char *args;	  /* human-monitor-command's arguments */
	enum mon_backend backend; /* where it must run */
	unsigned flags;		  /* MON_CMD_QUIT for quit */
	const char *want;	  /* the whole reply line */
};

#define HMP(text) "{\"return\": \"" text "\"}"
#define NONE	  MON_BACKEND_NONE
#define VCPU	  MON_BACKEND_VCPU
#define MIG	  MON_BACKEND_MIGRATOR

/* HMP "info migrate": its output, in QMP's reply. */
static char *hmp_info_migrate(struct hmp_env *e)
{
	return hmp_run(e,
		       "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		       "\"info migrate\"}}",
		       MIG, 0);
}

/* In order: stop comes before the status it changes. */
static const struct hmp_case hmp_cases[] = {
	{"{\"command-line\":\"info status\"}", VCPU, 0, HMP("VM status: running\\r\\n")},
	{"{\"command-line\":\"stop\"}", VCPU, 0, HMP("")},
	{"{\"command-line\":\"info status\"}", VCPU, 0, HMP("VM status: paused\\r\\n")},
	{"{\"command-line\":\"s\"}", VCPU, 0, HMP("")},
	{"{\"command-line\":\"c\"}", VCPU, 0, HMP("")},
	{"{\"command-line\":\"  info   status  \"}", VCPU, 0, HMP("VM status: running\\r\\n")},
	{"{\"command-line\":\"cont\"}", VCPU, 0, HMP("")},
	{"{\"command-line\":\"system_reset\"}", VCPU, 0, HMP("")},
	/* QEMU prints major.minor.micro and the package right after it. */
	{"{\"command-line\":\"info version\"}", NONE, 0, HMP("7.2.0cleave 0.1.0\\r\\n")},
	{"{\"command-line\":\"info name\"}", NONE, 0, HMP("vm1\\r\\n")},
	{"{\"command-line\":\"info uuid\"}", NONE, 0,
	 HMP("00000000-0000-0000-0000-000000000000\\r\\n")},
	{"{\"command-line\":\"info kvm\"}", NONE, 0, HMP("kvm support: enabled\\r\\n")},
	{"{\"command-line\":\"info chardev\"}", NONE, 0, HMP("")},
	/*
	 * Before any migration QEMU prints only its "globals:" block, which
	 * cleave leaves out (QEMU's stream properties, docs/QMP.md).
	 */
	{"{\"command-line\":\"info migrate\"}", MIG, 0, HMP("")},
	{"{\"command-line\":\"info migrate_capabilities\"}", MIG, 0,
	 HMP("multifd: off\\r\\nevents: off\\r\\nauto-converge: off\\r\\npostcopy-ram: "
	     "off\\r\\npostcopy-blocktime: off\\r\\n")},
	{"{\"command-line\":\"info migrate_parameters\"}", MIG, 0,
	 HMP("tls-creds: ''\\r\\ntls-hostname: ''\\r\\n"
	     "max-bandwidth: 134217728 bytes/second\\r\\ndowntime-limit: 300 ms\\r\\n"
	     "multifd-channels: 2\\r\\ntls-authz: ''\\r\\nx-reconnect-timeout: 10000 ms\\r\\n")},
	{"{\"command-line\":\"migrate_cancel\"}", MIG, 0, HMP("")},
	/*
	 * The postcopy commands run where their QMP commands do (QEMU 7.2.22's
	 * texts, here the fake migrator's outside postcopy); a migrate_recover
	 * line goes to the migrator's worker even when its argument is bad.
	 */
	{"{\"command-line\":\"migrate_start_postcopy\"}", MIG, 0,
	 HMP("Error: Enable postcopy with migrate_set_capability before the start of "
	     "migration\\r\\n")},
	{"{\"command-line\":\"migrate_pause\"}", MIG, 0,
	 HMP("Error: migrate-pause is currently only supported during postcopy-active "
	     "state\\r\\n")},
	{"{\"command-line\":\"migrate_recover tcp:127.0.0.1:1\"}", MIG, 0,
	 HMP("Error: Migrate recover can only be run when postcopy is paused.\\r\\n")},
	/* QEMU's get_str(): a quoted string with escapes; a bad one is no string. */
	{"{\"command-line\":\"migrate_recover \\\"tcp:a\\\\\\\" b\\\"  \"}", MIG, 0,
	 HMP("Error: Migrate recover can only be run when postcopy is paused.\\r\\n")},
	{"{\"command-line\":\"migrate_recover \\\"tcp:a\"}", MIG, 0,
	 HMP("migrate_recover: string expected\\r\\n"
	     "Try \\\"help migrate_recover\\\" for more information\\r\\n")},
	{"{\"command-line\":\"migrate_recover \\\"a\\\\x\\\"\"}", MIG, 0,
	 HMP("migrate_recover: string expected\\r\\n"
	     "Try \\\"help migrate_recover\\\" for more information\\r\\n")},
	{"{\"command-line\":\"migrate_recover\"}", MIG, 0,
	 HMP("migrate_recover: string expected\\r\\n"
	     "Try \\\"help migrate_recover\\\" for more information\\r\\n")},
	{"{\"command-line\":\"migrate_recover a b\"}", MIG, 0,
	 HMP("migrate_recover: extraneous characters at the end of line\\r\\n"
	     "Try \\\"help migrate_recover\\\" for more information\\r\\n")},
	{"{\"command-line\":\"quit\"}", NONE, MON_CMD_QUIT, HMP("")},
	{"{\"command-line\":\"q\"}", NONE, MON_CMD_QUIT, HMP("")},
	/* Not a QMP error: HMP's own text, nothing run. */
	{"{\"command-line\":\"foo\"}", NONE, 0, HMP("unknown command: 'foo'\\r\\n")},
	{"{\"command-line\":\" foo bar\"}", NONE, 0, HMP("unknown command: ' foo'\\r\\n")},
	{"{\"command-line\":\"info foo\"}", NONE, 0, HMP("unknown command: 'info foo'\\r\\n")},
	{"{\"command-line\":\"stop now\"}", NONE, 0,
	 HMP("stop|s: extraneous characters at the end of line\\r\\n"
	     "Try \\\"help stop\\\" for more information\\r\\n")},
	{"{\"command-line\":\"info  status  x\"}", NONE, 0,
	 HMP("status: extraneous characters at the end of line\\r\\n"
	     "Try \\\"help info  status\\\" for more information\\r\\n")},
	{"{\"command-line\":\"\"}", NONE, 0, HMP("")},
	{"{\"command-line\":\"help stop\"}", NONE, 0, HMP("stop|s  -- stop emulation\\r\\n")},
	{"{\"command-line\":\"? info migrate\"}", NONE, 0,
	 HMP("info migrate  -- show migration status\\r\\n")},
	{"{\"command-line\":\"help nothing\"}", NONE, 0, HMP("unknown command: 'nothing'\\r\\n")},
	{"{\"command-line\":\"help info nothing\"}", NONE, 0,
	 HMP("unknown command: 'info nothing'\\r\\n")},
	/* cleave's subset of QEMU's tables, sorted as QEMU sorts them. */
	{"{\"command-line\":\"help\"}", NONE, 0,
	 HMP("cont|c  -- resume emulation\\r\\n"
	     "help|? [cmd] -- show the help\\r\\n"
	     "info [subcommand] -- show various information about the system state\\r\\n"
	     "migrate_cancel  -- cancel the current VM migration\\r\\n"
	     "migrate_pause  -- Pause an ongoing migration (postcopy-only)\\r\\n"
	     "migrate_recover uri -- Continue a paused incoming postcopy migration\\r\\n"
	     "migrate_start_postcopy  -- Followup to a migration command to switch the "
	     "migration to postcopy mode. The postcopy-ram capability must be set on both "
	     "source and destination before the original migration command .\\r\\n"
	     "quit|q  -- quit the emulator\\r\\n"
	     "stop|s  -- stop emulation\\r\\n"
	     "system_reset  -- reset the system\\r\\n")},
	{"{\"command-line\":\"info\"}", NONE, 0,
	 HMP("info chardev  -- show the character devices\\r\\n"
	     "info dirty_rate  -- show dirty rate information\\r\\n"
	     "info kvm  -- show KVM information\\r\\n"
	     "info migrate  -- show migration status\\r\\n"
	     "info migrate_capabilities  -- show current migration capabilities\\r\\n"
	     "info migrate_parameters  -- show current migration parameters\\r\\n"
	     "info name  -- show the current VM name\\r\\n"
	     "info status  -- show the current VM status (running|paused)\\r\\n"
	     "info uuid  -- show the current VM UUID\\r\\n"
	     "info version  -- show the version of QEMU\\r\\n")},
	/* cpu-index: a vCPU vcpu-proc has, else QEMU's error (vcpu-proc answers, so VCPU). */
	{"{\"command-line\":\"info version\",\"cpu-index\":1}", VCPU, 0,
	 HMP("7.2.0cleave 0.1.0\\r\\n")},
	{"{\"command-line\":\"info version\",\"cpu-index\":2}", VCPU, 0,
	 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'cpu-index' expects "
	 "a CPU number\"}}"},
	{"{\"command-line\":\"info migrate\",\"cpu-index\":-1}", MIG, 0,
	 "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'cpu-index' expects "
	 "a CPU number\"}}"},
	{"{\"command-line\":\"info migrate\",\"cpu-index\":0}", MIG, 0, HMP("")},
	/* quit is not held back for a vCPU check (it runs on the loop). */
	{"{\"command-line\":\"quit\",\"cpu-index\":7}", NONE, MON_CMD_QUIT, HMP("")},
};

static void test_hmp_table(void **state)
{
	struct hmp_env *e = *state;
	char req[512], *got;
	size_t i;

	for (i = 0; i < sizeof(hmp_cases) / sizeof(hmp_cases[0]); i++) {
		const struct hmp_case *c = &hmp_cases[i];

		snprintf(req, sizeof(req),
			 "{\"execute\":\"human-monitor-command\",\"arguments\":%s}", c->args);
		got = hmp_run(e, req, c->backend, c->flags);
		if (strcmp(got, c->want))
			fail_msg("case %zu %s:\n got  %s\n want %s", i, c->args, got, c->want);
		free(got);
	}
}

/* The request's own arguments are checked as any QMP command's. */
static void test_hmp_bad_arguments(void **state)
{
	static const char *const bad[][2] = {
		{"{\"execute\":\"human-monitor-command\"}", "Parameter 'command-line' is missing"},
		{"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":1}}",
		 "Invalid parameter type for 'command-line', expected: string"},
		{"{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"c\","
		 "\"cpu-index\":\"0\"}}",
		 "Invalid parameter type for 'cpu-index', expected: integer"},
	};
	struct mon_result res = {0};
	struct mon_request req;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_not_equal(
			mon_request_parse(bad[i][0], strlen(bad[i][0]), true, &req, &res), 0);
		assert_string_equal(res.err_desc, bad[i][1]);
		mon_request_fini(&req);
		mon_result_fini(&res);
	}
}

/* A migration's figures as QEMU 7.2's hmp_info_migrate() prints them (kbytes = bytes >> 10). */
/*
 * calc-dirty-rate forwarded as given, query-dirty-rate in QEMU 7.2's shape
 * (no dirty-rate until measured), and info dirty_rate in its words, "(ms)"
 * after a time in seconds and all (QEMU 7.2.22 of Debian 12).
 */
static void test_dirty_rate(void **state)
{
	struct hmp_env *e = *state;
	char *got;

	got = qmp_run(e, "{\"execute\":\"query-dirty-rate\"}");
	assert_string_equal(got,
			    "{\"return\": {\"status\": \"unstarted\", \"sample-pages\": 0, "
			    "\"mode\": \"page-sampling\", \"start-time\": 0, \"calc-time\": 0}}");
	free(got);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"info dirty_rate\"}}",
		      MIG, 0);
	assert_string_equal(got, "{\"return\": \"Status: unstarted\\r\\nStart Time: 0 (ms)\\r\\n"
				 "Sample Pages: 0 (per GB)\\r\\nPeriod: 0 (sec)\\r\\n"
				 "Mode: page-sampling\\r\\nDirty rate: (not ready)\\r\\n\"}");
	free(got);
	got = qmp_run(e, "{\"execute\":\"calc-dirty-rate\",\"arguments\":{\"calc-time\":99}}");
	assert_string_equal(got, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
				 "\"calc-time is out of range[1, 60].\"}}");
	free(got);
	got = qmp_run(e, "{\"execute\":\"calc-dirty-rate\",\"arguments\":{\"calc-time\":2,"
			 "\"mode\":\"dirty-bitmap\"}}");
	assert_string_equal(got, "{\"return\": {}}");
	free(got);
	pthread_mutex_lock(&e->fb->lock);
	assert_int_equal(e->fb->dr_calc_time, 2);
	assert_string_equal(e->fb->dr_mode, "dirty-bitmap");
	assert_false(e->fb->dr_has_sample_pages);
	pthread_mutex_unlock(&e->fb->lock);
	got = qmp_run(e, "{\"execute\":\"query-dirty-rate\"}");
	assert_string_equal(got, "{\"return\": {\"status\": \"measured\", \"sample-pages\": 512, "
				 "\"dirty-rate\": 42, \"mode\": \"dirty-bitmap\", \"start-time\": "
				 "2105, \"calc-time\": 2}}");
	free(got);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"info dirty_rate\"}}",
		      MIG, 0);
	assert_string_equal(got, "{\"return\": \"Status: measured\\r\\nStart Time: 2105 (ms)\\r\\n"
				 "Sample Pages: 512 (per GB)\\r\\nPeriod: 2 (sec)\\r\\n"
				 "Mode: dirty-bitmap\\r\\nDirty rate: 42 (MB/s)\\r\\n\"}");
	free(got);
	/* QEMU's argument checks, before anything reaches the migrator. */
	got = qmp_run(e, "{\"execute\":\"calc-dirty-rate\",\"arguments\":{\"calc-time\":1,"
			 "\"mode\":\"bogus\"}}");
	assert_string_equal(got, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
				 "\"Parameter 'mode' does not accept value 'bogus'\"}}");
	free(got);
	got = qmp_run(e, "{\"execute\":\"calc-dirty-rate\",\"arguments\":{}}");
	assert_string_equal(got, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
				 "\"Parameter 'calc-time' is missing\"}}");
	free(got);
}

/*
 * HMP's migrate_pause and migrate_recover do what the QMP commands do, in
 * band on the migrator's worker: a destination held in postcopy-paused,
 * then released to the uri given; the migrator's errors are HMP's
 * "Error: " lines.
 */
static void test_hmp_pause_recover(void **state)
{
	struct hmp_env *e = *state;
	char *got;

	fake_backend_set_migration(e->fb, "postcopy-active", true);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"migrate_pause\"}}",
		      MIG, 0);
	assert_string_equal(got, HMP(""));
	free(got);
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->mig_status, "postcopy-paused");
	assert_int_equal(e->fb->pauses, 1);
	pthread_mutex_unlock(&e->fb->lock);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"migrate_pause\"}}",
		      MIG, 0);
	assert_string_equal(got, HMP("Error: migrate-pause is currently only supported during "
				     "postcopy-active state\\r\\n"));
	free(got);
	/* A failed bind leaves it paused; then the same line with a free port. */
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"migrate_recover tcp:127.0.0.1:1\"}}",
		      MIG, 0);
	assert_string_equal(got, HMP("Error: Failed to bind to 'tcp:127.0.0.1:1': Address already "
				     "in use\\r\\n"));
	free(got);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"migrate_recover \\\"tcp:127.0.0.1:4446\\\"\"}}",
		      MIG, 0);
	assert_string_equal(got, HMP(""));
	free(got);
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->recover_uri, "tcp:127.0.0.1:4446");
	assert_string_equal(e->fb->mig_status, "postcopy-active");
	assert_int_equal(e->fb->recovers, 1);
	pthread_mutex_unlock(&e->fb->lock);
}

static void test_hmp_info_migrate(void **state)
{
	struct hmp_env *e = *state;
	char *got;

	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "completed");
	pthread_mutex_unlock(&e->fb->lock);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"info migrate\"},\"id\":7}",
		      MIG, 0);
	assert_string_equal(got, "{\"return\": \"Migration status: completed\\r\\n"
				 "total time: 320 ms\\r\\n"
				 "downtime: 12 ms\\r\\n"
				 "setup: 2 ms\\r\\n"
				 "transferred ram: 262144 kbytes\\r\\n"
				 "throughput: 8000.50 mbps\\r\\n"
				 "remaining ram: 0 kbytes\\r\\n"
				 "total ram: 262144 kbytes\\r\\n"
				 "duplicate: 0 pages\\r\\n"
				 "skipped: 0 pages\\r\\n"
				 "normal: 65536 pages\\r\\n"
				 "normal bytes: 262144 kbytes\\r\\n"
				 "dirty sync count: 3\\r\\n"
				 "page size: 4 kbytes\\r\\n"
				 "multifd bytes: 0 kbytes\\r\\n"
				 "pages-per-second: 0\\r\\npostcopy request count: 7\\r\\n\", "
				 "\"id\": 7}");
	free(got);
	/*
	 * A postcopy destination with postcopy-blocktime on: QEMU's two lines,
	 * the list as QEMU's string output visitor writes it (runs as ranges).
	 */
	fake_backend_set_migration(e->fb, "completed", true);
	pthread_mutex_lock(&e->fb->lock);
	e->fb->blocktime_cap = true;
	pthread_mutex_unlock(&e->fb->lock);
	got = hmp_info_migrate(e);
	assert_non_null(strstr(got, "postcopy request count: 7\\r\\n"
				    "postcopy blocktime: 120\\r\\n"
				    "postcopy vcpu blocktime: 150-151,130\\r\\n\""));
	free(got);
	/* A failed migration's status line carries its error, as QEMU prints it. */
	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "failed");
	snprintf(e->fb->mig_error, sizeof(e->fb->mig_error), "peer gone");
	pthread_mutex_unlock(&e->fb->lock);
	got = hmp_info_migrate(e);
	assert_non_null(strstr(got, "{\"return\": \"Migration status: failed (peer gone)\\r\\n"
				    "total time: 320 ms\\r\\n"));
	free(got);
}

/*
 * A backend error is HMP's "Error: " line in a successful reply, as QEMU's
 * hmp_handle_error() prints it; the desc stays in the result so the worker
 * fails the jobs queued behind a dead backend with it.
 */
static void test_hmp_backend_down(void **state)
{
	static const char req[] = "{\"execute\":\"human-monitor-command\",\"arguments\":"
				  "{\"command-line\":\"info status\"}}";
	static const char req_cpu[] = "{\"execute\":\"human-monitor-command\",\"arguments\":"
				      "{\"command-line\":\"info migrate\",\"cpu-index\":0}}";
	struct hmp_env *e = *state;
	struct mon_result res = {0};
	struct mon_request r;
	char *got;

	fake_backend_kill_vcpu(e->fb);
	got = hmp_run(e, req, VCPU, 0);
	assert_string_equal(got, HMP("Error: vcpu-proc is not responding\\r\\n"));
	free(got);
	assert_int_equal(mon_request_parse(req, sizeof(req) - 1, true, &r, &res), 0);
	r.cmd->run(&e->ctx, r.args, &res);
	assert_null(res.err_class);
	assert_true(res.backend_down);
	assert_string_equal(res.err_desc, "vcpu-proc is not responding");
	mon_request_fini(&r);
	mon_result_fini(&res);
	/* A cpu-index check on the migrator's worker does not mark the migrator down. */
	assert_int_equal(mon_request_parse(req_cpu, sizeof(req_cpu) - 1, true, &r, &res), 0);
	assert_int_equal(r.cmd->backend, MON_BACKEND_MIGRATOR);
	r.cmd->run(&e->ctx, r.args, &res);
	assert_string_equal(res.err_desc, "vcpu-proc is not responding");
	assert_false(res.backend_down);
	mon_request_fini(&r);
	mon_result_fini(&res);
}

/* stop through HMP asks for the STOP event first, exactly as QMP stop does. */
static void test_hmp_stop_awaits_event(void **state)
{
	static const char stop[] = "{\"execute\":\"human-monitor-command\",\"arguments\":"
				   "{\"command-line\":\"stop\"}}";
	static const char cont[] = "{\"execute\":\"human-monitor-command\",\"arguments\":"
				   "{\"command-line\":\"cont\"}}";
	struct hmp_env *e = *state;
	struct mon_result res = {0};
	struct mon_request r;

	assert_int_equal(mon_request_parse(stop, sizeof(stop) - 1, true, &r, &res), 0);
	r.cmd->run(&e->ctx, r.args, &res);
	assert_int_equal(res.await_event, MON_AWAIT_STOP);
	assert_string_equal(json_string_value(res.ret), "");
	mon_request_fini(&r);
	mon_result_fini(&res);
	assert_int_equal(mon_request_parse(cont, sizeof(cont) - 1, true, &r, &res), 0);
	r.cmd->run(&e->ctx, r.args, &res);
	assert_int_equal(res.await_event, MON_AWAIT_RESUME);
	mon_request_fini(&r);
	mon_result_fini(&res);
}

/* A backend's text that is not UTF-8 still gives a reply (bytes replaced). */
static void test_hmp_not_utf8(void **state)
{
	struct hmp_env *e = *state;
	char *got;

	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "act\xb1ve");
	pthread_mutex_unlock(&e->fb->lock);
	got = hmp_info_migrate(e);
	assert_non_null(strstr(got, "{\"return\": \"Migration status: act?ve\\r\\n"));
	free(got);
}

/*
 * query-chardev in QEMU 7.2's shape for what the monitor was told: a -qmp
 * chardev is labelled compat_monitorN, its filename while connected is the
 * socket with ",server=on"; -serial's label is serial0, its filename the
 * spec.  info chardev prints "LABEL: filename=FILENAME".
 */
static void test_query_chardev(void **state)
{
	static const char *const socks[] = {"unix:/run/vm/qmp.sock", "tcp:127.0.0.1:4444", NULL};
	struct hmp_env *e = *state;
	struct mon_result res = {0};
	char *got;

	e->ctx.qmp_sockets = socks;
	e->ctx.serial = "file:/var/log/vm.serial";
	mon_cmd_find("query-chardev")->run(&e->ctx, NULL, &res);
	got = json_dumps(res.ret, JSON_COMPACT);
	assert_string_equal(got,
			    "[{\"label\":\"compat_monitor0\",\"filename\":\"unix:/run/vm/qmp.sock,"
			    "server=on\",\"frontend-open\":true},{\"label\":\"compat_monitor1\","
			    "\"filename\":\"tcp:127.0.0.1:4444,server=on\",\"frontend-open\":true},"
			    "{\"label\":\"serial0\",\"filename\":\"file:/var/log/vm.serial\","
			    "\"frontend-open\":true}]");
	free(got);
	mon_result_fini(&res);
	got = hmp_run(e,
		      "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":"
		      "\"info chardev\"}}",
		      NONE, 0);
	assert_string_equal(got, HMP("compat_monitor0: filename=unix:/run/vm/qmp.sock,server=on"
				     "\\r\\ncompat_monitor1: filename=tcp:127.0.0.1:4444,server=on"
				     "\\r\\nserial0: filename=file:/var/log/vm.serial\\r\\n"));
	free(got);
	/* Told nothing: nothing listed. */
	e->ctx.qmp_sockets = NULL;
	e->ctx.serial = NULL;
	mon_cmd_find("query-chardev")->run(&e->ctx, NULL, &res);
	assert_int_equal(json_array_size(res.ret), 0);
	mon_result_fini(&res);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hmp_table, hmp_setup, hmp_teardown),
		cmocka_unit_test(test_hmp_bad_arguments),
		cmocka_unit_test_setup_teardown(test_hmp_info_migrate, hmp_setup, hmp_teardown),
		cmocka_unit_test_setup_teardown(test_hmp_pause_recover, hmp_setup, hmp_teardown),
		cmocka_unit_test_setup_teardown(test_dirty_rate, hmp_setup, hmp_teardown),
		cmocka_unit_test_setup_teardown(test_hmp_backend_down, hmp_setup, hmp_teardown),
		cmocka_unit_test_setup_teardown(test_hmp_stop_awaits_event, hmp_setup,
						hmp_teardown),
		cmocka_unit_test_setup_teardown(test_query_chardev, hmp_setup, hmp_teardown),
		cmocka_unit_test_setup_teardown(test_hmp_not_utf8, hmp_setup, hmp_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
