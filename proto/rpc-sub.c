/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Event subscriber: NNG sub0 carrying events.proto.
 *
 * NNG drops messages silently when a queue is full, and caps every queue at
 * 8192 messages.  So a receive thread drains the socket into a local ring as
 * fast as messages arrive, doing nothing else (no decoding, no allocation
 * but the ring's growth); the consumer decodes at its own pace in
 * rpc_sub_recv.  Sequence numbers make any loss visible as `missed`.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "log/log.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"

/*
 * Beyond this many unread events the oldest are dropped: a consumer that
 * stopped reading must not take the process down.  Drops show as `missed`.
 */
#define RPC_SUB_QUEUE_MAX (1u << 20)
#define RPC_SUB_QUEUE_MIN 1024
/* Publishers a subscriber tracks sequence numbers for (LRU beyond that). */
#define RPC_SUB_TRACK_MAX 64

/* Where one publisher (by publisher_id) was last seen. */
struct rpc_sub_track {
	uint64_t publisher_id;
	uint64_t seq;	   /* last seq handed out */
	uint64_t last_use; /* for LRU eviction */
};

struct rpc_sub {
	nng_socket sock;  /* sub0; closing it ends the receive thread */
	pthread_t thread; /* the receive thread: drains sock into the ring */
	/* protects ring, cap, head, len, done, tracks, nr_tracks, ticks */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* signalled when the ring stops being empty, and at exit */
	nng_msg **ring;	     /* FIFO of received messages, cap entries */
	size_t cap, head, len;
	bool done; /* the receive thread has exited */
	struct rpc_sub_track tracks[RPC_SUB_TRACK_MAX];
	size_t nr_tracks;
	uint64_t ticks;		  /* counts handed-out events, the LRU clock */
	pthread_mutex_t ep_lock;  /* protects eps, nr_eps; never taken inside lock */
	struct rpc_endpoint *eps; /* one dialer per rpc_sub_dial */
	size_t nr_eps;
	struct rpc_watchdog watchdog; /* keeps eps alive */
};

/* Restarts dialers NNG stopped (see rpc-endpoint.c); watchdog thread. */
static void rpc_sub_check(void *opaque)
{
	struct rpc_sub *s = opaque;

	pthread_mutex_lock(&s->ep_lock);
	for (size_t i = 0; i < s->nr_eps; i++)
		rpc_endpoint_check(&s->eps[i]);
	pthread_mutex_unlock(&s->ep_lock);
}

/* Doubles the ring (s->lock held); false when it may not or cannot grow. */
static bool rpc_sub_grow(struct rpc_sub *s)
{
	size_t cap = s->cap ? s->cap * 2 : RPC_SUB_QUEUE_MIN;
	nng_msg **ring;

	if (cap > RPC_SUB_QUEUE_MAX)
		return false;
	ring = malloc(cap * sizeof(*ring));
	if (!ring)
		return false;
	for (size_t i = 0; i < s->len; i++)
		ring[i] = s->ring[(s->head + i) % s->cap];
	free(s->ring);
	s->ring = ring;
	s->cap = cap;
	s->head = 0;
	return true;
}

static void rpc_sub_push(struct rpc_sub *s, nng_msg *msg)
{
	nng_msg *old = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->len == s->cap && !rpc_sub_grow(s)) {
		old = s->ring[s->head];
		s->head = (s->head + 1) % s->cap;
		s->len--;
	}
	s->ring[(s->head + s->len) % s->cap] = msg;
	if (s->len++ == 0)
		pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	nng_msg_free(old);
}

static void *rpc_sub_run(void *opaque)
{
	struct rpc_sub *s = opaque;
	nng_msg *msg;
	int rv;

	log_set_thread("rpc-sub");
	for (;;) {
		rv = nng_recvmsg(s->sock, &msg, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv) {
			log_debug("rpc sub: nng_recvmsg: %s", nng_strerror(rv));
			continue;
		}
		rpc_sub_push(s, msg);
	}
	pthread_mutex_lock(&s->lock);
	s->done = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return NULL;
}

int rpc_sub_open(struct rpc_sub **out)
{
	struct rpc_sub *s;
	int rv, ret;

	*out = NULL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->ep_lock, NULL);
	rpc_cond_init(&s->cond);
	if (!rpc_sub_grow(s)) {
		ret = -ENOMEM;
		goto err_free;
	}
	rv = nng_sub0_open(&s->sock);
	if (rv) {
		log_err("rpc sub: nng_sub0_open: %s", nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_free;
	}
	rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	if (!rv)
		rv = nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, RPC_NNG_MAX_QUEUE);
	if (rv) {
		log_err("rpc sub: socket options: %s", nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_close;
	}
	ret = rpc_socket_dial_opts(s->sock);
	if (ret) {
		log_err("rpc sub: socket options: %s", strerror(-ret));
		goto err_close;
	}
	ret = rpc_watchdog_start(&s->watchdog, "rpc-sub-watch", rpc_sub_check, s);
	if (ret) {
		log_err("rpc sub: pthread_create: %s", strerror(-ret));
		goto err_close;
	}
	ret = -pthread_create(&s->thread, NULL, rpc_sub_run, s);
	if (ret) {
		log_err("rpc sub: pthread_create: %s", strerror(-ret));
		goto err_watchdog;
	}
	*out = s;
	return 0;

err_watchdog:
	rpc_watchdog_stop(&s->watchdog);
err_close:
	nng_close(s->sock);
err_free:
	free(s->ring);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->ep_lock);
	pthread_mutex_destroy(&s->lock);
	free(s);
	return ret;
}

int rpc_sub_dial(struct rpc_sub *s, const char *url)
{
	struct rpc_endpoint *eps;
	int ret;

	if (!url)
		return -EINVAL;
	pthread_mutex_lock(&s->ep_lock);
	eps = realloc(s->eps, (s->nr_eps + 1) * sizeof(*eps));
	if (!eps) {
		ret = -ENOMEM;
		goto out;
	}
	s->eps = eps;
	/* Non-blocking: the publisher may start later; NNG keeps redialing. */
	ret = rpc_endpoint_dial(&s->eps[s->nr_eps], s->sock, url);
	if (ret) {
		log_err("rpc sub %s: nng_dial: %s", url, strerror(-ret));
		goto out;
	}
	s->nr_eps++;
out:
	pthread_mutex_unlock(&s->ep_lock);
	return ret;
}

Cleave__Events__Event *rpc_event_decode(const void *buf, size_t len)
{
	Cleave__Events__Event *e = cleave__events__event__unpack(NULL, len, buf);

	if (e && e->version != RPC_VERSION) {
		cleave__events__event__free_unpacked(e, NULL);
		e = NULL;
	}
	return e;
}

/* Returns how many events of @ev's publisher were lost before it. */
static uint64_t rpc_sub_track(struct rpc_sub *s, const Cleave__Events__Event *ev)
{
	struct rpc_sub_track *t = NULL, *lru = &s->tracks[0];
	uint64_t missed = 0;

	s->ticks++;
	for (size_t i = 0; i < s->nr_tracks; i++) {
		if (s->tracks[i].publisher_id == ev->publisher_id) {
			t = &s->tracks[i];
			break;
		}
		if (s->tracks[i].last_use < lru->last_use)
			lru = &s->tracks[i];
	}
	if (!t) {
		/* First sight of this publisher (or its restart): nothing to compare. */
		t = s->nr_tracks < RPC_SUB_TRACK_MAX ? &s->tracks[s->nr_tracks++] : lru;
		t->publisher_id = ev->publisher_id;
	} else if (ev->seq > t->seq + 1) {
		missed = ev->seq - t->seq - 1;
	} else if (ev->seq <= t->seq) {
		log_debug("rpc sub: %s seq %" PRIu64 " after %" PRIu64, ev->publisher, ev->seq,
			  t->seq);
	}
	t->seq = ev->seq;
	t->last_use = s->ticks;
	return missed;
}

/* Takes the oldest message, waiting until @deadline; NULL with *err set. */
static nng_msg *rpc_sub_pop(struct rpc_sub *s, const struct timespec *deadline, int *err)
{
	nng_msg *msg = NULL;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	while (!s->len && !s->done && ret == 0)
		ret = pthread_cond_timedwait(&s->cond, &s->lock, deadline);
	if (s->len) {
		msg = s->ring[s->head];
		s->head = (s->head + 1) % s->cap;
		s->len--;
	} else {
		*err = s->done ? -EPIPE : -ETIMEDOUT;
	}
	pthread_mutex_unlock(&s->lock);
	return msg;
}

int rpc_sub_recv(struct rpc_sub *s, Cleave__Events__Event **ev, uint64_t *missed, int timeout_ms)
{
	Cleave__Events__Event *e;
	struct timespec ts;
	nng_msg *msg;
	uint64_t lost;
	int ret = 0;

	if (!ev)
		return -EINVAL;
	*ev = NULL;
	if (missed)
		*missed = 0;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	if (timeout_ms > 0) {
		ts.tv_sec += timeout_ms / 1000;
		ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
	}
	for (;;) {
		msg = rpc_sub_pop(s, &ts, &ret);
		if (!msg)
			return ret;
		e = rpc_event_decode(nng_msg_body(msg), nng_msg_len(msg));
		if (e)
			break;
		/* Not an event we understand: dropped (its seq shows up as missed). */
		log_debug("rpc sub: dropped a %zu-byte message that is not a v%u event",
			  nng_msg_len(msg), RPC_VERSION);
		nng_msg_free(msg);
	}
	nng_msg_free(msg);
	pthread_mutex_lock(&s->lock);
	lost = rpc_sub_track(s, e);
	pthread_mutex_unlock(&s->lock);
	*ev = e;
	if (missed)
		*missed = lost;
	return 0;
}

void rpc_sub_close(struct rpc_sub *s)
{
	if (!s)
		return;
	/* NNG 1.5 does not survive closing an endpoint while its socket closes. */
	rpc_watchdog_stop(&s->watchdog);
	/* Pairs with the ECLOSED exit of rpc_sub_run. */
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	for (size_t i = 0; i < s->len; i++)
		nng_msg_free(s->ring[(s->head + i) % s->cap]);
	free(s->ring);
	for (size_t i = 0; i < s->nr_eps; i++)
		rpc_endpoint_fini(&s->eps[i]);
	free(s->eps);
	pthread_mutex_destroy(&s->ep_lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
