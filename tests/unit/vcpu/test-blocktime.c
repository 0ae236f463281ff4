// SPDX-License-Identifier: GPL-2.0-only
/*
 * The postcopy blocktime bookkeeping (vcpu-proc/blocktime.c) with made-up
 * times: spells per vCPU, all of them blocked at once, open spells, faults
 * of other threads and of vCPUs blocked already.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "vcpu-proc/blocktime.h"

#define MS 1000000ull

static void read_ms(const struct blocktime *bt, uint64_t now, uint32_t *v, uint32_t *all)
{
	blocktime_read(bt, now * MS, v, all);
}

static void test_spells(void **state)
{
	struct blocktime bt = {0};
	const pid_t tids[3] = {100, 101, 102};
	uint32_t v[3], all;

	(void)state;
	assert_int_equal(blocktime_set_vcpus(&bt, tids, 3), 0);
	blocktime_fault(&bt, 100, 0, 5, 10 * MS);
	blocktime_fault(&bt, 999, 0, 6, 10 * MS); /* not a vCPU */
	blocktime_fault(&bt, 101, 0, 5, 20 * MS); /* the same page */
	blocktime_fault(&bt, 102, 1, 5, 30 * MS); /* the same index, another region */
	read_ms(&bt, 35, v, &all);		  /* all open: counted up to now */
	assert_int_equal(v[0], 25);
	assert_int_equal(v[1], 15);
	assert_int_equal(v[2], 5);
	assert_int_equal(all, 5);
	blocktime_woken(&bt, 0, 4, 2, 40 * MS); /* pages 4 and 5 of region 0 */
	read_ms(&bt, 50, v, &all);
	assert_int_equal(v[0], 30);
	assert_int_equal(v[1], 20);
	assert_int_equal(v[2], 20);
	assert_int_equal(all, 10);
	/* A second fault of a blocked vCPU keeps its spell, on the new page. */
	blocktime_fault(&bt, 102, 1, 9, 60 * MS);
	blocktime_woken(&bt, 1, 5, 1, 70 * MS);
	read_ms(&bt, 80, v, &all);
	assert_int_equal(v[2], 50);
	blocktime_woken(&bt, 1, 9, 1, 80 * MS);
	read_ms(&bt, 500, v, &all);
	assert_int_equal(v[0], 30);
	assert_int_equal(v[1], 20);
	assert_int_equal(v[2], 50);
	assert_int_equal(all, 10);
	blocktime_fini(&bt);
}

/* All at once counts once per stretch; set_vcpus again starts over. */
static void test_all_blocked_stretches(void **state)
{
	struct blocktime bt = {0};
	const pid_t tids[2] = {7, 8};
	uint32_t v[2], all;

	(void)state;
	assert_int_equal(blocktime_set_vcpus(&bt, tids, 2), 0);
	for (uint64_t t = 0; t < 1000; t += 100) {
		blocktime_fault(&bt, 7, 0, 1, t * MS);
		blocktime_fault(&bt, 8, 0, 2, (t + 10) * MS);
		blocktime_woken(&bt, 0, 2, 1, (t + 40) * MS);
		blocktime_woken(&bt, 0, 1, 1, (t + 50) * MS);
	}
	read_ms(&bt, 2000, v, &all);
	assert_int_equal(v[0], 500);
	assert_int_equal(v[1], 300);
	assert_int_equal(all, 300);
	assert_int_equal(blocktime_set_vcpus(&bt, tids, 2), 0);
	read_ms(&bt, 3000, v, &all);
	assert_int_equal(v[0], 0);
	assert_int_equal(all, 0);
	blocktime_fini(&bt);
	/* No vCPUs: nothing blocks, nothing counts. */
	blocktime_fault(&bt, 7, 0, 1, 0);
	read_ms(&bt, 10, v, &all);
	assert_int_equal(all, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_spells),
		cmocka_unit_test(test_all_blocked_stretches),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
