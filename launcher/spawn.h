/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * fork+exec of one child with exactly the fds it needs.
 *
 * The child sees fds[i] as SPAWN_FD_BASE + i (plus its stdin/out/err) and
 * nothing else: the parent's other descriptors are closed at exec whatever
 * their CLOEXEC flag.  Its environment holds only the variables cleave's
 * children read (spawn.c's spawn_env_rules, docs/SECURITY.md): whatever
 * else the launcher was started with stays behind.  It gets SIGKILL when the launcher dies, starts
 * with an empty signal mask, and never runs parent code after fork beyond async-signal-safe calls
 * (NNG and other libraries are not fork-safe).
 */
#ifndef CLEAVE_LAUNCHER_SPAWN_H
#define CLEAVE_LAUNCHER_SPAWN_H

#include <sys/types.h>

#define SPAWN_FD_BASE  3
#define SPAWN_MAX_FDS  32
#define SPAWN_MAX_ARGS 64

/* A command line with its fds; the same cmd can be started many times. */
struct spawn_cmd {
	char *path;			/* binary to exec, owned */
	char *argv[SPAWN_MAX_ARGS + 1]; /* owned strings, NULL-terminated */
	unsigned int argc;
	int fds[SPAWN_MAX_FDS]; /* parent's fds, borrowed: caller keeps them open */
	unsigned int nr_fds;
	int err; /* first error of a builder call, reported by start */
	/* Namespaces and new root applied between fork and exec; NULL: none. Borrowed. */
	const struct sandbox_jail *jail;
};

/* init/fini pair.  @path is the binary, @arg0 its argv[0]. */
int spawn_cmd_init(struct spawn_cmd *c, const char *path, const char *arg0);
void spawn_cmd_fini(struct spawn_cmd *c);
/*
 * Builders: append an argument, or hand over a parent fd and get the number
 * the child will see (to put on its command line).  Errors are remembered in
 * c->err and returned by spawn_cmd_start(), so a builder sequence needs no
 * checks in between.
 */
void spawn_cmd_arg(struct spawn_cmd *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int spawn_cmd_fd(struct spawn_cmd *c, int fd);

/*
 * Starts the child.  Returns 0 with *@pid and a pidfd (CLOEXEC) in *@pidfd,
 * or a negative errno: exec failures (missing binary, no permission) are
 * reported here, not as an exit status later.
 */
int spawn_cmd_start(const struct spawn_cmd *c, pid_t *pid, int *pidfd);

#endif
