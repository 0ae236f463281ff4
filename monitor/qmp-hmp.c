// SPDX-License-Identifier: GPL-2.0-only
/*
 * human-monitor-command: the HMP command lines that map onto QMP commands
 * cleave has, answered with the text QEMU 7.2's HMP prints for them
 * (monitor/hmp-cmds.c, hmp-commands.hx, hmp-commands-info.hx).
 *
 * An HMP command runs the QMP command's own function, on that command's
 * worker and with its flags (mon_hmp_route() at parse time), so stop and
 * cont keep their STOP / RESUME ordering and quit its shutdown sequence;
 * only the return value is then printed as text.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-cmds-internal.h"
#include "proto/rpc.h"
#include "proto/utf8.h"
#include "proto/vcpu.pb-c.h"

/* QEMU's words for a cpu-index no vCPU has (QERR_INVALID_PARAMETER_VALUE). */
#define MON_HMP_BAD_CPU "Parameter 'cpu-index' expects a CPU number"

struct mon_hmp_cmd {
	const char *name;   /* QEMU's, aliases after '|' ("stop|s") */
	const char *params; /* QEMU's, for help */
	const char *help;   /* QEMU's */
	const char *qmp;    /* the QMP command it runs; NULL: none (help, bare info) */
	/* Its one string parameter (QEMU's "NAME:s"), passed as this QMP argument; NULL: none. */
	const char *arg;
	/* Prints the QMP command's return value as QEMU does; NULL: prints nothing. */
	void (*print)(FILE *out, json_t *ret);
	const struct mon_hmp_cmd *sub; /* info's subcommands */
};

static uint64_t mon_hmp_u64(json_t *obj, const char *key)
{
	json_int_t v = json_integer_value(json_object_get(obj, key));

	return v < 0 ? 0 : (uint64_t)v;
}

static const char *mon_hmp_str(json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));

	return s ? s : "";
}

static void mon_hmp_print_status(FILE *out, json_t *ret)
{
	bool running = json_is_true(json_object_get(ret, "running"));
	const char *status = mon_hmp_str(ret, "status");

	fprintf(out, "VM status: %s%s", running ? "running" : "paused",
		json_is_true(json_object_get(ret, "singlestep")) ? " (single step mode)" : "");
	if (!running && strcmp(status, "paused") != 0)
		fprintf(out, " (%s)", status);
	fprintf(out, "\n");
}

static void mon_hmp_print_version(FILE *out, json_t *ret)
{
	json_t *q = json_object_get(ret, "qemu");

	/* QEMU's format: the package follows the micro version directly. */
	fprintf(out, "%" PRIu64 ".%" PRIu64 ".%" PRIu64 "%s\n", mon_hmp_u64(q, "major"),
		mon_hmp_u64(q, "minor"), mon_hmp_u64(q, "micro"), mon_hmp_str(ret, "package"));
}

static void mon_hmp_print_name(FILE *out, json_t *ret)
{
	if (json_object_get(ret, "name"))
		fprintf(out, "%s\n", mon_hmp_str(ret, "name"));
}

static void mon_hmp_print_uuid(FILE *out, json_t *ret)
{
	fprintf(out, "%s\n", mon_hmp_str(ret, "UUID"));
}

static void mon_hmp_print_kvm(FILE *out, json_t *ret)
{
	fprintf(out, "kvm support: ");
	if (json_is_true(json_object_get(ret, "present")))
		fprintf(out, "%s\n",
			json_is_true(json_object_get(ret, "enabled")) ? "enabled" : "disabled");
	else
		fprintf(out, "not compiled\n");
}

static void mon_hmp_print_chardev(FILE *out, json_t *ret)
{
	size_t i;
	json_t *c;

	json_array_foreach(ret, i, c) fprintf(out, "%s: filename=%s\n", mon_hmp_str(c, "label"),
					      mon_hmp_str(c, "filename"));
}

/*
 * QEMU's hmp_info_migrate() without its "globals:" block: those are QEMU's
 * migration stream properties (store-global-state, ...), which cleave's
 * stream does not have.
 */
/* QEMU 7.2's text, its "(ms)" after a start time in seconds included. */
static void mon_hmp_print_dirty_rate(FILE *out, json_t *ret)
{
	fprintf(out, "Status: %s\n", mon_hmp_str(ret, "status"));
	fprintf(out, "Start Time: %" PRIu64 " (ms)\n", mon_hmp_u64(ret, "start-time"));
	fprintf(out, "Sample Pages: %" PRIu64 " (per GB)\n", mon_hmp_u64(ret, "sample-pages"));
	fprintf(out, "Period: %" PRIu64 " (sec)\n", mon_hmp_u64(ret, "calc-time"));
	fprintf(out, "Mode: %s\n", mon_hmp_str(ret, "mode"));
	if (json_object_get(ret, "dirty-rate"))
		fprintf(out, "Dirty rate: %" PRIu64 " (MB/s)\n", mon_hmp_u64(ret, "dirty-rate"));
	else
		fprintf(out, "Dirty rate: (not ready)\n");
}

/*
 * A list of integers as QEMU's string output visitor writes it: comma
 * separated, a run of consecutive values as "first-last".
 */
static void mon_hmp_print_u32_list(FILE *out, const char *label, json_t *list)
{
	size_t n = json_array_size(list);

	fputs(label, out);
	for (size_t i = 0; i < n; i++) {
		json_int_t first = json_integer_value(json_array_get(list, i)), last = first;

		if (i)
			fputc(',', out);
		while (i + 1 < n && json_integer_value(json_array_get(list, i + 1)) == last + 1)
			last = json_integer_value(json_array_get(list, ++i));
		if (last == first)
			fprintf(out, "%lld", (long long)first);
		else
			fprintf(out, "%lld-%lld", (long long)first, (long long)last);
	}
	fputc('\n', out);
}

static void mon_hmp_print_migrate(FILE *out, json_t *ret)
{
	json_t *ram = json_object_get(ret, "ram");
	const char *status = json_string_value(json_object_get(ret, "status"));

	if (status) {
		fprintf(out, "Migration status: %s", status);
		if (!strcmp(status, "failed") && json_object_get(ret, "error-desc"))
			fprintf(out, " (%s)\n", mon_hmp_str(ret, "error-desc"));
		else
			fprintf(out, "\n");
		fprintf(out, "total time: %" PRIu64 " ms\n", mon_hmp_u64(ret, "total-time"));
		if (json_object_get(ret, "expected-downtime"))
			fprintf(out, "expected downtime: %" PRIu64 " ms\n",
				mon_hmp_u64(ret, "expected-downtime"));
		if (json_object_get(ret, "downtime"))
			fprintf(out, "downtime: %" PRIu64 " ms\n", mon_hmp_u64(ret, "downtime"));
		if (json_object_get(ret, "setup-time"))
			fprintf(out, "setup: %" PRIu64 " ms\n", mon_hmp_u64(ret, "setup-time"));
	}
	if (!ram)
		return;
	fprintf(out, "transferred ram: %" PRIu64 " kbytes\n",
		mon_hmp_u64(ram, "transferred") >> 10);
	fprintf(out, "throughput: %0.2f mbps\n", json_number_value(json_object_get(ram, "mbps")));
	fprintf(out, "remaining ram: %" PRIu64 " kbytes\n", mon_hmp_u64(ram, "remaining") >> 10);
	fprintf(out, "total ram: %" PRIu64 " kbytes\n", mon_hmp_u64(ram, "total") >> 10);
	fprintf(out, "duplicate: %" PRIu64 " pages\n", mon_hmp_u64(ram, "duplicate"));
	fprintf(out, "skipped: %" PRIu64 " pages\n", mon_hmp_u64(ram, "skipped"));
	fprintf(out, "normal: %" PRIu64 " pages\n", mon_hmp_u64(ram, "normal"));
	fprintf(out, "normal bytes: %" PRIu64 " kbytes\n", mon_hmp_u64(ram, "normal-bytes") >> 10);
	fprintf(out, "dirty sync count: %" PRIu64 "\n", mon_hmp_u64(ram, "dirty-sync-count"));
	fprintf(out, "page size: %" PRIu64 " kbytes\n", mon_hmp_u64(ram, "page-size") >> 10);
	fprintf(out, "multifd bytes: %" PRIu64 " kbytes\n",
		mon_hmp_u64(ram, "multifd-bytes") >> 10);
	fprintf(out, "pages-per-second: %" PRIu64 "\n", mon_hmp_u64(ram, "pages-per-second"));
	if (mon_hmp_u64(ram, "dirty-pages-rate"))
		fprintf(out, "dirty pages rate: %" PRIu64 " pages\n",
			mon_hmp_u64(ram, "dirty-pages-rate"));
	if (mon_hmp_u64(ram, "postcopy-requests"))
		fprintf(out, "postcopy request count: %" PRIu64 "\n",
			mon_hmp_u64(ram, "postcopy-requests"));
	if (json_object_get(ret, "postcopy-blocktime"))
		fprintf(out, "postcopy blocktime: %" PRIu64 "\n",
			mon_hmp_u64(ret, "postcopy-blocktime"));
	if (json_object_get(ret, "postcopy-vcpu-blocktime"))
		mon_hmp_print_u32_list(out, "postcopy vcpu blocktime: ",
				       json_object_get(ret, "postcopy-vcpu-blocktime"));
}

static void mon_hmp_print_migrate_caps(FILE *out, json_t *ret)
{
	size_t i;
	json_t *c;

	json_array_foreach(ret, i, c)
		fprintf(out, "%s: %s\n", mon_hmp_str(c, "capability"),
			json_is_true(json_object_get(c, "state")) ? "on" : "off");
}

/* QEMU's order and units for the parameters cleave has, then cleave's own. */
static void mon_hmp_print_migrate_params(FILE *out, json_t *ret)
{
	/* QEMU prints the TLS ids quoted, tls-authz after the multifd ones. */
	if (json_object_get(ret, "tls-creds"))
		fprintf(out, "tls-creds: '%s'\n", mon_hmp_str(ret, "tls-creds"));
	if (json_object_get(ret, "tls-hostname"))
		fprintf(out, "tls-hostname: '%s'\n", mon_hmp_str(ret, "tls-hostname"));
	if (json_object_get(ret, "max-bandwidth"))
		fprintf(out, "max-bandwidth: %" PRIu64 " bytes/second\n",
			mon_hmp_u64(ret, "max-bandwidth"));
	if (json_object_get(ret, "downtime-limit"))
		fprintf(out, "downtime-limit: %" PRIu64 " ms\n",
			mon_hmp_u64(ret, "downtime-limit"));
	if (json_object_get(ret, "multifd-channels"))
		fprintf(out, "multifd-channels: %" PRIu64 "\n",
			mon_hmp_u64(ret, "multifd-channels"));
	if (json_object_get(ret, "tls-authz"))
		fprintf(out, "tls-authz: '%s'\n", mon_hmp_str(ret, "tls-authz"));
	if (json_object_get(ret, "x-reconnect-timeout"))
		fprintf(out, "x-reconnect-timeout: %" PRIu64 " ms\n",
			mon_hmp_u64(ret, "x-reconnect-timeout"));
}

/* Sorted by name, as QEMU sorts its tables at start (help lists them in this order). */
#define MON_HMP_INFO(n, h, q, p)                                                                   \
	{                                                                                          \
		.name = n, .params = "", .help = h, .qmp = q, .print = p                           \
	}
static const struct mon_hmp_cmd mon_hmp_info_cmds[] = {
	MON_HMP_INFO("chardev", "show the character devices", "query-chardev",
		     mon_hmp_print_chardev),
	MON_HMP_INFO("dirty_rate", "show dirty rate information", "query-dirty-rate",
		     mon_hmp_print_dirty_rate),
	MON_HMP_INFO("kvm", "show KVM information", "query-kvm", mon_hmp_print_kvm),
	MON_HMP_INFO("migrate", "show migration status", "query-migrate", mon_hmp_print_migrate),
	MON_HMP_INFO("migrate_capabilities", "show current migration capabilities",
		     "query-migrate-capabilities", mon_hmp_print_migrate_caps),
	MON_HMP_INFO("migrate_parameters", "show current migration parameters",
		     "query-migrate-parameters", mon_hmp_print_migrate_params),
	MON_HMP_INFO("name", "show the current VM name", "query-name", mon_hmp_print_name),
	MON_HMP_INFO("status", "show the current VM status (running|paused)", "query-status",
		     mon_hmp_print_status),
	MON_HMP_INFO("uuid", "show the current VM UUID", "query-uuid", mon_hmp_print_uuid),
	MON_HMP_INFO("version", "show the version of QEMU", "query-version", mon_hmp_print_version),
	{.name = NULL},
};

/* Commands that print nothing when they succeed. */
#define MON_HMP_DO(n, h, q)                                                                        \
	{                                                                                          \
		.name = n, .params = "", .help = h, .qmp = q                                       \
	}
static const struct mon_hmp_cmd mon_hmp_cmds[] = {
	MON_HMP_DO("cont|c", "resume emulation", "cont"),
	{.name = "help|?", .params = "[cmd]", .help = "show the help"},
	{.name = "info",
	 .params = "[subcommand]",
	 .help = "show various information about the system state",
	 .sub = mon_hmp_info_cmds},
	MON_HMP_DO("migrate_cancel", "cancel the current VM migration", "migrate_cancel"),
	MON_HMP_DO("migrate_pause", "Pause an ongoing migration (postcopy-only)", "migrate-pause"),
	{.name = "migrate_recover",
	 .params = "uri",
	 .help = "Continue a paused incoming postcopy migration",
	 .qmp = "migrate-recover",
	 .arg = "uri"},
	MON_HMP_DO("migrate_start_postcopy",
		   "Followup to a migration command to switch the migration to postcopy mode. The "
		   "postcopy-ram capability must be set on both source and destination before the "
		   "original migration command .",
		   "migrate-start-postcopy"),
	MON_HMP_DO("quit|q", "quit the emulator", "quit"),
	MON_HMP_DO("stop|s", "stop emulation", "stop"),
	MON_HMP_DO("system_reset", "reset the system", "system_reset"),
	{.name = NULL},
};

static bool mon_hmp_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Does @word (@len bytes) name @cmd or one of its '|' aliases? */
static bool mon_hmp_is(const struct mon_hmp_cmd *cmd, const char *word, size_t len)
{
	const char *p = cmd->name, *bar;
	size_t n;

	for (;;) {
		bar = strchr(p, '|');
		n = bar ? (size_t)(bar - p) : strlen(p);
		if (n == len && !memcmp(p, word, len))
			return true;
		if (!bar)
			return false;
		p = bar + 1;
	}
}

/* A command line parsed as QEMU's monitor_parse_command() does. */
struct mon_hmp_line {
	const struct mon_hmp_cmd *cmd; /* NULL: empty line or unknown command */
	int unknown_len;	       /* unknown: bytes of the line QEMU quotes; else 0 */
	const char *rest;	       /* after the command's name(s) and spaces */
};

static void mon_hmp_parse(const char *line, struct mon_hmp_line *pl)
{
	const struct mon_hmp_cmd *table = mon_hmp_cmds, *c;
	const char *p = line, *word;

	memset(pl, 0, sizeof(*pl));
	for (;;) {
		while (mon_hmp_space(*p))
			p++;
		if (!*p)
			return; /* empty: QEMU does nothing */
		word = p;
		while (*p && *p != '/' && !mon_hmp_space(*p))
			p++;
		for (c = table; c->name && !mon_hmp_is(c, word, (size_t)(p - word)); c++)
			;
		if (!c->name) {
			pl->cmd = NULL;
			pl->unknown_len = (int)(p - line);
			return;
		}
		while (mon_hmp_space(*p))
			p++;
		pl->cmd = c;
		pl->rest = p;
		if (!c->sub || !*p)
			return;
		table = c->sub;
	}
}

void mon_hmp_route(const struct mon_cmd *hmp, json_t *args, struct mon_cmd *out)
{
	const char *line = json_string_value(json_object_get(args, "command-line"));
	const struct mon_cmd *qmp = NULL;
	struct mon_hmp_line pl;

	*out = *hmp;
	mon_hmp_parse(line, &pl);
	/* Extra words make it an error text without running anything (checked later). */
	if (pl.cmd && pl.cmd->qmp && (!*pl.rest || pl.cmd->arg))
		qmp = mon_cmd_find(pl.cmd->qmp);
	out->backend = qmp ? qmp->backend : MON_BACKEND_NONE;
	out->flags = qmp ? qmp->flags & MON_CMD_QUIT : 0;
	/* Checking a cpu-index asks vcpu-proc: never on the loop (quit does not check). */
	if (json_object_get(args, "cpu-index") && out->backend == MON_BACKEND_NONE &&
	    !(out->flags & MON_CMD_QUIT))
		out->backend = MON_BACKEND_VCPU;
}

/*
 * QEMU refuses a cpu-index that names no vCPU.  The check runs on the
 * worker of the command (route above), which may be the migrator's: a
 * dead vcpu-proc then fails this command, not the migrator's queue.
 */
static int mon_hmp_check_cpu(struct mon_ctx *ctx, json_int_t idx, enum mon_backend on,
			     struct mon_result *res)
{
	Cleave__Vcpu__StatusRequest req = CLEAVE__VCPU__STATUS_REQUEST__INIT;
	Cleave__Vcpu__StatusReply *st = NULL;
	bool found = false;
	size_t i;

	if (idx < 0)
		return mon_result_error(res, NULL, MON_HMP_BAD_CPU);
	if (mon_backend_call(ctx, MON_BACKEND_VCPU, CLEAVE__VCPU__METHOD__METHOD_STATUS, &req,
			     &cleave__vcpu__status_reply__descriptor, (void **)&st, res)) {
		if (on != MON_BACKEND_VCPU)
			res->backend_down = false;
		return -EIO;
	}
	for (i = 0; i < st->n_vcpus; i++)
		found |= st->vcpus[i]->index == (uint64_t)idx;
	rpc_msg_free(&st->base);
	return found ? 0 : mon_result_error(res, NULL, MON_HMP_BAD_CPU);
}

static void mon_hmp_help_one(FILE *out, const struct mon_hmp_cmd *c, const char *prefix)
{
	fprintf(out, "%s%s %s -- %s\n", prefix, c->name, c->params, c->help);
}

/* QEMU's help_cmd(): the whole table, or what the words of @args name. */
static void mon_hmp_help(FILE *out, const char *args)
{
	const struct mon_hmp_cmd *table = mon_hmp_cmds, *c;
	char prefix[256] = "";
	const char *p = args, *word;
	size_t n;

	for (;;) {
		while (mon_hmp_space(*p))
			p++;
		if (!*p) {
			for (c = table; c->name; c++)
				mon_hmp_help_one(out, c, prefix);
			return;
		}
		word = p;
		while (*p && !mon_hmp_space(*p))
			p++;
		n = (size_t)(p - word);
		for (c = table; c->name && !mon_hmp_is(c, word, n); c++)
			;
		if (!c->name) {
			fprintf(out, "unknown command: '%s%.*s'\n", prefix, (int)n, word);
			return;
		}
		if (!c->sub) {
			mon_hmp_help_one(out, c, prefix);
			return;
		}
		snprintf(prefix + strlen(prefix), sizeof(prefix) - strlen(prefix), "%.*s ", (int)n,
			 word);
		table = c->sub;
	}
}

/* handle_hmp_command()'s hint after a parse error, naming the command as typed. */
static void mon_hmp_try(FILE *out, const char *line, const struct mon_hmp_line *pl)
{
	const char *end = pl->rest;

	while (end > line && mon_hmp_space(end[-1]))
		end--;
	fprintf(out, "Try \"help %.*s\" for more information\n", (int)(end - line), line);
}

/* QEMU's monitor_parse_arguments() error for words after a command that takes none. */
static void mon_hmp_extraneous(FILE *out, const char *line, const struct mon_hmp_line *pl)
{
	fprintf(out, "%s: extraneous characters at the end of line\n", pl->cmd->name);
	mon_hmp_try(out, line, pl);
}

/* QEMU's buffer for a string argument: longer ones are cut to 1023 bytes. */
#define MON_HMP_STR_MAX 1024

/*
 * QEMU's get_str(): a word, or a "quoted" string with \n \r \\ \' \"
 * escapes.  Returns the end of the argument, or NULL when there is none
 * (QEMU prints its other complaints, a bad escape or an unterminated
 * quote, on its stdout: the monitor sees only "string expected").
 */
static const char *mon_hmp_get_str(const char *p, char *buf)
{
	size_t n = 0;
	char c;

	while (mon_hmp_space(*p))
		p++;
	if (!*p)
		return NULL;
	if (*p != '"') {
		for (; *p && !mon_hmp_space(*p); p++)
			if (n < MON_HMP_STR_MAX - 1)
				buf[n++] = *p;
		buf[n] = '\0';
		return p;
	}
	for (p++; *p && *p != '"'; p++) {
		c = *p;
		if (c == '\\') {
			c = *++p;
			if (c == 'n')
				c = '\n';
			else if (c == 'r')
				c = '\r';
			else if (c != '\\' && c != '\'' && c != '"')
				return NULL;
		}
		if (n < MON_HMP_STR_MAX - 1)
			buf[n++] = c;
	}
	if (*p != '"')
		return NULL;
	buf[n] = '\0';
	return p + 1;
}

/*
 * The command's arguments as QMP ones in @args, or QEMU's parse error
 * printed (then false).
 */
static bool mon_hmp_args(FILE *out, const char *line, const struct mon_hmp_line *pl, json_t *args)
{
	char buf[MON_HMP_STR_MAX];
	const char *p = pl->rest;

	if (pl->cmd->arg) {
		p = mon_hmp_get_str(p, buf);
		if (!p) {
			fprintf(out, "%s: string expected\n", pl->cmd->name);
			mon_hmp_try(out, line, pl);
			return false;
		}
		json_object_set_new(args, pl->cmd->arg, json_string(buf));
		while (mon_hmp_space(*p))
			p++;
	}
	if (*p) {
		mon_hmp_extraneous(out, line, pl);
		return false;
	}
	return true;
}

/* @text (a memstream's) as the command's return: QEMU's CRLF, bad bytes replaced. */
static void mon_hmp_return_text(const char *text, size_t len, struct mon_result *res)
{
	char *crlf = malloc(2 * len + 1), *valid = malloc(2 * len + 1);
	size_t i, n = 0;

	if (!crlf || !valid) {
		free(crlf);
		free(valid);
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	/* QEMU's monitor output turns every "\n" into "\r\n". */
	for (i = 0; i < len; i++) {
		if (text[i] == '\n')
			crlf[n++] = '\r';
		crlf[n++] = text[i];
	}
	crlf[n] = '\0';
	/* A backend's text (an error, a status) reaches here unchecked. */
	utf8_copy_valid(valid, n + 1, crlf);
	json_decref(res->ret);
	res->ret = json_string(valid);
	free(crlf);
	free(valid);
	if (!res->ret)
		mon_result_error(res, NULL, "out of memory");
}

/* Runs the mapped QMP command; prints its value, or QEMU's "Error: " line. */
static void mon_hmp_exec(struct mon_ctx *ctx, const char *line, const struct mon_hmp_line *pl,
			 FILE *out, struct mon_result *res)
{
	const struct mon_hmp_cmd *c = pl->cmd;
	const struct mon_cmd *qmp = mon_cmd_find(c->qmp);
	json_t *args = json_object();

	if (!qmp || !args) {
		json_decref(args);
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	if (!mon_hmp_args(out, line, pl, args)) {
		json_decref(args);
		return;
	}
	/* A string is UTF-8 text for jansson: a bad byte fails the argument. */
	if (c->arg && !json_object_get(args, c->arg)) {
		json_decref(args);
		mon_result_error(res, NULL, "Parameter '%s' expects a string in UTF-8", c->arg);
		return;
	}
	qmp->run(ctx, args, res);
	json_decref(args);
	if (res->err_class) {
		/*
		 * HMP prints the error (hmp_handle_error) and the QMP command
		 * succeeds.  err_desc and backend_down stay as they are: the
		 * worker fails the jobs queued behind a dead backend with them.
		 */
		fprintf(out, "Error: %s\n", res->err_desc);
		res->err_class = NULL;
		return;
	}
	if (c->print)
		c->print(out, res->ret);
}

void mon_cmd_hmp(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	const char *line = json_string_value(json_object_get(args, "command-line"));
	json_t *cpu = json_object_get(args, "cpu-index");
	struct mon_cmd route;
	struct mon_hmp_line pl;
	char *text = NULL;
	size_t len = 0;
	FILE *out;

	mon_hmp_route(mon_cmd_find("human-monitor-command"), args, &route);
	if (cpu && !(route.flags & MON_CMD_QUIT) &&
	    mon_hmp_check_cpu(ctx, json_integer_value(cpu), route.backend, res))
		return;
	out = open_memstream(&text, &len);
	if (!out) {
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	mon_hmp_parse(line, &pl);
	if (pl.unknown_len)
		fprintf(out, "unknown command: '%.*s'\n", pl.unknown_len, line);
	else if (!pl.cmd)
		; /* an empty line prints nothing */
	else if (mon_hmp_is(pl.cmd, "help", 4))
		mon_hmp_help(out, pl.rest);
	else if (*pl.rest && !pl.cmd->arg)
		mon_hmp_extraneous(out, line, &pl);
	else if (pl.cmd->sub)
		mon_hmp_help(out, pl.cmd->name); /* bare "info": its subcommands */
	else
		mon_hmp_exec(ctx, line, &pl, out, res);
	if (fclose(out)) {
		free(text);
		mon_result_error(res, NULL, "out of memory");
		return;
	}
	if (!res->err_class)
		mon_hmp_return_text(text, len, res);
	free(text);
}
