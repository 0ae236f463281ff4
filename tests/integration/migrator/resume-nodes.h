/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The nodes of the resume tests (test-resume.c, test-resume-errors.c): a
 * real cleave-vcpu with its cleave-migrator, killed and restarted with the
 * same argv; the checks every completed migration must pass.
 */
#ifndef CLEAVE_TEST_RESUME_NODES_H
#define CLEAVE_TEST_RESUME_NODES_H

#include <stdbool.h>
#include <stdint.h>

#include "mig-harness.h"
#include "proto/events.pb-c.h"
#include "tcp-proxy.h"

#define RAM	 (128ull << 20)
#define CPUS	 2
#define CHANNELS 2
/* 32 MiB test area dirtied at 8 MiB/s, sent at 24 MiB/s: ~1.5-2 s, a few rounds. */
#define GUEST_APPEND "mode=dirty mib=32 hb=100 rate=8 cpus=2"
#define BANDWIDTH    (24ull << 20)
#define HOOKS	     "ram_hash=1"
#define SWITCH_DELAY 300 /* ms, hook switchover_delay_ms of the phase tests */
#define MIG_DEADLINE 60000
/* what MIG_MAX_RESTARTS allows in a row, none moving data, per side */
#define MAX_RESTARTS 8

/* Random instants: xorshift64* seeded by resume_init() (CLEAVE_TEST_SEED replays). */
uint64_t rnd(void);
unsigned int rnd_range(unsigned int lo, unsigned int hi);
void sleep_ms(unsigned int ms);

/* A VM and its migrator; a destination listens on @uri. */
struct node {
	struct vt vm;
	struct mproc mig;
	char uri[64];		     /* destination: what its migrator listens on */
	unsigned int port;	     /* its port */
	struct rpc_sub *vm_ev;	     /* vcpu-proc events, while it is a source */
	unsigned int stops, resumes; /* STOP / RESUME events seen on vm_ev */
};

/* A proxy between the nodes, stopped by resume_teardown() if a test fails. */
extern struct tcp_proxy *live_proxy;

/* A source (guest beating, migrator idle) or a destination listening on @n->uri. */
struct node *node_new(bool incoming, const char *hooks);
void node_free(struct node *n);
/* Counts the STOP and RESUME events that arrived on @n->vm_ev. */
void node_events_poll(struct node *n);
/* Subscribes to a source's vcpu-proc events; the counts start at zero. */
void node_watch(struct node *n);
void node_migrate(struct node *src, const char *uri);
/* Keeps the serial and log pipes of both VMs drained (a full pipe stalls a vCPU). */
void nodes_drain(struct node *a, struct node *b);
/* SIGKILL, @delay_ms, the same argv again (as the launcher). */
void node_restart(struct node *n, unsigned int delay_ms);

/* Dumps both migrator logs and fails. */
#define fail_nodes(src, dst, ...)                                                                  \
	do {                                                                                       \
		mig_log_dump(&(src)->mig, "source migrator log", 6000);                            \
		mig_log_dump(&(dst)->mig, "destination migrator log", 6000);                       \
		fail_msg(__VA_ARGS__);                                                             \
	} while (0)

/* Polls the source until the migration left setup/active/device; returns its info. */
Cleave__Migrator__MigrationInfo *wait_finished(struct node *src, struct node *dst, uint64_t t0,
					       uint64_t deadline_ms);

/* What a side reported about its session, for the figures. */
struct side_figs {
	uint32_t restarts, resumes;
	uint64_t resent, inflight, resume_time;
};

/*
 * Everything a completed migration must satisfy: both sides completed, the
 * guest runs only at the destination, destination RAM at switchover equals
 * the source RAM, the destination guest beats on without ASSERT, the source
 * never resumed.  @mi is the source's final info; fills both sides' figures.
 */
void check_completed(struct node *src, struct node *dst, Cleave__Migrator__MigrationInfo *mi,
		     struct side_figs *fs, struct side_figs *fd);
void figs_print(const char *what, const Cleave__Migrator__MigrationInfo *mi,
		const struct side_figs *fs, const struct side_figs *fd);

/* Where a migration is when a test strikes. */
enum phase {
	PH_SETUP,	 /* source in setup (connections held back by the proxy) */
	PH_FIRST,	 /* round 0: active, no dirty sync yet */
	PH_LATER,	 /* dirty-sync-count >= 2 */
	PH_SWITCH_EARLY, /* device: guest paused, before the final round */
	PH_SWITCH_LATE,	 /* device: destination loaded the state, no Commit yet */
};

extern const char *const phase_names[];
/* Polls @src (and @dst's log) until @ph. */
void wait_phase(struct node *src, struct node *dst, enum phase ph, uint64_t t0);

/* Arguments, KVM check, seed, TEST_FILTER / TEST_SKIP; exits on bad usage. */
void resume_init(int argc, char **argv);
/* cmocka teardown: frees what a failed test left behind. */
int resume_teardown(void **state);

#endif
