/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The session's internals, shared by the engine's files: the session object
 * (session.c: state machine, stats, events; it starts and reaps one job),
 * and the constructors of the two jobs (source.c + send.c, dest.c + recv.c),
 * whose common core is job.h.
 */
#ifndef CLEAVE_MIG_SESSION_INTERNAL_H
#define CLEAVE_MIG_SESSION_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#include "migrator/migration.h"
#include "migrator/record.h"
#include "migrator/wire.h"

/*
 * A fault-injection hook of env.hooks (test-hooks.h); 0 in a production
 * build, which has no hooks, so the branches that test one fold away.
 */
#ifdef CLEAVE_FAULT_INJECTION
#define MIG_HOOK(s, name) ((s)->env.hooks.name)
#else
#define MIG_HOOK(s, name) 0
#endif

/* ---- session (session.c) ---------------------------------------------- */

/*
 * A setting of the record (caps, channels, max_bandwidth, downtime_limit,
 * reconnect_timeout): stored atomically under the record lock, read by the
 * jobs without it.
 */
#define MIG_SETTING(s, field) __atomic_load_n(&(s)->rec->field, __ATOMIC_RELAXED)

/*
 * The running job's figures; atomics, read by query without locks.  The
 * MIG_COUNTERS ones are checkpointed into the record
 * (mig_session_record_sync) and reloaded from it by a restarted migrator;
 * the others only describe the moment.
 */
struct mig_counters {
#define MIG_LIVE_COUNTER(name) _Atomic uint64_t name;
	MIG_COUNTERS(MIG_LIVE_COUNTER)
#undef MIG_LIVE_COUNTER
	_Atomic uint64_t multifd_bytes;
	_Atomic uint64_t remaining;
	_Atomic uint64_t dirty_rate;
	_Atomic uint64_t expected_downtime_ms;
	_Atomic uint64_t bandwidth; /* bytes/s measured */
};

/* A dirty-rate measurement (dirtyrate.c): at most one at a time, one thread. */
struct mig_dirty_rate {
	pthread_mutex_t lock; /* protects every field below */
	pthread_cond_t cond;  /* broadcast on stop */
	struct mig_dirty_rate_info info;
	bool stop;	  /* the session ends: the thread stops waiting */
	pthread_t thread; /* joined by the next start or by fini */
	bool live;	  /* thread started and not joined */
};

void mig_dirty_rate_init(struct mig_dirty_rate *dr);
/* Stops a measurement and joins its thread (which may release the bitmaps first). */
void mig_dirty_rate_fini(struct mig_dirty_rate *dr);

/*
 * The session's state (role, status, settings, id and epoch, times, error,
 * restarts) is in the record only (record.h); the session holds what
 * belongs to this process.
 */
struct mig_session {
	struct mig_env env;	/* immutable after alloc */
	struct mig_record *rec; /* in env.ctl; the session's state, under mig_record_lock */
	unsigned int io_timeout_ms;

	/*
	 * Protects every field below it, the session's writes to the record
	 * (status changes are made under it, so s->cond sees each), and calls
	 * of job abort functions (so a job is not freed while cancel touches
	 * it).  Lock order: session lock, then rec->lock; never held across
	 * network I/O.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every status change */
	bool cancel_requested;
	/* mig_session_resume(): the job continues the recorded session. */
	bool resuming;
	uint64_t resume_start_ns; /* when this process took over (resume_time) */
	/* Took over with a restart streak that no data moved since (mig_session_transferred). */
	atomic_bool streak_open;
	/* The job and its worker thread: owned here, freed after join. */
	struct mig_job *job;
	pthread_t worker;
	bool worker_live; /* worker started and not joined yet */
	unsigned int incoming_port;
	/*
	 * The TLS context built from rec->tls on env.tls's credentials, or
	 * NULL (plaintext, or tls_broken).  Replaced only when no job exists
	 * (mig_session_set_tls reaps first), so the jobs read it without the
	 * lock: it was set before their thread started.
	 */
	struct mig_tls *tls;
	bool tls_broken; /* rec->tls names credentials that could not be set up */

	/* A dirty-bitmap measurement holds the dirty log: no source job starts meanwhile. */
	bool bitmaps_measuring;

	/* fd: URIs: connected stream sockets handed over by name (name[0] == 0: free). */
	struct {
		char name[MIG_FD_NAME_MAX + 1];
		int fd;
	} fds[MIG_FD_MAX];

	struct mig_counters ctr; /* reset when a job starts */
	struct mig_dirty_rate dr;
};

/*
 * For a dirty-bitmap measurement: the dirty bitmaps, unless a migration
 * runs (-EBUSY) or they hold the pages a postcopy never brought
 * (-ENODATA); a source job refuses to start (-EALREADY) until release.
 */
int mig_session_bitmaps_claim(struct mig_session *s);
void mig_session_bitmaps_release(struct mig_session *s);

/*
 * Caller holds s->lock: takes the fd held as @name out of the table (the
 * caller owns it now), or -ENOENT (logged).
 */
int mig_session_fd_take(struct mig_session *s, const char *name);

/*
 * Destination: the guest lacks the pages the ctl segment's dirty bitmaps
 * (the needed maps) hold, set from the switch until every page came, was
 * zero-filled or the switch was undone; or no longer does.  The record's
 * MIG_RECORD_PC_MISSING holds it, so a restarted migrator knows it too; a
 * new migration is refused while it is set (and clears it).
 */
void mig_session_set_missing(struct mig_session *s, bool missing);
bool mig_session_missing(struct mig_session *s);
/* Status change: updates the record, wakes waiters, publishes the event. */
void mig_session_set_status(struct mig_session *s, enum mig_status status);
/* Final state of a job: completed, or failed/cancelled with @reason. */
void mig_session_finish(struct mig_session *s, int err, const char *reason);
void mig_session_pass_event(struct mig_session *s, uint64_t pass);
/* A MIGRATION event with the status unchanged: "restarted", "disconnected", "resumed". */
void mig_session_detail_event(struct mig_session *s, const char *detail);
/* Checkpoints the live counters into the record (a restarted migrator reports them). */
void mig_session_record_sync(struct mig_session *s);
/*
 * Counts @bytes moved (ctr.transferred); the first after a takeover ends
 * the record's restart streak, from whichever thread moved them.
 */
void mig_session_transferred(struct mig_session *s, uint64_t bytes);
/*
 * The session id and epoch, from the record.  @bump: a new connection
 * attempt of the source, which takes the next epoch first.
 */
void mig_session_id(struct mig_session *s, uint8_t id[16], uint64_t *epoch, bool bump);
/* A destination's session is the source's: @id (NULL: kept) at @epoch. */
void mig_session_set_id(struct mig_session *s, const uint8_t *id, uint64_t epoch);
/* True for errors a reconnect may cure: the connection, not the stream, failed. */
bool mig_err_retriable(int err);
/* The source committed and then lost the destination for good (see MIG_STATUS_UNKNOWN). */
void mig_session_unknown(struct mig_session *s, const char *reason);
/* *ts = CLOCK_REALTIME now + @ms: the deadline of a pthread_cond_timedwait(). */
void mig_deadline_after_ms(struct timespec *ts, unsigned int ms);
/* CPU time of the calling thread, for the debug figures of the I/O threads. */
uint64_t mig_thread_cpu_ns(void);

/* ---- the two jobs (source.c + send.c, dest.c + recv.c; see job.h) -------- */

struct mig_job;
/* An outgoing job to "tcp:HOST:PORT", not started. */
int mig_src_alloc(struct mig_job **out, struct mig_session *s, const char *uri);
/*
 * The destination RAM must read as zero wherever nothing lands (zero pages
 * and holes are not written): punches out whatever an earlier, failed
 * attempt left, only for a VM that never ran (inmigrate), else -EBUSY.
 * Aborts @job with the reason on an error (dest.c).
 */
int mig_dest_ram_clear(struct mig_job *job);
/* A restore from "file:PATH" (load.c), not started. */
int mig_load_alloc(struct mig_job **out, struct mig_session *s, const char *uri);
/* A save to "file:PATH" (save.c), not started. */
int mig_save_alloc(struct mig_job **out, struct mig_session *s, const char *uri);
bool mig_uri_is_file(const char *uri);
/* The file a "file:" URI names in env->snapshot_dir (save.c; errors: mig_session_migrate). */
int mig_snapshot_name(const struct mig_env *env, const char *uri, char *name, size_t len);
/* An incoming job listening on "tcp:HOST:PORT" (port 0: *port says which), not started. */
int mig_dst_alloc(struct mig_job **out, struct mig_session *s, const char *uri, unsigned int *port);
/* mig_session_migrate_resume(): the source's next connections go to @uri. */
int mig_src_resume_to(struct mig_job *job, const char *uri);
/*
 * mig_session_recover(): the destination listens at @uri (@bound: with the
 * bound port) from its next wait for the source on.
 */
int mig_dst_relisten(struct mig_job *job, const char *uri, char bound[256], unsigned int *port,
		     char *err, size_t errlen);
/* mig_session_postcopy_abandon() on the destination's job (postcopy-dest.c). */
void mig_dst_postcopy_abandon(struct mig_job *job, bool zero_fill);
/*
 * A zero page for each page the needed maps (the ctl's dirty bitmaps)
 * still hold, placed through the VM's place() as a page from the source
 * (a vCPU waiting on one goes on) and cleared; then the VM side ends its
 * registration and the session no longer lacks pages.  *@filled: how
 * many.  Nothing else may place meanwhile (postcopy-dest.c).
 */
int mig_postcopy_zero_fill(struct mig_session *s, uint64_t *filled);

#endif
