// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP server event loop: listeners, clients, completions and events.
 *
 * Only the loop thread touches clients.  Workers and the event subscriber
 * hand results over through queues with eventfds; a completion finds its
 * client by (fd, id) and is dropped when the client is gone, so no pointer
 * to a client ever leaves this thread.
 *
 * Per-client order: while a client's command is with a worker (busy), its
 * further input stays in its framer; the next command starts only after the
 * reply is queued, so pipelined commands are answered in order.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/events.h"
#include "monitor/qmp-framer.h"
#include "monitor/server.h"
#include "monitor/worker.h"
#include "proto/rpc.h"

#define MON_BATCH	    32	       /* messages one client may run per loop turn */
#define MON_READ_SIZE	    65536      /* bytes read per readiness event */
#define MON_IN_HIGH	    (2u << 20) /* input buffered while busy before we stop reading */
#define MON_ACCEPT_PAUSE_MS 100	       /* after EMFILE: retry accepting this much later */
#define MON_EPOLL_BATCH	    256

enum mon_ep_kind {
	MON_EP_LISTEN,
	MON_EP_CLIENT,
	MON_EP_DONE,
	MON_EP_EVENTS,
	MON_EP_STOP,
};

#define MON_EP(kind, fd) (((uint64_t)(kind) << 32) | (uint32_t)(fd))

struct mon_client {
	uint64_t id;			/* unique for the server's life */
	int fd;				/* owned */
	struct mon_client *prev, *next; /* all clients, for event fan-out */
	struct mon_framer in;		/* input not yet run */
	char *out;			/* bytes queued to the socket; owned */
	size_t out_off;			/* first unsent byte */
	size_t out_len;			/* end of queued bytes */
	size_t out_cap;
	uint32_t ep_events; /* what epoll watches now */
	bool negotiated;    /* qmp_capabilities done: commands and events */
	bool busy;	    /* a command is with a worker */
	bool eof;	    /* the peer will send nothing more */
};

/* A client that has more complete input than its batch allowed. */
struct mon_ready {
	int fd;
	uint64_t id;
};

struct mon_server {
	int epfd;
	int *listen_fds;
	size_t nr_listen;
	bool accept_paused;
	bool accept_warned; /* out of fds was logged; cleared by the next accept */
	int64_t accept_resume_ms;
	struct mon_client **by_fd; /* client by socket fd, for completions */
	size_t by_fd_cap;
	struct mon_client *clients; /* list head */
	size_t nr_clients;
	uint64_t next_id;
	struct mon_ready *ready; /* clients to run again next turn */
	size_t nr_ready, ready_cap;
	struct mon_ctx ctx;
	struct mon_done done;
	struct mon_worker workers[MON_BACKEND_NR];
	struct mon_events events;
	size_t out_limit;
	int stop_fd;
	bool quit_pending; /* a quit was answered: SHUTDOWN + vcpu QUIT next */
	bool quit_sent;	   /* SHUTDOWN for quit went out: drop vcpu-proc's copy */
	char *greeting;
	size_t greeting_len;
};

static int64_t mon_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- clients -------------------------------------------------------------- */

static struct mon_client *mon_client_lookup(struct mon_server *s, int fd, uint64_t id)
{
	struct mon_client *c;

	if (fd < 0 || (size_t)fd >= s->by_fd_cap)
		return NULL;
	c = s->by_fd[fd];
	return c && c->id == id ? c : NULL;
}

static void mon_client_watch(struct mon_server *s, struct mon_client *c)
{
	struct epoll_event ev = {.data.u64 = MON_EP(MON_EP_CLIENT, c->fd)};
	uint32_t want = 0;

	/* Stop reading at EOF, and while a busy client has plenty queued. */
	if (!c->eof && !(c->busy && mon_framer_pending(&c->in) > MON_IN_HIGH))
		want |= EPOLLIN;
	if (c->out_len > c->out_off)
		want |= EPOLLOUT;
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
static void mon_client_close(struct mon_server *s, struct mon_client *c, const char *why)
{
	log_debug("client %llu closed: %s", (unsigned long long)c->id, why);
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	s->by_fd[c->fd] = NULL;
	close(c->fd);
	if (c->prev)
		c->prev->next = c->next;
	else
		s->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	s->nr_clients--;
	mon_framer_fini(&c->in);
	free(c->out);
	free(c);
}

/* Writes what the socket takes now.  Returns 0 or the write error. */
static int mon_client_flush(struct mon_client *c)
{
	ssize_t n;

	while (c->out_off < c->out_len) {
		n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
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
static int mon_client_send(struct mon_server *s, struct mon_client *c, const char *data, size_t len)
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

static int mon_client_reply(struct mon_server *s, struct mon_client *c, json_t *id,
			    const struct mon_result *res)
{
	size_t len;
	char *line = mon_reply_format(id, res, &len);
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

	if (req->cmd->backend != MON_BACKEND_NONE) {
		job = mon_job_alloc();
		if (!job)
			return -ENOMEM;
		job->client_id = c->id;
		job->client_fd = c->fd;
		job->id = req->id;
		job->args = req->args;
		job->run = req->cmd->run;
		job->name = req->cmd->name;
		req->id = req->args = NULL;
		c->busy = true;
		mon_worker_submit(&s->workers[req->cmd->backend], job);
		return 0;
	}
	req->cmd->run(&s->ctx, req->args, &res);
	if (!res.err_class && (req->cmd->flags & MON_CMD_CAPABILITIES))
		c->negotiated = true;
	ret = mon_client_reply(s, c, req->id, &res);
	mon_result_fini(&res);
	if (!ret && (req->cmd->flags & MON_CMD_QUIT))
		s->quit_pending = true;
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
	if (mon_request_parse(f->data, f->len, c->negotiated, &req, &res)) {
		ret = mon_client_reply(s, c, req.id, &res);
		mon_request_fini(&req);
		mon_result_fini(&res);
		return ret;
	}
	ret = mon_client_exec(s, c, &req);
	mon_request_fini(&req);
	return ret;
}

static void mon_ready_add(struct mon_server *s, struct mon_client *c)
{
	if (s->nr_ready == s->ready_cap) {
		size_t cap = s->ready_cap ? s->ready_cap * 2 : 64;
		struct mon_ready *r = realloc(s->ready, cap * sizeof(*r));

		if (!r)
			return; /* it runs again on its next input instead */
		s->ready = r;
		s->ready_cap = cap;
	}
	s->ready[s->nr_ready++] = (struct mon_ready){.fd = c->fd, .id = c->id};
}

/*
 * Runs @c's buffered input until it is busy, out of complete messages, or
 * its batch is used up.  Closes @c on error; @c must not be used after.
 */
static void mon_client_run(struct mon_server *s, struct mon_client *c)
{
	struct mon_frame f;
	int n, ret;

	for (n = 0; !c->busy; n++) {
		if (n == MON_BATCH) {
			/* Fairness: the others get a turn first. */
			mon_ready_add(s, c);
			break;
		}
		mon_framer_next(&c->in, &f);
		if (f.kind == MON_FRAME_NONE) {
			if (c->eof && c->out_len == c->out_off) {
				mon_client_close(s, c, "end of input");
				return;
			}
			break;
		}
		ret = mon_client_handle(s, c, &f);
		if (ret) {
			mon_client_close(s, c, strerror(-ret));
			return;
		}
	}
	mon_client_watch(s, c);
}

static void mon_client_readable(struct mon_server *s, struct mon_client *c)
{
	char buf[MON_READ_SIZE];
	ssize_t n;

	n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;
		mon_client_close(s, c, strerror(errno));
		return;
	}
	if (n == 0) {
		c->eof = true;
	} else if (mon_framer_push(&c->in, buf, (size_t)n)) {
		mon_client_close(s, c, "out of memory");
		return;
	}
	mon_client_run(s, c);
}

static void mon_client_event(struct mon_server *s, int fd, uint32_t events)
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
	if (events & EPOLLOUT) {
		ret = mon_client_flush(c);
		if (ret) {
			mon_client_close(s, c, strerror(-ret));
			return;
		}
		if (c->eof && !c->busy && c->out_len == c->out_off) {
			mon_client_run(s, c);
			return;
		}
		mon_client_watch(s, c);
	}
	if (events & EPOLLIN)
		mon_client_readable(s, c);
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

static void mon_client_accepted(struct mon_server *s, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = MON_EP(MON_EP_CLIENT, fd)};
	struct mon_client *c;
	int one = 1, ret;

	/* Fails with EOPNOTSUPP on unix sockets, which is fine. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c = calloc(1, sizeof(*c));
	if (!c || mon_by_fd_reserve(s, fd))
		goto err_close;
	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev)) {
		log_warn("epoll_ctl ADD client: %s", strerror(errno));
		goto err_close;
	}
	c->id = ++s->next_id;
	c->fd = fd;
	c->ep_events = EPOLLIN;
	mon_framer_init(&c->in);
	s->by_fd[fd] = c;
	c->next = s->clients;
	if (s->clients)
		s->clients->prev = c;
	s->clients = c;
	s->nr_clients++;
	/* Each client's greeting goes into its own, empty buffer. */
	ret = mon_client_send(s, c, s->greeting, s->greeting_len);
	if (ret)
		mon_client_close(s, c, strerror(-ret));
	return;

err_close:
	free(c);
	close(fd);
}

static void mon_listen_pause(struct mon_server *s, bool pause)
{
	struct epoll_event ev = {.events = EPOLLIN};
	size_t i;

	for (i = 0; i < s->nr_listen; i++) {
		ev.data.u64 = MON_EP(MON_EP_LISTEN, s->listen_fds[i]);
		epoll_ctl(s->epfd, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, s->listen_fds[i], &ev);
	}
	s->accept_paused = pause;
	s->accept_resume_ms = mon_now_ms() + MON_ACCEPT_PAUSE_MS;
}

static void mon_listen_event(struct mon_server *s, int lfd)
{
	int i, fd;

	for (i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (s->accept_warned)
				log_info("accepting again (%zu clients)", s->nr_clients);
			s->accept_warned = false;
			mon_client_accepted(s, fd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
			/* Once per episode: retries come every MON_ACCEPT_PAUSE_MS. */
			if (!s->accept_warned)
				log_warn("accept4: %s (%zu clients); pausing accepts",
					 strerror(errno), s->nr_clients);
			s->accept_warned = true;
			mon_listen_pause(s, true);
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			log_warn("accept4: %s", strerror(errno));
		}
		return;
	}
}

/* ---- completions and events -------------------------------------------------- */

static void mon_done_event(struct mon_server *s)
{
	struct mon_job *job = mon_done_take(&s->done), *next;
	struct mon_client *c;
	int ret;

	for (; job; job = next) {
		next = job->next;
		if (!job->client_id) {
			if (job->res.err_class)
				log_warn("%s: %s", job->name, job->res.err_desc);
			mon_job_free(job);
			continue;
		}
		c = mon_client_lookup(s, job->client_fd, job->client_id);
		if (!c) {
			/* The client left while its command ran: drop the answer. */
			mon_job_free(job);
			continue;
		}
		c->busy = false;
		ret = mon_client_reply(s, c, job->id, &job->res);
		mon_job_free(job);
		if (ret) {
			mon_client_close(s, c, strerror(-ret));
			continue;
		}
		mon_client_run(s, c);
	}
}

static void mon_broadcast(struct mon_server *s, const struct mon_event *ev)
{
	struct mon_client *c, *next;
	int ret;

	for (c = s->clients; c; c = next) {
		next = c->next;
		if (!c->negotiated)
			continue;
		ret = mon_client_send(s, c, ev->line, ev->len);
		if (ret)
			mon_client_close(s, c, strerror(-ret));
	}
}

static void mon_events_event(struct mon_server *s)
{
	struct mon_event *ev = mon_events_take(&s->events), *next;

	for (; ev; ev = next) {
		next = ev->next;
		if (ev->migration && !atomic_load(&s->ctx.migration_events))
			log_debug("%s dropped: 'events' capability is off", ev->name);
		else if (ev->quit_shutdown && s->quit_sent)
			log_debug("SHUTDOWN of vcpu-proc dropped: sent for quit already");
		else
			mon_broadcast(s, ev);
		mon_event_free(ev);
	}
}

static void mon_submit_internal(struct mon_server *s, enum mon_backend b, const char *name,
				void (*run)(struct mon_ctx *, json_t *, struct mon_result *))
{
	struct mon_job *job = mon_job_alloc();

	if (!job)
		return;
	job->run = run;
	job->name = name;
	mon_worker_submit(&s->workers[b], job);
}

static void mon_quit(struct mon_server *s)
{
	struct mon_event *ev;

	s->quit_pending = false;
	if (!s->quit_sent) {
		ev = mon_event_make("SHUTDOWN",
				    json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit"));
		if (ev)
			mon_broadcast(s, ev);
		mon_event_free(ev);
		s->quit_sent = true;
	}
	log_info("quit requested over QMP: asking vcpu-proc to quit");
	mon_submit_internal(s, MON_BACKEND_VCPU, "vcpu-proc QUIT", mon_cmd_vcpu_quit);
}

/* ---- the loop ------------------------------------------------------------------ */

static void mon_ready_run(struct mon_server *s)
{
	struct mon_ready *list = s->ready;
	size_t i, n = s->nr_ready;
	struct mon_client *c;

	/* Detach the list: clients may re-add themselves while we walk it. */
	s->ready = NULL;
	s->nr_ready = s->ready_cap = 0;
	for (i = 0; i < n; i++) {
		c = mon_client_lookup(s, list[i].fd, list[i].id);
		if (c)
			mon_client_run(s, c);
	}
	free(list);
}

int mon_server_run(struct mon_server *s)
{
	struct epoll_event evs[MON_EPOLL_BATCH];
	int i, n, timeout;

	for (;;) {
		timeout = -1;
		if (s->nr_ready)
			timeout = 0;
		else if (s->accept_paused)
			timeout = MON_ACCEPT_PAUSE_MS;
		n = epoll_wait(s->epfd, evs, MON_EPOLL_BATCH, timeout);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			log_err("epoll_wait: %s", strerror(errno));
			return -errno;
		}
		for (i = 0; i < n; i++) {
			int fd = (int)(uint32_t)evs[i].data.u64;

			switch ((enum mon_ep_kind)(evs[i].data.u64 >> 32)) {
			case MON_EP_LISTEN:
				mon_listen_event(s, fd);
				break;
			case MON_EP_CLIENT:
				mon_client_event(s, fd, evs[i].events);
				break;
			case MON_EP_DONE:
				mon_done_event(s);
				break;
			case MON_EP_EVENTS:
				mon_events_event(s);
				break;
			case MON_EP_STOP:
				log_debug("stopping on signal");
				return 0;
			}
		}
		mon_ready_run(s);
		if (s->quit_pending)
			mon_quit(s);
		if (s->accept_paused && mon_now_ms() >= s->accept_resume_ms)
			mon_listen_pause(s, false);
	}
}

/* ---- setup --------------------------------------------------------------------- */

static int mon_epoll_add(struct mon_server *s, enum mon_ep_kind kind, int fd)
{
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = MON_EP(kind, fd)};

	if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev))
		return -errno;
	return 0;
}

static int mon_greeting_build(struct mon_server *s)
{
	json_t *g =
		json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[]}}", "QMP", "version", "qemu", "micro",
			  0, "minor", 2, "major", 7, "package", "cleave 0.1.0", "capabilities");

	if (!g)
		return -ENOMEM;
	s->greeting = mon_json_format(g, &s->greeting_len);
	json_decref(g);
	return s->greeting ? 0 : -ENOMEM;
}

int mon_server_alloc(struct mon_server **out, const struct mon_config *cfg)
{
	static const char *const worker_names[MON_BACKEND_NR] = {NULL, "vcpu", "migrator"};
	const char *event_urls[2] = {cfg->vcpu_events, cfg->migrator_events};
	const char *rpc_urls[MON_BACKEND_NR] = {NULL, cfg->vcpu_rpc, cfg->migrator_rpc};
	struct mon_server *s;
	size_t i;
	int ret;

	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->stop_fd = cfg->stop_fd;
	s->out_limit = cfg->out_limit ? cfg->out_limit : MON_OUT_LIMIT_DEFAULT;
	s->ctx.name = cfg->name;
	s->ctx.timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : RPC_DEFAULT_TIMEOUT;
	atomic_init(&s->ctx.migration_events, false);
	s->listen_fds = calloc(cfg->nr_listen_fds ? cfg->nr_listen_fds : 1, sizeof(int));
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->done.efd = -1;
	s->events.efd = -1;
	if (!s->listen_fds || s->epfd < 0) {
		ret = s->epfd < 0 ? -errno : -ENOMEM;
		goto err;
	}
	/* Ownership of the listeners passes to us now, success or not. */
	memcpy(s->listen_fds, cfg->listen_fds, cfg->nr_listen_fds * sizeof(int));
	s->nr_listen = cfg->nr_listen_fds;
	ret = mon_greeting_build(s);
	if (ret)
		goto err;
	for (i = 0; i < s->nr_listen; i++) {
		ret = mon_epoll_add(s, MON_EP_LISTEN, s->listen_fds[i]);
		if (ret) {
			log_err("epoll_ctl ADD listener fd %d: %s", s->listen_fds[i],
				strerror(-ret));
			goto err;
		}
	}
	if (s->stop_fd >= 0 && (ret = mon_epoll_add(s, MON_EP_STOP, s->stop_fd)))
		goto err;
	for (i = MON_BACKEND_NONE + 1; i < MON_BACKEND_NR; i++) {
		if (!rpc_urls[i])
			continue;
		ret = rpc_client_open(&s->ctx.rpc[i], rpc_urls[i]);
		if (ret) {
			log_err("rpc_client_open %s: %s", rpc_urls[i], strerror(-ret));
			goto err;
		}
	}
	ret = mon_done_init(&s->done);
	if (ret || (ret = mon_epoll_add(s, MON_EP_DONE, s->done.efd)))
		goto err;
	for (i = MON_BACKEND_NONE + 1; i < MON_BACKEND_NR; i++) {
		ret = mon_worker_start(&s->workers[i], worker_names[i], &s->ctx, &s->done);
		if (ret)
			goto err;
	}
	ret = mon_events_start(&s->events, event_urls, 2);
	if (ret || (ret = mon_epoll_add(s, MON_EP_EVENTS, s->events.efd)))
		goto err;
	/* Learn the 'events' capability a previous monitor may have set. */
	if (s->ctx.rpc[MON_BACKEND_MIGRATOR])
		mon_submit_internal(s, MON_BACKEND_MIGRATOR, "query-migrate-capabilities",
				    mon_cmd_migration_caps_refresh);
	*out = s;
	return 0;

err:
	mon_server_free(s);
	return ret;
}

void mon_server_free(struct mon_server *s)
{
	size_t i;

	if (!s)
		return;
	/* Threads first: nothing may push into queues we are about to free. */
	mon_events_stop(&s->events);
	for (i = 0; i < MON_BACKEND_NR; i++)
		mon_worker_stop(&s->workers[i]);
	while (s->clients)
		mon_client_close(s, s->clients, "server stopping");
	mon_done_fini(&s->done);
	for (i = 0; i < MON_BACKEND_NR; i++)
		rpc_client_close(s->ctx.rpc[i]);
	for (i = 0; i < s->nr_listen; i++)
		close(s->listen_fds[i]);
	if (s->epfd >= 0)
		close(s->epfd);
	free(s->listen_fds);
	free(s->by_fd);
	free(s->ready);
	free(s->greeting);
	free(s);
}
