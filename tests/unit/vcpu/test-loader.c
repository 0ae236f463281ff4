// SPDX-License-Identifier: GPL-2.0-only
/* PVH ELF loader: good images land where they should; every bad one is named. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elf-craft.h"
#include "vcpu-proc/loader.h"

#define RAM_SIZE (4u << 20)

static uint8_t code[256];

struct fixture {
	uint8_t *ram0, *ram1;
	struct loader_ram ram[2];
	uint8_t elf[8192];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->ram0 = calloc(1, RAM_SIZE);
	f->ram1 = calloc(1, RAM_SIZE);
	assert_non_null(f->ram0);
	assert_non_null(f->ram1);
	f->ram[0] = (struct loader_ram){0, RAM_SIZE, f->ram0};
	f->ram[1] = (struct loader_ram){4ull << 30, RAM_SIZE, f->ram1};
	for (size_t i = 0; i < sizeof(code); i++)
		code[i] = (uint8_t)(i * 7 + 1);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	free(f->ram0);
	free(f->ram1);
	free(f);
	return 0;
}

static struct elf_craft good(bool is64)
{
	struct elf_craft c = {.is64 = is64, .entry = 0x100010, .nr_segs = 2};

	c.segs[0] = (struct elf_craft_seg){0x100000, code, sizeof(code), sizeof(code) + 8192};
	/* ELF32 cannot name addresses above 4 GiB */
	c.segs[1] = (struct elf_craft_seg){is64 ? (4ull << 30) + 0x1000 : 0x201000, code, 16, 16};
	return c;
}

static void test_good_image_loads(void **state)
{
	struct fixture *f = *state;

	for (int is64 = 0; is64 < 2; is64++) {
		struct elf_craft c = good(is64);
		size_t len = elf_craft_build(&c, f->elf);
		struct loader_boot boot = {0};
		struct hvm_start_info si;
		struct hvm_memmap_table_entry mm[2];
		char err[LOADER_ERR_LEN] = "";

		memset(f->ram0 + 0x100000, 0xaa, sizeof(code) + 8192);
		assert_int_equal(loader_load(f->elf, len, f->ram, 2, "mode=idle cpus=2", &boot, err,
					     sizeof(err)),
				 0);
		assert_int_equal(boot.entry, 0x100010);
		assert_int_equal(boot.start_info, LOADER_START_INFO);
		assert_memory_equal(f->ram0 + 0x100000, code, sizeof(code));
		for (size_t i = sizeof(code); i < sizeof(code) + 8192; i++)
			assert_int_equal(f->ram0[0x100000 + i], 0); /* bss zeroed */
		assert_memory_equal((is64 ? f->ram1 : f->ram0 + 0x200000) + 0x1000, code, 16);
		memcpy(&si, f->ram0 + LOADER_START_INFO, sizeof(si));
		assert_int_equal(si.magic, HVM_START_MAGIC);
		assert_int_equal(si.version, 1);
		assert_int_equal(si.cmdline_paddr, LOADER_CMDLINE);
		assert_int_equal(si.memmap_paddr, LOADER_MEMMAP);
		assert_int_equal(si.memmap_entries, 2);
		assert_int_equal(si.nr_modules, 0);
		assert_string_equal((char *)f->ram0 + LOADER_CMDLINE, "mode=idle cpus=2");
		memcpy(mm, f->ram0 + LOADER_MEMMAP, sizeof(mm));
		assert_int_equal(mm[0].addr, 0);
		assert_int_equal(mm[0].size, RAM_SIZE);
		assert_int_equal(mm[0].type, HVM_MEMMAP_TYPE_RAM);
		assert_int_equal(mm[1].addr, 4ull << 30);
		assert_int_equal(mm[1].type, HVM_MEMMAP_TYPE_RAM);
	}
}

static void test_cmdline_too_long(void **state)
{
	struct fixture *f = *state;
	struct elf_craft c = good(false);
	size_t len = elf_craft_build(&c, f->elf);
	char *cmd = malloc(LOADER_CMDLINE_MAX + 1);
	struct loader_boot boot;
	char err[LOADER_ERR_LEN] = "";

	memset(cmd, 'x', LOADER_CMDLINE_MAX);
	cmd[LOADER_CMDLINE_MAX] = '\0';
	assert_int_equal(loader_load(f->elf, len, f->ram, 2, cmd, &boot, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "command line too long"));
	cmd[LOADER_CMDLINE_MAX - 1] = '\0'; /* exactly fits with its NUL */
	assert_int_equal(loader_load(f->elf, len, f->ram, 2, cmd, &boot, err, sizeof(err)), 0);
	free(cmd);
}

/* Ways to break an image after it is built. */
enum corrupt {
	C_NONE,
	C_MAGIC,
	C_CLASS,
	C_BIG_ENDIAN,
	C_PHENTSIZE,
	C_PHOFF,
	C_NOTE_DESCSZ_HUGE,
};

struct bad_case {
	const char *name;
	struct elf_craft c;
	enum corrupt corrupt;
	size_t truncate; /* keep this many bytes (0: all) */
	const char *msg;
};

static void corrupt(uint8_t *elf, const struct elf_craft *c, enum corrupt how)
{
	size_t ehsz = c->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsz = c->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	uint32_t big = 0x10000;

	switch (how) {
	case C_MAGIC:
		elf[1] = 'X';
		break;
	case C_CLASS:
		elf[EI_CLASS] = 3;
		break;
	case C_BIG_ENDIAN:
		elf[EI_DATA] = ELFDATA2MSB;
		break;
	case C_PHENTSIZE:
		elf[c->is64 ? offsetof(Elf64_Ehdr, e_phentsize)
			    : offsetof(Elf32_Ehdr, e_phentsize)] = 7;
		break;
	case C_PHOFF:
		if (c->is64)
			memset(elf + offsetof(Elf64_Ehdr, e_phoff), 0x7f, 8);
		else
			memset(elf + offsetof(Elf32_Ehdr, e_phoff), 0x7f, 4);
		break;
	case C_NOTE_DESCSZ_HUGE:
		/* The note header follows the program headers (one note, last). */
		memcpy(elf + ehsz + (c->nr_segs + 1) * phsz + 4, &big, 4);
		break;
	case C_NONE:
		break;
	}
}

static void test_bad_images(void **state)
{
	struct fixture *f = *state;
	const struct elf_craft_seg seg = {0x100000, code, sizeof(code), sizeof(code)};
	struct bad_case cases[] = {
		{"empty", {.nr_segs = 1, .entry = 0x100000}, C_NONE, 3, "not an ELF file"},
		{"bad magic", {.nr_segs = 1, .entry = 0x100000}, C_MAGIC, 0, "not an ELF file"},
		{"class 3",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_CLASS,
		 0,
		 "unsupported ELF class 3"},
		{"big endian", {.nr_segs = 1, .entry = 0x100000}, C_BIG_ENDIAN, 0, "little-endian"},
		{"short header",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 40,
		 "truncated ELF header"},
		{"elf32 x86-64",
		 {.machine = EM_X86_64, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "wrong machine 62 for ELF32"},
		{"elf64 i386",
		 {.is64 = true, .machine = EM_386, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "wrong machine 3 for ELF64"},
		{"elf64 arm",
		 {.is64 = true, .machine = EM_AARCH64, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "wrong machine 183"},
		{"phentsize",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_PHENTSIZE,
		 0,
		 "bad program header size"},
		{"phoff",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_PHOFF,
		 0,
		 "program headers past end of file"},
		{"no note",
		 {.no_note = true, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "no PVH entry note"},
		{"other note type",
		 {.note_type = 5, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "no PVH entry note"},
		{"other note name",
		 {.note_name = "GNU", .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "no PVH entry note"},
		{"note desc size 2",
		 {.note_descsz = 2, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "PHYS32_ENTRY note has 2-byte value"},
		{"entry above 4G",
		 {.note_descsz = 8, .entry_hi = 1, .nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0,
		 "above 4 GiB"},
		{"malformed note",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_NOTE_DESCSZ_HUGE,
		 0,
		 "malformed note"},
		{"no PT_LOAD", {.nr_segs = 0, .entry = 0x100000}, C_NONE, 0, "no loadable segment"},
		{"filesz > memsz",
		 {.nr_segs = 2, .entry = 0x100000, .segs[1] = {0x200000, code, 64, 32}},
		 C_NONE,
		 0,
		 "segment 1: file size 0x40 exceeds memory size 0x20"},
		{"truncated segment",
		 {.nr_segs = 1, .entry = 0x100000},
		 C_NONE,
		 0x90,
		 "truncated file: segment 0"},
		{"beyond RAM",
		 {.nr_segs = 2, .entry = 0x100000, .segs[1] = {RAM_SIZE - 8, code, 8, 16}},
		 C_NONE,
		 0,
		 "segment 1 at 0x3ffff8-0x400008 is outside guest RAM"},
		{"in the hole",
		 {.nr_segs = 2, .entry = 0x100000, .segs[1] = {0x80000000, code, 8, 8}},
		 C_NONE,
		 0,
		 "outside guest RAM"},
		{"wraps",
		 {.nr_segs = 2, .entry = 0x100000, .segs[1] = {~0ull - 4, NULL, 0, 16}},
		 C_NONE,
		 0,
		 "outside guest RAM"},
		{"boot area",
		 {.nr_segs = 2, .entry = 0x100000, .segs[1] = {0x7ff0, code, 8, 32}},
		 C_NONE,
		 0,
		 "overlaps the boot-info area"},
		{"entry outside",
		 {.nr_segs = 1, .entry = 0x300000},
		 C_NONE,
		 0,
		 "entry 0x300000 is not inside a loaded segment"},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct bad_case *bc = &cases[i];
		struct loader_boot boot;
		char err[LOADER_ERR_LEN] = "";
		size_t len;
		int ret;

		if (bc->c.nr_segs)
			bc->c.segs[0] = seg;
		len = elf_craft_build(&bc->c, f->elf);
		corrupt(f->elf, &bc->c, bc->corrupt);
		if (bc->truncate)
			len = bc->truncate;
		ret = loader_check(f->elf, len, f->ram, 2, &boot, err, sizeof(err));
		if (ret != -ENOEXEC || !strstr(err, bc->msg))
			fail_msg("case '%s': ret %d, error '%s', wanted '%s'", bc->name, ret, err,
				 bc->msg);
		/* load refuses the same way and writes nothing */
		f->ram0[0x100000] = 0x5a;
		assert_int_equal(loader_load(f->elf, len, f->ram, 2, "", &boot, err, sizeof(err)),
				 -ENOEXEC);
		assert_int_equal(f->ram0[0x100000], 0x5a);
	}
}

static void test_ram_without_boot_area(void **state)
{
	struct fixture *f = *state;
	struct elf_craft c = good(false);
	size_t len = elf_craft_build(&c, f->elf);
	struct loader_ram high_only = {4ull << 30, RAM_SIZE, f->ram1};
	struct loader_boot boot;
	char err[LOADER_ERR_LEN] = "";

	assert_int_equal(loader_check(f->elf, len, &high_only, 1, &boot, err, sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "boot-info area"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_good_image_loads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cmdline_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_images, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ram_without_boot_area, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
