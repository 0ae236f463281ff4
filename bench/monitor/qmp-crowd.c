// SPDX-License-Identifier: GPL-2.0-only
/*
 * Many QMP clients at once: N clients connect and negotiate, then all of
 * them issue CALLS commands back to back (each waits for its reply before
 * the next), driven from one epoll loop so the bench's own threads do not
 * queue behind each other.  Prints per-call latency (median, p99, max)
 * and calls per second over the busy interval.
 */
#include "qmp-crowd.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* What one client waits for. */
enum crowd_phase {
	CROWD_GREETING,	  /* the {"QMP": ...} line */
	CROWD_NEGOTIATED, /* the reply to qmp_capabilities */
	CROWD_READY,	  /* negotiated, waiting for the start */
	CROWD_CALL,	  /* the reply to a call */
	CROWD_DONE,
};

struct crowd_client {
	int fd;
	enum crowd_phase phase;
	int calls_done;
	long long sent_ns;
	size_t have; /* bytes in buf not yet consumed */
	char buf[4096];
};

static long long crowd_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int crowd_cmp(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/* The whole line goes out at once: it is far below the socket buffer. */
static int crowd_send(struct crowd_client *c, const char *line)
{
	size_t len = strlen(line);

	if (send(c->fd, line, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -EIO;
	c->sent_ns = crowd_now_ns();
	return 0;
}

static int crowd_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) {
		int ret = -errno;

		close(fd);
		return ret;
	}
	return fd;
}

/*
 * One line from the monitor: events are skipped; anything else moves the
 * client on.  A reply without "return" is an error.  @lat collects the
 * calls' round trips.
 */
static int crowd_line(struct crowd_client *c, const char *line, const char *call, int calls,
		      long long *lat, size_t *nlat)
{
	if (strstr(line, "\"event\""))
		return 0;
	switch (c->phase) {
	case CROWD_GREETING:
		if (!strstr(line, "\"QMP\""))
			return -EPROTO;
		c->phase = CROWD_NEGOTIATED;
		return crowd_send(c, "{\"execute\":\"qmp_capabilities\"}\n");
	case CROWD_NEGOTIATED:
		if (!strstr(line, "\"return\""))
			return -EPROTO;
		c->phase = CROWD_READY;
		return 0;
	case CROWD_CALL:
		if (!strstr(line, "\"return\""))
			return -EPROTO;
		lat[(*nlat)++] = crowd_now_ns() - c->sent_ns;
		if (++c->calls_done == calls) {
			c->phase = CROWD_DONE;
			return 0;
		}
		return crowd_send(c, call);
	default:
		return -EPROTO; /* nothing is due */
	}
}

static int crowd_read(struct crowd_client *c, const char *call, int calls, long long *lat,
		      size_t *nlat)
{
	for (;;) {
		ssize_t n = recv(c->fd, c->buf + c->have, sizeof(c->buf) - 1 - c->have, 0);
		char *start, *nl;
		int ret;

		if (n < 0 && errno == EAGAIN)
			return 0;
		if (n <= 0)
			return n ? -errno : -ECONNRESET;
		c->have += (size_t)n;
		c->buf[c->have] = '\0';
		start = c->buf;
		while ((nl = strchr(start, '\n'))) {
			*nl = '\0';
			ret = crowd_line(c, start, call, calls, lat, nlat);
			if (ret)
				return ret;
			start = nl + 1;
		}
		c->have -= (size_t)(start - c->buf);
		memmove(c->buf, start, c->have);
		if (c->have == sizeof(c->buf) - 1)
			return -EMSGSIZE; /* a reply longer than any these commands give */
	}
}

/* Runs the loop until every client is in @until, or @timeout_ms passes. */
static int crowd_run(int ep, struct crowd_client *cl, int n, enum crowd_phase until,
		     const char *call, int calls, long long *lat, size_t *nlat, int timeout_ms)
{
	long long end = crowd_now_ns() + (long long)timeout_ms * 1000000ll;
	struct epoll_event ev[64];
	int i, left, got;

	for (;;) {
		for (left = 0, i = 0; i < n; i++)
			left += cl[i].phase != until;
		if (!left)
			return 0;
		if (crowd_now_ns() > end)
			return -ETIMEDOUT;
		got = epoll_wait(ep, ev, 64, 100);
		if (got < 0 && errno != EINTR)
			return -errno;
		for (i = 0; i < got; i++) {
			int ret = crowd_read(&cl[ev[i].data.u32], call, calls, lat, nlat);

			if (ret)
				return ret;
		}
	}
}

int qmp_crowd(const char *label, const char *path, const char *cmd, int clients, int calls)
{
	struct crowd_client *cl = calloc((size_t)clients, sizeof(*cl));
	long long *lat = calloc((size_t)clients * (size_t)calls, sizeof(*lat)), t0 = 0, t1;
	size_t nlat = 0;
	char call[128];
	int ep = epoll_create1(EPOLL_CLOEXEC), i, ret = 0;

	if (!cl || !lat || ep < 0) {
		ret = -ENOMEM;
		goto out;
	}
	snprintf(call, sizeof(call), "{\"execute\":\"%s\"}\n", cmd);
	for (i = 0; i < clients; i++)
		cl[i].fd = -1;
	for (i = 0; !ret && i < clients; i++) {
		struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};

		cl[i].fd = crowd_connect(path);
		if (cl[i].fd < 0)
			ret = cl[i].fd;
		else if (epoll_ctl(ep, EPOLL_CTL_ADD, cl[i].fd, &ev))
			ret = -errno;
	}
	if (!ret)
		ret = crowd_run(ep, cl, clients, CROWD_READY, call, calls, lat, &nlat, 30000);
	/* All negotiated: every client sends its first call now. */
	t0 = crowd_now_ns();
	for (i = 0; !ret && i < clients; i++) {
		cl[i].phase = CROWD_CALL;
		ret = crowd_send(&cl[i], call);
	}
	if (!ret)
		ret = crowd_run(ep, cl, clients, CROWD_DONE, call, calls, lat, &nlat, 60000);
	t1 = crowd_now_ns();
	if (!ret) {
		qsort(lat, nlat, sizeof(*lat), crowd_cmp);
		printf("%-14s %-48s %d clients x %d calls: median=%.1f us p99=%.1f us "
		       "max=%.1f us, %.0f calls/s\n",
		       cmd, label, clients, calls, (double)lat[nlat / 2] / 1e3,
		       (double)lat[nlat * 99 / 100] / 1e3, (double)lat[nlat - 1] / 1e3,
		       (double)nlat * 1e9 / (double)(t1 - t0));
		fflush(stdout);
	}
out:
	if (ret)
		fprintf(stderr, "%s: %s, %d clients x %d calls: %s\n", label, cmd, clients, calls,
			strerror(-ret));
	for (i = 0; cl && i < clients; i++)
		if (cl[i].fd >= 0)
			close(cl[i].fd);
	if (ep >= 0)
		close(ep);
	free(cl);
	free(lat);
	return ret;
}
