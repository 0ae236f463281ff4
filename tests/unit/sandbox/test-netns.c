// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migrator in a network namespace the operator names
 * (sandbox_jail_net_ns): the test makes one as `ip netns add` does (a
 * process's namespace bind-mounted onto a file), then a child enters the
 * migrator's jail with it and its policy, and reports which namespace it
 * is in and whether it reaches a listener on the host's loopback.  Needs
 * root and namespaces (exit 77 otherwise).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"
#include "tests/util/test-util.h"

static char dir[64], ns_path[96];
static int host_listener = -1;
static uint16_t host_port;

/* What the jailed child saw. */
struct view {
	int err;	    /* sandbox_jail_apply, 0 on success */
	char ns[64];	    /* readlink /proc/self/ns/net */
	int connect_errno;  /* connecting to the host's loopback listener: 0 or errno */
};

/* A network namespace kept alive by a bind mount on @path, as `ip netns add` makes it. */
static int netns_make(const char *path)
{
	int fd, up[2], hold[2], status, ret;
	char src[64], c = 0;
	pid_t pid;

	fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || pipe(up) || pipe(hold))
		return -errno;
	close(fd);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		c = unshare(CLONE_NEWNET) ? 'e' : 'k';
		close(hold[1]);
		if (write(up[1], &c, 1) != 1)
			_exit(1);
		/* Held in the namespace until the parent's end closes: it is mounted by then. */
		_exit(read(hold[0], &c, 1) < 0);
	}
	close(up[1]);
	close(hold[0]);
	ret = read(up[0], &c, 1) == 1 && c == 'k' ? 0 : -EPERM;
	if (!ret) {
		snprintf(src, sizeof(src), "/proc/%d/ns/net", (int)pid);
		ret = mount(src, path, NULL, MS_BIND, NULL) ? -errno : 0;
	}
	close(hold[1]);
	close(up[0]);
	waitpid(pid, &status, 0);
	return ret;
}

static struct view jailed_view(const struct sandbox_jail *j)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(host_port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct view v;
	int p[2], status;
	pid_t pid;

	memset(&v, 0, sizeof(v));
	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int s;
		ssize_t n;

		v.err = sandbox_jail_apply(j);
		if (!v.err) {
			n = readlink("/proc/self/ns/net", v.ns, sizeof(v.ns) - 1);
			v.ns[n > 0 ? n : 0] = '\0';
			v.err = sandbox_enter(SANDBOX_MIGRATOR);
		}
		if (!v.err) {
			s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
			v.connect_errno =
				s < 0 || connect(s, (struct sockaddr *)&sa, sizeof(sa)) ? errno : 0;
		}
		_exit(write(p[1], &v, sizeof(v)) == sizeof(v) ? 0 : 1);
	}
	close(p[1]);
	assert_int_equal(read(p[0], &v, sizeof(v)), sizeof(v));
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	return v;
}

static void ns_name_of(const char *path, char *buf, size_t len)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	snprintf(buf, len, "net:[%llu]", (unsigned long long)st.st_ino);
}

/* In the named namespace: not the host's, and the host's loopback is out of reach. */
static void test_migrator_in_named_netns(void **state)
{
	static struct sandbox_jail j; /* 4 KiB path inside */
	char want[64];
	struct view v;

	(void)state;
	assert_int_equal(sandbox_jail_init(&j, SANDBOX_MIGRATOR, "/proc/self/exe"), 0);
	assert_int_equal(sandbox_jail_net_ns(&j, ns_path), 0);
	assert_true(j.net_ns_fd >= SANDBOX_JAIL_NS_FD_MIN);
	v = jailed_view(&j);
	assert_int_equal(v.err, 0);
	ns_name_of(ns_path, want, sizeof(want));
	assert_string_equal(v.ns, want);
	assert_int_not_equal(v.connect_errno, 0);
	sandbox_jail_fini(&j);
	assert_int_equal(j.net_ns_fd, -1);
	sandbox_jail_fini(&j); /* twice is harmless */
}

/* The control: the migrator's jail without one stays in the host's and reaches it. */
static void test_migrator_in_host_netns(void **state)
{
	static struct sandbox_jail j;
	char want[64];
	struct view v;

	(void)state;
	assert_int_equal(sandbox_jail_init(&j, SANDBOX_MIGRATOR, "/proc/self/exe"), 0);
	v = jailed_view(&j);
	assert_int_equal(v.err, 0);
	ns_name_of("/proc/self/ns/net", want, sizeof(want));
	assert_string_equal(v.ns, want);
	assert_int_equal(v.connect_errno, 0);
	sandbox_jail_fini(&j);
}

/* What is not a network namespace is refused when named, before any child. */
static void test_net_ns_refused(void **state)
{
	static struct sandbox_jail j;
	char path[96];

	(void)state;
	assert_int_equal(sandbox_jail_init(&j, SANDBOX_MIGRATOR, "/proc/self/exe"), 0);
	snprintf(path, sizeof(path), "%s/missing", dir);
	assert_int_equal(sandbox_jail_net_ns(&j, path), -ENOENT);
	assert_int_equal(sandbox_jail_net_ns(&j, dir), -EINVAL);
	assert_int_equal(sandbox_jail_net_ns(&j, "/proc/self/ns/pid"), -EINVAL);
	assert_int_equal(j.net_ns_fd, -1);
	sandbox_jail_fini(&j);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_migrator_in_named_netns),
		cmocka_unit_test(test_migrator_in_host_netns),
		cmocka_unit_test(test_net_ns_refused),
	};
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int ret;

	if (!sandbox_jail_supported()) {
		printf("SKIP: no namespaces or mounts here (not root?): the jail cannot be "
		       "tested\n");
		return 77;
	}
	unsetenv(SANDBOX_ENV_DISABLE);
	if (test_dir_make(dir, "netns")) {
		perror("scratch dir");
		return 1;
	}
	snprintf(ns_path, sizeof(ns_path), "%s/ns", dir);
	ret = netns_make(ns_path);
	if (ret) {
		printf("SKIP: cannot make a named network namespace here: %s\n", strerror(-ret));
		test_dir_remove(dir);
		return 77;
	}
	host_listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (host_listener < 0 || bind(host_listener, (struct sockaddr *)&sa, sizeof(sa)) ||
	    listen(host_listener, 8) || getsockname(host_listener, (struct sockaddr *)&sa, &len)) {
		perror("loopback listener");
		return 1;
	}
	host_port = ntohs(sa.sin_port);
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	close(host_listener);
	umount2(ns_path, MNT_DETACH);
	test_dir_remove(dir);
	return ret;
}
