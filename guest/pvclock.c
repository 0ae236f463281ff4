// SPDX-License-Identifier: GPL-2.0-only
/*
 * kvmclock, read in ring 3.  Each vCPU reads its own pvclock page (KVM
 * updates it after MSR_KVM_SYSTEM_TIME_NEW, cpu.c) and asserts that time
 * never goes backwards: per vCPU always, and across vCPUs through
 * g.clock_last when KVM says the TSC is stable between vCPUs.
 */
#include "guest.h"

/* ns = system_time + ((tsc - tsc_timestamp) scaled by 2^shift) * mul / 2^32 */
static uint64_t pvclock_scale(uint64_t delta, uint32_t mul, int8_t shift)
{
	if (shift < 0)
		delta >>= -shift;
	else
		delta <<= shift;
	return (uint64_t)(((unsigned __int128)delta * mul) >> 32);
}

/* One consistent snapshot: retry while KVM is mid-update (odd or changed version). */
static uint64_t pvclock_read(const struct pvclock_vcpu_time_info *p, uint8_t *flags)
{
	uint32_t v;
	uint64_t ns;

	do {
		v = __atomic_load_n(&p->version, __ATOMIC_ACQUIRE);
		uint64_t tsc = rdtsc_ordered();
		ns = p->system_time +
		     pvclock_scale(tsc - p->tsc_timestamp, p->tsc_to_system_mul, p->tsc_shift);
		*flags = p->flags;
		/* Pairs with KVM's version increments around its update. */
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
	} while ((v & 1) || v != __atomic_load_n(&p->version, __ATOMIC_RELAXED));
	return ns;
}

uint64_t clock_ns(struct gcpu *c)
{
	uint64_t last, ns;
	uint8_t flags;

	GUEST_ASSERT(c, g.has_kvmclock, 0, 0);
	/* Load the global first: anything stored there was read before our own read. */
	last = __atomic_load_n(&g.clock_last, __ATOMIC_ACQUIRE);
	ns = pvclock_read(&c->pvti, &flags);
	GUEST_ASSERT(c, ns >= c->last_ns, ns, c->last_ns);
	c->last_ns = ns;
	if (flags & PVCLOCK_TSC_STABLE)
		GUEST_ASSERT(c, ns >= last, ns, last);
	if (flags & PVCLOCK_GUEST_STOPPED) {
		/* The VM was paused (KVM_KVMCLOCK_CTRL); acknowledge as Linux does, say so. */
		__atomic_fetch_and(&c->pvti.flags, (uint8_t)~PVCLOCK_GUEST_STOPPED,
				   __ATOMIC_RELAXED);
		serial_printf("STOPPED %u %lu\n", c->idx, ns);
	}
	while (ns > last && !__atomic_compare_exchange_n(&g.clock_last, &last, ns, true,
							 __ATOMIC_RELEASE, __ATOMIC_ACQUIRE))
		;
	return ns;
}

/* ns for a TSC interval, with this vCPU's current pvclock scale. */
uint64_t clock_tsc_to_ns(struct gcpu *c, uint64_t tsc_delta)
{
	return pvclock_scale(tsc_delta, c->pvti.tsc_to_system_mul, c->pvti.tsc_shift);
}

/* TSC ticks for delta_ns (< 2^31) with this vCPU's current pvclock scale. */
static uint64_t pvclock_ns_to_tsc(const struct pvclock_vcpu_time_info *p, uint64_t delta_ns)
{
	uint64_t t = (delta_ns << 32) / p->tsc_to_system_mul;

	return p->tsc_shift < 0 ? t << -p->tsc_shift : t >> p->tsc_shift;
}

/*
 * Wait until kvmclock reaches until_ns: halted in ring 0 until the TSC
 * deadline when the LAPIC timer is there, else spinning with pause.
 */
void clock_sleep_until(struct gcpu *c, uint64_t until_ns)
{
	uint64_t now;

	while ((now = clock_ns(c)) < until_ns) {
		if (!g.can_halt) {
			for (int i = 0; i < 64; i++)
				cpu_relax();
			continue;
		}
		uint64_t delta = until_ns - now;
		if (delta > NSEC)
			delta = NSEC;
		uint64_t deadline = rdtsc_ordered() + pvclock_ns_to_tsc(&c->pvti, delta) + 1;
		gate_call(GATE_SLEEP, 0, 0, deadline);
	}
}
