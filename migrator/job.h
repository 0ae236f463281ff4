/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The job core: what an outgoing and an incoming migration share.  A job
 * runs one migration in a worker thread the session starts and joins; its
 * connection to the peer may be lost and made again (an epoch each).  The
 * core keeps the job's end reason (first reason wins, but a cancel or the
 * peer's own Error replace a lost connection), publishes the fds an abort
 * must shut down, refuses a cancel after the commit, and times the
 * reconnect of a lost peer.  What differs per side (which fds and queues to
 * stop, what to wake) is in struct mig_job_ops.
 *
 * Lifetime: the side's alloc calls mig_job_init; the session starts
 * ops->run in its worker, joins it, then calls mig_job_free, which calls
 * ops->free.  Abort, cancel and stop are safe from any thread until then.
 */
#ifndef CLEAVE_MIG_JOB_H
#define CLEAVE_MIG_JOB_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct mig_session;
struct mig_job;

struct mig_job_ops {
	const char *thread_name; /* the worker's log tag */
	/* The worker thread (argument: the job). */
	void *(*run)(void *job);
	/*
	 * Under job->lock, once per epoch, by the abort that ends it: shut down
	 * this side's channel fds (job->main_fd is done by the core) and, when
	 * @job_ends (the reason cannot be cured by a reconnect), its listener.
	 */
	void (*shut_down)(struct mig_job *job, bool job_ends);
	/* Without job->lock, after every abort: wake threads waiting on queues or barriers. */
	void (*wake)(struct mig_job *job);
	/* Frees the side's object; the worker was joined. */
	void (*free)(struct mig_job *job);
};

struct mig_job {
	struct mig_session *s; /* outlives the job */
	const struct mig_job_ops *ops;

	/*
	 * Protects err, reason, aborted, cancelled, committed, main_fd and the
	 * publication of the side's channel fds.  Taken after the session lock,
	 * before tx_lock; never held across blocking I/O.
	 */
	pthread_mutex_t lock;
	pthread_cond_t wake; /* broadcast by abort and cancel: ends a reconnect backoff */
	int err;	     /* the epoch's first error (a negative errno), 0 while it runs */
	char reason[256];
	bool aborted;	/* this epoch's fds shut down, its threads told to stop */
	bool cancelled; /* migrate_cancel, stop or give up: the job ends, no reconnect */
	/* The switchover was decided: a cancel is refused, the peer is not told to give up. */
	bool committed;
	int main_fd; /* the epoch's main connection, -1 between epochs */
	/*
	 * migrate-pause: the side does not reconnect until released (the
	 * record's MIG_RECORD_PC_HELD says the same across a restart).
	 */
	bool held;
	/* Aborts between their unlock and the end of their ops->wake (reset waits for 0). */
	unsigned int wakers;
	/* Serialises writes to main_fd: the worker's messages and abort's Error. */
	pthread_mutex_t tx_lock;

	/* Worker only. */
	uint64_t lost_ns;      /* the peer was lost (or this process took over); 0: connected */
	char lost_reason[256]; /* why, for the error after the reconnect deadline */
};

void mig_job_init(struct mig_job *job, struct mig_session *s, const struct mig_job_ops *ops);
/* Destroys what mig_job_init made and closes main_fd; the side's ops->free calls it. */
void mig_job_fini(struct mig_job *job);
/* ops->free; NULL-safe. */
void mig_job_free(struct mig_job *job);

/* Fails the epoch from any thread: shuts its fds down; first reason wins. */
void mig_job_abort(struct mig_job *job, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* A reason that also replaces a lost connection recorded first (a cancel, the peer's Error). */
void mig_job_abort_final(struct mig_job *job, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool mig_job_aborted(struct mig_job *job);
/* The epoch's error and reason (@ret when none was recorded). */
int mig_job_error(struct mig_job *job, int ret, char *reason, size_t len);
/*
 * migrate_cancel: the job ends, without a reconnect.  False (nothing done)
 * once the job committed: the guest then belongs to the destination.
 */
bool mig_job_cancel(struct mig_job *job, const char *reason);
/*
 * The operator gives up on the peer: the job ends without a reconnect,
 * committed or not (a committed side then leaves the outcome to the
 * operator, see MIG_STATUS_UNKNOWN).
 */
void mig_job_give_up(struct mig_job *job, const char *reason);
/*
 * Decides the commit, atomically with cancel: -ECANCELED if a cancel came
 * first, else 0 and cancels from now on are refused.
 */
int mig_job_commit(struct mig_job *job);
bool mig_job_committed(struct mig_job *job);
bool mig_job_cancelled(struct mig_job *job);

/* Stores a connected fd where abort finds it; shuts it down at once if the epoch is over. */
void mig_job_publish_fd(struct mig_job *job, int *slot, int fd);

/*
 * Reconnect: the worker records the loss once (the first reason stays),
 * forgets the failed epoch (closes main_fd, clears the abort), and waits
 * within the session's reconnect-timeout.
 */
/* True when this call recorded the loss (the first since the peer was last connected). */
bool mig_job_mark_lost(struct mig_job *job, const char *reason);
/*
 * Caller holds job->lock: waits for the wakes of earlier aborts to finish,
 * then clears the abort and closes main_fd for the next epoch.  The side
 * re-arms what its wake stopped before it drops job->lock.
 */
void mig_job_reset_epoch_locked(struct mig_job *job);
/* The peer came back: how long it was gone, in ms (the resume time). */
uint64_t mig_job_reconnected(struct mig_job *job);
/* Milliseconds left before the reconnect deadline (0: passed). */
int mig_job_reconnect_left_ms(struct mig_job *job);
/*
 * Sleeps *delay_ms (doubling it up to a cap) or until a cancel:
 * 0, -ETIMEDOUT past the reconnect deadline (only with @deadline: a side
 * whose peer holds pages nobody else has waits as long as it takes, at
 * MIG_RECONNECT_SLOW_MS once the peer is long gone), -ECANCELED.
 */
int mig_job_backoff(struct mig_job *job, unsigned int *delay_ms, bool deadline);

/*
 * migrate-pause, from any thread: ends the epoch with @reason and holds
 * the job: its worker does not reconnect until mig_job_release().
 */
void mig_job_hold(struct mig_job *job, const char *reason);
void mig_job_release(struct mig_job *job);
/*
 * The worker, between epochs: waits while the job is held.  0 at once when
 * it is not, 1 after a release (the reconnect deadline starts again from
 * then), -ECANCELED after a cancel.
 */
int mig_job_wait_released(struct mig_job *job);
#define MIG_RECONNECT_MIN_MS 5	/* reconnect backoff: 5 ms doubling ... */
#define MIG_RECONNECT_MAX_MS 10 /* ... to 10 ms */
/*
 * A peer lost for longer than reconnect-timeout and this (only a side
 * without a deadline gets there: postcopy) is called once a second.
 */
#define MIG_RECONNECT_SLOW_AFTER_MS 10000
#define MIG_RECONNECT_SLOW_MS	    1000

#endif
