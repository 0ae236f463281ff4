// SPDX-License-Identifier: GPL-2.0-only
/*
 * Atomic page bitmaps shared between processes (dirty, received).
 *
 * Single-bit ops are relaxed: a bit carries no data of its own, and whoever
 * consumes a map synchronises through shm_bitmap_fetch_clear_word() (acq_rel)
 * or through the RPC that announces a round.  Scans read word at a time with
 * relaxed atomic loads so that a concurrent setter is never a data race.
 */
#include <string.h>

#include "shm/shm.h"

static inline uint64_t bit_word(uint64_t bit)
{
	return bit / SHM_BITS_PER_WORD;
}

static inline uint64_t bit_mask(uint64_t bit)
{
	return 1ULL << (bit % SHM_BITS_PER_WORD);
}

void shm_bitmap_set(uint64_t *map, uint64_t bit)
{
	__atomic_fetch_or(&map[bit_word(bit)], bit_mask(bit), __ATOMIC_RELAXED);
}

void shm_bitmap_clear(uint64_t *map, uint64_t bit)
{
	__atomic_fetch_and(&map[bit_word(bit)], ~bit_mask(bit), __ATOMIC_RELAXED);
}

bool shm_bitmap_test(const uint64_t *map, uint64_t bit)
{
	return __atomic_load_n(&map[bit_word(bit)], __ATOMIC_RELAXED) & bit_mask(bit);
}

bool shm_bitmap_test_and_set(uint64_t *map, uint64_t bit)
{
	uint64_t mask = bit_mask(bit);

	return __atomic_fetch_or(&map[bit_word(bit)], mask, __ATOMIC_RELAXED) & mask;
}

void shm_bitmap_or_word(uint64_t *map, uint64_t word, uint64_t bits)
{
	__atomic_fetch_or(&map[word], bits, __ATOMIC_RELAXED);
}

void shm_bitmap_andnot_word(uint64_t *map, uint64_t word, uint64_t bits)
{
	__atomic_fetch_and(&map[word], ~bits, __ATOMIC_ACQ_REL);
}

uint64_t shm_bitmap_load_word(const uint64_t *map, uint64_t word)
{
	return __atomic_load_n(&map[word], __ATOMIC_ACQUIRE);
}

/*
 * acq_rel: pairs with whatever the setter published before setting the bit
 * (acquire), and orders our use of the previous bits before a later set
 * observed by the setter (release).
 */
uint64_t shm_bitmap_fetch_clear_word(uint64_t *map, uint64_t word)
{
	return __atomic_exchange_n(&map[word], 0, __ATOMIC_ACQ_REL);
}

/* Mask of the valid bits in the last word of an @nbits map (all ones if full). */
static inline uint64_t last_word_mask(uint64_t nbits)
{
	unsigned int rem = nbits % SHM_BITS_PER_WORD;

	return rem ? (1ULL << rem) - 1 : ~0ULL;
}

uint64_t shm_bitmap_count(const uint64_t *map, uint64_t nbits)
{
	uint64_t full = nbits / SHM_BITS_PER_WORD, n = 0;

	for (uint64_t w = 0; w < full; w++)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&map[w], __ATOMIC_RELAXED));
	if (nbits % SHM_BITS_PER_WORD)
		n += (uint64_t)__builtin_popcountll(__atomic_load_n(&map[full], __ATOMIC_RELAXED) &
						    last_word_mask(nbits));
	return n;
}

/* Shared by find_next (@invert 0) and find_next_zero (@invert all ones). */
static uint64_t bitmap_find(const uint64_t *map, uint64_t nbits, uint64_t start, uint64_t invert)
{
	uint64_t nwords = SHM_BITMAP_WORDS(nbits), w, v;

	if (start >= nbits)
		return nbits;
	w = bit_word(start);
	/* drop the bits below @start in the first word */
	v = (__atomic_load_n(&map[w], __ATOMIC_RELAXED) ^ invert) & (~0ULL << (start % 64));
	for (;;) {
		if (v) {
			uint64_t bit = w * SHM_BITS_PER_WORD + (uint64_t)__builtin_ctzll(v);

			return bit < nbits ? bit : nbits;
		}
		if (++w >= nwords)
			return nbits;
		v = __atomic_load_n(&map[w], __ATOMIC_RELAXED) ^ invert;
	}
}

uint64_t shm_bitmap_find_next(const uint64_t *map, uint64_t nbits, uint64_t start)
{
	return bitmap_find(map, nbits, start, 0);
}

uint64_t shm_bitmap_find_next_zero(const uint64_t *map, uint64_t nbits, uint64_t start)
{
	return bitmap_find(map, nbits, start, ~0ULL);
}

void shm_bitmap_zero(uint64_t *map, uint64_t nbits)
{
	memset(map, 0, SHM_BITMAP_WORDS(nbits) * sizeof(uint64_t));
}

/* Bits past @nbits in the last word stay zero, so a word-wise consumer sees no phantom pages. */
void shm_bitmap_fill(uint64_t *map, uint64_t nbits)
{
	uint64_t nwords = SHM_BITMAP_WORDS(nbits);

	if (!nwords)
		return;
	memset(map, 0xff, nwords * sizeof(uint64_t));
	map[nwords - 1] = last_word_mask(nbits);
}
