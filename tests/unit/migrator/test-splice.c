/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The source's page data path (migrator/splice.c) over a real loopback
 * TCP connection: scattered runs of a RAM memfd spliced into the socket
 * arrive whole and in order, also runs longer than the pipe, through a
 * pipe of one page, and across a hole of the memfd (zeros, still a hole);
 * a receiver that is gone, before or in the middle of a packet, gives
 * -ECONNRESET each time and a clean pipe; the TLS path's copy
 * (mig_pread_runs) is byte-exact.  SIGPIPE keeps its default action here:
 * a splice() that raised it unhandled would kill the test.
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "migrator/session-internal.h"
#include "migrator/wire.h"

#define PAGE	 4096u
#define RAM_SIZE (4u << 20)
#define NR_PAGES (RAM_SIZE / PAGE)

struct run {
	uint64_t off, len;
};

struct conn {
	int tx, rx; /* connected loopback TCP pair */
};

static void conn_open(struct conn *c)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(l >= 0);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	assert_int_equal(getsockname(l, (struct sockaddr *)&sa, &len), 0);
	c->tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_int_equal(connect(c->tx, (struct sockaddr *)&sa, sizeof(sa)), 0);
	c->rx = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	assert_true(c->rx >= 0);
	close(l);
	assert_int_equal(mig_sock_setup(c->tx, 2000), 0);
	assert_int_equal(mig_sock_setup(c->rx, 2000), 0);
}

static void conn_close(struct conn *c)
{
	if (c->tx >= 0)
		close(c->tx);
	if (c->rx >= 0)
		close(c->rx);
}

static int ram_memfd(uint8_t **map)
{
	int fd = memfd_create("test-splice", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, RAM_SIZE), 0);
	*map = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(*map != MAP_FAILED);
	return fd;
}

static void block_sigpipe(void)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	assert_int_equal(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
}

static bool sigpipe_pending(void)
{
	sigset_t set;

	assert_int_equal(sigpending(&set), 0);
	return sigismember(&set, SIGPIPE);
}

/*
 * The page runs of one packet: every other page, then runs of 1..7 pages,
 * then one run longer than the pipe (1 MiB).
 */
static int make_runs(struct mig_run *runs)
{
	uint64_t page = 3;
	int n = 0;

	while (page + 8 < NR_PAGES / 2 && n < 300) {
		uint64_t len = n < 64 ? 1 : 1 + (uint64_t)n % 7;

		runs[n] = (struct mig_run){.off = page * PAGE, .len = len * PAGE};
		n++;
		page += len + 1 + (uint64_t)n % 3;
	}
	runs[n++] = (struct mig_run){.off = (page + 1) * PAGE, .len = 300 * PAGE};
	assert_true(page + 1 + 300 <= NR_PAGES);
	return n;
}

struct sender {
	struct conn *c;
	struct iovec *head;
	const struct mig_run *runs;
	int nhead, nruns, fd, ret;
	int pipe_bytes; /* 0: the size mig_pipe_open() asks for */
};

static void *send_thread(void *arg)
{
	struct sender *s = arg;
	struct mig_pipe p;

	block_sigpipe();
	s->ret = mig_pipe_open(&p);
	if (!s->ret && s->pipe_bytes) {
		if (fcntl(p.wr, F_SETPIPE_SZ, s->pipe_bytes) < 0)
			s->ret = -errno;
		p.size = (size_t)fcntl(p.wr, F_GETPIPE_SZ);
	}
	if (!s->ret)
		s->ret = mig_splice_send(s->c->tx, &p, s->head, s->nhead, s->fd, s->runs, s->nruns);
	mig_pipe_close(&p);
	return NULL;
}

/*
 * More data than a pipe holds, in runs that split across its fills; with
 * @pipe_bytes, a pipe smaller than a page run (the kernel may refuse the
 * 1 MiB mig_pipe_open() asks for: slower, never wrong).
 */
static void round_trip(int pipe_bytes, bool hole)
{
	static struct mig_run runs[301];
	static const uint8_t zero[PAGE];
	uint8_t *src, *dst, head_buf[40], got_head[40];
	struct iovec head = {head_buf, sizeof(head_buf)};
	int sfd = ram_memfd(&src), dfd = ram_memfd(&dst), n;
	uint64_t total = 0, last, a, e;
	struct conn c;
	struct sender s;
	pthread_t t;

	for (size_t i = 0; i < RAM_SIZE; i++)
		src[i] = (uint8_t)(i * 131 + i / PAGE);
	memset(head_buf, 0x5a, sizeof(head_buf));
	n = make_runs(runs);
	last = runs[n - 1].off;
	/* A hole in the middle of the long run: never written, or punched out. */
	if (hole)
		assert_int_equal(fallocate(sfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
					   (off_t)(last + 100 * PAGE), 20 * PAGE),
				 0);
	for (int i = 0; i < n; i++)
		total += runs[i].len;
	assert_true(total > (1u << 20)); /* more than one pipe's worth */
	conn_open(&c);
	s = (struct sender){.c = &c,
			    .head = &head,
			    .nhead = 1,
			    .runs = runs,
			    .nruns = n,
			    .fd = sfd,
			    .pipe_bytes = pipe_bytes};
	assert_int_equal(pthread_create(&t, NULL, send_thread, &s), 0);
	assert_int_equal(mig_io_read(c.rx, got_head, sizeof(got_head)), 0);
	assert_memory_equal(got_head, head_buf, sizeof(head_buf));
	for (int i = 0; i < n; i++)
		assert_int_equal(mig_io_read(c.rx, dst + runs[i].off, runs[i].len), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(s.ret, 0);
	/* Nothing else came: the next read finds the end of the stream. */
	close(c.tx);
	c.tx = -1;
	assert_int_equal(mig_io_read(c.rx, got_head, 1), -ECONNRESET);
	/* Sending the hole did not fill it (checked before the mapping reads it: that would). */
	if (hole) {
		assert_int_equal(shm_memfd_next_data(sfd, last, RAM_SIZE, &a, &e), 0);
		assert_int_equal(e, last + 100 * PAGE);
		assert_int_equal(shm_memfd_next_data(sfd, e, RAM_SIZE, &a, &e), 0);
		assert_int_equal(a, last + 120 * PAGE);
	}
	/* The runs hold the source's bytes, in order (zeros where it has a hole). */
	for (uint64_t pg = 0, r = 0; pg < NR_PAGES; pg++) {
		uint64_t off = pg * PAGE;

		while (r < (uint64_t)n && runs[r].off + runs[r].len <= off)
			r++;
		if (r < (uint64_t)n && off >= runs[r].off)
			assert_memory_equal(dst + off, src + off, PAGE);
		else
			assert_memory_equal(dst + off, zero, PAGE);
	}
	if (hole)
		assert_memory_equal(dst + last + 100 * PAGE, zero, PAGE);
	conn_close(&c);
	munmap(src, RAM_SIZE);
	munmap(dst, RAM_SIZE);
	close(sfd);
	close(dfd);
}

static void test_round_trip(void **state)
{
	(void)state;
	round_trip(0, false);
}

/* Every fill is partial: the pipe holds one page of each run. */
static void test_round_trip_small_pipe(void **state)
{
	(void)state;
	round_trip(PAGE, false);
}

static void test_round_trip_hole(void **state)
{
	(void)state;
	round_trip(0, true);
}

/*
 * The receiver is gone: an error each time, and no SIGPIPE left to kill
 * the process (splice() into the socket raises it once the reset was
 * reported; no header here, so no sendmsg with MSG_NOSIGNAL sees it first).
 */
static void test_send_peer_closed(void **state)
{
	uint8_t *src;
	int sfd = ram_memfd(&src), ret = 0, errors = 0;
	struct mig_pipe p;
	struct conn c;

	(void)state;
	memset(src, 0x11, RAM_SIZE);
	conn_open(&c);
	close(c.rx);
	c.rx = -1;
	block_sigpipe();
	assert_int_equal(mig_pipe_open(&p), 0);
	for (int i = 0; i < 50 && errors < 3; i++) {
		struct mig_run data = {0, 16 * PAGE};

		ret = mig_splice_send(c.tx, &p, NULL, 0, sfd, &data, 1);
		if (ret) {
			assert_int_equal(ret, -ECONNRESET);
			errors++;
		}
	}
	assert_int_equal(errors, 3);
	assert_false(sigpipe_pending());
	mig_pipe_close(&p);
	conn_close(&c);
	munmap(src, RAM_SIZE);
	close(sfd);
}

/* Bytes waiting in the pipe's read end. */
static int pipe_held(const struct mig_pipe *p)
{
	int n = -1;

	assert_int_equal(ioctl(p->rd, FIONREAD, &n), 0);
	return n;
}

/*
 * The receiver reads part of a packet longer than the pipe, then hangs up
 * (unread data: a reset): -ECONNRESET, no SIGPIPE, and the pipe is a new,
 * empty one, so nothing of this packet would precede the next.
 */
static void test_peer_gone_mid_splice(void **state)
{
	struct mig_run all = {0, RAM_SIZE};
	uint8_t *src, *buf = malloc(256 * PAGE);
	int sfd = ram_memfd(&src);
	struct sender s;
	struct conn c;
	pthread_t t;

	(void)state;
	assert_non_null(buf);
	memset(src, 0x22, RAM_SIZE);
	conn_open(&c);
	/* Small socket buffers: the sender is still splicing when the receiver goes. */
	assert_int_equal(setsockopt(c.tx, SOL_SOCKET, SO_SNDBUF, &(int){64 << 10}, sizeof(int)), 0);
	assert_int_equal(setsockopt(c.rx, SOL_SOCKET, SO_RCVBUF, &(int){64 << 10}, sizeof(int)), 0);
	s = (struct sender){.c = &c, .runs = &all, .nruns = 1, .fd = sfd};
	assert_int_equal(pthread_create(&t, NULL, send_thread, &s), 0);
	assert_int_equal(mig_io_read(c.rx, buf, 256 * PAGE), 0);
	assert_memory_equal(buf, src, 256 * PAGE);
	close(c.rx);
	c.rx = -1;
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(s.ret, -ECONNRESET);
	assert_false(sigpipe_pending());
	conn_close(&c);

	/* Same, on a pipe this test holds: it comes back new and empty. */
	conn_open(&c);
	block_sigpipe();
	{
		struct mig_pipe p;

		assert_int_equal(mig_pipe_open(&p), 0);
		close(c.rx);
		c.rx = -1;
		assert_int_equal(mig_splice_send(c.tx, &p, NULL, 0, sfd, &all, 1), -ECONNRESET);
		assert_true(p.rd >= 0 && p.wr >= 0);
		assert_int_equal(pipe_held(&p), 0);
		mig_pipe_close(&p);
	}
	assert_false(sigpipe_pending());
	conn_close(&c);
	free(buf);
	munmap(src, RAM_SIZE);
	close(sfd);
}

/* A run past the end of the (sealed, fixed-size) memfd: an error, not a hang. */
static void test_run_past_end(void **state)
{
	struct mig_run past = {RAM_SIZE - PAGE, 2 * PAGE};
	uint8_t *src, *buf = malloc(2 * PAGE);
	int sfd = ram_memfd(&src);
	struct mig_pipe p;
	struct conn c;

	(void)state;
	memset(src, 0x33, RAM_SIZE);
	conn_open(&c);
	block_sigpipe();
	assert_int_equal(mig_pipe_open(&p), 0);
	assert_int_equal(mig_splice_send(c.tx, &p, NULL, 0, sfd, &past, 1), -EIO);
	assert_int_equal(mig_pread_runs(sfd, buf, &past, 1), -EIO);
	mig_pipe_close(&p);
	conn_close(&c);
	free(buf);
	munmap(src, RAM_SIZE);
	close(sfd);
}

/* The TLS path's copy: the runs back to back, a hole as zeros, byte-exact. */
static void test_pread_runs(void **state)
{
	static const uint8_t zero[PAGE];
	const struct mig_run runs[] = {{PAGE, 3 * PAGE}, {10 * PAGE, PAGE}, {20 * PAGE, 4 * PAGE}};
	uint8_t *src, *buf = malloc(8 * PAGE);
	int sfd = ram_memfd(&src);

	(void)state;
	for (size_t i = 0; i < RAM_SIZE; i++)
		src[i] = (uint8_t)(i * 7 + i / PAGE);
	assert_int_equal(
		fallocate(sfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 21 * PAGE, PAGE), 0);
	assert_int_equal(mig_pread_runs(sfd, buf, runs, 3), 0);
	assert_memory_equal(buf, src + PAGE, 3 * PAGE);
	assert_memory_equal(buf + 3 * PAGE, src + 10 * PAGE, PAGE);
	assert_memory_equal(buf + 4 * PAGE, src + 20 * PAGE, PAGE);
	assert_memory_equal(buf + 5 * PAGE, zero, PAGE);
	assert_memory_equal(buf + 6 * PAGE, src + 22 * PAGE, 2 * PAGE);
	free(buf);
	munmap(src, RAM_SIZE);
	close(sfd);
}

/* No fd left for the pipe: an error, which the send thread turns into an abort. */
static void test_pipe_open_fails(void **state)
{
	struct rlimit old, none;
	struct mig_pipe p = {-1, -1, 0};
	int first = dup(0);

	(void)state;
	assert_true(first >= 0);
	close(first);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &old), 0);
	/* Every fd from @first on is refused: at most one of the two pipe ends. */
	none = (struct rlimit){.rlim_cur = (rlim_t)first, .rlim_max = old.rlim_max};
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &none), 0);
	assert_int_equal(mig_pipe_open(&p), -EMFILE);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &old), 0);
	assert_int_equal(p.rd, -1);
	assert_int_equal(p.wr, -1);
	mig_pipe_close(&p); /* safe on a pipe never opened */
	assert_int_equal(mig_pipe_open(&p), 0);
	mig_pipe_close(&p);
	assert_int_equal(p.rd, -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_round_trip_small_pipe),
		cmocka_unit_test(test_round_trip_hole),
		cmocka_unit_test(test_send_peer_closed),
		cmocka_unit_test(test_peer_gone_mid_splice),
		cmocka_unit_test(test_run_past_end),
		cmocka_unit_test(test_pread_runs),
		cmocka_unit_test(test_pipe_open_fails),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
