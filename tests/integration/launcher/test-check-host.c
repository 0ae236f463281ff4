// SPDX-License-Identifier: GPL-2.0-only
/*
 * The KVM preflight of `cleave run` and `cleave demo`, and `cleave
 * check-host`, with the real binary.  CLEAVE_KVM_DEVICE points the probe at
 * paths that are no KVM device (missing, /dev/null, a regular file), so
 * every host runs these; check-host on this host's own /dev/kvm asserts
 * whichever answer fits the host.
 *
 * argv[1]: the cleave binary.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/host-check.h"
#include "tests/util/test-util.h"

#define CLEAVE_TIMEOUT_MS 20000
#define PREFLIGHT_TAIL	  "; `cleave check-host` lists what the host offers\n"

static const char *cleave_bin;

/* Every check check-host reports, whatever the host. */
static const char *const check_names[] = {
	"kvm.device",
	"kvm.api-version",
	"kvm.backend",
	"kvm.create-vm",
	"kvm.cap.user-memory",
	"kvm.cap.irqchip",
	"kvm.cap.ext-cpuid",
	"kvm.cap.immediate-exit",
	"kvm.cap.adjust-clock",
	"kvm.cap.manual-dirty-log-protect2",
	"kvm.cap.kvmclock-ctrl",
	"kvm.cap.pit2",
	"kvm.cap.xsave",
	"kvm.cap.xcrs",
	"kvm.cap.vcpu-events",
	"kvm.cap.mp-state",
	"kvm.cap.debugregs",
	"kvm.cap.max-vcpus",
	"uffd.syscall",
	"uffd.dev",
	"uffd.unprivileged",
	"uffd.missing-shmem",
	"uffd.minor-shmem",
	"uffd.wp-shmem",
	"memory.memfd-seal",
	"memory.thp-shmem",
	"memory.hugetlb",
	"isolation.seccomp",
	"isolation.ns-user",
	"isolation.ns-mount",
	"isolation.ns-pid",
	"isolation.ns-ipc",
	"isolation.ns-net",
	"isolation.jail",
	"isolation.cgroup2",
	"network.ktls",
};
#define NR_CHECKS (sizeof(check_names) / sizeof(check_names[0]))

/* A scratch dir per test, and what one cleave run printed. */
struct fixture {
	char dir[64];	   /* mkdtemp */
	char file[96];	   /* a regular file in it: not a KVM device */
	char state[96];	   /* --state-dir for `cleave run`: must never be created */
	char out_path[96]; /* cleave's stdout */
	char err_path[96]; /* cleave's stderr */
	char *out, *err;   /* their contents after cleave_exec() */
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	int fd;

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/cleave-check-host-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->file, sizeof(f->file), "%s/kvm-file", f->dir);
	snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
	snprintf(f->out_path, sizeof(f->out_path), "%s/stdout", f->dir);
	snprintf(f->err_path, sizeof(f->err_path), "%s/stderr", f->dir);
	fd = open(f->file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, "not kvm\n", 8) != 8)
		return -1;
	close(fd);
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
{
	struct fixture *f = *state;

	free(f->out);
	free(f->err);
	unlink(f->out_path);
	unlink(f->err_path);
	unlink(f->file);
	rmdir(f->state); /* only if a failed test let cleave create it */
	rmdir(f->dir);
	free(f);
	return 0;
}

/*
 * Runs `cleave @args...` (NULL-terminated) with CLEAVE_KVM_DEVICE=@device
 * (NULL: unset), stdout and stderr captured in f->out and f->err.  Returns
 * the exit status; fails the test if cleave hangs or dies by a signal.
 */
static int cleave_exec(struct fixture *f, const char *device, const char *const *args)
{
	const char *argv[16] = {cleave_bin};
	int64_t deadline = test_now_ms() + CLEAVE_TIMEOUT_MS;
	int argc = 1, status;
	pid_t pid, w;

	while (*args && argc < 15)
		argv[argc++] = *args++;
	argv[argc] = NULL;
	free(f->out);
	free(f->err);
	f->out = f->err = NULL;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		int out = open(f->out_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);
		int err = open(f->err_path, O_CREAT | O_TRUNC | O_WRONLY, 0600);

		if (out < 0 || err < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(126);
		if (device)
			setenv(HOST_KVM_DEVICE_ENV, device, 1);
		else
			unsetenv(HOST_KVM_DEVICE_ENV);
		execv(cleave_bin, (char *const *)argv);
		_exit(127);
	}
	while ((w = waitpid(pid, &status, WNOHANG)) == 0 && test_now_ms() < deadline)
		test_sleep_ms(10);
	if (w == 0) {
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		fail_msg("cleave %s did not exit within %d ms", argv[1], CLEAVE_TIMEOUT_MS);
	}
	f->out = test_file_read(f->out_path);
	f->err = test_file_read(f->err_path);
	if (!WIFEXITED(status))
		fail_msg("cleave %s killed by signal %d; stderr:\n%s", argv[1], WTERMSIG(status),
			 f->err);
	return WEXITSTATUS(status);
}

/* The line of check @name in check-host's text output, NULL if absent (caller frees). */
static char *check_line(const char *out, const char *name)
{
	const char *p = out;
	size_t n = strlen(name);

	while (p && *p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);

		/* "FAIL  kvm.device      reason" */
		if (len > 6 + n && !strncmp(p + 6, name, n) && p[6 + n] == ' ')
			return strndup(p, len);
		p = eol ? eol + 1 : NULL;
	}
	return NULL;
}

/* ---- the preflight of run and demo, and check-host, on no KVM device ---- */

struct device_case {
	const char *device; /* "@file": the fixture's regular file */
	const char *cause;  /* what the sentence and kvm.device line say after the path */
};

static const struct device_case device_cases[] = {
	{"/nonexistent-cleave/kvm", "(CLEAVE_KVM_DEVICE) does not exist: "},
	{"/dev/null", "(CLEAVE_KVM_DEVICE) is not a KVM device (character device 1:3, KVM's is "
		      "10:232): "},
	{"@file", "(CLEAVE_KVM_DEVICE) is not a KVM device (a regular file): "},
};

static const char *case_device(const struct fixture *f, const struct device_case *c)
{
	return strcmp(c->device, "@file") ? c->device : f->file;
}

/* Exactly one line on stderr: "cleave: PATH CAUSE...; `cleave check-host` ..." */
static void assert_preflight_sentence(const struct fixture *f, const char *device,
				      const char *cause)
{
	char head[512];

	snprintf(head, sizeof(head), "cleave: %s %s", device, cause);
	if (strncmp(f->err, head, strlen(head)) || !strstr(f->err, PREFLIGHT_TAIL) ||
	    strchr(f->err, '\n') != f->err + strlen(f->err) - 1)
		fail_msg("expected one line starting '%s' and ending '%s', got:\n%s", head,
			 PREFLIGHT_TAIL, f->err);
	/* Nothing from a jail, a spawn or a child in front of it. */
	assert_null(strstr(f->err, "jail"));
	assert_null(strstr(f->err, "cleave-vcpu"));
}

static void test_run_preflight(void **state)
{
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(device_cases) / sizeof(device_cases[0]); i++) {
		const char *dev = case_device(f, &device_cases[i]);
		const char *args[] = {"run", "--memory", "128M", "--state-dir", f->state, NULL};

		assert_int_equal(cleave_exec(f, dev, args), HOST_EXIT_UNFIT);
		assert_preflight_sentence(f, dev, device_cases[i].cause);
		assert_string_equal(f->out, "");
		/* Before anything was created. */
		assert_int_equal(access(f->state, F_OK), -1);
	}
}

static void test_demo_preflight(void **state)
{
	struct fixture *f = *state;
	size_t i;

	for (i = 0; i < sizeof(device_cases) / sizeof(device_cases[0]); i++) {
		const char *dev = case_device(f, &device_cases[i]);
		const char *args[] = {"demo", NULL};

		assert_int_equal(cleave_exec(f, dev, args), HOST_EXIT_UNFIT);
		assert_preflight_sentence(f, dev, device_cases[i].cause);
		/* Not even the scratch dir line: no VM was started. */
		assert_string_equal(f->out, "");
	}
}

/* Options are checked before the host: a bad one is exit 2 on any host. */
static void test_run_options_before_preflight(void **state)
{
	struct fixture *f = *state;
	const char *args[] = {"run", "--vcpus", "0", "--state-dir", f->state, NULL};
	const char *help[] = {"run", "--help", NULL};

	assert_int_equal(cleave_exec(f, "/nonexistent-cleave/kvm", args), 2);
	assert_non_null(strstr(f->err, "--vcpus '0': must be 1.."));
	assert_null(strstr(f->err, "does not exist"));
	assert_int_equal(cleave_exec(f, "/nonexistent-cleave/kvm", help), 0);
	assert_non_null(strstr(f->out, "Usage: cleave run"));
}

static void test_check_host_no_kvm(void **state)
{
	struct fixture *f = *state;
	char want[512], *line;
	size_t i;

	for (i = 0; i < sizeof(device_cases) / sizeof(device_cases[0]); i++) {
		const char *dev = case_device(f, &device_cases[i]);
		const char *args[] = {"check-host", NULL};

		assert_int_equal(cleave_exec(f, dev, args), HOST_EXIT_UNFIT);
		assert_string_equal(f->err, "");
		line = check_line(f->out, "kvm.device");
		assert_non_null(line);
		/* The cause without the preflight's advice ("...: what to do"). */
		snprintf(want, sizeof(want), "%s %s", dev, device_cases[i].cause);
		want[strlen(want) - 2] = '\0';
		if (strncmp(line, "FAIL  ", 6) || !strstr(line, want))
			fail_msg("expected 'FAIL ... %s', got '%s'", want, line);
		free(line);
		assert_non_null(
			strstr(f->out, "\nthis host cannot run a cleave VM: kvm.device failed"));
	}
}

/* check-host --json: one object, every check once with a status. */
static json_t *check_host_json(struct fixture *f, const char *device, int *status)
{
	const char *args[] = {"check-host", "--json", NULL};
	json_error_t jerr;
	json_t *root;

	*status = cleave_exec(f, device, args);
	root = json_loads(f->out, 0, &jerr);
	if (!root)
		fail_msg("check-host --json: line %d: %s\n%s", jerr.line, jerr.text, f->out);
	assert_true(json_is_object(root));
	assert_true(json_is_boolean(json_object_get(root, "can_run")));
	assert_true(json_is_array(json_object_get(root, "checks")));
	assert_string_equal(json_string_value(json_object_get(root, "kvm_device")),
			    device ? device : HOST_KVM_DEVICE_DEFAULT);
	return root;
}

/* The check named @name in @root; asserts the set is exactly check_names. */
static const char *json_status(json_t *root, const char *name)
{
	json_t *checks = json_object_get(root, "checks"), *c;
	const char *found = NULL;
	size_t i;

	json_array_foreach(checks, i, c)
	{
		const char *n = json_string_value(json_object_get(c, "name"));
		const char *st = json_string_value(json_object_get(c, "status"));

		assert_non_null(n);
		assert_non_null(st);
		assert_true(!strcmp(st, "PASS") || !strcmp(st, "WARN") || !strcmp(st, "FAIL"));
		assert_true(json_is_string(json_object_get(c, "detail")));
		assert_true(json_is_boolean(json_object_get(c, "checked")));
		if (!strcmp(n, name)) {
			assert_null(found); /* once */
			found = st;
		}
	}
	if (!found)
		fail_msg("check-host --json has no check %s", name);
	return found;
}

static void assert_all_checks(json_t *root)
{
	size_t i;

	assert_int_equal(json_array_size(json_object_get(root, "checks")), NR_CHECKS);
	for (i = 0; i < NR_CHECKS; i++)
		json_status(root, check_names[i]);
}

static void test_check_host_json_no_kvm(void **state)
{
	struct fixture *f = *state;
	json_t *root;
	int status;

	root = check_host_json(f, "/nonexistent-cleave/kvm", &status);
	assert_int_equal(status, HOST_EXIT_UNFIT);
	assert_all_checks(root);
	assert_false(json_is_true(json_object_get(root, "can_run")));
	assert_string_equal(json_status(root, "kvm.device"), "FAIL");
	assert_string_equal(json_status(root, "kvm.cap.manual-dirty-log-protect2"), "FAIL");
	assert_string_equal(json_status(root, "kvm.cap.kvmclock-ctrl"), "WARN");
	json_decref(root);
}

/*
 * This host's own /dev/kvm: absent, check-host names it and fails; present
 * and usable, it passes; present but not usable (permissions), it fails on
 * the device.  The text and JSON forms agree line by line.
 */
static void test_check_host_this_host(void **state)
{
	const char *args[] = {"check-host", NULL};
	struct fixture *f = *state;
	int status, json_exit, fd;
	char *text, *line;
	json_t *root, *c;
	size_t i;

	status = cleave_exec(f, NULL, args);
	line = check_line(f->out, "kvm.device");
	assert_non_null(line);
	if (access(HOST_KVM_DEVICE_DEFAULT, F_OK)) {
		assert_int_equal(status, HOST_EXIT_UNFIT);
		assert_true(!strncmp(line, "FAIL", 4));
		assert_non_null(strstr(line, " /dev/kvm does not exist"));
		assert_non_null(
			strstr(f->out, "\nthis host cannot run a cleave VM: kvm.device failed"));
	} else if ((fd = open(HOST_KVM_DEVICE_DEFAULT, O_RDWR | O_CLOEXEC)) >= 0) {
		close(fd);
		if (status)
			fail_msg("/dev/kvm opens, but check-host exits %d:\n%s", status, f->out);
		assert_true(!strncmp(line, "PASS", 4));
		assert_non_null(strstr(f->out, "\nthis host can run cleave VMs"));
	} else {
		assert_int_equal(status, HOST_EXIT_UNFIT);
		assert_true(!strncmp(line, "FAIL", 4));
	}
	free(line);
	text = strdup(f->out);
	assert_non_null(text);

	root = check_host_json(f, NULL, &json_exit);
	assert_int_equal(json_exit, status);
	assert_all_checks(root);
	assert_int_equal(json_is_true(json_object_get(root, "can_run")), status == 0);
	json_array_foreach(json_object_get(root, "checks"), i, c)
	{
		const char *name = json_string_value(json_object_get(c, "name"));
		const char *st = json_string_value(json_object_get(c, "status"));

		assert_string_equal(name, check_names[i]); /* the text's order too */
		line = check_line(text, name);
		if (!line || strncmp(line, st, 4))
			fail_msg("%s: JSON says %s, text says '%s'", name, st, line ? line : "");
		free(line);
	}
	json_decref(root);
	free(text);
}

static void test_check_host_usage(void **state)
{
	struct fixture *f = *state;
	const char *bad[] = {"check-host", "--bogus", NULL};
	const char *extra[] = {"check-host", "extra", NULL};
	const char *help[] = {"check-host", "--help", NULL};
	const char *top[] = {"--help", NULL};

	assert_int_equal(cleave_exec(f, NULL, bad), 2);
	assert_int_equal(cleave_exec(f, NULL, extra), 2);
	assert_non_null(strstr(f->err, "unexpected argument 'extra'"));
	assert_int_equal(cleave_exec(f, NULL, help), 0);
	assert_non_null(strstr(f->out, "Usage: cleave check-host [--json]"));
	assert_int_equal(cleave_exec(f, NULL, top), 0);
	assert_non_null(strstr(f->out, "  check-host "));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_run_preflight, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_demo_preflight, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_run_options_before_preflight, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_host_no_kvm, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_host_json_no_kvm, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_host_this_host, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_check_host_usage, fixture_setup,
						fixture_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE\n", argv[0]);
		return 1;
	}
	cleave_bin = argv[1];
	unsetenv(HOST_KVM_DEVICE_ENV);
	return cmocka_run_group_tests_name("check-host", tests, NULL, NULL);
}
