/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fd: URIs: the multiplexer alone (mux.c: streams, backpressure, close,
 * frames from a hostile peer), the session's fd table, and migrations over
 * one socketpair or TCP connection handed to both sessions: idle and
 * dirtying, 1 and 4 channels, mutual TLS, a cut fd, garbage frames.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mux.h"
#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"
#include "tests/util/test-util.h"
#include "tls-certs.h"
#include "tvm.h"

#define R0_PAGES 4096 /* 16 MiB */
#define R1_PAGES 512

static const struct shm_ctl_layout layout = {
	.nr_regions = 2,
	.gpa = {0, 4ull << 30},
	.size = {R0_PAGES * SHM_PAGE_SIZE, R1_PAGES *SHM_PAGE_SIZE},
};

/* ---- the multiplexer alone -------------------------------------------- */

struct dead_note {
	pthread_mutex_t lock;
	int err;
	char reason[256];
};

static void note_dead(void *arg, int err, const char *reason)
{
	struct dead_note *n = arg;

	pthread_mutex_lock(&n->lock);
	n->err = err;
	snprintf(n->reason, sizeof(n->reason), "%s", reason);
	pthread_mutex_unlock(&n->lock);
}

static int note_err(struct dead_note *n, char *reason, size_t len)
{
	int err;

	pthread_mutex_lock(&n->lock);
	err = n->err;
	if (reason)
		snprintf(reason, len, "%s", n->reason);
	pthread_mutex_unlock(&n->lock);
	return err;
}

struct muxes {
	struct mig_mux *c, *a; /* connecting, accepting */
	struct dead_note cn, an;
};

static void muxes_start(struct muxes *x)
{
	char err[256];
	int sp[2];

	memset(x, 0, sizeof(*x));
	pthread_mutex_init(&x->cn.lock, NULL);
	pthread_mutex_init(&x->an.lock, NULL);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(
		mig_mux_start(&x->c, sp[0], false, "fd:c", note_dead, &x->cn, err, sizeof(err)), 0);
	assert_int_equal(
		mig_mux_start(&x->a, sp[1], true, "fd:a", note_dead, &x->an, err, sizeof(err)), 0);
}

static void muxes_free(struct muxes *x)
{
	mig_mux_free(x->c);
	mig_mux_free(x->a);
	pthread_mutex_destroy(&x->cn.lock);
	pthread_mutex_destroy(&x->an.lock);
}

static int accept_within(struct mig_mux *m, int ms)
{
	struct pollfd pfd = {.fd = mig_mux_queue_fd(m), .events = POLLIN};

	if (poll(&pfd, 1, ms) != 1)
		return -1;
	return mig_mux_accept(m, SOCK_CLOEXEC);
}

static void set_timeouts(int fd, int ms)
{
	assert_int_equal(mig_sock_setup(fd, (unsigned int)ms), 0);
}

static void fill_pattern(uint8_t *b, size_t n, unsigned int seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (uint8_t)(i * 31 + seed + (i >> 12));
}

struct writer {
	int fd;
	const uint8_t *buf;
	size_t len;
	_Atomic size_t done; /* bytes written so far */
	int ret;
};

static void *writer_thread(void *arg)
{
	struct writer *w = arg;

	for (size_t off = 0; off < w->len; off += 65536) {
		w->ret = mig_io_write(w->fd, w->buf + off, 65536);
		if (w->ret)
			break;
		atomic_store(&w->done, off + 65536);
	}
	return NULL;
}

/*
 * Streams in both directions, in order, byte for byte; a stream whose
 * reader stalls holds back only its own writer (the window), never the
 * others; a close reaches the peer as EOF after every byte.
 */
static void test_mux_streams(void **state)
{
	const size_t big = 8u << 20;
	uint8_t *out = malloc(big), *in = malloc(big), small[64], got[64];
	struct writer w;
	pthread_t t;
	struct muxes x;
	int c1, c2, a1, a2;
	char err[256];

	(void)state;
	assert_non_null(out);
	assert_non_null(in);
	fill_pattern(out, big, 7);
	muxes_start(&x);
	assert_int_equal(mig_mux_open(x.c, &c1, err, sizeof(err)), 0);
	assert_int_equal(mig_mux_open(x.c, &c2, err, sizeof(err)), 0);
	set_timeouts(c1, 5000);
	set_timeouts(c2, 5000);
	/* Stream 1 writes 8 MiB nobody reads yet: its writer blocks on the window. */
	w = (struct writer){.fd = c1, .buf = out, .len = big};
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &w), 0);
	a1 = accept_within(x.a, 5000);
	assert_true(a1 >= 0);
	set_timeouts(a1, 5000);
	usleep(200000);
	/* Stream 2 still works both ways. */
	fill_pattern(small, sizeof(small), 3);
	assert_int_equal(mig_io_write(c2, small, sizeof(small)), 0);
	a2 = accept_within(x.a, 5000);
	assert_true(a2 >= 0);
	set_timeouts(a2, 5000);
	assert_int_equal(mig_io_read(a2, got, sizeof(got)), 0);
	assert_memory_equal(got, small, sizeof(small));
	assert_int_equal(mig_io_write(a2, small, sizeof(small)), 0);
	assert_int_equal(mig_io_read(c2, got, sizeof(got)), 0);
	assert_memory_equal(got, small, sizeof(small));
	/*
	 * Stream 1's writer is still blocked: what it got rid of is its window
	 * and the socket buffers on the way, far from 8 MiB.
	 */
	fprintf(stderr, "blocked writer wrote %zu KiB\n", atomic_load(&w.done) >> 10);
	assert_true(atomic_load(&w.done) <= 4 * MIG_MUX_WINDOW);
	assert_int_equal(mig_io_read(a1, in, big), 0);
	pthread_join(t, NULL);
	assert_int_equal(w.ret, 0);
	assert_memory_equal(in, out, big);
	/* A close: the peer reads the last bytes, then EOF. */
	assert_int_equal(mig_io_write(c1, small, 10), 0);
	close(c1);
	assert_int_equal(mig_io_read(a1, got, 10), 0);
	assert_int_equal(mig_io_read(a1, got, 1), -ECONNRESET);
	/* ... and the other way. */
	close(a2);
	assert_int_equal(mig_io_read(c2, got, 1), -ECONNRESET);
	close(a1);
	close(c2);
	assert_int_equal(note_err(&x.cn, NULL, 0), 0);
	assert_int_equal(note_err(&x.an, NULL, 0), 0);
	muxes_free(&x);
	free(out);
	free(in);
}

/* The end flushes what was written; the fd closing afterwards is no cut. */
static void test_mux_end_flushes(void **state)
{
	uint8_t buf[100000], got[100000];
	struct muxes x;
	int c, a;
	char err[256];

	(void)state;
	fill_pattern(buf, sizeof(buf), 9);
	muxes_start(&x);
	assert_int_equal(mig_mux_open(x.c, &c, err, sizeof(err)), 0);
	assert_int_equal(mig_io_write(c, buf, sizeof(buf)), 0);
	a = accept_within(x.a, 5000);
	assert_true(a >= 0);
	set_timeouts(a, 5000);
	mig_mux_end(x.c, 5000);
	assert_int_equal(mig_io_read(a, got, sizeof(got)), 0);
	assert_memory_equal(got, buf, sizeof(got));
	assert_int_equal(mig_io_read(a, got, 1), -ECONNRESET);
	/* No stream can open over an ended mux, nor accept. */
	assert_int_equal(mig_mux_open(x.c, &c, err, sizeof(err)), -ECONNRESET);
	assert_non_null(strstr(err, "cannot reconnect"));
	assert_int_equal(accept_within(x.a, 5000), -1);
	assert_int_equal(errno, ECONNRESET);
	assert_int_equal(note_err(&x.an, NULL, 0), 0);
	close(c);
	close(a);
	muxes_free(&x);
}

/* The fd cut under an open stream: both ends see it end, the job is told why. */
static void test_mux_cut(void **state)
{
	struct dead_note n = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct mig_mux *m;
	char err[256], why[256];
	uint8_t b;
	int sp[2], c;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(mig_mux_start(&m, sp[0], false, "fd:cut", note_dead, &n, err, sizeof(err)),
			 0);
	assert_int_equal(mig_mux_open(m, &c, err, sizeof(err)), 0);
	set_timeouts(c, 5000);
	close(sp[1]);
	assert_int_equal(mig_io_read(c, &b, 1), -ECONNRESET);
	assert_int_equal(note_err(&n, why, sizeof(why)), -ECONNRESET);
	assert_non_null(strstr(why, "fd:cut: the connection"));
	assert_non_null(strstr(why, "with 1 streams open"));
	close(c);
	mig_mux_free(m);
	/* Not a stream socket. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sp), 0);
	assert_int_equal(mig_mux_start(&m, sp[0], false, "fd:dgram", NULL, NULL, err, sizeof(err)),
			 -ENOTSOCK);
	close(sp[1]);
}

/* A raw peer of an accepting mux: writes frames, the mux judges them. */
struct raw {
	int peer;
	struct mig_mux *m;
	struct dead_note n;
};

static void raw_start(struct raw *r)
{
	char err[256];
	int sp[2];

	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->n.lock, NULL);
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	r->peer = sp[1];
	set_timeouts(r->peer, 5000);
	assert_int_equal(
		mig_mux_start(&r->m, sp[0], true, "fd:raw", note_dead, &r->n, err, sizeof(err)), 0);
}

static void raw_stop(struct raw *r)
{
	mig_mux_free(r->m);
	close(r->peer);
	pthread_mutex_destroy(&r->n.lock);
}

/*
 * Header and payload in one send: the mux may give up at the header and
 * shut the fd down, so an error here is for the caller's check of why.
 */
static void put_frame(int fd, uint32_t id, uint32_t len, const void *payload, size_t n)
{
	uint32_t h[2] = {htole32(id), htole32(len)};
	struct iovec iov[2] = {{.iov_base = h, .iov_len = sizeof(h)},
			       {.iov_base = (void *)payload, .iov_len = n}};

	(void)mig_io_writev(fd, iov, n ? 2 : 1);
}

static void put_open(int fd, uint32_t id)
{
	uint32_t e[2] = {htole32(id), 0};

	put_frame(fd, MIG_MUX_CTL_STREAM, 8, e, 8);
}

/* The mux gave up with @needle within 5 s; the peer's end reads EOF. */
static void raw_expect_broken(struct raw *r, const char *needle)
{
	char why[256] = "";
	uint8_t b[64];
	ssize_t n;

	for (int i = 0; i < 500 && !note_err(&r->n, why, sizeof(why)); i++)
		usleep(10000);
	if (!strstr(why, needle))
		fprintf(stderr, "reason '%s', want '%s'\n", why, needle);
	assert_int_equal(note_err(&r->n, NULL, 0), -EPROTO);
	assert_non_null(strstr(why, needle));
	while ((n = read(r->peer, b, sizeof(b))) > 0)
		;
	assert_int_equal(n, 0);
}

static void test_mux_garbage(void **state)
{
	static uint8_t junk[MIG_MUX_WINDOW];
	struct raw r;
	int fds[2 * MIG_MUX_STREAMS];
	unsigned int nfds = 0;

	(void)state;
	/* Data on a stream never opened. */
	raw_start(&r);
	put_frame(r.peer, 5, 4, "abcd", 4);
	raw_expect_broken(&r, "stream 5 was never opened");
	assert_int_equal(accept_within(r.m, 1000), -1);
	raw_stop(&r);
	/* A huge length: refused from the header, nothing read or allocated for it. */
	raw_start(&r);
	put_open(r.peer, 1);
	put_frame(r.peer, 1, 0x7fffffff, NULL, 0);
	raw_expect_broken(&r, "stream 1: frame of 2147483647 bytes");
	raw_stop(&r);
	/* Streams opened out of order. */
	raw_start(&r);
	put_open(r.peer, 2);
	raw_expect_broken(&r, "stream 2 opened out of order (expected 1)");
	raw_stop(&r);
	/* A malformed control frame. */
	raw_start(&r);
	put_frame(r.peer, MIG_MUX_CTL_STREAM, 12, junk, 12);
	raw_expect_broken(&r, "control frame of 12 bytes");
	raw_stop(&r);
	/*
	 * More data than the window, while nothing reads the stream (its
	 * socket buffer aside): the mux never buffers past it.
	 */
	raw_start(&r);
	put_open(r.peer, 1);
	for (unsigned int i = 0; i < 64; i++) {
		uint32_t h[2] = {htole32(1), htole32(MIG_MUX_FRAME_MAX)};

		if (mig_io_write(r.peer, h, sizeof(h)) ||
		    mig_io_write(r.peer, junk, MIG_MUX_FRAME_MAX))
			break;
	}
	raw_expect_broken(&r, "bytes past its window");
	raw_stop(&r);
	/* Credit the receiver never granted. */
	raw_start(&r);
	put_open(r.peer, 1);
	{
		uint32_t e[2] = {htole32(1), htole32(1)};

		put_frame(r.peer, MIG_MUX_CTL_STREAM, 8, e, 8);
	}
	raw_expect_broken(&r, "stream 1: window grows past");
	raw_stop(&r);
	/* One stream more than the bound: refused, the others were accepted. */
	raw_start(&r);
	for (uint32_t id = 1; id <= MIG_MUX_STREAMS + 1; id++)
		put_open(r.peer, id);
	raw_expect_broken(&r, "more than 65 streams");
	for (int fd; (fd = accept_within(r.m, 1000)) >= 0;)
		fds[nfds++] = fd;
	assert_int_equal(nfds, MIG_MUX_STREAMS);
	while (nfds)
		close(fds[--nfds]);
	raw_stop(&r);
}

/* ---- the session's fd table ------------------------------------------- */

/* A socketpair: *mine stays with the test, the other end is returned. */
static int pair_fd(int *mine)
{
	int sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	*mine = sp[0];
	return sp[1];
}

/* The peer of @mine was closed, or @mine shut down: EOF within 2 s, after what was in flight. */
static bool peer_closed(int mine)
{
	uint64_t end = mig_now_ns() + 2000000000ull;
	char b[4096];

	while (mig_now_ns() < end) {
		struct pollfd pfd = {.fd = mine, .events = POLLIN};
		ssize_t n;

		if (poll(&pfd, 1, 100) != 1)
			continue;
		n = recv(mine, b, sizeof(b), MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

static void test_fd_table(void **state)
{
	struct tvm t;
	int mine[MIG_FD_MAX + 2], p[2];
	char name[16];

	(void)state;
	assert_int_equal(tvm_init(&t, &layout, NULL, 1000), 0);
	/* Bad names, a non-stream fd: refused, and closed. */
	assert_int_equal(mig_session_fd_add(t.s, "", pair_fd(&mine[0])), -EINVAL);
	assert_true(peer_closed(mine[0]));
	close(mine[0]);
	assert_int_equal(mig_session_fd_add(t.s, "a:b", pair_fd(&mine[0])), -EINVAL);
	assert_true(peer_closed(mine[0]));
	close(mine[0]);
	assert_int_equal(mig_session_fd_add(t.s, "a,b", pair_fd(&mine[0])), -EINVAL);
	close(mine[0]);
	{
		char longname[MIG_FD_NAME_MAX + 2];

		memset(longname, 'x', sizeof(longname) - 1);
		longname[sizeof(longname) - 1] = '\0';
		assert_int_equal(mig_session_fd_add(t.s, longname, pair_fd(&mine[0])), -EINVAL);
		close(mine[0]);
		longname[MIG_FD_NAME_MAX] = '\0';
		assert_int_equal(mig_session_fd_add(t.s, longname, pair_fd(&mine[0])), 0);
		assert_int_equal(mig_session_fd_close(t.s, longname), 0);
		assert_true(peer_closed(mine[0]));
		close(mine[0]);
	}
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	assert_int_equal(mig_session_fd_add(t.s, "pipe", p[0]), -ENOTSOCK);
	close(p[1]);
	/* Unknown names. */
	assert_int_equal(mig_session_fd_close(t.s, "nope"), -ENOENT);
	assert_int_equal(mig_session_migrate(t.s, "fd:nope"), -ENOENT);
	assert_int_equal(mig_session_incoming(t.s, "fd:nope"), -ENOENT);
	assert_int_equal(mig_session_migrate(t.s, "exec:cat"), -EINVAL);
	/* A name reused: the old fd is closed, the new one held. */
	assert_int_equal(mig_session_fd_add(t.s, "mig", pair_fd(&mine[0])), 0);
	assert_int_equal(mig_session_fd_add(t.s, "mig", pair_fd(&mine[1])), 0);
	assert_true(peer_closed(mine[0]));
	assert_false(peer_closed(mine[1]));
	assert_int_equal(mig_session_fd_close(t.s, "mig"), 0);
	assert_true(peer_closed(mine[1]));
	assert_int_equal(mig_session_fd_close(t.s, "mig"), -ENOENT);
	close(mine[0]);
	close(mine[1]);
	/* MIG_FD_MAX of them; one more is refused (and closed), a reused name is not. */
	for (int i = 0; i < MIG_FD_MAX; i++) {
		snprintf(name, sizeof(name), "f%d", i);
		assert_int_equal(mig_session_fd_add(t.s, name, pair_fd(&mine[i])), 0);
	}
	assert_int_equal(mig_session_fd_add(t.s, "more", pair_fd(&mine[MIG_FD_MAX])), -ENOSPC);
	assert_true(peer_closed(mine[MIG_FD_MAX]));
	assert_int_equal(mig_session_fd_add(t.s, "f3", pair_fd(&mine[MIG_FD_MAX + 1])), 0);
	assert_true(peer_closed(mine[3]));
	/* Freeing the session closes what it holds. */
	tvm_fini(&t);
	for (int i = 0; i < MIG_FD_MAX + 2; i++) {
		if (i != 3 && i != MIG_FD_MAX)
			assert_true(peer_closed(mine[i]));
		close(mine[i]);
	}
}

/* ---- migrations over one fd ------------------------------------------- */

struct pair {
	struct tvm src, dst;
	int cut; /* a dup of the source's fd, for a cut; -1 */
};

static int pair_setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));

	if (!p || tvm_init(&p->src, &layout, NULL, 3000) || tvm_init(&p->dst, &layout, NULL, 3000))
		return -1;
	p->cut = -1;
	*state = p;
	return 0;
}

static int pair_teardown(void **state)
{
	struct pair *p = *state;

	tvm_fini(&p->src);
	tvm_fini(&p->dst);
	if (p->cut >= 0)
		close(p->cut);
	free(p);
	return 0;
}

/* A connected TCP pair over loopback. */
static void tcp_pair(int sp[2])
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sin);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sin, &sl), 0);
	sp[0] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(sp[0], (struct sockaddr *)&sin, sizeof(sin)), 0);
	sp[1] = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(sp[1] >= 0);
	close(l);
}

/* Hands one connection to both sessions as "mig"; the destination listens on it. */
static void pair_connect(struct pair *p, unsigned int channels, bool tcp, uint64_t bandwidth,
			 uint64_t reconnect_ms)
{
	struct mig_caps caps = {.multifd = channels > 1, .events = true};
	struct mig_params params = {.multifd_channels = channels,
				    .downtime_limit = 300,
				    .max_bandwidth = bandwidth,
				    .reconnect_timeout = reconnect_ms};
	int sp[2];

	if (tcp)
		tcp_pair(sp);
	else
		assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	p->cut = dup(sp[0]);
	assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
	assert_int_equal(mig_session_set_caps(p->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	assert_int_equal(mig_session_set_params(p->dst.s, &params), 0);
	assert_int_equal(mig_session_fd_add(p->src.s, "mig", sp[0]), 0);
	assert_int_equal(mig_session_fd_add(p->dst.s, "mig", sp[1]), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, "fd:mig"), 0);
	/* Consumed by the job: the name is gone. */
	assert_int_equal(mig_session_fd_close(p->dst.s, "mig"), -ENOENT);
}

static void final_status(struct tvm *t, enum mig_status st, const char *needle)
{
	struct mig_info info;

	assert_int_equal(mig_session_wait(t->s, 30000), 0);
	mig_session_query(t->s, &info);
	if (info.status != st || !strstr(info.error_desc, needle))
		fprintf(stderr, "status %s error '%s', want %s '%s'\n",
			mig_status_name(info.status), info.error_desc, mig_status_name(st), needle);
	assert_int_equal(info.status, st);
	assert_non_null(strstr(info.error_desc, needle));
}

static void migrate_ok(struct pair *p)
{
	assert_int_equal(mig_session_migrate(p->src.s, "fd:mig"), 0);
	assert_int_equal(mig_session_fd_close(p->src.s, "mig"), -ENOENT);
	final_status(&p->src, MIG_STATUS_COMPLETED, "");
	final_status(&p->dst, MIG_STATUS_COMPLETED, "");
	assert_int_equal(p->src.last_pause_state, MIG_PAUSE_POSTMIGRATE);
	assert_int_equal(p->dst.resume_calls, 1);
	assert_int_equal(p->dst.loads, 1);
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
	/* The job closed the fd (shut down: p->cut, a copy of it, reads EOF). */
	assert_true(peer_closed(p->cut));
}

static void run_fd(struct pair *p, unsigned int channels, bool tcp, bool dirty)
{
	struct mig_info si;

	tvm_fill(&p->src, 0, 0, R0_PAGES / 2, false);
	tvm_fill(&p->src, 0, R0_PAGES / 2, 64, true);
	tvm_fill(&p->src, 1, 10, 100, false);
	pair_connect(p, channels, tcp, 0, 0);
	if (dirty)
		tvm_dirtier_start(&p->src, 1024, 0);
	assert_int_equal(mig_session_migrate(p->src.s, "fd:mig"), 0);
	final_status(&p->src, MIG_STATUS_COMPLETED, "");
	final_status(&p->dst, MIG_STATUS_COMPLETED, "");
	if (dirty)
		tvm_dirtier_stop(&p->src);
	assert_int_equal(mig_session_fd_close(p->src.s, "mig"), -ENOENT);
	assert_int_equal(p->src.last_pause_state, MIG_PAUSE_POSTMIGRATE);
	assert_int_equal(p->src.resume_calls, 0);
	assert_int_equal(p->dst.resume_calls, 1);
	assert_int_equal(p->dst.loads, 1);
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
	mig_session_query(p->src.s, &si);
	assert_true(si.normal >= R0_PAGES / 2 + 100);
	if (dirty)
		assert_true(p->src.writes > 0);
}

static void test_fd_idle_1ch(void **state)
{
	run_fd(*state, 1, false, false);
}

static void test_fd_idle_4ch(void **state)
{
	run_fd(*state, 4, false, false);
}

static void test_fd_dirty_1ch(void **state)
{
	run_fd(*state, 1, false, true);
}

static void test_fd_dirty_4ch(void **state)
{
	run_fd(*state, 4, false, true);
}

static void test_fd_tcp_4ch(void **state)
{
	run_fd(*state, 4, true, true);
}

/* The job ends with the fd: both ends of the connection are closed. */
static void test_fd_closed_with_job(void **state)
{
	struct pair *p = *state;

	tvm_fill(&p->src, 0, 0, 64, false);
	pair_connect(p, 2, false, 0, 0);
	/* p->cut is a dup of the source's end: after the job, reading it gives EOF. */
	assert_int_equal(mig_session_migrate(p->src.s, "fd:mig"), 0);
	final_status(&p->src, MIG_STATUS_COMPLETED, "");
	final_status(&p->dst, MIG_STATUS_COMPLETED, "");
	assert_true(peer_closed(p->cut));
}

/*
 * The connection cut under a running migration (the source's copy shut
 * down): both sides fail naming the fd, the guest runs on at the source.
 * With reconnect-timeout the source tries, cannot (no second fd), and
 * fails when it runs out.
 */
static void run_cut(struct pair *p, uint64_t reconnect_ms)
{
	struct mig_info info;
	uint64_t t0;

	tvm_fill(&p->src, 0, 0, R0_PAGES, false);
	pair_connect(p, 2, false, 2 << 20, reconnect_ms); /* 16 MiB at 2 MiB/s */
	tvm_dirtier_start(&p->src, 256, 0);
	assert_int_equal(mig_session_migrate(p->src.s, "fd:mig"), 0);
	for (int i = 0; i < 500; i++) {
		mig_session_query(p->src.s, &info);
		if (info.status == MIG_STATUS_ACTIVE && info.transferred > (1 << 20))
			break;
		usleep(10000);
	}
	assert_int_equal(info.status, MIG_STATUS_ACTIVE);
	t0 = mig_now_ns();
	assert_int_equal(shutdown(p->cut, SHUT_RDWR), 0);
	final_status(&p->src, MIG_STATUS_FAILED, "fd:mig");
	if (reconnect_ms)
		assert_true(mig_now_ns() - t0 >= reconnect_ms * 1000000ull * 9 / 10);
	tvm_dirtier_stop(&p->src);
	mig_session_query(p->src.s, &info);
	fprintf(stderr, "source: %s\n", info.error_desc);
	/* The guest runs on at the source. */
	assert_int_equal(p->src.pause_calls, p->src.resume_calls);
	assert_false(p->src.dirty_log);
	final_status(&p->dst, MIG_STATUS_FAILED, "");
	mig_session_query(p->dst.s, &info);
	fprintf(stderr, "destination: %s\n", info.error_desc);
	assert_int_equal(p->dst.resume_calls, 0);
}

static void test_fd_cut(void **state)
{
	run_cut(*state, 0);
}

static void test_fd_cut_reconnect_timeout(void **state)
{
	run_cut(*state, 700);
}

/* A raw peer of a destination listening on fd: garbage fails the incoming job. */
static void test_fd_dest_garbage(void **state)
{
	struct pair *p = *state;
	int peer, sp[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	peer = sp[0];
	set_timeouts(peer, 5000);
	assert_int_equal(mig_session_fd_add(p->dst.s, "mig", sp[1]), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, "fd:mig"), 0);
	put_open(peer, 1);
	put_frame(peer, 7, 1, "x", 1);
	final_status(&p->dst, MIG_STATUS_FAILED,
		     "fd:mig: bad frame from the peer: stream 7 was never opened");
	assert_true(peer_closed(peer));
	assert_int_equal(p->dst.loads, 0);
	close(peer);
	/* A stream that says nothing a destination understands is dropped; the fd stays usable. */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
	peer = sp[0];
	set_timeouts(peer, 5000);
	assert_int_equal(mig_session_fd_add(p->dst.s, "mig", sp[1]), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, "fd:mig"), 0);
	put_open(peer, 1);
	put_frame(peer, 1, 0x10000000, NULL, 0);
	final_status(&p->dst, MIG_STATUS_FAILED, "frame of 268435456 bytes");
	close(peer);
}

/*
 * A yank cuts the engine's streams, not the fd: the source reconnects with
 * new streams over the same fd, and the migration completes.
 */
static void test_fd_yank_reconnects(void **state)
{
	struct pair *p = *state;
	struct mig_info info;

	tvm_fill(&p->src, 0, 0, R0_PAGES, false);
	pair_connect(p, 4, false, 8 << 20, 5000); /* 16 MiB at 8 MiB/s */
	assert_int_equal(mig_session_migrate(p->src.s, "fd:mig"), 0);
	for (int i = 0; i < 500; i++) {
		mig_session_query(p->src.s, &info);
		if (info.status == MIG_STATUS_ACTIVE && info.transferred > (1 << 20))
			break;
		usleep(10000);
	}
	assert_int_equal(info.status, MIG_STATUS_ACTIVE);
	assert_int_equal(mig_session_yank(p->src.s), 0);
	final_status(&p->src, MIG_STATUS_COMPLETED, "");
	final_status(&p->dst, MIG_STATUS_COMPLETED, "");
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
	assert_true(tvm_saw_event(&p->src, "completed"));
	mig_session_query(p->src.s, &info);
	assert_true(info.resumes >= 1);
}

/*
 * A restarted migrator finds an fd: migration in the record: its fd died
 * with the old process, so the migration is given up, the guest runs on.
 */
static void test_fd_restart_gives_up(void **state)
{
	struct pair *p = *state;
	struct mig_record *rec = p->src.s->rec;
	struct mig_session *again;
	struct mig_info info;

	assert_int_equal(mig_record_lock(rec), 0);
	rec->role = MIG_ROLE_SOURCE;
	rec->status = MIG_STATUS_ACTIVE;
	rec->phase = MIG_PHASE_SRC_PRECOPY;
	rec->restarts = 0;
	snprintf(rec->uri, sizeof(rec->uri), "fd:mig");
	mig_record_unlock(rec);
	assert_int_equal(mig_session_alloc(&again, &p->src.s->env), 0);
	assert_int_equal(mig_session_resume(again), 1);
	assert_int_equal(mig_session_wait(again, 5000), 0);
	mig_session_query(again, &info);
	fprintf(stderr, "source: %s '%s'\n", mig_status_name(info.status), info.error_desc);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, "an fd: migration cannot continue"));
	/* In precopy the guest was never paused: it runs on. */
	assert_int_equal(p->src.pause_calls, p->src.resume_calls);
	mig_session_free(again);
	/* A destination listening on an fd: likewise. */
	rec = p->dst.s->rec;
	assert_int_equal(mig_record_lock(rec), 0);
	rec->role = MIG_ROLE_DEST;
	rec->status = MIG_STATUS_NONE;
	rec->phase = MIG_PHASE_DST_LISTENING;
	snprintf(rec->uri, sizeof(rec->uri), "fd:mig");
	mig_record_unlock(rec);
	assert_int_equal(mig_session_alloc(&again, &p->dst.s->env), 0);
	assert_int_equal(mig_session_resume(again), 1);
	mig_session_query(again, &info);
	fprintf(stderr, "destination: %s '%s'\n", mig_status_name(info.status), info.error_desc);
	assert_int_equal(info.status, MIG_STATUS_FAILED);
	assert_non_null(strstr(info.error_desc, "fd:mig"));
	mig_session_free(again);
}

/* ---- mutual TLS inside the streams -------------------------------------- */

static char scratch[64];

static const struct tls_certs good = {
	.ca_name = "cleave test CA",
	.server_dns = "localhost",
	.server_ip = "127.0.0.1",
	.client_dn = "CN=source,O=cleave tests",
};

static struct mig_tls *load(const struct mig_tls_config *cfg)
{
	struct mig_tls *t = NULL;
	char err[256] = "";

	if (mig_tls_load(&t, cfg, err, sizeof(err)))
		fail_msg("mig_tls_load: %s", err);
	return t;
}

static void test_fd_tls(void **state)
{
	char dir[128];
	struct mig_tls_config c, named;
	struct mig_tls *st, *dt, *nt;
	struct pair p = {.cut = -1};

	(void)state;
	assert_int_equal(test_dir_make(scratch, "fd-tls"), 0);
	snprintf(dir, sizeof(dir), "%s/good", scratch);
	assert_int_equal(tls_certs_make(dir, &good), 0);
	c = (struct mig_tls_config){.x509_dir = dir, .authz = "CN=source,O=cleave tests"};
	named = c;
	named.hostname = "localhost";
	st = load(&c);
	dt = load(&c);
	nt = load(&named);
	/* Without tls-hostname the source refuses: an fd has no host name. */
	assert_int_equal(tvm_init_tls(&p.src, &layout, NULL, 2000, st), 0);
	assert_int_equal(tvm_init_tls(&p.dst, &layout, NULL, 2000, dt), 0);
	tvm_fill(&p.src, 0, 0, 512, false);
	pair_connect(&p, 4, false, 0, 0);
	assert_int_equal(mig_session_migrate(p.src.s, "fd:mig"), 0);
	final_status(&p.src, MIG_STATUS_FAILED, "TLS over an fd: connection needs tls-hostname");
	tvm_fini(&p.src);
	tvm_fini(&p.dst);
	close(p.cut);
	/* With it: authenticated both ways, then the migration. */
	p = (struct pair){.cut = -1};
	assert_int_equal(tvm_init_tls(&p.src, &layout, NULL, 2000, nt), 0);
	assert_int_equal(tvm_init_tls(&p.dst, &layout, NULL, 2000, dt), 0);
	tvm_fill(&p.src, 0, 0, 512, false);
	pair_connect(&p, 4, false, 0, 0);
	migrate_ok(&p);
	tvm_fini(&p.src);
	tvm_fini(&p.dst);
	close(p.cut);
	mig_tls_free(st);
	mig_tls_free(dt);
	mig_tls_free(nt);
	test_dir_remove(scratch);
}

int main(void)
{
	log_init("test-migrator-fd");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mux_streams),
		cmocka_unit_test(test_mux_end_flushes),
		cmocka_unit_test(test_mux_cut),
		cmocka_unit_test(test_mux_garbage),
		cmocka_unit_test(test_fd_table),
		cmocka_unit_test_setup_teardown(test_fd_idle_1ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_idle_4ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_dirty_1ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_dirty_4ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_tcp_4ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_closed_with_job, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_cut, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_cut_reconnect_timeout, pair_setup,
						pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_dest_garbage, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_yank_reconnects, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_fd_restart_gives_up, pair_setup,
						pair_teardown),
		cmocka_unit_test(test_fd_tls),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
