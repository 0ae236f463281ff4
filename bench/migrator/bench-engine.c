/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration engine alone, in one process: two sets of memfds, real
 * loopback TCP, no vcpu-proc (the VM ops are the unit tests' in-process
 * ones).  Prints total time, downtime, bytes and wire throughput for an
 * idle RAM image (1 GiB, 256 MiB of data, 64 MiB of zero pages, the rest
 * holes) with 1, 2 and 4 channels; medians of --runs (default 5).
 *
 * usage: bench-migrator-engine [RUNS]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"
#include "tvm.h"

#define MIB (1ull << 20)

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

static int one_run(unsigned int channels, uint64_t *total_us, uint64_t *down_ms, uint64_t *bytes)
{
	static const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {1024 * MIB}};
	struct mig_caps caps = {.multifd = channels > 1};
	struct mig_params params = {.multifd_channels = channels, .downtime_limit = 300};
	struct tvm *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct mig_info si;
	char uri[64];
	uint64_t t0;
	int ret = -1;

	if (tvm_init(src, &layout, NULL, 0) || tvm_init(dst, &layout, NULL, 0))
		goto out;
	tvm_fill(src, 0, 0, 256 * MIB / SHM_PAGE_SIZE, false);
	tvm_fill(src, 0, 512 * MIB / SHM_PAGE_SIZE, 64 * MIB / SHM_PAGE_SIZE, true);
	if (mig_session_set_caps(src->s, &caps) || mig_session_set_params(src->s, &params) ||
	    mig_session_incoming(dst->s, "tcp:127.0.0.1:0"))
		goto out;
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(dst->s));
	t0 = mig_now_ns();
	if (mig_session_migrate(src->s, uri) || mig_session_wait(src->s, 60000) ||
	    mig_session_wait(dst->s, 60000))
		goto out;
	*total_us = (mig_now_ns() - t0) / 1000;
	mig_session_query(src->s, &si);
	if (si.status != MIG_STATUS_COMPLETED || tvm_ram_cmp(src, dst)) {
		fprintf(stderr, "run failed: %s %s\n", mig_status_name(si.status), si.error_desc);
		goto out;
	}
	*down_ms = si.downtime_ms;
	*bytes = si.transferred;
	ret = 0;
out:
	tvm_fini(src);
	tvm_fini(dst);
	free(src);
	free(dst);
	return ret;
}

int main(int argc, char **argv)
{
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 5;
	static const unsigned int chans[] = {1, 2, 4};

	log_init("bench-migrator-engine");
	log_set_verbose(getenv("MIG_BENCH_VERBOSE") != NULL);
	if (runs < 1 || runs > 100)
		runs = 5;
	printf("engine in one process, loopback TCP, 1 GiB RAM: 256 MiB data, 64 MiB zero, "
	       "rest holes; medians of %u runs\n",
	       runs);
	printf("%-9s %10s %9s %10s %12s\n", "channels", "total ms", "down ms", "MiB sent",
	       "GiB/s wire");
	for (unsigned int c = 0; c < sizeof(chans) / sizeof(chans[0]); c++) {
		uint64_t tot[100], down[100], bytes[100];
		unsigned int ok = 0;

		for (unsigned int r = 0; r < runs; r++)
			if (!one_run(chans[c], &tot[ok], &down[ok], &bytes[ok]))
				ok++;
		if (!ok) {
			printf("%-9u all runs failed\n", chans[c]);
			continue;
		}
		{
			uint64_t t = median(tot, ok), d = median(down, ok), b = median(bytes, ok);

			printf("%-9u %10.1f %9lu %10.1f %12.2f%s\n", chans[c], (double)t / 1000,
			       (unsigned long)d, (double)b / MIB,
			       (double)b / (double)(1ull << 30) / ((double)t / 1e6),
			       ok < runs ? "  (some runs failed)" : "");
		}
	}
	return 0;
}
