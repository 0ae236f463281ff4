/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Every way a migration can go wrong, with the test thread playing a raw
 * (misbehaving) peer over loopback TCP: bad streams, vanishing and hung
 * peers, cancel in each phase, a failed state load, the receivedmap
 * lifetime, and API misuse.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"
#include "raw-peer.h"
#include "tvm.h"

#define R0_PAGES 1024
static const struct shm_ctl_layout layout = {
	.nr_regions = 1,
	.gpa = {0},
	.size = {R0_PAGES * SHM_PAGE_SIZE},
};
static const uint8_t sid[16] = "0123456789abcdef";

/* ---- raw peers ----------------------------------------------------------- */

/* Hello of session @sid, @epoch; a resume (next round @next) when @epoch > 1. */
static void raw_hello_epoch(int fd, uint64_t magic, uint32_t version, uint64_t size,
			    uint32_t channels, uint64_t epoch, uint64_t next)
{
	const struct raw_hello h = {.magic = magic,
				    .version = version,
				    .sid = sid,
				    .size = size,
				    .channels = channels,
				    .epoch = epoch,
				    .next_round = next};

	raw_hello_send(fd, &h);
}

static void raw_hello(int fd, uint64_t magic, uint32_t version, uint64_t size, uint32_t channels)
{
	raw_hello_epoch(fd, magic, version, size, channels, 1, 0);
}

/* ---- fixtures ------------------------------------------------------------ */

struct fix {
	struct tvm src, dst;
	char uri[64];
	unsigned int port;
};

static int fix_setup_hooks(void **state, const struct mig_hooks *hooks)
{
	struct fix *f = calloc(1, sizeof(*f));

	struct mig_params p;

	if (!f || tvm_init(&f->src, &layout, NULL, 500) || tvm_init(&f->dst, &layout, hooks, 500))
		return -1;
	/* These cases are about failing: a lost peer fails at once (test-resume.c waits). */
	for (struct tvm *t = &f->src; t; t = t == &f->src ? &f->dst : NULL) {
		mig_session_get_params(t->s, &p);
		p.reconnect_timeout = 0;
		if (mig_session_set_params(t->s, &p))
			return -1;
	}
	*state = f;
	return 0;
}

static int fix_setup(void **state)
{
	return fix_setup_hooks(state, NULL);
}

static int fix_teardown(void **state)
{
	struct fix *f = *state;

	tvm_fini(&f->src);
	tvm_fini(&f->dst);
	free(f);
	return 0;
}

static void dst_listen(struct fix *f)
{
	assert_int_equal(mig_session_incoming(f->dst.s, "tcp:127.0.0.1:0"), 0);
	f->port = mig_session_incoming_port(f->dst.s);
	assert_true(f->port > 0);
	snprintf(f->uri, sizeof(f->uri), "tcp:127.0.0.1:%u", f->port);
}

/* The destination guest never ran and no state was loaded. */
static void assert_dst_untouched(struct fix *f)
{
	uint64_t a, e;

	assert_int_equal(f->dst.resume_calls, 0);
	assert_int_equal(f->dst.loads, 0);
	assert_int_equal(shm_memfd_next_data(f->dst.ram[0].fd, 0, layout.size[0], &a, &e), -ENXIO);
}

static void assert_src_running(struct fix *f);

/* ---- destination: untrusted connections (table driven) ---------------- */

enum main_case {
	MC_TRUNCATED,
	MC_GARBAGE,
	MC_HTTP,
	MC_HUGE_PREFIX,
	MC_MAGIC,
	MC_VERSION,
	MC_LAYOUT,
	MC_ORDER,
	MC_HUNG,
};

/*
 * Each is a connection that is not a source: it ends alone (with an Error
 * back where the peer speaks the protocol), and the job goes on listening.
 */
static const struct {
	enum main_case c;
	const char *error; /* the Error the raw peer gets back, NULL: just closed */
} main_cases[] = {
	{MC_TRUNCATED, NULL},
	{MC_GARBAGE, NULL},
	{MC_HTTP, NULL},
	{MC_HUGE_PREFIX, NULL}, /* 64 MiB announced: nothing that big is read from a stranger */
	{MC_MAGIC, "bad stream magic 0x1234"},
	{MC_VERSION, "unsupported stream version 99"},
	{MC_LAYOUT, "RAM layout mismatch"},
	{MC_ORDER, "expected Hello"},
	{MC_HUNG, NULL}, /* closed after the 500 ms I/O timeout */
};

/* The peer's side closes within @ms; any Error it got first is returned in @reason. */
static void assert_closed_soon(int fd, int ms, char *reason, size_t len)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	Cleave__Wire__WireMsg *m;

	assert_int_equal(poll(&pfd, 1, ms), 1);
	if (mig_msg_recv(fd, &m) == 0) {
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR && reason)
			snprintf(reason, len, "%s", m->error->reason);
		cleave__wire__wire_msg__free_unpacked(m, NULL);
		assert_int_equal(poll(&pfd, 1, ms), 1);
		assert_int_not_equal(mig_msg_recv(fd, &m), 0);
	}
}

static void assert_still_listening(struct tvm *t)
{
	struct mig_info info;

	mig_session_query(t->s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
	assert_int_equal(mig_session_wait(t->s, 0), -ETIMEDOUT);
}

static void test_dst_bad_main_stream(void **state)
{
	struct fix *f = *state;

	dst_listen(f);
	for (size_t i = 0; i < sizeof(main_cases) / sizeof(main_cases[0]); i++) {
		Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
		Cleave__Wire__Commit c = CLEAVE__WIRE__COMMIT__INIT;
		static const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
		char reason[256] = "";
		uint8_t trunc[14] = {100, 0, 0, 0};
		uint8_t garbage[8] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
		uint8_t huge[4] = {0x00, 0x00, 0x00, 0x04};
		int fd = raw_connect(f->port);

		switch (main_cases[i].c) {
		case MC_TRUNCATED:
			assert_int_equal(mig_io_write(fd, trunc, sizeof(trunc)), 0);
			shutdown(fd, SHUT_WR);
			break;
		case MC_GARBAGE:
			assert_int_equal(mig_io_write(fd, garbage, sizeof(garbage)), 0);
			break;
		case MC_HTTP:
			assert_int_equal(mig_io_write(fd, http, sizeof(http) - 1), 0);
			break;
		case MC_HUGE_PREFIX:
			assert_int_equal(mig_io_write(fd, huge, sizeof(huge)), 0);
			break;
		case MC_MAGIC:
			raw_hello(fd, 0x1234, WIRE_VERSION, layout.size[0], 1);
			break;
		case MC_VERSION:
			raw_hello(fd, WIRE_MAGIC, 99, layout.size[0], 1);
			break;
		case MC_LAYOUT:
			raw_hello(fd, WIRE_MAGIC, WIRE_VERSION, layout.size[0] * 2, 1);
			break;
		case MC_ORDER:
			m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT;
			m.commit = &c;
			assert_int_equal(mig_msg_send(fd, &m), 0);
			break;
		case MC_HUNG:
			break; /* say nothing */
		}
		assert_closed_soon(fd, 2000, reason, sizeof(reason));
		if (main_cases[i].error)
			assert_non_null(strstr(reason, main_cases[i].error));
		else
			assert_string_equal(reason, "");
		close(fd);
		assert_still_listening(&f->dst);
		assert_dst_untouched(f);
	}
	/* And the real source still migrates. */
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->dst, MIG_STATUS_COMPLETED, "");
	raw_assert_final(&f->src, MIG_STATUS_COMPLETED, "");
	assert_int_equal(shm_region_hash(&f->dst.ram[0]), shm_region_hash(&f->src.ram[0]));
}

/* Strangers holding connections open at the listener do not keep the source out. */
static void test_dst_held_connections(void **state)
{
	struct fix *f = *state;
	int held[100];

	dst_listen(f);
	for (size_t i = 0; i < 100; i++)
		held[i] = raw_connect(f->port);
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->dst, MIG_STATUS_COMPLETED, "");
	raw_assert_final(&f->src, MIG_STATUS_COMPLETED, "");
	assert_int_equal(shm_region_hash(&f->dst.ram[0]), shm_region_hash(&f->src.ram[0]));
	for (size_t i = 0; i < 100; i++)
		close(held[i]);
}

/* A valid handshake with one channel; returns the main fd and the channel fd. */
static void raw_source_start(struct fix *f, int *mainfd, int *chanfd)
{
	dst_listen(f);
	*mainfd = raw_connect(f->port);
	raw_hello(*mainfd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 1);
	raw_expect(*mainfd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, NULL, 0);
	*chanfd = raw_channel(f->port, 0, sid);
}

static void test_dst_offset_outside_ram(void **state)
{
	struct fix *f = *state;
	const uint64_t bad[][2] = {
		{0, layout.size[0]},			  /* one page past the end */
		{0, 1ull << 62},			  /* far outside */
		{SHM_PAGE_SIZE, 2 * SHM_PAGE_SIZE | 0x4}, /* unknown page flag */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int mfd, cfd;

		raw_source_start(f, &mfd, &cfd);
		/* The first offset is valid: nothing may be written before all are checked. */
		raw_packet(cfd, 0, bad[i], 2, 0);
		raw_assert_final(&f->dst, MIG_STATUS_FAILED, "outside region 0");
		assert_dst_untouched(f);
		close(cfd);
		close(mfd);
	}
}

static void test_dst_bad_packets(void **state)
{
	struct fix *f = *state;
	struct mig_pkt_hdr h = {.magic = 0xdead, .nr_pages = 1};
	uint64_t off = 0;
	int mfd, cfd;

	/* Bad packet magic. */
	raw_source_start(f, &mfd, &cfd);
	assert_int_equal(mig_io_write(cfd, &h, sizeof(h)), 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "bad packet: magic 0xdead");
	close(cfd);
	close(mfd);
	/* A round that has not started yet (no SYNC for round 0). */
	raw_source_start(f, &mfd, &cfd);
	raw_packet(cfd, 5, &off, 1, 1);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "round 5 while in round 0");
	close(cfd);
	close(mfd);
	/* A channel with someone else's session id. */
	dst_listen(f);
	mfd = raw_connect(f->port);
	raw_hello(mfd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 1);
	raw_expect(mfd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, NULL, 0);
	cfd = raw_channel(f->port, 0, (const uint8_t *)"another-session!");
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "channel handshake");
	close(cfd);
	close(mfd);
	/* Channels that never connect. */
	dst_listen(f);
	mfd = raw_connect(f->port);
	raw_hello(mfd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 2);
	raw_expect(mfd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, NULL, 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "accepting channel 0 of 2");
	close(mfd);
	assert_dst_untouched(f);
}

static void test_dst_source_vanishes(void **state)
{
	struct fix *f = *state;
	const uint64_t offs[4] = {0, SHM_PAGE_SIZE, 2 * SHM_PAGE_SIZE, 3 * SHM_PAGE_SIZE};
	int mfd, cfd;

	/* Mid-packet: 4 pages announced, 1 sent, then the source is gone. */
	raw_source_start(f, &mfd, &cfd);
	raw_packet(cfd, 0, offs, 4, 1);
	close(cfd);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "channel 0: truncated page data");
	close(mfd);
	assert_int_equal(f->dst.resume_calls, 0);
	/* Main connection only. */
	raw_source_start(f, &mfd, &cfd);
	close(mfd);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "source closed the connection");
	close(cfd);
	/* Between packets on a channel. */
	raw_source_start(f, &mfd, &cfd);
	raw_packet(cfd, 0, offs, 1, 1);
	close(cfd);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "channel 0: source closed the channel");
	close(mfd);
	assert_int_equal(f->dst.resume_calls, 0);
	assert_int_equal(f->dst.loads, 0);
}

/*
 * Invariant 1: receive thread 0 sleeps 300 ms before its receivedmap write
 * while the main connection dies.  The teardown must join it before
 * invalidating the map: the write path asserts the map is live, so a
 * teardown that invalidated first would abort this test (and TSan/ASan
 * builds would report the race).
 */
static int lifetime_setup(void **state)
{
	return fix_setup_hooks(state,
			       TVM_HOOKS(.recv_last_write_delay_us = 300000, .hook_channel = 0));
}

static void test_receivedmap_lifetime(void **state)
{
	struct fix *f = *state;
	uint64_t off = 7 * SHM_PAGE_SIZE, t0;
	int mfd, cfd;

	TVM_NEEDS_HOOKS();
	raw_source_start(f, &mfd, &cfd);
	/* Live before the first receive thread can run. */
	for (int i = 0; i < 200 && !mig_record_receivedmap_live(f->dst.s->rec); i++)
		usleep(5000);
	assert_true(mig_record_receivedmap_live(f->dst.s->rec));
	raw_packet(cfd, 0, &off, 1, 1);
	usleep(50000); /* the thread is inside its delayed write now */
	t0 = mig_now_ns();
	close(mfd);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "source closed the connection");
	/* The teardown waited for the thread, whose write landed while the map was live. */
	assert_true(mig_now_ns() - t0 >= 200000000ull);
	assert_true(shm_bitmap_test(shm_ctl_received_bitmap(&f->dst.ctl, 0), 7));
	close(cfd);
}

/*
 * A failed attempt leaves pages in the destination RAM; the next attempt
 * must not keep them where the source has zeros (ZERO pages and holes are
 * not written): the destination punches its RAM out first.
 */
static void test_dst_retry_after_failure(void **state)
{
	struct fix *f = *state;
	uint64_t off = 5 * SHM_PAGE_SIZE, a, e;
	int mfd, cfd;

	raw_source_start(f, &mfd, &cfd);
	raw_packet(cfd, 0, &off, 1, 1); /* 0xab... lands on page 5 */
	close(cfd);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "source closed the channel");
	close(mfd);
	assert_int_equal(shm_memfd_next_data(f->dst.ram[0].fd, 0, layout.size[0], &a, &e), 0);
	assert_int_equal(a, off);

	tvm_fill(&f->src, 0, 0, 5, false);
	tvm_fill(&f->src, 0, 5, 1, true); /* page 5 is zero on the source */
	dst_listen(f);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->src, MIG_STATUS_COMPLETED, "");
	raw_assert_final(&f->dst, MIG_STATUS_COMPLETED, "");
	assert_int_equal(tvm_ram_cmp(&f->src, &f->dst), 0);
}

/* An incoming migration never overwrites a guest that runs. */
static void test_dst_refuses_running_vm(void **state)
{
	struct fix *f = *state;

	f->dst.run_state_override = 2; /* running */
	tvm_fill(&f->src, 0, 0, 8, false);
	dst_listen(f);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "not waiting for an incoming migration");
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "destination: destination VM is not waiting");
	assert_dst_untouched(f);
	assert_src_running(f);
}

/* ---- source against a misbehaving destination ---------------------------- */

static void src_start(struct fix *f, int *lfd)
{
	struct mig_caps caps = {.events = true};

	*lfd = raw_listen(&f->port);
	snprintf(f->uri, sizeof(f->uri), "tcp:127.0.0.1:%u", f->port);
	assert_int_equal(mig_session_set_caps(f->src.s, &caps), 0);
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
}

/* The source guest runs again whatever happened. */
static void assert_src_running(struct fix *f)
{
	assert_int_equal(f->src.pause_calls, f->src.resume_calls);
	assert_false(f->src.paused);
	assert_false(f->src.dirty_log);
}

static void test_src_dest_refuses(void **state)
{
	struct fix *f = *state;
	int lfd, fd;

	src_start(f, &lfd);
	fd = raw_accept(lfd);
	raw_expect(fd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO, NULL, 0);
	assert_int_equal(mig_msg_send_error(fd, "no room"), 0);
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "destination: no room");
	assert_int_equal(f->src.pause_calls, 0);
	assert_true(tvm_saw_event(&f->src, "failed"));
	close(fd);
	close(lfd);
}

static void test_src_dest_hung_or_gone(void **state)
{
	struct fix *f = *state;
	uint8_t buf[4096];
	int lfd, fd, cfd;

	/* Accepts and then says nothing. */
	src_start(f, &lfd);
	fd = raw_accept(lfd);
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "waiting for HelloAck: Connection timed out");
	close(fd);
	close(lfd);
	/* Nobody listens. */
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "connect");
	assert_int_equal(f->src.pause_calls, 0);
	/* Vanishes in the middle of the RAM stream. */
	src_start(f, &lfd);
	raw_dest_accept(lfd, &fd, &cfd);
	assert_int_equal(mig_io_read(cfd, buf, sizeof(buf)), 0);
	close(cfd);
	close(fd);
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "");
	assert_src_running(f);
	close(lfd);
}

/* Vanishes after the device state: the paused source guest must resume. */
static void test_src_dest_gone_in_device(void **state)
{
	struct fix *f = *state;
	Cleave__Wire__WireMsg *m;
	int lfd, fd, cfd;
	bool device = false;

	src_start(f, &lfd);
	raw_dest_accept(lfd, &fd, &cfd);
	while (!device) {
		assert_int_equal(mig_msg_recv(fd, &m), 0);
		device = m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE;
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND) {
			/* Pretend the round landed: the source waits for that before pausing. */
			Cleave__Wire__WireMsg a = CLEAVE__WIRE__WIRE_MSG__INIT;
			Cleave__Wire__RoundAck ra = CLEAVE__WIRE__ROUND_ACK__INIT;

			ra.round = m->round->round;
			a.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK;
			a.round_ack = &ra;
			assert_int_equal(mig_msg_send(fd, &a), 0);
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	close(cfd);
	close(fd);
	raw_assert_final(&f->src, MIG_STATUS_FAILED,
			 ""); /* channel or main: whichever notices first */
	assert_int_equal(f->src.pause_calls, 1);
	assert_int_equal(f->src.last_pause_state, MIG_PAUSE_FINISH_MIGRATE);
	assert_src_running(f);
	close(lfd);
}

/* A destination that repeats an old RoundAck cannot keep the source reading acks. */
static void test_src_stale_round_ack(void **state)
{
	struct fix *f = *state;
	Cleave__Wire__WireMsg *m;
	int lfd, fd, cfd, round = -1;

	src_start(f, &lfd);
	raw_dest_accept(lfd, &fd, &cfd);
	while (round < 0) {
		assert_int_equal(mig_msg_recv(fd, &m), 0);
		if (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND)
			round = (int)m->round->round;
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	for (int i = 0; i < 2; i++) {
		Cleave__Wire__WireMsg a = CLEAVE__WIRE__WIRE_MSG__INIT;
		Cleave__Wire__RoundAck ra = CLEAVE__WIRE__ROUND_ACK__INIT;

		ra.round = (uint64_t)round;
		a.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK;
		a.round_ack = &ra;
		assert_int_equal(mig_msg_send(fd, &a), 0);
	}
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "protocol error: RoundAck 0 (last 0");
	assert_src_running(f);
	close(cfd);
	close(fd);
	close(lfd);
}

static void test_load_state_fails(void **state)
{
	struct fix *f = *state;

	f->dst.fail_load = -EIO;
	dst_listen(f);
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "vcpu-proc LOAD_STATE: Input/output error");
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "destination: vcpu-proc LOAD_STATE");
	assert_src_running(f);
	assert_int_equal(f->dst.resume_calls, 0);
}

/* ---- cancel ---------------------------------------------------------------- */

static void wait_status(struct tvm *t, enum mig_status st)
{
	struct mig_info info;

	for (int i = 0; i < 1000; i++) {
		mig_session_query(t->s, &info);
		if (info.status == st)
			return;
		usleep(5000);
	}
	fail_msg("status %s never reached", mig_status_name(st));
}

static void assert_cancelled(struct fix *f)
{
	raw_assert_final(&f->src, MIG_STATUS_CANCELLED, "cancelled");
	assert_true(tvm_saw_event(&f->src, "cancelling"));
	assert_true(tvm_saw_event(&f->src, "cancelled"));
	assert_src_running(f);
}

static void test_cancel_setup(void **state)
{
	struct fix *f = *state;
	int lfd, fd;

	src_start(f, &lfd);
	fd = raw_accept(lfd);
	wait_status(&f->src, MIG_STATUS_SETUP);
	assert_int_equal(mig_session_cancel(f->src.s), 0);
	assert_cancelled(f);
	assert_int_equal(f->src.pause_calls, 0);
	close(fd);
	close(lfd);
}

static void test_cancel_active(void **state)
{
	struct fix *f = *state;
	struct mig_params params = {
		.multifd_channels = 2, .max_bandwidth = 1 << 20, .downtime_limit = 300};
	struct mig_caps caps = {.multifd = true, .events = true};

	assert_int_equal(mig_session_set_params(f->src.s, &params), 0);
	assert_int_equal(mig_session_set_caps(f->src.s, &caps), 0);
	tvm_fill(&f->src, 0, 0, R0_PAGES, false); /* 4 MiB at 1 MiB/s */
	dst_listen(f);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	wait_status(&f->src, MIG_STATUS_ACTIVE);
	usleep(100000);
	assert_int_equal(mig_session_cancel(f->src.s), 0);
	assert_cancelled(f);
	assert_int_equal(f->src.pause_calls, 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "source: migration cancelled");
	assert_int_equal(f->dst.resume_calls, 0);
}

static void test_cancel_device(void **state)
{
	struct fix *f = *state;
	struct mig_caps caps = {.events = true};

	assert_int_equal(mig_session_set_caps(f->src.s, &caps), 0);
	f->src.save_delay_ms = 300;
	tvm_fill(&f->src, 0, 0, 64, false);
	dst_listen(f);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	wait_status(&f->src, MIG_STATUS_DEVICE);
	assert_int_equal(mig_session_cancel(f->src.s), 0);
	assert_cancelled(f);
	assert_int_equal(f->src.pause_calls, 1);
	assert_int_equal(f->src.resume_calls, 1);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "");
	assert_int_equal(f->dst.resume_calls, 0);
	assert_int_equal(f->dst.loads, 0);
}

static void test_cancel_incoming(void **state)
{
	struct fix *f = *state;

	dst_listen(f);
	assert_int_equal(mig_session_cancel(f->dst.s), 0);
	raw_assert_final(&f->dst, MIG_STATUS_CANCELLED, "cancelled");
	assert_dst_untouched(f);
}

/* ---- API misuse ------------------------------------------------------------ */

/*
 * A destination whose source vanished waits for it (reconnect-timeout):
 * a stale Hello (same session, old epoch) and garbage are refused on their
 * connection only; the source's next epoch gets the report of what landed;
 * a cancel ends the wait.
 */
static void test_dst_waits_for_its_source(void **state)
{
	struct fix *f = *state;
	uint64_t off = 3 * SHM_PAGE_SIZE, *map = calloc(SHM_BITMAP_WORDS(R0_PAGES), 8);
	uint8_t garbage[8] = {4, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
	Cleave__Wire__WireMsg *m;
	struct mig_params p;
	struct mig_info info;
	char reason[256] = "";
	int mfd, cfd, fd;

	mig_session_get_params(f->dst.s, &p);
	p.reconnect_timeout = 10000;
	assert_int_equal(mig_session_set_params(f->dst.s, &p), 0);
	raw_source_start(f, &mfd, &cfd);
	raw_packet(cfd, 0, &off, 1, 1);
	for (int i = 0; i < 400 && !shm_bitmap_test(shm_ctl_received_bitmap(&f->dst.ctl, 0), 3);
	     i++)
		usleep(5000);
	close(cfd);
	close(mfd);
	fd = raw_connect(f->port);
	raw_hello(fd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 1); /* epoch 1 again */
	raw_expect(fd, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR, reason, sizeof(reason));
	assert_non_null(strstr(reason, "waits for another migration"));
	close(fd);
	fd = raw_connect(f->port);
	assert_int_equal(mig_io_write(fd, garbage, sizeof(garbage)), 0);
	close(fd);
	usleep(100000);
	mig_session_query(f->dst.s, &info);
	assert_int_equal(info.status, MIG_STATUS_ACTIVE); /* still waiting */
	assert_true(mig_record_receivedmap_live(f->dst.s->rec));

	fd = raw_connect(f->port);
	raw_hello_epoch(fd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 1, 2, 1);
	assert_int_equal(mig_msg_recv(fd, &m), 0);
	assert_int_equal(m->body_case, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK);
	assert_int_equal(m->hello_ack->phase, MIG_PHASE_DST_RECEIVING);
	assert_int_equal(m->hello_ack->rounds_landed, 0);
	assert_int_equal(m->hello_ack->n_received, 1);
	assert_int_equal(mig_pagemap_decode(m->hello_ack->received[0], map, R0_PAGES), 0);
	assert_int_equal(shm_bitmap_count(map, R0_PAGES), 1);
	assert_true(shm_bitmap_test(map, 3));
	assert_int_equal(m->hello_ack->n_round, 1);
	cleave__wire__wire_msg__free_unpacked(m, NULL);
	close(fd);
	assert_int_equal(mig_session_cancel(f->dst.s), 0);
	raw_assert_final(&f->dst, MIG_STATUS_CANCELLED, "cancelled");
	assert_int_equal(f->dst.resume_calls, 0);
	free(map);
}

/* ---- destination: waits bounded by what the source can still send -------- */

/* Fails within 2 s (the I/O timeout is 500 ms): never the 10 s wait of a hang. */
static void assert_failed_soon(struct tvm *t, const char *needle)
{
	struct mig_info info;

	assert_int_equal(mig_session_wait(t->s, 2000), 0);
	mig_session_query(t->s, &info);
	if (info.status != MIG_STATUS_FAILED || !strstr(info.error_desc, needle))
		fprintf(stderr, "status %s error '%s', want failed '%s'\n",
			mig_status_name(info.status), info.error_desc, needle);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, needle));
	assert_false(mig_record_receivedmap_live(t->s->rec));
}

/* Round 1 announced when the only channel already ended with FINAL in round 0. */
static void test_dst_round_after_final(void **state)
{
	struct fix *f = *state;
	char reason[256] = "";
	int mfd, cfd;

	raw_source_start(f, &mfd, &cfd);
	raw_round(mfd, 1);
	raw_sync(cfd, 0, true);
	raw_expect(mfd, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR, reason, sizeof(reason));
	assert_non_null(strstr(reason, "Round 1 announced after the final round 0"));
	assert_failed_soon(&f->dst, "Round 1 announced after the final round 0");
	assert_dst_untouched(f);
	close(cfd);
	close(mfd);
}

/* Channel 0 ends in round 0, channel 1 goes on to round 1: round 1 can never complete. */
static void test_dst_channels_disagree_on_final(void **state)
{
	struct fix *f = *state;
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__DeviceState ds = CLEAVE__WIRE__DEVICE_STATE__INIT;
	int mfd, c0, c1;

	dst_listen(f);
	mfd = raw_connect(f->port);
	raw_hello(mfd, WIRE_MAGIC, WIRE_VERSION, layout.size[0], 2);
	raw_expect(mfd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, NULL, 0);
	c0 = raw_channel(f->port, 0, sid);
	c1 = raw_channel(f->port, 1, sid);
	raw_sync(c0, 0, true);
	raw_sync(c1, 0, false);
	raw_sync(c1, 1, true);
	ds.final_round = 1;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE;
	m.device_state = &ds;
	assert_int_equal(mig_msg_send(mfd, &m), 0);
	assert_failed_soon(&f->dst, "channels disagree on the final round: 1 of 2");
	assert_dst_untouched(f);
	close(c0);
	close(c1);
	close(mfd);
}

/*
 * The worker waits for round 0 at the barrier and does not read the main
 * connection: the source hanging up there is seen at once, not when a
 * channel's I/O timeout fires.
 */
static void test_dst_hangup_at_barrier(void **state)
{
	struct fix *f = *state;
	int mfd, cfd;

	raw_source_start(f, &mfd, &cfd);
	raw_round(mfd, 0);
	usleep(100000); /* the worker is in the wait */
	close(mfd);
	assert_failed_soon(&f->dst, "source closed the connection while round 0 was due");
	close(cfd);
}

static void test_api_errors(void **state)
{
	struct fix *f = *state;
	struct mig_params p = {.multifd_channels = 0, .downtime_limit = 300};
	struct mig_caps caps = {0};
	int lfd, fd;

	assert_int_equal(mig_session_set_params(f->src.s, &p), -EINVAL);
	p.multifd_channels = MIG_MAX_CHANNELS + 1;
	assert_int_equal(mig_session_set_params(f->src.s, &p), -EINVAL);
	mig_session_get_params(f->src.s, &p);
	assert_int_equal(p.multifd_channels, MIG_DEFAULT_CHANNELS);
	assert_int_equal(p.downtime_limit, MIG_DEFAULT_DOWNTIME_MS);
	assert_int_equal(mig_session_migrate(f->src.s, "udp:/nope"), -EINVAL);
	assert_int_equal(mig_session_incoming(f->dst.s, "tcp:127.0.0.1"), -EINVAL);
	/* Busy port. */
	lfd = raw_listen(&f->port);
	snprintf(f->uri, sizeof(f->uri), "tcp:127.0.0.1:%u", f->port);
	assert_int_equal(mig_session_incoming(f->dst.s, f->uri), -EADDRINUSE);
	/* One migration at a time; capabilities fixed while it runs. */
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	fd = raw_accept(lfd);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), -EBUSY);
	assert_int_equal(mig_session_incoming(f->src.s, "tcp:127.0.0.1:0"), -EBUSY);
	assert_int_equal(mig_session_set_caps(f->src.s, &caps), -EBUSY);
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "timed out");
	close(fd);
	close(lfd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dst_bad_main_stream, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_held_connections, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_offset_outside_ram, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_bad_packets, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_source_vanishes, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_receivedmap_lifetime, lifetime_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_retry_after_failure, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_refuses_running_vm, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_src_dest_refuses, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_src_dest_hung_or_gone, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_src_dest_gone_in_device, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_src_stale_round_ack, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_load_state_fails, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_setup, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_active, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_device, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_incoming, fix_setup, fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_waits_for_its_source, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_round_after_final, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_channels_disagree_on_final, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_dst_hangup_at_barrier, fix_setup,
						fix_teardown),
		cmocka_unit_test_setup_teardown(test_api_errors, fix_setup, fix_teardown),
	};

	log_init("test-migrator");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
