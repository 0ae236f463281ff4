/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The GnuTLS set-up every TLS end of cleave shares: the migrator (both
 * ends, migrator/tls.c), the monitor's QMP server (monitor/qmp-tls.c) and
 * the QMP client of `cleave qmp` / `cleave migrate` (monitor/qmp-client.c).
 * Credentials come in QEMU's layouts (docs/QMP.md, "TCP and TLS";
 * docs/MIGRATION.md, "Authentication"): an x509 directory holding
 * ca-cert.pem and END-cert.pem / END-key.pem for END "server" or
 * "client", or a keys.psk file of "IDENTITY:HEXKEY" lines.
 *
 * TLS 1.3 only, everywhere: the priority strings below are the one place
 * that says so.
 *
 * The client end (tls_client_*) is a blocking session on a connected
 * socket, for one connection at a time; the servers keep their own
 * sessions (they run non-blocking, on loops).
 */
#ifndef CLEAVE_TLS_TLS_H
#define CLEAVE_TLS_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include <gnutls/gnutls.h>

#define TLS_PRIO_X509 "NORMAL:-VERS-ALL:+VERS-TLS1.3"
#define TLS_PRIO_PSK  "NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK"
/* The PSK identity a client uses when none is given: QEMU's default username. */
#define TLS_PSK_DEFAULT_IDENTITY "qemu"

/* ---- keys.psk ---------------------------------------------------------- */

struct tls_psk_key {
	char *identity;	    /* owned */
	gnutls_datum_t key; /* binary (keys.psk holds it in hex); owned, gnutls_free */
};

struct tls_psk_keys {
	struct tls_psk_key *v; /* owned */
	size_t nr;
};

/*
 * load/free pair.  Reads @file ("IDENTITY:HEXKEY" lines; blank lines and
 * '#' comments skipped) into @k, which must be zeroed.  Returns 0 or a
 * negative errno with a message naming the file in @err; @k is then still
 * to be freed.  An empty file is an error: it would refuse everyone.
 */
int tls_psk_keys_load(struct tls_psk_keys *k, const char *file, char *err, size_t errlen);
/* Wipes the keys and frees them; @k is zeroed (safe to call twice). */
void tls_psk_keys_free(struct tls_psk_keys *k);
/* The key of @identity, or NULL. */
const struct tls_psk_key *tls_psk_keys_find(const struct tls_psk_keys *k, const char *identity);

/* ---- x509 -------------------------------------------------------------- */

/*
 * Loads into @c the CA every peer must chain to (DIR/ca-cert.pem) and our
 * own DIR/@end-cert.pem and DIR/@end-key.pem (@end: "server" or
 * "client").  Returns 0 or a negative errno with @err naming the file.
 */
int tls_x509_load(gnutls_certificate_credentials_t c, const char *dir, const char *end, char *err,
		  size_t errlen);
/* The distinguished name (RFC 4514) of the peer's certificate; gnutls_free() it.  NULL: none. */
char *tls_peer_dn(gnutls_session_t s);

/*
 * Why a handshake failed (@ret, from gnutls_handshake), in words an
 * operator can act on.  @peer names the other end ("peer", "server"...);
 * @refusal is why our own callback refused it ("" or NULL: it did not).
 */
void tls_handshake_error(gnutls_session_t s, int ret, const char *peer, const char *refusal,
			 char *err, size_t errlen);

/* ---- the client end ---------------------------------------------------- */

/* A client's credentials, in QEMU's tls-creds-x509 / tls-creds-psk layouts (endpoint=client). */
struct tls_client_config {
	const char *x509_dir;	  /* ca-cert.pem, client-cert.pem, client-key.pem; or NULL */
	const char *psk_file;	  /* keys.psk; or NULL */
	const char *psk_identity; /* whose key in keys.psk; NULL: TLS_PSK_DEFAULT_IDENTITY */
	/* The name the server's certificate must carry; NULL: the host connected to. */
	const char *hostname;
};

struct tls_client;

/*
 * load/free pair.  Exactly one of x509_dir and psk_file.  Reads the files
 * now; returns 0 or a negative errno with @err naming the file at fault.
 */
int tls_client_load(struct tls_client **out, const struct tls_client_config *cfg, char *err,
		    size_t errlen);
void tls_client_free(struct tls_client *c); /* NULL-safe; its sessions must be gone first */

/*
 * A client session on connected, blocking @fd (which stays the caller's),
 * handshake done within @timeout_ms (0: no deadline): the server's certificate chains to
 * the CA and names @host (unless the config gives a hostname), or the
 * server holds the PSK.  On failure returns a negative errno (-ETIMEDOUT,
 * -ECONNRESET: the server went away; -EACCES: a refusal, either way) and
 * @err says why; *out is then NULL.  Free the session with gnutls_deinit().
 */
int tls_client_session_start(const struct tls_client *c, int fd, const char *host,
			     unsigned int timeout_ms, gnutls_session_t *out, char *err,
			     size_t errlen);

#endif
