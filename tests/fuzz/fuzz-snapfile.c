// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: a snapshot file (shm/snapfile.c), which a restore
 * reads from the snapshot directory and whoever could write there made.
 * The input is the header (struct snap_disk_header), then the checksum
 * table's bytes, then the first region's bytes; they go to their places
 * in a sparse memfd of the size the header claims (when it is at most
 * FUZZ_SNAP_MAX; else only as large as what was written).  The harness
 * then seals what the fuzzer cannot: the table's, the state's and the
 * header's checksums, so mutations reach the region table's checks and
 * the readers behind them instead of dying at the first CRC.
 * Property: snap_open() accepts or refuses with an error; every read of an
 * accepted file (data ranges, chunks, a page, the device state) stays
 * inside it and returns 0, 1 or a negative errno.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shm/snapfile-format.h"
#include "shm/snapfile.h"

#define FUZZ_SNAP_MAX	 (64ull << 20) /* sparse: only written pages cost memory */
#define FUZZ_SNAP_CHUNKS 64	       /* chunks read per accepted file, at most */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* @len bytes of @fd at @off into a fresh buffer's CRC; 0 when unreadable or too large. */
static uint32_t fuzz_crc_of(int fd, uint64_t off, uint64_t len)
{
	uint32_t crc = 0;
	uint8_t *buf;

	if (!len || len > (1u << 20) || !(buf = malloc(len)))
		return snap_crc32c(0, "", 0);
	if (pread(fd, buf, len, (off_t)off) == (ssize_t)len)
		crc = snap_crc32c(0, buf, len);
	free(buf);
	return crc;
}

static void fuzz_read_all(struct snap_file *f)
{
	static uint8_t chunk[SNAP_CHUNK_SIZE], page[SHM_PAGE_SIZE];
	unsigned int budget = FUZZ_SNAP_CHUNKS;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	for (unsigned int r = 0; r < f->nr_regions && budget; r++) {
		uint64_t from = 0, a, e;

		while (budget && snap_next_data(f, r, from, &a, &e) == 0) {
			if (e <= from || a < from || e % SNAP_CHUNK_PAGES)
				abort(); /* ranges move forward, in whole chunks */
			for (uint64_t c = a / SNAP_CHUNK_PAGES; c < e / SNAP_CHUNK_PAGES && budget;
			     c++, budget--) {
				ret = snap_read_chunk(f, r, c, chunk);
				if (ret && ret != -EBADMSG && ret != -EIO)
					abort();
			}
			from = e;
		}
		ret = snap_read_page(f, r, 0, page);
		if (ret != 0 && ret != 1 && ret != -EBADMSG && ret != -EIO)
			abort();
	}
	if (!snap_read_state(f, &blob, &len)) {
		if (len != f->state_len)
			abort();
		free(blob);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct snap_disk_header h = {0};
	const uint8_t *rest = data + sizeof(h);
	size_t nrest = size > sizeof(h) ? size - sizeof(h) : 0, ntable;
	struct snap_file f;
	char err[256];
	int fd;

	memcpy(&h, data, size < sizeof(h) ? size : sizeof(h));
	fd = memfd_create("fuzz-snap", MFD_CLOEXEC);
	if (fd < 0)
		return 0;
	if (h.file_size <= FUZZ_SNAP_MAX && ftruncate(fd, (off_t)h.file_size))
		goto out;
	/* The checksum table, then the first region's data, each where the header says. */
	ntable = h.nr_chunks * sizeof(uint32_t) < nrest ? h.nr_chunks * sizeof(uint32_t) : nrest;
	if (ntable && h.crc_offset < FUZZ_SNAP_MAX &&
	    pwrite(fd, rest, ntable, (off_t)h.crc_offset) != (ssize_t)ntable)
		goto out;
	if (nrest > ntable && h.regions[0].offset < FUZZ_SNAP_MAX &&
	    pwrite(fd, rest + ntable, nrest - ntable, (off_t)h.regions[0].offset) !=
		    (ssize_t)(nrest - ntable))
		goto out;
	/* Sealed as a save seals them: what a CRC guards is then what the checks see. */
	if (h.crc_offset < FUZZ_SNAP_MAX)
		h.crc_table_crc = fuzz_crc_of(fd, h.crc_offset, h.nr_chunks * sizeof(uint32_t));
	h.state_crc = fuzz_crc_of(fd, SNAP_STATE_OFFSET, h.state_len);
	h.header_crc = 0;
	h.header_crc = snap_crc32c(0, &h, sizeof(h));
	if (pwrite(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		goto out;
	if (snap_open(&f, fd, err, sizeof(err)) == 0) {
		fuzz_read_all(&f);
		snap_close(&f);
	} else if (!err[0]) {
		abort(); /* every refusal says why */
	}
out:
	close(fd);
	return 0;
}
