/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guest->host "ucall" ABI shared by the embedded guests and vcpu-proc
 * (after the KVM selftests' ucall).  A vCPU fills its own struct ucall in
 * guest RAM and does a 32-bit `out` of the struct's guest-physical address
 * (below 4 GiB) to UCALL_PORT.  vcpu-proc reads the struct from RAM during
 * the KVM_EXIT_IO and the vCPU continues when it re-enters.  Under QEMU the
 * port is unassigned and the write is ignored, so the same guest runs there.
 */
#ifndef CLEAVE_GUEST_UCALL_H
#define CLEAVE_GUEST_UCALL_H

#include <stdint.h>

#define UCALL_PORT 0x1000
/* isa-debug-exit: a write of V powers off; QEMU exits with (V << 1) | 1. */
#define DEBUG_EXIT_PORT	 0xf4
#define SERIAL_COM1_PORT 0x3f8

enum ucall_cmd {
	UCALL_NONE = 0,
	UCALL_SYNC = 1,	  /* progress: args[0..] are test-defined values */
	UCALL_ASSERT = 2, /* failure: text = "file:line: expr", args[0] = line */
	UCALL_DONE = 3,	  /* test finished: args[0] = 0 ok, else failure count */
	UCALL_WRITES =
		4, /* guest wrote [args[0], args[0] + args[1]) (gpa, bytes), generation args[2] */
	UCALL_IMAGE =
		5, /* guest's own RAM [args[0], args[0] + args[1]): image, stacks, page tables */
};

#define UCALL_NR_ARGS 6
#define UCALL_TEXT    128

struct ucall {
	uint64_t cmd; /* enum ucall_cmd */
	uint64_t cpu; /* vCPU index as the guest numbers it */
	uint64_t args[UCALL_NR_ARGS];
	char text[UCALL_TEXT]; /* NUL-terminated */
};

#endif
