/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What an operator may bound in the QMP server, in one place: the monitor
 * enforces these (monitor/client.c), `cleave run` and `cleave-monitor`
 * check their options against them with messages naming the option
 * (docs/QMP.md, "Limits").
 */
#ifndef CLEAVE_MONITOR_QMP_LIMITS_H
#define CLEAVE_MONITOR_QMP_LIMITS_H

/*
 * Clients at once, not counting the operator's slot.  The default keeps
 * 1000 tools connected; the maximum keeps every client, the operator's
 * slot and the monitor's own fds (NNG pipes, epoll, eventfds) under the
 * sandbox's RLIMIT_NOFILE of 4096 (sandbox/sandbox.c).
 */
#define MON_MAX_CLIENTS_DEFAULT 1024
#define MON_MAX_CLIENTS_MAX	3968

/*
 * Input buffered for all clients together (messages not complete yet, and
 * messages a busy client queued).  Each client's own message stays bounded
 * by MON_FRAME_MAX_SIZE (monitor/qmp-framer.h).
 */
#define MON_IN_TOTAL_DEFAULT (64u << 20)
#define MON_IN_TOTAL_MIN     (4u << 20) /* two clients' full-size messages, with growth */
#define MON_IN_TOTAL_MAX     (1ull << 32)

/* ms from accept until qmp_capabilities must have succeeded; 0: no deadline. */
#define MON_HANDSHAKE_MS_DEFAULT 10000
/* ms an unfinished message may stay unfinished; 0: no deadline. */
#define MON_PARTIAL_MS_DEFAULT 10000
#define MON_DEADLINE_MS_MAX    3600000 /* one hour */

#endif
