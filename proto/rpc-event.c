/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Event publisher: NNG pub0 carrying events.proto, each event numbered per
 * publisher so that subscribers (rpc-sub.c) see any loss.
 *
 * pub0 never waits: each connection has a queue of at most 8192 messages and
 * a full queue drops its oldest.  A burst outruns NNG's writer thread easily
 * (a send is ~1 us, a write several), so every RPC_PUB_FLOW_EVERY events we
 * read how far each connection's writer lags (NNG's per-pipe tx_msgs) and,
 * past RPC_PUB_FLOW_HIGH, wait for it.  A subscriber that makes no progress
 * for RPC_PUB_FLOW_WAIT_MS is left behind: it loses events, and its `missed`
 * says so; the publisher does not wait for it again until it moves.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>

#include "log/log.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"

#define RPC_PUB_FLOW_EVERY   256
#define RPC_PUB_FLOW_HIGH    4096 /* of RPC_NNG_MAX_QUEUE */
#define RPC_PUB_FLOW_LOW     1024
#define RPC_PUB_FLOW_WAIT_MS 100
#define RPC_PUB_FLOW_PIPES   32 /* connections tracked; more are not waited for */

/* One subscriber connection as the flow control sees it. */
struct rpc_pub_pipe {
	uint64_t id;	  /* NNG pipe id */
	uint64_t sent0;	  /* our seq when first seen */
	uint64_t tx0;	  /* its tx_msgs when first seen */
	uint64_t tx;	  /* its tx_msgs at the last look */
	uint64_t lag;	  /* events queued for it, not yet written */
	uint64_t tx_wait; /* its tx_msgs when the publisher began to wait */
	bool seen;	  /* present in the last statistics */
	bool stuck;	  /* made no progress while we waited: not waited for */
};

struct rpc_pub {
	nng_socket sock;      /* pub0, listening */
	char *publisher;      /* name put in every event */
	uint64_t id;	      /* random per open: tells subscribers of a restart */
	pthread_mutex_t lock; /* protects seq; held across send: wire order is seq order */
	uint64_t seq;	      /* last seq used; protected by lock */
	struct rpc_pub_pipe pipes[RPC_PUB_FLOW_PIPES]; /* protected by lock */
	size_t nr_pipes;			       /* protected by lock */
	struct rpc_endpoint ep;	      /* the listener; watchdog thread only after open */
	struct rpc_watchdog watchdog; /* keeps ep alive */
};

void rpc_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

static void rpc_pub_check(void *opaque)
{
	struct rpc_pub *p = opaque;

	rpc_endpoint_check(&p->ep);
}

static int rpc_random_u64(uint64_t *out)
{
	ssize_t n;

	do {
		n = getrandom(out, sizeof(*out), 0);
	} while (n < 0 && errno == EINTR);
	if (n != sizeof(*out))
		return n < 0 ? -errno : -EIO;
	return 0;
}

int rpc_pub_open(struct rpc_pub **out, const char *url, const char *publisher)
{
	struct rpc_pub *p;
	int rv, ret;

	*out = NULL;
	if (!url || !publisher)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->publisher = strdup(publisher);
	if (!p->publisher) {
		ret = -ENOMEM;
		goto err_free;
	}
	ret = rpc_random_u64(&p->id);
	if (ret) {
		log_err("rpc pub %s: getrandom: %s", url, strerror(-ret));
		goto err_free;
	}
	pthread_mutex_init(&p->lock, NULL);
	rv = nng_pub0_open(&p->sock);
	if (rv) {
		log_err("rpc pub %s: nng_pub0_open: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_mutex;
	}
	rv = nng_socket_set_int(p->sock, NNG_OPT_SENDBUF, RPC_NNG_MAX_QUEUE);
	if (rv) {
		log_err("rpc pub %s: NNG_OPT_SENDBUF: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_close;
	}
	ret = rpc_endpoint_listen(&p->ep, p->sock, url);
	if (ret) {
		log_err("rpc pub %s: nng_listen: %s", url, strerror(-ret));
		goto err_close;
	}
	ret = rpc_watchdog_start(&p->watchdog, "rpc-pub", rpc_pub_check, p);
	if (ret) {
		log_err("rpc pub %s: pthread_create: %s", url, strerror(-ret));
		goto err_endpoint;
	}
	*out = p;
	return 0;

err_endpoint:
	rpc_endpoint_fini(&p->ep);
err_close:
	nng_close(p->sock);
err_mutex:
	pthread_mutex_destroy(&p->lock);
err_free:
	free(p->publisher);
	free(p);
	return ret;
}

static uint64_t rpc_realtime_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

/* Reads every connection's progress; returns the largest lag (p->lock held). */
static uint64_t rpc_pub_lag(struct rpc_pub *p)
{
	uint64_t sock_id = (uint64_t)nng_socket_id(p->sock), worst = 0;
	struct rpc_pub_pipe *pp;
	nng_stat *snap, *st;
	size_t n = 0;

	if (nng_stats_get(&snap))
		return 0;
	for (size_t i = 0; i < p->nr_pipes; i++)
		p->pipes[i].seen = false;
	for (st = nng_stat_child(snap); st; st = nng_stat_next(st)) {
		uint64_t id, tx;

		if (strcmp(nng_stat_name(st), "pipe") || rpc_stat_value(st, "socket") != sock_id)
			continue;
		id = rpc_stat_value(st, "id");
		tx = rpc_stat_value(st, "tx_msgs");
		pp = NULL;
		for (size_t i = 0; i < p->nr_pipes && !pp; i++)
			if (p->pipes[i].id == id)
				pp = &p->pipes[i];
		if (!pp) {
			if (p->nr_pipes == RPC_PUB_FLOW_PIPES)
				continue;
			/* New since the last look: at most RPC_PUB_FLOW_EVERY queued. */
			pp = &p->pipes[p->nr_pipes++];
			*pp = (struct rpc_pub_pipe){.id = id, .sent0 = p->seq, .tx0 = tx, .tx = tx};
		}
		if (tx != pp->tx)
			pp->stuck = false;
		pp->tx = tx;
		pp->seen = true;
		pp->lag = p->seq - pp->sent0 > tx - pp->tx0 ? (p->seq - pp->sent0) - (tx - pp->tx0)
							    : 0;
		if (!pp->stuck && pp->lag > worst)
			worst = pp->lag;
	}
	nng_stats_free(snap);
	/* Forget connections that are gone. */
	for (size_t i = 0; i < p->nr_pipes; i++)
		if (p->pipes[i].seen)
			p->pipes[n++] = p->pipes[i];
	p->nr_pipes = n;
	return worst;
}

/* Waits, bounded, until no subscriber is about to overflow (p->lock held). */
static void rpc_pub_flow(struct rpc_pub *p)
{
	struct timespec ms = {.tv_nsec = 1000000};
	int64_t until = rpc_clock_ms() + RPC_PUB_FLOW_WAIT_MS;
	uint64_t lag = rpc_pub_lag(p);

	if (lag < RPC_PUB_FLOW_HIGH)
		return;
	for (size_t i = 0; i < p->nr_pipes; i++)
		p->pipes[i].tx_wait = p->pipes[i].tx;
	while (lag > RPC_PUB_FLOW_LOW) {
		if (rpc_clock_ms() >= until) {
			/* Slow ones were waited for; only the ones that did not move are left. */
			for (size_t i = 0; i < p->nr_pipes; i++)
				if (p->pipes[i].lag > RPC_PUB_FLOW_LOW &&
				    p->pipes[i].tx == p->pipes[i].tx_wait)
					p->pipes[i].stuck = true;
			log_debug("rpc pub %s: a subscriber is %" PRIu64
				  " events behind; not waiting",
				  p->ep.url, lag);
			return;
		}
		nanosleep(&ms, NULL);
		lag = rpc_pub_lag(p);
	}
}

int rpc_pub_send(struct rpc_pub *p, Cleave__Events__Event *ev)
{
	char *caller_publisher;
	nng_msg *msg;
	size_t len;
	int rv, ret = 0;

	if (!ev)
		return -EINVAL;
	caller_publisher = ev->publisher;
	pthread_mutex_lock(&p->lock);
	ev->version = RPC_VERSION;
	ev->publisher_id = p->id;
	ev->seq = p->seq + 1;
	ev->timestamp_us = rpc_realtime_us();
	/* Borrowed for packing only: the caller may own and free ev->publisher. */
	ev->publisher = p->publisher;
	len = cleave__events__event__get_packed_size(ev);
	if (len > RPC_MAX_MSG_SIZE) {
		ret = -EMSGSIZE;
		goto out;
	}
	rv = nng_msg_alloc(&msg, len);
	if (rv) {
		ret = rpc_errno_from_nng(rv);
		goto out;
	}
	cleave__events__event__pack(ev, nng_msg_body(msg));
	/* pub0 never blocks: with no subscriber, or a full queue, it drops. */
	rv = nng_sendmsg(p->sock, msg, 0);
	if (rv) {
		nng_msg_free(msg);
		ret = rpc_errno_from_nng(rv);
		goto out;
	}
	p->seq++;
	if (p->seq % RPC_PUB_FLOW_EVERY == 0)
		rpc_pub_flow(p);
out:
	ev->publisher = caller_publisher;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void rpc_pub_close(struct rpc_pub *p)
{
	if (!p)
		return;
	rpc_watchdog_stop(&p->watchdog);
	nng_close(p->sock);
	rpc_endpoint_fini(&p->ep);
	pthread_mutex_destroy(&p->lock);
	free(p->publisher);
	free(p);
}

void rpc_pub_skip_seq(struct rpc_pub *p, uint64_t n)
{
	pthread_mutex_lock(&p->lock);
	p->seq += n;
	pthread_mutex_unlock(&p->lock);
}

uint64_t rpc_pub_id(const struct rpc_pub *p)
{
	return p->id;
}
