// SPDX-License-Identifier: GPL-2.0-only
/*
 * Postcopy blocktime of the guest page-fault service (vcpu-proc/fault.c,
 * blocktime.h) on real userfaultfd and shmem, without KVM: test threads
 * registered as vCPUs touch needed pages, and the test places them after
 * known delays.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "tests/util/test-util.h"
#include "tests/unit/vcpu/fault-probe.h"
#include "vcpu-proc/fault.h"

#define PAGES	 64
#define RAM_SIZE ((uint64_t)PAGES * SHM_PAGE_SIZE)
#define GPA	 0x100000000ull
/* A delay the test waits, and what scheduling may add to a measured one. */
#define DELAY_MS 300
#define SLACK_MS 250

struct fixture {
	struct region_table table;
	struct region *r;
	int ram_fd;
	uint8_t *ram;
	uint64_t needed[SHM_BITMAP_WORDS(PAGES)];
	struct fault_service *fs;
};

static void register_needed(struct fixture *f)
{
	region_lock_write(f->r);
	assert_int_equal(fault_region_register_needed(f->fs, f->r, f->needed), 0);
	region_unlock_write(f->r);
}

static void unregister(struct fixture *f)
{
	region_lock_write(f->r);
	fault_region_unregister(f->fs, f->r, true);
	region_unlock_write(f->r);
}

/* A postcopy region whose pages are all needed, served with @flags. */
static void fixture_start(struct fixture *f, unsigned int flags)
{
	assert_int_equal(fault_service_start_flags(&f->fs, &f->table, NULL, -1, flags), 0);
	register_needed(f);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->ram_fd = memfd_create("test-ram", MFD_CLOEXEC);
	assert_true(f->ram_fd >= 0);
	assert_int_equal(ftruncate(f->ram_fd, (off_t)RAM_SIZE), 0);
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->ram_fd, 0);
	assert_true(f->ram != MAP_FAILED);
	for (uint64_t p = 0; p < PAGES; p++)
		shm_bitmap_set(f->needed, p);
	assert_int_equal(region_table_init(&f->table), 0);
	assert_int_equal(region_table_add(&f->table, 0, GPA, RAM_SIZE, f->ram, NULL, &f->r), 0);
	region_unlock_write(f->r);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->fs) {
		unregister(f);
		assert_int_equal(fault_service_stop(f->fs), 0);
	}
	assert_int_equal(region_table_remove(&f->table, 0), 0);
	region_table_fini(&f->table);
	munmap(f->ram, RAM_SIZE);
	close(f->ram_fd);
	free(f);
	return 0;
}

/* A thread that says its tid, then touches @page when told to. */
struct toucher {
	struct fixture *f;
	uint64_t page;
	atomic_int tid;
	atomic_bool go, done;
	pthread_t th;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	atomic_store(&t->tid, gettid());
	while (!atomic_load(&t->go))
		test_sleep_ms(1);
	(void)*(volatile uint64_t *)(t->f->ram + t->page * SHM_PAGE_SIZE);
	atomic_store(&t->done, true);
	return NULL;
}

static void toucher_start(struct toucher *t, struct fixture *f, uint64_t page)
{
	t->f = f;
	t->page = page;
	assert_int_equal(pthread_create(&t->th, NULL, toucher_main, t), 0);
	while (!atomic_load(&t->tid))
		test_sleep_ms(1);
}

/* Lets @t touch its page, and waits until its request is taken: it is blocked. */
static void toucher_block(struct toucher *t)
{
	struct fault_page req;

	atomic_store(&t->go, true);
	assert_int_equal(fault_take_requests(t->f->fs, &req, 1, 5000, false), 1);
	assert_int_equal(req.page, t->page);
}

static void place(struct fixture *f, uint64_t page)
{
	assert_int_equal(fault_place(f->fs, 0, page, 1, NULL), 0);
}

static void toucher_join(struct toucher *t)
{
	pthread_join(t->th, NULL);
	assert_true(atomic_load(&t->done));
}

static void blocktime(struct fixture *f, struct fault_blocktime *bt)
{
	assert_int_equal(fault_service_blocktime(f->fs, bt), 0);
	if (!bt->measured)
		return;
	print_message("blocktime: all %u ms", bt->total_ms);
	for (unsigned int i = 0; i < bt->nr_vcpus; i++)
		print_message(", vCPU %u %u ms", i, bt->vcpu_ms[i]);
	print_message("\n");
}

static void assert_ms_near(uint32_t ms, uint32_t expect)
{
	if (ms < expect || ms >= expect + SLACK_MS)
		fail_msg("%u ms, expected %u ms (+ up to %u)", ms, expect, SLACK_MS);
}

/*
 * vCPUs 0 and 1 block on pages 1 and 2 together; page 1 comes after
 * DELAY_MS, page 2 DELAY_MS later.  vCPU 0 was blocked DELAY_MS, vCPU 1
 * twice that, both at once DELAY_MS.  Read while vCPU 1 still waits, its
 * open spell counts up to now.  Then a thread that is no vCPU waits:
 * nothing changes.
 */
static void test_two_vcpus(void **state)
{
	struct fixture *f = *state;
	struct toucher t[3] = {0};
	struct fault_blocktime bt, again;
	pid_t tids[2];

	fixture_start(f, 0);
	for (int i = 0; i < 3; i++)
		toucher_start(&t[i], f, (uint64_t)i + 1);
	tids[0] = atomic_load(&t[0].tid);
	tids[1] = atomic_load(&t[1].tid);
	assert_int_equal(fault_service_set_vcpus(f->fs, tids, 2), 0);

	blocktime(f, &bt);
	assert_true(bt.measured);
	assert_int_equal(bt.nr_vcpus, 2);
	assert_int_equal(bt.vcpu_ms[0], 0);
	assert_int_equal(bt.vcpu_ms[1], 0);
	assert_int_equal(bt.total_ms, 0);
	fault_blocktime_fini(&bt);

	toucher_block(&t[0]);
	toucher_block(&t[1]);
	test_sleep_ms(DELAY_MS);
	place(f, 1);
	toucher_join(&t[0]);
	blocktime(f, &bt);
	assert_ms_near(bt.vcpu_ms[0], DELAY_MS);
	assert_ms_near(bt.vcpu_ms[1], DELAY_MS);
	assert_ms_near(bt.total_ms, DELAY_MS);
	fault_blocktime_fini(&bt);

	test_sleep_ms(DELAY_MS);
	place(f, 2);
	toucher_join(&t[1]);
	blocktime(f, &bt);
	assert_ms_near(bt.vcpu_ms[0], DELAY_MS);
	assert_ms_near(bt.vcpu_ms[1], 2 * DELAY_MS);
	/* Only vCPU 1 blocked: all-at-once did not grow. */
	assert_ms_near(bt.total_ms, DELAY_MS);
	assert_true(bt.total_ms <= bt.vcpu_ms[0]);

	toucher_block(&t[2]);
	test_sleep_ms(DELAY_MS);
	place(f, 3);
	toucher_join(&t[2]);
	blocktime(f, &again);
	assert_memory_equal(again.vcpu_ms, bt.vcpu_ms, 2 * sizeof(uint32_t));
	assert_int_equal(again.total_ms, bt.total_ms);
	fault_blocktime_fini(&again);
	fault_blocktime_fini(&bt);
}

/* A vCPU blocked when its region goes (the VM ends): the spell ends with it. */
static void test_unregister_ends_spell(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {0};
	struct fault_blocktime bt, later;
	pid_t tid;

	fixture_start(f, 0);
	toucher_start(&t, f, 7);
	tid = atomic_load(&t.tid);
	assert_int_equal(fault_service_set_vcpus(f->fs, &tid, 1), 0);
	toucher_block(&t);
	test_sleep_ms(DELAY_MS / 3);
	blocktime(f, &bt);
	/* One vCPU: blocked alone is all blocked. */
	assert_ms_near(bt.vcpu_ms[0], DELAY_MS / 3);
	assert_ms_near(bt.total_ms, DELAY_MS / 3);
	fault_blocktime_fini(&bt);
	unregister(f);
	toucher_join(&t);
	blocktime(f, &bt);
	test_sleep_ms(DELAY_MS / 3);
	blocktime(f, &later);
	assert_int_equal(later.vcpu_ms[0], bt.vcpu_ms[0]);
	assert_int_equal(later.total_ms, bt.total_ms);
	fault_blocktime_fini(&bt);
	fault_blocktime_fini(&later);
}

/* Not measured: without vCPUs, before a postcopy region, or without thread ids. */
static void test_not_measured(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {0};
	struct fault_blocktime bt;
	pid_t tid;

	assert_int_equal(fault_service_start_flags(&f->fs, &f->table, NULL, -1, 0), 0);
	toucher_start(&t, f, 5);
	tid = atomic_load(&t.tid);
	assert_int_equal(fault_service_set_vcpus(f->fs, &tid, 1), 0);
	blocktime(f, &bt);
	assert_false(bt.measured); /* no postcopy region yet */
	assert_int_equal(bt.nr_vcpus, 0);
	assert_null(bt.vcpu_ms);
	unregister(f);
	assert_int_equal(fault_service_stop(f->fs), 0);

	/* A kernel that does not name the faulting thread. */
	fixture_start(f, FAULT_NO_THREAD_ID);
	assert_int_equal(fault_service_set_vcpus(f->fs, &tid, 1), 0);
	toucher_block(&t);
	test_sleep_ms(50);
	place(f, 5);
	toucher_join(&t);
	blocktime(f, &bt);
	assert_false(bt.measured);
	assert_int_equal(bt.nr_vcpus, 0);
	assert_int_equal(bt.total_ms, 0);
	unregister(f);
	assert_int_equal(fault_service_stop(f->fs), 0);

	/* No vCPUs set. */
	fixture_start(f, 0);
	blocktime(f, &bt);
	assert_false(bt.measured);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_two_vcpus, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unregister_ends_spell, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_measured, setup, teardown),
	};
	int ret;

	log_init("test-fault-blocktime");
	/* A host without userfaultfd for shmem skips, saying why. */
	ret = fault_probe_or_skip(NULL);
	if (ret)
		return ret;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
