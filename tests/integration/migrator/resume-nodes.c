/* SPDX-License-Identifier: GPL-2.0-only */
/* The nodes of the resume tests and their checks: see resume-nodes.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/migrator-info.h"
#include "resume-nodes.h"
#include "tests/util/test-util.h"

static const char *vcpu_bin, *guest_path;
static uint64_t rng;
struct tcp_proxy *live_proxy;
/* What a failed test left behind, freed by its teardown. */
static struct node *live_nodes[4];

uint64_t rnd(void)
{
	/* xorshift64*: the same seed gives the same instants */
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

unsigned int rnd_range(unsigned int lo, unsigned int hi)
{
	return lo + (unsigned int)(rnd() % (hi - lo + 1));
}

void sleep_ms(unsigned int ms)
{
	usleep(ms * 1000);
}

struct node *node_new(bool incoming, const char *hooks)
{
	struct node *n = calloc(1, sizeof(*n));
	char needle[16];

	assert_non_null(n);
	for (unsigned int i = 0; i < 4; i++) {
		if (!live_nodes[i]) {
			live_nodes[i] = n;
			break;
		}
	}
	assert_int_equal(vt_init(&n->vm, vcpu_bin, RAM, 0), 0);
	assert_int_equal(vt_guest_open(&n->vm, guest_path), 0);
	assert_int_equal(vt_spawn(&n->vm, CPUS, GUEST_APPEND, incoming, NULL), 0);
	if (incoming) {
		n->port = mig_free_port();
		snprintf(n->uri, sizeof(n->uri), "tcp:127.0.0.1:%u", n->port);
		assert_int_equal(mig_spawn(&n->vm, &n->mig, n->uri, hooks), 0);
		return n;
	}
	for (unsigned int c = 0; c < CPUS; c++) {
		snprintf(needle, sizeof(needle), "HB %u ", c);
		if (vt_expect(&n->vm, &n->vm.serial, 0, needle, 15000) < 0)
			fail_msg("no heartbeat of cpu %u:\n%s\n%s", c, n->vm.serial.buf,
				 n->vm.log.buf);
	}
	assert_int_equal(mig_spawn(&n->vm, &n->mig, NULL, hooks), 0);
	return n;
}

void node_free(struct node *n)
{
	if (!n)
		return;
	for (unsigned int i = 0; i < 4; i++)
		if (live_nodes[i] == n)
			live_nodes[i] = NULL;
	if (n->vm_ev)
		rpc_sub_close(n->vm_ev);
	mig_vm_end(&n->vm, &n->mig);
	free(n);
}

void node_events_poll(struct node *n)
{
	Cleave__Events__Event *ev;

	while (n->vm_ev && rpc_sub_recv(n->vm_ev, &ev, NULL, 0) == 0) {
		if (ev->body_case == CLEAVE__EVENTS__EVENT__BODY_STOP)
			n->stops++;
		else if (ev->body_case == CLEAVE__EVENTS__EVENT__BODY_RESUME)
			n->resumes++;
		rpc_msg_free(&ev->base);
	}
}

/*
 * Subscribes to the vcpu-proc events of a source, and proves the
 * subscription works (a pause and resume of our own must show up) before
 * the counts start at zero.
 */
void node_watch(struct node *n)
{
	Cleave__Vcpu__PauseRequest pr = CLEAVE__VCPU__PAUSE_REQUEST__INIT;

	assert_int_equal(rpc_sub_open(&n->vm_ev), 0);
	assert_int_equal(rpc_sub_dial(n->vm_ev, n->vm.events_url), 0);
	pr.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED;
	for (int i = 0; i < 40 && !n->resumes; i++) {
		assert_int_equal(
			vt_call(&n->vm, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &pr.base, NULL, NULL),
			0);
		assert_int_equal(vt_simple(&n->vm, CLEAVE__VCPU__METHOD__METHOD_RESUME), 0);
		sleep_ms(50);
		node_events_poll(n);
	}
	assert_true(n->resumes > 0);
	n->stops = n->resumes = 0;
}

void node_migrate(struct node *src, const char *uri)
{
	Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;

	mreq.uri = (char *)uri;
	assert_int_equal(mig_call(&src->mig, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base,
				  NULL, NULL),
			 0);
}

void nodes_drain(struct node *a, struct node *b)
{
	vt_drain(&a->vm, 0);
	if (b)
		vt_drain(&b->vm, 0);
}

void node_restart(struct node *n, unsigned int delay_ms)
{
	mig_kill(&n->mig);
	sleep_ms(delay_ms);
	assert_int_equal(mig_respawn(&n->mig), 0);
}

Cleave__Migrator__MigrationInfo *wait_finished(struct node *src, struct node *dst, uint64_t t0,
					       uint64_t deadline_ms)
{
	Cleave__Migrator__MigrationInfo *mi;

	for (;;) {
		mi = mig_query_try(&src->mig, 300);
		if (mi && !mig_status_running(mi->status))
			return mi;
		if (mi)
			rpc_msg_free(&mi->base);
		if (vt_now_ms() - t0 > deadline_ms)
			fail_nodes(src, dst, "migration not finished after %" PRIu64 " ms",
				   deadline_ms);
		node_events_poll(src);
		nodes_drain(src, dst);
		sleep_ms(10);
	}
}

static void figs_take(struct side_figs *f, const Cleave__Migrator__MigrationInfo *mi)
{
	f->restarts = mi->restarts;
	f->resumes = (uint32_t)mig_info_counter(mi, "resumes");
	f->resent = mig_info_counter(mi, "resent_bytes");
	f->inflight = mig_info_counter(mi, "inflight_bytes");
	f->resume_time = mig_info_counter(mi, "resume_time_ms");
}

void check_completed(struct node *src, struct node *dst, Cleave__Migrator__MigrationInfo *mi,
		     struct side_figs *fs, struct side_figs *fd)
{
	Cleave__Migrator__MigrationInfo *di;
	uint64_t want, got, gen, ns0[CPUS];
	unsigned int n0[CPUS], n;
	int ret;

	if (strcmp(mi->status, "completed"))
		fail_nodes(src, dst, "source: %s: %s", mi->status, mi->error_desc);
	figs_take(fs, mi);
	di = mig_query_settled(&dst->mig, 5000);
	if (strcmp(di->status, "completed"))
		fail_nodes(src, dst, "destination: %s: %s", di->status, di->error_desc);
	figs_take(fd, di);
	rpc_msg_free(&di->base);

	/* The guest runs on exactly one side. */
	assert_int_equal(mig_vm_state(&src->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	assert_int_equal(mig_vm_state(&dst->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);

	/* RAM at the switchover: the source is paused since, its RAM is that RAM. */
	ret = mig_log_ram_hash(&dst->mig, 0, &got);
	if (ret)
		fail_nodes(src, dst, "no \"switchover RAM hash region 0\" line in %s",
			   dst->mig.log_path);
	want = shm_region_hash(&src->vm.ram[0]);
	if (want != got)
		fail_nodes(src, dst,
			   "destination RAM at switchover %016" PRIx64 " != source RAM %016" PRIx64,
			   got, want);

	/* The destination guest beats on and its page checks pass. */
	vt_drain(&dst->vm, 20);
	for (unsigned int c = 0; c < CPUS; c++)
		ns0[c] = mig_hb_last(&dst->vm, c, &gen, &n0[c]);
	for (unsigned int c = 0; c < CPUS; c++) {
		uint64_t ns = 0;

		for (int i = 0; i < 100; i++) {
			ns = mig_hb_last(&dst->vm, c, &gen, &n);
			if (n >= n0[c] + 3)
				break;
			vt_drain(&dst->vm, 50);
			vt_drain(&src->vm, 0);
		}
		if (n < n0[c] + 3)
			fail_nodes(src, dst,
				   "destination cpu %u: %u heartbeats\nserial:\n%s\nlog:\n%s", c, n,
				   dst->vm.serial.buf, dst->vm.log.buf);
		assert_true(ns > ns0[c]);
	}
	if (vt_count(&dst->vm.serial, 0, "ASSERT"))
		fail_nodes(src, dst, "destination guest:\n%s", dst->vm.serial.buf);
	assert_int_equal(vt_count(&src->vm.serial, 0, "ASSERT"), 0);

	/* The source paused once for the switchover and never resumed. */
	node_events_poll(src);
	assert_int_equal(mig_vm_state(&src->vm), CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE);
	if (src->resumes)
		fail_nodes(src, dst, "the source vcpu-proc resumed %u time(s) during the migration",
			   src->resumes);
	assert_true(src->stops >= 1);
}

void figs_print(const char *what, const Cleave__Migrator__MigrationInfo *mi,
		const struct side_figs *fs, const struct side_figs *fd)
{
	fprintf(stderr,
		"#   %s: total %" PRIu64 " ms, downtime %" PRIu64 " ms, %.1f MiB, %" PRIu64
		" syncs; src restarts %u resumes %u resent %" PRIu64 " KiB inflight %" PRIu64
		" KiB resume-time %" PRIu64 " ms; dst restarts %u resumes %u resume-time %" PRIu64
		" ms\n",
		what, mi->total_time, mi->downtime, (double)mi->ram->transferred / (1 << 20),
		mi->ram->dirty_sync_count, fs->restarts, fs->resumes, fs->resent >> 10,
		fs->inflight >> 10, fs->resume_time, fd->restarts, fd->resumes, fd->resume_time);
}

const char *const phase_names[] = {"setup", "first pass", "later rounds",
				   "switchover (before the final round)",
				   "switchover (loaded, before Commit)"};

void wait_phase(struct node *src, struct node *dst, enum phase ph, uint64_t t0)
{
	Cleave__Migrator__MigrationInfo *mi;
	uint64_t device_ms = 0, hash;

	for (;;) {
		bool hit = false;

		mi = mig_query_try(&src->mig, 300);
		if (mi) {
			if (!mig_status_running(mi->status))
				fail_nodes(src, dst, "migration ended (%s: %s) before %s",
					   mi->status, mi->error_desc, phase_names[ph]);
			switch (ph) {
			case PH_SETUP:
				hit = !strcmp(mi->status, "setup") && vt_now_ms() - t0 >= 80;
				if (strcmp(mi->status, "setup"))
					fail_nodes(src, dst, "setup over (%s) before the kill",
						   mi->status);
				break;
			case PH_FIRST:
				hit = !strcmp(mi->status, "active") && !mi->ram->dirty_sync_count &&
				      mi->ram->transferred >= (6u << 20);
				break;
			case PH_LATER:
				hit = !strcmp(mi->status, "active") &&
				      mi->ram->dirty_sync_count >= 2;
				break;
			case PH_SWITCH_EARLY:
				if (!strcmp(mi->status, "device") && !device_ms)
					device_ms = vt_now_ms();
				hit = device_ms && vt_now_ms() - device_ms >= SWITCH_DELAY / 3;
				break;
			case PH_SWITCH_LATE:
				hit = !strcmp(mi->status, "device") &&
				      !mig_log_ram_hash(&dst->mig, 0, &hash);
				if (hit)
					sleep_ms(SWITCH_DELAY / 6);
				break;
			}
			if (hit) {
				fprintf(stderr,
					"#   at +%" PRIu64 " ms: %s, %" PRIu64
					" syncs, %.1f MiB sent\n",
					vt_now_ms() - t0, mi->status, mi->ram->dirty_sync_count,
					(double)mi->ram->transferred / (1 << 20));
				rpc_msg_free(&mi->base);
				return;
			}
			rpc_msg_free(&mi->base);
		}
		if (vt_now_ms() - t0 > 30000)
			fail_nodes(src, dst, "no %s within 30 s", phase_names[ph]);
		node_events_poll(src);
		nodes_drain(src, dst);
		usleep(3000);
	}
}

void resume_init(int argc, char **argv)
{
	const char *seed_env = getenv("CLEAVE_TEST_SEED");
	uint64_t seed;

	if (argc != 4) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR\n", argv[0]);
		exit(1);
	}
	vt_require_kvm();
	test_require_fault_injection(); /* RAM hash at switchover, kill windows */
	vcpu_bin = argv[1];
	guest_path = argv[2];
	mig_harness_init(argv[3]);
	signal(SIGPIPE, SIG_IGN);
	seed = seed_env ? strtoull(seed_env, NULL, 0) : (vt_now_ms() ^ ((uint64_t)getpid() << 32));
	fprintf(stderr, "# seed %" PRIu64 " (CLEAVE_TEST_SEED=%" PRIu64 " replays it)\n", seed,
		seed);
	rng = seed ? seed : 1;
	/* TEST_FILTER="first-*" runs a subset, TEST_SKIP leaves one out (cmocka wildcards). */
	if (getenv("TEST_FILTER"))
		cmocka_set_test_filter(getenv("TEST_FILTER"));
	if (getenv("TEST_SKIP"))
		cmocka_set_skip_filter(getenv("TEST_SKIP"));
}

int resume_teardown(void **state)
{
	(void)state;
	tcp_proxy_stop(live_proxy);
	live_proxy = NULL;
	for (unsigned int i = 0; i < 4; i++)
		node_free(live_nodes[i]);
	return 0;
}
