// SPDX-License-Identifier: GPL-2.0-only
/* The 16550A model: register behaviour and where the output goes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/serial.h"

struct fixture {
	struct serial s;
	int p[2];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(pipe2(f->p, O_NONBLOCK), 0);
	assert_int_equal(serial_init(&f->s, f->p[1]), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	serial_fini(&f->s);
	if (f->p[0] >= 0)
		close(f->p[0]);
	close(f->p[1]);
	free(f);
	return 0;
}

static size_t drain(int fd, char *buf, size_t cap)
{
	ssize_t n = read(fd, buf, cap - 1);

	buf[n > 0 ? n : 0] = '\0';
	return n > 0 ? (size_t)n : 0;
}

static void put(struct serial *s, const char *str)
{
	while (*str)
		serial_write(s, SERIAL_RBR_THR, (uint8_t)*str++);
}

static void test_registers(void **state)
{
	struct serial *s = &((struct fixture *)*state)->s;

	/* Transmitter always empty, nothing received. */
	assert_int_equal(serial_read(s, SERIAL_LSR), SERIAL_LSR_THRE | SERIAL_LSR_TEMT);
	assert_int_equal(serial_read(s, SERIAL_LSR) & SERIAL_LSR_DR, 0);
	assert_int_equal(serial_read(s, SERIAL_RBR_THR), 0);
	assert_int_equal(serial_read(s, SERIAL_IIR_FCR), SERIAL_IIR_NONE);
	/* Scratch keeps its value; LSR/MSR ignore writes. */
	serial_write(s, SERIAL_SCR, 0x5a);
	assert_int_equal(serial_read(s, SERIAL_SCR), 0x5a);
	serial_write(s, SERIAL_LSR, 0);
	assert_int_equal(serial_read(s, SERIAL_LSR), SERIAL_LSR_THRE | SERIAL_LSR_TEMT);
	/* IER keeps its 4 defined bits. */
	serial_write(s, SERIAL_IER, 0xff);
	assert_int_equal(serial_read(s, SERIAL_IER), 0x0f);
	/* DLAB banks the divisor latch over THR/IER. */
	serial_write(s, SERIAL_LCR, 0x83);
	serial_write(s, SERIAL_RBR_THR, 0x01);
	serial_write(s, SERIAL_IER, 0x02);
	assert_int_equal(serial_read(s, SERIAL_RBR_THR), 0x01);
	assert_int_equal(serial_read(s, SERIAL_IER), 0x02);
	serial_write(s, SERIAL_LCR, 0x03);
	assert_int_equal(serial_read(s, SERIAL_LCR), 0x03);
	assert_int_equal(serial_read(s, SERIAL_IER), 0x0f); /* IER untouched by DLM write */
	assert_int_equal(s->written, 0);		    /* divisor bytes are not output */
	/* FIFO enable shows in IIR. */
	serial_write(s, SERIAL_IIR_FCR, 0x07);
	assert_int_equal(serial_read(s, SERIAL_IIR_FCR), SERIAL_IIR_NONE | SERIAL_IIR_FIFO);
	serial_write(s, SERIAL_MCR, 0xff);
	assert_int_equal(serial_read(s, SERIAL_MCR), 0x1f);
	/* Reset restores the power-on values. */
	serial_reset(s);
	assert_int_equal(serial_read(s, SERIAL_SCR), 0);
	assert_int_equal(serial_read(s, SERIAL_IER), 0);
	assert_int_equal(serial_read(s, SERIAL_LCR), 0x03);
}

static void test_output_line_buffered(void **state)
{
	struct fixture *f = *state;
	char buf[1024];

	put(&f->s, "abc");
	assert_int_equal(drain(f->p[0], buf, sizeof(buf)), 0); /* held until newline */
	put(&f->s, "d\nxy");
	drain(f->p[0], buf, sizeof(buf));
	assert_string_equal(buf, "abcd\n");
	assert_int_equal(serial_flush(&f->s), 0);
	drain(f->p[0], buf, sizeof(buf));
	assert_string_equal(buf, "xy");
	/* A full buffer goes out without a newline. */
	for (int i = 0; i < SERIAL_BUF_SIZE; i++)
		serial_write(&f->s, SERIAL_RBR_THR, 'z');
	assert_int_equal(drain(f->p[0], buf, sizeof(buf)), SERIAL_BUF_SIZE);
	assert_int_equal(f->s.written, 5 + 2 + SERIAL_BUF_SIZE);
}

/* A vanished reader is an error for flush, never a hang or a crash. */
static void test_closed_reader(void **state)
{
	struct fixture *f = *state;

	signal(SIGPIPE, SIG_IGN);
	close(f->p[0]);
	f->p[0] = -1;
	put(&f->s, "lost");
	assert_int_equal(serial_flush(&f->s), -EPIPE);
	put(&f->s, "more\n"); /* still accepted and dropped */
	assert_int_equal(serial_flush(&f->s), 0);
}

/* Feeds @in (@len bytes) to a fresh escaper, ends the stream, returns the text. */
static const char *escape(const char *in, size_t len)
{
	static char out[1024];
	struct serial_escape e = {0};
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		n += serial_escape_byte(&e, (uint8_t)in[i], out + n);
		assert_true(n + SERIAL_ESCAPE_MAX < sizeof(out));
	}
	n += serial_escape_end(&e, out + n);
	out[n] = '\0';
	return out;
}

static void test_escape_table(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out;
	} cases[] = {
#define CASE(in, out) {in, sizeof(in) - 1, out}
		/* Text passes: ASCII, tabs, lines ending "\r\n" or "\n", UTF-8. */
		CASE("boot: ok\tdone\r\n", "boot: ok\tdone\r\n"),
		CASE("h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\n",
		     "h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\n"),
		CASE("a\\x1b", "a\\x1b"),
		/* Terminal sequences: the ESC is escaped, the rest is inert text. */
		CASE("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
		CASE("\x1b[2J\x1b[H", "\\x1b[2J\\x1b[H"),
		CASE("\x1b[6n", "\\x1b[6n"),
		/* Other C0 controls, DEL, a '\r' that would overwrite the line. */
		CASE("\x00\x08\x0c\x7f", "\\x00\\x08\\x0c\\x7f"),
		CASE("50%\r60%\r\n", "50%\\x0d60%\r\n"),
		CASE("\r\r\n", "\\x0d\r\n"),
		/* C1 controls: raw (8-bit CSI), and encoded in UTF-8 (U+009B). */
		CASE("\x9b"
		     "31m",
		     "\\x9b31m"),
		CASE("\xc2\x9b"
		     "31m\xc2\x9d",
		     "\\xc2\\x9b31m\\xc2\\x9d"),
		CASE("\xc2\xa0", "\xc2\xa0"),
		/* Not UTF-8: broken, overlong, surrogate, beyond U+10FFFF, cut at the end. */
		CASE("\xe2\x82"
		     "A",
		     "\\xe2\\x82A"),
		CASE("\xc0\xaf", "\\xc0\\xaf"),
		CASE("\xed\xa0\x80", "\\xed\\xa0\\x80"),
		CASE("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80"),
		CASE("\xe2\x82\x1b", "\\xe2\\x82\\x1b"),
		CASE("\xff\xfe", "\\xff\\xfe"),
		CASE("end\xe2\x9c", "end\\xe2\\x9c"),
		CASE("end\r", "end\\x0d"),
#undef CASE
	};
	unsigned int failed = 0;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = escape(cases[i].in, cases[i].len);

		if (strcmp(got, cases[i].out)) {
			print_error("case %zu: got '%s', want '%s'\n", i, got, cases[i].out);
			failed++;
		}
	}
	assert_int_equal(failed, 0);
	/* The worst byte: a 4-byte sequence broken after 3 by a control. */
	{
		struct serial_escape e = {0};
		char out[SERIAL_ESCAPE_MAX];

		assert_int_equal(serial_escape_byte(&e, 0xf0, out), 0);
		assert_int_equal(serial_escape_byte(&e, 0x9f, out), 0);
		assert_int_equal(serial_escape_byte(&e, 0x98, out), 0);
		assert_int_equal(serial_escape_byte(&e, 0x1b, out), SERIAL_ESCAPE_MAX);
	}
}

/* What a guest writes to COM1 reaches the host fd with no control byte but '\n' and '\t'. */
static void test_output_escaped(void **state)
{
	struct fixture *f = *state;
	char buf[1024];
	size_t n;

	/* Set the terminal's title, clear the screen, ask for the cursor position. */
	put(&f->s, "\x1b]0;pwned\x07\x1b[2J\x1b[6n\xc2\x9b"
		   "1;1H\xff ok\r\n");
	n = drain(f->p[0], buf, sizeof(buf));
	assert_string_equal(buf, "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[6n\\xc2\\x9b1;1H\\xff ok\r\n");
	for (size_t i = 0; i < n; i++)
		if ((uint8_t)buf[i] < 0x20 && buf[i] != '\n' && buf[i] != '\t' &&
		    !(buf[i] == '\r' && buf[i + 1] == '\n'))
			fail_msg("control byte 0x%02x at %zu reached the host", buf[i], i);
	/* Four bytes out for each ESC in: whole SERIAL_BUF_SIZE writes, nothing left over. */
	for (int i = 0; i < SERIAL_BUF_SIZE; i++)
		serial_write(&f->s, SERIAL_RBR_THR, 0x1b);
	assert_int_equal(f->s.len, 0);
	{
		char big[8 * SERIAL_BUF_SIZE];

		assert_int_equal(drain(f->p[0], big, sizeof(big)), 4 * SERIAL_BUF_SIZE);
		for (size_t i = 0; i < 4 * SERIAL_BUF_SIZE; i += 4)
			assert_memory_equal(big + i, "\\x1b", 4);
	}
	/* Held back at exit: a cut UTF-8 sequence comes out escaped. */
	serial_flush(&f->s);
	drain(f->p[0], buf, sizeof(buf));
	put(&f->s, "bye\xe2\x9c");
	serial_end(&f->s);
	drain(f->p[0], buf, sizeof(buf));
	assert_string_equal(buf, "bye\\xe2\\x9c");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_line_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_reader, setup, teardown),
		cmocka_unit_test(test_escape_table),
		cmocka_unit_test_setup_teardown(test_output_escaped, setup, teardown),
	};

	log_init("test-serial");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
