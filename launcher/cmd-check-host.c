// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave check-host [--json]`: what this host offers cleave, one line per
 * check: PASS, WARN (an optional feature is missing) or FAIL (cleave cannot
 * run a VM here).  Exits 0 when a VM can run, HOST_EXIT_UNFIT otherwise.
 *
 * Every probe is read-only or undone before it returns: namespaces and
 * seccomp filters are tried in a forked child, the VM, memfd, userfaultfd
 * and sockets are closed again, and no kernel module is loaded.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <linux/filter.h>
#include <linux/kvm.h>
#include <linux/magic.h>
#include <linux/seccomp.h>
#include <linux/userfaultfd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/commands.h"
#include "launcher/host-check.h"
#include "sandbox/sandbox.h"

#define CHECK_MAX_LINES 48

enum check_status {
	CHECK_PASS,
	CHECK_WARN,
	CHECK_FAIL,
};

static const char *const check_status_names[] = {"PASS", "WARN", "FAIL"};

struct check_line {
	char name[48]; /* "kvm.device": group, dot, what */
	enum check_status status;
	bool unchecked;	  /* not run: a check it needs failed (the detail says which) */
	char detail[600]; /* the reason, one line */
};

/* Everything one check-host run found, in the order it was found. */
struct check_report {
	struct check_line lines[CHECK_MAX_LINES];
	unsigned int nr;
	struct host_kvm kvm; /* the probe the kvm.* lines describe */
};

static void check_add(struct check_report *r, const char *name, enum check_status status,
		      const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void check_add(struct check_report *r, const char *name, enum check_status status,
		      const char *fmt, ...)
{
	struct check_line *l;
	va_list ap;

	/* Room for every check; the integration test counts them. */
	if (r->nr == CHECK_MAX_LINES)
		return;
	l = &r->lines[r->nr++];
	snprintf(l->name, sizeof(l->name), "%s", name);
	l->status = status;
	l->unchecked = false;
	va_start(ap, fmt);
	vsnprintf(l->detail, sizeof(l->detail), fmt, ap);
	va_end(ap);
}

/* Marks the line just added as not run, for the summary. */
static void check_mark_unchecked(struct check_report *r)
{
	if (r->nr)
		r->lines[r->nr - 1].unchecked = true;
}

/* The start of a /proc or /sys file, NUL-terminated, trailing newline cut; bytes or -errno. */
static ssize_t check_read(const char *path, char *buf, size_t len)
{
	ssize_t n, total = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	while ((size_t)total < len - 1) {
		n = read(fd, buf + total, len - 1 - (size_t)total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			n = -errno;
			close(fd);
			return n;
		}
		if (n == 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = '\0';
	if (total && buf[total - 1] == '\n')
		buf[--total] = '\0';
	return total;
}

static bool check_exists(const char *path)
{
	struct stat st;

	return !stat(path, &st);
}

/*
 * Runs @fn(@arg) in a forked child, so what it changes (namespaces, a
 * seccomp filter) dies with it.  Returns 0, or the negative errno the child
 * reported through its exit status.
 */
static int check_in_child(int (*fn)(unsigned long), unsigned long arg)
{
	int status;
	pid_t p;

	fflush(NULL);
	p = fork();
	if (p < 0)
		return -errno;
	if (p == 0)
		_exit(fn(arg) ? (errno > 0 && errno < 256 ? errno : EINVAL) : 0);
	while (waitpid(p, &status, 0) < 0)
		if (errno != EINTR)
			return -errno;
	if (!WIFEXITED(status))
		return -ECHILD;
	return -WEXITSTATUS(status);
}

/* ---- KVM ---- */

static void check_kvm_backend(struct check_report *r)
{
	static const struct {
		const char *module; /* /sys/module name (built-in ones with parameters show too) */
		const char *name;
	} backends[] = {
		{"kvm_intel", "Intel VMX"},
		{"kvm_amd", "AMD SVM"},
		{"kvm_pvm", "PVM, needs no hardware virtualization"},
	};
	bool usable = r->kvm.error == HOST_KVM_OK || r->kvm.caps_probed;
	char cpuinfo[65536], path[64], found[160] = "", flags[64] = "";
	bool vmx, svm;
	size_t i;

	/* The first CPU's flags line comes early; a big host's tail is not needed. */
	if (check_read("/proc/cpuinfo", cpuinfo, sizeof(cpuinfo)) < 0)
		cpuinfo[0] = '\0';
	vmx = host_cpuinfo_has_flag(cpuinfo, "vmx");
	svm = host_cpuinfo_has_flag(cpuinfo, "svm");
	snprintf(flags, sizeof(flags), "%s", vmx ? "vmx" : svm ? "svm" : "neither vmx nor svm");
	for (i = 0; i < sizeof(backends) / sizeof(backends[0]); i++) {
		snprintf(path, sizeof(path), "/sys/module/%s", backends[i].module);
		if (check_exists(path))
			snprintf(found + strlen(found), sizeof(found) - strlen(found), "%s%s (%s)",
				 *found ? ", " : "", backends[i].module, backends[i].name);
	}
	if (*found) {
		check_add(r, "kvm.backend", CHECK_PASS, "loaded: %s; the CPU shows %s", found,
			  flags);
		return;
	}
	if (vmx || svm) {
		check_add(r, "kvm.backend", usable ? CHECK_WARN : CHECK_FAIL,
			  "the CPU has %s but %s is not loaded (modprobe %s)", flags,
			  vmx ? "kvm_intel" : "kvm_amd", vmx ? "kvm_intel" : "kvm_amd");
		return;
	}
	if (usable)
		check_add(r, "kvm.backend", CHECK_WARN,
			  "unknown: no kvm_intel, kvm_amd or kvm_pvm module, and %s in the CPU",
			  flags);
	else
		check_add(
			r, "kvm.backend", CHECK_FAIL,
			"no hardware virtualization (%s in the CPU: enable it in the firmware, or "
			"nested virtualization in the hypervisor below) and no kvm_pvm module",
			flags);
}

static void check_kvm_caps(struct check_report *r, const char *why_not)
{
	const struct host_kvm *k = &r->kvm;
	char name[64];
	size_t i;

	for (i = 0; i < host_kvm_nr_caps; i++) {
		const struct host_kvm_cap *c = &host_kvm_caps[i];
		enum check_status missing = c->required ? CHECK_FAIL : CHECK_WARN;

		snprintf(name, sizeof(name), "kvm.cap.%s", c->name);
		if (!k->caps_probed) {
			check_add(r, name, missing, "%s not checked: %s", c->macro, why_not);
			check_mark_unchecked(r);
		} else if (c->cap == KVM_CAP_MAX_VCPUS && host_kvm_cap_present(k, i))
			check_add(r, name, CHECK_PASS, "%s: %d vCPUs per VM", c->macro,
				  k->cap_values[i]);
		else if (host_kvm_cap_present(k, i))
			check_add(r, name, CHECK_PASS, "%s: %s", c->macro, c->use);
		else
			check_add(r, name, missing, "%s missing: %s %s", c->macro,
				  c->required ? "cleave needs it for" : "no", c->use);
	}
}

static void check_kvm(struct check_report *r)
{
	struct host_kvm *k = &r->kvm;
	char cause[512], err[128];
	bool device_ok;

	host_kvm_probe_default(k);
	device_ok = k->error == HOST_KVM_OK || k->error == HOST_KVM_API_VERSION ||
		    k->error == HOST_KVM_CAP_MISSING;
	host_kvm_cause(k, cause, sizeof(cause));
	if (device_ok)
		check_add(r, "kvm.device", CHECK_PASS, "%s%s: KVM device %d:%d, opened read-write",
			  k->path, k->path_from_env ? " (" HOST_KVM_DEVICE_ENV ")" : "",
			  HOST_KVM_MAJOR, HOST_KVM_MINOR);
	else
		check_add(r, "kvm.device", CHECK_FAIL, "%s", cause);
	if (k->api_version == HOST_KVM_API)
		check_add(r, "kvm.api-version", CHECK_PASS, "KVM API version %d", k->api_version);
	else if (k->api_version >= 0)
		check_add(r, "kvm.api-version", CHECK_FAIL, "KVM API version %d, cleave needs %d",
			  k->api_version, HOST_KVM_API);
	else {
		check_add(r, "kvm.api-version", CHECK_FAIL, "not checked: %s", cause);
		check_mark_unchecked(r);
	}
	check_kvm_backend(r);
	if (!k->caps_probed) {
		check_add(r, "kvm.create-vm", CHECK_FAIL, "not tried: %s", cause);
		check_mark_unchecked(r);
	} else if (host_kvm_try_vm(k, err, sizeof(err)))
		check_add(r, "kvm.create-vm", CHECK_FAIL, "%s", err);
	else
		check_add(r, "kvm.create-vm", CHECK_PASS,
			  "a VM with manual dirty-log protection and an in-kernel irqchip");
	check_kvm_caps(r, cause);
}

/* ---- userfaultfd ---- */

static int check_uffd_dev(int *fd)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

	*fd = -1;
	if (dev < 0)
		return -errno;
	*fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	close(dev);
	return *fd < 0 ? -errno : 0;
}

static void check_uffd_features(struct check_report *r, int fd)
{
	static const struct {
		const char *name;
		uint64_t feature;
		const char *what;
	} features[] = {
		{"uffd.missing-shmem", UFFD_FEATURE_MISSING_SHMEM,
		 "MISSING faults on shmem: post-copy into memfd guest RAM"},
		{"uffd.minor-shmem", UFFD_FEATURE_MINOR_SHMEM,
		 "MINOR faults on shmem: pages present in the page cache but not mapped"},
		{"uffd.wp-shmem", UFFD_FEATURE_WP_HUGETLBFS_SHMEM,
		 "write-protect faults on shmem and hugetlbfs"},
	};
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	char why[128] = "no userfaultfd could be created here";
	bool known = false;
	size_t i;

	/* Asked for no feature, UFFDIO_API answers with every one this kernel has. */
	if (fd >= 0 && ioctl(fd, UFFDIO_API, &api) < 0)
		snprintf(why, sizeof(why), "UFFDIO_API: %s", strerror(errno));
	else if (fd >= 0)
		known = true;
	for (i = 0; i < sizeof(features) / sizeof(features[0]); i++) {
		if (!known)
			check_add(r, features[i].name, CHECK_WARN, "not checked: %s", why);
		else if (api.features & features[i].feature)
			check_add(r, features[i].name, CHECK_PASS, "%s", features[i].what);
		else
			check_add(r, features[i].name, CHECK_WARN, "missing: no %s",
				  features[i].what);
	}
}

static void check_uffd(struct check_report *r)
{
	int user, full, dev_fd, dev_err, err_user = 0, err_full = 0, feature_fd;
	char unpriv[16];
	ssize_t n;

	user = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (user < 0)
		err_user = errno;
	full = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (full < 0)
		err_full = errno;
	if (full >= 0)
		check_add(r, "uffd.syscall", CHECK_PASS,
			  "userfaultfd() also handles kernel faults (KVM's accesses to guest RAM) "
			  "for this process");
	else if (user >= 0)
		check_add(r, "uffd.syscall", CHECK_WARN,
			  "userfaultfd() gives user-mode faults only (without the flag: %s); KVM's "
			  "accesses to guest RAM need /dev/userfaultfd",
			  strerror(err_full));
	else
		check_add(r, "uffd.syscall", CHECK_WARN, "userfaultfd(): %s%s", strerror(err_user),
			  err_user == ENOSYS ? " (a kernel without CONFIG_USERFAULTFD)" : "");

	dev_err = check_uffd_dev(&dev_fd);
	if (!dev_err)
		check_add(r, "uffd.dev", CHECK_PASS,
			  "/dev/userfaultfd gives kernel-fault userfaultfds to whoever opens it");
	else if (dev_err == -ENOENT)
		check_add(r, "uffd.dev", CHECK_WARN,
			  "/dev/userfaultfd does not exist (a kernel before 6.1, or not passed "
			  "into this container)");
	else
		check_add(r, "uffd.dev", CHECK_WARN, "/dev/userfaultfd: %s", strerror(-dev_err));

	n = check_read("/proc/sys/vm/unprivileged_userfaultfd", unpriv, sizeof(unpriv));
	if (n < 0)
		check_add(r, "uffd.unprivileged", CHECK_WARN,
			  "/proc/sys/vm/unprivileged_userfaultfd: %s", strerror((int)-n));
	else if (!strcmp(unpriv, "1"))
		check_add(r, "uffd.unprivileged", CHECK_PASS,
			  "vm.unprivileged_userfaultfd = 1: any process gets full userfaultfds");
	else
		check_add(r, "uffd.unprivileged", dev_err ? CHECK_WARN : CHECK_PASS,
			  "vm.unprivileged_userfaultfd = %s: a process without CAP_SYS_PTRACE "
			  "(cleave's children drop it) gets kernel faults only through "
			  "/dev/userfaultfd%s",
			  unpriv, dev_err ? ", which is not usable here" : "");

	feature_fd = full >= 0 ? full : dev_fd >= 0 ? dev_fd : user;
	check_uffd_features(r, feature_fd);
	if (user >= 0)
		close(user);
	if (full >= 0)
		close(full);
	if (dev_fd >= 0)
		close(dev_fd);
}

/* ---- memory ---- */

static void check_memory(struct check_report *r)
{
	char text[8192], mode[32];
	uint64_t total = 0, size_kb = 0;
	ssize_t n;
	int fd;

	/* As shm/region.c seals guest RAM: no size change once handed out. */
	fd = memfd_create("cleave-check-host", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		check_add(r, "memory.memfd-seal", CHECK_FAIL, "memfd_create(MFD_ALLOW_SEALING): %s",
			  strerror(errno));
	else if (ftruncate(fd, 4096) || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		check_add(r, "memory.memfd-seal", CHECK_FAIL, "F_ADD_SEALS SHRINK|GROW: %s",
			  strerror(errno));
	else if (fcntl(fd, F_GET_SEALS) != (F_SEAL_SHRINK | F_SEAL_GROW))
		check_add(r, "memory.memfd-seal", CHECK_FAIL,
			  "F_GET_SEALS does not show the seals just added");
	else
		check_add(r, "memory.memfd-seal", CHECK_PASS,
			  "memfds sealed against shrinking and growing");
	if (fd >= 0)
		close(fd);

	n = check_read("/sys/kernel/mm/transparent_hugepage/shmem_enabled", text, sizeof(text));
	if (n < 0)
		check_add(r, "memory.thp-shmem", CHECK_WARN,
			  "no transparent huge pages for shmem in this kernel: guest RAM is in 4 "
			  "KiB pages");
	else if (host_sysfs_choice(text, mode, sizeof(mode)))
		check_add(r, "memory.thp-shmem", CHECK_WARN, "shmem_enabled unreadable: '%s'",
			  text);
	else if (!strcmp(mode, "never") || !strcmp(mode, "deny"))
		check_add(r, "memory.thp-shmem", CHECK_WARN,
			  "shmem_enabled is %s: guest RAM stays in 4 KiB pages (echo advise > "
			  "/sys/kernel/mm/transparent_hugepage/shmem_enabled)",
			  mode);
	else
		check_add(r, "memory.thp-shmem", CHECK_PASS,
			  "shmem_enabled is %s: guest RAM (MADV_HUGEPAGE) gets 2 MiB pages", mode);

	n = check_read("/proc/meminfo", text, sizeof(text));
	if (n < 0 || host_meminfo_value(text, "HugePages_Total", &total))
		check_add(r, "memory.hugetlb", CHECK_WARN, "no HugePages_Total in /proc/meminfo");
	else if (!total)
		check_add(r, "memory.hugetlb", CHECK_WARN,
			  "no hugetlb pages reserved (vm.nr_hugepages = 0)");
	else {
		host_meminfo_value(text, "Hugepagesize", &size_kb);
		check_add(r, "memory.hugetlb", CHECK_PASS,
			  "%llu hugetlb pages of %llu KiB reserved", (unsigned long long)total,
			  (unsigned long long)size_kb);
	}
}

/* ---- isolation ---- */

/* In a child: a filter that allows everything, installed the way libseccomp does. */
static int check_seccomp_child(unsigned long unused)
{
	struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
	struct sock_fprog prog = {.len = 1, .filter = &allow};

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	return (int)syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC, &prog);
}

static void check_seccomp(struct check_report *r)
{
	static const char *const needed[] = {"kill_process", "trap", "errno", "allow"};
	char actions[256], status[8192];
	const char *line, *mode = "?";
	ssize_t n;
	size_t i;
	int ret;

	if (prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0 && errno == EINVAL) {
		check_add(r, "isolation.seccomp", CHECK_FAIL,
			  "a kernel without seccomp: cleave's processes cannot be confined");
		return;
	}
	n = check_read("/proc/sys/kernel/seccomp/actions_avail", actions, sizeof(actions));
	if (n < 0) {
		check_add(
			r, "isolation.seccomp", CHECK_FAIL,
			"no /proc/sys/kernel/seccomp/actions_avail (%s): a kernel without seccomp "
			"filters or older than 4.14",
			strerror((int)-n));
		return;
	}
	for (i = 0; i < sizeof(needed) / sizeof(needed[0]); i++) {
		if (!host_word_in_list(actions, needed[i])) {
			check_add(r, "isolation.seccomp", CHECK_FAIL,
				  "seccomp has no '%s' action (actions: %s)", needed[i], actions);
			return;
		}
	}
	ret = check_in_child(check_seccomp_child, 0);
	if (ret) {
		check_add(r, "isolation.seccomp", CHECK_FAIL,
			  "installing a seccomp filter (TSYNC) fails: %s", strerror(-ret));
		return;
	}
	if (check_read("/proc/self/status", status, sizeof(status)) > 0 &&
	    (line = strstr(status, "\nSeccomp:")))
		mode = line[strspn(line + 9, " \t") + 9] == '2' ? "already under a filter"
								: "not filtered";
	check_add(r, "isolation.seccomp", CHECK_PASS,
		  "filters install with TSYNC; actions: %s; this process: %s", actions, mode);
}

static int check_unshare_child(unsigned long flag)
{
	return unshare((int)flag);
}

static void check_namespaces(struct check_report *r)
{
	static const struct {
		const char *name;
		int flag;
		const char *call;
		const char *use; /* what cleave does with it */
	} nss[] = {
		{"isolation.ns-user", CLONE_NEWUSER, "CLONE_NEWUSER", "not used by cleave"},
		{"isolation.ns-mount", CLONE_NEWNS, "CLONE_NEWNS", "each child's own root"},
		{"isolation.ns-pid", CLONE_NEWPID, "CLONE_NEWPID", "the children's PID namespace"},
		{"isolation.ns-ipc", CLONE_NEWIPC, "CLONE_NEWIPC",
		 "each child's own IPC namespace"},
		{"isolation.ns-net", CLONE_NEWNET, "CLONE_NEWNET",
		 "no network for cleave-vcpu and cleave-monitor"},
	};
	size_t i;

	for (i = 0; i < sizeof(nss) / sizeof(nss[0]); i++) {
		int ret = check_in_child(check_unshare_child, (unsigned long)nss[i].flag);

		if (!ret)
			check_add(r, nss[i].name, CHECK_PASS, "unshare(%s) works (%s)", nss[i].call,
				  nss[i].use);
		else
			check_add(r, nss[i].name, CHECK_WARN, "unshare(%s): %s%s (%s)", nss[i].call,
				  strerror(-ret),
				  geteuid() && nss[i].flag != CLONE_NEWUSER ? ", not root" : "",
				  nss[i].use);
	}
	/* cleave run's own test (sandbox/jail.c): what its children will get. */
	if (sandbox_jail_supported())
		check_add(r, "isolation.jail", CHECK_PASS,
			  "cleave run gives each child its own namespaces and root");
	else
		check_add(r, "isolation.jail", CHECK_WARN,
			  "cleave run starts its children without namespaces (%s); seccomp still "
			  "applies",
			  geteuid() ? "not root" : "the kernel refused a mount namespace");
}

static void check_cgroup(struct check_report *r)
{
	char controllers[512];
	struct statfs fs;

	if (!statfs("/sys/fs/cgroup", &fs) && fs.f_type == CGROUP2_SUPER_MAGIC) {
		if (check_read("/sys/fs/cgroup/cgroup.controllers", controllers,
			       sizeof(controllers)) < 0)
			controllers[0] = '\0';
		check_add(r, "isolation.cgroup2", CHECK_PASS,
			  "unified cgroup v2 hierarchy; controllers: %s",
			  *controllers ? controllers : "none");
	} else if (!statfs("/sys/fs/cgroup/unified", &fs) && fs.f_type == CGROUP2_SUPER_MAGIC) {
		check_add(r, "isolation.cgroup2", CHECK_WARN,
			  "hybrid: cgroup v2 only at /sys/fs/cgroup/unified, controllers on v1");
	} else {
		check_add(r, "isolation.cgroup2", CHECK_WARN,
			  "no cgroup v2 at /sys/fs/cgroup (cgroup v1 or none)");
	}
}

/* ---- network ---- */

/* Attaches the tls ULP to a connected loopback TCP socket; 0 or -errno. */
static int check_ktls_attach(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int lfd, cfd = -1, ret = 0;

	lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return -errno;
	if (bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) || listen(lfd, 1) ||
	    getsockname(lfd, (struct sockaddr *)&sa, &len)) {
		ret = -errno;
		goto out;
	}
	cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* The handshake completes in the listener's backlog: no accept() needed. */
	if (cfd < 0 || connect(cfd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    setsockopt(cfd, IPPROTO_TCP, TCP_ULP, "tls", sizeof("tls")))
		ret = -errno;
out:
	if (cfd >= 0)
		close(cfd);
	close(lfd);
	return ret;
}

static void check_network(struct check_report *r)
{
	char ulps[256];
	ssize_t n;
	int ret;

	/* Only when listed: attaching an unlisted ULP as root would load the module. */
	n = check_read("/proc/sys/net/ipv4/tcp_available_ulp", ulps, sizeof(ulps));
	if (n < 0) {
		check_add(r, "network.ktls", CHECK_WARN, "/proc/sys/net/ipv4/tcp_available_ulp: %s",
			  strerror((int)-n));
		return;
	}
	if (!host_word_in_list(ulps, "tls")) {
		check_add(r, "network.ktls", CHECK_WARN,
			  "no kernel TLS: the tls ULP is not loaded (available: %s; modprobe tls)",
			  *ulps ? ulps : "none");
		return;
	}
	ret = check_ktls_attach();
	if (ret)
		check_add(r, "network.ktls", CHECK_WARN, "setsockopt(TCP_ULP, \"tls\"): %s",
			  strerror(-ret));
	else
		check_add(r, "network.ktls", CHECK_PASS,
			  "kernel TLS: the tls ULP attaches to a loopback TCP socket");
}

/* ---- output ---- */

static unsigned int check_count(const struct check_report *r, enum check_status status)
{
	unsigned int i, n = 0;

	for (i = 0; i < r->nr; i++)
		n += r->lines[i].status == status;
	return n;
}

static void check_print_text(const struct check_report *r)
{
	unsigned int i, fails = check_count(r, CHECK_FAIL), warns = check_count(r, CHECK_WARN);
	unsigned int unchecked = 0;
	const char *sep = "";

	for (i = 0; i < r->nr; i++)
		printf("%s  %-34s %s\n", check_status_names[r->lines[i].status], r->lines[i].name,
		       r->lines[i].detail);
	if (!fails) {
		printf("\nthis host can run cleave VMs (%u warning%s)\n", warns,
		       warns == 1 ? "" : "s");
		return;
	}
	/* The causes; what could not be checked because of them only counts. */
	printf("\nthis host cannot run a cleave VM: ");
	for (i = 0; i < r->nr; i++) {
		if (r->lines[i].status != CHECK_FAIL)
			continue;
		if (r->lines[i].unchecked) {
			unchecked++;
			continue;
		}
		printf("%s%s", sep, r->lines[i].name);
		sep = ", ";
	}
	printf(" failed");
	if (unchecked)
		printf(" (%u required check%s could not run)", unchecked,
		       unchecked == 1 ? "" : "s");
	printf("\n");
}

static int check_print_json(const struct check_report *r)
{
	json_t *root, *checks;
	unsigned int i;
	int ret = 0;

	checks = json_array();
	root = json_pack("{s:b, s:s, s:o}", "can_run", !check_count(r, CHECK_FAIL), "kvm_device",
			 r->kvm.path, "checks", checks);
	if (!root)
		return -ENOMEM;
	for (i = 0; i < r->nr; i++) {
		json_t *c = json_pack("{s:s, s:s, s:b, s:s}", "name", r->lines[i].name, "status",
				      check_status_names[r->lines[i].status], "checked",
				      !r->lines[i].unchecked, "detail", r->lines[i].detail);

		if (!c || json_array_append_new(checks, c)) {
			ret = -ENOMEM;
			goto out;
		}
	}
	if (json_dumpf(root, stdout, JSON_INDENT(2)) || printf("\n") < 0)
		ret = -EIO;
out:
	json_decref(root);
	return ret;
}

static void check_usage(FILE *out)
{
	fprintf(out,
		"Usage: cleave check-host [--json]\n"
		"Checks what this host offers cleave: KVM and its capabilities, userfaultfd,\n"
		"memory, isolation, network.  One line per check: PASS, WARN (an optional\n"
		"feature is missing) or FAIL (cleave cannot run a VM here).\n"
		"Exit status: 0 when cleave can run a VM here, %d when not, 2 on bad options.\n"
		"\n"
		"  --json       one JSON object: can_run, kvm_device, checks[{name, status,\n"
		"               checked, detail}]\n"
		"  -h, --help   this text\n",
		HOST_EXIT_UNFIT);
}

int cmd_check_host_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	static struct check_report report; /* large (lines); one per process */
	bool json = false;
	int opt;

	optind = 0;
	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'j':
			json = true;
			break;
		case 'h':
			check_usage(stdout);
			return 0;
		default:
			check_usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "cleave check-host: unexpected argument '%s'\n", argv[optind]);
		check_usage(stderr);
		return 2;
	}
	check_kvm(&report);
	check_uffd(&report);
	check_memory(&report);
	check_seccomp(&report);
	check_namespaces(&report);
	check_cgroup(&report);
	check_network(&report);
	if (json) {
		if (check_print_json(&report)) {
			fprintf(stderr, "cleave check-host: writing JSON failed\n");
			return 1;
		}
	} else {
		check_print_text(&report);
	}
	fflush(stdout);
	return check_count(&report, CHECK_FAIL) ? HOST_EXIT_UNFIT : 0;
}
