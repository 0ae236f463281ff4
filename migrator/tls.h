/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Mutual TLS 1.3 on every migration connection (GnuTLS; docs/MIGRATION.md,
 * "Authentication").  Credentials are loaded once, before the sandbox
 * closes the filesystem, from QEMU's layouts: an x509 directory
 * (ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem,
 * client-key.pem) or a PSK file (keys.psk, "identity:hexkey" lines).  The
 * handshake comes before the first protocol byte is read or written, and
 * the peer is checked against the authorization list (certificate
 * distinguished names, or PSK identities) before it is parsed.
 *
 * A connection's TLS session is found by its fd: wire.c sends and
 * receives through it wherever one is attached, so the engine keeps
 * passing plain fds.  Such an fd is closed with mig_sock_close().
 */
#ifndef CLEAVE_MIG_TLS_H
#define CLEAVE_MIG_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* What one side is configured with; strings are copied by mig_tls_load. */
struct mig_tls_config {
	const char *x509_dir; /* QEMU's tls-creds-x509 directory layout, or NULL */
	const char *psk_file; /* QEMU's tls-creds-psk keys.psk, or NULL */
	/* The source's PSK identity (QEMU's "username"); NULL: "qemu". */
	const char *psk_identity;
	/*
	 * Who may connect, comma-separated: distinguished names of client
	 * certificates (destination), or PSK identities.  NULL: any peer the
	 * CA signed (x509) or any identity in keys.psk (PSK).
	 */
	const char *authz;
	/* Source: the name the destination's certificate must carry; NULL: the URI's host. */
	const char *hostname;
};

struct mig_tls;

struct mig_tls_params;

int mig_tls_load(struct mig_tls **out, const struct mig_tls_config *cfg, char *err, size_t errlen);
/*
 * A context on @base's credentials (no file is read) with the settings of
 * @p (record.h: the ends it serves, tls-hostname, the PSK username,
 * tls-authz's rules).  @base must outlive it; mig_tls_free() frees it.
 */
int mig_tls_derive(struct mig_tls **out, const struct mig_tls *base, const struct mig_tls_params *p,
		   char *err, size_t errlen);
/* @p: the settings @t was loaded with (cleave run's), as the record keeps them. */
void mig_tls_preset(const struct mig_tls *t, struct mig_tls_params *p);
void mig_tls_free(struct mig_tls *t);
const char *mig_tls_kind(const struct mig_tls *t); /* "x509" or "psk" */
/* The x509 directory or PSK file @t's credentials were loaded from. */
const char *mig_tls_path(const struct mig_tls *t);
/* True when @t may serve the destination (@server) or the source end. */
bool mig_tls_serves(const struct mig_tls *t, bool server);

/* x509 credentials without a tls-hostname: a client must name the server's host itself. */
bool mig_tls_needs_hostname(const struct mig_tls *t);
/*
 * Client handshake on a connected socket (the source; @hostname: what the
 * destination's certificate must name, when not configured), bounded by
 * @timeout_ms.  On failure the fd is left without a session; @err names the
 * cause (an untrusted certificate, the peer's alert...).
 */
int mig_tls_connect(const struct mig_tls *t, int fd, const char *hostname, unsigned int timeout_ms,
		    char *err, size_t errlen);
/* Server handshake on an accepted blocking socket (the destination's channels). */
int mig_tls_accept(const struct mig_tls *t, int fd, unsigned int timeout_ms, char *err,
		   size_t errlen);
/* Server side for a non-blocking socket: attaches a session; then mig_tls_step(). */
int mig_tls_accept_start(const struct mig_tls *t, int fd);
/*
 * One step of the handshake attached to non-blocking @fd: 0 when it is
 * complete and the peer authorized, -EAGAIN with *events to poll for, or
 * another negative errno with @err.
 */
int mig_tls_step(int fd, short *events, char *err, size_t errlen);

/* True when @fd carries TLS (I/O goes through mig_tls_send/recv). */
bool mig_tls_on(int fd);
/* Like send()/recv() on the session of @fd: -1 with errno (EAGAIN, ECONNRESET, EPROTO). */
ssize_t mig_tls_send(int fd, const void *buf, size_t len);
ssize_t mig_tls_recv(int fd, void *buf, size_t len);
/* Decrypted bytes waiting in the session of @fd (poll() does not see them). */
size_t mig_tls_pending(int fd);
/* Sends @iov as few records as it can (corked); 0 or a negative errno. */
int mig_tls_sendv(int fd, const struct iovec *iov, int iovcnt);
/*
 * 16 bytes that bind a channel to the main connection @fd of @sid: an
 * exporter value of its TLS session (RFC 5705), so a peer that only saw
 * the traffic cannot make one.  -ENOTCONN without TLS.
 */
int mig_tls_channel_token(int fd, const uint8_t sid[16], uint8_t out[16]);
/* Forgets the session of @fd, if any (no close_notify: aborts use shutdown()). */
void mig_tls_detach(int fd);

#endif
