// SPDX-License-Identifier: GPL-2.0-only
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "tests/util/test-util.h"

int64_t test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void test_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

char *test_file_read(const char *path)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = fopen(path, "r");

	if (!f)
		return strdup("");
	if (getdelim(&buf, &len, '\0', f) < 0) {
		free(buf);
		buf = strdup("");
	}
	fclose(f);
	return buf;
}

void test_require_kvm(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		close(fd);
		return;
	}
	printf("SKIP: no usable /dev/kvm (%s)\n", strerror(errno));
	fflush(stdout);
	exit(77);
}

void test_require_fault_injection(void)
{
	const char *on = getenv("CLEAVE_TEST_FAULT_INJECTION");

	if (on && !strcmp(on, "1"))
		return;
	printf("SKIP: cleave-migrator built without -Dfault_injection=true\n");
	fflush(stdout);
	exit(77);
}

void test_require_nofile(unsigned long need)
{
	struct rlimit rl;

	/* A failing call is a broken host, not a missing precondition: fail. */
	if (getrlimit(RLIMIT_NOFILE, &rl)) {
		fprintf(stderr, "getrlimit(RLIMIT_NOFILE): %s\n", strerror(errno));
		exit(1);
	}
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		printf("SKIP: RLIMIT_NOFILE hard limit %lu, this test needs %lu descriptors "
		       "(raise it: ulimit -Hn %lu)\n",
		       (unsigned long)rl.rlim_max, need, need);
		fflush(stdout);
		exit(77);
	}
	rl.rlim_cur = rl.rlim_max;
	if (setrlimit(RLIMIT_NOFILE, &rl)) {
		fprintf(stderr, "setrlimit(RLIMIT_NOFILE, %lu): %s\n", (unsigned long)rl.rlim_max,
			strerror(errno));
		exit(1);
	}
}

int test_dir_make(char dir[64], const char *name)
{
	if (snprintf(dir, 64, "/tmp/cleave-%s-XXXXXX", name) >= 64)
		return -ENAMETOOLONG;
	return mkdtemp(dir) ? 0 : -errno;
}

static int remove_one(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st;
	(void)type;
	(void)ftw;
	return remove(path) ? -errno : 0;
}

int test_dir_remove(const char *dir)
{
	/* Depth first, not following symlinks (a test may plant one). */
	int ret = nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);

	return ret == -1 ? -errno : ret; /* else 0, or remove_one's -errno */
}

int test_proc_fd_count(pid_t pid)
{
	char path[64];
	struct dirent *d;
	DIR *dir;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dir = opendir(path);
	if (!dir)
		return -errno;
	while ((d = readdir(dir)))
		n += d->d_name[0] != '.';
	closedir(dir);
	return n;
}
