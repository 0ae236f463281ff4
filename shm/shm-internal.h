/* SPDX-License-Identifier: GPL-2.0-only */
/* Helpers shared by the shm/ sources; not part of the public contract. */
#ifndef CLEAVE_SHM_INTERNAL_H
#define CLEAVE_SHM_INTERNAL_H

#include <stdint.h>

/*
 * Creates memfd @name (MFD_CLOEXEC|MFD_ALLOW_SEALING) of @size bytes and
 * seals it against shrink, grow and further sealing.
 */
int shm_memfd_create_sealed(const char *name, uint64_t size, int *fdp);
/* -EINVAL unless @fd is exactly @size bytes and sealed against shrink/grow. */
int shm_memfd_check_sealed(int fd, uint64_t size, const char *what);

#endif
