// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: what a destination says to a migration source, bytes
 * in — its HelloAck with the resume report (phase, rounds landed, page
 * maps), RoundAcks, Loaded, Complete, Error.  Each input gets a fresh test
 * source VM (tests/unit/migrator/tvm.c) migrating to a listener of the
 * harness.  Its first connection gets a fresh HelloAck and is then cut, so
 * the source reconnects as a resuming source; on the second the input is
 * written as the destination's main-connection bytes, its channels are read
 * and dropped, and every connection is shut for writing.
 *
 * Properties beyond the sanitizers: the source ends by itself within
 * FUZZ_SRC_END_MS once the destination is gone (a wait may not outlast what
 * the peer can still send: docs/MIGRATION.md, "Bounded waits"); and unless
 * the switchover was committed, a source that failed or was cancelled runs
 * its guest again (as many resumes as pauses).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "migrator/migration.h"
#include "proto/wire.pb-c.h"
#include "tests/unit/migrator/tvm.h"

#define FUZZ_SRC_IO_MS	      100 /* the engine's I/O timeout */
#define FUZZ_SRC_RECONNECT_MS 200 /* a lost destination is waited for this long */
#define FUZZ_SRC_END_MS	      1000
#define FUZZ_SRC_MAX_CONNS    8

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const struct shm_ctl_layout fuzz_layout = {
	.nr_regions = 1,
	.size = {64u << 10},
};

static int64_t fuzz_src_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The next connection within @ms, or -1. */
static int fuzz_src_accept(int lfd, int ms)
{
	struct pollfd pfd = {.fd = lfd, .events = POLLIN};

	if (poll(&pfd, 1, ms) <= 0)
		return -1;
	return accept4(lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
}

/* Reads and drops what @fd has, for up to @ms. */
static void fuzz_src_drain(int fd, int ms)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char buf[65536];

	while (fd >= 0 && poll(&pfd, 1, ms) > 0 && recv(fd, buf, sizeof(buf), 0) > 0)
		;
}

static void fuzz_src_send(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	struct pollfd pfd = {.fd = fd, .events = POLLOUT};
	ssize_t n;

	while (len && poll(&pfd, 1, FUZZ_SRC_IO_MS) > 0) {
		n = send(fd, p, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		p += n;
		len -= (size_t)n;
	}
}

/* A fresh destination's HelloAck, length-prefixed. */
static void fuzz_src_fresh_ack(int fd)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__HelloAck ack = CLEAVE__WIRE__HELLO_ACK__INIT;
	uint8_t buf[64];
	uint32_t len;

	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK;
	m.hello_ack = &ack;
	len = (uint32_t)cleave__wire__wire_msg__get_packed_size(&m);
	memcpy(buf, &len, 4);
	cleave__wire__wire_msg__pack(&m, buf + 4);
	fuzz_src_send(fd, buf, 4 + len);
}

static void fuzz_src_close_all(int *fds, unsigned int n)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	for (unsigned int i = 0; i < n; i++)
		if (fds[i] >= 0) {
			setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
			close(fds[i]);
			fds[i] = -1;
		}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sin);
	int conns[FUZZ_SRC_MAX_CONNS], n = 0, lfd, fd;
	struct mig_params params;
	struct mig_info info;
	char uri[64];
	struct tvm t;
	int64_t end;

	for (int i = 0; i < FUZZ_SRC_MAX_CONNS; i++)
		conns[i] = -1;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) || listen(lfd, 16) ||
	    getsockname(lfd, (struct sockaddr *)&sin, &sl))
		abort();
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", ntohs(sin.sin_port));
	if (tvm_init(&t, &fuzz_layout, NULL, FUZZ_SRC_IO_MS))
		abort();
	tvm_fill(&t, 0, 0, 8, false);
	mig_session_get_params(t.s, &params);
	params.reconnect_timeout = FUZZ_SRC_RECONNECT_MS;
	if (mig_session_set_params(t.s, &params) || mig_session_migrate(t.s, uri))
		abort();

	/* First connection: a fresh HelloAck, then a cut: the source now resumes. */
	fd = fuzz_src_accept(lfd, 500);
	if (fd >= 0) {
		conns[n++] = fd;
		fuzz_src_drain(fd, 10);
		fuzz_src_fresh_ack(fd);
		fd = fuzz_src_accept(lfd, 50); /* its channel */
		if (fd >= 0)
			conns[n++] = fd;
		fuzz_src_drain(conns[0], 5);
	}
	fuzz_src_close_all(conns, (unsigned int)n);
	n = 0;

	/* Second: the input is what the destination says. */
	fd = fuzz_src_accept(lfd, FUZZ_SRC_RECONNECT_MS + 100);
	if (fd >= 0) {
		conns[n++] = fd;
		fuzz_src_drain(fd, 10);
		fuzz_src_send(fd, data, size);
		while (n < FUZZ_SRC_MAX_CONNS && (fd = fuzz_src_accept(lfd, 20)) >= 0)
			conns[n++] = fd;
		for (int i = 0; i < n; i++) {
			fuzz_src_drain(conns[i], 5);
			shutdown(conns[i], SHUT_WR);
		}
	}
	close(lfd); /* no third connection: a reconnect is refused */

	/* The destination is gone: the source must end on its own. */
	end = fuzz_src_now_ms() + FUZZ_SRC_END_MS;
	while (mig_session_wait(t.s, 10)) {
		for (int i = 0; i < n; i++)
			fuzz_src_drain(conns[i], 0);
		if (fuzz_src_now_ms() >= end) {
			mig_session_query(t.s, &info);
			fprintf(stderr, "fuzz-mig-src: still %s %d ms after the destination left\n",
				mig_status_name(info.status), FUZZ_SRC_END_MS);
			abort();
		}
	}
	mig_session_query(t.s, &info);
	if ((info.status == MIG_STATUS_FAILED || info.status == MIG_STATUS_CANCELLED) &&
	    t.pause_calls != t.resume_calls) {
		fprintf(stderr, "fuzz-mig-src: %s with the guest paused (%d pauses, %d resumes)\n",
			mig_status_name(info.status), t.pause_calls, t.resume_calls);
		abort();
	}
	tvm_fini(&t);
	fuzz_src_close_all(conns, (unsigned int)n);
	return 0;
}
