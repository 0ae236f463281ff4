// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu after init: the KVM fds are open, RAM is mapped, the event
 * publisher is up.  Then it starts its vCPU threads, loads the guest and
 * binds its RPC listeners, so the first guest instruction and the first
 * RPC byte are filtered; it keeps running vCPUs, serving RPCs (state
 * save/load, dirty-log harvest, pause/resume) and writing serial output.
 * It has no network: sockets are AF_UNIX only.  ioctl is limited to the KVM
 * requests vcpu-proc/ issues (grep 'ioctl(' vcpu-proc/) and a few fd ones.
 */
#include <linux/kvm.h>
#include <linux/userfaultfd.h>

#include "sandbox/policy-internal.h"

#define KVM_IOCTL(req, why) ALLOW_IF("ioctl", ARG_EQ32(1, req), why)

static const struct sandbox_rule kvm_ioctl_rules[] = {
	/* /dev/kvm system ioctls: probed at init and again when state is saved. */
	KVM_IOCTL(KVM_GET_API_VERSION, "init: API check"),
	KVM_IOCTL(KVM_CHECK_EXTENSION, "capability probes before save/load"),
	KVM_IOCTL(KVM_GET_VCPU_MMAP_SIZE, "kvm_run mapping size"),
	KVM_IOCTL(KVM_GET_SUPPORTED_CPUID, "CPUID of a (re)created vCPU"),
	KVM_IOCTL(KVM_GET_MSR_INDEX_LIST, "which MSRs CPU state saves"),
	/* VM ioctls. */
	KVM_IOCTL(KVM_CREATE_VCPU, "vCPU creation (also on reset)"),
	KVM_IOCTL(KVM_SET_USER_MEMORY_REGION, "memslots; dirty logging on/off for migration"),
	KVM_IOCTL(KVM_GET_DIRTY_LOG, "dirty-page harvest for the migrator"),
	KVM_IOCTL(KVM_CLEAR_DIRTY_LOG, "manual dirty-log protect"),
	KVM_IOCTL(KVM_GET_CLOCK, "kvmclock save"),
	KVM_IOCTL(KVM_SET_CLOCK, "kvmclock restore"),
	KVM_IOCTL(KVM_ENABLE_CAP, "manual dirty-log protect"),
	KVM_IOCTL(KVM_SET_TSS_ADDR, "VM setup"),
	KVM_IOCTL(KVM_SET_IDENTITY_MAP_ADDR, "VM setup"),
	KVM_IOCTL(KVM_CREATE_IRQCHIP, "VM setup"),
	KVM_IOCTL(KVM_CREATE_PIT2, "VM setup"),
	/* vCPU ioctls. */
	KVM_IOCTL(KVM_RUN, "vCPU loop"),
	KVM_IOCTL(KVM_GET_REGS, "state save, failure reports"),
	KVM_IOCTL(KVM_SET_REGS, "boot entry, state load"),
	KVM_IOCTL(KVM_GET_SREGS, "state save, failure reports"),
	KVM_IOCTL(KVM_SET_SREGS, "boot entry, state load"),
	KVM_IOCTL(KVM_GET_MSRS, "state save"),
	KVM_IOCTL(KVM_SET_MSRS, "state load, kvmclock MSRs"),
	KVM_IOCTL(KVM_SET_CPUID2, "vCPU setup"),
	KVM_IOCTL(KVM_GET_LAPIC, "state save"),
	KVM_IOCTL(KVM_SET_LAPIC, "state load"),
	KVM_IOCTL(KVM_GET_XSAVE, "state save (no XSAVE2)"),
	KVM_IOCTL(KVM_GET_XSAVE2, "state save"),
	KVM_IOCTL(KVM_SET_XSAVE, "state load"),
	KVM_IOCTL(KVM_GET_XCRS, "state save"),
	KVM_IOCTL(KVM_SET_XCRS, "state load"),
	KVM_IOCTL(KVM_GET_VCPU_EVENTS, "state save"),
	KVM_IOCTL(KVM_SET_VCPU_EVENTS, "state load"),
	KVM_IOCTL(KVM_GET_MP_STATE, "state save"),
	KVM_IOCTL(KVM_SET_MP_STATE, "state load"),
	KVM_IOCTL(KVM_GET_DEBUGREGS, "state save"),
	KVM_IOCTL(KVM_SET_DEBUGREGS, "state load"),
	KVM_IOCTL(KVM_KVMCLOCK_CTRL, "tell the guest it was paused"),
};
static const struct sandbox_table kvm_ioctl_table = SANDBOX_TABLE("kvm-ioctls", kvm_ioctl_rules);

/*
 * Postcopy (vcpu-proc/fault.c, postcopy-link.c): the userfaultfd was opened
 * and its API agreed before the policy (/dev/userfaultfd is refused read-
 * write here); these are what registering guest RAM and installing pages
 * need.  The migrator has none of them: it can never make a page visible.
 */
static const struct sandbox_rule uffd_rules[] = {
	ALLOW_IF("ioctl", ARG_EQ32(1, UFFDIO_REGISTER),
		 "postcopy: guest RAM registered for faults on pages still due"),
	ALLOW_IF("ioctl", ARG_EQ32(1, UFFDIO_UNREGISTER), "postcopy: every page is in"),
	ALLOW_IF("ioctl", ARG_EQ32(1, UFFDIO_COPY),
		 "postcopy: a page installed only where still missing"),
	ALLOW_IF("ioctl", ARG_EQ32(1, UFFDIO_ZEROPAGE), "postcopy: a zero page installed"),
	ALLOW_IF("ioctl", ARG_EQ32(1, UFFDIO_WAKE), "postcopy: waiters of a page installed"),
};
static const struct sandbox_table uffd_table = SANDBOX_TABLE("userfaultfd", uffd_rules);

/* AF_UNIX only (the nng table's socket rule), in its jail only its own socket dirs are writable. */
static const struct sandbox_rule vcpu_rules[] = {
	ALLOW("bind", "the RPC service's ipc:// listeners, bound under the policy"),
	ALLOW("listen", "the RPC service's ipc:// listeners, bound under the policy"),
};
static const struct sandbox_table vcpu_table = SANDBOX_TABLE("vcpu", vcpu_rules);

const struct sandbox_policy sandbox_policy_vcpu = {
	.name = "cleave-vcpu",
	.tables = {&sandbox_table_base, &sandbox_table_mmap, &sandbox_table_nng, &kvm_ioctl_table,
		   &uffd_table, &vcpu_table},
};
