// SPDX-License-Identifier: GPL-2.0-only
#include "monitor/run-state.h"

void mon_run_state_init(struct mon_run_state *rs)
{
	pthread_mutex_init(&rs->lock, NULL);
	rs->known = false;
	rs->state = 0;
	rs->seq = 0;
	rs->generation = 0;
	rs->hits = rs->asks = 0;
}

void mon_run_state_fini(struct mon_run_state *rs)
{
	pthread_mutex_destroy(&rs->lock);
}

void mon_run_state_event(struct mon_run_state *rs, uint32_t state, uint64_t seq)
{
	pthread_mutex_lock(&rs->lock);
	/* Unknown: an event may be older than a change already made (see the header). */
	if (rs->known && seq > rs->seq) {
		rs->state = state;
		rs->seq = seq;
	}
	pthread_mutex_unlock(&rs->lock);
}

uint64_t mon_run_state_mark(struct mon_run_state *rs)
{
	uint64_t mark;

	pthread_mutex_lock(&rs->lock);
	mark = rs->generation;
	pthread_mutex_unlock(&rs->lock);
	return mark;
}

void mon_run_state_status(struct mon_run_state *rs, uint64_t mark, uint32_t state,
			  uint64_t announced_seq)
{
	pthread_mutex_lock(&rs->lock);
	/*
	 * Forgotten while the call was out: the reply may predate what made
	 * us forget.  Known with a newer event: that event is newer than this
	 * reply.  An equal seq takes the reply's state, which may be one whose
	 * event is on its way.
	 */
	if (rs->generation == mark && (!rs->known || announced_seq >= rs->seq)) {
		rs->known = true;
		rs->state = state;
		rs->seq = announced_seq;
	}
	pthread_mutex_unlock(&rs->lock);
}

void mon_run_state_forget(struct mon_run_state *rs)
{
	pthread_mutex_lock(&rs->lock);
	rs->known = false;
	rs->generation++;
	pthread_mutex_unlock(&rs->lock);
}

bool mon_run_state_get(struct mon_run_state *rs, uint32_t *state)
{
	bool known;

	pthread_mutex_lock(&rs->lock);
	known = rs->known;
	*state = rs->state;
	if (known)
		rs->hits++;
	else
		rs->asks++;
	pthread_mutex_unlock(&rs->lock);
	return known;
}
