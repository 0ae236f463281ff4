/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * In-test vcpu-proc and migrator: rpc servers answering vcpu.proto and
 * migrator.proto, plus their event publishers, with a little state so the
 * QMP answers can be checked.  Used by the monitor unit and integration
 * tests and the monitor benchmark.
 */
#ifndef CLEAVE_TESTS_MONITOR_FAKE_BACKEND_H
#define CLEAVE_TESTS_MONITOR_FAKE_BACKEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct rpc_server;
struct rpc_pub;

struct fake_backend {
	char dir[64];	    /* private temp dir of the sockets; removed at stop */
	char vcpu_rpc[128]; /* urls to give cleave-monitor */
	char vcpu_events[128];
	char mig_rpc[128];
	char mig_events[128];
	struct rpc_server *vcpu; /* NULL once fake_backend_kill_vcpu() ran */
	struct rpc_server *mig;
	struct rpc_pub *vcpu_pub;
	struct rpc_pub *mig_pub;
	pthread_mutex_t lock; /* protects the fields below (handlers run on server threads) */
	bool running;	      /* protected by lock */
	/* Publishing RunStateChanged (taken before lock); its last seq. */
	pthread_mutex_t announce_lock;
	uint64_t announced_seq;	      /* protected by announce_lock */
	bool events_cap;	      /* protected by lock */
	bool multifd_cap;	      /* protected by lock */
	bool postcopy_cap;	      /* protected by lock */
	bool blocktime_cap;	      /* protected by lock: postcopy-blocktime */
	unsigned int postcopy_starts; /* protected by lock: START_POSTCOPY that succeeded */
	uint32_t channels;	      /* protected by lock */
	bool has_reconnect_timeout;   /* protected by lock: ever set */
	uint64_t reconnect_timeout;   /* protected by lock */
	/* TLS parameters as set (QUERY returns them); what came of the objects. */
	char tls_creds[64], tls_authz[64], tls_hostname[256]; /* protected by lock */
	char tls_dir[256];	  /* protected by lock: tls_creds_object.dir */
	bool tls_server, tls_psk; /* protected by lock: its endpoint, its type */
	unsigned int tls_rules;	  /* protected by lock: tls_authz_object's rules */
	bool tls_authz_allow;	  /* protected by lock: its policy */
	char tls_rule0[64];	  /* protected by lock: its first rule's match */
	bool tls_rule0_glob;	  /* protected by lock */
	char mig_status[32];	  /* protected by lock; "" before any migration */
	bool mig_dest;		  /* protected by lock: the migration is incoming (set by tests) */
	char mig_error[64];	  /* protected by lock: QUERY's error_desc when not "" */
	char resolved[16];	  /* protected by lock: run_on of the last RESOLVE that succeeded */
	char abandoned[16]; /* protected by lock: "wait" or "zero-fill" of the last POSTCOPY_ABANDON
			     */
	/* protected by lock: the last MIGRATE's uri and resume flag (refused ones too) */
	char migrate_uri[128];
	bool migrate_resume;
	char recover_uri[128];	 /* protected by lock: the last MIGRATE_RECOVER's uri */
	unsigned int pauses;	 /* protected by lock: MIGRATE_PAUSE that succeeded */
	unsigned int recovers;	 /* protected by lock: MIGRATE_RECOVER that succeeded */
	unsigned int resumes;	 /* protected by lock: MIGRATE {resume} that succeeded */
	atomic_int quits;	 /* QUIT requests seen */
	atomic_int calls;	 /* all requests seen */
	atomic_int statuses;	 /* vcpu STATUS requests seen */
	atomic_int delay_ms;	 /* every vcpu request sleeps this long first */
	atomic_int mig_delay_ms; /* every migrator request sleeps this long first */
	atomic_int cancels;	 /* CANCEL requests seen */
	atomic_int blocktimes;	 /* vcpu POSTCOPY_BLOCKTIME requests seen */
	atomic_bool bt_fails;	 /* POSTCOPY_BLOCKTIME answers an error */
	atomic_int yanks;	 /* YANK requests that found a migration */
	/* The last CALC_DIRTY_RATE (protected by lock): measured at once, 42 MB/s. */
	bool dr_started;
	int64_t dr_calc_time, dr_sample_pages;
	bool dr_has_sample_pages;
	char dr_mode[16];
};

/*
 * The fake migrator's MIGRATE by port: 1 is refused; 2 ends in
 * x-switchover-unknown; 3 publishes a restart and a resume (MIGRATION
 * events with detail) before completing; 4 stays "active" (tests set
 * mig_status); any other completes at once.
 * RESOLVE succeeds only in x-switchover-unknown (then "completed" for
 * destination, "cancelled" for source), else fails as the migrator does;
 * CANCEL fails in x-switchover-unknown and postcopy-*.  In postcopy-paused
 * QUERY lists three missing pages in two runs, and POSTCOPY_ABANDON makes it
 * "failed"; it fails in any other status.  START_POSTCOPY,
 * YANK and QUERY_YANK answer as the migrator does for mig_status (a
 * migration runs in setup, active, device, cancelling, postcopy-*).
 * CALC_DIRTY_RATE with calc-time
 * 99 fails as the migrator does for a time out of range.
 * MIGRATE_PAUSE, MIGRATE_RECOVER and MIGRATE {resume} keep the migrator's
 * contract with QEMU 7.2's refusals: pause in postcopy-active (either
 * side) makes it postcopy-paused; recover on a destination
 * (fake_backend_set_migration) and resume on a source, in postcopy-paused,
 * make it postcopy-active again.  Recover to a uri ending in port 1 fails
 * as a bind does; resume to port 1 fails as a connect does.
 * QUERY says whether it is a destination (fake_backend_set_migration) and
 * whether postcopy-blocktime is on; the fake vcpu-proc's POSTCOPY_BLOCKTIME
 * answers 120 ms in all, 150, 151 and 130 ms for vCPUs 0, 1 and 2 (an error while
 * bt_fails).
 */

/* Puts the fake migrator in @status as a destination (@dest) or a source. */
void fake_backend_set_migration(struct fake_backend *fb, const char *status, bool dest);

/* start/stop pair.  stop is NULL-safe and removes the sockets. */
int fake_backend_start(struct fake_backend **out);
void fake_backend_stop(struct fake_backend *fb);
/* Simulates a dead vcpu-proc / migrator: its rpc server goes away. */
void fake_backend_kill_vcpu(struct fake_backend *fb);
void fake_backend_kill_migrator(struct fake_backend *fb);
/* A restarted migrator: its rpc server comes back on the same url (after a kill). */
int fake_backend_restart_migrator(struct fake_backend *fb);

#endif
