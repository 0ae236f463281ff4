/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * UTF-8 for messages built into fixed buffers: the RPC layer's error texts
 * and the monitor's QMP error descs.  Both may hold text from outside (a
 * QMP client's command name, a URI, a peer's error message), and JSON
 * encoders refuse the whole reply when such a text is not valid UTF-8 -
 * for instance when a buffer cut a multi-byte character in half.
 *
 * Valid means what JSON (RFC 8259) and jansson accept: shortest forms only,
 * no surrogates, nothing above U+10FFFF.
 */
#ifndef CLEAVE_PROTO_UTF8_H
#define CLEAVE_PROTO_UTF8_H

#include <stdarg.h>
#include <stddef.h>

/*
 * Length of the well-formed character at @s (1..4 bytes), or 0 when the
 * bytes there, of which @avail are available, do not start one.
 */
size_t utf8_char_len(const char *s, size_t avail);

/*
 * The longest prefix of @s[0..len) that does not end inside a multi-byte
 * character: where @s may be cut.
 */
size_t utf8_cut(const char *s, size_t len);

/* vsnprintf() that, when it truncates, cuts at a character boundary. */
int utf8_vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));
int utf8_snprintf(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*
 * Copies the NUL-terminated @src into @buf (@size > 0 bytes, always
 * NUL-terminated) as valid UTF-8: every byte that does not start a
 * well-formed character becomes '?', and a cut falls between characters.
 * For text nobody validated, such as a peer's.  Returns the length copied.
 */
size_t utf8_copy_valid(char *buf, size_t size, const char *src);

#endif
