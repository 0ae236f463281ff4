// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "vcpu-proc/ratelimit.h"

#define NSEC_PER_SEC 1000000000ull

int ratelimit_init(struct ratelimit *rl, unsigned int rate, unsigned int burst)
{
	int ret;

	memset(rl, 0, sizeof(*rl));
	ret = pthread_mutex_init(&rl->lock, NULL);
	if (ret)
		return -ret;
	rl->rate = rate;
	rl->burst = burst ? burst : 1;
	if (rate) {
		rl->interval_ns = NSEC_PER_SEC / rate;
		rl->burst_ns = rl->interval_ns * rl->burst;
		rl->credit_ns = rl->burst_ns; /* a full bucket at start */
	}
	return 0;
}

void ratelimit_fini(struct ratelimit *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

bool ratelimit_take(struct ratelimit *rl, uint64_t now_ns, uint64_t *suppressed)
{
	bool ok = true;

	*suppressed = 0;
	if (!rl->interval_ns) /* immutable after init */
		return true;
	pthread_mutex_lock(&rl->lock);
	/* The first call starts the clock; time never runs backwards here. */
	if (rl->last_ns && now_ns > rl->last_ns) {
		uint64_t gain = now_ns - rl->last_ns;

		rl->credit_ns =
			gain >= rl->burst_ns - rl->credit_ns ? rl->burst_ns : rl->credit_ns + gain;
	}
	if (!rl->last_ns || now_ns > rl->last_ns)
		rl->last_ns = now_ns;
	if (rl->credit_ns >= rl->interval_ns) {
		rl->credit_ns -= rl->interval_ns;
		*suppressed = rl->suppressed;
		rl->suppressed = 0;
	} else {
		rl->suppressed++;
		ok = false;
	}
	pthread_mutex_unlock(&rl->lock);
	return ok;
}

uint64_t ratelimit_drain(struct ratelimit *rl)
{
	uint64_t n;

	pthread_mutex_lock(&rl->lock);
	n = rl->suppressed;
	rl->suppressed = 0;
	pthread_mutex_unlock(&rl->lock);
	return n;
}

static uint64_t ratelimit_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NSEC_PER_SEC + (uint64_t)ts.tv_nsec;
}

static void ratelimit_report(const struct ratelimit *rl, uint64_t n)
{
	log_warn("guest events: %llu not logged (more than %u a second after a burst of %u)",
		 (unsigned long long)n, rl->rate, rl->burst);
}

void ratelimit_log(struct ratelimit *rl, enum log_level level, const char *fmt, ...)
{
	uint64_t suppressed;
	char line[512];
	va_list ap;

	if (level == LOG_DEBUG && !log_verbose())
		return; /* not logged anyway: no token spent */
	if (!ratelimit_take(rl, ratelimit_now(), &suppressed))
		return;
	if (suppressed)
		ratelimit_report(rl, suppressed);
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_msg(level, "%s", line);
}

void ratelimit_log_drain(struct ratelimit *rl)
{
	uint64_t n = ratelimit_drain(rl);

	if (n)
		ratelimit_report(rl, n);
}
