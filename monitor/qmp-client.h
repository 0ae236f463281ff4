/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A small blocking QMP client: connect, read the greeting, negotiate, run
 * commands and read events.  Used by `cleave qmp`, `cleave migrate`, the
 * tests and the benchmarks; it speaks to cleave-monitor and to QEMU alike.
 *
 * Server messages are one JSON object per line (CRLF), which is what QMP
 * servers send; the client splits on '\n' and parses each line.
 *
 * Over TCP it may speak TLS 1.3 with a client's credentials in QEMU's
 * layouts (tls/tls.h; docs/QMP.md, "TCP and TLS"): the handshake comes
 * before the greeting, and every byte after it goes through the session.
 */
#ifndef CLEAVE_MONITOR_QMP_CLIENT_H
#define CLEAVE_MONITOR_QMP_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#include "tls/tls.h"

struct qmp_client;

/*
 * Connects to @addr ("unix:PATH", "tcp:HOST:PORT" or a plain socket path)
 * and reads the greeting within @timeout_ms.  Returns 0 or a negative errno.
 */
int qmp_client_connect(struct qmp_client **out, const char *addr, int timeout_ms);
/*
 * The same with TLS when @tls is not NULL (then @addr must be tcp:HOST:PORT,
 * and the certificate must name HOST unless @tls gives a hostname): the
 * credentials are read, the handshake and the greeting both come within
 * @timeout_ms.  On failure @err holds one line naming the cause (a refused
 * certificate, the server's alert, a file...), for plaintext too.
 */
int qmp_client_connect_tls(struct qmp_client **out, const char *addr,
			   const struct tls_client_config *tls, int timeout_ms, char *err,
			   size_t errlen);
/* Frees the client and closes its socket.  NULL-safe. */
void qmp_client_close(struct qmp_client *c);

/* The greeting object (borrowed, valid until close). */
json_t *qmp_client_greeting(struct qmp_client *c);
/* The socket (for poll() and tests); over TLS, raw I/O on it bypasses the session. */
int qmp_client_fd(struct qmp_client *c);

/* qmp_capabilities with no capabilities. */
int qmp_client_negotiate(struct qmp_client *c, int timeout_ms);

/*
 * Runs @cmd with @args (borrowed, may be NULL) and waits for its reply,
 * skipping events.  *reply is the whole reply object (owned by the caller):
 * {"return": ...} or {"error": ...}.  Returns 0 when a reply arrived (even
 * an error reply), or a negative errno (-ETIMEDOUT, -ECONNRESET, -EPROTO).
 */
int qmp_client_execute(struct qmp_client *c, const char *cmd, json_t *args, json_t **reply,
		       int timeout_ms);

/* Sends raw bytes (tests use this for malformed input and pipelining). */
int qmp_client_send_raw(struct qmp_client *c, const void *data, size_t len);
/* Next message from the server (reply or event), owned by the caller. */
int qmp_client_recv(struct qmp_client *c, json_t **msg, int timeout_ms);

#endif
