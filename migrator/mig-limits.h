/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration parameters' limits, in one place: the engine enforces them
 * and the QMP and CLI layers check against them before a request leaves,
 * with messages that name the one parameter at fault (QEMU's wording).
 */
#ifndef CLEAVE_MIG_LIMITS_H
#define CLEAVE_MIG_LIMITS_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define MIG_MIN_CHANNELS    1
#define MIG_MAX_CHANNELS    64	     /* page channels a destination accepts */
#define MIG_MAX_DOWNTIME_MS 2000000u /* QEMU's MAX_MIGRATE_DOWNTIME */

#define MIG_DEFAULT_CHANNELS	  2	/* QEMU's multifd-channels default */
#define MIG_DEFAULT_DOWNTIME_MS	  300	/* QEMU's downtime-limit default */
#define MIG_DEFAULT_MAX_BANDWIDTH 0	/* bytes/s; 0 = unlimited */
#define MIG_DEFAULT_IO_TIMEOUT_MS 10000 /* a silent peer fails the connection */
#define MIG_DEFAULT_RECONNECT_MS  10000 /* a lost peer fails the session after this */

/* Runs of missing pages query-migrate lists for a postcopy destination (the count is whole). */
#define MIG_INFO_MISSING_RUNS 32

/*
 * TLS settings (tls-creds, tls-hostname, tls-authz and the objects they
 * name) are kept in the session record, in fixed-size fields: these are
 * their sizes, the terminating NUL included.
 */
#define MIG_TLS_ID_LEN	     64	 /* a QMP object id */
#define MIG_TLS_HOSTNAME_LEN 256 /* tls-hostname */
#define MIG_TLS_PATH_LEN     256 /* a credentials directory or PSK file */
/* Further credentials cleave run may give for QMP's tls-creds objects (--migrate-tls-creds). */
#define MIG_TLS_MORE_MAX  4
#define MIG_TLS_MAX_RULES 64  /* authz-list rules (and cleave run's --migrate-tls-authz names) */
#define MIG_TLS_MATCH_LEN 256 /* one rule's match: a distinguished name, an identity, a glob */
/*
 * tls-creds and tls-authz of the credentials cleave run was given: not a
 * QMP object id ('#' cannot start one), as QEMU names its internal objects.
 */
#define MIG_TLS_RUN_ID "#cleave-run"

/* 0, or -EINVAL with @err naming @param when @v does not fit in @size bytes. */
static inline int mig_check_tls_string(const char *param, const char *v, size_t size, char *err,
				       size_t len)
{
	size_t n = 0;

	while (v[n] && n < size)
		n++;
	if (n < size)
		return 0;
	snprintf(err, len, "Parameter '%s' expects a string of at most %zu bytes", param, size - 1);
	return -EINVAL;
}

/* 0, or -EINVAL with @err naming multifd_channels. */
static inline int mig_check_channels(int64_t n, char *err, size_t len)
{
	if (n >= MIG_MIN_CHANNELS && n <= MIG_MAX_CHANNELS)
		return 0;
	snprintf(err, len, "Parameter 'multifd_channels' expects a value between %d and %d",
		 MIG_MIN_CHANNELS, MIG_MAX_CHANNELS);
	return -EINVAL;
}

/* 0, or -EINVAL with @err naming downtime_limit. */
static inline int mig_check_downtime(uint64_t ms, char *err, size_t len)
{
	if (ms <= MIG_MAX_DOWNTIME_MS)
		return 0;
	snprintf(err, len,
		 "Parameter 'downtime_limit' expects an integer in the range of 0 to %u seconds",
		 MIG_MAX_DOWNTIME_MS / 1000);
	return -EINVAL;
}

#endif
