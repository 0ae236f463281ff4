/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The control-plane RPC layer used by every cleave process: NNG req/rep over
 * ipc:// carrying protobuf-c messages inside the rpc.proto envelope, and
 * NNG pub/sub for events (events.proto).
 *
 * Every call has a deadline: a dead, hung or absent peer is -ETIMEDOUT
 * within it, never a hang.  Garbage, an unknown method or a version mismatch
 * is an error reply, never a crash.  NNG is not fork-safe: a process that
 * uses this layer starts children with fork+exec only.
 *
 * Libnng 1.5.2 (Debian 12) has a bug (upstream nanomsg/nng#1518) that
 * silently stops a listener or dialer when a peer hangs up during the
 * connection handshake; this layer notices within a few hundred ms
 * (listener: self-probe; dialer: stalled counters, checked while a call or
 * subscriber waits) and restarts it.  A restarted listener drops its
 * connections: a call in flight on one fails at once with -ETIMEDOUT and
 * its client redials.  The counters are found by the endpoint's id, not
 * with nng_stat_find_dialer()/_listener(), which in 1.5.2 can return
 * another endpoint's.
 */
#ifndef CLEAVE_RPC_H
#define CLEAVE_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/events.pb-c.h"

#define RPC_VERSION	    1
#define RPC_MAX_MSG_SIZE    (16u << 20) /* bytes; larger messages are refused */
#define RPC_DEFAULT_TIMEOUT 2000	/* ms */
#define RPC_ERRMSG_LEN	    256

/* ---- server ------------------------------------------------------------- */

/* What a handler writes its answer into; owned by the server. */
struct rpc_reply;

/*
 * Packs @msg as the reply body (call at most once; no call = empty body).
 * The handler keeps ownership of @msg.
 */
int rpc_reply_set(struct rpc_reply *r, const ProtobufCMessage *msg);
/* Records an error for the reply and returns @err (a negative errno). */
int rpc_reply_error(struct rpc_reply *r, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct rpc_method {
	uint32_t id;
	const char *name; /* for logs */
	/* Unpacked before the call; NULL means the body is ignored. */
	const ProtobufCMessageDescriptor *request;
	/*
	 * Returns 0 or a negative errno (with rpc_reply_error() for a message).
	 * @req is NULL when .request is NULL; it is freed after the call.
	 */
	int (*handle)(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply);
};

struct rpc_server;

/*
 * Listens on @url and serves @methods from one thread: handlers never run
 * concurrently with each other.  @methods must outlive the server.
 */
int rpc_server_start(struct rpc_server **out, const char *url, const struct rpc_method *methods,
		     size_t nr_methods, void *arg);

/*
 * One class of caller of a server: the callers that reach it through the
 * ipc:// @url, which only they can open (docs/SECURITY.md, "Who can reach
 * which socket"), and the method ids they may call.  Any other method is
 * refused with -EPERM before its body is unpacked.  @methods NULL: all.
 */
#define RPC_MAX_CALLERS 4
struct rpc_caller {
	const char *name; /* "migrator", "monitor": for errors and logs */
	const char *url;
	const uint32_t *methods;
	size_t nr_methods;
};

/*
 * rpc_server_start() with one listener per caller class: a request is
 * served with the rights of the listener its connection came through (the
 * socket's own bound path, never anything the caller sends).  The
 * callers' names and method lists must outlive the server; urls are copied.
 */
int rpc_server_start_callers(struct rpc_server **out, const struct rpc_caller *callers,
			     size_t nr_callers, const struct rpc_method *methods,
			     size_t nr_methods, void *arg);
/* Returns once the serving thread has exited; frees the server.  NULL-safe. */
void rpc_server_stop(struct rpc_server *s);

/* ---- client ------------------------------------------------------------- */

struct rpc_client;

/* Dials @url in the background: the peer need not be up yet. */
int rpc_client_open(struct rpc_client **out, const char *url);
void rpc_client_close(struct rpc_client *c);

/*
 * Sends @req (NULL: empty body) as @method and waits at most @timeout_ms.
 * On success *reply is the unpacked body (free with rpc_msg_free), or NULL
 * when @reply_desc is NULL.  Errors: -ETIMEDOUT (no answer in time), the
 * peer's negative errno with its message in @errbuf, -EPROTO (bad reply).
 * Thread-safe: concurrent calls on one client are allowed.
 * Also: -ETIMEDOUT early when the connection drops after the request left
 * (the peer may or may not have run it; requests are never resent),
 * -EMSGSIZE when the packed request exceeds RPC_MAX_MSG_SIZE (nothing sent),
 * -EINVAL for @reply_desc without @reply.  @timeout_ms <= 0 means
 * RPC_DEFAULT_TIMEOUT.  @errbuf may be NULL.
 */
int rpc_call(struct rpc_client *c, uint32_t method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, int timeout_ms,
	     char *errbuf, size_t errlen);
void rpc_msg_free(ProtobufCMessage *msg);

/* ---- events --------------------------------------------------------------- */

struct rpc_pub;

/* Listens on @url; @publisher names the source ("vcpu", "migrator"). */
int rpc_pub_open(struct rpc_pub **out, const char *url, const char *publisher);
/*
 * Fills in version, publisher, publisher_id, seq and timestamp_us and sends.
 * Thread-safe.  With no subscriber the event is dropped (it still takes a
 * seq).  Bursts reach reading subscribers whole: when a connection's writer
 * falls thousands of events behind, the call waits for it (at most ~100 ms,
 * once per stalled subscriber, which then loses events and sees `missed`).
 * ev->publisher is left as the caller set it (the name is put on the wire
 * only).  -EMSGSIZE beyond RPC_MAX_MSG_SIZE.
 */
int rpc_pub_send(struct rpc_pub *p, Cleave__Events__Event *ev);
void rpc_pub_close(struct rpc_pub *p);

struct rpc_sub;

/* Subscribes to all events of every publisher url given with rpc_sub_dial. */
int rpc_sub_open(struct rpc_sub **out);
int rpc_sub_dial(struct rpc_sub *s, const char *url);
/*
 * Waits at most @timeout_ms for the next event.  *missed is the number of
 * events of that publisher lost before this one (0 normally; a restarted
 * publisher is not a loss).  Free the event with rpc_msg_free.
 * A receive thread drains the socket into a local queue, so events are not
 * lost while the caller is busy.  @timeout_ms <= 0 polls; @missed may be
 * NULL.  Errors: -ETIMEDOUT, -EPIPE (subscriber closing).
 */
int rpc_sub_recv(struct rpc_sub *s, Cleave__Events__Event **ev, uint64_t *missed, int timeout_ms);
void rpc_sub_close(struct rpc_sub *s);

#endif
