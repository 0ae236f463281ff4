// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guest page-fault service (fault.h): one userfaultfd, one fault
 * thread, one optional background-fill thread, and for postcopy a queue of
 * page requests that callers of fault_take_requests() and fault_place()
 * work off on their own threads.
 */
#include "vcpu-proc/fault.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "vcpu-proc/blocktime.h"

/* Pages the fill installs, or settles as zero, per hold of a region's lock. */
#define FAULT_FILL_BATCH   64
#define FAULT_SETTLE_BATCH 65536
/* Pages the fill installs with one UFFDIO_COPY at most (64 KiB, a snapshot chunk). */
#define FAULT_RUN_PAGES 16

/* Zero pages to copy from where UFFDIO_ZEROPAGE is not offered; never written. */
static uint8_t fault_zeros[FAULT_RUN_PAGES * SHM_PAGE_SIZE] __attribute__((aligned(4096)));

/*
 * One registered region.  Every field is written with the region held
 * exclusive and service->lock held, so either one is enough to read them;
 * the bits of both maps and missing are atomics.
 */
struct fault_region {
	bool registered;
	/*
	 * Postcopy (fault_region_register_needed): a page not settled is a
	 * needed page not placed yet; a fault on it becomes a request.
	 */
	bool postcopy;
	uint8_t *hva;
	uint64_t gpa;
	uint64_t size;
	uint64_t *installed; /* a bit per page: in place (atomic bit ops); owned */
	/*
	 * A bit per page: installed, or known zero (the fill skipped it, or
	 * postcopy does not need it); owned.  A needed page is settled only
	 * after its installed bit is set.
	 */
	uint64_t *settled;
	atomic_uint_fast64_t missing; /* pages not settled */
};

/* A postcopy request: a needed page faulted and not placed yet. */
struct fault_req {
	uint32_t region;
	bool taken; /* handed out by fault_take_requests() */
	uint64_t page;
	uint64_t t0; /* fault_now_ns() when its first fault was read */
};

struct fault_service {
	struct region_table *table; /* not owned */
	struct fault_source src;
	bool has_src; /* src was given: fault_region_register() and the fill may run */
	int uffd;
	int stop_efd; /* written once at stop: wakes the fault thread's poll */
	/* Set once at stop, under lock (for the takers); the fill checks it per batch. */
	atomic_bool stopping;
	pthread_t fault_thread;
	pthread_t fill_thread; /* valid while fill_running */
	bool fill_running;     /* the caller of fill_start/wait/stop only */
	int fill_result;       /* written by the fill thread, read after its join */
	bool zeropage;	       /* UFFDIO_ZEROPAGE works on these regions */
	/*
	 * Leaf lock: protects reg[] as described in struct fault_region, and
	 * the request queue below.
	 */
	pthread_mutex_t lock;
	struct fault_region reg[REGION_MAX];
	/*
	 * Postcopy requests, oldest first, a page at most once; protected by
	 * lock.  An entry goes when its page is placed (fault_place() sets the
	 * installed bit before it takes lock to drop it, and a fault queues
	 * only after testing that bit under lock, so no placed page stays
	 * queued) or its region is unregistered.  Only pages whose thread is
	 * blocked are queued, so the queue stays short: it is scanned.
	 */
	struct fault_req *req;
	size_t nr_req, cap_req; /* protected by lock */
	size_t nr_untaken;	/* entries of req not handed out; protected by lock */
	unsigned int takers;	/* threads in fault_take_requests(); protected by lock */
	/* With lock: a request queued, stopping set, or the last taker left at stop. */
	pthread_cond_t req_cond;
	atomic_uint_fast64_t faults, zero, raced, filled, skipped, failed, requested, placed;
	/*
	 * Latency samples, rings: the fault thread's own (lat) and postcopy
	 * waits, fault read to placed (wait); protected by lat_lock.
	 */
	pthread_mutex_t lat_lock;
	uint64_t lat[FAULT_LAT_SAMPLES];
	uint64_t lat_n; /* samples ever taken; protected by lat_lock */
	uint64_t wait[FAULT_LAT_SAMPLES];
	uint64_t wait_n; /* protected by lat_lock */
	/*
	 * Postcopy blocktime.  thread_id: the fault messages name the faulting
	 * thread (set at start).  bt and postcopy_seen (a postcopy region was
	 * ever registered) are protected by lock: a spell starts in
	 * fault_request() with the request, and ends in fault_req_drop() or
	 * fault_region_unregister() with it, so it covers the request's life.
	 */
	bool thread_id;
	bool postcopy_seen;
	struct blocktime bt;
};

static uint64_t fault_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * /dev/userfaultfd first: it gives a descriptor that also sees the kernel's
 * own faults (KVM writing guest RAM) without CAP_SYS_PTRACE, which the
 * userfaultfd() syscall needs for them when vm.unprivileged_userfaultfd is 0.
 * @dev: the device as the caller got it (a process that may not open it
 * gets it from the launcher), or -1 to open it here.
 */
static int uffd_open(int dev)
{
	int own = dev < 0 ? open("/dev/userfaultfd", O_RDWR | O_CLOEXEC) : -1, fd = -1;

	if (own >= 0)
		dev = own;
	if (dev >= 0)
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	if (own >= 0)
		close(own);
	if (fd < 0)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	return fd < 0 ? -errno : fd;
}

/* UFFDIO_COPY of one page, or UFFDIO_ZEROPAGE when @buf is NULL: 0, -EEXIST or -errno. */
static int uffd_fill(int uffd, uint8_t *addr, const void *buf)
{
	for (;;) {
		int ret;

		if (buf) {
			struct uffdio_copy c = {.dst = (uintptr_t)addr,
						.src = (uintptr_t)buf,
						.len = SHM_PAGE_SIZE};

			ret = ioctl(uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = {
				.range = {.start = (uintptr_t)addr, .len = SHM_PAGE_SIZE}};

			ret = ioctl(uffd, UFFDIO_ZEROPAGE, &z);
		}
		/* EAGAIN: the address space changed under the copy; try again. */
		if (ret == 0 || errno != EAGAIN)
			return ret ? -errno : 0;
	}
}

static int uffd_wake(int uffd, uint8_t *addr)
{
	struct uffdio_range r = {.start = (uintptr_t)addr, .len = SHM_PAGE_SIZE};

	return ioctl(uffd, UFFDIO_WAKE, &r) ? -errno : 0;
}

/* Page @page of @fr is in place or known zero; the caller holds its region.  True if it was not. */
static bool fault_settle(struct fault_region *fr, uint64_t page)
{
	if (shm_bitmap_test_and_set(fr->settled, page))
		return false;
	atomic_fetch_sub(&fr->missing, 1);
	return true;
}

/* Settles pages [from, to) of @fr as known zero; returns how many were not settled yet. */
static uint64_t fault_settle_range(struct fault_region *fr, uint64_t from, uint64_t to)
{
	uint64_t n = 0;

	while (from < to) {
		uint64_t bit = from % SHM_BITS_PER_WORD, cnt = SHM_BITS_PER_WORD - bit, mask, old;

		if (cnt > to - from)
			cnt = to - from;
		mask = (cnt == SHM_BITS_PER_WORD ? ~0ull : (1ull << cnt) - 1) << bit;
		old = __atomic_fetch_or(&fr->settled[from / SHM_BITS_PER_WORD], mask,
					__ATOMIC_ACQ_REL);
		n += (uint64_t)__builtin_popcountll(mask & ~old);
		from += cnt;
	}
	atomic_fetch_sub(&fr->missing, n);
	return n;
}

/* Page @page of @fr is in place; the caller holds its region. */
static void fault_mark_installed(struct fault_region *fr, uint64_t page)
{
	shm_bitmap_set(fr->installed, page);
	fault_settle(fr, page); /* after installed: see struct fault_region */
}

/*
 * Installs pages [first, first + n) of @r from @src (n pages; NULL: zero
 * pages) with as few copies as the kernel allows: one UFFDIO_COPY (or
 * UFFDIO_ZEROPAGE) for the run, again after a partial copy, and past a page
 * that is there already (EEXIST: it stays as it is, its waiters are woken).
 * *copied: the pages this call put in.  On an error, *done is the page
 * (from @first) that failed.  The caller holds @r shared.
 */
static int fault_copy_run(struct fault_service *fs, struct region *r, uint64_t first, uint64_t n,
			  const uint8_t *src, uint64_t *copied, uint64_t *done)
{
	struct fault_region *fr = &fs->reg[r->id];
	bool zero_copy = !src && !fs->zeropage;

	region_assert_locked_read(r);
	*copied = 0;
	for (*done = 0; *done < n;) {
		uint8_t *addr = (uint8_t *)r->hva + ((first + *done) << SHM_PAGE_SHIFT);
		uint64_t len = (n - *done) << SHM_PAGE_SHIFT, k;
		int64_t out;
		int ret;

		if (src || zero_copy) {
			struct uffdio_copy c = {
				.dst = (uintptr_t)addr,
				.src = (uintptr_t)(src ? src + (*done << SHM_PAGE_SHIFT)
						       : fault_zeros),
				.len = len};

			if (zero_copy && c.len > sizeof(fault_zeros))
				c.len = sizeof(fault_zeros);
			ret = ioctl(fs->uffd, UFFDIO_COPY, &c) ? -errno : 0;
			out = c.copy;
		} else {
			struct uffdio_zeropage z = {
				.range = {.start = (uintptr_t)addr, .len = len}};

			ret = ioctl(fs->uffd, UFFDIO_ZEROPAGE, &z) ? -errno : 0;
			out = z.zeropage;
		}
		k = out > 0 ? (uint64_t)out >> SHM_PAGE_SHIFT : 0;
		for (uint64_t i = 0; i < k; i++)
			fault_mark_installed(fr, first + *done + i);
		*copied += k;
		*done += k;
		if (!ret || ret == -EAGAIN)
			continue; /* all (of this copy), or stopped short: go on from there */
		if (ret != -EEXIST)
			return ret;
		/* There already (a fault, or the guest through one): it stays; wake its waiters. */
		fault_mark_installed(fr, first + *done);
		uffd_wake(fs->uffd, addr + (k << SHM_PAGE_SHIFT));
		(*done)++;
	}
	return 0;
}

/* What fault_install() and fault_postcopy() did. */
enum fault_how {
	FAULT_DATA,	 /* installed the source's page */
	FAULT_ZERO,	 /* installed a zero page: the source said so, or postcopy needs none */
	FAULT_RACED,	 /* the page was in place already: woke its waiters */
	FAULT_REQUESTED, /* postcopy: queued (or already queued); its thread waits */
};

/*
 * Puts page @page of @r in place from the source unless it is already
 * there, and wakes whoever waits for it.  The caller holds @r shared and
 * @r is registered.
 */
static int fault_install(struct fault_service *fs, struct region *r, uint64_t page, void *buf,
			 enum fault_how *how)
{
	struct fault_region *fr = &fs->reg[r->id];
	uint8_t *addr = (uint8_t *)r->hva + (page << SHM_PAGE_SHIFT);
	int ret;

	region_assert_locked_read(r);
	*how = FAULT_RACED;
	if (shm_bitmap_test(fr->installed, page))
		return uffd_wake(fs->uffd, addr);
	ret = fs->src.read_page(fs->src.arg, r->id, page, buf);
	if (ret < 0)
		return ret;
	*how = ret ? FAULT_DATA : FAULT_ZERO;
	if (*how == FAULT_ZERO && !fs->zeropage)
		memset(buf, 0, SHM_PAGE_SIZE);
	ret = uffd_fill(fs->uffd, addr, *how == FAULT_ZERO && fs->zeropage ? NULL : buf);
	if (ret == -EEXIST) {
		/* Installed by the other thread between the test and here. */
		*how = FAULT_RACED;
		ret = uffd_wake(fs->uffd, addr);
	}
	if (ret == 0) {
		shm_bitmap_set(fr->installed, page);
		fault_settle(fr, page);
	}
	return ret;
}

/* The index of @page of region @id in the request queue, or -1.  Under fs->lock. */
static ssize_t fault_req_find(const struct fault_service *fs, unsigned int id, uint64_t page)
{
	for (size_t i = 0; i < fs->nr_req; i++)
		if (fs->req[i].region == id && fs->req[i].page == page)
			return (ssize_t)i;
	return -1;
}

/* Drops entry @i of the request queue.  Under fs->lock. */
static void fault_req_remove(struct fault_service *fs, size_t i)
{
	if (!fs->req[i].taken)
		fs->nr_untaken--;
	memmove(&fs->req[i], &fs->req[i + 1], (fs->nr_req - i - 1) * sizeof(fs->req[0]));
	fs->nr_req--;
}

/*
 * Queues needed page @page of region @id, first faulted at @t0, unless it
 * is queued already or was placed meanwhile (then its waiters are woken:
 * how = FAULT_RACED).
 */
static int fault_request(struct fault_service *fs, unsigned int id, uint64_t page, uint8_t *addr,
			 uint64_t t0, pid_t tid, enum fault_how *how)
{
	int ret = 0;

	*how = FAULT_REQUESTED;
	pthread_mutex_lock(&fs->lock);
	if (shm_bitmap_test(fs->reg[id].installed, page)) {
		pthread_mutex_unlock(&fs->lock);
		*how = FAULT_RACED;
		return uffd_wake(fs->uffd, addr);
	}
	/* Its thread waits from here until the request is dropped. */
	if (tid)
		blocktime_fault(&fs->bt, tid, id, page, t0);
	if (fault_req_find(fs, id, page) >= 0)
		goto out; /* a second thread on the page: it waits with the first */
	if (fs->nr_req == fs->cap_req) {
		size_t cap = fs->cap_req ? fs->cap_req * 2 : 64;
		struct fault_req *req = realloc(fs->req, cap * sizeof(*req));

		if (!req) {
			ret = -ENOMEM;
			goto out;
		}
		fs->req = req;
		fs->cap_req = cap;
	}
	fs->req[fs->nr_req++] = (struct fault_req){.region = id, .page = page, .t0 = t0};
	fs->nr_untaken++;
	atomic_fetch_add(&fs->requested, 1);
	pthread_cond_broadcast(&fs->req_cond);
out:
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

/*
 * A fault of thread @tid (0: not known) on postcopy region @r, first read
 * at @t0: a page not needed goes in as a zero page at once; a needed one
 * becomes a request and its thread waits for fault_place().  The caller
 * holds @r shared.
 */
static int fault_postcopy(struct fault_service *fs, struct region *r, uint64_t page, void *buf,
			  uint64_t t0, pid_t tid, enum fault_how *how)
{
	struct fault_region *fr = &fs->reg[r->id];
	uint8_t *addr = (uint8_t *)r->hva + (page << SHM_PAGE_SHIFT);
	int ret;

	region_assert_locked_read(r);
	*how = FAULT_RACED;
	if (shm_bitmap_test(fr->installed, page))
		return uffd_wake(fs->uffd, addr);
	if (!shm_bitmap_test(fr->settled, page))
		return fault_request(fs, r->id, page, addr, t0, tid, how);
	/*
	 * Settled and not installed: not needed (a needed page is settled
	 * only once installed; if it just was, the zero page fails EEXIST).
	 */
	*how = FAULT_ZERO;
	if (!fs->zeropage)
		memset(buf, 0, SHM_PAGE_SIZE);
	ret = uffd_fill(fs->uffd, addr, fs->zeropage ? NULL : buf);
	if (ret == -EEXIST) {
		*how = FAULT_RACED;
		ret = uffd_wake(fs->uffd, addr);
	}
	if (ret == 0)
		shm_bitmap_set(fr->installed, page);
	return ret;
}

static void fault_failed(struct fault_service *fs, unsigned int id, uint64_t page, int err)
{
	atomic_fetch_add(&fs->failed, 1);
	log_err("guest RAM region %u page %llu: cannot be put in place: %s", id,
		(unsigned long long)page, strerror(-err));
	if (fs->src.failed)
		fs->src.failed(fs->src.arg, id, page, err);
}

static void fault_serve(struct fault_service *fs, uint64_t address, pid_t tid, void *buf)
{
	uint8_t *addr = (uint8_t *)(uintptr_t)(address & ~(SHM_PAGE_SIZE - 1));
	uint64_t t0 = fault_now_ns(), gpa = 0, page;
	unsigned int id = REGION_MAX;
	enum fault_how how;
	struct region *r;
	int ret;

	pthread_mutex_lock(&fs->lock);
	for (unsigned int i = 0; i < REGION_MAX && id == REGION_MAX; i++) {
		const struct fault_region *fr = &fs->reg[i];

		if (fr->registered && addr >= fr->hva && addr < fr->hva + fr->size) {
			id = i;
			gpa = fr->gpa + (uint64_t)(addr - fr->hva);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	/* Unregistered since the fault: UFFDIO_UNREGISTER woke the waiter. */
	if (id == REGION_MAX)
		return;
	r = region_table_find_read(fs->table, gpa, SHM_PAGE_SIZE);
	if (!r)
		return;
	/* The region may have been replaced while we waited for its lock. */
	if (r->id != id || !fs->reg[id].registered || (uint8_t *)r->hva + (gpa - r->gpa) != addr) {
		region_unlock_read(r);
		return;
	}
	page = (gpa - r->gpa) >> SHM_PAGE_SHIFT;
	if (fs->reg[id].postcopy)
		ret = fault_postcopy(fs, r, page, buf, t0, tid, &how);
	else
		ret = fault_install(fs, r, page, buf, &how);
	region_unlock_read(r);
	if (ret) {
		fault_failed(fs, id, page, ret);
		return;
	}
	if (how == FAULT_REQUESTED)
		return; /* its wait is counted when the page is placed */
	if (how == FAULT_RACED) {
		atomic_fetch_add(&fs->raced, 1);
		return;
	}
	atomic_fetch_add(&fs->faults, 1);
	if (how == FAULT_ZERO)
		atomic_fetch_add(&fs->zero, 1);
	pthread_mutex_lock(&fs->lat_lock);
	fs->lat[fs->lat_n++ % FAULT_LAT_SAMPLES] = fault_now_ns() - t0;
	pthread_mutex_unlock(&fs->lat_lock);
}

static void *fault_thread_main(void *arg)
{
	struct fault_service *fs = arg;
	struct uffd_msg msgs[16];
	void *buf = aligned_alloc(SHM_PAGE_SIZE, SHM_PAGE_SIZE);

	log_set_thread("fault");
	if (!buf) {
		log_err("fault service: no page buffer: guest faults stay unserved");
		return NULL;
	}
	while (!atomic_load(&fs->stopping)) {
		struct pollfd pfd[2] = {{.fd = fs->uffd, .events = POLLIN},
					{.fd = fs->stop_efd, .events = POLLIN}};
		ssize_t n;

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		n = read(fs->uffd, msgs, sizeof(msgs));
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				continue;
			log_err("fault service: read userfaultfd: %s", strerror(errno));
			break;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msgs[i].event == UFFD_EVENT_PAGEFAULT)
				fault_serve(fs, msgs[i].arg.pagefault.address,
					    fs->thread_id ? (pid_t)msgs[i].arg.pagefault.feat.ptid
							  : 0,
					    buf);
	}
	free(buf);
	return NULL;
}

int fault_service_start(struct fault_service **out, struct region_table *table,
			const struct fault_source *src)
{
	return fault_service_start_dev(out, table, src, -1);
}

int fault_service_start_dev(struct fault_service **out, struct region_table *table,
			    const struct fault_source *src, int uffd_dev)
{
	return fault_service_start_flags(out, table, src, uffd_dev, 0);
}

/*
 * Whether the kernel names the faulting thread in a fault message: asked
 * of a userfaultfd of its own, since UFFDIO_API takes the features once.
 */
static bool uffd_offers_thread_id(int uffd_dev)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = uffd_open(uffd_dev);
	bool ok;

	if (fd < 0)
		return false;
	ok = !ioctl(fd, UFFDIO_API, &api) && (api.features & UFFD_FEATURE_THREAD_ID);
	close(fd);
	return ok;
}

int fault_service_start_flags(struct fault_service **out, struct region_table *table,
			      const struct fault_source *src, int uffd_dev, unsigned int flags)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM};
	struct fault_service *fs;
	pthread_condattr_t ca;
	int ret;

	if (src && !src->read_page)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->table = table;
	if (src)
		fs->src = *src;
	fs->has_src = src;
	fs->stop_efd = -1;
	fs->thread_id = !(flags & FAULT_NO_THREAD_ID) && uffd_offers_thread_id(uffd_dev);
	if (fs->thread_id)
		api.features |= UFFD_FEATURE_THREAD_ID;
	else
		log_info("userfaultfd: no faulting thread ids: postcopy blocktime not measured");
	fs->uffd = uffd_open(uffd_dev);
	if (fs->uffd < 0) {
		ret = fs->uffd;
		log_err("userfaultfd: %s", strerror(-ret));
		goto err;
	}
	if (ioctl(fs->uffd, UFFDIO_API, &api)) {
		ret = -errno;
		log_err("UFFDIO_API with MISSING_SHMEM: %s", strerror(-ret));
		goto err;
	}
	fs->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (fs->stop_efd < 0) {
		ret = -errno;
		goto err;
	}
	pthread_mutex_init(&fs->lock, NULL);
	pthread_mutex_init(&fs->lat_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&fs->req_cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = -pthread_create(&fs->fault_thread, NULL, fault_thread_main, fs);
	if (ret) {
		pthread_cond_destroy(&fs->req_cond);
		pthread_mutex_destroy(&fs->lat_lock);
		pthread_mutex_destroy(&fs->lock);
		goto err;
	}
	*out = fs;
	return 0;
err:
	if (fs->stop_efd >= 0)
		close(fs->stop_efd);
	if (fs->uffd >= 0)
		close(fs->uffd);
	free(fs);
	return ret;
}

int fault_service_stop(struct fault_service *fs)
{
	uint64_t one = 1;

	if (!fs)
		return 0;
	pthread_mutex_lock(&fs->lock);
	for (unsigned int i = 0; i < REGION_MAX; i++) {
		if (fs->reg[i].registered) {
			pthread_mutex_unlock(&fs->lock);
			return -EBUSY;
		}
	}
	/* Under lock: a taker tests it before it waits on req_cond. */
	atomic_store(&fs->stopping, true);
	pthread_cond_broadcast(&fs->req_cond);
	while (fs->takers)
		pthread_cond_wait(&fs->req_cond, &fs->lock);
	pthread_mutex_unlock(&fs->lock);
	if (write(fs->stop_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("fault service: waking the fault thread: %s", strerror(errno));
	pthread_join(fs->fault_thread, NULL);
	if (fs->fill_running)
		fault_fill_wait(fs);
	close(fs->stop_efd);
	close(fs->uffd);
	pthread_cond_destroy(&fs->req_cond);
	pthread_mutex_destroy(&fs->lat_lock);
	pthread_mutex_destroy(&fs->lock);
	blocktime_fini(&fs->bt);
	free(fs->req);
	free(fs);
	return 0;
}

/*
 * A page bitmap straight from mmap(): zero pages the kernel hands out on
 * first touch, so registering a large region costs no memset of its maps
 * (calloc() would clear them when it reuses heap memory).
 */
static uint64_t *fault_map_alloc(uint64_t pages)
{
	void *p = mmap(NULL, SHM_BITMAP_WORDS(pages) * sizeof(uint64_t), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void fault_map_free(uint64_t *map, uint64_t pages)
{
	if (map)
		munmap(map, SHM_BITMAP_WORDS(pages) * sizeof(uint64_t));
}

/* Marks the pages of @fr already in the page cache as installed; returns how many. */
static int fault_mark_present(struct fault_region *fr, uint64_t pages, uint64_t *present)
{
	unsigned char *vec = malloc(pages);

	if (!vec)
		return -ENOMEM;
	if (mincore(fr->hva, fr->size, vec)) {
		int ret = -errno;

		free(vec);
		return ret;
	}
	*present = 0;
	for (uint64_t p = 0; p < pages; p++) {
		if (vec[p] & 1) {
			shm_bitmap_set(fr->installed, p);
			shm_bitmap_set(fr->settled, p);
			(*present)++;
		}
	}
	free(vec);
	return 0;
}

/* The maps of a region being registered (@fr), or -ENOMEM. */
static int fault_maps_alloc(struct fault_region *fr, uint64_t pages)
{
	fr->installed = fault_map_alloc(pages);
	fr->settled = fault_map_alloc(pages);
	if (fr->installed && fr->settled)
		return 0;
	fault_map_free(fr->installed, pages);
	fault_map_free(fr->settled, pages);
	return -ENOMEM;
}

/*
 * Registers @r (held exclusive) with the userfaultfd and publishes @fr,
 * its maps filled in, with @missing pages not settled.  Frees the maps on
 * failure.
 */
static int fault_region_add(struct fault_service *fs, struct region *r, struct fault_region *fr,
			    uint64_t missing)
{
	struct uffdio_register reg = {.range = {.start = (uintptr_t)r->hva, .len = r->size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	uint64_t pages = r->size >> SHM_PAGE_SHIFT;
	struct fault_region *dst = &fs->reg[r->id];
	int ret = 0;

	if (ioctl(fs->uffd, UFFDIO_REGISTER, &reg))
		ret = -errno;
	if (!ret && !(reg.ioctls & (1ull << _UFFDIO_COPY)))
		ret = -EOPNOTSUPP;
	if (ret) {
		log_err("region %u: userfaultfd registration: %s", r->id, strerror(-ret));
		fault_map_free(fr->installed, pages);
		fault_map_free(fr->settled, pages);
		return ret;
	}
	pthread_mutex_lock(&fs->lock);
	dst->hva = r->hva;
	dst->gpa = r->gpa;
	dst->size = r->size;
	dst->postcopy = fr->postcopy;
	dst->installed = fr->installed;
	dst->settled = fr->settled;
	atomic_store(&dst->missing, missing);
	fs->zeropage = reg.ioctls & (1ull << _UFFDIO_ZEROPAGE);
	dst->registered = true;
	if (fr->postcopy)
		fs->postcopy_seen = true;
	pthread_mutex_unlock(&fs->lock);
	return 0;
}

int fault_region_register(struct fault_service *fs, struct region *r, bool fresh)
{
	uint64_t pages = r->size >> SHM_PAGE_SHIFT, present = 0;
	struct fault_region fr = {.hva = r->hva, .size = r->size};
	int ret;

	region_assert_locked_write(r);
	if (!fs->has_src)
		return -EINVAL;
	if (fs->reg[r->id].registered)
		return -EALREADY;
	ret = fault_maps_alloc(&fr, pages);
	if (ret)
		return ret;
	ret = fresh ? 0 : fault_mark_present(&fr, pages, &present);
	if (ret) {
		log_err("region %u: userfaultfd registration: %s", r->id, strerror(-ret));
		fault_map_free(fr.installed, pages);
		fault_map_free(fr.settled, pages);
		return ret;
	}
	ret = fault_region_add(fs, r, &fr, pages - present);
	if (!ret)
		log_debug("region %u: %llu pages, %llu present, registered for faults", r->id,
			  (unsigned long long)pages, (unsigned long long)present);
	return ret;
}

int fault_region_register_needed(struct fault_service *fs, struct region *r, const uint64_t *needed)
{
	uint64_t pages = r->size >> SHM_PAGE_SHIFT, words = SHM_BITMAP_WORDS(pages), nr = 0;
	struct fault_region fr = {.postcopy = true};
	int ret;

	region_assert_locked_write(r);
	if (!needed)
		return -EINVAL;
	if (fs->reg[r->id].registered)
		return -EALREADY;
	ret = fault_maps_alloc(&fr, pages);
	if (ret)
		return ret;
	/* The copy of @needed is the settled map, inverted: one pass over the words. */
	for (uint64_t w = 0; w < words; w++) {
		uint64_t bits = shm_bitmap_load_word(needed, w),
			 tail = pages - w * SHM_BITS_PER_WORD;

		if (tail < SHM_BITS_PER_WORD)
			bits &= (1ull << tail) - 1;
		fr.settled[w] = ~bits;
		nr += (uint64_t)__builtin_popcountll(bits);
	}
	ret = fault_region_add(fs, r, &fr, nr);
	if (!ret)
		log_debug("region %u: %llu pages, %llu needed, registered for postcopy", r->id,
			  (unsigned long long)pages, (unsigned long long)nr);
	return ret;
}

int fault_region_unregister(struct fault_service *fs, struct region *r, bool force)
{
	struct fault_region *fr = &fs->reg[r->id];
	struct uffdio_range range = {.start = (uintptr_t)fr->hva, .len = fr->size};
	uint64_t *installed, *settled, fr_pages = fr->size >> SHM_PAGE_SHIFT;

	region_assert_locked_write(r);
	if (!fr->registered)
		return -ENOENT;
	if (atomic_load(&fr->missing) && !force)
		return -EBUSY;
	if (ioctl(fs->uffd, UFFDIO_UNREGISTER, &range))
		log_warn("region %u: UFFDIO_UNREGISTER: %s", r->id, strerror(errno));
	pthread_mutex_lock(&fs->lock);
	/* Its waiters were woken by the unregistration; nobody is to fetch their pages. */
	for (size_t i = fs->nr_req; i-- > 0;)
		if (fs->req[i].region == r->id)
			fault_req_remove(fs, i);
	blocktime_woken(&fs->bt, r->id, 0, UINT64_MAX, fault_now_ns());
	fr->postcopy = false;
	installed = fr->installed;
	settled = fr->settled;
	fr->installed = NULL;
	fr->settled = NULL;
	fr->registered = false;
	pthread_mutex_unlock(&fs->lock);
	fault_map_free(installed, fr_pages);
	fault_map_free(settled, fr_pages);
	return 0;
}

/*
 * The fill's install: the missing pages of [first, first + n) of @r
 * (n <= FAULT_RUN_PAGES), read into @buf and installed with as few copies
 * as consecutive missing pages allow (one ioctl per run instead of per
 * page).  A copy stops at a page that appeared meanwhile (a fault, or the
 * guest through one): it stays as it is.  The caller holds @r shared.
 */
static int fault_fill_run(struct fault_service *fs, struct region *r, uint64_t first, uint64_t n,
			  uint8_t *buf)
{
	struct fault_region *fr = &fs->reg[r->id];
	uint64_t s = 0, e, done, copied;
	int ret = 0, read_err = 0;

	region_assert_locked_read(r);
	while (s < n && !read_err) {
		while (s < n && shm_bitmap_test(fr->installed, first + s))
			s++;
		for (e = s; e < n && !shm_bitmap_test(fr->installed, first + e); e++) {
			uint8_t *dst = buf + (e - s) * SHM_PAGE_SIZE;

			ret = fs->src.read_page(fs->src.arg, r->id, first + e, dst);
			if (ret < 0) {
				read_err = ret; /* install what was read, then fail */
				fault_failed(fs, r->id, first + e, ret);
				break;
			}
			if (ret == 0)
				memset(dst, 0, SHM_PAGE_SIZE);
		}
		if (e > s) {
			ret = fault_copy_run(fs, r, first + s, e - s, buf, &copied, &done);
			atomic_fetch_add(&fs->filled, copied);
			if (ret) {
				fault_failed(fs, r->id, first + s + done, ret);
				return ret;
			}
		}
		s = e;
	}
	return read_err;
}

/*
 * Where the fill goes next in region @id of @pages pages: [*start, *end)
 * may hold data; before *start all is zero.  Without next_data, all of it.
 */
static int fault_fill_next(struct fault_service *fs, unsigned int id, uint64_t from, uint64_t pages,
			   uint64_t *start, uint64_t *end)
{
	int ret;

	if (!fs->src.next_data) {
		*start = from;
		*end = pages;
		return 0;
	}
	ret = fs->src.next_data(fs->src.arg, id, from, start, end);
	if (ret == -ENXIO) {
		*start = *end = pages;
		return 0;
	}
	if (ret)
		return ret;
	if (*start < from || *end <= *start)
		return -EPROTO; /* a source bug: never skip what it did not vouch for */
	*end = *end < pages ? *end : pages;
	*start = *start < pages ? *start : pages;
	return 0;
}

/* Fills what is missing of region @id; 0, -ECANCELED at stop, or a failed page's error. */
static int fault_fill_region(struct fault_service *fs, unsigned int id, void *buf)
{
	uint64_t start = 0, end = 0;

	for (uint64_t page = 0;;) {
		uint64_t gpa, pages, stop;
		struct fault_region *fr = &fs->reg[id];
		struct region *r;
		int ret = 0;

		if (atomic_load(&fs->stopping))
			return -ECANCELED;
		pthread_mutex_lock(&fs->lock);
		gpa = fr->gpa;
		/* Postcopy: nothing to read; its pages come through fault_place(). */
		pages = fr->registered && !fr->postcopy ? fr->size >> SHM_PAGE_SHIFT : 0;
		pthread_mutex_unlock(&fs->lock);
		if (page >= pages)
			return 0;
		if (page >= end) {
			ret = fault_fill_next(fs, id, page, pages, &start, &end);
			if (ret) {
				fault_failed(fs, id, page, ret);
				return ret;
			}
		}
		r = region_table_find_read(fs->table, gpa + (page << SHM_PAGE_SHIFT),
					   SHM_PAGE_SIZE);
		if (!r)
			return 0; /* removed meanwhile */
		if (r->id != id || !fr->registered || fr->postcopy) {
			region_unlock_read(r);
			return 0;
		}
		if (page < start) {
			/* Zero in the source: settled, left missing (it reads as zero). */
			stop = page + FAULT_SETTLE_BATCH < start ? page + FAULT_SETTLE_BATCH
								 : start;
			atomic_fetch_add(&fs->skipped, fault_settle_range(fr, page, stop));
			page = stop;
		} else {
			stop = page + FAULT_FILL_BATCH < end ? page + FAULT_FILL_BATCH : end;
			for (; page < stop && !ret; page += FAULT_RUN_PAGES) {
				uint64_t n = stop - page < FAULT_RUN_PAGES ? stop - page
									   : FAULT_RUN_PAGES;

				ret = fault_fill_run(fs, r, page, n, buf);
			}
		}
		region_unlock_read(r);
		if (ret)
			return ret;
	}
}

static void *fault_fill_main(void *arg)
{
	struct fault_service *fs = arg;
	void *buf = aligned_alloc(SHM_PAGE_SIZE, FAULT_RUN_PAGES * SHM_PAGE_SIZE);
	int ret = buf ? 0 : -ENOMEM;

	log_set_thread("fill");
	for (unsigned int id = 0; id < REGION_MAX && !ret; id++)
		ret = fault_fill_region(fs, id, buf);
	free(buf);
	fs->fill_result = ret;
	return NULL;
}

int fault_fill_start(struct fault_service *fs)
{
	int ret;

	if (!fs->has_src)
		return -EINVAL;
	if (fs->fill_running)
		return -EALREADY;
	fs->fill_result = 0;
	ret = pthread_create(&fs->fill_thread, NULL, fault_fill_main, fs);
	if (ret)
		return -ret;
	fs->fill_running = true;
	return 0;
}

int fault_fill_wait(struct fault_service *fs)
{
	if (!fs->fill_running)
		return -ECHILD;
	pthread_join(fs->fill_thread, NULL);
	fs->fill_running = false;
	return fs->fill_result;
}

/* Every request handed out and not placed yet is queued again; with lock held. */
static void fault_requeue_taken(struct fault_service *fs)
{
	for (size_t i = 0; i < fs->nr_req; i++) {
		if (fs->req[i].taken) {
			fs->req[i].taken = false;
			fs->nr_untaken++;
		}
	}
}

void fault_requests_again(struct fault_service *fs)
{
	pthread_mutex_lock(&fs->lock);
	fault_requeue_taken(fs);
	if (fs->nr_untaken)
		pthread_cond_broadcast(&fs->req_cond);
	pthread_mutex_unlock(&fs->lock);
}

int fault_take_requests(struct fault_service *fs, struct fault_page *out, unsigned int max,
			int timeout_ms, bool again)
{
	struct timespec end;
	int n = 0, ret = 0;

	if (!max)
		return -EINVAL;
	if (timeout_ms > 0) {
		clock_gettime(CLOCK_MONOTONIC, &end);
		end.tv_sec += timeout_ms / 1000;
		end.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (end.tv_nsec >= 1000000000) {
			end.tv_sec++;
			end.tv_nsec -= 1000000000;
		}
	}
	pthread_mutex_lock(&fs->lock);
	fs->takers++;
	if (again)
		fault_requeue_taken(fs);
	while (!atomic_load(&fs->stopping) && !fs->nr_untaken && timeout_ms && !ret) {
		if (timeout_ms < 0)
			pthread_cond_wait(&fs->req_cond, &fs->lock);
		else
			ret = pthread_cond_timedwait(&fs->req_cond, &fs->lock, &end);
	}
	if (atomic_load(&fs->stopping)) {
		n = -ECANCELED;
	} else {
		for (size_t i = 0; i < fs->nr_req && (unsigned int)n < max; i++) {
			if (fs->req[i].taken)
				continue;
			fs->req[i].taken = true;
			fs->nr_untaken--;
			out[n].region = fs->req[i].region;
			out[n++].page = fs->req[i].page;
		}
	}
	if (--fs->takers == 0 && atomic_load(&fs->stopping))
		pthread_cond_broadcast(&fs->req_cond); /* fault_service_stop() waits */
	pthread_mutex_unlock(&fs->lock);
	return n;
}

/*
 * Drops the requests for the pages of [first, first + n) of region @id
 * now installed, and takes their waits as samples (16 at most: a call
 * places the pages of a few waiters, not more).  The caller holds the
 * region shared (the maps stay).
 */
static void fault_req_drop(struct fault_service *fs, unsigned int id, uint64_t first, uint64_t n)
{
	uint64_t now = fault_now_ns(), waits[16];
	unsigned int nw = 0;

	pthread_mutex_lock(&fs->lock);
	for (size_t i = fs->nr_req; i-- > 0;) {
		const struct fault_req *q = &fs->req[i];

		if (q->region != id || q->page < first || q->page - first >= n ||
		    !shm_bitmap_test(fs->reg[id].installed, q->page))
			continue;
		if (nw < sizeof(waits) / sizeof(waits[0]))
			waits[nw++] = now - q->t0;
		blocktime_woken(&fs->bt, id, q->page, 1, now);
		fault_req_remove(fs, i);
	}
	pthread_mutex_unlock(&fs->lock);
	if (!nw)
		return;
	pthread_mutex_lock(&fs->lat_lock);
	for (unsigned int i = 0; i < nw; i++)
		fs->wait[fs->wait_n++ % FAULT_LAT_SAMPLES] = waits[i];
	pthread_mutex_unlock(&fs->lat_lock);
}

/*
 * Installs the missing pages of [first, first + n) of @r from @src (NULL:
 * zeros), a copy per run of missing pages.  The caller holds @r shared.
 */
static int fault_place_range(struct fault_service *fs, struct region *r, uint64_t first, uint64_t n,
			     const uint8_t *src)
{
	const struct fault_region *fr = &fs->reg[r->id];
	uint64_t s = 0, e, copied, done;
	int ret;

	while (s < n) {
		while (s < n && shm_bitmap_test(fr->installed, first + s))
			s++;
		for (e = s; e < n && !shm_bitmap_test(fr->installed, first + e); e++)
			;
		if (e == s)
			break;
		ret = fault_copy_run(fs, r, first + s, e - s,
				     src ? src + (s << SHM_PAGE_SHIFT) : NULL, &copied, &done);
		atomic_fetch_add(&fs->placed, copied);
		if (ret)
			return ret;
		s = e;
	}
	return 0;
}

int fault_place(struct fault_service *fs, unsigned int region_id, uint64_t page, unsigned int nr,
		const void *data)
{
	const uint8_t *src = data;
	struct fault_region *fr;
	uint8_t *bounce = NULL;
	uint64_t gpa, pages;
	struct region *r;
	int ret = 0;

	if (region_id >= REGION_MAX || !nr)
		return -EINVAL;
	fr = &fs->reg[region_id];
	pthread_mutex_lock(&fs->lock);
	gpa = fr->gpa;
	pages = fr->registered ? fr->size >> SHM_PAGE_SHIFT : 0;
	pthread_mutex_unlock(&fs->lock);
	if (page >= pages || nr > pages - page)
		return -EINVAL;
	/* UFFDIO_COPY wants a page-aligned source: copy a misaligned one through a buffer. */
	if ((uintptr_t)src % SHM_PAGE_SIZE) {
		bounce = aligned_alloc(SHM_PAGE_SIZE, FAULT_RUN_PAGES * SHM_PAGE_SIZE);
		if (!bounce)
			return -ENOMEM;
	}
	r = region_table_find_read(fs->table, gpa + (page << SHM_PAGE_SHIFT),
				   (uint64_t)nr << SHM_PAGE_SHIFT);
	if (!r) {
		free(bounce);
		return -EINVAL;
	}
	/* The region may have been replaced while we waited for its lock. */
	if (r->id != region_id || !fr->registered || r->hva != fr->hva || r->gpa != fr->gpa ||
	    r->size != fr->size) {
		region_unlock_read(r);
		free(bounce);
		return -EINVAL;
	}
	if (!bounce) {
		ret = fault_place_range(fs, r, page, nr, src);
	} else {
		for (uint64_t i = 0; i < nr && !ret; i += FAULT_RUN_PAGES) {
			uint64_t k = nr - i < FAULT_RUN_PAGES ? nr - i : FAULT_RUN_PAGES;

			memcpy(bounce, src + (i << SHM_PAGE_SHIFT), k << SHM_PAGE_SHIFT);
			ret = fault_place_range(fs, r, page + i, k, bounce);
		}
	}
	fault_req_drop(fs, region_id, page, nr);
	region_unlock_read(r);
	free(bounce);
	return ret;
}

static int fault_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* p50, p99 and max of ring @ring that took @taken samples; @tmp holds FAULT_LAT_SAMPLES. */
static void fault_percentiles(const uint64_t *ring, uint64_t taken, uint64_t *tmp, uint64_t *p50,
			      uint64_t *p99, uint64_t *max)
{
	size_t n = taken < FAULT_LAT_SAMPLES ? (size_t)taken : FAULT_LAT_SAMPLES;

	if (!n)
		return;
	memcpy(tmp, ring, n * sizeof(*tmp));
	qsort(tmp, n, sizeof(*tmp), fault_cmp_u64);
	*p50 = tmp[n / 2];
	*p99 = tmp[n * 99 / 100];
	*max = tmp[n - 1];
}

void fault_service_stats(struct fault_service *fs, struct fault_stats *st)
{
	uint64_t *lat = malloc(sizeof(fs->lat));

	memset(st, 0, sizeof(*st));
	st->faults = atomic_load(&fs->faults);
	st->zero = atomic_load(&fs->zero);
	st->raced = atomic_load(&fs->raced);
	st->filled = atomic_load(&fs->filled);
	st->skipped = atomic_load(&fs->skipped);
	st->failed = atomic_load(&fs->failed);
	st->requested = atomic_load(&fs->requested);
	st->placed = atomic_load(&fs->placed);
	pthread_mutex_lock(&fs->lock);
	for (unsigned int i = 0; i < REGION_MAX; i++)
		if (fs->reg[i].registered)
			st->missing += atomic_load(&fs->reg[i].missing);
	pthread_mutex_unlock(&fs->lock);
	if (!lat)
		return;
	/* Sorted under lat_lock: a stats call is rare, a sample is a store. */
	pthread_mutex_lock(&fs->lat_lock);
	fault_percentiles(fs->lat, fs->lat_n, lat, &st->lat_p50_ns, &st->lat_p99_ns,
			  &st->lat_max_ns);
	fault_percentiles(fs->wait, fs->wait_n, lat, &st->wait_p50_ns, &st->wait_p99_ns,
			  &st->wait_max_ns);
	pthread_mutex_unlock(&fs->lat_lock);
	free(lat);
}

int fault_service_set_vcpus(struct fault_service *fs, const pid_t *tids, unsigned int n)
{
	int ret;

	pthread_mutex_lock(&fs->lock);
	ret = blocktime_set_vcpus(&fs->bt, tids, n);
	pthread_mutex_unlock(&fs->lock);
	return ret;
}

int fault_service_blocktime(struct fault_service *fs, struct fault_blocktime *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&fs->lock);
	out->measured = fs->thread_id && fs->bt.nr && fs->postcopy_seen;
	if (out->measured) {
		out->vcpu_ms = calloc(fs->bt.nr, sizeof(*out->vcpu_ms));
		if (out->vcpu_ms) {
			out->nr_vcpus = fs->bt.nr;
			blocktime_read(&fs->bt, fault_now_ns(), out->vcpu_ms, &out->total_ms);
		}
	}
	pthread_mutex_unlock(&fs->lock);
	if (out->measured && !out->vcpu_ms) {
		out->measured = false;
		return -ENOMEM;
	}
	return 0;
}

void fault_blocktime_fini(struct fault_blocktime *bt)
{
	free(bt->vcpu_ms);
	bt->vcpu_ms = NULL;
	bt->nr_vcpus = 0;
}
