// SPDX-License-Identifier: GPL-2.0-only
/*
 * Process-shared robust mutex.  A holder that dies (migrator SIGKILLed
 * mid-update) must not wedge the survivors: the next acquirer gets
 * -EOWNERDEAD and the duty to repair what the lock guards.
 */
#include <assert.h>
#include <errno.h>
#include <linux/futex.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"

int shm_lock_init(struct shm_lock *l)
{
	pthread_mutexattr_t attr;
	int ret;

	ret = pthread_mutexattr_init(&attr);
	if (ret)
		return -ret;
	ret = pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
	if (!ret)
		ret = pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
	/* errorcheck: relocking or unlocking a lock we do not hold is reported, not a hang */
	if (!ret)
		ret = pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
	if (!ret)
		ret = pthread_mutex_init(&l->mutex, &attr);
	pthread_mutexattr_destroy(&attr);
	if (ret)
		log_err("pthread_mutex_init (shared, robust): %s", strerror(ret));
	return -ret;
}

static int lock_result(struct shm_lock *l, int ret)
{
	switch (ret) {
	case 0:
		return 0;
	case EOWNERDEAD:
		log_warn("shared lock %p: previous holder died, state must be repaired", (void *)l);
		return -EOWNERDEAD;
	case ENOTRECOVERABLE:
		log_err("shared lock %p: not recoverable (holder died, not repaired)", (void *)l);
		return -ENOTRECOVERABLE;
	default:
		log_err("pthread_mutex_lock %p: %s", (void *)l, strerror(ret));
		return -ret;
	}
}

int shm_lock_acquire(struct shm_lock *l)
{
	return lock_result(l, pthread_mutex_lock(&l->mutex));
}

/*
 * Polled with trylock rather than pthread_mutex_timedlock(): contention is
 * rare and short here, and ThreadSanitizer does not take a robust mutex
 * acquired with EOWNERDEAD through timedlock as held.
 */
int shm_lock_acquire_timeout(struct shm_lock *l, unsigned int timeout_ms)
{
	struct timespec now, nap = {0, 200000}; /* 0.2 ms, doubling to 10 ms */
	uint64_t end_ms, now_ms;
	int ret;

	clock_gettime(CLOCK_MONOTONIC, &now);
	end_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000 + timeout_ms;
	for (;;) {
		ret = pthread_mutex_trylock(&l->mutex);
		if (ret != EBUSY)
			return lock_result(l, ret);
		clock_gettime(CLOCK_MONOTONIC, &now);
		now_ms = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000;
		if (now_ms >= end_ms)
			return -ETIMEDOUT;
		nanosleep(&nap, NULL);
		if (nap.tv_nsec < 10000000)
			nap.tv_nsec *= 2;
	}
}

void shm_lock_mark_consistent(struct shm_lock *l)
{
	int ret = pthread_mutex_consistent(&l->mutex);

	/* EINVAL here means the caller did not get -EOWNERDEAD: a bug, not a runtime error */
	assert(ret == 0);
	(void)ret;
}

void shm_lock_release(struct shm_lock *l)
{
	int ret = pthread_mutex_unlock(&l->mutex);

	/* EPERM: released by a thread that does not hold it */
	assert(ret == 0);
	(void)ret;
}

/*
 * A robust mutex keeps its owner's TID in the futex word (the kernel's
 * robust-list protocol requires it), so reading it answers "do I hold it"
 * without touching the lock.  A trylock would not do: on a dead holder's
 * lock it would consume the EOWNERDEAD meant for the next real acquirer.
 */
bool shm_lock_held(struct shm_lock *l)
{
	int word = __atomic_load_n(&l->mutex.__data.__lock, __ATOMIC_RELAXED);

	return (word & FUTEX_TID_MASK) == gettid();
}

void shm_lock_destroy(struct shm_lock *l)
{
	int ret = pthread_mutex_destroy(&l->mutex);

	if (ret)
		log_warn("pthread_mutex_destroy %p: %s", (void *)l, strerror(ret));
}
