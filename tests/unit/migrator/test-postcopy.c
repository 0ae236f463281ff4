/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Postcopy in the engine (docs/MIGRATION.md, "Postcopy"), in one process
 * over loopback TCP, with the destination's faults served by cleave-vcpu's
 * own fault service (tvm-postcopy.c) on real userfaultfd: a dirtying guest
 * that precopy cannot finish under a max-bandwidth cap, test threads that
 * play the destination's vCPUs (their first touch of a page still at the
 * source waits for it), a guest write that a later push must not undo, a
 * connection cut in the middle of postcopy, and the refusals.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "tests/integration/migrator/tcp-proxy.h"
#include "tests/util/test-util.h"
#include "tvm-postcopy.h"
#include "tvm.h"

#define PAGES	  4096 /* 16 MiB */
#define HOT_PAGES 1024 /* the dirtier writes the first 4 MiB */

static const struct shm_ctl_layout layout = {
	.nr_regions = 1,
	.gpa = {0},
	.size = {PAGES * SHM_PAGE_SIZE},
};

struct pc {
	struct tvm src, dst;
	struct tcp_proxy *proxy;
	char uri[64];
	/* The destination's "vCPU": reads pages once the guest runs there. */
	pthread_t vcpu;
	bool vcpu_live;
	atomic_uint touched, bad;
	atomic_uint_fast64_t wait_max_us;
	uint64_t marker_page; /* the vCPU writes a marker here first (UINT64_MAX: none) */
};

static int pc_setup(void **state)
{
	struct pc *p = calloc(1, sizeof(*p));
	struct mig_env base = {.ops = tvm_postcopy_vm_ops(), .snapshot_dirfd = -1};

	if (!p || tvm_init(&p->src, &layout, NULL, 2000) ||
	    tvm_init_env(&p->dst, &layout, NULL, 2000, &base) || tvm_postcopy_init(&p->dst))
		return -1;
	p->marker_page = UINT64_MAX;
	*state = p;
	return 0;
}

static int pc_teardown(void **state)
{
	struct pc *p = *state;

	if (p->vcpu_live)
		pthread_join(p->vcpu, NULL);
	tvm_dirtier_stop(&p->src);
	/* The sessions first: their threads call the VM side until joined. */
	mig_session_free(p->src.s);
	p->src.s = NULL;
	mig_session_free(p->dst.s);
	p->dst.s = NULL;
	tvm_postcopy_fini(&p->dst);
	tcp_proxy_stop(p->proxy);
	tvm_fini(&p->src);
	tvm_fini(&p->dst);
	free(p);
	return 0;
}

/* postcopy-ram on both sides, @channels, max-bandwidth @bw (0: none); the destination listens. */
static void pc_config(struct pc *p, bool src_cap, bool dst_cap, unsigned int channels, uint64_t bw,
		      bool proxy)
{
	struct mig_caps caps = {.multifd = channels > 1, .events = true};
	struct mig_params params;

	mig_session_get_params(p->src.s, &params);
	params.multifd_channels = channels;
	params.max_bandwidth = bw;
	params.downtime_limit = 1; /* precopy alone never gets there under the cap */
	params.reconnect_timeout = 5000;
	caps.postcopy_ram = src_cap;
	assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	caps.postcopy_ram = dst_cap;
	assert_int_equal(mig_session_set_caps(p->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(p->dst.s, &params), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	if (proxy) {
		unsigned int port;

		assert_int_equal(
			tcp_proxy_start(&p->proxy, mig_session_incoming_port(p->dst.s), &port), 0);
		snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u", port);
	} else {
		snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u",
			 mig_session_incoming_port(p->dst.s));
	}
}

static enum mig_status status_of(struct tvm *t)
{
	struct mig_info info;

	mig_session_query(t->s, &info);
	return info.status;
}

/* Waits up to @ms for @t to reach @st; true when it did. */
static bool wait_status(struct tvm *t, enum mig_status st, int ms)
{
	for (int i = 0; i < ms; i++) {
		if (status_of(t) == st)
			return true;
		usleep(1000);
	}
	return false;
}

static bool wait_passes(struct tvm *t, unsigned int n, int ms)
{
	for (int i = 0; i < ms; i++) {
		bool done;

		pthread_mutex_lock(&t->lock);
		done = t->passes >= n;
		pthread_mutex_unlock(&t->lock);
		if (done)
			return true;
		usleep(1000);
	}
	return false;
}

static uint64_t now_us(void)
{
	return mig_now_ns() / 1000;
}

/*
 * The destination's vCPU: once the guest runs there, it touches pages at
 * random through the mapping (the first touch of a page still at the source
 * faults and waits) and checks each against the source, paused for good
 * since the switch.
 */
static void *vcpu_main(void *arg)
{
	struct pc *p = arg;
	const volatile uint8_t *ram = p->dst.ram[0].base;
	uint8_t want[SHM_PAGE_SIZE], got[SHM_PAGE_SIZE];
	uint64_t x = 0x2545f4914f6cdd1dull;

	for (;;) {
		bool running;

		pthread_mutex_lock(&p->dst.lock);
		running = p->dst.resume_calls > 0;
		pthread_mutex_unlock(&p->dst.lock);
		if (running)
			break;
		if (status_of(&p->dst) == MIG_STATUS_FAILED)
			return NULL;
		usleep(200);
	}
	if (p->marker_page != UINT64_MAX) {
		volatile uint64_t *w = (volatile uint64_t *)(ram + p->marker_page * SHM_PAGE_SIZE);

		w[0] = 0x6d61726b6572ull; /* "marker": faults first, then lands on the page */
	}
	for (int i = 0; i < 400; i++) {
		uint64_t page, t0, us, old;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		page = x % HOT_PAGES;
		if (page == p->marker_page)
			continue;
		t0 = now_us();
		memcpy(got, (const uint8_t *)ram + page * SHM_PAGE_SIZE, SHM_PAGE_SIZE);
		us = now_us() - t0;
		old = atomic_load(&p->wait_max_us);
		while (us > old && !atomic_compare_exchange_weak(&p->wait_max_us, &old, us))
			;
		if (pread(p->src.ram[0].fd, want, sizeof(want), (off_t)(page * SHM_PAGE_SIZE)) !=
			    (ssize_t)sizeof(want) ||
		    memcmp(want, got, sizeof(got)))
			atomic_fetch_add(&p->bad, 1);
		atomic_fetch_add(&p->touched, 1);
	}
	return NULL;
}

static void vcpu_start(struct pc *p)
{
	assert_int_equal(pthread_create(&p->vcpu, NULL, vcpu_main, p), 0);
	p->vcpu_live = true;
}

static void vcpu_join(struct pc *p)
{
	pthread_join(p->vcpu, NULL);
	p->vcpu_live = false;
}

/* Source RAM 8 MiB of data, the dirtier on it; migrating, in dirty rounds. */
static void pc_start_dirty(struct pc *p)
{
	tvm_fill(&p->src, 0, 0, HOT_PAGES, false);
	tvm_dirtier_start(&p->src, HOT_PAGES, 0);
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	assert_true(wait_passes(&p->src, 2, 20000));
}

static void pc_check_done(struct pc *p)
{
	struct mig_info si, di;

	assert_int_equal(mig_session_wait(p->src.s, 60000), 0);
	assert_int_equal(mig_session_wait(p->dst.s, 60000), 0);
	mig_session_query(p->src.s, &si);
	mig_session_query(p->dst.s, &di);
	if (si.status != MIG_STATUS_COMPLETED || di.status != MIG_STATUS_COMPLETED)
		fail_msg("source %s (%s), destination %s (%s)", mig_status_name(si.status),
			 si.error_desc, mig_status_name(di.status), di.error_desc);
	assert_true(tvm_saw_event(&p->src, "postcopy-active"));
	assert_true(tvm_saw_event(&p->dst, "postcopy-active"));
	assert_false(tvm_postcopy_listening(&p->dst)); /* every page in, unregistered */
	/* The source's guest never ran again: paused at the switch, postmigrate now. */
	pthread_mutex_lock(&p->src.lock);
	assert_int_equal(p->src.resume_calls, 0);
	pthread_mutex_unlock(&p->src.lock);
	print_message("postcopy: %" PRIu64 " requests, %" PRIu64 " pages pulled, %" PRIu64
		      " pushed; downtime %" PRIu64 " ms; slowest vCPU touch %" PRIu64 " us\n",
		      di.postcopy_requests, di.postcopy_pulled, di.postcopy_pushed, si.downtime_ms,
		      (uint64_t)atomic_load(&p->wait_max_us));
	assert_true(di.postcopy_pulled + di.postcopy_pushed > 0);
	/* Each page pulled was waited for: the sum of the waits shows it. */
	if (di.postcopy_pulled)
		assert_true(di.postcopy_wait_us > 0);
	print_message("postcopy: requests waited %" PRIu64 " us on average\n",
		      di.postcopy_requests ? di.postcopy_wait_us / di.postcopy_requests : 0);
	assert_int_equal(si.postcopy_requests, di.postcopy_requests ? si.postcopy_requests : 0);
}

/* A dirtying guest switched to postcopy: it runs at the destination, its vCPU reading. */
static void pc_switch(struct pc *p)
{
	pc_start_dirty(p);
	vcpu_start(p);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_ACTIVE, 10000));
}

/* Both sides completed, RAM equal, and the vCPU never read a page that was not the source's. */
static void pc_finish_same(struct pc *p)
{
	vcpu_join(p);
	pc_check_done(p);
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
	assert_int_equal(atomic_load(&p->bad), 0);
}

/*
 * A guest dirtying 8 MiB as fast as it can against a 4 MiB/s cap: precopy
 * never converges (downtime-limit 1 ms).  After migrate-start-postcopy the
 * destination runs it at once; its vCPU's faults are answered ahead of the
 * capped push, and the RAM ends equal to the source's at the switch.
 */
static void test_postcopy_converges(void **state)
{
	struct pc *p = *state;

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 2, 4u << 20, false);
	pc_start_dirty(p);
	assert_int_equal(status_of(&p->src), MIG_STATUS_ACTIVE); /* precopy alone goes on */
	vcpu_start(p);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	assert_true(wait_status(&p->src, MIG_STATUS_POSTCOPY_ACTIVE, 10000));
	/* The source's RAM belongs to the destination now: no cancel. */
	assert_int_equal(mig_session_cancel(p->src.s), -EBUSY);
	pc_finish_same(p);
	assert_true(atomic_load(&p->touched) > 0);
}

/* The destination's guest writes a page first: the push of that page must not undo it. */
static void test_postcopy_guest_write_wins(void **state)
{
	struct pc *p = *state;
	uint64_t word = 0;

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 1, 2u << 20, false);
	p->marker_page = HOT_PAGES - 1;
	pc_start_dirty(p);
	vcpu_start(p);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	vcpu_join(p);
	pc_check_done(p);
	assert_int_equal(pread(p->dst.ram[0].fd, &word, sizeof(word),
			       (off_t)(p->marker_page * SHM_PAGE_SIZE)),
			 sizeof(word));
	assert_int_equal(word, 0x6d61726b6572ull);
	assert_int_equal(atomic_load(&p->bad), 0);
}

/*
 * Every connection cut in the middle of postcopy, @reconnect_ms the
 * reconnect-timeout of both sides: both reconnect and finish.
 */
static void pc_cut(struct pc *p, unsigned int reconnect_ms)
{
	struct mig_params params;

	pc_config(p, true, true, 2, 2u << 20, true);
	for (struct tvm *t = &p->src; t; t = t == &p->src ? &p->dst : NULL) {
		mig_session_get_params(t->s, &params);
		params.reconnect_timeout = reconnect_ms;
		assert_int_equal(mig_session_set_params(t->s, &params), 0);
	}
	pc_switch(p);
	usleep(300 * 1000);
	assert_true(tcp_proxy_cut(p->proxy) >= 1);
	pc_finish_same(p);
	assert_true(tvm_saw_event(&p->dst, "disconnected"));
	assert_true(tvm_saw_event(&p->src, "resumed"));
	assert_true(tvm_saw_event(&p->dst, "resumed"));
}

static void test_postcopy_cut(void **state)
{
	if (!tvm_postcopy_usable())
		skip();
	pc_cut(*state, 5000);
}

/*
 * The same cut with reconnect-timeout 0 on both sides, which fails a lost
 * precopy at once: after the postcopy commit both sides reconnect anyway
 * (the destination's guest lacks pages only the source has), as QEMU's
 * postcopy-paused does, and the migration finishes.
 */
static void test_postcopy_cut_no_timeout(void **state)
{
	if (!tvm_postcopy_usable())
		skip();
	pc_cut(*state, 0);
}

static bool wait_loading(struct tvm *t, int ms)
{
	for (int i = 0; i < ms; i++) {
		bool loading;

		pthread_mutex_lock(&t->lock);
		loading = t->loading;
		pthread_mutex_unlock(&t->lock);
		if (loading)
			return true;
		usleep(1000);
	}
	return false;
}

/*
 * Every connection cut while the destination loads the state: it reaches
 * PC_LOADED but its Loaded is lost.  On the reconnect it says so, the
 * source commits without waiting for a Loaded that will not come again,
 * and the migration finishes; the source's guest never runs again.
 */
static void test_postcopy_cut_before_commit(void **state)
{
	struct pc *p = *state;

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 2, 4u << 20, true);
	pthread_mutex_lock(&p->dst.lock);
	p->dst.load_delay_ms = 300;
	pthread_mutex_unlock(&p->dst.lock);
	pc_start_dirty(p);
	vcpu_start(p);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	assert_true(wait_loading(&p->dst, 20000));
	assert_true(tcp_proxy_cut(p->proxy) >= 1);
	pc_finish_same(p);
	assert_true(tvm_saw_event(&p->src, "resumed"));
}

/*
 * migrate-start-postcopy right after migrate: the first pass stops where it
 * is and leaves the rest to postcopy, as QEMU switches at once too; the
 * guest runs at the destination long before the pass could have ended.
 */
static void test_postcopy_at_once(void **state)
{
	struct pc *p = *state;
	uint64_t t0;
	struct mig_info di;

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 2, 4u << 20, false);
	tvm_fill(&p->src, 0, 0, PAGES, false); /* 16 MiB: 4 s of first pass at the cap */
	t0 = mig_now_ns();
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	vcpu_start(p);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_ACTIVE, 10000));
	print_message("postcopy at once: the guest runs at the destination after %" PRIu64 " ms\n",
		      (mig_now_ns() - t0) / 1000000);
	assert_true(mig_now_ns() - t0 < 3000000000ull);
	pc_finish_same(p);
	mig_session_query(p->dst.s, &di);
	assert_true(di.postcopy_pulled + di.postcopy_pushed > PAGES / 4);
}

/* A destination vCPU that reads one page: a missing one blocks it until the page is placed. */
struct pc_reader {
	struct pc *p;
	uint64_t gpa;
	pthread_t thread;
	atomic_bool done;
	uint64_t word; /* what it read */
};

static void *reader_main(void *arg)
{
	struct pc_reader *rd = arg;

	rd->word = *(const volatile uint64_t *)((const uint8_t *)rd->p->dst.ram[0].base + rd->gpa);
	atomic_store(&rd->done, true);
	return NULL;
}

/*
 * Postcopy whose source is gone for good: the relay stops for good early
 * in the push.  The destination waits (postcopy-paused) and lists what is
 * missing.  The source, whose reconnect-timeout does not bound a wait
 * after the commit, waits too until the operator gives up on the
 * destination (x-switchover-unknown, its guest paused).  Returns the
 * destination's query, the missing pages in it.
 */
static void pc_source_gone(struct pc *p, struct mig_info *di)
{
	struct mig_params params;

	pc_config(p, true, true, 2, 1u << 20, true);
	mig_session_get_params(p->src.s, &params);
	params.reconnect_timeout = 1000;
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	/* 16 MiB at 1 MiB/s, postcopy at once: most of it is still at the source. */
	tvm_fill(&p->src, 0, 0, PAGES, false);
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_ACTIVE, 10000));
	/* A live source is still bringing the pages: nothing to abandon. */
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, false), -EINVAL);
	assert_int_equal(mig_session_postcopy_abandon(p->src.s, false), -EINVAL);
	/* Some pages came first: those must stay the source's. */
	for (int i = 0; i < 10000; i++) {
		mig_session_query(p->dst.s, di);
		if (di->postcopy_missing && di->postcopy_missing < PAGES - 64)
			break;
		usleep(1000);
	}
	assert_true(di->postcopy_missing < PAGES - 64);
	tcp_proxy_stop(p->proxy);
	p->proxy = NULL;
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_PAUSED, 10000));
	assert_true(wait_status(&p->src, MIG_STATUS_POSTCOPY_PAUSED, 10000));
	usleep((params.reconnect_timeout + 500) * 1000);
	assert_int_equal(status_of(&p->src), MIG_STATUS_POSTCOPY_PAUSED);
	assert_int_equal(mig_session_postcopy_abandon(p->src.s, true), -EINVAL);
	assert_int_equal(mig_session_postcopy_abandon(p->src.s, false), 0);
	assert_int_equal(mig_session_wait(p->src.s, 5000), 0);
	mig_session_query(p->src.s, di);
	assert_int_equal(di->status, MIG_STATUS_UNKNOWN);
	assert_non_null(strstr(di->error_desc, "postcopy abandoned by the operator"));
	assert_int_equal(p->src.resume_calls, 0); /* paused here for good */
	mig_session_query(p->dst.s, di);
	print_message("source gone: %" PRIu64 " pages missing in %u+ runs, first at 0x%" PRIx64
		      " (%" PRIu64 " bytes)\n",
		      di->postcopy_missing, di->nr_missing_runs,
		      di->nr_missing_runs ? di->missing_runs[0].gpa : 0,
		      di->nr_missing_runs ? di->missing_runs[0].size : 0);
	assert_true(di->postcopy_missing > 0);
	assert_true(di->nr_missing_runs > 0 && di->nr_missing_runs <= MIG_INFO_MISSING_RUNS);
	for (unsigned int i = 0; i < di->nr_missing_runs; i++) {
		assert_int_equal(di->missing_runs[i].gpa % SHM_PAGE_SIZE, 0);
		assert_true(di->missing_runs[i].size >= SHM_PAGE_SIZE);
		assert_true(di->missing_runs[i].gpa + di->missing_runs[i].size <=
			    PAGES * SHM_PAGE_SIZE);
		if (i)
			assert_true(di->missing_runs[i].gpa >
				    di->missing_runs[i - 1].gpa + di->missing_runs[i - 1].size);
	}
}

/*
 * The operator gives the missing pages up: the migration fails with their
 * count, they stay missing (still listed, still registered: a vCPU that
 * touches one waits for good, never reads a page that never came).  No
 * new migration starts meanwhile: a source would carry the holes as
 * zeros, an incoming one or a dirty-bitmap measurement would lose the
 * list.  Zero fill, asked later, lets the vCPU go on and them start again.
 */
static void test_postcopy_abandon_waits(void **state)
{
	struct pc *p = *state;
	struct pc_reader rd = {.p = p};
	struct mig_info di, after;
	char err[256];

	if (!tvm_postcopy_usable())
		skip();
	pc_source_gone(p, &di);
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, false), 0);
	assert_int_equal(mig_session_wait(p->dst.s, 5000), 0);
	mig_session_query(p->dst.s, &after);
	assert_int_equal(after.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(after.error_desc, "postcopy abandoned by the operator"));
	assert_non_null(strstr(after.error_desc, "waits for good"));
	assert_int_equal(after.postcopy_missing, di.postcopy_missing);
	assert_true(tvm_postcopy_listening(&p->dst));
	rd.gpa = di.missing_runs[0].gpa;
	assert_int_equal(pthread_create(&rd.thread, NULL, reader_main, &rd), 0);
	assert_int_equal(mig_session_migrate(p->dst.s, p->uri), -ENODATA);
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), -ENODATA);
	assert_int_equal(mig_dirty_rate_start(p->dst.s, 1, false, 0, MIG_DIRTY_RATE_DIRTY_BITMAP,
					      err, sizeof(err)),
			 -EBUSY);
	assert_non_null(strstr(err, "never brought"));
	/* Without zero fill there is nothing left to abandon. */
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, false), -EINVAL);
	/* A zero fill the VM side fails: the pages stay missing, and it may be asked again. */
	tvm_postcopy_fail_place(&p->dst, -EIO);
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, true), -EIO);
	tvm_postcopy_fail_place(&p->dst, 0);
	mig_session_query(p->dst.s, &after);
	assert_int_equal(after.postcopy_missing, di.postcopy_missing);
	assert_true(tvm_postcopy_listening(&p->dst));
	assert_int_equal(mig_session_migrate(p->dst.s, p->uri), -ENODATA);
	assert_false(atomic_load(&rd.done)); /* waits for a page that cannot come */
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, true), 0);
	pthread_join(rd.thread, NULL);
	assert_int_equal(rd.word, 0);
	mig_session_query(p->dst.s, &after);
	assert_int_equal(after.status, MIG_STATUS_FAILED);
	assert_int_equal(after.postcopy_missing, 0);
	assert_false(tvm_postcopy_listening(&p->dst));
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, true), -EINVAL);
	/* Nothing is missing any more: a new migration may start (and is stopped here). */
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(mig_session_cancel(p->dst.s), 0);
}

/*
 * The operator gives them up with zeros in their place: a vCPU blocked on
 * a missing page goes on and reads zeros, the registration ends, and every
 * page that did come is the source's.
 */
static void test_postcopy_abandon_zero_fill(void **state)
{
	struct pc *p = *state;
	struct pc_reader rd = {.p = p};
	uint8_t want[SHM_PAGE_SIZE], got[SHM_PAGE_SIZE];
	uint64_t zeroed = 0;
	struct mig_info di, after;

	if (!tvm_postcopy_usable())
		skip();
	pc_source_gone(p, &di);
	memset(got, 0, sizeof(got));
	rd.gpa = di.missing_runs[0].gpa;
	/* The source filled every hot page with a pattern: a missing one is not zero there. */
	assert_int_equal(pread(p->src.ram[0].fd, want, sizeof(want), (off_t)rd.gpa), sizeof(want));
	assert_int_not_equal(memcmp(want, got, sizeof(got)), 0);
	assert_int_equal(pthread_create(&rd.thread, NULL, reader_main, &rd), 0);
	usleep(200 * 1000);
	assert_false(atomic_load(&rd.done)); /* waits for a page that cannot come */
	assert_int_equal(mig_session_postcopy_abandon(p->dst.s, true), 0);
	assert_int_equal(mig_session_wait(p->dst.s, 5000), 0);
	pthread_join(rd.thread, NULL);
	assert_int_equal(rd.word, 0);
	mig_session_query(p->dst.s, &after);
	assert_int_equal(after.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(after.error_desc, "filled with zeros"));
	assert_int_equal(after.postcopy_missing, 0);
	assert_false(tvm_postcopy_listening(&p->dst));
	for (uint64_t pg = 0; pg < PAGES; pg++) {
		off_t off = (off_t)(pg * SHM_PAGE_SIZE);

		assert_int_equal(pread(p->src.ram[0].fd, want, sizeof(want), off), sizeof(want));
		assert_int_equal(pread(p->dst.ram[0].fd, got, sizeof(got), off), sizeof(got));
		if (memcmp(want, got, sizeof(got))) {
			memset(want, 0, sizeof(want));
			assert_memory_equal(want, got, sizeof(got)); /* a page that never came */
			zeroed++;
		}
	}
	assert_true(zeroed <= di.postcopy_missing && zeroed < PAGES - 64);
}

/* Connecting to 127.0.0.1:@port is refused: nothing listens there any more. */
static bool port_closed(unsigned int port)
{
	char uri[64], err[256];
	int fd, ret;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	ret = mig_uri_connect(uri, 1000, &fd, err, sizeof(err));
	if (!ret)
		close(fd);
	return ret == -ECONNREFUSED;
}

/*
 * QEMU's recovery, driven as libvirt does: migrate-pause on the source
 * holds both sides in postcopy-paused (the source does not reconnect);
 * migrate-recover moves the destination's listener to a new port, and
 * migrate {resume: true} sends the source there.  The guest's pages all
 * come, each the source's; the old port is closed.
 */
static void test_postcopy_pause_recover_elsewhere(void **state)
{
	struct pc *p = *state;
	unsigned int old_port, new_port, accepted;
	char uri[64], err[256];

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 2, 2u << 20, true);
	old_port = mig_session_incoming_port(p->dst.s);
	pc_start_dirty(p);
	vcpu_start(p);
	/* Not in postcopy yet: QEMU's refusal. */
	assert_int_equal(mig_session_pause(p->src.s), -EINVAL);
	assert_int_equal(mig_session_start_postcopy(p->src.s), 0);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_ACTIVE, 10000));
	usleep(200 * 1000);
	assert_int_equal(mig_session_pause(p->src.s), 0);
	assert_int_equal(status_of(&p->src), MIG_STATUS_POSTCOPY_PAUSED);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_PAUSED, 5000));
	/* Held: no connection attempt for as long as it lasts. */
	accepted = tcp_proxy_accepted(p->proxy);
	usleep(600 * 1000);
	assert_int_equal(tcp_proxy_accepted(p->proxy), accepted);
	assert_int_equal(status_of(&p->src), MIG_STATUS_POSTCOPY_PAUSED);
	assert_int_equal(status_of(&p->dst), MIG_STATUS_POSTCOPY_PAUSED);
	/* Each command on its own side only, and pause only once. */
	assert_int_equal(mig_session_pause(p->src.s), -EINVAL);
	assert_int_equal(mig_session_recover(p->src.s, "tcp:127.0.0.1:0", err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "Migrate recover can only be run when postcopy is paused.");
	assert_int_equal(mig_session_migrate_resume(p->dst.s, p->uri), -ESRCH);
	/* migrate-incoming's rules: plaintext off the host only when the operator said so. */
	err[0] = '\0';
	assert_int_equal(mig_session_recover(p->dst.s, "tcp:192.0.2.1:1", err, sizeof(err)),
			 -EPERM);
	/* A URI the destination cannot listen at (the relay's port): refused, the old one kept. */
	assert_int_equal(mig_session_recover(p->dst.s, p->uri, err, sizeof(err)), -EADDRINUSE);
	assert_non_null(strstr(err, "127.0.0.1"));
	assert_int_equal(mig_session_incoming_port(p->dst.s), old_port);
	/* The destination moves; the source, still held, does not follow yet. */
	assert_int_equal(mig_session_recover(p->dst.s, "tcp:127.0.0.1:0", err, sizeof(err)), 0);
	new_port = mig_session_incoming_port(p->dst.s);
	assert_int_not_equal(new_port, old_port);
	usleep(300 * 1000);
	assert_int_equal(status_of(&p->src), MIG_STATUS_POSTCOPY_PAUSED);
	assert_int_equal(tcp_proxy_accepted(p->proxy), accepted);
	/* An fd: URI cannot take a TCP migration over. */
	assert_int_equal(mig_session_migrate_resume(p->src.s, "fd:x"), -ENOENT);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", new_port);
	assert_int_equal(mig_session_migrate_resume(p->src.s, uri), 0);
	pc_finish_same(p);
	assert_true(tvm_saw_event(&p->src, "postcopy-paused"));
	assert_int_equal(tcp_proxy_accepted(p->proxy), accepted); /* straight to the new port */
	assert_true(port_closed(old_port));
}

/*
 * migrate-pause on the destination: it stops taking its source, which
 * keeps trying (not paused itself) until migrate-recover on the same URI
 * keeps the listener and lets it in.
 */
static void test_postcopy_pause_destination(void **state)
{
	struct pc *p = *state;
	unsigned int port;
	char uri[64], err[256];

	if (!tvm_postcopy_usable())
		skip();
	pc_config(p, true, true, 2, 2u << 20, false);
	port = mig_session_incoming_port(p->dst.s);
	pc_switch(p);
	usleep(200 * 1000);
	assert_int_equal(mig_session_pause(p->dst.s), 0);
	assert_int_equal(status_of(&p->dst), MIG_STATUS_POSTCOPY_PAUSED);
	assert_true(wait_status(&p->src, MIG_STATUS_POSTCOPY_PAUSED, 5000));
	/* The source calls (its reconnect-timeout is 5 s), nobody answers. */
	usleep(1000 * 1000);
	assert_int_equal(status_of(&p->dst), MIG_STATUS_POSTCOPY_PAUSED);
	assert_int_equal(status_of(&p->src), MIG_STATUS_POSTCOPY_PAUSED);
	assert_int_equal(mig_session_migrate_resume(p->src.s, "fd:x"), -ENOENT);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	assert_int_equal(mig_session_recover(p->dst.s, uri, err, sizeof(err)), 0);
	assert_int_equal(mig_session_incoming_port(p->dst.s), port);
	pc_finish_same(p);
	assert_true(tvm_saw_event(&p->dst, "postcopy-paused"));
}

/*
 * A TCP migration moved to a unix: socket while paused: the destination
 * listens there (its TCP port closed), the source follows.
 */
static void test_postcopy_recover_unix(void **state)
{
	struct pc *p = *state;
	char uri[128], err[256];
	unsigned int port;
	struct stat st;

	if (!tvm_postcopy_usable())
		skip();
	snprintf(uri, sizeof(uri), "unix:/tmp/cleave-test-recover-%d.sock", (int)getpid());
	pc_config(p, true, true, 2, 2u << 20, false);
	port = mig_session_incoming_port(p->dst.s);
	pc_switch(p);
	assert_int_equal(mig_session_pause(p->src.s), 0);
	assert_true(wait_status(&p->dst, MIG_STATUS_POSTCOPY_PAUSED, 5000));
	assert_int_equal(mig_session_recover(p->dst.s, uri, err, sizeof(err)), 0);
	assert_int_equal(mig_session_migrate_resume(p->src.s, uri), 0);
	pc_finish_same(p);
	assert_true(port_closed(port));
	assert_int_equal(stat(uri + 5, &st), 0); /* the listener lingers for a late source */
	mig_session_free(p->dst.s);
	p->dst.s = NULL;
	assert_int_equal(stat(uri + 5, &st), -1); /* and its file goes with it */
}

/* QEMU's two checks of migrate-start-postcopy, and a destination without postcopy-ram. */
static void test_postcopy_refusals(void **state)
{
	struct pc *p = *state;
	struct mig_caps caps = {.events = true};
	struct mig_info info;

	assert_int_equal(mig_session_start_postcopy(p->src.s), -ENOPROTOOPT);
	caps.postcopy_ram = true;
	assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
	assert_int_equal(mig_session_start_postcopy(p->src.s), -ENOENT);
	/* On at the source only: the destination refuses the migration, whatever comes. */
	pc_config(p, true, false, 1, 0, false);
	tvm_fill(&p->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	assert_int_equal(mig_session_wait(p->src.s, 20000), 0);
	mig_session_query(p->src.s, &info);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, "postcopy-ram"));
}

int main(void)
{
	log_init("test-migrator-postcopy");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_postcopy_refusals, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_converges, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_guest_write_wins, pc_setup,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_at_once, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_cut, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_cut_no_timeout, pc_setup,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_cut_before_commit, pc_setup,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_pause_recover_elsewhere, pc_setup,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_pause_destination, pc_setup,
						pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_recover_unix, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_abandon_waits, pc_setup, pc_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_abandon_zero_fill, pc_setup,
						pc_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
