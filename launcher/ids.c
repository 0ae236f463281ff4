// SPDX-License-Identifier: GPL-2.0-only
/*
 * --uid-base N: each child runs as a user of its own, so the kernel's own
 * checks (signals, ptrace, /proc, file modes) separate the children even
 * where the jail and the policies would not.  The operator reserves the
 * range N .. N + RUN_IDS_PER_VM - 1 for the VM, as for a container's
 * subordinate ids.
 */
#include <errno.h>
#include <grp.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"

uid_t run_ids_uid(uid_t base, enum sandbox_proc proc)
{
	switch (proc) {
	case SANDBOX_VCPU:
		return base;
	case SANDBOX_MIGRATOR:
		return base + 1;
	default:
		return base + 2;
	}
}

gid_t run_ids_pair_gid(uid_t base, enum run_pair pair)
{
	return base + 3 + (gid_t)pair;
}

/*
 * The group through which @proc's user may open device @path, added to
 * @groups; nothing when the device is absent or open to all.
 */
static int ids_device_group(uid_t uid, const char *path, gid_t *groups, unsigned int *n)
{
	struct stat st;

	/* An absent /dev/kvm was refused by the preflight already. */
	if (stat(path, &st))
		return errno == ENOENT ? 0 : -errno;
	if ((st.st_mode & 06) == 06 || (st.st_uid == uid && (st.st_mode & 0600) == 0600))
		return 0;
	if ((st.st_mode & 060) != 060) {
		log_err("--uid-base: %s is mode %04o, owner %u: uid %u cannot open it read-write "
			"(give its group rw, as udev does for group kvm)",
			path, (unsigned int)(st.st_mode & 07777), (unsigned int)st.st_uid,
			(unsigned int)uid);
		return -EACCES;
	}
	groups[(*n)++] = st.st_gid;
	return 0;
}

/* The groups of @proc's pairs into @groups; their count. */
static unsigned int ids_pair_groups(uid_t base, enum sandbox_proc proc, gid_t *groups)
{
	unsigned int n = 0;
	bool serves;

	for (unsigned int p = 0; p < RUN_NR_PAIRS; p++)
		if (run_pair_member(p, proc, &serves))
			groups[n++] = run_ids_pair_gid(base, p);
	return n;
}

gid_t run_ids_share_gid(const char *dir)
{
	struct stat st;

	/* Never root's group: joining it would open whatever root's group may read. */
	if (!dir || !dir[0] || stat(dir, &st) || !S_ISDIR(st.st_mode) || !st.st_gid ||
	    (st.st_mode & (S_ISGID | S_IWGRP | S_IXGRP)) != (S_ISGID | S_IWGRP | S_IXGRP))
		return 0;
	return st.st_gid;
}

int run_ids_jail(struct sandbox_jail *j, enum sandbox_proc proc, uid_t base, gid_t share_gid)
{
	gid_t groups[SANDBOX_JAIL_MAX_GROUPS];
	uid_t uid = run_ids_uid(base, proc);
	unsigned int n = ids_pair_groups(base, proc, groups);
	int ret;

	if (share_gid && proc == SANDBOX_MIGRATOR)
		groups[n++] = share_gid;

	if (proc == SANDBOX_VCPU) {
		/* /dev/userfaultfd comes as an fd from cleave run: no group for it. */
		ret = ids_device_group(uid, "/dev/kvm", groups, &n);
		if (ret)
			return ret;
	}
	return sandbox_jail_ids(j, uid, uid, groups, n);
}

int run_ids_launcher(uid_t base)
{
	gid_t groups[RUN_NR_PAIRS];

	for (unsigned int p = 0; p < RUN_NR_PAIRS; p++)
		groups[p] = run_ids_pair_gid(base, p);
	if (setgroups(RUN_NR_PAIRS, groups)) {
		int ret = -errno;

		log_err("--uid-base: setgroups: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

int run_ids_access(uid_t base, enum sandbox_proc proc, gid_t share_gid, const char *path, int mode)
{
	gid_t groups[SANDBOX_JAIL_MAX_GROUPS];
	uid_t uid = run_ids_uid(base, proc);
	unsigned int n = ids_pair_groups(base, proc, groups);
	int status;
	pid_t pid;

	if (share_gid && proc == SANDBOX_MIGRATOR)
		groups[n++] = share_gid;
	pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* The kernel's own check as that user: ACLs and every directory on the way count.
		 */
		if (setgroups(n, groups) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
			_exit(EPERM);
		_exit(access(path, mode) ? errno : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -ECHILD;
	return -WEXITSTATUS(status);
}
