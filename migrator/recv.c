/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Multifd receive threads.  Each reads page packets from its channel,
 * validates every offset before touching guest memory, then writes the
 * data into guest RAM (see struct recv_buf) and marks it received.
 *
 * Ordering: a SYNC <R> packet makes its thread wait at a barrier until
 * every channel has reached SYNC <R>, so no page of round R+1 is written
 * before every page of round R landed, and an old copy can never
 * overwrite a newer one (docs/MIGRATION.md).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-internal.h"

bool mig_dst_aborted(struct mig_dst *dst)
{
	bool a;

	pthread_mutex_lock(&dst->lock);
	a = dst->aborted;
	pthread_mutex_unlock(&dst->lock);
	return a;
}

static int barrier_wait(struct mig_dst *dst)
{
	uint64_t gen;
	int ret = 0;

	pthread_mutex_lock(&dst->bar_lock);
	gen = dst->bar_generation;
	if (dst->bar_broken) {
		ret = -ECANCELED;
	} else if (++dst->bar_waiting == dst->nr_chans) {
		dst->bar_waiting = 0;
		dst->bar_generation++;
		mig_dst_round_landed(dst, dst->bar_generation);
		pthread_cond_broadcast(&dst->bar_cond);
	} else {
		while (gen == dst->bar_generation && !dst->bar_broken)
			pthread_cond_wait(&dst->bar_cond, &dst->bar_lock);
		if (gen == dst->bar_generation)
			ret = -ECANCELED;
	}
	pthread_mutex_unlock(&dst->bar_lock);
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
 * One packet, read by its channel's thread.  Its data pages land in runs
 * of contiguous offsets: through the pipe into the memfd when one of them
 * was never received (a hole: the write allocates it without clearing it;
 * receiving into the mapping would fault, allocate and clear each page,
 * ~4-6 us here, then copy), straight into the mapping when they all exist
 * already (later rounds: one recvmsg for the packet).
 */
struct recv_buf {
	struct mig_pkt_hdr hdr;
	uint64_t nr_zero; /* ZERO pages among offs[] */
	uint64_t offs[MIG_BATCH_PAGES];
	struct mig_run runs[MIG_BATCH_PAGES];
	struct iovec iov[MIG_BATCH_PAGES];
	struct mig_pipe pipe;
};

/* Reads the rest of a page packet and writes its data, checking every offset first. */
static int recv_packet(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	uint64_t size, nr_zero = 0;
	uint8_t *base;
	bool fresh = false;
	int nruns = 0, ret;

	if (hdr->region >= h->nr_regions || !hdr->nr_pages || hdr->nr_pages > MIG_BATCH_PAGES) {
		mig_dst_abort(dst, -EPROTO, "channel %u: bad packet: region %u, %u pages", c->index,
			      hdr->region, hdr->nr_pages);
		return -EPROTO;
	}
	ret = mig_io_read(c->fd, rb->offs, hdr->nr_pages * sizeof(uint64_t));
	if (ret) {
		mig_dst_abort(dst, ret, "channel %u: truncated packet: %s", c->index,
			      strerror(-ret));
		return ret;
	}
	/* Every offset is checked before a single byte is written. */
	size = h->regions[hdr->region].size;
	for (uint32_t i = 0; i < hdr->nr_pages; i++) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		uint64_t flags = rb->offs[i] & MIG_PAGE_FLAGS;

		if ((flags & ~(uint64_t)MIG_PAGE_ZERO) || off >= size) {
			mig_dst_abort(dst, -EPROTO,
				      "channel %u: page offset 0x%" PRIx64 " flags 0x%" PRIx64
				      " outside region %u (size 0x%" PRIx64 ")",
				      c->index, off, flags, hdr->region, size);
			return -EPROTO;
		}
		if (flags & MIG_PAGE_ZERO) {
			nr_zero++;
			continue;
		}
		/*
		 * Received bits of earlier rounds are final (the barrier ordered
		 * them); this round's page is in no other packet.
		 */
		fresh |= !shm_bitmap_test(dst->received[hdr->region], off >> SHM_PAGE_SHIFT);
		if (nruns && rb->runs[nruns - 1].off + rb->runs[nruns - 1].len == off)
			rb->runs[nruns - 1].len += SHM_PAGE_SIZE;
		else
			rb->runs[nruns++] = (struct mig_run){.off = off, .len = SHM_PAGE_SIZE};
	}
	rb->nr_zero = nr_zero;
	if (!nruns)
		return 0;
	if (fresh) {
		ret = mig_splice_recv(c->fd, &rb->pipe, s->env.ram[hdr->region].fd, rb->runs,
				      nruns);
	} else {
		base = s->env.ram[hdr->region].base;
		for (int i = 0; i < nruns; i++)
			rb->iov[i] = (struct iovec){base + rb->runs[i].off, rb->runs[i].len};
		ret = mig_io_readv(c->fd, rb->iov, nruns);
	}
	if (ret)
		mig_dst_abort(dst, ret, "channel %u: truncated page data: %s", c->index,
			      strerror(-ret));
	return ret;
}

/* After recv_packet() wrote the data: zero pages, then the received bits. */
static void recv_packet_land(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	uint8_t *base = s->env.ram[hdr->region].base;
	uint64_t nr_zero = rb->nr_zero, data = (hdr->nr_pages - nr_zero) * SHM_PAGE_SIZE, bytes;

	if (s->env.hooks.recv_last_write_delay_us && c->index == s->env.hooks.hook_channel)
		usleep(s->env.hooks.recv_last_write_delay_us);
	for (uint32_t i = 0; i < hdr->nr_pages; i++) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		uint64_t page = off >> SHM_PAGE_SHIFT;

		/*
		 * A zero page needs no write where nothing landed yet (the memfd
		 * starts as holes); after an earlier round it may hold data.
		 */
		if ((rb->offs[i] & MIG_PAGE_ZERO) &&
		    shm_bitmap_test(dst->received[hdr->region], page))
			memset(base + off, 0, SHM_PAGE_SIZE);
		received_set(dst, hdr->region, page);
	}
	bytes = sizeof(*hdr) + hdr->nr_pages * (sizeof(uint64_t)) + data;
	atomic_fetch_add(&s->ctr.transferred, bytes);
	atomic_fetch_add(&s->ctr.multifd_bytes, bytes);
	atomic_fetch_add(&s->ctr.duplicate, nr_zero);
	atomic_fetch_add(&s->ctr.normal, hdr->nr_pages - nr_zero);
}

static void *recv_thread(void *arg)
{
	struct mig_recv_chan *c = arg;
	struct mig_dst *dst = c->dst;
	const struct mig_hooks *hooks = &dst->s->env.hooks;
	struct recv_buf *rb = malloc(sizeof(*rb));
	uint64_t round = dst->first_round, t0 = mig_now_ns(), cpu0 = mig_thread_cpu_ns(),
		 hdr_ns = 0, bar_ns = 0;
	uint64_t packets = 0, tw;
	char tag[16];
	int ret;

	snprintf(tag, sizeof(tag), "recv/%u", c->index);
	log_set_thread(tag);
	ret = rb ? mig_pipe_open(&rb->pipe) : -ENOMEM;
	if (ret) {
		mig_dst_abort(dst, ret, "channel %u: %s", c->index, strerror(-ret));
		free(rb);
		return NULL;
	}
	for (;;) {
		if (hooks->recv_delay_us && c->index == hooks->hook_channel)
			usleep(hooks->recv_delay_us);
		tw = mig_now_ns();

		ret = mig_io_read(c->fd, &rb->hdr, sizeof(rb->hdr));
		hdr_ns += mig_now_ns() - tw;
		if (ret) {
			mig_dst_abort(dst, ret, "channel %u: %s", c->index,
				      ret == -ECONNRESET ? "source closed the channel"
							 : strerror(-ret));
			break;
		}
		if (rb->hdr.magic != MIG_PKT_MAGIC || rb->hdr.round != round) {
			mig_dst_abort(dst, -EPROTO,
				      "channel %u: bad packet: magic 0x%x, round %" PRIu64
				      " while in round %" PRIu64,
				      c->index, rb->hdr.magic, (uint64_t)rb->hdr.round, round);
			break;
		}
		if (rb->hdr.flags & MIG_PKT_SYNC) {
			if (rb->hdr.nr_pages || (rb->hdr.flags & ~(MIG_PKT_SYNC | MIG_PKT_FINAL))) {
				mig_dst_abort(dst, -EPROTO, "channel %u: bad SYNC packet",
					      c->index);
				break;
			}
			/* This thread wrote every page of its round: to the barrier. */
			tw = mig_now_ns();
			ret = barrier_wait(dst);
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
			mig_dst_abort(dst, -EPROTO, "channel %u: unknown packet flags 0x%x",
				      c->index, rb->hdr.flags);
			break;
		}
		if (recv_packet(c, rb))
			break;
		recv_packet_land(c, rb);
		packets++;
	}
	mig_pipe_close(&rb->pipe);
	free(rb);
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
