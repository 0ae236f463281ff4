// SPDX-License-Identifier: GPL-2.0-only
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "tests/util/test-util.h"

uint64_t vt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void vt_require_kvm(void)
{
	test_require_kvm();
}

int vt_init(struct vt *t, const char *binary, uint64_t ram_size, uint64_t high_size)
{
	struct shm_ctl_layout l = {0};
	int ret;

	memset(t, 0, sizeof(*t));
	t->binary = binary;
	t->guest_fd = t->serial.fd = t->log.fd = -1;
	l.nr_regions = high_size ? 2 : 1;
	l.gpa[0] = 0;
	l.size[0] = ram_size;
	l.gpa[1] = 4ull << 30;
	l.size[1] = high_size;
	ret = shm_ctl_create(&t->ctl, &l);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < l.nr_regions; i++) {
		ret = shm_region_create(&t->ram[i], i, l.size[i]);
		if (ret)
			return ret;
		t->nr_ram++;
	}
	snprintf(t->dir, sizeof(t->dir), "/tmp/cleave-vt-XXXXXX");
	if (!mkdtemp(t->dir))
		return -errno;
	snprintf(t->rpc_url, sizeof(t->rpc_url), "ipc://%s/vcpu.rpc", t->dir);
	snprintf(t->events_url, sizeof(t->events_url), "ipc://%s/vcpu.events", t->dir);
	snprintf(t->mig_rpc_url, sizeof(t->mig_rpc_url), "ipc://%s/vcpu-migrator.rpc", t->dir);
	return rpc_client_open(&t->rpc, t->rpc_url);
}

void vt_fini(struct vt *t)
{
	struct dirent *de;
	char path[sizeof(t->dir) + 260];
	DIR *dir;

	vt_kill(t);
	rpc_client_close(t->rpc);
	t->rpc = NULL;
	for (unsigned int i = 0; i < t->nr_ram; i++)
		shm_region_close(&t->ram[i]);
	shm_ctl_close(&t->ctl);
	if (t->guest_fd >= 0)
		close(t->guest_fd);
	if (t->serial.fd >= 0)
		close(t->serial.fd);
	if (t->log.fd >= 0)
		close(t->log.fd);
	free(t->serial.buf);
	free(t->log.buf);
	/* The dir is ours (mkdtemp): whatever sockets were made in it go too. */
	dir = opendir(t->dir);
	while (dir && (de = readdir(dir))) {
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
			snprintf(path, sizeof(path), "%s/%s", t->dir, de->d_name);
			unlink(path);
		}
	}
	if (dir)
		closedir(dir);
	rmdir(t->dir);
}

int vt_guest_set(struct vt *t, const void *elf, size_t len)
{
	if (t->guest_fd >= 0)
		close(t->guest_fd);
	t->guest_fd = memfd_create("guest", MFD_CLOEXEC);
	if (t->guest_fd < 0)
		return -errno;
	if (write(t->guest_fd, elf, len) != (ssize_t)len)
		return -EIO;
	return 0;
}

int vt_guest_open(struct vt *t, const char *path)
{
	if (t->guest_fd >= 0)
		close(t->guest_fd);
	t->guest_fd = open(path, O_RDONLY | O_CLOEXEC);
	return t->guest_fd < 0 ? -errno : 0;
}

static void vt_stream_reset(struct vt_stream *s, int fd)
{
	if (s->fd >= 0)
		close(s->fd);
	s->fd = fd;
	s->len = 0;
	if (s->buf)
		s->buf[0] = '\0';
}

int vt_spawn(struct vt *t, unsigned int vcpus, const char *append, bool incoming,
	     const char *const *extra)
{
	int sp[2], lp[2];
	char ctl[16], ram[64], guest[16], serial[16], nv[16];
	const char *argv[40];
	unsigned int n = 0;
	pid_t pid;

	if (pipe2(sp, O_CLOEXEC) < 0)
		return -errno;
	if (pipe2(lp, O_CLOEXEC) < 0)
		return -errno;
	snprintf(ctl, sizeof(ctl), "%d", t->ctl.fd);
	if (t->nr_ram == 2)
		snprintf(ram, sizeof(ram), "%d,%d", t->ram[0].fd, t->ram[1].fd);
	else
		snprintf(ram, sizeof(ram), "%d", t->ram[0].fd);
	snprintf(guest, sizeof(guest), "%d", t->guest_fd);
	snprintf(serial, sizeof(serial), "%d", sp[1]);
	snprintf(nv, sizeof(nv), "%u", vcpus);
	argv[n++] = t->binary;
	argv[n++] = "--ctl-fd";
	argv[n++] = ctl;
	argv[n++] = "--ram-fds";
	argv[n++] = ram;
	argv[n++] = "--guest-fd";
	argv[n++] = guest;
	argv[n++] = "--vcpus";
	argv[n++] = nv;
	argv[n++] = "--serial-fd";
	argv[n++] = serial;
	argv[n++] = "--rpc";
	argv[n++] = t->rpc_url;
	argv[n++] = "--rpc-migrator";
	argv[n++] = t->mig_rpc_url;
	argv[n++] = "--events";
	argv[n++] = t->events_url;
	if (append) {
		argv[n++] = "--append";
		argv[n++] = append;
	}
	if (incoming)
		argv[n++] = "--incoming";
	for (unsigned int i = 0; extra && extra[i] && n < 38; i++)
		argv[n++] = extra[i];
	argv[n] = NULL;

	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int keep[] = {t->ctl.fd, t->ram[0].fd, t->nr_ram == 2 ? t->ram[1].fd : -1,
			      t->guest_fd, sp[1]};

		for (unsigned int i = 0; i < 5; i++) {
			if (keep[i] >= 0)
				fcntl(keep[i], F_SETFD, 0);
		}
		dup2(lp[1], STDERR_FILENO);
		/* A test that dies (assert, SIGPIPE, timeout) takes its VMM with it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() == 1)
			_exit(127);
		execv(t->binary, (char *const *)argv);
		_exit(127);
	}
	close(sp[1]);
	close(lp[1]);
	vt_stream_reset(&t->serial, sp[0]);
	vt_stream_reset(&t->log, lp[0]);
	t->pid = pid;
	t->rpc_ready = false;
	return 0;
}

int vt_wait(struct vt *t, int timeout_ms, int *status)
{
	uint64_t end = vt_now_ms() + (uint64_t)timeout_ms;

	if (!t->pid)
		return -ECHILD;
	for (;;) {
		int st;
		pid_t r = waitpid(t->pid, &st, WNOHANG);

		if (r == t->pid) {
			t->pid = 0;
			vt_drain(t, 50);
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
			return 0;
		}
		if (vt_now_ms() >= end)
			return -ETIMEDOUT;
		vt_drain(t, 20);
	}
}

void vt_kill(struct vt *t)
{
	int st;

	if (!t->pid)
		return;
	kill(t->pid, SIGKILL);
	waitpid(t->pid, &st, 0);
	t->pid = 0;
	vt_drain(t, 20);
}

static void vt_stream_read(struct vt_stream *s)
{
	char tmp[4096];
	ssize_t n = read(s->fd, tmp, sizeof(tmp));

	if (n <= 0) {
		if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
			close(s->fd);
			s->fd = -1;
		}
		return;
	}
	if (s->len + (size_t)n + 1 > s->cap) {
		s->cap = (s->len + (size_t)n + 1) * 2;
		s->buf = realloc(s->buf, s->cap);
	}
	memcpy(s->buf + s->len, tmp, (size_t)n);
	s->len += (size_t)n;
	s->buf[s->len] = '\0';
	if (getenv("VT_VERBOSE"))
		fwrite(tmp, 1, (size_t)n, stderr);
}

void vt_drain(struct vt *t, int ms)
{
	uint64_t end = vt_now_ms() + (uint64_t)ms;

	do {
		struct pollfd p[2] = {{t->serial.fd, POLLIN, 0}, {t->log.fd, POLLIN, 0}};
		int left = (int)(end - vt_now_ms());

		if (t->serial.fd < 0 && t->log.fd < 0)
			return;
		if (poll(p, 2, left > 0 ? left : 0) <= 0)
			return;
		if (p[0].revents)
			vt_stream_read(&t->serial);
		if (p[1].revents)
			vt_stream_read(&t->log);
	} while (vt_now_ms() < end);
}

long vt_expect(struct vt *t, struct vt_stream *s, size_t from, const char *needle, int timeout_ms)
{
	uint64_t end = vt_now_ms() + (uint64_t)timeout_ms;

	for (;;) {
		if (s->buf && from <= s->len) {
			char *p = strstr(s->buf + from, needle);

			if (p)
				return p - s->buf;
		}
		if (vt_now_ms() >= end || (t->serial.fd < 0 && t->log.fd < 0))
			return -1;
		vt_drain(t, 20);
	}
}

unsigned int vt_count(const struct vt_stream *s, size_t from, const char *needle)
{
	unsigned int n = 0;
	const char *p = s->buf && from <= s->len ? s->buf + from : NULL;

	while (p && (p = strstr(p, needle))) {
		n++;
		p += strlen(needle);
	}
	return n;
}

/*
 * The client dials in the background and NNG may need a redial after the
 * previous process died: poll STATUS with short deadlines until one answers,
 * so a test's first real request does not race the connection.
 */
static void vt_rpc_wait_ready(struct vt *t)
{
	uint64_t end = vt_now_ms() + 10000;
	char err[RPC_ERRMSG_LEN];

	while (!t->rpc_ready && vt_now_ms() < end) {
		ProtobufCMessage *st = NULL;

		if (rpc_call(t->rpc, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL,
			     &cleave__vcpu__status_reply__descriptor, &st, 300, err,
			     sizeof(err)) == 0) {
			rpc_msg_free(st);
			t->rpc_ready = true;
		}
	}
}

int vt_call(struct vt *t, uint32_t method, const ProtobufCMessage *req,
	    const ProtobufCMessageDescriptor *rd, ProtobufCMessage **rep)
{
	char err[RPC_ERRMSG_LEN] = "";
	int ret;

	vt_rpc_wait_ready(t);
	ret = rpc_call(t->rpc, method, req, rd, rep, 5000, err, sizeof(err));
	snprintf(t->last_err, sizeof(t->last_err), "%s", ret ? err : "");

	if (ret && getenv("VT_VERBOSE"))
		fprintf(stderr, "rpc %u: %d %s\n", method, ret, err);
	return ret;
}

int vt_status(struct vt *t, Cleave__Vcpu__StatusReply **st)
{
	return vt_call(t, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL,
		       &cleave__vcpu__status_reply__descriptor, (ProtobufCMessage **)st);
}

int vt_simple(struct vt *t, uint32_t method)
{
	return vt_call(t, method, NULL, NULL, NULL);
}
