// SPDX-License-Identifier: GPL-2.0-only
/*
 * The real cleave-migrator process, without KVM (its VM peer is only an RPC
 * address it dials): it maps the memory the launcher would give it, and
 * its seccomp filter is in place before anything untrusted can reach it —
 * when its incoming port first accepts a connection, /proc shows
 * Seccomp: 2.  Garbage on that port and RPC queries are then served under
 * the filter, without a refused syscall, and SIGTERM ends it cleanly.
 *
 * Usage: test-migrator-proc CLEAVE_MIGRATOR
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "shm/shm.h"
#include "tests/util/test-util.h"

static const char *migrator_bin;

static unsigned int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	unsigned int port;

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int try_connect(unsigned int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

/* The value of "@key" in /proc/@pid/status, or "" */
static void proc_status(pid_t pid, const char *key, char *val, size_t len)
{
	char path[64], *text, *s;
	size_t n = 0;

	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	text = test_file_read(path);
	val[0] = '\0';
	s = strstr(text, key);
	if (s) {
		s += strlen(key);
		s += strspn(s, " \t");
		while (s[n] && s[n] != '\n' && n + 1 < len) {
			val[n] = s[n];
			n++;
		}
		val[n] = '\0';
	}
	free(text);
}

static void test_filtered_before_untrusted_input(void **state)
{
	const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {4u << 20}};
	char dir[] = "/tmp/cleave-migproc-XXXXXX", log[128], rpc[160], ev[160], vcpu[160];
	char ctl_arg[16], ram_arg[16], uri[64], seccomp[16], nnp[16], err[256], *text;
	struct rpc_client *client = NULL;
	ProtobufCMessage *info = NULL;
	struct shm_region ram;
	struct shm_ctl ctl;
	unsigned int port = free_port();
	int64_t t0;
	int fd = -1, logfd, status;
	pid_t pid;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(shm_ctl_create(&ctl, &layout), 0);
	assert_int_equal(shm_region_create(&ram, 0, layout.size[0]), 0);
	snprintf(log, sizeof(log), "%s/migrator.log", dir);
	snprintf(rpc, sizeof(rpc), "ipc://%s/migrator.rpc", dir);
	snprintf(ev, sizeof(ev), "ipc://%s/migrator.events", dir);
	snprintf(vcpu, sizeof(vcpu), "ipc://%s/vcpu.rpc", dir); /* nobody there: only dialed */
	snprintf(ctl_arg, sizeof(ctl_arg), "%d", ctl.fd);
	snprintf(ram_arg, sizeof(ram_arg), "%d", ram.fd);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", port);
	logfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(logfd >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		fcntl(ctl.fd, F_SETFD, 0);
		fcntl(ram.fd, F_SETFD, 0);
		dup2(logfd, STDERR_FILENO);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		execl(migrator_bin, migrator_bin, "--ctl-fd", ctl_arg, "--ram-fds", ram_arg,
		      "--vcpu-rpc", vcpu, "--rpc", rpc, "--events", ev, "--incoming", uri,
		      (char *)NULL);
		_exit(127);
	}
	close(logfd);
	/* The first moment anything from the network can reach it. */
	for (t0 = test_now_ms(); fd < 0 && test_now_ms() - t0 < 10000; test_sleep_ms(1))
		fd = try_connect(port);
	assert_true(fd >= 0);
	proc_status(pid, "Seccomp:", seccomp, sizeof(seccomp));
	proc_status(pid, "NoNewPrivs:", nnp, sizeof(nnp));
	assert_string_equal(seccomp, "2");
	assert_string_equal(nnp, "1");
	/* A stranger: dropped alone, under the filter. */
	assert_int_equal(write(fd, "GET / HTTP/1.1\r\n\r\n", 18), 18);
	close(fd);
	assert_int_equal(rpc_client_open(&client, rpc), 0);
	assert_int_equal(rpc_call(client, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
				  &cleave__migrator__migration_info__descriptor, &info, 5000, err,
				  sizeof(err)),
			 0);
	rpc_msg_free(info);
	rpc_client_close(client);
	assert_int_equal(kill(pid, 0), 0);
	assert_int_equal(kill(pid, SIGTERM), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	text = test_file_read(log);
	if (!WIFEXITED(status) || WEXITSTATUS(status) || strstr(text, "seccomp: refused"))
		fail_msg("cleave-migrator: status 0x%x, log:\n%s", status, text);
	assert_non_null(strstr(text, "refused: not a cleave migration stream"));
	free(text);
	shm_region_close(&ram);
	shm_ctl_close(&ctl);
	unlink(log);
	rmdir(dir);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_filtered_before_untrusted_input),
	};

	if (argc != 2) {
		fprintf(stderr, "usage: %s CLEAVE_MIGRATOR\n", argv[0]);
		return 2;
	}
	migrator_bin = argv[1];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
