// SPDX-License-Identifier: GPL-2.0-only
/* The migrator's end of the postcopy link (postcopy-link.h). */
#include "migrator/postcopy-link.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#include "log/log.h"
#include "proto/postcopy-link.h"

/* The biggest message cleave-vcpu sends: FAULTS. */
#define PCLINK_RX_MAX (sizeof(struct pclink_hdr) + PCLINK_MAX_FAULTS * sizeof(struct pclink_page))

struct mig_pclink {
	int fd;			   /* not owned */
	unsigned int timeout_ms;   /* immutable */
	uint8_t rx[PCLINK_RX_MAX]; /* the one reader's buffer (see postcopy-link.h) */
};

int mig_pclink_open(struct mig_pclink **out, int fd, unsigned int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	struct mig_pclink *l;

	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)))
		return -errno;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = fd;
	l->timeout_ms = timeout_ms;
	*out = l;
	return 0;
}

void mig_pclink_close(struct mig_pclink *l)
{
	free(l);
}

static int link_send(struct mig_pclink *l, const struct pclink_hdr *h, const void *data, size_t len)
{
	struct iovec iov[2] = {{(void *)h, sizeof(*h)}, {(void *)data, len}};
	struct msghdr mh = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};
	ssize_t n;

	do
		n = sendmsg(l->fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	return (size_t)n == sizeof(*h) + len ? 0 : -EIO;
}

/*
 * Reads one message within @timeout_ms (< 0: the link's timeout): its
 * length, 0 on timeout, or a negative errno.  An ERROR is taken here.
 */
static int link_recv(struct mig_pclink *l, int timeout_ms)
{
	struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
	const struct pclink_hdr *h = (const void *)l->rx;
	ssize_t n;
	int ret;

	ret = poll(&pfd, 1, timeout_ms < 0 ? (int)l->timeout_ms : timeout_ms);
	if (ret <= 0)
		return ret < 0 ? (errno == EINTR ? 0 : -errno) : 0;
	n = recv(l->fd, l->rx, sizeof(l->rx), MSG_DONTWAIT | MSG_TRUNC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	if ((size_t)n < sizeof(*h) || (size_t)n > sizeof(l->rx) || h->magic != PCLINK_MAGIC) {
		log_err("postcopy link: malformed message of %zd bytes from cleave-vcpu", n);
		return -EPROTO;
	}
	if (h->type == PCLINK_ERROR) {
		log_err("postcopy link: cleave-vcpu could not place region %u page %llu: %s",
			h->region, (unsigned long long)h->page, strerror(-h->err));
		return h->err < 0 ? h->err : -EIO;
	}
	return (int)n;
}

/* Sends @type and waits for its REPLY (FAULTS meanwhile are dropped: AGAIN asks for them). */
static int link_call(struct mig_pclink *l, uint32_t type, uint32_t flags)
{
	const struct pclink_hdr *in = (const void *)l->rx;
	struct pclink_hdr h = {.magic = PCLINK_MAGIC, .type = type, .flags = flags};
	struct timespec t0, t;
	int ret = link_send(l, &h, NULL, 0);

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!ret) {
		ret = link_recv(l, -1);
		if (ret > 0 && in->type == PCLINK_REPLY)
			return in->err;
		if (ret < 0)
			return ret;
		clock_gettime(CLOCK_MONOTONIC, &t);
		if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 >=
		    (long)l->timeout_ms)
			return -ETIMEDOUT;
		ret = 0;
	}
	return ret;
}

int mig_pclink_listen(struct mig_pclink *l)
{
	return link_call(l, PCLINK_LISTEN, 0);
}

int mig_pclink_end(struct mig_pclink *l, bool abort)
{
	return link_call(l, PCLINK_END, abort ? PCLINK_ABORT : 0);
}

int mig_pclink_place(struct mig_pclink *l, uint32_t region, uint64_t page, unsigned int nr,
		     const void *data)
{
	while (nr) {
		unsigned int n = nr < PCLINK_MAX_PAGES ? nr : PCLINK_MAX_PAGES;
		struct pclink_hdr h = {.magic = PCLINK_MAGIC,
				       .type = PCLINK_PLACE,
				       .region = region,
				       .count = n,
				       .page = page,
				       .flags = data ? 0 : PCLINK_ZERO};
		int ret = link_send(l, &h, data, data ? (size_t)n * SHM_PAGE_SIZE : 0);

		if (ret)
			return ret;
		page += n;
		nr -= n;
		if (data)
			data = (const uint8_t *)data + (size_t)n * SHM_PAGE_SIZE;
	}
	return 0;
}

int mig_pclink_wait_faults(struct mig_pclink *l, struct mig_page_ref *reqs, unsigned int max,
			   int timeout_ms, bool again)
{
	const struct pclink_hdr *in = (const void *)l->rx;
	const struct pclink_page *pg = (const void *)(in + 1);
	int ret = 0, n = 0;

	if (max < PCLINK_MAX_FAULTS)
		return -EINVAL; /* a FAULTS message is taken whole */
	if (again) {
		struct pclink_hdr h = {.magic = PCLINK_MAGIC, .type = PCLINK_AGAIN};

		ret = link_send(l, &h, NULL, 0);
		if (ret)
			return ret;
	}
	ret = link_recv(l, timeout_ms);
	if (ret <= 0)
		return ret;
	if (in->type != PCLINK_FAULTS || in->count > PCLINK_MAX_FAULTS ||
	    (size_t)ret != sizeof(*in) + in->count * sizeof(*pg))
		return 0; /* a late REPLY, or nothing to take */
	for (uint32_t i = 0; i < in->count; i++) {
		reqs[n].region = pg[i].region;
		reqs[n++].page = pg[i].page;
	}
	return n;
}
