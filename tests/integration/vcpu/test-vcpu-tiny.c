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

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/ucall.h"
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

/* A few x86 instructions for 32-bit protected mode, paging off. */
struct asm32 {
	uint8_t b[4096];
	size_t n;
};

static void emit(struct asm32 *a, const void *bytes, size_t len)
{
	memcpy(a->b + a->n, bytes, len);
	a->n += len;
}

static void emit_imm(struct asm32 *a, uint8_t op, uint32_t imm)
{
	emit(a, &op, 1);
	emit(a, &imm, 4);
}

static void emit_print(struct asm32 *a, const char *msg)
{
	emit_imm(a, 0xba, 0x3f8); /* mov edx, 0x3f8 */
	for (; *msg; msg++) {
		uint8_t ins[3] = {0xb0, (uint8_t)*msg, 0xee}; /* mov al, c; out dx, al */

		emit(a, ins, 3);
	}
}

static void emit_out32(struct asm32 *a, uint16_t port, uint32_t val)
{
	emit_imm(a, 0xba, port); /* mov edx, port */
	emit_imm(a, 0xb8, val);	 /* mov eax, val */
	emit(a, "\xef", 1);	 /* out dx, eax */
}

/* Code at 0x100000, a data page at 0x101000 (from @data). */
static size_t asm_elf(uint8_t *elf, const struct asm32 *code, const void *data, size_t dlen)
{
	struct elf_craft c = {.entry = 0x100000, .nr_segs = 2};

	c.segs[0] = (struct elf_craft_seg){0x100000, code->b, code->n, code->n};
	c.segs[1] = (struct elf_craft_seg){0x101000, data, dlen, 4096};
	return elf_craft_build(&c, elf);
}

/* ucall ASSERT and a ucall outside RAM: logged, the guest goes on. */
static void test_ucalls(void **state)
{
	struct vt *t = *state;
	struct ucall uc = {.cmd = UCALL_ASSERT, .cpu = 0, .args = {42}};
	struct asm32 a = {0};
	uint8_t elf[8192];
	int status = -1;

	strcpy(uc.text, "tiny.c:42: boom");
	emit_out32(&a, UCALL_PORT, 0x101000);
	emit_out32(&a, UCALL_PORT, 0xfffff000); /* no RAM there */
	emit_print(&a, "after\n");
	emit_out32(&a, DEBUG_EXIT_PORT, 5);
	assert_int_equal(vt_guest_set(t, elf, asm_elf(elf, &a, &uc, sizeof(uc))), 0);
	assert_int_equal(vt_spawn(t, 1, NULL, false, NULL), 0);
	assert_int_equal(vt_wait(t, 10000, &status), 0);
	assert_int_equal(status, 5);
	assert_true(vt_expect(t, &t->log, 0,
			      "error: ucall cpu=0 ASSERT line=42 text=\"tiny.c:42: boom\"",
			      0) >= 0);
	assert_true(vt_expect(t, &t->log, 0, "ucall at gpa 0xfffff000: not in guest RAM", 0) >= 0);
	assert_string_equal(t->serial.buf, "after\n");
}

/* Unassigned MMIO: reads all-ones, writes dropped, logged once. */
static void test_unassigned_mmio(void **state)
{
	struct vt *t = *state;
	struct asm32 a = {0};
	uint8_t elf[8192], zero[16] = {0};
	int status = -1;

	for (int i = 0; i < 3; i++)
		emit_imm(&a, 0xa3, 0xd0000000); /* mov [0xd0000000], eax */
	emit_imm(&a, 0xa1, 0xd0000000);		/* mov eax, [0xd0000000] */
	emit_imm(&a, 0xa3, 0x101000);		/* mov [0x101000], eax */
	/* report what the read returned through isa-debug-exit: 0xff -> 125 */
	emit(&a, "\xba\xf4\x00\x00\x00", 5); /* mov edx, 0xf4 */
	emit(&a, "\xa1\x00\x10\x10\x00", 5); /* mov eax, [0x101000] */
	emit(&a, "\xef", 1);		     /* out dx, eax */
	assert_int_equal(vt_guest_set(t, elf, asm_elf(elf, &a, zero, sizeof(zero))), 0);
	assert_int_equal(vt_spawn(t, 1, NULL, false, NULL), 0);
	assert_int_equal(vt_wait(t, 10000, &status), 0);
	assert_int_equal(status, 125); /* 0xffffffff clamped */
	assert_int_equal(vt_count(&t->log, 0, "unassigned gpa 0xd0000000"), 1);
}

/* A triple fault resets the guest: it boots again, and again. */
static void test_triple_fault_resets(void **state)
{
	static const uint8_t zero_idtr[6] = {0};
	struct vt *t = *state;
	struct asm32 a = {0};
	uint8_t elf[8192];

	emit_print(&a, "boot\n");
	emit(&a, "\x0f\x01\x1d\x00\x10\x10\x00", 7); /* lidt [0x101000]: empty IDT */
	emit(&a, "\x0f\x0b", 2);		     /* ud2: #UD -> #DF -> triple fault */
	assert_int_equal(vt_guest_set(t, elf, asm_elf(elf, &a, zero_idtr, sizeof(zero_idtr))), 0);
	assert_int_equal(vt_spawn(t, 1, NULL, false, NULL), 0);
	if (vt_expect(t, &t->serial, 0, "boot\nboot\nboot\n", 10000) < 0)
		fail_msg("no reboot loop:\nserial: %s\nlog: %s", t->serial.buf, t->log.buf);
	assert_true(vt_expect(t, &t->log, 0, "triple fault: resetting the guest", 0) >= 0);
	assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT), 0);
}

/* SIGTERM: the guest is stopped and the process exits 0. */
static void test_sigterm(void **state)
{
	struct vt *t = *state;
	struct asm32 a = {0};
	uint8_t elf[8192], zero[16] = {0};
	int status = -1;

	emit_print(&a, "up\n");
	emit(&a, "\xeb\xfe", 2); /* jmp $ */
	assert_int_equal(vt_guest_set(t, elf, asm_elf(elf, &a, zero, sizeof(zero))), 0);
	assert_int_equal(vt_spawn(t, 2, NULL, false, NULL), 0);
	assert_true(vt_expect(t, &t->serial, 0, "up\n", 10000) >= 0);
	kill(t->pid, SIGTERM);
	assert_int_equal(vt_wait(t, 5000, &status), 0);
	assert_int_equal(status, 0);
}

/* Each bad command line or fd fails with the documented status and a message. */
static void test_bad_command_lines(void **state)
{
	struct vt *t = *state;
	char ctlfd[16];
	const char *none[] = {NULL};
	const char *bad_ctl[] = {"--ctl-fd", "99", NULL};
	const char *extra_ram[] = {"--ram-fds", ctlfd, NULL};
	const char *zero_vcpus[] = {"--vcpus", "0", NULL};
	const char *too_many[] = {"--vcpus", "2000", NULL};
	const char *bad_fds[] = {"--ram-fds", "3,x", NULL};
	const char *bad_url[] = {"--events", "nosuch://x", NULL};
	const char *stray[] = {"stray", NULL};
	/* The device fd goes with a postcopy link only. */
	const char *lone_uffd_dev[] = {"--userfaultfd-dev-fd", "5", NULL};
	struct {
		const char *const *extra;
		int status;
		const char *msg;
	} cases[] = {
		{none, 0, NULL}, /* sanity: the base command line works */
		{bad_ctl, 126, "control segment fd 99"},
		{extra_ram, 126, "control segment has 1 regions, --ram-fds gave 2"},
		{zero_vcpus, 2, "bad --vcpus '0'"},
		{too_many, 126, "--vcpus 2000: KVM allows 1.."},
		{bad_fds, 2, "bad --ram-fds '3,x'"},
		{bad_url, 126, "events nosuch://x"},
		{stray, 2, "missing or extra arguments"},
		{lone_uffd_dev, 2, "missing or extra arguments"},
	};
	uint8_t elf[4096];

	assert_int_equal(vt_guest_set(t, elf, hello_elf(elf, "", 0, false)), 0);
	snprintf(ctlfd, sizeof(ctlfd), "%d", t->guest_fd); /* a second "RAM" fd */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int status = -1;

		assert_int_equal(vt_spawn(t, 1, NULL, false, cases[i].extra), 0);
		assert_int_equal(vt_wait(t, 10000, &status), 0);
		if (status != cases[i].status ||
		    (cases[i].msg && vt_expect(t, &t->log, 0, cases[i].msg, 0) < 0))
			fail_msg("case %zu: status %d (want %d), log:\n%s", i, status,
				 cases[i].status, t->log.buf ? t->log.buf : "");
	}
}

/*
 * An instruction KVM cannot run: on the PVM host `int n` in ring 0 outside
 * real mode is an emulation failure (docs/GUEST.md), which must end in
 * internal-error, the reason logged and exit 126.  With hardware
 * virtualization the same code triple-faults instead (empty IDT): reset.
 */
static void test_internal_error(void **state)
{
	static const uint8_t zero_idtr[6] = {0};
	struct vt *t = *state;
	struct asm32 a = {0};
	uint8_t elf[8192];
	int status = -1;

	emit_print(&a, "go\n");
	emit(&a, "\x0f\x01\x1d\x00\x10\x10\x00", 7); /* lidt [0x101000]: empty IDT */
	emit(&a, "\xcd\x81", 2);		     /* int 0x81 */
	assert_int_equal(vt_guest_set(t, elf, asm_elf(elf, &a, zero_idtr, sizeof(zero_idtr))), 0);
	assert_int_equal(vt_spawn(t, 1, NULL, false, NULL), 0);
	if (vt_wait(t, 3000, &status) == 0) {
		assert_int_equal(status, 126);
		assert_true(vt_expect(t, &t->log, 0, "KVM_EXIT_INTERNAL_ERROR suberror", 0) >= 0);
		assert_true(vt_expect(t, &t->log, 0, "; internal error", 0) >= 0);
		assert_true(vt_expect(t, &t->log, 0, "rip 0x", 0) >= 0);
	} else {
		assert_true(vt_expect(t, &t->log, 0, "triple fault: resetting", 0) >= 0);
		assert_int_equal(vt_simple(t, CLEAVE__VCPU__METHOD__METHOD_QUIT), 0);
	}
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_hello_poweroff, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exit_code_clamped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incoming_status_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ucalls, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unassigned_mmio, setup, teardown),
		cmocka_unit_test_setup_teardown(test_triple_fault_resets, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sigterm, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_command_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_internal_error, setup, teardown),
	};

	vt_require_kvm();
	binary = argc > 1 ? argv[1] : getenv("CLEAVE_VCPU");
	if (!binary) {
		fprintf(stderr, "usage: %s path/to/cleave-vcpu\n", argv[0]);
		return 1;
	}
	return cmocka_run_group_tests(tests, NULL, NULL);
}
