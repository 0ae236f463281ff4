// SPDX-License-Identifier: GPL-2.0-only
/*
 * Per-region locks: publication write-locked, lookups read-locked, and the
 * debug asserts abort on every kind of misuse (death tests run in a fork).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/region.h"

#define MIB (1ull << 20)

static char ram[4096];

struct fixture {
	struct region_table t;
	struct region *r0, *r1;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(region_table_init(&f->t), 0);
	assert_int_equal(region_table_add(&f->t, 0, 0, 16 * MIB, ram, NULL, &f->r0), 0);
	region_unlock_write(f->r0);
	assert_int_equal(region_table_add(&f->t, 1, 4096 * MIB, 16 * MIB, ram, NULL, &f->r1), 0);
	region_unlock_write(f->r1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(region_table_remove(&f->t, 0), 0);
	assert_int_equal(region_table_remove(&f->t, 1), 0);
	region_table_fini(&f->t);
	free(f);
	return 0;
}

/* Runs @fn in a child; the child must die of SIGABRT. */
static void expect_abort(void (*fn)(struct fixture *), struct fixture *f, const char *what)
{
	pid_t pid = fork();
	int st;

	assert_true(pid >= 0);
	if (pid == 0) {
		close(STDERR_FILENO); /* the abort message is expected */
		fn(f);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
		fail_msg("%s: child did not abort (status 0x%x)", what, st);
}

static void *reader_hold(void *arg)
{
	struct region *r = arg;

	region_lock_read(r);
	return NULL; /* deliberately keeps the read lock; the process is a fork */
}

static void *try_read(void *arg)
{
	struct region *r = arg;
	int ret = pthread_rwlock_tryrdlock(&r->lock);

	if (ret == 0)
		pthread_rwlock_unlock(&r->lock);
	return (void *)(intptr_t)ret;
}

static void *unlock_write_other(void *arg)
{
	region_unlock_write(arg);
	return NULL;
}

static void death_assert_write_unlocked(struct fixture *f)
{
	region_assert_locked_write(f->r0);
}

static void death_assert_write_reading(struct fixture *f)
{
	region_lock_read(f->r0);
	region_assert_locked_write(f->r0);
}

static void death_assert_read_unlocked(struct fixture *f)
{
	region_assert_locked_read(f->r0);
}

static void death_assert_read_other_thread(struct fixture *f)
{
	pthread_t th;

	pthread_create(&th, NULL, reader_hold, f->r0);
	pthread_join(th, NULL);
	region_assert_locked_read(f->r0); /* another thread reads, not this one */
}

static void death_assert_write_other_thread(struct fixture *f)
{
	pthread_t th;

	region_lock_write(f->r0);
	pthread_create(&th, NULL, unlock_write_other, f->r0);
	pthread_join(th, NULL);
}

static void death_recursive_read(struct fixture *f)
{
	region_lock_read(f->r0);
	region_lock_read(f->r0);
}

static void death_upgrade(struct fixture *f)
{
	region_lock_read(f->r0);
	region_lock_write(f->r0);
}

static void death_recursive_write(struct fixture *f)
{
	region_lock_write(f->r0);
	region_lock_write(f->r0);
}

static void death_unlock_read_unheld(struct fixture *f)
{
	region_unlock_read(f->r0);
}

/* Lock order: the table lock is never taken while holding a region. */
static void death_table_after_region(struct fixture *f)
{
	region_lock_read(f->r0);
	region_table_find_read(&f->t, 4096 * MIB, 1);
}

static void death_table_after_region_write(struct fixture *f)
{
	region_lock_write(f->r0);
	region_table_lock_read(&f->t);
}

static void death_get_without_table(struct fixture *f)
{
	region_table_get(&f->t, 0);
}

static void death_assert_after_unlock(struct fixture *f)
{
	struct region *r = region_table_find_read(&f->t, 4096, 8);

	region_unlock_read(r);
	region_assert_locked_read(r);
}

static void test_misuse_aborts(void **state)
{
	static const struct {
		void (*fn)(struct fixture *);
		const char *what;
	} cases[] = {
		{death_assert_write_unlocked, "assert write, nothing held"},
		{death_assert_write_reading, "assert write, held shared"},
		{death_assert_read_unlocked, "assert read, nothing held"},
		{death_assert_read_other_thread, "assert read, another thread reads"},
		{death_assert_write_other_thread, "write unlock by another thread"},
		{death_recursive_read, "recursive read lock"},
		{death_upgrade, "read then write lock"},
		{death_recursive_write, "recursive write lock"},
		{death_unlock_read_unheld, "read unlock without lock"},
		{death_table_after_region, "table lock while holding a region"},
		{death_table_after_region_write, "table lock while holding a region exclusive"},
		{death_get_without_table, "get without the table lock"},
		{death_assert_after_unlock, "assert read after unlock"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_abort(cases[i].fn, *state, cases[i].what);
}

static void test_correct_use_passes(void **state)
{
	struct fixture *f = *state;
	struct region *r;

	region_lock_write(f->r0);
	region_assert_locked_write(f->r0);
	region_assert_locked_read(f->r0); /* exclusive implies shared */
	region_unlock_write(f->r0);

	r = region_table_find_read(&f->t, 4096 * MIB + 100, 64);
	assert_ptr_equal(r, f->r1);
	region_assert_locked_read(r);
	region_unlock_read(r);
	/* holding one region does not count for another */
	r = region_table_find_read(&f->t, 0, 1);
	assert_ptr_equal(r, f->r0);
	expect_abort(death_assert_write_unlocked, f, "assert on other region");
	region_unlock_read(r);
}

static void test_find_bounds(void **state)
{
	struct fixture *f = *state;

	assert_null(region_table_find_read(&f->t, 16 * MIB - 4, 8)); /* straddles the end */
	assert_null(region_table_find_read(&f->t, 16 * MIB, 1));     /* in the hole */
	assert_null(region_table_find_read(&f->t, 0, 0));
	assert_null(region_table_find_read(&f->t, ~0ull - 2, 8)); /* wraps */
	assert_null(region_table_find_read(&f->t, 4112 * MIB, 1));
}

static void test_add_errors_and_publication(void **state)
{
	struct fixture *f = *state;
	struct region *r;
	pthread_t th;
	void *ret;

	assert_int_equal(region_table_add(&f->t, 0, 64 * MIB, MIB, ram, NULL, &r), -EEXIST);
	assert_int_equal(region_table_add(&f->t, 2, 8 * MIB, 16 * MIB, ram, NULL, &r), -EINVAL);
	assert_int_equal(region_table_add(&f->t, REGION_MAX, 64 * MIB, MIB, ram, NULL, &r),
			 -EINVAL);
	assert_int_equal(region_table_add(&f->t, 2, 64 * MIB, 0, ram, NULL, &r), -EINVAL);

	/* A new region is published write-locked: readers wait until it is ready. */
	assert_int_equal(region_table_add(&f->t, 2, 64 * MIB, MIB, ram, NULL, &r), 0);
	region_assert_locked_write(r);
	pthread_create(&th, NULL, try_read, r);
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, EBUSY);
	region_unlock_write(r);
	region_table_lock_read(&f->t);
	assert_ptr_equal(region_table_get(&f->t, 2), r);
	region_table_unlock_read(&f->t);
	pthread_create(&th, NULL, try_read, r);
	pthread_join(th, &ret);
	assert_int_equal((intptr_t)ret, 0);

	assert_int_equal(region_table_remove(&f->t, 2), 0);
	region_table_lock_read(&f->t);
	assert_null(region_table_get(&f->t, 2));
	region_table_unlock_read(&f->t);
	assert_int_equal(region_table_remove(&f->t, 2), -ENOENT);
	assert_int_equal(region_table_remove(&f->t, REGION_MAX), -ENOENT);
}

struct remover {
	struct region_table *t;
	int done; /* atomic */
};

static void *remove_thread(void *arg)
{
	struct remover *rm = arg;

	assert_int_equal(region_table_remove(rm->t, 3), 0);
	__atomic_store_n(&rm->done, 1, __ATOMIC_RELEASE);
	return NULL;
}

/* Removal takes the region exclusive: it waits for a reader to finish. */
static void test_remove_waits_for_readers(void **state)
{
	struct fixture *f = *state;
	struct remover rm = {&f->t, 0};
	struct region *r;
	pthread_t th;

	assert_int_equal(region_table_add(&f->t, 3, 64 * MIB, MIB, ram, NULL, &r), 0);
	region_unlock_write(r);
	r = region_table_find_read(&f->t, 64 * MIB, 4096);
	assert_non_null(r);
	pthread_create(&th, NULL, remove_thread, &rm);
	usleep(50000);
	assert_int_equal(__atomic_load_n(&rm.done, __ATOMIC_ACQUIRE), 0);
	region_unlock_read(r);
	pthread_join(th, NULL);
	assert_int_equal(rm.done, 1);
	assert_null(region_table_find_read(&f->t, 64 * MIB, 4096));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_misuse_aborts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_correct_use_passes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_find_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_add_errors_and_publication, setup, teardown),
		cmocka_unit_test_setup_teardown(test_remove_waits_for_readers, setup, teardown),
	};

	log_init("test-region");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
