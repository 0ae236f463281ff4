/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A pool of worker threads per backend: the event loop never waits for an
 * RPC.
 *
 * The loop submits jobs; the workers take them in order, each runs its
 * job (rpc_call with a deadline; rpc_call opens a context per call, so
 * calls of one pool overlap on the one socket) and moves it to the shared
 * completion queue, then writes the queue's eventfd so the loop picks it
 * up.  A client has at most one in-band job out at a time (the loop holds
 * its next in-band command until the reply), so those replies keep their
 * order whatever the pool's size; jobs of different clients may run at
 * once.  A client's exec-oob jobs (mon_job.oob) are beside that one and
 * go to the front of the queue (mon_worker_submit_front()).  A job names
 * its client by id, never by pointer: the client may be gone by then.
 *
 * When a call finds the backend dead, the jobs already queued behind it
 * fail at once with the same error instead of each waiting out its own
 * deadline, so a dead backend costs a client at most two deadlines.
 */
#ifndef CLEAVE_MONITOR_WORKER_H
#define CLEAVE_MONITOR_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "monitor/qmp-dispatch.h"

struct mon_job {
	struct mon_job *next; /* queue link; protected by the owning queue's lock */
	uint64_t client_id;   /* 0: nobody waits for the result */
	int client_fd;	      /* where to look the client up; -1 with client_id 0 */
	char *id;	      /* the request's id as JSON text, owned; NULL if none */
	json_t *args;	      /* checked arguments, owned */
	void (*run)(struct mon_ctx *ctx, json_t *args, struct mon_result *res);
	const char *name; /* command name, for logs */
	/*
	 * An "fd:NAME" uri's fd, taken from the client (MON_CMD_FD_URI), owned:
	 * handed to the migrator over the fd link before .run; -1: none.
	 */
	int fd;
	char *fd_name;	       /* its name, owned */
	struct mon_result res; /* filled by the worker */
	/* loop thread only: events seen (per enum mon_await) when submitted */
	uint64_t await_marks[MON_AWAIT_NR];
	int64_t await_deadline_ms; /* loop thread only: held until then at most */
	/*
	 * Sent with exec-oob: its client is not busy with it, and its answer
	 * neither ends a busy spell nor runs the client's waiting input; it
	 * may overtake the client's in-band reply (monitor/client.c).
	 */
	bool oob;
};

/* alloc/free pair; free is NULL-safe and drops id, args and result. */
struct mon_job *mon_job_alloc(void);
void mon_job_free(struct mon_job *job);

/* Completion queue: filled by workers, drained by the event loop. */
struct mon_done {
	pthread_mutex_t lock;  /* protects head and tail */
	struct mon_job *head;  /* protected by lock */
	struct mon_job **tail; /* protected by lock */
	int efd;	       /* eventfd, written after each push; owned */
};

/* init/fini pair; fini frees jobs still queued. */
int mon_done_init(struct mon_done *d);
void mon_done_fini(struct mon_done *d);
/* Takes every finished job (a list linked by ->next), clearing the eventfd. */
struct mon_job *mon_done_take(struct mon_done *d);

enum mon_worker_state {
	MON_WORKER_IDLE,    /* never started, or stopped */
	MON_WORKER_RUNNING, /* threads exist */
};

/* Threads of one pool at most. */
#define MON_WORKER_MAX_THREADS 8

struct mon_worker {
	enum mon_worker_state state; /* owner (event loop) only */
	pthread_t threads[MON_WORKER_MAX_THREADS];
	unsigned int nr_threads; /* owner only; set by start */
	const char *name;	 /* thread tag: "vcpu", "migrator" */
	struct mon_ctx *ctx;	 /* shared with the loop; see struct mon_ctx */
	struct mon_done *done;
	pthread_mutex_t lock;  /* protects head, tail, stopping */
	pthread_cond_t cond;   /* signalled on push, broadcast on stop */
	struct mon_job *head;  /* protected by lock */
	struct mon_job **tail; /* protected by lock */
	/* protected by lock: the link behind the last job queued at the front (&head: none) */
	struct mon_job **front;
	bool stopping; /* protected by lock */
};

/*
 * start/stop pair: @threads (1..MON_WORKER_MAX_THREADS) run the jobs; stop
 * returns after every thread exited (each finishes the job it holds); jobs
 * still queued are freed.
 */
int mon_worker_start(struct mon_worker *w, const char *name, unsigned int threads,
		     struct mon_ctx *ctx, struct mon_done *done);
void mon_worker_stop(struct mon_worker *w);
/* Queues @job; the worker owns it until it appears in the completion queue. */
void mon_worker_submit(struct mon_worker *w, struct mon_job *job);
/*
 * The same ahead of every job queued with mon_worker_submit() (behind
 * those queued with this one: they keep their order).  For exec-oob jobs:
 * they never wait behind the in-band jobs queued by other clients, but
 * they still wait for a pool thread to be free, i.e. behind the call each
 * thread is in (the migrator's pool has one thread: behind one migrator
 * handler, or a migrate_cancel retrying a restarting migrator).
 */
void mon_worker_submit_front(struct mon_worker *w, struct mon_job *job);

#endif
