// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP limits an operator sets (docs/QMP.md, "Limits"), against a real
 * cleave-monitor process without backends: the client limit and the
 * operator's slot, the bound on input held for all clients (and the
 * monitor's RSS under a flood of big unfinished messages), the handshake
 * and unfinished-message deadlines, and bad limit options.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "tests/integration/monitor/mon-proc.h"
#include "tests/util/test-util.h"

#define T_MS	  3000	  /* generous wait for a line the monitor must send */
#define PARTIAL	  1000000 /* an unfinished message just under the 1 MiB message limit */
#define NEGOTIATE "{\"execute\": \"qmp_capabilities\"}"
#define REFUSED                                                                                    \
	"{\"error\": {\"class\": \"GenericError\", \"desc\": \"too many QMP clients: all 4 "       \
	"(qmp-max-clients) and the operator's slot are taken\"}}\r\n"

static const char *monitor_exe;

struct env {
	char dir[64];
	struct mon_proc mp;
	int started;
};

static int env_alloc(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(test_dir_make(e->dir, "qmp-limits"), 0);
	*state = e;
	return 0;
}

static void env_start(struct env *e, const char *const *extra)
{
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->dir, NULL, 0, extra), 0);
	e->started = 1;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->started) {
		/* Whatever the test did, the monitor survived it and exits 0 on SIGTERM. */
		assert_true(mon_proc_alive(&e->mp));
		assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
		mon_proc_fini(&e->mp);
	}
	test_dir_remove(e->dir);
	free(e);
	return 0;
}

static int raw_connect(struct env *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", e->mp.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

/*
 * Reads one line (up to and with "\r\n") into @buf within @timeout_ms.
 * Returns its length, 0 at end of input (or a reset) before any byte, -1
 * on timeout.
 */
static int read_line(int fd, char *buf, size_t cap, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	while (len < cap - 1) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int64_t left = end - test_now_ms();

		if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
			return -1;
		n = recv(fd, buf + len, 1, 0);
		if (n <= 0)
			return len ? (int)len : 0;
		len++;
		buf[len] = '\0';
		if (len >= 2 && buf[len - 2] == '\r' && buf[len - 1] == '\n')
			return (int)len;
	}
	return (int)len;
}

/* Milliseconds until the monitor closed @fd (EOF or reset), or -1 after @timeout_ms. */
static int wait_closed(int fd, int timeout_ms)
{
	int64_t start = test_now_ms();
	char buf[4096];
	ssize_t n;

	while (test_now_ms() - start < timeout_ms) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, 50) != 1)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return (int)(test_now_ms() - start);
	}
	return -1;
}

static void expect_greeting(int fd)
{
	char line[512];

	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	assert_non_null(strstr(line, "{\"QMP\": "));
}

/* A negotiated raw client. */
static int client_open(struct env *e)
{
	char line[512];
	int fd = raw_connect(e);

	expect_greeting(fd);
	assert_int_equal(send(fd, NEGOTIATE, strlen(NEGOTIATE), MSG_NOSIGNAL),
			 (ssize_t)strlen(NEGOTIATE));
	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, "{\"return\": {}}\r\n");
	return fd;
}

/* The session on @fd still answers. */
static void expect_answers(int fd)
{
	static const char q[] = "{\"execute\": \"query-name\", \"id\": 7}";
	char line[512];

	assert_int_equal(send(fd, q, strlen(q), MSG_NOSIGNAL), (ssize_t)strlen(q));
	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, "{\"return\": {\"name\": \"testvm\"}, \"id\": 7}\r\n");
}

/* The next line on @fd is a GenericError naming @param, then the monitor closes. */
static void expect_closed_with(int fd, const char *param)
{
	static const char head[] = "{\"error\": {\"class\": \"GenericError\", \"desc\": \"";
	char line[512];

	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	if (strncmp(line, head, strlen(head)) || !strstr(line, param) ||
	    strcmp(line + strlen(line) - 4, "}}\r\n"))
		fail_msg("want a GenericError naming %s, got %s", param, line);
	assert_true(wait_closed(fd, T_MS) >= 0);
}

/*
 * Sends an unfinished message of @len bytes (a string argument that never
 * ends).  Returns the bytes the socket took before the monitor closed it.
 */
static size_t send_partial(int fd, size_t len)
{
	static const char head[] = "{\"execute\": \"query-name\", \"arguments\": {\"x\": \"";
	char *msg = malloc(len);
	size_t off = 0;
	ssize_t n;

	assert_non_null(msg);
	memset(msg, 'a', len);
	memcpy(msg, head, strlen(head));
	while (off < len) {
		n = send(fd, msg + off, len - off, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(msg);
	return off;
}

/* Waits until the monitor read everything sent on @fd (SIOCOUTQ: unread bytes). */
static void wait_taken(int fd)
{
	int64_t end = test_now_ms() + T_MS;
	int q = 1;

	while (test_now_ms() < end) {
		assert_int_equal(ioctl(fd, SIOCOUTQ, &q), 0);
		if (q == 0)
			return;
		test_sleep_ms(5);
	}
	fail_msg("the monitor left %d bytes unread", q);
}

/* Completes what send_partial() began: the reply proves the session went on. */
static void finish_partial(int fd)
{
	static const char tail[] = "\"}}";
	char line[512];

	assert_int_equal(send(fd, tail, strlen(tail), MSG_NOSIGNAL), (ssize_t)strlen(tail));
	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, "{\"error\": {\"class\": \"GenericError\", \"desc\": "
				  "\"Parameter 'x' is unexpected\"}}\r\n");
}

static long vm_rss_kib(pid_t pid)
{
	char path[64], *status, *p;
	long kib = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = test_file_read(path);
	p = strstr(status, "VmRSS:");
	if (p)
		kib = strtol(p + 6, NULL, 10);
	free(status);
	return kib;
}

/* ---- the client limit and the operator's slot -------------------------------- */

static void test_client_limit(void **state)
{
	static const char *const extra[] = {"--max-clients", "4", "--handshake-timeout", "0", NULL};
	struct env *e = *state;
	char line[512];
	int fds[4], op, refused, i;

	env_start(e, extra);
	for (i = 0; i < 4; i++)
		fds[i] = client_open(e);
	/* All four taken: the next one is the operator's, a full session. */
	op = client_open(e);
	expect_answers(op);
	/* Beyond that: one error line in QEMU's shape, nothing else, then the close. */
	refused = raw_connect(e);
	assert_true(read_line(refused, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, REFUSED);
	assert_true(wait_closed(refused, T_MS) >= 0);
	close(refused);
	/* The five sessions are untouched by the refusal. */
	for (i = 0; i < 4; i++)
		expect_answers(fds[i]);
	expect_answers(op);
	/* The operator left: the next client gets the slot. */
	close(op);
	op = client_open(e);
	expect_answers(op);
	/* A client left: room for one more, and then the limit holds again. */
	close(fds[0]);
	fds[0] = client_open(e);
	refused = raw_connect(e);
	assert_true(read_line(refused, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, REFUSED);
	close(refused);
	for (i = 0; i < 4; i++)
		close(fds[i]);
	close(op);
}

/*
 * The operator's slot is kept for a client that negotiates: connections
 * that never send qmp_capabilities (here: four at once, with no handshake
 * deadline) give it up to the newest one, so the operator gets in at once.
 */
static void test_operator_slot_reclaimed(void **state)
{
	static const char *const extra[] = {"--max-clients", "2", "--handshake-timeout", "0", NULL};
	struct env *e = *state;
	int fds[2], silent[4], op, fd, i;
	char line[512];

	env_start(e, extra);
	for (i = 0; i < 2; i++)
		fds[i] = client_open(e);
	for (i = 0; i < 4; i++) {
		silent[i] = raw_connect(e);
		expect_greeting(silent[i]);
		/* The one before gave way to this one. */
		if (i)
			expect_closed_with(silent[i - 1], "sent no qmp_capabilities");
	}
	op = client_open(e);
	expect_closed_with(silent[3], "sent no qmp_capabilities");
	expect_answers(op);
	/* Its holder negotiated: now the slot is the operator's until it leaves. */
	fd = raw_connect(e);
	assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
	assert_non_null(strstr(line, "the operator's slot are taken"));
	close(fd);
	expect_answers(op);
	for (i = 0; i < 2; i++)
		expect_answers(fds[i]);
	for (i = 0; i < 4; i++)
		close(silent[i]);
	for (i = 0; i < 2; i++)
		close(fds[i]);
	close(op);
}

/* A loopback TCP port that was free a moment ago. */
static int free_tcp_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

static int tcp_connect(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/*
 * Over TCP, the refusal line arrives even to a client whose request was
 * already queued when the monitor accepted it (its close is then a reset,
 * which Linux delivers after the data).  Unix and TCP clients share one
 * limit.
 */
static void test_client_limit_tcp(void **state)
{
	static const char refused[] =
		"{\"error\": {\"class\": \"GenericError\", \"desc\": \"too many QMP clients: all 1 "
		"(qmp-max-clients) and the operator's slot are taken\"}}\r\n";
	struct env *e = *state;
	const char *extra[] = {"--max-clients", "1", "--qmp", NULL, NULL};
	char spec[64], line[512];
	int port = free_tcp_port(), one, op, fd, i;

	snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%d", port);
	extra[3] = spec;
	env_start(e, extra);
	one = client_open(e);
	op = tcp_connect(port);
	expect_greeting(op);
	/* Negotiated, it holds the operator's slot against newer clients. */
	assert_int_equal(send(op, NEGOTIATE, strlen(NEGOTIATE), MSG_NOSIGNAL),
			 (ssize_t)strlen(NEGOTIATE));
	assert_true(read_line(op, line, sizeof(line), T_MS) > 0);
	assert_string_equal(line, "{\"return\": {}}\r\n");
	for (i = 0; i < 3; i++) {
		/* Stopped, the monitor accepts only after the request is in: it must read it. */
		kill(e->mp.pid, SIGSTOP);
		fd = tcp_connect(port);
		assert_int_equal(send(fd, NEGOTIATE, strlen(NEGOTIATE), MSG_NOSIGNAL),
				 (ssize_t)strlen(NEGOTIATE));
		test_sleep_ms(20);
		kill(e->mp.pid, SIGCONT);
		assert_true(read_line(fd, line, sizeof(line), T_MS) > 0);
		assert_string_equal(line, refused);
		close(fd);
	}
	close(op);
	close(one);
}

/* ---- input held for all clients ------------------------------------------------ */

/*
 * 4 MiB for all: four clients' unfinished 1 MB messages (1 MiB of buffer
 * each) fit, the fifth is closed with an error, the four go on.
 */
static void test_input_limit(void **state)
{
	static const char *const extra[] = {"--input-limit",
					    "4194304",
					    "--partial-timeout",
					    "0",
					    "--handshake-timeout",
					    "0",
					    NULL};
	struct env *e = *state;
	int fds[4], fifth, i;

	env_start(e, extra);
	for (i = 0; i < 4; i++) {
		fds[i] = client_open(e);
		assert_int_equal(send_partial(fds[i], PARTIAL), PARTIAL);
		wait_taken(fds[i]);
	}
	fifth = client_open(e);
	send_partial(fifth, PARTIAL);
	expect_closed_with(fifth, "qmp-input-limit");
	close(fifth);
	for (i = 0; i < 4; i++) {
		finish_partial(fds[i]);
		expect_answers(fds[i]);
	}
	/* Finished messages give their memory back: a new big message fits. */
	fifth = client_open(e);
	assert_int_equal(send_partial(fifth, PARTIAL), PARTIAL);
	finish_partial(fifth);
	close(fifth);
	for (i = 0; i < 4; i++)
		close(fds[i]);
}

/*
 * 300 clients each leave a 1 MB message unfinished (300 MB of input).
 * With 16 MiB for all, the monitor's RSS grows by far less than that, and
 * a new client still gets its greeting and answers.
 */
static void test_rss_bound(void **state)
{
	enum { N = 300, BOUND_MIB = 96 };
	/* No deadlines: only the input limit may close anyone, however slow the host. */
	static const char *const extra[] = {"--input-limit",
					    "16777216",
					    "--partial-timeout",
					    "0",
					    "--handshake-timeout",
					    "0",
					    NULL};
	struct env *e = *state;
	int fds[N], i, closed = 0, fd;
	long base, peak = 0, rss;
	struct rlimit rl;

	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur < N + 64) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
		if (rl.rlim_cur < N + 64)
			skip();
	}
	env_start(e, extra);
	base = vm_rss_kib(e->mp.pid);
	assert_true(base > 0);
	for (i = 0; i < N; i++) {
		fds[i] = client_open(e);
		send_partial(fds[i], PARTIAL);
		rss = vm_rss_kib(e->mp.pid);
		peak = rss > peak ? rss : peak;
	}
	for (i = 0; i < N; i++) {
		struct pollfd pfd = {.fd = fds[i], .events = POLLIN};

		/* A closed client has its error line waiting; a kept one has nothing. */
		if (poll(&pfd, 1, 0) == 1) {
			expect_closed_with(fds[i], "qmp-input-limit");
			closed++;
		}
	}
	rss = vm_rss_kib(e->mp.pid);
	peak = rss > peak ? rss : peak;
	print_message("monitor VmRSS: %ld KiB at start, peak %ld KiB; %d of %d clients closed\n",
		      base, peak, closed, N);
	assert_true(peak - base < BOUND_MIB * 1024);
	assert_true(closed > N / 2);
	fd = client_open(e);
	expect_answers(fd);
	close(fd);
	for (i = 0; i < N; i++)
		close(fds[i]);
}

/* ---- deadlines ------------------------------------------------------------------- */

static void test_handshake_deadline(void **state)
{
	static const char *const extra[] = {"--handshake-timeout", "300", "--partial-timeout", "0",
					    NULL};
	struct env *e = *state;
	int64_t t0 = test_now_ms();
	int silent, talker, t;

	env_start(e, extra);
	t0 = test_now_ms();
	silent = raw_connect(e);
	expect_greeting(silent);
	talker = client_open(e);
	expect_closed_with(silent, "qmp-handshake-timeout");
	t = (int)(test_now_ms() - t0);
	assert_true(t >= 250 && t < 2000);
	close(silent);
	/* Negotiated and idle: no deadline (it may be waiting for events). */
	test_sleep_ms(600);
	expect_answers(talker);
	close(talker);
}

static void test_partial_deadline(void **state)
{
	static const char *const extra[] = {"--partial-timeout", "300", "--handshake-timeout", "0",
					    NULL};
	static const char half[] = "{\"execute\": \"query-na";
	struct env *e = *state;
	int stalled, idle, trickle, i, t;
	char line[512];
	int64_t t0;

	env_start(e, extra);
	idle = client_open(e);
	stalled = client_open(e);
	trickle = client_open(e);
	t0 = test_now_ms();
	assert_int_equal(send(stalled, half, strlen(half), MSG_NOSIGNAL), (ssize_t)strlen(half));
	/* One byte every 100 ms is progress, but not a finished message: closed too. */
	for (i = 0; i < 6; i++) {
		if (send(trickle, half + i, 1, MSG_NOSIGNAL) != 1)
			break;
		test_sleep_ms(100);
	}
	expect_closed_with(stalled, "qmp-partial-timeout");
	t = (int)(test_now_ms() - t0);
	assert_true(t >= 250 && t < 2000);
	expect_closed_with(trickle, "qmp-partial-timeout");
	close(stalled);
	close(trickle);
	/* Negotiated, nothing unfinished: it stays however long it idles. */
	test_sleep_ms(500);
	expect_answers(idle);
	/*
	 * A message that completes restarts the clock for the one after it,
	 * even in the same read: two halves 200 ms apart, 400 ms in all.
	 */
	assert_int_equal(send(idle, half, strlen(half), MSG_NOSIGNAL), (ssize_t)strlen(half));
	test_sleep_ms(200);
	snprintf(line, sizeof(line), "me\"}%s", half);
	assert_int_equal(send(idle, line, strlen(line), MSG_NOSIGNAL), (ssize_t)strlen(line));
	test_sleep_ms(200);
	assert_int_equal(send(idle, "me\"}", 4, MSG_NOSIGNAL), 4);
	for (i = 0; i < 2; i++) {
		assert_true(read_line(idle, line, sizeof(line), T_MS) > 0);
		assert_string_equal(line, "{\"return\": {\"name\": \"testvm\"}}\r\n");
	}
	expect_answers(idle);
	close(idle);
}

/* ---- options ------------------------------------------------------------------- */

static void test_bad_options(void **state)
{
	static const char *const bad[][3] = {
		{"--max-clients", "0", NULL},
		{"--max-clients", "100000", NULL},
		{"--input-limit", "1000", NULL},
		{"--handshake-timeout", "soon", NULL},
		{"--partial-timeout", "-1", NULL},
		/* QMP has no authentication: the monitor binds TCP on loopback only. */
		{"--qmp", "tcp:0.0.0.0:0", NULL},
	};
	struct env *e = *state;
	size_t i;

	/* Each refused at start: the process exits before it serves. */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->dir, NULL, 0, bad[i]),
				 -ECHILD);
		mon_proc_fini(&e->mp);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_client_limit, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_operator_slot_reclaimed, env_alloc,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_client_limit_tcp, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_input_limit, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_rss_bound, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_handshake_deadline, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_partial_deadline, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, env_alloc, env_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE-MONITOR\n", argv[0]);
		return 2;
	}
	monitor_exe = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
