/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Live migration between two real cleave-vcpu processes running the
 * embedded guest, through two real cleave-migrator processes driven over
 * their RPC sockets (as the monitor does), over loopback TCP.
 *
 * Checks: both migrators report completed; the source vcpu-proc is left in
 * postmigrate, the destination runs; the destination guest keeps its
 * heartbeats, its own page checks pass (no ASSERT), its time is monotonic
 * across the move; idle guests: the test area is byte-identical on both
 * sides (the source is paused, the destination only reads it).
 *
 * Usage: test-migrate-guest CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "mig-harness.h"

#define RAM (128ull << 20)
/* reconnect-timeout of the destination-killed case, and what error-desc says then */
#define MIG_LOST_PEER_MS  500u
#define MIG_LOST_PEER_ERR "lost the destination"

static const char *vcpu_bin, *guest_path;

static void run(unsigned int cpus, unsigned int channels, bool dirty)
{
	struct vt *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct mproc msrc = {0}, mdst = {0};
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	Cleave__Migrator__Parameters params = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char append[128], uri[64], needle[16];
	uint64_t src_ns[2] = {0}, gen0 = 0, gen1 = 0, t0;
	unsigned int n, port = mig_free_port();

	fprintf(stderr, "# %u vCPU(s), %u channel(s), %s guest\n", cpus, channels,
		dirty ? "dirty" : "idle");
	assert_int_equal(vt_init(src, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_init(dst, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_guest_open(src, guest_path), 0);
	assert_int_equal(vt_guest_open(dst, guest_path), 0);
	snprintf(append, sizeof(append), "mode=%s mib=32 hb=100 rate=%u cpus=%u",
		 dirty ? "dirty" : "idle", dirty ? 200 : 0, cpus);
	assert_int_equal(vt_spawn(src, cpus, append, false, NULL), 0);
	assert_int_equal(vt_spawn(dst, cpus, append, true, NULL), 0);
	for (unsigned int c = 0; c < cpus; c++) {
		snprintf(needle, sizeof(needle), "HB %u ", c);
		if (vt_expect(src, &src->serial, 0, needle, 15000) < 0)
			fail_msg("no heartbeat of cpu %u:\n%s\n%s", c, src->serial.buf,
				 src->log.buf);
	}
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	assert_int_equal(mig_spawn(dst, &mdst, uri, NULL), 0);
	assert_int_equal(mig_spawn(src, &msrc, NULL, NULL), 0);

	caps.multifd = channels > 1;
	caps.auto_converge = true;
	caps.events = true;
	caps.has_multifd = caps.has_auto_converge = caps.has_events = true;
	params.multifd_channels = channels;
	params.has_multifd_channels = true;
	assert_int_equal(mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES,
				  &caps.base, NULL, NULL),
			 0);
	assert_int_equal(mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS,
				  &params.base, NULL, NULL),
			 0);
	/* Before any migration: status "" (QMP {}). */
	mi = mig_query(&mdst);
	assert_string_equal(mi->status, "");
	rpc_msg_free(&mi->base);

	usleep(300000); /* a few more heartbeats to compare with */
	mreq.uri = uri;
	t0 = vt_now_ms();
	assert_int_equal(
		mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base, NULL, NULL),
		0);
	for (;;) {
		mi = mig_query(&msrc);
		if (strcmp(mi->status, "setup") && strcmp(mi->status, "active") &&
		    strcmp(mi->status, "device") && strcmp(mi->status, "cancelling"))
			break;
		rpc_msg_free(&mi->base);
		mi = NULL;
		if (vt_now_ms() - t0 > 60000)
			fail_msg("migration did not finish in 60 s");
		usleep(10000);
	}
	if (strcmp(mi->status, "completed"))
		fail_msg("source: %s: %s\nsrc log:\n%s\ndst log:\n%s", mi->status, mi->error_desc,
			 src->log.buf, dst->log.buf);
	fprintf(stderr,
		"#   total %" PRIu64 " ms, downtime %" PRIu64 " ms, %" PRIu64 " bytes, %" PRIu64
		" rounds\n",
		mi->total_time, mi->downtime, mi->ram->transferred, mi->ram->dirty_sync_count);
	rpc_msg_free(&mi->base);
	/* The guest runs on exactly one side. */
	assert_int_equal(mig_vm_state(src), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	assert_int_equal(mig_vm_state(dst), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	mi = mig_query_settled(&mdst, 3000);
	assert_string_equal(mi->status, "completed");
	rpc_msg_free(&mi->base);
	if (!dirty)
		/* Idle: the test area was stamped before and is only read since. */
		mig_ram_assert_equal(src, dst, 4ull << 20, 32ull << 20);

	vt_drain(src, 50);
	for (unsigned int c = 0; c < cpus; c++)
		src_ns[c] = mig_hb_last(src, c, &gen0, &n);
	/* The destination guest keeps beating, checking its pages, with time moving on. */
	for (unsigned int c = 0; c < cpus; c++) {
		uint64_t ns;

		for (int i = 0; i < 100; i++) {
			vt_drain(dst, 50);
			ns = mig_hb_last(dst, c, &gen1, &n);
			if (n >= 5)
				break;
		}
		if (n < 5)
			fail_msg("destination cpu %u: %u heartbeats\nserial:\n%s\nlog:\n%s", c, n,
				 dst->serial.buf, dst->log.buf);
		assert_true(ns > src_ns[c]);
		if (dirty)
			assert_true(gen1 >= gen0);
	}
	assert_int_equal(vt_count(&dst->serial, 0, "ASSERT"), 0);
	assert_int_equal(vt_count(&src->serial, 0, "ASSERT"), 0);

	mig_vm_end(dst, &mdst);
	mig_vm_end(src, &msrc);
	free(src);
	free(dst);
}

/*
 * The destination migrator dies (SIGKILL) or the operator cancels in the
 * middle of a slow migration: the source reports failed/cancelled and its
 * guest keeps running; the destination guest never ran.
 */
static void run_interrupted(bool kill_dst)
{
	struct vt *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct mproc msrc = {0}, mdst = {0};
	Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char uri[64];
	uint64_t gen, t0, dt;
	unsigned int n0, n1, port = mig_free_port();

	fprintf(stderr, "# %s during a migration\n", kill_dst ? "destination killed" : "cancel");
	assert_int_equal(vt_init(src, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_init(dst, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_guest_open(src, guest_path), 0);
	assert_int_equal(vt_guest_open(dst, guest_path), 0);
	assert_int_equal(vt_spawn(src, 1, "mode=dirty mib=32 hb=100 rate=50 cpus=1", false, NULL),
			 0);
	assert_int_equal(vt_spawn(dst, 1, "mode=dirty mib=32 hb=100 rate=50 cpus=1", true, NULL),
			 0);
	if (vt_expect(src, &src->serial, 0, "HB 0 ", 15000) < 0)
		fail_msg("no heartbeat:\n%s\n%s", src->serial.buf, src->log.buf);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	assert_int_equal(mig_spawn(dst, &mdst, uri, NULL), 0);
	assert_int_equal(mig_spawn(src, &msrc, NULL, NULL), 0);
	/*
	 * 32 MiB take ~8 s.  A lost destination is waited for during
	 * reconnect-timeout: 500 ms keeps the failure prompt.
	 */
	mig_configure(&msrc, 2, 4 << 20, MIG_LOST_PEER_MS);
	mreq.uri = uri;
	assert_int_equal(
		mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base, NULL, NULL),
		0);
	usleep(700000);
	mi = mig_query(&msrc);
	if (strcmp(mi->status, "active"))
		fail_msg("source %s before the interruption: %s", mi->status, mi->error_desc);
	assert_true(mi->ram->transferred > 0);
	rpc_msg_free(&mi->base);
	if (kill_dst) {
		mig_kill(&mdst);
	} else {
		assert_int_equal(
			mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, NULL, NULL, NULL),
			0);
	}
	t0 = vt_now_ms();
	for (;;) {
		mi = mig_query(&msrc);
		if (!strcmp(mi->status, kill_dst ? "failed" : "cancelled"))
			break;
		if (vt_now_ms() - t0 > 15000)
			fail_msg("source status %s", mi->status);
		rpc_msg_free(&mi->base);
		usleep(10000);
	}
	dt = vt_now_ms() - t0;
	fprintf(stderr, "#   source %s after %" PRIu64 " ms: %s\n", mi->status, dt, mi->error_desc);
	assert_true(mi->error_desc && mi->error_desc[0]);
	if (kill_dst) {
		/* Waited for the destination for reconnect-timeout, not much longer. */
		if (dt < MIG_LOST_PEER_MS - 50 || dt > MIG_LOST_PEER_MS + 2000)
			fail_msg("failed after %" PRIu64 " ms, reconnect-timeout %u ms", dt,
				 MIG_LOST_PEER_MS);
		if (!strstr(mi->error_desc, MIG_LOST_PEER_ERR))
			fail_msg("error-desc \"%s\" does not say \"%s\"", mi->error_desc,
				 MIG_LOST_PEER_ERR);
	}
	rpc_msg_free(&mi->base);
	/* The source guest runs on, the destination one never ran. */
	assert_int_equal(mig_vm_state(src), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	assert_int_equal(mig_vm_state(dst), CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	vt_drain(src, 50);
	mig_hb_last(src, 0, &gen, &n0);
	vt_drain(src, 500);
	mig_hb_last(src, 0, &gen, &n1);
	assert_true(n1 > n0);
	assert_int_equal(vt_count(&src->serial, 0, "ASSERT"), 0);
	assert_int_equal(vt_count(&dst->serial, 0, "HB "), 0);

	mig_vm_end(dst, &mdst);
	mig_vm_end(src, &msrc);
	free(src);
	free(dst);
}

static void test_destination_killed(void **state)
{
	run_interrupted(true);
}

static void test_cancel(void **state)
{
	run_interrupted(false);
}

static void test_idle_1cpu_1ch(void **state)
{
	run(1, 1, false);
}

static void test_idle_2cpu_4ch(void **state)
{
	run(2, 4, false);
}

static void test_dirty_1cpu_4ch(void **state)
{
	run(1, 4, true);
}

static void test_dirty_2cpu_1ch(void **state)
{
	run(2, 1, true);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_idle_1cpu_1ch),	   cmocka_unit_test(test_idle_2cpu_4ch),
		cmocka_unit_test(test_dirty_1cpu_4ch),	   cmocka_unit_test(test_dirty_2cpu_1ch),
		cmocka_unit_test(test_destination_killed), cmocka_unit_test(test_cancel),
	};

	if (argc != 4) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR\n", argv[0]);
		return 1;
	}
	vt_require_kvm();
	vcpu_bin = argv[1];
	guest_path = argv[2];
	mig_harness_init(argv[3]);
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
