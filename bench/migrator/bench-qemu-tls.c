/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU 7.2's migration over loopback, plaintext against mutual TLS (its
 * tls-creds-x509 objects, the same credentials layout cleave reads), with
 * 1 channel and with 4 multifd channels: the reference for cleave's own
 * TLS cost (bench-migrator-engine --tls), on the same host in the same run.
 *
 * The image matches bench-migrator-engine's: 1 GiB of guest RAM holding
 * 256 MiB of data (a pseudo-random file put in place by QEMU's generic
 * loader device), the rest zero.  Both QEMUs stay stopped (-S): the
 * migration is QEMU's migration thread and channels alone, which do not
 * depend on the accelerator, so it runs on TCG where there is no
 * /dev/kvm.  Prints medians of RUNS (default 3) of total time and
 * throughput (bytes transferred / total time).
 *
 * usage: bench-qemu-tls [RUNS] [QEMU]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "monitor/qmp-client.h"
#include "tls-certs.h"

#define DATA_MIB 256
#define MAX_RUNS 16
#define PORT	 47311

struct qemu {
	pid_t pid;
	struct qmp_client *qmp;
	char sock[128];
};

static char scratch[] = "/tmp/cleave-bench-qemu-tls-XXXXXX";

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-qemu-tls: %s: %s\n", what, strerror(err));
	exit(1);
}

/* 256 MiB that compress to nothing and hold no zero page. */
static void data_file(const char *path)
{
	static uint64_t buf[1 << 17];
	uint64_t x = 88172645463325252ull;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		die(path, errno);
	for (unsigned int m = 0; m < DATA_MIB; m++) {
		for (size_t i = 0; i < sizeof(buf) / sizeof(buf[0]); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			die("write", errno);
	}
	close(fd);
}

static void qemu_start(struct qemu *q, const char *name, bool tls, bool incoming)
{
	bool kvm = access("/dev/kvm", R_OK | W_OK) == 0;
	char qmparg[160], creds[256], loader[256];
	const char *argv[32];
	int n = 0, fd;

	snprintf(q->sock, sizeof(q->sock), "%s/%s.sock", scratch, name);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", q->sock);
	snprintf(creds, sizeof(creds), "tls-creds-x509,id=tls0,dir=%s,endpoint=%s,verify-peer=on",
		 scratch, incoming ? "server" : "client");
	snprintf(loader, sizeof(loader), "loader,file=%s/data.bin,addr=0x1000000,force-raw=on",
		 scratch);
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-accel";
	argv[n++] = kvm ? "kvm" : "tcg";
	argv[n++] = "-M";
	argv[n++] = "microvm";
	argv[n++] = "-m";
	argv[n++] = "1G";
	argv[n++] = "-nodefaults";
	argv[n++] = "-no-user-config";
	argv[n++] = "-display";
	argv[n++] = "none";
	argv[n++] = "-S";
	argv[n++] = "-qmp";
	argv[n++] = qmparg;
	if (tls) {
		argv[n++] = "-object";
		argv[n++] = creds;
	}
	if (incoming) {
		argv[n++] = "-incoming";
		argv[n++] = "defer";
	} else {
		argv[n++] = "-device";
		argv[n++] = loader;
	}
	argv[n] = NULL;
	q->pid = fork();
	if (q->pid < 0)
		die("fork", errno);
	if (q->pid == 0) {
		fd = open("/dev/null", O_WRONLY);
		dup2(fd, STDOUT_FILENO);
		execvp(argv[0], (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 500; i++) {
		if (!access(q->sock, F_OK) && !qmp_client_connect(&q->qmp, q->sock, 2000) &&
		    !qmp_client_negotiate(q->qmp, 5000))
			return;
		usleep(20000);
	}
	die("QEMU did not serve QMP", ETIMEDOUT);
}

static void qemu_stop(struct qemu *q)
{
	int status;

	qmp_client_close(q->qmp);
	kill(q->pid, SIGKILL);
	waitpid(q->pid, &status, 0);
	unlink(q->sock);
}

/* Runs @cmd; dies with QEMU's error. */
static json_t *cmd(struct qemu *q, const char *name, json_t *args)
{
	json_t *reply = NULL, *err;
	int ret = qmp_client_execute(q->qmp, name, args, &reply, 30000);

	if (ret)
		die(name, -ret);
	err = json_object_get(reply, "error");
	if (err) {
		fprintf(stderr, "%s: %s\n", name, json_string_value(json_object_get(err, "desc")));
		exit(1);
	}
	return reply;
}

static void setup(struct qemu *q, bool tls, unsigned int channels)
{
	json_decref(cmd(q, "migrate-set-capabilities",
			json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability", "multifd",
				  "state", channels > 1)));
	json_decref(cmd(q, "migrate-set-parameters",
			json_pack("{s:s,s:i,s:I,s:I}", "tls-creds", tls ? "tls0" : "",
				  "multifd-channels", channels > 1 ? channels : 2, "max-bandwidth",
				  (json_int_t)(100ll << 30), "downtime-limit", (json_int_t)300)));
}

/* One migration: total time (ms) and bytes transferred. */
static void one_run(bool tls, unsigned int channels, double *ms, double *bytes)
{
	struct qemu src, dst;
	char uri[64];

	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", PORT);
	qemu_start(&dst, "dst", tls, true);
	qemu_start(&src, "src", tls, false);
	setup(&dst, tls, channels);
	setup(&src, tls, channels);
	json_decref(cmd(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri)));
	json_decref(cmd(&src, "migrate", json_pack("{s:s}", "uri", uri)));
	for (;;) {
		json_t *r = cmd(&src, "query-migrate", NULL), *info = json_object_get(r, "return");
		const char *st = json_string_value(json_object_get(info, "status"));

		if (st && !strcmp(st, "completed")) {
			*ms = (double)json_integer_value(json_object_get(info, "total-time"));
			*bytes = (double)json_integer_value(
				json_object_get(json_object_get(info, "ram"), "transferred"));
			json_decref(r);
			break;
		}
		if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
			fprintf(stderr, "migration %s: %s\n", st,
				json_string_value(json_object_get(info, "error-desc")));
			exit(1);
		}
		json_decref(r);
		usleep(10000);
	}
	qemu_stop(&src);
	qemu_stop(&dst);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const struct tls_certs certs = {.ca_name = "bench CA",
					.server_dns = "localhost",
					.server_ip = "127.0.0.1",
					.client_dn = "CN=source,O=cleave bench"};
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 3;
	static const unsigned int chans[] = {1, 4};
	char path[160], cmdline[128];

	if (!runs || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench-qemu-tls [RUNS<=%d]\n", MAX_RUNS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(scratch))
		die("mkdtemp", errno);
	if (tls_certs_make(scratch, &certs))
		die("credentials", EIO);
	snprintf(path, sizeof(path), "%s/data.bin", scratch);
	data_file(path);
	printf("QEMU 7.2 (%s, -S), loopback TCP, 1 GiB RAM with %d MiB of data; medians of %u\n",
	       access("/dev/kvm", R_OK | W_OK) ? "tcg" : "kvm", DATA_MIB, runs);
	printf("%-6s %-9s %10s %12s\n", "mode", "channels", "total ms", "MB/s");
	for (unsigned int c = 0; c < sizeof(chans) / sizeof(chans[0]); c++) {
		double mbps[2];

		for (int tls = 0; tls < 2; tls++) {
			double ms[MAX_RUNS], bytes = 0, rate[MAX_RUNS];

			for (unsigned int i = 0; i < runs; i++) {
				one_run(tls, chans[c], &ms[i], &bytes);
				rate[i] = bytes / (ms[i] / 1e3) / 1e6;
			}
			qsort(ms, runs, sizeof(ms[0]), cmp_double);
			qsort(rate, runs, sizeof(rate[0]), cmp_double);
			mbps[tls] = rate[runs / 2];
			printf("%-6s %-9u %10.1f %12.1f\n", tls ? "tls" : "plain", chans[c],
			       ms[runs / 2], mbps[tls]);
		}
		printf("%-6s %-9u TLS throughput %.0f %% of plaintext\n", "", chans[c],
		       100.0 * mbps[1] / mbps[0]);
	}
	snprintf(cmdline, sizeof(cmdline), "rm -rf '%s'", scratch);
	if (system(cmdline))
		fprintf(stderr, "could not remove %s\n", scratch);
	return 0;
}
