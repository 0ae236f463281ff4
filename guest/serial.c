// SPDX-License-Identifier: GPL-2.0-only
/*
 * COM1 output and a minimal printf.  Every byte polls the line status
 * register first; one spinlock keeps lines from different vCPUs whole.
 */
#include <stdarg.h>

#include "guest.h"

#define COM1_LSR	 (SERIAL_COM1_PORT + 5)
#define LSR_THR_EMPTY	 0x20
#define LOCK_SPINS_RING0 2000 /* ring 0 is emulated: give up rather than hang */

static char *put_u64(char *p, char *end, uint64_t v, unsigned base)
{
	char tmp[24];
	int n = 0;

	do {
		tmp[n++] = "0123456789abcdef"[v % base];
		v /= base;
	} while (v);
	while (n && p < end)
		*p++ = tmp[--n];
	return p;
}

/* %s %c %d %u %x with an optional l, and %%; always NUL-terminates. */
int gfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
	char *p = buf, *end = buf + size - 1;

	for (; *fmt && p < end; fmt++) {
		bool is_long = false;
		if (*fmt != '%') {
			*p++ = *fmt;
			continue;
		}
		if (*++fmt == 'l') {
			is_long = true;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			for (const char *s = va_arg(ap, const char *); *s && p < end; s++)
				*p++ = *s;
			break;
		case 'c':
			*p++ = (char)va_arg(ap, int);
			break;
		case 'd': {
			int64_t v = is_long ? va_arg(ap, int64_t) : va_arg(ap, int);
			if (v < 0) {
				*p++ = '-';
				v = -v;
			}
			p = put_u64(p, end, (uint64_t)v, 10);
			break;
		}
		case 'u':
		case 'x':
			p = put_u64(p, end, is_long ? va_arg(ap, uint64_t) : va_arg(ap, unsigned),
				    *fmt == 'x' ? 16 : 10);
			break;
		case '%':
			*p++ = '%';
			break;
		default:
			if (!*fmt)
				fmt--;
			break;
		}
	}
	*p = '\0';
	return (int)(p - buf);
}

int gsnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = gfmt(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

static void serial_putc(char ch)
{
	while (!(inb(COM1_LSR) & LSR_THR_EMPTY))
		cpu_relax();
	outb(SERIAL_COM1_PORT, (uint8_t)ch);
}

/*
 * Write s under the serial lock.  !may_wait (ring-0 fatal path): if the lock
 * stays taken, write anyway; the holder may be this very vCPU.
 */
void serial_write_locked(const char *s, bool may_wait)
{
	bool locked = false;

	for (int i = 0; !locked && (may_wait || i < LOCK_SPINS_RING0); i++) {
		locked = !__atomic_exchange_n(&g.serial_lock, 1, __ATOMIC_ACQUIRE);
		if (!locked)
			cpu_relax();
	}
	for (; *s; s++)
		serial_putc(*s);
	if (locked)
		__atomic_store_n(&g.serial_lock, 0, __ATOMIC_RELEASE);
}

void serial_printf(const char *fmt, ...)
{
	char buf[192];
	va_list ap;

	va_start(ap, fmt);
	gfmt(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	serial_write_locked(buf, true);
}
