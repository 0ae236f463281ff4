// SPDX-License-Identifier: GPL-2.0-only
/*
 * The monitor's backend side without sockets to QMP clients: command
 * functions on worker threads against in-test vcpu-proc and migrator RPC
 * servers, dead backends, and the event subscriber.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "monitor/events.h"
#include "monitor/qmp-cmds-internal.h"
#include "monitor/worker.h"
#include "proto/rpc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"

struct bk {
	struct fake_backend *fb;
	struct mon_ctx ctx;
	struct mon_done done;
	struct mon_worker workers[MON_BACKEND_NR];
};

static int bk_setup(void **state)
{
	struct bk *b = calloc(1, sizeof(*b));

	assert_non_null(b);
	assert_int_equal(fake_backend_start(&b->fb), 0);
	assert_int_equal(rpc_client_open(&b->ctx.rpc[MON_BACKEND_VCPU], b->fb->vcpu_rpc), 0);
	assert_int_equal(rpc_client_open(&b->ctx.rpc[MON_BACKEND_MIGRATOR], b->fb->mig_rpc), 0);
	b->ctx.timeout_ms = 300;
	assert_int_equal(mon_done_init(&b->done), 0);
	/* One thread each: the queue tests below count what one worker does. */
	assert_int_equal(
		mon_worker_start(&b->workers[MON_BACKEND_VCPU], "vcpu", 1, &b->ctx, &b->done), 0);
	assert_int_equal(mon_worker_start(&b->workers[MON_BACKEND_MIGRATOR], "migrator", 1, &b->ctx,
					  &b->done),
			 0);
	*state = b;
	return 0;
}

static int bk_teardown(void **state)
{
	struct bk *b = *state;

	/* stop -> join -> free: workers first, then what they used. */
	mon_worker_stop(&b->workers[MON_BACKEND_VCPU]);
	mon_worker_stop(&b->workers[MON_BACKEND_MIGRATOR]);
	mon_worker_stop(&b->workers[MON_BACKEND_VCPU]); /* twice is harmless */
	mon_done_fini(&b->done);
	rpc_client_close(b->ctx.rpc[MON_BACKEND_VCPU]);
	rpc_client_close(b->ctx.rpc[MON_BACKEND_MIGRATOR]);
	fake_backend_stop(b->fb);
	free(b);
	return 0;
}

/* Submits @n jobs of command @name and waits for all; returns them in order of completion. */
static void bk_run(struct bk *b, const char *name, const char *args, struct mon_job **jobs, int n)
{
	const struct mon_cmd *cmd = mon_cmd_find(name);
	int i, got = 0;

	assert_non_null(cmd);
	for (i = 0; i < n; i++) {
		struct mon_job *job = mon_job_alloc();

		assert_non_null(job);
		job->client_id = (uint64_t)i + 1;
		job->run = cmd->run;
		job->name = cmd->name;
		job->args = json_loads(args ? args : "{}", 0, NULL);
		mon_worker_submit(&b->workers[cmd->backend], job);
	}
	while (got < n) {
		struct pollfd pfd = {.fd = b->done.efd, .events = POLLIN};
		struct mon_job *job;

		assert_true(poll(&pfd, 1, 5000) == 1);
		for (job = mon_done_take(&b->done); job; job = job->next)
			jobs[got++] = job;
	}
}

/* Runs one command; returns its reply as compact JSON text (caller frees). */
static char *bk_cmd(struct bk *b, const char *name, const char *args)
{
	struct mon_job *job;
	char *text;

	bk_run(b, name, args, &job, 1);
	if (job->res.err_class)
		text = strdup(job->res.err_desc);
	else
		text = json_dumps(job->res.ret, JSON_COMPACT);
	mon_job_free(job);
	return text;
}

#define assert_cmd(b, name, args, want)                                                            \
	do {                                                                                       \
		char *got_ = bk_cmd(b, name, args);                                                \
		if (strcmp(got_, want))                                                            \
			fail_msg("%s: got %s want %s", name, got_, want);                          \
		free(got_);                                                                        \
	} while (0)

/* A command of the event loop (object-add), run in place: "{}" or its error desc. */
static char *bk_loop_cmd(struct bk *b, const char *name, const char *args)
{
	const struct mon_cmd *cmd = mon_cmd_find(name);
	struct mon_result res = {0};
	json_t *a = json_loads(args, 0, NULL);
	char *text;

	assert_non_null(cmd);
	assert_int_equal(cmd->backend, MON_BACKEND_NONE);
	assert_int_equal(mon_args_check(cmd->args, a, NULL, &res), 0);
	cmd->run(&b->ctx, a, &res);
	text = res.err_class ? strdup(res.err_desc) : json_dumps(res.ret, JSON_COMPACT);
	mon_result_fini(&res);
	json_decref(a);
	return text;
}

/*
 * QMP's way of configuring migration TLS against an in-test migrator:
 * migrate-set-parameters sends what the objects say with their ids,
 * query-migrate-parameters shows the ids, object-del of an object the
 * parameters use is refused as QEMU refuses it, and allowed once they
 * no longer do.
 */
static void test_tls_objects(void **state)
{
	struct bk *b = *state;
	char *got;

	mon_objects_clear();
	got = bk_loop_cmd(
		b, "object-add",
		"{\"qom-type\":\"tls-creds-x509\",\"id\":\"tls0\",\"dir\":\"/etc/pki/qemu\","
		"\"endpoint\":\"server\",\"verify-peer\":true}");
	assert_string_equal(got, "{}");
	free(got);
	got = bk_loop_cmd(b, "object-add",
			  "{\"qom-type\":\"authz-list\",\"id\":\"auth0\",\"policy\":\"deny\","
			  "\"rules\":[{\"match\":\"CN=a\",\"policy\":\"allow\"},"
			  "{\"match\":\"CN=b*\",\"policy\":\"allow\",\"format\":\"glob\"}]}");
	assert_string_equal(got, "{}");
	free(got);
	assert_cmd(
		b, "migrate-set-parameters",
		"{\"tls-creds\":\"tls0\",\"tls-authz\":\"auth0\",\"tls-hostname\":\"dst.example\"}",
		"{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->tls_dir, "/etc/pki/qemu");
	assert_true(b->fb->tls_server);
	assert_false(b->fb->tls_psk);
	assert_int_equal(b->fb->tls_rules, 2);
	assert_false(b->fb->tls_authz_allow);
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate-parameters", NULL);
	assert_non_null(strstr(got, "\"tls-creds\":\"tls0\",\"tls-hostname\":\"dst.example\","
				    "\"tls-authz\":\"auth0\"}"));
	free(got);
	assert_cmd(b, "object-del", "{\"id\":\"tls0\"}",
		   "object 'tls0' is in use, can not be deleted");
	assert_cmd(b, "object-del", "{\"id\":\"auth0\"}",
		   "object 'auth0' is in use, can not be deleted");
	/*
	 * A monitor restart loses the objects; the new monitor re-creates those
	 * the migrator's parameters use, from them, at its start.
	 */
	mon_objects_clear();
	{
		struct mon_result res = {0};

		mon_cmd_migration_caps_refresh(&b->ctx, NULL, &res);
		assert_null(res.err_class);
		mon_result_fini(&res);
	}
	got = bk_loop_cmd(b, "object-add",
			  "{\"qom-type\":\"tls-creds-x509\",\"id\":\"tls0\",\"dir\":\"/d\"}");
	assert_string_equal(got, "attempt to add duplicate property 'tls0' to object (type "
				 "'container')");
	free(got);
	assert_cmd(b, "object-del", "{\"id\":\"auth0\"}",
		   "object 'auth0' is in use, can not be deleted");
	/* Sent again as they were (the authz-list's glob rule first in the fake). */
	assert_cmd(b, "migrate-set-parameters", "{\"tls-creds\":\"tls0\",\"tls-authz\":\"auth0\"}",
		   "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->tls_dir, "/etc/pki/qemu");
	assert_true(b->fb->tls_server);
	assert_string_equal(b->fb->tls_rule0, "CN=a");
	pthread_mutex_unlock(&b->fb->lock);
	/* QEMU's StrOrNull: null and "" both turn it off. */
	assert_cmd(b, "migrate-set-parameters", "{\"tls-creds\":null,\"tls-authz\":\"\"}", "{}");
	assert_cmd(b, "object-del", "{\"id\":\"tls0\"}", "{}");
	assert_cmd(b, "object-del", "{\"id\":\"auth0\"}", "{}");
	assert_cmd(b, "object-del", "{\"id\":\"tls0\"}", "object 'tls0' not found");
	assert_cmd(b, "migrate-set-parameters", "{\"tls-creds\":\"tls0\"}",
		   "No TLS credentials with id 'tls0'");
	mon_objects_clear();
}

static void test_vcpu_commands(void **state)
{
	struct bk *b = *state;

	assert_cmd(b, "query-status", NULL,
		   "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}");
	assert_cmd(b, "stop", NULL, "{}");
	assert_cmd(b, "query-status", NULL,
		   "{\"running\":false,\"singlestep\":false,\"status\":\"paused\"}");
	assert_cmd(b, "cont", NULL, "{}");
	assert_cmd(b, "system_reset", NULL, "{}");
	assert_cmd(b, "query-memory-size-summary", NULL,
		   "{\"base-memory\":268435456,\"plugged-memory\":0}");
	assert_cmd(
		b, "query-cpus-fast", NULL,
		"[{\"cpu-index\":0,\"qom-path\":\"/machine/unattached/"
		"device[0]\",\"thread-id\":1000,"
		"\"props\":{\"core-id\":0,\"thread-id\":0,\"socket-id\":0},\"target\":\"x86_64\"},"
		"{\"cpu-index\":1,\"qom-path\":\"/machine/unattached/"
		"device[1]\",\"thread-id\":1001,"
		"\"props\":{\"core-id\":0,\"thread-id\":0,\"socket-id\":1},\"target\":\"x86_64\"}"
		"]");
}

static void test_migration_commands(void **state)
{
	struct bk *b = *state;
	char *got;

	assert_cmd(b, "query-migrate", NULL, "{}");
	assert_cmd(b, "migrate_cancel", NULL, "{}");
	assert_false(atomic_load(&b->ctx.migration_events));
	assert_cmd(b, "migrate-set-capabilities",
		   "{\"capabilities\":[{\"capability\":\"events\",\"state\":true},"
		   "{\"capability\":\"multifd\",\"state\":true},{\"capability\":\"xbzrle\","
		   "\"state\":false}]}",
		   "{}");
	assert_true(atomic_load(&b->ctx.migration_events));
	assert_cmd(b, "query-migrate-capabilities", NULL,
		   "[{\"capability\":\"multifd\",\"state\":true},{\"capability\":\"events\","
		   "\"state\":true},"
		   "{\"capability\":\"auto-converge\",\"state\":false},"
		   "{\"capability\":\"postcopy-ram\",\"state\":false},"
		   "{\"capability\":\"postcopy-blocktime\",\"state\":false}]");
	assert_cmd(b, "migrate-set-parameters", "{\"multifd-channels\":8}", "{}");
	assert_cmd(b, "query-migrate-parameters", NULL,
		   "{\"multifd-channels\":8,\"max-bandwidth\":134217728,\"downtime-limit\":300,"
		   "\"x-reconnect-timeout\":10000,\"tls-creds\":\"\",\"tls-hostname\":\"\","
		   "\"tls-authz\":\"\"}");
	assert_cmd(b, "migrate-set-parameters", "{\"x-reconnect-timeout\":2500}", "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_true(b->fb->has_reconnect_timeout);
	assert_int_equal(b->fb->reconnect_timeout, 2500);
	assert_int_equal(b->fb->channels, 8); /* left alone when not given */
	pthread_mutex_unlock(&b->fb->lock);
	assert_cmd(b, "query-migrate-parameters", NULL,
		   "{\"multifd-channels\":8,\"max-bandwidth\":134217728,\"downtime-limit\":300,"
		   "\"x-reconnect-timeout\":2500,\"tls-creds\":\"\",\"tls-hostname\":\"\","
		   "\"tls-authz\":\"\"}");
	/* 0 is valid: fail at once on a lost peer. */
	assert_cmd(b, "migrate-set-parameters", "{\"x-reconnect-timeout\":0}", "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_int_equal(b->fb->reconnect_timeout, 0);
	pthread_mutex_unlock(&b->fb->lock);
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:1\"}",
		   "Failed to connect to 'tcp:127.0.0.1:1'");
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:4444\"}", "{}");
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "\"status\":\"completed\""));
	assert_non_null(strstr(got, "\"transferred\":268435456"));
	assert_non_null(strstr(got, "\"normal-bytes\":268435456"));
	assert_non_null(strstr(got, "\"mbps\":8000.5"));
	assert_non_null(strstr(got, "\"dirty-sync-count\":3"));
	assert_non_null(strstr(got, "\"page-size\":4096"));
	assert_non_null(strstr(got, "\"total-time\":320"));
	assert_non_null(strstr(got, "\"downtime\":12"));
	assert_non_null(strstr(got, "\"setup-time\":2"));
	assert_non_null(strstr(got, "\"x-cleave-restarts\":1"));
	assert_non_null(strstr(got, "\"x-cleave-resent-bytes\":4096"));
	assert_non_null(strstr(got, "\"x-cleave-resumes\":2"));
	assert_non_null(strstr(got, "\"x-cleave-resume-time\":35"));
	assert_non_null(strstr(got, "\"x-cleave-inflight-bytes\":65536"));
	/* The postcopy counters of the record: QEMU's name for requests, cleave's for the rest. */
	assert_non_null(strstr(got, "\"postcopy-requests\":7,"));
	assert_non_null(strstr(got, "\"x-cleave-postcopy-pulled\":300"));
	assert_non_null(strstr(got, "\"x-cleave-postcopy-pushed\":1200"));
	assert_non_null(strstr(got, "\"x-cleave-postcopy-wait-us\":2100"));
	assert_null(strstr(got, "expected-downtime"));
	assert_null(strstr(got, "error-desc"));
	free(got);
	/* The background refresh the server does at start. */
	atomic_store(&b->ctx.migration_events, false);
	{
		struct mon_job *job = mon_job_alloc();
		struct pollfd pfd = {.fd = b->done.efd, .events = POLLIN};

		job->run = mon_cmd_migration_caps_refresh;
		job->name = "refresh";
		mon_worker_submit(&b->workers[MON_BACKEND_MIGRATOR], job);
		assert_int_equal(poll(&pfd, 1, 5000), 1);
		mon_job_free(mon_done_take(&b->done));
	}
	assert_true(atomic_load(&b->ctx.migration_events));
}

/*
 * The migrator's texts are not checked for UTF-8 on the way (protobuf-c
 * does not): a status or error-desc with a bad byte still shows, the byte
 * replaced by '?', and the rest of query-migrate with it.
 */
static void test_query_migrate_not_utf8(void **state)
{
	struct bk *b = *state;
	char *got;

	pthread_mutex_lock(&b->fb->lock);
	snprintf(b->fb->mig_status, sizeof(b->fb->mig_status),
		 "fail\xe9"
		 "d");
	snprintf(b->fb->mig_error, sizeof(b->fb->mig_error), "peer said: \xff\xfe gone \xc3\xa9");
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "{\"status\":\"fail?d\",\"ram\":{"));
	/* A well-formed character (here U+00E9) stays as it is. */
	assert_non_null(strstr(got, "\"error-desc\":\"peer said: ?? gone \u00e9\""));
	assert_non_null(strstr(got, "\"x-cleave-resumes\":2"));
	free(got);
	/* Valid texts pass unchanged. */
	pthread_mutex_lock(&b->fb->lock);
	snprintf(b->fb->mig_status, sizeof(b->fb->mig_status), "failed");
	snprintf(b->fb->mig_error, sizeof(b->fb->mig_error), "peer said: gone");
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "{\"status\":\"failed\",\"ram\":{"));
	assert_non_null(strstr(got, "\"error-desc\":\"peer said: gone\""));
	free(got);
}

/*
 * A postcopy destination whose source is gone: query-migrate lists the
 * missing pages, x-cleave-postcopy-abandon passes the operator's choice on,
 * and the migrator's refusal comes back as it said it.
 */
static void test_postcopy_abandon(void **state)
{
	struct bk *b = *state;
	char *got;

	assert_cmd(b, "x-cleave-postcopy-abandon", NULL,
		   "no postcopy waiting for a lost peer to abandon (destination, status: none)");
	pthread_mutex_lock(&b->fb->lock);
	snprintf(b->fb->mig_status, sizeof(b->fb->mig_status), "postcopy-paused");
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got,
			       "\"x-cleave-postcopy-missing\":{\"pages\":3,\"runs\":["
			       "{\"gpa\":4096,\"size\":8192},{\"gpa\":1048576,\"size\":4096}]}"));
	free(got);
	assert_cmd(b, "x-cleave-postcopy-abandon", "{\"zero-fill\":true}", "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->abandoned, "zero-fill");
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "{\"status\":\"failed\""));
	assert_null(strstr(got, "x-cleave-postcopy-missing"));
	free(got);
}

/* query-migrate with @status, as a destination or not: with the blocktime fields or not. */
static void assert_blocktime(struct bk *b, const char *status, bool dest, bool shown)
{
	int calls = atomic_load(&b->fb->blocktimes);
	char *got;

	fake_backend_set_migration(b->fb, status, dest);
	got = bk_cmd(b, "query-migrate", NULL);
	if (!strstr(got, "\"status\":") || !strstr(got, "\"x-cleave-resumes\":2"))
		fail_msg("%s: %s", status, got);
	if (shown) {
		if (!strstr(got,
			    "\"postcopy-blocktime\":120,\"postcopy-vcpu-blocktime\":[150,151,130]"))
			fail_msg("%s %s: no blocktime in %s", dest ? "destination" : "source",
				 status, got);
	} else if (strstr(got, "blocktime")) {
		fail_msg("%s %s: blocktime in %s", dest ? "destination" : "source", status, got);
	}
	free(got);
	/* cleave-vcpu is asked only when the fields may be shown. */
	if (!shown && !atomic_load(&b->fb->bt_fails))
		assert_int_equal(atomic_load(&b->fb->blocktimes), calls);
}

/*
 * QEMU's postcopy-blocktime capability: taken and listed; with it on,
 * query-migrate on a destination in postcopy (or completed after it) adds
 * cleave-vcpu's numbers as QEMU names them; a source, another status or
 * the capability off leave them out; so does a cleave-vcpu that fails or
 * is gone, and query-migrate still answers.
 */
static void test_postcopy_blocktime(void **state)
{
	struct bk *b = *state;

	assert_blocktime(b, "postcopy-active", true, false); /* off */
	assert_int_equal(atomic_load(&b->fb->blocktimes), 0);
	assert_cmd(b, "migrate-set-capabilities",
		   "{\"capabilities\":[{\"capability\":\"postcopy-blocktime\",\"state\":true}]}",
		   "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_true(b->fb->blocktime_cap);
	assert_false(b->fb->postcopy_cap);
	pthread_mutex_unlock(&b->fb->lock);
	assert_cmd(b, "query-migrate-capabilities", NULL,
		   "[{\"capability\":\"multifd\",\"state\":false},{\"capability\":\"events\","
		   "\"state\":false},"
		   "{\"capability\":\"auto-converge\",\"state\":false},"
		   "{\"capability\":\"postcopy-ram\",\"state\":false},"
		   "{\"capability\":\"postcopy-blocktime\",\"state\":true}]");
	assert_blocktime(b, "postcopy-active", true, true);
	assert_blocktime(b, "postcopy-paused", true, true);
	assert_blocktime(b, "completed", true, true);
	assert_int_equal(atomic_load(&b->fb->blocktimes), 3);
	assert_blocktime(b, "active", true, false);
	assert_blocktime(b, "failed", true, false);
	assert_blocktime(b, "postcopy-active", false, false); /* the source */
	assert_blocktime(b, "completed", false, false);

	atomic_store(&b->fb->bt_fails, true);
	assert_blocktime(b, "postcopy-active", true, false);
	assert_int_equal(atomic_load(&b->fb->blocktimes), 4);
	atomic_store(&b->fb->bt_fails, false);
	fake_backend_kill_vcpu(b->fb);
	assert_blocktime(b, "postcopy-active", true, false);

	assert_cmd(b, "migrate-set-capabilities",
		   "{\"capabilities\":[{\"capability\":\"postcopy-blocktime\",\"state\":false}]}",
		   "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_false(b->fb->blocktime_cap);
	pthread_mutex_unlock(&b->fb->lock);
}

#define PAUSE_ERR   "migrate-pause is currently only supported during postcopy-active state"
#define RECOVER_ERR "Migrate recover can only be run when postcopy is paused."
#define RESUME_ERR  "Cannot resume if there is no paused migration"

static void assert_fake_status(struct bk *b, const char *status)
{
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->mig_status, status);
	pthread_mutex_unlock(&b->fb->lock);
}

/*
 * migrate-pause holds a postcopy migration on either side; the destination
 * is released by migrate-recover to its uri, the source by migrate
 * {resume: true} to its uri.  Outside their states the migrator refuses
 * with QEMU 7.2's texts, which come back as they were said.
 */
static void test_pause_recover_resume(void **state)
{
	struct bk *b = *state;

	/* No migration: each refused. */
	assert_cmd(b, "migrate-pause", NULL, PAUSE_ERR);
	assert_cmd(b, "migrate-recover", "{\"uri\":\"tcp:127.0.0.1:4446\"}", RECOVER_ERR);
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:4447\",\"resume\":true}", RESUME_ERR);
	pthread_mutex_lock(&b->fb->lock);
	assert_true(b->fb->migrate_resume); /* the flag reached the migrator */
	assert_string_equal(b->fb->recover_uri, "");
	pthread_mutex_unlock(&b->fb->lock);

	/* A destination: paused, refused a second pause and a resume, recovered. */
	fake_backend_set_migration(b->fb, "postcopy-active", true);
	assert_cmd(b, "migrate-recover", "{\"uri\":\"tcp:127.0.0.1:4446\"}", RECOVER_ERR);
	assert_cmd(b, "migrate-pause", NULL, "{}");
	assert_fake_status(b, "postcopy-paused");
	assert_cmd(b, "migrate-pause", NULL, PAUSE_ERR);
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:4447\",\"resume\":true}", RESUME_ERR);
	/* A bind that fails is the migrator's text; it stays paused. */
	assert_cmd(b, "migrate-recover", "{\"uri\":\"tcp:127.0.0.1:1\"}",
		   "Failed to bind to 'tcp:127.0.0.1:1': Address already in use");
	assert_fake_status(b, "postcopy-paused");
	assert_cmd(b, "migrate-recover", "{\"uri\":\"tcp:127.0.0.1:4446\"}", "{}");
	assert_fake_status(b, "postcopy-active");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->recover_uri, "tcp:127.0.0.1:4446");
	assert_int_equal(b->fb->pauses, 1);
	assert_int_equal(b->fb->recovers, 1);
	pthread_mutex_unlock(&b->fb->lock);

	/* A source: paused, refused recover, resumed to a new uri. */
	fake_backend_set_migration(b->fb, "postcopy-active", false);
	assert_cmd(b, "migrate-pause", NULL, "{}");
	assert_fake_status(b, "postcopy-paused");
	assert_cmd(b, "migrate-recover", "{\"uri\":\"tcp:127.0.0.1:4446\"}", RECOVER_ERR);
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:1\",\"resume\":true}",
		   "Failed to connect to 'tcp:127.0.0.1:1'");
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:4447\",\"resume\":true}", "{}");
	assert_fake_status(b, "postcopy-active");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->migrate_uri, "tcp:127.0.0.1:4447");
	assert_true(b->fb->migrate_resume);
	assert_int_equal(b->fb->resumes, 1);
	pthread_mutex_unlock(&b->fb->lock);
	/* resume: false is a plain migrate, as without it. */
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:4448\",\"resume\":false}", "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_false(b->fb->migrate_resume);
	assert_int_equal(b->fb->resumes, 1);
	pthread_mutex_unlock(&b->fb->lock);
	/* The monitor's own URI check comes first, resume or not. */
	assert_cmd(b, "migrate", "{\"uri\":\"bogus:1\",\"resume\":true}",
		   "Parameter 'uri' expects a valid migration protocol (supported: "
		   "tcp:HOST:PORT, unix:PATH, file:PATH, fd:NAME)");
	fake_backend_kill_migrator(b->fb);
	assert_cmd(b, "migrate-pause", NULL, "migrator is not running");
}

/* A dead backend: every queued job answers within about two deadlines. */
static void test_dead_backend_fails_fast(void **state)
{
	struct bk *b = *state;
	struct mon_job *jobs[8];
	long long t0;
	int i;

	fake_backend_kill_vcpu(b->fb);
	t0 = test_now_ms();
	bk_run(b, "query-status", NULL, jobs, 8);
	assert_true(test_now_ms() - t0 < 2 * b->ctx.timeout_ms + 500);
	for (i = 0; i < 8; i++) {
		assert_non_null(jobs[i]->res.err_class);
		assert_string_equal(jobs[i]->res.err_desc, "vcpu-proc is not responding");
		assert_true(jobs[i]->res.backend_down);
		mon_job_free(jobs[i]);
	}
	/* The migrator is unaffected. */
	assert_cmd(b, "query-migrate", NULL, "{}");
	fake_backend_kill_migrator(b->fb);
	assert_cmd(b, "query-migrate", NULL, "migrator is not running");
	assert_cmd(b, "migrate_cancel", NULL, "migrator is not running");
}

/* x-cleave-migrate-resolve: only after a switchover with an unknown outcome. */
static void test_resolve(void **state)
{
	struct bk *b = *state;
	char *got;

	assert_cmd(b, "x-cleave-migrate-resolve", "{\"run-on\":\"source\"}",
		   "no switchover with an unknown outcome to resolve (status: none)");
	assert_cmd(b, "migrate", "{\"uri\":\"tcp:127.0.0.1:2\"}", "{}");
	/* The status passes through as the migrator names it, with the figures. */
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "{\"status\":\"x-switchover-unknown\",\"ram\":{"));
	assert_non_null(strstr(got, "\"total-time\":320"));
	free(got);
	/* An error reply from a live migrator comes back at once, not retried. */
	b->ctx.cancel_retry_ms = 5000;
	{
		long long t0 = test_now_ms();

		assert_cmd(b, "migrate_cancel", NULL,
			   "the switchover's outcome is unknown: use x-cleave-migrate-resolve");
		assert_true(test_now_ms() - t0 < 1000);
		assert_int_equal(atomic_load(&b->fb->cancels), 1);
	}
	assert_cmd(b, "x-cleave-migrate-resolve", "{\"run-on\":\"destination\"}", "{}");
	pthread_mutex_lock(&b->fb->lock);
	assert_string_equal(b->fb->resolved, "destination");
	pthread_mutex_unlock(&b->fb->lock);
	got = bk_cmd(b, "query-migrate", NULL);
	assert_non_null(strstr(got, "{\"status\":\"completed\""));
	free(got);
	assert_cmd(b, "x-cleave-migrate-resolve", "{\"run-on\":\"destination\"}",
		   "no switchover with an unknown outcome to resolve (status: completed)");
	fake_backend_kill_migrator(b->fb);
	assert_cmd(b, "x-cleave-migrate-resolve", "{\"run-on\":\"source\"}",
		   "migrator is not running");
}

static void *restart_later(void *arg)
{
	struct bk *b = arg;

	usleep(700 * 1000);
	assert_int_equal(fake_backend_restart_migrator(b->fb), 0);
	return NULL;
}

/* migrate_cancel while the migrator is being restarted: retried until it answers. */
static void test_cancel_during_restart(void **state)
{
	struct bk *b = *state;
	pthread_t t;
	long long t0, took;

	b->ctx.cancel_retry_ms = 5000;
	fake_backend_kill_migrator(b->fb);
	assert_int_equal(pthread_create(&t, NULL, restart_later, b), 0);
	t0 = test_now_ms();
	assert_cmd(b, "migrate_cancel", NULL, "{}");
	took = test_now_ms() - t0;
	pthread_join(t, NULL);
	/* Answered by the restarted server: not before it, well within the window. */
	assert_true(took >= 650);
	assert_true(took < 3000);
	assert_int_equal(atomic_load(&b->fb->cancels), 1);
}

/* Other commands keep failing within one deadline while the migrator is away. */
static void test_cancel_retry_only_cancel(void **state)
{
	struct bk *b = *state;
	long long t0;

	b->ctx.cancel_retry_ms = 5000;
	fake_backend_kill_migrator(b->fb);
	t0 = test_now_ms();
	assert_cmd(b, "query-migrate", NULL, "migrator is not running");
	assert_true(test_now_ms() - t0 < b->ctx.timeout_ms + 500);
}

/* A migrator that stays away: the error after the retry window, and the queue fails with it. */
static void test_cancel_gives_up(void **state)
{
	struct bk *b = *state;
	const struct mon_cmd *cancel = mon_cmd_find("migrate_cancel");
	const struct mon_cmd *query = mon_cmd_find("query-migrate");
	struct mon_job *jobs[3];
	long long t0, took;
	int i, got = 0;

	b->ctx.cancel_retry_ms = 1000;
	fake_backend_kill_migrator(b->fb);
	t0 = test_now_ms();
	for (i = 0; i < 3; i++) {
		struct mon_job *job = mon_job_alloc();

		job->client_id = (uint64_t)i + 1;
		job->run = i ? query->run : cancel->run;
		job->name = i ? query->name : cancel->name;
		job->args = json_object();
		mon_worker_submit(&b->workers[MON_BACKEND_MIGRATOR], job);
	}
	while (got < 3) {
		struct pollfd pfd = {.fd = b->done.efd, .events = POLLIN};
		struct mon_job *job;

		assert_true(poll(&pfd, 1, 5000) == 1);
		for (job = mon_done_take(&b->done); job; job = job->next)
			jobs[got++] = job;
	}
	took = test_now_ms() - t0;
	assert_true(took >= 1000);
	assert_true(took < 1000 + b->ctx.timeout_ms + 500);
	for (i = 0; i < 3; i++) {
		assert_int_equal(jobs[i]->client_id, (uint64_t)i + 1);
		assert_string_equal(jobs[i]->res.err_desc, "migrator is not running");
		assert_true(jobs[i]->res.backend_down);
		mon_job_free(jobs[i]);
	}
}

/* A migrator that is not configured at all is not waited for. */
static void test_cancel_not_configured(void **state)
{
	struct mon_ctx ctx = {.timeout_ms = 300, .cancel_retry_ms = 5000};
	struct mon_result res = {0};
	long long t0 = test_now_ms();

	mon_cmd_find("migrate_cancel")->run(&ctx, NULL, &res);
	assert_true(test_now_ms() - t0 < 100);
	assert_string_equal(res.err_desc, "migrator is not running");
	mon_result_fini(&res);
}

/* A slow backend keeps per-worker order. */
static void test_worker_order(void **state)
{
	struct bk *b = *state;
	struct mon_job *jobs[16];
	int i;

	atomic_store(&b->fb->delay_ms, 2);
	bk_run(b, "query-status", NULL, jobs, 16);
	for (i = 0; i < 16; i++) {
		assert_int_equal(jobs[i]->client_id, (uint64_t)i + 1);
		assert_null(jobs[i]->res.err_class);
		mon_job_free(jobs[i]);
	}
}

/*
 * Stopping a worker with jobs still queued: stop returns once the thread
 * exited, after the job it was running (which completes), without running
 * the queued ones, which it frees (ASan checks the freeing).
 */
static void test_worker_stop_with_queue(void **state)
{
	struct bk *b = *state;
	const struct mon_cmd *cmd = mon_cmd_find("query-status");
	int i, answered = 0, calls = atomic_load(&b->fb->calls);
	struct mon_job *job, *next;
	int64_t end;

	atomic_store(&b->fb->delay_ms, 50);
	for (i = 0; i < 10; i++) {
		job = mon_job_alloc();
		assert_non_null(job);
		job->client_id = (uint64_t)i + 1;
		job->run = cmd->run;
		job->name = cmd->name;
		job->args = json_object();
		mon_worker_submit(&b->workers[MON_BACKEND_VCPU], job);
	}
	/* The first job is with vcpu-proc (sleeping 50 ms there); nine wait in the queue. */
	end = test_now_ms() + 5000;
	while (atomic_load(&b->fb->calls) < calls + 1 && test_now_ms() < end)
		test_sleep_ms(1);
	assert_int_equal(atomic_load(&b->fb->calls), calls + 1);
	mon_worker_stop(&b->workers[MON_BACKEND_VCPU]);
	assert_int_equal(b->workers[MON_BACKEND_VCPU].state, MON_WORKER_IDLE);
	/* The thread is gone: nothing more reaches vcpu-proc, and only job 1 completed. */
	assert_int_equal(atomic_load(&b->fb->calls), calls + 1);
	for (job = mon_done_take(&b->done); job; job = next) {
		next = job->next;
		assert_int_equal(job->client_id, 1);
		assert_null(job->res.err_class);
		answered++;
		mon_job_free(job);
	}
	assert_int_equal(answered, 1);
	atomic_store(&b->fb->delay_ms, 0);
}

/* A job that holds its worker thread until the test lets it go. */
static atomic_bool pool_release;
static atomic_int pool_entered; /* such jobs that started */

static void pool_blocking_run(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	int64_t end = test_now_ms() + 5000;

	(void)ctx;
	(void)args;
	(void)res;
	atomic_fetch_add(&pool_entered, 1);
	while (!atomic_load(&pool_release) && test_now_ms() < end)
		test_sleep_ms(1);
}

/* Waits for the job of @client_id in the completion queue; NULL after @ms. */
static struct mon_job *pool_wait_for(struct mon_done *d, uint64_t client_id, int ms)
{
	static struct mon_job *seen; /* finished jobs of other clients, kept */
	int64_t end = test_now_ms() + ms;
	struct mon_job *job, **pp;

	do {
		for (job = mon_done_take(d); job;) {
			struct mon_job *next = job->next;

			job->next = seen;
			seen = job;
			job = next;
		}
		for (pp = &seen; *pp; pp = &(*pp)->next) {
			if ((*pp)->client_id == client_id) {
				job = *pp;
				*pp = job->next;
				return job;
			}
		}
		test_sleep_ms(1);
	} while (test_now_ms() < end);
	return NULL;
}

/* Queues a job of @client_id on @w: query-migrate at the back, migrate-pause at the front. */
static void front_queue(struct mon_worker *w, uint64_t client_id, bool front)
{
	struct mon_job *job = mon_job_alloc();

	assert_non_null(job);
	job->client_id = client_id;
	job->oob = front;
	job->run = front ? mon_cmd_migrate_pause : mon_cmd_query_migrate;
	job->name = front ? "migrate-pause" : "query-migrate";
	job->args = json_object();
	if (front)
		mon_worker_submit_front(w, job);
	else
		mon_worker_submit(w, job);
}

/*
 * Runs @n jobs described by @ids (negative: at the front) behind a job that
 * holds the one thread until all are queued; checks that they complete in
 * the order @want (one thread: completion order is run order).
 */
static void front_check(struct bk *b, const int *ids, const int *want, int n)
{
	struct mon_worker *w = &b->workers[MON_BACKEND_MIGRATOR];
	struct mon_job *job = mon_job_alloc(), *next;
	int i, got = 0, entered = atomic_load(&pool_entered);
	int64_t end = test_now_ms() + 5000;

	atomic_store(&pool_release, false);
	job->client_id = 1000;
	job->run = pool_blocking_run;
	job->name = "blocker";
	job->args = json_object();
	mon_worker_submit(w, job);
	/* Only once the thread holds it: a job still queued would be overtaken. */
	while (atomic_load(&pool_entered) == entered && test_now_ms() < end)
		test_sleep_ms(1);
	assert_int_not_equal(atomic_load(&pool_entered), entered);
	for (i = 0; i < n; i++)
		front_queue(w, (uint64_t)(ids[i] < 0 ? -ids[i] : ids[i]), ids[i] < 0);
	atomic_store(&pool_release, true);
	while (got < n + 1) {
		struct pollfd pfd = {.fd = b->done.efd, .events = POLLIN};

		assert_int_equal(poll(&pfd, 1, 5000), 1);
		for (job = mon_done_take(&b->done); job; job = next) {
			next = job->next;
			assert_true(got < n + 1);
			if (got == 0)
				assert_int_equal(job->client_id, 1000); /* never overtaken */
			else if (job->client_id != (uint64_t)want[got - 1])
				fail_msg("job %d: got %llu want %d", got,
					 (unsigned long long)job->client_id, want[got - 1]);
			got++;
			mon_job_free(job);
		}
	}
}

/*
 * Jobs queued at the front (exec-oob) run before every job queued at the
 * back, whenever they came, and in their own order among themselves; the
 * job a thread already runs is not overtaken.
 */
static void test_worker_submit_front(void **state)
{
	static const int ids1[] = {2, 3, -10, 4, -11, -12}, want1[] = {10, 11, 12, 2, 3, 4};
	static const int ids2[] = {-20, 21, -22, 23}, want2[] = {20, 22, 21, 23};
	static const int ids3[] = {30, 31}, want3[] = {30, 31};
	static const int ids4[] = {-40, -41}, want4[] = {40, 41};
	struct bk *b = *state;

	front_check(b, ids1, want1, 6);
	/* The front starts over once its jobs ran, into an empty queue too. */
	front_check(b, ids2, want2, 4);
	front_check(b, ids3, want3, 2);
	front_check(b, ids4, want4, 2);
	front_check(b, ids1, want1, 6);
}

/*
 * A pool: a call that holds one thread (a slow backend call) does not hold
 * the other clients' calls behind it.  With one thread, job 2 waits for
 * job 1.
 */
static void test_worker_pool_overlaps(void **state)
{
	struct bk *b = *state;
	const struct mon_cmd *cmd = mon_cmd_find("query-status");
	struct mon_worker pool;
	struct mon_job *slow = mon_job_alloc(), *fast = mon_job_alloc(), *job;

	assert_int_equal(mon_worker_start(&pool, "vcpu", 0, &b->ctx, &b->done), -EINVAL);
	assert_int_equal(
		mon_worker_start(&pool, "vcpu", MON_WORKER_MAX_THREADS + 1, &b->ctx, &b->done),
		-EINVAL);
	assert_int_equal(mon_worker_start(&pool, "vcpu", 4, &b->ctx, &b->done), 0);
	atomic_store(&pool_release, false);
	slow->client_id = 1;
	slow->run = pool_blocking_run;
	slow->name = "slow";
	slow->args = json_object();
	fast->client_id = 2;
	fast->run = cmd->run;
	fast->name = cmd->name;
	fast->args = json_object();
	mon_worker_submit(&pool, slow);
	mon_worker_submit(&pool, fast);
	job = pool_wait_for(&b->done, 2, 2000);
	assert_non_null(job); /* answered while job 1 still holds its thread */
	assert_null(job->res.err_class);
	assert_non_null(json_object_get(job->res.ret, "status"));
	assert_false(atomic_load(&pool_release));
	mon_job_free(job);
	atomic_store(&pool_release, true);
	job = pool_wait_for(&b->done, 1, 5000);
	assert_non_null(job);
	mon_job_free(job);
	mon_worker_stop(&pool); /* joins all four */
	assert_int_equal(pool.state, MON_WORKER_IDLE);
	assert_int_equal(pool.nr_threads, 0);
}

static struct mon_event *events_wait(struct mon_events *e, int timeout_ms)
{
	struct pollfd pfd = {.fd = e->efd, .events = POLLIN};

	if (poll(&pfd, 1, timeout_ms) != 1)
		return NULL;
	return mon_events_take(e);
}

static void test_events_subscriber(void **state)
{
	struct bk *b = *state;
	const char *urls[2] = {b->fb->vcpu_events, b->fb->mig_events};
	struct mon_events e;
	struct mon_event *ev = NULL, *next;
	int tries;
	bool seen_stop = false;

	assert_int_equal(mon_events_start(&e, urls, 2, NULL), 0);
	/* pub/sub joins asynchronously: repeat until one STOP arrives. */
	for (tries = 0; tries < 50 && !seen_stop; tries++) {
		char *r = bk_cmd(b, "stop", NULL);

		free(r);
		ev = events_wait(&e, 100);
		if (!ev) { /* STOP comes only when the VM was running */
			r = bk_cmd(b, "cont", NULL);
			free(r);
			continue;
		}
		for (; ev; ev = next) {
			next = ev->next;
			if (!strcmp(ev->name, "STOP")) {
				seen_stop = true;
				assert_non_null(strstr(ev->line, "\"event\": \"STOP\""));
				assert_non_null(strstr(ev->line, "\"timestamp\": {\"seconds\": "));
				assert_memory_equal(ev->line + ev->len - 2, "\r\n", 2);
				assert_false(ev->migration);
			}
			mon_event_free(ev);
		}
	}
	assert_true(seen_stop);
	mon_events_stop(&e);
	mon_events_stop(&e); /* twice is harmless */
}

static void test_event_mapping(void **state)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Shutdown sd = CLEAVE__EVENTS__SHUTDOWN__INIT;
	Cleave__Events__Reset rs = CLEAVE__EVENTS__RESET__INIT;
	Cleave__Events__Migration mg = CLEAVE__EVENTS__MIGRATION__INIT;
	Cleave__Events__MigrationPass mp = CLEAVE__EVENTS__MIGRATION_PASS__INIT;
	struct mon_event *m;

	ev.timestamp_us = 1700000000123456ull;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN;
	ev.shutdown = &sd;
	sd.guest = true;
	sd.reason = "guest-shutdown";
	m = mon_event_from_proto(&ev);
	assert_non_null(m);
	assert_string_equal(m->line,
			    "{\"timestamp\": {\"seconds\": 1700000000, \"microseconds\": "
			    "123456}, \"event\": \"SHUTDOWN\", \"data\": {\"guest\": true, "
			    "\"reason\": \"guest-shutdown\"}}\r\n");
	assert_false(m->quit_shutdown);
	mon_event_free(m);
	sd.guest = false;
	sd.reason = "host-qmp-quit";
	m = mon_event_from_proto(&ev);
	assert_true(m->quit_shutdown);
	mon_event_free(m);

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	ev.reset = &rs;
	rs.reason = "";
	m = mon_event_from_proto(&ev);
	assert_non_null(
		strstr(m->line, "\"data\": {\"guest\": false, \"reason\": \"guest-reset\"}"));
	mon_event_free(m);

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
	ev.migration = &mg;
	mg.status = "active";
	m = mon_event_from_proto(&ev);
	assert_true(m->migration);
	assert_non_null(
		strstr(m->line, "\"event\": \"MIGRATION\", \"data\": {\"status\": \"active\"}"));
	mon_event_free(m);
	/* An empty detail is a status change: QEMU's shape exactly. */
	mg.detail = "";
	mg.restarts = 4;
	m = mon_event_from_proto(&ev);
	assert_non_null(strstr(m->line, "\"data\": {\"status\": \"active\"}}\r\n"));
	mon_event_free(m);
	mg.detail = "restarted";
	mg.resumes = 3;
	mg.resent_bytes = 12288;
	m = mon_event_from_proto(&ev);
	assert_true(m->migration);
	assert_non_null(strstr(m->line, "\"event\": \"MIGRATION\", \"data\": {\"status\": "
					"\"active\", \"x-cleave-detail\": \"restarted\", "
					"\"x-cleave-restarts\": 4, \"x-cleave-resumes\": 3, "
					"\"x-cleave-resent-bytes\": 12288}}\r\n"));
	mon_event_free(m);
	mg.status = "x-switchover-unknown";
	mg.detail = "disconnected";
	mg.resent_bytes = UINT64_MAX; /* clamped to JSON's signed range */
	m = mon_event_from_proto(&ev);
	assert_non_null(strstr(m->line, "{\"status\": \"x-switchover-unknown\", "
					"\"x-cleave-detail\": \"disconnected\""));
	assert_non_null(strstr(m->line, "\"x-cleave-resent-bytes\": 9223372036854775807}"));
	mon_event_free(m);
	mg.status = "";
	mg.detail = NULL;
	m = mon_event_from_proto(&ev);
	assert_non_null(strstr(m->line, "\"data\": {\"status\": \"none\"}}"));
	mon_event_free(m);

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
	ev.migration_pass = &mp;
	mp.pass = 3;
	m = mon_event_from_proto(&ev);
	assert_true(m->migration);
	assert_non_null(strstr(m->line, "\"data\": {\"pass\": 3}"));
	mon_event_free(m);

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY__NOT_SET;
	assert_null(mon_event_from_proto(&ev));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_vcpu_commands, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_migration_commands, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_tls_objects, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_query_migrate_not_utf8, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_dead_backend_fails_fast, bk_setup,
						bk_teardown),
		cmocka_unit_test_setup_teardown(test_resolve, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_abandon, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_blocktime, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_pause_recover_resume, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_during_restart, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_retry_only_cancel, bk_setup,
						bk_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_gives_up, bk_setup, bk_teardown),
		cmocka_unit_test(test_cancel_not_configured),
		cmocka_unit_test_setup_teardown(test_worker_order, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_worker_stop_with_queue, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_worker_pool_overlaps, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_worker_submit_front, bk_setup, bk_teardown),
		cmocka_unit_test_setup_teardown(test_events_subscriber, bk_setup, bk_teardown),
		cmocka_unit_test(test_event_mapping),
	};

	log_init("test-monitor-backend");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
