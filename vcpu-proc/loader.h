/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Loads a PVH guest: an ELF (32- or 64-bit x86) whose PT_NOTE carries
 * XEN_ELFNOTE_PHYS32_ENTRY.  PT_LOAD segments are copied to their physical
 * addresses (p_paddr), the bss is zeroed, and a struct hvm_start_info with
 * the command line and the memory map is written at LOADER_START_INFO.  The
 * BSP then starts at the entry in 32-bit protected mode, paging off, flat
 * segments, EBX = LOADER_START_INFO (see docs/GUEST.md and vcpu-proc/vm.c).
 *
 * Boot-info area, reserved for the VMM, the guest must not load there:
 *   0x6000  struct hvm_start_info (56 bytes)
 *   0x6040  memmap: one hvm_memmap_table_entry per RAM region
 *   0x7000  command line, NUL-terminated, at most LOADER_CMDLINE_MAX bytes
 */
#ifndef CLEAVE_VCPU_LOADER_H
#define CLEAVE_VCPU_LOADER_H

#include <stddef.h>
#include <stdint.h>

#define LOADER_BOOT_AREA   0x6000u
#define LOADER_BOOT_END	   0x8000u
#define LOADER_START_INFO  0x6000u
#define LOADER_MEMMAP	   0x6040u
#define LOADER_CMDLINE	   0x7000u
#define LOADER_CMDLINE_MAX 4096u /* including the NUL */
#define LOADER_ERR_LEN	   160

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC		 0x336ec578u
#define HVM_MEMMAP_TYPE_RAM	 1

/* Xen's public ABI (xen/include/public/arch-x86/hvm/start_info.h), version 1. */
struct hvm_start_info {
	uint32_t magic;		 /* HVM_START_MAGIC */
	uint32_t version;	 /* 1: memmap fields present */
	uint32_t flags;		 /* SIF_*: none */
	uint32_t nr_modules;	 /* no modules */
	uint64_t modlist_paddr;	 /* 0 */
	uint64_t cmdline_paddr;	 /* LOADER_CMDLINE */
	uint64_t rsdp_paddr;	 /* 0: no ACPI */
	uint64_t memmap_paddr;	 /* LOADER_MEMMAP */
	uint32_t memmap_entries; /* number of RAM regions */
	uint32_t reserved;	 /* 0 */
};

struct hvm_memmap_table_entry {
	uint64_t addr;	   /* guest-physical base */
	uint64_t size;	   /* bytes */
	uint32_t type;	   /* HVM_MEMMAP_TYPE_RAM */
	uint32_t reserved; /* 0 */
};

/* A RAM region as the loader sees it: where it is and where it is mapped. */
struct loader_ram {
	uint64_t gpa;
	uint64_t size;
	void *hva;
};

/* Where the BSP starts. */
struct loader_boot {
	uint32_t entry;	     /* XEN_ELFNOTE_PHYS32_ENTRY */
	uint32_t start_info; /* LOADER_START_INFO, goes in EBX */
};

/*
 * Validates @elf (@size bytes) against the RAM layout without writing
 * anything.  Returns 0 with *boot filled in, or -ENOEXEC with a message
 * naming what is wrong in @err ("segment 1 at 0x... is outside guest RAM").
 */
int loader_check(const void *elf, size_t size, const struct loader_ram *ram, unsigned int nr_ram,
		 struct loader_boot *boot, char *err, size_t errlen);

/*
 * loader_check(), then copies the segments, zeroes their bss and writes the
 * boot-info area with @cmdline (NULL = empty).  -E2BIG if @cmdline is too
 * long.  The caller holds every region so nobody else changes it.
 */
int loader_load(const void *elf, size_t size, const struct loader_ram *ram, unsigned int nr_ram,
		const char *cmdline, struct loader_boot *boot, char *err, size_t errlen);

#endif
