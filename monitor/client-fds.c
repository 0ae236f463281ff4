// SPDX-License-Identifier: GPL-2.0-only
/*
 * A QMP client's file descriptors (docs/QMP.md, "getfd and fd: URIs"): the
 * one that came with its input (SCM_RIGHTS on a unix socket) and the ones
 * getfd named.  They belong to the connection, as QEMU's belong to its
 * monitor, and are closed with it.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/fd-link.h"
#include "monitor/server-internal.h"

void mon_client_fds_fini(struct mon_client *c)
{
	size_t i;

	if (c->pending_fd >= 0)
		close(c->pending_fd);
	c->pending_fd = -1;
	for (i = 0; i < c->nr_fds; i++) {
		close(c->fds[i].fd);
		free(c->fds[i].name);
	}
	c->nr_fds = 0;
}

void mon_client_fds_received(struct mon_client *c, struct msghdr *mh)
{
	struct cmsghdr *cm;

	if (mh->msg_flags & MSG_CTRUNC)
		log_debug("client %llu: more fds than one: the rest dropped",
			  (unsigned long long)c->id);
	for (cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
		size_t n, i;
		int fd;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < n; i++) {
			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			/* One per message kept, the newest (QEMU's getfd takes the last one read).
			 */
			if (i) {
				close(fd);
				continue;
			}
			if (c->pending_fd >= 0)
				close(c->pending_fd);
			c->pending_fd = fd;
		}
	}
}

/* Whether @c's framer holds nothing but white space: no message, whole or begun. */
static bool mon_client_input_empty(const struct mon_client *c)
{
	size_t i;

	for (i = c->in.start; i < c->in.len; i++) {
		char ch = c->in.buf[i];

		if (ch != ' ' && ch != '\t' && ch != '\r' && ch != '\n')
			return false;
	}
	return true;
}

void mon_client_fds_settle(struct mon_client *c)
{
	if (c->pending_fd < 0 || c->busy || c->inband_nr || !mon_client_input_empty(c))
		return;
	/* Every message that came with it has run and none was getfd. */
	log_debug("client %llu: fd %d passed without getfd: closed", (unsigned long long)c->id,
		  c->pending_fd);
	close(c->pending_fd);
	c->pending_fd = -1;
}

static struct mon_named_fd *mon_client_fd_find(struct mon_client *c, const char *name)
{
	size_t i;

	for (i = 0; i < c->nr_fds; i++)
		if (!strcmp(c->fds[i].name, name))
			return &c->fds[i];
	return NULL;
}

static void mon_client_fd_remove(struct mon_client *c, struct mon_named_fd *nf)
{
	free(nf->name);
	*nf = c->fds[--c->nr_fds];
}

/* QEMU 7.2's qmp_getfd(): the fd first, then the name. */
static void mon_client_getfd(struct mon_client *c, const char *name, struct mon_result *res)
{
	struct mon_named_fd *nf;
	int fd = c->pending_fd;
	char *copy;

	if (fd < 0) {
		mon_result_error(res, NULL, "No file descriptor supplied via SCM_RIGHTS");
		return;
	}
	c->pending_fd = -1;
	if (name[0] >= '0' && name[0] <= '9') {
		close(fd);
		mon_result_error(res, NULL,
				 "Parameter 'fdname' expects a name not starting with a digit");
		return;
	}
	/*
	 * cleave's own bound: a named fd is only good for "fd:NAME", so the
	 * name must be one the migrator takes (QEMU takes any).
	 */
	if (!mon_fdlink_name_ok(name)) {
		close(fd);
		mon_result_error(res, NULL,
				 "Parameter 'fdname' expects a name of 1 to %d bytes without ':' "
				 "or ',' (cleave uses named fds only for fd: migration URIs)",
				 MON_FDNAME_MAX);
		return;
	}
	nf = mon_client_fd_find(c, name);
	if (nf) {
		/* QEMU replaces the fd of an existing name. */
		close(nf->fd);
		nf->fd = fd;
		res->ret = json_object();
		return;
	}
	if (c->nr_fds == MON_FDS_MAX) {
		close(fd);
		mon_result_error(res, NULL,
				 "Too many file descriptors on this QMP connection: %d (closefd "
				 "one first)",
				 MON_FDS_MAX);
		return;
	}
	copy = strdup(name);
	if (!copy) {
		close(fd);
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	c->fds[c->nr_fds].name = copy;
	c->fds[c->nr_fds].fd = fd;
	c->nr_fds++;
	res->ret = json_object();
}

static void mon_client_closefd(struct mon_client *c, const char *name, struct mon_result *res)
{
	struct mon_named_fd *nf = mon_client_fd_find(c, name);

	if (!nf) {
		mon_result_error(res, NULL, "File descriptor named '%s' not found", name);
		return;
	}
	close(nf->fd);
	mon_client_fd_remove(c, nf);
	res->ret = json_object();
}

void mon_client_fd_cmd(struct mon_client *c, const struct mon_request *req, struct mon_result *res)
{
	const char *name = json_string_value(json_object_get(req->args, "fdname"));

	if (!strcmp(req->cmd->name, "getfd"))
		mon_client_getfd(c, name, res);
	else
		mon_client_closefd(c, name, res);
}

int mon_client_fd_uri(struct mon_server *s, struct mon_client *c, const struct mon_request *req,
		      struct mon_job *job, struct mon_result *res)
{
	const char *uri = json_string_value(json_object_get(req->args, "uri"));
	bool incoming = !strcmp(req->cmd->name, "migrate-incoming");
	struct mon_named_fd *nf;
	const char *name, *p;

	if (!uri || strncmp(uri, "fd:", 3))
		return 0;
	name = uri + 3;
	/* QEMU's migrate-incoming reads a name starting with a digit as an fd number. */
	if (incoming && name[0] >= '0' && name[0] <= '9') {
		for (p = name; *p >= '0' && *p <= '9'; p++)
			;
		if (*p)
			return mon_result_error(res, NULL, "Invalid file descriptor number '%s'",
						name);
		return mon_result_error(res, NULL,
					"fd:%s: cleave-monitor inherits no file descriptors to "
					"name by number; pass one with getfd and use fd:NAME",
					name);
	}
	nf = mon_client_fd_find(c, name);
	if (!nf)
		return mon_result_error(res, NULL, "File descriptor named '%s' has not been found",
					name);
	if (s->ctx.fd_link < 0)
		return mon_result_error(res, NULL,
					"fd:%s: this cleave-monitor has no fd link to the migrator "
					"(cleave run gives it one: --fd-link-fd)",
					name);
	/* As QEMU's migrate: the name is used up, the fd goes with the migration. */
	job->fd_name = strdup(name);
	if (!job->fd_name)
		return mon_result_error(res, NULL, "out of memory");
	job->fd = nf->fd;
	mon_client_fd_remove(c, nf);
	return 0;
}
