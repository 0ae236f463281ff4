/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migrator's end of the fd link (proto/fd-link.h): a thread hands the
 * sockets cleave-monitor sends to the session for "fd:NAME" URIs.
 */
#ifndef CLEAVE_MIGRATOR_FD_LINK_H
#define CLEAVE_MIGRATOR_FD_LINK_H

#include "migrator/migration.h"

struct mig_fdlink;

/*
 * start/stop pair.  @fd (a SOCK_SEQPACKET socket, not owned: the launcher
 * keeps it for a restarted migrator) is served until stop; @s must
 * outlive it.  -ENOTSOCK when @fd is not such a socket.
 */
int mig_fdlink_start(struct mig_fdlink **out, int fd, struct mig_session *s);
void mig_fdlink_stop(struct mig_fdlink *l);

#endif
