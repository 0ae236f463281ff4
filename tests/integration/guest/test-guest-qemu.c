// SPDX-License-Identifier: GPL-2.0-only
/*
 * Boots guest/cleave-guest.elf under QEMU microvm with KVM and checks what
 * it prints and how it exits: the banner, READY per vCPU, heartbeats with
 * rising guest time, clean power-off, and that a fault in the guest ends in
 * ASSERT and exit code 3.  The same ELF must boot under cleave; this pins
 * the guest's own behaviour independently of vcpu-proc.
 *
 * Usage: test-guest-qemu <path to cleave-guest.elf>.  Skips (77) without
 * /dev/kvm or qemu-system-x86_64.
 */
#include <errno.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/util/test-util.h"

#define QEMU	      "qemu-system-x86_64"
#define QEMU_TIMEOUT  "30" /* seconds, enforced by timeout(1) */
#define MAX_LINES     256
#define MAX_CPUS_SEEN 4

static const char *guest_elf;

/* One QEMU run: its serial lines, when each arrived, and how it exited. */
struct run {
	char *line[MAX_LINES];
	double at[MAX_LINES]; /* seconds since spawn */
	int nlines;
	int status; /* exit status of timeout(1) → QEMU */
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_add_line(struct run *r, const char *s, size_t n, double t)
{
	if (r->nlines == MAX_LINES)
		return;
	r->line[r->nlines] = strndup(s, n);
	r->at[r->nlines++] = t;
}

/* Boot the guest with smp vCPUs and append; collect serial output until QEMU exits. */
static void run_qemu(struct run *r, int smp, const char *append)
{
	char smp_s[16], buf[8192];
	size_t used = 0;
	int out[2];
	double t0 = now_s();

	memset(r, 0, sizeof(*r));
	snprintf(smp_s, sizeof(smp_s), "%d", smp);
	assert_int_equal(pipe(out), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(out[1], STDOUT_FILENO);
		close(out[0]);
		close(out[1]);
		execlp("timeout", "timeout", QEMU_TIMEOUT, QEMU, "-accel", "kvm", "-M", "microvm",
		       "-cpu", "host,-arch-capabilities", "-smp", smp_s, "-m", "512M",
		       "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
		       "-device", "isa-debug-exit,iobase=0xf4,iosize=4", "-kernel", guest_elf,
		       "-append", append, (char *)NULL);
		_exit(127);
	}
	close(out[1]);
	for (;;) {
		ssize_t n = read(out[0], buf + used, sizeof(buf) - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		used += (size_t)n;
		char *start = buf, *nl;
		while ((nl = memchr(start, '\n', used - (size_t)(start - buf)))) {
			run_add_line(r, start, (size_t)(nl - start), now_s() - t0);
			start = nl + 1;
		}
		used -= (size_t)(start - buf);
		memmove(buf, start, used);
		if (used == sizeof(buf) - 1) /* a line longer than the buffer: keep it */
			used = 0;
	}
	if (used)
		run_add_line(r, buf, used, now_s() - t0);
	close(out[0]);
	int ws;
	assert_int_equal(waitpid(pid, &ws, 0), pid);
	r->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

static void run_free(struct run *r)
{
	for (int i = 0; i < r->nlines; i++)
		free(r->line[i]);
}

static void run_dump(const struct run *r)
{
	for (int i = 0; i < r->nlines; i++)
		print_message("  [%6.3f] %s\n", r->at[i], r->line[i]);
}

/* Index of the first line starting with prefix, or -1. */
static int run_find(const struct run *r, const char *prefix)
{
	for (int i = 0; i < r->nlines; i++)
		if (!strncmp(r->line[i], prefix, strlen(prefix)))
			return i;
	return -1;
}

/* QEMU's isa-debug-exit status for a guest write of code. */
static int exit_status(int code)
{
	return (code << 1) | 1;
}

/*
 * Every vCPU printed READY, then >= 2 heartbeats with rising guest-ns and
 * never-falling generation; no ASSERT anywhere.  Returns the heartbeat
 * count of cpu 0 and reports the boot timings.
 */
static void check_heartbeats(const struct run *r, int cpus, uint64_t min_gen_gain)
{
	int hb[MAX_CPUS_SEEN] = {0};
	unsigned long long last_ns[MAX_CPUS_SEEN] = {0}, first_gen[MAX_CPUS_SEEN] = {0},
			   last_gen[MAX_CPUS_SEEN] = {0};
	char want[32];

	assert_int_equal(run_find(r, "ASSERT"), -1);
	for (int c = 0; c < cpus; c++) {
		snprintf(want, sizeof(want), "READY %d", c);
		assert_int_not_equal(run_find(r, want), -1);
	}
	for (int i = 0; i < r->nlines; i++) {
		unsigned cpu;
		unsigned long long gen, ns;
		if (sscanf(r->line[i], "HB %u %llu %llu", &cpu, &gen, &ns) != 3)
			continue;
		assert_true(cpu < (unsigned)cpus);
		if (hb[cpu]) {
			assert_true(ns > last_ns[cpu]);
			assert_true(gen >= last_gen[cpu]);
		} else {
			first_gen[cpu] = gen;
		}
		hb[cpu]++;
		last_ns[cpu] = ns;
		last_gen[cpu] = gen;
	}
	for (int c = 0; c < cpus; c++) {
		assert_true(hb[c] >= 2);
		assert_true(last_gen[c] >= first_gen[c] + min_gen_gain);
	}
	int banner = run_find(r, "cleave-guest:"), first_hb = run_find(r, "HB ");
	print_message("  boot: banner at %.3f s, first HB at %.3f s (QEMU spawn = 0)\n",
		      r->at[banner], r->at[first_hb]);
}

static void test_poweroff(void **state)
{
	struct run r;

	run_qemu(&r, 1, "mode=poweroff");
	run_dump(&r);
	assert_int_not_equal(run_find(&r, "cleave-guest: cpus=1 mode=poweroff"), -1);
	assert_int_equal(r.status, exit_status(0));
	run_free(&r);
}

/* Table of heartbeat runs: vCPUs, command line, minimum generation gain. */
static const struct hb_case {
	int smp;
	const char *append;
	uint64_t min_gen_gain;
	const char *banner;
} hb_cases[] = {
	{1, "cpus=1 seconds=2 hb=400", 0, "cleave-guest: cpus=1 mode=idle mib=16"},
	{2, "cpus=2 seconds=2 hb=400", 0, "cleave-guest: cpus=2 mode=idle mib=16"},
	{2, "cpus=2 mode=dirty mib=32 seconds=2 hb=400", 1,
	 "cleave-guest: cpus=2 mode=dirty mib=32"},
	{2, "cpus=2 mode=dirty mib=32 rate=64 report=1 seconds=2 hb=400", 1,
	 "cleave-guest: cpus=2 mode=dirty mib=32 rate=64"},
};

static void test_heartbeats(void **state)
{
	const struct hb_case *tc = *state;
	struct run r;

	print_message("  -smp %d -append \"%s\"\n", tc->smp, tc->append);
	run_qemu(&r, tc->smp, tc->append);
	run_dump(&r);
	assert_int_not_equal(run_find(&r, tc->banner), -1);
	check_heartbeats(&r, tc->smp, tc->min_gen_gain);
	/* seconds=2 ends in DONE and a clean power-off. */
	assert_int_not_equal(run_find(&r, "DONE 2 s"), -1);
	assert_int_equal(r.status, exit_status(0));
	run_free(&r);
}

/* Injected faults: each must print ASSERT with this text and exit with code 3. */
static const struct crash_case {
	const char *append;
	const char *assert_text;
} crash_cases[] = {
	{"cpus=2 crash=1", "ASSERT cpu 0 guest/cpu.c"},	  /* ud2 in ring 3 */
	{"cpus=2 crash=2", "ASSERT cpu 0 guest/pages.c"}, /* one flipped bit in a page */
};

static void test_crash_asserts(void **state)
{
	const struct crash_case *tc = *state;
	struct run r;

	print_message("  -smp 2 -append \"%s\"\n", tc->append);
	run_qemu(&r, 2, tc->append);
	run_dump(&r);
	int a = run_find(&r, tc->assert_text);
	assert_int_not_equal(a, -1);
	assert_int_equal(r.status, exit_status(3));
	run_free(&r);
}

static bool have_prog(const char *name)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", name);
	return system(cmd) == 0;
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_poweroff),
		cmocka_unit_test_prestate(test_heartbeats, (void *)&hb_cases[0]),
		cmocka_unit_test_prestate(test_heartbeats, (void *)&hb_cases[1]),
		cmocka_unit_test_prestate(test_heartbeats, (void *)&hb_cases[2]),
		cmocka_unit_test_prestate(test_heartbeats, (void *)&hb_cases[3]),
		cmocka_unit_test_prestate(test_crash_asserts, (void *)&crash_cases[0]),
		cmocka_unit_test_prestate(test_crash_asserts, (void *)&crash_cases[1]),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s cleave-guest.elf\n", argv[0]);
		return 2;
	}
	guest_elf = argv[1];
	test_require_kvm();
	if (!have_prog(QEMU) || !have_prog("timeout")) {
		printf("SKIP: " QEMU " or timeout(1) not installed\n");
		return 77;
	}
	return cmocka_run_group_tests_name("guest_qemu", tests, NULL, NULL);
}
