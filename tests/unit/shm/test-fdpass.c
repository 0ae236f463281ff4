// SPDX-License-Identifier: GPL-2.0-only
/* Descriptor passing over AF_UNIX: across fork, and every error path. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "tests/unit/shm/fdpass.h"

/* Open descriptors of this process: a failed receive must leave it unchanged. */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;

	assert_non_null(d);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

struct msg {
	uint32_t kind;
	uint32_t seq;
};

static void pair(int type, int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv), 0);
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Child: makes a memfd and a pipe, writes a marker, sends both after @delay_ms. */
static void child_send(int sock, long delay_ms)
{
	struct msg m = {.kind = 7, .seq = 42};
	int fds[2], p[2];

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	fds[0] = memfd_create("fdpass-test", MFD_CLOEXEC);
	if (fds[0] < 0 || pwrite(fds[0], "memfd!", 6, 0) != 6 || pipe(p))
		_exit(1);
	if (write(p[1], "pipe", 4) != 4)
		_exit(2);
	fds[1] = p[0];
	sleep_ms(delay_ms);
	if (fdpass_send(sock, &m, sizeof(m), fds, 2))
		_exit(3);
	_exit(0);
}

static void check_received(const struct msg *m, const int *fds)
{
	char buf[8] = {0};

	assert_int_equal(m->kind, 7);
	assert_int_equal(m->seq, 42);
	/* the child's memfd, not a copy: same contents */
	assert_int_equal(pread(fds[0], buf, 6, 0), 6);
	assert_memory_equal(buf, "memfd!", 6);
	assert_int_equal(read(fds[1], buf, 4), 4);
	assert_memory_equal(buf, "pipe", 4);
	assert_true(fcntl(fds[0], F_GETFD) & FD_CLOEXEC);
	assert_true(fcntl(fds[1], F_GETFD) & FD_CLOEXEC);
	close(fds[0]);
	close(fds[1]);
}

static void across_fork(int type)
{
	struct msg m;
	int sv[2], fds[2], status;
	pid_t pid;

	pair(type, sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		child_send(sv[1], 0);
	}
	close(sv[1]);
	assert_int_equal(fdpass_recv(sv[0], &m, sizeof(m), fds, 2), 0);
	check_received(&m, fds);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the child is gone and its end with it */
	assert_int_equal(fdpass_recv(sv[0], &m, sizeof(m), fds, 2), -ECONNRESET);
	close(sv[0]);
}

static void test_fork_seqpacket(void **state)
{
	across_fork(SOCK_SEQPACKET);
}

static void test_fork_stream(void **state)
{
	across_fork(SOCK_STREAM);
}

static volatile sig_atomic_t alarms;

static void on_alarm(int sig)
{
	alarms++;
}

/* A signal without SA_RESTART interrupts recvmsg; the receive carries on. */
static void test_eintr(void **state)
{
	struct sigaction sa = {.sa_handler = on_alarm}, old;
	struct itimerval it = {{0, 5000}, {0, 5000}}, off = {{0, 0}, {0, 0}};
	struct msg m;
	int sv[2], fds[2], status;
	pid_t pid;

	pair(SOCK_SEQPACKET, sv);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(sv[0]);
		child_send(sv[1], 100);
	}
	close(sv[1]);
	alarms = 0;
	assert_int_equal(sigaction(SIGALRM, &sa, &old), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &it, NULL), 0);
	assert_int_equal(fdpass_recv(sv[0], &m, sizeof(m), fds, 2), 0);
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old, NULL);
	assert_true(alarms > 0);
	check_received(&m, fds);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(sv[0]);
}

static void test_no_fds(void **state)
{
	struct msg m = {1, 2}, r;
	int sv[2], fds[1], before;

	pair(SOCK_SEQPACKET, sv);
	before = fd_count();
	assert_int_equal(fdpass_send(sv[1], &m, sizeof(m), NULL, 0), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), fds, 1), -ENOMSG);
	assert_int_equal(fds[0], -1);
	/* data-only messages still work when no fds are expected */
	assert_int_equal(fdpass_send(sv[1], &m, sizeof(m), NULL, 0), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), NULL, 0), 0);
	assert_int_equal(r.seq, 2);
	assert_int_equal(fd_count(), before);
	close(sv[0]);
	close(sv[1]);
}

/* Fewer descriptors than expected: the ones that came are closed. */
static void test_too_few_fds(void **state)
{
	struct msg m = {1, 2}, r;
	int sv[2], fds[3], mine, before;

	pair(SOCK_SEQPACKET, sv);
	mine = memfd_create("one", MFD_CLOEXEC);
	assert_true(mine >= 0);
	before = fd_count();
	assert_int_equal(fdpass_send(sv[1], &m, sizeof(m), &mine, 1), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), fds, 3), -ENOMSG);
	assert_int_equal(fds[0], -1);
	assert_int_equal(fd_count(), before);
	close(mine);
	close(sv[0]);
	close(sv[1]);
}

/* More descriptors than expected: all closed, message rejected. */
static void test_too_many_fds(void **state)
{
	struct msg m = {1, 2}, r;
	int sv[2], fds[1], mine[3], before;

	pair(SOCK_SEQPACKET, sv);
	for (int i = 0; i < 3; i++)
		mine[i] = memfd_create("many", MFD_CLOEXEC);
	before = fd_count();
	assert_int_equal(fdpass_send(sv[1], &m, sizeof(m), mine, 3), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), fds, 1), -EBADMSG);
	assert_int_equal(fds[0], -1);
	assert_int_equal(fd_count(), before);
	for (int i = 0; i < 3; i++)
		close(mine[i]);
	close(sv[0]);
	close(sv[1]);
}

static void test_short_message(void **state)
{
	struct msg r;
	int sv[2], fds[1], mine, before;

	/* seqpacket: one message shorter than expected, with a descriptor */
	pair(SOCK_SEQPACKET, sv);
	mine = memfd_create("short", MFD_CLOEXEC);
	before = fd_count();
	assert_int_equal(fdpass_send(sv[1], "abc", 3, &mine, 1), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), fds, 1), -EBADMSG);
	assert_int_equal(fd_count(), before);
	/* and one longer than expected */
	assert_int_equal(fdpass_send(sv[1], "0123456789abcdef", 16, NULL, 0), 0);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), NULL, 0), -EBADMSG);
	close(sv[0]);
	close(sv[1]);

	/* stream: the peer closes part way through */
	pair(SOCK_STREAM, sv);
	assert_int_equal(fdpass_send(sv[1], "abc", 3, &mine, 1), 0);
	close(sv[1]);
	assert_int_equal(fdpass_recv(sv[0], &r, sizeof(r), fds, 1), -EBADMSG);
	assert_int_equal(fd_count(), before - 1);
	close(sv[0]);
	close(mine);
}

static void test_peer_closed(void **state)
{
	struct msg m = {0, 0};
	int sv[2];

	pair(SOCK_SEQPACKET, sv);
	close(sv[1]);
	assert_int_equal(fdpass_recv(sv[0], &m, sizeof(m), NULL, 0), -ECONNRESET);
	/* sending to a closed peer is an error, not SIGPIPE */
	assert_int_equal(fdpass_send(sv[0], &m, sizeof(m), NULL, 0), -EPIPE);
	close(sv[0]);
	pair(SOCK_STREAM, sv);
	close(sv[1]);
	assert_int_equal(fdpass_recv(sv[0], &m, sizeof(m), NULL, 0), -ECONNRESET);
	close(sv[0]);
}

static void test_bad_args(void **state)
{
	int fds[FDPASS_MAX_FDS + 1] = {0};
	char c = 0;
	int sv[2];

	pair(SOCK_SEQPACKET, sv);
	assert_int_equal(fdpass_send(sv[0], &c, 0, NULL, 0), -EINVAL);
	assert_int_equal(fdpass_send(sv[0], &c, 1, fds, FDPASS_MAX_FDS + 1), -EINVAL);
	assert_int_equal(fdpass_send(sv[0], &c, 1, NULL, 1), -EINVAL);
	assert_int_equal(fdpass_recv(sv[0], &c, 0, NULL, 0), -EINVAL);
	assert_int_equal(fdpass_recv(sv[0], &c, 1, fds, FDPASS_MAX_FDS + 1), -EINVAL);
	assert_int_equal(fdpass_send(-1, &c, 1, NULL, 0), -EBADF);
	assert_int_equal(fdpass_recv(-1, &c, 1, NULL, 0), -EBADF);
	/* an fd that is not open cannot be sent */
	fds[0] = 1000;
	assert_int_equal(fdpass_send(sv[0], &c, 1, fds, 1), -EBADF);
	close(sv[0]);
	close(sv[1]);
}

/* The most a message may carry: FDPASS_MAX_FDS descriptors. */
static void test_max_fds(void **state)
{
	int sv[2], out[FDPASS_MAX_FDS], in[FDPASS_MAX_FDS], before;
	char c = 'x';

	pair(SOCK_SEQPACKET, sv);
	for (int i = 0; i < FDPASS_MAX_FDS; i++)
		out[i] = memfd_create("max", MFD_CLOEXEC);
	before = fd_count();
	assert_int_equal(fdpass_send(sv[1], &c, 1, out, FDPASS_MAX_FDS), 0);
	assert_int_equal(fdpass_recv(sv[0], &c, 1, in, FDPASS_MAX_FDS), 0);
	assert_int_equal(fd_count(), before + FDPASS_MAX_FDS);
	for (int i = 0; i < FDPASS_MAX_FDS; i++) {
		close(in[i]);
		close(out[i]);
	}
	close(sv[0]);
	close(sv[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_fork_seqpacket), cmocka_unit_test(test_fork_stream),
		cmocka_unit_test(test_eintr),	       cmocka_unit_test(test_no_fds),
		cmocka_unit_test(test_too_few_fds),    cmocka_unit_test(test_too_many_fds),
		cmocka_unit_test(test_short_message),  cmocka_unit_test(test_peer_closed),
		cmocka_unit_test(test_bad_args),       cmocka_unit_test(test_max_fds),
	};

	log_init("test-shm-fdpass");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
