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

int region_table_init(struct region_table *t)
{
	int ret = pthread_mutex_init(&t->lock, NULL);

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
	pthread_mutex_destroy(&t->lock);
}

static bool region_overlaps(const struct region *r, uint64_t gpa, uint64_t size)
{
	return gpa < r->gpa + r->size && r->gpa < gpa + size;
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
	/* Locked before it becomes reachable: nobody sees it half built. */
	region_lock_write(r);

	pthread_mutex_lock(&t->lock);
	if (t->slot[id]) {
		ret = -EEXIST;
		goto err_unlock;
	}
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		/* Other regions' gpa/size never change while published (no resize yet). */
		if (t->slot[i] && region_overlaps(t->slot[i], gpa, size)) {
			ret = -EINVAL;
			goto err_unlock;
		}
	}
	t->slot[id] = r;
	t->nr++;
	pthread_mutex_unlock(&t->lock);
	*out = r;
	return 0;

err_unlock:
	pthread_mutex_unlock(&t->lock);
	region_unlock_write(r);
	pthread_rwlock_destroy(&r->lock);
	free(r);
	return ret;
}

void region_table_remove(struct region_table *t, struct region *r)
{
	region_assert_locked_write(r);
	pthread_mutex_lock(&t->lock);
	assert(t->slot[r->id] == r);
	t->slot[r->id] = NULL;
	t->nr--;
	pthread_mutex_unlock(&t->lock);
	/*
	 * Unpublished while held exclusive: a thread that found it before
	 * removal holds it shared, which the write lock excluded.
	 */
	region_unlock_write(r);
	pthread_rwlock_destroy(&r->lock);
	free(r);
}

struct region *region_table_find_read(struct region_table *t, uint64_t gpa, uint64_t len)
{
	struct region *found = NULL;

	if (len == 0 || gpa + len < gpa)
		return NULL;
	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < REGION_MAX && !found; i++) {
		struct region *r = t->slot[i];

		if (!r)
			continue;
		region_lock_read(r);
		if (gpa >= r->gpa && gpa + len <= r->gpa + r->size)
			found = r;
		else
			region_unlock_read(r);
	}
	pthread_mutex_unlock(&t->lock);
	return found;
}

struct region *region_table_get(struct region_table *t, unsigned int id)
{
	struct region *r = NULL;

	pthread_mutex_lock(&t->lock);
	if (id < REGION_MAX)
		r = t->slot[id];
	pthread_mutex_unlock(&t->lock);
	return r;
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
}

void region_unlock_write(struct region *r)
{
	region_check(__atomic_load_n(&r->writer, __ATOMIC_RELAXED) == gettid(), r,
		     "write unlock by a thread not holding it");
	__atomic_store_n(&r->writer, 0, __ATOMIC_RELAXED);
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
