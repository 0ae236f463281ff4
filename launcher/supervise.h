/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Supervision of cleave's children: one pidfd per child and a signalfd for
 * SIGTERM/SIGINT/SIGHUP/SIGCHLD in one poll loop, so no signal handler ever
 * runs.
 *
 * - A child that ends the VM (cleave-vcpu) dies: every other child gets
 *   SIGTERM, then SIGKILL after the grace period, and the VM's exit status
 *   is decided by sup_vm_exit_status().
 * - A restartable child (cleave-migrator, cleave-monitor) dies: it is
 *   started again after a backoff that doubles from backoff_min_ms to
 *   backoff_max_ms (reset once a child stayed up stable_ms).  After
 *   restart_limit restarts within restart_window_ms the launcher gives up on
 *   it and the VM runs on without it.
 * - SIGTERM, SIGINT or SIGHUP: every child gets SIGTERM, then SIGKILL after the
 *   grace period; a second signal (1 s or more after the first) kills at
 *   once.  Exit status 0.
 */
#ifndef CLEAVE_LAUNCHER_SUPERVISE_H
#define CLEAVE_LAUNCHER_SUPERVISE_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "launcher/spawn.h"

#define SUP_MAX_CHILDREN      4
#define SUP_RESTART_LIMIT_MAX 64

struct sup_policy {
	unsigned int backoff_min_ms; /* first restart delay */
	unsigned int backoff_max_ms; /* doubling stops here */
	unsigned int restart_limit;  /* restarts allowed within restart_window_ms */
	unsigned int restart_window_ms;
	unsigned int stable_ms; /* up this long: the next restart is quick again */
	unsigned int grace_ms;	/* SIGTERM to SIGKILL when stopping */
};

/* 50 ms doubling to 1 s, 10 restarts within 60 s, 10 s stable, 3 s grace. */
extern const struct sup_policy sup_policy_default;

enum sup_state {
	SUP_IDLE,    /* added, not started */
	SUP_RUNNING, /* pid and pidfd valid */
	SUP_BACKOFF, /* dead, restart due at restart_at_ms */
	SUP_GAVE_UP, /* dead, restart limit reached */
	SUP_DONE,    /* dead, no restart: stopping */
};

struct sup_child {
	const char *name;	     /* "cleave-monitor", borrowed */
	const struct spawn_cmd *cmd; /* borrowed, outlives the supervisor */
	bool ends_vm;		     /* its death ends the VM */
	enum sup_state state;
	pid_t pid;
	int pidfd;				   /* -1 unless SUP_RUNNING */
	int64_t started_ms;			   /* CLOCK_MONOTONIC of the last start */
	int64_t restart_at_ms;			   /* SUP_BACKOFF */
	unsigned int backoff_ms;		   /* last delay used, 0 before the first restart */
	int64_t restart_ms[SUP_RESTART_LIMIT_MAX]; /* ring of restart times */
	unsigned int nr_restarts;		   /* entries in restart_ms still in the window */
	/* Called once when the restart limit is reached (NULL: nothing to clean up). */
	void (*gave_up)(void *arg);
	void *gave_up_arg;
};

struct sup {
	struct sup_policy policy;
	struct sup_child children[SUP_MAX_CHILDREN];
	unsigned int nr_children;
	int sigfd;	   /* signalfd: SIGTERM, SIGINT, SIGCHLD */
	sigset_t old_mask; /* restored by sup_fini */
	bool stopping;
	int64_t stop_ms;    /* when stopping began */
	int64_t kill_at_ms; /* stopping: SIGKILL the rest at this time */
	int exit_status;    /* decided when stopping began */
};

/*
 * init/fini pair.  init blocks SIGTERM/SIGINT/SIGHUP/SIGCHLD and opens the
 * signalfd: call it before creating anything a signal should clean up.
 * fini SIGKILLs and reaps whatever still runs (so no child outlives the
 * launcher on any path), closes the fds and restores the signal mask; safe
 * after a failed or partial start and safe to call twice.
 */
int sup_init(struct sup *s, const struct sup_policy *policy);
void sup_fini(struct sup *s);

int sup_child_add(struct sup *s, const char *name, const struct spawn_cmd *cmd, bool ends_vm);
/* @fn(@arg) runs in sup_run() when the launcher gives up restarting child @index. */
void sup_child_on_give_up(struct sup *s, unsigned int index, void (*fn)(void *), void *arg);
/* Starts every child in the order added; logs "started NAME pid N". */
int sup_start(struct sup *s);
/* Supervises until every child is gone; returns cleave run's exit status. */
int sup_run(struct sup *s);

/*
 * Restart decision for a death of @c at @now_ms: returns the delay in ms
 * before the restart (and records it), or -1 when the restart limit is
 * reached.  Pure function of @c, @p and @now_ms, unit-tested.
 */
long sup_restart_delay(struct sup_child *c, const struct sup_policy *p, int64_t now_ms);

/* "exited with status 1", "killed by SIGKILL", "dumped core on SIGSEGV". */
void sup_status_describe(int code, int status, char *buf, size_t len);

/*
 * cleave run's exit status when the VM's child ended with (@code,
 * @status), with the reason in @reason: the guest's code 0..125, or 1
 * for a VMM failure (status 126 or anything else) or a signal.
 */
int sup_vm_exit_status(int code, int status, char *reason, size_t len);

#endif
