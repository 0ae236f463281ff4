/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The VM-wide KVM clock (what guests read through kvmclock) across pause,
 * migration and restore.  docs/CLOCK.md gives the ordering that keeps
 * docs/INVARIANTS.md invariant 3; in short: RAM final -> vm_clock_load() ->
 * vcpu_state_load() for each vCPU -> first KVM_RUN.
 */
#ifndef CLEAVE_VCPU_CLOCK_H
#define CLEAVE_VCPU_CLOCK_H

#include "proto/vcpu.pb-c.h"

/*
 * KVM_GET_CLOCK into st->clock_ns and st->clock_flags (as KVM returned
 * them).  st->realtime_ns is the host CLOCK_REALTIME paired with clock_ns:
 * KVM's own sample when it sets KVM_CLOCK_REALTIME, otherwise one taken
 * right after the ioctl (microseconds off, still usable to advance the clock
 * by the downtime).  Returns 0 or a negative errno.
 */
int vm_clock_save(int vm_fd, Cleave__Vcpu__VmState *st);

/*
 * KVM_SET_CLOCK to st->clock_ns, advanced by the host realtime elapsed since
 * st->realtime_ns when that is known (non-zero) and in the past, so guest
 * time never goes backwards and includes the downtime.  Call before any
 * vCPU of the VM has run and before vcpu_state_load().  Returns 0 or a
 * negative errno.
 */
int vm_clock_load(int vm_fd, const Cleave__Vcpu__VmState *st);

/*
 * KVM_KVMCLOCK_CTRL: tells the guest (PVCLOCK_GUEST_STOPPED, seen on its next
 * entry) that it was paused, so its soft-lockup watchdog does not fire.  Call
 * after a pause, with the vCPU out of KVM_RUN.  A vCPU whose guest has not
 * enabled kvmclock makes KVM return -EINVAL; that is not an error (returns
 * 0).  Returns 0 or a negative errno.
 */
int vcpu_clock_notify_stopped(int vcpu_fd);

#endif
