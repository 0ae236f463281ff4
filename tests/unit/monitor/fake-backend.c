// SPDX-License-Identifier: GPL-2.0-only
/* In-test vcpu-proc and migrator: see fake-backend.h. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "tests/unit/monitor/fake-backend.h"

static void fake_publish(struct rpc_pub *pub, Cleave__Events__Event *ev)
{
	if (pub)
		rpc_pub_send(pub, ev);
}

/*
 * As vcpu-proc (vm_state_announce): a RunStateChanged for each change of
 * the run state, before the event that goes with it; its seq is what STATUS
 * reports as announced_seq.  Caller holds announce_lock.
 */
static void fake_announce_locked(struct fake_backend *fb, bool running)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__RunStateChanged rs = CLEAVE__EVENTS__RUN_STATE_CHANGED__INIT;

	rs.state = running ? CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING
			   : CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RUN_STATE_CHANGED;
	ev.run_state_changed = &rs;
	if (fb->vcpu_pub && !rpc_pub_send(fb->vcpu_pub, &ev))
		fb->announced_seq = ev.seq;
}

static void fake_enter(struct fake_backend *fb)
{
	int ms = atomic_load(&fb->delay_ms);

	atomic_fetch_add(&fb->calls, 1);
	if (ms)
		usleep((useconds_t)ms * 1000);
}

/* The migrator's side of fake_enter(), with its own delay. */
static void fake_mig_enter(struct fake_backend *fb)
{
	int ms = atomic_load(&fb->mig_delay_ms);

	atomic_fetch_add(&fb->calls, 1);
	if (ms)
		usleep((useconds_t)ms * 1000);
}

static int fake_vcpu_status(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__StatusReply rep = CLEAVE__VCPU__STATUS_REPLY__INIT;
	Cleave__Vcpu__VcpuInfo v0 = CLEAVE__VCPU__VCPU_INFO__INIT, v1 = v0;
	Cleave__Vcpu__VcpuInfo *vcpus[] = {&v0, &v1};
	struct fake_backend *fb = arg;

	fake_enter(fb);
	atomic_fetch_add(&fb->statuses, 1);
	v0.index = 0;
	v0.thread_id = 1000;
	v1.index = 1;
	v1.thread_id = 1001;
	pthread_mutex_lock(&fb->announce_lock);
	pthread_mutex_lock(&fb->lock);
	rep.state = fb->running ? CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING
				: CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED;
	rep.announced_seq = fb->announced_seq;
	pthread_mutex_unlock(&fb->lock);
	pthread_mutex_unlock(&fb->announce_lock);
	rep.n_vcpus = 2;
	rep.vcpus = vcpus;
	rep.memory_bytes = 256ull << 20;
	return rpc_reply_set(r, &rep.base);
}

static int fake_vcpu_pause(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Stop stop = CLEAVE__EVENTS__STOP__INIT;
	struct fake_backend *fb = arg;

	bool was_running;

	fake_enter(fb);
	pthread_mutex_lock(&fb->announce_lock);
	pthread_mutex_lock(&fb->lock);
	was_running = fb->running;
	fb->running = false;
	pthread_mutex_unlock(&fb->lock);
	if (was_running)
		fake_announce_locked(fb, false);
	pthread_mutex_unlock(&fb->announce_lock);
	/* As vcpu-proc: STOP only when the VM was running, published before the reply. */
	if (!was_running)
		return 0;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_STOP;
	ev.stop = &stop;
	fake_publish(fb->vcpu_pub, &ev);
	return 0;
}

static int fake_vcpu_resume(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Resume resume = CLEAVE__EVENTS__RESUME__INIT;
	struct fake_backend *fb = arg;

	bool was_running;

	fake_enter(fb);
	pthread_mutex_lock(&fb->announce_lock);
	pthread_mutex_lock(&fb->lock);
	was_running = fb->running;
	fb->running = true;
	pthread_mutex_unlock(&fb->lock);
	if (!was_running)
		fake_announce_locked(fb, true);
	pthread_mutex_unlock(&fb->announce_lock);
	if (was_running)
		return 0;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESUME;
	ev.resume = &resume;
	fake_publish(fb->vcpu_pub, &ev);
	return 0;
}

static int fake_vcpu_reset(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Reset reset = CLEAVE__EVENTS__RESET__INIT;
	struct fake_backend *fb = arg;

	fake_enter(fb);
	reset.guest = false;
	reset.reason = "host-qmp-system-reset";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	ev.reset = &reset;
	fake_publish(fb->vcpu_pub, &ev);
	return 0;
}

static int fake_vcpu_quit(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	struct fake_backend *fb = arg;

	fake_enter(fb);
	atomic_fetch_add(&fb->quits, 1);
	return 0;
}

static int fake_vcpu_postcopy_blocktime(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__PostcopyBlocktime bt = CLEAVE__VCPU__POSTCOPY_BLOCKTIME__INIT;
	uint32_t vcpu_ms[] = {150, 151, 130};
	struct fake_backend *fb = arg;

	fake_enter(fb);
	atomic_fetch_add(&fb->blocktimes, 1);
	if (atomic_load(&fb->bt_fails))
		return rpc_reply_error(r, -EIO, "fault service gone");
	bt.measured = true;
	bt.total_ms = 120;
	bt.n_vcpu_ms = 3;
	bt.vcpu_ms = vcpu_ms;
	return rpc_reply_set(r, &bt.base);
}

static const struct rpc_method fake_vcpu_methods[] = {
	{CLEAVE__VCPU__METHOD__METHOD_STATUS, "status", NULL, fake_vcpu_status},
	{CLEAVE__VCPU__METHOD__METHOD_PAUSE, "pause", &cleave__vcpu__pause_request__descriptor,
	 fake_vcpu_pause},
	{CLEAVE__VCPU__METHOD__METHOD_RESUME, "resume", NULL, fake_vcpu_resume},
	{CLEAVE__VCPU__METHOD__METHOD_RESET, "reset", NULL, fake_vcpu_reset},
	{CLEAVE__VCPU__METHOD__METHOD_QUIT, "quit", NULL, fake_vcpu_quit},
	{CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME, "postcopy-blocktime", NULL,
	 fake_vcpu_postcopy_blocktime},
};

/* ---- migrator ------------------------------------------------------------ */

static void fake_mig_event_detail(struct fake_backend *fb, const char *status, const char *detail)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Migration m = CLEAVE__EVENTS__MIGRATION__INIT;

	m.status = (char *)status;
	if (detail) {
		m.detail = (char *)detail;
		m.restarts = 1;
		m.resumes = !strcmp(detail, "resumed");
		m.resent_bytes = m.resumes ? 8192 : 0;
	}
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
	ev.migration = &m;
	fake_publish(fb->mig_pub, &ev);
}

static void fake_mig_event(struct fake_backend *fb, const char *status)
{
	fake_mig_event_detail(fb, status, NULL);
}

static bool fake_uri_port(const char *uri, const char *port)
{
	size_t n = strlen(uri), p = strlen(port);

	return n > p && uri[n - p - 1] == ':' && !strcmp(uri + n - p, port);
}

/* MIGRATE {resume}: a paused source reconnects to its (maybe new) uri. */
static int fake_mig_resume(struct fake_backend *fb, const Cleave__Migrator__MigrateRequest *m,
			   struct rpc_reply *r)
{
	bool paused;

	pthread_mutex_lock(&fb->lock);
	paused = !fb->mig_dest && !strcmp(fb->mig_status, "postcopy-paused");
	pthread_mutex_unlock(&fb->lock);
	if (!paused)
		return rpc_reply_error(r, -EINVAL, "Cannot resume if there is no paused migration");
	if (fake_uri_port(m->uri, "1"))
		return rpc_reply_error(r, -ECONNREFUSED, "Failed to connect to '%s'", m->uri);
	pthread_mutex_lock(&fb->lock);
	snprintf(fb->mig_status, sizeof(fb->mig_status), "postcopy-active");
	fb->resumes++;
	pthread_mutex_unlock(&fb->lock);
	fake_mig_event(fb, "postcopy-recover");
	fake_mig_event(fb, "postcopy-active");
	return 0;
}

static int fake_mig_migrate(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__MigrateRequest *m = (const void *)req;
	struct fake_backend *fb = arg;
	bool unknown = fake_uri_port(m->uri, "2"), resumes = fake_uri_port(m->uri, "3");
	bool stays = fake_uri_port(m->uri, "4");
	const char *final = unknown ? "x-switchover-unknown" : stays ? "active" : "completed";

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	snprintf(fb->migrate_uri, sizeof(fb->migrate_uri), "%s", m->uri);
	fb->migrate_resume = m->resume;
	pthread_mutex_unlock(&fb->lock);
	if (m->resume)
		return fake_mig_resume(fb, m, r);
	if (fake_uri_port(m->uri, "1")) /* refused, like a closed port */
		return rpc_reply_error(r, -ECONNREFUSED, "Failed to connect to '%s'", m->uri);
	pthread_mutex_lock(&fb->lock);
	fb->mig_dest = false;
	/* The fake migrates instantly. */
	snprintf(fb->mig_status, sizeof(fb->mig_status), "%s", final);
	pthread_mutex_unlock(&fb->lock);
	fake_mig_event(fb, "setup");
	fake_mig_event(fb, "active");
	if (resumes) {
		fake_mig_event_detail(fb, "active", "restarted");
		fake_mig_event_detail(fb, "active", "resumed");
	}
	if (!stays)
		fake_mig_event(fb, final);
	return 0;
}

static int fake_mig_cancel(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	struct fake_backend *fb = arg;

	bool unknown, postcopy;

	fake_mig_enter(fb);
	atomic_fetch_add(&fb->cancels, 1);
	pthread_mutex_lock(&fb->lock);
	unknown = !strcmp(fb->mig_status, "x-switchover-unknown");
	postcopy = !strncmp(fb->mig_status, "postcopy-", 9);
	pthread_mutex_unlock(&fb->lock);
	if (postcopy)
		return rpc_reply_error(r, -EBUSY, "Postcopy migration in progress, cannot cancel.");
	/* An error reply from a live migrator: the monitor must not retry it. */
	if (unknown)
		return rpc_reply_error(r, -EBUSY,
				       "the switchover's outcome is unknown: use "
				       "x-cleave-migrate-resolve");
	return 0;
}

static int fake_mig_resolve(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__ResolveRequest *rr = (const void *)req;
	struct fake_backend *fb = arg;
	char status[32];
	bool dest = !strcmp(rr->run_on, "destination");

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	memcpy(status, fb->mig_status, sizeof(status));
	if (!strcmp(status, "x-switchover-unknown")) {
		snprintf(fb->mig_status, sizeof(fb->mig_status), "%s",
			 dest ? "completed" : "cancelled");
		snprintf(fb->resolved, sizeof(fb->resolved), "%s", rr->run_on);
	}
	pthread_mutex_unlock(&fb->lock);
	if (strcmp(status, "x-switchover-unknown"))
		return rpc_reply_error(
			r, -EINVAL, "no switchover with an unknown outcome to resolve (status: %s)",
			status[0] ? status : "none");
	return 0;
}

static Cleave__Migrator__Counter fake_counter(const char *name, uint64_t value)
{
	Cleave__Migrator__Counter c = CLEAVE__MIGRATOR__COUNTER__INIT;

	c.name = (char *)name;
	c.value = value;
	return c;
}

static int fake_mig_query(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Migrator__MigrationInfo mi = CLEAVE__MIGRATOR__MIGRATION_INFO__INIT;
	Cleave__Migrator__RamStats ram = CLEAVE__MIGRATOR__RAM_STATS__INIT;
	/* The session record's counters, by their names in migrator/record.h. */
	Cleave__Migrator__Counter counters[] = {
		fake_counter("resumes", 2),
		fake_counter("resent_bytes", 4096),
		fake_counter("resume_time_ms", 35),
		fake_counter("inflight_bytes", 65536),
		fake_counter("postcopy_requests", 7),
		fake_counter("postcopy_pulled", 300),
		fake_counter("postcopy_pushed", 1200),
		fake_counter("postcopy_wait_us", 2100),
	};
	Cleave__Migrator__Counter *counter_ptrs[] = {&counters[0], &counters[1], &counters[2],
						     &counters[3], &counters[4], &counters[5],
						     &counters[6], &counters[7]};
	Cleave__Migrator__PageRun runs[2] = {CLEAVE__MIGRATOR__PAGE_RUN__INIT,
					     CLEAVE__MIGRATOR__PAGE_RUN__INIT};
	Cleave__Migrator__PageRun *run_ptrs[] = {&runs[0], &runs[1]};
	struct fake_backend *fb = arg;
	char status[32], error[64];
	bool dest, blocktime;

	runs[0].gpa = 0x1000;
	runs[0].size = 0x2000;
	runs[1].gpa = 0x100000;
	runs[1].size = 0x1000;
	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	memcpy(status, fb->mig_status, sizeof(status));
	memcpy(error, fb->mig_error, sizeof(error));
	dest = fb->mig_dest;
	blocktime = fb->blocktime_cap;
	pthread_mutex_unlock(&fb->lock);
	mi.status = status;
	mi.destination = dest;
	mi.postcopy_blocktime = blocktime;
	if (error[0])
		mi.error_desc = error;
	if (status[0]) {
		ram.transferred = 268435456;
		ram.total = 268435456;
		ram.normal = 65536;
		ram.normal_bytes = 268435456;
		ram.mbps = 8000.5;
		ram.page_size = 4096;
		ram.dirty_sync_count = 3;
		mi.ram = &ram;
		mi.total_time = 320;
		mi.downtime = 12;
		mi.has_downtime = true;
		mi.setup_time = 2;
		mi.restarts = 1;
		mi.n_counters = sizeof(counter_ptrs) / sizeof(counter_ptrs[0]);
		mi.counters = counter_ptrs;
	}
	/* A destination waiting for its lost source: two runs, three pages. */
	if (!strcmp(status, "postcopy-paused")) {
		mi.postcopy_missing = 3;
		mi.n_postcopy_missing_runs = 2;
		mi.postcopy_missing_runs = run_ptrs;
	}
	return rpc_reply_set(r, &mi.base);
}

static int fake_mig_postcopy_abandon(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__PostcopyAbandonRequest *pa = (const void *)req;
	struct fake_backend *fb = arg;
	char status[32];

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	memcpy(status, fb->mig_status, sizeof(status));
	if (!strcmp(status, "postcopy-paused")) {
		snprintf(fb->mig_status, sizeof(fb->mig_status), "failed");
		snprintf(fb->abandoned, sizeof(fb->abandoned), "%s",
			 pa->zero_fill ? "zero-fill" : "wait");
	}
	pthread_mutex_unlock(&fb->lock);
	if (strcmp(status, "postcopy-paused"))
		return rpc_reply_error(r, -EINVAL,
				       "no postcopy waiting for a lost peer to abandon "
				       "(destination, status: %s)",
				       status[0] ? status : "none");
	return 0;
}

static int fake_mig_pause(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	struct fake_backend *fb = arg;
	bool active;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	active = !strcmp(fb->mig_status, "postcopy-active");
	if (active) {
		snprintf(fb->mig_status, sizeof(fb->mig_status), "postcopy-paused");
		fb->pauses++;
	}
	pthread_mutex_unlock(&fb->lock);
	if (!active)
		return rpc_reply_error(
			r, -EINVAL,
			"migrate-pause is currently only supported during postcopy-active state");
	fake_mig_event(fb, "postcopy-paused");
	return 0;
}

static int fake_mig_recover(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__MigrateRecoverRequest *rr = (const void *)req;
	struct fake_backend *fb = arg;
	bool paused;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	paused = fb->mig_dest && !strcmp(fb->mig_status, "postcopy-paused");
	pthread_mutex_unlock(&fb->lock);
	if (!paused)
		return rpc_reply_error(r, -EINVAL,
				       "Migrate recover can only be run when postcopy is paused.");
	if (fake_uri_port(rr->uri, "1")) /* as a bind to a port in use */
		return rpc_reply_error(r, -EADDRINUSE, "Failed to bind to '%s': %s", rr->uri,
				       strerror(EADDRINUSE));
	pthread_mutex_lock(&fb->lock);
	snprintf(fb->recover_uri, sizeof(fb->recover_uri), "%s", rr->uri);
	snprintf(fb->mig_status, sizeof(fb->mig_status), "postcopy-active");
	fb->recovers++;
	pthread_mutex_unlock(&fb->lock);
	fake_mig_event(fb, "postcopy-recover");
	fake_mig_event(fb, "postcopy-active");
	return 0;
}

static int fake_mig_set_caps(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__Capabilities *c = (const void *)req;
	struct fake_backend *fb = arg;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	if (c->has_events)
		fb->events_cap = c->events;
	if (c->has_multifd)
		fb->multifd_cap = c->multifd;
	if (c->has_postcopy_ram)
		fb->postcopy_cap = c->postcopy_ram;
	if (c->has_postcopy_blocktime)
		fb->blocktime_cap = c->postcopy_blocktime;
	pthread_mutex_unlock(&fb->lock);
	return 0;
}

static int fake_mig_query_caps(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Migrator__Capabilities c = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	struct fake_backend *fb = arg;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	c.events = fb->events_cap;
	c.multifd = fb->multifd_cap;
	c.postcopy_ram = fb->postcopy_cap;
	c.postcopy_blocktime = fb->blocktime_cap;
	pthread_mutex_unlock(&fb->lock);
	return rpc_reply_set(r, &c.base);
}

static int fake_mig_set_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__Parameters *p = (const void *)req;
	struct fake_backend *fb = arg;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	if (p->has_multifd_channels)
		fb->channels = p->multifd_channels;
	if (p->has_reconnect_timeout) {
		fb->has_reconnect_timeout = true;
		fb->reconnect_timeout = p->reconnect_timeout;
	}
	if (p->has_tls_creds) {
		snprintf(fb->tls_creds, sizeof(fb->tls_creds), "%s", p->tls_creds);
		snprintf(fb->tls_dir, sizeof(fb->tls_dir), "%s",
			 p->tls_creds_object ? p->tls_creds_object->dir : "");
		fb->tls_server = p->tls_creds_object && p->tls_creds_object->server;
		fb->tls_psk = p->tls_creds_object && p->tls_creds_object->psk;
	}
	if (p->has_tls_hostname)
		snprintf(fb->tls_hostname, sizeof(fb->tls_hostname), "%s", p->tls_hostname);
	if (p->has_tls_authz) {
		snprintf(fb->tls_authz, sizeof(fb->tls_authz), "%s", p->tls_authz);
		fb->tls_rules =
			p->tls_authz_object ? (unsigned int)p->tls_authz_object->n_rules : 0;
		fb->tls_authz_allow = p->tls_authz_object && p->tls_authz_object->allow;
		snprintf(fb->tls_rule0, sizeof(fb->tls_rule0), "%s",
			 fb->tls_rules ? p->tls_authz_object->rules[0]->match : "");
		fb->tls_rule0_glob = fb->tls_rules && p->tls_authz_object->rules[0]->glob;
	}
	pthread_mutex_unlock(&fb->lock);
	return 0;
}

static int fake_mig_query_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Migrator__Parameters p = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	Cleave__Migrator__TlsCreds creds = CLEAVE__MIGRATOR__TLS_CREDS__INIT;
	Cleave__Migrator__TlsAuthz authz = CLEAVE__MIGRATOR__TLS_AUTHZ__INIT;
	Cleave__Migrator__TlsAuthzRule rule = CLEAVE__MIGRATOR__TLS_AUTHZ_RULE__INIT, *rp = &rule;
	struct fake_backend *fb = arg;
	char path[280];
	int ret;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	p.multifd_channels = fb->channels;
	/* The migrator's default when never set. */
	p.reconnect_timeout = fb->has_reconnect_timeout ? fb->reconnect_timeout : 10000;
	p.tls_creds = fb->tls_creds;
	p.tls_hostname = fb->tls_hostname;
	p.tls_authz = fb->tls_authz;
	/* As the migrator answers: what it keeps of the objects. */
	if (fb->tls_creds[0]) {
		snprintf(path, sizeof(path), "%s%s", fb->tls_dir, fb->tls_psk ? "/keys.psk" : "");
		creds.psk = fb->tls_psk;
		creds.path = path;
		creds.server = fb->tls_server;
		creds.client = !fb->tls_server;
		p.tls_creds_object = &creds;
	}
	if (fb->tls_authz[0]) {
		rule.match = fb->tls_rule0;
		rule.allow = true;
		rule.glob = fb->tls_rule0_glob;
		authz.allow = fb->tls_authz_allow;
		authz.n_rules = fb->tls_rules ? 1 : 0;
		authz.rules = &rp;
		p.tls_authz_object = &authz;
	}
	p.max_bandwidth = 134217728;
	p.downtime_limit = 300;
	ret = rpc_reply_set(r, &p.base);
	pthread_mutex_unlock(&fb->lock);
	return ret;
}

static int fake_mig_calc_dirty_rate(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__CalcDirtyRateRequest *c = (const void *)req;
	struct fake_backend *fb = arg;

	atomic_fetch_add(&fb->calls, 1);
	if (c->calc_time == 99)
		return rpc_reply_error(r, -ERANGE, "calc-time is out of range[1, 60].");
	pthread_mutex_lock(&fb->lock);
	fb->dr_started = true;
	fb->dr_calc_time = c->calc_time;
	fb->dr_has_sample_pages = c->has_sample_pages;
	fb->dr_sample_pages = c->sample_pages;
	snprintf(fb->dr_mode, sizeof(fb->dr_mode), "%s", c->mode ? c->mode : "");
	pthread_mutex_unlock(&fb->lock);
	return 0;
}

static int fake_mig_query_dirty_rate(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Migrator__DirtyRateInfo d = CLEAVE__MIGRATOR__DIRTY_RATE_INFO__INIT;
	struct fake_backend *fb = arg;
	int ret;

	atomic_fetch_add(&fb->calls, 1);
	pthread_mutex_lock(&fb->lock);
	d.status = fb->dr_started ? "measured" : "unstarted";
	d.mode = fb->dr_mode[0] ? fb->dr_mode : "page-sampling";
	if (fb->dr_started) {
		d.start_time = 2105;
		d.calc_time = fb->dr_calc_time;
		d.sample_pages = fb->dr_has_sample_pages ? (uint64_t)fb->dr_sample_pages : 512;
		d.has_dirty_rate = true;
		d.dirty_rate = 42;
	}
	ret = rpc_reply_set(r, &d.base);
	pthread_mutex_unlock(&fb->lock);
	return ret;
}

static int fake_mig_start_postcopy(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	struct fake_backend *fb = arg;
	bool cap, started;

	fake_mig_enter(fb);
	pthread_mutex_lock(&fb->lock);
	cap = fb->postcopy_cap;
	started = fb->mig_status[0];
	fb->postcopy_starts += cap && started;
	pthread_mutex_unlock(&fb->lock);
	if (!cap)
		return rpc_reply_error(r, -ENOPROTOOPT,
				       "Enable postcopy with migrate_set_capability before the "
				       "start of migration");
	if (!started)
		return rpc_reply_error(r, -ENOENT,
				       "Postcopy must be started after migration has been started");
	return 0;
}

/* As the migrator's: a migration in progress (the fake has no listening destination). */
static bool fake_mig_running(struct fake_backend *fb)
{
	static const char *const running[] = {"setup",	    "active",	       "device",
					      "cancelling", "postcopy-active", "postcopy-paused"};
	bool on = false;

	pthread_mutex_lock(&fb->lock);
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		on |= !strcmp(fb->mig_status, running[i]);
	pthread_mutex_unlock(&fb->lock);
	return on;
}

static int fake_mig_yank(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	struct fake_backend *fb = arg;

	fake_mig_enter(fb);
	if (!fake_mig_running(fb))
		return rpc_reply_error(r, -ENOENT, "Instance not found");
	atomic_fetch_add(&fb->yanks, 1);
	return 0;
}

static int fake_mig_query_yank(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Migrator__YankInfo y = CLEAVE__MIGRATOR__YANK_INFO__INIT;
	struct fake_backend *fb = arg;

	fake_mig_enter(fb);
	y.migration = fake_mig_running(fb);
	return rpc_reply_set(r, &y.base);
}

static const struct rpc_method fake_mig_methods[] = {
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, "migrate",
	 &cleave__migrator__migrate_request__descriptor, fake_mig_migrate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, "cancel", NULL, fake_mig_cancel},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, "query", NULL, fake_mig_query},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, "set-caps",
	 &cleave__migrator__capabilities__descriptor, fake_mig_set_caps},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_CAPABILITIES, "query-caps", NULL,
	 fake_mig_query_caps},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, "set-params",
	 &cleave__migrator__parameters__descriptor, fake_mig_set_params},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, "query-params", NULL,
	 fake_mig_query_params},
	{CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE, "resolve",
	 &cleave__migrator__resolve_request__descriptor, fake_mig_resolve},
	{CLEAVE__MIGRATOR__METHOD__METHOD_CALC_DIRTY_RATE, "calc-dirty-rate",
	 &cleave__migrator__calc_dirty_rate_request__descriptor, fake_mig_calc_dirty_rate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_DIRTY_RATE, "query-dirty-rate", NULL,
	 fake_mig_query_dirty_rate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, "start-postcopy", NULL,
	 fake_mig_start_postcopy},
	{CLEAVE__MIGRATOR__METHOD__METHOD_YANK, "yank", NULL, fake_mig_yank},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_YANK, "query-yank", NULL, fake_mig_query_yank},
	{CLEAVE__MIGRATOR__METHOD__METHOD_POSTCOPY_ABANDON, "postcopy-abandon",
	 &cleave__migrator__postcopy_abandon_request__descriptor, fake_mig_postcopy_abandon},
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_PAUSE, "migrate-pause", NULL, fake_mig_pause},
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE_RECOVER, "migrate-recover",
	 &cleave__migrator__migrate_recover_request__descriptor, fake_mig_recover},
};

void fake_backend_set_migration(struct fake_backend *fb, const char *status, bool dest)
{
	pthread_mutex_lock(&fb->lock);
	snprintf(fb->mig_status, sizeof(fb->mig_status), "%s", status);
	fb->mig_dest = dest;
	pthread_mutex_unlock(&fb->lock);
}

int fake_backend_start(struct fake_backend **out)
{
	struct fake_backend *fb = calloc(1, sizeof(*fb));
	int ret;

	if (!fb)
		return -ENOMEM;
	pthread_mutex_init(&fb->lock, NULL);
	pthread_mutex_init(&fb->announce_lock, NULL);
	fb->running = true;
	fb->channels = 2;
	snprintf(fb->dir, sizeof(fb->dir), "/tmp/cleave-mon-test-XXXXXX");
	if (!mkdtemp(fb->dir)) {
		ret = -errno;
		goto err;
	}
	snprintf(fb->vcpu_rpc, sizeof(fb->vcpu_rpc), "ipc://%s/vcpu.rpc", fb->dir);
	snprintf(fb->vcpu_events, sizeof(fb->vcpu_events), "ipc://%s/vcpu.events", fb->dir);
	snprintf(fb->mig_rpc, sizeof(fb->mig_rpc), "ipc://%s/migrator.rpc", fb->dir);
	snprintf(fb->mig_events, sizeof(fb->mig_events), "ipc://%s/migrator.events", fb->dir);
	ret = rpc_pub_open(&fb->vcpu_pub, fb->vcpu_events, "vcpu");
	if (!ret)
		ret = rpc_pub_open(&fb->mig_pub, fb->mig_events, "migrator");
	if (!ret)
		ret = rpc_server_start(&fb->vcpu, fb->vcpu_rpc, fake_vcpu_methods,
				       sizeof(fake_vcpu_methods) / sizeof(fake_vcpu_methods[0]),
				       fb);
	if (!ret)
		ret = rpc_server_start(&fb->mig, fb->mig_rpc, fake_mig_methods,
				       sizeof(fake_mig_methods) / sizeof(fake_mig_methods[0]), fb);
	if (ret)
		goto err;
	*out = fb;
	return 0;
err:
	fake_backend_stop(fb);
	return ret;
}

void fake_backend_kill_vcpu(struct fake_backend *fb)
{
	rpc_server_stop(fb->vcpu);
	fb->vcpu = NULL;
}

void fake_backend_kill_migrator(struct fake_backend *fb)
{
	rpc_server_stop(fb->mig);
	fb->mig = NULL;
}

int fake_backend_restart_migrator(struct fake_backend *fb)
{
	return rpc_server_start(&fb->mig, fb->mig_rpc, fake_mig_methods,
				sizeof(fake_mig_methods) / sizeof(fake_mig_methods[0]), fb);
}

void fake_backend_stop(struct fake_backend *fb)
{
	char cmd[128];

	if (!fb)
		return;
	rpc_server_stop(fb->vcpu);
	rpc_server_stop(fb->mig);
	rpc_pub_close(fb->vcpu_pub);
	rpc_pub_close(fb->mig_pub);
	if (fb->dir[0] && strncmp(fb->dir, "/tmp/cleave-mon-test-", 21) == 0) {
		snprintf(cmd, sizeof(cmd), "%s/vcpu.rpc", fb->dir);
		unlink(cmd);
		snprintf(cmd, sizeof(cmd), "%s/vcpu.events", fb->dir);
		unlink(cmd);
		snprintf(cmd, sizeof(cmd), "%s/migrator.rpc", fb->dir);
		unlink(cmd);
		snprintf(cmd, sizeof(cmd), "%s/migrator.events", fb->dir);
		unlink(cmd);
		rmdir(fb->dir);
	}
	pthread_mutex_destroy(&fb->lock);
	pthread_mutex_destroy(&fb->announce_lock);
	free(fb);
}
