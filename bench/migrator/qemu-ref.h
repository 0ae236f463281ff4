/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU 7.2 as the reference in the migration benches (qemu-ref.c): a
 * stopped microvm (-S) driven over QMP, its RAM image put in place by
 * QEMU's generic loader device.  The migration and snapshot paths do not
 * depend on the accelerator: where there is no /dev/kvm it runs on TCG.
 */
#ifndef CLEAVE_BENCH_QEMU_REF_H
#define CLEAVE_BENCH_QEMU_REF_H

#include <stdbool.h>
#include <sys/types.h>

#include "monitor/qmp-client.h"

#define QEMU_REF_DATA_MIB 256 /* the image of bench-migrator-engine: 1 GiB, 256 MiB of data */

struct qemu_ref {
	pid_t pid;
	struct qmp_client *qmp;
	char sock[160];
};

/* "kvm" or "tcg": what qemu_ref_start() uses on this host. */
const char *qemu_ref_accel(void);
/* QEMU_REF_DATA_MIB of pseudo-random bytes (no zero page, nothing to compress) at @path. */
void qemu_ref_data_file(const char *path);
/*
 * Starts a stopped 1 GiB microvm with its QMP socket @dir/@name.sock and
 * the NULL-terminated extra arguments @extra; returns once QMP answers.
 * Exits the bench on a failure.
 */
void qemu_ref_start(struct qemu_ref *q, const char *dir, const char *name,
		    const char *const *extra);
void qemu_ref_stop(struct qemu_ref *q);
/* Runs @cmd (consumes @args); exits the bench with QEMU's error.  The reply's "return". */
json_t *qemu_ref_cmd(struct qemu_ref *q, const char *cmd, json_t *args);
/* Polls query-migrate until a final status: "completed", or exits with QEMU's error. */
json_t *qemu_ref_wait_migration(struct qemu_ref *q);

#endif
