// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VM's KVM clock across pause, migration and restore (see clock.h and
 * docs/CLOCK.md).
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "log/log.h"
#include "vcpu-proc/clock.h"

static uint64_t clock_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int vm_clock_save(int vm_fd, Cleave__Vcpu__VmState *st)
{
	struct kvm_clock_data data;

	memset(&data, 0, sizeof(data));
	if (ioctl(vm_fd, KVM_GET_CLOCK, &data) < 0) {
		int err = -errno;

		log_err("KVM_GET_CLOCK vm: %s", strerror(-err));
		return err;
	}
	st->clock_ns = data.clock;
	st->clock_flags = data.flags;
	/*
	 * KVM samples realtime atomically with the clock only when the host
	 * clocksource is the TSC (master clock); otherwise pair the clock with
	 * our own sample, microseconds later, rather than lose the downtime.
	 */
	if (data.flags & KVM_CLOCK_REALTIME)
		st->realtime_ns = data.realtime;
	else
		st->realtime_ns = clock_realtime_ns();
	log_debug("KVM_GET_CLOCK vm: clock %llu ns, flags 0x%x, realtime %llu ns%s",
		  (unsigned long long)st->clock_ns, st->clock_flags,
		  (unsigned long long)st->realtime_ns,
		  (data.flags & KVM_CLOCK_REALTIME) ? "" : " (sampled by us)");
	return 0;
}

int vm_clock_load(int vm_fd, const Cleave__Vcpu__VmState *st)
{
	struct kvm_clock_data data;
	uint64_t now;

	memset(&data, 0, sizeof(data));
	data.clock = st->clock_ns;
	/*
	 * With KVM_CLOCK_REALTIME, KVM itself adds (its realtime now - realtime),
	 * if positive, under the same lock that sets the clock: the tightest
	 * way to include the downtime.  Other flags are outputs of GET only.
	 */
	if (st->realtime_ns) {
		data.flags = KVM_CLOCK_REALTIME;
		data.realtime = st->realtime_ns;
	}
	if (ioctl(vm_fd, KVM_SET_CLOCK, &data) == 0)
		goto out;
	if (errno != EINVAL || !data.flags) {
		int err = -errno;

		log_err("KVM_SET_CLOCK vm: %s", strerror(-err));
		return err;
	}
	/* A KVM before 5.16 rejects the flag: advance here, never backwards. */
	now = clock_realtime_ns();
	if (now > st->realtime_ns)
		data.clock += now - st->realtime_ns;
	data.flags = 0;
	data.realtime = 0;
	if (ioctl(vm_fd, KVM_SET_CLOCK, &data) < 0) {
		int err = -errno;

		log_err("KVM_SET_CLOCK vm: %s", strerror(-err));
		return err;
	}
out:
	log_debug("KVM_SET_CLOCK vm: clock %llu ns saved at realtime %llu ns",
		  (unsigned long long)st->clock_ns, (unsigned long long)st->realtime_ns);
	return 0;
}

int vcpu_clock_notify_stopped(int vcpu_fd)
{
	if (ioctl(vcpu_fd, KVM_KVMCLOCK_CTRL, 0) == 0)
		return 0;
	if (errno == EINVAL) {
		/* The guest never enabled kvmclock: nobody to tell. */
		log_debug("KVM_KVMCLOCK_CTRL: guest has no kvmclock");
		return 0;
	}
	int err = -errno;

	log_err("KVM_KVMCLOCK_CTRL: %s", strerror(-err));
	return err;
}
