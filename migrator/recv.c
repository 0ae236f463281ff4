/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Multifd receive threads.  Each reads page packets from its channel,
 * validates every offset before touching guest memory, then receives the
 * data straight into the destination mapping.
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
}

/*
 * Page data is received into @bounce and written with pwrite(), one call
 * per run of consecutive offsets, rather than received straight into the
 * mapping.  Most pages of round 0 are holes of the destination memfd:
 * through the mapping each costs a page fault, an allocation and a
 * clear_page() (~4-6 us here, 4x the copy); pwrite() allocates without the
 * fault or the clear (about half the CPU).  Later rounds rewrite pages that
 * were never mapped here either, so they would still fault one by one.  The
 * second copy from @bounce (1 MiB, cache-hot) costs ~0.3 us a page.
 */
struct recv_buf {
	struct mig_pkt_hdr hdr;
	uint64_t offs[MIG_BATCH_PAGES];
	uint8_t bounce[MIG_BATCH_PAGES * SHM_PAGE_SIZE]; /* the packet's data pages, in order */
};

/* pwrite()s the packet's data pages from @rb->bounce, one call per run of offsets. */
static int recv_write(struct mig_recv_chan *c, struct recv_buf *rb)
{
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	int fd = c->dst->s->env.ram[hdr->region].fd;
	const uint8_t *p = rb->bounce;

	for (uint32_t i = 0; i < hdr->nr_pages;) {
		uint64_t off = rb->offs[i] & ~(uint64_t)MIG_PAGE_FLAGS;
		size_t len = SHM_PAGE_SIZE, done = 0;
		uint32_t j = i + 1;

		if (rb->offs[i] & MIG_PAGE_ZERO) {
			i++;
			continue;
		}
		while (j < hdr->nr_pages && rb->offs[j] == off + len) { /* data page, next offset */
			len += SHM_PAGE_SIZE;
			j++;
		}
		while (done < len) {
			ssize_t n = pwrite(fd, p + done, len - done, (off_t)(off + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				int ret = n < 0 ? -errno : -EIO;

				mig_dst_abort(c->dst, ret,
					      "channel %u: write region %u at 0x%" PRIx64 ": %s",
					      c->index, hdr->region, off + done, strerror(-ret));
				return ret;
			}
			done += (size_t)n;
		}
		p += len;
		i = j;
	}
	return 0;
}

static int recv_packet(struct mig_recv_chan *c, struct recv_buf *rb)
{
	struct mig_dst *dst = c->dst;
	struct mig_session *s = dst->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	const struct mig_pkt_hdr *hdr = &rb->hdr;
	uint64_t size, nr_zero = 0, bytes, data;
	uint8_t *base;
	int ret;

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
	base = s->env.ram[hdr->region].base;
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
		if (flags & MIG_PAGE_ZERO)
			nr_zero++;
	}
	data = (hdr->nr_pages - nr_zero) * SHM_PAGE_SIZE;
	ret = data ? mig_io_read(c->fd, rb->bounce, data) : 0;
	if (ret) {
		mig_dst_abort(dst, ret, "channel %u: truncated page data: %s", c->index,
			      strerror(-ret));
		return ret;
	}
	ret = data ? recv_write(c, rb) : 0;
	if (ret)
		return ret;
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
	return 0;
}

static void *recv_thread(void *arg)
{
	struct mig_recv_chan *c = arg;
	struct mig_dst *dst = c->dst;
	const struct mig_hooks *hooks = &dst->s->env.hooks;
	struct recv_buf *rb = malloc(sizeof(*rb));
	uint64_t round = 0, t0 = mig_now_ns(), cpu0 = mig_thread_cpu_ns(), hdr_ns = 0, bar_ns = 0;
	uint64_t packets = 0;
	char tag[16];
	int ret;

	snprintf(tag, sizeof(tag), "recv/%u", c->index);
	log_set_thread(tag);
	if (!rb) {
		mig_dst_abort(dst, -ENOMEM, "channel %u: out of memory", c->index);
		return NULL;
	}
	for (;;) {
		if (hooks->recv_delay_us && c->index == hooks->hook_channel)
			usleep(hooks->recv_delay_us);
		uint64_t tw = mig_now_ns();

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
		packets++;
	}
	log_debug("%lu packets in %lu ms: %lu ms CPU, %lu ms waiting for a header, "
		  "%lu ms at the barrier",
		  (unsigned long)packets, (unsigned long)(mig_now_ns() - t0) / 1000000,
		  (unsigned long)(mig_thread_cpu_ns() - cpu0) / 1000000,
		  (unsigned long)hdr_ns / 1000000, (unsigned long)bar_ns / 1000000);
	free(rb);
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
