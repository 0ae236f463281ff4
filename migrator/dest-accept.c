/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The destination's door: connections that are not (yet) its source.
 *
 * Anyone who can reach the listening port can connect.  A connection is
 * taken as the source's main connection only once its first message is a
 * Hello this job accepts (mig_dst_hello_refusal); until then it is held
 * among at most DST_MAX_PENDING others (the oldest makes room for a
 * newcomer), each with the I/O timeout to say it, read without blocking
 * the rest, into a buffer no bigger than a Hello.  With TLS configured,
 * its handshake comes first, and not one byte of it is parsed before the
 * peer is authenticated and authorized.
 * Garbage, a foreign or malformed Hello, silence and hang-ups end that
 * connection only (with an Error back where the peer speaks the protocol);
 * the job goes on listening.  docs/MIGRATION.md, "Untrusted connections".
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/dest-job.h"
#include "migrator/tls.h"

/* Connections held at once while they have not said Hello. */
#define DST_MAX_PENDING 8
/* A Hello is a few hundred bytes; nothing larger is read from a stranger. */
#define DST_HELLO_MAX 16384

enum pending_state {
	PENDING_MORE,	 /* the Hello is not complete yet */
	PENDING_DROPPED, /* the connection was refused and closed */
	PENDING_HELLO,	 /* an accepted Hello: this is the source */
};

struct dst_pending {
	int fd;
	bool tls;	      /* the handshake is under way (tls_done false) or complete */
	bool tls_done;	      /* the peer is authenticated: its bytes may be parsed */
	short events;	      /* what to poll for: POLLIN, or POLLOUT during the handshake */
	uint64_t deadline_ns; /* the Hello must be complete by then */
	uint32_t got;	      /* bytes of buf read so far */
	char peer[64];	      /* address, for the log */
	uint8_t buf[4 + DST_HELLO_MAX]; /* little-endian length, then the message */
};

static void pending_peer_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";
	unsigned int port = 0;

	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET) {
			const struct sockaddr_in *a = (const void *)&ss;

			inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
			port = ntohs(a->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			const struct sockaddr_in6 *a = (const void *)&ss;

			inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
			port = ntohs(a->sin6_port);
		} else if (ss.ss_family == AF_UNIX) {
			snprintf(host, sizeof(host), "unix"); /* an unbound client has no name */
		}
	}
	snprintf(buf, len, "%s:%u", host, port);
}

/* Ends a connection that is not the source; @reply (or NULL) goes back as an Error. */
static void pending_drop(struct dst_pending *p, const char *why, const char *reply)
{
	log_warn("incoming connection from %s refused: %s", p->peer, why);
	if (reply)
		mig_msg_send_error_nowait(p->fd, reply);
	mig_sock_close(p->fd);
	p->fd = -1;
}

/* One more step of @p's TLS handshake: PENDING_MORE until it is complete. */
static enum pending_state pending_handshake(struct dst_pending *p)
{
	char err[512];
	int ret = mig_tls_step(p->fd, &p->events, err, sizeof(err));

	if (ret == -EAGAIN)
		return PENDING_MORE;
	if (ret) {
		/* Nothing goes back to a peer that did not authenticate: TLS said it all. */
		pending_drop(p, err, NULL);
		return PENDING_DROPPED;
	}
	p->tls_done = true;
	p->events = POLLIN;
	return PENDING_MORE;
}

/* Reads what @p's peer sent; *hellop is set with PENDING_HELLO. */
static enum pending_state pending_read(struct mig_dst *dst, struct dst_pending *p,
				       Cleave__Wire__WireMsg **hellop)
{
	char reason[256];
	Cleave__Wire__WireMsg *m;
	uint32_t len = 0;
	size_t want;
	ssize_t n;

	if (p->tls && !p->tls_done) {
		enum pending_state st = pending_handshake(p);

		if (st != PENDING_MORE || !p->tls_done)
			return st;
	}
	/* Until the socket has no more: TLS may hold decrypted bytes poll() cannot see. */
	for (;;) {
		if (p->got >= 4) {
			memcpy(&len, p->buf, 4);
			len = le32toh(len);
			if (!len || len > DST_HELLO_MAX) {
				pending_drop(p, "not a cleave migration stream", NULL);
				return PENDING_DROPPED;
			}
			if (p->got == 4 + len)
				break;
		}
		want = p->got < 4 ? 4 - p->got : 4 + len - p->got;
		n = p->tls ? mig_tls_recv(p->fd, p->buf + p->got, want)
			   : recv(p->fd, p->buf + p->got, want, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
			pending_drop(p, n == 0 ? "closed before its Hello" : strerror(errno), NULL);
			return PENDING_DROPPED;
		}
		if (n < 0)
			return PENDING_MORE;
		p->got += (uint32_t)n;
	}
	m = cleave__wire__wire_msg__unpack(NULL, len, p->buf + 4);
	if (!m || m->body_case != CLEAVE__WIRE__WIRE_MSG__BODY_HELLO) {
		bool parsed = m != NULL;

		if (m)
			cleave__wire__wire_msg__free_unpacked(m, NULL);
		pending_drop(p,
			     parsed ? "protocol error: expected Hello"
				    : "not a cleave migration stream",
			     parsed ? "protocol error: expected Hello" : NULL);
		return PENDING_DROPPED;
	}
	if (mig_dst_hello_refusal(dst, m->hello, reason, sizeof(reason))) {
		cleave__wire__wire_msg__free_unpacked(m, NULL);
		pending_drop(p, reason, reason);
		return PENDING_DROPPED;
	}
	*hellop = m;
	return PENDING_HELLO;
}

static void pending_free(struct dst_pending **slot);

/*
 * Accepts one connection waiting at the listener.  With every slot taken,
 * the oldest pending connection (it had the longest to say Hello) makes
 * room: strangers that connect and say nothing cannot keep the source out.
 */
static int pending_accept(struct mig_dst *dst, struct dst_pending **slots)
{
	int fd = mig_dst_accept4(dst, SOCK_CLOEXEC | SOCK_NONBLOCK);
	unsigned int i, oldest = 0;
	struct dst_pending *p;

	if (fd < 0) {
		if (mig_job_aborted(&dst->job))
			return -ECANCELED;
		/* The peer may be gone already, or fds may be short: not the job's end. */
		if (errno == EAGAIN || errno == ECONNABORTED || errno == EINTR || errno == EMFILE ||
		    errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			if (errno != EAGAIN && errno != EINTR)
				log_warn("accept: %s", strerror(errno));
			return 0;
		}
		return -errno;
	}
	for (i = 0; i < DST_MAX_PENDING && slots[i]; i++)
		if (slots[i]->deadline_ns < slots[oldest]->deadline_ns)
			oldest = i;
	if (i == DST_MAX_PENDING) {
		pending_drop(slots[oldest], "no Hello yet, and a newer connection needs the room",
			     NULL);
		pending_free(&slots[oldest]);
		i = oldest;
	}
	p = calloc(1, sizeof(*p));
	if (!p) {
		close(fd);
		return 0;
	}
	p->fd = fd;
	p->events = POLLIN;
	p->deadline_ns = mig_now_ns() + (uint64_t)dst->s->io_timeout_ms * 1000000ull;
	pending_peer_name(fd, p->peer, sizeof(p->peer));
	/* With TLS configured, the first bytes must be its handshake. */
	if (dst->s->tls) {
		if (mig_tls_accept_start(dst->s->tls, fd)) {
			close(fd);
			free(p);
			return 0;
		}
		p->tls = true;
	}
	slots[i] = p;
	return 0;
}

static void pending_free(struct dst_pending **slot)
{
	if (!*slot)
		return;
	if ((*slot)->fd >= 0)
		mig_sock_close((*slot)->fd);
	free(*slot);
	*slot = NULL;
}

/* The chosen connection, blocking again, with the I/O deadlines of a channel. */
static int pending_adopt(struct mig_dst *dst, struct dst_pending *p, int *fdp)
{
	int flags = fcntl(p->fd, F_GETFL), ret;

	if (flags < 0 || fcntl(p->fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return -errno;
	ret = mig_sock_setup(p->fd, dst->s->io_timeout_ms);
	if (ret)
		return ret;
	*fdp = p->fd;
	p->fd = -1;
	return 0;
}

int mig_dst_wait_source(struct mig_dst *dst, int wait_ms, int *fdp, Cleave__Wire__WireMsg **hellop)
{
	uint64_t end = wait_ms < 0 ? UINT64_MAX : mig_now_ns() + (uint64_t)wait_ms * 1000000ull;
	struct dst_pending *slots[DST_MAX_PENDING] = {NULL};
	struct pollfd pfd[DST_MAX_PENDING + 1];
	bool chosen = false;
	int ret = 0;

	while (!ret && !chosen) {
		uint64_t now = mig_now_ns(), next = end;
		unsigned int n = 1, map[DST_MAX_PENDING];
		int timeout;

		for (unsigned int i = 0; i < DST_MAX_PENDING; i++) {
			if (!slots[i])
				continue;
			if (now >= slots[i]->deadline_ns) {
				pending_drop(slots[i], "no Hello within the I/O timeout", NULL);
				pending_free(&slots[i]);
				continue;
			}
			next = slots[i]->deadline_ns < next ? slots[i]->deadline_ns : next;
			pfd[n] = (struct pollfd){.fd = slots[i]->fd, .events = slots[i]->events};
			map[n - 1] = i;
			n++;
		}
		if (now >= end) {
			ret = -ETIMEDOUT;
			break;
		}
		mig_dst_take_listener(dst);
		pfd[0] = (struct pollfd){.fd = dst->listen_fd, .events = POLLIN};
		timeout = next == UINT64_MAX ? -1 : (int)((next - now + 999999) / 1000000);
		if (poll(pfd, n, timeout) < 0) {
			ret = errno == EINTR ? 0 : -errno;
			continue;
		}
		if (mig_job_aborted(&dst->job)) {
			ret = -ECANCELED;
			break;
		}
		/* migrate-recover shut the old listener down: poll the new one. */
		if (mig_dst_take_listener(dst))
			continue;
		for (unsigned int k = 1; k < n && !chosen && !ret; k++) {
			struct dst_pending **slot = &slots[map[k - 1]];
			enum pending_state st;

			if (!pfd[k].revents)
				continue;
			st = pending_read(dst, *slot, hellop);
			if (st == PENDING_HELLO) {
				ret = pending_adopt(dst, *slot, fdp);
				if (ret) {
					cleave__wire__wire_msg__free_unpacked(*hellop, NULL);
					*hellop = NULL;
				}
				chosen = !ret;
			}
			if (st != PENDING_MORE)
				pending_free(slot);
		}
		if (!ret && !chosen && (pfd[0].revents & POLLIN))
			ret = pending_accept(dst, slots);
	}
	for (unsigned int i = 0; i < DST_MAX_PENDING; i++)
		pending_free(&slots[i]); /* the source is chosen: the rest were not it */
	return ret;
}
