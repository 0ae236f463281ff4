// SPDX-License-Identifier: GPL-2.0-only
/*
 * Robust process-shared lock: a holder SIGKILLed in another process hands
 * the next acquirer -EOWNERDEAD; unrepaired, the lock turns unrecoverable.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"

struct shared {
	struct shm_lock lock;
	uint64_t value; /* protected by lock */
};

static int setup(void **state)
{
	struct shared *s =
		mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	if (s == MAP_FAILED)
		return -1;
	if (shm_lock_init(&s->lock))
		return -1;
	*state = s;
	return 0;
}

static int teardown(void **state)
{
	struct shared *s = *state;

	shm_lock_destroy(&s->lock);
	munmap(s, sizeof(*s));
	return 0;
}

/* Forks a child that takes the lock, dirties the value and is SIGKILLed holding it. */
static void child_dies_holding(struct shared *s)
{
	int pfd[2], status;
	char c;
	pid_t pid;

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* never outlive a parent whose assertion failed */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(pfd[0]);
		if (shm_lock_acquire(&s->lock) != 0)
			_exit(1);
		s->value = 0xdead; /* half-done update the parent must repair */
		if (write(pfd[1], "x", 1) != 1)
			_exit(2);
		for (;;)
			pause();
	}
	close(pfd[1]);
	assert_int_equal(read(pfd[0], &c, 1), 1);
	close(pfd[0]);
	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
}

static void *held_in_other_thread(void *p)
{
	return (void *)(uintptr_t)shm_lock_held(p);
}

static void test_plain(void **state)
{
	struct shared *s = *state;
	pthread_t t;
	void *other;

	assert_false(shm_lock_held(&s->lock));
	assert_int_equal(shm_lock_acquire(&s->lock), 0);
	assert_true(shm_lock_held(&s->lock));
	/* held by this thread, not by every thread of the process */
	assert_int_equal(pthread_create(&t, NULL, held_in_other_thread, &s->lock), 0);
	assert_int_equal(pthread_join(t, &other), 0);
	assert_null(other);
	/* errorcheck: relocking from the holder is reported, not a deadlock */
	assert_int_equal(shm_lock_acquire(&s->lock), -EDEADLK);
	shm_lock_release(&s->lock);
	assert_false(shm_lock_held(&s->lock));
	assert_int_equal(shm_lock_acquire(&s->lock), 0);
	shm_lock_release(&s->lock);
}

static void test_owner_dead_repaired(void **state)
{
	struct shared *s = *state;

	s->value = 1;
	child_dies_holding(s);
	/* asking does not consume the EOWNERDEAD meant for the next acquirer */
	assert_false(shm_lock_held(&s->lock));
	assert_int_equal(shm_lock_acquire(&s->lock), -EOWNERDEAD);
	assert_true(shm_lock_held(&s->lock));
	assert_int_equal(s->value, 0xdead);
	s->value = 1; /* repair */
	shm_lock_mark_consistent(&s->lock);
	shm_lock_release(&s->lock);

	assert_int_equal(shm_lock_acquire(&s->lock), 0);
	assert_int_equal(s->value, 1);
	shm_lock_release(&s->lock);
	/* and again across processes: a second death is detected too */
	child_dies_holding(s);
	assert_int_equal(shm_lock_acquire(&s->lock), -EOWNERDEAD);
	shm_lock_mark_consistent(&s->lock);
	shm_lock_release(&s->lock);
}

static void test_owner_dead_not_repaired(void **state)
{
	struct shared *s = *state;

	child_dies_holding(s);
	assert_int_equal(shm_lock_acquire(&s->lock), -EOWNERDEAD);
	shm_lock_release(&s->lock); /* without mark_consistent */
	assert_int_equal(shm_lock_acquire(&s->lock), -ENOTRECOVERABLE);
	assert_int_equal(shm_lock_acquire(&s->lock), -ENOTRECOVERABLE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_plain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_dead_repaired, setup, teardown),
		cmocka_unit_test_setup_teardown(test_owner_dead_not_repaired, setup, teardown),
	};

	log_init("test-shm-lock");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
