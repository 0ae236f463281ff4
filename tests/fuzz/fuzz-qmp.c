// SPDX-License-Identifier: GPL-2.0-only
/*
 * libFuzzer harness: one QMP client's input, bytes in.  The framer splits
 * it, each message is parsed and checked, and each accepted command runs
 * against the in-test vcpu-proc and migrator of the monitor unit tests
 * (tests/unit/monitor/fake-backend.c), as a worker thread would run it.
 * As in monitor/client.c the session starts in negotiation mode and a
 * successful qmp_capabilities ends it.
 *
 * Beyond the sanitizers, two properties: no message handed to the parser
 * is larger than MON_FRAME_MAX_SIZE, and every frame gets a reply that
 * encodes (a NULL from mon_reply_format() is what makes the server close a
 * client instead of answering it).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "monitor/qmp-dispatch.h"
#include "monitor/qmp-framer.h"
#include "proto/rpc.h"
#include "tests/unit/monitor/fake-backend.h"

/*
 * Backend commands per input: each is an RPC round trip of about a
 * millisecond.  A backend that does not answer within FUZZ_QMP_RPC_MS uses
 * up the rest, so no input takes much more than that.
 */
#define FUZZ_QMP_MAX_CALLS 32
#define FUZZ_QMP_RPC_MS	   500

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct fake_backend *fuzz_fb;
static struct mon_ctx fuzz_ctx = {.name = "fuzz", .timeout_ms = FUZZ_QMP_RPC_MS};

static void fuzz_qmp_cleanup(void)
{
	rpc_client_close(fuzz_ctx.rpc[MON_BACKEND_VCPU]);
	rpc_client_close(fuzz_ctx.rpc[MON_BACKEND_MIGRATOR]);
	fake_backend_stop(fuzz_fb); /* removes its socket directory */
}

/* Once per process: the backends stay up across inputs. */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	atexit(fuzz_qmp_cleanup);
	if (fake_backend_start(&fuzz_fb) ||
	    rpc_client_open(&fuzz_ctx.rpc[MON_BACKEND_VCPU], fuzz_fb->vcpu_rpc) ||
	    rpc_client_open(&fuzz_ctx.rpc[MON_BACKEND_MIGRATOR], fuzz_fb->mig_rpc)) {
		fprintf(stderr, "fuzz-qmp: cannot start the in-test backends\n");
		abort();
	}
	return 0;
}

/* Each input starts from the fake backends' initial state. */
static void fuzz_qmp_reset(void)
{
	struct fake_backend *fb = fuzz_fb;

	pthread_mutex_lock(&fb->lock);
	fb->running = true;
	fb->events_cap = false;
	fb->multifd_cap = false;
	fb->channels = 2;
	fb->has_reconnect_timeout = false;
	fb->reconnect_timeout = 0;
	fb->mig_status[0] = '\0';
	fb->mig_dest = false;
	fb->resolved[0] = '\0';
	pthread_mutex_unlock(&fb->lock);
	atomic_store(&fuzz_ctx.migration_events, false);
}

static void fuzz_qmp_reply(json_t *id, const struct mon_result *res)
{
	size_t len;
	char *line = mon_reply_format(id, res, &len);

	if (!line) {
		fprintf(stderr,
			"fuzz-qmp: no reply (class %s, desc '%s'): the client would be "
			"disconnected\n",
			res->err_class ? res->err_class : "-", res->err_desc);
		abort();
	}
	free(line);
}

/* One framed message, as mon_client_handle() and mon_client_exec() treat it. */
static void fuzz_qmp_message(const struct mon_frame *f, bool *negotiated, bool *oob,
			     unsigned *calls)
{
	struct mon_result res = {0};
	struct mon_request req;

	if (f->kind == MON_FRAME_ERROR) {
		mon_result_error(&res, NULL, "%s", f->error);
		fuzz_qmp_reply(NULL, &res);
		mon_result_fini(&res);
		return;
	}
	/* What a busy client with 'oob' asks of each message first. */
	(void)mon_request_is_oob(f->data, f->len);
	if (mon_request_parse_oob(f->data, f->len, *negotiated, *oob, &req, &res) == 0) {
		if (req.cmd->backend == MON_BACKEND_NONE || ++*calls <= FUZZ_QMP_MAX_CALLS)
			req.cmd->run(&fuzz_ctx, req.args, &res);
		else
			mon_result_error(&res, NULL, "fuzz-qmp: call budget used up");
		if (res.backend_down)
			*calls = FUZZ_QMP_MAX_CALLS;
		if (!res.err_class && (req.cmd->flags & MON_CMD_CAPABILITIES)) {
			*negotiated = true;
			*oob = mon_capabilities_oob(req.args);
		}
	}
	fuzz_qmp_reply(req.id, &res);
	mon_request_fini(&req);
	mon_result_fini(&res);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct mon_framer framer;
	struct mon_frame f;
	bool negotiated = false, oob = false;
	unsigned calls = 0;

	fuzz_qmp_reset();
	mon_framer_init(&framer);
	if (mon_framer_push(&framer, data, size))
		abort();
	for (;;) {
		mon_framer_next(&framer, &f);
		if (f.kind == MON_FRAME_NONE)
			break;
		if (f.kind == MON_FRAME_VALUE && f.len > MON_FRAME_MAX_SIZE) {
			fprintf(stderr, "fuzz-qmp: a %zu-byte message passed the framer\n", f.len);
			abort();
		}
		fuzz_qmp_message(&f, &negotiated, &oob, &calls);
	}
	mon_framer_fini(&framer);
	return 0;
}
