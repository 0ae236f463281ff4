// SPDX-License-Identifier: GPL-2.0-only
/* The blocking QMP client: see qmp-client.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "monitor/qmp-client.h"

struct qmp_client {
	int fd;			  /* owned */
	struct tls_client *creds; /* TLS credentials, NULL: plaintext; owned */
	gnutls_session_t tls;	  /* the session on fd (uses creds), NULL: plaintext; owned */
	char tls_err[256];	  /* why the last TLS read or write failed */
	char *buf;		  /* received bytes not yet returned; owned */
	size_t len, cap;
	json_t *greeting; /* owned */
};

static long long qmp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What is left until @deadline of @timeout_ms (< 0: no deadline, stays -1). */
static int qmp_left_ms(long long deadline, int timeout_ms)
{
	long long left = deadline - qmp_now_ms();

	if (timeout_ms < 0)
		return -1;
	return left > 0 ? (int)left : 0;
}

/* @timeout_ms as a GnuTLS timeout: its 0 is "none", our -1. */
static unsigned int qmp_tls_timeout(int timeout_ms)
{
	if (timeout_ms < 0)
		return 0;
	return timeout_ms ? (unsigned int)timeout_ms : 1;
}

/* Connects a new socket of @family to @sa; returns the fd or a negative errno. */
static int qmp_socket_connect(int family, const struct sockaddr *sa, socklen_t len)
{
	int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0), ret;

	if (fd < 0)
		return -errno;
	if (connect(fd, sa, len)) {
		ret = -errno;
		close(fd);
		return ret;
	}
	return fd;
}

/* Opens @addr; a TCP address's host goes to @host (the name TLS checks), else "". */
static int qmp_socket_open(const char *addr, char host[64])
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	const char *path = addr;

	host[0] = '\0';
	if (!strncmp(addr, "tcp:", 4)) {
		const char *colon = strrchr(addr + 4, ':');

		if (!colon || (size_t)(colon - addr - 4) >= 64)
			return -EINVAL;
		memcpy(host, addr + 4, (size_t)(colon - addr - 4));
		host[colon - addr - 4] = '\0';
		if (inet_pton(AF_INET, host, &sin.sin_addr) != 1)
			return -EINVAL;
		sin.sin_port = htons((uint16_t)atoi(colon + 1));
		return qmp_socket_connect(AF_INET, (struct sockaddr *)&sin, sizeof(sin));
	}
	if (!strncmp(addr, "unix:", 5))
		path = addr + 5;
	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	return qmp_socket_connect(AF_UNIX, (struct sockaddr *)&sun, sizeof(sun));
}

int qmp_client_fd(struct qmp_client *c)
{
	return c->fd;
}

json_t *qmp_client_greeting(struct qmp_client *c)
{
	return c->greeting;
}

/* A failed TLS read or write: c->tls_err says why; returns the errno. */
static int qmp_client_tls_failed(struct qmp_client *c, ssize_t ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_TIMEDOUT:
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		snprintf(c->tls_err, sizeof(c->tls_err), "the server closed the connection");
		return -ECONNRESET;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		/*
		 * TLS 1.3: the server checks our certificate after our side of
		 * the handshake ended, so its refusal arrives here.
		 */
		snprintf(c->tls_err, sizeof(c->tls_err), "TLS: the server refused us (alert: %s)",
			 gnutls_alert_get_name(gnutls_alert_get(c->tls)));
		return -EACCES;
	default:
		snprintf(c->tls_err, sizeof(c->tls_err), "TLS: %s", gnutls_strerror((int)ret));
		return -EPROTO;
	}
}

/* Like send() (a blocking socket): bytes sent, or a negative errno. */
static ssize_t qmp_client_write(struct qmp_client *c, const void *p, size_t len)
{
	ssize_t n;

	if (!c->tls) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		return n < 0 ? -errno : n;
	}
	do
		n = gnutls_record_send(c->tls, p, len);
	while (n == GNUTLS_E_INTERRUPTED || n == GNUTLS_E_AGAIN);
	return n < 0 ? qmp_client_tls_failed(c, n) : n;
}

/*
 * Like recv() once @fd polled readable (a blocking socket): bytes, 0 at
 * the server's end, or a negative errno.  A TLS record may come in pieces:
 * waiting for the rest is bounded by @timeout_ms (< 0: none).
 */
static ssize_t qmp_client_read(struct qmp_client *c, void *p, size_t len, int timeout_ms)
{
	ssize_t n;

	if (!c->tls) {
		n = recv(c->fd, p, len, 0);
		return n < 0 ? -errno : n;
	}
	gnutls_record_set_timeout(c->tls, qmp_tls_timeout(timeout_ms));
	for (;;) {
		n = gnutls_record_recv(c->tls, p, len);
		if (n >= 0)
			return n;
		/* A warning alert or a post-handshake message: nothing to hand over yet. */
		if (n == GNUTLS_E_INTERRUPTED || (n != GNUTLS_E_AGAIN && n != GNUTLS_E_TIMEDOUT &&
						  !gnutls_error_is_fatal((int)n)))
			continue;
		return qmp_client_tls_failed(c, n);
	}
}

int qmp_client_send_raw(struct qmp_client *c, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len) {
		n = qmp_client_write(c, p, len);
		if (n < 0) {
			if (n == -EINTR)
				continue;
			return (int)n;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Returns a complete line's length (without '\n') or -1. */
static ssize_t qmp_client_line(struct qmp_client *c)
{
	char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;

	return nl ? nl - c->buf : -1;
}

int qmp_client_recv(struct qmp_client *c, json_t **msg, int timeout_ms)
{
	long long deadline = qmp_now_ms() + timeout_ms;
	json_error_t jerr;
	ssize_t line, n;
	int left;

	for (;;) {
		line = qmp_client_line(c);
		if (line >= 0) {
			*msg = json_loadb(c->buf, (size_t)line, 0, &jerr);
			memmove(c->buf, c->buf + line + 1, c->len - (size_t)line - 1);
			c->len -= (size_t)line + 1;
			return *msg ? 0 : -EPROTO;
		}
		if (c->len == c->cap) {
			size_t cap = c->cap ? c->cap * 2 : 65536;
			char *buf = realloc(c->buf, cap);

			if (!buf)
				return -ENOMEM;
			c->buf = buf;
			c->cap = cap;
		}
		left = qmp_left_ms(deadline, timeout_ms);
		/* What GnuTLS already took off the socket is not seen by poll(). */
		if (left >= 0 && !(c->tls && gnutls_record_check_pending(c->tls))) {
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			int r = poll(&pfd, 1, left);

			if (r < 0 && errno != EINTR)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0)
				continue;
		}
		n = qmp_client_read(c, c->buf + c->len, c->cap - c->len, left);
		if (n < 0) {
			if (n == -EINTR)
				continue;
			return (int)n;
		}
		if (n == 0)
			return -ECONNRESET;
		c->len += (size_t)n;
	}
}

/* The greeting, or why there is none. */
static int qmp_client_greet(struct qmp_client *c, int timeout_ms, char *err, size_t errlen)
{
	int ret = qmp_client_recv(c, &c->greeting, timeout_ms);

	if (!ret && !json_object_get(c->greeting, "QMP"))
		ret = -EPROTO;
	if (ret && c->tls_err[0])
		snprintf(err, errlen, "%s", c->tls_err);
	else if (ret == -EPROTO)
		snprintf(err, errlen, "no QMP greeting (not a QMP server?)");
	else if (ret == -ETIMEDOUT)
		snprintf(err, errlen, "no QMP greeting within %d ms", timeout_ms);
	else if (ret == -ECONNRESET)
		snprintf(err, errlen, "the server closed the connection before its greeting");
	else if (ret)
		snprintf(err, errlen, "%s", strerror(-ret));
	return ret;
}

int qmp_client_connect_tls(struct qmp_client **out, const char *addr,
			   const struct tls_client_config *tls, int timeout_ms, char *err,
			   size_t errlen)
{
	long long deadline = qmp_now_ms() + timeout_ms;
	struct qmp_client *c;
	char host[64];
	int ret;

	err[0] = '\0';
	/* A unix socket's file mode is its access control: QMP never runs TLS there. */
	if (tls && strncmp(addr, "tcp:", 4)) {
		snprintf(err, errlen,
			 "TLS is for tcp:HOST:PORT; a unix socket carries plaintext QMP");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fd = -1;
	/* The files first: a wrong path is the operator's to fix whether the VM is up or not. */
	ret = tls ? tls_client_load(&c->creds, tls, err, errlen) : 0;
	if (!ret) {
		c->fd = qmp_socket_open(addr, host);
		ret = c->fd < 0 ? c->fd : 0;
		if (ret)
			snprintf(err, errlen, "%s", strerror(-ret));
	}
	if (!ret && tls)
		ret = tls_client_session_start(c->creds, c->fd, host, qmp_tls_timeout(timeout_ms),
					       &c->tls, err, errlen);
	if (!ret)
		ret = qmp_client_greet(c, qmp_left_ms(deadline, timeout_ms), err, errlen);
	if (ret) {
		qmp_client_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

int qmp_client_connect(struct qmp_client **out, const char *addr, int timeout_ms)
{
	char err[256];

	return qmp_client_connect_tls(out, addr, NULL, timeout_ms, err, sizeof(err));
}

void qmp_client_close(struct qmp_client *c)
{
	if (!c)
		return;
	/* No close_notify: it could block on a server that reads nothing. */
	if (c->tls)
		gnutls_deinit(c->tls);
	tls_client_free(c->creds);
	if (c->fd >= 0)
		close(c->fd);
	json_decref(c->greeting);
	free(c->buf);
	free(c);
}

int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, json_t **reply,
		       int timeout_ms)
{
	long long deadline = qmp_now_ms() + timeout_ms;
	json_t *req, *msg;
	char *text;
	int ret;

	req = json_pack("{s:s}", "execute", cmd);
	if (!req)
		return -ENOMEM;
	if (args)
		json_object_set(req, "arguments", args);
	text = json_dumps(req, JSON_COMPACT);
	json_decref(req);
	if (!text)
		return -ENOMEM;
	ret = qmp_client_send_raw(c, text, strlen(text));
	free(text);
	if (ret)
		return ret;
	for (;;) {
		long long left = deadline - qmp_now_ms();

		ret = qmp_client_recv(c, &msg, left > 0 ? (int)left : 0);
		if (ret)
			return ret;
		if (json_object_get(msg, "return") || json_object_get(msg, "error")) {
			*reply = msg;
			return 0;
		}
		json_decref(msg); /* an event */
	}
}

int qmp_client_negotiate(struct qmp_client *c, int timeout_ms)
{
	json_t *reply;
	int ret = qmp_client_execute(c, "qmp_capabilities", NULL, &reply, timeout_ms);

	if (ret)
		return ret;
	ret = json_object_get(reply, "return") ? 0 : -EPROTO;
	json_decref(reply);
	return ret;
}
