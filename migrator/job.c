/* SPDX-License-Identifier: GPL-2.0-only */
/* The job core both sides share (see job.h). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"

void mig_job_init(struct mig_job *job, struct mig_session *s, const struct mig_job_ops *ops)
{
	memset(job, 0, sizeof(*job));
	job->s = s;
	job->ops = ops;
	job->main_fd = -1;
	pthread_mutex_init(&job->lock, NULL);
	pthread_cond_init(&job->wake, NULL);
	pthread_mutex_init(&job->tx_lock, NULL);
}

void mig_job_fini(struct mig_job *job)
{
	if (job->main_fd >= 0)
		mig_sock_close(job->main_fd);
	job->main_fd = -1;
	pthread_mutex_destroy(&job->tx_lock);
	pthread_cond_destroy(&job->wake);
	pthread_mutex_destroy(&job->lock);
}

void mig_job_free(struct mig_job *job)
{
	if (job)
		job->ops->free(job);
}

/*
 * Best effort, never blocking (the caller holds job->lock): tell the peer
 * why the job ends.  If the worker is halfway through a message, the peer
 * sees the cut instead.
 */
static void job_tell_peer(struct mig_job *job)
{
	/* Never in clear where the job speaks TLS (the handshake may not have finished). */
	if (job->main_fd < 0 || (job->s->tls && !mig_tls_on(job->main_fd)) ||
	    pthread_mutex_trylock(&job->tx_lock))
		return;
	mig_msg_send_error_nowait(job->main_fd, job->reason);
	pthread_mutex_unlock(&job->tx_lock);
}

/*
 * First reason wins, but for @final ones (a cancel, the peer's Error): they
 * replace a lost connection recorded first, which would only have been
 * waited out (the peer's channels may close before its Error is read), and
 * then end the job.  A thread's -ECANCELED after an abort is a consequence,
 * not a reason: not final.
 */
static void job_abort_v(struct mig_job *job, bool final, int err, const char *fmt, va_list ap)
{
	pthread_mutex_lock(&job->lock);
	if (job->aborted) {
		if (final && mig_err_retriable(job->err)) {
			job->err = err;
			vsnprintf(job->reason, sizeof(job->reason), fmt, ap);
			job->ops->shut_down(job, true); /* the listener kept for a reconnect too */
		}
	} else {
		job->aborted = true;
		job->err = err;
		vsnprintf(job->reason, sizeof(job->reason), fmt, ap);
		/* The end of the job, not of a connection: the peer may stop waiting. */
		if (!mig_err_retriable(err) && !job->committed)
			job_tell_peer(job);
		/* Wakes every thread blocked in I/O; fds stay open until the epoch ends. */
		if (job->main_fd >= 0)
			shutdown(job->main_fd, SHUT_RDWR);
		job->ops->shut_down(job, !mig_err_retriable(err));
	}
	/* Counted until its wake is done: a reset must not let it stop the next epoch. */
	job->wakers++;
	pthread_cond_broadcast(&job->wake);
	pthread_mutex_unlock(&job->lock);
	job->ops->wake(job);
	pthread_mutex_lock(&job->lock);
	if (!--job->wakers)
		pthread_cond_broadcast(&job->wake);
	pthread_mutex_unlock(&job->lock);
}

void mig_job_abort(struct mig_job *job, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	job_abort_v(job, false, err, fmt, ap);
	va_end(ap);
}

void mig_job_abort_final(struct mig_job *job, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	job_abort_v(job, true, err, fmt, ap);
	va_end(ap);
}

bool mig_job_aborted(struct mig_job *job)
{
	bool a;

	pthread_mutex_lock(&job->lock);
	a = job->aborted;
	pthread_mutex_unlock(&job->lock);
	return a;
}

int mig_job_error(struct mig_job *job, int ret, char *reason, size_t len)
{
	pthread_mutex_lock(&job->lock);
	if (job->err)
		ret = job->err;
	if (reason)
		snprintf(reason, len, "%s", job->reason);
	pthread_mutex_unlock(&job->lock);
	return ret;
}

bool mig_job_cancel(struct mig_job *job, const char *reason)
{
	pthread_mutex_lock(&job->lock);
	if (job->committed) {
		pthread_mutex_unlock(&job->lock);
		return false;
	}
	/* Seen by the worker even if a lost connection aborted the epoch first. */
	job->cancelled = true;
	pthread_mutex_unlock(&job->lock);
	/* The reason is recorded before any fd goes: a woken thread sees the abort. */
	mig_job_abort_final(job, -ECANCELED, "%s", reason);
	return true;
}

void mig_job_give_up(struct mig_job *job, const char *reason)
{
	pthread_mutex_lock(&job->lock);
	job->cancelled = true; /* committed or not: the worker ends, nothing reconnects */
	pthread_mutex_unlock(&job->lock);
	mig_job_abort_final(job, -ECANCELED, "%s", reason);
}

int mig_job_commit(struct mig_job *job)
{
	int ret;

	pthread_mutex_lock(&job->lock);
	ret = job->cancelled ? -ECANCELED : 0;
	job->committed = !ret;
	pthread_mutex_unlock(&job->lock);
	return ret;
}

bool mig_job_committed(struct mig_job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->committed;
	pthread_mutex_unlock(&job->lock);
	return c;
}

bool mig_job_cancelled(struct mig_job *job)
{
	bool c;

	pthread_mutex_lock(&job->lock);
	c = job->cancelled;
	pthread_mutex_unlock(&job->lock);
	return c;
}

void mig_job_publish_fd(struct mig_job *job, int *slot, int fd)
{
	pthread_mutex_lock(&job->lock);
	*slot = fd;
	if (job->aborted)
		shutdown(fd, SHUT_RDWR);
	pthread_mutex_unlock(&job->lock);
}

bool mig_job_mark_lost(struct mig_job *job, const char *reason)
{
	if (job->lost_ns)
		return false;
	job->lost_ns = mig_now_ns();
	snprintf(job->lost_reason, sizeof(job->lost_reason), "%s", reason);
	return true;
}

void mig_job_reset_epoch_locked(struct mig_job *job)
{
	/*
	 * An abort from outside the epoch's threads (yank, the fd: mux) may be
	 * between its unlock and its ops->wake: done late, that wake would
	 * halt the queues of the next epoch, which then fails for no reason.
	 */
	while (job->wakers)
		pthread_cond_wait(&job->wake, &job->lock);
	job->aborted = false;
	job->err = 0;
	job->reason[0] = '\0';
	if (job->main_fd >= 0)
		mig_sock_close(job->main_fd);
	job->main_fd = -1;
}

uint64_t mig_job_reconnected(struct mig_job *job)
{
	uint64_t ms = job->lost_ns ? (mig_now_ns() - job->lost_ns) / 1000000 : 0;

	job->lost_ns = 0;
	return ms;
}

static uint64_t job_reconnect_timeout_ms(struct mig_job *job)
{
	return MIG_SETTING(job->s, reconnect_timeout);
}

int mig_job_reconnect_left_ms(struct mig_job *job)
{
	uint64_t deadline = job->lost_ns + job_reconnect_timeout_ms(job) * 1000000ull;
	uint64_t now = mig_now_ns();

	return now >= deadline ? 0 : (int)((deadline - now + 999999) / 1000000);
}

/* Lost for longer than reconnect-timeout and MIG_RECONNECT_SLOW_AFTER_MS: not coming soon. */
static bool job_lost_long(struct mig_job *job)
{
	uint64_t after_ms = job_reconnect_timeout_ms(job);

	if (after_ms < MIG_RECONNECT_SLOW_AFTER_MS)
		after_ms = MIG_RECONNECT_SLOW_AFTER_MS;
	return job->lost_ns && mig_now_ns() - job->lost_ns > after_ms * 1000000ull;
}

int mig_job_backoff(struct mig_job *job, unsigned int *delay_ms, bool deadline)
{
	struct timespec ts;
	int ret = mig_job_wait_released(job);

	if (ret) {
		*delay_ms = MIG_RECONNECT_MIN_MS;
		return ret < 0 ? ret : 0;
	}
	if (deadline && !mig_job_reconnect_left_ms(job))
		return -ETIMEDOUT;
	if (!deadline && job_lost_long(job))
		*delay_ms = MIG_RECONNECT_SLOW_MS;
	mig_deadline_after_ms(&ts, *delay_ms);
	pthread_mutex_lock(&job->lock);
	while (!job->cancelled && !ret)
		ret = pthread_cond_timedwait(&job->wake, &job->lock, &ts);
	ret = job->cancelled ? -ECANCELED : 0;
	pthread_mutex_unlock(&job->lock);
	/*
	 * Capped low: a restarted peer listens within milliseconds of its
	 * start, and every attempt is one SYN (refused at once until then);
	 * in postcopy the destination's vCPUs wait out every step too.
	 */
	*delay_ms = *delay_ms * 2 > MIG_RECONNECT_MAX_MS ? MIG_RECONNECT_MAX_MS : *delay_ms * 2;
	return ret;
}

void mig_job_hold(struct mig_job *job, const char *reason)
{
	pthread_mutex_lock(&job->lock);
	job->held = true;
	pthread_mutex_unlock(&job->lock);
	mig_job_abort(job, -ECONNABORTED, "%s", reason);
}

void mig_job_release(struct mig_job *job)
{
	pthread_mutex_lock(&job->lock);
	job->held = false;
	pthread_cond_broadcast(&job->wake);
	pthread_mutex_unlock(&job->lock);
}

int mig_job_wait_released(struct mig_job *job)
{
	bool waited = false;
	int ret;

	pthread_mutex_lock(&job->lock);
	while (job->held && !job->cancelled) {
		waited = true;
		pthread_cond_wait(&job->wake, &job->lock);
	}
	ret = job->cancelled && waited ? -ECANCELED : waited;
	pthread_mutex_unlock(&job->lock);
	/* The operator took the time it took: the peer gets a whole reconnect-timeout now. */
	if (ret == 1)
		job->lost_ns = mig_now_ns();
	return ret;
}
