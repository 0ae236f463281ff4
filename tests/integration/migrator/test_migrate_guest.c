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
 * Usage: test_migrate_guest CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR
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
#include <sys/wait.h>
#include <unistd.h>

#include "proto/migrator.pb-c.h"
#include "tests/integration/vcpu/harness.h"

#define RAM (128ull << 20)

static const char *vcpu_bin, *guest_path, *migrator_bin;

struct mproc {
	pid_t pid;
	char rpc_url[160], events_url[160];
	struct rpc_client *rpc;
};

static int mig_spawn(struct vt *t, struct mproc *m, const char *incoming)
{
	char ctl[16], ram[64];
	const char *argv[20];
	unsigned int n = 0;

	snprintf(m->rpc_url, sizeof(m->rpc_url), "ipc://%s/migrator.rpc", t->dir);
	snprintf(m->events_url, sizeof(m->events_url), "ipc://%s/migrator.events", t->dir);
	snprintf(ctl, sizeof(ctl), "%d", t->ctl.fd);
	if (t->nr_ram == 2)
		snprintf(ram, sizeof(ram), "%d,%d", t->ram[0].fd, t->ram[1].fd);
	else
		snprintf(ram, sizeof(ram), "%d", t->ram[0].fd);
	argv[n++] = migrator_bin;
	argv[n++] = "--ctl-fd";
	argv[n++] = ctl;
	argv[n++] = "--ram-fds";
	argv[n++] = ram;
	argv[n++] = "--vcpu-rpc";
	argv[n++] = t->rpc_url;
	argv[n++] = "--rpc";
	argv[n++] = m->rpc_url;
	argv[n++] = "--events";
	argv[n++] = m->events_url;
	if (incoming) {
		argv[n++] = "--incoming";
		argv[n++] = incoming;
	}
	argv[n] = NULL;
	m->pid = fork();
	if (m->pid < 0)
		return -errno;
	if (m->pid == 0) {
		fcntl(t->ctl.fd, F_SETFD, 0);
		for (unsigned int i = 0; i < t->nr_ram; i++)
			fcntl(t->ram[i].fd, F_SETFD, 0);
		execv(migrator_bin, (char *const *)argv);
		_exit(127);
	}
	return rpc_client_open(&m->rpc, m->rpc_url);
}

static void mig_stop(struct mproc *m)
{
	int st;

	if (m->rpc)
		rpc_client_close(m->rpc);
	m->rpc = NULL;
	if (m->pid <= 0)
		return;
	kill(m->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			return;
		}
		usleep(20000);
	}
	kill(m->pid, SIGKILL);
	waitpid(m->pid, &st, 0);
	m->pid = 0;
}

static int mig_call(struct mproc *m, uint32_t method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep)
{
	char err[256] = "";
	int ret = rpc_call(m->rpc, method, req, rd, rep, 3000, err, sizeof(err));

	if (ret)
		fprintf(stderr, "migrator rpc %u: %d %s\n", method, ret, err);
	return ret;
}

static unsigned int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	close(fd);
	return ntohs(a.sin_port);
}

struct hb {
	unsigned int cpu;
	uint64_t gen, ns;
};

/* Last heartbeat of @cpu in the serial output; 0 if none. */
static uint64_t hb_last(const struct vt *t, unsigned int cpu, uint64_t *gen, unsigned int *count)
{
	const char *p = t->serial.buf;
	uint64_t ns = 0;
	struct hb h;

	*count = 0;
	while (p && (p = strstr(p, "HB "))) {
		if (sscanf(p, "HB %u %" SCNu64 " %" SCNu64, &h.cpu, &h.gen, &h.ns) == 3 &&
		    h.cpu == cpu) {
			if (h.ns < ns)
				fail_msg("cpu %u guest time went back: %" PRIu64 " after %" PRIu64,
					 cpu, h.ns, ns);
			ns = h.ns;
			*gen = h.gen;
			(*count)++;
		}
		p += 3;
	}
	return ns;
}

static Cleave__Migrator__MigrationInfo *query(struct mproc *m)
{
	ProtobufCMessage *rep = NULL;

	assert_int_equal(mig_call(m, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
				  &cleave__migrator__migration_info__descriptor, &rep),
			 0);
	return (Cleave__Migrator__MigrationInfo *)rep;
}

static int vcpu_state(struct vt *t)
{
	Cleave__Vcpu__StatusReply *st;
	int s;

	assert_int_equal(vt_status(t, &st), 0);
	s = st->state;
	rpc_msg_free(&st->base);
	return s;
}

/* Compares [from, to) of region 0 of both VMs. */
static void ram_assert_equal(struct vt *a, struct vt *b, uint64_t from, uint64_t to)
{
	if (memcmp((uint8_t *)a->ram[0].base + from, (uint8_t *)b->ram[0].base + from, to - from)) {
		for (uint64_t o = from; o < to; o += 4096)
			if (memcmp((uint8_t *)a->ram[0].base + o, (uint8_t *)b->ram[0].base + o,
				   4096))
				fail_msg("RAM differs at gpa 0x%" PRIx64, o);
	}
}

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
	unsigned int n, port = free_port();
	int status;

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
	assert_int_equal(mig_spawn(dst, &mdst, uri), 0);
	assert_int_equal(mig_spawn(src, &msrc, NULL), 0);

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
	mi = query(&mdst);
	assert_string_equal(mi->status, "");
	rpc_msg_free(&mi->base);

	usleep(300000); /* a few more heartbeats to compare with */
	mreq.uri = uri;
	t0 = vt_now_ms();
	assert_int_equal(
		mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base, NULL, NULL),
		0);
	for (;;) {
		mi = query(&msrc);
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
	assert_int_equal(vcpu_state(src), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	assert_int_equal(vcpu_state(dst), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	mi = query(&mdst);
	assert_string_equal(mi->status, "completed");
	rpc_msg_free(&mi->base);
	if (!dirty)
		/* Idle: the test area was stamped before and is only read since. */
		ram_assert_equal(src, dst, 4ull << 20, 32ull << 20);

	vt_drain(src, 50);
	for (unsigned int c = 0; c < cpus; c++)
		src_ns[c] = hb_last(src, c, &gen0, &n);
	/* The destination guest keeps beating, checking its pages, with time moving on. */
	for (unsigned int c = 0; c < cpus; c++) {
		uint64_t ns;

		for (int i = 0; i < 100; i++) {
			vt_drain(dst, 50);
			ns = hb_last(dst, c, &gen1, &n);
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

	mig_stop(&msrc);
	mig_stop(&mdst);
	vt_simple(dst, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	vt_simple(src, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	if (vt_wait(dst, 5000, &status))
		vt_kill(dst);
	if (vt_wait(src, 5000, &status))
		vt_kill(src);
	vt_fini(src);
	vt_fini(dst);
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
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	Cleave__Migrator__Parameters params = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char uri[64];
	uint64_t gen, t0;
	unsigned int n0, n1, port = free_port();
	int status;

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
	assert_int_equal(mig_spawn(dst, &mdst, uri), 0);
	assert_int_equal(mig_spawn(src, &msrc, NULL), 0);
	caps.multifd = true;
	caps.has_multifd = true;
	params.multifd_channels = 2;
	params.max_bandwidth = 4 << 20; /* 32 MiB take ~8 s */
	params.has_multifd_channels = params.has_max_bandwidth = true;
	assert_int_equal(mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES,
				  &caps.base, NULL, NULL),
			 0);
	assert_int_equal(mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS,
				  &params.base, NULL, NULL),
			 0);
	mreq.uri = uri;
	assert_int_equal(
		mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base, NULL, NULL),
		0);
	usleep(700000);
	mi = query(&msrc);
	assert_string_equal(mi->status, "active");
	assert_true(mi->ram->transferred > 0);
	rpc_msg_free(&mi->base);
	if (kill_dst) {
		kill(mdst.pid, SIGKILL);
		waitpid(mdst.pid, &status, 0);
		mdst.pid = 0;
	} else {
		assert_int_equal(
			mig_call(&msrc, CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, NULL, NULL, NULL),
			0);
	}
	t0 = vt_now_ms();
	for (;;) {
		mi = query(&msrc);
		if (!strcmp(mi->status, kill_dst ? "failed" : "cancelled"))
			break;
		if (vt_now_ms() - t0 > 15000)
			fail_msg("source status %s", mi->status);
		rpc_msg_free(&mi->base);
		usleep(10000);
	}
	fprintf(stderr, "#   source %s after %" PRIu64 " ms: %s\n", mi->status, vt_now_ms() - t0,
		mi->error_desc);
	assert_true(mi->error_desc && mi->error_desc[0]);
	rpc_msg_free(&mi->base);
	/* The source guest runs on, the destination one never ran. */
	assert_int_equal(vcpu_state(src), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	assert_int_equal(vcpu_state(dst), CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	vt_drain(src, 50);
	hb_last(src, 0, &gen, &n0);
	vt_drain(src, 500);
	hb_last(src, 0, &gen, &n1);
	assert_true(n1 > n0);
	assert_int_equal(vt_count(&src->serial, 0, "ASSERT"), 0);
	assert_int_equal(vt_count(&dst->serial, 0, "HB "), 0);

	mig_stop(&msrc);
	mig_stop(&mdst);
	vt_simple(dst, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	vt_simple(src, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	if (vt_wait(dst, 5000, &status))
		vt_kill(dst);
	if (vt_wait(src, 5000, &status))
		vt_kill(src);
	vt_fini(src);
	vt_fini(dst);
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
	migrator_bin = argv[3];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
