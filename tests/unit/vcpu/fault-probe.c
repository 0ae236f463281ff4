// SPDX-License-Identifier: GPL-2.0-only
#include <stdio.h>
#include <string.h>

#include "tests/unit/vcpu/fault-probe.h"
#include "vcpu-proc/region.h"

int fault_probe_or_skip(const struct fault_source *src)
{
	struct region_table table;
	struct fault_service *fs;
	int ret;

	region_table_init(&table);
	ret = fault_service_start(&fs, &table, src);
	if (ret) {
		printf("SKIP: no userfaultfd with shmem MISSING faults: %s\n", strerror(-ret));
		region_table_fini(&table);
		return 77;
	}
	fault_service_stop(fs);
	region_table_fini(&table);
	return 0;
}
