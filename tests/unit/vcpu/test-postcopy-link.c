// SPDX-License-Identifier: GPL-2.0-only
/*
 * The postcopy link server (vcpu-proc/postcopy-link.c) on a real
 * SOCK_SEQPACKET socketpair, a real control segment and a RAM memfd with
 * userfaultfd, without KVM: the test plays the migrator with raw messages
 * (proto/postcopy-link.h) and test threads play the vCPUs.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log/log.h"
#include "proto/postcopy-link.h"
#include "shm/shm.h"
#include "tests/util/test-util.h"
#include "tests/unit/vcpu/fault-probe.h"
#include "vcpu-proc/fault.h"
#include "vcpu-proc/postcopy-link.h"

#define PAGES	 4096 /* 16 MiB */
#define RAM_SIZE ((uint64_t)PAGES * SHM_PAGE_SIZE)
#define GPA	 0x100000000ull
#define WORDS	 (SHM_PAGE_SIZE / 8)
#define HDR	 sizeof(struct pclink_hdr)

struct fixture {
	struct region_table table;
	struct region *r;
	struct shm_ctl ctl;
	int ram_fd;
	uint8_t *ram; /* guest RAM mapping */
	uint64_t nr_needed;
	int sv[2]; /* [0]: cleave-vcpu's end (the server's), [1]: the migrator's (the test's) */
	struct pclink_server *srv; /* NULL once a test stopped it */
	uint64_t *buf;		   /* PCLINK_MAX_PAGES + 1 pages, for PLACE data */
};

/* Every 8th page (p % 8 == 5) is not needed: a hole that reads as zero. */
static bool is_needed(uint64_t p)
{
	return p % 8 != 5;
}

/* Word @w of page @p as version @v of the migration sends it. */
static uint64_t page_word(uint64_t p, uint64_t w, uint64_t v)
{
	return (p << 32) ^ (w * 0x9e3779b97f4a7c15ull) ^ (v << 20) ^ 0x5eed;
}

static void fill_page(uint64_t *buf, uint64_t p, uint64_t v)
{
	for (uint64_t w = 0; w < WORDS; w++)
		buf[w] = page_word(p, w, v);
}

/* Every word of page @p of guest RAM is version @v (from word @from on). */
static bool page_is(const struct fixture *f, uint64_t p, uint64_t v, uint64_t from)
{
	const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);

	for (uint64_t i = from; i < WORDS; i++)
		if (w[i] != page_word(p, i, v))
			return false;
	return true;
}

static bool page_is_zero(const struct fixture *f, uint64_t p)
{
	const uint64_t *w = (const uint64_t *)(f->ram + p * SHM_PAGE_SIZE);

	for (uint64_t i = 0; i < WORDS; i++)
		if (w[i])
			return false;
	return true;
}

/* Sends a raw message: @h, then @len bytes of @body. */
static void send_raw(int fd, const void *h, size_t hlen, const void *body, size_t len)
{
	struct iovec iov[2] = {{.iov_base = (void *)h, .iov_len = hlen},
			       {.iov_base = (void *)body, .iov_len = len}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = len ? 2 : 1};

	assert_int_equal(sendmsg(fd, &msg, MSG_NOSIGNAL), (ssize_t)(hlen + len));
}

static void send_msg(struct fixture *f, uint32_t type, uint32_t region, uint32_t count,
		     uint64_t page, uint32_t flags, const void *body, size_t len)
{
	struct pclink_hdr h = {.magic = PCLINK_MAGIC,
			       .type = type,
			       .region = region,
			       .count = count,
			       .page = page,
			       .flags = flags};

	send_raw(f->sv[1], &h, HDR, body, len);
}

/* PLACE of @count pages from @p, version @v. */
static void place(struct fixture *f, uint64_t p, uint32_t count, uint64_t v)
{
	for (uint32_t i = 0; i < count; i++)
		fill_page(f->buf + i * WORDS, p + i, v);
	send_msg(f, PCLINK_PLACE, 0, count, p, 0, f->buf, count * SHM_PAGE_SIZE);
}

/*
 * Receives one message within @ms into @h and @body (room for
 * PCLINK_MAX_FAULTS entries); its length, or 0 on timeout.
 */
static ssize_t recv_msg(struct fixture *f, struct pclink_hdr *h, struct pclink_page *body, int ms)
{
	struct pollfd pfd = {.fd = f->sv[1], .events = POLLIN};
	struct iovec iov[2] = {{.iov_base = h, .iov_len = HDR},
			       {.iov_base = body, .iov_len = PCLINK_MAX_FAULTS * sizeof(*body)}};
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
	ssize_t n;

	if (poll(&pfd, 1, ms) <= 0)
		return 0;
	n = recvmsg(f->sv[1], &msg, MSG_DONTWAIT);
	assert_true(n >= (ssize_t)HDR);
	assert_false(msg.msg_flags & MSG_TRUNC);
	assert_int_equal(h->magic, PCLINK_MAGIC);
	if (h->type == PCLINK_FAULTS) {
		assert_true(h->count >= 1 && h->count <= PCLINK_MAX_FAULTS);
		assert_int_equal(n, HDR + h->count * sizeof(*body));
		for (uint32_t i = 0; i < h->count; i++)
			assert_int_equal(body[i].reserved, 0);
	} else {
		assert_int_equal(n, HDR);
	}
	return n;
}

/* The next message is a REPLY or ERROR (@type) with @err; FAULTS are not expected. */
static void expect(struct fixture *f, uint32_t type, int err, uint32_t region, uint64_t page)
{
	struct pclink_page body[PCLINK_MAX_FAULTS];
	struct pclink_hdr h;

	assert_true(recv_msg(f, &h, body, 5000) > 0);
	assert_int_equal(h.type, type);
	assert_int_equal(h.err, err);
	assert_int_equal(h.region, region);
	assert_int_equal(h.page, page);
}

/* The next message is FAULTS holding exactly page @p of region 0. */
static void expect_fault(struct fixture *f, uint64_t p)
{
	struct pclink_page body[PCLINK_MAX_FAULTS];
	struct pclink_hdr h;

	assert_true(recv_msg(f, &h, body, 5000) > 0);
	assert_int_equal(h.type, PCLINK_FAULTS);
	assert_int_equal(h.count, 1);
	assert_int_equal(body[0].region, 0);
	assert_int_equal(body[0].page, p);
}

static void expect_nothing(struct fixture *f, int ms)
{
	struct pclink_page body[PCLINK_MAX_FAULTS];
	struct pclink_hdr h;

	assert_int_equal(recv_msg(f, &h, body, ms), 0);
}

static void do_listen(struct fixture *f)
{
	send_msg(f, PCLINK_LISTEN, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
}

static struct pclink_stats stats(struct fixture *f)
{
	struct pclink_stats st;

	pclink_server_stats(f->srv, &st);
	return st;
}

/* PLACE has no reply: waits until the service counts @missing needed pages missing. */
static void wait_missing(struct fixture *f, uint64_t missing)
{
	int64_t end = test_now_ms() + 5000;

	while (stats(f).fs.missing != missing && test_now_ms() < end)
		test_sleep_ms(1);
	assert_int_equal(stats(f).fs.missing, missing);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	struct shm_ctl_layout layout = {.nr_regions = 1, .gpa = {GPA}, .size = {RAM_SIZE}};
	uint64_t *needed;

	assert_non_null(f);
	f->buf = aligned_alloc(SHM_PAGE_SIZE, (PCLINK_MAX_PAGES + 1) * SHM_PAGE_SIZE);
	assert_non_null(f->buf);
	f->ram_fd = memfd_create("test-ram", MFD_CLOEXEC);
	assert_true(f->ram_fd >= 0);
	assert_int_equal(ftruncate(f->ram_fd, (off_t)RAM_SIZE), 0);
	f->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, f->ram_fd, 0);
	assert_true(f->ram != MAP_FAILED);
	assert_int_equal(shm_ctl_create(&f->ctl, &layout), 0);
	needed = shm_ctl_dirty_bitmap(&f->ctl, 0);
	assert_non_null(needed);
	for (uint64_t p = 0; p < PAGES; p++) {
		if (is_needed(p)) {
			shm_bitmap_set(needed, p);
			f->nr_needed++;
		}
	}
	assert_int_equal(region_table_init(&f->table), 0);
	assert_int_equal(region_table_add(&f->table, 0, GPA, RAM_SIZE, f->ram, needed, &f->r), 0);
	region_unlock_write(f->r);
	assert_int_equal(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sv), 0);
	assert_int_equal(pclink_server_start(&f->srv, f->sv[0], &f->table, &f->ctl, NULL), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	/* The guest is gone: whatever is still registered goes with force. */
	if (f->srv)
		assert_int_equal(pclink_server_stop(f->srv, true), 0);
	close(f->sv[0]);
	close(f->sv[1]);
	assert_int_equal(region_table_remove(&f->table, 0), 0);
	region_table_fini(&f->table);
	shm_ctl_close(&f->ctl);
	munmap(f->ram, RAM_SIZE);
	close(f->ram_fd);
	free(f->buf);
	free(f);
	return 0;
}

/* A vCPU touching one word of one page. */
struct toucher {
	struct fixture *f;
	uint64_t page, word;
	uint64_t seen; /* the word read */
	atomic_bool done;
	pthread_t th;
};

static void *toucher_main(void *arg)
{
	struct toucher *t = arg;

	t->seen =
		*(volatile uint64_t *)((uint64_t *)(t->f->ram + t->page * SHM_PAGE_SIZE) + t->word);
	atomic_store(&t->done, true);
	return NULL;
}

static void touch(struct toucher *t, struct fixture *f, uint64_t page, uint64_t word)
{
	t->f = f;
	t->page = page;
	t->word = word;
	atomic_store(&t->done, false);
	assert_int_equal(pthread_create(&t->th, NULL, toucher_main, t), 0);
}

static bool wait_flag(atomic_bool *flag, int ms)
{
	int64_t end = test_now_ms() + ms;

	while (!atomic_load(flag) && test_now_ms() < end)
		test_sleep_ms(1);
	return atomic_load(flag);
}

/*
 * A touched needed page is reported in FAULTS and released by its PLACE
 * with the right bytes; a hole that is not needed reads zero without a
 * FAULTS entry.
 */
static void test_fault_reported_and_placed(void **state)
{
	struct fixture *f = *state;
	struct toucher t, hole;
	struct pclink_stats st;

	st = stats(f);
	assert_false(st.listening);
	do_listen(f);
	st = stats(f);
	assert_true(st.listening);
	assert_int_equal(st.fs.missing, f->nr_needed);
	touch(&t, f, 10, 3);
	expect_fault(f, 10);
	test_sleep_ms(100);
	assert_false(atomic_load(&t.done));
	place(f, 10, 1, 1);
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(t.th, NULL);
	assert_int_equal(t.seen, page_word(10, 3, 1));
	assert_true(page_is(f, 10, 1, 0));

	assert_false(is_needed(13));
	touch(&hole, f, 13, 7);
	assert_true(wait_flag(&hole.done, 5000));
	pthread_join(hole.th, NULL);
	assert_int_equal(hole.seen, 0);
	assert_true(page_is_zero(f, 13));
	expect_nothing(f, 200);
	st = stats(f);
	assert_int_equal(st.faults_sent, 1);
	assert_int_equal(st.fs.requested, 1);
	assert_int_equal(st.fs.placed, 1);
	assert_int_equal(st.fs.missing, f->nr_needed - 1);
	assert_int_equal(st.refused, 0);
}

/*
 * A second LISTEN (a restarted migrator) replies 0 and changes nothing,
 * even though the shared needed map lost a bit meanwhile: the server
 * keeps its own copy.
 */
static void test_listen_idempotent(void **state)
{
	struct fixture *f = *state;

	do_listen(f);
	place(f, 20, 1, 1);
	wait_missing(f, f->nr_needed - 1);
	shm_bitmap_clear(shm_ctl_dirty_bitmap(&f->ctl, 0), 20);
	shm_bitmap_clear(shm_ctl_dirty_bitmap(&f->ctl, 0), 22); /* not placed: still needed */
	do_listen(f);
	assert_int_equal(stats(f).fs.missing, f->nr_needed - 1);
	place(f, 22, 1, 1);
	wait_missing(f, f->nr_needed - 2);
	assert_true(page_is(f, 20, 1, 0));
	assert_true(page_is(f, 22, 1, 0));
}

/* A control segment whose regions differ from the VM's: LISTEN replies an error, nothing
 * registered. */
static void test_listen_layout_mismatch(void **state)
{
	struct fixture *f = *state;
	struct shm_ctl_layout layout = {.nr_regions = 1, .gpa = {GPA}, .size = {RAM_SIZE / 2}};
	struct shm_ctl other;

	assert_int_equal(pclink_server_stop(f->srv, false), 0); /* nothing registered */
	assert_int_equal(shm_ctl_create(&other, &layout), 0);
	assert_int_equal(pclink_server_start(&f->srv, f->sv[0], &f->table, &other, NULL), 0);
	send_msg(f, PCLINK_LISTEN, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, -EINVAL, 0, 0);
	assert_false(stats(f).listening);
	/* Not registered: a PLACE is refused. */
	place(f, 0, 1, 1);
	expect(f, PCLINK_ERROR, -EPROTO, 0, 0);
	assert_int_equal(pclink_server_stop(f->srv, false), 0);
	f->srv = NULL;
	shm_ctl_close(&other);
	/* Two regions where the VM has one. */
	layout = (struct shm_ctl_layout){
		.nr_regions = 2, .gpa = {GPA, 2 * GPA}, .size = {RAM_SIZE, SHM_PAGE_SIZE}};
	assert_int_equal(shm_ctl_create(&other, &layout), 0);
	assert_int_equal(pclink_server_start(&f->srv, f->sv[0], &f->table, &other, NULL), 0);
	send_msg(f, PCLINK_LISTEN, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, -EINVAL, 0, 0);
	assert_false(stats(f).listening);
	assert_int_equal(pclink_server_stop(f->srv, false), 0);
	f->srv = NULL;
	shm_ctl_close(&other);
}

/* PLACE with PCLINK_ZERO; PLACE over a page the guest already wrote leaves the write. */
static void test_place_zero_and_guest_write(void **state)
{
	struct fixture *f = *state;
	const uint64_t mark = 0xfeedfacecafebeefull;

	do_listen(f);
	/* Pages 100..115; page 101 holds stale data in the memfd: it is not replaced. */
	send_msg(f, PCLINK_PLACE, 0, PCLINK_MAX_PAGES, 100, PCLINK_ZERO, NULL, 0);
	wait_missing(f, f->nr_needed - 14); /* 101 is not needed */
	for (uint64_t p = 100; p < 100 + PCLINK_MAX_PAGES; p++)
		assert_true(page_is_zero(f, p));

	place(f, 31, 1, 1);
	wait_missing(f, f->nr_needed - 15);
	*(volatile uint64_t *)(f->ram + 31 * SHM_PAGE_SIZE) = mark;
	place(f, 30, 3, 2);
	wait_missing(f, f->nr_needed - 17);
	assert_int_equal(*(uint64_t *)(f->ram + 31 * SHM_PAGE_SIZE), mark);
	assert_true(page_is(f, 31, 1, 1));
	assert_true(page_is(f, 30, 2, 0));
	assert_true(page_is(f, 32, 2, 0));
	/* A zero PLACE over data placed before changes nothing either. */
	send_msg(f, PCLINK_PLACE, 0, 1, 30, PCLINK_ZERO, NULL, 0);
	place(f, 40, 1, 1); /* a message after it: the zero PLACE was handled */
	wait_missing(f, f->nr_needed - 18);
	assert_true(page_is(f, 30, 2, 0));
	assert_int_equal(stats(f).place_failed, 0);
	expect_nothing(f, 50);
}

/* AGAIN re-sends a request that is still outstanding, and only that. */
static void test_again(void **state)
{
	struct fixture *f = *state;
	struct toucher t[2];

	do_listen(f);
	touch(&t[0], f, 50, 0);
	expect_fault(f, 50);
	touch(&t[1], f, 51, 0);
	expect_fault(f, 51);
	place(f, 51, 1, 1);
	assert_true(wait_flag(&t[1].done, 5000));
	pthread_join(t[1].th, NULL);
	assert_int_equal(t[1].seen, page_word(51, 0, 1));
	expect_nothing(f, 150);
	send_msg(f, PCLINK_AGAIN, 0, 0, 0, 0, NULL, 0);
	expect_fault(f, 50);
	expect_nothing(f, 150);
	assert_false(atomic_load(&t[0].done));
	place(f, 50, 1, 1);
	assert_true(wait_flag(&t[0].done, 5000));
	pthread_join(t[0].th, NULL);
	assert_int_equal(t[0].seen, page_word(50, 0, 1));
	send_msg(f, PCLINK_AGAIN, 0, 0, 0, 0, NULL, 0);
	expect_nothing(f, 150);
	assert_int_equal(stats(f).faults_sent, 3);
}

/*
 * AGAIN does not wait for the taker's wait for new requests to end: it
 * starts that wait (PCLINK_TAKE_MS) right after sending a FAULTS, so a
 * restarted migrator's AGAIN would otherwise find the whole wait ahead.
 */
static void test_again_at_once(void **state)
{
	struct fixture *f = *state;
	struct toucher t;
	int64_t t0, waited;

	do_listen(f);
	touch(&t, f, 52, 0);
	expect_fault(f, 52);
	t0 = test_now_ms();
	send_msg(f, PCLINK_AGAIN, 0, 0, 0, 0, NULL, 0);
	expect_fault(f, 52);
	waited = test_now_ms() - t0;
	print_message("FAULTS again %lld ms after AGAIN\n", (long long)waited);
	assert_true(waited < 30);
	place(f, 52, 1, 1);
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(t.th, NULL);
	assert_int_equal(t.seen, page_word(52, 0, 1));
}

/* PLACEs every page, PCLINK_MAX_PAGES at a time: the needed ones and the holes between. */
static void place_all(struct fixture *f)
{
	for (uint64_t p = 0; p < PAGES; p += PCLINK_MAX_PAGES)
		place(f, p, PCLINK_MAX_PAGES, 1);
	wait_missing(f, 0);
}

/*
 * END while pages are missing: -EBUSY and the server still serves; after
 * the last page 0, the service stops; a repeated END is 0.
 */
static void test_end(void **state)
{
	struct fixture *f = *state;
	struct toucher t;

	do_listen(f);
	touch(&t, f, 70, 1);
	expect_fault(f, 70);
	send_msg(f, PCLINK_END, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, -EBUSY, 0, 0);
	assert_true(stats(f).listening);
	assert_false(atomic_load(&t.done));
	place_all(f);
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(t.th, NULL);
	assert_int_equal(t.seen, page_word(70, 1, 1));
	send_msg(f, PCLINK_END, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
	assert_false(stats(f).listening);
	/* Every page was sent (holes too: a PLACE fills what is missing). */
	for (uint64_t p = 0; p < PAGES; p++)
		if (!page_is(f, p, 1, 0))
			fail_msg("page %llu", (unsigned long long)p);
	send_msg(f, PCLINK_END, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
	/* Not registered any more: PLACE is refused. */
	place(f, 0, 1, 2);
	expect(f, PCLINK_ERROR, -EPROTO, 0, 0);
	assert_true(page_is(f, 0, 1, 0));
}

/*
 * A fault service given at start, as cleave-vcpu's (started before its
 * filter): END leaves it running, a second incoming migration registers
 * with it again, and stopping the server never stops it.
 */
static void test_given_service(void **state)
{
	struct fixture *f = *state;
	struct fault_service *fs;
	struct toucher t;

	assert_int_equal(pclink_server_stop(f->srv, true), 0);
	assert_int_equal(fault_service_start(&fs, &f->table, NULL), 0);
	assert_int_equal(pclink_server_start(&f->srv, f->sv[0], &f->table, &f->ctl, fs), 0);
	do_listen(f);
	send_msg(f, PCLINK_END, 0, 0, 0, PCLINK_ABORT, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
	assert_false(stats(f).listening);
	/* A failed migration, and the next one: the same service serves it. */
	do_listen(f);
	touch(&t, f, 70, 1);
	expect_fault(f, 70);
	place_all(f);
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(t.th, NULL);
	assert_int_equal(t.seen, page_word(70, 1, 1));
	send_msg(f, PCLINK_END, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
	assert_int_equal(pclink_server_stop(f->srv, false), 0);
	f->srv = NULL;
	/* Still the caller's, and idle: nothing registered with it. */
	assert_int_equal(fault_service_stop(fs), 0);
}

/* END with PCLINK_ABORT: the guest never ran, unregistered with pages missing. */
static void test_end_abort(void **state)
{
	struct fixture *f = *state;

	do_listen(f);
	place(f, 0, 1, 1);
	wait_missing(f, f->nr_needed - 1);
	send_msg(f, PCLINK_END, 0, 0, 0, 0, NULL, 0);
	expect(f, PCLINK_REPLY, -EBUSY, 0, 0);
	send_msg(f, PCLINK_END, 0, 0, 0, PCLINK_ABORT, NULL, 0);
	expect(f, PCLINK_REPLY, 0, 0, 0);
	assert_false(stats(f).listening);
	assert_true(page_is_zero(f, 1)); /* unregistered: a hole reads zero, no wait */
	assert_int_equal(pclink_server_stop(f->srv, false), 0);
	f->srv = NULL;
}

/* Every kind of malformed message gets ERROR -EPROTO; a valid PLACE still works after each. */
static void test_malformed(void **state)
{
	struct fixture *f = *state;
	struct pclink_hdr good = {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1};
	struct {
		const char *what;
		struct pclink_hdr h;
		size_t hlen, data; /* bytes of header sent, bytes of data after it */
	} bad[] = {
		{"bad magic",
		 {.magic = 0x12345678, .type = PCLINK_PLACE, .count = 1, .page = 2},
		 HDR,
		 SHM_PAGE_SIZE},
		{"unknown type", {.magic = PCLINK_MAGIC, .type = 99}, HDR, 0},
		{"type zero", {.magic = PCLINK_MAGIC}, HDR, 0},
		{"FAULTS from the migrator",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_FAULTS, .count = 1},
		 HDR,
		 sizeof(struct pclink_page)},
		{"REPLY from the migrator", {.magic = PCLINK_MAGIC, .type = PCLINK_REPLY}, HDR, 0},
		{"short message", {.magic = PCLINK_MAGIC, .type = PCLINK_LISTEN}, 8, 0},
		{"empty message", {0}, 0, 0},
		{"count 0", {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .page = 3}, HDR, 0},
		{"count too big",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = PCLINK_MAX_PAGES + 1},
		 HDR,
		 (PCLINK_MAX_PAGES + 1) * SHM_PAGE_SIZE},
		{"count too big, zero",
		 {.magic = PCLINK_MAGIC,
		  .type = PCLINK_PLACE,
		  .count = PCLINK_MAX_PAGES + 1,
		  .flags = PCLINK_ZERO},
		 HDR,
		 0},
		{"data short",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 2, .page = 4},
		 HDR,
		 SHM_PAGE_SIZE},
		{"data long",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .page = 4},
		 HDR,
		 SHM_PAGE_SIZE + 1},
		{"data with zero",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .flags = PCLINK_ZERO},
		 HDR,
		 SHM_PAGE_SIZE},
		{"no data",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .page = 4},
		 HDR,
		 0},
		{"LISTEN with data", {.magic = PCLINK_MAGIC, .type = PCLINK_LISTEN}, HDR, 16},
		{"region out of range",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .region = REGION_MAX},
		 HDR,
		 SHM_PAGE_SIZE},
		{"region huge",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .region = 0xffffffffu},
		 HDR,
		 SHM_PAGE_SIZE},
		{"region not registered",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .region = 1},
		 HDR,
		 SHM_PAGE_SIZE},
		{"page out of bounds",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .page = PAGES},
		 HDR,
		 SHM_PAGE_SIZE},
		{"range out of bounds",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 2, .page = PAGES - 1},
		 HDR,
		 2 * SHM_PAGE_SIZE},
		{"page wraps",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 2, .page = UINT64_MAX},
		 HDR,
		 2 * SHM_PAGE_SIZE},
		{"unknown PLACE flag",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .flags = 0x4},
		 HDR,
		 SHM_PAGE_SIZE},
		{"ABORT on PLACE",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .flags = PCLINK_ABORT},
		 HDR,
		 SHM_PAGE_SIZE},
		{"unknown END flag",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_END, .flags = 0x80000000u},
		 HDR,
		 0},
		{"ZERO on END",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_END, .flags = PCLINK_ZERO},
		 HDR,
		 0},
		{"LISTEN with flags",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_LISTEN, .flags = 1},
		 HDR,
		 0},
		{"AGAIN with a page",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_AGAIN, .page = 9},
		 HDR,
		 0},
		{"END with a region",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_END, .region = 1},
		 HDR,
		 0},
		{"err set",
		 {.magic = PCLINK_MAGIC, .type = PCLINK_PLACE, .count = 1, .err = -EIO, .page = 6},
		 HDR,
		 SHM_PAGE_SIZE},
	};
	uint8_t *data = calloc(1, (PCLINK_MAX_PAGES + 2) * SHM_PAGE_SIZE);
	uint64_t expect_missing;
	uint64_t p = 0;

	assert_non_null(data);
	do_listen(f);
	expect_missing = f->nr_needed;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		print_message("%s\n", bad[i].what);
		send_raw(f->sv[1], &bad[i].h, bad[i].hlen, data, bad[i].data);
		/* The offending region and page come back (zero when the header was short). */
		expect(f, PCLINK_ERROR, -EPROTO, bad[i].hlen == HDR ? bad[i].h.region : 0,
		       bad[i].hlen == HDR ? bad[i].h.page : 0);
		/* Still serving: a valid PLACE of the next needed page goes in. */
		while (!is_needed(++p))
			;
		good.page = p;
		fill_page(f->buf, p, 1);
		send_raw(f->sv[1], &good, HDR, f->buf, SHM_PAGE_SIZE);
		wait_missing(f, --expect_missing);
		assert_true(page_is(f, p, 1, 0));
	}
	/* Nothing refused went in: the pages the bad PLACEs named are still missing or ours. */
	assert_true(page_is(f, 2, 1, 0) || !is_needed(2));
	assert_int_equal(stats(f).refused, sizeof(bad) / sizeof(bad[0]));
	assert_int_equal(stats(f).fs.placed, sizeof(bad) / sizeof(bad[0]));
	expect_nothing(f, 50);
	free(data);
}

/*
 * The peer shuts its end (EOF on every read): the server neither ends nor
 * unregisters; the waiting toucher keeps waiting, and stop still works:
 * without force it keeps the registration (-EBUSY), with it it ends.
 */
static void test_peer_gone(void **state)
{
	struct fixture *f = *state;
	struct toucher t;
	int64_t t0;

	do_listen(f);
	touch(&t, f, 80, 2);
	expect_fault(f, 80);
	assert_int_equal(shutdown(f->sv[1], SHUT_WR), 0);
	test_sleep_ms(300);
	assert_false(atomic_load(&t.done));
	assert_true(stats(f).listening);
	assert_int_equal(stats(f).fs.missing, f->nr_needed);
	t0 = test_now_ms();
	assert_int_equal(pclink_server_stop(f->srv, false), -EBUSY);
	assert_true(test_now_ms() - t0 < 2000);
	test_sleep_ms(50);
	assert_false(atomic_load(&t.done));
	assert_true(stats(f).listening); /* the server stays, threads stopped */
	assert_int_equal(pclink_server_stop(f->srv, true), 0);
	f->srv = NULL;
	assert_true(wait_flag(&t.done, 5000));
	pthread_join(t.th, NULL);
	assert_int_equal(t.seen, 0); /* forced: the VM is gone, a zero page is what it got */
}

/*
 * A peer that does not read: FAULTS fill the link (AGAIN makes the server
 * send the outstanding request again and again), the taker cannot send,
 * and stop still returns at once.
 */
static void test_stop_peer_not_reading(void **state)
{
	struct fixture *f = *state;
	int small = 1, i;
	struct toucher t;
	int64_t t0;

	/* The server's send buffer at its minimum: a few messages fill it. */
	assert_int_equal(setsockopt(f->sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	do_listen(f);
	touch(&t, f, 90, 0);
	expect_fault(f, 90);
	for (i = 0; i < 200; i++) {
		send_msg(f, PCLINK_AGAIN, 0, 0, 0, 0, NULL, 0);
		test_sleep_ms(2);
	}
	test_sleep_ms(300);
	print_message("FAULTS entries sent for 200 AGAIN: %llu\n",
		      (unsigned long long)stats(f).faults_sent);
	assert_true(stats(f).faults_sent < 100); /* the link is full */
	t0 = test_now_ms();
	assert_int_equal(pclink_server_stop(f->srv, false), -EBUSY);
	print_message("stop took %lld ms\n", (long long)(test_now_ms() - t0));
	assert_true(test_now_ms() - t0 < 1000);
	assert_false(atomic_load(&t.done));
	assert_int_equal(pclink_server_stop(f->srv, true), 0);
	f->srv = NULL;
	pthread_join(t.th, NULL);
}

/* A vCPU touching needed pages at random, checking each. */
struct random_toucher {
	struct fixture *f;
	unsigned int seed;
	int pages;
	atomic_int bad;
};

static void *toucher_random(void *arg)
{
	struct random_toucher *t = arg;

	for (int i = 0; i < t->pages; i++) {
		uint64_t p = (uint64_t)rand_r(&t->seed) % PAGES,
			 w = (uint64_t)rand_r(&t->seed) % WORDS;

		if (!is_needed(p))
			p--;
		if (*(const volatile uint64_t *)((const uint64_t *)(t->f->ram + p * SHM_PAGE_SIZE) +
						 w) != page_word(p, w, 1))
			atomic_fetch_add(&t->bad, 1);
	}
	return NULL;
}

/* The migrator: answers every FAULTS entry with a PLACE until told to stop. */
struct migrator {
	struct fixture *f;
	atomic_bool stop;
	atomic_int errors;
	uint64_t requested; /* entries received */
};

static void *migrator_main(void *arg)
{
	struct migrator *m = arg;
	uint64_t *buf = aligned_alloc(SHM_PAGE_SIZE, SHM_PAGE_SIZE);
	struct pclink_page body[PCLINK_MAX_FAULTS];
	struct pollfd pfd = {.fd = m->f->sv[1], .events = POLLIN};

	while (buf && !atomic_load(&m->stop)) {
		struct iovec iov[2] = {{.iov_base = &(struct pclink_hdr){0}, .iov_len = HDR},
				       {.iov_base = body, .iov_len = sizeof(body)}};
		struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2};
		const struct pclink_hdr *h = iov[0].iov_base;
		ssize_t n;

		if (poll(&pfd, 1, 20) <= 0)
			continue;
		n = recvmsg(m->f->sv[1], &msg, MSG_DONTWAIT);
		if (n < (ssize_t)HDR || h->type != PCLINK_FAULTS ||
		    (size_t)n != HDR + h->count * sizeof(body[0])) {
			atomic_fetch_add(&m->errors, 1);
			continue;
		}
		for (uint32_t i = 0; i < h->count; i++) {
			struct pclink_hdr ph = {.magic = PCLINK_MAGIC,
						.type = PCLINK_PLACE,
						.region = body[i].region,
						.count = 1,
						.page = body[i].page};
			struct iovec piov[2] = {{.iov_base = &ph, .iov_len = HDR},
						{.iov_base = buf, .iov_len = SHM_PAGE_SIZE}};
			struct msghdr pmsg = {.msg_iov = piov, .msg_iovlen = 2};

			m->requested++;
			fill_page(buf, body[i].page, 1);
			if (body[i].region != 0 || sendmsg(m->f->sv[1], &pmsg, MSG_NOSIGNAL) !=
							   (ssize_t)(HDR + SHM_PAGE_SIZE))
				atomic_fetch_add(&m->errors, 1);
		}
	}
	free(buf);
	return NULL;
}

/*
 * Two vCPUs touch 500 random needed pages each while a migrator answers
 * FAULTS with PLACE: every read sees the placed page; each request came
 * once.
 */
static void test_parallel(void **state)
{
	struct fixture *f = *state;
	struct random_toucher t[2] = {{.f = f, .seed = 1, .pages = 500},
				      {.f = f, .seed = 2, .pages = 500}};
	struct migrator m = {.f = f};
	struct pclink_stats st;
	pthread_t th[2], mt;

	do_listen(f);
	assert_int_equal(pthread_create(&mt, NULL, migrator_main, &m), 0);
	for (int i = 0; i < 2; i++)
		assert_int_equal(pthread_create(&th[i], NULL, toucher_random, &t[i]), 0);
	for (int i = 0; i < 2; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(atomic_load(&t[i].bad), 0);
	}
	atomic_store(&m.stop, true);
	pthread_join(mt, NULL);
	assert_int_equal(atomic_load(&m.errors), 0);
	st = stats(f);
	print_message("requested %llu, sent %llu, placed %llu; wait p50 %llu ns, p99 %llu ns\n",
		      (unsigned long long)st.fs.requested, (unsigned long long)st.faults_sent,
		      (unsigned long long)st.fs.placed, (unsigned long long)st.fs.wait_p50_ns,
		      (unsigned long long)st.fs.wait_p99_ns);
	assert_true(st.fs.requested > 250 && st.fs.requested <= 1000);
	assert_int_equal(st.fs.requested, m.requested);
	assert_int_equal(st.faults_sent, m.requested);
	assert_int_equal(st.fs.placed, st.fs.requested);
	assert_int_equal(st.fs.missing, f->nr_needed - st.fs.placed);
	assert_int_equal(st.refused + st.place_failed + st.send_failed, 0);
	for (uint64_t p = 0; p < PAGES; p++) {
		unsigned char in;

		/* A touched page is the placed one; the others are still missing. */
		assert_int_equal(mincore(f->ram + p * SHM_PAGE_SIZE, SHM_PAGE_SIZE, &in), 0);
		if ((in & 1) && is_needed(p) && !page_is(f, p, 1, 0))
			fail_msg("page %llu differs", (unsigned long long)p);
	}
}

/* Bad arguments, and a server stopped before any LISTEN. */
static void test_start_stop(void **state)
{
	struct fixture *f = *state;
	struct pclink_server *srv;

	assert_int_equal(pclink_server_start(&srv, -1, &f->table, &f->ctl, NULL), -EINVAL);
	assert_int_equal(pclink_server_start(&srv, f->sv[0], &f->table, NULL, NULL), -EINVAL);
	assert_int_equal(pclink_server_stop(NULL, false), 0);
	assert_int_equal(pclink_server_stop(f->srv, false), 0);
	f->srv = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fault_reported_and_placed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_idempotent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_layout_mismatch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_place_zero_and_guest_write, setup, teardown),
		cmocka_unit_test_setup_teardown(test_again, setup, teardown),
		cmocka_unit_test_setup_teardown(test_again_at_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end, setup, teardown),
		cmocka_unit_test_setup_teardown(test_given_service, setup, teardown),
		cmocka_unit_test_setup_teardown(test_end_abort, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_gone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop_peer_not_reading, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parallel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_start_stop, setup, teardown),
	};
	int ret;

	log_init("test-postcopy-link");
	/* A host without userfaultfd for shmem skips, saying why. */
	ret = fault_probe_or_skip(NULL);
	if (ret)
		return ret;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
