/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Shorthands for the policy tables (sandbox/policy-*.c) and the tables
 * several processes share (policy-common.c).
 */
#ifndef CLEAVE_SANDBOX_POLICY_INTERNAL_H
#define CLEAVE_SANDBOX_POLICY_INTERNAL_H

#include "sandbox/sandbox.h"

/*
 * int arguments are compared on their low 32 bits only: the upper half of
 * the register is not defined by the ABI for an int.
 */
#define ARG_EQ32(i, v)                                                                             \
	{                                                                                          \
		.index = (i), .op = SANDBOX_MASKED_EQ, .mask = 0xffffffffULL, .value = (v)         \
	}
#define ARG_MASK(i, m, v)                                                                          \
	{                                                                                          \
		.index = (i), .op = SANDBOX_MASKED_EQ, .mask = (m), .value = (v)                   \
	}
#define ARG_EQ(i, v)                                                                               \
	{                                                                                          \
		.index = (i), .op = SANDBOX_EQ, .value = (v)                                       \
	}

/* tgkill's first argument is replaced by the caller's own pid at install. */
#define SANDBOX_SELF_PID ((uint64_t)-2)

#define ALLOW(n, why)                                                                              \
	{                                                                                          \
		.syscall = (n), .action = SANDBOX_ALLOW, .reason = (why)                           \
	}
#define ALLOW_IF(n, a, why)                                                                        \
	{                                                                                          \
		.syscall = (n), .action = SANDBOX_ALLOW, .nr_args = 1, .args = {a},                \
		.reason = (why)                                                                    \
	}
#define ALLOW_IF2(n, a, b, why)                                                                    \
	{                                                                                          \
		.syscall = (n), .action = SANDBOX_ALLOW, .nr_args = 2, .args = {a, b},             \
		.reason = (why)                                                                    \
	}
#define FAIL(n, act, why)                                                                          \
	{                                                                                          \
		.syscall = (n), .action = (act), .reason = (why)                                   \
	}

/* policy-common.c: what every child needs once init is over. */
extern const struct sandbox_table sandbox_table_base;	      /* threads, time, signals, fd I/O */
extern const struct sandbox_table sandbox_table_mmap;	      /* mmap without PROT_EXEC */
extern const struct sandbox_table sandbox_table_mmap_private; /* ... and without MAP_SHARED */
extern const struct sandbox_table sandbox_table_nng;	      /* NNG ipc:// over AF_UNIX */
extern const struct sandbox_table sandbox_table_sanitizer;    /* extras of ASan/UBSan/TSan */

/* One per process, in policy-<proc>.c. */
extern const struct sandbox_policy sandbox_policy_vcpu;
extern const struct sandbox_policy sandbox_policy_migrator;
extern const struct sandbox_policy sandbox_policy_monitor;
extern const struct sandbox_policy sandbox_policy_launcher;

#endif
