// SPDX-License-Identifier: GPL-2.0-only
/*
 * The sandbox of a real `cleave run` (idle guest, a QMP socket): every
 * process, the launcher included, runs with Seccomp 2 and NoNewPrivs 1;
 * the children have no capabilities; as root each child has its own mount,
 * IPC and PID namespace (net too, but for the migrator) and a root holding
 * only what it needs.  QMP works, a killed migrator comes back sandboxed,
 * and --no-sandbox turns all of it off with a warning.
 *
 * argv[1]: the cleave binary (children found in the build tree).  Each test
 * kills its cleave by PID and checks no child PID it saw survives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "tests/util/test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CAP_SYS_ADMIN_BIT (1ULL << 21)

static const char *cleave_bin;

static const char *const child_names[] = {"cleave-vcpu", "cleave-migrator", "cleave-monitor"};

struct vm {
	char dir[64];
	char log[128];
	char qmp[128];
	pid_t pid;
	pid_t child[3]; /* latest PID of each child_names[i] */
};

/* The @nth (1-based) "started NAME pid N" of the log, 0 if not there yet. */
static pid_t log_child_pid(const char *log, const char *name, unsigned int nth)
{
	char want[64];
	const char *s = log;
	pid_t pid = 0;

	snprintf(want, sizeof(want), "started %s pid ", name);
	while (nth-- && (s = strstr(s, want))) {
		s += strlen(want);
		pid = (pid_t)atoi(s);
	}
	return s ? pid : 0;
}

static pid_t wait_child_pid(struct vm *vm, unsigned int idx, unsigned int nth)
{
	int i;

	for (i = 0; i < 500; i++) {
		char *log = test_file_read(vm->log);
		pid_t p = log_child_pid(log, child_names[idx], nth);

		free(log);
		if (p) {
			vm->child[idx] = p;
			return p;
		}
		test_sleep_ms(20);
	}
	fail_msg("%s #%u never started; log %s", child_names[idx], nth, vm->log);
	return 0;
}

static void vm_start(struct vm *vm, bool sandbox)
{
	int fd;

	memset(vm, 0, sizeof(*vm));
	strcpy(vm->dir, "/tmp/cleave-sbx-XXXXXX");
	assert_non_null(mkdtemp(vm->dir));
	snprintf(vm->log, sizeof(vm->log), "%s/log", vm->dir);
	snprintf(vm->qmp, sizeof(vm->qmp), "%s/qmp.sock", vm->dir);
	vm->pid = fork();
	assert_true(vm->pid >= 0);
	if (vm->pid == 0) {
		char state[128], qmp[160];

		/* A test killed by its timeout must not leave a VM behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		snprintf(state, sizeof(state), "%s/state", vm->dir);
		snprintf(qmp, sizeof(qmp), "unix:%s", vm->qmp);
		fd = open(vm->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		dup2(fd, STDERR_FILENO);
		dup2(fd, STDOUT_FILENO);
		execl(cleave_bin, "cleave", "run", "-v", "--append", "mode=idle hb=200", "--memory",
		      "64M", "--state-dir", state, "--qmp", qmp,
		      sandbox ? "--name" : "--no-sandbox", sandbox ? "sbx" : NULL, NULL);
		_exit(127);
	}
}

static void vm_stop(struct vm *vm)
{
	unsigned int i;
	int status, t;

	if (vm->pid > 0) {
		kill(vm->pid, SIGTERM);
		for (t = 0; t < 500 && waitpid(vm->pid, &status, WNOHANG) == 0; t++)
			test_sleep_ms(20);
		if (t == 500) {
			kill(vm->pid, SIGKILL);
			waitpid(vm->pid, &status, 0);
		}
		vm->pid = 0;
	}
	/* PR_SET_PDEATHSIG: no child may outlive cleave. */
	for (i = 0; i < 3; i++) {
		for (t = 0; t < 100 && vm->child[i] && kill(vm->child[i], 0) == 0; t++)
			test_sleep_ms(20);
		if (vm->child[i] && kill(vm->child[i], 0) == 0)
			fail_msg("%s pid %d outlived cleave", child_names[i], (int)vm->child[i]);
	}
	{
		char cmd[96];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", vm->dir);
		if (system(cmd))
			(void)0;
	}
}

/* "Key:\tvalue" of /proc/PID/status; -1 when the process is gone. */
static int proc_status(pid_t pid, const char *key, char *val, size_t len)
{
	char path[64], *buf, *s;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	buf = test_file_read(path);
	s = strstr(buf, key);
	if (!s) {
		free(buf);
		return -1;
	}
	s += strlen(key);
	while (*s == '\t' || *s == ' ')
		s++;
	while (s[n] && s[n] != '\n' && n + 1 < len) {
		val[n] = s[n];
		n++;
	}
	val[n] = '\0';
	free(buf);
	return 0;
}

static void ns_of(pid_t pid, const char *ns, char *buf, size_t len)
{
	char path[64];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/%d/ns/%s", (int)pid, ns);
	n = readlink(path, buf, len - 1);
	buf[n > 0 ? n : 0] = '\0';
}

static void assert_sandboxed(pid_t pid, const char *what, bool launcher)
{
	char val[64];
	unsigned long long cap;

	if (proc_status(pid, "Seccomp:", val, sizeof(val)))
		fail_msg("%s pid %d is gone", what, (int)pid);
	if (strcmp(val, "2"))
		fail_msg("%s: Seccomp %s, want 2", what, val);
	assert_int_equal(proc_status(pid, "NoNewPrivs:", val, sizeof(val)), 0);
	if (strcmp(val, "1"))
		fail_msg("%s: NoNewPrivs %s, want 1", what, val);
	assert_int_equal(proc_status(pid, "CapEff:", val, sizeof(val)), 0);
	cap = strtoull(val, NULL, 16);
	/* The launcher keeps CAP_SYS_ADMIN only, to jail the children it restarts. */
	if (cap & ~(launcher ? CAP_SYS_ADMIN_BIT : 0))
		fail_msg("%s: CapEff %s", what, val);
	fprintf(stderr, "%-16s pid %-6d Seccomp 2, NoNewPrivs 1, CapEff %s\n", what, (int)pid, val);
}

static void assert_jailed(pid_t pid, const char *what, bool own_net)
{
	static const char *const nss[] = {"mnt", "ipc", "pid", "net"};
	char mine[64], theirs[64], root[64];
	unsigned int i;

	for (i = 0; i < sizeof(nss) / sizeof(nss[0]); i++) {
		ns_of(getpid(), nss[i], mine, sizeof(mine));
		ns_of(pid, nss[i], theirs, sizeof(theirs));
		if (!strcmp(nss[i], "net") && !own_net) {
			if (strcmp(mine, theirs))
				fail_msg("%s: net namespace %s, want the host's %s", what, theirs,
					 mine);
			continue;
		}
		if (!strcmp(mine, theirs))
			fail_msg("%s: %s namespace is the host's (%s)", what, nss[i], mine);
	}
	/* Its root holds no /home, /root, /var: only what it needs. */
	snprintf(root, sizeof(root), "/proc/%d/root/var", (int)pid);
	if (access(root, F_OK) == 0)
		fail_msg("%s: /var is visible in its root", what);
	snprintf(root, sizeof(root), "/proc/%d/root/usr", (int)pid);
	if (access(root, F_OK))
		fail_msg("%s: no /usr in its root", what);
	fprintf(stderr, "%-16s own mnt, ipc, pid%s namespaces, pivoted root\n", what,
		own_net ? ", net" : "");
}

static int qmp_query_status(const struct vm *vm)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s qmp %s query-status >/dev/null 2>&1", cleave_bin, vm->qmp);
	return system(cmd);
}

static void test_sandbox_on(void **state)
{
	struct vm vm;
	unsigned int i;
	char *log;
	pid_t mig2;
	bool root = geteuid() == 0;
	bool jailed;

	(void)state;
	vm_start(&vm, true);
	for (i = 0; i < 3; i++)
		wait_child_pid(&vm, i, 1);
	test_sleep_ms(500); /* every child's sandbox_enter done, the launcher's too */
	log = test_file_read(vm.log);
	jailed = strstr(log, "own namespaces") != NULL;
	if (root && !jailed)
		print_message("root but no namespaces here: %s\n", log);
	free(log);

	assert_sandboxed(vm.pid, "cleave run", true);
	for (i = 0; i < 3; i++)
		assert_sandboxed(vm.child[i], child_names[i], false);
	if (jailed)
		for (i = 0; i < 3; i++)
			assert_jailed(vm.child[i], child_names[i], i != 1);
	assert_int_equal(qmp_query_status(&vm), 0);

	/* A restarted migrator runs under the launcher's policy and then its own. */
	assert_int_equal(kill(vm.child[1], SIGKILL), 0);
	mig2 = wait_child_pid(&vm, 1, 2);
	test_sleep_ms(500);
	assert_sandboxed(mig2, "cleave-migrator#2", false);
	if (jailed)
		assert_jailed(mig2, "cleave-migrator#2", false);
	log = test_file_read(vm.log);
	if (strstr(log, "seccomp: refused syscall") || strstr(log, "by SIGSYS"))
		fail_msg("a process was refused a syscall:\n%s", log);
	free(log);
	assert_int_equal(qmp_query_status(&vm), 0);
	vm_stop(&vm);
}

static void test_no_sandbox(void **state)
{
	struct vm vm;
	unsigned int i;
	char val[16], *log;

	(void)state;
	vm_start(&vm, false);
	for (i = 0; i < 3; i++)
		wait_child_pid(&vm, i, 1);
	test_sleep_ms(500);
	log = test_file_read(vm.log);
	assert_non_null(strstr(log, "warning: --no-sandbox"));
	free(log);
	for (i = 0; i < 3; i++) {
		assert_int_equal(proc_status(vm.child[i], "Seccomp:", val, sizeof(val)), 0);
		assert_string_equal(val, "0");
	}
	assert_int_equal(proc_status(vm.pid, "Seccomp:", val, sizeof(val)), 0);
	assert_string_equal(val, "0");
	assert_int_equal(qmp_query_status(&vm), 0);
	vm_stop(&vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sandbox_on),
		cmocka_unit_test(test_no_sandbox),
	};
	int fd;

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE\n", argv[0]);
		return 1;
	}
	fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("SKIP: /dev/kvm: %s\n", strerror(errno));
		return 77;
	}
	close(fd);
	cleave_bin = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
