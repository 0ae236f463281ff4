// SPDX-License-Identifier: GPL-2.0-only
/*
 * Reports to the host: ucalls (guest/ucall.h), assertion failures and
 * power-off through isa-debug-exit.
 */
#include "guest.h"

#define EXIT_CODE_FAIL 3

void ucall(struct gcpu *c, uint64_t cmd, const uint64_t *args, int nargs, const char *text)
{
	struct ucall *uc = &c->uc;

	memset(uc, 0, sizeof(*uc));
	uc->cmd = cmd;
	uc->cpu = c->idx;
	for (int i = 0; i < nargs && i < UCALL_NR_ARGS; i++)
		uc->args[i] = args[i];
	for (size_t i = 0; text && text[i] && i < UCALL_TEXT - 1; i++)
		uc->text[i] = text[i];
	/* The host reads *uc during the exit; pio()'s "memory" clobber orders the stores. */
	outl(UCALL_PORT, (uint32_t)(uintptr_t)uc);
}

void guest_fail(struct gcpu *c, const char *file, int line, const char *what, uint64_t a,
		uint64_t b)
{
	char text[UCALL_TEXT], out[UCALL_TEXT + 64];
	uint64_t args[3] = {(uint64_t)line, a, b};

	gsnprintf(text, sizeof(text), "%s:%d: %s", file, line, what);
	gsnprintf(out, sizeof(out), "ASSERT cpu %u %s a=0x%lx b=0x%lx\n", c->idx, text, a, b);
	serial_write_locked(out, !cpu_in_ring0());
	ucall(c, UCALL_ASSERT, args, 3, text);
	guest_poweroff(EXIT_CODE_FAIL);
}

void guest_poweroff(uint32_t code)
{
	outl(DEBUG_EXIT_PORT, code);
	/* A VMM without the exit device: stay here quietly. */
	for (;;)
		cpu_relax();
}
