/* SPDX-License-Identifier: GPL-2.0-only */
/* The outgoing job, shared by source.c (the worker) and send.c (channels). */
#ifndef CLEAVE_MIG_SOURCE_JOB_H
#define CLEAVE_MIG_SOURCE_JOB_H

#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"

/*
 * Packets queued per channel.  A slot holds page numbers, not data (2 KiB),
 * so the ring can be deep: the worker refills it only once it drained to
 * half, one wake-up per many packets rather than per packet, and a worker
 * that waits for a CPU (~ms on a loaded host) does not starve the send
 * thread.  But a deep ring per channel leaves the fast channels idle at
 * the end of a round while a slow one drains its backlog: the depth used
 * is MIG_QUEUE_TOTAL / channels, within MIG_QUEUE_MIN..MIG_QUEUE_DEPTH.
 */
#define MIG_QUEUE_DEPTH 32
#define MIG_QUEUE_TOTAL 16
#define MIG_QUEUE_MIN	4

/* One page packet to build, or a SYNC marker (nr_pages 0). */
struct mig_batch {
	uint32_t region;
	uint32_t nr_pages;
	uint32_t flags; /* MIG_PKT_* */
	uint64_t round;
	uint64_t pages[MIG_BATCH_PAGES]; /* page numbers within the region */
};

struct mig_send_chan {
	struct mig_src *src;
	unsigned int index;
	int fd; /* owned by the job (published under job.lock); closed by its free after the join */
	pthread_t thread;
	bool started; /* worker only: thread created, not joined */
	/* Ring of queued packets, protected by src->sq_lock. */
	struct mig_batch slots[MIG_QUEUE_DEPTH];
	unsigned int head, count;
	pthread_cond_t work; /* count became non-zero, or sq_stop */
};

struct mig_src {
	/*
	 * The core (end reason, main_fd, cancel, commit, reconnect deadline).
	 * An abort ends the current connection (the epoch); whether the job
	 * reconnects or ends is the worker's decision (src_may_reconnect): it
	 * reconnects after a lost peer unless a cancel came or the stream
	 * itself was bad.
	 */
	struct mig_job job;
	struct mig_session *s;
	char uri[256];
	unsigned int nr_chans;
	struct mig_send_chan *chans;

	/* Protects the channel rings and sq_stop. */
	pthread_mutex_t sq_lock;
	pthread_cond_t sq_space; /* a ring drained to queue_depth / 2 or below */
	bool sq_stop;
	unsigned int queue_depth; /* slots used per ring; immutable after alloc */
	unsigned int next_chan;	  /* round-robin start, worker only */

	/* Token bucket shared by the send threads; protects tokens, rate_last_ns. */
	pthread_mutex_t rate_lock;
	double tokens;
	uint64_t rate_last_ns;

	/* Worker thread only. */
	unsigned int batch_pages; /* pages per packet: smaller under a low max-bandwidth */
	enum mig_phase phase;	  /* as recorded; from PAUSED on, the guest is ours to resume */
	bool dirty_logging;
	unsigned int throttle;
	uint64_t last_ping_ns;
	uint64_t last_sync_ns; /* counters last copied into the record */
	uint64_t acked_round;  /* last RoundAck from the destination, if has_acked */
	bool has_acked;
	uint64_t round;	     /* the round the round bitmaps hold (rec->round) */
	unsigned int epochs; /* connections that reached the destination's HelloAck */
	bool reached;	     /* a connection to the destination succeeded once */
};

/* send.c */
int mig_send_start(struct mig_src *src);
/* Tells the threads to stop and joins them; safe to call twice. */
void mig_send_stop(struct mig_src *src);
/* Tells the send threads and a worker waiting for ring space to stop; no join. */
void mig_send_halt(struct mig_src *src);
/* After mig_send_stop: empties the rings for the next connection (their pages are in the round
 * bitmaps). */
void mig_send_reset(struct mig_src *src);
/* Queues @b (copied) on the least loaded channel, or on @chan if >= 0. */
int mig_send_queue(struct mig_src *src, const struct mig_batch *b, int chan);
/* Waits at most @timeout_ms for every ring to empty: 0, -ETIMEDOUT or -ECANCELED. */
int mig_send_drain(struct mig_src *src, int timeout_ms);

#endif
