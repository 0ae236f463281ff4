/* SPDX-License-Identifier: GPL-2.0-only */
/* Runs a real cleave-monitor process for the integration tests and the benchmark. */
#ifndef CLEAVE_TESTS_MONITOR_MON_PROC_H
#define CLEAVE_TESTS_MONITOR_MON_PROC_H

#include <sys/types.h>

struct fake_backend;

struct mon_proc {
	pid_t pid;	 /* 0 when not running */
	char sock[160];	 /* "unix:PATH" of its QMP socket */
	char path[100];	 /* PATH alone */
	int listen_fd;	 /* our listening socket handed over with --qmp-fd, or -1 */
	unsigned nofile; /* if set before start: RLIMIT_NOFILE (soft and hard) of the monitor */
	const char *log_path; /* if set before start: the monitor's stderr, appended to */
};

/*
 * Starts @exe serving a QMP socket in @dir against @fb (NULL: no backends),
 * and waits until it accepts.  With @inherit the test creates the listening
 * socket and passes it by --qmp-fd (kept open in mp->listen_fd for restarts).
 * @extra: additional arguments, NULL-terminated (may be NULL).
 */
int mon_proc_start(struct mon_proc *mp, const char *exe, const char *dir,
		   const struct fake_backend *fb, int inherit, const char *const *extra);
/* SIGTERM (or SIGKILL with @hard), then reaps.  Returns its exit status or -1. */
int mon_proc_stop(struct mon_proc *mp, int hard);
/* Like start, but reuses mp->listen_fd (a restart by the launcher). */
int mon_proc_restart(struct mon_proc *mp, const char *exe, const struct fake_backend *fb,
		     const char *const *extra);
/* Closes what start opened.  Call after stop. */
void mon_proc_fini(struct mon_proc *mp);
/* Is the process still alive (not reaped, not a zombie)? */
int mon_proc_alive(struct mon_proc *mp);

#endif
