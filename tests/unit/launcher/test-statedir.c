// SPDX-License-Identifier: GPL-2.0-only
/*
 * The state dir's path, component by component (launcher/statedir.c): a
 * directory another user owns, one others may write, or a symbolic link
 * anywhere on the path is refused with a message naming it, and nothing is
 * created below it.  This is the attack of a user who creates
 * /tmp/cleave-<uid> before cleave does, to swap the state dir and take its
 * sockets; it is replayed inside a private scratch dir.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"
#include "tests/util/test-util.h"

struct fixture {
	char dir[64]; /* mkdtemp: ours, 0700, in sticky /tmp */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || test_dir_make(f->dir, "statedir"))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (test_dir_remove(f->dir))
		return -1;
	free(f);
	return 0;
}

static void path_in(const struct fixture *f, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", f->dir, name);
}

/* run_state_dir_create() with what it logs captured into @msg. */
static int create_logged(struct run_state_dir *d, const char *path, char *msg, size_t len)
{
	int p[2], saved, ret;
	ssize_t n;

	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	dup2(p[1], STDERR_FILENO);
	ret = run_state_dir_create(d, path);
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(p[1]);
	n = read(p[0], msg, len - 1);
	msg[n > 0 ? n : 0] = '\0';
	close(p[0]);
	return ret;
}

static bool exists(const char *path)
{
	struct stat st;

	return lstat(path, &st) == 0;
}

/* Refused with @err and a message holding @want. */
static void expect_refused(const char *path, int err, const char *want)
{
	struct run_state_dir d;
	char msg[1024];

	assert_int_equal(create_logged(&d, path, msg, sizeof(msg)), err);
	if (!strstr(msg, want))
		fail_msg("%s: message '%s' does not say '%s'", path, msg, want);
}

static void test_good_paths(void **state)
{
	struct fixture *f = *state;
	char path[128], part[128];
	struct run_state_dir d;
	struct stat st;

	/* Missing components: created 0700 each. */
	path_in(f, "cleave-1000/vm", path, sizeof(path));
	assert_int_equal(run_state_dir_create(&d, path), 0);
	assert_true(d.created);
	path_in(f, "cleave-1000", part, sizeof(part));
	assert_int_equal(stat(part, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	run_state_dir_remove(&d);
	assert_false(exists(path));

	/* Existing parents of ours, readable by all but writable by us only; a sticky one. */
	path_in(f, "shared", part, sizeof(part));
	assert_int_equal(mkdir(part, 0700), 0);
	assert_int_equal(chmod(part, 0755), 0);
	path_in(f, "shared/tmp", part, sizeof(part));
	assert_int_equal(mkdir(part, 0700), 0);
	assert_int_equal(chmod(part, 01777), 0);
	path_in(f, "shared/tmp/vm", path, sizeof(path));
	assert_int_equal(run_state_dir_create(&d, path), 0);
	run_state_dir_remove(&d);

	/* A relative path is walked from the working directory's real path. */
	assert_int_equal(chdir(f->dir), 0);
	assert_int_equal(run_state_dir_create(&d, "./rel/vm"), 0);
	path_in(f, "rel/vm", path, sizeof(path));
	assert_true(exists(path));
	run_state_dir_remove(&d);
	assert_int_equal(chdir("/"), 0);
}

/*
 * The attack: another user made /tmp/cleave-<uid> first (here: the scratch
 * dir's cleave-1000, chowned to 65534), whatever its mode.
 */
static void test_component_of_another_user(void **state)
{
	struct fixture *f = *state;
	char parent[128], path[160];

	if (geteuid() != 0) {
		print_message("not root: cannot make a directory of another user, not tested\n");
		skip();
	}
	path_in(f, "cleave-1000", parent, sizeof(parent));
	assert_int_equal(mkdir(parent, 0755), 0);
	assert_int_equal(chown(parent, 65534, 65534), 0);
	snprintf(path, sizeof(path), "%s/vm", parent);
	expect_refused(path, -EPERM, "cleave-1000 is owned by uid 65534, neither root nor uid 0");
	assert_false(exists(path));
	/* Open to all, as an attacker would leave it to swap things in later. */
	assert_int_equal(chmod(parent, 0777), 0);
	expect_refused(path, -EPERM, "owned by uid 65534");
	assert_false(exists(path));
	/* The state dir itself theirs, in a parent of ours. */
	path_in(f, "theirs", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(chown(path, 65534, 65534), 0);
	{
		struct run_state_dir d;
		char msg[512];

		assert_int_equal(create_logged(&d, path, msg, sizeof(msg)), -EPERM);
		assert_non_null(strstr(msg, "theirs is owned by uid 65534, not by uid 0"));
	}
}

static void test_writable_component(void **state)
{
	struct fixture *f = *state;
	char dir[128], path[160];

	path_in(f, "group-writable", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0770), 0);
	snprintf(path, sizeof(path), "%s/vm", dir);
	expect_refused(path, -EPERM, "group-writable is writable by its group (mode 0770");
	assert_false(exists(path));

	path_in(f, "world-writable", dir, sizeof(dir));
	assert_int_equal(mkdir(dir, 0700), 0);
	assert_int_equal(chmod(dir, 0777), 0);
	snprintf(path, sizeof(path), "%s/deeper/vm", dir);
	expect_refused(path, -EPERM, "world-writable is writable by everyone (mode 0777");
	snprintf(path, sizeof(path), "%s/deeper", dir);
	assert_false(exists(path));
}

static void test_symlink_component(void **state)
{
	struct fixture *f = *state;
	char real[128], link[128], path[160];

	path_in(f, "real", real, sizeof(real));
	assert_int_equal(mkdir(real, 0700), 0);
	path_in(f, "link", link, sizeof(link));
	assert_int_equal(symlink(real, link), 0);
	/* Through a link on the way ... */
	snprintf(path, sizeof(path), "%s/vm", link);
	expect_refused(path, -ELOOP, "link is a symbolic link");
	snprintf(path, sizeof(path), "%s/vm", real);
	assert_false(exists(path));
	/* ... or as the state dir itself. */
	expect_refused(link, -ELOOP, "link is a symbolic link");
	assert_true(exists(link)); /* not ours to remove */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(test_component_of_another_user, setup, teardown),
		cmocka_unit_test_setup_teardown(test_writable_component, setup, teardown),
		cmocka_unit_test_setup_teardown(test_symlink_component, setup, teardown),
	};

	log_init("test-statedir");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
