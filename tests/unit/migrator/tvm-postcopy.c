/* SPDX-License-Identifier: GPL-2.0-only */
#include "tvm-postcopy.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrator/postcopy-link.h"
#include "vcpu-proc/postcopy-link.h"
#include "vcpu-proc/region.h"

/*
 * The VM side of one tvm, as in production: the engine's postcopy ops are
 * the migrator's end of a postcopy link (migrator/postcopy-link.c), whose
 * other end cleave-vcpu's server (vcpu-proc/postcopy-link.c) serves with
 * the fault service on the tvm's RAM mappings.
 */
struct tvm_pc {
	int fds[2]; /* [0] cleave-vcpu's end, [1] the migrator's */
	struct region_table table;
	struct pclink_server *srv;
	struct mig_pclink *link;
	pthread_mutex_t lock;	 /* protects last */
	struct fault_stats last; /* the service's figures, taken before every END */
	atomic_int place_err;	 /* nonzero: place() fails with it (a VM side that fails) */
};

static struct tvm_pc *tvm_pc_of(void *arg)
{
	return ((struct tvm *)arg)->pc;
}

static int pc_listen(void *arg, const uint64_t *const needed[])
{
	(void)needed; /* the server reads them from the control segment, as in production */
	return mig_pclink_listen(tvm_pc_of(arg)->link);
}

static int pc_wait_faults(void *arg, struct mig_page_ref *reqs, unsigned int max, int timeout_ms,
			  bool again)
{
	return mig_pclink_wait_faults(tvm_pc_of(arg)->link, reqs, max, timeout_ms, again);
}

static int pc_place(void *arg, uint32_t region, uint64_t page, unsigned int nr, const void *data)
{
	int err = atomic_load(&tvm_pc_of(arg)->place_err);

	return err ? err : mig_pclink_place(tvm_pc_of(arg)->link, region, page, nr, data);
}

void tvm_postcopy_fail_place(struct tvm *t, int err)
{
	atomic_store(&tvm_pc_of(t)->place_err, err);
}

static int pc_end(void *arg, bool abort)
{
	struct tvm_pc *pc = tvm_pc_of(arg);
	struct pclink_stats st;

	pclink_server_stats(pc->srv, &st);
	if (st.listening) {
		pthread_mutex_lock(&pc->lock);
		pc->last = st.fs;
		pthread_mutex_unlock(&pc->lock);
	}
	return mig_pclink_end(pc->link, abort);
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

bool tvm_postcopy_usable(void)
{
	return !access("/dev/userfaultfd", R_OK | W_OK) ||
	       !access("/proc/sys/vm/unprivileged_userfaultfd", F_OK);
}

const struct mig_vm_ops *tvm_postcopy_vm_ops(void)
{
	pthread_once(&pc_vm_ops_once, pc_vm_ops_init);
	return &pc_vm_ops;
}

int tvm_postcopy_init(struct tvm *t)
{
	struct tvm_pc *pc = calloc(1, sizeof(*pc));
	int ret;

	if (!pc)
		return -ENOMEM;
	pthread_mutex_init(&pc->lock, NULL);
	t->pc = pc;
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pc->fds))
		return -errno;
	ret = region_table_init(&pc->table);
	for (unsigned int i = 0; i < t->nr_regions && !ret; i++) {
		struct region *r;

		ret = region_table_add(&pc->table, i, t->ctl.hdr->regions[i].gpa, t->ram[i].size,
				       t->ram[i].base, NULL, &r);
		if (!ret)
			region_unlock_write(r);
	}
	if (!ret)
		ret = pclink_server_start(&pc->srv, pc->fds[0], &pc->table, &t->ctl, NULL);
	if (!ret)
		ret = mig_pclink_open(&pc->link, pc->fds[1], 5000);
	return ret;
}

void tvm_postcopy_fini(struct tvm *t)
{
	struct tvm_pc *pc = t->pc;

	if (!pc)
		return;
	mig_pclink_close(pc->link);
	/* The test's "vCPUs" were joined: nothing can touch RAM any more. */
	if (pc->srv && pclink_server_stop(pc->srv, true))
		abort();
	for (unsigned int i = 0; i < t->nr_regions; i++)
		region_table_remove(&pc->table, i);
	region_table_fini(&pc->table);
	close(pc->fds[0]);
	close(pc->fds[1]);
	pthread_mutex_destroy(&pc->lock);
	free(pc);
	t->pc = NULL;
}

void tvm_postcopy_stats(struct tvm *t, struct fault_stats *st)
{
	struct tvm_pc *pc = t->pc;
	struct pclink_stats ls;

	pclink_server_stats(pc->srv, &ls);
	if (ls.listening) {
		*st = ls.fs;
		return;
	}
	pthread_mutex_lock(&pc->lock);
	*st = pc->last;
	pthread_mutex_unlock(&pc->lock);
}

bool tvm_postcopy_listening(struct tvm *t)
{
	struct pclink_stats ls;

	pclink_server_stats(((struct tvm_pc *)t->pc)->srv, &ls);
	return ls.listening;
}
