// SPDX-License-Identifier: GPL-2.0-only
/*
 * The QMP command table and the commands about the VM itself (run state,
 * vCPUs, memory).  Migration commands live in qmp-migration.c.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "monitor/qmp-cmds-internal.h"
#include "proto/rpc.h"
#include "proto/utf8.h"
#include "proto/vcpu.pb-c.h"

json_t *mon_json_u64(uint64_t v)
{
	return json_integer(v > (uint64_t)INT64_MAX ? INT64_MAX : (json_int_t)v);
}

static const char *const mon_backend_names[MON_BACKEND_NR] = {
	[MON_BACKEND_NONE] = "monitor",
	[MON_BACKEND_VCPU] = "vcpu-proc",
	[MON_BACKEND_MIGRATOR] = "migrator",
};

int mon_backend_call(struct mon_ctx *ctx, enum mon_backend backend, unsigned method,
		     const void *req, const void *reply_desc, void **reply, struct mon_result *res)
{
	return mon_backend_call_timeout(ctx, backend, method, req, reply_desc, reply,
					ctx->timeout_ms, res);
}

int mon_backend_call_timeout(struct mon_ctx *ctx, enum mon_backend backend, unsigned method,
			     const void *req, const void *reply_desc, void **reply, int timeout_ms,
			     struct mon_result *res)
{
	const char *name = mon_backend_names[backend];
	char errbuf[RPC_ERRMSG_LEN] = "";
	int ret;

	if (!ctx->rpc[backend]) {
		res->backend_down = true;
		return mon_result_error(res, NULL, "%s is not running", name);
	}
	ret = rpc_call(ctx->rpc[backend], method, req, reply_desc, (ProtobufCMessage **)reply,
		       timeout_ms, errbuf, sizeof(errbuf));
	if (ret == 0)
		return 0;
	if (ret == -ETIMEDOUT) {
		/* A dead peer: the fixed message docs/QMP.md gives, for scripts to match. */
		res->backend_down = true;
		if (backend == MON_BACKEND_MIGRATOR)
			mon_result_error(res, NULL, "migrator is not running");
		else
			mon_result_error(res, NULL, "%s is not responding", name);
		return ret;
	}
	if (errbuf[0])
		mon_result_error(res, NULL, "%s", errbuf);
	else
		mon_result_error(res, NULL, "%s: %s", name, strerror(-ret));
	return ret;
}

/* ---- vcpu-proc ---------------------------------------------------------- */

static const char *mon_run_state_name(Cleave__Vcpu__RunState st)
{
	switch (st) {
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING:
		return "running";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED:
		return "paused";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_SHUTDOWN:
		return "shutdown";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_INTERNAL_ERROR:
		return "internal-error";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE:
		return "inmigrate";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE:
		return "finish-migrate";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE:
		return "postmigrate";
	case CLEAVE__VCPU__RUN_STATE__RUN_STATE_PRELAUNCH:
	default:
		return "prelaunch";
	}
}

static Cleave__Vcpu__StatusReply *mon_vcpu_status(struct mon_ctx *ctx, struct mon_result *res)
{
	Cleave__Vcpu__StatusRequest req = CLEAVE__VCPU__STATUS_REQUEST__INIT;
	void *reply = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_STATUS, &req,
			     &cleave__vcpu__status_reply__descriptor, &reply, res))
		return NULL;
	return reply;
}

static json_t *mon_status_json(uint32_t state)
{
	return json_pack("{s:b,s:b,s:s}", "running",
			 state == CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING, "singlestep", 0,
			 "status", mon_run_state_name((Cleave__Vcpu__RunState)state));
}

/* On the event loop: the state vcpu-proc's events keep (monitor/run-state.h). */
static bool mon_known_query_status(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	uint32_t state;

	if (!mon_run_state_get(&ctx->run_state, &state))
		return false;
	res->ret = mon_status_json(state);
	return true;
}

/* On the vcpu worker when the state is not known: ask, and keep the answer. */
static void mon_cmd_query_status(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	uint64_t mark = mon_run_state_mark(&ctx->run_state);
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);

	if (!st) {
		mon_run_state_forget(&ctx->run_state);
		return;
	}
	mon_run_state_status(&ctx->run_state, mark, st->state, st->announced_seq);
	res->ret = mon_status_json(st->state);
	rpc_msg_free(&st->base);
}

static void mon_cmd_query_cpus_fast(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);
	char path[64];
	json_t *cpus;
	size_t i;

	if (!st)
		return;
	cpus = json_array();
	for (i = 0; cpus && i < st->n_vcpus; i++) {
		snprintf(path, sizeof(path), "/machine/unattached/device[%u]", st->vcpus[i]->index);
		json_array_append_new(cpus,
				      json_pack("{s:i,s:s,s:i,s:{s:i,s:i,s:i},s:s}", "cpu-index",
						(int)st->vcpus[i]->index, "qom-path", path,
						"thread-id", (int)st->vcpus[i]->thread_id, "props",
						"core-id", 0, "thread-id", 0, "socket-id",
						(int)st->vcpus[i]->index, "target", "x86_64"));
	}
	res->ret = cpus;
	rpc_msg_free(&st->base);
}

static void mon_cmd_query_memory_size(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);

	if (!st)
		return;
	res->ret = json_pack("{s:o,s:i}", "base-memory", mon_json_u64(st->memory_bytes),
			     "plugged-memory", 0);
	rpc_msg_free(&st->base);
}

/*
 * stop / cont: vcpu-proc publishes STOP / RESUME (before its reply) only
 * when the run state changes; the state it had beforehand says whether the
 * monitor must hold the reply until that event went out, as QEMU orders
 * them.  Both calls run on the one vcpu worker, so no other QMP command
 * comes between them.
 */
static void mon_cmd_stop(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__PauseRequest req = CLEAVE__VCPU__PAUSE_REQUEST__INIT;
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);
	bool was_running;

	if (!st)
		return;
	was_running = st->state == CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING;
	rpc_msg_free(&st->base);
	req.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED;
	if (mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &req, NULL,
			     NULL, res))
		return;
	if (was_running)
		res->await_event = MON_AWAIT_STOP;
}

static void mon_cmd_cont(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__ResumeRequest req = CLEAVE__VCPU__RESUME_REQUEST__INIT;
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);
	bool was_running;

	if (!st)
		return;
	was_running = st->state == CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING;
	rpc_msg_free(&st->base);
	if (mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_RESUME, &req, NULL,
			     NULL, res))
		return;
	if (!was_running)
		res->await_event = MON_AWAIT_RESUME;
}

static void mon_cmd_system_reset(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__ResetRequest req = CLEAVE__VCPU__RESET_REQUEST__INIT;

	mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_RESET, &req, NULL,
			 NULL, res);
}

void mon_cmd_vcpu_quit(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__QuitRequest req = CLEAVE__VCPU__QUIT_REQUEST__INIT;

	mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_QUIT, &req, NULL, NULL,
			 res);
}

/* ---- answered by the monitor alone ---------------------------------------- */

static void mon_cmd_query_version(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	res->ret = json_pack("{s:{s:i,s:i,s:i},s:s}", "qemu", "micro", 0, "minor", 2, "major", 7,
			     "package", "cleave 0.1.0");
}

static void mon_cmd_query_commands(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	json_t *list = json_array();
	size_t i;

	for (i = 0; list && i < mon_cmd_count(); i++)
		json_array_append_new(list, json_pack("{s:s}", "name", mon_cmd_at(i)->name));
	res->ret = list;
}

static void mon_cmd_query_name(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	res->ret = ctx->name ? json_pack("{s:s}", "name", ctx->name) : json_object();
}

static void mon_cmd_query_kvm(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	/* vcpu-proc has no other accelerator: a running cleave VM is a KVM VM. */
	res->ret = json_pack("{s:b,s:b}", "enabled", 1, "present", 1);
}

/* cleave has no UUID option: QEMU's answer when none is set. */
static void mon_cmd_query_uuid(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	res->ret = json_pack("{s:s}", "UUID", "00000000-0000-0000-0000-000000000000");
}

static void mon_cmd_query_target(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	res->ret = json_pack("{s:s}", "arch", "x86_64");
}

/* vcpu-proc has no I/O threads. */
static void mon_cmd_query_iothreads(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	res->ret = json_array();
}

/* The vCPU count is fixed at start: QEMU's answer for a machine without CPU hotplug. */
static void mon_cmd_query_hotpluggable_cpus(struct mon_ctx *ctx, json_t *args,
					    struct mon_result *res)
{
	mon_result_error(res, NULL, "The feature '%s' is not enabled", "query-hotpluggable-cpus");
}

/*
 * cleave's one machine type.  Its vCPU count is fixed at start (no
 * hotplug), so the most vCPUs this machine has is the count vcpu-proc runs.
 */
static void mon_cmd_query_machines(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Vcpu__StatusReply *st = mon_vcpu_status(ctx, res);

	if (!st)
		return;
	res->ret = json_pack("[{s:s,s:b,s:I,s:b,s:b,s:b}]", "name", "cleave", "is-default", 1,
			     "cpu-max", (json_int_t)(st->n_vcpus ? st->n_vcpus : 1),
			     "hotpluggable-cpus", 0, "numa-mem-supported", 0, "deprecated", 0);
	rpc_msg_free(&st->base);
}

/* QEMU's socket chardev filename while connected: the listening address, ",server=on". */
static json_t *mon_chardev_json(const char *label, const char *filename)
{
	return json_pack("{s:s,s:s,s:b}", "label", label, "filename", filename, "frontend-open", 1);
}

/*
 * The QMP sockets as QEMU names a -qmp chardev (compat_monitorN), then
 * the serial (serial0, its -serial spec as filename).
 */
static void mon_cmd_query_chardev(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	json_t *list = json_array();
	char label[32], filename[512];
	size_t i;

	for (i = 0; list && ctx->qmp_sockets && ctx->qmp_sockets[i]; i++) {
		snprintf(label, sizeof(label), "compat_monitor%zu", i);
		utf8_snprintf(filename, sizeof(filename), "%s,server=on", ctx->qmp_sockets[i]);
		if (json_array_append_new(list, mon_chardev_json(label, filename)))
			goto err;
	}
	if (list && ctx->serial) {
		utf8_snprintf(filename, sizeof(filename), "%s", ctx->serial);
		if (json_array_append_new(list, mon_chardev_json("serial0", filename)))
			goto err;
	}
	if (!list)
		goto err;
	res->ret = list;
	return;
err:
	json_decref(list);
	mon_result_error(res, NULL, "out of memory");
}

static void mon_cmd_quit(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	/* The server sends SHUTDOWN and asks vcpu-proc to QUIT after this reply. */
	res->ret = json_object();
}

/*
 * getfd / closefd run in the client's session (MON_CMD_FDS, client-fds.c),
 * which holds its fds.  Without one (no socket the fd could have come
 * over), they answer as QEMU's HMP does.
 */
static void mon_cmd_getfd(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	mon_result_error(res, NULL, "No file descriptor supplied via SCM_RIGHTS");
}

static void mon_cmd_closefd(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	mon_result_error(res, NULL, "File descriptor named '%s' not found",
			 json_string_value(json_object_get(args, "fdname")));
}

static const struct mon_arg_spec mon_args_fdname[] = {
	{.name = "fdname", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

static void mon_cmd_capabilities(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	mon_capabilities_check(args, res);
}

static const char *const mon_qmp_capability_values[] = {"oob", NULL};

static const struct mon_arg_spec mon_args_capabilities[] = {
	{.name = "enable",
	 .type = MON_ARG_ENUM_ARRAY,
	 .optional = true,
	 .values = mon_qmp_capability_values},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_hmp[] = {
	{.name = "command-line", .type = MON_ARG_STR},
	{.name = "cpu-index", .type = MON_ARG_INT, .optional = true},
	{.type = MON_ARG_END},
};

/* QEMU 7.2's MachineInfo (qapi/machine.json) and ChardevInfo (qapi/char.json). */
static const struct mon_arg_spec mon_ret_machine_info[] = {
	{.name = "name", .type = MON_ARG_STR},
	{.name = "alias", .type = MON_ARG_STR, .optional = true},
	{.name = "is-default", .type = MON_ARG_BOOL, .optional = true},
	{.name = "cpu-max", .type = MON_ARG_INT},
	{.name = "hotpluggable-cpus", .type = MON_ARG_BOOL},
	{.name = "numa-mem-supported", .type = MON_ARG_BOOL},
	{.name = "deprecated", .type = MON_ARG_BOOL},
	{.name = "default-cpu-type", .type = MON_ARG_STR, .optional = true},
	{.name = "default-ram-id", .type = MON_ARG_STR, .optional = true},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_ret_chardev_info[] = {
	{.name = "label", .type = MON_ARG_STR},
	{.name = "filename", .type = MON_ARG_STR},
	{.name = "frontend-open", .type = MON_ARG_BOOL},
	{.type = MON_ARG_END},
};

/* Sorted as `query-commands` lists them; looked up linearly (two dozen entries). */
static const struct mon_cmd mon_cmds[] = {
	{.name = "qmp_capabilities",
	 .args = mon_args_capabilities,
	 .backend = MON_BACKEND_NONE,
	 .flags = MON_CMD_CAPABILITIES,
	 .run = mon_cmd_capabilities},
	{.name = "query-version", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_version},
	{.name = "query-commands", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_commands},
	{.name = "query-name", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_name},
	{.name = "query-kvm", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_kvm},
	{.name = "query-qmp-schema", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_qmp_schema},
	{.name = "query-uuid", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_uuid},
	{.name = "query-target", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_target},
	{.name = "query-iothreads", .backend = MON_BACKEND_NONE, .run = mon_cmd_query_iothreads},
	{.name = "query-hotpluggable-cpus",
	 .backend = MON_BACKEND_NONE,
	 .run = mon_cmd_query_hotpluggable_cpus},
	{.name = "query-chardev",
	 .backend = MON_BACKEND_NONE,
	 .run = mon_cmd_query_chardev,
	 .ret = MON_RET_OBJ_ARRAY,
	 .ret_fields = mon_ret_chardev_info},
	{.name = "human-monitor-command",
	 .args = mon_args_hmp,
	 .backend = MON_BACKEND_NONE,
	 .flags = MON_CMD_HMP,
	 .run = mon_cmd_hmp,
	 .ret = MON_RET_STR},
	{.name = "quit", .backend = MON_BACKEND_NONE, .flags = MON_CMD_QUIT, .run = mon_cmd_quit},
	{.name = "query-status",
	 .backend = MON_BACKEND_VCPU,
	 .run = mon_cmd_query_status,
	 .known = mon_known_query_status},
	{.name = "stop", .backend = MON_BACKEND_VCPU, .run = mon_cmd_stop},
	{.name = "cont", .backend = MON_BACKEND_VCPU, .run = mon_cmd_cont},
	{.name = "system_reset", .backend = MON_BACKEND_VCPU, .run = mon_cmd_system_reset},
	{.name = "query-cpus-fast", .backend = MON_BACKEND_VCPU, .run = mon_cmd_query_cpus_fast},
	{.name = "query-memory-size-summary",
	 .backend = MON_BACKEND_VCPU,
	 .run = mon_cmd_query_memory_size},
	{.name = "query-machines",
	 .backend = MON_BACKEND_VCPU,
	 .run = mon_cmd_query_machines,
	 .ret = MON_RET_OBJ_ARRAY,
	 .ret_fields = mon_ret_machine_info},
	{.name = "getfd",
	 .args = mon_args_fdname,
	 .backend = MON_BACKEND_NONE,
	 .flags = MON_CMD_FDS,
	 .run = mon_cmd_getfd,
	 .ret = MON_RET_EMPTY},
	{.name = "closefd",
	 .args = mon_args_fdname,
	 .backend = MON_BACKEND_NONE,
	 .flags = MON_CMD_FDS,
	 .run = mon_cmd_closefd,
	 .ret = MON_RET_EMPTY},
	{.name = "migrate",
	 .args = mon_args_migrate,
	 .backend = MON_BACKEND_MIGRATOR,
	 .flags = MON_CMD_FD_URI,
	 .run = mon_cmd_migrate},
	{.name = "migrate-incoming",
	 .args = mon_args_migrate_incoming,
	 .backend = MON_BACKEND_MIGRATOR,
	 .flags = MON_CMD_FD_URI,
	 .run = mon_cmd_migrate_incoming},
	{.name = "migrate_cancel", .backend = MON_BACKEND_MIGRATOR, .run = mon_cmd_migrate_cancel},
	{.name = "query-migrate", .backend = MON_BACKEND_MIGRATOR, .run = mon_cmd_query_migrate},
	{.name = "migrate-set-capabilities",
	 .args = mon_args_migrate_set_caps,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_migrate_set_caps},
	{.name = "query-migrate-capabilities",
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_query_migrate_caps},
	{.name = "migrate-set-parameters",
	 .args = mon_args_migrate_set_params,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_migrate_set_params},
	{.name = "query-migrate-parameters",
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_query_migrate_params},
	{.name = "calc-dirty-rate",
	 .args = mon_args_calc_dirty_rate,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_calc_dirty_rate},
	{.name = "query-dirty-rate",
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_query_dirty_rate},
	{.name = "migrate-start-postcopy",
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_migrate_start_postcopy,
	 .ret = MON_RET_EMPTY},
	/*
	 * QEMU's yank and query-yank are allow-oob; cleave's ask the migrator,
	 * so they run in band on its worker (docs/QMP.md).
	 */
	{.name = "yank",
	 .args = mon_args_yank,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_yank,
	 .ret = MON_RET_EMPTY},
	{.name = "query-yank",
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_query_yank,
	 .ret = MON_RET_OBJ_ARRAY,
	 .ret_fields = mon_yank_instance},
	/* allow-oob as in QEMU: exec-oob runs them ahead of the migrator's queue. */
	{.name = "migrate-pause",
	 .backend = MON_BACKEND_MIGRATOR,
	 .flags = MON_CMD_ALLOW_OOB,
	 .run = mon_cmd_migrate_pause,
	 .ret = MON_RET_EMPTY},
	{.name = "migrate-recover",
	 .args = mon_args_migrate_recover,
	 .backend = MON_BACKEND_MIGRATOR,
	 .flags = MON_CMD_ALLOW_OOB,
	 .run = mon_cmd_migrate_recover,
	 .ret = MON_RET_EMPTY},
	{.name = "object-add",
	 .args = mon_args_object_add,
	 .backend = MON_BACKEND_NONE,
	 .run = mon_cmd_object_add},
	{.name = "object-del",
	 .args = mon_args_object_del,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_object_del},
	{.name = "x-cleave-migrate-resolve",
	 .args = mon_args_migrate_resolve,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_migrate_resolve},
	{.name = "x-cleave-postcopy-abandon",
	 .args = mon_args_postcopy_abandon,
	 .backend = MON_BACKEND_MIGRATOR,
	 .run = mon_cmd_postcopy_abandon},
};

size_t mon_cmd_count(void)
{
	return sizeof(mon_cmds) / sizeof(mon_cmds[0]);
}

const struct mon_cmd *mon_cmd_at(size_t i)
{
	return i < mon_cmd_count() ? &mon_cmds[i] : NULL;
}

const struct mon_cmd *mon_cmd_find(const char *name)
{
	size_t i;

	for (i = 0; i < mon_cmd_count(); i++)
		if (!strcmp(mon_cmds[i].name, name))
			return &mon_cmds[i];
	return NULL;
}
