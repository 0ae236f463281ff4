/* SPDX-License-Identifier: GPL-2.0-only */
/* Test credentials made at run time (tls-certs.c), for the migration and QMP TLS tests. */
#ifndef CLEAVE_TEST_TLS_CERTS_H
#define CLEAVE_TEST_TLS_CERTS_H

#include <stdbool.h>

struct tls_certs {
	const char
		*ca_name; /* the CA's CN: two calls with different names never trust each other */
	const char *server_dns; /* the destination certificate's DNS name, or NULL */
	const char *server_ip;	/* its IPv4 address SAN, or NULL */
	const char *client_dn;	/* the source certificate's distinguished name */
	bool server_expired;
	bool client_expired;
};

/* Writes ca-cert.pem, server-cert.pem, server-key.pem, client-cert.pem, client-key.pem. */
int tls_certs_make(const char *dir, const struct tls_certs *o);
/* Writes a keys.psk of @lines ("identity:hexkey\n"...). */
int tls_psk_make(const char *path, const char *lines);

#endif
