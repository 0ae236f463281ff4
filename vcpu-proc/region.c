// SPDX-License-Identifier: GPL-2.0-only
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/region.h"

/*
 * Shared holds of this thread per region id: a thread-local count lets the
 * assert tell "this thread reads" from "some other thread reads".
 */
static __thread unsigned int region_read_depth[REGION_MAX];
/* Exclusive holds of this thread per region id (for the lock-order check). */
static __thread bool region_write_held[REGION_MAX];

#ifdef NDEBUG
#define region_check(cond, r, what) ((void)0)
#else
static void region_misuse(const struct region *r, const char *what)
{
	log_err("region %u: lock misuse: %s (tid %d, writer %d)", r->id, what, (int)gettid(),
		__atomic_load_n(&r->writer, __ATOMIC_RELAXED));
	abort();
}
#define region_check(cond, r, what)                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			region_misuse(r, what);                                                    \
	} while (0)
#endif

/* Shared holds of the table by this thread (debug check of the lock order). */
static __thread unsigned int region_table_depth;

int region_table_init(struct region_table *t)
{
	int ret = pthread_rwlock_init(&t->lock, NULL);

	if (ret)
		return -ret;
	for (unsigned int i = 0; i < REGION_MAX; i++)
		t->slot[i] = NULL;
	t->nr = 0;
	return 0;
}

void region_table_fini(struct region_table *t)
{
	assert(t->nr == 0);
	pthread_rwlock_destroy(&t->lock);
}

static bool region_overlaps(const struct region *r, uint64_t gpa, uint64_t size)
{
	return gpa < r->gpa + r->size && r->gpa < gpa + size;
}

/* Table lock is taken before region locks: holding one here is a bug. */
static void region_check_none_held(void)
{
#ifndef NDEBUG
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		if (region_read_depth[i] || region_write_held[i]) {
			log_err("region %u held while taking the region table lock", i);
			abort();
		}
	}
#endif
}

int region_table_add(struct region_table *t, unsigned int id, uint64_t gpa, uint64_t size,
		     void *hva, uint64_t *dirty, struct region **out)
{
	struct region *r;
	int ret;

	if (id >= REGION_MAX || size == 0 || gpa + size < gpa)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->id = id;
	r->gpa = gpa;
	r->size = size;
	r->hva = hva;
	r->dirty = dirty;
	ret = pthread_rwlock_init(&r->lock, NULL);
	if (ret) {
		free(r);
		return -ret;
	}
	region_check_none_held();
	pthread_rwlock_wrlock(&t->lock);
	if (t->slot[id]) {
		ret = -EEXIST;
		goto err_unlock;
	}
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		if (t->slot[i] && region_overlaps(t->slot[i], gpa, size)) {
			ret = -EINVAL;
			goto err_unlock;
		}
	}
	/* Locked before it becomes reachable: nobody sees it half built. */
	region_lock_write(r);
	t->slot[id] = r;
	t->nr++;
	pthread_rwlock_unlock(&t->lock);
	*out = r;
	return 0;

err_unlock:
	pthread_rwlock_unlock(&t->lock);
	pthread_rwlock_destroy(&r->lock);
	free(r);
	return ret;
}

int region_table_remove(struct region_table *t, unsigned int id)
{
	struct region *r;

	if (id >= REGION_MAX)
		return -ENOENT;
	region_check_none_held();
	pthread_rwlock_wrlock(&t->lock);
	r = t->slot[id];
	if (!r) {
		pthread_rwlock_unlock(&t->lock);
		return -ENOENT;
	}
	/* Waits for every user; new users cannot find it (table held exclusive). */
	region_lock_write(r);
	region_assert_locked_write(r);
	t->slot[id] = NULL;
	t->nr--;
	pthread_rwlock_unlock(&t->lock);
	region_unlock_write(r);
	pthread_rwlock_destroy(&r->lock);
	free(r);
	return 0;
}

struct region *region_table_find_read(struct region_table *t, uint64_t gpa, uint64_t len)
{
	struct region *found = NULL;

	if (len == 0 || gpa + len < gpa)
		return NULL;
	region_table_lock_read(t);
	for (unsigned int i = 0; i < REGION_MAX && !found; i++) {
		struct region *r = t->slot[i];

		/* gpa/size only change under the table's exclusive lock (no resize yet). */
		if (r && gpa >= r->gpa && gpa + len <= r->gpa + r->size)
			found = r;
	}
	if (found)
		region_lock_read(found);
	region_table_unlock_read(t);
	return found;
}

void region_table_lock_read(struct region_table *t)
{
	region_check_none_held();
	pthread_rwlock_rdlock(&t->lock);
	region_table_depth++;
}

void region_table_unlock_read(struct region_table *t)
{
	assert(region_table_depth > 0);
	region_table_depth--;
	pthread_rwlock_unlock(&t->lock);
}

struct region *region_table_get(struct region_table *t, unsigned int id)
{
	assert(region_table_depth > 0); /* only between lock_read and unlock_read */
	return id < REGION_MAX ? t->slot[id] : NULL;
}

void region_lock_read(struct region *r)
{
	/* A second shared hold could deadlock behind a queued writer. */
	region_check(region_read_depth[r->id] == 0, r, "recursive read lock");
	region_check(__atomic_load_n(&r->writer, __ATOMIC_RELAXED) != gettid(), r,
		     "read lock while holding it exclusive");
	pthread_rwlock_rdlock(&r->lock);
	region_read_depth[r->id]++;
	__atomic_fetch_add(&r->readers, 1, __ATOMIC_RELAXED);
}

void region_unlock_read(struct region *r)
{
	region_check(region_read_depth[r->id] > 0, r, "read unlock without read lock");
	region_read_depth[r->id]--;
	__atomic_fetch_sub(&r->readers, 1, __ATOMIC_RELAXED);
	pthread_rwlock_unlock(&r->lock);
}

void region_lock_write(struct region *r)
{
	region_check(region_read_depth[r->id] == 0, r, "write lock while holding it shared");
	region_check(__atomic_load_n(&r->writer, __ATOMIC_RELAXED) != gettid(), r,
		     "recursive write lock");
	pthread_rwlock_wrlock(&r->lock);
	__atomic_store_n(&r->writer, gettid(), __ATOMIC_RELAXED);
	region_write_held[r->id] = true;
}

void region_unlock_write(struct region *r)
{
	region_check(__atomic_load_n(&r->writer, __ATOMIC_RELAXED) == gettid(), r,
		     "write unlock by a thread not holding it");
	__atomic_store_n(&r->writer, 0, __ATOMIC_RELAXED);
	region_write_held[r->id] = false;
	pthread_rwlock_unlock(&r->lock);
}

void region_assert_locked_read(const struct region *r)
{
	region_check(region_read_depth[r->id] > 0 ||
			     __atomic_load_n(&r->writer, __ATOMIC_RELAXED) == gettid(),
		     r, "not held shared by this thread");
}

void region_assert_locked_write(const struct region *r)
{
	region_check(__atomic_load_n(&r->writer, __ATOMIC_RELAXED) == gettid(), r,
		     "not held exclusive by this thread");
}
