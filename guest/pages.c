// SPDX-License-Identifier: GPL-2.0-only
/*
 * The test area: `mib` MiB of RAM above the image, split evenly between
 * the working vCPUs.  Every 4 KiB page carries a header (generation, cpu,
 * page index, checksum of the payload); a page is verified against what
 * its vCPU last wrote before it is rewritten, so a page lost, stale or
 * corrupted by a migration is caught.  Ring 3 only.
 */
#include "guest.h"

#define PAGE_MAGIC 0x3145474150564c43ULL /* "CLVPAGE1" */
#define PAGE_WORDS (PAGE_SIZE / 8)
#define HDR_WORDS  4
#define TICK_PAGES 64 /* worker_tick() every 256 KiB */
#define AREA_ALIGN (2 * MIB)

struct page_hdr {
	uint64_t magic;
	uint64_t gen; /* pass that wrote the page */
	uint32_t cpu;
	uint32_t index; /* page index in the area */
	uint64_t csum;	/* of words HDR_WORDS..PAGE_WORDS-1 */
};

_Static_assert(sizeof(struct page_hdr) == HDR_WORDS * 8, "page header is 4 words");

static inline uint64_t rotl(uint64_t v, unsigned n)
{
	return (v << n) | (v >> (64 - n));
}

/* Payload word j of page index written in pass gen: differs for every triple. */
static inline uint64_t pattern(uint64_t gen, uint64_t index, uint64_t j)
{
	return (gen * 0x9e3779b97f4a7c15ULL) ^ (index << 24) ^ (j * 0xff51afd7ed558ccdULL);
}

/* Position-dependent, so swapped words are caught as well as changed ones. */
static uint64_t page_csum(const uint64_t *w)
{
	uint64_t c = 0;

	for (uint64_t j = HDR_WORDS; j < PAGE_WORDS; j++)
		c = rotl(c, 5) ^ w[j];
	return c;
}

/* Lay the area out over the memory map's RAM, above the image. */
void area_layout(void)
{
	const struct hvm_start_info *si = (const void *)(uintptr_t)boot_start_info;
	const struct hvm_memmap_table_entry *e = (const void *)(uintptr_t)si->memmap_paddr;
	uint64_t base = ((uint64_t)(uintptr_t)_end + AREA_ALIGN - 1) & ~(AREA_ALIGN - 1);
	uint64_t need = g.cfg.mib * (MIB / PAGE_SIZE), have = 0;
	struct gcpu *c0 = &g.cpu[0];

	for (uint32_t i = 0; i < si->memmap_entries && have < need; i++) {
		uint64_t s = e[i].addr, end = e[i].addr + e[i].size;
		if (e[i].type != 1)
			continue;
		if (s < base)
			s = base;
		if (end > g.mapped_top)
			end = g.mapped_top;
		s = (s + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
		end &= ~(PAGE_SIZE - 1);
		if (end <= s)
			continue;
		uint64_t pages = (end - s) / PAGE_SIZE;
		if (pages > need - have)
			pages = need - have;
		GUEST_ASSERT(c0, g.next_ext < AREA_MAX_EXTENTS, g.next_ext, i);
		g.ext[g.next_ext++] = (struct area_extent){.gpa = s, .first = have, .pages = pages};
		have += pages;
	}
	/* Not enough RAM above the image for mib=N. */
	GUEST_ASSERT(c0, have == need, have, need);
	g.area_pages = need;
	for (uint32_t i = 0; i < g.ncpus; i++) {
		g.cpu[i].first_page = need * i / g.ncpus;
		g.cpu[i].pages = need * (i + 1) / g.ncpus - g.cpu[i].first_page;
	}
}

static uint64_t *area_page(uint64_t index)
{
	for (uint32_t i = 0; i < g.next_ext; i++) {
		const struct area_extent *x = &g.ext[i];
		if (index < x->first + x->pages)
			return (uint64_t *)(uintptr_t)(x->gpa + (index - x->first) * PAGE_SIZE);
	}
	return NULL;
}

static void page_fail(struct gcpu *c, int line, const char *what, const uint64_t *w, uint64_t want,
		      uint64_t found)
{
	char text[96];

	gsnprintf(text, sizeof(text), "%s gpa=0x%lx want=0x%lx", what, (uint64_t)(uintptr_t)w,
		  want);
	guest_fail(c, "guest/pages.c", line, text, found, want);
}

/* The page must be exactly what this vCPU wrote in pass gen. */
static void page_verify(struct gcpu *c, const uint64_t *w, uint64_t index, uint64_t gen)
{
	const struct page_hdr *h = (const void *)w;

	if (h->magic != PAGE_MAGIC)
		page_fail(c, __LINE__, "page magic", w, PAGE_MAGIC, h->magic);
	if (h->gen != gen)
		page_fail(c, __LINE__, "page generation", w, gen, h->gen);
	if (h->cpu != c->idx || h->index != index)
		page_fail(c, __LINE__, "page owner", w, ((uint64_t)c->idx << 32) | index,
			  ((uint64_t)h->cpu << 32) | h->index);
	uint64_t sum = page_csum(w);
	if (sum != h->csum)
		page_fail(c, __LINE__, "page checksum", w, h->csum, sum);
}

static void page_write(struct gcpu *c, uint64_t *w, uint64_t index, uint64_t gen)
{
	struct page_hdr *h = (void *)w;
	uint64_t sum = 0;

	for (uint64_t j = HDR_WORDS; j < PAGE_WORDS; j++) {
		uint64_t v = pattern(gen, index, j);
		w[j] = v;
		sum = rotl(sum, 5) ^ v;
	}
	*h = (struct page_hdr){.magic = PAGE_MAGIC,
			       .gen = gen,
			       .cpu = c->idx,
			       .index = (uint32_t)index,
			       .csum = sum};
}

/* One pass over the vCPU's share: verify pass gen - 1 (unless first), write gen. */
void pages_write_pass(struct gcpu *c, uint64_t gen, bool verify_prev)
{
	for (uint64_t i = 0; i < c->pages; i++) {
		uint64_t index = c->first_page + i;
		uint64_t *w = area_page(index);
		if (verify_prev)
			page_verify(c, w, index, gen - 1);
		page_write(c, w, index, gen);
		if ((i + 1) % TICK_PAGES == 0)
			worker_tick(c, TICK_PAGES);
	}
	c->gen = gen;
	worker_tick(c, c->pages % TICK_PAGES);
}

/* Idle mode: verify up to max_pages of the share, continuing round-robin. */
void pages_verify_slice(struct gcpu *c, uint64_t max_pages)
{
	if (max_pages > c->pages)
		max_pages = c->pages;
	for (uint64_t n = 0; n < max_pages; n++) {
		uint64_t index = c->first_page + c->verify_next;
		page_verify(c, area_page(index), index, c->gen);
		if (++c->verify_next == c->pages)
			c->verify_next = 0;
	}
}

/* UCALL_WRITES for the share, one per contiguous piece. */
void pages_report(struct gcpu *c, uint64_t gen)
{
	uint64_t lo = c->first_page, hi = c->first_page + c->pages;

	for (uint32_t i = 0; i < g.next_ext; i++) {
		const struct area_extent *x = &g.ext[i];
		uint64_t s = lo > x->first ? lo : x->first;
		uint64_t e = hi < x->first + x->pages ? hi : x->first + x->pages;
		if (e <= s)
			continue;
		uint64_t args[3] = {x->gpa + (s - x->first) * PAGE_SIZE, (e - s) * PAGE_SIZE, gen};
		ucall(c, UCALL_WRITES, args, 3, NULL);
	}
}

/* Test hook: flip one payload bit of the share's last page, as a bad copy would. */
void pages_corrupt(struct gcpu *c)
{
	uint64_t *w = area_page(c->first_page + c->pages - 1);

	w[PAGE_WORDS - 1] ^= 1ULL << 17;
}
