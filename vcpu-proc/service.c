// SPDX-License-Identifier: GPL-2.0-only
/* The vcpu.proto RPC methods; run one at a time on the "rpc" thread. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "vcpu-proc/fault.h"
#include "vcpu-proc/vm.h"

static const char *vm_state_name(enum vm_run_state st)
{
	switch (st) {
	case VM_PRELAUNCH:
		return "prelaunch";
	case VM_RUNNING:
		return "running";
	case VM_PAUSED:
		return "paused";
	case VM_SHUTDOWN:
		return "shutdown";
	case VM_INTERNAL_ERROR:
		return "internal-error";
	case VM_INMIGRATE:
		return "inmigrate";
	case VM_FINISH_MIGRATE:
		return "finish-migrate";
	case VM_POSTMIGRATE:
		return "postmigrate";
	}
	return "?";
}

static int vm_rpc_status(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct vm *vm = arg;
	Cleave__Vcpu__StatusReply rep = CLEAVE__VCPU__STATUS_REPLY__INIT;
	Cleave__Vcpu__VcpuInfo *info, **ptrs;
	int ret;

	info = calloc(vm->nr_vcpus, sizeof(*info));
	ptrs = calloc(vm->nr_vcpus, sizeof(*ptrs));
	if (!info || !ptrs) {
		free(info);
		free(ptrs);
		return rpc_reply_error(reply, -ENOMEM, "out of memory");
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		cleave__vcpu__vcpu_info__init(&info[i]);
		info[i].index = i;
		info[i].thread_id = __atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_ACQUIRE);
		ptrs[i] = &info[i];
	}
	rep.n_vcpus = vm->nr_vcpus;
	rep.vcpus = ptrs;
	for (unsigned int i = 0; i < vm->nr_ram; i++)
		rep.memory_bytes += vm->ram[i].size;
	/* A state and the last announcement before it, as one (docs/QMP.md, query-status). */
	pthread_mutex_lock(&vm->announce_lock);
	rep.announced_seq = vm->announced_seq;
	pthread_mutex_lock(&vm->lock);
	rep.state = (Cleave__Vcpu__RunState)vm->state;
	rep.dirty_log = vm->dirty_log;
	rep.throttle_percent = vm->throttle_percent;
	rep.exit_code = vm->guest_exit_code;
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->announce_lock);
	if (vm_clock_now(vm, &rep.guest_ns))
		rep.guest_ns = 0;
	ret = rpc_reply_set(reply, &rep.base);
	free(info);
	free(ptrs);
	return ret;
}

static int vm_rpc_pause(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Vcpu__PauseRequest *r = (const void *)req;
	struct vm *vm = arg;
	enum vm_run_state target = VM_PAUSED;
	int ret;

	if (r && r->state != CLEAVE__VCPU__RUN_STATE__RUN_STATE_UNSPECIFIED)
		target = (enum vm_run_state)r->state;
	ret = vm_pause(vm, target);
	if (ret)
		return rpc_reply_error(reply, ret, "cannot pause to %s in state %s",
				       vm_state_name(target), vm_state_name(vm_get_state(vm)));
	return 0;
}

static int vm_rpc_resume(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct vm *vm = arg;
	int ret = vm_resume(vm);

	if (ret)
		return rpc_reply_error(
			reply, ret, "cannot resume in state %s%s", vm_state_name(vm_get_state(vm)),
			vm_get_state(vm) == VM_INMIGRATE ? " before LOAD_STATE" : "");
	return 0;
}

static int vm_rpc_dirty_log(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Vcpu__DirtyLogRequest *r = (const void *)req;
	int ret = vm_dirty_log_set(arg, r->enable);

	if (ret)
		return rpc_reply_error(reply, ret, "dirty log %s failed", r->enable ? "on" : "off");
	return 0;
}

static int vm_rpc_harvest(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Vcpu__HarvestReply rep = CLEAVE__VCPU__HARVEST_REPLY__INIT;
	int ret = vm_dirty_harvest(arg, &rep.dirty_pages);

	if (ret)
		return rpc_reply_error(reply, ret, "dirty harvest failed");
	return rpc_reply_set(reply, &rep.base);
}

static int vm_rpc_save_state(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	Cleave__Vcpu__SaveStateReply rep = CLEAVE__VCPU__SAVE_STATE_REPLY__INIT;
	struct vm *vm = arg;
	uint8_t *buf;
	size_t len;
	int ret;

	ret = vm_state_save(vm, &buf, &len);
	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret, "SAVE_STATE needs a paused VM (state %s)",
				       vm_state_name(vm_get_state(vm)));
	if (ret)
		return rpc_reply_error(reply, ret, "saving state failed: %s", strerror(-ret));
	rep.state.data = buf;
	rep.state.len = len;
	ret = rpc_reply_set(reply, &rep.base);
	free(buf);
	return ret;
}

static int vm_rpc_load_state(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Vcpu__LoadStateRequest *r = (const void *)req;
	char err[256] = "";
	int ret;

	ret = vm_state_load(arg, r->state.data, r->state.len, err, sizeof(err));
	if (ret)
		return rpc_reply_error(reply, ret, "%s", err);
	return 0;
}

static int vm_rpc_reset(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	struct vm *vm = arg;
	int ret = vm_reset(vm, false);

	if (ret == -EBUSY)
		return rpc_reply_error(reply, ret, "cannot reset in state %s",
				       vm_state_name(vm_get_state(vm)));
	if (ret) {
		vm_request_exit(vm, VM_EXIT_ERROR, VM_EXIT_FAILURE);
		return rpc_reply_error(reply, ret, "reset failed");
	}
	return 0;
}

static int vm_rpc_quit(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	log_info("quit requested");
	/* main lets this reply go out (a grace period) before it stops the server. */
	vm_request_exit(arg, VM_EXIT_QUIT, 0);
	return 0;
}

static int vm_rpc_throttle(void *arg, const ProtobufCMessage *req, struct rpc_reply *reply)
{
	const Cleave__Vcpu__ThrottleRequest *r = (const void *)req;
	int ret = vm_throttle_set(arg, r->percent);

	if (ret)
		return rpc_reply_error(reply, ret, "throttle %u%%: must be 0..99", r->percent);
	log_info("throttle %u%%", r->percent);
	return 0;
}

/*
 * Not measured (measured false) without a fault service.  Under ctrl_lock:
 * main takes vm->faults away under it before it stops the service.
 */
static int vm_rpc_postcopy_blocktime(void *arg, const ProtobufCMessage *req,
				     struct rpc_reply *reply)
{
	Cleave__Vcpu__PostcopyBlocktime rep = CLEAVE__VCPU__POSTCOPY_BLOCKTIME__INIT;
	struct fault_blocktime bt = {0};
	struct vm *vm = arg;
	int ret;

	pthread_mutex_lock(&vm->ctrl_lock);
	ret = vm->faults ? fault_service_blocktime(vm->faults, &bt) : 0;
	pthread_mutex_unlock(&vm->ctrl_lock);
	if (ret)
		return rpc_reply_error(reply, ret, "out of memory");
	rep.measured = bt.measured;
	rep.total_ms = bt.total_ms;
	rep.n_vcpu_ms = bt.nr_vcpus;
	rep.vcpu_ms = bt.vcpu_ms;
	ret = rpc_reply_set(reply, &rep.base);
	fault_blocktime_fini(&bt);
	return ret;
}

static const struct rpc_method vm_rpc_methods[] = {
	{CLEAVE__VCPU__METHOD__METHOD_STATUS, "STATUS", NULL, vm_rpc_status},
	{CLEAVE__VCPU__METHOD__METHOD_PAUSE, "PAUSE", &cleave__vcpu__pause_request__descriptor,
	 vm_rpc_pause},
	{CLEAVE__VCPU__METHOD__METHOD_RESUME, "RESUME", NULL, vm_rpc_resume},
	{CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, "DIRTY_LOG",
	 &cleave__vcpu__dirty_log_request__descriptor, vm_rpc_dirty_log},
	{CLEAVE__VCPU__METHOD__METHOD_HARVEST, "HARVEST", NULL, vm_rpc_harvest},
	{CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, "SAVE_STATE", NULL, vm_rpc_save_state},
	{CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, "LOAD_STATE",
	 &cleave__vcpu__load_state_request__descriptor, vm_rpc_load_state},
	{CLEAVE__VCPU__METHOD__METHOD_RESET, "RESET", NULL, vm_rpc_reset},
	{CLEAVE__VCPU__METHOD__METHOD_QUIT, "QUIT", NULL, vm_rpc_quit},
	{CLEAVE__VCPU__METHOD__METHOD_THROTTLE, "THROTTLE",
	 &cleave__vcpu__throttle_request__descriptor, vm_rpc_throttle},
	{CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME, "POSTCOPY_BLOCKTIME", NULL,
	 vm_rpc_postcopy_blocktime},
};

/*
 * The migrator moves the VM: it reads and loads its state and RAM's dirty
 * pages, pauses and resumes, throttles.  It may not reset or quit the VM.
 */
static const uint32_t vm_rpc_for_migrator[] = {
	CLEAVE__VCPU__METHOD__METHOD_STATUS,	 CLEAVE__VCPU__METHOD__METHOD_PAUSE,
	CLEAVE__VCPU__METHOD__METHOD_RESUME,	 CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG,
	CLEAVE__VCPU__METHOD__METHOD_HARVEST,	 CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE,
	CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, CLEAVE__VCPU__METHOD__METHOD_THROTTLE,
};

/*
 * The monitor runs QMP's query-status, stop, cont, system_reset and quit,
 * and reads the postcopy blocktime for query-migrate.  It may not read or
 * write CPU state or dirty logs: QMP has no way to ask.
 */
static const uint32_t vm_rpc_for_monitor[] = {
	CLEAVE__VCPU__METHOD__METHOD_STATUS, CLEAVE__VCPU__METHOD__METHOD_PAUSE,
	CLEAVE__VCPU__METHOD__METHOD_RESUME, CLEAVE__VCPU__METHOD__METHOD_RESET,
	CLEAVE__VCPU__METHOD__METHOD_QUIT,   CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME,
};

#define VM_RPC_NR(a) (sizeof(a) / sizeof((a)[0]))

int vm_service_start(struct vm *vm, const struct vm_service_urls *urls, struct rpc_server **out)
{
	struct rpc_caller callers[3];
	size_t n = 0;

	if (urls->migrator)
		callers[n++] =
			(struct rpc_caller){"the migrator", urls->migrator, vm_rpc_for_migrator,
					    VM_RPC_NR(vm_rpc_for_migrator)};
	if (urls->monitor)
		callers[n++] = (struct rpc_caller){"the monitor", urls->monitor, vm_rpc_for_monitor,
						   VM_RPC_NR(vm_rpc_for_monitor)};
	if (urls->any)
		callers[n++] = (struct rpc_caller){"any caller", urls->any, NULL, 0};
	return rpc_server_start_callers(out, callers, n, vm_rpc_methods, VM_RPC_NR(vm_rpc_methods),
					vm);
}
