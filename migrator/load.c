/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A restore from a file (QMP migrate-incoming "file:PATH", cleave run
 * --incoming file:PATH): the incoming job whose peer is a snapshot file
 * (shm/snapfile.h, docs/SNAPSHOT.md), eager as QEMU's: the VM, waiting in
 * inmigrate, gets its RAM whole first, loaded by multifd-channels reader
 * threads (only the chunks the file holds data for: the rest stays holes
 * of the memfd and costs nothing), every chunk checked against its CRC
 * before a byte of it reaches RAM; then the device state, then it runs.
 *
 * The phases are a destination's (record.h), so a restarted migrator and
 * the launcher's give-up table treat a restore as they treat an incoming
 * migration: before the commit it is done again from the start (the
 * guest never ran: its RAM is cleared and loaded again), after it the
 * guest is resumed.
 */
#include <errno.h>
#include <fcntl.h>
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

struct mig_load {
	struct mig_job job; /* end reason, cancel, commit (the resume) */
	struct mig_session *s;
	char uri[256];
	char name[NAME_MAX + 1];  /* the snapshot, in the directory */
	char what[NAME_MAX + 32]; /* "reading NAME", for errors */
	unsigned int nr_readers;

	/* Worker only, but @file, which the readers use during the pass (distinct chunks). */
	int fd; /* the snapshot, -1 when closed */
	struct snap_file file;
	bool file_open;
	enum mig_phase phase; /* as recorded */
	struct mig_chunk_pass pass;
};

static struct mig_load *load_of(struct mig_job *job)
{
	return (struct mig_load *)((char *)job - offsetof(struct mig_load, job));
}

static void *load_worker(void *arg);
static void load_shut_down(struct mig_job *job, bool job_ends);
static void load_wake(struct mig_job *job);
static void load_free(struct mig_job *job);

static const struct mig_job_ops load_job_ops = {
	.thread_name = "mig/load",
	.run = load_worker,
	.shut_down = load_shut_down,
	.wake = load_wake,
	.free = load_free,
};

int mig_load_alloc(struct mig_job **out, struct mig_session *s, const char *uri)
{
	unsigned int n =
		MIG_SETTING(s, caps) & MIG_RECORD_CAP_MULTIFD ? MIG_SETTING(s, channels) : 1;
	struct mig_load *ld;
	int ret;

	if (strlen(uri) >= sizeof(ld->uri))
		return -EINVAL;
	ld = calloc(1, sizeof(*ld));
	if (!ld)
		return -ENOMEM;
	ret = mig_snapshot_name(&s->env, uri, ld->name, sizeof(ld->name));
	if (ret) {
		free(ld);
		return ret;
	}
	snprintf(ld->what, sizeof(ld->what), "reading %s", ld->name);
	mig_job_init(&ld->job, s, &load_job_ops);
	ld->s = s;
	ld->nr_readers = n;
	ld->fd = -1;
	strcpy(ld->uri, uri);
	*out = &ld->job;
	return 0;
}

static void load_close_file(struct mig_load *ld)
{
	if (ld->file_open)
		snap_close(&ld->file);
	ld->file_open = false;
	if (ld->fd >= 0)
		close(ld->fd);
	ld->fd = -1;
}

static void load_free(struct mig_job *job)
{
	struct mig_load *ld = load_of(job);

	load_close_file(ld);
	mig_chunk_pass_fini(&ld->pass);
	mig_job_fini(&ld->job);
	free(ld);
}

/* No connection: the readers see the abort before their next chunk. */
static void load_shut_down(struct mig_job *job, bool job_ends)
{
	(void)job;
	(void)job_ends;
}

static void load_wake(struct mig_job *job)
{
	(void)job;
}

static void load_set_phase(struct mig_load *ld, enum mig_phase phase)
{
	ld->phase = phase;
	mig_record_set_phase(ld->s->rec, phase);
}

/* Writes the runs of non-zero pages of @buf (chunk @chunk of region @r) into RAM. */
static int load_write_runs(struct mig_load *ld, unsigned int r, uint64_t chunk, const uint8_t *buf)
{
	struct mig_session *s = ld->s;
	static const uint64_t zero[SHM_PAGE_SIZE / 8];
	unsigned int p = 0, written = 0;

	while (p < SNAP_CHUNK_PAGES) {
		unsigned int q = p;

		while (q < SNAP_CHUNK_PAGES && memcmp(buf + q * SHM_PAGE_SIZE, zero, SHM_PAGE_SIZE))
			q++;
		if (q > p) {
			size_t len = (q - p) * SHM_PAGE_SIZE, done = 0;
			off_t off = (off_t)(chunk * SNAP_CHUNK_SIZE + p * SHM_PAGE_SIZE);

			while (done < len) {
				ssize_t n = pwrite(s->env.ram[r].fd, buf + p * SHM_PAGE_SIZE + done,
						   len - done, off + (off_t)done);

				if (n < 0 && errno == EINTR)
					continue;
				if (n <= 0)
					return n < 0 ? -errno : -EIO;
				done += (size_t)n;
			}
			written += q - p;
		}
		p = q + 1; /* q is a zero page (or the end) */
	}
	atomic_fetch_add(&s->ctr.normal, written);
	atomic_fetch_add(&s->ctr.duplicate, SNAP_CHUNK_PAGES - written);
	return 0;
}

/* Chunk @chunk of region @r: read, checked, into RAM (a mig_chunk_fn). */
static int load_chunk(void *arg, unsigned int r, uint64_t chunk, uint8_t *buf)
{
	struct mig_load *ld = arg;
	struct mig_session *s = ld->s;
	unsigned int delay = MIG_HOOK(s, chunk_delay_us);
	int ret;

	if (delay)
		usleep(delay);
	ret = snap_read_chunk(&ld->file, r, chunk, buf);
	if (ret == -EBADMSG) {
		/* First reason wins: the pass's own abort that follows adds nothing. */
		mig_job_abort(&ld->job, ret,
			      "%s: region %u at 0x%llx does not match its checksum (the file is "
			      "corrupted)",
			      ld->name, r, (unsigned long long)(chunk * SNAP_CHUNK_SIZE));
		return ret;
	}
	if (ret == -EIO) {
		mig_job_abort(&ld->job, ret, "%s: the file ends early (truncated)", ld->name);
		return ret;
	}
	if (!ret)
		ret = load_write_runs(ld, r, chunk, buf);
	if (ret)
		return ret;
	mig_session_transferred(s, SNAP_CHUNK_SIZE);
	atomic_fetch_add(&s->ctr.multifd_bytes, SNAP_CHUNK_SIZE);
	return 0;
}

/* Opens and checks the snapshot: complete, intact, of this VM's RAM layout. */
static int load_open(struct mig_load *ld)
{
	const struct shm_ctl_header *h = ld->s->env.ctl->hdr;
	struct shm_ctl_layout layout = {.nr_regions = h->nr_regions};
	char err[256] = "";
	int ret;

	for (unsigned int r = 0; r < h->nr_regions; r++) {
		layout.gpa[r] = h->regions[r].gpa;
		layout.size[r] = h->regions[r].size;
	}
	ld->fd = openat(ld->s->env.snapshot_dirfd, ld->name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (ld->fd < 0) {
		ret = -errno;
		mig_job_abort(&ld->job, ret, "%s/%s: %s", ld->s->env.snapshot_dir, ld->name,
			      strerror(errno));
		return ret;
	}
	ret = snap_open(&ld->file, ld->fd, err, sizeof(err));
	if (!ret) {
		ld->file_open = true;
		ret = snap_check_layout(&ld->file, &layout, err, sizeof(err));
	}
	if (ret) {
		mig_job_abort(&ld->job, ret, "%s: %s", ld->name, err[0] ? err : strerror(-ret));
		return ret;
	}
	ret = mig_chunk_pass_init(&ld->pass, h);
	if (ret)
		mig_job_abort(&ld->job, ret, "out of memory");
	return ret;
}

/* Marks every chunk the file may hold data for (snap_next_data); the rest stays holes. */
static int load_mark(struct mig_load *ld)
{
	struct mig_session *s = ld->s;
	uint64_t chunks = 0;

	for (unsigned int r = 0; r < ld->file.nr_regions; r++) {
		uint64_t from = 0, a, e;
		int ret;

		while ((ret = snap_next_data(&ld->file, r, from, &a, &e)) == 0) {
			for (uint64_t c = a / SNAP_CHUNK_PAGES; c < e / SNAP_CHUNK_PAGES; c++)
				if (!shm_bitmap_test_and_set(ld->pass.todo[r], c))
					chunks++;
			from = e;
		}
		if (ret != -ENXIO) {
			mig_job_abort(&ld->job, ret, "%s: SEEK_DATA: %s", ld->name, strerror(-ret));
			return ret;
		}
	}
	atomic_store(&s->ctr.remaining, chunks * SNAP_CHUNK_SIZE);
	atomic_store(&s->ctr.skipped,
		     (s->env.ctl->hdr->ram_size - chunks * SNAP_CHUNK_SIZE) >> SHM_PAGE_SHIFT);
	return 0;
}

/* RAM, then the device state: the guest is loaded, not run. */
static int load_vm(struct mig_load *ld)
{
	struct mig_session *s = ld->s;
	void *blob = NULL;
	size_t len = 0;
	int ret;

	if (!mig_record_lock(s->rec)) {
		snprintf(s->rec->uri, sizeof(s->rec->uri), "%s", ld->uri);
		mig_record_unlock(s->rec);
	}
	ret = mig_dest_ram_clear(&ld->job);
	if (!ret)
		ret = load_open(ld);
	if (ret)
		return ret;
	mig_session_set_status(s, MIG_STATUS_ACTIVE);
	load_set_phase(ld, MIG_PHASE_DST_RECEIVING);
	ret = load_mark(ld);
	if (!ret)
		ret = mig_chunk_pass_run(&ld->pass, ld->nr_readers, &ld->job, load_chunk, ld,
					 ld->what);
	if (ret)
		return ret;
	atomic_store(&s->ctr.remaining, 0);
	ret = snap_read_state(&ld->file, &blob, &len);
	if (ret) {
		mig_job_abort(&ld->job, ret, "%s: device state: %s", ld->name,
			      ret == -EBADMSG
				      ? "does not match its checksum (the file is corrupted)"
				      : strerror(-ret));
		return ret;
	}
	mig_session_transferred(s, len);
	ret = s->env.ops->load_state(s->env.ops_arg, blob, len);
	free(blob);
	if (ret) {
		mig_job_abort(&ld->job, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc LOAD_STATE: %s",
			      strerror(-ret));
		return ret;
	}
	load_set_phase(ld, MIG_PHASE_DST_LOADED);
	return 0;
}

static int load_run(struct mig_load *ld)
{
	struct mig_session *s = ld->s;
	int ret;

	if (s->resuming) {
		if (!mig_record_lock(s->rec)) {
			ld->phase = s->rec->phase;
			mig_record_unlock(s->rec);
		}
		mig_session_detail_event(s, "restarted");
		log_info("taking over the restore from %s (phase %d)", ld->name, ld->phase);
	}
	if (ld->phase != MIG_PHASE_DST_LOADED && ld->phase != MIG_PHASE_DST_COMMITTED &&
	    ld->phase != MIG_PHASE_DST_RUNNING) {
		ret = load_vm(ld);
		if (ret)
			return ret;
	}
	/* A cancel from here on is refused: the guest is about to run. */
	ret = mig_job_commit(&ld->job);
	if (ret)
		return ret;
	if (ld->phase != MIG_PHASE_DST_RUNNING)
		load_set_phase(ld, MIG_PHASE_DST_COMMITTED);
	/* Again after a restart: the dead migrator's RESUME may not have landed. */
	ret = s->env.ops->resume(s->env.ops_arg);
	if (ret) {
		mig_job_abort(&ld->job, ret == -ETIMEDOUT ? -EIO : ret, "vcpu-proc RESUME: %s",
			      strerror(-ret));
		return ret;
	}
	load_set_phase(ld, MIG_PHASE_DST_RUNNING);
	log_info("restored the VM from %s/%s", s->env.snapshot_dir, ld->name);
	return 0;
}

static void *load_worker(void *arg)
{
	struct mig_load *ld = load_of(arg);
	struct mig_session *s = ld->s;
	char reason[256] = "";
	int ret;

	log_set_thread(load_job_ops.thread_name);
	ret = load_run(ld);
	if (ret) {
		mig_job_abort(&ld->job, ret, "%s", strerror(-ret)); /* no-op when recorded */
		ret = mig_job_error(&ld->job, ret, reason, sizeof(reason));
	}
	load_close_file(ld);
	/* Failed before its commit, the guest never ran: it waits for another incoming. */
	if (ret && ld->phase != MIG_PHASE_NONE && !mig_job_committed(&ld->job))
		load_set_phase(ld, MIG_PHASE_NONE);
	mig_session_finish(s, ret, ret ? reason : NULL);
	return NULL;
}
