/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration engine between two sets of memfds in one process, over
 * real loopback TCP: idle and dirtying RAM, 1 and 4 channels, ordering
 * under a delayed channel, switchover equality, zero/hole skipping.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "migrator/session-internal.h"
#include "migrator/wire.h"
#include "log/log.h"
#include "tvm.h"

#define R0_PAGES 4096 /* 16 MiB */
#define R1_PAGES 1024 /* 4 MiB at 4 GiB */

static const struct shm_ctl_layout layout = {
	.nr_regions = 2,
	.gpa = {0, 4ull << 30},
	.size = {R0_PAGES * SHM_PAGE_SIZE, R1_PAGES *SHM_PAGE_SIZE},
};

struct pair {
	struct tvm src, dst;
	char uri[64];
};

static int pair_setup_hooks(void **state, const struct mig_hooks *hooks)
{
	struct pair *p = calloc(1, sizeof(*p));

	if (!p || tvm_init(&p->src, &layout, NULL, 3000) || tvm_init(&p->dst, &layout, hooks, 3000))
		return -1;
	*state = p;
	return 0;
}

static int pair_setup(void **state)
{
	return pair_setup_hooks(state, NULL);
}

static int pair_teardown(void **state)
{
	struct pair *p = *state;

	tvm_fini(&p->src);
	tvm_fini(&p->dst);
	free(p);
	return 0;
}

static void pair_config(struct pair *p, unsigned int channels, uint64_t downtime_ms, bool ac)
{
	struct mig_caps caps = {.multifd = channels > 1, .events = true, .auto_converge = ac};
	struct mig_params params = {.multifd_channels = channels ? channels : 1,
				    .downtime_limit = downtime_ms};

	assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
	assert_int_equal(mig_session_set_caps(p->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(p->dst.s));
}

static void pair_migrate(struct pair *p)
{
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	assert_int_equal(mig_session_wait(p->src.s, 30000), 0);
	assert_int_equal(mig_session_wait(p->dst.s, 30000), 0);
}

static void assert_completed(struct pair *p)
{
	struct mig_info si, di;

	mig_session_query(p->src.s, &si);
	mig_session_query(p->dst.s, &di);
	if (si.status != MIG_STATUS_COMPLETED || di.status != MIG_STATUS_COMPLETED)
		fprintf(stderr, "src: %s '%s' dst: %s '%s'\n", mig_status_name(si.status),
			si.error_desc, mig_status_name(di.status), di.error_desc);
	assert_int_equal(si.status, MIG_STATUS_COMPLETED);
	assert_int_equal(di.status, MIG_STATUS_COMPLETED);
	assert_true(si.has_downtime);
	/* Switchover: the source stays paused for good, the destination runs. */
	assert_int_equal(p->src.last_pause_state, MIG_PAUSE_POSTMIGRATE);
	assert_int_equal(p->src.resume_calls, 0);
	assert_int_equal(p->dst.resume_calls, 1);
	assert_int_equal(p->dst.loads, 1);
	assert_memory_equal(p->dst.blob, "vmstate:cpu0", 12);
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
	assert_false(mig_record_receivedmap_live(p->dst.s->rec));
	assert_int_equal(p->dst.s->rec->status, MIG_STATUS_COMPLETED);
	assert_int_equal(p->src.s->rec->status, MIG_STATUS_COMPLETED);
	assert_true(tvm_saw_event(&p->src, "setup"));
	assert_true(tvm_saw_event(&p->src, "active"));
	assert_true(tvm_saw_event(&p->src, "device"));
	assert_true(tvm_saw_event(&p->src, "completed"));
	assert_true(tvm_saw_event(&p->dst, "completed"));
	assert_true(p->src.passes >= 1);
}

static void test_query_before(void **state)
{
	struct pair *p = *state;
	struct mig_info info;

	mig_session_query(p->src.s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
	assert_string_equal(mig_status_name(info.status), "");
	assert_string_equal(info.error_desc, "");
	/* migrate_cancel succeeds when nothing runs. */
	assert_int_equal(mig_session_cancel(p->src.s), 0);
	mig_session_query(p->src.s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
}

static void run_idle(struct pair *p, unsigned int channels)
{
	struct mig_info si, di;
	uint64_t a, e;

	tvm_fill(&p->src, 0, 0, 100, false);
	tvm_fill(&p->src, 0, 100, 10, true); /* allocated but zero */
	tvm_fill(&p->src, 1, 10, 10, false);
	pair_config(p, channels, 300, false);
	pair_migrate(p);
	assert_completed(p);
	mig_session_query(p->src.s, &si);
	mig_session_query(p->dst.s, &di);
	/* The plaintext source splices pages it never reads: the destination finds the zeros. */
	assert_int_equal(si.normal, 120);
	assert_int_equal(si.duplicate, 0);
	assert_int_equal(si.skipped, R0_PAGES + R1_PAGES - 120);
	assert_int_equal(di.normal, 110);
	assert_int_equal(di.duplicate, 10);
	assert_true(si.transferred >= 120 * SHM_PAGE_SIZE);
	assert_true(si.multifd_bytes >= 120 * SHM_PAGE_SIZE);
	assert_int_equal(si.total, (R0_PAGES + R1_PAGES) * SHM_PAGE_SIZE);
	/* Zero pages cost the destination no memory: still holes there. */
	assert_int_equal(shm_memfd_next_data(p->dst.ram[0].fd, 0, layout.size[0], &a, &e), 0);
	assert_int_equal(a, 0);
	assert_int_equal(e, 100 * SHM_PAGE_SIZE);
	assert_int_equal(shm_memfd_next_data(p->dst.ram[0].fd, e, layout.size[0], &a, &e), -ENXIO);
	/* Received bitmap recorded every landed page, zero ones included. */
	assert_int_equal(shm_bitmap_count(shm_ctl_received_bitmap(&p->dst.ctl, 0), R0_PAGES), 110);
	/* Stats survive the end of the job. */
	assert_true(si.total_time_ms < 30000);
	assert_true(mig_session_wait(p->src.s, 10) == 0);
}

static void test_idle_1ch(void **state)
{
	run_idle(*state, 1);
}

static void test_idle_4ch(void **state)
{
	run_idle(*state, 4);
}

/*
 * Over a unix: socket (libvirt's local migrations): a dirtying guest on 4
 * channels; a file that is not a socket in the listener's way is an error
 * and stays; the socket file goes with the destination's job.
 */
static void test_unix_socket(void **state)
{
	struct pair *p = *state;
	struct mig_caps caps = {.multifd = true, .events = true};
	struct mig_params params = {.multifd_channels = 4, .downtime_limit = 20};
	char dir[] = "/tmp/cleave-unix-XXXXXX", path[48];
	struct stat st;
	int fd;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/mig.sock", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	assert_true(fd >= 0);
	close(fd);
	snprintf(p->uri, sizeof(p->uri), "unix:%s", path);
	assert_int_equal(mig_session_incoming(p->dst.s, "unix:"), -EINVAL);
	assert_int_equal(mig_session_incoming(p->dst.s, p->uri), -EEXIST);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	unlink(path);

	assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
	assert_int_equal(mig_session_set_caps(p->dst.s, &caps), 0);
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	assert_int_equal(mig_session_incoming(p->dst.s, p->uri), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	tvm_fill(&p->src, 0, 0, R0_PAGES, false);
	tvm_dirtier_start(&p->src, 2048, 0);
	pair_migrate(p);
	tvm_dirtier_stop(&p->src);
	assert_completed(p);
	/* The next job reaps this one: its socket file is gone. */
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(stat(path, &st), -1);
	rmdir(dir);
}

static void run_dirty(struct pair *p, unsigned int channels)
{
	struct mig_info si;

	tvm_fill(&p->src, 0, 0, R0_PAGES, false);
	tvm_fill(&p->src, 1, 0, R1_PAGES / 2, false);
	tvm_dirtier_start(&p->src, 2048, 0);
	usleep(20000);
	pair_config(p, channels, 20, true);
	pair_migrate(p);
	assert_completed(p);
	mig_session_query(p->src.s, &si);
	assert_true(si.rounds >= 1);
	/* Dirty logging was turned off again, and the throttle released. */
	assert_false(p->src.dirty_log);
	tvm_dirtier_stop(&p->src);
}

static void test_dirty_1ch(void **state)
{
	run_dirty(*state, 1);
}

static void test_dirty_4ch(void **state)
{
	run_dirty(*state, 4);
}

/*
 * Round 0 harvests every 1 MiB queued and skips the pages the dirtier
 * already rewrote (their bits stay set for round 1): the RAM must still
 * be byte-identical, and harvests happened outside the counted rounds.
 */
static int first_pass_harvest_setup(void **state)
{
	struct pair *p = calloc(1, sizeof(*p));

	/* A source-side hook, unlike the receive delays. */
	if (!p ||
	    tvm_init(&p->src, &layout, TVM_HOOKS(.first_pass_harvest_bytes = 1u << 20), 3000) ||
	    tvm_init(&p->dst, &layout, NULL, 3000))
		return -1;
	*state = p;
	return 0;
}

static void test_dirty_first_pass_harvest(void **state)
{
	struct pair *p = *state;
	struct mig_info si;
	unsigned int harvests;

	TVM_NEEDS_HOOKS();
	run_dirty(p, 1);
	mig_session_query(p->src.s, &si);
	pthread_mutex_lock(&p->src.lock);
	harvests = p->src.harvests;
	pthread_mutex_unlock(&p->src.lock);
	assert_true(harvests > si.rounds);
}

/*
 * Channel 1 of the destination reads 3 ms late on every packet while a
 * small hot set is rewritten each round: without the per-round barrier an
 * old copy would land after a newer one and the RAM would differ.
 */
static int ordering_setup(void **state)
{
	return pair_setup_hooks(state, TVM_HOOKS(.recv_delay_us = 3000, .hook_channel = 1));
}

static void test_ordering_delayed_channel(void **state)
{
	struct pair *p = *state;
	struct mig_info si;

	TVM_NEEDS_HOOKS();
	tvm_fill(&p->src, 0, 0, 512, false);
	tvm_dirtier_start(&p->src, 64, 6);
	usleep(10000);
	pair_config(p, 4, 0, false);
	pair_migrate(p);
	assert_completed(p);
	mig_session_query(p->src.s, &si);
	assert_true(si.rounds >= 6);
	tvm_dirtier_stop(&p->src);
}

/* max-bandwidth is a ceiling shared by all channels: 4 MiB at 8 MiB/s takes >= ~0.4 s. */
static void test_max_bandwidth(void **state)
{
	struct pair *p = *state;
	struct mig_params params = {
		.multifd_channels = 4, .max_bandwidth = 8 << 20, .downtime_limit = 300};
	struct mig_info si;

	tvm_fill(&p->src, 0, 0, 1024, false);
	pair_config(p, 4, 300, false);
	assert_int_equal(mig_session_set_params(p->src.s, &params), 0);
	pair_migrate(p);
	assert_completed(p);
	mig_session_query(p->src.s, &si);
	/* 100 ms of burst credit, then the bucket refills at 8 MiB/s. */
	assert_true(si.total_time_ms >= 350);
	assert_true(si.total_time_ms < 5000);
}

int main(void)
{
	log_init("test-migrator");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_query_before, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_idle_1ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_idle_4ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_dirty_1ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_dirty_4ch, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_dirty_first_pass_harvest,
						first_pass_harvest_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_ordering_delayed_channel, ordering_setup,
						pair_teardown),
		cmocka_unit_test_setup_teardown(test_max_bandwidth, pair_setup, pair_teardown),
		cmocka_unit_test_setup_teardown(test_unix_socket, pair_setup, pair_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
