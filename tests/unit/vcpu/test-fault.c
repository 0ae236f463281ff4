// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guest page-fault service (vcpu-proc/fault.c) on real userfaultfd and
 * shmem, without KVM: test threads play the vCPUs (user faults), read(2)
 * into guest RAM plays KVM writing it (a kernel fault, as kvmclock's), and
 * a second memfd plays the snapshot the pages come from.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "shm/snapfile.h"
#include "tests/util/test-util.h"
#include "tests/unit/vcpu/fault-probe.h"
#include "vcpu-proc/fault.h"

#define PAGES	 4096 /* 16 MiB */
#define RAM_SIZE ((uint64_t)PAGES * SHM_PAGE_SIZE)
#define GPA	 0x100000000ull
#define NO_PAGE	 UINT64_MAX

/*
 * The page source: an image memfd, with hooks to slow down or fail one page.
 * The hooks are atomics: the test sets them, the service's threads read
 * them, and the kernel's fault hand-over in between is no ordering that
 * TSan can see.
 */
struct image {
	int fd;
	atomic_uint_fast64_t slow_page; /* its first read sleeps slow_ms; NO_PAGE: none */
	atomic_int slow_ms;
	atomic_bool slow_started;      /* the slow read began */
	atomic_uint_fast64_t bad_page; /* reads fail with -EIO; NO_PAGE: none */
	atomic_int reads[PAGES];       /* read_page calls per page */
	atomic_int failed_calls;       /* fault_source.failed calls */
	atomic_uint_fast64_t failed_page;
	atomic_int failed_err;
	struct snap_file *_Atomic snap; /* set: pages come from this snapshot instead */
};

struct fixture {
	struct region_table table;
	struct region *r;
	int ram_fd;
	uint8_t *ram; /* guest RAM mapping, registered */
	struct image img;
	struct fault_service *fs;
};

/* Page @p of the image: its index and a seed in every word; every 7th page zero. */
static uint64_t image_word(uint64_t p, uint64_t w)
{
	return p % 7 == 3 ? 0 : (p << 32) ^ (w * 0x9e3779b97f4a7c15ull) ^ 0x5eed;
}

static int image_read_page(void *arg, unsigned int region, uint64_t page, void *buf)
{
	struct image *img = arg;
	const uint64_t *w = buf;

	/* No cmocka assert here: this runs on the service's threads. */
	if (region != 0 || page >= PAGES)
		return -EINVAL;
	atomic_fetch_add(&img->reads[page], 1);
	if (page == atomic_load(&img->bad_page))
		return -EIO;
	if (atomic_load(&img->snap))
		return snap_read_page(atomic_load(&img->snap), region, page, buf);
	if (pread(img->fd, buf, SHM_PAGE_SIZE, (off_t)(page * SHM_PAGE_SIZE)) !=
	    (ssize_t)SHM_PAGE_SIZE)
		return -EIO;
	if (page == atomic_load(&img->slow_page) && !atomic_exchange(&img->slow_started, true))
		test_sleep_ms(atomic_load(&img->slow_ms));
	for (size_t i = 0; i < SHM_PAGE_SIZE / 8; i++)
		if (w[i])
			return 1;
	return 0;
}

/* Through the snapshot when there is one; the image itself vouches for every page. */
static int image_next_data(void *arg, unsigned int region, uint64_t from, uint64_t *start,
			   uint64_t *end)
{
	struct image *img = arg;
	struct snap_file *snap = atomic_load(&img->snap);

	if (snap)
		return snap_next_data(snap, region, from, start, end);
	*start = from;
	*end = PAGES;
	return 0;
}

static void image_failed(void *arg, unsigned int region, uint64_t page, int err)
{
	struct image *img = arg;

	atomic_store(&img->failed_page, region == 0 ? page : NO_PAGE);
	atomic_store(&img->failed_err, err);
	atomic_fetch_add(&img->failed_calls, 1);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint64_t *page = malloc(SHM_PAGE_SIZE);
	struct fault_source src = {image_read_page, image_failed, image_next_data, NULL};

	assert_non_null(f);
	assert_non_null(page);
	atomic_store(&f->img.slow_page, NO_PAGE);
	atomic_store(&f->img.bad_page, NO_PAGE);
	f->img.fd = memfd_create("test-image", MFD_CLOEXEC);
	f->ram_fd = memfd_create("test-ram", MFD_CLOEXEC);
	assert_true(f->img.fd >= 0 && f->ram_fd >= 0);
	assert_int_equal(ftruncate(f->img.fd, (off_t)RAM_SIZE), 0);
	assert_int_equal(ftruncate(f->ram_fd, (off_t)RAM_SIZE), 0);
	for (uint64_t p = 0; p < PAGES; p++) {
		if (p % 7 == 3)
			continue; /* a hole: reads as zero */
		for (uint64_t w = 0; w < SHM_PAGE_SIZE / 8; w++)
			page[w] = image_word(p, w);
		assert_int_equal(pwrite(f->img.fd, page, SHM_PAGE_SIZE, (off_t)(p * SHM_PAGE_SIZE)),
				 (ssize_t)SHM_PAGE_SIZE);
	}
	free(page);
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->ram_fd, 0);
	assert_true(f->ram != MAP_FAILED);
	assert_int_equal(region_table_init(&f->table), 0);
	src.arg = &f->img;
	assert_int_equal(fault_service_start(&f->fs, &f->table, &src), 0);
	assert_int_equal(region_table_add(&f->table, 0, GPA, RAM_SIZE, f->ram, NULL, &f->r), 0);
	assert_int_equal(fault_region_register(f->fs, f->r, false), 0);
	region_unlock_write(f->r);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	region_lock_write(f->r);
	fault_region_unregister(f->fs, f->r, true); /* -ENOENT if a test did it */
	region_unlock_write(f->r);
	assert_int_equal(fault_service_stop(f->fs), 0);
	assert_int_equal(region_table_remove(&f->table, 0), 0);
	region_table_fini(&f->table);
	munmap(f->ram, RAM_SIZE);
	close(f->ram_fd);
	close(f->img.fd);
	free(f);
	return 0;
}

/* Every word of page @p of guest RAM is the image's. */
static bool page_is_image(const struct fixture *f, uint64_t p)
{
	const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);

	for (uint64_t i = 0; i < SHM_PAGE_SIZE / 8; i++)
		if (w[i] != image_word(p, i))
			return false;
	return true;
}

/* A vCPU: touches pages in its own random order and checks what it reads. */
struct toucher {
	struct fixture *f;
	unsigned int seed;
	int pages;
	atomic_int bad;
	atomic_bool done;
	bool avoid;	      /* toucher_random: leaves this chunk alone */
	uint64_t avoid_chunk; /* (of SNAP_CHUNK_PAGES pages) */
	uint64_t page;	      /* toucher_one: the page */
	uint64_t value;	      /* toucher_one: written at word 0 (0: read only) */
};

static void *toucher_random(void *arg)
{
	struct toucher *t = arg;

	for (int i = 0; i < t->pages; i++) {
		uint64_t p = (uint64_t)rand_r(&t->seed) % PAGES,
			 w = (uint64_t)rand_r(&t->seed) % 512;
		const volatile uint64_t *word =
			(const uint64_t *)(t->f->ram + p * SHM_PAGE_SIZE) + w;

		if (t->avoid && p / SNAP_CHUNK_PAGES == t->avoid_chunk)
			continue;
		if (*word != image_word(p, w))
			atomic_fetch_add(&t->bad, 1);
	}
	atomic_store(&t->done, true);
	return NULL;
}

static void *toucher_one(void *arg)
{
	struct toucher *t = arg;
	volatile uint64_t *word = (uint64_t *)(t->f->ram + t->page * SHM_PAGE_SIZE);

	if (t->value)
		*word = t->value;
	else if (*word != image_word(t->page, 0))
		atomic_fetch_add(&t->bad, 1);
	atomic_store(&t->done, true);
	return NULL;
}

static bool wait_flag(atomic_bool *flag, int ms)
{
	int64_t end = test_now_ms() + ms;

	while (!atomic_load(flag) && test_now_ms() < end)
		test_sleep_ms(1);
	return atomic_load(flag);
}

/*
 * Two vCPUs touching pages at random while the fill runs: every read sees
 * the image; at the end RAM is the image, page for page, nothing missing,
 * and no page was read from the source more than twice (a fault and the
 * fill at once).
 */
static void test_faults_and_fill(void **state)
{
	struct fixture *f = *state;
	struct toucher t[2] = {{.f = f, .seed = 1, .pages = 3000},
			       {.f = f, .seed = 2, .pages = 3000}};
	pthread_t th[2];
	struct fault_stats st;

	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, toucher_random, &t[i]), 0);
	test_sleep_ms(5); /* let the vCPUs fault first */
	assert_int_equal(fault_fill_start(f->fs), 0);
	assert_int_equal(fault_fill_start(f->fs), -EALREADY);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(atomic_load(&t[i].bad), 0);
	}
	assert_int_equal(fault_fill_wait(f->fs), 0);
	fault_service_stats(f->fs, &st);
	print_message("faults %llu (zero %llu), raced %llu, filled %llu; service p50 %llu ns, "
		      "p99 %llu ns\n",
		      (unsigned long long)st.faults, (unsigned long long)st.zero,
		      (unsigned long long)st.raced, (unsigned long long)st.filled,
		      (unsigned long long)st.lat_p50_ns, (unsigned long long)st.lat_p99_ns);
	assert_true(st.faults > 0);
	assert_true(st.zero > 0);
	assert_int_equal(st.faults + st.filled, PAGES);
	assert_int_equal(st.missing, 0);
	assert_int_equal(st.failed, 0);
	assert_true(st.lat_p50_ns > 0 && st.lat_p99_ns >= st.lat_p50_ns);
	for (uint64_t p = 0; p < PAGES; p++) {
		if (!page_is_image(f, p))
			fail_msg("page %llu differs from the image", (unsigned long long)p);
		assert_true(atomic_load(&f->img.reads[p]) <= 2);
	}
	/* Complete: it may go without force. */
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), 0);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), -ENOENT);
	region_unlock_write(f->r);
}

/*
 * The fill read page P from the source, then a vCPU faulted P in and wrote
 * it before the fill's copy landed: the vCPU's write stays.  (The same
 * order as KVM writing the kvmclock page while a lazy restore fills.)
 */
static void test_write_beats_older_copy(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {.f = f, .page = 100, .value = 0xfeedfacecafebeefull};
	pthread_t th;

	atomic_store(&f->img.slow_ms, 300);
	atomic_store(&f->img.slow_page, 100);
	assert_int_equal(fault_fill_start(f->fs), 0);
	assert_true(wait_flag(&f->img.slow_started, 5000)); /* the fill holds page 100's old copy */
	assert_int_equal(pthread_create(&th, NULL, toucher_one, &t), 0);
	pthread_join(th, NULL);
	assert_int_equal(fault_fill_wait(f->fs), 0);
	assert_int_equal(*(uint64_t *)(f->ram + 100 * SHM_PAGE_SIZE), t.value);
	assert_int_equal(atomic_load(&f->img.reads[100]), 2);
	for (uint64_t p = 0; p < PAGES; p++)
		if (p != 100)
			assert_true(page_is_image(f, p));
}

/*
 * The kernel's own write into a missing page (read(2) from a pipe into
 * guest RAM, as KVM writes kvmclock's page): it waits for the page, then
 * lands on top of it.
 */
static void test_kernel_write(void **state)
{
	struct fixture *f = *state;
	const uint64_t p = 200, mark = 0x1122334455667788ull;
	uint64_t *page = (uint64_t *)(f->ram + p * SHM_PAGE_SIZE);
	int pipefd[2];

	assert_int_equal(pipe(pipefd), 0);
	assert_int_equal(write(pipefd[1], &mark, sizeof(mark)), sizeof(mark));
	assert_int_equal(read(pipefd[0], &page[5], sizeof(mark)), sizeof(mark));
	close(pipefd[0]);
	close(pipefd[1]);
	assert_int_equal(page[5], mark);
	for (uint64_t w = 0; w < SHM_PAGE_SIZE / 8; w++)
		if (w != 5)
			assert_int_equal(page[w], image_word(p, w));
	assert_int_equal(atomic_load(&f->img.reads[p]), 1);
}

/*
 * A page the source cannot give: the vCPU that touches it keeps waiting
 * (never a zero page), the failure is reported once, the fill stops with
 * the error, and the region cannot be unregistered until forced; forcing
 * (the VM is ending) releases the vCPU.
 */
static void test_source_failure(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {.f = f, .page = 300};
	pthread_t th;

	atomic_store(&f->img.bad_page, 300);
	assert_int_equal(pthread_create(&th, NULL, toucher_one, &t), 0);
	test_sleep_ms(200);
	assert_false(atomic_load(&t.done));
	assert_int_equal(atomic_load(&f->img.failed_calls), 1);
	assert_int_equal(atomic_load(&f->img.failed_page), 300);
	assert_int_equal(atomic_load(&f->img.failed_err), -EIO);
	assert_int_equal(fault_fill_start(f->fs), 0);
	assert_int_equal(fault_fill_wait(f->fs), -EIO);
	assert_false(atomic_load(&t.done));
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), -EBUSY);
	assert_int_equal(fault_service_stop(f->fs), -EBUSY);
	assert_int_equal(fault_region_unregister(f->fs, f->r, true), 0);
	region_unlock_write(f->r);
	pthread_join(th, NULL);
	assert_true(atomic_load(&t.done));
}

/*
 * A region change waits for an install in flight: the writer gets the
 * region only after the slow page is in place.
 */
static void test_change_waits_for_install(void **state)
{
	struct fixture *f = *state;
	struct toucher t = {.f = f, .page = 400};
	pthread_t th;
	int64_t t0;

	atomic_store(&f->img.slow_ms, 300);
	atomic_store(&f->img.slow_page, 400);
	t0 = test_now_ms();
	assert_int_equal(pthread_create(&th, NULL, toucher_one, &t), 0);
	assert_true(wait_flag(&f->img.slow_started, 5000));
	region_lock_write(f->r);
	assert_true(test_now_ms() - t0 >= 250); /* waited for the install */
	assert_true(wait_flag(&t.done, 5000));
	region_unlock_write(f->r);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&t.bad), 0);
	region_lock_write(f->r);
	assert_int_equal(fault_region_register(f->fs, f->r, false), -EALREADY);
	region_unlock_write(f->r);
}

/*
 * A snapshot of the image in a temporary file, chunks from @zero_from_chunk
 * on written as zero (holes), open for reading in *s; returns its fd.
 */
static int snapshot_of_image(struct fixture *f, struct snap_file *s, uint64_t zero_from_chunk)
{
	const struct shm_ctl_layout l = {.nr_regions = 1, .gpa = {GPA}, .size = {RAM_SIZE}};
	char path[] = "/tmp/cleave-fault-snap-XXXXXX", err[256];
	uint8_t *chunk = malloc(SNAP_CHUNK_SIZE);
	struct snap_file w;
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	unlink(path);
	assert_non_null(chunk);
	assert_int_equal(snap_create(&w, fd, &l), 0);
	for (uint64_t c = 0; c < RAM_SIZE / SNAP_CHUNK_SIZE; c++) {
		assert_int_equal(
			pread(f->img.fd, chunk, SNAP_CHUNK_SIZE, (off_t)(c * SNAP_CHUNK_SIZE)),
			(ssize_t)SNAP_CHUNK_SIZE);
		if (c >= zero_from_chunk)
			memset(chunk, 0, SNAP_CHUNK_SIZE);
		assert_int_equal(snap_write_chunk(&w, 0, c, chunk), 0);
	}
	assert_int_equal(snap_finish(&w), 0);
	snap_close(&w);
	free(chunk);
	assert_int_equal(snap_open(s, fd, err, sizeof(err)), 0);
	assert_int_equal(snap_check_layout(s, &l, err, sizeof(err)), 0);
	return fd;
}

/*
 * Lazy restore from a snapshot file: vCPUs touch pages at random while the
 * fill runs; RAM ends equal to what was saved.  One chunk is corrupted on
 * disk: the vCPU that touches it waits, and the failure names the checksum.
 */
static void test_lazy_restore_from_snapshot(void **state)
{
	struct fixture *f = *state;
	const uint64_t bad_chunk = 1000 / SNAP_CHUNK_PAGES;
	struct toucher t = {.f = f, .seed = 5, .pages = 3000};
	struct toucher bad = {.f = f, .page = 1000};
	struct snap_file s;
	struct fault_stats st;
	pthread_t th, bt;
	uint64_t off;
	uint8_t byte;
	int fd = snapshot_of_image(f, &s, UINT64_MAX);

	atomic_store(&f->img.snap, &s);
	off = s.regions[0].offset + 1000 * SHM_PAGE_SIZE + 8;
	assert_int_equal(pread(fd, &byte, 1, (off_t)off), 1);
	byte ^= 0x10;
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)off), 1);
	/* The random toucher keeps out of the corrupted chunk, or it would wait too. */
	t.avoid = true;
	t.avoid_chunk = bad_chunk;
	assert_int_equal(pthread_create(&th, NULL, toucher_random, &t), 0);
	assert_int_equal(pthread_create(&bt, NULL, toucher_one, &bad), 0);
	assert_int_equal(fault_fill_start(f->fs), 0);
	pthread_join(th, NULL);
	assert_int_equal(atomic_load(&t.bad), 0);
	assert_int_equal(fault_fill_wait(f->fs), -EBADMSG);
	assert_false(atomic_load(&bad.done));
	assert_int_equal(atomic_load(&f->img.failed_err), -EBADMSG);
	assert_int_equal(atomic_load(&f->img.failed_page) / SNAP_CHUNK_PAGES, bad_chunk);
	fault_service_stats(f->fs, &st);
	assert_true(st.missing >= 1);
	/* The fill went in order up to the bad chunk; the toucher checked what it read. */
	for (uint64_t p = 0; p < bad_chunk * SNAP_CHUNK_PAGES; p++)
		assert_true(page_is_image(f, p));
	/* The VM ends: forced out, the waiting vCPU is released. */
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, true), 0);
	region_unlock_write(f->r);
	pthread_join(bt, NULL);
	atomic_store(&f->img.snap, NULL);
	snap_close(&s);
	close(fd);
}

/*
 * A snapshot whose second half is zero: the fill reads the first half only,
 * settles the rest without a read, and the region is complete, so it
 * unregisters without force; the zero half then reads as zero (a touched
 * page of it was installed as a zero page, the others are holes).
 */
static void test_fill_skips_zero_chunks(void **state)
{
	struct fixture *f = *state;
	const uint64_t half = RAM_SIZE / SNAP_CHUNK_SIZE / 2;
	struct snap_file s;
	struct fault_stats st;
	int fd = snapshot_of_image(f, &s, half);

	atomic_store(&f->img.snap, &s);
	assert_int_equal(*(volatile uint64_t *)(f->ram + (PAGES - 5) * SHM_PAGE_SIZE), 0);
	assert_int_equal(fault_fill_start(f->fs), 0);
	assert_int_equal(fault_fill_wait(f->fs), 0);
	fault_service_stats(f->fs, &st);
	print_message("faults %llu, filled %llu, skipped %llu\n", (unsigned long long)st.faults,
		      (unsigned long long)st.filled, (unsigned long long)st.skipped);
	assert_int_equal(st.missing, 0);
	assert_int_equal(st.faults + st.filled, PAGES / 2 + 1);
	assert_int_equal(st.skipped, PAGES / 2 - 1);
	for (uint64_t p = PAGES / 2; p < PAGES; p++)
		assert_int_equal(atomic_load(&f->img.reads[p]), p == PAGES - 5);
	region_lock_write(f->r);
	assert_int_equal(fault_region_unregister(f->fs, f->r, false), 0);
	region_unlock_write(f->r);
	for (uint64_t p = 0; p < PAGES; p++) {
		const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);

		if (p < PAGES / 2)
			assert_true(page_is_image(f, p));
		else
			for (uint64_t i = 0; i < SHM_PAGE_SIZE / 8; i++)
				assert_int_equal(w[i], 0);
	}
	atomic_store(&f->img.snap, NULL);
	snap_close(&s);
	close(fd);
}

/*
 * A page present before registration (written by KVM, say) is never
 * replaced: found by mincore() and never read, or, registered as fresh,
 * read by the fill whose copy then fails with EEXIST.
 */
static void test_present_page_stays(void **state)
{
	struct fixture *f = *state;
	const uint64_t mark = 0xabcdef, p = 7;

	for (int fresh = 0; fresh < 2; fresh++) {
		struct fault_stats st;

		region_lock_write(f->r);
		assert_int_equal(fault_region_unregister(f->fs, f->r, true), 0);
		assert_int_equal(pwrite(f->ram_fd, &mark, sizeof(mark),
					(off_t)(p * SHM_PAGE_SIZE + 64 * (uint64_t)fresh)),
				 sizeof(mark));
		assert_int_equal(fault_region_register(f->fs, f->r, fresh), 0);
		region_unlock_write(f->r);
		fault_service_stats(f->fs, &st);
		assert_int_equal(st.missing, fresh ? PAGES : PAGES - 1);
		atomic_store(&f->img.reads[p], 0);
		assert_int_equal(fault_fill_start(f->fs), 0);
		assert_int_equal(fault_fill_wait(f->fs), 0);
		assert_int_equal(atomic_load(&f->img.reads[p]), fresh);
		assert_int_equal(*(uint64_t *)(f->ram + p * SHM_PAGE_SIZE + 64 * (uint64_t)fresh),
				 mark);
	}
}

/* Registration without the region held exclusive aborts (debug builds). */
static void test_register_unlocked_aborts(void **state)
{
	struct fixture *f = *state;
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		region_lock_read(f->r);
		fault_region_register(f->fs, f->r, true); /* held shared only */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGABRT)
		fail_msg("register with the region held shared: status 0x%x, not SIGABRT", status);
}

/*
 * As an unprivileged user (cleave-vcpu under --uid-base) that cannot open
 * /dev/userfaultfd: steps of the child, 0 when all held.  @dev is the
 * device, opened by root before the ids changed, as cleave run does.
 * With @syscall_refused (vm.unprivileged_userfaultfd 0) the service cannot
 * start without @dev; with it, a kernel write into a missing page (what
 * KVM does) is served.
 */
static int unprivileged_child(int dev, bool syscall_refused)
{
	struct image *img = calloc(1, sizeof(*img));
	struct fault_source src = {.read_page = image_read_page, .arg = img};
	const uint64_t mark = 0x1122334455667788ull, p = 200;
	uint64_t *page, word[SHM_PAGE_SIZE / 8];
	struct region_table table;
	struct fault_service *fs;
	struct region *r;
	int ram_fd, pipefd[2];
	uint8_t *ram;

	if (!img)
		return 1;
	atomic_store(&img->bad_page, NO_PAGE);
	atomic_store(&img->slow_page, NO_PAGE);
	img->fd = memfd_create("test-image", MFD_CLOEXEC);
	ram_fd = memfd_create("test-ram", MFD_CLOEXEC);
	for (uint64_t w = 0; w < SHM_PAGE_SIZE / 8; w++)
		word[w] = image_word(p, w);
	if (img->fd < 0 || ram_fd < 0 || ftruncate(img->fd, (off_t)RAM_SIZE) ||
	    ftruncate(ram_fd, (off_t)RAM_SIZE) ||
	    pwrite(img->fd, word, sizeof(word), (off_t)(p * SHM_PAGE_SIZE)) != sizeof(word))
		return 2;
	ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, ram_fd, 0);
	if (ram == MAP_FAILED || region_table_init(&table))
		return 3;
	if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
		return 4;
	if (!access("/dev/userfaultfd", R_OK | W_OK))
		return 5; /* still privileged: the test would prove nothing */
	if (syscall_refused && !fault_service_start(&fs, &table, &src))
		return 6;
	if (fault_service_start_dev(&fs, &table, &src, dev))
		return 7;
	if (region_table_add(&table, 0, GPA, RAM_SIZE, ram, NULL, &r) ||
	    fault_region_register(fs, r, false))
		return 8;
	region_unlock_write(r);
	page = (uint64_t *)(ram + p * SHM_PAGE_SIZE);
	if (pipe(pipefd) || write(pipefd[1], &mark, sizeof(mark)) != sizeof(mark) ||
	    read(pipefd[0], &page[5], sizeof(mark)) != sizeof(mark))
		return 9; /* EFAULT: a userfaultfd that does not see the kernel's faults */
	if (page[5] != mark || page[0] != image_word(p, 0))
		return 10;
	region_lock_write(r);
	fault_region_unregister(fs, r, true);
	region_unlock_write(r);
	return fault_service_stop(fs) ? 11 : 0;
}

/*
 * cleave-vcpu under --uid-base gets /dev/userfaultfd as an fd from cleave
 * run: as a user who cannot open the device, the service makes its
 * userfaultfd from that fd and serves the kernel's own faults.
 */
static void test_device_fd_for_an_unprivileged_user(void **state)
{
	char sysctl[8] = "";
	bool refused;
	int dev, status;
	FILE *f;
	pid_t pid;

	(void)state;
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev < 0 || geteuid() != 0) {
		print_message("skip: needs root and /dev/userfaultfd\n");
		if (dev >= 0)
			close(dev);
		skip();
	}
	f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	if (f) {
		if (!fgets(sysctl, sizeof(sysctl), f))
			sysctl[0] = '\0';
		fclose(f);
	}
	refused = sysctl[0] == '0';
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(unprivileged_child(dev, refused));
	close(dev);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status))
		fail_msg("unprivileged child failed at step %d", WEXITSTATUS(status));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_faults_and_fill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_beats_older_copy, setup, teardown),
		cmocka_unit_test_setup_teardown(test_kernel_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_source_failure, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_waits_for_install, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lazy_restore_from_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fill_skips_zero_chunks, setup, teardown),
		cmocka_unit_test_setup_teardown(test_present_page_stays, setup, teardown),
		cmocka_unit_test_setup_teardown(test_register_unlocked_aborts, setup, teardown),
		cmocka_unit_test(test_device_fd_for_an_unprivileged_user),
	};

	struct fault_source probe = {.read_page = image_read_page};
	int ret;

	log_init("test-fault");
	/* A host without userfaultfd for shmem skips, saying why. */
	ret = fault_probe_or_skip(&probe);
	if (ret)
		return ret;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
