// SPDX-License-Identifier: GPL-2.0-only
/* Big integers and the id's text of a QMP request: see qmp-json.h. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-json.h"

enum mon_tok_kind {
	MON_TOK_END,
	MON_TOK_PUNCT,	/* { } [ ] , : */
	MON_TOK_STRING, /* with its quotes */
	MON_TOK_NUMBER,
	MON_TOK_WORD, /* true, false, null (or junk jansson refuses later) */
};

struct mon_tok {
	enum mon_tok_kind kind;
	size_t start, len;
};

static bool mon_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The token at or after *pos; *pos moves past it. */
static struct mon_tok mon_json_next(const char *s, size_t n, size_t *pos)
{
	struct mon_tok t = {.kind = MON_TOK_END};
	size_t i = *pos;

	while (i < n && mon_json_space(s[i]))
		i++;
	t.start = i;
	if (i >= n) {
		*pos = i;
		return t;
	}
	if (strchr("{}[],:", s[i])) {
		t.kind = MON_TOK_PUNCT;
		i++;
	} else if (s[i] == '"') {
		t.kind = MON_TOK_STRING;
		for (i++; i < n && s[i] != '"'; i++)
			if (s[i] == '\\')
				i++;
		i = i < n ? i + 1 : n;
	} else {
		t.kind = (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) ? MON_TOK_NUMBER
								       : MON_TOK_WORD;
		while (i < n && !mon_json_space(s[i]) && !strchr("{}[],:\"", s[i]))
			i++;
	}
	t.len = i - t.start;
	*pos = i;
	return t;
}

/* An integer token (no fraction, no exponent) outside int64? */
static bool mon_json_is_big(const char *s, size_t len)
{
	static const char max[] = "9223372036854775807", min[] = "9223372036854775808";
	const char *lim = max;
	size_t i;

	for (i = 0; i < len; i++)
		if (s[i] == '.' || s[i] == 'e' || s[i] == 'E')
			return false;
	if (len && s[0] == '-') {
		s++;
		len--;
		lim = min;
	}
	if (len != sizeof(max) - 1)
		return len > sizeof(max) - 1;
	return memcmp(s, lim, len) > 0;
}

/* The top-level object's "id" value [*start, *end), or false. */
static bool mon_json_find_id(const char *s, size_t n, size_t *start, size_t *end)
{
	size_t pos = 0, vstart = 0;
	int depth = 0;
	bool key_next = false, in_id = false;
	struct mon_tok t;

	while ((t = mon_json_next(s, n, &pos)).kind != MON_TOK_END) {
		char c = s[t.start];

		if (in_id && depth == 1 && t.kind == MON_TOK_PUNCT && (c == ',' || c == '}')) {
			*start = vstart;
			*end = t.start;
			return true;
		}
		if (t.kind == MON_TOK_PUNCT && (c == '{' || c == '[')) {
			depth++;
			key_next = depth == 1 && c == '{';
		} else if (t.kind == MON_TOK_PUNCT && (c == '}' || c == ']')) {
			depth--;
		} else if (t.kind == MON_TOK_PUNCT && c == ',') {
			key_next = depth == 1;
		} else if (key_next && t.kind == MON_TOK_STRING) {
			json_t *k = NULL;

			key_next = false;
			/* An escaped key ("i\u0064") is decoded as jansson would. */
			if (memchr(s + t.start, '\\', t.len))
				k = json_loadb(s + t.start, t.len, JSON_DECODE_ANY, NULL);
			if (k ? !strcmp(json_string_value(k) ? json_string_value(k) : "", "id")
			      : (t.len == 4 && !memcmp(s + t.start, "\"id\"", 4))) {
				in_id = true;
				t = mon_json_next(s, n, &pos); /* ':' */
				vstart = pos;
				while (vstart < n && mon_json_space(s[vstart]))
					vstart++;
			}
			json_decref(k);
		}
	}
	return false;
}

/* The text of [start, end) without white space, with QEMU's ", " and ": ". */
static char *mon_json_compact(const char *s, size_t start, size_t end)
{
	char *out = malloc(2 * (end - start) + 1), *o = out;
	size_t pos = start;
	struct mon_tok t;

	if (!out)
		return NULL;
	while ((t = mon_json_next(s, end, &pos)).kind != MON_TOK_END) {
		memcpy(o, s + t.start, t.len);
		o += t.len;
		if (t.kind == MON_TOK_PUNCT && (s[t.start] == ',' || s[t.start] == ':'))
			*o++ = ' ';
	}
	*o = '\0';
	return out;
}

/* A copy of @s with each big integer token replaced by a marked string; NULL if none. */
static char *mon_json_mark_bignums(const char *s, size_t n, size_t *out_len)
{
	static const char mark[] = "\"\\u0000bignum:";
	size_t pos = 0, nbig = 0, from = 0;
	struct mon_tok t;
	char *out, *o;

	while ((t = mon_json_next(s, n, &pos)).kind != MON_TOK_END) {
		if (t.kind == MON_TOK_NUMBER && mon_json_is_big(s + t.start, t.len))
			nbig++;
		/* A client string with an escaped NUL could pose as a mark: no rewrite. */
		if (t.kind == MON_TOK_STRING && memmem(s + t.start, t.len, "\\u0000", 6))
			return NULL;
	}
	if (!nbig)
		return NULL;
	out = malloc(n + nbig * (sizeof(mark) + 1) + 1);
	if (!out)
		return NULL;
	o = out;
	pos = 0;
	while ((t = mon_json_next(s, n, &pos)).kind != MON_TOK_END) {
		if (t.kind != MON_TOK_NUMBER || !mon_json_is_big(s + t.start, t.len))
			continue;
		memcpy(o, s + from, t.start - from);
		o += t.start - from;
		memcpy(o, mark, sizeof(mark) - 1);
		o += sizeof(mark) - 1;
		memcpy(o, s + t.start, t.len);
		o += t.len;
		*o++ = '"';
		from = t.start + t.len;
	}
	memcpy(o, s + from, n - from);
	o += n - from;
	*out_len = (size_t)(o - out);
	return out;
}

json_t *mon_json_load(const char *data, size_t len, char **id_text, json_error_t *jerr)
{
	const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES;
	size_t marked_len = 0, start, end;
	char *marked = mon_json_mark_bignums(data, len, &marked_len);
	json_t *root;

	*id_text = NULL;
	/* NUL allowed only where the marks are the only NULs (mon_json_mark_bignums). */
	root = marked ? json_loadb(marked, marked_len, flags | JSON_ALLOW_NUL, jerr)
		      : json_loadb(data, len, flags, jerr);
	free(marked);
	if (root && json_is_object(root) && json_object_get(root, "id") &&
	    mon_json_find_id(data, len, &start, &end)) {
		*id_text = mon_json_compact(data, start, end);
		if (!*id_text) {
			json_decref(root);
			snprintf(jerr->text, sizeof(jerr->text), "out of memory");
			return NULL;
		}
	}
	return root;
}

const char *mon_json_bignum(const json_t *v)
{
	const char *s = json_string_value(v);

	if (!s || json_string_length(v) <= MON_JSON_BIGNUM_MARK_LEN ||
	    memcmp(s, MON_JSON_BIGNUM_MARK, MON_JSON_BIGNUM_MARK_LEN))
		return NULL;
	return s + MON_JSON_BIGNUM_MARK_LEN;
}
