// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: one message as an event subscriber receives it, bytes
 * in.  rpc_event_decode() is what rpc_sub_recv() hands out (unpack, version
 * check); the monitor then turns the event into its QMP line
 * (mon_event_from_proto), which must be one JSON object naming the event,
 * with the "data" QEMU sends for it whatever the publisher's strings hold.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "monitor/events.h"
#include "proto/rpc-internal.h"
#include "proto/rpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Events whose QMP form has a "data" member. */
static bool fuzz_event_has_data(const Cleave__Events__Event *ev)
{
	switch (ev->body_case) {
	case CLEAVE__EVENTS__EVENT__BODY_RESET:
	case CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN:
	case CLEAVE__EVENTS__EVENT__BODY_MIGRATION:
	case CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS:
		return true;
	default:
		return false;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	Cleave__Events__Event *ev = rpc_event_decode(data, size);
	struct mon_event *qmp;
	json_t *obj;

	if (!ev)
		return 0;
	qmp = mon_event_from_proto(ev);
	if (qmp) {
		obj = json_loadb(qmp->line, qmp->len, 0, NULL);
		if (!obj || qmp->len < 2 || memcmp(qmp->line + qmp->len - 2, "\r\n", 2) ||
		    strcmp(json_string_value(json_object_get(obj, "event")), qmp->name) ||
		    fuzz_event_has_data(ev) != json_is_object(json_object_get(obj, "data"))) {
			fprintf(stderr, "fuzz-event: bad QMP event line '%.*s'\n", (int)qmp->len,
				qmp->line);
			abort();
		}
		json_decref(obj);
		mon_event_free(qmp);
	}
	rpc_msg_free(&ev->base);
	return 0;
}
