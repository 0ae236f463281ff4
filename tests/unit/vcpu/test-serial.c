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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_output_line_buffered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_reader, setup, teardown),
	};

	log_init("test-serial");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
