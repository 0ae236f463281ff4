// SPDX-License-Identifier: GPL-2.0-only
/*
 * The snapshot file (shm/snapfile.c): a round trip from two writer threads,
 * holes for zero chunks, CRC-32C against a bitwise reference, and every
 * kind of bad file: empty, foreign, corrupted header, other version,
 * incomplete save, truncated, corrupted checksum table, corrupted chunk,
 * corrupted device state, a file that shrinks while it is read, another
 * VM's layout, a region table that does not fit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shm/snapfile.h"

#define MIB (1ull << 20)

/*
 * Where the header's fields lie (shm/snapfile.c, struct snap_disk_header),
 * to forge headers with a valid checksum; test_header_offsets checks them
 * against a real file first.
 */
#define H_VERSION    8
#define H_REGION0    24 /* gpa, size, offset: 8 bytes each */
#define H_CRC_OFFSET 216
#define H_HEADER_CRC 264
#define H_SIZE	     272

static const struct shm_ctl_layout layout = {
	.nr_regions = 2,
	.gpa = {0, 4096 * MIB},
	.size = {8 * MIB, 4 * MIB},
};

struct fixture {
	char path[64];
	int fd;
	uint8_t *image[2]; /* what each region holds */
	uint8_t state[3000];
};

/* Chunk c of region r: every 3rd chunk zero, the rest data with a zero page in the middle. */
static void image_fill(uint8_t *img, uint64_t size, unsigned int seed)
{
	for (uint64_t c = 0; c < size / SNAP_CHUNK_SIZE; c++) {
		uint8_t *chunk = img + c * SNAP_CHUNK_SIZE;

		if (c % 3 == 1)
			continue;
		for (uint64_t i = 0; i < SNAP_CHUNK_SIZE; i++)
			chunk[i] = (uint8_t)rand_r(&seed);
		memset(chunk + 5 * SHM_PAGE_SIZE, 0, SHM_PAGE_SIZE);
	}
}

struct writer {
	struct fixture *f;
	struct snap_file *s;
	unsigned int parity;
	int ret;
};

/* Writes the chunks of one parity of both regions: two writers at once, as channels do. */
static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (unsigned int r = 0; r < 2 && !w->ret; r++)
		for (uint64_t c = w->parity; c < layout.size[r] / SNAP_CHUNK_SIZE && !w->ret;
		     c += 2)
			w->ret = snap_write_chunk(w->s, r, c, w->f->image[r] + c * SNAP_CHUNK_SIZE);
	return NULL;
}

/* A complete snapshot of the fixture's images in its file. */
static void write_snapshot(struct fixture *f, bool finish)
{
	struct snap_file s;
	struct writer w[2] = {{f, &s, 0, 0}, {f, &s, 1, 0}};
	pthread_t th[2];

	assert_int_equal(snap_create(&s, f->fd, &layout), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, writer_main, &w[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].ret, 0);
	}
	assert_int_equal(snap_write_state(&s, f->state, sizeof(f->state)), 0);
	if (finish)
		assert_int_equal(snap_finish(&s), 0);
	snap_close(&s);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	strcpy(f->path, "/tmp/cleave-snap-XXXXXX");
	f->fd = mkstemp(f->path);
	if (f->fd < 0)
		return -1;
	for (int r = 0; r < 2; r++) {
		f->image[r] = calloc(1, layout.size[r]);
		if (!f->image[r])
			return -1;
		image_fill(f->image[r], layout.size[r], 7 + (unsigned int)r);
	}
	for (size_t i = 0; i < sizeof(f->state); i++)
		f->state[i] = (uint8_t)(i * 31 + 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	close(f->fd);
	unlink(f->path);
	free(f->image[0]);
	free(f->image[1]);
	free(f);
	return 0;
}

static uint32_t crc32c_bitwise(const uint8_t *p, size_t len)
{
	uint32_t crc = ~0u;

	for (size_t i = 0; i < len; i++) {
		crc ^= p[i];
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82f63b78u : crc >> 1;
	}
	return ~crc;
}

static void test_crc32c(void **state)
{
	uint8_t buf[1000];
	unsigned int seed = 3;

	(void)state;
	assert_int_equal(snap_crc32c(0, "123456789", 9), 0xe3069283u);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand_r(&seed);
	for (size_t len = 0; len < sizeof(buf); len += 37)
		assert_int_equal(snap_crc32c(0, buf + 1, len - (len ? 1 : 0)),
				 crc32c_bitwise(buf + 1, len - (len ? 1 : 0)));
	/* Chaining: the CRC of a whole is the CRC of its second half after the first. */
	assert_int_equal(snap_crc32c(snap_crc32c(0, buf, 300), buf + 300, 700),
			 snap_crc32c(0, buf, 1000));
}

/* What we read is what was written; zero chunks are holes on disk. */
static void test_roundtrip(void **state)
{
	struct fixture *f = *state;
	uint64_t data_bytes = 0, on_disk;
	uint8_t *page = malloc(SHM_PAGE_SIZE);
	struct snap_file s;
	struct stat st;
	char err[256];
	void *blob;
	size_t len;

	write_snapshot(f, true);
	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), 0);
	assert_int_equal(snap_check_layout(&s, &layout, err, sizeof(err)), 0);
	for (unsigned int r = 0; r < 2; r++) {
		for (uint64_t p = 0; p < layout.size[r] / SHM_PAGE_SIZE; p++) {
			const uint8_t *want = f->image[r] + p * SHM_PAGE_SIZE;
			bool zero = true;
			int ret = snap_read_page(&s, r, p, page);

			for (size_t i = 0; i < SHM_PAGE_SIZE && zero; i++)
				zero = !want[i];
			assert_int_equal(ret, zero ? 0 : 1);
			if (!zero)
				assert_memory_equal(page, want, SHM_PAGE_SIZE);
		}
		for (uint64_t c = 0; c < layout.size[r] / SNAP_CHUNK_SIZE; c++)
			data_bytes += c % 3 == 1 ? 0 : SNAP_CHUNK_SIZE;
	}
	assert_int_equal(snap_read_page(&s, 1, layout.size[1] / SHM_PAGE_SIZE, page), -EINVAL);
	assert_int_equal(snap_read_page(&s, 2, 0, page), -EINVAL);
	assert_int_equal(snap_read_state(&s, &blob, &len), 0);
	assert_int_equal(len, sizeof(f->state));
	assert_memory_equal(blob, f->state, len);
	free(blob);
	snap_close(&s);
	/* Sparse: data chunks, the header, the state and the table, and 1 % more at most. */
	assert_int_equal(fstat(f->fd, &st), 0);
	on_disk = (uint64_t)st.st_blocks * 512;
	print_message("snapshot: %llu bytes of data, %llu on disk, %llu apparent\n",
		      (unsigned long long)data_bytes, (unsigned long long)on_disk,
		      (unsigned long long)st.st_size);
	assert_true(on_disk <= (data_bytes + 4096 + sizeof(f->state) + 4096) * 101 / 100 + 8192);
	assert_true((uint64_t)st.st_size > 2 * data_bytes); /* the apparent size has the holes */
	free(page);
}

/* A chunk written with data, then as zeros (a later round): a hole again, reading zero. */
static void test_rewrite_as_zero(void **state)
{
	struct fixture *f = *state;
	uint8_t *zero = calloc(1, SNAP_CHUNK_SIZE), *page = malloc(SHM_PAGE_SIZE);
	struct snap_file s;
	struct stat st0, st1;
	char err[256];

	write_snapshot(f, false);
	assert_int_equal(snap_create(&s, f->fd, &layout), 0); /* again, over the same file */
	assert_int_equal(snap_write_chunk(&s, 0, 0, f->image[0]), 0);
	assert_int_equal(fstat(f->fd, &st0), 0);
	assert_int_equal(snap_write_chunk(&s, 0, 0, zero), 0);
	assert_int_equal(fstat(f->fd, &st1), 0);
	assert_true(st1.st_blocks < st0.st_blocks);
	assert_int_equal(snap_write_chunk(&s, 0, layout.size[0] / SNAP_CHUNK_SIZE, zero), -EINVAL);
	assert_int_equal(snap_write_state(&s, zero, SNAP_STATE_MAX + 1), -EFBIG);
	assert_int_equal(snap_finish(&s), 0);
	snap_close(&s);
	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), 0);
	assert_int_equal(snap_read_page(&s, 0, 0, page), 0);
	snap_close(&s);
	free(zero);
	free(page);
}

static void patch(struct fixture *f, uint64_t off, const void *data, size_t len)
{
	assert_int_equal(pwrite(f->fd, data, len, (off_t)off), (ssize_t)len);
}

/* Recomputes the header's checksum after a forged change. */
static void header_recrc(struct fixture *f)
{
	uint8_t h[H_SIZE];
	uint32_t crc;

	assert_int_equal(pread(f->fd, h, sizeof(h), 0), (ssize_t)sizeof(h));
	memset(h + H_HEADER_CRC, 0, 4);
	crc = snap_crc32c(0, h, sizeof(h));
	patch(f, H_HEADER_CRC, &crc, 4);
}

static uint64_t header_u64(struct fixture *f, uint64_t off)
{
	uint64_t v;

	assert_int_equal(pread(f->fd, &v, sizeof(v), (off_t)off), (ssize_t)sizeof(v));
	return v;
}

/* The forging helpers above match the writer's header. */
static void test_header_offsets(void **state)
{
	struct fixture *f = *state;
	uint32_t before, after;
	struct snap_file s;
	char err[256];

	write_snapshot(f, true);
	assert_int_equal(pread(f->fd, &before, 4, H_HEADER_CRC), 4);
	header_recrc(f);
	assert_int_equal(pread(f->fd, &after, 4, H_HEADER_CRC), 4);
	assert_int_equal(before, after);
	assert_int_equal(header_u64(f, H_REGION0 + 24 + 8), layout.size[1]);
	assert_int_equal(header_u64(f, H_CRC_OFFSET), 4096 + SNAP_STATE_MAX);
	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), 0);
	snap_close(&s);
}

/* snap_open must fail with @ret and a message containing @needle. */
static void expect_open(struct fixture *f, int ret, const char *needle)
{
	struct snap_file s;
	char err[256] = "";

	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), ret);
	if (!strstr(err, needle))
		fail_msg("open error '%s' lacks '%s'", err, needle);
	print_message("refused: %s\n", err);
}

static void test_bad_headers(void **state)
{
	struct fixture *f = *state;
	uint32_t version = SNAP_VERSION + 1;
	uint64_t bad_offset;
	uint8_t byte = 0x55;

	expect_open(f, -EIO, "no snapshot header"); /* empty file */
	write_snapshot(f, false);
	expect_open(f, -ENODATA, "not complete");
	write_snapshot(f, true);
	patch(f, 0, "NOTASNAP", 8);
	expect_open(f, -EBADMSG, "not a cleave snapshot");
	write_snapshot(f, true);
	patch(f, H_REGION0 + 3, &byte, 1);
	expect_open(f, -EBADMSG, "header is corrupted");
	write_snapshot(f, true);
	patch(f, H_VERSION, &version, 4);
	header_recrc(f);
	expect_open(f, -EPROTO, "version 2");
	write_snapshot(f, true);
	bad_offset = header_u64(f, H_REGION0 + 16) + 4096; /* region 0 no longer 2 MiB aligned */
	patch(f, H_REGION0 + 16, &bad_offset, 8);
	header_recrc(f);
	expect_open(f, -EBADMSG, "RAM region 0");
	write_snapshot(f, true);
	assert_int_equal(ftruncate(f->fd, (off_t)(header_u64(f, H_REGION0 + 24 + 16) + 4096)), 0);
	expect_open(f, -EIO, "truncated");
	write_snapshot(f, true);
	patch(f, header_u64(f, H_CRC_OFFSET) + 5, &byte, 1);
	expect_open(f, -EBADMSG, "checksum table");
}

/* Corrupted data is found when it is read, and only there; so is a file that shrank. */
static void test_bad_data(void **state)
{
	struct fixture *f = *state;
	uint8_t *page = malloc(SHM_PAGE_SIZE), *chunk, byte;
	uint64_t r0 = 0, r1 = 0;
	struct shm_ctl_layout other = layout;
	struct snap_file s;
	char err[256];
	void *blob;
	size_t len;

	write_snapshot(f, true);
	r0 = header_u64(f, H_REGION0 + 16);
	r1 = header_u64(f, H_REGION0 + 24 + 16);
	/* Flip a byte in chunk 2 of region 0 (data) and in the device state. */
	assert_int_equal(pread(f->fd, &byte, 1, (off_t)(r0 + 2 * SNAP_CHUNK_SIZE + 100)), 1);
	byte ^= 1;
	patch(f, r0 + 2 * SNAP_CHUNK_SIZE + 100, &byte, 1);
	assert_int_equal(pread(f->fd, &byte, 1, 4096 + 10), 1);
	byte ^= 0x80;
	patch(f, 4096 + 10, &byte, 1);
	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), 0);
	assert_int_equal(snap_read_page(&s, 0, 2 * SNAP_CHUNK_PAGES + 1, page), -EBADMSG);
	assert_int_equal(snap_read_page(&s, 0, 2 * SNAP_CHUNK_PAGES, page), -EBADMSG);
	assert_int_equal(snap_read_page(&s, 0, 0, page), 1); /* chunk 0 is intact */
	assert_memory_equal(page, f->image[0], SHM_PAGE_SIZE);
	/* Whole chunks, as an eager restore reads them. */
	chunk = malloc(SNAP_CHUNK_SIZE);
	assert_non_null(chunk);
	assert_int_equal(snap_read_chunk(&s, 0, 2, chunk), -EBADMSG);
	assert_int_equal(snap_read_chunk(&s, 0, 0, chunk), 0);
	assert_memory_equal(chunk, f->image[0], SNAP_CHUNK_SIZE);
	assert_int_equal(snap_read_chunk(&s, 0, layout.size[0] / SNAP_CHUNK_SIZE, chunk), -EINVAL);
	assert_int_equal(snap_read_state(&s, &blob, &len), -EBADMSG);
	/* Another VM's layout. */
	other.size[1] = 8 * MIB;
	assert_int_equal(snap_check_layout(&s, &other, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "RAM region 1"));
	other.nr_regions = 1;
	assert_int_equal(snap_check_layout(&s, &other, err, sizeof(err)), -EINVAL);
	/* The file shrinks under the reader: region 1's chunks end early. */
	assert_int_equal(ftruncate(f->fd, (off_t)(r1 + SNAP_CHUNK_SIZE / 2)), 0);
	assert_int_equal(snap_read_page(&s, 1, 0, page), -EIO);
	assert_int_equal(snap_read_page(&s, 1, 3 * SNAP_CHUNK_PAGES, page), -EIO);
	assert_int_equal(snap_read_chunk(&s, 1, 0, chunk), -EIO);
	snap_close(&s);
	free(chunk);
	free(page);
}

/*
 * snap_next_data: the data chunks and nothing else, in order; a data chunk
 * punched out of the file is still reported (its checksum then fails).
 */
static void test_next_data(void **state)
{
	struct fixture *f = *state;
	uint64_t chunks = layout.size[0] / SNAP_CHUNK_SIZE, from = 0, start, end, seen = 0;
	uint8_t *page = malloc(SHM_PAGE_SIZE);
	struct snap_file s;
	char err[256];
	int ret;

	write_snapshot(f, true);
	assert_int_equal(snap_open(&s, f->fd, err, sizeof(err)), 0);
	while ((ret = snap_next_data(&s, 0, from, &start, &end)) == 0) {
		assert_true(start >= from && end > start);
		for (uint64_t c = from / SNAP_CHUNK_PAGES; c < start / SNAP_CHUNK_PAGES; c++)
			assert_int_equal(c % 3, 1); /* skipped: zero chunks only */
		for (uint64_t c = start / SNAP_CHUNK_PAGES; c < end / SNAP_CHUNK_PAGES; c++) {
			assert_int_not_equal(c % 3, 1);
			seen++;
		}
		from = end;
	}
	assert_int_equal(ret, -ENXIO);
	for (uint64_t c = 0; c < chunks; c++)
		seen -= c % 3 != 1;
	assert_int_equal(seen, 0); /* every data chunk was reported */
	assert_int_equal(snap_next_data(&s, 0, chunks * SNAP_CHUNK_PAGES, &start, &end), -ENXIO);
	assert_int_equal(snap_next_data(&s, 2, 0, &start, &end), -EINVAL);
	/* Chunk 2 (data) punched out: reported, and its read fails. */
	assert_int_equal(fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
				   (off_t)(s.regions[0].offset + 2 * SNAP_CHUNK_SIZE),
				   (off_t)SNAP_CHUNK_SIZE),
			 0);
	assert_int_equal(snap_next_data(&s, 0, SNAP_CHUNK_PAGES, &start, &end), 0);
	assert_int_equal(start, 2 * SNAP_CHUNK_PAGES);
	assert_int_equal(snap_read_page(&s, 0, start, page), -EBADMSG);
	snap_close(&s);
	free(page);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rewrite_as_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_header_offsets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_headers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_data, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
