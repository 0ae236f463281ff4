// SPDX-License-Identifier: GPL-2.0-only
/* ucall decode: bounds checks against the region table and the log line format. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "vcpu-proc/ucall.h"

#define RAM_SIZE (1u << 20)
#define HIGH	 (4ull << 30)

struct fixture {
	struct region_table t;
	struct region *r[2];
	uint8_t *ram[2];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	const uint64_t gpa[2] = {0, HIGH};

	assert_non_null(f);
	assert_int_equal(region_table_init(&f->t), 0);
	for (int i = 0; i < 2; i++) {
		f->ram[i] = calloc(1, RAM_SIZE);
		assert_int_equal(region_table_add(&f->t, (unsigned)i, gpa[i], RAM_SIZE, f->ram[i],
						  NULL, &f->r[i]),
				 0);
		region_unlock_write(f->r[i]);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < 2; i++) {
		assert_int_equal(region_table_remove(&f->t, (unsigned int)i), 0);
		free(f->ram[i]);
	}
	region_table_fini(&f->t);
	free(f);
	return 0;
}

static void put(struct fixture *f, int region, uint64_t off, const struct ucall *uc)
{
	memcpy(f->ram[region] + off, uc, sizeof(*uc));
}

static void test_read_and_format(void **state)
{
	struct fixture *f = *state;
	struct ucall uc = {.cmd = UCALL_WRITES, .cpu = 1, .args = {0x200000, 8192, 3}};
	struct ucall got;
	char line[512];

	put(f, 0, 0x5000, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0x5000, &got), 0);
	vcpu_ucall_format(&got, 1, line, sizeof(line));
	assert_string_equal(line, "ucall cpu=1 WRITES gpa=0x200000 bytes=8192 gen=3");

	uc = (struct ucall){.cmd = UCALL_IMAGE,
			    .args = {0x100000, 65536, 0x8000, 4096, 0x200000, 1 << 20}};
	put(f, 1, RAM_SIZE - sizeof(uc), &uc); /* last bytes of the high region */
	assert_int_equal(vcpu_ucall_read(&f->t, HIGH + RAM_SIZE - sizeof(uc), &got), 0);
	vcpu_ucall_format(&got, 0, line, sizeof(line));
	assert_string_equal(line,
			    "ucall cpu=0 IMAGE gpa=0x100000 bytes=65536 gpa2=0x8000 bytes2=4096 "
			    "area=0x200000 area_bytes=1048576");

	uc = (struct ucall){.cmd = UCALL_ASSERT, .args = {42}};
	strcpy(uc.text, "main.c:42: x == y");
	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), 0);
	vcpu_ucall_format(&got, 2, line, sizeof(line));
	assert_string_equal(line, "ucall cpu=2 ASSERT line=42 text=\"main.c:42: x == y\"");

	uc = (struct ucall){.cmd = UCALL_DONE, .args = {0}};
	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), 0);
	vcpu_ucall_format(&got, 0, line, sizeof(line));
	assert_string_equal(line, "ucall cpu=0 DONE failures=0");

	uc = (struct ucall){.cmd = UCALL_SYNC, .args = {1, 2, 3, 4, 5, 6}};
	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), 0);
	vcpu_ucall_format(&got, 0, line, sizeof(line));
	assert_string_equal(line, "ucall cpu=0 SYNC args=1,2,3,4,5,6 text=\"\"");
}

static void test_out_of_bounds(void **state)
{
	struct fixture *f = *state;
	struct ucall got;

	/* Straddles the end of region 0, in the hole, straddles the end of region 1. */
	assert_int_equal(vcpu_ucall_read(&f->t, RAM_SIZE - sizeof(got) + 1, &got), -EFAULT);
	assert_int_equal(vcpu_ucall_read(&f->t, RAM_SIZE, &got), -EFAULT);
	assert_int_equal(vcpu_ucall_read(&f->t, 0x80000000, &got), -EFAULT);
	assert_int_equal(vcpu_ucall_read(&f->t, HIGH + RAM_SIZE - 8, &got), -EFAULT);
	assert_int_equal(vcpu_ucall_read(&f->t, ~0ull - 8, &got), -EFAULT);
}

static void test_bad_command_and_text(void **state)
{
	struct fixture *f = *state;
	struct ucall uc = {.cmd = 99}, got;
	char line[512];

	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), -EINVAL);
	uc.cmd = UCALL_NONE;
	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), -EINVAL);

	/* Unterminated text with control characters and quotes stays one safe line. */
	uc.cmd = UCALL_ASSERT;
	memset(uc.text, 'A', sizeof(uc.text));
	uc.text[3] = '\n';
	uc.text[4] = '"';
	uc.text[5] = (char)0xff;
	put(f, 0, 0, &uc);
	assert_int_equal(vcpu_ucall_read(&f->t, 0, &got), 0);
	assert_int_equal(strlen(got.text), UCALL_TEXT - 1);
	assert_null(strchr(got.text, '\n'));
	assert_null(strchr(got.text, '"'));
	assert_int_equal(got.text[5], '?');
	vcpu_ucall_format(&got, 0, line, sizeof(line));
	assert_null(strchr(line, '\n'));
	assert_string_equal(vcpu_ucall_name(77), "UNKNOWN");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_read_and_format, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_bounds, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_command_and_text, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
