// SPDX-License-Identifier: GPL-2.0-only
/*
 * Out-of-band execution against a real cleave-monitor process with in-test
 * backends (docs/QMP.md, "Out-of-band execution"): the greeting offers
 * 'oob', qmp_capabilities enables it, exec-oob of the allowed commands and
 * QEMU 7.2's errors for everything else, an exec-oob reply overtaking the
 * client's slow in-band command, in-band messages (errors included)
 * keeping their order behind it, the queue limit of 8, and allow-oob in
 * query-qmp-schema.  migrate-pause and migrate-recover ask the in-test
 * migrator: exec-oob jobs ahead of the migrator's queue, at most 4 out
 * per client, whose answers are dropped when their client left.  Replies
 * are compared byte for byte with QEMU's.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <jansson.h>

#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"

#define T_MS	5000 /* generous per-reply timeout */
#define SLOW_MS 800  /* the in-test vcpu-proc's delay for a slow in-band command */

static const char *monitor_exe;

static const char greeting72[] =
	"{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "
	"\"package\": \"cleave 0.1.0\"}, \"capabilities\": [\"oob\"]}}\r\n";
static const char caps_oob[] =
	"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}";
static const char caps_plain[] = "{\"execute\":\"qmp_capabilities\"}";

/* QEMU 7.2's answers outside postcopy (migration/migration.c), the migrator's too. */
#define PAUSE_ERR                                                                                  \
	"{\"error\": {\"class\": \"GenericError\", \"desc\": \"migrate-pause is currently only "   \
	"supported during postcopy-active state\"}"
#define RECOVER_ERR                                                                                \
	"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Migrate recover can only be run "   \
	"when postcopy is paused.\"}"

struct env {
	struct fake_backend *fb;
	struct mon_proc mp;
};

static int env_setup(void **state)
{
	/* The deadline well above the slow command's delay. */
	static const char *const extra[] = {"--rpc-timeout", "3000", NULL};
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(fake_backend_start(&e->fb), 0);
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->fb->dir, e->fb, 0, extra), 0);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	/* The monitor must have survived everything the test did, and exit 0 on SIGTERM. */
	assert_true(mon_proc_alive(&e->mp));
	assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
	mon_proc_fini(&e->mp);
	fake_backend_stop(e->fb);
	free(e);
	return 0;
}

static void raw_send(int fd, const char *s)
{
	assert_int_equal(send(fd, s, strlen(s), MSG_NOSIGNAL), (ssize_t)strlen(s));
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

/* Reads until @lines CRLF-terminated lines arrived (true) or @timeout_ms pass (false). */
static bool raw_read_lines(int fd, char *buf, size_t cap, int lines, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;
	size_t len = 0;
	ssize_t n;

	buf[0] = '\0';
	while (count_substr(buf, "\r\n") < lines && test_now_ms() < end) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, (int)(end - test_now_ms())) != 1)
			break;
		n = recv(fd, buf + len, cap - 1 - len, 0);
		if (n <= 0)
			break;
		len += (size_t)n;
		buf[len] = '\0';
	}
	return count_substr(buf, "\r\n") >= lines;
}

/* Sends @req and checks that exactly @want comes back (one line). */
static void raw_expect(int fd, const char *req, const char *want)
{
	char buf[8192];

	raw_send(fd, req);
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	if (strcmp(buf, want))
		fail_msg("%s:\n got  %s\n want %s", req, buf, want);
}

/* A raw client after its greeting (checked: QEMU 7.2's, offering oob). */
static int raw_connect(struct env *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char buf[4096];

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", e->mp.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, greeting72);
	return fd;
}

/* A client that negotiated, with @caps (caps_oob or caps_plain). */
static int raw_negotiated(struct env *e, const char *caps)
{
	int fd = raw_connect(e);

	raw_expect(fd, caps, "{\"return\": {}}\r\n");
	return fd;
}

/*
 * Makes every call to the in-test vcpu-proc take SLOW_MS (query-cpus-fast
 * always calls it); the migrator's stay fast.
 */
static void backend_slow(struct env *e, bool slow)
{
	atomic_store(&e->fb->delay_ms, slow ? SLOW_MS : 0);
}

/* ---- the capability ------------------------------------------------------------ */

static void test_greeting_offers_oob(void **state)
{
	struct env *e = *state;
	int fd = raw_connect(e); /* checks the greeting's bytes */

	/* Enabling it is accepted, with an id as any command. */
	raw_expect(
		fd,
		"{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]},\"id\":1}",
		"{\"return\": {}, \"id\": 1}\r\n");
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":2}", PAUSE_ERR ", \"id\": 2}\r\n");
	close(fd);
}

/* ---- exec-oob: allowed, refused, not enabled ------------------------------------ */

static void test_exec_oob_allowed(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob);

	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":42}", PAUSE_ERR ", \"id\": 42}\r\n");
	/* QEMU does not require an id with exec-oob (only recommends one). */
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\"}", PAUSE_ERR "}\r\n");
	raw_expect(
		fd,
		"{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:4444\"},"
		"\"id\":\"r\"}",
		RECOVER_ERR ", \"id\": \"r\"}\r\n");
	/* Arguments are checked as for execute. */
	raw_expect(fd, "{\"exec-oob\":\"migrate-recover\",\"id\":3}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'uri' is "
		   "missing\"}, \"id\": 3}\r\n");
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"arguments\":{\"x\":1},\"id\":4}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Parameter 'x' is "
		   "unexpected\"}, \"id\": 4}\r\n");
	/* In band they answer the same, with oob on or off. */
	raw_expect(fd, "{\"execute\":\"migrate-pause\",\"id\":5}", PAUSE_ERR ", \"id\": 5}\r\n");
	close(fd);
	fd = raw_negotiated(e, caps_plain);
	raw_expect(fd, "{\"execute\":\"migrate-recover\",\"arguments\":{\"uri\":\"x\"}}",
		   RECOVER_ERR "}\r\n");
	close(fd);
}

static void test_exec_oob_refused(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob);

	raw_expect(fd, "{\"exec-oob\":\"query-status\",\"id\":1}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command "
		   "query-status does not support OOB\"}, \"id\": 1}\r\n");
	raw_expect(fd, "{\"exec-oob\":\"qmp_capabilities\"}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command "
		   "qmp_capabilities does not support OOB\"}}\r\n");
	raw_expect(fd, "{\"exec-oob\":\"no-such\",\"id\":2}",
		   "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"The command no-such "
		   "has not been found\"}, \"id\": 2}\r\n");
	raw_expect(fd, "{\"exec-oob\":7,\"id\":3}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
		   "'exec-oob' must be a string\"}, \"id\": 3}\r\n");
	/* Both: QEMU names them in its own order, whatever the client's. */
	raw_expect(fd, "{\"execute\":\"migrate-pause\",\"exec-oob\":\"migrate-pause\",\"id\":4}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
		   "'execute' clashes with 'exec-oob'\"}, \"id\": 4}\r\n");
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"execute\":\"migrate-pause\",\"id\":5}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"QMP input member "
		   "'execute' clashes with 'exec-oob'\"}, \"id\": 5}\r\n");
	/* The session goes on. */
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":6}", PAUSE_ERR ", \"id\": 6}\r\n");
	close(fd);
}

static void test_exec_oob_not_enabled(void **state)
{
	static const char unexpected[] = "{\"error\": {\"class\": \"GenericError\", \"desc\": "
					 "\"QMP input member 'exec-oob' is unexpected\"}";
	struct env *e = *state;
	char want[256];
	int fd;

	/* Before negotiation: the envelope error, not the negotiation one. */
	fd = raw_connect(e);
	snprintf(want, sizeof(want), "%s, \"id\": 1}\r\n", unexpected);
	raw_expect(fd, "{\"exec-oob\":\"qmp_capabilities\",\"id\":1}", want);
	raw_expect(fd, caps_plain, "{\"return\": {}}\r\n");
	/* Negotiated without oob: exec-oob is no member of a request. */
	snprintf(want, sizeof(want), "%s, \"id\": 2}\r\n", unexpected);
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":2}", want);
	snprintf(want, sizeof(want), "%s}\r\n", unexpected);
	raw_expect(fd, "{\"execute\":\"migrate-pause\",\"exec-oob\":\"migrate-pause\"}", want);
	close(fd);
}

/* ---- overtaking, order, the queue ---------------------------------------------- */

/* Where line @n (0-based) of @buf starts, or NULL. */
static const char *line_at(const char *buf, int n)
{
	while (buf && n-- > 0) {
		buf = strstr(buf, "\r\n");
		buf = buf ? buf + 2 : NULL;
	}
	return buf;
}

/* Line @n of @buf holds @what. */
static void assert_line(const char *buf, int n, const char *what)
{
	const char *l = line_at(buf, n), *end = l ? strstr(l, "\r\n") : NULL;

	if (!l || !end || !memmem(l, (size_t)(end - l), what, strlen(what)))
		fail_msg("line %d does not hold %s:\n%s", n, what, buf);
}

/* Which of the first @n lines of @buf holds @what, or -1. */
static int line_with(const char *buf, int n, const char *what)
{
	for (int i = 0; i < n; i++) {
		const char *l = line_at(buf, i), *end = l ? strstr(l, "\r\n") : NULL;

		if (l && end && memmem(l, (size_t)(end - l), what, strlen(what)))
			return i;
	}
	return -1;
}

/* The first @n lines hold @first before @second, and @any somewhere. */
static void assert_oob_lines(const char *buf, int n, const char *first, const char *second,
			     const char *any)
{
	int a = line_with(buf, n, first), b = line_with(buf, n, second);

	if (a < 0 || b < 0 || a > b || line_with(buf, n, any) < 0)
		fail_msg("want %s before %s and %s among the first %d lines:\n%s", first, second,
			 any, n, buf);
}

/* The point of oob: its reply comes while the in-band command still waits on vcpu-proc. */
static void test_oob_overtakes_slow_command(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob);
	char buf[8192];
	int64_t t0;

	backend_slow(e, true);
	t0 = test_now_ms();
	raw_send(fd, "{\"execute\":\"query-cpus-fast\",\"id\":\"slow\"}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":\"fast\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, PAUSE_ERR ", \"id\": \"fast\"}\r\n");
	/* Well before the slow call could have returned. */
	assert_true(test_now_ms() - t0 < SLOW_MS / 2);
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_line(buf, 0, "\"id\": \"slow\"");
	assert_line(buf, 0, "\"return\": [");
	assert_true(test_now_ms() - t0 >= SLOW_MS);
	close(fd);

	/* Without oob the same bytes are answered in order. */
	fd = raw_negotiated(e, caps_plain);
	raw_send(fd, "{\"execute\":\"query-cpus-fast\",\"id\":\"slow\"}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":\"fast\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 2, T_MS));
	assert_line(buf, 0, "\"id\": \"slow\"");
	assert_line(buf, 1, "'exec-oob' is unexpected\"}, \"id\": \"fast\"}");
	close(fd);
}

/*
 * In-band messages read behind the slow command wait in order, errors
 * included (QEMU does not let a JSON error jump the queue); exec-oob
 * messages among them run at once, in their own order.
 */
static void test_inband_order_kept(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob);
	char buf[16384];

	backend_slow(e, true);
	raw_send(fd, "{\"execute\":\"query-cpus-fast\",\"id\":1}"
		     "{\"execute\":\"query-name\",\"id\":2}"
		     "{\"execute\": nope}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":3}"
		     "{\"execute\":\"query-status\",\"id\":4}"
		     "{\"exec-oob\":\"query-status\",\"id\":5}"
		     "{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":\"u\"},\"id\":6}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 7, T_MS));
	/*
	 * The three exec-oob replies first.  3 and 6 wait on the migrator, in
	 * their order; 5 is answered on the loop and may come before either.
	 */
	assert_oob_lines(buf, 3, PAUSE_ERR ", \"id\": 3}", RECOVER_ERR ", \"id\": 6}",
			 "does not support OOB\"}, \"id\": 5}");
	assert_line(buf, 3, "\"id\": 1}");
	assert_line(buf, 4, "\"id\": 2}");
	assert_line(buf, 5,
		    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"JSON parse error");
	assert_line(buf, 6, "\"id\": 4}");
	close(fd);
}

/*
 * QEMU queues at most 8 in-band messages behind the one that runs
 * (QMP_REQ_QUEUE_LEN_MAX), then stops reading the client: an exec-oob
 * after 7 runs at once, after 8 only once the slow command is done.
 * Nothing is dropped.
 */
static void test_inband_queue_limit(void **state)
{
	struct env *e = *state;
	char req[4096], buf[16384];
	int queued, i, fd;

	backend_slow(e, true);
	for (queued = 7; queued <= 8; queued++) {
		fd = raw_negotiated(e, caps_oob);
		snprintf(req, sizeof(req), "{\"execute\":\"query-cpus-fast\",\"id\":\"slow\"}");
		for (i = 0; i < queued; i++)
			snprintf(req + strlen(req), sizeof(req) - strlen(req),
				 "{\"execute\":\"query-version\",\"id\":%d}", i);
		snprintf(req + strlen(req), sizeof(req) - strlen(req),
			 "{\"exec-oob\":\"migrate-pause\",\"id\":\"fast\"}");
		raw_send(fd, req);
		assert_true(raw_read_lines(fd, buf, sizeof(buf), queued + 2, T_MS));
		if (queued < 8) {
			assert_line(buf, 0, "\"id\": \"fast\"");
			assert_line(buf, 1, "\"id\": \"slow\"");
		} else {
			assert_line(buf, 0, "\"id\": \"slow\"");
			assert_line(buf, queued + 1, "\"id\": \"fast\"");
		}
		for (i = 0; i < queued; i++) {
			char id[32];

			snprintf(id, sizeof(id), "\"id\": %d}", i);
			assert_line(buf, 2 + i - (queued < 8 ? 0 : 1), id);
		}
		close(fd);
	}
}

/* A client that leaves with a full queue and a command out costs nobody anything. */
static void test_leave_with_queue(void **state)
{
	struct env *e = *state;
	char req[4096] = "", buf[4096];
	int i, fd = raw_negotiated(e, caps_oob);

	backend_slow(e, true);
	for (i = 0; i < 12; i++)
		snprintf(req + strlen(req), sizeof(req) - strlen(req),
			 "{\"execute\":\"query-cpus-fast\",\"id\":%d}", i);
	raw_send(fd, req);
	test_sleep_ms(100);
	close(fd);
	backend_slow(e, false);
	/* The next client (likely on the same fd) gets none of that. */
	fd = raw_negotiated(e, caps_oob);
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":\"n\"}",
		   PAUSE_ERR ", \"id\": \"n\"}\r\n");
	test_sleep_ms(SLOW_MS + 200);
	raw_send(fd, "{\"execute\":\"query-name\",\"id\":\"q\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, "{\"return\": {\"name\": \"testvm\"}, \"id\": \"q\"}\r\n");
	close(fd);
}

/* ---- exec-oob with a backend: migrate-pause and migrate-recover ------------------- */

#define RESUME_ERR                                                                                 \
	"{\"error\": {\"class\": \"GenericError\", \"desc\": \"Cannot resume if there is no "      \
	"paused migration\"}"

static void assert_fake(struct env *e, const char *status)
{
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->mig_status, status);
	pthread_mutex_unlock(&e->fb->lock);
}

/*
 * What migrate-pause is for: exec-oob holds the migration while the
 * client's in-band command still waits on vcpu-proc; the in-band reply
 * comes after, in order with the next in-band command.  Then a destination
 * is released by exec-oob migrate-recover, a source by migrate {resume}.
 */
static void test_oob_pause_overtakes(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob);
	char buf[8192];
	int64_t t0;

	fake_backend_set_migration(e->fb, "postcopy-active", false);
	backend_slow(e, true);
	t0 = test_now_ms();
	raw_send(fd, "{\"execute\":\"query-cpus-fast\",\"id\":\"slow\"}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":\"pause\"}"
		     "{\"execute\":\"query-name\",\"id\":\"after\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, "{\"return\": {}, \"id\": \"pause\"}\r\n");
	assert_true(test_now_ms() - t0 < SLOW_MS / 2);
	assert_fake(e, "postcopy-paused");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 2, T_MS));
	assert_line(buf, 0, "{\"return\": [");
	assert_line(buf, 0, "\"id\": \"slow\"}");
	assert_line(buf, 1, "{\"return\": {\"name\": \"testvm\"}, \"id\": \"after\"}");
	assert_true(test_now_ms() - t0 >= SLOW_MS);

	/* A destination held in postcopy-paused: exec-oob migrate-recover releases it. */
	fake_backend_set_migration(e->fb, "postcopy-paused", true);
	t0 = test_now_ms();
	raw_send(fd, "{\"execute\":\"query-cpus-fast\",\"id\":\"slow\"}"
		     "{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":"
		     "\"tcp:127.0.0.1:4446\"},\"id\":\"recover\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, "{\"return\": {}, \"id\": \"recover\"}\r\n");
	assert_true(test_now_ms() - t0 < SLOW_MS / 2);
	assert_fake(e, "postcopy-active");
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->recover_uri, "tcp:127.0.0.1:4446");
	pthread_mutex_unlock(&e->fb->lock);
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_line(buf, 0, "\"id\": \"slow\"}");
	backend_slow(e, false);
	raw_expect(
		fd,
		"{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:4446\"},"
		"\"id\":\"again\"}",
		RECOVER_ERR ", \"id\": \"again\"}\r\n");

	/* A source held in postcopy-paused: migrate {resume: true} reconnects it. */
	fake_backend_set_migration(e->fb, "postcopy-paused", false);
	raw_expect(fd,
		   "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:4447\","
		   "\"resume\":true},\"id\":\"resume\"}",
		   "{\"return\": {}, \"id\": \"resume\"}\r\n");
	assert_fake(e, "postcopy-active");
	pthread_mutex_lock(&e->fb->lock);
	assert_string_equal(e->fb->migrate_uri, "tcp:127.0.0.1:4447");
	assert_true(e->fb->migrate_resume);
	assert_int_equal(e->fb->resumes, 1);
	pthread_mutex_unlock(&e->fb->lock);
	raw_expect(fd,
		   "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:4447\","
		   "\"resume\":true},\"id\":7}",
		   RESUME_ERR ", \"id\": 7}\r\n");
	/* migrate is no allow-oob command, resume or not. */
	raw_expect(fd,
		   "{\"exec-oob\":\"migrate\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:4447\","
		   "\"resume\":true},\"id\":8}",
		   "{\"error\": {\"class\": \"GenericError\", \"desc\": \"The command migrate does "
		   "not support OOB\"}, \"id\": 8}\r\n");
	close(fd);
}

/*
 * exec-oob jobs go ahead of the in-band jobs other clients queued on the
 * migrator: they wait only for the call the migrator is in.
 */
static void test_oob_ahead_of_queue(void **state)
{
	struct env *e = *state;
	int c[3], i, calls, fd = raw_negotiated(e, caps_oob);
	char buf[4096], want[64];
	int64_t end;

	for (i = 0; i < 3; i++)
		c[i] = raw_negotiated(e, caps_plain);
	atomic_store(&e->fb->mig_delay_ms, 300);
	/* 0 is with the migrator (which saw it), then 1 and 2 wait in the queue. */
	calls = atomic_load(&e->fb->calls);
	raw_send(c[0], "{\"execute\":\"query-migrate\",\"id\":0}");
	end = test_now_ms() + T_MS;
	while (atomic_load(&e->fb->calls) == calls && test_now_ms() < end)
		test_sleep_ms(1);
	raw_send(c[1], "{\"execute\":\"query-migrate\",\"id\":1}");
	raw_send(c[2], "{\"execute\":\"query-migrate\",\"id\":2}");
	test_sleep_ms(50);
	raw_send(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":\"oob\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, PAUSE_ERR ", \"id\": \"oob\"}\r\n");
	/* Answered after 0 (about 600 ms in), before 1 and 2 (900, 1200). */
	{
		struct pollfd pfd[2] = {{.fd = c[1], .events = POLLIN},
					{.fd = c[2], .events = POLLIN}};

		assert_int_equal(poll(pfd, 2, 0), 0);
	}
	for (i = 0; i < 3; i++) {
		assert_true(raw_read_lines(c[i], buf, sizeof(buf), 1, T_MS));
		snprintf(want, sizeof(want), "{\"return\": {}, \"id\": %d}\r\n", i);
		assert_string_equal(buf, want);
		close(c[i]);
	}
	atomic_store(&e->fb->mig_delay_ms, 0);
	close(fd);
}

/*
 * A client has at most 4 exec-oob jobs out: the fifth is refused at once,
 * the client's in-band commands go on meanwhile (it is not busy), and once
 * the answers came it may send more.
 */
static void test_oob_jobs_bound(void **state)
{
	struct env *e = *state;
	int i, fd = raw_negotiated(e, caps_oob);
	char buf[8192], want[256];

	atomic_store(&e->fb->mig_delay_ms, 300);
	raw_send(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":1}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":2}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":3}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":4}"
		     "{\"exec-oob\":\"migrate-pause\",\"id\":5}"
		     "{\"execute\":\"query-name\",\"id\":\"q\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 6, T_MS));
	assert_line(buf, 0,
		    "{\"error\": {\"class\": \"GenericError\", \"desc\": \"Too many out-of-band "
		    "commands in flight (at most 4): wait for a reply\"}, \"id\": 5}");
	assert_line(buf, 1, "{\"return\": {\"name\": \"testvm\"}, \"id\": \"q\"}");
	for (i = 1; i <= 4; i++) {
		snprintf(want, sizeof(want), PAUSE_ERR ", \"id\": %d}", i);
		assert_line(buf, 1 + i, want);
	}
	atomic_store(&e->fb->mig_delay_ms, 0);
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":6}", PAUSE_ERR ", \"id\": 6}\r\n");
	close(fd);
}

/*
 * A client that leaves with an exec-oob job out: its answer is dropped and
 * the next client (likely on the same fd) gets only its own.  One whose
 * input ended still gets the answer, then the end of the stream.
 */
static void test_oob_leave_with_job(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_oob), calls;
	char buf[4096];
	int64_t end;

	atomic_store(&e->fb->mig_delay_ms, 300);
	calls = atomic_load(&e->fb->calls);
	raw_send(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":\"gone\"}");
	end = test_now_ms() + T_MS;
	while (atomic_load(&e->fb->calls) == calls && test_now_ms() < end)
		test_sleep_ms(1);
	assert_int_not_equal(atomic_load(&e->fb->calls), calls);
	close(fd);
	fd = raw_negotiated(e, caps_oob);
	raw_expect(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":\"n\"}",
		   PAUSE_ERR ", \"id\": \"n\"}\r\n");
	raw_expect(fd, "{\"execute\":\"query-name\",\"id\":\"q\"}",
		   "{\"return\": {\"name\": \"testvm\"}, \"id\": \"q\"}\r\n");
	close(fd);

	/* Half-closed with a job out: the answer, then the end. */
	fd = raw_negotiated(e, caps_oob);
	raw_send(fd, "{\"exec-oob\":\"migrate-pause\",\"id\":\"last\"}");
	assert_int_equal(shutdown(fd, SHUT_WR), 0);
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	assert_string_equal(buf, PAUSE_ERR ", \"id\": \"last\"}\r\n");
	{
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		assert_int_equal(poll(&pfd, 1, T_MS), 1);
		assert_int_equal(recv(fd, buf, sizeof(buf), 0), 0);
	}
	close(fd);
	atomic_store(&e->fb->mig_delay_ms, 0);
}

/* ---- query-qmp-schema ------------------------------------------------------------ */

static void test_schema_allow_oob(void **state)
{
	struct env *e = *state;
	int fd = raw_negotiated(e, caps_plain);
	static char buf[1 << 20];
	json_t *reply, *info;
	size_t i, n = 0, cmds = 0;

	raw_send(fd, "{\"execute\":\"query-qmp-schema\"}");
	assert_true(raw_read_lines(fd, buf, sizeof(buf), 1, T_MS));
	reply = json_loads(buf, 0, NULL);
	assert_non_null(reply);
	json_array_foreach(json_object_get(reply, "return"), i, info)
	{
		const char *name = json_string_value(json_object_get(info, "name"));
		json_t *oob = json_object_get(info, "allow-oob");

		if (strcmp(json_string_value(json_object_get(info, "meta-type")), "command"))
			continue;
		cmds++;
		/* As QEMU's introspection: the member only where it is true. */
		if (!strcmp(name, "migrate-pause") || !strcmp(name, "migrate-recover")) {
			assert_true(json_is_true(oob));
			n++;
		} else if (oob) {
			fail_msg("%s has allow-oob", name);
		}
	}
	assert_int_equal(n, 2);
	assert_true(cmds > 30);
	json_decref(reply);
	close(fd);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_greeting_offers_oob, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_exec_oob_allowed, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_exec_oob_refused, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_exec_oob_not_enabled, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_oob_overtakes_slow_command, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_inband_order_kept, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_inband_queue_limit, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_leave_with_queue, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_oob_pause_overtakes, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_oob_ahead_of_queue, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_oob_jobs_bound, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_oob_leave_with_job, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_schema_allow_oob, env_setup, env_teardown),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s PATH-TO-cleave-monitor\n", argv[0]);
		return 2;
	}
	monitor_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
