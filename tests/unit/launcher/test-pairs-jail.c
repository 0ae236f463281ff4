// SPDX-License-Identifier: GPL-2.0-only
/*
 * The state dir's sockets seen from inside each child's real jail and
 * seccomp policy, as `cleave run` builds them (run_state_dir_jail_bind):
 * a child reaches the sockets of the pairs it is in and no other, and
 * cannot remove, replace or add a socket where it only calls.
 *
 * Each attack runs in its own forked child (jail, then policy, then the
 * one call), twice: in the jail the launcher builds now, where it must
 * fail, and in a jail with the whole state dir writable, as every child
 * had it before, where it must succeed: proof that the attack is real and
 * that the jail is what stops it.  Needs root and namespaces (exit 77
 * otherwise).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "sandbox/sandbox.h"
#include "tests/util/test-util.h"

enum op {
	OP_CONNECT, /* reach a server */
	OP_UNLINK,  /* remove a server's socket (to take its path) */
	OP_BIND,    /* create a socket (a listener of one's own) */
	OP_RENAME,  /* move a server's socket away */
	OP_STAT,    /* see a file */
};

static const char *const op_names[] = {"connect", "unlink", "bind", "rename", "stat"};

struct check {
	enum sandbox_proc proc;
	enum op op;
	const char *path; /* below the state dir */
	int expect;	  /* in the new jail: 0, the errno, or -SIGSYS (the policy) */
	bool attack;	  /* the old jail let it through: checked to succeed there */
	const char *why;
};

static const struct check checks[] = {
	/* cleave-vcpu: its own two dirs, nothing of the migrator's. */
	{SANDBOX_VCPU, OP_CONNECT, "vcpu-mig/rpc", 0, false, "its own listener"},
	{SANDBOX_VCPU, OP_CONNECT, "mig-mon/rpc", ENOENT, true, "ask the migrator to MIGRATE"},
	{SANDBOX_VCPU, OP_CONNECT, "mig-mon/events", ENOENT, true, "read migration events"},
	{SANDBOX_VCPU, OP_STAT, "lock", ENOENT, true, "see the launcher's lock"},
	/* cleave-migrator: calls cleave-vcpu through its own pair only. */
	{SANDBOX_MIGRATOR, OP_CONNECT, "vcpu-mig/rpc", 0, false, "the vCPU process, as a migrator"},
	{SANDBOX_MIGRATOR, OP_CONNECT, "vcpu-mon/rpc", ENOENT, true,
	 "the vCPU process's monitor methods (QUIT, RESET)"},
	{SANDBOX_MIGRATOR, OP_UNLINK, "vcpu-mig/rpc", EROFS, true,
	 "remove the vCPU process's socket"},
	{SANDBOX_MIGRATOR, OP_BIND, "vcpu-mig/fake", EROFS, true, "listen beside the vCPU process"},
	{SANDBOX_MIGRATOR, OP_RENAME, "vcpu-mig/rpc", -SIGSYS, false,
	 "move the vCPU process's socket away: its policy has no rename"},
	{SANDBOX_MIGRATOR, OP_BIND, "mig-mon/fake", 0, false, "listen in its own dir"},
	/* cleave-monitor: calls both, serves nothing. */
	{SANDBOX_MONITOR, OP_CONNECT, "vcpu-mon/rpc", 0, false, "the vCPU process, as a monitor"},
	{SANDBOX_MONITOR, OP_CONNECT, "mig-mon/rpc", 0, false, "the migrator"},
	{SANDBOX_MONITOR, OP_CONNECT, "vcpu-mig/rpc", ENOENT, true,
	 "the vCPU process's migrator methods (SAVE_STATE, LOAD_STATE)"},
	{SANDBOX_MONITOR, OP_UNLINK, "mig-mon/rpc", EROFS, true, "remove the migrator's socket"},
	{SANDBOX_MONITOR, OP_BIND, "vcpu-mon/fake", -SIGSYS, false,
	 "listen beside the vCPU process: its policy has no bind"},
	{SANDBOX_MONITOR, OP_UNLINK, "vcpu-mon/events", EROFS, true,
	 "remove the vCPU process's event socket"},
};

static const char *const listeners[] = {"vcpu-mig/rpc", "vcpu-mon/rpc", "vcpu-mon/events",
					"mig-mon/rpc", "mig-mon/events"};
/* What a check that got through leaves behind. */
static const char *const leftovers[] = {"vcpu-mig/fake", "vcpu-mon/fake", "mig-mon/fake",
					"vcpu-mig/moved"};

static struct run_state_dir sd;
static char dir[64];
static int listen_fds[sizeof(listeners) / sizeof(listeners[0])];

static void sun_fill(struct sockaddr_un *sa, const char *rel)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	assert_true((size_t)snprintf(sa->sun_path, sizeof(sa->sun_path), "%s/%s", sd.path, rel) <
		    sizeof(sa->sun_path));
}

/* The servers' sockets, made anew before each check (an old-jail attack may remove one). */
static void listeners_make(void)
{
	for (size_t i = 0; i < sizeof(leftovers) / sizeof(leftovers[0]); i++) {
		struct sockaddr_un sa;

		sun_fill(&sa, leftovers[i]);
		unlink(sa.sun_path);
	}
	for (size_t i = 0; i < sizeof(listeners) / sizeof(listeners[0]); i++) {
		struct sockaddr_un sa;

		if (listen_fds[i] > 0)
			close(listen_fds[i]);
		sun_fill(&sa, listeners[i]);
		unlink(sa.sun_path);
		listen_fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		assert_true(listen_fds[i] > 0);
		assert_int_equal(bind(listen_fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(listen(listen_fds[i], 64), 0);
	}
}

/* In the jailed child: the one call; 0 or its errno. */
static int op_run(enum op op, const char *rel)
{
	struct sockaddr_un sa, to;
	struct stat st;
	int fd, ret = 0;

	sun_fill(&sa, rel);
	switch (op) {
	case OP_CONNECT:
	case OP_BIND:
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return errno;
		if (op == OP_CONNECT)
			ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
		else
			ret = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
		ret = ret ? errno : 0;
		close(fd);
		return ret;
	case OP_UNLINK:
		return unlink(sa.sun_path) ? errno : 0;
	case OP_RENAME:
		sun_fill(&to, "vcpu-mig/moved");
		return rename(sa.sun_path, to.sun_path) ? errno : 0;
	case OP_STAT:
		return stat(sa.sun_path, &st) ? errno : 0;
	}
	return EINVAL;
}

/*
 * Forks a child that enters @jail and @proc's policy, then makes the call.
 * Returns 0 or the errno, or -SIGSYS when the policy killed it.
 */
static int check_run(const struct check *c, const struct sandbox_jail *jail)
{
	int status, quiet;
	pid_t pid;

	listeners_make();
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		quiet = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (sandbox_jail_apply(jail))
			_exit(200);
		/* A refusal by the policy is reported on stderr: expected here. */
		if (quiet >= 0)
			dup2(quiet, STDERR_FILENO);
		if (sandbox_enter(c->proc))
			_exit(201);
		_exit(op_run(c->op, c->path));
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS)
		return -SIGSYS;
	if (!WIFEXITED(status) || WEXITSTATUS(status) >= 200)
		fail_msg("%s %s: child status 0x%x", op_names[c->op], c->path, status);
	return WEXITSTATUS(status);
}

static const char *proc_name(enum sandbox_proc p)
{
	return p == SANDBOX_VCPU       ? "cleave-vcpu"
	       : p == SANDBOX_MIGRATOR ? "cleave-migrator"
				       : "cleave-monitor";
}

/*
 * @proc's jail as the launcher makes it; /dev/kvm, which cleave run checks
 * for before any jail, may be missing here: what is tested does not need it.
 */
static void jail_init(struct sandbox_jail *j, enum sandbox_proc proc)
{
	assert_int_equal(sandbox_jail_init(j, proc, "/proc/self/exe"), 0);
	for (unsigned int i = 0; i < j->nr_binds; i++)
		if (!strcmp(j->binds[i].path, "/dev/kvm"))
			j->binds[i].optional = true;
}

static void test_pairs_reach(void **state)
{
	static struct sandbox_jail now, before; /* 4 KiB paths inside */
	unsigned int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
		const struct check *c = &checks[i];
		int got;

		jail_init(&now, c->proc);
		assert_int_equal(run_state_dir_jail_bind(&sd, &now, c->proc), 0);
		got = check_run(c, &now);
		/* A sanitizer build's policy only logs: the jail's refusal shows instead. */
		if (c->expect == -SIGSYS && sandbox_sanitizer_build() && got == EROFS)
			got = -SIGSYS;
		if (got != c->expect) {
			print_error("%s, %s %s (%s): %s, expected %s\n", proc_name(c->proc),
				    op_names[c->op], c->path, c->why,
				    got < 0 ? "SIGSYS"
				    : got   ? strerror(got)
					    : "allowed",
				    c->expect ? strerror(c->expect) : "allowed");
			failed++;
		}
		if (!c->attack)
			continue;
		/* The control: with the state dir as it used to be bound, it works. */
		jail_init(&before, c->proc);
		assert_int_equal(sandbox_jail_bind(&before, sd.path, true, false), 0);
		got = check_run(c, &before);
		if (got != 0) {
			print_error("%s, %s %s (%s) in the old jail: %s (the attack itself is "
				    "broken)\n",
				    proc_name(c->proc), op_names[c->op], c->path, c->why,
				    got < 0 ? "SIGSYS" : strerror(got));
			failed++;
		}
	}
	assert_int_equal(failed, 0);
}

/* --uid-base for the test: far above any real user, never in /etc/passwd. */
#define TEST_UID_BASE 3100000u

/*
 * A server child: its jail and user, binds and listens on its sockets,
 * sends its pid as its PID namespace numbers it (*@ns_pid), then waits
 * until *@hold is closed.
 */
static pid_t server_start(enum sandbox_proc proc, const char *const *socks, int *hold_fd,
			  pid_t *ns_pid)
{
	static struct sandbox_jail j;
	int up[2], hold[2];
	pid_t pid, me;
	char c;

	jail_init(&j, proc);
	assert_int_equal(run_state_dir_jail_bind(&sd, &j, proc), 0);
	assert_int_equal(run_ids_jail(&j, proc, TEST_UID_BASE, 0), 0);
	assert_int_equal(pipe2(up, O_CLOEXEC), 0);
	assert_int_equal(pipe2(hold, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(hold[1]);
		if (sandbox_jail_apply(&j))
			_exit(1);
		for (; *socks; socks++) {
			struct sockaddr_un sa;
			int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

			sun_fill(&sa, *socks);
			unlink(sa.sun_path);
			if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8))
				_exit(2);
		}
		me = getpid();
		if (write(up[1], &me, sizeof(me)) != sizeof(me))
			_exit(3);
		_exit(read(hold[0], &c, 1) < 0); /* until the test closes its end */
	}
	close(up[1]);
	close(hold[0]);
	assert_int_equal(read(up[0], ns_pid, sizeof(*ns_pid)), sizeof(*ns_pid));
	close(up[0]);
	*hold_fd = hold[1];
	return pid;
}

/* What a client child saw: its ids, and one call's result. */
struct user_view {
	uid_t uid;
	gid_t gid;
	int result;
};

static struct user_view user_check(enum sandbox_proc proc, bool new_jail, enum op op,
				   const char *path, pid_t signal_pid)
{
	static struct sandbox_jail j;
	struct user_view v = {0};
	int p[2], status;
	pid_t pid;

	jail_init(&j, proc);
	if (new_jail)
		assert_int_equal(run_state_dir_jail_bind(&sd, &j, proc), 0);
	else
		assert_int_equal(sandbox_jail_bind(&j, sd.path, true, false), 0);
	assert_int_equal(run_ids_jail(&j, proc, TEST_UID_BASE, 0), 0);
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (sandbox_jail_apply(&j))
			_exit(1);
		/* Before the policy, which has neither getuid nor kill: this is about the user. */
		v.uid = getuid();
		v.gid = getgid();
		if (signal_pid)
			v.result = kill(signal_pid, 0) ? errno : 0;
		else if (sandbox_enter(proc))
			_exit(1);
		else
			v.result = op_run(op, path);
		_exit(write(p[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &v, sizeof(v)), sizeof(v));
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return v;
}

/*
 * --uid-base: each child is its own user; the sockets its pairs share are
 * reachable through the pair's group, and nothing else of another child
 * is: not its process (signals), not the state dir outside the jail.
 */
static void test_pairs_users(void **state)
{
	static const char *const vcpu_socks[] = {"vcpu-mig/rpc", "vcpu-mon/rpc", "vcpu-mon/events",
						 NULL};
	static const char *const mig_socks[] = {"mig-mon/rpc", "mig-mon/events", NULL};
	struct user_view v;
	int vcpu_hold, mig_hold;
	pid_t vcpu, mig, vcpu_ns, mig_ns;

	(void)state;
	for (size_t i = 0; i < sizeof(listen_fds) / sizeof(listen_fds[0]); i++)
		if (listen_fds[i] > 0) {
			close(listen_fds[i]);
			listen_fds[i] = -1;
		}
	assert_int_equal(run_state_dir_pairs_own(&sd, TEST_UID_BASE), 0);
	vcpu = server_start(SANDBOX_VCPU, vcpu_socks, &vcpu_hold, &vcpu_ns);
	mig = server_start(SANDBOX_MIGRATOR, mig_socks, &mig_hold, &mig_ns);

	/* Each caller reaches its peers' sockets as its own user. */
	v = user_check(SANDBOX_MIGRATOR, true, OP_CONNECT, "vcpu-mig/rpc", 0);
	assert_int_equal(v.uid, TEST_UID_BASE + 1);
	assert_int_equal(v.gid, TEST_UID_BASE + 1);
	assert_int_equal(v.result, 0);
	v = user_check(SANDBOX_MONITOR, true, OP_CONNECT, "vcpu-mon/events", 0);
	assert_int_equal(v.uid, TEST_UID_BASE + 2);
	assert_int_equal(v.result, 0);
	v = user_check(SANDBOX_MONITOR, true, OP_CONNECT, "mig-mon/rpc", 0);
	assert_int_equal(v.result, 0);
	/* Another child's process is another user's: no signal. */
	v = user_check(SANDBOX_MONITOR, true, OP_CONNECT, NULL, vcpu_ns);
	assert_int_equal(v.result, EPERM);
	v = user_check(SANDBOX_VCPU, true, OP_CONNECT, NULL, mig_ns);
	assert_int_equal(v.result, EPERM);
	/* Even given the whole state dir, writable, as before: it may not enter it. */
	v = user_check(SANDBOX_MIGRATOR, false, OP_UNLINK, "vcpu-mig/rpc", 0);
	assert_int_equal(v.result, EACCES);
	v = user_check(SANDBOX_MIGRATOR, false, OP_CONNECT, "vcpu-mon/rpc", 0);
	assert_int_equal(v.result, EACCES);

	close(vcpu_hold);
	close(mig_hold);
	assert_int_equal(waitpid(vcpu, NULL, 0), vcpu);
	assert_int_equal(waitpid(mig, NULL, 0), mig);
}

/*
 * --uid-base's preflight (run_ids_access): the kernel's own answer for a
 * child's user and groups, the directories on the way included.
 */
static void test_ids_access(void **state)
{
	char tmp[] = "/tmp/cleave-ids-XXXXXX", file[64], cmd[64];
	gid_t shared = run_ids_pair_gid(TEST_UID_BASE, RUN_PAIR_MIGRATOR_MONITOR);
	int fd;

	(void)state;
	if (geteuid()) {
		print_message("not root: other users' access not tested\n");
		skip();
	}
	assert_non_null(mkdtemp(tmp)); /* 0700, root's */
	snprintf(file, sizeof(file), "%s/key.pem", tmp);
	fd = open(file, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	close(fd);
	/* Readable by all, but behind a directory only root may search. */
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, file, R_OK), -EACCES);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, tmp, W_OK | X_OK),
			 -EACCES);
	/* The migrator's own directory: its user may, the monitor's may not. */
	assert_int_equal(chown(tmp, TEST_UID_BASE + 1, TEST_UID_BASE + 1), 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, tmp, W_OK | X_OK), 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MONITOR, 0, tmp, X_OK), -EACCES);
	/* A key of group migrator+monitor, mode 0640: both may read it, through a 0750 dir. */
	assert_int_equal(chmod(file, 0640), 0);
	assert_int_equal(chown(file, 0, shared), 0);
	assert_int_equal(chmod(tmp, 0750), 0);
	assert_int_equal(chown(tmp, 0, shared), 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, file, R_OK), 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MONITOR, 0, file, R_OK), 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_VCPU, 0, file, R_OK), -EACCES);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, file, W_OK), -EACCES);
	/*
	 * A shared --migrate-socket-dir: group G, setgid, 2770.  Every VM's
	 * migrator joins G (another VM's base too), nobody else may enter.
	 */
	assert_int_equal(chown(tmp, 0, TEST_UID_BASE + 100), 0);
	assert_int_equal(chmod(tmp, 02750), 0);
	assert_int_equal(run_ids_share_gid(tmp), 0); /* not group-writable: nothing to share */
	assert_int_equal(chmod(tmp, 02770), 0);
	assert_int_equal(run_ids_share_gid(tmp), TEST_UID_BASE + 100);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, TEST_UID_BASE + 100, tmp,
					W_OK | X_OK),
			 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE + 10, SANDBOX_MIGRATOR, TEST_UID_BASE + 100,
					tmp, W_OK | X_OK),
			 0);
	assert_int_equal(run_ids_access(TEST_UID_BASE, SANDBOX_MIGRATOR, 0, tmp, W_OK | X_OK),
			 -EACCES);
	assert_int_equal(
		run_ids_access(TEST_UID_BASE, SANDBOX_MONITOR, TEST_UID_BASE + 100, tmp, X_OK),
		-EACCES);
	assert_int_equal(chown(tmp, 0, 0), 0); /* root's group is never shared */
	assert_int_equal(chmod(tmp, 02770), 0);
	assert_int_equal(run_ids_share_gid(tmp), 0);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tmp);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pairs_reach),
		cmocka_unit_test(test_pairs_users),
		cmocka_unit_test(test_ids_access),
	};
	int holder = -1, ret;
	char path[96];

	if (!sandbox_jail_supported()) {
		printf("SKIP: no namespaces or mounts here (not root?): the jail cannot be "
		       "tested\n");
		return 77;
	}
	unsetenv(SANDBOX_ENV_DISABLE);
	if (test_dir_make(dir, "pairs") || sandbox_jail_pid_ns_create(&holder)) {
		printf("scratch dir or PID namespace: %s\n", strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/vm", dir);
	if (run_state_dir_create(&sd, path))
		return 1;
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	for (size_t i = 0; i < sizeof(listeners) / sizeof(listeners[0]); i++)
		if (listen_fds[i] > 0)
			close(listen_fds[i]);
	run_state_dir_remove(&sd);
	sandbox_jail_pid_ns_destroy(holder);
	test_dir_remove(dir);
	return ret;
}
