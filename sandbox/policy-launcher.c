// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave run` once its children are up: it waits on pidfds and a signalfd,
 * restarts a dead migrator or monitor, and cleans up at the end.
 *
 * seccomp filters are inherited across fork and exec, so a restarted child
 * runs under this policy too until it installs its own (which can only
 * narrow it).  This policy is therefore the union of what the supervisor
 * does and what a child does between fork and its sandbox_enter(): clone
 * with namespace flags, the jail's mounts, exec, the dynamic loader, NNG
 * set-up.  What it still refuses is what none of them ever needs: ptrace,
 * process_vm_*, bpf, perf_event_open, module and kexec loading, keyrings,
 * userfaultfd, memfd_create (all memfds exist before the first child),
 * writable opens (no file is created after start, but by a restarted
 * migrator's save, relative to SANDBOX_MIGRATOR_SNAPSHOT_DIRFD only), KVM ioctls (cleave-vcpu is
 * never restarted), reboot, swap, clock setting.  See docs/SECURITY.md.
 */
#include <fcntl.h>
#include <sched.h>
#include <sys/socket.h>

#include "sandbox/policy-internal.h"

static const struct sandbox_rule launcher_rules[] = {
	/* Supervision. */
	ALLOW("clone", "fork of a restarted child, with namespace flags when jailed"),
	ALLOW("execve", "a restarted child execs its binary"),
	ALLOW("pidfd_open", "a pidfd per started child"),
	ALLOW("pidfd_send_signal", "SIGTERM/SIGKILL to children"),
	ALLOW("waitid", "reaping a child through its pidfd"),
	ALLOW("wait4", "reaping a child that failed before exec"),
	ALLOW("signalfd4", "the launcher's signal fd; the monitor's at its init"),
	/* Clean-up at the end of the VM. */
	ALLOW("unlink", "removes sockets and the lock in the state dir"),
	ALLOW("unlinkat", "removes sockets and the lock in the state dir"),
	ALLOW("rmdir", "removes the state dir it created"),
	ALLOW("flock", "the state dir lock"),
	/* A child between fork and exec (launcher/spawn.c). */
	ALLOW("dup", "moving handed-over fds into place"),
	ALLOW("dup2", "moving handed-over fds into place"),
	ALLOW("dup3", "moving handed-over fds into place"),
	ALLOW("close_range", "CLOEXEC on every fd not handed over"),
	ALLOW("prctl", "PR_SET_PDEATHSIG; then the child's own no_new_privs, capability drop"),
	ALLOW("capget", "the child's capability drop"),
	ALLOW("capset", "the child's capability drop"),
	ALLOW("seccomp", "the child installs its own, narrower policy"),
	ALLOW("prlimit64", "the child's rlimits; the monitor raises RLIMIT_NOFILE"),
	ALLOW("setrlimit", "the child's rlimits"),
	ALLOW("getrlimit", "the child's rlimits"),
	/* The jail of a restarted child (sandbox/jail.c). */
	ALLOW("unshare", "the child's mount, IPC and network namespaces"),
	ALLOW_IF("setns", ARG_EQ32(1, CLONE_NEWPID),
		 "at the end, later forks go back to the launcher's own PID namespace"),
	ALLOW_IF("setns", ARG_EQ32(1, CLONE_NEWNET),
		 "a restarted migrator joins the network namespace of --migrate-netns"),
	ALLOW("setgroups", "--uid-base: a restarted child's groups"),
	ALLOW("setresgid", "--uid-base: a restarted child's group"),
	ALLOW("setresuid", "--uid-base: a restarted child's user"),
	ALLOW("mount", "making every mount private in the child's namespace"),
	ALLOW("open_tree", "detached clones of the paths bound into the jail"),
	ALLOW("mount_setattr", "read-only, nosuid binds"),
	ALLOW("move_mount", "placing binds and the staging root"),
	ALLOW("fsopen", "the jail's tmpfs root and /proc"),
	ALLOW("fsconfig", "the jail's tmpfs root and /proc"),
	ALLOW("fsmount", "the jail's tmpfs root and /proc"),
	ALLOW("umount2", "detaching the old root after pivot_root"),
	ALLOW("pivot_root", "entering the jail's root"),
	ALLOW("chdir", "entering the jail's root"),
	ALLOW("fchdir", "entering the jail's root"),
	ALLOW("mkdirat", "mount points inside the jail's tmpfs"),
	ALLOW("mkdir", "mount points inside the jail's tmpfs"),
	ALLOW("symlinkat", "/lib -> usr/lib inside the jail"),
	ALLOW("symlink", "/lib -> usr/lib inside the jail"),
	ALLOW("mknodat", "bind-mount targets for device nodes"),
	/* The exec'd child before its own policy: loader and library init. */
	ALLOW_IF("openat", ARG_MASK(2, O_ACCMODE | O_CREAT | O_TRUNC | O_TMPFILE, O_RDWR),
		 "NNG names its threads through /proc/self/task/N/comm at a child's init; "
		 "read-write but never creating or truncating"),
	ALLOW("mmap", "the dynamic loader maps code"),
	ALLOW("mprotect", "the dynamic loader, RELRO"),
	ALLOW("arch_prctl", "the loader sets up TLS"),
	ALLOW("set_tid_address", "the loader"),
	ALLOW("access", "the loader checks ld.so.preload"),
	ALLOW("faccessat", "the loader"),
	ALLOW("faccessat2", "the loader"),
	ALLOW("readlink", "/proc/self/exe (libexec lookup)"),
	ALLOW("readlinkat", "/proc/self/exe"),
	ALLOW("getcwd", "path resolution"),
	ALLOW("uname", "glibc version checks, resolver"),
	ALLOW("getuid", "identity checks"),
	ALLOW("geteuid", "state dir ownership"),
	ALLOW("getgid", "identity checks"),
	ALLOW("getegid", "identity checks"),
	ALLOW("umask", "files created mode 0600"),
	ALLOW("fstatfs", "glibc"),
	ALLOW("statfs", "glibc"),
	ALLOW("getdents64", "directory reads"),
	ALLOW("socket", "a restarted migrator listens on TCP for --incoming; NNG"),
	ALLOW("bind", "a restarted child's listeners"),
	ALLOW("listen", "a restarted child's listeners"),
	ALLOW("sendmmsg", "a restarted migrator's DNS resolver (under both policies)"),
	ALLOW("fallocate", "never by the launcher; allowed so a restarted migrator's init works"),
	ALLOW("splice", "never by the launcher; a restarted migrator's channels"),
	ALLOW_IF("socketpair", ARG_EQ32(0, AF_UNIX),
		 "never by the launcher; a restarted migrator's fd: migration streams"),
	ALLOW_IF("openat", ARG_EQ32(0, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		 "never by the launcher; a restarted migrator's save creates its file"),
	ALLOW_IF2("renameat", ARG_EQ32(0, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		  ARG_EQ32(2, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		  "never by the launcher; a restarted migrator's complete save"),
	ALLOW("ftruncate", "never by the launcher; a restarted migrator's save sizes its file"),
	ALLOW("fdatasync", "never by the launcher; a restarted migrator's save"),
	ALLOW("fsync", "never by the launcher; a restarted migrator's save"),
};
static const struct sandbox_table launcher_table = SANDBOX_TABLE("launcher", launcher_rules);

const struct sandbox_policy sandbox_policy_launcher = {
	.name = "cleave",
	.tables = {&sandbox_table_base, &sandbox_table_nng, &launcher_table},
};
