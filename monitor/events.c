// SPDX-License-Identifier: GPL-2.0-only
/* Event subscriber thread and the proto -> QMP event mapping: see events.h. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/time.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/events.h"
#include "monitor/qmp-dispatch.h"
#include "proto/rpc.h"
#include "proto/utf8.h"

/* How often the subscriber thread looks at the stop flag. */
#define MON_EVENTS_POLL_MS 100

void mon_event_free(struct mon_event *ev)
{
	if (!ev)
		return;
	free(ev->line);
	free(ev);
}

static struct mon_event *mon_event_build(const char *name, json_t *data, uint64_t ts_us)
{
	struct mon_event *ev = calloc(1, sizeof(*ev));
	json_t *obj;

	if (!ev)
		goto err_data;
	obj = json_pack("{s:{s:I,s:I},s:s}", "timestamp", "seconds", (json_int_t)(ts_us / 1000000),
			"microseconds", (json_int_t)(ts_us % 1000000), "event", name);
	if (!obj)
		goto err_ev;
	if (data && json_object_set_new(obj, "data", data)) {
		data = NULL;
		goto err_obj;
	}
	data = NULL;
	ev->line = mon_json_format(obj, &ev->len);
	if (!ev->line)
		goto err_obj;
	json_decref(obj);
	ev->name = name;
	ev->migration = !strcmp(name, "MIGRATION") || !strcmp(name, "MIGRATION_PASS");
	return ev;

err_obj:
	json_decref(obj);
err_ev:
	free(ev);
err_data:
	json_decref(data);
	return NULL;
}

struct mon_event *mon_event_make(const char *name, json_t *data)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return mon_event_build(name, data, (uint64_t)tv.tv_sec * 1000000 + (uint64_t)tv.tv_usec);
}

#define MON_EVENT_TEXT_LEN 256

/*
 * A publisher's string (a reason, a status) as a QMP event can carry it:
 * nothing checked that it is UTF-8, and jansson refuses the whole "data"
 * otherwise.  @dflt for an empty or missing one.
 */
static const char *mon_event_text(char buf[MON_EVENT_TEXT_LEN], const char *s, const char *dflt)
{
	if (!s || !s[0])
		return dflt;
	utf8_copy_valid(buf, MON_EVENT_TEXT_LEN, s);
	return buf;
}

/*
 * {"status"} as QEMU sends it for a status change; a restart, disconnect
 * or resume (status unchanged) adds what happened and the session's totals.
 */
static json_t *mon_migration_data(const Cleave__Events__Migration *m)
{
	char sbuf[MON_EVENT_TEXT_LEN], dbuf[MON_EVENT_TEXT_LEN];
	const char *status = mon_event_text(sbuf, m->status, "none");
	const char *detail = mon_event_text(dbuf, m->detail, NULL);

	if (!detail)
		return json_pack("{s:s}", "status", status);
	return json_pack("{s:s,s:s,s:I,s:I,s:I}", "status", status, "x-cleave-detail", detail,
			 "x-cleave-restarts", (json_int_t)m->restarts, "x-cleave-resumes",
			 (json_int_t)m->resumes, "x-cleave-resent-bytes",
			 (json_int_t)(m->resent_bytes > INT64_MAX ? INT64_MAX : m->resent_bytes));
}

struct mon_event *mon_event_from_proto(const Cleave__Events__Event *ev)
{
	char buf[MON_EVENT_TEXT_LEN];
	const char *reason;
	struct mon_event *out;

	switch (ev->body_case) {
	case CLEAVE__EVENTS__EVENT__BODY_STOP:
		return mon_event_build("STOP", NULL, ev->timestamp_us);
	case CLEAVE__EVENTS__EVENT__BODY_RESUME:
		return mon_event_build("RESUME", NULL, ev->timestamp_us);
	case CLEAVE__EVENTS__EVENT__BODY_RESET:
		reason = mon_event_text(buf, ev->reset->reason, "guest-reset");
		return mon_event_build(
			"RESET",
			json_pack("{s:b,s:s}", "guest", ev->reset->guest, "reason", reason),
			ev->timestamp_us);
	case CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN:
		reason = mon_event_text(buf, ev->shutdown->reason, "guest-shutdown");
		out = mon_event_build(
			"SHUTDOWN",
			json_pack("{s:b,s:s}", "guest", ev->shutdown->guest, "reason", reason),
			ev->timestamp_us);
		if (out)
			out->quit_shutdown = !strcmp(reason, "host-qmp-quit");
		return out;
	case CLEAVE__EVENTS__EVENT__BODY_MIGRATION:
		return mon_event_build("MIGRATION", mon_migration_data(ev->migration),
				       ev->timestamp_us);
	case CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS:
		return mon_event_build(
			"MIGRATION_PASS",
			json_pack("{s:I}", "pass", (json_int_t)ev->migration_pass->pass),
			ev->timestamp_us);
	default:
		return NULL;
	}
}

static void mon_events_push(struct mon_events *e, struct mon_event *ev)
{
	uint64_t one = 1;

	ev->next = NULL;
	pthread_mutex_lock(&e->lock);
	*e->tail = ev;
	e->tail = &ev->next;
	pthread_mutex_unlock(&e->lock);
	if (write(e->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		log_warn("event eventfd write: %s", strerror(errno));
}

struct mon_event *mon_events_take(struct mon_events *e)
{
	struct mon_event *head;
	uint64_t n;

	if (read(e->efd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		log_warn("event eventfd read: %s", strerror(errno));
	pthread_mutex_lock(&e->lock);
	head = e->head;
	e->head = NULL;
	e->tail = &e->head;
	pthread_mutex_unlock(&e->lock);
	return head;
}

/*
 * What @pev means for the run state query-status answers from
 * (monitor/run-state.h).  Returns true when @pev is only that
 * (RunStateChanged), not a QMP event.
 */
static bool mon_events_run_state(struct mon_events *e, const Cleave__Events__Event *pev,
				 uint64_t missed)
{
	bool vcpu = pev->publisher && !strcmp(pev->publisher, "vcpu");

	bool rsc = pev->body_case == CLEAVE__EVENTS__EVENT__BODY_RUN_STATE_CHANGED;

	if (!e->run_state)
		return rsc;
	if (!vcpu) {
		/* The migrator's: it changed vcpu-proc's state, whose own event may come later. */
		mon_run_state_forget(e->run_state);
		return rsc;
	}
	/* Lost events, or a restarted publisher (another id): anything may have changed. */
	if (missed || (e->vcpu_publisher_id && pev->publisher_id != e->vcpu_publisher_id))
		mon_run_state_forget(e->run_state);
	e->vcpu_publisher_id = pev->publisher_id;
	if (rsc && pev->run_state_changed)
		mon_run_state_event(e->run_state, pev->run_state_changed->state, pev->seq);
	return rsc;
}

static void *mon_events_main(void *arg)
{
	struct mon_events *e = arg;
	Cleave__Events__Event *pev;
	struct mon_event *ev;
	uint64_t missed;
	int ret;

	log_set_thread("events");
	while (!atomic_load(&e->stopping)) {
		ret = rpc_sub_recv(e->sub, &pev, &missed, MON_EVENTS_POLL_MS);
		if (ret == -ETIMEDOUT)
			continue;
		if (ret < 0) {
			log_warn("rpc_sub_recv: %s", strerror(-ret));
			usleep(MON_EVENTS_POLL_MS * 1000);
			continue;
		}
		if (missed)
			log_warn("missed %llu events of %s before seq %llu",
				 (unsigned long long)missed, pev->publisher,
				 (unsigned long long)pev->seq);
		if (mon_events_run_state(e, pev, missed)) {
			rpc_msg_free(&pev->base);
			continue;
		}
		ev = mon_event_from_proto(pev);
		if (ev)
			mon_events_push(e, ev);
		else
			log_warn("event of %s with unknown body %d dropped", pev->publisher,
				 (int)pev->body_case);
		rpc_msg_free(&pev->base);
	}
	return NULL;
}

int mon_events_start(struct mon_events *e, const char *const *urls, size_t nr_urls,
		     struct mon_run_state *run_state)
{
	size_t i;
	int ret;

	memset(e, 0, sizeof(*e));
	e->run_state = run_state;
	e->tail = &e->head;
	e->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (e->efd < 0)
		return -errno;
	pthread_mutex_init(&e->lock, NULL);
	ret = rpc_sub_open(&e->sub);
	if (ret) {
		log_err("rpc_sub_open: %s", strerror(-ret));
		goto err_efd;
	}
	for (i = 0; i < nr_urls; i++) {
		if (!urls[i])
			continue;
		ret = rpc_sub_dial(e->sub, urls[i]);
		if (ret) {
			log_err("rpc_sub_dial %s: %s", urls[i], strerror(-ret));
			goto err_sub;
		}
	}
	ret = -pthread_create(&e->thread, NULL, mon_events_main, e);
	if (ret)
		goto err_sub;
	e->state = MON_EVENTS_RUNNING;
	return 0;

err_sub:
	rpc_sub_close(e->sub);
err_efd:
	pthread_mutex_destroy(&e->lock);
	close(e->efd);
	e->efd = -1;
	return ret;
}

void mon_events_stop(struct mon_events *e)
{
	struct mon_event *ev, *next;

	if (e->state != MON_EVENTS_RUNNING)
		return;
	atomic_store(&e->stopping, true);
	pthread_join(e->thread, NULL);
	rpc_sub_close(e->sub);
	for (ev = e->head; ev; ev = next) {
		next = ev->next;
		mon_event_free(ev);
	}
	pthread_mutex_destroy(&e->lock);
	close(e->efd);
	e->efd = -1;
	e->state = MON_EVENTS_IDLE;
}
