/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * calc-dirty-rate with the test VM (its "guest" a thread writing random
 * pages of 8 MiB): page-sampling and dirty-bitmap find the rate it writes
 * at and nothing when it is idle; QEMU 7.2's refusals in its words; the
 * dirty-bitmap mode and a migration keep out of each other's way; a
 * session freed while it measures stops at once.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "migrator/session-internal.h"
#include "tvm.h"

#define R0_PAGES  4096 /* 16 MiB */
#define R1_PAGES  1024 /* 4 MiB at 4 GiB */
#define HOT_PAGES 2048 /* the dirtier writes these 8 MiB */

static const struct shm_ctl_layout layout = {
	.nr_regions = 2,
	.gpa = {0, 4ull << 30},
	.size = {R0_PAGES * SHM_PAGE_SIZE, R1_PAGES *SHM_PAGE_SIZE},
};

static int setup(void **state)
{
	struct tvm *t = calloc(1, sizeof(*t));

	if (!t || tvm_init(t, &layout, NULL, 2000))
		return -1;
	tvm_fill(t, 0, 0, R0_PAGES, false);
	tvm_fill(t, 1, 0, R1_PAGES, false);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	struct tvm *t = *state;

	tvm_fini(t);
	free(t);
	return 0;
}

/* What the measurement asked of the VM: dirty logging on? (under the VM's lock, as it is set) */
static bool logging(struct tvm *t)
{
	bool on;

	pthread_mutex_lock(&t->lock);
	on = t->dirty_log;
	pthread_mutex_unlock(&t->lock);
	return on;
}

static unsigned int harvests(struct tvm *t)
{
	unsigned int n;

	pthread_mutex_lock(&t->lock);
	n = t->harvests;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/* Waits out a measurement: its result. */
static struct mig_dirty_rate_info measured(struct tvm *t)
{
	struct mig_dirty_rate_info info;

	for (int i = 0; i < 1000; i++) {
		mig_dirty_rate_query(t->s, &info);
		if (info.status != MIG_DIRTY_RATE_MEASURING)
			break;
		usleep(10000);
	}
	assert_int_equal(info.status, MIG_DIRTY_RATE_MEASURED);
	assert_true(info.has_dirty_rate);
	return info;
}

static int64_t measure(struct tvm *t, enum mig_dirty_rate_mode mode, int64_t samples)
{
	struct mig_dirty_rate_info info;
	char err[256];

	assert_int_equal(
		mig_dirty_rate_start(t->s, 1, samples > 0, samples, mode, err, sizeof(err)), 0);
	mig_dirty_rate_query(t->s, &info);
	assert_int_equal(info.status, MIG_DIRTY_RATE_MEASURING);
	assert_false(info.has_dirty_rate);
	assert_int_equal(info.calc_time, 1);
	assert_int_equal(info.sample_pages, samples > 0 ? samples : 512);
	assert_int_equal(info.mode, mode);
	assert_true(info.start_time > 0);
	info = measured(t);
	return info.dirty_rate;
}

static void test_unstarted(void **state)
{
	struct tvm *t = *state;
	struct mig_dirty_rate_info info;

	mig_dirty_rate_query(t->s, &info);
	/* QEMU 7.2: status unstarted, sample-pages 0, page-sampling, times 0, no rate. */
	assert_int_equal(info.status, MIG_DIRTY_RATE_UNSTARTED);
	assert_int_equal(info.sample_pages, 0);
	assert_int_equal(info.mode, MIG_DIRTY_RATE_PAGE_SAMPLING);
	assert_int_equal(info.start_time, 0);
	assert_int_equal(info.calc_time, 0);
	assert_false(info.has_dirty_rate);
}

/*
 * The dirtier keeps all of its 8 MiB dirty (about as fast as it can
 * write, hundreds of thousands of pages a second): 8 MB/s; 20 MiB idle
 * RAM: 0.  Page-sampling sees about as much (16384 samples per GiB:
 * 320 pages of 5120), the dirty bitmap exactly the 2048 pages.
 */
static void test_page_sampling(void **state)
{
	struct tvm *t = *state;
	int64_t rate;

	assert_int_equal(measure(t, MIG_DIRTY_RATE_PAGE_SAMPLING, 16384), 0);
	tvm_dirtier_start(t, HOT_PAGES, 0);
	rate = measure(t, MIG_DIRTY_RATE_PAGE_SAMPLING, 16384);
	tvm_dirtier_stop(t);
	print_message("page-sampling: %lld MB/s\n", (long long)rate);
	assert_true(rate >= 4 && rate <= 12);
	assert_false(logging(t)); /* it never asked vcpu-proc for the log */
}

static void test_dirty_bitmap(void **state)
{
	struct tvm *t = *state;
	int64_t rate;

	assert_int_equal(measure(t, MIG_DIRTY_RATE_DIRTY_BITMAP, 0), 0);
	tvm_dirtier_start(t, HOT_PAGES, 0);
	rate = measure(t, MIG_DIRTY_RATE_DIRTY_BITMAP, 0);
	tvm_dirtier_stop(t);
	print_message("dirty-bitmap: %lld MB/s\n", (long long)rate);
	/* 8 when the dirtier wrote every hot page in the second (a slow sanitizer build may not).
	 */
	assert_true(rate >= 4 && rate <= 8);
	assert_false(logging(t)); /* on for the measurement, off after it */
	assert_true(harvests(t) >= 4);
}

static void start_refused(struct tvm *t, int64_t calc, int64_t samples,
			  enum mig_dirty_rate_mode mode, int ret, const char *err)
{
	char got[256] = "";

	assert_int_equal(
		mig_dirty_rate_start(t->s, calc, samples >= 0, samples, mode, got, sizeof(got)),
		ret);
	assert_string_equal(got, err);
}

/* QEMU 7.2's checks, in its order and words (seen from QEMU 7.2.22 of Debian 12). */
static void test_refusals(void **state)
{
	struct tvm *t = *state;
	char err[256];

	start_refused(t, 0, -1, MIG_DIRTY_RATE_PAGE_SAMPLING, -ERANGE,
		      "calc-time is out of range[1, 60].");
	start_refused(t, 61, 5, MIG_DIRTY_RATE_DIRTY_RING, -ERANGE,
		      "calc-time is out of range[1, 60].");
	start_refused(t, 1, 5, MIG_DIRTY_RATE_DIRTY_RING, -EINVAL,
		      "either sample-pages or dirty-ring can be specified.");
	start_refused(t, 1, 127, MIG_DIRTY_RATE_PAGE_SAMPLING, -ERANGE,
		      "sample-pages is out of range[128, 16384].");
	start_refused(t, 1, 16385, MIG_DIRTY_RATE_DIRTY_BITMAP, -ERANGE,
		      "sample-pages is out of range[128, 16384].");
	start_refused(t, 1, -1, MIG_DIRTY_RATE_DIRTY_RING, -EOPNOTSUPP,
		      "mode dirty-ring is not enabled, use other method instead.");
	assert_int_equal(mig_dirty_rate_start(t->s, 1, false, 0, MIG_DIRTY_RATE_PAGE_SAMPLING, err,
					      sizeof(err)),
			 0);
	start_refused(t, 1, -1, MIG_DIRTY_RATE_DIRTY_BITMAP, -EBUSY,
		      "the dirty rate is already being measured.");
	measured(t);
}

/* The dirty log is a migration's or a measurement's, never both at once. */
static void test_bitmap_and_migration(void **state)
{
	struct tvm *t = *state;
	struct mig_dirty_rate_info info;
	char err[256];

	/* A destination waiting for its source counts as a migration. */
	assert_int_equal(mig_session_incoming(t->s, "tcp:127.0.0.1:0"), 0);
	start_refused(t, 1, -1, MIG_DIRTY_RATE_DIRTY_BITMAP, -EBUSY,
		      "mode dirty-bitmap needs the dirty log, which a migration uses now: use "
		      "page-sampling, or measure when it ended");
	/* Sampling only reads RAM: it may run beside one. */
	assert_int_equal(mig_dirty_rate_start(t->s, 1, false, 0, MIG_DIRTY_RATE_PAGE_SAMPLING, err,
					      sizeof(err)),
			 0);
	measured(t);
	assert_int_equal(mig_session_cancel(t->s), 0);
	assert_int_equal(mig_session_wait(t->s, 5000), 0);

	/* A measurement of the log holds it: no source starts until it is measured. */
	assert_int_equal(mig_dirty_rate_start(t->s, 1, false, 0, MIG_DIRTY_RATE_DIRTY_BITMAP, err,
					      sizeof(err)),
			 0);
	assert_int_equal(mig_session_migrate(t->s, "tcp:127.0.0.1:1"), -EALREADY);
	info = measured(t);
	assert_int_equal(info.mode, MIG_DIRTY_RATE_DIRTY_BITMAP);
	assert_int_equal(mig_session_migrate(t->s, "tcp:127.0.0.1:1"), 0);
	assert_int_equal(mig_session_wait(t->s, 5000), 0);
}

/* A session freed mid-measurement stops it, and the log is off again. */
static void test_free_while_measuring(void **state)
{
	struct tvm *t = *state;
	char err[256];
	uint64_t t0;

	assert_int_equal(mig_dirty_rate_start(t->s, 60, false, 0, MIG_DIRTY_RATE_DIRTY_BITMAP, err,
					      sizeof(err)),
			 0);
	usleep(100000);
	assert_true(logging(t));
	t0 = mig_now_ns();
	mig_session_free(t->s);
	t->s = NULL;
	assert_true(mig_now_ns() - t0 < 2000000000ull);
	assert_false(logging(t));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_unstarted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_page_sampling, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_bitmap, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bitmap_and_migration, setup, teardown),
		cmocka_unit_test_setup_teardown(test_free_while_measuring, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
