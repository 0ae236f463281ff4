/* SPDX-License-Identifier: GPL-2.0-only */
/* The fault service tests' first step: does this host serve shmem MISSING faults at all? */
#ifndef CLEAVE_TEST_FAULT_PROBE_H
#define CLEAVE_TEST_FAULT_PROBE_H

#include "vcpu-proc/fault.h"

/*
 * Starts and stops a fault service with @src (NULL: none) on an empty
 * region table: 0 when it works, else prints why on stdout and returns
 * 77, meson's "skipped" exit status.
 */
int fault_probe_or_skip(const struct fault_source *src);

#endif
