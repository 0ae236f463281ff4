/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The stream multiplexer of fd: URIs (docs/MIGRATION.md, "fd: URIs"): the
 * main connection and every page channel of a migration over one connected
 * stream socket.  The engine never sees the mux: each logical stream is one
 * end of a local socketpair whose other end the mux thread pumps to and
 * from the fd, in frames {le32 stream id; le32 length; bytes}.
 *
 * The connecting side (the source) opens streams (mig_mux_open); the
 * accepting side (the destination) gets each new one through a queue fd
 * that polls like a listener (mig_mux_queue_fd, mig_mux_accept).  Every
 * frame from the peer is checked before anything is allocated for it.
 */
#ifndef CLEAVE_MIG_MUX_H
#define CLEAVE_MIG_MUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrator/mig-limits.h"

#define MIG_MUX_HDR	   8			  /* le32 stream id, le32 length */
#define MIG_MUX_FRAME_MAX  (256u << 10)		  /* payload bytes of one frame */
#define MIG_MUX_WINDOW	   (512u << 10)		  /* bytes in flight per stream */
#define MIG_MUX_STREAMS	   (1 + MIG_MAX_CHANNELS) /* open at once */
#define MIG_MUX_CTL_STREAM 0u			  /* window updates */
#define MIG_MUX_CTL_MAX	   512u			  /* payload bytes of a control frame */

struct mig_mux;

/*
 * Called from the mux thread once, when the fd fails under open streams
 * (@err -ECONNRESET) or the peer breaks the framing (-EPROTO), before the
 * local ends are closed.  Must not call back into the mux.
 */
typedef void (*mig_mux_dead_fn)(void *arg, int err, const char *reason);

/*
 * Starts the mux thread on @fd, a connected SOCK_STREAM socket, which it
 * owns from the call on (closed on an error too).  @accept: this side
 * accepts streams.  @name tags logs and errors ("fd:NAME").
 */
int mig_mux_start(struct mig_mux **out, int fd, bool accept, const char *name, mig_mux_dead_fn dead,
		  void *arg, char *err, size_t errlen);
/* Connecting side: a new stream; *fdp is a blocking, close-on-exec socket. */
int mig_mux_open(struct mig_mux *m, int *fdp, char *err, size_t errlen);
/* Accepting side: readable when a new stream waits (HUP once none can come). */
int mig_mux_queue_fd(const struct mig_mux *m);
/* Like accept4(): the next new stream, or -1 with errno (ECONNRESET: the fd is gone). */
int mig_mux_accept(struct mig_mux *m, int flags);
/*
 * The job ended: forwards what the engine has written, closes every
 * stream, then the fd, within @timeout_ms.  Idempotent.
 */
void mig_mux_end(struct mig_mux *m, unsigned int timeout_ms);
/* Stops at once (no flush), joins, closes everything.  NULL-safe. */
void mig_mux_free(struct mig_mux *m);
/* Why the mux stopped, or "". */
void mig_mux_reason(struct mig_mux *m, char *buf, size_t len);

#endif
