/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Multifd receive threads.  Each reads page packets from its channel,
 * validates every offset before touching guest memory, then receives the
 * data into a buffer that its writer thread lands in the RAM memfd with
 * pwrite() while the next packet is read (see struct recv_buf, recv_pipe).
 *
 * Ordering: a SYNC <R> packet makes its thread wait at a barrier until
 * every channel has reached SYNC <R>, so no page of round R+1 is written
 * before every page of round R landed, and an old copy can never
 * overwrite a newer one (docs/MIGRATION.md).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-job.h"

/*
 * SYNC of channel @c for the current round (@final: with FINAL).  The last
 * channel to arrive completes the round, unless the channels disagree on
 * whether it is the final one: a channel that ended would never arrive at
 * the next round's barrier, so that is a protocol error, here, at once.
 */
static int barrier_wait(struct mig_recv_chan *c, bool final)
{
	struct mig_dst *dst = c->dst;
	unsigned int finals = 0;
	bool disagree = false;
	uint64_t gen;
	int ret = 0;

	pthread_mutex_lock(&dst->bar_lock);
	gen = dst->bar_generation;
	if (dst->bar_broken) {
		ret = -ECANCELED;
	} else {
		dst->bar_finals += final;
		if (++dst->bar_waiting == dst->nr_chans) {
			finals = dst->bar_finals;
			disagree = finals && finals != dst->nr_chans;
		}
		if (dst->bar_waiting == dst->nr_chans && !disagree) {
			dst->bar_waiting = 0;
			dst->bar_finals = 0;
			dst->bar_generation++;
			dst->bar_ended = final;
			mig_dst_round_landed(dst, dst->bar_generation);
			pthread_cond_broadcast(&dst->bar_cond);
		} else if (!disagree) {
			while (gen == dst->bar_generation && !dst->bar_broken)
				pthread_cond_wait(&dst->bar_cond, &dst->bar_lock);
			if (gen == dst->bar_generation)
				ret = -ECANCELED;
		}
	}
	pthread_mutex_unlock(&dst->bar_lock);
	if (disagree) {
		/* Breaks the barrier: the channels waiting in it return -ECANCELED. */
		mig_job_abort(&dst->job, -EPROTO,
			      "channels disagree on the final round: %u of %u ended in round "
			      "%" PRIu64,
			      finals, dst->nr_chans, gen);
		ret = -EPROTO;
	}
	return ret;
}

/* The receivedmap write path: the map must be live (invariant 1). */
static void received_set(struct mig_dst *dst, uint32_t region, uint64_t page)
{
	assert(dst->state == MIG_DST_RECEIVING);
	assert(mig_record_receivedmap_live(dst->s->rec));
	shm_bitmap_set(dst->received[region], page);
	shm_bitmap_set(dst->round[region], page);
}

/*
 * The migrator does not map guest RAM: every data page is received into
 * @bounce and written with pwrite(), one call per run of offsets.  For
 * pages never received here (holes of the destination memfd) that is also
 * the cheapest way in: receiving into a mapping cost a page fault, an
 * allocation and a clear_page() each (~4-6 us here), pwrite() allocates
 * without the fault or the clear (about half the CPU).  Pages already
 * received take one copy more than a receive into a mapping would, and no
 * fault in a mapping of this process.
 */
struct recv_buf {
	struct mig_pkt_hdr hdr;
	uint64_t nr_zero; /* ZERO pages among offs[] */
	uint64_t offs[MIG_BATCH_PAGES];
	bool fresh[MIG_BATCH_PAGES]; /* never received before: a hole of the memfd */
	uint8_t bounce[MIG_BATCH_PAGES * SHM_PAGE_SIZE]; /* the data pages, in order */
};

/* Whether page @i of @rb is data, and a page of the memfd's hole that is all zero. */
static bool hole_stays(const struct recv_buf *rb, uint32_t i, const uint8_t *p)
{
	return rb->fresh[i] && mig_page_is_zero(p);
}

/*
 * pwrite()s the packet's data pages from @rb->bounce, one call per run of
 * offsets.  A page never received that is all zero is not written: the
 * hole reads as zero and costs no memory.  A plaintext source does not
 * look for zero pages (it splices RAM it never reads, send.c); here the
 * bytes were just received, so the check is a read of warm cache that
 * saves a page allocation.  Returns the number of such pages, or a
 * negative errno.
 */
static int recv_write(struct mig_recv_chan *c, struct recv_buf *rb)
{
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	int fd = c->dst->s->env.ram[hdr->region].fd, found = 0;
	const uint8_t *next = rb->bounce; /* the next data page */

	for (uint32_t i = 0; i < hdr->nr_pages;) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		const uint8_t *p = next;
		size_t len = SHM_PAGE_SIZE, done = 0;
		uint32_t j = i + 1;

		if (rb->offs[i] & MIG_PAGE_ZERO) {
			i++;
			continue;
		}
		next += SHM_PAGE_SIZE;
		if (hole_stays(rb, i, p)) {
			found++;
			i++;
			continue;
		}
		while (j < hdr->nr_pages && rb->offs[j] == off + len && !hole_stays(rb, j, next)) {
			len += SHM_PAGE_SIZE;
			next += SHM_PAGE_SIZE;
			j++;
		}
		while (done < len) {
			ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int ret = n < 0 ? -errno : -EIO;

				mig_job_abort(&c->dst->job, ret,
					      "channel %u: write region %u at 0x%" PRIx64 ": %s",
					      c->index, hdr->region, off + done, strerror(-ret));
				return ret;
			}
			done += (size_t)n;
		}
		i = j;
	}
	return found;
}

/* Reads the rest of a page packet into @rb, checking every offset first. */
static int recv_packet(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	uint64_t size, nr_zero = 0, data;
	int ret;

	if (hdr->region >= h->nr_regions || !hdr->nr_pages || hdr->nr_pages > MIG_BATCH_PAGES) {
		mig_job_abort(&dst->job, -EPROTO, "channel %u: bad packet: region %u, %u pages",
			      c->index, hdr->region, hdr->nr_pages);
		return -EPROTO;
	}
	ret = mig_io_read(c->fd, rb->offs, hdr->nr_pages * sizeof(uint64_t));
	if (ret) {
		mig_job_abort(&dst->job, ret, "channel %u: truncated packet: %s", c->index,
			      strerror(-ret));
		return ret;
	}
	/* Every offset is checked before a single byte is written. */
	size = h->regions[hdr->region].size;
	for (uint32_t i = 0; i < hdr->nr_pages; i++) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		uint64_t flags = rb->offs[i] & MIG_PAGE_FLAGS;

		if ((flags & ~(uint64_t)MIG_PAGE_ZERO) || off >= size) {
			mig_job_abort(&dst->job, -EPROTO,
				      "channel %u: page offset 0x%" PRIx64 " flags 0x%" PRIx64
				      " outside region %u (size 0x%" PRIx64 ")",
				      c->index, off, flags, hdr->region, size);
			return -EPROTO;
		}
		if (flags & MIG_PAGE_ZERO)
			nr_zero++;
	}
	/*
	 * Received bits of earlier rounds are final (the barrier drained every
	 * writer); this round's page is in no other packet.
	 */
	for (uint32_t i = 0; i < hdr->nr_pages; i++)
		rb->fresh[i] =
			!shm_bitmap_test(dst->received[hdr->region], rb->offs[i] >> SHM_PAGE_SHIFT);
	rb->nr_zero = nr_zero;
	data = (hdr->nr_pages - nr_zero) * SHM_PAGE_SIZE;
	ret = data ? mig_io_read(c->fd, rb->bounce, data) : 0;
	if (ret)
		mig_job_abort(&dst->job, ret, "channel %u: truncated page data: %s", c->index,
			      strerror(-ret));
	return ret;
}

/* Makes page @off of @region a hole: a ZERO page over data of an earlier round. */
static int recv_punch(struct mig_recv_chan *c, uint32_t region, uint64_t off)
{
	int fd = c->dst->s->env.ram[region].fd;

	if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off, SHM_PAGE_SIZE)) {
		int ret = -errno;

		mig_job_abort(&c->dst->job, ret, "channel %u: punch region %u at 0x%" PRIx64 ": %s",
			      c->index, region, off, strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * Postcopy: the packet's pages go to the VM, one place() per run of
 * contiguous pages of one kind (data or zero); the VM installs those still
 * missing and leaves any page the guest may have written since.
 */
static int recv_place(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	const uint8_t *next = rb->bounce;
	uint64_t pushed = 0, bytes;

	for (uint32_t i = 0; i < hdr->nr_pages;) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		bool zero = rb->offs[i] & MIG_PAGE_ZERO;
		uint32_t j = i + 1, n = 1;
		int ret;

		while (j < hdr->nr_pages &&
		       (rb->offs[j] & ~(uint64_t)MIG_PAGE_FLAGS) == off + n * SHM_PAGE_SIZE &&
		       !!(rb->offs[j] & MIG_PAGE_ZERO) == zero) {
			j++;
			n++;
		}
		mig_dst_answer_wait(dst);
		ret = s->env.ops->postcopy->place(s->env.ops_arg, hdr->region,
						  off >> SHM_PAGE_SHIFT, n, zero ? NULL : next);
		if (ret) {
			mig_job_abort(&dst->job, ret,
				      "channel %u: vcpu-proc: place region %u at 0x%" PRIx64 ": %s",
				      c->index, hdr->region, off, strerror(-ret));
			return ret;
		}
		if (!zero)
			next += (size_t)n * SHM_PAGE_SIZE;
		for (uint32_t k = 0; k < n; k++) {
			pushed +=
				mig_dst_needed_clear(dst, hdr->region, (off >> SHM_PAGE_SHIFT) + k);
			received_set(dst, hdr->region, (off >> SHM_PAGE_SHIFT) + k);
		}
		i = j;
	}
	bytes = sizeof(*hdr) + hdr->nr_pages * sizeof(uint64_t) +
		(hdr->nr_pages - rb->nr_zero) * SHM_PAGE_SIZE;
	mig_session_transferred(s, bytes);
	atomic_fetch_add(&s->ctr.multifd_bytes, bytes);
	atomic_fetch_add(&s->ctr.duplicate, rb->nr_zero);
	atomic_fetch_add(&s->ctr.normal, hdr->nr_pages - rb->nr_zero);
	atomic_fetch_add(&s->ctr.postcopy_pushed, pushed);
	atomic_fetch_sub(&s->ctr.remaining, pushed * SHM_PAGE_SIZE);
	return 0;
}

/* Writes a packet read by recv_packet() into guest RAM, then marks it received. */
static int recv_packet_land(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	uint64_t nr_zero = rb->nr_zero, data = (hdr->nr_pages - nr_zero) * SHM_PAGE_SIZE, bytes;
	int ret;

	/* Set before the source may push (it waits for our Loaded). */
	if (atomic_load(&dst->postcopy))
		return recv_place(c, rb);
	ret = data ? recv_write(c, rb) : 0;
	if (ret < 0)
		return ret;
	nr_zero += (uint64_t)ret; /* zero pages that came as data: counted as such */
	if (MIG_HOOK(s, recv_last_write_delay_us) && c->index == MIG_HOOK(s, hook_channel))
		usleep(MIG_HOOK(s, recv_last_write_delay_us));
	for (uint32_t i = 0; i < hdr->nr_pages; i++) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		uint64_t page = off >> SHM_PAGE_SHIFT;

		/*
		 * A zero page needs no write where nothing landed yet (the memfd
		 * starts as holes); after an earlier round it may hold data: a
		 * hole again reads as zero and gives the page back.
		 */
		if ((rb->offs[i] & MIG_PAGE_ZERO) && !rb->fresh[i]) {
			ret = recv_punch(c, hdr->region, off);
			if (ret)
				return ret;
		}
		received_set(dst, hdr->region, page);
	}
	bytes = sizeof(*hdr) + hdr->nr_pages * (sizeof(uint64_t)) + data;
	mig_session_transferred(s, bytes);
	atomic_fetch_add(&s->ctr.multifd_bytes, bytes);
	atomic_fetch_add(&s->ctr.duplicate, nr_zero);
	atomic_fetch_add(&s->ctr.normal, hdr->nr_pages - nr_zero);
	return 0;
}

/*
 * Each receive thread hands the packets it read to its own writer thread,
 * so that one packet's pwrite() (page allocation: most of the destination's
 * CPU) runs while the next is read from the socket; with one channel that
 * is the only parallelism the destination has.  Two buffers: the receive
 * thread fills one while the writer lands the other.
 *
 * The receive thread starts the writer, drains it before a SYNC reaches
 * the barrier (every page of the round is written first) and at the end,
 * then stops and joins it: every received_set() of the writer happens
 * before the receive thread's own join (invariant 1).  A buffer handed
 * over is always landed, also after an abort (a received bit is never
 * set for a page that was not written, and the teardown waits for it).
 */
struct recv_pipe {
	struct mig_recv_chan *c;
	struct recv_buf *bufs[2];
	bool threaded; /* else the receive thread lands each packet itself */
	pthread_t writer;
	/* Protects every field below. */
	pthread_mutex_t lock;
	pthread_cond_t cond;  /* a buffer was handed over or landed, or stop */
	unsigned int pending; /* buffers handed over, not landed yet: 0..2 */
	unsigned int next;    /* index of the next buffer the writer lands */
	bool stop;
	int err; /* first landing error; the writer already aborted the job */
};

static void *recv_writer(void *arg)
{
	struct recv_pipe *rp = arg;
	uint64_t t0 = mig_now_ns(), cpu0 = mig_thread_cpu_ns(), idle_ns = 0, tw, packets = 0;
	char tag[16];
	int ret;

	snprintf(tag, sizeof(tag), "write/%u", rp->c->index);
	log_set_thread(tag);
	pthread_mutex_lock(&rp->lock);
	for (;;) {
		struct recv_buf *rb;
		bool skip;

		tw = mig_now_ns();
		while (!rp->pending && !rp->stop)
			pthread_cond_wait(&rp->cond, &rp->lock);
		idle_ns += mig_now_ns() - tw;
		if (!rp->pending)
			break;
		rb = rp->bufs[rp->next];
		skip = rp->err != 0;
		pthread_mutex_unlock(&rp->lock);
		ret = skip ? 0 : recv_packet_land(rp->c, rb);
		pthread_mutex_lock(&rp->lock);
		if (ret && !rp->err)
			rp->err = ret;
		rp->next ^= 1;
		rp->pending--;
		packets++;
		pthread_cond_broadcast(&rp->cond);
	}
	pthread_mutex_unlock(&rp->lock);
	log_debug("%lu packets in %lu ms: %lu ms CPU, %lu ms waiting for packets",
		  (unsigned long)packets, (unsigned long)(mig_now_ns() - t0) / 1000000,
		  (unsigned long)(mig_thread_cpu_ns() - cpu0) / 1000000,
		  (unsigned long)idle_ns / 1000000);
	return NULL;
}

/* Waits until at most @max buffers are pending; returns the writer's error. */
static int recv_pipe_wait(struct recv_pipe *rp, unsigned int max)
{
	int err;

	pthread_mutex_lock(&rp->lock);
	while (rp->pending > max)
		pthread_cond_wait(&rp->cond, &rp->lock);
	err = rp->err;
	pthread_mutex_unlock(&rp->lock);
	return err;
}

static void recv_pipe_submit(struct recv_pipe *rp, struct recv_buf *rb)
{
	if (!rp->threaded) {
		int ret = recv_packet_land(rp->c, rb);

		pthread_mutex_lock(&rp->lock);
		rp->err = rp->err ?: ret;
		pthread_mutex_unlock(&rp->lock);
		return;
	}
	pthread_mutex_lock(&rp->lock);
	rp->pending++;
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->lock);
}

/*
 * With several channels the receive threads already allocate in parallel
 * (measured: a writer each made 4 channels slower, 8 threads on 2 cores
 * and a hand-off more before every barrier), so only a lone channel gets
 * a writer thread.
 */
static int recv_pipe_start(struct recv_pipe *rp, struct mig_recv_chan *c)
{
	int ret;

	memset(rp, 0, sizeof(*rp));
	rp->c = c;
	rp->threaded = c->dst->nr_chans == 1;
	rp->bufs[0] = malloc(sizeof(*rp->bufs[0]));
	rp->bufs[1] = malloc(sizeof(*rp->bufs[1]));
	if (!rp->bufs[0] || !rp->bufs[1]) {
		ret = -ENOMEM;
		goto err_free;
	}
	pthread_mutex_init(&rp->lock, NULL);
	pthread_cond_init(&rp->cond, NULL);
	ret = rp->threaded ? -pthread_create(&rp->writer, NULL, recv_writer, rp) : 0;
	if (ret)
		goto err_destroy;
	return 0;
err_destroy:
	pthread_cond_destroy(&rp->cond);
	pthread_mutex_destroy(&rp->lock);
err_free:
	free(rp->bufs[1]);
	free(rp->bufs[0]);
	return ret;
}

/* Lands what was handed over, stops and joins the writer, frees. */
static void recv_pipe_stop(struct recv_pipe *rp)
{
	pthread_mutex_lock(&rp->lock);
	rp->stop = true;
	pthread_cond_broadcast(&rp->cond);
	pthread_mutex_unlock(&rp->lock);
	if (rp->threaded)
		pthread_join(rp->writer, NULL);
	pthread_cond_destroy(&rp->cond);
	pthread_mutex_destroy(&rp->lock);
	free(rp->bufs[1]);
	free(rp->bufs[0]);
}

static void *recv_thread(void *arg)
{
	struct mig_recv_chan *c = arg;
	struct mig_dst *dst = c->dst;
	struct recv_pipe rp;
	struct recv_buf *rb;
	unsigned int k = 0; /* the buffer being filled */
	uint64_t round = dst->first_round, t0 = mig_now_ns(), cpu0 = mig_thread_cpu_ns(),
		 hdr_ns = 0, bar_ns = 0;
	uint64_t packets = 0, tw;
	char tag[16];
	int ret;

	snprintf(tag, sizeof(tag), "recv/%u", c->index);
	log_set_thread(tag);
	ret = recv_pipe_start(&rp, c);
	if (ret) {
		mig_job_abort(&dst->job, ret, "channel %u: writer: %s", c->index, strerror(-ret));
		return NULL;
	}
	for (;;) {
		if (MIG_HOOK(dst->s, recv_delay_us) && c->index == MIG_HOOK(dst->s, hook_channel))
			usleep(MIG_HOOK(dst->s, recv_delay_us));
		/* The writer landed buffer k (at most the other one is pending). */
		if (recv_pipe_wait(&rp, 1))
			break; /* the writer aborted the job */
		rb = rp.bufs[k];
		tw = mig_now_ns();

		ret = mig_io_read(c->fd, &rb->hdr, sizeof(rb->hdr));
		hdr_ns += mig_now_ns() - tw;
		if (ret) {
			mig_job_abort(&dst->job, ret, "channel %u: %s", c->index,
				      ret == -ECONNRESET ? "source closed the channel"
							 : strerror(-ret));
			break;
		}
		if (rb->hdr.magic != MIG_PKT_MAGIC || rb->hdr.round != round) {
			mig_job_abort(&dst->job, -EPROTO,
				      "channel %u: bad packet: magic 0x%x, round %" PRIu64
				      " while in round %" PRIu64,
				      c->index, rb->hdr.magic, (uint64_t)rb->hdr.round, round);
			break;
		}
		if (rb->hdr.flags & MIG_PKT_SYNC) {
			if (rb->hdr.nr_pages || (rb->hdr.flags & ~(MIG_PKT_SYNC | MIG_PKT_FINAL))) {
				mig_job_abort(&dst->job, -EPROTO, "channel %u: bad SYNC packet",
					      c->index);
				break;
			}
			/* Every page of the round is written before the barrier. */
			if (recv_pipe_wait(&rp, 0))
				break;
			tw = mig_now_ns();
			ret = barrier_wait(c, rb->hdr.flags & MIG_PKT_FINAL);
			bar_ns += mig_now_ns() - tw;
			if (ret)
				break; /* aborted elsewhere */
			if (rb->hdr.flags & MIG_PKT_FINAL) {
				c->final_round = round;
				c->done = true;
				break;
			}
			round++;
			continue;
		}
		if (rb->hdr.flags) {
			mig_job_abort(&dst->job, -EPROTO, "channel %u: unknown packet flags 0x%x",
				      c->index, rb->hdr.flags);
			break;
		}
		if (recv_packet(c, rb))
			break;
		recv_pipe_submit(&rp, rb);
		k ^= 1;
		packets++;
	}
	recv_pipe_stop(&rp);
	log_debug("%lu packets in %lu ms: %lu ms CPU, %lu ms waiting for a header, "
		  "%lu ms at the barrier",
		  (unsigned long)packets, (unsigned long)(mig_now_ns() - t0) / 1000000,
		  (unsigned long)(mig_thread_cpu_ns() - cpu0) / 1000000,
		  (unsigned long)hdr_ns / 1000000, (unsigned long)bar_ns / 1000000);
	return NULL;
}

int mig_recv_start(struct mig_dst *dst)
{
	assert(dst->state == MIG_DST_RECEIVING);
	assert(mig_record_receivedmap_live(dst->s->rec));
	for (unsigned int i = 0; i < dst->nr_chans; i++) {
		struct mig_recv_chan *c = &dst->chans[i];
		int ret = -pthread_create(&c->thread, NULL, recv_thread, c);

		if (ret)
			return ret; /* mig_recv_join joins those started */
		c->started = true;
	}
	return 0;
}

void mig_recv_join(struct mig_dst *dst)
{
	assert(dst->state == MIG_DST_RECEIVING);
	for (unsigned int i = 0; i < dst->nr_chans; i++) {
		if (dst->chans[i].started)
			pthread_join(dst->chans[i].thread, NULL);
		dst->chans[i].started = false;
	}
	dst->state = MIG_DST_JOINED;
}
