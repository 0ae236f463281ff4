// SPDX-License-Identifier: GPL-2.0-only
/*
 * Control-plane latencies of cleave-vcpu with a running guest (what a
 * migration's downtime is made of): PAUSE, RESUME, HARVEST and SAVE_STATE
 * round trips over the real RPC socket, median of N each.
 *
 *   bench-vcpu-control CLEAVE_VCPU GUEST_ELF [RUNS] [VCPUS] [MIB]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/vcpu/harness.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	printf("%-34s median %8.0f us  (min %.0f, max %.0f, n=%d)\n", what, v[n / 2], v[0],
	       v[n - 1], n);
}

int main(int argc, char **argv)
{
	int runs = argc > 3 ? atoi(argv[3]) : 20;
	unsigned int vcpus = argc > 4 ? (unsigned int)atoi(argv[4]) : 2;
	unsigned int mib = argc > 5 ? (unsigned int)atoi(argv[5]) : 32;
	double *pause = calloc((size_t)runs, sizeof(double));
	double *resume = calloc((size_t)runs, sizeof(double));
	double *harvest = calloc((size_t)runs, sizeof(double));
	double *save = calloc((size_t)runs, sizeof(double));
	Cleave__Vcpu__DirtyLogRequest on = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;
	uint64_t pages = 0;
	char append[96];
	struct vt t;
	int ret = 1;

	if (argc < 3 || runs < 1 || !pause || !resume || !harvest || !save) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF [RUNS] [VCPUS] [MIB]\n", argv[0]);
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		fprintf(stderr, "no /dev/kvm\n");
		return 77;
	}
	snprintf(append, sizeof(append), "mode=dirty mib=%u hb=1000 cpus=%u", mib, vcpus);
	if (vt_init(&t, argv[1], (uint64_t)(mib + 16) << 20, 0) || vt_guest_open(&t, argv[2]) ||
	    vt_spawn(&t, vcpus, append, false, NULL) ||
	    vt_expect(&t, &t.serial, 0, "READY 0", 20000) < 0) {
		fprintf(stderr, "guest did not start\n");
		goto out;
	}
	on.enable = true;
	if (vt_call(&t, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &on.base, NULL, NULL))
		goto out;
	for (int i = 0; i < runs; i++) {
		Cleave__Vcpu__HarvestReply *h = NULL;
		Cleave__Vcpu__SaveStateReply *s = NULL;
		double t0;

		usleep(20000); /* let the guest dirty memory */
		t0 = now_us();
		if (vt_simple(&t, CLEAVE__VCPU__METHOD__METHOD_PAUSE))
			goto out;
		pause[i] = now_us() - t0;
		t0 = now_us();
		if (vt_call(&t, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL,
			    &cleave__vcpu__harvest_reply__descriptor, (ProtobufCMessage **)&h))
			goto out;
		harvest[i] = now_us() - t0;
		pages += h->dirty_pages;
		rpc_msg_free(&h->base);
		t0 = now_us();
		if (vt_call(&t, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL,
			    &cleave__vcpu__save_state_reply__descriptor, (ProtobufCMessage **)&s))
			goto out;
		save[i] = now_us() - t0;
		rpc_msg_free(&s->base);
		t0 = now_us();
		if (vt_simple(&t, CLEAVE__VCPU__METHOD__METHOD_RESUME))
			goto out;
		resume[i] = now_us() - t0;
	}
	printf("guest mode=dirty mib=%u, %u vCPU(s), dirty logging on, %d rounds\n", mib, vcpus,
	       runs);
	report("PAUSE (all vCPUs parked)", pause, runs);
	report("HARVEST (paused)", harvest, runs);
	report("SAVE_STATE (all vCPUs + clock)", save, runs);
	report("RESUME", resume, runs);
	printf("%-34s %8.0f pages per round\n", "dirty pages harvested", (double)pages / runs);
	vt_simple(&t, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "failed:\n%s\n", t.log.buf ? t.log.buf : "");
	vt_fini(&t);
	free(pause);
	free(resume);
	free(harvest);
	free(save);
	return ret;
}
