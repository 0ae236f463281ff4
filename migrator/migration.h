/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration engine: one session object per migrator process that runs
 * an outgoing (source) or incoming (destination) live migration over TCP,
 * one main connection plus N multifd page channels.  docs/MIGRATION.md has
 * the stream format, the state machine and the ordering rules.
 *
 * The VM is reached only through struct mig_vm_ops, so the engine runs the
 * same between two sets of memfds in one process (tests) as between two
 * cleave-vcpu processes (cleave-migrator implements the ops with RPCs).
 *
 * Lifetime: mig_session_alloc / mig_session_free.  Free stops whatever runs
 * (cancel, then joins every thread the session started) before it frees.
 * All other calls are thread-safe and never block on the network.
 */
#ifndef CLEAVE_MIGRATION_H
#define CLEAVE_MIGRATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrator/mig-limits.h"
#include "migrator/record.h" /* enum mig_status, enum mig_role, MIG_COUNTERS */
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"

#ifdef CLEAVE_FAULT_INJECTION
#include "migrator/test-hooks.h"
#endif

/* vcpu-proc run states the engine asks for: vcpu.proto's RunState values. */
#define MIG_RUN_STATE_INMIGRATE CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE

enum mig_pause_state {
	MIG_PAUSE_PAUSED = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED,
	MIG_PAUSE_FINISH_MIGRATE = CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE,
	MIG_PAUSE_POSTMIGRATE = CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE,
};

/*
 * The VM side.  Each returns 0 or a negative errno and may block (an RPC to
 * vcpu-proc).  Called from the session's worker thread only, never two at
 * once.  Source uses pause, resume, dirty_log, harvest, save_state,
 * throttle; the destination uses run_state, load_state and resume.
 */
/* A page of guest RAM: region index and page number within it. */
struct mig_page_ref {
	uint32_t region;
	uint64_t page;
};

/*
 * The destination's VM side of postcopy (docs/MIGRATION.md, "Postcopy"):
 * vcpu-proc owns the userfaultfd and installs every page the guest may see
 * (UFFDIO_COPY, atomic: a page already there is never overwritten); the
 * migrator never writes guest RAM once the guest may run.  Unlike the other
 * ops these are called from several engine threads at once.
 */
struct mig_postcopy_ops {
	/*
	 * The guest has not run.  Registers every region for faults: a first
	 * touch of a page set in @needed[region] waits until place() installs
	 * it (and is reported by wait_faults); any other page that is missing
	 * reads as zero (the engine punched the needed ones out first).  The
	 * VM keeps its own copy of @needed.  Idempotent (a restarted migrator).
	 */
	int (*listen)(void *arg, const uint64_t *const needed[]);
	/*
	 * Waits at most @timeout_ms for faults on needed pages not placed yet
	 * and fills @reqs (each fault once, until a restarted migrator asks
	 * again with @again); returns how many, 0 on timeout, or a negative
	 * errno.
	 */
	int (*wait_faults)(void *arg, struct mig_page_ref *reqs, unsigned int max, int timeout_ms,
			   bool again);
	/*
	 * Installs @nr pages from @page on of @region from @data (nr * page
	 * size bytes; NULL: zero pages) where still missing, and wakes whoever
	 * waits for them.  0 also when some were there already.
	 */
	int (*place)(void *arg, uint32_t region, uint64_t page, unsigned int nr, const void *data);
	/*
	 * Every needed page was placed: unregisters.  @abort: the guest never
	 * ran and the migration failed: unregisters whatever is missing.
	 */
	int (*end)(void *arg, bool abort);
};

struct mig_vm_ops {
	int (*pause)(void *arg, enum mig_pause_state state);
	int (*resume)(void *arg);
	int (*dirty_log)(void *arg, bool enable);
	/* ORs the pages written since the last harvest into the shm dirty bitmaps. */
	int (*harvest)(void *arg, uint64_t *dirty_pages);
	/* *blob is malloc()ed; the engine frees it. */
	int (*save_state)(void *arg, void **blob, size_t *len);
	int (*load_state)(void *arg, const void *blob, size_t len);
	int (*throttle)(void *arg, unsigned int percent);
	/* *state: a vcpu.proto RunState; the destination requires MIG_RUN_STATE_INMIGRATE. */
	int (*run_state)(void *arg, int *state);
	/* The destination's postcopy side; NULL: this VM cannot take postcopy (refused). */
	const struct mig_postcopy_ops *postcopy;
};

struct mig_event {
	const char *status; /* MIGRATION event, or NULL */
	uint64_t pass;	    /* MIGRATION_PASS event when status is NULL */
	/* With status: NULL for a status change, else "restarted", "disconnected", "resumed". */
	const char *detail;
	uint32_t restarts, resumes;
	uint64_t resent_bytes;
};

struct mig_tls;

/* What the session needs from its process; everything outlives the session. */
struct mig_env {
	struct shm_ctl *ctl;	/* dirty/received bitmaps and the session record */
	struct shm_region *ram; /* one per region of ctl's region table, mapped RW */
	const struct mig_vm_ops *ops;
	void *ops_arg;
	/* Called from any session thread; must not call back into the session. */
	void (*event)(void *arg, const struct mig_event *ev);
	void *event_arg;
	unsigned int io_timeout_ms; /* 0 = MIG_DEFAULT_IO_TIMEOUT_MS */
	/*
	 * The credentials cleave run gave (tls.h), or NULL.  A new record
	 * starts with them in use (tls-creds MIG_TLS_RUN_ID); QMP's tls-creds
	 * may name only them.  Without TLS in use, only loopback addresses
	 * are allowed unless @insecure_plaintext says so.
	 */
	const struct mig_tls *tls;
	/*
	 * Further credentials cleave run gave (--migrate-tls-creds), loaded
	 * like @tls: QMP's tls-creds objects may name them too, never in use
	 * until one does.
	 */
	const struct mig_tls *tls_more[MIG_TLS_MORE_MAX];
	unsigned int nr_tls_more;
	bool insecure_plaintext;
	/*
	 * migrate "file:PATH" saves only into this directory (its absolute
	 * path, NULL: none), reached through @snapshot_dirfd (-1: none), an
	 * open fd of it: files are created there by name, nothing else of
	 * the file system is needed.
	 */
	const char *snapshot_dir;
	int snapshot_dirfd;
	/* mig_now_ns() when the process started: a takeover's resume time counts from it. */
	uint64_t process_start_ns;
#ifdef CLEAVE_FAULT_INJECTION
	struct mig_hooks hooks; /* test-hooks.h; read through MIG_HOOK() */
#endif
};

struct mig_caps {
	bool multifd; /* off: one page channel */
	bool events;
	bool auto_converge;
	bool postcopy_ram;	 /* migrate-start-postcopy may switch the migration to postcopy */
	bool postcopy_blocktime; /* query-migrate shows the destination's vCPU blocktime */
};

struct mig_params {
	uint32_t multifd_channels;
	uint64_t max_bandwidth;	    /* bytes/s, 0 = unlimited */
	uint64_t downtime_limit;    /* ms */
	uint64_t reconnect_timeout; /* ms a lost peer is waited for; 0: fail at once */
};

/* A snapshot for query-migrate. */
struct mig_info {
#define MIG_INFO_COUNTER(name) uint64_t name;
	MIG_COUNTERS(MIG_INFO_COUNTER)
#undef MIG_INFO_COUNTER
	enum mig_status status;
	enum mig_role role;
	uint64_t total_time_ms; /* so far while running */
	uint64_t setup_time_ms;
	uint64_t downtime_ms;
	bool has_downtime;
	uint64_t expected_downtime_ms;
	bool has_expected_downtime;
	uint64_t remaining; /* dirty bytes not sent yet */
	uint64_t total;	    /* guest RAM bytes */
	uint64_t normal_bytes;
	double mbps;
	uint64_t dirty_pages_rate; /* pages/s in the last round */
	uint64_t page_size;
	uint64_t multifd_bytes;
	uint64_t epoch;
	uint8_t session_id[16];
	unsigned int throttle_percent;
	uint32_t restarts;
	bool postcopy_blocktime; /* the capability (the monitor reads cleave-vcpu's numbers) */
	char error_desc[256];
	/*
	 * Destination after a switch to postcopy: the pages its guest still
	 * lacks (they can only come from the source), and the first runs of
	 * them by guest physical address.
	 */
	uint64_t postcopy_missing;
	unsigned int nr_missing_runs;
	struct mig_page_run {
		uint64_t gpa, size; /* bytes */
	} missing_runs[MIG_INFO_MISSING_RUNS];
};

/* calc-dirty-rate (dirtyrate.c): QEMU's DirtyRateMeasureMode and DirtyRateStatus. */
enum mig_dirty_rate_mode {
	MIG_DIRTY_RATE_PAGE_SAMPLING,
	MIG_DIRTY_RATE_DIRTY_RING,
	MIG_DIRTY_RATE_DIRTY_BITMAP,
};

enum mig_dirty_rate_status {
	MIG_DIRTY_RATE_UNSTARTED,
	MIG_DIRTY_RATE_MEASURING,
	MIG_DIRTY_RATE_MEASURED,
};

/* query-dirty-rate: QEMU's DirtyRateInfo. */
struct mig_dirty_rate_info {
	enum mig_dirty_rate_status status;
	enum mig_dirty_rate_mode mode;
	int64_t start_time;    /* seconds of CLOCK_MONOTONIC, as QEMU's */
	int64_t calc_time;     /* seconds */
	uint64_t sample_pages; /* per GiB */
	bool has_dirty_rate;   /* measured */
	int64_t dirty_rate;    /* MB/s */
};

struct mig_session;

/* Reads (or creates) the session record in env->ctl's session area. */
int mig_session_alloc(struct mig_session **out, const struct mig_env *env);
/* Cancels what runs, joins every thread, frees.  NULL-safe. */
void mig_session_free(struct mig_session *s);
/*
 * A process that ends while a migration is unfinished (running, paused,
 * or a destination waiting for its source) leaves it to the next
 * migrator: true then, with the live counters checkpointed into the
 * record, and the caller exits at once without freeing the session
 * (freeing would cancel it, or wait for the end of a committed one).
 * False: nothing to hand over, free as usual.
 */
bool mig_session_hand_over(struct mig_session *s);

/*
 * A restarted migrator: takes over the session the record in the ctl
 * segment describes, if one was running (or listening), and continues it in
 * the background.  Returns 1 when it did, 0 when there was nothing to take
 * over (then the caller may start --incoming), or a negative errno.
 */
int mig_session_resume(struct mig_session *s);

/*
 * Starts an outgoing migration to "tcp:HOST:PORT", or a save to
 * "file:PATH" (save.c): PATH a file directly in env.snapshot_dir, else
 * -ENOTDIR (no directory), -EXDEV (elsewhere, or a hidden name),
 * -EOPNOTSUPP (QEMU's ",offset=").  -EBUSY while one runs;
 * -EPERM for plaintext to a non-loopback host (env.insecure_plaintext);
 * -EKEYREJECTED when the TLS credentials in use do not serve this end
 * (QEMU's endpoint); -ENOKEY when tls-creds is set but its context could
 * not be built (logged); -ENODATA while the guest lacks pages a postcopy
 * migration never brought (mig_session_postcopy_abandon()).
 */
int mig_session_migrate(struct mig_session *s, const char *uri);
/*
 * Listens on "tcp:HOST:PORT" (port 0: ephemeral, see _incoming_port) at once
 * and receives one incoming migration in the background; or restores from
 * "file:PATH" (load.c: PATH as for a save).  Errors as above.
 */
int mig_session_incoming(struct mig_session *s, const char *uri);
/* env.snapshot_dir, or "". */
const char *mig_session_snapshot_dir(const struct mig_session *s);
/* The bound TCP port of the incoming listener, or 0. */
unsigned int mig_session_incoming_port(struct mig_session *s);
/*
 * migrate_cancel: returns at once; succeeds when nothing runs.  -EBUSY in
 * postcopy: the guest runs at the destination, which still needs this
 * side's pages (or the source's), so nothing can be cancelled.
 */
int mig_session_cancel(struct mig_session *s);
/*
 * migrate-start-postcopy: the running outgoing migration switches to
 * postcopy at the end of its current round.  -ENOPROTOOPT without the
 * postcopy-ram capability, -ENOENT when no migration was started (QEMU's
 * two checks); 0 otherwise, also when it already finished (QEMU: racy).
 */
int mig_session_start_postcopy(struct mig_session *s);
/*
 * yank of the "migration" instance: cuts the running migration's
 * connections as a failed network would.  The migration then reconnects
 * within reconnect-timeout or fails.  -ENOENT when none runs.
 */
int mig_session_yank(struct mig_session *s);

/*
 * fd: URIs (QEMU's "fd:NAME", libvirt's tunnelled migration): @fd, a
 * connected stream socket, is handed to the session under @name (QMP
 * getfd), and the next migrate / migrate-incoming "fd:NAME" uses it as its
 * one connection, and closes it with the job.  The session owns @fd from
 * the call on (closed on error too).  An existing @name is replaced (its
 * fd closed), as QEMU's getfd does.  -EINVAL for a bad name (1..63 bytes,
 * no ':' or ','), -ENOSPC when MIG_FD_MAX fds are held.
 */
#define MIG_FD_MAX 16
int mig_session_fd_add(struct mig_session *s, const char *name, int fd);
/* QMP closefd: -ENOENT when no fd has @name. */
int mig_session_fd_close(struct mig_session *s, const char *name);
/*
 * In MIG_STATUS_UNKNOWN: the operator says where the guest runs.  Source:
 * resume it here (failed); otherwise: the destination has it (completed).
 * -EINVAL in any other status.
 */
int mig_session_resolve(struct mig_session *s, bool run_on_source);
/*
 * A postcopy source whose destination is gone for good (postcopy-paused,
 * which after the commit has no deadline): the operator gives up, without
 * @zero_fill; the source ends in MIG_STATUS_UNKNOWN, its guest paused,
 * and mig_session_resolve() decides.
 *
 * A postcopy destination whose source is gone for good (postcopy-paused):
 * the operator gives up on the pages still missing.  The migration fails
 * with their count.  Without @zero_fill a vCPU that touches one waits for
 * good (nothing reads a page that never came); with it each becomes a
 * zero page, the guest runs on without their contents.  After such a
 * failure (also in a migrator started since) the pages stay missing and
 * no new migration starts; @zero_fill then fills them at once (-errno if
 * that fails: they stay missing).  -EINVAL in any other status or role.
 */
int mig_session_postcopy_abandon(struct mig_session *s, bool zero_fill);
/*
 * QEMU's postcopy recovery commands (docs/MIGRATION.md, "Pause and
 * recover").  Without them a postcopy migration that lost its peer
 * reconnects by itself; these hold it and move it.
 *
 * migrate-pause, either side, only in postcopy-active (else -EINVAL): cuts
 * the connections and holds this side in postcopy-paused, across a
 * migrator restart too: it does not reconnect until released below.
 */
int mig_session_pause(struct mig_session *s);
/*
 * migrate-recover, a destination in postcopy-paused only (else -EINVAL):
 * listens at @uri from now on (the same URI keeps its listener) and
 * releases a pause.  @uri passes migrate-incoming's checks (errors as
 * mig_session_incoming's, @err empty); one it cannot listen at fails with
 * @err filled.
 */
int mig_session_recover(struct mig_session *s, const char *uri, char *err, size_t errlen);
/*
 * migrate {resume: true}, a source in postcopy-paused only (else -ESRCH):
 * reconnects to @uri from now on and releases a pause.  @uri passes
 * migrate's checks (errors as mig_session_migrate's); an fd: migration
 * resumes only on its own URI (else -EINVAL).
 */
int mig_session_migrate_resume(struct mig_session *s, const char *uri);
/* Waits until the session is in a final state (or UNKNOWN); -ETIMEDOUT otherwise. */
int mig_session_wait(struct mig_session *s, int timeout_ms);

void mig_session_query(struct mig_session *s, struct mig_info *info);
void mig_session_get_caps(struct mig_session *s, struct mig_caps *caps);
int mig_session_set_caps(struct mig_session *s, const struct mig_caps *caps);
void mig_session_get_params(struct mig_session *s, struct mig_params *params);
/* -EINVAL for values outside migrator/mig-limits.h, -EBUSY while running. */
int mig_session_set_params(struct mig_session *s, const struct mig_params *params);
/* @p: cleave run's credentials as a new record starts with them; -ENOENT when none were given. */
int mig_session_tls_preset(struct mig_session *s, struct mig_tls_params *p);
/* The TLS settings (tls-creds, tls-hostname, tls-authz) as the record keeps them. */
void mig_session_get_tls(struct mig_session *s, struct mig_tls_params *p);
/*
 * Sets them, for the next migration: -EBUSY while one runs or a
 * destination listens; -ENOENT (with @err) when tls-creds names
 * credentials other than env.tls's (the sandbox cannot read them), -EINVAL
 * for a malformed @p.  Nothing changes on an error.
 */
int mig_session_set_tls(struct mig_session *s, const struct mig_tls_params *p, char *err,
			size_t errlen);

/*
 * calc-dirty-rate: starts a measurement in the background.  QEMU 7.2's
 * checks with its texts in @err: -EBUSY one is measuring, -ERANGE
 * calc-time (1..60 s) or sample-pages (128..16384), -EINVAL sample-pages
 * with dirty-ring, -EOPNOTSUPP dirty-ring (cleave logs in bitmaps); and
 * -EBUSY for dirty-bitmap while a migration runs or the bitmaps hold the
 * pages a postcopy never brought.
 */
int mig_dirty_rate_start(struct mig_session *s, int64_t calc_time, bool has_sample_pages,
			 int64_t sample_pages, enum mig_dirty_rate_mode mode, char *err,
			 size_t errlen);
void mig_dirty_rate_query(struct mig_session *s, struct mig_dirty_rate_info *info);
const char *mig_dirty_rate_mode_name(enum mig_dirty_rate_mode m);
const char *mig_dirty_rate_status_name(enum mig_dirty_rate_status st);
/* QEMU's name of a mode -> the mode; -EINVAL for another name. */
int mig_dirty_rate_mode_parse(const char *name, enum mig_dirty_rate_mode *m);

const char *mig_status_name(enum mig_status status);
/* The engine's clock: CLOCK_MONOTONIC in ns (the same in every process). */
uint64_t mig_now_ns(void);

#endif
