/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU 7.2's postcopy over loopback: the reference for
 * bench-migrator-postcopy --static on the same host.  Two stopped microvms
 * (qemu-ref.h: 1 GiB with 256 MiB of data put in place by the loader
 * device), their RAM on a shared memfd backend as cleave's is, postcopy-ram
 * on both, migrate-start-postcopy right after migrate: QEMU then switches
 * at its first iteration and pushes the rest.  The guests are stopped (-S,
 * TCG where there is no /dev/kvm), so nothing faults: this compares the
 * switch and the push, not a fault's wait.  Prints medians of RUNS
 * (default 3) of total time, downtime, and the pages QEMU counts.
 *
 * usage: bench-qemu-postcopy [RUNS]
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu-ref.h"

#define MAX_RUNS 16
#define PORT	 47313

static char scratch[] = "/tmp/cleave-bench-qemu-pc-XXXXXX";

static void setup(struct qemu_ref *q)
{
	json_decref(qemu_ref_cmd(q, "migrate-set-capabilities",
				 json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability",
					   "postcopy-ram", "state", 1)));
	json_decref(qemu_ref_cmd(q, "migrate-set-parameters",
				 json_pack("{s:I}", "max-bandwidth", (json_int_t)(100ll << 30))));
}

static void one_run(double *ms, double *down, double *postcopy_requests)
{
	char loader[256], uri[64];
	const char *mem[] = {"-object", "memory-backend-memfd,id=ram0,size=1G,share=on", "-machine",
			     "memory-backend=ram0"};
	const char *src_args[] = {mem[0], mem[1], mem[2], mem[3], "-device", loader, NULL};
	const char *dst_args[] = {mem[0], mem[1], mem[2], mem[3], "-incoming", "defer", NULL};
	struct qemu_ref src, dst;
	json_t *info;

	snprintf(loader, sizeof(loader), "loader,file=%s/data.bin,addr=0x1000000,force-raw=on",
		 scratch);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", PORT);
	qemu_ref_start(&dst, scratch, "dst", dst_args);
	qemu_ref_start(&src, scratch, "src", src_args);
	setup(&dst);
	setup(&src);
	json_decref(qemu_ref_cmd(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri)));
	json_decref(qemu_ref_cmd(&src, "migrate", json_pack("{s:s}", "uri", uri)));
	json_decref(qemu_ref_cmd(&src, "migrate-start-postcopy", NULL));
	info = qemu_ref_wait_migration(&src);
	*ms = (double)json_integer_value(json_object_get(info, "total-time"));
	*down = (double)json_integer_value(json_object_get(info, "downtime"));
	*postcopy_requests = (double)json_integer_value(
		json_object_get(json_object_get(info, "ram"), "postcopy-requests"));
	json_decref(info);
	qemu_ref_stop(&src);
	qemu_ref_stop(&dst);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 3;
	double ms[MAX_RUNS], down[MAX_RUNS], req[MAX_RUNS];
	char path[160], cmdline[128];

	if (!runs || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench-qemu-postcopy [RUNS<=%d]\n", MAX_RUNS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(scratch)) {
		perror("bench-qemu-postcopy: mkdtemp");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/data.bin", scratch);
	qemu_ref_data_file(path);
	for (unsigned int i = 0; i < runs; i++)
		one_run(&ms[i], &down[i], &req[i]);
	qsort(ms, runs, sizeof(ms[0]), cmp_double);
	qsort(down, runs, sizeof(down[0]), cmp_double);
	qsort(req, runs, sizeof(req[0]), cmp_double);
	printf("QEMU 7.2 postcopy (%s, stopped guests, memfd RAM), loopback TCP, 1 GiB RAM with "
	       "%d MiB of data, postcopy started with the migration; medians of %u\n",
	       qemu_ref_accel(), QEMU_REF_DATA_MIB, runs);
	printf("total %.0f ms, downtime %.0f ms, postcopy-requests %.0f\n", ms[runs / 2],
	       down[runs / 2], req[runs / 2]);
	snprintf(cmdline, sizeof(cmdline), "rm -rf '%s'", scratch);
	if (system(cmdline))
		fprintf(stderr, "could not remove %s\n", scratch);
	return 0;
}
