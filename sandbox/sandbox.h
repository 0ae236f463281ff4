/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The sandbox every cleave process enters (docs/SECURITY.md).
 *
 * Two halves:
 *  - sandbox_enter(): run by each process itself once init is over (every fd
 *    and device it needs is open, every listener bound): not dumpable,
 *    rlimits, capability drop, PR_SET_NO_NEW_PRIVS, and a seccomp allowlist
 *    for all its threads.
 *  - sandbox_jail_*(): run by the launcher in a freshly forked child before
 *    exec (async-signal-safe): mount/IPC/net namespaces, pivot_root into an
 *    empty tmpfs holding only what that child needs, and a read-only /proc
 *    that shows only the processes it may ptrace.  The PID namespace is
 *    one for all children, made by the launcher (sandbox_jail_pid_ns_create()).
 *
 * Policies are data: tables of syscalls, each with optional argument filters
 * and a reason, in sandbox/policy-*.c.  A refused syscall is trapped: the
 * process writes "<proc>: seccomp: refused syscall N (name)" to stderr and
 * dies of SIGSYS.  Sanitizer builds (CLEAVE_SANITIZE) log refused syscalls
 * to the kernel audit log instead of trapping, because the sanitizer
 * runtimes make syscalls no policy can predict (error reports, symbolizer).
 */
#ifndef CLEAVE_SANDBOX_H
#define CLEAVE_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum sandbox_proc {
	SANDBOX_LAUNCHER, /* cleave run after its children started */
	SANDBOX_VCPU,	  /* cleave-vcpu */
	SANDBOX_MIGRATOR, /* cleave-migrator */
	SANDBOX_MONITOR,  /* cleave-monitor */
	SANDBOX_NR_PROCS,
};

/* Set in the environment by `cleave run --no-sandbox`; children inherit it. */
#define SANDBOX_ENV_DISABLE "CLEAVE_NO_SANDBOX"

/*
 * RLIMIT_AS of cleave-monitor (production builds).  It maps no guest RAM;
 * what it reserves is NNG's thread stacks and glibc's malloc arenas (0.7 GiB
 * with 19 threads on a 2-CPU host, more threads on larger hosts) and client
 * buffers (MON_FRAME_MAX_SIZE in, MON_OUT_LIMIT_DEFAULT out, each).
 */
#define SANDBOX_MONITOR_AS_MAX (8ULL << 30)

/*
 * RLIMIT_AS of cleave-migrator (production builds).  It never maps guest
 * RAM (it splices, preads and pwrites the memfds).  What it reserves: the
 * control segment (bitmaps, 1/32768 of guest RAM each), up to
 * 2 x MIG_MAX_CHANNELS channel threads with their stacks (8 MiB each by
 * default) and 1 MiB buffers, NNG's threads, and glibc's malloc arenas,
 * capped at 8 in migrator/main.c.  About 2 GiB at the most channels; 8 GiB
 * leaves room for the bitmaps of a guest far larger than any host.
 */
#define SANDBOX_MIGRATOR_AS_MAX (8ULL << 30)

/*
 * The fd number of the snapshot directory in cleave-migrator (cleave run
 * --snapshot-dir, bound into its jail; it opens it there before its
 * filter goes in): its filter lets it create, rename and remove files
 * only relative to this fd, and the jail keeps ".." from it inside.
 * High enough that no fd cleave-migrator inherits or opens before it has it.
 */
#define SANDBOX_MIGRATOR_SNAPSHOT_DIRFD 255

/* Comparison of one syscall argument, as libseccomp's scmp_compare. */
enum sandbox_cmp {
	SANDBOX_EQ = 1,	   /* arg == value */
	SANDBOX_MASKED_EQ, /* (arg & mask) == value */
	SANDBOX_NE,	   /* arg != value */
};

#define SANDBOX_MAX_ARGS 3

struct sandbox_arg {
	unsigned int index; /* 0..5 */
	enum sandbox_cmp op;
	uint64_t mask; /* SANDBOX_MASKED_EQ only */
	uint64_t value;
};

/* What a matching syscall gets. */
enum sandbox_action {
	SANDBOX_ALLOW = 0,
	SANDBOX_ENOSYS, /* fail with ENOSYS: lets glibc fall back (clone3 -> clone) */
	SANDBOX_EPERM,	/* fail quietly, for probes whose failure is handled */
};

/*
 * One allowlist entry.  Entries with the same syscall are OR'ed; the
 * argument filters of one entry are AND'ed.  An entry without args allows
 * every call of that syscall.
 */
struct sandbox_rule {
	const char *syscall; /* name as libseccomp knows it */
	enum sandbox_action action;
	unsigned int nr_args;
	struct sandbox_arg args[SANDBOX_MAX_ARGS];
	const char *reason; /* why this process needs it; never NULL */
};

/* A named group of rules (e.g. "base", "nng", "kvm-ioctls"). */
struct sandbox_table {
	const char *name;
	const struct sandbox_rule *rules;
	size_t nr_rules;
};

#define SANDBOX_TABLE(n, r)                                                                        \
	{                                                                                          \
		.name = (n), .rules = (r), .nr_rules = sizeof(r) / sizeof((r)[0])                  \
	}

#define SANDBOX_MAX_TABLES 8

/* The policy of one process: the union of its tables. */
struct sandbox_policy {
	const char *name; /* process name, for the SIGSYS message */
	const struct sandbox_table *tables[SANDBOX_MAX_TABLES]; /* NULL-terminated */
};

/* The built-in policy of @proc. */
const struct sandbox_policy *sandbox_policy_get(enum sandbox_proc proc);

/* Flags for sandbox_seccomp_install(). */
#define SANDBOX_F_TRAP 0x1u /* trap refused syscalls even in sanitizer builds (tests) */
#define SANDBOX_F_LOG  0x2u /* only log refused syscalls (kernel audit log) */

/*
 * Installs @p with PR_SET_NO_NEW_PRIVS for every thread of the process
 * (TSYNC), together with the SIGSYS handler that names a refused syscall.
 * Returns 0 or a negative errno (an unknown syscall name is -EINVAL).
 */
int sandbox_seccomp_install(const struct sandbox_policy *p, unsigned int flags);

/* True when this binary was built with a sanitizer (refusals are logged only). */
bool sandbox_sanitizer_build(void);

/*
 * Everything a process does to itself once init is over: PR_SET_DUMPABLE 0
 * (siblings cannot open its /proc/<pid>/fd, /proc/<pid>/mem or read its
 * memory), rlimits (RLIMIT_FSIZE 0 for cleave-vcpu and the monitor unless
 * they hold a file open for writing, RLIMIT_AS for the monitor: see
 * docs/SECURITY.md), capabilities dropped (bounding, ambient, effective,
 * permitted, inheritable), no_new_privs, the seccomp policy of @proc.  Does
 * nothing but warn when SANDBOX_ENV_DISABLE is set.  Returns 0 or a negative
 * errno with the reason logged; the caller must not serve without it.
 */
int sandbox_enter(enum sandbox_proc proc);
/*
 * First thing in main() of a process that maps guest RAM before its
 * sandbox_enter(): not dumpable from then on (exec made it dumpable again),
 * so no sibling reaches its memory through /proc in that window.  Nothing
 * when SANDBOX_ENV_DISABLE is set.  0 or a negative errno.
 */
int sandbox_undumpable(void);
/*
 * The same, keeping the capabilities in the @keep mask (1ULL << CAP_x):
 * the launcher keeps CAP_SYS_ADMIN to jail the children it restarts.
 */
int sandbox_enter_keep_caps(enum sandbox_proc proc, uint64_t keep);
/*
 * In a forked child before exec (async-signal-safe): empties the bounding,
 * ambient and inheritable sets, so the exec'd binary runs without
 * capabilities in all its threads even as uid 0.  Capabilities are
 * per-thread: dropping them later in sandbox_enter() would miss threads
 * already running.
 */
int sandbox_caps_drop_for_exec(void);

/* jail.c ----------------------------------------------------------------- */

#define SANDBOX_JAIL_MAX_BINDS 12
/* The namespace fd a jail holds is at least this: above any fd a child is handed. */
#define SANDBOX_JAIL_NS_FD_MIN	256
#define SANDBOX_JAIL_MAX_GROUPS 8

/* One path made visible inside the jail at the same absolute path. */
struct sandbox_bind {
	const char *path; /* must outlive the jail */
	bool writable;
	bool optional; /* skipped when absent on the host */
};

/*
 * The jail of one child.  Built by the launcher before fork (nothing is
 * allocated after it); applied in the forked child before exec.
 */
struct sandbox_jail {
	bool enabled;  /* namespaces and new root; when false only capabilities are dropped */
	bool new_net;  /* own, empty network namespace */
	int net_ns_fd; /* >= 0: join this network namespace instead (owned) */
	/* Set by sandbox_jail_ids(): the child's own user; else it stays uid 0. */
	bool set_ids;
	uid_t uid;
	gid_t gid;
	gid_t groups[SANDBOX_JAIL_MAX_GROUPS]; /* supplementary: shared sockets, devices */
	unsigned int nr_groups;
	struct sandbox_bind binds[SANDBOX_JAIL_MAX_BINDS]; /* besides /usr, libs, devices */
	unsigned int nr_binds;
	char exe[4096]; /* canonical path of the binary, bound read-only */
};

/*
 * The jail of @proc: @exe (canonicalized into j->exe: exec that path),
 * /dev/kvm for cleave-vcpu, the resolver's /etc files
 * for the migrator; a network namespace of its own for all but the
 * migrator.  The directories of its RPC sockets are the caller's to bind
 * (sandbox_jail_bind): writable where it listens, read-only where it dials.
 */
int sandbox_jail_init(struct sandbox_jail *j, enum sandbox_proc proc, const char *exe);
/* Adds a bind; -E2BIG when full. */
int sandbox_jail_bind(struct sandbox_jail *j, const char *path, bool writable, bool optional);
/*
 * The child joins the network namespace at @path (a bind-mounted namespace
 * file, as `ip netns add NAME` makes /run/netns/NAME) instead of the host's
 * or an empty one of its own.  Opened here, in the launcher: -ENOENT, or
 * -EINVAL when @path is not a network namespace.
 */
int sandbox_jail_net_ns(struct sandbox_jail *j, const char *path);
/*
 * The child runs as @uid:@gid with supplementary @groups (a copy is kept),
 * set last in the jail, after the capability sets are emptied: uid 0
 * never reaches exec, so the child also loses every capability it had.
 * Its umask becomes 007: sockets it binds are reachable by its groups.
 * -EINVAL for uid or gid 0, -E2BIG for too many groups.
 */
int sandbox_jail_ids(struct sandbox_jail *j, uid_t uid, gid_t gid, const gid_t *groups,
		     unsigned int nr_groups);
/* Releases what the jail holds (the namespace fd).  Safe on a zeroed or fini'd jail. */
void sandbox_jail_fini(struct sandbox_jail *j);
/* CLONE_NEWNS | CLONE_NEWIPC [| CLONE_NEWNET] for @j; 0 when off. */
unsigned long sandbox_jail_unshare_flags(const struct sandbox_jail *j);

/*
 * Called once by the launcher before its first child: every child is then
 * born in one new PID namespace.  Its PID 1 is a forked holder that only
 * pauses (no fds, SIGKILLed when the launcher dies), so no cleave process
 * has init's signal semantics and one exiting does not end the namespace.
 * One namespace for all, not one each: the robust mutexes in the control
 * segment hold their owner's TID, and TIDs must mean the same thread to
 * every process that shares them.  pids and pidfds seen by the launcher are
 * unchanged.  *@holder_pidfd is the holder's pidfd.
 */
int sandbox_jail_pid_ns_create(int *holder_pidfd);
/* Kills and reaps the holder (the namespace ends with it); -1 is a no-op. */
void sandbox_jail_pid_ns_destroy(int holder_pidfd);

/*
 * In the forked child, before exec: unshares the namespaces, makes every
 * mount private, builds the new root on a tmpfs with what @j names (plus
 * /usr, the /lib links, /dev/null, /dev/zero, /dev/urandom and a /proc of
 * the PID namespace), makes it read-only, pivots and detaches the old root
 * (all when j->enabled), then sandbox_caps_drop_for_exec().  The /proc is
 * read-only, hidepid=ptraceable (a process sees only those it may ptrace:
 * none but itself once sandbox_enter() cleared every dumpable flag) and
 * subset=pid (no /proc/sys, /proc/kcore, ...); should the kernel refuse an
 * option, /proc goes without it and says so on stderr.
 * Async-signal-safe.  Returns 0 or a negative errno; the failed step is
 * written to stderr.
 */
int sandbox_jail_apply(const struct sandbox_jail *j);

/* Whether namespaces and mounts work here (root, not too confined): probed by a child. */
bool sandbox_jail_supported(void);

#endif
