// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migrator's end of the fd link (proto/fd-link.h, docs/SECURITY.md "The
 * fd link"): one thread takes the sockets cleave-monitor hands over for
 * "fd:NAME" URIs and gives them to the session (mig_session_fd_add).  The
 * monitor is a peer, not a master: every message is checked (size, magic,
 * name, exactly one fd, a socket) and anything else is refused with every
 * fd it carried closed.  Each message whose seq can be read is answered;
 * the answer never carries an fd.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/fd-link.h"
#include "proto/fd-link.h"

#define FDLINK_POLL_MS 200 /* how soon the thread sees a stop */
/* Control room for two fds: a second one is seen (and closed), not cut off silently. */
#define FDLINK_CMSG_SPACE CMSG_SPACE(2 * sizeof(int))

struct mig_fdlink {
	int fd; /* not owned: the launcher keeps the socketpair for restarts */
	struct mig_session *s;
	pthread_t thread;
	atomic_bool stop;
};

static void fdlink_close_fds(struct msghdr *mh)
{
	struct cmsghdr *cm;

	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n, i;
		int fd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	}
}

/*
 * The one fd of @mh, or -EBADMSG: none, more than one, another kind of
 * control message, or a cut-off control buffer.  Every fd is closed on
 * error.
 */
static int fdlink_one_fd(struct msghdr *mh)
{
	struct cmsghdr *cm = CMSG_FIRSTHDR(mh);
	int fd;

	if ((mh->msg_flags & MSG_CTRUNC) || !cm || CMSG_NXTHDR(mh, cm) ||
	    cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS ||
	    cm->cmsg_len != CMSG_LEN(sizeof(int))) {
		fdlink_close_fds(mh);
		return -EBADMSG;
	}
	memcpy(&fd, CMSG_DATA(cm), sizeof(int));
	return fd;
}

/* 0 when @m is a well-formed FDLINK_ADD of @len bytes (its fd aside). */
static int fdlink_check(const struct fdlink_msg *m, ssize_t len, const char **why)
{
	if (len != (ssize_t)sizeof(*m)) {
		*why = "wrong size";
		return -EBADMSG;
	}
	if (m->magic != FDLINK_MAGIC || m->type != FDLINK_ADD || m->pad) {
		*why = "bad header";
		return -EBADMSG;
	}
	if (!m->name_len || m->name_len > FDLINK_NAME_MAX) {
		*why = "bad name length";
		return -EINVAL;
	}
	if (memchr(m->name, '\0', m->name_len)) {
		*why = "NUL in the name";
		return -EINVAL;
	}
	for (size_t i = m->name_len; i < sizeof(m->name); i++) {
		if (m->name[i]) {
			*why = "name not NUL-padded";
			return -EINVAL;
		}
	}
	return 0;
}

static void fdlink_answer(struct mig_fdlink *l, uint64_t seq, int err)
{
	struct fdlink_ack ack = {.magic = FDLINK_MAGIC, .err = err, .seq = seq};

	/* A monitor that does not read loses its answers, never blocks us. */
	if (send(l->fd, &ack, sizeof(ack), MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
		log_debug("fd link: answer to %llu: %s", (unsigned long long)seq, strerror(errno));
}

/* Takes one message off the link.  Returns 0, or -1 when the link is gone. */
static int fdlink_step(struct mig_fdlink *l, short revents)
{
	union {
		struct fdlink_msg m;
		char bytes[sizeof(struct fdlink_msg) + 1]; /* a longer message shows */
	} buf;
	union {
		char buf[FDLINK_CMSG_SPACE];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = &buf, .iov_len = sizeof(buf)};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	const char *why = NULL;
	char name[FDLINK_NAME_MAX + 1];
	uint64_t seq = 0;
	struct stat st;
	ssize_t n;
	int fd, ret;

	memset(&buf, 0, sizeof(buf));
	n = recvmsg(l->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	/* An empty message is refused; an end (no peer left: the launcher keeps one) stops. */
	if (n == 0 && !mh.msg_controllen && (revents & POLLHUP))
		return -1;
	if (n >= (ssize_t)(offsetof(struct fdlink_msg, seq) + sizeof(seq)))
		seq = buf.m.seq;
	ret = fdlink_check(&buf.m, (mh.msg_flags & MSG_TRUNC) ? n + 1 : n, &why);
	if (ret) {
		fdlink_close_fds(&mh);
		goto refused;
	}
	fd = fdlink_one_fd(&mh);
	if (fd < 0) {
		ret = fd;
		why = "not exactly one fd";
		goto refused;
	}
	if (fstat(fd, &st) || !S_ISSOCK(st.st_mode)) {
		close(fd);
		ret = -ENOTSOCK;
		why = "not a socket";
		goto refused;
	}
	memcpy(name, buf.m.name, buf.m.name_len);
	name[buf.m.name_len] = '\0';
	ret = mig_session_fd_add(l->s, name, fd); /* owns fd from here */
	if (ret)
		log_warn("fd link: '%s' refused by the session: %s", name, strerror(-ret));
	else
		log_info("fd link: took the socket for 'fd:%s'", name);
	fdlink_answer(l, seq, ret);
	return 0;
refused:
	log_warn("fd link: message %llu refused: %s", (unsigned long long)seq, why);
	fdlink_answer(l, seq, ret);
	return 0;
}

static void *fdlink_thread(void *arg)
{
	struct mig_fdlink *l = arg;
	struct pollfd p = {.fd = l->fd, .events = POLLIN};

	log_set_thread("fd-link");
	while (!atomic_load(&l->stop)) {
		int n = poll(&p, 1, FDLINK_POLL_MS);

		if (n < 0 && errno != EINTR)
			break;
		if (n <= 0)
			continue;
		if (fdlink_step(l, p.revents))
			break;
	}
	return NULL;
}

int mig_fdlink_start(struct mig_fdlink **out, int fd, struct mig_session *s)
{
	struct mig_fdlink *l;
	struct stat st;
	int type, ret;
	socklen_t len = sizeof(type);

	*out = NULL;
	if (fstat(fd, &st) || !S_ISSOCK(st.st_mode) ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_SEQPACKET)
		return -ENOTSOCK;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = fd;
	l->s = s;
	ret = pthread_create(&l->thread, NULL, fdlink_thread, l);
	if (ret) {
		free(l);
		return -ret;
	}
	*out = l;
	return 0;
}

void mig_fdlink_stop(struct mig_fdlink *l)
{
	if (!l)
		return;
	atomic_store(&l->stop, true);
	pthread_join(l->thread, NULL);
	free(l);
}
