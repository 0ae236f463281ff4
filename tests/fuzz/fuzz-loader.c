// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: a guest image for vcpu-proc's PVH/ELF loader, bytes in.
 * loader_check() validates it against a RAM layout like cleave's (low RAM
 * with the boot-info area, and a region above 4 GiB); an image it accepts
 * is then loaded into plain buffers standing in for guest RAM (no KVM).
 * Property: an accepted image loads, with its entry inside guest RAM.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu-proc/loader.h"

#define FUZZ_LOW_RAM  (2u << 20)
#define FUZZ_HIGH_RAM (64u << 10)
#define FUZZ_HIGH_GPA (4ull << 30)

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct loader_ram fuzz_ram[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	fuzz_ram[0] = (struct loader_ram){0, FUZZ_LOW_RAM, malloc(FUZZ_LOW_RAM)};
	fuzz_ram[1] = (struct loader_ram){FUZZ_HIGH_GPA, FUZZ_HIGH_RAM, malloc(FUZZ_HIGH_RAM)};
	if (!fuzz_ram[0].hva || !fuzz_ram[1].hva)
		abort();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct loader_boot boot;
	char err[LOADER_ERR_LEN];
	int ret;

	if (loader_check(data, size, fuzz_ram, 2, &boot, err, sizeof(err)))
		return 0;
	ret = loader_load(data, size, fuzz_ram, 2, "console=ttyS0 mode=fuzz", &boot, err,
			  sizeof(err));
	if (ret) {
		fprintf(stderr, "fuzz-loader: checked image fails to load: %s\n", err);
		abort();
	}
	if (boot.entry >= FUZZ_LOW_RAM || boot.start_info != LOADER_START_INFO) {
		fprintf(stderr, "fuzz-loader: entry 0x%x outside the RAM below 4 GiB\n",
			boot.entry);
		abort();
	}
	return 0;
}
