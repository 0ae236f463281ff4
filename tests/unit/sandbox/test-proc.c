// SPDX-License-Identifier: GPL-2.0-only
/*
 * One cleave process against another through /proc, as a compromised
 * monitor would try it on cleave-vcpu: a victim maps a memfd holding a
 * secret (guest RAM), an attacker under the monitor's sandbox tries to
 * reopen that memfd through /proc/<victim>/fd/N, to read it through
 * /proc/<victim>/mem and with process_vm_readv().
 *
 * Each attack runs twice: against a victim that entered its sandbox
 * (sandbox_enter(), as every cleave process does), where it must fail, and
 * against one that only dropped its capabilities and kept its dumpable flag,
 * where it must succeed: the attack is real, and what stops it is the
 * victim's sandbox, not an accident of the test.
 *
 * As root, the same again with the attacker in the jail of a cleave-monitor
 * (sandbox_jail_apply(), one PID namespace for both, as cleave run starts
 * them): its /proc is read-only, has no /proc/sys or /proc/meminfo, and
 * does not show the sandboxed victim at all.  No KVM needed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <limits.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

#define SECRET	    "cleave guest RAM: the secret page"
#define SECRET_SIZE sizeof(SECRET)

/* A victim's answer: where its secret is, as a sibling would look for it. */
struct victim_info {
	int err;       /* 0, or why the victim could not set up */
	pid_t pid;     /* getpid() in the victim: its number in the attacker's /proc */
	int fd;	       /* the memfd in the victim's fd table */
	uint64_t addr; /* the memfd's mapping in the victim */
};

struct victim {
	pid_t pid;   /* as its parent sees it, for waitpid */
	int release; /* write end: closing it ends the victim */
	struct victim_info info;
};

enum victim_kind {
	VICTIM_SANDBOXED, /* sandbox_enter(SANDBOX_VCPU): what cleave-vcpu does */
	VICTIM_DUMPABLE,  /* capabilities dropped, dumpable flag kept: the control */
};

enum attack {
	ATTACK_FD,    /* open("/proc/<pid>/fd/<n>") and read */
	ATTACK_MEM,   /* open("/proc/<pid>/mem") and pread at the mapping */
	ATTACK_VM,    /* process_vm_readv() of the mapping */
	ATTACK_SEE,   /* stat("/proc/<pid>"): the process is visible at all */
	ATTACK_COUNT, /* not an attack: the number of them */
};

static const char *const attack_names[] = {
	[ATTACK_FD] = "/proc/<pid>/fd/<memfd>",
	[ATTACK_MEM] = "/proc/<pid>/mem",
	[ATTACK_VM] = "process_vm_readv",
	[ATTACK_SEE] = "stat /proc/<pid>",
};

/* What the attacker found of its jail's /proc before the attacks. */
struct jail_view {
	int proc_readonly;  /* statvfs("/proc") says ST_RDONLY */
	int comm_write_err; /* errno of opening /proc/self/comm for writing */
	int meminfo_err;    /* errno of access("/proc/meminfo") */
	int sys_err;	    /* errno of access("/proc/sys/kernel") */
};

/* The outcome of one attack: 0 = secret read (or victim seen), else an errno; -SIGSYS = killed. */
struct attack_result {
	int result;
	struct jail_view view;
};

static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = read(fd, (char *)buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -1 : (ssize_t)off;
		off += (size_t)n;
	}
	return (ssize_t)off;
}

/* Capabilities zero in every set, as after sandbox_enter(), dumpable flag untouched. */
static int caps_drop_all(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	return (int)syscall(SYS_capset, &hdr, data);
}

static void __attribute__((noreturn)) victim_main(enum victim_kind kind, int report, int release)
{
	struct victim_info info = {.pid = getpid()};
	char c;
	void *p;

	info.fd = memfd_create("cleave-ram", MFD_CLOEXEC);
	if (info.fd < 0 || ftruncate(info.fd, 4096)) {
		info.err = errno;
		goto out;
	}
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, info.fd, 0);
	if (p == MAP_FAILED) {
		info.err = errno;
		goto out;
	}
	memcpy(p, SECRET, SECRET_SIZE);
	info.addr = (uint64_t)(uintptr_t)p;
	if (kind == VICTIM_SANDBOXED)
		info.err = -sandbox_enter(SANDBOX_VCPU);
	else if (caps_drop_all())
		info.err = errno;
out:
	if (write(report, &info, sizeof(info)) != sizeof(info))
		_exit(2);
	/* Alive, with its secret mapped, until the test closes the release pipe. */
	while (read(release, &c, 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

static void victim_start(struct victim *v, enum victim_kind kind)
{
	int rep[2], rel[2];

	assert_int_equal(pipe2(rep, O_CLOEXEC), 0);
	assert_int_equal(pipe2(rel, O_CLOEXEC), 0);
	fflush(NULL);
	v->pid = fork();
	assert_true(v->pid >= 0);
	if (v->pid == 0) {
		close(rep[0]);
		close(rel[1]);
		victim_main(kind, rep[1], rel[0]);
	}
	close(rep[1]);
	close(rel[0]);
	v->release = rel[1];
	assert_int_equal(read_full(rep[0], &v->info, sizeof(v->info)), sizeof(v->info));
	close(rep[0]);
	if (v->info.err)
		fail_msg("victim set-up: %s", strerror(v->info.err));
}

static void victim_stop(struct victim *v)
{
	int status;

	close(v->release);
	assert_int_equal(waitpid(v->pid, &status, 0), v->pid);
	assert_true(WIFEXITED(status));
}

/* Runs in the attacker, under the monitor's policy: 0 when it got the secret. */
static int attack_run(enum attack a, const struct victim_info *v)
{
	char path[64], buf[SECRET_SIZE];
	struct iovec local = {buf, sizeof(buf)};
	struct iovec remote = {(void *)(uintptr_t)v->addr, sizeof(buf)};
	struct stat st;
	ssize_t n;
	int fd;

	memset(buf, 0, sizeof(buf));
	switch (a) {
	case ATTACK_FD:
		snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)v->pid, v->fd);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno;
		n = pread(fd, buf, sizeof(buf), 0);
		close(fd);
		break;
	case ATTACK_MEM:
		snprintf(path, sizeof(path), "/proc/%d/mem", (int)v->pid);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return errno;
		n = pread(fd, buf, sizeof(buf), (off_t)v->addr);
		close(fd);
		break;
	case ATTACK_VM:
		n = process_vm_readv(v->pid, &local, 1, &remote, 1, 0);
		break;
	case ATTACK_SEE:
	default:
		snprintf(path, sizeof(path), "/proc/%d", (int)v->pid);
		return stat(path, &st) ? errno : 0;
	}
	if (n < 0)
		return errno;
	return memcmp(buf, SECRET, SECRET_SIZE) ? EIO : 0;
}

static int errno_of(int ret)
{
	return ret ? errno : 0;
}

/* Before its own policy: what the jail's /proc offers (as root, capabilities still held). */
static void jail_look(struct jail_view *view)
{
	struct statvfs sv;
	int fd;

	view->proc_readonly = statvfs("/proc", &sv) == 0 && (sv.f_flag & ST_RDONLY);
	fd = open("/proc/self/comm", O_WRONLY | O_CLOEXEC);
	view->comm_write_err = fd < 0 ? errno : 0;
	if (fd >= 0)
		close(fd);
	view->meminfo_err = errno_of(access("/proc/meminfo", F_OK));
	view->sys_err = errno_of(access("/proc/sys/kernel", F_OK));
}

/*
 * Forks the attacker: @jail (or NULL) applied as cleave run does before
 * exec, then sandbox_enter(SANDBOX_MONITOR) as cleave-monitor does at the
 * end of its init, then attack @a on @v.
 */
static struct attack_result attacker_run(enum attack a, const struct victim_info *v,
					 const struct sandbox_jail *jail)
{
	struct attack_result r = {.result = -1};
	int p[2], status, quiet;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Opened before the jail, which has /dev/null but takes it away from paths. */
		quiet = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (jail) {
			if (sandbox_jail_apply(jail))
				_exit(3);
			jail_look(&r.view);
		}
		/* The view first: the attack may end in SIGSYS. */
		if (write(p[1], &r.view, sizeof(r.view)) != sizeof(r.view))
			_exit(5);
		/* The SIGSYS report of a refused call is expected: keep it off the log. */
		if (quiet >= 0)
			dup2(quiet, STDERR_FILENO);
		if (sandbox_enter(SANDBOX_MONITOR))
			_exit(4);
		r.result = attack_run(a, v);
		_exit(write(p[1], &r.result, sizeof(r.result)) == sizeof(r.result) ? 0 : 5);
	}
	close(p[1]);
	if (read_full(p[0], &r.view, sizeof(r.view)) != sizeof(r.view) ||
	    read_full(p[0], &r.result, sizeof(r.result)) != sizeof(r.result))
		r.result = -1;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		r.result = -SIGSYS;
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("attacker (%s): status 0x%x", attack_names[a], status);
	return r;
}

static bool refused(int result)
{
	return result == EACCES || result == EPERM || result == ENOENT || result == -SIGSYS;
}

static const char *result_name(enum attack a, int result)
{
	if (result == 0)
		return a == ATTACK_SEE ? "visible" : "got the secret";
	if (result == -SIGSYS)
		return "killed by SIGSYS";
	return result > 0 ? strerror(result) : "no answer";
}

/* Without a jail (cleave run as an ordinary user): the dumpable flag decides. */
static void test_sibling_attacks(void **state)
{
	static const enum attack attacks[] = {ATTACK_FD, ATTACK_MEM, ATTACK_VM};
	struct victim v;
	unsigned int i, failed = 0;

	(void)state;
	unsetenv(SANDBOX_ENV_DISABLE);
	victim_start(&v, VICTIM_SANDBOXED);
	for (i = 0; i < sizeof(attacks) / sizeof(attacks[0]); i++) {
		struct attack_result r = attacker_run(attacks[i], &v.info, NULL);

		if (!refused(r.result)) {
			print_error("sandboxed victim, %s: %s\n", attack_names[attacks[i]],
				    result_name(attacks[i], r.result));
			failed++;
		}
	}
	victim_stop(&v);

	/* The control: the same calls succeed against a dumpable sibling. */
	victim_start(&v, VICTIM_DUMPABLE);
	for (i = 0; i < 2; i++) {
		struct attack_result r = attacker_run(attacks[i], &v.info, NULL);

		if (r.result != 0) {
			print_error("dumpable victim, %s: %s (the attack itself is broken)\n",
				    attack_names[attacks[i]], result_name(attacks[i], r.result));
			failed++;
		}
	}
	/* process_vm_readv is refused by the monitor's policy whatever the victim. */
	victim_stop(&v);
	assert_int_equal(failed, 0);
}

/* Whether this kernel's proc takes subset=pid (5.8+): then the jail must use it. */
static bool proc_subset_supported(void)
{
	int fs = fsopen("proc", FSOPEN_CLOEXEC);
	bool ok;

	if (fs < 0)
		return false;
	ok = fsconfig(fs, FSCONFIG_SET_STRING, "subset", "pid", 0) == 0;
	close(fs);
	return ok;
}

/* Results of the jailed run, from the launcher-like process to the test. */
struct jail_report {
	int err; /* set-up failure in the launcher stand-in: errno */
	struct attack_result sandboxed[ATTACK_COUNT];
	struct attack_result dumpable[ATTACK_COUNT];
};

/*
 * What `cleave run` does, in a child standing in for the launcher: one PID
 * namespace for all, then victim and attacker forked into it, the attacker
 * jailed as a cleave-monitor is.
 */
static void __attribute__((noreturn)) jailed_launcher(const char *state_dir, int out)
{
	static struct sandbox_jail jail; /* 4 KiB path inside: not on a small stack */
	struct jail_report rep;
	struct victim v;
	int holder = -1;
	unsigned int a;

	memset(&rep, 0, sizeof(rep));
	rep.err = -sandbox_jail_pid_ns_create(&holder);
	if (!rep.err)
		rep.err = -sandbox_jail_init(&jail, SANDBOX_MONITOR, "/proc/self/exe");
	if (!rep.err)
		rep.err = -sandbox_jail_bind(&jail, state_dir, true, false);
	if (rep.err)
		goto out;
	victim_start(&v, VICTIM_SANDBOXED);
	for (a = 0; a < ATTACK_COUNT; a++)
		rep.sandboxed[a] = attacker_run(a, &v.info, &jail);
	victim_stop(&v);
	victim_start(&v, VICTIM_DUMPABLE);
	for (a = 0; a < ATTACK_COUNT; a++)
		rep.dumpable[a] = attacker_run(a, &v.info, &jail);
	victim_stop(&v);
out:
	sandbox_jail_pid_ns_destroy(holder);
	_exit(write(out, &rep, sizeof(rep)) == sizeof(rep) ? 0 : 1);
}

/* As root: the attacker in a cleave-monitor's jail, the victim beside it in the PID namespace. */
static void test_jailed_attacks(void **state)
{
	char dir[] = "/tmp/cleave-proc-test-XXXXXX";
	const struct jail_view *view;
	struct jail_report rep;
	unsigned int a, failed = 0;
	bool subset = proc_subset_supported();
	int p[2], status;
	pid_t pid;

	(void)state;
	if (!sandbox_jail_supported()) {
		print_message("no namespaces or mounts here (not root?): jail not tested\n");
		skip();
	}
	unsetenv(SANDBOX_ENV_DISABLE);
	assert_non_null(mkdtemp(dir));
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		jailed_launcher(dir, p[1]);
	}
	close(p[1]);
	memset(&rep, 0, sizeof(rep));
	rep.err = read_full(p[0], &rep, sizeof(rep)) == sizeof(rep) ? rep.err : EIO;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	rmdir(dir);
	if (rep.err)
		fail_msg("jailed run set-up: %s", strerror(rep.err));
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);

	for (a = 0; a < ATTACK_COUNT; a++) {
		const struct attack_result *s = &rep.sandboxed[a], *d = &rep.dumpable[a];

		/* Sandboxed victim: not even there, so every path fails. */
		if (!refused(s->result) || (a == ATTACK_SEE && s->result != ENOENT)) {
			print_error("jail, sandboxed victim, %s: %s\n", attack_names[a],
				    result_name(a, s->result));
			failed++;
		}
		/* Dumpable victim: visible and readable (process_vm_readv: the policy). */
		if (a != ATTACK_VM && d->result != 0) {
			print_error("jail, dumpable victim, %s: %s (the attack itself is broken)\n",
				    attack_names[a], result_name(a, d->result));
			failed++;
		}
	}
	/* Every attacker saw the same /proc; the first one says what it was. */
	view = &rep.sandboxed[0].view;
	if (!view->proc_readonly || view->comm_write_err != EROFS) {
		print_error("jail: /proc is writable (statvfs ro %d, open for write: %s)\n",
			    view->proc_readonly, strerror(view->comm_write_err));
		failed++;
	}
	if (subset && (view->meminfo_err != ENOENT || view->sys_err != ENOENT)) {
		print_error("jail: /proc shows more than processes (meminfo: %s, sys: %s)\n",
			    strerror(view->meminfo_err), strerror(view->sys_err));
		failed++;
	}
	assert_int_equal(failed, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sibling_attacks),
		cmocka_unit_test(test_jailed_attacks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
