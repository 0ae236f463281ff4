/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Runs a real cleave-migrator beside a cleave-vcpu of tests/integration/vcpu
 * (struct vt) for the migration integration tests, as the launcher does:
 * the VM's control segment and RAM memfds inherited, RPC and event sockets
 * in the VM's dir.  A migrator can be SIGKILLed and started again with the
 * identical argv and fds (what the launcher does after a crash); the stderr
 * of every incarnation is appended to one log file in the VM's dir.
 *
 * Also the checks the migration tests share: heartbeats in the guest's
 * serial output, vcpu-proc run state, RAM comparison, the destination's
 * switchover RAM hash (test hook ram_hash=1).
 */
#ifndef CLEAVE_TEST_MIG_HARNESS_H
#define CLEAVE_TEST_MIG_HARNESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/migrator.pb-c.h"
#include "tests/integration/vcpu/harness.h"

#define MIG_ARGV_MAX 16

/* One cleave-migrator, across its restarts. */
struct mproc {
	struct vt *vm; /* the VM whose fds and dir it uses */
	pid_t pid;     /* running process, 0 if none */
	char rpc_url[160], events_url[160];
	char log_path[128];		/* stderr of every incarnation, appended */
	char hooks[160];		/* CLEAVE_MIG_TEST_HOOKS value, "" for none */
	char incoming[64];		/* --incoming URI, "" for none */
	char ctl_arg[16], ram_arg[64];	/* fd numbers as given on the command line */
	const char *argv[MIG_ARGV_MAX]; /* identical for every incarnation */
	struct rpc_client *rpc;		/* one client across restarts, as the monitor's */
	unsigned int spawns;		/* processes started, the first included */
	uint64_t spawn_ms;		/* vt_now_ms() at the last spawn */
};

/* The cleave-migrator binary every mig_spawn runs; call once. */
void mig_harness_init(const char *migrator_bin);

/*
 * Starts cleave-migrator for @t: a destination when @incoming (a URI) is
 * given; @hooks sets CLEAVE_MIG_TEST_HOOKS (NULL: none).  MIG_VERBOSE in
 * the test's environment adds -v.  Returns once the migrator answers RPCs
 * (a destination then listens): 0 or a negative errno.
 */
int mig_spawn(struct vt *t, struct mproc *m, const char *incoming, const char *hooks);
/*
 * Starts the same migrator again (same argv, fds and hooks), as the
 * launcher does after a crash; returns at once.  It must not be running.
 */
int mig_respawn(struct mproc *m);
/* SIGKILLs and reaps the running process (nothing if none). */
void mig_kill(struct mproc *m);
/* SIGTERM (SIGKILL after 2 s), reap, close the RPC client. */
void mig_stop(struct mproc *m);
/* The end of one side: its migrator stopped, its VM quit (killed after 5 s), @t finished. */
void mig_vm_end(struct vt *t, struct mproc *m);

/* rpc_call with a 3 s deadline; logs a failure.  0 or negative errno. */
int mig_call(struct mproc *m, uint32_t method, const ProtobufCMessage *req,
	     const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep);
/* Same, quiet, with @timeout_ms: for polling a migrator that may be restarting. */
int mig_call_quiet(struct mproc *m, uint32_t method, const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep, int timeout_ms);
/* QUERY; fails the test if the call fails. */
Cleave__Migrator__MigrationInfo *mig_query(struct mproc *m);
/* QUERY with @timeout_ms; NULL if the migrator does not answer. */
Cleave__Migrator__MigrationInfo *mig_query_try(struct mproc *m, int timeout_ms);
/*
 * QUERY until the status is no longer in progress, at most @timeout_ms
 * (the destination ends a moment after the source: it sends Complete
 * first); fails the test if the call fails.
 */
Cleave__Migrator__MigrationInfo *mig_query_settled(struct mproc *m, int timeout_ms);
/* An in-progress status: setup, active, device, cancelling. */
bool mig_status_running(const char *status);
/*
 * Capabilities and parameters of a migration: multifd with @channels
 * (1: multifd off), events on; @max_bandwidth bytes/s (0: unlimited);
 * @reconnect_timeout_ms < 0 leaves the default.  Fails the test on error.
 */
void mig_configure(struct mproc *m, unsigned int channels, uint64_t max_bandwidth,
		   long reconnect_timeout_ms);

/* The log of every incarnation so far; free() it. */
char *mig_log_read(const struct mproc *m);
/*
 * The last "switchover RAM hash region @region <hex>" line of the log:
 * 0 and *hash, or -ENOENT.
 */
int mig_log_ram_hash(const struct mproc *m, unsigned int region, uint64_t *hash);
/* Prints the last @bytes of the log on stderr, prefixed with @what. */
void mig_log_dump(const struct mproc *m, const char *what, size_t bytes);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
unsigned int mig_free_port(void);
/* vcpu-proc's run state (CLEAVE__VCPU__RUN_STATE__*); fails the test on error. */
int mig_vm_state(struct vt *t);
/*
 * Last complete heartbeat line of @cpu in the serial output: its guest ns (0 if none),
 * its generation in *gen, the number of heartbeats of @cpu in *count.
 * Fails the test if the guest time of @cpu went back.
 */
uint64_t mig_hb_last(const struct vt *t, unsigned int cpu, uint64_t *gen, unsigned int *count);
/* Fails the test unless [from, to) of region 0 is byte-identical in @a and @b. */
void mig_ram_assert_equal(struct vt *a, struct vt *b, uint64_t from, uint64_t to);

#endif
