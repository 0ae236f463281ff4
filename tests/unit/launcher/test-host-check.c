// SPDX-License-Identifier: GPL-2.0-only
/*
 * launcher/host-check.c without a KVM: the probe of paths that are not a KVM
 * device (missing, /dev/null, a regular file, a directory), the preflight
 * sentence for every cause, and the /proc and /sys text parsers.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "launcher/host-check.h"
#include "launcher/options.h"

#define PREFLIGHT_TAIL "; `cleave check-host` lists what the host offers"

static bool ends_with(const char *s, const char *tail)
{
	size_t n = strlen(s), t = strlen(tail);

	return n >= t && !strcmp(s + n - t, tail);
}

/* ---- the probe, on paths every host has or can make ---- */

struct probe_case {
	const char *path; /* "@file": a regular file the test makes, "@dir": its directory */
	enum host_kvm_error error;
	const char *cause; /* expected substring of host_kvm_cause() */
};

static const struct probe_case probe_cases[] = {
	{"/nonexistent-cleave/kvm", HOST_KVM_MISSING, "/nonexistent-cleave/kvm does not exist"},
	{"/dev/null/kvm", HOST_KVM_MISSING, "does not exist"}, /* ENOTDIR */
	{"/dev/null", HOST_KVM_NOT_KVM,
	 "/dev/null is not a KVM device (character device 1:3, KVM's is 10:232)"},
	{"@file", HOST_KVM_NOT_KVM, "is not a KVM device (a regular file)"},
	{"@dir", HOST_KVM_NOT_KVM, "is not a KVM device (a directory)"},
};

static void test_probe_not_kvm(void **state)
{
	char dir[] = "/tmp/cleave-host-check-XXXXXX", file[PATH_MAX], cause[512], msg[1100];
	struct host_kvm k;
	size_t i;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(file, sizeof(file), "%s/kvm", dir);
	fd = open(file, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	for (i = 0; i < sizeof(probe_cases) / sizeof(probe_cases[0]); i++) {
		const struct probe_case *c = &probe_cases[i];
		const char *path = !strcmp(c->path, "@file")  ? file
				   : !strcmp(c->path, "@dir") ? dir
							      : c->path;

		assert_int_equal(host_kvm_probe(&k, path), -1);
		assert_int_equal(k.error, c->error);
		assert_string_equal(k.path, path);
		assert_false(k.caps_probed);
		assert_int_equal(k.max_vcpus, 0);
		host_kvm_cause(&k, cause, sizeof(cause));
		if (!strstr(cause, c->cause))
			fail_msg("%s: cause '%s' lacks '%s'", path, cause, c->cause);
		host_kvm_explain(&k, msg, sizeof(msg));
		assert_true(!strncmp(msg, cause, strlen(cause)));
		assert_true(ends_with(msg, PREFLIGHT_TAIL));
		assert_null(strchr(msg, '\n'));
		assert_false(host_kvm_preflight(&k));
		/* The --vcpus limit falls back when the device could not be asked. */
		assert_int_equal(run_kvm_max_vcpus(&k), RUN_VCPUS_FALLBACK);
	}
	unlink(file);
	rmdir(dir);
}

static void test_device_env(void **state)
{
	struct host_kvm k;
	bool from_env;

	unsetenv(HOST_KVM_DEVICE_ENV);
	assert_string_equal(host_kvm_device(&from_env), HOST_KVM_DEVICE_DEFAULT);
	assert_false(from_env);
	setenv(HOST_KVM_DEVICE_ENV, "", 1);
	assert_string_equal(host_kvm_device(&from_env), HOST_KVM_DEVICE_DEFAULT);
	assert_false(from_env);
	setenv(HOST_KVM_DEVICE_ENV, "/nonexistent-cleave/kvm", 1);
	assert_string_equal(host_kvm_device(&from_env), "/nonexistent-cleave/kvm");
	assert_true(from_env);
	assert_int_equal(host_kvm_probe_default(&k), -1);
	assert_true(k.path_from_env);
	assert_int_equal(k.error, HOST_KVM_MISSING);
	unsetenv(HOST_KVM_DEVICE_ENV);
}

/* ---- the preflight sentence of every cause ---- */

static size_t cap_index(const char *name)
{
	size_t i;

	for (i = 0; i < host_kvm_nr_caps; i++)
		if (!strcmp(host_kvm_caps[i].name, name))
			return i;
	fail_msg("no cap %s", name);
	return 0;
}

struct explain_case {
	enum host_kvm_error error;
	bool from_env;
	int err;
	int api_version;
	const char *expect; /* the whole sentence, PREFLIGHT_TAIL left out */
};

static const struct explain_case explain_cases[] = {
	{HOST_KVM_MISSING, false, ENOENT, -1,
	 "/dev/kvm does not exist: this host offers no KVM (load kvm_intel, kvm_amd or kvm_pvm, "
	 "enable nested virtualization, or pass /dev/kvm into this container)"},
	{HOST_KVM_MISSING, true, ENOENT, -1,
	 "/dev/kvm (CLEAVE_KVM_DEVICE) does not exist: this host offers no KVM (load kvm_intel, "
	 "kvm_amd or kvm_pvm, enable nested virtualization, or pass /dev/kvm into this container)"},
	{HOST_KVM_NOT_KVM, false, 0, -1,
	 "/dev/kvm is not a KVM device (a regular file): replace it with the KVM device node "
	 "(mknod /dev/kvm c 10 232, mode 0660, group kvm)"},
	{HOST_KVM_NOT_KVM, true, 0, -1,
	 "/dev/kvm (CLEAVE_KVM_DEVICE) is not a KVM device (a regular file): point "
	 "CLEAVE_KVM_DEVICE at the KVM device or unset it"},
	{HOST_KVM_DENIED, false, EACCES, -1,
	 "permission denied opening /dev/kvm: give this user read-write access to it (usually "
	 "through the kvm group), or run cleave as root"},
	{HOST_KVM_NO_DRIVER, false, ENODEV, -1,
	 "/dev/kvm cannot be opened (No such device): the node exists but no KVM backend serves "
	 "it (load kvm_intel, kvm_amd or kvm_pvm)"},
	{HOST_KVM_API_VERSION, false, 0, 11,
	 "/dev/kvm speaks KVM API version 11, cleave needs 12: this is not the standard Linux KVM; "
	 "use a kernel whose KVM has API version 12"},
	{HOST_KVM_CAP_MISSING, false, 0, 12,
	 "the KVM behind /dev/kvm lacks KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, which cleave needs for "
	 "dirty page tracking for live migration: use a newer kernel or a KVM backend that has it"},
};

static void test_explain(void **state)
{
	char msg[1100], expect[1100];
	struct host_kvm k;
	size_t i;

	for (i = 0; i < sizeof(explain_cases) / sizeof(explain_cases[0]); i++) {
		const struct explain_case *c = &explain_cases[i];

		memset(&k, 0, sizeof(k));
		snprintf(k.path, sizeof(k.path), "/dev/kvm");
		k.path_from_env = c->from_env;
		k.error = c->error;
		k.err = c->err;
		k.api_version = c->api_version;
		k.mode = c->error == HOST_KVM_NOT_KVM ? S_IFREG : S_IFCHR;
		k.gid = (gid_t)-1;
		k.missing_cap = (int)cap_index("manual-dirty-log-protect2");
		host_kvm_explain(&k, msg, sizeof(msg));
		snprintf(expect, sizeof(expect), "%s%s", c->expect, PREFLIGHT_TAIL);
		assert_string_equal(msg, expect);
	}
}

/* What cleave-vcpu cannot start without is required; the rest only warns. */
static void test_cap_table(void **state)
{
	static const char *const required[] = {
		"user-memory",	  "irqchip",	  "ext-cpuid",
		"immediate-exit", "adjust-clock", "manual-dirty-log-protect2",
	};
	size_t i, j, nr_required = 0;

	assert_true(host_kvm_nr_caps <= HOST_KVM_MAX_CAPS);
	for (i = 0; i < host_kvm_nr_caps; i++) {
		for (j = i + 1; j < host_kvm_nr_caps; j++)
			assert_string_not_equal(host_kvm_caps[i].name, host_kvm_caps[j].name);
		assert_true(!strncmp(host_kvm_caps[i].macro, "KVM_CAP_", 8));
		nr_required += host_kvm_caps[i].required;
	}
	for (i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		assert_true(host_kvm_caps[cap_index(required[i])].required);
	assert_int_equal(nr_required, sizeof(required) / sizeof(required[0]));
	assert_false(host_kvm_caps[cap_index("kvmclock-ctrl")].required);
}

/* ---- /proc and /sys text ---- */

static const char cpuinfo_intel[] = "processor\t: 0\n"
				    "model name\t: Some CPU with svm in its name\n"
				    "flags\t\t: fpu vme de pse vmx sse sse2 ht\n"
				    "vmx flags\t: vnmi preemption_timer\n"
				    "bugs\t\t: spectre_v1\n"
				    "\n"
				    "processor\t: 1\n"
				    "flags\t\t: fpu svm\n";

struct flag_case {
	const char *cpuinfo;
	const char *flag;
	bool has;
};

static const struct flag_case flag_cases[] = {
	{cpuinfo_intel, "vmx", true},	      {cpuinfo_intel, "fpu", true},
	{cpuinfo_intel, "ht", true},	      /* last word of the line */
	{cpuinfo_intel, "svm", false},	      /* in the model name and CPU 1 only */
	{cpuinfo_intel, "vnmi", false},	      /* the "vmx flags" line is not "flags" */
	{cpuinfo_intel, "sse", true},	      /* not confused by sse2 ... */
	{cpuinfo_intel, "sse3", false},	      /* ... nor the other way round */
	{cpuinfo_intel, "spectre_v1", false}, /* bugs line */
	{"flags: svm", "svm", true},	      {"flags\t\t: ", "svm", false},
	{"processor : 0\n", "vmx", false},    {"", "vmx", false},
	{"flagsx : vmx\n", "vmx", false},
};

static void test_cpuinfo_flags(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(flag_cases) / sizeof(flag_cases[0]); i++)
		if (host_cpuinfo_has_flag(flag_cases[i].cpuinfo, flag_cases[i].flag) !=
		    flag_cases[i].has)
			fail_msg("case %zu: flag %s: expected %d", i, flag_cases[i].flag,
				 flag_cases[i].has);
}

struct choice_case {
	const char *text;
	int ret;
	const char *choice;
};

static const struct choice_case choice_cases[] = {
	{"always within_size advise [never] deny force", 0, "never"},
	{"[always] within_size advise never deny force", 0, "always"},
	{"always within_size [advise] never deny force\n", 0, "advise"},
	{"always [madvise] never", 0, "madvise"},
	{"always madvise never", -EINVAL, NULL},
	{"always [] never", -EINVAL, NULL},
	{"always [madvise", -EINVAL, NULL},
	{"[a-choice-longer-than-the-buffer]", -EINVAL, NULL},
	{"", -EINVAL, NULL},
};

static void test_sysfs_choice(void **state)
{
	char buf[16];
	size_t i;

	for (i = 0; i < sizeof(choice_cases) / sizeof(choice_cases[0]); i++) {
		const struct choice_case *c = &choice_cases[i];

		assert_int_equal(host_sysfs_choice(c->text, buf, sizeof(buf)), c->ret);
		if (!c->ret)
			assert_string_equal(buf, c->choice);
	}
}

static void test_meminfo(void **state)
{
	static const char meminfo[] = "MemTotal:        8000000 kB\n"
				      "HugePages_Total_x:     9\n"
				      "HugePages_Total:       4\n"
				      "HugePages_Free:        4\n"
				      "Hugepagesize:       2048 kB\n"
				      "Broken:     kB\n";
	uint64_t v = 0;

	assert_int_equal(host_meminfo_value(meminfo, "HugePages_Total", &v), 0);
	assert_int_equal(v, 4);
	assert_int_equal(host_meminfo_value(meminfo, "Hugepagesize", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(host_meminfo_value(meminfo, "MemTotal", &v), 0);
	assert_int_equal(v, 8000000);
	assert_int_equal(host_meminfo_value(meminfo, "HugePages", &v), -ENOENT);
	assert_int_equal(host_meminfo_value(meminfo, "Hugetlb", &v), -ENOENT);
	assert_int_equal(host_meminfo_value(meminfo, "Broken", &v), -EINVAL);
	assert_int_equal(host_meminfo_value("", "MemTotal", &v), -ENOENT);
}

static void test_word_in_list(void **state)
{
	assert_true(host_word_in_list("mptcp tls", "tls"));
	assert_true(host_word_in_list("tls", "tls"));
	assert_true(host_word_in_list("kill_process trap errno", "trap"));
	assert_false(host_word_in_list("mptcp", "tls"));
	assert_false(host_word_in_list("tlsx mptcp", "tls"));
	assert_false(host_word_in_list("kill_thread", "kill"));
	assert_false(host_word_in_list("", "tls"));
	assert_false(host_word_in_list("tls", ""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_probe_not_kvm), cmocka_unit_test(test_device_env),
		cmocka_unit_test(test_explain),	      cmocka_unit_test(test_cap_table),
		cmocka_unit_test(test_cpuinfo_flags), cmocka_unit_test(test_sysfs_choice),
		cmocka_unit_test(test_meminfo),	      cmocka_unit_test(test_word_in_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
