// SPDX-License-Identifier: GPL-2.0-only
/* A real cleave-monitor process for tests and benchmarks: see mon-proc.h. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "tests/integration/monitor/mon-proc.h"
#include "tests/unit/monitor/fake-backend.h"

static int mon_proc_listen(const char *path)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	unlink(path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) || listen(fd, SOMAXCONN)) {
		close(fd);
		return -errno;
	}
	return fd;
}

/* The monitor is up when a connection gets its greeting's first byte. */
static int mon_proc_wait_ready(struct mon_proc *mp)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int i, fd;
	char c;

	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", mp->path);
	for (i = 0; i < 500; i++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			struct timeval tv = {.tv_sec = 0, .tv_usec = 20000};

			setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
			if (recv(fd, &c, 1, 0) == 1) {
				close(fd);
				return 0;
			}
		}
		if (fd >= 0)
			close(fd);
		if (waitpid(mp->pid, NULL, WNOHANG) == mp->pid) {
			mp->pid = 0;
			return -ECHILD;
		}
		usleep(10000);
	}
	return -ETIMEDOUT;
}

static int mon_proc_spawn(struct mon_proc *mp, const char *exe, const struct fake_backend *fb,
			  const char *const *extra)
{
	const char *argv[32];
	char fdbuf[16];
	int n = 0;

	argv[n++] = exe;
	if (mp->listen_fd >= 0) {
		snprintf(fdbuf, sizeof(fdbuf), "%d", mp->listen_fd);
		argv[n++] = "--qmp-fd";
		argv[n++] = fdbuf;
	} else {
		argv[n++] = "--qmp";
		argv[n++] = mp->sock;
	}
	if (fb) {
		argv[n++] = "--vcpu-rpc";
		argv[n++] = fb->vcpu_rpc;
		argv[n++] = "--vcpu-events";
		argv[n++] = fb->vcpu_events;
		argv[n++] = "--migrator-rpc";
		argv[n++] = fb->mig_rpc;
		argv[n++] = "--migrator-events";
		argv[n++] = fb->mig_events;
	}
	argv[n++] = "--name";
	argv[n++] = "testvm";
	while (extra && *extra && n < 30)
		argv[n++] = *extra++;
	argv[n] = NULL;
	mp->pid = fork();
	if (mp->pid < 0)
		return -errno;
	if (mp->pid == 0) {
		/* Exec keeps an ignored SIGPIPE: give the monitor the default, so it must cope. */
		signal(SIGPIPE, SIG_DFL);
		if (mp->nofile) {
			struct rlimit rl = {.rlim_cur = mp->nofile, .rlim_max = mp->nofile};

			setrlimit(RLIMIT_NOFILE, &rl);
		}
		if (mp->listen_fd >= 0)
			fcntl(mp->listen_fd, F_SETFD, 0);
		if (mp->log_path) {
			int log =
				open(mp->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);

			if (log < 0 || dup2(log, STDERR_FILENO) < 0)
				_exit(126);
		}
		execv(exe, (char *const *)argv);
		_exit(127);
	}
	return mon_proc_wait_ready(mp);
}

int mon_proc_start(struct mon_proc *mp, const char *exe, const char *dir,
		   const struct fake_backend *fb, int inherit, const char *const *extra)
{
	unsigned nofile = mp->nofile;
	const char *log_path = mp->log_path;

	memset(mp, 0, sizeof(*mp));
	mp->nofile = nofile;
	mp->log_path = log_path;
	mp->listen_fd = -1;
	snprintf(mp->path, sizeof(mp->path), "%s/qmp.sock", dir);
	snprintf(mp->sock, sizeof(mp->sock), "unix:%s", mp->path);
	if (inherit) {
		mp->listen_fd = mon_proc_listen(mp->path);
		if (mp->listen_fd < 0)
			return mp->listen_fd;
	}
	return mon_proc_spawn(mp, exe, fb, extra);
}

int mon_proc_restart(struct mon_proc *mp, const char *exe, const struct fake_backend *fb,
		     const char *const *extra)
{
	return mon_proc_spawn(mp, exe, fb, extra);
}

int mon_proc_alive(struct mon_proc *mp)
{
	if (!mp->pid)
		return 0;
	if (waitpid(mp->pid, NULL, WNOHANG) == mp->pid) {
		mp->pid = 0;
		return 0;
	}
	return 1;
}

int mon_proc_stop(struct mon_proc *mp, int hard)
{
	int status, i;

	if (!mp->pid)
		return -1;
	kill(mp->pid, hard ? SIGKILL : SIGTERM);
	for (i = 0; i < 500; i++) {
		if (waitpid(mp->pid, &status, WNOHANG) == mp->pid) {
			mp->pid = 0;
			return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
		}
		usleep(10000);
	}
	/* It ignored SIGTERM for 5 s: that is a failure, but never leave it running. */
	kill(mp->pid, SIGKILL);
	waitpid(mp->pid, &status, 0);
	mp->pid = 0;
	return -1;
}

void mon_proc_fini(struct mon_proc *mp)
{
	if (mp->listen_fd >= 0)
		close(mp->listen_fd);
	mp->listen_fd = -1;
	unlink(mp->path);
}
