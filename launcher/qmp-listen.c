// SPDX-License-Identifier: GPL-2.0-only
/*
 * QMP listening sockets.  The launcher owns them so they outlive any one
 * cleave-monitor: a restarted monitor inherits the same socket and accepts
 * what queued in the backlog meanwhile.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"

/* Capped by net.core.somaxconn; 4096 is that cap's default. */
#define QMP_BACKLOG 4096

/*
 * A socket file is stale when nobody accepts on it: replace it then, but
 * never an in-use socket or something that is not a socket.
 */
static int qmp_unix_clear_stale(const char *path, const struct sockaddr_un *sa)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st)) {
		if (errno == ENOENT)
			return 0;
		ret = -errno;
		log_err("QMP socket %s: %s", path, strerror(-ret));
		return ret;
	}
	if (!S_ISSOCK(st.st_mode)) {
		log_err("QMP socket %s: exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sa, sizeof(*sa));
	close(fd);
	if (ret == 0) {
		log_err("QMP socket %s: in use by a running process", path);
		return -EADDRINUSE;
	}
	if (unlink(path) && errno != ENOENT) {
		ret = -errno;
		log_err("unlink stale QMP socket %s: %s", path, strerror(-ret));
		return ret;
	}
	return 0;
}

static int qmp_listen_unix(const struct run_endpoint *ep, int *fdp)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	mode_t old_umask;
	int fd, ret;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ep->path);
	ret = qmp_unix_clear_stale(ep->path, &sa);
	if (ret)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		log_err("socket for QMP %s: %s", ep->text, strerror(-ret));
		return ret;
	}
	/* QMP has no authentication: the file mode is the access control. */
	old_umask = umask(0177);
	ret = bind(fd, (const struct sockaddr *)&sa, sizeof(sa));
	umask(old_umask);
	if (ret) {
		ret = -errno;
		log_err("bind QMP %s: %s", ep->text, strerror(-ret));
		goto err_close;
	}
	if (listen(fd, QMP_BACKLOG)) {
		ret = -errno;
		log_err("listen QMP %s: %s", ep->text, strerror(-ret));
		unlink(ep->path);
		goto err_close;
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}

static int qmp_listen_tcp(const struct run_endpoint *ep, int *fdp)
{
	struct sockaddr_in sa = {
		.sin_family = AF_INET,
		.sin_port = htons(ep->port),
		.sin_addr.s_addr = htonl(ep->addr),
	};
	int fd, ret, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		ret = -errno;
		log_err("socket for QMP %s: %s", ep->text, strerror(-ret));
		return ret;
	}
	/* A previous VM's TIME_WAIT connections must not block a restart. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one))) {
		ret = -errno;
		log_err("SO_REUSEADDR QMP %s: %s", ep->text, strerror(-ret));
		goto err_close;
	}
	if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa))) {
		ret = -errno;
		log_err("bind QMP %s: %s", ep->text, strerror(-ret));
		goto err_close;
	}
	if (listen(fd, QMP_BACKLOG)) {
		ret = -errno;
		log_err("listen QMP %s: %s", ep->text, strerror(-ret));
		goto err_close;
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}

int run_qmp_listen(const struct run_endpoint *ep, int *fd)
{
	return ep->kind == RUN_EP_UNIX ? qmp_listen_unix(ep, fd) : qmp_listen_tcp(ep, fd);
}

void run_qmp_close(const struct run_endpoint *ep, int fd)
{
	if (fd < 0)
		return;
	close(fd);
	if (ep->kind == RUN_EP_UNIX && unlink(ep->path) && errno != ENOENT)
		log_warn("unlink %s: %s", ep->path, strerror(errno));
}
