// SPDX-License-Identifier: GPL-2.0-only
/*
 * Descriptor passing (SCM_RIGHTS) over a connected AF_UNIX socket, for the
 * tests only: no cleave process passes descriptors over a socket (children
 * inherit theirs across exec, docs/PROCESSES.md), so the product does not
 * carry it.  test-plane.c hands a child the memfds with it, as a process
 * that did not inherit them would get them.
 *
 * Works on SOCK_SEQPACKET (preferred: a message is all or nothing) and
 * SOCK_STREAM (the rest of a partial read is collected; descriptors ride
 * on the first byte).  Received descriptors are close-on-exec, and on any
 * error every descriptor received so far is closed: a failed receive never
 * leaks a memfd into the process.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "tests/unit/shm/fdpass.h"

/* Control buffer for up to FDPASS_MAX_FDS descriptors, aligned for struct cmsghdr. */
union fdpass_cbuf {
	char buf[CMSG_SPACE(FDPASS_MAX_FDS * sizeof(int))];
	struct cmsghdr align;
};

int fdpass_send(int sock, const void *data, size_t len, const int *fds, unsigned int nr_fds)
{
	union fdpass_cbuf cbuf;
	const char *p = data;
	size_t done = 0;

	if (!len || nr_fds > FDPASS_MAX_FDS || (nr_fds && !fds))
		return -EINVAL;
	memset(&cbuf, 0, sizeof(cbuf));
	while (done < len) {
		struct iovec iov = {.iov_base = (void *)(p + done), .iov_len = len - done};
		struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
		ssize_t n;

		/* the descriptors go with the first byte only */
		if (!done && nr_fds) {
			struct cmsghdr *cm;

			msg.msg_control = cbuf.buf;
			msg.msg_controllen = CMSG_SPACE(nr_fds * sizeof(int));
			cm = CMSG_FIRSTHDR(&msg);
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(nr_fds * sizeof(int));
			memcpy(CMSG_DATA(cm), fds, nr_fds * sizeof(int));
		}
		/* MSG_NOSIGNAL: a dead peer is an error return, not a SIGPIPE */
		n = sendmsg(sock, &msg, MSG_NOSIGNAL);
		if (n < 0) {
			int ret = -errno;

			if (ret == -EINTR)
				continue;
			log_err("sendmsg socket %d (%zu bytes, %u fds): %s", sock, len, nr_fds,
				strerror(-ret));
			return ret;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Stores the descriptors of one SCM_RIGHTS batch; extras are closed. Returns false on extras. */
static bool fdpass_collect(struct msghdr *msg, int *fds, unsigned int nr_fds, unsigned int *got)
{
	bool fit = true;

	for (struct cmsghdr *cm = CMSG_FIRSTHDR(msg); cm; cm = CMSG_NXTHDR(msg, cm)) {
		size_t n;
		int *in = (int *)CMSG_DATA(cm);

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n; i++) {
			int fd;

			memcpy(&fd, &in[i], sizeof(fd));
			if (*got < nr_fds) {
				fds[(*got)++] = fd;
			} else {
				close(fd);
				fit = false;
			}
		}
	}
	return fit;
}

static bool fdpass_is_stream(int sock)
{
	int type = 0;
	socklen_t sl = sizeof(type);

	return getsockopt(sock, SOL_SOCKET, SO_TYPE, &type, &sl) == 0 && type == SOCK_STREAM;
}

int fdpass_recv(int sock, void *data, size_t len, int *fds, unsigned int nr_fds)
{
	union fdpass_cbuf cbuf;
	unsigned int got = 0;
	char *p = data;
	size_t done = 0;
	bool stream;
	int ret;

	if (!len || nr_fds > FDPASS_MAX_FDS || (nr_fds && !fds))
		return -EINVAL;
	for (unsigned int i = 0; i < nr_fds; i++)
		fds[i] = -1;
	stream = fdpass_is_stream(sock);
	while (done < len) {
		struct iovec iov = {.iov_base = p + done, .iov_len = len - done};
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = cbuf.buf,
			.msg_controllen = sizeof(cbuf.buf),
		};
		ssize_t n;

		n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
		if (n < 0) {
			ret = -errno;
			if (ret == -EINTR)
				continue;
			log_err("recvmsg socket %d: %s", sock, strerror(-ret));
			goto err_close;
		}
		/* collect first: whatever arrived must be closed on the error paths below */
		if (!fdpass_collect(&msg, fds, nr_fds, &got) || (msg.msg_flags & MSG_CTRUNC)) {
			log_err("recvmsg socket %d: more than %u descriptors", sock, nr_fds);
			ret = -EBADMSG;
			goto err_close;
		}
		if (n == 0) {
			ret = done ? -EBADMSG : -ECONNRESET;
			if (done)
				log_err("recvmsg socket %d: peer closed after %zu of %zu bytes",
					sock, done, len);
			goto err_close;
		}
		done += (size_t)n;
		if (msg.msg_flags & MSG_TRUNC || (!stream && done < len)) {
			log_err("recvmsg socket %d: message of %s bytes, expected %zu", sock,
				msg.msg_flags & MSG_TRUNC ? "more" : "fewer", len);
			ret = -EBADMSG;
			goto err_close;
		}
	}
	if (got < nr_fds) {
		log_err("recvmsg socket %d: %u descriptors, expected %u", sock, got, nr_fds);
		ret = -ENOMSG;
		goto err_close;
	}
	return 0;

err_close:
	for (unsigned int i = 0; i < got; i++) {
		close(fds[i]);
		fds[i] = -1;
	}
	return ret;
}
