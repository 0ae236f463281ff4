/* SPDX-License-Identifier: GPL-2.0-only */
/* The incoming job, shared by dest.c (the worker) and recv.c (channels). */
#ifndef CLEAVE_MIG_DEST_JOB_H
#define CLEAVE_MIG_DEST_JOB_H

#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"

/*
 * Lifetime of the receive side, asserted by every step of the teardown:
 * IDLE -> RECEIVING (receivedmap live, threads started) -> JOINED (every
 * receive thread joined) -> CLOSED (receivedmap invalidated).  A lost
 * source goes JOINED -> RECEIVING again when it reconnects: the map stays
 * live across connections (and across migrator restarts, in the record)
 * until the session ends.
 */
#define MIG_PC_TIMED 1024 /* postcopy requests timed at once */

enum mig_dst_state {
	MIG_DST_IDLE,
	MIG_DST_RECEIVING,
	MIG_DST_JOINED,
	MIG_DST_CLOSED,
};

struct mig_recv_chan {
	struct mig_dst *dst;
	unsigned int index;
	int fd; /* owned by the job (published under job.lock); closed by its free */
	pthread_t thread;
	bool started;	      /* worker only */
	uint64_t final_round; /* written by the thread, read after its join */
	bool done;	      /* reached the FINAL sync; read after join */
};

struct mig_dst {
	struct mig_job job; /* the core: end reason, main_fd, cancel, reconnect deadline */
	struct mig_session *s;
	/*
	 * The listener; an fd: URI: the mux's queue of new streams
	 * (mig_dst_accept4).  With port and uri, replaced by the worker only
	 * (mig_dst_take_listener), under job.lock, so that the shut_down of
	 * an abort or a recover never touches a closed fd.
	 */
	int listen_fd;
	struct mig_mux *mux;
	unsigned int port;
	char uri[256]; /* tcp:HOST:<bound port> */
	/* migrate-recover's new listener until the worker takes it; under job.lock; -1: none. */
	int relisten_fd;
	char relisten_uri[256];
	unsigned int relisten_port;
	unsigned int nr_chans; /* from the source's Hello */
	struct mig_recv_chan *chans;
	enum mig_dst_state state; /* worker (or free, after the worker's join) only */
	/*
	 * Received bitmaps of the ctl segment: set in the RECEIVING state
	 * before the first receive thread starts, cleared only in CLOSED,
	 * after the last one was joined (invariant 1).
	 */
	uint64_t *received[SHM_MAX_REGIONS];
	/* Pages landed since the last completed round (shm round bitmaps), for a resume. */
	uint64_t *round[SHM_MAX_REGIONS];
	uint64_t first_round; /* of this connection: the Hello's next_round */
	enum mig_phase phase; /* worker only; as recorded */

	/*
	 * Round barrier of the receive threads; bar_lock protects the bar_*
	 * fields.  No wait on it depends on the source's future word alone
	 * (docs/MIGRATION.md, "Bounded waits"): it breaks on any abort, and
	 * a round the channels disagree on, or one announced after the final
	 * round, is a protocol error.
	 */
	pthread_mutex_t bar_lock;
	pthread_cond_t bar_cond;
	unsigned int bar_waiting;
	unsigned int bar_finals; /* arrivals of this generation with FINAL */
	uint64_t bar_generation;
	bool bar_ended;	 /* every channel passed its FINAL round: no generation follows */
	bool bar_broken; /* abort: every waiter returns -ECANCELED */

	/*
	 * Postcopy (postcopy-dest.c).  @postcopy is set before Loaded goes to
	 * the source and never cleared: from then on the receive threads place
	 * pages through the VM's postcopy ops, never write RAM themselves.
	 * needed[]: the ctl segment's dirty bitmaps, which a destination has no
	 * other use for: a bit per page the guest may not see yet; set at the
	 * switch, cleared (atomically, by whoever placed the page) once the VM
	 * installed it.  In the ctl segment, they outlive a killed migrator.
	 */
	atomic_bool postcopy;
	uint64_t *needed[SHM_MAX_REGIONS];
	_Atomic uint64_t needed_left; /* bits set in needed[] (kept with them) */
	/*
	 * When each request still unanswered was sent (postcopy_wait_us):
	 * written by the fault thread, taken by the worker; pc_lock protects
	 * it.  Open addressing; a request that finds no slot is not timed.
	 */
	pthread_mutex_t pc_lock;
	struct mig_pc_timed {
		uint64_t page; /* UINT64_MAX: free */
		uint32_t region;
		uint64_t sent_ns;
	} pc_timed[MIG_PC_TIMED];
	/*
	 * Answers to requests being placed by the worker (pc_pages): while
	 * there is one, the receive threads hold their pushed pages back
	 * (mig_dst_answer_wait), so the answer gets the VM link's room ahead
	 * of them.  Decremented under pc_lock, with pc_cond broadcast at 0.
	 */
	atomic_uint pc_answering;
	pthread_cond_t pc_cond;
	/* The fault thread: faults -> page requests, and the keepalive. */
	pthread_t pc_thread;
	bool pc_live;	     /* worker only */
	atomic_bool pc_stop; /* the worker tells it to end */
	uint64_t pc_rx_ns;   /* worker only: last message from the source */
	/* The operator abandoned the missing pages and wants zeros in their place. */
	atomic_bool pc_zero_fill;
};

/* dest-accept.c: the source's main connection and its Hello, among untrusted connections. */
int mig_dst_wait_source(struct mig_dst *dst, int wait_ms, int *fdp, Cleave__Wire__WireMsg **hellop);
/* dest.c: takes migrate-recover's new listener, if one came; true when it did. */
bool mig_dst_take_listener(struct mig_dst *dst);
/* dest.c: accept4() on the listener, or the next stream of an fd: URI's mux. */
int mig_dst_accept4(struct mig_dst *dst, int flags);
/* dest.c: true (and @why) when this job does not take a connection that says @h. */
bool mig_dst_hello_refusal(struct mig_dst *dst, const Cleave__Wire__Hello *h, char *why,
			   size_t len);

/* dest.c, for postcopy-dest.c */
int mig_dst_fail(struct mig_dst *dst, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void mig_dst_set_phase(struct mig_dst *dst, enum mig_phase phase);
int mig_dst_send(struct mig_dst *dst, Cleave__Wire__WireMsg *m, int body, void *msg);
int mig_dst_source_error(struct mig_dst *dst, const char *why);
/* Every receive thread joined: each reached FINAL of @final_round, else -EPROTO. */
int mig_dst_channels_final(struct mig_dst *dst, uint64_t final_round);

/*
 * postcopy-dest.c (docs/MIGRATION.md, "Postcopy").  Refusal of a source
 * that may switch to postcopy where this side cannot take it.
 */
bool mig_dst_postcopy_refusal(struct mig_dst *dst, const Cleave__Wire__Hello *h, char *why,
			      size_t len);
/* The source's Postcopy message, every earlier round landed: switch, then run to the end. */
int mig_dst_postcopy_switch(struct mig_dst *dst, const Cleave__Wire__Postcopy *pc);
/* A reconnect in PC_LOADED or POSTCOPY, channels running: run to the end. */
int mig_dst_postcopy_run(struct mig_dst *dst);
/* A restarted migrator in PC_LOADED or POSTCOPY: takes the VM side over again. */
int mig_dst_postcopy_adopt(struct mig_dst *dst);
/*
 * Page @page of @region was placed: clears its needed bit; true when this
 * call did (then the wait of a request for it is counted).
 */
bool mig_dst_needed_clear(struct mig_dst *dst, uint32_t region, uint64_t page);
/* The request timing table, empty (mig_dst_alloc). */
void mig_dst_postcopy_init(struct mig_dst *dst);
/*
 * A receive thread about to place pushed pages: waits while the worker
 * places an answer to a request (a guest waits for that one).
 */
void mig_dst_answer_wait(struct mig_dst *dst);
/* Joins the fault thread; safe to call twice. */
void mig_dst_postcopy_stop(struct mig_dst *dst);
/*
 * After an abandon with zero fill, every thread joined: each page still
 * missing is placed as zeros, and the VM side ends its registration.
 */
void mig_dst_postcopy_zero_fill(struct mig_dst *dst);
/* PC_LOADED or POSTCOPY: the needed map is live, HelloAck reports it. */
bool mig_dst_in_postcopy(const struct mig_dst *dst);

/* recv.c */
int mig_recv_start(struct mig_dst *dst);
/* Joins every receive thread (RECEIVING -> JOINED); the caller aborted them or they ended. */
void mig_recv_join(struct mig_dst *dst);
/* dest.c: the barrier completed rounds < @generation (called under bar_lock). */
void mig_dst_round_landed(struct mig_dst *dst, uint64_t generation);

#endif
