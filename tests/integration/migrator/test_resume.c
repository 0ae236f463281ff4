/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Issue 6: a cleave-migrator SIGKILLed at any instant, on either side, is
 * started again with the identical argv and fds (as the launcher does) and
 * the migration resumes; a cut TCP connection is survived the same way; a
 * peer that does not come back fails the migration after reconnect-timeout
 * with the source guest running.
 *
 * Every completed migration is checked: both sides completed, the source
 * vcpu-proc postmigrate and never resumed after the switchover (RESUME
 * events of its vcpu-proc), the destination running, destination RAM at
 * switchover (hook ram_hash=1) equal to the source RAM, the destination
 * guest's heartbeats going on with its page checks passing.
 *
 * Random instants come from a seed printed at the start; CLEAVE_TEST_SEED
 * replays one; TEST_FILTER / TEST_SKIP (cmocka wildcards) pick tests.
 * Usage: test_resume CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR
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

#include "mig-harness.h"
#include "proto/events.pb-c.h"
#include "tcp-proxy.h"

#define RAM	 (128ull << 20)
#define CPUS	 2
#define CHANNELS 2
/* 32 MiB test area dirtied at 8 MiB/s, sent at 24 MiB/s: ~1.5-2 s, a few rounds. */
#define GUEST_APPEND "mode=dirty mib=32 hb=100 rate=8 cpus=2"
#define BANDWIDTH    (24ull << 20)
#define HOOKS	     "ram_hash=1"
#define SWITCH_DELAY 300 /* ms, hook switchover_delay_ms of the phase tests */
#define MIG_DEADLINE 60000
/* what MIG_MAX_RESTARTS allows per session and side */
#define MAX_RESTARTS 8

static const char *vcpu_bin, *guest_path;
static uint64_t rng;

static uint64_t rnd(void)
{
	/* xorshift64*: the same seed gives the same instants */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

static unsigned int rnd_range(unsigned int lo, unsigned int hi)
{
	return lo + (unsigned int)(rnd() % (hi - lo + 1));
}

static void sleep_ms(unsigned int ms)
{
	usleep(ms * 1000);
}

/* A VM and its migrator; a destination listens on @uri. */
struct node {
	struct vt vm;
	struct mproc mig;
	char uri[64];		     /* destination: what its migrator listens on */
	unsigned int port;	     /* its port */
	struct rpc_sub *vm_ev;	     /* vcpu-proc events, while it is a source */
	unsigned int stops, resumes; /* STOP / RESUME events seen on vm_ev */
};

/* What a failed test left behind, freed by its teardown. */
static struct node *live_nodes[4];
static struct tcp_proxy *live_proxy;

static struct node *node_new(bool incoming, const char *hooks)
{
	struct node *n = calloc(1, sizeof(*n));
	char needle[16];

	assert_non_null(n);
	for (unsigned int i = 0; i < 4; i++) {
		if (!live_nodes[i]) {
			live_nodes[i] = n;
			break;
		}
	}
	assert_int_equal(vt_init(&n->vm, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_guest_open(&n->vm, guest_path), 0);
	assert_int_equal(vt_spawn(&n->vm, CPUS, GUEST_APPEND, incoming, NULL), 0);
	if (incoming) {
		n->port = mig_free_port();
		snprintf(n->uri, sizeof(n->uri), "tcp:127.0.0.1:%u", n->port);
		assert_int_equal(mig_spawn(&n->vm, &n->mig, n->uri, hooks), 0);
		return n;
	}
	for (unsigned int c = 0; c < CPUS; c++) {
		snprintf(needle, sizeof(needle), "HB %u ", c);
		if (vt_expect(&n->vm, &n->vm.serial, 0, needle, 15000) < 0)
			fail_msg("no heartbeat of cpu %u:\n%s\n%s", c, n->vm.serial.buf,
				 n->vm.log.buf);
	}
	assert_int_equal(mig_spawn(&n->vm, &n->mig, NULL, hooks), 0);
	return n;
}

static void node_free(struct node *n)
{
	if (!n)
		return;
	for (unsigned int i = 0; i < 4; i++)
		if (live_nodes[i] == n)
			live_nodes[i] = NULL;
	if (n->vm_ev)
		rpc_sub_close(n->vm_ev);
	mig_vm_end(&n->vm, &n->mig);
	free(n);
}

/* Counts the STOP and RESUME events that arrived on @n->vm_ev. */
static void node_events_poll(struct node *n)
{
	Cleave__Events__Event *ev;

	while (n->vm_ev && rpc_sub_recv(n->vm_ev, &ev, NULL, 0) == 0) {
		if (ev->body_case == CLEAVE__EVENTS__EVENT__BODY_STOP)
			n->stops++;
		else if (ev->body_case == CLEAVE__EVENTS__EVENT__BODY_RESUME)
			n->resumes++;
		rpc_msg_free(&ev->base);
	}
}

/*
 * Subscribes to the vcpu-proc events of a source, and proves the
 * subscription works (a pause and resume of our own must show up) before
 * the counts start at zero.
 */
static void node_watch(struct node *n)
{
	Cleave__Vcpu__PauseRequest pr = CLEAVE__VCPU__PAUSE_REQUEST__INIT;

	assert_int_equal(rpc_sub_open(&n->vm_ev), 0);
	assert_int_equal(rpc_sub_dial(n->vm_ev, n->vm.events_url), 0);
	pr.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED;
	for (int i = 0; i < 40 && !n->resumes; i++) {
		assert_int_equal(
			vt_call(&n->vm, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &pr.base, NULL, NULL),
			0);
		assert_int_equal(vt_simple(&n->vm, CLEAVE__VCPU__METHOD__METHOD_RESUME), 0);
		sleep_ms(50);
		node_events_poll(n);
	}
	assert_true(n->resumes > 0);
	n->stops = n->resumes = 0;
}

static void node_migrate(struct node *src, const char *uri)
{
	Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;

	mreq.uri = (char *)uri;
	assert_int_equal(mig_call(&src->mig, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base,
				  NULL, NULL),
			 0);
}

/* Keeps the serial and log pipes of both VMs drained (a full pipe stalls a vCPU). */
static void nodes_drain(struct node *a, struct node *b)
{
	vt_drain(&a->vm, 0);
	if (b)
		vt_drain(&b->vm, 0);
}

static void node_restart(struct node *n, unsigned int delay_ms)
{
	mig_kill(&n->mig);
	sleep_ms(delay_ms);
	assert_int_equal(mig_respawn(&n->mig), 0);
}

/* Dumps both migrator logs and fails. */
#define fail_nodes(src, dst, ...)                                                                  \
	do {                                                                                       \
		mig_log_dump(&(src)->mig, "source migrator log", 6000);                            \
		mig_log_dump(&(dst)->mig, "destination migrator log", 6000);                       \
		fail_msg(__VA_ARGS__);                                                             \
	} while (0)

/* Polls the source until the migration left setup/active/device; returns its info. */
static Cleave__Migrator__MigrationInfo *wait_finished(struct node *src, struct node *dst,
						      uint64_t t0, uint64_t deadline_ms)
{
	Cleave__Migrator__MigrationInfo *mi;

	for (;;) {
		mi = mig_query_try(&src->mig, 300);
		if (mi && !mig_status_running(mi->status))
			return mi;
		if (mi)
			rpc_msg_free(&mi->base);
		if (vt_now_ms() - t0 > deadline_ms)
			fail_nodes(src, dst, "migration not finished after %" PRIu64 " ms",
				   deadline_ms);
		node_events_poll(src);
		nodes_drain(src, dst);
		sleep_ms(10);
	}
}

/* What a side reported about its session, for the figures. */
struct side_figs {
	uint32_t restarts, resumes;
	uint64_t resent, inflight, resume_time;
};

static void figs_take(struct side_figs *f, const Cleave__Migrator__MigrationInfo *mi)
{
	f->restarts = mi->restarts;
	f->resumes = mi->resumes;
	f->resent = mi->resent_bytes;
	f->inflight = mi->inflight_bytes;
	f->resume_time = mi->resume_time;
}

/*
 * Everything a completed migration must satisfy (see the top of the file);
 * @mi is the source's final info.  Fills @fs and @fd with both sides' figures.
 */
static void check_completed(struct node *src, struct node *dst, Cleave__Migrator__MigrationInfo *mi,
			    struct side_figs *fs, struct side_figs *fd)
{
	Cleave__Migrator__MigrationInfo *di;
	uint64_t want, got, gen, ns0[CPUS];
	unsigned int n0[CPUS], n;
	int ret;

	if (strcmp(mi->status, "completed"))
		fail_nodes(src, dst, "source: %s: %s", mi->status, mi->error_desc);
	figs_take(fs, mi);
	di = mig_query_settled(&dst->mig, 5000);
	if (strcmp(di->status, "completed"))
		fail_nodes(src, dst, "destination: %s: %s", di->status, di->error_desc);
	figs_take(fd, di);
	rpc_msg_free(&di->base);

	/* The guest runs on exactly one side. */
	assert_int_equal(mig_vm_state(&src->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	assert_int_equal(mig_vm_state(&dst->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);

	/* RAM at the switchover: the source is paused since, its RAM is that RAM. */
	ret = mig_log_ram_hash(&dst->mig, 0, &got);
	if (ret)
		fail_nodes(src, dst, "no \"switchover RAM hash region 0\" line in %s",
			   dst->mig.log_path);
	want = shm_region_hash(&src->vm.ram[0]);
	if (want != got)
		fail_nodes(src, dst,
			   "destination RAM at switchover %016" PRIx64 " != source RAM %016" PRIx64,
			   got, want);

	/* The destination guest beats on and its page checks pass. */
	vt_drain(&dst->vm, 20);
	for (unsigned int c = 0; c < CPUS; c++)
		ns0[c] = mig_hb_last(&dst->vm, c, &gen, &n0[c]);
	for (unsigned int c = 0; c < CPUS; c++) {
		uint64_t ns = 0;

		for (int i = 0; i < 100; i++) {
			ns = mig_hb_last(&dst->vm, c, &gen, &n);
			if (n >= n0[c] + 3)
				break;
			vt_drain(&dst->vm, 50);
			vt_drain(&src->vm, 0);
		}
		if (n < n0[c] + 3)
			fail_nodes(src, dst,
				   "destination cpu %u: %u heartbeats\nserial:\n%s\nlog:\n%s", c, n,
				   dst->vm.serial.buf, dst->vm.log.buf);
		assert_true(ns > ns0[c]);
	}
	if (vt_count(&dst->vm.serial, 0, "ASSERT"))
		fail_nodes(src, dst, "destination guest:\n%s", dst->vm.serial.buf);
	assert_int_equal(vt_count(&src->vm.serial, 0, "ASSERT"), 0);

	/* The source paused once for the switchover and never resumed. */
	node_events_poll(src);
	assert_int_equal(mig_vm_state(&src->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	if (src->resumes)
		fail_nodes(src, dst, "the source vcpu-proc resumed %u time(s) during the migration",
			   src->resumes);
	assert_true(src->stops >= 1);
}

static int teardown(void **state)
{
	(void)state;
	tcp_proxy_stop(live_proxy);
	live_proxy = NULL;
	for (unsigned int i = 0; i < 4; i++)
		node_free(live_nodes[i]);
	return 0;
}

static void figs_print(const char *what, const Cleave__Migrator__MigrationInfo *mi,
		       const struct side_figs *fs, const struct side_figs *fd)
{
	fprintf(stderr,
		"#   %s: total %" PRIu64 " ms, downtime %" PRIu64 " ms, %.1f MiB, %" PRIu64
		" syncs; src restarts %u resumes %u resent %" PRIu64 " KiB inflight %" PRIu64
		" KiB resume-time %" PRIu64 " ms; dst restarts %u resumes %u resume-time %" PRIu64
		" ms\n",
		what, mi->total_time, mi->downtime, (double)mi->ram->transferred / (1 << 20),
		mi->ram->dirty_sync_count, fs->restarts, fs->resumes, fs->resent >> 10,
		fs->inflight >> 10, fs->resume_time, fd->restarts, fd->resumes, fd->resume_time);
}

/* ---- a. fault injection over a chain of migrations ------------------------ */

#define CHAIN_KILLS	    20
#define CHAIN_MAX_MIGS	    30
#define KILLS_PER_MIGRATION 3

static void test_fault_chain(void **state)
{
	struct node *src = node_new(false, HOOKS), *dst;
	unsigned int kills = 0, side = (unsigned int)(rnd() & 1), m;
	unsigned int restarts_seen = 0;
	uint64_t t_start = vt_now_ms();

	(void)state;
	for (m = 0; kills < CHAIN_KILLS; m++) {
		Cleave__Migrator__MigrationInfo *mi = NULL;
		unsigned int k = 0, kside[2] = {0, 0}, kactive[2] = {0, 0};
		char status[16] = "setup", what[48];
		struct side_figs fs, fd;
		uint64_t t0, next, pass = 0, sent = 0;

		if (m == CHAIN_MAX_MIGS)
			fail_msg("%u kills in %u migrations", kills, m);
		dst = node_new(true, HOOKS);
		mig_configure(&src->mig, CHANNELS, BANDWIDTH, -1);
		node_watch(src);
		node_migrate(src, dst->uri);
		t0 = vt_now_ms();
		next = t0 + rnd_range(100, 1500);
		for (;;) {
			uint64_t now;

			mi = mig_query_try(&src->mig, 300);
			if (mi) {
				snprintf(status, sizeof(status), "%s", mi->status);
				pass = mi->ram->dirty_sync_count;
				sent = mi->ram->transferred;
				if (!mig_status_running(mi->status))
					break;
				rpc_msg_free(&mi->base);
				mi = NULL;
			}
			now = vt_now_ms();
			if (now - t0 > MIG_DEADLINE)
				fail_nodes(src, dst,
					   "migration %u (%u kills) not finished in %u ms", m, k,
					   MIG_DEADLINE);
			if (now >= next && k < KILLS_PER_MIGRATION && mig_status_running(status)) {
				struct node *victim = side ? dst : src;
				unsigned int delay = rnd_range(0, 100);

				node_restart(victim, delay);
				fprintf(stderr,
					"#   migration %u: killed the %s migrator at +%" PRIu64
					" ms (%s, %" PRIu64
					" syncs, %.1f MiB sent), restarted after %u ms\n",
					m, side ? "destination" : "source", now - t0, status, pass,
					(double)sent / (1 << 20), delay);
				kside[side]++;
				kactive[side] += !strcmp(status, "active");
				k++;
				kills++;
				side ^= 1;
				next = vt_now_ms() + rnd_range(200, 1500);
			}
			node_events_poll(src);
			nodes_drain(src, dst);
			sleep_ms(10);
		}
		check_completed(src, dst, mi, &fs, &fd);
		snprintf(what, sizeof(what), "migration %u, %u kills (src %u, dst %u)", m, k,
			 kside[0], kside[1]);
		figs_print(what, mi, &fs, &fd);
		/*
		 * Each side counts the restarts its session survived.  A kill in
		 * precopy ("active") must count; one in setup (a destination that
		 * had no session yet) or racing the end in "device" may not.
		 */
		if (fs.restarts > kside[0] || fd.restarts > kside[1] || fs.restarts < kactive[0] ||
		    fd.restarts < kactive[1])
			fail_nodes(
				src, dst,
				"restarts reported src %u dst %u, kills src %u dst %u, of them in "
				"precopy src %u dst %u",
				fs.restarts, fd.restarts, kside[0], kside[1], kactive[0],
				kactive[1]);
		restarts_seen += fs.restarts + fd.restarts;
		rpc_msg_free(&mi->base);
		node_free(src);
		src = dst;
	}
	fprintf(stderr, "# %u kills in %u migrations, %u restarts reported, %" PRIu64 " s\n", kills,
		m, restarts_seen, (vt_now_ms() - t_start) / 1000);
	node_free(src);
}

/* ---- b. a kill inside each phase, both sides at once, a cut connection ---- */

enum phase {
	PH_SETUP,	 /* source in setup (connections held back by the proxy) */
	PH_FIRST,	 /* round 0: active, no dirty sync yet */
	PH_LATER,	 /* dirty-sync-count >= 2 */
	PH_SWITCH_EARLY, /* device: guest paused, before the final round */
	PH_SWITCH_LATE,	 /* device: destination loaded the state, no Commit yet */
};

enum fault {
	F_SRC,	/* source migrator killed and restarted */
	F_DST,	/* destination migrator killed and restarted */
	F_BOTH, /* both at once */
	F_CUT,	/* every connection reset by the proxy, no process dies */
};

struct scenario {
	const char *name;
	enum phase phase;
	enum fault fault;
};

static const char *const phase_names[] = {"setup", "first pass", "later rounds",
					  "switchover (before the final round)",
					  "switchover (loaded, before Commit)"};

/* Polls @src (and @dst's log) until @ph; returns the status seen. */
static void wait_phase(struct node *src, struct node *dst, enum phase ph, uint64_t t0)
{
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t device_ms = 0, hash;

	for (;;) {
		bool hit = false;

		mi = mig_query_try(&src->mig, 300);
		if (mi) {
			if (!mig_status_running(mi->status))
				fail_nodes(src, dst, "migration ended (%s: %s) before %s",
					   mi->status, mi->error_desc, phase_names[ph]);
			switch (ph) {
			case PH_SETUP:
				hit = !strcmp(mi->status, "setup") && vt_now_ms() - t0 >= 80;
				if (strcmp(mi->status, "setup"))
					fail_nodes(src, dst, "setup over (%s) before the kill",
						   mi->status);
				break;
			case PH_FIRST:
				hit = !strcmp(mi->status, "active") && !mi->ram->dirty_sync_count &&
				      mi->ram->transferred >= (6u << 20);
				break;
			case PH_LATER:
				hit = !strcmp(mi->status, "active") &&
				      mi->ram->dirty_sync_count >= 2;
				break;
			case PH_SWITCH_EARLY:
				if (!strcmp(mi->status, "device") && !device_ms)
					device_ms = vt_now_ms();
				hit = device_ms && vt_now_ms() - device_ms >= SWITCH_DELAY / 3;
				break;
			case PH_SWITCH_LATE:
				hit = !strcmp(mi->status, "device") &&
				      !mig_log_ram_hash(&dst->mig, 0, &hash);
				if (hit)
					sleep_ms(SWITCH_DELAY / 6);
				break;
			}
			if (hit) {
				fprintf(stderr,
					"#   at +%" PRIu64 " ms: %s, %" PRIu64
					" syncs, %.1f MiB sent\n",
					vt_now_ms() - t0, mi->status, mi->ram->dirty_sync_count,
					(double)mi->ram->transferred / (1 << 20));
				rpc_msg_free(&mi->base);
				return;
			}
			rpc_msg_free(&mi->base);
		}
		if (vt_now_ms() - t0 > 30000)
			fail_nodes(src, dst, "no %s within 30 s", phase_names[ph]);
		node_events_poll(src);
		nodes_drain(src, dst);
		usleep(3000);
	}
}

static void run_scenario(const struct scenario *sc)
{
	bool switchover = sc->phase == PH_SWITCH_EARLY || sc->phase == PH_SWITCH_LATE;
	const char *hooks = switchover ? HOOKS ",switchover_delay_ms=300" : HOOKS;
	struct node *src = node_new(false, hooks), *dst = node_new(true, hooks);
	Cleave__Migrator__MigrationInfo *mi;
	struct tcp_proxy *proxy = NULL;
	struct side_figs fs, fd;
	unsigned int pport, delay = rnd_range(0, 100), cut = 0;
	char uri[64];
	uint64_t t0;

	fprintf(stderr, "# %s: %s in %s\n", sc->name,
		sc->fault == F_SRC    ? "source migrator killed"
		: sc->fault == F_DST  ? "destination migrator killed"
		: sc->fault == F_BOTH ? "both migrators killed"
				      : "connections cut",
		phase_names[sc->phase]);
	/* Every scenario goes through the proxy, so they differ only in the fault. */
	assert_int_equal(tcp_proxy_start(&proxy, dst->port, &pport), 0);
	live_proxy = proxy;
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", pport);
	if (sc->phase == PH_SETUP)
		tcp_proxy_set_delay(proxy, 400); /* Hello held back: setup lasts */
	mig_configure(&src->mig, CHANNELS, BANDWIDTH, -1);
	node_watch(src);
	node_migrate(src, uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, sc->phase, t0);
	/*
	 * In setup, what the killed process had sent is released at once (it
	 * was on the wire, it arrives): before the new process connects.
	 */
	switch (sc->fault) {
	case F_SRC:
	case F_DST:
		mig_kill(sc->fault == F_SRC ? &src->mig : &dst->mig);
		tcp_proxy_set_delay(proxy, 0);
		sleep_ms(delay);
		assert_int_equal(mig_respawn(sc->fault == F_SRC ? &src->mig : &dst->mig), 0);
		break;
	case F_BOTH:
		mig_kill(&dst->mig);
		mig_kill(&src->mig);
		tcp_proxy_set_delay(proxy, 0);
		sleep_ms(delay);
		assert_int_equal(mig_respawn(&src->mig), 0);
		assert_int_equal(mig_respawn(&dst->mig), 0);
		break;
	case F_CUT:
		cut = tcp_proxy_cut(proxy);
		tcp_proxy_set_delay(proxy, 0);
		assert_true(cut >= 1);
		break;
	}
	mi = wait_finished(src, dst, t0, MIG_DEADLINE);
	check_completed(src, dst, mi, &fs, &fd);
	figs_print(sc->name, mi, &fs, &fd);
	if (sc->fault == F_CUT)
		fprintf(stderr, "#   cut %u connections, %u accepted in all\n", cut,
			tcp_proxy_accepted(proxy));
	/* Counted restarts: a destination killed before it saw a Hello had no session. */
	if (sc->fault == F_SRC || sc->fault == F_BOTH)
		assert_int_equal(fs.restarts, 1);
	if ((sc->fault == F_DST || sc->fault == F_BOTH) && sc->phase != PH_SETUP)
		assert_int_equal(fd.restarts, 1);
	if (sc->fault == F_CUT) {
		assert_int_equal(fs.restarts, 0);
		assert_int_equal(fd.restarts, 0);
	}
	if (sc->phase != PH_SETUP)
		assert_true(fs.resumes >= 1);
	rpc_msg_free(&mi->base);
	live_proxy = NULL;
	tcp_proxy_stop(proxy);
	node_free(src);
	node_free(dst);
}

static const struct scenario scenarios[] = {
	{"setup-src", PH_SETUP, F_SRC},
	{"setup-dst", PH_SETUP, F_DST},
	{"first-src", PH_FIRST, F_SRC},
	{"first-dst", PH_FIRST, F_DST},
	{"later-src", PH_LATER, F_SRC},
	{"later-dst", PH_LATER, F_DST},
	{"switchover-src", PH_SWITCH_EARLY, F_SRC},
	{"switchover-dst", PH_SWITCH_EARLY, F_DST},
	{"switchover-loaded-src", PH_SWITCH_LATE, F_SRC},
	{"switchover-loaded-dst", PH_SWITCH_LATE, F_DST},
	{"first-both", PH_FIRST, F_BOTH},
	{"switchover-loaded-both", PH_SWITCH_LATE, F_BOTH},
	{"later-cut", PH_LATER, F_CUT},
	{"switchover-loaded-cut", PH_SWITCH_LATE, F_CUT},
};

static void test_scenario(void **state)
{
	run_scenario(*state);
}

/* ---- c. error paths ------------------------------------------------------- */

#define LOST_PEER_MS 1000

/* The source failed or was cancelled: its guest runs again, the destination's never ran. */
static void check_source_runs(struct node *src, struct node *dst)
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
	check_source_runs(src, dst);
	node_events_poll(src);
	/* Paused for the switchover, resumed exactly once; never paused in precopy. */
	assert_int_equal(src->resumes, switchover ? 1 : 0);
	node_free(src);
	node_free(dst);
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
 * The source migrator keeps dying: restarts 1..MAX_RESTARTS resume, the
 * next one fails the migration, with the source guest running.
 */
static void test_restart_limit(void **state)
{
	struct node *src = node_new(false, HOOKS), *dst = node_new(true, HOOKS);
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t t0;

	(void)state;
	fprintf(stderr, "# source migrator killed %u times in one migration\n", MAX_RESTARTS + 1);
	/* 4 MiB/s: the 32 MiB area alone takes 8 s, longer than the kills. */
	mig_configure(&src->mig, CHANNELS, 4u << 20, 1000);
	mig_configure(&dst->mig, CHANNELS, 0, 1000);
	node_watch(src);
	node_migrate(src, dst->uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, PH_FIRST, t0);
	for (uint32_t k = 1; k <= MAX_RESTARTS + 1; k++) {
		node_restart(src, rnd_range(0, 50));
		mi = wait_restarts(src, dst, &src->mig, k);
		fprintf(stderr, "#   restart %u at +%" PRIu64 " ms: %s, restarts %u, resumes %u\n",
			k, vt_now_ms() - t0, mi->status, mi->restarts, mi->resumes);
		if (k <= MAX_RESTARTS && !mig_status_running(mi->status))
			fail_nodes(src, dst, "restart %u: %s: %s", k, mi->status, mi->error_desc);
		rpc_msg_free(&mi->base);
		sleep_ms(100);
	}
	mi = wait_finished(src, dst, t0, 15000);
	fprintf(stderr, "#   source %s: %s\n", mi->status, mi->error_desc);
	if (strcmp(mi->status, "failed"))
		fail_nodes(src, dst, "source %s after %u restarts", mi->status, MAX_RESTARTS + 1);
	assert_true(mi->error_desc && mi->error_desc[0]);
	rpc_msg_free(&mi->base);
	check_source_runs(src, dst);
	node_events_poll(src);
	assert_int_equal(src->resumes, 0);
	node_free(src);
	node_free(dst);
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
	mig_configure(&src->mig, CHANNELS, 4u << 20, 1000);
	mig_configure(&dst->mig, CHANNELS, 0, 1000);
	node_watch(src);
	node_migrate(src, dst->uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, PH_FIRST, t0);
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
	check_source_runs(src, dst);
	node_events_poll(src);
	assert_int_equal(src->resumes, 0);
	node_free(src);
	node_free(dst);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[3 + sizeof(scenarios) / sizeof(scenarios[0]) + 3];
	const char *seed_env = getenv("CLEAVE_TEST_SEED");
	uint64_t seed;
	unsigned int n = 0;

	if (argc != 4) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR\n", argv[0]);
		return 1;
	}
	vt_require_kvm();
	vcpu_bin = argv[1];
	guest_path = argv[2];
	mig_harness_init(argv[3]);
	signal(SIGPIPE, SIG_IGN);
	seed = seed_env ? strtoull(seed_env, NULL, 0) : (vt_now_ms() ^ ((uint64_t)getpid() << 32));
	fprintf(stderr, "# seed %" PRIu64 " (CLEAVE_TEST_SEED=%" PRIu64 " replays it)\n", seed,
		seed);
	rng = seed ? seed : 1;

	/* TEST_FILTER="first-*" runs a subset, TEST_SKIP leaves one out (cmocka wildcards). */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	if (getenv("TEST_SKIP"))
		cmocka_set_skip_filter(getenv("TEST_SKIP"));
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_fault_chain, teardown);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = scenarios[i].name,
						 .test_func = test_scenario,
						 .teardown_func = teardown,
						 .initial_state = (void *)&scenarios[i]};
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_lost_destination_active,
								  teardown);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_lost_destination_switchover,
								  teardown);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_lost_destination_loaded,
								  teardown);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test_teardown(test_restart_limit, teardown);
	tests[n++] =
		(struct CMUnitTest)cmocka_unit_test_teardown(test_cancel_after_restart, teardown);
	return _cmocka_run_group_tests("resume", tests, n, NULL, NULL);
}
