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

/* Each pair's directory (run-internal.h) and the sockets its server may create there. */
static const struct {
	const char *dir;
	const char *socks[2]; /* NULL: none */
} state_dir_pairs[RUN_NR_PAIRS] = {
	[RUN_PAIR_VCPU_MIGRATOR] = {"vcpu-mig", {"rpc"}},
	[RUN_PAIR_VCPU_MONITOR] = {"vcpu-mon", {"rpc", "events"}},
	[RUN_PAIR_MIGRATOR_MONITOR] = {"mig-mon", {"rpc", "events"}},
};

/* Which process serves each pair's sockets, and which one calls them. */
static const struct {
	enum sandbox_proc server, client;
} state_dir_pair_procs[RUN_NR_PAIRS] = {
	[RUN_PAIR_VCPU_MIGRATOR] = {SANDBOX_VCPU, SANDBOX_MIGRATOR},
	[RUN_PAIR_VCPU_MONITOR] = {SANDBOX_VCPU, SANDBOX_MONITOR},
	[RUN_PAIR_MIGRATOR_MONITOR] = {SANDBOX_MIGRATOR, SANDBOX_MONITOR},
};

bool run_pair_member(enum run_pair pair, enum sandbox_proc proc, bool *serves)
{
	*serves = state_dir_pair_procs[pair].server == proc;
	return *serves || state_dir_pair_procs[pair].client == proc;
}

enum sandbox_proc run_pair_server(enum run_pair pair)
{
	return state_dir_pair_procs[pair].server;
}

int run_state_dir_jail_bind(const struct run_state_dir *d, struct sandbox_jail *j,
			    enum sandbox_proc proc)
{
	bool serves;
	int ret = 0;

	for (unsigned int p = 0; p < RUN_NR_PAIRS && !ret; p++)
		if (run_pair_member(p, proc, &serves))
			ret = sandbox_jail_bind(j, d->pairs[p], serves, false);
	return ret;
}

int run_state_dir_pairs_own(const struct run_state_dir *d, uid_t base)
{
	for (unsigned int p = 0; p < RUN_NR_PAIRS; p++) {
		/* The server writes (creates its sockets), the pair's group enters and connects. */
		if (chown(d->pairs[p], run_ids_uid(base, run_pair_server(p)),
			  run_ids_pair_gid(base, p)) ||
		    chmod(d->pairs[p], 02770)) {
			int ret = -errno;

			log_err("state dir %s: owner of %s: %s", d->path, d->pairs[p],
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}

void run_state_dir_url(const struct run_state_dir *d, enum run_pair pair, const char *name,
		       char *buf, size_t len)
{
	snprintf(buf, len, "ipc://%s/%s", d->pairs[pair], name);
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

/*
 * A pair's directory inside the checked state dir @dir_fd: made 0700, or
 * (left by a run that was killed) taken when it is a directory we own,
 * never through a symbolic link.
 */
static int state_dir_pair_make(struct run_state_dir *d, int dir_fd, enum run_pair pair)
{
	const char *name = state_dir_pairs[pair].dir;
	struct stat st;
	int fd, ret = 0;

	if (mkdirat(dir_fd, name, 0700) && errno != EEXIST)
		goto err;
	fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		goto err;
	if (fstat(fd, &st)) {
		ret = -errno;
	} else if (st.st_uid != geteuid()) {
		log_err("state dir %s: %s is owned by uid %u: refusing it", d->path, name,
			(unsigned int)st.st_uid);
		ret = -EPERM;
	} else if (fchmod(fd, 0700)) {
		ret = -errno;
	}
	close(fd);
	if (ret) {
		if (ret != -EPERM)
			log_err("state dir %s: %s: %s", d->path, name, strerror(-ret));
		return ret;
	}
	/*
	 * Ours from here on: run_state_dir_remove removes what is named here.
	 * It fits: run_state_dir_create checked the longest socket path.
	 */
	if ((size_t)snprintf(d->pairs[pair], sizeof(d->pairs[pair]), "%s/%s", d->path, name) >=
	    sizeof(d->pairs[pair])) {
		d->pairs[pair][0] = '\0';
		return -ENAMETOOLONG;
	}
	return 0;
err:
	ret = errno == ENOTDIR || errno == ELOOP ? -EPERM : -errno;
	log_err("state dir %s: %s: %s", d->path, name,
		ret == -EPERM ? "not a directory (or a symbolic link)" : strerror(-ret));
	return ret;
}

int run_state_dir_create(struct run_state_dir *d, const char *path)
{
	char leaf[NAME_MAX + 1] = "";
	int dir_fd, parent_fd = -1, ret;

	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	/* The longest socket path inside must fit sun_path (the options check it too). */
	if (strlen(path) + 1 + strlen(RUN_STATE_SOCK_NAME) >= sizeof(d->path)) {
		log_err("state dir %s: too long for the sockets inside", path);
		return -ENAMETOOLONG;
	}
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
	for (unsigned int i = 0; i < RUN_NR_PAIRS; i++) {
		ret = state_dir_pair_make(d, dir_fd, i);
		if (ret) {
			close(dir_fd);
			close(parent_fd);
			run_state_dir_remove(d);
			return ret;
		}
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

	if (d->lock_fd < 0)
		return;
	/* Unlink while still holding the lock, so a new VM never loses its files. */
	for (unsigned int p = 0; p < RUN_NR_PAIRS; p++) {
		if (!d->pairs[p][0])
			continue;
		for (unsigned int i = 0; i < 2 && state_dir_pairs[p].socks[i]; i++) {
			snprintf(path, sizeof(path), "%s/%s", d->pairs[p], state_dir_pairs[p].socks[i]);
			if (unlink(path) && errno != ENOENT)
				log_warn("unlink %s: %s", path, strerror(errno));
		}
		if (rmdir(d->pairs[p]) && errno != ENOENT)
			log_warn("rmdir %s: %s", d->pairs[p], strerror(errno));
		d->pairs[p][0] = '\0';
	}
	snprintf(path, sizeof(path), "%s/lock", d->path);
	if (unlink(path) && errno != ENOENT)
		log_warn("unlink %s: %s", path, strerror(errno));
	close(d->lock_fd);
	d->lock_fd = -1;
	if (d->created && rmdir(d->path) && errno != ENOENT)
		log_warn("rmdir %s: %s", d->path, strerror(errno));
	d->created = false;
}
