/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The stream multiplexer of fd: URIs (mux.h; docs/MIGRATION.md, "fd: URIs").
 *
 * One thread per mux polls the fd, a wake eventfd and the mux's end of every
 * stream's socketpair, all non-blocking (MSG_DONTWAIT: the fd's file status
 * flags, which its giver shares, stay as they are).  Frames:
 *
 *   le32 stream id, le32 length, then length bytes.
 *   stream >= 1, length 1..MIG_MUX_FRAME_MAX: data of that stream.
 *   stream >= 1, length 0: the sender closed that stream.
 *   stream 0: control, length a multiple of 8 up to MIG_MUX_CTL_MAX, entries
 *   {le32 stream; le32 credit}: credit 0 opens the next stream id (from the
 *   connecting side only, ids 1, 2, 3 ... in order), else the receiver of
 *   that stream's data took @credit more bytes out of its window.
 *
 * Flow control per stream: a sender has MIG_MUX_WINDOW bytes of credit and
 * spends it on data; the receiver buffers at most that much (one ring per
 * stream) and grants it back as its engine reads.  A slow stream therefore
 * stops only its own sender, and the mux never holds more than a window
 * per stream, with at most 2 * MIG_MUX_STREAMS streams known at once
 * (MIG_MUX_STREAMS open, as many closing).
 */
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mux.h"

#define MUX_SLOTS (2 * MIG_MUX_STREAMS)
#define MUX_IBUF  (MIG_MUX_FRAME_MAX + MIG_MUX_HDR)
#define MUX_OBUF  (2 * (MIG_MUX_FRAME_MAX + MIG_MUX_HDR))
/* A stream reads from its engine only with this much room in the output buffer. */
#define MUX_PULL_MIN 4096u

_Static_assert((MIG_MUX_WINDOW & (MIG_MUX_WINDOW - 1)) == 0, "ring size");

struct mux_stream {
	uint32_t id;
	int fd;		    /* the mux's end of the socketpair; -1 once closed */
	bool peer_closed;   /* the peer closed it: flush the ring, then close */
	bool close_pending; /* the engine closed it: a CLOSE frame is owed */
	uint32_t tx_credit; /* data bytes the peer still takes */
	uint32_t rx_avail;  /* data bytes the peer may still send */
	uint32_t owed;	    /* drained from the ring, not granted back yet */
	uint8_t *ring;	    /* MIG_MUX_WINDOW bytes from the peer, not delivered yet */
	uint64_t head, tail;
};

struct mig_mux {
	int fd;
	int wake_fd;
	int q[2]; /* accepting side: new streams' engine ends, q[0] -> q[1] */
	bool accept;
	char name[80];
	mig_mux_dead_fn dead;
	void *dead_arg;
	pthread_t thread;
	bool thread_live;

	pthread_mutex_t lock; /* everything below; the thread holds it except in poll() */
	struct mux_stream *st[MUX_SLOTS];
	unsigned int nr;
	uint32_t next_id;   /* the next id to open (connecting) or to be opened (accepting) */
	uint32_t announced; /* connecting side: ids up to this one were opened at the peer */
	bool stop, ending, fd_gone, fd_closed;
	uint64_t end_deadline_ns;
	char reason[256];

	/* Input: a partly received frame header or control frame, or payload to pass on. */
	uint8_t *ibuf;
	size_t ilen;
	uint32_t payload_left;	/* of the current data frame */
	struct mux_stream *cur; /* its stream, NULL: discard (closed here) */
	/* Output: frames not sent yet, from ooff to olen. */
	uint8_t *obuf;
	size_t olen, ooff;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void mux_wake(struct mig_mux *m)
{
	uint64_t one = 1;

	if (write(m->wake_fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("%s: wake: %s", m->name, strerror(errno));
}

static unsigned int open_streams(const struct mig_mux *m)
{
	unsigned int n = 0;

	for (unsigned int i = 0; i < m->nr; i++)
		n += !m->st[i]->peer_closed && !m->st[i]->close_pending;
	return n;
}

static struct mux_stream *stream_find(struct mig_mux *m, uint32_t id)
{
	for (unsigned int i = 0; i < m->nr; i++)
		if (m->st[i]->id == id)
			return m->st[i];
	return NULL;
}

/* A new stream on @fd (the mux's end); NULL without memory. */
static struct mux_stream *stream_add(struct mig_mux *m, uint32_t id, int fd)
{
	struct mux_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->ring = malloc(MIG_MUX_WINDOW);
	if (!s->ring) {
		free(s);
		return NULL;
	}
	s->id = id;
	s->fd = fd;
	s->tx_credit = MIG_MUX_WINDOW;
	s->rx_avail = MIG_MUX_WINDOW;
	m->st[m->nr++] = s;
	return s;
}

static void stream_free(struct mig_mux *m, struct mux_stream *s)
{
	for (unsigned int i = 0; i < m->nr; i++) {
		if (m->st[i] != s)
			continue;
		m->st[i] = m->st[--m->nr];
		m->st[m->nr] = NULL;
		break;
	}
	if (m->cur == s)
		m->cur = NULL;
	if (s->fd >= 0)
		close(s->fd);
	free(s->ring);
	free(s);
}

/* The engine closed its end (or it failed): the peer is told, unless it closed first. */
static void stream_local_closed(struct mig_mux *m, struct mux_stream *s)
{
	if (s->peer_closed) {
		stream_free(m, s);
		return;
	}
	close(s->fd);
	s->fd = -1;
	s->close_pending = true;
	s->head = s->tail = 0;
}

static size_t obuf_room(struct mig_mux *m)
{
	if (m->ooff && m->ooff == m->olen)
		m->ooff = m->olen = 0;
	if (MUX_OBUF - m->olen < MIG_MUX_HDR + MUX_PULL_MIN && m->ooff) {
		memmove(m->obuf, m->obuf + m->ooff, m->olen - m->ooff);
		m->olen -= m->ooff;
		m->ooff = 0;
	}
	return MUX_OBUF - m->olen;
}

static void put_hdr(uint8_t *p, uint32_t id, uint32_t len)
{
	uint32_t le[2] = {htole32(id), htole32(len)};

	memcpy(p, le, sizeof(le));
}

/* Queues a frame without payload (CLOSE) or a one-entry control frame; false: no room. */
static bool queue_small(struct mig_mux *m, uint32_t id, bool ctl, uint32_t ctl_id, uint32_t credit)
{
	size_t need = MIG_MUX_HDR + (ctl ? 8 : 0);

	if (obuf_room(m) < need)
		return false;
	if (ctl) {
		put_hdr(m->obuf + m->olen, MIG_MUX_CTL_STREAM, 8);
		put_hdr(m->obuf + m->olen + MIG_MUX_HDR, ctl_id, credit);
	} else {
		put_hdr(m->obuf + m->olen, id, 0);
	}
	m->olen += need;
	return true;
}

/* Sets the reason once and tells the job; caller holds the lock. */
static void mux_report(struct mig_mux *m, int err, bool tell, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void mux_report(struct mig_mux *m, int err, bool tell, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	if (m->reason[0])
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(m->reason, sizeof(m->reason), "%.60s: %.190s", m->name, msg);
	if (tell) {
		log_err("%s", m->reason);
		if (m->dead)
			m->dead(m->dead_arg, err, m->reason);
	} else {
		log_debug("%s", m->reason);
	}
}

/* No more new streams: the accepting side's queue reads EOF after what it holds. */
static void fd_gone(struct mig_mux *m)
{
	m->fd_gone = true;
	m->olen = m->ooff = 0;
	m->ilen = 0;
	m->payload_left = 0;
	m->cur = NULL;
	if (m->accept)
		shutdown(m->q[0], SHUT_WR);
}

/* The fd ended (@err 0: EOF).  Open streams make it a cut; their data still reaches the engine. */
static void fd_lost(struct mig_mux *m, int err)
{
	unsigned int open = open_streams(m);

	if (open || m->ilen || m->payload_left)
		mux_report(m, -ECONNRESET, true, "the connection %s%s with %u streams open",
			   err ? "failed: " : "was closed by the peer", err ? strerror(-err) : "",
			   open);
	else
		mux_report(m, 0, false, "the peer closed the connection");
	for (unsigned int i = m->nr; i-- > 0;) {
		struct mux_stream *s = m->st[i];

		if (s->close_pending)
			stream_free(m, s);
		else
			s->peer_closed = true;
	}
	fd_gone(m);
}

/* The peer broke the framing: everything ends now, nothing more is read. */
static void mux_broken(struct mig_mux *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void mux_broken(struct mig_mux *m, const char *fmt, ...)
{
	char msg[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mux_report(m, -EPROTO, true, "bad frame from the peer: %s", msg);
	while (m->nr)
		stream_free(m, m->st[0]);
	shutdown(m->fd, SHUT_RDWR);
	fd_gone(m);
}

/* Accepting side: stream @id opened by the peer; false when the mux broke. */
static bool peer_open(struct mig_mux *m, uint32_t id)
{
	char byte = 0;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	struct mux_stream *s;
	int sp[2];

	if (open_streams(m) >= MIG_MUX_STREAMS || m->nr >= MUX_SLOTS) {
		mux_broken(m, "stream %u: more than %u streams", id, MIG_MUX_STREAMS);
		return false;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp)) {
		mux_broken(m, "stream %u: socketpair: %s", id, strerror(errno));
		return false;
	}
	s = stream_add(m, id, sp[0]);
	if (!s) {
		close(sp[0]);
		close(sp[1]);
		mux_broken(m, "stream %u: out of memory", id);
		return false;
	}
	m->next_id = id + 1;
	memset(&cm, 0, sizeof(cm));
	cm.h.cmsg_level = SOL_SOCKET;
	cm.h.cmsg_type = SCM_RIGHTS;
	cm.h.cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(&cm.h), &sp[1], sizeof(int));
	/* Nobody accepts any more (the job ended): the stream is closed at once. */
	if (sendmsg(m->q[0], &mh, MSG_DONTWAIT | MSG_NOSIGNAL) != 1) {
		log_debug("%s: stream %u not accepted: %s", m->name, id, strerror(errno));
		stream_local_closed(m, s);
	}
	close(sp[1]);
	return true;
}

/* One control entry; false when the mux broke. */
static bool ctl_entry(struct mig_mux *m, uint32_t id, uint32_t credit)
{
	struct mux_stream *s;

	if (id == MIG_MUX_CTL_STREAM || id == UINT32_MAX) {
		mux_broken(m, "a control entry for stream %u", id);
		return false;
	}
	if (credit == 0) {
		if (!m->accept || id != m->next_id) {
			mux_broken(m, "stream %u opened out of order (expected %u)", id,
				   m->accept ? m->next_id : 0);
			return false;
		}
		return peer_open(m, id);
	}
	if (id >= m->next_id) {
		mux_broken(m, "window for stream %u, which was never opened", id);
		return false;
	}
	s = stream_find(m, id);
	if (!s || s->close_pending)
		return true; /* closed here meanwhile */
	if (credit > MIG_MUX_WINDOW - s->tx_credit) {
		mux_broken(m, "stream %u: window grows past %u bytes", id, MIG_MUX_WINDOW);
		return false;
	}
	s->tx_credit += credit;
	return true;
}

/* A data or close frame's header; false when the mux broke. */
static bool data_hdr(struct mig_mux *m, uint32_t id, uint32_t len)
{
	struct mux_stream *s;

	if (len > MIG_MUX_FRAME_MAX) {
		mux_broken(m, "stream %u: frame of %u bytes (at most %u)", id, len,
			   MIG_MUX_FRAME_MAX);
		return false;
	}
	if (id >= m->next_id) {
		mux_broken(m, "stream %u was never opened", id);
		return false;
	}
	s = stream_find(m, id);
	if (s && s->peer_closed) {
		mux_broken(m, "stream %u: frame after its close", id);
		return false;
	}
	if (len == 0) {
		if (s && s->close_pending)
			stream_free(m, s); /* both closed it */
		else if (s)
			s->peer_closed = true;
		return true;
	}
	if (s && !s->close_pending) {
		if (len > s->rx_avail) {
			mux_broken(m, "stream %u: %u bytes past its window", id, len - s->rx_avail);
			return false;
		}
		s->rx_avail -= len;
		m->cur = s;
	} else {
		m->cur = NULL; /* closed here: data in flight is dropped */
	}
	m->payload_left = len;
	return true;
}

static void ring_put(struct mux_stream *s, const uint8_t *p, size_t n)
{
	size_t off = (size_t)(s->head & (MIG_MUX_WINDOW - 1));
	size_t first = n < MIG_MUX_WINDOW - off ? n : MIG_MUX_WINDOW - off;

	memcpy(s->ring + off, p, first);
	memcpy(s->ring, p + first, n - first);
	s->head += n;
}

/* Parses what ibuf holds: frames to their streams. */
static void fd_parse(struct mig_mux *m)
{
	size_t off = 0;

	while (!m->fd_gone) {
		size_t avail = m->ilen - off;
		uint32_t id, len;

		if (m->payload_left) {
			size_t n = avail < m->payload_left ? avail : m->payload_left;

			if (!n)
				break;
			if (m->cur)
				ring_put(m->cur, m->ibuf + off, n);
			off += n;
			m->payload_left -= (uint32_t)n;
			continue;
		}
		if (avail < MIG_MUX_HDR)
			break;
		memcpy(&id, m->ibuf + off, 4);
		memcpy(&len, m->ibuf + off + 4, 4);
		id = le32toh(id);
		len = le32toh(len);
		if (id == MIG_MUX_CTL_STREAM) {
			if (!len || len % 8 || len > MIG_MUX_CTL_MAX) {
				mux_broken(m, "control frame of %u bytes", len);
				return;
			}
			if (avail < MIG_MUX_HDR + len)
				break;
			for (uint32_t e = 0; e < len; e += 8) {
				uint32_t eid, credit;

				memcpy(&eid, m->ibuf + off + MIG_MUX_HDR + e, 4);
				memcpy(&credit, m->ibuf + off + MIG_MUX_HDR + e + 4, 4);
				if (!ctl_entry(m, le32toh(eid), le32toh(credit)))
					return;
			}
			off += MIG_MUX_HDR + len;
			continue;
		}
		if (!data_hdr(m, id, len))
			return;
		off += MIG_MUX_HDR;
	}
	if (m->fd_gone)
		return;
	memmove(m->ibuf, m->ibuf + off, m->ilen - off);
	m->ilen -= off;
}

static void fd_pull(struct mig_mux *m)
{
	ssize_t n;

	/* Payload is passed on as it comes; only a header or a control frame waits in ibuf. */
	n = recv(m->fd, m->ibuf + m->ilen, MUX_IBUF - m->ilen, MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return;
	if (n <= 0) {
		fd_lost(m, n ? -errno : 0);
		return;
	}
	m->ilen += (size_t)n;
	fd_parse(m);
}

static void fd_push(struct mig_mux *m)
{
	while (!m->fd_gone && m->ooff < m->olen) {
		ssize_t n = send(m->fd, m->obuf + m->ooff, m->olen - m->ooff,
				 MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			fd_lost(m, errno == EPIPE ? -ECONNRESET : -errno);
			return;
		}
		m->ooff += (size_t)n;
	}
}

/* Engine -> peer: data frames while there is credit and room. */
static void stream_pull(struct mig_mux *m, struct mux_stream *s)
{
	while (!m->fd_gone && s->fd >= 0 && !s->peer_closed && s->tx_credit) {
		size_t room = obuf_room(m), want;
		ssize_t n;

		if (room < MIG_MUX_HDR + 1 ||
		    (room < MIG_MUX_HDR + MUX_PULL_MIN && s->tx_credit > room - MIG_MUX_HDR))
			return;
		want = room - MIG_MUX_HDR;
		want = want < s->tx_credit ? want : s->tx_credit;
		want = want < MIG_MUX_FRAME_MAX ? want : MIG_MUX_FRAME_MAX;
		n = recv(s->fd, m->obuf + m->olen + MIG_MUX_HDR, want, MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* The job ended: what the engine wrote has left; the stream closes. */
			if (m->ending)
				stream_local_closed(m, s);
			return;
		}
		if (n <= 0) {
			stream_local_closed(m, s);
			return;
		}
		put_hdr(m->obuf + m->olen, s->id, (uint32_t)n);
		m->olen += MIG_MUX_HDR + (size_t)n;
		s->tx_credit -= (uint32_t)n;
		if ((size_t)n < want)
			return;
	}
}

/* Peer -> engine: the ring into the socketpair; a closed stream ends once it is empty. */
static void stream_push(struct mig_mux *m, struct mux_stream *s)
{
	while (s->fd >= 0 && s->head != s->tail) {
		size_t off = (size_t)(s->tail & (MIG_MUX_WINDOW - 1));
		size_t used = (size_t)(s->head - s->tail);
		size_t first = used < MIG_MUX_WINDOW - off ? used : MIG_MUX_WINDOW - off;
		struct iovec iov[2] = {{.iov_base = s->ring + off, .iov_len = first},
				       {.iov_base = s->ring, .iov_len = used - first}};
		struct msghdr mh = {.msg_iov = iov, .msg_iovlen = used > first ? 2 : 1};
		ssize_t n = sendmsg(s->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n < 0) {
			stream_local_closed(m, s);
			return;
		}
		s->tail += (uint64_t)n;
		s->owed += (uint32_t)n;
	}
	if (s->peer_closed && s->head == s->tail)
		stream_free(m, s);
}

/* Opens, window grants and closes owed to the peer, as far as the buffer takes them. */
static void queue_control(struct mig_mux *m)
{
	if (m->fd_gone)
		return;
	while (!m->accept && m->announced + 1 < m->next_id)
		if (queue_small(m, 0, true, m->announced + 1, 0))
			m->announced++;
		else
			return;
	for (unsigned int i = m->nr; i-- > 0;) {
		struct mux_stream *s = m->st[i];

		if (s->close_pending && (m->accept || s->id <= m->announced)) {
			if (!queue_small(m, s->id, false, 0, 0))
				return;
			stream_free(m, s);
			continue;
		}
		if (s->owed >= MIG_MUX_WINDOW / 4 && !s->peer_closed) {
			if (!queue_small(m, 0, true, s->id, s->owed))
				return;
			s->rx_avail += s->owed;
			s->owed = 0;
		}
	}
}

static bool stream_wants_pull(struct mig_mux *m, const struct mux_stream *s)
{
	return s->fd >= 0 && !s->peer_closed && s->tx_credit &&
	       (m->accept || s->id <= m->announced) &&
	       MUX_OBUF - m->olen + m->ooff >= MIG_MUX_HDR + MUX_PULL_MIN;
}

static void *mux_thread(void *arg)
{
	struct mig_mux *m = arg;
	struct pollfd pfd[2 + MUX_SLOTS];
	uint32_t ids[MUX_SLOTS];

	log_set_thread("mig/mux");
	pthread_mutex_lock(&m->lock);
	for (;;) {
		unsigned int n = 2, nr;
		int timeout = -1;

		queue_control(m);
		fd_push(m);
		if (m->stop)
			break;
		if (m->ending) {
			uint64_t now = now_ns();

			if (m->nr == 0 && (m->fd_gone || m->ooff == m->olen))
				break;
			if (now >= m->end_deadline_ns) {
				log_warn("%s: %u streams and %zu bytes not sent at the end",
					 m->name, m->nr, m->olen - m->ooff);
				break;
			}
			timeout = (int)((m->end_deadline_ns - now) / 1000000) + 1;
		}
		pfd[0] = (struct pollfd){.fd = m->wake_fd, .events = POLLIN};
		pfd[1] = (struct pollfd){
			.fd = m->fd_gone ? -1 : m->fd,
			.events = (short)(POLLIN | (m->ooff < m->olen ? POLLOUT : 0))};
		for (unsigned int i = 0; i < m->nr; i++) {
			struct mux_stream *s = m->st[i];
			short ev = 0;

			if (stream_wants_pull(m, s))
				ev |= POLLIN;
			if (s->head != s->tail)
				ev |= POLLOUT;
			/* Ending: a stream with nothing to read is closed by its pull. */
			if (m->ending && stream_wants_pull(m, s))
				timeout = 0;
			pfd[n] = (struct pollfd){.fd = ev ? s->fd : -1, .events = ev};
			ids[n - 2] = s->id;
			n++;
		}
		nr = n - 2;
		pthread_mutex_unlock(&m->lock);
		if (poll(pfd, n, timeout) < 0 && errno != EINTR)
			log_warn("%s: poll: %s", m->name, strerror(errno));
		pthread_mutex_lock(&m->lock);
		if (pfd[0].revents) {
			uint64_t v;

			if (read(m->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				log_warn("%s: wake: %s", m->name, strerror(errno));
		}
		/* Streams first: the fd's frames may free streams. */
		for (unsigned int k = 0; k < nr; k++) {
			struct mux_stream *s = stream_find(m, ids[k]);

			if (!s)
				continue;
			if (pfd[k + 2].revents & (POLLOUT | POLLERR))
				stream_push(m, s);
			s = stream_find(m, ids[k]);
			if (s && ((pfd[k + 2].revents & (POLLIN | POLLHUP | POLLERR)) ||
				  (m->ending && stream_wants_pull(m, s))))
				stream_pull(m, s);
		}
		if (!m->fd_gone && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
			fd_pull(m);
		/* New data is passed on at once, not after another poll. */
		for (unsigned int i = m->nr; i-- > 0;)
			if (i < m->nr &&
			    (m->st[i]->head != m->st[i]->tail || m->st[i]->peer_closed))
				stream_push(m, m->st[i]);
	}
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int mig_mux_start(struct mig_mux **out, int fd, bool accept, const char *name, mig_mux_dead_fn dead,
		  void *arg, char *err, size_t errlen)
{
	struct mig_mux *m;
	int type = 0, domain = 0, one = 1, ret;
	socklen_t len = sizeof(type);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_STREAM) {
		snprintf(err, errlen, "%s: not a stream socket", name);
		close(fd);
		return -ENOTSOCK;
	}
	len = sizeof(domain);
	if (!getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) &&
	    (domain == AF_INET || domain == AF_INET6))
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	m = calloc(1, sizeof(*m));
	if (!m) {
		close(fd);
		return -ENOMEM;
	}
	m->fd = fd;
	m->q[0] = m->q[1] = -1;
	m->accept = accept;
	m->dead = dead;
	m->dead_arg = arg;
	m->next_id = 1;
	snprintf(m->name, sizeof(m->name), "%s", name);
	pthread_mutex_init(&m->lock, NULL);
	m->ibuf = malloc(MUX_IBUF);
	m->obuf = malloc(MUX_OBUF);
	m->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	ret = !m->ibuf || !m->obuf ? -ENOMEM : m->wake_fd < 0 ? -errno : 0;
	if (!ret && accept && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, m->q))
		ret = -errno;
	if (!ret)
		ret = -pthread_create(&m->thread, NULL, mux_thread, m);
	if (ret) {
		snprintf(err, errlen, "%s: %s", name, strerror(-ret));
		m->thread_live = false;
		mig_mux_free(m);
		return ret;
	}
	m->thread_live = true;
	*out = m;
	return 0;
}

int mig_mux_open(struct mig_mux *m, int *fdp, char *err, size_t errlen)
{
	int sp[2], ret = 0;

	pthread_mutex_lock(&m->lock);
	if (m->accept)
		ret = -EINVAL;
	else if (m->fd_gone || m->stop || m->ending)
		ret = -ECONNRESET;
	else if (open_streams(m) >= MIG_MUX_STREAMS || m->nr >= MUX_SLOTS ||
		 m->next_id == UINT32_MAX)
		ret = -EMFILE;
	else if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp))
		ret = -errno;
	else if (!stream_add(m, m->next_id, sp[0])) {
		close(sp[0]);
		close(sp[1]);
		ret = -ENOMEM;
	}
	if (!ret)
		m->next_id++;
	if (ret == -ECONNRESET)
		snprintf(err, errlen,
			 "%s: the connection is closed; an fd: migration cannot "
			 "reconnect",
			 m->name);
	else if (ret)
		snprintf(err, errlen, "%s: new stream: %s", m->name, strerror(-ret));
	pthread_mutex_unlock(&m->lock);
	if (ret)
		return ret;
	mux_wake(m);
	*fdp = sp[1];
	return 0;
}

int mig_mux_queue_fd(const struct mig_mux *m)
{
	return m->q[1];
}

int mig_mux_accept(struct mig_mux *m, int flags)
{
	char byte;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	union {
		struct cmsghdr h;
		char buf[CMSG_SPACE(sizeof(int))];
	} cm;
	struct msghdr mh = {.msg_iov = &iov,
			    .msg_iovlen = 1,
			    .msg_control = cm.buf,
			    .msg_controllen = sizeof(cm.buf)};
	struct cmsghdr *c;
	ssize_t n;
	int fd = -1;

	n = recvmsg(m->q[1], &mh, MSG_CMSG_CLOEXEC | ((flags & SOCK_NONBLOCK) ? MSG_DONTWAIT : 0));
	if (n <= 0) {
		if (n == 0)
			errno = ECONNRESET;
		return -1;
	}
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
	    c->cmsg_len == CMSG_LEN(sizeof(int)))
		memcpy(&fd, CMSG_DATA(c), sizeof(int));
	if (fd < 0) {
		errno = EPROTO;
		return -1;
	}
	if ((flags & SOCK_NONBLOCK) && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)) {
		close(fd);
		return -1;
	}
	return fd;
}

static void mux_join(struct mig_mux *m)
{
	if (m->thread_live)
		pthread_join(m->thread, NULL);
	m->thread_live = false;
}

static void mux_close_fd(struct mig_mux *m)
{
	if (m->fd_closed)
		return;
	m->fd_closed = true;
	/* The peer sees the end even if the fd's giver keeps a copy of it. */
	shutdown(m->fd, SHUT_RDWR);
	close(m->fd);
}

void mig_mux_end(struct mig_mux *m, unsigned int timeout_ms)
{
	pthread_mutex_lock(&m->lock);
	if (!m->ending) {
		m->ending = true;
		m->end_deadline_ns = now_ns() + (uint64_t)timeout_ms * 1000000ull;
	}
	pthread_mutex_unlock(&m->lock);
	mux_wake(m);
	mux_join(m);
	pthread_mutex_lock(&m->lock);
	while (m->nr)
		stream_free(m, m->st[0]);
	if (!m->fd_gone)
		fd_gone(m);
	mux_close_fd(m);
	pthread_mutex_unlock(&m->lock);
}

void mig_mux_free(struct mig_mux *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->lock);
	m->stop = true;
	pthread_mutex_unlock(&m->lock);
	if (m->wake_fd >= 0)
		mux_wake(m);
	mux_join(m);
	while (m->nr)
		stream_free(m, m->st[0]);
	mux_close_fd(m);
	if (m->q[0] >= 0)
		close(m->q[0]);
	if (m->q[1] >= 0)
		close(m->q[1]);
	if (m->wake_fd >= 0)
		close(m->wake_fd);
	pthread_mutex_destroy(&m->lock);
	free(m->ibuf);
	free(m->obuf);
	free(m);
}

void mig_mux_reason(struct mig_mux *m, char *buf, size_t len)
{
	pthread_mutex_lock(&m->lock);
	snprintf(buf, len, "%s", m->reason);
	pthread_mutex_unlock(&m->lock);
}
