// SPDX-License-Identifier: GPL-2.0-only
/*
 * bench-shm: figures for the memory plane's hot paths, each the median of
 * several runs.  The migrator scans a dirty bitmap covering 4 GiB of guest
 * RAM (1M bits) every round, and enumerates a sparse RAM memfd once at
 * the start of a migration, so those are the cases measured.
 *
 * Usage: bench-shm [runs]   (default 9)
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"

#define GiB	 (1ULL << 30)
#define MiB	 (1ULL << 20)
#define NBITS	 (4 * GiB / SHM_PAGE_SIZE) /* 1M pages: 4 GiB of guest RAM */
#define MAX_RUNS 64

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL; /* fixed: figures are comparable */

static uint64_t rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 2685821657736338717ULL;
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
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

/* Keeps the compiler from dropping a computed result. */
static volatile uint64_t sink;

static void report(const char *what, uint64_t ns, uint64_t ops, const char *op)
{
	printf("%-44s %10.3f ms  %8.2f ns/%-5s %9.1f GiB guest RAM covered/s\n", what,
	       (double)ns / 1e6, (double)ns / (double)ops, op, 4.0 / ((double)ns / 1e9));
}

static void bench_bitmap(uint64_t *map, int runs, unsigned int density)
{
	uint64_t t[MAX_RUNS], set = 0;
	char what[64];

	shm_bitmap_zero(map, NBITS);
	for (uint64_t b = 0; b < NBITS; b++)
		if (rnd() % 100 < density)
			shm_bitmap_set(map, b);

	for (int r = 0; r < runs; r++) {
		uint64_t t0 = now_ns(), n = 0;

		for (uint64_t b = shm_bitmap_find_next(map, NBITS, 0); b < NBITS;
		     b = shm_bitmap_find_next(map, NBITS, b + 1))
			n++;
		t[r] = now_ns() - t0;
		set = n;
	}
	snprintf(what, sizeof(what), "find_next all set bits, %u%% (%llu bits)", density,
		 (unsigned long long)set);
	report(what, median(t, runs), set, "bit");

	for (int r = 0; r < runs; r++) {
		uint64_t t0 = now_ns();

		sink = shm_bitmap_count(map, NBITS);
		t[r] = now_ns() - t0;
	}
	if (sink != set)
		printf("!! count %llu != find_next walk %llu\n", (unsigned long long)sink,
		       (unsigned long long)set);
	snprintf(what, sizeof(what), "popcount whole map, %u%%", density);
	report(what, median(t, runs), SHM_BITMAP_WORDS(NBITS), "word");

	/* fetch_clear consumes the map: refill (untimed) before each run */
	for (int r = 0; r < runs; r++) {
		uint64_t t0, acc = 0;

		shm_bitmap_fill(map, NBITS);
		t0 = now_ns();
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(NBITS); w++)
			acc += shm_bitmap_fetch_clear_word(map, w) != 0;
		t[r] = now_ns() - t0;
		sink = acc;
	}
	if (density == 1) /* independent of the density: print once */
		report("fetch_clear_word whole map (full map)", median(t, runs),
		       SHM_BITMAP_WORDS(NBITS), "word");
}

static void bench_bit_ops(uint64_t *map, int runs)
{
	uint64_t t[MAX_RUNS];

	for (int r = 0; r < runs; r++) {
		uint64_t t0;

		shm_bitmap_zero(map, NBITS);
		t0 = now_ns();
		for (uint64_t b = 0; b < NBITS; b++)
			shm_bitmap_set(map, b);
		t[r] = now_ns() - t0;
	}
	report("set every bit (atomic or, sequential)", median(t, runs), NBITS, "bit");
}

/* 4 GiB memfd of holes with 64 x 1 MiB chunks written at scattered offsets. */
static int bench_seek_data(int runs)
{
	const uint64_t size = 4 * GiB, chunk = MiB, nchunks = 64;
	uint64_t t[MAX_RUNS], ranges = 0, bytes = 0;
	struct shm_region r;
	int ret;

	ret = shm_region_create(&r, 0, size);
	if (ret) {
		fprintf(stderr, "bench-shm: shm_region_create 4 GiB: %s\n", strerror(-ret));
		return ret;
	}
	for (uint64_t i = 0; i < nchunks; i++) {
		/* one chunk per 64 MiB slot, at a random MiB inside it: never adjacent by design */
		uint64_t slot = size / nchunks,
			 off = i * slot + (rnd() % (slot / chunk - 1)) * chunk;

		memset((char *)r.base + off, 1, chunk);
	}
	for (int k = 0; k < runs; k++) {
		uint64_t t0 = now_ns(), from = 0, s, e;

		ranges = bytes = 0;
		while (shm_memfd_next_data(r.fd, from, size, &s, &e) == 0) {
			ranges++;
			bytes += e - s;
			from = e;
		}
		t[k] = now_ns() - t0;
	}
	printf("%-44s %10.3f ms  %8.2f us/range  (%llu ranges, %llu MiB data)\n",
	       "SEEK_DATA scan, 4 GiB memfd, 64 MiB touched", (double)median(t, runs) / 1e6,
	       (double)median(t, runs) / 1e3 / (double)(ranges ? ranges : 1),
	       (unsigned long long)ranges, (unsigned long long)(bytes / MiB));
	shm_region_close(&r);
	return 0;
}

static void bench_lock(int runs)
{
	const uint64_t n = 1000000;
	struct shm_lock *l;
	uint64_t t[MAX_RUNS];

	l = mmap(NULL, sizeof(*l), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (l == MAP_FAILED || shm_lock_init(l))
		return;
	for (int r = 0; r < runs; r++) {
		uint64_t t0 = now_ns();

		for (uint64_t i = 0; i < n; i++) {
			if (shm_lock_acquire(l))
				return;
			shm_lock_release(l);
		}
		t[r] = now_ns() - t0;
	}
	printf("%-44s %10.3f ms  %8.2f ns/pair\n", "robust lock acquire+release, uncontended",
	       (double)median(t, runs) / 1e6, (double)median(t, runs) / (double)n);
	shm_lock_destroy(l);
	munmap(l, sizeof(*l));
}

int main(int argc, char **argv)
{
	int runs = argc > 1 ? atoi(argv[1]) : 9;
	uint64_t *map;

	if (runs < 1 || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench-shm [runs 1..%d]\n", MAX_RUNS);
		return 2;
	}
	log_init("bench-shm");
	map = aligned_alloc(64, SHM_BITMAP_WORDS(NBITS) * sizeof(uint64_t));
	if (!map)
		return 1;
	printf("bench-shm: bitmap of %llu bits (4 GiB of 4 KiB pages), median of %d runs\n",
	       (unsigned long long)NBITS, runs);
	bench_bitmap(map, runs, 1);
	bench_bitmap(map, runs, 50);
	bench_bit_ops(map, runs);
	free(map);
	bench_lock(runs);
	return bench_seek_data(runs) ? 1 : 0;
}
