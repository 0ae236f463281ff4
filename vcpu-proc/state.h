/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Save and load of everything KVM holds for one x86 vCPU, as raw KVM ioctl
 * structures in a Cleave__Vcpu__VcpuState (same-architecture migration and
 * restore only; the blobs are opaque outside vcpu-proc).
 *
 * Preconditions the caller guarantees:
 *  - save: the vCPU thread is out of KVM_RUN, and an exit that KVM completes
 *    on re-entry (KVM_EXIT_IO, KVM_EXIT_MMIO, ...) has been completed by one
 *    KVM_RUN with kvm_run->immediate_exit = 1 (returns -EINTR); otherwise RIP
 *    still points at the `out` and the saved state replays it.
 *  - load: the vCPU has never run (or, for RESET, is parked and gets its
 *    power-on state back), and all of guest RAM is final (docs/INVARIANTS.md,
 *    invariant 3): loading enables the guest's kvmclock MSR, which gives KVM
 *    a GPA to write the clock page to (on the next KVM_RUN, and on some
 *    kernels already during the load).  vm_clock_load() (clock.h) comes
 *    first, and every vCPU is loaded before any runs.  docs/CLOCK.md has the
 *    whole ordering.
 *
 * Both calls must be made by the process (in practice the thread) that owns
 * the vCPU fd; they only issue vCPU ioctls and KVM_GET_MSR_INDEX_LIST /
 * KVM_CHECK_EXTENSION on kvm_fd (/dev/kvm).
 */
#ifndef CLEAVE_VCPU_STATE_H
#define CLEAVE_VCPU_STATE_H

#include "proto/vcpu.pb-c.h"

/*
 * Saves regs, sregs, XSAVE (KVM_GET_XSAVE2 with the KVM_CAP_XSAVE2 size),
 * XCRS, LAPIC, vCPU events, MP state, debugregs and the MSRs of
 * KVM_GET_MSR_INDEX_LIST that KVM_GET_MSRS can read (others are skipped and
 * logged at debug).  *out is initialised here; its byte fields and MSR
 * entries are malloc'd and freed by vcpu_state_release().  On error *out
 * holds nothing that needs releasing.  Returns 0 or a negative errno.
 */
int vcpu_state_save(int kvm_fd, int vcpu_fd, unsigned int index, Cleave__Vcpu__VcpuState *out);

/*
 * Loads *in into a vCPU that has not run.  Every blob size and every MSR
 * index is validated against the running KVM before the first set ioctl: a
 * mismatch is -EINVAL with a message and nothing is loaded.  A set ioctl
 * failing afterwards (a value KVM rejects) returns its error with the vCPU
 * partly loaded; the caller then discards the vCPU.  Only MSRs whose value
 * differs from the vCPU's are written; the kvmclock wall-clock MSRs are saved
 * but never loaded (docs/CLOCK.md says why).
 */
int vcpu_state_load(int kvm_fd, int vcpu_fd, const Cleave__Vcpu__VcpuState *in);

/*
 * Frees what vcpu_state_save() allocated and re-initialises *s; safe to
 * call twice.  Not for messages from cleave__vcpu__vm_state__unpack(), which
 * are freed with cleave__vcpu__vm_state__free_unpacked().
 */
void vcpu_state_release(Cleave__Vcpu__VcpuState *s);

#endif
