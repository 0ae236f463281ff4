// SPDX-License-Identifier: GPL-2.0-only
/*
 * The migrator's snapshot directory (cleave run --snapshot-dir): its
 * filter lets it create files relative to the directory's fd, and the
 * filter cannot see the name, so "../x" from that fd is the attack.  In
 * the migrator's jail, with the directory bound as cleave run binds it,
 * a child under the migrator's policy saves a file in the directory but
 * reaches nothing beside or above it; without the jail the same attack
 * succeeds (which is why cleave run warns there).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sandbox/sandbox.h"

/* What the child under the migrator's policy got: 0 or an errno per attempt. */
struct escape_report {
	int setup; /* the jail, the directory's fd, the policy */
	int save;  /* a file created in the directory */
	int up;	   /* openat(dir, "../victim", O_WRONLY|O_TRUNC) */
	int abs;   /* openat(dir, "<absolute path of victim>", ...) */
};

static int try_open(int dir, const char *name, int flags)
{
	int fd = openat(dir, name, flags | O_CLOEXEC, 0600);

	if (fd < 0)
		return errno;
	close(fd);
	return 0;
}

/* In a forked child: @jail (or none), the directory at the migrator's fd, its policy, attempts. */
static void migrator_child(const struct sandbox_jail *jail, const char *snaps, const char *victim,
			   int out)
{
	struct escape_report r = {0};
	int fd;

	if (jail && sandbox_jail_apply(jail))
		r.setup = EPERM;
	fd = r.setup ? -1 : open(snaps, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!r.setup && (fd < 0 || dup3(fd, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, O_CLOEXEC) < 0))
		r.setup = errno;
	if (!r.setup && sandbox_enter(SANDBOX_MIGRATOR))
		r.setup = EACCES;
	if (!r.setup) {
		r.save = try_open(SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, "vm.snap", O_WRONLY | O_CREAT);
		r.up = try_open(SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, "../victim", O_WRONLY | O_TRUNC);
		r.abs = try_open(SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, victim, O_WRONLY | O_TRUNC);
	}
	_exit(write(out, &r, sizeof(r)) == sizeof(r) ? 0 : 1);
}

static struct escape_report run(const struct sandbox_jail *jail, const char *snaps,
				const char *victim)
{
	struct escape_report r = {.setup = EIO};
	int p[2], status;
	pid_t pid;

	assert_int_equal(pipe2(p, O_CLOEXEC), 0);
	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(p[0]);
		migrator_child(jail, snaps, victim, p[1]);
	}
	close(p[1]);
	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		r.setup = EIO;
	close(p[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return r;
}

static void victim_write(const char *victim)
{
	int fd = open(victim, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, "intact", 6), 6);
	close(fd);
}

static off_t file_size(const char *path)
{
	struct stat st;

	return stat(path, &st) ? -1 : st.st_size;
}

static void test_escape(void **state)
{
	char top[] = "/tmp/cleave-snapjail-XXXXXX", snaps[64], victim[64], saved[80], cmd[96];
	struct escape_report r;
	struct sandbox_jail jail;
	int holder = -1;

	(void)state;
	if (!sandbox_jail_supported()) {
		print_message("no namespaces or mounts here (not root?): jail not tested\n");
		skip();
	}
	unsetenv(SANDBOX_ENV_DISABLE);
	assert_non_null(mkdtemp(top));
	snprintf(snaps, sizeof(snaps), "%s/snaps", top);
	snprintf(victim, sizeof(victim), "%s/victim", top);
	snprintf(saved, sizeof(saved), "%s/vm.snap", snaps);
	assert_int_equal(mkdir(snaps, 0700), 0);

	/* Without the jail: the attack works (the test can tell). */
	victim_write(victim);
	r = run(NULL, snaps, victim);
	assert_int_equal(r.setup, 0);
	assert_int_equal(r.save, 0);
	assert_int_equal(r.up, 0);
	assert_int_equal(file_size(victim), 0);

	/* In the migrator's jail, the directory bound writable as cleave run binds it. */
	victim_write(victim);
	unlink(saved);
	assert_int_equal(sandbox_jail_pid_ns_create(&holder), 0);
	assert_int_equal(sandbox_jail_init(&jail, SANDBOX_MIGRATOR, "/proc/self/exe"), 0);
	assert_int_equal(sandbox_jail_bind(&jail, snaps, true, false), 0);
	r = run(&jail, snaps, victim);
	sandbox_jail_fini(&jail);
	sandbox_jail_pid_ns_destroy(holder);
	assert_int_equal(r.setup, 0);
	assert_int_equal(r.save, 0);
	assert_int_equal(file_size(saved), 0); /* made in the host's directory */
	if (!r.up || !r.abs)
		fail_msg("escaped the snapshot directory: ../victim %s, absolute %s",
			 strerror(r.up), strerror(r.abs));
	assert_int_equal(file_size(victim), 6);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", top);
	assert_int_equal(system(cmd), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
