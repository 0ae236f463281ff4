/* SPDX-License-Identifier: GPL-2.0-only */
/* Many QMP clients at once against one socket (bench only). */
#ifndef CLEAVE_BENCH_QMP_CROWD_H
#define CLEAVE_BENCH_QMP_CROWD_H

/*
 * @clients connect to the unix socket @path and negotiate; then each runs
 * @calls executions of @cmd back to back, all clients at once.  Prints
 * per-call latency and calls/s under @label.  0 or a negative errno.
 */
int qmp_crowd(const char *label, const char *path, const char *cmd, int clients, int calls);

#endif
