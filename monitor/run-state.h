/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * vcpu-proc's run state as the monitor knows it without asking, so that
 * query-status costs no round trip (docs/QMP.md, "query-status").  A
 * STATUS reply (a worker) makes it known; vcpu-proc's RunStateChanged
 * events (the events thread) keep it current; query-status (the event
 * loop) reads it.
 *
 * Each value carries the seq of the vcpu publisher's event it is as of; a
 * value older than the one held is never taken, so answers never go back
 * in time.  It is forgotten when events may have been lost, when a
 * migrator event arrives (the migrator changes vcpu-proc's state over RPC,
 * and its own events may overtake vcpu-proc's), and when vcpu-proc does not
 * answer.  Only a STATUS call that started after the forgetting makes it
 * known again.
 */
#ifndef CLEAVE_MONITOR_RUN_STATE_H
#define CLEAVE_MONITOR_RUN_STATE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct mon_run_state {
	pthread_mutex_t lock; /* protects everything below */
	bool known;
	uint32_t state;	     /* a cleave.vcpu.RunState value */
	uint64_t seq;	     /* the vcpu event seq it is as of */
	uint64_t generation; /* +1 at each forget */
	uint64_t hits, asks; /* query-status answered from here / asked vcpu-proc */
};

void mon_run_state_init(struct mon_run_state *rs);
void mon_run_state_fini(struct mon_run_state *rs);
/* A RunStateChanged event with envelope @seq. */
void mon_run_state_event(struct mon_run_state *rs, uint32_t state, uint64_t seq);
/* Taken before a STATUS call, handed to mon_run_state_status() with its reply. */
uint64_t mon_run_state_mark(struct mon_run_state *rs);
/* A STATUS reply: @state, with @announced_seq the last announcement before it. */
void mon_run_state_status(struct mon_run_state *rs, uint64_t mark, uint32_t state,
			  uint64_t announced_seq);
void mon_run_state_forget(struct mon_run_state *rs);
/* The state, if known (counts a hit or an ask). */
bool mon_run_state_get(struct mon_run_state *rs, uint32_t *state);

#endif
