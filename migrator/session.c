/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The session object: state machine, parameters, stats and events.  It owns
 * at most one job (source or destination) and the worker thread running
 * it; a finished job is joined and freed when the next one starts or when
 * the session is freed.  There is no global pointer to a session.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "log/log.h"
#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"
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
};

const char *mig_status_name(enum mig_status status)
{
	return (unsigned int)status < MIG_STATUS_UNKNOWN + 1 ? status_names[status] : "?";
}

uint64_t mig_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
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
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool status_running(enum mig_status st)
{
	return st == MIG_STATUS_SETUP || st == MIG_STATUS_ACTIVE || st == MIG_STATUS_DEVICE ||
	       st == MIG_STATUS_CANCELLING;
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

/* Caller holds s->lock.  The job's own fields (phase, rounds) are written by the job. */
static void record_update(struct mig_session *s)
{
	struct mig_record *rec = s->rec;

	if (mig_record_lock(rec))
		return;
	rec->role = s->role;
	rec->status = s->status;
	memcpy(rec->session_id, s->session_id, sizeof(rec->session_id));
	rec->epoch = s->epoch;
	rec->caps = (s->caps.multifd ? MIG_RECORD_CAP_MULTIFD : 0) |
		    (s->caps.events ? MIG_RECORD_CAP_EVENTS : 0) |
		    (s->caps.auto_converge ? MIG_RECORD_CAP_AUTO_CONVERGE : 0);
	rec->channels = s->params.multifd_channels;
	rec->max_bandwidth = s->params.max_bandwidth;
	rec->downtime_limit = s->params.downtime_limit;
	rec->reconnect_timeout = s->params.reconnect_timeout;
	rec->restarts = s->restarts;
	rec->start_ns = s->start_ns;
	rec->setup_ns = s->setup_ns;
	rec->end_ns = s->end_ns;
#define COUNTER_TO_RECORD(name) rec->name = atomic_load(&s->ctr.name);
	MIG_COUNTERS(COUNTER_TO_RECORD)
#undef COUNTER_TO_RECORD
	rec->resumes = atomic_load(&s->ctr.resumes);
	rec->downtime_ms = s->downtime_ms;
	rec->total_time_ms = s->end_ns ? (s->end_ns - s->start_ns) / 1000000 : 0;
	snprintf(rec->error_desc, sizeof(rec->error_desc), "%s", s->error_desc);
	mig_record_unlock(rec);
}

void mig_session_record_sync(struct mig_session *s)
{
	pthread_mutex_lock(&s->lock);
	record_update(s);
	pthread_mutex_unlock(&s->lock);
}

/* Caller holds s->lock: events leave in the order of the changes. */
static void set_status_locked(struct mig_session *s, enum mig_status status)
{
	struct mig_event ev = {.status = mig_status_name(status)};

	if (s->status == status)
		return;
	log_debug("migration status: %s -> %s", mig_status_name(s->status), ev.status);
	s->status = status;
	record_update(s);
	pthread_cond_broadcast(&s->cond);
	if (s->caps.events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
}

void mig_session_set_status(struct mig_session *s, enum mig_status status)
{
	pthread_mutex_lock(&s->lock);
	/* The destination's clock starts when the source connects, not at listen. */
	if (status == MIG_STATUS_SETUP && s->role == MIG_ROLE_DEST)
		s->start_ns = mig_now_ns();
	/* A cancel in flight keeps "cancelling" until the job finishes. */
	if (s->status != MIG_STATUS_CANCELLING)
		set_status_locked(s, status);
	if (status == MIG_STATUS_ACTIVE && !s->setup_ns)
		s->setup_ns = mig_now_ns();
	pthread_mutex_unlock(&s->lock);
}

void mig_session_detail_event(struct mig_session *s, const char *detail)
{
	struct mig_event ev = {.detail = detail};

	pthread_mutex_lock(&s->lock);
	ev.status = mig_status_name(s->status);
	ev.restarts = s->restarts;
	ev.resumes = atomic_load(&s->ctr.resumes);
	ev.resent_bytes = atomic_load(&s->ctr.resent_bytes);
	log_info("migration %s: %u restarts, %u resumes, %llu bytes resent (last resume %llu ms)",
		 detail, ev.restarts, ev.resumes, (unsigned long long)ev.resent_bytes,
		 (unsigned long long)atomic_load(&s->ctr.resume_time_ms));
	record_update(s);
	if (s->caps.events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_unknown(struct mig_session *s, const char *reason)
{
	pthread_mutex_lock(&s->lock);
	s->end_ns = mig_now_ns();
	snprintf(s->error_desc, sizeof(s->error_desc),
		 "switchover outcome unknown: %s; the guest stays paused here until "
		 "x-cleave-migrate-resolve says where it runs",
		 reason);
	log_err("migration: %s", s->error_desc);
	set_status_locked(s, MIG_STATUS_UNKNOWN);
	record_update(s);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_pass_event(struct mig_session *s, uint64_t pass)
{
	struct mig_event ev = {.pass = pass};

	pthread_mutex_lock(&s->lock);
	if (s->caps.events && s->env.event)
		s->env.event(s->env.event_arg, &ev);
	record_update(s);
	pthread_mutex_unlock(&s->lock);
}

bool mig_session_cancelled(struct mig_session *s)
{
	bool c;

	pthread_mutex_lock(&s->lock);
	c = s->cancel_requested;
	pthread_mutex_unlock(&s->lock);
	return c;
}

void mig_session_finish(struct mig_session *s, int err, const char *reason)
{
	pthread_mutex_lock(&s->lock);
	s->end_ns = mig_now_ns();
	if (err) {
		snprintf(s->error_desc, sizeof(s->error_desc), "%s",
			 reason ? reason : strerror(-err));
		log_err("migration %s: %s", s->cancel_requested ? "cancelled" : "failed",
			s->error_desc);
	}
	if (!err)
		set_status_locked(s, MIG_STATUS_COMPLETED);
	else
		set_status_locked(s,
				  s->cancel_requested ? MIG_STATUS_CANCELLED : MIG_STATUS_FAILED);
	record_update(s);
	pthread_mutex_unlock(&s->lock);
}

int mig_session_alloc(struct mig_session **out, const struct mig_env *env)
{
	struct mig_session *s;
	int ret;

	if (!env->ctl || !env->ctl->hdr || !env->ram || !env->ops || !env->ops->run_state)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->env = *env;
	s->io_timeout_ms = env->io_timeout_ms ? env->io_timeout_ms : MIG_DEFAULT_IO_TIMEOUT_MS;
	ret = mig_record_open(&s->rec, env->ctl);
	if (ret)
		goto err_free;
	s->epoch = s->rec->epoch;
	s->params.multifd_channels = MIG_DEFAULT_CHANNELS;
	s->params.max_bandwidth = MIG_DEFAULT_MAX_BANDWIDTH;
	s->params.downtime_limit = MIG_DEFAULT_DOWNTIME_MS;
	s->params.reconnect_timeout = MIG_DEFAULT_RECONNECT_MS;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
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
	/* A finished destination may still answer a reconnecting source; a committed source
	 * refuses the stop and is waited for. */
	if (job)
		mig_job_cancel(job, "stopped");
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
	mig_session_cancel(s);
	session_reap(s);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Caller holds s->lock; nothing runs. */
static void job_reset_locked(struct mig_session *s, enum mig_role role)
{
	memset(&s->ctr, 0, sizeof(s->ctr));
	s->role = role;
	s->cancel_requested = false;
	s->error_desc[0] = '\0';
	s->start_ns = mig_now_ns();
	s->setup_ns = s->end_ns = s->downtime_ms = 0;
	s->has_downtime = false;
	s->incoming_port = 0;
	s->restarts = 0;
	s->resuming = false;
	s->epoch++;
	if (getrandom(s->session_id, sizeof(s->session_id), 0) != sizeof(s->session_id))
		memset(s->session_id, 0, sizeof(s->session_id));
}

static bool session_busy(struct mig_session *s)
{
	bool busy;

	pthread_mutex_lock(&s->lock);
	busy = status_running(s->status) || s->status == MIG_STATUS_UNKNOWN ||
	       (s->job && s->role == MIG_ROLE_DEST && s->status == MIG_STATUS_NONE);
	pthread_mutex_unlock(&s->lock);
	return busy;
}

/* Plaintext leaves the host only when the operator said so (docs/MIGRATION.md). */
static bool session_may_use(const struct mig_session *s, const char *uri)
{
	char host[256];

	/* A URI that does not parse is refused later, with -EINVAL. */
	if (mig_uri_host(uri, host, sizeof(host)))
		return true;
	return s->env.tls || s->env.insecure_plaintext || mig_uri_is_loopback(uri);
}

/* Checks, reaps the last job, resets for a new one of @role: on 0 the caller holds s->lock. */
static int session_begin(struct mig_session *s, const char *uri, enum mig_role role)
{
	if (!session_may_use(s, uri))
		return -EPERM;
	if (session_busy(s))
		return -EBUSY;
	session_reap(s);
	pthread_mutex_lock(&s->lock);
	job_reset_locked(s, role);
	return 0;
}

int mig_session_migrate(struct mig_session *s, const char *uri)
{
	struct mig_job *job;
	int ret = session_begin(s, uri, MIG_ROLE_SOURCE);

	if (ret)
		return ret;
	ret = mig_src_alloc(&job, s, uri);
	if (ret)
		goto err_unlock;
	s->status = MIG_STATUS_NONE;
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
	ret = mig_dst_alloc(&job, s, uri, &port);
	if (ret)
		goto err_unlock;
	s->status = MIG_STATUS_NONE;
	ret = session_start_job(s, job);
	if (!ret)
		s->incoming_port = port;
err_unlock:
	pthread_mutex_unlock(&s->lock);
	return ret;
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
	bool dest;

	pthread_mutex_lock(&s->lock);
	dest = s->role == MIG_ROLE_DEST;
	/* A destination still listening (status none) can be cancelled too. */
	if (s->job && (status_running(s->status) || (dest && s->status == MIG_STATUS_NONE)) &&
	    /* After the commit the guest belongs to the destination: nothing to cancel. */
	    mig_job_cancel(s->job, dest ? "incoming migration cancelled" : "migration cancelled")) {
		s->cancel_requested = true;
		if (s->status != MIG_STATUS_NONE)
			set_status_locked(s, MIG_STATUS_CANCELLING);
	}
	pthread_mutex_unlock(&s->lock);
	return 0;
}

int mig_session_wait(struct mig_session *s, int timeout_ms)
{
	struct timespec ts;
	int ret = 0;

	mig_deadline_after_ms(&ts, (unsigned int)timeout_ms);
	pthread_mutex_lock(&s->lock);
	while (!ret && (status_running(s->status) ||
			(s->job && s->role == MIG_ROLE_DEST && s->status == MIG_STATUS_NONE)))
		ret = -pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void mig_session_query(struct mig_session *s, struct mig_info *info)
{
	uint64_t end, secs_ns;

	memset(info, 0, sizeof(*info));
	pthread_mutex_lock(&s->lock);
	info->status = s->status;
	info->role = s->role;
#define COUNTER_TO_INFO(name) info->name = atomic_load(&s->ctr.name);
	MIG_COUNTERS(COUNTER_TO_INFO)
#undef COUNTER_TO_INFO
	if (s->status != MIG_STATUS_NONE) {
		end = s->end_ns ? s->end_ns : mig_now_ns();
		info->total_time_ms = (end - s->start_ns) / 1000000;
		info->setup_time_ms = s->setup_ns ? (s->setup_ns - s->start_ns) / 1000000 : 0;
		secs_ns = end - s->start_ns;
		info->mbps = secs_ns ? (double)info->transferred * 8e3 / (double)secs_ns : 0;
	}
	info->downtime_ms = s->downtime_ms;
	info->has_downtime = s->has_downtime;
	info->expected_downtime_ms = atomic_load(&s->ctr.expected_downtime_ms);
	info->has_expected_downtime = s->role == MIG_ROLE_SOURCE && status_running(s->status);
	info->remaining = atomic_load(&s->ctr.remaining);
	info->total = s->env.ctl->hdr->ram_size;
	info->normal_bytes = info->normal * SHM_PAGE_SIZE;
	info->dirty_pages_rate = atomic_load(&s->ctr.dirty_rate);
	info->page_size = SHM_PAGE_SIZE;
	info->multifd_bytes = atomic_load(&s->ctr.multifd_bytes);
	info->throttle_percent = atomic_load(&s->ctr.throttle);
	info->epoch = s->epoch;
	info->restarts = s->restarts;
	info->resumes = atomic_load(&s->ctr.resumes);
	memcpy(info->session_id, s->session_id, sizeof(info->session_id));
	snprintf(info->error_desc, sizeof(info->error_desc), "%s", s->error_desc);
	pthread_mutex_unlock(&s->lock);
}

void mig_session_get_caps(struct mig_session *s, struct mig_caps *caps)
{
	pthread_mutex_lock(&s->lock);
	*caps = s->caps;
	pthread_mutex_unlock(&s->lock);
}

int mig_session_set_caps(struct mig_session *s, const struct mig_caps *caps)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	/* As in QEMU: capabilities are fixed while a migration runs. */
	if (status_running(s->status))
		ret = -EBUSY;
	else
		s->caps = *caps;
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void mig_session_get_params(struct mig_session *s, struct mig_params *params)
{
	pthread_mutex_lock(&s->lock);
	*params = s->params;
	pthread_mutex_unlock(&s->lock);
}

int mig_session_set_params(struct mig_session *s, const struct mig_params *params)
{
	char err[128];

	if (mig_check_channels(params->multifd_channels, err, sizeof(err)) ||
	    mig_check_downtime(params->downtime_limit, err, sizeof(err)))
		return -EINVAL;
	/* Bandwidth and downtime apply at once; channels from the next migration. */
	pthread_mutex_lock(&s->lock);
	/* Atomic stores: send threads read max_bandwidth without the lock. */
	__atomic_store_n(&s->params.multifd_channels, params->multifd_channels, __ATOMIC_RELAXED);
	__atomic_store_n(&s->params.max_bandwidth, params->max_bandwidth, __ATOMIC_RELAXED);
	__atomic_store_n(&s->params.downtime_limit, params->downtime_limit, __ATOMIC_RELAXED);
	__atomic_store_n(&s->params.reconnect_timeout, params->reconnect_timeout, __ATOMIC_RELAXED);
	/* A restarted migrator continues with the settings of the moment. */
	record_update(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

/* Caller holds s->lock and rec->lock: the session object takes the record's view. */
static void session_load_record_locked(struct mig_session *s, const struct mig_record *rec)
{
	s->role = rec->role;
	s->status = rec->status;
	memcpy(s->session_id, rec->session_id, sizeof(s->session_id));
	s->epoch = rec->epoch;
	s->caps.multifd = rec->caps & MIG_RECORD_CAP_MULTIFD;
	s->caps.events = rec->caps & MIG_RECORD_CAP_EVENTS;
	s->caps.auto_converge = rec->caps & MIG_RECORD_CAP_AUTO_CONVERGE;
	if (rec->channels >= 1 && rec->channels <= MIG_MAX_CHANNELS)
		s->params.multifd_channels = rec->channels;
	s->params.max_bandwidth = rec->max_bandwidth;
	s->params.downtime_limit = rec->downtime_limit;
	s->params.reconnect_timeout = rec->reconnect_timeout;
	s->restarts = rec->restarts;
	s->start_ns = rec->start_ns;
	s->setup_ns = rec->setup_ns;
	s->end_ns = rec->end_ns;
	s->downtime_ms = rec->downtime_ms;
	s->has_downtime = rec->status == MIG_STATUS_COMPLETED && rec->role == MIG_ROLE_SOURCE;
#define COUNTER_FROM_RECORD(name) atomic_store(&s->ctr.name, rec->name);
	MIG_COUNTERS(COUNTER_FROM_RECORD)
#undef COUNTER_FROM_RECORD
	atomic_store(&s->ctr.resumes, rec->resumes);
	atomic_store(&s->ctr.throttle, rec->throttle);
	snprintf(s->error_desc, sizeof(s->error_desc), "%s", rec->error_desc);
}

/* The record describes a session this process must carry on. */
static bool record_resumable(const struct mig_record *rec)
{
	if (rec->role == MIG_ROLE_DEST && rec->phase == MIG_PHASE_DST_LISTENING)
		return true;
	/* A destination that finished moments ago may still owe the source its Complete. */
	if (rec->role == MIG_ROLE_DEST && rec->phase == MIG_PHASE_DST_RUNNING &&
	    rec->status == MIG_STATUS_COMPLETED)
		return mig_now_ns() - rec->end_ns < rec->reconnect_timeout * 1000000ull;
	return rec->role != MIG_ROLE_NONE && status_running(rec->status);
}

/*
 * A migrator that keeps dying: the session ends here, cleanly, as the one
 * give-up table says (the launcher uses it too when it stops restarting us).
 */
static void session_give_up(struct mig_session *s, enum mig_phase phase)
{
	const struct mig_vm_ops *ops = s->env.ops;
	struct mig_give_up g = mig_record_give_up(phase, s->role);
	char reason[128];
	int ret = 0;

	snprintf(reason, sizeof(reason), "the migrator was restarted %u times: giving up",
		 s->restarts - 1);
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
	if (s->role == MIG_ROLE_DEST)
		mig_record_set_receivedmap_live(s->rec, false);
	mig_record_set_phase(s->rec, MIG_PHASE_NONE);
	mig_session_finish(s, g.status == MIG_STATUS_COMPLETED ? 0 : -EIO, reason);
}

int mig_session_resume(struct mig_session *s)
{
	struct mig_record *rec = s->rec;
	char uri[sizeof(rec->uri)];
	struct mig_job *job;
	enum mig_phase phase;
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
	if (rec->role != MIG_ROLE_NONE) /* query-migrate shows the last migration */
		session_load_record_locked(s, rec);
	if (resumable)
		rec->restarts = ++s->restarts;
	snprintf(uri, sizeof(uri), "%s", rec->uri);
	phase = rec->phase;
	mig_record_unlock(rec);
	if (!resumable) {
		pthread_mutex_unlock(&s->lock);
		return 0;
	}
	if (s->restarts > MIG_MAX_RESTARTS) {
		pthread_mutex_unlock(&s->lock);
		session_give_up(s, phase);
		return 1; /* taken over, and ended: no fresh --incoming either */
	}
	s->resuming = true;
	s->resume_start_ns = s->env.process_start_ns ? s->env.process_start_ns : mig_now_ns();
	s->cancel_requested = false;
	log_info("taking over the %s migration of this VM (restart %u, status %s), %llu ms "
		 "after the process started",
		 s->role == MIG_ROLE_SOURCE ? "outgoing" : "incoming", s->restarts,
		 mig_status_name(s->status),
		 (unsigned long long)(mig_now_ns() - s->resume_start_ns) / 1000000);
	if (s->role == MIG_ROLE_SOURCE) {
		ret = mig_src_alloc(&job, s, uri);
	} else {
		ret = mig_dst_alloc(&job, s, uri, &port);
		s->incoming_port = ret ? 0 : port;
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

int mig_session_resolve(struct mig_session *s, bool run_on_source)
{
	const struct mig_vm_ops *ops = s->env.ops;
	enum mig_status st;
	enum mig_role role;
	int ret;

	pthread_mutex_lock(&s->lock);
	st = s->status;
	role = s->role;
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
	if (run_on_source)
		snprintf(s->error_desc, sizeof(s->error_desc),
			 "resolved by the operator: the guest runs on the source");
	else
		s->error_desc[0] = '\0';
	log_info("switchover resolved by the operator: the guest runs on the %s",
		 run_on_source ? "source" : "destination");
	set_status_locked(s, run_on_source ? MIG_STATUS_FAILED : MIG_STATUS_COMPLETED);
	record_update(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}
