// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave qmp` and `cleave migrate` against a real cleave-monitor with
 * in-test backends: output, exit status, and what reached the backends.
 *
 * Over TCP with TLS (docs/QMP.md, "TCP and TLS"), with credentials made at
 * run time: x509 and PSK sessions work, for both subcommands; each refusal
 * (a server certificate of another CA, a wrong host name, a client the
 * server's authz does not list, a wrong PSK key, a PSK identity the client
 * holds no key for, a TLS client on a plaintext port, a server that never
 * answers the handshake) and each wrong use of the options (with a unix
 * socket, x509 and PSK together, a name without its credentials, a missing
 * file) exits 2 with one line naming the cause.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"
#include "tests/util/test-util.h"
#include "tls-certs.h"

#define CLIENT_DN   "CN=qmp-client,O=cleave tests"
#define SERVER_NAME "vm.example"
#define PSK_GOOD    "0123456789abcdef0123456789abcdef"
#define PSK_WRONG   "fedcba9876543210fedcba9876543210"

static const char *cleave_exe, *monitor_exe;

/* Credentials of the group: made once by group_setup. */
static char scratch[64];
static char good[128];		 /* the monitor's CA and server; a client it signed */
static char stranger[128];	 /* another CA's ca-cert.pem, with good's client certificate */
static char server_psk[128];	 /* the monitor's keys.psk */
static char client_psk[128];	 /* the client's: the same keys */
static char client_psk_bad[128]; /* the client's: the right identity, another key */

struct env {
	struct fake_backend *fb;
	struct mon_proc mp;
	char tcp[64]; /* "tcp:127.0.0.1:PORT" when the monitor also serves TLS there */
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

/* A loopback TCP port that was free a moment ago. */
static int free_tcp_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/* The backends and a monitor that also serves QMP on a TCP port with @tls (options). */
static int env_setup_tcp(void **state, const char *const *tls)
{
	struct env *e = calloc(1, sizeof(*e));
	const char *extra[8] = {"--qmp", e->tcp};
	int n = 2;

	assert_non_null(e);
	snprintf(e->tcp, sizeof(e->tcp), "tcp:127.0.0.1:%d", free_tcp_port());
	while (*tls)
		extra[n++] = *tls++;
	assert_int_equal(fake_backend_start(&e->fb), 0);
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->fb->dir, e->fb, 0, extra), 0);
	*state = e;
	return 0;
}

static int env_setup_x509(void **state)
{
	const char *const tls[] = {"--tls-x509-dir", good, NULL};

	return env_setup_tcp(state, tls);
}

/* x509, and only a client named CN=ops may connect. */
static int env_setup_x509_authz(void **state)
{
	const char *const tls[] = {"--tls-x509-dir", good, "--tls-authz", "CN=ops,O=cleave tests",
				   NULL};

	return env_setup_tcp(state, tls);
}

static int env_setup_psk(void **state)
{
	const char *const tls[] = {"--tls-psk-file", server_psk, NULL};

	return env_setup_tcp(state, tls);
}

/* Plaintext TCP on loopback (which the monitor allows), for a TLS client that finds none. */
static int env_setup_plain_tcp(void **state)
{
	const char *const tls[] = {NULL};

	return env_setup_tcp(state, tls);
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

/*
 * --postcopy: postcopy-ram set with the other capabilities, then
 * migrate-start-postcopy right after migrate; refused for a save.
 */
static void test_cli_migrate_postcopy(void **state)
{
	struct env *e = *state;
	const char *args[] = {"migrate",    "--qmp", e->mp.path, "tcp:127.0.0.1:4444",
			      "--postcopy", NULL};
	const char *save[] = {"migrate",    "--qmp", e->mp.path, "file:/var/snaps/vm.snap",
			      "--postcopy", NULL};
	unsigned int starts;
	char out[8192];

	pthread_mutex_lock(&e->fb->lock);
	starts = e->fb->postcopy_starts;
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(cli_run(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "status: completed"));
	pthread_mutex_lock(&e->fb->lock);
	assert_true(e->fb->postcopy_cap);
	assert_int_equal(e->fb->postcopy_starts, starts + 1);
	pthread_mutex_unlock(&e->fb->lock);
	assert_int_equal(cli_run_err(save, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "--postcopy is for a migration to another VM"));
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

/* Runs `cleave ARGS...`, which must exit 2 with @why in one line of its stderr. */
static void expect_refused(const char *const *args, const char *why)
{
	char out[8192];
	int status = cli_run_err(args, out, sizeof(out));

	if (status != 2 || !strstr(out, why))
		fail_msg("exit %d, expected 2 with '%s': %s", status, why, out);
	print_message("%s", out); /* what the operator reads */
}

static void test_cli_tls_x509(void **state)
{
	struct env *e = *state;
	const char *ok[] = {"qmp", "--tls-x509", good, e->tcp, "query-name", NULL};
	/* The certificate carries SERVER_NAME too: the name checked may be given. */
	const char *named[] = {"qmp",	    "--tls-x509", good,		"--tls-hostname",
			       SERVER_NAME, e->tcp,	  "query-name", NULL};
	char out[8192];

	assert_int_equal(cli_run(ok, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"name\": \"testvm\""));
	assert_int_equal(cli_run(named, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"name\": \"testvm\""));
}

/* The client checks the server: its CA, then its name. */
static void test_cli_tls_server_refused(void **state)
{
	struct env *e = *state;
	const char *ca[] = {"qmp", "--tls-x509", stranger, e->tcp, "query-name", NULL};
	const char *name[] = {"qmp",	       "--tls-x509", good,	   "--tls-hostname",
			      "other.example", e->tcp,	     "query-name", NULL};

	expect_refused(ca, "TLS: server certificate refused: The certificate is NOT trusted. The "
			   "certificate issuer is unknown.\n");
	expect_refused(name, "TLS: server certificate refused: The certificate is NOT trusted. "
			     "The name in the certificate does not match the expected.\n");
}

/* The server refuses our certificate after our handshake ended (TLS 1.3): said clearly. */
static void test_cli_tls_authz_refused(void **state)
{
	struct env *e = *state;
	const char *args[] = {"qmp", "--tls-x509", good, e->tcp, "query-name", NULL};
	const char *mig[] = {"migrate", "--qmp", e->tcp, "--tls-x509", good, "tcp:127.0.0.1:4444",
			     NULL};

	expect_refused(args, "TLS: the server refused us (alert: Access was denied)\n");
	expect_refused(mig, "TLS: the server refused us (alert: Access was denied)\n");
	/* Nothing reached the migrator. */
	pthread_mutex_lock(&e->fb->lock);
	assert_false(e->fb->events_cap);
	pthread_mutex_unlock(&e->fb->lock);
}

static void test_cli_tls_psk(void **state)
{
	struct env *e = *state;
	const char *ok[] = {"qmp",	  "--tls-psk", client_psk,   "--tls-psk-identity",
			    "qmp-client", e->tcp,      "query-name", NULL};
	/* Without --tls-psk-identity: QEMU's default identity, "qemu". */
	const char *dflt[] = {"qmp", "--tls-psk", client_psk, e->tcp, "query-name", NULL};
	const char *wrong[] = {"qmp",	     "--tls-psk", client_psk_bad, "--tls-psk-identity",
			       "qmp-client", e->tcp,	  "query-name",	  NULL};
	const char *nokey[] = {"qmp",	 "--tls-psk", client_psk,   "--tls-psk-identity",
			       "nobody", e->tcp,      "query-name", NULL};
	char out[8192];

	assert_int_equal(cli_run(ok, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"name\": \"testvm\""));
	assert_int_equal(cli_run(dflt, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "\"name\": \"testvm\""));
	expect_refused(wrong, "TLS: the server refused us (alert: Illegal parameter) (a wrong key "
			      "for PSK identity 'qmp-client'?)\n");
	expect_refused(nokey, "no key for the PSK identity 'nobody'");
}

/* cleave migrate over TLS, both kinds: the migration completes. */
static void test_cli_tls_migrate(void **state)
{
	struct env *e = *state;
	const char *x509[] = {"migrate",    "--qmp", e->tcp,
			      "--tls-x509", good,    "tcp:127.0.0.1:4444",
			      "--channels", "4",     NULL};
	char out[8192];

	assert_int_equal(cli_run(x509, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "status: completed"));
	pthread_mutex_lock(&e->fb->lock);
	assert_int_equal(e->fb->channels, 4);
	assert_true(e->fb->events_cap);
	pthread_mutex_unlock(&e->fb->lock);
}

static void test_cli_tls_migrate_psk(void **state)
{
	struct env *e = *state;
	const char *args[] = {
		"migrate", "--qmp", e->tcp, "--tls-psk", client_psk, "tcp:127.0.0.1:4444", NULL};
	char out[8192];

	assert_int_equal(cli_run(args, out, sizeof(out)), 0);
	assert_non_null(strstr(out, "status: completed"));
}

/* Wrong uses of the options: refused before anything is sent. */
static void test_cli_tls_usage(void **state)
{
	struct env *e = *state;
	char missing[160];
	const char *unix_qmp[] = {"qmp", "--tls-x509", good, e->mp.sock, "query-name", NULL};
	const char *unix_path[] = {"qmp", "--tls-psk", client_psk, e->mp.path, "query-name", NULL};
	const char *unix_mig[] = {
		"migrate", "--qmp", e->mp.path, "--tls-x509", good, "tcp:127.0.0.1:4444", NULL};
	const char *both[] = {"qmp",	  "--tls-x509", good,	      "--tls-psk",
			      client_psk, e->tcp,	"query-name", NULL};
	const char *host[] = {"qmp", "--tls-hostname", SERVER_NAME, e->tcp, "query-name", NULL};
	const char *ident[] = {
		"migrate", "--qmp", e->tcp, "--tls-psk-identity", "x", "tcp:127.0.0.1:4444", NULL};
	const char *nodir[] = {"qmp", "--tls-x509", missing, e->tcp, "query-name", NULL};

	snprintf(missing, sizeof(missing), "%s/none", scratch);
	expect_refused(unix_qmp, "TLS is for tcp:HOST:PORT; a unix socket carries plaintext QMP");
	expect_refused(unix_path, "TLS is for tcp:HOST:PORT; a unix socket carries plaintext QMP");
	expect_refused(unix_mig, "TLS is for tcp:HOST:PORT; a unix socket carries plaintext QMP");
	expect_refused(both, "--tls-x509 and --tls-psk: give one of them");
	expect_refused(host, "--tls-hostname names what the server's certificate must carry");
	expect_refused(ident, "--tls-psk-identity needs --tls-psk");
	expect_refused(nodir, "/none/ca-cert.pem: No such file or directory");
	pthread_mutex_lock(&e->fb->lock);
	assert_false(e->fb->events_cap);
	pthread_mutex_unlock(&e->fb->lock);
}

/* A TLS client on a plaintext QMP port: the greeting is no ServerHello. */
static void test_cli_tls_plaintext_server(void **state)
{
	struct env *e = *state;
	const char *args[] = {"qmp", "--tls-x509", good, e->tcp, "query-name", NULL};

	expect_refused(args,
		       "TLS handshake: An unexpected TLS packet was received. (no TLS on that "
		       "port?)\n");
}

/* A server that accepts and never answers: the handshake ends at the deadline. */
static void test_cli_tls_handshake_timeout(void **state)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct tls_client_config tls = {.x509_dir = good};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct qmp_client *c = NULL;
	char addr[64], err[256];
	int64_t t0;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(fd, 4), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	snprintf(addr, sizeof(addr), "tcp:127.0.0.1:%d", ntohs(sin.sin_port));
	t0 = test_now_ms();
	assert_int_equal(qmp_client_connect_tls(&c, addr, &tls, 500, err, sizeof(err)), -ETIMEDOUT);
	assert_true(test_now_ms() - t0 >= 450);
	assert_true(test_now_ms() - t0 < 3000);
	assert_null(c);
	assert_string_equal(err, "TLS handshake: timed out");
	close(fd);
}

static int copy_file(const char *from, const char *to)
{
	char *text = test_file_read(from);
	FILE *f = fopen(to, "we");
	int ret = f && text[0] && fputs(text, f) >= 0 ? 0 : -1;

	if (f && fclose(f))
		ret = -1;
	free(text);
	return ret;
}

static int group_setup(void **state)
{
	struct tls_certs c = {.ca_name = "qmp-ca",
			      .server_ip = "127.0.0.1",
			      .server_dns = SERVER_NAME,
			      .client_dn = CLIENT_DN};
	char other[128], from[192], to[192];
	static const char *const mine[] = {"client-cert.pem", "client-key.pem"};

	(void)state;
	if (test_dir_make(scratch, "cli-tls"))
		return -1;
	snprintf(good, sizeof(good), "%s/good", scratch);
	snprintf(other, sizeof(other), "%s/other", scratch);
	snprintf(stranger, sizeof(stranger), "%s/stranger", scratch);
	snprintf(server_psk, sizeof(server_psk), "%s/server.psk", scratch);
	snprintf(client_psk, sizeof(client_psk), "%s/client.psk", scratch);
	snprintf(client_psk_bad, sizeof(client_psk_bad), "%s/client-bad.psk", scratch);
	if (tls_certs_make(good, &c))
		return -1;
	c.ca_name = "other-ca";
	if (tls_certs_make(other, &c) || tls_certs_make(stranger, &c))
		return -1;
	/* stranger: trusts the other CA only, presents a certificate the monitor accepts. */
	for (size_t i = 0; i < 2; i++) {
		snprintf(from, sizeof(from), "%s/%s", good, mine[i]);
		snprintf(to, sizeof(to), "%s/%s", stranger, mine[i]);
		if (copy_file(from, to))
			return -1;
	}
	return tls_psk_make(server_psk, "qmp-client:" PSK_GOOD "\nqemu:" PSK_WRONG "\n") ||
	       tls_psk_make(client_psk, "qmp-client:" PSK_GOOD "\nqemu:" PSK_WRONG "\n") ||
	       tls_psk_make(client_psk_bad, "qmp-client:" PSK_WRONG "\n");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_dir_remove(scratch);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cli_qmp, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_events, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_postcopy, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_then, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_bad_reconnect, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_switchover_unknown, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_waits_for_restart, env_setup,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_migrate_gives_up, env_setup, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_x509, env_setup_x509, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_server_refused, env_setup_x509,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_authz_refused, env_setup_x509_authz,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_psk, env_setup_psk, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_migrate, env_setup_x509, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_migrate_psk, env_setup_psk,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_usage, env_setup_x509, env_teardown),
		cmocka_unit_test_setup_teardown(test_cli_tls_plaintext_server, env_setup_plain_tcp,
						env_teardown),
		cmocka_unit_test(test_cli_tls_handshake_timeout),
	};

	if (argc < 3) {
		fprintf(stderr, "usage: %s PATH-TO-cleave PATH-TO-cleave-monitor\n", argv[0]);
		return 2;
	}
	cleave_exe = argv[1];
	monitor_exe = argv[2];
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
