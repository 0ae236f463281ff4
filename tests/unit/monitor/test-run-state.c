// SPDX-License-Identifier: GPL-2.0-only
/*
 * The run state query-status answers from (monitor/run-state.h): made
 * known only by a STATUS reply, kept by newer events, never set back to an
 * older value, and not made known by a reply that was out while it was
 * forgotten.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "monitor/run-state.h"

enum { RUNNING = 2, PAUSED = 3, POSTMIGRATE = 8 }; /* any distinct values */

static uint32_t get(struct mon_run_state *rs)
{
	uint32_t st = 0;

	assert_true(mon_run_state_get(rs, &st));
	return st;
}

static void test_known_only_after_status(void **state)
{
	struct mon_run_state rs;
	uint32_t st;

	(void)state;
	mon_run_state_init(&rs);
	/* Events alone do not make it known: one may predate what the monitor missed. */
	mon_run_state_event(&rs, RUNNING, 5);
	assert_false(mon_run_state_get(&rs, &st));
	mon_run_state_status(&rs, mon_run_state_mark(&rs), PAUSED, 5);
	assert_int_equal(get(&rs), PAUSED);
	/* Newer events move it; the one the reply already saw (seq 5) does not. */
	mon_run_state_event(&rs, RUNNING, 5);
	assert_int_equal(get(&rs), PAUSED);
	mon_run_state_event(&rs, RUNNING, 6);
	assert_int_equal(get(&rs), RUNNING);
	assert_int_equal(rs.hits, 3);
	assert_int_equal(rs.asks, 1);
	mon_run_state_fini(&rs);
}

static void test_never_back_in_time(void **state)
{
	struct mon_run_state rs;
	uint64_t mark;

	(void)state;
	mon_run_state_init(&rs);
	mon_run_state_status(&rs, mon_run_state_mark(&rs), RUNNING, 7);
	/* A reply that left before event 8 arrived is older than it. */
	mark = mon_run_state_mark(&rs);
	mon_run_state_event(&rs, PAUSED, 8);
	mon_run_state_status(&rs, mark, RUNNING, 7);
	assert_int_equal(get(&rs), PAUSED);
	/* A reply as of event 8 with a newer state (its event on the way) is taken. */
	mon_run_state_status(&rs, mark, POSTMIGRATE, 8);
	assert_int_equal(get(&rs), POSTMIGRATE);
	/* ... and that event then changes nothing. */
	mon_run_state_event(&rs, POSTMIGRATE, 9);
	assert_int_equal(get(&rs), POSTMIGRATE);
	mon_run_state_fini(&rs);
}

static void test_forget(void **state)
{
	struct mon_run_state rs;
	uint64_t mark;
	uint32_t st;

	(void)state;
	mon_run_state_init(&rs);
	mon_run_state_status(&rs, mon_run_state_mark(&rs), RUNNING, 3);
	/* A reply out when the monitor forgot may predate what made it forget. */
	mark = mon_run_state_mark(&rs);
	mon_run_state_forget(&rs);
	mon_run_state_status(&rs, mark, RUNNING, 3);
	assert_false(mon_run_state_get(&rs, &st));
	mon_run_state_event(&rs, PAUSED, 4);
	assert_false(mon_run_state_get(&rs, &st));
	/* One that started after it counts. */
	mon_run_state_status(&rs, mon_run_state_mark(&rs), PAUSED, 4);
	assert_int_equal(get(&rs), PAUSED);
	mon_run_state_fini(&rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_known_only_after_status),
		cmocka_unit_test(test_never_back_in_time),
		cmocka_unit_test(test_forget),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
