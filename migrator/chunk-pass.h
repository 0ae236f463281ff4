/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A pass over the 64 KiB chunks of guest RAM (shm/snapfile.h's unit) by a
 * number of threads, for the jobs whose peer is a snapshot file: a save
 * writes the chunks it marked (save.c), a restore reads them (load.c).
 * The threads claim chunk numbers in order, a few at a time, so a pass
 * over a sparse map costs little more than its marked chunks.
 */
#ifndef CLEAVE_MIG_CHUNK_PASS_H
#define CLEAVE_MIG_CHUNK_PASS_H

#include <stdint.h>

#include "shm/shm.h"

struct mig_job;

/* Does chunk @chunk of region @region with the thread's buffer @buf (SNAP_CHUNK_SIZE bytes). */
typedef int (*mig_chunk_fn)(void *arg, unsigned int region, uint64_t chunk, uint8_t *buf);

struct mig_chunk_pass {
	unsigned int nr_regions;
	uint64_t nr_chunks[SHM_MAX_REGIONS];
	uint64_t total;
	/* A bit per chunk to do: set by the job between runs, read-only during one. */
	uint64_t *todo[SHM_MAX_REGIONS];

	/* During mig_chunk_pass_run only. */
	_Atomic uint64_t next; /* the next chunk number (over all regions) to claim */
	struct mig_job *job;
	mig_chunk_fn fn;
	void *arg;
	const char *what; /* "writing FILE": in errors */
};

/* The chunks of @h's regions (each a multiple of SNAP_CHUNK_SIZE), none marked. */
int mig_chunk_pass_init(struct mig_chunk_pass *p, const struct shm_ctl_header *h);
void mig_chunk_pass_fini(struct mig_chunk_pass *p);
/* Marks the chunks of region @r that hold allocated bytes of @fd (SEEK_DATA); their count. */
int mig_chunk_pass_mark_data(struct mig_chunk_pass *p, unsigned int r, int fd, uint64_t size,
			     uint64_t *chunks);
/*
 * Runs @fn on every marked chunk with @threads threads, then clears the
 * marks.  A failing @fn aborts @job (its error names the chunk), which
 * stops the others before their next claim.  0, or -ECANCELED when @job
 * was aborted (by @fn or from outside).  Thread 0 checkpoints the
 * session's counters into the record every 100 ms.
 */
int mig_chunk_pass_run(struct mig_chunk_pass *p, unsigned int threads, struct mig_job *job,
		       mig_chunk_fn fn, void *arg, const char *what);

#endif
