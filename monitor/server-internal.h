/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private parts of the QMP server shared by server.c (the loop, listeners,
 * completions, events) and client.c (one client's session).
 *
 * Only the loop thread touches these structures.  Workers and the event
 * subscriber hand results over through queues with eventfds; a completion
 * finds its client by (fd, id) and is dropped when the client is gone, so no
 * pointer to a client ever leaves the loop thread.
 */
#ifndef CLEAVE_MONITOR_SERVER_INTERNAL_H
#define CLEAVE_MONITOR_SERVER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "monitor/events.h"
#include "monitor/qmp-framer.h"
#include "monitor/qmp-tls.h"
#include "monitor/server.h"
#include "monitor/worker.h"

#define MON_BATCH	    32	       /* messages one client may run per loop turn */
#define MON_READ_SIZE	    65536      /* bytes read per readiness event */
#define MON_IN_HIGH	    (2u << 20) /* input buffered while busy before we stop reading */
#define MON_ACCEPT_PAUSE_MS 100	       /* after EMFILE: retry accepting this much later */
#define MON_EPOLL_BATCH	    256
#define MON_SWEEP_SLACK_MS  20	 /* deadlines this close are swept together */
#define MON_IN_FREE	    8192 /* input buffer per client not counted in in_limit */
/*
 * In-band messages a client with 'oob' may have waiting behind its busy
 * command: QEMU 7.2's QMP_REQ_QUEUE_LEN_MAX.  Then its input stays in the
 * framer (QEMU suspends the monitor) until one of them runs.
 */
#define MON_INBAND_MAX 8
/*
 * exec-oob commands with a backend one client may have with the workers at
 * once (besides its in-band one).  One more is answered with an error at
 * once rather than queued: holding it in the framer would hold the in-band
 * messages behind it too, and need an OOB answer to restart the client's
 * input.  A client that waits for its OOB replies never meets the limit.
 */
#define MON_OOB_MAX 4
/*
 * A reply held for its STOP / RESUME event waits this long at most: an
 * event can be lost (pub/sub joins asynchronously after a monitor start).
 */
#define MON_AWAIT_MS 1000

enum mon_ep_kind {
	MON_EP_LISTEN,
	MON_EP_LISTEN_TLS, /* a listener whose clients speak TLS first */
	MON_EP_CLIENT,
	MON_EP_DONE,
	MON_EP_EVENTS,
	MON_EP_STOP,
};

#define MON_EP(kind, fd) (((uint64_t)(kind) << 32) | (uint32_t)(fd))

/*
 * Named fds (getfd) one client may hold: the migrator's MIG_FD_MAX.  Names
 * are proto/fd-link.h's (FDLINK_NAME_MAX).
 */
#define MON_FDS_MAX    16
#define MON_FDNAME_MAX 63

struct mon_named_fd {
	char *name; /* owned */
	int fd;	    /* owned */
};

/* An in-band message read while its client was busy: a copy of its frame. */
struct mon_inband {
	const char *error; /* the framer's error (static), or NULL: data is a message */
	size_t len;	   /* bytes in data */
	char data[];
};

struct mon_client {
	uint64_t id;			/* unique for the server's life */
	int fd;				/* owned */
	struct mon_client *prev, *next; /* all clients, for event fan-out */
	struct mon_framer in;		/* input not yet run */
	char *out;			/* bytes queued to the socket; owned */
	size_t out_off;			/* first unsent byte */
	size_t out_len;			/* end of queued bytes */
	size_t out_cap;
	uint32_t ep_events; /* what epoll watches now */
	bool negotiated;    /* qmp_capabilities done: commands and events */
	/*
	 * 'oob' enabled: while busy, input is still read; exec-oob runs at
	 * once (on the loop, or as a job beside the busy one: oob_out) and
	 * in-band messages wait here in order (docs/QMP.md, "Out-of-band
	 * execution").  Owned; counted in in_counted.
	 */
	bool oob;
	struct mon_inband *inband[MON_INBAND_MAX]; /* a ring from inband_head */
	unsigned int inband_head, inband_nr;
	size_t inband_bytes;  /* sum of their len */
	bool busy;	      /* an in-band command is with a worker */
	unsigned int oob_out; /* exec-oob commands with a worker (MON_OOB_MAX at most) */
	bool eof;	      /* the peer will send nothing more */
	/* quit was answered or the server quits: no more input, closed once flushed */
	bool closing;
	bool quit_asked;   /* this client sent quit: its reply follows the SHUTDOWN event */
	char *quit_id;	   /* id (JSON text) of that quit, owned; NULL if none */
	json_t *quit_ret;  /* that quit's return value ({} or HMP's ""), owned; NULL if none */
	size_t in_counted; /* what in.cap and inband_bytes count (mon_in_counted), as added to
			      in_held */
	/* Deadlines (CLOCK_MONOTONIC ms; 0: none), see docs/QMP.md "Limits". */
	int64_t handshake_deadline_ms; /* until negotiated (the TLS handshake included) */
	int64_t partial_deadline_ms;   /* while an unfinished message waits */
	/*
	 * TLS (docs/QMP.md, "TCP and TLS").  While handshaking, the client has
	 * no greeting, no output and no input but GnuTLS's: its bytes reach
	 * the framer only once the peer is authorized.
	 */
	struct mon_tls_session *tls; /* owned; NULL: plaintext */
	bool tls_handshaking;	     /* the handshake has not completed yet */
	bool tls_want_write;	     /* ... and waits to write (else to read) */
	bool tls_eof;		     /* GnuTLS saw the end of input behind data already taken */
	bool read_queued; /* on the ready list to read what GnuTLS holds (epoll cannot see it) */
	/*
	 * fds (docs/QMP.md, "getfd and fd: URIs"): the last one that came with
	 * input (SCM_RIGHTS), until getfd takes it or every message read with
	 * it has run (-1: none); and the ones getfd named.  Owned.
	 */
	int pending_fd;
	struct mon_named_fd fds[MON_FDS_MAX];
	size_t nr_fds;
};

/* A client to run again next turn: more complete input than its batch allowed, or more to read. */
struct mon_ready {
	int fd;
	uint64_t id;
	bool read; /* read first: GnuTLS holds input for it */
};

struct mon_server {
	int epfd;
	int *listen_fds;
	bool *listen_tls; /* per listener: its clients speak TLS first */
	size_t nr_listen;
	const struct mon_tls *tls; /* credentials of the TLS listeners; not owned */
	uint64_t tls_refused;	   /* clients refused by TLS so far (for the log's pacing) */
	bool accept_paused;
	bool accept_warned; /* out of fds was logged; cleared by the next accept */
	int64_t accept_resume_ms;
	struct mon_client **by_fd; /* client by socket fd, for completions */
	size_t by_fd_cap;
	struct mon_client *clients; /* list head */
	size_t nr_clients;
	uint64_t next_id;
	struct mon_ready *ready; /* clients to run again next turn */
	size_t nr_ready, ready_cap;
	struct mon_ctx ctx;
	struct mon_done done;
	struct mon_worker workers[MON_BACKEND_NR];
	struct mon_events events;
	size_t out_limit;
	int stop_fd;
	uint64_t events_seen[MON_AWAIT_NR]; /* STOP / RESUME events sent out so far */
	struct mon_job *held;		    /* replies waiting for their event, in order */
	bool quit_pending; /* a quit was run: SHUTDOWN, its reply, closes, vcpu QUIT next */
	bool quit_sent;	   /* SHUTDOWN for quit went out: drop vcpu-proc's copy */
	char *greeting;
	size_t greeting_len;
	/* Limits (monitor/qmp-limits.h, docs/QMP.md "Limits"). */
	size_t max_clients; /* clients at once, the operator's slot not counted */
	/* The client in the one slot beyond max_clients (the operator's), or NULL; not owned. */
	struct mon_client *operator_client;
	bool refuse_warned;	  /* a refusal was logged; cleared when the slot frees */
	size_t in_limit;	  /* input buffer bytes for all clients together */
	size_t in_held;		  /* sum of every client's in_counted */
	bool in_warned;		  /* the input limit was logged; cleared at half of it */
	int handshake_ms;	  /* 0: no handshake deadline */
	int partial_ms;		  /* 0: no deadline for unfinished messages */
	int64_t next_deadline_ms; /* earliest client deadline, or 0: sweep then */
};

/* ---- client.c: one client's session ---- */

/* The client on @fd if it is still the one with @id, else NULL. */
struct mon_client *mon_client_lookup(struct mon_server *s, int fd, uint64_t id);
/*
 * Takes over an accepted socket and sends the greeting (closes it on
 * failure); with @tls, starts the TLS handshake instead: the greeting
 * follows it.
 */
void mon_client_accepted(struct mon_server *s, int fd, bool tls);
/* Frees everything of @c: nothing of it can reach another client. */
void mon_client_close(struct mon_server *s, struct mon_client *c, const char *why);
/* Queues bytes to @c: 0, -ENOBUFS past the limit, or the write error (caller closes). */
int mon_client_send(struct mon_server *s, struct mon_client *c, const char *data, size_t len);
int mon_client_reply(struct mon_server *s, struct mon_client *c, const char *id,
		     const struct mon_result *res);
/* Closes @c if it is closing and its output is flushed; true when closed. */
bool mon_client_close_if_done(struct mon_server *s, struct mon_client *c);
/* No more input from @c; closed once its output is flushed (may close it now). */
void mon_client_shut(struct mon_server *s, struct mon_client *c);
/* Runs buffered input; may close @c, which must not be used after. */
void mon_client_run(struct mon_server *s, struct mon_client *c);
/* epoll readiness of a client socket; may close it. */
void mon_client_event(struct mon_server *s, int fd, uint32_t events);
/* Reads what the socket (or GnuTLS) holds for @c and runs it; may close it. */
void mon_client_readable(struct mon_server *s, struct mon_client *c);
/* Closes the clients whose deadline passed; sets s->next_deadline_ms. */
void mon_client_deadlines(struct mon_server *s, int64_t now_ms);
/* Refuses an accepted socket: one QMP error line (none with @tls), then close. */
void mon_client_refuse(int fd, bool tls, const char *desc);

int64_t mon_now_ms(void);

/* ---- client-fds.c: a client's fds ---- */

/* Closes every fd of @c. */
void mon_client_fds_fini(struct mon_client *c);
/* Takes the fds that came with a read: the first is kept as pending, the rest closed. */
void mon_client_fds_received(struct mon_client *c, struct msghdr *mh);
/* Closes the pending fd once nothing read with it waits to run (no getfd took it). */
void mon_client_fds_settle(struct mon_client *c);
/* getfd / closefd (MON_CMD_FDS) for @c. */
void mon_client_fd_cmd(struct mon_client *c, const struct mon_request *req, struct mon_result *res);
/*
 * migrate / migrate-incoming (MON_CMD_FD_URI): an "fd:NAME" uri moves @c's
 * fd NAME into @job.  0 (also for other uris), or an error in @res.
 */
int mon_client_fd_uri(struct mon_server *s, struct mon_client *c, const struct mon_request *req,
		      struct mon_job *job, struct mon_result *res);

#endif
