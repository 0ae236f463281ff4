// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migration commands of QEMU's qapi/migration.json, forwarded to the
 * migrator (migrator.proto), with QEMU's names and shapes on the QMP side.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mig-limits.h"
#include "monitor/qmp-cmds-internal.h"
#include "proto/migrator-info.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "proto/utf8.h"
#include "proto/vcpu.pb-c.h"

/* Between two migrate_cancel attempts: a lost connection fails at once. */
#define MON_CANCEL_PAUSE_MS 50

const struct mon_arg_spec mon_args_migrate[] = {
	{.name = "uri", .type = MON_ARG_STR},
	/* QEMU's legacy flags: blk and inc refused when true, detach ignored as in QEMU 7.2. */
	{.name = "blk", .type = MON_ARG_BOOL, .optional = true},
	{.name = "inc", .type = MON_ARG_BOOL, .optional = true},
	{.name = "detach", .type = MON_ARG_BOOL, .optional = true},
	/* A paused postcopy source reconnects, to uri (mon_cmd_migrate()). */
	{.name = "resume", .type = MON_ARG_BOOL, .optional = true},
	{.type = MON_ARG_END},
};

const struct mon_arg_spec mon_args_migrate_incoming[] = {
	{.name = "uri", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

/* QEMU 7.2's DirtyRateMeasureMode names (the migrator refuses dirty-ring). */
static const char *const mon_dirty_rate_modes[] = {"page-sampling", "dirty-ring", "dirty-bitmap",
						   NULL};

const struct mon_arg_spec mon_args_calc_dirty_rate[] = {
	{.name = "calc-time", .type = MON_ARG_INT},
	{.name = "sample-pages", .type = MON_ARG_INT, .optional = true},
	{.name = "mode", .type = MON_ARG_ENUM, .optional = true, .values = mon_dirty_rate_modes},
	{.type = MON_ARG_END},
};

/*
 * QEMU 7.2's MigrationCapability names; cleave implements the first three,
 * postcopy-ram and postcopy-blocktime.
 */
static const char *const mon_mig_capability_values[] = {
	"multifd",
	"events",
	"auto-converge",
	"xbzrle",
	"rdma-pin-all",
	"zero-blocks",
	"compress",
	"postcopy-ram",
	"x-colo",
	"release-ram",
	"block",
	"return-path",
	"pause-before-switchover",
	"dirty-bitmaps",
	"postcopy-blocktime",
	"late-block-activate",
	"x-ignore-shared",
	"validate-uuid",
	"background-snapshot",
	"zero-copy-send",
	"postcopy-preempt",
	NULL,
};

static const struct mon_arg_spec mon_args_capability_status[] = {
	{.name = "capability", .type = MON_ARG_ENUM, .values = mon_mig_capability_values},
	{.name = "state", .type = MON_ARG_BOOL},
	{.type = MON_ARG_END},
};

const struct mon_arg_spec mon_args_migrate_set_caps[] = {
	{.name = "capabilities", .type = MON_ARG_OBJ_ARRAY, .fields = mon_args_capability_status},
	{.type = MON_ARG_END},
};

const struct mon_arg_spec mon_args_migrate_set_params[] = {
	{.name = "multifd-channels", .type = MON_ARG_UINT, .optional = true},
	{.name = "max-bandwidth", .type = MON_ARG_UINT, .optional = true},
	{.name = "downtime-limit", .type = MON_ARG_UINT, .optional = true},
	{.name = "x-reconnect-timeout", .type = MON_ARG_UINT, .optional = true},
	/* QEMU's StrOrNull: null or "" turns each off. */
	{.name = "tls-creds", .type = MON_ARG_STR_OR_NULL, .optional = true},
	{.name = "tls-hostname", .type = MON_ARG_STR_OR_NULL, .optional = true},
	{.name = "tls-authz", .type = MON_ARG_STR_OR_NULL, .optional = true},
	{.type = MON_ARG_END},
};

static const char *const mon_resolve_sides[] = {"source", "destination", NULL};

const struct mon_arg_spec mon_args_migrate_resolve[] = {
	{.name = "run-on", .type = MON_ARG_ENUM, .values = mon_resolve_sides},
	{.type = MON_ARG_END},
};

#define MON_URIS "supported: tcp:HOST:PORT, unix:PATH, file:PATH, fd:NAME"

static int mon_uri_check(const char *uri, struct mon_result *res)
{
	/*
	 * The migration wire is a stream socket, TCP or unix (docs/MIGRATION.md:
	 * main + multifd connections); file: is a save into cleave run's
	 * --snapshot-dir (docs/SNAPSHOT.md), whose rules the migrator checks.
	 */
	if (!strncmp(uri, "tcp:", 4) || !strncmp(uri, "unix:", 5) || !strncmp(uri, "file:", 5))
		return 0;
	/*
	 * fd:NAME: the session (monitor/client-fds.c) found the client's fd
	 * NAME and the worker handed it to the migrator before this call.
	 */
	if (!strncmp(uri, "fd:", 3))
		return 0;
	/* exec: would need a process that may exec: none of cleave's sandboxed ones may. */
	if (!strncmp(uri, "exec:", 5))
		return mon_result_error(res, NULL,
					"Parameter 'uri': exec: migration is refused: no cleave "
					"process may run a command (" MON_URIS ")");
	return mon_result_error(
		res, NULL, "Parameter 'uri' expects a valid migration protocol (" MON_URIS ")");
}

void mon_cmd_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	const char *uri = json_string_value(json_object_get(args, "uri"));

	if (json_is_true(json_object_get(args, "blk")) ||
	    json_is_true(json_object_get(args, "inc"))) {
		mon_result_error(res, NULL, "Block migration is not supported by cleave");
		return;
	}
	if (mon_uri_check(uri, res))
		return;
	req.uri = (char *)uri;
	/*
	 * resume: a source that migrate-pause holds in postcopy-paused
	 * reconnects, to @uri from now on; the migrator refuses it in any other
	 * status with QEMU's text.  An "fd:NAME" uri was handed over before this
	 * call as for any migrate: whether a resume can use it is the
	 * migrator's to say.
	 */
	req.resume = json_is_true(json_object_get(args, "resume"));
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req,
			 NULL, NULL, res);
}

void mon_cmd_migrate_incoming(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__IncomingRequest req = CLEAVE__MIGRATOR__INCOMING_REQUEST__INIT;
	const char *uri = json_string_value(json_object_get(args, "uri"));

	if (mon_uri_check(uri, res))
		return;
	req.uri = (char *)uri;
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &req,
			 NULL, NULL, res);
}

static long long mon_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * A migrator that the launcher is restarting does not answer for up to a
 * second or so, and cancelling is what an operator wants most just then:
 * the call is retried (here, on the worker: the loop never waits) until
 * ctx->cancel_retry_ms have passed in all.  A request that reached a dying
 * migrator may have run; a second cancel is harmless.
 */
void mon_cmd_migrate_cancel(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	long long end = mon_now_ms() + ctx->cancel_retry_ms, left;
	int timeout;

	for (;;) {
		left = end - mon_now_ms();
		timeout = left > 0 && left < ctx->timeout_ms ? (int)left : ctx->timeout_ms;
		if (!mon_backend_call_timeout(ctx, MON_BACKEND_MIGRATOR,
					      CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, &req, NULL,
					      NULL, timeout, res))
			return;
		/* Only an unreachable migrator is worth waiting for (not "not configured"). */
		left = end - mon_now_ms();
		if (!res->backend_down || !ctx->rpc[MON_BACKEND_MIGRATOR] || left <= 0)
			return;
		log_debug("migrate_cancel: %s; retrying for %lld ms", res->err_desc, left);
		mon_result_fini(res);
		res->backend_down = false;
		usleep((useconds_t)(left < MON_CANCEL_PAUSE_MS ? left : MON_CANCEL_PAUSE_MS) *
		       1000);
	}
}

void mon_cmd_migrate_resolve(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__ResolveRequest req = CLEAVE__MIGRATOR__RESOLVE_REQUEST__INIT;

	/* Checked against mon_resolve_sides already; the migrator checks it again. */
	req.run_on = (char *)json_string_value(json_object_get(args, "run-on"));
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE, &req,
			 NULL, NULL, res);
}

const struct mon_arg_spec mon_args_postcopy_abandon[] = {
	{.name = "zero-fill", .type = MON_ARG_BOOL, .optional = true},
	{.type = MON_ARG_END},
};

/* cleave's own: a postcopy destination gives up on a source that is gone for good. */
void mon_cmd_postcopy_abandon(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__PostcopyAbandonRequest req =
		CLEAVE__MIGRATOR__POSTCOPY_ABANDON_REQUEST__INIT;

	req.zero_fill = json_is_true(json_object_get(args, "zero-fill"));
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			 CLEAVE__MIGRATOR__METHOD__METHOD_POSTCOPY_ABANDON, &req, NULL, NULL, res);
}

const struct mon_arg_spec mon_args_migrate_recover[] = {
	{.name = "uri", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

/*
 * migrate-pause holds a postcopy migration (either side) in postcopy-paused
 * until migrate-recover (destination) and migrate {resume: true} (source)
 * release it, to a URI the operator may have changed.  Without a pause the
 * migrator reconnects by itself.  The migrator checks the status and
 * answers with QEMU 7.2's texts outside it; both are allow-oob, as in
 * QEMU, and run as exec-oob jobs ahead of the migrator's queue.
 */
void mon_cmd_migrate_pause(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;

	mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE,
			 &req, NULL, NULL, res);
}

/*
 * The URI is the migrator's to check (it binds it): the error of a bad one
 * or of a failed bind is its text.
 */
void mon_cmd_migrate_recover(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__MigrateRecoverRequest req =
		CLEAVE__MIGRATOR__MIGRATE_RECOVER_REQUEST__INIT;

	req.uri = (char *)json_string_value(json_object_get(args, "uri"));
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			 CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_RECOVER, &req, NULL, NULL, res);
}

/* The migrator answers with QEMU 7.2's two errors (no capability, no migration). */
void mon_cmd_migrate_start_postcopy(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;

	mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY,
			 &req, NULL, NULL, res);
}

/* QEMU 7.2's YankInstanceType; cleave has only the migration instance. */
static const char *const mon_yank_types[] = {"block-node", "chardev", "migration", NULL};

static const struct mon_arg_spec mon_args_yank_block_node[] = {
	{.name = "node-name", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_yank_chardev[] = {
	{.name = "id", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

static const struct mon_arg_variant mon_yank_variants[] = {
	{.value = "block-node", .members = mon_args_yank_block_node},
	{.value = "chardev", .members = mon_args_yank_chardev},
	{.value = "migration"},
	{.value = NULL},
};

/* QEMU's YankInstance: a flat union on "type"; also query-yank's element. */
const struct mon_arg_spec mon_yank_instance[] = {
	{.name = "type",
	 .type = MON_ARG_ENUM,
	 .values = mon_yank_types,
	 .variants = mon_yank_variants},
	{.type = MON_ARG_END},
};

const struct mon_arg_spec mon_args_yank[] = {
	{.name = "instances", .type = MON_ARG_OBJ_ARRAY, .fields = mon_yank_instance},
	{.type = MON_ARG_END},
};

#define MON_ERR_DEVICE_NOT_FOUND "DeviceNotFound"

/*
 * As QEMU's qmp_yank(): every instance is looked up before any is yanked.
 * cleave has no block node and no yankable chardev (QEMU's QMP socket
 * chardevs are listed only as they are: cleave's cannot be yanked), so
 * only "migration" is found, while a migration runs.
 */
void mon_cmd_yank(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	json_t *list = json_object_get(args, "instances"), *inst;
	bool migration = false;
	size_t i;

	json_array_foreach(list, i, inst)
	{
		if (strcmp(json_string_value(json_object_get(inst, "type")), "migration")) {
			mon_result_error(res, MON_ERR_DEVICE_NOT_FOUND, "Instance not found");
			return;
		}
		migration = true;
	}
	if (!migration) {
		res->ret = json_object();
		return;
	}
	/* The migrator says "Instance not found" when no migration runs. */
	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_YANK, &req,
			     NULL, NULL, res) == -ENOENT &&
	    !res->backend_down)
		res->err_class = MON_ERR_DEVICE_NOT_FOUND;
}

void mon_cmd_query_yank(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__YankInfo *y = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_YANK,
			     &req, &cleave__migrator__yank_info__descriptor, (void **)&y, res))
		return;
	res->ret = y->migration ? json_pack("[{s:s}]", "type", "migration") : json_array();
	rpc_msg_free(&y->base);
	if (!res->ret)
		mon_result_error(res, NULL, "out of memory");
}

/* QEMU's MigrationStats; postcopy-requests is a counter of the record (MIG_COUNTERS). */
static json_t *mon_ram_stats_json(const Cleave__Migrator__MigrationInfo *mi)
{
	const Cleave__Migrator__RamStats *r = mi->ram;

	return json_pack(
		"{s:o,s:o,s:o,s:o,s:i,s:o,s:o,s:o,s:f,s:o,s:o,s:o,s:o}", "transferred",
		mon_json_u64(r->transferred), "remaining", mon_json_u64(r->remaining), "total",
		mon_json_u64(r->total), "duplicate", mon_json_u64(r->duplicate), "skipped", 0,
		"normal", mon_json_u64(r->normal), "normal-bytes", mon_json_u64(r->normal_bytes),
		"dirty-pages-rate", mon_json_u64(r->dirty_pages_rate), "mbps", r->mbps,
		"dirty-sync-count", mon_json_u64(r->dirty_sync_count), "postcopy-requests",
		mon_json_u64(mig_info_counter(mi, "postcopy_requests")), "page-size",
		mon_json_u64(r->page_size), "multifd-bytes", mon_json_u64(r->multifd_bytes));
}

/*
 * cleave's own counters in query-migrate, x- prefixed as QEMU does for
 * unstable members: each is a counter of the migrator's session record
 * (migrator/record.h, MIG_COUNTERS) by its name there, which MigrationInfo
 * carries with its value.  Showing a new counter is a row here.
 */
static const struct {
	const char *counter; /* the name in MIG_COUNTERS */
	const char *member;  /* the query-migrate member */
} mon_x_counters[] = {
	{"resumes", "x-cleave-resumes"},
	{"resent_bytes", "x-cleave-resent-bytes"},
	{"resume_time_ms", "x-cleave-resume-time"},
	{"inflight_bytes", "x-cleave-inflight-bytes"},
	{"postcopy_pulled", "x-cleave-postcopy-pulled"},
	{"postcopy_pushed", "x-cleave-postcopy-pushed"},
	{"postcopy_wait_us", "x-cleave-postcopy-wait-us"},
};

/*
 * A migrator's text (status, error) as a JSON string.  protobuf-c does not
 * check strings, and jansson refuses one that is not UTF-8, which used to
 * drop the member (or, for the status, the whole answer).  Bad bytes are
 * replaced by '?', as the monitor does for events and error descs
 * (proto/utf8.h), rather than escaped: QMP strings are Unicode text, a
 * "\xb1" spelling would be a convention no client knows, and a replaced
 * status still differs from every status QEMU defines.  NULL: no memory.
 */
static json_t *mon_migrator_text(const char *s)
{
	json_t *j = json_string(s);
	char *valid;

	if (j)
		return j;
	valid = malloc(strlen(s) + 1);
	if (!valid)
		return NULL;
	utf8_copy_valid(valid, strlen(s) + 1, s);
	j = json_string(valid);
	free(valid);
	return j;
}

/*
 * A postcopy destination's missing pages: {"pages": N, "runs": [{"gpa",
 * "size"}, ...]}, the first MIG_INFO_MISSING_RUNS runs by address.
 */
static json_t *mon_missing_json(const Cleave__Migrator__MigrationInfo *mi)
{
	json_t *runs = json_array();

	for (size_t i = 0; runs && i < mi->n_postcopy_missing_runs && i < MIG_INFO_MISSING_RUNS;
	     i++) {
		const Cleave__Migrator__PageRun *r = mi->postcopy_missing_runs[i];

		json_array_append_new(runs, json_pack("{s:o,s:o}", "gpa", mon_json_u64(r->gpa),
						      "size", mon_json_u64(r->size)));
	}
	return json_pack("{s:o,s:o}", "pages", mon_json_u64(mi->postcopy_missing), "runs", runs);
}

/*
 * MigrationInfo as QEMU 7.2 shapes it; {} when nothing ever started.  The
 * status is passed through as the migrator names it, cleave's own
 * x-switchover-unknown included.
 */
static json_t *mon_migration_info_json(const Cleave__Migrator__MigrationInfo *mi)
{
	json_t *o;

	if (!mi->status || !mi->status[0])
		return json_object();
	o = json_pack("{s:o}", "status", mon_migrator_text(mi->status));
	if (!o)
		return NULL;
	if (strcmp(mi->status, "setup") != 0) {
		if (mi->ram)
			json_object_set_new(o, "ram", mon_ram_stats_json(mi));
		json_object_set_new(o, "total-time", mon_json_u64(mi->total_time));
	}
	if (mi->has_downtime)
		json_object_set_new(o, "downtime", mon_json_u64(mi->downtime));
	if (mi->has_expected_downtime)
		json_object_set_new(o, "expected-downtime", mon_json_u64(mi->expected_downtime));
	json_object_set_new(o, "setup-time", mon_json_u64(mi->setup_time));
	if (mi->error_desc && mi->error_desc[0])
		json_object_set_new(o, "error-desc", mon_migrator_text(mi->error_desc));
	json_object_set_new(o, "x-cleave-restarts", json_integer(mi->restarts));
	for (size_t i = 0; i < sizeof(mon_x_counters) / sizeof(mon_x_counters[0]); i++)
		json_object_set_new(o, mon_x_counters[i].member,
				    mon_json_u64(mig_info_counter(mi, mon_x_counters[i].counter)));
	if (mi->postcopy_missing)
		json_object_set_new(o, "x-cleave-postcopy-missing", mon_missing_json(mi));
	return o;
}

/*
 * QEMU's postcopy-blocktime and postcopy-vcpu-blocktime: shown by a
 * destination with the capability on, once postcopy started, as QEMU does.
 * cleave-vcpu measures them (its fault service); it leaves them out
 * (measured false) when it did not, e.g. after a migration that completed
 * in precopy.  Its failure is logged and only leaves them out.
 */
static bool mon_blocktime_wanted(const Cleave__Migrator__MigrationInfo *mi)
{
	return mi->destination && mi->postcopy_blocktime &&
	       (!strcmp(mi->status, "postcopy-active") || !strcmp(mi->status, "postcopy-paused") ||
		!strcmp(mi->status, "completed"));
}

static void mon_blocktime_add(struct mon_ctx *ctx, json_t *o)
{
	Cleave__Vcpu__Empty req = CLEAVE__VCPU__EMPTY__INIT;
	Cleave__Vcpu__PostcopyBlocktime *bt = NULL;
	struct mon_result vres = {0};
	json_t *vcpus;

	if (mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME,
			     &req, &cleave__vcpu__postcopy_blocktime__descriptor, (void **)&bt,
			     &vres)) {
		log_warn("query-migrate: postcopy blocktime left out: %s", vres.err_desc);
		mon_result_fini(&vres);
		return;
	}
	vcpus = json_array();
	if (bt->measured && vcpus) {
		for (size_t i = 0; i < bt->n_vcpu_ms; i++)
			json_array_append_new(vcpus, json_integer(bt->vcpu_ms[i]));
		json_object_set_new(o, "postcopy-blocktime", json_integer(bt->total_ms));
		json_object_set_new(o, "postcopy-vcpu-blocktime", vcpus);
	} else {
		json_decref(vcpus);
	}
	rpc_msg_free(&bt->base);
}

void mon_cmd_query_migrate(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__MigrationInfo *mi = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY,
			     &req, &cleave__migrator__migration_info__descriptor, (void **)&mi,
			     res))
		return;
	res->ret = mon_migration_info_json(mi);
	if (res->ret && mon_blocktime_wanted(mi))
		mon_blocktime_add(ctx, res->ret);
	rpc_msg_free(&mi->base);
}

/* The measurement runs in the migrator, which owns the dirty log (migrator/dirtyrate.c). */
void mon_cmd_calc_dirty_rate(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__CalcDirtyRateRequest req =
		CLEAVE__MIGRATOR__CALC_DIRTY_RATE_REQUEST__INIT;
	json_t *samples = json_object_get(args, "sample-pages");

	req.calc_time = json_integer_value(json_object_get(args, "calc-time"));
	req.has_sample_pages = samples != NULL;
	req.sample_pages = json_integer_value(samples);
	req.mode = (char *)(json_string_value(json_object_get(args, "mode")) ?: "");
	mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			 CLEAVE__MIGRATOR__METHOD__METHOD_CALC_DIRTY_RATE, &req, NULL, NULL, res);
}

/* QEMU 7.2's DirtyRateInfo, in its order; dirty-rate once measured. */
void mon_cmd_query_dirty_rate(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__DirtyRateInfo *d = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_DIRTY_RATE, &req,
			     &cleave__migrator__dirty_rate_info__descriptor, (void **)&d, res))
		return;
	res->ret = json_object();
	json_object_set_new(res->ret, "status", mon_migrator_text(d->status));
	json_object_set_new(res->ret, "sample-pages", json_integer((json_int_t)d->sample_pages));
	if (d->has_dirty_rate)
		json_object_set_new(res->ret, "dirty-rate", json_integer(d->dirty_rate));
	json_object_set_new(res->ret, "mode", mon_migrator_text(d->mode));
	json_object_set_new(res->ret, "start-time", json_integer(d->start_time));
	json_object_set_new(res->ret, "calc-time", json_integer(d->calc_time));
	rpc_msg_free(&d->base);
}

void mon_cmd_migrate_set_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Capabilities req = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	json_t *caps = json_object_get(args, "capabilities"), *c;
	size_t i;

	json_array_foreach(caps, i, c)
	{
		const char *name = json_string_value(json_object_get(c, "capability"));
		bool on = json_is_true(json_object_get(c, "state"));

		if (!strcmp(name, "multifd")) {
			req.has_multifd = true;
			req.multifd = on;
		} else if (!strcmp(name, "events")) {
			req.has_events = true;
			req.events = on;
		} else if (!strcmp(name, "auto-converge")) {
			req.has_auto_converge = true;
			req.auto_converge = on;
		} else if (!strcmp(name, "postcopy-ram")) {
			/* With multifd too, unlike QEMU: postcopy uses every multifd channel. */
			req.has_postcopy_ram = true;
			req.postcopy_ram = on;
		} else if (!strcmp(name, "postcopy-blocktime")) {
			req.has_postcopy_blocktime = true;
			req.postcopy_blocktime = on;
		} else if (on) {
			/* Turning an unimplemented capability off is a no-op, on is refused. */
			mon_result_error(res, NULL, "Migration capability '%s' is not supported",
					 name);
			return;
		}
	}
	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, &req, NULL, NULL,
			     res))
		return;
	if (req.has_events)
		atomic_store(&ctx->migration_events, req.events);
}

static Cleave__Migrator__Capabilities *mon_caps_query(struct mon_ctx *ctx, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	void *caps = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_CAPABILITIES, &req,
			     &cleave__migrator__capabilities__descriptor, &caps, res))
		return NULL;
	return caps;
}

void mon_cmd_query_migrate_caps(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Capabilities *caps = mon_caps_query(ctx, res);

	if (!caps)
		return;
	atomic_store(&ctx->migration_events, caps->events);
	res->ret =
		json_pack("[{s:s,s:b},{s:s,s:b},{s:s,s:b},{s:s,s:b},{s:s,s:b}]", "capability",
			  "multifd", "state", caps->multifd, "capability", "events", "state",
			  caps->events, "capability", "auto-converge", "state", caps->auto_converge,
			  "capability", "postcopy-ram", "state", caps->postcopy_ram, "capability",
			  "postcopy-blocktime", "state", caps->postcopy_blocktime);
	rpc_msg_free(&caps->base);
}

void mon_cmd_migration_caps_refresh(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Capabilities *caps = mon_caps_query(ctx, res);
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__Parameters *p = NULL;

	if (!caps)
		return;
	atomic_store(&ctx->migration_events, caps->events);
	rpc_msg_free(&caps->base);
	/* The objects a previous monitor held and the migration parameters still use. */
	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, &req,
			     &cleave__migrator__parameters__descriptor, (void **)&p, res))
		return;
	mon_objects_recover(p);
	rpc_msg_free(&p->base);
}

/* Fills @req from checked @args; range errors with QEMU's migrate_params_check() wording. */
static int mon_params_from_args(json_t *args, Cleave__Migrator__Parameters *req,
				struct mon_result *res)
{
	char err[128];
	json_t *v;

	v = json_object_get(args, "multifd-channels");
	if (v) {
		if (mig_check_channels(json_integer_value(v), err, sizeof(err)))
			return mon_result_error(res, NULL, "%s", err);
		req->has_multifd_channels = true;
		req->multifd_channels = (uint32_t)json_integer_value(v);
	}
	v = json_object_get(args, "downtime-limit");
	if (v) {
		if (mig_check_downtime((uint64_t)json_integer_value(v), err, sizeof(err)))
			return mon_result_error(res, NULL, "%s", err);
		req->has_downtime_limit = true;
		req->downtime_limit = (uint64_t)json_integer_value(v);
	}
	v = json_object_get(args, "max-bandwidth");
	if (v) {
		req->has_max_bandwidth = true;
		req->max_bandwidth = (uint64_t)json_integer_value(v);
	}
	/* Any non-negative count of ms (the schema checked the sign); 0: fail at once. */
	v = json_object_get(args, "x-reconnect-timeout");
	if (v) {
		req->has_reconnect_timeout = true;
		req->reconnect_timeout = (uint64_t)json_integer_value(v);
	}
	return 0;
}

/*
 * One TLS string parameter: *has and *out ("" for null), checked against
 * the migrator's field size.
 */
static int mon_tls_param(json_t *args, const char *name, size_t size, protobuf_c_boolean *has,
			 char **out, struct mon_result *res)
{
	json_t *v = json_object_get(args, name);
	char err[128];

	if (!v)
		return 0;
	*has = true;
	*out = (char *)(json_is_string(v) ? json_string_value(v) : "");
	if (mig_check_tls_string(name, *out, size, err, sizeof(err)))
		return mon_result_error(res, NULL, "%s", err);
	return 0;
}

/*
 * tls-creds and tls-authz name objects of this monitor (qmp-objects.c):
 * what the migrator needs of them goes with the ids, as QEMU resolves them
 * (its errors, given here rather than at migrate time).  "" and
 * MIG_TLS_RUN_ID (cleave run's credentials) need no object.
 */
static int mon_tls_params_from_args(json_t *args, Cleave__Migrator__Parameters *req,
				    struct mon_tls_objects *objs, struct mon_result *res)
{
	if (mon_tls_param(args, "tls-creds", MIG_TLS_ID_LEN, &req->has_tls_creds, &req->tls_creds,
			  res) ||
	    mon_tls_param(args, "tls-hostname", MIG_TLS_HOSTNAME_LEN, &req->has_tls_hostname,
			  &req->tls_hostname, res) ||
	    mon_tls_param(args, "tls-authz", MIG_TLS_ID_LEN, &req->has_tls_authz, &req->tls_authz,
			  res))
		return -EINVAL;
	if (req->has_tls_creds && req->tls_creds[0] && strcmp(req->tls_creds, MIG_TLS_RUN_ID)) {
		if (mon_tls_objects_creds(objs, req->tls_creds, res))
			return -EINVAL;
		req->tls_creds_object = &objs->creds;
	}
	if (req->has_tls_authz && req->tls_authz[0] && strcmp(req->tls_authz, MIG_TLS_RUN_ID)) {
		if (mon_tls_objects_authz(objs, req->tls_authz, res))
			return -EINVAL;
		req->tls_authz_object = &objs->authz;
	}
	return 0;
}

void mon_cmd_migrate_set_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Parameters req = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	struct mon_tls_objects *objs = calloc(1, sizeof(*objs));

	if (!objs) {
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	if (!mon_params_from_args(args, &req, res) &&
	    !mon_tls_params_from_args(args, &req, objs, res))
		mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
				 CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &req, NULL, NULL,
				 res);
	mon_tls_objects_fini(objs);
	free(objs);
}

void mon_cmd_query_migrate_params(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__Parameters *p = NULL;

	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, &req,
			     &cleave__migrator__parameters__descriptor, (void **)&p, res))
		return;
	/* The TLS members as QEMU 7.2 returns them: always, "" when unset. */
	res->ret =
		json_pack("{s:i,s:o,s:o,s:o,s:o,s:o,s:o}", "multifd-channels",
			  (int)p->multifd_channels, "max-bandwidth", mon_json_u64(p->max_bandwidth),
			  "downtime-limit", mon_json_u64(p->downtime_limit), "x-reconnect-timeout",
			  mon_json_u64(p->reconnect_timeout), "tls-creds",
			  mon_migrator_text(p->tls_creds ? p->tls_creds : ""), "tls-hostname",
			  mon_migrator_text(p->tls_hostname ? p->tls_hostname : ""), "tls-authz",
			  mon_migrator_text(p->tls_authz ? p->tls_authz : ""));
	rpc_msg_free(&p->base);
}
