/* SPDX-License-Identifier: GPL-2.0-only */
/* QEMU 7.2 as the benches' reference (qemu-ref.h). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "qemu-ref.h"

static void qemu_ref_die(const char *what, int err)
{
	fprintf(stderr, "qemu reference: %s: %s\n", what, strerror(err));
	exit(1);
}

const char *qemu_ref_accel(void)
{
	return access("/dev/kvm", R_OK | W_OK) ? "tcg" : "kvm";
}

void qemu_ref_data_file(const char *path)
{
	static uint64_t buf[1 << 17];
	uint64_t x = 88172645463325252ull;
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	if (fd < 0)
		qemu_ref_die(path, errno);
	for (unsigned int m = 0; m < QEMU_REF_DATA_MIB; m++) {
		for (size_t i = 0; i < sizeof(buf) / sizeof(buf[0]); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = x;
		}
		if (write(fd, buf, sizeof(buf)) != (ssize_t)sizeof(buf))
			qemu_ref_die("write", errno);
	}
	close(fd);
}

void qemu_ref_start(struct qemu_ref *q, const char *dir, const char *name, const char *const *extra)
{
	char qmparg[200];
	const char *argv[40];
	int n = 0, fd;

	snprintf(q->sock, sizeof(q->sock), "%s/%s.sock", dir, name);
	snprintf(qmparg, sizeof(qmparg), "unix:%s,server=on,wait=off", q->sock);
	argv[n++] = "qemu-system-x86_64";
	argv[n++] = "-accel";
	argv[n++] = qemu_ref_accel();
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
	for (; extra && *extra && n < 38; extra++)
		argv[n++] = *extra;
	argv[n] = NULL;
	q->qmp = NULL;
	q->pid = fork();
	if (q->pid < 0)
		qemu_ref_die("fork", errno);
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
	qemu_ref_die("QEMU did not serve QMP", ETIMEDOUT);
}

void qemu_ref_stop(struct qemu_ref *q)
{
	int status;

	qmp_client_close(q->qmp);
	kill(q->pid, SIGKILL);
	waitpid(q->pid, &status, 0);
	unlink(q->sock);
}

json_t *qemu_ref_cmd(struct qemu_ref *q, const char *cmd, json_t *args)
{
	json_t *reply = NULL, *err, *ret;
	int r = qmp_client_execute(q->qmp, cmd, args, &reply, 60000);

	if (r)
		qemu_ref_die(cmd, -r);
	err = json_object_get(reply, "error");
	if (err) {
		fprintf(stderr, "qemu reference: %s: %s\n", cmd,
			json_string_value(json_object_get(err, "desc")));
		exit(1);
	}
	ret = json_incref(json_object_get(reply, "return"));
	json_decref(reply);
	return ret;
}

json_t *qemu_ref_wait_migration(struct qemu_ref *q)
{
	for (;;) {
		json_t *info = qemu_ref_cmd(q, "query-migrate", NULL);
		const char *st = json_string_value(json_object_get(info, "status"));

		if (st && !strcmp(st, "completed"))
			return info;
		if (st && (!strcmp(st, "failed") || !strcmp(st, "cancelled"))) {
			fprintf(stderr, "qemu reference: migration %s: %s\n", st,
				json_string_value(json_object_get(info, "error-desc")));
			exit(1);
		}
		json_decref(info);
		usleep(5000);
	}
}
