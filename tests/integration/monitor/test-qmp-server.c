// SPDX-License-Identifier: GPL-2.0-only
/*
 * Integration tests of a real cleave-monitor process with in-test backends:
 * many clients at once, one client's failure staying with it (docs/INVARIANTS.md,
 * invariant 4: a greeting write that fails, then one greeting for the next client),
 * pipelining, a client that never reads, dead backends, events, quit and
 * restart on an inherited listening socket.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "monitor/server-internal.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"

#define T_MS 5000 /* generous per-reply timeout; tests assert tighter bounds where it matters */

static const char *monitor_exe;

struct env {
	struct fake_backend *fb;
	struct mon_proc mp;
	int tcp_port;	   /* also listening on tcp:127.0.0.1:tcp_port, or 0 */
	char tcp_spec[64]; /* "tcp:127.0.0.1:PORT" */
	bool want_log;	   /* run the monitor with -v, its stderr in log */
	char log[128];	   /* the monitor's log in the backend's dir, or "" */
};

static int env_setup_args(void **state, const char *const *extra, int inherit)
{
	struct env *e = *state ? *state : calloc(1, sizeof(*e));

	const char *args[16];
	size_t n = 0;

	assert_non_null(e);
	assert_int_equal(fake_backend_start(&e->fb), 0);
	while (extra && extra[n] && n < 14) {
		args[n] = extra[n];
		n++;
	}
	if (e->want_log) {
		snprintf(e->log, sizeof(e->log), "%s/monitor.log", e->fb->dir);
		e->mp.log_path = e->log;
		args[n++] = "-v";
	}
	args[n] = NULL;
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->fb->dir, e->fb, inherit, args), 0);
	*state = e;
	return 0;
}

static int env_setup(void **state)
{
	static const char *const extra[] = {"--rpc-timeout", "300", NULL};

	return env_setup_args(state, extra, 0);
}

static int env_setup_small_limit(void **state)
{
	static const char *const extra[] = {"--rpc-timeout", "300", "--out-limit", "262144", NULL};

	return env_setup_args(state, extra, 0);
}

static int env_setup_inherit(void **state)
{
	static const char *const extra[] = {"--rpc-timeout", "300", NULL};

	return env_setup_args(state, extra, 1);
}

/* A loopback port nobody listens on right now. */
static int free_tcp_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* The monitor logs each client's close and why (-v): tests check what happened. */
static int env_setup_log(void **state)
{
	static const char *const extra[] = {"--rpc-timeout", "300", NULL};
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	e->want_log = true;
	*state = e;
	return env_setup_args(state, extra, 0);
}

static int env_setup_tcp(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *extra[] = {"--rpc-timeout", "300", "--qmp", e->tcp_spec, NULL};

	assert_non_null(e);
	e->want_log = true;
	e->tcp_port = free_tcp_port();
	snprintf(e->tcp_spec, sizeof(e->tcp_spec), "tcp:127.0.0.1:%d", e->tcp_port);
	*state = e;
	return env_setup_args(state, extra, 0);
}

/* The monitor may only have 64 fds: fewer than the clients that will come. */
static int env_setup_few_fds(void **state)
{
	static const char *const extra[] = {"--rpc-timeout", "300", NULL};
	struct env *e = calloc(1, sizeof(*e));

	e->mp.nofile = 64;
	*state = e;
	return env_setup_args(state, extra, 0);
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	/* The monitor must have survived everything the test did, and exit 0 on SIGTERM. */
	assert_true(mon_proc_alive(&e->mp));
	assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
	mon_proc_fini(&e->mp);
	if (e->log[0])
		unlink(e->log);
	fake_backend_stop(e->fb);
	free(e);
	return 0;
}

static struct qmp_client *client_open(struct env *e, int negotiate)
{
	struct qmp_client *c;

	assert_int_equal(qmp_client_connect(&c, e->mp.sock, T_MS), 0);
	if (negotiate)
		assert_int_equal(qmp_client_negotiate(c, T_MS), 0);
	return c;
}

/* Runs @cmd and returns the reply's "return" or error desc as compact text. */
static char *client_cmd(struct qmp_client *c, const char *cmd, const char *args)
{
	json_t *a = args ? json_loads(args, 0, NULL) : NULL, *reply;
	char *text;

	assert_int_equal(qmp_client_execute(c, cmd, a, &reply, T_MS), 0);
	json_decref(a);
	if (json_object_get(reply, "error"))
		text = strdup(json_string_value(
			json_object_get(json_object_get(reply, "error"), "desc")));
	else
		text = json_dumps(json_object_get(reply, "return"), JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(reply);
	return text;
}

#define assert_client_cmd(c, cmd, args, want)                                                      \
	do {                                                                                       \
		char *got_ = client_cmd(c, cmd, args);                                             \
		if (strcmp(got_, want))                                                            \
			fail_msg("%s: got %s want %s", cmd, got_, want);                           \
		free(got_);                                                                        \
	} while (0)

/* A raw unix socket connected to the monitor. */
static int raw_connect(struct env *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", e->mp.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	return fd;
}

static int raw_connect_tcp(struct env *e)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_port = htons((uint16_t)e->tcp_port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

/*
 * Waits up to @first_ms for data, then reads until @quiet_ms pass in
 * silence; returns bytes read.
 */
static size_t raw_read_wait(int fd, char *buf, size_t cap, int first_ms, int quiet_ms)
{
	size_t len = 0;
	ssize_t n;

	for (;;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, len ? quiet_ms : first_ms) != 1)
			break;
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return len;
}

/* Reads everything that arrives within @quiet_ms of silence; returns bytes read. */
static size_t raw_drain(int fd, char *buf, size_t cap, int quiet_ms)
{
	return raw_read_wait(fd, buf, cap, quiet_ms, quiet_ms);
}

static int count_substr(const char *s, const char *sub)
{
	int n = 0;

	while ((s = strstr(s, sub))) {
		n++;
		s += strlen(sub);
	}
	return n;
}

static bool raw_read_until(int fd, char *buf, size_t cap, const char *needle, int timeout_ms);
static int raw_negotiated(struct env *e);
static void raw_run_exact(int fd, const char *cmd, int id, const char *fmt);

/*
 * Reads the greeting, then proves no second one follows without waiting
 * for silence: the monitor writes a client's bytes in order, so a second
 * greeting (sent at accept) would come before qmp_capabilities' reply.
 */
static void raw_expect_one_greeting(int fd)
{
	static const char caps[] = "{\"execute\":\"qmp_capabilities\"}";
	char buf[8192];

	assert_true(raw_read_until(fd, buf, sizeof(buf), "\r\n", T_MS));
	assert_int_equal(count_substr(buf, "{\"QMP\""), 1);
	assert_int_equal(count_substr(buf, "\r\n"), 1);
	assert_int_equal(send(fd, caps, sizeof(caps) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(caps) - 1);
	assert_true(raw_read_until(fd, buf, sizeof(buf), "\r\n", T_MS));
	assert_string_equal(buf, "{\"return\": {}}\r\n");
}

/* Lines of the monitor's log (-v) that contain @what. */
static int log_count(struct env *e, const char *what)
{
	char *text = test_file_read(e->log);
	int n = count_substr(text, what);

	free(text);
	return n;
}

/* Clients the monitor closed because a write to them failed (the peer had gone). */
static int log_write_failures(struct env *e)
{
	return log_count(e, "closed: Broken pipe") +
	       log_count(e, "closed: Connection reset by peer");
}

/* Polls the log until @n write failures are in it; false after @timeout_ms. */
static bool log_wait_write_failures(struct env *e, int n, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;

	while (log_write_failures(e) < n && test_now_ms() < end)
		test_sleep_ms(5);
	return log_write_failures(e) == n;
}

/* Descriptors @pid has open; the test fails if /proc does not say. */
static int proc_fd_count(pid_t pid)
{
	int n = test_proc_fd_count(pid);

	assert_true(n >= 0);
	return n;
}

/* Polls until the monitor has @n descriptors open; false after @timeout_ms. */
static bool proc_wait_fd_count(pid_t pid, int n, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;

	while (proc_fd_count(pid) != n && test_now_ms() < end)
		test_sleep_ms(5);
	return proc_fd_count(pid) == n;
}

static void close_rst(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	/* SO_LINGER 0: close sends RST on TCP; on unix sockets the peer sees ECONNRESET/EPIPE. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

/* ---- many clients ----------------------------------------------------------- */

/* Clients of the 1000-client test, and descriptors it needs in all (this process's own). */
#define MANY_CLIENTS	 1000
#define MANY_CLIENTS_FDS (MANY_CLIENTS + 64)

static void test_1000_clients(void **state)
{
	enum { N = MANY_CLIENTS };
	struct env *e = *state;
	struct qmp_client **c = calloc(N, sizeof(*c));
	char req[256];
	int i;

	/* main() checked the fd limit (MANY_CLIENTS_FDS) before this group ran. */
	assert_non_null(c);
	/* All connected before anyone negotiates: 1000 sessions open at once. */
	for (i = 0; i < N; i++)
		c[i] = client_open(e, 0);
	for (i = 0; i < N; i++) {
		snprintf(req, sizeof(req),
			 "{\"execute\":\"qmp_capabilities\",\"id\":%d}"
			 "{\"execute\":\"query-status\",\"id\":\"s%d\"}"
			 "{\"execute\":\"query-name\",\"id\":[%d]}",
			 i, i, i);
		assert_int_equal(qmp_client_send_raw(c[i], req, strlen(req)), 0);
	}
	for (i = 0; i < N; i++) {
		json_t *r1, *r2, *r3;
		char sid[16];

		assert_int_equal(qmp_client_recv(c[i], &r1, T_MS), 0);
		assert_int_equal(qmp_client_recv(c[i], &r2, T_MS), 0);
		assert_int_equal(qmp_client_recv(c[i], &r3, T_MS), 0);
		assert_int_equal(json_integer_value(json_object_get(r1, "id")), i);
		assert_true(json_is_object(json_object_get(r1, "return")));
		snprintf(sid, sizeof(sid), "s%d", i);
		assert_string_equal(json_string_value(json_object_get(r2, "id")), sid);
		assert_true(
			json_is_true(json_object_get(json_object_get(r2, "return"), "running")));
		assert_int_equal(json_integer_value(json_array_get(json_object_get(r3, "id"), 0)),
				 i);
		assert_string_equal(
			json_string_value(json_object_get(json_object_get(r3, "return"), "name")),
			"testvm");
		json_decref(r1);
		json_decref(r2);
		json_decref(r3);
	}
	for (i = 0; i < N; i++)
		qmp_client_close(c[i]);
	free(c);
}

/* ---- a failed greeting write stays with its client (invariant 4) --------------- */

static void seed_003(struct env *e, int rst, int tcp)
{
	struct qmp_client *a = client_open(e, 0);
	int b, cfd, failed = log_write_failures(e);

	/*
	 * B connects while the monitor cannot serve it (stopped: B sits in the
	 * backlog), then leaves; A leaves too.  The monitor then accepts B and
	 * its greeting write fails with EPIPE/ECONNRESET.
	 */
	kill(e->mp.pid, SIGSTOP);
	b = tcp ? raw_connect_tcp(e) : raw_connect(e);
	if (rst)
		close_rst(b);
	else
		close(b);
	qmp_client_close(a);
	cfd = tcp ? raw_connect_tcp(e) : raw_connect(e);
	kill(e->mp.pid, SIGCONT);
	/* C: one greeting, and a healthy session. */
	raw_expect_one_greeting(cfd);
	close(cfd);
	/*
	 * The scenario happened: B's greeting write failed, and closed B alone.
	 * Not over TCP with a plain close: the peer's FIN still lets that write
	 * through (the reset comes back later), so B is closed on its EOF.
	 */
	if (rst || !tcp)
		assert_true(log_wait_write_failures(e, failed + 1, T_MS));
}

static void test_seed_003_close(void **state)
{
	seed_003(*state, 0, 0);
}

static void test_seed_003_reset(void **state)
{
	seed_003(*state, 1, 0);
}

/* Over TCP, SO_LINGER 0 makes B's leaving a real RST. */
static void test_seed_003_tcp_reset(void **state)
{
	struct env *e = *state;
	struct qmp_client *c;
	char addr[80];

	seed_003(e, 1, 1);
	seed_003(e, 0, 1);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", e->tcp_port);
	assert_int_equal(qmp_client_connect(&c, addr, T_MS), 0);
	assert_int_equal(qmp_client_negotiate(c, T_MS), 0);
	assert_client_cmd(c, "query-name", NULL, "{\"name\":\"testvm\"}");
	qmp_client_close(c);
}

/* Out of fds: accepts pause instead of spinning, and resume once fds are free. */
static void test_out_of_fds(void **state)
{
	enum { N = 100 };
	struct env *e = *state;
	int fds[N], greeted[N], i, n_greeted = 0, n_late = 0;
	char buf[4096];

	for (i = 0; i < N; i++)
		fds[i] = raw_connect(e);
	for (i = 0; i < N; i++) {
		greeted[i] = raw_drain(fds[i], buf, sizeof(buf), i < 5 ? 300 : 5) > 0;
		n_greeted += greeted[i];
	}
	assert_true(n_greeted > 0);
	assert_true(n_greeted < N);
	assert_true(mon_proc_alive(&e->mp));
	for (i = 0; i < N; i++)
		if (greeted[i])
			close(fds[i]);
	/* The ones that waited in the backlog are served now, one greeting each. */
	for (i = 0; i < N; i++) {
		if (greeted[i])
			continue;
		raw_read_wait(fds[i], buf, sizeof(buf), n_late < n_greeted - 8 ? 1000 : 50, 20);
		if (count_substr(buf, "{\"QMP\"") == 1)
			n_late++;
		else
			assert_int_equal(count_substr(buf, "{\"QMP\""), 0);
		close(fds[i]);
	}
	assert_true(n_late > 0);
	assert_true(mon_proc_alive(&e->mp));
}

/* A client that leaves with a reset while replies are being written to it. */
static void test_reset_mid_reply(void **state)
{
	struct env *e = *state;
	static const char cmd[] = "{\"execute\":\"query-commands\"}";
	struct qmp_client *bystander = client_open(e, 1);
	int i, j, fd, fds_before = proc_fd_count(e->mp.pid);

	for (j = 0; j < 20; j++) {
		fd = raw_connect(e);
		send(fd, "{\"execute\":\"qmp_capabilities\"}", 30, MSG_NOSIGNAL);
		for (i = 0; i < 200; i++)
			if (send(fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
				break;
		if (j % 2)
			close_rst(fd);
		else
			close(fd);
	}
	/* SIGPIPE did not kill it, and every client that left was released. */
	assert_true(mon_proc_alive(&e->mp));
	assert_true(proc_wait_fd_count(e->mp.pid, fds_before, T_MS));
	/* A client connected all along is untouched; the next one gets one greeting. */
	assert_client_cmd(bystander, "query-name", NULL, "{\"name\":\"testvm\"}");
	qmp_client_close(bystander);
	fd = raw_connect(e);
	raw_expect_one_greeting(fd);
	close(fd);
}

/* ---- ordering, malformed input ---------------------------------------------- */

static void test_pipelined_in_order(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	static const char *const cmds[] = {"query-status", "query-version",   "query-migrate",
					   "query-name",   "query-cpus-fast", "query-kvm"};
	enum { N = 60 };
	char req[256], want[64];
	json_t *r;
	int i;

	/* All in one write: backend and local commands interleaved. */
	for (i = 0; i < N; i++) {
		snprintf(req, sizeof(req), "{\"execute\":\"%s\",\"id\":{\"n\":%d}}", cmds[i % 6],
			 i);
		assert_int_equal(qmp_client_send_raw(c, req, strlen(req)), 0);
	}
	for (i = 0; i < N; i++) {
		char *idtext;

		assert_int_equal(qmp_client_recv(c, &r, T_MS), 0);
		assert_non_null(json_object_get(r, "return"));
		idtext = json_dumps(json_object_get(r, "id"), JSON_COMPACT);
		snprintf(want, sizeof(want), "{\"n\":%d}", i);
		assert_string_equal(idtext, want);
		free(idtext);
		json_decref(r);
	}
	qmp_client_close(c);
}

static void test_malformed_resync(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	static const char bad[] = "{\"execute\": nope}\n{\"execute\":\"query-name\",\"id\":1}";
	json_t *r;

	assert_int_equal(qmp_client_send_raw(c, bad, sizeof(bad) - 1), 0);
	assert_int_equal(qmp_client_recv(c, &r, T_MS), 0);
	assert_null(json_object_get(r, "id"));
	assert_non_null(
		strstr(json_string_value(json_object_get(json_object_get(r, "error"), "desc")),
		       "JSON parse error"));
	json_decref(r);
	assert_int_equal(qmp_client_recv(c, &r, T_MS), 0);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 1);
	json_decref(r);
	/* One object over many writes. */
	assert_int_equal(qmp_client_send_raw(c, "{\"exec", 6), 0);
	usleep(20000);
	assert_int_equal(qmp_client_send_raw(c, "ute\":\"query-kvm\",", 17), 0);
	usleep(20000);
	assert_int_equal(qmp_client_send_raw(c, "\"id\":2}", 7), 0);
	assert_int_equal(qmp_client_recv(c, &r, T_MS), 0);
	assert_int_equal(json_integer_value(json_object_get(r, "id")), 2);
	json_decref(r);
	qmp_client_close(c);
}

/* ---- a client that never reads --------------------------------------------------- */

static void test_slow_reader_closed_alone(void **state)
{
	struct env *e = *state;
	struct qmp_client *other = client_open(e, 1);
	static const char cmd[] = "{\"execute\":\"query-commands\"}";
	long long t0, worst = 0, t;
	char buf[65536];
	int fd, i, closed = 0;
	ssize_t n;

	fd = raw_connect(e);
	send(fd, "{\"execute\":\"qmp_capabilities\"}", 30, MSG_NOSIGNAL);
	/* Flood without reading, checking the other client's latency as we go. */
	for (i = 0; i < 4000 && !closed; i++) {
		if (send(fd, cmd, sizeof(cmd) - 1, MSG_NOSIGNAL) < 0)
			closed = 1;
		if (i % 200 == 0) {
			t0 = test_now_ms();
			assert_client_cmd(other, "query-name", NULL, "{\"name\":\"testvm\"}");
			t = test_now_ms() - t0;
			worst = t > worst ? t : worst;
		}
	}
	assert_true(worst < 200);
	/* The monitor closed it once its queue passed the limit: we read to EOF. */
	t0 = test_now_ms();
	while (!closed && test_now_ms() - t0 < 5000) {
		n = recv(fd, buf, sizeof(buf), 0);
		if (n <= 0)
			closed = 1;
	}
	assert_true(closed);
	close(fd);
	assert_client_cmd(other, "query-status", NULL,
			  "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}");
	qmp_client_close(other);
}

/* ---- backends -------------------------------------------------------------------- */

static void test_dead_backend(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	long long t0;

	assert_client_cmd(c, "query-migrate", NULL, "{}");
	fake_backend_kill_vcpu(e->fb);
	t0 = test_now_ms();
	assert_client_cmd(c, "query-status", NULL, "vcpu-proc is not responding");
	assert_true(test_now_ms() - t0 < 300 + 700);
	/* Queries needing no backend always answer; the other backend still works. */
	assert_client_cmd(
		c, "query-version", NULL,
		"{\"qemu\":{\"micro\":0,\"minor\":2,\"major\":7},\"package\":\"cleave 0.1.0\"}");
	assert_client_cmd(c, "query-migrate", NULL, "{}");
	fake_backend_kill_migrator(e->fb);
	assert_client_cmd(c, "query-migrate", NULL, "migrator is not running");
	assert_client_cmd(c, "query-name", NULL, "{\"name\":\"testvm\"}");
	qmp_client_close(c);
}

/* A client that leaves while its command is with a slow backend. */
static void test_disconnect_in_flight(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	int i, fd, calls;
	int64_t end;

	/* The migrator worker's start-up call is done once a migrator command was answered. */
	assert_client_cmd(c, "query-migrate", NULL, "{}");
	qmp_client_close(c);
	calls = atomic_load(&e->fb->calls);
	atomic_store(&e->fb->delay_ms, 30);
	for (i = 0; i < 10; i++) {
		c = client_open(e, 1);
		/* query-cpus-fast always asks vcpu-proc (query-status may not: run-state.h). */
		assert_int_equal(qmp_client_send_raw(c, "{\"execute\":\"query-cpus-fast\"}", 29),
				 0);
		/* Leaves once its command is with the backend (which sleeps 30 ms in it). */
		end = test_now_ms() + T_MS;
		while (atomic_load(&e->fb->calls) < calls + i + 1 && test_now_ms() < end)
			test_sleep_ms(1);
		assert_int_equal(atomic_load(&e->fb->calls), calls + i + 1);
		qmp_client_close(c);
	}
	/*
	 * A new client while those answers are still to come: it is likely
	 * to get a departed client's fd number, and must get none of their
	 * answers (the loop checks each job's client id, not only its fd).
	 */
	fd = raw_connect(e);
	raw_expect_one_greeting(fd); /* exactly the greeting, then exactly caps' reply */
	atomic_store(&e->fb->delay_ms, 0);
	raw_run_exact(fd, "query-status", 1,
		      "{\"return\": {\"running\": true, \"singlestep\": false, \"status\": "
		      "\"running\"}, \"id\": %d}\r\n");
	close(fd);
}

/* ---- events and quit --------------------------------------------------------------- */

/* A negotiated client on a raw socket: greeting and capabilities reply consumed. */
static int raw_negotiated(struct env *e)
{
	static const char caps[] = "{\"execute\":\"qmp_capabilities\"}";
	char buf[4096];
	int fd = raw_connect(e);

	raw_read_wait(fd, buf, sizeof(buf), T_MS, 50);
	assert_int_equal(count_substr(buf, "{\"QMP\""), 1);
	assert_int_equal(send(fd, caps, sizeof(caps) - 1, MSG_NOSIGNAL), (ssize_t)sizeof(caps) - 1);
	raw_read_wait(fd, buf, sizeof(buf), T_MS, 50);
	assert_string_equal(buf, "{\"return\": {}}\r\n");
	return fd;
}

/* Reads until the peer closes (true) or @timeout_ms pass (false). */
static bool raw_read_eof(int fd, char *buf, size_t cap, int timeout_ms)
{
	long long end = test_now_ms() + timeout_ms;
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	while (test_now_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, (int)(end - test_now_ms())) != 1)
			break;
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0) {
			buf[len] = '\0';
			return true;
		}
		len += (size_t)n;
		buf[len] = '\0';
	}
	return false;
}

/* Replaces event timestamps' digits by 0 so lines compare byte for byte. */
static void zero_timestamps(char *s)
{
	static const char *const keys[] = {"\"seconds\": ", "\"microseconds\": "};
	char *p, *q;
	size_t i;

	for (i = 0; i < 2; i++) {
		for (p = s; (p = strstr(p, keys[i])); p++) {
			p += strlen(keys[i]);
			for (q = p; *q >= '0' && *q <= '9'; q++)
				;
			if (q > p + 1) {
				memmove(p + 1, q, strlen(q) + 1);
				*p = '0';
			}
		}
	}
}

/* Waits for event @name on @c, skipping others; returns it or NULL. */
static json_t *wait_event(struct qmp_client *c, const char *name, int timeout_ms)
{
	long long end = test_now_ms() + timeout_ms;
	json_t *m;

	while (test_now_ms() < end) {
		if (qmp_client_recv(c, &m, (int)(end - test_now_ms())))
			return NULL;
		if (json_object_get(m, "event") &&
		    !strcmp(json_string_value(json_object_get(m, "event")), name))
			return m;
		json_decref(m);
	}
	return NULL;
}

/* The next MIGRATION event that carries x-cleave-detail (status changes skipped). */
static json_t *wait_migration_detail(struct qmp_client *c, int timeout_ms)
{
	long long end = test_now_ms() + timeout_ms;
	json_t *ev;

	while (test_now_ms() < end) {
		ev = wait_event(c, "MIGRATION", (int)(end - test_now_ms()));
		if (!ev || json_object_get(json_object_get(ev, "data"), "x-cleave-detail"))
			return ev;
		json_decref(ev);
	}
	return NULL;
}

#define assert_event_data(ev, want)                                                                \
	do {                                                                                       \
		char *got_ = json_dumps(json_object_get(ev, "data"), JSON_COMPACT);                \
		if (strcmp(got_, want))                                                            \
			fail_msg("event data: got %s want %s", got_, want);                        \
		free(got_);                                                                        \
	} while (0)

static void test_events(void **state)
{
	struct env *e = *state;
	struct qmp_client *ctl = client_open(e, 1), *watcher = client_open(e, 1);
	struct qmp_client *unneg = client_open(e, 0);
	json_t *ev = NULL;
	char buf[4096];
	int i;

	/* The subscription joins asynchronously: stop/cont until a STOP shows. */
	for (i = 0; i < 50 && !ev; i++) {
		assert_client_cmd(ctl, "stop", NULL, "{}");
		ev = wait_event(watcher, "STOP", 100);
		if (!ev) /* STOP comes only when the VM was running */
			assert_client_cmd(ctl, "cont", NULL, "{}");
	}
	assert_non_null(ev);
	assert_non_null(json_object_get(json_object_get(ev, "timestamp"), "microseconds"));
	json_decref(ev);
	assert_client_cmd(ctl, "cont", NULL, "{}");
	ev = wait_event(watcher, "RESUME", 2000);
	assert_non_null(ev);
	json_decref(ev);
	/* MIGRATION events only with the 'events' capability. */
	assert_client_cmd(ctl, "migrate", "{\"uri\":\"tcp:127.0.0.1:4444\"}", "{}");
	assert_null(wait_event(watcher, "MIGRATION", 300));
	assert_client_cmd(ctl, "migrate-set-capabilities",
			  "{\"capabilities\":[{\"capability\":\"events\",\"state\":true}]}", "{}");
	assert_client_cmd(ctl, "migrate", "{\"uri\":\"tcp:127.0.0.1:4444\"}", "{}");
	ev = wait_event(watcher, "MIGRATION", 2000);
	assert_non_null(ev);
	json_decref(ev);
	/* A status change is QEMU's {"status"} alone; a resume says what happened. */
	assert_client_cmd(ctl, "migrate", "{\"uri\":\"tcp:127.0.0.1:3\"}", "{}");
	ev = wait_migration_detail(watcher, 2000);
	assert_non_null(ev);
	assert_event_data(ev, "{\"status\":\"active\",\"x-cleave-detail\":\"restarted\","
			      "\"x-cleave-restarts\":1,\"x-cleave-resumes\":0,"
			      "\"x-cleave-resent-bytes\":0}");
	json_decref(ev);
	ev = wait_migration_detail(watcher, 2000);
	assert_non_null(ev);
	assert_event_data(ev, "{\"status\":\"active\",\"x-cleave-detail\":\"resumed\","
			      "\"x-cleave-restarts\":1,\"x-cleave-resumes\":1,"
			      "\"x-cleave-resent-bytes\":8192}");
	json_decref(ev);
	ev = wait_event(watcher, "MIGRATION", 2000);
	assert_non_null(ev);
	assert_event_data(ev, "{\"status\":\"completed\"}");
	json_decref(ev);
	/* Not negotiated: no events at all. */
	assert_int_equal(raw_drain(qmp_client_fd(unneg), buf, sizeof(buf), 100), 0);
	qmp_client_close(unneg);
	qmp_client_close(watcher);
	qmp_client_close(ctl);
}

/* Reads until @needle has arrived (true) or @timeout_ms pass (false). */
static bool raw_read_until(int fd, char *buf, size_t cap, const char *needle, int timeout_ms)
{
	long long end = test_now_ms() + timeout_ms;
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	while (!strstr(buf, needle) && test_now_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, (int)(end - test_now_ms())) != 1)
			break;
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	return strstr(buf, needle) != NULL;
}

/*
 * QEMU 7.2 sends STOP / RESUME before the reply to stop / cont, always
 * (its bytes, timestamps zeroed); a stop of a
 * paused VM and a cont of a running one send the reply alone.
 */
static const char qemu72_stop[] = "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, "
				  "\"event\": \"STOP\"}\r\n{\"return\": {}, \"id\": %d}\r\n";
static const char qemu72_cont[] = "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, "
				  "\"event\": \"RESUME\"}\r\n{\"return\": {}, \"id\": %d}\r\n";
static const char qemu72_noop[] = "{\"return\": {}, \"id\": %d}\r\n";

/* Sends @cmd with id @id and checks the bytes up to its reply against @fmt. */
static void raw_run_exact(int fd, const char *cmd, int id, const char *fmt)
{
	char req[128], needle[64], want[512], buf[4096];

	snprintf(req, sizeof(req), "{\"execute\":\"%s\",\"id\":%d}", cmd, id);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	snprintf(needle, sizeof(needle), "\"id\": %d}\r\n", id);
	assert_true(raw_read_until(fd, buf, sizeof(buf), needle, T_MS));
	zero_timestamps(buf);
	snprintf(want, sizeof(want), fmt, id);
	if (strcmp(buf, want))
		fail_msg("%s id %d:\n got  %s\n want %s", cmd, id, buf, want);
}

static void test_stop_cont_event_first(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1), *watcher = client_open(e, 1);
	int fd = raw_negotiated(e), i;
	json_t *ev = NULL;
	char buf[4096];
	long long t0;

	/* The subscription joins asynchronously: stop/cont until a STOP shows. */
	for (i = 0; i < 50 && !ev; i++) {
		assert_client_cmd(c, "stop", NULL, "{}");
		ev = wait_event(watcher, "STOP", 100);
		assert_client_cmd(c, "cont", NULL, "{}");
	}
	assert_non_null(ev);
	json_decref(ev);
	qmp_client_close(watcher);
	qmp_client_close(c);
	raw_drain(fd, buf, sizeof(buf), 100);
	for (i = 0; i < 200; i++) {
		raw_run_exact(fd, "stop", 2 * i, qemu72_stop);
		raw_run_exact(fd, "cont", 2 * i + 1, qemu72_cont);
	}
	/*
	 * No state change, no event, and no waiting for one: a reply held
	 * for an event that never comes would go out after MON_AWAIT_MS.
	 */
	t0 = test_now_ms();
	raw_run_exact(fd, "cont", 1000, qemu72_noop);
	assert_true(test_now_ms() - t0 < MON_AWAIT_MS);
	raw_run_exact(fd, "stop", 1001, qemu72_stop);
	t0 = test_now_ms();
	raw_run_exact(fd, "stop", 1002, qemu72_noop);
	assert_true(test_now_ms() - t0 < MON_AWAIT_MS);
	assert_int_equal(raw_drain(fd, buf, sizeof(buf), 100), 0);
	close(fd);
}

/*
 * human-monitor-command runs stop / cont through the same path: QEMU 7.2
 * sends the event, then the reply, whose value is HMP's (empty) output.
 */
static const char qemu72_hmp_stop[] = "{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, "
				      "\"event\": \"STOP\"}\r\n{\"return\": \"\", \"id\": %d}\r\n";
static const char qemu72_hmp_cont[] =
	"{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, "
	"\"event\": \"RESUME\"}\r\n{\"return\": \"\", \"id\": %d}\r\n";

/* Sends human-monitor-command @line with id @id; checks the bytes up to its reply against @fmt. */
static void raw_hmp_exact(int fd, const char *line, int id, const char *fmt)
{
	char req[256], needle[64], want[1024], buf[4096];

	snprintf(req, sizeof(req),
		 "{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"%s\"},"
		 "\"id\":%d}",
		 line, id);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	snprintf(needle, sizeof(needle), "\"id\": %d}\r\n", id);
	assert_true(raw_read_until(fd, buf, sizeof(buf), needle, T_MS));
	zero_timestamps(buf);
	snprintf(want, sizeof(want), fmt, id);
	if (strcmp(buf, want))
		fail_msg("%s id %d:\n got  %s\n want %s", line, id, buf, want);
}

static void test_hmp(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1), *watcher = client_open(e, 1);
	int fd = raw_negotiated(e), i;
	json_t *ev = NULL;
	char buf[4096];

	/* The subscription joins asynchronously: stop/cont until a STOP shows. */
	for (i = 0; i < 50 && !ev; i++) {
		assert_client_cmd(c, "stop", NULL, "{}");
		ev = wait_event(watcher, "STOP", 100);
		assert_client_cmd(c, "cont", NULL, "{}");
	}
	assert_non_null(ev);
	json_decref(ev);
	qmp_client_close(watcher);
	raw_drain(fd, buf, sizeof(buf), 100);
	/* QEMU 7.2's HMP texts (monitor/hmp-cmds.c, monitor/hmp.c). */
	raw_hmp_exact(fd, "info status", 1,
		      "{\"return\": \"VM status: running\\r\\n\", \"id\": %d}\r\n");
	for (i = 0; i < 20; i++) {
		raw_hmp_exact(fd, "stop", 100 + 2 * i, qemu72_hmp_stop);
		raw_hmp_exact(fd, "c", 101 + 2 * i, qemu72_hmp_cont);
	}
	raw_hmp_exact(fd, "stop", 2, qemu72_hmp_stop);
	raw_hmp_exact(fd, "info status", 3,
		      "{\"return\": \"VM status: paused\\r\\n\", \"id\": %d}\r\n");
	raw_hmp_exact(fd, "cont", 4, qemu72_hmp_cont);
	raw_hmp_exact(fd, "info name", 5, "{\"return\": \"testvm\\r\\n\", \"id\": %d}\r\n");
	raw_hmp_exact(fd, "foo", 6,
		      "{\"return\": \"unknown command: 'foo'\\r\\n\", \"id\": %d}\r\n");
	raw_hmp_exact(fd, "info migrate_capabilities", 7,
		      "{\"return\": \"multifd: off\\r\\nevents: off\\r\\nauto-converge: off\\r\\n"
		      "postcopy-ram: off\\r\\npostcopy-blocktime: off\\r\\n\", "
		      "\"id\": %d}\r\n");
	raw_hmp_exact(fd, "migrate_cancel", 8, "{\"return\": \"\", \"id\": %d}\r\n");
	/* A dead backend: HMP's "Error: " line, within the deadline. */
	fake_backend_kill_vcpu(e->fb);
	raw_hmp_exact(fd, "info status", 9,
		      "{\"return\": \"Error: vcpu-proc is not responding\\r\\n\", \"id\": %d}\r\n");
	raw_hmp_exact(fd, "info version", 10,
		      "{\"return\": \"7.2.0cleave 0.1.0\\r\\n\", \"id\": %d}\r\n");
	assert_int_equal(raw_drain(fd, buf, sizeof(buf), 100), 0);
	close(fd);
	qmp_client_close(c);
}

/*
 * query-machines and query-chardev in QEMU 7.2's shapes (qapi/machine.json
 * MachineInfo, qapi/char.json ChardevInfo).  cleave's machine: "cleave",
 * cpu-max the VM's fixed vCPU count (the fake runs 2).  The QMP socket is
 * named from the socket itself; the serial only when the launcher says
 * what it is (--serial), which this monitor was not told.
 */
static void test_query_machines_chardev(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	char want[512];

	assert_client_cmd(c, "query-machines", NULL,
			  "[{\"name\":\"cleave\",\"is-default\":true,\"cpu-max\":2,"
			  "\"hotpluggable-cpus\":false,\"numa-mem-supported\":false,"
			  "\"deprecated\":false}]");
	snprintf(want, sizeof(want),
		 "[{\"label\":\"compat_monitor0\",\"filename\":\"%s,server=on\","
		 "\"frontend-open\":true}]",
		 e->mp.sock);
	assert_client_cmd(c, "query-chardev", NULL, want);
	qmp_client_close(c);
}

static int env_setup_serial(void **state)
{
	static const char *const extra[] = {"--serial", "file:/var/log/guest.log", NULL};

	return env_setup_args(state, extra, 1);
}

/* An inherited socket is named the same way; the serial as the launcher gave it. */
static void test_query_chardev_serial(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	char want[512];

	snprintf(want, sizeof(want),
		 "[{\"label\":\"compat_monitor0\",\"filename\":\"%s,server=on\","
		 "\"frontend-open\":true},{\"label\":\"serial0\","
		 "\"filename\":\"file:/var/log/guest.log\",\"frontend-open\":true}]",
		 e->mp.sock);
	assert_client_cmd(c, "query-chardev", NULL, want);
	qmp_client_close(c);
}

/* A migrator status that is not UTF-8 still comes through, its bad byte replaced. */
#define STATUS_RUNNING "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}"
#define STATUS_PAUSED  "{\"running\":false,\"singlestep\":false,\"status\":\"paused\"}"

/* query-status until it says @want (2 s at most); the STATUS calls it took. */
static int status_until(struct env *e, struct qmp_client *c, const char *want)
{
	int before = atomic_load(&e->fb->statuses);
	int64_t end = test_now_ms() + 2000;
	char *got = NULL;

	for (;;) {
		free(got);
		got = client_cmd(c, "query-status", NULL);
		if (!strcmp(got, want) || test_now_ms() > end)
			break;
		test_sleep_ms(5);
	}
	assert_string_equal(got, want);
	free(got);
	return atomic_load(&e->fb->statuses) - before;
}

/*
 * query-status is answered from vcpu-proc's RunStateChanged events once a
 * STATUS reply made the state known: no round trip, and still right after
 * changes the monitor did not make.  A gap in the events or a migrator
 * event makes the monitor ask again.
 */
static void test_query_status_known(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Migration mig = CLEAVE__EVENTS__MIGRATION__INIT;
	struct rpc_client *as_migrator;
	char err[RPC_ERRMSG_LEN];

	/* The migrator worker's start-up call is done once a migrator command was answered. */
	assert_client_cmd(c, "query-migrate", NULL, "{}");
	/* The first asks vcpu-proc; the next ten do not. */
	assert_int_equal(status_until(e, c, STATUS_RUNNING), 1);
	for (int i = 0; i < 10; i++)
		assert_int_equal(status_until(e, c, STATUS_RUNNING), 0);
	/* The monitor's own stop: its reply comes after the state changed. */
	assert_client_cmd(c, "stop", NULL, "{}");
	assert_int_equal(status_until(e, c, STATUS_PAUSED), 0);
	/* A change the monitor did not make (as the migrator's RPCs do). */
	assert_int_equal(rpc_client_open(&as_migrator, e->fb->vcpu_rpc), 0);
	assert_int_equal(rpc_call(as_migrator, CLEAVE__VCPU__METHOD__METHOD_RESUME, NULL, NULL,
				  NULL, 2000, err, sizeof(err)),
			 0);
	assert_int_equal(status_until(e, c, STATUS_RUNNING), 0);
	/* A migrator event: asked again, then known again.  Twice: the first may also be a gap. */
	mig.status = "active";
	for (int round = 0; round < 2; round++) {
		int64_t end = test_now_ms() + 2000;

		ev = (Cleave__Events__Event)CLEAVE__EVENTS__EVENT__INIT;
		ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
		ev.migration = &mig;
		assert_int_equal(rpc_pub_send(e->fb->mig_pub, &ev), 0);
		/* Until the event reaches the monitor, it may answer from what it knew. */
		while (status_until(e, c, STATUS_RUNNING) == 0 && test_now_ms() < end)
			test_sleep_ms(5);
		assert_true(test_now_ms() < end);
		assert_int_equal(status_until(e, c, STATUS_RUNNING), 0);
	}
	/* Events lost (a gap in the seq): asked again. */
	rpc_pub_skip_seq(e->fb->vcpu_pub, 3);
	assert_int_equal(rpc_call(as_migrator, CLEAVE__VCPU__METHOD__METHOD_PAUSE, NULL, NULL, NULL,
				  2000, err, sizeof(err)),
			 0);
	{
		int64_t end = test_now_ms() + 2000;
		int calls;

		do
			calls = status_until(e, c, STATUS_PAUSED);
		while (calls == 0 && test_now_ms() < end && (test_sleep_ms(5), 1));
		assert_int_equal(calls, 1);
	}
	assert_int_equal(status_until(e, c, STATUS_PAUSED), 0);
	rpc_client_close(as_migrator);
	qmp_client_close(c);
}

static void test_query_migrate_not_utf8(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = client_open(e, 1);
	json_t *reply;

	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "act\xb1ve");
	snprintf(e->fb->mig_error, sizeof(e->fb->mig_error), "lost \xc3");
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(qmp_client_execute(c, "query-migrate", NULL, &reply, T_MS), 0);
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(reply, "return"), "status")),
		"act?ve");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(reply, "return"), "error-desc")),
		"lost ?");
	json_decref(reply);
	qmp_client_close(c);
}

/* Sends {@body,"id":@id} and checks the bytes up to its reply against @fmt. */
static void raw_req_exact(int fd, const char *body, int id, const char *fmt)
{
	char req[512], needle[64], want[2048], buf[4096];

	snprintf(req, sizeof(req), "{%s,\"id\":%d}", body, id);
	assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	snprintf(needle, sizeof(needle), "\"id\": %d}\r\n", id);
	assert_true(raw_read_until(fd, buf, sizeof(buf), needle, T_MS));
	snprintf(want, sizeof(want), fmt, id);
	if (strcmp(buf, want))
		fail_msg("%s:\n got  %s\n want %s", req, buf, want);
}

static void fake_mig_status(struct env *e, const char *status)
{
	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "%s", status);
	pthread_mutex_unlock(&e->fb->lock);
}

#define YANK(inst) "\"execute\":\"yank\",\"arguments\":{\"instances\":[" inst "]}"
#define HMP_LINE(l)                                                                                \
	"\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"" l "\"}"
#define EXEC(cmd) "\"execute\":\"" cmd "\""
#define REPLY(v)  "{\"return\": " v ", \"id\": %d}\r\n"
#define GENERIC(desc)                                                                              \
	"{\"error\": {\"class\": \"GenericError\", \"desc\": \"" desc "\"}, \"id\": %d}\r\n"
/* QEMU 7.2.22 (Debian 12), qmp_yank() with no such instance. */
#define NOT_FOUND                                                                                  \
	"{\"error\": {\"class\": \"DeviceNotFound\", \"desc\": \"Instance not found\"}, \"id\": "  \
	"%d}\r\n"
#define PC_NO_CAP "Enable postcopy with migrate_set_capability before the start of migration"
#define PC_NO_MIG "Postcopy must be started after migration has been started"
#define PC_CANCEL "Postcopy migration in progress, cannot cancel."

/*
 * postcopy-ram, migrate-start-postcopy, migrate_cancel in postcopy, the
 * postcopy statuses and counters in query-migrate, yank and query-yank,
 * and their HMP commands, through the monitor process with the stand-in
 * migrator answering as cleave-migrator does (test-migrator-proc checks
 * the real one's texts).  Exact replies: QEMU 7.2.22's, run with -machine
 * microvm -accel tcg, where cleave has the same case.
 */
static void test_postcopy_yank(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e);

	/* Nothing ever started, no capability: QEMU's first check. */
	raw_req_exact(fd, EXEC("migrate-start-postcopy"), 1, GENERIC(PC_NO_CAP));
	raw_req_exact(fd, HMP_LINE("migrate_start_postcopy"), 2,
		      REPLY("\"Error: " PC_NO_CAP "\\r\\n\""));
	raw_req_exact(fd, EXEC("migrate-start-postcopy") ",\"arguments\":{\"x\":1}", 3,
		      GENERIC("Parameter 'x' is unexpected"));
	raw_req_exact(fd, EXEC("query-yank"), 4, REPLY("[]"));
	raw_req_exact(fd, YANK("{\"type\":\"migration\"}"), 5, NOT_FOUND);
	/* cleave has no block node and no yankable chardev. */
	raw_req_exact(fd, YANK("{\"type\":\"chardev\",\"id\":\"compat_monitor0\"}"), 6, NOT_FOUND);
	raw_req_exact(fd, YANK("{\"type\":\"block-node\",\"node-name\":\"nope\"}"), 7, NOT_FOUND);
	raw_req_exact(fd, YANK(""), 8, REPLY("{}"));
	raw_req_exact(fd, YANK("{\"type\":\"chardev\"}"), 9,
		      GENERIC("Parameter 'instances[0].id' is missing"));
	raw_req_exact(fd, YANK("{\"type\":\"migration\",\"id\":\"x\"}"), 10,
		      GENERIC("Parameter 'instances[0].id' is unexpected"));
	raw_req_exact(fd, EXEC("yank"), 11, GENERIC("Parameter 'instances' is missing"));
	raw_req_exact(fd, YANK("5"), 12,
		      GENERIC("Invalid parameter type for 'instances[0]', expected: object"));

	raw_req_exact(fd,
		      EXEC("migrate-set-capabilities") ",\"arguments\":{\"capabilities\":[{"
						       "\"capability\":\"postcopy-ram\",\"state\":"
						       "true},{\"capability\":\"multifd\","
						       "\"state\":true}]}",
		      20, REPLY("{}"));
	raw_req_exact(fd, EXEC("query-migrate-capabilities"), 21,
		      REPLY("[{\"capability\": \"multifd\", \"state\": true}, {\"capability\": "
			    "\"events\", \"state\": false}, {\"capability\": \"auto-converge\", "
			    "\"state\": false}, {\"capability\": \"postcopy-ram\", \"state\": "
			    "true}, {\"capability\": \"postcopy-blocktime\", \"state\": false}]"));
	raw_req_exact(fd, EXEC("migrate-start-postcopy"), 22, GENERIC(PC_NO_MIG));
	raw_req_exact(fd, HMP_LINE("migrate_start_postcopy"), 23,
		      REPLY("\"Error: " PC_NO_MIG "\\r\\n\""));

	/* A migration runs: the instance is there, yank reaches the migrator. */
	fake_mig_status(e, "active");
	raw_req_exact(fd, EXEC("query-yank"), 30, REPLY("[{\"type\": \"migration\"}]"));
	/* Every instance is looked up before any is yanked. */
	raw_req_exact(fd, YANK("{\"type\":\"migration\"},{\"type\":\"chardev\",\"id\":\"nope\"}"),
		      31, NOT_FOUND);
	assert_int_equal(atomic_load(&e->fb->yanks), 0);
	raw_req_exact(fd, YANK("{\"type\":\"migration\"}"), 32, REPLY("{}"));
	assert_int_equal(atomic_load(&e->fb->yanks), 1);
	raw_req_exact(fd, EXEC("migrate-start-postcopy"), 33, REPLY("{}"));
	raw_req_exact(fd, HMP_LINE("migrate_start_postcopy"), 34, REPLY("\"\""));
	pthread_mutex_lock(&e->fb->lock);
	assert_int_equal(e->fb->postcopy_starts, 2);
	pthread_mutex_unlock(&e->fb->lock);

	/* Postcopy: the status passes through, the counters show, cancel is refused. */
	fake_mig_status(e, "postcopy-active");
	raw_req_exact(
		fd, EXEC("query-migrate"), 40,
		REPLY("{\"status\": \"postcopy-active\", \"ram\": {\"transferred\": 268435456, "
		      "\"remaining\": 0, \"total\": 268435456, \"duplicate\": 0, \"skipped\": 0, "
		      "\"normal\": 65536, \"normal-bytes\": 268435456, \"dirty-pages-rate\": 0, "
		      "\"mbps\": 8000.5, \"dirty-sync-count\": 3, \"postcopy-requests\": 7, "
		      "\"page-size\": 4096, \"multifd-bytes\": 0}, \"total-time\": 320, "
		      "\"downtime\": 12, \"setup-time\": 2, \"x-cleave-restarts\": 1, "
		      "\"x-cleave-resumes\": 2, \"x-cleave-resent-bytes\": 4096, "
		      "\"x-cleave-resume-time\": 35, \"x-cleave-inflight-bytes\": 65536, "
		      "\"x-cleave-postcopy-pulled\": 300, \"x-cleave-postcopy-pushed\": 1200, "
		      "\"x-cleave-postcopy-wait-us\": 2100}"));
	raw_req_exact(fd, EXEC("migrate_cancel"), 41, GENERIC(PC_CANCEL));
	raw_req_exact(fd, HMP_LINE("migrate_cancel"), 42, REPLY("\"Error: " PC_CANCEL "\\r\\n\""));
	raw_req_exact(fd, EXEC("query-yank"), 43, REPLY("[{\"type\": \"migration\"}]"));
	/* migrate_pause holds it in postcopy-paused; again, QEMU's answer outside postcopy-active.
	 */
	raw_req_exact(fd, HMP_LINE("migrate_pause"), 44, REPLY("\"\""));
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->mig_status, "postcopy-paused");
	assert_int_equal(e->fb->pauses, 1);
	pthread_mutex_unlock(&e->fb->lock);
	raw_req_exact(fd, HMP_LINE("migrate_pause"), 49,
		      REPLY("\"Error: migrate-pause is currently only supported during "
			    "postcopy-active state\\r\\n\""));
	raw_req_exact(fd, EXEC("migrate_cancel"), 45, GENERIC(PC_CANCEL));
	raw_req_exact(fd, EXEC("query-yank"), 46, REPLY("[{\"type\": \"migration\"}]"));
	/* A source has nothing to recover: the migrator's (QEMU's) refusal. */
	raw_req_exact(fd, HMP_LINE("migrate_recover tcp:127.0.0.1:1"), 47,
		      REPLY("\"Error: Migrate recover can only be run when postcopy is "
			    "paused.\\r\\n\""));
	/* QEMU 7.2.22's parse errors of the HMP commands. */
	raw_req_exact(fd, HMP_LINE("migrate_recover"), 50,
		      REPLY("\"migrate_recover: string expected\\r\\nTry \\\"help "
			    "migrate_recover\\\" for more information\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("migrate_recover a b"), 51,
		      REPLY("\"migrate_recover: extraneous characters at the end of line\\r\\nTry "
			    "\\\"help migrate_recover\\\" for more information\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("migrate_recover  \\\"tcp:1\\\" "), 52,
		      REPLY("\"Error: Migrate recover can only be run when postcopy is "
			    "paused.\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("migrate_start_postcopy x"), 53,
		      REPLY("\"migrate_start_postcopy: extraneous characters at the end of "
			    "line\\r\\nTry \\\"help migrate_start_postcopy\\\" for more "
			    "information\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("migrate_pause x"), 54,
		      REPLY("\"migrate_pause: extraneous characters at the end of line\\r\\nTry "
			    "\\\"help migrate_pause\\\" for more information\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("help migrate_start_postcopy"), 55,
		      REPLY("\"migrate_start_postcopy  -- Followup to a migration command to "
			    "switch the migration to postcopy mode. The postcopy-ram capability "
			    "must be set on both source and destination before the original "
			    "migration command .\\r\\n\""));
	raw_req_exact(
		fd, HMP_LINE("help migrate_pause"), 56,
		REPLY("\"migrate_pause  -- Pause an ongoing migration (postcopy-only)\\r\\n\""));
	raw_req_exact(fd, HMP_LINE("help migrate_recover"), 57,
		      REPLY("\"migrate_recover uri -- Continue a paused incoming postcopy "
			    "migration\\r\\n\""));

	/* Ended: no instance; migrate-start-postcopy is QEMU's racy success. */
	fake_mig_status(e, "completed");
	raw_req_exact(fd, EXEC("query-yank"), 60, REPLY("[]"));
	raw_req_exact(fd, YANK("{\"type\":\"migration\"}"), 61, NOT_FOUND);
	raw_req_exact(fd, EXEC("migrate-start-postcopy"), 62, REPLY("{}"));
	assert_int_equal(atomic_load(&e->fb->yanks), 1);
	close(fd);
}

/*
 * Nesting as QEMU 7.2 takes it (json-streamer.c, MAX_NESTING 1024): a
 * request 1024 deep is answered, its id echoed whole; 1025 deep gets one
 * error without an id, and the session goes on.
 */
static void test_nesting_qemu_depth(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e), depth;
	char *req = malloc(8192), *want = malloc(8192), *buf = malloc(16384);
	size_t n;

	for (depth = 1024; depth <= 1025; depth++) {
		/* The request object is one level; its id holds the rest. */
		n = (size_t)sprintf(req, "{\"execute\":\"query-name\",\"id\":");
		memset(req + n, '[', (size_t)depth - 1);
		memset(req + n + depth - 1, ']', (size_t)depth - 1);
		strcpy(req + n + 2 * (depth - 1), "}");
		assert_int_equal(send(fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
		assert_true(raw_read_until(fd, buf, 16384, "\r\n", T_MS));
		if (depth == 1024) {
			n = (size_t)sprintf(want, "{\"return\": {\"name\": \"testvm\"}, \"id\": ");
			memset(want + n, '[', (size_t)depth - 1);
			memset(want + n + depth - 1, ']', (size_t)depth - 1);
			strcpy(want + n + 2 * (depth - 1), "}\r\n");
		} else {
			strcpy(want, "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON "
				     "nesting depth limit exceeded\"}}\r\n");
		}
		assert_string_equal(buf, want);
	}
	raw_run_exact(fd, "query-name", 7, "{\"return\": {\"name\": \"testvm\"}, \"id\": %d}\r\n");
	close(fd);
	free(req);
	free(want);
	free(buf);
}

/*
 * QEMU 7.2's answer to quit, byte for byte
 * (timestamps zeroed): SHUTDOWN first, then the reply, then the connection
 * closes.  The other clients get the SHUTDOWN and are closed too.
 */
static const char qemu72_quit_event[] =
	"{\"timestamp\": {\"seconds\": 0, \"microseconds\": 0}, \"event\": \"SHUTDOWN\", "
	"\"data\": {\"guest\": false, \"reason\": \"host-qmp-quit\"}}\r\n";
static const char qemu72_quit_reply[] = "{\"return\": {}, \"id\": \"q\"}\r\n";

/* Waits until the fake vcpu-proc has seen @n QUIT requests; false after @timeout_ms. */
static bool poll_until_quits(struct env *e, int n, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;

	while (atomic_load(&e->fb->quits) < n && test_now_ms() < end)
		test_sleep_ms(5);
	return atomic_load(&e->fb->quits) == n;
}

static void test_quit(void **state)
{
	/* A command pipelined after quit is never run, as in QEMU. */
	static const char quit[] =
		"{\"execute\":\"quit\",\"id\":\"q\"}{\"execute\":\"query-name\"}";
	struct env *e = *state;
	int ctl = raw_negotiated(e), watcher = raw_negotiated(e), unneg = raw_connect(e);
	char buf[8192], want[512];
	struct qmp_client *c;

	raw_drain(unneg, buf, sizeof(buf), 100); /* its greeting */
	assert_int_equal(send(ctl, quit, sizeof(quit) - 1, MSG_NOSIGNAL),
			 (ssize_t)sizeof(quit) - 1);
	assert_true(raw_read_eof(ctl, buf, sizeof(buf), 2000));
	zero_timestamps(buf);
	snprintf(want, sizeof(want), "%s%s", qemu72_quit_event, qemu72_quit_reply);
	assert_string_equal(buf, want);
	assert_true(raw_read_eof(watcher, buf, sizeof(buf), 2000));
	zero_timestamps(buf);
	assert_string_equal(buf, qemu72_quit_event);
	assert_true(raw_read_eof(unneg, buf, sizeof(buf), 2000));
	assert_string_equal(buf, "");
	close(ctl);
	close(watcher);
	close(unneg);
	assert_true(poll_until_quits(e, 1, 2000));
	/* The monitor itself lives on until the launcher stops it. */
	c = client_open(e, 1);
	assert_client_cmd(c, "query-name", NULL, "{\"name\":\"testvm\"}");
	qmp_client_close(c);
}

/*
 * HMP quit runs quit's sequence: SHUTDOWN, the reply, every client closed,
 * vcpu-proc QUIT; the reply is QEMU 7.2's, {"return": ""} (HMP's empty
 * output), byte for byte.
 */
static void test_hmp_quit(void **state)
{
	static const char quit[] = "{\"execute\":\"human-monitor-command\",\"arguments\":"
				   "{\"command-line\":\"q\"},\"id\":\"q\"}";
	struct env *e = *state;
	int ctl = raw_negotiated(e);
	char buf[8192], want[512];

	assert_int_equal(send(ctl, quit, sizeof(quit) - 1, MSG_NOSIGNAL),
			 (ssize_t)sizeof(quit) - 1);
	assert_true(raw_read_eof(ctl, buf, sizeof(buf), 2000));
	zero_timestamps(buf);
	snprintf(want, sizeof(want), "%s%s", qemu72_quit_event,
		 "{\"return\": \"\", \"id\": \"q\"}\r\n");
	assert_string_equal(buf, want);
	close(ctl);
	assert_true(poll_until_quits(e, 1, 2000));
}

/* ---- restart on the inherited socket ---------------------------------------------- */

static void test_restart_inherited(void **state)
{
	struct env *e = *state;
	static const char *const extra[] = {"--rpc-timeout", "300", NULL};
	struct qmp_client *c;
	int fd;

	assert_true(mon_proc_stop(&e->mp, 1) == 128 + SIGKILL);
	/* Connects while no monitor runs land in the inherited socket's backlog. */
	fd = raw_connect(e);
	assert_int_equal(mon_proc_restart(&e->mp, monitor_exe, e->fb, extra), 0);
	raw_expect_one_greeting(fd);
	close(fd);
	c = client_open(e, 1);
	assert_client_cmd(c, "query-status", NULL,
			  "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}");
	qmp_client_close(c);
}

int main(int argc, char **argv)
{
	/* A group of its own: its precondition (descriptors) must not skip the others. */
	const struct CMUnitTest many[] = {
		cmocka_unit_test_setup_teardown(test_1000_clients, env_setup, env_teardown),
	};
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_seed_003_close, env_setup_log, env_teardown),
		cmocka_unit_test_setup_teardown(test_seed_003_reset, env_setup_log, env_teardown),
		cmocka_unit_test_setup_teardown(test_seed_003_tcp_reset, env_setup_tcp,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_out_of_fds, env_setup_few_fds, env_teardown),
		cmocka_unit_test_setup_teardown(test_reset_mid_reply, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_pipelined_in_order, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_malformed_resync, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_slow_reader_closed_alone,
						env_setup_small_limit, env_teardown),
		cmocka_unit_test_setup_teardown(test_dead_backend, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_disconnect_in_flight, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_events, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_stop_cont_event_first, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_hmp, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_hmp_quit, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_query_machines_chardev, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_query_chardev_serial, env_setup_serial,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_query_status_known, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_query_migrate_not_utf8, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_yank, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_nesting_qemu_depth, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_quit, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_restart_inherited, env_setup_inherit,
						env_teardown),
	};

	if (argc < 2 || (argc > 2 && strcmp(argv[2], "many-clients"))) {
		fprintf(stderr, "usage: %s PATH-TO-cleave-monitor [many-clients]\n", argv[0]);
		return 2;
	}
	monitor_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (argc > 2) {
		test_require_nofile(MANY_CLIENTS_FDS);
		return cmocka_run_group_tests_name("many-clients", many, NULL, NULL);
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
