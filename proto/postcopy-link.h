/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The postcopy link between cleave-migrator and cleave-vcpu
 * (docs/MIGRATION.md, "Postcopy"): a SOCK_SEQPACKET socketpair the
 * launcher hands to both at spawn, one message per send.  NNG stays for
 * control; faults and pages take this path because it is on a fault's
 * critical path, where an NNG request/reply round trip would cost several
 * times a socketpair's (bench/proto/bench-rpc).
 *
 * cleave-vcpu serves it (vcpu-proc/postcopy-link.c): it owns the
 * userfaultfd and installs every page itself.  The migrator is the less
 * trusted peer: every field is checked before use, and the needed map is
 * read once from the control segment into a private copy.
 *
 *   migrator -> vcpu   LISTEN      register RAM for postcopy: the needed map
 *                                  is the ctl segment's dirty bitmaps; REPLY
 *                      PLACE       @count pages from @page of @region,
 *                                  data inline (none with PCLINK_ZERO); no
 *                                  reply, a failure comes as an ERROR
 *                      AGAIN       a restarted migrator: every request
 *                                  still waiting is sent again
 *                      END         every needed page placed (or
 *                                  PCLINK_ABORT: the guest never ran);
 *                                  REPLY
 *   vcpu -> migrator   FAULTS      @count struct pclink_page entries
 *                      REPLY       to LISTEN / END: @err
 *                      ERROR       a PLACE failed (@err, @region, @page),
 *                                  or a message was refused
 *
 * Integers in host order: both ends run on one host.
 */
#ifndef CLEAVE_PROTO_POSTCOPY_LINK_H
#define CLEAVE_PROTO_POSTCOPY_LINK_H

#include <stdint.h>

#define PCLINK_MAGIC	  0x4b4e4c50u /* "PLNK" */
#define PCLINK_MAX_PAGES  16	      /* pages per PLACE: 64 KiB of data */
#define PCLINK_MAX_FAULTS 64	      /* entries per FAULTS */

enum pclink_type {
	PCLINK_LISTEN = 1,
	PCLINK_PLACE = 2,
	PCLINK_AGAIN = 3,
	PCLINK_END = 4,
	PCLINK_FAULTS = 5,
	PCLINK_REPLY = 6,
	PCLINK_ERROR = 7,
};

#define PCLINK_ZERO  0x1u /* PLACE: zero pages, no data */
#define PCLINK_ABORT 0x2u /* END: the migration failed before the guest ran */

struct pclink_hdr {
	uint32_t magic; /* PCLINK_MAGIC */
	uint32_t type;	/* enum pclink_type */
	uint32_t region;
	uint32_t count; /* PLACE: pages (1..PCLINK_MAX_PAGES); FAULTS: entries */
	uint64_t page;
	int32_t err; /* REPLY, ERROR: 0 or a negative errno */
	uint32_t flags;
};

struct pclink_page {
	uint32_t region;
	uint32_t reserved; /* 0 */
	uint64_t page;
};

_Static_assert(sizeof(struct pclink_hdr) == 32 && sizeof(struct pclink_page) == 16,
	       "postcopy link layout");

#endif
