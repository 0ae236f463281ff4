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

#include "tests/util/test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *cleave_bin;
static char build_dir[PATH_MAX]; /* cleave's directory's parent */

/* One `cleave run` under test. */
struct vm {
	char dir[64];	  /* scratch dir: log, serial, state, sockets */
	char log[128];	  /* cleave's stderr (the children's too) */
	char serial[128]; /* guest COM1 */
	char state[128];  /* --state-dir */
	char qmp[128];	  /* --qmp unix: socket */
	pid_t pid;	  /* cleave, 0 once reaped */
	pid_t seen[64];	  /* every child PID logged, for the leak check */
	unsigned int nr_seen;
};

static unsigned int count_substr(const char *s, const char *sub)
{
	unsigned int n = 0;

	while ((s = strstr(s, sub))) {
		n++;
		s += strlen(sub);
	}
	return n;
}

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
	struct vm *vm = calloc(1, sizeof(*vm));

	if (!vm)
		return -1;
	strcpy(vm->dir, "/tmp/cleave-run-XXXXXX");
	if (!mkdtemp(vm->dir))
		return -1;
	snprintf(vm->log, sizeof(vm->log), "%s/cleave.log", vm->dir);
	snprintf(vm->serial, sizeof(vm->serial), "%s/serial", vm->dir);
	snprintf(vm->state, sizeof(vm->state), "%s/state", vm->dir);
	snprintf(vm->qmp, sizeof(vm->qmp), "%s/qmp.sock", vm->dir);
	*state = vm;
	return 0;
}

static bool pid_running(pid_t pid)
{
	char path[64], buf[512];
	FILE *f;
	bool running;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	running = fgets(buf, sizeof(buf), f) && !strstr(buf, ") Z ") && !strstr(buf, ") X ");
	fclose(f);
	return running;
}

/* Collects the child PIDs cleave logged so far into vm->seen. */
static void vm_scan_pids(struct vm *vm)
{
	char *log = test_file_read(vm->log), *p = log;
	unsigned int i;
	int pid;

	while ((p = strstr(p, "started cleave-"))) {
		p = strstr(p, " pid ");
		if (!p)
			break;
		pid = atoi(p + 5);
		for (i = 0; i < vm->nr_seen && vm->seen[i] != pid; i++)
			;
		if (i == vm->nr_seen && vm->nr_seen < 64)
			vm->seen[vm->nr_seen++] = pid;
		p += 5;
	}
	free(log);
}

/* Every child PID ever logged is gone (waits briefly for SIGKILLed ones). */
static void vm_assert_no_children(struct vm *vm)
{
	int64_t deadline = test_now_ms() + 3000;
	unsigned int i;

	vm_scan_pids(vm);
	for (i = 0; i < vm->nr_seen; i++) {
		while (pid_running(vm->seen[i]) && test_now_ms() < deadline)
			test_sleep_ms(20);
		if (pid_running(vm->seen[i]))
			fail_msg("child pid %d outlived cleave", (int)vm->seen[i]);
	}
}

static int vm_teardown(void **state)
{
	struct vm *vm = *state;
	char cmd[128];
	unsigned int i;

	if (vm->pid > 0) {
		kill(vm->pid, SIGKILL);
		waitpid(vm->pid, NULL, 0);
	}
	/* PR_SET_PDEATHSIG kills them; this is only for a broken launcher. */
	vm_scan_pids(vm);
	for (i = 0; i < vm->nr_seen; i++)
		if (pid_running(vm->seen[i]))
			kill(vm->seen[i], SIGKILL);
	if (getenv("CLEAVE_TEST_KEEP")) {
		fprintf(stderr, "kept %s\n", vm->dir);
	} else {
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", vm->dir);
		if (system(cmd))
			fprintf(stderr, "rm -rf %s failed\n", vm->dir);
	}
	free(vm);
	return 0;
}

/* Starts `cleave run` with the scratch paths plus @args (NULL-terminated). */
static void vm_start(struct vm *vm, const char *libexec, const char *const *args)
{
	char serial_opt[160], state_opt[160], qmp_opt[160];
	const char *argv[32];
	int argc = 0, fd;

	snprintf(serial_opt, sizeof(serial_opt), "file:%s", vm->serial);
	snprintf(state_opt, sizeof(state_opt), "%s", vm->state);
	snprintf(qmp_opt, sizeof(qmp_opt), "unix:%s", vm->qmp);
	argv[argc++] = cleave_bin;
	argv[argc++] = "run";
	argv[argc++] = "--serial";
	argv[argc++] = serial_opt;
	argv[argc++] = "--state-dir";
	argv[argc++] = state_opt;
	argv[argc++] = "--qmp";
	argv[argc++] = qmp_opt;
	argv[argc++] = "--memory";
	argv[argc++] = "128M";
	while (args && *args && argc < 31)
		argv[argc++] = *args++;
	argv[argc] = NULL;

	vm->pid = fork();
	assert_true(vm->pid >= 0);
	if (vm->pid == 0) {
		/* Its own process group, so a test can Ctrl-C it like a terminal. */
		setpgid(0, 0);
		/* A test killed by its timeout must not leave a VM behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		fd = open(vm->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, 2) < 0 || dup2(fd, 1) < 0)
			_exit(126);
		if (libexec)
			setenv("CLEAVE_LIBEXEC_DIR", libexec, 1);
		else
			unsetenv("CLEAVE_LIBEXEC_DIR");
		execv(cleave_bin, (char **)argv);
		_exit(127);
	}
}

/* Waits for cleave's exit; fails (and kills it) after @timeout_ms. */
static int vm_wait_exit(struct vm *vm, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	int status;
	char *log;
	pid_t r;

	for (;;) {
		r = waitpid(vm->pid, &status, WNOHANG);
		if (r == vm->pid)
			break;
		assert_int_equal(r, 0);
		if (test_now_ms() > deadline) {
			log = test_file_read(vm->log);
			fprintf(stderr, "cleave log:\n%s\n", log);
			free(log);
			fail_msg("cleave did not exit within %d ms", timeout_ms);
		}
		test_sleep_ms(20);
	}
	vm->pid = 0;
	if (WIFSIGNALED(status))
		fail_msg("cleave killed by signal %d", WTERMSIG(status));
	return WEXITSTATUS(status);
}

/*
 * Waits until the log has a line with @what; fails after @timeout_ms or if
 * cleave exited meanwhile.  Returns the log (caller frees).
 */
static char *vm_wait_log(struct vm *vm, const char *what, unsigned int count, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	int status;
	char *log;

	for (;;) {
		log = test_file_read(vm->log);
		if (count_substr(log, what) >= count)
			return log;
		if (vm->pid > 0 && waitpid(vm->pid, &status, WNOHANG) == vm->pid) {
			vm->pid = 0;
			fprintf(stderr, "cleave log:\n%s\n", log);
			fail_msg("cleave exited (status 0x%x) before logging \"%s\"", status, what);
		}
		if (test_now_ms() > deadline) {
			fprintf(stderr, "cleave log:\n%s\n", log);
			fail_msg("no \"%s\" (x%u) in cleave's log within %d ms", what, count,
				 timeout_ms);
		}
		free(log);
		test_sleep_ms(20);
	}
}

/* PID from the @nth (1-based) "started NAME pid N" line. */
static pid_t vm_child_pid(struct vm *vm, const char *name, unsigned int nth)
{
	char what[64], *log, *p;
	unsigned int i;
	pid_t pid;

	snprintf(what, sizeof(what), "started %s pid ", name);
	log = vm_wait_log(vm, what, nth, 10000);
	for (p = log, i = 0; i < nth; i++)
		p = strstr(p, what) + strlen(what);
	pid = atoi(p);
	free(log);
	vm_scan_pids(vm);
	return pid;
}

/* Waits until the guest printed @count more heartbeats than @base. */
static unsigned int serial_wait_heartbeats(struct vm *vm, unsigned int base, unsigned int count,
					   int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	unsigned int n;
	char *ser;

	for (;;) {
		ser = test_file_read(vm->serial);
		n = count_substr(ser, "HB ");
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	assert_true(pid_running(vcpu));
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	struct vm *vm = *state;
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
	assert_int_equal(count_substr(log, "started cleave-migrator pid"), 11);
	free(log);

	n = serial_wait_heartbeats(vm, 0, 1, 5000);
	serial_wait_heartbeats(vm, n, 3, 5000);
	assert_int_equal(kill(vm->pid, SIGTERM), 0);
	assert_int_equal(vm_wait_exit(vm, 10000), 0);
	vm_assert_no_children(vm);
}

static void test_missing_child_binary(void **state)
{
	struct vm *vm = *state;
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
	struct vm *vm = *state;
	char *log;

	vm_start(vm, NULL, args);
	assert_int_equal(vm_wait_exit(vm, 5000), 2);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "--vcpus '0': must be 1.."));
	free(log);
	assert_false(path_exists(vm->state));
	assert_false(path_exists(vm->qmp));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_bad_option_exits_2, vm_setup, vm_teardown),
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
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE\n", argv[0]);
		return 1;
	}
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	cleave_bin = argv[1];
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
	return cmocka_run_group_tests(tests, NULL, NULL);
}
