// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vcpu-proc/ucall.h"

static const char *const vcpu_ucall_names[] = {
	[UCALL_NONE] = "NONE", [UCALL_SYNC] = "SYNC",	  [UCALL_ASSERT] = "ASSERT",
	[UCALL_DONE] = "DONE", [UCALL_WRITES] = "WRITES", [UCALL_IMAGE] = "IMAGE",
};

const char *vcpu_ucall_name(uint64_t cmd)
{
	if (cmd >= sizeof(vcpu_ucall_names) / sizeof(vcpu_ucall_names[0]))
		return "UNKNOWN";
	return vcpu_ucall_names[cmd];
}

int vcpu_ucall_read(struct region_table *t, uint64_t gpa, struct ucall *out)
{
	struct region *r = region_table_find_read(t, gpa, sizeof(*out));

	if (!r)
		return -EFAULT;
	region_assert_locked_read(r);
	memcpy(out, (const char *)r->hva + (gpa - r->gpa), sizeof(*out));
	region_unlock_read(r);

	/* The guest may write anything: keep the text one printable line. */
	out->text[UCALL_TEXT - 1] = '\0';
	for (char *p = out->text; *p; p++) {
		if (*p < 0x20 || *p > 0x7e || *p == '"')
			*p = '?';
	}
	if (out->cmd == UCALL_NONE || out->cmd > UCALL_IMAGE)
		return -EINVAL;
	return 0;
}

int vcpu_ucall_format(const struct ucall *uc, unsigned int cpu, char *buf, size_t len)
{
	const uint64_t *a = uc->args;

	switch (uc->cmd) {
	case UCALL_WRITES:
		return snprintf(buf, len,
				"ucall cpu=%u WRITES gpa=0x%" PRIx64 " bytes=%" PRIu64
				" gen=%" PRIu64,
				cpu, a[0], a[1], a[2]);
	case UCALL_IMAGE:
		/* docs/GUEST.md: args[2..3] a second range (trampoline), args[4..5] the test area
		 */
		return snprintf(buf, len,
				"ucall cpu=%u IMAGE gpa=0x%" PRIx64 " bytes=%" PRIu64
				" gpa2=0x%" PRIx64 " bytes2=%" PRIu64 " area=0x%" PRIx64
				" area_bytes=%" PRIu64,
				cpu, a[0], a[1], a[2], a[3], a[4], a[5]);
	case UCALL_ASSERT:
		return snprintf(buf, len, "ucall cpu=%u ASSERT line=%" PRIu64 " text=\"%s\"", cpu,
				a[0], uc->text);
	case UCALL_DONE:
		return snprintf(buf, len, "ucall cpu=%u DONE failures=%" PRIu64, cpu, a[0]);
	case UCALL_SYNC:
		return snprintf(buf, len,
				"ucall cpu=%u SYNC args=%" PRIu64 ",%" PRIu64 ",%" PRIu64
				",%" PRIu64 ",%" PRIu64 ",%" PRIu64 " text=\"%s\"",
				cpu, a[0], a[1], a[2], a[3], a[4], a[5], uc->text);
	default:
		return snprintf(buf, len, "ucall cpu=%u UNKNOWN cmd=%" PRIu64, cpu, uc->cmd);
	}
}
