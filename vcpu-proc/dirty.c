// SPDX-License-Identifier: GPL-2.0-only
/*
 * Dirty-page tracking with KVM's dirty bitmap in manual-protect mode
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2): GET reads without re-protecting,
 * CLEAR re-protects exactly the pages we took, so a page written after its
 * bit was taken is reported again by the next harvest.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log/log.h"
#include "vcpu-proc/vm.h"

int vm_dirty_log_set(struct vm *vm, bool enable)
{
	int ret = 0;

	pthread_mutex_lock(&vm->ctrl_lock);
	/* Table, then regions in id order, one at a time (docs/LOCKING.md). */
	region_table_lock_read(&vm->regions);
	for (unsigned int i = 0; i < REGION_MAX && !ret; i++) {
		struct region *r = region_table_get(&vm->regions, i);
		uint32_t old;

		if (!r)
			continue;
		region_lock_write(r);
		old = r->flags;
		if (enable)
			r->flags |= KVM_MEM_LOG_DIRTY_PAGES;
		else
			r->flags &= ~KVM_MEM_LOG_DIRTY_PAGES;
		if (r->flags != old) {
			ret = vm_memslot_set(vm, r);
			if (ret)
				r->flags = old;
		}
		region_unlock_write(r);
	}
	region_table_unlock_read(&vm->regions);
	if (!ret) {
		pthread_mutex_lock(&vm->lock);
		vm->dirty_log = enable;
		pthread_mutex_unlock(&vm->lock);
		log_info("dirty logging %s", enable ? "on" : "off");
	}
	pthread_mutex_unlock(&vm->ctrl_lock);
	return ret;
}

/* Harvests one region; caller holds it shared and ctrl_lock (scratch map). */
static int vm_dirty_harvest_region(struct vm *vm, struct region *r, uint64_t *count)
{
	uint64_t npages = r->size / SHM_PAGE_SIZE;
	uint64_t words = SHM_BITMAP_WORDS(npages);
	uint64_t *map = vm->harvest_map[r->id];
	struct kvm_dirty_log get = {.slot = r->id, .dirty_bitmap = map};
	struct kvm_clear_dirty_log clr = {
		.slot = r->id,
		.first_page = 0,
		.num_pages = (uint32_t)npages,
		.dirty_bitmap = map,
	};
	bool any = false;

	region_assert_locked_read(r);
	if (!(r->flags & KVM_MEM_LOG_DIRTY_PAGES))
		return 0;
	memset(map, 0, words * sizeof(uint64_t));
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &get) < 0) {
		int err = -errno;

		log_err("KVM_GET_DIRTY_LOG slot %u: %s", r->id, strerror(errno));
		return err;
	}
	for (uint64_t w = 0; w < words && !any; w++)
		any = map[w] != 0;
	if (!any)
		return 0;
	/* The whole slot at once: num_pages may be unaligned only at the slot's end. */
	if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clr) < 0) {
		int err = -errno;

		log_err("KVM_CLEAR_DIRTY_LOG slot %u: %s", r->id, strerror(errno));
		return err;
	}
	for (uint64_t w = 0; w < words; w++) {
		uint64_t old;

		if (!map[w])
			continue;
		/* Only for the count; the migrator may clear the word concurrently. */
		old = __atomic_load_n(&r->dirty[w], __ATOMIC_RELAXED);
		*count += (uint64_t)__builtin_popcountll(map[w] & ~old);
		shm_bitmap_or_word(r->dirty, w, map[w]);
	}
	return 0;
}

int vm_dirty_harvest(struct vm *vm, uint64_t *newly_dirty)
{
	int ret = 0;

	*newly_dirty = 0;
	pthread_mutex_lock(&vm->ctrl_lock);
	region_table_lock_read(&vm->regions);
	for (unsigned int i = 0; i < REGION_MAX && !ret; i++) {
		struct region *r = region_table_get(&vm->regions, i);

		if (!r)
			continue;
		region_lock_read(r);
		ret = vm_dirty_harvest_region(vm, r, newly_dirty);
		region_unlock_read(r);
	}
	region_table_unlock_read(&vm->regions);
	pthread_mutex_unlock(&vm->ctrl_lock);
	return ret;
}

void vm_dirty_mark(struct vm *vm, uint64_t gpa, uint64_t len)
{
	bool on;

	pthread_mutex_lock(&vm->lock);
	on = vm->dirty_log;
	pthread_mutex_unlock(&vm->lock);
	if (!on || len == 0)
		return;
	region_table_lock_read(&vm->regions);
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		struct region *r = region_table_get(&vm->regions, i);
		uint64_t lo, hi;

		if (!r)
			continue;
		region_lock_read(r);
		lo = gpa > r->gpa ? gpa : r->gpa;
		hi = gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size;
		for (uint64_t a = lo & ~(SHM_PAGE_SIZE - 1); a < hi; a += SHM_PAGE_SIZE)
			shm_bitmap_set(r->dirty, (a - r->gpa) >> SHM_PAGE_SHIFT);
		region_unlock_read(r);
	}
	region_table_unlock_read(&vm->regions);
}
