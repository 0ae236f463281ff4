// SPDX-License-Identifier: GPL-2.0-only
/*
 * The control segment: one sealed memfd "cleave-ctl" laid out as
 *
 *   0                 struct shm_ctl_header (magic, version, region table),
 *                     alone in its page, which every mapping makes read-only
 *   page 1, then       region 0 dirty, received and round bitmaps, region 1 ...
 *   64-byte aligned
 *   page aligned      session area (SHM_SESSION_SIZE), owned by the migrator
 *   page aligned      end (total_size)
 *
 * shm_ctl_open() trusts nothing in the header: another process wrote it, and
 * a bad offset would turn into an access outside the mapping.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm-internal.h"
#include "shm/shm.h"

#define CTL_ALIGN 64 /* bitmaps start on a cache line: no false sharing with neighbours */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static uint64_t ctl_bitmap_bytes(uint64_t nr_pages)
{
	return align_up(SHM_BITMAP_WORDS(nr_pages) * sizeof(uint64_t), CTL_ALIGN);
}

/* Regions must be page aligned, non-empty and must not overlap in guest-physical space. */
static int ctl_regions_check(unsigned int nr, const uint64_t *gpa, const uint64_t *size)
{
	for (unsigned int i = 0; i < nr; i++) {
		if (!size[i] || size[i] % SHM_PAGE_SIZE || gpa[i] % SHM_PAGE_SIZE) {
			log_err("control segment: region %u gpa 0x%llx size 0x%llx not page "
				"aligned",
				i, (unsigned long long)gpa[i], (unsigned long long)size[i]);
			return -EINVAL;
		}
		if (gpa[i] + size[i] < gpa[i]) {
			log_err("control segment: region %u gpa 0x%llx size 0x%llx wraps", i,
				(unsigned long long)gpa[i], (unsigned long long)size[i]);
			return -EINVAL;
		}
		for (unsigned int j = 0; j < i; j++) {
			if (gpa[i] < gpa[j] + size[j] && gpa[j] < gpa[i] + size[i]) {
				log_err("control segment: regions %u and %u overlap", j, i);
				return -EINVAL;
			}
		}
	}
	return 0;
}

static void ctl_layout_fill(struct shm_ctl_header *h, const struct shm_ctl_layout *layout)
{
	uint64_t off = SHM_PAGE_SIZE;

	memset(h, 0, sizeof(*h));
	h->magic = SHM_CTL_MAGIC;
	h->version = SHM_CTL_VERSION;
	h->page_size = SHM_PAGE_SIZE;
	h->nr_regions = layout->nr_regions;
	for (unsigned int i = 0; i < layout->nr_regions; i++) {
		struct shm_ctl_region *cr = &h->regions[i];

		cr->gpa = layout->gpa[i];
		cr->size = layout->size[i];
		cr->nr_pages = cr->size >> SHM_PAGE_SHIFT;
		cr->dirty_off = off;
		off += ctl_bitmap_bytes(cr->nr_pages);
		cr->received_off = off;
		off += ctl_bitmap_bytes(cr->nr_pages);
		cr->round_off = off;
		off += ctl_bitmap_bytes(cr->nr_pages);
		h->ram_size += cr->size;
	}
	h->session_off = align_up(off, SHM_PAGE_SIZE);
	h->session_size = SHM_SESSION_SIZE;
	h->total_size = h->session_off + h->session_size;
}

/*
 * The header is written once, before any child starts; making its page
 * read-only in every mapping turns a stray write into a fault instead of a
 * corrupted table that the next shm_ctl_open() would reject.
 */
static int ctl_header_protect(void *base)
{
	if (mprotect(base, SHM_PAGE_SIZE, PROT_READ) < 0) {
		int ret = -errno;

		log_err("mprotect control header: %s", strerror(-ret));
		return ret;
	}
	return 0;
}

/* This process's own copy of a header it wrote or validated. */
static int ctl_keep_copy(struct shm_ctl *c, const struct shm_ctl_header *h)
{
	struct shm_ctl_header *copy = malloc(sizeof(*copy));

	if (!copy)
		return -ENOMEM;
	memcpy(copy, h, sizeof(*copy));
	c->hdr = copy;
	return 0;
}

int shm_ctl_create(struct shm_ctl *c, const struct shm_ctl_layout *layout)
{
	struct shm_ctl_header h;
	void *base;
	int fd, ret;

	c->fd = -1;
	c->hdr = NULL;
	c->base = NULL;
	c->size = 0;
	if (layout->nr_regions == 0 || layout->nr_regions > SHM_MAX_REGIONS) {
		log_err("control segment: %u regions, expected 1..%d", layout->nr_regions,
			SHM_MAX_REGIONS);
		return -EINVAL;
	}
	ret = ctl_regions_check(layout->nr_regions, layout->gpa, layout->size);
	if (ret)
		return ret;
	ctl_layout_fill(&h, layout);

	ret = shm_memfd_create_sealed("cleave-ctl", h.total_size, &fd);
	if (ret)
		return ret;
	base = mmap(NULL, h.total_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		log_err("mmap cleave-ctl (%llu bytes): %s", (unsigned long long)h.total_size,
			strerror(-ret));
		goto err_close;
	}
	/* the memfd starts zeroed: every bitmap is empty */
	memcpy(base, &h, sizeof(h));
	ret = ctl_header_protect(base);
	if (!ret)
		ret = ctl_keep_copy(c, &h);
	if (ret)
		goto err_unmap;
	c->fd = fd;
	c->base = base;
	c->size = h.total_size;
	return 0;

err_unmap:
	munmap(base, h.total_size);
err_close:
	close(fd);
	return ret;
}

/* [off, off + len) lies inside a segment of @total bytes, without wrapping. */
static bool ctl_range_ok(uint64_t off, uint64_t len, uint64_t total)
{
	return off <= total && len <= total - off;
}

struct ctl_span {
	const char *what;
	int region; /* -1: not a region's */
	uint64_t off, len;
};

/* "dirty bitmap of region 2", "session area" */
static const char *ctl_span_name(const struct ctl_span *s, char *buf, size_t size)
{
	if (s->region < 0)
		return s->what;
	snprintf(buf, size, "%s %d", s->what, s->region);
	return buf;
}

static int ctl_span_check(const struct ctl_span *s, uint64_t total, uint64_t align)
{
	char name[48];

	if (s->off % align || !ctl_range_ok(s->off, s->len, total)) {
		log_err("control segment: %s at %llu+%llu outside %llu bytes or not %llu-aligned",
			ctl_span_name(s, name, sizeof(name)), (unsigned long long)s->off,
			(unsigned long long)s->len, (unsigned long long)total,
			(unsigned long long)align);
		return -EINVAL;
	}
	return 0;
}

/* Checks the header against the real segment size; see the layout at the top. */
static int ctl_header_validate(const struct shm_ctl_header *h, uint64_t total)
{
	struct ctl_span spans[2 + 3 * SHM_MAX_REGIONS];
	uint64_t gpa[SHM_MAX_REGIONS], size[SHM_MAX_REGIONS], ram = 0;
	unsigned int n = 0;
	int ret;

	if (h->magic != SHM_CTL_MAGIC) {
		log_err("control segment: bad magic 0x%llx", (unsigned long long)h->magic);
		return -EPROTO;
	}
	if (h->version != SHM_CTL_VERSION) {
		log_err("control segment: version %u, this build speaks %u", h->version,
			SHM_CTL_VERSION);
		return -EPROTO;
	}
	if (h->page_size != SHM_PAGE_SIZE) {
		log_err("control segment: page_size %u, expected %llu", h->page_size,
			SHM_PAGE_SIZE);
		return -EPROTO;
	}
	if (h->total_size != total) {
		log_err("control segment: total_size %llu, memfd has %llu",
			(unsigned long long)h->total_size, (unsigned long long)total);
		return -EINVAL;
	}
	if (h->nr_regions == 0 || h->nr_regions > SHM_MAX_REGIONS) {
		log_err("control segment: nr_regions %u, expected 1..%d", h->nr_regions,
			SHM_MAX_REGIONS);
		return -EINVAL;
	}
	if (h->session_size < SHM_SESSION_SIZE) {
		log_err("control segment: session_size %llu, expected at least %d",
			(unsigned long long)h->session_size, SHM_SESSION_SIZE);
		return -EINVAL;
	}
	spans[n++] = (struct ctl_span){"header", -1, 0, SHM_PAGE_SIZE};
	spans[n++] = (struct ctl_span){"session area", -1, h->session_off, h->session_size};
	ret = ctl_span_check(&spans[1], total, SHM_PAGE_SIZE);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < h->nr_regions; i++) {
		const struct shm_ctl_region *cr = &h->regions[i];
		uint64_t len = SHM_BITMAP_WORDS(cr->nr_pages) * sizeof(uint64_t);

		if (cr->nr_pages != cr->size >> SHM_PAGE_SHIFT) {
			log_err("control segment: region %u nr_pages %llu, size %llu", i,
				(unsigned long long)cr->nr_pages, (unsigned long long)cr->size);
			return -EINVAL;
		}
		gpa[i] = cr->gpa;
		size[i] = cr->size;
		ram += cr->size;
		spans[n++] =
			(struct ctl_span){"dirty bitmap of region", (int)i, cr->dirty_off, len};
		spans[n++] = (struct ctl_span){"received bitmap of region", (int)i,
					       cr->received_off, len};
		spans[n++] =
			(struct ctl_span){"round bitmap of region", (int)i, cr->round_off, len};
		for (unsigned int k = n - 3; k < n; k++) {
			ret = ctl_span_check(&spans[k], total, CTL_ALIGN);
			if (ret)
				return ret;
		}
	}
	ret = ctl_regions_check(h->nr_regions, gpa, size);
	if (ret)
		return ret;
	if (ram != h->ram_size) {
		log_err("control segment: ram_size %llu, regions add up to %llu",
			(unsigned long long)h->ram_size, (unsigned long long)ram);
		return -EINVAL;
	}
	/* no two areas may share bytes: a bitmap over the session would corrupt it */
	for (unsigned int i = 0; i < n; i++) {
		for (unsigned int j = 0; j < i; j++) {
			const struct ctl_span *a = &spans[i], *b = &spans[j];

			if (a->len && b->len && a->off < b->off + b->len &&
			    b->off < a->off + a->len) {
				char na[48], nb[48];

				log_err("control segment: %s overlaps %s",
					ctl_span_name(a, na, sizeof(na)),
					ctl_span_name(b, nb, sizeof(nb)));
				return -EINVAL;
			}
		}
	}
	return 0;
}

/* On success @c owns @fd (shm_ctl_close closes it); on error the caller does. */
int shm_ctl_open(struct shm_ctl *c, int fd)
{
	struct shm_ctl_header h;
	struct stat st;
	void *base;
	int ret;

	c->fd = -1;
	c->hdr = NULL;
	c->base = NULL;
	c->size = 0;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		log_err("fstat control fd %d: %s", fd, strerror(-ret));
		return ret;
	}
	if ((uint64_t)st.st_size < 2 * SHM_PAGE_SIZE || st.st_size % SHM_PAGE_SIZE) {
		log_err("control segment: memfd size %lld too small or not page aligned",
			(long long)st.st_size);
		return -EINVAL;
	}
	ret = shm_memfd_check_sealed(fd, (uint64_t)st.st_size, "control");
	if (ret)
		return ret;
	base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (base == MAP_FAILED) {
		ret = -errno;
		log_err("mmap control fd %d: %s", fd, strerror(-ret));
		return ret;
	}
	/* Copied first: what is validated is what is used, whatever the memfd says later. */
	memcpy(&h, base, sizeof(h));
	ret = ctl_header_validate(&h, (uint64_t)st.st_size);
	if (!ret)
		ret = ctl_header_protect(base);
	if (!ret)
		ret = ctl_keep_copy(c, &h);
	if (ret)
		goto err_unmap;
	c->fd = fd;
	c->base = base;
	c->size = (uint64_t)st.st_size;
	return 0;

err_unmap:
	munmap(base, (size_t)st.st_size);
	return ret;
}

void shm_ctl_close(struct shm_ctl *c)
{
	if (c->hdr) {
		munmap(c->base, c->size);
		if (c->fd >= 0)
			close(c->fd);
		free((void *)c->hdr);
	}
	c->hdr = NULL;
	c->base = NULL;
	c->fd = -1;
	c->size = 0;
}

/* NULL for a region the table does not have. */
uint64_t *shm_ctl_dirty_bitmap(const struct shm_ctl *c, unsigned int region)
{
	if (!c->hdr || region >= c->hdr->nr_regions)
		return NULL;
	return (uint64_t *)((char *)c->base + c->hdr->regions[region].dirty_off);
}

uint64_t *shm_ctl_received_bitmap(const struct shm_ctl *c, unsigned int region)
{
	if (!c->hdr || region >= c->hdr->nr_regions)
		return NULL;
	return (uint64_t *)((char *)c->base + c->hdr->regions[region].received_off);
}

uint64_t *shm_ctl_round_bitmap(const struct shm_ctl *c, unsigned int region)
{
	if (!c->hdr || region >= c->hdr->nr_regions)
		return NULL;
	return (uint64_t *)((char *)c->base + c->hdr->regions[region].round_off);
}

void *shm_ctl_session(const struct shm_ctl *c)
{
	if (!c->hdr)
		return NULL;
	return (char *)c->base + c->hdr->session_off;
}
