/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A token bucket for the log lines a guest can cause (ucalls, bad ucalls,
 * unassigned ports, resets): @burst lines at once, then @rate a second.
 * What it refuses is counted and said in one line, so a guest looping on a
 * ucall cannot flood the operator's terminal or log, and the operator still
 * learns how much was left out.
 *
 * Lifetime: ratelimit_init / ratelimit_fini.  All vCPU threads share one.
 */
#ifndef CLEAVE_VCPU_RATELIMIT_H
#define CLEAVE_VCPU_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "log/log.h"

struct ratelimit {
	/* Protects every field below; a leaf: taken with no other lock held. */
	pthread_mutex_t lock;
	uint64_t interval_ns; /* one token per interval; 0: no limit */
	uint64_t burst_ns;    /* bucket size: burst tokens, as time */
	uint64_t credit_ns;   /* tokens in the bucket, as time */
	uint64_t last_ns;     /* when credit_ns was brought up to date */
	uint64_t suppressed;  /* events refused since the last report */
	unsigned int rate, burst;
};

/* @rate events a second after a burst of @burst; @rate 0: every event passes. */
int ratelimit_init(struct ratelimit *rl, unsigned int rate, unsigned int burst);
void ratelimit_fini(struct ratelimit *rl);

/*
 * Whether one more event at @now_ns (CLOCK_MONOTONIC) may be logged.  When
 * it may, *@suppressed is the number refused since the last report (the
 * count starts again), else 0.
 */
bool ratelimit_take(struct ratelimit *rl, uint64_t now_ns, uint64_t *suppressed);
/* Events refused and not reported yet; the count starts again. */
uint64_t ratelimit_drain(struct ratelimit *rl);

/*
 * log_msg() through @rl, now: the line, preceded by one saying how many
 * guest events were not logged when there were; nothing when refused.
 */
void ratelimit_log(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* The count of events not logged, in one line, when there is one (exit). */
void ratelimit_log_drain(struct ratelimit *rl);

#endif
