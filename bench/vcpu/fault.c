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
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
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

int main(int argc, char **argv)
{
	uint64_t sizes[MAX_SIZES] = {1024 * MIB, 4096 * MIB};
	int runs = argc > 1 ? atoi(argv[1]) : 5, nr_sizes = 2;
	const char *dir = argc > 2 ? argv[2] : "/tmp";

	log_init("bench-fault");
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
