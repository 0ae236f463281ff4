// SPDX-License-Identifier: GPL-2.0-only
/*
 * query-qmp-schema, built from the command table at run time: exactly the
 * commands and arguments cleave accepts, in QEMU's SchemaInfo shape
 * (qapi/introspect.json).  Type names other than builtins are numbers, as
 * QEMU masks them; a command's ret-type is "any" unless its table entry
 * describes it (.ret); no events are listed.
 */
#include <stdio.h>
#include <string.h>

#include "monitor/qmp-cmds-internal.h"

struct mon_schema {
	json_t *list;  /* SchemaInfo entries */
	unsigned next; /* next type number; "0" is the empty object */
};

static const char *mon_schema_name(struct mon_schema *sc, char buf[16])
{
	snprintf(buf, 16, "%u", sc->next++);
	return buf;
}

static int mon_schema_add(struct mon_schema *sc, json_t *info)
{
	return info ? json_array_append_new(sc->list, info) : -1;
}

static json_t *mon_schema_enum(struct mon_schema *sc, const char *const *values)
{
	json_t *vals = json_array(), *members = json_array();
	char name[16];

	for (; vals && members && *values; values++) {
		json_array_append_new(vals, json_string(*values));
		json_array_append_new(members, json_pack("{s:s}", "name", *values));
	}
	mon_schema_name(sc, name);
	if (mon_schema_add(sc, json_pack("{s:s,s:s,s:o,s:o}", "name", name, "meta-type", "enum",
					 "members", members, "values", vals)))
		return NULL;
	return json_string(name);
}

static json_t *mon_schema_object(struct mon_schema *sc, const struct mon_arg_spec *spec);

static json_t *mon_schema_array(struct mon_schema *sc, json_t *elem)
{
	char name[80];

	if (!elem)
		return NULL;
	snprintf(name, sizeof(name), "[%s]", json_string_value(elem));
	if (mon_schema_add(sc, json_pack("{s:s,s:s,s:o}", "name", name, "meta-type", "array",
					 "element-type", elem)))
		return NULL;
	return json_string(name);
}

/* QEMU's StrOrNull: an alternate of str and null. */
static json_t *mon_schema_alternate(struct mon_schema *sc)
{
	char name[16];

	mon_schema_name(sc, name);
	if (mon_schema_add(sc, json_pack("{s:s,s:s,s:[{s:s},{s:s}]}", "name", name, "meta-type",
					 "alternate", "members", "type", "str", "type", "null")))
		return NULL;
	return json_string(name);
}

/* A flat union's "variants": each case's members as an object type of its own. */
static json_t *mon_schema_variants(struct mon_schema *sc, const struct mon_arg_variant *var)
{
	json_t *list = json_array(), *type;

	for (; list && var->value; var++) {
		type = mon_schema_object(sc, var->members);
		if (!type || json_array_append_new(list, json_pack("{s:s,s:o}", "case", var->value,
								   "type", type))) {
			json_decref(list);
			return NULL;
		}
	}
	return list;
}

/* The type name of one argument (builtins "str", "int", "bool"); new types are added. */
static json_t *mon_schema_type(struct mon_schema *sc, const struct mon_arg_spec *a)
{
	switch (a->type) {
	case MON_ARG_STR:
		return json_string("str");
	case MON_ARG_INT:
	case MON_ARG_UINT:
		return json_string("int");
	case MON_ARG_BOOL:
		return json_string("bool");
	case MON_ARG_ENUM:
		return mon_schema_enum(sc, a->values);
	case MON_ARG_ENUM_ARRAY:
		return mon_schema_array(sc, mon_schema_enum(sc, a->values));
	case MON_ARG_OBJ_ARRAY:
		return mon_schema_array(sc, mon_schema_object(sc, a->fields));
	case MON_ARG_STR_OR_NULL:
		return mon_schema_alternate(sc);
	case MON_ARG_END:
		break;
	}
	return NULL;
}

/* An object type with @spec's members; NULL spec is the empty object "0". */
static json_t *mon_schema_object(struct mon_schema *sc, const struct mon_arg_spec *spec)
{
	json_t *members = json_array(), *m, *type, *variants = NULL, *obj;
	const char *tag = NULL;
	char name[16];

	if (!spec || spec->type == MON_ARG_END) {
		json_decref(members);
		return json_string("0");
	}
	for (; members && spec->type != MON_ARG_END; spec++) {
		if (spec->variants && !variants) {
			tag = spec->name;
			variants = mon_schema_variants(sc, spec->variants);
			if (!variants) {
				json_decref(members);
				return NULL;
			}
		}
		type = mon_schema_type(sc, spec);
		m = json_pack("{s:s,s:o}", "name", spec->name, "type", type);
		/* QEMU marks an optional member with "default": null. */
		if (!m || (spec->optional && json_object_set_new(m, "default", json_null())) ||
		    json_array_append_new(members, m)) {
			json_decref(members);
			json_decref(variants);
			return NULL;
		}
	}
	mon_schema_name(sc, name);
	obj = json_pack("{s:s,s:s,s:o}", "name", name, "meta-type", "object", "members", members);
	/* QEMU's flat union: the tag member and one object type per case. */
	if (obj && variants) {
		json_object_set_new(obj, "tag", json_string(tag));
		json_object_set_new(obj, "variants", variants); /* takes it, even on failure */
	} else {
		json_decref(variants);
	}
	if (mon_schema_add(sc, obj))
		return NULL;
	return json_string(name);
}

/* The return type's name: "any" unless the table entry describes it ("0": {}). */
static json_t *mon_schema_ret(struct mon_schema *sc, const struct mon_cmd *cmd)
{
	switch (cmd->ret) {
	case MON_RET_STR:
		return json_string("str");
	case MON_RET_OBJ_ARRAY:
		return mon_schema_array(sc, mon_schema_object(sc, cmd->ret_fields));
	case MON_RET_EMPTY:
		return json_string("0");
	case MON_RET_ANY:
		break;
	}
	return json_string("any");
}

/*
 * A command's SchemaInfo.  QEMU's introspection writes "allow-oob" only
 * for the commands that have it, always true; @arg and @ret are taken.
 */
static json_t *mon_schema_command(const struct mon_cmd *cmd, json_t *arg, json_t *ret)
{
	json_t *info = json_pack("{s:s,s:s,s:o,s:o}", "name", cmd->name, "meta-type", "command",
				 "arg-type", arg, "ret-type", ret);

	if (info && (cmd->flags & MON_CMD_ALLOW_OOB) &&
	    json_object_set_new(info, "allow-oob", json_true())) {
		json_decref(info);
		return NULL;
	}
	return info;
}

void mon_cmd_query_qmp_schema(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	static const char *const builtins[][2] = {{"str", "string"},
						  {"int", "int"},
						  {"bool", "boolean"},
						  {"null", "null"},
						  {"any", "value"}};
	struct mon_schema sc = {.list = json_array(), .next = 1};
	const struct mon_cmd *cmd;
	json_t *arg, *ret;
	size_t i;

	if (!sc.list)
		goto err;
	for (i = 0; i < mon_cmd_count(); i++) {
		cmd = mon_cmd_at(i);
		arg = mon_schema_object(&sc, cmd->args);
		ret = mon_schema_ret(&sc, cmd);
		if (!arg || !ret) {
			json_decref(arg);
			json_decref(ret);
			goto err;
		}
		if (mon_schema_add(&sc, mon_schema_command(cmd, arg, ret)))
			goto err;
	}
	if (mon_schema_add(&sc, json_pack("{s:s,s:s,s:[]}", "name", "0", "meta-type", "object",
					  "members")))
		goto err;
	for (i = 0; i < sizeof(builtins) / sizeof(builtins[0]); i++)
		if (mon_schema_add(&sc,
				   json_pack("{s:s,s:s,s:s}", "name", builtins[i][0], "meta-type",
					     "builtin", "json-type", builtins[i][1])))
			goto err;
	res->ret = sc.list;
	return;
err:
	json_decref(sc.list);
	mon_result_error(res, NULL, "out of memory");
}
