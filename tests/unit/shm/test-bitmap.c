// SPDX-License-Identifier: GPL-2.0-only
/*
 * Bitmap operations against a byte-per-bit reference on random data.
 * The seed is printed; set CLEAVE_TEST_SEED to replay a failure.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log/log.h"
#include "shm/shm.h"

static uint64_t rng_state;

/* xorshift64*: deterministic from the printed seed */
static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

struct ref {
	uint64_t nbits;
	uint64_t *map; /* bitmap under test, with one guard word after it */
	uint8_t *bits; /* reference: one byte per bit */
};

#define GUARD 0x5a5a5a5a5a5a5a5aULL

static void ref_alloc(struct ref *r, uint64_t nbits)
{
	uint64_t words = SHM_BITMAP_WORDS(nbits);

	r->nbits = nbits;
	r->map = calloc(words + 1, sizeof(uint64_t));
	r->bits = calloc(nbits ? nbits : 1, 1);
	assert_non_null(r->map);
	assert_non_null(r->bits);
	r->map[words] = GUARD;
}

static void ref_free(struct ref *r)
{
	/* no operation may touch the word after the map */
	assert_int_equal(r->map[SHM_BITMAP_WORDS(r->nbits)], GUARD);
	free(r->map);
	free(r->bits);
}

static uint64_t ref_find(const struct ref *r, uint64_t start, uint8_t val)
{
	for (uint64_t b = start; b < r->nbits; b++)
		if (r->bits[b] == val)
			return b;
	return r->nbits;
}

static void ref_check(const struct ref *r)
{
	uint64_t count = 0;

	for (uint64_t b = 0; b < r->nbits; b++) {
		if (shm_bitmap_test(r->map, b) != r->bits[b])
			fail_msg("bit %llu of %llu: map %d ref %d", (unsigned long long)b,
				 (unsigned long long)r->nbits, shm_bitmap_test(r->map, b),
				 r->bits[b]);
		count += r->bits[b];
	}
	assert_int_equal(shm_bitmap_count(r->map, r->nbits), count);

	/* walking every set bit and every clear bit visits them all, in order */
	for (uint64_t b = shm_bitmap_find_next(r->map, r->nbits, 0), prev = 0; b < r->nbits;
	     b = shm_bitmap_find_next(r->map, r->nbits, b + 1)) {
		assert_int_equal(b, ref_find(r, prev, 1));
		prev = b + 1;
	}
	for (int i = 0; i < 64; i++) {
		uint64_t start = r->nbits ? rnd() % (r->nbits + 70) : rnd() % 70;

		assert_int_equal(shm_bitmap_find_next(r->map, r->nbits, start),
				 start >= r->nbits ? r->nbits : ref_find(r, start, 1));
		assert_int_equal(shm_bitmap_find_next_zero(r->map, r->nbits, start),
				 start >= r->nbits ? r->nbits : ref_find(r, start, 0));
	}
	/* edges: bit 0, the last bit, at and past the end */
	assert_int_equal(shm_bitmap_find_next(r->map, r->nbits, 0), ref_find(r, 0, 1));
	if (r->nbits) {
		assert_int_equal(shm_bitmap_find_next(r->map, r->nbits, r->nbits - 1),
				 ref_find(r, r->nbits - 1, 1));
		assert_int_equal(shm_bitmap_find_next_zero(r->map, r->nbits, r->nbits - 1),
				 ref_find(r, r->nbits - 1, 0));
	}
	assert_int_equal(shm_bitmap_find_next(r->map, r->nbits, r->nbits), r->nbits);
	assert_int_equal(shm_bitmap_find_next(r->map, r->nbits, UINT64_MAX), r->nbits);
	assert_int_equal(shm_bitmap_find_next_zero(r->map, r->nbits, r->nbits + 1), r->nbits);
}

/* One random operation, applied to both the map and the reference. */
static void ref_random_op(struct ref *r)
{
	uint64_t b = rnd() % r->nbits, w = b / 64, bits, got;
	bool was;

	switch (rnd() % 7) {
	case 0:
		shm_bitmap_set(r->map, b);
		r->bits[b] = 1;
		break;
	case 1:
		shm_bitmap_clear(r->map, b);
		r->bits[b] = 0;
		break;
	case 2:
		was = shm_bitmap_test_and_set(r->map, b);
		assert_int_equal(was, r->bits[b]);
		r->bits[b] = 1;
		break;
	case 3:
		bits = rnd() & rnd(); /* about a quarter of the bits */
		/* callers never set bits past nbits: mask them like a real harvest */
		for (uint64_t i = 0; i < 64; i++) {
			if (w * 64 + i >= r->nbits)
				bits &= ~(1ULL << i);
			else if (bits & (1ULL << i))
				r->bits[w * 64 + i] = 1;
		}
		shm_bitmap_or_word(r->map, w, bits);
		break;
	case 4:
		got = shm_bitmap_fetch_clear_word(r->map, w);
		for (uint64_t i = 0; i < 64 && w * 64 + i < r->nbits; i++) {
			assert_int_equal(!!(got & (1ULL << i)), r->bits[w * 64 + i]);
			r->bits[w * 64 + i] = 0;
		}
		assert_int_equal(r->map[w], 0);
		break;
	case 5:
		bits = rnd() & rnd();
		for (uint64_t i = 0; i < 64 && w * 64 + i < r->nbits; i++)
			if (bits & (1ULL << i))
				r->bits[w * 64 + i] = 0;
		shm_bitmap_andnot_word(r->map, w, bits);
		got = shm_bitmap_load_word(r->map, w);
		for (uint64_t i = 0; i < 64 && w * 64 + i < r->nbits; i++)
			assert_int_equal(!!(got & (1ULL << i)), r->bits[w * 64 + i]);
		break;
	default:
		assert_int_equal(shm_bitmap_test(r->map, b), r->bits[b]);
		break;
	}
}

static const uint64_t sizes[] = {1, 2, 63, 64, 65, 127, 128, 1000, 4097, (1 << 16) + 3};

static void test_random_ops(void **state)
{
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct ref r;
		uint64_t nops = sizes[s] * 4 < 20000 ? sizes[s] * 4 : 20000;

		ref_alloc(&r, sizes[s]);
		ref_check(&r);
		for (int round = 0; round < 4; round++) {
			for (uint64_t i = 0; i < nops; i++)
				ref_random_op(&r);
			ref_check(&r);
		}
		ref_free(&r);
	}
}

static void test_fill_zero(void **state)
{
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		struct ref r;
		uint64_t words;

		ref_alloc(&r, sizes[s]);
		words = SHM_BITMAP_WORDS(r.nbits);
		shm_bitmap_fill(r.map, r.nbits);
		memset(r.bits, 1, r.nbits);
		ref_check(&r);
		/* nothing set past nbits in the last word */
		if (r.nbits % 64)
			assert_int_equal(r.map[words - 1] >> (r.nbits % 64), 0);
		shm_bitmap_zero(r.map, r.nbits);
		memset(r.bits, 0, r.nbits);
		ref_check(&r);
		ref_free(&r);
	}
}

/* A full-size map (4 GiB of pages): dense and sparse patterns, scans and count. */
static void test_large_map(void **state)
{
	const uint64_t nbits = 1ULL << 20;
	struct ref r;

	ref_alloc(&r, nbits);
	for (int density = 1; density <= 50; density += 49) {
		shm_bitmap_zero(r.map, nbits);
		for (uint64_t b = 0; b < nbits; b++) {
			r.bits[b] = rnd() % 100 < (uint64_t)density;
			if (r.bits[b])
				shm_bitmap_set(r.map, b);
		}
		ref_check(&r);
	}
	ref_free(&r);
}

/* Bits past @nbits in the last word (a sloppy or_word) are never reported. */
static void test_tail_ignored(void **state)
{
	uint64_t map[2] = {0, 0};

	shm_bitmap_or_word(map, 1, ~0ULL << 8); /* bits 72..127 of a 70-bit map */
	assert_int_equal(shm_bitmap_count(map, 70), 0);
	assert_int_equal(shm_bitmap_find_next(map, 70, 0), 70);
	assert_int_equal(shm_bitmap_find_next(map, 70, 69), 70);
	shm_bitmap_set(map, 69);
	assert_int_equal(shm_bitmap_find_next(map, 70, 0), 69);
	assert_int_equal(shm_bitmap_count(map, 70), 1);
	assert_int_equal(shm_bitmap_find_next_zero(map, 70, 69), 70);
	assert_int_equal(shm_bitmap_find_next(map, 0, 0), 0);
	assert_int_equal(shm_bitmap_count(map, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_ops),
		cmocka_unit_test(test_fill_zero),
		cmocka_unit_test(test_large_map),
		cmocka_unit_test(test_tail_ignored),
	};
	const char *env = getenv("CLEAVE_TEST_SEED");
	uint64_t seed = env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();

	if (!seed)
		seed = 1; /* xorshift's one fixed point */
	printf("test-shm-bitmap: seed %llu (CLEAVE_TEST_SEED to replay)\n",
	       (unsigned long long)seed);
	rng_state = seed;
	log_init("test-shm-bitmap");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
