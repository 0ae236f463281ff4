/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The fd link between cleave-monitor and cleave-migrator (docs/SECURITY.md,
 * "The fd link"): a SOCK_SEQPACKET socketpair the launcher hands to both
 * at spawn (and keeps, for restarted children), one message per send.  NNG
 * cannot carry file descriptors; QMP's getfd takes one from a client and
 * migrate / migrate-incoming "fd:NAME" hands it to the migrator this way,
 * before the MIGRATE / INCOMING call that uses it.
 *
 *   monitor -> migrator  struct fdlink_msg: FDLINK_ADD with exactly one
 *                        SCM_RIGHTS fd (a socket) and @name; nothing else
 *   migrator -> monitor  struct fdlink_ack: @seq of the message it answers,
 *                        @err the session's answer (0 or a negative errno),
 *                        no fd
 *
 * The migrator checks every message (its size, the name, exactly one fd,
 * S_ISSOCK) and answers each one it can read a seq from.  The monitor
 * waits for the ack with its own seq before its next call, so the
 * MIGRATE that names the fd never overtakes it; it closes any fd that
 * comes with an ack and acts on nothing but @seq and @err.
 *
 * Integers in host order: both ends run on one host.
 */
#ifndef CLEAVE_PROTO_FD_LINK_H
#define CLEAVE_PROTO_FD_LINK_H

#include <stdint.h>

#define FDLINK_MAGIC	0x4b4e4c46u /* "FLNK" */
#define FDLINK_NAME_MAX 63	    /* bytes of a name (the session's limit) */

enum fdlink_type {
	FDLINK_ADD = 1,
};

struct fdlink_msg {
	uint32_t magic; /* FDLINK_MAGIC */
	uint32_t type;	/* enum fdlink_type */
	uint64_t seq;
	uint32_t name_len;		/* 1..FDLINK_NAME_MAX: bytes of name that follow */
	uint32_t pad;			/* 0 */
	char name[FDLINK_NAME_MAX + 1]; /* name_len bytes, then NULs */
};

struct fdlink_ack {
	uint32_t magic; /* FDLINK_MAGIC */
	int32_t err;
	uint64_t seq;
};

#endif
