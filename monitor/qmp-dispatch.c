// SPDX-License-Identifier: GPL-2.0-only
/*
 * QMP request checking: envelope, command lookup, argument schema, and the
 * reply encoding.  Error descs are QEMU 7.2's (qapi/qmp-dispatch.c,
 * qapi/qobject-input-visitor.c, monitor/qmp.c) so clients that match on
 * them keep working.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-dispatch.h"
#include "monitor/qmp-json.h"
#include "proto/utf8.h"

void mon_result_fini(struct mon_result *res)
{
	json_decref(res->ret);
	res->ret = NULL;
	res->err_class = NULL;
	res->err_desc[0] = '\0';
	res->await_event = MON_AWAIT_NONE;
}

int mon_result_error(struct mon_result *res, const char *cls, const char *fmt, ...)
{
	va_list ap;

	json_decref(res->ret);
	res->ret = NULL;
	res->await_event = MON_AWAIT_NONE; /* a failed command changed nothing */
	res->err_class = cls ? cls : MON_ERR_GENERIC;
	/* Descs quote names and values the client sent: a cut keeps them UTF-8. */
	va_start(ap, fmt);
	utf8_vsnprintf(res->err_desc, sizeof(res->err_desc), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

void mon_request_fini(struct mon_request *req)
{
	json_decref(req->id);
	free(req->id_text);
	json_decref(req->args);
	memset(req, 0, sizeof(*req));
}

static const char *mon_arg_type_name(enum mon_arg_type t)
{
	switch (t) {
	case MON_ARG_STR:
	case MON_ARG_ENUM:
		return "string";
	case MON_ARG_INT:
		return "integer";
	case MON_ARG_UINT:
		return "integer";
	case MON_ARG_BOOL:
		return "boolean";
	case MON_ARG_OBJ_ARRAY:
	case MON_ARG_ENUM_ARRAY:
		return "array";
	case MON_ARG_STR_OR_NULL:
		return "StrOrNull"; /* QEMU names the alternate */
	case MON_ARG_END:
		break;
	}
	return "value";
}

static bool mon_enum_has(const char *const *values, const char *s)
{
	for (; *values; values++)
		if (!strcmp(*values, s))
			return true;
	return false;
}

static int mon_arg_check_enum(const struct mon_arg_spec *a, json_t *v, const char *name,
			      struct mon_result *res)
{
	if (!json_is_string(v) || mon_json_bignum(v))
		return mon_result_error(res, NULL, "Invalid parameter type for '%s', expected: %s",
					name, "string");
	if (!mon_enum_has(a->values, json_string_value(v)))
		return mon_result_error(res, NULL, "Parameter '%s' does not accept value '%s'",
					name, json_string_value(v));
	return 0;
}

/*
 * An integer outside int64 (qmp-json.h), as QEMU's input visitor takes it:
 * an int64 argument is the wrong type; a uint64 one takes up to 2^64-1
 * (beyond, QEMU has a double: "expects uint64").
 */
static int mon_arg_check_bignum(const struct mon_arg_spec *a, const char *digits, const char *name,
				struct mon_result *res)
{
	static const char u64_max[] = "18446744073709551615";
	size_t n = strlen(digits);

	if (a->type != MON_ARG_UINT)
		return mon_result_error(res, NULL, "Invalid parameter type for '%s', expected: %s",
					name, mon_arg_type_name(a->type));
	if (digits[0] == '-' || n > sizeof(u64_max) - 1 ||
	    (n == sizeof(u64_max) - 1 && strcmp(digits, u64_max) > 0))
		return mon_result_error(res, NULL, "Parameter '%s' expects %s", name, "uint64");
	return 0;
}

static int mon_arg_check_one(const struct mon_arg_spec *a, json_t *v, const char *name,
			     struct mon_result *res)
{
	const char *big = mon_json_bignum(v);
	char elem[200];
	size_t i;
	json_t *e;
	int ret;

	if (big)
		return mon_arg_check_bignum(a, big, name, res);
	switch (a->type) {
	case MON_ARG_STR:
		if (!json_is_string(v))
			break;
		return 0;
	case MON_ARG_STR_OR_NULL:
		if (!json_is_string(v) && !json_is_null(v))
			break;
		return 0;
	case MON_ARG_INT:
		if (!json_is_integer(v))
			break;
		return 0;
	case MON_ARG_UINT:
		if (!json_is_integer(v))
			break;
		if (json_integer_value(v) < 0)
			return mon_result_error(
				res, NULL, "Parameter '%s' expects a non-negative integer", name);
		return 0;
	case MON_ARG_BOOL:
		if (!json_is_boolean(v))
			break;
		return 0;
	case MON_ARG_ENUM:
		return mon_arg_check_enum(a, v, name, res);
	case MON_ARG_ENUM_ARRAY:
	case MON_ARG_OBJ_ARRAY:
		if (!json_is_array(v))
			break;
		json_array_foreach(v, i, e)
		{
			snprintf(elem, sizeof(elem), "%s[%zu]", name, i);
			if (a->type == MON_ARG_ENUM_ARRAY) {
				ret = mon_arg_check_enum(a, e, elem, res);
			} else if (!json_is_object(e)) {
				ret = mon_result_error(
					res, NULL, "Invalid parameter type for '%s', expected: %s",
					elem, "object");
			} else {
				ret = mon_args_check(a->fields, e, elem, res);
			}
			if (ret)
				return ret;
		}
		return 0;
	case MON_ARG_END:
		break;
	}
	return mon_result_error(res, NULL, "Invalid parameter type for '%s', expected: %s", name,
				mon_arg_type_name(a->type));
}

/* The members of a flat union's case, if @spec has a tag that @args gives. */
static const struct mon_arg_spec *mon_args_variant(const struct mon_arg_spec *spec, json_t *args)
{
	const struct mon_arg_variant *var;
	const char *tag;

	for (; spec && spec->type != MON_ARG_END; spec++) {
		if (!spec->variants)
			continue;
		tag = json_string_value(json_object_get(args, spec->name));
		for (var = spec->variants; tag && var->value; var++)
			if (!strcmp(var->value, tag))
				return var->members;
	}
	return NULL;
}

static bool mon_args_known(const struct mon_arg_spec *spec, const char *key)
{
	for (; spec && spec->type != MON_ARG_END; spec++)
		if (!strcmp(spec->name, key))
			return true;
	return false;
}

static int mon_args_check_members(const struct mon_arg_spec *spec, json_t *args, const char *prefix,
				  struct mon_result *res)
{
	const struct mon_arg_spec *a;
	char name[160];
	json_t *v;
	int ret;

	for (a = spec; a && a->type != MON_ARG_END; a++) {
		if (prefix)
			snprintf(name, sizeof(name), "%s.%s", prefix, a->name);
		else
			snprintf(name, sizeof(name), "%s", a->name);
		v = json_object_get(args, a->name);
		if (!v) {
			if (!a->optional)
				return mon_result_error(res, NULL, "Parameter '%s' is missing",
							name);
			continue;
		}
		ret = mon_arg_check_one(a, v, name, res);
		if (ret)
			return ret;
		/*
		 * A uint64 above INT64_MAX: clamped.  Every such parameter is a
		 * size, count or time for which that is "no limit" or out of range.
		 */
		if (mon_json_bignum(v) &&
		    json_object_set_new(args, a->name, json_integer(INT64_MAX)))
			return mon_result_error(res, NULL, "out of memory");
	}
	return 0;
}

int mon_args_check(const struct mon_arg_spec *spec, json_t *args, const char *prefix,
		   struct mon_result *res)
{
	const struct mon_arg_spec *variant;
	const char *key;
	json_t *v;
	int ret;

	/*
	 * Members in schema order first, as QEMU's visitor does (a flat
	 * union's case after its base), then leftovers.
	 */
	ret = mon_args_check_members(spec, args, prefix, res);
	if (ret)
		return ret;
	variant = mon_args_variant(spec, args);
	ret = mon_args_check_members(variant, args, prefix, res);
	if (ret)
		return ret;
	json_object_foreach(args, key, v)
	{
		if (!mon_args_known(spec, key) && !mon_args_known(variant, key)) {
			if (prefix)
				return mon_result_error(
					res, NULL, "Parameter '%s.%s' is unexpected", prefix, key);
			return mon_result_error(res, NULL, "Parameter '%s' is unexpected", key);
		}
	}
	return 0;
}

static bool mon_json_is_str(json_t *v)
{
	return json_is_string(v) && !mon_json_bignum(v);
}

/*
 * The QMP envelope: execute (or, with @oob, exec-oob), arguments and id
 * only (QEMU's qmp_dispatch_check_obj()).  QEMU walks the members in its
 * hash order, which puts exec-oob before execute: a request with both
 * gets "'execute' clashes with 'exec-oob'" whatever order it has.
 */
static int mon_request_check_envelope(json_t *root, bool oob, struct mon_result *res)
{
	json_t *v, *exec_oob = json_object_get(root, "exec-oob");
	const char *key;

	if (exec_oob && !oob)
		return mon_result_error(res, NULL, "QMP input member '%s' is unexpected",
					"exec-oob");
	if (exec_oob && !mon_json_is_str(exec_oob))
		return mon_result_error(res, NULL, "QMP input member '%s' must be a string",
					"exec-oob");
	json_object_foreach(root, key, v)
	{
		if (!strcmp(key, "execute")) {
			if (!mon_json_is_str(v))
				return mon_result_error(
					res, NULL, "QMP input member 'execute' must be a string");
			if (exec_oob)
				return mon_result_error(res, NULL,
							"QMP input member '%s' clashes with '%s'",
							"execute", "exec-oob");
		} else if (!strcmp(key, "arguments")) {
			if (!json_is_object(v))
				return mon_result_error(
					res, NULL,
					"QMP input member 'arguments' must be an object");
		} else if (strcmp(key, "id") != 0 && strcmp(key, "exec-oob") != 0) {
			return mon_result_error(res, NULL, "QMP input member '%s' is unexpected",
						key);
		}
	}
	if (!exec_oob && !json_object_get(root, "execute"))
		return mon_result_error(res, NULL, "QMP input lacks member 'execute'");
	return 0;
}

/* The command a checked envelope names, and whether it came by exec-oob. */
static const char *mon_request_command(json_t *root, bool *oob)
{
	json_t *execute = json_object_get(root, "execute");

	*oob = !execute;
	return json_string_value(execute ? execute : json_object_get(root, "exec-oob"));
}

/*
 * The checks between lookup and arguments, in QEMU's order: the command
 * exists, it may run out of band if asked to, and negotiation allows it.
 */
static int mon_request_check_cmd(const struct mon_cmd *cmd, const char *name, bool oob,
				 bool negotiated, struct mon_result *res)
{
	if (!negotiated && (!cmd || !(cmd->flags & MON_CMD_CAPABILITIES)))
		return mon_result_error(
			res, MON_ERR_NOT_FOUND,
			"Expecting capabilities negotiation with 'qmp_capabilities'");
	if (!cmd)
		return mon_result_error(res, MON_ERR_NOT_FOUND, "The command %s has not been found",
					name);
	if (oob && !(cmd->flags & MON_CMD_ALLOW_OOB))
		return mon_result_error(res, NULL, "The command %s does not support OOB", name);
	if (negotiated && (cmd->flags & MON_CMD_CAPABILITIES))
		return mon_result_error(res, MON_ERR_NOT_FOUND,
					"Capabilities negotiation is already complete, command "
					"ignored");
	return 0;
}

int mon_request_parse(const char *data, size_t len, bool negotiated, struct mon_request *req,
		      struct mon_result *res)
{
	return mon_request_parse_oob(data, len, negotiated, false, req, res);
}

int mon_request_parse_oob(const char *data, size_t len, bool negotiated, bool oob,
			  struct mon_request *req, struct mon_result *res)
{
	const struct mon_cmd *cmd;
	json_error_t jerr;
	const char *name;
	json_t *root, *args;
	int ret;

	memset(req, 0, sizeof(*req));
	root = mon_json_load(data, len, &req->id_text, &jerr);
	if (!root)
		return mon_result_error(res, NULL, "JSON parse error, %s", jerr.text);
	if (!json_is_object(root)) {
		ret = mon_result_error(res, NULL, "QMP input must be a JSON object");
		goto out;
	}
	/* From here on every error reply can carry the id. */
	req->id = json_incref(json_object_get(root, "id"));
	ret = mon_request_check_envelope(root, oob, res);
	if (ret)
		goto out;
	name = mon_request_command(root, &req->oob);
	cmd = mon_cmd_find(name);
	ret = mon_request_check_cmd(cmd, name, req->oob, negotiated, res);
	if (ret)
		goto out;
	args = json_object_get(root, "arguments");
	args = args ? json_incref(args) : json_object();
	if (!args) {
		ret = mon_result_error(res, NULL, "out of memory");
		goto out;
	}
	ret = mon_args_check(cmd->args, args, NULL, res);
	if (ret) {
		json_decref(args);
		goto out;
	}
	if (cmd->flags & MON_CMD_HMP) {
		/* Runs where the mapped QMP command runs, with its flags (quit). */
		mon_hmp_route(cmd, args, &req->hmp);
		cmd = &req->hmp;
	}
	req->cmd = cmd;
	req->args = args;
out:
	json_decref(root);
	return ret;
}

bool mon_request_is_oob(const char *data, size_t len)
{
	json_error_t jerr;
	char *id_text = NULL;
	json_t *root = mon_json_load(data, len, &id_text, &jerr);
	bool oob = json_is_object(root) && json_object_get(root, "exec-oob") &&
		   !json_object_get(root, "execute");

	json_decref(root);
	free(id_text);
	return oob;
}

void mon_capabilities_check(json_t *args, struct mon_result *res)
{
	/*
	 * The schema already limited the values to QEMU's QMPCapability
	 * names, and cleave offers each of them ('oob'): nothing to refuse.
	 */
	(void)args;
	res->ret = json_object();
}

bool mon_capabilities_oob(json_t *args)
{
	json_t *enable = json_object_get(args, "enable");
	size_t i;
	json_t *v;

	json_array_foreach(enable, i, v)
	{
		if (!strcmp(json_string_value(v), "oob"))
			return true;
	}
	return false;
}

char *mon_json_format(json_t *obj, size_t *len)
{
	char *s, *line;
	size_t n;

	/* jansson's default separators (", " and ": ") are QEMU's. */
	s = json_dumps(obj, 0);
	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + 3);
	if (!line) {
		free(s);
		return NULL;
	}
	memcpy(line + n, "\r\n", 3);
	*len = n + 2;
	return line;
}

static json_t *mon_reply_error(const char *cls, const char *desc)
{
	return json_pack("{s:{s:s,s:s}}", "error", "class", cls, "desc", desc);
}

/*
 * The reply object for @res.  An error whose desc is not UTF-8 (a backend's
 * text relayed as it came) and a result that cannot be encoded become a
 * GenericError (that desc with its bad bytes replaced): the client always
 * gets an answer.  NULL only when memory ran out.
 */
static json_t *mon_reply_build(const struct mon_result *res)
{
	char desc[MON_ERR_DESC_LEN];
	json_t *reply;

	if (res->err_class) {
		reply = mon_reply_error(res->err_class, res->err_desc);
		if (reply)
			return reply;
		utf8_copy_valid(desc, sizeof(desc), res->err_desc);
		return mon_reply_error(MON_ERR_GENERIC, desc);
	}
	if (res->ret)
		reply = json_pack("{s:O}", "return", res->ret);
	else
		reply = json_pack("{s:{}}", "return");
	if (reply)
		return reply;
	return mon_reply_error(MON_ERR_GENERIC, "the command's result could not be encoded");
}

char *mon_reply_format(json_t *id, const struct mon_result *res, size_t *len)
{
	char *text = NULL, *line;

	if (id) {
		text = json_dumps(id, JSON_ENCODE_ANY);
		if (!text)
			return NULL;
	}
	line = mon_reply_format_text(text, res, len);
	free(text);
	return line;
}

char *mon_reply_format_text(const char *id_text, const struct mon_result *res, size_t *len)
{
	size_t n, idn = id_text ? strlen(id_text) : 0;
	json_t *reply;
	char *s, *line;

	reply = mon_reply_build(res);
	if (!reply)
		return NULL;
	s = json_dumps(reply, 0);
	json_decref(reply);
	if (!s)
		return NULL;
	n = strlen(s);
	line = realloc(s, n + idn + sizeof(", \"id\": }\r\n"));
	if (!line) {
		free(s);
		return NULL;
	}
	if (id_text) {
		/* The id goes last, as QEMU puts it: "...}" becomes "..., "id": ID}". */
		n--;
		n += (size_t)sprintf(line + n, ", \"id\": %s}", id_text);
	}
	memcpy(line + n, "\r\n", 3);
	*len = n + 2;
	return line;
}
