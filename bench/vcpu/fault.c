// SPDX-License-Identifier: GPL-2.0-only
/*
 * Lazy restore at the level of the fault service, no KVM: guest RAM of
 * 1 GiB and 4 GiB or the sizes given (a fresh memfd), 256 MiB of it data
 * in a snapshot file
 * (the rest holes), restored on demand.  For each size, medians of RUNS:
 *   register  fault_region_register() of the whole region
 *   first     the first touch of a data page, from its fault to its return
 *   fault     a touch of a data page while nothing else runs: p50 / p99
 *             of 2000 pages at random, as a vCPU sees them (kernel and
 *             service), and the service's own share
 *   fill      the background fill of the whole region; MiB/s of data
 * and two ceilings with no fault in the way: pread of the same 256 MiB
 * from the file, and pread plus pwrite into a fresh memfd (what an eager
 * restore does: allocate and copy).  The page cache holds the file (written just before):
 * figures for a cold cache, or another disk, differ.
 *
 * usage: bench-vcpu-fault [RUNS] [DIR] [GIB...]
 * (DIR for the snapshot files, /tmp; RAM sizes in GiB, 1 and 4)
 *
 * Postcopy (fault_region_register_needed, fault_take_requests,
 * fault_place): 1 GiB of RAM, every page needed; a toucher faults N
 * distinct pages at random, one after the other, and a placer thread takes
 * the requests and places each page, pread from a memfd (the data as it
 * would arrive).  p50 / p99 of a touch as the toucher sees it, and of the
 * service's wait (fault read to placed); then two ceilings for the same
 * touches: a bare userfaultfd round trip (a handler thread that reads the
 * fault, preads the page and copies it in: no queue, no second thread),
 * and a touch of a page already there.
 *
 * usage: bench-vcpu-fault postcopy [RUNS] [N]   (5 runs, N = 2000)
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "shm/snapfile.h"
#include "vcpu-proc/fault.h"

#define MIB	  (1ull << 20)
#define DATA_MIB  256ull
#define TOUCHES	  2000
#define MAX_RUNS  15
#define MAX_SIZES 8

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* Data chunks: the first DATA_MIB of the region, every chunk. */
static bool is_data_page(uint64_t page)
{
	return page < DATA_MIB * MIB / 4096;
}

static int source_read(void *arg, unsigned int region, uint64_t page, void *buf)
{
	return snap_read_page(arg, region, page, buf);
}

static int source_next_data(void *arg, unsigned int region, uint64_t from, uint64_t *start,
			    uint64_t *end)
{
	return snap_next_data(arg, region, from, start, end);
}

/* A snapshot of @size bytes of RAM in @dir: DATA_MIB of data, then holes. */
static int make_snapshot(const char *dir, uint64_t size, struct snap_file *s)
{
	const struct shm_ctl_layout l = {.nr_regions = 1, .gpa = {0}, .size = {size}};
	uint8_t *chunk = malloc(SNAP_CHUNK_SIZE);
	char path[256], err[256];
	struct snap_file w;
	unsigned int seed = 1;
	int fd, ret;

	snprintf(path, sizeof(path), "%s/cleave-bench-fault-XXXXXX", dir);
	fd = mkstemp(path);
	if (fd < 0 || !chunk)
		return -errno;
	unlink(path);
	ret = snap_create(&w, fd, &l);
	for (uint64_t c = 0; !ret && c < DATA_MIB * MIB / SNAP_CHUNK_SIZE; c++) {
		for (size_t i = 0; i < SNAP_CHUNK_SIZE; i += 8)
			*(uint64_t *)(chunk + i) = ((uint64_t)rand_r(&seed) << 32) | (c + 1);
		ret = snap_write_chunk(&w, 0, c, chunk);
	}
	if (!ret)
		ret = snap_finish(&w);
	snap_close(&w);
	free(chunk);
	if (!ret)
		ret = snap_open(s, fd, err, sizeof(err));
	if (ret) {
		fprintf(stderr, "snapshot: %s\n", strerror(-ret));
		close(fd);
		return ret;
	}
	return fd;
}

struct run {
	uint64_t reg_ns, first_ns, fault_p50, fault_p99, svc_p50, fill_ns;
};

static int one_run(struct snap_file *s, uint64_t size, struct run *out)
{
	struct fault_source src = {
		.read_page = source_read, .next_data = source_next_data, .arg = s};
	uint64_t *lat = calloc(TOUCHES, sizeof(*lat)), t0;
	struct region_table table;
	struct fault_service *fs = NULL;
	struct fault_stats st;
	struct region *r;
	unsigned int seed = 9;
	uint8_t *ram;
	int memfd = memfd_create("bench-ram", MFD_CLOEXEC), ret;

	if (memfd < 0 || !lat || ftruncate(memfd, (off_t)size))
		return -errno;
	ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
	if (ram == MAP_FAILED)
		return -errno;
	region_table_init(&table);
	ret = fault_service_start(&fs, &table, &src);
	if (!ret)
		ret = region_table_add(&table, 0, 0, size, ram, NULL, &r);
	if (ret)
		goto out;
	t0 = now_ns();
	ret = fault_region_register(fs, r, true);
	out->reg_ns = now_ns() - t0;
	region_unlock_write(r);
	if (ret)
		goto out_remove;
	t0 = now_ns();
	(void)*(volatile uint64_t *)(ram + 12345 * 4096ull);
	out->first_ns = now_ns() - t0;
	for (int i = 0; i < TOUCHES; i++) {
		uint64_t page = (uint64_t)rand_r(&seed) % (DATA_MIB * MIB / 4096);

		t0 = now_ns();
		(void)*(volatile uint64_t *)(ram + page * 4096);
		lat[i] = now_ns() - t0;
		if (!is_data_page(page))
			ret = -EINVAL;
	}
	fault_service_stats(fs, &st);
	out->svc_p50 = st.lat_p50_ns;
	qsort(lat, TOUCHES, sizeof(*lat), cmp_u64);
	out->fault_p50 = lat[TOUCHES / 2];
	out->fault_p99 = lat[TOUCHES * 99 / 100];
	t0 = now_ns();
	ret = ret ? ret : fault_fill_start(fs);
	if (!ret)
		ret = fault_fill_wait(fs);
	out->fill_ns = now_ns() - t0;
	region_lock_write(r);
	fault_region_unregister(fs, r, true);
	region_unlock_write(r);
out_remove:
	region_table_remove(&table, 0);
out:
	if (fs)
		fault_service_stop(fs);
	region_table_fini(&table);
	munmap(ram, size);
	close(memfd);
	free(lat);
	return ret;
}

/*
 * The data chunks read with pread() alone, or (@eager) also written
 * into a fresh memfd (an eager restore's work: page allocation and copy,
 * no fault in the way).
 */
static uint64_t ceiling_ns(int fd, const struct snap_file *s, bool eager)
{
	uint8_t *buf = malloc(SNAP_CHUNK_SIZE);
	int memfd = eager ? memfd_create("bench-eager", MFD_CLOEXEC) : -1;
	uint64_t t0 = now_ns(), t;

	for (uint64_t c = 0; buf && c < DATA_MIB * MIB / SNAP_CHUNK_SIZE; c++) {
		if (pread(fd, buf, SNAP_CHUNK_SIZE,
			  (off_t)(s->regions[0].offset + c * SNAP_CHUNK_SIZE)) != SNAP_CHUNK_SIZE)
			break;
		if (memfd >= 0 && pwrite(memfd, buf, SNAP_CHUNK_SIZE,
					 (off_t)(c * SNAP_CHUNK_SIZE)) != SNAP_CHUNK_SIZE)
			break;
	}
	t = now_ns() - t0;
	if (memfd >= 0)
		close(memfd);
	free(buf);
	return t;
}

/* ---- postcopy ---------------------------------------------------------- */

#define PC_RAM	     (1024 * MIB)
#define PC_PAGES     (PC_RAM / 4096)
#define PC_MAX_TOUCH 100000

struct pc_run {
	uint64_t p50, p99, wait_p50, wait_p99, bare_p50, bare_p99, present_p50, present_p99;
};

/* Word 0 of page @p as the source holds it. */
static uint64_t pc_word0(uint64_t p)
{
	return (p << 20) ^ 0xc1ea7e;
}

/* The migration's data: a memfd of PC_RAM, word 0 of every page marked. */
static int pc_source(void)
{
	int fd = memfd_create("bench-pc-src", MFD_CLOEXEC);
	uint64_t *map;

	if (fd < 0 || ftruncate(fd, (off_t)PC_RAM))
		return -1;
	map = mmap(NULL, PC_RAM, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (map == MAP_FAILED)
		return -1;
	for (uint64_t p = 0; p < PC_PAGES; p++)
		map[p * 512] = pc_word0(p);
	munmap(map, PC_RAM);
	return fd;
}

/* N distinct pages at random. */
static void pc_pages(uint64_t *pages, int n, unsigned int seed)
{
	uint8_t *seen = calloc(PC_PAGES, 1);

	for (int i = 0; i < n && seen; i++) {
		uint64_t p;

		do
			p = ((uint64_t)rand_r(&seed) << 16 ^ (uint64_t)rand_r(&seed)) % PC_PAGES;
		while (seen[p]);
		seen[p] = 1;
		pages[i] = p;
	}
	free(seen);
}

/* Touches @pages of @ram, one after the other, into @lat (ns); -EIO on a wrong word. */
static int pc_touch(uint8_t *ram, const uint64_t *pages, int n, uint64_t *lat)
{
	int ret = 0;

	for (int i = 0; i < n; i++) {
		uint64_t t0 = now_ns(), v = *(volatile uint64_t *)(ram + pages[i] * 4096);

		lat[i] = now_ns() - t0;
		if (v != pc_word0(pages[i]))
			ret = -EIO;
	}
	qsort(lat, (size_t)n, sizeof(*lat), cmp_u64);
	return ret;
}

struct pc_placer {
	struct fault_service *fs;
	int src;
	atomic_bool stop;
	int err;
};

static void *pc_placer_main(void *arg)
{
	struct pc_placer *pl = arg;
	uint8_t *buf = aligned_alloc(4096, 4096);
	struct fault_page req[16];

	while (buf && !atomic_load(&pl->stop) && !pl->err) {
		int n = fault_take_requests(pl->fs, req, 16, 50, false);

		if (n < 0)
			pl->err = n;
		for (int i = 0; i < n && !pl->err; i++) {
			if (pread(pl->src, buf, 4096, (off_t)(req[i].page * 4096)) != 4096)
				pl->err = -EIO;
			else
				pl->err = fault_place(pl->fs, req[i].region, req[i].page, 1, buf);
		}
	}
	free(buf);
	return NULL;
}

/* The bare round trip: a userfaultfd handler that preads and copies each faulted page. */
struct pc_bare {
	int uffd, src, stop_efd;
	uint8_t *ram;
};

static void *pc_bare_main(void *arg)
{
	struct pc_bare *b = arg;
	uint8_t *buf = aligned_alloc(4096, 4096);

	for (;;) {
		struct pollfd pfd[2] = {{.fd = b->uffd, .events = POLLIN},
					{.fd = b->stop_efd, .events = POLLIN}};
		struct uffd_msg msg;
		struct uffdio_copy c = {.src = (uintptr_t)buf, .len = 4096};

		if (!buf || (poll(pfd, 2, -1) < 0 && errno != EINTR) || pfd[1].revents)
			break;
		if (read(b->uffd, &msg, sizeof(msg)) != sizeof(msg) ||
		    msg.event != UFFD_EVENT_PAGEFAULT)
			continue;
		c.dst = msg.arg.pagefault.address & ~4095ull;
		if (pread(b->src, buf, 4096, (off_t)(c.dst - (uintptr_t)b->ram)) == 4096)
			ioctl(b->uffd, UFFDIO_COPY, &c);
	}
	free(buf);
	return NULL;
}

static int pc_bare_run(int src, const uint64_t *pages, int n, uint64_t *lat)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM};
	int memfd = memfd_create("bench-pc-bare", MFD_CLOEXEC), dev, ret = 0;
	struct pc_bare b = {.src = src, .uffd = -1};
	struct uffdio_register reg = {.mode = UFFDIO_REGISTER_MODE_MISSING};
	uint64_t one = 1;
	pthread_t th;

	if (memfd < 0 || ftruncate(memfd, (off_t)PC_RAM))
		return -errno;
	b.ram = mmap(NULL, PC_RAM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
	dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		b.uffd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
	if (b.uffd < 0)
		b.uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	b.stop_efd = eventfd(0, EFD_CLOEXEC);
	reg.range.start = (uintptr_t)b.ram;
	reg.range.len = PC_RAM;
	if (b.ram == MAP_FAILED || b.uffd < 0 || b.stop_efd < 0 ||
	    ioctl(b.uffd, UFFDIO_API, &api) || ioctl(b.uffd, UFFDIO_REGISTER, &reg))
		return -errno;
	pthread_create(&th, NULL, pc_bare_main, &b);
	ret = pc_touch(b.ram, pages, n, lat);
	if (write(b.stop_efd, &one, sizeof(one)) != sizeof(one))
		ret = -errno;
	pthread_join(th, NULL);
	close(b.stop_efd);
	close(b.uffd);
	munmap(b.ram, PC_RAM);
	close(memfd);
	return ret;
}

static int pc_one_run(int src, int n, unsigned int seed, struct pc_run *out)
{
	uint64_t *pages = calloc((size_t)n, sizeof(*pages)), *lat = calloc((size_t)n, sizeof(*lat));
	uint64_t *needed = calloc(SHM_BITMAP_WORDS(PC_PAGES), sizeof(uint64_t));
	struct pc_placer pl = {.src = src};
	struct region_table table;
	struct fault_service *fs = NULL;
	struct fault_stats st;
	struct region *r;
	pthread_t th;
	uint8_t *ram;
	int memfd = memfd_create("bench-pc-ram", MFD_CLOEXEC), ret;

	if (memfd < 0 || !pages || !lat || !needed || ftruncate(memfd, (off_t)PC_RAM))
		return -ENOMEM;
	shm_bitmap_fill(needed, PC_PAGES);
	pc_pages(pages, n, seed);
	ram = mmap(NULL, PC_RAM, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, memfd, 0);
	if (ram == MAP_FAILED)
		return -errno;
	region_table_init(&table);
	ret = fault_service_start(&fs, &table, NULL);
	if (!ret)
		ret = region_table_add(&table, 0, 0, PC_RAM, ram, NULL, &r);
	if (ret)
		goto out;
	ret = fault_region_register_needed(fs, r, needed);
	region_unlock_write(r);
	if (ret)
		goto out_remove;
	pl.fs = fs;
	pthread_create(&th, NULL, pc_placer_main, &pl);
	ret = pc_touch(ram, pages, n, lat);
	atomic_store(&pl.stop, true);
	pthread_join(th, NULL);
	ret = ret ? ret : pl.err;
	out->p50 = lat[n / 2];
	out->p99 = lat[n * 99 / 100];
	fault_service_stats(fs, &st);
	out->wait_p50 = st.wait_p50_ns;
	out->wait_p99 = st.wait_p99_ns;
	if (!ret && st.requested != (uint64_t)n)
		ret = -EPROTO;
	/* Ceiling: the same pages, now there. */
	if (!ret)
		ret = pc_touch(ram, pages, n, lat);
	out->present_p50 = lat[n / 2];
	out->present_p99 = lat[n * 99 / 100];
	region_lock_write(r);
	fault_region_unregister(fs, r, true);
	region_unlock_write(r);
	if (!ret)
		ret = pc_bare_run(src, pages, n, lat);
	out->bare_p50 = lat[n / 2];
	out->bare_p99 = lat[n * 99 / 100];
out_remove:
	region_table_remove(&table, 0);
out:
	if (fs)
		fault_service_stop(fs);
	region_table_fini(&table);
	munmap(ram, PC_RAM);
	close(memfd);
	free(pages);
	free(lat);
	free(needed);
	return ret;
}

static int pc_main(int runs, int n)
{
	uint64_t v[8][MAX_RUNS];
	static const char *const name[] = {
		"requested page, as the toucher sees it",
		"  the service's wait, fault read to placed",
		"ceiling: bare userfaultfd round trip (read, pread, copy)",
		"ceiling: a touch of a page already there",
	};
	int src = pc_source();

	if (src < 0) {
		fprintf(stderr, "source memfd: %s\n", strerror(errno));
		return 1;
	}
	for (int k = 0; k < runs; k++) {
		struct pc_run r = {0};
		int ret = pc_one_run(src, n, 100 + (unsigned int)k, &r);

		if (ret) {
			fprintf(stderr, "postcopy run failed: %s\n", strerror(-ret));
			return 1;
		}
		v[0][k] = r.p50, v[1][k] = r.p99, v[2][k] = r.wait_p50, v[3][k] = r.wait_p99;
		v[4][k] = r.bare_p50, v[5][k] = r.bare_p99, v[6][k] = r.present_p50;
		v[7][k] = r.present_p99;
	}
	printf("postcopy through the fault service: %d distinct pages at random of 1 GiB, one "
	       "toucher, one placer (pread from a memfd); medians of %d runs\n",
	       n, runs);
	printf("%-58s %10s %10s\n", "", "p50 us", "p99 us");
	for (int i = 0; i < 4; i++)
		printf("%-58s %10.2f %10.2f\n", name[i], (double)median(v[2 * i], runs) / 1e3,
		       (double)median(v[2 * i + 1], runs) / 1e3);
	close(src);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t sizes[MAX_SIZES] = {1024 * MIB, 4096 * MIB};
	int runs = argc > 1 ? atoi(argv[1]) : 5, nr_sizes = 2;
	const char *dir = argc > 2 ? argv[2] : "/tmp";

	log_init("bench-fault");
	if (argc > 1 && !strcmp(argv[1], "postcopy")) {
		int n = argc > 3 ? atoi(argv[3]) : 2000;

		runs = argc > 2 ? atoi(argv[2]) : 5;
		if (runs < 1 || runs > MAX_RUNS || n < 1 || n > PC_MAX_TOUCH) {
			fprintf(stderr, "usage: %s postcopy [RUNS 1..%d] [N 1..%d]\n", argv[0],
				MAX_RUNS, PC_MAX_TOUCH);
			return 2;
		}
		return pc_main(runs, n);
	}
	if (argc > 3) {
		for (nr_sizes = 0; nr_sizes + 3 < argc && nr_sizes < MAX_SIZES; nr_sizes++)
			sizes[nr_sizes] = strtoull(argv[nr_sizes + 3], NULL, 10) * 1024 * MIB;
	}
	for (int i = 0; i < nr_sizes; i++) {
		if (sizes[i] < DATA_MIB * MIB) {
			fprintf(stderr, "RAM sizes are in GiB, at least 1\n");
			return 2;
		}
	}
	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: %s [RUNS 1..%d] [DIR] [GIB...]\n", argv[0], MAX_RUNS);
		return 2;
	}
	printf("lazy restore through the fault service, %llu MiB of data, page cache warm; "
	       "medians of %d runs\n",
	       (unsigned long long)DATA_MIB, runs);
	printf("%-6s %12s %10s %16s %12s %12s %14s\n", "RAM", "register us", "first us",
	       "fault p50/p99 us", "service p50", "fill ms", "fill MiB/s");
	for (int i = 0; i < nr_sizes; i++) {
		uint64_t reg[MAX_RUNS], first[MAX_RUNS], p50[MAX_RUNS], p99[MAX_RUNS],
			svc[MAX_RUNS], fill[MAX_RUNS], ceil[MAX_RUNS], eager[MAX_RUNS];
		struct snap_file s;
		int fd = make_snapshot(dir, sizes[i], &s);

		if (fd < 0)
			return 1;
		for (int k = 0; k < runs; k++) {
			struct run r = {0};
			int ret = one_run(&s, sizes[i], &r);

			if (ret) {
				fprintf(stderr, "run failed: %s\n", strerror(-ret));
				return 1;
			}
			reg[k] = r.reg_ns;
			first[k] = r.first_ns;
			p50[k] = r.fault_p50;
			p99[k] = r.fault_p99;
			svc[k] = r.svc_p50;
			fill[k] = r.fill_ns;
			ceil[k] = ceiling_ns(fd, &s, false);
			eager[k] = ceiling_ns(fd, &s, true);
		}
		{
			uint64_t f = median(fill, runs);

			char name[16];

			snprintf(name, sizeof(name), "%llu GiB",
				 (unsigned long long)(sizes[i] / (1024 * MIB)));
			printf("%-6s %12.1f %10.1f %8.1f/%-7.1f %12.1f %12.1f %14.0f\n", name,
			       (double)median(reg, runs) / 1e3, (double)median(first, runs) / 1e3,
			       (double)median(p50, runs) / 1e3, (double)median(p99, runs) / 1e3,
			       (double)median(svc, runs) / 1e3, (double)f / 1e6,
			       (double)DATA_MIB * 1e9 / (double)f);
			printf("%-6s ceiling: pread of the %llu MiB of data, no faults: %.1f ms "
			       "(%.0f MiB/s)\n",
			       "", (unsigned long long)DATA_MIB, (double)median(ceil, runs) / 1e6,
			       (double)DATA_MIB * 1e9 / (double)median(ceil, runs));
			printf("%-6s ceiling: the same read and written into a fresh memfd "
			       "(eager): "
			       "%.1f ms (%.0f MiB/s)\n",
			       "", (double)median(eager, runs) / 1e6,
			       (double)DATA_MIB * 1e9 / (double)median(eager, runs));
		}
		snap_close(&s);
		close(fd);
	}
	return 0;
}
