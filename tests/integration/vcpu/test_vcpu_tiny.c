// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu with tiny crafted guests (a few bytes of 32-bit code): boot,
 * serial output, isa-debug-exit status, bad images, QUIT, --incoming.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tests/unit/vcpu/elf-craft.h"

static const char *binary;

#define RAM (16ull << 20)

static size_t hello_elf(uint8_t *buf, const char *msg, uint8_t code, bool is64)
{
	static uint8_t code_buf[512];
	struct elf_craft c = {.is64 = is64, .entry = 0x100000, .nr_segs = 1};

	c.segs[0].paddr = 0x100000;
	c.segs[0].data = code_buf;
	c.segs[0].filesz = elf_craft_hello(code_buf, msg, code);
	c.segs[0].memsz = c.segs[0].filesz + 4096; /* some bss */
	return elf_craft_build(&c, buf);
}

static int setup(void **state)
{
	struct vt *t = calloc(1, sizeof(*t));

	assert_non_null(t);
	assert_int_equal(vt_init(t, binary, RAM, 0), 0);
	*state = t;
	return 0;
}

static int teardown(void **state)
{
	vt_fini(*state);
	free(*state);
	return 0;
}

static void test_hello_poweroff(void **state)
{
	struct vt *t = *state;
	uint8_t elf[4096];
	int status = -1;

	for (int is64 = 0; is64 < 2; is64++) {
		assert_int_equal(vt_guest_set(t, elf, hello_elf(elf, "hello\n", 7, is64)), 0);
		assert_int_equal(vt_spawn(t, 1, "x=1", false, NULL), 0);
		assert_int_equal(vt_wait(t, 10000, &status), 0);
		assert_int_equal(status, 7);
		assert_string_equal(t->serial.buf, "hello\n");
		assert_true(vt_expect(t, &t->log, 0, "guest poweroff: isa-debug-exit code 7", 0) >=
			    0);
	}
}

static void test_exit_code_clamped(void **state)
{
	struct vt *t = *state;
	uint8_t elf[4096];
	int status = -1;

	assert_int_equal(vt_guest_set(t, elf, hello_elf(elf, "", 200, false)), 0);
	assert_int_equal(vt_spawn(t, 2, NULL, false, NULL), 0);
	assert_int_equal(vt_wait(t, 10000, &status), 0);
	assert_int_equal(status, 125);
}

/* Each bad image is refused at start with exit 126 and a message naming the fault. */
static void test_bad_images(void **state)
{
	static uint8_t code[64];
	struct {
		const char *msg;
		struct elf_craft c;
		size_t truncate; /* bytes to keep, 0 = all */
		bool garbage;
	} cases[] = {
		{"not an ELF file", {0}, 0, true},
		{"wrong machine", {.machine = 62, .entry = 0x100000, .nr_segs = 1}, 0, false},
		{"no PVH entry note", {.no_note = true, .entry = 0x100000, .nr_segs = 1}, 0, false},
		{"outside guest RAM",
		 {.entry = 0x100000, .nr_segs = 2, .segs[1] = {.paddr = RAM - 16, .memsz = 64}},
		 0,
		 false},
		{"truncated file", {.entry = 0x100000, .nr_segs = 1}, 100, false},
		{"entry 0x200000 is not inside", {.entry = 0x200000, .nr_segs = 1}, 0, false},
	};
	struct vt *t = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t elf[4096] = "this is not an ELF image at all";
		size_t len = 64;
		int status = -1;

		if (!cases[i].garbage) {
			cases[i].c.segs[0] =
				(struct elf_craft_seg){0x100000, code, sizeof(code), sizeof(code)};
			len = elf_craft_build(&cases[i].c, elf);
		}
		if (cases[i].truncate)
			len = cases[i].truncate;
		assert_int_equal(vt_guest_set(t, elf, len), 0);
		assert_int_equal(vt_spawn(t, 1, NULL, false, NULL), 0);
		assert_int_equal(vt_wait(t, 10000, &status), 0);
		assert_int_equal(status, 126);
		if (vt_expect(t, &t->log, 0, cases[i].msg, 0) < 0)
			fail_msg("case %zu: no '%s' in log:\n%s", i, cases[i].msg, t->log.buf);
		assert_true(vt_expect(t, &t->log, 0, "guest image: ", 0) >= 0);
	}
}

static void test_incoming_status_quit(void **state)
{
	struct vt *t = *state;
	Cleave__Vcpu__StatusReply *st = NULL;
	uint8_t elf[4096];
	int status = -1;

	assert_int_equal(vt_guest_set(t, elf, hello_elf(elf, "never\n", 3, false)), 0);
	assert_int_equal(vt_spawn(t, 2, NULL, true, NULL), 0);
	assert_int_equal(vt_status(t, &st), 0);
	assert_int_equal(st->state, CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE);
	assert_int_equal(st->n_vcpus, 2);
	assert_true(st->vcpus[1]->thread_id > 0);
	assert_int_equal(st->memory_bytes, RAM);
	rpc_msg_free(&st->base);
	/* Nothing loaded: RESUME is refused, the process stays up. */
	assert_int_not_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_RESUME), 0);
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT), 0);
	assert_int_equal(vt_wait(t, 5000, &status), 0);
	assert_int_equal(status, 0);
	assert_int_equal(t->serial.len, 0);
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hello_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_code_clamped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incoming_status_quit, setup, teardown),
	};

	vt_require_kvm();
	binary = argc > 1 ? argv[1] : getenv("CLEAVE_VCPU");
	if (!binary) {
		fprintf(stderr, "usage: %s path/to/cleave-vcpu\n", argv[0]);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
