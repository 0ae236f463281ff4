// SPDX-License-Identifier: GPL-2.0-only
/*
 * sandbox_enter(): what each process does to itself once init is over.
 * Order matters: rlimits and the bounding set need privileges we drop
 * next; no_new_privs comes before seccomp (an unprivileged filter needs it).
 */
#include <errno.h>
#include <execinfo.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log/log.h"
#include "sandbox/policy-internal.h"

#define SB_NOFILE 4096	/* > 1000 QMP clients; vCPU fds; NNG pipes */
#define SB_NPROC  16384 /* threads count too; fork is refused by seccomp anyway */

const struct sandbox_policy *sandbox_policy_get(enum sandbox_proc proc)
{
	switch (proc) {
	case SANDBOX_LAUNCHER:
		return &sandbox_policy_launcher;
	case SANDBOX_VCPU:
		return &sandbox_policy_vcpu;
	case SANDBOX_MIGRATOR:
		return &sandbox_policy_migrator;
	case SANDBOX_MONITOR:
		return &sandbox_policy_monitor;
	default:
		return NULL;
	}
}

/* Lowers @res to at most @max (soft and hard); never raises anything. */
static int sb_rlimit_cap(int res, const char *name, rlim_t max)
{
	struct rlimit rl;

	if (getrlimit(res, &rl))
		return -errno;
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max <= max && rl.rlim_cur <= max)
		return 0;
	if (rl.rlim_max == RLIM_INFINITY || rl.rlim_max > max)
		rl.rlim_max = max;
	/* The monitor raised its soft NOFILE to the hard limit: keep what fits. */
	if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > rl.rlim_max)
		rl.rlim_cur = rl.rlim_max;
	if (setrlimit(res, &rl)) {
		int ret = -errno;

		log_err("setrlimit %s %llu: %s", name, (unsigned long long)max, strerror(-ret));
		return ret;
	}
	return 0;
}

/*
 * The limits that differ between processes.  Children inherit the
 * launcher's limits across fork and exec, so the launcher sets none a
 * child could not live with.
 */
struct sb_limits {
	bool fsize_zero; /* RLIMIT_FSIZE 0: write() to no regular file */
	rlim_t as_max;	 /* RLIMIT_AS; 0: none */
};

static const struct sb_limits sb_proc_limits[SANDBOX_NR_PROCS] = {
	/* A restarted migrator inherits it: no FSIZE (see below), no AS (guest RAM). */
	[SANDBOX_LAUNCHER] = {.fsize_zero = false},
	/* Writes go to its serial fd, stderr, sockets and eventfds; RAM through mappings. */
	[SANDBOX_VCPU] = {.fsize_zero = true},
	/* pwrite() of received pages into RAM memfds (FSIZE); RAM is never mapped. */
	[SANDBOX_MIGRATOR] = {.fsize_zero = false, .as_max = SANDBOX_MIGRATOR_AS_MAX},
	/* Sockets, eventfds and stderr only; no guest RAM, nothing shared mapped. */
	[SANDBOX_MONITOR] = {.fsize_zero = true, .as_max = SANDBOX_MONITOR_AS_MAX},
};

/*
 * The first regular file this process holds open for writing, memfds
 * aside (RAM is written through mappings, which RLIMIT_FSIZE does not
 * limit): stderr or the serial output redirected to a file.  -1 when
 * there is none; -2 when /proc/self/fd cannot be read (then assume one).
 */
static int sb_writable_file(void)
{
	int found = -1, dfd;
	struct dirent *d;
	DIR *dir;

	/*
	 * Not opendir(): its O_DIRECTORY is part of O_TMPFILE, which the
	 * launcher's filter refuses in openat, and a restarted monitor gets
	 * here under that filter.
	 */
	dfd = open("/proc/self/fd", O_RDONLY | O_CLOEXEC);
	dir = dfd < 0 ? NULL : fdopendir(dfd);
	if (!dir) {
		if (dfd >= 0)
			close(dfd);
		return -2;
	}
	while (found == -1 && (d = readdir(dir))) {
		char target[16] = "";
		struct stat st;
		int fd, fl;

		if (d->d_name[0] == '.')
			continue;
		fd = atoi(d->d_name);
		if (fd == dirfd(dir) || fstat(fd, &st) || !S_ISREG(st.st_mode))
			continue;
		fl = fcntl(fd, F_GETFL);
		if (fl < 0 || (fl & O_ACCMODE) == O_RDONLY || (fl & O_PATH))
			continue;
		/* "/memfd:cleave-ram-0 (deleted)" */
		if (readlinkat(dirfd(dir), d->d_name, target, sizeof(target) - 1) > 0 &&
		    !strncmp(target, "/memfd:", 7))
			continue;
		found = fd;
	}
	closedir(dir);
	return found;
}

static int sb_rlimits(enum sandbox_proc proc)
{
	const struct sb_limits *lim = &sb_proc_limits[proc];
	int ret, fd;

	/* Guest RAM must never land in a core file. */
	ret = sb_rlimit_cap(RLIMIT_CORE, "RLIMIT_CORE", 0);
	if (!ret && proc != SANDBOX_LAUNCHER)
		ret = sb_rlimit_cap(RLIMIT_NOFILE, "RLIMIT_NOFILE", SB_NOFILE);
	if (!ret && proc != SANDBOX_LAUNCHER)
		ret = sb_rlimit_cap(RLIMIT_NPROC, "RLIMIT_NPROC", SB_NPROC);
	/* Nothing in cleave locks memory. */
	if (!ret && !sandbox_sanitizer_build())
		ret = sb_rlimit_cap(RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK", 0);
	/*
	 * No file grows: the process opens none for writing (seccomp), so this
	 * covers an fd it is handed or a hole in the policy.  An operator who
	 * sends stderr or the serial output to a file gets that file written
	 * instead: a limit of 0 would kill the process at its first line.
	 */
	if (!ret && lim->fsize_zero) {
		fd = sb_writable_file();
		if (fd == -1)
			ret = sb_rlimit_cap(RLIMIT_FSIZE, "RLIMIT_FSIZE", 0);
		else if (fd == -2)
			log_debug("sandbox: no RLIMIT_FSIZE: /proc/self/fd unreadable");
		else
			log_debug("sandbox: no RLIMIT_FSIZE: fd %d is a file open for writing", fd);
	}
	/*
	 * RLIMIT_AS only where no guest RAM is mapped (it is as large as the
	 * guest), and not in sanitizer builds: their runtimes reserve terabytes
	 * of shadow.  Raising limits back is impossible without
	 * CAP_SYS_RESOURCE, which goes next.
	 */
	if (!ret && lim->as_max && !sandbox_sanitizer_build())
		ret = sb_rlimit_cap(RLIMIT_AS, "RLIMIT_AS", lim->as_max);
	return ret;
}

/* Async-signal-safe: for the launcher's child between fork and exec. */
int sandbox_caps_drop_for_exec(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	unsigned long cap;

	/*
	 * uid 0 gains bounding-set capabilities at exec: an empty bounding set,
	 * ambient set and inheritable set mean the binary starts with none,
	 * in every thread it will ever have.
	 */
	for (cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
			break;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EPERM)
			return -errno;
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return -errno;
	if (syscall(SYS_capget, &hdr, data))
		return -errno;
	data[0].inheritable = data[1].inheritable = 0;
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

/* Threads of this process (entries of /proc/self/task); 0 when unknown. */
static unsigned int sb_nr_threads(void)
{
	unsigned int n = 0;
	struct dirent *d;
	DIR *dir = opendir("/proc/self/task");

	if (!dir)
		return 0;
	while ((d = readdir(dir)))
		if (d->d_name[0] != '.')
			n++;
	closedir(dir);
	return n;
}

static bool sb_has_caps(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data))
		return true;
	return data[0].permitted || data[1].permitted || data[0].effective || data[1].effective;
}

/* Bounding set, ambient set, then effective/permitted/inheritable: all empty. */
static int sb_caps_drop(uint64_t keep, bool *bounding_dropped)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];
	unsigned long cap;

	/*
	 * uid 0 no longer gains capabilities at exec: the launcher keeps
	 * CAP_SYS_ADMIN, and the children it restarts must not inherit it.
	 * Needs CAP_SETPCAP, so before the drop; unprivileged, nothing to do.
	 */
	if (prctl(PR_SET_SECUREBITS, SECBIT_NOROOT | SECBIT_NOROOT_LOCKED, 0, 0, 0) &&
	    errno != EPERM)
		return -errno;
	*bounding_dropped = true;
	for (cap = 0; cap <= 63; cap++) {
		if (prctl(PR_CAPBSET_READ, cap, 0, 0, 0) < 0)
			break; /* past the kernel's last capability */
		if (keep & (1ULL << cap))
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno == EPERM)
			*bounding_dropped = false; /* not ours to drop without CAP_SETPCAP */
	}
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) && errno != EINVAL)
		return -errno;
	memset(data, 0, sizeof(data));
	data[0].effective = data[0].permitted = (uint32_t)keep;
	data[1].effective = data[1].permitted = (uint32_t)(keep >> 32);
	if (syscall(SYS_capset, &hdr, data))
		return -errno;
	return 0;
}

/*
 * As PID 1 of its namespace, a process ignores any signal it has no handler
 * for, even SIGTERM from the launcher.  The migrator and monitor take their
 * stop signals with sigwait/signalfd, blocked in every thread: a handler
 * that never runs makes the kernel queue them again.  Should one run
 * anyway (a thread without the mask), it ends the process as SIG_DFL would.
 */
static void sb_init_stop(int sig)
{
	_exit(128 + sig);
}

static void sb_init_signals(void)
{
	static const int sigs[] = {SIGTERM, SIGINT, SIGHUP};
	struct sigaction old, sa = {.sa_handler = sb_init_stop};
	unsigned int i;

	if (getpid() != 1)
		return;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL)
			sigaction(sigs[i], &sa, NULL);
}

int sandbox_enter(enum sandbox_proc proc)
{
	return sandbox_enter_keep_caps(proc, 0);
}

int sandbox_enter_keep_caps(enum sandbox_proc proc, uint64_t keep)
{
	const struct sandbox_policy *p = sandbox_policy_get(proc);
	const char *off = getenv(SANDBOX_ENV_DISABLE);
	bool bounding, caps_kept;
	int ret;

	if (!p)
		return -EINVAL;
	if (off && *off && strcmp(off, "0")) {
		log_warn("sandbox disabled (%s=%s): no seccomp, no_new_privs, capability drop "
			 "or dumpable flag cleared",
			 SANDBOX_ENV_DISABLE, off);
		return 0;
	}
	/*
	 * Not dumpable (again, if sandbox_undumpable() did it at the top of
	 * main): /proc/<pid>/fd, /proc/<pid>/mem, process_vm_readv and
	 * ptrace of this process need CAP_SYS_PTRACE, which no cleave process
	 * keeps, so a sibling cannot reopen our RAM memfds or read our memory;
	 * the jail's /proc (hidepid=ptraceable) then hides us from it altogether.
	 * Set first: it also holds when a later step fails.  exec resets it, so
	 * each process sets its own.
	 */
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		ret = -errno;
		log_err("PR_SET_DUMPABLE 0: %s", strerror(-ret));
		return ret;
	}
	sb_init_signals();
	/*
	 * glibc's backtrace() dlopens libgcc_s on first use; NNG's panic path
	 * calls it.  Loaded now, a later abort() still dies of SIGABRT rather
	 * than of a refused executable mmap.
	 */
	{
		void *frame[2];

		backtrace(frame, 2);
	}
	ret = sb_rlimits(proc);
	if (ret)
		return ret;
	/*
	 * Capabilities belong to each thread: a drop here reaches this thread
	 * only, and threads started before (NNG's) would keep theirs.  cleave
	 * run starts its children without any (sandbox_caps_drop_for_exec);
	 * a process started with capabilities and already threaded keeps them
	 * and says so rather than pretend.
	 */
	bounding = true;
	caps_kept = sb_has_caps() && sb_nr_threads() > 1;
	if (caps_kept) {
		log_warn("sandbox: started with capabilities and %u threads: capabilities kept "
			 "(start it without them, as cleave run does)",
			 sb_nr_threads());
	} else {
		ret = sb_caps_drop(keep, &bounding);
		if (ret) {
			log_err("dropping capabilities: %s", strerror(-ret));
			return ret;
		}
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		ret = -errno;
		log_err("PR_SET_NO_NEW_PRIVS: %s", strerror(-ret));
		return ret;
	}
	ret = sandbox_seccomp_install(p, 0);
	if (ret) {
		log_err("seccomp policy %s: %s", p->name, strerror(-ret));
		return ret;
	}
	if (sandbox_sanitizer_build())
		log_debug("sandbox: sanitizer build, refused syscalls are logged, not trapped");
	log_debug("sandbox: seccomp policy %s, no_new_privs, capabilities %s%s, pid %d", p->name,
		  caps_kept ? "KEPT"
		  : keep    ? "dropped but CAP_SYS_ADMIN (jails restarted children)"
			    : "dropped",
		  bounding ? "" : " (bounding set kept: not privileged)", (int)getpid());
	return 0;
}

int sandbox_undumpable(void)
{
	const char *off = getenv(SANDBOX_ENV_DISABLE);

	if (off && *off && strcmp(off, "0"))
		return 0;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)) {
		log_err("PR_SET_DUMPABLE 0: %s", strerror(errno));
		return -errno;
	}
	return 0;
}
