// SPDX-License-Identifier: GPL-2.0-only
/* The state dir: where the children's ipc:// sockets live, one VM per dir. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"

/* Every file cleave's processes create in the state dir. */
static const char *const state_dir_files[] = {
	"vcpu.rpc", "vcpu.events", "migrator.rpc", "migrator.events", "lock",
};

void run_state_dir_path(const struct run_state_dir *d, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", d->path, name);
}

/*
 * The state dir's sockets take commands (RESUME, QUIT, state load), so
 * whoever can replace any directory on its path can take the VM: a user who
 * creates /tmp/cleave-<uid> before us could swap what is inside it.  Each
 * component is therefore opened from its parent with O_NOFOLLOW (no
 * symlinks), created 0700 when missing, and checked by fd once open: a
 * directory, owned by root or by us, and writable by no one else unless
 * sticky.  In a sticky directory (/tmp) others cannot rename or remove what
 * we own, and what they created before us fails its own check in turn.  The
 * state dir itself must be ours and is made 0700.  Every name then resolves
 * to what was checked for as long as its owners (root and we) keep it so.
 */

/* Why @st may not be on the path (@last: it is the state dir itself); NULL when it may. */
static const char *state_dir_refusal(const struct stat *st, bool last, char *why, size_t len)
{
	uid_t me = geteuid();

	if (!S_ISDIR(st->st_mode))
		return "not a directory";
	if (last && st->st_uid != me) {
		snprintf(why, len, "owned by uid %u, not by uid %u", (unsigned int)st->st_uid,
			 (unsigned int)me);
		return why;
	}
	if (st->st_uid != 0 && st->st_uid != me) {
		snprintf(why, len, "owned by uid %u, neither root nor uid %u",
			 (unsigned int)st->st_uid, (unsigned int)me);
		return why;
	}
	if (!last && (st->st_mode & (S_IWGRP | S_IWOTH)) && !(st->st_mode & S_ISVTX)) {
		snprintf(why, len, "writable by %s (mode %04o, not sticky)",
			 (st->st_mode & S_IWOTH) ? "everyone" : "its group",
			 (unsigned int)(st->st_mode & 07777));
		return why;
	}
	return NULL;
}

/*
 * Opens component @name of the state dir path inside @dirfd (@shown: the
 * path so far, for messages), creating it 0700 when missing (*@created),
 * and checks it.  Returns the fd or a negative errno, logged.
 */
static int state_dir_step(int dirfd, const char *name, const char *shown, const char *path,
			  bool last, bool *created)
{
	char why[96];
	const char *bad;
	struct stat st;
	int fd, ret;

	*created = false;
	if (mkdirat(dirfd, name, 0700) == 0) {
		*created = true;
	} else if (errno != EEXIST) {
		ret = -errno;
		log_err("state dir %s: mkdir %s: %s", path, shown, strerror(-ret));
		return ret;
	}
	fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		/* Say what is there instead: a symlink, a file. */
		if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) {
			log_err("state dir %s: %s is a symbolic link: give a path without "
				"symbolic links",
				path, shown);
			return -ELOOP;
		}
		if (ret == -ENOTDIR) {
			log_err("state dir %s: %s is not a directory", path, shown);
			return last ? -EPERM : -ENOTDIR;
		}
		log_err("state dir %s: open %s: %s", path, shown, strerror(-ret));
		return ret;
	}
	if (fstat(fd, &st)) {
		ret = -errno;
		log_err("state dir %s: fstat %s: %s", path, shown, strerror(-ret));
		goto err_fd;
	}
	bad = state_dir_refusal(&st, last, why, sizeof(why));
	if (bad) {
		log_err("state dir %s: %s is %s: refusing it", path, shown, bad);
		ret = -EPERM;
		goto err_fd;
	}
	if (last && (st.st_mode & 07777) != 0700 && fchmod(fd, 0700)) {
		ret = -errno;
		log_err("state dir %s: chmod 0700: %s", path, strerror(-ret));
		goto err_fd;
	}
	return fd;

err_fd:
	close(fd);
	return ret;
}

/*
 * Walks @path from / (a relative path from the working directory's real
 * path), component by component.  Returns the state dir's fd, its parent's
 * in *@parent_fd and the last component's name in @leaf, or a negative
 * errno, logged.
 */
static int state_dir_walk(const char *path, int *parent_fd, char *leaf, size_t leaf_len,
			  bool *created)
{
	char abs[PATH_MAX], shown[PATH_MAX], *name, *save, *next;
	const char *why;
	char buf[96];
	struct stat st;
	size_t off = 0;
	int fd, nfd, ret;

	*parent_fd = -1;
	if (path[0] == '/') {
		snprintf(abs, sizeof(abs), "%s", path);
	} else {
		if (!getcwd(abs, sizeof(abs)))
			return -errno;
		off = strlen(abs);
		snprintf(abs + off, sizeof(abs) - off, "/%s", path);
	}
	fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st)) {
		ret = -errno;
		log_err("state dir %s: open /: %s", path, strerror(-ret));
		goto err_fd;
	}
	why = state_dir_refusal(&st, false, buf, sizeof(buf));
	if (why) {
		log_err("state dir %s: / is %s: refusing it", path, why);
		ret = -EPERM;
		goto err_fd;
	}
	shown[0] = '\0';
	off = 0;
	name = strtok_r(abs, "/", &save);
	while (name) {
		next = strtok_r(NULL, "/", &save);
		if (!strcmp(name, ".")) {
			name = next;
			continue;
		}
		off += (size_t)snprintf(shown + off, sizeof(shown) - off, "/%s", name);
		if (!strcmp(name, "..")) {
			log_err("state dir %s: '..' in the path: give it without", path);
			ret = -EINVAL;
			goto err_fd;
		}
		nfd = state_dir_step(fd, name, shown, path, !next, created);
		if (nfd < 0) {
			ret = nfd;
			goto err_fd;
		}
		if (*parent_fd >= 0)
			close(*parent_fd);
		*parent_fd = fd;
		fd = nfd;
		snprintf(leaf, leaf_len, "%s", name);
		name = next;
	}
	if (*parent_fd < 0) {
		log_err("state dir %s: not a directory below /", path);
		ret = -EINVAL;
		goto err_fd;
	}
	return fd;

err_fd:
	if (fd >= 0)
		close(fd);
	if (*parent_fd >= 0)
		close(*parent_fd);
	*parent_fd = -1;
	return ret;
}

int run_state_dir_create(struct run_state_dir *d, const char *path)
{
	char leaf[NAME_MAX + 1] = "";
	int dir_fd, parent_fd = -1, ret;

	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	snprintf(d->path, sizeof(d->path), "%s", path);
	dir_fd = state_dir_walk(d->path, &parent_fd, leaf, sizeof(leaf), &d->created);
	if (dir_fd < 0)
		return dir_fd;

	d->lock_fd = openat(dir_fd, "lock", O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (d->lock_fd < 0) {
		ret = -errno;
		log_err("open %s/lock: %s", d->path, strerror(-ret));
		goto err_rmdir;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (ret == -EBUSY)
			log_err("state dir %s is in use by another cleave run (another --name or "
				"--state-dir?)",
				d->path);
		else
			log_err("flock %s/lock: %s", d->path, strerror(-ret));
		close(d->lock_fd);
		d->lock_fd = -1;
		goto err_rmdir;
	}
	close(dir_fd);
	close(parent_fd);
	return 0;

err_rmdir:
	/* Only the one we made, and the lock we made in it: from the fds we checked. */
	if (d->created) {
		unlinkat(dir_fd, "lock", 0);
		unlinkat(parent_fd, leaf, AT_REMOVEDIR);
	}
	d->created = false;
	close(dir_fd);
	close(parent_fd);
	return ret;
}

void run_state_dir_remove(struct run_state_dir *d)
{
	char path[RUN_SUN_PATH_MAX + 32];
	size_t i;

	if (d->lock_fd < 0)
		return;
	/* Unlink while still holding the lock, so a new VM never loses its files. */
	for (i = 0; i < sizeof(state_dir_files) / sizeof(state_dir_files[0]); i++) {
		run_state_dir_path(d, state_dir_files[i], path, sizeof(path));
		if (unlink(path) && errno != ENOENT)
			log_warn("unlink %s: %s", path, strerror(errno));
	}
	close(d->lock_fd);
	d->lock_fd = -1;
	if (d->created && rmdir(d->path) && errno != ENOENT)
		log_warn("rmdir %s: %s", d->path, strerror(errno));
	d->created = false;
}
