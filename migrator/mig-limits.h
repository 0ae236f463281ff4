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
