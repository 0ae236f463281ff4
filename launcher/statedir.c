// SPDX-License-Identifier: GPL-2.0-only
/* The state dir: where the children's ipc:// sockets live, one VM per dir. */
#include <errno.h>
#include <fcntl.h>
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

/* mkdir -p of @path's parents, mode 0700 for the ones we create. */
static int state_dir_mkparents(const char *path)
{
	char tmp[RUN_SUN_PATH_MAX];
	char *p;

	snprintf(tmp, sizeof(tmp), "%s", path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0700) && errno != EEXIST) {
			int ret = -errno;

			log_err("mkdir %s: %s", tmp, strerror(-ret));
			return ret;
		}
		*p = '/';
	}
	return 0;
}

int run_state_dir_create(struct run_state_dir *d, const char *path)
{
	char lock[RUN_SUN_PATH_MAX + 8];
	struct stat st;
	int ret;

	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	snprintf(d->path, sizeof(d->path), "%s", path);
	ret = state_dir_mkparents(d->path);
	if (ret)
		return ret;
	if (mkdir(d->path, 0700) == 0) {
		d->created = true;
	} else if (errno != EEXIST) {
		ret = -errno;
		log_err("mkdir %s: %s", d->path, strerror(-ret));
		return ret;
	}
	/* The sockets inside accept commands: only a dir of ours, closed to others. */
	if (lstat(d->path, &st)) {
		ret = -errno;
		log_err("state dir %s: %s", d->path, strerror(-ret));
		goto err_rmdir;
	}
	if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid()) {
		log_err("state dir %s: not a directory owned by uid %u", d->path,
			(unsigned int)geteuid());
		ret = -EPERM;
		goto err_rmdir;
	}
	if ((st.st_mode & 0777) != 0700 && chmod(d->path, 0700)) {
		ret = -errno;
		log_err("chmod 0700 %s: %s", d->path, strerror(-ret));
		goto err_rmdir;
	}

	run_state_dir_path(d, "lock", lock, sizeof(lock));
	d->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (d->lock_fd < 0) {
		ret = -errno;
		log_err("open %s: %s", lock, strerror(-ret));
		goto err_rmdir;
	}
	if (flock(d->lock_fd, LOCK_EX | LOCK_NB)) {
		ret = errno == EWOULDBLOCK ? -EBUSY : -errno;
		if (ret == -EBUSY)
			log_err("state dir %s is in use by another cleave run (another --name or "
				"--state-dir?)",
				d->path);
		else
			log_err("flock %s: %s", lock, strerror(-ret));
		close(d->lock_fd);
		d->lock_fd = -1;
		goto err_rmdir;
	}
	return 0;

err_rmdir:
	if (d->created)
		rmdir(d->path);
	d->created = false;
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
