// SPDX-License-Identifier: GPL-2.0-only
/*
 * QEMU's user-creatable objects that configure migration TLS: object-add
 * and object-del of tls-creds-x509, tls-creds-psk, authz-simple and
 * authz-list (qapi/qom.json), and what migrate-set-parameters sends the
 * migrator of the objects its tls-creds and tls-authz name
 * (docs/MIGRATION.md, "Authentication").
 *
 * The objects live here, like QEMU's /objects container: one table for
 * the process, reached only through these functions, under its lock.  The
 * monitor does not keep them across a restart; the migrator's parameters,
 * which hold what it needs of the objects in use, do survive, and a new
 * monitor re-creates those objects from them (mon_objects_recover).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "migrator/mig-limits.h"
#include "monitor/qmp-cmds-internal.h"
#include "proto/rpc.h"

#define MON_MAX_OBJECTS 64

enum mon_obj_type {
	MON_OBJ_TLS_X509,
	MON_OBJ_TLS_PSK,
	MON_OBJ_AUTHZ_SIMPLE,
	MON_OBJ_AUTHZ_LIST,
};

struct mon_object {
	char id[MIG_TLS_ID_LEN];
	enum mon_obj_type type;
	json_t *props; /* the checked object-add arguments; owned */
};

/* The lock protects every field. */
static struct {
	pthread_mutex_t lock;
	struct mon_object objs[MON_MAX_OBJECTS];
	size_t nr;
} mon_objects = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* ---- object-add / object-del arguments (QEMU 7.2's qapi/qom.json) ---------- */

static const char *const mon_endpoints[] = {"client", "server", NULL};
static const char *const mon_authz_policies[] = {"deny", "allow", NULL};
static const char *const mon_authz_formats[] = {"exact", "glob", NULL};

/* TlsCredsProperties and its two subtypes. */
#define MON_TLS_CREDS_MEMBERS                                                                      \
	{.name = "verify-peer", .type = MON_ARG_BOOL, .optional = true},                           \
		{.name = "dir", .type = MON_ARG_STR, .optional = true},                            \
		{.name = "endpoint",                                                               \
		 .type = MON_ARG_ENUM,                                                             \
		 .optional = true,                                                                 \
		 .values = mon_endpoints},                                                         \
	{                                                                                          \
		.name = "priority", .type = MON_ARG_STR, .optional = true                          \
	}

static const struct mon_arg_spec mon_args_tls_creds_anon[] = {
	MON_TLS_CREDS_MEMBERS,
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_tls_creds_x509[] = {
	MON_TLS_CREDS_MEMBERS,
	{.name = "sanity-check", .type = MON_ARG_BOOL, .optional = true},
	{.name = "passwordid", .type = MON_ARG_STR, .optional = true},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_tls_creds_psk[] = {
	MON_TLS_CREDS_MEMBERS,
	{.name = "username", .type = MON_ARG_STR, .optional = true},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_authz_simple[] = {
	{.name = "identity", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_authz_rule[] = {
	{.name = "match", .type = MON_ARG_STR},
	{.name = "policy", .type = MON_ARG_ENUM, .values = mon_authz_policies},
	{.name = "format", .type = MON_ARG_ENUM, .optional = true, .values = mon_authz_formats},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_authz_list[] = {
	{.name = "policy", .type = MON_ARG_ENUM, .optional = true, .values = mon_authz_policies},
	{.name = "rules",
	 .type = MON_ARG_OBJ_ARRAY,
	 .optional = true,
	 .fields = mon_args_authz_rule},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_authz_listfile[] = {
	{.name = "filename", .type = MON_ARG_STR},
	{.name = "refresh", .type = MON_ARG_BOOL, .optional = true},
	{.type = MON_ARG_END},
};

static const struct mon_arg_spec mon_args_authz_pam[] = {
	{.name = "service", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

/*
 * The ObjectType values cleave knows: the four it implements, and three
 * that a migration's TLS could name, refused with the reason.  Any other
 * is "does not accept value".
 */
static const char *const mon_qom_types[] = {
	"authz-list",	  "authz-listfile", "authz-pam",      "authz-simple",
	"tls-creds-anon", "tls-creds-psk",  "tls-creds-x509", NULL,
};

static const struct mon_arg_variant mon_object_variants[] = {
	{"authz-list", mon_args_authz_list},	     {"authz-listfile", mon_args_authz_listfile},
	{"authz-pam", mon_args_authz_pam},	     {"authz-simple", mon_args_authz_simple},
	{"tls-creds-anon", mon_args_tls_creds_anon}, {"tls-creds-psk", mon_args_tls_creds_psk},
	{"tls-creds-x509", mon_args_tls_creds_x509}, {NULL, NULL},
};

const struct mon_arg_spec mon_args_object_add[] = {
	{.name = "qom-type",
	 .type = MON_ARG_ENUM,
	 .values = mon_qom_types,
	 .variants = mon_object_variants},
	{.name = "id", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

const struct mon_arg_spec mon_args_object_del[] = {
	{.name = "id", .type = MON_ARG_STR},
	{.type = MON_ARG_END},
};

/* ---- the table ----------------------------------------------------------- */

/* Caller holds the lock. */
static struct mon_object *mon_object_find(const char *id)
{
	for (size_t i = 0; i < mon_objects.nr; i++)
		if (!strcmp(mon_objects.objs[i].id, id))
			return &mon_objects.objs[i];
	return NULL;
}

/* QEMU's id_wellformed(): letters, digits, '-', '.', '_', starting with a letter. */
static bool mon_id_wellformed(const char *id)
{
	if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z')))
		return false;
	for (; *id; id++)
		if (!((*id >= 'a' && *id <= 'z') || (*id >= 'A' && *id <= 'Z') ||
		      (*id >= '0' && *id <= '9') || *id == '-' || *id == '.' || *id == '_'))
			return false;
	return true;
}

static const char *mon_prop_str(json_t *props, const char *name)
{
	return json_string_value(json_object_get(props, name));
}

/* A string property the migrator keeps in a field of @size bytes. */
static int mon_prop_fits(json_t *props, const char *name, size_t size, struct mon_result *res)
{
	const char *v = mon_prop_str(props, name);
	char err[128];

	if (v && mig_check_tls_string(name, v, size, err, sizeof(err)))
		return mon_result_error(res, NULL, "%s", err);
	return 0;
}

/*
 * What cleave can do of a TLS credentials object: load nothing (the
 * migrator loaded cleave run's credentials before its sandbox closed; the
 * directory is checked against them by migrate-set-parameters), always
 * verify the peer, TLS 1.3 with GnuTLS's defaults.
 */
static int mon_tls_creds_check(json_t *args, bool psk, struct mon_result *res)
{
	json_t *v = json_object_get(args, "verify-peer");

	if (!mon_prop_str(args, "dir"))
		return mon_result_error(res, NULL, "Missing 'dir' property value");
	if (v && !json_is_true(v))
		return mon_result_error(res, NULL,
					"Parameter 'verify-peer': false is not supported: cleave's "
					"migrations always authenticate both ends");
	if (json_object_get(args, "priority"))
		return mon_result_error(
			res, NULL,
			"Parameter 'priority' is not supported: cleave's migrations "
			"use TLS 1.3 with GnuTLS's default priorities");
	if (json_object_get(args, "passwordid"))
		return mon_result_error(
			res, NULL,
			"Parameter 'passwordid' is not supported: the key must be "
			"unencrypted (the migrator reads it before its sandbox closes)");
	v = json_object_get(args, "sanity-check");
	if (v && !json_is_true(v))
		return mon_result_error(res, NULL,
					"Parameter 'sanity-check': false is not supported");
	if (mon_prop_fits(args, "dir", MIG_TLS_PATH_LEN - (psk ? strlen("/keys.psk") : 0), res))
		return -EINVAL;
	return psk ? mon_prop_fits(args, "username", MIG_TLS_ID_LEN, res) : 0;
}

static int mon_authz_check(json_t *args, enum mon_obj_type type, struct mon_result *res)
{
	json_t *rules = json_object_get(args, "rules"), *r;
	char name[64];
	size_t i;

	if (type == MON_OBJ_AUTHZ_SIMPLE)
		return mon_prop_fits(args, "identity", MIG_TLS_MATCH_LEN, res);
	if (json_array_size(rules) > MIG_TLS_MAX_RULES)
		return mon_result_error(res, NULL, "Parameter 'rules' expects at most %d rules",
					MIG_TLS_MAX_RULES);
	json_array_foreach(rules, i, r)
	{
		snprintf(name, sizeof(name), "rules[%zu].match", i);
		if (strlen(mon_prop_str(r, "match")) >= MIG_TLS_MATCH_LEN)
			return mon_result_error(
				res, NULL, "Parameter '%s' expects a string of at most %d bytes",
				name, MIG_TLS_MATCH_LEN - 1);
	}
	return 0;
}

void mon_cmd_object_add(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	const char *qom_type = mon_prop_str(args, "qom-type");
	const char *id = mon_prop_str(args, "id");
	enum mon_obj_type type;
	struct mon_object *o;
	char err[128];
	int ret;

	if (!strcmp(qom_type, "tls-creds-x509"))
		type = MON_OBJ_TLS_X509;
	else if (!strcmp(qom_type, "tls-creds-psk"))
		type = MON_OBJ_TLS_PSK;
	else if (!strcmp(qom_type, "authz-simple"))
		type = MON_OBJ_AUTHZ_SIMPLE;
	else if (!strcmp(qom_type, "authz-list"))
		type = MON_OBJ_AUTHZ_LIST;
	else if (!strcmp(qom_type, "tls-creds-anon"))
		return (void)mon_result_error(res, NULL,
					      "Object type 'tls-creds-anon' is not supported: "
					      "cleave's migrations always authenticate both ends "
					      "(tls-creds-x509 or tls-creds-psk)");
	else
		return (void)mon_result_error(res, NULL,
					      "Object type '%s' is not supported: the migrator's "
					      "sandbox can neither read files nor use PAM after it "
					      "starts (use authz-simple or authz-list)",
					      qom_type);
	if (!mon_id_wellformed(id))
		return (void)mon_result_error(res, NULL, "Parameter '%s' expects %s", "id",
					      "an identifier");
	if (mig_check_tls_string("id", id, MIG_TLS_ID_LEN, err, sizeof(err)))
		return (void)mon_result_error(res, NULL, "%s", err);
	if (type == MON_OBJ_TLS_X509 || type == MON_OBJ_TLS_PSK)
		ret = mon_tls_creds_check(args, type == MON_OBJ_TLS_PSK, res);
	else
		ret = mon_authz_check(args, type, res);
	if (ret)
		return;
	pthread_mutex_lock(&mon_objects.lock);
	if (mon_object_find(id)) {
		mon_result_error(res, NULL,
				 "attempt to add duplicate property '%s' to object (type '%s')", id,
				 "container");
	} else if (mon_objects.nr == MON_MAX_OBJECTS) {
		mon_result_error(res, NULL, "Object '%s': cleave keeps at most %d objects", id,
				 MON_MAX_OBJECTS);
	} else {
		o = &mon_objects.objs[mon_objects.nr];
		o->props = json_deep_copy(args);
		if (!o->props) {
			mon_result_error(res, NULL, "out of memory");
		} else {
			snprintf(o->id, sizeof(o->id), "%s", id);
			o->type = type;
			mon_objects.nr++;
			res->ret = json_object();
		}
	}
	pthread_mutex_unlock(&mon_objects.lock);
}

/*
 * On the migrator worker, as migrate-set-parameters: "in use" is what the
 * migrator's parameters name now, and no set can come in between.
 */
void mon_cmd_object_del(struct mon_ctx *ctx, json_t *args, struct mon_result *res)
{
	Cleave__Migrator__Empty req = CLEAVE__MIGRATOR__EMPTY__INIT;
	Cleave__Migrator__Parameters *p = NULL;
	const char *id = mon_prop_str(args, "id");
	struct mon_object *o;
	bool found, in_use;

	pthread_mutex_lock(&mon_objects.lock);
	found = mon_object_find(id) != NULL;
	pthread_mutex_unlock(&mon_objects.lock);
	if (!found)
		return (void)mon_result_error(res, NULL, "object '%s' not found", id);
	/* Without the migrator's answer, in use or not is unknown: kept. */
	if (mon_backend_call(ctx, MON_BACKEND_MIGRATOR,
			     CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, &req,
			     &cleave__migrator__parameters__descriptor, (void **)&p, res))
		return;
	in_use = (p->tls_creds && !strcmp(p->tls_creds, id)) ||
		 (p->tls_authz && !strcmp(p->tls_authz, id));
	rpc_msg_free(&p->base);
	if (in_use)
		return (void)mon_result_error(res, NULL,
					      "object '%s' is in use, can not be deleted", id);
	pthread_mutex_lock(&mon_objects.lock);
	o = mon_object_find(id);
	if (o) {
		json_decref(o->props);
		*o = mon_objects.objs[--mon_objects.nr];
	}
	pthread_mutex_unlock(&mon_objects.lock);
	res->ret = json_object();
}

/* Adds @props as object @id unless one has that id (a client was first). */
static void mon_object_recreate(const char *id, enum mon_obj_type type, json_t *props)
{
	pthread_mutex_lock(&mon_objects.lock);
	if (props && !mon_object_find(id) && mon_objects.nr < MON_MAX_OBJECTS &&
	    strlen(id) < MIG_TLS_ID_LEN) {
		struct mon_object *o = &mon_objects.objs[mon_objects.nr++];

		snprintf(o->id, sizeof(o->id), "%s", id);
		o->type = type;
		o->props = props;
		props = NULL;
	}
	pthread_mutex_unlock(&mon_objects.lock);
	json_decref(props);
}

void mon_objects_recover(const Cleave__Migrator__Parameters *p)
{
	const Cleave__Migrator__TlsCreds *c = p->tls_creds_object;
	const Cleave__Migrator__TlsAuthz *a = p->tls_authz_object;
	const char *id = p->tls_creds ? p->tls_creds : "";
	size_t n;

	/* '#': cleave run's own (no object); an object serves one end. */
	if (id[0] && id[0] != '#' && c && c->path && c->client != c->server) {
		char dir[MIG_TLS_PATH_LEN];

		n = strlen(c->path);
		snprintf(dir, sizeof(dir), "%s", c->path);
		if (c->psk && n > strlen("/keys.psk") &&
		    !strcmp(c->path + n - strlen("/keys.psk"), "/keys.psk"))
			dir[n - strlen("/keys.psk")] = '\0';
		if (!c->psk || strlen(dir) < n) {
			json_t *props =
				json_pack("{s:s,s:s,s:s,s:s}", "qom-type",
					  c->psk ? "tls-creds-psk" : "tls-creds-x509", "id", id,
					  "dir", dir, "endpoint", c->server ? "server" : "client");

			if (props && c->psk && c->username && c->username[0])
				json_object_set_new(props, "username", json_string(c->username));
			mon_object_recreate(id, c->psk ? MON_OBJ_TLS_PSK : MON_OBJ_TLS_X509, props);
		}
	}
	id = p->tls_authz ? p->tls_authz : "";
	if (id[0] && id[0] != '#' && a) {
		/* An authz-simple comes back as the authz-list that means the same. */
		json_t *rules = json_array(), *props;

		for (n = 0; rules && n < a->n_rules; n++)
			json_array_append_new(
				rules, json_pack("{s:s,s:s,s:s}", "match",
						 a->rules[n]->match ? a->rules[n]->match : "",
						 "policy", a->rules[n]->allow ? "allow" : "deny",
						 "format", a->rules[n]->glob ? "glob" : "exact"));
		props = json_pack("{s:s,s:s,s:s,s:o}", "qom-type", "authz-list", "id", id, "policy",
				  a->allow ? "allow" : "deny", "rules", rules);
		mon_object_recreate(id, MON_OBJ_AUTHZ_LIST, props);
	}
}

void mon_objects_clear(void)
{
	pthread_mutex_lock(&mon_objects.lock);
	for (size_t i = 0; i < mon_objects.nr; i++)
		json_decref(mon_objects.objs[i].props);
	mon_objects.nr = 0;
	pthread_mutex_unlock(&mon_objects.lock);
}

/* ---- what migrate-set-parameters sends ------------------------------------- */

void mon_tls_objects_fini(struct mon_tls_objects *t)
{
	json_decref(t->creds_props);
	json_decref(t->authz_props);
	t->creds_props = t->authz_props = NULL;
}

/* Takes a reference to @id's properties: its strings stay valid after the lock. */
static json_t *mon_object_props(const char *id, enum mon_obj_type *type)
{
	struct mon_object *o;
	json_t *props = NULL;

	pthread_mutex_lock(&mon_objects.lock);
	o = mon_object_find(id);
	if (o) {
		props = json_incref(o->props);
		*type = o->type;
	}
	pthread_mutex_unlock(&mon_objects.lock);
	return props;
}

int mon_tls_objects_creds(struct mon_tls_objects *t, const char *id, struct mon_result *res)
{
	Cleave__Migrator__TlsCreds *c = &t->creds;
	enum mon_obj_type type;
	const char *endpoint;

	cleave__migrator__tls_creds__init(c);
	t->creds_props = mon_object_props(id, &type);
	if (!t->creds_props)
		return mon_result_error(res, NULL, "No TLS credentials with id '%s'", id);
	if (type != MON_OBJ_TLS_X509 && type != MON_OBJ_TLS_PSK)
		return mon_result_error(res, NULL, "Object with id '%s' is not TLS credentials",
					id);
	endpoint = mon_prop_str(t->creds_props, "endpoint");
	c->psk = type == MON_OBJ_TLS_PSK;
	c->dir = (char *)mon_prop_str(t->creds_props, "dir");
	/* QEMU's default endpoint is client. */
	c->server = endpoint && !strcmp(endpoint, "server");
	c->client = !c->server;
	c->username = (char *)(mon_prop_str(t->creds_props, "username") ?: "");
	return 0;
}

int mon_tls_objects_authz(struct mon_tls_objects *t, const char *id, struct mon_result *res)
{
	Cleave__Migrator__TlsAuthz *a = &t->authz;
	json_t *rules, *r;
	enum mon_obj_type type;
	const char *policy;
	size_t i;

	cleave__migrator__tls_authz__init(a);
	t->authz_props = mon_object_props(id, &type);
	if (!t->authz_props)
		return mon_result_error(res, NULL, "Cannot find QAuthZ object ID %s", id);
	if (type != MON_OBJ_AUTHZ_SIMPLE && type != MON_OBJ_AUTHZ_LIST)
		return mon_result_error(res, NULL, "Object '%s' is not a QAuthZ subclass", id);
	a->rules = t->rule_ptrs;
	if (type == MON_OBJ_AUTHZ_SIMPLE) {
		/* QEMU's authz-simple: exactly this identity. */
		cleave__migrator__tls_authz_rule__init(&t->rules[0]);
		t->rules[0].match = (char *)mon_prop_str(t->authz_props, "identity");
		t->rules[0].allow = true;
		t->rule_ptrs[0] = &t->rules[0];
		a->n_rules = 1;
		a->allow = false;
		return 0;
	}
	policy = mon_prop_str(t->authz_props, "policy");
	a->allow = policy && !strcmp(policy, "allow"); /* QEMU's default: deny */
	rules = json_object_get(t->authz_props, "rules");
	json_array_foreach(rules, i, r)
	{
		const char *format = mon_prop_str(r, "format");

		if (i == MIG_TLS_MAX_RULES)
			break; /* object-add refused more */
		cleave__migrator__tls_authz_rule__init(&t->rules[i]);
		t->rules[i].match = (char *)mon_prop_str(r, "match");
		t->rules[i].allow = !strcmp(mon_prop_str(r, "policy"), "allow");
		t->rules[i].glob = format && !strcmp(format, "glob");
		t->rule_ptrs[i] = &t->rules[i];
		a->n_rules++;
	}
	return 0;
}
