// SPDX-License-Identifier: GPL-2.0-only
/*
 * The KVM probe shared by the preflight of `cleave run` / `cleave demo` and
 * by `cleave check-host`, and the /proc and /sys text parsers of the latter.
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "launcher/host-check.h"

_Static_assert(HOST_KVM_API == KVM_API_VERSION, "cleave-vcpu checks KVM_API_VERSION");

/* What vcpu-proc/ asks of KVM: required ones fail cleave-vcpu's start when missing. */
const struct host_kvm_cap host_kvm_caps[] = {
	{"user-memory", "KVM_CAP_USER_MEMORY", KVM_CAP_USER_MEMORY, 0, true,
	 "guest RAM from the launcher's memfds"},
	{"irqchip", "KVM_CAP_IRQCHIP", KVM_CAP_IRQCHIP, 0, true,
	 "the in-kernel interrupt controller"},
	{"ext-cpuid", "KVM_CAP_EXT_CPUID", KVM_CAP_EXT_CPUID, 0, true,
	 "the guest's CPUID (KVM_GET_SUPPORTED_CPUID)"},
	{"immediate-exit", "KVM_CAP_IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT, 0, true,
	 "pausing vCPUs without losing a kick"},
	{"adjust-clock", "KVM_CAP_ADJUST_CLOCK", KVM_CAP_ADJUST_CLOCK, 0, true,
	 "the guest clock across pause and migration"},
	{"manual-dirty-log-protect2", "KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2",
	 KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, true,
	 "dirty page tracking for live migration"},
	{"kvmclock-ctrl", "KVM_CAP_KVMCLOCK_CTRL", KVM_CAP_KVMCLOCK_CTRL, 0, false,
	 "telling the guest it was paused (no soft-lockup warnings after a pause)"},
	{"pit2", "KVM_CAP_PIT2", KVM_CAP_PIT2, 0, false, "the in-kernel PIT"},
	{"xsave", "KVM_CAP_XSAVE", KVM_CAP_XSAVE, 0, false, "migrating FPU and vector state"},
	{"xcrs", "KVM_CAP_XCRS", KVM_CAP_XCRS, 0, false, "migrating XCR0"},
	{"vcpu-events", "KVM_CAP_VCPU_EVENTS", KVM_CAP_VCPU_EVENTS, 0, false,
	 "migrating pending exceptions and interrupts"},
	{"mp-state", "KVM_CAP_MP_STATE", KVM_CAP_MP_STATE, 0, false,
	 "migrating a halted or waiting vCPU"},
	{"debugregs", "KVM_CAP_DEBUGREGS", KVM_CAP_DEBUGREGS, 0, false,
	 "migrating debug registers"},
	{"max-vcpus", "KVM_CAP_MAX_VCPUS", KVM_CAP_MAX_VCPUS, 0, false,
	 "the --vcpus limit of this host"},
};

const size_t host_kvm_nr_caps = sizeof(host_kvm_caps) / sizeof(host_kvm_caps[0]);
_Static_assert(sizeof(host_kvm_caps) / sizeof(host_kvm_caps[0]) <= HOST_KVM_MAX_CAPS,
	       "struct host_kvm has room for every cap");

const char *host_kvm_device(bool *from_env)
{
	const char *p = getenv(HOST_KVM_DEVICE_ENV);

	*from_env = p && *p;
	return *from_env ? p : HOST_KVM_DEVICE_DEFAULT;
}

bool host_kvm_cap_present(const struct host_kvm *k, size_t i)
{
	int v = k->cap_values[i];
	int need = host_kvm_caps[i].need_bits;

	return k->caps_probed && v > 0 && (v & need) == need;
}

static int host_kvm_fail(struct host_kvm *k, enum host_kvm_error error, int err)
{
	k->error = error;
	k->err = err;
	return -1;
}

/* KVM_CAP_MAX_VCPUS, else KVM_CAP_NR_VCPUS, else 4: the KVM API's own defaults. */
static unsigned int host_kvm_max_vcpus(int fd)
{
	int n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);

	if (n <= 0)
		n = ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	return n > 0 ? (unsigned int)n : 4;
}

int host_kvm_probe(struct host_kvm *k, const char *path)
{
	struct stat st;
	size_t i;
	int fd;

	memset(k, 0, sizeof(*k));
	snprintf(k->path, sizeof(k->path), "%s", path);
	k->api_version = -1;
	k->missing_cap = -1;
	k->gid = (gid_t)-1;
	if (strlen(path) >= sizeof(k->path))
		return host_kvm_fail(k, HOST_KVM_NOT_KVM, ENAMETOOLONG);
	if (stat(path, &st)) {
		if (errno == ENOENT || errno == ENOTDIR)
			return host_kvm_fail(k, HOST_KVM_MISSING, errno);
		if (errno == EACCES || errno == EPERM)
			return host_kvm_fail(k, HOST_KVM_DENIED, errno);
		return host_kvm_fail(k, HOST_KVM_NOT_KVM, errno);
	}
	k->mode = st.st_mode & S_IFMT;
	k->gid = st.st_gid;
	/*
	 * The numbers before open(): opening an arbitrary device can have
	 * effects (a watchdog starts), and KVM's misc minor is fixed.
	 */
	if (!S_ISCHR(st.st_mode))
		return host_kvm_fail(k, HOST_KVM_NOT_KVM, 0);
	k->rdev = st.st_rdev;
	if (major(st.st_rdev) != HOST_KVM_MAJOR || minor(st.st_rdev) != HOST_KVM_MINOR)
		return host_kvm_fail(k, HOST_KVM_NOT_KVM, 0);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		if (errno == EACCES || errno == EPERM)
			return host_kvm_fail(k, HOST_KVM_DENIED, errno);
		return host_kvm_fail(k, HOST_KVM_NO_DRIVER, errno);
	}
	k->api_version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (k->api_version < 0) {
		host_kvm_fail(k, HOST_KVM_NOT_KVM, errno);
		goto out;
	}
	if (k->api_version != HOST_KVM_API) {
		host_kvm_fail(k, HOST_KVM_API_VERSION, 0);
		goto out;
	}
	for (i = 0; i < host_kvm_nr_caps; i++) {
		int v = ioctl(fd, KVM_CHECK_EXTENSION, host_kvm_caps[i].cap);

		k->cap_values[i] = v > 0 ? v : 0;
	}
	k->caps_probed = true;
	k->max_vcpus = host_kvm_max_vcpus(fd);
	for (i = 0; i < host_kvm_nr_caps; i++) {
		if (host_kvm_caps[i].required && !host_kvm_cap_present(k, i)) {
			k->missing_cap = (int)i;
			host_kvm_fail(k, HOST_KVM_CAP_MISSING, 0);
			break;
		}
	}
out:
	close(fd);
	return k->error == HOST_KVM_OK ? 0 : -1;
}

int host_kvm_probe_default(struct host_kvm *k)
{
	bool from_env;
	const char *path = host_kvm_device(&from_env);
	int ret = host_kvm_probe(k, path);

	k->path_from_env = from_env;
	return ret;
}

static const char *host_file_type(mode_t mode)
{
	switch (mode) {
	case S_IFREG:
		return "a regular file";
	case S_IFDIR:
		return "a directory";
	case S_IFBLK:
		return "a block device";
	case S_IFIFO:
		return "a FIFO";
	case S_IFSOCK:
		return "a socket";
	default:
		return "not a character device";
	}
}

void host_kvm_cause(const struct host_kvm *k, char *buf, size_t len)
{
	const char *env = k->path_from_env ? " (" HOST_KVM_DEVICE_ENV ")" : "";
	const char *p = k->path;

	switch (k->error) {
	case HOST_KVM_OK:
		snprintf(buf, len, "%s%s is a usable KVM device", p, env);
		break;
	case HOST_KVM_MISSING:
		snprintf(buf, len, "%s%s does not exist", p, env);
		break;
	case HOST_KVM_NOT_KVM:
		if (k->err && k->api_version < 0 && k->mode == S_IFCHR)
			snprintf(buf, len, "%s%s is not a KVM device (KVM_GET_API_VERSION: %s)", p,
				 env, strerror(k->err));
		else if (k->err)
			snprintf(buf, len, "%s%s cannot be looked up (%s)", p, env,
				 strerror(k->err));
		else if (k->mode == S_IFCHR)
			snprintf(buf, len,
				 "%s%s is not a KVM device (character device %u:%u, KVM's is "
				 "%d:%d)",
				 p, env, major(k->rdev), minor(k->rdev), HOST_KVM_MAJOR,
				 HOST_KVM_MINOR);
		else
			snprintf(buf, len, "%s%s is not a KVM device (%s)", p, env,
				 host_file_type(k->mode));
		break;
	case HOST_KVM_DENIED:
		snprintf(buf, len, "permission denied opening %s%s", p, env);
		break;
	case HOST_KVM_NO_DRIVER:
		snprintf(buf, len, "%s%s cannot be opened (%s)", p, env, strerror(k->err));
		break;
	case HOST_KVM_API_VERSION:
		snprintf(buf, len, "%s%s speaks KVM API version %d, cleave needs %d", p, env,
			 k->api_version, HOST_KVM_API);
		break;
	case HOST_KVM_CAP_MISSING:
		snprintf(buf, len, "the KVM behind %s%s lacks %s, which cleave needs for %s", p,
			 env, host_kvm_caps[k->missing_cap].macro,
			 host_kvm_caps[k->missing_cap].use);
		break;
	}
}

/* What to do about it, for the preflight sentence. */
static void host_kvm_remedy(const struct host_kvm *k, char *buf, size_t len)
{
	struct group *g;

	switch (k->error) {
	case HOST_KVM_OK:
		snprintf(buf, len, "nothing to do");
		break;
	case HOST_KVM_MISSING:
		snprintf(buf, len,
			 "this host offers no KVM (load kvm_intel, kvm_amd or kvm_pvm, enable "
			 "nested "
			 "virtualization, or pass /dev/kvm into this container)");
		break;
	case HOST_KVM_NOT_KVM:
		if (k->path_from_env)
			snprintf(buf, len, "point %s at the KVM device or unset it",
				 HOST_KVM_DEVICE_ENV);
		else
			snprintf(
				buf, len,
				"replace it with the KVM device node (mknod %s c %d %d, mode 0660, "
				"group kvm)",
				k->path, HOST_KVM_MAJOR, HOST_KVM_MINOR);
		break;
	case HOST_KVM_DENIED:
		g = k->gid != (gid_t)-1 ? getgrgid(k->gid) : NULL;
		if (g && k->gid != 0)
			snprintf(buf, len,
				 "add this user to group %s, which owns it, or run cleave "
				 "as root",
				 g->gr_name);
		else
			snprintf(buf, len,
				 "give this user read-write access to it (usually through "
				 "the kvm group), or run cleave as root");
		break;
	case HOST_KVM_NO_DRIVER:
		snprintf(buf, len,
			 "the node exists but no KVM backend serves it (load kvm_intel, "
			 "kvm_amd or kvm_pvm)");
		break;
	case HOST_KVM_API_VERSION:
		snprintf(buf, len,
			 "this is not the standard Linux KVM; use a kernel whose KVM has "
			 "API version 12");
		break;
	case HOST_KVM_CAP_MISSING:
		snprintf(buf, len, "use a newer kernel or a KVM backend that has it");
		break;
	}
}

void host_kvm_explain(const struct host_kvm *k, char *buf, size_t len)
{
	char cause[512], remedy[512];

	host_kvm_cause(k, cause, sizeof(cause));
	host_kvm_remedy(k, remedy, sizeof(remedy));
	snprintf(buf, len, "%s: %s; `cleave check-host` lists what the host offers", cause, remedy);
}

bool host_kvm_preflight(const struct host_kvm *k)
{
	char msg[1100];

	if (k->error == HOST_KVM_OK)
		return true;
	host_kvm_explain(k, msg, sizeof(msg));
	fprintf(stderr, "cleave: %s\n", msg);
	return false;
}

/* ---- /proc and /sys text ---- */

bool host_word_in_list(const char *list, const char *word)
{
	size_t n = strlen(word);
	const char *p = list;

	if (!n)
		return false;
	while ((p = strstr(p, word))) {
		bool start = p == list || isspace((unsigned char)p[-1]);
		bool end = !p[n] || isspace((unsigned char)p[n]);

		if (start && end)
			return true;
		p += n;
	}
	return false;
}

bool host_cpuinfo_has_flag(const char *cpuinfo, const char *flag)
{
	const char *line = cpuinfo;

	while (line && *line) {
		const char *eol = strchr(line, '\n');
		size_t len = eol ? (size_t)(eol - line) : strlen(line);

		/* "flags\t\t: fpu vme ..." (x86); the first CPU stands for all. */
		if (!strncmp(line, "flags", 5) &&
		    (line[5] == ' ' || line[5] == '\t' || line[5] == ':')) {
			const char *colon = memchr(line, ':', len);
			char *flags;
			bool has;

			if (!colon)
				return false;
			flags = strndup(colon + 1, len - (size_t)(colon + 1 - line));
			if (!flags)
				return false;
			has = host_word_in_list(flags, flag);
			free(flags);
			return has;
		}
		line = eol ? eol + 1 : NULL;
	}
	return false;
}

int host_sysfs_choice(const char *text, char *buf, size_t len)
{
	const char *open = strchr(text, '['), *close;

	if (!open)
		return -EINVAL;
	close = strchr(open + 1, ']');
	if (!close || close == open + 1 || (size_t)(close - open - 1) >= len)
		return -EINVAL;
	memcpy(buf, open + 1, (size_t)(close - open - 1));
	buf[close - open - 1] = '\0';
	return 0;
}

int host_meminfo_value(const char *meminfo, const char *key, uint64_t *value)
{
	size_t n = strlen(key);
	const char *line = meminfo;

	while (line && *line) {
		if (!strncmp(line, key, n) && line[n] == ':') {
			const char *p = line + n + 1;
			char *end;

			while (*p == ' ' || *p == '\t')
				p++;
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			errno = 0;
			*value = strtoull(p, &end, 10);
			if (errno)
				return -EINVAL;
			return 0;
		}
		line = strchr(line, '\n');
		if (line)
			line++;
	}
	return -ENOENT;
}

int host_kvm_try_vm(const struct host_kvm *k, char *err, size_t len)
{
	struct kvm_enable_cap cap = {
		.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
		.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE,
	};
	int fd, vm = -1, ret = 0;

	fd = open(k->path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, len, "open %s: %s", k->path, strerror(-ret));
		return ret;
	}
	vm = ioctl(fd, KVM_CREATE_VM, 0);
	if (vm < 0) {
		ret = -errno;
		snprintf(err, len, "KVM_CREATE_VM: %s", strerror(-ret));
		goto out;
	}
	/* What cleave-vcpu does first with a new VM (vcpu-proc/vm.c). */
	if (ioctl(vm, KVM_ENABLE_CAP, &cap) < 0) {
		ret = -errno;
		snprintf(err, len, "KVM_ENABLE_CAP MANUAL_DIRTY_LOG_PROTECT2: %s", strerror(-ret));
		goto out;
	}
	if (ioctl(vm, KVM_CREATE_IRQCHIP, 0) < 0) {
		ret = -errno;
		snprintf(err, len, "KVM_CREATE_IRQCHIP: %s", strerror(-ret));
	}
out:
	if (vm >= 0)
		close(vm);
	close(fd);
	return ret;
}
