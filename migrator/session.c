/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The session object: state machine, parameters, stats and events.  It owns
 * at most one job (source or destination) and the worker thread running
 * it; a finished job is joined and freed when the next one starts or when
 * the session is freed.  There is no global pointer to a session.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"

static const char *const status_names[] = {
	[MIG_STATUS_NONE] = "",
	[MIG_STATUS_SETUP] = "setup",
	[MIG_STATUS_ACTIVE] = "active",
	[MIG_STATUS_DEVICE] = "device",
	[MIG_STATUS_CANCELLING] = "cancelling",
	[MIG_STATUS_CANCELLED] = "cancelled",
	[MIG_STATUS_COMPLETED] = "completed",
	[MIG_STATUS_FAILED] = "failed",
	[MIG_STATUS_UNKNOWN] = "x-switchover-unknown",
	[MIG_STATUS_POSTCOPY_ACTIVE] = "postcopy-active",
	[MIG_STATUS_POSTCOPY_PAUSED] = "postcopy-paused",
};

const char *mig_status_name(enum mig_status status)
{
	return (unsigned int)status <= MIG_STATUS_LAST ? status_names[status] : "?";
}

static uint64_t clock_ns(clockid_t clock)
{
	struct timespec ts;

	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t mig_now_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

void mig_deadline_after_ms(struct timespec *ts, unsigned int ms)
{
	clock_gettime(CLOCK_REALTIME, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

uint64_t mig_thread_cpu_ns(void)
{
	return clock_ns(CLOCK_THREAD_CPUTIME_ID);
}

static bool status_running(enum mig_status st)
{
	return st == MIG_STATUS_SETUP || st == MIG_STATUS_ACTIVE || st == MIG_STATUS_DEVICE ||
	       st == MIG_STATUS_CANCELLING || st == MIG_STATUS_POSTCOPY_ACTIVE ||
	       st == MIG_STATUS_POSTCOPY_PAUSED;
}

bool mig_err_retriable(int err)
{
	switch (err) {
	case -ECONNRESET:
	case -ECONNREFUSED:
	case -ECONNABORTED:
	case -EPIPE:
	case -ETIMEDOUT:
	case -ENOTCONN:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -ENETDOWN:
	case -EAGAIN:
		return true;
	default:
		return false;
	}
}

/*
 * The record is the session's one store.  Its lock is bounded (record.h): a
 * holder that stays alive past MIG_RECORD_LOCK_MS, which no migrator thread
 * does, costs a logged access without it rather than a wedged session, as
 * mig_record_set_phase() does.  Lock order: s->lock, then this one.
 */
static bool rec_lock(struct mig_session *s)
{
	if (!mig_record_lock(s->rec))
		return true;
	log_warn("session record: lock not taken within %d ms; going on without it",
		 MIG_RECORD_LOCK_MS);
	return false;
}

static void rec_unlock(struct mig_session *s, bool locked)
{
	if (locked)
		mig_record_unlock(s->rec);
}

/* Caller holds rec->lock: the live counters' checkpoint. */
static void rec_store_counters(struct mig_session *s)
{
#define COUNTER_TO_RECORD(name) s->rec->name = atomic_load(&s->ctr.name);
	MIG_COUNTERS(COUNTER_TO_RECORD)
#undef COUNTER_TO_RECORD
}

void mig_session_transferred(struct mig_session *s, uint64_t bytes)
{
	bool locked;

	atomic_fetch_add(&s->ctr.transferred, bytes);
	if (!atomic_load_explicit(&s->streak_open, memory_order_relaxed) ||
	    !atomic_exchange(&s->streak_open, false))
		return;
	/* The first data this process moved since it took over: it is no crash loop. */
	locked = rec_lock(s);
	s->rec->restart_streak = 0;
	rec_unlock(s, locked);
}

/* Caller holds rec->lock: a restarted migrator goes on counting from the checkpoint. */
static void rec_load_counters(struct mig_session *s)
{
#define COUNTER_FROM_RECORD(name) atomic_store(&s->ctr.name, s->rec->name);
	MIG_COUNTERS(COUNTER_FROM_RECORD)
#undef COUNTER_FROM_RECORD
}

/* Caller holds s->lock: the slot of the fd held as @name, or -1. */
static int fd_find(const struct mig_session *s, const char *name)
{
	for (int i = 0; i < MIG_FD_MAX; i++)
		if (s->fds[i].name[0] && !strcmp(s->fds[i].name, name))
			return i;
	return -1;
}

int mig_session_fd_take(struct mig_session *s, const char *name)
{
	int i = fd_find(s, name), fd;

	if (i < 0) {
		log_err("fd:%s: no fd of that name was handed over (getfd)", name);
		return -ENOENT;
	}
	fd = s->fds[i].fd;
	s->fds[i].name[0] = '\0';
	s->fds[i].fd = -1;
	return fd;
}

/* Caller holds s->lock. */
static enum mig_status session_status(struct mig_session *s, enum mig_role *role)
{
	bool locked = rec_lock(s);
	enum mig_status st = s->rec->status;

	if (role)
		*role = s->rec->role;
	rec_unlock(s, locked);
	return st;
}

/* Caller holds s->lock and rec->lock. */
static void rec_set_error(struct mig_session *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void rec_set_error(struct mig_session *s, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(s->rec->error_desc, sizeof(s->rec->error_desc), fmt, ap);
	va_end(ap);
}

void mig_session_record_sync(struct mig_session *s)
{
	bool locked = rec_lock(s);

	rec_store_counters(s);
	rec_unlock(s, locked);
}

void mig_session_id(struct mig_session *s, uint8_t id[16], uint64_t *epoch, bool bump)
{
	bool locked = rec_lock(s);

	if (bump)
		s->rec->epoch++;
	memcpy(id, s->rec->session_id, sizeof(s->rec->session_id));
	if (epoch)
		*epoch = s->rec->epoch;
	rec_unlock(s, locked);
}

void mig_session_set_id(struct mig_session *s, const uint8_t *id, uint64_t epoch)
{
	bool locked = rec_lock(s);

	if (id)
		memcpy(s->rec->session_id, id, sizeof(s->rec->session_id));
	s->rec->epoch = epoch;
	rec_store_counters(s);
	rec_unlock(s, locked);
}

/* Caller holds s->lock: a new job starts from "none", without an event. */
static void status_reset_locked(struct mig_session *s)
{
	bool locked = rec_lock(s);

	s->rec->status = MIG_STATUS_NONE;
	rec_unlock(s, locked);
}

/* Caller holds s->lock: events leave in the order of the changes. */
static void set_status_locked(struct mig_session *s, enum mig_status status)
{
	struct mig_event ev = {.status = mig_status_name(status)};
	bool locked = rec_lock(s), events;
	enum mig_status old = s->rec->status;

	if (old != status) {
		s->rec->status = status;
		rec_store_counters(s);
	}
	events = s->rec->caps & MIG_RECORD_CAP_EVENTS;
	rec_unlock(s, locked);
	if (old == status)
		return;
	log_debug("migration status: %s -> %s", mig_status_name(old), ev.status);
	pthread_cond_broadcast(&s->cond);
	if (events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
}

void mig_session_set_status(struct mig_session *s, enum mig_status status)
{
	enum mig_status old;
	bool locked;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	old = s->rec->status;
	/* The destination's clock starts when the source connects, not at listen. */
	if (status == MIG_STATUS_SETUP && s->rec->role == MIG_ROLE_DEST)
		s->rec->start_ns = mig_now_ns();
	rec_unlock(s, locked);
	/* A cancel in flight keeps "cancelling" until the job finishes. */
	if (old != MIG_STATUS_CANCELLING)
		set_status_locked(s, status);
	locked = rec_lock(s);
	if (status == MIG_STATUS_ACTIVE && !s->rec->setup_ns)
		s->rec->setup_ns = mig_now_ns();
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_detail_event(struct mig_session *s, const char *detail)
{
	struct mig_event ev = {.detail = detail};
	bool locked, events;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	ev.status = mig_status_name(s->rec->status);
	ev.restarts = s->rec->restarts;
	events = s->rec->caps & MIG_RECORD_CAP_EVENTS;
	rec_store_counters(s);
	rec_unlock(s, locked);
	ev.resumes = (uint32_t)atomic_load(&s->ctr.resumes);
	ev.resent_bytes = atomic_load(&s->ctr.resent_bytes);
	log_info("migration %s: %u restarts, %u resumes, %llu bytes resent (last resume %llu ms)",
		 detail, ev.restarts, ev.resumes, (unsigned long long)ev.resent_bytes,
		 (unsigned long long)atomic_load(&s->ctr.resume_time_ms));
	if (events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_unknown(struct mig_session *s, const char *reason)
{
	bool locked;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	s->rec->end_ns = mig_now_ns();
	rec_set_error(s,
		      "switchover outcome unknown: %s; the guest stays paused here until "
		      "x-cleave-migrate-resolve says where it runs",
		      reason);
	log_err("migration: %s", s->rec->error_desc);
	rec_unlock(s, locked);
	set_status_locked(s, MIG_STATUS_UNKNOWN);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_pass_event(struct mig_session *s, uint64_t pass)
{
	struct mig_event ev = {.pass = pass};
	bool locked, events;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	events = s->rec->caps & MIG_RECORD_CAP_EVENTS;
	rec_store_counters(s);
	rec_unlock(s, locked);
	if (events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_finish(struct mig_session *s, int err, const char *reason)
{
	bool locked;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	s->rec->end_ns = mig_now_ns();
	if (err) {
		rec_set_error(s, "%s", reason ? reason : strerror(-err));
		log_err("migration %s: %s", s->cancel_requested ? "cancelled" : "failed",
			s->rec->error_desc);
	}
	rec_unlock(s, locked);
	if (!err)
		set_status_locked(s, MIG_STATUS_COMPLETED);
	else
		set_status_locked(s,
				  s->cancel_requested ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED);
	mig_session_record_sync(s);
	pthread_mutex_unlock(&s->lock);
}

/*
 * Caller holds rec->lock: the settings a process starts with.  A record of
 * no session keeps none of a previous process's (as if it were fresh).
 */
static void rec_settings_default(struct mig_record *rec)
{
	__atomic_store_n(&rec->caps, 0u, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->channels, (uint32_t)MIG_DEFAULT_CHANNELS, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->max_bandwidth, (uint64_t)MIG_DEFAULT_MAX_BANDWIDTH,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&rec->downtime_limit, (uint64_t)MIG_DEFAULT_DOWNTIME_MS, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->reconnect_timeout, (uint64_t)MIG_DEFAULT_RECONNECT_MS,
			 __ATOMIC_RELAXED);
}

/* "/a//b/" -> "/a/b": paths compare as cleave run wrote them (absolute, resolved). */
static void tls_path_normalize(const char *in, char *out, size_t len)
{
	size_t n = 0;

	for (; *in && n + 1 < len; in++)
		if (*in != '/' || !n || out[n - 1] != '/')
			out[n++] = *in;
	while (n > 1 && out[n - 1] == '/')
		n--;
	out[n] = '\0';
}

/* The credentials cleave run gave that @p names (path and kind), or NULL. */
static const struct mig_tls *session_tls_given(const struct mig_session *s,
					       const struct mig_tls_params *p)
{
	char want[MIG_TLS_PATH_LEN], have[MIG_TLS_PATH_LEN];
	bool psk = p->kind == MIG_TLS_PSK;

	tls_path_normalize(p->path, want, sizeof(want));
	for (unsigned int i = 0; i <= s->env.nr_tls_more; i++) {
		const struct mig_tls *t = i ? s->env.tls_more[i - 1] : s->env.tls;

		if (!t)
			continue;
		tls_path_normalize(mig_tls_path(t), have, sizeof(have));
		if (!strcmp(want, have) && psk == !strcmp(mig_tls_kind(t), "psk"))
			return t;
	}
	return NULL;
}

/*
 * The context @p asks for, on credentials cleave run gave (the only ones
 * the sandbox let this process read, before its filter went in).  *out
 * NULL: no TLS.
 */
static int session_tls_build(struct mig_session *s, const struct mig_tls_params *p,
			     struct mig_tls **out, char *err, size_t errlen)
{
	const struct mig_tls *base;
	char want[MIG_TLS_PATH_LEN];
	bool psk = p->kind == MIG_TLS_PSK;

	*out = NULL;
	if (!p->creds[0])
		return 0;
	if ((p->kind != MIG_TLS_X509 && p->kind != MIG_TLS_PSK) || !p->endpoints ||
	    p->endpoints & ~(MIG_TLS_END_CLIENT | MIG_TLS_END_SERVER)) {
		snprintf(err, errlen, "TLS credentials '%s': bad kind or endpoint", p->creds);
		return -EINVAL;
	}
	base = session_tls_given(s, p);
	if (!base) {
		tls_path_normalize(p->path, want, sizeof(want));
		snprintf(err, errlen,
			 "TLS credentials %s '%s' was not given to cleave run (%s or "
			 "--migrate-tls-creds): the migrator's sandbox cannot read it%s%s%s",
			 psk ? "file" : "directory", want,
			 psk ? "--migrate-tls-psk" : "--migrate-tls-x509",
			 s->env.tls ? " (cleave run was given '" : "",
			 s->env.tls ? mig_tls_path(s->env.tls) : "", s->env.tls ? "')" : "");
		return -ENOENT;
	}
	return mig_tls_derive(out, base, p, err, errlen);
}

/* The record's strings end within their fields (a record is also read after a restart). */
static bool tls_params_valid(const struct mig_tls_params *p)
{
	if (!memchr(p->creds, 0, sizeof(p->creds)) ||
	    !memchr(p->hostname, 0, sizeof(p->hostname)) ||
	    !memchr(p->authz, 0, sizeof(p->authz)) || !memchr(p->path, 0, sizeof(p->path)) ||
	    !memchr(p->username, 0, sizeof(p->username)) || p->nr_rules > MIG_TLS_MAX_RULES)
		return false;
	for (uint32_t i = 0; i < p->nr_rules; i++)
		if (!memchr(p->rules[i].match, 0, sizeof(p->rules[i].match)))
			return false;
	return true;
}

int mig_session_alloc(struct mig_session **out, const struct mig_env *env)
{
	struct mig_session *s;
	bool locked, created;
	char err[512] = "";
	int ret;

	if (!env->ctl || !env->ctl->hdr || !env->ram || !env->ops || !env->ops->run_state)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->env = *env;
	s->io_timeout_ms = env->io_timeout_ms ? env->io_timeout_ms : MIG_DEFAULT_IO_TIMEOUT_MS;
	ret = mig_record_open(&s->rec, env->ctl, &created);
	if (ret)
		goto err_free;
	locked = rec_lock(s);
	/* A restarted migrator keeps the settings of the moment, TLS's included. */
	if (created) {
		rec_settings_default(s->rec);
		if (env->tls)
			mig_tls_preset(env->tls,
				       &s->rec->tls); /* cleave run's: in use from the start */
	}
	if (!tls_params_valid(&s->rec->tls)) {
		log_err("session record: TLS settings malformed; tls-creds cleared");
		memset(&s->rec->tls, 0, sizeof(s->rec->tls));
	}
	ret = session_tls_build(s, &s->rec->tls, &s->tls, err, sizeof(err));
	if (ret) {
		/* Kept, and refused by migrate: never plaintext in their place. */
		log_err("tls-creds '%s': %s", s->rec->tls.creds, err[0] ? err : strerror(-ret));
		s->tls_broken = true;
	}
	rec_unlock(s, locked);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	mig_dirty_rate_init(&s->dr);
	*out = s;
	return 0;
err_free:
	free(s);
	return ret;
}

/* Joins a finished worker and frees its job; the caller holds no lock. */
static void session_reap(struct mig_session *s)
{
	struct mig_job *job;
	bool live;

	pthread_mutex_lock(&s->lock);
	live = s->worker_live;
	job = s->job;
	s->worker_live = false;
	s->job = NULL;
	pthread_mutex_unlock(&s->lock);
	/*
	 * A finished destination may still answer a reconnecting source.  A
	 * committed source refuses a cancel; it may wait for its destination
	 * for good (postcopy), so it is given up: x-switchover-unknown.
	 */
	if (job && !mig_job_cancel(job, "stopped"))
		mig_job_give_up(job, "stopped");
	if (live)
		pthread_join(s->worker, NULL);
	mig_job_free(job);
}

/* Caller holds s->lock: starts @job's worker, or frees @job. */
static int session_start_job(struct mig_session *s, struct mig_job *job)
{
	int ret = -pthread_create(&s->worker, NULL, job->ops->run, job);

	if (ret) {
		mig_job_free(job);
		return ret;
	}
	s->job = job;
	s->worker_live = true;
	return 0;
}

void mig_session_free(struct mig_session *s)
{
	if (!s)
		return;
	mig_dirty_rate_fini(&s->dr); /* first: it may release the dirty bitmaps */
	mig_session_cancel(s);
	session_reap(s);
	mig_tls_free(s->tls);
	for (unsigned int i = 0; i < MIG_FD_MAX; i++)
		if (s->fds[i].name[0])
			close(s->fds[i].fd);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

void mig_session_set_missing(struct mig_session *s, bool missing)
{
	if (missing)
		__atomic_fetch_or(&s->rec->postcopy_flags, MIG_RECORD_PC_MISSING, __ATOMIC_RELEASE);
	else
		__atomic_fetch_and(&s->rec->postcopy_flags, ~MIG_RECORD_PC_MISSING,
				   __ATOMIC_RELEASE);
}

bool mig_session_missing(struct mig_session *s)
{
	return __atomic_load_n(&s->rec->postcopy_flags, __ATOMIC_ACQUIRE) & MIG_RECORD_PC_MISSING;
}

/* Caller holds s->lock; nothing runs. */
static void job_reset_locked(struct mig_session *s, enum mig_role role)
{
	struct mig_record *rec = s->rec;
	bool locked;

	memset(&s->ctr, 0, sizeof(s->ctr));
	s->cancel_requested = false;
	s->incoming_port = 0;
	s->resuming = false;
	locked = rec_lock(s);
	rec->role = role;
	rec->error_desc[0] = '\0';
	rec->start_ns = mig_now_ns();
	rec->setup_ns = rec->end_ns = rec->downtime_ms = 0;
	rec->has_downtime = 0;
	rec->restarts = 0;
	rec->restart_streak = 0;
	__atomic_store_n(&rec->postcopy_flags, 0u, __ATOMIC_RELAXED);
	rec->epoch++;
	if (getrandom(rec->session_id, sizeof(rec->session_id), 0) != sizeof(rec->session_id))
		memset(rec->session_id, 0, sizeof(rec->session_id));
	rec_store_counters(s);
	rec_unlock(s, locked);
}

static bool session_busy(struct mig_session *s)
{
	enum mig_status st;
	enum mig_role role;
	bool busy;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	busy = status_running(st) || st == MIG_STATUS_UNKNOWN ||
	       (s->job && role == MIG_ROLE_DEST && st == MIG_STATUS_NONE);
	pthread_mutex_unlock(&s->lock);
	return busy;
}

/*
 * Caller holds s->lock.  TLS is used iff tls-creds is set (QEMU's rule),
 * with credentials for this end; plaintext leaves the host only when the
 * operator said so (docs/MIGRATION.md).
 */
static int session_may_use(const struct mig_session *s, const char *uri, enum mig_role role)
{
	char host[256], name[NAME_MAX + 1];

	/* A save stays on this host: no TLS, no address. */
	if (mig_uri_is_file(uri))
		return mig_snapshot_name(&s->env, uri, name, sizeof(name));
	if (mig_uri_is_fd(uri) && fd_find(s, uri + 3) < 0) {
		log_err("%s: no fd of that name was handed over (getfd)", uri);
		return -ENOENT;
	}
	if (s->tls_broken)
		return -ENOKEY;
	if (s->tls)
		return mig_tls_serves(s->tls, role == MIG_ROLE_DEST) ? 0 : -EKEYREJECTED;
	/*
	 * A URI that does not parse is refused later, with -EINVAL.  unix: and
	 * fd: have no host: the fd's giver (libvirt) chose its peer and its
	 * transport, as QEMU trusts it to.
	 */
	if (mig_uri_host(uri, host, sizeof(host)))
		return 0;
	return s->env.insecure_plaintext || mig_uri_is_loopback(uri) ? 0 : -EPERM;
}

/* Caller holds s->lock: the job has not reached a final state (or UNKNOWN). */
static bool session_unfinished(struct mig_session *s)
{
	enum mig_role role;
	enum mig_status st = session_status(s, &role);

	return status_running(st) || (s->job && role == MIG_ROLE_DEST && st == MIG_STATUS_NONE);
}

bool mig_session_hand_over(struct mig_session *s)
{
	bool unfinished;

	pthread_mutex_lock(&s->lock);
	unfinished = session_unfinished(s);
	if (unfinished)
		mig_session_record_sync(s);
	pthread_mutex_unlock(&s->lock);
	return unfinished;
}

int mig_session_bitmaps_claim(struct mig_session *s)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	if (s->bitmaps_measuring || session_unfinished(s) ||
	    session_status(s, NULL) == MIG_STATUS_UNKNOWN)
		ret = -EBUSY;
	else if (mig_session_missing(s))
		ret = -ENODATA; /* the dirty bitmaps are the needed maps */
	else
		s->bitmaps_measuring = true;
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void mig_session_bitmaps_release(struct mig_session *s)
{
	pthread_mutex_lock(&s->lock);
	s->bitmaps_measuring = false;
	pthread_mutex_unlock(&s->lock);
}

/* Checks, reaps the last job, resets for a new one of @role: on 0 the caller holds s->lock. */
static int session_begin(struct mig_session *s, const char *uri, enum mig_role role)
{
	int ret;

	if (session_busy(s))
		return -EBUSY;
	session_reap(s);
	pthread_mutex_lock(&s->lock);
	/*
	 * A guest that lacks pages postcopy never brought: a source would send
	 * their holes as zeros, a destination would lose the list of them.
	 */
	if (mig_session_missing(s)) {
		pthread_mutex_unlock(&s->lock);
		return -ENODATA;
	}
	/* A source (or a save) logs dirty pages in the bitmaps a measurement holds. */
	if (role == MIG_ROLE_SOURCE && s->bitmaps_measuring) {
		pthread_mutex_unlock(&s->lock);
		return -EALREADY;
	}
	ret = session_may_use(s, uri, role);
	if (ret) {
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	job_reset_locked(s, role);
	return 0;
}

int mig_session_migrate(struct mig_session *s, const char *uri)
{
	struct mig_job *job;
	int ret = session_begin(s, uri, MIG_ROLE_SOURCE);

	if (ret)
		return ret;
	ret = mig_uri_is_file(uri) ? mig_save_alloc(&job, s, uri) : mig_src_alloc(&job, s, uri);
	if (ret)
		goto err_unlock;
	status_reset_locked(s);
	set_status_locked(s, MIG_STATUS_SETUP);
	ret = session_start_job(s, job);
	if (ret)
		set_status_locked(s, MIG_STATUS_FAILED);
err_unlock:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_incoming(struct mig_session *s, const char *uri)
{
	struct mig_job *job;
	unsigned int port;
	int ret = session_begin(s, uri, MIG_ROLE_DEST);

	if (ret)
		return ret;
	port = 0;
	ret = mig_uri_is_file(uri) ? mig_load_alloc(&job, s, uri)
				   : mig_dst_alloc(&job, s, uri, &port);
	if (ret)
		goto err_unlock;
	status_reset_locked(s);
	ret = session_start_job(s, job);
	if (!ret)
		s->incoming_port = port;
err_unlock:
	pthread_mutex_unlock(&s->lock);
	return ret;
}

const char *mig_session_snapshot_dir(const struct mig_session *s)
{
	return s->env.snapshot_dir ? s->env.snapshot_dir : "";
}

unsigned int mig_session_incoming_port(struct mig_session *s)
{
	unsigned int port;

	pthread_mutex_lock(&s->lock);
	port = s->incoming_port;
	pthread_mutex_unlock(&s->lock);
	return port;
}

int mig_session_cancel(struct mig_session *s)
{
	enum mig_status st;
	enum mig_role role;
	bool dest;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	if (st == MIG_STATUS_POSTCOPY_ACTIVE || st == MIG_STATUS_POSTCOPY_PAUSED) {
		pthread_mutex_unlock(&s->lock);
		return -EBUSY;
	}
	dest = role == MIG_ROLE_DEST;
	/* A destination still listening (status none) can be cancelled too. */
	if (s->job && (status_running(st) || (dest && st == MIG_STATUS_NONE)) &&
	    /* After the commit the guest belongs to the destination: nothing to cancel. */
	    mig_job_cancel(s->job, dest ? "incoming migration cancelled" : "migration cancelled")) {
		s->cancel_requested = true;
		if (st != MIG_STATUS_NONE)
			set_status_locked(s, MIG_STATUS_CANCELLING);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int mig_session_start_postcopy(struct mig_session *s)
{
	enum mig_status st;
	enum mig_role role;
	bool locked;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	locked = rec_lock(s);
	if (!(s->rec->caps & MIG_RECORD_CAP_POSTCOPY_RAM))
		ret = -ENOPROTOOPT;
	else if (st == MIG_STATUS_NONE || role != MIG_ROLE_SOURCE)
		ret = -ENOENT;
	else
		__atomic_fetch_or(&s->rec->postcopy_flags, MIG_RECORD_PC_START, __ATOMIC_RELEASE);
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_yank(struct mig_session *s)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&s->lock);
	if (s->job && session_unfinished(s)) {
		mig_job_abort(s->job, -ECONNABORTED, "connection yanked");
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_fd_add(struct mig_session *s, const char *name, int fd)
{
	int type = 0, old = -1, i, ret = 0;
	socklen_t len = sizeof(type);

	if (!mig_fd_name_valid(name)) {
		close(fd);
		return -EINVAL;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_STREAM) {
		log_err("fd:%s: not a stream socket", name);
		close(fd);
		return -ENOTSOCK;
	}
	pthread_mutex_lock(&s->lock);
	i = fd_find(s, name);
	if (i >= 0) {
		old = s->fds[i].fd; /* replaced, as QEMU's getfd does */
	} else {
		for (i = 0; i < MIG_FD_MAX && s->fds[i].name[0]; i++)
			;
		if (i == MIG_FD_MAX)
			ret = -ENOSPC;
		else
			snprintf(s->fds[i].name, sizeof(s->fds[i].name), "%s", name);
	}
	if (!ret)
		s->fds[i].fd = fd;
	pthread_mutex_unlock(&s->lock);
	if (ret)
		close(fd);
	if (old >= 0)
		close(old);
	return ret;
}

int mig_session_fd_close(struct mig_session *s, const char *name)
{
	int fd;

	pthread_mutex_lock(&s->lock);
	fd = fd_find(s, name) >= 0 ? mig_session_fd_take(s, name) : -ENOENT;
	pthread_mutex_unlock(&s->lock);
	if (fd < 0)
		return fd;
	close(fd);
	return 0;
}

int mig_session_wait(struct mig_session *s, int timeout_ms)
{
	struct timespec ts;
	int ret = 0;

	mig_deadline_after_ms(&ts, (unsigned int)timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (!ret && session_unfinished(s))
		ret = -pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* query-migrate: the record (under its lock) and the live counters. */
/*
 * The pages a postcopy destination lacks, from a copy of its needed maps
 * (the placing threads clear bits meanwhile): the count, the first runs.
 */
static void missing_runs(struct mig_session *s, struct mig_info *info)
{
	const struct shm_ctl_header *h = s->env.ctl->hdr;

	for (uint32_t r = 0; r < h->nr_regions; r++) {
		const uint64_t *needed = shm_ctl_dirty_bitmap(s->env.ctl, r);
		uint64_t nbits = h->regions[r].nr_pages, words = SHM_BITMAP_WORDS(nbits), p = 0;
		uint64_t *map = calloc(words ?: 1, sizeof(*map));

		if (!map)
			return;
		for (uint64_t w = 0; w < words; w++)
			map[w] = __atomic_load_n(&needed[w], __ATOMIC_RELAXED);
		while ((p = shm_bitmap_find_next(map, nbits, p)) < nbits) {
			uint64_t e = shm_bitmap_find_next_zero(map, nbits, p);

			info->postcopy_missing += e - p;
			if (info->nr_missing_runs < MIG_INFO_MISSING_RUNS)
				info->missing_runs[info->nr_missing_runs++] = (struct mig_page_run){
					.gpa = h->regions[r].gpa + (p << SHM_PAGE_SHIFT),
					.size = (e - p) << SHM_PAGE_SHIFT,
				};
			p = e;
		}
		free(map);
	}
}

void mig_session_query(struct mig_session *s, struct mig_info *info)
{
	const struct mig_record *rec = s->rec;
	uint64_t end, secs_ns;
	bool locked;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	info->status = rec->status;
	info->role = rec->role;
#define COUNTER_TO_INFO(name) info->name = atomic_load(&s->ctr.name);
	MIG_COUNTERS(COUNTER_TO_INFO)
#undef COUNTER_TO_INFO
	if (rec->status != MIG_STATUS_NONE) {
		end = rec->end_ns ? rec->end_ns : mig_now_ns();
		info->total_time_ms = (end - rec->start_ns) / 1000000;
		info->setup_time_ms = rec->setup_ns ? (rec->setup_ns - rec->start_ns) / 1000000 : 0;
		secs_ns = end - rec->start_ns;
		info->mbps = secs_ns ? (double)info->transferred * 8e3 / (double)secs_ns : 0;
	}
	info->downtime_ms = rec->downtime_ms;
	info->has_downtime = rec->has_downtime;
	info->has_expected_downtime = rec->role == MIG_ROLE_SOURCE && status_running(rec->status);
	info->throttle_percent = rec->throttle;
	info->epoch = rec->epoch;
	info->restarts = rec->restarts;
	info->postcopy_blocktime = rec->caps & MIG_RECORD_CAP_POSTCOPY_BLOCKTIME;
	memcpy(info->session_id, rec->session_id, sizeof(info->session_id));
	snprintf(info->error_desc, sizeof(info->error_desc), "%s", rec->error_desc);
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
	info->expected_downtime_ms = atomic_load(&s->ctr.expected_downtime_ms);
	info->remaining = atomic_load(&s->ctr.remaining);
	info->total = s->env.ctl->hdr->ram_size;
	info->normal_bytes = info->normal * SHM_PAGE_SIZE;
	info->dirty_pages_rate = atomic_load(&s->ctr.dirty_rate);
	info->page_size = SHM_PAGE_SIZE;
	info->multifd_bytes = atomic_load(&s->ctr.multifd_bytes);
	if (info->role == MIG_ROLE_DEST && mig_session_missing(s))
		missing_runs(s, info);
}

void mig_session_get_caps(struct mig_session *s, struct mig_caps *caps)
{
	uint32_t c = MIG_SETTING(s, caps);

	caps->multifd = c & MIG_RECORD_CAP_MULTIFD;
	caps->events = c & MIG_RECORD_CAP_EVENTS;
	caps->auto_converge = c & MIG_RECORD_CAP_AUTO_CONVERGE;
	caps->postcopy_ram = c & MIG_RECORD_CAP_POSTCOPY_RAM;
	caps->postcopy_blocktime = c & MIG_RECORD_CAP_POSTCOPY_BLOCKTIME;
}

int mig_session_set_caps(struct mig_session *s, const struct mig_caps *caps)
{
	uint32_t c = (caps->multifd ? MIG_RECORD_CAP_MULTIFD : 0) |
		     (caps->events ? MIG_RECORD_CAP_EVENTS : 0) |
		     (caps->auto_converge ? MIG_RECORD_CAP_AUTO_CONVERGE : 0) |
		     (caps->postcopy_ram ? MIG_RECORD_CAP_POSTCOPY_RAM : 0) |
		     (caps->postcopy_blocktime ? MIG_RECORD_CAP_POSTCOPY_BLOCKTIME : 0);
	bool locked;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	/* As in QEMU: capabilities are fixed while a migration runs. */
	if (status_running(s->rec->status))
		ret = -EBUSY;
	else
		__atomic_store_n(&s->rec->caps, c, __ATOMIC_RELAXED);
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void mig_session_get_params(struct mig_session *s, struct mig_params *params)
{
	params->multifd_channels = MIG_SETTING(s, channels);
	params->max_bandwidth = MIG_SETTING(s, max_bandwidth);
	params->downtime_limit = MIG_SETTING(s, downtime_limit);
	params->reconnect_timeout = MIG_SETTING(s, reconnect_timeout);
}

int mig_session_set_params(struct mig_session *s, const struct mig_params *params)
{
	struct mig_record *rec = s->rec;
	char err[128];
	bool locked;

	if (mig_check_channels(params->multifd_channels, err, sizeof(err)) ||
	    mig_check_downtime(params->downtime_limit, err, sizeof(err)))
		return -EINVAL;
	/*
	 * Bandwidth and downtime apply at once; channels from the next
	 * migration.  A restarted migrator continues with the settings of the
	 * moment.  Atomic stores: the jobs read them without the lock.
	 */
	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	__atomic_store_n(&rec->channels, params->multifd_channels, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->max_bandwidth, params->max_bandwidth, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->downtime_limit, params->downtime_limit, __ATOMIC_RELAXED);
	__atomic_store_n(&rec->reconnect_timeout, params->reconnect_timeout, __ATOMIC_RELAXED);
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int mig_session_tls_preset(struct mig_session *s, struct mig_tls_params *p)
{
	if (!s->env.tls)
		return -ENOENT;
	mig_tls_preset(s->env.tls, p);
	return 0;
}

void mig_session_get_tls(struct mig_session *s, struct mig_tls_params *p)
{
	bool locked;

	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	*p = s->rec->tls;
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
}

int mig_session_set_tls(struct mig_session *s, const struct mig_tls_params *p, char *err,
			size_t errlen)
{
	struct mig_tls *tls = NULL, *old;
	bool locked;
	int ret;

	if (!tls_params_valid(p)) {
		snprintf(err, errlen, "malformed TLS settings");
		return -EINVAL;
	}
	ret = session_tls_build(s, p, &tls, err, errlen);
	if (ret)
		return ret;
	/* A running job (or a listening destination) keeps the context it started with. */
	if (session_busy(s)) {
		mig_tls_free(tls);
		snprintf(err, errlen, "There's a migration process in progress");
		return -EBUSY;
	}
	session_reap(s);
	pthread_mutex_lock(&s->lock);
	if (s->job) {
		pthread_mutex_unlock(&s->lock);
		mig_tls_free(tls);
		snprintf(err, errlen, "There's a migration process in progress");
		return -EBUSY;
	}
	old = s->tls;
	s->tls = tls;
	s->tls_broken = false;
	locked = rec_lock(s);
	s->rec->tls = *p;
	rec_unlock(s, locked);
	pthread_mutex_unlock(&s->lock);
	mig_tls_free(old);
	return 0;
}

/* The record describes a session this process must carry on. */
static bool record_resumable(const struct mig_record *rec)
{
	if (rec->role == MIG_ROLE_DEST && rec->phase == MIG_PHASE_DST_LISTENING)
		return true;
	/* A destination that finished moments ago may still owe the source its Complete. */
	if (rec->role == MIG_ROLE_DEST && rec->phase == MIG_PHASE_DST_RUNNING &&
	    rec->status == MIG_STATUS_COMPLETED && !mig_uri_is_file(rec->uri))
		return mig_now_ns() - rec->end_ns < rec->reconnect_timeout * 1000000ull;
	return rec->role != MIG_ROLE_NONE && status_running(rec->status);
}

/*
 * A migrator that keeps dying: the session ends here, cleanly, as the one
 * give-up table says (the launcher uses it too when it stops restarting us).
 */
static void session_give_up(struct mig_session *s, enum mig_phase phase, enum mig_role role,
			    const char *reason)
{
	const struct mig_vm_ops *ops = s->env.ops;
	struct mig_give_up g = mig_record_give_up(phase, role);
	int ret = 0;

	if (g.status == MIG_STATUS_UNKNOWN) {
		mig_session_unknown(s, reason);
		return;
	}
	if (g.resume)
		ret = ops->resume(s->env.ops_arg);
	if (ret)
		log_err("vcpu-proc RESUME: %s", strerror(-ret));
	if (g.stop_logging &&
	    (ops->dirty_log(s->env.ops_arg, false) || ops->throttle(s->env.ops_arg, 0)))
		log_warn("vcpu-proc: could not stop dirty logging or throttling");
	if (role == MIG_ROLE_DEST)
		mig_record_set_receivedmap_live(s->rec, false);
	mig_record_set_phase(s->rec, MIG_PHASE_NONE);
	mig_session_finish(s, g.status == MIG_STATUS_COMPLETED ? 0 : -EIO, reason);
}

int mig_session_resume(struct mig_session *s)
{
	struct mig_record *rec = s->rec;
	char uri[sizeof(rec->uri)];
	struct mig_job *job;
	enum mig_status status;
	enum mig_phase phase;
	enum mig_role role;
	uint32_t restarts, streak;
	unsigned int port;
	bool resumable;
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = mig_record_lock(rec);
	if (ret) {
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	resumable = record_resumable(rec);
	/* query-migrate shows the last migration, with its counters. */
	if (rec->role != MIG_ROLE_NONE)
		rec_load_counters(s);
	/* A channel count a migrator never stores is not used (the jobs trust the record). */
	if (rec->channels < MIG_MIN_CHANNELS || rec->channels > MIG_MAX_CHANNELS)
		__atomic_store_n(&rec->channels, (uint32_t)MIG_DEFAULT_CHANNELS, __ATOMIC_RELAXED);
	if (resumable) {
		rec->restarts++;
		rec->restart_streak++;
	}
	restarts = rec->restarts;
	streak = rec->restart_streak;
	atomic_store(&s->streak_open, streak > 0);
	role = rec->role;
	status = rec->status;
	snprintf(uri, sizeof(uri), "%s", rec->uri);
	phase = rec->phase;
	mig_record_unlock(rec);
	if (!resumable) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (streak > MIG_MAX_RESTARTS || mig_uri_is_fd(uri)) {
		char reason[400];

		/* An fd lived in the process that died: nothing can carry the migration on. */
		if (mig_uri_is_fd(uri))
			snprintf(reason, sizeof(reason),
				 "the migrator was restarted and the connection of %s was lost "
				 "with it: an fd: migration cannot continue",
				 uri);
		else
			snprintf(reason, sizeof(reason),
				 "the migrator was restarted %u times in a row without moving any "
				 "data: giving up",
				 streak - 1);
		pthread_mutex_unlock(&s->lock);
		session_give_up(s, phase, role, reason);
		return 1; /* taken over, and ended: no fresh --incoming either */
	}
	s->resuming = true;
	s->resume_start_ns = s->env.process_start_ns ? s->env.process_start_ns : mig_now_ns();
	s->cancel_requested = false;
	log_info("taking over the %s migration of this VM (restart %u, %u in a row, status %s), "
		 "%llu ms after the process started",
		 role == MIG_ROLE_SOURCE ? "outgoing" : "incoming", restarts, streak,
		 mig_status_name(status),
		 (unsigned long long)(mig_now_ns() - s->resume_start_ns) / 1000000);
	if (role == MIG_ROLE_SOURCE) {
		ret = mig_uri_is_file(uri) ? mig_save_alloc(&job, s, uri)
					   : mig_src_alloc(&job, s, uri);
	} else {
		port = 0;
		ret = mig_uri_is_file(uri) ? mig_load_alloc(&job, s, uri)
					   : mig_dst_alloc(&job, s, uri, &port);
		s->incoming_port = ret ? 0 : port;
	}
	/* A pause outlives the migrator that was paused: the operator releases it. */
	if (!ret &&
	    (__atomic_load_n(&s->rec->postcopy_flags, __ATOMIC_RELAXED) & MIG_RECORD_PC_HELD)) {
		log_info("postcopy paused by the operator: waiting for %s",
			 role == MIG_ROLE_SOURCE ? "migrate resume" : "migrate-recover");
		job->held = true; /* before its worker starts */
	}
	if (!ret)
		ret = session_start_job(s, job);
	if (ret) {
		log_err("cannot take over the migration: %s", strerror(-ret));
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	pthread_mutex_unlock(&s->lock);
	return 1;
}

/*
 * The operator has the pages a failed postcopy never brought filled with
 * zeros, maybe in a migrator started after the failure: the worker is
 * joined first, and s->lock keeps a new migration out while the pages are
 * placed.
 */
static int session_zero_fill_failed(struct mig_session *s)
{
	uint64_t filled;
	int ret;

	session_reap(s);
	pthread_mutex_lock(&s->lock);
	if (session_status(s, NULL) != MIG_STATUS_FAILED || !mig_session_missing(s)) {
		pthread_mutex_unlock(&s->lock);
		return -EINVAL;
	}
	ret = mig_postcopy_zero_fill(s, &filled);
	pthread_mutex_unlock(&s->lock);
	if (ret)
		log_err("postcopy: filling the missing pages with zeros: %s", strerror(-ret));
	else
		log_warn("postcopy: %" PRIu64 " missing pages of the failed migration filled "
			 "with zeros, as the operator said",
			 filled);
	return ret;
}

int mig_session_postcopy_abandon(struct mig_session *s, bool zero_fill)
{
	enum mig_status st;
	enum mig_role role;
	int ret = -EINVAL;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	/* Only while the peer is lost: a live one is still taking or bringing the pages. */
	if (role == MIG_ROLE_DEST && st == MIG_STATUS_POSTCOPY_PAUSED && s->job) {
		mig_dst_postcopy_abandon(s->job, zero_fill);
		ret = 0;
	} else if (role == MIG_ROLE_SOURCE && st == MIG_STATUS_POSTCOPY_PAUSED && s->job &&
		   !zero_fill) {
		/* Its guest is paused here and may run there: the operator resolves which. */
		mig_job_give_up(s->job, "postcopy abandoned by the operator: the destination "
					"did not come back (x-cleave-migrate-resolve decides where "
					"the guest runs)");
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	if (ret && zero_fill && role == MIG_ROLE_DEST && st == MIG_STATUS_FAILED &&
	    mig_session_missing(s))
		ret = session_zero_fill_failed(s);
	return ret;
}

/* Caller holds s->lock: the record's pause flag, which a restarted migrator obeys. */
static void rec_set_held(struct mig_session *s)
{
	bool locked = rec_lock(s);

	__atomic_fetch_or(&s->rec->postcopy_flags, MIG_RECORD_PC_HELD, __ATOMIC_RELAXED);
	rec_unlock(s, locked);
}

/*
 * Caller holds s->lock: the job reconnects at @uri from now on (a
 * restarted migrator too: the record says where), and a pause ends.
 */
static void session_release_at(struct mig_session *s, const char *uri)
{
	bool locked = rec_lock(s);

	snprintf(s->rec->uri, sizeof(s->rec->uri), "%s", uri);
	__atomic_fetch_and(&s->rec->postcopy_flags, ~MIG_RECORD_PC_HELD, __ATOMIC_RELAXED);
	rec_unlock(s, locked);
	mig_job_release(s->job);
}

int mig_session_pause(struct mig_session *s)
{
	enum mig_status st;
	enum mig_role role;
	int ret = -EINVAL;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	if (st == MIG_STATUS_POSTCOPY_ACTIVE && s->job) {
		rec_set_held(s);
		mig_job_hold(s->job, "paused by migrate-pause");
		set_status_locked(s, MIG_STATUS_POSTCOPY_PAUSED);
		log_info("postcopy paused by the operator: no reconnect until %s",
			 role == MIG_ROLE_SOURCE ? "migrate resume" : "migrate-recover");
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_recover(struct mig_session *s, const char *uri, char *err, size_t errlen)
{
	char bound[256];
	enum mig_status st;
	enum mig_role role;
	unsigned int port;
	int ret;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	if (role != MIG_ROLE_DEST || st != MIG_STATUS_POSTCOPY_PAUSED || !s->job) {
		pthread_mutex_unlock(&s->lock);
		snprintf(err, errlen, "Migrate recover can only be run when postcopy is paused.");
		return -EINVAL;
	}
	/* The rules of migrate-incoming: a new address is a new door. */
	ret = session_may_use(s, uri, MIG_ROLE_DEST);
	if (!ret)
		ret = mig_dst_relisten(s->job, uri, bound, &port, err, errlen);
	if (!ret) {
		s->incoming_port = port;
		session_release_at(s, bound);
		log_info("migrate-recover: waiting for the source at %s", bound);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_migrate_resume(struct mig_session *s, const char *uri)
{
	enum mig_status st;
	enum mig_role role;
	int ret;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	/* The rules of migrate: plaintext leaves the host only when the operator said so. */
	if (role == MIG_ROLE_SOURCE && st == MIG_STATUS_POSTCOPY_PAUSED && s->job) {
		ret = session_may_use(s, uri, MIG_ROLE_SOURCE);
		if (!ret)
			ret = mig_src_resume_to(s->job, uri);
	} else {
		ret = -ESRCH; /* no paused migration: told apart from a refused URI */
	}
	if (!ret) {
		session_release_at(s, uri);
		log_info("migrate resume: reconnecting to %s", uri);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int mig_session_resolve(struct mig_session *s, bool run_on_source)
{
	const struct mig_vm_ops *ops = s->env.ops;
	enum mig_status st;
	enum mig_role role;
	bool locked;
	int ret;

	pthread_mutex_lock(&s->lock);
	st = session_status(s, &role);
	pthread_mutex_unlock(&s->lock);
	if (st != MIG_STATUS_UNKNOWN || role != MIG_ROLE_SOURCE)
		return -EINVAL;
	session_reap(s); /* the worker that gave up has ended; nothing else runs */
	if (run_on_source) {
		ret = ops->resume(s->env.ops_arg);
		if (ret)
			return ret;
		if (ops->dirty_log(s->env.ops_arg, false))
			log_warn("vcpu-proc DIRTY_LOG off failed");
		if (ops->throttle(s->env.ops_arg, 0))
			log_warn("vcpu-proc THROTTLE 0 failed");
	} else {
		ret = ops->pause(s->env.ops_arg, MIG_PAUSE_POSTMIGRATE);
		if (ret)
			return ret;
	}
	mig_record_set_phase(s->rec, MIG_PHASE_NONE);
	pthread_mutex_lock(&s->lock);
	locked = rec_lock(s);
	if (run_on_source)
		rec_set_error(s, "resolved by the operator: the guest runs on the source");
	else
		s->rec->error_desc[0] = '\0';
	rec_unlock(s, locked);
	log_info("switchover resolved by the operator: the guest runs on the %s",
		 run_on_source ? "source" : "destination");
	set_status_locked(s, run_on_source ? MIG_STATUS_FAILED : MIG_STATUS_COMPLETED);
	mig_session_record_sync(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
