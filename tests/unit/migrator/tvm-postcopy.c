/* SPDX-License-Identifier: GPL-2.0-only */
#include "tvm-postcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu-proc/fault.h"
#include "vcpu-proc/region.h"

/* The VM side of one tvm: made at the first listen, gone at end. */
struct tvm_pc {
	pthread_mutex_t lock; /* protects fs and the table's membership */
	struct region_table table;
	struct fault_service *fs; /* NULL: not listening */
	struct fault_stats last;  /* the service's figures when it last stopped */
};

static struct tvm_pc *tvm_pc_of(void *arg)
{
	struct tvm *t = arg;

	return t->pc;
}

/* Pages come only through fault_place(): this source has nothing to read. */
static int no_read(void *arg, unsigned int region, uint64_t page, void *buf)
{
	return -EAGAIN;
}

/* Caller holds pc->lock: every region unregistered (@force: whatever is missing), service gone. */
static int pc_stop_locked(struct tvm *t, struct tvm_pc *pc, bool force)
{
	int ret = 0;

	if (!pc->fs)
		return 0;
	for (unsigned int i = 0; i < t->nr_regions && !ret; i++) {
		struct region *r;

		region_table_lock_read(&pc->table);
		r = region_table_get(&pc->table, i);
		region_table_unlock_read(&pc->table);
		region_lock_write(r);
		ret = fault_region_unregister(pc->fs, r, force);
		region_unlock_write(r);
	}
	if (ret)
		return ret;
	fault_service_stats(pc->fs, &pc->last);
	ret = fault_service_stop(pc->fs);
	if (ret)
		return ret;
	pc->fs = NULL;
	for (unsigned int i = 0; i < t->nr_regions; i++)
		region_table_remove(&pc->table, i);
	return 0;
}

static int pc_listen(void *arg, const uint64_t *const needed[])
{
	struct tvm *t = arg;
	struct tvm_pc *pc = tvm_pc_of(arg);
	const struct fault_source src = {.read_page = no_read, .arg = t};
	int ret = 0;

	pthread_mutex_lock(&pc->lock);
	if (pc->fs) /* a restarted migrator: the registration stands */
		goto out;
	ret = fault_service_start(&pc->fs, &pc->table, &src);
	for (unsigned int i = 0; i < t->nr_regions && !ret; i++) {
		struct region *r;

		ret = region_table_add(&pc->table, i, t->ctl.hdr->regions[i].gpa, t->ram[i].size,
				       t->ram[i].base, NULL, &r);
		if (ret)
			break;
		ret = fault_region_register_needed(pc->fs, r, needed[i]);
		region_unlock_write(r);
	}
	if (ret && pc->fs)
		pc_stop_locked(t, pc, true);
out:
	pthread_mutex_unlock(&pc->lock);
	return ret;
}

/*
 * The fault service outlives the calls below (only end stops it, from the
 * engine's worker, after the threads that call these were joined).
 */
static struct fault_service *pc_fs(void *arg)
{
	struct tvm_pc *pc = tvm_pc_of(arg);
	struct fault_service *fs;

	pthread_mutex_lock(&pc->lock);
	fs = pc->fs;
	pthread_mutex_unlock(&pc->lock);
	return fs;
}

static int pc_wait_faults(void *arg, struct mig_page_ref *reqs, unsigned int max, int timeout_ms,
			  bool again)
{
	struct fault_service *fs = pc_fs(arg);
	struct fault_page fp[64];
	int n;

	if (!fs)
		return -ENODEV;
	n = fault_take_requests(fs, fp, max < 64 ? max : 64, timeout_ms, again);
	for (int i = 0; i < n; i++) {
		reqs[i].region = fp[i].region;
		reqs[i].page = fp[i].page;
	}
	return n;
}

static int pc_place(void *arg, uint32_t region, uint64_t page, unsigned int nr, const void *data)
{
	struct fault_service *fs = pc_fs(arg);

	return fs ? fault_place(fs, region, page, nr, data) : -ENODEV;
}

static int pc_end(void *arg, bool abort)
{
	struct tvm_pc *pc = tvm_pc_of(arg);
	int ret;

	pthread_mutex_lock(&pc->lock);
	ret = pc_stop_locked(arg, pc, abort);
	pthread_mutex_unlock(&pc->lock);
	return ret;
}

static const struct mig_postcopy_ops pc_ops = {
	.listen = pc_listen,
	.wait_faults = pc_wait_faults,
	.place = pc_place,
	.end = pc_end,
};

static struct mig_vm_ops pc_vm_ops;
static pthread_once_t pc_vm_ops_once = PTHREAD_ONCE_INIT;

static void pc_vm_ops_init(void)
{
	pc_vm_ops = *tvm_vm_ops();
	pc_vm_ops.postcopy = &pc_ops;
}

const struct mig_vm_ops *tvm_postcopy_vm_ops(void)
{
	pthread_once(&pc_vm_ops_once, pc_vm_ops_init);
	return &pc_vm_ops;
}

int tvm_postcopy_init(struct tvm *t)
{
	struct tvm_pc *pc = calloc(1, sizeof(*pc));

	if (!pc)
		return -ENOMEM;
	pthread_mutex_init(&pc->lock, NULL);
	if (region_table_init(&pc->table)) {
		free(pc);
		return -ENOMEM;
	}
	t->pc = pc;
	return 0;
}

void tvm_postcopy_fini(struct tvm *t)
{
	struct tvm_pc *pc = t->pc;

	if (!pc)
		return;
	pthread_mutex_lock(&pc->lock);
	pc_stop_locked(t, pc, true);
	pthread_mutex_unlock(&pc->lock);
	region_table_fini(&pc->table);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
	t->pc = NULL;
}

bool tvm_postcopy_listening(struct tvm *t)
{
	return pc_fs(t) != NULL;
}

void tvm_postcopy_stats(struct tvm *t, struct fault_stats *st)
{
	struct tvm_pc *pc = t->pc;

	pthread_mutex_lock(&pc->lock);
	if (pc->fs)
		fault_service_stats(pc->fs, st);
	else
		*st = pc->last;
	pthread_mutex_unlock(&pc->lock);
}
