/* SPDX-License-Identifier: GPL-2.0-only */
/* Small helpers shared by the integration tests that run `cleave run`. */
#ifndef CLEAVE_TEST_UTIL_H
#define CLEAVE_TEST_UTIL_H

#include <stdint.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in milliseconds. */
int64_t test_now_ms(void);
void test_sleep_ms(int ms);
/* The descriptors process @pid has open (/proc/PID/fd), or -errno. */
int test_proc_fd_count(pid_t pid);
/* The whole file as a NUL-terminated string ("" if absent); free() it. */
char *test_file_read(const char *path);

/*
 * Exits 77 (meson's "skipped") with one "SKIP: no usable /dev/kvm (...)"
 * line when this host cannot open /dev/kvm read-write.  Every test that
 * needs KVM calls it first, so scripts/test.sh can count them by reason.
 */
void test_require_kvm(void);

/* A fresh scratch dir "/tmp/cleave-@name-XXXXXX" (mode 0700) in @dir (64 bytes); 0 or -errno. */
int test_dir_make(char dir[64], const char *name);
/* Removes @dir and everything below it; 0 or -errno. */
int test_dir_remove(const char *dir);

/*
 * Exits 77 with a "SKIP: ..." line unless cleave-migrator was built with
 * its fault-injection hooks (meson -Dfault_injection=true, which
 * scripts/test.sh uses); meson passes CLEAVE_TEST_FAULT_INJECTION.
 */
void test_require_fault_injection(void);

/*
 * Raises RLIMIT_NOFILE's soft limit to its hard limit; exits 77 with a
 * "SKIP: ..." line naming both numbers when the hard limit is below @need
 * (a test that needs that many descriptors cannot prove anything with fewer).
 */
void test_require_nofile(unsigned long need);

#endif
