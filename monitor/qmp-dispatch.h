/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QMP request checking and the command table.
 *
 * A request goes through mon_request_parse() (JSON, envelope, command
 * lookup, argument schema) before anything runs, so a bad request never has
 * a side effect.  Each command is one table entry: its argument schema, the
 * backend it needs (none, vcpu-proc or the migrator) and the function that
 * computes its return value.  Functions of backend commands run on that
 * backend's worker thread, never on the event loop.
 */
#ifndef CLEAVE_MONITOR_QMP_DISPATCH_H
#define CLEAVE_MONITOR_QMP_DISPATCH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

#include "monitor/run-state.h"

#define MON_ERR_DESC_LEN 256

/* QMP error classes (qapi/error.json). */
#define MON_ERR_GENERIC	  "GenericError"
#define MON_ERR_NOT_FOUND "CommandNotFound"

enum mon_backend {
	MON_BACKEND_NONE,     /* runs on the event loop: must not block */
	MON_BACKEND_VCPU,     /* vcpu-proc over vcpu.proto */
	MON_BACKEND_MIGRATOR, /* the migrator over migrator.proto */
	MON_BACKEND_NR,
};

/* An event the reply must follow, as in QEMU (STOP before stop's reply). */
enum mon_await {
	MON_AWAIT_NONE,
	MON_AWAIT_STOP,
	MON_AWAIT_RESUME,
	MON_AWAIT_NR,
};

/* Outcome of a command: a return value or an error. */
struct mon_result {
	json_t *ret;	       /* owned; NULL with an error */
	const char *err_class; /* NULL on success */
	char err_desc[MON_ERR_DESC_LEN];
	bool backend_down;	    /* the backend did not answer within its deadline */
	enum mon_await await_event; /* the backend will publish this event for the command */
};

void mon_result_fini(struct mon_result *res);
/* Sets a GenericError (or @cls) with a printf desc; returns -EINVAL for chaining. */
int mon_result_error(struct mon_result *res, const char *cls, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

struct rpc_client;

/*
 * What command functions may use.  Everything is set up before the first
 * request and read-only afterwards, except the atomics.
 */
struct mon_ctx {
	const char *name;			/* --name, or NULL */
	struct rpc_client *rpc[MON_BACKEND_NR]; /* NULL: that backend is not configured */
	int timeout_ms;				/* deadline of every RPC */
	/* migrate_cancel retries an unreachable migrator this long in all; 0: once */
	int cancel_retry_ms;
	atomic_bool migration_events; /* last known 'events' capability */
	/*
	 * query-chardev: the QMP sockets ("unix:PATH", "tcp:HOST:PORT";
	 * NULL-terminated) and the serial ("stdio", "file:PATH") as the
	 * launcher gave them.  NULL: not known, not listed.
	 */
	const char *const *qmp_sockets;
	const char *serial;
	struct mon_run_state run_state; /* query-status without a round trip */
	/*
	 * The fd link to the migrator (proto/fd-link.h; monitor/fd-link.c), or
	 * -1: fd: URIs are refused.  Not owned.  The lock serializes its
	 * exchanges (the migrator pool has several threads); seq is the last
	 * message's, under the lock.
	 */
	int fd_link;
	pthread_mutex_t fd_link_lock;
	uint64_t fd_link_seq;
};

/*
 * The launcher restarts a dead migrator after 50 ms..1 s of backoff, so a
 * migrate_cancel sent during a restart is worth a few seconds of retries.
 */
#define MON_CANCEL_RETRY_MS 5000

enum mon_arg_type {
	MON_ARG_END, /* terminates a spec array */
	MON_ARG_STR,
	MON_ARG_INT,  /* any JSON integer */
	MON_ARG_UINT, /* JSON integer >= 0 */
	MON_ARG_BOOL,
	MON_ARG_ENUM,	     /* string, one of .values */
	MON_ARG_OBJ_ARRAY,   /* array of objects described by .fields */
	MON_ARG_ENUM_ARRAY,  /* array of strings, each one of .values */
	MON_ARG_STR_OR_NULL, /* string or null (QEMU's StrOrNull alternate) */
};

struct mon_arg_variant;

struct mon_arg_spec {
	const char *name;
	enum mon_arg_type type;
	bool optional;
	const char *const *values;	   /* MON_ARG_ENUM*: NULL-terminated */
	const struct mon_arg_spec *fields; /* MON_ARG_OBJ_ARRAY: MON_ARG_END-terminated */
	/*
	 * MON_ARG_ENUM: the tag of a flat union (QEMU's object-add): the
	 * members that follow for each value, checked after the spec's own.
	 */
	const struct mon_arg_variant *variants;
};

/* One case of a flat union; arrays of them end with .value NULL. */
struct mon_arg_variant {
	const char *value;
	const struct mon_arg_spec *members; /* MON_ARG_END-terminated; NULL: none */
};

enum mon_cmd_flags {
	MON_CMD_CAPABILITIES = 1 << 0, /* qmp_capabilities: handled by the session */
	MON_CMD_QUIT = 1 << 1,	       /* after the reply: SHUTDOWN event, vcpu-proc QUIT */
	MON_CMD_HMP = 1 << 2,	       /* human-monitor-command: routed by its command line */
	/*
	 * May be sent with exec-oob once the client enabled 'oob' (QEMU's
	 * allow-oob); its reply may overtake the client's in-band command that
	 * waits on a backend.  No other flag.  With MON_BACKEND_NONE it answers
	 * on the event loop at once; with a backend, exec-oob makes it a job
	 * at the front of that backend's queue that does not make the client
	 * busy (monitor/client.c, worker.h): it waits for no queued in-band
	 * job, only for a pool thread to be free (the migrator's: behind one
	 * handler).  Sent with execute it is an in-band command as any other.
	 */
	MON_CMD_ALLOW_OOB = 1 << 3,
	/*
	 * getfd / closefd: the client's named fds, run by the session
	 * (monitor/client.c), which holds them; .run answers when there is
	 * no QMP session (QEMU's HMP has no SCM_RIGHTS).
	 */
	MON_CMD_FDS = 1 << 4,
	/*
	 * migrate / migrate-incoming: an "fd:NAME" uri takes the client's
	 * fd NAME on the loop; the worker hands it to the migrator over the
	 * fd link before .run.
	 */
	MON_CMD_FD_URI = 1 << 5,
};

/* What a command returns, for query-qmp-schema. */
enum mon_ret_type {
	MON_RET_ANY, /* not described */
	MON_RET_STR,
	MON_RET_OBJ_ARRAY, /* array of objects described by .ret_fields */
	MON_RET_EMPTY,	   /* {} (QEMU's commands without 'returns') */
};

struct mon_cmd {
	const char *name;
	const struct mon_arg_spec *args; /* NULL: takes no arguments */
	enum mon_backend backend;
	unsigned flags; /* enum mon_cmd_flags */
	/* Fills res; @args has been checked against .args. */
	void (*run)(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
	/*
	 * Optional, on the event loop before .run goes to its backend's worker:
	 * answers from what the monitor already knows and returns true, or
	 * returns false (nothing touched) and .run does it.
	 */
	bool (*known)(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
	enum mon_ret_type ret;		       /* MON_RET_ANY when left out */
	const struct mon_arg_spec *ret_fields; /* MON_RET_OBJ_ARRAY: the object's members */
};

/* A checked request, ready to run. */
struct mon_request {
	json_t *id;		   /* owned reference, NULL when the request had none */
	char *id_text;		   /* the id as the client wrote it (qmp-json.h); owned */
	const struct mon_cmd *cmd; /* NULL when the request was rejected */
	json_t *args;		   /* owned reference; {} when absent */
	bool oob;		   /* sent with exec-oob (then .cmd has MON_CMD_ALLOW_OOB) */
	/*
	 * human-monitor-command: the entry .cmd points to, with the backend
	 * and flags of the QMP command its command line maps onto (qmp-hmp.c).
	 */
	struct mon_cmd hmp;
};

void mon_request_fini(struct mon_request *req);

/*
 * Parses and checks one framed message.  Returns 0 with req->cmd set, or a
 * negative errno with the error in @res (req->id is set whenever the
 * request's id could be read, so the error reply can echo it).
 * @negotiated: false while in capabilities negotiation mode.
 */
int mon_request_parse(const char *data, size_t len, bool negotiated, struct mon_request *req,
		      struct mon_result *res);
/*
 * The same for a client that enabled the 'oob' capability (@oob): exec-oob
 * is then a member of the envelope; without it, "is unexpected" as in QEMU.
 */
int mon_request_parse_oob(const char *data, size_t len, bool negotiated, bool oob,
			  struct mon_request *req, struct mon_result *res);
/*
 * Does this framed message ask for out-of-band execution (QEMU's
 * qmp_is_oob(): an object with exec-oob and without execute)?  Anything
 * that does not parse is in-band: its error reply keeps its place.
 */
bool mon_request_is_oob(const char *data, size_t len);

/* Checks @args against @spec; the error names the parameter as QEMU does. */
int mon_args_check(const struct mon_arg_spec *spec, json_t *args, const char *prefix,
		   struct mon_result *res);

/*
 * Calls @method of @backend with ctx->timeout_ms.  Returns 0, or a negative
 * errno with the error in @res ("vcpu-proc is not responding" for a dead
 * peer, the peer's own message otherwise).  Worker threads only.
 */
int mon_backend_call(struct mon_ctx *ctx, enum mon_backend backend, unsigned method,
		     const void *req, const void *reply_desc, void **reply, struct mon_result *res);
/* The same with its own deadline (ms) instead of ctx->timeout_ms. */
int mon_backend_call_timeout(struct mon_ctx *ctx, enum mon_backend backend, unsigned method,
			     const void *req, const void *reply_desc, void **reply, int timeout_ms,
			     struct mon_result *res);
/* vcpu-proc QUIT, sent on the vcpu worker after `quit` was answered. */
void mon_cmd_vcpu_quit(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
/*
 * At monitor start, on the migrator worker: refreshes ctx->migration_events
 * from the migrator and re-creates the TLS objects its parameters use
 * (qmp-objects.c).
 */
void mon_cmd_migration_caps_refresh(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/*
 * human-monitor-command: @out becomes @hmp with the backend and flags of
 * the QMP command @args' command line maps onto (qmp-hmp.c).
 */
void mon_hmp_route(const struct mon_cmd *hmp, json_t *args, struct mon_cmd *out);

/* The command table. */
const struct mon_cmd *mon_cmd_find(const char *name);
size_t mon_cmd_count(void);
const struct mon_cmd *mon_cmd_at(size_t i);

/*
 * Builds {"return": ...} or {"error": {...}} with "id" appended when @id is
 * not NULL, serialised with the CRLF QMP requires.  Returns a malloc'd
 * string (length in *len) or NULL on ENOMEM.
 */
char *mon_reply_format(json_t *id, const struct mon_result *res, size_t *len);
/* The same with the id's JSON text (mon_request.id_text), echoed as it is. */
char *mon_reply_format_text(const char *id_text, const struct mon_result *res, size_t *len);
/* Serialises any JSON object as one QMP line (CRLF-terminated). */
char *mon_json_format(json_t *obj, size_t *len);

/* Result of qmp_capabilities: checks the "enable" list. */
void mon_capabilities_check(json_t *args, struct mon_result *res);
/* Does a qmp_capabilities that succeeded with @args turn 'oob' on? */
bool mon_capabilities_oob(json_t *args);

#endif
