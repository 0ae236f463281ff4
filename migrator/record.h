/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The session record: what a migration must remember across a migrator's
 * death, in the ctl segment's session area.  A small library of its own
 * (record.c): the migration engine writes it, and the launcher, which must
 * end a session when it gives up restarting the migrator, reads and ends
 * it without linking the engine.  The give-up policy is one table
 * (mig_record_give_up), used by both.
 */
#ifndef CLEAVE_MIG_RECORD_H
#define CLEAVE_MIG_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrator/mig-limits.h"
#include "shm/shm.h"

#define MIG_RECORD_MAGIC   0x4443455247494dULL /* "MIGRECD" */
#define MIG_RECORD_VERSION 5
#define MIG_MAX_RESTARTS   8 /* migrator starts in a row, none moving data, before it gives up */

/*
 * The values of the record's status and role.  They live here because the
 * record holds them across processes and binaries; migration.h, the
 * engine's API, takes them from here.
 */

/* QEMU MigrationStatus; MIG_STATUS_NONE is query-migrate's {}. */
enum mig_status {
	MIG_STATUS_NONE,
	MIG_STATUS_SETUP,
	MIG_STATUS_ACTIVE,
	MIG_STATUS_DEVICE,
	MIG_STATUS_CANCELLING,
	MIG_STATUS_CANCELLED,
	MIG_STATUS_COMPLETED,
	MIG_STATUS_FAILED,
	/*
	 * Not QEMU's: the source committed the switchover, then lost the
	 * destination for good.  Its guest stays paused; mig_session_resolve()
	 * (x-cleave-migrate-resolve) decides where it runs.
	 */
	MIG_STATUS_UNKNOWN,
	/* QEMU's: the guest runs at the destination, pages still come from the source. */
	MIG_STATUS_POSTCOPY_ACTIVE,
	/* QEMU's: postcopy lost its peer; cleave reconnects by itself (reconnect-timeout). */
	MIG_STATUS_POSTCOPY_PAUSED,
	MIG_STATUS_LAST = MIG_STATUS_POSTCOPY_PAUSED,
};

enum mig_role {
	MIG_ROLE_NONE,
	MIG_ROLE_SOURCE,
	MIG_ROLE_DEST,
};

/*
 * The counters a migration keeps across a migrator's restart, listed once.
 * Each is a uint64_t at the end of the record, in this order, and the
 * engine generates from this list its live counters (atomics the I/O
 * threads add to), their checkpoint into the record and their reload by a
 * restarted migrator, the fields of struct mig_info, and the name/value
 * pairs of the MigrationInfo reply (server.c).  A new counter is: a line
 * here (appended: no other field moves, but the layout is new, so
 * MIG_RECORD_VERSION and MIG_RECORD_SIZE below change with it), its
 * increments in the engine, and its query-migrate field, looked up by this
 * name (monitor/qmp-migration.c).
 */
#define MIG_COUNTERS(X)                                                                            \
	X(rounds)	     /* dirty rounds synced (query-migrate dirty-sync-count) */            \
	X(transferred)	     /* bytes on all connections */                                        \
	X(normal)	     /* pages sent with data */                                            \
	X(duplicate)	     /* zero pages sent as flags only */                                   \
	X(skipped)	     /* never-touched pages not read at all (holes) */                     \
	X(resent_bytes)	     /* pages sent again because a resume found them not landed */         \
	X(inflight_bytes)    /* at the last resume: queued or sent, not acknowledged */            \
	X(resume_time_ms)    /* last restart or disconnect -> transfer resumed */                  \
	X(resumes)	     /* resumed transfers (after a restart or a lost peer) */              \
	X(postcopy_requests) /* postcopy: page requests (faults) sent to / served by the source */ \
	X(postcopy_pulled)   /* postcopy: pages that came on request */                            \
	X(postcopy_pushed)   /* postcopy: pages that came with the background stream */            \
	X(postcopy_wait_us)  /* postcopy: request sent -> page placed, summed over requests */

#define MIG_COUNTER_ONE(name) +1
enum { MIG_NR_COUNTERS = 0 MIG_COUNTERS(MIG_COUNTER_ONE) };
#undef MIG_COUNTER_ONE

/*
 * Where a session stands, as a restarted migrator must know it.  Each step
 * is recorded before the action it announces (the source records PAUSED
 * before it pauses the guest, COMMITTED before it sends Commit; the
 * destination COMMITTED before it resumes), so a migrator killed between
 * the two repeats the action, which is idempotent, and never skips it.
 */
enum mig_phase {
	MIG_PHASE_NONE,
	MIG_PHASE_SRC_PRECOPY,	 /* guest runs here; rounds in progress */
	MIG_PHASE_SRC_PAUSED,	 /* the guest stays paused until the migration ends */
	MIG_PHASE_SRC_COMMITTED, /* Commit decided: the guest never runs here again */
	MIG_PHASE_DST_LISTENING, /* no source yet; nothing written */
	MIG_PHASE_DST_RECEIVING, /* RAM being written; the receivedmap is live */
	MIG_PHASE_DST_LOADED,	 /* all RAM landed, state loaded, guest not run */
	MIG_PHASE_DST_COMMITTED, /* Commit received: the guest is ours, resume it */
	MIG_PHASE_DST_RUNNING,	 /* resumed */
	/*
	 * Postcopy (docs/MIGRATION.md, "Postcopy").  The source's guest never
	 * runs again: it pushes and serves the pages the destination lacks.
	 */
	MIG_PHASE_SRC_POSTCOPY,
	/* Device state loaded, the pages still due registered for faults; guest not run. */
	MIG_PHASE_DST_PC_LOADED,
	/* Commit received: the guest runs here; the pages still due come on fault or push. */
	MIG_PHASE_DST_POSTCOPY,
	MIG_PHASE_LAST = MIG_PHASE_DST_POSTCOPY,
};

/* The kind of a TLS credentials object (QEMU's qom-type). */
enum mig_tls_kind {
	MIG_TLS_NONE,
	MIG_TLS_X509, /* tls-creds-x509 */
	MIG_TLS_PSK,  /* tls-creds-psk */
};

/* The ends a credentials object may serve (QEMU's endpoint; cleave run's serve both). */
#define MIG_TLS_END_CLIENT 0x1u /* the source */
#define MIG_TLS_END_SERVER 0x2u /* the destination */

/* One authorization rule: QEMU's authz-list rule (authz-simple is one exact allow). */
struct mig_tls_rule {
	uint32_t allow; /* 1: policy allow, 0: deny */
	uint32_t glob;	/* 1: format glob (fnmatch), 0: exact */
	char match[MIG_TLS_MATCH_LEN];
};

/*
 * The TLS settings of migrate-set-parameters with what the migrator needs
 * of the objects they name (those live in the monitor, which may restart):
 * a restarted migrator rebuilds its TLS context from this alone.  Every
 * string is NUL-terminated within its field.
 */
struct mig_tls_params {
	char creds[MIG_TLS_ID_LEN];	     /* tls-creds: "" no TLS, or MIG_TLS_RUN_ID */
	char hostname[MIG_TLS_HOSTNAME_LEN]; /* tls-hostname: "" the URI's host */
	char authz[MIG_TLS_ID_LEN];	     /* tls-authz: "" any peer the credentials accept */
	/* The tls-creds object */
	uint32_t kind;		       /* enum mig_tls_kind */
	uint32_t endpoints;	       /* MIG_TLS_END_* */
	char path[MIG_TLS_PATH_LEN];   /* x509: the directory; PSK: the keys file */
	char username[MIG_TLS_ID_LEN]; /* PSK: the source's identity; "": "qemu" */
	/* The tls-authz object: the first rule that matches decides, else the policy. */
	uint32_t authz_allow;
	uint32_t nr_rules;
	struct mig_tls_rule rules[MIG_TLS_MAX_RULES];
};

/*
 * Lives at the start of the ctl segment's session area and outlives the
 * migrator process: a restarted migrator continues from it.  It is the one
 * store of the session's state: the engine keeps no copy of these fields
 * (only its live counters, checkpointed here), and query-migrate is built
 * from it.  A migrator takes over only a record of its own
 * MIG_RECORD_VERSION (docs/MIGRATION.md); fixed-size fields only.
 *
 * Written by the migrator only (and by the launcher's mig_record_abandon()
 * once the migrator is given up).  In the migrator: s->lock, then this
 * lock; the jobs take it alone for their phase, round and counters.
 */
struct mig_record {
	struct shm_lock lock; /* protects every field below unless noted */
	uint64_t magic;
	uint32_t version;
	uint32_t role;		   /* enum mig_role */
	uint32_t status;	   /* enum mig_status */
	uint32_t receivedmap_live; /* 1 while receive threads may write the received bitmaps;
				      also read without the lock (atomic) by the write path */
	uint32_t phase;		   /* enum mig_phase */
	uint32_t restarts;	   /* migrator starts that took this session over */
	uint32_t has_downtime;	   /* 1 once downtime_ms holds a completed source's downtime */
	uint32_t throttle;	   /* source: percent set in vcpu-proc */
	/*
	 * MIG_RECORD_PC_* (atomic: also read without the lock).  Was a 0/1
	 * "start asked" word: the layout is the same, and START is its bit 0.
	 */
	uint32_t postcopy_flags;
	/*
	 * Takeovers in a row with no data moved (the first bytes a migrator
	 * moves reset it: mig_session_transferred()).  MIG_MAX_RESTARTS bounds
	 * it: a crash loop ends, a migration killed while it moves on does
	 * not.  Was a reserved zero: the layout is the same.
	 */
	uint32_t restart_streak;
	uint8_t session_id[16];
	uint64_t epoch; /* bumped by every connection attempt of the session */
	char uri[256];	/* source: the destination; destination: where it listens */
	/*
	 * The settings (QMP migrate-set-capabilities / -parameters): stored
	 * atomically under the lock, read by the jobs without it
	 * (MIG_SETTING(), session-internal.h): max-bandwidth and
	 * downtime-limit apply while a migration runs.
	 */
	uint32_t caps; /* MIG_RECORD_CAP_* */
	uint32_t channels;
	uint64_t max_bandwidth, downtime_limit, reconnect_timeout;
	/* Written whole under the lock, read under it (never by the jobs: s->tls is built from it).
	 */
	struct mig_tls_params tls;
	/*
	 * Source: the round whose pages the round bitmaps hold (queued, not
	 * acknowledged).  Destination: rounds 0..rounds_landed-1 landed
	 * entirely (written atomically by the barrier, without the lock); the
	 * round bitmaps hold the pages landed since.
	 */
	uint64_t round;
	uint64_t rounds_landed;
	uint64_t final_round; /* source from PAUSED, destination from LOADED */
	uint64_t start_ns, setup_ns, pause_ns, end_ns; /* CLOCK_MONOTONIC, shared by processes */
	uint64_t downtime_ms;
	char error_desc[256];
	/* Last, so that appending one moves no other field. */
#define MIG_RECORD_COUNTER(name) uint64_t name;
	MIG_COUNTERS(MIG_RECORD_COUNTER)
#undef MIG_RECORD_COUNTER
};

/*
 * The layout of MIG_RECORD_VERSION.  A newer migrator must read its
 * predecessor's record to take a running session over, so a change of the
 * layout (a counter appended included) changes the version with it.
 */
#define MIG_RECORD_SIZE 18440
_Static_assert(sizeof(struct mig_record) == MIG_RECORD_SIZE &&
		       offsetof(struct mig_record, tls) == 400 &&
		       offsetof(struct mig_record, error_desc) == 18080 &&
		       offsetof(struct mig_record, rounds) == 18336,
	       "session record layout changed: bump MIG_RECORD_VERSION and MIG_RECORD_SIZE");

#define MIG_RECORD_CAP_MULTIFD	     0x1u
#define MIG_RECORD_CAP_EVENTS	     0x2u
#define MIG_RECORD_CAP_AUTO_CONVERGE 0x4u
#define MIG_RECORD_CAP_POSTCOPY_RAM  0x8u
/* Only a flag for query-migrate: cleave-vcpu measures the blocktime. */
#define MIG_RECORD_CAP_POSTCOPY_BLOCKTIME 0x10u

#define MIG_RECORD_PC_START 0x1u /* source: migrate-start-postcopy was asked */
/* migrate-pause: this side does not reconnect until migrate-recover / migrate resume. */
#define MIG_RECORD_PC_HELD 0x2u
/*
 * Destination: its guest runs and lacks the pages the ctl segment's dirty
 * bitmaps (the needed maps) still hold.  Outlives the migration's end: a
 * restarted migrator still lists them and refuses a new migration until
 * they came or the operator had them zero-filled.
 */
#define MIG_RECORD_PC_MISSING 0x4u

/*
 * The migrator's view: the record in @ctl's session area, initialised here
 * (the one initialiser, then *created is true) when the launcher's zeroed
 * area holds none yet.
 */
int mig_record_open(struct mig_record **out, struct shm_ctl *ctl, bool *created);
/*
 * The record lock is robust (a holder that dies is recovered from) and its
 * wait is bounded: a live holder that never lets go costs -ETIMEDOUT after
 * this long, never a wedged launcher or migrator.
 */
#define MIG_RECORD_LOCK_MS 2000
int mig_record_lock(struct mig_record *rec);
void mig_record_unlock(struct mig_record *rec);
void mig_record_set_receivedmap_live(struct mig_record *rec, bool live);
bool mig_record_receivedmap_live(struct mig_record *rec);
/* Records @phase (under the lock): the step it names may happen from now on. */
void mig_record_set_phase(struct mig_record *rec, enum mig_phase phase);
enum mig_phase mig_record_phase(struct mig_record *rec);

/* What ends a session whose migrator is given up, by the phase it recorded. */
struct mig_give_up {
	enum mig_status status; /* COMPLETED, FAILED, or UNKNOWN (the operator decides) */
	bool resume;		/* RESUME the guest: it is (or may be) paused by the migration */
	bool stop_logging;	/* a source: DIRTY_LOG off and THROTTLE 0 */
};

/* The one give-up table: a source before its commit fails and runs on, after it: unknown; a
 * destination committed completes and runs, any other fails. */
struct mig_give_up mig_record_give_up(enum mig_phase phase, enum mig_role role);

/*
 * For the launcher, once it gives up restarting the migrator: ends the
 * session the record in @ctl describes as mig_record_give_up() says and
 * fills @todo with what is left to tell vcpu-proc.  Returns 1 when a
 * session was running, 0 when there was none (or no record was ever
 * written), or a negative errno: -ETIMEDOUT when the record stays locked,
 * -EPROTO when it holds values the migrator never writes (then nothing is
 * done).
 */
int mig_record_abandon(struct shm_ctl *ctl, const char *reason, struct mig_give_up *todo);

#endif
