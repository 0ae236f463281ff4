/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * migrator.proto over the RPC layer: one handler per QMP migration command,
 * each a thin call into the session (never blocking on the network).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "migrator/migrator-process.h"

#define MIG_PLAINTEXT_REFUSED                                                                      \
	"a non-loopback address needs TLS credentials (migrate-set-parameters tls-creds; cleave "  \
	"run --migrate-tls-x509 DIR or --migrate-tls-psk FILE), or --migrate-insecure-plaintext"

/* The errors migrate and migrate-incoming share; @server: the destination end. */
static int srv_start_error(void *arg, int ret, const char *what, const char *uri, bool server,
			   struct rpc_reply *reply)
{
	char creds[MIG_TLS_ID_LEN] = "";
	struct mig_tls_params *tp;
	struct mig_info info;

	switch (ret) {
	case -EBUSY:
		return rpc_reply_error(reply, ret, "There's a migration process in progress");
	case -EPERM:
		return rpc_reply_error(reply, ret, "%s '%s': " MIG_PLAINTEXT_REFUSED, what, uri);
	case -EKEYREJECTED:
		/* QEMU's qcrypto_tls_creds_check_endpoint() */
		return rpc_reply_error(reply, ret, "Expected TLS credentials for a %s endpoint",
				       server ? "server" : "client");
	case -ENOKEY:
		tp = malloc(sizeof(*tp)); /* 18 KB: not on the RPC thread's stack */
		if (tp) {
			mig_session_get_tls(arg, tp);
			memcpy(creds, tp->creds, sizeof(creds));
			free(tp);
		}
		return rpc_reply_error(reply, ret,
				       "TLS credentials '%s' could not be set up when the "
				       "migrator started (its log says why): set tls-creds again",
				       creds);
	case -ENOTDIR:
		return rpc_reply_error(reply, ret,
				       "%s '%s': a snapshot file needs a snapshot directory "
				       "(cleave run --snapshot-dir DIR)",
				       what, uri);
	case -EXDEV:
		return rpc_reply_error(reply, ret,
				       "%s '%s': a snapshot is a file directly in the snapshot "
				       "directory %s, under a name that does not start with '.'",
				       what, uri, mig_session_snapshot_dir(arg));
	case -EOPNOTSUPP:
		return rpc_reply_error(
			reply, ret, "%s '%s': file: options (offset) are not supported", what, uri);
	case -ENODATA:
		mig_session_query(arg, &info);
		return rpc_reply_error(reply, ret,
				       "%s '%s': this guest lacks %" PRIu64
				       " pages its postcopy migration never brought (query-migrate "
				       "lists them); a migration would lose them: "
				       "x-cleave-postcopy-abandon with zero-fill first",
				       what, uri, info.postcopy_missing);
	case -EALREADY:
		return rpc_reply_error(
			reply, ret,
			"%s '%s': the dirty rate is being measured in mode "
			"dirty-bitmap (query-dirty-rate): migrate once it is measured",
			what, uri);
	default:
		return rpc_reply_error(reply, ret, "%s '%s': %s", what, uri, strerror(-ret));
	}
}

static int srv_migrate(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__MigrateRequest *r = (const void *)req;
	const char *uri = r->uri ? r->uri : "";
	int ret = r->resume ? mig_session_migrate_resume(arg, uri) : mig_session_migrate(arg, uri);

	if (ret == -ESRCH) /* QEMU's */
		return rpc_reply_error(reply, -EINVAL,
				       "Cannot resume if there is no paused migration");
	if (ret == -EINVAL && r->resume)
		return rpc_reply_error(
			reply, ret,
			"migrate resume '%s': a postcopy source moves only to a tcp: or "
			"unix: URI, and an fd: migration only resumes on its own",
			uri);
	return ret ? srv_start_error(arg, ret, "migrate to", uri, false, reply) : 0;
}

/* QEMU's text: migrate-pause holds only a postcopy migration (the source's RAM is still needed). */
static int srv_migrate_pause(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	if (!mig_session_pause(arg))
		return 0;
	return rpc_reply_error(reply, -EINVAL,
			       "migrate-pause is currently only supported during postcopy-active "
			       "state");
}

static int srv_migrate_recover(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__MigrateRecoverRequest *r = (const void *)req;
	const char *uri = r->uri ? r->uri : "";
	char err[512] = "";
	int ret = mig_session_recover(arg, uri, err, sizeof(err));

	if (!ret)
		return 0;
	if (err[0])
		return rpc_reply_error(reply, ret, "%s", err);
	return srv_start_error(arg, ret, "recover on", uri, true, reply);
}

static int srv_incoming(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__IncomingRequest *r = (const void *)req;
	const char *uri = r->uri ? r->uri : "";
	int ret = mig_session_incoming(arg, uri);

	return ret ? srv_start_error(arg, ret, "incoming on", uri, true, reply) : 0;
}

static int srv_cancel(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct mig_info info;
	int ret;

	mig_session_query(arg, &info);
	if (info.status == MIG_STATUS_UNKNOWN)
		return rpc_reply_error(reply, -EBUSY,
				       "the switchover was committed and its outcome is unknown: "
				       "x-cleave-migrate-resolve decides where the guest runs");
	ret = mig_session_cancel(arg);
	/* QEMU 9's text: the source's RAM is the only copy of the pages still due. */
	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret,
				       "Postcopy migration in progress, cannot cancel.");
	return ret;
}

/* QEMU 7.2's two checks of qmp_migrate_start_postcopy(), with its texts. */
static int srv_start_postcopy(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	int ret = mig_session_start_postcopy(arg);

	if (ret == -ENOPROTOOPT)
		return rpc_reply_error(reply, ret,
				       "Enable postcopy with migrate_set_capability before the "
				       "start of migration");
	if (ret == -ENOENT)
		return rpc_reply_error(reply, ret,
				       "Postcopy must be started after migration has been started");
	return ret;
}

/* -ENOENT with QEMU's text: the monitor makes it a DeviceNotFound. */
static int srv_yank(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	int ret = mig_session_yank(arg);

	return ret == -ENOENT ? rpc_reply_error(reply, ret, "Instance not found") : ret;
}

/*
 * What mig_session_yank() finds: a migration in progress, or a destination
 * still listening (role set, no status yet).
 */
static int srv_query_yank(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__YankInfo y = CLEAVE__MIGRATOR__YANK_INFO__INIT;
	struct mig_info info;

	mig_session_query(arg, &info);
	switch (info.status) {
	case MIG_STATUS_SETUP:
	case MIG_STATUS_ACTIVE:
	case MIG_STATUS_DEVICE:
	case MIG_STATUS_CANCELLING:
	case MIG_STATUS_POSTCOPY_ACTIVE:
	case MIG_STATUS_POSTCOPY_PAUSED:
		y.migration = true;
		break;
	case MIG_STATUS_NONE:
		y.migration = info.role == MIG_ROLE_DEST;
		break;
	default:
		break;
	}
	return rpc_reply_set(reply, &y.base);
}

static int srv_resolve(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__ResolveRequest *r = (const void *)req;
	const char *where = r->run_on ? r->run_on : "";
	struct mig_info info;
	int ret;

	if (strcmp(where, "source") && strcmp(where, "destination"))
		return rpc_reply_error(reply, -EINVAL,
				       "Parameter 'run-on' expects 'source' or 'destination'");
	ret = mig_session_resolve(arg, !strcmp(where, "source"));
	if (ret == -EINVAL) {
		mig_session_query(arg, &info);
		return rpc_reply_error(
			reply, ret,
			"no switchover with an unknown outcome to resolve (status: "
			"%s)",
			info.status == MIG_STATUS_NONE ? "none" : mig_status_name(info.status));
	}
	if (ret)
		return rpc_reply_error(reply, ret, "resolve: vcpu-proc: %s", strerror(-ret));
	return 0;
}

static int srv_postcopy_abandon(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__PostcopyAbandonRequest *r = (const void *)req;
	struct mig_info info;
	int ret = mig_session_postcopy_abandon(arg, r->zero_fill);

	if (!ret)
		return 0;
	mig_session_query(arg, &info);
	if (ret != -EINVAL)
		return rpc_reply_error(reply, ret,
				       "filling the %" PRIu64
				       " missing pages with zeros failed: %s (they stay missing)",
				       info.postcopy_missing, strerror(-ret));
	if (info.role == MIG_ROLE_DEST && info.status == MIG_STATUS_FAILED && info.postcopy_missing)
		return rpc_reply_error(reply, ret,
				       "the postcopy migration failed with %" PRIu64
				       " pages missing, which stay missing: only zero-fill is left "
				       "to do",
				       info.postcopy_missing);
	if (info.role == MIG_ROLE_SOURCE && info.status == MIG_STATUS_POSTCOPY_PAUSED)
		return rpc_reply_error(reply, -EINVAL,
				       "zero-fill is for a destination: a postcopy source gives up "
				       "without it");
	return rpc_reply_error(
		reply, -EINVAL, "no postcopy waiting for a lost peer to abandon (%s, status: %s)",
		info.role == MIG_ROLE_DEST     ? "destination"
		: info.role == MIG_ROLE_SOURCE ? "source"
					       : "no migration",
		info.status == MIG_STATUS_NONE ? "none" : mig_status_name(info.status));
}

void migrator_info_fill(const struct mig_info *info, Cleave__Migrator__MigrationInfo *mi,
			struct migrator_info_buf *buf)
{
	Cleave__Migrator__RamStats *ram = &buf->ram;
	size_t n = 0;

	mi->status = (char *)mig_status_name(info->status);
	if (info->status == MIG_STATUS_NONE)
		return; /* query-migrate: {} */
	mi->destination = info->role == MIG_ROLE_DEST;
	mi->postcopy_blocktime = info->postcopy_blocktime;
	mi->total_time = info->total_time_ms;
	mi->setup_time = info->setup_time_ms;
	mi->downtime = info->downtime_ms;
	mi->has_downtime = info->has_downtime;
	mi->expected_downtime = info->expected_downtime_ms;
	mi->has_expected_downtime = info->has_expected_downtime;
	mi->error_desc = (char *)info->error_desc;
	/* QEMU's RamStats, as QEMU names them. */
	cleave__migrator__ram_stats__init(ram);
	ram->transferred = info->transferred;
	ram->remaining = info->remaining;
	ram->total = info->total;
	ram->duplicate = info->duplicate;
	ram->normal = info->normal;
	ram->normal_bytes = info->normal_bytes;
	ram->mbps = info->mbps;
	ram->dirty_sync_count = info->rounds;
	ram->dirty_pages_rate = info->dirty_pages_rate;
	ram->page_size = info->page_size;
	ram->multifd_bytes = info->multifd_bytes;
	mi->ram = ram;
	mi->restarts = info->restarts;
	/* Every counter of the record by its name: the monitor picks what query-migrate shows. */
#define COUNTER_TO_REPLY(cname)                                                                    \
	cleave__migrator__counter__init(&buf->counters[n]);                                        \
	buf->counters[n].name = (char *)#cname;                                                    \
	buf->counters[n].value = info->cname;                                                      \
	buf->counter_ptrs[n] = &buf->counters[n];                                                  \
	n++;
	MIG_COUNTERS(COUNTER_TO_REPLY)
#undef COUNTER_TO_REPLY
	mi->n_counters = n;
	mi->counters = buf->counter_ptrs;
	mi->postcopy_missing = info->postcopy_missing;
	for (unsigned int i = 0; i < info->nr_missing_runs; i++) {
		cleave__migrator__page_run__init(&buf->runs[i]);
		buf->runs[i].gpa = info->missing_runs[i].gpa;
		buf->runs[i].size = info->missing_runs[i].size;
		buf->run_ptrs[i] = &buf->runs[i];
	}
	mi->n_postcopy_missing_runs = info->nr_missing_runs;
	mi->postcopy_missing_runs = buf->run_ptrs;
}

static int srv_query(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__MigrationInfo mi = CLEAVE__MIGRATOR__MIGRATION_INFO__INIT;
	struct migrator_info_buf buf;
	struct mig_info info;

	mig_session_query(arg, &info);
	migrator_info_fill(&info, &mi, &buf);
	return rpc_reply_set(reply, &mi.base);
}

static int srv_set_caps(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__Capabilities *r = (const void *)req;
	struct mig_caps caps;
	int ret;

	mig_session_get_caps(arg, &caps);
	if (r->has_multifd)
		caps.multifd = r->multifd;
	if (r->has_events)
		caps.events = r->events;
	if (r->has_auto_converge)
		caps.auto_converge = r->auto_converge;
	/* With multifd too, unlike QEMU: postcopy uses every multifd channel. */
	if (r->has_postcopy_ram)
		caps.postcopy_ram = r->postcopy_ram;
	if (r->has_postcopy_blocktime)
		caps.postcopy_blocktime = r->postcopy_blocktime;
	ret = mig_session_set_caps(arg, &caps);
	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret, "There's a migration process in progress");
	return ret;
}

static int srv_query_caps(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__Capabilities c = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	struct mig_caps caps;

	mig_session_get_caps(arg, &caps);
	c.multifd = caps.multifd;
	c.events = caps.events;
	c.auto_converge = caps.auto_converge;
	c.postcopy_ram = caps.postcopy_ram;
	c.postcopy_blocktime = caps.postcopy_blocktime;
	c.has_multifd = c.has_events = c.has_auto_converge = c.has_postcopy_ram = true;
	c.has_postcopy_blocktime = true;
	return rpc_reply_set(reply, &c.base);
}

/* "" or NULL: @v fits in @size (the field it goes to), else -EINVAL naming @param. */
static int srv_str(char *dst, size_t size, const char *param, const char *v, char *err,
		   size_t errlen)
{
	int ret = mig_check_tls_string(param, v ? v : "", size, err, errlen);

	if (!ret)
		memcpy(dst, v ? v : "", strlen(v ? v : "") + 1); /* checked: it fits */
	return ret;
}

/* tls-creds: off, cleave run's, or the object the monitor sent with it. */
static int srv_tls_creds(const Cleave__Migrator__Parameters *r, struct mig_tls_params *tp,
			 const struct mig_tls_params *run, char *err, size_t errlen)
{
	const Cleave__Migrator__TlsCreds *o = r->tls_creds_object;
	char path[MIG_TLS_PATH_LEN + 16];
	int ret = srv_str(tp->creds, sizeof(tp->creds), "tls-creds", r->tls_creds, err, errlen);

	if (ret)
		return ret;
	tp->kind = MIG_TLS_NONE;
	tp->endpoints = 0;
	tp->path[0] = tp->username[0] = '\0';
	if (!tp->creds[0])
		return 0;
	if (!strcmp(tp->creds, MIG_TLS_RUN_ID) && run) {
		tp->kind = run->kind;
		tp->endpoints = run->endpoints;
		memcpy(tp->path, run->path, sizeof(tp->path));
		memcpy(tp->username, run->username, sizeof(tp->username));
		return 0;
	}
	if (!o) {
		snprintf(err, errlen, "No TLS credentials with id '%s'", tp->creds);
		return -ENOENT;
	}
	/* QEMU's layout: a PSK object's keys are DIR/keys.psk. */
	snprintf(path, sizeof(path), "%s%s", o->dir ? o->dir : "", o->psk ? "/keys.psk" : "");
	ret = srv_str(tp->path, sizeof(tp->path), "dir", path, err, errlen);
	if (!ret)
		ret = srv_str(tp->username, sizeof(tp->username), "username", o->username, err,
			      errlen);
	if (ret)
		return ret;
	tp->kind = o->psk ? MIG_TLS_PSK : MIG_TLS_X509;
	tp->endpoints = (o->client ? MIG_TLS_END_CLIENT : 0) | (o->server ? MIG_TLS_END_SERVER : 0);
	return 0;
}

/* tls-authz: none, cleave run's list, or the object's rules. */
static int srv_tls_authz(const Cleave__Migrator__Parameters *r, struct mig_tls_params *tp,
			 const struct mig_tls_params *run, char *err, size_t errlen)
{
	const Cleave__Migrator__TlsAuthz *o = r->tls_authz_object;
	int ret = srv_str(tp->authz, sizeof(tp->authz), "tls-authz", r->tls_authz, err, errlen);

	if (ret)
		return ret;
	tp->nr_rules = 0;
	tp->authz_allow = 1;
	if (!tp->authz[0])
		return 0;
	if (!strcmp(tp->authz, MIG_TLS_RUN_ID) && run && run->authz[0]) {
		tp->authz_allow = run->authz_allow;
		tp->nr_rules = run->nr_rules;
		memcpy(tp->rules, run->rules, sizeof(tp->rules));
		return 0;
	}
	if (!o) {
		snprintf(err, errlen, "Cannot find QAuthZ object ID %s", tp->authz);
		return -ENOENT;
	}
	if (o->n_rules > MIG_TLS_MAX_RULES) {
		snprintf(err, errlen, "Parameter 'rules' expects at most %d rules",
			 MIG_TLS_MAX_RULES);
		return -EINVAL;
	}
	for (size_t i = 0; i < o->n_rules; i++) {
		ret = srv_str(tp->rules[i].match, sizeof(tp->rules[i].match), "match",
			      o->rules[i]->match, err, errlen);
		if (ret)
			return ret;
		tp->rules[i].allow = o->rules[i]->allow;
		tp->rules[i].glob = o->rules[i]->glob;
	}
	tp->nr_rules = (uint32_t)o->n_rules;
	tp->authz_allow = o->allow;
	return 0;
}

/* The TLS members of a set request, checked and applied whole, or nothing. */
static int srv_set_tls(void *arg, const Cleave__Migrator__Parameters *r, struct rpc_reply *reply)
{
	struct mig_tls_params *tp, *run;
	char err[512] = "";
	int ret = 0;

	if (!r->has_tls_creds && !r->has_tls_hostname && !r->has_tls_authz)
		return 0;
	tp = malloc(2 * sizeof(*tp)); /* 18 KB each: not on the RPC thread's stack */
	if (!tp)
		return -ENOMEM;
	mig_session_get_tls(arg, tp);
	/* cleave run's credentials, for MIG_TLS_RUN_ID; NULL when it gave none. */
	run = mig_session_tls_preset(arg, &tp[1]) ? NULL : &tp[1];
	if (r->has_tls_creds)
		ret = srv_tls_creds(r, tp, run, err, sizeof(err));
	if (!ret && r->has_tls_hostname)
		ret = srv_str(tp->hostname, sizeof(tp->hostname), "tls-hostname", r->tls_hostname,
			      err, sizeof(err));
	if (!ret && r->has_tls_authz)
		ret = srv_tls_authz(r, tp, run, err, sizeof(err));
	if (!ret)
		ret = mig_session_set_tls(arg, tp, err, sizeof(err));
	free(tp);
	if (ret)
		return rpc_reply_error(reply, ret, "%s", err[0] ? err : strerror(-ret));
	return 0;
}

static int srv_set_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__Parameters *r = (const void *)req;
	struct mig_params p;
	char err[128];
	int ret;

	mig_session_get_params(arg, &p);
	if (r->has_multifd_channels)
		p.multifd_channels = r->multifd_channels;
	if (r->has_max_bandwidth)
		p.max_bandwidth = r->max_bandwidth;
	if (r->has_downtime_limit)
		p.downtime_limit = r->downtime_limit;
	if (r->has_reconnect_timeout)
		p.reconnect_timeout = r->reconnect_timeout;
	ret = mig_check_channels(p.multifd_channels, err, sizeof(err));
	if (!ret)
		ret = mig_check_downtime(p.downtime_limit, err, sizeof(err));
	if (ret)
		return rpc_reply_error(reply, ret, "%s", err);
	/* TLS first: the only part that may still be refused. */
	ret = srv_set_tls(arg, r, reply);
	if (ret)
		return ret;
	return mig_session_set_params(arg, &p);
}

static int srv_query_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__Parameters m = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	Cleave__Migrator__TlsCreds creds = CLEAVE__MIGRATOR__TLS_CREDS__INIT;
	Cleave__Migrator__TlsAuthz authz = CLEAVE__MIGRATOR__TLS_AUTHZ__INIT;
	Cleave__Migrator__TlsAuthzRule rules[MIG_TLS_MAX_RULES];
	Cleave__Migrator__TlsAuthzRule *rule_ptrs[MIG_TLS_MAX_RULES];
	struct mig_tls_params *tp;
	struct mig_params p;
	int ret;

	mig_session_get_params(arg, &p);
	m.multifd_channels = p.multifd_channels;
	m.max_bandwidth = p.max_bandwidth;
	m.downtime_limit = p.downtime_limit;
	m.reconnect_timeout = p.reconnect_timeout;
	m.has_multifd_channels = m.has_max_bandwidth = m.has_downtime_limit = true;
	m.has_reconnect_timeout = true;
	tp = malloc(sizeof(*tp));
	if (!tp)
		return -ENOMEM;
	mig_session_get_tls(arg, tp);
	m.tls_creds = tp->creds;
	m.tls_hostname = tp->hostname;
	m.tls_authz = tp->authz;
	m.has_tls_creds = m.has_tls_hostname = m.has_tls_authz = true;
	if (tp->creds[0]) {
		creds.psk = tp->kind == MIG_TLS_PSK;
		creds.path = tp->path;
		creds.client = tp->endpoints & MIG_TLS_END_CLIENT;
		creds.server = tp->endpoints & MIG_TLS_END_SERVER;
		creds.username = tp->username;
		m.tls_creds_object = &creds;
	}
	if (tp->authz[0]) {
		for (uint32_t i = 0; i < tp->nr_rules; i++) {
			cleave__migrator__tls_authz_rule__init(&rules[i]);
			rules[i].match = tp->rules[i].match;
			rules[i].allow = tp->rules[i].allow;
			rules[i].glob = tp->rules[i].glob;
			rule_ptrs[i] = &rules[i];
		}
		authz.allow = tp->authz_allow;
		authz.n_rules = tp->nr_rules;
		authz.rules = rule_ptrs;
		m.tls_authz_object = &authz;
	}
	ret = rpc_reply_set(reply, &m.base);
	free(tp);
	return ret;
}

static int srv_calc_dirty_rate(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__CalcDirtyRateRequest *r = (const void *)req;
	enum mig_dirty_rate_mode mode = MIG_DIRTY_RATE_PAGE_SAMPLING;
	char err[256] = "";
	int ret;

	/* The monitor checked the name against QEMU's enum. */
	if (r->mode && r->mode[0] && mig_dirty_rate_mode_parse(r->mode, &mode))
		return rpc_reply_error(reply, -EINVAL,
				       "Parameter 'mode' does not accept value '%s'", r->mode);
	ret = mig_dirty_rate_start(arg, r->calc_time, r->has_sample_pages, r->sample_pages, mode,
				   err, sizeof(err));
	return ret ? rpc_reply_error(reply, ret, "%s", err) : 0;
}

static int srv_query_dirty_rate(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__DirtyRateInfo m = CLEAVE__MIGRATOR__DIRTY_RATE_INFO__INIT;
	struct mig_dirty_rate_info info;

	mig_dirty_rate_query(arg, &info);
	m.status = (char *)mig_dirty_rate_status_name(info.status);
	m.start_time = info.start_time;
	m.calc_time = info.calc_time;
	m.sample_pages = info.sample_pages;
	m.mode = (char *)mig_dirty_rate_mode_name(info.mode);
	m.has_dirty_rate = info.has_dirty_rate;
	m.dirty_rate = info.dirty_rate;
	return rpc_reply_set(reply, &m.base);
}

static const struct rpc_method migrator_methods[] = {
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, "MIGRATE",
	 &cleave__migrator__migrate_request__descriptor, srv_migrate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, "INCOMING",
	 &cleave__migrator__incoming_request__descriptor, srv_incoming},
	{CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, "CANCEL", NULL, srv_cancel},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, "QUERY", NULL, srv_query},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, "SET_CAPABILITIES",
	 &cleave__migrator__capabilities__descriptor, srv_set_caps},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, "SET_PARAMETERS",
	 &cleave__migrator__parameters__descriptor, srv_set_params},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, "QUERY_PARAMETERS", NULL,
	 srv_query_params},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_CAPABILITIES, "QUERY_CAPABILITIES", NULL,
	 srv_query_caps},
	{CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE, "RESOLVE",
	 &cleave__migrator__resolve_request__descriptor, srv_resolve},
	{CLEAVE__MIGRATOR__METHOD__METHOD_CALC_DIRTY_RATE, "CALC_DIRTY_RATE",
	 &cleave__migrator__calc_dirty_rate_request__descriptor, srv_calc_dirty_rate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_DIRTY_RATE, "QUERY_DIRTY_RATE", NULL,
	 srv_query_dirty_rate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, "START_POSTCOPY", NULL,
	 srv_start_postcopy},
	{CLEAVE__MIGRATOR__METHOD__METHOD_YANK, "YANK", NULL, srv_yank},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_YANK, "QUERY_YANK", NULL, srv_query_yank},
	{CLEAVE__MIGRATOR__METHOD__METHOD_POSTCOPY_ABANDON, "POSTCOPY_ABANDON",
	 &cleave__migrator__postcopy_abandon_request__descriptor, srv_postcopy_abandon},
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE, "MIGRATE_PAUSE", NULL, srv_migrate_pause},
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_RECOVER, "MIGRATE_RECOVER",
	 &cleave__migrator__migrate_recover_request__descriptor, srv_migrate_recover},
};

int migrator_server_start(struct rpc_server **out, const char *url, struct mig_session *s)
{
	return rpc_server_start(out, url, migrator_methods,
				sizeof(migrator_methods) / sizeof(migrator_methods[0]), s);
}
