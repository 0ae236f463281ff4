/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Resume (docs/INVARIANTS.md, invariant 6), the migrations that must not
 * complete: a destination migrator killed for good (in precopy, in the
 * switchover, after it loaded the state): the source fails after
 * reconnect-timeout and runs its guest, or reports x-switchover-unknown
 * and RESOLVE decides; a source migrator that keeps dying (the restart
 * limit); migrate_cancel right after a restart.
 * Usage: test_resume_errors CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/migrator-info.h"
#include "resume-nodes.h"

#define LOST_PEER_MS 1000

/*
 * The migration did not complete: the source guest runs, the destination's
 * never ran, and the source vcpu-proc resumed @resumes times.  Frees both.
 */
static void end_with_source_running(struct node *src, struct node *dst, unsigned int resumes)
{
	uint64_t gen;
	unsigned int n0, n1;

	assert_int_equal(mig_vm_state(&src->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	assert_int_not_equal(mig_vm_state(&dst->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	vt_drain(&src->vm, 50);
	mig_hb_last(&src->vm, 0, &gen, &n0);
	vt_drain(&src->vm, 400);
	mig_hb_last(&src->vm, 0, &gen, &n1);
	assert_true(n1 > n0);
	assert_int_equal(vt_count(&src->vm.serial, 0, "ASSERT"), 0);
	vt_drain(&dst->vm, 0);
	assert_int_equal(vt_count(&dst->vm.serial, 0, "HB "), 0);
	node_events_poll(src);
	assert_int_equal(src->resumes, resumes);
	node_free(src);
	node_free(dst);
}

/*
 * The destination migrator is killed and not started again: the source
 * waits reconnect-timeout, fails, and runs its guest (resumed if it had
 * paused it: the switchover cases, not committed yet).  Killed after the
 * destination loaded the state, the source may have committed: then it
 * stays paused (x-switchover-unknown) until RESOLVE run_on=source.
 */
static void run_lost_destination(enum phase ph)
{
	bool switchover = ph == PH_SWITCH_EARLY || ph == PH_SWITCH_LATE;
	const char *hooks = switchover ? HOOKS ",switchover_delay_ms=300" : HOOKS;
	struct node *src = node_new(false, hooks), *dst = node_new(true, hooks);
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t t0, t_kill, dt;

	fprintf(stderr, "# destination migrator killed for good in %s, reconnect-timeout %u ms\n",
		phase_names[ph], LOST_PEER_MS);
	mig_configure(&src->mig, CHANNELS, BANDWIDTH, LOST_PEER_MS);
	node_watch(src);
	node_migrate(src, dst->uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, ph, t0);
	mig_kill(&dst->mig);
	t_kill = vt_now_ms();
	mi = wait_finished(src, dst, t0, MIG_DEADLINE);
	dt = vt_now_ms() - t_kill;
	fprintf(stderr, "#   source %s %" PRIu64 " ms after the kill: %s\n", mi->status, dt,
		mi->error_desc);
	if (!strcmp(mi->status, "x-switchover-unknown") && ph == PH_SWITCH_LATE) {
		Cleave__Migrator__ResolveRequest rr = CLEAVE__MIGRATOR__RESOLVE_REQUEST__INIT;
		Cleave__Migrator__MigrationInfo *ri;

		/*
		 * The source had committed (the hook's second delay is before the
		 * Commit is sent): the guest may run nowhere, never on both sides.
		 */
		sleep_ms(300);
		node_events_poll(src);
		assert_int_equal(src->resumes, 0);
		assert_int_not_equal(mig_vm_state(&src->vm),
				     CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
		assert_int_not_equal(mig_vm_state(&dst->vm),
				     CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
		rr.run_on = "source";
		assert_int_equal(mig_call(&src->mig, CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE,
					  &rr.base, NULL, NULL),
				 0);
		ri = mig_query(&src->mig);
		fprintf(stderr, "#   resolved run_on=source: %s: %s\n", ri->status, ri->error_desc);
		rpc_msg_free(&ri->base);
	} else if (strcmp(mi->status, "failed")) {
		fail_nodes(src, dst, "source %s, not failed", mi->status);
	}
	assert_true(mi->error_desc && mi->error_desc[0]);
	/* reconnect-timeout, plus the switchover delay and slack for a loaded host */
	if (dt + 50 < LOST_PEER_MS || dt > LOST_PEER_MS + (switchover ? SWITCH_DELAY : 0) + 1500)
		fail_nodes(src, dst,
			   "failed %" PRIu64 " ms after the kill, reconnect-timeout %u ms", dt,
			   LOST_PEER_MS);
	rpc_msg_free(&mi->base);
	/* Paused for the switchover, resumed exactly once; never paused in precopy. */
	end_with_source_running(src, dst, switchover ? 1 : 0);
}

static void test_lost_destination_active(void **state)
{
	(void)state;
	run_lost_destination(PH_FIRST);
}

static void test_lost_destination_switchover(void **state)
{
	(void)state;
	run_lost_destination(PH_SWITCH_EARLY);
}

static void test_lost_destination_loaded(void **state)
{
	(void)state;
	run_lost_destination(PH_SWITCH_LATE);
}

/* Waits until @m answers QUERY with restarts >= @want; returns its info. */
static Cleave__Migrator__MigrationInfo *wait_restarts(struct node *src, struct node *dst,
						      struct mproc *m, uint32_t want)
{
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t t0 = vt_now_ms();

	for (;;) {
		mi = mig_query_try(m, 300);
		if (mi && (mi->restarts >= want || !mig_status_running(mi->status)))
			return mi;
		if (mi)
			rpc_msg_free(&mi->base);
		if (vt_now_ms() - t0 > 10000)
			fail_nodes(src, dst, "restart %u not reported within 10 s", want);
		nodes_drain(src, dst);
		sleep_ms(10);
	}
}

/*
 * Starts a migration at 4 MiB/s (the 32 MiB area alone takes 8 s, longer
 * than what the caller does to it), reconnect-timeout 1 s on both sides;
 * returns its start time once it is in the first pass.
 */
static uint64_t start_slow_migration(struct node *src, struct node *dst)
{
	uint64_t t0;

	mig_configure(&src->mig, CHANNELS, 4u << 20, 1000);
	mig_configure(&dst->mig, CHANNELS, 0, 1000);
	node_watch(src);
	node_migrate(src, dst->uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, PH_FIRST, t0);
	return t0;
}

/*
 * The source migrator keeps dying and the destination is out of reach, so
 * no restarted process moves any data: restarts 1..MAX_RESTARTS in a row
 * resume, the next one fails the migration, with the source guest running.
 * (Kills that each leave the migration further on never give up:
 * test-migrator-proc's postcopy kills.)
 */
static void test_restart_limit(void **state)
{
	struct node *src = node_new(false, HOOKS), *dst = node_new(true, HOOKS);
	Cleave__Migrator__MigrationInfo *mi;
	struct tcp_proxy *proxy;
	unsigned int pport;
	char uri[64];
	uint64_t t0;

	(void)state;
	fprintf(stderr, "# source migrator killed %u times in one migration\n", MAX_RESTARTS + 1);
	assert_int_equal(tcp_proxy_start(&proxy, dst->port, &pport), 0);
	live_proxy = proxy;
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", pport);
	/* A reconnect timeout that outlasts every restart below. */
	mig_configure(&src->mig, CHANNELS, 4u << 20, 60000);
	mig_configure(&dst->mig, CHANNELS, 0, 1000);
	node_watch(src);
	node_migrate(src, uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, PH_FIRST, t0);
	live_proxy = NULL;
	tcp_proxy_stop(proxy); /* the destination is out of reach from now on */
	for (uint32_t k = 1; k <= MAX_RESTARTS + 1; k++) {
		node_restart(src, rnd_range(0, 50));
		mi = wait_restarts(src, dst, &src->mig, k);
		fprintf(stderr, "#   restart %u at +%" PRIu64 " ms: %s, restarts %u, resumes %u\n",
			k, vt_now_ms() - t0, mi->status, mi->restarts,
			(unsigned int)mig_info_counter(mi, "resumes"));
		if (k <= MAX_RESTARTS && !mig_status_running(mi->status))
			fail_nodes(src, dst, "restart %u: %s: %s", k, mi->status, mi->error_desc);
		rpc_msg_free(&mi->base);
		sleep_ms(100);
	}
	mi = wait_finished(src, dst, t0, 15000);
	fprintf(stderr, "#   source %s: %s\n", mi->status, mi->error_desc);
	if (strcmp(mi->status, "failed"))
		fail_nodes(src, dst, "source %s after %u restarts", mi->status, MAX_RESTARTS + 1);
	assert_non_null(strstr(mi->error_desc, "in a row without moving any data"));
	rpc_msg_free(&mi->base);
	end_with_source_running(src, dst, 0);
}

/* migrate_cancel reaches the source migrator right after its restart. */
static void test_cancel_after_restart(void **state)
{
	struct node *src = node_new(false, HOOKS), *dst = node_new(true, HOOKS);
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t t0, t_cancel;
	int ret = -1;

	(void)state;
	fprintf(stderr, "# migrate_cancel right after the source migrator restarted\n");
	t0 = start_slow_migration(src, dst);
	node_restart(src, 0);
	/* The first request the new process can take. */
	while (ret && vt_now_ms() - src->mig.spawn_ms < 10000)
		ret = mig_call_quiet(&src->mig, CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, NULL, NULL,
				     NULL, 200);
	t_cancel = vt_now_ms();
	assert_int_equal(ret, 0);
	fprintf(stderr, "#   cancel taken %" PRIu64 " ms after the restart\n",
		t_cancel - src->mig.spawn_ms);
	mi = wait_finished(src, dst, t0, MIG_DEADLINE);
	fprintf(stderr, "#   source %s %" PRIu64 " ms after the cancel (restarts %u): %s\n",
		mi->status, vt_now_ms() - t_cancel, mi->restarts, mi->error_desc);
	if (strcmp(mi->status, "cancelled"))
		fail_nodes(src, dst, "source %s: %s", mi->status, mi->error_desc);
	rpc_msg_free(&mi->base);
	end_with_source_running(src, dst, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_lost_destination_active, resume_teardown),
		cmocka_unit_test_teardown(test_lost_destination_switchover, resume_teardown),
		cmocka_unit_test_teardown(test_lost_destination_loaded, resume_teardown),
		cmocka_unit_test_teardown(test_restart_limit, resume_teardown),
		cmocka_unit_test_teardown(test_cancel_after_restart, resume_teardown),
	};

	resume_init(argc, argv);
	return cmocka_run_group_tests_name("resume-errors", tests, NULL, NULL);
}
