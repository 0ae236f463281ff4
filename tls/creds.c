// SPDX-License-Identifier: GPL-2.0-only
/* Credentials in QEMU's layouts and handshake diagnostics shared by every TLS end: see tls.h. */
#include <errno.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tls/tls.h"

/* ---- keys.psk ---------------------------------------------------------- */

/* One "identity:hexkey" line, appended to @k. */
static int tls_psk_line(struct tls_psk_keys *k, char *line, const char *file, char *err,
			size_t errlen)
{
	char *colon = strchr(line, ':'), *end;
	struct tls_psk_key *grown, *key;
	gnutls_datum_t hex;

	end = colon ? colon + 1 + strspn(colon + 1, "0123456789abcdefABCDEF") : NULL;
	if (!colon || colon == line || *end || end == colon + 1) {
		snprintf(err, errlen, "%s: a line is not IDENTITY:HEXKEY", file);
		return -EINVAL;
	}
	grown = realloc(k->v, (k->nr + 1) * sizeof(*k->v));
	if (!grown)
		return -ENOMEM;
	k->v = grown;
	key = &k->v[k->nr++];
	*colon = '\0';
	key->identity = strdup(line);
	key->key = (gnutls_datum_t){NULL, 0};
	if (!key->identity)
		return -ENOMEM;
	hex.data = (unsigned char *)(colon + 1);
	hex.size = (unsigned int)strlen(colon + 1);
	if (hex.size % 2 || gnutls_hex_decode2(&hex, &key->key)) {
		snprintf(err, errlen, "%s: the key of '%s' is not valid hex", file, line);
		return -EINVAL;
	}
	return 0;
}

int tls_psk_keys_load(struct tls_psk_keys *k, const char *file, char *err, size_t errlen)
{
	FILE *f = fopen(file, "re");
	char line[1024];
	int ret = 0;

	if (!f) {
		ret = -errno;
		snprintf(err, errlen, "%s: %s", file, strerror(errno));
		return ret;
	}
	while (!ret && fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		if (line[0] && line[0] != '#')
			ret = tls_psk_line(k, line, file, err, errlen);
	}
	fclose(f);
	if (!ret && !k->nr) {
		snprintf(err, errlen, "%s: no keys", file);
		ret = -EINVAL;
	}
	if (ret == -ENOMEM)
		snprintf(err, errlen, "%s: out of memory", file);
	return ret;
}

void tls_psk_keys_free(struct tls_psk_keys *k)
{
	for (size_t i = 0; i < k->nr; i++) {
		free(k->v[i].identity);
		if (k->v[i].key.data) {
			/* Secrets do not outlive their use in freed heap memory. */
			memset(k->v[i].key.data, 0, k->v[i].key.size);
			gnutls_free(k->v[i].key.data);
		}
	}
	free(k->v);
	k->v = NULL;
	k->nr = 0;
}

const struct tls_psk_key *tls_psk_keys_find(const struct tls_psk_keys *k, const char *identity)
{
	for (size_t i = 0; i < k->nr; i++)
		if (!strcmp(k->v[i].identity, identity))
			return &k->v[i];
	return NULL;
}

/* ---- x509 -------------------------------------------------------------- */

int tls_x509_load(gnutls_certificate_credentials_t c, const char *dir, const char *end, char *err,
		  size_t errlen)
{
	char ca[4096], cert[4096], key[4096];
	int ret;

	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", dir);
	snprintf(cert, sizeof(cert), "%s/%s-cert.pem", dir, end);
	snprintf(key, sizeof(key), "%s/%s-key.pem", dir, end);
	/* Name the missing file: GnuTLS would only say "Error while reading file". */
	for (const char *p = ca; p; p = p == ca ? cert : p == cert ? key : NULL) {
		if (access(p, R_OK)) {
			ret = -errno;
			snprintf(err, errlen, "%s: %s", p, strerror(errno));
			return ret;
		}
	}
	ret = gnutls_certificate_set_x509_trust_file(c, ca, GNUTLS_X509_FMT_PEM);
	if (ret <= 0) {
		snprintf(err, errlen, "%s: %s", ca,
			 ret ? gnutls_strerror(ret) : "no certificate in it");
		return -EINVAL;
	}
	ret = gnutls_certificate_set_x509_key_file(c, cert, key, GNUTLS_X509_FMT_PEM);
	if (ret < 0) {
		snprintf(err, errlen, "%s: %s-cert.pem / %s-key.pem: %s", dir, end, end,
			 gnutls_strerror(ret));
		return -EINVAL;
	}
	return 0;
}

char *tls_peer_dn(gnutls_session_t s)
{
	const gnutls_datum_t *certs;
	gnutls_datum_t dn = {NULL, 0};
	gnutls_x509_crt_t crt;
	unsigned int n = 0;
	bool ok;

	certs = gnutls_certificate_get_peers(s, &n);
	if (!certs || !n || gnutls_x509_crt_init(&crt))
		return NULL;
	ok = !gnutls_x509_crt_import(crt, &certs[0], GNUTLS_X509_FMT_DER) &&
	     !gnutls_x509_crt_get_dn3(crt, &dn, 0);
	gnutls_x509_crt_deinit(crt);
	return ok ? (char *)dn.data : NULL;
}

/* ---- diagnostics ------------------------------------------------------- */

void tls_handshake_error(gnutls_session_t s, int ret, const char *peer, const char *refusal,
			 char *err, size_t errlen)
{
	gnutls_datum_t out = {NULL, 0};

	switch (ret) {
	case GNUTLS_E_CERTIFICATE_ERROR:
	case GNUTLS_E_DECRYPTION_FAILED:
	case GNUTLS_E_KEYFILE_ERROR:
	case GNUTLS_E_ERROR_IN_FINISHED_PACKET:
		if (refusal && refusal[0]) {
			snprintf(err, errlen, "TLS: %s refused: %s", peer, refusal);
			return;
		}
		break;
	case GNUTLS_E_CERTIFICATE_VERIFICATION_ERROR:
		/* Our check of its certificate: GnuTLS says which part failed. */
		if (!gnutls_certificate_verification_status_print(
			    gnutls_session_get_verify_cert_status(s),
			    gnutls_certificate_type_get(s), &out, 0)) {
			size_t len;

			snprintf(err, errlen, "TLS: %s certificate refused: %s", peer,
				 (char *)out.data);
			gnutls_free(out.data);
			/* GnuTLS ends each sentence of the status with a space. */
			len = strlen(err);
			while (len && err[len - 1] == ' ')
				err[--len] = '\0';
			return;
		}
		break;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		snprintf(err, errlen, "TLS: the %s refused us (alert: %s)", peer,
			 gnutls_alert_get_name(gnutls_alert_get(s)));
		return;
	case GNUTLS_E_AGAIN:
	case GNUTLS_E_TIMEDOUT:
		snprintf(err, errlen, "TLS handshake: timed out");
		return;
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
		snprintf(err, errlen, "TLS handshake: the %s closed the connection (%s)", peer,
			 gnutls_strerror(ret));
		return;
	}
	snprintf(err, errlen, "TLS handshake: %s", gnutls_strerror(ret));
}
