// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu with the real embedded guest (guest/, docs/GUEST.md): boot
 * with 1 and 2 vCPUs, heartbeats, pause/resume, save -> SIGKILL -> load in
 * a new process, dirty harvest against the guest's own write reports, guest
 * time monotonic throughout, poweroff status.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"

static const char *binary, *guest_path;

#define RAM (64ull << 20)

static int setup(void **state)
{
	struct vt *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(vt_init(t, binary, RAM, 0), 0);
	assert_int_equal(vt_guest_open(t, guest_path), 0);
	*state = t;
	return 0;
}

static int setup_two_regions(void **state)
{
	struct vt *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(vt_init(t, binary, 16ull << 20, 16ull << 20), 0);
	assert_int_equal(vt_guest_open(t, guest_path), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	vt_fini(*state);
	free(*state);
	return 0;
}

/* One "HB <cpu> <gen> <ns>" line. */
struct hb {
	unsigned int cpu;
	uint64_t gen, ns;
};

/* Parses every heartbeat in the serial output from @from; returns how many. */
static unsigned int hb_parse(const struct vt *t, size_t from, struct hb *out, unsigned int max)
{
	unsigned int n = 0;
	const char *p = t->serial.buf ? t->serial.buf + from : NULL;

	while (p && n < max && (p = strstr(p, "HB "))) {
		if (sscanf(p, "HB %u %" SCNu64 " %" SCNu64, &out[n].cpu, &out[n].gen, &out[n].ns) ==
		    3)
			n++;
		p += 3;
	}
	return n;
}

/* Guest time per vCPU never goes backwards across the whole output. */
static void hb_assert_monotonic(const struct vt *t, size_t from)
{
	static struct hb hbs[4096];
	uint64_t last[16] = {0};
	unsigned int n = hb_parse(t, from, hbs, 4096);

	for (unsigned int i = 0; i < n; i++) {
		assert_true(hbs[i].cpu < 16);
		if (hbs[i].ns < last[hbs[i].cpu])
			fail_msg("cpu %u guest time went back: %" PRIu64 " after %" PRIu64,
				 hbs[i].cpu, hbs[i].ns, last[hbs[i].cpu]);
		last[hbs[i].cpu] = hbs[i].ns;
	}
}

static void test_boot_heartbeats(void **state)
{
	struct vt *t = *state;

	for (unsigned int cpus = 1; cpus <= 2; cpus++) {
		char append[64];
		int status;

		snprintf(append, sizeof(append), "mode=idle mib=4 hb=50 cpus=%u", cpus);
		assert_int_equal(vt_spawn(t, cpus, append, false, NULL), 0);
		for (unsigned int c = 0; c < cpus; c++) {
			char needle[16];

			snprintf(needle, sizeof(needle), "HB %u ", c);
			if (vt_expect(t, &t->serial, 0, needle, 15000) < 0)
				fail_msg("no heartbeat of cpu %u:\n%s\n%s", c, t->serial.buf,
					 t->log.buf);
		}
		assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT), 0);
		assert_int_equal(vt_wait(t, 5000, &status), 0);
		assert_int_equal(status, 0);
		assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
		hb_assert_monotonic(t, 0);
	}
}

static uint64_t hb_last_ns(const struct vt *t, size_t from, unsigned int cpu, uint64_t *gen)
{
	static struct hb hbs[4096];
	unsigned int n = hb_parse(t, from, hbs, 4096);
	uint64_t ns = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (hbs[i].cpu == cpu) {
			ns = hbs[i].ns;
			if (gen)
				*gen = hbs[i].gen;
		}
	}
	return ns;
}

static Cleave__Vcpu__RunState status_state(struct vt *t)
{
	Cleave__Vcpu__StatusReply *st = NULL;
	Cleave__Vcpu__RunState s;

	assert_int_equal(vt_status(t, &st), 0);
	s = st->state;
	rpc_msg_free(&st->base);
	return s;
}

static void expect_hb(struct vt *t, size_t from, unsigned int cpus, int timeout_ms)
{
	for (unsigned int c = 0; c < cpus; c++) {
		char needle[16];

		snprintf(needle, sizeof(needle), "HB %u ", c);
		if (vt_expect(t, &t->serial, from, needle, timeout_ms) < 0)
			fail_msg("no heartbeat of cpu %u after offset %zu:\n%s\n%s", c, from,
				 t->serial.buf + (from < t->serial.len ? from : 0), t->log.buf);
	}
}

static void quit(struct vt *t)
{
	int status = -1;

	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT), 0);
	assert_int_equal(vt_wait(t, 5000, &status), 0);
	assert_int_equal(status, 0);
}

/* The next event of the given kind, skipping others. */
static void expect_event(struct rpc_sub *sub, Cleave__Events__Event__BodyCase body)
{
	uint64_t end = vt_now_ms() + 5000;

	while (vt_now_ms() < end) {
		Cleave__Events__Event *ev = NULL;
		uint64_t missed = 0;

		if (rpc_sub_recv(sub, &ev, &missed, 500))
			continue;
		if (ev->body_case == body) {
			assert_string_equal(ev->publisher, "vcpu");
			rpc_msg_free(&ev->base);
			return;
		}
		rpc_msg_free(&ev->base);
	}
	fail_msg("no event %d", (int)body);
}

static void test_pause_resume(void **state)
{
	struct vt *t = *state;
	struct rpc_sub *sub;
	uint64_t before, after;
	size_t mark;

	assert_int_equal(rpc_sub_open(&sub), 0);
	assert_int_equal(vt_spawn(t, 2, "mode=idle mib=4 hb=50 cpus=2", false, NULL), 0);
	/* The publisher listens before the RPC server: once STATUS answers, a dial connects. */
	status_state(t);
	assert_int_equal(rpc_sub_dial(sub, t->events_url), 0);
	expect_hb(t, 0, 2, 15000);
	assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	vt_drain(t, 200);

	for (int round = 0; round < 2; round++) {
		assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE), 0);
		assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED);
		expect_event(sub, CLEAVE__EVENTS__EVENT__BODY_STOP);
		vt_drain(t, 100); /* output flushed by the pause */
		mark = t->serial.len;
		before = hb_last_ns(t, 0, 0, NULL);
		vt_drain(t, 400); /* 8 heartbeat periods */
		assert_int_equal(t->serial.len, mark);
		/* A second PAUSE is a no-op. */
		assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE), 0);

		assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_RESUME), 0);
		assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
		expect_event(sub, CLEAVE__EVENTS__EVENT__BODY_RESUME);
		expect_hb(t, mark, 2, 5000);
		after = hb_last_ns(t, mark, 0, NULL);
		assert_true(after > before);
		/* KVM_KVMCLOCK_CTRL reached each guest vCPU (PVCLOCK_GUEST_STOPPED). */
		assert_true(vt_expect(t, &t->serial, mark, "STOPPED 0 ", 2000) >= 0);
		assert_true(vt_expect(t, &t->serial, mark, "STOPPED 1 ", 2000) >= 0);
	}
	hb_assert_monotonic(t, 0);
	assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
	quit(t);
	rpc_sub_close(sub);
}

/* Save, SIGKILL, and continue in a new process on the same memfds. */
static void save_kill_restore(struct vt *t, const char *append)
{
	Cleave__Vcpu__SaveStateReply *saved = NULL;
	Cleave__Vcpu__LoadStateRequest load = CLEAVE__VCPU__LOAD_STATE_REQUEST__INIT;
	Cleave__Vcpu__PauseRequest pause = CLEAVE__VCPU__PAUSE_REQUEST__INIT;
	Cleave__Vcpu__StatusReply *st = NULL;
	uint64_t gen0 = 0, gen1 = 0, ns0, ns1, clock_saved;
	assert_int_equal(vt_spawn(t, 2, append, false, NULL), 0);
	expect_hb(t, 0, 2, 15000);
	vt_drain(t, 300);
	/* SAVE_STATE is refused while running. */
	assert_int_not_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL,
				     &cleave__vcpu__save_state_reply__descriptor,
				     (ProtobufCMessage **)&saved),
			     0);
	pause.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE;
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &pause.base, NULL, NULL),
			 0);
	assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE);
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL,
				 &cleave__vcpu__save_state_reply__descriptor,
				 (ProtobufCMessage **)&saved),
			 0);
	assert_true(saved->state.len > 1000);
	assert_int_equal(vt_status(t, &st), 0);
	clock_saved = st->guest_ns;
	rpc_msg_free(&st->base);
	vt_drain(t, 100);
	ns0 = hb_last_ns(t, 0, 0, &gen0);
	assert_true(gen0 >= 1);
	vt_kill(t);

	/* New process, same RAM: incoming, load, resume. */
	assert_int_equal(vt_spawn(t, 2, append, true, NULL), 0);
	assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	load.state = saved->state;
	assert_int_equal(
		vt_call(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base, NULL, NULL), 0);
	/* Again, before anything ran: a restarted migrator repeats its load. */
	assert_int_equal(
		vt_call(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base, NULL, NULL), 0);
	assert_int_equal(vt_status(t, &st), 0);
	assert_true(st->guest_ns >= clock_saved); /* KVM clock restored, not restarted */
	rpc_msg_free(&st->base);
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_RESUME), 0);
	expect_hb(t, 0, 2, 10000);
	vt_expect(t, &t->serial, t->serial.len, "HB 0 ", 2000);
	ns1 = hb_last_ns(t, 0, 0, &gen1);
	assert_true(ns1 > ns0);
	assert_true(gen1 >= gen0); /* continues, not restarted from 1 */
	/* Once the guest ran, a load would overwrite it: refused. */
	assert_int_not_equal(
		vt_call(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base, NULL, NULL), 0);
	/* The new process's output: no second boot. */
	assert_int_equal(vt_count(&t->serial, 0, "READY"), 0);
	assert_int_equal(vt_count(&t->serial, 0, "cleave-guest:"), 0);
	assert_int_equal(vt_count(&t->serial, 0, "ASSERT"), 0);
	assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
	hb_assert_monotonic(t, 0);
	quit(t);
	rpc_msg_free(&saved->base);
}

static void test_save_kill_restore(void **state)
{
	/* dirty: generations advance; idle: the guest re-verifies every page. */
	save_kill_restore(*state, "mode=dirty mib=4 rate=16 hb=50 cpus=2");
	save_kill_restore(*state, "mode=idle mib=4 hb=50 cpus=2");
}

static void expect_refused(struct vt *t, uint32_t method, const ProtobufCMessage *req,
			   const char *msg)
{
	assert_int_not_equal(vt_call(t, method, req, NULL, NULL), 0);
	if (!strstr(t->last_err, msg))
		fail_msg("method %u: error '%s', wanted '%s'", method, t->last_err, msg);
}

/* Requests that do not fit the state are refused with a reason; the VM lives on. */
static void test_refusals(void **state)
{
	struct vt *t = *state;
	Cleave__Vcpu__LoadStateRequest load = CLEAVE__VCPU__LOAD_STATE_REQUEST__INIT;
	Cleave__Vcpu__PauseRequest pause = CLEAVE__VCPU__PAUSE_REQUEST__INIT;
	Cleave__Vcpu__SaveStateReply *saved = NULL;
	uint8_t junk[64];

	memset(junk, 0xee, sizeof(junk));
	load.state.data = junk;
	load.state.len = sizeof(junk);
	/* Running VM: no LOAD_STATE, no SAVE_STATE, no pause to "running". */
	assert_int_equal(vt_spawn(t, 2, "mode=idle mib=4 hb=50 cpus=2", false, NULL), 0);
	expect_hb(t, 0, 2, 15000);
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base,
		       "LOAD_STATE needs an incoming VM whose vCPUs never ran");
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL,
		       "SAVE_STATE needs a paused VM (state running)");
	pause.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING;
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &pause.base,
		       "cannot pause to running");
	assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	/* A 2-vCPU state for later. */
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE), 0);
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_SAVE_STATE, NULL,
				 &cleave__vcpu__save_state_reply__descriptor,
				 (ProtobufCMessage **)&saved),
			 0);
	quit(t);

	/* Incoming: garbage, a state of another shape, RESET, RESUME: all refused. */
	assert_int_equal(vt_spawn(t, 1, "mode=idle mib=4 hb=50", true, NULL), 0);
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base, "malformed VmState");
	load.state = saved->state;
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE, &load.base,
		       "state has 2 vCPUs, this VM 1");
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_RESET, NULL,
		       "cannot reset in state inmigrate");
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_RESUME, NULL, "before LOAD_STATE");
	assert_int_equal(status_state(t), CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	quit(t);
	rpc_msg_free(&saved->base);
}

/* UCALL_WRITES / UCALL_IMAGE ranges parsed from the log. */
struct range {
	uint64_t gpa, bytes, gen;
	unsigned int cpu;
	size_t off; /* log offset */
};

static unsigned int parse_ranges(const struct vt *t, struct range *out, unsigned int max)
{
	unsigned int n = 0;
	const char *p = t->log.buf;

	while (p && n < max && (p = strstr(p, "ucall cpu="))) {
		struct range *r = &out[n];
		uint64_t g2, b2, a, ab;

		r->off = (size_t)(p - t->log.buf);
		if (sscanf(p,
			   "ucall cpu=%u WRITES gpa=0x%" SCNx64 " bytes=%" SCNu64 " gen=%" SCNu64,
			   &r->cpu, &r->gpa, &r->bytes, &r->gen) == 4) {
			n++;
		} else if (sscanf(p,
				  "ucall cpu=%u IMAGE gpa=0x%" SCNx64 " bytes=%" SCNu64
				  " gpa2=0x%" SCNx64 " bytes2=%" SCNu64 " area=0x%" SCNx64
				  " area_bytes=%" SCNu64,
				  &r->cpu, &r->gpa, &r->bytes, &g2, &b2, &a, &ab) == 7 &&
			   n + 1 < max) {
			r->gen = 0; /* image */
			out[++n] = (struct range){g2, b2, 0, r->cpu, r->off};
			n++;
		}
		p += 10;
	}
	return n;
}

static bool in_ranges(const struct range *r, unsigned int n, uint64_t gpa)
{
	for (unsigned int i = 0; i < n; i++) {
		if (gpa >= r[i].gpa && gpa < r[i].gpa + r[i].bytes)
			return true;
	}
	return false;
}

/* Which region holds @gpa, and its dirty bit. */
static bool dirty_test_gpa(const struct vt *t, uint64_t gpa)
{
	const struct shm_ctl_header *h = t->ctl.hdr;

	for (unsigned int i = 0; i < h->nr_regions; i++) {
		if (gpa >= h->regions[i].gpa && gpa < h->regions[i].gpa + h->regions[i].size)
			return shm_bitmap_test(shm_ctl_dirty_bitmap(&t->ctl, i),
					       (gpa - h->regions[i].gpa) / 4096);
	}
	fail_msg("gpa 0x%" PRIx64 " outside RAM", gpa);
	return false;
}

static uint64_t dirty_count(const struct vt *t)
{
	const struct shm_ctl_header *h = t->ctl.hdr;
	uint64_t n = 0;

	for (unsigned int i = 0; i < h->nr_regions; i++)
		n += shm_bitmap_count(shm_ctl_dirty_bitmap(&t->ctl, i), h->regions[i].nr_pages);
	return n;
}

/*
 * Runs the guest with report=1, turns dirty logging on, lets it run, pauses
 * and harvests.  Then: every dirty page lies in a range the guest reported
 * (UCALL_WRITES of any generation, or UCALL_IMAGE), and every page of a
 * WRITES pass that ran wholly with logging on is dirty.  Returns how many
 * pages the second check covered.
 */
static uint64_t dirty_harvest_check(struct vt *t, const char *append)
{
	/* Every WRITES ucall must reach the log, however fast the guest reports. */
	static const char *const unlimited[] = {"--guest-log-rate", "0", NULL};
	static struct range ranges[8192];
	const struct shm_ctl_header *hdr = t->ctl.hdr;
	Cleave__Vcpu__DirtyLogRequest on = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;
	Cleave__Vcpu__HarvestReply *h = NULL;
	uint64_t checked = 0, first_gen[16] = {0};
	unsigned int n;
	size_t enable_off;

	assert_int_equal(vt_spawn(t, 2, append, false, unlimited), 0);
	expect_hb(t, 0, 2, 15000);
	for (unsigned int i = 0; i < hdr->nr_regions; i++) {
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(hdr->regions[i].nr_pages); w++)
			shm_bitmap_fetch_clear_word(shm_ctl_dirty_bitmap(&t->ctl, i), w);
	}
	vt_drain(t, 50);
	enable_off = t->log.len;
	on.enable = true;
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &on.base, NULL, NULL),
			 0);
	vt_drain(t, 700);
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_PAUSE), 0);
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL,
				 &cleave__vcpu__harvest_reply__descriptor, (ProtobufCMessage **)&h),
			 0);
	assert_true(h->dirty_pages > 0); /* at least stacks and the clock page */
	assert_int_equal(h->dirty_pages, dirty_count(t));
	rpc_msg_free(&h->base);
	/* Nothing ran since: a second harvest finds nothing new. */
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL,
				 &cleave__vcpu__harvest_reply__descriptor, (ProtobufCMessage **)&h),
			 0);
	assert_int_equal(h->dirty_pages, 0);
	rpc_msg_free(&h->base);
	vt_drain(t, 100);

	n = parse_ranges(t, ranges, 8192);
	assert_true(n >= 2); /* IMAGE's two ranges at least */
	for (unsigned int i = 0; i < hdr->nr_regions; i++) {
		uint64_t *map = shm_ctl_dirty_bitmap(&t->ctl, i);

		for (uint64_t p = 0; p < hdr->regions[i].nr_pages; p++) {
			uint64_t gpa = hdr->regions[i].gpa + p * 4096;

			if (shm_bitmap_test(map, p) && !in_ranges(ranges, n, gpa))
				fail_msg("page 0x%" PRIx64 " dirty but never reported", gpa);
		}
	}
	/* Skip each vCPU's first report after enabling: that pass may have begun before. */
	for (unsigned int i = 0; i < n; i++) {
		struct range *r = &ranges[i];

		if (r->off < enable_off || r->gen == 0 || r->cpu >= 16)
			continue;
		if (!first_gen[r->cpu]) {
			first_gen[r->cpu] = r->gen;
			continue;
		}
		if (r->gen == first_gen[r->cpu])
			continue;
		for (uint64_t a = r->gpa; a < r->gpa + r->bytes; a += 4096, checked++) {
			if (!dirty_test_gpa(t, a))
				fail_msg("cpu %u gen %" PRIu64 " wrote 0x%" PRIx64 " but not dirty",
					 r->cpu, r->gen, a);
		}
	}
	assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
	quit(t);
	return checked;
}

static void test_dirty_harvest_exact(void **state)
{
	struct vt *t = *state;
	uint64_t area_dirty = 0;

	assert_true(dirty_harvest_check(t, "mode=dirty mib=4 rate=32 hb=100 cpus=2 report=1") > 0);
	/* idle: after READY only the guest's own pages change, never the test area. */
	assert_int_equal(dirty_harvest_check(t, "mode=idle mib=4 hb=100 cpus=2 report=1"), 0);
	for (uint64_t a = 0x200000; a < 0x600000; a += 4096)
		area_dirty += dirty_test_gpa(t, a);
	assert_int_equal(area_dirty, 0);
}

/* RAM in two regions (below and above 4 GiB): two memslots, both harvested. */
static void test_dirty_harvest_two_regions(void **state)
{
	struct vt *t = *state;

	/* 24 MiB of test area from 2 MiB: 14 MiB below 4 GiB, the rest above. */
	assert_true(dirty_harvest_check(t, "mode=dirty mib=24 rate=64 hb=100 cpus=2 report=1") > 0);
	assert_true(shm_bitmap_count(shm_ctl_dirty_bitmap(&t->ctl, 1),
				     t->ctl.hdr->regions[1].nr_pages) > 0);
}

static void test_poweroff_and_reset(void **state)
{
	struct vt *t = *state;
	struct rpc_sub *sub;
	int status = -1;

	assert_int_equal(vt_spawn(t, 1, "mode=poweroff", false, NULL), 0);
	assert_int_equal(vt_wait(t, 15000, &status), 0);
	assert_int_equal(status, 0);
	assert_true(vt_expect(t, &t->serial, 0, "mode=poweroff", 0) >= 0);

	/* The guest's own failure: UCALL_ASSERT logged as an error, exit status 3. */
	assert_int_equal(vt_spawn(t, 1, "mode=idle mib=4 crash=1", false, NULL), 0);
	assert_int_equal(vt_wait(t, 15000, &status), 0);
	assert_int_equal(status, 3);
	assert_true(vt_expect(t, &t->log, 0, "error: ucall cpu=0 ASSERT line=", 0) >= 0);

	/* RESET reboots the guest: a second READY, heartbeats again, RESET event. */
	assert_int_equal(rpc_sub_open(&sub), 0);
	assert_int_equal(vt_spawn(t, 2, "mode=idle mib=4 hb=50 cpus=2", false, NULL), 0);
	status_state(t); /* the publisher is up once RPC answers */
	assert_int_equal(rpc_sub_dial(sub, t->events_url), 0);
	expect_hb(t, 0, 2, 15000);
	vt_drain(t, 200);
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_RESET), 0);
	expect_event(sub, CLEAVE__EVENTS__EVENT__BODY_RESET);
	if (vt_expect(t, &t->serial, 0, "READY 1\n", 0) < 0 ||
	    vt_expect(t, &t->serial, (size_t)vt_expect(t, &t->serial, 0, "READY 1\n", 0) + 1,
		      "READY 1\n", 15000) < 0)
		fail_msg("no second boot:\n%s\n%s", t->serial.buf, t->log.buf);
	assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
	quit(t);
	expect_event(sub, CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN);
	rpc_sub_close(sub);
}

/* Generations the guest's cpu 0 completes in @ms of wall time. */
static uint64_t gens_in(struct vt *t, int ms)
{
	uint64_t g0 = 0, g1 = 0;

	vt_drain(t, 0);
	hb_last_ns(t, 0, 0, &g0);
	vt_drain(t, ms);
	hb_last_ns(t, 0, 0, &g1);
	return g1 - g0;
}

static void test_throttle(void **state)
{
	struct vt *t = *state;
	Cleave__Vcpu__ThrottleRequest thr = CLEAVE__VCPU__THROTTLE_REQUEST__INIT;
	Cleave__Vcpu__StatusReply *st = NULL;
	uint64_t free_run, throttled;

	/* Unpaced dirtying: its progress is CPU time, which THROTTLE takes away. */
	assert_int_equal(vt_spawn(t, 1, "mode=dirty mib=2 hb=50", false, NULL), 0);
	expect_hb(t, 0, 1, 15000);
	thr.percent = 100;
	expect_refused(t, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &thr.base, "must be 0..99");
	free_run = gens_in(t, 1000);
	thr.percent = 90;
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &thr.base, NULL, NULL),
			 0);
	assert_int_equal(vt_status(t, &st), 0);
	assert_int_equal(st->throttle_percent, 90);
	rpc_msg_free(&st->base);
	vt_drain(t, 100);
	throttled = gens_in(t, 1000);
	if (throttled * 2 > free_run)
		fail_msg("90%% throttle: %" PRIu64 " generations/s, unthrottled %" PRIu64,
			 throttled, free_run);
	thr.percent = 0;
	assert_int_equal(vt_call(t, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &thr.base, NULL, NULL),
			 0);
	expect_hb(t, t->serial.len, 1, 5000);
	assert_int_equal(vt_count(&t->log, 0, "ASSERT"), 0);
	quit(t);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_boot_heartbeats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pause_resume, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_kill_restore, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refusals, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_harvest_exact, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dirty_harvest_two_regions, setup_two_regions,
						teardown),
		cmocka_unit_test_setup_teardown(test_poweroff_and_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_throttle, setup, teardown),
	};

	vt_require_kvm();
	if (argc < 3) {
		fprintf(stderr, "usage: %s cleave-vcpu cleave-guest.elf\n", argv[0]);
		return 1;
	}
	binary = argv[1];
	guest_path = argv[2];
	return cmocka_run_group_tests(tests, NULL, NULL);
}
