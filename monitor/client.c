// SPDX-License-Identifier: GPL-2.0-only
/*
 * One QMP client's session: its socket, framer, output buffer, negotiation
 * state and the order of its commands (see server-internal.h).
 *
 * Per-client order: while a client's in-band command is with a worker
 * (busy), its further input stays in its framer; the next command starts
 * only after the reply is queued, so pipelined commands are answered in
 * order.  A client that enabled 'oob' is still read while busy, and its
 * in-band messages wait in its queue, in order.  exec-oob runs at once,
 * busy or not: on the loop, or for a command with a backend as a job of
 * its own at the front of that backend's queue (mon_worker_submit_front()),
 * which does not make the client busy and whose answer does not end a busy
 * spell; MON_OOB_MAX of them at most.  An exec-oob reply may overtake the
 * in-band one the client waits for, as QEMU's do.  A client is closed at
 * the end of its input (or after quit) only once all its jobs answered;
 * one that disconnects drops their answers (jobs find it by (fd, id)).
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/server-internal.h"

struct mon_client *mon_client_lookup(struct mon_server *s, int fd, uint64_t id)
{
	struct mon_client *c;

	if (fd < 0 || (size_t)fd >= s->by_fd_cap)
		return NULL;
	c = s->by_fd[fd];
	return c && c->id == id ? c : NULL;
}

static void mon_ready_add(struct mon_server *s, struct mon_client *c, bool read);

/* Appends a copy of @f to @c's in-band queue, which has room (the caller checked). */
static int mon_inband_push(struct mon_client *c, const struct mon_frame *f)
{
	size_t len = f->kind == MON_FRAME_VALUE ? f->len : 0;
	struct mon_inband *m = malloc(sizeof(*m) + len);

	if (!m)
		return -ENOMEM;
	m->error = f->kind == MON_FRAME_ERROR ? f->error : NULL;
	m->len = len;
	if (len)
		memcpy(m->data, f->data, len);
	c->inband[(c->inband_head + c->inband_nr) % MON_INBAND_MAX] = m;
	c->inband_nr++;
	c->inband_bytes += len;
	return 0;
}

/* Takes the oldest message of @c's non-empty in-band queue; the caller frees it. */
static struct mon_inband *mon_inband_pop(struct mon_client *c)
{
	struct mon_inband *m = c->inband[c->inband_head];

	c->inband[c->inband_head] = NULL;
	c->inband_head = (c->inband_head + 1) % MON_INBAND_MAX;
	c->inband_nr--;
	c->inband_bytes -= m->len;
	return m;
}

static void mon_client_tls_step(struct mon_server *s, struct mon_client *c);

static void mon_client_watch(struct mon_server *s, struct mon_client *c)
{
	struct epoll_event ev = {.data.u64 = MON_EP(MON_EP_CLIENT, c->fd)};
	uint32_t want = 0;

	if (c->tls_handshaking) {
		/* Only GnuTLS reads or writes until the peer is authorized. */
		want = c->tls_want_write ? EPOLLOUT : EPOLLIN;
	} else {
		/* Stop reading at EOF, once closing, and while a busy client has plenty queued. */
		if (!c->eof && !c->closing &&
		    !(c->busy && mon_framer_pending(&c->in) > MON_IN_HIGH))
			want |= EPOLLIN;
		if (c->out_len > c->out_off)
			want |= EPOLLOUT;
	}
	/* Input GnuTLS already took off the socket wakes no epoll: read it next turn. */
	if ((want & EPOLLIN) && c->tls && !c->tls_handshaking && !c->read_queued &&
	    (c->tls_eof || mon_tls_session_pending(c->tls))) {
		c->read_queued = true;
		mon_ready_add(s, c, true);
	}
	if (want == c->ep_events)
		return;
	ev.events = want;
	if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev))
		log_warn("epoll_ctl MOD client %llu: %s", (unsigned long long)c->id,
			 strerror(errno));
	else
		c->ep_events = want;
}

/* Frees everything of @c: nothing of it can reach another client. */
void mon_client_close(struct mon_server *s, struct mon_client *c, const char *why)
{
	log_debug("client %llu closed: %s", (unsigned long long)c->id, why);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	s->by_fd[c->fd] = NULL;
	if (c->tls && !c->tls_handshaking)
		mon_tls_session_bye(c->tls);
	mon_tls_session_free(c->tls);
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nr_clients--;
	s->in_held -= c->in_counted;
	if (s->operator_client == c) {
		s->operator_client = NULL;
		s->refuse_warned = false;
	}
	mon_client_fds_fini(c);
	mon_framer_fini(&c->in);
	while (c->inband_nr)
		free(mon_inband_pop(c));
	free(c->quit_id);
	json_decref(c->quit_ret);
	free(c->out);
	free(c);
}

bool mon_client_close_if_done(struct mon_server *s, struct mon_client *c)
{
	if (!c->closing || c->quit_asked || c->busy || c->oob_out || c->out_len != c->out_off)
		return false;
	mon_client_close(s, c, "quit");
	return true;
}

void mon_client_shut(struct mon_server *s, struct mon_client *c)
{
	c->closing = true;
	if (!mon_client_close_if_done(s, c))
		mon_client_watch(s, c);
}

/* send() on the socket or through the client's TLS session. */
static ssize_t mon_client_write(struct mon_client *c, const char *buf, size_t len)
{
	if (c->tls)
		return mon_tls_session_send(c->tls, buf, len);
	return send(c->fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/*
 * recvmsg() on a plaintext socket: a unix socket's client may pass fds
 * with its input (SCM_RIGHTS, for getfd).  Room for one; the kernel drops
 * what does not fit (MSG_CTRUNC), client-fds.c closes any extra.
 */
static ssize_t mon_client_recv(struct mon_client *c, char *buf, size_t len)
{
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr mh = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = ctl.buf,
		.msg_controllen = sizeof(ctl.buf),
	};
	ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);

	if (n >= 0 && mh.msg_controllen)
		mon_client_fds_received(c, &mh);
	return n;
}

/*
 * recv() on the socket or through the client's TLS session.  TLS hands
 * over one record (16 KiB at most) per call: take as many as fit, as one
 * recv() would.  An end found behind data is kept for the next call.
 */
static ssize_t mon_client_read(struct mon_client *c, char *buf, size_t len)
{
	size_t got = 0;
	ssize_t n;

	if (!c->tls)
		return mon_client_recv(c, buf, len);
	if (c->tls_eof)
		return 0;
	while (got < len) {
		n = mon_tls_session_recv(c->tls, buf + got, len - got);
		if (n > 0) {
			got += (size_t)n;
			continue;
		}
		if (!got)
			return n;
		/* A broken stream drops what came before it; an end waits its turn. */
		if (n < 0 && errno != EAGAIN)
			return -1;
		c->tls_eof = n == 0;
		break;
	}
	return (ssize_t)got;
}

/* Writes what the socket takes now.  Returns 0 or the write error. */
static int mon_client_flush(struct mon_client *c)
{
	ssize_t n;

	/* Nothing goes out before the TLS peer is authorized (and nothing is queued). */
	if (c->tls_handshaking)
		return 0;
	while (c->out_off < c->out_len) {
		n = mon_client_write(c, c->out + c->out_off, c->out_len - c->out_off);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -errno;
		}
		c->out_off += (size_t)n;
	}
	c->out_off = c->out_len = 0;
	if (c->out_cap > MON_READ_SIZE) {
		/* Give back what a burst made us allocate. */
		free(c->out);
		c->out = NULL;
		c->out_cap = 0;
	}
	return 0;
}

/* Queues @len bytes to @c.  -ENOBUFS past the limit, or the write error. */
int mon_client_send(struct mon_server *s, struct mon_client *c, const char *data, size_t len)
{
	size_t queued = c->out_len - c->out_off;
	int ret;

	if (queued + len > s->out_limit)
		return -ENOBUFS;
	if (c->out_off && c->out_len + len > c->out_cap) {
		memmove(c->out, c->out + c->out_off, queued);
		c->out_off = 0;
		c->out_len = queued;
	}
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap : 4096;
		char *out;

		while (cap < c->out_len + len)
			cap *= 2;
		out = realloc(c->out, cap);
		if (!out)
			return -ENOMEM;
		c->out = out;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	ret = mon_client_flush(c);
	if (ret)
		return ret;
	mon_client_watch(s, c);
	return 0;
}

int mon_client_reply(struct mon_server *s, struct mon_client *c, const char *id,
		     const struct mon_result *res)
{
	size_t len;
	char *line = mon_reply_format_text(id, res, &len);
	int ret;

	if (!line)
		return -ENOMEM;
	ret = mon_client_send(s, c, line, len);
	free(line);
	return ret;
}

/* Runs one checked request: inline, or handed to its backend's worker. */
static int mon_client_exec(struct mon_server *s, struct mon_client *c, struct mon_request *req)
{
	struct mon_result res = {0};
	struct mon_job *job;
	int ret;

	if (req->cmd->flags & MON_CMD_FDS) {
		mon_client_fd_cmd(c, req, &res);
		ret = mon_client_reply(s, c, req->id_text, &res);
		mon_result_fini(&res);
		return ret;
	}
	if (req->cmd->known && req->cmd->known(&s->ctx, req->args, &res)) {
		ret = mon_client_reply(s, c, req->id_text, &res);
		mon_result_fini(&res);
		return ret;
	}
	if (req->cmd->backend != MON_BACKEND_NONE) {
		if (req->oob && c->oob_out >= MON_OOB_MAX) {
			mon_result_error(&res, NULL,
					 "Too many out-of-band commands in flight (at most %d): "
					 "wait for a reply",
					 MON_OOB_MAX);
			ret = mon_client_reply(s, c, req->id_text, &res);
			mon_result_fini(&res);
			return ret;
		}
		job = mon_job_alloc();
		if (!job)
			return -ENOMEM;
		if ((req->cmd->flags & MON_CMD_FD_URI) && mon_client_fd_uri(s, c, req, job, &res)) {
			mon_job_free(job);
			ret = mon_client_reply(s, c, req->id_text, &res);
			mon_result_fini(&res);
			return ret;
		}
		job->client_id = c->id;
		job->client_fd = c->fd;
		job->id = req->id_text;
		req->id_text = NULL;
		job->args = req->args;
		job->run = req->cmd->run;
		job->name = req->cmd->name;
		memcpy(job->await_marks, s->events_seen, sizeof(job->await_marks));
		req->args = NULL;
		if (req->oob) {
			/* Beside the client's in-band command, ahead of the queued ones. */
			job->oob = true;
			c->oob_out++;
			mon_worker_submit_front(&s->workers[req->cmd->backend], job);
			return 0;
		}
		c->busy = true;
		mon_worker_submit(&s->workers[req->cmd->backend], job);
		return 0;
	}
	req->cmd->run(&s->ctx, req->args, &res);
	if (!res.err_class && (req->cmd->flags & MON_CMD_QUIT)) {
		/*
		 * QEMU's order: SHUTDOWN, then this reply, then every client
		 * closes.  The reply keeps the command's own value: {} for quit,
		 * "" for HMP's.
		 */
		c->quit_ret = res.ret;
		res.ret = NULL;
		mon_result_fini(&res);
		c->quit_asked = true;
		c->quit_id = req->id_text;
		req->id_text = NULL;
		c->closing = true;
		s->quit_pending = true;
		return 0;
	}
	if (!res.err_class && (req->cmd->flags & MON_CMD_CAPABILITIES)) {
		c->negotiated = true;
		c->oob = mon_capabilities_oob(req->args);
		c->handshake_deadline_ms = 0;
	}
	ret = mon_client_reply(s, c, req->id_text, &res);
	mon_result_fini(&res);
	return ret;
}

/* Handles one frame of input.  Returns 0 or an error that closes @c. */
static int mon_client_handle(struct mon_server *s, struct mon_client *c, const struct mon_frame *f)
{
	struct mon_result res = {0};
	struct mon_request req;
	int ret;

	if (f->kind == MON_FRAME_ERROR) {
		mon_result_error(&res, NULL, "%s", f->error);
		return mon_client_reply(s, c, NULL, &res);
	}
	if (mon_request_parse_oob(f->data, f->len, c->negotiated, c->oob, &req, &res)) {
		ret = mon_client_reply(s, c, req.id_text, &res);
		mon_request_fini(&req);
		mon_result_fini(&res);
		return ret;
	}
	ret = mon_client_exec(s, c, &req);
	mon_request_fini(&req);
	return ret;
}

/* Runs the oldest in-band message @c read while it was busy. */
static int mon_client_run_inband(struct mon_server *s, struct mon_client *c)
{
	struct mon_inband *m = mon_inband_pop(c);
	struct mon_frame f = {
		.kind = m->error ? MON_FRAME_ERROR : MON_FRAME_VALUE,
		.data = m->data,
		.len = m->len,
		.error = m->error,
	};
	int ret = mon_client_handle(s, c, &f);

	free(m);
	return ret;
}

/*
 * A message read while @c is busy, with 'oob' on: exec-oob runs now (on
 * the loop, or as a job beside the busy one: @c stays busy with the same
 * command); anything else, errors included, waits its turn as in QEMU.
 */
static int mon_client_take_busy(struct mon_server *s, struct mon_client *c,
				const struct mon_frame *f)
{
	if (f->kind == MON_FRAME_VALUE && mon_request_is_oob(f->data, f->len))
		return mon_client_handle(s, c, f);
	return mon_inband_push(c, f);
}

static void mon_deadline_note(struct mon_server *s, int64_t deadline_ms)
{
	if (!s->next_deadline_ms || deadline_ms < s->next_deadline_ms)
		s->next_deadline_ms = deadline_ms;
}

/*
 * What an input buffer of @cap bytes counts against the input limit:
 * nothing up to MON_IN_FREE (a command fits, so a full limit never keeps
 * a client from negotiating or sending one), in full beyond.
 */
static size_t mon_in_counted(size_t cap)
{
	return cap > MON_IN_FREE ? cap : 0;
}

/* Keeps s->in_held equal to the sum of what the clients' input buffers and queues count. */
static void mon_client_in_account(struct mon_server *s, struct mon_client *c)
{
	size_t counted = mon_in_counted(c->in.cap + c->inband_bytes);

	s->in_held = s->in_held - c->in_counted + counted;
	c->in_counted = counted;
	if (s->in_held <= s->in_limit / 2)
		s->in_warned = false;
}

/*
 * After input was run: an empty framer gives its buffer back; bytes left
 * while the client is not busy are an unfinished message, which starts the
 * partial-message clock (a busy client's pending input is its pipeline).
 */
static void mon_client_input_update(struct mon_server *s, struct mon_client *c)
{
	mon_framer_trim(&c->in);
	mon_client_in_account(s, c);
	if (!mon_framer_pending(&c->in)) {
		c->partial_deadline_ms = 0;
	} else if (!c->busy && !c->partial_deadline_ms && s->partial_ms > 0) {
		c->partial_deadline_ms = mon_now_ms() + s->partial_ms;
		mon_deadline_note(s, c->partial_deadline_ms);
	}
}

/*
 * Ends @c's session on a limit: one QMP error line (best effort: the
 * socket may be full), then close.  Input still queued is read and dropped
 * first, so that over TCP the close is a FIN and the line is not lost to a
 * reset.
 */
static void mon_client_fail(struct mon_server *s, struct mon_client *c, const char *desc)
{
	struct mon_result res = {0};
	char buf[4096];
	int i;

	log_debug("client %llu: %s", (unsigned long long)c->id, desc);
	if (c->tls_handshaking) {
		/* No QMP line into a TLS handshake: the client would read garbage. */
		mon_client_close(s, c, desc);
		return;
	}
	mon_result_error(&res, NULL, "%s", desc);
	mon_client_reply(s, c, NULL, &res);
	mon_result_fini(&res);
	if (c->tls)
		mon_tls_session_bye(c->tls);
	shutdown(c->fd, SHUT_WR);
	for (i = 0; i < 64 && recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT) > 0; i++)
		;
	mon_client_close(s, c, desc);
}

void mon_client_refuse(int fd, bool tls, const char *desc)
{
	struct mon_result res = {0};
	size_t len;
	char *line;

	if (tls) {
		/* A line would need a handshake, which the refused client does not get. */
		close(fd);
		return;
	}
	mon_result_error(&res, NULL, "%s", desc);
	line = mon_reply_format_text(NULL, &res, &len);
	mon_result_fini(&res);
	/* A fresh socket's buffer takes one line; if not, the client left. */
	if (line && send(fd, line, len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		log_debug("refusing a client: send: %s", strerror(errno));
	free(line);
	shutdown(fd, SHUT_WR);
	close(fd);
}

void mon_client_deadlines(struct mon_server *s, int64_t now_ms)
{
	struct mon_client *c, *next;
	char desc[160];
	int64_t first = 0;

	for (c = s->clients; c; c = next) {
		next = c->next;
		if (c->closing)
			continue;
		if (c->handshake_deadline_ms && now_ms >= c->handshake_deadline_ms) {
			snprintf(
				desc, sizeof(desc),
				c->tls_handshaking
					? "TLS handshake timeout: not completed within %d ms "
					  "(qmp-handshake-timeout)"
					: "QMP handshake timeout: no qmp_capabilities within %d ms "
					  "(qmp-handshake-timeout)",
				s->handshake_ms);
			mon_client_fail(s, c, desc);
			continue;
		}
		if (c->partial_deadline_ms && !c->busy && now_ms >= c->partial_deadline_ms) {
			snprintf(desc, sizeof(desc),
				 "QMP message unfinished for %d ms (qmp-partial-timeout)",
				 s->partial_ms);
			mon_client_fail(s, c, desc);
			continue;
		}
		if (c->handshake_deadline_ms && (!first || c->handshake_deadline_ms < first))
			first = c->handshake_deadline_ms;
		if (c->partial_deadline_ms && (!first || c->partial_deadline_ms < first))
			first = c->partial_deadline_ms;
	}
	/*
	 * Deadlines a few ms apart are swept together: a thousand clients
	 * accepted in one burst cost a few sweeps, not a thousand.
	 */
	if (first && first < now_ms + MON_SWEEP_SLACK_MS)
		first = now_ms + MON_SWEEP_SLACK_MS;
	s->next_deadline_ms = first;
}

static void mon_ready_add(struct mon_server *s, struct mon_client *c, bool read)
{
	if (s->nr_ready == s->ready_cap) {
		size_t cap = s->ready_cap ? s->ready_cap * 2 : 64;
		struct mon_ready *r = realloc(s->ready, cap * sizeof(*r));

		if (!r)
			return; /* it runs again on its next input instead */
		s->ready = r;
		s->ready_cap = cap;
	}
	s->ready[s->nr_ready++] = (struct mon_ready){.fd = c->fd, .id = c->id, .read = read};
}

/*
 * The next message of @c to run or queue: a queued in-band one once @c is
 * not busy, else from the framer unless @c must wait (busy without 'oob',
 * or its queue full).  Returns 0 and runs it, 1 when there is none, or an
 * error that closes @c.
 */
static int mon_client_step(struct mon_server *s, struct mon_client *c)
{
	struct mon_frame f;

	if (!c->busy && c->inband_nr)
		return mon_client_run_inband(s, c);
	if (c->busy && (!c->oob || c->inband_nr == MON_INBAND_MAX))
		return 1;
	mon_framer_next(&c->in, &f);
	if (f.kind == MON_FRAME_NONE)
		return 1;
	/* A message came out whole: what follows is a new one. */
	c->partial_deadline_ms = 0;
	return c->busy ? mon_client_take_busy(s, c, &f) : mon_client_handle(s, c, &f);
}

/*
 * Runs @c's buffered input until it has to wait, is out of complete
 * messages, or its batch is used up.  Closes @c on error; @c must not be
 * used after.
 */
void mon_client_run(struct mon_server *s, struct mon_client *c)
{
	int n, ret;

	for (n = 0; !c->closing; n++) {
		if (n == MON_BATCH) {
			/* Fairness: the others get a turn first. */
			mon_ready_add(s, c, false);
			break;
		}
		ret = mon_client_step(s, c);
		if (ret < 0) {
			mon_client_close(s, c, strerror(-ret));
			return;
		}
		if (ret > 0) {
			/* Nothing queued then (it runs first): all was answered. */
			if (!c->busy && !c->oob_out && c->eof && c->out_len == c->out_off) {
				mon_client_close(s, c, "end of input");
				return;
			}
			break;
		}
	}
	if (mon_client_close_if_done(s, c))
		return;
	mon_client_fds_settle(c);
	mon_client_input_update(s, c);
	mon_client_watch(s, c);
}

void mon_client_readable(struct mon_server *s, struct mon_client *c)
{
	char buf[MON_READ_SIZE];
	ssize_t n;

	n = mon_client_read(c, buf, sizeof(buf));
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		mon_client_close(s, c, strerror(errno));
		return;
	}
	if (n == 0) {
		c->eof = true;
	} else {
		size_t need =
			mon_in_counted(mon_framer_cap_after(&c->in, (size_t)n) + c->inband_bytes);

		if (s->in_held - c->in_counted + need > s->in_limit) {
			char desc[160];

			snprintf(desc, sizeof(desc),
				 "QMP input limit reached: %zu bytes held for all clients' "
				 "unfinished messages (qmp-input-limit)",
				 s->in_limit);
			/* Once per episode: a flood must not flood the log too. */
			if (!s->in_warned)
				log_warn("%s: closing the clients that need more", desc);
			s->in_warned = true;
			mon_client_fail(s, c, desc);
			return;
		}
		if (mon_framer_push(&c->in, buf, (size_t)n)) {
			mon_client_close(s, c, "out of memory");
			return;
		}
		mon_client_in_account(s, c);
	}
	mon_client_run(s, c);
}

void mon_client_event(struct mon_server *s, int fd, uint32_t events)
{
	struct mon_client *c = (size_t)fd < s->by_fd_cap ? s->by_fd[fd] : NULL;
	int ret;

	if (!c)
		return;
	if (events & (EPOLLERR | EPOLLHUP)) {
		/* Gone both ways (close or reset): nothing can reach it any more. */
		mon_client_close(s, c, "hang-up");
		return;
	}
	if (c->tls_handshaking) {
		mon_client_tls_step(s, c);
		return;
	}
	if (events & EPOLLOUT) {
		ret = mon_client_flush(c);
		if (ret) {
			mon_client_close(s, c, strerror(-ret));
			return;
		}
		if (mon_client_close_if_done(s, c))
			return;
		if (c->eof && !c->busy && !c->oob_out && c->out_len == c->out_off) {
			mon_client_run(s, c);
			return;
		}
		mon_client_watch(s, c);
	}
	if (events & EPOLLIN)
		mon_client_readable(s, c);
}

/*
 * A refusal is logged as a warning for the 1st, 2nd, 4th, 8th... (a flood
 * of bad clients must not flood the log), at debug level otherwise.
 */
static void mon_client_tls_refused(struct mon_server *s, struct mon_client *c, const char *why)
{
	uint64_t n = ++s->tls_refused;

	if (!(n & (n - 1)))
		log_warn("QMP client %llu refused: %s (%llu refused so far)",
			 (unsigned long long)c->id, why, (unsigned long long)n);
	else
		log_debug("QMP client %llu refused: %s", (unsigned long long)c->id, why);
}

/*
 * One step of @c's TLS handshake.  Once the peer is authorized it gets its
 * greeting, and only then is anything it sends read as QMP.
 */
static void mon_client_tls_step(struct mon_server *s, struct mon_client *c)
{
	char err[384];
	int ret;

	ret = mon_tls_session_handshake(c->tls, &c->tls_want_write, err, sizeof(err));
	if (ret == -EAGAIN) {
		mon_client_watch(s, c);
		return;
	}
	if (ret) {
		if (ret == -EACCES)
			mon_client_tls_refused(s, c, err);
		mon_client_close(s, c, err);
		return;
	}
	c->tls_handshaking = false;
	log_debug("client %llu: TLS peer '%s' authorized", (unsigned long long)c->id,
		  mon_tls_session_peer(c->tls));
	ret = mon_client_send(s, c, s->greeting, s->greeting_len);
	if (ret)
		mon_client_close(s, c, strerror(-ret));
}

static int mon_by_fd_reserve(struct mon_server *s, int fd)
{
	size_t cap = s->by_fd_cap ? s->by_fd_cap : 1024;
	struct mon_client **t;

	if ((size_t)fd < s->by_fd_cap)
		return 0;
	while (cap <= (size_t)fd)
		cap *= 2;
	t = realloc(s->by_fd, cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	memset(t + s->by_fd_cap, 0, (cap - s->by_fd_cap) * sizeof(*t));
	s->by_fd = t;
	s->by_fd_cap = cap;
	return 0;
}

/*
 * The client limit (docs/QMP.md, "Limits"): max_clients ordinary slots,
 * then the operator's slot.  That one is kept for a client that
 * negotiates: while its holder has not, the newest connection takes it
 * over, so connections that never talk cannot keep the operator out.
 * Returns 0 (an ordinary slot), 1 (the operator's slot) or -1 (refused
 * with an error line, @fd closed).
 */
static int mon_client_admit(struct mon_server *s, int fd, bool tls)
{
	size_t others = s->nr_clients - (s->operator_client ? 1 : 0);
	struct mon_client *holder = s->operator_client;
	char desc[160];

	if (others < s->max_clients)
		return 0;
	if (holder && holder->negotiated) {
		snprintf(desc, sizeof(desc),
			 "too many QMP clients: all %zu (qmp-max-clients) and the operator's "
			 "slot are taken",
			 s->max_clients);
		if (!s->refuse_warned)
			log_warn("%s; refusing clients", desc);
		s->refuse_warned = true;
		mon_client_refuse(fd, tls, desc);
		return -1;
	}
	if (holder) {
		snprintf(desc, sizeof(desc),
			 "the operator's slot went to a newer client: all %zu others are taken "
			 "(qmp-max-clients) and this one sent no qmp_capabilities",
			 s->max_clients);
		mon_client_fail(s, holder, desc);
	} else {
		log_warn("all %zu QMP client slots taken (qmp-max-clients): a new client gets "
			 "the operator's slot",
			 s->max_clients);
	}
	return 1;
}

void mon_client_accepted(struct mon_server *s, int fd, bool tls)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = MON_EP(MON_EP_CLIENT, fd)};
	struct mon_client *c;
	int one = 1, ret, slot;

	slot = mon_client_admit(s, fd, tls);
	if (slot < 0)
		return;
	/* Fails with EOPNOTSUPP on unix sockets, which is fine. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c || mon_by_fd_reserve(s, fd))
		goto err_close;
	if (tls && mon_tls_session_alloc(&c->tls, s->tls, fd)) {
		log_warn("client: TLS session: out of memory");
		goto err_close;
	}
	c->tls_handshaking = tls;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		log_warn("epoll_ctl ADD client: %s", strerror(errno));
		goto err_close;
	}
	c->id = ++s->next_id;
	c->fd = fd;
	c->pending_fd = -1;
	c->ep_events = EPOLLIN;
	if (slot == 1)
		s->operator_client = c;
	if (s->handshake_ms > 0) {
		c->handshake_deadline_ms = mon_now_ms() + s->handshake_ms;
		mon_deadline_note(s, c->handshake_deadline_ms);
	}
	mon_framer_init(&c->in);
	s->by_fd[fd] = c;
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->nr_clients++;
	if (tls)
		return; /* the greeting follows the handshake (mon_client_tls_step) */
	/* Each client's greeting goes into its own, empty buffer. */
	ret = mon_client_send(s, c, s->greeting, s->greeting_len);
	if (ret)
		mon_client_close(s, c, strerror(-ret));
	return;

err_close:
	if (c)
		mon_tls_session_free(c->tls);
	free(c);
	close(fd);
}
