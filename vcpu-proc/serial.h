/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * A 16550A UART (COM1) good enough for polling guests: the transmitter is
 * always empty (output goes straight to a host fd, line buffered), there is
 * no input and no interrupt line.  Registers behave as on the chip: DLAB
 * banks the divisor latch over RBR/THR and IER, SCR keeps what was written,
 * LSR reports THRE|TEMT, MCR loopback is not emulated.
 */
#ifndef CLEAVE_VCPU_SERIAL_H
#define CLEAVE_VCPU_SERIAL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define SERIAL_NR_PORTS 8
#define SERIAL_BUF_SIZE 256

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
	size_t len;			 /* bytes pending in buf */
	char buf[SERIAL_BUF_SIZE];	 /* output not yet written (flushed at '\n') */
	unsigned long long written;	 /* bytes handed to out_fd, for tests */
};

int serial_init(struct serial *s, int out_fd);
/* Flushes pending output. */
void serial_fini(struct serial *s);
/* Resets the registers (guest reset); output is flushed first. */
void serial_reset(struct serial *s);

/* @offset is relative to the base port (0..7).  Returns the byte read. */
uint8_t serial_read(struct serial *s, unsigned int offset);
void serial_write(struct serial *s, unsigned int offset, uint8_t val);
/* Writes out buffered bytes now (pause, exit).  Returns 0 or -errno. */
int serial_flush(struct serial *s);

#endif
