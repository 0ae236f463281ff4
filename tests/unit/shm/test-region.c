// SPDX-License-Identifier: GPL-2.0-only
/* RAM memfds: creation, seals, names, open checks, and the SEEK_DATA scan. */
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
#include <sys/mman.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"

#define PG SHM_PAGE_SIZE

static void test_create_sealed(void **state)
{
	struct shm_region r;
	int seals;

	assert_int_equal(shm_region_create(&r, 0, 16 * PG), 0);
	assert_true(r.fd >= 0);
	assert_non_null(r.base);
	assert_int_equal(r.size, 16 * PG);
	assert_int_equal(((char *)r.base)[5 * PG], 0); /* starts as holes */
	memset(r.base, 0xa5, 16 * PG);

	seals = fcntl(r.fd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL),
			 F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	assert_int_equal(ftruncate(r.fd, 32 * PG), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(ftruncate(r.fd, 8 * PG), -1);
	assert_int_equal(errno, EPERM);
	assert_int_equal(fcntl(r.fd, F_ADD_SEALS, F_SEAL_WRITE), -1);
	assert_int_equal(errno, EPERM);
	assert_true(fcntl(r.fd, F_GETFD) & FD_CLOEXEC);
	shm_region_close(&r);
	assert_int_equal(r.fd, -1);
	assert_null(r.base);
	shm_region_close(&r); /* twice is fine */
}

static void test_create_bad_size(void **state)
{
	struct shm_region r;

	assert_int_equal(shm_region_create(&r, 0, 0), -EINVAL);
	assert_int_equal(shm_region_create(&r, 0, PG + 1), -EINVAL);
	assert_int_equal(shm_region_create(&r, 0, UINT64_MAX & ~(PG - 1)), -EINVAL);
	assert_int_equal(r.fd, -1);
	assert_null(r.base);
}

static void test_name_visible(void **state)
{
	struct shm_region r;
	char path[64], link[256], maps_line[512];
	bool in_maps = false;
	ssize_t n;
	FILE *f;

	assert_int_equal(shm_region_create(&r, 3, 4 * PG), 0);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", r.fd);
	n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = 0;
	assert_non_null(strstr(link, "memfd:cleave-ram-3"));

	f = fopen("/proc/self/maps", "r");
	assert_non_null(f);
	while (fgets(maps_line, sizeof(maps_line), f))
		if (strstr(maps_line, "/memfd:cleave-ram-3") &&
		    strtoull(maps_line, NULL, 16) == (uintptr_t)r.base)
			in_maps = true;
	fclose(f);
	assert_true(in_maps);
	shm_region_close(&r);
}

static void test_open_shares(void **state)
{
	struct shm_region a, b;
	int fd2;

	assert_int_equal(shm_region_create(&a, 1, 8 * PG), 0);
	fd2 = dup(a.fd);
	assert_true(fd2 >= 0);
	assert_int_equal(shm_region_open(&b, fd2, 8 * PG, PROT_READ), 0);
	assert_int_equal(b.fd, fd2);
	((char *)a.base)[7 * PG + 1] = 42;
	assert_int_equal(((volatile char *)b.base)[7 * PG + 1], 42);
	shm_region_close(&b);
	/* b closed its own fd only */
	assert_int_equal(fcntl(fd2, F_GETFD), -1);
	assert_true(fcntl(a.fd, F_GETFD) >= 0);
	shm_region_close(&a);
}

/* PROT_NONE: the fd is held and checked, nothing is mapped; hashing reads it all the same. */
static void test_open_unmapped(void **state)
{
	struct shm_region a, b, c;
	int fd2;

	assert_int_equal(shm_region_create(&a, 1, 40 * PG), 0);
	fd2 = dup(a.fd);
	assert_true(fd2 >= 0);
	assert_int_equal(shm_region_open(&b, fd2, 40 * PG, PROT_NONE), 0);
	assert_null(b.base);
	assert_int_equal(b.fd, fd2);
	assert_int_equal(b.size, 40 * PG);
	memset((uint8_t *)a.base + 3 * PG, 7, 2 * PG);
	((uint8_t *)a.base)[33 * PG + 9] = 1; /* past the hash's 32 KiB reads */
	assert_true(shm_region_hash(&a) != 0);
	assert_int_equal(shm_region_hash(&b), shm_region_hash(&a));
	assert_int_equal(shm_region_open(&c, fd2, 8 * PG, PROT_NONE), -EINVAL); /* wrong size */
	shm_region_close(&b);
	assert_int_equal(fcntl(fd2, F_GETFD), -1); /* closed with the region */
	assert_true(fcntl(a.fd, F_GETFD) >= 0);
	shm_region_close(&a);
}

static void test_open_rejects(void **state)
{
	struct shm_region a, b;
	char tmpl[] = "/tmp/cleave-shm-XXXXXX";
	int fd;

	assert_int_equal(shm_region_create(&a, 2, 8 * PG), 0);
	/* wrong size */
	assert_int_equal(shm_region_open(&b, a.fd, 4 * PG, PROT_READ), -EINVAL);
	assert_int_equal(shm_region_open(&b, a.fd, 16 * PG, PROT_READ), -EINVAL);
	/* bad prot or size arguments */
	assert_int_equal(shm_region_open(&b, a.fd, 8 * PG, PROT_WRITE), -EINVAL);
	assert_int_equal(shm_region_open(&b, a.fd, 8 * PG, PROT_READ | PROT_EXEC), -EINVAL);
	assert_int_equal(shm_region_open(&b, a.fd, 0, PROT_READ), -EINVAL);
	assert_null(b.base);
	assert_int_equal(b.fd, -1);
	/* the caller still owns the fd after a failed open */
	assert_true(fcntl(a.fd, F_GETFD) >= 0);
	shm_region_close(&a);

	/* unsealed memfd of the right size */
	fd = memfd_create("unsealed", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 * PG), 0);
	assert_int_equal(shm_region_open(&b, fd, 8 * PG, PROT_READ), -EINVAL);
	/* only one of the two size seals */
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK), 0);
	assert_int_equal(shm_region_open(&b, fd, 8 * PG, PROT_READ), -EINVAL);
	close(fd);

	/* memfd without sealing support */
	fd = memfd_create("nosealing", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 * PG), 0);
	assert_int_equal(shm_region_open(&b, fd, 8 * PG, PROT_READ), -EINVAL);
	close(fd);

	/* a regular file */
	fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	unlink(tmpl);
	assert_int_equal(ftruncate(fd, 8 * PG), 0);
	assert_int_equal(shm_region_open(&b, fd, 8 * PG, PROT_READ), -EINVAL);
	close(fd);

	/* not a descriptor at all */
	assert_int_equal(shm_region_open(&b, -1, 8 * PG, PROT_READ), -EBADF);
}

static void test_close_zeroed(void **state)
{
	struct shm_region r;
	int before = fcntl(0, F_GETFD);

	memset(&r, 0, sizeof(r));
	shm_region_close(&r);
	/* fd 0 was never the region's: left as it was */
	assert_int_equal(fcntl(0, F_GETFD), before);
	assert_int_equal(r.fd, -1);
}

/* Enumerates data ranges of @fd in [0, end) into @out; returns the count. */
static int scan(int fd, uint64_t from, uint64_t end, uint64_t out[][2], int max)
{
	uint64_t s, e;
	int n = 0, ret;

	while ((ret = shm_memfd_next_data(fd, from, end, &s, &e)) == 0) {
		assert_true(n < max);
		assert_true(s >= (from & ~(PG - 1)) && e > s && e <= end);
		out[n][0] = s;
		out[n][1] = e;
		n++;
		from = e;
	}
	assert_int_equal(ret, -ENXIO);
	return n;
}

static void test_next_data(void **state)
{
	const uint64_t npages = 256;
	struct shm_region r;
	uint64_t rng[8][2], s, e;
	char *p;

	assert_int_equal(shm_region_create(&r, 4, npages * PG), 0);
	p = r.base;
	/* all holes */
	assert_int_equal(shm_memfd_next_data(r.fd, 0, r.size, &s, &e), -ENXIO);

	p[3 * PG] = 1;
	p[4 * PG + PG - 1] = 1;
	p[100 * PG + 100] = 1; /* unaligned write: whole page reported */
	p[(npages - 1) * PG] = 1;

	assert_int_equal(scan(r.fd, 0, r.size, rng, 8), 3);
	assert_int_equal(rng[0][0], 3 * PG);
	assert_int_equal(rng[0][1], 5 * PG);
	assert_int_equal(rng[1][0], 100 * PG);
	assert_int_equal(rng[1][1], 101 * PG);
	assert_int_equal(rng[2][0], (npages - 1) * PG);
	assert_int_equal(rng[2][1], npages * PG);

	/* @end clamps a range; @from inside a range starts there */
	assert_int_equal(shm_memfd_next_data(r.fd, 4 * PG, 4 * PG + 8, &s, &e), 0);
	assert_int_equal(s, 4 * PG);
	assert_int_equal(e, 4 * PG + 8);
	assert_int_equal(shm_memfd_next_data(r.fd, 5 * PG, 100 * PG, &s, &e), -ENXIO);
	assert_int_equal(shm_memfd_next_data(r.fd, 50 * PG, 50 * PG, &s, &e), -ENXIO);
	assert_int_equal(shm_memfd_next_data(r.fd, 101 * PG, npages * PG, &s, &e), 0);
	assert_int_equal(s, (npages - 1) * PG);
	/* past the end of the file */
	assert_int_equal(shm_memfd_next_data(r.fd, npages * PG, UINT64_MAX, &s, &e), -ENXIO);
	assert_int_equal(shm_memfd_next_data(-1, 0, PG, &s, &e), -EBADF);
	shm_region_close(&r);
}

/* Holes and zero pages hash alike; any byte or page position changes the hash. */
static void test_hash(void **state)
{
	struct shm_region a, b;
	uint64_t h;

	assert_int_equal(shm_region_create(&a, 0, 16 * PG), 0);
	assert_int_equal(shm_region_create(&b, 1, 16 * PG), 0);
	assert_int_equal(shm_region_hash(&a), shm_region_hash(&b));
	memset((uint8_t *)b.base + 3 * PG, 0, PG); /* allocated, still zero */
	assert_int_equal(shm_region_hash(&a), shm_region_hash(&b));
	((uint8_t *)a.base)[5 * PG + 17] = 1;
	h = shm_region_hash(&a);
	assert_true(h != shm_region_hash(&b));
	((uint8_t *)b.base)[6 * PG + 17] = 1; /* same byte, other page */
	assert_true(h != shm_region_hash(&b));
	((uint8_t *)b.base)[6 * PG + 17] = 0;
	((uint8_t *)b.base)[5 * PG + 17] = 1;
	assert_int_equal(h, shm_region_hash(&b));
	shm_region_close(&a);
	shm_region_close(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_create_sealed), cmocka_unit_test(test_create_bad_size),
		cmocka_unit_test(test_name_visible),  cmocka_unit_test(test_open_shares),
		cmocka_unit_test(test_open_rejects),  cmocka_unit_test(test_close_zeroed),
		cmocka_unit_test(test_next_data),     cmocka_unit_test(test_hash),
		cmocka_unit_test(test_open_unmapped),
	};

	log_init("test-shm-region");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
