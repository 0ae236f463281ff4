/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migrator's end of the postcopy link to cleave-vcpu
 * (proto/postcopy-link.h): struct mig_postcopy_ops over a SOCK_SEQPACKET
 * socket.  cleave-vcpu serves it (vcpu-proc/postcopy-link.c) and installs
 * every page itself; this side only sends pages and reads faults.
 *
 * Threads: place() from any engine thread (each send is one atomic
 * message); listen(), end() and wait_faults() are the only readers, and the
 * engine never runs two of them at once (listen before the fault thread
 * starts, end after it was joined).
 */
#ifndef CLEAVE_MIG_POSTCOPY_LINK_H
#define CLEAVE_MIG_POSTCOPY_LINK_H

#include <stdbool.h>
#include <stdint.h>

#include "migrator/migration.h"

struct mig_pclink;

/*
 * @fd: this side's end (not owned: it outlives the link; the launcher
 * keeps it for a restarted migrator).  Sends time out after @timeout_ms: a
 * cleave-vcpu that stops reading fails the migration, never hangs it.
 */
int mig_pclink_open(struct mig_pclink **out, int fd, unsigned int timeout_ms);
void mig_pclink_close(struct mig_pclink *l);

int mig_pclink_listen(struct mig_pclink *l);
/* @max must be at least PCLINK_MAX_FAULTS (a FAULTS message is taken whole), else -EINVAL. */
int mig_pclink_wait_faults(struct mig_pclink *l, struct mig_page_ref *reqs, unsigned int max,
			   int timeout_ms, bool again);
int mig_pclink_place(struct mig_pclink *l, uint32_t region, uint64_t page, unsigned int nr,
		     const void *data);
int mig_pclink_end(struct mig_pclink *l, bool abort);

#endif
