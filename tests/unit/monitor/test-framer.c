// SPDX-License-Identifier: GPL-2.0-only
/* Unit tests of the QMP input framer: splitting, limits, resynchronisation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-framer.h"

static int framer_setup(void **state)
{
	struct mon_framer *f = malloc(sizeof(*f));

	mon_framer_init(f);
	*state = f;
	return 0;
}

static int framer_teardown(void **state)
{
	mon_framer_fini(*state);
	free(*state);
	return 0;
}

/* Feeds @in in chunks of @chunk bytes, collecting "V:<text>" / "E:<error>" lines. */
static void framer_run(struct mon_framer *f, const char *in, size_t chunk, char *out, size_t outlen)
{
	size_t off = 0, n, len = strlen(in);
	struct mon_frame fr;

	out[0] = '\0';
	while (off < len) {
		n = len - off < chunk ? len - off : chunk;
		assert_int_equal(mon_framer_push(f, in + off, n), 0);
		off += n;
		for (;;) {
			mon_framer_next(f, &fr);
			if (fr.kind == MON_FRAME_NONE)
				break;
			if (fr.kind == MON_FRAME_VALUE)
				snprintf(out + strlen(out), outlen - strlen(out), "V:%.*s|",
					 (int)fr.len, fr.data);
			else
				snprintf(out + strlen(out), outlen - strlen(out), "E:%s|",
					 fr.error);
		}
	}
}

struct framer_case {
	const char *in;
	const char *want;
};

static const struct framer_case framer_cases[] = {
	{"{\"a\":1}", "V:{\"a\":1}|"},
	{"{\"a\":1}{\"b\":2}", "V:{\"a\":1}|V:{\"b\":2}|"},
	{"  \r\n{\"a\":1}\n\n", "V:{\"a\":1}|"},
	/* Braces inside strings, escaped quotes, escaped backslashes. */
	{"{\"a\":\"}{]\"}", "V:{\"a\":\"}{]\"}|"},
	{"{\"a\":\"x\\\"}\"}", "V:{\"a\":\"x\\\"}\"}|"},
	{"{\"a\":\"x\\\\\"}", "V:{\"a\":\"x\\\\\"}|"},
	{"[1,[2]]", "V:[1,[2]]|"},
	/* Top-level scalars end at a delimiter. */
	{"123 ", "V:123|"},
	{"\"s\"{}", "V:\"s\"|V:{}|"},
	{"true{}", "V:true|V:{}|"},
	/* Stray closers are reported and skipped. */
	{"}{\"a\":1}", "E:JSON parse error, expecting value|V:{\"a\":1}|"},
	/* 0xFF drops an open value silently. */
	{"{\"a\":\xff{\"b\":1}", "V:{\"b\":1}|"},
	/* Incomplete value: nothing yet. */
	{"{\"a\":", ""},
};

static void test_framer_table(void **state)
{
	char out[4096];
	size_t i, chunk;

	for (i = 0; i < sizeof(framer_cases) / sizeof(framer_cases[0]); i++) {
		/* Whole, and one byte per write: same result. */
		for (chunk = 1; chunk <= 4096; chunk *= 4096) {
			struct mon_framer f;

			mon_framer_init(&f);
			framer_run(&f, framer_cases[i].in, chunk, out, sizeof(out));
			if (strcmp(out, framer_cases[i].want))
				fail_msg("case %zu chunk %zu: got '%s' want '%s'", i, chunk, out,
					 framer_cases[i].want);
			mon_framer_fini(&f);
		}
	}
}

static void test_framer_depth(void **state)
{
	struct mon_framer *f = *state;
	/* QEMU 7.2's json-streamer.c: MAX_NESTING 1024 objects and arrays together. */
	enum { QEMU72_MAX_NESTING = 1024 };
	char in[2 * QEMU72_MAX_NESTING + 32], out[4 * QEMU72_MAX_NESTING];
	size_t i, d = QEMU72_MAX_NESTING;

	assert_int_equal(MON_FRAME_MAX_DEPTH, QEMU72_MAX_NESTING);
	/* Exactly the limit is fine. */
	for (i = 0; i < d; i++)
		in[i] = '[';
	for (i = 0; i < d; i++)
		in[d + i] = ']';
	in[2 * d] = '\0';
	framer_run(f, in, 7, out, sizeof(out));
	assert_int_equal(strncmp(out, "V:[[[", 5), 0);

	/* One more: one error, the rest of the value discarded, next value fine. */
	for (i = 0; i <= d; i++)
		in[i] = '[';
	for (i = 0; i <= d; i++)
		in[d + 1 + i] = ']';
	strcpy(in + 2 * d + 2, "{\"ok\":1}");
	framer_run(f, in, 5, out, sizeof(out));
	assert_string_equal(out, "E:JSON nesting depth limit exceeded|V:{\"ok\":1}|");
}

static void test_framer_size(void **state)
{
	struct mon_framer *f = *state;
	size_t n = MON_FRAME_MAX_SIZE + 100, i;
	char *big = malloc(n + 64);
	char out[256];

	assert_non_null(big);
	strcpy(big, "{\"a\":\"");
	for (i = 6; i < n; i++)
		big[i] = 'x';
	strcpy(big + n, "\"}{\"b\":2}");
	framer_run(f, big, 65536, out, sizeof(out));
	assert_string_equal(out, "E:JSON token size limit exceeded|V:{\"b\":2}|");
	/* Discarded bytes are not kept. */
	assert_true(mon_framer_pending(f) < 1024);
	free(big);
}

static void test_framer_size_just_fits(void **state)
{
	struct mon_framer *f = *state;
	size_t n = MON_FRAME_MAX_SIZE - 2, i;
	char *big = malloc(n + 8);
	struct mon_frame fr;

	assert_non_null(big);
	big[0] = '[';
	for (i = 1; i < n - 1; i++)
		big[i] = '1';
	big[n - 1] = ']';
	assert_int_equal(mon_framer_push(f, big, n), 0);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_VALUE);
	assert_int_equal(fr.len, n);
	free(big);
}

/*
 * A value of exactly MON_FRAME_MAX_SIZE bytes is handed out; one byte more
 * is refused, also when its closing byte is the one past the limit, and the
 * stream goes on after it.  Objects, arrays and strings end on their closing
 * byte, a bare scalar on the delimiter after it; each whole and in chunks.
 */
static void test_framer_size_limit_exact(void **state)
{
	static const char *const kinds[][2] = {
		{"{\"a\":\"", "\"}"}, {"[\"", "\"]"}, {"\"", "\""}, {"1", ""}};
	static const size_t chunks[] = {MON_FRAME_MAX_SIZE + 64, 4093};
	const char *next = "V:{\"b\":2}|";
	size_t max = MON_FRAME_MAX_SIZE, k, extra, c;
	char *big = malloc(max + 64), *out = malloc(max + 256);

	assert_non_null(big);
	assert_non_null(out);
	for (k = 0; k < sizeof(kinds) / sizeof(kinds[0]); k++) {
		size_t open = strlen(kinds[k][0]), close = strlen(kinds[k][1]);

		for (extra = 0; extra <= 1; extra++) {
			size_t n = max + extra;

			memcpy(big, kinds[k][0], open);
			memset(big + open, 'x', n - open - close);
			memcpy(big + n - close, kinds[k][1], close);
			strcpy(big + n, "{\"b\":2}");
			for (c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
				struct mon_framer f;

				mon_framer_init(&f);
				framer_run(&f, big, chunks[c], out, max + 256);
				mon_framer_fini(&f);
				if (extra) {
					/* Not assert_string_equal: it would print a MiB. */
					if (strcmp(out, "E:JSON token size limit exceeded|"
							"V:{\"b\":2}|"))
						fail_msg("kind %zu, %zu bytes, chunks of %zu: got "
							 "'%.40s...'",
							 k, n, chunks[c], out);
					continue;
				}
				/* "V:", the value, "|", then the next value. */
				assert_int_equal(strlen(out), 2 + max + 1 + strlen(next));
				assert_memory_equal(out + 2, big, max);
				assert_string_equal(out + 2 + max + 1, next);
			}
		}
	}
	free(out);
	free(big);
}

/* Nothing pushed into a fresh framer (no buffer yet): nothing to hand out. */
static void test_framer_push_empty(void **state)
{
	struct mon_framer *f = *state;
	struct mon_frame fr;

	assert_int_equal(mon_framer_push(f, "", 0), 0);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_NONE);
	assert_int_equal(mon_framer_pending(f), 0);
}

/*
 * cap_after() predicts the buffer a push makes (the monitor refuses input
 * with it before allocating); trim() frees only an empty buffer and keeps
 * the scan state, here the discarding of an oversized value.
 */
static void test_framer_cap_and_trim(void **state)
{
	struct mon_framer *f = *state;
	size_t n = MON_FRAME_MAX_SIZE + 100, i;
	char *big = malloc(n);
	struct mon_frame fr;
	size_t want;

	assert_non_null(big);
	assert_int_equal(mon_framer_cap_after(f, 0), 0);
	want = mon_framer_cap_after(f, 100);
	assert_int_equal(want, 4096);
	assert_int_equal(mon_framer_push(f, "{\"execute\": \"query-", 20), 0);
	assert_int_equal(f->cap, mon_framer_cap_after(f, 0));
	want = mon_framer_cap_after(f, 5000);
	assert_int_equal(want, 8192);
	memset(big, ' ', 5000);
	assert_int_equal(mon_framer_push(f, big, 5000), 0);
	assert_int_equal(f->cap, want);
	/* Something pending: kept. */
	mon_framer_trim(f);
	assert_int_equal(f->cap, want);
	assert_int_equal(mon_framer_push(f, "name\"}", 6), 0);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_VALUE);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_NONE);
	mon_framer_trim(f);
	assert_null(f->buf);
	assert_int_equal(f->cap, 0);
	/* An oversized value is being discarded when the buffer goes... */
	big[0] = '[';
	for (i = 1; i < n; i++)
		big[i] = '1';
	assert_int_equal(mon_framer_push(f, big, n), 0);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_ERROR);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_NONE);
	mon_framer_trim(f);
	assert_null(f->buf);
	/* ...and its end is still recognised as its end, not a stray closer. */
	assert_int_equal(mon_framer_push(f, "1]{\"b\":2}", 10), 0);
	mon_framer_next(f, &fr);
	assert_int_equal(fr.kind, MON_FRAME_VALUE);
	assert_int_equal(fr.len, 7);
	assert_memory_equal(fr.data, "{\"b\":2}", 7);
	free(big);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_framer_table),
		cmocka_unit_test_setup_teardown(test_framer_depth, framer_setup, framer_teardown),
		cmocka_unit_test_setup_teardown(test_framer_size, framer_setup, framer_teardown),
		cmocka_unit_test_setup_teardown(test_framer_size_just_fits, framer_setup,
						framer_teardown),
		cmocka_unit_test(test_framer_size_limit_exact),
		cmocka_unit_test_setup_teardown(test_framer_cap_and_trim, framer_setup,
						framer_teardown),
		cmocka_unit_test_setup_teardown(test_framer_push_empty, framer_setup,
						framer_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
