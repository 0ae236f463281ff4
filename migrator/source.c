/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The outgoing job's worker thread: handshake, first pass over the
 * allocated parts of RAM, dirty rounds until the expected downtime fits
 * downtime-limit, then stop-and-copy and the two-phase completion
 * (docs/MIGRATION.md).  Until Commit is sent any failure resumes the
 * guest; after it the guest never runs here again.
 */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/source-internal.h"

#define MIG_DOWNTIME_GOAL_US   5000	     /* stop iterating below this expected downtime */
#define MIG_EXTRA_ROUNDS       8	     /* at most this many rounds once the limit is met */
#define MIG_FIRST_PASS_HARVEST (64ull << 20) /* round 0 harvests every 64 MiB queued */

int mig_src_alloc(struct mig_src **out, struct mig_session *s, const char *uri)
{
	struct mig_src *src;
	unsigned int n = s->caps.multifd ? s->params.multifd_channels : 1;

	if (strlen(uri) >= sizeof(src->uri) || strncmp(uri, "tcp:", 4))
		return -EINVAL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->chans = calloc(n, sizeof(*src->chans));
	if (!src->chans) {
		free(src);
		return -ENOMEM;
	}
	src->s = s;
	src->nr_chans = n;
	src->queue_depth = MIG_QUEUE_TOTAL / n;
	if (src->queue_depth < MIG_QUEUE_MIN)
		src->queue_depth = MIG_QUEUE_MIN;
	if (src->queue_depth > MIG_QUEUE_DEPTH)
		src->queue_depth = MIG_QUEUE_DEPTH;
	strcpy(src->uri, uri);
	src->main_fd = -1;
	pthread_mutex_init(&src->lock, NULL);
	pthread_mutex_init(&src->sq_lock, NULL);
	pthread_mutex_init(&src->rate_lock, NULL);
	pthread_cond_init(&src->sq_space, NULL);
	for (unsigned int i = 0; i < n; i++) {
		src->chans[i].src = src;
		src->chans[i].index = i;
		src->chans[i].fd = -1;
		pthread_cond_init(&src->chans[i].work, NULL);
	}
	*out = src;
	return 0;
}

void mig_src_free(struct mig_src *src)
{
	if (!src)
		return;
	mig_send_stop(src); /* no-op when the worker already joined them */
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		if (src->chans[i].fd >= 0)
			close(src->chans[i].fd);
		pthread_cond_destroy(&src->chans[i].work);
	}
	if (src->main_fd >= 0)
		close(src->main_fd);
	pthread_cond_destroy(&src->sq_space);
	pthread_mutex_destroy(&src->rate_lock);
	pthread_mutex_destroy(&src->sq_lock);
	pthread_mutex_destroy(&src->lock);
	free(src->chans);
	free(src);
}

void mig_src_abort(struct mig_src *src, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&src->lock);
	if (src->committed || src->aborted) {
		pthread_mutex_unlock(&src->lock);
		return;
	}
	src->aborted = true;
	src->err = err;
	va_start(ap, fmt);
	vsnprintf(src->reason, sizeof(src->reason), fmt, ap);
	va_end(ap);
	/* Wakes every thread blocked in I/O on them; fds stay open until free. */
	if (src->main_fd >= 0)
		shutdown(src->main_fd, SHUT_RDWR);
	for (unsigned int i = 0; i < src->nr_chans; i++)
		if (src->chans[i].fd >= 0)
			shutdown(src->chans[i].fd, SHUT_RDWR);
	pthread_mutex_unlock(&src->lock);

	pthread_mutex_lock(&src->sq_lock);
	src->sq_stop = true;
	for (unsigned int i = 0; i < src->nr_chans; i++)
		pthread_cond_broadcast(&src->chans[i].work);
	pthread_cond_broadcast(&src->sq_space);
	pthread_mutex_unlock(&src->sq_lock);
}

/* Publishes a connected fd so abort can shut it down (closes the race with cancel). */
static void src_publish_fd(struct mig_src *src, int *slot, int fd)
{
	pthread_mutex_lock(&src->lock);
	*slot = fd;
	if (src->aborted)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&src->lock);
}

/* Aborts with the destination's Error, or with "unexpected <what>". */
static int src_bad_msg(struct mig_src *src, Cleave__Wire__WireMsg *m, const char *waiting)
{
	if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR)
		mig_src_abort(src, -EPROTO, "destination: %s", m->error->reason);
	else
		mig_src_abort(src, -EPROTO, "protocol error: message %d while waiting for %s",
			      (int)m->body_case, waiting);
	return -EPROTO;
}

/* Waits for a message of type @want on the main channel. */
static int src_expect(struct mig_src *src, int want, const char *what)
{
	Cleave__Wire__WireMsg *m;
	int ret;

	do {
		ret = mig_msg_recv(src->main_fd, &m);
		if (ret) {
			mig_src_abort(src, ret, "main channel: waiting for %s: %s", what,
				      strerror(-ret));
			return ret;
		}
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK) {
			src->acked_round = m->round_ack->round;
			src->has_acked = true;
			ret = -EAGAIN;
		} else if ((int)m->body_case != want) {
			ret = src_bad_msg(src, m, what);
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
		ret = mig_msg_recv(src->main_fd, &m);
		if (ret) {
			mig_src_abort(src, ret, "main channel: waiting for RoundAck: %s",
				      strerror(-ret));
			return ret;
		}
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK) {
			src->acked_round = m->round_ack->round;
			src->has_acked = true;
		} else {
			ret = src_bad_msg(src, m, "RoundAck");
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	return ret;
}

/* While queuing: keepalive for the destination, and its Error or RoundAck if any. */
static int src_ping(struct mig_src *src)
{
	struct pollfd pfd = {.fd = src->main_fd, .events = POLLIN};
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Progress p = CLEAVE__WIRE__PROGRESS__INIT;
	uint64_t now = mig_now_ns();
	int ret;

	/* Often enough for the peer's deadline (io timeout) never to fire. */
	if (now - src->last_ping_ns < (uint64_t)src->s->io_timeout_ms * 1000000ull / 4)
		return 0;
	src->last_ping_ns = now;
	if (poll(&pfd, 1, 0) > 0) {
		Cleave__Wire__WireMsg *in;

		ret = mig_msg_recv(src->main_fd, &in);
		if (ret) {
			mig_src_abort(src, ret, "main channel: %s", strerror(-ret));
			return ret;
		}
		if (in->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK) {
			src->acked_round = in->round_ack->round;
			src->has_acked = true;
		} else {
			ret = src_bad_msg(src, in, "nothing");
		}
		cleave__wire__wire_msg__free_unpacked(in, NULL);
		if (ret)
			return ret;
	}
	p.bytes = atomic_load(&src->s->ctr.transferred);
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS;
	m.progress = &p;
	ret = mig_msg_send(src->main_fd, &m);
	if (ret)
		mig_src_abort(src, ret, "main channel: send: %s", strerror(-ret));
	return ret;
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
	ret = mig_msg_send(src->main_fd, &m);
	if (ret)
		mig_src_abort(src, ret, "main channel: send: %s", strerror(-ret));
	return ret;
}

static int src_call(struct mig_src *src, int ret, const char *what)
{
	if (ret)
		mig_src_abort(src, ret, "vcpu-proc %s: %s", what, strerror(-ret));
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
	uint64_t every = s->env.hooks.first_pass_harvest_bytes ?: MIG_FIRST_PASS_HARVEST;
	uint64_t pages = 0, since = 0, n;
	bool harvested = false;
	int ret;

	atomic_store(&s->ctr.remaining, s->env.ctl->hdr->ram_size);
	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++) {
		uint64_t size = s->env.ctl->hdr->regions[r].size, pos = 0, a, e;
		const uint64_t *dirty = shm_ctl_dirty_bitmap(s->env.ctl, r);

		while ((ret = shm_memfd_next_data(s->env.ram[r].fd, pos, size, &a, &e)) == 0) {
			atomic_fetch_add(&s->ctr.skipped, (a - pos) >> SHM_PAGE_SHIFT);
			atomic_fetch_sub(&s->ctr.remaining, a - pos);
			for (uint64_t p = a >> SHM_PAGE_SHIFT; p < e >> SHM_PAGE_SHIFT; p++) {
				if (since >= every) {
					ret = src_call(src, s->env.ops->harvest(s->env.ops_arg, &n),
						       "HARVEST");
					if (ret)
						return ret;
					harvested = true;
					since = 0;
				}
				if (harvested && shm_bitmap_test(dirty, p))
					continue; /* round 1 sends it */
				ret = src_add_page(src, &b, r, p);
				if (ret)
					return ret;
				pages++;
				since += SHM_PAGE_SIZE;
			}
			pos = e;
		}
		if (ret != -ENXIO) {
			mig_src_abort(src, ret, "region %u: SEEK_DATA: %s", r, strerror(-ret));
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

/* Sends and clears every page of the dirty bitmaps as round @round. */
static int src_dirty_round(struct mig_src *src, uint64_t round, bool final)
{
	const struct shm_ctl_header *h = src->s->env.ctl->hdr;
	struct mig_batch b = {.round = round};
	uint64_t pages = 0;
	int ret;

	for (uint32_t r = 0; r < h->nr_regions; r++) {
		uint64_t *map = shm_ctl_dirty_bitmap(src->s->env.ctl, r);
		uint64_t words = SHM_BITMAP_WORDS(h->regions[r].nr_pages);

		for (uint64_t w = 0; w < words; w++) {
			uint64_t bits = shm_bitmap_fetch_clear_word(map, w);

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

static int src_handshake(struct mig_src *src)
{
	struct mig_session *s = src->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Hello hello = CLEAVE__WIRE__HELLO__INIT;
	Cleave__Wire__Region regs[SHM_MAX_REGIONS], *rp[SHM_MAX_REGIONS];
	char err[256];
	int fd, ret;

	ret = mig_uri_connect(src->uri, s->io_timeout_ms, &fd, err, sizeof(err));
	if (ret) {
		mig_src_abort(src, ret, "%s", err);
		return ret;
	}
	src_publish_fd(src, &src->main_fd, fd);
	for (uint32_t r = 0; r < h->nr_regions; r++) {
		cleave__wire__region__init(&regs[r]);
		regs[r].gpa = h->regions[r].gpa;
		regs[r].size = h->regions[r].size;
		rp[r] = &regs[r];
	}
	hello.magic = WIRE_MAGIC;
	hello.version = WIRE_VERSION;
	hello.session_id.data = s->session_id;
	hello.session_id.len = sizeof(s->session_id);
	hello.epoch = s->epoch;
	hello.n_regions = h->nr_regions;
	hello.regions = rp;
	hello.channels = src->nr_chans;
	hello.page_size = SHM_PAGE_SIZE;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO;
	m.hello = &hello;
	ret = mig_msg_send(src->main_fd, &m);
	if (ret) {
		mig_src_abort(src, ret, "main channel: send Hello: %s", strerror(-ret));
		return ret;
	}
	ret = src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, "HelloAck");
	if (ret)
		return ret;
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		struct mig_chan_hello ch = {
			.magic = MIG_CHAN_MAGIC, .version = WIRE_VERSION, .index = i};

		memcpy(ch.session_id, s->session_id, sizeof(ch.session_id));
		ret = mig_uri_connect(src->uri, s->io_timeout_ms, &fd, err, sizeof(err));
		if (ret) {
			mig_src_abort(src, ret, "channel %u: %s", i, err);
			return ret;
		}
		src_publish_fd(src, &src->chans[i].fd, fd);
		ret = mig_io_write(fd, &ch, sizeof(ch));
		if (ret) {
			mig_src_abort(src, ret, "channel %u: send hello: %s", i, strerror(-ret));
			return ret;
		}
	}
	return 0;
}

/* Dirty rounds until the rest fits in downtime-limit; returns the next round number. */
static int src_converge(struct mig_src *src, uint64_t *roundp)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	uint64_t t_last = s->setup_ns ? s->setup_ns : mig_now_ns(), sent_last = 0;
	uint64_t bw = 0, round, prev_dirty = 0;
	unsigned int extra = 0;
	int ret;

	for (round = 1;; round++) {
		uint64_t now, dt, sent, dirty, limit, expected, expected_us, n;

		/*
		 * A round ends when its pages left: only then does the next
		 * harvest see what the guest dirtied meanwhile, and does the
		 * bandwidth figure mean anything.
		 */
		while ((ret = mig_send_drain(src, 500)) == -ETIMEDOUT) {
			ret = src_ping(src);
			if (ret)
				return ret;
		}
		if (!ret)
			ret = src_wait_acked(src, round - 1);
		if (ret)
			return ret;
		ret = src_call(src, ops->harvest(s->env.ops_arg, &n), "HARVEST");
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
		limit = __atomic_load_n(&s->params.downtime_limit, __ATOMIC_RELAXED);
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
		if (s->caps.auto_converge && dirty * SHM_PAGE_SIZE > sent) {
			src->throttle = src->throttle ? src->throttle + 10 : 20;
			if (src->throttle > 99)
				src->throttle = 99;
			ret = src_call(src, ops->throttle(s->env.ops_arg, src->throttle),
				       "THROTTLE");
			if (ret)
				return ret;
			atomic_store(&s->ctr.throttle, src->throttle);
		}
		ret = src_dirty_round(src, round, false);
		if (ret)
			return ret;
		if (mig_src_aborted(src))
			return -ECANCELED;
	}
	*roundp = round;
	return 0;
}

static int src_complete(struct mig_src *src, uint64_t round)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__DeviceState ds = CLEAVE__WIRE__DEVICE_STATE__INIT;
	Cleave__Wire__Commit commit = CLEAVE__WIRE__COMMIT__INIT;
	uint64_t t_pause, n, t[6];
	void *blob = NULL;
	size_t len = 0;
	int ret;

	mig_session_set_status(s, MIG_STATUS_DEVICE);
	t_pause = mig_now_ns();
	ret = src_call(src, ops->pause(s->env.ops_arg, MIG_PAUSE_FINISH_MIGRATE), "PAUSE");
	if (ret)
		return ret;
	src->paused = true;
	t[0] = mig_now_ns();
	ret = src_call(src, ops->harvest(s->env.ops_arg, &n), "HARVEST");
	if (ret)
		return ret;
	t[1] = mig_now_ns();
	atomic_store(&s->ctr.remaining, src_dirty_count(src) * SHM_PAGE_SIZE);
	atomic_fetch_add(&s->ctr.rounds, 1);
	ret = src_dirty_round(src, round, true);
	if (ret)
		return ret;
	t[2] = mig_now_ns();
	ret = src_call(src, ops->save_state(s->env.ops_arg, &blob, &len), "SAVE_STATE");
	if (ret)
		return ret;
	t[3] = mig_now_ns();
	ds.final_round = round;
	ds.state.data = blob;
	ds.state.len = len;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE;
	m.device_state = &ds;
	ret = mig_msg_send(src->main_fd, &m);
	free(blob);
	atomic_fetch_add(&s->ctr.transferred, len);
	if (ret) {
		mig_src_abort(src, ret, "main channel: send device state: %s", strerror(-ret));
		return ret;
	}
	ret = src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, "Loaded");
	if (ret)
		return ret;
	t[4] = mig_now_ns();
	/* The commit point: from here on the guest may run only on the destination. */
	pthread_mutex_lock(&src->lock);
	ret = src->aborted ? -ECANCELED : 0;
	src->committed = !ret;
	pthread_mutex_unlock(&src->lock);
	if (ret)
		return ret;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT;
	m.commit = &commit;
	ret = mig_msg_send(src->main_fd, &m);
	if (!ret)
		ret = src_expect(src, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE, "Complete");
	if (ret) {
		/* abort is a no-op once committed: record the reason ourselves. */
		pthread_mutex_lock(&src->lock);
		src->err = ret;
		snprintf(src->reason, sizeof(src->reason),
			 "lost the destination after commit (%s): guest left paused on both sides",
			 strerror(-ret));
		pthread_mutex_unlock(&src->lock);
		return ret;
	}
	t[5] = mig_now_ns();
	log_debug("downtime: pause %lu us, harvest %lu, final round queued %lu, save %lu, "
		  "until loaded %lu, commit..complete %lu",
		  (unsigned long)(t[0] - t_pause) / 1000, (unsigned long)(t[1] - t[0]) / 1000,
		  (unsigned long)(t[2] - t[1]) / 1000, (unsigned long)(t[3] - t[2]) / 1000,
		  (unsigned long)(t[4] - t[3]) / 1000, (unsigned long)(t[5] - t[4]) / 1000);
	pthread_mutex_lock(&s->lock);
	s->downtime_ms = (mig_now_ns() - t_pause) / 1000000;
	s->has_downtime = true;
	pthread_mutex_unlock(&s->lock);
	atomic_store(&s->ctr.remaining, 0);
	/* The destination runs the guest now; ours stays paused for good. */
	ret = ops->pause(s->env.ops_arg, MIG_PAUSE_POSTMIGRATE);
	if (ret)
		log_warn("vcpu-proc PAUSE postmigrate: %s", strerror(-ret));
	return 0;
}

static int src_run(struct mig_src *src)
{
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	uint64_t round = 0, bw;
	int ret;

	bw = __atomic_load_n(&s->params.max_bandwidth, __ATOMIC_RELAXED);
	/* Under a low max-bandwidth, packets of ~50 ms keep every channel talking. */
	src->batch_pages = MIG_BATCH_PAGES;
	if (bw && bw / 20 / SHM_PAGE_SIZE < MIG_BATCH_PAGES)
		src->batch_pages =
			bw / 20 / SHM_PAGE_SIZE ? (unsigned int)(bw / 20 / SHM_PAGE_SIZE) : 1;
	ret = src_handshake(src);
	if (ret)
		return ret;
	ret = mig_send_start(src);
	if (ret) {
		mig_src_abort(src, ret, "send threads: %s", strerror(-ret));
		return ret;
	}
	/* Stale bits predate this session; logging starts clean before the first pass. */
	for (uint32_t r = 0; r < s->env.ctl->hdr->nr_regions; r++) {
		uint64_t *map = shm_ctl_dirty_bitmap(s->env.ctl, r);

		/* Atomically: vcpu-proc may be setting bits (a harvest in flight). */
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(s->env.ctl->hdr->regions[r].nr_pages);
		     w++)
			shm_bitmap_fetch_clear_word(map, w);
	}
	ret = src_call(src, ops->dirty_log(s->env.ops_arg, true), "DIRTY_LOG");
	if (ret)
		return ret;
	src->dirty_logging = true;
	mig_session_set_status(s, MIG_STATUS_ACTIVE);
	log_debug("setup done after %lu us", (unsigned long)(mig_now_ns() - s->start_ns) / 1000);
	ret = src_first_pass(src);
	log_debug("first pass queued after %lu us",
		  (unsigned long)(mig_now_ns() - s->start_ns) / 1000);
	if (!ret)
		ret = src_converge(src, &round);
	if (!ret)
		ret = src_complete(src, round);
	return ret;
}

void *mig_src_run(void *arg)
{
	struct mig_src *src = arg;
	struct mig_session *s = src->s;
	const struct mig_vm_ops *ops = s->env.ops;
	int ret;

	log_set_thread("mig/src");
	ret = src_run(src);
	if (ret) /* first reason wins: usually already recorded */
		mig_src_abort(src, ret, "%s", strerror(-ret));
	mig_send_stop(src);
	if (ret && src->paused && !src->committed) {
		int r = ops->resume(s->env.ops_arg);

		if (r)
			log_err("vcpu-proc RESUME after failed migration: %s", strerror(-r));
	}
	if (src->dirty_logging && ops->dirty_log(s->env.ops_arg, false))
		log_warn("vcpu-proc DIRTY_LOG off failed");
	if (src->throttle && ops->throttle(s->env.ops_arg, 0))
		log_warn("vcpu-proc THROTTLE 0 failed");
	atomic_store(&s->ctr.throttle, 0);
	if (ret) {
		char reason[256];

		pthread_mutex_lock(&src->lock);
		ret = src->err ? src->err : ret;
		snprintf(reason, sizeof(reason), "%s", src->reason);
		pthread_mutex_unlock(&src->lock);
		mig_session_finish(s, ret, reason);
	} else {
		mig_session_finish(s, 0, NULL);
	}
	return NULL;
}
