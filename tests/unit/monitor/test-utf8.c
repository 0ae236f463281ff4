// SPDX-License-Identifier: GPL-2.0-only
/*
 * Non-ASCII text in QMP error descs: a long command name, argument name,
 * enum value or URI is quoted into a fixed-size desc, and a backend's error
 * text is relayed into one.  Wherever such a desc is cut it must stay
 * UTF-8, and a desc that is not UTF-8 (a peer's bytes) must still be
 * answered: otherwise jansson refuses the reply and the server closes the
 * client instead of answering it.  Likewise an event keeps its data when a
 * publisher's strings are not UTF-8.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "monitor/events.h"
#include "monitor/qmp-dispatch.h"
#include "monitor/server.h"
#include "monitor/worker.h"
#include "proto/rpc.h"
#include "tests/unit/monitor/fake-backend.h"

#define T_MS 5000 /* per reply; generous for sanitizer builds */

/* @n copies of @unit (a UTF-8 character), as a malloc'd string. */
static char *repeat(const char *unit, size_t n)
{
	size_t len = strlen(unit);
	char *s = malloc(n * len + 1);

	assert_non_null(s);
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * len, unit, len);
	s[n * len] = '\0';
	return s;
}

/* printf into a malloc'd string. */
static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
	va_list ap;
	char *s;

	va_start(ap, f);
	assert_true(vasprintf(&s, f, ap) >= 0);
	va_end(ap);
	return s;
}

/*
 * The reply to @res must exist and be one JSON object with error @cls whose
 * desc starts with @prefix; returns the desc (caller frees).
 */
static char *check_error_reply(const struct mon_result *res, const char *cls, const char *prefix)
{
	json_t *reply, *err;
	size_t len;
	char *line = mon_reply_format(NULL, res, &len), *desc;

	if (!line)
		fail_msg("no reply for desc '%s': the client would be disconnected", res->err_desc);
	reply = json_loadb(line, len, 0, NULL);
	assert_non_null(reply);
	err = json_object_get(reply, "error");
	assert_non_null(err);
	assert_string_equal(json_string_value(json_object_get(err, "class")), cls);
	desc = strdup(json_string_value(json_object_get(err, "desc")));
	assert_non_null(desc);
	if (strncmp(desc, prefix, strlen(prefix)))
		fail_msg("desc '%s' does not start with '%s'", desc, prefix);
	json_decref(reply);
	free(line);
	return desc;
}

/* ---- descs built from the request ------------------------------------- */

/* Parses @in as a negotiated client's request; its error must be answerable. */
static char *parse_error(const char *in, const char *cls, const char *prefix)
{
	struct mon_result res = {0};
	struct mon_request req;
	char *desc;

	assert_int_not_equal(mon_request_parse(in, strlen(in), true, &req, &res), 0);
	desc = check_error_reply(&res, cls, prefix);
	mon_request_fini(&req);
	mon_result_fini(&res);
	return desc;
}

static void test_long_command_name(void **state)
{
	/* 2-, 3- and 4-byte characters: every cut position is tried by one of them. */
	static const char *const units[] = {"é", "€", "😀", "aé", "a€", "aa€"};

	for (size_t u = 0; u < sizeof(units) / sizeof(units[0]); u++) {
		char *name = repeat(units[u], 200);
		char *in = fmt("{\"execute\": \"%s\"}", name);
		char *want = fmt("The command %s has not been found", name);
		char *desc = parse_error(in, MON_ERR_NOT_FOUND, "The command ");

		/* As much of the name as fits, whole characters only. */
		assert_true(strlen(desc) < MON_ERR_DESC_LEN);
		assert_true(strlen(desc) + 4 > MON_ERR_DESC_LEN - 1);
		assert_memory_equal(desc, want, strlen(desc));
		free(desc);
		free(want);
		free(in);
		free(name);
	}
}

static void test_long_names_and_values(void **state)
{
	char *name = repeat("é", 200);
	char *cases[][2] = {
		/* An unexpected argument, top level and nested. */
		{fmt("{\"execute\":\"query-name\",\"arguments\":{\"%s\":1}}", name),
		 "Parameter 'éé"},
		{fmt("{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
		     "[{\"capability\":\"multifd\",\"state\":true,\"%s\":0}]}}",
		     name),
		 "Parameter 'capabilities[0].éé"},
		/* An enum value. */
		{fmt("{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":\"%s\"}}",
		     name),
		 "Parameter 'run-on' does not accept value 'éé"},
		{fmt("{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":"
		     "[{\"capability\":\"%s\",\"state\":true}]}}",
		     name),
		 "Parameter 'capabilities[0].capability' does not accept value 'éé"},
		/* An envelope member. */
		{fmt("{\"execute\":\"query-name\",\"%s\":1}", name), "QMP input member 'éé"},
		/* A JSON syntax error quoting the input. */
		{fmt("{\"execute\":\"%s\" 1}", name), "JSON parse error"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		free(parse_error(cases[i][0], MON_ERR_GENERIC, cases[i][1]));
		free(cases[i][0]);
	}
	free(name);
}

/* ---- descs from a peer -------------------------------------------------- */

static void test_desc_not_utf8(void **state)
{
	struct mon_result res = {0};
	char *desc;

	/* What a backend may send: a stray continuation byte, 0xff, a cut character. */
	mon_result_error(&res, MON_ERR_NOT_FOUND, "%s", "bad \x80 and \xff then \xc3");
	desc = check_error_reply(&res, MON_ERR_GENERIC, "bad ");
	assert_string_equal(desc, "bad ? and ? then ?");
	free(desc);
	mon_result_fini(&res);
}

/* The fake migrator quotes the URI in its error: cut by its RPC layer, relayed by ours. */
static void test_backend_error_relayed(void **state)
{
	struct mon_ctx ctx = {.timeout_ms = 2000};
	struct fake_backend *fb;
	struct mon_result res = {0};
	const struct mon_cmd *cmd = mon_cmd_find("migrate");
	char *name = repeat("é", 200);
	char *uri = fmt("tcp:%s:1", name);
	json_t *args = json_pack("{s:s}", "uri", uri);
	char *desc;

	assert_int_equal(fake_backend_start(&fb), 0);
	assert_int_equal(rpc_client_open(&ctx.rpc[MON_BACKEND_MIGRATOR], fb->mig_rpc), 0);
	cmd->run(&ctx, args, &res);
	desc = check_error_reply(&res, MON_ERR_GENERIC, "Failed to connect to 'tcp:éé");
	/* Cut between two characters where it was made, not mended afterwards. */
	assert_null(strchr(desc, '?'));
	free(desc);
	mon_result_fini(&res);
	json_decref(args);
	rpc_client_close(ctx.rpc[MON_BACKEND_MIGRATOR]);
	fake_backend_stop(fb);
	free(uri);
	free(name);
}

/* A publisher's reason or status that is not UTF-8 still makes an event with its data. */
static void test_event_text_not_utf8(void **state)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Reset reset = CLEAVE__EVENTS__RESET__INIT;
	Cleave__Events__Migration mig = CLEAVE__EVENTS__MIGRATION__INIT;
	struct mon_event *qmp;
	json_t *obj, *data;

	reset.reason = "host-\xff";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	ev.reset = &reset;
	qmp = mon_event_from_proto(&ev);
	assert_non_null(qmp);
	obj = json_loadb(qmp->line, qmp->len, 0, NULL);
	data = json_object_get(obj, "data");
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "reason")), "host-?");
	json_decref(obj);
	mon_event_free(qmp);

	mig.status = "active";
	mig.detail = "resumed\xc3";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
	ev.migration = &mig;
	qmp = mon_event_from_proto(&ev);
	assert_non_null(qmp);
	obj = json_loadb(qmp->line, qmp->len, 0, NULL);
	data = json_object_get(obj, "data");
	assert_non_null(data);
	assert_string_equal(json_string_value(json_object_get(data, "status")), "active");
	assert_string_equal(json_string_value(json_object_get(data, "x-cleave-detail")),
			    "resumed?");
	json_decref(obj);
	mon_event_free(qmp);
}

/* ---- a real server: the client is answered and stays connected ---------- */

struct srv {
	struct fake_backend *fb;
	struct mon_server *s;
	pthread_t thread;
	int run_ret; /* mon_server_run()'s */
	int stop_fd;
	int fd;		 /* our client connection */
	char buf[65536]; /* received, not yet consumed */
	size_t len;
};

static void *srv_run(void *arg)
{
	struct srv *t = arg;

	t->run_ret = mon_server_run(t->s);
	return NULL;
}

/* Returns the next CRLF-terminated line from the server (caller frees), NULL on EOF. */
static char *srv_line(struct srv *t)
{
	for (;;) {
		char *end = memmem(t->buf, t->len, "\r\n", 2), *line;
		struct pollfd pfd = {.fd = t->fd, .events = POLLIN};
		ssize_t n;

		if (end) {
			line = strndup(t->buf, (size_t)(end - t->buf));
			t->len -= (size_t)(end + 2 - t->buf);
			memmove(t->buf, end + 2, t->len);
			return line;
		}
		assert_int_equal(poll(&pfd, 1, T_MS), 1);
		n = recv(t->fd, t->buf + t->len, sizeof(t->buf) - t->len, 0);
		assert_true(n >= 0);
		if (n == 0)
			return NULL;
		t->len += (size_t)n;
	}
}

/* Sends @req and returns the reply object; fails the test if the server hung up. */
static json_t *srv_cmd(struct srv *t, const char *req)
{
	char *line;
	json_t *reply;

	assert_int_equal(send(t->fd, req, strlen(req), MSG_NOSIGNAL), (ssize_t)strlen(req));
	line = srv_line(t);
	if (!line)
		fail_msg("the server closed the connection instead of answering %.60s...", req);
	reply = json_loads(line, 0, NULL);
	assert_non_null(reply);
	free(line);
	return reply;
}

static int srv_setup(void **state)
{
	struct srv *t = calloc(1, sizeof(*t));
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct mon_config cfg = {.rpc_timeout_ms = 2000};
	char spec[160];
	int lfd;

	assert_non_null(t);
	assert_int_equal(fake_backend_start(&t->fb), 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/qmp.sock", t->fb->dir);
	snprintf(spec, sizeof(spec), "unix:%s", sun.sun_path);
	lfd = mon_listen_open(spec, false);
	assert_true(lfd >= 0);
	t->stop_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(t->stop_fd >= 0);
	cfg.listen_fds = &lfd;
	cfg.nr_listen_fds = 1;
	cfg.vcpu_rpc = t->fb->vcpu_rpc;
	cfg.migrator_rpc = t->fb->mig_rpc;
	cfg.stop_fd = t->stop_fd;
	cfg.name = "vm1";
	assert_int_equal(mon_server_alloc(&t->s, &cfg), 0);
	assert_int_equal(pthread_create(&t->thread, NULL, srv_run, t), 0);
	t->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(t->fd >= 0);
	assert_int_equal(connect(t->fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	free(srv_line(t)); /* the greeting */
	json_decref(srv_cmd(t, "{\"execute\":\"qmp_capabilities\"}"));
	*state = t;
	return 0;
}

static int srv_teardown(void **state)
{
	struct srv *t = *state;
	uint64_t one = 1;
	char path[160];

	assert_int_equal(write(t->stop_fd, &one, sizeof(one)), (ssize_t)sizeof(one));
	pthread_join(t->thread, NULL);
	assert_int_equal(t->run_ret, 0);
	close(t->fd);
	mon_server_free(t->s);
	close(t->stop_fd);
	snprintf(path, sizeof(path), "%s/qmp.sock", t->fb->dir);
	unlink(path);
	fake_backend_stop(t->fb);
	free(t);
	return 0;
}

/* The reply must be error @cls with a desc starting with @prefix. */
static void assert_error(json_t *reply, const char *cls, const char *prefix)
{
	json_t *err = json_object_get(reply, "error");
	const char *desc = json_string_value(json_object_get(err, "desc"));

	assert_non_null(err);
	assert_string_equal(json_string_value(json_object_get(err, "class")), cls);
	assert_non_null(desc);
	if (strncmp(desc, prefix, strlen(prefix)))
		fail_msg("desc '%s' does not start with '%s'", desc, prefix);
	json_decref(reply);
}

static void assert_connected(struct srv *t)
{
	json_t *reply = srv_cmd(t, "{\"execute\":\"query-name\",\"id\":\"still-there\"}");

	assert_string_equal(json_string_value(json_object_get(reply, "id")), "still-there");
	assert_string_equal(
		json_string_value(json_object_get(json_object_get(reply, "return"), "name")),
		"vm1");
	json_decref(reply);
}

static void test_server_answers_long_name(void **state)
{
	struct srv *t = *state;
	char *name = repeat("é", 200);
	char *req = fmt("{\"execute\": \"%s\"}", name);

	assert_error(srv_cmd(t, req), MON_ERR_NOT_FOUND, "The command éé");
	assert_connected(t);
	free(req);
	free(name);
}

static void test_server_answers_relayed_error(void **state)
{
	struct srv *t = *state;
	char *name = repeat("€", 100);
	char *req = fmt("{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:%s:1\"}}", name);

	assert_error(srv_cmd(t, req), MON_ERR_GENERIC, "Failed to connect to 'tcp:€€");
	assert_connected(t);
	free(req);
	free(name);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_long_command_name),
		cmocka_unit_test(test_long_names_and_values),
		cmocka_unit_test(test_desc_not_utf8),
		cmocka_unit_test(test_backend_error_relayed),
		cmocka_unit_test(test_event_text_not_utf8),
		cmocka_unit_test_setup_teardown(test_server_answers_long_name, srv_setup,
						srv_teardown),
		cmocka_unit_test_setup_teardown(test_server_answers_relayed_error, srv_setup,
						srv_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
