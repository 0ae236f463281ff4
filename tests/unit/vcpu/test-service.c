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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "sandbox/sandbox.h"
#include "tests/util/test-util.h"
#include "vcpu-proc/fault.h"
#include "vcpu-proc/vm.h"

static struct vm vm;
static struct vcpu vcpus[2];
static char dir[64], mig_url[128], mon_url[128];
static struct rpc_server *server;
static struct rpc_client *mig, *mon;

/* An incoming VM whose two vCPUs never ran: no KVM needed to answer. */
static void fake_vm_init(void)
{
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
}

static int service_setup(void **state)
{
	struct vm_service_urls urls = {0};

	(void)state;
	fake_vm_init();
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
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL, err, sizeof(err)),
			 -EPERM);
	assert_int_equal(
		call(mon, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &ls.base, err, sizeof(err)),
		-EPERM);
	assert_non_null(strstr(err, "the monitor may not call LOAD_STATE"));
	assert_int_equal(call(mon, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL, err, sizeof(err)),
			 -EPERM);
	dl.enable = true;
	assert_int_equal(
		call(mon, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &dl.base, err, sizeof(err)),
		-EPERM);
	th.percent = 0;
	assert_int_equal(
		call(mon, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &th.base, err, sizeof(err)),
		-EPERM);
	assert_false(vm.dirty_log);
	assert_int_equal(
		call(mig, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &th.base, err, sizeof(err)), 0);
}

static Cleave__Vcpu__PostcopyBlocktime *blocktime_call(struct rpc_client *c, int *ret)
{
	ProtobufCMessage *out = NULL;
	char err[RPC_ERRMSG_LEN];

	*ret = rpc_call(c, CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME, NULL,
			&cleave__vcpu__postcopy_blocktime__descriptor, &out, 2000, err,
			sizeof(err));
	return (Cleave__Vcpu__PostcopyBlocktime *)out;
}

/*
 * The monitor reads the postcopy blocktime (query-migrate), the migrator
 * may not.  Without a fault service it is not measured; with one that has
 * a postcopy region and the vCPUs, it is, one entry per vCPU.
 */
static void test_blocktime_for_monitor(void **state)
{
	const uint64_t size = 16 * SHM_PAGE_SIZE;
	uint64_t needed[SHM_BITMAP_WORDS(16)] = {~0ull};
	Cleave__Vcpu__PostcopyBlocktime *bt;
	struct region_table table;
	const pid_t tids[2] = {getpid(), gettid()};
	struct region *r;
	uint8_t *ram;
	int ret, fd;

	(void)state;
	bt = blocktime_call(mig, &ret);
	assert_int_equal(ret, -EPERM);
	assert_null(bt);
	bt = blocktime_call(mon, &ret);
	assert_int_equal(ret, 0);
	assert_false(bt->measured);
	assert_int_equal(bt->n_vcpu_ms, 0);
	rpc_msg_free(&bt->base);

	assert_int_equal(region_table_init(&table), 0);
	if (fault_service_start(&vm.faults, &table, NULL)) {
		print_message("no userfaultfd: the measured case is not tried\n");
		region_table_fini(&table);
		return;
	}
	fd = memfd_create("test-ram", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	ram = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(ram != MAP_FAILED);
	assert_int_equal(region_table_add(&table, 0, 0, size, ram, NULL, &r), 0);
	assert_int_equal(fault_region_register_needed(vm.faults, r, needed), 0);
	region_unlock_write(r);
	assert_int_equal(fault_service_set_vcpus(vm.faults, tids, 2), 0);
	bt = blocktime_call(mon, &ret);
	assert_int_equal(ret, 0);
	assert_true(bt->measured);
	assert_int_equal(bt->n_vcpu_ms, 2);
	assert_int_equal(bt->vcpu_ms[0], 0);
	assert_int_equal(bt->total_ms, 0);
	rpc_msg_free(&bt->base);
	region_lock_write(r);
	assert_int_equal(fault_region_unregister(vm.faults, r, true), 0);
	region_unlock_write(r);
	assert_int_equal(fault_service_stop(vm.faults), 0);
	vm.faults = NULL;
	assert_int_equal(region_table_remove(&table, 0), 0);
	region_table_fini(&table);
	munmap(ram, size);
	close(fd);
}

/*
 * "serve-sandboxed DIR": cleave-vcpu's start-up order (vcpu-proc/main.c)
 * on the fake VM: the publisher, then the policy, then the vCPU threads
 * and the RPC listeners under it.  Says "ready" on stdout, then waits to
 * be killed.  A call the policy lacks kills it with SIGSYS.
 */
static int serve_sandboxed(const char *d)
{
	struct vm_service_urls urls = {0};
	struct rpc_server *s;
	char events[128];

	fake_vm_init();
	snprintf(mig_url, sizeof(mig_url), "ipc://%s/mig.rpc", d);
	snprintf(mon_url, sizeof(mon_url), "ipc://%s/mon.rpc", d);
	snprintf(events, sizeof(events), "ipc://%s/events", d);
	urls.migrator = mig_url;
	urls.monitor = mon_url;
	if (rpc_pub_open(&vm.pub, events, "vcpu") || sandbox_enter(SANDBOX_VCPU) ||
	    vm_vcpus_start(&vm) || vm_service_start(&vm, &urls, &s))
		return 1;
	printf("ready\n");
	fflush(stdout);
	for (;;)
		poll(NULL, 0, -1); /* the policy has no pause() */
}

/* The start-up order above works under cleave-vcpu's policy, which is in force (Seccomp 2). */
static void test_service_starts_under_policy(void **state)
{
	char d[64], url[128], line[16] = "", path[64], err[RPC_ERRMSG_LEN];
	char *status;
	ProtobufCMessage *out;
	struct rpc_client *c;
	int p[2];
	pid_t pid;
	FILE *f;

	(void)state;
	assert_int_equal(test_dir_make(d, "vcpu-sandboxed"), 0);
	assert_int_equal(pipe(p), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* NNG is not fork-safe: the child execs itself fresh. */
		dup2(p[1], STDOUT_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl("/proc/self/exe", "test-vcpu-service", "serve-sandboxed", d, (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	f = fdopen(p[0], "r");
	assert_non_null(f);
	if (!fgets(line, sizeof(line), f)) {
		int st = 0;

		waitpid(pid, &st, 0);
		fail_msg("the sandboxed service did not start: status 0x%x%s", st,
			 WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS ? " (SIGSYS: a call the policy "
								     "lacks)"
								   : "");
	}
	assert_string_equal(line, "ready\n");
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	status = test_file_read(path);
	assert_non_null(status);
	assert_non_null(strstr(status, "Seccomp:\t2"));
	free(status);
	snprintf(url, sizeof(url), "ipc://%s/mon.rpc", d);
	assert_int_equal(rpc_client_open(&c, url), 0);
	assert_int_equal(rpc_call(c, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL,
				  &cleave__vcpu__status_reply__descriptor, &out, 5000, err,
				  sizeof(err)),
			 0);
	rpc_msg_free(out);
	/* query-migrate's call too: no fault service here, so not measured. */
	assert_int_equal(rpc_call(c, CLEAVE__VCPU__METHOD__METHOD_POSTCOPY_BLOCKTIME, NULL,
				  &cleave__vcpu__postcopy_blocktime__descriptor, &out, 5000, err,
				  sizeof(err)),
			 0);
	assert_false(((Cleave__Vcpu__PostcopyBlocktime *)out)->measured);
	rpc_msg_free(out);
	rpc_client_close(c);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	fclose(f);
	assert_int_equal(test_dir_remove(d), 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_status_for_both),
		cmocka_unit_test(test_migrator_may_not_quit),
		cmocka_unit_test(test_monitor_may_not_touch_state),
		cmocka_unit_test(test_blocktime_for_monitor),
	};
	const struct CMUnitTest sandboxed[] = {
		cmocka_unit_test(test_service_starts_under_policy),
	};

	if (argc == 3 && !strcmp(argv[1], "serve-sandboxed"))
		return serve_sandboxed(argv[2]);
	unsetenv(SANDBOX_ENV_DISABLE);
	return cmocka_run_group_tests(tests, service_setup, service_teardown) ||
	       cmocka_run_group_tests(sandboxed, NULL, NULL);
}
