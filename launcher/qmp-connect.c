// SPDX-License-Identifier: GPL-2.0-only
/* The QMP connection of `cleave qmp` and `cleave migrate`: see qmp-connect.h. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "launcher/qmp-connect.h"

int qmp_connect_option(struct qmp_connect_opts *o, int opt, const char *arg)
{
	switch (opt) {
	case QMP_OPT_TLS_X509:
		o->tls.x509_dir = arg;
		return 1;
	case QMP_OPT_TLS_PSK:
		o->tls.psk_file = arg;
		return 1;
	case QMP_OPT_TLS_PSK_IDENTITY:
		o->tls.psk_identity = arg;
		return 1;
	case QMP_OPT_TLS_HOSTNAME:
		o->tls.hostname = arg;
		return 1;
	default:
		return 0;
	}
}

int qmp_connect_check(const struct qmp_connect_opts *o, const char *prog)
{
	const char *why = NULL;

	if (o->tls.x509_dir && o->tls.psk_file)
		why = "--tls-x509 and --tls-psk: give one of them";
	else if (o->tls.hostname && !o->tls.x509_dir)
		why = "--tls-hostname names what the server's certificate must carry: it needs "
		      "--tls-x509";
	else if (o->tls.psk_identity && !o->tls.psk_file)
		why = "--tls-psk-identity needs --tls-psk";
	if (!why)
		return 0;
	fprintf(stderr, "%s: %s\n", prog, why);
	return -1;
}

int qmp_connect(struct qmp_client **out, const struct qmp_connect_opts *o, const char *addr,
		const char *prog, int timeout_ms)
{
	bool tls = o->tls.x509_dir || o->tls.psk_file;
	char err[512];
	int ret;

	*out = NULL;
	ret = qmp_client_connect_tls(out, addr, tls ? &o->tls : NULL, timeout_ms, err, sizeof(err));
	if (!ret) {
		ret = qmp_client_negotiate(*out, timeout_ms);
		snprintf(err, sizeof(err), "qmp_capabilities: %s", strerror(-ret));
	}
	if (!ret)
		return 0;
	fprintf(stderr, "%s: %s: %s\n", prog, addr, err);
	qmp_client_close(*out);
	*out = NULL;
	return ret;
}
