// SPDX-License-Identifier: GPL-2.0-only
/*
 * The guest page-fault service (fault.h): one userfaultfd, one fault
 * thread, one optional background-fill thread.
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

/* Pages the fill installs, or settles as zero, per hold of a region's lock. */
#define FAULT_FILL_BATCH   64
#define FAULT_SETTLE_BATCH 65536
/* Pages the fill installs with one UFFDIO_COPY at most (64 KiB, a snapshot chunk). */
#define FAULT_RUN_PAGES 16

/*
 * One registered region.  Every field is written with the region held
 * exclusive and service->lock held, so either one is enough to read them;
 * the bits of both maps and missing are atomics.
 */
struct fault_region {
	bool registered;
	uint8_t *hva;
	uint64_t gpa;
	uint64_t size;
	uint64_t *installed; /* a bit per page: in place (atomic bit ops); owned */
	/* A bit per page: installed, or known zero (the fill skipped it); owned. */
	uint64_t *settled;
	atomic_uint_fast64_t missing; /* pages not settled */
};

struct fault_service {
	struct region_table *table; /* not owned */
	struct fault_source src;
	int uffd;
	int stop_efd;	      /* written once at stop: wakes the fault thread's poll */
	atomic_bool stopping; /* set once at stop; the fill checks it per batch */
	pthread_t fault_thread;
	pthread_t fill_thread; /* valid while fill_running */
	bool fill_running;     /* the caller of fill_start/wait/stop only */
	int fill_result;       /* written by the fill thread, read after its join */
	bool zeropage;	       /* UFFDIO_ZEROPAGE works on these regions */
	/* Leaf lock: protects reg[] as described in struct fault_region. */
	pthread_mutex_t lock;
	struct fault_region reg[REGION_MAX];
	atomic_uint_fast64_t faults, zero, raced, filled, skipped, failed;
	/* The fault thread's latency samples: a ring; protected by lat_lock. */
	pthread_mutex_t lat_lock;
	uint64_t lat[FAULT_LAT_SAMPLES];
	uint64_t lat_n; /* samples ever taken; protected by lat_lock */
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
 */
static int uffd_open(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd = -1;

	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
		close(dev);
	}
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

/* What fault_install() did. */
enum fault_how {
	FAULT_DATA,  /* installed the source's page */
	FAULT_ZERO,  /* installed a zero page: the source said so */
	FAULT_RACED, /* the page was in place already: woke its waiters */
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

static void fault_failed(struct fault_service *fs, unsigned int id, uint64_t page, int err)
{
	atomic_fetch_add(&fs->failed, 1);
	log_err("guest RAM region %u page %llu: cannot be put in place: %s", id,
		(unsigned long long)page, strerror(-err));
	if (fs->src.failed)
		fs->src.failed(fs->src.arg, id, page, err);
}

static void fault_serve(struct fault_service *fs, uint64_t address, void *buf)
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
	ret = fault_install(fs, r, page, buf, &how);
	region_unlock_read(r);
	if (ret) {
		fault_failed(fs, id, page, ret);
		return;
	}
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
				fault_serve(fs, msgs[i].arg.pagefault.address, buf);
	}
	free(buf);
	return NULL;
}

int fault_service_start(struct fault_service **out, struct region_table *table,
			const struct fault_source *src)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MISSING_SHMEM};
	struct fault_service *fs;
	int ret;

	if (!src || !src->read_page)
		return -EINVAL;
	fs = calloc(1, sizeof(*fs));
	if (!fs)
		return -ENOMEM;
	fs->table = table;
	fs->src = *src;
	fs->stop_efd = -1;
	fs->uffd = uffd_open();
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
	ret = -pthread_create(&fs->fault_thread, NULL, fault_thread_main, fs);
	if (ret) {
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
	pthread_mutex_unlock(&fs->lock);
	atomic_store(&fs->stopping, true);
	if (write(fs->stop_efd, &one, sizeof(one)) != sizeof(one))
		log_warn("fault service: waking the fault thread: %s", strerror(errno));
	pthread_join(fs->fault_thread, NULL);
	if (fs->fill_running)
		fault_fill_wait(fs);
	close(fs->stop_efd);
	close(fs->uffd);
	pthread_mutex_destroy(&fs->lat_lock);
	pthread_mutex_destroy(&fs->lock);
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

int fault_region_register(struct fault_service *fs, struct region *r, bool fresh)
{
	struct uffdio_register reg = {.range = {.start = (uintptr_t)r->hva, .len = r->size},
				      .mode = UFFDIO_REGISTER_MODE_MISSING};
	uint64_t pages = r->size >> SHM_PAGE_SHIFT, present = 0;
	struct fault_region fr = {.hva = r->hva, .gpa = r->gpa, .size = r->size};
	int ret;

	region_assert_locked_write(r);
	if (fs->reg[r->id].registered)
		return -EALREADY;
	fr.installed = fault_map_alloc(pages);
	fr.settled = fault_map_alloc(pages);
	if (!fr.installed || !fr.settled) {
		fault_map_free(fr.installed, pages);
		fault_map_free(fr.settled, pages);
		return -ENOMEM;
	}
	ret = fresh ? 0 : fault_mark_present(&fr, pages, &present);
	if (!ret && ioctl(fs->uffd, UFFDIO_REGISTER, &reg))
		ret = -errno;
	if (!ret && !(reg.ioctls & (1ull << _UFFDIO_COPY)))
		ret = -EOPNOTSUPP;
	if (ret) {
		log_err("region %u: userfaultfd registration: %s", r->id, strerror(-ret));
		fault_map_free(fr.installed, pages);
		fault_map_free(fr.settled, pages);
		return ret;
	}
	pthread_mutex_lock(&fs->lock);
	fs->reg[r->id].hva = fr.hva;
	fs->reg[r->id].gpa = fr.gpa;
	fs->reg[r->id].size = fr.size;
	fs->reg[r->id].installed = fr.installed;
	fs->reg[r->id].settled = fr.settled;
	atomic_store(&fs->reg[r->id].missing, pages - present);
	fs->zeropage = reg.ioctls & (1ull << _UFFDIO_ZEROPAGE);
	fs->reg[r->id].registered = true;
	pthread_mutex_unlock(&fs->lock);
	log_debug("region %u: %llu pages, %llu present, registered for faults", r->id,
		  (unsigned long long)pages, (unsigned long long)present);
	return 0;
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
	uint64_t s = 0, e, done;
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
		for (done = s; done < e;) {
			uint8_t *addr = (uint8_t *)r->hva + ((first + done) << SHM_PAGE_SHIFT);
			struct uffdio_copy c = {
				.dst = (uintptr_t)addr,
				.src = (uintptr_t)(buf + (done - s) * SHM_PAGE_SIZE),
				.len = (e - done) * SHM_PAGE_SIZE};
			uint64_t copied;

			ret = ioctl(fs->uffd, UFFDIO_COPY, &c) ? -errno : 0;
			copied = c.copy > 0 ? (uint64_t)c.copy >> SHM_PAGE_SHIFT : 0;
			for (uint64_t i = 0; i < copied; i++) {
				shm_bitmap_set(fr->installed, first + done + i);
				fault_settle(fr, first + done + i);
			}
			atomic_fetch_add(&fs->filled, copied);
			done += copied;
			if (!ret || ret == -EAGAIN)
				continue; /* all, or stopped short: go on from there */
			if (ret != -EEXIST) {
				fault_failed(fs, r->id, first + done, ret);
				return ret;
			}
			/* Installed by a fault meanwhile: it stays; wake its waiters. */
			shm_bitmap_set(fr->installed, first + done);
			fault_settle(fr, first + done);
			uffd_wake(fs->uffd, addr + (copied << SHM_PAGE_SHIFT));
			done++;
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
		pages = fr->registered ? fr->size >> SHM_PAGE_SHIFT : 0;
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
		if (r->id != id || !fr->registered) {
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

static int fault_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

void fault_service_stats(struct fault_service *fs, struct fault_stats *st)
{
	uint64_t *lat = malloc(sizeof(fs->lat));
	size_t n;

	memset(st, 0, sizeof(*st));
	st->faults = atomic_load(&fs->faults);
	st->zero = atomic_load(&fs->zero);
	st->raced = atomic_load(&fs->raced);
	st->filled = atomic_load(&fs->filled);
	st->skipped = atomic_load(&fs->skipped);
	st->failed = atomic_load(&fs->failed);
	pthread_mutex_lock(&fs->lock);
	for (unsigned int i = 0; i < REGION_MAX; i++)
		if (fs->reg[i].registered)
			st->missing += atomic_load(&fs->reg[i].missing);
	pthread_mutex_unlock(&fs->lock);
	if (!lat)
		return;
	pthread_mutex_lock(&fs->lat_lock);
	n = fs->lat_n < FAULT_LAT_SAMPLES ? (size_t)fs->lat_n : FAULT_LAT_SAMPLES;
	memcpy(lat, fs->lat, n * sizeof(*lat));
	pthread_mutex_unlock(&fs->lat_lock);
	if (n) {
		qsort(lat, n, sizeof(*lat), fault_cmp_u64);
		st->lat_p50_ns = lat[n / 2];
		st->lat_p99_ns = lat[n * 99 / 100];
		st->lat_max_ns = lat[n - 1];
	}
	free(lat);
}
