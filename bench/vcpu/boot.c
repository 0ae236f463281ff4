// SPDX-License-Identifier: GPL-2.0-only
/*
 * Boot figures of cleave-vcpu beside QEMU microvm on the same guest ELF:
 * time from spawn to the first heartbeat on the serial port, and from
 * spawn to the guest's power-off (process exit).  Median of N runs each.
 *
 *   bench-vcpu-boot CLEAVE_VCPU GUEST_ELF [RUNS] [VCPUS]
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/vcpu/harness.h"

#define RAM (64ull << 20)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* cleave-vcpu: -1 on failure. */
static double cleave_run(struct vt *t, unsigned int vcpus, const char *append, bool to_exit)
{
	double t0 = now_ms(), t1;
	int status;

	if (vt_spawn(t, vcpus, append, false, NULL))
		return -1;
	if (to_exit) {
		if (vt_wait(t, 20000, &status) || status != 0)
			return -1;
		t1 = now_ms();
	} else {
		if (vt_expect(t, &t->serial, 0, "HB 0 ", 20000) < 0)
			return -1;
		t1 = now_ms();
		vt_kill(t);
	}
	return t1 - t0;
}

/* QEMU microvm with the same guest; -1 on failure. */
static double qemu_run(const char *guest, unsigned int vcpus, const char *append, bool to_exit)
{
	char smp[16], buf[8192];
	size_t len = 0;
	int p[2], status;
	double t0 = now_ms(), t1 = -1;
	pid_t pid;

	snprintf(smp, sizeof(smp), "%u", vcpus);
	if (pipe2(p, O_CLOEXEC))
		return -1;
	pid = fork();
	if (pid == 0) {
		dup2(p[1], STDOUT_FILENO);
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, STDERR_FILENO);
		execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "kvm", "-M", "microvm",
		       "-nodefaults", "-no-user-config", "-cpu", "host,-arch-capabilities", "-smp",
		       smp, "-m", "64M", "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
		       "-serial", "stdio", "-display", "none", "-kernel", guest, "-append", append,
		       (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	if (pid < 0) {
		close(p[0]);
		return -1;
	}
	for (;;) {
		struct pollfd pf = {p[0], POLLIN, 0};
		ssize_t n;

		if (poll(&pf, 1, 20000) <= 0)
			break;
		n = read(p[0], buf + len, sizeof(buf) - 1 - len);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
		if (!to_exit && strstr(buf, "HB 0 ")) {
			t1 = now_ms();
			break;
		}
		if (len > sizeof(buf) / 2) {
			memmove(buf, buf + len / 2, len - len / 2);
			len -= len / 2;
		}
	}
	if (!to_exit)
		kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	if (to_exit && WIFEXITED(status) && WEXITSTATUS(status) == 1) /* (0 << 1) | 1 */
		t1 = now_ms();
	close(p[0]);
	return t1 < 0 ? -1 : t1 - t0;
}

static bool have_qemu(void)
{
	return system("command -v qemu-system-x86_64 >/dev/null 2>&1") == 0;
}

static void report(const char *what, double *v, int n, int ok)
{
	double med;

	if (ok < n) {
		printf("%-44s failed in %d of %d runs\n", what, n - ok, n);
		return;
	}
	med = median(v, n); /* sorts v */
	printf("%-44s median %8.1f ms  (min %.1f, max %.1f, n=%d)\n", what, med, v[0], v[n - 1], n);
}

int main(int argc, char **argv)
{
	int runs = argc > 3 ? atoi(argv[3]) : 5;
	unsigned int vcpus = argc > 4 ? (unsigned int)atoi(argv[4]) : 1;
	char hb_append[64], off_append[64];
	double *v = calloc((size_t)runs, sizeof(double));
	struct vt t;
	bool qemu;

	if (argc < 3 || runs < 1 || !v) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF [RUNS] [VCPUS]\n", argv[0]);
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		fprintf(stderr, "no /dev/kvm\n");
		return 77;
	}
	snprintf(hb_append, sizeof(hb_append), "mode=idle mib=4 hb=10 cpus=%u", vcpus);
	snprintf(off_append, sizeof(off_append), "mode=poweroff cpus=%u", vcpus);
	if (vt_init(&t, argv[1], RAM, 0) || vt_guest_open(&t, argv[2])) {
		fprintf(stderr, "setup failed\n");
		return 1;
	}
	qemu = have_qemu();
	printf("guest %s, %u vCPU(s), 64 MiB, %d runs each\n", argv[2], vcpus, runs);
	for (int pass = 0; pass < 4; pass++) {
		bool to_exit = pass % 2, is_qemu = pass >= 2;
		int ok = 0;

		if (is_qemu && !qemu) {
			printf("qemu-system-x86_64 not installed: no reference figures\n");
			break;
		}
		for (int i = 0; i < runs; i++) {
			double ms = is_qemu ? qemu_run(argv[2], vcpus,
						       to_exit ? off_append : hb_append, to_exit)
					    : cleave_run(&t, vcpus,
							 to_exit ? off_append : hb_append, to_exit);

			if (ms >= 0)
				v[ok++] = ms;
		}
		report(is_qemu ? (to_exit ? "qemu microvm: spawn -> poweroff exit"
					  : "qemu microvm: spawn -> first heartbeat")
			       : (to_exit ? "cleave-vcpu: spawn -> poweroff exit"
					  : "cleave-vcpu: spawn -> first heartbeat"),
		       v, ok ? ok : runs, ok);
	}
	vt_fini(&t);
	free(v);
	return 0;
}
