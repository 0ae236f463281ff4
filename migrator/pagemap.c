/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Page maps on the wire (wire.proto PageMap): what a destination reports
 * it holds when a migration resumes.  Runs of set bits as (first, count)
 * pairs are compact for the usual maps (long allocated ranges, or a few
 * scattered in-flight pages); a dense random map goes as raw words.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "migrator/wire.h"
#include "shm/shm.h"

int mig_pagemap_encode(const uint64_t *map, uint64_t nbits, uint32_t region,
		       Cleave__Wire__PageMap *pm)
{
	uint64_t nruns = 0, words = SHM_BITMAP_WORDS(nbits), *runs;

	cleave__wire__page_map__init(pm);
	pm->region = region;
	for (uint64_t p = shm_bitmap_find_next(map, nbits, 0); p < nbits; nruns++)
		p = shm_bitmap_find_next(map, nbits, shm_bitmap_find_next_zero(map, nbits, p));
	if (!nruns)
		return 0;
	if (nruns * 2 > words) { /* runs would take more room than the bitmap */
		pm->raw.data = malloc(words * sizeof(uint64_t));
		if (!pm->raw.data)
			return -ENOMEM;
		for (uint64_t w = 0; w < words; w++)
			((uint64_t *)pm->raw.data)[w] = shm_bitmap_load_word(map, w);
		pm->raw.len = words * sizeof(uint64_t);
		return 0;
	}
	runs = malloc(nruns * 2 * sizeof(*runs));
	if (!runs)
		return -ENOMEM;
	pm->runs = runs;
	for (uint64_t p = shm_bitmap_find_next(map, nbits, 0); p < nbits;) {
		uint64_t end = shm_bitmap_find_next_zero(map, nbits, p);

		runs[pm->n_runs++] = p;
		runs[pm->n_runs++] = end - p;
		p = shm_bitmap_find_next(map, nbits, end);
	}
	return 0;
}

void mig_pagemap_release(Cleave__Wire__PageMap *pm)
{
	free(pm->runs);
	free(pm->raw.data);
	pm->runs = NULL;
	pm->raw.data = NULL;
	pm->n_runs = 0;
	pm->raw.len = 0;
}

int mig_pagemap_decode(const Cleave__Wire__PageMap *pm, uint64_t *map, uint64_t nbits)
{
	uint64_t words = SHM_BITMAP_WORDS(nbits);

	if (pm->raw.len) {
		if (pm->n_runs || pm->raw.len != words * sizeof(uint64_t))
			return -EPROTO;
		memcpy(map, pm->raw.data, pm->raw.len);
		if (nbits % 64 && map[words - 1] >> (nbits % 64))
			return -EPROTO; /* bits past the region */
		return 0;
	}
	if (pm->n_runs % 2)
		return -EPROTO;
	for (size_t i = 0; i < pm->n_runs; i += 2) {
		uint64_t first = pm->runs[i], count = pm->runs[i + 1];

		if (!count || first >= nbits || count > nbits - first)
			return -EPROTO;
		for (uint64_t p = first; p < first + count; p++)
			map[p / 64] |= 1ULL << (p % 64);
	}
	return 0;
}
