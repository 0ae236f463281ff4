// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest RAM regions: sealed memfds mapped MAP_SHARED (or held unmapped),
 * and the SEEK_DATA scan that tells which pages of a memfd were ever
 * written.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm-internal.h"
#include "shm/shm.h"

/* Seals every shared mapping relies on: its length can never change. */
#define SHM_SEALS_SIZE (F_SEAL_SHRINK | F_SEAL_GROW)

int shm_memfd_create_sealed(const char *name, uint64_t size, int *fdp)
{
	int fd, ret;

	fd = memfd_create(name, MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		ret = -errno;
		log_err("memfd_create %s: %s", name, strerror(-ret));
		return ret;
	}
	if (ftruncate(fd, (off_t)size) < 0) {
		ret = -errno;
		log_err("ftruncate %s to %llu bytes: %s", name, (unsigned long long)size,
			strerror(-ret));
		goto err_close;
	}
	if (fcntl(fd, F_ADD_SEALS, SHM_SEALS_SIZE | F_SEAL_SEAL) < 0) {
		ret = -errno;
		log_err("F_ADD_SEALS %s: %s", name, strerror(-ret));
		goto err_close;
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}

int shm_memfd_check_sealed(int fd, uint64_t size, const char *what)
{
	struct stat st;
	int seals;

	if (fstat(fd, &st) < 0) {
		int ret = -errno;

		log_err("fstat %s fd %d: %s", what, fd, strerror(-ret));
		return ret;
	}
	if ((uint64_t)st.st_size != size) {
		log_err("%s fd %d: size %lld, expected %llu", what, fd, (long long)st.st_size,
			(unsigned long long)size);
		return -EINVAL;
	}
	seals = fcntl(fd, F_GET_SEALS);
	if (seals < 0) {
		log_err("F_GET_SEALS %s fd %d: %s", what, fd, strerror(errno));
		return -EINVAL; /* not a memfd (or sealing not allowed) */
	}
	if ((seals & SHM_SEALS_SIZE) != SHM_SEALS_SIZE) {
		log_err("%s fd %d: seals 0x%x lack shrink/grow", what, fd, seals);
		return -EINVAL;
	}
	return 0;
}

/*
 * MAP_NORESERVE: guest RAM is mostly holes and untouched pages; accounting
 * the whole size up front would make large guests fail under strict
 * overcommit for memory they never use.
 */
static int region_map(struct shm_region *r, int fd, uint64_t size, int prot)
{
	void *base;

	base = mmap(NULL, size, prot, MAP_SHARED | MAP_NORESERVE, fd, 0);
	if (base == MAP_FAILED) {
		int ret = -errno;

		log_err("mmap RAM fd %d (%llu bytes): %s", fd, (unsigned long long)size,
			strerror(-ret));
		return ret;
	}
	/*
	 * Huge pages where the host allows them for shmem (shmem_enabled
	 * advise/within_size/always): fewer allocations when a migration
	 * fills the destination, and 2 MiB stage-2 mappings for the guest.
	 * With shmem THP off (the default) this changes nothing; best effort.
	 */
	if (madvise(base, size, MADV_HUGEPAGE))
		log_debug("madvise(MADV_HUGEPAGE) RAM fd %d: %s", fd, strerror(errno));
	r->fd = fd;
	r->base = base;
	r->size = size;
	return 0;
}

static bool region_size_valid(uint64_t size)
{
	return size != 0 && size % SHM_PAGE_SIZE == 0 && size <= (uint64_t)INT64_MAX;
}

int shm_region_create(struct shm_region *r, unsigned int index, uint64_t size)
{
	char name[32];
	int fd, ret;

	r->fd = -1;
	r->base = NULL;
	r->size = 0;
	if (!region_size_valid(size)) {
		log_err("RAM region %u: size %llu is not a non-zero multiple of %llu", index,
			(unsigned long long)size, SHM_PAGE_SIZE);
		return -EINVAL;
	}
	snprintf(name, sizeof(name), "cleave-ram-%u", index);
	ret = shm_memfd_create_sealed(name, size, &fd);
	if (ret)
		return ret;
	ret = region_map(r, fd, size, PROT_READ | PROT_WRITE);
	if (ret)
		goto err_close;
	return 0;

err_close:
	close(fd);
	return ret;
}

/* On success @r owns @fd (shm_region_close closes it); on error the caller does. */
int shm_region_open(struct shm_region *r, int fd, uint64_t size, int prot)
{
	int ret;

	r->fd = -1;
	r->base = NULL;
	r->size = 0;
	if (!region_size_valid(size) ||
	    (prot != PROT_NONE && prot != PROT_READ && prot != (PROT_READ | PROT_WRITE))) {
		log_err("RAM fd %d: bad size %llu or prot 0x%x", fd, (unsigned long long)size,
			prot);
		return -EINVAL;
	}
	ret = shm_memfd_check_sealed(fd, size, "RAM");
	if (ret)
		return ret;
	if (prot == PROT_NONE) {
		r->fd = fd;
		r->size = size;
		return 0;
	}
	return region_map(r, fd, size, prot);
}

void shm_region_close(struct shm_region *r)
{
	if (r->base && r->size)
		munmap(r->base, r->size);
	/* a zeroed struct has fd 0 and size 0, which was never ours: only close an opened one */
	if (r->size && r->fd >= 0)
		close(r->fd);
	r->base = NULL;
	r->fd = -1;
	r->size = 0;
}

/*
 * lseek moves the file offset shared by every dup of @fd; memfds are
 * accessed through mappings and at explicit offsets (pread/pwrite/splice),
 * so nobody depends on that offset.
 */
int shm_memfd_next_data(int fd, uint64_t from, uint64_t end, uint64_t *start, uint64_t *stop)
{
	off_t data, hole;

	if (from >= end || from >= (uint64_t)INT64_MAX)
		return -ENXIO;
	if (end > (uint64_t)INT64_MAX)
		end = (uint64_t)INT64_MAX;
	data = lseek(fd, (off_t)from, SEEK_DATA);
	if (data < 0) {
		int ret = -errno;

		if (ret != -ENXIO)
			log_err("lseek SEEK_DATA fd %d at %llu: %s", fd, (unsigned long long)from,
				strerror(-ret));
		return ret;
	}
	if ((uint64_t)data >= end)
		return -ENXIO;
	hole = lseek(fd, data, SEEK_HOLE);
	if (hole < 0) {
		int ret = -errno;

		log_err("lseek SEEK_HOLE fd %d at %lld: %s", fd, (long long)data, strerror(-ret));
		return ret;
	}
	/* outward: a partly written page is a page to send */
	*start = (uint64_t)data & ~(SHM_PAGE_SIZE - 1);
	*stop = ((uint64_t)hole + SHM_PAGE_SIZE - 1) & ~(SHM_PAGE_SIZE - 1);
	if (*stop > end)
		*stop = end;
	return 0;
}

/* One page: FNV-1a over 64-bit words; 0 for an all-zero page. */
static uint64_t page_hash(const uint64_t *w)
{
	uint64_t h = 0xcbf29ce484222325ULL, any = 0;

	for (size_t i = 0; i < SHM_PAGE_SIZE / sizeof(*w); i++) {
		any |= w[i];
		h = (h ^ w[i]) * 0x100000001b3ULL;
	}
	return any ? h : 0;
}

uint64_t shm_region_hash(const struct shm_region *r)
{
	uint64_t buf[8 * SHM_PAGE_SIZE / sizeof(uint64_t)]; /* 32 KiB: a test helper's pace */
	uint64_t pos = 0, start, stop, sum = 0;

	while (shm_memfd_next_data(r->fd, pos, r->size, &start, &stop) == 0) {
		for (uint64_t off = start; off < stop;) {
			uint64_t len = stop - off < sizeof(buf) ? stop - off : sizeof(buf);
			ssize_t n = pread(r->fd, buf, len, (off_t)off);

			if (n <= 0 || n % SHM_PAGE_SIZE)
				return 0; /* a sealed memfd does not shrink: not reached */
			for (ssize_t k = 0; k < n; k += SHM_PAGE_SIZE) {
				uint64_t h = page_hash(buf + k / sizeof(uint64_t));
				uint64_t page = (off + (uint64_t)k) >> SHM_PAGE_SHIFT;

				/* Position-dependent, order-independent: mix the page number in. */
				if (h)
					sum += (h ^ page) * 0x9e3779b97f4a7c15ULL;
			}
			off += (uint64_t)n;
		}
		pos = stop;
	}
	return sum;
}
