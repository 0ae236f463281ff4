/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A test VM for the migration engine: a control segment and RAM memfds,
 * a migration session on them, mig_vm_ops implemented in-process, and an
 * optional "dirtier" thread standing in for the vCPUs (it pwrite()s pages
 * into the memfd and sets their bits in the shm dirty bitmap, so harvest
 * has nothing left to do).  Shared by the unit tests and the in-process bench.
 */
#ifndef CLEAVE_TEST_TVM_H
#define CLEAVE_TEST_TVM_H

#include <pthread.h>

#include "migrator/migration.h"

struct tvm {
	struct shm_ctl ctl;
	struct shm_region ram[SHM_MAX_REGIONS];
	unsigned int nr_regions;
	struct mig_session *s;

	/* Protects every field below. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool paused; /* pause requested */
	bool parked; /* dirtier acknowledged the pause */
	int pause_calls, resume_calls, loads;
	int last_pause_state;
	bool dirty_log;
	unsigned int harvests;
	unsigned int throttle;
	unsigned int save_delay_ms; /* save_state sleeps (cancel-in-device tests) */
	unsigned int load_delay_ms; /* load_state sleeps (a cut while the state loads) */
	bool loading;		    /* load_state is sleeping */
	int fail_load;		    /* load_state returns this */
	int run_state_override;	    /* run_state reports this when non-zero */
	uint8_t blob[64];
	size_t blob_len;
	/* Dirtier. */
	pthread_t dirtier;
	bool dirtier_live, stop;
	uint64_t hot_pages;	 /* writes land in the first hot_pages of region 0 */
	unsigned int zero_every; /* every Nth dirtier write is an all-zero page; 0: none */
	unsigned int stop_after; /* stops writing after this many harvests (0: never) */
	uint64_t writes;
	void *pc; /* the postcopy VM side (tvm-postcopy.c), or NULL */
	/* Events seen. */
	char events[32][16];
	unsigned int nr_events, passes;
};

struct mig_hooks;
/*
 * The engine's test hooks (migrator/test-hooks.h) for tvm_init: a pointer
 * to them in a fault-injection build; NULL in a production build, which has
 * none, and where a test that needs them skips (TVM_NEEDS_HOOKS, first in
 * its body).
 */
#ifdef CLEAVE_FAULT_INJECTION
#define TVM_HOOKS(...)	  (&(const struct mig_hooks){__VA_ARGS__})
#define TVM_NEEDS_HOOKS() ((void)0)
#else
#define TVM_HOOKS(...)	  NULL
#define TVM_NEEDS_HOOKS() skip()
#endif

/* @io_timeout_ms 0: the engine's default; @hooks: TVM_HOOKS() or NULL. */
int tvm_init(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
	     unsigned int io_timeout_ms);
/* The same with mutual TLS on every connection (@tls outlives the tvm). */
int tvm_init_tls(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
		 unsigned int io_timeout_ms, const struct mig_tls *tls);
/* With a snapshot directory (migrate "file:"): @dir's path and an open fd of it. */
int tvm_init_snapshot(struct tvm *t, const struct shm_ctl_layout *layout,
		      const struct mig_hooks *hooks, const char *dir, int dirfd);
/* The general case: @base's TLS, snapshot and plaintext settings; the rest from the tvm. */
int tvm_init_env(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
		 unsigned int io_timeout_ms, const struct mig_env *base);
void tvm_fini(struct tvm *t);
/* The in-process ops every tvm uses (tvm-postcopy.c extends them). */
const struct mig_vm_ops *tvm_vm_ops(void);
void tvm_dirtier_start(struct tvm *t, uint64_t hot_pages, unsigned int stop_after);
void tvm_dirtier_stop(struct tvm *t);
/* Writes @nr pages of a pattern (or zeros) at page @first of @region. */
void tvm_fill(struct tvm *t, unsigned int region, uint64_t first, uint64_t nr, bool zero);
/* 0 when both VMs' RAM is equal byte for byte. */
int tvm_ram_cmp(struct tvm *a, struct tvm *b);
bool tvm_saw_event(struct tvm *t, const char *status);

#endif
