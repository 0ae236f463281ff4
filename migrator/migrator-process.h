/* SPDX-License-Identifier: GPL-2.0-only */
/* cleave-migrator, the process around the engine: vmops.c, server.c, main.c. */
#ifndef CLEAVE_MIGRATOR_PROCESS_H
#define CLEAVE_MIGRATOR_PROCESS_H

#include "migrator/migration.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"

/* mig_vm_ops over RPC; ops_arg is the struct rpc_client * of vcpu-proc. */
extern const struct mig_vm_ops migrator_vm_ops;

/* Serves migrator.proto at @url for @s (which must outlive the server). */
int migrator_server_start(struct rpc_server **out, const char *url, struct mig_session *s);

/* Fills a MigrationInfo (query-migrate) from the engine's snapshot; strings point into @info. */
void migrator_info_fill(const struct mig_info *info, Cleave__Migrator__MigrationInfo *mi,
			Cleave__Migrator__RamStats *ram);

#endif
