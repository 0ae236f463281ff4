/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Listeners and dialers that stay alive.
 *
 * NNG 1.5.2 (Debian 12) has upstream bug nanomsg/nng#1518, fixed in 1.6.0:
 * when a peer hangs up before our side of the SP header exchange is sent,
 * the send fails with EPIPE, which NNG reports as NNG_ECLOSED to the
 * endpoint; the endpoint takes that for its own close and stops for good.  A listener then hands
 * no new connection to its socket; a dialer never redials.  A process
 * killed at the wrong instant, or the stale-socket probe of a second
 * listener on the same path, is enough.
 *
 * NNG has no state to query, so:
 * - a dialer with no connection whose attempt counters have stood still for
 *   several reconnect intervals has stopped; it is closed and dialed anew
 *   (it has no connection to lose);
 * - a listener that counted an "other" error (ECLOSED lands there, with
 *   harmless errors such as a peer's EOF) is probed: we connect to it like
 *   a peer would, and if no connection is accepted within RPC_PROBE_MS it
 *   has stopped.  Only then is it closed and made anew, which closes its
 *   connections too: a call in flight on one fails at once and its client
 *   redials.  Restarting on every "other" error instead would make clients
 *   fail needlessly, and can bounce the bug back and forth between peers.
 */
#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "proto/rpc-internal.h"

/* A live dialer with no pipe tries at least every RPC_RECONNECT_MAX_MS. */
#define RPC_DIALER_STALL_MS (4 * RPC_RECONNECT_MAX_MS)
/* A live listener delays accepting by 100 ms after an error (listener.c). */
#define RPC_PROBE_MS	  500
#define RPC_SP_HEADER_LEN 8

static const char *const rpc_dialer_attempt_stats[] = {
	"connect", "refused", "disconnect", "canceled", "other",
	"timeout", "proto",   "auth",	    "oom",	"reject",
};

uint64_t rpc_stat_value(nng_stat *parent, const char *name)
{
	nng_stat *st = nng_stat_find(parent, name);

	return st ? nng_stat_value(st) : 0;
}

/*
 * NNG 1.5.2's nng_stat_find_dialer() and _listener() can return another
 * endpoint's scope (seen: dialer 2 got dialer 1's, a connected one, so a
 * stopped dialer never looked stopped).  The snapshot's top-level scopes
 * carry their "id": match that.
 */
nng_stat *rpc_stat_find_endpoint(nng_stat *snap, const char *kind, uint32_t id)
{
	for (nng_stat *st = nng_stat_child(snap); st; st = nng_stat_next(st))
		if (nng_stat_type(st) == NNG_STAT_SCOPE && !strcmp(nng_stat_name(st), kind) &&
		    rpc_stat_value(st, "id") == id)
			return st;
	return NULL;
}

static int rpc_endpoint_open(struct rpc_endpoint *ep)
{
	int rv;

	if (ep->listener)
		rv = nng_listen(ep->sock, ep->url, &ep->l, 0);
	else
		rv = nng_dial(ep->sock, ep->url, &ep->d, NNG_FLAG_NONBLOCK);
	if (rv)
		return rpc_errno_from_nng(rv);
	ep->open = true;
	ep->counter = 0;
	ep->other = 0;
	ep->last_change = rpc_clock_ms();
	return 0;
}

static int rpc_endpoint_init(struct rpc_endpoint *ep, nng_socket sock, const char *url,
			     bool listener)
{
	int ret;

	memset(ep, 0, sizeof(*ep));
	ep->sock = sock;
	ep->listener = listener;
	ep->probe_fd = -1;
	ep->url = strdup(url);
	if (!ep->url)
		return -ENOMEM;
	ret = rpc_endpoint_open(ep);
	if (ret) {
		free(ep->url);
		ep->url = NULL;
	}
	return ret;
}

int rpc_endpoint_listen(struct rpc_endpoint *ep, nng_socket sock, const char *url)
{
	return rpc_endpoint_init(ep, sock, url, true);
}

int rpc_endpoint_dial(struct rpc_endpoint *ep, nng_socket sock, const char *url)
{
	return rpc_endpoint_init(ep, sock, url, false);
}

static void rpc_probe_close(struct rpc_endpoint *ep)
{
	if (ep->probe_fd >= 0)
		close(ep->probe_fd);
	ep->probe_fd = -1;
}

/*
 * Connects to our own ipc listener as a peer of the right protocol and sends
 * the SP header.  Returns 0, or a negative errno when no probe is possible
 * (then the listener is taken as stopped).
 */
static int rpc_probe_start(struct rpc_endpoint *ep, uint64_t accepts, int64_t now)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint8_t head[RPC_SP_HEADER_LEN] = {0, 'S', 'P', 0, 0, 0, 0, 0};
	const char *path;
	int peer, fd;

	if (strncmp(ep->url, "ipc://", 6))
		return -ENOTSUP;
	path = ep->url + 6;
	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (nng_socket_get_int(ep->sock, NNG_OPT_PEER, &peer))
		return -EINVAL;
	head[4] = (uint8_t)(peer >> 8);
	head[5] = (uint8_t)peer;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* A full backlog (EAGAIN) means nobody accepts: stopped. */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    send(fd, head, sizeof(head), MSG_NOSIGNAL) != sizeof(head)) {
		close(fd);
		return -errno;
	}
	ep->probe_fd = fd;
	ep->probe_got = 0;
	ep->probe_accepts = accepts;
	ep->probe_deadline = now + RPC_PROBE_MS;
	return 0;
}

/*
 * The probe may hang up only once NNG has sent its header to it: hanging up
 * earlier is exactly what stops a listener.
 */
static bool rpc_probe_header_read(struct rpc_endpoint *ep)
{
	uint8_t head[RPC_SP_HEADER_LEN];
	ssize_t n;

	while (ep->probe_got < RPC_SP_HEADER_LEN) {
		n = recv(ep->probe_fd, head, RPC_SP_HEADER_LEN - ep->probe_got, MSG_DONTWAIT);
		if (n <= 0)
			return false;
		ep->probe_got += (size_t)n;
	}
	return true;
}

/* True when the listener has stopped. */
static bool rpc_listener_stalled(struct rpc_endpoint *ep, nng_stat *st, int64_t now)
{
	uint64_t other = rpc_stat_value(st, "other");
	uint64_t accepts = rpc_stat_value(st, "accept");
	bool suspect = other > ep->other;

	ep->other = other;
	if (ep->probe_fd < 0) {
		if (!suspect)
			return false;
		return rpc_probe_start(ep, accepts, now) != 0;
	}
	if (accepts > ep->probe_accepts) {
		/* Alive.  Keep the probe until it may hang up safely. */
		if (rpc_probe_header_read(ep))
			rpc_probe_close(ep);
		return false;
	}
	return now >= ep->probe_deadline;
}

static bool rpc_dialer_stalled(struct rpc_endpoint *ep, nng_stat *st, int64_t now)
{
	uint64_t attempts = 0;

	for (size_t i = 0; i < sizeof(rpc_dialer_attempt_stats) / sizeof(char *); i++)
		attempts += rpc_stat_value(st, rpc_dialer_attempt_stats[i]);
	if (attempts != ep->counter || rpc_stat_value(st, "pipes") > 0)
		ep->last_change = now;
	ep->counter = attempts;
	return now - ep->last_change > RPC_DIALER_STALL_MS;
}

/* Reads the endpoint's statistics; true when it has stopped. */
static bool rpc_endpoint_stalled(struct rpc_endpoint *ep, int64_t now)
{
	nng_stat *snap, *st;
	bool stalled = false;

	if (nng_stats_get(&snap))
		return false;
	st = ep->listener
		     ? rpc_stat_find_endpoint(snap, "listener", (uint32_t)nng_listener_id(ep->l))
		     : rpc_stat_find_endpoint(snap, "dialer", (uint32_t)nng_dialer_id(ep->d));
	if (st)
		stalled = ep->listener ? rpc_listener_stalled(ep, st, now)
				       : rpc_dialer_stalled(ep, st, now);
	nng_stats_free(snap);
	return stalled;
}

int rpc_endpoint_check(struct rpc_endpoint *ep)
{
	int64_t now = rpc_clock_ms();
	int ret;

	if (!ep->url || now < ep->next_check)
		return 0;
	ep->next_check = now + RPC_ENDPOINT_CHECK_MS;
	if (ep->open) {
		if (!rpc_endpoint_stalled(ep, now))
			return 0;
		log_debug("rpc %s: %s stopped (NNG bug #1518), restarting it", ep->url,
			  ep->listener ? "listener" : "dialer");
		if (ep->listener)
			nng_listener_close(ep->l);
		else
			nng_dialer_close(ep->d);
		ep->open = false;
		rpc_probe_close(ep);
	}
	ret = rpc_endpoint_open(ep);
	if (ret) {
		/* Tried again at the next check. */
		log_warn("rpc %s: restarting %s: %s", ep->url, ep->listener ? "listener" : "dialer",
			 strerror(-ret));
		return ret;
	}
	ep->restarts++;
	return 1;
}

void rpc_endpoint_fini(struct rpc_endpoint *ep)
{
	/* The NNG endpoint itself goes with its socket. */
	rpc_probe_close(ep);
	free(ep->url);
	ep->url = NULL;
}

static void *rpc_watchdog_run(void *opaque)
{
	struct rpc_watchdog *w = opaque;
	struct timespec ts;

	log_set_thread(w->name);
	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += RPC_ENDPOINT_CHECK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
		if (w->stopping)
			break;
		pthread_mutex_unlock(&w->lock);
		w->check(w->arg);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int rpc_watchdog_start(struct rpc_watchdog *w, const char *name, void (*check)(void *), void *arg)
{
	int ret;

	w->name = name;
	w->check = check;
	w->arg = arg;
	w->stopping = false;
	pthread_mutex_init(&w->lock, NULL);
	rpc_cond_init(&w->cond);
	ret = -pthread_create(&w->thread, NULL, rpc_watchdog_run, w);
	if (ret) {
		pthread_cond_destroy(&w->cond);
		pthread_mutex_destroy(&w->lock);
	}
	return ret;
}

void rpc_watchdog_stop(struct rpc_watchdog *w)
{
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
}
