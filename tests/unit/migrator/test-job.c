/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The job core alone: an abort from a thread outside the epoch (a yank,
 * the fd: mux) wakes the side's queues after it dropped the job's lock.
 * The worker's reconnect must not re-arm those queues before that wake is
 * done, or the late wake stops the next epoch, which then fails with
 * "Operation canceled" for no reason.  And the reconnect backoff: its
 * deadline, and its pace without one.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdlib.h>

#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "tests/util/test-util.h"
#include "tvm.h"

/* A side whose wake is slow: it halts the queues 100 ms after the abort's unlock. */
struct slow_side {
	struct mig_job job; /* first: the ops get the job */
	sem_t wake_started;
	bool halted; /* the side's queue stop flag; under job.lock in this test */
};

static void slow_shut_down(struct mig_job *job, bool job_ends)
{
	(void)job;
	(void)job_ends;
}

static void slow_wake(struct mig_job *job)
{
	struct slow_side *side = (struct slow_side *)job;

	sem_post(&side->wake_started);
	test_sleep_ms(100);
	pthread_mutex_lock(&job->lock);
	side->halted = true;
	pthread_mutex_unlock(&job->lock);
}

static const struct mig_job_ops slow_ops = {
	.thread_name = "test/job",
	.shut_down = slow_shut_down,
	.wake = slow_wake,
};

static void *yank_thread(void *arg)
{
	mig_job_abort(arg, -ECONNABORTED, "connection yanked");
	return NULL;
}

static void test_reset_waits_for_late_wake(void **state)
{
	struct slow_side side;
	pthread_t t;

	(void)state;
	mig_job_init(&side.job, NULL, &slow_ops);
	assert_int_equal(sem_init(&side.wake_started, 0, 0), 0);
	side.halted = false;

	assert_int_equal(pthread_create(&t, NULL, yank_thread, &side.job), 0);
	/* The abort is recorded and its wake has begun, not finished. */
	assert_int_equal(sem_wait(&side.wake_started), 0);
	assert_true(mig_job_aborted(&side.job));

	/* The worker reconnects: forgets the epoch and re-arms its queues. */
	pthread_mutex_lock(&side.job.lock);
	mig_job_reset_epoch_locked(&side.job);
	side.halted = false;
	pthread_mutex_unlock(&side.job.lock);

	assert_int_equal(pthread_join(t, NULL), 0);
	/* The new epoch runs: not aborted, its queues not stopped by the old wake. */
	assert_false(mig_job_aborted(&side.job));
	pthread_mutex_lock(&side.job.lock);
	assert_false(side.halted);
	pthread_mutex_unlock(&side.job.lock);
	assert_int_equal(mig_job_error(&side.job, 0, NULL, 0), 0);

	sem_destroy(&side.wake_started);
	mig_job_fini(&side.job);
}

/* An abort after the reset belongs to the new epoch: it is recorded and its wake runs. */
static void test_abort_after_reset_counts(void **state)
{
	struct slow_side side;
	char reason[64];

	(void)state;
	mig_job_init(&side.job, NULL, &slow_ops);
	assert_int_equal(sem_init(&side.wake_started, 0, 0), 0);
	side.halted = false;

	mig_job_abort(&side.job, -ECONNRESET, "first epoch lost");
	pthread_mutex_lock(&side.job.lock);
	mig_job_reset_epoch_locked(&side.job);
	side.halted = false;
	pthread_mutex_unlock(&side.job.lock);

	mig_job_abort(&side.job, -EPIPE, "second epoch lost");
	assert_true(mig_job_aborted(&side.job));
	assert_true(side.halted);
	assert_int_equal(mig_job_error(&side.job, 0, reason, sizeof(reason)), -EPIPE);
	assert_string_equal(reason, "second epoch lost");

	sem_destroy(&side.wake_started);
	mig_job_fini(&side.job);
}

/* One backoff of a job whose peer was lost @lost_ms ago: its result, its length in *@ms. */
static int backoff_after(struct mig_job *job, uint64_t lost_ms, bool deadline, int64_t *ms)
{
	unsigned int delay = MIG_RECONNECT_MIN_MS;
	int64_t t0 = test_now_ms();
	int ret;

	job->lost_ns = mig_now_ns() - lost_ms * 1000000ull;
	ret = mig_job_backoff(job, &delay, deadline);
	*ms = test_now_ms() - t0;
	return ret;
}

/*
 * Past reconnect-timeout a backoff with a deadline ends the job; one
 * without (postcopy) goes on calling, fast at first, once a second when
 * the peer is long gone (past the timeout and MIG_RECONNECT_SLOW_AFTER_MS).
 */
static void test_backoff_deadline_and_pace(void **state)
{
	static const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {1u << 20}};
	struct slow_side side;
	struct mig_params prm;
	struct tvm t;
	int64_t ms;

	(void)state;
	assert_int_equal(tvm_init(&t, &layout, NULL, 1000), 0);
	mig_session_get_params(t.s, &prm);
	prm.reconnect_timeout = 100;
	assert_int_equal(mig_session_set_params(t.s, &prm), 0);
	mig_job_init(&side.job, t.s, &slow_ops);
	assert_int_equal(backoff_after(&side.job, 200, true, &ms), -ETIMEDOUT);
	assert_true(ms < 50); /* at once, no sleep first */
	assert_int_equal(backoff_after(&side.job, 200, false, &ms), 0);
	assert_true(ms < MIG_RECONNECT_SLOW_MS / 2);
	assert_int_equal(backoff_after(&side.job, MIG_RECONNECT_SLOW_AFTER_MS + 1000, false, &ms),
			 0);
	assert_true(ms >= MIG_RECONNECT_SLOW_MS - 10);
	mig_job_fini(&side.job);
	tvm_fini(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_waits_for_late_wake),
		cmocka_unit_test(test_abort_after_reset_counts),
		cmocka_unit_test(test_backoff_deadline_and_pace),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
