// SPDX-License-Identifier: GPL-2.0-only
/*
 * The client end of a TLS connection (see tls.h): QEMU's endpoint=client
 * credentials, a blocking handshake bounded by a deadline, and a refusal
 * explained in one line.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tls/tls.h"

/* Immutable after tls_client_load. */
struct tls_client {
	bool psk;
	gnutls_certificate_credentials_t x509;	  /* x509: the CA, our certificate and key */
	gnutls_psk_client_credentials_t psk_cred; /* PSK: our identity and its key */
	char *identity;				  /* PSK: whose key we hold; owned */
	char *hostname; /* what the server's certificate must name; NULL: the host; owned */
};

static int tls_client_load_psk(struct tls_client *c, const struct tls_client_config *cfg, char *err,
			       size_t errlen)
{
	struct tls_psk_keys keys = {0};
	const struct tls_psk_key *mine;
	int ret = tls_psk_keys_load(&keys, cfg->psk_file, err, errlen);

	if (ret)
		goto out;
	mine = tls_psk_keys_find(&keys, c->identity);
	if (!mine) {
		snprintf(err, errlen, "%s: no key for the PSK identity '%s'", cfg->psk_file,
			 c->identity);
		ret = -ENOKEY;
		goto out;
	}
	if (gnutls_psk_allocate_client_credentials(&c->psk_cred)) {
		ret = -ENOMEM;
		goto out;
	}
	/* GnuTLS copies the key: the parsed ones are wiped below. */
	if (gnutls_psk_set_client_credentials(c->psk_cred, c->identity, &mine->key,
					      GNUTLS_PSK_KEY_RAW) < 0) {
		snprintf(err, errlen, "%s: the key of '%s' is not valid", cfg->psk_file,
			 c->identity);
		ret = -EINVAL;
	}
out:
	tls_psk_keys_free(&keys);
	return ret;
}

int tls_client_load(struct tls_client **out, const struct tls_client_config *cfg, char *err,
		    size_t errlen)
{
	struct tls_client *c;
	int ret;

	err[0] = '\0';
	if (!cfg->x509_dir == !cfg->psk_file) {
		snprintf(err, errlen, "TLS needs exactly one of an x509 directory and a PSK file");
		return -EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->psk = cfg->psk_file != NULL;
	c->identity = strdup(cfg->psk_identity ? cfg->psk_identity : TLS_PSK_DEFAULT_IDENTITY);
	if (cfg->hostname)
		c->hostname = strdup(cfg->hostname);
	if (!c->identity || (cfg->hostname && !c->hostname)) {
		ret = -ENOMEM;
		goto err;
	}
	if (c->psk) {
		ret = tls_client_load_psk(c, cfg, err, errlen);
	} else {
		ret = gnutls_certificate_allocate_credentials(&c->x509) ? -ENOMEM : 0;
		if (!ret)
			ret = tls_x509_load(c->x509, cfg->x509_dir, "client", err, errlen);
	}
	if (ret)
		goto err;
	*out = c;
	return 0;
err:
	if (!err[0])
		snprintf(err, errlen, "%s", strerror(-ret));
	tls_client_free(c);
	return ret;
}

void tls_client_free(struct tls_client *c)
{
	if (!c)
		return;
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk_cred)
		gnutls_psk_free_client_credentials(c->psk_cred);
	free(c->identity);
	free(c->hostname);
	free(c);
}

/* x509: the server's certificate must chain to our CA and name @name; sent as SNI too. */
static int tls_client_set_name(gnutls_session_t s, const char *name)
{
	struct in_addr a;
	int ret = 0;

	/* SNI carries host names only (RFC 6066); an address is still checked against the SANs. */
	if (inet_pton(AF_INET, name, &a) != 1)
		ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, name, strlen(name));
	if (!ret)
		gnutls_session_set_verify_cert(s, name, 0);
	return ret;
}

static int tls_client_session_new(const struct tls_client *c, int fd, const char *host,
				  gnutls_session_t *out, char *err, size_t errlen)
{
	gnutls_session_t s;
	int ret;

	/* GnuTLS's own socket I/O with MSG_NOSIGNAL: a vanished server is an error, not SIGPIPE. */
	ret = gnutls_init(&s, GNUTLS_CLIENT | GNUTLS_NO_TICKETS | GNUTLS_NO_SIGNAL);
	if (ret) {
		snprintf(err, errlen, "gnutls_init: %s", gnutls_strerror(ret));
		return -ENOMEM;
	}
	ret = gnutls_priority_set_direct(s, c->psk ? TLS_PRIO_PSK : TLS_PRIO_X509, NULL);
	if (!ret)
		ret = c->psk ? gnutls_credentials_set(s, GNUTLS_CRD_PSK, c->psk_cred)
			     : gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, c->x509);
	if (!ret && !c->psk)
		ret = tls_client_set_name(s, c->hostname ? c->hostname : host);
	if (ret) {
		snprintf(err, errlen, "TLS session setup: %s", gnutls_strerror(ret));
		gnutls_deinit(s);
		return -EINVAL;
	}
	gnutls_transport_set_int(s, fd);
	*out = s;
	return 0;
}

/* A timeout or a cut may be the network; anything else is a refusal a retry would meet again. */
static int tls_client_errno(int ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_TIMEDOUT:
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
		return -ECONNRESET;
	default:
		return -EACCES;
	}
}

/*
 * Causes GnuTLS's words leave unsaid: a plaintext server (its greeting is
 * no TLS record), and a server that finds our PSK binder wrong (another
 * key under our identity), which answers with a generic alert.
 */
static void tls_client_hint(const struct tls_client *c, gnutls_session_t s, int ret, char *err,
			    size_t errlen)
{
	size_t len = strlen(err);

	if (ret == GNUTLS_E_UNEXPECTED_PACKET || ret == GNUTLS_E_UNSUPPORTED_VERSION_PACKET ||
	    ret == GNUTLS_E_UNEXPECTED_PACKET_LENGTH) {
		snprintf(err + len, errlen - len, " (no TLS on that port?)");
		return;
	}
	if (!c->psk || ret != GNUTLS_E_FATAL_ALERT_RECEIVED)
		return;
	switch (gnutls_alert_get(s)) {
	case GNUTLS_A_ILLEGAL_PARAMETER:
	case GNUTLS_A_DECRYPT_ERROR:
	case GNUTLS_A_BAD_RECORD_MAC:
		snprintf(err + len, errlen - len, " (a wrong key for PSK identity '%s'?)",
			 c->identity);
		break;
	default:
		break;
	}
}

int tls_client_session_start(const struct tls_client *c, int fd, const char *host,
			     unsigned int timeout_ms, gnutls_session_t *out, char *err,
			     size_t errlen)
{
	gnutls_session_t s;
	int ret;

	*out = NULL;
	ret = tls_client_session_new(c, fd, host, &s, err, errlen);
	if (ret)
		return ret;
	gnutls_handshake_set_timeout(s, timeout_ms);
	do
		ret = gnutls_handshake(s);
	while (ret == GNUTLS_E_INTERRUPTED || (ret < 0 && !gnutls_error_is_fatal(ret) &&
					       ret != GNUTLS_E_AGAIN && ret != GNUTLS_E_TIMEDOUT));
	if (ret < 0) {
		tls_handshake_error(s, ret, "server", NULL, err, errlen);
		tls_client_hint(c, s, ret, err, errlen);
		/* Tell the server why, as TLS can (unknown CA, bad certificate...). */
		gnutls_alert_send_appropriate(s, ret);
		gnutls_deinit(s);
		return tls_client_errno(ret);
	}
	*out = s;
	return 0;
}
