/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Events from vcpu-proc and the migrator (NNG pub/sub, events.proto),
 * turned into QMP events by one subscriber thread and handed to the event
 * loop through a queue and an eventfd.  The loop decides who gets them.
 */
#ifndef CLEAVE_MONITOR_EVENTS_H
#define CLEAVE_MONITOR_EVENTS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "monitor/run-state.h"
#include "proto/events.pb-c.h"

struct mon_event {
	struct mon_event *next; /* queue link; protected by mon_events.lock */
	const char *name;	/* "STOP", "MIGRATION", ...: static */
	bool migration;		/* MIGRATION / MIGRATION_PASS: only with the 'events' capability */
	bool quit_shutdown;	/* SHUTDOWN caused by QMP quit (the monitor sends its own) */
	char *line;		/* the QMP text, CRLF-terminated; owned */
	size_t len;
};

void mon_event_free(struct mon_event *ev);

/*
 * The QMP form of @ev: {"timestamp": {...}, "event": NAME[, "data": {...}]}.
 * Returns NULL for a body the monitor does not know (logged by the caller).
 */
struct mon_event *mon_event_from_proto(const Cleave__Events__Event *ev);
/* The same for an event the monitor raises itself (data may be NULL; stolen). */
struct mon_event *mon_event_make(const char *name, json_t *data);

enum mon_events_state {
	MON_EVENTS_IDLE,
	MON_EVENTS_RUNNING,
};

struct mon_events {
	enum mon_events_state state; /* owner (event loop) only */
	pthread_t thread;
	struct rpc_sub *sub;	/* owned; used by the thread only while it runs */
	atomic_bool stopping;	/* set by stop, read by the thread */
	int efd;		/* eventfd written after each push; owned */
	pthread_mutex_t lock;	/* protects head and tail */
	struct mon_event *head; /* protected by lock */
	struct mon_event **tail;
	/* Kept up to date from vcpu-proc's RunStateChanged (set before start; its own lock). */
	struct mon_run_state *run_state;
	uint64_t vcpu_publisher_id; /* the thread's only; 0 before its first event */
};

/*
 * start/stop pair: subscribes to @urls (NULL entries skipped); stop joins
 * and frees.  @run_state (may be NULL) is kept from vcpu-proc's events.
 */
int mon_events_start(struct mon_events *e, const char *const *urls, size_t nr_urls,
		     struct mon_run_state *run_state);
void mon_events_stop(struct mon_events *e);
/* Takes every queued event (list linked by ->next), clearing the eventfd. */
struct mon_event *mon_events_take(struct mon_events *e);

#endif
