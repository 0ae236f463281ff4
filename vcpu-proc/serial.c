// SPDX-License-Identifier: GPL-2.0-only
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/serial.h"

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

void serial_fini(struct serial *s)
{
	serial_flush(s);
	pthread_mutex_destroy(&s->lock);
}

void serial_reset(struct serial *s)
{
	pthread_mutex_lock(&s->lock);
	serial_flush_locked(s);
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
		s->buf[s->len++] = (char)val;
		if (val == '\n' || s->len == sizeof(s->buf))
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
