// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP server event loop: listeners, completions from the backend
 * workers, event fan-out, and setup/teardown.  One client's session is in
 * client.c; the shared structures and the threading rule are in
 * server-internal.h.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/qmp-limits.h"
#include "monitor/server-internal.h"
#include "proto/rpc.h"

int64_t mon_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- clients -------------------------------------------------------------- */
static void mon_listen_pause(struct mon_server *s, bool pause)
{
	struct epoll_event ev = {.events = EPOLLIN};
	size_t i;

	for (i = 0; i < s->nr_listen; i++) {
		ev.data.u64 = MON_EP(s->listen_tls[i] ? MON_EP_LISTEN_TLS : MON_EP_LISTEN,
				     s->listen_fds[i]);
		epoll_ctl(s->epfd, pause ? EPOLL_CTL_DEL : EPOLL_CTL_ADD, s->listen_fds[i], &ev);
	}
	s->accept_paused = pause;
	s->accept_resume_ms = mon_now_ms() + MON_ACCEPT_PAUSE_MS;
}

static void mon_listen_event(struct mon_server *s, int lfd, bool tls)
{
	int i, fd;

	for (i = 0; i < 64; i++) {
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (s->accept_warned)
				log_info("accepting again (%zu clients)", s->nr_clients);
			s->accept_warned = false;
			mon_client_accepted(s, fd, tls);
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

/* Sends a finished job's reply to its client, if it is still there, and frees the job. */
static void mon_job_answer(struct mon_server *s, struct mon_job *job)
{
	struct mon_client *c = mon_client_lookup(s, job->client_fd, job->client_id);
	bool oob = job->oob;
	int ret;

	if (!c) {
		/* The client left while its command ran: drop the answer. */
		mon_job_free(job);
		return;
	}
	if (oob)
		c->oob_out--;
	else
		c->busy = false;
	ret = mon_client_reply(s, c, job->id, &job->res);
	mon_job_free(job);
	if (ret) {
		mon_client_close(s, c, strerror(-ret));
		return;
	}
	if (!oob) {
		mon_client_run(s, c);
		return;
	}
	/*
	 * An exec-oob answer leaves the client's in-band work alone (its busy
	 * command's answer runs what waits); it was only what held a client
	 * that quit or whose input ended.
	 */
	if (mon_client_close_if_done(s, c))
		return;
	if (c->eof && !c->busy && !c->oob_out)
		mon_client_run(s, c);
}

/* Answers the held jobs waiting for @what (all of them: MON_AWAIT_NR), or whose time is up. */
static void mon_held_release(struct mon_server *s, enum mon_await what, int64_t now_ms)
{
	struct mon_job **p = &s->held, *job, *ready = NULL, **tail = &ready;

	while ((job = *p)) {
		if (what == MON_AWAIT_NR || job->res.await_event == what ||
		    now_ms >= job->await_deadline_ms) {
			if (what != job->res.await_event)
				log_debug("%s: answered without its event", job->name);
			*p = job->next;
			job->next = NULL;
			*tail = job;
			tail = &job->next;
		} else {
			p = &job->next;
		}
	}
	/* Detached first: answering runs clients, which may hold new jobs. */
	for (job = ready; job; job = ready) {
		ready = job->next;
		mon_job_answer(s, job);
	}
}

static void mon_done_event(struct mon_server *s)
{
	struct mon_job *job = mon_done_take(&s->done), *next, **tail;
	enum mon_await what;

	for (; job; job = next) {
		next = job->next;
		if (!job->client_id) {
			if (job->res.err_class)
				log_warn("%s: %s", job->name, job->res.err_desc);
			mon_job_free(job);
			continue;
		}
		what = job->res.await_event;
		if (what != MON_AWAIT_NONE && s->events_seen[what] == job->await_marks[what]) {
			/* Its event has not gone out yet: QEMU sends the event first. */
			job->next = NULL;
			job->await_deadline_ms = mon_now_ms() + MON_AWAIT_MS;
			for (tail = &s->held; *tail; tail = &(*tail)->next)
				;
			*tail = job;
			continue;
		}
		mon_job_answer(s, job);
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
	enum mon_await what;

	for (; ev; ev = next) {
		next = ev->next;
		if (ev->migration && !atomic_load(&s->ctx.migration_events))
			log_debug("%s dropped: 'events' capability is off", ev->name);
		else if (ev->quit_shutdown && s->quit_sent)
			log_debug("SHUTDOWN of vcpu-proc dropped: sent for quit already");
		else
			mon_broadcast(s, ev);
		what = !strcmp(ev->name, "STOP")     ? MON_AWAIT_STOP
		       : !strcmp(ev->name, "RESUME") ? MON_AWAIT_RESUME
						     : MON_AWAIT_NONE;
		mon_event_free(ev);
		if (what != MON_AWAIT_NONE) {
			s->events_seen[what]++;
			mon_held_release(s, what, mon_now_ms());
		}
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

/*
 * After a quit, as QEMU 7.2 does: SHUTDOWN to every negotiated client, then
 * the reply to whoever asked, then every client is closed (once its output
 * is flushed); vcpu-proc is asked to QUIT last.  The monitor itself keeps
 * listening until the launcher stops it.
 */
static void mon_quit(struct mon_server *s)
{
	struct mon_client *c, *next;
	struct mon_event *ev;
	int ret;

	s->quit_pending = false;
	if (!s->quit_sent) {
		ev = mon_event_make("SHUTDOWN",
				    json_pack("{s:b,s:s}", "guest", 0, "reason", "host-qmp-quit"));
		if (ev)
			mon_broadcast(s, ev);
		mon_event_free(ev);
		s->quit_sent = true;
	}
	for (c = s->clients; c; c = next) {
		next = c->next;
		if (!c->quit_asked)
			continue;
		struct mon_result ok = {.ret = c->quit_ret};

		c->quit_asked = false;
		ret = mon_client_reply(s, c, c->quit_id, &ok);
		if (ret)
			mon_client_close(s, c, strerror(-ret));
	}
	for (c = s->clients; c; c = next) {
		next = c->next;
		mon_client_shut(s, c);
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
		if (!c)
			continue;
		if (!list[i].read) {
			mon_client_run(s, c);
			continue;
		}
		c->read_queued = false;
		/* Unless it stopped wanting input meanwhile (then its watch queues it again). */
		if (c->ep_events & EPOLLIN)
			mon_client_readable(s, c);
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
		if (s->held) {
			/* The first held job is the oldest: its deadline comes first. */
			int64_t left = s->held->await_deadline_ms - mon_now_ms();

			left = left < 0 ? 0 : left;
			if (timeout < 0 || left < timeout)
				timeout = (int)left;
		}
		if (s->next_deadline_ms) {
			int64_t left = s->next_deadline_ms - mon_now_ms();

			left = left < 0 ? 0 : left;
			if (timeout < 0 || left < timeout)
				timeout = (int)left;
		}
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
			case MON_EP_LISTEN_TLS:
				mon_listen_event(s, fd, evs[i].data.u64 >> 32 == MON_EP_LISTEN_TLS);
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
		if (s->held)
			mon_held_release(s, MON_AWAIT_NONE, mon_now_ms());
		if (s->quit_pending)
			mon_quit(s);
		if (s->accept_paused && mon_now_ms() >= s->accept_resume_ms)
			mon_listen_pause(s, false);
		if (s->next_deadline_ms && mon_now_ms() >= s->next_deadline_ms)
			mon_client_deadlines(s, mon_now_ms());
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
	/* Every client may enable 'oob' (QEMU offers it on monitors with an I/O thread). */
	json_t *g = json_pack("{s:{s:{s:{s:i,s:i,s:i},s:s},s:[s]}}", "QMP", "version", "qemu",
			      "micro", 0, "minor", 2, "major", 7, "package", "cleave 0.1.0",
			      "capabilities", "oob");

	if (!g)
		return -ENOMEM;
	s->greeting = mon_json_format(g, &s->greeting_len);
	json_decref(g);
	return s->greeting ? 0 : -ENOMEM;
}

int mon_server_alloc(struct mon_server **out, const struct mon_config *cfg)
{
	static const char *const worker_names[MON_BACKEND_NR] = {NULL, "vcpu", "migrator"};
	/*
	 * vcpu-proc's calls overlap (query-cpus-fast from many clients); the
	 * migrator's stay one at a time, in the order they came, as QEMU runs
	 * migrate, migrate_cancel and parameter changes.
	 */
	static const unsigned int worker_threads[MON_BACKEND_NR] = {0, 4, 1};
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
	s->max_clients = cfg->max_clients ? cfg->max_clients : MON_MAX_CLIENTS_DEFAULT;
	s->in_limit = cfg->in_limit ? cfg->in_limit : MON_IN_TOTAL_DEFAULT;
	s->handshake_ms = !cfg->handshake_ms	  ? MON_HANDSHAKE_MS_DEFAULT
			  : cfg->handshake_ms < 0 ? 0
						  : cfg->handshake_ms;
	s->partial_ms = !cfg->partial_ms      ? MON_PARTIAL_MS_DEFAULT
			: cfg->partial_ms < 0 ? 0
					      : cfg->partial_ms;
	s->ctx.name = cfg->name;
	s->ctx.qmp_sockets = cfg->qmp_names;
	s->ctx.serial = cfg->serial;
	s->ctx.timeout_ms = cfg->rpc_timeout_ms > 0 ? cfg->rpc_timeout_ms : RPC_DEFAULT_TIMEOUT;
	s->ctx.cancel_retry_ms = MON_CANCEL_RETRY_MS;
	s->ctx.fd_link = cfg->fd_link_fd > 0 ? cfg->fd_link_fd : -1;
	pthread_mutex_init(&s->ctx.fd_link_lock, NULL);
	{
		struct timespec ts;

		/*
		 * A restarted monitor must not take an answer meant for its
		 * predecessor: its seqs start elsewhere.
		 */
		clock_gettime(CLOCK_REALTIME, &ts);
		s->ctx.fd_link_seq = ((uint64_t)ts.tv_sec << 32) ^ (uint64_t)ts.tv_nsec << 8;
	}
	atomic_init(&s->ctx.migration_events, false);
	mon_run_state_init(&s->ctx.run_state);
	s->tls = cfg->tls;
	s->listen_fds = calloc(cfg->nr_listen_fds ? cfg->nr_listen_fds : 1, sizeof(int));
	s->listen_tls = calloc(cfg->nr_listen_fds ? cfg->nr_listen_fds : 1, sizeof(bool));
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->done.efd = -1;
	s->events.efd = -1;
	if (!s->listen_fds || !s->listen_tls || s->epfd < 0) {
		ret = s->epfd < 0 ? -errno : -ENOMEM;
		if (s->listen_fds)
			memcpy(s->listen_fds, cfg->listen_fds, cfg->nr_listen_fds * sizeof(int));
		s->nr_listen = s->listen_fds ? cfg->nr_listen_fds : 0;
		goto err;
	}
	/* Ownership of the listeners passes to us now, success or not. */
	memcpy(s->listen_fds, cfg->listen_fds, cfg->nr_listen_fds * sizeof(int));
	if (cfg->listen_tls)
		memcpy(s->listen_tls, cfg->listen_tls, cfg->nr_listen_fds * sizeof(bool));
	s->nr_listen = cfg->nr_listen_fds;
	for (i = 0; i < s->nr_listen; i++) {
		if (s->listen_tls[i] && !s->tls) {
			log_err("listener fd %d: TLS without credentials", s->listen_fds[i]);
			ret = -EINVAL;
			goto err;
		}
	}
	ret = mon_greeting_build(s);
	if (ret)
		goto err;
	for (i = 0; i < s->nr_listen; i++) {
		ret = mon_epoll_add(s, s->listen_tls[i] ? MON_EP_LISTEN_TLS : MON_EP_LISTEN,
				    s->listen_fds[i]);
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
		ret = mon_worker_start(&s->workers[i], worker_names[i], worker_threads[i], &s->ctx,
				       &s->done);
		if (ret)
			goto err;
	}
	ret = mon_events_start(&s->events, event_urls, 2, &s->ctx.run_state);
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
	while (s->held) {
		struct mon_job *job = s->held;

		s->held = job->next;
		mon_job_free(job);
	}
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
	free(s->listen_tls);
	free(s->by_fd);
	free(s->ready);
	free(s->greeting);
	mon_run_state_fini(&s->ctx.run_state);
	pthread_mutex_destroy(&s->ctx.fd_link_lock);
	free(s);
}
