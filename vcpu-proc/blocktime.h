/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Postcopy blocktime (QEMU's postcopy-blocktime, docs/MIGRATION.md,
 * "Postcopy"): how long each vCPU was blocked on a page the migration had
 * not delivered yet, and how long all of them were blocked at once.  The
 * bookkeeping only: the fault service (fault.c) feeds it under its own
 * lock, which is what protects it; it takes no lock and reads no clock.
 *
 * A spell starts when the fault service reads a vCPU thread's fault on a
 * needed page and queues (or finds) its request, and ends when that page
 * is installed (or its region unregistered, which wakes the waiters).  A
 * vCPU blocked already keeps its spell on a second fault (it left its wait
 * for a signal and faulted again): the spell ends with the page of its
 * last fault.
 */
#ifndef CLEAVE_VCPU_BLOCKTIME_H
#define CLEAVE_VCPU_BLOCKTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct blocktime_vcpu {
	pid_t tid;	   /* the vCPU thread's host TID */
	bool blocked;	   /* a spell is open */
	uint32_t region;   /* while blocked: the page it waits for */
	uint64_t page;	   /* index within region */
	uint64_t since_ns; /* while blocked: when the spell started */
	uint64_t total_ns; /* closed spells */
};

struct blocktime {
	unsigned int nr;	  /* vCPUs; 0 until blocktime_set_vcpus() */
	struct blocktime_vcpu *v; /* [nr], owned */
	unsigned int nr_blocked;  /* vCPUs with an open spell */
	uint64_t all_since_ns;	  /* while nr_blocked == nr: when the last one blocked */
	uint64_t all_total_ns;	  /* closed spells of all vCPUs blocked at once */
};

/*
 * Threads @tids[0..n-1] are vCPUs 0..n-1; replaces what was set and
 * starts the counts from zero.  -ENOMEM leaves @bt without vCPUs.
 */
int blocktime_set_vcpus(struct blocktime *bt, const pid_t *tids, unsigned int n);
void blocktime_fini(struct blocktime *bt);

/* Thread @tid faulted on page @page of @region at @now_ns, and waits for it. */
void blocktime_fault(struct blocktime *bt, pid_t tid, uint32_t region, uint64_t page,
		     uint64_t now_ns);
/* Pages [@first, @first + @n) of @region are in at @now_ns: their waiters run again. */
void blocktime_woken(struct blocktime *bt, uint32_t region, uint64_t first, uint64_t n,
		     uint64_t now_ns);

/*
 * The totals at @now_ns, open spells counted up to it, in ms (saturated):
 * @vcpu_ms[i] for vCPU i (bt->nr entries), *@all_ms for all at once.
 */
void blocktime_read(const struct blocktime *bt, uint64_t now_ns, uint32_t *vcpu_ms,
		    uint32_t *all_ms);

#endif
