/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * pub/sub tests: a real publisher and subscriber over ipc:// in a temporary
 * directory.  A subscriber only gets what is published after its connection
 * is up, so each test first sends Stop probes until one arrives.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <nng/supplemental/util/platform.h>

#include "log/log.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"
#include "tests/unit/proto/rpc-fixture.h"

#define BURST 10000

struct ev_test {
	char dir[64];
	char url[128];
	struct rpc_pub *pub;
	struct rpc_sub *sub;
};

static int ev_test_setup(void **state)
{
	struct ev_test *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(fixture_dir_make(t->dir, sizeof(t->dir)), 0);
	fixture_url(t->url, sizeof(t->url), t->dir, "events.sock");
	assert_int_equal(rpc_pub_open(&t->pub, t->url, "vcpu"), 0);
	assert_int_equal(rpc_sub_open(&t->sub), 0);
	assert_int_equal(rpc_sub_dial(t->sub, t->url), 0);
	*state = t;
	return 0;
}

static int ev_test_teardown(void **state)
{
	struct ev_test *t = *state;

	rpc_sub_close(t->sub);
	rpc_pub_close(t->pub);
	fixture_dir_remove(t->dir);
	free(t);
	return 0;
}

static int send_stop(struct rpc_pub *p)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Stop stop = CLEAVE__EVENTS__STOP__INIT;

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_STOP;
	ev.stop = &stop;
	return rpc_pub_send(p, &ev);
}

static int send_pass(struct rpc_pub *p, uint64_t pass)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__MigrationPass mp = CLEAVE__EVENTS__MIGRATION_PASS__INIT;

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
	ev.migration_pass = &mp;
	mp.pass = pass;
	return rpc_pub_send(p, &ev);
}

/*
 * Sends probes until @s receives one from @p, then drains the rest; the
 * subscription is live afterwards.
 */
static void wait_connected(struct rpc_pub *p, struct rpc_sub *s)
{
	Cleave__Events__Event *ev;
	uint64_t missed;
	int ret = -ETIMEDOUT;

	for (int i = 0; i < 500 && ret; i++) {
		assert_int_equal(send_stop(p), 0);
		ret = rpc_sub_recv(s, &ev, &missed, 10);
		if (!ret)
			rpc_msg_free(&ev->base);
	}
	assert_int_equal(ret, 0);
	while (!rpc_sub_recv(s, &ev, &missed, 50))
		rpc_msg_free(&ev->base);
}

static void test_burst_complete_in_order(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event *ev;
	uint64_t missed, last_seq = 0;

	wait_connected(t->pub, t->sub);
	for (uint64_t i = 0; i < BURST; i++)
		assert_int_equal(send_pass(t->pub, i), 0);
	for (uint64_t i = 0; i < BURST; i++) {
		assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 5000), 0);
		assert_int_equal(ev->body_case, CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS);
		if (ev->migration_pass->pass != i || missed)
			print_error("event %" PRIu64 ": pass %" PRIu64 ", missed %" PRIu64 "\n", i,
				    ev->migration_pass->pass, missed);
		assert_int_equal(ev->migration_pass->pass, i);
		assert_int_equal(missed, 0);
		if (last_seq)
			assert_int_equal(ev->seq, last_seq + 1);
		last_seq = ev->seq;
		rpc_msg_free(&ev->base);
	}
	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 20), -ETIMEDOUT);
}

static void test_fields_filled(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event out = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Reset reset = CLEAVE__EVENTS__RESET__INIT;
	Cleave__Events__Event *ev;
	char mine[] = "caller's";
	struct timeval now;
	uint64_t missed, now_us;

	wait_connected(t->pub, t->sub);
	out.publisher = mine;
	out.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	out.reset = &reset;
	reset.guest = true;
	reset.reason = "guest-reset";
	assert_int_equal(rpc_pub_send(t->pub, &out), 0);
	/* The caller's string is left in place; the numbers are filled in. */
	assert_ptr_equal(out.publisher, mine);
	assert_int_equal(out.publisher_id, rpc_pub_id(t->pub));
	assert_true(out.seq > 1);

	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
	gettimeofday(&now, NULL);
	now_us = (uint64_t)now.tv_sec * 1000000 + (uint64_t)now.tv_usec;
	assert_int_equal(ev->version, RPC_VERSION);
	assert_string_equal(ev->publisher, "vcpu");
	assert_int_equal(ev->publisher_id, rpc_pub_id(t->pub));
	assert_int_equal(ev->seq, out.seq);
	assert_true(ev->timestamp_us <= now_us && ev->timestamp_us + 5000000 > now_us);
	assert_int_equal(ev->body_case, CLEAVE__EVENTS__EVENT__BODY_RESET);
	assert_true(ev->reset->guest);
	assert_string_equal(ev->reset->reason, "guest-reset");
	assert_int_equal(missed, 0);
	rpc_msg_free(&ev->base);
}

static void test_gap_detected(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event *ev;
	uint64_t missed;

	wait_connected(t->pub, t->sub);
	assert_int_equal(send_pass(t->pub, 1), 0);
	rpc_pub_skip_seq(t->pub, 3);
	assert_int_equal(send_pass(t->pub, 2), 0);
	assert_int_equal(send_pass(t->pub, 3), 0);

	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
	assert_int_equal(missed, 0);
	rpc_msg_free(&ev->base);
	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
	assert_int_equal(ev->migration_pass->pass, 2);
	assert_int_equal(missed, 3);
	rpc_msg_free(&ev->base);
	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
	assert_int_equal(missed, 0);
	rpc_msg_free(&ev->base);
}

static void test_restart_not_a_loss(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event *ev;
	uint64_t missed, old_id = rpc_pub_id(t->pub);

	wait_connected(t->pub, t->sub);
	for (int i = 0; i < 10; i++)
		assert_int_equal(send_pass(t->pub, 1), 0);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
		rpc_msg_free(&ev->base);
	}
	/* The publisher restarts on the same url; the subscriber redials. */
	rpc_pub_close(t->pub);
	assert_int_equal(rpc_pub_open(&t->pub, t->url, "vcpu"), 0);
	assert_int_not_equal(rpc_pub_id(t->pub), old_id);
	/* Its first events start again at seq 1 while the old one was past 10. */
	for (int i = 0; i < 500; i++) {
		assert_int_equal(send_pass(t->pub, 42), 0);
		if (!rpc_sub_recv(t->sub, &ev, &missed, 10))
			break;
	}
	assert_non_null(ev);
	assert_int_equal(ev->publisher_id, rpc_pub_id(t->pub));
	assert_int_equal(missed, 0);
	rpc_msg_free(&ev->base);
	while (!rpc_sub_recv(t->sub, &ev, &missed, 50)) {
		assert_int_equal(missed, 0);
		rpc_msg_free(&ev->base);
	}
}

static void test_two_publishers(void **state)
{
	struct ev_test *t = *state;
	char url2[128];
	struct rpc_pub *p2;
	Cleave__Events__Event *ev;
	uint64_t missed;
	int seen[2] = {0, 0};

	fixture_url(url2, sizeof(url2), t->dir, "events2.sock");
	assert_int_equal(rpc_pub_open(&p2, url2, "migrator"), 0);
	assert_int_equal(rpc_sub_dial(t->sub, url2), 0);
	wait_connected(t->pub, t->sub);
	wait_connected(p2, t->sub);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(send_pass(t->pub, 0), 0);
		assert_int_equal(send_pass(p2, 1), 0);
	}
	/* Interleaved streams are tracked per publisher: no false gaps. */
	for (int i = 0; i < 200; i++) {
		assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 2000), 0);
		assert_int_equal(missed, 0);
		assert_string_equal(ev->publisher, ev->migration_pass->pass ? "migrator" : "vcpu");
		seen[ev->migration_pass->pass]++;
		rpc_msg_free(&ev->base);
	}
	assert_int_equal(seen[0], 100);
	assert_int_equal(seen[1], 100);
	rpc_pub_close(p2);
}

static void test_recv_timeout(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event *ev = (void *)1;
	uint64_t missed = 7;
	int64_t start = rpc_clock_ms(), elapsed;

	assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 200), -ETIMEDOUT);
	elapsed = rpc_clock_ms() - start;
	assert_null(ev);
	assert_int_equal(missed, 0);
	assert_true(elapsed >= 190 && elapsed < 400);
	/* Zero means poll. */
	assert_int_equal(rpc_sub_recv(t->sub, &ev, NULL, 0), -ETIMEDOUT);
}

static void test_open_errors(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	struct rpc_pub *p = (void *)1;

	assert_int_equal(rpc_pub_open(&p, t->url, "vcpu"), -EADDRINUSE);
	assert_null(p);
	assert_true(rpc_pub_open(&p, "bogus://x", "vcpu") < 0);
	assert_int_equal(rpc_sub_dial(t->sub, "bogus://x"), rpc_errno_from_nng(NNG_ENOTSUP));
	/* An event over the size limit is refused and takes no seq. */
	Cleave__Events__Shutdown sd = CLEAVE__EVENTS__SHUTDOWN__INIT;
	char *huge = malloc(RPC_MAX_MSG_SIZE + 1);

	assert_non_null(huge);
	memset(huge, 'x', RPC_MAX_MSG_SIZE);
	huge[RPC_MAX_MSG_SIZE] = '\0';
	sd.reason = huge;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN;
	ev.shutdown = &sd;
	assert_int_equal(rpc_pub_send(t->pub, &ev), -EMSGSIZE);
	free(huge);
	wait_connected(t->pub, t->sub);
	rpc_pub_close(NULL);
	rpc_sub_close(NULL);
}

/* A raw pub0 socket: junk and foreign versions are dropped by the subscriber. */
static void test_garbage_dropped(void **state)
{
	struct ev_test *t = *state;
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT, *in;
	Cleave__Events__MigrationPass mp = CLEAVE__EVENTS__MIGRATION_PASS__INIT;
	static const uint8_t junk[] = {0x1a, 0x7f, 0x01};
	char url[128];
	uint8_t buf[128];
	nng_socket raw;
	uint64_t missed;
	int ret = -ETIMEDOUT;

	fixture_url(url, sizeof(url), t->dir, "raw.sock");
	assert_int_equal(nng_pub0_open(&raw), 0);
	assert_int_equal(nng_listen(raw, url, NULL, 0), 0);
	assert_int_equal(rpc_sub_dial(t->sub, url), 0);
	ev.version = RPC_VERSION;
	ev.publisher = "raw";
	ev.publisher_id = 77;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
	ev.migration_pass = &mp;
	for (int i = 0; i < 500 && ret; i++) {
		ev.seq = 1;
		assert_int_equal(nng_send(raw, buf, cleave__events__event__pack(&ev, buf), 0), 0);
		ret = rpc_sub_recv(t->sub, &in, &missed, 10);
	}
	assert_int_equal(ret, 0);
	rpc_msg_free(&in->base);
	while (!rpc_sub_recv(t->sub, &in, &missed, 50))
		rpc_msg_free(&in->base);

	assert_int_equal(nng_send(raw, (void *)junk, sizeof(junk), 0), 0);
	ev.version = RPC_VERSION + 1;
	ev.seq = 2;
	assert_int_equal(nng_send(raw, buf, cleave__events__event__pack(&ev, buf), 0), 0);
	ev.version = RPC_VERSION;
	ev.seq = 3;
	mp.pass = 33;
	assert_int_equal(nng_send(raw, buf, cleave__events__event__pack(&ev, buf), 0), 0);

	assert_int_equal(rpc_sub_recv(t->sub, &in, &missed, 2000), 0);
	assert_int_equal(in->migration_pass->pass, 33);
	/* The dropped seq 2 counts as missed: it did not reach the caller. */
	assert_int_equal(missed, 1);
	rpc_msg_free(&in->base);
	assert_int_equal(rpc_sub_recv(t->sub, &in, &missed, 100), -ETIMEDOUT);
	nng_close(raw);
}

/* The subscriber may dial before the publisher exists. */
static void test_publisher_later(void **state)
{
	struct ev_test *t = *state;
	char url[128];
	struct rpc_pub *p;

	fixture_url(url, sizeof(url), t->dir, "later.sock");
	assert_int_equal(rpc_sub_dial(t->sub, url), 0);
	usleep(300 * 1000);
	assert_int_equal(rpc_pub_open(&p, url, "migrator"), 0);
	wait_connected(p, t->sub);
	rpc_pub_close(p);
}

static void test_null_args(void **state)
{
	struct ev_test *t = *state;
	struct rpc_pub *p;
	Cleave__Events__Event *ev;

	assert_int_equal(rpc_pub_open(&p, NULL, "vcpu"), -EINVAL);
	assert_int_equal(rpc_pub_open(&p, t->url, NULL), -EINVAL);
	assert_int_equal(rpc_pub_send(t->pub, NULL), -EINVAL);
	assert_int_equal(rpc_sub_recv(t->sub, &ev, NULL, 0), -ETIMEDOUT);
}

/* NNG upstream bug nanomsg/nng#1518 on the publisher's listener: peers hanging up mid-handshake. */
static void test_publisher_survives_hangups(void **state)
{
	struct ev_test *t = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct rpc_sub *late;

	wait_connected(t->pub, t->sub);
	assert_true(strlen(t->url) - 6 < sizeof(sa.sun_path));
	memcpy(sa.sun_path, t->url + 6, strlen(t->url) - 6 + 1);
	for (int i = 0; i < 5; i++) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

		assert_true(fd >= 0);
		assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
		close(fd);
	}
	/* A subscriber that comes afterwards is still let in. */
	assert_int_equal(rpc_sub_open(&late), 0);
	assert_int_equal(rpc_sub_dial(late, t->url), 0);
	wait_connected(t->pub, late);
	rpc_sub_close(late);
	/* And the first one still receives (it may have been reconnected). */
	wait_connected(t->pub, t->sub);
}

/*
 * A subscriber that stops reading (a raw connection that did the handshake)
 * delays the publisher a bounded time, once; the others lose nothing.
 */
static void test_stuck_subscriber(void **state)
{
	struct ev_test *t = *state;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint8_t head[8] = {0, 'S', 'P', 0, 0, 0x21, 0, 0}; /* sub0 */
	int small = 4096, fd;
	Cleave__Events__Event *ev;
	uint64_t missed;
	int64_t start, elapsed;

	wait_connected(t->pub, t->sub);
	memcpy(sa.sun_path, t->url + 6, strlen(t->url) - 6 + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(fd >= 0);
	assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(write(fd, head, sizeof(head)), sizeof(head));
	assert_int_equal(read(fd, head, sizeof(head)), sizeof(head));
	usleep(100 * 1000); /* until the publisher has added the connection */

	start = rpc_clock_ms();
	for (uint64_t i = 0; i < 2 * BURST; i++)
		assert_int_equal(send_pass(t->pub, i), 0);
	elapsed = rpc_clock_ms() - start;
	/* One bounded wait for the stuck one, not one per batch. */
	assert_true(elapsed < 2000);
	for (uint64_t i = 0; i < 2 * BURST; i++) {
		assert_int_equal(rpc_sub_recv(t->sub, &ev, &missed, 5000), 0);
		assert_int_equal(ev->migration_pass->pass, i);
		assert_int_equal(missed, 0);
		rpc_msg_free(&ev->base);
	}
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_burst_complete_in_order, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_fields_filled, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_gap_detected, ev_test_setup, ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_restart_not_a_loss, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_two_publishers, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_recv_timeout, ev_test_setup, ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, ev_test_setup, ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_garbage_dropped, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_publisher_later, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_null_args, ev_test_setup, ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_publisher_survives_hangups, ev_test_setup,
						ev_test_teardown),
		cmocka_unit_test_setup_teardown(test_stuck_subscriber, ev_test_setup,
						ev_test_teardown),
	};

	if (getenv("CLEAVE_TEST_FILTER"))
		cmocka_set_test_filter(getenv("CLEAVE_TEST_FILTER"));
	log_init("test-event");
	if (getenv("CLEAVE_TEST_VERBOSE"))
		log_set_verbose(true);
	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	/* Lets NNG's reaper free what it still holds, for the leak checker. */
	nng_msleep(200);
	nng_fini();
	return failed;
}
