// SPDX-License-Identifier: GPL-2.0-only
/* The guest image handed to cleave-vcpu: a file, or the embedded default. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "launcher/run-internal.h"
#include "log/log.h"

/* guest-blob.S */
extern const unsigned char cleave_guest_blob_start[];
extern const unsigned char cleave_guest_blob_end[];

size_t run_guest_embedded_size(void)
{
	return (size_t)(cleave_guest_blob_end - cleave_guest_blob_start);
}

static int guest_memfd_fill(int fd, const unsigned char *p, size_t len)
{
	ssize_t n;

	while (len) {
		n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int run_guest_open(const char *path, int *fdp)
{
	size_t size = run_guest_embedded_size();
	int fd, ret;

	if (path) {
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0) {
			ret = -errno;
			log_err("open guest %s: %s", path, strerror(-ret));
			return ret;
		}
		*fdp = fd;
		return 0;
	}
	if (!size) {
		log_err("this cleave was built without an embedded guest; pass --guest FILE");
		return -ENOENT;
	}
	fd = memfd_create("cleave-guest", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0) {
		ret = -errno;
		log_err("memfd_create cleave-guest: %s", strerror(-ret));
		return ret;
	}
	ret = guest_memfd_fill(fd, cleave_guest_blob_start, size);
	if (ret) {
		log_err("write cleave-guest (%zu bytes): %s", size, strerror(-ret));
		goto err_close;
	}
	/* The image is read by another process: nobody may change it from here on. */
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL)) {
		ret = -errno;
		log_err("F_ADD_SEALS cleave-guest: %s", strerror(-ret));
		goto err_close;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		ret = -errno;
		goto err_close;
	}
	*fdp = fd;
	return 0;

err_close:
	close(fd);
	return ret;
}
