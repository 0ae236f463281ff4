// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: what a migration source sends to a destination, bytes
 * in, through the engine's public API only (migrator/migration.h).  Each
 * input gets a fresh test VM (tests/unit/migrator/tvm.c: control segment,
 * two RAM regions, in-process vm ops) listening on tcp:127.0.0.1:0.  The
 * input is
 *
 *   u16 little-endian n | n bytes for the main connection | the rest for
 *                                                          one channel
 *
 * written on two loopback connections; when the channel part starts with
 * "2CH:" and a u16 length k, k bytes go to a first channel and the rest to
 * a second.  As a real source does, the channels
 * connects once the destination has answered on the main connection (its
 * HelloAck or Error) or FUZZ_MIG_IO_MS passed; both are then shut for
 * writing.  The session gets FUZZ_MIG_SETTLE_MS to finish on its own (less
 * once the destination has closed both connections: nothing more can come
 * of them), then is cancelled, waited for and freed.
 *
 * Built a second time with FUZZ_MIG_POSTCOPY (fuzz-mig-dest-pc): the test
 * VM can take postcopy as cleave-vcpu does (tests/unit/migrator/
 * tvm-postcopy.c: the postcopy link to cleave-vcpu's server and fault
 * service, real userfaultfd) and the session has postcopy-ram on, so
 * Postcopy, PostcopyPages and the pushed pages reach their parsers.
 *
 * Properties beyond the sanitizers: a destination that took the main
 * connection as its source ends by itself within FUZZ_MIG_HANGUP_MS once
 * the source has shut every connection for writing (no wait of its may
 * outlast what the source can still send: docs/MIGRATION.md, "Bounded
 * waits"), or, once its guest runs in postcopy, is postcopy-paused by
 * then (it waits for its source whatever the reconnect timeout) and ends
 * within FUZZ_MIG_CANCEL_MS of the operator's abandon; a cancelled
 * destination reaches a final state within FUZZ_MIG_CANCEL_MS (else it
 * hangs its migrator); and nothing blocks: with a 100 ms I/O timeout and
 * no reconnect wait every input takes well under a second.
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
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "migrator/migration.h"
#include "tests/unit/migrator/tvm.h"
#ifdef FUZZ_MIG_POSTCOPY
#include "tests/unit/migrator/tvm-postcopy.h"
#endif

#define FUZZ_MIG_IO_MS	   100	/* the engine's I/O timeout */
#define FUZZ_MIG_SETTLE_MS 150	/* a session may end by itself this long */
#define FUZZ_MIG_CANCEL_MS 500	/* after cancel it must be final this fast */
#define FUZZ_MIG_HANGUP_MS 1000 /* a source gone quiet: the session must end by this */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Region layout the seeds' Hello names (tests/fuzz/corpus-gen.c). */
static const struct shm_ctl_layout fuzz_layout = {
	.nr_regions = 2,
	.gpa = {0, 1u << 20},
	.size = {64u << 10, 32u << 10},
};

static int fuzz_mig_connect(unsigned int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval tv = {.tv_usec = FUZZ_MIG_IO_MS * 1000};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0)
		return -1;
	/* A destination that stopped reading must not stall the input. */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sin, sizeof(sin))) {
		close(fd);
		return -1;
	}
	return fd;
}

/* Best effort: the destination may have closed the connection already. */
static void fuzz_mig_send(int fd, const uint8_t *buf, size_t len)
{
	ssize_t n;

	while (fd >= 0 && len) {
		n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

/* Has the destination closed @fd (what it sent before is read and dropped)? */
static bool fuzz_mig_peer_gone(int fd)
{
	char buf[4096];
	ssize_t n;

	if (fd < 0)
		return true;
	do
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	while (n > 0);
	return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

static int64_t fuzz_mig_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 0 when the session ended by itself, within FUZZ_MIG_SETTLE_MS. */
static int fuzz_mig_settle(struct mig_session *s, int mfd, int cfd)
{
	int64_t end = fuzz_mig_now_ms() + FUZZ_MIG_SETTLE_MS;

	while (mig_session_wait(s, 10)) {
		if (fuzz_mig_now_ms() >= end)
			return -1;
		/* Closing them may come just before the end it records: a little grace. */
		if (fuzz_mig_peer_gone(mfd) && fuzz_mig_peer_gone(cfd))
			return mig_session_wait(s, 20);
	}
	return 0;
}

/* A test VM listening as a destination (with postcopy: FUZZ_MIG_POSTCOPY). */
static int fuzz_mig_vm_init(struct tvm *t)
{
#ifdef FUZZ_MIG_POSTCOPY
	struct mig_env base = {.ops = tvm_postcopy_vm_ops(), .snapshot_dirfd = -1};
	struct mig_caps caps = {.postcopy_ram = true};

	return tvm_init_env(t, &fuzz_layout, NULL, FUZZ_MIG_IO_MS, &base) || tvm_postcopy_init(t) ||
	       mig_session_set_caps(t->s, &caps);
#else
	return tvm_init(t, &fuzz_layout, NULL, FUZZ_MIG_IO_MS);
#endif
}

static void fuzz_mig_vm_fini(struct tvm *t)
{
#ifdef FUZZ_MIG_POSTCOPY
	/* The session first: its threads call the VM side until joined. */
	mig_session_free(t->s);
	t->s = NULL;
	tvm_postcopy_fini(t);
#endif
	tvm_fini(t);
}

/* Until @s is final (0) or postcopy-paused (1), @ms at most (-ETIMEDOUT). */
static int fuzz_mig_wait_end(struct mig_session *s, int ms)
{
	struct mig_info info;

	for (int i = 0; i < ms; i++) {
		if (!mig_session_wait(s, 1))
			return 0;
		mig_session_query(s, &info);
		if (info.status == MIG_STATUS_POSTCOPY_PAUSED)
			return 1;
	}
	return -ETIMEDOUT;
}

/* No TIME_WAIT left behind: hundreds of inputs a second would use up the ports. */
static void fuzz_mig_close(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	if (fd < 0)
		return;
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mig_params params;
	struct mig_info info;
	struct tvm t;
	size_t main_len, chan0_len;
	unsigned int port;
	int mfd, cfd, cfd2 = -1;
	bool two;

	if (size < 2)
		return 0;
	main_len = (size_t)data[0] | (size_t)data[1] << 8;
	data += 2;
	size -= 2;
	if (main_len > size)
		main_len = size;
	if (fuzz_mig_vm_init(&t))
		abort();
	/* A lost source fails the session at once instead of being waited for. */
	mig_session_get_params(t.s, &params);
	params.reconnect_timeout = 0;
	if (mig_session_set_params(t.s, &params) || mig_session_incoming(t.s, "tcp:127.0.0.1:0"))
		abort();
	port = mig_session_incoming_port(t.s);
	mfd = fuzz_mig_connect(port);
	fuzz_mig_send(mfd, data, main_len);
	if (mfd >= 0) {
		struct pollfd pfd = {.fd = mfd, .events = POLLIN};

		poll(&pfd, 1, FUZZ_MIG_IO_MS);
	}
	data += main_len;
	size -= main_len;
	two = size >= 6 && !memcmp(data, "2CH:", 4);
	chan0_len = size;
	if (two) {
		chan0_len = (size_t)data[4] | (size_t)data[5] << 8;
		data += 6;
		size -= 6;
		if (chan0_len > size)
			chan0_len = size;
	}
	cfd = fuzz_mig_connect(port);
	fuzz_mig_send(cfd, data, chan0_len);
	if (two) {
		cfd2 = fuzz_mig_connect(port);
		fuzz_mig_send(cfd2, data + chan0_len, size - chan0_len);
	}
	if (mfd >= 0)
		shutdown(mfd, SHUT_WR);
	if (cfd >= 0)
		shutdown(cfd, SHUT_WR);
	if (cfd2 >= 0)
		shutdown(cfd2, SHUT_WR);
	/*
	 * Taken as the source: with nothing more to come, it must end on its
	 * own, or wait for its source in postcopy-paused until abandoned.
	 */
	mig_session_query(t.s, &info);
	if (info.status != MIG_STATUS_NONE && fuzz_mig_wait_end(t.s, FUZZ_MIG_HANGUP_MS)) {
		mig_session_query(t.s, &info);
		if (info.status != MIG_STATUS_POSTCOPY_PAUSED ||
		    mig_session_postcopy_abandon(t.s, true) ||
		    mig_session_wait(t.s, FUZZ_MIG_CANCEL_MS)) {
			mig_session_query(t.s, &info);
			fprintf(stderr, "fuzz-mig-dest: still %s %d ms after the source hung up\n",
				mig_status_name(info.status), FUZZ_MIG_HANGUP_MS);
			abort();
		}
	}
	if (fuzz_mig_settle(t.s, mfd, cfd)) {
		mig_session_cancel(t.s);
		if (mig_session_wait(t.s, FUZZ_MIG_CANCEL_MS)) {
			mig_session_query(t.s, &info);
			fprintf(stderr, "fuzz-mig-dest: still %s %d ms after cancel\n",
				mig_status_name(info.status), FUZZ_MIG_CANCEL_MS);
			abort();
		}
	}
	fuzz_mig_vm_fini(&t);
	fuzz_mig_close(mfd);
	fuzz_mig_close(cfd);
	fuzz_mig_close(cfd2);
	return 0;
}
