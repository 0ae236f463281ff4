/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * struct mig_vm_ops for cleave-migrator: each op is one RPC to vcpu-proc;
 * postcopy's go over the postcopy link instead (migrator/postcopy-link.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "migrator/migrator-process.h"
#include "migrator/postcopy-link.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"

/* PAUSE waits for every vCPU to park, SAVE/LOAD move MiBs: more than the default. */
#define VMOPS_TIMEOUT_MS 10000

static int vm_call(void *arg, uint32_t method, const char *name, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *reply_desc, ProtobufCMessage **reply)
{
	struct rpc_client *c = ((struct migrator_vm *)arg)->rpc;
	char err[RPC_ERRMSG_LEN] = "";
	int ret;

	ret = rpc_call(c, method, req, reply_desc, reply, VMOPS_TIMEOUT_MS, err, sizeof(err));
	if (ret)
		log_err("vcpu-proc %s: %s%s%s", name, strerror(-ret), err[0] ? ": " : "", err);
	return ret;
}

static int ops_pause(void *arg, enum mig_pause_state state)
{
	Cleave__Vcpu__PauseRequest req = CLEAVE__VCPU__PAUSE_REQUEST__INIT;

	req.state = (Cleave__Vcpu__RunState)state;
	return vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_PAUSE, "PAUSE", &req.base, NULL, NULL);
}

static int ops_resume(void *arg)
{
	Cleave__Vcpu__ResumeRequest req = CLEAVE__VCPU__RESUME_REQUEST__INIT;

	return vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_RESUME, "RESUME", &req.base, NULL, NULL);
}

static int ops_dirty_log(void *arg, bool enable)
{
	Cleave__Vcpu__DirtyLogRequest req = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;

	req.enable = enable;
	return vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, "DIRTY_LOG", &req.base, NULL,
		       NULL);
}

static int ops_harvest(void *arg, uint64_t *dirty)
{
	Cleave__Vcpu__HarvestRequest req = CLEAVE__VCPU__HARVEST_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	int ret;

	ret = vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_HARVEST, "HARVEST", &req.base,
		      &cleave__vcpu__harvest_reply__descriptor, &reply);
	if (ret)
		return ret;
	*dirty = ((Cleave__Vcpu__HarvestReply *)reply)->dirty_pages;
	rpc_msg_free(reply);
	return 0;
}

static int ops_save_state(void *arg, void **blob, size_t *len)
{
	Cleave__Vcpu__SaveStateRequest req = CLEAVE__VCPU__SAVE_STATE_REQUEST__INIT;
	Cleave__Vcpu__SaveStateReply *r;
	ProtobufCMessage *reply = NULL;
	int ret;

	ret = vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, "SAVE_STATE", &req.base,
		      &cleave__vcpu__save_state_reply__descriptor, &reply);
	if (ret)
		return ret;
	r = (Cleave__Vcpu__SaveStateReply *)reply;
	*len = r->state.len;
	*blob = malloc(r->state.len ? r->state.len : 1);
	if (*blob)
		memcpy(*blob, r->state.data, r->state.len);
	rpc_msg_free(reply);
	return *blob ? 0 : -ENOMEM;
}

static int ops_load_state(void *arg, const void *blob, size_t len)
{
	Cleave__Vcpu__LoadStateRequest req = CLEAVE__VCPU__LOAD_STATE_REQUEST__INIT;

	req.state.data = (uint8_t *)blob;
	req.state.len = len;
	return vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, "LOAD_STATE", &req.base, NULL,
		       NULL);
}

static int ops_throttle(void *arg, unsigned int percent)
{
	Cleave__Vcpu__ThrottleRequest req = CLEAVE__VCPU__THROTTLE_REQUEST__INIT;

	req.percent = percent;
	return vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, "THROTTLE", &req.base, NULL,
		       NULL);
}

static int ops_run_state(void *arg, int *state)
{
	ProtobufCMessage *reply = NULL;
	int ret;

	ret = vm_call(arg, CLEAVE__VCPU__METHOD__METHOD_STATUS, "STATUS", NULL,
		      &cleave__vcpu__status_reply__descriptor, &reply);
	if (ret)
		return ret;
	*state = ((Cleave__Vcpu__StatusReply *)reply)->state;
	rpc_msg_free(reply);
	return 0;
}

const struct mig_vm_ops migrator_vm_ops = {
	.run_state = ops_run_state,
	.pause = ops_pause,
	.resume = ops_resume,
	.dirty_log = ops_dirty_log,
	.harvest = ops_harvest,
	.save_state = ops_save_state,
	.load_state = ops_load_state,
	.throttle = ops_throttle,
};

static struct mig_pclink *vm_link(void *arg)
{
	return ((struct migrator_vm *)arg)->link;
}

static int ops_pc_listen(void *arg, const uint64_t *const needed[])
{
	/* cleave-vcpu reads the needed maps from the control segment itself. */
	(void)needed;
	return mig_pclink_listen(vm_link(arg));
}

static int ops_pc_wait_faults(void *arg, struct mig_page_ref *reqs, unsigned int max,
			      int timeout_ms, bool again)
{
	return mig_pclink_wait_faults(vm_link(arg), reqs, max, timeout_ms, again);
}

static int ops_pc_place(void *arg, uint32_t region, uint64_t page, unsigned int nr,
			const void *data)
{
	return mig_pclink_place(vm_link(arg), region, page, nr, data);
}

static int ops_pc_end(void *arg, bool abort)
{
	return mig_pclink_end(vm_link(arg), abort);
}

static const struct mig_postcopy_ops pclink_ops = {
	.listen = ops_pc_listen,
	.wait_faults = ops_pc_wait_faults,
	.place = ops_pc_place,
	.end = ops_pc_end,
};

const struct mig_vm_ops migrator_vm_ops_postcopy = {
	.run_state = ops_run_state,
	.pause = ops_pause,
	.resume = ops_resume,
	.dirty_log = ops_dirty_log,
	.harvest = ops_harvest,
	.save_state = ops_save_state,
	.load_state = ops_load_state,
	.throttle = ops_throttle,
	.postcopy = &pclink_ops,
};
