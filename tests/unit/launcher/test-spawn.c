// SPDX-License-Identifier: GPL-2.0-only
/* fork+exec hand-over: exactly the listed fds, at the listed numbers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/spawn.h"
#include "sandbox/sandbox.h"

extern char **environ;

/* argv[1] of this binary run as a spawned child: it writes its environment to fd 3. */
#define DUMP_ENV_ARG "--dump-env"

/* Runs @script under sh with @fds, waits, returns what the child wrote to fd 3. */
static void run_sh(const char *script, const int *fds, unsigned int nr, char *out, size_t len)
{
	struct spawn_cmd c;
	int p[2], pidfd, status;
	unsigned int i;
	ssize_t n;
	size_t off = 0;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(spawn_cmd_init(&c, "/bin/sh", "sh"), 0);
	spawn_cmd_arg(&c, "-c");
	spawn_cmd_arg(&c, "%s", script);
	assert_int_equal(spawn_cmd_fd(&c, p[1]), SPAWN_FD_BASE);
	for (i = 0; i < nr; i++)
		assert_int_equal(spawn_cmd_fd(&c, fds[i]), SPAWN_FD_BASE + 1 + (int)i);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), 0);
	close(p[1]);
	while (off + 1 < len && (n = read(p[0], out + off, len - off - 1)) > 0)
		off += (size_t)n;
	out[off] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	close(pidfd);
	spawn_cmd_fini(&c);
}

/* Runs @path @arg through the spawn path, waits, returns what the child wrote to fd 3. */
static void run_exe(const char *path, const char *arg, char *out, size_t len)
{
	struct spawn_cmd c;
	int p[2], pidfd, status;
	ssize_t n;
	size_t off = 0;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(spawn_cmd_init(&c, path, path), 0);
	spawn_cmd_arg(&c, "%s", arg);
	assert_int_equal(spawn_cmd_fd(&c, p[1]), SPAWN_FD_BASE);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), 0);
	close(p[1]);
	while (off + 1 < len && (n = read(p[0], out + off, len - off - 1)) > 0)
		off += (size_t)n;
	out[off] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(pidfd);
	spawn_cmd_fini(&c);
}

/* Lists a live child's fds from outside ("N=target" lines); returns the highest. */
static int child_fds(pid_t pid, char *out, size_t len)
{
	int highest = -1;
	char path[64], target[128];
	size_t off = 0;
	ssize_t n;
	int fd;

	out[0] = '\0';
	for (fd = 0; fd < 64; fd++) {
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)pid, fd);
		n = readlink(path, target, sizeof(target) - 1);
		if (n < 0)
			continue;
		target[n] = '\0';
		off += (size_t)snprintf(out + off, len - off, "%d=%s\n", fd, target);
		highest = fd;
	}
	return highest;
}

static void test_only_listed_fds(void **state)
{
	int extra = open("/dev/null", O_RDONLY); /* not CLOEXEC: must still not leak */
	int keep = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	struct timespec ts = {0, 50 * 1000 * 1000};
	char out[1024];
	struct spawn_cmd c;
	int pidfd, i, highest = -1;
	pid_t pid;

	assert_true(extra >= 0 && keep >= 0);
	assert_int_equal(spawn_cmd_init(&c, "/bin/sleep", "sleep"), 0);
	spawn_cmd_arg(&c, "5");
	assert_int_equal(spawn_cmd_fd(&c, keep), SPAWN_FD_BASE);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), 0);
	/* The dynamic loader opens libraries for a moment; a leaked fd stays. */
	for (i = 0; i < 40; i++) {
		highest = child_fds(pid, out, sizeof(out));
		if (highest == SPAWN_FD_BASE)
			break;
		nanosleep(&ts, NULL);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(pidfd);
	spawn_cmd_fini(&c);
	close(extra);
	close(keep);
	/* Exactly stdin/out/err (whatever they are) and fd 3. */
	assert_non_null(strstr(out, "3=/dev/zero\n"));
	if (highest != SPAWN_FD_BASE)
		fail_msg("child has more fds than handed over:\n%s", out);
}

/* Sources that sit on each other's target numbers are not clobbered. */
static void test_crossed_fd_numbers(void **state)
{
	int a[2], b[2], fds[2];
	char out[64], buf[8];

	assert_int_equal(pipe2(a, O_CLOEXEC), 0);
	assert_int_equal(pipe2(b, O_CLOEXEC), 0);
	/* Child fd 4 = b's write end, fd 5 = a's: the reverse of creation order. */
	fds[0] = b[1];
	fds[1] = a[1];
	run_sh("echo -n B >&4; echo -n A >&5", fds, 2, out, sizeof(out));
	close(a[1]);
	close(b[1]);
	assert_int_equal(read(a[0], buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'A');
	assert_int_equal(read(b[0], buf, sizeof(buf)), 1);
	assert_int_equal(buf[0], 'B');
	close(a[0]);
	close(b[0]);
}

static void test_signal_mask_cleared(void **state)
{
	sigset_t set, old;
	char out[128];

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigprocmask(SIG_BLOCK, &set, &old);
	/* exec: no fork inside the shell, whose vfork would block signals meanwhile. */
	run_sh("exec grep SigBlk /proc/self/status >&3", NULL, 0, out, sizeof(out));
	sigprocmask(SIG_SETMASK, &old, NULL);
	assert_string_equal(out, "SigBlk:\t0000000000000000\n");
}

static void test_exec_errors(void **state)
{
	struct spawn_cmd c;
	int pidfd;
	pid_t pid;

	assert_int_equal(spawn_cmd_init(&c, "/nonexistent/bin", "x"), 0);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), -ENOENT);
	spawn_cmd_fini(&c);
	/* Not executable: exec fails in the child, the parent gets its errno. */
	assert_int_equal(spawn_cmd_init(&c, "/dev/null", "x"), 0);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), -EACCES);
	spawn_cmd_fini(&c);
}

static void test_builder_errors(void **state)
{
	struct spawn_cmd c;
	int pidfd, i;
	pid_t pid;

	assert_int_equal(spawn_cmd_init(&c, "/bin/true", "true"), 0);
	assert_int_equal(spawn_cmd_fd(&c, -1), -EBADF);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), -EBADF);
	spawn_cmd_fini(&c);

	assert_int_equal(spawn_cmd_init(&c, "/bin/true", "true"), 0);
	for (i = 0; i < SPAWN_MAX_FDS; i++)
		assert_int_equal(spawn_cmd_fd(&c, 0), SPAWN_FD_BASE + i);
	assert_int_equal(spawn_cmd_fd(&c, 0), -EMFILE);
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), -EMFILE);
	spawn_cmd_fini(&c);

	assert_int_equal(spawn_cmd_init(&c, "/bin/true", "true"), 0);
	for (i = 1; i < SPAWN_MAX_ARGS; i++)
		spawn_cmd_arg(&c, "a%d", i);
	assert_int_equal(c.err, 0);
	spawn_cmd_arg(&c, "one too many");
	assert_int_equal(spawn_cmd_start(&c, &pid, &pidfd), -E2BIG);
	spawn_cmd_fini(&c);
}

/* The child dies with the process that spawned it (PR_SET_PDEATHSIG). */
static void test_dies_with_parent(void **state)
{
	struct timespec ts = {0, 20 * 1000 * 1000};
	int p[2], i, pidfd;
	pid_t mid, grandchild = 0;
	char path[64], st[256];
	FILE *f;

	assert_int_equal(pipe(p), 0);
	mid = fork();
	assert_true(mid >= 0);
	if (mid == 0) {
		struct spawn_cmd c;
		pid_t pid;

		if (spawn_cmd_init(&c, "/bin/sleep", "sleep"))
			_exit(1);
		spawn_cmd_arg(&c, "30");
		if (spawn_cmd_start(&c, &pid, &pidfd))
			_exit(1);
		if (write(p[1], &pid, sizeof(pid)) != sizeof(pid))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &grandchild, sizeof(grandchild)), sizeof(grandchild));
	close(p[0]);
	assert_int_equal(waitpid(mid, NULL, 0), mid);
	/* Gone, or a zombie waiting for init: either way no longer running. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)grandchild);
	for (i = 0; i < 100; i++) {
		f = fopen(path, "r");
		if (!f)
			return;
		if (!fgets(st, sizeof(st), f))
			st[0] = '\0';
		fclose(f);
		if (strstr(st, ") Z "))
			return;
		nanosleep(&ts, NULL);
	}
	kill(grandchild, SIGKILL);
	fail_msg("pid %d outlived its parent", (int)grandchild);
}

/* Each variable of the environment, one a line, to fd 3: the child side of test_env_allowlist. */
static int dump_env(void)
{
	char **e;

	for (e = environ; *e; e++)
		if (write(SPAWN_FD_BASE, *e, strlen(*e)) < 0 || write(SPAWN_FD_BASE, "\n", 1) < 0)
			return 1;
	return 0;
}

static bool line_in(const char *text, const char *line)
{
	size_t len = strlen(line);
	const char *p = text;

	while ((p = strstr(p, line))) {
		if ((p == text || p[-1] == '\n') && p[len] == '\n')
			return true;
		p += len;
	}
	return false;
}

/*
 * A child gets only the variables cleave's processes read: what an attacker
 * or a careless shell sets in the launcher's environment (LD_PRELOAD, a
 * library path, anything else) stays behind.
 */
static void test_env_allowlist(void **state)
{
	static const struct {
		const char *name;
		bool sanitizer_only;
	} allowed[] = {
		{SANDBOX_ENV_DISABLE, false},
		{"CLEAVE_MIG_TEST_HOOKS", false},
		{"ASAN_OPTIONS", true},
		{"UBSAN_OPTIONS", true},
		{"LSAN_OPTIONS", true},
		{"TSAN_OPTIONS", true},
		{"PATH", true},
	};
	char self[4096], out[16384], *line, *save, *path = getenv("PATH");
	ssize_t len = readlink("/proc/self/exe", self, sizeof(self) - 1);

	(void)state;
	assert_true(len > 0);
	self[len] = '\0';
	path = path ? strdup(path) : NULL;
	/* What run.c sets for --no-sandbox, a test hook, and what must not pass. */
	setenv(SANDBOX_ENV_DISABLE, "1", 1);
	setenv("CLEAVE_MIG_TEST_HOOKS", "ram_hash=1", 1);
	setenv("LD_PRELOAD", "/nonexistent/cleave-evil.so", 1);
	setenv("LD_LIBRARY_PATH", "/nonexistent/cleave-lib", 1);
	setenv("CLEAVE_TEST_PLANTED", "x", 1);
	setenv("PATH", "/nonexistent/cleave-bin:/usr/bin:/bin", 1);
	run_exe(self, DUMP_ENV_ARG, out, sizeof(out));
	unsetenv(SANDBOX_ENV_DISABLE);
	unsetenv("CLEAVE_MIG_TEST_HOOKS");
	unsetenv("LD_PRELOAD");
	unsetenv("LD_LIBRARY_PATH");
	unsetenv("CLEAVE_TEST_PLANTED");
	if (path)
		setenv("PATH", path, 1);
	free(path);

	assert_true(line_in(out, SANDBOX_ENV_DISABLE "=1"));
#ifdef CLEAVE_FAULT_INJECTION
	assert_true(line_in(out, "CLEAVE_MIG_TEST_HOOKS=ram_hash=1"));
#else
	assert_null(strstr(out, "CLEAVE_MIG_TEST_HOOKS"));
#endif
	if (sandbox_sanitizer_build())
		assert_true(line_in(out, "PATH=/nonexistent/cleave-bin:/usr/bin:/bin"));
	for (line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool ok = false;

		for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++) {
			size_t n = strlen(allowed[i].name);

			if (!strncmp(line, allowed[i].name, n) && line[n] == '=')
				ok = !allowed[i].sanitizer_only || sandbox_sanitizer_build();
		}
		if (!ok)
			fail_msg("the child inherited '%s'", line);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_only_listed_fds),
		cmocka_unit_test(test_crossed_fd_numbers),
		cmocka_unit_test(test_signal_mask_cleared),
		cmocka_unit_test(test_exec_errors),
		cmocka_unit_test(test_builder_errors),
		cmocka_unit_test(test_dies_with_parent),
		cmocka_unit_test(test_env_allowlist),
	};

	if (argc == 2 && !strcmp(argv[1], DUMP_ENV_ARG))
		return dump_env();

	return cmocka_run_group_tests(tests, NULL, NULL);
}
