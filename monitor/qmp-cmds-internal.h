/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Command functions shared between the command table (qmp-commands.c) and
 * the migration commands (qmp-migration.c).  Each runs on the worker of
 * its table entry's backend.
 */
#ifndef CLEAVE_MONITOR_QMP_CMDS_INTERNAL_H
#define CLEAVE_MONITOR_QMP_CMDS_INTERNAL_H

#include <stdint.h>

#include "migrator/mig-limits.h"
#include "monitor/qmp-dispatch.h"
#include "proto/migrator.pb-c.h"

extern const struct mon_arg_spec mon_args_migrate[];
extern const struct mon_arg_spec mon_args_migrate_incoming[];
extern const struct mon_arg_spec mon_args_migrate_set_caps[];
extern const struct mon_arg_spec mon_args_migrate_set_params[];
extern const struct mon_arg_spec mon_args_migrate_resolve[];
extern const struct mon_arg_spec mon_args_postcopy_abandon[];
extern const struct mon_arg_spec mon_args_migrate_recover[];
extern const struct mon_arg_spec mon_args_object_add[];
extern const struct mon_arg_spec mon_args_object_del[];

void mon_cmd_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_incoming(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_cancel(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_set_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_set_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_migrate_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_resolve(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_postcopy_abandon(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
extern const struct mon_arg_spec mon_args_calc_dirty_rate[];
void mon_cmd_calc_dirty_rate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_dirty_rate(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
/* Hold and release a postcopy migration (allow-oob, on the migrator's worker). */
void mon_cmd_migrate_pause(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_recover(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_migrate_start_postcopy(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
/* yank / query-yank of QEMU's qapi/yank.json: the migration instance only. */
extern const struct mon_arg_spec mon_args_yank[];
extern const struct mon_arg_spec mon_yank_instance[];
void mon_cmd_yank(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_query_yank(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/*
 * qmp-objects.c: object-add (on the event loop) and object-del (on the
 * migrator worker: it asks the migrator whether the object is in use).
 */
void mon_cmd_object_add(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
void mon_cmd_object_del(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
/* Forgets every object (what a monitor restart does; tests). */
void mon_objects_clear(void);
/*
 * A new monitor: re-creates the objects the migrator's parameters @p name
 * (an authz-simple as the equivalent authz-list), unless a client added
 * one of that id first.
 */
void mon_objects_recover(const Cleave__Migrator__Parameters *p);

/*
 * What migrate-set-parameters sends of the objects tls-creds and
 * tls-authz name: the messages point into the objects' properties, of
 * which this holds a reference until mon_tls_objects_fini().
 */
struct mon_tls_objects {
	Cleave__Migrator__TlsCreds creds;
	Cleave__Migrator__TlsAuthz authz;
	Cleave__Migrator__TlsAuthzRule rules[MIG_TLS_MAX_RULES];
	Cleave__Migrator__TlsAuthzRule *rule_ptrs[MIG_TLS_MAX_RULES];
	json_t *creds_props, *authz_props;
};
/* Fill .creds / .authz from the object @id, or fail with QEMU's error for it. */
int mon_tls_objects_creds(struct mon_tls_objects *t, const char *id, struct mon_result *res);
int mon_tls_objects_authz(struct mon_tls_objects *t, const char *id, struct mon_result *res);
void mon_tls_objects_fini(struct mon_tls_objects *t);

/* qmp-hmp.c: human-monitor-command (its backend chosen by mon_hmp_route()). */
void mon_cmd_hmp(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/* qmp-schema.c: SchemaInfo of every table entry. */
void mon_cmd_query_qmp_schema(struct mon_ctx *ctx, json_t *args, struct mon_result *res);

/* A JSON integer from an unsigned counter (clamped: jansson's are signed). */
json_t *mon_json_u64(uint64_t v);

#endif
