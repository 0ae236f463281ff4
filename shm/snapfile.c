// SPDX-License-Identifier: GPL-2.0-only
/*
 * The snapshot file (snapfile.h).  On-disk integers are little-endian,
 * as on every host cleave runs on (x86-64).
 */
#include "shm/snapfile.h"
#include "shm/snapfile-format.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

/* ---- CRC-32C ---------------------------------------------------------------- */

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static bool crc32c_hw;

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		crc32c_table[i] = c;
	}
#if defined(__x86_64__)
	crc32c_hw = __builtin_cpu_supports("sse4.2");
#endif
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const uint8_t *p,
							       size_t len)
{
	uint64_t c = crc;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t w;

		memcpy(&w, p, sizeof(w));
		c = _mm_crc32_u64(c, w);
	}
	for (; len; p++, len--)
		c = _mm_crc32_u8((uint32_t)c, *p);
	return (uint32_t)c;
}
#endif

uint32_t snap_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	pthread_once(&crc32c_once, crc32c_init);
	crc = ~crc;
#if defined(__x86_64__)
	if (crc32c_hw)
		return ~crc32c_sse42(crc, p, len);
#endif
	for (; len; p++, len--)
		crc = crc32c_table[(crc ^ *p) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ---- layout ----------------------------------------------------------------- */

static uint64_t snap_align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static bool snap_all_zero(const void *data, size_t len)
{
	const uint64_t *w = data;

	for (size_t i = 0; i < len / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

static int snap_pread_full(int fd, void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(fd, (uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -EIO; /* the file ends early */
		done += (size_t)n;
	}
	return 0;
}

static int snap_pwrite_full(int fd, const void *buf, size_t len, uint64_t off)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n =
			pwrite(fd, (const uint8_t *)buf + done, len - done, (off_t)(off + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		done += (size_t)n;
	}
	return 0;
}

/* The header of @f; @complete sets the flag. */
static void snap_header_fill(const struct snap_file *f, struct snap_disk_header *h, bool complete)
{
	memset(h, 0, sizeof(*h));
	h->magic = SNAP_MAGIC;
	h->version = SNAP_VERSION;
	h->page_size = SHM_PAGE_SIZE;
	h->chunk_size = SNAP_CHUNK_SIZE;
	h->nr_regions = f->nr_regions;
	for (unsigned int i = 0; i < f->nr_regions; i++) {
		h->regions[i].gpa = f->regions[i].gpa;
		h->regions[i].size = f->regions[i].size;
		h->regions[i].offset = f->regions[i].offset;
	}
	h->crc_offset = f->crc_offset;
	h->nr_chunks = f->nr_chunks;
	h->state_len = f->state_len;
	h->state_crc = f->state_crc;
	h->file_size = f->file_size;
	if (complete) {
		h->flags = SNAP_F_COMPLETE;
		h->crc_table_crc = snap_crc32c(0, f->crc, f->nr_chunks * sizeof(*f->crc));
	}
	h->header_crc = snap_crc32c(0, h, sizeof(*h));
}

static int snap_header_write(const struct snap_file *f, bool complete)
{
	static const uint8_t zero[SNAP_HEADER_SIZE];
	struct snap_disk_header h;
	uint8_t page[SNAP_HEADER_SIZE];

	snap_header_fill(f, &h, complete);
	memcpy(page, zero, sizeof(page));
	memcpy(page, &h, sizeof(h));
	return snap_pwrite_full(f->fd, page, sizeof(page), 0);
}

/* The CRC of an all-zero chunk, or 0 without memory (then no chunk counts as zero). */
static uint32_t snap_zero_crc(void)
{
	uint8_t *zero = calloc(1, SNAP_CHUNK_SIZE);
	uint32_t crc = zero ? snap_crc32c(0, zero, SNAP_CHUNK_SIZE) : 0;

	free(zero);
	return crc;
}

/* ---- writing ---------------------------------------------------------------- */

int snap_create(struct snap_file *f, int fd, const struct shm_ctl_layout *layout)
{
	uint64_t off;
	int ret;

	memset(f, 0, sizeof(*f));
	f->fd = fd;
	if (layout->nr_regions < 1 || layout->nr_regions > SHM_MAX_REGIONS)
		return -EINVAL;
	f->nr_regions = layout->nr_regions;
	for (unsigned int i = 0; i < f->nr_regions; i++) {
		if (!layout->size[i] || layout->size[i] % SNAP_CHUNK_SIZE)
			return -EINVAL;
		f->regions[i].gpa = layout->gpa[i];
		f->regions[i].size = layout->size[i];
		f->regions[i].first_chunk = f->nr_chunks;
		f->nr_chunks += layout->size[i] / SNAP_CHUNK_SIZE;
	}
	f->crc_offset = SNAP_STATE_OFFSET + SNAP_STATE_MAX;
	off = snap_align_up(f->crc_offset + f->nr_chunks * sizeof(uint32_t), SNAP_REGION_ALIGN);
	for (unsigned int i = 0; i < f->nr_regions; i++) {
		f->regions[i].offset = off;
		off += f->regions[i].size; /* chunk sizes keep the next one aligned to 64 KiB */
		off = snap_align_up(off, SNAP_REGION_ALIGN);
	}
	f->file_size = f->regions[f->nr_regions - 1].offset + f->regions[f->nr_regions - 1].size;
	f->crc = malloc(f->nr_chunks * sizeof(*f->crc));
	f->zero_crc = snap_zero_crc();
	if (!f->crc || !f->zero_crc) {
		snap_close(f);
		return -ENOMEM;
	}
	/* Chunks never written are holes: they read, and check, as zero. */
	for (uint64_t c = 0; c < f->nr_chunks; c++)
		f->crc[c] = f->zero_crc;
	ret = ftruncate(fd, (off_t)f->file_size) ? -errno : snap_header_write(f, false);
	if (ret)
		snap_close(f);
	return ret;
}

int snap_write_chunk(struct snap_file *f, unsigned int region, uint64_t chunk, const void *data)
{
	const struct snap_region *r;
	uint64_t off;

	if (region >= f->nr_regions || chunk >= f->regions[region].size / SNAP_CHUNK_SIZE)
		return -EINVAL;
	r = &f->regions[region];
	off = r->offset + chunk * SNAP_CHUNK_SIZE;
	f->crc[r->first_chunk + chunk] = snap_crc32c(0, data, SNAP_CHUNK_SIZE);
	if (snap_all_zero(data, SNAP_CHUNK_SIZE)) {
		/* A hole; an earlier round may have written data here. */
		if (!fallocate(f->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
			       (off_t)SNAP_CHUNK_SIZE))
			return 0;
		if (errno != EOPNOTSUPP)
			return -errno;
		/* A filesystem without holes: the zeros are written. */
	}
	return snap_pwrite_full(f->fd, data, SNAP_CHUNK_SIZE, off);
}

int snap_write_state(struct snap_file *f, const void *blob, size_t len)
{
	if (len > SNAP_STATE_MAX)
		return -EFBIG;
	f->state_len = len;
	f->state_crc = snap_crc32c(0, blob, len);
	return snap_pwrite_full(f->fd, blob, len, SNAP_STATE_OFFSET);
}

int snap_finish(struct snap_file *f)
{
	int ret = snap_pwrite_full(f->fd, f->crc, f->nr_chunks * sizeof(*f->crc), f->crc_offset);

	/* Data first, header last: a header that says complete never points at unwritten data. */
	if (!ret && fdatasync(f->fd))
		ret = -errno;
	if (!ret)
		ret = snap_header_write(f, true);
	if (!ret && fdatasync(f->fd))
		ret = -errno;
	return ret;
}

/* ---- reading ---------------------------------------------------------------- */

/* Tells snap_read_page()'s per-thread chunk caches of different opens apart. */
static atomic_uint_fast64_t snap_generation;

struct snap_cache {
	uint64_t generation; /* 0: empty */
	unsigned int region;
	uint64_t chunk;
	uint8_t data[SNAP_CHUNK_SIZE];
};

static pthread_key_t snap_cache_key;
static pthread_once_t snap_cache_once = PTHREAD_ONCE_INIT;

static void snap_cache_key_init(void)
{
	if (pthread_key_create(&snap_cache_key, free))
		abort(); /* only when the process is out of keys at start */
}

/* This thread's cache, allocated on first use (a thread that never reads has none). */
static struct snap_cache *snap_cache_get(void)
{
	struct snap_cache *c;

	pthread_once(&snap_cache_once, snap_cache_key_init);
	c = pthread_getspecific(snap_cache_key);
	if (!c) {
		c = calloc(1, sizeof(*c));
		if (c && pthread_setspecific(snap_cache_key, c)) {
			free(c);
			c = NULL;
		}
	}
	return c;
}

static int snap_errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return ret;
}

/* The region table of @h: sizes, alignment, order, no overlap, inside the file. */
static int snap_check_regions(struct snap_file *f, const struct snap_disk_header *h, char *err,
			      size_t errlen)
{
	uint64_t chunks = 0, end;

	if (h->nr_regions < 1 || h->nr_regions > SHM_MAX_REGIONS)
		return snap_errf(err, errlen, -EBADMSG, "%u RAM regions (1 to %u)", h->nr_regions,
				 SHM_MAX_REGIONS);
	if (h->nr_chunks > (h->file_size / SNAP_CHUNK_SIZE) || h->crc_offset > h->file_size ||
	    h->crc_offset < SNAP_STATE_OFFSET + h->state_len)
		return snap_errf(err, errlen, -EBADMSG, "the checksum table does not fit");
	end = h->crc_offset + h->nr_chunks * sizeof(uint32_t);
	f->nr_regions = h->nr_regions;
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		const struct snap_disk_region *d = &h->regions[i];

		if (!d->size || d->size % SNAP_CHUNK_SIZE || d->offset % SNAP_REGION_ALIGN ||
		    d->offset < end || d->size > h->file_size || d->offset > h->file_size - d->size)
			return snap_errf(
				err, errlen, -EBADMSG,
				"RAM region %u: %llu bytes at offset %llu: not chunk-sized, "
				"not aligned, overlapping or outside the file",
				i, (unsigned long long)d->size, (unsigned long long)d->offset);
		f->regions[i].gpa = d->gpa;
		f->regions[i].size = d->size;
		f->regions[i].offset = d->offset;
		f->regions[i].first_chunk = chunks;
		chunks += d->size / SNAP_CHUNK_SIZE;
		end = d->offset + d->size;
	}
	if (chunks != h->nr_chunks || end != h->file_size)
		return snap_errf(err, errlen, -EBADMSG,
				 "the region table disagrees with its sizes");
	return 0;
}

int snap_open(struct snap_file *f, int fd, char *err, size_t errlen)
{
	struct snap_disk_header h;
	uint32_t crc;
	struct stat st;
	int ret;

	memset(f, 0, sizeof(*f));
	f->fd = fd;
	if (fstat(fd, &st))
		return snap_errf(err, errlen, -errno, "fstat: %s", strerror(errno));
	ret = snap_pread_full(fd, &h, sizeof(h), 0);
	if (ret)
		return snap_errf(err, errlen, ret, "no snapshot header (%llu bytes)",
				 (unsigned long long)st.st_size);
	if (h.magic != SNAP_MAGIC)
		return snap_errf(err, errlen, -EBADMSG, "not a cleave snapshot");
	crc = h.header_crc;
	h.header_crc = 0;
	if (snap_crc32c(0, &h, sizeof(h)) != crc)
		return snap_errf(err, errlen, -EBADMSG, "the header is corrupted (checksum)");
	if (h.version != SNAP_VERSION)
		return snap_errf(err, errlen, -EPROTO, "snapshot version %u (this cleave reads %u)",
				 h.version, SNAP_VERSION);
	if (h.page_size != SHM_PAGE_SIZE || h.chunk_size != SNAP_CHUNK_SIZE)
		return snap_errf(err, errlen, -EBADMSG, "page size %u, chunk size %u", h.page_size,
				 h.chunk_size);
	if (!(h.flags & SNAP_F_COMPLETE))
		return snap_errf(err, errlen, -ENODATA,
				 "the snapshot is not complete: its save did not finish");
	if (h.state_len > SNAP_STATE_MAX)
		return snap_errf(err, errlen, -EBADMSG, "device state of %llu bytes",
				 (unsigned long long)h.state_len);
	ret = snap_check_regions(f, &h, err, errlen);
	if (ret)
		return ret;
	if ((uint64_t)st.st_size < h.file_size)
		return snap_errf(err, errlen, -EIO, "truncated: %llu bytes, the header says %llu",
				 (unsigned long long)st.st_size, (unsigned long long)h.file_size);
	f->nr_chunks = h.nr_chunks;
	f->crc_offset = h.crc_offset;
	f->state_len = h.state_len;
	f->state_crc = h.state_crc;
	f->file_size = h.file_size;
	f->crc = malloc(f->nr_chunks * sizeof(*f->crc));
	if (!f->crc)
		return snap_errf(err, errlen, -ENOMEM, "no memory for %llu checksums",
				 (unsigned long long)f->nr_chunks);
	ret = snap_pread_full(fd, f->crc, f->nr_chunks * sizeof(*f->crc), f->crc_offset);
	if (!ret && snap_crc32c(0, f->crc, f->nr_chunks * sizeof(*f->crc)) != h.crc_table_crc)
		ret = snap_errf(err, errlen, -EBADMSG, "the checksum table is corrupted");
	else if (ret)
		snap_errf(err, errlen, ret, "reading the checksum table: %s", strerror(-ret));
	if (ret) {
		snap_close(f);
		return ret;
	}
	f->zero_crc = snap_zero_crc();
	f->generation = atomic_fetch_add(&snap_generation, 1) + 1;
	return 0;
}

int snap_next_data(struct snap_file *f, unsigned int region, uint64_t from, uint64_t *start,
		   uint64_t *end)
{
	const struct snap_region *r;
	uint64_t chunks, c, d, h;
	off_t pos;

	if (region >= f->nr_regions)
		return -EINVAL;
	r = &f->regions[region];
	chunks = r->size / SNAP_CHUNK_SIZE;
	c = from / SNAP_CHUNK_PAGES;
	if (c >= chunks)
		return -ENXIO;
	pos = lseek(f->fd, (off_t)(r->offset + c * SNAP_CHUNK_SIZE), SEEK_DATA);
	if (pos < 0 && errno != ENXIO)
		return -errno;
	d = pos < 0 ? chunks : ((uint64_t)pos - r->offset) / SNAP_CHUNK_SIZE;
	if (d > chunks)
		d = chunks;
	/* Skip only the chunks that were written as zero. */
	for (; c < d; c++)
		if (f->crc[r->first_chunk + c] != f->zero_crc)
			break;
	if (c == chunks)
		return -ENXIO;
	if (c < d) {
		/* A hole where data was written: read it, and let its checksum fail. */
		d = c;
		h = d + 1;
	} else {
		pos = lseek(f->fd, (off_t)(r->offset + d * SNAP_CHUNK_SIZE), SEEK_HOLE);
		if (pos < 0)
			return -errno;
		h = ((uint64_t)pos - r->offset + SNAP_CHUNK_SIZE - 1) / SNAP_CHUNK_SIZE;
		if (h > chunks)
			h = chunks;
		if (h <= d)
			h = d + 1;
	}
	*start = d * SNAP_CHUNK_PAGES > from ? d * SNAP_CHUNK_PAGES : from;
	*end = h * SNAP_CHUNK_PAGES;
	return 0;
}

int snap_check_layout(const struct snap_file *f, const struct shm_ctl_layout *layout, char *err,
		      size_t errlen)
{
	if (layout->nr_regions != f->nr_regions)
		return snap_errf(err, errlen, -EINVAL,
				 "the snapshot has %u RAM regions, this VM %u", f->nr_regions,
				 layout->nr_regions);
	for (unsigned int i = 0; i < f->nr_regions; i++)
		if (layout->gpa[i] != f->regions[i].gpa || layout->size[i] != f->regions[i].size)
			return snap_errf(err, errlen, -EINVAL,
					 "RAM region %u: the snapshot has %llu bytes at 0x%llx, "
					 "this VM %llu at 0x%llx",
					 i, (unsigned long long)f->regions[i].size,
					 (unsigned long long)f->regions[i].gpa,
					 (unsigned long long)layout->size[i],
					 (unsigned long long)layout->gpa[i]);
	return 0;
}

int snap_read_page(struct snap_file *f, unsigned int region, uint64_t page, void *buf)
{
	struct snap_cache *c = snap_cache_get();
	uint64_t chunk = page / SNAP_CHUNK_PAGES;
	const uint8_t *src;
	int ret;

	if (!c)
		return -ENOMEM;
	if (region >= f->nr_regions || page >= f->regions[region].size / SHM_PAGE_SIZE)
		return -EINVAL;
	if (c->generation != f->generation || c->region != region || c->chunk != chunk) {
		const struct snap_region *r = &f->regions[region];

		c->generation = 0;
		ret = snap_pread_full(f->fd, c->data, SNAP_CHUNK_SIZE,
				      r->offset + chunk * SNAP_CHUNK_SIZE);
		if (ret)
			return ret;
		if (snap_crc32c(0, c->data, SNAP_CHUNK_SIZE) != f->crc[r->first_chunk + chunk])
			return -EBADMSG;
		c->generation = f->generation;
		c->region = region;
		c->chunk = chunk;
	}
	src = c->data + (page % SNAP_CHUNK_PAGES) * SHM_PAGE_SIZE;
	if (snap_all_zero(src, SHM_PAGE_SIZE))
		return 0;
	memcpy(buf, src, SHM_PAGE_SIZE);
	return 1;
}

int snap_read_chunk(struct snap_file *f, unsigned int region, uint64_t chunk, void *buf)
{
	const struct snap_region *r;
	int ret;

	if (region >= f->nr_regions || chunk >= f->regions[region].size / SNAP_CHUNK_SIZE)
		return -EINVAL;
	r = &f->regions[region];
	ret = snap_pread_full(f->fd, buf, SNAP_CHUNK_SIZE, r->offset + chunk * SNAP_CHUNK_SIZE);
	if (ret)
		return ret;
	return snap_crc32c(0, buf, SNAP_CHUNK_SIZE) == f->crc[r->first_chunk + chunk] ? 0
										      : -EBADMSG;
}

int snap_read_state(struct snap_file *f, void **blob, size_t *len)
{
	void *b = malloc(f->state_len ? f->state_len : 1);
	int ret;

	if (!b)
		return -ENOMEM;
	ret = snap_pread_full(f->fd, b, f->state_len, SNAP_STATE_OFFSET);
	if (!ret && snap_crc32c(0, b, f->state_len) != f->state_crc)
		ret = -EBADMSG;
	if (ret) {
		free(b);
		return ret;
	}
	*blob = b;
	*len = f->state_len;
	return 0;
}

void snap_close(struct snap_file *f)
{
	free(f->crc);
	f->crc = NULL;
}
