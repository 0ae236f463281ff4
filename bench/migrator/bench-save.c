/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A save to a file (migrate "file:", migrator/save.c) and an eager restore
 * from it (migrate-incoming "file:", migrator/load.c) with the engine's
 * test VM: 1 GiB of guest RAM holding DATA MiB (default 256) of data, the
 * rest never touched, saved by 1, 2 and 4 writer threads into DIR
 * (default /var/tmp: a disk, not tmpfs), and restored by 1, 2 and 4
 * readers into a VM waiting in inmigrate.  Beside each, in the same run,
 * the host's ceiling for the same bytes without cleave, 64 KiB at a time
 * from one thread: for the save, pread of the data from the memfd and
 * pwrite into a fresh file at the same offsets, then one fdatasync (what
 * any save must at least do); for the restore, pread from the file and
 * pwrite into a fresh memfd.  Medians of RUNS (default 5); the page cache
 * is warm (the data was just written).  Then QEMU 7.2 with the same data
 * (qemu_rows()).
 *
 * usage: bench-migrator-save [RUNS] [DIR] [DATA_MIB]
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "qemu-ref.h"
#include "shm/snapfile.h"
#include "tvm.h"

#define RAM_SIZE (1ull << 30)
#define MAX_RUNS 32

static const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {RAM_SIZE}};

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-migrator-save: %s: %s\n", what, strerror(err));
	exit(1);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* One save with @writers threads: its time in ns; *disk: the file's allocated bytes. */
static uint64_t save_once(struct tvm *t, const char *dir, unsigned int writers, uint64_t *disk)
{
	struct mig_caps caps = {.multifd = writers > 1};
	struct mig_params params = {.multifd_channels = writers, .downtime_limit = 300};
	struct mig_info info;
	char uri[256], path[256];
	struct stat st;
	uint64_t t0, t1;
	int ret;

	if (mig_session_set_caps(t->s, &caps) || mig_session_set_params(t->s, &params))
		die("settings", EINVAL);
	snprintf(uri, sizeof(uri), "file:%s/bench.snap", dir);
	snprintf(path, sizeof(path), "%s/bench.snap", dir);
	unlink(path);
	t0 = mig_now_ns();
	ret = mig_session_migrate(t->s, uri);
	if (ret)
		die("migrate", -ret);
	if (mig_session_wait(t->s, 600000))
		die("wait", ETIMEDOUT);
	t1 = mig_now_ns();
	mig_session_query(t->s, &info);
	if (info.status != MIG_STATUS_COMPLETED) {
		fprintf(stderr, "save: %s: %s\n", mig_status_name(info.status), info.error_desc);
		exit(1);
	}
	if (stat(path, &st))
		die(path, errno);
	*disk = (uint64_t)st.st_blocks * 512;
	unlink(path);
	return t1 - t0;
}

/* The ceiling: the same data copied into a fresh file at the same offsets, then synced. */
static uint64_t copy_once(struct tvm *t, const char *dir, uint64_t data)
{
	static uint8_t buf[SNAP_CHUNK_SIZE];
	char path[256];
	uint64_t t0, t1;
	int fd;

	snprintf(path, sizeof(path), "%s/bench.copy", dir);
	unlink(path);
	t0 = mig_now_ns();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		die(path, errno);
	for (uint64_t off = 0; off < data; off += sizeof(buf))
		if (pread(t->ram[0].fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf) ||
		    pwrite(fd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf))
			die("copy", errno);
	if (fdatasync(fd))
		die("fdatasync", errno);
	t1 = mig_now_ns();
	close(fd);
	unlink(path);
	return t1 - t0;
}

/* One restore of DIR/bench.snap into @t with @readers threads: its time in ns. */
static uint64_t restore_once(struct tvm *t, const char *dir, unsigned int readers)
{
	struct mig_caps caps = {.multifd = readers > 1};
	struct mig_params params = {.multifd_channels = readers};
	struct mig_info info;
	char uri[256];
	uint64_t t0, t1;
	int ret;

	if (mig_session_set_caps(t->s, &caps) || mig_session_set_params(t->s, &params))
		die("settings", EINVAL);
	pthread_mutex_lock(&t->lock);
	t->run_state_override = MIG_RUN_STATE_INMIGRATE; /* as a fresh VM waiting for it */
	pthread_mutex_unlock(&t->lock);
	snprintf(uri, sizeof(uri), "file:%s/bench.snap", dir);
	t0 = mig_now_ns();
	ret = mig_session_incoming(t->s, uri);
	if (ret)
		die("migrate-incoming", -ret);
	if (mig_session_wait(t->s, 600000))
		die("wait", ETIMEDOUT);
	t1 = mig_now_ns();
	mig_session_query(t->s, &info);
	if (info.status != MIG_STATUS_COMPLETED) {
		fprintf(stderr, "restore: %s: %s\n", mig_status_name(info.status), info.error_desc);
		exit(1);
	}
	return t1 - t0;
}

/* The restore's ceiling: the file's data chunks read and written into a fresh memfd. */
static uint64_t load_copy_once(const char *dir, uint64_t data)
{
	static uint8_t buf[SNAP_CHUNK_SIZE];
	struct snap_file f;
	char path[256], err[256];
	uint64_t t0, t1, base;
	int fd, mfd;

	snprintf(path, sizeof(path), "%s/bench.snap", dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || snap_open(&f, fd, err, sizeof(err)))
		die(path, fd < 0 ? errno : EBADMSG);
	base = f.regions[0].offset;
	t0 = mig_now_ns();
	mfd = memfd_create("bench-restore", MFD_CLOEXEC);
	if (mfd < 0 || ftruncate(mfd, (off_t)RAM_SIZE))
		die("memfd", errno);
	for (uint64_t off = 0; off < data; off += sizeof(buf))
		if (pread(fd, buf, sizeof(buf), (off_t)(base + off)) != (ssize_t)sizeof(buf) ||
		    pwrite(mfd, buf, sizeof(buf), (off_t)off) != (ssize_t)sizeof(buf))
			die("copy", errno);
	t1 = mig_now_ns();
	close(mfd);
	snap_close(&f);
	close(fd);
	return t1 - t0;
}

/*
 * QEMU 7.2 in the same run, with the same amount of data (qemu-ref.h): a
 * save with its stream into a file ("exec:cat > F && sync F": QEMU 7.2's
 * way, synced as cleave's is) and an eager restore of it into a VM
 * started with -incoming defer (migrate-incoming "exec:cat F"); times
 * from the command to status completed, medians of @runs.
 */
static void qemu_rows(const char *dir, unsigned int runs)
{
	char scratch[256], data[300], loader[360], uri[640], file[300];
	const char *src_args[] = {"-device", loader, NULL};
	const char *dst_args[] = {"-incoming", "defer", NULL};
	uint64_t save[MAX_RUNS], load[MAX_RUNS], size = 0;
	struct stat st;

	if (access("/usr/bin/qemu-system-x86_64", X_OK)) {
		printf("  qemu 7.2: qemu-system-x86_64 not installed (setup.sh with "
		       "WITH_BENCH=1)\n");
		return;
	}
	snprintf(scratch, sizeof(scratch), "%s/cleave-bench-qemu-XXXXXX", dir);
	if (!mkdtemp(scratch))
		die(scratch, errno);
	snprintf(data, sizeof(data), "%s/data.bin", scratch);
	snprintf(file, sizeof(file), "%s/qemu.snap", scratch);
	snprintf(loader, sizeof(loader), "loader,file=%s,addr=0x1000000,force-raw=on", data);
	qemu_ref_data_file(data);
	for (unsigned int i = 0; i < runs; i++) {
		struct qemu_ref q;
		uint64_t t0;

		unlink(file);
		qemu_ref_start(&q, scratch, "src", src_args);
		/* QEMU 7.2 limits migrations to 128 MiB/s by default; libvirt lifts it for saves
		 * too. */
		json_decref(qemu_ref_cmd(
			&q, "migrate-set-parameters",
			json_pack("{s:I}", "max-bandwidth", (json_int_t)(100ll << 30))));
		snprintf(uri, sizeof(uri), "exec:cat > '%s' && sync '%s'", file, file);
		t0 = mig_now_ns();
		json_decref(qemu_ref_cmd(&q, "migrate", json_pack("{s:s}", "uri", uri)));
		json_decref(qemu_ref_wait_migration(&q));
		save[i] = mig_now_ns() - t0;
		qemu_ref_stop(&q);
		if (!stat(file, &st))
			size = (uint64_t)st.st_blocks * 512;
		qemu_ref_start(&q, scratch, "dst", dst_args);
		snprintf(uri, sizeof(uri), "exec:cat '%s'", file);
		t0 = mig_now_ns();
		json_decref(qemu_ref_cmd(&q, "migrate-incoming", json_pack("{s:s}", "uri", uri)));
		json_decref(qemu_ref_wait_migration(&q));
		load[i] = mig_now_ns() - t0;
		qemu_ref_stop(&q);
	}
	printf("  %-34s %8.1f ms  %7.0f MB/s  %llu MiB on disk\n", "qemu 7.2 save (exec:cat, sync)",
	       median(save, runs) / 1e6,
	       (QEMU_REF_DATA_MIB << 20) / (median(save, runs) / 1e9) / 1e6,
	       (unsigned long long)(size >> 20));
	printf("  %-34s %8.1f ms  %7.0f MB/s\n", "qemu 7.2 restore (exec:cat)",
	       median(load, runs) / 1e6,
	       (QEMU_REF_DATA_MIB << 20) / (median(load, runs) / 1e9) / 1e6);
	snprintf(uri, sizeof(uri), "rm -rf '%s'", scratch);
	if (system(uri))
		fprintf(stderr, "could not remove %s\n", scratch);
}

int main(int argc, char **argv)
{
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 5;
	const char *dir = argc > 2 ? argv[2] : "/var/tmp";
	uint64_t data = (argc > 3 ? strtoull(argv[3], NULL, 10) : 256) << 20;
	static const unsigned int writers[] = {1, 2, 4};
	uint64_t t[MAX_RUNS], disk = 0, ceiling;
	struct tvm vm;
	int dirfd;

	if (!runs || runs > MAX_RUNS || !data || data > RAM_SIZE) {
		fprintf(stderr, "usage: bench-migrator-save [RUNS<=%d] [DIR] [DATA_MIB<=1024]\n",
			MAX_RUNS);
		return 2;
	}
	log_set_verbose(false);
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0)
		die(dir, errno);
	if (tvm_init_snapshot(&vm, &layout, NULL, dir, dirfd))
		die("test VM", EINVAL);
	tvm_fill(&vm, 0, 0, data / SHM_PAGE_SIZE, false);
	printf("save of 1 GiB of guest RAM holding %llu MiB of data, into %s; medians of %u\n",
	       (unsigned long long)(data >> 20), dir, runs);
	for (unsigned int i = 0; i < runs; i++)
		t[i] = copy_once(&vm, dir, data);
	ceiling = median(t, runs);
	printf("  %-34s %8.1f ms  %7.0f MB/s\n", "ceiling: pread + pwrite + fdatasync",
	       ceiling / 1e6, data / (ceiling / 1e9) / 1e6);
	for (unsigned int w = 0; w < sizeof(writers) / sizeof(writers[0]); w++) {
		char what[64];
		uint64_t m;

		for (unsigned int i = 0; i < runs; i++)
			t[i] = save_once(&vm, dir, writers[w], &disk);
		m = median(t, runs);
		snprintf(what, sizeof(what), "cleave save, %u writer%s", writers[w],
			 writers[w] > 1 ? "s" : "");
		printf("  %-34s %8.1f ms  %7.0f MB/s  %.2fx ceiling  %llu MiB on disk\n", what,
		       m / 1e6, data / (m / 1e9) / 1e6, (double)ceiling / (double)m,
		       (unsigned long long)(disk >> 20));
	}
	/* The snapshot the restores read. */
	{
		char path[256];
		struct tvm dst;

		snprintf(path, sizeof(path), "file:%s/bench.snap", dir);
		if (mig_session_migrate(vm.s, path) || mig_session_wait(vm.s, 600000))
			die("save", EIO);
		for (unsigned int i = 0; i < runs; i++)
			t[i] = load_copy_once(dir, data);
		ceiling = median(t, runs);
		printf("  %-34s %8.1f ms  %7.0f MB/s\n", "ceiling: pread + pwrite to a memfd",
		       ceiling / 1e6, data / (ceiling / 1e9) / 1e6);
		if (tvm_init_snapshot(&dst, &layout, NULL, dir, dirfd))
			die("test VM", EINVAL);
		for (unsigned int w = 0; w < sizeof(writers) / sizeof(writers[0]); w++) {
			char what[64];
			uint64_t m;

			for (unsigned int i = 0; i < runs; i++)
				t[i] = restore_once(&dst, dir, writers[w]);
			m = median(t, runs);
			snprintf(what, sizeof(what), "cleave restore, %u reader%s", writers[w],
				 writers[w] > 1 ? "s" : "");
			printf("  %-34s %8.1f ms  %7.0f MB/s  %.2fx ceiling\n", what, m / 1e6,
			       data / (m / 1e9) / 1e6, (double)ceiling / (double)m);
		}
		if (tvm_ram_cmp(&vm, &dst))
			die("restored RAM differs", EIO);
		tvm_fini(&dst);
		snprintf(path, sizeof(path), "%s/bench.snap", dir);
		unlink(path);
	}
	tvm_fini(&vm);
	close(dirfd);
	if (data == (uint64_t)QEMU_REF_DATA_MIB << 20)
		qemu_rows(dir, runs);
	return 0;
}
