// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave run` end to end: the real launcher, the real children, a real KVM
 * guest.  Every test starts its own cleave, finds the children's PIDs in its
 * log ("started cleave-monitor pid N"), and leaves no process behind: the
 * teardown SIGKILLs cleave (its children die with it, PR_SET_PDEATHSIG) and
 * the tests check /proc for every child PID they saw.
 *
 * argv[1]: the cleave binary.  The children are found by cleave itself in
 * the build tree (../vcpu-proc, ../migrator, ../monitor).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/util/cleave-run.h"
#include "tests/util/test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *cleave_bin;
static char build_dir[PATH_MAX]; /* cleave's directory's parent */

static void child_bin(const char *subdir, const char *name, char *buf, size_t len)
{
	if ((size_t)snprintf(buf, len, "%s/%s/%s", build_dir, subdir, name) >= len)
		fail_msg("path too long: %s/%s", build_dir, subdir);
}

/* The children must exist: fail at once with what is missing, never hang. */
static void require_children(void)
{
	static const char *const bins[][2] = {
		{"vcpu-proc", "cleave-vcpu"},
		{"migrator", "cleave-migrator"},
		{"monitor", "cleave-monitor"},
	};
	char path[PATH_MAX];
	size_t i;

	for (i = 0; i < 3; i++) {
		child_bin(bins[i][0], bins[i][1], path, sizeof(path));
		if (access(path, X_OK))
			fail_msg("%s is not built (%s: %s)", bins[i][1], path, strerror(errno));
	}
}

static int vm_setup(void **state)
{
	struct cleave_run *vm = calloc(1, sizeof(*vm));

	if (!vm || cleave_run_init(vm, "run")) {
		free(vm);
		return -1;
	}
	*state = vm;
	return 0;
}

static int vm_teardown(void **state)
{
	struct cleave_run *vm = *state;

	cleave_run_fini(vm);
	free(vm);
	return 0;
}

/* Every child PID ever logged is gone (waits briefly for SIGKILLed ones). */
static void vm_assert_no_children(struct cleave_run *vm)
{
	const struct cleave_run_child *c = cleave_run_survivor(vm, 3000);

	if (c)
		fail_msg("%s pid %d outlived cleave", c->name, (int)c->pid);
}

/* Starts `cleave run` with 128M plus @args; @libexec: CLEAVE_LIBEXEC_DIR, NULL for none. */
static void vm_start(struct cleave_run *vm, const char *libexec, const char *const *args)
{
	const char *argv[32] = {"--memory", "128M"};
	int argc = 2, ret;

	while (args && *args && argc < 31)
		argv[argc++] = *args++;
	argv[argc] = NULL;
	if (libexec)
		setenv("CLEAVE_LIBEXEC_DIR", libexec, 1);
	ret = cleave_run_start(vm, cleave_bin, argv);
	unsetenv("CLEAVE_LIBEXEC_DIR");
	assert_int_equal(ret, 0);
}

/* Waits for cleave's exit; fails (and kills it) after @timeout_ms. */
static int vm_wait_exit(struct cleave_run *vm, int timeout_ms)
{
	int status = cleave_run_wait_exit(vm, timeout_ms);

	if (status == -ETIMEDOUT) {
		cleave_run_print_log(vm);
		fail_msg("cleave did not exit within %d ms", timeout_ms);
	}
	if (WIFSIGNALED(status))
		fail_msg("cleave killed by signal %d", WTERMSIG(status));
	return WEXITSTATUS(status);
}

/*
 * Waits until the log has a line with @what; fails after @timeout_ms or if
 * cleave exited meanwhile.  Returns the log (caller frees).
 */
static char *vm_wait_log(struct cleave_run *vm, const char *what, unsigned int count,
			 int timeout_ms)
{
	char *log = cleave_run_wait_log(vm, what, count, timeout_ms);

	if (!log)
		fail_msg("no \"%s\" (x%u) in cleave's log", what, count);
	return log;
}

/* PID from the @nth (1-based) "started NAME pid N" line. */
static pid_t vm_child_pid(struct cleave_run *vm, const char *name, unsigned int nth)
{
	pid_t pid = cleave_run_child_pid(vm, name, nth, 10000);

	if (pid <= 0)
		fail_msg("no %s #%u: %s", name, nth, strerror(-pid));
	return pid;
}

/* Waits until the guest printed @count more heartbeats than @base. */
static unsigned int serial_wait_heartbeats(struct cleave_run *vm, unsigned int base,
					   unsigned int count, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	unsigned int n;
	char *ser;

	for (;;) {
		ser = test_file_read(vm->serial);
		n = cleave_run_count(ser, "HB ");
		if (n >= base + count) {
			free(ser);
			return n;
		}
		if (test_now_ms() > deadline) {
			fprintf(stderr, "serial:\n%s\n", ser);
			free(ser);
			fail_msg("guest printed %u heartbeats, want %u within %d ms", n,
				 base + count, timeout_ms);
		}
		free(ser);
		test_sleep_ms(50);
	}
}

static bool path_exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Connects to the QMP socket cleave owns and returns the fd after the greeting. */
static int qmp_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {5, 0};
	char buf[512];
	ssize_t n;
	int fd;

	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path) >= sizeof(sa.sun_path))
		fail_msg("socket path too long: %s", path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	n = read(fd, buf, sizeof(buf) - 1);
	if (n <= 0)
		fail_msg("no QMP greeting on %s: %s", path, n < 0 ? strerror(errno) : "EOF");
	buf[n] = '\0';
	assert_non_null(strstr(buf, "\"QMP\""));
	return fd;
}

/* Sends one command and waits for a reply line containing @want. */
static void qmp_command(int fd, const char *cmd, const char *want)
{
	char buf[4096];
	size_t off = 0;
	ssize_t n;

	assert_int_equal(write(fd, cmd, strlen(cmd)), (ssize_t)strlen(cmd));
	while (off + 1 < sizeof(buf)) {
		n = read(fd, buf + off, sizeof(buf) - 1 - off);
		if (n <= 0)
			break;
		off += (size_t)n;
		buf[off] = '\0';
		if (strstr(buf, want))
			return;
	}
	buf[off] = '\0';
	fail_msg("QMP %s: no \"%s\" in \"%s\"", cmd, want, buf);
}

static void qmp_expect_greeting(const char *path)
{
	close(qmp_connect(path));
}

static void test_poweroff_exits_zero(void **state)
{
	static const char *const args[] = {"--append", "mode=poweroff", NULL};
	struct cleave_run *vm = *state;
	int64_t t0 = test_now_ms();
	char *log;

	require_children();
	vm_start(vm, NULL, args);
	assert_int_equal(vm_wait_exit(vm, 20000), 0);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "started cleave-vcpu pid"));
	assert_non_null(strstr(log, "exited with status 0"));
	free(log);
	fprintf(stderr, "poweroff run took %lld ms\n", (long long)(test_now_ms() - t0));
	vm_assert_no_children(vm);
	/* The state dir and the QMP socket go with the VM. */
	assert_false(path_exists(vm->state));
	assert_false(path_exists(vm->qmp));
}

static void test_idle_heartbeats_and_sigterm(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	struct cleave_run *vm = *state;
	unsigned int n;
	int64_t t0;

	require_children();
	vm_start(vm, NULL, args);
	vm_child_pid(vm, "cleave-monitor", 1);
	n = serial_wait_heartbeats(vm, 0, 3, 15000);
	serial_wait_heartbeats(vm, n, 3, 5000);
	assert_true(path_exists(vm->qmp));
	t0 = test_now_ms();
	assert_int_equal(kill(vm->pid, SIGTERM), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	fprintf(stderr, "SIGTERM to exit took %lld ms\n", (long long)(test_now_ms() - t0));
	vm_assert_no_children(vm);
	assert_false(path_exists(vm->state));
	assert_false(path_exists(vm->qmp));
}

static void test_monitor_and_migrator_restart(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	struct cleave_run *vm = *state;
	pid_t mon, mig, mon2, mig2, vcpu;
	int64_t t0;
	char want[96], *log;
	unsigned int n;

	require_children();
	vm_start(vm, NULL, args);
	vcpu = vm_child_pid(vm, "cleave-vcpu", 1);
	mig = vm_child_pid(vm, "cleave-migrator", 1);
	mon = vm_child_pid(vm, "cleave-monitor", 1);
	n = serial_wait_heartbeats(vm, 0, 2, 15000);

	t0 = test_now_ms();
	assert_int_equal(kill(mon, SIGKILL), 0);
	mon2 = vm_child_pid(vm, "cleave-monitor", 2);
	assert_int_not_equal(mon2, mon);
	fprintf(stderr, "monitor back after %lld ms (50 ms of it backoff)\n",
		(long long)(test_now_ms() - t0));
	assert_int_equal(kill(mig, SIGKILL), 0);
	mig2 = vm_child_pid(vm, "cleave-migrator", 2);
	assert_int_not_equal(mig2, mig);

	log = test_file_read(vm->log);
	snprintf(want, sizeof(want), "cleave-monitor (pid %d) killed by SIGKILL; restarting",
		 (int)mon);
	assert_non_null(strstr(log, want));
	snprintf(want, sizeof(want), "cleave-migrator (pid %d) killed by SIGKILL; restarting",
		 (int)mig);
	assert_non_null(strstr(log, want));
	free(log);

	/* The guest never noticed, and the restarted monitor serves the same socket. */
	assert_true(cleave_run_pid_running(vcpu));
	serial_wait_heartbeats(vm, n, 3, 5000);
	qmp_expect_greeting(vm->qmp);

	assert_int_equal(kill(vm->pid, SIGTERM), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	vm_assert_no_children(vm);
}

/* The guest's own exit code (an ASSERT exits 3) is cleave run's status. */
static void test_guest_exit_code(void **state)
{
	static const char *const args[] = {"--append", "mode=idle crash=1", NULL};
	struct cleave_run *vm = *state;
	char *log;

	require_children();
	vm_start(vm, NULL, args);
	assert_int_equal(vm_wait_exit(vm, 20000), 3);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "guest powered off with exit code 3"));
	free(log);
	vm_assert_no_children(vm);
}

/*
 * Ctrl-C: SIGINT reaches cleave and every child at once (one process
 * group).  The children's deaths are part of the shutdown: exit 0, no
 * restart, no error.
 */
static void test_ctrl_c_process_group(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	struct cleave_run *vm = *state;
	char *log;

	require_children();
	vm_start(vm, NULL, args);
	vm_child_pid(vm, "cleave-monitor", 1);
	serial_wait_heartbeats(vm, 0, 1, 15000);
	assert_int_equal(kill(-vm->pid, SIGINT), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "SIGINT: shutting down"));
	assert_null(strstr(log, "; restarting in"));
	assert_null(strstr(log, "cleave[main] error"));
	free(log);
	vm_assert_no_children(vm);
	assert_false(path_exists(vm->state));
}

/* QMP quit: vcpu-proc exits 0, the VM ends cleanly. */
static void test_qmp_quit(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	struct cleave_run *vm = *state;
	int fd;

	require_children();
	vm_start(vm, NULL, args);
	vm_child_pid(vm, "cleave-monitor", 1);
	serial_wait_heartbeats(vm, 0, 1, 15000);
	fd = qmp_connect(vm->qmp);
	qmp_command(fd, "{\"execute\":\"qmp_capabilities\"}\r\n", "\"return\"");
	qmp_command(fd, "{\"execute\":\"quit\"}\r\n", "\"return\"");
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	close(fd);
	vm_assert_no_children(vm);
	assert_false(path_exists(vm->state));
}

static void test_vcpu_death_ends_vm(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	struct cleave_run *vm = *state;
	char want[96], *log;
	pid_t vcpu;

	require_children();
	vm_start(vm, NULL, args);
	vcpu = vm_child_pid(vm, "cleave-vcpu", 1);
	vm_child_pid(vm, "cleave-monitor", 1);
	serial_wait_heartbeats(vm, 0, 1, 15000);
	assert_int_equal(kill(vcpu, SIGKILL), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 1);
	log = test_file_read(vm->log);
	snprintf(want, sizeof(want), "cleave-vcpu (pid %d) killed by SIGKILL", (int)vcpu);
	assert_non_null(strstr(log, want));
	free(log);
	vm_assert_no_children(vm);
	assert_false(path_exists(vm->state));
}

/* A migrator that always fails: restarted with backoff until the limit, VM unharmed. */
static void test_restart_limit(void **state)
{
	static const char *const args[] = {"--append", "mode=idle hb=100", NULL};
	static const char *const links[][2] = {
		{"vcpu-proc", "cleave-vcpu"},
		{"monitor", "cleave-monitor"},
	};
	struct cleave_run *vm = *state;
	char libexec[96], path[160], target[PATH_MAX];
	unsigned int n, i;
	char *log;
	FILE *f;

	require_children();
	snprintf(libexec, sizeof(libexec), "%s/libexec", vm->dir);
	assert_int_equal(mkdir(libexec, 0700), 0);
	for (i = 0; i < 2; i++) {
		child_bin(links[i][0], links[i][1], target, sizeof(target));
		snprintf(path, sizeof(path), "%s/%s", libexec, links[i][1]);
		assert_int_equal(symlink(target, path), 0);
	}
	snprintf(path, sizeof(path), "%s/cleave-migrator", libexec);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\necho 'cleave-migrator: failing on purpose' >&2\nexit 1\n", f);
	fclose(f);
	assert_int_equal(chmod(path, 0755), 0);

	vm_start(vm, libexec, args);
	/* 10 restarts: 50+100+200+400+800+5x1000 ms of backoff. */
	log = vm_wait_log(vm, "cleave-migrator", 1, 10000);
	free(log);
	log = vm_wait_log(vm, "restart limit reached", 1, 20000);
	assert_non_null(strstr(log, "restart 10 of 10 within 60 s"));
	assert_non_null(strstr(log, "the VM keeps running without cleave-migrator"));
	assert_int_equal(cleave_run_count(log, "started cleave-migrator pid"), 11);
	free(log);

	n = serial_wait_heartbeats(vm, 0, 1, 5000);
	serial_wait_heartbeats(vm, n, 3, 5000);
	assert_int_equal(kill(vm->pid, SIGTERM), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	vm_assert_no_children(vm);
}

static void test_missing_child_binary(void **state)
{
	struct cleave_run *vm = *state;
	char *log;

	/* An empty libexec dir: nothing to start, a clear error, nothing created. */
	vm_start(vm, vm->dir, NULL);
	assert_int_equal(vm_wait_exit(vm, 5000), 1);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "cleave-vcpu not found in CLEAVE_LIBEXEC_DIR"));
	free(log);
	assert_false(path_exists(vm->state));
}

static void test_bad_option_exits_2(void **state)
{
	static const char *const args[] = {"--vcpus", "0", NULL};
	struct cleave_run *vm = *state;
	char *log;

	vm_start(vm, NULL, args);
	assert_int_equal(vm_wait_exit(vm, 5000), 2);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "--vcpus '0': must be 1.."));
	free(log);
	assert_false(path_exists(vm->state));
	assert_false(path_exists(vm->qmp));
}

/* argv: CLEAVE options|vm — "options" needs no KVM, "vm" boots guests. */
int main(int argc, char **argv)
{
	const struct CMUnitTest options[] = {
		cmocka_unit_test_setup_teardown(test_bad_option_exits_2, vm_setup, vm_teardown),
	};
	const struct CMUnitTest vm[] = {
		cmocka_unit_test_setup_teardown(test_missing_child_binary, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_poweroff_exits_zero, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_idle_heartbeats_and_sigterm, vm_setup,
						vm_teardown),
		cmocka_unit_test_setup_teardown(test_monitor_and_migrator_restart, vm_setup,
						vm_teardown),
		cmocka_unit_test_setup_teardown(test_guest_exit_code, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_c_process_group, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_qmp_quit, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_vcpu_death_ends_vm, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_restart_limit, vm_setup, vm_teardown),
	};
	char *slash;

	if (argc < 3 || (strcmp(argv[2], "options") && strcmp(argv[2], "vm"))) {
		fprintf(stderr, "usage: %s CLEAVE options|vm\n", argv[0]);
		return 1;
	}
	if (!strcmp(argv[2], "vm"))
		test_require_kvm();
	cleave_bin = argv[1];
	/* Each test chooses its children's dir (vm_start's libexec). */
	unsetenv("CLEAVE_LIBEXEC_DIR");
	/* Absolute: the restart-limit test symlinks to the children from elsewhere. */
	if (!realpath(cleave_bin, build_dir)) {
		fprintf(stderr, "%s: %s\n", cleave_bin, strerror(errno));
		return 1;
	}
	slash = strrchr(build_dir, '/');
	if (slash)
		*slash = '\0';
	slash = strrchr(build_dir, '/');
	if (slash)
		*slash = '\0';
	if (!strcmp(argv[2], "options"))
		return cmocka_run_group_tests_name("run-options", options, NULL, NULL);
	return cmocka_run_group_tests_name("run-vm", vm, NULL, NULL);
}
