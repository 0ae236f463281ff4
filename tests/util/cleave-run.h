/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * One real `cleave run` for an integration test: a scratch dir, the launcher
 * forked with its output in a log, its children found by the log's "started
 * NAME pid N" lines, and a teardown that leaves no process behind.
 *
 * No cmocka here: calls return 0 or a negative errno (printing what they
 * waited for and the log to stderr) and the tests assert.
 */
#ifndef CLEAVE_TEST_CLEAVE_RUN_H
#define CLEAVE_TEST_CLEAVE_RUN_H

#include <stdbool.h>
#include <sys/types.h>

#define CLEAVE_RUN_MAX_SEEN 64

/* A child the launcher logged as started. */
struct cleave_run_child {
	char name[24]; /* "cleave-migrator" */
	pid_t pid;
};

/* One `cleave run` under test. */
struct cleave_run {
	char dir[64];	 /* scratch dir (mkdtemp): everything below lives in it */
	char log[96];	 /* cleave's stdout and stderr, the children's too */
	char serial[96]; /* guest COM1, --serial file: */
	char state[96];	 /* --state-dir (cleave creates and removes it) */
	char qmp[96];	 /* --qmp unix: socket */
	pid_t pid;	 /* cleave, 0 before start and once reaped */
	int status;	 /* cleave's wait status once reaped */
	/* Every child the log named, for the leak check after cleave is gone. */
	struct cleave_run_child seen[CLEAVE_RUN_MAX_SEEN];
	unsigned int nr_seen;
};

/*
 * init: makes the scratch dir /tmp/cleave-@tag-XXXXXX; fini: stops a cleave
 * still running (printing its log: the test ended early), SIGKILLs every
 * child it logged that is still there, then removes the dir (kept if
 * CLEAVE_TEST_KEEP is set).
 * fini is safe on a zeroed struct, after a failed init and twice.
 */
int cleave_run_init(struct cleave_run *run, const char *tag);
void cleave_run_fini(struct cleave_run *run);

/*
 * start: forks `@cleave_bin run --serial --state-dir --qmp` with the scratch
 * paths plus @args (NULL-terminated, may be NULL), in its own process group
 * and with PR_SET_PDEATHSIG, so a test killed by its timeout leaves no VM.
 * The environment is the test's: set CLEAVE_LIBEXEC_DIR before if needed.
 * stop: SIGTERM, up to 10 s for the exit, then SIGKILL; returns the wait
 * status (also when cleave had already exited, 0 if it never started).
 */
int cleave_run_start(struct cleave_run *run, const char *cleave_bin, const char *const *args);
int cleave_run_stop(struct cleave_run *run);

/* cleave's wait status once it exited, -ETIMEDOUT while still running after @timeout_ms. */
int cleave_run_wait_exit(struct cleave_run *run, int timeout_ms);

/*
 * The log once it holds @what @count times (caller frees), NULL after
 * @timeout_ms or if cleave exited before (run->status tells how).
 */
char *cleave_run_wait_log(struct cleave_run *run, const char *what, unsigned int count,
			  int timeout_ms);

/* PID of the @nth (1-based) "started @name pid N" line, waiting up to @timeout_ms; or -errno. */
pid_t cleave_run_child_pid(struct cleave_run *run, const char *name, unsigned int nth,
			   int timeout_ms);
/* PID of the last "started @name pid N" line so far, 0 if none. */
pid_t cleave_run_child_latest(const struct cleave_run *run, const char *name);

/* A child cleave logged that is still running after @timeout_ms, or NULL if all are gone. */
const struct cleave_run_child *cleave_run_survivor(struct cleave_run *run, int timeout_ms);

/* True while @pid exists and is not a zombie. */
bool cleave_run_pid_running(pid_t pid);
/* Occurrences of @sub in @s (log lines, heartbeats). */
unsigned int cleave_run_count(const char *s, const char *sub);
/* Prints the log to stderr, for a failure's post-mortem. */
void cleave_run_print_log(const struct cleave_run *run);

#endif
