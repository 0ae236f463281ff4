/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A TCP relay on 127.0.0.1 between a migration source and its destination,
 * so a test can cut every connection at a chosen instant without any
 * process dying: a dropped connection must be resumed like a restarted
 * migrator (docs/MIGRATION.md, "Resume").
 *
 * One thread relays every connection (poll, non-blocking, 256 KiB per
 * direction).  A reset seen on one side is passed on as a reset to the
 * other; an EOF as an EOF.  A connection the target refuses is reset.
 */
#ifndef CLEAVE_TEST_TCP_PROXY_H
#define CLEAVE_TEST_TCP_PROXY_H

#include <stdint.h>

struct tcp_proxy;

/*
 * Listens on a free port of 127.0.0.1 (*listen_port) and relays every
 * connection to 127.0.0.1:@target_port, from a thread it starts.
 */
int tcp_proxy_start(struct tcp_proxy **out, unsigned int target_port, unsigned int *listen_port);
/* Stops relaying: joins the thread, closes every socket, frees.  NULL is fine. */
void tcp_proxy_stop(struct tcp_proxy *p);
/*
 * Resets (SO_LINGER {1, 0}, close) both sides of every relayed connection;
 * returns how many connections it cut once they are all closed.  New
 * connections are accepted and relayed as before.
 */
unsigned int tcp_proxy_cut(struct tcp_proxy *p);
/*
 * What a client sends is held back until @ms after its connection was
 * accepted (a slow network); applies at once to every connection, so 0
 * releases whatever is held.  The target's replies are never held.
 */
void tcp_proxy_set_delay(struct tcp_proxy *p, unsigned int ms);
/* Connections accepted so far. */
unsigned int tcp_proxy_accepted(struct tcp_proxy *p);

#endif
