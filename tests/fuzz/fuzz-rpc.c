// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: one RPC request as a server receives it, bytes in.
 * rpc_answer() is the serving thread's whole path without the socket: the
 * envelope (version, method), the method's request body unpacked with its
 * generated protobuf-c descriptor, the handler, and the packed reply.
 *
 * The services are vcpu.proto's and migrator.proto's as vcpu-proc/service.c
 * and migrator/server.c declare them (same ids, same request types).  Their
 * handlers only touch what needs no KVM and no migration session:
 * LOAD_STATE runs vcpu-proc's own vm_state_load() (VmState decode and
 * check) on a VM without KVM fds, which stops at the first ioctl; the URI
 * and side of MIGRATE, INCOMING and RESOLVE are quoted back in an error, as
 * a failing migrator does; SET_PARAMETERS checks the limits the migrator
 * checks (migrator/mig-limits.h).
 *
 * Properties beyond the sanitizers: a reply always exists and unpacks as a
 * v1 reply envelope, and an error text quoting valid UTF-8 is valid UTF-8.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>

#include "migrator/mig-limits.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"
#include "proto/rpc.pb-c.h"
#include "proto/utf8.h"
#include "proto/vcpu.pb-c.h"
#include "vcpu-proc/vm.h"

/* Every method: the fuzzer reaches each handler, as the caller allowed it would. */
static const struct rpc_caller fuzz_any_caller = {.name = "fuzz", .url = "ipc:///fuzz"};

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A copy of what a handler quoted (the request is freed before the reply is checked). */
static char *fuzz_quoted;

static bool fuzz_utf8_valid(const char *s)
{
	size_t left = strlen(s), n;

	for (; left; s += n, left -= n) {
		n = utf8_char_len(s, left);
		if (!n)
			return false;
	}
	return true;
}

static int fuzz_ok(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	return 0;
}

static int fuzz_vcpu_load_state(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Vcpu__LoadStateRequest *lr = (const void *)req;
	char err[256] = "";
	int ret;

	/* As vcpu-proc/service.c's LOAD_STATE handler. */
	ret = vm_state_load(arg, lr->state.data, lr->state.len, err, sizeof(err));
	if (ret)
		return rpc_reply_error(r, ret, "%s", err);
	return 0;
}

static int fuzz_vcpu_status(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	Cleave__Vcpu__StatusReply rep = CLEAVE__VCPU__STATUS_REPLY__INIT;

	rep.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE;
	return rpc_reply_set(r, &rep.base);
}

/* Same ids and request types as vcpu-proc/service.c. */
static const struct rpc_method fuzz_vcpu_methods[] = {
	{CLEAVE__VCPU__METHOD__METHOD_STATUS, "STATUS", NULL, fuzz_vcpu_status},
	{CLEAVE__VCPU__METHOD__METHOD_PAUSE, "PAUSE", &cleave__vcpu__pause_request__descriptor,
	 fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_RESUME, "RESUME", NULL, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, "DIRTY_LOG",
	 &cleave__vcpu__dirty_log_request__descriptor, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_HARVEST, "HARVEST", NULL, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, "SAVE_STATE", NULL, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, "LOAD_STATE",
	 &cleave__vcpu__load_state_request__descriptor, fuzz_vcpu_load_state},
	{CLEAVE__VCPU__METHOD__METHOD_RESET, "RESET", NULL, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_QUIT, "QUIT", NULL, fuzz_ok},
	{CLEAVE__VCPU__METHOD__METHOD_THROTTLE, "THROTTLE",
	 &cleave__vcpu__throttle_request__descriptor, fuzz_ok},
};

static int fuzz_mig_quote(struct rpc_reply *r, const char *what, const char *text)
{
	free(fuzz_quoted);
	fuzz_quoted = strdup(text);
	return rpc_reply_error(r, -ECONNREFUSED, "Failed to %s '%s'", what, text);
}

static int fuzz_mig_migrate(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	return fuzz_mig_quote(r, "connect to",
			      ((const Cleave__Migrator__MigrateRequest *)req)->uri);
}

static int fuzz_mig_incoming(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	return fuzz_mig_quote(r, "listen on",
			      ((const Cleave__Migrator__IncomingRequest *)req)->uri);
}

static int fuzz_mig_resolve(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	return fuzz_mig_quote(r, "resolve to",
			      ((const Cleave__Migrator__ResolveRequest *)req)->run_on);
}

static int fuzz_mig_set_params(void *arg, const ProtobufCMessage *req, struct rpc_reply *r)
{
	const Cleave__Migrator__Parameters *p = (const void *)req;
	char err[128];
	int ret = 0;

	if (p->has_multifd_channels)
		ret = mig_check_channels(p->multifd_channels, err, sizeof(err));
	if (!ret && p->has_downtime_limit)
		ret = mig_check_downtime(p->downtime_limit, err, sizeof(err));
	return ret ? rpc_reply_error(r, ret, "%s", err) : 0;
}

/* Same ids and request types as migrator/server.c. */
static const struct rpc_method fuzz_mig_methods[] = {
	{CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, "MIGRATE",
	 &cleave__migrator__migrate_request__descriptor, fuzz_mig_migrate},
	{CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, "INCOMING",
	 &cleave__migrator__incoming_request__descriptor, fuzz_mig_incoming},
	{CLEAVE__MIGRATOR__METHOD__METHOD_CANCEL, "CANCEL", NULL, fuzz_ok},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, "QUERY", NULL, fuzz_ok},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES, "SET_CAPABILITIES",
	 &cleave__migrator__capabilities__descriptor, fuzz_ok},
	{CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS, "SET_PARAMETERS",
	 &cleave__migrator__parameters__descriptor, fuzz_mig_set_params},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_PARAMETERS, "QUERY_PARAMETERS", NULL, fuzz_ok},
	{CLEAVE__MIGRATOR__METHOD__METHOD_QUERY_CAPABILITIES, "QUERY_CAPABILITIES", NULL, fuzz_ok},
	{CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE, "RESOLVE",
	 &cleave__migrator__resolve_request__descriptor, fuzz_mig_resolve},
};

/* An incoming VM with two vCPUs that never ran, and no KVM behind it. */
static struct vm fuzz_vm;
static struct vcpu fuzz_vcpus[2];

static struct rpc_service fuzz_services[] = {
	{fuzz_vcpu_methods, sizeof(fuzz_vcpu_methods) / sizeof(fuzz_vcpu_methods[0]), &fuzz_vm,
	 "ipc:///fuzz/vcpu.rpc"},
	{fuzz_mig_methods, sizeof(fuzz_mig_methods) / sizeof(fuzz_mig_methods[0]), NULL,
	 "ipc:///fuzz/migrator.rpc"},
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_vm.kvm_fd = -1;
	fuzz_vm.vm_fd = -1;
	fuzz_vm.nr_vcpus = 2;
	fuzz_vm.vcpus = fuzz_vcpus;
	for (unsigned int i = 0; i < 2; i++) {
		fuzz_vcpus[i].vm = &fuzz_vm;
		fuzz_vcpus[i].index = i;
		fuzz_vcpus[i].fd = -1;
	}
	pthread_mutex_init(&fuzz_vm.ctrl_lock, NULL);
	pthread_mutex_init(&fuzz_vm.lock, NULL);
	pthread_cond_init(&fuzz_vm.cond, NULL);
	return 0;
}

static void fuzz_rpc_check_reply(nng_msg *out)
{
	Cleave__Rpc__Reply *rep;

	if (!out) {
		fprintf(stderr, "fuzz-rpc: no reply\n");
		abort();
	}
	rep = cleave__rpc__reply__unpack(NULL, nng_msg_len(out), nng_msg_body(out));
	if (!rep || rep->version != RPC_VERSION) {
		fprintf(stderr, "fuzz-rpc: the reply does not unpack as a v%u envelope\n",
			RPC_VERSION);
		abort();
	}
	if (fuzz_quoted && fuzz_utf8_valid(fuzz_quoted) && rep->error_message &&
	    !fuzz_utf8_valid(rep->error_message)) {
		fprintf(stderr, "fuzz-rpc: error text '%s' is not UTF-8\n", rep->error_message);
		abort();
	}
	cleave__rpc__reply__free_unpacked(rep, NULL);
	nng_msg_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	for (size_t i = 0; i < sizeof(fuzz_services) / sizeof(fuzz_services[0]); i++) {
		/* Each handler's state as a fresh process has it. */
		fuzz_vm.state = VM_INMIGRATE;
		fuzz_vm.state_loaded = false;
		fuzz_rpc_check_reply(rpc_answer(&fuzz_services[i], &fuzz_any_caller, data, size));
		free(fuzz_quoted);
		fuzz_quoted = NULL;
	}
	return 0;
}
