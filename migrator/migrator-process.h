/* SPDX-License-Identifier: GPL-2.0-only */
/* cleave-migrator, the process around the engine: vmops.c, server.c, main.c. */
#ifndef CLEAVE_MIGRATOR_PROCESS_H
#define CLEAVE_MIGRATOR_PROCESS_H

#include "migrator/migration.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"

struct mig_pclink;

/* The VM cleave-migrator drives: the ops_arg of migrator_vm_ops. */
struct migrator_vm {
	struct rpc_client *rpc;	 /* vcpu-proc's RPC */
	struct mig_pclink *link; /* the postcopy link to vcpu-proc, or NULL */
};

/* mig_vm_ops over RPC, without postcopy (no link). */
extern const struct mig_vm_ops migrator_vm_ops;
/* The same, and the destination's postcopy ops over the postcopy link. */
extern const struct mig_vm_ops migrator_vm_ops_postcopy;

/* Serves migrator.proto at @url for @s (which must outlive the server). */
int migrator_server_start(struct rpc_server **out, const char *url, struct mig_session *s);

/* What a MigrationInfo reply points into, besides the struct mig_info it is filled from. */
struct migrator_info_buf {
	Cleave__Migrator__RamStats ram;
	Cleave__Migrator__Counter counters[MIG_NR_COUNTERS];
	Cleave__Migrator__Counter *counter_ptrs[MIG_NR_COUNTERS];
	Cleave__Migrator__PageRun runs[MIG_INFO_MISSING_RUNS];
	Cleave__Migrator__PageRun *run_ptrs[MIG_INFO_MISSING_RUNS];
};

/* Fills a MigrationInfo (query-migrate) from the engine's snapshot, pointing into @info, @buf. */
void migrator_info_fill(const struct mig_info *info, Cleave__Migrator__MigrationInfo *mi,
			struct migrator_info_buf *buf);

#endif
