/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The snapshot file: guest RAM at fixed offsets, device state, a checksum
 * per chunk (docs/SNAPSHOT.md).
 *
 *   0           header (one page): magic, version, page and chunk size,
 *               region table, where the rest is, flags, its own checksum
 *   4 KiB       device state (the SAVE_STATE blob), its checksum in the header
 *   ...         the checksum table: one CRC-32C per chunk of every region
 *   2 MiB-aligned, per region: its RAM, page N at offset + N * 4 KiB; an
 *               all-zero chunk is a hole, so RAM never touched costs
 *               nothing on disk and nothing to load
 *
 * Fixed offsets make lazy restore cheap: the chunk of a faulted page is
 * one pread away, checked against its CRC before it reaches the guest.
 * A file is "complete" only once snap_finish() wrote the header last
 * (after the data and an fdatasync): a save cut short never loads.
 *
 * Writers (one per multifd channel) call snap_write_chunk() concurrently
 * for distinct chunks.  Readers may call snap_read_page() from any thread:
 * each thread keeps the last chunk it read and checked.
 */
#ifndef CLEAVE_SHM_SNAPFILE_H
#define CLEAVE_SHM_SNAPFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/shm.h"

#define SNAP_VERSION	 1
#define SNAP_CHUNK_PAGES 16 /* 64 KiB: the unit of a checksum and of a read */
#define SNAP_CHUNK_SIZE	 (SNAP_CHUNK_PAGES * SHM_PAGE_SIZE)
#define SNAP_STATE_MAX	 (16u << 20) /* device state larger than this is refused */

struct snap_region {
	uint64_t gpa;
	uint64_t size;	      /* bytes, a multiple of SNAP_CHUNK_SIZE */
	uint64_t offset;      /* in the file, 2 MiB aligned */
	uint64_t first_chunk; /* index of its first CRC in the table */
};

/*
 * An open snapshot file (writer or reader).  Owns nothing but its table:
 * the fd stays the caller's.
 */
struct snap_file {
	int fd;
	unsigned int nr_regions;
	struct snap_region regions[SHM_MAX_REGIONS];
	uint64_t nr_chunks;
	uint32_t *crc;	     /* one per chunk; writers store distinct entries */
	uint64_t crc_offset; /* where the table lies in the file */
	uint64_t state_len;  /* reader: bytes of device state */
	uint32_t state_crc;  /* reader */
	uint64_t file_size;  /* bytes the complete file spans */
	uint64_t generation; /* reader: tells the per-thread chunk caches of opens apart */
	uint32_t zero_crc;   /* the CRC of an all-zero chunk */
};

/*
 * Starts a snapshot of @layout in @fd (empty, writable): sizes the file
 * (sparse) and writes a header that is not complete yet.  Region sizes
 * must be multiples of SNAP_CHUNK_SIZE.  0 or a negative errno.
 */
int snap_create(struct snap_file *f, int fd, const struct shm_ctl_layout *layout);
/*
 * Writes chunk @chunk (index within region @region) from @data
 * (SNAP_CHUNK_SIZE bytes); an all-zero chunk becomes a hole.  Safe from
 * several threads for distinct chunks.  0 or a negative errno.
 */
int snap_write_chunk(struct snap_file *f, unsigned int region, uint64_t chunk, const void *data);
/* Writes the device state (at most SNAP_STATE_MAX bytes).  Once, before snap_finish. */
int snap_write_state(struct snap_file *f, const void *blob, size_t len);
/*
 * Writes the checksum table, syncs the data, then writes the complete
 * header and syncs again.  Chunks never written read as zero.
 */
int snap_finish(struct snap_file *f);

/*
 * Opens a snapshot for reading: the header must be complete and intact,
 * of this version, with a sane region table inside a file of the size it
 * claims, and the checksum table intact.  On error @err says what is wrong
 * and the return is -EBADMSG (corrupt or unknown), -EPROTO (other version),
 * -ENODATA (not complete: a save cut short), -EIO/-errno.
 */
int snap_open(struct snap_file *f, int fd, char *err, size_t errlen);
/* -EINVAL with @err unless the file's regions are exactly @layout. */
int snap_check_layout(const struct snap_file *f, const struct shm_ctl_layout *layout, char *err,
		      size_t errlen);
/*
 * Page @page of region @region into @buf (SHM_PAGE_SIZE): 1 with data, 0
 * when the page is zero (nothing copied), -EBADMSG when its chunk does not
 * match its checksum, -EIO when the file ends early (truncated, or shrunk
 * since it was opened).  The signature of a fault_source's read_page.
 */
int snap_read_page(struct snap_file *f, unsigned int region, uint64_t page, void *buf);
/*
 * The next pages of region @region at or after page @from that may hold
 * data: [*start, *end), in whole chunks; -ENXIO when the rest is zero.
 * A chunk counts as zero only when the file has a hole there and its
 * checksum is the zero chunk's, so a chunk punched out of a file by
 * accident is still read (and fails its checksum).  The signature of a
 * fault_source's next_data.
 */
int snap_next_data(struct snap_file *f, unsigned int region, uint64_t from, uint64_t *start,
		   uint64_t *end);
/*
 * Chunk @chunk of region @region into @buf (SNAP_CHUNK_SIZE), checked: 0,
 * -EBADMSG when it does not match its checksum, -EIO when the file ends
 * early.  For a reader that loads whole chunks (an eager restore).
 */
int snap_read_chunk(struct snap_file *f, unsigned int region, uint64_t chunk, void *buf);
/* The device state, checked: a malloc'd blob in *blob. */
int snap_read_state(struct snap_file *f, void **blob, size_t *len);
/* Frees the table. */
void snap_close(struct snap_file *f);

/* CRC-32C (Castagnoli), with SSE4.2 where the CPU has it. */
uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len);

#endif
