// SPDX-License-Identifier: GPL-2.0-only
/* Real cleave-migrator processes without KVM (proc-nodes.h). */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/migrator/proc-nodes.h"
#include "tests/util/test-util.h"

const char *migrator_bin;

uint64_t proc_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

unsigned int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned int port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

/* One RPC to the migrator in @dir, retried while it starts: 0 or the error in @err. */
int call(const char *dir, uint32_t method, const ProtobufCMessage *req,
	 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply, char *err, size_t len)
{
	struct rpc_client *client = NULL;
	char rpc[160];
	int ret = -1;

	snprintf(rpc, sizeof(rpc), "ipc://%s/migrator.rpc", dir);
	assert_int_equal(rpc_client_open(&client, rpc), 0);
	for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 10000; test_sleep_ms(20)) {
		err[0] = '\0';
		ret = rpc_call(client, method, req, desc, reply, 2000, err, len);
		if (ret != -ETIMEDOUT && ret != -ECONNREFUSED)
			break;
	}
	rpc_client_close(client);
	return ret;
}

/* An RPC without a body; its error (or "") in @err. */
int call_empty(const char *dir, uint32_t method, char *err, size_t len)
{
	return call(dir, method, NULL, NULL, NULL, err, len);
}

char *migration_status(const char *dir, char *status, size_t len, char *err, size_t errlen)
{
	ProtobufCMessage *m = NULL;
	Cleave__Migrator__MigrationInfo *info;

	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			      &cleave__migrator__migration_info__descriptor, &m, err, errlen),
			 0);
	info = (Cleave__Migrator__MigrationInfo *)m;
	snprintf(status, len, "%s", info->status);
	snprintf(err, errlen, "%s", info->error_desc);
	rpc_msg_free(m);
	return status;
}

void set_params(const char *dir, uint64_t max_bandwidth, uint64_t reconnect_ms)
{
	Cleave__Migrator__Parameters p = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	char err[256];

	p.has_max_bandwidth = p.has_reconnect_timeout = true;
	p.max_bandwidth = max_bandwidth;
	p.reconnect_timeout = reconnect_ms;
	if (call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &p.base, NULL, NULL, err,
		 sizeof(err)))
		fail_msg("set-parameters: %s", err);
}

uint64_t mig_counter(const char *dir, const char *name)
{
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char err[256];
	uint64_t v = UINT64_MAX;

	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			      &cleave__migrator__migration_info__descriptor,
			      (ProtobufCMessage **)&mi, err, sizeof(err)),
			 0);
	for (size_t i = 0; i < mi->n_counters; i++)
		if (!strcmp(mi->counters[i]->name, name))
			v = mi->counters[i]->value;
	rpc_msg_free(&mi->base);
	return v;
}

Cleave__Migrator__MigrationInfo *mig_query(const char *dir)
{
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char err[256];

	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			      &cleave__migrator__migration_info__descriptor,
			      (ProtobufCMessage **)&mi, err, sizeof(err)),
			 0);
	return mi;
}

/* Until the source's status is @want (20 s at most). */
void wait_status(const char *dir, const char *want)
{
	char st[32] = "", err[512];

	for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 20000; test_sleep_ms(10))
		if (!strcmp(migration_status(dir, st, sizeof(st), err, sizeof(err)), want))
			return;
	fail_msg("status %s (%s), waited for %s", st, err, want);
}

void caps_postcopy(const char *dir)
{
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	char err[256];

	caps.has_postcopy_ram = caps.postcopy_ram = true;
	caps.has_multifd = caps.multifd = true;
	assert_int_equal(call(dir, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, &caps.base,
			      NULL, NULL, err, sizeof(err)),
			 0);
}

static int standin_status(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Vcpu__StatusReply r = CLEAVE__VCPU__STATUS_REPLY__INIT;

	r.state = ((struct standin *)arg)->run_state;
	return rpc_reply_set(reply, &r.base);
}

static int standin_load_state(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Vcpu__LoadStateRequest *r = (const void *)req;
	struct standin *v = arg;

	v->loads++;
	snprintf(v->loaded, sizeof(v->loaded), "%.*s", (int)r->state.len, r->state.data);
	return 0;
}

static int standin_pause(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct standin *v = arg;

	v->pauses++;
	v->last_pause_state = ((const Cleave__Vcpu__PauseRequest *)req)->state;
	atomic_store(&v->pause_req, true);
	for (int i = 0; atomic_load(&v->dirtier_live) && !atomic_load(&v->parked) && i < 5000; i++)
		usleep(1000);
	return 0;
}

static int standin_resume(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct standin *v = arg;

	__atomic_fetch_add(&v->resumes, 1, __ATOMIC_RELEASE); /* read by the postcopy test's vCPU */
	atomic_store(&v->pause_req, false);
	return 0;
}

static int standin_dirty_log(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct standin *v = arg;

	if (((const Cleave__Vcpu__DirtyLogRequest *)req)->enable)
		v->dirty_on++;
	else
		v->dirty_off++;
	return 0;
}

static int standin_harvest(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Vcpu__HarvestReply r = CLEAVE__VCPU__HARVEST_REPLY__INIT;

	return rpc_reply_set(reply, &r.base);
}

static int standin_save_state(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Vcpu__SaveStateReply r = CLEAVE__VCPU__SAVE_STATE_REPLY__INIT;

	((struct standin *)arg)->saves++;
	r.state.data = (uint8_t *)"vmstate:standin";
	r.state.len = 15;
	return rpc_reply_set(reply, &r.base);
}

static const struct rpc_method standin_methods[] = {
	{CLEAVE__VCPU__METHOD__METHOD_PAUSE, "PAUSE", &cleave__vcpu__pause_request__descriptor,
	 standin_pause},
	{CLEAVE__VCPU__METHOD__METHOD_RESUME, "RESUME", NULL, standin_resume},
	{CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, "DIRTY_LOG",
	 &cleave__vcpu__dirty_log_request__descriptor, standin_dirty_log},
	{CLEAVE__VCPU__METHOD__METHOD_HARVEST, "HARVEST", NULL, standin_harvest},
	{CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, "SAVE_STATE", NULL, standin_save_state},
	{CLEAVE__VCPU__METHOD__METHOD_STATUS, "STATUS", NULL, standin_status},
	{CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, "LOAD_STATE",
	 &cleave__vcpu__load_state_request__descriptor, standin_load_state},
};

/* (Re)starts @n's cleave-migrator, its log appended to. */
void snap_node_exec(struct snap_node *n)
{
	char log[64], rpc[64], ev[64], vcpu[64], ctl_arg[16], ram_arg[16], link_arg[16];
	char fdlink_arg[16];
	const char *argv[26];
	unsigned int a = 0;
	int logfd;

	snprintf(log, sizeof(log), "%s/migrator.log", n->dir);
	snprintf(rpc, sizeof(rpc), "ipc://%s/migrator.rpc", n->dir);
	snprintf(ev, sizeof(ev), "ipc://%s/migrator.events", n->dir);
	snprintf(vcpu, sizeof(vcpu), "ipc://%s/vcpu.rpc", n->dir);
	snprintf(ctl_arg, sizeof(ctl_arg), "%d", n->ctl.fd);
	snprintf(ram_arg, sizeof(ram_arg), "%d", n->ram.fd);
	snprintf(link_arg, sizeof(link_arg), "%d", n->link_fd);
	snprintf(fdlink_arg, sizeof(fdlink_arg), "%d", n->fdlink_fd);
	argv[a++] = migrator_bin;
	argv[a++] = "--ctl-fd";
	argv[a++] = ctl_arg;
	argv[a++] = "--ram-fds";
	argv[a++] = ram_arg;
	argv[a++] = "--vcpu-rpc";
	argv[a++] = vcpu;
	argv[a++] = "--rpc";
	argv[a++] = rpc;
	argv[a++] = "--events";
	argv[a++] = ev;
	argv[a++] = "--snapshot-dir";
	argv[a++] = n->snaps;
	if (n->incoming[0]) {
		argv[a++] = "--incoming";
		argv[a++] = n->incoming;
	}
	if (n->has_link) {
		argv[a++] = "--postcopy-link-fd";
		argv[a++] = link_arg;
	}
	if (n->has_fdlink) {
		argv[a++] = "--fd-link-fd";
		argv[a++] = fdlink_arg;
	}
	argv[a] = NULL;
	logfd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	assert_true(logfd >= 0);
	n->forked_ns = proc_now_ns();
	n->pid = fork();
	assert_true(n->pid >= 0);
	if (n->pid == 0) {
		fcntl(n->ctl.fd, F_SETFD, 0);
		fcntl(n->ram.fd, F_SETFD, 0);
		if (n->has_link)
			fcntl(n->link_fd, F_SETFD, 0);
		if (n->has_fdlink)
			fcntl(n->fdlink_fd, F_SETFD, 0);
		dup2(logfd, STDERR_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execv(migrator_bin, (char *const *)argv);
		_exit(127);
	}
	close(logfd);
}

void snap_node_start(struct snap_node *n, const char *snaps, const char *incoming, int run_state)
{
	const struct shm_ctl_layout layout = {.nr_regions = 1,
					      .size = {n->ram_size ? n->ram_size : 4u << 20}};
	char vcpu[64];

	snprintf(n->dir, sizeof(n->dir), "/tmp/cleave-migsnap-XXXXXX");
	assert_non_null(mkdtemp(n->dir));
	assert_int_equal(shm_ctl_create(&n->ctl, &layout), 0);
	assert_int_equal(shm_region_create(&n->ram, 0, layout.size[0]), 0);
	snprintf(vcpu, sizeof(vcpu), "ipc://%s/vcpu.rpc", n->dir);
	snprintf(n->snaps, sizeof(n->snaps), "%s", snaps);
	snprintf(n->incoming, sizeof(n->incoming), "%s", incoming ? incoming : "");
	n->v.run_state = run_state;
	assert_int_equal(rpc_server_start(&n->vcpu, vcpu, standin_methods,
					  sizeof(standin_methods) / sizeof(standin_methods[0]),
					  &n->v),
			 0);
	snap_node_exec(n);
}

/* Polls query until the job leaves setup/active/device: its final status in @st. */
void snap_node_wait(struct snap_node *n, char *st, size_t len, char *err, size_t errlen)
{
	for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 20000; test_sleep_ms(20))
		if (strcmp(migration_status(n->dir, st, len, err, errlen), "active") &&
		    strcmp(st, "setup") && strcmp(st, "device") && strcmp(st, "") &&
		    strncmp(st, "postcopy-", 9))
			return;
}

/* SIGTERM: a clean exit without a refused syscall; then everything goes. */
void snap_node_stop(struct snap_node *n)
{
	char log[64], *text;
	int status = 0;

	if (n->pid > 0) { /* 0: killed for good by the test, reaped */
		assert_int_equal(kill(n->pid, SIGTERM), 0);
		assert_int_equal(waitpid(n->pid, &status, 0), n->pid);
	}
	rpc_server_stop(n->vcpu);
	snprintf(log, sizeof(log), "%s/migrator.log", n->dir);
	text = test_file_read(log);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || strstr(text, "seccomp: refused"))
		fail_msg("cleave-migrator: status 0x%x, log:\n%s", status, text);
	free(text);
	unlink(log);
	/* A killed migrator's sockets outlive it (and NNG leaves its own too). */
	snprintf(log, sizeof(log), "%s/migrator.rpc", n->dir);
	unlink(log);
	snprintf(log, sizeof(log), "%s/migrator.events", n->dir);
	unlink(log);
	rmdir(n->dir);
	shm_region_close(&n->ram);
	shm_ctl_close(&n->ctl);
}

/* A destination node listening on a free port; its uri in @uri. */
void dst_node_start(struct snap_node *n, const char *snaps, char *uri, size_t len)
{
	snprintf(uri, len, "tcp:127.0.0.1:%u", free_port());
	snap_node_start(n, snaps, uri, CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
}

/* SIGKILL, then the same command line again: the launcher's restart. */
void snap_node_kill_restart(struct snap_node *n)
{
	int status;

	assert_int_equal(kill(n->pid, SIGKILL), 0);
	assert_int_equal(waitpid(n->pid, &status, 0), n->pid);
	snap_node_exec(n);
}

void snap_node_term_restart(struct snap_node *n)
{
	int status;

	assert_int_equal(kill(n->pid, SIGTERM), 0);
	assert_int_equal(waitpid(n->pid, &status, 0), n->pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail_msg("cleave-migrator after SIGTERM: status 0x%x", status);
	snap_node_exec(n);
}

void pc_pair_start(struct pc_pair *pp)
{
	uint8_t page[SHM_PAGE_SIZE];
	struct region *r;

	snprintf(pp->snaps, sizeof(pp->snaps), "/tmp/cleave-snaps-XXXXXX");
	assert_non_null(mkdtemp(pp->snaps));
	snap_node_start(&pp->src, pp->snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	for (uint64_t p = 0; p < pp->src.ram.size / SHM_PAGE_SIZE; p++) {
		memset(page, (int)(p % 251) + 1, sizeof(page));
		assert_int_equal(
			pwrite(pp->src.ram.fd, page, sizeof(page), (off_t)(p * SHM_PAGE_SIZE)),
			sizeof(page));
	}
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pp->link), 0);
	pp->dst.has_link = true;
	pp->dst.link_fd = pp->link[1];
	dst_node_start(&pp->dst, pp->snaps, pp->uri, sizeof(pp->uri));
	assert_int_equal(region_table_init(&pp->table), 0);
	assert_int_equal(
		region_table_add(&pp->table, 0, 0, pp->dst.ram.size, pp->dst.ram.base, NULL, &r),
		0);
	region_unlock_write(r);
	/* As cleave-vcpu: its fault service first, then the server on it. */
	assert_int_equal(fault_service_start(&pp->fs, &pp->table, NULL), 0);
	assert_int_equal(
		pclink_server_start(&pp->srv, pp->link[0], &pp->table, &pp->dst.ctl, pp->fs), 0);
	caps_postcopy(pp->src.dir);
	caps_postcopy(pp->dst.dir);
}

/* Whether page @p is the same on both sides; the destination's copy in @got. */
bool pc_pair_page_same(struct pc_pair *pp, uint64_t p, uint8_t *got)
{
	uint8_t want[SHM_PAGE_SIZE];
	off_t off = (off_t)(p * SHM_PAGE_SIZE);

	assert_int_equal(pread(pp->src.ram.fd, want, sizeof(want), off), sizeof(want));
	assert_int_equal(pread(pp->dst.ram.fd, got, SHM_PAGE_SIZE, off), SHM_PAGE_SIZE);
	return !memcmp(want, got, SHM_PAGE_SIZE);
}

/* Both migrators stopped, then the VM side as cleave-vcpu tears it down. */
void pc_pair_stop(struct pc_pair *pp)
{
	/* The VM side first: its threads read the destination's ctl and RAM, which stop frees. */
	assert_int_equal(pclink_server_stop(pp->srv, true), 0);
	assert_int_equal(fault_service_stop(pp->fs), 0);
	region_table_remove(&pp->table, 0);
	region_table_fini(&pp->table);
	snap_node_stop(&pp->dst);
	snap_node_stop(&pp->src);
	close(pp->link[0]);
	close(pp->link[1]);
	rmdir(pp->snaps);
}
