// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave qmp` and `cleave migrate` against a real cleave-monitor with
 * in-test backends: output, exit status, and what reached the backends.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"

static const char *cleave_exe, *monitor_exe;

struct env {
	struct fake_backend *fb;
	struct mon_proc mp;
};

static int env_setup(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(fake_backend_start(&e->fb), 0);
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->fb->dir, e->fb, 0, NULL), 0);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
	mon_proc_fini(&e->mp);
	fake_backend_stop(e->fb);
	free(e);
	return 0;
}

/*
 * Starts `cleave ARGS...` with stdout (and stderr too with @with_err) on a
 * pipe; returns its pid, *out_fd the pipe.
 */
static pid_t cli_spawn_err(const char *const *args, int *out_fd, int with_err)
{
	const char *argv[16];
	int p[2], n = 0;
	pid_t pid;

	argv[n++] = cleave_exe;
	while (*args && n < 15)
		argv[n++] = *args++;
	argv[n] = NULL;
	assert_int_equal(pipe(p), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(p[1], 1);
		if (with_err)
			dup2(p[1], 2);
		close(p[0]);
		close(p[1]);
		execv(cleave_exe, (char *const *)argv);
		_exit(127);
	}
	close(p[1]);
	*out_fd = p[0];
	return pid;
}

static pid_t cli_spawn(const char *const *args, int *out_fd)
{
	return cli_spawn_err(args, out_fd, 0);
}

/* Reads @fd to EOF into @out, reaps @pid; returns its exit status. */
static int cli_collect(pid_t pid, int fd, char *out, size_t cap)
{
	size_t len = 0;
	ssize_t n;
	int status;

	while (len < cap - 1 && (n = read(fd, out + len, cap - 1 - len)) > 0)
		len += (size_t)n;
	out[len] = '\0';
	close(fd);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return WEXITSTATUS(status);
}

/* Runs `cleave ARGS...`; returns its exit status, its stdout in @out. */
static int cli_run(const char *const *args, char *out, size_t cap)
{
	int fd;
	pid_t pid = cli_spawn(args, &fd);

	return cli_collect(pid, fd, out, cap);
}

/* The same with stderr in @out too. */
static int cli_run_err(const char *const *args, char *out, size_t cap)
{
	int fd;
	pid_t pid = cli_spawn_err(args, &fd, 1);

	return cli_collect(pid, fd, out, cap);
}

static void test_cli_qmp(void **state)
{
	struct env *e = *state;
	const char *ok[] = {"qmp", e->mp.path, "query-name", NULL};
	const char *err[] = {"qmp", e->mp.sock, "query-name", "{\"x\":1}", NULL};
	const char *badjson[] = {"qmp", e->mp.path, "query-name", "{x", NULL};
	const char *nosock[] = {"qmp", "/nonexistent/qmp.sock", "query-name", NULL};
	const char *usage[] = {"qmp", e->mp.path, NULL};
	char out[8192];

	assert_int_equal(cli_run(ok, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"name\": \"testvm\""));
	assert_int_equal(cli_run(err, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "Parameter 'x' is unexpected"));
	assert_int_equal(cli_run(badjson, out, sizeof(out)), 2);
	assert_int_equal(cli_run(nosock, out, sizeof(out)), 2);
	assert_int_equal(cli_run(usage, out, sizeof(out)), 2);
}

static void test_cli_events(void **state)
{
	struct env *e = *state;
	const char *args[] = {"qmp", e->mp.path, "--events", NULL};
	struct qmp_client *c;
	char out[8192] = "";
	size_t len = 0;
	json_t *reply;
	int fd, i, status;
	pid_t pid = cli_spawn(args, &fd);

	assert_int_equal(qmp_client_connect(&c, e->mp.sock, 5000), 0);
	assert_int_equal(qmp_client_negotiate(c, 5000), 0);
	for (i = 0; i < 50 && !strstr(out, "\"STOP\""); i++) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		ssize_t n;

		/* STOP comes only when the VM was running: cont first. */
		assert_int_equal(qmp_client_execute(c, "cont", NULL, &reply, 5000), 0);
		json_decref(reply);
		assert_int_equal(qmp_client_execute(c, "stop", NULL, &reply, 5000), 0);
		json_decref(reply);
		if (poll(&pfd, 1, 100) == 1) {
			n = read(fd, out + len, sizeof(out) - 1 - len);
			if (n > 0)
				len += (size_t)n;
			out[len] = '\0';
		}
	}
	assert_non_null(strstr(out, "{\"timestamp\":"));
	assert_non_null(strstr(out, "\"event\":\"STOP\""));
	qmp_client_close(c);
	kill(pid, SIGTERM);
	waitpid(pid, &status, 0);
	close(fd);
}

static void test_cli_migrate(void **state)
{
	struct env *e = *state;
	const char *args[] = {"migrate",
			      "--qmp",
			      e->mp.path,
			      "tcp:127.0.0.1:4444",
			      "--channels",
			      "4",
			      "--max-bandwidth",
			      "1000000",
			      "--downtime-limit",
			      "300",
			      "--reconnect-timeout",
			      "2500",
			      NULL};
	const char *refused[] = {"migrate", "--qmp", e->mp.path, "tcp:127.0.0.1:1", NULL};
	const char *bad[] = {"migrate", "--qmp",	 e->mp.path, "--channels",
			     "0",	"tcp:1.2.3.4:5", NULL};
	char out[8192];

	assert_int_equal(cli_run(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "status: completed"));
	assert_non_null(strstr(out, "downtime: 12 ms"));
	assert_non_null(strstr(out, "transferred: 268435456 bytes"));
	assert_non_null(strstr(out, "throughput: "));
	/* The fake's session survived a restart: the summary says so. */
	assert_non_null(strstr(out, "restarts: 1, resumes: 2, resent: 4096 bytes"));
	pthread_mutex_lock(&e->fb->lock);
	assert_true(e->fb->has_reconnect_timeout);
	assert_int_equal(e->fb->reconnect_timeout, 2500);
	assert_int_equal(e->fb->channels, 4);
	assert_true(e->fb->multifd_cap);
	assert_true(e->fb->events_cap);
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(cli_run(refused, out, sizeof(out)), 1);
	assert_int_equal(cli_run(bad, out, sizeof(out)), 2);
}

/*
 * A save (file:): the guest stays paused unless --then cont runs it on or
 * --then quit ends the VM; --then is refused for a migration (the guest
 * runs on the destination) and for anything but cont and quit.
 */
static void test_cli_migrate_then(void **state)
{
	struct env *e = *state;
	const char *cont[] = {"migrate", "--qmp", e->mp.path, "file:/var/snaps/vm.snap",
			      "--then",	 "cont",  NULL};
	const char *quit[] = {"migrate", "--qmp", e->mp.path, "file:/var/snaps/vm.snap",
			      "--then",	 "quit",  NULL};
	const char *tcp[] = {"migrate", "--qmp", e->mp.path, "tcp:127.0.0.1:4444",
			     "--then",	"cont",	 NULL};
	const char *other[] = {"migrate", "--qmp",	  e->mp.path, "file:/var/snaps/vm.snap",
			       "--then",  "system_reset", NULL};
	char out[8192];

	pthread_mutex_lock(&e->fb->lock);
	e->fb->running = false;
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(cli_run_err(cont, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "status: completed"));
	assert_non_null(strstr(out, "the guest runs on"));
	pthread_mutex_lock(&e->fb->lock);
	assert_true(e->fb->running);
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(atomic_load(&e->fb->quits), 0);

	assert_int_equal(cli_run_err(tcp, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "--then is for a save (file:PATH)"));
	assert_int_equal(cli_run_err(other, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "[--then cont|quit]"));

	assert_int_equal(cli_run_err(quit, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "the VM quits"));
	/* The monitor asks vcpu-proc to QUIT after its reply. */
	for (int i = 0; i < 200 && !atomic_load(&e->fb->quits); i++)
		usleep(10000);
	assert_int_equal(atomic_load(&e->fb->quits), 1);
}

/* --reconnect-timeout: only a plain non-negative number of ms; usage names it. */
static void test_cli_migrate_bad_reconnect(void **state)
{
	struct env *e = *state;
	static const char *const bad[] = {"-1", "abc", "", "5x", "99999999999999999999", NULL};
	const char *none[] = {
		"migrate", "--qmp", e->mp.path, "tcp:1.2.3.4:5", "--reconnect-timeout", NULL};
	char out[8192];
	int i;

	for (i = 0; bad[i]; i++) {
		const char *args[] = {
			"migrate", "--qmp", e->mp.path, "tcp:1.2.3.4:5", "--reconnect-timeout",
			bad[i],	   NULL};

		if (cli_run_err(args, out, sizeof(out)) != 2)
			fail_msg("--reconnect-timeout '%s' accepted: %s", bad[i], out);
		assert_non_null(strstr(out, "[--reconnect-timeout MS]"));
	}
	assert_int_equal(cli_run_err(none, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "usage: cleave migrate"));
	/* Nothing reached the migrator: parameters are untouched. */
	pthread_mutex_lock(&e->fb->lock);
	assert_false(e->fb->has_reconnect_timeout);
	assert_false(e->fb->events_cap);
	pthread_mutex_unlock(&e->fb->lock);
}

/* x-switchover-unknown: stop, explain the operator's command, exit 3. */
static void test_cli_migrate_switchover_unknown(void **state)
{
	struct env *e = *state;
	const char *args[] = {"migrate", "--qmp", e->mp.path, "tcp:127.0.0.1:2", NULL};
	char out[8192];

	assert_int_equal(cli_run_err(args, out, sizeof(out)), 3);
	assert_non_null(strstr(out, "status: x-switchover-unknown"));
	assert_non_null(strstr(out, "outcome is unknown"));
	assert_non_null(strstr(out, "x-cleave-migrate-resolve"));
	assert_non_null(strstr(out, "\"run-on\": \"destination\""));
}

/* The migrator killed mid-migration and restarted: cleave migrate waits and completes. */
static void test_cli_migrate_waits_for_restart(void **state)
{
	struct env *e = *state;
	const char *args[] = {"migrate", "--qmp", e->mp.path, "tcp:127.0.0.1:4", NULL};
	char out[8192];
	int fd, i;
	pid_t pid;

	pid = cli_spawn_err(args, &fd, 1);
	for (i = 0; i < 100 && atomic_load(&e->fb->calls) < 5; i++)
		usleep(20000); /* caps, migrate, queries: the migration is under way */
	usleep(200000);
	fake_backend_kill_migrator(e->fb);
	/* Longer than the monitor's 2 s deadline: query-migrate does fail meanwhile. */
	usleep(3000000);
	pthread_mutex_lock(&e->fb->lock);
	snprintf(e->fb->mig_status, sizeof(e->fb->mig_status), "completed");
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(fake_backend_restart_migrator(e->fb), 0);
	if (cli_collect(pid, fd, out, sizeof(out)) != 0)
		fail_msg("cleave migrate did not wait for the restart: %s", out);
	if (!strstr(out, "migrator is not running (waiting for a restart)"))
		fail_msg("no failed query-migrate seen: %s", out);
	assert_non_null(strstr(out, "status: completed"));
}

/* A migrator that stays dead: cleave migrate gives up after reconnect-timeout + grace. */
static void test_cli_migrate_gives_up(void **state)
{
	struct env *e = *state;
	const char *args[] = {
		"migrate", "--qmp", e->mp.path, "tcp:127.0.0.1:4", "--reconnect-timeout",
		"0",	   NULL};
	char out[8192];
	int fd, i;
	pid_t pid;
	long long t0;

	pid = cli_spawn_err(args, &fd, 1);
	for (i = 0; i < 100 && atomic_load(&e->fb->calls) < 5; i++)
		usleep(20000);
	fake_backend_kill_migrator(e->fb);
	t0 = test_now_ms();
	assert_int_equal(cli_collect(pid, fd, out, sizeof(out)), 1);
	/* 5 s of grace (reconnect timeout 0) plus at most one 2 s query deadline. */
	assert_true(test_now_ms() - t0 >= 4500);
	assert_true(test_now_ms() - t0 < 9000);
	assert_non_null(strstr(out, "cleave migrate: query-migrate: migrator is not running\n"));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cli_qmp, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_events, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_then, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_bad_reconnect, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_switchover_unknown, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_waits_for_restart, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_gives_up, env_setup, env_teardown),
	};

	if (argc < 3) {
		fprintf(stderr, "usage: %s PATH-TO-cleave PATH-TO-cleave-monitor\n", argv[0]);
		return 2;
	}
	cleave_exe = argv[1];
	monitor_exe = argv[2];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
