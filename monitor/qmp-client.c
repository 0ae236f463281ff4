// SPDX-License-Identifier: GPL-2.0-only
/* The blocking QMP client: see qmp-client.h. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "monitor/qmp-client.h"

struct qmp_client {
	int fd;	   /* owned */
	char *buf; /* received bytes not yet returned; owned */
	size_t len, cap;
	json_t *greeting; /* owned */
};

static long long qmp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

static int qmp_socket_open(const char *addr)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct sockaddr_in sin = {.sin_family = AF_INET};
	const char *path = addr;

	if (!strncmp(addr, "tcp:", 4)) {
		char host[64];
		const char *colon = strrchr(addr + 4, ':');

		if (!colon || (size_t)(colon - addr - 4) >= sizeof(host))
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

int qmp_client_send_raw(struct qmp_client *c, const void *data, size_t len)
{
	const char *p = data;
	ssize_t n;

	while (len) {
		n = send(c->fd, p, len, MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
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
		if (timeout_ms >= 0) {
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			long long left = deadline - qmp_now_ms();
			int r;

			if (left < 0)
				left = 0;
			r = poll(&pfd, 1, (int)left);
			if (r < 0 && errno != EINTR)
				return -errno;
			if (r == 0)
				return -ETIMEDOUT;
			if (r < 0)
				continue;
		}
		n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -ECONNRESET;
		c->len += (size_t)n;
	}
}

int qmp_client_connect(struct qmp_client **out, const char *addr, int timeout_ms)
{
	struct qmp_client *c = calloc(1, sizeof(*c));
	int ret;

	if (!c)
		return -ENOMEM;
	c->fd = qmp_socket_open(addr);
	if (c->fd < 0) {
		ret = c->fd;
		free(c);
		return ret;
	}
	ret = qmp_client_recv(c, &c->greeting, timeout_ms);
	if (!ret && !json_object_get(c->greeting, "QMP"))
		ret = -EPROTO;
	if (ret) {
		qmp_client_close(c);
		return ret;
	}
	*out = c;
	return 0;
}

void qmp_client_close(struct qmp_client *c)
{
	if (!c)
		return;
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
