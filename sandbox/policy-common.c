// SPDX-License-Identifier: GPL-2.0-only
/*
 * Allowlist tables shared by the three children.  Each entry says why: the
 * code path that makes the call.  Anything not listed is refused.
 */
#include <fcntl.h>
#include <linux/prctl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "sandbox/policy-internal.h"

/* openat is allowed only without write access, creation or truncation. */
#define OPEN_RDONLY_MASK ((uint64_t)(O_ACCMODE | O_CREAT | O_TRUNC | O_TMPFILE))

static const struct sandbox_rule base_rules[] = {
	/* I/O on fds the process already holds. */
	ALLOW("read", "RPC/QMP/migration sockets, signalfd, eventfd"),
	ALLOW("write", "log lines to stderr, serial output, sockets, eventfd"),
	ALLOW("readv", "NNG receives into scatter buffers"),
	ALLOW("writev", "NNG sends header+body in one call"),
	ALLOW("pread64", "guest image and RAM reads at an offset"),
	ALLOW("pwrite64", "writes at an offset into held files"),
	ALLOW("lseek", "SEEK_DATA/SEEK_HOLE over RAM memfds; stdio"),
	ALLOW("close", "every fd the process opened"),
	ALLOW("fcntl", "NNG and sockets set O_NONBLOCK and FD_CLOEXEC"),
	ALLOW("fstat", "stdio and glibc check an fd's type"),
	ALLOW("newfstatat", "glibc's fstat is newfstatat(fd, \"\", AT_EMPTY_PATH)"),
	ALLOW("statx", "glibc stat on newer kernels"),
	ALLOW_IF("openat", ARG_MASK(2, OPEN_RDONLY_MASK, O_RDONLY),
		 "read-only: glibc reads /sys/devices/system/cpu/online for each malloc arena, "
		 "NNG reads /dev/urandom; no write, no create"),
	ALLOW_IF("ioctl", ARG_EQ32(1, TCGETS), "isatty() of stdio by glibc"),
	ALLOW_IF("ioctl", ARG_EQ32(1, FIONBIO), "non-blocking sockets"),
	ALLOW_IF("ioctl", ARG_EQ32(1, FIONREAD), "bytes waiting on a socket"),

	/* Memory (mmap itself is in its own table: the monitor's is stricter). */
	ALLOW_IF("mprotect", ARG_MASK(2, PROT_EXEC, 0), "thread stack guards; never executable"),
	ALLOW("munmap", "free mappings, thread stacks"),
	ALLOW("mremap", "realloc of large blocks"),
	ALLOW("madvise", "glibc malloc returns memory; thread stacks at exit"),
	ALLOW("brk", "malloc heap"),

	/* Threads. */
	ALLOW_IF("clone", ARG_MASK(0, CLONE_THREAD, CLONE_THREAD),
		 "pthread_create; a new process (no CLONE_THREAD) is refused"),
	FAIL("clone3", SANDBOX_ENOSYS,
	     "its flags live in memory seccomp cannot read: ENOSYS makes glibc use clone"),
	ALLOW("futex", "mutexes, condition variables, robust shared locks"),
	ALLOW("set_robust_list", "each new thread registers its robust futex list"),
	ALLOW("rseq", "each new thread registers restartable sequences"),
	ALLOW("exit", "a thread ends"),
	ALLOW("exit_group", "the process ends"),
	ALLOW("gettid", "log thread tags, pthread_kill"),
	ALLOW("getpid", "pthread_kill, raise"),
	ALLOW("getppid", "checks that the launcher is still there"),
	ALLOW_IF("tgkill", ARG_EQ(0, SANDBOX_SELF_PID),
		 "pthread_kill to own threads only (vCPU kicks, abort)"),
	ALLOW("sched_yield", "spin-then-sleep loops"),
	ALLOW("sched_getaffinity", "glibc counts CPUs for malloc arenas"),
	ALLOW_IF("prctl", ARG_EQ32(0, PR_SET_NAME), "pthread_setname_np on the calling thread"),
	ALLOW_IF("prctl", ARG_EQ32(0, PR_GET_NAME), "pthread_getname_np"),

	/* Signals. */
	ALLOW("rt_sigreturn", "return from every signal handler"),
	ALLOW("rt_sigprocmask", "threads block stop signals; glibc around clone"),
	ALLOW("rt_sigaction", "abort() resets SIGABRT; handlers set once"),
	ALLOW("rt_sigtimedwait", "sigwait for SIGTERM/SIGINT/SIGHUP"),
	ALLOW("sigaltstack", "glibc and the SIGSYS report"),
	ALLOW("restart_syscall", "an interrupted sleep resumes"),

	/* Time and randomness. */
	ALLOW("clock_gettime", "deadlines (vDSO fallback)"),
	ALLOW("clock_getres", "timer resolution"),
	ALLOW("gettimeofday", "vDSO fallback"),
	ALLOW("nanosleep", "backoff sleeps"),
	ALLOW("clock_nanosleep", "backoff sleeps, QUIT grace"),
	ALLOW("getrandom", "NNG ids, hash seeds"),
	ALLOW("sysinfo", "glibc qsort sizes its buffer by RAM"),

	/* Event loops (NNG's poller, the monitor, the migrator). */
	ALLOW("epoll_create1", "NNG poller"),
	ALLOW("epoll_ctl", "NNG poller, the monitor's client loop"),
	ALLOW("epoll_wait", "NNG poller, the monitor's client loop"),
	ALLOW("epoll_pwait", "glibc epoll_wait on some architectures"),
	ALLOW("eventfd2", "NNG wake-ups"),
	ALLOW("poll", "socket timeouts, the migrator's channels"),
	ALLOW("ppoll", "glibc poll wrapper"),
	ALLOW("pipe2", "NNG and worker wake-up pipes"),
};
const struct sandbox_table sandbox_table_base = SANDBOX_TABLE("base", base_rules);

static const struct sandbox_rule mmap_rules[] = {
	ALLOW_IF("mmap", ARG_MASK(2, PROT_EXEC, 0),
		 "malloc, thread stacks, RAM memfds (MAP_SHARED); never executable"),
};
const struct sandbox_table sandbox_table_mmap = SANDBOX_TABLE("mmap", mmap_rules);

static const struct sandbox_rule mmap_private_rules[] = {
	ALLOW_IF2("mmap", ARG_MASK(2, PROT_EXEC, 0), ARG_MASK(3, MAP_TYPE, MAP_PRIVATE),
		  "malloc and thread stacks: private, never executable, never a shared mapping"),
};
const struct sandbox_table sandbox_table_mmap_private =
	SANDBOX_TABLE("mmap-private", mmap_private_rules);

static const struct sandbox_rule nng_rules[] = {
	ALLOW_IF("socket", ARG_EQ32(0, AF_UNIX),
		 "NNG ipc:// dialers reconnect after a peer restart"),
	ALLOW("connect", "NNG ipc:// dialers"),
	ALLOW("accept", "NNG ipc:// listeners"),
	ALLOW("accept4", "NNG ipc:// listeners, QMP clients"),
	ALLOW("getsockopt", "SO_ERROR after a non-blocking connect, SO_PEERCRED"),
	ALLOW("setsockopt", "buffer sizes, timeouts"),
	ALLOW("getsockname", "NNG reports local addresses"),
	ALLOW("getpeername", "NNG reports peer addresses"),
	ALLOW("sendmsg", "NNG pipes"),
	ALLOW("recvmsg", "NNG pipes"),
	ALLOW("sendto", "send() is sendto"),
	ALLOW("recvfrom", "recv() is recvfrom"),
	ALLOW("shutdown", "closing a pipe or client"),
	ALLOW("unlink", "NNG removes its ipc:// socket file when a listener closes"),
};
const struct sandbox_table sandbox_table_nng = SANDBOX_TABLE("nng", nng_rules);

/*
 * Sanitizer runtimes (ASan/UBSan/TSan) read /proc/self/maps, query limits,
 * yield and map shadow memory.  Added only in sanitizer builds, where refused
 * syscalls are logged rather than trapped anyway: this keeps the audit log
 * to what the program itself does.
 */
static const struct sandbox_rule sanitizer_rules[] = {
	ALLOW("readlink", "sanitizer: /proc/self/exe for reports"),
	ALLOW("readlinkat", "sanitizer: /proc/self/exe for reports"),
	ALLOW("getrlimit", "sanitizer: stack and core limits"),
	ALLOW("prlimit64", "sanitizer: stack and core limits"),
	ALLOW("prctl", "sanitizer: PR_GET_DUMPABLE, PR_SET_VMA"),
	ALLOW("mmap", "sanitizer: shadow memory"),
	ALLOW("mprotect", "sanitizer: shadow memory"),
	ALLOW("openat", "sanitizer: /proc/self/maps and reports"),
	ALLOW("sched_getparam", "TSan background thread"),
	ALLOW("getuid", "sanitizer reports"),
	ALLOW("uname", "sanitizer version checks"),
	ALLOW("membarrier", "TSan"),
	/* LeakSanitizer at exit: a tracer task ptraces every thread (StopTheWorld). */
	ALLOW("clone", "LeakSanitizer's tracer task (no CLONE_THREAD)"),
	ALLOW("ptrace", "LeakSanitizer suspends threads to scan their stacks"),
	ALLOW("wait4", "LeakSanitizer waits for its tracer"),
	ALLOW("open", "LeakSanitizer reads /proc/self/task"),
	ALLOW("getdents", "LeakSanitizer lists /proc/self/task"),
	ALLOW("getdents64", "LeakSanitizer lists /proc/self/task"),
};
const struct sandbox_table sandbox_table_sanitizer = SANDBOX_TABLE("sanitizer", sanitizer_rules);
