/* SPDX-License-Identifier: GPL-2.0-only */
/* Reading a MigrationInfo reply (migrator.proto) for the monitor, tests and benches. */
#ifndef CLEAVE_PROTO_MIGRATOR_INFO_H
#define CLEAVE_PROTO_MIGRATOR_INFO_H

#include <stdint.h>
#include <string.h>

#include "proto/migrator.pb-c.h"

/* The counter @name of the session record (migrator/record.h, MIG_COUNTERS); 0 when absent. */
static inline uint64_t mig_info_counter(const Cleave__Migrator__MigrationInfo *mi, const char *name)
{
	for (size_t i = 0; i < mi->n_counters; i++)
		if (mi->counters[i]->name && !strcmp(mi->counters[i]->name, name))
			return mi->counters[i]->value;
	return 0;
}

#endif
