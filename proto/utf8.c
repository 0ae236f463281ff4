// SPDX-License-Identifier: GPL-2.0-only
/* UTF-8 cutting and cleaning of message texts: see utf8.h. */
#include <stdio.h>
#include <string.h>

#include "proto/utf8.h"

size_t utf8_char_len(const char *s, size_t avail)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf; /* range of the second byte */
	size_t n;

	if (!avail)
		return 0;
	if (u[0] < 0x80)
		return 1;
	if (u[0] < 0xc2 || u[0] > 0xf4)
		return 0; /* a continuation byte, an overlong lead, or beyond U+10FFFF */
	if (u[0] < 0xe0) {
		n = 2;
	} else if (u[0] < 0xf0) {
		n = 3;
		if (u[0] == 0xe0)
			lo = 0xa0; /* overlong */
		else if (u[0] == 0xed)
			hi = 0x9f; /* surrogates */
	} else {
		n = 4;
		if (u[0] == 0xf0)
			lo = 0x90; /* overlong */
		else if (u[0] == 0xf4)
			hi = 0x8f; /* beyond U+10FFFF */
	}
	if (avail < n || u[1] < lo || u[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((u[i] & 0xc0) != 0x80)
			return 0;
	return n;
}

size_t utf8_cut(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t lead = len, need;

	/* A character is at most 4 bytes: look back for its lead byte. */
	while (lead > 0 && len - lead < 4 && (u[lead - 1] & 0xc0) == 0x80)
		lead--;
	if (lead == 0 || u[lead - 1] < 0xc0)
		return len; /* ends after an ASCII byte (or in bytes no cut can mend) */
	lead--;
	need = u[lead] < 0xe0 ? 2 : u[lead] < 0xf0 ? 3 : 4;
	return len - lead < need ? lead : len;
}

int utf8_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	int n = vsnprintf(buf, size, fmt, ap);

	if (size && n >= 0 && (size_t)n >= size)
		buf[utf8_cut(buf, size - 1)] = '\0';
	return n;
}

int utf8_snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = utf8_vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return n;
}

size_t utf8_copy_valid(char *buf, size_t size, const char *src)
{
	size_t in = 0, out = 0, left = strlen(src), n;

	while (left) {
		n = utf8_char_len(src + in, left);
		if (out + (n ? n : 1) > size - 1)
			break;
		if (n) {
			memcpy(buf + out, src + in, n);
		} else {
			buf[out] = '?';
			n = 1;
		}
		out += n;
		in += n;
		left -= n;
	}
	buf[out] = '\0';
	return out;
}
