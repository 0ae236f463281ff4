/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The outgoing job's worker thread: handshake, first pass over the
 * allocated parts of RAM, dirty rounds until the expected downtime fits
 * downtime-limit, then stop-and-copy and the two-phase completion
 * (docs/MIGRATION.md).  Until Commit is decided any failure resumes the
 * guest; after it the guest never runs here again.
 *
 * A lost destination (dropped connection, restarted migrator) is not a
 * failure until reconnect-timeout: the worker reconnects, the destination
 * reports what it holds, and the transfer continues from the recorded
 * phase (src_resume_plan).  A restarted source migrator does the same from
 * the session record.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mux.h"
#include "migrator/source-job.h"
#include "migrator/tls.h"

#define MIG_DOWNTIME_GOAL_US   5000	     /* stop iterating below this expected downtime */
#define MIG_EXTRA_ROUNDS       8	     /* at most this many rounds once the limit is met */
#define MIG_FIRST_PASS_HARVEST (64ull << 20) /* round 0 harvests every 64 MiB queued */
#define MIG_RECORD_SYNC_NS     100000000ull  /* counters into the record every 100 ms */

static struct mig_src *src_of(struct mig_job *job)
{
	return (struct mig_src *)((char *)job - offsetof(struct mig_src, job));
}

static void *src_worker(void *arg);
static void src_shut_down(struct mig_job *job, bool job_ends);
static void src_wake(struct mig_job *job);
static void src_free(struct mig_job *job);

static const struct mig_job_ops src_job_ops = {
	.thread_name = "mig/src",
	.run = src_worker,
	.shut_down = src_shut_down,
	.wake = src_wake,
	.free = src_free,
};

/* The fd of an fd: URI failed under the migration: the job learns why. */
static void src_mux_dead(void *arg, int err, const char *reason)
{
	mig_job_abort(arg, err, "%s", reason);
}

int mig_src_alloc(struct mig_job **out, struct mig_session *s, const char *uri)
{
	struct mig_src *src;
	unsigned int n =
		MIG_SETTING(s, caps) & MIG_RECORD_CAP_MULTIFD ? MIG_SETTING(s, channels) : 1;
	char err[256];
	int fd = -1, ret;

	if (strlen(uri) >= sizeof(src->uri) ||
	    (strncmp(uri, "tcp:", 4) && !mig_uri_is_unix(uri) && !mig_uri_is_fd(uri)))
		return -EINVAL;
	/* The session's fd goes to the job: closed with it, or now on an error. */
	if (mig_uri_is_fd(uri)) {
		fd = mig_session_fd_take(s, uri + 3);
		if (fd < 0)
			return fd;
	}
	src = calloc(1, sizeof(*src));
	if (src)
		src->chans = calloc(n, sizeof(*src->chans));
	if (!src || !src->chans) {
		free(src);
		if (fd >= 0)
			close(fd);
		return -ENOMEM;
	}
	mig_job_init(&src->job, s, &src_job_ops);
	if (fd >= 0) {
		ret = mig_mux_start(&src->mux, fd, false, uri, src_mux_dead, &src->job, err,
				    sizeof(err));
		if (ret) {
			log_err("migrate: %s", err);
			mig_job_fini(&src->job);
			free(src->chans);
			free(src);
			return ret;
		}
	}
	src->s = s;
	src->nr_chans = n;
	src->queue_depth = MIG_QUEUE_TOTAL / n;
	if (src->queue_depth < MIG_QUEUE_MIN)
		src->queue_depth = MIG_QUEUE_MIN;
	if (src->queue_depth > MIG_QUEUE_DEPTH)
		src->queue_depth = MIG_QUEUE_DEPTH;
	strcpy(src->uri, uri);
	pthread_mutex_init(&src->sq_lock, NULL);
	pthread_mutex_init(&src->rate_lock, NULL);
	pthread_cond_init(&src->sq_space, NULL);
	pthread_mutex_init(&src->pc_lock, NULL);
	pthread_cond_init(&src->pc_cond, NULL);
	for (unsigned int i = 0; i < n; i++) {
		src->chans[i].src = src;
		src->chans[i].index = i;
		src->chans[i].fd = -1;
		pthread_cond_init(&src->chans[i].work, NULL);
	}
	*out = &src->job;
	return 0;
}

static void src_free(struct mig_job *job)
{
	struct mig_src *src = src_of(job);

	mig_mux_free(src->mux); /* first: its thread may abort the job */
	mig_send_stop(src);	/* no-op when the worker already joined them */
	mig_src_postcopy_stop(src);
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		if (src->chans[i].fd >= 0)
			mig_sock_close(src->chans[i].fd);
		pthread_cond_destroy(&src->chans[i].work);
	}
	pthread_cond_destroy(&src->sq_space);
	pthread_cond_destroy(&src->pc_cond);
	pthread_mutex_destroy(&src->pc_lock);
	pthread_mutex_destroy(&src->rate_lock);
	pthread_mutex_destroy(&src->sq_lock);
	mig_job_fini(&src->job);
	free(src->chans);
	free(src);
}

/* Under the job lock, by the abort that ends an epoch (see struct mig_job_ops). */
static void src_shut_down(struct mig_job *job, bool job_ends)
{
	struct mig_src *src = src_of(job);

	(void)job_ends; /* the source has no listener */
	for (unsigned int i = 0; i < src->nr_chans; i++)
		if (src->chans[i].fd >= 0)
			shutdown(src->chans[i].fd, SHUT_RDWR);
}

/*
 * After every abort: the send threads stop, and so does a worker waiting
 * for ring space or for the destination's Loaded or Complete (postcopy).
 */
static void src_wake(struct mig_job *job)
{
	mig_send_halt(src_of(job));
	mig_src_postcopy_wake(src_of(job));
}

/* Main-channel message from the worker. */
int mig_src_send(struct mig_src *src, Cleave__Wire__WireMsg *m, const char *what)
{
	int ret;

	pthread_mutex_lock(&src->job.tx_lock);
	ret = mig_msg_send(src->job.main_fd, m);
	pthread_mutex_unlock(&src->job.tx_lock);
	if (ret)
		mig_job_abort(&src->job, ret, "main channel: send %s: %s", what, strerror(-ret));
	return ret;
}

/* Aborts with the destination's Error, or with "unexpected <what>". */
static int src_bad_msg(struct mig_src *src, Cleave__Wire__WireMsg *m, const char *waiting)
{
	if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR)
		mig_job_abort_final(&src->job, -EPROTO, "destination: %s", m->error->reason);
	else
		mig_job_abort(&src->job, -EPROTO, "protocol error: message %d while waiting for %s",
			      (int)m->body_case, waiting);
	return -EPROTO;
}

/*
 * A RoundAck: every page of rounds <= @round landed at the destination.
 * One comes per announced round, in order; a stale, repeated or early one
 * is a protocol error, so a peer cannot keep the worker reading acks.
 */
static int src_acked(struct mig_src *src, uint64_t round)
{
	if (round > src->round || (src->has_acked && round <= src->acked_round)) {
		mig_job_abort(&src->job, -EPROTO,
			      "protocol error: RoundAck %" PRIu64 " (last %" PRIu64
			      ", round %" PRIu64 " in progress)",
			      round, src->has_acked ? src->acked_round : 0, src->round);
		return -EPROTO;
	}
	src->acked_round = round;
	src->has_acked = true;
	return 0;
}

/* Waits for a message of type @want on the main channel; *out keeps it if non-NULL. */
static int src_expect(struct mig_src *src, int want, const char *what, Cleave__Wire__WireMsg **out)
{
	Cleave__Wire__WireMsg *m;
	int ret;

	do {
		ret = mig_msg_recv(src->job.main_fd, &m);
		if (ret) {
			mig_job_abort(&src->job, ret, "main channel: waiting for %s: %s", what,
				      strerror(-ret));
			return ret;
		}
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK) {
			ret = src_acked(src, m->round_ack->round) ?: -EAGAIN;
		} else if ((int)m->body_case != want) {
			ret = src_bad_msg(src, m, what);
		} else if (out) {
			*out = m;
			return 0;
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	} while (ret == -EAGAIN);
	return ret;
}

/* Waits until the destination has written every page of rounds <= @round. */
static int src_wait_acked(struct mig_src *src, uint64_t round)
{
	Cleave__Wire__WireMsg *m;
	int ret = 0;

	while (!ret && (!src->has_acked || src->acked_round < round)) {
		ret = mig_msg_recv(src->job.main_fd, &m);
		if (ret) {
			mig_job_abort(&src->job, ret, "main channel: waiting for RoundAck: %s",
				      strerror(-ret));
			return ret;
		}
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK)
			ret = src_acked(src, m->round_ack->round);
		else
			ret = src_bad_msg(src, m, "RoundAck");
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	return ret;
}

/*
 * While queuing or draining: whatever the destination said (a RoundAck, an
 * Error, or its end: a killed destination migrator shows as EOF here long
 * before a rate-limited channel writes into it again), then, every io
 * timeout / 4, a keepalive so its deadline never fires.
 */
static int src_ping(struct mig_src *src)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Progress p = CLEAVE__WIRE__PROGRESS__INIT;
	uint64_t now = mig_now_ns();
	int ret;

	/* In postcopy the request thread reads the main connection. */
	while (!src->pc_live && mig_sock_readable(src->job.main_fd)) {
		Cleave__Wire__WireMsg *in;

		ret = mig_msg_recv(src->job.main_fd, &in);
		if (ret) {
			mig_job_abort(&src->job, ret, "main channel: %s", strerror(-ret));
			return ret;
		}
		if (in->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK)
			ret = src_acked(src, in->round_ack->round);
		else
			ret = src_bad_msg(src, in, "nothing");
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		if (ret)
			return ret;
	}
	if (now - src->last_ping_ns < (uint64_t)src->s->io_timeout_ms * 1000000ull / 4)
		return 0;
	src->last_ping_ns = now;
	p.bytes = atomic_load(&src->s->ctr.transferred);
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS;
	m.progress = &p;
	return mig_src_send(src, &m, "Progress");
}

static int src_queue(struct mig_src *src, struct mig_batch *b)
{
	uint64_t left = atomic_load(&src->s->ctr.remaining), bytes = b->nr_pages * SHM_PAGE_SIZE;
	int ret;

	if (!b->nr_pages)
		return 0;
	ret = mig_send_queue(src, b, -1);
	/* Only the worker writes remaining: load and store need no loop. */
	atomic_store(&src->s->ctr.remaining, left > bytes ? left - bytes : 0);
	b->nr_pages = 0;
	/* So that a restarted migrator reports about what this one did. */
	if (mig_now_ns() - src->last_sync_ns > MIG_RECORD_SYNC_NS) {
		src->last_sync_ns = mig_now_ns();
		mig_session_record_sync(src->s);
	}
	return ret ? ret : src_ping(src);
}

static int src_add_page(struct mig_src *src, struct mig_batch *b, uint32_t region, uint64_t page)
{
	if (b->nr_pages && b->region != region) {
		int ret = src_queue(src, b);

		if (ret)
			return ret;
	}
	b->region = region;
	b->pages[b->nr_pages++] = page;
	return b->nr_pages == src->batch_pages ? src_queue(src, b) : 0;
}

/*
 * Round @round starts: the round bitmaps forget the previous round (it was
 * acknowledged, or merged into the dirty bitmaps by a resume) and will hold
 * every page queued from now on, so a restarted migrator knows what may
 * not have landed.  Recorded before the first page is queued.
 */
static void src_round_begin(struct mig_src *src, uint64_t round)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;

	for (uint32_t r = 0; r < h->nr_regions; r++)
		shm_bitmap_zero(shm_ctl_round_bitmap(src->s->env.ctl, r), h->regions[r].nr_pages);
	src->round = round;
	if (!mig_record_lock(src->s->rec)) {
		src->s->rec->round = round;
		mig_record_unlock(src->s->rec);
	}
}

/* SYNC <round> on every channel, then the round marker on the main channel. */
static int src_sync(struct mig_src *src, uint64_t round, uint64_t pages, bool final)
{
	struct mig_batch b = {.round = round, .flags = MIG_PKT_SYNC | (final ? MIG_PKT_FINAL : 0)};
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Round r = CLEAVE__WIRE__ROUND__INIT;
	int ret;

	for (unsigned int i = 0; i < src->nr_chans; i++) {
		ret = mig_send_queue(src, &b, (int)i);
		if (ret)
			return ret;
	}
	r.round = round;
	r.pages = pages;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND;
	m.round = &r;
	return mig_src_send(src, &m, "Round");
}

int mig_src_call(struct mig_src *src, int ret, const char *what)
{
	if (ret)
		mig_job_abort(&src->job, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc %s: %s", what,
			      strerror(-ret));
	return ret;
}

/*
 * Round 0: every allocated page of every region; holes are never read.
 * A long round 0 harvests every MIG_FIRST_PASS_HARVEST bytes and skips the
 * pages the guest dirtied since logging started: their bits stay set, so
 * round 1 sends them anyway, and sending them now too would only double
 * the bytes of a busy guest's first pass.
 */
static int src_first_pass(struct mig_src *src)
{
	struct mig_session *s = src->s;
	struct mig_batch b = {.round = 0};
	uint64_t every = MIG_HOOK(s, first_pass_harvest_bytes) ?: MIG_FIRST_PASS_HARVEST;
	uint64_t pages = 0, since = 0, n;
	bool harvested = false, to_postcopy = false;
	int ret;

	src_round_begin(src, 0);
	atomic_store(&s->ctr.remaining, s->env.ctl->hdr->ram_size);
	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++) {
		uint64_t size = s->env.ctl->hdr->regions[r].size, pos = 0, a, e;
		uint64_t *dirty = shm_ctl_dirty_bitmap(s->env.ctl, r);
		uint64_t *inround = shm_ctl_round_bitmap(s->env.ctl, r);

		while ((ret = shm_memfd_next_data(s->env.ram[r].fd, pos, size, &a, &e)) == 0) {
			atomic_fetch_add(&s->ctr.skipped, (a - pos) >> SHM_PAGE_SHIFT);
			atomic_fetch_sub(&s->ctr.remaining, a - pos);
			for (uint64_t p = a >> SHM_PAGE_SHIFT; p < e >> SHM_PAGE_SHIFT; p++) {
				if (since >= every) {
					ret = mig_src_call(src,
							   s->env.ops->harvest(s->env.ops_arg, &n),
							   "HARVEST");
					if (ret)
						return ret;
					harvested = true;
					since = 0;
				}
				if (harvested && shm_bitmap_test(dirty, p))
					continue; /* round 1 sends it */
				/*
				 * migrate-start-postcopy during the pass: the rest
				 * is left to postcopy, which switches as soon as
				 * what was queued landed (QEMU switches as soon).
				 */
				if (!to_postcopy && !(p % MIG_BATCH_PAGES))
					to_postcopy = mig_src_postcopy_wanted(src);
				if (to_postcopy) {
					shm_bitmap_set(dirty, p);
					continue;
				}
				shm_bitmap_set(inround, p);
				ret = src_add_page(src, &b, r, p);
				if (ret)
					return ret;
				pages++;
				since += SHM_PAGE_SIZE;
			}
			pos = e;
		}
		if (ret != -ENXIO) {
			mig_job_abort(&src->job, ret, "region %u: SEEK_DATA: %s", r,
				      strerror(-ret));
			return ret;
		}
		atomic_fetch_add(&s->ctr.skipped, (size - pos) >> SHM_PAGE_SHIFT);
	}
	ret = src_queue(src, &b);
	return ret ? ret : src_sync(src, 0, pages, false);
}

static uint64_t src_dirty_count(struct mig_src *src)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;
	uint64_t n = 0;

	for (uint32_t r = 0; r < h->nr_regions; r++)
		n += shm_bitmap_count(shm_ctl_dirty_bitmap(src->s->env.ctl, r),
				      h->regions[r].nr_pages);
	return n;
}

/*
 * Sends every page of the dirty bitmaps as round @round.  A page moves to
 * the round bitmap before its dirty bit is cleared: killed in between, the
 * next migrator finds it in one of the two.
 */
int mig_src_dirty_round(struct mig_src *src, uint64_t round, bool final)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;
	struct mig_batch b = {.round = round};
	uint64_t pages = 0;
	int ret;

	src_round_begin(src, round);
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		uint64_t *map = shm_ctl_dirty_bitmap(src->s->env.ctl, r);
		uint64_t *inround = shm_ctl_round_bitmap(src->s->env.ctl, r);
		uint64_t words = SHM_BITMAP_WORDS(h->regions[r].nr_pages);

		for (uint64_t w = 0; w < words; w++) {
			uint64_t bits = shm_bitmap_load_word(map, w);

			if (!bits)
				continue;
			shm_bitmap_or_word(inround, w, bits);
			shm_bitmap_andnot_word(map, w, bits);
			while (bits) {
				ret = src_add_page(src, &b, r,
						   w * 64 + (uint64_t)__builtin_ctzll(bits));
				if (ret)
					return ret;
				bits &= bits - 1;
				pages++;
			}
		}
	}
	ret = src_queue(src, &b);
	return ret ? ret : src_sync(src, round, pages, final);
}

/*
 * With TLS configured: the handshake on a fresh connection, before any
 * protocol byte.  A refused peer (certificate, name, authorization, PSK)
 * ends the job: a reconnect would meet the same refusal.
 */
static int src_tls_connect(struct mig_src *src, int fd, const char *what)
{
	const struct mig_tls *tls = src->s->tls;
	char host[256], err[512];
	int ret;

	if (!tls)
		return 0;
	/* A unix: socket or an fd has no host name: the certificate's is tls-hostname (QEMU's
	 * rule). */
	if (mig_uri_is_unix(src->uri) || mig_uri_is_fd(src->uri)) {
		host[0] = '\0';
		ret = mig_tls_needs_hostname(tls) ? -EINVAL : 0;
		snprintf(err, sizeof(err),
			 "TLS over a%s needs tls-hostname (the name the destination's certificate "
			 "carries)",
			 mig_uri_is_fd(src->uri) ? "n fd: connection" : " unix: socket");
	} else {
		ret = mig_uri_host(src->uri, host, sizeof(host));
		snprintf(err, sizeof(err), "bad URI");
	}
	if (!ret)
		ret = mig_tls_connect(tls, fd, host[0] ? host : NULL, src->s->io_timeout_ms, err,
				      sizeof(err));
	if (ret)
		mig_job_abort(&src->job, ret, "%s: %s", what, err);
	return ret;
}

/* A new connection to the destination: through the URI, or a new stream of the fd. */
static int src_connect(struct mig_src *src, int *fdp, char *err, size_t errlen)
{
	int ret;

	if (!src->mux)
		return mig_uri_connect(src->uri, src->s->io_timeout_ms, fdp, err, errlen);
	ret = mig_mux_open(src->mux, fdp, err, errlen);
	if (ret)
		return ret;
	ret = mig_sock_setup(*fdp, src->s->io_timeout_ms);
	if (ret) {
		close(*fdp);
		snprintf(err, errlen, "%.200s: %s", src->uri, strerror(-ret));
	}
	return ret;
}

/*
 * Connects the main channel and says Hello; *ackp is the destination's
 * HelloAck (its report when this is a resume).
 */
static int src_handshake(struct mig_src *src, Cleave__Wire__WireMsg **ackp)
{
	struct mig_session *s = src->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Hello hello = CLEAVE__WIRE__HELLO__INIT;
	Cleave__Wire__Region regs[SHM_MAX_REGIONS], *rp[SHM_MAX_REGIONS];
	uint8_t sid[16];
	char err[256];
	int fd, ret;

	ret = src_connect(src, &fd, err, sizeof(err));
	if (ret) {
		mig_job_abort(&src->job, ret, "%s", err);
		return ret;
	}
	mig_job_publish_fd(&src->job, &src->job.main_fd, fd);
	src->reached = true;
	ret = src_tls_connect(src, fd, "main channel");
	if (ret)
		return ret;
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		cleave__wire__region__init(&regs[r]);
		regs[r].gpa = h->regions[r].gpa;
		regs[r].size = h->regions[r].size;
		rp[r] = &regs[r];
	}
	mig_session_id(s, sid, &hello.epoch, true);
	hello.magic = WIRE_MAGIC;
	hello.version = WIRE_VERSION;
	hello.session_id.data = sid;
	hello.session_id.len = sizeof(sid);
	hello.n_regions = h->nr_regions;
	hello.regions = rp;
	hello.channels = src->nr_chans;
	hello.page_size = SHM_PAGE_SIZE;
	hello.resume = src->epochs > 0 || s->resuming;
	hello.next_round = src->epochs > 0 || s->resuming ? src->round + 1 : 0;
	/* Postcopy pushes its one round again after every reconnect. */
	if (src->phase == MIG_PHASE_SRC_POSTCOPY)
		hello.next_round = src->final_round;
	hello.postcopy = MIG_SETTING(s, caps) & MIG_RECORD_CAP_POSTCOPY_RAM;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO;
	m.hello = &hello;
	ret = mig_src_send(src, &m, "Hello");
	if (ret)
		return ret;
	return src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, "HelloAck", ackp);
}

static int src_open_channels(struct mig_src *src)
{
	struct mig_session *s = src->s;
	uint8_t sid[16];
	char err[256];
	int fd, ret;

	mig_session_id(s, sid, NULL, false);
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		struct mig_chan_hello ch = {
			.magic = MIG_CHAN_MAGIC, .version = WIRE_VERSION, .index = i};
		char what[32];

		ret = mig_chan_token(src->job.main_fd, sid, ch.session_id);
		if (ret) {
			mig_job_abort(&src->job, ret, "channel token: %s", strerror(-ret));
			return ret;
		}
		ret = src_connect(src, &fd, err, sizeof(err));
		if (ret) {
			mig_job_abort(&src->job, ret, "channel %u: %s", i, err);
			return ret;
		}
		mig_job_publish_fd(&src->job, &src->chans[i].fd, fd);
		snprintf(what, sizeof(what), "channel %u", i);
		ret = src_tls_connect(src, fd, what);
		if (ret)
			return ret;
		ret = mig_io_write(fd, &ch, sizeof(ch));
		if (ret) {
			mig_job_abort(&src->job, ret, "channel %u: send hello: %s", i,
				      strerror(-ret));
			return ret;
		}
	}
	ret = mig_send_start(src);
	if (ret)
		mig_job_abort(&src->job, ret, "send threads: %s", strerror(-ret));
	return ret;
}

#define SRC_CONVERGE_POSTCOPY 1
/*
 * Dirty rounds from @round on until the rest fits in downtime-limit; the
 * final round in *roundp.  SRC_CONVERGE_POSTCOPY: switch to postcopy at
 * round *roundp instead.
 */
static int src_converge(struct mig_src *src, uint64_t round, uint64_t *roundp)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	uint64_t t_last = mig_now_ns(), sent_last = atomic_load(&s->ctr.transferred);
	uint64_t bw = 0, prev_dirty = 0;
	unsigned int extra = 0;
	int ret;

	if (round == 1 && !mig_record_lock(s->rec)) {
		if (s->rec->setup_ns)
			t_last = s->rec->setup_ns;
		mig_record_unlock(s->rec);
	}
	for (;; round++) {
		uint64_t now, dt, sent, dirty, limit, expected, expected_us, n;

		/*
		 * A round ends when its pages left: only then does the next
		 * harvest see what the guest dirtied meanwhile, and does the
		 * bandwidth figure mean anything.
		 */
		while ((ret = mig_send_drain(src, MIG_DRAIN_POLL_MS)) == -ETIMEDOUT) {
			ret = src_ping(src);
			if (ret)
				return ret;
		}
		if (!ret)
			ret = src_wait_acked(src, round - 1);
		if (ret)
			return ret;
		/* Every earlier round landed: the destination lacks only what is dirty now. */
		if (mig_src_postcopy_wanted(src)) {
			*roundp = round;
			return SRC_CONVERGE_POSTCOPY;
		}
		ret = mig_src_call(src, ops->harvest(s->env.ops_arg, &n), "HARVEST");
		if (ret)
			return ret;
		dirty = src_dirty_count(src);
		now = mig_now_ns();
		dt = now - t_last > 0 ? now - t_last : 1;
		sent = atomic_load(&s->ctr.transferred) - sent_last;
		if (sent > (1u << 20) || !bw) /* a bare SYNC round says nothing about bandwidth */
			bw = sent ? sent * 1000000000ull / dt : 100u << 20;
		t_last = now;
		sent_last += sent;
		expected_us = dirty * SHM_PAGE_SIZE * 1000000 / bw;
		expected = (expected_us + 999) / 1000;
		atomic_store(&s->ctr.bandwidth, bw);
		atomic_store(&s->ctr.remaining, dirty * SHM_PAGE_SIZE);
		atomic_store(&s->ctr.dirty_rate, dirty * 1000000000ull / dt);
		atomic_store(&s->ctr.expected_downtime_ms, expected);
		atomic_fetch_add(&s->ctr.rounds, 1);
		mig_session_pass_event(s, round);
		limit = MIG_SETTING(s, downtime_limit);
		log_debug("round %lu: %lu dirty pages, %lu MB/s, expected downtime %lu ms",
			  (unsigned long)round, (unsigned long)dirty, (unsigned long)(bw >> 20),
			  (unsigned long)expected);
		/*
		 * In microseconds: a limit of 0 waits for a round with nothing
		 * dirty.  Once it fits, more rounds are still worth it while
		 * they shrink the rest by a quarter or more: the downtime goal
		 * is MIG_DOWNTIME_GOAL_US, the limit is only the bound.
		 */
		if (expected_us <= limit * 1000 &&
		    (expected_us <= MIG_DOWNTIME_GOAL_US ||
		     (prev_dirty && dirty * 4 >= prev_dirty * 3) || ++extra >= MIG_EXTRA_ROUNDS))
			break;
		prev_dirty = dirty;
		/* Auto-converge: the guest dirtied more than we could send in the same time. */
		if (MIG_SETTING(s, caps) & MIG_RECORD_CAP_AUTO_CONVERGE &&
		    dirty * SHM_PAGE_SIZE > sent) {
			src->throttle = src->throttle ? src->throttle + 10 : 20;
			if (src->throttle > 99)
				src->throttle = 99;
			ret = mig_src_call(src, ops->throttle(s->env.ops_arg, src->throttle),
					   "THROTTLE");
			if (ret)
				return ret;
			if (!mig_record_lock(s->rec)) {
				s->rec->throttle = src->throttle;
				mig_record_unlock(s->rec);
			}
		}
		ret = mig_src_dirty_round(src, round, false);
		if (ret)
			return ret;
		if (mig_job_aborted(&src->job))
			return -ECANCELED;
	}
	*roundp = round;
	return 0;
}

/* When the migration started (the record's clock), for the debug figures. */
static uint64_t src_start_ns(struct mig_src *src)
{
	uint64_t t = 0;

	if (!mig_record_lock(src->s->rec)) {
		t = src->s->rec->start_ns;
		mig_record_unlock(src->s->rec);
	}
	return t;
}

static void src_hook_delay(struct mig_src *src)
{
	unsigned int ms = MIG_HOOK(src->s, switchover_delay_ms);

	if (ms)
		usleep(ms * 1000u);
}

/* Records @phase; the guest's fate follows it (see enum mig_phase). */
void mig_src_set_phase(struct mig_src *src, enum mig_phase phase)
{
	src->phase = phase;
	mig_record_set_phase(src->s->rec, phase);
}

/* The destination runs the guest: ours stays paused for good. */
int mig_src_completed(struct mig_src *src)
{
	struct mig_session *s = src->s;
	uint64_t pause_ns = 0;
	int ret;

	/* Postcopy recorded its downtime at the Commit: the guest ran on from there. */
	if (!mig_record_lock(s->rec)) {
		pause_ns = s->rec->pause_ns;
		if (!s->rec->has_downtime)
			s->rec->downtime_ms = pause_ns ? (mig_now_ns() - pause_ns) / 1000000 : 0;
		s->rec->has_downtime = 1;
		mig_record_unlock(s->rec);
	}
	atomic_store(&s->ctr.remaining, 0);
	ret = s->env.ops->pause(s->env.ops_arg, MIG_PAUSE_POSTMIGRATE);
	if (ret)
		log_warn("vcpu-proc PAUSE postmigrate: %s", strerror(-ret));
	mig_src_set_phase(src, MIG_PHASE_NONE);
	return 0;
}

/* The commit point: from here on the guest may run only on the destination. */
static int src_commit(struct mig_src *src)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Commit commit = CLEAVE__WIRE__COMMIT__INIT;
	int ret;

	ret = mig_job_commit(&src->job);
	if (ret)
		return ret;
	if (src->phase != MIG_PHASE_SRC_COMMITTED) {
		mig_src_set_phase(src, MIG_PHASE_SRC_COMMITTED);
		src_hook_delay(src);
	}
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT;
	m.commit = &commit;
	ret = mig_src_send(src, &m, "Commit");
	if (!ret)
		ret = src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE, "Complete", NULL);
	return ret ? ret : mig_src_completed(src);
}

/* Stop-and-copy: final round @round with the guest paused, the state, then the commit. */
static int src_complete(struct mig_src *src, uint64_t round)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__DeviceState ds = CLEAVE__WIRE__DEVICE_STATE__INIT;
	uint64_t t_pause, n, t[5];
	void *blob = NULL;
	size_t len = 0;
	int ret;

	mig_session_set_status(s, MIG_STATUS_DEVICE);
	t_pause = mig_now_ns();
	if (src->phase != MIG_PHASE_SRC_PAUSED) {
		if (!mig_record_lock(s->rec)) {
			s->rec->pause_ns = t_pause;
			mig_record_unlock(s->rec);
		}
		mig_src_set_phase(src, MIG_PHASE_SRC_PAUSED);
	}
	/* Again after a restart: the PAUSE of the dead migrator may not have landed. */
	ret = mig_src_call(src, ops->pause(s->env.ops_arg, MIG_PAUSE_FINISH_MIGRATE), "PAUSE");
	if (ret)
		return ret;
	src_hook_delay(src);
	t[0] = mig_now_ns();
	ret = mig_src_call(src, ops->harvest(s->env.ops_arg, &n), "HARVEST");
	if (ret)
		return ret;
	t[1] = mig_now_ns();
	atomic_store(&s->ctr.remaining, src_dirty_count(src) * SHM_PAGE_SIZE);
	atomic_fetch_add(&s->ctr.rounds, 1);
	if (!mig_record_lock(s->rec)) {
		s->rec->final_round = round;
		mig_record_unlock(s->rec);
	}
	ret = mig_src_dirty_round(src, round, true);
	if (ret)
		return ret;
	t[2] = mig_now_ns();
	ret = mig_src_call(src, ops->save_state(s->env.ops_arg, &blob, &len), "SAVE_STATE");
	if (ret)
		return ret;
	t[3] = mig_now_ns();
	ds.final_round = round;
	ds.state.data = blob;
	ds.state.len = len;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE;
	m.device_state = &ds;
	ret = mig_src_send(src, &m, "device state");
	free(blob);
	mig_session_transferred(s, len);
	if (ret)
		return ret;
	ret = src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, "Loaded", NULL);
	if (ret)
		return ret;
	t[4] = mig_now_ns();
	log_debug("downtime: pause %lu us, harvest %lu, final round queued %lu, save %lu, "
		  "until loaded %lu",
		  (unsigned long)(t[0] - t_pause) / 1000, (unsigned long)(t[1] - t[0]) / 1000,
		  (unsigned long)(t[2] - t[1]) / 1000, (unsigned long)(t[3] - t[2]) / 1000,
		  (unsigned long)(t[4] - t[3]) / 1000);
	return src_commit(src);
}

/* Decodes the destination's maps of region @r into a fresh bitmap (all zero: none sent). */
static int src_report_map(struct mig_src *src, Cleave__Wire__PageMap **maps, size_t n, uint32_t r,
			  uint64_t **out)
{
	uint64_t nbits = src->s->env.ctl->hdr->regions[r].nr_pages;

	*out = calloc(SHM_BITMAP_WORDS(nbits) ?: 1, sizeof(uint64_t));
	if (!*out)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (maps[i]->region == r && mig_pagemap_decode(maps[i], *out, nbits))
			return -EPROTO;
	return 0;
}

/*
 * A resume: the destination holds every page of rounds < rounds_landed,
 * plus those in its round map.  What it still needs goes into the dirty
 * bitmaps, so the next round sends it:
 *   - pages of our unacknowledged round (our round bitmaps) it did not land
 *     (they were in flight: "resent");
 *   - while round 0 has not landed, allocated pages it never received (the
 *     rest of the first pass).
 * Pages the guest dirtied meanwhile are in the dirty log anyway.
 */
static int src_merge_report(struct mig_src *src, const Cleave__Wire__HelloAck *ack)
{
	struct mig_session *s = src->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	bool use_round = src->round >= ack->rounds_landed;
	uint64_t inflight = 0, resent = 0, rest = 0;
	int ret = 0;

	for (uint32_t r = 0; r < h->nr_regions && !ret; r++) {
		uint64_t *dirty = shm_ctl_dirty_bitmap(s->env.ctl, r);
		uint64_t *inround = shm_ctl_round_bitmap(s->env.ctl, r);
		uint64_t nbits = h->regions[r].nr_pages, *landed = NULL, *received = NULL;

		ret = src_report_map(src, ack->round, ack->n_round, r, &landed);
		if (!ret)
			ret = src_report_map(src, ack->received, ack->n_received, r, &received);
		for (uint64_t w = 0; !ret && use_round && w < SHM_BITMAP_WORDS(nbits); w++) {
			uint64_t bits = shm_bitmap_load_word(inround, w), need = bits & ~landed[w];

			inflight += (uint64_t)__builtin_popcountll(bits);
			resent += (uint64_t)__builtin_popcountll(need);
			shm_bitmap_or_word(dirty, w, need);
		}
		if (!ret && !ack->rounds_landed) {
			uint64_t pos = 0, a, e;

			while ((ret = shm_memfd_next_data(s->env.ram[r].fd, pos, h->regions[r].size,
							  &a, &e)) == 0) {
				for (uint64_t p = a >> SHM_PAGE_SHIFT; p < e >> SHM_PAGE_SHIFT; p++)
					if (!shm_bitmap_test(received, p) &&
					    !shm_bitmap_test_and_set(dirty, p))
						rest++;
				pos = e;
			}
			ret = ret == -ENXIO ? 0 : ret;
		}
		free(landed);
		free(received);
	}
	if (ret) {
		mig_job_abort(&src->job, ret, "resume: bad page map from the destination: %s",
			      strerror(-ret));
		return ret;
	}
	/* Merged: the round bitmaps may forget (src_round_begin clears them). */
	atomic_store(&s->ctr.inflight_bytes, inflight * SHM_PAGE_SIZE);
	atomic_fetch_add(&s->ctr.resent_bytes, resent * SHM_PAGE_SIZE);
	log_info("resume: destination landed rounds < %" PRIu64 "; %" PRIu64
		 " pages were in flight, %" PRIu64 " of them to resend, %" PRIu64
		 " first-pass pages still to send",
		 ack->rounds_landed, inflight, resent, rest);
	return 0;
}

enum src_step {
	SRC_STEP_FIRST_PASS, /* a fresh migration's first connection */
	SRC_STEP_PRECOPY,    /* dirty rounds, then stop-and-copy */
	SRC_STEP_FINAL,	     /* the guest is paused: final round, state, commit */
	SRC_STEP_COMMIT,     /* the destination has loaded everything */
	SRC_STEP_DONE,	     /* the destination runs the guest */
	SRC_STEP_PC_COMMIT,  /* postcopy: the destination loaded the state, awaits Commit */
	SRC_STEP_PC_PUSH,    /* postcopy: the destination runs the guest, lacks pages */
};

/* Postcopy: ORs the pages the destination says it lacks into the dirty bitmaps (the push). */
static int src_merge_needed(struct mig_src *src, const Cleave__Wire__HelloAck *ack)
{
	struct mig_session *s = src->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	uint64_t n = 0;
	int ret = 0;

	for (uint32_t r = 0; r < h->nr_regions && !ret; r++) {
		uint64_t *dirty = shm_ctl_dirty_bitmap(s->env.ctl, r), *needed = NULL;

		ret = src_report_map(src, ack->needed, ack->n_needed, r, &needed);
		for (uint64_t w = 0; !ret && w < SHM_BITMAP_WORDS(h->regions[r].nr_pages); w++) {
			shm_bitmap_or_word(dirty, w, needed[w]);
			n += (uint64_t)__builtin_popcountll(needed[w]);
		}
		free(needed);
	}
	if (ret) {
		mig_job_abort(&src->job, ret, "resume: bad page map from the destination: %s",
			      strerror(-ret));
		return ret;
	}
	log_info("resume: postcopy destination lacks %" PRIu64 " pages", n);
	return 0;
}

/* From the destination's HelloAck, where this connection continues. */
static int src_resume_plan(struct mig_src *src, const Cleave__Wire__HelloAck *ack,
			   enum src_step *step)
{
	if (!src->epochs && !src->s->resuming) {
		*step = SRC_STEP_FIRST_PASS; /* a fresh session: the destination holds nothing */
		return 0;
	}
	switch (ack->phase) {
	case MIG_PHASE_DST_PC_LOADED:
		/* Only a source that sent the switch (PAUSED) or the Commit (POSTCOPY). */
		if (src->phase != MIG_PHASE_SRC_PAUSED && src->phase != MIG_PHASE_SRC_POSTCOPY) {
			mig_job_abort(&src->job, -EPROTO,
				      "destination loaded a postcopy state this source never sent");
			return -EPROTO;
		}
		*step = SRC_STEP_PC_COMMIT;
		return 0;
	case MIG_PHASE_DST_POSTCOPY:
		if (src->phase != MIG_PHASE_SRC_POSTCOPY) {
			mig_job_abort(&src->job, -EPROTO,
				      "destination says it runs the guest in postcopy, which this "
				      "source never committed");
			return -EPROTO;
		}
		*step = SRC_STEP_PC_PUSH;
		return src_merge_needed(src, ack);
	case MIG_PHASE_DST_COMMITTED:
	case MIG_PHASE_DST_RUNNING:
		if (src->phase == MIG_PHASE_SRC_PRECOPY) {
			mig_job_abort(
				&src->job, -EPROTO,
				"destination says it runs the guest this source never paused");
			return -EPROTO;
		}
		*step = SRC_STEP_DONE;
		return 0;
	case MIG_PHASE_DST_LOADED:
		if (src->phase == MIG_PHASE_SRC_PRECOPY) {
			mig_job_abort(&src->job, -EPROTO,
				      "destination loaded a state this source never sent");
			return -EPROTO;
		}
		*step = SRC_STEP_COMMIT;
		return 0;
	case MIG_PHASE_DST_RECEIVING:
		if (src->phase == MIG_PHASE_SRC_COMMITTED || src->phase == MIG_PHASE_SRC_POSTCOPY)
			return -ESTALE; /* it lost what it loaded: nobody knows better now */
		*step = src->phase == MIG_PHASE_SRC_PAUSED ? SRC_STEP_FINAL : SRC_STEP_PRECOPY;
		return src_merge_report(src, ack);
	default:
		mig_job_abort(&src->job, -EPROTO, "destination reports phase %u", ack->phase);
		return -EPROTO;
	}
}

/* One connection to the destination, from the handshake to the end or to its loss. */
static int src_epoch(struct mig_src *src)
{
	struct mig_session *s = src->s;
	Cleave__Wire__WireMsg *ackm = NULL;
	uint64_t round;
	enum src_step step;
	int ret;

	ret = src_handshake(src, &ackm);
	if (!ret) {
		ret = src_resume_plan(src, ackm->hello_ack, &step);
		cleave__wire__wire_msg__free_unpacked(ackm, NULL);
	}
	if (ret)
		return ret;
	if (src->epochs++ || s->resuming) {
		atomic_fetch_add(&s->ctr.resumes, 1);
		atomic_store(&s->ctr.resume_time_ms, mig_job_reconnected(&src->job));
		mig_session_detail_event(s, "resumed");
	}
	src->has_acked = true;
	src->acked_round = src->round; /* merged: nothing of it is awaited any more */
	if (step == SRC_STEP_DONE)
		return mig_src_completed(src);
	if (step == SRC_STEP_COMMIT)
		return src_commit(src);
	ret = src_open_channels(src);
	if (ret)
		return ret;
	if (step == SRC_STEP_PC_COMMIT)
		return mig_src_postcopy_commit(src, true);
	if (step == SRC_STEP_PC_PUSH)
		return mig_src_postcopy_push(src);
	if (step == SRC_STEP_FIRST_PASS) {
		mig_session_set_status(s, MIG_STATUS_ACTIVE);
		log_debug("setup done after %lu us",
			  (unsigned long)(mig_now_ns() - src_start_ns(src)) / 1000);
		src->has_acked = false;
		ret = src_first_pass(src);
		if (ret)
			return ret;
	}
	round = src->round + 1;
	if (step != SRC_STEP_FINAL) {
		ret = src_converge(src, round, &round);
		if (ret == SRC_CONVERGE_POSTCOPY)
			return mig_src_postcopy(src, round);
		if (ret)
			return ret;
	}
	return src_complete(src, round);
}

/* A fresh migration: clean dirty log, the record's first phase. */
static int src_start(struct mig_src *src)
{
	struct mig_session *s = src->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	int ret;

	if (!mig_record_lock(s->rec)) {
		snprintf(s->rec->uri, sizeof(s->rec->uri), "%s", src->uri);
		s->rec->round = 0;
		s->rec->final_round = 0;
		s->rec->rounds_landed = 0;
		s->rec->pause_ns = 0;
		s->rec->throttle = 0;
		mig_record_unlock(s->rec);
	}
	/* Stale bits predate this session; logging starts clean before the first pass. */
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		uint64_t *map = shm_ctl_dirty_bitmap(s->env.ctl, r);

		/* Atomically: vcpu-proc may be setting bits (a harvest in flight). */
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(h->regions[r].nr_pages); w++)
			shm_bitmap_fetch_clear_word(map, w);
		shm_bitmap_zero(shm_ctl_round_bitmap(s->env.ctl, r), h->regions[r].nr_pages);
	}
	mig_src_set_phase(src, MIG_PHASE_SRC_PRECOPY);
	mig_session_record_sync(s);
	ret = mig_src_call(src, s->env.ops->dirty_log(s->env.ops_arg, true), "DIRTY_LOG");
	if (ret)
		return ret;
	src->dirty_logging = true;
	return 0;
}

/* A restarted migrator continues the recorded session. */
static void src_load(struct mig_src *src)
{
	struct mig_record *rec = src->s->rec;

	if (mig_record_lock(rec))
		return;
	src->phase = rec->phase;
	src->round = rec->round;
	src->final_round = rec->final_round;
	src->throttle = rec->throttle;
	mig_record_unlock(rec);
	src->dirty_logging = true; /* vcpu-proc kept logging (src_run turns it on again) */
	/* Under the lock: a cancel may already come from the RPC thread. */
	pthread_mutex_lock(&src->job.lock);
	src->job.committed =
		src->phase == MIG_PHASE_SRC_COMMITTED || src->phase == MIG_PHASE_SRC_POSTCOPY;
	pthread_mutex_unlock(&src->job.lock);
	src->job.lost_ns = src->s->resume_start_ns;
	snprintf(src->job.lost_reason, sizeof(src->job.lost_reason), "migrator restarted");
}

/*
 * After a failed connection: 0 when the job reconnects (the epoch's threads
 * are joined, its fds closed, the abort forgotten), else the job's error.
 */
static int src_may_reconnect(struct mig_src *src, int ret, bool *lost_now)
{
	struct mig_job *job = &src->job;
	uint64_t timeout = MIG_SETTING(src->s, reconnect_timeout);
	bool retry;

	mig_job_abort(job, ret, "%s", strerror(-ret)); /* no-op when already aborted */
	mig_send_stop(src);
	mig_src_postcopy_stop(src);
	pthread_mutex_lock(&job->lock);
	ret = job->err ? job->err : ret;
	/*
	 * Never reached the destination: a wrong address, not a lost peer
	 * (fail as QEMU does).  After a postcopy commit the destination's
	 * guest lacks pages only this side has: reconnect whatever the timeout.
	 */
	retry = !job->cancelled && mig_err_retriable(ret) &&
		(timeout || job->held || src->phase == MIG_PHASE_SRC_POSTCOPY) &&
		(src->reached || src->s->resuming);
	*lost_now = retry && mig_job_mark_lost(job, job->reason);
	if (retry) {
		mig_job_reset_epoch_locked(job);
		for (unsigned int i = 0; i < src->nr_chans; i++) {
			if (src->chans[i].fd >= 0)
				mig_sock_close(src->chans[i].fd);
			src->chans[i].fd = -1;
		}
		/* Under job->lock: an abort of the new epoch halts the queues after this. */
		mig_send_reset(src);
	}
	pthread_mutex_unlock(&job->lock);
	return retry ? 0 : ret;
}

/* migrate {resume: true} with a new URI: the next connection goes there. */
static void src_take_uri(struct mig_src *src)
{
	pthread_mutex_lock(&src->job.lock);
	if (src->next_uri[0]) {
		log_info("reconnecting to %s (was %s)", src->next_uri, src->uri);
		memcpy(src->uri, src->next_uri, sizeof(src->uri));
		src->next_uri[0] = '\0';
	}
	pthread_mutex_unlock(&src->job.lock);
}

int mig_src_resume_to(struct mig_job *job, const char *uri)
{
	struct mig_src *src = src_of(job);
	int ret = 0;

	if (strlen(uri) >= sizeof(src->next_uri))
		return -ENAMETOOLONG;
	pthread_mutex_lock(&src->job.lock); /* the worker changes src->uri under it */
	/* An fd: migration's connections are streams of its one fd: it cannot move. */
	if (src->mux || mig_uri_is_fd(uri) || mig_uri_is_file(uri) ||
	    (strncmp(uri, "tcp:", 4) && !mig_uri_is_unix(uri)))
		ret = strcmp(uri, src->uri) ? -EINVAL : 0;
	else
		snprintf(src->next_uri, sizeof(src->next_uri), "%s", uri);
	pthread_mutex_unlock(&src->job.lock);
	return ret;
}

static int src_run(struct mig_src *src)
{
	struct mig_session *s = src->s;
	uint64_t bw = MIG_SETTING(s, max_bandwidth);
	unsigned int delay_ms = MIG_RECONNECT_MIN_MS;
	bool lost_now;
	int ret;

	/* Under a low max-bandwidth, packets of ~50 ms keep every channel talking. */
	src->batch_pages = MIG_BATCH_PAGES;
	if (bw && bw / 20 / SHM_PAGE_SIZE < MIG_BATCH_PAGES)
		src->batch_pages =
			bw / 20 / SHM_PAGE_SIZE ? (unsigned int)(bw / 20 / SHM_PAGE_SIZE) : 1;
	if (s->resuming) {
		src_load(src);
		mig_session_detail_event(s, "restarted");
		/* Idempotent; the dead migrator may have recorded PRECOPY before turning it on. */
		ret = mig_src_call(src, s->env.ops->dirty_log(s->env.ops_arg, true), "DIRTY_LOG");
		if (ret)
			return ret;
	} else {
		ret = src_start(src);
		if (ret)
			return ret;
	}
	for (;;) {
		ret = mig_job_wait_released(&src->job); /* migrate-pause holds it */
		if (ret < 0)
			return ret;
		src_take_uri(src);
		ret = src_epoch(src);
		if (!ret)
			return 0;
		if (ret == -ESTALE)
			return ret;
		ret = src_may_reconnect(src, ret, &lost_now);
		if (ret)
			return ret;
		if (lost_now) {
			log_warn("lost the destination (%s); reconnecting", src->job.lost_reason);
			if (src->phase == MIG_PHASE_SRC_POSTCOPY)
				mig_session_set_status(s, MIG_STATUS_POSTCOPY_PAUSED);
			mig_session_detail_event(s, "disconnected");
			delay_ms = MIG_RECONNECT_MIN_MS;
		}
		/* As QEMU's postcopy-paused: no deadline once the destination may run the guest. */
		ret = mig_job_backoff(&src->job, &delay_ms, src->phase != MIG_PHASE_SRC_POSTCOPY);
		if (ret == -ETIMEDOUT) {
			mig_job_abort(
				&src->job, -ETIMEDOUT,
				"lost the destination (%.180s) and no reconnect within %llu ms",
				src->job.lost_reason,
				(unsigned long long)MIG_SETTING(s, reconnect_timeout));
			return ret;
		}
		if (ret)
			return ret;
	}
}

static void *src_worker(void *arg)
{
	struct mig_src *src = src_of(arg);
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	char reason[256] = "";
	int ret;

	log_set_thread(src_job_ops.thread_name);
	ret = src_run(src);
	if (ret) /* first reason wins: usually already recorded */
		mig_job_abort(&src->job, ret, "%s", strerror(-ret));
	mig_send_stop(src);
	mig_src_postcopy_stop(src);
	if (ret)
		ret = mig_job_error(&src->job, ret, reason, sizeof(reason));
	/* An fd: URI's fd ends with the job, after what the engine wrote left. */
	if (src->mux)
		mig_mux_end(src->mux, s->io_timeout_ms);
	if (ret && mig_job_committed(&src->job)) {
		/* The destination may run the guest, or not: only the operator can know. */
		mig_session_unknown(s, reason[0] ? reason : strerror(-ret));
		return NULL;
	}
	/* From PAUSED on the guest was (or may be) paused by us: a failure resumes it. */
	if (ret && src->phase == MIG_PHASE_SRC_PAUSED) {
		int r = ops->resume(s->env.ops_arg);

		if (r)
			log_err("vcpu-proc RESUME after failed migration: %s", strerror(-r));
	}
	if (ret || src->phase != MIG_PHASE_NONE)
		mig_record_set_phase(s->rec, MIG_PHASE_NONE);
	if (src->dirty_logging && ops->dirty_log(s->env.ops_arg, false))
		log_warn("vcpu-proc DIRTY_LOG off failed");
	if (src->throttle && ops->throttle(s->env.ops_arg, 0))
		log_warn("vcpu-proc THROTTLE 0 failed");
	if (!mig_record_lock(s->rec)) {
		s->rec->throttle = 0;
		mig_record_unlock(s->rec);
	}
	mig_session_finish(s, ret, ret ? reason : NULL);
	return NULL;
}
