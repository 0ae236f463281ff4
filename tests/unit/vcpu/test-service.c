// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu's RPC service with its real method table and caller classes
 * (vcpu-proc/service.c), on a VM without KVM behind it: each caller class
 * reaches its own methods only.  The attacks are the ones a taken-over
 * sibling would make: a migrator that quits or resets the guest, a monitor
 * that reads or loads CPU state, harvests dirty pages or throttles.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "tests/util/test-util.h"
#include "vcpu-proc/vm.h"

static struct vm vm;
static struct vcpu vcpus[2];
static char dir[64], mig_url[128], mon_url[128];
static struct rpc_server *server;
static struct rpc_client *mig, *mon;

/* An incoming VM whose two vCPUs never ran: no KVM needed to answer. */
static int service_setup(void **state)
{
	struct vm_service_urls urls = {0};

	(void)state;
	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = -1;
	vm.nr_vcpus = 2;
	vm.vcpus = vcpus;
	for (unsigned int i = 0; i < 2; i++)
		vcpus[i] = (struct vcpu){.vm = &vm, .index = i, .fd = -1};
	pthread_mutex_init(&vm.ctrl_lock, NULL);
	pthread_mutex_init(&vm.lock, NULL);
	pthread_cond_init(&vm.cond, NULL);
	vm.state = VM_INMIGRATE;

	assert_int_equal(test_dir_make(dir, "vcpu-service"), 0);
	snprintf(mig_url, sizeof(mig_url), "ipc://%s/mig.rpc", dir);
	snprintf(mon_url, sizeof(mon_url), "ipc://%s/mon.rpc", dir);
	urls.migrator = mig_url;
	urls.monitor = mon_url;
	assert_int_equal(vm_service_start(&vm, &urls, &server), 0);
	assert_int_equal(rpc_client_open(&mig, mig_url), 0);
	assert_int_equal(rpc_client_open(&mon, mon_url), 0);
	return 0;
}

static int service_teardown(void **state)
{
	(void)state;
	rpc_client_close(mig);
	rpc_client_close(mon);
	rpc_server_stop(server);
	return test_dir_remove(dir) ? -1 : 0;
}

static int call(struct rpc_client *c, uint32_t method, const ProtobufCMessage *req, char *err,
		size_t errlen)
{
	return rpc_call(c, method, req, NULL, NULL, 2000, err, errlen);
}

static void test_status_for_both(void **state)
{
	ProtobufCMessage *out;
	char err[RPC_ERRMSG_LEN];

	(void)state;
	assert_int_equal(rpc_call(mig, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL,
				  &cleave__vcpu__status_reply__descriptor, &out, 2000, err,
				  sizeof(err)),
			 0);
	rpc_msg_free(out);
	assert_int_equal(rpc_call(mon, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL,
				  &cleave__vcpu__status_reply__descriptor, &out, 2000, err,
				  sizeof(err)),
			 0);
	rpc_msg_free(out);
}

/* A taken-over migrator ends or resets the guest: refused, and nothing happens. */
static void test_migrator_may_not_quit(void **state)
{
	char err[RPC_ERRMSG_LEN];

	(void)state;
	assert_int_equal(call(mig, CLEAVE__VCPU__METHOD__METHOD_QUIT, NULL, err, sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "the migrator may not call QUIT"));
	assert_int_equal(call(mig, CLEAVE__VCPU__METHOD__METHOD_RESET, NULL, err, sizeof(err)),
			 -EPERM);
	pthread_mutex_lock(&vm.lock);
	assert_false(vm.quit);
	assert_int_equal(vm.exit_reason, VM_EXIT_NONE);
	assert_int_equal(vm.state, VM_INMIGRATE);
	pthread_mutex_unlock(&vm.lock);
}

/*
 * A taken-over monitor reads or rewrites CPU state, or drives dirty
 * logging: refused.  THROTTLE is the control: the same request through
 * the migrator's socket is served.
 */
static void test_monitor_may_not_touch_state(void **state)
{
	Cleave__Vcpu__ThrottleRequest th = CLEAVE__VCPU__THROTTLE_REQUEST__INIT;
	Cleave__Vcpu__LoadStateRequest ls = CLEAVE__VCPU__LOAD_STATE_REQUEST__INIT;
	Cleave__Vcpu__DirtyLogRequest dl = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;
	char err[RPC_ERRMSG_LEN];

	(void)state;
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL, err,
			      sizeof(err)),
			 -EPERM);
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &ls.base, err,
			      sizeof(err)),
			 -EPERM);
	assert_non_null(strstr(err, "the monitor may not call LOAD_STATE"));
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL, err, sizeof(err)),
			 -EPERM);
	dl.enable = true;
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &dl.base, err,
			      sizeof(err)),
			 -EPERM);
	th.percent = 0;
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &th.base, err,
			      sizeof(err)),
			 -EPERM);
	assert_false(vm.dirty_log);
	assert_int_equal(call(mig, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &th.base, err,
			      sizeof(err)),
			 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_for_both),
		cmocka_unit_test(test_migrator_may_not_quit),
		cmocka_unit_test(test_monitor_may_not_touch_state),
	};

	return cmocka_run_group_tests(tests, service_setup, service_teardown);
}
