/* SPDX-License-Identifier: GPL-2.0-only */
/* The migration wire: URIs, sockets with deadlines, main-channel framing. */
#include <endian.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mig-limits.h"
#include "migrator/tls.h"
#include "migrator/wire.h"

/* Splits "tcp:HOST:PORT" ("tcp:[v6]:PORT" too) into host and port. */
static int uri_split(const char *uri, char *host, size_t hostlen, char *port, size_t portlen)
{
	const char *h, *colon;
	size_t n;

	if (strncmp(uri, "tcp:", 4))
		return -EINVAL;
	h = uri + 4;
	colon = strrchr(h, ':');
	if (!colon || !colon[1] || strlen(colon + 1) >= portlen)
		return -EINVAL;
	n = (size_t)(colon - h);
	if (n >= 2 && h[0] == '[' && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	if (n >= hostlen)
		return -EINVAL;
	memcpy(host, h, n);
	host[n] = '\0';
	strcpy(port, colon + 1);
	return 0;
}

static int uri_resolve(const char *uri, bool passive, struct addrinfo **res, char *err,
		       size_t errlen)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
	char host[256], port[16];
	int ret;

	if (uri_split(uri, host, sizeof(host), port, sizeof(port))) {
		snprintf(err, errlen, "bad URI '%s': expected tcp:HOST:PORT or unix:PATH", uri);
		return -EINVAL;
	}
	if (passive)
		hints.ai_flags = AI_PASSIVE;
	ret = getaddrinfo(host[0] ? host : NULL, port, &hints, res);
	if (ret) {
		snprintf(err, errlen, "resolve '%s': %s", uri, gai_strerror(ret));
		return -EHOSTUNREACH;
	}
	return 0;
}

int mig_sock_setup(int fd, unsigned int timeout_ms)
{
	struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
	int one = 1, domain = 0;
	socklen_t len = sizeof(domain);

	if (setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) ||
	    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) ||
	    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len))
		return -errno;
	if (domain != AF_UNIX && setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)))
		return -errno;
	return 0;
}

bool mig_uri_is_unix(const char *uri)
{
	return !strncmp(uri, "unix:", 5);
}

bool mig_fd_name_valid(const char *name)
{
	size_t n = strlen(name);

	return n >= 1 && n <= MIG_FD_NAME_MAX && !strpbrk(name, ":,");
}

bool mig_uri_is_fd(const char *uri)
{
	return !strncmp(uri, "fd:", 3);
}

/* "unix:PATH" -> its address; -EINVAL with @err when PATH is empty or too long. */
static int uri_unix_addr(const char *uri, struct sockaddr_un *sun, char *err, size_t errlen)
{
	const char *path = uri + 5;

	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	if (!path[0] || strlen(path) >= sizeof(sun->sun_path)) {
		snprintf(err, errlen, "bad URI '%s': expected unix:PATH (at most %zu bytes)", uri,
			 sizeof(sun->sun_path) - 1);
		return -EINVAL;
	}
	strcpy(sun->sun_path, path);
	return 0;
}

static int uri_unix_connect(const char *uri, unsigned int timeout_ms, int *fdp, char *err,
			    size_t errlen)
{
	struct sockaddr_un sun;
	int fd, ret = uri_unix_addr(uri, &sun, err, errlen);

	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ret = -errno;
	else
		ret = mig_sock_setup(fd, timeout_ms);
	if (!ret && connect(fd, (struct sockaddr *)&sun, sizeof(sun)))
		ret = errno == EAGAIN ? -ETIMEDOUT : -errno;
	if (ret) {
		snprintf(err, errlen, "connect %s: %s", uri, strerror(-ret));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

/*
 * A stale socket at PATH (a listener that died) is replaced, as QEMU
 * does; any other file there is an error, never removed.
 */
static int uri_unix_listen(const char *uri, int *fdp, char *err, size_t errlen)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd, ret = uri_unix_addr(uri, &sun, err, errlen);

	if (ret)
		return ret;
	if (!lstat(sun.sun_path, &st)) {
		if (!S_ISSOCK(st.st_mode)) {
			snprintf(err, errlen,
				 "listen %s: a file that is not a socket is in the way", uri);
			return -EEXIST;
		}
		unlink(sun.sun_path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sun, sizeof(sun)) ||
	    listen(fd, MIG_MAX_CHANNELS + 4)) {
		ret = -errno;
		snprintf(err, errlen, "listen %s: %s", uri, strerror(errno));
		if (fd >= 0)
			close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

int mig_uri_connect(const char *uri, unsigned int timeout_ms, int *fdp, char *err, size_t errlen)
{
	struct addrinfo *res, *ai;
	int fd = -1, ret;

	if (mig_uri_is_unix(uri))
		return uri_unix_connect(uri, timeout_ms, fdp, err, errlen);
	ret = uri_resolve(uri, false, &res, err, errlen);
	if (ret)
		return ret;
	ret = -ECONNREFUSED;
	for (ai = res; ai; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd < 0) {
			ret = -errno;
			continue;
		}
		/* Linux bounds connect() by SO_SNDTIMEO. */
		ret = mig_sock_setup(fd, timeout_ms);
		if (!ret && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
			break;
		ret = ret ? ret : (errno == EINPROGRESS || errno == EAGAIN ? -ETIMEDOUT : -errno);
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "connect %s: %s", uri, strerror(-ret));
		return ret;
	}
	*fdp = fd;
	return 0;
}

int mig_uri_listen(const char *uri, int *fdp, char *err, size_t errlen)
{
	struct addrinfo *res;
	int fd, ret, one = 1;

	if (mig_uri_is_unix(uri))
		return uri_unix_listen(uri, fdp, err, errlen);
	ret = uri_resolve(uri, true, &res, err, errlen);
	if (ret)
		return ret;
	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto err_free;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, MIG_MAX_CHANNELS + 4)) {
		ret = -errno;
		snprintf(err, errlen, "listen %s: %s", uri, strerror(errno));
		goto err_close;
	}
	freeaddrinfo(res);
	*fdp = fd;
	return 0;
err_close:
	close(fd);
err_free:
	freeaddrinfo(res);
	return ret;
}

static int io_errno(ssize_t n)
{
	if (n == 0)
		return -ECONNRESET;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		return -ETIMEDOUT;
	return -errno;
}

int mig_io_write(int fd, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	return mig_io_writev(fd, &iov, 1);
}

int mig_io_read(int fd, void *buf, size_t len)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};

	return mig_io_readv(fd, &iov, 1);
}

int mig_iov_advance(struct iovec *iov, int iovcnt, int i, size_t n)
{
	while (i < iovcnt && n >= iov[i].iov_len) {
		n -= iov[i].iov_len;
		i++;
	}
	if (i < iovcnt) {
		iov[i].iov_base = (char *)iov[i].iov_base + n;
		iov[i].iov_len -= n;
	}
	return i;
}

int mig_io_writev(int fd, struct iovec *iov, int iovcnt)
{
	return mig_io_sendv(fd, iov, iovcnt, 0);
}

/* A TLS connection: the same contract, through its session (tls.c). */
static int tls_readv(int fd, struct iovec *iov, int iovcnt)
{
	int i = mig_iov_advance(iov, iovcnt, 0, 0);

	while (i < iovcnt) {
		ssize_t n = mig_tls_recv(fd, iov[i].iov_base, iov[i].iov_len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return io_errno(n);
		i = mig_iov_advance(iov, iovcnt, i, (size_t)n);
	}
	return 0;
}

int mig_io_sendv(int fd, struct iovec *iov, int iovcnt, int flags)
{
	int i = mig_iov_advance(iov, iovcnt, 0, 0);

	if (mig_tls_on(fd))
		return i < iovcnt ? mig_tls_sendv(fd, iov + i, iovcnt - i) : 0;

	while (i < iovcnt) {
		struct msghdr mh = {.msg_iov = iov + i, .msg_iovlen = (size_t)(iovcnt - i)};
		ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL | flags);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EPIPE ? -ECONNRESET : io_errno(n);
		i = mig_iov_advance(iov, iovcnt, i, (size_t)n);
	}
	return 0;
}

int mig_io_readv(int fd, struct iovec *iov, int iovcnt)
{
	int i = mig_iov_advance(iov, iovcnt, 0, 0);

	if (mig_tls_on(fd))
		return tls_readv(fd, iov, iovcnt);

	while (i < iovcnt) {
		struct msghdr mh = {.msg_iov = iov + i, .msg_iovlen = (size_t)(iovcnt - i)};
		ssize_t n = recvmsg(fd, &mh, MSG_WAITALL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return io_errno(n);
		i = mig_iov_advance(iov, iovcnt, i, (size_t)n);
	}
	return 0;
}

int mig_msg_send(int fd, const Cleave__Wire__WireMsg *msg)
{
	size_t len = cleave__wire__wire_msg__get_packed_size(msg);
	uint32_t le;
	uint8_t *buf;
	int ret;

	if (len > WIRE_MAX_MSG)
		return -EMSGSIZE;
	buf = malloc(len + 4);
	if (!buf)
		return -ENOMEM;
	le = htole32((uint32_t)len);
	memcpy(buf, &le, 4);
	cleave__wire__wire_msg__pack(msg, buf + 4);
	ret = mig_io_write(fd, buf, len + 4);
	free(buf);
	return ret;
}

int mig_msg_recv(int fd, Cleave__Wire__WireMsg **msg)
{
	uint32_t le, len;
	uint8_t *buf;
	int ret;

	ret = mig_io_read(fd, &le, 4);
	if (ret)
		return ret;
	len = le32toh(le);
	if (len > WIRE_MAX_MSG)
		return -EMSGSIZE;
	buf = malloc(len ? len : 1);
	if (!buf)
		return -ENOMEM;
	ret = mig_io_read(fd, buf, len);
	if (!ret) {
		*msg = cleave__wire__wire_msg__unpack(NULL, len, buf);
		if (!*msg || (*msg)->body_case == CLEAVE__WIRE__WIRE_MSG__BODY__NOT_SET) {
			if (*msg)
				cleave__wire__wire_msg__free_unpacked(*msg, NULL);
			*msg = NULL;
			ret = -EBADMSG;
		}
	}
	free(buf);
	return ret;
}

void mig_msg_send_error_nowait(int fd, const char *reason)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Error e = CLEAVE__WIRE__ERROR__INIT;
	uint8_t buf[512];
	uint32_t len, le;

	e.reason = (char *)reason;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ERROR;
	m.error = &e;
	len = (uint32_t)cleave__wire__wire_msg__get_packed_size(&m);
	if (len + 4 > sizeof(buf))
		return;
	le = htole32(len);
	memcpy(buf, &le, 4);
	cleave__wire__wire_msg__pack(&m, buf + 4);
	/* Under TLS one record, which may wait for socket space up to the send timeout. */
	if ((mig_tls_on(fd) ? mig_tls_send(fd, buf, len + 4)
			    : send(fd, buf, len + 4, MSG_DONTWAIT | MSG_NOSIGNAL)) < 0)
		log_debug("could not send Error: %s", strerror(errno));
}

void mig_sock_close(int fd)
{
	if (fd < 0)
		return;
	mig_tls_detach(fd);
	close(fd);
}

bool mig_sock_readable(int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};

	return mig_tls_pending(fd) || poll(&pfd, 1, 0) > 0;
}

int mig_chan_token(int main_fd, const uint8_t sid[16], uint8_t out[16])
{
	if (mig_tls_on(main_fd))
		return mig_tls_channel_token(main_fd, sid, out);
	memcpy(out, sid, 16);
	return 0;
}

bool mig_uri_is_loopback(const char *uri)
{
	struct in6_addr a6;
	struct in_addr a4;
	char host[256];

	if (mig_uri_host(uri, host, sizeof(host)))
		return false;
	if (!strcmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return (ntohl(a4.s_addr) >> 24) == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int mig_uri_host(const char *uri, char *host, size_t len)
{
	const char *h, *colon;

	if (strncmp(uri, "tcp:", 4))
		return -EINVAL;
	h = uri + 4;
	colon = strrchr(h, ':');
	if (!colon || colon == h)
		return -EINVAL;
	if (*h == '[' && colon[-1] == ']') /* tcp:[::1]:4444 */
		h++, colon--;
	if ((size_t)(colon - h) >= len)
		return -ENAMETOOLONG;
	snprintf(host, len, "%.*s", (int)(colon - h), h);
	return 0;
}

int mig_msg_send_error(int fd, const char *reason)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Error e = CLEAVE__WIRE__ERROR__INIT;

	e.reason = (char *)reason;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ERROR;
	m.error = &e;
	return mig_msg_send(fd, &m);
}
