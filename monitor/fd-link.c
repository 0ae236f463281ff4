// SPDX-License-Identifier: GPL-2.0-only
/*
 * The monitor's end of the fd link (proto/fd-link.h, docs/SECURITY.md "The
 * fd link").  The migrator is trusted with nothing here: an answer is
 * taken only when it has the size, magic and seq of the message just
 * sent, and any fd that comes with anything is closed unread.
 */
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/fd-link.h"
#include "proto/fd-link.h"

bool mon_fdlink_name_ok(const char *name)
{
	size_t len = strlen(name);

	return len && len <= FDLINK_NAME_MAX && !strpbrk(name, ":,");
}

static long long mon_fdlink_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void mon_fdlink_close_fds(struct msghdr *mh)
{
	struct cmsghdr *cm;

	if (mh->msg_flags & MSG_CTRUNC)
		log_warn("fd link: the migrator sent fds (dropped)");
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n, i;
		int fd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		log_warn("fd link: the migrator sent fds (closed)");
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	}
}

/* One answer off the link: 1 with *err when it answers @seq, 0 for another, < 0 on error. */
static int mon_fdlink_recv(int link, uint64_t seq, int *err)
{
	struct fdlink_ack ack;
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &ack, .iov_len = sizeof(ack)};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n = recvmsg(link, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -errno;
	mon_fdlink_close_fds(&mh);
	if (n != (ssize_t)sizeof(ack) || (mh.msg_flags & MSG_TRUNC) || ack.magic != FDLINK_MAGIC)
		return 0;
	if (ack.seq != seq)
		return 0; /* an answer to a message whose wait timed out */
	/* Only what a session call returns: never a success we did not ask for. */
	*err = ack.err > 0 || ack.err < -4095 ? -EPROTO : ack.err;
	return 1;
}

int mon_fdlink_send(struct mon_ctx *ctx, const char *name, int fd)
{
	struct fdlink_msg m = {.magic = FDLINK_MAGIC, .type = FDLINK_ADD};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &m, .iov_len = sizeof(m)};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	struct cmsghdr *cm;
	long long deadline;
	int ret = -ETIMEDOUT, err = 0;

	if (ctx->fd_link < 0) {
		close(fd);
		return -ENOTCONN;
	}
	if (!mon_fdlink_name_ok(name)) {
		close(fd);
		return -EINVAL;
	}
	m.name_len = (uint32_t)strlen(name);
	memcpy(m.name, name, m.name_len);
	memset(ctl.buf, 0, sizeof(ctl.buf));
	cm = CMSG_FIRSTHDR(&mh);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &fd, sizeof(int));

	pthread_mutex_lock(&ctx->fd_link_lock);
	m.seq = ++ctx->fd_link_seq;
	deadline = mon_fdlink_now_ms() + ctx->timeout_ms;
	for (;;) {
		struct pollfd p = {.fd = ctx->fd_link, .events = POLLOUT};
		long long left = deadline - mon_fdlink_now_ms();

		if (sendmsg(ctx->fd_link, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) == (ssize_t)sizeof(m))
			break;
		if (errno != EAGAIN && errno != EINTR) {
			ret = -errno;
			goto out;
		}
		if (left <= 0 || poll(&p, 1, (int)left) < 0)
			goto out;
	}
	for (;;) {
		struct pollfd p = {.fd = ctx->fd_link, .events = POLLIN};
		long long left = deadline - mon_fdlink_now_ms();
		int n;

		if (left <= 0)
			break;
		n = poll(&p, 1, (int)left);
		if (n < 0 && errno != EINTR) {
			ret = -errno;
			break;
		}
		if (n <= 0)
			continue;
		n = mon_fdlink_recv(ctx->fd_link, m.seq, &err);
		if (n < 0) {
			ret = n;
			break;
		}
		if (n) {
			ret = err;
			break;
		}
		if (p.revents & (POLLHUP | POLLERR)) {
			ret = -ENOTCONN;
			break;
		}
	}
out:
	pthread_mutex_unlock(&ctx->fd_link_lock);
	close(fd); /* the migrator has its own copy now, or none */
	return ret;
}
