/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The job core alone: an abort from a thread outside the epoch (a yank,
 * the fd: mux) wakes the side's queues after it dropped the job's lock.
 * The worker's reconnect must not re-arm those queues before that wake is
 * done, or the late wake stops the next epoch, which then fails with
 * "Operation canceled" for no reason.
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
#include "tests/util/test-util.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_reset_waits_for_late_wake),
		cmocka_unit_test(test_abort_after_reset_counts),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
