/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Mutual TLS 1.3 for QMP over TCP, server side (GnuTLS; docs/QMP.md,
 * "TCP and TLS").  Credentials come from QEMU's layouts for a server
 * endpoint: an x509 directory (ca-cert.pem, server-cert.pem,
 * server-key.pem) or a PSK file (keys.psk, "identity:hexkey" lines).  They
 * are loaded once, before the sandbox closes the filesystem, and are
 * immutable afterwards.
 *
 * Each TCP client gets a session on its non-blocking socket.  The
 * handshake runs step by step on the monitor's loop; the peer is checked
 * inside it (client certificate required, signed by the CA, valid now, its
 * distinguished name on the authorization list; or a known, authorized PSK
 * identity), so a refused peer gets TLS's alert.  Nothing the peer sends
 * reaches the QMP parser before mon_tls_session_handshake() returned 0.
 *
 * Only the loop thread uses a session; the credentials are read-only and
 * shared by every session.
 */
#ifndef CLEAVE_MONITOR_QMP_TLS_H
#define CLEAVE_MONITOR_QMP_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct mon_tls_config {
	const char *x509_dir; /* QEMU's tls-creds-x509 directory (server end), or NULL */
	const char *psk_file; /* QEMU's tls-creds-psk keys.psk, or NULL */
	/*
	 * Who may connect, separated by ';' or newlines (a name holds commas):
	 * RFC 4514 distinguished names of client certificates, or PSK
	 * identities.  NULL: any client the CA signed / any identity in keys.psk.
	 */
	const char *authz;
};

struct mon_tls;
struct mon_tls_session;

/*
 * load/free pair.  Exactly one of x509_dir and psk_file.  Returns 0 or a
 * negative errno with a message naming the file in @err.
 */
int mon_tls_load(struct mon_tls **out, const struct mon_tls_config *cfg, char *err, size_t errlen);
void mon_tls_free(struct mon_tls *t); /* NULL-safe; every session must be freed first */
const char *mon_tls_kind(const struct mon_tls *t); /* "x509" or "psk" */

/* alloc/free pair: a server session on non-blocking @fd (which stays the caller's). */
int mon_tls_session_alloc(struct mon_tls_session **out, const struct mon_tls *t, int fd);
void mon_tls_session_free(struct mon_tls_session *s); /* NULL-safe; sends nothing */

/*
 * One step of the handshake: 0 when it is complete and the peer
 * authorized; -EAGAIN when it waits for the socket (*want_write: for
 * writing, else reading); another negative errno when the peer was
 * refused or failed (@err says why; the peer got an alert where TLS has
 * one).
 */
int mon_tls_session_handshake(struct mon_tls_session *s, bool *want_write, char *err,
			      size_t errlen);
/* Who the peer is once authorized: its certificate's DN or its PSK identity. */
const char *mon_tls_session_peer(const struct mon_tls_session *s);

/*
 * Like recv()/send() on the session: bytes, 0 at the peer's end of data,
 * or -1 with errno (EAGAIN, ECONNRESET, EPROTO).  After EAGAIN, send must
 * be called again with the same bytes (GnuTLS holds them encrypted); more
 * may follow them in the buffer: the session passes only the held length.
 */
ssize_t mon_tls_session_recv(struct mon_tls_session *s, void *buf, size_t len);
ssize_t mon_tls_session_send(struct mon_tls_session *s, const void *buf, size_t len);
/* Bytes GnuTLS holds for reading (decrypted or not): epoll does not see them. */
size_t mon_tls_session_pending(const struct mon_tls_session *s);
/* Best-effort close_notify, without blocking. */
void mon_tls_session_bye(struct mon_tls_session *s);

#endif
