// SPDX-License-Identifier: GPL-2.0-only
/*
 * The launcher gave up restarting cleave-migrator (restart limit): a
 * migration it was running must still end cleanly, or a source guest paused
 * for the switchover would stay paused with nobody to say why.  The session
 * record says what the migrator had done; what is left to tell vcpu-proc is
 * sent here over its RPC socket, as the migrator would have.
 */
#include <errno.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"
#include "migrator/record.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"

#define GONE_RPC_TIMEOUT_MS 3000

static void gone_call(struct rpc_client *c, uint32_t method, const ProtobufCMessage *req,
		      const char *what)
{
	char err[256] = "";
	int ret = rpc_call(c, method, req, NULL, NULL, GONE_RPC_TIMEOUT_MS, err, sizeof(err));

	if (ret)
		log_err("vcpu-proc %s: %s", what, err[0] ? err : strerror(-ret));
	else
		log_info("vcpu-proc %s: done", what);
}

void run_migrator_gave_up(struct shm_ctl *ctl, const char *vcpu_rpc)
{
	Cleave__Vcpu__DirtyLogRequest dl = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;
	Cleave__Vcpu__ThrottleRequest th = CLEAVE__VCPU__THROTTLE_REQUEST__INIT;
	struct mig_give_up todo;
	struct rpc_client *c;
	int ret, status;
	pid_t pid;

	ret = mig_record_abandon(ctl, "cleave-migrator kept dying (launcher restart limit)", &todo);
	if (ret <= 0) {
		if (ret < 0)
			log_err("migration record: %s", strerror(-ret));
		return;
	}
	log_warn("the migration in progress ends with the migrator: %s",
		 todo.resume ? "resuming the guest" : "the guest keeps its state");
	if (!todo.resume && !todo.stop_logging)
		return;
	/*
	 * From a child: the launcher's forks go to the children's PID
	 * namespace (sandbox/jail.c), and a process in that state cannot
	 * create threads (clone(CLONE_THREAD) fails), which NNG needs.  The
	 * child is in that namespace itself, so it can.
	 */
	pid = fork();
	if (pid < 0) {
		log_err("fork: %s", strerror(errno));
		return;
	}
	if (pid == 0) {
		ret = rpc_client_open(&c, vcpu_rpc);
		if (ret) {
			log_err("vcpu-proc RPC %s: %s", vcpu_rpc, strerror(-ret));
			_exit(1);
		}
		if (todo.stop_logging) {
			dl.enable = false;
			gone_call(c, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &dl.base,
				  "DIRTY_LOG off");
			th.percent = 0;
			gone_call(c, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &th.base, "THROTTLE 0");
		}
		if (todo.resume)
			gone_call(c, CLEAVE__VCPU__METHOD__METHOD_RESUME, NULL, "RESUME");
		_exit(0); /* NNG's threads die with us (upstream nanomsg/nng#2110: no close) */
	}
	/* At most three calls of GONE_RPC_TIMEOUT_MS: supervision pauses that long, once. */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
}
