// SPDX-License-Identifier: GPL-2.0-only
/*
 * Test credentials made at run time with GnuTLS (no tool, no committed
 * keys): a CA, and server and client certificates it signs, written in
 * QEMU's tls-creds-x509 directory layout; and keys.psk files.
 */
#include <errno.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "tls-certs.h"

static int write_pem(const char *dir, const char *name, const void *data, size_t len)
{
	char path[512];
	FILE *f;
	int ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "we");
	if (!f)
		return -errno;
	ok = fwrite(data, 1, len, f) == len;
	return fclose(f) || !ok ? -EIO : 0;
}

static int key_new(gnutls_x509_privkey_t *key)
{
	if (gnutls_x509_privkey_init(key))
		return -ENOMEM;
	return gnutls_x509_privkey_generate(*key, GNUTLS_PK_ECDSA,
					    GNUTLS_CURVE_TO_BITS(GNUTLS_ECC_CURVE_SECP256R1), 0)
		       ? -EIO
		       : 0;
}

/* A certificate for @key named @dn, signed by @ca (NULL: self-signed CA). */
static int crt_new(gnutls_x509_crt_t *crt, gnutls_x509_privkey_t key, const char *dn,
		   gnutls_x509_crt_t ca, gnutls_x509_privkey_t ca_key, const char *dns,
		   const char *ip, bool server, bool expired, unsigned int serial)
{
	time_t now = time(NULL);
	unsigned char sn = (unsigned char)serial;
	const char *bad = NULL;
	int ret;

	if (gnutls_x509_crt_init(crt))
		return -ENOMEM;
	ret = gnutls_x509_crt_set_version(*crt, 3);
	ret = ret ?: gnutls_x509_crt_set_serial(*crt, &sn, 1);
	ret = ret ?: gnutls_x509_crt_set_activation_time(*crt, expired ? now - 7200 : now - 60);
	ret = ret
		      ?: gnutls_x509_crt_set_expiration_time(*crt, expired ? now - 3600
									   : now + 86400 * 365);
	ret = ret ?: gnutls_x509_crt_set_dn(*crt, dn, &bad);
	ret = ret ?: gnutls_x509_crt_set_key(*crt, key);
	if (!ca) {
		ret = ret ?: gnutls_x509_crt_set_basic_constraints(*crt, 1, -1);
		ret = ret
			      ?: gnutls_x509_crt_set_key_usage(*crt, GNUTLS_KEY_KEY_CERT_SIGN |
									     GNUTLS_KEY_CRL_SIGN);
	} else {
		ret = ret ?: gnutls_x509_crt_set_basic_constraints(*crt, 0, -1);
		ret = ret ?: gnutls_x509_crt_set_key_usage(*crt, GNUTLS_KEY_DIGITAL_SIGNATURE);
		ret = ret
			      ?: gnutls_x509_crt_set_key_purpose_oid(
					 *crt,
					 server ? GNUTLS_KP_TLS_WWW_SERVER
						: GNUTLS_KP_TLS_WWW_CLIENT,
					 0);
		if (dns)
			ret = ret
				      ?: gnutls_x509_crt_set_subject_alt_name(
						 *crt, GNUTLS_SAN_DNSNAME, dns, strlen(dns),
						 GNUTLS_FSAN_APPEND);
		if (ip) {
			unsigned char a[4];

			if (sscanf(ip, "%hhu.%hhu.%hhu.%hhu", &a[0], &a[1], &a[2], &a[3]) == 4)
				ret = ret
					      ?: gnutls_x509_crt_set_subject_alt_name(
							 *crt, GNUTLS_SAN_IPADDRESS, a, 4,
							 GNUTLS_FSAN_APPEND);
		}
	}
	ret = ret
		      ?: gnutls_x509_crt_sign2(*crt, ca ? ca : *crt, ca ? ca_key : key,
					       GNUTLS_DIG_SHA256, 0);
	if (ret) {
		fprintf(stderr, "test certificate '%s': %s\n", dn, gnutls_strerror(ret));
		return -EIO;
	}
	return 0;
}

static int export_crt(const char *dir, const char *name, gnutls_x509_crt_t crt)
{
	gnutls_datum_t out;
	int ret;

	if (gnutls_x509_crt_export2(crt, GNUTLS_X509_FMT_PEM, &out))
		return -EIO;
	ret = write_pem(dir, name, out.data, out.size);
	gnutls_free(out.data);
	return ret;
}

static int export_key(const char *dir, const char *name, gnutls_x509_privkey_t key)
{
	gnutls_datum_t out;
	int ret;

	if (gnutls_x509_privkey_export2(key, GNUTLS_X509_FMT_PEM, &out))
		return -EIO;
	ret = write_pem(dir, name, out.data, out.size);
	gnutls_free(out.data);
	return ret;
}

int tls_certs_make(const char *dir, const struct tls_certs *o)
{
	gnutls_x509_privkey_t ca_key = NULL, srv_key = NULL, cli_key = NULL;
	gnutls_x509_crt_t ca = NULL, srv = NULL, cli = NULL;
	char ca_dn[128];
	int ret;

	if (mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	snprintf(ca_dn, sizeof(ca_dn), "CN=%s", o->ca_name);
	ret = key_new(&ca_key);
	ret = ret ?: key_new(&srv_key);
	ret = ret ?: key_new(&cli_key);
	ret = ret ?: crt_new(&ca, ca_key, ca_dn, NULL, NULL, NULL, NULL, false, false, 1);
	ret = ret
		      ?: crt_new(&srv, srv_key, "CN=cleave destination,O=cleave tests", ca, ca_key,
				 o->server_dns, o->server_ip, true, o->server_expired, 2);
	ret = ret
		      ?: crt_new(&cli, cli_key, o->client_dn, ca, ca_key, NULL, NULL, false,
				 o->client_expired, 3);
	ret = ret ?: export_crt(dir, "ca-cert.pem", ca);
	ret = ret ?: export_crt(dir, "server-cert.pem", srv);
	ret = ret ?: export_key(dir, "server-key.pem", srv_key);
	ret = ret ?: export_crt(dir, "client-cert.pem", cli);
	ret = ret ?: export_key(dir, "client-key.pem", cli_key);
	if (ca)
		gnutls_x509_crt_deinit(ca);
	if (srv)
		gnutls_x509_crt_deinit(srv);
	if (cli)
		gnutls_x509_crt_deinit(cli);
	if (ca_key)
		gnutls_x509_privkey_deinit(ca_key);
	if (srv_key)
		gnutls_x509_privkey_deinit(srv_key);
	if (cli_key)
		gnutls_x509_privkey_deinit(cli_key);
	return ret;
}

int tls_psk_make(const char *path, const char *lines)
{
	FILE *f = fopen(path, "we");
	int ok;

	if (!f)
		return -errno;
	ok = fputs(lines, f) >= 0;
	return fclose(f) || !ok ? -EIO : 0;
}
