// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: a PageMap of a resume handshake (HelloAck), bytes in.
 * The first two bytes give the region's size in pages (1..65536); the rest
 * is the packed cleave.wire.PageMap a destination sent.  mig_pagemap_decode()
 * must refuse anything outside the region and never write past the map.
 * Property: a map it accepts survives the encoder: encode, decode again,
 * same bits.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrator/wire.h"
#include "shm/shm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Cleave__Wire__PageMap *pm, again = CLEAVE__WIRE__PAGE_MAP__INIT;
	uint64_t nbits, words, *map, *map2;

	if (size < 2)
		return 0;
	nbits = ((uint64_t)data[0] | (uint64_t)data[1] << 8) + 1;
	pm = cleave__wire__page_map__unpack(NULL, size - 2, data + 2);
	if (!pm)
		return 0;
	words = SHM_BITMAP_WORDS(nbits);
	/* Exactly the words of the map: a write past it is a heap overflow. */
	map = calloc(words, sizeof(*map));
	map2 = calloc(words, sizeof(*map2));
	if (!map || !map2)
		abort();
	if (mig_pagemap_decode(pm, map, nbits) == 0) {
		if (mig_pagemap_encode(map, nbits, pm->region, &again) ||
		    mig_pagemap_decode(&again, map2, nbits) ||
		    memcmp(map, map2, words * sizeof(*map))) {
			fprintf(stderr,
				"fuzz-pagemap: a decoded map does not survive "
				"encode + decode (%llu pages)\n",
				(unsigned long long)nbits);
			abort();
		}
		mig_pagemap_release(&again);
	}
	free(map2);
	free(map);
	cleave__wire__page_map__free_unpacked(pm, NULL);
	return 0;
}
