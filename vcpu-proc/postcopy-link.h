/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cleave-vcpu's end of the postcopy link (proto/postcopy-link.h,
 * docs/MIGRATION.md, "Postcopy"): a server that turns the migrator's
 * messages into the fault service's postcopy calls (vcpu-proc/fault.h).
 *
 * Two threads: the reader (LISTEN, PLACE, AGAIN, END, each checked in full
 * before it is acted on; a refused message gets an ERROR and the server
 * goes on) and the taker (fault_take_requests() -> FAULTS).  The peer may
 * go away at any instant (a killed migrator): nothing is unregistered for
 * that, faults keep waiting, and the next migrator's AGAIN asks for them
 * again.  Locks: docs/LOCKING.md, "Postcopy link".
 */
#ifndef CLEAVE_VCPU_POSTCOPY_LINK_H
#define CLEAVE_VCPU_POSTCOPY_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm.h"
#include "vcpu-proc/fault.h"
#include "vcpu-proc/region.h"

struct pclink_server;

struct pclink_stats {
	bool listening;	       /* the fault service runs (LISTEN until the last END) */
	uint64_t msgs;	       /* messages received and accepted */
	uint64_t refused;      /* messages refused with ERROR -EPROTO */
	uint64_t place_failed; /* PLACE that fault_place() failed (ERROR sent) */
	uint64_t faults_sent;  /* entries sent in FAULTS messages */
	uint64_t send_failed;  /* sends that timed out or met a gone peer */
	struct fault_stats fs; /* the fault service's counters; zero while not listening */
};

/*
 * Starts serving @fd, cleave-vcpu's end of the link (owned by the caller;
 * it outlives the server).  @table: the VM's regions; @ctl: the control
 * segment, only read (its header copy, and the needed maps once at LISTEN).
 * @fs: a fault service (with no source) that LISTEN registers with and END
 * unregisters from, never stopped here; NULL: LISTEN starts one and the
 * last END stops it.  cleave-vcpu starts its own before its filter, which
 * refuses opening /dev/userfaultfd.  All outlive the server.
 */
int pclink_server_start(struct pclink_server **out, int fd, struct region_table *table,
			const struct shm_ctl *ctl, struct fault_service *fs);
/*
 * Stops and joins both threads, then unregisters every region still
 * registered, with force only if @vm_gone (no vCPU can run any more).
 * Returns 0 with the server freed; or -EBUSY when pages are still missing
 * and !@vm_gone: unregistering then would hand a vCPU that touches one a
 * zero page instead of the guest's data, so the fault service and its
 * registrations stay (the vCPU keeps waiting) and so does @srv, threads
 * stopped; call again with @vm_gone once the VM is torn down.
 */
int pclink_server_stop(struct pclink_server *srv, bool vm_gone);
/* Counters for query figures; callable from any thread while @srv exists. */
void pclink_server_stats(struct pclink_server *srv, struct pclink_stats *st);

#endif
