/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Resume in the engine (invariant 6), in one process over loopback TCP through
 * a relay that cuts connections: the page maps a destination reports, a
 * cut in the middle of a dirtying migration (the RAM must still be equal at
 * switchover, and only what was in flight is sent again), a peer that never
 * comes back, and a cancel while reconnecting or while the peer waits.
 * With mutual TLS too: every reconnect authenticates afresh.
 * Killed processes are tests/integration/migrator/test-resume.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"
#include "tests/integration/migrator/tcp-proxy.h"
#include "tests/util/test-util.h"
#include "tls-certs.h"
#include "tvm.h"

#define R0_PAGES 4096 /* 16 MiB */

static const struct shm_ctl_layout layout = {
	.nr_regions = 1,
	.gpa = {0},
	.size = {R0_PAGES * SHM_PAGE_SIZE},
};

struct cut {
	struct tvm src, dst;
	struct mig_tls *tls; /* both ends, or NULL */
	char tls_dir[64];
	struct tcp_proxy *proxy;
	unsigned int proxy_port;
	char uri[64];
};

static uint64_t now_ms(void)
{
	return mig_now_ns() / 1000000;
}

static int cut_setup(void **state)
{
	struct cut *c = calloc(1, sizeof(*c));

	if (!c || tvm_init(&c->src, &layout, NULL, 2000) || tvm_init(&c->dst, &layout, NULL, 2000))
		return -1;
	*state = c;
	return 0;
}

/* The same pair with mutual TLS 1.3 (x509 made at setup) on every connection. */
static int cut_setup_tls(void **state)
{
	const struct tls_certs certs = {
		.ca_name = "resume CA", .server_ip = "127.0.0.1", .client_dn = "CN=resume source"};
	struct cut *c = calloc(1, sizeof(*c));
	struct mig_tls_config cfg = {.authz = "CN=resume source"};
	char err[256];

	if (!c)
		return -1;
	cfg.x509_dir = c->tls_dir;
	if (test_dir_make(c->tls_dir, "resume-tls") || tls_certs_make(c->tls_dir, &certs) ||
	    mig_tls_load(&c->tls, &cfg, err, sizeof(err)) ||
	    tvm_init_tls(&c->src, &layout, NULL, 2000, c->tls) ||
	    tvm_init_tls(&c->dst, &layout, NULL, 2000, c->tls))
		return -1;
	*state = c;
	return 0;
}

static int cut_teardown(void **state)
{
	struct cut *c = *state;

	tvm_fini(&c->src);
	tvm_fini(&c->dst);
	tcp_proxy_stop(c->proxy);
	mig_tls_free(c->tls);
	if (c->tls_dir[0] && test_dir_remove(c->tls_dir))
		fprintf(stderr, "could not remove %s\n", c->tls_dir);
	free(c);
	return 0;
}

/* Source -> relay -> destination; both wait @reconnect_ms for a lost peer. */
static void cut_config(struct cut *c, unsigned int channels, uint64_t bandwidth,
		       uint64_t src_reconnect_ms, uint64_t dst_reconnect_ms)
{
	struct mig_caps caps = {.multifd = channels > 1, .events = true};
	struct mig_params p = {.multifd_channels = channels,
			       .downtime_limit = 20,
			       .max_bandwidth = bandwidth,
			       .reconnect_timeout = src_reconnect_ms};

	assert_int_equal(mig_session_set_caps(c->src.s, &caps), 0);
	assert_int_equal(mig_session_set_caps(c->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(c->src.s, &p), 0);
	p.reconnect_timeout = dst_reconnect_ms;
	assert_int_equal(mig_session_set_params(c->dst.s, &p), 0);
	assert_int_equal(mig_session_incoming(c->dst.s, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(
		tcp_proxy_start(&c->proxy, mig_session_incoming_port(c->dst.s), &c->proxy_port), 0);
	snprintf(c->uri, sizeof(c->uri), "tcp:127.0.0.1:%u", c->proxy_port);
}

static void wait_transferred(struct tvm *t, uint64_t bytes)
{
	struct mig_info info;
	uint64_t t0 = now_ms();

	do {
		usleep(5000);
		mig_session_query(t->s, &info);
		assert_true(now_ms() - t0 < 10000);
	} while (info.transferred < bytes);
}

/* ---- page maps ------------------------------------------------------------ */

static void pagemap_roundtrip(const uint64_t *map, uint64_t nbits, bool want_raw)
{
	Cleave__Wire__PageMap pm;
	uint64_t *out = calloc(SHM_BITMAP_WORDS(nbits), sizeof(uint64_t));

	assert_int_equal(mig_pagemap_encode(map, nbits, 3, &pm), 0);
	assert_int_equal(pm.region, 3);
	assert_int_equal(pm.raw.len != 0, want_raw);
	assert_int_equal(mig_pagemap_decode(&pm, out, nbits), 0);
	assert_memory_equal(out, map, SHM_BITMAP_WORDS(nbits) * sizeof(uint64_t));
	mig_pagemap_release(&pm);
	free(out);
}

static void test_pagemap(void **state)
{
	enum { N = 1000 }; /* not a multiple of 64 */
	uint64_t map[SHM_BITMAP_WORDS(N)] = {0}, out[SHM_BITMAP_WORDS(N)] = {0};
	uint64_t runs_odd[] = {1}, runs_zero[] = {5, 0}, runs_past[] = {990, 11},
		 runs_far[] = {N, 1}, runs_wrap[] = {10, UINT64_MAX};
	const struct {
		uint64_t *runs;
		size_t n;
	} bad[] = {{runs_odd, 1}, {runs_zero, 2}, {runs_past, 2}, {runs_far, 2}, {runs_wrap, 2}};
	Cleave__Wire__PageMap pm = CLEAVE__WIRE__PAGE_MAP__INIT;
	uint64_t raw[SHM_BITMAP_WORDS(N)] = {0};

	pagemap_roundtrip(map, N, false); /* empty: no runs, no raw */
	for (uint64_t p = 100; p < 900; p++)
		shm_bitmap_set(map, p);
	shm_bitmap_set(map, N - 1);
	pagemap_roundtrip(map, N, false); /* two runs */
	for (uint64_t p = 0; p < N; p += 2)
		shm_bitmap_set(map, p);
	pagemap_roundtrip(map, N, true); /* every other page: raw words are smaller */
	/* What a destination may not claim. */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		pm.runs = bad[i].runs;
		pm.n_runs = bad[i].n;
		assert_int_equal(mig_pagemap_decode(&pm, out, N), -EPROTO);
	}
	pm.runs = NULL;
	pm.n_runs = 0;
	pm.raw.data = (uint8_t *)raw;
	pm.raw.len = sizeof(raw) - 8; /* short */
	assert_int_equal(mig_pagemap_decode(&pm, out, N), -EPROTO);
	pm.raw.len = sizeof(raw);
	raw[SHM_BITMAP_WORDS(N) - 1] = 1ull << 63; /* page 1023 of a 1000-page region */
	assert_int_equal(mig_pagemap_decode(&pm, out, N), -EPROTO);
}

/* ---- a cut in the middle --------------------------------------------------- */

static void run_cut(struct cut *c, unsigned int channels)
{
	struct mig_info si, di;

	tvm_fill(&c->src, 0, 0, R0_PAGES, false);
	tvm_dirtier_start(&c->src, 512, 4);		  /* rewrites 2 MiB until the 4th harvest */
	cut_config(c, channels, 16u << 20, 10000, 10000); /* 16 MiB at 16 MiB/s: ~1 s */
	assert_int_equal(mig_session_migrate(c->src.s, c->uri), 0);
	wait_transferred(&c->src, 6u << 20);
	/*
	 * Pages landed before the cut, so "not the whole RAM again" below
	 * means something: on a slow host (TSan, a loaded CI) the source can
	 * count 6 MiB sent while all of it still sits in the proxy.
	 */
	wait_transferred(&c->dst, 2u << 20);
	assert_true(tcp_proxy_cut(c->proxy) >= 1 + channels);
	assert_int_equal(mig_session_wait(c->src.s, 30000), 0);
	assert_int_equal(mig_session_wait(c->dst.s, 30000), 0);
	mig_session_query(c->src.s, &si);
	mig_session_query(c->dst.s, &di);
	if (si.status != MIG_STATUS_COMPLETED || di.status != MIG_STATUS_COMPLETED)
		fail_msg("src %s '%s', dst %s '%s'", mig_status_name(si.status), si.error_desc,
			 mig_status_name(di.status), di.error_desc);
	/* Nothing died: the connection was resumed, not the process. */
	assert_int_equal(si.restarts, 0);
	assert_true(si.resumes >= 1 && di.resumes >= 1);
	assert_true(tvm_saw_event(&c->src, "disconnected"));
	assert_true(tvm_saw_event(&c->src, "resumed"));
	/* Sent again: what was in flight at the cut, not the whole RAM. */
	assert_true(si.inflight_bytes > 0);
	assert_true(si.resent_bytes <= si.inflight_bytes * si.resumes);
	assert_true(si.resent_bytes < layout.size[0]);
	assert_int_equal(tvm_ram_cmp(&c->src, &c->dst), 0);
	assert_int_equal(c->src.resume_calls, 0);
	assert_int_equal(c->dst.resume_calls, 1);
	assert_false(mig_record_receivedmap_live(c->dst.s->rec));
	tvm_dirtier_stop(&c->src);
}

static void test_cut_1ch(void **state)
{
	run_cut(*state, 1);
}

static void test_cut_4ch(void **state)
{
	run_cut(*state, 4);
}

/* Under TLS (cut_setup_tls): the reconnect authenticates again, RAM equal. */
static void test_cut_4ch_tls(void **state)
{
	run_cut(*state, 4);
}

/* ---- a peer that does not come back ---------------------------------------- */

static void test_destination_gone(void **state)
{
	struct cut *c = *state;
	struct mig_info si, di;
	uint64_t t0;

	tvm_fill(&c->src, 0, 0, R0_PAGES, false);
	cut_config(c, 2, 8u << 20, 500, 700);
	assert_int_equal(mig_session_migrate(c->src.s, c->uri), 0);
	wait_transferred(&c->src, 2u << 20);
	tcp_proxy_stop(c->proxy); /* every connection reset, nobody listens */
	c->proxy = NULL;
	t0 = now_ms();
	assert_int_equal(mig_session_wait(c->src.s, 5000), 0);
	mig_session_query(c->src.s, &si);
	assert_int_equal(si.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(si.error_desc, "no reconnect within 500 ms"));
	assert_true(now_ms() - t0 >= 450 && now_ms() - t0 < 3000);
	assert_int_equal(c->src.pause_calls, 0); /* never paused: nothing to resume */
	assert_false(c->src.dirty_log);
	/* The destination gives up too, its guest never ran, its map is dead. */
	assert_int_equal(mig_session_wait(c->dst.s, 5000), 0);
	mig_session_query(c->dst.s, &di);
	assert_int_equal(di.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(di.error_desc, "no reconnect within 700 ms"));
	assert_int_equal(c->dst.resume_calls, 0);
	assert_false(mig_record_receivedmap_live(c->dst.s->rec));
}

/* ---- cancel ------------------------------------------------------------------ */

/* While the source reconnects in vain: cancelled at once, not after the timeout. */
static void test_cancel_while_reconnecting(void **state)
{
	struct cut *c = *state;
	struct mig_info si;
	uint64_t t0;

	tvm_fill(&c->src, 0, 0, R0_PAGES, false);
	cut_config(c, 2, 8u << 20, 10000, 300);
	assert_int_equal(mig_session_migrate(c->src.s, c->uri), 0);
	wait_transferred(&c->src, 2u << 20);
	tcp_proxy_stop(c->proxy);
	c->proxy = NULL;
	usleep(200000); /* reconnecting now */
	t0 = now_ms();
	assert_int_equal(mig_session_cancel(c->src.s), 0);
	assert_int_equal(mig_session_wait(c->src.s, 5000), 0);
	assert_true(now_ms() - t0 < 1000);
	mig_session_query(c->src.s, &si);
	assert_int_equal(si.status, MIG_STATUS_CANCELLED);
	assert_false(c->src.dirty_log);
}

/* The destination learns it from the source and stops waiting for it. */
static void test_cancel_reaches_destination(void **state)
{
	struct cut *c = *state;
	struct mig_info di;
	uint64_t t0;

	tvm_fill(&c->src, 0, 0, R0_PAGES, false);
	cut_config(c, 4, 8u << 20, 10000, 10000);
	assert_int_equal(mig_session_migrate(c->src.s, c->uri), 0);
	wait_transferred(&c->src, 2u << 20);
	t0 = now_ms();
	assert_int_equal(mig_session_cancel(c->src.s), 0);
	assert_int_equal(mig_session_wait(c->dst.s, 5000), 0);
	assert_true(now_ms() - t0 < 2000);
	mig_session_query(c->dst.s, &di);
	assert_int_equal(di.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(di.error_desc, "source: migration cancelled"));
	assert_int_equal(c->dst.resume_calls, 0);
}

/* Nothing to resolve outside x-switchover-unknown; cancel of a finished job is a no-op. */
static void test_resolve_refused(void **state)
{
	struct cut *c = *state;

	assert_int_equal(mig_session_resolve(c->src.s, true), -EINVAL);
	assert_int_equal(mig_session_resolve(c->src.s, false), -EINVAL);
	assert_int_equal(mig_session_cancel(c->src.s), 0);
	assert_int_equal(mig_session_resume(c->src.s), 0); /* a pristine record */
}

/*
 * The record is the session's one store: what the session uses and shows is
 * what the record holds, whoever wrote it, and a restarted migrator (a
 * second session on the same control segment) shows the same, settings
 * included even with no session recorded.  A new record gives the defaults.
 */
static void test_record_is_the_store(void **state)
{
	struct cut *c = *state;
	struct mig_session *s = c->src.s, *again;
	struct mig_record *rec = s->rec;
	struct mig_caps caps = {.events = true, .auto_converge = true, .postcopy_blocktime = true};
	struct mig_params p;
	struct mig_info info;

	mig_session_get_params(s, &p);
	p.max_bandwidth = 12345;
	p.downtime_limit = 77;
	assert_int_equal(mig_session_set_params(s, &p), 0);
	assert_int_equal(mig_session_set_caps(s, &caps), 0);
	assert_int_equal(mig_record_lock(rec), 0);
	assert_int_equal(rec->max_bandwidth, 12345);
	assert_int_equal(rec->downtime_limit, 77);
	assert_int_equal(rec->caps, MIG_RECORD_CAP_EVENTS | MIG_RECORD_CAP_AUTO_CONVERGE |
					    MIG_RECORD_CAP_POSTCOPY_BLOCKTIME);
	rec->role = MIG_ROLE_SOURCE;
	rec->status = MIG_STATUS_FAILED;
	rec->restarts = 3;
	rec->resent_bytes = 8192;
	snprintf(rec->error_desc, sizeof(rec->error_desc), "written in the record");
	mig_record_unlock(rec);
	mig_session_query(s, &info);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_int_equal(info.role, MIG_ROLE_SOURCE);
	assert_true(info.postcopy_blocktime); /* query-migrate's cue to ask cleave-vcpu */
	assert_int_equal(info.restarts, 3);
	assert_string_equal(info.error_desc, "written in the record");

	/* Restarted: nothing to take over (failed), the last migration and its settings shown. */
	assert_int_equal(mig_session_alloc(&again, &s->env), 0);
	assert_int_equal(mig_session_resume(again), 0);
	mig_session_query(again, &info);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_int_equal(info.restarts, 3);
	assert_int_equal(info.resent_bytes, 8192);
	assert_string_equal(info.error_desc, "written in the record");
	mig_session_get_params(again, &p);
	assert_int_equal(p.max_bandwidth, 12345);
	mig_session_free(again);

	/*
	 * No session recorded: a restarted migrator still keeps the settings
	 * (set for the next migration, which a restart must not undo).
	 */
	assert_int_equal(mig_record_lock(rec), 0);
	rec->role = MIG_ROLE_NONE;
	rec->status = MIG_STATUS_NONE;
	mig_record_unlock(rec);
	assert_int_equal(mig_session_alloc(&again, &s->env), 0);
	mig_session_get_params(again, &p);
	mig_session_get_caps(again, &caps);
	assert_int_equal(p.max_bandwidth, 12345);
	assert_int_equal(p.downtime_limit, 77);
	assert_true(caps.events && caps.auto_converge && caps.postcopy_blocktime);
	assert_false(caps.postcopy_ram || caps.multifd);
	mig_session_free(again);

	/* A new record (the launcher's zeroed area): the defaults. */
	assert_int_equal(mig_record_lock(rec), 0);
	rec->magic = 0;
	mig_record_unlock(rec);
	assert_int_equal(mig_session_alloc(&again, &s->env), 0);
	mig_session_get_params(again, &p);
	mig_session_get_caps(again, &caps);
	assert_int_equal(p.multifd_channels, MIG_DEFAULT_CHANNELS);
	assert_int_equal(p.max_bandwidth, MIG_DEFAULT_MAX_BANDWIDTH);
	assert_int_equal(p.downtime_limit, MIG_DEFAULT_DOWNTIME_MS);
	assert_int_equal(p.reconnect_timeout, MIG_DEFAULT_RECONNECT_MS);
	assert_false(caps.multifd || caps.events || caps.auto_converge || caps.postcopy_blocktime);
	mig_session_free(again);
}

/* A source session recorded in precopy towards @uri, taken over @restarts times, @streak in a row.
 */
static void record_precopy_source(struct mig_record *rec, const char *uri, uint32_t restarts,
				  uint32_t streak)
{
	assert_int_equal(mig_record_lock(rec), 0);
	rec->role = MIG_ROLE_SOURCE;
	rec->status = MIG_STATUS_ACTIVE;
	rec->phase = MIG_PHASE_SRC_PRECOPY;
	rec->restarts = restarts;
	rec->restart_streak = streak;
	rec->reconnect_timeout = 5000; /* cancel ends it */
	rec->transferred = 1u << 20;
	snprintf(rec->uri, sizeof(rec->uri), "%s", uri);
	mig_record_unlock(rec);
}

/*
 * The restart limit bounds a crash loop, not a migration that is killed
 * often: a migrator that moved data ends the streak, so a session survives
 * any number of kills that each leave it further on (the total is still
 * reported); MIG_MAX_RESTARTS takeovers in a row with nothing moved, and
 * the next one gives up, the guest running on.
 */
static void test_restart_streak(void **state)
{
	struct cut *c = *state;
	struct mig_record *rec = c->src.s->rec;
	struct mig_session *again;
	struct mig_info info;

	/* Taken over 30 times, 7 in a row: the 8th in a row still goes on. */
	record_precopy_source(rec, "tcp:127.0.0.1:1", 30, MIG_MAX_RESTARTS - 1);
	assert_int_equal(mig_session_alloc(&again, &c->src.s->env), 0);
	assert_int_equal(mig_session_resume(again), 1);
	mig_session_query(again, &info);
	assert_int_equal(info.restarts, 31);
	assert_int_not_equal(info.status, MIG_STATUS_FAILED);
	assert_int_equal(mig_record_lock(rec), 0);
	assert_int_equal(rec->restart_streak, MIG_MAX_RESTARTS);
	mig_record_unlock(rec);
	/* It moves a page: that ends the streak. */
	mig_session_transferred(again, SHM_PAGE_SIZE);
	assert_int_equal(mig_record_lock(rec), 0);
	assert_int_equal(rec->restart_streak, 0);
	mig_record_unlock(rec);
	assert_int_equal(mig_session_cancel(again), 0);
	assert_int_equal(mig_session_wait(again, 5000), 0);
	mig_session_free(again);

	/* MIG_MAX_RESTARTS in a row, none moving data: the next takeover gives up. */
	record_precopy_source(rec, "tcp:127.0.0.1:1", 30, MIG_MAX_RESTARTS);
	assert_int_equal(mig_session_alloc(&again, &c->src.s->env), 0);
	assert_int_equal(mig_session_resume(again), 1);
	assert_int_equal(mig_session_wait(again, 5000), 0);
	mig_session_query(again, &info);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, "8 times in a row without moving any data"));
	assert_int_equal(c->src.pause_calls, c->src.resume_calls); /* precopy: it ran all along */
	mig_session_free(again);
}

/*
 * A migrator killed while it held the session record's lock: the next one
 * recovers the lock (EOWNERDEAD), keeps what was recorded, and goes on.
 */
static void test_record_lock_owner_died(void **state)
{
	struct cut *c = *state;
	struct mig_record *rec = c->src.s->rec;
	int status;
	pid_t pid;

	assert_int_equal(mig_record_lock(rec), 0);
	rec->resumes = 42;
	mig_record_unlock(rec);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* The shared mapping, as another process has it: lock, then die holding it. */
		if (mig_record_lock(rec))
			_exit(1);
		rec->resumes = 43;
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(mig_record_lock(rec), 0); /* recovered, not ENOTRECOVERABLE */
	assert_int_equal(rec->resumes, 43);	   /* what the dead holder wrote stays */
	mig_record_unlock(rec);
	assert_int_equal(mig_record_lock(rec), 0); /* and usable as ever */
	mig_record_unlock(rec);
	mig_record_set_phase(rec, MIG_PHASE_NONE);
	assert_int_equal(mig_record_phase(rec), MIG_PHASE_NONE);
}

/*
 * A child that holds the record lock and stays alive (wedged, or hostile)
 * cannot hold the launcher: its abandon gives up after MIG_RECORD_LOCK_MS.
 * Values the migrator never writes make it do nothing.
 */
static void test_record_abandon_distrusts(void **state)
{
	struct cut *c = *state;
	struct mig_record *rec = c->dst.s->rec;
	struct mig_give_up todo;
	int hold[2], status;
	uint64_t t0;
	char x;
	pid_t pid;

	assert_int_equal(pipe(hold), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(hold[0]);
		if (mig_record_lock(rec))
			_exit(1);
		if (write(hold[1], "L", 1) != 1)
			_exit(2);
		pause(); /* holds it until killed */
		_exit(0);
	}
	close(hold[1]);
	assert_int_equal(read(hold[0], &x, 1), 1);
	t0 = now_ms();
	assert_int_equal(mig_record_abandon(&c->dst.ctl, "gone", &todo), -ETIMEDOUT);
	assert_true(now_ms() - t0 < MIG_RECORD_LOCK_MS + 1000);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(hold[0]);

	rec->role = MIG_ROLE_SOURCE;
	rec->status = 77;
	rec->phase = MIG_PHASE_SRC_PAUSED;
	assert_int_equal(mig_record_abandon(&c->dst.ctl, "gone", &todo), -EPROTO);
	assert_false(todo.resume || todo.stop_logging);
	assert_int_equal(rec->status, 77); /* left alone */
	rec->status = MIG_STATUS_NONE;
	rec->role = MIG_ROLE_NONE;
	rec->phase = MIG_PHASE_NONE;
}

/* What the launcher does once it gave the migrator up, phase by phase. */
static void test_record_abandon(void **state)
{
	static const struct {
		enum mig_role role;
		enum mig_status status;
		enum mig_phase phase;
		int ret;
		bool resume, stop_logging;
		enum mig_status after;
	} rows[] = {
		{MIG_ROLE_NONE, MIG_STATUS_NONE, MIG_PHASE_NONE, 0, false, false, MIG_STATUS_NONE},
		{MIG_ROLE_SOURCE, MIG_STATUS_COMPLETED, MIG_PHASE_NONE, 0, false, false,
		 MIG_STATUS_COMPLETED},
		{MIG_ROLE_SOURCE, MIG_STATUS_ACTIVE, MIG_PHASE_SRC_PRECOPY, 1, false, true,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_SOURCE, MIG_STATUS_DEVICE, MIG_PHASE_SRC_PAUSED, 1, true, true,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_SOURCE, MIG_STATUS_DEVICE, MIG_PHASE_SRC_COMMITTED, 1, false, false,
		 MIG_STATUS_UNKNOWN},
		{MIG_ROLE_DEST, MIG_STATUS_NONE, MIG_PHASE_DST_LISTENING, 1, false, false,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_DEST, MIG_STATUS_ACTIVE, MIG_PHASE_DST_RECEIVING, 1, false, false,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_DEST, MIG_STATUS_ACTIVE, MIG_PHASE_DST_LOADED, 1, false, false,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_DEST, MIG_STATUS_ACTIVE, MIG_PHASE_DST_COMMITTED, 1, true, false,
		 MIG_STATUS_COMPLETED},
		/* Postcopy: the source stays paused, the destination's guest runs. */
		{MIG_ROLE_SOURCE, MIG_STATUS_POSTCOPY_ACTIVE, MIG_PHASE_SRC_PAUSED, 1, true, true,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_SOURCE, MIG_STATUS_POSTCOPY_PAUSED, MIG_PHASE_SRC_POSTCOPY, 1, false,
		 false, MIG_STATUS_UNKNOWN},
		{MIG_ROLE_DEST, MIG_STATUS_DEVICE, MIG_PHASE_DST_PC_LOADED, 1, false, false,
		 MIG_STATUS_FAILED},
		{MIG_ROLE_DEST, MIG_STATUS_POSTCOPY_ACTIVE, MIG_PHASE_DST_POSTCOPY, 1, true, false,
		 MIG_STATUS_FAILED},
		/* Values no migrator writes: left alone. */
		{MIG_ROLE_DEST, MIG_STATUS_LAST + 1, MIG_PHASE_DST_POSTCOPY, -EPROTO, false, false,
		 MIG_STATUS_LAST + 1},
		{MIG_ROLE_DEST, MIG_STATUS_ACTIVE, MIG_PHASE_LAST + 1, -EPROTO, false, false,
		 MIG_STATUS_ACTIVE},
	};
	struct cut *c = *state;
	struct mig_record *rec = c->dst.s->rec;
	struct mig_give_up todo;

	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		rec->role = rows[i].role;
		rec->status = rows[i].status;
		rec->phase = rows[i].phase;
		rec->receivedmap_live = rows[i].phase == MIG_PHASE_DST_RECEIVING;
		assert_int_equal(mig_record_abandon(&c->dst.ctl, "gone", &todo), rows[i].ret);
		assert_int_equal(todo.resume, rows[i].resume);
		assert_int_equal(todo.stop_logging, rows[i].stop_logging);
		assert_int_equal(rec->status, rows[i].after);
		if (rows[i].ret > 0) {
			assert_int_equal(rec->phase, MIG_PHASE_NONE);
			assert_string_equal(rec->error_desc, "gone");
			assert_false(mig_record_receivedmap_live(rec));
		}
	}
}

/* The launcher never initialises the record: a zeroed area holds no session to end. */
static void test_record_abandon_unwritten(void **state)
{
	struct cut *c = *state;
	struct mig_record *rec = c->dst.s->rec;
	struct mig_give_up todo;
	struct mig_record zero;

	memset(rec, 0, sizeof(*rec));
	assert_int_equal(mig_record_abandon(&c->dst.ctl, "gone", &todo), 0);
	assert_false(todo.resume || todo.stop_logging);
	memset(&zero, 0, sizeof(zero));
	assert_memory_equal(rec, &zero, sizeof(zero)); /* untouched: no magic, no lock init */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pagemap),
		cmocka_unit_test_setup_teardown(test_cut_1ch, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_cut_4ch, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_cut_4ch_tls, cut_setup_tls, cut_teardown),
		cmocka_unit_test_setup_teardown(test_destination_gone, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_reconnecting, cut_setup,
						cut_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_reaches_destination, cut_setup,
						cut_teardown),
		cmocka_unit_test_setup_teardown(test_resolve_refused, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_record_is_the_store, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_restart_streak, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_record_lock_owner_died, cut_setup,
						cut_teardown),
		cmocka_unit_test_setup_teardown(test_record_abandon, cut_setup, cut_teardown),
		cmocka_unit_test_setup_teardown(test_record_abandon_distrusts, cut_setup,
						cut_teardown),
		cmocka_unit_test_setup_teardown(test_record_abandon_unwritten, cut_setup,
						cut_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
