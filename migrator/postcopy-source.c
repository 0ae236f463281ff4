// SPDX-License-Identifier: GPL-2.0-only
/*
 * Postcopy, the source's half (docs/MIGRATION.md, "Postcopy").
 *
 * The switch comes at the start of a round, once every earlier round
 * landed: the guest is paused, what it dirtied since the last round is
 * exactly what the destination lacks, and that set goes with the device
 * state in one Postcopy message.  From then on a request thread owns the
 * reading side of the main connection: it answers each page request at
 * once on the main connection (never behind the bulk data of the
 * channels), and passes Loaded and Complete to the worker.  After the
 * Commit the worker pushes the missing pages over every multifd channel as
 * the final round.  The source's guest never runs again once it sent
 * Commit; its RAM is the only copy of what the destination still lacks.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/source-job.h"

bool mig_src_postcopy_wanted(struct mig_src *src)
{
	return (MIG_SETTING(src->s, caps) & MIG_RECORD_CAP_POSTCOPY_RAM) &&
	       (__atomic_load_n(&src->s->rec->postcopy_flags, __ATOMIC_ACQUIRE) &
		MIG_RECORD_PC_START);
}

/* Sends page @page of region @r (checked by the caller) from the RAM memfd. */
static int pc_send_page(struct mig_src *src, uint32_t r, uint64_t page, uint8_t *buf)
{
	struct mig_session *s = src->s;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__PostcopyPages pp = CLEAVE__WIRE__POSTCOPY_PAGES__INIT;
	ssize_t n;
	int ret;

	do
		n = pread(s->env.ram[r].fd, buf, SHM_PAGE_SIZE, (off_t)(page << SHM_PAGE_SHIFT));
	while (n < 0 && errno == EINTR);
	if (n != SHM_PAGE_SIZE) {
		ret = n < 0 ? -errno : -EIO;
		mig_job_abort(&src->job, ret, "postcopy: read region %u page %" PRIu64 ": %s", r,
			      page, strerror(-ret));
		return ret;
	}
	pp.region = r;
	pp.page = page;
	pp.count = 1;
	pp.data.data = buf;
	pp.data.len = SHM_PAGE_SIZE;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY_PAGES;
	m.postcopy_pages = &pp;
	ret = mig_src_send(src, &m, "PostcopyPages");
	if (!ret)
		mig_session_transferred(s, SHM_PAGE_SIZE);
	return ret;
}

/* The destination's guest waits for these pages: they go now, ahead of the push. */
static int pc_serve(struct mig_src *src, const Cleave__Wire__PageRequest *rq, uint8_t *buf)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;

	if (rq->n_region != rq->n_page) {
		mig_job_abort(&src->job, -EPROTO,
			      "protocol error: page request with %zu regions "
			      "for %zu pages",
			      rq->n_region, rq->n_page);
		return -EPROTO;
	}
	for (size_t i = 0; i < rq->n_page; i++) {
		uint32_t r = rq->region[i];
		uint64_t page = rq->page[i];
		int ret;

		if (r >= h->nr_regions || page >= h->regions[r].nr_pages) {
			mig_job_abort(&src->job, -EPROTO,
				      "protocol error: page request for region %u page %" PRIu64, r,
				      page);
			return -EPROTO;
		}
		ret = pc_send_page(src, r, page, buf);
		if (ret)
			return ret;
		/*
		 * Off the push's to-do list if it is still there.  Should this
		 * answer be lost, the destination reports the page on its
		 * reconnect, and the push takes it again.
		 */
		shm_bitmap_clear(shm_ctl_dirty_bitmap(src->s->env.ctl, r), page);
		atomic_fetch_add(&src->s->ctr.postcopy_requests, 1);
	}
	return 0;
}

static void pc_set(struct mig_src *src, bool *flag)
{
	pthread_mutex_lock(&src->pc_lock);
	*flag = true;
	pthread_cond_broadcast(&src->pc_cond);
	pthread_mutex_unlock(&src->pc_lock);
}

/* The request thread: reads the main connection until Complete or the epoch's end. */
static void *pc_thread_main(void *arg)
{
	struct mig_src *src = arg;
	uint8_t *buf = malloc(SHM_PAGE_SIZE);
	bool done = false;
	int ret = buf ? 0 : -ENOMEM;

	log_set_thread("mig/pc-req");
	if (ret)
		mig_job_abort(&src->job, ret, "postcopy: out of memory");
	while (!ret && !done) {
		Cleave__Wire__WireMsg *m;

		ret = mig_msg_recv(src->job.main_fd, &m);
		if (ret) {
			mig_job_abort(&src->job, ret, "main channel: %s",
				      ret == -ECONNRESET ? "destination closed the connection"
							 : strerror(-ret));
			break;
		}
		switch (m->body_case) {
		case CLEAVE__WIRE__WIRE_MSG__BODY_PAGE_REQUEST:
			ret = pc_serve(src, m->page_request, buf);
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_LOADED:
			pc_set(src, &src->pc_loaded);
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE:
			pc_set(src, &src->pc_complete);
			done = true;
			break;
		case CLEAVE__WIRE__WIRE_MSG__BODY_ERROR:
			mig_job_abort_final(&src->job, -EPROTO, "destination: %s",
					    m->error->reason);
			ret = -EPROTO;
			break;
		default:
			mig_job_abort(&src->job, -EPROTO, "protocol error: message %d in postcopy",
				      (int)m->body_case);
			ret = -EPROTO;
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	free(buf);
	return NULL;
}

static int pc_thread_start(struct mig_src *src)
{
	int ret;

	if (src->pc_live)
		return 0;
	pthread_mutex_lock(&src->pc_lock);
	src->pc_loaded = false;
	src->pc_complete = false;
	pthread_mutex_unlock(&src->pc_lock);
	ret = -pthread_create(&src->pc_thread, NULL, pc_thread_main, src);
	if (ret) {
		mig_job_abort(&src->job, ret, "postcopy: request thread: %s", strerror(-ret));
		return ret;
	}
	src->pc_live = true;
	return 0;
}

void mig_src_postcopy_stop(struct mig_src *src)
{
	if (!src->pc_live)
		return;
	/* It ends at Complete, or when the abort shut the main connection down. */
	pthread_join(src->pc_thread, NULL);
	src->pc_live = false;
}

void mig_src_postcopy_wake(struct mig_src *src)
{
	pthread_mutex_lock(&src->pc_lock);
	pthread_cond_broadcast(&src->pc_cond);
	pthread_mutex_unlock(&src->pc_lock);
}

/* A keepalive every io timeout / 4: the destination's deadline on the main connection never fires.
 */
static int pc_keepalive(struct mig_src *src)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Progress p = CLEAVE__WIRE__PROGRESS__INIT;
	uint64_t now = mig_now_ns();

	if (now - src->last_ping_ns < (uint64_t)src->s->io_timeout_ms * 1000000ull / 4)
		return 0;
	src->last_ping_ns = now;
	p.bytes = atomic_load(&src->s->ctr.transferred);
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS;
	m.progress = &p;
	return mig_src_send(src, &m, "Progress");
}

/*
 * Waits until the request thread set *@flag; an abort ends the wait.  The
 * destination answers within its own deadlines, so no bound of ours is
 * needed beyond the connection's: the request thread reads with the I/O
 * timeout, and the destination sends a keepalive every quarter of it.
 */
static int pc_wait(struct mig_src *src, const bool *flag)
{
	unsigned int tick = src->s->io_timeout_ms / 4 ?: 1;
	int ret = 0;

	pthread_mutex_lock(&src->pc_lock);
	while (!*flag && !ret) {
		struct timespec ts;

		if (mig_job_aborted(&src->job)) {
			ret = -ECANCELED;
			break;
		}
		mig_deadline_after_ms(&ts, tick);
		if (pthread_cond_timedwait(&src->pc_cond, &src->pc_lock, &ts) != ETIMEDOUT)
			continue;
		pthread_mutex_unlock(&src->pc_lock);
		ret = pc_keepalive(src);
		pthread_mutex_lock(&src->pc_lock);
	}
	pthread_mutex_unlock(&src->pc_lock);
	return ret;
}

int mig_src_postcopy_push(struct mig_src *src)
{
	struct mig_session *s = src->s;
	int ret;

	ret = pc_thread_start(src);
	if (ret)
		return ret;
	mig_session_set_status(s, MIG_STATUS_POSTCOPY_ACTIVE);
	atomic_store(&s->ctr.remaining, 0);
	ret = mig_src_dirty_round(src, src->final_round, true);
	while (!ret && (ret = mig_send_drain(src, MIG_DRAIN_POLL_MS)) == -ETIMEDOUT)
		ret = pc_keepalive(src);
	if (!ret)
		ret = pc_wait(src, &src->pc_complete);
	if (ret)
		return ret;
	mig_src_postcopy_stop(src);
	return mig_src_completed(src);
}

int mig_src_postcopy_commit(struct mig_src *src, bool loaded)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Commit commit = CLEAVE__WIRE__COMMIT__INIT;
	struct mig_session *s = src->s;
	int ret;

	ret = pc_thread_start(src);
	if (!ret && !loaded)
		ret = pc_wait(src, &src->pc_loaded);
	if (!ret)
		ret = mig_job_commit(&src->job);
	if (ret)
		return ret;
	/* Recorded first: a restarted migrator never resumes this guest again. */
	if (src->phase != MIG_PHASE_SRC_POSTCOPY)
		mig_src_set_phase(src, MIG_PHASE_SRC_POSTCOPY);
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT;
	m.commit = &commit;
	ret = mig_src_send(src, &m, "Commit");
	if (ret)
		return ret;
	if (!mig_record_lock(s->rec)) {
		if (!s->rec->has_downtime && s->rec->pause_ns) {
			s->rec->downtime_ms = (mig_now_ns() - s->rec->pause_ns) / 1000000;
			s->rec->has_downtime = 1;
		}
		mig_record_unlock(s->rec);
	}
	return mig_src_postcopy_push(src);
}

/* Adds the dirty bitmap of each region to @pc's needed maps. */
static int pc_needed_maps(struct mig_src *src, Cleave__Wire__Postcopy *pc)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;
	uint64_t count = 0;

	pc->needed = calloc(h->nr_regions ?: 1, sizeof(*pc->needed));
	if (!pc->needed)
		return -ENOMEM;
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		const uint64_t *dirty = shm_ctl_dirty_bitmap(src->s->env.ctl, r);
		Cleave__Wire__PageMap *pm = calloc(1, sizeof(*pm));
		int ret = pm ? mig_pagemap_encode(dirty, h->regions[r].nr_pages, r, pm) : -ENOMEM;

		if (ret) {
			free(pm);
			return ret;
		}
		pc->needed[pc->n_needed++] = pm;
		count += shm_bitmap_count(dirty, h->regions[r].nr_pages);
	}
	atomic_store(&src->s->ctr.remaining, count * SHM_PAGE_SIZE);
	log_info("postcopy: the destination lacks %" PRIu64 " pages", count);
	return 0;
}

static void pc_needed_free(Cleave__Wire__Postcopy *pc)
{
	for (size_t i = 0; i < pc->n_needed; i++) {
		mig_pagemap_release(pc->needed[i]);
		free(pc->needed[i]);
	}
	free(pc->needed);
}

int mig_src_postcopy(struct mig_src *src, uint64_t round)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Postcopy pc = CLEAVE__WIRE__POSTCOPY__INIT;
	void *blob = NULL;
	size_t len = 0;
	uint64_t n;
	int ret;

	log_info("switching to postcopy at round %" PRIu64, round);
	mig_session_set_status(s, MIG_STATUS_POSTCOPY_ACTIVE);
	if (!mig_record_lock(s->rec)) {
		s->rec->pause_ns = mig_now_ns();
		s->rec->final_round = round;
		mig_record_unlock(s->rec);
	}
	src->final_round = round;
	/* A failure before the Commit resumes the guest here (src_worker). */
	mig_src_set_phase(src, MIG_PHASE_SRC_PAUSED);
	ret = mig_src_call(src, ops->pause(s->env.ops_arg, MIG_PAUSE_FINISH_MIGRATE), "PAUSE");
	if (!ret)
		ret = mig_src_call(src, ops->harvest(s->env.ops_arg, &n), "HARVEST");
	if (!ret)
		ret = mig_src_call(src, ops->save_state(s->env.ops_arg, &blob, &len), "SAVE_STATE");
	if (ret)
		return ret;
	atomic_fetch_add(&s->ctr.rounds, 1);
	ret = pc_needed_maps(src, &pc);
	if (ret) {
		mig_job_abort(&src->job, ret, "postcopy: page maps: %s", strerror(-ret));
	} else {
		pc.final_round = round;
		pc.state.data = blob;
		pc.state.len = len;
		m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY;
		m.postcopy = &pc;
		ret = mig_src_send(src, &m, "Postcopy");
		mig_session_transferred(s, len);
	}
	pc_needed_free(&pc);
	free(blob);
	return ret ? ret : mig_src_postcopy_commit(src, false);
}
