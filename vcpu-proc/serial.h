/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A 16550A UART (COM1) good enough for polling guests: the transmitter is
 * always empty (output goes straight to a host fd, line buffered), there is
 * no input and no interrupt line.  Registers behave as on the chip: DLAB
 * banks the divisor latch over RBR/THR and IER, SCR keeps what was written,
 * LSR reports THRE|TEMT, MCR loopback is not emulated.
 *
 * The guest's bytes are escaped on their way out (struct serial_escape),
 * whatever the host fd is: the output ends on the operator's terminal,
 * directly or when a log file is read, and a guest must not be able to
 * drive that terminal (set its title, rewrite the screen, answer back).
 */
#ifndef CLEAVE_VCPU_SERIAL_H
#define CLEAVE_VCPU_SERIAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_NR_PORTS 8
#define SERIAL_BUF_SIZE 256 /* output bytes held before a write without '\n' */

/*
 * Makes guest output inert for a terminal, one byte at a time: printable
 * ASCII, '\n', '\t', '\r' just before '\n' (Linux consoles end lines with
 * "\r\n") and well-formed UTF-8 pass; every other byte comes out as the
 * four characters \xNN: C0 controls (ESC starts every terminal sequence),
 * DEL, a lone '\r' (it would let a line overwrite itself), C1 controls
 * encoded in UTF-8 (U+0080-U+009F: CSI, OSC...), and bytes that are not
 * UTF-8 (a raw 0x9b is CSI to an 8-bit terminal).  A backslash passes as
 * is: the point is inert output, not a reversible encoding.
 */
struct serial_escape {
	uint8_t seq[4]; /* a UTF-8 sequence begun and not complete */
	uint8_t have;	/* bytes in seq */
	uint8_t need;	/* the sequence's length; 0: none begun */
	bool cr;	/* a '\r' held back until the next byte shows it ends a line */
};

/* Most bytes serial_escape_byte() or serial_escape_end() writes at once. */
#define SERIAL_ESCAPE_MAX 16

/* Feeds guest byte @c; writes what can be written now to @out, returns how many bytes. */
size_t serial_escape_byte(struct serial_escape *e, uint8_t c, char *out);
/* Ends the stream: what was held back, escaped.  Returns bytes written to @out. */
size_t serial_escape_end(struct serial_escape *e, char *out);

/* Register offsets from the base port. */
enum {
	SERIAL_RBR_THR = 0, /* DLL when LCR.DLAB */
	SERIAL_IER = 1,	    /* DLM when LCR.DLAB */
	SERIAL_IIR_FCR = 2,
	SERIAL_LCR = 3,
	SERIAL_MCR = 4,
	SERIAL_LSR = 5,
	SERIAL_MSR = 6,
	SERIAL_SCR = 7,
};

#define SERIAL_LCR_DLAB 0x80
#define SERIAL_LSR_DR	0x01
#define SERIAL_LSR_THRE 0x20
#define SERIAL_LSR_TEMT 0x40
#define SERIAL_IIR_NONE 0x01
#define SERIAL_IIR_FIFO 0xc0 /* FIFOs enabled (16550A) */

struct serial {
	/* Protects every field below: vCPUs of one guest share the UART. */
	pthread_mutex_t lock;
	int out_fd;			 /* host fd the guest's output goes to; not owned */
	uint8_t ier, lcr, mcr, scr, fcr; /* guest-visible registers */
	uint8_t dll, dlm;		 /* divisor latch */
	struct serial_escape esc;	 /* guest bytes held back by the escaper */
	size_t len;			 /* bytes pending in buf */
	char buf[SERIAL_BUF_SIZE + SERIAL_ESCAPE_MAX]; /* escaped output not yet written */
	unsigned long long written;		       /* bytes handed to out_fd, for tests */
};

int serial_init(struct serial *s, int out_fd);
/* Flushes pending output, with what the escaper held back. */
void serial_fini(struct serial *s);
/* Resets the registers (guest reset); output is flushed first, held-back bytes with it. */
void serial_reset(struct serial *s);

/* @offset is relative to the base port (0..7).  Returns the byte read. */
uint8_t serial_read(struct serial *s, unsigned int offset);
void serial_write(struct serial *s, unsigned int offset, uint8_t val);
/*
 * Writes out buffered bytes now (pause, exit).  The escaper keeps a UTF-8
 * sequence not yet complete and a trailing '\r' (at most 4 bytes) for the
 * guest's next byte.  Returns 0 or -errno.
 */
int serial_flush(struct serial *s);
/* The guest writes no more (exit): flushes, with what the escaper held back. */
void serial_end(struct serial *s);

#endif
