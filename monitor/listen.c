// SPDX-License-Identifier: GPL-2.0-only
/* Listening sockets the monitor binds itself (--qmp unix:PATH / tcp:HOST:PORT). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/server.h"

static int mon_listen_unix(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd, ret;

	if (strlen(path) >= sizeof(sun.sun_path))
		return -ENAMETOOLONG;
	strcpy(sun.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A stale socket file of a previous run would make bind fail. */
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) || listen(fd, SOMAXCONN)) {
		ret = -errno;
		log_err("bind/listen unix:%s: %s", path, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

static int mon_listen_tcp(const char *hostport, bool tls)
{
	struct sockaddr_in sin = {.sin_family = AF_INET};
	char host[64];
	const char *colon = strrchr(hostport, ':');
	int fd, one = 1, ret;
	char *end;
	long port;

	if (!colon || (size_t)(colon - hostport) >= sizeof(host))
		return -EINVAL;
	memcpy(host, hostport, (size_t)(colon - hostport));
	host[colon - hostport] = '\0';
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 0 || port > 65535 || inet_pton(AF_INET, host, &sin.sin_addr) != 1)
		return -EINVAL;
	/* Plaintext QMP has no authentication: never beyond this host (docs/SECURITY.md). */
	if (!tls && ntohl(sin.sin_addr.s_addr) >> 24 != 127) {
		log_err("tcp:%s: QMP over TCP without TLS listens on loopback (127.0.0.0/8) "
			"only; give --tls-x509-dir or --tls-psk-file",
			hostport);
		return -EADDRNOTAVAIL;
	}
	sin.sin_port = htons((uint16_t)port);
	fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sin, sizeof(sin)) || listen(fd, SOMAXCONN)) {
		ret = -errno;
		log_err("bind/listen tcp:%s: %s", hostport, strerror(errno));
		close(fd);
		return ret;
	}
	return fd;
}

int mon_listen_open(const char *spec, bool tls)
{
	if (!strncmp(spec, "unix:", 5))
		return mon_listen_unix(spec + 5);
	if (!strncmp(spec, "tcp:", 4))
		return mon_listen_tcp(spec + 4, tls);
	return -EINVAL;
}
