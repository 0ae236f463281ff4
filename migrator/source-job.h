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
/* A drain polls the destination this often: a lost destination is seen this soon. */
#define MIG_DRAIN_POLL_MS 20

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
	char uri[256];	     /* written by the worker only, under job.lock */
	char next_uri[256];  /* migrate {resume: true}'s, under job.lock; "": none */
	struct mig_mux *mux; /* an fd: URI: every connection is a stream of it */
	unsigned int nr_chans;
	struct mig_send_chan *chans;

	/* Protects the channel rings and sq_stop; taken after job.lock, never before. */
	pthread_mutex_t sq_lock;
	pthread_cond_t sq_space; /* a ring drained to queue_depth / 2 or below */
	bool sq_stop;
	unsigned int queue_depth; /* slots used per ring; immutable after alloc */
	unsigned int next_chan;	  /* round-robin start, worker only */

	/* Send threads' token bucket: tokens, rate_last_ns; taken after job.lock. */
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
	uint64_t round;	      /* the round the round bitmaps hold (rec->round) */
	unsigned int epochs;  /* connections that reached the destination's HelloAck */
	bool reached;	      /* a connection to the destination succeeded once */
	uint64_t final_round; /* postcopy: the round of the push, as recorded */

	/*
	 * Postcopy (postcopy-source.c).  From the switch on, the request
	 * thread reads the main connection (page requests, Loaded, Complete)
	 * and answers requests on it; the worker only writes.  pc_live: the
	 * thread was started and not joined (worker only).
	 */
	pthread_t pc_thread;
	bool pc_live;
	pthread_mutex_t pc_lock; /* protects pc_loaded and pc_complete */
	pthread_cond_t pc_cond;	 /* broadcast when either is set, and by every abort */
	bool pc_loaded;		 /* the destination loaded the state: Commit may go */
	bool pc_complete;	 /* the destination has every page */
};

/* source.c, for postcopy-source.c */
int mig_src_send(struct mig_src *src, Cleave__Wire__WireMsg *m, const char *what);
int mig_src_call(struct mig_src *src, int ret, const char *what);
/* Queues the dirty bitmaps' pages as round @round (@final: the last round) and its SYNC. */
int mig_src_dirty_round(struct mig_src *src, uint64_t round, bool final);
void mig_src_set_phase(struct mig_src *src, enum mig_phase phase);
/* The destination runs the guest: ours stays paused for good; ends the job's phase. */
int mig_src_completed(struct mig_src *src);

/*
 * postcopy-source.c (docs/MIGRATION.md, "Postcopy").  Each returns 0 once
 * the destination has every page, or a negative errno (the job aborted).
 */
/* migrate-start-postcopy was asked and postcopy-ram is on. */
bool mig_src_postcopy_wanted(struct mig_src *src);
/* The switch, at the start of round @round (every earlier round landed): pause, state, push. */
int mig_src_postcopy(struct mig_src *src, uint64_t round);
/*
 * Waits for the destination's Loaded (unless @loaded: a reconnect found it
 * loaded), then commits and pushes.
 */
int mig_src_postcopy_commit(struct mig_src *src, bool loaded);
/* A reconnect found the destination running: push what it reported missing. */
int mig_src_postcopy_push(struct mig_src *src);
/* Joins the request thread (after an abort); safe to call twice. */
void mig_src_postcopy_stop(struct mig_src *src);
/* After every abort: wakes the worker waiting for the request thread. */
void mig_src_postcopy_wake(struct mig_src *src);

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
