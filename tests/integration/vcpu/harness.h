/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Runs a real cleave-vcpu for the integration tests: creates the control
 * segment and RAM memfds with shm/, the guest memfd, pipes for the serial
 * output and the log, and fork+execs the binary with those fds, as the
 * launcher does (docs/PROCESSES.md).
 */
#ifndef CLEAVE_TEST_VCPU_HARNESS_H
#define CLEAVE_TEST_VCPU_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"

/* Output of one pipe, accumulated. */
struct vt_stream {
	int fd; /* read end, -1 at EOF */
	char *buf;
	size_t len, cap;
};

struct vt {
	const char *binary; /* cleave-vcpu */
	struct shm_ctl ctl;
	struct shm_region ram[2];
	unsigned int nr_ram;
	int guest_fd;
	struct vt_stream serial, log;
	pid_t pid; /* running cleave-vcpu, 0 if none */
	char dir[64];
	char rpc_url[128], events_url[128];
	char mig_rpc_url[128]; /* the migrator's listener: only the migrator's methods */
	struct rpc_client *rpc;
	bool rpc_ready;		       /* a STATUS got through since the last spawn */
	char last_err[RPC_ERRMSG_LEN]; /* the peer's message of the last failed vt_call */
};

/* Exits 77 (skip) when /dev/kvm is absent. */
void vt_require_kvm(void);
/* RAM below 3 GiB in one region (@high: a second region at 4 GiB). */
int vt_init(struct vt *t, const char *binary, uint64_t ram_size, uint64_t high_size);
void vt_fini(struct vt *t);
int vt_guest_set(struct vt *t, const void *elf, size_t len);
int vt_guest_open(struct vt *t, const char *path);
/* Starts cleave-vcpu; @extra: NULL-terminated additional arguments or NULL. */
int vt_spawn(struct vt *t, unsigned int vcpus, const char *append, bool incoming,
	     const char *const *extra);
/* Waits for the process; 0 with its exit status, -ETIMEDOUT. */
int vt_wait(struct vt *t, int timeout_ms, int *status);
/* SIGKILLs and reaps the process started by vt_spawn. */
void vt_kill(struct vt *t);
/* Reads until @needle appears in @s at or after @from; returns its offset or -1. */
long vt_expect(struct vt *t, struct vt_stream *s, size_t from, const char *needle, int timeout_ms);
/* Reads whatever arrives within @ms. */
void vt_drain(struct vt *t, int ms);
/* Counts occurrences of @needle in @s from @from. */
unsigned int vt_count(const struct vt_stream *s, size_t from, const char *needle);

/* RPC helpers: 0 or negative errno. */
int vt_call(struct vt *t, uint32_t method, const ProtobufCMessage *req,
	    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep);
int vt_status(struct vt *t, Cleave__Vcpu__StatusReply **st);
int vt_simple(struct vt *t, uint32_t method);

uint64_t vt_now_ms(void);

#endif
