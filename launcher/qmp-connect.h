/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The QMP connection of `cleave qmp` and `cleave migrate`: the TLS options
 * both take (docs/OPERATOR.md; QEMU's client credential layouts, docs/QMP.md
 * "TCP and TLS") and the connect + negotiate that reports one line on
 * failure.
 */
#ifndef CLEAVE_LAUNCHER_QMP_CONNECT_H
#define CLEAVE_LAUNCHER_QMP_CONNECT_H

#include <getopt.h>

#include "monitor/qmp-client.h"

/* getopt_long values of the TLS options, above any short option's. */
enum {
	QMP_OPT_TLS_X509 = 0x100,
	QMP_OPT_TLS_PSK,
	QMP_OPT_TLS_PSK_IDENTITY,
	QMP_OPT_TLS_HOSTNAME,
};

/* The TLS options' entries, for a subcommand's struct option table. */
// clang-format off
#define QMP_TLS_LONG_OPTIONS                                                     \
	{"tls-x509", required_argument, NULL, QMP_OPT_TLS_X509},                 \
	{"tls-psk", required_argument, NULL, QMP_OPT_TLS_PSK},                   \
	{"tls-psk-identity", required_argument, NULL, QMP_OPT_TLS_PSK_IDENTITY}, \
	{"tls-hostname", required_argument, NULL, QMP_OPT_TLS_HOSTNAME}
// clang-format on

/* The options' lines of a usage text. */
#define QMP_TLS_USAGE                                                                              \
	"  --tls-x509 DIR        TLS over tcp: with DIR/ca-cert.pem, client-cert.pem,\n"           \
	"                        client-key.pem; --tls-hostname NAME: the name the server's\n"     \
	"                        certificate must carry (default: the address's host)\n"           \
	"  --tls-psk FILE        TLS over tcp: with a key of FILE (IDENTITY:HEXKEY lines);\n"      \
	"                        --tls-psk-identity NAME: whose (default: qemu)\n"

/* The options given so far. */
struct qmp_connect_opts {
	struct tls_client_config tls; /* strings borrowed from argv */
};

/*
 * Takes option @opt (getopt_long's value) with @arg if it is a TLS option:
 * returns 1 when it was one, 0 when not.
 */
int qmp_connect_option(struct qmp_connect_opts *o, int opt, const char *arg);
/*
 * After the options: are they consistent?  0, or -1 after printing why
 * (prefixed with @prog) to stderr.
 */
int qmp_connect_check(const struct qmp_connect_opts *o, const char *prog);
/*
 * Connects to @addr (TLS when the options say so) and negotiates, within
 * @timeout_ms.  0, or a negative errno after printing "PROG: ADDR: why".
 */
int qmp_connect(struct qmp_client **out, const struct qmp_connect_opts *o, const char *addr,
		const char *prog, int timeout_ms);

#endif
