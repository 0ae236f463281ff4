/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migrator's end of the postcopy link (migrator/postcopy-link.c)
 * against a raw peer on a SOCK_SEQPACKET socketpair: the messages it
 * sends, what it makes of cleave-vcpu's replies, faults and errors, and
 * of a peer that is silent, malformed or gone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/postcopy-link.h"
#include "proto/postcopy-link.h"
#include "shm/shm.h"

struct link {
	int fds[2]; /* [0] the migrator's end, [1] the raw peer's */
	struct mig_pclink *l;
};

static int link_setup(void **state)
{
	struct link *k = calloc(1, sizeof(*k));

	if (!k || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, k->fds) ||
	    mig_pclink_open(&k->l, k->fds[0], 300))
		return -1;
	*state = k;
	return 0;
}

static int link_teardown(void **state)
{
	struct link *k = *state;

	mig_pclink_close(k->l);
	close(k->fds[0]);
	if (k->fds[1] >= 0)
		close(k->fds[1]);
	free(k);
	return 0;
}

static void peer_send(struct link *k, uint32_t type, int32_t err, const void *body, size_t len)
{
	uint8_t buf[sizeof(struct pclink_hdr) + 4096];
	struct pclink_hdr h = {.magic = PCLINK_MAGIC, .type = type, .err = err};

	if (body && len)
		h.count = (uint32_t)(len / sizeof(struct pclink_page));
	memcpy(buf, &h, sizeof(h));
	if (len)
		memcpy(buf + sizeof(h), body, len);
	assert_int_equal(send(k->fds[1], buf, sizeof(h) + len, 0), (ssize_t)(sizeof(h) + len));
}

/* The next message the migrator sent: its header, and its length. */
static ssize_t peer_recv(struct link *k, struct pclink_hdr *h, uint8_t *data, size_t max)
{
	uint8_t buf[sizeof(*h) + PCLINK_MAX_PAGES * SHM_PAGE_SIZE];
	ssize_t n = recv(k->fds[1], buf, sizeof(buf), MSG_DONTWAIT);

	assert_true(n >= (ssize_t)sizeof(*h));
	memcpy(h, buf, sizeof(*h));
	assert_int_equal(h->magic, PCLINK_MAGIC);
	if (data && n > (ssize_t)sizeof(*h))
		memcpy(data, buf + sizeof(*h),
		       (size_t)n - sizeof(*h) < max ? (size_t)n - sizeof(*h) : max);
	return n;
}

static void test_listen_and_end_replies(void **state)
{
	struct link *k = *state;
	struct pclink_hdr h;
	struct pclink_page stale = {.region = 0, .page = 5};

	/* A FAULTS left over from a dead migrator comes first: skipped. */
	peer_send(k, PCLINK_FAULTS, 0, &stale, sizeof(stale));
	peer_send(k, PCLINK_REPLY, 0, NULL, 0);
	assert_int_equal(mig_pclink_listen(k->l), 0);
	assert_int_equal(peer_recv(k, &h, NULL, 0), sizeof(h));
	assert_int_equal(h.type, PCLINK_LISTEN);
	peer_send(k, PCLINK_REPLY, -EBUSY, NULL, 0);
	assert_int_equal(mig_pclink_end(k->l, false), -EBUSY);
	peer_recv(k, &h, NULL, 0);
	assert_int_equal(h.type, PCLINK_END);
	assert_int_equal(h.flags, 0);
	peer_send(k, PCLINK_REPLY, 0, NULL, 0);
	assert_int_equal(mig_pclink_end(k->l, true), 0);
	peer_recv(k, &h, NULL, 0);
	assert_int_equal(h.flags, PCLINK_ABORT);
}

static void test_silent_malformed_gone(void **state)
{
	struct link *k = *state;
	uint32_t junk[8] = {0x12345678};

	assert_int_equal(mig_pclink_listen(k->l), -ETIMEDOUT); /* nobody answers in 300 ms */
	assert_int_equal(send(k->fds[1], junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
	assert_int_equal(mig_pclink_end(k->l, false), -EPROTO);
	assert_int_equal(send(k->fds[1], junk, 3, 0), 3); /* shorter than a header */
	assert_int_equal(mig_pclink_end(k->l, false), -EPROTO);
	close(k->fds[1]);
	k->fds[1] = -1;
	assert_true(mig_pclink_place(k->l, 0, 0, 1, NULL) < 0);
	assert_true(mig_pclink_listen(k->l) < 0);
}

static void test_faults(void **state)
{
	struct link *k = *state;
	struct pclink_page pg[3] = {{0, 0, 7}, {1, 0, 9}, {0, 0, 11}};
	struct mig_page_ref reqs[PCLINK_MAX_FAULTS];
	struct pclink_hdr h;

	assert_int_equal(mig_pclink_wait_faults(k->l, reqs, 8, 10, false), -EINVAL);
	assert_int_equal(mig_pclink_wait_faults(k->l, reqs, PCLINK_MAX_FAULTS, 10, false), 0);
	peer_send(k, PCLINK_FAULTS, 0, pg, sizeof(pg));
	assert_int_equal(mig_pclink_wait_faults(k->l, reqs, PCLINK_MAX_FAULTS, 100, true), 3);
	assert_int_equal(reqs[1].region, 1);
	assert_int_equal(reqs[1].page, 9);
	peer_recv(k, &h, NULL, 0); /* @again asked for every request still waiting */
	assert_int_equal(h.type, PCLINK_AGAIN);
	/* cleave-vcpu could not place a page: the error, once. */
	peer_send(k, PCLINK_ERROR, -EFAULT, NULL, 0);
	assert_int_equal(mig_pclink_wait_faults(k->l, reqs, PCLINK_MAX_FAULTS, 100, false),
			 -EFAULT);
	/* A FAULTS whose length does not match its count is no fault at all. */
	peer_send(k, PCLINK_FAULTS, 0, pg, sizeof(pg) - 4);
	assert_int_equal(mig_pclink_wait_faults(k->l, reqs, PCLINK_MAX_FAULTS, 100, false), 0);
}

static void test_place_splits(void **state)
{
	struct link *k = *state;
	static uint8_t data[20 * SHM_PAGE_SIZE], got[PCLINK_MAX_PAGES * SHM_PAGE_SIZE];
	struct pclink_hdr h;

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i / SHM_PAGE_SIZE + 1);
	assert_int_equal(mig_pclink_place(k->l, 1, 100, 20, data), 0);
	assert_int_equal(peer_recv(k, &h, got, sizeof(got)),
			 sizeof(h) + PCLINK_MAX_PAGES * SHM_PAGE_SIZE);
	assert_int_equal(h.type, PCLINK_PLACE);
	assert_int_equal(h.region, 1);
	assert_int_equal(h.page, 100);
	assert_int_equal(h.count, PCLINK_MAX_PAGES);
	assert_memory_equal(got, data, PCLINK_MAX_PAGES * SHM_PAGE_SIZE);
	assert_int_equal(peer_recv(k, &h, got, sizeof(got)), sizeof(h) + 4 * SHM_PAGE_SIZE);
	assert_int_equal(h.page, 100 + PCLINK_MAX_PAGES);
	assert_int_equal(h.count, 4);
	assert_memory_equal(got, data + PCLINK_MAX_PAGES * SHM_PAGE_SIZE, 4 * SHM_PAGE_SIZE);
	/* Zero pages: a flag, no data. */
	assert_int_equal(mig_pclink_place(k->l, 0, 3, 2, NULL), 0);
	assert_int_equal(peer_recv(k, &h, NULL, 0), sizeof(h));
	assert_int_equal(h.flags, PCLINK_ZERO);
	assert_int_equal(h.count, 2);
}

int main(void)
{
	log_init("test-migrator-postcopy-link");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listen_and_end_replies, link_setup,
						link_teardown),
		cmocka_unit_test_setup_teardown(test_silent_malformed_gone, link_setup,
						link_teardown),
		cmocka_unit_test_setup_teardown(test_faults, link_setup, link_teardown),
		cmocka_unit_test_setup_teardown(test_place_splits, link_setup, link_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
