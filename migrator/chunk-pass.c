/* SPDX-License-Identifier: GPL-2.0-only */
/* Passes over RAM chunks by several threads (see chunk-pass.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "migrator/chunk-pass.h"
#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "shm/snapfile.h"

#define PASS_CLAIM_CHUNKS   16		 /* chunks a thread claims at once: 1 MiB */
#define PASS_RECORD_SYNC_NS 100000000ull /* counters into the record every 100 ms */

int mig_chunk_pass_init(struct mig_chunk_pass *p, const struct shm_ctl_header *h)
{
	memset(p, 0, sizeof(*p));
	p->nr_regions = h->nr_regions;
	for (unsigned int r = 0; r < h->nr_regions; r++) {
		if (h->regions[r].size % SNAP_CHUNK_SIZE) {
			mig_chunk_pass_fini(p);
			return -EINVAL;
		}
		p->nr_chunks[r] = h->regions[r].size / SNAP_CHUNK_SIZE;
		p->total += p->nr_chunks[r];
		p->todo[r] = calloc(SHM_BITMAP_WORDS(p->nr_chunks[r]) ?: 1, sizeof(uint64_t));
		if (!p->todo[r]) {
			mig_chunk_pass_fini(p);
			return -ENOMEM;
		}
	}
	return 0;
}

void mig_chunk_pass_fini(struct mig_chunk_pass *p)
{
	for (unsigned int r = 0; r < SHM_MAX_REGIONS; r++)
		free(p->todo[r]);
	memset(p, 0, sizeof(*p));
}

int mig_chunk_pass_mark_data(struct mig_chunk_pass *p, unsigned int r, int fd, uint64_t size,
			     uint64_t *chunks)
{
	uint64_t pos = 0, a, e;
	int ret;

	*chunks = 0;
	while ((ret = shm_memfd_next_data(fd, pos, size, &a, &e)) == 0) {
		for (uint64_t c = a / SNAP_CHUNK_SIZE; c * SNAP_CHUNK_SIZE < e; c++)
			if (!shm_bitmap_test_and_set(p->todo[r], c))
				(*chunks)++;
		pos = e;
	}
	return ret == -ENXIO ? 0 : ret;
}

/* Global chunk number @g -> region and chunk within it. */
static void pass_locate(const struct mig_chunk_pass *p, uint64_t g, unsigned int *r,
			uint64_t *chunk)
{
	unsigned int i = 0;

	while (g >= p->nr_chunks[i])
		g -= p->nr_chunks[i++];
	*r = i;
	*chunk = g;
}

struct pass_thread {
	struct mig_chunk_pass *p;
	pthread_t thread;
	bool syncs; /* thread 0: checkpoints the counters */
};

static void *pass_thread_main(void *arg)
{
	struct pass_thread *t = arg;
	struct mig_chunk_pass *p = t->p;
	uint8_t *buf = aligned_alloc(SHM_PAGE_SIZE, SNAP_CHUNK_SIZE);
	uint64_t last_sync = mig_now_ns();
	int ret = buf ? 0 : -ENOMEM;

	if (ret)
		mig_job_abort(p->job, ret, "%s threads: %s", p->what, strerror(-ret));
	while (!ret && !mig_job_aborted(p->job)) {
		uint64_t first = atomic_fetch_add(&p->next, PASS_CLAIM_CHUNKS);

		if (first >= p->total)
			break;
		for (uint64_t g = first; !ret && g < first + PASS_CLAIM_CHUNKS && g < p->total;
		     g++) {
			unsigned int r;
			uint64_t c;

			pass_locate(p, g, &r, &c);
			if (!shm_bitmap_test(p->todo[r], c))
				continue;
			ret = p->fn(p->arg, r, c, buf);
			if (ret)
				mig_job_abort(p->job, ret, "%s: region %u at 0x%" PRIx64 ": %s",
					      p->what, r, (uint64_t)(c * SNAP_CHUNK_SIZE),
					      strerror(-ret));
			/* So that a restarted migrator reports about what this one did. */
			if (t->syncs && mig_now_ns() - last_sync > PASS_RECORD_SYNC_NS) {
				last_sync = mig_now_ns();
				mig_session_record_sync(p->job->s);
			}
		}
	}
	free(buf);
	return NULL;
}

int mig_chunk_pass_run(struct mig_chunk_pass *p, unsigned int threads, struct mig_job *job,
		       mig_chunk_fn fn, void *arg, const char *what)
{
	struct pass_thread *t = calloc(threads, sizeof(*t));
	unsigned int started = 0;
	int ret = t ? 0 : -ENOMEM;

	atomic_store(&p->next, 0);
	p->job = job;
	p->fn = fn;
	p->arg = arg;
	p->what = what;
	for (unsigned int i = 0; !ret && i < threads; i++) {
		t[i].p = p;
		t[i].syncs = i == 0;
		ret = -pthread_create(&t[i].thread, NULL, pass_thread_main, &t[i]);
		if (!ret)
			started++;
	}
	if (ret)
		mig_job_abort(job, ret, "%s threads: %s", what, strerror(-ret));
	for (unsigned int i = 0; i < started; i++)
		pthread_join(t[i].thread, NULL);
	free(t);
	for (unsigned int r = 0; r < p->nr_regions; r++)
		shm_bitmap_zero(p->todo[r], p->nr_chunks[r]);
	return mig_job_aborted(job) ? -ECANCELED : 0;
}
