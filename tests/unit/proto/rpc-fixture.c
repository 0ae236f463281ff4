/* SPDX-License-Identifier: GPL-2.0-only */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "tests/unit/proto/rpc-fixture.h"

static void fixture_enter(struct fixture_state *st)
{
	if (!st)
		return;
	atomic_fetch_add(&st->calls, 1);
	if (atomic_fetch_add(&st->inside, 1) != 0)
		atomic_store(&st->overlap, true);
}

static int fixture_leave(struct fixture_state *st, int ret)
{
	if (st)
		atomic_fetch_sub(&st->inside, 1);
	return ret;
}

static int fixture_status(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__StatusReply rep = CLEAVE__VCPU__STATUS_REPLY__INIT;
	Cleave__Vcpu__VcpuInfo v0 = CLEAVE__VCPU__VCPU_INFO__INIT, v1 = v0;
	Cleave__Vcpu__VcpuInfo *vcpus[] = {&v0, &v1};
	struct fixture_state *st = arg;

	fixture_enter(st);
	v0.index = 0;
	v0.thread_id = 100;
	v1.index = 1;
	v1.thread_id = 101;
	rep.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING;
	rep.n_vcpus = 2;
	rep.vcpus = vcpus;
	rep.memory_bytes = st ? (uint64_t)atomic_load(&st->calls) : 0;
	return fixture_leave(st, rpc_reply_set(r, &rep.base));
}

static int fixture_busy(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	fixture_enter(arg);
	return fixture_leave(arg, rpc_reply_error(r, -EBUSY, "vcpu %d is busy", 3));
}

static int fixture_eio(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	fixture_enter(arg);
	return fixture_leave(arg, -EIO);
}

/* LoadStateRequest.state comes back as SaveStateReply.state. */
static int fixture_echo(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Vcpu__LoadStateRequest *in = (const void *)req;
	Cleave__Vcpu__SaveStateReply rep = CLEAVE__VCPU__SAVE_STATE_REPLY__INIT;

	fixture_enter(arg);
	rep.state = in->state;
	return fixture_leave(arg, rpc_reply_set(r, &rep.base));
}

/* A reply one byte past the limit. */
static int fixture_huge(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__SaveStateReply rep = CLEAVE__VCPU__SAVE_STATE_REPLY__INIT;
	int ret;

	fixture_enter(arg);
	rep.state.len = RPC_MAX_MSG_SIZE + 1;
	rep.state.data = calloc(1, rep.state.len);
	if (!rep.state.data)
		return fixture_leave(arg, -ENOMEM);
	ret = rpc_reply_set(r, &rep.base);
	free(rep.state.data);
	return fixture_leave(arg, ret);
}

/* Sleeps percent * 10 ms: a handler that hangs past the caller's deadline. */
static int fixture_sleep(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Vcpu__ThrottleRequest *in = (const void *)req;
	struct timespec ts = {.tv_sec = in->percent / 100,
			      .tv_nsec = (long)(in->percent % 100) * 10000000};

	fixture_enter(arg);
	nanosleep(&ts, NULL);
	return fixture_leave(arg, 0);
}

/* dirty_pages = 1 when a second rpc_reply_set was refused with -EALREADY. */
static int fixture_twice(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__HarvestReply rep = CLEAVE__VCPU__HARVEST_REPLY__INIT;
	int ret;

	fixture_enter(arg);
	rep.dirty_pages = 1;
	ret = rpc_reply_set(r, &rep.base);
	if (ret)
		return fixture_leave(arg, ret);
	rep.dirty_pages = 2;
	ret = rpc_reply_set(r, &rep.base);
	return fixture_leave(arg, ret == -EALREADY ? 0 : -EINVAL);
}

/* No request descriptor: dirty_pages = 7 when the handler got NULL. */
static int fixture_nobody(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__HarvestReply rep = CLEAVE__VCPU__HARVEST_REPLY__INIT;

	fixture_enter(arg);
	rep.dirty_pages = req == NULL ? 7 : 0;
	return fixture_leave(arg, rpc_reply_set(r, &rep.base));
}

const struct rpc_method fixture_methods[] = {
	{CLEAVE__VCPU__METHOD__METHOD_STATUS, "status", &cleave__vcpu__status_request__descriptor,
	 fixture_status},
	{CLEAVE__VCPU__METHOD__METHOD_PAUSE, "pause", &cleave__vcpu__pause_request__descriptor,
	 fixture_busy},
	{CLEAVE__VCPU__METHOD__METHOD_RESUME, "resume", NULL, fixture_eio},
	{CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, "load-state",
	 &cleave__vcpu__load_state_request__descriptor, fixture_echo},
	{CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, "save-state", NULL, fixture_huge},
	{CLEAVE__VCPU__METHOD__METHOD_THROTTLE, "throttle",
	 &cleave__vcpu__throttle_request__descriptor, fixture_sleep},
	{CLEAVE__VCPU__METHOD__METHOD_RESET, "reset", NULL, fixture_twice},
	{CLEAVE__VCPU__METHOD__METHOD_QUIT, "quit", NULL, fixture_nobody},
};
const size_t fixture_nr_methods = sizeof(fixture_methods) / sizeof(fixture_methods[0]);

int fixture_dir_make(char *dir, size_t dirlen)
{
	if ((size_t)snprintf(dir, dirlen, "/tmp/cleave-proto-XXXXXX") >= dirlen)
		return -ENAMETOOLONG;
	return mkdtemp(dir) ? 0 : -errno;
}

void fixture_url(char *url, size_t len, const char *dir, const char *name)
{
	snprintf(url, len, "ipc://%s/%s", dir, name);
}

void fixture_dir_remove(const char *dir)
{
	struct dirent *de;
	char path[512];
	DIR *d = opendir(dir);

	if (!d)
		return;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(dir);
}

pid_t fixture_server_spawn(const char *url)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		/* Never outlive the test, even when it crashes. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		execl("/proc/self/exe", "rpc-fixture-server", "serve", url, (char *)NULL);
		_exit(127);
	}
	return pid;
}

void fixture_server_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGKILL);
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

int fixture_server_main(const char *url)
{
	struct fixture_state st = {0};
	struct rpc_server *s;
	int ret;

	log_init("rpc-fixture-server");
	ret = rpc_server_start(&s, url, fixture_methods, fixture_nr_methods, &st);
	if (ret) {
		fprintf(stderr, "rpc_server_start %s: %s\n", url, strerror(-ret));
		return 1;
	}
	for (;;)
		pause();
}
