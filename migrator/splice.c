/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The source's page data, from guest RAM to a channel socket through a
 * pipe: vmsplice() puts references to the RAM pages in the pipe and
 * splice() hands them to the socket, so the sender copies nothing (a
 * loopback receiver copies straight from the RAM pages).  A page the guest
 * rewrites after it was queued may go out newer than it was harvested; its
 * dirty bit is set again, so a later round (or the final one, guest
 * paused) sends it again, exactly as when the guest writes during a copy.
 *
 * The destination does not splice: socket → pipe → memfd measured half as
 * fast as recvmsg() into a buffer and pwrite() for pages it never had
 * (bench-migrator-loopback), see recv.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrator/tls.h"
#include "migrator/wire.h"
#include "shm/shm.h"

/* A whole packet's data fits (the kernel rounds to pages; 1 MiB is the unprivileged max). */
#define MIG_PIPE_BYTES (MIG_BATCH_PAGES * SHM_PAGE_SIZE)

int mig_pipe_open(struct mig_pipe *p)
{
	int fds[2];

	if (pipe2(fds, O_CLOEXEC))
		return -errno;
	/* Smaller is slower, not wrong: every loop below takes what the pipe holds. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, MIG_PIPE_BYTES);
	p->rd = fds[0];
	p->wr = fds[1];
	return 0;
}

void mig_pipe_close(struct mig_pipe *p)
{
	if (p->rd >= 0)
		close(p->rd);
	if (p->wr >= 0)
		close(p->wr);
	p->rd = p->wr = -1;
}

/*
 * splice() into a socket raises SIGPIPE when the peer is gone (it has no
 * MSG_NOSIGNAL).  The send threads block it; this drops the one raised for
 * this thread, so it is never delivered when the thread's mask changes.
 */
static int broken_pipe(void)
{
	sigset_t set;
	struct timespec zero = {0, 0};

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	while (sigtimedwait(&set, NULL, &zero) == SIGPIPE)
		;
	return -ECONNRESET;
}

static int splice_errno(ssize_t n)
{
	if (n == 0)
		return -ECONNRESET;
	if (errno == EPIPE)
		return broken_pipe();
	if (errno == EAGAIN)
		return -ETIMEDOUT; /* SO_SNDTIMEO expired */
	return -errno;
}

/* Moves @len bytes from the pipe to socket @out. */
static int drain(struct mig_pipe *p, int out, size_t len, unsigned int flags)
{
	while (len) {
		ssize_t n = splice(p->rd, NULL, out, NULL, len, flags);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -EIO : splice_errno(n);
		len -= (size_t)n;
	}
	return 0;
}

int mig_splice_send(int sock, struct mig_pipe *p, struct iovec *head, int nhead, struct iovec *data,
		    int ndata)
{
	int ret, i = 0;

	/* User-space TLS encrypts from the mapping (the one copy), no pipe, one flush. */
	if (mig_tls_on(sock)) {
		struct iovec all[4 + MIG_BATCH_PAGES];

		if (nhead + ndata > (int)(sizeof(all) / sizeof(all[0])))
			return -E2BIG;
		memcpy(all, head, (size_t)nhead * sizeof(*all));
		memcpy(all + nhead, data, (size_t)ndata * sizeof(*all));
		return mig_io_sendv(sock, all, nhead + ndata, 0);
	}
	ret = mig_io_sendv(sock, head, nhead, ndata ? MSG_MORE : 0);

	if (ret)
		return ret;
	while (i < ndata) {
		ssize_t n = vmsplice(p->wr, data + i, (unsigned long)(ndata - i), 0);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n == 0 ? -EIO : -errno;
		i = mig_iov_advance(data, ndata, i, (size_t)n);
		ret = drain(p, sock, (size_t)n, i < ndata ? SPLICE_F_MORE : 0);
		if (ret)
			return ret;
	}
	return 0;
}
