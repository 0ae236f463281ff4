/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Private parts of the RPC layer shared by rpc.c (req/rep) and
 * rpc-event.c (pub/sub), plus the hooks the unit tests use.
 */
#ifndef CLEAVE_RPC_INTERNAL_H
#define CLEAVE_RPC_INTERNAL_H

#include <stdint.h>

#include <nng/nng.h>

#include "proto/rpc.h"

/* NNG's own per-socket queue depth limit (socket.c, pub0.c, sub0.c in 1.5). */
#define RPC_NNG_MAX_QUEUE 8192

/* How quickly a dialer retries a peer that is down or restarting. */
#define RPC_RECONNECT_MIN_MS 10
#define RPC_RECONNECT_MAX_MS 250

/* Maps an NNG error (NNG_E*, possibly NNG_ESYSERR|errno) to a negative errno. */
int rpc_errno_from_nng(int rv);

/* Sets the options every dialing socket of this layer shares. */
int rpc_socket_dial_opts(nng_socket sock);

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t rpc_clock_ms(void);

/*
 * Test hook: advances the publisher's sequence by @n without sending, so the
 * next event shows a gap of @n to its subscribers.
 */
void rpc_pub_skip_seq(struct rpc_pub *p, uint64_t n);
/* Test hook: the publisher_id chosen at rpc_pub_open. */
uint64_t rpc_pub_id(const struct rpc_pub *p);

#endif
