/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The source's page data, from the RAM memfd to a channel socket through a
 * pipe: splice() at an offset puts references to the memfd's pages in the
 * pipe and splice() hands them to the socket, so the sender neither copies
 * nor maps guest RAM.  A mapping would cost the sender a page-table fault
 * on the first touch of every page (its page tables start empty): that was
 * nine tenths of a send thread's time (docs/MIGRATION.md).  A page the guest
 * rewrites after it was queued may go out newer than it was harvested; its
 * dirty bit is set again, so a later round (or the final one, guest
 * paused) sends it again, exactly as when the guest writes during a copy.
 *
 * With user-space TLS the bytes must pass through GnuTLS: mig_pread_runs()
 * copies them into a buffer (one copy, no mapping either).
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

#include "migrator/wire.h"
#include "shm/shm.h"

/* A whole packet's data fits (the kernel rounds to pages; 1 MiB is the unprivileged max). */
#define MIG_PIPE_BYTES (MIG_BATCH_PAGES * SHM_PAGE_SIZE)

int mig_pipe_open(struct mig_pipe *p)
{
	int fds[2], size;

	if (pipe2(fds, O_CLOEXEC))
		return -errno;
	/* Smaller is slower, not wrong: every loop below takes what the pipe holds. */
	(void)fcntl(fds[1], F_SETPIPE_SZ, MIG_PIPE_BYTES);
	size = fcntl(fds[1], F_GETPIPE_SZ);
	p->rd = fds[0];
	p->wr = fds[1];
	p->size = size > 0 ? (size_t)size : SHM_PAGE_SIZE;
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

/*
 * Moves @len bytes of @fd at *@off into the pipe, or fewer; the caller
 * never asks for more than the pipe has room for (a full pipe would block:
 * this thread is its only reader).  Returns the bytes moved.
 */
static ssize_t fill(struct mig_pipe *p, int fd, uint64_t *off, size_t len)
{
	loff_t pos = (loff_t)*off;
	ssize_t n;

	do
		n = splice(fd, &pos, p->wr, NULL, len, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO; /* past the end of a sealed memfd: a bad offset */
	*off = (uint64_t)pos;
	return n;
}

/*
 * A pipe that failed half-way may hold pages of the failed packet: a new
 * one keeps them out of the next.  Without fds left it stays closed and
 * the next call fails with -EBADF.
 */
static int pipe_renew(struct mig_pipe *p, int err)
{
	mig_pipe_close(p);
	(void)mig_pipe_open(p);
	return err;
}

int mig_splice_send(int sock, struct mig_pipe *p, struct iovec *head, int nhead, int fd,
		    const struct mig_run *runs, int nruns)
{
	size_t held = 0;
	int ret;

	ret = mig_io_sendv(sock, head, nhead, nruns ? MSG_MORE : 0);
	if (ret)
		return ret;
	for (int i = 0; i < nruns; i++) {
		uint64_t off = runs[i].off, left = runs[i].len;

		while (left) {
			size_t want = left < p->size - held ? (size_t)left : p->size - held;
			ssize_t n = fill(p, fd, &off, want);

			if (n < 0)
				return pipe_renew(p, (int)n);
			left -= (uint64_t)n;
			held += (size_t)n;
			/* Full, or out of slots (a short fill): to the socket. */
			if (held == p->size || (size_t)n < want) {
				ret = drain(p, sock, held,
					    left || i + 1 < nruns ? SPLICE_F_MORE : 0);
				if (ret)
					return pipe_renew(p, ret);
				held = 0;
			}
		}
	}
	ret = held ? drain(p, sock, held, 0) : 0;
	return ret ? pipe_renew(p, ret) : 0;
}

int mig_pread_runs(int fd, uint8_t *buf, const struct mig_run *runs, int nruns)
{
	for (int i = 0; i < nruns; i++) {
		uint64_t done = 0;

		while (done < runs[i].len) {
			ssize_t n = pread(fd, buf, runs[i].len - done, (off_t)(runs[i].off + done));

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return n < 0 ? -errno : -EIO;
			done += (uint64_t)n;
			buf += n;
		}
	}
	return 0;
}
