// SPDX-License-Identifier: GPL-2.0-only
/*
 * The memory plane across processes, as the launcher and a child use it:
 * the parent creates the control segment and RAM, hands the memfds over a
 * socketpair, and the child maps them, writes guest pages, marks them dirty
 * and updates the session area under the robust lock.  The parent then sees
 * every write through its own mappings.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "shm/shm.h"
#include "tests/unit/shm/fdpass.h"

#define PG  SHM_PAGE_SIZE
#define MiB (1024ULL * 1024)

/* What the test puts in the migrator's session area. */
struct session {
	struct shm_lock lock;
	uint64_t pages_written; /* protected by lock */
};

/* Layout the child is told about in the hand-over message. */
struct handover {
	uint64_t ram_size[2];
};

static const uint64_t touched[] = {0, 7, 8, 255, 1000, 2047};

/* Child side; returns an exit code naming the step that failed. */
static int child_run(int sock)
{
	struct handover h;
	struct shm_ctl c;
	struct shm_region ram[2];
	struct session *s;
	int fds[3];

	if (fdpass_recv(sock, &h, sizeof(h), fds, 3))
		return 10;
	if (shm_ctl_open(&c, fds[0]))
		return 11;
	if (shm_region_open(&ram[0], fds[1], h.ram_size[0], PROT_READ | PROT_WRITE))
		return 12;
	/* read-only mapping: reading works, the parent's writes are visible */
	if (shm_region_open(&ram[1], fds[2], h.ram_size[1], PROT_READ))
		return 13;
	if (((volatile char *)ram[1].base)[5] != 'P')
		return 14;
	for (size_t i = 0; i < sizeof(touched) / sizeof(touched[0]); i++) {
		memset((char *)ram[0].base + touched[i] * PG, (int)(0x40 + i), PG);
		shm_bitmap_set(shm_ctl_dirty_bitmap(&c, 0), touched[i]);
	}
	s = shm_ctl_session(&c);
	if (shm_lock_acquire(&s->lock))
		return 15;
	s->pages_written += sizeof(touched) / sizeof(touched[0]);
	shm_lock_release(&s->lock);
	shm_region_close(&ram[1]);
	shm_region_close(&ram[0]);
	shm_ctl_close(&c);
	return 0;
}

static void test_handover(void **state)
{
	const struct shm_ctl_layout layout = {
		.nr_regions = 2,
		.gpa = {0, 1ULL << 32},
		.size = {8 * MiB, 2 * MiB},
	};
	struct handover h = {{8 * MiB, 2 * MiB}};
	struct shm_region ram[2];
	struct shm_ctl c;
	struct session *s;
	uint64_t start, stop, from = 0, found = 0;
	int sv[2], status, fds[3];
	uint64_t *dirty;
	pid_t pid;

	assert_int_equal(shm_ctl_create(&c, &layout), 0);
	assert_int_equal(shm_region_create(&ram[0], 0, layout.size[0]), 0);
	assert_int_equal(shm_region_create(&ram[1], 1, layout.size[1]), 0);
	((char *)ram[1].base)[5] = 'P';
	s = shm_ctl_session(&c);
	assert_int_equal(shm_lock_init(&s->lock), 0);
	s->pages_written = 100;

	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		close(sv[0]);
		_exit(child_run(sv[1]));
	}
	close(sv[1]);
	fds[0] = c.fd;
	fds[1] = ram[0].fd;
	fds[2] = ram[1].fd;
	assert_int_equal(fdpass_send(sv[0], &h, sizeof(h), fds, 3), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	close(sv[0]);

	dirty = shm_ctl_dirty_bitmap(&c, 0);
	assert_int_equal(shm_bitmap_count(dirty, layout.size[0] / PG), 6);
	for (size_t i = 0; i < sizeof(touched) / sizeof(touched[0]); i++) {
		assert_true(shm_bitmap_test(dirty, touched[i]));
		assert_int_equal(((unsigned char *)ram[0].base)[touched[i] * PG + PG - 1],
				 0x40 + i);
	}
	assert_int_equal(shm_bitmap_count(shm_ctl_dirty_bitmap(&c, 1), layout.size[1] / PG), 0);
	assert_int_equal(shm_lock_acquire(&s->lock), 0);
	assert_int_equal(s->pages_written, 106);
	shm_lock_release(&s->lock);

	/* the allocated ranges are exactly the pages the child wrote: 0, 7-8, 255, 1000, 2047 */
	while (shm_memfd_next_data(ram[0].fd, from, ram[0].size, &start, &stop) == 0) {
		for (uint64_t p = start / PG; p < stop / PG; p++)
			assert_true(shm_bitmap_test(dirty, p));
		found += (stop - start) / PG;
		from = stop;
	}
	assert_int_equal(found, 6);

	shm_lock_destroy(&s->lock);
	shm_region_close(&ram[1]);
	shm_region_close(&ram[0]);
	shm_ctl_close(&c);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_handover),
	};

	log_init("test-shm-plane");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
