/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A raw migration peer for the engine's error tests: the test thread speaks
 * the wire (proto/wire.proto, migrator/wire.h) by hand over loopback TCP,
 * so it can say what no real peer would.  Every step is checked with
 * cmocka: a helper returns only when its I/O succeeded.
 */
#ifndef CLEAVE_TEST_RAW_PEER_H
#define CLEAVE_TEST_RAW_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "migrator/record.h" /* enum mig_status */

/* Sockets with the raw peer's 3 s I/O deadlines. */
int raw_connect(unsigned int port);
int raw_listen(unsigned int *port);
int raw_accept(int lfd);

/* A source's Hello for one region of @size bytes. */
struct raw_hello {
	uint64_t magic;	     /* WIRE_MAGIC, or a bad one */
	uint32_t version;    /* WIRE_VERSION, or a bad one */
	const uint8_t *sid;  /* 16 bytes */
	uint64_t size;	     /* region 0 at gpa 0 */
	uint32_t channels;   /* multifd connections that follow */
	uint64_t epoch;	     /* > 1: a resume ... */
	uint64_t next_round; /* ... from this round on */
	bool postcopy;	     /* postcopy-ram on at the source */
};

void raw_hello_send(int fd, const struct raw_hello *h);
/*
 * Reads messages up to the next one that is not a keepalive (Progress, an
 * empty PageRequest) and checks its type; an Error's reason goes to
 * @reason (may be NULL).
 */
void raw_expect(int fd, int body, char *reason, size_t len);
/* Channel @index of session @sid: connected, its preamble sent. */
int raw_channel(unsigned int port, unsigned int index, const uint8_t *sid);
/* A packet of @n pages at @offs (flags included); @data_pages pages of 0xab follow. */
void raw_packet(int fd, uint64_t round, const uint64_t *offs, uint32_t n, unsigned int data_pages);
/* SYNC of @round on a channel (FINAL: the channel's last round). */
void raw_sync(int fd, uint64_t round, bool final);
/* Round @round on the main connection. */
void raw_round(int fd, uint64_t round);
/* A destination: accepts the main connection (Hello, HelloAck) and one channel. */
void raw_dest_accept(int lfd, int *fd, int *cfd);

struct tvm;
/*
 * The session of @t (the engine the raw peer talked to) ends within 10 s
 * in @st, its error saying @needle, the record agreeing, and its
 * receivedmap dead whatever happened.
 */
void raw_assert_final(struct tvm *t, enum mig_status st, const char *needle);

#endif
