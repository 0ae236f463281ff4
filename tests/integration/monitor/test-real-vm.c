// SPDX-License-Identifier: GPL-2.0-only
/*
 * QMP against real processes: `cleave run` (launcher, cleave-vcpu with the
 * embedded guest, cleave-migrator, cleave-monitor).  Commands and events,
 * the monitor killed and restarted by the launcher (inherited socket, one
 * greeting), queries while the migrator is killed and restarted
 * (docs/INVARIANTS.md, invariant 2), migrate_cancel while the migrator
 * restarts, a live migration with `cleave migrate`, and quit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "tests/util/cleave-run.h"
#include "tests/util/test-util.h"

#define T_MS 5000

static const char *cleave_exe;

struct env {
	struct cleave_run src, dst;
};

/* Guest command line of the VMs vm_start() starts; NULL: the default (idle). */
static const char *vm_append;
/* test_migrator_gone_for_good: the libexec dir the source's launcher uses. */
static char broken_libexec[PATH_MAX];

/* Starts VM @name in a scratch dir of its own; returns once its QMP socket answers. */
static int vm_start(struct cleave_run *vm, const char *name, const char *incoming)
{
	char tag[32];
	const char *argv[16];
	struct qmp_client *c;
	int n = 0, i, ret;

	snprintf(tag, sizeof(tag), "mon-%s", name);
	ret = cleave_run_init(vm, tag);
	if (ret)
		return ret;
	argv[n++] = "--name";
	argv[n++] = name;
	argv[n++] = "-m";
	argv[n++] = "64M";
	/* For telling launcher sandbox problems from monitor problems. */
	if (getenv("CLEAVE_MON_TEST_NO_SANDBOX"))
		argv[n++] = "--no-sandbox";
	if (incoming) {
		argv[n++] = "--incoming";
		argv[n++] = incoming;
	}
	if (vm_append) {
		argv[n++] = "--append";
		argv[n++] = vm_append;
	}
	argv[n] = NULL;
	ret = cleave_run_start(vm, cleave_exe, argv);
	if (ret)
		return ret;
	for (i = 0; i < 500; i++) {
		if (qmp_client_connect(&c, vm->qmp, 1000) == 0) {
			qmp_client_close(c);
			return 0;
		}
		if (cleave_run_wait_exit(vm, 0) >= 0) {
			cleave_run_print_log(vm);
			return -ECHILD;
		}
		usleep(20000);
	}
	cleave_run_print_log(vm);
	return -ETIMEDOUT;
}

/* Waits for `cleave run` to exit; returns its status, or -1 after @ms (then stops it). */
static int vm_wait(struct cleave_run *vm, int ms)
{
	int status = cleave_run_wait_exit(vm, ms);

	if (status < 0) {
		cleave_run_print_log(vm);
		cleave_run_stop(vm);
		return -1;
	}
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));
	int ret;

	assert_non_null(e);
	*state = e;
	ret = vm_start(&e->src, "src", NULL);
	if (ret)
		cleave_run_fini(&e->src); /* no teardown after a failed setup */
	assert_int_equal(ret, 0);
	return 0;
}

/* The source runs a dirtying guest (16 MiB rewritten at 2 MiB/s). */
static int env_setup_dirty(void **state)
{
	int ret;

	vm_append = "mode=dirty mib=16 rate=2 cpus=1";
	ret = env_setup(state);
	vm_append = NULL;
	return ret;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	cleave_run_fini(&e->src);
	cleave_run_fini(&e->dst);
	free(e);
	return 0;
}

static struct qmp_client *vm_client(struct cleave_run *vm)
{
	struct qmp_client *c;

	assert_int_equal(qmp_client_connect(&c, vm->qmp, T_MS), 0);
	assert_int_equal(qmp_client_negotiate(c, T_MS), 0);
	return c;
}

/* The reply's "return" or error desc as compact text. */
static char *cmd_text(struct qmp_client *c, const char *cmd, const char *args, int timeout_ms)
{
	json_t *a = args ? json_loads(args, 0, NULL) : NULL, *reply;
	char *text;
	int ret = qmp_client_execute(c, cmd, a, &reply, timeout_ms);

	json_decref(a);
	if (ret)
		return strdup(strerror(-ret));
	if (json_object_get(reply, "error"))
		text = strdup(json_string_value(
			json_object_get(json_object_get(reply, "error"), "desc")));
	else
		text = json_dumps(json_object_get(reply, "return"), JSON_COMPACT | JSON_ENCODE_ANY);
	json_decref(reply);
	return text;
}

#define assert_cmd(c, cmd, args, want)                                                             \
	do {                                                                                       \
		char *got_ = cmd_text(c, cmd, args, T_MS);                                         \
		if (strcmp(got_, want))                                                            \
			fail_msg("%s: got %s want %s", cmd, got_, want);                           \
		free(got_);                                                                        \
	} while (0)

static json_t *wait_event(struct qmp_client *c, const char *name, int timeout_ms)
{
	long long end = test_now_ms() + timeout_ms;
	json_t *m;

	while (test_now_ms() < end) {
		if (qmp_client_recv(c, &m, (int)(end - test_now_ms())))
			return NULL;
		if (!strcmp(json_string_value(json_object_get(m, "event")) ?: "", name))
			return m;
		json_decref(m);
	}
	return NULL;
}

#define RUNNING "{\"running\":true,\"singlestep\":false,\"status\":\"running\"}"
#define PAUSED	"{\"running\":false,\"singlestep\":false,\"status\":\"paused\"}"

static void test_commands_and_events(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = vm_client(&e->src), *w = vm_client(&e->src);
	json_t *ev;
	int i;

	assert_cmd(c, "query-status", NULL, RUNNING);
	assert_cmd(c, "query-name", NULL, "{\"name\":\"src\"}");
	assert_cmd(c, "query-memory-size-summary", NULL,
		   "{\"base-memory\":67108864,\"plugged-memory\":0}");
	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_cmd(c, "migrate_cancel", NULL, "{}");
	/*
	 * A monitor that just started may not have joined the publishers yet
	 * (pub/sub joins asynchronously): stop/cont until a STOP shows.
	 */
	for (i = 0, ev = NULL; i < 20 && !ev; i++) {
		assert_cmd(c, "stop", NULL, "{}");
		ev = wait_event(w, "STOP", 200);
		if (!ev)
			assert_cmd(c, "cont", NULL, "{}");
	}
	assert_non_null(ev);
	json_decref(ev);
	assert_cmd(c, "query-status", NULL, PAUSED);
	assert_cmd(c, "cont", NULL, "{}");
	ev = wait_event(w, "RESUME", 2000);
	assert_non_null(ev);
	json_decref(ev);
	assert_cmd(c, "migrate-set-parameters", "{\"multifd-channels\":3}", "{}");
	assert_cmd(c, "migrate-set-parameters", "{\"multifd-channels\":0}",
		   "Parameter 'multifd_channels' expects a value between 1 and 64");
	{
		char *p = cmd_text(c, "query-migrate-parameters", NULL, T_MS);

		assert_non_null(strstr(p, "\"multifd-channels\":3"));
		free(p);
	}
	assert_cmd(c, "quit", NULL, "{}");
	ev = wait_event(w, "SHUTDOWN", 2000);
	assert_non_null(ev);
	json_decref(ev);
	qmp_client_close(w);
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

/* The launcher restarts a killed monitor on the same socket: one greeting, full service. */
static void test_monitor_restart(void **state)
{
	struct env *e = *state;
	struct qmp_client *c;
	pid_t mon = cleave_run_child_pid(&e->src, "cleave-monitor", 1, T_MS), mon2;

	assert_true(mon > 0);
	assert_int_equal(kill(mon, SIGKILL), 0);
	/* Connect at once: the connection waits in the inherited socket's backlog. */
	assert_int_equal(qmp_client_connect(&c, e->src.qmp, T_MS), 0);
	assert_int_equal(qmp_client_negotiate(c, T_MS), 0);
	assert_cmd(c, "query-status", NULL, RUNNING);
	mon2 = cleave_run_child_pid(&e->src, "cleave-monitor", 2, 1000);
	assert_true(mon2 > 0 && mon2 != mon);
	assert_cmd(c, "quit", NULL, "{}");
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

/* Invariant 2: queries answer while the migrator is dead and after it is back. */
static void test_migrator_restart(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = vm_client(&e->src);
	pid_t mig = cleave_run_child_pid(&e->src, "cleave-migrator", 1, T_MS);
	long long t0;
	char *got;
	int ok = 0;

	assert_true(mig > 0);
	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_int_equal(kill(mig, SIGKILL), 0);
	t0 = test_now_ms();
	got = cmd_text(c, "query-migrate", NULL, T_MS);
	/* Either the restarted migrator answered, or the dead one was reported. */
	if (strcmp(got, "{}") != 0 && strcmp(got, "migrator is not running") != 0)
		fail_msg("query-migrate while the migrator restarts: %s", got);
	free(got);
	assert_true(test_now_ms() - t0 < 2 * 2000 + 1000);
	assert_cmd(c, "query-status", NULL, RUNNING);
	/* The launcher restarts it within a second or two: give it 8 s in all. */
	for (t0 = test_now_ms(); test_now_ms() - t0 < 8000 && !ok;) {
		got = cmd_text(c, "query-migrate", NULL, T_MS);
		ok = !strcmp(got, "{}");
		free(got);
		if (!ok)
			usleep(100000);
	}
	assert_true(ok);
	assert_cmd(c, "quit", NULL, "{}");
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

/* Polls until the launcher has a cleave-migrator other than @old up; returns it or 0. */
static pid_t wait_new_migrator(const struct cleave_run *vm, pid_t old, int ms)
{
	long long end = test_now_ms() + ms;
	pid_t pid = 0;

	while (test_now_ms() < end) {
		pid = cleave_run_child_latest(vm, "cleave-migrator");
		if (pid > 0 && pid != old)
			return pid;
		usleep(10000);
	}
	return 0;
}

/* migrate_cancel right after a SIGKILL of the migrator: {} once the launcher restarted it. */
static void test_cancel_while_migrator_restarts(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = vm_client(&e->src);
	pid_t mig = cleave_run_child_pid(&e->src, "cleave-migrator", 1, T_MS);
	long long t0, took;

	assert_true(mig > 0);
	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_int_equal(kill(mig, SIGKILL), 0);
	t0 = test_now_ms();
	assert_cmd(c, "migrate_cancel", NULL, "{}");
	took = test_now_ms() - t0;
	if (took >= 5000)
		fail_msg("migrate_cancel took %lld ms", took);
	assert_true(wait_new_migrator(&e->src, mig, 2000) > 0);
	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_cmd(c, "quit", NULL, "{}");
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

struct killer {
	const struct cleave_run *vm; /* the cleave run whose migrators die */
	long long until;	     /* test_now_ms() when the killing stops */
	int kills;		     /* SIGKILLs sent */
};

static void *killer_main(void *arg)
{
	struct killer *k = arg;
	pid_t pid;

	while (test_now_ms() < k->until) {
		pid = cleave_run_child_latest(k->vm, "cleave-migrator");
		if (pid > 0 && kill(pid, SIGKILL) == 0)
			k->kills++;
		usleep(5000);
	}
	return NULL;
}

/*
 * A migrator that keeps dying for longer than one RPC deadline (2 s): one
 * CANCEL call alone would fail; the monitor keeps retrying and answers {}
 * once a migrator stays up, within its 5 s.
 */
static void test_cancel_outlasts_one_deadline(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = vm_client(&e->src);
	struct killer k = {.vm = &e->src, .until = test_now_ms() + 2500};
	pthread_t t;
	long long t0, took;
	char *got;

	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_int_equal(pthread_create(&t, NULL, killer_main, &k), 0);
	usleep(100000); /* the first kill has landed */
	t0 = test_now_ms();
	got = cmd_text(c, "migrate_cancel", NULL, 10000);
	took = test_now_ms() - t0;
	pthread_join(t, NULL);
	if (strcmp(got, "{}"))
		fail_msg("migrate_cancel after %lld ms (%d kills): %s", took, k.kills, got);
	free(got);
	assert_true(k.kills >= 2);
	/* Killing stopped 2.4 s in; the next restart waits at most 1 s. */
	assert_true(took >= 2000);
	assert_true(took < 5500);
	assert_cmd(c, "quit", NULL, "{}");
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

/* The resume API against the real migrator: parameter, idle resolve, status. */
static void test_resume_api(void **state)
{
	struct env *e = *state;
	struct qmp_client *c = vm_client(&e->src);
	char *got;

	got = cmd_text(c, "query-migrate-parameters", NULL, T_MS);
	if (!strstr(got, "\"x-reconnect-timeout\":10000"))
		fail_msg("default reconnect timeout: %s", got);
	free(got);
	assert_cmd(c, "migrate-set-parameters", "{\"x-reconnect-timeout\":2500}", "{}");
	got = cmd_text(c, "query-migrate-parameters", NULL, T_MS);
	if (!strstr(got, "\"x-reconnect-timeout\":2500"))
		fail_msg("reconnect timeout not kept: %s", got);
	free(got);
	assert_cmd(c, "migrate-set-parameters", "{\"x-reconnect-timeout\":-1}",
		   "Parameter 'x-reconnect-timeout' expects a non-negative integer");
	/* Nothing to resolve: the migrator's own message comes through. */
	got = cmd_text(c, "x-cleave-migrate-resolve", "{\"run-on\":\"source\"}", T_MS);
	if (strncmp(got, "no switchover with an unknown outcome to resolve", 48))
		fail_msg("resolve on an idle migrator: %s", got);
	free(got);
	assert_cmd(c, "x-cleave-migrate-resolve", "{\"run-on\":\"elsewhere\"}",
		   "Parameter 'run-on' does not accept value 'elsewhere'");
	assert_cmd(c, "query-migrate", NULL, "{}");
	assert_cmd(c, "quit", NULL, "{}");
	qmp_client_close(c);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
}

/*
 * Waits for the listener of the destination migrator: it listens before its
 * RPC server answers, so once query-migrate is answered the socket is up.
 */
static void wait_incoming_ready(struct qmp_client *d)
{
	bool ready = false;
	long long t0;
	char *got;

	for (t0 = test_now_ms(); test_now_ms() - t0 < 8000 && !ready;) {
		got = cmd_text(d, "query-migrate", NULL, T_MS);
		ready = strcmp(got, "migrator is not running") != 0;
		free(got);
		if (!ready)
			usleep(50000);
	}
	assert_true(ready);
}

/* `cleave migrate` of the source VM to @uri, 2 channels (capped if @max_bandwidth); *@out_fd reads
 * its stdout. */
static pid_t migrate_start(struct env *e, const char *uri, const char *max_bandwidth, int *out_fd)
{
	int p[2];
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execl(cleave_exe, cleave_exe, "migrate", "--qmp", e->src.qmp, uri, "--channels",
		      "2", max_bandwidth ? "--max-bandwidth" : NULL, max_bandwidth, NULL);
		_exit(127);
	}
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

/* Reads what `cleave migrate` printed into @out, reaps it; fails unless it completed. */
static void migrate_finish(pid_t pid, int fd, char *out, size_t size)
{
	size_t len = 0;
	ssize_t n;
	int status;

	while (len < size - 1 && (n = read(fd, out + len, size - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !strstr(out, "status: completed"))
		fail_msg("cleave migrate: %s", out);
}

/* After a completed migration: the guest runs at the destination only; both VMs quit. */
static void vms_end_migrated(struct env *e, struct qmp_client *s, struct qmp_client *d)
{
	assert_cmd(d, "query-status", NULL, RUNNING);
	assert_cmd(s, "query-status", NULL,
		   "{\"running\":false,\"singlestep\":false,\"status\":\"postmigrate\"}");
	assert_cmd(s, "quit", NULL, "{}");
	assert_cmd(d, "quit", NULL, "{}");
	qmp_client_close(s);
	qmp_client_close(d);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
	assert_int_equal(vm_wait(&e->dst, 10000), 0);
}

/* cleave migrate between two VMs on loopback. */
static void test_live_migration(void **state)
{
	struct env *e = *state;
	struct qmp_client *s, *d;
	char uri[64], out[4096];
	int fd, port = 40000 + (int)(getpid() % 20000);
	pid_t pid;
	char *got;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	assert_int_equal(vm_start(&e->dst, "dst", uri), 0);
	d = vm_client(&e->dst);
	assert_cmd(d, "query-status", NULL,
		   "{\"running\":false,\"singlestep\":false,\"status\":\"inmigrate\"}");
	wait_incoming_ready(d);
	pid = migrate_start(e, uri, NULL, &fd);
	migrate_finish(pid, fd, out, sizeof(out));
	s = vm_client(&e->src);
	got = cmd_text(s, "query-migrate", NULL, T_MS);
	assert_non_null(strstr(got, "\"status\":\"completed\""));
	assert_non_null(strstr(got, "\"transferred\":"));
	free(got);
	vms_end_migrated(e, s, d);
}

/*
 * Resume (invariant 6) through the real launcher: the source's and then the
 * destination's cleave-migrator are SIGKILLed in the middle of a `cleave
 * migrate` of a dirtying guest; the launchers restart them, the migration
 * completes, and query-migrate on both sides counts the restart.
 */
static void test_migration_survives_migrator_kills(void **state)
{
	struct env *e = *state;
	struct qmp_client *s, *d;
	char uri[64], out[8192];
	int fd, port = 40000 + (int)((getpid() + 7) % 20000);
	pid_t pid, smig, dmig;
	char *got;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	assert_int_equal(vm_start(&e->dst, "dst", uri), 0);
	d = vm_client(&e->dst);
	wait_incoming_ready(d);
	s = vm_client(&e->src);
	/* 16 MiB and more at 8 MB/s: a few seconds to kill in. */
	pid = migrate_start(e, uri, "8000000", &fd);
	usleep(700000);
	smig = cleave_run_child_latest(&e->src, "cleave-migrator");
	assert_true(smig > 0);
	assert_int_equal(kill(smig, SIGKILL), 0);
	usleep(600000);
	dmig = cleave_run_child_latest(&e->dst, "cleave-migrator");
	assert_true(dmig > 0);
	assert_int_equal(kill(dmig, SIGKILL), 0);
	migrate_finish(pid, fd, out, sizeof(out));
	got = cmd_text(s, "query-migrate", NULL, T_MS);
	if (!strstr(got, "\"status\":\"completed\"") || !strstr(got, "\"x-cleave-restarts\":1"))
		fail_msg("source query-migrate: %s", got);
	free(got);
	got = cmd_text(d, "query-migrate", NULL, T_MS);
	if (!strstr(got, "\"status\":\"completed\"") || !strstr(got, "\"x-cleave-restarts\":1"))
		fail_msg("destination query-migrate: %s", got);
	free(got);
	vms_end_migrated(e, s, d);
}

/*
 * @dir/libexec for CLEAVE_LIBEXEC_DIR: links to the real children, but a
 * copy of cleave-migrator, so that replacing it there replaces what the
 * launcher starts next (the jail binds the binary's canonical path).
 */
static void libexec_make(const char *dir, char *libexec, size_t len)
{
	static const char *const bins[][2] = {{"vcpu-proc", "cleave-vcpu"},
					      {"migrator", "cleave-migrator"},
					      {"monitor", "cleave-monitor"}};
	char build[PATH_MAX], target[PATH_MAX + 64], link[PATH_MAX + 64], *slash;

	assert_non_null(realpath(cleave_exe, build));
	slash = strrchr(build, '/');
	assert_non_null(slash);
	*slash = '\0'; /* build/launcher */
	snprintf(libexec, len, "%s/libexec", dir);
	assert_int_equal(mkdir(libexec, 0700), 0);
	for (size_t i = 0; i < sizeof(bins) / sizeof(bins[0]); i++) {
		snprintf(target, sizeof(target), "%s/../%s/%s", build, bins[i][0], bins[i][1]);
		snprintf(link, sizeof(link), "%s/%s", libexec, bins[i][1]);
		if (strcmp(bins[i][1], "cleave-migrator")) {
			assert_int_equal(symlink(target, link), 0);
		} else {
			char cmd[3 * PATH_MAX];

			snprintf(cmd, sizeof(cmd), "cp '%s' '%s'", target, link);
			assert_int_equal(system(cmd), 0);
		}
	}
}

/*
 * The source's migrator dies in the switchover (guest paused) and its
 * replacement cannot even start (a broken binary): once the launcher gives
 * up restarting it, the migration ends and the source guest runs again.
 */
static int env_setup_broken_migrator(void **state)
{
	char dir[64], libexec[PATH_MAX];
	int ret;

	snprintf(dir, sizeof(dir), "/tmp/cleave-mon-lx-XXXXXX");
	assert_non_null(mkdtemp(dir));
	libexec_make(dir, libexec, sizeof(libexec));
	setenv("CLEAVE_LIBEXEC_DIR", libexec, 1);
	/* Paused for 5 s after the source pauses: the kill lands in the switchover. */
	setenv("CLEAVE_MIG_TEST_HOOKS", "switchover_delay_ms=5000", 1);
	ret = env_setup_dirty(state);
	unsetenv("CLEAVE_LIBEXEC_DIR");
	unsetenv("CLEAVE_MIG_TEST_HOOKS");
	snprintf(broken_libexec, sizeof(broken_libexec), "%s", libexec);
	return ret;
}

static void test_migrator_gone_for_good(void **state)
{
	struct env *e = *state;
	struct qmp_client *s, *d;
	char uri[64], args[96], path[PATH_MAX + 32], tmp[PATH_MAX + 32];
	int port = 40000 + (int)((getpid() + 13) % 20000);
	long long t0;
	bool paused = false, running = false;
	pid_t mig;
	FILE *f;
	char *got;

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	assert_int_equal(vm_start(&e->dst, "dst", uri), 0);
	d = vm_client(&e->dst);
	wait_incoming_ready(d);
	s = vm_client(&e->src);
	snprintf(args, sizeof(args), "{\"uri\":\"%s\"}", uri);
	assert_cmd(s, "migrate", args, "{}");
	for (t0 = test_now_ms(); test_now_ms() - t0 < 15000 && !paused;) {
		got = cmd_text(s, "query-migrate", NULL, T_MS);
		paused = strstr(got, "\"status\":\"device\"") != NULL;
		free(got);
		if (!paused)
			usleep(20000);
	}
	assert_true(paused);
	/* A binary that fails at once takes the migrator's place (a new inode, as an
	 * upgrade would), then the migrator dies. */
	snprintf(tmp, sizeof(tmp), "%s/cleave-migrator.new", broken_libexec);
	snprintf(path, sizeof(path), "%s/cleave-migrator", broken_libexec);
	f = fopen(tmp, "w");
	assert_non_null(f);
	fputs("#!/bin/sh\nexit 1\n", f);
	fclose(f);
	assert_int_equal(chmod(tmp, 0755), 0);
	assert_int_equal(rename(tmp, path), 0);
	mig = cleave_run_child_latest(&e->src, "cleave-migrator");
	assert_true(mig > 0);
	assert_int_equal(kill(mig, SIGKILL), 0);
	/* 10 restarts (50 ms doubling to 1 s: ~6.5 s), then the launcher ends the migration. */
	for (t0 = test_now_ms(); test_now_ms() - t0 < 20000 && !running;) {
		got = cmd_text(s, "query-status", NULL, T_MS);
		running = !strcmp(got, RUNNING);
		free(got);
		if (!running)
			usleep(100000);
	}
	if (!running)
		fail_msg("the source guest stayed paused after the launcher gave the migrator up");
	assert_true(test_now_ms() - t0 > 3000); /* not before the launcher gave up */
	assert_cmd(s, "query-migrate", NULL, "migrator is not running");
	assert_cmd(d, "query-status", NULL,
		   "{\"running\":false,\"singlestep\":false,\"status\":\"inmigrate\"}");
	assert_cmd(s, "quit", NULL, "{}");
	assert_cmd(d, "quit", NULL, "{}");
	qmp_client_close(s);
	qmp_client_close(d);
	assert_int_equal(vm_wait(&e->src, 10000), 0);
	assert_int_equal(vm_wait(&e->dst, 10000), 0);
}

static int env_teardown_broken_migrator(void **state)
{
	char cmd[PATH_MAX + 32], *slash = strrchr(broken_libexec, '/');

	if (slash && !strncmp(broken_libexec, "/tmp/cleave-mon-lx-", 19)) {
		*slash = '\0';
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", broken_libexec);
		if (system(cmd) != 0)
			fprintf(stderr, "could not remove %s\n", broken_libexec);
	}
	return env_teardown(state);
}

int main(int argc, char **argv)
{
	/* Two groups, two meson tests: restarts depend on the launcher's supervision. */
	const struct CMUnitTest basic[] = {
		cmocka_unit_test_setup_teardown(test_commands_and_events, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_live_migration, env_setup, env_teardown),
	};
	const struct CMUnitTest restarts[] = {
		cmocka_unit_test_setup_teardown(test_monitor_restart, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_migrator_restart, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_while_migrator_restarts, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cancel_outlasts_one_deadline, env_setup,
						env_teardown),
	};
	/* Needs the migrator's resume support (METHOD_RESOLVE, reconnect_timeout). */
	const struct CMUnitTest resume[] = {
		cmocka_unit_test_setup_teardown(test_resume_api, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_migration_survives_migrator_kills,
						env_setup_dirty, env_teardown),
		cmocka_unit_test_setup_teardown(test_migrator_gone_for_good,
						env_setup_broken_migrator,
						env_teardown_broken_migrator),
	};

	if (argc < 3 || (strcmp(argv[2], "basic") && strcmp(argv[2], "restarts") &&
			 strcmp(argv[2], "resume"))) {
		fprintf(stderr, "usage: %s PATH-TO-cleave basic|restarts|resume\n", argv[0]);
		return 2;
	}
	test_require_kvm();
	if (!strcmp(argv[2], "resume"))
		test_require_fault_injection(); /* a kill held in the switchover window */
	cleave_exe = argv[1];
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(argv[2], "basic"))
		return cmocka_run_group_tests_name("real-vm-basic", basic, NULL, NULL);
	if (!strcmp(argv[2], "resume"))
		return cmocka_run_group_tests_name("real-vm-resume", resume, NULL, NULL);
	return cmocka_run_group_tests_name("real-vm-restarts", restarts, NULL, NULL);
}
