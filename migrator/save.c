/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A save to a file (QMP migrate "file:PATH"): the outgoing job whose peer
 * is a snapshot file (shm/snapfile.h, docs/SNAPSHOT.md).  It runs as a
 * live migration does: dirty logging on, a first pass over the allocated
 * parts of RAM, dirty rounds until the rest fits downtime-limit, then the
 * guest paused, the last round, the device state, and the file completed.
 * The guest ends paused (postmigrate), as QEMU leaves it.
 *
 * The file is written by multifd-channels writer threads at fixed offsets,
 * one 64 KiB chunk at a time (a dirty page rewrites its chunk), into a
 * hidden partial file next to the target, renamed over the target only
 * once complete: a failed or cancelled save leaves an older snapshot of
 * the same name as it was.
 *
 * The migrator reaches the snapshot directory only through the fd it
 * opened there before its filter went in (env.snapshot_dirfd), with names
 * of one component (docs/SECURITY.md).
 *
 * A restarted migrator takes over a save as it takes over a migration
 * (the session record says role source, the URI says file:) and writes
 * the file again from the start: the phase it recorded says whether the
 * guest is already paused.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/chunk-pass.h"
#include "migrator/job.h"
#include "migrator/session-internal.h"
#include "shm/snapfile.h"

#define SAVE_MAX_ROUNDS	  64   /* dirty rounds before the guest is paused regardless */
#define SAVE_GOAL_US	  5000 /* stop iterating below this expected downtime */
#define SAVE_EXTRA_ROUNDS 8    /* at most this many rounds once the limit is met */
#define SAVE_PARTIAL_FMT  ".%s.partial"

struct mig_save {
	struct mig_job job; /* end reason, cancel, commit (the rename) */
	struct mig_session *s;
	char uri[256];
	char name[NAME_MAX + 1];     /* the snapshot, in the directory */
	char partial[NAME_MAX + 10]; /* written as this, renamed to @name once complete */
	unsigned int nr_writers;
	char what[NAME_MAX + 32]; /* "writing .NAME.partial", for errors */

	/* Worker only, but @file, which the writers use during a pass (distinct chunks). */
	int fd; /* the partial file, -1 when closed */
	struct snap_file file;
	bool file_open;
	enum mig_phase phase; /* as recorded */
	bool dirty_logging;
	struct mig_chunk_pass pass; /* the chunks the next pass writes */
};

static struct mig_save *save_of(struct mig_job *job)
{
	return (struct mig_save *)((char *)job - offsetof(struct mig_save, job));
}

bool mig_uri_is_file(const char *uri)
{
	return !strncmp(uri, "file:", 5);
}

int mig_snapshot_name(const struct mig_env *env, const char *uri, char *name, size_t len)
{
	const char *path = uri + 5, *dir = env->snapshot_dir, *base;
	size_t dlen;

	if (!mig_uri_is_file(uri))
		return -EINVAL;
	if (!dir || !dir[0] || env->snapshot_dirfd < 0)
		return -ENOTDIR;
	if (strchr(path, ',')) /* QEMU's file:PATH,offset=N */
		return -EOPNOTSUPP;
	dlen = strlen(dir);
	while (dlen > 1 && dir[dlen - 1] == '/')
		dlen--;
	if (strncmp(path, dir, dlen) || path[dlen] != '/')
		return -EXDEV;
	base = path + dlen + 1;
	/* One component, not hidden (partial files are), within NAME_MAX. */
	if (!base[0] || base[0] == '.' || strchr(base, '/') || strlen(base) > NAME_MAX - 9 ||
	    strlen(base) >= len)
		return -EXDEV;
	strcpy(name, base);
	return 0;
}

static void *save_worker(void *arg);
static void save_shut_down(struct mig_job *job, bool job_ends);
static void save_wake(struct mig_job *job);
static void save_free(struct mig_job *job);

static const struct mig_job_ops save_job_ops = {
	.thread_name = "mig/save",
	.run = save_worker,
	.shut_down = save_shut_down,
	.wake = save_wake,
	.free = save_free,
};

int mig_save_alloc(struct mig_job **out, struct mig_session *s, const char *uri)
{
	unsigned int n =
		MIG_SETTING(s, caps) & MIG_RECORD_CAP_MULTIFD ? MIG_SETTING(s, channels) : 1;
	struct mig_save *sv;
	int ret;

	if (strlen(uri) >= sizeof(sv->uri))
		return -EINVAL;
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return -ENOMEM;
	ret = mig_snapshot_name(&s->env, uri, sv->name, sizeof(sv->name));
	if (ret) {
		free(sv);
		return ret;
	}
	snprintf(sv->partial, sizeof(sv->partial), SAVE_PARTIAL_FMT, sv->name);
	snprintf(sv->what, sizeof(sv->what), "writing %s", sv->partial);
	mig_job_init(&sv->job, s, &save_job_ops);
	sv->s = s;
	sv->nr_writers = n;
	sv->fd = -1;
	strcpy(sv->uri, uri);
	*out = &sv->job;
	return 0;
}

static void save_close_file(struct mig_save *sv)
{
	if (sv->file_open)
		snap_close(&sv->file);
	sv->file_open = false;
	if (sv->fd >= 0)
		close(sv->fd);
	sv->fd = -1;
}

static void save_free(struct mig_job *job)
{
	struct mig_save *sv = save_of(job);

	save_close_file(sv);
	mig_chunk_pass_fini(&sv->pass);
	mig_job_fini(&sv->job);
	free(sv);
}

/* No connection: the writers see the abort before their next chunk. */
static void save_shut_down(struct mig_job *job, bool job_ends)
{
	(void)job;
	(void)job_ends;
}

static void save_wake(struct mig_job *job)
{
	(void)job;
}

static int save_call(struct mig_save *sv, int ret, const char *what)
{
	if (ret)
		mig_job_abort(&sv->job, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc %s: %s", what,
			      strerror(-ret));
	return ret;
}

static void save_set_phase(struct mig_save *sv, enum mig_phase phase)
{
	sv->phase = phase;
	mig_record_set_phase(sv->s->rec, phase);
}

/* ---- the writers ------------------------------------------------------------ */

/* remaining counts pages, a chunk written may hold fewer dirty ones: never below zero. */
static void save_remaining_sub(struct mig_session *s, uint64_t bytes)
{
	uint64_t v = atomic_load(&s->ctr.remaining);

	while (!atomic_compare_exchange_weak(&s->ctr.remaining, &v, v > bytes ? v - bytes : 0))
		;
}

/* Chunk @chunk of region @r: read from the RAM memfd, checked and written (a mig_chunk_fn). */
static int save_chunk(void *arg, unsigned int r, uint64_t chunk, uint8_t *buf)
{
	struct mig_save *sv = arg;
	struct mig_session *s = sv->s;
	uint64_t off = chunk * SNAP_CHUNK_SIZE;
	size_t done = 0;
	unsigned int delay = MIG_HOOK(s, chunk_delay_us);
	int ret;

	/* Read, not mapped (migrator/main.c); one copy, so the CRC covers what is written. */
	while (done < SNAP_CHUNK_SIZE) {
		ssize_t n = pread(s->env.ram[r].fd, buf + done, SNAP_CHUNK_SIZE - done,
				  (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	if (delay)
		usleep(delay);
	ret = snap_write_chunk(&sv->file, r, chunk, buf);
	if (ret)
		return ret;
	mig_session_transferred(s, SNAP_CHUNK_SIZE);
	atomic_fetch_add(&s->ctr.multifd_bytes, SNAP_CHUNK_SIZE);
	atomic_fetch_add(&s->ctr.normal, SNAP_CHUNK_PAGES);
	save_remaining_sub(s, SNAP_CHUNK_SIZE);
	return 0;
}

/* Writes every marked chunk with the writer threads; 0 or the job's error. */
static int save_pass(struct mig_save *sv)
{
	return mig_chunk_pass_run(&sv->pass, sv->nr_writers, &sv->job, save_chunk, sv, sv->what);
}

/* ---- what a pass writes ------------------------------------------------------ */

/* The first pass: every chunk that holds allocated RAM; holes stay holes. */
static int save_todo_allocated(struct mig_save *sv)
{
	struct mig_session *s = sv->s;
	uint64_t chunks = 0, n;
	int ret;

	for (unsigned int r = 0; r < sv->pass.nr_regions; r++) {
		ret = mig_chunk_pass_mark_data(&sv->pass, r, s->env.ram[r].fd,
					       s->env.ctl->hdr->regions[r].size, &n);
		if (ret) {
			mig_job_abort(&sv->job, ret, "region %u: SEEK_DATA: %s", r, strerror(-ret));
			return ret;
		}
		chunks += n;
	}
	atomic_store(&s->ctr.remaining, chunks * SNAP_CHUNK_SIZE);
	atomic_store(&s->ctr.skipped,
		     (s->env.ctl->hdr->ram_size - chunks * SNAP_CHUNK_SIZE) >> SHM_PAGE_SHIFT);
	return 0;
}

/*
 * A dirty round: the chunks of every page dirtied since the last harvest
 * (taken from the dirty bitmaps, which forget them).  Returns the pages.
 */
static uint64_t save_todo_dirty(struct mig_save *sv)
{
	const struct shm_ctl_header *h = sv->s->env.ctl->hdr;
	uint64_t pages = 0;

	_Static_assert(SNAP_CHUNK_PAGES == 16, "four chunks per bitmap word");
	for (unsigned int r = 0; r < sv->pass.nr_regions; r++) {
		uint64_t *map = shm_ctl_dirty_bitmap(sv->s->env.ctl, r);

		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(h->regions[r].nr_pages); w++) {
			uint64_t bits = shm_bitmap_load_word(map, w);

			if (!bits)
				continue;
			shm_bitmap_andnot_word(map, w, bits);
			pages += (uint64_t)__builtin_popcountll(bits);
			for (unsigned int q = 0; q < 4; q++)
				if (bits >> (q * 16) & 0xffff)
					shm_bitmap_set(sv->pass.todo[r], w * 4 + q);
		}
	}
	return pages;
}

static uint64_t save_dirty_count(struct mig_save *sv)
{
	const struct shm_ctl_header *h = sv->s->env.ctl->hdr;
	uint64_t n = 0;

	for (unsigned int r = 0; r < h->nr_regions; r++)
		n += shm_bitmap_count(shm_ctl_dirty_bitmap(sv->s->env.ctl, r),
				      h->regions[r].nr_pages);
	return n;
}

/* ---- the job ----------------------------------------------------------------- */

/* Creates the partial file (again, after a takeover) and the todo maps. */
static int save_open(struct mig_save *sv)
{
	const struct shm_ctl_header *h = sv->s->env.ctl->hdr;
	struct shm_ctl_layout layout = {.nr_regions = h->nr_regions};
	int ret;

	for (unsigned int r = 0; r < h->nr_regions; r++) {
		layout.gpa[r] = h->regions[r].gpa;
		layout.size[r] = h->regions[r].size;
	}
	sv->fd = openat(sv->s->env.snapshot_dirfd, sv->partial,
			O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (sv->fd < 0) {
		ret = -errno;
		mig_job_abort(&sv->job, ret, "%s/%s: %s", sv->s->env.snapshot_dir, sv->partial,
			      strerror(errno));
		return ret;
	}
	ret = snap_create(&sv->file, sv->fd, &layout);
	if (ret) {
		mig_job_abort(&sv->job, ret, "%s/%s: %s", sv->s->env.snapshot_dir, sv->partial,
			      ret == -EINVAL ? "RAM regions are not multiples of 64 KiB"
					     : strerror(-ret));
		return ret;
	}
	sv->file_open = true;
	ret = mig_chunk_pass_init(&sv->pass, h);
	if (ret)
		mig_job_abort(&sv->job, ret, "out of memory");
	return ret;
}

/* A fresh save (or the takeover of one whose guest still runs): logging starts clean. */
static int save_start_logging(struct mig_save *sv)
{
	struct mig_session *s = sv->s;
	const struct shm_ctl_header *h = s->env.ctl->hdr;

	if (!mig_record_lock(s->rec)) {
		snprintf(s->rec->uri, sizeof(s->rec->uri), "%s", sv->uri);
		s->rec->round = s->rec->final_round = s->rec->rounds_landed = 0;
		s->rec->pause_ns = 0;
		s->rec->throttle = 0;
		mig_record_unlock(s->rec);
	}
	/* Atomically: vcpu-proc may be setting bits (a harvest in flight). */
	for (unsigned int r = 0; r < h->nr_regions; r++)
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(h->regions[r].nr_pages); w++)
			shm_bitmap_fetch_clear_word(shm_ctl_dirty_bitmap(s->env.ctl, r), w);
	save_set_phase(sv, MIG_PHASE_SRC_PRECOPY);
	mig_session_record_sync(s);
	sv->dirty_logging = true;
	return save_call(sv, s->env.ops->dirty_log(s->env.ops_arg, true), "DIRTY_LOG");
}

/* Dirty rounds until the rest fits downtime-limit (the bandwidth is the file's). */
static int save_converge(struct mig_save *sv, uint64_t t_pass, uint64_t bytes_pass)
{
	struct mig_session *s = sv->s;
	uint64_t prev = 0, bw, n;
	unsigned int extra = 0;
	int ret;

	for (uint64_t round = 1; round <= SAVE_MAX_ROUNDS; round++) {
		uint64_t now = mig_now_ns(), dt = now - t_pass ? now - t_pass : 1;
		uint64_t written = atomic_load(&s->ctr.transferred) - bytes_pass;
		uint64_t dirty, expected_us, limit = MIG_SETTING(s, downtime_limit);

		ret = save_call(sv, s->env.ops->harvest(s->env.ops_arg, &n), "HARVEST");
		if (ret)
			return ret;
		dirty = save_dirty_count(sv);
		bw = written > (1u << 20) ? written * 1000000000ull / dt : 1ull << 30;
		expected_us = dirty * SHM_PAGE_SIZE * 1000000 / bw;
		atomic_store(&s->ctr.bandwidth, bw);
		atomic_store(&s->ctr.remaining, dirty * SHM_PAGE_SIZE);
		atomic_store(&s->ctr.dirty_rate, dirty * 1000000000ull / dt);
		atomic_store(&s->ctr.expected_downtime_ms, (expected_us + 999) / 1000);
		atomic_fetch_add(&s->ctr.rounds, 1);
		mig_session_pass_event(s, round);
		if (expected_us <= limit * 1000 &&
		    (expected_us <= SAVE_GOAL_US || (prev && dirty * 4 >= prev * 3) ||
		     ++extra >= SAVE_EXTRA_ROUNDS))
			return 0;
		prev = dirty;
		t_pass = mig_now_ns();
		bytes_pass = atomic_load(&s->ctr.transferred);
		save_todo_dirty(sv);
		ret = save_pass(sv);
		if (ret)
			return ret;
	}
	return 0;
}

/* The guest paused: the last round, the device state, the file completed and in place. */
static int save_complete(struct mig_save *sv)
{
	struct mig_session *s = sv->s;
	const struct mig_vm_ops *ops = s->env.ops;
	void *blob = NULL;
	size_t len = 0;
	uint64_t n;
	int ret;

	mig_session_set_status(s, MIG_STATUS_DEVICE);
	if (sv->phase != MIG_PHASE_SRC_PAUSED) {
		if (!mig_record_lock(s->rec)) {
			s->rec->pause_ns = mig_now_ns();
			mig_record_unlock(s->rec);
		}
		save_set_phase(sv, MIG_PHASE_SRC_PAUSED);
	}
	ret = save_call(sv, ops->pause(s->env.ops_arg, MIG_PAUSE_FINISH_MIGRATE), "PAUSE");
	if (!ret)
		ret = save_call(sv, ops->harvest(s->env.ops_arg, &n), "HARVEST");
	if (ret)
		return ret;
	atomic_fetch_add(&s->ctr.rounds, 1);
	save_todo_dirty(sv);
	ret = save_pass(sv);
	if (!ret)
		ret = save_call(sv, ops->save_state(s->env.ops_arg, &blob, &len), "SAVE_STATE");
	if (ret)
		return ret;
	ret = snap_write_state(&sv->file, blob, len);
	free(blob);
	if (!ret) {
		mig_session_transferred(s, len);
		ret = snap_finish(&sv->file);
	}
	if (ret) {
		mig_job_abort(&sv->job, ret, "%s: %s", sv->partial,
			      ret == -EFBIG ? "device state too large" : strerror(-ret));
		return ret;
	}
	/* A cancel after this point is refused: the snapshot is taken. */
	ret = mig_job_commit(&sv->job);
	if (ret)
		return ret;
	if (renameat(sv->s->env.snapshot_dirfd, sv->partial, sv->s->env.snapshot_dirfd, sv->name) ||
	    fsync(sv->s->env.snapshot_dirfd)) {
		ret = -errno;
		mig_job_abort(&sv->job, ret, "%s: rename to %s: %s", sv->partial, sv->name,
			      strerror(errno));
		return ret;
	}
	if (!mig_record_lock(s->rec)) {
		s->rec->downtime_ms =
			s->rec->pause_ns ? (mig_now_ns() - s->rec->pause_ns) / 1000000 : 0;
		s->rec->has_downtime = 1;
		mig_record_unlock(s->rec);
	}
	atomic_store(&s->ctr.remaining, 0);
	ret = ops->pause(s->env.ops_arg, MIG_PAUSE_POSTMIGRATE);
	if (ret)
		log_warn("vcpu-proc PAUSE postmigrate: %s", strerror(-ret));
	save_set_phase(sv, MIG_PHASE_NONE);
	log_info("saved the VM to %s/%s", s->env.snapshot_dir, sv->name);
	return 0;
}

static int save_run(struct mig_save *sv)
{
	struct mig_session *s = sv->s;
	uint64_t t0, b0;
	int ret;

	if (s->resuming) {
		if (!mig_record_lock(s->rec)) {
			sv->phase = s->rec->phase;
			mig_record_unlock(s->rec);
		}
		mig_session_detail_event(s, "restarted");
		log_info("taking over the save to %s: writing it again from the start", sv->name);
	}
	ret = save_open(sv);
	if (ret)
		return ret;
	/* A takeover after the pause stays in status device: the guest never ran since. */
	if (sv->phase != MIG_PHASE_SRC_PAUSED) {
		ret = save_start_logging(sv);
		if (ret)
			return ret;
		mig_session_set_status(s, MIG_STATUS_ACTIVE);
	}
	ret = save_todo_allocated(sv);
	if (ret)
		return ret;
	t0 = mig_now_ns();
	b0 = atomic_load(&s->ctr.transferred);
	ret = save_pass(sv);
	if (!ret && sv->phase != MIG_PHASE_SRC_PAUSED)
		ret = save_converge(sv, t0, b0);
	return ret ? ret : save_complete(sv);
}

static void *save_worker(void *arg)
{
	struct mig_save *sv = save_of(arg);
	struct mig_session *s = sv->s;
	const struct mig_vm_ops *ops = s->env.ops;
	char reason[256] = "";
	int ret;

	log_set_thread(save_job_ops.thread_name);
	ret = save_run(sv);
	if (ret) {
		mig_job_abort(&sv->job, ret, "%s", strerror(-ret)); /* no-op when recorded */
		ret = mig_job_error(&sv->job, ret, reason, sizeof(reason));
	}
	save_close_file(sv);
	if (ret && unlinkat(sv->s->env.snapshot_dirfd, sv->partial, 0) && errno != ENOENT)
		log_warn("%s: unlink: %s", sv->partial, strerror(errno));
	/* From PAUSED on the guest was (or may be) paused by us: a failure resumes it. */
	if (ret && sv->phase == MIG_PHASE_SRC_PAUSED) {
		int r = ops->resume(s->env.ops_arg);

		if (r)
			log_err("vcpu-proc RESUME after a failed save: %s", strerror(-r));
	}
	if (ret || sv->phase != MIG_PHASE_NONE)
		save_set_phase(sv, MIG_PHASE_NONE);
	if ((sv->dirty_logging || s->resuming) && ops->dirty_log(s->env.ops_arg, false))
		log_warn("vcpu-proc DIRTY_LOG off failed");
	mig_session_finish(s, ret, ret ? reason : NULL);
	return NULL;
}
