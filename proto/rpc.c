/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Request/reply half of the RPC layer: an NNG rep0 socket served by one
 * thread, and an NNG req0 client that opens one context per call so calls
 * from several threads proceed concurrently, each with its own deadline.
 */
#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>
#include <nng/protocol/reqrep0/req.h>

#include "log/log.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"
#include "proto/rpc.pb-c.h"
#include "proto/utf8.h"

/* Longest a reply may wait for a client that does not read (server side). */
#define RPC_SERVER_SEND_TIMEOUT_MS 1000

int rpc_errno_from_nng(int rv)
{
	static const struct {
		int nng;
		int err;
	} map[] = {
		{NNG_EINTR, EINTR},	      {NNG_ENOMEM, ENOMEM},
		{NNG_EINVAL, EINVAL},	      {NNG_EBUSY, EBUSY},
		{NNG_ETIMEDOUT, ETIMEDOUT},   {NNG_ECONNREFUSED, ECONNREFUSED},
		{NNG_ECLOSED, EBADF},	      {NNG_EAGAIN, EAGAIN},
		{NNG_ENOTSUP, ENOTSUP},	      {NNG_EADDRINUSE, EADDRINUSE},
		{NNG_ESTATE, EPROTO},	      {NNG_ENOENT, ENOENT},
		{NNG_EPROTO, EPROTO},	      {NNG_EUNREACHABLE, EHOSTUNREACH},
		{NNG_EADDRINVAL, EINVAL},     {NNG_EPERM, EPERM},
		{NNG_EMSGSIZE, EMSGSIZE},     {NNG_ECONNABORTED, ECONNABORTED},
		{NNG_ECONNRESET, ECONNRESET}, {NNG_ECANCELED, ECANCELED},
		{NNG_ENOFILES, EMFILE},	      {NNG_ENOSPC, ENOSPC},
		{NNG_EEXIST, EEXIST},	      {NNG_EREADONLY, EROFS},
		{NNG_EWRITEONLY, EBADF},      {NNG_EPEERAUTH, EACCES},
		{NNG_ECONNSHUT, ECONNRESET},
	};

	if (rv == 0)
		return 0;
	if (rv & NNG_ESYSERR)
		return -(rv & ~NNG_ESYSERR);
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (map[i].nng == rv)
			return -map[i].err;
	return -EIO;
}

int64_t rpc_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *rpc_strerror(int err)
{
	const char *s = strerrordesc_np(err < 0 ? -err : err);

	return s ? s : "unknown error";
}

/* ---- server ------------------------------------------------------------- */

/* Filled by one handler on the serving thread; never shared. */
struct rpc_reply {
	int error;		      /* 0 or the negative errno of the reply */
	char message[RPC_ERRMSG_LEN]; /* with error: what failed */
	uint8_t *body;		      /* packed reply body, malloc'd; NULL if none */
	size_t body_len;
	bool has_body; /* rpc_reply_set was called */
};

int rpc_reply_set(struct rpc_reply *r, const ProtobufCMessage *msg)
{
	size_t len;

	if (!msg)
		return -EINVAL;
	if (r->has_body)
		return -EALREADY;
	len = protobuf_c_message_get_packed_size(msg);
	if (len > RPC_MAX_MSG_SIZE)
		return rpc_reply_error(r, -EMSGSIZE, "reply body of %zu bytes exceeds %u", len,
				       RPC_MAX_MSG_SIZE);
	r->body = malloc(len ? len : 1);
	if (!r->body)
		return -ENOMEM;
	r->body_len = protobuf_c_message_pack(msg, r->body);
	r->has_body = true;
	return 0;
}

int rpc_reply_error(struct rpc_reply *r, int err, const char *fmt, ...)
{
	va_list ap;

	/* A handler that passes a non-error still gets an error reply. */
	if (err >= 0 || err < -4095)
		err = -EIO;
	r->error = err;
	/* The message may quote what the client sent: never cut a character. */
	va_start(ap, fmt);
	utf8_vsnprintf(r->message, sizeof(r->message), fmt, ap);
	va_end(ap);
	return err;
}

enum rpc_server_state {
	RPC_SERVER_SERVING,
	RPC_SERVER_STOPPED,
};

struct rpc_server {
	nng_socket sock;	      /* rep0; closing it ends the serving thread */
	pthread_t thread;	      /* the one serving thread */
	struct rpc_service svc;	      /* methods owned by the caller; svc.url is url */
	struct rpc_caller callers[RPC_MAX_CALLERS]; /* one per listener, url our copy */
	size_t nr_callers;
	struct rpc_endpoint ep[RPC_MAX_CALLERS]; /* the listeners; watchdog thread only */
	size_t nr_eps;				 /* ep[0..nr_eps) are open */
	struct rpc_watchdog watchdog;		 /* keeps ep alive */
	const char *url;			 /* the first listener's, for messages */
	enum rpc_server_state state;		 /* touched only by start/stop */
};

static const struct rpc_method *rpc_method_find(const struct rpc_service *svc, uint32_t id)
{
	for (size_t i = 0; i < svc->nr_methods; i++)
		if (svc->methods[i].id == id)
			return &svc->methods[i];
	return NULL;
}

static bool rpc_caller_may(const struct rpc_caller *caller, uint32_t id)
{
	if (!caller)
		return false;
	if (!caller->methods)
		return true;
	for (size_t i = 0; i < caller->nr_methods; i++)
		if (caller->methods[i] == id)
			return true;
	return false;
}

/* Decodes the request envelope @in, runs the handler and leaves the outcome in @r. */
static void rpc_dispatch(const struct rpc_service *svc, const struct rpc_caller *caller,
			 const void *in, size_t len, struct rpc_reply *r)
{
	const struct rpc_method *m;
	Cleave__Rpc__Request *req;
	ProtobufCMessage *body = NULL;
	int ret;

	req = cleave__rpc__request__unpack(NULL, len, in);
	if (!req) {
		rpc_reply_error(r, -EBADMSG, "request envelope of %zu bytes does not unpack", len);
		goto out;
	}
	if (req->version != RPC_VERSION) {
		rpc_reply_error(r, -EPROTONOSUPPORT, "rpc version %u, %s speaks %u", req->version,
				svc->url, RPC_VERSION);
		goto out;
	}
	m = rpc_method_find(svc, req->method);
	if (!m) {
		rpc_reply_error(r, -ENOSYS, "unknown method %u at %s", req->method, svc->url);
		goto out;
	}
	/* Before the body is unpacked: a refused caller's bytes are never parsed. */
	if (!rpc_caller_may(caller, req->method)) {
		const char *who = caller ? caller->name : "a caller of no known class";
		const char *where = caller ? caller->url : svc->url;
		/* Worth a warning, but a flood of them must not flood the log: 1st, 2nd, 4th... */
		static atomic_ulong refusals;
		unsigned long n = atomic_fetch_add(&refusals, 1) + 1;

		rpc_reply_error(r, -EPERM, "%s may not call %s at %s", who,
				m->name ? m->name : "?", where);
		if (!(n & (n - 1)))
			log_warn("rpc %s: refused %s to %s (%lu refusals so far)", where,
				 m->name ? m->name : "?", who, n);
		goto out;
	}
	if (m->request) {
		body = protobuf_c_message_unpack(m->request, NULL, req->body.len, req->body.data);
		if (!body) {
			rpc_reply_error(r, -EBADMSG, "%s: body of %zu bytes is not a %s",
					m->name ? m->name : "?", req->body.len, m->request->name);
			goto out;
		}
	}
	ret = m->handle(svc->arg, body, r);
	if (ret < 0 && r->error == 0)
		rpc_reply_error(r, ret, "%s: %s", m->name ? m->name : "?", rpc_strerror(ret));
	protobuf_c_message_free_unpacked(body, NULL);
out:
	if (r->error)
		log_debug("rpc %s: method %d: %s (%d)", svc->url, req ? (int)req->method : -1,
			  r->message, r->error);
	if (req)
		cleave__rpc__request__free_unpacked(req, NULL);
}

static int rpc_reply_pack(const struct rpc_reply *r, nng_msg **out)
{
	Cleave__Rpc__Reply rep = CLEAVE__RPC__REPLY__INIT;
	size_t len;
	int rv;

	rep.version = RPC_VERSION;
	rep.error = r->error;
	if (r->error)
		rep.error_message = (char *)r->message;
	else if (r->has_body)
		rep.body = (ProtobufCBinaryData){.len = r->body_len, .data = r->body};
	len = cleave__rpc__reply__get_packed_size(&rep);
	if (len > RPC_MAX_MSG_SIZE)
		return -EMSGSIZE;
	rv = nng_msg_alloc(out, len);
	if (rv)
		return rpc_errno_from_nng(rv);
	cleave__rpc__reply__pack(&rep, nng_msg_body(*out));
	return 0;
}

nng_msg *rpc_answer(const struct rpc_service *svc, const struct rpc_caller *caller, const void *in,
		   size_t len)
{
	struct rpc_reply r = {0};
	nng_msg *out = NULL;
	int ret;

	rpc_dispatch(svc, caller, in, len, &r);
	ret = rpc_reply_pack(&r, &out);
	if (ret == -EMSGSIZE) {
		free(r.body);
		r = (struct rpc_reply){0};
		rpc_reply_error(&r, -EMSGSIZE, "reply from %s exceeds %u bytes", svc->url,
				RPC_MAX_MSG_SIZE);
		log_debug("rpc %s: %s", svc->url, r.message);
		ret = rpc_reply_pack(&r, &out);
	}
	free(r.body);
	if (ret) {
		log_warn("rpc %s: reply: %s", svc->url, rpc_strerror(ret));
		return NULL;
	}
	return out;
}

static void rpc_server_check(void *opaque)
{
	struct rpc_server *s = opaque;

	for (size_t i = 0; i < s->nr_eps; i++)
		rpc_endpoint_check(&s->ep[i]);
}

/*
 * The caller class of the connection @in came through: the listener is
 * known by the path the connection's server end is bound to, which the
 * kernel reports and a restarted listener keeps.  NULL when none matches.
 */
static const struct rpc_caller *rpc_caller_of(const struct rpc_server *s, nng_msg *in)
{
	nng_sockaddr sa;

	if (s->nr_callers == 1)
		return &s->callers[0];
	if (nng_pipe_get_addr(nng_msg_get_pipe(in), NNG_OPT_LOCADDR, &sa) ||
	    sa.s_family != NNG_AF_IPC)
		return NULL;
	for (size_t i = 0; i < s->nr_callers; i++)
		if (!strcmp(sa.s_ipc.sa_path, s->callers[i].url + strlen("ipc://")))
			return &s->callers[i];
	return NULL;
}

static void *rpc_server_run(void *opaque)
{
	struct rpc_server *s = opaque;
	nng_msg *in, *out;
	int rv;

	log_set_thread("rpc");
	for (;;) {
		rv = nng_recvmsg(s->sock, &in, 0);
		if (rv == NNG_ECLOSED)
			break;
		if (rv) {
			log_debug("rpc %s: nng_recvmsg: %s", s->url, nng_strerror(rv));
			continue;
		}
		out = rpc_answer(&s->svc, rpc_caller_of(s, in), nng_msg_body(in), nng_msg_len(in));
		nng_msg_free(in);
		if (!out)
			continue;
		rv = nng_sendmsg(s->sock, out, 0);
		if (rv) {
			nng_msg_free(out);
			if (rv == NNG_ECLOSED)
				break;
			log_debug("rpc %s: nng_sendmsg: %s", s->url, nng_strerror(rv));
		}
	}
	return NULL;
}

int rpc_server_start(struct rpc_server **out, const char *url, const struct rpc_method *methods,
		     size_t nr_methods, void *arg)
{
	const struct rpc_caller any = {.name = "any caller", .url = url};

	return rpc_server_start_callers(out, &any, 1, methods, nr_methods, arg);
}

static void rpc_server_free(struct rpc_server *s)
{
	while (s->nr_callers)
		free((char *)s->callers[--s->nr_callers].url);
	free(s);
}

/* Several listeners are told apart by their ipc:// paths (rpc_caller_of). */
static int rpc_callers_check(const struct rpc_caller *callers, size_t nr)
{
	if (!nr || nr > RPC_MAX_CALLERS)
		return -EINVAL;
	for (size_t i = 0; i < nr; i++) {
		if (!callers[i].url || !callers[i].name ||
		    (callers[i].nr_methods && !callers[i].methods))
			return -EINVAL;
		if (nr > 1 && strncmp(callers[i].url, "ipc://", strlen("ipc://")))
			return -EINVAL;
		for (size_t k = 0; k < i; k++)
			if (!strcmp(callers[i].url, callers[k].url))
				return -EINVAL;
	}
	return 0;
}

int rpc_server_start_callers(struct rpc_server **out, const struct rpc_caller *callers,
			     size_t nr_callers, const struct rpc_method *methods,
			     size_t nr_methods, void *arg)
{
	struct rpc_server *s;
	const char *url;
	int rv, ret;

	*out = NULL;
	if ((nr_methods && !methods) || rpc_callers_check(callers, nr_callers))
		return -EINVAL;
	url = callers[0].url;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	for (; s->nr_callers < nr_callers; s->nr_callers++) {
		struct rpc_caller *c = &s->callers[s->nr_callers];

		*c = callers[s->nr_callers];
		c->url = strdup(c->url);
		if (!c->url) {
			ret = -ENOMEM;
			goto err_free;
		}
	}
	s->url = s->callers[0].url;
	s->svc = (struct rpc_service){methods, nr_methods, arg, s->url};
	rv = nng_rep0_open(&s->sock);
	if (rv) {
		log_err("rpc %s: nng_rep0_open: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_free;
	}
	/* Larger messages make NNG drop the sender's connection, not us. */
	rv = nng_socket_set_size(s->sock, NNG_OPT_RECVMAXSZ, RPC_MAX_MSG_SIZE);
	if (!rv)
		rv = nng_socket_set_ms(s->sock, NNG_OPT_SENDTIMEO, RPC_SERVER_SEND_TIMEOUT_MS);
	if (rv) {
		log_err("rpc %s: nng_socket_set: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_close;
	}
	for (; s->nr_eps < nr_callers; s->nr_eps++) {
		ret = rpc_endpoint_listen(&s->ep[s->nr_eps], s->sock, callers[s->nr_eps].url);
		if (ret) {
			log_err("rpc %s: nng_listen: %s", callers[s->nr_eps].url,
				rpc_strerror(ret));
			goto err_endpoint;
		}
	}
	ret = rpc_watchdog_start(&s->watchdog, "rpc-watch", rpc_server_check, s);
	if (ret) {
		log_err("rpc %s: pthread_create: %s", url, rpc_strerror(ret));
		goto err_endpoint;
	}
	ret = -pthread_create(&s->thread, NULL, rpc_server_run, s);
	if (ret) {
		log_err("rpc %s: pthread_create: %s", url, rpc_strerror(ret));
		goto err_watchdog;
	}
	s->state = RPC_SERVER_SERVING;
	*out = s;
	return 0;

err_watchdog:
	rpc_watchdog_stop(&s->watchdog);
err_endpoint:
	while (s->nr_eps)
		rpc_endpoint_fini(&s->ep[--s->nr_eps]);
err_close:
	nng_close(s->sock);
err_free:
	rpc_server_free(s);
	return ret;
}

void rpc_server_stop(struct rpc_server *s)
{
	if (!s)
		return;
	assert(s->state == RPC_SERVER_SERVING);
	/* NNG 1.5 does not survive closing an endpoint while its socket closes. */
	rpc_watchdog_stop(&s->watchdog);
	/* Pairs with the ECLOSED exit of rpc_server_run. */
	nng_close(s->sock);
	pthread_join(s->thread, NULL);
	s->state = RPC_SERVER_STOPPED;
	while (s->nr_eps)
		rpc_endpoint_fini(&s->ep[--s->nr_eps]);
	rpc_server_free(s);
}

/* ---- client ------------------------------------------------------------- */

struct rpc_client {
	nng_socket sock;	/* req0; each call opens its own context on it */
	char *url;		/* for messages */
	pthread_mutex_t lock;	/* protects ep */
	struct rpc_endpoint ep; /* the dialer */
};

/* Restarts a stopped dialer; a call that finds another thread at it skips. */
static void rpc_client_check(struct rpc_client *c)
{
	if (pthread_mutex_trylock(&c->lock))
		return;
	rpc_endpoint_check(&c->ep);
	pthread_mutex_unlock(&c->lock);
}

int rpc_socket_dial_opts(nng_socket sock)
{
	int rv;

	rv = nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, RPC_MAX_MSG_SIZE);
	if (!rv)
		rv = nng_socket_set_ms(sock, NNG_OPT_RECONNMINT, RPC_RECONNECT_MIN_MS);
	if (!rv)
		rv = nng_socket_set_ms(sock, NNG_OPT_RECONNMAXT, RPC_RECONNECT_MAX_MS);
	return rpc_errno_from_nng(rv);
}

int rpc_client_open(struct rpc_client **out, const char *url)
{
	struct rpc_client *c;
	int rv, ret;

	*out = NULL;
	if (!url)
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->url = strdup(url);
	if (!c->url) {
		ret = -ENOMEM;
		goto err_free;
	}
	rv = nng_req0_open(&c->sock);
	if (rv) {
		log_err("rpc %s: nng_req0_open: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_free;
	}
	/*
	 * No resend: a request that reached the server must not run twice.
	 * With resend off NNG also fails a call whose connection drops.
	 */
	rv = nng_socket_set_ms(c->sock, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE);
	if (rv) {
		log_err("rpc %s: NNG_OPT_REQ_RESENDTIME: %s", url, nng_strerror(rv));
		ret = rpc_errno_from_nng(rv);
		goto err_close;
	}
	ret = rpc_socket_dial_opts(c->sock);
	if (ret) {
		log_err("rpc %s: socket options: %s", url, rpc_strerror(ret));
		goto err_close;
	}
	ret = rpc_endpoint_dial(&c->ep, c->sock, url);
	if (ret) {
		log_err("rpc %s: nng_dial: %s", url, rpc_strerror(ret));
		goto err_close;
	}
	pthread_mutex_init(&c->lock, NULL);
	*out = c;
	return 0;

err_close:
	nng_close(c->sock);
err_free:
	free(c->url);
	free(c);
	return ret;
}

void rpc_client_close(struct rpc_client *c)
{
	if (!c)
		return;
	nng_close(c->sock);
	rpc_endpoint_fini(&c->ep);
	pthread_mutex_destroy(&c->lock);
	free(c->url);
	free(c);
}

static int rpc_request_pack(uint32_t method, const ProtobufCMessage *req, nng_msg **out)
{
	Cleave__Rpc__Request env = CLEAVE__RPC__REQUEST__INIT;
	uint8_t *body = NULL;
	size_t len = 0;
	int rv, ret = 0;

	if (req) {
		len = protobuf_c_message_get_packed_size(req);
		if (len > RPC_MAX_MSG_SIZE)
			return -EMSGSIZE;
		body = malloc(len ? len : 1);
		if (!body)
			return -ENOMEM;
		len = protobuf_c_message_pack(req, body);
	}
	env.version = RPC_VERSION;
	env.method = method;
	env.body = (ProtobufCBinaryData){.len = len, .data = body};
	len = cleave__rpc__request__get_packed_size(&env);
	if (len > RPC_MAX_MSG_SIZE) {
		ret = -EMSGSIZE;
		goto out;
	}
	rv = nng_msg_alloc(out, len);
	if (rv) {
		ret = rpc_errno_from_nng(rv);
		goto out;
	}
	cleave__rpc__request__pack(&env, nng_msg_body(*out));
out:
	free(body);
	return ret;
}

static int rpc_reply_parse(struct rpc_client *c, nng_msg *msg,
			   const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply,
			   char *errbuf, size_t errlen)
{
	Cleave__Rpc__Reply *rep;
	int ret = 0;

	rep = cleave__rpc__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	if (!rep) {
		snprintf(errbuf, errlen, "reply from %s does not unpack", c->url);
		return -EPROTO;
	}
	if (rep->version != RPC_VERSION) {
		snprintf(errbuf, errlen, "reply from %s has rpc version %u, not %u", c->url,
			 rep->version, RPC_VERSION);
		ret = -EPROTO;
	} else if (rep->error) {
		if (rep->error > 0 || rep->error < -4095) {
			snprintf(errbuf, errlen, "reply from %s has error %d", c->url, rep->error);
			ret = -EPROTO;
		} else {
			/* The peer's text: nothing checked that it is UTF-8. */
			utf8_copy_valid(errbuf, errlen, rep->error_message);
			ret = rep->error;
		}
	} else if (reply_desc) {
		*reply = protobuf_c_message_unpack(reply_desc, NULL, rep->body.len, rep->body.data);
		if (!*reply) {
			snprintf(errbuf, errlen, "reply body from %s is not a %s", c->url,
				 reply_desc->name);
			ret = -EPROTO;
		}
	}
	cleave__rpc__reply__free_unpacked(rep, NULL);
	return ret;
}

/* Runs one send or receive on @ctx; @deadline is in rpc_clock_ms() time. */
static int rpc_ctx_io(nng_ctx ctx, nng_aio *aio, bool send, int64_t deadline)
{
	int64_t left = deadline - rpc_clock_ms();

	if (left <= 0)
		return NNG_ETIMEDOUT;
	nng_aio_set_timeout(aio, (nng_duration)left);
	if (send)
		nng_ctx_send(ctx, aio);
	else
		nng_ctx_recv(ctx, aio);
	nng_aio_wait(aio);
	return nng_aio_result(aio);
}

int rpc_call(struct rpc_client *c, uint32_t method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply, int timeout_ms,
	     char *errbuf, size_t errlen)
{
	char scratch[RPC_ERRMSG_LEN];
	int64_t deadline = rpc_clock_ms() + (timeout_ms > 0 ? timeout_ms : RPC_DEFAULT_TIMEOUT);
	nng_msg *msg = NULL;
	nng_aio *aio = NULL;
	nng_ctx ctx;
	int rv, ret;

	if (!errbuf || !errlen) {
		errbuf = scratch;
		errlen = sizeof(scratch);
	}
	errbuf[0] = '\0';
	if (reply)
		*reply = NULL;
	if (reply_desc && !reply)
		return -EINVAL;
	rpc_client_check(c);
	ret = rpc_request_pack(method, req, &msg);
	if (ret) {
		snprintf(errbuf, errlen, "request %u to %s: %s", method, c->url, rpc_strerror(ret));
		return ret;
	}
	rv = nng_ctx_open(&ctx, c->sock);
	if (rv) {
		ret = rpc_errno_from_nng(rv);
		snprintf(errbuf, errlen, "nng_ctx_open: %s", nng_strerror(rv));
		goto err_msg;
	}
	rv = nng_aio_alloc(&aio, NULL, NULL);
	if (rv) {
		ret = rpc_errno_from_nng(rv);
		snprintf(errbuf, errlen, "nng_aio_alloc: %s", nng_strerror(rv));
		goto err_ctx;
	}
	/*
	 * Waiting for a connection happens here, in slices: between them the
	 * dialer is checked.  A send that timed out never reached a pipe, so
	 * it is safe to try again.
	 */
	for (;;) {
		int64_t slice = rpc_clock_ms() + RPC_ENDPOINT_CHECK_MS;

		nng_aio_set_msg(aio, msg);
		rv = rpc_ctx_io(ctx, aio, true, slice < deadline ? slice : deadline);
		if (rv != NNG_ETIMEDOUT || rpc_clock_ms() >= deadline)
			break;
		rpc_client_check(c);
	}
	if (rv)
		goto err_io; /* msg is still ours */
	msg = NULL;	     /* NNG owns it now */
	rv = rpc_ctx_io(ctx, aio, false, deadline);
	if (rv)
		goto err_io;
	msg = nng_aio_get_msg(aio);
	ret = rpc_reply_parse(c, msg, reply_desc, reply, errbuf, errlen);
	nng_msg_free(msg);
	nng_aio_free(aio);
	nng_ctx_close(ctx);
	return ret;

err_io:
	/*
	 * A reset connection is a peer that died after taking the request: no
	 * answer will come, which callers handle as they handle a dead peer.
	 */
	if (rv == NNG_ETIMEDOUT || rv == NNG_ECONNRESET || rv == NNG_ECONNSHUT) {
		ret = -ETIMEDOUT;
		snprintf(errbuf, errlen, "no reply from %s to method %u within %d ms%s", c->url,
			 method, timeout_ms > 0 ? timeout_ms : RPC_DEFAULT_TIMEOUT,
			 rv == NNG_ETIMEDOUT ? "" : " (connection lost)");
	} else {
		ret = rpc_errno_from_nng(rv);
		snprintf(errbuf, errlen, "method %u to %s: %s", method, c->url, nng_strerror(rv));
	}
	nng_aio_free(aio);
	/* A dialer stopped by NNG upstream bug nanomsg/nng#1518 looks just like a dead peer. */
	rpc_client_check(c);
err_ctx:
	nng_ctx_close(ctx);
err_msg:
	nng_msg_free(msg);
	return ret;
}

void rpc_msg_free(ProtobufCMessage *msg)
{
	if (msg)
		protobuf_c_message_free_unpacked(msg, NULL);
}
