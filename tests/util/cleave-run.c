// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/util/cleave-run.h"
#include "tests/util/test-util.h"

#define POLL_MS 20

int cleave_run_init(struct cleave_run *run, const char *tag)
{
	memset(run, 0, sizeof(*run));
	if ((size_t)snprintf(run->dir, sizeof(run->dir), "/tmp/cleave-%s-XXXXXX", tag) >=
	    sizeof(run->dir)) {
		run->dir[0] = '\0';
		return -ENAMETOOLONG;
	}
	if (!mkdtemp(run->dir)) {
		run->dir[0] = '\0';
		return -errno;
	}
	snprintf(run->log, sizeof(run->log), "%s/cleave.log", run->dir);
	snprintf(run->serial, sizeof(run->serial), "%s/serial", run->dir);
	snprintf(run->state, sizeof(run->state), "%s/state", run->dir);
	snprintf(run->qmp, sizeof(run->qmp), "%s/qmp.sock", run->dir);
	return 0;
}

unsigned int cleave_run_count(const char *s, const char *sub)
{
	unsigned int n = 0;

	while ((s = strstr(s, sub))) {
		n++;
		s += strlen(sub);
	}
	return n;
}

void cleave_run_print_log(const struct cleave_run *run)
{
	char *log = test_file_read(run->log);

	fprintf(stderr, "cleave log (%s):\n%s\n", run->log, log);
	free(log);
}

bool cleave_run_pid_running(pid_t pid)
{
	char path[64], buf[512];
	bool running;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	running = fgets(buf, sizeof(buf), f) && !strstr(buf, ") Z ") && !strstr(buf, ") X ");
	fclose(f);
	return running;
}

/* Adds the children logged so far to run->seen. */
static void cleave_run_scan(struct cleave_run *run)
{
	char *log = test_file_read(run->log), *p = log, *end;
	struct cleave_run_child c;
	unsigned int i;

	while ((p = strstr(p, "started cleave-"))) {
		p += strlen("started ");
		end = strstr(p, " pid ");
		if (!end)
			break;
		snprintf(c.name, sizeof(c.name), "%.*s", (int)(end - p), p);
		c.pid = (pid_t)atoi(end + strlen(" pid "));
		for (i = 0; i < run->nr_seen && run->seen[i].pid != c.pid; i++)
			;
		if (i == run->nr_seen && run->nr_seen < CLEAVE_RUN_MAX_SEEN)
			run->seen[run->nr_seen++] = c;
		p = end;
	}
	free(log);
}

int cleave_run_start(struct cleave_run *run, const char *cleave_bin, const char *const *args)
{
	char serial_opt[112], qmp_opt[112];
	const char *argv[40];
	int argc = 0, fd;

	snprintf(serial_opt, sizeof(serial_opt), "file:%s", run->serial);
	snprintf(qmp_opt, sizeof(qmp_opt), "unix:%s", run->qmp);
	argv[argc++] = cleave_bin;
	argv[argc++] = "run";
	argv[argc++] = "--serial";
	argv[argc++] = serial_opt;
	argv[argc++] = "--state-dir";
	argv[argc++] = run->state;
	argv[argc++] = "--qmp";
	argv[argc++] = qmp_opt;
	while (args && *args) {
		if (argc == (int)(sizeof(argv) / sizeof(argv[0])) - 1)
			return -E2BIG;
		argv[argc++] = *args++;
	}
	argv[argc] = NULL;

	run->pid = fork();
	if (run->pid < 0) {
		run->pid = 0;
		return -errno;
	}
	if (run->pid == 0) {
		/* Its own process group, so a test can Ctrl-C it like a terminal. */
		setpgid(0, 0);
		/* A test killed by its timeout must not leave a VM behind. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		/* A test may ignore SIGPIPE; cleave starts with the default. */
		signal(SIGPIPE, SIG_DFL);
		fd = open(run->log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
		if (fd < 0 || dup2(fd, STDERR_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0)
			_exit(126);
		execv(cleave_bin, (char **)argv);
		_exit(127);
	}
	return 0;
}

/* Reaps cleave if it exited; true once it has (or was never started). */
static bool cleave_run_reaped(struct cleave_run *run)
{
	if (run->pid <= 0)
		return true;
	if (waitpid(run->pid, &run->status, WNOHANG) != run->pid)
		return false;
	run->pid = 0;
	return true;
}

int cleave_run_wait_exit(struct cleave_run *run, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;

	while (!cleave_run_reaped(run)) {
		if (test_now_ms() >= deadline)
			return -ETIMEDOUT;
		test_sleep_ms(POLL_MS);
	}
	return run->status;
}

int cleave_run_stop(struct cleave_run *run)
{
	int ret;

	if (run->pid <= 0)
		return run->status;
	kill(run->pid, SIGTERM);
	ret = cleave_run_wait_exit(run, 10000);
	if (ret != -ETIMEDOUT)
		return ret;
	fprintf(stderr, "cleave pid %d ignored SIGTERM for 10 s: SIGKILL\n", (int)run->pid);
	kill(run->pid, SIGKILL);
	waitpid(run->pid, &run->status, 0);
	run->pid = 0;
	return run->status;
}

char *cleave_run_wait_log(struct cleave_run *run, const char *what, unsigned int count,
			  int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	char *log;

	for (;;) {
		log = test_file_read(run->log);
		if (cleave_run_count(log, what) >= count)
			return log;
		if (cleave_run_reaped(run)) {
			fprintf(stderr, "cleave log:\n%s\n", log);
			fprintf(stderr, "cleave exited (status 0x%x) before logging \"%s\" (x%u)\n",
				run->status, what, count);
			break;
		}
		if (test_now_ms() > deadline) {
			fprintf(stderr, "cleave log:\n%s\n", log);
			fprintf(stderr, "no \"%s\" (x%u) in cleave's log within %d ms\n", what,
				count, timeout_ms);
			break;
		}
		free(log);
		test_sleep_ms(POLL_MS);
	}
	free(log);
	return NULL;
}

pid_t cleave_run_child_pid(struct cleave_run *run, const char *name, unsigned int nth,
			   int timeout_ms)
{
	char what[64], *log, *p;
	unsigned int i;
	pid_t pid;

	snprintf(what, sizeof(what), "started %s pid ", name);
	log = cleave_run_wait_log(run, what, nth, timeout_ms);
	if (!log)
		return run->pid ? -ETIMEDOUT : -ECHILD;
	for (p = log, i = 0; i < nth; i++)
		p = strstr(p, what) + strlen(what);
	pid = (pid_t)atoi(p);
	free(log);
	cleave_run_scan(run);
	return pid;
}

pid_t cleave_run_child_latest(const struct cleave_run *run, const char *name)
{
	char what[64], *log, *p;
	pid_t pid = 0;

	snprintf(what, sizeof(what), "started %s pid ", name);
	log = test_file_read(run->log);
	for (p = log; (p = strstr(p, what)); p += strlen(what))
		pid = (pid_t)atoi(p + strlen(what));
	free(log);
	return pid;
}

const struct cleave_run_child *cleave_run_survivor(struct cleave_run *run, int timeout_ms)
{
	int64_t deadline = test_now_ms() + timeout_ms;
	unsigned int i;

	cleave_run_scan(run);
	for (i = 0; i < run->nr_seen; i++) {
		/* PR_SET_PDEATHSIG delivers a SIGKILL: give it a moment to land. */
		while (cleave_run_pid_running(run->seen[i].pid) && test_now_ms() < deadline)
			test_sleep_ms(POLL_MS);
		if (cleave_run_pid_running(run->seen[i].pid))
			return &run->seen[i];
	}
	return NULL;
}

void cleave_run_fini(struct cleave_run *run)
{
	unsigned int i;

	if (run->pid > 0) {
		fprintf(stderr, "cleave pid %d still running at teardown\n", (int)run->pid);
		cleave_run_print_log(run);
		cleave_run_stop(run);
	}
	if (!run->dir[0])
		return;
	/* PR_SET_PDEATHSIG kills them; this is only for a broken launcher. */
	cleave_run_scan(run);
	for (i = 0; i < run->nr_seen; i++)
		if (cleave_run_pid_running(run->seen[i].pid))
			kill(run->seen[i].pid, SIGKILL);
	if (getenv("CLEAVE_TEST_KEEP")) {
		fprintf(stderr, "kept %s\n", run->dir);
	} else {
		if (test_dir_remove(run->dir))
			fprintf(stderr, "could not remove %s\n", run->dir);
	}
	run->dir[0] = '\0';
}
