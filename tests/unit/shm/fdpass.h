/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Descriptor passing over a connected AF_UNIX socket (fdpass.c), for the
 * shm tests: SOCK_SEQPACKET or SOCK_STREAM, received descriptors
 * close-on-exec, none leaked by a failed receive.
 */
#ifndef CLEAVE_TEST_FDPASS_H
#define CLEAVE_TEST_FDPASS_H

#include <stddef.h>

#define FDPASS_MAX_FDS 16

/* Sends @len bytes (at least 1) of @data with @nr_fds descriptors attached. */
int fdpass_send(int sock, const void *data, size_t len, const int *fds, unsigned int nr_fds);
/*
 * Receives exactly @len bytes and exactly @nr_fds descriptors.  Errors:
 * -ECONNRESET (peer closed), -EBADMSG (short message or truncated control
 * data), -ENOMSG (fewer fds than expected; any received are closed).
 */
int fdpass_recv(int sock, void *data, size_t len, int *fds, unsigned int nr_fds);

#endif
