/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The snapshot file's on-disk layout (docs/SNAPSHOT.md, "The file"):
 * snapfile.c writes and checks it; the fuzz harness and its seed generator
 * build headers with it.  Everything else goes through snapfile.h.
 */
#ifndef CLEAVE_SHM_SNAPFILE_FORMAT_H
#define CLEAVE_SHM_SNAPFILE_FORMAT_H

#include <stdint.h>

#include "shm/shm.h"

#define SNAP_MAGIC	  0x31504e5356454c43ull /* "CLEVSNP1" */
#define SNAP_HEADER_SIZE  4096u
#define SNAP_STATE_OFFSET SNAP_HEADER_SIZE
#define SNAP_REGION_ALIGN (2ull << 20)
#define SNAP_F_COMPLETE	  1ull

struct snap_disk_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t offset;
};

/* The header as it lies in the file's first page (the rest is zero). */
struct snap_disk_header {
	uint64_t magic;
	uint32_t version;
	uint32_t page_size;
	uint32_t chunk_size;
	uint32_t nr_regions;
	struct snap_disk_region regions[SHM_MAX_REGIONS];
	uint64_t crc_offset; /* the checksum table: nr_chunks CRC-32C values */
	uint64_t nr_chunks;
	uint64_t state_len;
	uint64_t file_size; /* where the last region ends */
	uint64_t flags;	    /* SNAP_F_COMPLETE once snap_finish() wrote it */
	uint32_t crc_table_crc;
	uint32_t state_crc;
	uint32_t header_crc; /* of this struct with header_crc 0 */
	uint32_t reserved;
};

_Static_assert(sizeof(struct snap_disk_header) <= SNAP_HEADER_SIZE, "header fits its page");

#endif
