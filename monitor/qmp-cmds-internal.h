/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Command functions shared between the command table (qmp-commands.c) and
 * the migration commands (qmp-migration.c).  Each runs on the worker of
 * its table entry's backend.
 */
#ifndef CLEAVE_MONITOR_QMP_CMDS_INTERNAL_H
#define CLEAVE_MONITOR_QMP_CMDS_INTERNAL_H

#include <stdint.h>

#include "monitor/qmp-dispatch.h"

extern const struct mon_arg_spec mon_args_migrate[];
extern const struct mon_arg_spec mon_args_migrate_incoming[];
extern const struct mon_arg_spec mon_args_migrate_set_caps[];
extern const struct mon_arg_spec mon_args_migrate_set_params[];
extern const struct mon_arg_spec mon_args_migrate_resolve[];

void mon_cmd_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_incoming(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_cancel(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_set_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_set_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_resolve(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/* qmp-hmp.c: human-monitor-command (its backend chosen by mon_hmp_route()). */
void mon_cmd_hmp(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/* qmp-schema.c: SchemaInfo of every table entry. */
void mon_cmd_query_qmp_schema(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/* A JSON integer from an unsigned counter (clamped: jansson's are signed). */
json_t *mon_json_u64(uint64_t v);

#endif
