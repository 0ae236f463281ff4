// SPDX-License-Identifier: GPL-2.0-only
/*
 * Concurrency: setters (vcpu-proc's dirty harvest) race a consumer that
 * fetch-and-clears words (the migrator's sync).  No bit may be lost, and
 * test_and_set must hand each bit to exactly one thread.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "shm/shm.h"

#define NBITS	 (1u << 18)
#define NSETTERS 3
#define ROUNDS	 10

struct race {
	uint64_t *map;		/* shared, under test */
	uint64_t *consumed;	/* consumer's private copy of what it took */
	int setters_running;	/* atomic; consumer stops after it reaches 0 */
	pthread_barrier_t go;	/* lines the threads up so they hit the same words at once */
	uint64_t won[NSETTERS]; /* test_and_set successes per thread */
};

struct setter_arg {
	struct race *race;
	unsigned int id;
};

static void *setter(void *p)
{
	struct setter_arg *a = p;

	pthread_barrier_wait(&a->race->go);
	/* interleaved strides so neighbouring bits of one word come from different threads */
	for (uint64_t b = a->id; b < NBITS; b += NSETTERS)
		shm_bitmap_set(a->race->map, b);
	/* word-wise too, as a harvest of KVM's dirty log would */
	for (uint64_t w = a->id; w < NBITS / 64; w += NSETTERS)
		shm_bitmap_or_word(a->race->map, w, 0x8000000000000001ULL);
	__atomic_fetch_sub(&a->race->setters_running, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *consumer(void *p)
{
	struct race *r = p;
	bool last;

	pthread_barrier_wait(&r->go);
	do {
		/* read before the sweep: a sweep that starts after the last setter ends is final */
		last = __atomic_load_n(&r->setters_running, __ATOMIC_ACQUIRE) == 0;
		for (uint64_t w = 0; w < NBITS / 64; w++)
			r->consumed[w] |= shm_bitmap_fetch_clear_word(r->map, w);
	} while (!last);
	return NULL;
}

/* One race; repeated because a lost update needs an unlucky interleaving. */
static void set_vs_fetch_clear_once(void)
{
	struct race r = {.setters_running = NSETTERS};
	struct setter_arg args[NSETTERS];
	pthread_t st[NSETTERS], ct;

	r.map = calloc(NBITS / 64, sizeof(uint64_t));
	r.consumed = calloc(NBITS / 64, sizeof(uint64_t));
	assert_non_null(r.map);
	assert_non_null(r.consumed);
	assert_int_equal(pthread_barrier_init(&r.go, NULL, NSETTERS + 1), 0);
	assert_int_equal(pthread_create(&ct, NULL, consumer, &r), 0);
	for (unsigned int i = 0; i < NSETTERS; i++) {
		args[i] = (struct setter_arg){&r, i};
		assert_int_equal(pthread_create(&st[i], NULL, setter, &args[i]), 0);
	}
	for (unsigned int i = 0; i < NSETTERS; i++)
		pthread_join(st[i], NULL);
	pthread_join(ct, NULL);
	pthread_barrier_destroy(&r.go);

	assert_int_equal(shm_bitmap_count(r.map, NBITS), 0);
	assert_int_equal(shm_bitmap_count(r.consumed, NBITS), NBITS);
	free(r.map);
	free(r.consumed);
}

static void test_set_vs_fetch_clear(void **state)
{
	for (int round = 0; round < ROUNDS; round++)
		set_vs_fetch_clear_once();
}

static struct race tas;

static void *tas_thread(void *p)
{
	unsigned int id = (unsigned int)(uintptr_t)p;

	for (uint64_t b = 0; b < NBITS; b++)
		if (!shm_bitmap_test_and_set(tas.map, b))
			tas.won[id]++;
	return NULL;
}

static void test_and_set_once(void)
{
	pthread_t t[NSETTERS];
	uint64_t total = 0;

	memset(&tas, 0, sizeof(tas));
	tas.map = calloc(NBITS / 64, sizeof(uint64_t));
	assert_non_null(tas.map);
	for (uintptr_t i = 0; i < NSETTERS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, tas_thread, (void *)i), 0);
	for (unsigned int i = 0; i < NSETTERS; i++) {
		pthread_join(t[i], NULL);
		total += tas.won[i];
	}
	assert_int_equal(total, NBITS);
	assert_int_equal(shm_bitmap_count(tas.map, NBITS), NBITS);
	free(tas.map);
}

static void test_test_and_set_unique(void **state)
{
	for (int round = 0; round < ROUNDS; round++)
		test_and_set_once();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_set_vs_fetch_clear),
		cmocka_unit_test(test_test_and_set_unique),
	};

	log_init("test-shm-bitmap-threads");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
