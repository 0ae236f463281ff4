// SPDX-License-Identifier: GPL-2.0-only
/*
 * Writes the seed corpora of the fuzz harnesses with the project's own
 * encoders: QMP lines by mon_json_format(), RPC envelopes, events and
 * migration messages packed by protobuf-c, channel preambles and page
 * packets from the wire structs, PVH images by the loader tests' ELF
 * builder, control-segment headers by shm_ctl_create(), page maps by
 * mig_pagemap_encode() and snapshot files by snap_create().  Deterministic: the same build writes
 * the same bytes.
 *
 *   fuzz-corpus-gen DIR     writes DIR/<harness>/<seed>
 *
 * tests/fuzz/corpus/ holds its output; scripts/fuzz.sh fuzzes from there.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "migrator/record.h"
#include "migrator/wire.h"
#include "monitor/qmp-dispatch.h"
#include "monitor/qmp-framer.h"
#include "proto/events.pb-c.h"
#include "proto/migrator.pb-c.h"
#include "proto/rpc.h"
#include "proto/rpc.pb-c.h"
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"
#include "shm/snapfile-format.h"
#include "shm/snapfile.h"
#include "tests/unit/vcpu/elf-craft.h"

static const char *gen_dir;

static void gen_fail(const char *what)
{
	fprintf(stderr, "fuzz-corpus-gen: %s: %s\n", what, strerror(errno));
	exit(1);
}

static void gen_write(const char *harness, const char *name, const void *buf, size_t len)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", gen_dir, harness);
	if (mkdir(path, 0755) && errno != EEXIST)
		gen_fail(path);
	snprintf(path, sizeof(path), "%s/%s/%s", gen_dir, harness, name);
	f = fopen(path, "wb");
	if (!f || fwrite(buf, 1, len, f) != len || fclose(f))
		gen_fail(path);
}

/* A growing byte string. */
struct gen_buf {
	uint8_t *data;
	size_t len, cap;
};

static void gen_put(struct gen_buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->data = realloc(b->data, b->cap);
		if (!b->data)
			gen_fail("realloc");
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
}

static void gen_put_msg(struct gen_buf *b, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *p = malloc(len ? len : 1);

	if (!p)
		gen_fail("malloc");
	protobuf_c_message_pack(m, p);
	gen_put(b, p, len);
	free(p);
}

static void gen_puts(struct gen_buf *b, const char *s)
{
	gen_put(b, s, strlen(s));
}

static void gen_flush(struct gen_buf *b, const char *harness, const char *name)
{
	gen_write(harness, name, b->data, b->len);
	free(b->data);
	*b = (struct gen_buf){0};
}

/* @n copies of @unit. */
static char *gen_repeat(const char *unit, size_t n)
{
	size_t len = strlen(unit);
	char *s = malloc(n * len + 1);

	if (!s)
		gen_fail("malloc");
	for (size_t i = 0; i < n; i++)
		memcpy(s + i * len, unit, len);
	s[n * len] = '\0';
	return s;
}

/* ---- qmp: what a client sends, one QMP line per command ---------------- */

/* Appends {"execute": NAME[, "arguments": ARGS][, "id": ID]} (ARGS and ID stolen). */
static void gen_qmp(struct gen_buf *b, const char *name, json_t *args, json_t *id)
{
	json_t *req = json_pack("{s:s}", "execute", name);
	size_t len;
	char *line;

	if (!req || (args && json_object_set_new(req, "arguments", args)) ||
	    (id && json_object_set_new(req, "id", id)))
		gen_fail("json_pack");
	line = mon_json_format(req, &len);
	if (!line)
		gen_fail("mon_json_format");
	gen_put(b, line, len);
	free(line);
	json_decref(req);
}

static void gen_qmp_corpus(void)
{
	static const char *const vm_cmds[] = {
		"query-status",
		"stop",
		"cont",
		"system_reset",
		"query-cpus-fast",
		"query-memory-size-summary",
		"query-name",
		"query-version",
		"query-kvm",
		"query-commands",
	};
	struct gen_buf b = {0};
	char *s, *t;
	size_t len;

	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_flush(&b, "qmp", "negotiate");

	gen_qmp(&b, "qmp_capabilities", json_pack("{s:[]}", "enable"), json_string("neg"));
	for (size_t i = 0; i < sizeof(vm_cmds) / sizeof(vm_cmds[0]); i++)
		gen_qmp(&b, vm_cmds[i], NULL, json_integer((json_int_t)i));
	gen_flush(&b, "qmp", "session-vm");

	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_qmp(&b, "migrate-set-capabilities",
		json_pack("{s:[{s:s,s:b},{s:s,s:b},{s:s,s:b},{s:s,s:b}]}", "capabilities",
			  "capability", "multifd", "state", 1, "capability", "events", "state", 1,
			  "capability", "auto-converge", "state", 0, "capability", "xbzrle",
			  "state", 0),
		NULL);
	gen_qmp(&b, "migrate-set-parameters",
		json_pack("{s:i,s:I,s:i,s:i}", "multifd-channels", 4, "max-bandwidth",
			  (json_int_t)134217728, "downtime-limit", 300, "x-reconnect-timeout", 0),
		NULL);
	gen_qmp(&b, "query-migrate-parameters", NULL, NULL);
	gen_qmp(&b, "query-migrate-capabilities", NULL, NULL);
	gen_qmp(&b, "migrate", json_pack("{s:s,s:b}", "uri", "tcp:127.0.0.1:4", "detach", 1),
		json_string("m"));
	gen_qmp(&b, "query-migrate", NULL, NULL);
	gen_qmp(&b, "migrate_cancel", NULL, NULL);
	gen_qmp(&b, "migrate", json_pack("{s:s}", "uri", "tcp:127.0.0.1:2"), NULL);
	gen_qmp(&b, "x-cleave-migrate-resolve", json_pack("{s:s}", "run-on", "destination"), NULL);
	gen_qmp(&b, "migrate-incoming", json_pack("{s:s}", "uri", "tcp:127.0.0.1:0"), NULL);
	gen_flush(&b, "qmp", "session-migrate");

	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_qmp(&b, "migrate", json_pack("{s:s}", "uri", "tcp:127.0.0.1:1"), NULL);
	gen_qmp(&b, "migrate", json_pack("{s:s}", "uri", "tcp:127.0.0.1:3"), NULL);
	gen_qmp(&b, "query-migrate", NULL, NULL);
	gen_qmp(&b, "quit", NULL, json_pack("{s:[i,n,b,f]}", "a", 1, 0, 1.5));
	gen_flush(&b, "qmp", "session-quit");

	/* Errors the framer and the parser report, each followed by a good command. */
	gen_puts(&b, "{\"execute\":\"query-name\"}");
	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_puts(&b, "}{\"execute\":\"query-name\",\"execute\":\"quit\"}");
	gen_puts(&b, "{\"execute\":42,\"id\":7}[1,2]\"str\" 12 true ");
	gen_puts(&b, "{\"execute\":\"nope\",\"arguments\":{}}");
	gen_puts(&b, "{\"a\":[\xff{\"execute\":\"query-kvm\"}");
	s = gen_repeat("[", MON_FRAME_MAX_DEPTH + 1);
	t = gen_repeat("]", MON_FRAME_MAX_DEPTH + 1);
	gen_puts(&b, s);
	gen_puts(&b, t);
	free(s);
	free(t);
	gen_qmp(&b, "query-version", NULL, NULL);
	gen_flush(&b, "qmp", "errors");

	/* Regression: a 200-character non-ASCII command name cut mid-character. */
	s = gen_repeat("é", 200);
	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_qmp(&b, s, NULL, NULL);
	gen_qmp(&b, "query-name", NULL, NULL);
	gen_flush(&b, "qmp", "regress-utf8-command-name");
	free(s);

	/* Regression: a backend's error quoting a non-ASCII URI, cut by its RPC layer. */
	s = gen_repeat("€", 100);
	t = malloc(strlen(s) + 16);
	if (!t)
		gen_fail("malloc");
	sprintf(t, "tcp:%s:1", s);
	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	gen_qmp(&b, "migrate", json_pack("{s:s}", "uri", t), NULL);
	gen_qmp(&b, "query-name", NULL, NULL);
	gen_flush(&b, "qmp", "regress-utf8-relayed-error");
	free(t);
	free(s);

	/* Regression: a value whose closing byte is one past MON_FRAME_MAX_SIZE. */
	gen_qmp(&b, "qmp_capabilities", NULL, NULL);
	len = b.len;
	s = gen_repeat("x", MON_FRAME_MAX_SIZE + 1 - strlen("{\"execute\": \"\"}"));
	gen_qmp(&b, s, NULL, NULL);
	if (b.len - len != MON_FRAME_MAX_SIZE + 1 + 2) /* and its CRLF */
		gen_fail("the over-limit value has the wrong size");
	gen_qmp(&b, "query-name", NULL, NULL);
	gen_flush(&b, "qmp", "regress-frame-size-plus-one");
	free(s);
}

/* ---- rpc: request envelopes for both services --------------------------- */

static void gen_rpc(const char *name, uint32_t version, uint32_t method,
		    const ProtobufCMessage *body)
{
	Cleave__Rpc__Request env = CLEAVE__RPC__REQUEST__INIT;
	struct gen_buf packed = {0}, b = {0};

	if (body)
		gen_put_msg(&packed, body);
	env.version = version;
	env.method = method;
	env.body.data = packed.data;
	env.body.len = packed.len;
	gen_put_msg(&b, &env.base);
	gen_flush(&b, "rpc", name);
	free(packed.data);
}

static void gen_rpc_corpus(void)
{
	Cleave__Vcpu__PauseRequest pause = CLEAVE__VCPU__PAUSE_REQUEST__INIT;
	Cleave__Vcpu__DirtyLogRequest dirty = CLEAVE__VCPU__DIRTY_LOG_REQUEST__INIT;
	Cleave__Vcpu__ThrottleRequest thr = CLEAVE__VCPU__THROTTLE_REQUEST__INIT;
	Cleave__Vcpu__LoadStateRequest load = CLEAVE__VCPU__LOAD_STATE_REQUEST__INIT;
	Cleave__Vcpu__VmState vs = CLEAVE__VCPU__VM_STATE__INIT;
	Cleave__Vcpu__VcpuState cpu[2] = {CLEAVE__VCPU__VCPU_STATE__INIT,
					  CLEAVE__VCPU__VCPU_STATE__INIT};
	Cleave__Vcpu__VcpuState *cpus[2] = {&cpu[0], &cpu[1]};
	Cleave__Vcpu__Msr msr = CLEAVE__VCPU__MSR__INIT, *msrs[1] = {&msr};
	Cleave__Migrator__MigrateRequest mig = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	Cleave__Migrator__IncomingRequest inc = CLEAVE__MIGRATOR__INCOMING_REQUEST__INIT;
	Cleave__Migrator__Capabilities caps = CLEAVE__MIGRATOR__CAPABILITIES__INIT;
	Cleave__Migrator__Parameters par = CLEAVE__MIGRATOR__PARAMETERS__INIT;
	Cleave__Migrator__ResolveRequest res = CLEAVE__MIGRATOR__RESOLVE_REQUEST__INIT;
	static uint8_t regs[144], sregs[312];
	struct gen_buf state = {0};
	char *s, *uri;

	gen_rpc("vcpu-status", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL);
	pause.state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE;
	gen_rpc("vcpu-pause", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_PAUSE, &pause.base);
	gen_rpc("vcpu-resume", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_RESUME, NULL);
	dirty.enable = true;
	gen_rpc("vcpu-dirty-log", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_DIRTY_LOG, &dirty.base);
	gen_rpc("vcpu-harvest", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_HARVEST, NULL);
	thr.percent = 50;
	gen_rpc("vcpu-throttle", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_THROTTLE, &thr.base);
	gen_rpc("vcpu-quit", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_QUIT, NULL);

	/* A VmState as vm_state_save() packs one: version 1, a vCPU per index. */
	for (unsigned int i = 0; i < 2; i++) {
		cpu[i].index = i;
		cpu[i].regs = (ProtobufCBinaryData){sizeof(regs), regs};
		cpu[i].sregs = (ProtobufCBinaryData){sizeof(sregs), sregs};
		cpu[i].n_msrs = 1;
		cpu[i].msrs = msrs;
	}
	msr.index = 0x4b564d01; /* MSR_KVM_SYSTEM_TIME_NEW */
	msr.data = 0x1001;
	vs.version = 1;
	vs.n_vcpus = 2;
	vs.vcpus = cpus;
	vs.clock_ns = 123456789;
	vs.realtime_ns = 1700000000000000000ull;
	vs.run_state = CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING;
	gen_put_msg(&state, &vs.base);
	load.state = (ProtobufCBinaryData){state.len, state.data};
	gen_rpc("vcpu-load-state", RPC_VERSION, CLEAVE__VCPU__METHOD__METHOD_LOAD_STATE,
		&load.base);
	free(state.data);

	mig.uri = "tcp:127.0.0.1:4444";
	gen_rpc("mig-migrate", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mig.base);
	inc.uri = "tcp:0.0.0.0:4444";
	gen_rpc("mig-incoming", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_INCOMING, &inc.base);
	caps.multifd = caps.has_multifd = true;
	caps.events = caps.has_events = true;
	caps.has_auto_converge = true;
	gen_rpc("mig-set-caps", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_SET_CAPABILITIES,
		&caps.base);
	par.multifd_channels = 8;
	par.has_multifd_channels = true;
	par.downtime_limit = 300;
	par.has_downtime_limit = true;
	par.max_bandwidth = 1 << 30;
	par.has_max_bandwidth = true;
	par.reconnect_timeout = 10000;
	par.has_reconnect_timeout = true;
	gen_rpc("mig-set-params", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_SET_PARAMETERS,
		&par.base);
	res.run_on = "source";
	gen_rpc("mig-resolve", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_RESOLVE, &res.base);
	gen_rpc("mig-query", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL);
	gen_rpc("bad-version", RPC_VERSION + 1, CLEAVE__VCPU__METHOD__METHOD_STATUS, NULL);

	/* Regression: an error text quoting a long non-ASCII URI is cut mid-character. */
	s = gen_repeat("é", 200);
	uri = malloc(strlen(s) + 16);
	if (!uri)
		gen_fail("malloc");
	sprintf(uri, "tcp:%s:1", s);
	mig.uri = uri;
	gen_rpc("regress-utf8-uri", RPC_VERSION, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE,
		&mig.base);
	free(uri);
	free(s);
}

/* ---- event: what publishers send ----------------------------------------- */

static void gen_event(const char *name, Cleave__Events__Event *ev)
{
	struct gen_buf b = {0};

	ev->version = RPC_VERSION;
	ev->publisher = ev->body_case == CLEAVE__EVENTS__EVENT__BODY_MIGRATION ||
					ev->body_case == CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS
				? "migrator"
				: "vcpu";
	ev->publisher_id = 0x1234567890abcdefull;
	ev->seq = 7;
	ev->timestamp_us = 1700000000123456ull;
	gen_put_msg(&b, &ev->base);
	gen_flush(&b, "event", name);
}

static void gen_event_corpus(void)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Stop stop = CLEAVE__EVENTS__STOP__INIT;
	Cleave__Events__Resume resume = CLEAVE__EVENTS__RESUME__INIT;
	Cleave__Events__Reset reset = CLEAVE__EVENTS__RESET__INIT;
	Cleave__Events__Shutdown sd = CLEAVE__EVENTS__SHUTDOWN__INIT;
	Cleave__Events__Migration m = CLEAVE__EVENTS__MIGRATION__INIT;
	Cleave__Events__MigrationPass pass = CLEAVE__EVENTS__MIGRATION_PASS__INIT;

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_STOP;
	ev.stop = &stop;
	gen_event("stop", &ev);
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESUME;
	ev.resume = &resume;
	gen_event("resume", &ev);
	reset.reason = "host-qmp-system-reset";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	ev.reset = &reset;
	gen_event("reset", &ev);
	sd.guest = true;
	sd.reason = "guest-shutdown";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN;
	ev.shutdown = &sd;
	gen_event("shutdown", &ev);
	m.status = "active";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
	ev.migration = &m;
	gen_event("migration", &ev);
	m.detail = "resumed";
	m.restarts = 1;
	m.resumes = 2;
	m.resent_bytes = 8192;
	gen_event("migration-resumed", &ev);
	/* Regression: a publisher's strings that are not UTF-8 lost the event's data. */
	m.detail = "r\xb1sumed";
	gen_event("regress-detail-not-utf8", &ev);
	reset.reason = "host-\xff";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	gen_event("regress-reason-not-utf8", &ev);
	pass.pass = 3;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
	ev.migration_pass = &pass;
	gen_event("migration-pass", &ev);
}

/* ---- loader: PVH images --------------------------------------------------- */

static void gen_elf(const char *name, const struct elf_craft *c)
{
	uint8_t *buf = malloc(elf_craft_size(c));
	size_t len;

	if (!buf)
		gen_fail("malloc");
	len = elf_craft_build(c, buf);
	gen_write("loader", name, buf, len);
	free(buf);
}

static void gen_loader_corpus(void)
{
	static uint8_t code[64];
	struct elf_craft c = {.entry = 0x100010, .nr_segs = 2};

	for (size_t i = 0; i < sizeof(code); i++)
		code[i] = (uint8_t)(0x90 + i % 7);
	/* As the fuzzer's RAM: 2 MiB at 0, 64 KiB at 4 GiB. */
	c.segs[0] = (struct elf_craft_seg){0x100000, code, sizeof(code), 0x2000};
	c.segs[1] = (struct elf_craft_seg){0x180000, code, 16, 16};
	gen_elf("elf32", &c);
	c.is64 = true;
	c.segs[1].paddr = (4ull << 30) + 0x1000;
	gen_elf("elf64-high", &c);
	c.note_descsz = 8;
	gen_elf("elf64-note8", &c);
	c.note_descsz = 0;
	c.nr_segs = 1;
	c.segs[0].paddr = 0x5000; /* ends inside the boot-info area */
	c.entry = 0x5000;
	gen_elf("elf64-boot-overlap", &c);
}

/* ---- ctl: control-segment headers ----------------------------------------- */

static void gen_ctl(const char *name, const struct shm_ctl_layout *layout)
{
	struct shm_ctl c;

	if (shm_ctl_create(&c, layout))
		gen_fail("shm_ctl_create");
	/* The header is all a reader trusts nothing of; the harness sizes the memfd. */
	gen_write("ctl", name, c.hdr, sizeof(*c.hdr));
	shm_ctl_close(&c);
}

static void gen_ctl_corpus(void)
{
	struct shm_ctl_layout one = {.nr_regions = 1, .size = {1u << 20}};
	struct shm_ctl_layout two = {
		.nr_regions = 2, .gpa = {0, 4ull << 30}, .size = {3u << 20, 1u << 20}};
	struct shm_ctl_layout eight = {.nr_regions = SHM_MAX_REGIONS};

	for (unsigned int i = 0; i < SHM_MAX_REGIONS; i++) {
		eight.gpa[i] = (uint64_t)i << 20;
		eight.size[i] = (i + 1) * SHM_PAGE_SIZE;
	}
	gen_ctl("one-region", &one);
	gen_ctl("two-regions", &two);
	gen_ctl("eight-regions", &eight);
}

/* ---- mig-dest: a source's main connection and one channel ------------------ */

/* Must match fuzz-mig-dest.c's layout. */
static const uint64_t gen_mig_gpa[2] = {0, 1u << 20};
static const uint64_t gen_mig_size[2] = {64u << 10, 32u << 10};
static const uint8_t gen_sid[16] = {0xc1, 0xea, 0x7e, 0x5e, 0x55, 0x10, 0x4e, 0x1d,
				    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};

/* A main-channel message: 4-byte little-endian length, then the packed WireMsg. */
static void gen_wire(struct gen_buf *b, Cleave__Wire__WireMsg *m)
{
	uint32_t len = (uint32_t)cleave__wire__wire_msg__get_packed_size(m);

	gen_put(b, &len, sizeof(len));
	gen_put_msg(b, &m->base);
}

/* A fresh Hello; @postcopy: the source may switch to postcopy. */
static void gen_hello_pc(struct gen_buf *b, uint32_t channels, bool postcopy)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Hello h = CLEAVE__WIRE__HELLO__INIT;
	Cleave__Wire__Region r[2] = {CLEAVE__WIRE__REGION__INIT, CLEAVE__WIRE__REGION__INIT};
	Cleave__Wire__Region *rs[2] = {&r[0], &r[1]};

	for (unsigned int i = 0; i < 2; i++) {
		r[i].gpa = gen_mig_gpa[i];
		r[i].size = gen_mig_size[i];
	}
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.session_id = (ProtobufCBinaryData){sizeof(gen_sid), (uint8_t *)gen_sid};
	h.epoch = 1;
	h.n_regions = 2;
	h.regions = rs;
	h.channels = channels;
	h.page_size = SHM_PAGE_SIZE;
	h.postcopy = postcopy;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO;
	m.hello = &h;
	gen_wire(b, &m);
}

static void gen_hello(struct gen_buf *b, uint32_t channels)
{
	gen_hello_pc(b, channels, false);
}

static void gen_round(struct gen_buf *b, uint64_t round, uint64_t pages)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Round r = CLEAVE__WIRE__ROUND__INIT;

	r.round = round;
	r.pages = pages;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND;
	m.round = &r;
	gen_wire(b, &m);
}

static void gen_device_state(struct gen_buf *b, uint64_t final_round)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__DeviceState ds = CLEAVE__WIRE__DEVICE_STATE__INIT;

	ds.final_round = final_round;
	ds.state = (ProtobufCBinaryData){12, (uint8_t *)"vmstate:cpu0"};
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_DEVICE_STATE;
	m.device_state = &ds;
	gen_wire(b, &m);
}

static void gen_simple(struct gen_buf *b, int body)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Commit commit = CLEAVE__WIRE__COMMIT__INIT;
	Cleave__Wire__Progress progress = CLEAVE__WIRE__PROGRESS__INIT;
	Cleave__Wire__Error err = CLEAVE__WIRE__ERROR__INIT;

	m.body_case = body;
	if (body == CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT) {
		m.commit = &commit;
	} else if (body == CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS) {
		progress.bytes = 65536;
		m.progress = &progress;
	} else {
		err.reason = "migration cancelled";
		m.error = &err;
	}
	gen_wire(b, &m);
}

static void gen_chan_hello(struct gen_buf *b, uint32_t index)
{
	struct mig_chan_hello ch = {
		.magic = MIG_CHAN_MAGIC, .version = WIRE_VERSION, .index = index};

	memcpy(ch.session_id, gen_sid, sizeof(gen_sid));
	gen_put(b, &ch, sizeof(ch));
}

/* One packet of @n pages at @offsets of @region; pages without MIG_PAGE_ZERO carry data. */
static void gen_packet(struct gen_buf *b, uint32_t region, uint64_t round, const uint64_t *offsets,
		       uint32_t n)
{
	struct mig_pkt_hdr h = {
		.magic = MIG_PKT_MAGIC, .region = region, .nr_pages = n, .round = round};
	static uint8_t page[SHM_PAGE_SIZE];

	for (size_t i = 0; i < sizeof(page); i++)
		page[i] = (uint8_t)(i * 13 + region);
	gen_put(b, &h, sizeof(h));
	gen_put(b, offsets, n * sizeof(*offsets));
	for (uint32_t i = 0; i < n; i++)
		if (!(offsets[i] & MIG_PAGE_ZERO))
			gen_put(b, page, sizeof(page));
}

static void gen_sync(struct gen_buf *b, uint64_t round, bool final)
{
	struct mig_pkt_hdr h = {.magic = MIG_PKT_MAGIC,
				.flags = MIG_PKT_SYNC | (final ? MIG_PKT_FINAL : 0),
				.round = round};

	gen_put(b, &h, sizeof(h));
}

/* @harness's input: u16 length of @main, @main, then @chan. */
static void gen_mig_to(const char *harness, const char *name, struct gen_buf *main,
		       struct gen_buf *chan)
{
	struct gen_buf b = {0};
	uint8_t len[2] = {(uint8_t)main->len, (uint8_t)(main->len >> 8)};

	if (main->len > 0x7fff)
		gen_fail("main part too long");
	gen_put(&b, len, 2);
	gen_put(&b, main->data, main->len);
	gen_put(&b, chan->data, chan->len);
	gen_flush(&b, harness, name);
	free(main->data);
	free(chan->data);
	*main = *chan = (struct gen_buf){0};
}

static void gen_mig(const char *name, struct gen_buf *main, struct gen_buf *chan)
{
	gen_mig_to("mig-dest", name, main, chan);
}

/* The same with two channels: "2CH:", u16 length of @c0, @c0, then @c1. */
static void gen_mig2(const char *name, struct gen_buf *main, struct gen_buf *c0, struct gen_buf *c1)
{
	struct gen_buf c = {0};
	uint8_t len[2] = {(uint8_t)c0->len, (uint8_t)(c0->len >> 8)};

	gen_put(&c, "2CH:", 4);
	gen_put(&c, len, 2);
	gen_put(&c, c0->data, c0->len);
	gen_put(&c, c1->data, c1->len);
	free(c0->data);
	free(c1->data);
	*c0 = *c1 = (struct gen_buf){0};
	gen_mig(name, main, &c);
}

static void gen_mig_corpus(void)
{
	const uint64_t r0[] = {0, SHM_PAGE_SIZE | MIG_PAGE_ZERO, 5 * SHM_PAGE_SIZE};
	const uint64_t r1[] = {7 * SHM_PAGE_SIZE};
	const uint64_t again[] = {5 * SHM_PAGE_SIZE};
	struct gen_buf m = {0}, c = {0};

	/* A whole migration: two rounds, the final one in the device phase. */
	gen_hello(&m, 1);
	gen_round(&m, 0, 4);
	gen_simple(&m, CLEAVE__WIRE__WIRE_MSG__BODY_PROGRESS);
	gen_device_state(&m, 1);
	gen_simple(&m, CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT);
	gen_chan_hello(&c, 0);
	gen_packet(&c, 0, 0, r0, 3);
	gen_packet(&c, 1, 0, r1, 1);
	gen_sync(&c, 0, false);
	gen_packet(&c, 0, 1, again, 1);
	gen_sync(&c, 1, true);
	gen_mig("complete", &m, &c);

	/* The source gives up after the first round. */
	gen_hello(&m, 1);
	gen_round(&m, 0, 1);
	gen_simple(&m, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR);
	gen_chan_hello(&c, 0);
	gen_packet(&c, 1, 0, r1, 1);
	gen_sync(&c, 0, false);
	gen_mig("source-error", &m, &c);

	/* Two channels announced, one comes: the destination times out accepting. */
	gen_hello(&m, 2);
	gen_chan_hello(&c, 1);
	gen_sync(&c, 0, true);
	gen_mig("channel-missing", &m, &c);

	/* Only a Hello, and a channel with a stray index. */
	gen_hello(&m, 1);
	gen_chan_hello(&c, 3);
	gen_mig("bad-channel-index", &m, &c);

	/* Regression: Round 1 announced after the only channel's FINAL in round 0. */
	gen_hello(&m, 1);
	gen_round(&m, 1, 0);
	gen_chan_hello(&c, 0);
	gen_sync(&c, 0, true);
	gen_mig("regress-round-after-final", &m, &c);

	/* Regression: channel 0 ends in round 0, channel 1 goes on to round 1. */
	{
		struct gen_buf c1 = {0};

		gen_hello(&m, 2);
		gen_device_state(&m, 1);
		gen_chan_hello(&c, 0);
		gen_sync(&c, 0, true);
		gen_chan_hello(&c1, 1);
		gen_sync(&c1, 0, false);
		gen_sync(&c1, 1, true);
		gen_mig2("regress-final-disagree", &m, &c, &c1);
	}
}

/* ---- mig-dest-pc: a source that switches to postcopy ----------------------- */

/*
 * Postcopy at round @final_round (0: nothing landed before), the needed
 * pages @r0 of region 0 and @r1 of region 1 (bit maps of their pages);
 * @bad_region: a third map naming a region that does not exist.
 */
static void gen_postcopy(struct gen_buf *b, uint64_t final_round, uint64_t r0, uint64_t r1,
			 bool bad_region)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Postcopy pc = CLEAVE__WIRE__POSTCOPY__INIT;
	Cleave__Wire__PageMap pm[3], *pms[3] = {&pm[0], &pm[1], &pm[2]};
	const uint64_t maps[3] = {r0, r1, 1};

	for (uint32_t r = 0; r < 3; r++)
		if (mig_pagemap_encode(&maps[r], gen_mig_size[r % 2] / SHM_PAGE_SIZE,
				       r == 2 ? 9 : r, &pm[r]))
			gen_fail("mig_pagemap_encode");
	pc.final_round = final_round;
	pc.n_needed = bad_region ? 3 : 2;
	pc.needed = pms;
	pc.state = (ProtobufCBinaryData){12, (uint8_t *)"vmstate:cpu0"};
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY;
	m.postcopy = &pc;
	gen_wire(b, &m);
	for (uint32_t r = 0; r < 3; r++)
		mig_pagemap_release(&pm[r]);
}

/* An answer to a page request: @count pages of @region from @page. */
static void gen_postcopy_pages(struct gen_buf *b, uint32_t region, uint64_t page, uint32_t count)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__PostcopyPages pp = CLEAVE__WIRE__POSTCOPY_PAGES__INIT;
	static uint8_t data[2 * SHM_PAGE_SIZE];

	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i * 7 + region);
	pp.region = region;
	pp.page = page;
	pp.count = count;
	pp.data = (ProtobufCBinaryData){(count < 2 ? count : 2) * SHM_PAGE_SIZE, data};
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_POSTCOPY_PAGES;
	m.postcopy_pages = &pp;
	gen_wire(b, &m);
}

static void gen_mig_pc_corpus(void)
{
	const uint64_t push0[] = {0, 3 * SHM_PAGE_SIZE | MIG_PAGE_ZERO};
	const uint64_t push1[] = {7 * SHM_PAGE_SIZE};
	struct gen_buf m = {0}, c = {0};

	/*
	 * A whole postcopy: switch at once, Commit, page 5 on request; the
	 * push brings pages 0 and 3 of region 0 and page 7 of region 1.
	 */
	gen_hello_pc(&m, 1, true);
	gen_postcopy(&m, 0, 0x29, 0x80, false);
	gen_simple(&m, CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT);
	gen_postcopy_pages(&m, 0, 5, 1);
	gen_chan_hello(&c, 0);
	gen_packet(&c, 0, 0, push0, 2);
	gen_packet(&c, 1, 0, push1, 1);
	gen_sync(&c, 0, true);
	gen_mig_to("mig-dest-pc", "complete", &m, &c);

	/* A needed map of a region that does not exist: refused before anything is punched. */
	gen_hello_pc(&m, 1, true);
	gen_postcopy(&m, 0, 0x3, 0, true);
	gen_chan_hello(&c, 0);
	gen_mig_to("mig-dest-pc", "bad-needed-map", &m, &c);

	/* Postcopy at a round that did not land. */
	gen_hello_pc(&m, 1, true);
	gen_postcopy(&m, 2, 0x3, 0, false);
	gen_chan_hello(&c, 0);
	gen_mig_to("mig-dest-pc", "wrong-round", &m, &c);

	/* After the Commit: pages past the region's end, then a count its data does not carry. */
	gen_hello_pc(&m, 1, true);
	gen_postcopy(&m, 0, 0x1, 0, false);
	gen_simple(&m, CLEAVE__WIRE__WIRE_MSG__BODY_COMMIT);
	gen_postcopy_pages(&m, 1, 7, 2);
	gen_postcopy_pages(&m, 0, 0, 3);
	gen_chan_hello(&c, 0);
	gen_mig_to("mig-dest-pc", "bad-pages", &m, &c);

	/* A DeviceState after the switch. */
	gen_hello_pc(&m, 1, true);
	gen_postcopy(&m, 0, 0x1, 0, false);
	gen_device_state(&m, 0);
	gen_chan_hello(&c, 0);
	gen_mig_to("mig-dest-pc", "device-state-in-postcopy", &m, &c);
}

/* ---- mig-src: what a destination says to a resuming source ----------------- */

/* Must match fuzz-mig-src.c's layout: one region of 64 KiB. */
#define GEN_SRC_PAGES 16

static void gen_hello_ack(struct gen_buf *b, uint32_t phase, uint64_t landed, bool with_map)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__HelloAck ack = CLEAVE__WIRE__HELLO_ACK__INIT;
	uint64_t map[1] = {0x5ull}; /* pages 0 and 2 landed since */
	Cleave__Wire__PageMap pm, *pms[1] = {&pm};

	ack.phase = phase;
	ack.rounds_landed = landed;
	if (with_map) {
		if (mig_pagemap_encode(map, GEN_SRC_PAGES, 0, &pm))
			gen_fail("mig_pagemap_encode");
		if (landed) {
			ack.n_round = 1;
			ack.round = pms;
		} else {
			ack.n_received = 1;
			ack.received = pms;
		}
	}
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO_ACK;
	m.hello_ack = &ack;
	gen_wire(b, &m);
	if (with_map)
		mig_pagemap_release(&pm);
}

static void gen_round_ack(struct gen_buf *b, uint64_t round)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__RoundAck r = CLEAVE__WIRE__ROUND_ACK__INIT;

	r.round = round;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_ROUND_ACK;
	m.round_ack = &r;
	gen_wire(b, &m);
}

static void gen_empty(struct gen_buf *b, int body)
{
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT;
	Cleave__Wire__Loaded loaded = CLEAVE__WIRE__LOADED__INIT;
	Cleave__Wire__Complete complete = CLEAVE__WIRE__COMPLETE__INIT;

	m.body_case = body;
	if (body == CLEAVE__WIRE__WIRE_MSG__BODY_LOADED)
		m.loaded = &loaded;
	else
		m.complete = &complete;
	gen_wire(b, &m);
}

static void gen_mig_src_corpus(void)
{
	struct gen_buf b = {0};

	/* Round 0 landed, two pages since; then the rounds, the state, the end. */
	gen_hello_ack(&b, MIG_PHASE_DST_RECEIVING, 1, true);
	for (uint64_t r = 1; r < 4; r++)
		gen_round_ack(&b, r);
	gen_empty(&b, CLEAVE__WIRE__WIRE_MSG__BODY_LOADED);
	gen_empty(&b, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE);
	gen_flush(&b, "mig-src", "resume-receiving");

	/* Round 0 not landed yet: the received map. */
	gen_hello_ack(&b, MIG_PHASE_DST_RECEIVING, 0, true);
	gen_round_ack(&b, 1);
	gen_flush(&b, "mig-src", "resume-round0");

	/* A destination that claims what this source never sent. */
	gen_hello_ack(&b, MIG_PHASE_DST_LOADED, 2, false);
	gen_empty(&b, CLEAVE__WIRE__WIRE_MSG__BODY_COMPLETE);
	gen_flush(&b, "mig-src", "claims-loaded");
	gen_hello_ack(&b, MIG_PHASE_DST_RUNNING, 0, false);
	gen_flush(&b, "mig-src", "claims-running");

	/* Stale acks, then an Error. */
	gen_hello_ack(&b, MIG_PHASE_DST_RECEIVING, 1, false);
	gen_round_ack(&b, 0);
	gen_round_ack(&b, 0);
	gen_simple(&b, CLEAVE__WIRE__WIRE_MSG__BODY_ERROR);
	gen_flush(&b, "mig-src", "stale-acks");
}

/* ---- pagemap: HelloAck page maps -------------------------------------------- */

static void gen_pagemap(const char *name, const uint64_t *map, uint64_t nbits, uint32_t region)
{
	Cleave__Wire__PageMap pm;
	struct gen_buf b = {0};
	uint8_t pages[2] = {(uint8_t)(nbits - 1), (uint8_t)((nbits - 1) >> 8)};

	if (mig_pagemap_encode(map, nbits, region, &pm))
		gen_fail("mig_pagemap_encode");
	gen_put(&b, pages, 2);
	gen_put_msg(&b, &pm.base);
	gen_flush(&b, "pagemap", name);
	mig_pagemap_release(&pm);
}

static void gen_pagemap_corpus(void)
{
	/* Three runs in 16 words: sent as runs; the dense map as raw words. */
	uint64_t runs[16] = {0x00000000ffff0000ull, 0x1ull, [15] = 0x8000000000000000ull};
	uint64_t dense[4] = {0x5555555555555555ull, 0xaaaaaaaaaaaaaaaaull, 0x0f0f0f0f0f0f0f0full,
			     0x7ull};

	gen_pagemap("runs", runs, 1024, 0);
	gen_pagemap("raw", dense, 195, 1); /* nothing past the region's 195 pages */
	gen_pagemap("empty", runs + 2, 64, 2);
}

/* ---- snapfile: snapshot files ------------------------------------------------ */

/*
 * A complete snapshot of @layout (chunk 0 of region 0 holding data, a
 * small device state), as the harness takes it: the header, the checksum
 * table, the first region's first chunk.
 */
static void gen_snapfile(const char *name, const struct shm_ctl_layout *layout)
{
	struct snap_disk_header h;
	struct snap_file f;
	struct gen_buf b = {0};
	uint8_t *chunk = calloc(1, SNAP_CHUNK_SIZE);
	int fd = memfd_create("gen-snap", MFD_CLOEXEC);

	if (!chunk || fd < 0)
		gen_fail("snapfile");
	for (size_t i = 0; i < SNAP_CHUNK_SIZE; i++)
		chunk[i] = (uint8_t)(i * 7 + 1);
	if (snap_create(&f, fd, layout) || snap_write_chunk(&f, 0, 0, chunk) ||
	    snap_write_state(&f, "vmstate:seed", 12) || snap_finish(&f))
		gen_fail("snap_create");
	snap_close(&f);
	if (pread(fd, &h, sizeof(h), 0) != (ssize_t)sizeof(h))
		gen_fail("snapfile header");
	gen_put(&b, &h, sizeof(h));
	{
		size_t n = h.nr_chunks * sizeof(uint32_t);
		uint8_t *table = malloc(n);

		if (!table || pread(fd, table, n, (off_t)h.crc_offset) != (ssize_t)n)
			gen_fail("snapfile table");
		gen_put(&b, table, n);
		free(table);
	}
	gen_put(&b, chunk, SNAP_CHUNK_SIZE);
	gen_write("snapfile", name, b.data, b.len);
	free(b.data);
	free(chunk);
	close(fd);
}

static void gen_snapfile_corpus(void)
{
	const struct shm_ctl_layout one = {.nr_regions = 1, .size = {4 * SNAP_CHUNK_SIZE}};
	const struct shm_ctl_layout two = {
		.nr_regions = 2,
		.gpa = {0, 4ull << 30},
		.size = {2 * SNAP_CHUNK_SIZE, SNAP_CHUNK_SIZE},
	};

	gen_snapfile("one-region", &one);
	gen_snapfile("two-regions", &two);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: %s DIR\n", argv[0]);
		return 2;
	}
	gen_dir = argv[1];
	if (mkdir(gen_dir, 0755) && errno != EEXIST)
		gen_fail(gen_dir);
	gen_qmp_corpus();
	gen_rpc_corpus();
	gen_event_corpus();
	gen_loader_corpus();
	gen_ctl_corpus();
	gen_mig_corpus();
	gen_mig_pc_corpus();
	gen_mig_src_corpus();
	gen_pagemap_corpus();
	gen_snapfile_corpus();
	return 0;
}
