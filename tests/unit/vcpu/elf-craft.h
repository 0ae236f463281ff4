/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Builds small PVH ELF images in memory for the vcpu-proc tests: good ones
 * around a few bytes of 32-bit code, and broken ones on purpose.
 */
#ifndef CLEAVE_TEST_ELF_CRAFT_H
#define CLEAVE_TEST_ELF_CRAFT_H

#include <elf.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ELF_CRAFT_MAX_SEGS 4

struct elf_craft_seg {
	uint64_t paddr;
	const void *data;
	uint64_t filesz;
	uint64_t memsz;
};

struct elf_craft {
	bool is64;	       /* ELFCLASS64/EM_X86_64, else ELFCLASS32/EM_386 */
	uint16_t machine;      /* 0: the right one for the class */
	bool no_note;	       /* leave out the PVH entry note */
	uint32_t note_type;    /* 0: XEN_ELFNOTE_PHYS32_ENTRY */
	uint32_t entry;	       /* PHYS32_ENTRY value */
	uint32_t entry_hi;     /* upper half when note_descsz is 8 */
	uint32_t note_descsz;  /* 0: 4 */
	const char *note_name; /* 0: "Xen" (3 chars + NUL) */
	unsigned int nr_segs;
	struct elf_craft_seg segs[ELF_CRAFT_MAX_SEGS];
};

/* Writes the image into @buf (at least elf_craft_size() bytes); returns its size. */
static inline size_t elf_craft_size(const struct elf_craft *c)
{
	size_t sz = sizeof(Elf64_Ehdr) + (c->nr_segs + 1) * sizeof(Elf64_Phdr) + 64;

	for (unsigned int i = 0; i < c->nr_segs; i++)
		sz += c->segs[i].filesz;
	return sz;
}

static inline size_t elf_craft_build(const struct elf_craft *c, uint8_t *buf)
{
	size_t ehsz = c->is64 ? sizeof(Elf64_Ehdr) : sizeof(Elf32_Ehdr);
	size_t phsz = c->is64 ? sizeof(Elf64_Phdr) : sizeof(Elf32_Phdr);
	unsigned int phnum = c->nr_segs + (c->no_note ? 0 : 1);
	uint32_t descsz = c->note_descsz ? c->note_descsz : 4;
	size_t note_off = ehsz + phnum * phsz, note_sz = 12 + 4 + ((descsz + 3) & ~3u);
	size_t off = note_off + (c->no_note ? 0 : note_sz);
	uint16_t machine = c->machine ? c->machine : (c->is64 ? EM_X86_64 : EM_386);
	unsigned int ph = 0;

	memset(buf, 0, elf_craft_size(c));
	if (c->is64) {
		Elf64_Ehdr h = {.e_type = ET_EXEC,
				.e_machine = machine,
				.e_version = EV_CURRENT,
				.e_entry = c->entry,
				.e_phoff = ehsz,
				.e_ehsize = (uint16_t)ehsz,
				.e_phentsize = (uint16_t)phsz,
				.e_phnum = (uint16_t)phnum};

		memcpy(h.e_ident, ELFMAG, SELFMAG);
		h.e_ident[EI_CLASS] = ELFCLASS64;
		h.e_ident[EI_DATA] = ELFDATA2LSB;
		h.e_ident[EI_VERSION] = EV_CURRENT;
		memcpy(buf, &h, sizeof(h));
	} else {
		Elf32_Ehdr h = {.e_type = ET_EXEC,
				.e_machine = machine,
				.e_version = EV_CURRENT,
				.e_entry = c->entry,
				.e_phoff = (uint32_t)ehsz,
				.e_ehsize = (uint16_t)ehsz,
				.e_phentsize = (uint16_t)phsz,
				.e_phnum = (uint16_t)phnum};

		memcpy(h.e_ident, ELFMAG, SELFMAG);
		h.e_ident[EI_CLASS] = ELFCLASS32;
		h.e_ident[EI_DATA] = ELFDATA2LSB;
		h.e_ident[EI_VERSION] = EV_CURRENT;
		memcpy(buf, &h, sizeof(h));
	}
	for (unsigned int i = 0; i < c->nr_segs + (c->no_note ? 0 : 1); i++) {
		bool note = !c->no_note && i == c->nr_segs;
		const struct elf_craft_seg *s = note ? NULL : &c->segs[i];
		uint32_t type = note ? PT_NOTE : PT_LOAD;
		uint64_t o = note ? note_off : off, pa = note ? 0 : s->paddr;
		uint64_t fsz = note ? note_sz : s->filesz, msz = note ? 0 : s->memsz;

		if (c->is64) {
			Elf64_Phdr p = {.p_type = type,
					.p_offset = o,
					.p_vaddr = pa,
					.p_paddr = pa,
					.p_filesz = fsz,
					.p_memsz = msz,
					.p_align = 4,
					.p_flags = PF_R | PF_X};
			memcpy(buf + ehsz + ph * phsz, &p, sizeof(p));
		} else {
			Elf32_Phdr p = {.p_type = type,
					.p_offset = (uint32_t)o,
					.p_vaddr = (uint32_t)pa,
					.p_paddr = (uint32_t)pa,
					.p_filesz = (uint32_t)fsz,
					.p_memsz = (uint32_t)msz,
					.p_align = 4,
					.p_flags = PF_R | PF_X};
			memcpy(buf + ehsz + ph * phsz, &p, sizeof(p));
		}
		ph++;
		if (!note) {
			if (s->data)
				memcpy(buf + off, s->data, s->filesz);
			off += s->filesz;
		}
	}
	if (!c->no_note) {
		Elf32_Nhdr n = {.n_namesz = 4,
				.n_descsz = descsz,
				.n_type = c->note_type ? c->note_type : 18};
		uint64_t v = ((uint64_t)c->entry_hi << 32) | c->entry;

		memcpy(buf + note_off, &n, sizeof(n));
		memcpy(buf + note_off + 12, c->note_name ? c->note_name : "Xen", 4);
		memcpy(buf + note_off + 16, &v, descsz < 8 ? descsz : 8);
	}
	return off;
}

/*
 * 32-bit code that prints @msg on COM1 and powers off with @code through
 * isa-debug-exit.  Returns its length; @out needs 8 * strlen(msg) + 16 bytes.
 */
static inline size_t elf_craft_hello(uint8_t *out, const char *msg, uint8_t code)
{
	size_t n = 0;

	out[n++] = 0x66; /* mov dx, 0x3f8 */
	out[n++] = 0xba;
	out[n++] = 0xf8;
	out[n++] = 0x03;
	for (const char *p = msg; *p; p++) {
		out[n++] = 0xb0; /* mov al, imm8 */
		out[n++] = (uint8_t)*p;
		out[n++] = 0xee; /* out dx, al */
	}
	out[n++] = 0x66; /* mov dx, 0xf4 */
	out[n++] = 0xba;
	out[n++] = 0xf4;
	out[n++] = 0x00;
	out[n++] = 0xb0;
	out[n++] = code;
	out[n++] = 0xee;
	out[n++] = 0xf4; /* hlt */
	out[n++] = 0xeb; /* jmp $-1 */
	out[n++] = 0xfd;
	return n;
}

#endif
