// SPDX-License-Identifier: GPL-2.0-only
/*
 * The jail of a child, built between fork and exec (launcher/spawn.c):
 * its own mount, IPC and (when it needs no network) network namespace, and a
 * root that is an empty read-only tmpfs with only the paths it needs bound
 * in at their usual absolute paths.
 *
 * Everything here runs in a forked child of a process that may have other
 * threads: syscalls and stack buffers only, no allocation, no stdio.
 *
 * The mount API with fds (open_tree, fsopen, move_mount) lets us take every
 * source before the new root exists: where the staging tmpfs is attached
 * cannot shadow a source, and no path needs joining.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/nsfs.h>

#include "sandbox/sandbox.h"

/* Attach point of the staging tmpfs; it is the new root after pivot_root. */
static const char *const sb_stage_dirs[] = {"/tmp", "/mnt", "/media"};

/* Top-level entries that are symlinks into /usr on merged-/usr systems. */
static const char *const sb_top_links[] = {"/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"};

/* Always bound: the loader and shared libraries, a few device nodes. */
static const struct sandbox_bind sb_common_binds[] = {
	{.path = "/usr"},
	{.path = "/etc/ld.so.cache", .optional = true},
	{.path = "/dev/null", .writable = true},
	{.path = "/dev/zero", .writable = true},
	{.path = "/dev/urandom", .writable = true},
};

#define SB_MAX_TREES                                                                               \
	(SANDBOX_JAIL_MAX_BINDS + sizeof(sb_common_binds) / sizeof(sb_common_binds[0]) +           \
	 sizeof(sb_top_links) / sizeof(sb_top_links[0]) + 1)

struct sb_tree {
	const char *path; /* absolute target path, also the source */
	int fd;		  /* open_tree clone, -1 when skipped */
	bool dir;
};

static size_t sb_strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* "jail: <step> <path>: errno N" on stderr: async-signal-safe, errno as a number. */
static void sb_report(const char *step, const char *path, int err)
{
	char msg[PATH_MAX + 96];
	size_t off = 0, i;
	const char *parts[] = {"jail: ", step, " ", path ? path : "", ": errno ", NULL};
	char num[12];
	int n = 0, e = err;

	for (i = 0; parts[i]; i++) {
		size_t len = sb_strlen(parts[i]);

		if (off + len >= sizeof(msg) - 16)
			break;
		memcpy(msg + off, parts[i], len);
		off += len;
	}
	do
		num[n++] = (char)('0' + e % 10);
	while ((e /= 10) && n < (int)sizeof(num));
	while (n)
		msg[off++] = num[--n];
	msg[off++] = '\n';
	if (write(STDERR_FILENO, msg, off) < 0)
		(void)0;
}

/* Reports a failed step; returns -@err. */
static int sb_fail(const char *step, const char *path, int err)
{
	sb_report(step, path, err);
	return -err;
}

/* mkdir -p of @rel (relative, no leading '/') inside @dirfd; the last
 * component is a directory when @dir, else an empty file (a mount point). */
static int sb_mkpath(int dirfd, const char *rel, bool dir)
{
	char buf[PATH_MAX];
	size_t len = sb_strlen(rel), i;

	if (len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, rel, len + 1);
	for (i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		buf[i] = '\0';
		if (i == len && !dir) {
			if (mknodat(dirfd, buf, S_IFREG | 0600, 0) && errno != EEXIST)
				return -errno;
		} else if (mkdirat(dirfd, buf, 0755) && errno != EEXIST) {
			return -errno;
		}
		if (i < len)
			buf[i] = '/';
	}
	return 0;
}

/* A detached clone of @path, read-only unless @writable. */
static int sb_tree_take(struct sb_tree *t, const char *path, bool writable, bool optional)
{
	struct mount_attr attr = {.attr_set = MOUNT_ATTR_NOSUID};
	struct stat st;

	t->path = path;
	t->fd = open_tree(AT_FDCWD, path, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
	if (t->fd < 0) {
		if (errno == ENOENT && optional)
			return 0;
		return sb_fail("open_tree", path, errno);
	}
	if (fstat(t->fd, &st))
		return sb_fail("fstat", path, errno);
	t->dir = S_ISDIR(st.st_mode);
	if (!writable)
		attr.attr_set |= MOUNT_ATTR_RDONLY;
	if (mount_setattr(t->fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof(attr)))
		return sb_fail("mount_setattr", path, errno);
	return 0;
}

static int sb_tree_place(int root, const struct sb_tree *t)
{
	int ret;

	if (t->fd < 0)
		return 0;
	ret = sb_mkpath(root, t->path + 1, t->dir);
	if (ret)
		return sb_fail("mkdir", t->path, -ret);
	if (move_mount(t->fd, "", root, t->path + 1, MOVE_MOUNT_F_EMPTY_PATH))
		return sb_fail("move_mount", t->path, errno);
	return 0;
}

/* A fresh tmpfs (the root), as a detached mount fd. */
static int sb_fs_new(const char *type, unsigned int attrs)
{
	int fs, mnt;

	fs = fsopen(type, FSOPEN_CLOEXEC);
	if (fs < 0)
		return sb_fail("fsopen", type, errno);
	if (!strcmp(type, "tmpfs") && (fsconfig(fs, FSCONFIG_SET_STRING, "mode", "0755", 0) ||
				       fsconfig(fs, FSCONFIG_SET_STRING, "size", "1m", 0))) {
		close(fs);
		return sb_fail("fsconfig", type, errno);
	}
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
		close(fs);
		return sb_fail("fsconfig create", type, errno);
	}
	mnt = fsmount(fs, FSMOUNT_CLOEXEC, attrs);
	close(fs);
	if (mnt < 0)
		return sb_fail("fsmount", type, errno);
	return mnt;
}

/*
 * This PID namespace's own /proc, read-only.  hidepid=ptraceable: a process
 * sees only the /proc/<pid> it may ptrace, and every cleave process clears
 * its dumpable flag, so a child sees itself alone.  Not hidepid=invisible:
 * that one exempts members of the gid= group, 0 by default, and jailed
 * children run as root.  subset=pid: no /proc/sys, /proc/kcore,
 * /proc/sysrq-trigger and the like.  Both since Linux 5.8 (the jail needs
 * 5.12 for mount_setattr); should one be refused, /proc goes without it and
 * says so on stderr.
 */
static int sb_proc_new(void)
{
	int fs, mnt;

	fs = fsopen("proc", FSOPEN_CLOEXEC);
	if (fs < 0)
		return sb_fail("fsopen", "proc", errno);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "hidepid", "ptraceable", 0))
		sb_report("/proc shows every process: fsconfig hidepid=ptraceable", "/proc", errno);
	if (fsconfig(fs, FSCONFIG_SET_STRING, "subset", "pid", 0))
		sb_report("/proc shows more than processes: fsconfig subset=pid", "/proc", errno);
	if (fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0)) {
		close(fs);
		return sb_fail("fsconfig create", "proc", errno);
	}
	mnt = fsmount(fs, FSMOUNT_CLOEXEC,
		      MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	close(fs);
	if (mnt < 0)
		return sb_fail("fsmount", "proc", errno);
	return mnt;
}

static int sb_stage_attach(int root)
{
	unsigned int i;
	int err = ENOENT;

	for (i = 0; i < sizeof(sb_stage_dirs) / sizeof(sb_stage_dirs[0]); i++) {
		if (move_mount(root, "", AT_FDCWD, sb_stage_dirs[i], MOVE_MOUNT_F_EMPTY_PATH) == 0)
			return 0;
		err = errno;
	}
	return sb_fail("move_mount", "staging root", err);
}

int sandbox_jail_bind(struct sandbox_jail *j, const char *path, bool writable, bool optional)
{
	if (j->nr_binds == SANDBOX_JAIL_MAX_BINDS)
		return -E2BIG;
	j->binds[j->nr_binds++] =
		(struct sandbox_bind){.path = path, .writable = writable, .optional = optional};
	return 0;
}

unsigned long sandbox_jail_unshare_flags(const struct sandbox_jail *j)
{
	if (!j || !j->enabled)
		return 0;
	return CLONE_NEWNS | CLONE_NEWIPC | (j->new_net && j->net_ns_fd < 0 ? CLONE_NEWNET : 0);
}

int sandbox_jail_net_ns(struct sandbox_jail *j, const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	/* NS_GET_NSTYPE: only an nsfs file answers it, with its kind. */
	if (ioctl(fd, NS_GET_NSTYPE) != CLONE_NEWNET) {
		close(fd);
		return -EINVAL;
	}
	if (j->net_ns_fd >= 0)
		close(j->net_ns_fd);
	/*
	 * Kept above the fd numbers a child is handed (3, 4, ...: spawn dup2()s
	 * onto them before the jail is applied), so none of them replaces it.
	 */
	j->net_ns_fd = fcntl(fd, F_DUPFD_CLOEXEC, SANDBOX_JAIL_NS_FD_MIN);
	close(fd);
	return j->net_ns_fd < 0 ? -errno : 0;
}

int sandbox_jail_ids(struct sandbox_jail *j, uid_t uid, gid_t gid, const gid_t *groups,
		     unsigned int nr_groups)
{
	if (!uid || !gid)
		return -EINVAL;
	if (nr_groups > SANDBOX_JAIL_MAX_GROUPS)
		return -E2BIG;
	j->set_ids = true;
	j->uid = uid;
	j->gid = gid;
	memcpy(j->groups, groups, nr_groups * sizeof(*groups));
	j->nr_groups = nr_groups;
	return 0;
}

/* After the capability sets are emptied: CAP_SETUID/SETGID are still effective until here. */
static int sb_ids_apply(const struct sandbox_jail *j)
{
	if (!j->set_ids)
		return 0;
	/* Raw syscalls: glibc's wrappers signal every thread, and we are a forked child. */
	if (syscall(SYS_setgroups, (size_t)j->nr_groups, j->groups))
		return sb_fail("setgroups", NULL, errno);
	if (syscall(SYS_setresgid, j->gid, j->gid, j->gid))
		return sb_fail("setresgid", NULL, errno);
	if (syscall(SYS_setresuid, j->uid, j->uid, j->uid))
		return sb_fail("setresuid", NULL, errno);
	umask(007);
	return 0;
}

void sandbox_jail_fini(struct sandbox_jail *j)
{
	if (j->enabled && j->net_ns_fd >= 0)
		close(j->net_ns_fd);
	j->net_ns_fd = -1;
}

int sandbox_jail_apply(const struct sandbox_jail *j)
{
	struct sb_tree trees[SB_MAX_TREES];
	char links[sizeof(sb_top_links) / sizeof(sb_top_links[0])][64];
	struct mount_attr ro = {.attr_set = MOUNT_ATTR_RDONLY};
	unsigned int nr = 0, i;
	int root = -1, proc = -1, ret = 0;

	if (!j)
		return 0;
	if (!j->enabled)
		return sandbox_caps_drop_for_exec();
	if (unshare((int)sandbox_jail_unshare_flags(j)))
		return sb_fail("unshare", NULL, errno);
	if (j->net_ns_fd >= 0 && setns(j->net_ns_fd, CLONE_NEWNET))
		return sb_fail("setns", "network namespace", errno);
	/* Nothing we mount may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return sb_fail("mount private", "/", errno);

	for (i = 0; i < sizeof(sb_common_binds) / sizeof(sb_common_binds[0]) && !ret; i++)
		ret = sb_tree_take(&trees[nr++], sb_common_binds[i].path,
				   sb_common_binds[i].writable, sb_common_binds[i].optional);
	for (i = 0; i < j->nr_binds && !ret; i++)
		ret = sb_tree_take(&trees[nr++], j->binds[i].path, j->binds[i].writable,
				   j->binds[i].optional);
	if (!ret && j->exe[0])
		ret = sb_tree_take(&trees[nr++], j->exe, false, false);
	/* /lib -> usr/lib and friends: a symlink here is a symlink there. */
	for (i = 0; i < sizeof(sb_top_links) / sizeof(sb_top_links[0]) && !ret; i++) {
		ssize_t n = readlink(sb_top_links[i], links[i], sizeof(links[i]) - 1);

		links[i][n > 0 ? n : 0] = '\0';
		if (n < 0 && errno == EINVAL) /* a real directory: bind it */
			ret = sb_tree_take(&trees[nr++], sb_top_links[i], false, true);
	}
	if (ret)
		goto out;

	root = sb_fs_new("tmpfs", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
	if (root < 0) {
		ret = root;
		goto out;
	}
	ret = sb_stage_attach(root);
	for (i = 0; i < nr && !ret; i++)
		ret = sb_tree_place(root, &trees[i]);
	for (i = 0; i < sizeof(sb_top_links) / sizeof(sb_top_links[0]) && !ret; i++)
		if (links[i][0] && symlinkat(links[i], root, sb_top_links[i] + 1))
			ret = sb_fail("symlink", sb_top_links[i], errno);
	if (ret)
		goto out;
	/* This PID namespace's own /proc: only cleave's processes are in it. */
	proc = sb_proc_new();
	if (proc < 0) {
		ret = proc;
		goto out;
	}
	if (mkdirat(root, "proc", 0555) ||
	    move_mount(proc, "", root, "proc", MOVE_MOUNT_F_EMPTY_PATH)) {
		ret = sb_fail("mount", "/proc", errno);
		goto out;
	}
	if (mount_setattr(root, "", AT_EMPTY_PATH, &ro, sizeof(ro))) {
		ret = sb_fail("mount_setattr ro", "/", errno);
		goto out;
	}
	/* pivot_root(".", ".") stacks the old root on the new; detach it. */
	if (fchdir(root) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) ||
	    chdir("/")) {
		ret = sb_fail("pivot_root", NULL, errno);
		goto out;
	}
	ret = sandbox_caps_drop_for_exec();
	if (ret)
		sb_fail("dropping capabilities", NULL, -ret);
	if (!ret)
		ret = sb_ids_apply(j);
out:
	for (i = 0; i < nr; i++)
		if (trees[i].fd >= 0)
			close(trees[i].fd);
	if (proc >= 0)
		close(proc);
	if (root >= 0)
		close(root);
	return ret;
}

int sandbox_jail_init(struct sandbox_jail *j, enum sandbox_proc proc, const char *exe)
{
	static const char *const etc_net[] = {"/etc/hosts", "/etc/nsswitch.conf",
					      "/etc/resolv.conf", "/etc/host.conf",
					      "/etc/gai.conf"};
	unsigned int i;
	int ret = 0;

	memset(j, 0, sizeof(*j));
	j->net_ns_fd = -1;
	if (!realpath(exe, j->exe))
		return -errno;
	j->enabled = true;
	/* The monitor's TCP listeners are inherited: they work from any netns. */
	j->new_net = proc != SANDBOX_MIGRATOR;
	/* Not /dev/userfaultfd: cleave run hands cleave-vcpu an fd of it. */
	if (proc == SANDBOX_VCPU)
		ret = sandbox_jail_bind(j, "/dev/kvm", true, false);
	for (i = 0; !ret && proc == SANDBOX_MIGRATOR && i < sizeof(etc_net) / sizeof(etc_net[0]);
	     i++)
		ret = sandbox_jail_bind(j, etc_net[i], false, true);
	return ret;
}

/*
 * The launcher's own PID namespace, to make its later children (a
 * sanitizer's helper threads at exit) be born there again once the
 * children's namespace is gone.  The launcher's only: set once.
 */
static int sb_host_pidns = -1;

int sandbox_jail_pid_ns_create(int *holder_pidfd)
{
	sigset_t all;
	pid_t p;
	int fd;

	sb_host_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
	if (sb_host_pidns < 0)
		return -errno;
	if (unshare(CLONE_NEWPID)) {
		int ret = -errno;

		close(sb_host_pidns);
		sb_host_pidns = -1;
		return ret;
	}
	p = fork();
	if (p < 0)
		return -errno;
	if (p == 0) {
		/* PID 1: holds the namespace open, nothing else (no fds, no signals). */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close_range(0, ~0U, 0);
		sigfillset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		for (;;)
			pause();
	}
	fd = (int)syscall(SYS_pidfd_open, p, 0);
	if (fd < 0) {
		int ret = -errno;

		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		return ret;
	}
	*holder_pidfd = fd;
	return 0;
}

void sandbox_jail_pid_ns_destroy(int holder_pidfd)
{
	siginfo_t si;

	if (holder_pidfd < 0)
		return;
	syscall(SYS_pidfd_send_signal, holder_pidfd, SIGKILL, NULL, 0);
	while (waitid(P_PIDFD, (id_t)holder_pidfd, &si, WEXITED) && errno == EINTR)
		;
	close(holder_pidfd);
	/* A namespace without its init takes no new process: back to our own. */
	if (sb_host_pidns >= 0) {
		setns(sb_host_pidns, CLONE_NEWPID);
		close(sb_host_pidns);
		sb_host_pidns = -1;
	}
}

/* A throw-away child tries the namespaces and a tmpfs: the real answer. */
bool sandbox_jail_supported(void)
{
	int status;
	pid_t p;

	if (geteuid() != 0)
		return false;
	p = fork();
	if (p < 0)
		return false;
	if (p == 0) {
		int fd;

		/* Mounts are what containers refuse; a netns would only add cost. */
		if (unshare(CLONE_NEWNS) || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
			_exit(1);
		fd = fsopen("tmpfs", FSOPEN_CLOEXEC);
		_exit(fd < 0 || fsconfig(fd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) ? 1 : 0);
	}
	if (waitpid(p, &status, 0) != p)
		return false;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}
