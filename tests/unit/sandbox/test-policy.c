// SPDX-License-Identifier: GPL-2.0-only
/*
 * Every policy, in a forked child that installs it (trapping even in
 * sanitizer builds): each allowed class of call works, and each forbidden
 * call kills the child with SIGSYS after a line naming the syscall.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/userfaultfd.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

/* Prepared before the policy goes in, used by actions after. */
struct fixture {
	/*
	 * /dev/kvm, or an eventfd where the host has none: seccomp filters on
	 * the ioctl request number, never on the fd, so a KVM request on any
	 * fd shows whether the policy lets it through.
	 */
	int kvm_fd;
	bool real_kvm; /* kvm_fd is /dev/kvm: the request must also succeed */
	int memfd;
	int pipe[2];
};

/* An action returns 0 when the call behaved as an allowed call should. */
typedef int (*action_fn)(struct fixture *f);

static int act_time(struct fixture *f)
{
	struct timespec ts;

	(void)f;
	return (int)syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
}

static void *thread_fn(void *arg)
{
	return arg;
}

/* glibc tries clone3 (ENOSYS by policy) then clone with CLONE_THREAD. */
static int act_thread(struct fixture *f)
{
	pthread_t t;
	void *ret = NULL;

	if (pthread_create(&t, NULL, thread_fn, f) || pthread_join(t, &ret))
		return -1;
	return ret == f ? 0 : -1;
}

static int act_mmap_private(struct fixture *f)
{
	void *p = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)f;
	if (p == MAP_FAILED)
		return -1;
	memset(p, 1, 1 << 20);
	return munmap(p, 1 << 20);
}

static int act_mmap_shared_memfd(struct fixture *f)
{
	void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, f->memfd, 0);

	if (p == MAP_FAILED)
		return -1;
	return munmap(p, 4096);
}

static int act_mmap_exec(struct fixture *f)
{
	(void)f;
	return syscall(SYS_mmap, NULL, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1,
		       0) == -1
		       ? -1
		       : 0;
}

static int act_pipe_io(struct fixture *f)
{
	char c = 'x';

	if (write(f->pipe[1], &c, 1) != 1 || read(f->pipe[0], &c, 1) != 1)
		return -1;
	return c == 'x' ? 0 : -1;
}

static int act_socket(int family)
{
	int fd = (int)syscall(SYS_socket, family, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int act_unix_socket(struct fixture *f)
{
	(void)f;
	return act_socket(AF_UNIX);
}

static int act_inet_socket(struct fixture *f)
{
	(void)f;
	return act_socket(AF_INET);
}

/* Allowed: /dev/kvm answers; on an eventfd the kernel says ENOTTY, seccomp let it by. */
static int act_kvm_ioctl(struct fixture *f)
{
	long ret = syscall(SYS_ioctl, f->kvm_fd, KVM_GET_API_VERSION, 0);

	if (f->real_kvm)
		return ret == KVM_API_VERSION ? 0 : -1;
	return ret < 0 && errno == ENOTTY ? 0 : -1;
}

static int act_tty_ioctl(struct fixture *f)
{
	struct winsize ws;

	return (int)syscall(SYS_ioctl, f->pipe[0], TIOCGWINSZ, &ws) < 0 ? 0 : 0;
}

/* Postcopy's userfaultfd requests, on a pipe: seccomp looks at the request number only. */
static int act_uffd_ioctl(struct fixture *f)
{
	static const unsigned long req[] = {UFFDIO_REGISTER, UFFDIO_UNREGISTER, UFFDIO_COPY,
					    UFFDIO_ZEROPAGE, UFFDIO_WAKE};

	for (size_t i = 0; i < sizeof(req) / sizeof(req[0]); i++)
		if (syscall(SYS_ioctl, f->pipe[0], req[i], NULL) == 0 || errno != ENOTTY)
			return -1;
	return 0;
}

static int act_punch_hole(struct fixture *f)
{
	return fallocate(f->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
}

/* A page of the memfd through the pipe and back (the migrator's channel data path). */
static int act_splice(struct fixture *f)
{
	loff_t in = 0, out = 4096;

	if (splice(f->memfd, &in, f->pipe[1], NULL, 4096, 0) != 4096)
		return -1;
	return splice(f->pipe[0], NULL, f->memfd, &out, 4096, 0) == 4096 ? 0 : -1;
}

/* Refused to the migrator (and the launcher it restarts under): it splices from the memfd. */
static int act_vmsplice(struct fixture *f)
{
	static char page[4096];
	struct iovec iov = {page, sizeof(page)};

	return vmsplice(f->pipe[1], &iov, 1, 0) == (ssize_t)sizeof(page) ? 0 : -1;
}

/* The TLS send path copies RAM out of the memfd at an offset. */
static int act_pread_memfd(struct fixture *f)
{
	char page[4096];

	return pread(f->memfd, page, sizeof(page), 0) == (ssize_t)sizeof(page) ? 0 : -1;
}

static int act_fork(struct fixture *f)
{
	long p;
	int status;

	(void)f;
	p = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
	if (p == 0)
		syscall(SYS_exit_group, 0);
	if (p < 0 || waitpid((pid_t)p, &status, 0) != p)
		return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int act_open_rdonly(struct fixture *f)
{
	int fd = (int)syscall(SYS_openat, AT_FDCWD, "/proc/self/status", O_RDONLY | O_CLOEXEC);

	(void)f;
	if (fd < 0)
		return -1;
	close(fd);
	return 0;
}

static int act_open_kvm_rw(struct fixture *f)
{
	(void)f;
	syscall(SYS_openat, AT_FDCWD, "/dev/kvm", O_RDWR | O_CLOEXEC);
	return 0;
}

static int act_open_create(struct fixture *f)
{
	(void)f;
	syscall(SYS_openat, AT_FDCWD, "/tmp/cleave-sandbox-test-never", O_WRONLY | O_CREAT, 0600);
	return 0;
}

/* A save, as cleave-migrator makes it: all relative to the snapshot directory's fd. */
static int act_snapshot_save(struct fixture *f)
{
	const int dir = SANDBOX_MIGRATOR_SNAPSHOT_DIRFD;
	int fd = (int)syscall(SYS_openat, dir, ".s.partial",
			      O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	int ret;

	(void)f;
	if (fd < 0)
		return -1;
	ret = ftruncate(fd, 1 << 20) || pwrite(fd, "x", 1, 0) != 1 || fdatasync(fd);
	close(fd);
	ret |= (int)syscall(SYS_renameat, dir, ".s.partial", dir, "s") || fsync(dir);
	return ret | (int)syscall(SYS_unlinkat, dir, "s", 0);
}

/* The attack: a taken-over migrator moves a file out of the snapshot directory. */
static int act_snapshot_rename_out(struct fixture *f)
{
	(void)f;
	syscall(SYS_renameat, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, "s", AT_FDCWD,
		"/tmp/cleave-sandbox-test-never");
	return 0;
}

static int act_execve(struct fixture *f)
{
	static char *const argv[] = {"true", NULL};

	(void)f;
	syscall(SYS_execve, "/bin/true", argv, NULL);
	return 0;
}

static int act_ptrace(struct fixture *f)
{
	(void)f;
	syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0);
	return 0;
}

static int act_bpf(struct fixture *f)
{
	(void)f;
	syscall(SYS_bpf, 0, NULL, 0);
	return 0;
}

static int act_process_vm_readv(struct fixture *f)
{
	(void)f;
	syscall(SYS_process_vm_readv, getppid(), NULL, 0, NULL, 0, 0);
	return 0;
}

static int act_memfd_create(struct fixture *f)
{
	(void)f;
	syscall(SYS_memfd_create, "x", 0);
	return 0;
}

static int act_mount(struct fixture *f)
{
	(void)f;
	syscall(SYS_mount, "none", "/", NULL, 0, NULL);
	return 0;
}

static int act_keyctl(struct fixture *f)
{
	(void)f;
	syscall(SYS_keyctl, 0, 0, 0, 0, 0);
	return 0;
}

static int act_init_module(struct fixture *f)
{
	(void)f;
	syscall(SYS_init_module, NULL, 0, "");
	return 0;
}

struct policy_case {
	enum sandbox_proc proc;
	const char *what;
	action_fn fn;
	const char *refused; /* NULL: must succeed; else the syscall named when killed */
};

static const struct policy_case cases[] = {
	/* cleave-vcpu */
	{SANDBOX_VCPU, "time", act_time, NULL},
	{SANDBOX_VCPU, "thread", act_thread, NULL},
	{SANDBOX_VCPU, "mmap private", act_mmap_private, NULL},
	{SANDBOX_VCPU, "mmap shared RAM", act_mmap_shared_memfd, NULL},
	{SANDBOX_VCPU, "pipe I/O", act_pipe_io, NULL},
	{SANDBOX_VCPU, "AF_UNIX socket", act_unix_socket, NULL},
	{SANDBOX_VCPU, "KVM ioctl", act_kvm_ioctl, NULL},
	{SANDBOX_VCPU, "userfaultfd ioctls", act_uffd_ioctl, NULL},
	{SANDBOX_VCPU, "read-only open", act_open_rdonly, NULL},
	{SANDBOX_VCPU, "AF_INET socket", act_inet_socket, "socket"},
	{SANDBOX_VCPU, "non-KVM ioctl", act_tty_ioctl, "ioctl"},
	{SANDBOX_VCPU, "mmap PROT_EXEC", act_mmap_exec, "mmap"},
	{SANDBOX_VCPU, "fork", act_fork, "clone"},
	{SANDBOX_VCPU, "execve", act_execve, "execve"},
	{SANDBOX_VCPU, "ptrace", act_ptrace, "ptrace"},
	{SANDBOX_VCPU, "bpf", act_bpf, "bpf"},
	{SANDBOX_VCPU, "process_vm_readv", act_process_vm_readv, "process_vm_readv"},
	{SANDBOX_VCPU, "memfd_create", act_memfd_create, "memfd_create"},
	{SANDBOX_VCPU, "splice", act_splice, "splice"},
	{SANDBOX_VCPU, "open for write", act_open_create, "openat"},
	/* cleave-migrator */
	{SANDBOX_MIGRATOR, "time", act_time, NULL},
	/* Postcopy pages reach the guest only through cleave-vcpu. */
	{SANDBOX_MIGRATOR, "userfaultfd ioctls", act_uffd_ioctl, "ioctl"},
	{SANDBOX_MIGRATOR, "thread", act_thread, NULL},
	{SANDBOX_MIGRATOR, "mmap shared RAM", act_mmap_shared_memfd, NULL},
	{SANDBOX_MIGRATOR, "AF_UNIX socket", act_unix_socket, NULL},
	{SANDBOX_MIGRATOR, "AF_INET socket", act_inet_socket, NULL},
	{SANDBOX_MIGRATOR, "punch hole", act_punch_hole, NULL},
	{SANDBOX_MIGRATOR, "splice", act_splice, NULL},
	{SANDBOX_MIGRATOR, "pread RAM", act_pread_memfd, NULL},
	{SANDBOX_MIGRATOR, "vmsplice", act_vmsplice, "vmsplice"},
	{SANDBOX_MIGRATOR, "open /dev/kvm", act_open_kvm_rw, "openat"},
	{SANDBOX_MIGRATOR, "KVM ioctl", act_kvm_ioctl, "ioctl"},
	{SANDBOX_MIGRATOR, "execve", act_execve, "execve"},
	{SANDBOX_MIGRATOR, "ptrace", act_ptrace, "ptrace"},
	{SANDBOX_MIGRATOR, "mount", act_mount, "mount"},
	{SANDBOX_MIGRATOR, "keyctl", act_keyctl, "keyctl"},
	{SANDBOX_MIGRATOR, "memfd_create", act_memfd_create, "memfd_create"},
	{SANDBOX_MIGRATOR, "save in the snapshot directory", act_snapshot_save, NULL},
	{SANDBOX_MIGRATOR, "create a file elsewhere", act_open_create, "openat"},
	{SANDBOX_MIGRATOR, "move a file out of the snapshot directory", act_snapshot_rename_out,
	 "renameat"},
	/* cleave-monitor */
	{SANDBOX_MONITOR, "time", act_time, NULL},
	{SANDBOX_MONITOR, "thread", act_thread, NULL},
	{SANDBOX_MONITOR, "mmap private", act_mmap_private, NULL},
	{SANDBOX_MONITOR, "pipe I/O", act_pipe_io, NULL},
	{SANDBOX_MONITOR, "AF_UNIX socket", act_unix_socket, NULL},
	{SANDBOX_MONITOR, "memfd_create", act_memfd_create, "memfd_create"},
	{SANDBOX_MONITOR, "mmap shared RAM", act_mmap_shared_memfd, "mmap"},
	{SANDBOX_MONITOR, "AF_INET socket", act_inet_socket, "socket"},
	{SANDBOX_MONITOR, "open /dev/kvm", act_open_kvm_rw, "openat"},
	{SANDBOX_MONITOR, "execve", act_execve, "execve"},
	{SANDBOX_MONITOR, "ptrace", act_ptrace, "ptrace"},
	{SANDBOX_MONITOR, "splice", act_splice, "splice"},
	/* cleave run, after start-up */
	{SANDBOX_LAUNCHER, "time", act_time, NULL},
	{SANDBOX_LAUNCHER, "fork", act_fork, NULL},
	{SANDBOX_LAUNCHER, "pipe I/O", act_pipe_io, NULL},
	{SANDBOX_LAUNCHER, "AF_UNIX socket", act_unix_socket, NULL},
	{SANDBOX_LAUNCHER, "ptrace", act_ptrace, "ptrace"},
	{SANDBOX_LAUNCHER, "bpf", act_bpf, "bpf"},
	{SANDBOX_LAUNCHER, "process_vm_readv", act_process_vm_readv, "process_vm_readv"},
	{SANDBOX_LAUNCHER, "memfd_create", act_memfd_create, "memfd_create"},
	{SANDBOX_LAUNCHER, "init_module", act_init_module, "init_module"},
	{SANDBOX_LAUNCHER, "keyctl", act_keyctl, "keyctl"},
	{SANDBOX_LAUNCHER, "vmsplice", act_vmsplice, "vmsplice"},
	{SANDBOX_LAUNCHER, "KVM ioctl", act_kvm_ioctl, "ioctl"},
	{SANDBOX_LAUNCHER, "open for write", act_open_create, "openat"},
	{SANDBOX_LAUNCHER, "a restarted migrator's save", act_snapshot_save, NULL},
};

/* Runs @fn under @p (with @flags) in a child; returns its wait status and stderr. */
static int run_in_child(const struct sandbox_policy *p, unsigned int flags, action_fn fn, char *err,
			size_t len)
{
	struct fixture f = {.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC)};
	char dir[32];
	int errp[2], status = -1, dirfd;
	size_t off = 0;
	ssize_t n;
	pid_t pid;

	f.real_kvm = f.kvm_fd >= 0;
	if (!f.real_kvm)
		f.kvm_fd = eventfd(0, EFD_CLOEXEC);
	assert_true(f.kvm_fd >= 0);
	/* The snapshot directory a save writes in, where cleave-migrator keeps it. */
	snprintf(dir, sizeof(dir), "/tmp/cleave-policy-XXXXXX");
	assert_non_null(mkdtemp(dir));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	assert_true(dirfd >= 0);
	assert_int_equal(dup3(dirfd, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, O_CLOEXEC),
			 SANDBOX_MIGRATOR_SNAPSHOT_DIRFD);
	close(dirfd);
	f.memfd = memfd_create("sandbox-test", MFD_CLOEXEC);
	assert_true(f.memfd >= 0);
	assert_int_equal(ftruncate(f.memfd, 1 << 16), 0);
	assert_int_equal(pipe2(f.pipe, O_CLOEXEC), 0);
	assert_int_equal(pipe2(errp, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(errp[1], STDERR_FILENO);
		if (sandbox_seccomp_install(p, flags))
			_exit(3);
		_exit(fn(&f) ? 1 : 0);
	}
	close(errp[1]);
	while (off + 1 < len && (n = read(errp[0], err + off, len - off - 1)) > 0)
		off += (size_t)n;
	err[off] = '\0';
	close(errp[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	close(f.pipe[0]);
	close(f.pipe[1]);
	close(f.memfd);
	close(f.kvm_fd);
	close(SANDBOX_MIGRATOR_SNAPSHOT_DIRFD);
	assert_int_equal(rmdir(dir), 0); /* the save removed what it made */
	return status;
}

static void test_policy_cases(void **state)
{
	unsigned int failed = 0;
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct policy_case *c = &cases[i];
		const struct sandbox_policy *p = sandbox_policy_get(c->proc);
		char err[512], want[96];
		int status;

		status = run_in_child(p, SANDBOX_F_TRAP, c->fn, err, sizeof(err));
		if (!c->refused) {
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				print_error("%s: %s should work: status 0x%x, stderr '%s'\n",
					    p->name, c->what, status, err);
				failed++;
			}
			continue;
		}
		if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGSYS) {
			print_error("%s: %s should die of SIGSYS: status 0x%x, stderr '%s'\n",
				    p->name, c->what, status, err);
			failed++;
			continue;
		}
		snprintf(want, sizeof(want), "%s: seccomp: refused syscall ", p->name);
		if (!strstr(err, want)) {
			print_error("%s: %s: no report on stderr: '%s'\n", p->name, c->what, err);
			failed++;
		}
		snprintf(want, sizeof(want), "(%s)\n", c->refused);
		if (!strstr(err, want)) {
			print_error("%s: %s: report does not name %s: '%s'\n", p->name, c->what,
				    c->refused, err);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* Log-only mode (sanitizer builds): a refused call returns, nothing dies. */
static void test_log_mode(void **state)
{
	char err[256];
	int status;

	(void)state;
	status = run_in_child(sandbox_policy_get(SANDBOX_MONITOR), SANDBOX_F_LOG, act_inet_socket,
			      err, sizeof(err));
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* Every rule of every policy compiles (names known to libseccomp) and has a reason. */
static void test_tables_well_formed(void **state)
{
	unsigned int proc, t;
	size_t i;

	(void)state;
	for (proc = 0; proc < SANDBOX_NR_PROCS; proc++) {
		const struct sandbox_policy *p = sandbox_policy_get(proc);

		assert_non_null(p);
		for (t = 0; t < SANDBOX_MAX_TABLES && p->tables[t]; t++)
			for (i = 0; i < p->tables[t]->nr_rules; i++) {
				const struct sandbox_rule *r = &p->tables[t]->rules[i];

				if (!r->reason || strlen(r->reason) < 3)
					fail_msg("%s/%s: %s has no reason", p->name,
						 p->tables[t]->name, r->syscall);
			}
	}
	assert_null(sandbox_policy_get(SANDBOX_NR_PROCS));
}

static bool policy_names(const struct sandbox_policy *p, const char *syscall)
{
	unsigned int t;
	size_t i;

	for (t = 0; t < SANDBOX_MAX_TABLES && p->tables[t]; t++)
		for (i = 0; i < p->tables[t]->nr_rules; i++)
			if (!strcmp(p->tables[t]->rules[i].syscall, syscall))
				return true;
	return false;
}

/*
 * A restarted migrator or monitor runs under the launcher's filter and its
 * own: the launcher's must name every syscall theirs allow.
 */
static void test_launcher_covers_restarted(void **state)
{
	const struct sandbox_policy *l = sandbox_policy_get(SANDBOX_LAUNCHER);
	enum sandbox_proc procs[] = {SANDBOX_MIGRATOR, SANDBOX_MONITOR};
	unsigned int k, t, missing = 0;
	size_t i;

	(void)state;
	for (k = 0; k < 2; k++) {
		const struct sandbox_policy *p = sandbox_policy_get(procs[k]);

		for (t = 0; t < SANDBOX_MAX_TABLES && p->tables[t]; t++)
			for (i = 0; i < p->tables[t]->nr_rules; i++)
				if (!policy_names(l, p->tables[t]->rules[i].syscall)) {
					print_error("%s allows %s, the launcher does not\n",
						    p->name, p->tables[t]->rules[i].syscall);
					missing++;
				}
	}
	assert_int_equal(missing, 0);
}

static int status_field(const char *status, const char *key, char *val, size_t len)
{
	const char *s = strstr(status, key);
	size_t n = 0;

	if (!s)
		return -1;
	s += strlen(key);
	while (*s == '\t' || *s == ' ')
		s++;
	while (s[n] && s[n] != '\n' && n + 1 < len) {
		val[n] = s[n];
		n++;
	}
	val[n] = '\0';
	return 0;
}

/* sandbox_enter: Seccomp 2, NoNewPrivs 1, no capabilities, RLIMIT_CORE 0. */
static void test_enter_status(void **state)
{
	char buf[4096], val[64];
	int p[2], status;
	ssize_t n;
	size_t off = 0;
	pid_t pid;

	(void)state;
	unsetenv(SANDBOX_ENV_DISABLE);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;

		if (sandbox_enter(SANDBOX_MIGRATOR))
			_exit(3);
		fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			_exit(4);
		while ((n = read(fd, buf, sizeof(buf))) > 0)
			if (write(p[1], buf, (size_t)n) != n)
				_exit(5);
		_exit(0);
	}
	close(p[1]);
	while (off + 1 < sizeof(buf) && (n = read(p[0], buf + off, sizeof(buf) - off - 1)) > 0)
		off += (size_t)n;
	buf[off] = '\0';
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(status_field(buf, "Seccomp:", val, sizeof(val)), 0);
	assert_string_equal(val, "2");
	assert_int_equal(status_field(buf, "NoNewPrivs:", val, sizeof(val)), 0);
	assert_string_equal(val, "1");
	assert_int_equal(status_field(buf, "CapEff:", val, sizeof(val)), 0);
	assert_string_equal(val, "0000000000000000");
	assert_int_equal(status_field(buf, "CapPrm:", val, sizeof(val)), 0);
	assert_string_equal(val, "0000000000000000");
}

/*
 * A migrator or monitor the launcher restarts runs sandbox_enter() under the
 * launcher's filter (inherited across fork and exec), without capabilities
 * (SECBIT_NOROOT): everything it does before its own policy must pass that
 * filter too.
 */
static void test_enter_under_launcher(void **state)
{
	static const enum sandbox_proc procs[] = {SANDBOX_MIGRATOR, SANDBOX_MONITOR};
	unsigned int i;

	(void)state;
	unsetenv(SANDBOX_ENV_DISABLE);
	for (i = 0; i < sizeof(procs) / sizeof(procs[0]); i++) {
		struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
		struct __user_cap_data_struct data[2];
		char err[512];
		int errp[2], status;
		size_t off = 0;
		ssize_t n;
		pid_t pid;

		assert_int_equal(pipe2(errp, O_CLOEXEC), 0);
		fflush(NULL);
		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			dup2(errp[1], STDERR_FILENO);
			memset(data, 0, sizeof(data));
			if (syscall(SYS_capset, &hdr, data))
				_exit(2);
			if (sandbox_seccomp_install(sandbox_policy_get(SANDBOX_LAUNCHER),
						    SANDBOX_F_TRAP))
				_exit(3);
			_exit(sandbox_enter(procs[i]) ? 4 : 0);
		}
		close(errp[1]);
		while (off + 1 < sizeof(err) &&
		       (n = read(errp[0], err + off, sizeof(err) - off - 1)) > 0)
			off += (size_t)n;
		err[off] = '\0';
		close(errp[0]);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail_msg("%s restarted under the launcher's filter: status 0x%x, '%s'",
				 sandbox_policy_get(procs[i])->name, status, err);
	}
}

/* CLEAVE_NO_SANDBOX=1: sandbox_enter only warns. */
static void test_enter_disabled(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int fd;

		setenv(SANDBOX_ENV_DISABLE, "1", 1);
		fd = open("/dev/null", O_WRONLY);
		dup2(fd, STDERR_FILENO);
		if (sandbox_enter(SANDBOX_MONITOR))
			_exit(3);
		/* Refused by the monitor policy, fine without one. */
		_exit(memfd_create("x", 0) >= 0 ? 0 : 4);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* sandbox_undumpable(): not dumpable at once, unless the sandbox is disabled. */
static void test_undumpable(void **state)
{
	for (int disabled = 0; disabled < 2; disabled++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0) {
			if (disabled)
				setenv(SANDBOX_ENV_DISABLE, "1", 1);
			else
				unsetenv(SANDBOX_ENV_DISABLE);
			prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
			if (sandbox_undumpable())
				_exit(3);
			_exit(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == disabled ? 0 : 4);
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	(void)state;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_undumpable),
		cmocka_unit_test(test_tables_well_formed),
		cmocka_unit_test(test_launcher_covers_restarted),
		cmocka_unit_test(test_policy_cases),
		cmocka_unit_test(test_log_mode),
		cmocka_unit_test(test_enter_status),
		cmocka_unit_test(test_enter_under_launcher),
		cmocka_unit_test(test_enter_disabled),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
