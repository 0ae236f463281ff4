// SPDX-License-Identifier: GPL-2.0-only
/*
 * query-status round-trip latency over QMP: cleave-monitor (against in-test
 * vcpu-proc/migrator RPC servers) with 1 client, then with 1000 other
 * clients connected, then 1000 clients x 10 calls all at once
 * (qmp-crowd.c), then QEMU 7.2 in the same run (one client: QEMU serves
 * one per socket).
 *
 * usage: bench-qmp-latency CLEAVE-MONITOR [CALLS] [QEMU-BINARY] [GUEST-ELF] [CLEAVE]
 *
 * With CLEAVE (the `cleave` command), also against a real VM: `cleave run`
 * with cleave-vcpu running the embedded guest.
 */
#include <errno.h>
#include <stdbool.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "qmp-crowd.h"
#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"

#define OTHERS 1000
/* All at once: each client runs its calls back to back. */
#define CROWD_CLIENTS 1000
#define CROWD_CALLS   10
static const char *const crowd_cmds[] = {"query-version", "query-status", "query-cpus-fast"};

static long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static int cmp_ll(const void *a, const void *b)
{
	long long x = *(const long long *)a, y = *(const long long *)b;

	return x < y ? -1 : x > y;
}

/* Measures @calls round trips of @cmd; prints median and p99. */
static int measure(const char *label, struct qmp_client *c, const char *cmd, int calls)
{
	long long *lat = calloc((size_t)calls, sizeof(*lat)), t0;
	json_t *reply;
	int i, ret;

	if (!lat)
		return -ENOMEM;
	for (i = 0; i < 50; i++) { /* warm-up */
		ret = qmp_client_execute(c, cmd, NULL, &reply, 5000);
		if (ret)
			goto out;
		json_decref(reply);
	}
	for (i = 0; i < calls; i++) {
		t0 = now_ns();
		ret = qmp_client_execute(c, cmd, NULL, &reply, 5000);
		lat[i] = now_ns() - t0;
		if (ret)
			goto out;
		if (!json_object_get(reply, "return")) {
			json_decref(reply);
			ret = -EPROTO;
			goto out;
		}
		json_decref(reply);
	}
	qsort(lat, (size_t)calls, sizeof(*lat), cmp_ll);
	printf("%-14s %-48s calls=%d median=%.1f us p99=%.1f us max=%.1f us\n", cmd, label, calls,
	       (double)lat[calls / 2] / 1e3, (double)lat[calls * 99 / 100] / 1e3,
	       (double)lat[calls - 1] / 1e3);
	fflush(stdout);
	ret = 0;
out:
	if (ret)
		fprintf(stderr, "%s: %s: %s\n", label, cmd, strerror(-ret));
	free(lat);
	return ret;
}

static int bench_cleave(const char *exe, int calls)
{
	static const char *const extra[] = {NULL};
	struct qmp_client **others = calloc(OTHERS, sizeof(*others));
	struct fake_backend *fb = NULL;
	struct qmp_client *c = NULL;
	struct mon_proc mp = {0};
	int i, ret;

	ret = fake_backend_start(&fb);
	if (ret || !others)
		goto out;
	ret = mon_proc_start(&mp, exe, fb->dir, fb, 0, extra);
	if (ret)
		goto out_backend;
	ret = qmp_client_connect(&c, mp.sock, 5000);
	if (!ret)
		ret = qmp_client_negotiate(c, 5000);
	if (!ret)
		ret = measure("cleave-monitor, 1 client", c, "query-status", calls);
	if (!ret)
		ret = measure("cleave-monitor, 1 client", c, "query-cpus-fast", calls);
	if (!ret)
		ret = measure("cleave-monitor, 1 client", c, "query-version", calls);
	for (i = 0; !ret && i < OTHERS; i++) {
		ret = qmp_client_connect(&others[i], mp.sock, 5000);
		if (!ret)
			ret = qmp_client_negotiate(others[i], 5000);
	}
	if (!ret)
		ret = measure("cleave-monitor, 1 client + 1000 others connected", c, "query-status",
			      calls);
	if (!ret)
		ret = measure("cleave-monitor, 1 client + 1000 others connected", c,
			      "query-version", calls);
	for (i = 0; i < OTHERS; i++)
		qmp_client_close(others[i]);
	for (i = 0; !ret && i < 3; i++)
		ret = qmp_crowd("cleave-monitor", mp.path, crowd_cmds[i], CROWD_CLIENTS,
				CROWD_CALLS);
	qmp_client_close(c);
	mon_proc_stop(&mp, 0);
	mon_proc_fini(&mp);
out_backend:
	fake_backend_stop(fb);
out:
	free(others);
	if (ret)
		fprintf(stderr, "cleave-monitor benchmark: %s\n", strerror(-ret));
	return ret;
}

/* Measures @calls round trips of @cmd with 1 client, then with OTHERS more connected. */
static int bench_clients(const char *label, const char *sock, const char *cmd, int calls)
{
	struct qmp_client **others = calloc(OTHERS, sizeof(*others));
	struct qmp_client *c = NULL;
	char text[128];
	int i, ret;

	if (!others)
		return -ENOMEM;
	ret = qmp_client_connect(&c, sock, 5000);
	if (!ret)
		ret = qmp_client_negotiate(c, 5000);
	snprintf(text, sizeof(text), "%s, 1 client", label);
	if (!ret)
		ret = measure(text, c, cmd, calls);
	for (i = 0; !ret && i < OTHERS; i++) {
		ret = qmp_client_connect(&others[i], sock, 5000);
		if (!ret)
			ret = qmp_client_negotiate(others[i], 5000);
	}
	snprintf(text, sizeof(text), "%s, 1 client + 1000 others connected", label);
	if (!ret)
		ret = measure(text, c, cmd, calls);
	for (i = 0; i < OTHERS; i++)
		qmp_client_close(others[i]);
	if (!ret)
		ret = qmp_crowd(label, sock, cmd, CROWD_CLIENTS, CROWD_CALLS);
	if (c && !strcmp(label, "cleave run (real vcpu-proc)")) {
		json_t *reply;

		if (qmp_client_execute(c, "quit", NULL, &reply, 5000) == 0)
			json_decref(reply);
	}
	qmp_client_close(c);
	free(others);
	return ret;
}

static int bench_real_vm(const char *cleave, int calls)
{
	char dir[] = "/tmp/cleave-bench-vm-XXXXXX", sock[128], qmp[140], st[128], ser[140];
	struct qmp_client *c;
	int i, ret = -ETIMEDOUT, status;
	pid_t pid;

	if (!mkdtemp(dir))
		return -errno;
	snprintf(sock, sizeof(sock), "%s/q.sock", dir);
	snprintf(qmp, sizeof(qmp), "unix:%s", sock);
	snprintf(st, sizeof(st), "%s/state", dir);
	snprintf(ser, sizeof(ser), "file:%s/serial", dir);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execl(cleave, cleave, "run", "--name", "bench", "-m", "64M", "--qmp", qmp,
		      "--state-dir", st, "--serial", ser, NULL);
		_exit(127);
	}
	for (i = 0; i < 250; i++) {
		if (qmp_client_connect(&c, sock, 1000) == 0) {
			qmp_client_close(c);
			ret = 0;
			break;
		}
		usleep(20000);
	}
	if (!ret) {
		ret = bench_clients("cleave run (real vcpu-proc)", sock, "query-status", calls);
	}
	/* quit was sent by bench_clients; make sure it is gone either way. */
	for (i = 0; i < 250 && waitpid(pid, &status, WNOHANG) != pid; i++)
		usleep(20000);
	if (i == 250) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	snprintf(st, sizeof(st), "rm -rf '%s'", dir);
	if (system(st) != 0)
		fprintf(stderr, "could not remove %s\n", dir);
	return ret;
}

static int bench_qemu(const char *qemu, const char *elf, int calls)
{
	char dir[] = "/tmp/cleave-bench-qemu-XXXXXX", path[128], qmparg[160], label[64];
	struct qmp_client *c = NULL;
	const char *argv[24];
	int n = 0, i, ret = -ETIMEDOUT, status;
	/*
	 * Without /dev/kvm QEMU runs its QMP on TCG: the monitor path (parse,
	 * dispatch under the BQL, reply) does not depend on the accelerator,
	 * and with -S no vCPU competes for it.
	 */
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	pid_t pid;

	if (!mkdtemp(dir))
		return -errno;
	snprintf(path, sizeof(path), "%s/qmp.sock", dir);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", path);
	argv[n++] = qemu;
	argv[n++] = "-accel";
	argv[n++] = kvm ? "kvm" : "tcg";
	argv[n++] = "-M";
	argv[n++] = "microvm";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	if (kvm) {
		argv[n++] = "-cpu";
		argv[n++] = "host,-arch-capabilities";
	}
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-qmp";
	argv[n++] = qmparg;
	argv[n++] = "-S";
	if (elf && access(elf, R_OK) == 0) {
		argv[n++] = "-kernel";
		argv[n++] = elf;
	}
	argv[n] = NULL;
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		execv(qemu, (char *const *)argv);
		_exit(127);
	}
	for (i = 0; i < 500; i++) {
		if (access(path, F_OK) == 0 && qmp_client_connect(&c, path, 2000) == 0) {
			ret = 0;
			break;
		}
		if (waitpid(pid, &status, WNOHANG) == pid) {
			fprintf(stderr, "qemu exited before serving QMP\n");
			pid = 0;
			ret = -ECHILD;
			break;
		}
		usleep(20000);
	}
	if (!ret)
		ret = qmp_client_negotiate(c, 5000);
	snprintf(label, sizeof(label), "qemu 7.2 (microvm, %s, -S), 1 client", kvm ? "kvm" : "tcg");
	if (!ret)
		ret = measure(label, c, "query-status", calls);
	if (!ret)
		ret = measure(label, c, "query-version", calls);
	qmp_client_close(c);
	if (pid > 0) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
	}
	unlink(path);
	rmdir(dir);
	printf("qemu serves one QMP client per socket at a time: only the 1-client figure "
	       "applies\n");
	return ret;
}

int main(int argc, char **argv)
{
	const char *qemu = argc > 3 ? argv[3] : "/usr/bin/qemu-system-x86_64";
	int calls = argc > 2 ? atoi(argv[2]) : 2000;
	struct rlimit rl;
	int ret;

	if (argc < 2 || calls < 100) {
		fprintf(stderr, "usage: %s CLEAVE-MONITOR [CALLS>=100] [QEMU] [GUEST-ELF]\n",
			argv[0]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	getrlimit(RLIMIT_NOFILE, &rl);
	rl.rlim_cur = rl.rlim_max;
	setrlimit(RLIMIT_NOFILE, &rl);
	printf("QMP round trips over a unix socket against an in-test vcpu-proc (NNG ipc):\n"
	       "query-status asks it once, then is answered from its RunStateChanged events;\n"
	       "query-cpus-fast asks it every time; query-version needs no backend\n");
	ret = bench_cleave(argv[1], calls);
	if (argc > 5)
		ret |= bench_real_vm(argv[5], calls);
	if (access(qemu, X_OK) == 0)
		ret |= bench_qemu(qemu, argc > 4 ? argv[4] : NULL, calls);
	else
		printf("qemu: %s not found, skipped\n", qemu);
	return ret ? 1 : 0;
}
