/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Saving a VM to a file (migrate "file:PATH", migrator/save.c) with the
 * test VM: an idle and a dirtying guest saved with 1 and 4 writers and
 * read back through shm/snapfile.c page by page; a cancel that leaves an
 * older snapshot of the same name as it was; a file system that refuses
 * the file, and a rename that fails once the guest is paused (the guest
 * runs again, nothing is left behind); a migrator killed in the middle of
 * a save, whose successor writes it again; the URIs that are refused.
 * Restores (migrate-incoming "file:") of those files into a VM waiting in
 * inmigrate: RAM equal and sparse, whatever the VM's RAM held before;
 * every refusal (corrupted chunk or state, incomplete, truncated, another
 * layout, missing, a VM that already ran) with the guest never resumed; a
 * cancel; a migrator killed in the middle of a restore.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "migrator/session-internal.h"
#include "shm/snapfile.h"
#include "tvm.h"

#define R0_PAGES 4096 /* 16 MiB */
#define R1_PAGES 1024 /* 4 MiB at 4 GiB */

static const struct shm_ctl_layout layout = {
	.nr_regions = 2,
	.gpa = {0, 4ull << 30},
	.size = {R0_PAGES * SHM_PAGE_SIZE, R1_PAGES *SHM_PAGE_SIZE},
};

struct fixture {
	struct tvm vm;
	struct tvm dst; /* a VM waiting in inmigrate for a restore */
	char dir[64];
	int dirfd;
	char uri[128];
	char path[128];
};

static int setup_hooks(void **state, const struct mig_hooks *hooks)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/cleave-save-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	f->dirfd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (f->dirfd < 0 || tvm_init_snapshot(&f->vm, &layout, hooks, f->dir, f->dirfd) ||
	    tvm_init_snapshot(&f->dst, &layout, hooks, f->dir, f->dirfd))
		return -1;
	snprintf(f->uri, sizeof(f->uri), "file:%s/vm.snap", f->dir);
	snprintf(f->path, sizeof(f->path), "%s/vm.snap", f->dir);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_hooks(state, NULL);
}

#ifdef CLEAVE_FAULT_INJECTION
/* Each writer sleeps 2 ms per chunk: a save of 20 MiB lasts long enough to be interrupted. */
static int setup_slow(void **state)
{
	return setup_hooks(state, TVM_HOOKS(.chunk_delay_us = 2000));
}
#else
#define setup_slow setup
#endif

static int teardown(void **state)
{
	struct fixture *f = *state;
	char cmd[128];

	tvm_fini(&f->vm);
	tvm_fini(&f->dst);
	close(f->dirfd);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", f->dir);
	free(f);
	return 0;
}

static void configure(struct fixture *f, unsigned int writers)
{
	struct mig_caps caps = {.multifd = writers > 1, .events = true};
	struct mig_params params = {.multifd_channels = writers, .downtime_limit = 300};

	assert_int_equal(mig_session_set_caps(f->vm.s, &caps), 0);
	assert_int_equal(mig_session_set_params(f->vm.s, &params), 0);
}

/* Some data, some zero pages written, the rest never touched (holes). */
static void fill(struct fixture *f)
{
	tvm_fill(&f->vm, 0, 0, 512, false);
	tvm_fill(&f->vm, 0, 512, 64, true);
	tvm_fill(&f->vm, 0, 3000, 17, false);
	tvm_fill(&f->vm, 1, 100, 300, false);
}

static enum mig_status save_wait(struct fixture *f, struct mig_info *info)
{
	assert_int_equal(mig_session_wait(f->vm.s, 60000), 0);
	mig_session_query(f->vm.s, info);
	return info->status;
}

/* The file holds exactly the VM's RAM and its state, and nothing else is left in the directory. */
static void assert_file_is_vm(struct fixture *f)
{
	struct snap_file sf;
	char err[256] = "";
	uint8_t page[SHM_PAGE_SIZE], ram[SHM_PAGE_SIZE];
	void *blob = NULL;
	size_t len = 0;
	struct dirent *de;
	DIR *d;
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	if (snap_open(&sf, fd, err, sizeof(err)))
		fail_msg("snap_open: %s", err);
	assert_int_equal(snap_check_layout(&sf, &layout, err, sizeof(err)), 0);
	for (unsigned int r = 0; r < layout.nr_regions; r++)
		for (uint64_t p = 0; p < layout.size[r] / SHM_PAGE_SIZE; p++) {
			int ret = snap_read_page(&sf, r, p, page);

			assert_true(ret == 0 || ret == 1);
			if (!ret)
				memset(page, 0, sizeof(page));
			assert_int_equal(pread(f->vm.ram[r].fd, ram, sizeof(ram),
					       (off_t)(p * SHM_PAGE_SIZE)),
					 sizeof(ram));
			if (memcmp(page, ram, sizeof(page)))
				fail_msg("region %u page %lu differs from the VM's", r,
					 (unsigned long)p);
		}
	assert_int_equal(snap_read_state(&sf, &blob, &len), 0);
	assert_int_equal(len, 12);
	assert_memory_equal(blob, "vmstate:cpu0", 12);
	free(blob);
	snap_close(&sf);
	close(fd);
	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "vm.snap"))
			fail_msg("left in the snapshot directory: %s", de->d_name);
	closedir(d);
}

/* @fresh: this process started the save (a takeover saw none of its start). */
static void assert_saved_as(struct fixture *f, bool fresh)
{
	struct mig_info info;

	if (save_wait(f, &info) != MIG_STATUS_COMPLETED)
		fail_msg("save: %s '%s'", mig_status_name(info.status), info.error_desc);
	/* The guest ends paused, as QEMU leaves it after a migration to a file. */
	assert_int_equal(f->vm.last_pause_state, MIG_PAUSE_POSTMIGRATE);
	assert_int_equal(f->vm.resume_calls, 0);
	assert_false(f->vm.dirty_log);
	assert_true(info.has_downtime);
	assert_true(tvm_saw_event(&f->vm, "setup") == fresh);
	assert_true(tvm_saw_event(&f->vm, "active") == fresh);
	assert_true(tvm_saw_event(&f->vm, "restarted") == !fresh);
	assert_true(tvm_saw_event(&f->vm, "device"));
	assert_true(tvm_saw_event(&f->vm, "completed"));
	assert_file_is_vm(f);
}

static void assert_saved(struct fixture *f)
{
	assert_saved_as(f, true);
}

static void save_idle(struct fixture *f, unsigned int writers)
{
	struct stat st;

	configure(f, writers);
	fill(f);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
	/* Sparse: the 64 + 4078 pages never written (or zero) cost nothing on disk. */
	assert_int_equal(stat(f->path, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <=
		    (512 + 17 + 300 + 64) * SHM_PAGE_SIZE + (1u << 20));
}

static void test_save_idle_1(void **state)
{
	save_idle(*state, 1);
}

static void test_save_idle_4(void **state)
{
	save_idle(*state, 4);
}

/* The guest keeps writing while the file is written: dirty rounds, then the last one paused. */
static void test_save_dirty(void **state)
{
	struct fixture *f = *state;

	configure(f, 4);
	fill(f);
	tvm_dirtier_start(&f->vm, 2048, 0);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
	assert_true(f->vm.passes >= 1);
	tvm_dirtier_stop(&f->vm);
}

/* A second save over the first: the file is replaced as a whole. */
static void test_save_twice(void **state)
{
	struct fixture *f = *state;

	configure(f, 2);
	fill(f);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
	tvm_fill(&f->vm, 0, 0, 512, true); /* the guest zeroed what it had */
	tvm_fill(&f->vm, 1, 1000, 24, false);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
}

static void write_old_snapshot(struct fixture *f)
{
	int fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "old", 3), 3);
	close(fd);
}

static void assert_old_snapshot(struct fixture *f)
{
	char buf[8] = "";
	int fd = open(f->path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(read(fd, buf, sizeof(buf)), 3);
	assert_memory_equal(buf, "old", 3);
	close(fd);
}

/* Nothing but the old snapshot in the directory. */
static void assert_only_old(struct fixture *f)
{
	struct dirent *de;
	DIR *d = opendir(f->dir);

	assert_non_null(d);
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") &&
		    strcmp(de->d_name, "vm.snap"))
			fail_msg("left in the snapshot directory: %s", de->d_name);
	closedir(d);
	assert_old_snapshot(f);
}

static void wait_written(struct fixture *f, uint64_t bytes)
{
	struct mig_info info;

	for (int i = 0; i < 2000; i++) {
		mig_session_query(f->vm.s, &info);
		if (info.transferred >= bytes)
			return;
		usleep(1000);
	}
	fail_msg("the save wrote %lu bytes in 2 s", (unsigned long)info.transferred);
}

static void test_save_cancel(void **state)
{
	struct fixture *f = *state;
	struct mig_info info;

	TVM_NEEDS_HOOKS();
	configure(f, 1);
	fill(f);
	write_old_snapshot(f);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	wait_written(f, 4 * SNAP_CHUNK_SIZE);
	assert_int_equal(mig_session_cancel(f->vm.s), 0);
	assert_int_equal(save_wait(f, &info), MIG_STATUS_CANCELLED);
	assert_string_equal(info.error_desc, "migration cancelled");
	assert_only_old(f);
	assert_false(f->vm.paused); /* cancelled before the pause: the guest never stopped */
	assert_false(f->vm.dirty_log);
}

/* The file system refuses the file (over RLIMIT_FSIZE): failed with why, nothing left. */
static void test_save_file_refused(void **state)
{
	struct fixture *f = *state;
	struct rlimit old, small = {.rlim_cur = 1 << 20};
	struct mig_info info;

	configure(f, 2);
	fill(f);
	write_old_snapshot(f);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	small.rlim_max = old.rlim_max;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_int_equal(save_wait(f, &info), MIG_STATUS_FAILED);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, SIG_DFL);
	assert_non_null(strstr(info.error_desc, ".vm.snap.partial"));
	assert_non_null(strstr(info.error_desc, "too large"));
	assert_only_old(f);
	assert_false(f->vm.paused);
	assert_false(f->vm.dirty_log);
}

/* The rename fails after the guest was paused: it runs again, the partial file goes. */
static void test_save_rename_fails(void **state)
{
	struct fixture *f = *state;
	struct mig_info info;
	char sub[160];

	configure(f, 2);
	fill(f);
	snprintf(sub, sizeof(sub), "%s/x", f->path);
	assert_int_equal(mkdir(f->path, 0700), 0); /* the target is a non-empty directory */
	assert_int_equal(mkdir(sub, 0700), 0);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_int_equal(save_wait(f, &info), MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, "rename to vm.snap"));
	assert_int_equal(f->vm.resume_calls, 1);
	assert_false(f->vm.paused);
	assert_false(f->vm.dirty_log);
	assert_int_equal(access(sub, F_OK), 0);
	snprintf(sub, sizeof(sub), "%s/.vm.snap.partial", f->dir);
	assert_int_equal(access(sub, F_OK), -1);
}

static void test_save_refused_uris(void **state)
{
	struct fixture *f = *state;
	struct tvm plain;
	char uri[256];
	/* Elsewhere, hidden, in a subdirectory, no name, the directory itself, a way out. */
	static const char *const bad[] = {
		"/../elsewhere.snap", "/.hidden", "/sub/x", "/", "", "/../x"};

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(uri, sizeof(uri), "file:%s%s", f->dir, bad[i]);
		assert_int_equal(mig_session_migrate(f->vm.s, uri), -EXDEV);
	}
	assert_int_equal(mig_session_migrate(f->vm.s, "file:/tmp/vm.snap"), -EXDEV);
	snprintf(uri, sizeof(uri), "%s,offset=4096", f->uri);
	assert_int_equal(mig_session_migrate(f->vm.s, uri), -EOPNOTSUPP);
	/* A migrator with no snapshot directory saves nowhere. */
	assert_int_equal(tvm_init(&plain, &layout, NULL, 0), 0);
	assert_int_equal(mig_session_migrate(plain.s, f->uri), -ENOTDIR);
	tvm_fini(&plain);
	/* Nothing was started, nothing written. */
	assert_int_equal(f->vm.pause_calls, 0);
	assert_int_equal(access(f->path, F_OK), -1);
}

/*
 * A migrator killed in the middle of a save (a child process on the same
 * control segment and RAM, SIGKILLed): the next one takes the save over
 * from the record and writes the whole file again.
 */
static void test_save_takeover(void **state)
{
	struct fixture *f = *state;
	char partial[160];
	struct stat st;
	pid_t pid;
	int status;

	TVM_NEEDS_HOOKS();
	configure(f, 2);
	tvm_fill(&f->vm, 0, 0, R0_PAGES, false); /* 256 chunks: 256 ms for 2 writers */
	snprintf(partial, sizeof(partial), "%s/.vm.snap.partial", f->dir);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		if (mig_session_migrate(f->vm.s, f->uri))
			_exit(1);
		pause();
		_exit(0);
	}
	/* The child's writers are under way: 2 ms per chunk each. */
	for (int i = 0; i < 4000 && (stat(partial, &st) || st.st_blocks * 512 < (1 << 20)); i++)
		usleep(1000);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(mig_record_phase(f->vm.s->rec), MIG_PHASE_SRC_PRECOPY);
	assert_int_equal(mig_session_resume(f->vm.s), 1);
	assert_saved_as(f, false);
}

/*
 * Killed once the guest was paused (phase PAUSED, the child in its
 * SAVE_STATE): the next migrator writes the whole file again and the guest
 * stays paused throughout, never resumed.
 */
static void test_save_takeover_paused(void **state)
{
	struct fixture *f = *state;
	struct mig_info info;
	pid_t pid;
	int status;

	configure(f, 2);
	fill(f);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		f->vm.save_delay_ms = 10000; /* this copy of the VM only: the child's SAVE_STATE */
		if (mig_session_migrate(f->vm.s, f->uri))
			_exit(1);
		pause();
		_exit(0);
	}
	for (int i = 0; i < 5000 && mig_record_phase(f->vm.s->rec) != MIG_PHASE_SRC_PAUSED; i++)
		usleep(1000);
	assert_int_equal(mig_record_phase(f->vm.s->rec), MIG_PHASE_SRC_PAUSED);
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(mig_session_resume(f->vm.s), 1);
	if (save_wait(f, &info) != MIG_STATUS_COMPLETED)
		fail_msg("save: %s '%s'", mig_status_name(info.status), info.error_desc);
	/* Status device all along: this process saw only the restart and the end. */
	assert_true(tvm_saw_event(&f->vm, "restarted"));
	assert_true(tvm_saw_event(&f->vm, "completed"));
	assert_false(tvm_saw_event(&f->vm, "active"));
	assert_int_equal(f->vm.last_pause_state, MIG_PAUSE_POSTMIGRATE);
	assert_int_equal(f->vm.resume_calls, 0);
	assert_false(f->vm.dirty_log);
	assert_file_is_vm(f);
}

/*
 * The file system fills up in the middle of the first pass (a 2 MiB
 * tmpfs, root only): failed with why, the older snapshot kept, nothing
 * else left, the guest never paused.
 */
static void test_save_disk_full(void **state)
{
	struct fixture *f = *state, *full;
	struct mig_info info;
	char dir[] = "/tmp/cleave-full-XXXXXX";

	assert_non_null(mkdtemp(dir));
	if (geteuid() || mount("tmpfs", dir, "tmpfs", 0, "size=2m")) {
		rmdir(dir);
		print_message("no tmpfs of our own here (not root?): a full disk not tested\n");
		skip();
	}
	/* The fixture, pointed at the small file system. */
	full = calloc(1, sizeof(*full));
	assert_non_null(full);
	snprintf(full->dir, sizeof(full->dir), "%s", dir);
	full->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(full->dirfd >= 0);
	assert_int_equal(tvm_init_snapshot(&full->vm, &layout, NULL, dir, full->dirfd), 0);
	snprintf(full->uri, sizeof(full->uri), "file:%s/vm.snap", dir);
	snprintf(full->path, sizeof(full->path), "%s/vm.snap", dir);
	configure(full, 2);
	fill(full); /* 3.3 MiB of data */
	write_old_snapshot(full);
	assert_int_equal(mig_session_migrate(full->vm.s, full->uri), 0);
	assert_int_equal(save_wait(full, &info), MIG_STATUS_FAILED);
	if (!strstr(info.error_desc, "writing .vm.snap.partial: region ") ||
	    !strstr(info.error_desc, "No space left on device"))
		fail_msg("error: '%s'", info.error_desc);
	assert_only_old(full);
	assert_int_equal(full->vm.pause_calls, 0);
	assert_false(full->vm.dirty_log);
	tvm_fini(&full->vm);
	close(full->dirfd);
	free(full);
	(void)f;
	assert_int_equal(umount(dir), 0);
	rmdir(dir);
}

/* ---- restores ------------------------------------------------------------------- */

static enum mig_status restore(struct fixture *f, struct mig_info *info)
{
	assert_int_equal(mig_session_incoming(f->dst.s, f->uri), 0);
	assert_int_equal(mig_session_wait(f->dst.s, 60000), 0);
	mig_session_query(f->dst.s, info);
	return info->status;
}

static void save_filled(struct fixture *f, unsigned int channels)
{
	configure(f, channels);
	fill(f);
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
}

static void assert_restored(struct fixture *f)
{
	struct mig_info info;
	struct stat st;

	if (restore(f, &info) != MIG_STATUS_COMPLETED)
		fail_msg("restore: %s '%s'", mig_status_name(info.status), info.error_desc);
	assert_int_equal(f->dst.loads, 1);
	assert_int_equal(f->dst.blob_len, 12);
	assert_memory_equal(f->dst.blob, "vmstate:cpu0", 12);
	assert_int_equal(f->dst.resume_calls, 1);
	assert_int_equal(tvm_ram_cmp(&f->vm, &f->dst), 0);
	assert_true(tvm_saw_event(&f->dst, "active"));
	assert_true(tvm_saw_event(&f->dst, "completed"));
	assert_int_equal(mig_record_phase(f->dst.s->rec), MIG_PHASE_DST_RUNNING);
	/* Sparse: the pages the snapshot holds as zero or holes allocate nothing. */
	assert_int_equal(fstat(f->dst.ram[0].fd, &st), 0);
	assert_true((uint64_t)st.st_blocks * 512 <= (512 + 17 + 64) * SHM_PAGE_SIZE + (1u << 20));
}

static void restore_channels(struct fixture *f, unsigned int channels)
{
	struct mig_caps caps = {.multifd = channels > 1, .events = true};
	struct mig_params params = {.multifd_channels = channels};

	assert_int_equal(mig_session_set_caps(f->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(f->dst.s, &params), 0);
}

static void test_restore_1(void **state)
{
	struct fixture *f = *state;

	save_filled(f, 1);
	restore_channels(f, 1);
	assert_restored(f);
}

/* 4 readers, into a VM whose RAM held other bytes where the snapshot has none. */
static void test_restore_4_over_garbage(void **state)
{
	struct fixture *f = *state;

	save_filled(f, 4);
	tvm_fill(&f->dst, 0, 700, 100, false);
	tvm_fill(&f->dst, 1, 0, 50, false);
	restore_channels(f, 4);
	assert_restored(f);
}

/* A byte of @path at @off flipped. */
static void corrupt(const char *path, off_t off)
{
	uint8_t b;
	int fd = open(path, O_RDWR | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &b, 1, off), 1);
	b ^= 0x10;
	assert_int_equal(pwrite(fd, &b, 1, off), 1);
	close(fd);
}

/* Refused with @why, the guest neither loaded nor resumed; the VM may try again. */
static void assert_refused(struct fixture *f, const char *why)
{
	struct mig_info info;

	if (restore(f, &info) != MIG_STATUS_FAILED || !strstr(info.error_desc, why))
		fail_msg("restore: %s '%s', wanted failed '%s'", mig_status_name(info.status),
			 info.error_desc, why);
	assert_int_equal(f->dst.loads, 0);
	assert_int_equal(f->dst.resume_calls, 0);
	assert_int_equal(mig_record_phase(f->dst.s->rec), MIG_PHASE_NONE);
}

static void test_restore_refusals(void **state)
{
	struct fixture *f = *state;
	struct snap_file sf;
	char err[256], other[160];
	uint64_t r0;
	int fd;

	save_filled(f, 2);
	restore_channels(f, 2);
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_int_equal(snap_open(&sf, fd, err, sizeof(err)), 0);
	r0 = sf.regions[0].offset;
	snap_close(&sf);
	close(fd);

	/* A VM that already ran is never overwritten. */
	f->dst.run_state_override = 2; /* running */
	assert_refused(f, "not waiting for an incoming migration");
	f->dst.run_state_override = 0;
	/* A chunk of data, then the device state, corrupted. */
	corrupt(f->path, (off_t)(r0 + 3 * SHM_PAGE_SIZE + 7));
	assert_refused(f, "region 0 at 0x0 does not match its checksum");
	corrupt(f->path, (off_t)(r0 + 3 * SHM_PAGE_SIZE + 7));
	corrupt(f->path, 4096 + 3);
	assert_refused(f, "device state: does not match its checksum");
	corrupt(f->path, 4096 + 3);
	/* Truncated. */
	assert_int_equal(truncate(f->path, (off_t)(r0 + SNAP_CHUNK_SIZE)), 0);
	assert_refused(f, "truncated");
	/* Another VM's snapshot, a missing file, a save cut short (no complete header). */
	unlink(f->path);
	assert_refused(f, "No such file");
	snprintf(other, sizeof(other), "%s/.vm.snap.partial", f->dir);
	fd = open(other, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	{
		const struct shm_ctl_layout small = {.nr_regions = 1, .size = {1 << 20}};
		struct snap_file w;

		assert_int_equal(snap_create(&w, fd, &small), 0);
		assert_int_equal(rename(other, f->path), 0);
		assert_refused(f, "not complete");
		assert_int_equal(snap_write_state(&w, "x", 1), 0);
		assert_int_equal(snap_finish(&w), 0);
		snap_close(&w);
	}
	close(fd);
	assert_refused(f, "the snapshot has 1 RAM regions, this VM 2");
	/* The file is right again: the same VM restores. */
	save_filled(f, 2);
	assert_restored(f);
}

/* vcpu-proc refuses the device state: failed with its reason, the guest not resumed. */
static void test_restore_load_state_refused(void **state)
{
	struct fixture *f = *state;

	save_filled(f, 2);
	restore_channels(f, 2);
	f->dst.fail_load = -EINVAL;
	assert_refused(f, "vcpu-proc LOAD_STATE: Invalid argument");
	/* Nothing was loaded, so the same VM may try again once vcpu-proc takes it. */
	f->dst.fail_load = 0;
	assert_restored(f);
}

static void test_restore_cancel(void **state)
{
	struct fixture *f = *state;
	struct mig_info info;

	TVM_NEEDS_HOOKS();
	save_filled(f, 1);
	restore_channels(f, 1);
	assert_int_equal(mig_session_incoming(f->dst.s, f->uri), 0);
	for (int i = 0; i < 2000; i++) {
		mig_session_query(f->dst.s, &info);
		if (info.transferred >= 2 * SNAP_CHUNK_SIZE)
			break;
		usleep(1000);
	}
	assert_int_equal(mig_session_cancel(f->dst.s), 0);
	assert_int_equal(mig_session_wait(f->dst.s, 10000), 0);
	mig_session_query(f->dst.s, &info);
	assert_int_equal(info.status, MIG_STATUS_CANCELLED);
	assert_int_equal(f->dst.resume_calls, 0);
	assert_int_equal(f->dst.loads, 0);
}

/* A migrator killed while it restores: the next one clears RAM and loads it again. */
static void test_restore_takeover(void **state)
{
	struct fixture *f = *state;
	struct mig_info info;
	pid_t pid;
	int status;

	TVM_NEEDS_HOOKS();
	configure(f, 2);
	tvm_fill(&f->vm, 0, 0, R0_PAGES, false); /* 256 chunks: 256 ms for 2 readers */
	assert_int_equal(mig_session_migrate(f->vm.s, f->uri), 0);
	assert_saved(f);
	restore_channels(f, 2);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		if (mig_session_incoming(f->dst.s, f->uri))
			_exit(1);
		pause();
		_exit(0);
	}
	/* Its readers are under way once RAM fills. */
	for (int i = 0; i < 4000; i++) {
		struct stat st;

		if (!fstat(f->dst.ram[0].fd, &st) && st.st_blocks * 512 >= (1 << 20))
			break;
		usleep(1000);
	}
	kill(pid, SIGKILL);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(mig_record_phase(f->dst.s->rec), MIG_PHASE_DST_RECEIVING);
	assert_int_equal(mig_session_resume(f->dst.s), 1);
	assert_int_equal(mig_session_wait(f->dst.s, 60000), 0);
	mig_session_query(f->dst.s, &info);
	if (info.status != MIG_STATUS_COMPLETED)
		fail_msg("restore: %s '%s'", mig_status_name(info.status), info.error_desc);
	assert_int_equal(info.restarts, 1);
	assert_int_equal(f->dst.loads, 1);
	assert_int_equal(f->dst.resume_calls, 1);
	assert_int_equal(tvm_ram_cmp(&f->vm, &f->dst), 0);
	assert_true(tvm_saw_event(&f->dst, "restarted"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_idle_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_idle_4, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_dirty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_twice, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_cancel, setup_slow, teardown),
		cmocka_unit_test_setup_teardown(test_save_file_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_rename_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_refused_uris, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_takeover, setup_slow, teardown),
		cmocka_unit_test_setup_teardown(test_save_takeover_paused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_disk_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_4_over_garbage, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_load_state_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_restore_cancel, setup_slow, teardown),
		cmocka_unit_test_setup_teardown(test_restore_takeover, setup_slow, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
