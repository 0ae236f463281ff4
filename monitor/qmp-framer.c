// SPDX-License-Identifier: GPL-2.0-only
/*
 * Message framing of the QMP input stream: see qmp-framer.h.
 *
 * The scan is incremental: pos remembers how far the current value has been
 * looked at, so a value arriving one byte per write costs O(n) in total.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-framer.h"

static const char mon_framer_err_size[] = "JSON token size limit exceeded";

void mon_framer_init(struct mon_framer *f)
{
	memset(f, 0, sizeof(*f));
}

void mon_framer_fini(struct mon_framer *f)
{
	free(f->buf);
	memset(f, 0, sizeof(*f));
}

size_t mon_framer_pending(const struct mon_framer *f)
{
	return f->len - f->start;
}

/* Drops the bytes before start so the buffer holds only what is pending. */
static void mon_framer_compact(struct mon_framer *f)
{
	if (f->start == 0)
		return;
	memmove(f->buf, f->buf + f->start, f->len - f->start);
	f->len -= f->start;
	f->pos -= f->start;
	f->start = 0;
}

/* Growth policy shared by push and cap_after: doubling from 4 KiB. */
static size_t mon_framer_grow(size_t cap, size_t need)
{
	if (need <= cap)
		return cap;
	cap = cap ? cap : 4096;
	while (cap < need)
		cap *= 2;
	return cap;
}

size_t mon_framer_cap_after(const struct mon_framer *f, size_t len)
{
	/* push compacts first: only the pending bytes stay. */
	return len ? mon_framer_grow(f->cap, mon_framer_pending(f) + len) : f->cap;
}

void mon_framer_trim(struct mon_framer *f)
{
	if (!f->buf || f->len != f->start)
		return;
	free(f->buf);
	f->buf = NULL;
	f->cap = 0;
	/* pos == start == len here: the scan goes on from offset 0 of the next push. */
	f->len = f->start = f->pos = 0;
}

int mon_framer_push(struct mon_framer *f, const void *data, size_t len)
{
	if (!len)
		return 0; /* nothing to copy, and a fresh framer has no buffer yet */
	mon_framer_compact(f);
	if (f->len + len > f->cap) {
		size_t cap = mon_framer_grow(f->cap, f->len + len);
		char *buf;

		buf = realloc(f->buf, cap);
		if (!buf)
			return -ENOMEM;
		f->buf = buf;
		f->cap = cap;
	}
	memcpy(f->buf + f->len, data, len);
	f->len += len;
	return 0;
}

static void mon_framer_reset_value(struct mon_framer *f, size_t next)
{
	f->depth = 0;
	f->in_string = false;
	f->escape = false;
	f->in_scalar = false;
	f->discarding = false;
	f->start = next;
	f->pos = next;
}

/*
 * The current value ends just before @end.  Returns true when it is to be
 * handed out, false when it was being discarded.
 */
static bool mon_framer_finish(struct mon_framer *f, size_t end, struct mon_frame *out)
{
	bool discarded = f->discarding;
	size_t start = f->start;

	mon_framer_reset_value(f, end);
	if (discarded)
		return false;
	/* The byte that closes a value counts: the scan loop checks only between steps. */
	if (end - start > MON_FRAME_MAX_SIZE) {
		out->kind = MON_FRAME_ERROR;
		out->error = mon_framer_err_size;
		return true;
	}
	out->kind = MON_FRAME_VALUE;
	out->data = f->buf + start;
	out->len = end - start;
	return true;
}

static void mon_framer_fail(struct mon_framer *f, struct mon_frame *out, const char *error)
{
	f->discarding = true;
	out->kind = MON_FRAME_ERROR;
	out->error = error;
}

static bool mon_framer_is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool mon_framer_ends_scalar(char c)
{
	return mon_framer_is_space(c) || c == '{' || c == '}' || c == '[' || c == ']' || c == '"' ||
	       c == ',' || c == ':';
}

/* Scans one byte; returns true when *out was filled. */
static bool mon_framer_step(struct mon_framer *f, struct mon_frame *out)
{
	char c = f->buf[f->pos];

	if ((unsigned char)c == 0xFF) {
		/* The client asks for a reset: whatever was open is dropped silently. */
		mon_framer_reset_value(f, f->pos + 1);
		return false;
	}
	if (f->in_scalar) {
		if (mon_framer_ends_scalar(c))
			return mon_framer_finish(f, f->pos, out);
		f->pos++;
		return false;
	}
	f->pos++;
	if (f->in_string) {
		if (f->escape)
			f->escape = false;
		else if (c == '\\')
			f->escape = true;
		else if (c == '"') {
			f->in_string = false;
			if (f->depth == 0)
				return mon_framer_finish(f, f->pos, out);
		}
		return false;
	}
	switch (c) {
	case ' ':
	case '\t':
	case '\r':
	case '\n':
		if (f->depth == 0)
			f->start = f->pos;
		return false;
	case '{':
	case '[':
		f->depth++;
		if (f->depth > MON_FRAME_MAX_DEPTH && !f->discarding) {
			mon_framer_fail(f, out, "JSON nesting depth limit exceeded");
			return true;
		}
		return false;
	case '}':
	case ']':
		if (f->depth == 0) {
			/* A stray closer: report it alone and go on after it. */
			mon_framer_reset_value(f, f->pos);
			out->kind = MON_FRAME_ERROR;
			out->error = "JSON parse error, expecting value";
			return true;
		}
		if (--f->depth == 0)
			return mon_framer_finish(f, f->pos, out);
		return false;
	case '"':
		f->in_string = true;
		return false;
	default:
		if (f->depth == 0)
			f->in_scalar = true;
		return false;
	}
}

void mon_framer_next(struct mon_framer *f, struct mon_frame *out)
{
	out->kind = MON_FRAME_NONE;
	while (f->pos < f->len) {
		if (mon_framer_step(f, out))
			return;
		if (f->discarding) {
			/* Nothing of a discarded value needs keeping. */
			f->start = f->pos;
		} else if (f->pos - f->start > MON_FRAME_MAX_SIZE) {
			mon_framer_fail(f, out, mon_framer_err_size);
			f->start = f->pos;
			return;
		}
	}
}
