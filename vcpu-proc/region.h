/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Guest memory regions of vcpu-proc, each with its own lock (docs/INVARIANTS.md,
 * invariant 5; the order of every lock is in docs/LOCKING.md).
 *
 * A region maps one RAM memfd at a guest-physical range and is one KVM
 * memslot.  Its rwlock is taken shared by anything that reads or writes
 * guest memory through the mapping while relying on the region staying as
 * it is (dirty harvest, ucall decode, future userfaultfd fault service), and
 * exclusive by anything that changes the region (remove, resize, memslot
 * flags such as dirty logging, uffd registration).  Debug builds (NDEBUG
 * unset) record the owner so the region_assert_locked_*() checks abort when
 * a caller does not hold what it claims: the userspace lockdep_assert_held.
 *
 * Lifetime: region_table_init/fini; region_table_add/remove.  A region is
 * write-locked before it is published in the table, so nobody can use a
 * half-built region.
 *
 * Order: the table lock before any region lock, regions in ascending id.
 * Nobody takes the table lock while holding a region lock.
 */
#ifndef CLEAVE_VCPU_REGION_H
#define CLEAVE_VCPU_REGION_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define REGION_MAX 8 /* == SHM_MAX_REGIONS; also the per-thread read-depth slots */

struct region {
	unsigned int id; /* table slot == KVM memslot number; immutable */
	uint64_t gpa;	 /* guest-physical base; protected by lock */
	uint64_t size;	 /* bytes; protected by lock */
	void *hva;	 /* host mapping of [gpa, gpa + size); protected by lock */
	uint32_t flags;	 /* KVM_MEM_* of the memslot; protected by lock */
	uint64_t *dirty; /* shm dirty bitmap of this region (atomic ops) */
	/*
	 * Protects gpa, size, hva, flags and the memslot itself.  Order: after
	 * region_table.lock, lower ids first; see docs/LOCKING.md.
	 */
	pthread_rwlock_t lock;
	int writer;  /* debug owner: TID holding lock exclusive, 0 if none (atomic) */
	int readers; /* debug: number of shared holders (atomic) */
};

struct region_table {
	/*
	 * Protects slot[] and nr, and keeps every published region alive:
	 * shared to look regions up or iterate, exclusive to add or remove.
	 */
	pthread_rwlock_t lock;
	struct region *slot[REGION_MAX]; /* protected by lock; NULL = free */
	unsigned int nr;		 /* protected by lock */
};

int region_table_init(struct region_table *t);
/* Every region must have been removed. */
void region_table_fini(struct region_table *t);

/*
 * Allocates a region in slot @id and publishes it write-locked: on success
 * *out is held exclusive by the caller, who finishes setting it up (memslot)
 * and calls region_unlock_write().  -EEXIST if the slot is taken, -EINVAL
 * for a bad id or a range overlapping another region.  The caller holds no
 * region lock.
 */
int region_table_add(struct region_table *t, unsigned int id, uint64_t gpa, uint64_t size,
		     void *hva, uint64_t *dirty, struct region **out);
/*
 * Takes region @id exclusive (waiting for its users), unpublishes and frees
 * it.  -ENOENT if there is none.  The caller holds no region lock.
 */
int region_table_remove(struct region_table *t, unsigned int id);

/*
 * Finds the region containing [gpa, gpa + len) (len >= 1, within one region)
 * and returns it read-locked, or NULL.  The caller holds no region lock.
 */
struct region *region_table_find_read(struct region_table *t, uint64_t gpa, uint64_t len);

/*
 * Iteration: between region_table_lock_read() and region_table_unlock_read()
 * no region is added or removed, region_table_get() returns slot @id (NULL
 * if empty) and the caller may lock regions in ascending id.
 */
void region_table_lock_read(struct region_table *t);
void region_table_unlock_read(struct region_table *t);
struct region *region_table_get(struct region_table *t, unsigned int id);

void region_lock_read(struct region *r);
void region_unlock_read(struct region *r);
void region_lock_write(struct region *r);
void region_unlock_write(struct region *r);

/* Abort (debug builds) unless the calling thread holds @r shared or exclusive. */
void region_assert_locked_read(const struct region *r);
/* Abort (debug builds) unless the calling thread holds @r exclusive. */
void region_assert_locked_write(const struct region *r);

#endif
