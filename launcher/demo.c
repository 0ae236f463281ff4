// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave demo`: the main job in one command.  Boots the embedded guest
 * (2 vCPUs dirtying 128 MiB) as a source VM, starts an incoming destination
 * VM, live-migrates the guest between them over loopback with 4 multifd
 * channels, checks that the destination guest runs on (fresh heartbeats,
 * no guest assertion) and that the source stays paused, then quits both.
 *
 * Each VM is a real `cleave run` (this same binary) with its own processes;
 * the demo talks to them only through QMP, as an operator would.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "launcher/commands.h"
#include "launcher/host-check.h"
#include "monitor/qmp-client.h"

#define DEMO_QMP_TIMEOUT_MS 5000

struct demo_vm {
	const char *role;   /* "source" or "destination" */
	char qmp[PATH_MAX]; /* unix socket path */
	char serial[PATH_MAX];
	pid_t pid; /* the `cleave run` launcher, 0 once reaped */
};

static double demo_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A free loopback TCP port (the kernel picks it; the race is harmless here). */
static int demo_free_port(void)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);
	int fd, port = -1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!bind(fd, (struct sockaddr *)&sa, sizeof(sa)) &&
	    !getsockname(fd, (struct sockaddr *)&sa, &len))
		port = ntohs(sa.sin_port);
	close(fd);
	return port;
}

static int demo_vm_start(struct demo_vm *vm, char *const argv[])
{
	vm->pid = fork();
	if (vm->pid < 0)
		return -errno;
	if (vm->pid == 0) {
		execv("/proc/self/exe", argv);
		fprintf(stderr, "cleave demo: exec: %s\n", strerror(errno));
		_exit(127);
	}
	return 0;
}

/* Counts "HB " lines in the VM's serial log; ASSERT lines make it fail. */
static int demo_serial_scan(const struct demo_vm *vm, unsigned int *heartbeats)
{
	char line[512];
	FILE *f;

	*heartbeats = 0;
	f = fopen(vm->serial, "r");
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	while (fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "HB ", 3))
			(*heartbeats)++;
		if (strstr(line, "ASSERT")) {
			fprintf(stderr, "cleave demo: %s guest: %s", vm->role, line);
			fclose(f);
			return -EIO;
		}
	}
	fclose(f);
	return 0;
}

/* Waits until the VM's guest printed at least @want heartbeats in total. */
static int demo_wait_heartbeats(const struct demo_vm *vm, unsigned int want, double timeout_s)
{
	double deadline = demo_now() + timeout_s;
	unsigned int hb;
	int ret;

	for (;;) {
		ret = demo_serial_scan(vm, &hb);
		if (ret)
			return ret;
		if (hb >= want)
			return 0;
		if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
			fprintf(stderr, "cleave demo: the %s VM exited early\n", vm->role);
			return -ECHILD;
		}
		if (demo_now() > deadline) {
			fprintf(stderr, "cleave demo: %s: %u of %u heartbeats after %.0f s\n",
				vm->role, hb, want, timeout_s);
			return -ETIMEDOUT;
		}
		usleep(50 * 1000);
	}
}

static int demo_qmp_connect(const struct demo_vm *vm, struct qmp_client **c)
{
	double deadline = demo_now() + 10;
	int ret;

	/* The launcher creates the socket before it starts the monitor. */
	do {
		ret = qmp_client_connect(c, vm->qmp, DEMO_QMP_TIMEOUT_MS);
		if (!ret) {
			ret = qmp_client_negotiate(*c, DEMO_QMP_TIMEOUT_MS);
			if (ret)
				qmp_client_close(*c);
			return ret;
		}
		usleep(50 * 1000);
	} while (demo_now() < deadline);
	fprintf(stderr, "cleave demo: %s QMP %s: %s\n", vm->role, vm->qmp, strerror(-ret));
	return ret;
}

/* The "status" of query-status, copied into @buf. */
static int demo_run_state(const struct demo_vm *vm, char *buf, size_t len)
{
	struct qmp_client *c;
	json_t *reply = NULL;
	const char *st;
	int ret;

	ret = demo_qmp_connect(vm, &c);
	if (ret)
		return ret;
	ret = qmp_client_execute(c, "query-status", NULL, &reply, DEMO_QMP_TIMEOUT_MS);
	if (!ret) {
		st = json_string_value(json_object_get(json_object_get(reply, "return"), "status"));
		snprintf(buf, len, "%s", st ? st : "?");
		if (!st)
			ret = -EPROTO;
	}
	json_decref(reply);
	qmp_client_close(c);
	return ret;
}

static void demo_vm_quit(struct demo_vm *vm)
{
	struct qmp_client *c;
	json_t *reply = NULL;
	int i;

	if (!vm->pid)
		return;
	if (!demo_qmp_connect(vm, &c)) {
		qmp_client_execute(c, "quit", NULL, &reply, DEMO_QMP_TIMEOUT_MS);
		json_decref(reply);
		qmp_client_close(c);
	}
	for (i = 0; i < 100; i++) {
		if (waitpid(vm->pid, NULL, WNOHANG) == vm->pid) {
			vm->pid = 0;
			return;
		}
		usleep(50 * 1000);
	}
	kill(vm->pid, SIGTERM);
	waitpid(vm->pid, NULL, 0);
	vm->pid = 0;
}

static void demo_usage(void)
{
	printf("usage: cleave demo [--memory SIZE] [--mib N] [--vcpus N] [--channels N]\n"
	       "Boots the embedded guest (mode=dirty), live-migrates it to a second VM on\n"
	       "127.0.0.1 and checks that it runs on there.\n");
}

int cmd_demo_main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"memory", required_argument, NULL, 'm'},
		{"mib", required_argument, NULL, 'd'},
		{"vcpus", required_argument, NULL, 'c'},
		{"channels", required_argument, NULL, 'n'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	const char *memory = "1G", *mib = "128", *vcpus = "2", *channels = "4";
	struct demo_vm src = {.role = "source"}, dst = {.role = "destination"};
	char dir[] = "/tmp/cleave-demo-XXXXXX", append[64], incoming[64], uri[64];
	char src_state[64] = "", dst_state[64] = "";
	unsigned int dst_hb_before;
	struct host_kvm kvm;
	int opt, port, ret, status = 1;

	while ((opt = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
		switch (opt) {
		case 'm':
			memory = optarg;
			break;
		case 'd':
			mib = optarg;
			break;
		case 'c':
			vcpus = optarg;
			break;
		case 'n':
			channels = optarg;
			break;
		case 'h':
			demo_usage();
			return 0;
		default:
			demo_usage();
			return 2;
		}
	}
	/* Both VMs would fail the same way, later and less clearly. */
	host_kvm_probe_default(&kvm);
	if (!host_kvm_preflight(&kvm))
		return HOST_EXIT_UNFIT;
	if (!mkdtemp(dir)) {
		perror("cleave demo: mkdtemp");
		return 1;
	}
	port = demo_free_port();
	if (port < 0) {
		fprintf(stderr, "cleave demo: no free loopback port\n");
		return 1;
	}
	snprintf(src.qmp, sizeof(src.qmp), "%s/src.qmp", dir);
	snprintf(dst.qmp, sizeof(dst.qmp), "%s/dst.qmp", dir);
	snprintf(src.serial, sizeof(src.serial), "%s/src.serial", dir);
	snprintf(dst.serial, sizeof(dst.serial), "%s/dst.serial", dir);
	snprintf(append, sizeof(append), "mode=dirty mib=%s", mib);
	snprintf(incoming, sizeof(incoming), "tcp:127.0.0.1:%d", port);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);

	char src_qmp_opt[PATH_MAX + 8], dst_qmp_opt[PATH_MAX + 8];
	char src_serial_opt[PATH_MAX + 8], dst_serial_opt[PATH_MAX + 8];
	snprintf(src_qmp_opt, sizeof(src_qmp_opt), "unix:%s", src.qmp);
	snprintf(dst_qmp_opt, sizeof(dst_qmp_opt), "unix:%s", dst.qmp);
	snprintf(src_serial_opt, sizeof(src_serial_opt), "file:%s", src.serial);
	snprintf(dst_serial_opt, sizeof(dst_serial_opt), "file:%s", dst.serial);
	char *const dst_argv[] = {"cleave",	"run",		"--name",  "demo-dst",
				  "--memory",	(char *)memory, "--vcpus", (char *)vcpus,
				  "--incoming", incoming,	"--qmp",   dst_qmp_opt,
				  "--serial",	dst_serial_opt, NULL};
	char *const src_argv[] = {"cleave",   "run",	      "--name",	 "demo-src",
				  "--memory", (char *)memory, "--vcpus", (char *)vcpus,
				  "--append", append,	      "--qmp",	 src_qmp_opt,
				  "--serial", src_serial_opt, NULL};

	printf("cleave demo: files in %s\n", dir);
	printf("[1/4] destination VM waiting on %s\n", incoming);
	if (demo_vm_start(&dst, dst_argv))
		goto out;
	printf("[2/4] source VM: %s vCPUs, %s RAM, guest '%s'\n", vcpus, memory, append);
	if (demo_vm_start(&src, src_argv))
		goto out;
	if (demo_wait_heartbeats(&src, 2 * (unsigned int)atoi(vcpus), 60))
		goto out;
	printf("      source guest is running (heartbeats on %s)\n", src.serial);

	printf("[3/4] live migration over %s channel(s)\n", channels);
	fflush(stdout);
	optind = 0; /* cmd_migrate_main parses its own argv with getopt */
	char *mig_argv[] = {"migrate", "--qmp", src.qmp, uri, "--channels", (char *)channels, NULL};
	ret = cmd_migrate_main(6, mig_argv);
	if (ret) {
		fprintf(stderr, "cleave demo: migration failed\n");
		goto out;
	}

	fflush(stdout);
	printf("[4/4] checking the destination\n");
	if (demo_serial_scan(&dst, &dst_hb_before) ||
	    demo_wait_heartbeats(&dst, dst_hb_before + 2 * (unsigned int)atoi(vcpus), 30))
		goto out;
	if (demo_run_state(&src, src_state, sizeof(src_state)) ||
	    demo_run_state(&dst, dst_state, sizeof(dst_state)))
		goto out;
	printf("      source: %s, destination: %s\n", src_state, dst_state);
	if (strcmp(src_state, "postmigrate") || strcmp(dst_state, "running")) {
		fprintf(stderr,
			"cleave demo: expected source postmigrate and destination running\n");
		goto out;
	}
	if (demo_serial_scan(&src, &dst_hb_before) || demo_serial_scan(&dst, &dst_hb_before))
		goto out;
	printf("cleave demo: OK: the guest moved and runs on; its own page and clock checks "
	       "pass\n");
	status = 0;
out:
	demo_vm_quit(&src);
	demo_vm_quit(&dst);
	return status;
}
