/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The monitor's end of the fd link (proto/fd-link.h): hands one socket to
 * the migrator and waits for its answer.  Called by a migrator worker.
 */
#ifndef CLEAVE_MONITOR_FD_LINK_H
#define CLEAVE_MONITOR_FD_LINK_H

#include "monitor/qmp-dispatch.h"

/*
 * Sends @fd (always closed here) under @name (1..FDLINK_NAME_MAX bytes)
 * and waits up to ctx->timeout_ms for the migrator's answer to it.
 * Returns the migrator's answer (0 or a negative errno), -ETIMEDOUT when
 * none came, -ENOTCONN without a link, or the send's error.
 */
int mon_fdlink_send(struct mon_ctx *ctx, const char *name, int fd);

/* Whether @name can name a socket for the migrator (1..FDLINK_NAME_MAX bytes, no ':' or ','). */
bool mon_fdlink_name_ok(const char *name);

#endif
