// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: a control segment another process wrote, bytes in.
 * The bytes become the start of a sealed memfd, which shm_ctl_open() maps
 * and validates.  The memfd is as large as the header's total_size when
 * that is page aligned and at most FUZZ_CTL_MAX (so the size check passes
 * and the rest is reached), else the input rounded up to whole pages.
 * Property: everything an accepted header points at lies inside the
 * mapping and outside the read-only header page: each bitmap's first and
 * last word and the session area's first and last byte are written.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/shm.h"

#define FUZZ_CTL_MAX (8u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t fuzz_ctl_size(const uint8_t *data, size_t size)
{
	struct shm_ctl_header h;
	uint64_t n;

	if (size >= offsetof(struct shm_ctl_header, ram_size)) {
		memset(&h, 0, sizeof(h));
		memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
		if (h.total_size && h.total_size <= FUZZ_CTL_MAX &&
		    h.total_size % SHM_PAGE_SIZE == 0)
			return h.total_size;
	}
	n = (size + SHM_PAGE_SIZE - 1) / SHM_PAGE_SIZE * SHM_PAGE_SIZE;
	return n < 2 * SHM_PAGE_SIZE ? 2 * SHM_PAGE_SIZE : n;
}

static void fuzz_ctl_touch(struct shm_ctl *c)
{
	uint64_t *(*const maps[])(const struct shm_ctl *, unsigned int) = {
		shm_ctl_dirty_bitmap, shm_ctl_received_bitmap, shm_ctl_round_bitmap};
	volatile uint8_t *session = shm_ctl_session(c);

	for (unsigned int r = 0; r < c->hdr->nr_regions; r++) {
		uint64_t pages = c->hdr->regions[r].nr_pages;

		for (size_t m = 0; m < sizeof(maps) / sizeof(maps[0]); m++) {
			uint64_t *map = maps[m](c, r);

			if (!pages)
				continue;
			shm_bitmap_set(map, 0);
			shm_bitmap_set(map, pages - 1);
			if (!shm_bitmap_test(map, pages - 1))
				abort();
			shm_bitmap_clear(map, 0);
			shm_bitmap_clear(map, pages - 1);
		}
	}
	session[0] = 1;
	session[c->hdr->session_size - 1] = 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t len = fuzz_ctl_size(data, size);
	struct shm_ctl c;
	int fd;

	fd = memfd_create("cleave-ctl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0 || ftruncate(fd, (off_t)len) ||
	    pwrite(fd, data, size < len ? size : len, 0) < 0 ||
	    fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		perror("fuzz-ctl: memfd");
		abort();
	}
	if (shm_ctl_open(&c, fd)) {
		close(fd);
		return 0;
	}
	fuzz_ctl_touch(&c);
	shm_ctl_close(&c);
	return 0;
}
