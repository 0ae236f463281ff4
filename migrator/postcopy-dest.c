// SPDX-License-Identifier: GPL-2.0-only
/*
 * Postcopy, the destination's half (docs/MIGRATION.md, "Postcopy").
 *
 * The source's Postcopy message names the pages whose copy here is stale
 * or missing (the needed map).  They are punched out, the VM registers its
 * RAM for faults (struct mig_postcopy_ops: cleave-vcpu holds the
 * userfaultfd), the device state is loaded, and after the source's Commit
 * the guest runs.  A fault on a needed page becomes a page request on the
 * main connection, answered there ahead of the push; the push comes over
 * the multifd channels as the final round.  Either way a page reaches the
 * guest only through the VM's place(), which never overwrites a page that
 * is there: the migrator never writes guest RAM once the guest may run.
 *
 * Threads: the worker reads the main connection (Commit, answered pages);
 * the fault thread turns faults into requests and keeps the connection
 * alive; the receive threads place pushed pages (recv.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-job.h"

#define PC_REQ_MAX	  64	       /* faults per PageRequest */
#define PC_FAULT_POLL_MS  10	       /* the fault thread checks for its stop this often */
#define PC_MAIN_POLL_MS	  20	       /* the worker checks for the push's end this often */
#define PC_RECORD_SYNC_NS 100000000ull /* counters into the record every 100 ms */
#define PC_ANSWER_WAIT_MS 20	       /* a receive thread checks for an abort this often */

bool mig_dst_in_postcopy(const struct mig_dst *dst)
{
	return dst->phase == MIG_PHASE_DST_PC_LOADED || dst->phase == MIG_PHASE_DST_POSTCOPY;
}

bool mig_dst_postcopy_refusal(struct mig_dst *dst, const Cleave__Wire__Hello *h, char *why,
			      size_t len)
{
	struct mig_session *s = dst->s;

	if (!h->postcopy)
		return false;
	if (!(MIG_SETTING(s, caps) & MIG_RECORD_CAP_POSTCOPY_RAM)) {
		snprintf(why, len,
			 "the source has postcopy-ram on and this destination not: set it on "
			 "both sides");
		return true;
	}
	if (!s->env.ops->postcopy) {
		snprintf(why, len, "this VM cannot take postcopy (no page-fault service)");
		return true;
	}
	return false;
}

static uint64_t needed_count(struct mig_dst *dst)
{
	const struct shm_ctl_header *h = dst->s->env.ctl->hdr;
	uint64_t n = 0;

	for (uint32_t r = 0; r < h->nr_regions; r++)
		n += shm_bitmap_count(dst->needed[r], h->regions[r].nr_pages);
	return n;
}

void mig_dst_postcopy_init(struct mig_dst *dst)
{
	pthread_mutex_init(&dst->pc_lock, NULL);
	pthread_cond_init(&dst->pc_cond, NULL);
	for (unsigned int i = 0; i < MIG_PC_TIMED; i++)
		dst->pc_timed[i].page = UINT64_MAX;
}

/* Slot @i of the probe sequence of (@region, @page). */
static unsigned int timed_slot(uint32_t region, uint64_t page, unsigned int i)
{
	uint64_t h = (page ^ ((uint64_t)region << 48)) * 0x9e3779b97f4a7c15ull;

	return (unsigned int)((h >> 54) + i) & (MIG_PC_TIMED - 1);
}

#define PC_TIMED_PROBES 8

/* The fault thread sent a request for the page at @now: timed if it finds a slot. */
static void timed_put(struct mig_dst *dst, uint32_t region, uint64_t page, uint64_t now)
{
	pthread_mutex_lock(&dst->pc_lock);
	for (unsigned int i = 0; i < PC_TIMED_PROBES; i++) {
		struct mig_pc_timed *t = &dst->pc_timed[timed_slot(region, page, i)];

		if (t->page == page && t->region == region)
			break; /* asked again: the first request's time counts */
		if (t->page == UINT64_MAX) {
			t->page = page;
			t->region = region;
			t->sent_ns = now;
			break;
		}
	}
	pthread_mutex_unlock(&dst->pc_lock);
}

/* The page came: how long since it was requested (0: not timed). */
static uint64_t timed_take(struct mig_dst *dst, uint32_t region, uint64_t page, uint64_t now)
{
	uint64_t waited = 0;

	pthread_mutex_lock(&dst->pc_lock);
	for (unsigned int i = 0; i < PC_TIMED_PROBES; i++) {
		struct mig_pc_timed *t = &dst->pc_timed[timed_slot(region, page, i)];

		if (t->page == page && t->region == region) {
			waited = now - t->sent_ns;
			t->page = UINT64_MAX;
			break;
		}
	}
	pthread_mutex_unlock(&dst->pc_lock);
	return waited;
}

bool mig_dst_needed_clear(struct mig_dst *dst, uint32_t region, uint64_t page)
{
	uint64_t bit = 1ull << (page % 64);

	if (!(__atomic_fetch_and(&dst->needed[region][page / 64], ~bit, __ATOMIC_ACQ_REL) & bit))
		return false;
	atomic_fetch_sub(&dst->needed_left, 1);
	/* Placed first by this call: a guest waiting for it waited this long. */
	atomic_fetch_add(&dst->s->ctr.postcopy_wait_us,
			 timed_take(dst, region, page, mig_now_ns()) / 1000);
	return true;
}

void mig_dst_answer_wait(struct mig_dst *dst)
{
	if (!atomic_load(&dst->pc_answering))
		return;
	pthread_mutex_lock(&dst->pc_lock);
	while (atomic_load(&dst->pc_answering) && !mig_job_aborted(&dst->job)) {
		struct timespec ts;

		/* Bounded: an abort is seen even if no broadcast comes. */
		mig_deadline_after_ms(&ts, PC_ANSWER_WAIT_MS);
		pthread_cond_timedwait(&dst->pc_cond, &dst->pc_lock, &ts);
	}
	pthread_mutex_unlock(&dst->pc_lock);
}

static void needed_attach(struct mig_dst *dst)
{
	for (uint32_t r = 0; r < dst->s->env.ctl->hdr->nr_regions; r++)
		dst->needed[r] = shm_ctl_dirty_bitmap(dst->s->env.ctl, r);
}

/* A page request per batch of faults; an empty one every io timeout / 4 as a keepalive. */
static void *pc_fault_main(void *arg)
{
	struct mig_dst *dst = arg;
	struct mig_session *s = dst->s;
	const struct mig_postcopy_ops *pc = s->env.ops->postcopy;
	struct mig_page_ref reqs[PC_REQ_MAX];
	uint32_t regions[PC_REQ_MAX];
	uint64_t pages[PC_REQ_MAX], last_tx = 0;
	uint64_t tick_ns = (uint64_t)s->io_timeout_ms * 1000000ull / 4;
	bool again = true; /* a new connection: every fault still waiting is asked again */

	log_set_thread("mig/pc-fault");
	while (!atomic_load(&dst->pc_stop) && !mig_job_aborted(&dst->job)) {
		Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
		Cleave__Wire__PageRequest rq = CLEAVE__WIRE__PAGE_REQUEST__INIT;
		/*
		 * A short wait: a lost source's next connection is taken only
		 * once this thread is joined, and a vCPU waits for it.
		 */
		int n = pc->wait_faults(s->env.ops_arg, reqs, PC_REQ_MAX, PC_FAULT_POLL_MS, again);
		size_t k = 0;

		if (n < 0) {
			mig_job_abort(&dst->job, n, "vcpu-proc faults: %s", strerror(-n));
			break;
		}
		again = false;
		for (int i = 0; i < n; i++) {
			if (reqs[i].region >= s->env.ctl->hdr->nr_regions ||
			    !shm_bitmap_test(dst->needed[reqs[i].region], reqs[i].page))
				continue; /* placed meanwhile */
			regions[k] = reqs[i].region;
			pages[k++] = reqs[i].page;
		}
		if (!k && mig_now_ns() - last_tx < tick_ns)
			continue;
		/* Timed before it leaves: the answer may come before we look again. */
		for (size_t i = 0; i < k; i++)
			timed_put(dst, regions[i], pages[i], mig_now_ns());
		rq.n_region = rq.n_page = k;
		rq.region = regions;
		rq.page = pages;
		if (mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_PAGE_REQUEST, &rq))
			break;
		last_tx = mig_now_ns();
		atomic_fetch_add(&s->ctr.postcopy_requests, k);
	}
	return NULL;
}

static int pc_fault_start(struct mig_dst *dst)
{
	int ret;

	if (dst->pc_live)
		return 0;
	atomic_store(&dst->pc_stop, false);
	ret = -pthread_create(&dst->pc_thread, NULL, pc_fault_main, dst);
	if (ret)
		return mig_dst_fail(dst, ret, "postcopy: fault thread: %s", strerror(-ret));
	dst->pc_live = true;
	return 0;
}

void mig_dst_postcopy_stop(struct mig_dst *dst)
{
	if (!dst->pc_live)
		return;
	atomic_store(&dst->pc_stop, true);
	pthread_join(dst->pc_thread, NULL);
	dst->pc_live = false;
}

/* An answer to a request: placed through the VM, never written here. */
static int pc_pages(struct mig_dst *dst, const Cleave__Wire__PostcopyPages *pp)
{
	struct mig_session *s = dst->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	uint64_t pulled = 0;
	int ret;

	if (pp->region >= h->nr_regions || !pp->count || pp->count > MIG_BATCH_PAGES ||
	    pp->page >= h->regions[pp->region].nr_pages ||
	    pp->count > h->regions[pp->region].nr_pages - pp->page ||
	    pp->data.len != (size_t)pp->count * SHM_PAGE_SIZE)
		return mig_dst_fail(dst, -EPROTO,
				    "protocol error: PostcopyPages region %u page %" PRIu64
				    " count %u with %zu bytes",
				    pp->region, pp->page, pp->count, pp->data.len);
	/*
	 * The receive threads share the VM's link: held back meanwhile, they
	 * cannot keep taking the room the link frees ahead of this answer.
	 */
	atomic_fetch_add(&dst->pc_answering, 1);
	ret = s->env.ops->postcopy->place(s->env.ops_arg, pp->region, pp->page, pp->count,
					  pp->data.data);
	pthread_mutex_lock(&dst->pc_lock);
	if (atomic_fetch_sub(&dst->pc_answering, 1) == 1)
		pthread_cond_broadcast(&dst->pc_cond);
	pthread_mutex_unlock(&dst->pc_lock);
	if (ret)
		return mig_dst_fail(dst, ret, "vcpu-proc: place region %u page %" PRIu64 ": %s",
				    pp->region, pp->page, strerror(-ret));
	for (uint32_t i = 0; i < pp->count; i++)
		pulled += mig_dst_needed_clear(dst, pp->region, pp->page + i);
	atomic_fetch_add(&s->ctr.postcopy_pulled, pulled);
	mig_session_transferred(s, pp->data.len);
	atomic_fetch_sub(&s->ctr.remaining, pulled * SHM_PAGE_SIZE);
	return 0;
}

/* The source will never run its guest again: run ours. */
static int pc_commit(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	int ret;

	if (dst->phase != MIG_PHASE_DST_PC_LOADED)
		return 0; /* a repeated Commit */
	mig_dst_set_phase(dst, MIG_PHASE_DST_POSTCOPY);
	ret = s->env.ops->resume(s->env.ops_arg); /* idempotent: a restart repeats it */
	if (ret)
		return mig_dst_fail(dst, ret, "vcpu-proc RESUME: %s (guest runs nowhere)",
				    strerror(-ret));
	mig_session_set_status(s, MIG_STATUS_POSTCOPY_ACTIVE);
	return 0;
}

static bool pc_channels_ended(struct mig_dst *dst)
{
	bool ended;

	pthread_mutex_lock(&dst->bar_lock);
	ended = dst->bar_ended;
	pthread_mutex_unlock(&dst->bar_lock);
	return ended;
}

/* Every channel passed the push's FINAL: each pushed page was placed by its receive thread. */
static int pc_finish(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Complete complete = CLEAVE__WIRE__COMPLETE__INIT;
	uint64_t final_round = 0, left;
	int ret;

	mig_recv_join(dst);
	if (!mig_record_lock(s->rec)) {
		final_round = s->rec->final_round;
		mig_record_unlock(s->rec);
	}
	ret = mig_dst_channels_final(dst, final_round);
	if (ret)
		return ret;
	left = needed_count(dst);
	if (left)
		return mig_dst_fail(dst, -EPROTO,
				    "protocol error: the source ended its push with %" PRIu64
				    " pages still missing here",
				    left);
	mig_dst_postcopy_stop(dst);
	mig_session_set_missing(s, false);
	ret = s->env.ops->postcopy->end(s->env.ops_arg, false);
	if (ret)
		return mig_dst_fail(dst, ret, "vcpu-proc: postcopy end: %s", strerror(-ret));
	mig_dst_set_phase(dst, MIG_PHASE_DST_RUNNING);
	if (mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE, &complete))
		log_warn("source did not get Complete; every page is here");
	return 0;
}

/*
 * The main connection ended in POSTCOPY with every page placed: a source
 * that sent all and closed, whose channels' FINAL may still be on its
 * way.  True once they ended (within the io timeout); false when a
 * channel broke or they did not: the loss of the source it was.
 */
static bool pc_all_placed_channels_end(struct mig_dst *dst)
{
	uint64_t end = mig_now_ns() + (uint64_t)dst->s->io_timeout_ms * 1000000ull;

	if (dst->phase != MIG_PHASE_DST_POSTCOPY || atomic_load(&dst->needed_left))
		return false;
	while (!pc_channels_ended(dst)) {
		if (mig_job_aborted(&dst->job) || mig_now_ns() >= end)
			return false;
		usleep(PC_MAIN_POLL_MS * 1000);
	}
	log_info("the source closed its main connection with every page here");
	return true;
}

/*
 * PC_LOADED or POSTCOPY with the channels running: reads the main
 * connection (Commit, answered pages) until the push ended.  The source
 * writes a keepalive every io timeout / 4: silence for a whole io timeout
 * is a lost source.
 */
int mig_dst_postcopy_run(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	uint64_t timeout_ns = (uint64_t)s->io_timeout_ms * 1000000ull;
	int ret = pc_fault_start(dst);

	uint64_t last_sync = 0, ended_ns = 0;

	dst->pc_rx_ns = mig_now_ns();
	while (!ret) {
		struct pollfd pfd = {.fd = dst->job.main_fd, .events = POLLIN};
		Cleave__Wire__WireMsg *m;
		int n;

		if (mig_job_aborted(&dst->job))
			return -ECANCELED;
		/* The counters, for a restarted migrator's query-migrate. */
		if (mig_now_ns() - last_sync > PC_RECORD_SYNC_NS) {
			last_sync = mig_now_ns();
			mig_session_record_sync(s);
		}
		/*
		 * The push is over; answers to requests may still be on the main
		 * connection (the push skips a page served on request), so
		 * the end waits for them, within the io timeout.
		 */
		if (dst->phase == MIG_PHASE_DST_POSTCOPY && pc_channels_ended(dst)) {
			if (!atomic_load(&dst->needed_left))
				return pc_finish(dst);
			if (!ended_ns)
				ended_ns = mig_now_ns();
			else if (mig_now_ns() - ended_ns > timeout_ns)
				return mig_dst_fail(dst, -EPROTO,
						    "protocol error: the source ended its push "
						    "with %" PRIu64 " pages still missing here",
						    (uint64_t)atomic_load(&dst->needed_left));
		}
		n = poll(&pfd, 1, PC_MAIN_POLL_MS);
		if (n < 0 && errno != EINTR)
			return mig_dst_fail(dst, -errno, "main channel: poll: %s", strerror(errno));
		if (n <= 0) {
			if (mig_now_ns() - dst->pc_rx_ns > timeout_ns)
				return mig_dst_fail(
					dst, -ETIMEDOUT,
					"main channel: nothing from the source for %u ms",
					s->io_timeout_ms);
			continue;
		}
		ret = mig_msg_recv(dst->job.main_fd, &m);
		if (ret && pc_all_placed_channels_end(dst))
			return pc_finish(dst);
		if (ret)
			return mig_dst_fail(dst, ret, "main channel: %s",
					    ret == -ECONNRESET ? "source closed the connection"
							       : strerror(-ret));
		dst->pc_rx_ns = mig_now_ns();
		switch (m->body_case) {
		case CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT:
			ret = pc_commit(dst);
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY_PAGES:
			ret = pc_pages(dst, m->postcopy_pages);
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_ROUND:
		case CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS:
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_ERROR:
			ret = mig_dst_source_error(dst, m->error->reason);
			break;
		default:
			ret = mig_dst_fail(dst, -EPROTO, "protocol error: message %d in postcopy",
					   (int)m->body_case);
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	return ret;
}

/*
 * The needed map from @pc, into the ctl segment's maps (zeroed first: a
 * destination leaves them to whoever runs it next), each page punched out
 * and forgotten by the receivedmap.  Every map is checked before any
 * page is touched.
 */
static int pc_needed_load(struct mig_dst *dst, const Cleave__Wire__Postcopy *pc)
{
	struct mig_session *s = dst->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	uint64_t *maps[SHM_MAX_REGIONS] = {0}, total = 0;
	int ret = 0;

	for (uint32_t r = 0; r < h->nr_regions && !ret; r++) {
		maps[r] = calloc(SHM_BITMAP_WORDS(h->regions[r].nr_pages) ?: 1, sizeof(uint64_t));
		ret = maps[r] ? 0 : -ENOMEM;
		for (size_t i = 0; !ret && i < pc->n_needed; i++)
			if (pc->needed[i]->region == r &&
			    mig_pagemap_decode(pc->needed[i], maps[r], h->regions[r].nr_pages))
				ret = -EPROTO;
	}
	for (size_t i = 0; !ret && i < pc->n_needed; i++)
		if (pc->needed[i]->region >= h->nr_regions)
			ret = -EPROTO;
	for (uint32_t r = 0; r < h->nr_regions && !ret; r++) {
		uint64_t nbits = h->regions[r].nr_pages, p = 0;

		shm_bitmap_zero(dst->needed[r], nbits);
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(nbits); w++) {
			shm_bitmap_or_word(dst->needed[r], w, maps[r][w]);
			shm_bitmap_andnot_word(dst->received[r], w, maps[r][w]);
		}
		while ((p = shm_bitmap_find_next(maps[r], nbits, p)) < nbits && !ret) {
			uint64_t e = shm_bitmap_find_next_zero(maps[r], nbits, p);

			if (fallocate(s->env.ram[r].fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				      (off_t)(p << SHM_PAGE_SHIFT),
				      (off_t)((e - p) << SHM_PAGE_SHIFT)))
				ret = -errno;
			total += e - p;
			p = e;
		}
	}
	for (uint32_t r = 0; r < h->nr_regions; r++)
		free(maps[r]);
	if (ret)
		return mig_dst_fail(dst, ret, "postcopy: needed pages: %s",
				    ret == -EPROTO ? "bad page map" : strerror(-ret));
	atomic_store(&dst->needed_left, total);
	atomic_store(&s->ctr.remaining, total * SHM_PAGE_SIZE);
	mig_session_set_missing(s, true);
	log_info("postcopy: %" PRIu64 " pages to come from the source", total);
	return 0;
}

/* Undoes a switch that did not reach PC_LOADED: the guest never ran, precopy may finish it. */
static void pc_switch_undo(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;

	mig_dst_postcopy_stop(dst);
	if (s->env.ops->postcopy->end(s->env.ops_arg, true))
		log_warn("vcpu-proc: postcopy end after a failed switch failed");
	atomic_store(&dst->postcopy, false);
	mig_session_set_missing(s, false);
}

int mig_dst_postcopy_switch(struct mig_dst *dst, const Cleave__Wire__Postcopy *pc)
{
	struct mig_session *s = dst->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Loaded loaded = CLEAVE__WIRE__LOADED__INIT;
	uint64_t gen;
	int ret;

	if (!ops->postcopy || !(MIG_SETTING(s, caps) & MIG_RECORD_CAP_POSTCOPY_RAM))
		return mig_dst_fail(dst, -EPROTO, "protocol error: Postcopy, which was refused");
	pthread_mutex_lock(&dst->bar_lock);
	gen = dst->bar_generation;
	pthread_mutex_unlock(&dst->bar_lock);
	/* Every round before the push landed (the source waited for its RoundAck). */
	if (gen != pc->final_round)
		return mig_dst_fail(dst, -EPROTO,
				    "protocol error: Postcopy at round %" PRIu64
				    " where rounds < %" PRIu64 " landed",
				    pc->final_round, gen);
	needed_attach(dst);
	ret = pc_needed_load(dst, pc);
	if (ret)
		return ret;
	if (!mig_record_lock(s->rec)) {
		s->rec->final_round = pc->final_round;
		mig_record_unlock(s->rec);
	}
	atomic_store(&dst->postcopy, true);
	ret = ops->postcopy->listen(s->env.ops_arg, (const uint64_t *const *)dst->needed);
	if (ret) {
		mig_dst_fail(dst, ret, "vcpu-proc: postcopy listen: %s", strerror(-ret));
		goto undo;
	}
	/* Loading the state may touch guest RAM (the clock's page): faults are served first. */
	ret = pc_fault_start(dst);
	if (ret)
		goto undo;
	ret = ops->load_state(s->env.ops_arg, pc->state.data, pc->state.len);
	if (ret) {
		mig_dst_fail(dst, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc LOAD_STATE: %s",
			     strerror(-ret));
		goto undo;
	}
	/* Recorded only now: a migrator killed before this finishes as precopy. */
	mig_dst_set_phase(dst, MIG_PHASE_DST_PC_LOADED);
	ret = mig_dst_send(dst, &m, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, &loaded);
	return ret ? ret : mig_dst_postcopy_run(dst);
undo:
	pc_switch_undo(dst);
	return ret;
}

int mig_dst_postcopy_adopt(struct mig_dst *dst)
{
	struct mig_session *s = dst->s;
	const struct mig_postcopy_ops *pc = s->env.ops->postcopy;
	int ret;

	if (!pc)
		return mig_dst_fail(dst, -EPROTO, "session record: postcopy on a VM without it");
	needed_attach(dst);
	atomic_store(&dst->postcopy, true);
	ret = pc->listen(s->env.ops_arg, (const uint64_t *const *)dst->needed);
	if (ret)
		return mig_dst_fail(dst, ret, "vcpu-proc: postcopy listen: %s", strerror(-ret));
	atomic_store(&dst->needed_left, needed_count(dst));
	atomic_store(&s->ctr.remaining, atomic_load(&dst->needed_left) * SHM_PAGE_SIZE);
	mig_session_set_missing(s, true);
	/* Killed between Commit and RESUME: the guest is ours, run it now. */
	if (dst->phase == MIG_PHASE_DST_POSTCOPY) {
		/* No source until it reconnects (and the operator may give up on it meanwhile). */
		mig_session_set_status(s, MIG_STATUS_POSTCOPY_PAUSED);
		ret = s->env.ops->resume(s->env.ops_arg);
		if (ret)
			return mig_dst_fail(dst, ret, "vcpu-proc RESUME: %s", strerror(-ret));
	}
	return 0;
}

void mig_dst_postcopy_abandon(struct mig_job *job, bool zero_fill)
{
	struct mig_dst *dst = (struct mig_dst *)((char *)job - offsetof(struct mig_dst, job));
	char why[256];

	atomic_store(&dst->pc_zero_fill, zero_fill);
	snprintf(why, sizeof(why),
		 "postcopy abandoned by the operator: %" PRIu64 " pages never came from the "
		 "source (%s)",
		 (uint64_t)atomic_load(&dst->needed_left),
		 zero_fill ? "filled with zeros: the guest runs on without their contents"
			   : "a vCPU that touches one waits for good");
	/* Ends the wait for the source like a cancel: the worker ends, with this reason. */
	mig_job_cancel(job, why);
}

int mig_postcopy_zero_fill(struct mig_session *s, uint64_t *filled)
{
	const struct mig_postcopy_ops *pc = s->env.ops->postcopy;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	int ret = pc ? 0 : -EOPNOTSUPP;

	*filled = 0;
	for (uint32_t r = 0; r < h->nr_regions && !ret; r++) {
		uint64_t *needed = shm_ctl_dirty_bitmap(s->env.ctl, r);
		uint64_t nbits = h->regions[r].nr_pages, p = 0;

		while (!ret && (p = shm_bitmap_find_next(needed, nbits, p)) < nbits) {
			uint64_t e = shm_bitmap_find_next_zero(needed, nbits, p);
			uint32_t n = e - p < MIG_BATCH_PAGES ? (uint32_t)(e - p) : MIG_BATCH_PAGES;

			/* As a page from the source (NULL: zeros): a fault waiting on it ends. */
			ret = pc->place(s->env.ops_arg, r, p, n, NULL);
			for (uint32_t i = 0; !ret && i < n; i++) {
				uint64_t bit = 1ull << ((p + i) % 64);

				*filled += !!(__atomic_fetch_and(&needed[(p + i) / 64], ~bit,
								 __ATOMIC_ACQ_REL) &
					      bit);
			}
			p += n;
		}
	}
	if (!ret)
		ret = pc->end(s->env.ops_arg, false);
	if (!ret)
		mig_session_set_missing(s, false);
	return ret;
}

void mig_dst_postcopy_zero_fill(struct mig_dst *dst)
{
	uint64_t filled;
	int ret = mig_postcopy_zero_fill(dst->s, &filled);

	if (ret) {
		log_err("postcopy: filling the missing pages with zeros: %s", strerror(-ret));
		return;
	}
	atomic_store(&dst->needed_left, 0);
	log_warn("postcopy: %" PRIu64 " missing pages filled with zeros, as the operator said",
		 filled);
}
