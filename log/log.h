/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The one logger of every cleave process.
 *
 * Lines look like "cleave-migrator[recv/2] message": the process tag is set
 * once in main, the thread tag once per thread.  Quiet by default: debug
 * lines are printed only after log_set_verbose(true) (the -v option).
 */
#ifndef CLEAVE_LOG_H
#define CLEAVE_LOG_H

#include <stdbool.h>

enum log_level {
	LOG_ERR,
	LOG_WARN,
	LOG_INFO,
	LOG_DEBUG,
};

/* Process tag, e.g. "cleave-vcpu"; copied.  Call before any thread starts. */
void log_init(const char *process);
/* Thread tag, e.g. "vcpu/1"; copied into thread-local storage. */
void log_set_thread(const char *thread);
void log_set_verbose(bool verbose);
bool log_verbose(void);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_err(...)   log_msg(LOG_ERR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
