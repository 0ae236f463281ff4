/* SPDX-License-Identifier: GPL-2.0-only */
/* CLEAVE_MIG_TEST_HOOKS (test-hooks.h): compiled into fault-injection builds only. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "migrator/test-hooks.h"

void mig_hooks_from_env(struct mig_hooks *hooks)
{
	const char *env = getenv("CLEAVE_MIG_TEST_HOOKS");
	char *list, *tok, *save;
	unsigned int v;

	if (!env || !*env)
		return;
	list = strdupa(env);
	for (tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (sscanf(tok, "switchover_delay_ms=%u", &v) == 1)
			hooks->switchover_delay_ms = v;
		else if (sscanf(tok, "ram_hash=%u", &v) == 1)
			hooks->ram_hash = v;
		else if (sscanf(tok, "chunk_delay_us=%u", &v) == 1)
			hooks->chunk_delay_us = v;
		else
			log_warn("CLEAVE_MIG_TEST_HOOKS: unknown hook '%s'", tok);
	}
	log_warn("test hooks active: %s", env);
}
