/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private parts of the migration engine shared by its files:
 *   wire.c     framing, page packet header, sockets with deadlines
 *   splice.c   the source's page data from RAM to a socket through a pipe
 *   record.c   the session record in the ctl segment's session area
 *   session.c  the session object, state machine, stats, events
 *   job.c      the job core both sides share (job.h)
 *   source.c   outgoing migration: rounds, convergence, completion
 *   send.c     multifd send threads, their queues, the rate limiter
 *   dest.c     incoming migration: handshake, completion, teardown
 *   recv.c     multifd receive threads, the round barrier
 */
#ifndef CLEAVE_MIG_INTERNAL_H
#define CLEAVE_MIG_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <sys/uio.h>
#include <time.h>

#include "migrator/migration.h"
#include "migrator/record.h"
#include "proto/wire.pb-c.h"

/* ---- wire (wire.c) ---------------------------------------------------- */

#define WIRE_MAGIC   0x3156454c4541ULL /* "CLEAVE1" tag of the Hello */
#define WIRE_VERSION 1
#define WIRE_MAX_MSG (64u << 20) /* main-channel message limit */

#define MIG_CHAN_MAGIC	0x4e414843u /* "CHAN": channel preamble */
#define MIG_PKT_MAGIC	0x50474d43u /* "CMGP": page packet */
#define MIG_PKT_SYNC	0x1u	    /* end of round <round> on this channel */
#define MIG_PKT_FINAL	0x2u	    /* with SYNC: last round, channel done */
#define MIG_PAGE_ZERO	0x1u	    /* low bits of a page offset: all-zero page, no data */
#define MIG_PAGE_FLAGS	0xfffu
#define MIG_BATCH_PAGES 256 /* pages per packet: 1 MiB of data at most */

/* First bytes on every multifd connection. Little-endian, like the host. */
struct mig_chan_hello {
	uint32_t magic;	  /* MIG_CHAN_MAGIC */
	uint32_t version; /* WIRE_VERSION */
	uint32_t index;	  /* 0..channels-1 */
	uint32_t reserved;
	uint8_t session_id[16];
};

/*
 * Page packet header.  Followed by nr_pages uint64 offsets (bytes into the
 * region, page aligned, MIG_PAGE_* flags in the low bits), then the data of
 * every page without MIG_PAGE_ZERO, in offset-array order.
 */
struct mig_pkt_hdr {
	uint32_t magic;	   /* MIG_PKT_MAGIC */
	uint32_t flags;	   /* MIG_PKT_* */
	uint32_t region;   /* index into the Hello's region list */
	uint32_t nr_pages; /* 0 for SYNC, else 1..MIG_BATCH_PAGES */
	uint64_t round;	   /* dirty round the pages belong to */
	uint64_t reserved;
};

_Static_assert(sizeof(struct mig_chan_hello) == 32, "wire layout");
_Static_assert(sizeof(struct mig_pkt_hdr) == 32, "wire layout");

/* "tcp:HOST:PORT" -> connected / listening socket. */
int mig_uri_connect(const char *uri, unsigned int timeout_ms, int *fdp, char *err, size_t errlen);
int mig_uri_listen(const char *uri, int *fdp, char *err, size_t errlen);
/* Send/receive deadlines (SO_SNDTIMEO/SO_RCVTIMEO) and TCP_NODELAY. */
int mig_sock_setup(int fd, unsigned int timeout_ms);

/* Whole-buffer I/O; -ECONNRESET when the peer closed, -ETIMEDOUT when silent. */
int mig_io_write(int fd, const void *buf, size_t len);
int mig_io_read(int fd, void *buf, size_t len);
/* Sends all of @iov (modified). */
int mig_io_writev(int fd, struct iovec *iov, int iovcnt);
/* Same, with send flags (MSG_MORE); never raises SIGPIPE. */
int mig_io_sendv(int fd, struct iovec *iov, int iovcnt, int flags);
/* Drops @n bytes from @iov starting at entry @i; returns the new first entry. */
int mig_iov_advance(struct iovec *iov, int iovcnt, int i, size_t n);
/* Receives into all of @iov (modified). */
int mig_io_readv(int fd, struct iovec *iov, int iovcnt);

/*
 * The source's page data through a pipe (splice.c): RAM pages referenced,
 * not copied.  Same errors as mig_io_*().
 */
struct mig_pipe {
	int rd, wr;
};
int mig_pipe_open(struct mig_pipe *p);
void mig_pipe_close(struct mig_pipe *p);
/*
 * Sends @head (copied: header and offsets), then the RAM pages of @data
 * (modified).  The calling thread must block SIGPIPE.
 */
int mig_splice_send(int sock, struct mig_pipe *p, struct iovec *head, int nhead, struct iovec *data,
		    int ndata);

int mig_msg_send(int fd, const Cleave__Wire__WireMsg *msg);
/* *msg is freed with cleave__wire__wire_msg__free_unpacked(msg, NULL). */
int mig_msg_recv(int fd, Cleave__Wire__WireMsg **msg);
int mig_msg_send_error(int fd, const char *reason);

/* ---- page maps of a resume (pagemap.c) -------------------------------- */

/* Fills @pm (runs or raw words) from @map; mig_pagemap_release() frees what it allocated. */
int mig_pagemap_encode(const uint64_t *map, uint64_t nbits, uint32_t region,
		       Cleave__Wire__PageMap *pm);
void mig_pagemap_release(Cleave__Wire__PageMap *pm);
/* ORs @pm into @map (zeroed by the caller); -EPROTO for anything outside @nbits. */
int mig_pagemap_decode(const Cleave__Wire__PageMap *pm, uint64_t *map, uint64_t nbits);

/* ---- session (session.c) ---------------------------------------------- */

/* Counters of the running job; atomics read by query without locks. */
struct mig_counters {
#define MIG_LIVE_COUNTER(name) _Atomic uint64_t name;
	MIG_COUNTERS(MIG_LIVE_COUNTER) /* kept in the record too */
#undef MIG_LIVE_COUNTER
	_Atomic uint64_t multifd_bytes;
	_Atomic uint64_t remaining;
	_Atomic uint64_t dirty_rate;
	_Atomic uint64_t expected_downtime_ms;
	_Atomic uint64_t bandwidth; /* bytes/s measured */
	_Atomic unsigned int throttle;
	_Atomic uint32_t resumes;
};

struct mig_session {
	struct mig_env env;	/* immutable after alloc */
	struct mig_record *rec; /* in env.ctl; locked with mig_record_lock */
	unsigned int io_timeout_ms;

	/*
	 * Protects every field below it, and calls of job abort functions
	 * (so a job is not freed while cancel touches it).  Lock order:
	 * session lock, then rec->lock; never held across network I/O.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on every status change */
	enum mig_status status;
	enum mig_role role;
	struct mig_caps caps;
	struct mig_params params;
	bool cancel_requested;
	char error_desc[256];
	uint64_t start_ns, setup_ns, end_ns, downtime_ms;
	bool has_downtime;
	uint32_t restarts; /* migrator processes that took this session over */
	/* mig_session_resume(): the job continues the recorded session. */
	bool resuming;
	uint64_t resume_start_ns; /* when this process took over (resume_time) */
	uint8_t session_id[16];
	uint64_t epoch;
	/* The job and its worker thread: owned here, freed after join. */
	struct mig_job *job;
	pthread_t worker;
	bool worker_live; /* worker started and not joined yet */
	unsigned int incoming_port;

	struct mig_counters ctr; /* reset when a job starts */
};

/* Status change: updates the record, wakes waiters, publishes the event. */
void mig_session_set_status(struct mig_session *s, enum mig_status status);
/* Final state of a job: completed, or failed/cancelled with @reason. */
void mig_session_finish(struct mig_session *s, int err, const char *reason);
bool mig_session_cancelled(struct mig_session *s);
void mig_session_pass_event(struct mig_session *s, uint64_t pass);
/* A MIGRATION event with the status unchanged: "restarted", "disconnected", "resumed". */
void mig_session_detail_event(struct mig_session *s, const char *detail);
/* Copies the session's settings and counters into the record (takes s->lock). */
void mig_session_record_sync(struct mig_session *s);
/* True for errors a reconnect may cure: the connection, not the stream, failed. */
bool mig_err_retriable(int err);
/* The source committed and then lost the destination for good (see MIG_STATUS_UNKNOWN). */
void mig_session_unknown(struct mig_session *s, const char *reason);
/* *ts = CLOCK_REALTIME now + @ms: the deadline of a pthread_cond_timedwait(). */
void mig_deadline_after_ms(struct timespec *ts, unsigned int ms);
/* CPU time of the calling thread, for the debug figures of the I/O threads. */
uint64_t mig_thread_cpu_ns(void);

/* ---- the two jobs (source.c + send.c, dest.c + recv.c; see job.h) -------- */

struct mig_job;
/* An outgoing job to "tcp:HOST:PORT", not started. */
int mig_src_alloc(struct mig_job **out, struct mig_session *s, const char *uri);
/* An incoming job listening on "tcp:HOST:PORT" (port 0: *port says which), not started. */
int mig_dst_alloc(struct mig_job **out, struct mig_session *s, const char *uri, unsigned int *port);

#endif
