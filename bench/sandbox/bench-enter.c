// SPDX-License-Identifier: GPL-2.0-only
/*
 * Where the sandbox's start-up time goes, per process: compiling and
 * loading each seccomp policy (sandbox_seccomp_install) and, as root,
 * building a jail (sandbox_jail_apply: namespaces, tmpfs root, binds,
 * pivot_root).  Each sample runs in a fresh forked child, as in cleave.
 *
 *   bench-sandbox-enter [runs]
 */
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

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

/* Median of @runs children each timing @what (0: seccomp of @proc, 1: jail of @proc). */
static double sample(int what, enum sandbox_proc proc, int runs)
{
	double *t = calloc((size_t)runs, sizeof(*t));
	struct sandbox_jail j;
	int i, p[2];
	double med;

	/* A jail as the launcher builds it: one writable socket dir, one read-only. */
	if (what == 1 && (sandbox_jail_init(&j, proc, "/proc/self/exe") ||
			  sandbox_jail_bind(&j, "/tmp", true, false) ||
			  sandbox_jail_bind(&j, "/var/tmp", false, false)))
		return -1;
	/* Without /dev/kvm the vCPU jail is still measured, one bind short. */
	for (i = 0; what == 1 && i < (int)j.nr_binds; i++)
		if (!strcmp(j.binds[i].path, "/dev/kvm"))
			j.binds[i].optional = true;
	for (i = 0; i < runs; i++) {
		pid_t pid;

		if (pipe(p))
			exit(1);
		pid = fork();
		if (pid == 0) {
			double t0 = now_us(), dt;
			int ret = what == 0 ? sandbox_seccomp_install(sandbox_policy_get(proc),
								      SANDBOX_F_TRAP)
					    : sandbox_jail_apply(&j);

			dt = now_us() - t0;
			if (ret)
				dt = -1;
			if (write(p[1], &dt, sizeof(dt)) != sizeof(dt))
				_exit(1);
			_exit(0);
		}
		close(p[1]);
		if (read(p[0], &t[i], sizeof(t[i])) != sizeof(t[i]))
			t[i] = -1;
		close(p[0]);
		waitpid(pid, NULL, 0);
	}
	qsort(t, (size_t)runs, sizeof(*t), cmp_double);
	med = t[runs / 2];
	free(t);
	return med;
}

int main(int argc, char **argv)
{
	static const char *const names[] = {"launcher", "vcpu", "migrator", "monitor"};
	int runs = argc > 1 ? atoi(argv[1]) : 21;
	bool jail = sandbox_jail_supported();
	unsigned int proc;

	double probe[64];
	int i, n = runs < 64 ? runs : 64;

	for (i = 0; i < n; i++) {
		double t0 = now_us();

		sandbox_jail_supported();
		probe[i] = now_us() - t0;
	}
	qsort(probe, (size_t)n, sizeof(probe[0]), cmp_double);
	printf("launcher's namespace probe (a forked child): %.0f us\n", probe[n / 2]);
	printf("medians of %d forked children, microseconds\n", runs);
	printf("%-10s %14s %12s\n", "process", "seccomp load", "jail");
	for (proc = 0; proc < SANDBOX_NR_PROCS; proc++) {
		double s = sample(0, proc, runs);
		double jl = jail && proc != SANDBOX_LAUNCHER ? sample(1, proc, runs) : -1;

		if (jl < 0)
			printf("%-10s %14.0f %12s\n", names[proc], s, "-");
		else
			printf("%-10s %14.0f %12.0f\n", names[proc], s, jl);
	}
	return 0;
}
