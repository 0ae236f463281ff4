/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration wire, as the engine's files share it: the Hello magic and
 * version, the channel preamble and page packet layouts, URIs and sockets
 * with deadlines, length-prefixed protobuf framing (wire.c), the source's
 * page data through a pipe (splice.c) and the page maps of a resume
 * (pagemap.c).  docs/MIGRATION.md has the stream format.
 */
#ifndef CLEAVE_MIG_WIRE_H
#define CLEAVE_MIG_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/uio.h>

#include "proto/wire.pb-c.h"
#include "shm/shm.h"

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

/* "tcp:HOST:PORT" or "unix:PATH" -> connected / listening socket. */
int mig_uri_connect(const char *uri, unsigned int timeout_ms, int *fdp, char *err, size_t errlen);
int mig_uri_listen(const char *uri, int *fdp, char *err, size_t errlen);
/* Send/receive deadlines (SO_SNDTIMEO/SO_RCVTIMEO) and, on TCP, TCP_NODELAY. */
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
 * The source's page data through a pipe (splice.c): pages of the RAM
 * memfd referenced, neither copied nor mapped.  Same errors as mig_io_*().
 */
struct mig_pipe {
	int rd, wr;
	size_t size; /* bytes the pipe holds (the kernel may give less than asked) */
};
int mig_pipe_open(struct mig_pipe *p);
void mig_pipe_close(struct mig_pipe *p);

/* @len bytes of a RAM memfd at @off, both page-aligned. */
struct mig_run {
	uint64_t off, len;
};
/*
 * Sends @head (copied: header and offsets), then @runs of memfd @fd.  The
 * calling thread must block SIGPIPE.  After an error the pipe is a new one
 * (nothing of the failed packet leaks into the next).
 */
int mig_splice_send(int sock, struct mig_pipe *p, struct iovec *head, int nhead, int fd,
		    const struct mig_run *runs, int nruns);
/* Copies @runs of @fd into @buf, back to back (the TLS path: GnuTLS needs the bytes). */
int mig_pread_runs(int fd, uint8_t *buf, const struct mig_run *runs, int nruns);

/* All-zero page: word 0 is zero and every word equals the next (memcmp is SIMD). */
static inline bool mig_page_is_zero(const void *p)
{
	const uint64_t *w = p;

	return w[0] == 0 && memcmp(w, w + 1, SHM_PAGE_SIZE - sizeof(*w)) == 0;
}

int mig_msg_send(int fd, const Cleave__Wire__WireMsg *msg);
/* *msg is freed with cleave__wire__wire_msg__free_unpacked(msg, NULL). */
int mig_msg_recv(int fd, Cleave__Wire__WireMsg **msg);
int mig_msg_send_error(int fd, const char *reason);
/* Best effort, never blocking, no SIGPIPE: an Error of at most 500 bytes, or nothing. */
void mig_msg_send_error_nowait(int fd, const char *reason);
/* Closes a connection, and forgets its TLS session (tls.h) if it has one. */
void mig_sock_close(int fd);
/* Bytes to read now: in the socket, or decrypted and waiting in its TLS session. */
bool mig_sock_readable(int fd);
/*
 * What a channel's preamble carries to bind it to the main connection
 * @main_fd of session @sid: with TLS an exporter value of that connection
 * (tls.h), without it the session id itself.
 */
int mig_chan_token(int main_fd, const uint8_t sid[16], uint8_t out[16]);
/* A "unix:PATH" URI: a local socket, never leaving the host (no TLS needed). */
bool mig_uri_is_unix(const char *uri);
/*
 * An "fd:NAME" URI: the one connection the session holds as NAME, which
 * carries every connection of the migration as a stream (mux.h).
 */
bool mig_uri_is_fd(const char *uri);
/* NAME of an fd: 1..MIG_FD_NAME_MAX bytes, no ':' or ','. */
#define MIG_FD_NAME_MAX 63
bool mig_fd_name_valid(const char *name);
/* True for a "tcp:" URI whose host is a loopback literal (127.x, ::1) or "localhost". */
bool mig_uri_is_loopback(const char *uri);
/* HOST of "tcp:HOST:PORT" ("tcp:[::1]:P" gives "::1"). */
int mig_uri_host(const char *uri, char *host, size_t len);

/* ---- page maps of a resume (pagemap.c) -------------------------------- */

/* Fills @pm (runs or raw words) from @map; mig_pagemap_release() frees what it allocated. */
int mig_pagemap_encode(const uint64_t *map, uint64_t nbits, uint32_t region,
		       Cleave__Wire__PageMap *pm);
void mig_pagemap_release(Cleave__Wire__PageMap *pm);
/* ORs @pm into @map (zeroed by the caller); -EPROTO for anything outside @nbits. */
int mig_pagemap_decode(const Cleave__Wire__PageMap *pm, uint64_t *map, uint64_t nbits);

#endif
