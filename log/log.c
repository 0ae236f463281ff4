// SPDX-License-Identifier: GPL-2.0-only
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log/log.h"

/* Written once in main before threads start; read-only afterwards. */
static char log_process[32] = "cleave";
static bool log_is_verbose;
static __thread char log_thread[24] = "main";

static const char *const log_level_names[] = {
	[LOG_ERR] = "error: ",
	[LOG_WARN] = "warning: ",
	[LOG_INFO] = "",
	[LOG_DEBUG] = "debug: ",
};

void log_init(const char *process)
{
	snprintf(log_process, sizeof(log_process), "%s", process);
}

void log_set_thread(const char *thread)
{
	snprintf(log_thread, sizeof(log_thread), "%s", thread);
}

void log_set_verbose(bool verbose)
{
	log_is_verbose = verbose;
}

bool log_verbose(void)
{
	return log_is_verbose;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (level == LOG_DEBUG && !log_is_verbose)
		return;
	n = snprintf(line, sizeof(line), "%s[%s] %s", log_process, log_thread,
		     log_level_names[level]);
	if (n < 0 || (size_t)n >= sizeof(line))
		return;
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	/* One write per line so lines of concurrent threads never interleave. */
	fprintf(stderr, "%s\n", line);
}
