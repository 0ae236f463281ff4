// SPDX-License-Identifier: GPL-2.0-only
/*
 * Mutual TLS for QMP over TCP (see qmp-tls.h).  GnuTLS, as QEMU uses for
 * its tls-creds objects and as the migrator does (migrator/tls.c): TLS 1.3
 * only, no session tickets (every connection authenticates afresh), and
 * the peer checked inside the handshake so that a refusal is an alert.
 * Server end only: the monitor never connects anywhere.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "monitor/qmp-tls.h"
#include "tls/tls.h"

#define MON_TLS_MAX_AUTHZ 64

/* Immutable after mon_tls_load: shared by every session. */
struct mon_tls {
	bool psk;
	gnutls_certificate_credentials_t x509;	  /* x509: CA, our certificate and key */
	gnutls_psk_server_credentials_t psk_cred; /* PSK: keys looked up in keys */
	struct tls_psk_keys keys;
	char *authz[MON_TLS_MAX_AUTHZ]; /* empty: any peer the credentials accept */
	size_t nr_authz;
};

/* One client's TLS session; used by the loop thread only. */
struct mon_tls_session {
	const struct mon_tls *t; /* not owned */
	gnutls_session_t gs;
	/* Why a callback inside the handshake refused the peer (they cannot return text). */
	char refusal[256];
	int alert;  /* the alert that says so (gnutls_alert_description_t); -1: GnuTLS's choice */
	char *peer; /* the authorized DN or PSK identity; owned; NULL until then */
	/*
	 * Bytes of the last send that returned GNUTLS_E_AGAIN: GnuTLS holds
	 * them encrypted and the next send must offer the same ones.  0: none.
	 */
	size_t send_held;
};

static bool mon_tls_authorized(const struct mon_tls *t, const char *who)
{
	if (!t->nr_authz)
		return true;
	for (size_t i = 0; i < t->nr_authz; i++)
		if (!strcmp(t->authz[i], who))
			return true;
	return false;
}

/*
 * The check of the client's certificate, inside the handshake: signed by
 * our CA, valid now, and its DN authorized.  A refusal fails the handshake
 * with an alert, so the client learns it was refused.
 */
static int mon_tls_verify(gnutls_session_t gs)
{
	struct mon_tls_session *s = gnutls_session_get_ptr(gs);
	gnutls_datum_t out = {NULL, 0};
	unsigned int status = 0;
	char *dn;

	if (gnutls_certificate_verify_peers3(gs, NULL, &status) < 0) {
		snprintf(s->refusal, sizeof(s->refusal), "the client presented no certificate");
		s->alert = GNUTLS_A_CERTIFICATE_REQUIRED;
		return -1;
	}
	if (status) {
		s->alert = status & GNUTLS_CERT_SIGNER_NOT_FOUND ? GNUTLS_A_UNKNOWN_CA
			   : status & GNUTLS_CERT_EXPIRED	 ? GNUTLS_A_CERTIFICATE_EXPIRED
			   : status & GNUTLS_CERT_REVOKED	 ? GNUTLS_A_CERTIFICATE_REVOKED
								 : GNUTLS_A_BAD_CERTIFICATE;
		if (!gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0))
			snprintf(s->refusal, sizeof(s->refusal), "client certificate: %s",
				 (char *)out.data);
		else
			snprintf(s->refusal, sizeof(s->refusal), "client certificate not trusted");
		gnutls_free(out.data);
		return -1;
	}
	dn = tls_peer_dn(gs);
	if (!dn) {
		snprintf(s->refusal, sizeof(s->refusal),
			 "the client's certificate has no readable name");
		s->alert = GNUTLS_A_BAD_CERTIFICATE;
		return -1;
	}
	if (!mon_tls_authorized(s->t, dn)) {
		s->alert = GNUTLS_A_ACCESS_DENIED;
		snprintf(s->refusal, sizeof(s->refusal),
			 "client certificate '%s' is not in the authorization list (qmp-tls-authz)",
			 dn);
		gnutls_free(dn);
		return -1;
	}
	gnutls_free(dn);
	return 0;
}

/* The server's key lookup: the identity must be in keys.psk and authorized. */
static int mon_tls_psk_key(gnutls_session_t gs, const char *identity, gnutls_datum_t *key)
{
	struct mon_tls_session *s = gnutls_session_get_ptr(gs);
	const struct tls_psk_key *k = tls_psk_keys_find(&s->t->keys, identity);

	if (!k || !mon_tls_authorized(s->t, identity)) {
		snprintf(s->refusal, sizeof(s->refusal), "PSK identity '%s' is %s", identity,
			 k ? "not in the authorization list (qmp-tls-authz)" : "unknown");
		s->alert = k ? GNUTLS_A_ACCESS_DENIED : GNUTLS_A_UNKNOWN_PSK_IDENTITY;
		return -1;
	}
	key->data = gnutls_malloc(k->key.size);
	if (!key->data)
		return -1;
	memcpy(key->data, k->key.data, k->key.size);
	key->size = k->key.size;
	return 0;
}

/* ---- credentials ------------------------------------------------------- */

static int mon_tls_load_x509(struct mon_tls *t, const char *dir, char *err, size_t errlen)
{
	char crl[4096];
	int ret;

	if (gnutls_certificate_allocate_credentials(&t->x509))
		return -ENOMEM;
	gnutls_certificate_set_verify_function(t->x509, mon_tls_verify);
	ret = tls_x509_load(t->x509, dir, "server", err, errlen);
	if (ret)
		return ret;
	/* Optional, as in QEMU's layout: revoked client certificates. */
	snprintf(crl, sizeof(crl), "%s/ca-crl.pem", dir);
	if (!access(crl, R_OK)) {
		ret = gnutls_certificate_set_x509_crl_file(t->x509, crl, GNUTLS_X509_FMT_PEM);
		if (ret < 0) {
			snprintf(err, errlen, "%s: %s", crl, gnutls_strerror(ret));
			return -EINVAL;
		}
	}
	return 0;
}

static int mon_tls_load_psk(struct mon_tls *t, const char *file, char *err, size_t errlen)
{
	int ret = tls_psk_keys_load(&t->keys, file, err, errlen);

	if (ret)
		return ret;
	if (gnutls_psk_allocate_server_credentials(&t->psk_cred))
		return -ENOMEM;
	gnutls_psk_set_server_credentials_function(t->psk_cred, mon_tls_psk_key);
	return 0;
}

/* "DN;DN" or one per line: a DN holds commas, so those separate nothing. */
static int mon_tls_load_authz(struct mon_tls *t, const char *authz, char *err, size_t errlen)
{
	char *list = strdup(authz), *save = NULL, *tok;
	int ret = 0;

	if (!list)
		return -ENOMEM;
	for (tok = strtok_r(list, ";\n", &save); tok && !ret; tok = strtok_r(NULL, ";\n", &save)) {
		if (t->nr_authz == MON_TLS_MAX_AUTHZ) {
			snprintf(err, errlen, "qmp-tls-authz: more than %d names",
				 MON_TLS_MAX_AUTHZ);
			ret = -E2BIG;
		} else if (!(t->authz[t->nr_authz++] = strdup(tok))) {
			ret = -ENOMEM;
		}
	}
	if (!ret && !t->nr_authz) {
		snprintf(err, errlen, "qmp-tls-authz: an empty list would refuse every client");
		ret = -EINVAL;
	}
	free(list);
	return ret;
}

int mon_tls_load(struct mon_tls **out, const struct mon_tls_config *cfg, char *err, size_t errlen)
{
	struct mon_tls *t;
	int ret;

	err[0] = '\0';
	if (!cfg->x509_dir == !cfg->psk_file) {
		snprintf(err, errlen, "TLS needs exactly one of an x509 directory and a PSK file");
		return -EINVAL;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->psk = cfg->psk_file != NULL;
	ret = t->psk ? mon_tls_load_psk(t, cfg->psk_file, err, errlen)
		     : mon_tls_load_x509(t, cfg->x509_dir, err, errlen);
	if (!ret && cfg->authz)
		ret = mon_tls_load_authz(t, cfg->authz, err, errlen);
	if (ret) {
		if (!err[0])
			snprintf(err, errlen, "%s", strerror(-ret));
		mon_tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void mon_tls_free(struct mon_tls *t)
{
	if (!t)
		return;
	if (t->x509)
		gnutls_certificate_free_credentials(t->x509);
	if (t->psk_cred)
		gnutls_psk_free_server_credentials(t->psk_cred);
	tls_psk_keys_free(&t->keys);
	for (size_t i = 0; i < t->nr_authz; i++)
		free(t->authz[i]);
	free(t);
}

const char *mon_tls_kind(const struct mon_tls *t)
{
	return t->psk ? "psk" : "x509";
}

/* ---- sessions ---------------------------------------------------------- */

int mon_tls_session_alloc(struct mon_tls_session **out, const struct mon_tls *t, int fd)
{
	struct mon_tls_session *s = calloc(1, sizeof(*s));
	int ret;

	if (!s)
		return -ENOMEM;
	s->t = t;
	/* GnuTLS's own socket I/O with MSG_NOSIGNAL; GNUTLS_NONBLOCK: the socket is. */
	ret = gnutls_init(&s->gs,
			  GNUTLS_SERVER | GNUTLS_NO_TICKETS | GNUTLS_NO_SIGNAL | GNUTLS_NONBLOCK);
	if (ret) {
		free(s);
		return -ENOMEM;
	}
	gnutls_session_set_ptr(s->gs, s);
	ret = gnutls_priority_set_direct(s->gs, t->psk ? TLS_PRIO_PSK : TLS_PRIO_X509, NULL);
	if (!ret && t->psk)
		ret = gnutls_credentials_set(s->gs, GNUTLS_CRD_PSK, t->psk_cred);
	else if (!ret)
		ret = gnutls_credentials_set(s->gs, GNUTLS_CRD_CERTIFICATE, t->x509);
	if (ret) {
		mon_tls_session_free(s);
		return -EINVAL;
	}
	/*
	 * Mutual: the client must present a certificate (mon_tls_verify checks
	 * it).  Our CA's name is not sent with the request: a client then
	 * presents the certificate it has rather than none, so a refusal names
	 * the real cause (an unknown issuer), and strangers learn nothing.
	 */
	if (!t->psk) {
		gnutls_certificate_server_set_request(s->gs, GNUTLS_CERT_REQUIRE);
		gnutls_certificate_send_x509_rdn_sequence(s->gs, 1);
	}
	gnutls_transport_set_int(s->gs, fd);
	*out = s;
	return 0;
}

void mon_tls_session_free(struct mon_tls_session *s)
{
	if (!s)
		return;
	gnutls_deinit(s->gs);
	if (s->peer)
		gnutls_free(s->peer);
	free(s);
}

/* Why a handshake failed, in words an operator can act on. */
static void mon_tls_handshake_error(struct mon_tls_session *s, int ret, char *err, size_t errlen)
{
	switch (ret) {
	case GNUTLS_E_CERTIFICATE_ERROR:
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
	case GNUTLS_E_DECRYPTION_FAILED:
	case GNUTLS_E_KEYFILE_ERROR:
	case GNUTLS_E_ERROR_IN_FINISHED_PACKET:
		if (s->refusal[0]) {
			snprintf(err, errlen, "TLS: client refused: %s", s->refusal);
			return;
		}
		break;
	case GNUTLS_E_NO_CERTIFICATE_FOUND:
	case GNUTLS_E_CERTIFICATE_REQUIRED:
		snprintf(err, errlen, "TLS: client refused: it presented no certificate");
		return;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		snprintf(err, errlen, "TLS handshake: the client refused us (alert: %s)",
			 gnutls_alert_get_name(gnutls_alert_get(s->gs)));
		return;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_UNSUPPORTED_VERSION_PACKET:
	case GNUTLS_E_UNEXPECTED_PACKET:
	case GNUTLS_E_UNEXPECTED_HANDSHAKE_PACKET:
		snprintf(err, errlen,
			 "TLS handshake: not a TLS client hello (%s); plaintext QMP on a TLS "
			 "port?",
			 gnutls_strerror(ret));
		return;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		snprintf(err, errlen, "TLS handshake: the client closed the connection (%s)",
			 gnutls_strerror(ret));
		return;
	}
	if (s->refusal[0])
		snprintf(err, errlen, "TLS: client refused: %s (%s)", s->refusal,
			 gnutls_strerror(ret));
	else
		snprintf(err, errlen, "TLS handshake: %s", gnutls_strerror(ret));
}

int mon_tls_session_handshake(struct mon_tls_session *s, bool *want_write, char *err, size_t errlen)
{
	const char *who;
	int ret;

	s->refusal[0] = '\0';
	s->alert = -1;
	ret = gnutls_handshake(s->gs);
	if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED ||
	    (ret < 0 && !gnutls_error_is_fatal(ret))) {
		*want_write = gnutls_record_get_direction(s->gs) == 1;
		return -EAGAIN;
	}
	if (ret < 0) {
		mon_tls_handshake_error(s, ret, err, errlen);
		/* Tell the client why, as TLS can (unknown CA, expired...); best effort. */
		if (ret == GNUTLS_E_NO_CERTIFICATE_FOUND || ret == GNUTLS_E_CERTIFICATE_REQUIRED)
			s->alert = GNUTLS_A_CERTIFICATE_REQUIRED;
		if (s->alert >= 0)
			gnutls_alert_send(s->gs, GNUTLS_AL_FATAL,
					  (gnutls_alert_description_t)s->alert);
		else if (ret != GNUTLS_E_FATAL_ALERT_RECEIVED)
			gnutls_alert_send_appropriate(s->gs, ret);
		switch (ret) {
		case GNUTLS_E_PREMATURE_TERMINATION:
		case GNUTLS_E_PULL_ERROR:
		case GNUTLS_E_PUSH_ERROR:
			return -ECONNRESET;
		default:
			return -EACCES;
		}
	}
	/* The callbacks checked the peer already; name it, and check once more. */
	if (s->t->psk) {
		who = gnutls_psk_server_get_username(s->gs);
		s->peer = who ? gnutls_strdup(who) : NULL;
	} else {
		s->peer = tls_peer_dn(s->gs);
	}
	if (!s->peer || !mon_tls_authorized(s->t, s->peer)) {
		snprintf(err, errlen, "TLS: client refused: '%s' is not authorized",
			 s->peer ? s->peer : "?");
		return -EACCES;
	}
	return 0;
}

const char *mon_tls_session_peer(const struct mon_tls_session *s)
{
	return s->peer ? s->peer : "?";
}

/* ---- records ----------------------------------------------------------- */

static ssize_t mon_tls_errno(ssize_t ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_INTERRUPTED:
		errno = EAGAIN;
		break;
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
		errno = ECONNRESET;
		break;
	default:
		/* A warning alert was consumed: nothing to hand over now. */
		errno = gnutls_error_is_fatal((int)ret) ? EPROTO : EAGAIN;
		break;
	}
	return -1;
}

ssize_t mon_tls_session_recv(struct mon_tls_session *s, void *buf, size_t len)
{
	ssize_t n = gnutls_record_recv(s->gs, buf, len);

	/* A client that closes without close_notify has still ended its input. */
	if (n == GNUTLS_E_PREMATURE_TERMINATION)
		return 0;
	return n < 0 ? mon_tls_errno(n) : n;
}

ssize_t mon_tls_session_send(struct mon_tls_session *s, const void *buf, size_t len)
{
	ssize_t n;

	/* GnuTLS's rule: after GNUTLS_E_AGAIN the same data again (it sends what it holds). */
	if (s->send_held && len > s->send_held)
		len = s->send_held;
	n = gnutls_record_send(s->gs, buf, len);
	if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED) {
		s->send_held = len;
		errno = EAGAIN;
		return -1;
	}
	s->send_held = 0;
	return n < 0 ? mon_tls_errno(n) : n;
}

size_t mon_tls_session_pending(const struct mon_tls_session *s)
{
	return gnutls_record_check_pending(s->gs);
}

void mon_tls_session_bye(struct mon_tls_session *s)
{
	if (!s->send_held)
		gnutls_bye(s->gs, GNUTLS_SHUT_WR);
}
