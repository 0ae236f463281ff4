/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The test service used by the proto tests and the rpc benchmark: a method
 * table over vcpu.proto messages, and a way to run it in a child process
 * (fork+exec of the test binary with "serve URL").
 */
#ifndef CLEAVE_TEST_RPC_FIXTURE_H
#define CLEAVE_TEST_RPC_FIXTURE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <sys/types.h>

#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"

/* What the handlers record; shared with the test thread through atomics. */
struct fixture_state {
	atomic_int calls;    /* handler invocations */
	atomic_int inside;   /* handlers running right now */
	atomic_bool overlap; /* two handlers ever ran at once */
};

extern const struct rpc_method fixture_methods[];
extern const size_t fixture_nr_methods;

/* A fresh temporary directory and "ipc://DIR/NAME" inside it. */
int fixture_dir_make(char *dir, size_t dirlen);
void fixture_url(char *url, size_t len, const char *dir, const char *name);
/* Removes the sockets left in @dir and @dir itself. */
void fixture_dir_remove(const char *dir);

/*
 * Starts "/proc/self/exe serve URL" in a child that dies with its parent;
 * returns its pid or a negative errno.
 */
pid_t fixture_server_spawn(const char *url);
/* SIGKILLs and reaps the child started by fixture_server_spawn. */
void fixture_server_kill(pid_t pid);
/* The child's main: serves fixture_methods on @url until killed. */
int fixture_server_main(const char *url);

#endif
