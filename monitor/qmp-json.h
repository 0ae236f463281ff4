/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * What jansson cannot carry of a QMP request, found by a scan of its text.
 *
 * jansson refuses integers outside int64 ("too big integer"); QEMU reads
 * them as uint64 (up to 2^64-1) or as a double, and echoes an id made of
 * them.  So before jansson parses a message, every integer token outside
 * int64 is rewritten as a marked string (MON_JSON_BIGNUM_MARK + its
 * digits), which the schema checker recognises, and the top-level "id" is
 * kept as the client's own text: compacted with QEMU's separators, its
 * tokens (numbers included) exactly as sent.
 */
#ifndef CLEAVE_MONITOR_QMP_JSON_H
#define CLEAVE_MONITOR_QMP_JSON_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* A NUL no client string can hold here: messages with an escaped NUL are not rewritten. */
#define MON_JSON_BIGNUM_MARK	 "\0bignum:"
#define MON_JSON_BIGNUM_MARK_LEN 8

/*
 * Parses one framed message as jansson does (JSON_DECODE_ANY,
 * JSON_REJECT_DUPLICATES), big integers marked.  Returns the value or NULL
 * with @jerr set.  *@id_text: the compact text of the top-level object's
 * "id" member (malloc'd), NULL when there is none.
 */
json_t *mon_json_load(const char *data, size_t len, char **id_text, json_error_t *jerr);

/* The digits of a marked big integer ("-" allowed), or NULL when @v is not one. */
const char *mon_json_bignum(const json_t *v);

#endif
