/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Real cleave-migrator processes without KVM (test-migrator-proc.c,
 * bench/migrator/bench-postcopy-kill.c): each beside a stand-in vcpu-proc
 * RPC server in this process, started (and SIGKILLed and started again)
 * with the command line cleave run gives it; a postcopy pair whose
 * destination's cleave-vcpu side (fault service and postcopy link server,
 * vcpu-proc/) runs here on this process's mapping of its RAM; the RPCs the
 * tests call them with.  Failures are cmocka's: inside a test they fail
 * it, outside one they end the process.
 */
#ifndef CLEAVE_TEST_PROC_NODES_H
#define CLEAVE_TEST_PROC_NODES_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"
#include "vcpu-proc/postcopy-link.h"
#include "vcpu-proc/region.h"

/* The cleave-migrator binary every node runs (the caller's argv). */
extern const char *migrator_bin;

/* CLOCK_MONOTONIC in ns (snap_node.forked_ns's clock). */
uint64_t proc_now_ns(void);
/* A TCP port of the loopback nobody listens on now. */
unsigned int free_port(void);
/* One RPC to the migrator in @dir, retried while it starts: 0 or the error in @err. */
int call(const char *dir, uint32_t method, const ProtobufCMessage *req,
	 const ProtobufCMessageDescriptor *desc, ProtobufCMessage **reply, char *err, size_t len);
/* An RPC without a body; its error (or "") in @err. */
int call_empty(const char *dir, uint32_t method, char *err, size_t len);
/* QUERY's status into @status (returned) and its error into @err. */
char *migration_status(const char *dir, char *status, size_t len, char *err, size_t errlen);
void set_params(const char *dir, uint64_t max_bandwidth, uint64_t reconnect_ms);
/* The record's counter @name (migrator/record.h), UINT64_MAX if QUERY has none such. */
uint64_t mig_counter(const char *dir, const char *name);
/* QUERY's whole answer: free with rpc_msg_free(). */
Cleave__Migrator__MigrationInfo *mig_query(const char *dir);
/* Until the source's status is @want (20 s at most). */
void wait_status(const char *dir, const char *want);
/* postcopy-ram and multifd on. */
void caps_postcopy(const char *dir);

/* What the stand-in vcpu-proc was asked. */
struct standin {
	unsigned int pauses, resumes, dirty_on, dirty_off, saves, loads;
	int last_pause_state;
	int run_state; /* what STATUS reports */
	char loaded[32];
	/*
	 * A "guest" that writes RAM (postcopy test): PAUSE returns only once
	 * it parked, as cleave-vcpu's vCPUs do; RESUME lets it go on.
	 */
	atomic_bool dirtier_live, pause_req, parked;
};

/* One VM's memory, a stand-in vcpu-proc and a real cleave-migrator with a snapshot directory. */
struct snap_node {
	char dir[32]; /* its sockets and log */
	struct shm_ctl ctl;
	struct shm_region ram;
	uint64_t ram_size; /* set before the start; 0: 4 MiB */
	struct standin v;
	struct rpc_server *vcpu;
	pid_t pid;
	uint64_t forked_ns; /* CLOCK_MONOTONIC right before its last fork */
	bool has_link;	    /* link_fd: the migrator's end of a postcopy link */
	int link_fd;
	bool has_fdlink; /* fdlink_fd: the migrator's end of an fd link (proto/fd-link.h) */
	int fdlink_fd;
	char snaps[64], incoming[64]; /* for a restart */
};

/* (Re)starts @n's cleave-migrator, its log appended to. */
void snap_node_exec(struct snap_node *n);
void snap_node_start(struct snap_node *n, const char *snaps, const char *incoming, int run_state);
/* Polls query until the job leaves setup/active/device: its final status in @st. */
void snap_node_wait(struct snap_node *n, char *st, size_t len, char *err, size_t errlen);
/* SIGTERM: a clean exit without a refused syscall; then everything goes. */
void snap_node_stop(struct snap_node *n);
/* SIGKILL, then the same command line again: the launcher's restart. */
void snap_node_kill_restart(struct snap_node *n);
/*
 * SIGTERM (an upgrade, say), then the same command line again: the
 * migrator exits 0 at once and leaves its migration to the next.
 */
void snap_node_term_restart(struct snap_node *n);
/* A destination node listening on a free port; its uri in @uri. */
void dst_node_start(struct snap_node *n, const char *snaps, char *uri, size_t len);

/*
 * A postcopy pair: the source node (RAM filled with a pattern) and a
 * destination whose cleave-vcpu side (fault service, then the postcopy
 * link server on it) runs here on this process's mapping of its RAM, the
 * destination migrator holding its end of the link as cleave run gives it.
 * Both nodes' ram_size may be set before the start (the same on both).
 */
struct pc_pair {
	char snaps[32], uri[64];
	struct snap_node src, dst;
	struct region_table table;
	struct fault_service *fs;
	struct pclink_server *srv;
	int link[2];
};

void pc_pair_start(struct pc_pair *pp);
/* Whether page @p is the same on both sides; the destination's copy in @got. */
bool pc_pair_page_same(struct pc_pair *pp, uint64_t p, uint8_t *got);
/* The VM side torn down as cleave-vcpu does, then both migrators stopped and freed. */
void pc_pair_stop(struct pc_pair *pp);

#endif
