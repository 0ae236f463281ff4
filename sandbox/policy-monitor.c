// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-monitor after init: its QMP listening sockets are inherited or
 * bound, the signalfd exists, NNG dialers to vcpu-proc and the migrator are
 * set up.  It accepts QMP clients, speaks JSON, and sends RPCs.  It never
 * holds guest RAM or a memfd: no memfd_create, no shared mappings, and only
 * AF_UNIX sockets (QMP TCP listeners come from the launcher).
 */
#include "sandbox/policy-internal.h"

static const struct sandbox_rule monitor_rules[] = {
	ALLOW("signalfd4", "re-arming the stop-signal fd"),
};
static const struct sandbox_table monitor_table = SANDBOX_TABLE("monitor", monitor_rules);

const struct sandbox_policy sandbox_policy_monitor = {
	.name = "cleave-monitor",
	.tables = {&sandbox_table_base, &sandbox_table_mmap_private, &sandbox_table_nng,
		   &monitor_table},
};
