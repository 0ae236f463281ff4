// SPDX-License-Identifier: GPL-2.0-only
/*
 * getfd / closefd and migrate "fd:NAME" (docs/QMP.md, "getfd and fd: URIs")
 * against a real cleave-monitor and the stand-in migrator, whose end of
 * the fd link (proto/fd-link.h) is served here.  Expected replies are
 * QEMU 7.2.22's (Debian 12, qemu-system-x86_64 -machine microvm -accel tcg
 * -S, fds passed with SCM_RIGHTS over its QMP unix socket), byte for byte,
 * where cleave has the same case.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/fd-link.h"
#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"

#define T_MS 5000

static const char *monitor_exe;

struct env {
	struct fake_backend *fb;
	struct mon_proc mp;
	int link[2]; /* [0] the monitor's end (inherited), [1] the stand-in migrator's */
	pthread_t thread;
	atomic_bool stop;
	atomic_int ack_err;   /* what the stand-in answers */
	atomic_bool ack_fd;   /* the stand-in sends an fd with its answer (must be closed) */
	atomic_int received;  /* messages taken */
	pthread_mutex_t lock; /* protects got_fd, got_name */
	int got_fd;	      /* the last fd received, owned; -1 */
	char got_name[FDLINK_NAME_MAX + 1];
};

/* The stand-in migrator's end of the fd link. */
static void *link_main(void *arg)
{
	struct env *e = arg;

	while (!atomic_load(&e->stop)) {
		struct pollfd p = {.fd = e->link[1], .events = POLLIN};
		struct fdlink_msg m;
		union {
			char buf[CMSG_SPACE(sizeof(int))];
			struct cmsghdr align;
		} ctl;
		struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = ctl.buf,
				    .msg_controllen = sizeof(ctl.buf)};
		struct fdlink_ack ack = {.magic = FDLINK_MAGIC};
		struct cmsghdr *cm;
		struct stat st;
		int fd = -1;

		if (poll(&p, 1, 100) <= 0)
			continue;
		if (recvmsg(e->link[1], &mh, MSG_CMSG_CLOEXEC) != (ssize_t)sizeof(m))
			continue;
		cm = CMSG_FIRSTHDR(&mh);
		if (cm && cm->cmsg_type == SCM_RIGHTS)
			memcpy(&fd, CMSG_DATA(cm), sizeof(int));
		ack.seq = m.seq;
		ack.err = atomic_load(&e->ack_err);
		if (fd < 0)
			ack.err = -EBADMSG;
		else if (fstat(fd, &st) || !S_ISSOCK(st.st_mode))
			ack.err = -ENOTSOCK;
		pthread_mutex_lock(&e->lock);
		if (e->got_fd >= 0)
			close(e->got_fd);
		e->got_fd = fd;
		snprintf(e->got_name, sizeof(e->got_name), "%.*s", (int)m.name_len, m.name);
		pthread_mutex_unlock(&e->lock);
		atomic_fetch_add(&e->received, 1);
		if (atomic_load(&e->ack_fd)) {
			/* A migrator must not hand the monitor fds: it closes them. */
			int sp[2];

			assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0);
			mh.msg_iov = &iov;
			iov.iov_base = &ack;
			iov.iov_len = sizeof(ack);
			mh.msg_controllen = sizeof(ctl.buf);
			cm = CMSG_FIRSTHDR(&mh);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &sp[0], sizeof(int));
			sendmsg(e->link[1], &mh, MSG_NOSIGNAL);
			close(sp[0]);
			close(sp[1]);
		} else {
			send(e->link[1], &ack, sizeof(ack), MSG_NOSIGNAL);
		}
	}
	return NULL;
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	char num[16];
	const char *extra[] = {"--rpc-timeout", "300", "--fd-link-fd", num, NULL};

	assert_non_null(e);
	e->got_fd = -1;
	pthread_mutex_init(&e->lock, NULL);
	assert_int_equal(fake_backend_start(&e->fb), 0);
	/* The monitor's end is inherited (no CLOEXEC), ours is not. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, e->link), 0);
	assert_int_equal(fcntl(e->link[1], F_SETFD, FD_CLOEXEC), 0);
	snprintf(num, sizeof(num), "%d", e->link[0]);
	assert_int_equal(pthread_create(&e->thread, NULL, link_main, e), 0);
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->fb->dir, e->fb, 0, extra), 0);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	assert_true(mon_proc_alive(&e->mp));
	assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
	mon_proc_fini(&e->mp);
	atomic_store(&e->stop, true);
	pthread_join(e->thread, NULL);
	close(e->link[0]);
	close(e->link[1]);
	if (e->got_fd >= 0)
		close(e->got_fd);
	fake_backend_stop(e->fb);
	free(e);
	return 0;
}

/* Descriptors @pid has open; the test fails if /proc does not say. */
static int count_fds(pid_t pid)
{
	int n = test_proc_fd_count(pid);

	assert_true(n >= 0);
	return n;
}

/* A negotiated raw QMP connection. */
static int qmp_open(struct env *e);
static char *qmp_line(int fd);

/* Sends @text with @nfds copies of @pass (SCM_RIGHTS), returns the reply line (no CRLF). */
static char *qmp_send(int fd, const char *text, int pass, int nfds)
{
	union {
		char buf[CMSG_SPACE(2 * sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = (void *)text, .iov_len = strlen(text)};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	int fds[2] = {pass, pass};

	if (nfds) {
		struct cmsghdr *cm;

		memset(&ctl, 0, sizeof(ctl));
		mh.msg_control = ctl.buf;
		mh.msg_controllen = CMSG_SPACE(nfds * sizeof(int));
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(nfds * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, nfds * sizeof(int));
	}
	assert_int_equal(sendmsg(fd, &mh, MSG_NOSIGNAL), (ssize_t)strlen(text));
	return qmp_line(fd);
}

/* The next reply line (events skipped), without CRLF. */
static char *qmp_line(int fd)
{
	char buf[8192];

	for (;;) {
		size_t n = 0;

		while (n < sizeof(buf) - 1) {
			struct pollfd p = {.fd = fd, .events = POLLIN};

			assert_int_equal(poll(&p, 1, T_MS), 1);
			assert_int_equal(read(fd, buf + n, 1), 1);
			if (buf[n++] == '\n')
				break;
		}
		assert_true(n >= 2 && buf[n - 2] == '\r');
		buf[n >= 2 ? n - 2 : 0] = '\0'; /* cmocka's failure is not noreturn to gcc -O3 */
		if (!strstr(buf, "\"event\": "))
			return strdup(buf);
	}
}

static int qmp_open(struct env *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *l;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", e->mp.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	l = qmp_line(fd);
	assert_non_null(strstr(l, "\"QMP\""));
	free(l);
	l = qmp_send(fd, "{\"execute\": \"qmp_capabilities\"}", -1, 0);
	assert_string_equal(l, "{\"return\": {}}");
	free(l);
	return fd;
}

#define GE(d) "{\"error\": {\"class\": \"GenericError\", \"desc\": \"" d "\"}}"

struct fd_case {
	const char *in;
	int nfds; /* fds passed with it */
	const char *want;
};

/* In order, on one connection; QEMU 7.2.22's replies unless marked cleave's. */
static const struct fd_case fd_cases[] = {
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}", 0,
	 GE("No file descriptor supplied via SCM_RIGHTS")},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"1a\"}}", 1,
	 GE("Parameter 'fdname' expects a name not starting with a digit")},
	{"{\"execute\": \"getfd\", \"arguments\": {}}", 1, GE("Parameter 'fdname' is missing")},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": 5}}", 1,
	 GE("Invalid parameter type for 'fdname', expected: string")},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\", \"x\": 1}}", 1,
	 GE("Parameter 'x' is unexpected")},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}", 1, "{\"return\": {}}"},
	/* Replacing a name, and two fds at once (the first is taken): QEMU's {}. */
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}", 1, "{\"return\": {}}"},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a\"}}", 2, "{\"return\": {}}"},
	/* cleave's: QEMU takes "" and names with ':' (which no fd: URI can use). */
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"\"}}", 1,
	 GE("Parameter 'fdname' expects a name of 1 to 63 bytes without ':' or ',' (cleave uses "
	    "named fds only for fd: migration URIs)")},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"a:b\"}}", 1,
	 GE("Parameter 'fdname' expects a name of 1 to 63 bytes without ':' or ',' (cleave uses "
	    "named fds only for fd: migration URIs)")},
	{"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"zz\"}}", 0,
	 GE("File descriptor named 'zz' not found")},
	{"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"1a\"}}", 0,
	 GE("File descriptor named '1a' not found")},
	{"{\"execute\": \"closefd\", \"arguments\": {}}", 0, GE("Parameter 'fdname' is missing")},
	{"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:nope\"}}", 0,
	 GE("File descriptor named 'nope' has not been found")},
	{"{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:1a\"}}", 0,
	 GE("File descriptor named '1a' has not been found")},
	{"{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"fd:nope\"}}", 0,
	 GE("File descriptor named 'nope' has not been found")},
	{"{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"fd:1a\"}}", 0,
	 GE("Invalid file descriptor number '1a'")},
	/* cleave's: QEMU's migrate-incoming would use its own fd 5. */
	{"{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"fd:5\"}}", 0,
	 GE("fd:5: cleave-monitor inherits no file descriptors to name by number; pass one with "
	    "getfd and use fd:NAME")},
	{"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"a\"}}", 0, "{\"return\": {}}"},
	{"{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"a\"}}", 0,
	 GE("File descriptor named 'a' not found")},
	/* No fd sets in cleave (QEMU has them: docs/QMP.md). */
	{"{\"execute\": \"add-fd\"}", 1,
	 "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command add-fd has not been "
	 "found\"}}"},
	{"{\"execute\": \"query-fdsets\"}", 0,
	 "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command query-fdsets has "
	 "not "
	 "been found\"}}"},
	/* An fd with another command is closed once it ran (QEMU keeps it until the next fd). */
	{"{\"execute\": \"query-version\"}", 1, NULL},
	{"{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"b\"}}", 0,
	 GE("No file descriptor supplied via SCM_RIGHTS")},
};

static void test_getfd_replies(void **state)
{
	struct env *e = *state;
	int sp[2], fd, before;
	size_t i;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	fd = qmp_open(e);
	before = count_fds(e->mp.pid);
	for (i = 0; i < sizeof(fd_cases) / sizeof(fd_cases[0]); i++) {
		char *got = qmp_send(fd, fd_cases[i].in, sp[0], fd_cases[i].nfds);

		if (fd_cases[i].want && strcmp(got, fd_cases[i].want))
			fail_msg("case %zu %s:\n got  %s\n want %s", i, fd_cases[i].in, got,
				 fd_cases[i].want);
		free(got);
	}
	/* Every fd passed was closed or named and closed: nothing leaked. */
	assert_int_equal(count_fds(e->mp.pid), before);
	/* Named fds belong to the connection: closed with it. */
	free(qmp_send(fd, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"k\"}}", sp[0],
		      1));
	assert_int_equal(count_fds(e->mp.pid), before + 1);
	close(fd);
	for (i = 0; i < 100 && count_fds(e->mp.pid) != before - 1; i++)
		usleep(10000);
	assert_int_equal(count_fds(e->mp.pid), before - 1);
	close(sp[0]);
	close(sp[1]);
}

/* migrate fd:NAME: the socket reaches the migrator's end of the link, then MIGRATE runs. */
static void test_migrate_fd(void **state)
{
	struct env *e = *state;
	int sp[2], pipefd[2], fd, other, before;
	char buf[8] = "";
	char *l;

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	fd = qmp_open(e);
	other = qmp_open(e);
	before = count_fds(e->mp.pid);
	l = qmp_send(fd, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"mig\"}}", sp[0],
		     1);
	assert_string_equal(l, "{\"return\": {}}");
	free(l);
	close(sp[0]);
	/* Another connection does not see it. */
	l = qmp_send(other, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:mig\"}}", -1,
		     0);
	assert_string_equal(l, GE("File descriptor named 'mig' has not been found"));
	free(l);
	l = qmp_send(fd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:mig\"}}", -1, 0);
	assert_string_equal(l, "{\"return\": {}}");
	free(l);
	assert_int_equal(atomic_load(&e->received), 1);
	pthread_mutex_lock(&e->lock);
	assert_string_equal(e->got_name, "mig");
	assert_true(e->got_fd >= 0);
	assert_int_equal(write(e->got_fd, "ping", 4), 4);
	assert_int_equal(read(sp[1], buf, 4), 4);
	assert_memory_equal(buf, "ping", 4);
	assert_int_equal(write(sp[1], "pong", 4), 4);
	assert_int_equal(read(e->got_fd, buf, 4), 4);
	assert_memory_equal(buf, "pong", 4);
	pthread_mutex_unlock(&e->lock);
	/* MIGRATE ran after the handover (the stand-in completes at once). */
	l = qmp_send(fd, "{\"execute\": \"query-migrate\"}", -1, 0);
	assert_non_null(strstr(l, "\"completed\""));
	free(l);
	/* The name is used up (QEMU's too), the monitor kept no copy. */
	l = qmp_send(fd, "{\"execute\": \"closefd\", \"arguments\": {\"fdname\": \"mig\"}}", -1, 0);
	assert_string_equal(l, GE("File descriptor named 'mig' not found"));
	free(l);
	assert_int_equal(count_fds(e->mp.pid), before);

	/* The migrator refuses (the engine's answer): no MIGRATE, the desc says why. */
	atomic_store(&e->ack_err, -EOPNOTSUPP);
	free(qmp_send(fd, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"x\"}}", sp[1],
		      1));
	l = qmp_send(fd, "{\"execute\": \"migrate-incoming\", \"arguments\": {\"uri\": \"fd:x\"}}",
		     -1, 0);
	assert_string_equal(l, GE("fd:x: the migrator refused the file descriptor: Operation not "
				  "supported"));
	free(l);
	atomic_store(&e->ack_err, 0);
	/* Not a socket. */
	assert_int_equal(pipe2(pipefd, O_CLOEXEC), 0);
	free(qmp_send(fd, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"p\"}}", pipefd[0],
		      1));
	l = qmp_send(fd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:p\"}}", -1, 0);
	assert_string_equal(l, GE("fd:p: the file descriptor is not a socket (a migration needs a "
				  "connected stream socket)"));
	free(l);
	/* A migrator that answers with an fd: the fd is closed, the answer still counts. */
	atomic_store(&e->ack_fd, true);
	free(qmp_send(fd, "{\"execute\": \"getfd\", \"arguments\": {\"fdname\": \"y\"}}", sp[1],
		      1));
	l = qmp_send(fd, "{\"execute\": \"migrate\", \"arguments\": {\"uri\": \"fd:y\"}}", -1, 0);
	assert_string_equal(l, "{\"return\": {}}");
	free(l);
	atomic_store(&e->ack_fd, false);
	assert_int_equal(count_fds(e->mp.pid), before);
	close(pipefd[0]);
	close(pipefd[1]);
	close(sp[1]);
	close(fd);
	close(other);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_getfd_replies, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_migrate_fd, env_setup, env_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE-MONITOR\n", argv[0]);
		return 2;
	}
	monitor_exe = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
