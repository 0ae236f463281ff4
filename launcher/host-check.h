/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What cleave needs of the host's KVM, asked once in one place.
 *
 * `cleave run` and `cleave demo` probe the KVM device before they create
 * anything (the preflight): a host without a usable KVM gets one sentence
 * naming the cause and HOST_EXIT_UNFIT, not a jail or spawn error from a
 * child.  `cleave check-host` shows the same probe line by line, next to the
 * host's other features.  Also here: the small parsers of /proc and /sys
 * text that check-host uses, pure so the unit tests can feed them.
 */
#ifndef CLEAVE_LAUNCHER_HOST_CHECK_H
#define CLEAVE_LAUNCHER_HOST_CHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

/*
 * Exit status of `cleave run`, `cleave demo` and `cleave check-host` when
 * this host cannot run a cleave VM.  Outside the guest's 1..125, the
 * shell's 126..192 (cannot execute, not found, killed by a signal) and
 * systemd's 200 and up, so it means only this.
 */
#define HOST_EXIT_UNFIT 193

#define HOST_KVM_DEVICE_DEFAULT "/dev/kvm"
/* The device the probe opens instead of /dev/kvm (tests, diagnosis); children never see it. */
#define HOST_KVM_DEVICE_ENV "CLEAVE_KVM_DEVICE"
#define HOST_KVM_API	    12 /* KVM_API_VERSION: the one stable KVM API */
#define HOST_KVM_MAJOR	    10 /* misc */
#define HOST_KVM_MINOR	    232

/* Why a KVM device cannot be used, in the order the probe finds out. */
enum host_kvm_error {
	HOST_KVM_OK,
	HOST_KVM_MISSING,     /* no such path */
	HOST_KVM_NOT_KVM,     /* not a character device 10:232, or no KVM_GET_API_VERSION */
	HOST_KVM_DENIED,      /* stat or open: EACCES/EPERM */
	HOST_KVM_NO_DRIVER,   /* a KVM node, but open fails: no backend bound to it */
	HOST_KVM_API_VERSION, /* KVM_GET_API_VERSION is not HOST_KVM_API */
	HOST_KVM_CAP_MISSING, /* a capability cleave needs is missing */
};

/* A KVM capability cleave uses; the table is host_kvm_caps[]. */
struct host_kvm_cap {
	const char *name;  /* check name below "kvm.cap.", e.g. "user-memory" */
	const char *macro; /* "KVM_CAP_USER_MEMORY", for messages */
	int cap;	   /* KVM_CAP_* */
	int need_bits;	   /* bits KVM_CHECK_EXTENSION must return; 0: any positive value */
	bool required;	   /* cleave-vcpu fails without it (else a feature is lost) */
	const char *use;   /* what cleave uses it for */
};

extern const struct host_kvm_cap host_kvm_caps[];
extern const size_t host_kvm_nr_caps;
#define HOST_KVM_MAX_CAPS 16

/* The result of one probe of a KVM device; filled by host_kvm_probe(). */
struct host_kvm {
	char path[256];	    /* the device probed */
	bool path_from_env; /* path came from HOST_KVM_DEVICE_ENV */
	enum host_kvm_error error;
	int err;	 /* errno of the failed step, 0 if none */
	mode_t mode;	 /* the path's file type (S_IFMT bits), 0 if it has none */
	dev_t rdev;	 /* its device number, when a character device */
	gid_t gid;	 /* its group, for the permission advice; (gid_t)-1 if unknown */
	int api_version; /* KVM_GET_API_VERSION, -1 before it was asked */
	/* KVM_CHECK_EXTENSION of each host_kvm_caps[] entry, 0 if absent. */
	int cap_values[HOST_KVM_MAX_CAPS];
	bool caps_probed;	/* cap_values are valid (the API version matched) */
	int missing_cap;	/* index of the first required cap missing, -1 if none */
	unsigned int max_vcpus; /* KVM_CAP_MAX_VCPUS (or NR_VCPUS, or 4); 0 if not asked */
};

/* HOST_KVM_DEVICE_ENV if set and not empty, else HOST_KVM_DEVICE_DEFAULT. */
const char *host_kvm_device(bool *from_env);

/*
 * Probes @path without creating a VM: stat, open read-write, API version,
 * every capability of host_kvm_caps[].  Returns 0 when cleave can use it,
 * else -1 with k->error saying why.  host_kvm_probe_default() probes
 * host_kvm_device().
 */
int host_kvm_probe(struct host_kvm *k, const char *path);
int host_kvm_probe_default(struct host_kvm *k);

/*
 * Creates a VM on k->path as cleave-vcpu does (KVM_CREATE_VM, manual dirty
 * log protect, in-kernel irqchip) and closes it.  0, or a negative errno
 * with the failed call in @err.
 */
int host_kvm_try_vm(const struct host_kvm *k, char *err, size_t len);

/* Whether cap @i of host_kvm_caps[] is there, after a successful API check. */
bool host_kvm_cap_present(const struct host_kvm *k, size_t i);

/*
 * The cause alone ("/dev/kvm does not exist"), and the preflight sentence:
 * cause, what to do, and a pointer to `cleave check-host`, without the
 * "cleave: " prefix or a newline.
 */
void host_kvm_cause(const struct host_kvm *k, char *buf, size_t len);
void host_kvm_explain(const struct host_kvm *k, char *buf, size_t len);

/*
 * The preflight of `cleave run` and `cleave demo`, on a probe they made
 * (run checks --vcpus against it first): true if cleave can use the device,
 * else prints "cleave: <sentence>" on stderr and returns false.
 */
bool host_kvm_preflight(const struct host_kvm *k);

/* ---- /proc and /sys text, for check-host ---- */

/* Whether the first "flags" line of /proc/cpuinfo text has @flag as a whole word. */
bool host_cpuinfo_has_flag(const char *cpuinfo, const char *flag);

/*
 * The bracketed word of a sysfs choice file ("always [madvise] never"),
 * as in transparent_hugepage/shmem_enabled.  0, or -EINVAL if none.
 */
int host_sysfs_choice(const char *text, char *buf, size_t len);

/* The number after "@key:" in /proc/meminfo text.  0, or -ENOENT / -EINVAL. */
int host_meminfo_value(const char *meminfo, const char *key, uint64_t *value);

/* Whether @word is one of the space-separated words of @list. */
bool host_word_in_list(const char *list, const char *word);

#endif
