// SPDX-License-Identifier: GPL-2.0-only
/* What cleave run creates before its children: state dir, QMP sockets, guest fd, binaries. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"
#include "tests/util/test-util.h"

struct fixture {
	char dir[64]; /* mkdtemp */
};

static int fixture_setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || test_dir_make(f->dir, "test"))
		return -1;
	*state = f;
	return 0;
}

static int fixture_teardown(void **state)
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

static void test_state_dir_lifecycle(void **state)
{
	struct fixture *f = *state;
	struct run_state_dir d, d2;
	char path[128], sock[160];
	struct stat st;
	int fd;

	path_in(f, "a/b/vm", path, sizeof(path));
	assert_int_equal(run_state_dir_create(&d, path), 0);
	assert_true(d.created);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	/* Same dir, second VM: refused while the first holds it. */
	assert_int_equal(run_state_dir_create(&d2, path), -EBUSY);
	assert_int_equal(stat(path, &st), 0);
	/* One private directory per pair of processes that talk. */
	for (unsigned int p = 0; p < RUN_NR_PAIRS; p++) {
		assert_int_equal(strncmp(d.pairs[p], path, strlen(path)), 0);
		assert_int_equal(stat(d.pairs[p], &st), 0);
		assert_true(S_ISDIR(st.st_mode));
		assert_int_equal(st.st_mode & 0777, 0700);
	}
	run_state_dir_url(&d, RUN_PAIR_VCPU_MONITOR, "events", sock, sizeof(sock));
	assert_int_equal(strncmp(sock, "ipc://", 6), 0);
	assert_string_equal(sock + 6 + strlen(path), "/vcpu-mon/events");
	/* The longest such path is the one the options allow for. */
	assert_int_equal(strlen(sock + 6) - strlen(path) - 1, strlen(RUN_STATE_SOCK_NAME));
	/* A socket left by a child is removed with the dir. */
	fd = open(sock + 6, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	run_state_dir_remove(&d);
	assert_int_equal(stat(path, &st), -1);
	run_state_dir_remove(&d); /* twice is harmless */
}

static void test_state_dir_existing(void **state)
{
	struct fixture *f = *state;
	struct run_state_dir d;
	char path[128];
	struct stat st;

	path_in(f, "mine", path, sizeof(path));
	assert_int_equal(mkdir(path, 0755), 0);
	assert_int_equal(run_state_dir_create(&d, path), 0);
	assert_false(d.created);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	run_state_dir_remove(&d);
	/* Not ours to remove: it existed before. */
	assert_int_equal(stat(path, &st), 0);
}

/* A pair's directory left by a killed run is reused; one that is not ours, or a link, is not. */
static void test_state_dir_pairs_stale(void **state)
{
	struct fixture *f = *state;
	struct run_state_dir d;
	char path[128], pair[160];
	struct stat st;

	path_in(f, "vm", path, sizeof(path));
	assert_int_equal(mkdir(path, 0700), 0);
	snprintf(pair, sizeof(pair), "%s/vcpu-mig", path);
	assert_int_equal(mkdir(pair, 0755), 0);
	assert_int_equal(run_state_dir_create(&d, path), 0);
	assert_int_equal(stat(pair, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0700);
	run_state_dir_remove(&d);
	assert_int_equal(stat(pair, &st), -1);

	/* A symbolic link where a pair's directory goes: it could lead anywhere. */
	assert_int_equal(symlink("/tmp", pair), 0);
	assert_int_equal(run_state_dir_create(&d, path), -EPERM);
	assert_int_equal(lstat(pair, &st), 0);
	assert_true(S_ISLNK(st.st_mode));
	assert_int_equal(unlink(pair), 0);
	/* Refused, and nothing half-made is left behind but what was there. */
	snprintf(pair, sizeof(pair), "%s/vcpu-mon", path);
	assert_int_equal(stat(pair, &st), -1);
	if (geteuid() == 0) {
		snprintf(pair, sizeof(pair), "%s/mig-mon", path);
		assert_int_equal(mkdir(pair, 0700), 0);
		assert_int_equal(chown(pair, 65534, 65534), 0);
		assert_int_equal(run_state_dir_create(&d, path), -EPERM);
		assert_int_equal(rmdir(pair), 0);
	}
	assert_int_equal(run_state_dir_create(&d, path), 0);
	run_state_dir_remove(&d);
}

static void test_state_dir_errors(void **state)
{
	struct fixture *f = *state;
	struct run_state_dir d;
	char path[128];
	int fd;

	path_in(f, "file", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	assert_true(fd >= 0);
	close(fd);
	assert_int_equal(run_state_dir_create(&d, path), -EPERM);
	path_in(f, "file/sub", path, sizeof(path));
	assert_int_equal(run_state_dir_create(&d, path), -ENOTDIR);
	if (geteuid() == 0) {
		path_in(f, "other", path, sizeof(path));
		assert_int_equal(mkdir(path, 0700), 0);
		assert_int_equal(chown(path, 65534, 65534), 0);
		assert_int_equal(run_state_dir_create(&d, path), -EPERM);
	}
}

static void ep_unix(struct run_endpoint *ep, const struct fixture *f, const char *name)
{
	memset(ep, 0, sizeof(*ep));
	ep->kind = RUN_EP_UNIX;
	path_in(f, name, ep->path, sizeof(ep->path));
	ep->text = ep->path;
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), ret;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ret = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	return ret;
}

static void test_qmp_unix(void **state)
{
	struct fixture *f = *state;
	struct run_endpoint ep;
	struct stat st;
	int fd, fd2;

	ep_unix(&ep, f, "qmp.sock");
	assert_int_equal(run_qmp_listen(&ep, &fd), 0);
	assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
	assert_int_equal(stat(ep.path, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(unix_connect(ep.path), 0);
	/* In use: never stolen from a live listener. */
	assert_int_equal(run_qmp_listen(&ep, &fd2), -EADDRINUSE);
	run_qmp_close(&ep, fd);
	assert_int_equal(stat(ep.path, &st), -1);
}

static void test_qmp_unix_stale(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct fixture *f = *state;
	struct run_endpoint ep;
	int fd, old;

	ep_unix(&ep, f, "stale.sock");
	strcpy(sa.sun_path, ep.path);
	old = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(bind(old, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(old); /* a crashed VM's leftover: file without a listener */
	assert_int_equal(run_qmp_listen(&ep, &fd), 0);
	assert_int_equal(unix_connect(ep.path), 0);
	run_qmp_close(&ep, fd);
}

static void test_qmp_unix_errors(void **state)
{
	struct fixture *f = *state;
	struct run_endpoint ep;
	int fd;

	ep_unix(&ep, f, "regular");
	fd = open(ep.path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(run_qmp_listen(&ep, &fd), -EEXIST);
	ep_unix(&ep, f, "nodir/qmp.sock");
	assert_int_equal(run_qmp_listen(&ep, &fd), -ENOENT);
}

static void test_qmp_tcp(void **state)
{
	struct run_endpoint ep = {.kind = RUN_EP_TCP, .addr = 0x7f000001, .text = "tcp"};
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd, fd2;

	/* Port 0 (never from the parser) picks a free port for the test. */
	assert_int_equal(run_qmp_listen(&ep, &fd), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	assert_int_equal(ntohl(sa.sin_addr.s_addr), 0x7f000001);
	ep.port = ntohs(sa.sin_port);
	assert_int_equal(run_qmp_listen(&ep, &fd2), -EADDRINUSE);
	run_qmp_close(&ep, fd);
}

static void test_guest_open(void **state)
{
	struct fixture *f = *state;
	char path[128];
	struct stat st;
	int fd, seals;

	path_in(f, "guest.elf", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(run_guest_open(path, &fd), 0);
	close(fd);
	path_in(f, "missing.elf", path, sizeof(path));
	assert_int_equal(run_guest_open(path, &fd), -ENOENT);

	if (!run_guest_embedded_size()) {
		assert_int_equal(run_guest_open(NULL, &fd), -ENOENT);
		return;
	}
	assert_int_equal(run_guest_open(NULL, &fd), 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal((size_t)st.st_size, run_guest_embedded_size());
	seals = fcntl(fd, F_GET_SEALS);
	assert_int_equal(seals & F_SEAL_WRITE, F_SEAL_WRITE);
	assert_int_equal(lseek(fd, 0, SEEK_CUR), 0);
	close(fd);
}

static void test_libexec_find(void **state)
{
	struct fixture *f = *state;
	char buf[256], path[128];
	int fd;

	unsetenv("CLEAVE_LIBEXEC_DIR");
	/* Next to the running binary. */
	assert_int_equal(run_libexec_find("test-launcher-resources", NULL, buf, sizeof(buf)), 0);
	assert_non_null(strstr(buf, "/test-launcher-resources"));
	/* In a build subdir relative to it. */
	assert_int_equal(
		run_libexec_find("test-launcher-resources", "../launcher", buf, sizeof(buf)), 0);
	assert_int_equal(run_libexec_find("cleave-nonexistent", "../x", buf, sizeof(buf)), -ENOENT);

	setenv("CLEAVE_LIBEXEC_DIR", f->dir, 1);
	assert_int_equal(run_libexec_find("cleave-fake", NULL, buf, sizeof(buf)), -ENOENT);
	path_in(f, "cleave-fake", path, sizeof(path));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	assert_int_equal(run_libexec_find("cleave-fake", NULL, buf, sizeof(buf)), -EACCES);
	assert_int_equal(chmod(path, 0700), 0);
	assert_int_equal(run_libexec_find("cleave-fake", NULL, buf, sizeof(buf)), 0);
	assert_string_equal(buf, path);
	/* The override is exclusive: nothing falls back to the build tree. */
	assert_int_equal(run_libexec_find("test-launcher-resources", NULL, buf, sizeof(buf)),
			 -ENOENT);
	unsetenv("CLEAVE_LIBEXEC_DIR");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_state_dir_lifecycle, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_existing, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_pairs_stale, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_state_dir_errors, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qmp_unix, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qmp_unix_stale, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qmp_unix_errors, fixture_setup,
						fixture_teardown),
		cmocka_unit_test_setup_teardown(test_qmp_tcp, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_guest_open, fixture_setup, fixture_teardown),
		cmocka_unit_test_setup_teardown(test_libexec_find, fixture_setup, fixture_teardown),
	};

	log_init("test-resources");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
