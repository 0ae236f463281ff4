// SPDX-License-Identifier: GPL-2.0-only
/*
 * The rlimits of sandbox_enter() in forked children, tried as an attacker
 * would: cleave-vcpu and the monitor cannot grow a file they get hold of
 * (an fd passed over a socket, which their policies let them receive), the
 * monitor and the migrator cannot map more than their RLIMIT_AS (so not a
 * large guest's RAM at once).  The migrator writes into RAM memfds and
 * keeps RLIMIT_FSIZE unlimited; a process whose stderr is a log file keeps
 * writing it.  No KVM needed.
 */
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
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

struct fixture {
	char dir[40];  /* mkdtemp */
	char file[64]; /* a file in it, empty */
	int file_fd;   /* @file, O_WRONLY: what the attacker is handed */
	char log[64];  /* a file in it standing in for a log */
	int sock[2];   /* the fd goes over it */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->dir, "/tmp/cleave-limits-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->file, sizeof(f->file), "%s/grown", f->dir);
	snprintf(f->log, sizeof(f->log), "%s/log", f->dir);
	f->file_fd = open(f->file, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (f->file_fd < 0 || socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, f->sock))
		return -1;
	unsetenv(SANDBOX_ENV_DISABLE);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->file_fd);
	close(f->sock[0]);
	close(f->sock[1]);
	unlink(f->file);
	unlink(f->log);
	rmdir(f->dir);
	free(f);
	return 0;
}

static int send_fd(int sock, int fd)
{
	char cbuf[CMSG_SPACE(sizeof(int))] = {0}, c = 'f';
	struct iovec iov = {&c, 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);

	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

static int recv_fd(int sock)
{
	char cbuf[CMSG_SPACE(sizeof(int))], c;
	struct iovec iov = {&c, 1};
	struct msghdr msg = {.msg_iov = &iov,
			     .msg_iovlen = 1,
			     .msg_control = cbuf,
			     .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *cm;
	int fd;

	if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) != 1)
		return -1;
	cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/*
 * In a child: stdout to /dev/null, stderr to @err (-1: /dev/null), @fd3 (or
 * nothing) as fd 3, every other fd closed: no file held for writing but
 * those the test means.
 */
static void child_fds(int fd3, int err)
{
	int null = open("/dev/null", O_WRONLY);

	dup2(null, STDOUT_FILENO);
	dup2(err >= 0 ? err : null, STDERR_FILENO);
	if (fd3 >= 0 && fd3 != 3)
		dup2(fd3, 3);
	close_range(fd3 >= 0 ? 4 : 3, ~0U, 0);
}

/*
 * A child enters @proc's sandbox holding no writable file, is handed one
 * over a socket and writes a byte into it.  Returns its wait status.
 */
static int grow_handed_file(struct fixture *f, enum sandbox_proc proc)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;

		child_fds(f->sock[1], -1);
		if (sandbox_enter(proc))
			_exit(3);
		fd = recv_fd(3);
		if (fd < 0)
			_exit(4);
		_exit(write(fd, "x", 1) == 1 ? 0 : 5);
	}
	assert_int_equal(send_fd(f->sock[0], f->file_fd), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

static off_t file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* cleave-vcpu and the monitor: killed by SIGXFSZ, the file stays empty. */
static void test_fsize_zero(void **state)
{
	static const enum sandbox_proc procs[] = {SANDBOX_MONITOR, SANDBOX_VCPU};
	struct fixture *f = *state;
	unsigned int i;

	for (i = 0; i < 2; i++) {
		int status = grow_handed_file(f, procs[i]);

		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGXFSZ)
			fail_msg("%s: writing a handed file: status 0x%x, not SIGXFSZ",
				 sandbox_policy_get(procs[i])->name, status);
		assert_int_equal(file_size(f->file), 0);
	}
}

/* The migrator pwrite()s pages into RAM memfds: no RLIMIT_FSIZE. */
static void test_fsize_migrator(void **state)
{
	struct fixture *f = *state;
	int status = grow_handed_file(f, SANDBOX_MIGRATOR);

	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(file_size(f->file), 1);
}

/*
 * stderr sent to a file (cleave run 2>log): the monitor keeps writing it.
 * RLIMIT_FSIZE 0 would kill it at its first log line.
 */
static void test_fsize_log_file(void **state)
{
	struct fixture *f = *state;
	static const char line[] = "cleave-monitor[main] a line after sandbox_enter\n";
	int status, log;
	pid_t pid;

	log = open(f->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(log >= 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		child_fds(-1, log);
		if (write(STDERR_FILENO, "before\n", 7) != 7 || sandbox_enter(SANDBOX_MONITOR))
			_exit(3);
		_exit(write(STDERR_FILENO, line, sizeof(line) - 1) == sizeof(line) - 1 ? 0 : 4);
	}
	close(log);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("monitor logging to a file: status 0x%x", status);
	assert_int_equal(file_size(f->log), 7 + sizeof(line) - 1);
}

/* mmap of @len bytes (reserved, never touched) in a child under @proc's sandbox: 0 or errno. */
static int map_in_child(enum sandbox_proc proc, bool enter, size_t len)
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		void *p;

		child_fds(-1, -1);
		if (enter && sandbox_enter(proc))
			_exit(100);
		p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		_exit(p == MAP_FAILED ? (errno & 0x7f) : 0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_not_equal(WEXITSTATUS(status), 100);
	return WEXITSTATUS(status);
}

/*
 * The monitor and the migrator map at most their RLIMIT_AS, neither of them
 * maps guest RAM; cleave-vcpu maps guest RAM of any size.
 */
static void test_address_space(void **state)
{
	(void)state;
	if (sandbox_sanitizer_build()) {
		print_message("sanitizer build: no RLIMIT_AS (shadow memory), not tested\n");
		skip();
	}
	/* The same reservation works before the sandbox: the limit refuses it. */
	assert_int_equal(map_in_child(SANDBOX_MONITOR, false, SANDBOX_MONITOR_AS_MAX), 0);
	assert_int_equal(map_in_child(SANDBOX_MONITOR, true, SANDBOX_MONITOR_AS_MAX), ENOMEM);
	assert_int_equal(map_in_child(SANDBOX_MONITOR, true, 64 << 20), 0);
	assert_int_equal(map_in_child(SANDBOX_MIGRATOR, false, SANDBOX_MIGRATOR_AS_MAX), 0);
	assert_int_equal(map_in_child(SANDBOX_MIGRATOR, true, SANDBOX_MIGRATOR_AS_MAX), ENOMEM);
	assert_int_equal(map_in_child(SANDBOX_MIGRATOR, true, 64 << 20), 0);
	assert_int_equal(map_in_child(SANDBOX_VCPU, true, SANDBOX_MONITOR_AS_MAX), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fsize_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsize_migrator, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fsize_log_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_address_space, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
