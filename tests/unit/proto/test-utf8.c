// SPDX-License-Identifier: GPL-2.0-only
/* proto/utf8.h: where a text may be cut, and cleaning a peer's bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "proto/utf8.h"

struct char_case {
	const char *s;
	size_t avail, want;
};

static const struct char_case char_cases[] = {
	{"a", 1, 1},
	{"\xc3\xa9", 2, 2},	    /* é */
	{"\xc3\xa9", 1, 0},	    /* é, cut */
	{"\xe2\x82\xac", 3, 3},	    /* € */
	{"\xf0\x9f\x98\x80", 4, 4}, /* 😀 */
	{"\xf0\x9f\x98\x80", 3, 0}, /* 😀, cut */
	{"\x80", 1, 0},		    /* continuation byte alone */
	{"\xc0\xaf", 2, 0},	    /* overlong '/' */
	{"\xe0\x80\xaf", 3, 0},	    /* overlong '/' */
	{"\xed\xa0\x80", 3, 0},	    /* surrogate U+D800 */
	{"\xf4\x90\x80\x80", 4, 0}, /* U+110000 */
	{"\xf5\x80\x80\x80", 4, 0}, /* no such lead byte */
	{"\xff", 1, 0},
	{"\xc3(", 2, 0}, /* lead without its continuation */
	{"\xe2\x82(", 3, 0},
};

static void test_utf8_char_len(void **state)
{
	for (size_t i = 0; i < sizeof(char_cases) / sizeof(char_cases[0]); i++)
		if (utf8_char_len(char_cases[i].s, char_cases[i].avail) != char_cases[i].want)
			fail_msg("case %zu: %zu, want %zu", i,
				 utf8_char_len(char_cases[i].s, char_cases[i].avail),
				 char_cases[i].want);
}

static void test_utf8_cut(void **state)
{
	const char *s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"; /* aé€😀 */
	/* For each length 0..10: where a cut there must fall back to. */
	static const size_t want[] = {0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10};

	for (size_t len = 0; len < sizeof(want) / sizeof(want[0]); len++)
		if (utf8_cut(s, len) != want[len])
			fail_msg("len %zu: %zu, want %zu", len, utf8_cut(s, len), want[len]);
}

static void test_utf8_snprintf(void **state)
{
	char buf[6];

	/* "é€" is 5 bytes: fits; "aé€" needs 6 + NUL: the € goes whole. */
	assert_int_equal(utf8_snprintf(buf, sizeof(buf), "%s", "\xc3\xa9\xe2\x82\xac"), 5);
	assert_string_equal(buf, "\xc3\xa9\xe2\x82\xac");
	assert_int_equal(utf8_snprintf(buf, sizeof(buf), "a%s", "\xc3\xa9\xe2\x82\xac"), 6);
	assert_string_equal(buf, "a\xc3\xa9");
}

static void test_utf8_copy_valid(void **state)
{
	char buf[8];

	assert_int_equal(utf8_copy_valid(buf, sizeof(buf), "ok \xc3\xa9"), 5);
	assert_string_equal(buf, "ok \xc3\xa9");
	assert_int_equal(utf8_copy_valid(buf, sizeof(buf), "\xff\x80\xc3x"), 4);
	assert_string_equal(buf, "???x");
	/* 7 bytes of room: "abcde" then a 3-byte € does not fit. */
	assert_int_equal(utf8_copy_valid(buf, sizeof(buf), "abcde\xe2\x82\xac"), 5);
	assert_string_equal(buf, "abcde");
	assert_int_equal(utf8_copy_valid(buf, 1, "abc"), 0);
	assert_string_equal(buf, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_utf8_char_len),
		cmocka_unit_test(test_utf8_cut),
		cmocka_unit_test(test_utf8_snprintf),
		cmocka_unit_test(test_utf8_copy_valid),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
