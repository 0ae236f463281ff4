/* SPDX-License-Identifier: GPL-2.0-only */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "migrator/wire.h"
#include "raw-peer.h"
#include "shm/shm.h"
#include "migrator/session-internal.h"
#include "tvm.h"

#define RAW_IO_TIMEOUT_MS 3000

int raw_connect(unsigned int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(mig_sock_setup(fd, RAW_IO_TIMEOUT_MS), 0);
	return fd;
}

int raw_listen(unsigned int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t sl = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &sl), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

int raw_accept(int lfd)
{
	int fd = accept(lfd, NULL, NULL);

	assert_true(fd >= 0);
	assert_int_equal(mig_sock_setup(fd, RAW_IO_TIMEOUT_MS), 0);
	return fd;
}

void raw_hello_send(int fd, const struct raw_hello *rh)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Hello h = CLEAVE__WIRE__HELLO__INIT;
	Cleave__Wire__Region r = CLEAVE__WIRE__REGION__INIT, *rp = &r;

	r.gpa = 0;
	r.size = rh->size;
	h.magic = rh->magic;
	h.version = rh->version;
	h.session_id.data = (uint8_t *)rh->sid;
	h.session_id.len = 16;
	h.epoch = rh->epoch;
	h.resume = rh->epoch > 1;
	h.next_round = rh->next_round;
	h.n_regions = 1;
	h.regions = &rp;
	h.channels = rh->channels;
	h.page_size = SHM_PAGE_SIZE;
	h.postcopy = rh->postcopy;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO;
	m.hello = &h;
	assert_int_equal(mig_msg_send(fd, &m), 0);
}

static bool raw_keepalive(const Cleave__Wire__WireMsg *m)
{
	return m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS ||
	       (m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_PAGE_REQUEST &&
		!m->page_request->n_page && !m->page_request->n_region);
}

void raw_expect(int fd, int body, char *reason, size_t len)
{
	Cleave__Wire__WireMsg *m;

	for (;;) {
		assert_int_equal(mig_msg_recv(fd, &m), 0);
		if (!raw_keepalive(m))
			break;
		cleave__wire__wire_msg__free_unpacked(m, NULL);
	}
	if ((int)m->body_case != body && m->body_case == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR)
		fprintf(stderr, "got Error '%s' instead of message %d\n", m->error->reason, body);
	assert_int_equal(m->body_case, body);
	if (reason && body == CLEAVE__WIRE__WIRE_MSG__BODY_ERROR)
		snprintf(reason, len, "%s", m->error->reason);
	cleave__wire__wire_msg__free_unpacked(m, NULL);
}

int raw_channel(unsigned int port, unsigned int index, const uint8_t *sid)
{
	struct mig_chan_hello ch = {
		.magic = MIG_CHAN_MAGIC, .version = WIRE_VERSION, .index = index};
	int fd = raw_connect(port);

	memcpy(ch.session_id, sid, 16);
	assert_int_equal(mig_io_write(fd, &ch, sizeof(ch)), 0);
	return fd;
}

void raw_packet(int fd, uint64_t round, const uint64_t *offs, uint32_t n, unsigned int data_pages)
{
	struct mig_pkt_hdr h = {.magic = MIG_PKT_MAGIC, .nr_pages = n, .round = round};
	static uint8_t page[SHM_PAGE_SIZE];

	memset(page, 0xab, sizeof(page));
	assert_int_equal(mig_io_write(fd, &h, sizeof(h)), 0);
	assert_int_equal(mig_io_write(fd, offs, n * sizeof(*offs)), 0);
	for (unsigned int i = 0; i < data_pages; i++)
		assert_int_equal(mig_io_write(fd, page, sizeof(page)), 0);
}

void raw_sync(int fd, uint64_t round, bool final)
{
	struct mig_pkt_hdr h = {.magic = MIG_PKT_MAGIC,
				.flags = MIG_PKT_SYNC | (final ? MIG_PKT_FINAL : 0),
				.round = round};

	assert_int_equal(mig_io_write(fd, &h, sizeof(h)), 0);
}

void raw_round(int fd, uint64_t round)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Round r = CLEAVE__WIRE__ROUND__INIT;

	r.round = round;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND;
	m.round = &r;
	assert_int_equal(mig_msg_send(fd, &m), 0);
}

void raw_dest_accept(int lfd, int *fd, int *cfd)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__HelloAck a = CLEAVE__WIRE__HELLO_ACK__INIT;
	struct mig_chan_hello ch;

	*fd = raw_accept(lfd);
	raw_expect(*fd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO, NULL, 0);
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK;
	m.hello_ack = &a;
	assert_int_equal(mig_msg_send(*fd, &m), 0);
	*cfd = raw_accept(lfd);
	assert_int_equal(mig_io_read(*cfd, &ch, sizeof(ch)), 0);
	assert_int_equal(ch.magic, MIG_CHAN_MAGIC);
}

void raw_assert_final(struct tvm *t, enum mig_status st, const char *needle)
{
	struct mig_info info;

	assert_int_equal(mig_session_wait(t->s, 10000), 0);
	mig_session_query(t->s, &info);
	if (info.status != st || !strstr(info.error_desc, needle))
		fprintf(stderr, "status %s error '%s', want %s '%s'\n",
			mig_status_name(info.status), info.error_desc, mig_status_name(st), needle);
	assert_int_equal(info.status, st);
	assert_non_null(strstr(info.error_desc, needle));
	assert_int_equal(t->s->rec->status, st);
	/* Whatever happened, the receivedmap is dead once the job is. */
	assert_false(mig_record_receivedmap_live(t->s->rec));
}
