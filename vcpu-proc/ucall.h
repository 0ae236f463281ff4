/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Host side of the guest ucall ABI (guest/ucall.h): fetch a struct ucall
 * from guest RAM with bounds checks and turn it into one parseable log line.
 */
#ifndef CLEAVE_VCPU_UCALL_H
#define CLEAVE_VCPU_UCALL_H

#include <stddef.h>
#include <stdint.h>

#include "guest/ucall.h"
#include "vcpu-proc/region.h"

/*
 * Copies the struct ucall at @gpa out of guest RAM (under the region's read
 * lock).  The copy's text is NUL-terminated and printable whatever the guest
 * wrote.  -EFAULT when [gpa, gpa + sizeof(struct ucall)) is not inside one
 * RAM region, -EINVAL for an unknown command.
 */
int vcpu_ucall_read(struct region_table *t, uint64_t gpa, struct ucall *out);

/*
 * Formats @uc from vCPU @cpu as one line, e.g.
 * "ucall cpu=0 WRITES gpa=0x200000 bytes=4096 gen=3".  Returns the length
 * (truncated to @len - 1 like snprintf).
 */
int vcpu_ucall_format(const struct ucall *uc, unsigned int cpu, char *buf, size_t len);

const char *vcpu_ucall_name(uint64_t cmd);

#endif
