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
 * stops its cleave and checks no child PID it saw survives.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "sandbox/sandbox.h"
#include "tests/util/cleave-run.h"
#include "tests/util/test-util.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CAP_SYS_ADMIN_BIT (1ULL << 21)

static const char *cleave_bin;

static const char *const child_names[] = {"cleave-vcpu", "cleave-migrator", "cleave-monitor"};

static int vm_setup(void **state)
{
	struct cleave_run *vm = calloc(1, sizeof(*vm));

	if (!vm || cleave_run_init(vm, "sbx")) {
		free(vm);
		return -1;
	}
	*state = vm;
	return 0;
}

static int vm_teardown(void **state)
{
	cleave_run_fini(*state);
	free(*state);
	return 0;
}

/* An idle guest with a QMP socket, sandboxed or with --no-sandbox. */
static void vm_start(struct cleave_run *vm, bool sandbox)
{
	static const char *const sandboxed[] = {
		"-v", "--append", "mode=idle hb=200", "--memory", "64M", "--name", "sbx", NULL,
	};
	static const char *const unsandboxed[] = {
		"-v", "--append", "mode=idle hb=200", "--memory", "64M", "--no-sandbox", NULL,
	};

	assert_int_equal(cleave_run_start(vm, cleave_bin, sandbox ? sandboxed : unsandboxed), 0);
}

/* The @nth (1-based) PID of @name the log shows, within 10 s. */
static pid_t wait_child_pid(struct cleave_run *vm, const char *name, unsigned int nth)
{
	pid_t pid = cleave_run_child_pid(vm, name, nth, 10000);

	if (pid <= 0)
		fail_msg("%s #%u never started; log %s", name, nth, vm->log);
	return pid;
}

static void vm_stop(struct cleave_run *vm)
{
	const struct cleave_run_child *c;

	cleave_run_stop(vm);
	/* PR_SET_PDEATHSIG: no child may outlive cleave. */
	c = cleave_run_survivor(vm, 2000);
	if (c)
		fail_msg("%s pid %d outlived cleave", c->name, (int)c->pid);
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

/* Waits (10 s at most) until @pid shows "Seccomp: 2": its sandbox_enter() is done. */
static void wait_filtered(pid_t pid, const char *what)
{
	char val[16] = "";
	int64_t end = test_now_ms() + 10000;

	while (test_now_ms() < end) {
		if (proc_status(pid, "Seccomp:", val, sizeof(val)))
			fail_msg("%s pid %d is gone", what, (int)pid);
		if (!strcmp(val, "2"))
			return;
		test_sleep_ms(10);
	}
	fail_msg("%s: Seccomp %s after 10 s, want 2", what, val);
}

/*
 * The state dir as child @i sees it: the socket dirs of its own pairs and
 * nothing else (docs/SECURITY.md, "Who can reach which socket").
 */
static void assert_pairs_view(const struct cleave_run *vm, pid_t pid, unsigned int i)
{
	/* Which of vcpu-mig, vcpu-mon, mig-mon each child (vcpu, migrator, monitor) sees. */
	static const char *const pairs[] = {"vcpu-mig", "vcpu-mon", "mig-mon"};
	static const bool sees[3][3] = {{true, true, false}, {true, false, true}, {false, true, true}};
	char path[256];

	for (unsigned int p = 0; p < 3; p++) {
		snprintf(path, sizeof(path), "/proc/%d/root%s/%s", (int)pid, vm->state, pairs[p]);
		if ((access(path, F_OK) == 0) != sees[i][p])
			fail_msg("%s: %s/%s is %s in its root", child_names[i], vm->state, pairs[p],
				 sees[i][p] ? "missing" : "visible");
	}
	snprintf(path, sizeof(path), "/proc/%d/root%s/lock", (int)pid, vm->state);
	if (access(path, F_OK) == 0)
		fail_msg("%s: the launcher's lock is visible in its root", child_names[i]);
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

static int qmp_query_status(const struct cleave_run *vm)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "%s qmp %s query-status >/dev/null 2>&1", cleave_bin, vm->qmp);
	return system(cmd);
}

static void test_sandbox_on(void **state)
{
	struct cleave_run *vm = *state;
	pid_t child[3], mig2;
	unsigned int i;
	char *log;
	bool root = geteuid() == 0;
	bool jailed;

	vm_start(vm, true);
	for (i = 0; i < 3; i++) {
		child[i] = wait_child_pid(vm, child_names[i], 1);
		wait_filtered(child[i], child_names[i]);
	}
	wait_filtered(vm->pid, "cleave run");
	/* The launcher jails its children exactly when this probe says it can. */
	jailed = root && sandbox_jail_supported();
	log = test_file_read(vm->log);
	if ((strstr(log, "own namespaces") != NULL) != jailed)
		fail_msg("jail %sexpected on this host, but the log says:\n%s", jailed ? "" : "not ",
			 log);
	free(log);

	assert_sandboxed(vm->pid, "cleave run", true);
	for (i = 0; i < 3; i++)
		assert_sandboxed(child[i], child_names[i], false);
	if (jailed)
		for (i = 0; i < 3; i++) {
			assert_jailed(child[i], child_names[i], i != 1);
			assert_pairs_view(vm, child[i], i);
		}
	assert_int_equal(qmp_query_status(vm), 0);

	/* A restarted migrator runs under the launcher's policy and then its own. */
	assert_int_equal(kill(child[1], SIGKILL), 0);
	mig2 = wait_child_pid(vm, "cleave-migrator", 2);
	wait_filtered(mig2, "cleave-migrator#2");
	assert_sandboxed(mig2, "cleave-migrator#2", false);
	if (jailed) {
		assert_jailed(mig2, "cleave-migrator#2", false);
		assert_pairs_view(vm, mig2, 1);
	}
	log = test_file_read(vm->log);
	if (strstr(log, "seccomp: refused syscall") || strstr(log, "by SIGSYS"))
		fail_msg("a process was refused a syscall:\n%s", log);
	free(log);
	assert_int_equal(qmp_query_status(vm), 0);
	vm_stop(vm);
}

static void test_no_sandbox(void **state)
{
	struct cleave_run *vm = *state;
	pid_t child[3];
	unsigned int i;
	char val[16], *log;

	vm_start(vm, false);
	for (i = 0; i < 3; i++)
		child[i] = wait_child_pid(vm, child_names[i], 1);
	test_sleep_ms(500);
	log = test_file_read(vm->log);
	assert_non_null(strstr(log, "warning: --no-sandbox"));
	free(log);
	for (i = 0; i < 3; i++) {
		assert_int_equal(proc_status(child[i], "Seccomp:", val, sizeof(val)), 0);
		assert_string_equal(val, "0");
	}
	assert_int_equal(proc_status(vm->pid, "Seccomp:", val, sizeof(val)), 0);
	assert_string_equal(val, "0");
	assert_int_equal(qmp_query_status(vm), 0);
	vm_stop(vm);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_sandbox_on, vm_setup, vm_teardown),
		cmocka_unit_test_setup_teardown(test_no_sandbox, vm_setup, vm_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE\n", argv[0]);
		return 1;
	}
	test_require_kvm();
	cleave_bin = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
