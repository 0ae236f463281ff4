// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/serial.h"

static size_t serial_escape_hex(uint8_t c, char *out)
{
	static const char hex[] = "0123456789abcdef";

	out[0] = '\\';
	out[1] = 'x';
	out[2] = hex[c >> 4];
	out[3] = hex[c & 0xf];
	return 4;
}

/* Length of the UTF-8 sequence lead byte @c starts; 0 when it starts none. */
static uint8_t serial_utf8_len(uint8_t c)
{
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if (c >= 0xe0 && c <= 0xef)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 0; /* continuation bytes, overlong leads 0xc0-0xc1, beyond U+10FFFF */
}

/* Whether @c may follow e->seq (RFC 3629: no overlongs, surrogates, > U+10FFFF). */
static bool serial_utf8_next_ok(const struct serial_escape *e, uint8_t c)
{
	uint8_t lo = 0x80, hi = 0xbf;

	if (e->have == 1) {
		switch (e->seq[0]) {
		case 0xe0:
			lo = 0xa0;
			break;
		case 0xed:
			hi = 0x9f;
			break;
		case 0xf0:
			lo = 0x90;
			break;
		case 0xf4:
			hi = 0x8f;
			break;
		}
	}
	return c >= lo && c <= hi;
}

/* The held-back sequence, escaped byte by byte (broken, or a C1 control). */
static size_t serial_escape_seq(struct serial_escape *e, char *out)
{
	size_t n = 0;

	for (uint8_t i = 0; i < e->have; i++)
		n += serial_escape_hex(e->seq[i], out + n);
	e->have = e->need = 0;
	return n;
}

size_t serial_escape_byte(struct serial_escape *e, uint8_t c, char *out)
{
	size_t n = 0;

	if (e->need) {
		if (serial_utf8_next_ok(e, c)) {
			e->seq[e->have++] = c;
			if (e->have < e->need)
				return 0;
			/* U+0080-U+009F are the C1 controls, CSI and OSC among them. */
			if (e->seq[0] == 0xc2 && e->seq[1] <= 0x9f)
				return serial_escape_seq(e, out);
			memcpy(out, e->seq, e->have);
			n = e->have;
			e->have = e->need = 0;
			return n;
		}
		/* Broken: its bytes are escaped and @c starts afresh. */
		n = serial_escape_seq(e, out);
	}
	if (e->cr) {
		e->cr = false;
		if (c == '\n') {
			out[n++] = '\r';
			out[n++] = '\n';
			return n;
		}
		n += serial_escape_hex('\r', out + n);
	}
	if (c == '\r') {
		e->cr = true;
		return n;
	}
	if (c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f)) {
		out[n++] = (char)c;
		return n;
	}
	e->need = serial_utf8_len(c);
	if (e->need) {
		e->seq[0] = c;
		e->have = 1;
		return n;
	}
	return n + serial_escape_hex(c, out + n);
}

size_t serial_escape_end(struct serial_escape *e, char *out)
{
	size_t n = serial_escape_seq(e, out);

	if (e->cr)
		n += serial_escape_hex('\r', out + n);
	e->cr = false;
	return n;
}

static int serial_flush_locked(struct serial *s)
{
	size_t off = 0;

	while (off < s->len) {
		ssize_t n = write(s->out_fd, s->buf + off, s->len - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			/* Output is best effort: a closed reader must not stop the guest. */
			log_debug("serial: write to fd %d: %s", s->out_fd, strerror(errno));
			s->len = 0;
			return err;
		}
		off += (size_t)n;
		s->written += (unsigned long long)n;
	}
	s->len = 0;
	return 0;
}

static void serial_regs_reset(struct serial *s)
{
	s->ier = 0;
	s->lcr = 0x03; /* 8N1, as firmware leaves it */
	s->mcr = 0x08; /* OUT2 */
	s->scr = 0;
	s->fcr = 0;
	s->dll = 0x0c; /* 9600 baud */
	s->dlm = 0;
}

int serial_init(struct serial *s, int out_fd)
{
	int ret;

	memset(s, 0, sizeof(*s));
	ret = pthread_mutex_init(&s->lock, NULL);
	if (ret)
		return -ret;
	s->out_fd = out_fd;
	serial_regs_reset(s);
	return 0;
}

/* Buffered output and what the escaper holds back, written out; caller holds s->lock. */
static void serial_end_locked(struct serial *s)
{
	s->len += serial_escape_end(&s->esc, s->buf + s->len);
	serial_flush_locked(s);
}

void serial_end(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_end_locked(s);
	pthread_mutex_unlock(&s->lock);
}

void serial_fini(struct serial *s)
{
	serial_end(s);
	pthread_mutex_destroy(&s->lock);
}

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_end_locked(s);
	serial_regs_reset(s);
	pthread_mutex_unlock(&s->lock);
}

int serial_flush(struct serial *s)
{
	int ret;

	pthread_mutex_lock(&s->lock);
	ret = serial_flush_locked(s);
	pthread_mutex_unlock(&s->lock);
	return ret;
}

uint8_t serial_read(struct serial *s, unsigned int offset)
{
	uint8_t v = 0xff;

	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case SERIAL_RBR_THR:
		v = (s->lcr & SERIAL_LCR_DLAB) ? s->dll : 0; /* no input: RBR reads 0 */
		break;
	case SERIAL_IER:
		v = (s->lcr & SERIAL_LCR_DLAB) ? s->dlm : s->ier;
		break;
	case SERIAL_IIR_FCR:
		v = SERIAL_IIR_NONE | ((s->fcr & 0x01) ? SERIAL_IIR_FIFO : 0);
		break;
	case SERIAL_LCR:
		v = s->lcr;
		break;
	case SERIAL_MCR:
		v = s->mcr;
		break;
	case SERIAL_LSR:
		v = SERIAL_LSR_THRE | SERIAL_LSR_TEMT;
		break;
	case SERIAL_MSR:
		v = 0xb0; /* DCD, DSR, CTS: a terminal is attached */
		break;
	case SERIAL_SCR:
		v = s->scr;
		break;
	}
	pthread_mutex_unlock(&s->lock);
	return v;
}

void serial_write(struct serial *s, unsigned int offset, uint8_t val)
{
	pthread_mutex_lock(&s->lock);
	switch (offset) {
	case SERIAL_RBR_THR:
		if (s->lcr & SERIAL_LCR_DLAB) {
			s->dll = val;
			break;
		}
		/* s->len < SERIAL_BUF_SIZE here: the buffer has SERIAL_ESCAPE_MAX to spare. */
		s->len += serial_escape_byte(&s->esc, val, s->buf + s->len);
		if (val == '\n' || s->len >= SERIAL_BUF_SIZE)
			serial_flush_locked(s);
		break;
	case SERIAL_IER:
		if (s->lcr & SERIAL_LCR_DLAB)
			s->dlm = val;
		else
			s->ier = val & 0x0f;
		break;
	case SERIAL_IIR_FCR:
		s->fcr = val & 0xc9; /* the reset bits 1-2 self-clear */
		break;
	case SERIAL_LCR:
		s->lcr = val;
		break;
	case SERIAL_MCR:
		s->mcr = val & 0x1f;
		break;
	case SERIAL_SCR:
		s->scr = val;
		break;
	default: /* LSR, MSR: read-only */
		break;
	}
	pthread_mutex_unlock(&s->lock);
}
