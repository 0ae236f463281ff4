/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The guest page-fault service of cleave-vcpu (docs/LOCKING.md, "Fault
 * service"): guest RAM that is not there yet (a lazy restore, postcopy) is
 * registered with userfaultfd, and every first touch of a page, by a vCPU
 * or by KVM itself (kvmclock, for example), waits until this service has
 * put the page in place from a page source.  A background fill puts every
 * other page in place, in order, beside the faults.
 *
 * Why MISSING faults and UFFDIO_COPY: a page is installed only if it is
 * still missing, atomically (-EEXIST otherwise).  So a fault and the fill
 * racing on one page install it once, and a copy read from the source
 * before the guest (or KVM) wrote the page can never land over that write:
 * the write needed the page installed first.  MINOR faults would need a
 * separate "installed" map kept in step with the page cache.
 *
 * vcpu-proc holds the userfaultfd for as long as registered regions exist:
 * if its last holder went away, a pending fault would complete with a zero
 * page.  For the same reason a region is unregistered only once it is
 * complete, or when no vCPU can touch it any more (fault_region_unregister).
 *
 * Postcopy (fault_region_register_needed): the pages come later, from the
 * migration, not from a source the service reads.  A fault on a needed page
 * that is not there is not answered: the faulting thread stays blocked, the
 * page is queued as a request (once), and the fault thread goes on with
 * other faults.  The migration side takes the requests
 * (fault_take_requests) and installs pages as they arrive (fault_place),
 * which wakes their waiters.  These map one to one onto struct
 * mig_postcopy_ops: listen registers, wait_faults takes requests, place
 * places, end unregisters (forced on abort).
 *
 * Locks: registration and unregistration run with the region held
 * exclusive (asserted); the fault thread, the fill and fault_place() take
 * it shared for what they install, through region_table_find_read(), so a
 * region change waits for the installs in flight.  service->lock is a leaf: it is
 * never held while a region or table lock is taken.  It also protects the
 * blocktime counts: a spell starts where a request is queued and ends where
 * it is dropped, both under that lock.
 */
#ifndef CLEAVE_VCPU_FAULT_H
#define CLEAVE_VCPU_FAULT_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "vcpu-proc/region.h"

/* Where pages come from for fault_region_register() (a snapshot file). */
struct fault_source {
	/*
	 * Copies page @page (index within region @region) into @buf
	 * (SHM_PAGE_SIZE bytes).  Returns 1 when @buf holds the page, 0 when
	 * the page is all zeros (nothing copied), or a negative errno: then
	 * the page stays missing and whoever touches it keeps waiting.  Called
	 * from the fault thread and the fill thread at once.
	 */
	int (*read_page)(void *arg, unsigned int region, uint64_t page, void *buf);
	/*
	 * A page could not be installed (@err from read_page or the kernel).
	 * The VM must stop: a vCPU that touches the page waits for good.
	 * Called once per page and thread; may be NULL.
	 */
	void (*failed)(void *arg, unsigned int region, uint64_t page, int err);
	/*
	 * Optional: the next pages at or after @from that may hold data,
	 * [*start, *end), or -ENXIO when the rest of the region is zero.  The
	 * fill reads only those; the pages in between are settled without a
	 * read: a missing page of a memfd is a hole and reads as zero once
	 * the region is unregistered (touched before, it is installed as a
	 * zero page).  So the fill costs the data, not the RAM.  NULL: every
	 * page is read.
	 */
	int (*next_data)(void *arg, unsigned int region, uint64_t from, uint64_t *start,
			 uint64_t *end);
	void *arg;
};

/*
 * Counters since start.  lat_*: the service's own time for a fault it
 * answers at once, fault read to page installed.  wait_*: postcopy, a
 * fault on a needed page, from its read to fault_place() installing the
 * page: as long as its thread was blocked, less the kernel's hand-over.
 */
struct fault_stats {
	uint64_t faults;     /* faults answered at once (source page, or a postcopy zero page) */
	uint64_t zero;	     /* of which zero pages */
	uint64_t raced;	     /* faults for a page already installed (a second vCPU, the fill) */
	uint64_t filled;     /* pages the background fill installed */
	uint64_t skipped;    /* pages the fill settled as zero without a read (next_data) */
	uint64_t failed;     /* pages that could not be installed */
	uint64_t missing;    /* pages of registered regions neither installed nor known zero */
	uint64_t lat_p50_ns; /* of the last FAULT_LAT_SAMPLES faults */
	uint64_t lat_p99_ns;
	uint64_t lat_max_ns;
	uint64_t requested;   /* postcopy: needed pages faulted and queued as requests */
	uint64_t placed;      /* pages fault_place() installed (not there before) */
	uint64_t wait_p50_ns; /* of the last FAULT_LAT_SAMPLES requested pages placed */
	uint64_t wait_p99_ns;
	uint64_t wait_max_ns;
};

#define FAULT_LAT_SAMPLES 4096

struct fault_service;

/*
 * Opens the userfaultfd (/dev/userfaultfd, else the syscall) with shmem
 * MISSING faults, and starts the fault thread.  @table stays owned by the
 * caller and outlives the service.  @src may be NULL for a service of
 * postcopy regions only (fault_region_register() and the fill are then
 * -EINVAL).  -ENOSYS/-EPERM/-EINVAL with a log line when the host does not
 * offer what is needed.
 */
int fault_service_start(struct fault_service **out, struct region_table *table,
			const struct fault_source *src);
/*
 * The same with @uffd_dev, an fd of /dev/userfaultfd opened by someone who
 * may (cleave run, for a cleave-vcpu whose user may not open the device):
 * the userfaultfd comes from it.  Not closed; -1 opens the device here.
 */
int fault_service_start_dev(struct fault_service **out, struct region_table *table,
			    const struct fault_source *src, int uffd_dev);
/*
 * fault_service_start_dev() with @flags: FAULT_NO_THREAD_ID does not ask
 * for the faulting thread's id, as on a kernel that does not offer it
 * (UFFD_FEATURE_THREAD_ID): blocktime is then not measured.
 */
#define FAULT_NO_THREAD_ID 0x1u
int fault_service_start_flags(struct fault_service **out, struct region_table *table,
			      const struct fault_source *src, int uffd_dev, unsigned int flags);
/*
 * Stops the threads and closes the userfaultfd; -EBUSY while a region is
 * registered.  A fault_take_requests() waiting returns -ECANCELED, and
 * stop waits for it to leave; none may be called after stop returned 0.
 */
int fault_service_stop(struct fault_service *fs);

/*
 * Registers region @r (held exclusive by the caller) for MISSING faults.
 * @fresh: its memfd was made empty for this (a restore): nothing is looked
 * up, so registration does not grow with RAM.  Otherwise the pages already
 * present are found with mincore() and count as installed.  Either way a
 * present page is never replaced: the fill's copy of it fails with EEXIST.
 */
int fault_region_register(struct fault_service *fs, struct region *r, bool fresh);
/*
 * Registers region @r (held exclusive) for postcopy.  @needed: a bit per
 * page (shm bitmap) of the pages that must come from the migration; the
 * service keeps its own copy.  Every other page is settled from the start:
 * touched while missing (a hole of the memfd), it is installed as a zero
 * page at once, without a request.  A needed page must be missing (the
 * caller punched it out); one that is there anyway is never replaced and
 * counts as installed once placed.  missing counts the needed pages not
 * placed.  Costs the copy of @needed, nothing per page of RAM.  -EALREADY
 * if registered.
 */
int fault_region_register_needed(struct fault_service *fs, struct region *r,
				 const uint64_t *needed);
/*
 * Unregisters @r (held exclusive).  -EBUSY while pages are missing,
 * unless @force: then a vCPU that still touches one would get a zero
 * page, so only when no vCPU can run (the VM is ending).
 */
int fault_region_unregister(struct fault_service *fs, struct region *r, bool force);

/*
 * Starts the background fill: every registered region, in order of id and
 * page, each missing page from the source.  -EALREADY if it runs.  It ends
 * by itself when all is installed (fault_fill_wait), on a failed page, or
 * at stop.
 */
int fault_fill_start(struct fault_service *fs);
/* Waits for the fill to end: 0 when everything is installed, else the first error. */
int fault_fill_wait(struct fault_service *fs);

/* A page of a postcopy region to fetch; the layout of the engine's struct mig_page_ref. */
struct fault_page {
	uint32_t region;
	uint64_t page;
};

/*
 * Waits up to @timeout_ms (0: no wait, < 0: no limit) for requests and
 * hands out at most @max, each once, oldest first.  Returns how many, 0 on
 * timeout, -ECANCELED once the service stops.  @again: first every page
 * handed out before and still not placed is queued again (a restarted
 * migrator lost what its predecessor took).  Callable from several
 * threads; a page is handed to one of them.
 */
int fault_take_requests(struct fault_service *fs, struct fault_page *out, unsigned int max,
			int timeout_ms, bool again);
/*
 * fault_take_requests()'s @again on its own: every page handed out and not
 * placed is queued again, and a taker waiting for requests takes them at
 * once rather than at the end of its wait.
 */
void fault_requests_again(struct fault_service *fs);
/*
 * Installs pages [@page, @page + @nr) of region @region_id from @data
 * (@nr * SHM_PAGE_SIZE bytes; NULL: zero pages) where they are still
 * missing, with one UFFDIO_COPY per run of missing pages; a page already
 * there stays as it is (the guest may have written it): that is success
 * too.  Wakes whoever waits for these pages and drops their requests.
 * Holds the region shared.  -EINVAL for a region not registered or a range
 * outside it; another error leaves the pages not installed missing.
 * Callable from several threads at once.
 */
int fault_place(struct fault_service *fs, unsigned int region_id, uint64_t page, unsigned int nr,
		const void *data);

void fault_service_stats(struct fault_service *fs, struct fault_stats *st);

/*
 * Postcopy blocktime (QEMU's postcopy-blocktime and postcopy-vcpu-blocktime,
 * vcpu-proc/blocktime.h): threads @tids[0..n-1] are vCPUs 0..n-1.  Their
 * faults on needed pages count from here on; a fault of any other thread
 * does not.  Callable before or after regions are registered; again to
 * replace the list (the counts start from zero).
 */
int fault_service_set_vcpus(struct fault_service *fs, const pid_t *tids, unsigned int n);

struct fault_blocktime {
	/*
	 * The kernel names the faulting thread (UFFD_FEATURE_THREAD_ID), vCPUs
	 * are set and a postcopy region was registered: the rest holds.
	 */
	bool measured;
	uint32_t total_ms;     /* all vCPUs blocked at once */
	unsigned int nr_vcpus; /* entries of vcpu_ms */
	uint32_t *vcpu_ms;     /* each vCPU blocked; owned (fault_blocktime_fini) */
};

/* The totals now, spells still open counted up to now; -ENOMEM. */
int fault_service_blocktime(struct fault_service *fs, struct fault_blocktime *out);
void fault_blocktime_fini(struct fault_blocktime *bt);

#endif
