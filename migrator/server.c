/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * migrator.proto over the RPC layer: one handler per QMP migration command,
 * each a thin call into the session (never blocking on the network).
 */
#include <errno.h>
#include <string.h>

#include "log/log.h"
#include "migrator/migrator-process.h"

#define MIG_PLAINTEXT_REFUSED                                                                      \
	"a non-loopback address needs TLS credentials (cleave run --migrate-tls-x509 DIR or "      \
	"--migrate-tls-psk FILE), or --migrate-insecure-plaintext"

static int srv_migrate(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__MigrateRequest *r = (const void *)req;
	int ret = mig_session_migrate(arg, r->uri ? r->uri : "");

	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret, "There's a migration process in progress");
	if (ret == -EPERM)
		return rpc_reply_error(reply, ret, "migrate to '%s': " MIG_PLAINTEXT_REFUSED,
				       r->uri);
	if (ret)
		return rpc_reply_error(reply, ret, "migrate to '%s': %s", r->uri, strerror(-ret));
	return 0;
}

static int srv_incoming(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Migrator__IncomingRequest *r = (const void *)req;
	int ret = mig_session_incoming(arg, r->uri ? r->uri : "");

	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret, "There's a migration process in progress");
	if (ret == -EPERM)
		return rpc_reply_error(reply, ret, "incoming on '%s': " MIG_PLAINTEXT_REFUSED,
				       r->uri);
	if (ret)
		return rpc_reply_error(reply, ret, "incoming on '%s': %s", r->uri, strerror(-ret));
	return 0;
}

static int srv_cancel(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct mig_info info;

	mig_session_query(arg, &info);
	if (info.status == MIG_STATUS_UNKNOWN)
		return rpc_reply_error(reply, -EBUSY,
				       "the switchover was committed and its outcome is unknown: "
				       "x-cleave-migrate-resolve decides where the guest runs");
	return mig_session_cancel(arg);
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

void migrator_info_fill(const struct mig_info *info, Cleave__Migrator__MigrationInfo *mi,
			struct migrator_info_buf *buf)
{
	Cleave__Migrator__RamStats *ram = &buf->ram;
	size_t n = 0;

	mi->status = (char *)mig_status_name(info->status);
	if (info->status == MIG_STATUS_NONE)
		return; /* query-migrate: {} */
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
	c.has_multifd = c.has_events = c.has_auto_converge = true;
	return rpc_reply_set(reply, &c.base);
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
	return mig_session_set_params(arg, &p);
}

static int srv_query_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Migrator__Parameters m = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	struct mig_params p;

	mig_session_get_params(arg, &p);
	m.multifd_channels = p.multifd_channels;
	m.max_bandwidth = p.max_bandwidth;
	m.downtime_limit = p.downtime_limit;
	m.reconnect_timeout = p.reconnect_timeout;
	m.has_multifd_channels = m.has_max_bandwidth = m.has_downtime_limit = true;
	m.has_reconnect_timeout = true;
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
};

int migrator_server_start(struct rpc_server **out, const char *url, struct mig_session *s)
{
	return rpc_server_start(out, url, migrator_methods,
				sizeof(migrator_methods) / sizeof(migrator_methods[0]), s);
}
