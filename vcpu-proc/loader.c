// SPDX-License-Identifier: GPL-2.0-only
#include <assert.h>
#include <elf.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "vcpu-proc/loader.h"

_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info ABI");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "memmap entry ABI");

/* A program header of either class, widened. */
struct loader_phdr {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz, align;
};

struct loader_elf {
	const uint8_t *data;
	size_t size;
	bool is64;
	unsigned int phnum;
	uint64_t phoff;
};

static int loader_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int loader_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -ENOEXEC;
}

/* [off, off + len) inside a buffer of @size bytes, without overflow. */
static bool loader_in_file(uint64_t off, uint64_t len, size_t size)
{
	return off <= size && len <= size - off;
}

static int loader_parse_header(struct loader_elf *e, const void *elf, size_t size, char *err,
			       size_t errlen)
{
	const unsigned char *id = elf;
	uint16_t machine, phentsize;

	e->data = elf;
	e->size = size;
	if (size < EI_NIDENT || memcmp(id, ELFMAG, SELFMAG) != 0)
		return loader_fail(err, errlen, "not an ELF file (bad magic)");
	if (id[EI_CLASS] != ELFCLASS32 && id[EI_CLASS] != ELFCLASS64)
		return loader_fail(err, errlen, "unsupported ELF class %u", id[EI_CLASS]);
	if (id[EI_DATA] != ELFDATA2LSB)
		return loader_fail(err, errlen, "not a little-endian ELF");
	e->is64 = id[EI_CLASS] == ELFCLASS64;
	if (size < (e->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr)))
		return loader_fail(err, errlen, "truncated ELF header (%zu bytes)", size);
	if (e->is64) {
		Elf64_Ehdr h;

		memcpy(&h, elf, sizeof(h));
		machine = h.e_machine;
		phentsize = h.e_phentsize;
		e->phnum = h.e_phnum;
		e->phoff = h.e_phoff;
		if (machine != EM_X86_64)
			return loader_fail(err, errlen, "wrong machine %u for ELF64 (want x86-64)",
					   machine);
		if (phentsize != sizeof(Elf64_Phdr))
			return loader_fail(err, errlen, "bad program header size %u", phentsize);
	} else {
		Elf32_Ehdr h;

		memcpy(&h, elf, sizeof(h));
		machine = h.e_machine;
		phentsize = h.e_phentsize;
		e->phnum = h.e_phnum;
		e->phoff = h.e_phoff;
		if (machine != EM_386)
			return loader_fail(err, errlen, "wrong machine %u for ELF32 (want i386)",
					   machine);
		if (phentsize != sizeof(Elf32_Phdr))
			return loader_fail(err, errlen, "bad program header size %u", phentsize);
	}
	if (e->phnum == 0)
		return loader_fail(err, errlen, "no program headers");
	if (!loader_in_file(e->phoff, (uint64_t)e->phnum * phentsize, size))
		return loader_fail(err, errlen, "truncated file: program headers past end of file");
	return 0;
}

static void loader_get_phdr(const struct loader_elf *e, unsigned int i, struct loader_phdr *p)
{
	if (e->is64) {
		Elf64_Phdr h;

		memcpy(&h, e->data + e->phoff + (uint64_t)i * sizeof(h), sizeof(h));
		*p = (struct loader_phdr){h.p_type,   h.p_offset, h.p_paddr,
					  h.p_filesz, h.p_memsz,  h.p_align};
	} else {
		Elf32_Phdr h;

		memcpy(&h, e->data + e->phoff + (uint64_t)i * sizeof(h), sizeof(h));
		*p = (struct loader_phdr){h.p_type,   h.p_offset, h.p_paddr,
					  h.p_filesz, h.p_memsz,  h.p_align};
	}
}

static uint64_t loader_align(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Looks for the PVH entry note in one PT_NOTE segment: 1 found, 0 not, <0 bad. */
static int loader_find_entry(const struct loader_elf *e, const struct loader_phdr *p,
			     uint32_t *entry, char *err, size_t errlen)
{
	uint64_t align = p->align == 8 ? 8 : 4;
	uint64_t off = 0;

	if (!loader_in_file(p->offset, p->filesz, e->size))
		return loader_fail(err, errlen, "truncated file: note segment past end of file");
	while (off + sizeof(Elf32_Nhdr) <= p->filesz) {
		Elf32_Nhdr n;
		uint64_t name_off, desc_off;

		memcpy(&n, e->data + p->offset + off, sizeof(n));
		name_off = off + sizeof(n);
		desc_off = name_off + loader_align(n.n_namesz, align);
		if (desc_off > p->filesz || n.n_descsz > p->filesz - desc_off)
			return loader_fail(err, errlen, "malformed note at offset 0x%" PRIx64,
					   p->offset + off);
		if (n.n_type == XEN_ELFNOTE_PHYS32_ENTRY && n.n_namesz == 4 &&
		    memcmp(e->data + p->offset + name_off, "Xen", 4) == 0) {
			uint64_t v = 0;

			if (n.n_descsz != 4 && n.n_descsz != 8)
				return loader_fail(err, errlen,
						   "PHYS32_ENTRY note has %u-byte value",
						   n.n_descsz);
			memcpy(&v, e->data + p->offset + desc_off, n.n_descsz);
			if (v > UINT32_MAX)
				return loader_fail(err, errlen,
						   "PHYS32_ENTRY 0x%" PRIx64 " above 4 GiB", v);
			*entry = (uint32_t)v;
			return 1;
		}
		off = desc_off + loader_align(n.n_descsz, align);
	}
	return 0;
}

static const struct loader_ram *loader_ram_find(const struct loader_ram *ram, unsigned int nr,
						uint64_t gpa, uint64_t len)
{
	for (unsigned int i = 0; i < nr; i++) {
		if (gpa >= ram[i].gpa && len <= ram[i].size &&
		    gpa - ram[i].gpa <= ram[i].size - len)
			return &ram[i];
	}
	return NULL;
}

int loader_check(const void *elf, size_t size, const struct loader_ram *ram, unsigned int nr_ram,
		 struct loader_boot *boot, char *err, size_t errlen)
{
	struct loader_elf e;
	bool have_entry = false, entry_loaded = false;
	uint32_t entry = 0;
	unsigned int nr_load = 0;
	int ret;

	if (!loader_ram_find(ram, nr_ram, LOADER_BOOT_AREA, LOADER_BOOT_END - LOADER_BOOT_AREA))
		return loader_fail(err, errlen, "guest RAM does not cover the boot-info area");
	ret = loader_parse_header(&e, elf, size, err, errlen);
	if (ret)
		return ret;
	for (unsigned int i = 0; i < e.phnum && !have_entry; i++) {
		struct loader_phdr p;

		loader_get_phdr(&e, i, &p);
		if (p.type != PT_NOTE)
			continue;
		ret = loader_find_entry(&e, &p, &entry, err, errlen);
		if (ret < 0)
			return ret;
		have_entry = ret == 1;
	}
	if (!have_entry)
		return loader_fail(err, errlen, "no PVH entry note (Xen PHYS32_ENTRY) found");

	for (unsigned int i = 0; i < e.phnum; i++) {
		struct loader_phdr p;

		loader_get_phdr(&e, i, &p);
		if (p.type != PT_LOAD || p.memsz == 0)
			continue;
		nr_load++;
		if (p.filesz > p.memsz)
			return loader_fail(err, errlen,
					   "segment %u: file size 0x%" PRIx64
					   " exceeds memory size 0x%" PRIx64,
					   i, p.filesz, p.memsz);
		if (!loader_in_file(p.offset, p.filesz, size))
			return loader_fail(err, errlen,
					   "truncated file: segment %u needs bytes up to 0x%" PRIx64
					   ", file has 0x%zx",
					   i, p.offset + p.filesz, size);
		if (p.paddr + p.memsz < p.paddr || !loader_ram_find(ram, nr_ram, p.paddr, p.memsz))
			return loader_fail(err, errlen,
					   "segment %u at 0x%" PRIx64 "-0x%" PRIx64
					   " is outside guest RAM",
					   i, p.paddr, p.paddr + p.memsz);
		if (p.paddr < LOADER_BOOT_END && p.paddr + p.memsz > LOADER_BOOT_AREA)
			return loader_fail(err, errlen,
					   "segment %u at 0x%" PRIx64 "-0x%" PRIx64
					   " overlaps the boot-info area 0x%x-0x%x",
					   i, p.paddr, p.paddr + p.memsz, LOADER_BOOT_AREA,
					   LOADER_BOOT_END);
		if (entry >= p.paddr && entry < p.paddr + p.memsz)
			entry_loaded = true;
	}
	if (nr_load == 0)
		return loader_fail(err, errlen, "no loadable segment");
	if (!entry_loaded)
		return loader_fail(err, errlen, "entry 0x%x is not inside a loaded segment", entry);
	boot->entry = entry;
	boot->start_info = LOADER_START_INFO;
	return 0;
}

static void *loader_hva(const struct loader_ram *ram, unsigned int nr, uint64_t gpa, uint64_t len)
{
	const struct loader_ram *r = loader_ram_find(ram, nr, gpa, len);

	assert(r); /* loader_check() verified every range */
	return (char *)r->hva + (gpa - r->gpa);
}

int loader_load(const void *elf, size_t size, const struct loader_ram *ram, unsigned int nr_ram,
		const char *cmdline, struct loader_boot *boot, char *err, size_t errlen)
{
	struct hvm_start_info si = {0};
	struct hvm_memmap_table_entry *mm;
	struct loader_elf e;
	size_t cmdlen = cmdline ? strlen(cmdline) : 0;
	int ret;

	ret = loader_check(elf, size, ram, nr_ram, boot, err, errlen);
	if (ret)
		return ret;
	if (cmdlen >= LOADER_CMDLINE_MAX) {
		snprintf(err, errlen, "command line too long (%zu bytes, at most %u)", cmdlen,
			 LOADER_CMDLINE_MAX - 1);
		return -E2BIG;
	}
	if (nr_ram * sizeof(*mm) > LOADER_CMDLINE - LOADER_MEMMAP) {
		snprintf(err, errlen, "too many RAM regions (%u)", nr_ram);
		return -E2BIG;
	}
	loader_parse_header(&e, elf, size, NULL, 0);
	for (unsigned int i = 0; i < e.phnum; i++) {
		struct loader_phdr p;
		char *dst;

		loader_get_phdr(&e, i, &p);
		if (p.type != PT_LOAD || p.memsz == 0)
			continue;
		dst = loader_hva(ram, nr_ram, p.paddr, p.memsz);
		memcpy(dst, e.data + p.offset, p.filesz);
		memset(dst + p.filesz, 0, p.memsz - p.filesz);
	}

	memset(loader_hva(ram, nr_ram, LOADER_BOOT_AREA, LOADER_BOOT_END - LOADER_BOOT_AREA), 0,
	       LOADER_BOOT_END - LOADER_BOOT_AREA);
	mm = loader_hva(ram, nr_ram, LOADER_MEMMAP, nr_ram * sizeof(*mm));
	for (unsigned int i = 0; i < nr_ram; i++) {
		struct hvm_memmap_table_entry ent = {ram[i].gpa, ram[i].size, HVM_MEMMAP_TYPE_RAM,
						     0};

		memcpy(&mm[i], &ent, sizeof(ent));
	}
	memcpy(loader_hva(ram, nr_ram, LOADER_CMDLINE, cmdlen + 1), cmdline ? cmdline : "",
	       cmdlen + 1);
	si.magic = HVM_START_MAGIC;
	si.version = 1;
	si.cmdline_paddr = LOADER_CMDLINE;
	si.memmap_paddr = LOADER_MEMMAP;
	si.memmap_entries = nr_ram;
	memcpy(loader_hva(ram, nr_ram, LOADER_START_INFO, sizeof(si)), &si, sizeof(si));
	return 0;
}
