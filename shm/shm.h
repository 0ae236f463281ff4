/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * shm: the memory plane shared by cleave's processes.
 *
 * - Guest RAM regions: one sealed memfd each ("cleave-ram-<n>"), mapped
 *   MAP_SHARED by vcpu-proc and the migrator.
 * - The control segment: one sealed memfd ("cleave-ctl") holding a versioned
 *   header, the region table, per-region dirty and received bitmaps, and the
 *   migration session area.
 * - Atomic bitmaps, process-shared robust locks, and a SEEK_DATA/SEEK_HOLE
 *   scan of a memfd's allocated ranges.
 *
 * Ownership inside the control segment (one owner creates and destroys each):
 *   header + region table  launcher: written by shm_ctl_create() before any
 *                          child starts, read-only for everyone afterwards.
 *   dirty bitmaps          vcpu-proc sets bits (dirty harvest); the migrator
 *                          consumes them with shm_bitmap_fetch_clear_word().
 *   received bitmaps       the destination migrator: it validates them
 *                          before its first receive thread starts and
 *                          invalidates them after the last one is joined.
 *   round bitmaps          the migrator, one side at a time: the pages of
 *                          the migration round not yet acknowledged (the
 *                          source: queued; the destination: landed), so a
 *                          restarted migrator knows what was in flight.
 *   session area           the migrator: layout defined in migrator/, guarded
 *                          by the robust lock at its start.
 * Return values: 0 or a negative errno, as everywhere in cleave.
 */
#ifndef CLEAVE_SHM_H
#define CLEAVE_SHM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_PAGE_SIZE	 4096ULL
#define SHM_PAGE_SHIFT	 12
#define SHM_MAX_REGIONS	 8
#define SHM_CTL_MAGIC	 0x4c54434556414c43ULL /* "CLAVECTL" */
#define SHM_CTL_VERSION	 2
#define SHM_SESSION_SIZE (256 * 1024) /* bytes reserved for the migrator */

/* ---- guest RAM regions ------------------------------------------------ */

/* A memfd, mapped or not.  Owned by whoever called create/open; close unmaps. */
struct shm_region {
	int fd;	       /* memfd, -1 when closed */
	void *base;    /* MAP_SHARED mapping of the whole memfd; NULL when closed or unmapped */
	uint64_t size; /* bytes, multiple of SHM_PAGE_SIZE */
};

/*
 * Creates memfd "cleave-ram-<index>" (MFD_CLOEXEC|MFD_ALLOW_SEALING) of
 * @size bytes, seals it F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL and maps it
 * read-write.  The memfd starts as holes (reads as zero, allocates nothing).
 */
int shm_region_create(struct shm_region *r, unsigned int index, uint64_t size);
/*
 * Maps an inherited memfd.  Fails with -EINVAL if its size is not @size or
 * it lacks the grow/shrink seals, so a mapping can never be truncated away.
 * @prot is PROT_READ or PROT_READ|PROT_WRITE, or PROT_NONE: not mapped
 * (base NULL), for a process that reaches RAM with pread/pwrite/splice only.
 * On success @r owns @fd (shm_region_close closes it); on failure the
 * caller still owns it.
 */
int shm_region_open(struct shm_region *r, int fd, uint64_t size, int prot);
/* Unmaps and closes; safe on a closed or zeroed region. */
void shm_region_close(struct shm_region *r);

/*
 * Finds the first allocated range of @fd at or after @from and before @end
 * (lseek SEEK_DATA/SEEK_HOLE), page aligned.  Returns 0 with the range in
 * [*start, *stop), or -ENXIO when the rest is a hole.
 */
int shm_memfd_next_data(int fd, uint64_t from, uint64_t end, uint64_t *start, uint64_t *stop);

/*
 * A 64-bit digest of the region's contents in which a hole and an all-zero
 * page are the same (neither contributes), so two memfds holding the same
 * bytes hash equal however they were allocated.  For tests and test hooks
 * (destination RAM == source RAM at switchover); not cryptographic.
 * Reads with pread(): works on an unmapped region.
 */
uint64_t shm_region_hash(const struct shm_region *r);

/* ---- bitmaps (arrays of uint64_t words, bit n = page n) ---------------- */

#define SHM_BITS_PER_WORD      64
#define SHM_BITMAP_WORDS(bits) (((bits) + 63) / 64)

/* Atomic (relaxed for set/clear/test; fetch_clear is acq_rel). */
void shm_bitmap_set(uint64_t *map, uint64_t bit);
void shm_bitmap_clear(uint64_t *map, uint64_t bit);
bool shm_bitmap_test(const uint64_t *map, uint64_t bit);
bool shm_bitmap_test_and_set(uint64_t *map, uint64_t bit);
/* Atomically ORs @bits into word @word. */
void shm_bitmap_or_word(uint64_t *map, uint64_t word, uint64_t bits);
/* Atomically clears @bits in word @word (the others may be set meanwhile). */
void shm_bitmap_andnot_word(uint64_t *map, uint64_t word, uint64_t bits);
/* Word @word as it is now (acquire). */
uint64_t shm_bitmap_load_word(const uint64_t *map, uint64_t word);
/* Atomically takes word @word and leaves it zero. */
uint64_t shm_bitmap_fetch_clear_word(uint64_t *map, uint64_t word);
/* Bits set among the first @nbits (not atomic as a whole). */
uint64_t shm_bitmap_count(const uint64_t *map, uint64_t nbits);
/* First set bit >= @start and < @nbits, or @nbits if none. */
uint64_t shm_bitmap_find_next(const uint64_t *map, uint64_t nbits, uint64_t start);
/* First clear bit >= @start and < @nbits, or @nbits if none (received-map gaps). */
uint64_t shm_bitmap_find_next_zero(const uint64_t *map, uint64_t nbits, uint64_t start);
/* Non-atomic bulk helpers for maps nobody else is using yet. */
void shm_bitmap_zero(uint64_t *map, uint64_t nbits);
void shm_bitmap_fill(uint64_t *map, uint64_t nbits);

/* ---- process-shared robust lock ---------------------------------------- */

/* Lives in shared memory; initialised once by the owner of what it guards. */
struct shm_lock {
	pthread_mutex_t mutex; /* PTHREAD_PROCESS_SHARED | PTHREAD_MUTEX_ROBUST */
};

int shm_lock_init(struct shm_lock *l);
/*
 * Returns 0 when acquired, or -EOWNERDEAD when acquired from a holder that
 * died: the caller repairs what the lock guards, then calls
 * shm_lock_mark_consistent() before unlocking (else the lock becomes
 * unusable: later acquires return -ENOTRECOVERABLE).
 */
int shm_lock_acquire(struct shm_lock *l);
/*
 * The same, giving up with -ETIMEDOUT after @timeout_ms: the lock lives in
 * memory other processes write, and a holder that stays alive (wedged, or
 * hostile) must not hold the caller for ever (docs/INVARIANTS.md, 8).
 */
int shm_lock_acquire_timeout(struct shm_lock *l, unsigned int timeout_ms);
void shm_lock_mark_consistent(struct shm_lock *l);
void shm_lock_release(struct shm_lock *l);
/*
 * True when the calling thread holds @l: for assert(shm_lock_held(l)) in
 * code that requires the lock (the userspace lockdep_assert_held).
 */
bool shm_lock_held(struct shm_lock *l);
/* Releases the pthread object; only the owner, when nobody can use it. */
void shm_lock_destroy(struct shm_lock *l);

/* ---- control segment ---------------------------------------------------- */

/* One guest RAM region as recorded in the control segment. */
struct shm_ctl_region {
	uint64_t gpa;	       /* guest-physical base */
	uint64_t size;	       /* bytes */
	uint64_t nr_pages;     /* size / SHM_PAGE_SIZE */
	uint64_t dirty_off;    /* offset of its dirty bitmap in the segment */
	uint64_t received_off; /* offset of its received bitmap in the segment */
	uint64_t round_off;    /* offset of its round bitmap in the segment */
};

struct shm_ctl_header {
	uint64_t magic;	     /* SHM_CTL_MAGIC */
	uint32_t version;    /* SHM_CTL_VERSION: layout of this struct */
	uint32_t page_size;  /* SHM_PAGE_SIZE */
	uint64_t total_size; /* bytes of the whole segment */
	uint64_t ram_size;   /* sum of region sizes */
	uint32_t nr_regions;
	uint32_t reserved;
	uint64_t session_off;  /* offset of the migrator's session area */
	uint64_t session_size; /* SHM_SESSION_SIZE */
	struct shm_ctl_region regions[SHM_MAX_REGIONS];
};

/*
 * A mapped control segment.  Owned by whoever called create/open.  Every
 * table lookup goes through @hdr, this process's own copy of the header,
 * validated once: a process that can write the memfd (pwrite() passes the
 * read-only mapping) cannot move another's bitmaps or session area
 * (docs/INVARIANTS.md, invariant 8).
 */
struct shm_ctl {
	int fd;
	const struct shm_ctl_header *hdr; /* private copy (malloc), NULL when closed */
	void *base;			  /* mapping of the whole segment */
	uint64_t size;
};

/* Region layout requested by the launcher. */
struct shm_ctl_layout {
	unsigned int nr_regions;
	uint64_t gpa[SHM_MAX_REGIONS];
	uint64_t size[SHM_MAX_REGIONS];
};

/* Creates memfd "cleave-ctl", sized for @layout, sealed, header written. */
int shm_ctl_create(struct shm_ctl *c, const struct shm_ctl_layout *layout);
/*
 * Maps an inherited control memfd and validates magic, version and sizes
 * (-EPROTO: magic/version/page size; -EINVAL: sizes, offsets, seals).  On
 * success @c owns @fd; on failure the caller still owns it.  In every
 * mapping (create and open) the header page is read-only: writing it faults.
 * The header is copied before it is validated, and only the copy is used.
 */
int shm_ctl_open(struct shm_ctl *c, int fd);
void shm_ctl_close(struct shm_ctl *c);
/* Bitmap of @region's pages (nr_pages bits), or NULL if there is no such region. */
uint64_t *shm_ctl_dirty_bitmap(const struct shm_ctl *c, unsigned int region);
uint64_t *shm_ctl_received_bitmap(const struct shm_ctl *c, unsigned int region);
uint64_t *shm_ctl_round_bitmap(const struct shm_ctl *c, unsigned int region);
void *shm_ctl_session(const struct shm_ctl *c);

#endif
