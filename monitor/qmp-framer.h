/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Splits a QMP input byte stream into JSON messages, before any parsing.
 *
 * A client may send several objects in one write or one object over many
 * writes.  The framer tracks brace/bracket depth outside strings and hands
 * out each complete top-level value; jansson parses it afterwards.  Size
 * and depth limits are enforced here, so jansson never sees a message
 * larger than MON_FRAME_MAX_SIZE or deeper than MON_FRAME_MAX_DEPTH.
 *
 * After an error the framer resynchronises as QEMU does: the rest of the
 * offending value is discarded (until its depth returns to zero), and a
 * 0xFF byte (never valid in UTF-8 JSON) resets it at once.
 */
#ifndef CLEAVE_MONITOR_QMP_FRAMER_H
#define CLEAVE_MONITOR_QMP_FRAMER_H

#include <stdbool.h>
#include <stddef.h>

#define MON_FRAME_MAX_SIZE  (1u << 20) /* bytes in one message */
#define MON_FRAME_MAX_DEPTH 1024       /* nesting of objects and arrays: QEMU 7.2's MAX_NESTING */

enum mon_frame_kind {
	MON_FRAME_NONE,	 /* need more input */
	MON_FRAME_VALUE, /* data/len is one complete top-level value */
	MON_FRAME_ERROR, /* error is QEMU's desc; the framer already resynchronised */
};

struct mon_frame {
	enum mon_frame_kind kind;
	const char *data;  /* MON_FRAME_VALUE: valid until the next framer call */
	size_t len;	   /* MON_FRAME_VALUE */
	const char *error; /* MON_FRAME_ERROR: static string */
};

struct mon_framer {
	char *buf;	 /* received bytes not yet handed out; owned */
	size_t len;	 /* bytes in buf */
	size_t cap;	 /* allocated size of buf */
	size_t start;	 /* offset of the value being scanned */
	size_t pos;	 /* next byte to scan */
	unsigned depth;	 /* open objects/arrays of the current value */
	bool in_string;	 /* pos is inside a string literal */
	bool escape;	 /* previous byte was a backslash inside a string */
	bool in_scalar;	 /* a bare top-level token (number, keyword) is open */
	bool discarding; /* dropping the rest of a bad value until depth 0 */
};

/* init/fini pair; fini frees the buffer and is safe to call twice. */
void mon_framer_init(struct mon_framer *f);
void mon_framer_fini(struct mon_framer *f);

/* Appends received bytes.  Returns 0 or -ENOMEM. */
int mon_framer_push(struct mon_framer *f, const void *data, size_t len);

/* Scans for the next message; fills *out (kind NONE when more input is needed). */
void mon_framer_next(struct mon_framer *f, struct mon_frame *out);

/* Bytes buffered but not yet handed out (for back-pressure). */
size_t mon_framer_pending(const struct mon_framer *f);

/*
 * The buffer size (cap) the framer will have after pushing @len more
 * bytes, so a caller can refuse input before it is allocated.
 */
size_t mon_framer_cap_after(const struct mon_framer *f, size_t len);

/* Frees the buffer when nothing is pending; the scan state is kept. */
void mon_framer_trim(struct mon_framer *f);

#endif
