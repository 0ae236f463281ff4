/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Invariant 6 (docs/INVARIANTS.md): a cleave-migrator SIGKILLed at any
 * instant, on either side, is started again with the identical argv and
 * fds (as the launcher does) and the migration resumes; a cut TCP
 * connection is survived the same way; a peer that does not come back
 * fails the migration after reconnect-timeout with the source guest
 * running (those: test-resume-errors.c).
 *
 * Every completed migration is checked: both sides completed, the source
 * vcpu-proc postmigrate and never resumed after the switchover (RESUME
 * events of its vcpu-proc), the destination running, destination RAM at
 * switchover (hook ram_hash=1) equal to the source RAM, the destination
 * guest's heartbeats going on with its page checks passing.
 *
 * Random instants come from a seed printed at the start; CLEAVE_TEST_SEED
 * replays one; TEST_FILTER / TEST_SKIP (cmocka wildcards) pick tests.
 * Usage: test-resume CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR
 */
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

#include "resume-nodes.h"

/* ---- a. fault injection over a chain of migrations ------------------------ */

#define CHAIN_KILLS	    20
#define CHAIN_MAX_MIGS	    30
#define KILLS_PER_MIGRATION 3

static void test_fault_chain(void **state)
{
	struct node *src = node_new(false, HOOKS), *dst;
	unsigned int kills = 0, side = (unsigned int)(rnd() & 1), m;
	unsigned int restarts_seen = 0;
	uint64_t t_start = vt_now_ms();

	(void)state;
	for (m = 0; kills < CHAIN_KILLS; m++) {
		Cleave__Migrator__MigrationInfo *mi = NULL;
		unsigned int k = 0, kside[2] = {0, 0}, kactive[2] = {0, 0};
		char status[16] = "setup", what[48];
		struct side_figs fs, fd;
		uint64_t t0, next, pass = 0, sent = 0;

		if (m == CHAIN_MAX_MIGS)
			fail_msg("%u kills in %u migrations", kills, m);
		dst = node_new(true, HOOKS);
		mig_configure(&src->mig, CHANNELS, BANDWIDTH, -1);
		node_watch(src);
		node_migrate(src, dst->uri);
		t0 = vt_now_ms();
		next = t0 + rnd_range(100, 1500);
		for (;;) {
			uint64_t now;

			mi = mig_query_try(&src->mig, 300);
			if (mi) {
				snprintf(status, sizeof(status), "%s", mi->status);
				pass = mi->ram->dirty_sync_count;
				sent = mi->ram->transferred;
				if (!mig_status_running(mi->status))
					break;
				rpc_msg_free(&mi->base);
				mi = NULL;
			}
			now = vt_now_ms();
			if (now - t0 > MIG_DEADLINE)
				fail_nodes(src, dst,
					   "migration %u (%u kills) not finished in %u ms", m, k,
					   MIG_DEADLINE);
			if (now >= next && k < KILLS_PER_MIGRATION && mig_status_running(status)) {
				struct node *victim = side ? dst : src;
				unsigned int delay = rnd_range(0, 100);

				node_restart(victim, delay);
				fprintf(stderr,
					"#   migration %u: killed the %s migrator at +%" PRIu64
					" ms (%s, %" PRIu64
					" syncs, %.1f MiB sent), restarted after %u ms\n",
					m, side ? "destination" : "source", now - t0, status, pass,
					(double)sent / (1 << 20), delay);
				kside[side]++;
				kactive[side] += !strcmp(status, "active");
				k++;
				kills++;
				side ^= 1;
				next = vt_now_ms() + rnd_range(200, 1500);
			}
			node_events_poll(src);
			nodes_drain(src, dst);
			sleep_ms(10);
		}
		check_completed(src, dst, mi, &fs, &fd);
		snprintf(what, sizeof(what), "migration %u, %u kills (src %u, dst %u)", m, k,
			 kside[0], kside[1]);
		figs_print(what, mi, &fs, &fd);
		/*
		 * Each side counts the restarts its session survived.  A kill in
		 * precopy ("active") must count; one in setup (a destination that
		 * had no session yet) or racing the end in "device" may not.
		 */
		if (fs.restarts > kside[0] || fd.restarts > kside[1] || fs.restarts < kactive[0] ||
		    fd.restarts < kactive[1])
			fail_nodes(
				src, dst,
				"restarts reported src %u dst %u, kills src %u dst %u, of them in "
				"precopy src %u dst %u",
				fs.restarts, fd.restarts, kside[0], kside[1], kactive[0],
				kactive[1]);
		restarts_seen += fs.restarts + fd.restarts;
		rpc_msg_free(&mi->base);
		node_free(src);
		src = dst;
	}
	fprintf(stderr, "# %u kills in %u migrations, %u restarts reported, %" PRIu64 " s\n", kills,
		m, restarts_seen, (vt_now_ms() - t_start) / 1000);
	node_free(src);
}

/* ---- b. a kill inside each phase, both sides at once, a cut connection ---- */

enum fault {
	F_SRC,	/* source migrator killed and restarted */
	F_DST,	/* destination migrator killed and restarted */
	F_BOTH, /* both at once */
	F_CUT,	/* every connection reset by the proxy, no process dies */
};

struct scenario {
	const char *name;
	enum phase phase;
	enum fault fault;
};

static void run_scenario(const struct scenario *sc)
{
	bool switchover = sc->phase == PH_SWITCH_EARLY || sc->phase == PH_SWITCH_LATE;
	const char *hooks = switchover ? HOOKS ",switchover_delay_ms=300" : HOOKS;
	struct node *src = node_new(false, hooks), *dst = node_new(true, hooks);
	Cleave__Migrator__MigrationInfo *mi;
	struct tcp_proxy *proxy = NULL;
	struct side_figs fs, fd;
	unsigned int pport, delay = rnd_range(0, 100), cut = 0;
	char uri[64];
	uint64_t t0;

	fprintf(stderr, "# %s: %s in %s\n", sc->name,
		sc->fault == F_SRC    ? "source migrator killed"
		: sc->fault == F_DST  ? "destination migrator killed"
		: sc->fault == F_BOTH ? "both migrators killed"
				      : "connections cut",
		phase_names[sc->phase]);
	/* Every scenario goes through the proxy, so they differ only in the fault. */
	assert_int_equal(tcp_proxy_start(&proxy, dst->port, &pport), 0);
	live_proxy = proxy;
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", pport);
	if (sc->phase == PH_SETUP)
		tcp_proxy_set_delay(proxy, 400); /* Hello held back: setup lasts */
	mig_configure(&src->mig, CHANNELS, BANDWIDTH, -1);
	node_watch(src);
	node_migrate(src, uri);
	t0 = vt_now_ms();
	wait_phase(src, dst, sc->phase, t0);
	/*
	 * In setup, what the killed process had sent is released at once (it
	 * was on the wire, it arrives): before the new process connects.
	 */
	switch (sc->fault) {
	case F_SRC:
	case F_DST:
		mig_kill(sc->fault == F_SRC ? &src->mig : &dst->mig);
		tcp_proxy_set_delay(proxy, 0);
		sleep_ms(delay);
		assert_int_equal(mig_respawn(sc->fault == F_SRC ? &src->mig : &dst->mig), 0);
		break;
	case F_BOTH:
		mig_kill(&dst->mig);
		mig_kill(&src->mig);
		tcp_proxy_set_delay(proxy, 0);
		sleep_ms(delay);
		assert_int_equal(mig_respawn(&src->mig), 0);
		assert_int_equal(mig_respawn(&dst->mig), 0);
		break;
	case F_CUT:
		cut = tcp_proxy_cut(proxy);
		tcp_proxy_set_delay(proxy, 0);
		assert_true(cut >= 1);
		break;
	}
	mi = wait_finished(src, dst, t0, MIG_DEADLINE);
	check_completed(src, dst, mi, &fs, &fd);
	figs_print(sc->name, mi, &fs, &fd);
	if (sc->fault == F_CUT)
		fprintf(stderr, "#   cut %u connections, %u accepted in all\n", cut,
			tcp_proxy_accepted(proxy));
	/* Counted restarts: a destination killed before it saw a Hello had no session. */
	if (sc->fault == F_SRC || sc->fault == F_BOTH)
		assert_int_equal(fs.restarts, 1);
	if ((sc->fault == F_DST || sc->fault == F_BOTH) && sc->phase != PH_SETUP)
		assert_int_equal(fd.restarts, 1);
	if (sc->fault == F_CUT) {
		assert_int_equal(fs.restarts, 0);
		assert_int_equal(fd.restarts, 0);
	}
	if (sc->phase != PH_SETUP)
		assert_true(fs.resumes >= 1);
	rpc_msg_free(&mi->base);
	live_proxy = NULL;
	tcp_proxy_stop(proxy);
	node_free(src);
	node_free(dst);
}

static const struct scenario scenarios[] = {
	{"setup-src", PH_SETUP, F_SRC},
	{"setup-dst", PH_SETUP, F_DST},
	{"first-src", PH_FIRST, F_SRC},
	{"first-dst", PH_FIRST, F_DST},
	{"later-src", PH_LATER, F_SRC},
	{"later-dst", PH_LATER, F_DST},
	{"switchover-src", PH_SWITCH_EARLY, F_SRC},
	{"switchover-dst", PH_SWITCH_EARLY, F_DST},
	{"switchover-loaded-src", PH_SWITCH_LATE, F_SRC},
	{"switchover-loaded-dst", PH_SWITCH_LATE, F_DST},
	{"first-both", PH_FIRST, F_BOTH},
	{"switchover-loaded-both", PH_SWITCH_LATE, F_BOTH},
	{"later-cut", PH_LATER, F_CUT},
	{"switchover-loaded-cut", PH_SWITCH_LATE, F_CUT},
};

static void test_scenario(void **state)
{
	run_scenario(*state);
}

int main(int argc, char **argv)
{
	struct CMUnitTest tests[1 + sizeof(scenarios) / sizeof(scenarios[0])];
	unsigned int n = 0;

	resume_init(argc, argv);
	tests[n++] =
		(struct CMUnitTest)cmocka_unit_test_teardown(test_fault_chain, resume_teardown);
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = scenarios[i].name,
						 .test_func = test_scenario,
						 .teardown_func = resume_teardown,
						 .initial_state = (void *)&scenarios[i]};
	return _cmocka_run_group_tests("resume", tests, n, NULL, NULL);
}
