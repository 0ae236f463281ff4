// SPDX-License-Identifier: GPL-2.0-only
/*
 * Unit tests of QMP request checking: envelope, negotiation, id echoing,
 * argument schemas and the malformed-input table.  Commands run with no
 * backend configured, so backend commands must fail cleanly.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-cmds-internal.h"
#include "monitor/qmp-dispatch.h"

/*
 * Runs one request line the way the server does, for a client that
 * enabled 'oob' or not; returns the reply text without CRLF.
 */
static char *dispatch_line_oob(bool negotiated, bool oob, const char *in)
{
	struct mon_ctx ctx = {.name = "vm1", .timeout_ms = 100};
	struct mon_result res = {0};
	struct mon_request req;
	size_t len;
	char *line;

	if (mon_request_parse_oob(in, strlen(in), negotiated, oob, &req, &res) == 0) {
		assert_non_null(req.cmd);
		req.cmd->run(&ctx, req.args, &res);
	} else {
		assert_null(req.cmd);
		assert_non_null(res.err_class);
	}
	line = mon_reply_format_text(req.id_text, &res, &len);
	assert_non_null(line);
	assert_true(len >= 2);
	assert_memory_equal(line + len - 2, "\r\n", 2);
	line[len - 2] = '\0';
	mon_request_fini(&req);
	mon_result_fini(&res);
	return line;
}

static char *dispatch_line(bool negotiated, const char *in)
{
	return dispatch_line_oob(negotiated, false, in);
}

struct dispatch_case {
	bool negotiated;
	const char *in;
	const char *want;
};

#define GE(desc) "{\"error\": {\"class\": \"GenericError\", \"desc\": \"" desc "\"}"
#define NF(desc) "{\"error\": {\"class\": \"CommandNotFound\", \"desc\": \"" desc "\"}"

static const struct dispatch_case dispatch_cases[] = {
	/* Negotiation. */
	{false, "{\"execute\":\"query-version\",\"id\":1}",
	 NF("Expecting capabilities negotiation with 'qmp_capabilities'") ", \"id\": 1}"},
	{false, "{\"execute\":\"no-such\"}",
	 NF("Expecting capabilities negotiation with 'qmp_capabilities'") "}"},
	{false, "{\"execute\":\"qmp_capabilities\",\"id\":\"x\"}",
	 "{\"return\": {}, \"id\": \"x\"}"},
	{false, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[]}}",
	 "{\"return\": {}}"},
	{false, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"oob\"]}}",
	 "{\"return\": {}}"},
	{false, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":[\"bogus\"]}}",
	 GE("Parameter 'enable[0]' does not accept value 'bogus'") "}"},
	{false, "{\"execute\":\"qmp_capabilities\",\"arguments\":{\"enable\":\"oob\"}}",
	 GE("Invalid parameter type for 'enable', expected: array") "}"},
	{true, "{\"execute\":\"qmp_capabilities\"}",
	 NF("Capabilities negotiation is already complete, command ignored") "}"},
	/* Ids of every JSON type come back verbatim. */
	{true, "{\"execute\":\"query-name\",\"id\":{\"a\":[1,null]}}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": {\"a\": [1, null]}}"},
	{true, "{\"execute\":\"query-name\",\"id\":null}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": null}"},
	{true, "{\"execute\":\"query-name\",\"id\":1.5}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": 1.5}"},
	/*
	 * Integers outside int64: QEMU 7.2 reads 2^63..2^64-1 as uint64 and
	 * echoes them; these are its answers.  cleave echoes any id's tokens as
	 * sent, white space aside.
	 */
	{true, "{\"execute\":\"query-name\",\"id\":18446744073709551615}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": 18446744073709551615}"},
	{true, "{\"execute\":\"query-name\",\"id\":9223372036854775808}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": 9223372036854775808}"},
	{true, "{\"execute\":\"query-name\",\"id\":{\"n\" :[9223372036854775808,\n -1]}}",
	 "{\"return\": {\"name\": \"vm1\"}, \"id\": {\"n\": [9223372036854775808, -1]}}"},
	{true, "{\"execute\":\"nope\",\"id\":18446744073709551615}",
	 NF("The command nope has not been found") ", \"id\": 18446744073709551615}"},
	{true, "{\"execute\":18446744073709551615,\"id\":1}",
	 GE("QMP input member 'execute' must be a string") ", \"id\": 1}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"downtime-limit\":"
	 "18446744073709551615},\"id\":2}",
	 GE("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds") ", "
											       "\"i"
											       "d\""
											       ": "
											       "2"
											       "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"downtime-limit\":"
	 "18446744073709551616}}",
	 GE("Parameter 'downtime-limit' expects uint64") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":"
	 "-9223372036854775809}}",
	 GE("Parameter 'max-bandwidth' expects uint64") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":"
	 "9223372036854775808}}",
	 GE("migrator is not running") "}"},
	{true,
	 "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":"
	 "18446744073709551615}}",
	 GE("Invalid parameter type for 'run-on', expected: string") "}"},
	{true, "{\"id\":false,\"execute\":\"query-kvm\"}",
	 "{\"return\": {\"enabled\": true, \"present\": true}, \"id\": false}"},
	/* Envelope errors carry the id once it could be read. */
	{true, "{\"execute\":\"nope\",\"id\":7}",
	 NF("The command nope has not been found") ", \"id\": 7}"},
	{true, "{\"execute\":42,\"id\":7}",
	 GE("QMP input member 'execute' must be a string") ", \"id\": 7}"},
	{true, "{\"id\":7}", GE("QMP input lacks member 'execute'") ", \"id\": 7}"},
	{true, "{\"execute\":\"query-name\",\"argument\":{},\"id\":7}",
	 GE("QMP input member 'argument' is unexpected") ", \"id\": 7}"},
	{true, "{\"execute\":\"query-name\",\"arguments\":[],\"id\":7}",
	 GE("QMP input member 'arguments' must be an object") ", \"id\": 7}"},
	{true, "[1,2]", GE("QMP input must be a JSON object") "}"},
	{true, "{\"execute\": }", GE("JSON parse error, unexpected token near '}'") "}"},
	{true, "{\"execute\":\"query-name\",\"execute\":\"quit\"}",
	 GE("JSON parse error, duplicate object key near '\\\"execute\\\"'") "}"},
	/* Arguments: unknown, missing, wrong type, ranges; checked before any effect. */
	{true, "{\"execute\":\"query-name\",\"arguments\":{\"x\":1}}",
	 GE("Parameter 'x' is unexpected") "}"},
	{true, "{\"execute\":\"migrate\",\"arguments\":{}}", GE("Parameter 'uri' is missing") "}"},
	{true, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":5}}",
	 GE("Invalid parameter type for 'uri', expected: string") "}"},
	{true, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"exec:cat\"}}",
	 GE("Parameter 'uri': exec: migration is refused: no cleave process may run a command "
	    "(supported: tcp:HOST:PORT, unix:PATH, file:PATH, fd:NAME)") "}"},
	{true, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"rdma:1.2.3.4:5\"}}",
	 GE("Parameter 'uri' expects a valid migration protocol (supported: tcp:HOST:PORT, "
	    "unix:PATH, file:PATH, fd:NAME)") "}"},
	/*
	 * fd:NAME is resolved by the client's session before .run (client-fds.c,
	 * tests/integration/monitor/test-qmp-server.c); .run alone calls the migrator.
	 */
	{true, "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"fd:3\"}}",
	 GE("migrator is not running") "}"},
	/* getfd / closefd without a session: QEMU 7.2's HMP answers (no SCM_RIGHTS there). */
	{true, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":\"a\"}}",
	 GE("No file descriptor supplied via SCM_RIGHTS") "}"},
	{true, "{\"execute\":\"getfd\",\"arguments\":{}}", GE("Parameter 'fdname' is missing") "}"},
	{true, "{\"execute\":\"getfd\",\"arguments\":{\"fdname\":5}}",
	 GE("Invalid parameter type for 'fdname', expected: string") "}"},
	{true, "{\"execute\":\"closefd\",\"arguments\":{\"fdname\":\"zz\"}}",
	 GE("File descriptor named 'zz' not found") "}"},
	/* No fd sets in cleave (docs/QMP.md, compatibility). */
	{true, "{\"execute\":\"add-fd\"}", NF("The command add-fd has not been found") "}"},
	{true, "{\"execute\":\"query-fdsets\"}",
	 NF("The command query-fdsets has not been found") "}"},
	{true, "{\"execute\":\"migrate\",\"arguments\":{\"uri\":\"tcp:1:2\",\"speed\":1}}",
	 GE("Parameter 'speed' is unexpected") "}"},
	{true,
	 "{\"execute\":\"migrate-incoming\",\"arguments\":{\"uri\":\"tcp:127.0.0.1:1\",\"x\":1}}",
	 GE("Parameter 'x' is unexpected") "}"},
	{true, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{}}",
	 GE("Parameter 'capabilities' is missing") "}"},
	{true, "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[1]}}",
	 GE("Invalid parameter type for 'capabilities[0]', expected: object") "}"},
	{true,
	 "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{"
	 "\"capability\":\"multifd\"}]}}",
	 GE("Parameter 'capabilities[0].state' is missing") "}"},
	{true,
	 "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{"
	 "\"capability\":\"warp\",\"state\":true}]}}",
	 GE("Parameter 'capabilities[0].capability' does not accept value 'warp'") "}"},
	{true,
	 "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{"
	 "\"capability\":\"multifd\",\"state\":true,\"z\":0}]}}",
	 GE("Parameter 'capabilities[0].z' is unexpected") "}"},
	{true,
	 "{\"execute\":\"migrate-set-capabilities\",\"arguments\":{\"capabilities\":[{"
	 "\"capability\":\"xbzrle\",\"state\":true}]}}",
	 GE("Migration capability 'xbzrle' is not supported") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"multifd-channels\":\"4\"}}",
	 GE("Invalid parameter type for 'multifd-channels', expected: integer") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"max-bandwidth\":-1}}",
	 GE("Parameter 'max-bandwidth' expects a non-negative integer") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"multifd-channels\":0}}",
	 GE("Parameter 'multifd_channels' expects a value between 1 and 64") "}"},
	/* The engine's own limit (migrator/mig-limits.h), not QEMU's 255. */
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"multifd-channels\":65}}",
	 GE("Parameter 'multifd_channels' expects a value between 1 and 64") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"downtime-limit\":2000001}}",
	 GE("Parameter 'downtime_limit' expects an integer in the range of 0 to 2000 seconds") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"compress-level\":1}}",
	 GE("Parameter 'compress-level' is unexpected") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":\"5\"}}",
	 GE("Invalid parameter type for 'x-reconnect-timeout', expected: integer") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":1.5}}",
	 GE("Invalid parameter type for 'x-reconnect-timeout', expected: integer") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":null}}",
	 GE("Invalid parameter type for 'x-reconnect-timeout', expected: integer") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":-1}}",
	 GE("Parameter 'x-reconnect-timeout' expects a non-negative integer") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"reconnect-timeout\":1}}",
	 GE("Parameter 'reconnect-timeout' is unexpected") "}"},
	/* Schema order: a bad earlier member is reported first. */
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":-1,"
	 "\"multifd-channels\":true}}",
	 GE("Invalid parameter type for 'multifd-channels', expected: integer") "}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"id\":3}",
	 GE("Parameter 'run-on' is missing") ", \"id\": 3}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{}}",
	 GE("Parameter 'run-on' is missing") "}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":1}}",
	 GE("Invalid parameter type for 'run-on', expected: string") "}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":\"both\"}}",
	 GE("Parameter 'run-on' does not accept value 'both'") "}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":\"Source\"}}",
	 GE("Parameter 'run-on' does not accept value 'Source'") "}"},
	{true, "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run_on\":\"source\"}}",
	 GE("Parameter 'run-on' is missing") "}"},
	{true,
	 "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":\"source\","
	 "\"force\":true}}",
	 GE("Parameter 'force' is unexpected") "}"},
	{true, "{\"execute\":\"x-cleave-postcopy-abandon\",\"arguments\":{\"zero-fill\":\"yes\"}}",
	 GE("Invalid parameter type for 'zero-fill', expected: boolean") "}"},
	{true, "{\"execute\":\"x-cleave-postcopy-abandon\",\"arguments\":{\"zero_fill\":true}}",
	 GE("Parameter 'zero_fill' is unexpected") "}"},
	/* No backend configured: a clean error naming it. */
	{true, "{\"execute\":\"query-status\",\"id\":1}",
	 GE("vcpu-proc is not running") ", \"id\": 1}"},
	{true, "{\"execute\":\"query-migrate\"}", GE("migrator is not running") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"multifd-channels\":4}}",
	 GE("migrator is not running") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"x-reconnect-timeout\":0}}",
	 GE("migrator is not running") "}"},
	{true,
	 "{\"execute\":\"x-cleave-migrate-resolve\",\"arguments\":{\"run-on\":\"destination\"}}",
	 GE("migrator is not running") "}"},
	{true, "{\"execute\":\"migrate_cancel\"}", GE("migrator is not running") "}"},
	{true, "{\"execute\":\"x-cleave-postcopy-abandon\"}", GE("migrator is not running") "}"},
	/* Commands that need no backend always answer. */
	{true, "{\"execute\":\"query-version\"}",
	 "{\"return\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, \"package\": "
	 "\"cleave 0.1.0\"}}"},
	{true, "{\"execute\":\"quit\",\"id\":\"q\"}", "{\"return\": {}, \"id\": \"q\"}"},
	/* QEMU 7.2's answers for a VM started without -uuid and a machine without CPU hotplug. */
	{true, "{\"execute\":\"query-uuid\"}",
	 "{\"return\": {\"UUID\": \"00000000-0000-0000-0000-000000000000\"}}"},
	{true, "{\"execute\":\"query-target\"}", "{\"return\": {\"arch\": \"x86_64\"}}"},
	{true, "{\"execute\":\"query-iothreads\",\"id\":1}", "{\"return\": [], \"id\": 1}"},
	{true, "{\"execute\":\"query-hotpluggable-cpus\"}",
	 GE("The feature 'query-hotpluggable-cpus' is not enabled") "}"},
	/* No ACPI in cleave's machine: system_powerdown does not exist (docs/QMP.md). */
	{true, "{\"execute\":\"system_powerdown\"}",
	 NF("The command system_powerdown has not been found") "}"},
};

static void test_dispatch_table(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(dispatch_cases) / sizeof(dispatch_cases[0]); i++) {
		char *got = dispatch_line(dispatch_cases[i].negotiated, dispatch_cases[i].in);

		if (strcmp(got, dispatch_cases[i].want))
			fail_msg("case %zu %s:\n got  %s\n want %s", i, dispatch_cases[i].in, got,
				 dispatch_cases[i].want);
		free(got);
	}
}

/* exec-oob with and without the 'oob' capability: QEMU 7.2's texts (docs/QMP.md). */
static const struct {
	bool negotiated, oob;
	const char *in, *want;
} oob_cases[] = {
	/* They ask the migrator (none here); its refusals are in test-backend.c. */
	{true, true, "{\"exec-oob\":\"migrate-pause\",\"id\":42}",
	 GE("migrator is not running") ", \"id\": 42}"},
	{true, true, "{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":\"tcp:h:1\"}}",
	 GE("migrator is not running") "}"},
	{true, true, "{\"exec-oob\":\"migrate-recover\",\"id\":1}",
	 GE("Parameter 'uri' is missing") ", \"id\": 1}"},
	{true, true, "{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":7}}",
	 GE("Invalid parameter type for 'uri', expected: string") "}"},
	{true, true, "{\"exec-oob\":\"migrate-recover\",\"arguments\":{\"uri\":\"u\",\"x\":1}}",
	 GE("Parameter 'x' is unexpected") "}"},
	{true, true, "{\"exec-oob\":\"query-status\",\"id\":1}",
	 GE("The command query-status does not support OOB") ", \"id\": 1}"},
	{true, true, "{\"exec-oob\":\"qmp_capabilities\"}",
	 GE("The command qmp_capabilities does not support OOB") "}"},
	/* cleave's yank and query-yank ask the migrator: in band only (QEMU: allow-oob). */
	{true, true, "{\"exec-oob\":\"yank\",\"arguments\":{\"instances\":[]}}",
	 GE("The command yank does not support OOB") "}"},
	{true, true, "{\"exec-oob\":\"query-yank\"}",
	 GE("The command query-yank does not support OOB") "}"},
	{true, true, "{\"exec-oob\":\"no-such\"}",
	 NF("The command no-such has not been found") "}"},
	{true, true, "{\"exec-oob\":1,\"id\":2}",
	 GE("QMP input member 'exec-oob' must be a string") ", \"id\": 2}"},
	{true, true, "{\"execute\":\"migrate-pause\",\"exec-oob\":\"migrate-pause\"}",
	 GE("QMP input member 'execute' clashes with 'exec-oob'") "}"},
	{true, true, "{\"exec-oob\":\"migrate-pause\",\"execute\":\"migrate-pause\"}",
	 GE("QMP input member 'execute' clashes with 'exec-oob'") "}"},
	{true, true, "{\"exec-oob\":\"migrate-pause\",\"bogus\":1}",
	 GE("QMP input member 'bogus' is unexpected") "}"},
	/* Without the capability exec-oob is no member of the envelope at all. */
	{true, false, "{\"exec-oob\":\"migrate-pause\",\"id\":3}",
	 GE("QMP input member 'exec-oob' is unexpected") ", \"id\": 3}"},
	{false, false, "{\"exec-oob\":\"qmp_capabilities\"}",
	 GE("QMP input member 'exec-oob' is unexpected") "}"},
	/* In band they answer the same. */
	{true, true, "{\"execute\":\"migrate-pause\"}", GE("migrator is not running") "}"},
	{true, false, "{\"execute\":\"migrate-recover\",\"arguments\":{\"uri\":\"x\"}}",
	 GE("migrator is not running") "}"},
	{true, false, "{\"execute\":\"migrate-recover\"}", GE("Parameter 'uri' is missing") "}"},
	{true, false, "{\"execute\":\"migrate-recover\",\"arguments\":{\"uri\":null}}",
	 GE("Invalid parameter type for 'uri', expected: string") "}"},
};

static bool is_oob(const char *msg)
{
	return mon_request_is_oob(msg, strlen(msg));
}

static void test_dispatch_oob(void **state)
{
	size_t i;

	for (i = 0; i < sizeof(oob_cases) / sizeof(oob_cases[0]); i++) {
		char *got = dispatch_line_oob(oob_cases[i].negotiated, oob_cases[i].oob,
					      oob_cases[i].in);

		if (strcmp(got, oob_cases[i].want))
			fail_msg("case %zu %s:\n got  %s\n want %s", i, oob_cases[i].in, got,
				 oob_cases[i].want);
		free(got);
	}
	assert_true(is_oob("{\"exec-oob\":\"x\"}"));
	assert_false(is_oob("{\"exec-oob\":\"x\",\"execute\":\"y\"}"));
	assert_false(is_oob("{\"exec-oob\":"));
	assert_false(is_oob("[\"exec-oob\"]"));
}

/*
 * An out-of-band command has no other flag and no .known: client.c runs it
 * as a plain job beside the client's busy one (no fd, quit or session
 * handling).  QEMU 7.2's allow-oob migration commands ask the migrator.
 */
static void test_oob_commands_shape(void **state)
{
	size_t i, n = 0;

	for (i = 0; i < mon_cmd_count(); i++) {
		const struct mon_cmd *cmd = mon_cmd_at(i);

		if (!(cmd->flags & MON_CMD_ALLOW_OOB))
			continue;
		n++;
		assert_int_equal(cmd->flags, MON_CMD_ALLOW_OOB);
		assert_null(cmd->known);
		assert_true(!strcmp(cmd->name, "migrate-pause") ||
			    !strcmp(cmd->name, "migrate-recover"));
		assert_int_equal(cmd->backend, MON_BACKEND_MIGRATOR);
	}
	assert_int_equal(n, 2);
}

static void test_query_commands_lists_table(void **state)
{
	char *got = dispatch_line(true, "{\"execute\":\"query-commands\"}");
	json_t *reply = json_loads(got, 0, NULL), *list, *e;
	size_t i;
	bool seen_migrate = false, seen_resolve = false;

	assert_non_null(reply);
	list = json_object_get(reply, "return");
	assert_true(json_is_array(list));
	assert_int_equal(json_array_size(list), mon_cmd_count());
	json_array_foreach(list, i, e)
	{
		assert_non_null(mon_cmd_find(json_string_value(json_object_get(e, "name"))));
		if (!strcmp(json_string_value(json_object_get(e, "name")), "query-migrate"))
			seen_migrate = true;
		if (!strcmp(json_string_value(json_object_get(e, "name")),
			    "x-cleave-migrate-resolve"))
			seen_resolve = true;
	}
	assert_true(seen_migrate);
	assert_true(seen_resolve);
	json_decref(reply);
	free(got);
}

/* The type named @name in a SchemaInfo list, or NULL. */
static json_t *schema_type(json_t *list, const char *name)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
	{
		if (!strcmp(json_string_value(json_object_get(e, "name")), name) &&
		    strcmp(json_string_value(json_object_get(e, "meta-type")), "command"))
			return e;
	}
	return NULL;
}

/* A command's ret-type: "any", "str", or an array of the object .ret_fields describes. */
static void schema_check_ret(json_t *list, const struct mon_cmd *cmd, const char *ret)
{
	const struct mon_arg_spec *a = cmd->ret_fields;
	json_t *arr, *obj, *m;
	size_t j;

	assert_non_null(ret);
	if (cmd->ret == MON_RET_EMPTY) {
		assert_string_equal(ret, "0");
		return;
	}
	if (cmd->ret == MON_RET_ANY || cmd->ret == MON_RET_STR) {
		assert_string_equal(ret, cmd->ret == MON_RET_STR ? "str" : "any");
		return;
	}
	arr = schema_type(list, ret);
	assert_non_null(arr);
	assert_string_equal(json_string_value(json_object_get(arr, "meta-type")), "array");
	obj = schema_type(list, json_string_value(json_object_get(arr, "element-type")));
	assert_non_null(obj);
	json_array_foreach(json_object_get(obj, "members"), j, m)
	{
		assert_string_equal(json_string_value(json_object_get(m, "name")), a->name);
		assert_int_equal(json_object_get(m, "default") != NULL, a->optional);
		a++;
	}
	assert_int_equal(a->type, MON_ARG_END);
}

/* The SchemaInfo of command @name's argument object. */
static json_t *schema_cmd(json_t *list, const char *name, const char *member)
{
	json_t *e;
	size_t i;

	json_array_foreach(list, i, e)
	{
		if (!strcmp(json_string_value(json_object_get(e, "name")), name))
			return member ? json_object_get(e, member) : e;
	}
	fail_msg("%s not in the schema", name);
	return NULL;
}

/*
 * QEMU 7.2's shapes of the commands added with HMP (qapi/misc.json,
 * qapi/machine.json, qapi/char.json): human-monitor-command takes
 * command-line: str and cpu-index?: int and returns str; query-machines
 * returns [MachineInfo], query-chardev [ChardevInfo].
 */
static void test_qmp_schema_hmp_shapes(void **state)
{
	char *got = dispatch_line(true, "{\"execute\":\"query-qmp-schema\"}");
	json_t *reply = json_loads(got, 0, NULL), *list = json_object_get(reply, "return");
	json_t *obj, *elem;
	char *text;

	obj = schema_type(list,
			  json_string_value(schema_cmd(list, "human-monitor-command", "arg-type")));
	text = json_dumps(json_object_get(obj, "members"), JSON_COMPACT);
	assert_string_equal(text, "[{\"name\":\"command-line\",\"type\":\"str\"},"
				  "{\"name\":\"cpu-index\",\"type\":\"int\",\"default\":null}]");
	free(text);
	assert_string_equal(
		json_string_value(schema_cmd(list, "human-monitor-command", "ret-type")), "str");
	obj = schema_type(list, json_string_value(schema_cmd(list, "query-machines", "ret-type")));
	elem = schema_type(list, json_string_value(json_object_get(obj, "element-type")));
	text = json_dumps(json_object_get(elem, "members"), JSON_COMPACT);
	assert_string_equal(text,
			    "[{\"name\":\"name\",\"type\":\"str\"},"
			    "{\"name\":\"alias\",\"type\":\"str\",\"default\":null},"
			    "{\"name\":\"is-default\",\"type\":\"bool\",\"default\":null},"
			    "{\"name\":\"cpu-max\",\"type\":\"int\"},"
			    "{\"name\":\"hotpluggable-cpus\",\"type\":\"bool\"},"
			    "{\"name\":\"numa-mem-supported\",\"type\":\"bool\"},"
			    "{\"name\":\"deprecated\",\"type\":\"bool\"},"
			    "{\"name\":\"default-cpu-type\",\"type\":\"str\",\"default\":null},"
			    "{\"name\":\"default-ram-id\",\"type\":\"str\",\"default\":null}]");
	free(text);
	obj = schema_type(list, json_string_value(schema_cmd(list, "query-chardev", "ret-type")));
	elem = schema_type(list, json_string_value(json_object_get(obj, "element-type")));
	text = json_dumps(json_object_get(elem, "members"), JSON_COMPACT);
	assert_string_equal(text, "[{\"name\":\"label\",\"type\":\"str\"},"
				  "{\"name\":\"filename\",\"type\":\"str\"},"
				  "{\"name\":\"frontend-open\",\"type\":\"bool\"}]");
	free(text);
	/* Commands whose return is not described stay "any". */
	assert_string_equal(json_string_value(schema_cmd(list, "query-status", "ret-type")), "any");
	json_decref(reply);
	free(got);
}

/* @name's type with every masked type name replaced by its definition. */
static json_t *schema_expand(json_t *list, const char *name)
{
	json_t *def = schema_type(list, name), *e, *m, *v;
	size_t i;

	assert_non_null(def);
	if (!strcmp(json_string_value(json_object_get(def, "meta-type")), "builtin"))
		return json_string(name);
	e = json_deep_copy(def);
	json_object_del(e, "name");
	if (!strcmp(json_string_value(json_object_get(e, "meta-type")), "object"))
		json_array_foreach(json_object_get(e, "members"), i, m) json_object_set_new(
			m, "type",
			schema_expand(list, json_string_value(json_object_get(m, "type"))));
	if (json_object_get(e, "element-type"))
		json_object_set_new(
			e, "element-type",
			schema_expand(list, json_string_value(json_object_get(e, "element-type"))));
	json_array_foreach(json_object_get(e, "variants"), i, v) json_object_set_new(
		v, "type", schema_expand(list, json_string_value(json_object_get(v, "type"))));
	return e;
}

/*
 * QEMU 7.2.22's SchemaInfo of yank, query-yank and migrate-start-postcopy
 * (query-qmp-schema of qemu-system-x86_64 -machine microvm, masked type
 * names expanded, keys sorted), less yank's and query-yank's
 * "allow-oob": true: cleave runs them in band (docs/QMP.md).
 */
#define QEMU72_YANK_INSTANCE                                                                       \
	"{\"members\":[{\"name\":\"type\",\"type\":{\"members\":[{\"name\":\"block-node\"},"       \
	"{\"name\":\"chardev\"},{\"name\":\"migration\"}],\"meta-type\":\"enum\",\"values\":"      \
	"[\"block-node\",\"chardev\",\"migration\"]}}],\"meta-type\":\"object\",\"tag\":"          \
	"\"type\",\"variants\":[{\"case\":\"block-node\",\"type\":{\"members\":[{\"name\":"        \
	"\"node-name\",\"type\":\"str\"}],\"meta-type\":\"object\"}},{\"case\":\"chardev\","       \
	"\"type\":{\"members\":[{\"name\":\"id\",\"type\":\"str\"}],\"meta-type\":\"object\"}},"   \
	"{\"case\":\"migration\",\"type\":{\"members\":[],\"meta-type\":\"object\"}}]}"
#define QEMU72_EMPTY "{\"members\":[],\"meta-type\":\"object\"}"
static const char *const qemu72_postcopy_yank_schema[][2] = {
	{"yank",
	 "{\"arg-type\":{\"members\":[{\"name\":\"instances\",\"type\":{\"element-"
	 "type\":" QEMU72_YANK_INSTANCE ",\"meta-type\":\"array\"}}],\"meta-type\":\"object\"},"
	 "\"meta-type\":\"command\",\"name\":\"yank\",\"ret-type\":" QEMU72_EMPTY "}"},
	{"query-yank", "{\"arg-type\":" QEMU72_EMPTY ",\"meta-type\":\"command\",\"name\":"
		       "\"query-yank\",\"ret-type\":{\"element-type\":" QEMU72_YANK_INSTANCE
		       ",\"meta-type\":\"array\"}}"},
	{"migrate-start-postcopy",
	 "{\"arg-type\":" QEMU72_EMPTY ",\"meta-type\":\"command\",\"name\":"
	 "\"migrate-start-postcopy\",\"ret-type\":" QEMU72_EMPTY "}"},
};

static void test_qmp_schema_postcopy_yank(void **state)
{
	char *got = dispatch_line(true, "{\"execute\":\"query-qmp-schema\"}");
	json_t *reply = json_loads(got, 0, NULL), *list = json_object_get(reply, "return"), *cmd;
	size_t n = sizeof(qemu72_postcopy_yank_schema) / sizeof(qemu72_postcopy_yank_schema[0]);
	char *text;

	for (size_t i = 0; i < n; i++) {
		cmd = json_deep_copy(schema_cmd(list, qemu72_postcopy_yank_schema[i][0], NULL));
		json_object_set_new(
			cmd, "arg-type",
			schema_expand(list, json_string_value(json_object_get(cmd, "arg-type"))));
		json_object_set_new(
			cmd, "ret-type",
			schema_expand(list, json_string_value(json_object_get(cmd, "ret-type"))));
		text = json_dumps(cmd, JSON_COMPACT | JSON_SORT_KEYS);
		if (strcmp(text, qemu72_postcopy_yank_schema[i][1]))
			fail_msg("%s:\n got  %s\n want %s", qemu72_postcopy_yank_schema[i][0], text,
				 qemu72_postcopy_yank_schema[i][1]);
		free(text);
		json_decref(cmd);
	}
	json_decref(reply);
	free(got);
}

/* query-qmp-schema: every table entry, its arguments exactly, every type it names defined. */
static void test_qmp_schema(void **state)
{
	char *got = dispatch_line(true, "{\"execute\":\"query-qmp-schema\"}");
	json_t *reply = json_loads(got, 0, NULL), *list, *e = NULL, *obj, *m, *t;
	size_t i, j, ncmds = 0;

	list = json_object_get(reply, "return");
	assert_true(json_is_array(list));
	json_array_foreach(list, i, e)
	{
		const char *meta = json_string_value(json_object_get(e, "meta-type"));
		const struct mon_cmd *cmd;
		const struct mon_arg_spec *a;

		assert_non_null(meta);
		if (!strcmp(meta, "array"))
			assert_non_null(schema_type(
				list, json_string_value(json_object_get(e, "element-type"))));
		if (!strcmp(meta, "object"))
			json_array_foreach(json_object_get(e, "members"), j, m) assert_non_null(
				schema_type(list, json_string_value(json_object_get(m, "type"))));
		if (strcmp(meta, "command"))
			continue;
		ncmds++;
		cmd = mon_cmd_find(json_string_value(json_object_get(e, "name")));
		assert_non_null(cmd);
		schema_check_ret(list, cmd, json_string_value(json_object_get(e, "ret-type")));
		obj = schema_type(list, json_string_value(json_object_get(e, "arg-type")));
		assert_non_null(obj);
		assert_string_equal(json_string_value(json_object_get(obj, "meta-type")), "object");
		/* The members are the spec's, in its order, optional ones with "default": null. */
		a = cmd->args;
		json_array_foreach(json_object_get(obj, "members"), j, m)
		{
			assert_non_null(a);
			assert_string_equal(json_string_value(json_object_get(m, "name")), a->name);
			assert_int_equal(json_object_get(m, "default") != NULL, a->optional);
			a++;
		}
		assert_true(!a || a->type == MON_ARG_END);
		/* As QEMU's introspection: present (true) for allow-oob commands only. */
		if (cmd->flags & MON_CMD_ALLOW_OOB)
			assert_true(json_is_true(json_object_get(e, "allow-oob")));
		else
			assert_null(json_object_get(e, "allow-oob"));
	}
	assert_int_equal(ncmds, mon_cmd_count());
	/* One look at a known shape: migrate's uri is a str. */
	json_array_foreach(list, i, e) if (!strcmp(json_string_value(json_object_get(e, "name")),
						   "migrate")) break;
	obj = schema_type(list, json_string_value(json_object_get(e, "arg-type")));
	t = json_array_get(json_object_get(obj, "members"), 0);
	assert_string_equal(json_string_value(json_object_get(t, "name")), "uri");
	assert_string_equal(json_string_value(json_object_get(t, "type")), "str");
	json_decref(reply);
	free(got);
}

/*
 * object-add, object-del and the TLS members of migrate-set-parameters:
 * QEMU 7.2's argument errors and messages (qom/object_interfaces.c,
 * qom/object.c, crypto/tlscreds.c, migration/tls.c, authz/base.c), and
 * cleave's refusals, each naming what it cannot do.  No backend: what
 * needs the migrator fails as "migrator is not running" after the objects
 * were resolved, and nothing is deleted without its answer.
 */
static const struct dispatch_case object_cases[] = {
	{true, "{\"execute\":\"object-add\",\"arguments\":{}}",
	 GE("Parameter 'qom-type' is missing") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"memory-backend-ram\",\"id\":"
	 "\"m\"}}",
	 GE("Parameter 'qom-type' does not accept value 'memory-backend-ram'") "}"},
	{true, "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\"}}",
	 GE("Parameter 'id' is missing") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"endpoint\":\"both\"}}",
	 GE("Parameter 'endpoint' does not accept value 'both'") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"username\":\"u\"}}",
	 GE("Parameter 'username' is unexpected") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"verify-peer\":1}}",
	 GE("Invalid parameter type for 'verify-peer', expected: boolean") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"0tls\",\"dir\":\"/d\"}}",
	 GE("Parameter 'id' expects an identifier") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\"}}",
	 GE("Missing 'dir' property value") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"dir\":\"/d\",\"verify-peer\":false}}",
	 GE("Parameter 'verify-peer': false is not supported: cleave's migrations always "
	    "authenticate both ends") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"dir\":\"/d\",\"priority\":\"NORMAL\"}}",
	 GE("Parameter 'priority' is not supported: cleave's migrations use TLS 1.3 with GnuTLS's "
	    "default priorities") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-anon\",\"id\":\"a\"}"
	 "}",
	 GE("Object type 'tls-creds-anon' is not supported: cleave's migrations always "
	    "authenticate both ends (tls-creds-x509 or tls-creds-psk)") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"authz-pam\",\"id\":\"a\","
	 "\"service\":\"s\"}}",
	 GE("Object type 'authz-pam' is not supported: the migrator's sandbox can neither read "
	    "files nor use PAM after it starts (use authz-simple or authz-list)") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"authz-simple\",\"id\":\"a\"}}",
	 GE("Parameter 'identity' is missing") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"authz-list\",\"id\":\"a\","
	 "\"rules\":[{\"match\":\"CN=*\",\"policy\":\"allow\",\"format\":\"regex\"}]}}",
	 GE("Parameter 'rules[0].format' does not accept value 'regex'") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"dir\":\"/etc/pki/"
	 "qemu\",\"endpoint\":\"client\",\"verify-peer\":true},\"id\":1}",
	 "{\"return\": {}, \"id\": 1}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-psk\",\"id\":"
	 "\"tls0\",\"dir\":\"/d\"}}",
	 GE("attempt to add duplicate property 'tls0' to object (type 'container')") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"authz-list\",\"id\":\"auth0\","
	 "\"policy\":\"deny\",\"rules\":[{\"match\":\"CN=src*\",\"policy\":\"allow\",\"format\":"
	 "\"glob\"}]}}",
	 "{\"return\": {}}"},
	{true, "{\"execute\":\"object-del\",\"arguments\":{}}",
	 GE("Parameter 'id' is missing") "}"},
	{true, "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"nope\"}}",
	 GE("object 'nope' not found") "}"},
	/* In use or not is the migrator's to say: without it, nothing is deleted. */
	{true, "{\"execute\":\"object-del\",\"arguments\":{\"id\":\"tls0\"}}",
	 GE("migrator is not running") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"nope\"}}",
	 GE("No TLS credentials with id 'nope'") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"auth0\"}}",
	 GE("Object with id 'auth0' is not TLS credentials") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-authz\":\"nope\"}}",
	 GE("Cannot find QAuthZ object ID nope") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-authz\":\"tls0\"}}",
	 GE("Object 'tls0' is not a QAuthZ subclass") "}"},
	{true, "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":5}}",
	 GE("Invalid parameter type for 'tls-creds', expected: StrOrNull") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"tls0\",\"tls-"
	 "authz\":\"auth0\",\"tls-hostname\":\"dst\"}}",
	 GE("migrator is not running") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":null,\"tls-authz\":"
	 "\"\"}}",
	 GE("migrator is not running") "}"},
	{true,
	 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-creds\":\"#cleave-run\"}}",
	 GE("migrator is not running") "}"},
	{true,
	 "{\"execute\":\"object-add\",\"arguments\":{\"qom-type\":\"tls-creds-x509\",\"id\":"
	 "\"tls0\",\"dir\":\"/d\"}}",
	 GE("attempt to add duplicate property 'tls0' to object (type 'container')") "}"},
};

static void test_object_commands(void **state)
{
	char long_host[400], in[600], want[200];
	size_t i;

	mon_objects_clear();
	for (i = 0; i < sizeof(object_cases) / sizeof(object_cases[0]); i++) {
		char *got = dispatch_line(object_cases[i].negotiated, object_cases[i].in);

		if (strcmp(got, object_cases[i].want))
			fail_msg("case %zu %s:\n got  %s\n want %s", i, object_cases[i].in, got,
				 object_cases[i].want);
		free(got);
	}
	/* Lengths the migrator's record can hold (migrator/mig-limits.h). */
	memset(long_host, 'h', 256);
	long_host[256] = '\0';
	snprintf(in, sizeof(in),
		 "{\"execute\":\"migrate-set-parameters\",\"arguments\":{\"tls-hostname\":\"%s\"}}",
		 long_host);
	snprintf(want, sizeof(want),
		 GE("Parameter 'tls-hostname' expects a string of at most 255 bytes") "}");
	{
		char *got = dispatch_line(true, in);

		assert_string_equal(got, want);
		free(got);
	}
	mon_objects_clear();
}

/*
 * query-qmp-schema: object-add is QEMU's flat union (tag qom-type, a
 * variant per type with its members), the tls-* parameters StrOrNull.
 */
static void test_qmp_schema_objects(void **state)
{
	char *got = dispatch_line(true, "{\"execute\":\"query-qmp-schema\"}");
	json_t *reply = json_loads(got, 0, NULL), *list = json_object_get(reply, "return");
	json_t *obj, *v, *var = NULL, *m, *alt = NULL;
	char *text;
	size_t i;

	obj = schema_type(list, json_string_value(schema_cmd(list, "object-add", "arg-type")));
	assert_string_equal(json_string_value(json_object_get(obj, "tag")), "qom-type");
	json_array_foreach(json_object_get(obj, "variants"), i, v)
	{
		if (!strcmp(json_string_value(json_object_get(v, "case")), "tls-creds-x509"))
			var = schema_type(list, json_string_value(json_object_get(v, "type")));
	}
	assert_non_null(var);
	text = json_dumps(json_object_get(var, "members"), JSON_COMPACT);
	assert_non_null(strstr(text, "{\"name\":\"dir\",\"type\":\"str\",\"default\":null}"));
	assert_non_null(strstr(text, "\"name\":\"verify-peer\",\"type\":\"bool\""));
	free(text);
	obj = schema_type(
		list, json_string_value(schema_cmd(list, "migrate-set-parameters", "arg-type")));
	json_array_foreach(json_object_get(obj, "members"), i, m)
	{
		if (!strcmp(json_string_value(json_object_get(m, "name")), "tls-creds"))
			alt = schema_type(list, json_string_value(json_object_get(m, "type")));
	}
	assert_non_null(alt);
	text = json_dumps(alt, JSON_COMPACT | JSON_SORT_KEYS);
	assert_non_null(strstr(text, "\"members\":[{\"type\":\"str\"},{\"type\":\"null\"}]"));
	assert_non_null(strstr(text, "\"meta-type\":\"alternate\""));
	free(text);
	assert_non_null(schema_type(list, "null"));
	json_decref(reply);
	free(got);
}

/* Every command docs/QMP.md lists is in the table. */
static void test_command_table_complete(void **state)
{
	static const char *const names[] = {
		"qmp_capabilities",
		"query-version",
		"query-commands",
		"query-name",
		"query-status",
		"stop",
		"cont",
		"system_reset",
		"quit",
		"query-cpus-fast",
		"query-kvm",
		"query-memory-size-summary",
		"migrate",
		"migrate-incoming",
		"migrate_cancel",
		"query-migrate",
		"migrate-set-capabilities",
		"query-migrate-capabilities",
		"migrate-set-parameters",
		"query-migrate-parameters",
		"x-cleave-migrate-resolve",
		"query-qmp-schema",
		"query-uuid",
		"query-target",
		"query-iothreads",
		"query-hotpluggable-cpus",
		"human-monitor-command",
		"query-machines",
		"query-chardev",
		"object-add",
		"object-del",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (!mon_cmd_find(names[i]))
			fail_msg("command %s missing", names[i]);
	assert_null(mon_cmd_find("query-nothing"));
	assert_null(mon_cmd_at(mon_cmd_count()));
}

/* The schema checker on its own, with a nested spec. */
static void test_args_check_spec(void **state)
{
	static const char *const colours[] = {"red", "blue", NULL};
	static const struct mon_arg_spec inner[] = {
		{.name = "c", .type = MON_ARG_ENUM, .values = colours},
		{.name = "n", .type = MON_ARG_INT, .optional = true},
		{.type = MON_ARG_END},
	};
	static const struct mon_arg_spec spec[] = {
		{.name = "s", .type = MON_ARG_STR},
		{.name = "b", .type = MON_ARG_BOOL, .optional = true},
		{.name = "u", .type = MON_ARG_UINT, .optional = true},
		{.name = "l", .type = MON_ARG_OBJ_ARRAY, .optional = true, .fields = inner},
		{.type = MON_ARG_END},
	};
	static const struct {
		const char *args;
		const char *err; /* NULL: accepted */
	} cases[] = {
		{"{\"s\":\"x\"}", NULL},
		{"{\"s\":\"x\",\"b\":true,\"u\":0,\"l\":[{\"c\":\"red\",\"n\":-3}]}", NULL},
		{"{}", "Parameter 's' is missing"},
		{"{\"s\":null}", "Invalid parameter type for 's', expected: string"},
		{"{\"s\":\"x\",\"b\":1}", "Invalid parameter type for 'b', expected: boolean"},
		{"{\"s\":\"x\",\"u\":1.0}", "Invalid parameter type for 'u', expected: integer"},
		{"{\"s\":\"x\",\"l\":{}}", "Invalid parameter type for 'l', expected: array"},
		{"{\"s\":\"x\",\"l\":[{\"c\":\"red\"},{\"c\":\"green\"}]}",
		 "Parameter 'l[1].c' does not accept value 'green'"},
		{"{\"s\":\"x\",\"l\":[{\"c\":3}]}",
		 "Invalid parameter type for 'l[0].c', expected: string"},
		{"{\"s\":\"x\",\"l\":[{\"c\":\"red\",\"n\":\"1\"}]}",
		 "Invalid parameter type for 'l[0].n', expected: integer"},
		{"{\"s\":\"x\",\"zz\":1}", "Parameter 'zz' is unexpected"},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct mon_result res = {0};
		json_t *args = json_loads(cases[i].args, 0, NULL);
		int ret;

		assert_non_null(args);
		ret = mon_args_check(spec, args, NULL, &res);
		if (!cases[i].err) {
			if (ret)
				fail_msg("case %zu rejected: %s", i, res.err_desc);
		} else {
			assert_int_not_equal(ret, 0);
			assert_string_equal(res.err_class, MON_ERR_GENERIC);
			if (strcmp(res.err_desc, cases[i].err))
				fail_msg("case %zu: got '%s' want '%s'", i, res.err_desc,
					 cases[i].err);
		}
		mon_result_fini(&res);
		json_decref(args);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dispatch_table),
		cmocka_unit_test(test_dispatch_oob),
		cmocka_unit_test(test_oob_commands_shape),
		cmocka_unit_test(test_query_commands_lists_table),
		cmocka_unit_test(test_command_table_complete),
		cmocka_unit_test(test_qmp_schema),
		cmocka_unit_test(test_qmp_schema_hmp_shapes),
		cmocka_unit_test(test_qmp_schema_postcopy_yank),
		cmocka_unit_test(test_args_check_spec),
		cmocka_unit_test(test_object_commands),
		cmocka_unit_test(test_qmp_schema_objects),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
