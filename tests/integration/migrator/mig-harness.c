// SPDX-License-Identifier: GPL-2.0-only
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "mig-harness.h"
#include "tests/util/test-util.h"

extern char **environ;

static const char *migrator_bin;

void mig_harness_init(const char *bin)
{
	migrator_bin = bin;
}

int mig_spawn(struct vt *t, struct mproc *m, const char *incoming, const char *hooks)
{
	ProtobufCMessage *rep = NULL;
	unsigned int n = 0;
	int ret;

	memset(m, 0, sizeof(*m));
	m->vm = t;
	snprintf(m->rpc_url, sizeof(m->rpc_url), "ipc://%s/migrator.rpc", t->dir);
	snprintf(m->events_url, sizeof(m->events_url), "ipc://%s/migrator.events", t->dir);
	snprintf(m->log_path, sizeof(m->log_path), "%s/migrator.log", t->dir);
	snprintf(m->hooks, sizeof(m->hooks), "%s", hooks ? hooks : "");
	snprintf(m->incoming, sizeof(m->incoming), "%s", incoming ? incoming : "");
	snprintf(m->ctl_arg, sizeof(m->ctl_arg), "%d", t->ctl.fd);
	if (t->nr_ram == 2)
		snprintf(m->ram_arg, sizeof(m->ram_arg), "%d,%d", t->ram[0].fd, t->ram[1].fd);
	else
		snprintf(m->ram_arg, sizeof(m->ram_arg), "%d", t->ram[0].fd);
	m->argv[n++] = migrator_bin;
	m->argv[n++] = "--ctl-fd";
	m->argv[n++] = m->ctl_arg;
	m->argv[n++] = "--ram-fds";
	m->argv[n++] = m->ram_arg;
	/* The migrator's own listener, as under cleave run: its methods only. */
	m->argv[n++] = "--vcpu-rpc";
	m->argv[n++] = t->mig_rpc_url;
	m->argv[n++] = "--rpc";
	m->argv[n++] = m->rpc_url;
	m->argv[n++] = "--events";
	m->argv[n++] = m->events_url;
	if (incoming) {
		m->argv[n++] = "--incoming";
		m->argv[n++] = m->incoming;
	}
	if (getenv("MIG_VERBOSE"))
		m->argv[n++] = "-v";
	m->argv[n] = NULL;
	ret = mig_respawn(m);
	if (ret)
		return ret;
	/* --incoming listens before the RPC server answers: once it does, a source may connect. */
	while (mig_call_quiet(m, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			      &cleave__migrator__migration_info__descriptor, &rep, 200)) {
		if (vt_now_ms() - m->spawn_ms > 10000)
			return -ETIMEDOUT;
	}
	rpc_msg_free(rep);
	return 0;
}

int mig_respawn(struct mproc *m)
{
	struct vt *t = m->vm;
	char hooks_env[sizeof(m->hooks) + 32];
	char **envp;
	size_t n = 0, i = 0;
	int logfd, ret = 0;
	pid_t pid;

	assert_int_equal(m->pid, 0);
	/* Built before fork(): the test has threads (NNG, proxies), the child only execs. */
	while (environ[n])
		n++;
	envp = calloc(n + 2, sizeof(*envp));
	if (!envp)
		return -ENOMEM;
	for (size_t k = 0; k < n; k++) {
		if (strncmp(environ[k], "CLEAVE_MIG_TEST_HOOKS=", 22))
			envp[i++] = environ[k];
	}
	if (m->hooks[0]) {
		snprintf(hooks_env, sizeof(hooks_env), "CLEAVE_MIG_TEST_HOOKS=%s", m->hooks);
		envp[i++] = hooks_env;
	}
	envp[i] = NULL;
	logfd = open(m->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (logfd < 0) {
		ret = -errno;
		goto out;
	}
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(logfd);
		goto out;
	}
	if (pid == 0) {
		fcntl(t->ctl.fd, F_SETFD, 0);
		for (unsigned int r = 0; r < t->nr_ram; r++)
			fcntl(t->ram[r].fd, F_SETFD, 0);
		dup2(logfd, STDERR_FILENO);
		/* A test that dies takes its migrators with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		execve(migrator_bin, (char *const *)m->argv, envp);
		_exit(127);
	}
	close(logfd);
	m->pid = pid;
	m->spawns++;
	m->spawn_ms = vt_now_ms();
	if (!m->rpc)
		ret = rpc_client_open(&m->rpc, m->rpc_url);
out:
	free(envp);
	return ret;
}

void mig_kill(struct mproc *m)
{
	int st;

	if (m->pid <= 0)
		return;
	kill(m->pid, SIGKILL);
	waitpid(m->pid, &st, 0);
	m->pid = 0;
}

void mig_stop(struct mproc *m)
{
	int st;

	if (m->rpc)
		rpc_client_close(m->rpc);
	m->rpc = NULL;
	if (m->pid <= 0)
		return;
	kill(m->pid, SIGTERM);
	for (int i = 0; i < 100; i++) {
		if (waitpid(m->pid, &st, WNOHANG) == m->pid) {
			m->pid = 0;
			return;
		}
		usleep(20000);
	}
	mig_kill(m);
}

int mig_call_quiet(struct mproc *m, uint32_t method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep, int timeout_ms)
{
	char err[RPC_ERRMSG_LEN] = "";

	return rpc_call(m->rpc, method, req, rd, rep, timeout_ms, err, sizeof(err));
}

void mig_vm_end(struct vt *t, struct mproc *m)
{
	int status;

	mig_stop(m);
	vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	if (vt_wait(t, 5000, &status))
		vt_kill(t);
	vt_fini(t);
}

int mig_call(struct mproc *m, uint32_t method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep)
{
	char err[RPC_ERRMSG_LEN] = "";
	int ret = rpc_call(m->rpc, method, req, rd, rep, 3000, err, sizeof(err));

	if (ret)
		fprintf(stderr, "migrator rpc %u: %d %s\n", method, ret, err);
	return ret;
}

Cleave__Migrator__MigrationInfo *mig_query_try(struct mproc *m, int timeout_ms)
{
	ProtobufCMessage *rep = NULL;

	if (mig_call_quiet(m, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
			   &cleave__migrator__migration_info__descriptor, &rep, timeout_ms))
		return NULL;
	return (Cleave__Migrator__MigrationInfo *)rep;
}

Cleave__Migrator__MigrationInfo *mig_query(struct mproc *m)
{
	ProtobufCMessage *rep = NULL;

	assert_int_equal(mig_call(m, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
				  &cleave__migrator__migration_info__descriptor, &rep),
			 0);
	return (Cleave__Migrator__MigrationInfo *)rep;
}

Cleave__Migrator__MigrationInfo *mig_query_settled(struct mproc *m, int timeout_ms)
{
	uint64_t end = vt_now_ms() + (uint64_t)timeout_ms;
	Cleave__Migrator__MigrationInfo *mi;

	for (;;) {
		mi = mig_query(m);
		if (!mig_status_running(mi->status) || vt_now_ms() >= end)
			return mi;
		rpc_msg_free(&mi->base);
		usleep(5000);
	}
}

bool mig_status_running(const char *status)
{
	return !strcmp(status, "setup") || !strcmp(status, "active") || !strcmp(status, "device") ||
	       !strcmp(status, "cancelling");
}

void mig_configure(struct mproc *m, unsigned int channels, uint64_t max_bandwidth,
		   long reconnect_timeout_ms)
{
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	Cleave__Migrator__Parameters params = CLEAVE__MIGRATOR__PARAMETERS__INIT;

	caps.multifd = channels > 1;
	caps.events = true;
	caps.has_multifd = caps.has_events = true;
	params.multifd_channels = channels;
	params.max_bandwidth = max_bandwidth;
	params.has_multifd_channels = params.has_max_bandwidth = true;
	if (reconnect_timeout_ms >= 0) {
		params.reconnect_timeout = (uint64_t)reconnect_timeout_ms;
		params.has_reconnect_timeout = true;
	}
	assert_int_equal(mig_call(m, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, &caps.base,
				  NULL, NULL),
			 0);
	assert_int_equal(mig_call(m, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, &params.base,
				  NULL, NULL),
			 0);
}

char *mig_log_read(const struct mproc *m)
{
	return test_file_read(m->log_path);
}

int mig_log_ram_hash(const struct mproc *m, unsigned int region, uint64_t *hash)
{
	static const char key[] = "switchover RAM hash region ";
	char *log = mig_log_read(m), *p = log;
	unsigned int r;
	uint64_t h;
	int ret = -ENOENT;

	while (p && (p = strstr(p, key))) {
		p += sizeof(key) - 1;
		if (sscanf(p, "%u %16" SCNx64, &r, &h) == 2 && r == region) {
			*hash = h;
			ret = 0;
		}
	}
	free(log);
	return ret;
}

void mig_log_dump(const struct mproc *m, const char *what, size_t bytes)
{
	char *log = mig_log_read(m);
	size_t len = log ? strlen(log) : 0;

	fprintf(stderr, "---- %s (%s, last %zu bytes) ----\n%s\n----\n", what, m->log_path,
		len < bytes ? len : bytes, log ? log + (len > bytes ? len - bytes : 0) : "");
	free(log);
}

unsigned int mig_free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	close(fd);
	return ntohs(a.sin_port);
}

int mig_vm_state(struct vt *t)
{
	Cleave__Vcpu__StatusReply *st;
	int s;

	assert_int_equal(vt_status(t, &st), 0);
	s = st->state;
	rpc_msg_free(&st->base);
	return s;
}

uint64_t mig_hb_last(const struct vt *t, unsigned int cpu, uint64_t *gen, unsigned int *count)
{
	const char *p = t->serial.buf;
	uint64_t ns = 0, hgen, hns;
	unsigned int hcpu;
	int end;

	*count = 0;
	while (p && (p = strstr(p, "HB "))) {
		/*
		 * Whole lines only: a VM paused while its guest was writing a
		 * line leaves "HB 0 3 5" of "HB 0 3 504810461" behind.
		 */
		if (sscanf(p, "HB %u %" SCNu64 " %" SCNu64 "%n", &hcpu, &hgen, &hns, &end) == 3 &&
		    (p[end] == '\n' || p[end] == '\r') && hcpu == cpu) {
			if (hns < ns) {
				/* 1500 bytes before the offending line, 500 after */
				size_t at = (size_t)(p - t->serial.buf);
				size_t from = at > 1500 ? at - 1500 : 0;
				size_t len =
					t->serial.len - from < 2000 ? t->serial.len - from : 2000;

				fail_msg("cpu %u guest time went back: %" PRIu64 " after %" PRIu64
					 " at offset %zu of the serial output:\n%.*s",
					 cpu, hns, ns, at, (int)len, t->serial.buf + from);
			}
			ns = hns;
			*gen = hgen;
			(*count)++;
		}
		p += 3;
	}
	return ns;
}

void mig_ram_assert_equal(struct vt *a, struct vt *b, uint64_t from, uint64_t to)
{
	if (memcmp((uint8_t *)a->ram[0].base + from, (uint8_t *)b->ram[0].base + from, to - from)) {
		for (uint64_t o = from; o < to; o += 4096)
			if (memcmp((uint8_t *)a->ram[0].base + o, (uint8_t *)b->ram[0].base + o,
				   4096))
				fail_msg("RAM differs at gpa 0x%" PRIx64, o);
	}
}
