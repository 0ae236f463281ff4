// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "launcher/spawn.h"
#include "sandbox/sandbox.h"

extern char **environ;

/*
 * The launcher's environment variables a child gets; every other one stays
 * behind (LD_PRELOAD, LD_LIBRARY_PATH, HOME, ...).  Each is read by the
 * child or a runtime linked into it, never by a library cleave does not
 * know about.
 */
static const struct spawn_env_rule {
	const char *name;
	bool sanitizer_only; /* passed only by a sanitizer build */
	const char *reason;
} spawn_env_rules[] = {
	{SANDBOX_ENV_DISABLE, false, "cleave run --no-sandbox: sandbox_enter() only warns"},
#ifdef CLEAVE_FAULT_INJECTION
	{"CLEAVE_MIG_TEST_HOOKS", false, "fault-injection builds: the migrator's test hooks"},
#endif
	{"ASAN_OPTIONS", true, "the children's AddressSanitizer runtime"},
	{"UBSAN_OPTIONS", true, "the children's UndefinedBehaviorSanitizer runtime"},
	{"LSAN_OPTIONS", true, "LeakSanitizer suppressions (NNG) in the children"},
	{"TSAN_OPTIONS", true, "the children's ThreadSanitizer runtime and suppressions"},
	{"PATH", true, "the sanitizer runtimes find their symbolizer through it"},
};

#define SPAWN_MAX_ENV (sizeof(spawn_env_rules) / sizeof(spawn_env_rules[0]))

static bool spawn_env_allowed(const char *var)
{
	size_t i, len;

	for (i = 0; i < SPAWN_MAX_ENV; i++) {
		const struct spawn_env_rule *r = &spawn_env_rules[i];

		len = strlen(r->name);
		if (strncmp(var, r->name, len) || var[len] != '=')
			continue;
		return !r->sanitizer_only || sandbox_sanitizer_build();
	}
	return false;
}

/*
 * The child's environment: pointers to the launcher's own "NAME=value"
 * strings that spawn_env_rules allows, NULL-terminated.  Built before fork,
 * so the child allocates nothing.  The launcher changes its environment
 * only before its first child (run.c: --no-sandbox).
 */
static void spawn_env_build(char *envp[SPAWN_MAX_ENV + 1])
{
	size_t n = 0;
	char **e;

	for (e = environ; e && *e && n < SPAWN_MAX_ENV; e++)
		if (spawn_env_allowed(*e))
			envp[n++] = *e;
	envp[n] = NULL;
}

int spawn_cmd_init(struct spawn_cmd *c, const char *path, const char *arg0)
{
	memset(c, 0, sizeof(*c));
	c->path = strdup(path);
	if (!c->path)
		return -ENOMEM;
	spawn_cmd_arg(c, "%s", arg0);
	return c->err;
}

void spawn_cmd_fini(struct spawn_cmd *c)
{
	unsigned int i;

	for (i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->path);
	memset(c, 0, sizeof(*c));
}

void spawn_cmd_arg(struct spawn_cmd *c, const char *fmt, ...)
{
	va_list ap;
	char *s;
	int n;

	if (c->err)
		return;
	if (c->argc == SPAWN_MAX_ARGS) {
		c->err = -E2BIG;
		return;
	}
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		c->err = -ENOMEM;
		return;
	}
	c->argv[c->argc++] = s;
	c->argv[c->argc] = NULL;
}

int spawn_cmd_fd(struct spawn_cmd *c, int fd)
{
	if (c->err)
		return c->err;
	if (fd < 0) {
		c->err = -EBADF;
		return c->err;
	}
	if (c->nr_fds == SPAWN_MAX_FDS) {
		c->err = -EMFILE;
		return c->err;
	}
	c->fds[c->nr_fds] = fd;
	return SPAWN_FD_BASE + (int)c->nr_fds++;
}

/*
 * Runs in the forked child: async-signal-safe calls only.  Reports a failure
 * as an errno on @errpipe (CLOEXEC: a successful exec closes it unwritten).
 */
static void __attribute__((noreturn))
spawn_child(const struct spawn_cmd *c, char *const envp[], pid_t parent, int errpipe)
{
	int tmp[SPAWN_MAX_FDS], e;
	struct sigaction dfl;
	sigset_t none;
	unsigned int i;

	if (prctl(PR_SET_PDEATHSIG, SIGKILL))
		goto fail;
	/* The launcher may have died before prctl: then no signal would ever come. */
	if (c->jail && c->jail->enabled) {
		/*
		 * In the children's PID namespace the launcher has no pid
		 * (getppid() is 0); its end of errpipe closing says it died.
		 */
		struct pollfd pfd = {.fd = errpipe, .events = POLLOUT};

		if (poll(&pfd, 1, 0) < 0 || (pfd.revents & POLLERR))
			_exit(127);
	} else if (getppid() != parent) {
		_exit(127);
	}

	/*
	 * Two passes so a target number never overwrites a source not yet
	 * moved: first above every target, then down onto SPAWN_FD_BASE + i
	 * (dup2 leaves the new fd without CLOEXEC, exactly what we hand over).
	 */
	for (i = 0; i < c->nr_fds; i++) {
		tmp[i] = fcntl(c->fds[i], F_DUPFD_CLOEXEC, SPAWN_FD_BASE + (int)c->nr_fds);
		if (tmp[i] < 0)
			goto fail;
	}
	for (i = 0; i < c->nr_fds; i++)
		if (dup2(tmp[i], SPAWN_FD_BASE + (int)i) < 0)
			goto fail;
	/* Everything else goes at exec; errpipe stays usable until then. */
	if (close_range(SPAWN_FD_BASE + c->nr_fds, ~0U, CLOSE_RANGE_CLOEXEC))
		goto fail;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigaction(SIGPIPE, &dfl, NULL);
	/* The launcher blocks its signals for signalfd; the mask survives exec. */
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);

	if (c->jail) {
		e = sandbox_jail_apply(c->jail);
		if (e) {
			errno = -e;
			goto fail;
		}
	}
	execve(c->path, c->argv, envp);
fail:
	e = errno;
	if (write(errpipe, &e, sizeof(e)) < 0)
		_exit(127);
	_exit(127);
}

int spawn_cmd_start(const struct spawn_cmd *c, pid_t *pid, int *pidfd)
{
	int pipefd[2], child_errno = 0, ret, fd;
	char *envp[SPAWN_MAX_ENV + 1];
	pid_t parent = getpid(), p;
	ssize_t n;

	if (c->err)
		return c->err;
	spawn_env_build(envp);
	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	p = fork();
	if (p < 0) {
		ret = -errno;
		goto err_pipe;
	}
	if (p == 0)
		spawn_child(c, envp, parent, pipefd[1]);

	close(pipefd[1]);
	pipefd[1] = -1;
	do
		n = read(pipefd[0], &child_errno, sizeof(child_errno));
	while (n < 0 && errno == EINTR);
	close(pipefd[0]);
	if (n > 0) {
		/* The child never reached exec; reap it now. */
		waitpid(p, NULL, 0);
		return child_errno > 0 ? -child_errno : -EIO;
	}

	/* Not reaped yet, so the pid cannot have been reused. */
	fd = pidfd_open(p, 0);
	if (fd < 0) {
		ret = -errno;
		kill(p, SIGKILL);
		waitpid(p, NULL, 0);
		return ret;
	}
	*pid = p;
	*pidfd = fd;
	return 0;

err_pipe:
	close(pipefd[0]);
	close(pipefd[1]);
	return ret;
}
