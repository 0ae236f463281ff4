// SPDX-License-Identifier: GPL-2.0-only
/* Control segment: create/open round trip and every header validation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"

#define PG  SHM_PAGE_SIZE
#define MiB (1024ULL * 1024)
#define GiB (1024 * MiB)

static const struct shm_ctl_layout two_regions = {
	.nr_regions = 2,
	.gpa = {0, 4 * GiB},
	.size = {64 * MiB, 16 * MiB + 3 * PG}, /* nr_pages not a multiple of 64 */
};

static void test_round_trip(void **state)
{
	struct shm_ctl c, o;
	const struct shm_ctl_header *h;
	uint64_t *d0, *r1;
	int fd2, seals;
	char link[128], path[64];
	ssize_t n;

	assert_int_equal(shm_ctl_create(&c, &two_regions), 0);
	h = c.hdr;
	assert_int_equal(h->magic, SHM_CTL_MAGIC);
	assert_int_equal(h->version, SHM_CTL_VERSION);
	assert_int_equal(h->page_size, PG);
	assert_int_equal(h->nr_regions, 2);
	assert_int_equal(h->ram_size, 80 * MiB + 3 * PG);
	assert_int_equal(h->total_size, c.size);
	assert_int_equal(c.size % PG, 0);
	assert_int_equal(h->session_size, SHM_SESSION_SIZE);
	assert_int_equal(h->session_off % PG, 0);
	assert_true(h->session_off + h->session_size <= c.size);
	for (unsigned int i = 0; i < 2; i++) {
		const struct shm_ctl_region *cr = &h->regions[i];

		assert_int_equal(cr->gpa, two_regions.gpa[i]);
		assert_int_equal(cr->size, two_regions.size[i]);
		assert_int_equal(cr->nr_pages, two_regions.size[i] / PG);
		assert_int_equal(cr->dirty_off % 64, 0);
		assert_int_equal(cr->received_off % 64, 0);
		assert_true(cr->dirty_off >= PG);
		assert_true(cr->received_off >= cr->dirty_off + SHM_BITMAP_WORDS(cr->nr_pages) * 8);
		assert_int_equal(cr->round_off % 64, 0);
		assert_true(cr->round_off >= cr->received_off + SHM_BITMAP_WORDS(cr->nr_pages) * 8);
		assert_true(cr->round_off + SHM_BITMAP_WORDS(cr->nr_pages) * 8 <= h->session_off);
	}
	seals = fcntl(c.fd, F_GET_SEALS);
	assert_int_equal(seals & (F_SEAL_SHRINK | F_SEAL_GROW), F_SEAL_SHRINK | F_SEAL_GROW);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", c.fd);
	n = readlink(path, link, sizeof(link) - 1);
	assert_true(n > 0);
	link[n] = 0;
	assert_non_null(strstr(link, "memfd:cleave-ctl"));

	d0 = shm_ctl_dirty_bitmap(&c, 0);
	r1 = shm_ctl_received_bitmap(&c, 1);
	assert_non_null(d0);
	assert_non_null(r1);
	assert_int_equal(shm_bitmap_count(d0, h->regions[0].nr_pages), 0);
	shm_bitmap_set(d0, 12345);
	shm_bitmap_set(r1, h->regions[1].nr_pages - 1);
	memcpy(shm_ctl_session(&c), "session", 8);
	assert_null(shm_ctl_dirty_bitmap(&c, 2));
	assert_null(shm_ctl_received_bitmap(&c, SHM_MAX_REGIONS));
	assert_null(shm_ctl_round_bitmap(&c, 2));
	shm_bitmap_set(shm_ctl_round_bitmap(&c, 1), 7);

	/* a second mapping, as a child process would get it */
	fd2 = dup(c.fd);
	assert_int_equal(shm_ctl_open(&o, fd2), 0);
	assert_int_equal(o.size, c.size);
	assert_true(shm_bitmap_test(shm_ctl_dirty_bitmap(&o, 0), 12345));
	assert_int_equal(shm_bitmap_count(shm_ctl_received_bitmap(&o, 1), h->regions[1].nr_pages),
			 1);
	assert_true(shm_bitmap_test(shm_ctl_round_bitmap(&o, 1), 7));
	assert_memory_equal(shm_ctl_session(&o), "session", 8);
	shm_ctl_close(&o);
	assert_int_equal(fcntl(fd2, F_GETFD), -1);
	shm_ctl_close(&c);
	shm_ctl_close(&c);
	assert_null(shm_ctl_session(&c));
	assert_null(shm_ctl_dirty_bitmap(&c, 0));
}

/* The region table is written once: a stray write through any mapping faults. */
static void test_header_read_only(void **state)
{
	struct shm_ctl c, o;
	int status, fd2;
	pid_t pid;

	assert_int_equal(shm_ctl_create(&c, &two_regions), 0);
	fd2 = dup(c.fd);
	assert_int_equal(shm_ctl_open(&o, fd2), 0);
	for (int i = 0; i < 2; i++) {
		struct shm_ctl_header *h = i ? o.base : c.base;

		pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL); /* not cmocka's handler */
			h->regions[0].dirty_off = 0;
			_exit(0); /* the write went through: the test fails */
		}
		assert_int_equal(waitpid(pid, &status, 0), pid);
		/* SIGSEGV normally; ASan may turn the fault into its own report and exit */
		assert_false(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	/* the bitmaps right after the header page stay writable */
	shm_bitmap_set(shm_ctl_dirty_bitmap(&o, 0), 0);
	assert_true(shm_bitmap_test(shm_ctl_dirty_bitmap(&c, 0), 0));
	shm_ctl_close(&o);
	shm_ctl_close(&c);
}

/*
 * A child that can write the memfd rewrites the header behind the mappings
 * (pwrite passes the read-only page): a session area moved elsewhere, a
 * bitmap moved onto the session, more regions.  Every process that
 * validated the header keeps using its own copy.
 */
static void test_header_rewritten_behind(void **state)
{
	struct shm_ctl c, o;
	struct shm_ctl_header evil;
	void *session, *dirty0;
	int fd2;

	assert_int_equal(shm_ctl_create(&c, &two_regions), 0);
	fd2 = dup(c.fd);
	assert_int_equal(shm_ctl_open(&o, fd2), 0);
	session = shm_ctl_session(&c);
	dirty0 = shm_ctl_dirty_bitmap(&o, 0);
	memcpy(&evil, c.base, sizeof(evil));
	evil.session_off = 0; /* onto the header itself */
	evil.regions[0].dirty_off = c.hdr->session_off;
	evil.nr_regions = SHM_MAX_REGIONS;
	assert_int_equal(pwrite(c.fd, &evil, sizeof(evil), 0), (ssize_t)sizeof(evil));
	assert_int_equal(((struct shm_ctl_header *)c.base)->session_off, 0); /* it did land */
	assert_ptr_equal(shm_ctl_session(&c), session);
	assert_ptr_equal(shm_ctl_session(&o), (char *)o.base + c.hdr->session_off);
	assert_ptr_equal(shm_ctl_dirty_bitmap(&o, 0), dirty0);
	assert_int_equal(c.hdr->nr_regions, two_regions.nr_regions);
	assert_null(shm_ctl_dirty_bitmap(&c, 2));
	shm_ctl_close(&o);
	shm_ctl_close(&c);
}

static void test_create_rejects(void **state)
{
	static const struct {
		const char *what;
		struct shm_ctl_layout l;
	} cases[] = {
		{"no regions", {.nr_regions = 0}},
		{"too many", {.nr_regions = SHM_MAX_REGIONS + 1}},
		{"empty region", {.nr_regions = 1, .size = {0}}},
		{"unaligned size", {.nr_regions = 1, .size = {PG + 512}}},
		{"unaligned gpa", {.nr_regions = 1, .gpa = {100}, .size = {PG}}},
		{"wrap", {.nr_regions = 1, .gpa = {UINT64_MAX & ~(PG - 1)}, .size = {2 * PG}}},
		{"overlap", {.nr_regions = 2, .gpa = {0, MiB}, .size = {2 * MiB, MiB}}},
		{"overlap contained", {.nr_regions = 2, .gpa = {MiB, 0}, .size = {PG, 4 * MiB}}},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct shm_ctl c;

		print_message("case: %s\n", cases[i].what);
		assert_int_equal(shm_ctl_create(&c, &cases[i].l), -EINVAL);
		assert_null(c.hdr);
		assert_int_equal(c.fd, -1);
	}
}

/* Corrupts one header field through a private writable mapping, then opens. */
struct corrupt_case {
	const char *what;
	int expect;
	void (*fn)(struct shm_ctl_header *h);
};

static void bad_magic(struct shm_ctl_header *h)
{
	h->magic ^= 1;
}
static void bad_version(struct shm_ctl_header *h)
{
	h->version = SHM_CTL_VERSION + 1;
}
static void bad_page_size(struct shm_ctl_header *h)
{
	h->page_size = 65536;
}
static void bad_total(struct shm_ctl_header *h)
{
	h->total_size += PG;
}
static void no_regions(struct shm_ctl_header *h)
{
	h->nr_regions = 0;
}
static void too_many_regions(struct shm_ctl_header *h)
{
	h->nr_regions = SHM_MAX_REGIONS + 1;
}
static void small_session(struct shm_ctl_header *h)
{
	h->session_size = SHM_SESSION_SIZE - PG;
}
static void session_past_end(struct shm_ctl_header *h)
{
	h->session_off += PG;
}
static void session_unaligned(struct shm_ctl_header *h)
{
	h->session_off -= 64;
}
static void session_wraps(struct shm_ctl_header *h)
{
	h->session_off = UINT64_MAX & ~(PG - 1);
}
static void session_on_header(struct shm_ctl_header *h)
{
	h->session_off = 0;
}
static void dirty_past_end(struct shm_ctl_header *h)
{
	h->regions[1].dirty_off = h->total_size;
}
static void dirty_straddles_end(struct shm_ctl_header *h)
{
	h->regions[1].dirty_off = h->total_size - 64;
}
static void dirty_wraps(struct shm_ctl_header *h)
{
	h->regions[0].dirty_off = UINT64_MAX - 63;
}
static void received_unaligned(struct shm_ctl_header *h)
{
	h->regions[0].received_off += 8;
}
static void round_unaligned(struct shm_ctl_header *h)
{
	h->regions[1].round_off += 8;
}
static void round_over_session(struct shm_ctl_header *h)
{
	h->regions[0].round_off = h->session_off;
}
static void received_on_header(struct shm_ctl_header *h)
{
	h->regions[0].received_off = 64;
}
static void bitmaps_overlap(struct shm_ctl_header *h)
{
	h->regions[1].dirty_off = h->regions[0].received_off;
}
static void bitmap_on_session(struct shm_ctl_header *h)
{
	h->regions[1].received_off = h->session_off;
}
static void bad_nr_pages(struct shm_ctl_header *h)
{
	h->regions[0].nr_pages++;
}
static void bad_ram_size(struct shm_ctl_header *h)
{
	h->ram_size -= PG;
}
static void region_size_unaligned(struct shm_ctl_header *h)
{
	h->regions[1].size += 8;
}
static void regions_overlap(struct shm_ctl_header *h)
{
	h->regions[1].gpa = h->regions[0].gpa + PG;
}
static void huge_region(struct shm_ctl_header *h)
{
	/* bitmap length then exceeds the segment */
	h->ram_size += (1ULL << 40) - h->regions[1].size;
	h->regions[1].size = 1ULL << 40;
	h->regions[1].nr_pages = (1ULL << 40) / PG;
}

static void test_open_rejects_corrupt(void **state)
{
	static const struct corrupt_case cases[] = {
		{"magic", -EPROTO, bad_magic},
		{"version", -EPROTO, bad_version},
		{"page_size", -EPROTO, bad_page_size},
		{"total_size", -EINVAL, bad_total},
		{"nr_regions 0", -EINVAL, no_regions},
		{"nr_regions > max", -EINVAL, too_many_regions},
		{"session_size", -EINVAL, small_session},
		{"session_off past end", -EINVAL, session_past_end},
		{"session_off unaligned", -EINVAL, session_unaligned},
		{"session_off wraps", -EINVAL, session_wraps},
		{"session over header", -EINVAL, session_on_header},
		{"dirty_off past end", -EINVAL, dirty_past_end},
		{"dirty bitmap straddles end", -EINVAL, dirty_straddles_end},
		{"dirty_off wraps", -EINVAL, dirty_wraps},
		{"received_off unaligned", -EINVAL, received_unaligned},
		{"received bitmap over header", -EINVAL, received_on_header},
		{"round_off unaligned", -EINVAL, round_unaligned},
		{"round bitmap over the session area", -EINVAL, round_over_session},
		{"bitmaps overlap", -EINVAL, bitmaps_overlap},
		{"bitmap over session", -EINVAL, bitmap_on_session},
		{"nr_pages", -EINVAL, bad_nr_pages},
		{"ram_size", -EINVAL, bad_ram_size},
		{"region size unaligned", -EINVAL, region_size_unaligned},
		{"regions overlap", -EINVAL, regions_overlap},
		{"region bigger than its bitmap room", -EINVAL, huge_region},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct shm_ctl c, o;
		struct shm_ctl_header *h;
		int fd2;

		print_message("case: %s\n", cases[i].what);
		assert_int_equal(shm_ctl_create(&c, &two_regions), 0);
		h = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, c.fd, 0);
		assert_ptr_not_equal(h, MAP_FAILED);
		cases[i].fn(h);
		munmap(h, PG);
		fd2 = dup(c.fd);
		assert_int_equal(shm_ctl_open(&o, fd2), cases[i].expect);
		assert_null(o.hdr);
		assert_int_equal(o.fd, -1);
		/* the caller keeps the fd on failure */
		assert_int_equal(close(fd2), 0);
		shm_ctl_close(&c);
	}
}

static void test_open_rejects_fd(void **state)
{
	struct shm_ctl o;
	int fd;

	assert_int_equal(shm_ctl_open(&o, -1), -EBADF);
	/* right size, unsealed */
	fd = memfd_create("cleave-ctl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 128 * PG), 0);
	assert_int_equal(shm_ctl_open(&o, fd), -EINVAL);
	/* sealed but zero-filled: no magic */
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	assert_int_equal(shm_ctl_open(&o, fd), -EPROTO);
	close(fd);
	/* too small to hold a header and anything else */
	fd = memfd_create("cleave-ctl", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, PG), 0);
	assert_int_equal(shm_ctl_open(&o, fd), -EINVAL);
	assert_int_equal(ftruncate(fd, 3 * PG + 1), 0);
	assert_int_equal(shm_ctl_open(&o, fd), -EINVAL);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_header_read_only),
		cmocka_unit_test(test_create_rejects),
		cmocka_unit_test(test_open_rejects_corrupt),
		cmocka_unit_test(test_open_rejects_fd),
		cmocka_unit_test(test_header_rewritten_behind),
	};

	log_init("test-shm-ctl");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
