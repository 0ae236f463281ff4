/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The engine's fault-injection hooks: delays that open kill windows, and
 * checks the tests read from the log.  Only fault-injection builds (meson
 * -Dfault_injection=true, which defines CLEAVE_FAULT_INJECTION for the
 * whole tree) see this header: a production build has neither the hooks in
 * struct mig_env nor the parser of CLEAVE_MIG_TEST_HOOKS.  The engine reads
 * a hook through MIG_HOOK() (session-internal.h), which is 0 there.
 */
#ifndef CLEAVE_MIG_TEST_HOOKS_H
#define CLEAVE_MIG_TEST_HOOKS_H

#ifndef CLEAVE_FAULT_INJECTION
#error "migrator/test-hooks.h is for fault-injection builds only"
#endif

#include <stdbool.h>
#include <stdint.h>

/* All zero unless a test sets them. */
struct mig_hooks {
	/* Receive thread <hook_channel> sleeps this long before each packet. */
	unsigned int recv_delay_us;
	/* Receive thread <hook_channel> sleeps this long before its last receivedmap write. */
	unsigned int recv_last_write_delay_us;
	unsigned int hook_channel;
	/* Round 0 harvests every this many bytes queued; 0 = MIG_FIRST_PASS_HARVEST. */
	uint64_t first_pass_harvest_bytes;
	/* Source: sleep this long after pausing the guest and before Commit (kill windows). */
	unsigned int switchover_delay_ms;
	/* A save's writers and a restore's readers sleep this long per chunk (kill windows). */
	unsigned int chunk_delay_us;
	/* Destination: log shm_region_hash() of every region before loading the state. */
	bool ram_hash;
};

/*
 * cleave-migrator's hooks from the environment:
 * CLEAVE_MIG_TEST_HOOKS="switchover_delay_ms=N,ram_hash=1,chunk_delay_us=N" (the launcher
 * passes it on in fault-injection builds only).
 */
void mig_hooks_from_env(struct mig_hooks *hooks);

#endif
