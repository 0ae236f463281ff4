/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What this host's loopback TCP carries in one stream, without cleave:
 * the ceiling a migration channel's wire throughput is measured against.
 *
 *   buffer -> buffer       send() from, recv(MSG_WAITALL) into warm 1 MiB
 *                          buffers: the network stack alone
 *   RAM -> allocated RAM   cleave's data path (splice from a 1 GiB memfd,
 *                          recv into a buffer, pwrite) into a memfd whose
 *                          pages exist (later rounds)
 *   RAM -> fresh RAM       the same into a fresh memfd, as round 0: each
 *                          page is allocated by the write
 *   RAM -> mapped RAM      recv straight into a new mapping of an allocated
 *                          memfd (first touch of each page faults): what a
 *                          destination that maps RAM pays in later rounds
 *
 * Medians of RUNS (default 5).  usage: bench-migrator-loopback [RUNS]
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrator/session-internal.h"
#include "migrator/wire.h"

#define CHUNK	 (1u << 20) /* a full packet's data */
#define RAM_SIZE (1ull << 30)

enum mode { BUFFER, RAM_ALLOCATED, RAM_FRESH, RAM_MAPPED, NR_MODES };

static const char *const mode_names[NR_MODES] = {
	[BUFFER] = "buffer -> buffer",
	[RAM_ALLOCATED] = "RAM -> allocated RAM",
	[RAM_FRESH] = "RAM -> fresh RAM",
	[RAM_MAPPED] = "RAM -> mapped RAM",
};

struct sender {
	int fd;
	enum mode mode;
	int ram; /* the source memfd */
	int ret;
};

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-migrator-loopback: %s: %s\n", what, strerror(err));
	exit(1);
}

static void tcp_pair(int *tx, int *rx)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (l < 0 || bind(l, (struct sockaddr *)&sa, sizeof(sa)) || listen(l, 1) ||
	    getsockname(l, (struct sockaddr *)&sa, &len))
		die("listen", errno);
	*tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*tx < 0 || connect(*tx, (struct sockaddr *)&sa, sizeof(sa)))
		die("connect", errno);
	*rx = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	if (*rx < 0)
		die("accept", errno);
	close(l);
	if (mig_sock_setup(*tx, 10000) || mig_sock_setup(*rx, 10000))
		die("socket options", errno);
}

static void *send_thread(void *arg)
{
	struct sender *s = arg;
	struct mig_pipe p;
	sigset_t sigpipe;

	sigemptyset(&sigpipe);
	sigaddset(&sigpipe, SIGPIPE);
	pthread_sigmask(SIG_BLOCK, &sigpipe, NULL);
	if (s->mode == BUFFER) {
		uint8_t *buf = malloc(CHUNK);

		memset(buf, 0x5a, CHUNK);
		for (uint64_t sent = 0; sent < RAM_SIZE && !s->ret; sent += CHUNK)
			s->ret = mig_io_write(s->fd, buf, CHUNK);
		free(buf);
		return NULL;
	}
	s->ret = mig_pipe_open(&p);
	for (uint64_t off = 0; off < RAM_SIZE && !s->ret; off += CHUNK) {
		struct mig_run data = {off, CHUNK};

		s->ret = mig_splice_send(s->fd, &p, NULL, 0, s->ram, &data, 1);
	}
	mig_pipe_close(&p);
	return NULL;
}

/* One run of @mode; returns GiB/s. */
static double run(enum mode mode, int src_ram)
{
	struct sender tx = {.mode = mode, .ram = src_ram};
	uint8_t *buf = malloc(CHUNK), *map = NULL;
	int rx, dst = -1, ret = 0;
	uint64_t t0;
	pthread_t t;

	memset(buf, 0, CHUNK);
	tcp_pair(&tx.fd, &rx);
	if (mode != BUFFER) {
		dst = memfd_create("bench-dst", MFD_CLOEXEC);
		if (dst < 0 || ftruncate(dst, (off_t)RAM_SIZE))
			die("destination memfd", errno);
		if (mode != RAM_FRESH && fallocate(dst, 0, 0, (off_t)RAM_SIZE))
			die("fallocate", errno);
	}
	if (mode == RAM_MAPPED) {
		map = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, dst, 0);
		if (map == MAP_FAILED)
			die("mmap", errno);
	}
	t0 = mig_now_ns();
	if (pthread_create(&t, NULL, send_thread, &tx))
		die("thread", EAGAIN);
	for (uint64_t got = 0; got < RAM_SIZE && !ret; got += CHUNK) {
		ret = mig_io_read(rx, map ? map + got : buf, CHUNK);
		if (!ret && !map && dst >= 0 && pwrite(dst, buf, CHUNK, (off_t)got) != CHUNK)
			ret = -EIO;
	}
	pthread_join(t, NULL);
	t0 = mig_now_ns() - t0;
	if (ret || tx.ret)
		die("transfer", -(ret ? ret : tx.ret));
	close(tx.fd);
	close(rx);
	if (map)
		munmap(map, RAM_SIZE);
	if (dst >= 0)
		close(dst); /* freed before the next run allocates */
	free(buf);
	return (double)RAM_SIZE / (double)(1ull << 30) / ((double)t0 / 1e9);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 5;
	double v[NR_MODES][64];
	uint64_t *buf = malloc(CHUNK);
	int src;

	if (!runs || runs > 64) {
		fprintf(stderr, "usage: %s [RUNS 1..64]\n", argv[0]);
		return 2;
	}
	src = memfd_create("bench-src", MFD_CLOEXEC);
	if (src < 0 || ftruncate(src, (off_t)RAM_SIZE))
		die("source memfd", errno);
	if (!buf)
		die("buffer", ENOMEM);
	for (uint64_t off = 0; off < RAM_SIZE; off += CHUNK) {
		for (uint64_t i = 0; i < CHUNK / sizeof(*buf); i++)
			buf[i] = (off + i * sizeof(*buf)) * 0x9e3779b97f4a7c15ull;
		if (pwrite(src, buf, CHUNK, (off_t)off) != CHUNK)
			die("fill", errno);
	}
	free(buf);
	/* Interleaved, so that the host's load swings reach every mode alike. */
	for (unsigned int i = 0; i < runs; i++)
		for (int m = 0; m < NR_MODES; m++)
			v[m][i] = run((enum mode)m, src);
	printf("loopback TCP, one stream, 1 GiB per run, medians of %u (min-max), GiB/s:\n", runs);
	for (int m = 0; m < NR_MODES; m++) {
		qsort(v[m], runs, sizeof(double), cmp_double);
		printf("  %-22s %5.2f (%.2f-%.2f)\n", mode_names[m], v[m][runs / 2], v[m][0],
		       v[m][runs - 1]);
	}
	return 0;
}
