// SPDX-License-Identifier: GPL-2.0-only
/* Restart policy, exit-status mapping, and the supervisor with real children. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/supervise.h"
#include "log/log.h"
#include "tests/util/test-util.h"

static const struct sup_policy test_policy = {
	.backoff_min_ms = 50,
	.backoff_max_ms = 400,
	.restart_limit = 5,
	.restart_window_ms = 60000,
	.stable_ms = 10000,
	.grace_ms = 300,
};

static void test_backoff_doubles_and_caps(void **state)
{
	static const long want[] = {50, 100, 200, 400, 400};
	struct sup_child c = {0};
	int64_t now = 1000000;
	size_t i;

	for (i = 0; i < 5; i++) {
		c.started_ms = now;
		now += 10; /* died quickly */
		assert_int_equal(sup_restart_delay(&c, &test_policy, now), want[i]);
	}
	/* Sixth death within the window: the limit. */
	c.started_ms = now;
	assert_int_equal(sup_restart_delay(&c, &test_policy, now + 10), -1);
	assert_int_equal(c.nr_restarts, 5);
}

static void test_window_forgets_old_restarts(void **state)
{
	struct sup_child c = {0};
	int64_t now = 0;
	int i;

	for (i = 0; i < 5; i++)
		assert_true(sup_restart_delay(&c, &test_policy, now += 10) > 0);
	assert_int_equal(sup_restart_delay(&c, &test_policy, now + 10), -1);
	/* A minute later the old restarts no longer count (the backoff still does). */
	c.started_ms = now + 60000;
	assert_int_equal(sup_restart_delay(&c, &test_policy, now + 60050), 400);
	assert_int_equal(c.nr_restarts, 1);
}

static void test_stable_child_resets_backoff(void **state)
{
	struct sup_child c = {0};

	c.started_ms = 0;
	assert_int_equal(sup_restart_delay(&c, &test_policy, 10), 50);
	c.started_ms = 100;
	assert_int_equal(sup_restart_delay(&c, &test_policy, 110), 100);
	c.started_ms = 200;
	assert_int_equal(sup_restart_delay(&c, &test_policy, 200 + 10000), 50);
}

static void test_vm_exit_status(void **state)
{
	static const struct {
		int code, status, exit;
		const char *reason;
	} cases[] = {
		{CLD_EXITED, 0, 0, "VM stopped"},
		{CLD_EXITED, 1, 1, "guest powered off with exit code 1"},
		{CLD_EXITED, 125, 125, "guest powered off with exit code 125"},
		{CLD_EXITED, 126, 1, "cleave-vcpu failed (exit status 126"},
		{CLD_EXITED, 127, 1, "unexpected status 127"},
		{CLD_KILLED, SIGKILL, 1, "cleave-vcpu killed by SIGKILL"},
		{CLD_DUMPED, SIGSEGV, 1, "cleave-vcpu dumped core on SIGSEGV"},
	};
	char reason[128];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(
			sup_vm_exit_status(cases[i].code, cases[i].status, reason, sizeof(reason)),
			cases[i].exit);
		if (!strstr(reason, cases[i].reason))
			fail_msg("case %zu: \"%s\" lacks \"%s\"", i, reason, cases[i].reason);
	}
}

static void cmd_sh(struct spawn_cmd *c, const char *script)
{
	assert_int_equal(spawn_cmd_init(c, "/bin/sh", "sh"), 0);
	spawn_cmd_arg(c, "-c");
	spawn_cmd_arg(c, "%s", script);
}

/* The VM child's status becomes the result; the others are stopped with it. */
static void test_run_vm_child_exit_code(void **state)
{
	struct spawn_cmd vm, other;
	struct sup s;
	pid_t other_pid;

	cmd_sh(&vm, "sleep 0.2; exit 7");
	cmd_sh(&other, "exec sleep 30");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "vm", &vm, true), 0);
	assert_int_equal(sup_child_add(&s, "other", &other, false), 0);
	assert_int_equal(sup_start(&s), 0);
	other_pid = s.children[1].pid;
	assert_int_equal(sup_run(&s), 7);
	assert_int_equal(s.children[1].state, SUP_DONE);
	/* Reaped: the pid no longer names our child. */
	assert_int_equal(waitpid(other_pid, NULL, WNOHANG), -1);
	sup_fini(&s);
	spawn_cmd_fini(&vm);
	spawn_cmd_fini(&other);
}

/* A dying restartable child is restarted until the limit; the VM goes on. */
static void test_run_restart_limit(void **state)
{
	struct spawn_cmd vm, flaky;
	int64_t t0 = test_now_ms();
	struct sup s;

	/* 50+100+200+400+400 ms of backoff fit in the VM child's 2.5 s. */
	cmd_sh(&vm, "sleep 2.5; exit 0");
	cmd_sh(&flaky, "exit 1");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "vm", &vm, true), 0);
	assert_int_equal(sup_child_add(&s, "flaky", &flaky, false), 0);
	assert_int_equal(sup_start(&s), 0);
	assert_int_equal(sup_run(&s), 0);
	assert_int_equal(s.children[1].nr_restarts, 5);
	assert_true(test_now_ms() - t0 >= 2400);
	sup_fini(&s);
	spawn_cmd_fini(&vm);
	spawn_cmd_fini(&flaky);
}

/* A restartable child whose binary vanished: counts as deaths, same limit. */
static void test_run_restart_exec_failure(void **state)
{
	struct spawn_cmd vm, gone;
	struct sup s;

	cmd_sh(&vm, "sleep 2.5");
	cmd_sh(&gone, "exit 1");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "vm", &vm, true), 0);
	assert_int_equal(sup_child_add(&s, "gone", &gone, false), 0);
	assert_int_equal(sup_start(&s), 0);
	free(gone.path);
	gone.path = strdup("/nonexistent/cleave-gone");
	assert_int_equal(sup_run(&s), 0);
	assert_int_equal(s.children[1].state, SUP_DONE);
	assert_int_equal(s.children[1].nr_restarts, 5);
	sup_fini(&s);
	spawn_cmd_fini(&vm);
	spawn_cmd_fini(&gone);
}

/* SIGTERM, SIGINT or SIGHUP to the launcher: children get SIGTERM, exit status 0. */
static void run_signal(int sig)
{
	struct spawn_cmd vm, other;
	struct sup s;

	cmd_sh(&vm, "exec sleep 30");
	cmd_sh(&other, "exec sleep 30");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "vm", &vm, true), 0);
	assert_int_equal(sup_child_add(&s, "other", &other, false), 0);
	assert_int_equal(sup_start(&s), 0);
	kill(getpid(), sig); /* blocked: waits in the signalfd */
	assert_int_equal(sup_run(&s), 0);
	assert_int_equal(s.children[0].state, SUP_DONE);
	assert_int_equal(s.children[1].state, SUP_DONE);
	sup_fini(&s);
	spawn_cmd_fini(&vm);
	spawn_cmd_fini(&other);
}

static void test_run_sigterm(void **state)
{
	run_signal(SIGTERM);
}

static void test_run_sigint(void **state)
{
	run_signal(SIGINT);
}

static void test_run_sighup(void **state)
{
	run_signal(SIGHUP);
}

/* A child ignoring SIGTERM is killed after the grace period. */
static void test_run_grace_then_sigkill(void **state)
{
	struct spawn_cmd vm, stubborn;
	int64_t t0;
	struct sup s;

	cmd_sh(&vm, "sleep 0.1; exit 3");
	cmd_sh(&stubborn, "trap '' TERM; while :; do sleep 0.05; done");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "vm", &vm, true), 0);
	assert_int_equal(sup_child_add(&s, "stubborn", &stubborn, false), 0);
	assert_int_equal(sup_start(&s), 0);
	t0 = test_now_ms();
	assert_int_equal(sup_run(&s), 3);
	assert_true(test_now_ms() - t0 >= 300);
	sup_fini(&s);
	spawn_cmd_fini(&vm);
	spawn_cmd_fini(&stubborn);
}

/* fini kills what still runs (an aborted start), and is safe twice. */
static void test_fini_kills_running(void **state)
{
	struct spawn_cmd a;
	struct sup s;
	pid_t pid;

	cmd_sh(&a, "exec sleep 30");
	assert_int_equal(sup_init(&s, &test_policy), 0);
	assert_int_equal(sup_child_add(&s, "a", &a, true), 0);
	assert_int_equal(sup_start(&s), 0);
	pid = s.children[0].pid;
	sup_fini(&s);
	sup_fini(&s);
	assert_int_equal(kill(pid, 0), -1);
	assert_int_equal(errno, ESRCH);
	spawn_cmd_fini(&a);
}

static void test_start_failure_and_add_limit(void **state)
{
	struct spawn_cmd bad;
	struct sup s;
	int i;

	assert_int_equal(spawn_cmd_init(&bad, "/nonexistent/x", "x"), 0);
	assert_int_equal(sup_init(&s, &test_policy), 0);
	for (i = 0; i < SUP_MAX_CHILDREN; i++)
		assert_int_equal(sup_child_add(&s, "x", &bad, false), 0);
	assert_int_equal(sup_child_add(&s, "x", &bad, false), -ENOSPC);
	assert_int_equal(sup_start(&s), -ENOENT);
	sup_fini(&s);
	spawn_cmd_fini(&bad);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_backoff_doubles_and_caps),
		cmocka_unit_test(test_window_forgets_old_restarts),
		cmocka_unit_test(test_stable_child_resets_backoff),
		cmocka_unit_test(test_vm_exit_status),
		cmocka_unit_test(test_run_vm_child_exit_code),
		cmocka_unit_test(test_run_restart_limit),
		cmocka_unit_test(test_run_restart_exec_failure),
		cmocka_unit_test(test_run_sigterm),
		cmocka_unit_test(test_run_sigint),
		cmocka_unit_test(test_run_sighup),
		cmocka_unit_test(test_run_grace_then_sigkill),
		cmocka_unit_test(test_fini_kills_running),
		cmocka_unit_test(test_start_failure_and_add_limit),
	};

	log_init("test-supervise");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
