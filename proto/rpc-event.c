/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Event half of the RPC layer: NNG pub0/sub0 carrying events.proto.
 *
 * NNG drops a message silently when a queue is full, and caps every queue
 * at 8192 messages.  So the subscriber runs a receive thread that drains the
 * socket into a local queue as fast as messages arrive; the consumer reads
 * that queue at its own pace.  Sequence numbers make any loss visible.
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
#include <nng/protocol/pubsub0/sub.h>

#include "log/log.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"

/*
 * Beyond this many unread events the oldest are dropped: a consumer that
 * stopped reading must not take the process down.  Drops show as `missed`.
 */
#define RPC_SUB_QUEUE_MAX (1u << 20)
/* Publishers a subscriber tracks sequence numbers for (LRU beyond that). */
#define RPC_SUB_TRACK_MAX 64

/* ---- publisher ------------------------------------------------------------ */

struct rpc_pub {
	nng_socket sock;	 /* pub0, listening */
	char *publisher;	 /* name put in every event */
	uint64_t id;		 /* random per open: tells subscribers of a restart */
	pthread_mutex_t lock;	 /* protects seq; held across send: wire order is seq order */
	uint64_t seq;		 /* last seq used; protected by lock */
	struct rpc_endpoint ep;	 /* the listener; watchdog thread only after open */
	pthread_t watchdog;	 /* keeps ep alive (see rpc-endpoint.c) */
	pthread_mutex_t wd_lock; /* protects stopping */
	pthread_cond_t wd_cond;	 /* signalled when stopping is set */
	bool stopping;		 /* rpc_pub_close has begun; protected by wd_lock */
};

/* A condition variable on CLOCK_MONOTONIC, as every wait here uses. */
static void rpc_cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t attr;

	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &attr);
	pthread_condattr_destroy(&attr);
}

static void *rpc_pub_watch(void *opaque)
{
	struct rpc_pub *p = opaque;
	struct timespec ts;

	log_set_thread("rpc-pub");
	pthread_mutex_lock(&p->wd_lock);
	while (!p->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += RPC_ENDPOINT_CHECK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->wd_cond, &p->wd_lock, &ts);
		if (p->stopping)
			break;
		pthread_mutex_unlock(&p->wd_lock);
		rpc_endpoint_check(&p->ep);
		pthread_mutex_lock(&p->wd_lock);
	}
	pthread_mutex_unlock(&p->wd_lock);
	return NULL;
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
	pthread_mutex_init(&p->wd_lock, NULL);
	rpc_cond_init(&p->wd_cond);
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
	ret = -pthread_create(&p->watchdog, NULL, rpc_pub_watch, p);
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
	pthread_cond_destroy(&p->wd_cond);
	pthread_mutex_destroy(&p->wd_lock);
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
out:
	ev->publisher = caller_publisher;
	pthread_mutex_unlock(&p->lock);
	return ret;
}

void rpc_pub_close(struct rpc_pub *p)
{
	if (!p)
		return;
	pthread_mutex_lock(&p->wd_lock);
	p->stopping = true;
	pthread_cond_signal(&p->wd_cond);
	pthread_mutex_unlock(&p->wd_lock);
	pthread_join(p->watchdog, NULL);
	nng_close(p->sock);
	rpc_endpoint_fini(&p->ep);
	pthread_cond_destroy(&p->wd_cond);
	pthread_mutex_destroy(&p->wd_lock);
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

/* ---- subscriber ----------------------------------------------------------- */

struct rpc_sub_item {
	struct rpc_sub_item *next;
	Cleave__Events__Event *ev; /* owned by the item until handed out */
};

/* Where one publisher (by publisher_id) was last seen. */
struct rpc_sub_track {
	uint64_t publisher_id;
	uint64_t seq;	   /* last seq handed out */
	uint64_t last_use; /* for LRU eviction */
};

struct rpc_sub {
	nng_socket sock;  /* sub0; closing it ends the receive thread */
	pthread_t thread; /* the receive thread: drains sock into the queue */
	/* protects head, tail, len, dropped, done, tracks, nr_tracks, ticks */
	pthread_mutex_t lock;
	pthread_cond_t cond;		  /* signalled on a new item and when the thread ends */
	struct rpc_sub_item *head, *tail; /* FIFO of received events */
	size_t len;
	bool done; /* the receive thread has exited */
	struct rpc_sub_track tracks[RPC_SUB_TRACK_MAX];
	size_t nr_tracks;
	uint64_t ticks;		  /* counts rpc_sub_recv calls, the LRU clock */
	pthread_mutex_t ep_lock;  /* protects eps, nr_eps; taken before lock, never inside */
	struct rpc_endpoint *eps; /* one dialer per rpc_sub_dial */
	size_t nr_eps;
	bool stopping; /* rpc_sub_close has begun: no more checks (ep_lock) */
};

/* Restarts dialers NNG stopped (see rpc-endpoint.c); receive thread. */
static void rpc_sub_check(struct rpc_sub *s)
{
	pthread_mutex_lock(&s->ep_lock);
	for (size_t i = 0; i < s->nr_eps && !s->stopping; i++)
		rpc_endpoint_check(&s->eps[i]);
	pthread_mutex_unlock(&s->ep_lock);
}

static void rpc_sub_push(struct rpc_sub *s, struct rpc_sub_item *it)
{
	struct rpc_sub_item *old = NULL;

	pthread_mutex_lock(&s->lock);
	if (s->len == RPC_SUB_QUEUE_MAX) {
		old = s->head;
		s->head = old->next;
		if (!s->head)
			s->tail = NULL;
		s->len--;
	}
	if (s->tail)
		s->tail->next = it;
	else
		s->head = it;
	s->tail = it;
	s->len++;
	pthread_cond_signal(&s->cond);
	pthread_mutex_unlock(&s->lock);
	if (old) {
		cleave__events__event__free_unpacked(old->ev, NULL);
		free(old);
	}
}

static void *rpc_sub_run(void *opaque)
{
	struct rpc_sub *s = opaque;
	struct rpc_sub_item *it;
	nng_msg *msg;
	int rv;

	log_set_thread("rpc-sub");
	for (;;) {
		rpc_sub_check(s);
		rv = nng_recvmsg(s->sock, &msg, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv) {
			if (rv != NNG_ETIMEDOUT)
				log_debug("rpc sub: nng_recvmsg: %s", nng_strerror(rv));
			continue;
		}
		it = calloc(1, sizeof(*it));
		if (it)
			it->ev = cleave__events__event__unpack(NULL, nng_msg_len(msg),
							       nng_msg_body(msg));
		if (!it || !it->ev || it->ev->version != RPC_VERSION) {
			/* Not an event we understand: drop it, keep receiving. */
			log_debug("rpc sub: dropped a %zu-byte message that is not a v%u event",
				  nng_msg_len(msg), RPC_VERSION);
			if (it && it->ev)
				cleave__events__event__free_unpacked(it->ev, NULL);
			free(it);
		} else {
			rpc_sub_push(s, it);
		}
		nng_msg_free(msg);
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
	rv = nng_sub0_open(&s->sock);
	if (rv) {
		log_err("rpc sub: nng_sub0_open: %s", nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_free;
	}
	rv = nng_socket_set(s->sock, NNG_OPT_SUB_SUBSCRIBE, "", 0);
	if (!rv)
		rv = nng_socket_set_int(s->sock, NNG_OPT_RECVBUF, RPC_NNG_MAX_QUEUE);
	if (!rv)
		rv = nng_socket_set_ms(s->sock, NNG_OPT_RECVTIMEO, RPC_ENDPOINT_CHECK_MS);
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
	ret = -pthread_create(&s->thread, NULL, rpc_sub_run, s);
	if (ret) {
		log_err("rpc sub: pthread_create: %s", strerror(-ret));
		goto err_close;
	}
	*out = s;
	return 0;

err_close:
	nng_close(s->sock);
err_free:
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

int rpc_sub_recv(struct rpc_sub *s, Cleave__Events__Event **ev, uint64_t *missed, int timeout_ms)
{
	struct rpc_sub_item *it;
	struct timespec ts;
	uint64_t lost;
	int ret = 0;

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
	pthread_mutex_lock(&s->lock);
	while (!s->head && !s->done && ret == 0)
		ret = -pthread_cond_timedwait(&s->cond, &s->lock, &ts);
	it = s->head;
	if (!it) {
		ret = s->done ? -EPIPE : -ETIMEDOUT;
		pthread_mutex_unlock(&s->lock);
		return ret;
	}
	s->head = it->next;
	if (!s->head)
		s->tail = NULL;
	s->len--;
	lost = rpc_sub_track(s, it->ev);
	pthread_mutex_unlock(&s->lock);
	*ev = it->ev;
	if (missed)
		*missed = lost;
	free(it);
	return 0;
}

void rpc_sub_close(struct rpc_sub *s)
{
	struct rpc_sub_item *it;

	if (!s)
		return;
	/* NNG 1.5 does not survive closing an endpoint while its socket closes. */
	pthread_mutex_lock(&s->ep_lock);
	s->stopping = true;
	pthread_mutex_unlock(&s->ep_lock);
	/* Pairs with the ECLOSED exit of rpc_sub_run. */
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	while ((it = s->head)) {
		s->head = it->next;
		cleave__events__event__free_unpacked(it->ev, NULL);
		free(it);
	}
	for (size_t i = 0; i < s->nr_eps; i++)
		rpc_endpoint_fini(&s->eps[i]);
	free(s->eps);
	pthread_mutex_destroy(&s->ep_lock);
	pthread_cond_destroy(&s->cond);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
