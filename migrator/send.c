/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Multifd send threads.  Each owns one TCP channel and sends the packets
 * the worker queues on it: header and offsets with sendmsg, then the data
 * pages straight from the RAM memfd, spliced into a pipe and from it into
 * the socket (one splice per run of contiguous pages; splice.c): no copy,
 * and no mapping of guest RAM, whose first touch of each page costs a
 * page-table fault.  So the plaintext source does not look at the bytes and
 * finds no zero pages: the destination does, in its receive buffer (recv.c).
 * With TLS the bytes are copied into a buffer for GnuTLS anyway: zero
 * pages found there travel as a flag in their offset, without data.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log/log.h"
#include "migrator/source-job.h"
#include "migrator/tls.h"

/* A send thread's buffers: it owns them, for its whole life. */
struct send_ctx {
	struct mig_pipe pipe;
	struct iovec iov[MIG_BATCH_PAGES + 2]; /* header, offsets, then TLS data runs */
	uint64_t offs[MIG_BATCH_PAGES];
	struct mig_run runs[MIG_BATCH_PAGES];
	uint8_t *buf; /* TLS only: the packet's pages, back to back */
};

/*
 * Sleeps @ns, or less if the destination closed @c (it never sends on a
 * channel: readable means EOF or reset).  A rate-limited channel writes
 * rarely, and a killed destination shows only at the second write after
 * its FIN: without this the loss is seen a packet interval late.
 */
static int rate_sleep(struct mig_send_chan *c, uint64_t ns)
{
	struct pollfd pfd = {.fd = c->fd, .events = POLLRDHUP};
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};

	if (ppoll(&pfd, 1, &ts, NULL) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR)))
		return -ECONNRESET;
	return 0;
}

/* Waits until @bytes may be sent on @c under max-bandwidth (read live). */
static int rate_acquire(struct mig_send_chan *c, size_t bytes)
{
	struct mig_src *src = c->src;
	uint64_t bw = MIG_SETTING(src->s, max_bandwidth);
	uint64_t now, wait_ns;
	double burst;
	int ret;

	if (!bw)
		return 0;
	pthread_mutex_lock(&src->rate_lock);
	now = mig_now_ns();
	if (!src->rate_last_ns)
		src->rate_last_ns = now;
	src->tokens += (double)(now - src->rate_last_ns) * (double)bw / 1e9;
	burst = (double)bw / 10; /* at most 100 ms worth of credit */
	if (src->tokens > burst)
		src->tokens = burst;
	src->rate_last_ns = now;
	src->tokens -= (double)bytes;
	wait_ns = src->tokens < 0 ? (uint64_t)(-src->tokens * 1e9 / (double)bw) : 0;
	pthread_mutex_unlock(&src->rate_lock);
	/* Sleep in slices so a cancel is seen quickly. */
	while (wait_ns) {
		uint64_t slice = wait_ns < 20000000 ? wait_ns : 20000000;

		if (mig_job_aborted(&src->job))
			return -ECANCELED;
		ret = rate_sleep(c, slice);
		if (ret)
			return ret;
		wait_ns -= slice;
	}
	return 0;
}

/* The runs of contiguous pages of @b, into @runs; returns how many. */
static int batch_runs(const struct mig_batch *b, struct mig_run *runs)
{
	int n = 0;

	for (uint32_t i = 0; i < b->nr_pages; i++) {
		uint64_t off = b->pages[i] << SHM_PAGE_SHIFT;

		if (n && runs[n - 1].off + runs[n - 1].len == off)
			runs[n - 1].len += SHM_PAGE_SIZE;
		else
			runs[n++] = (struct mig_run){off, SHM_PAGE_SIZE};
	}
	return n;
}

/*
 * TLS: the pages are read into @x->buf (GnuTLS encrypts from memory); the
 * zero ones among them go as a flag.  Fills @x->offs and @x->iov[2..];
 * returns the iovec count.
 */
static int tls_pages(struct send_ctx *x, const struct mig_batch *b, size_t *nr_zero)
{
	int niov = 2;

	for (uint32_t i = 0; i < b->nr_pages; i++) {
		uint8_t *p = x->buf + (size_t)i * SHM_PAGE_SIZE;
		struct iovec *last = &x->iov[niov - 1];

		x->offs[i] = b->pages[i] << SHM_PAGE_SHIFT;
		if (mig_page_is_zero(p)) {
			x->offs[i] |= MIG_PAGE_ZERO;
			(*nr_zero)++;
		} else if (niov > 2 && (uint8_t *)last->iov_base + last->iov_len == p) {
			last->iov_len += SHM_PAGE_SIZE;
		} else {
			x->iov[niov++] = (struct iovec){.iov_base = p, .iov_len = SHM_PAGE_SIZE};
		}
	}
	return niov;
}

static int send_batch(struct mig_send_chan *c, struct send_ctx *x, const struct mig_batch *b)
{
	struct mig_src *src = c->src;
	struct mig_session *s = src->s;
	struct mig_pkt_hdr hdr = {
		.magic = MIG_PKT_MAGIC,
		.flags = b->flags,
		.region = b->region,
		.nr_pages = b->nr_pages,
		.round = b->round,
	};
	int fd = b->nr_pages ? s->env.ram[b->region].fd : -1;
	int nruns = batch_runs(b, x->runs), niov = 2, ret;
	size_t nr_zero = 0, bytes;

	x->iov[0] = (struct iovec){.iov_base = &hdr, .iov_len = sizeof(hdr)};
	x->iov[1] = (struct iovec){.iov_base = x->offs, .iov_len = b->nr_pages * sizeof(*x->offs)};
	if (x->buf) {
		ret = nruns ? mig_pread_runs(fd, x->buf, x->runs, nruns) : 0;
		if (ret)
			return ret;
		niov = tls_pages(x, b, &nr_zero);
	} else {
		for (uint32_t i = 0; i < b->nr_pages; i++)
			x->offs[i] = b->pages[i] << SHM_PAGE_SHIFT;
	}
	bytes = sizeof(hdr) + x->iov[1].iov_len + (b->nr_pages - nr_zero) * SHM_PAGE_SIZE;
	ret = rate_acquire(c, bytes);
	if (ret)
		return ret;
	if (x->buf)
		ret = mig_io_sendv(c->fd, x->iov, niov, 0);
	else
		ret = mig_splice_send(c->fd, &x->pipe, x->iov, 2, fd, x->runs, nruns);
	if (ret)
		return ret;
	mig_session_transferred(s, bytes);
	atomic_fetch_add(&s->ctr.multifd_bytes, bytes);
	atomic_fetch_add(&s->ctr.duplicate, nr_zero);
	atomic_fetch_add(&s->ctr.normal, b->nr_pages - nr_zero);
	return 0;
}

static void *send_thread(void *arg)
{
	struct mig_send_chan *c = arg;
	struct mig_src *src = c->src;
	struct send_ctx *x = calloc(1, sizeof(*x));
	uint64_t t0 = mig_now_ns(), cpu0 = mig_thread_cpu_ns(), idle_ns = 0, packets = 0;
	sigset_t sigpipe;
	char tag[16];
	bool tls;
	int ret = 0;

	snprintf(tag, sizeof(tag), "send/%u", c->index);
	log_set_thread(tag);
	/* A peer gone during splice() raises SIGPIPE: splice.c drops it. */
	sigemptyset(&sigpipe);
	sigaddset(&sigpipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigpipe, NULL);
	if (!x) {
		mig_job_abort(&src->job, -ENOMEM, "channel %u: out of memory", c->index);
		return NULL;
	}
	x->pipe = (struct mig_pipe){-1, -1, 0};
	/* TLS sends from a buffer; plaintext through the pipe. */
	tls = mig_tls_on(c->fd);
	if (tls) {
		x->buf = malloc(MIG_BATCH_PAGES * SHM_PAGE_SIZE);
		ret = x->buf ? 0 : -ENOMEM;
	} else {
		ret = mig_pipe_open(&x->pipe);
	}
	if (ret) {
		mig_job_abort(&src->job, ret, "channel %u: %s: %s", c->index,
			      tls ? "buffer" : "pipe", strerror(-ret));
		goto out;
	}
	for (;;) {
		const struct mig_batch *b;
		bool final;

		uint64_t tw = mig_now_ns();

		pthread_mutex_lock(&src->sq_lock);
		while (!c->count && !src->sq_stop)
			pthread_cond_wait(&c->work, &src->sq_lock);
		idle_ns += mig_now_ns() - tw;
		if (src->sq_stop) {
			pthread_mutex_unlock(&src->sq_lock);
			break;
		}
		/* The worker writes only free slots: this one is ours until popped. */
		b = &c->slots[c->head];
		pthread_mutex_unlock(&src->sq_lock);

		ret = send_batch(c, x, b);
		final = b->flags & MIG_PKT_FINAL;
		packets++;

		pthread_mutex_lock(&src->sq_lock);
		c->head = (c->head + 1) % MIG_QUEUE_DEPTH;
		c->count--;
		/* Only then may the worker be waiting (a no-op without waiters). */
		if (c->count <= src->queue_depth / 2)
			pthread_cond_broadcast(&src->sq_space);
		pthread_mutex_unlock(&src->sq_lock);
		if (ret) {
			mig_job_abort(&src->job, ret, "channel %u: send: %s", c->index,
				      strerror(-ret));
			break;
		}
		if (final)
			break;
	}
out:
	log_debug("%lu packets in %lu ms: %lu ms CPU, %lu ms waiting for packets",
		  (unsigned long)packets, (unsigned long)(mig_now_ns() - t0) / 1000000,
		  (unsigned long)(mig_thread_cpu_ns() - cpu0) / 1000000,
		  (unsigned long)idle_ns / 1000000);
	mig_pipe_close(&x->pipe);
	free(x->buf);
	free(x);
	return NULL;
}

int mig_send_start(struct mig_src *src)
{
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		struct mig_send_chan *c = &src->chans[i];
		int ret = -pthread_create(&c->thread, NULL, send_thread, c);

		if (ret)
			return ret; /* mig_send_stop joins those started */
		c->started = true;
	}
	return 0;
}

void mig_send_halt(struct mig_src *src)
{
	pthread_mutex_lock(&src->sq_lock);
	src->sq_stop = true;
	for (unsigned int i = 0; i < src->nr_chans; i++)
		pthread_cond_broadcast(&src->chans[i].work);
	pthread_cond_broadcast(&src->sq_space);
	pthread_mutex_unlock(&src->sq_lock);
}

void mig_send_stop(struct mig_src *src)
{
	mig_send_halt(src);
	for (unsigned int i = 0; i < src->nr_chans; i++) {
		if (src->chans[i].started)
			pthread_join(src->chans[i].thread, NULL);
		src->chans[i].started = false;
	}
}

void mig_send_reset(struct mig_src *src)
{
	pthread_mutex_lock(&src->sq_lock);
	for (unsigned int i = 0; i < src->nr_chans; i++)
		src->chans[i].head = src->chans[i].count = 0;
	src->next_chan = 0;
	src->sq_stop = false;
	pthread_mutex_unlock(&src->sq_lock);
	pthread_mutex_lock(&src->rate_lock);
	src->tokens = 0;
	src->rate_last_ns = 0;
	pthread_mutex_unlock(&src->rate_lock);
}

int mig_send_drain(struct mig_src *src, int timeout_ms)
{
	struct timespec ts;
	bool busy = true;
	int ret = 0;

	mig_deadline_after_ms(&ts, (unsigned int)timeout_ms);
	pthread_mutex_lock(&src->sq_lock);
	while (!src->sq_stop && !ret) {
		busy = false;
		for (unsigned int i = 0; i < src->nr_chans; i++)
			busy |= src->chans[i].count > 0;
		if (!busy)
			break;
		ret = -pthread_cond_timedwait(&src->sq_space, &src->sq_lock, &ts);
	}
	if (src->sq_stop)
		ret = -ECANCELED;
	pthread_mutex_unlock(&src->sq_lock);
	return ret;
}

int mig_send_queue(struct mig_src *src, const struct mig_batch *b, int chan)
{
	struct mig_send_chan *c = NULL;
	int ret = 0;

	pthread_mutex_lock(&src->sq_lock);
	for (;;) {
		if (src->sq_stop) {
			ret = -ECANCELED;
			break;
		}
		if (chan >= 0) {
			c = &src->chans[chan];
		} else {
			/* Least loaded channel, ties broken round-robin. */
			for (unsigned int k = 0; k < src->nr_chans; k++) {
				struct mig_send_chan *t =
					&src->chans[(src->next_chan + k) % src->nr_chans];

				if (!c || t->count < c->count)
					c = t;
			}
			src->next_chan = (c->index + 1) % src->nr_chans;
		}
		if (c->count < src->queue_depth)
			break;
		/* Full: sleep until it drained to half (see MIG_QUEUE_DEPTH). */
		while (!src->sq_stop && c->count > src->queue_depth / 2)
			pthread_cond_wait(&src->sq_space, &src->sq_lock);
		c = NULL;
	}
	if (c) {
		c->slots[(c->head + c->count) % MIG_QUEUE_DEPTH] = *b;
		c->count++;
		pthread_cond_signal(&c->work);
	}
	pthread_mutex_unlock(&src->sq_lock);
	return ret;
}
