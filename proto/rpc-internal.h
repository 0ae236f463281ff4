/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private parts of the RPC layer shared by rpc.c (req/rep) and
 * rpc-event.c (pub/sub), plus the hooks the unit tests use.
 */
#ifndef CLEAVE_RPC_INTERNAL_H
#define CLEAVE_RPC_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <nng/nng.h>

#include "proto/rpc.h"

/* NNG's own per-socket queue depth limit (socket.c, pub0.c, sub0.c in 1.5). */
#define RPC_NNG_MAX_QUEUE 8192

/* How quickly a dialer retries a peer that is down or restarting. */
#define RPC_RECONNECT_MIN_MS 10
#define RPC_RECONNECT_MAX_MS 100

/* How often an endpoint's health is read from NNG's statistics. */
#define RPC_ENDPOINT_CHECK_MS 100

/*
 * A listener or dialer that rpc_endpoint_check() restarts when NNG 1.5.2
 * has silently stopped it (see rpc-endpoint.c).  Not locked: each one is
 * used by one thread at a time, which its owner guarantees.
 */
struct rpc_endpoint {
	nng_socket sock; /* owns the NNG endpoint; closing it closes ours */
	char *url;	 /* malloc'd; NULL once fini'd */
	bool listener;	 /* else a dialer */
	bool open;	 /* l or d is valid */
	nng_listener l;
	nng_dialer d;
	uint64_t other;		/* "other" errors counted so far */
	uint64_t counter;	/* dialer: connection attempts counted so far */
	int64_t last_change;	/* dialer: when counter moved or a pipe was up (ms) */
	int64_t next_check;	/* rpc_clock_ms() of the next statistics read */
	unsigned restarts;	/* how often it was made anew */
	int probe_fd;		/* listener: our test connection to it, or -1 */
	size_t probe_got;	/* bytes of the listener's SP header read on probe_fd */
	uint64_t probe_accepts; /* "accept" count when the probe started */
	int64_t probe_deadline; /* no accept by then: the listener has stopped */
};

int rpc_endpoint_listen(struct rpc_endpoint *ep, nng_socket sock, const char *url);
/* Non-blocking: the peer need not be up. */
int rpc_endpoint_dial(struct rpc_endpoint *ep, nng_socket sock, const char *url);
/*
 * At most every RPC_ENDPOINT_CHECK_MS: restarts a stopped endpoint.
 * Returns 1 when it did, 0 when nothing was needed, or a negative errno.
 */
int rpc_endpoint_check(struct rpc_endpoint *ep);
void rpc_endpoint_fini(struct rpc_endpoint *ep);

/*
 * A thread that calls @check every RPC_ENDPOINT_CHECK_MS: it keeps a
 * server's, publisher's or subscriber's endpoints alive without NNG receive
 * timeouts (NNG 1.5.2's exit-time teardown races with them).  stop joins it.
 */
struct rpc_watchdog {
	pthread_t thread;
	pthread_mutex_t lock; /* protects stopping */
	pthread_cond_t cond;  /* signalled when stopping is set */
	bool stopping;
	void (*check)(void *arg);
	void *arg;
	const char *name; /* thread tag for logs */
};

int rpc_watchdog_start(struct rpc_watchdog *w, const char *name, void (*check)(void *), void *arg);
void rpc_watchdog_stop(struct rpc_watchdog *w);

/* What a server serves: its method table and the handlers' argument. */
struct rpc_service {
	const struct rpc_method *methods; /* owned by the caller */
	size_t nr_methods;
	void *arg;	 /* handed to every handler */
	const char *url; /* names the server in error texts */
};

/*
 * A server's whole answer to one request, without its socket: unpacks the
 * request envelope @in (@len bytes, untrusted), runs the method it names
 * if @caller may call it (NULL: no caller class matched, nothing may be
 * called) and returns the packed reply envelope (nng_msg_free() it).  NULL only
 * when no reply could be built.  The serving thread calls it for every
 * request; the RPC fuzzer (tests/fuzz/) calls it directly.
 */
nng_msg *rpc_answer(const struct rpc_service *svc, const struct rpc_caller *caller, const void *in,
		   size_t len);

/*
 * One received event message (@len untrusted bytes) as the subscriber
 * hands it out: the unpacked event, or NULL when it does not unpack or is
 * not of RPC_VERSION.  Free it with rpc_msg_free().
 */
Cleave__Events__Event *rpc_event_decode(const void *buf, size_t len);

/* Maps an NNG error (NNG_E*, possibly NNG_ESYSERR|errno) to a negative errno. */
int rpc_errno_from_nng(int rv);

/* Sets the options every dialing socket of this layer shares. */
int rpc_socket_dial_opts(nng_socket sock);

/* The value of statistic @name below @parent; 0 when there is none. */
uint64_t rpc_stat_value(nng_stat *parent, const char *name);
/* The scope of dialer or listener (@kind) @id in a stats snapshot, or NULL. */
nng_stat *rpc_stat_find_endpoint(nng_stat *snap, const char *kind, uint32_t id);

/* A condition variable on CLOCK_MONOTONIC, as every timed wait here uses. */
void rpc_cond_init(pthread_cond_t *cond);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t rpc_clock_ms(void);

/*
 * Test hook: advances the publisher's sequence by @n without sending, so the
 * next event shows a gap of @n to its subscribers.
 */
void rpc_pub_skip_seq(struct rpc_pub *p, uint64_t n);
/* Test hook: the publisher_id chosen at rpc_pub_open. */
uint64_t rpc_pub_id(const struct rpc_pub *p);

#endif
