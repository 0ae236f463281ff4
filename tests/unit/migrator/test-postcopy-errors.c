/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Postcopy's error paths (docs/MIGRATION.md, "Postcopy"), with the test
 * thread playing a raw, misbehaving peer over loopback TCP against a real
 * engine session.  The destination is postcopy-capable as in production:
 * its faults are served by cleave-vcpu's fault service on real userfaultfd
 * (tvm-postcopy.c).  It gets a switch at the wrong round, bad needed maps,
 * bad answers, stray messages, a failed state load and the source's Error;
 * a source gets bad page requests.  Each case checks the error and that
 * nothing was lost: a guest that never ran keeps its RAM and its VM side is
 * unregistered; a guest that runs keeps waiting for the pages it lacks
 * (never reads a zero page in their place); a source resumes its guest
 * only before the Commit.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "migrator/wire.h"
#include "raw-peer.h"
#include "tvm-postcopy.h"
#include "tvm.h"

#define PAGES  256 /* 1 MiB */
#define FILLED 8   /* the raw source's round 0: pages 0..7 of 0xab */
#define NEEDED 16  /* its valid switch: pages 0..15 still to come */
#define IO_MS  1000

static const struct shm_ctl_layout layout = {
	.nr_regions = 1,
	.gpa = {0},
	.size = {PAGES * SHM_PAGE_SIZE},
};
static const uint8_t sid[16] = "postcopy-errors!";
static const char state_blob[] = "vmstate:cpu0";

struct pcf {
	struct tvm src, dst; /* dst: postcopy-capable; a raw peer plays the other side */
	unsigned int port;
	char uri[64];
	int lfd, mfd, cfd; /* the raw peer's listener, main connection, channel; -1: none */
	/* A raw destination reads its channel all along: the source never blocks on it. */
	pthread_t drain;
	bool drain_live;
	/* A destination "vCPU" reading page 0 (one the guest lacks). */
	pthread_t reader;
	bool reader_live;
	atomic_bool read_done;
};

#define NEEDS_USERFAULTFD()                                                                        \
	do {                                                                                       \
		if (!tvm_postcopy_usable()) {                                                      \
			print_message("skipped: no usable /dev/userfaultfd for the fault "         \
				      "service\n");                                                \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

static struct pcf *pcf_alloc(void)
{
	struct pcf *f = calloc(1, sizeof(*f));
	struct mig_env base = {.ops = tvm_postcopy_vm_ops(), .snapshot_dirfd = -1};
	struct mig_caps caps = {.events = true, .postcopy_ram = true};
	struct mig_params p;

	assert_non_null(f);
	f->lfd = f->mfd = f->cfd = -1;
	assert_int_equal(tvm_init(&f->src, &layout, NULL, IO_MS), 0);
	assert_int_equal(tvm_init_env(&f->dst, &layout, NULL, IO_MS, &base), 0);
	assert_int_equal(tvm_postcopy_init(&f->dst), 0);
	/* These cases are about failing: a lost peer fails at once. */
	for (struct tvm *t = &f->src; t; t = t == &f->src ? &f->dst : NULL) {
		assert_int_equal(mig_session_set_caps(t->s, &caps), 0);
		mig_session_get_params(t->s, &p);
		p.reconnect_timeout = 0;
		assert_int_equal(mig_session_set_params(t->s, &p), 0);
	}
	return f;
}

static void drain_stop(struct pcf *f);
static void raw_close(struct pcf *f);

static void pcf_free(struct pcf *f)
{
	drain_stop(f);
	raw_close(f);
	if (f->lfd >= 0)
		close(f->lfd);
	/* The sessions first: their threads call the VM side until joined. */
	mig_session_free(f->src.s);
	f->src.s = NULL;
	mig_session_free(f->dst.s);
	f->dst.s = NULL;
	/* Forced (the VM is gone): a reader blocked on a missing page ends. */
	tvm_postcopy_fini(&f->dst);
	if (f->reader_live)
		pthread_join(f->reader, NULL);
	tvm_fini(&f->src);
	tvm_fini(&f->dst);
	free(f);
}

static int pcf_setup(void **state)
{
	*state = pcf_alloc();
	return 0;
}

static int pcf_teardown(void **state)
{
	pcf_free(*state);
	return 0;
}

/* ---- checks ---------------------------------------------------------------- */

static int resumes(struct tvm *t)
{
	int n;

	pthread_mutex_lock(&t->lock);
	n = t->resume_calls;
	pthread_mutex_unlock(&t->lock);
	return n;
}

/*
 * The destination's guest never ran and its VM side let go of its RAM:
 * no page counts as missing, a new incoming migration may start.
 */
static void assert_dst_never_ran(struct pcf *f)
{
	struct mig_info di;

	assert_int_equal(resumes(&f->dst), 0);
	assert_false(tvm_postcopy_listening(&f->dst));
	mig_session_query(f->dst.s, &di);
	assert_int_equal(di.postcopy_missing, 0);
}

/* Round 0's pages are still in the destination's RAM: nothing was punched. */
static void assert_filled_intact(struct pcf *f)
{
	uint8_t want[SHM_PAGE_SIZE], got[SHM_PAGE_SIZE];

	memset(want, 0xab, sizeof(want));
	for (uint64_t p = 0; p < FILLED; p++) {
		assert_int_equal(
			pread(f->dst.ram[0].fd, got, sizeof(got), (off_t)(p * SHM_PAGE_SIZE)),
			sizeof(got));
		assert_memory_equal(got, want, sizeof(got));
	}
}

static void *reader_main(void *arg)
{
	struct pcf *f = arg;

	(void)*(const volatile uint64_t *)f->dst.ram[0].base;
	atomic_store(&f->read_done, true);
	return NULL;
}

/*
 * The guest runs and the migration failed: page 0 never came.  A vCPU
 * that touches it waits (the VM side stays registered), it never reads a
 * zero page in place of the guest's data.
 */
static void assert_missing_page_waits(struct pcf *f)
{
	struct mig_info info;

	mig_session_query(f->dst.s, &info);
	assert_int_equal(info.postcopy_missing, NEEDED);
	assert_true(tvm_postcopy_listening(&f->dst));
	assert_int_equal(pthread_create(&f->reader, NULL, reader_main, f), 0);
	f->reader_live = true;
	usleep(200 * 1000);
	assert_false(atomic_load(&f->read_done));
}

/* ---- a raw source against a real destination -------------------------- */

static void dst_listen(struct pcf *f)
{
	assert_int_equal(mig_session_incoming(f->dst.s, "tcp:127.0.0.1:0"), 0);
	f->port = mig_session_incoming_port(f->dst.s);
	assert_true(f->port > 0);
}

/* The raw peer's connections (not its listener). */
static void raw_close(struct pcf *f)
{
	if (f->mfd >= 0)
		close(f->mfd);
	if (f->cfd >= 0)
		close(f->cfd);
	f->mfd = f->cfd = -1;
}

/*
 * Hello (postcopy-ram on) with one channel; round 0 brings pages
 * 0..FILLED-1 and landed (RoundAck 0): a switch is due at round 1.
 */
static void rsrc_round0(struct pcf *f)
{
	const struct raw_hello h = {.magic = WIRE_MAGIC,
				    .version = WIRE_VERSION,
				    .sid = sid,
				    .size = layout.size[0],
				    .channels = 1,
				    .epoch = 1,
				    .postcopy = true};
	uint64_t offs[FILLED];

	dst_listen(f);
	f->mfd = raw_connect(f->port);
	raw_hello_send(f->mfd, &h);
	raw_expect(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK, NULL, 0);
	f->cfd = raw_channel(f->port, 0, sid);
	for (uint64_t p = 0; p < FILLED; p++)
		offs[p] = p * SHM_PAGE_SIZE;
	raw_packet(f->cfd, 0, offs, FILLED, FILLED);
	raw_sync(f->cfd, 0, false);
	raw_round(f->mfd, 0);
	raw_expect(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK, NULL, 0);
}

static void raw_send(int fd, int body, void *msg)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;

	m.body_case = body;
	m.hello = msg; /* any member of the oneof: they share storage */
	assert_int_equal(mig_msg_send(fd, &m), 0);
}

static void raw_postcopy(int fd, uint64_t round, Cleave__Wire__PageMap **needed, size_t n)
{
	Cleave__Wire__Postcopy pc = CLEAVE__WIRE__POSTCOPY__INIT;

	pc.final_round = round;
	pc.n_needed = n;
	pc.needed = needed;
	pc.state.data = (uint8_t *)state_blob;
	pc.state.len = sizeof(state_blob) - 1;
	raw_send(fd, CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY, &pc);
}

/* Round 0 landed, then a valid switch at round 1 (pages 0..NEEDED-1 to come). */
static void rsrc_switch(struct pcf *f)
{
	uint64_t runs[2] = {0, NEEDED};
	Cleave__Wire__PageMap pm = CLEAVE__WIRE__PAGE_MAP__INIT, *pmp = &pm;

	pm.n_runs = 2;
	pm.runs = runs;
	rsrc_round0(f);
	raw_postcopy(f->mfd, 1, &pmp, 1);
}

/* ... and the destination loaded the state, its guest not yet running. */
static void rsrc_loaded(struct pcf *f)
{
	rsrc_switch(f);
	raw_expect(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, NULL, 0);
	assert_true(tvm_postcopy_listening(&f->dst));
	assert_int_equal(resumes(&f->dst), 0);
}

static bool wait_status(struct tvm *t, enum mig_status st, int ms)
{
	struct mig_info info;

	for (int i = 0; i < ms; i++) {
		mig_session_query(t->s, &info);
		if (info.status == st)
			return true;
		usleep(1000);
	}
	return false;
}

/* ... and committed: the guest runs at the destination, pages 0..NEEDED-1 missing. */
static void rsrc_committed(struct pcf *f)
{
	Cleave__Wire__Commit c = CLEAVE__WIRE__COMMIT__INIT;

	rsrc_loaded(f);
	raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT, &c);
	assert_true(wait_status(&f->dst, MIG_STATUS_POSTCOPY_ACTIVE, 5000));
	assert_int_equal(resumes(&f->dst), 1);
}

/* 1. The switch must come once every earlier round landed, never before or after. */
static void test_dst_postcopy_wrong_round(void **state)
{
	static const struct {
		uint64_t round;
		const char *error;
	} rows[] = {
		{0, "protocol error: Postcopy at round 0 where rounds < 1 landed"}, /* stale */
		{2, "protocol error: Postcopy at round 2 where rounds < 1 landed"}, /* ahead */
	};
	struct pcf *f = *state;

	NEEDS_USERFAULTFD();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		uint64_t runs[2] = {0, NEEDED};
		Cleave__Wire__PageMap pm = CLEAVE__WIRE__PAGE_MAP__INIT, *pmp = &pm;

		pm.n_runs = 2;
		pm.runs = runs;
		rsrc_round0(f);
		raw_postcopy(f->mfd, rows[i].round, &pmp, 1);
		raw_assert_final(&f->dst, MIG_STATUS_FAILED, rows[i].error);
		assert_dst_never_ran(f);
		assert_filled_intact(f);
		assert_int_equal(f->dst.loads, 0);
		raw_close(f);
	}
}

/*
 * 2. A needed map that does not fit the RAM: refused as a whole before any
 * page is punched.  Each map but the first starts with a valid entry that
 * covers the filled pages, so a check that came after the punching would
 * show in their content.
 */
static void test_dst_postcopy_bad_needed_map(void **state)
{
	static const uint64_t good[2] = {0, NEEDED}, odd[3] = {0, NEEDED, 40},
			      past[4] = {0, NEEDED, PAGES - 1, 2}, empty[2] = {0, 0};
	static const uint64_t raw_long[PAGES / 64 + 1] = {~0ull};
	static const struct {
		const char *what;
		uint32_t region; /* of the second map */
		const uint64_t *runs;
		size_t n_runs;
		const uint64_t *raw;
		size_t raw_len;
	} rows[] = {
		{"odd run list", 0, odd, 3, NULL, 0},
		{"region out of range", 1, good, 2, NULL, 0},
		{"run past the region's end", 0, past, 4, NULL, 0},
		{"empty run", 0, empty, 2, NULL, 0},
		{"raw map longer than the region", 0, NULL, 0, raw_long, sizeof(raw_long)},
		{"runs and raw at once", 0, good, 2, raw_long, sizeof(raw_long) - 8},
	};
	struct pcf *f = *state;

	NEEDS_USERFAULTFD();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Cleave__Wire__PageMap first = CLEAVE__WIRE__PAGE_MAP__INIT;
		Cleave__Wire__PageMap bad = CLEAVE__WIRE__PAGE_MAP__INIT;
		Cleave__Wire__PageMap *maps[2] = {&first, &bad};

		print_message("needed map: %s\n", rows[i].what);
		first.n_runs = 2;
		first.runs = (uint64_t *)good;
		bad.region = rows[i].region;
		bad.n_runs = rows[i].n_runs;
		bad.runs = (uint64_t *)rows[i].runs;
		bad.raw.data = (uint8_t *)rows[i].raw;
		bad.raw.len = rows[i].raw_len;
		rsrc_round0(f);
		raw_postcopy(f->mfd, 1, maps, 2);
		raw_assert_final(&f->dst, MIG_STATUS_FAILED,
				 "postcopy: needed pages: bad page map");
		assert_filled_intact(f);
		assert_dst_never_ran(f);
		assert_int_equal(f->dst.loads, 0);
		raw_close(f);
	}
}

/*
 * 3. An answer that does not fit the RAM after the Commit: the migration
 * fails with nothing placed, and the guest, which runs, keeps waiting
 * for what it lacks.
 */
static void test_dst_postcopy_bad_pages(void **state)
{
	static uint8_t data[2 * SHM_PAGE_SIZE];
	static const struct {
		uint32_t region, count;
		uint64_t page;
		size_t len;
		const char *error;
	} rows[] = {
		{1, 1, 0, SHM_PAGE_SIZE, "PostcopyPages region 1 page 0 count 1 with 4096 bytes"},
		{0, 1, PAGES, SHM_PAGE_SIZE,
		 "PostcopyPages region 0 page 256 count 1 with 4096 bytes"},
		{0, 2, PAGES - 1, 2 * SHM_PAGE_SIZE,
		 "PostcopyPages region 0 page 255 count 2 with 8192 bytes"},
		{0, 0, 0, 0, "PostcopyPages region 0 page 0 count 0 with 0 bytes"},
		{0, 1, 0, SHM_PAGE_SIZE - 1,
		 "PostcopyPages region 0 page 0 count 1 with 4095 bytes"},
		{0, 1, 0, 2 * SHM_PAGE_SIZE,
		 "PostcopyPages region 0 page 0 count 1 with 8192 bytes"},
	};

	(void)state;
	NEEDS_USERFAULTFD();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Cleave__Wire__PostcopyPages pp = CLEAVE__WIRE__POSTCOPY_PAGES__INIT;
		struct pcf *f = pcf_alloc();

		rsrc_committed(f);
		pp.region = rows[i].region;
		pp.page = rows[i].page;
		pp.count = rows[i].count;
		pp.data.data = data;
		pp.data.len = rows[i].len;
		raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY_PAGES, &pp);
		raw_assert_final(&f->dst, MIG_STATUS_FAILED, rows[i].error);
		assert_int_equal(resumes(&f->dst), 1);
		assert_missing_page_waits(f);
		pcf_free(f);
	}
}

/*
 * A source that sent every page and closed its main connection before its
 * channel's FINAL arrived: every page is in, the destination finishes
 * (completed, unregistered) rather than failing with nothing lost.
 */
static void test_dst_postcopy_main_closes_first(void **state)
{
	static uint8_t data[NEEDED * SHM_PAGE_SIZE];
	Cleave__Wire__PostcopyPages pp = CLEAVE__WIRE__POSTCOPY_PAGES__INIT;
	struct pcf *f = pcf_alloc();
	uint8_t got[SHM_PAGE_SIZE];

	(void)state;
	NEEDS_USERFAULTFD();
	memset(data, 0xcd, sizeof(data));
	rsrc_committed(f);
	pp.region = 0;
	pp.page = 0;
	pp.count = NEEDED;
	pp.data.data = data;
	pp.data.len = sizeof(data);
	raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY_PAGES, &pp);
	close(f->mfd);
	f->mfd = -1;
	usleep(200 * 1000); /* the destination reads the end of main first */
	raw_sync(f->cfd, 1, true);
	raw_assert_final(&f->dst, MIG_STATUS_COMPLETED, "");
	assert_false(tvm_postcopy_listening(&f->dst));
	assert_int_equal(
		pread(f->dst.ram[0].fd, got, sizeof(got), (off_t)(NEEDED - 1) * SHM_PAGE_SIZE),
		sizeof(got));
	assert_memory_equal(got, data, sizeof(got));
	pcf_free(f);
}

/*
 * 4. and 7. A message that has no place in postcopy, and the source's
 * Error: before the Commit the guest never ran and the VM side lets go;
 * after it the guest runs on and waits for what it lacks.
 */
static void test_dst_postcopy_stray_or_error(void **state)
{
	static const struct {
		bool commit;
		int body;
		const char *error;
	} rows[] = {
		{false, CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE,
		 "protocol error: message 5 in postcopy"},
		{true, CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE,
		 "protocol error: message 5 in postcopy"},
		{true, CLEAVE__WIRE__WIRE_MSG__BODY_HELLO, "protocol error: message 1 in postcopy"},
		{false, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR, "source: out of disk"},
		{true, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR, "source: out of disk"},
	};

	(void)state;
	NEEDS_USERFAULTFD();
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Cleave__Wire__DeviceState ds = CLEAVE__WIRE__DEVICE_STATE__INIT;
		Cleave__Wire__Hello h = CLEAVE__WIRE__HELLO__INIT;
		Cleave__Wire__Error e = CLEAVE__WIRE__ERROR__INIT;
		struct pcf *f = pcf_alloc();
		void *msg = rows[i].body == CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE ? (void *)&ds
			    : rows[i].body == CLEAVE__WIRE__WIRE_MSG__BODY_HELLO      ? (void *)&h
										      : (void *)&e;

		e.reason = "out of disk";
		ds.final_round = 1;
		if (rows[i].commit)
			rsrc_committed(f);
		else
			rsrc_loaded(f);
		raw_send(f->mfd, rows[i].body, msg);
		raw_assert_final(&f->dst, MIG_STATUS_FAILED, rows[i].error);
		if (rows[i].commit) {
			assert_int_equal(resumes(&f->dst), 1);
			assert_missing_page_waits(f);
		} else {
			assert_dst_never_ran(f);
		}
		pcf_free(f);
	}
}

/* 5. LOAD_STATE fails in the switch: undone, the guest never ran, the source told why. */
static void test_dst_postcopy_load_fails(void **state)
{
	struct pcf *f = *state;
	char reason[256] = "";

	NEEDS_USERFAULTFD();
	f->dst.fail_load = -EIO;
	rsrc_switch(f);
	raw_expect(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR, reason, sizeof(reason));
	assert_non_null(strstr(reason, "vcpu-proc LOAD_STATE: Input/output error"));
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "vcpu-proc LOAD_STATE: Input/output error");
	assert_dst_never_ran(f);
	assert_int_equal(f->dst.loads, 0);
}

/* 5. The same between two real sessions: the source, not committed, resumes its guest. */
static void test_postcopy_load_fails_real_source(void **state)
{
	struct pcf *f = *state;

	NEEDS_USERFAULTFD();
	f->dst.fail_load = -EIO;
	dst_listen(f);
	snprintf(f->uri, sizeof(f->uri), "tcp:127.0.0.1:%u", f->port);
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	assert_int_equal(mig_session_start_postcopy(f->src.s), 0);
	raw_assert_final(&f->dst, MIG_STATUS_FAILED, "vcpu-proc LOAD_STATE: Input/output error");
	raw_assert_final(&f->src, MIG_STATUS_FAILED, "destination: vcpu-proc LOAD_STATE");
	assert_true(tvm_saw_event(&f->src, "postcopy-active")); /* it did switch */
	assert_int_equal(f->src.pause_calls, 1);
	assert_int_equal(resumes(&f->src), 1);
	assert_false(f->src.paused);
	assert_dst_never_ran(f);
	assert_int_equal(f->dst.loads, 0);
}

/* ---- a raw destination against a real source ---------------------------- */

static void *drain_main(void *arg)
{
	struct pcf *f = arg;
	static uint8_t buf[64 * 1024];

	for (;;) {
		ssize_t n = read(f->cfd, buf, sizeof(buf));

		if (n > 0 || (n < 0 && (errno == EINTR || errno == EAGAIN)))
			continue;
		return NULL; /* closed, or shut down by drain_stop() */
	}
}

static void drain_stop(struct pcf *f)
{
	if (!f->drain_live)
		return;
	shutdown(f->cfd, SHUT_RDWR);
	pthread_join(f->drain, NULL);
	f->drain_live = false;
}

/*
 * The source migrates to the raw destination and switches to postcopy at
 * once; the destination acks its rounds and takes its Postcopy.  With
 * @commit it answers Loaded and returns after the source's Commit; else
 * it returns having answered nothing.
 */
static void rdst_switch(struct pcf *f, bool commit)
{
	f->lfd = raw_listen(&f->port);
	snprintf(f->uri, sizeof(f->uri), "tcp:127.0.0.1:%u", f->port);
	tvm_fill(&f->src, 0, 0, 64, false);
	assert_int_equal(mig_session_migrate(f->src.s, f->uri), 0);
	assert_int_equal(mig_session_start_postcopy(f->src.s), 0);
	raw_dest_accept(f->lfd, &f->mfd, &f->cfd);
	assert_int_equal(pthread_create(&f->drain, NULL, drain_main, f), 0);
	f->drain_live = true;
	for (;;) {
		Cleave__Wire__WireMsg *m;
		int body;

		assert_int_equal(mig_msg_recv(f->mfd, &m), 0);
		body = m->body_case;
		if (body == CLEAVE__WIRE__WIRE_MSG__BODY_ROUND) {
			Cleave__Wire__RoundAck ra = CLEAVE__WIRE__ROUND_ACK__INIT;

			/* Pretend it landed: the source switches only once it did. */
			ra.round = m->round->round;
			raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK, &ra);
		} else if (body == CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY && commit) {
			Cleave__Wire__Loaded l = CLEAVE__WIRE__LOADED__INIT;

			raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED, &l);
		} else if (body != CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS) {
			assert_int_equal(body, commit ? CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT
						      : CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY);
		}
		cleave__wire__wire_msg__free_unpacked(m, NULL);
		if (body == (commit ? CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT
				    : CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY))
			break;
	}
	assert_int_equal(f->src.pause_calls, 1);
}

/*
 * 6. A page request that does not fit the RAM.  Before the Commit the
 * source fails and runs its guest again; after it the guest may run at the
 * destination: the source never resumes it and leaves the call to the
 * operator (x-switchover-unknown), the reason in its error.
 */
static void test_src_postcopy_bad_page_request(void **state)
{
	static uint32_t regions[2] = {0, 1};
	static uint64_t pages[2] = {PAGES, 0};
	static const struct {
		bool commit;
		size_t n_region, n_page;
		uint32_t *region;
		uint64_t *page;
		const char *error;
	} rows[] = {
		{true, 1, 2, regions, pages, "page request with 1 regions for 2 pages"},
		{true, 1, 1, regions, pages, "page request for region 0 page 256"},
		{true, 1, 1, regions + 1, pages + 1, "page request for region 1 page 0"},
		{false, 1, 1, regions, pages, "page request for region 0 page 256"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		Cleave__Wire__PageRequest rq = CLEAVE__WIRE__PAGE_REQUEST__INIT;
		struct pcf *f = pcf_alloc();

		rdst_switch(f, rows[i].commit);
		rq.n_region = rows[i].n_region;
		rq.region = rows[i].region;
		rq.n_page = rows[i].n_page;
		rq.page = rows[i].page;
		raw_send(f->mfd, CLEAVE__WIRE__WIRE_MSG__BODY_PAGE_REQUEST, &rq);
		if (rows[i].commit) {
			raw_assert_final(&f->src, MIG_STATUS_UNKNOWN, rows[i].error);
			assert_int_equal(resumes(&f->src), 0);
			assert_true(f->src.paused);
		} else {
			raw_assert_final(&f->src, MIG_STATUS_FAILED, rows[i].error);
			assert_int_equal(resumes(&f->src), 1);
			assert_false(f->src.paused);
		}
		pcf_free(f);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_dst_postcopy_wrong_round, pcf_setup,
						pcf_teardown),
		cmocka_unit_test_setup_teardown(test_dst_postcopy_bad_needed_map, pcf_setup,
						pcf_teardown),
		cmocka_unit_test(test_dst_postcopy_bad_pages),
		cmocka_unit_test(test_dst_postcopy_main_closes_first),
		cmocka_unit_test(test_dst_postcopy_stray_or_error),
		cmocka_unit_test_setup_teardown(test_dst_postcopy_load_fails, pcf_setup,
						pcf_teardown),
		cmocka_unit_test_setup_teardown(test_postcopy_load_fails_real_source, pcf_setup,
						pcf_teardown),
		cmocka_unit_test(test_src_postcopy_bad_page_request),
	};

	log_init("test-migrator-postcopy-errors");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
