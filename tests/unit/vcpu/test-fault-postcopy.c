// SPDX-License-Identifier: GPL-2.0-only
/*
 * The postcopy mode of the guest page-fault service (vcpu-proc/fault.c) on
 * real userfaultfd and shmem, without KVM: test threads play the vCPUs,
 * read(2) into guest RAM plays KVM writing it, and the test (or a placer
 * thread) plays the migration: it takes the requests and places pages.
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

#define PAGES	 4096 /* 16 MiB */
#define RAM_SIZE ((uint64_t)PAGES * SHM_PAGE_SIZE)
#define GPA	 0x100000000ull
#define WORDS	 (SHM_PAGE_SIZE / 8)

struct fixture {
	struct region_table table;
	struct region *r;
	int ram_fd;
	uint8_t *ram; /* guest RAM mapping, registered */
	uint64_t needed[SHM_BITMAP_WORDS(PAGES)];
	uint64_t nr_needed;
	struct fault_service *fs; /* NULL once a test stopped it */
};

/* Every 8th page (p % 8 == 5) is not needed: a hole that reads as zero. */
static bool is_needed(uint64_t p)
{
	return p % 8 != 5;
}

/* Word @w of page @p as version @v of the migration sends it. */
static uint64_t page_word(uint64_t p, uint64_t w, uint64_t v)
{
	return (p << 32) ^ (w * 0x9e3779b97f4a7c15ull) ^ (v << 20) ^ 0x5eed;
}

static void fill_page(uint64_t *buf, uint64_t p, uint64_t v)
{
	for (uint64_t w = 0; w < WORDS; w++)
		buf[w] = page_word(p, w, v);
}

/* Places page @p as version @v. */
static int place_one(struct fixture *f, uint64_t p, uint64_t v)
{
	uint64_t *buf = aligned_alloc(SHM_PAGE_SIZE, SHM_PAGE_SIZE);
	int ret;

	assert_non_null(buf);
	fill_page(buf, p, v);
	ret = fault_place(f->fs, 0, p, 1, buf);
	free(buf);
	return ret;
}

/* Every word of page @p of guest RAM is version @v (from word @from on). */
static bool page_is(const struct fixture *f, uint64_t p, uint64_t v, uint64_t from)
{
	const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);

	for (uint64_t i = from; i < WORDS; i++)
		if (w[i] != page_word(p, i, v))
			return false;
	return true;
}

static void register_needed(struct fixture *f)
{
	region_lock_write(f->r);
	assert_int_equal(fault_region_register_needed(f->fs, f->r, f->needed), 0);
	region_unlock_write(f->r);
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
	for (uint64_t p = 0; p < PAGES; p++) {
		if (is_needed(p)) {
			shm_bitmap_set(f->needed, p);
			f->nr_needed++;
		}
	}
	assert_int_equal(region_table_init(&f->table), 0);
	assert_int_equal(fault_service_start(&f->fs, &f->table, NULL), 0);
	assert_int_equal(region_table_add(&f->table, 0, GPA, RAM_SIZE, f->ram, NULL, &f->r), 0);
	region_unlock_write(f->r);
	register_needed(f);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->fs) {
		region_lock_write(f->r);
		fault_region_unregister(f->fs, f->r, true); /* -ENOENT if a test did it */
		region_unlock_write(f->r);
		assert_int_equal(fault_service_stop(f->fs), 0);
	}
	assert_int_equal(region_table_remove(&f->table, 0), 0);
	region_table_fini(&f->table);
	munmap(f->ram, RAM_SIZE);
	close(f->ram_fd);
	free(f);
	return 0;
}

/* A vCPU touching one word of one page (or KVM: @kernel, read(2) from a pipe into it). */
struct toucher {
	struct fixture *f;
	uint64_t page, word;
	bool kernel;
	uint64_t mark; /* @kernel: what the pipe holds */
	uint64_t seen; /* the word read */
	atomic_bool done;
};

static bool wait_flag(atomic_bool *flag, int ms)
{
	int64_t end = test_now_ms() + ms;

	while (!atomic_load(flag) && test_now_ms() < end)
		test_sleep_ms(1);
	return atomic_load(flag);
}

static void *toucher_one(void *arg)
{
	struct toucher *t = arg;
	uint64_t *word = (uint64_t *)(t->f->ram + t->page * SHM_PAGE_SIZE) + t->word;

	if (t->kernel) {
		int pipefd[2];

		if (pipe(pipefd) == 0) {
			if (write(pipefd[1], &t->mark, sizeof(t->mark)) == sizeof(t->mark) &&
			    read(pipefd[0], word, sizeof(t->mark)) == sizeof(t->mark))
				t->seen = *(volatile uint64_t *)word;
			close(pipefd[0]);
			close(pipefd[1]);
		}
	} else {
		t->seen = *(volatile uint64_t *)word;
	}
	atomic_store(&t->done, true);
	return NULL;
}

/* Takes requests for up to @ms, at most @max, into @out; fails on an error. */
static int take(struct fixture *f, struct fault_page *out, unsigned int max, int ms, bool again)
{
	int n = fault_take_requests(f->fs, out, max, ms, again);

	assert_true(n >= 0);
	return n;
}

/*
 * Two threads fault the same needed page: both stay blocked, the page is
 * requested exactly once, and both read the placed bytes once it is placed;
 * their wait is in the stats.
 */
static void test_fault_waits_for_place(void **state)
{
	struct fixture *f = *state;
	struct toucher t[2] = {{.f = f, .page = 10, .word = 3}, {.f = f, .page = 10, .word = 400}};
	struct fault_page req[4];
	struct fault_stats st;
	pthread_t th[2];

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, toucher_one, &t[i]), 0);
	assert_int_equal(take(f, req, 4, 5000, false), 1);
	assert_int_equal(req[0].region, 0);
	assert_int_equal(req[0].page, 10);
	test_sleep_ms(200); /* the second thread faults meanwhile, if it had not */
	assert_int_equal(take(f, req, 4, 0, false), 0);
	assert_false(atomic_load(&t[0].done));
	assert_false(atomic_load(&t[1].done));
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.requested, 1);
	assert_int_equal(st.missing, f->nr_needed);
	assert_int_equal(place_one(f, 10, 1), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(t[i].seen, page_word(10, t[i].word, 1));
	}
	assert_true(page_is(f, 10, 1, 0));
	assert_int_equal(take(f, req, 4, 0, false), 0);
	fault_service_stats(f->fs, &st);
	print_message("wait p50 %llu ns, max %llu ns\n", (unsigned long long)st.wait_p50_ns,
		      (unsigned long long)st.wait_max_ns);
	assert_int_equal(st.requested, 1);
	assert_int_equal(st.placed, 1);
	assert_int_equal(st.missing, f->nr_needed - 1);
	assert_true(st.wait_p50_ns >= 200000000ull && st.wait_max_ns >= st.wait_p50_ns);
}

/* A hole the migration does not send reads as zero at once, without a request. */
static void test_hole_reads_zero(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {.f = f, .page = 13, .word = 7, .seen = 1};
	struct fault_page req[4];
	struct fault_stats st;
	pthread_t th;

	assert_false(is_needed(13));
	assert_int_equal(pthread_create(&th, NULL, toucher_one, &t), 0);
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(th, NULL);
	assert_int_equal(t.seen, 0);
	*(volatile uint64_t *)(f->ram + 5 * SHM_PAGE_SIZE) = 42; /* written: stays */
	assert_int_equal(*(volatile uint64_t *)(f->ram + 5 * SHM_PAGE_SIZE), 42);
	assert_int_equal(take(f, req, 4, 0, false), 0);
	/* The fault thread counts a fault after it woke its thread. */
	for (int64_t end = test_now_ms() + 5000; test_now_ms() < end; test_sleep_ms(1)) {
		fault_service_stats(f->fs, &st);
		if (st.faults >= 2)
			break;
	}
	assert_int_equal(st.requested, 0);
	assert_int_equal(st.faults, 2);
	assert_int_equal(st.zero, 2);
	assert_int_equal(st.missing, f->nr_needed);
}

/* A page placed before anybody touched it is never requested. */
static void test_placed_before_touch(void **state)
{
	struct fixture *f = *state;
	struct fault_page req[4];
	struct fault_stats st;

	assert_int_equal(place_one(f, 20, 1), 0);
	assert_true(page_is(f, 20, 1, 0));
	assert_int_equal(take(f, req, 4, 0, false), 0);
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.requested, 0);
	assert_int_equal(st.placed, 1);
	assert_int_equal(st.faults, 0);
	assert_int_equal(st.missing, f->nr_needed - 1);
}

/*
 * A page already there stays as it is: placed, then written by the guest,
 * then placed again with other data (in one run with missing pages around
 * it, which go in); and a needed page present before registration.  A
 * misaligned source and zero pages (NULL) go in too; bad ranges are refused.
 */
static void test_place_keeps_guest_write(void **state)
{
	struct fixture *f = *state;
	uint8_t *raw = malloc(4 * SHM_PAGE_SIZE + 8);
	uint64_t *buf = (uint64_t *)(raw + 8); /* misaligned on purpose */
	const uint64_t mark = 0xfeedfacecafebeefull;
	struct fault_stats st;

	assert_non_null(raw);
	assert_int_equal(place_one(f, 31, 1), 0);
	*(volatile uint64_t *)(f->ram + 31 * SHM_PAGE_SIZE) = mark;
	for (uint64_t i = 0; i < 3; i++)
		fill_page(buf + i * WORDS, 30 + i, 2);
	assert_int_equal(fault_place(f->fs, 0, 30, 3, buf), 0);
	assert_int_equal(*(uint64_t *)(f->ram + 31 * SHM_PAGE_SIZE), mark);
	assert_true(page_is(f, 31, 1, 1));
	assert_true(page_is(f, 30, 2, 0));
	assert_true(page_is(f, 32, 2, 0));
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.placed, 3);
	assert_int_equal(st.missing, f->nr_needed - 3);

	/* Present before registration (not punched): placing it changes nothing. */
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, true), 0);
	region_unlock_write(f->r);
	assert_int_equal(pwrite(f->ram_fd, &mark, sizeof(mark), 41 * SHM_PAGE_SIZE + 64),
			 sizeof(mark));
	register_needed(f);
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.missing, f->nr_needed);
	for (uint64_t i = 0; i < 3; i++)
		fill_page(buf + i * WORDS, 40 + i, 3);
	assert_int_equal(fault_place(f->fs, 0, 40, 3, buf), 0);
	/* First, or a page left out would block the reads below. */
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.missing, f->nr_needed - 3);
	assert_int_equal(*(uint64_t *)(f->ram + 41 * SHM_PAGE_SIZE + 64), mark);
	assert_int_equal(*(uint64_t *)(f->ram + 41 * SHM_PAGE_SIZE), 0);
	assert_true(page_is(f, 40, 3, 0));
	assert_true(page_is(f, 42, 3, 0));

	/* Zero pages. */
	assert_int_equal(fault_place(f->fs, 0, 100, 20, NULL), 0);
	for (uint64_t p = 100; p < 120; p++)
		for (uint64_t w = 0; w < WORDS; w++)
			assert_int_equal(((uint64_t *)(f->ram + p * SHM_PAGE_SIZE))[w], 0);

	assert_int_equal(fault_place(f->fs, 0, PAGES - 1, 2, buf), -EINVAL);
	assert_int_equal(fault_place(f->fs, 0, PAGES, 1, buf), -EINVAL);
	assert_int_equal(fault_place(f->fs, 1, 0, 1, buf), -EINVAL);
	assert_int_equal(fault_place(f->fs, REGION_MAX, 0, 1, buf), -EINVAL);
	assert_int_equal(fault_place(f->fs, 0, 0, 0, buf), -EINVAL);
	free(raw);
}

/*
 * A restarted migrator asks again: a page taken and still missing is
 * handed out again, a placed one is not.
 */
static void test_again(void **state)
{
	struct fixture *f = *state;
	struct toucher t[2] = {{.f = f, .page = 50}, {.f = f, .page = 51}};
	struct fault_page req[4];
	pthread_t th[2];

	assert_int_equal(pthread_create(&th[0], NULL, toucher_one, &t[0]), 0);
	assert_int_equal(take(f, req, 4, 5000, false), 1);
	assert_int_equal(req[0].page, 50);
	assert_int_equal(take(f, req, 4, 0, false), 0);
	assert_int_equal(take(f, req, 4, 0, true), 1);
	assert_int_equal(req[0].page, 50);
	assert_int_equal(pthread_create(&th[1], NULL, toucher_one, &t[1]), 0);
	assert_int_equal(take(f, req, 4, 5000, false), 1);
	assert_int_equal(req[0].page, 51);
	assert_int_equal(place_one(f, 51, 1), 0);
	pthread_join(th[1], NULL);
	assert_int_equal(t[1].seen, page_word(51, 0, 1));
	assert_int_equal(take(f, req, 4, 0, true), 1);
	assert_int_equal(req[0].page, 50);
	assert_int_equal(take(f, req, 4, 0, true), 1); /* again: still missing */
	assert_false(atomic_load(&t[0].done));
	assert_int_equal(place_one(f, 50, 1), 0);
	pthread_join(th[0], NULL);
	assert_int_equal(t[0].seen, page_word(50, 0, 1));
	assert_int_equal(take(f, req, 4, 0, true), 0);
}

struct taker {
	struct fixture *f;
	int ret;
	atomic_bool done;
};

static void *taker_main(void *arg)
{
	struct taker *t = arg;
	struct fault_page req[4];

	t->ret = fault_take_requests(t->f->fs, req, 4, 10000, false);
	atomic_store(&t->done, true);
	return NULL;
}

/* No request: a take times out with 0; a take waiting when the service stops gets -ECANCELED. */
static void test_take_timeout_and_stop(void **state)
{
	struct fixture *f = *state;
	struct taker t = {.f = f};
	struct fault_page req[4];
	int64_t t0 = test_now_ms();
	pthread_t th;

	assert_int_equal(take(f, req, 4, 100, false), 0);
	assert_true(test_now_ms() - t0 >= 95);
	assert_int_equal(fault_take_requests(f->fs, req, 0, 0, false), -EINVAL);
	assert_int_equal(pthread_create(&th, NULL, taker_main, &t), 0);
	test_sleep_ms(100);
	assert_false(atomic_load(&t.done));
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, true), 0);
	region_unlock_write(f->r);
	t0 = test_now_ms();
	assert_int_equal(fault_service_stop(f->fs), 0);
	f->fs = NULL;
	/* Woken, not left to its timeout (stop waits for it to leave). */
	assert_true(test_now_ms() - t0 < 5000);
	pthread_join(th, NULL);
	assert_int_equal(t.ret, -ECANCELED);
}

/* KVM writing a needed page (read(2) into it): requested, and done once placed. */
static void test_kernel_write(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {
		.f = f, .page = 60, .word = 5, .kernel = true, .mark = 0x1122334455667788};
	struct fault_page req[4];
	pthread_t th;

	assert_int_equal(pthread_create(&th, NULL, toucher_one, &t), 0);
	assert_int_equal(take(f, req, 4, 5000, false), 1);
	assert_int_equal(req[0].page, 60);
	test_sleep_ms(50);
	assert_false(atomic_load(&t.done));
	assert_int_equal(place_one(f, 60, 1), 0);
	pthread_join(th, NULL);
	assert_int_equal(t.seen, t.mark);
	for (uint64_t w = 0; w < WORDS; w++)
		if (w != 5)
			assert_int_equal(((uint64_t *)(f->ram + 60 * SHM_PAGE_SIZE))[w],
					 page_word(60, w, 1));
}

/* Unregistration without force waits for the last needed page. */
static void test_unregister_busy_until_placed(void **state)
{
	struct fixture *f = *state;
	uint64_t *buf = aligned_alloc(SHM_PAGE_SIZE, 64 * SHM_PAGE_SIZE);
	struct fault_stats st;

	assert_non_null(buf);
	/* Everything but page 1000, 64 pages a call, every other call zero pages. */
	for (uint64_t p = 0; p < PAGES; p += 64) {
		for (uint64_t i = 0; i < 64; i++)
			fill_page(buf + i * WORDS, p + i, 1);
		if (p <= 1000 && 1000 < p + 64) {
			assert_int_equal(fault_place(f->fs, 0, p, 1000 - (unsigned int)p, buf), 0);
			assert_int_equal(fault_place(f->fs, 0, 1001, (unsigned int)(p + 63 - 1000),
						     buf + (1001 - p) * WORDS),
					 0);
		} else {
			assert_int_equal(fault_place(f->fs, 0, p, 64, p / 64 % 2 ? NULL : buf), 0);
		}
	}
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.missing, 1);
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), -EBUSY);
	region_unlock_write(f->r);
	assert_int_equal(place_one(f, 1000, 1), 0);
	fault_service_stats(f->fs, &st);
	assert_int_equal(st.missing, 0);
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), 0);
	region_unlock_write(f->r);
	assert_true(page_is(f, 1000, 1, 0));
	assert_true(page_is(f, 64 * 2 + 3, 1, 0));
	assert_int_equal(*(uint64_t *)(f->ram + (64 + 3) * SHM_PAGE_SIZE), 0);
	free(buf);
}

/* A vCPU touching needed pages at random, checking each. */
struct random_toucher {
	struct fixture *f;
	unsigned int seed;
	int pages;
	atomic_int bad;
};

static void *toucher_random(void *arg)
{
	struct random_toucher *t = arg;

	for (int i = 0; i < t->pages; i++) {
		uint64_t p = (uint64_t)rand_r(&t->seed) % PAGES,
			 w = (uint64_t)rand_r(&t->seed) % WORDS;

		if (!is_needed(p))
			p--;
		if (*(const volatile uint64_t *)((const uint64_t *)(t->f->ram + p * SHM_PAGE_SIZE) +
						 w) != page_word(p, w, 1))
			atomic_fetch_add(&t->bad, 1);
	}
	return NULL;
}

/* The migration: takes requests and places them until told to stop. */
struct placer {
	struct fixture *f;
	atomic_bool stop;
	atomic_int errors;
	int placed;
};

static void *placer_main(void *arg)
{
	struct placer *pl = arg;
	uint64_t *buf = aligned_alloc(SHM_PAGE_SIZE, SHM_PAGE_SIZE);
	struct fault_page req[8];

	while (buf && !atomic_load(&pl->stop)) {
		int n = fault_take_requests(pl->f->fs, req, 8, 20, false);

		if (n < 0)
			atomic_fetch_add(&pl->errors, 1);
		for (int i = 0; i < n; i++) {
			fill_page(buf, req[i].page, 1);
			if (req[i].region != 0 || fault_place(pl->f->fs, 0, req[i].page, 1, buf))
				atomic_fetch_add(&pl->errors, 1);
			pl->placed++;
		}
	}
	free(buf);
	return NULL;
}

/*
 * Two vCPUs touch 1000 random needed pages each while a placer answers the
 * requests: every read sees the placed page; no page is requested twice.
 */
static void test_parallel(void **state)
{
	struct fixture *f = *state;
	struct random_toucher t[2] = {{.f = f, .seed = 1, .pages = 1000},
				      {.f = f, .seed = 2, .pages = 1000}};
	struct placer pl = {.f = f};
	struct fault_stats st;
	pthread_t th[2], pt;

	assert_int_equal(pthread_create(&pt, NULL, placer_main, &pl), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, toucher_random, &t[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(atomic_load(&t[i].bad), 0);
	}
	atomic_store(&pl.stop, true);
	pthread_join(pt, NULL);
	assert_int_equal(atomic_load(&pl.errors), 0);
	fault_service_stats(f->fs, &st);
	print_message("requested %llu, placed %llu, faults %llu; wait p50 %llu ns, p99 %llu ns\n",
		      (unsigned long long)st.requested, (unsigned long long)st.placed,
		      (unsigned long long)st.faults, (unsigned long long)st.wait_p50_ns,
		      (unsigned long long)st.wait_p99_ns);
	assert_true(st.requested > 500 && st.requested <= 2000);
	assert_int_equal(st.requested, (uint64_t)pl.placed);
	assert_int_equal(st.placed, st.requested);
	assert_int_equal(st.missing, f->nr_needed - st.placed);
	assert_true(st.wait_p50_ns > 0 && st.wait_p99_ns >= st.wait_p50_ns);
	for (uint64_t p = 0; p < PAGES; p++) {
		const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);
		unsigned char in;

		/* A touched page is the placed one; the others are still missing. */
		assert_int_equal(mincore(f->ram + p * SHM_PAGE_SIZE, SHM_PAGE_SIZE, &in), 0);
		if ((in & 1) && is_needed(p) && !page_is(f, p, 1, 0))
			fail_msg("page %llu differs (word 0 %llx)", (unsigned long long)p,
				 (unsigned long long)w[0]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fault_waits_for_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hole_reads_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_placed_before_touch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_place_keeps_guest_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_take_timeout_and_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unregister_busy_until_placed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
	};
	int ret;

	log_init("test-fault-postcopy");
	/* A host without userfaultfd for shmem skips, saying why. */
	ret = fault_probe_or_skip(NULL);
	if (ret)
		return ret;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
