/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Mutual TLS on the migration wire, in one process over loopback TCP:
 * x509 and PSK migrations complete with RAM equal; every kind of refusal
 * fails the source with the cause named while its guest keeps running; a
 * peer without credentials cannot start or join a session (the hijack),
 * and the real source migrates after it.  Credentials are made at run
 * time (tls-certs.c).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/mig-limits.h"
#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"
#include "sandbox/sandbox.h"
#include "tests/util/test-util.h"
#include "tls-certs.h"
#include "tvm.h"

#define R0_PAGES 1024
static const struct shm_ctl_layout layout = {
	.nr_regions = 1,
	.gpa = {0},
	.size = {R0_PAGES * SHM_PAGE_SIZE},
};

#define SOURCE_DN "CN=source,O=cleave tests"

/* Credentials of both ends, and the two VMs. */
struct pair {
	char dir[64];
	struct mig_tls *src_tls, *dst_tls;
	struct tvm src, dst;
	char uri[64];
};

static char scratch[64];

static int group_setup(void **state)
{
	(void)state;
	return test_dir_make(scratch, "tls");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_dir_remove(scratch);
}

/* A credentials directory under the scratch dir. */
static const char *creds(const char *name, const struct tls_certs *c)
{
	static char path[8][128];
	static unsigned int next;
	char *p = path[next++ % 8];

	snprintf(p, 128, "%s/%s", scratch, name);
	assert_int_equal(tls_certs_make(p, c), 0);
	return p;
}

static const struct tls_certs good = {
	.ca_name = "cleave test CA",
	.server_dns = "localhost",
	.server_ip = "127.0.0.1",
	.client_dn = SOURCE_DN,
};

static struct mig_tls *load(const struct mig_tls_config *cfg)
{
	struct mig_tls *t = NULL;
	char err[256] = "";

	if (mig_tls_load(&t, cfg, err, sizeof(err)))
		fail_msg("mig_tls_load: %s", err);
	return t;
}

/*
 * A pair whose destination listens on @listen ("tcp:127.0.0.1:0" when
 * NULL); a silent peer fails a connection after @io_timeout_ms.
 */
static struct pair *pair_new_with(const struct mig_tls_config *src,
				  const struct mig_tls_config *dst, const char *listen,
				  unsigned int io_timeout_ms)
{
	struct pair *p = calloc(1, sizeof(*p));
	struct mig_params prm;

	assert_non_null(p);
	p->src_tls = src ? load(src) : NULL;
	p->dst_tls = dst ? load(dst) : NULL;
	assert_int_equal(tvm_init_tls(&p->src, &layout, NULL, io_timeout_ms, p->src_tls), 0);
	assert_int_equal(tvm_init_tls(&p->dst, &layout, NULL, io_timeout_ms, p->dst_tls), 0);
	/* Refusals are final: fail at once instead of waiting for a reconnect. */
	for (struct tvm *t = &p->src; t; t = t == &p->src ? &p->dst : NULL) {
		mig_session_get_params(t->s, &prm);
		prm.reconnect_timeout = 0;
		prm.multifd_channels = 4;
		assert_int_equal(mig_session_set_params(t->s, &prm), 0);
	}
	{
		struct mig_caps caps = {.multifd = true};

		assert_int_equal(mig_session_set_caps(p->src.s, &caps), 0);
		assert_int_equal(mig_session_set_caps(p->dst.s, &caps), 0);
	}
	assert_int_equal(mig_session_incoming(p->dst.s, listen ? listen : "tcp:127.0.0.1:0"), 0);
	if (listen)
		snprintf(p->uri, sizeof(p->uri), "%s", listen);
	else
		snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u",
			 mig_session_incoming_port(p->dst.s));
	tvm_fill(&p->src, 0, 0, R0_PAGES / 2, false);
	tvm_fill(&p->src, 0, R0_PAGES / 2, 16, true);
	return p;
}

/* Refusals fail fast: 1 s without an answer is a refusal here. */
static struct pair *pair_new_at(const struct mig_tls_config *src, const struct mig_tls_config *dst,
				const char *listen)
{
	return pair_new_with(src, dst, listen, 1000);
}

static struct pair *pair_new(const struct mig_tls_config *src, const struct mig_tls_config *dst)
{
	return pair_new_at(src, dst, NULL);
}

static void pair_free(struct pair *p)
{
	tvm_fini(&p->src);
	tvm_fini(&p->dst);
	mig_tls_free(p->src_tls);
	mig_tls_free(p->dst_tls);
	free(p);
}

static void wait_status(struct tvm *t, enum mig_status st, const char *needle)
{
	struct mig_info info;

	assert_int_equal(mig_session_wait(t->s, 10000), 0);
	mig_session_query(t->s, &info);
	if (info.status != st || !strstr(info.error_desc, needle))
		fprintf(stderr, "status %s error '%s', want %s '%s'\n",
			mig_status_name(info.status), info.error_desc, mig_status_name(st), needle);
	assert_int_equal(info.status, st);
	assert_non_null(strstr(info.error_desc, needle));
}

static void migrate_ok(struct pair *p)
{
	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	wait_status(&p->src, MIG_STATUS_COMPLETED, "");
	wait_status(&p->dst, MIG_STATUS_COMPLETED, "");
	assert_int_equal(tvm_ram_cmp(&p->src, &p->dst), 0);
}

/* The source was refused: it failed naming @why, its guest runs, the destination still listens. */
static void migrate_refused(struct pair *p, const char *why)
{
	struct mig_info info;

	assert_int_equal(mig_session_migrate(p->src.s, p->uri), 0);
	wait_status(&p->src, MIG_STATUS_FAILED, why);
	assert_int_equal(p->src.pause_calls, p->src.resume_calls);
	assert_false(p->src.dirty_log);
	mig_session_query(p->dst.s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
	assert_int_equal(p->dst.loads, 0);
}

static void test_x509_migration(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir, .authz = SOURCE_DN};
	struct pair *p = pair_new(&c, &c);

	(void)state;
	migrate_ok(p);
	/* The pages are copied for GnuTLS: the zero ones among them go as a flag. */
	{
		struct mig_info si, di;

		mig_session_query(p->src.s, &si);
		mig_session_query(p->dst.s, &di);
		assert_int_equal(si.duplicate, 16);
		assert_int_equal(si.normal, R0_PAGES / 2);
		assert_int_equal(di.duplicate, 16);
		assert_int_equal(di.normal, R0_PAGES / 2);
	}
	pair_free(p);
}

/*
 * A guest that zeroes pages it had written: under TLS they leave as ZERO
 * flags in later rounds, and the destination, which holds their older
 * data, punches them back to holes.  The RAM must end byte-identical.
 */
static void test_x509_dirty_zero_pages(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir, .authz = SOURCE_DN};
	struct pair *p = pair_new(&c, &c);
	struct mig_info di;

	(void)state;
	p->src.zero_every = 2;
	tvm_dirtier_start(&p->src, 64, 4);
	migrate_ok(p);
	tvm_dirtier_stop(&p->src);
	mig_session_query(p->dst.s, &di);
	assert_true(di.duplicate > 16); /* some came in a later round */
	pair_free(p);
}

static void test_psk_migration(void **state)
{
	char keys[128];
	struct mig_tls_config c = {.psk_file = keys, .psk_identity = "source-host"};
	struct pair *p;

	(void)state;
	snprintf(keys, sizeof(keys), "%s/keys.psk", scratch);
	assert_int_equal(tls_psk_make(keys, "source-host:0123456789abcdef0123456789abcdef\n"), 0);
	p = pair_new(&c, &c);
	migrate_ok(p);
	pair_free(p);
}

/*
 * Over a unix: socket, which has no host name: x509 needs tls-hostname
 * (refused with why, nothing sent), then authenticates as over TCP.
 */
static void test_x509_over_unix(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir, .authz = SOURCE_DN};
	struct mig_tls_config named = {
		.x509_dir = dir, .authz = SOURCE_DN, .hostname = "localhost"};
	char uri[128];
	struct pair *p;

	(void)state;
	snprintf(uri, sizeof(uri), "unix:%s/mig.sock", scratch);
	p = pair_new_at(&c, &c, uri);
	migrate_refused(p, "TLS over a unix: socket needs tls-hostname");
	pair_free(p);
	p = pair_new_at(&named, &c, uri);
	migrate_ok(p);
	pair_free(p);
}

/* The source's CA did not sign the destination's certificate. */
static void test_wrong_ca(void **state)
{
	struct tls_certs other = good;
	const char *dst_dir = creds("good", &good);
	struct mig_tls_config d = {.x509_dir = dst_dir}, s;
	struct pair *p;

	(void)state;
	other.ca_name = "another CA";
	s = (struct mig_tls_config){.x509_dir = creds("other-ca", &other)};
	p = pair_new(&s, &d);
	migrate_refused(p, "issuer is unknown");
	pair_free(p);
}

/* The destination's certificate names another host. */
static void test_wrong_hostname(void **state)
{
	struct tls_certs named = good;
	struct mig_tls_config c;
	struct pair *p;

	(void)state;
	named.server_dns = "elsewhere.example";
	named.server_ip = NULL;
	c = (struct mig_tls_config){.x509_dir = creds("named", &named)};
	p = pair_new(&c, &c);
	migrate_refused(p, "does not match");
	pair_free(p);
}

/* A source certificate our CA signed, whose name the destination does not authorize. */
static void test_not_authorized(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config s = {.x509_dir = dir},
			      d = {.x509_dir = dir, .authz = "CN=someone else,O=cleave tests"};
	struct pair *p = pair_new(&s, &d);

	(void)state;
	migrate_refused(p, "Key was rejected");
	pair_free(p);
}

static void test_expired_certificate(void **state)
{
	struct tls_certs old = good;
	struct mig_tls_config c;
	struct pair *p;

	(void)state;
	old.server_expired = true;
	c = (struct mig_tls_config){.x509_dir = creds("expired", &old)};
	p = pair_new(&c, &c);
	migrate_refused(p, "expired");
	pair_free(p);
}

static void test_wrong_psk(void **state)
{
	char src_keys[128], dst_keys[128];
	struct mig_tls_config s = {.psk_file = src_keys, .psk_identity = "source-host"},
			      d = {.psk_file = dst_keys};
	struct pair *p;

	(void)state;
	snprintf(src_keys, sizeof(src_keys), "%s/src.psk", scratch);
	snprintf(dst_keys, sizeof(dst_keys), "%s/dst.psk", scratch);
	assert_int_equal(tls_psk_make(src_keys, "source-host:00112233445566778899aabbccddeeff\n"),
			 0);
	assert_int_equal(tls_psk_make(dst_keys, "source-host:ffeeddccbbaa99887766554433221100\n"),
			 0);
	p = pair_new(&s, &d);
	migrate_refused(p, "TLS");
	pair_free(p);
}

/* A plaintext source against a TLS destination, and the other way round. */
static void test_plaintext_mismatch(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir};
	struct pair *p;

	(void)state;
	p = pair_new(NULL, &c);
	migrate_refused(p, "");
	pair_free(p);
	p = pair_new(&c, NULL);
	migrate_refused(p, "TLS");
	pair_free(p);
}

static int raw_connect(const char *uri)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)atoi(strrchr(uri, ':') + 1));
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(mig_sock_setup(fd, 2000), 0);
	return fd;
}

/*
 * The hijack: a peer without credentials sends a perfect Hello (it knows
 * the layout, and a session id seen on the wire would not help it).  It
 * never gets past the handshake, nothing of it is parsed, and the real
 * source then migrates.
 */
static void test_hijack_without_credentials(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir, .authz = SOURCE_DN};
	Cleave__Wire__WireMsg m = CLEAVE__WIRE__WIRE_MSG__INIT, *in = NULL;
	Cleave__Wire__Hello h = CLEAVE__WIRE__HELLO__INIT;
	Cleave__Wire__Region reg = CLEAVE__WIRE__REGION__INIT, *rp = &reg;
	uint8_t id[16] = "stolen-session!";
	struct pair *p = pair_new(&c, &c);
	struct mig_info info;
	int fd = raw_connect(p->uri);

	(void)state;
	reg.size = layout.size[0];
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.session_id.data = id;
	h.session_id.len = sizeof(id);
	h.epoch = 1;
	h.n_regions = 1;
	h.regions = &rp;
	h.channels = 1;
	h.page_size = SHM_PAGE_SIZE;
	m.body_case = CLEAVE__WIRE__WIRE_MSG__BODY_HELLO;
	m.hello = &h;
	assert_int_equal(mig_msg_send(fd, &m), 0);
	/* No HelloAck, no Error: the connection just ends. */
	assert_int_not_equal(mig_msg_recv(fd, &in), 0);
	close(fd);
	mig_session_query(p->dst.s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
	migrate_ok(p);
	pair_free(p);
}

/* Plaintext leaves the host only when the operator opts out; with TLS any address is fine. */
static void test_plaintext_off_host(void **state)
{
	const char *dir = creds("good", &good);
	struct mig_tls_config c = {.x509_dir = dir};
	struct mig_tls *tls = load(&c);
	struct tvm plain, secured;

	(void)state;
	assert_int_equal(tvm_init_tls(&plain, &layout, NULL, 1000, NULL), 0);
	assert_int_equal(mig_session_incoming(plain.s, "tcp:0.0.0.0:0"), -EPERM);
	assert_int_equal(mig_session_migrate(plain.s, "tcp:192.0.2.1:4444"), -EPERM);
	assert_int_equal(mig_session_incoming(plain.s, "tcp:[::1]:0"), 0);
	tvm_fini(&plain);
	assert_int_equal(tvm_init_tls(&secured, &layout, NULL, 1000, tls), 0);
	assert_int_equal(mig_session_incoming(secured.s, "tcp:0.0.0.0:0"), 0);
	tvm_fini(&secured);
	mig_tls_free(tls);
}

/*
 * QMP's way (docs/MIGRATION.md, "Authentication"): the session's TLS
 * settings as migrate-set-parameters leaves them in the record — an
 * object per end of the one credentials directory cleave run gave, its
 * endpoint, tls-authz's rules.
 */
struct qmp_tls {
	const char *creds;	/* tls-creds id, "" off */
	unsigned int endpoints; /* MIG_TLS_END_* */
	const char *path;	/* the object's directory */
	const char *authz;	/* tls-authz id, or NULL */
	bool authz_allow;	/* policy when no rule matches */
	const struct mig_tls_rule *rules;
	unsigned int nr_rules;
};

static int qmp_tls_set(struct tvm *t, const struct qmp_tls *q, char *err, size_t len)
{
	struct mig_tls_params *p = calloc(1, sizeof(*p));
	int ret;

	assert_non_null(p);
	mig_session_get_tls(t->s, p);
	memset(p, 0, sizeof(*p));
	snprintf(p->creds, sizeof(p->creds), "%s", q->creds);
	if (q->creds[0]) {
		p->kind = MIG_TLS_X509;
		p->endpoints = q->endpoints;
		snprintf(p->path, sizeof(p->path), "%s", q->path);
	}
	if (q->authz) {
		snprintf(p->authz, sizeof(p->authz), "%s", q->authz);
		p->authz_allow = q->authz_allow;
		p->nr_rules = q->nr_rules;
		memcpy(p->rules, q->rules, q->nr_rules * sizeof(*q->rules));
	}
	ret = mig_session_set_tls(t->s, p, err, len);
	free(p);
	return ret;
}

/*
 * Two VMs whose migrators were given @dir (cleave run's credentials, in
 * use from the start) and are then set as @src and @dst say; the
 * destination listens.
 */
static struct pair *qmp_pair_new(const char *dir, const struct qmp_tls *src,
				 const struct qmp_tls *dst)
{
	struct mig_tls_config c = {.x509_dir = dir};
	struct pair *p = calloc(1, sizeof(*p));
	struct mig_tls_params tp;
	char err[512] = "";

	assert_non_null(p);
	p->src_tls = load(&c);
	p->dst_tls = load(&c);
	assert_int_equal(tvm_init_tls(&p->src, &layout, NULL, 1000, p->src_tls), 0);
	assert_int_equal(tvm_init_tls(&p->dst, &layout, NULL, 1000, p->dst_tls), 0);
	/* cleave run's credentials are in use until QMP says otherwise. */
	mig_session_get_tls(p->src.s, &tp);
	assert_string_equal(tp.creds, MIG_TLS_RUN_ID);
	assert_string_equal(tp.path, dir);
	if (qmp_tls_set(&p->src, src, err, sizeof(err)) ||
	    qmp_tls_set(&p->dst, dst, err, sizeof(err)))
		fail_msg("set TLS: %s", err);
	for (struct tvm *t = &p->src; t; t = t == &p->src ? &p->dst : NULL) {
		struct mig_params prm;

		mig_session_get_params(t->s, &prm);
		prm.reconnect_timeout = 0;
		assert_int_equal(mig_session_set_params(t->s, &prm), 0);
	}
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(p->dst.s));
	tvm_fill(&p->src, 0, 0, R0_PAGES / 2, false);
	return p;
}

/*
 * cleave run's --migrate-tls-creds: a second credentials directory (another
 * CA) loaded at start, which QMP's objects may name while cleave run's stay
 * the default; a directory given to neither stays refused.
 */
static void test_qmp_params_more_creds(void **state)
{
	struct tls_certs rotated = good;
	const char *dir = creds("run", &good), *more;
	struct mig_tls_config c = {.x509_dir = dir}, m;
	struct mig_env env = {.snapshot_dirfd = -1};
	struct pair *p = calloc(1, sizeof(*p));
	struct qmp_tls src = {"tls1", MIG_TLS_END_CLIENT, NULL, NULL, false, NULL, 0};
	struct qmp_tls dst = {"tls1", MIG_TLS_END_SERVER, NULL, NULL, false, NULL, 0};
	struct mig_tls *extra[2];
	char err[512] = "";

	(void)state;
	rotated.ca_name = "rotated CA";
	more = creds("rotated", &rotated);
	m = (struct mig_tls_config){.x509_dir = more};
	assert_non_null(p);
	p->src_tls = load(&c);
	p->dst_tls = load(&c);
	extra[0] = load(&m);
	extra[1] = load(&m);
	env.nr_tls_more = 1;
	env.tls = p->src_tls;
	env.tls_more[0] = extra[0];
	assert_int_equal(tvm_init_env(&p->src, &layout, NULL, 1000, &env), 0);
	env.tls = p->dst_tls;
	env.tls_more[0] = extra[1];
	assert_int_equal(tvm_init_env(&p->dst, &layout, NULL, 1000, &env), 0);
	/* Neither directory: refused; the rotated one: taken. */
	src.path = "/etc/pki/elsewhere";
	assert_int_equal(qmp_tls_set(&p->src, &src, err, sizeof(err)), -ENOENT);
	src.path = dst.path = more;
	if (qmp_tls_set(&p->src, &src, err, sizeof(err)) ||
	    qmp_tls_set(&p->dst, &dst, err, sizeof(err)))
		fail_msg("set TLS: %s", err);
	for (struct tvm *t = &p->src; t; t = t == &p->src ? &p->dst : NULL) {
		struct mig_params prm;

		mig_session_get_params(t->s, &prm);
		prm.reconnect_timeout = 0;
		assert_int_equal(mig_session_set_params(t->s, &prm), 0);
	}
	assert_int_equal(mig_session_incoming(p->dst.s, "tcp:127.0.0.1:0"), 0);
	snprintf(p->uri, sizeof(p->uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(p->dst.s));
	tvm_fill(&p->src, 0, 0, R0_PAGES / 2, false);
	migrate_ok(p);
	pair_free(p);
	mig_tls_free(extra[0]);
	mig_tls_free(extra[1]);
}

/* authz-list: a glob that admits the source, deny by default; and an exact deny before it. */
static const struct mig_tls_rule rules_admit[] = {
	{.allow = 0, .glob = 0, .match = "CN=intruder,O=cleave tests"},
	{.allow = 1, .glob = 1, .match = "CN=source,*"},
};
/* authz-simple of another identity. */
static const struct mig_tls_rule rules_other[] = {
	{.allow = 1, .glob = 0, .match = "CN=someone else"},
};

/*
 * A migration configured only through the QMP-level parameters completes
 * over TLS: the destination with a server object and an authz-list that a
 * glob rule of it admits the source by; a plaintext peer is refused by it.
 */
static void test_qmp_params_migration(void **state)
{
	const char *dir = creds("qmp", &good);
	const struct qmp_tls src = {"tls0", MIG_TLS_END_CLIENT, dir, NULL, false, NULL, 0};
	const struct qmp_tls dst = {"tls0", MIG_TLS_END_SERVER, dir, "auth0",
				    false,  rules_admit,	2};
	struct pair *p = qmp_pair_new(dir, &src, &dst);
	struct mig_tls_params tp;
	struct tvm plain;

	(void)state;
	/* The destination wants TLS: a plaintext source is refused. */
	assert_int_equal(tvm_init_tls(&plain, &layout, NULL, 1000, NULL), 0);
	{
		struct mig_params prm;

		mig_session_get_params(plain.s, &prm);
		prm.reconnect_timeout = 0;
		assert_int_equal(mig_session_set_params(plain.s, &prm), 0);
	}
	assert_int_equal(mig_session_migrate(plain.s, p->uri), 0);
	assert_int_equal(mig_session_wait(plain.s, 10000), 0);
	{
		struct mig_info info;

		mig_session_query(plain.s, &info);
		assert_int_equal(info.status, MIG_STATUS_FAILED);
	}
	tvm_fini(&plain);
	migrate_ok(p);
	assert_non_null(p->src.s->tls); /* it went over TLS */
	mig_session_get_tls(p->dst.s, &tp);
	assert_string_equal(tp.creds, "tls0");
	assert_string_equal(tp.authz, "auth0");
	assert_int_equal(tp.nr_rules, 2);
	pair_free(p);
}

/* tls-authz that does not admit the source: refused, the cause named on the source. */
static void test_qmp_params_wrong_authz(void **state)
{
	const char *dir = creds("qmp", &good);
	const struct qmp_tls src = {"tls0", MIG_TLS_END_CLIENT, dir, NULL, false, NULL, 0};
	const struct qmp_tls dst = {"tls1", MIG_TLS_END_SERVER, dir, "auth0",
				    false,  rules_other,	1};
	struct pair *p = qmp_pair_new(dir, &src, &dst);
	struct mig_info info;

	char logp[128], *text = NULL;
	int saved, fd;

	(void)state;
	/* The destination names the cause in its log (the source only sees the alert). */
	snprintf(logp, sizeof(logp), "%s/authz.log", scratch);
	fflush(stderr);
	saved = dup(STDERR_FILENO);
	fd = open(logp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	assert_true(saved >= 0 && fd >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	migrate_refused(p, "Key was rejected");
	for (int64_t t0 = test_now_ms(); test_now_ms() - t0 < 5000; test_sleep_ms(10)) {
		free(text);
		text = test_file_read(logp);
		if (strstr(text, "(tls-authz 'auth0')"))
			break;
	}
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	close(fd);
	fprintf(stderr, "%s", text);
	assert_non_null(strstr(text, "certificate 'CN=source,O=cleave tests' is not in the "
				     "authorization list (tls-authz 'auth0')"));
	free(text);
	unlink(logp);
	mig_session_query(p->dst.s, &info);
	assert_int_equal(info.status, MIG_STATUS_NONE);
	pair_free(p);
}

/*
 * What set-parameters and migrate refuse: a directory cleave run was not
 * given (the sandbox cannot read it), credentials of the other end (QEMU's
 * endpoint check), and, with tls-creds turned off, plaintext off the host.
 */
static void test_qmp_params_refused(void **state)
{
	const char *dir = creds("qmp", &good);
	const char *other = creds("other", &good);
	const struct qmp_tls client = {"tls0", MIG_TLS_END_CLIENT, dir, NULL, false, NULL, 0};
	const struct qmp_tls server = {"tls0", MIG_TLS_END_SERVER, dir, NULL, false, NULL, 0};
	const struct qmp_tls elsewhere = {"tls9", MIG_TLS_END_CLIENT, other, NULL, false, NULL, 0};
	const struct qmp_tls off = {"", 0, "", NULL, false, NULL, 0};
	struct mig_tls_config c = {.x509_dir = dir};
	struct mig_tls *tls = load(&c);
	struct mig_tls_params tp;
	char err[512] = "", want[400];
	struct tvm t;

	(void)state;
	assert_int_equal(tvm_init_tls(&t, &layout, NULL, 1000, tls), 0);
	assert_int_equal(qmp_tls_set(&t, &elsewhere, err, sizeof(err)), -ENOENT);
	snprintf(want, sizeof(want),
		 "TLS credentials directory '%s' was not given to cleave run "
		 "(--migrate-tls-x509 or --migrate-tls-creds): the migrator's sandbox cannot read "
		 "it",
		 other);
	assert_non_null(strstr(err, want));
	mig_session_get_tls(t.s, &tp);
	assert_string_equal(tp.creds, MIG_TLS_RUN_ID); /* nothing changed */
	/* A path spelled with extra slashes is the same directory. */
	{
		char slashy[200];
		struct qmp_tls q = client;

		snprintf(slashy, sizeof(slashy), "%s//", dir);
		q.path = slashy;
		assert_int_equal(qmp_tls_set(&t, &q, err, sizeof(err)), 0);
	}
	assert_int_equal(mig_session_incoming(t.s, "tcp:127.0.0.1:0"), -EKEYREJECTED);
	assert_int_equal(qmp_tls_set(&t, &server, err, sizeof(err)), 0);
	assert_int_equal(mig_session_migrate(t.s, "tcp:127.0.0.1:9"), -EKEYREJECTED);
	/* Off: secure by default again. */
	assert_int_equal(qmp_tls_set(&t, &off, err, sizeof(err)), 0);
	assert_int_equal(mig_session_incoming(t.s, "tcp:0.0.0.0:0"), -EPERM);
	assert_int_equal(mig_session_migrate(t.s, "tcp:192.0.2.1:4444"), -EPERM);
	/* While a destination listens, its TLS stays as it started. */
	assert_int_equal(qmp_tls_set(&t, &server, err, sizeof(err)), 0);
	assert_int_equal(mig_session_incoming(t.s, "tcp:127.0.0.1:0"), 0);
	assert_int_equal(qmp_tls_set(&t, &off, err, sizeof(err)), -EBUSY);
	tvm_fini(&t);
	mig_tls_free(tls);
}

/*
 * The settings survive a migrator restart (a second session on the same
 * record, as a restarted cleave-migrator is): ids, hostname and rules.
 */
static void test_qmp_params_survive_restart(void **state)
{
	const char *dir = creds("qmp", &good);
	const struct qmp_tls q = {"tls0", MIG_TLS_END_SERVER, dir, "auth0", false, rules_admit, 2};
	struct mig_tls_config c = {.x509_dir = dir};
	struct mig_tls *tls = load(&c);
	struct mig_session *again;
	struct mig_tls_params tp;
	char err[512] = "";
	struct tvm t;

	(void)state;
	assert_int_equal(tvm_init_tls(&t, &layout, NULL, 1000, tls), 0);
	assert_int_equal(qmp_tls_set(&t, &q, err, sizeof(err)), 0);
	assert_int_equal(mig_session_alloc(&again, &t.s->env), 0);
	mig_session_get_tls(again, &tp);
	assert_string_equal(tp.creds, "tls0");
	assert_int_equal(tp.endpoints, MIG_TLS_END_SERVER);
	assert_string_equal(tp.authz, "auth0");
	assert_int_equal(tp.nr_rules, 2);
	assert_string_equal(tp.rules[1].match, "CN=source,*");
	/* It acts on them: a server-only context. */
	assert_int_equal(mig_session_migrate(again, "tcp:127.0.0.1:9"), -EKEYREJECTED);
	mig_session_free(again);
	tvm_fini(&t);
	mig_tls_free(tls);
}

/* How a child confines itself before it migrates (see the two tests below). */
enum confine {
	CONFINE_POLICY,	 /* the migrator's seccomp filter, trapping in every build */
	CONFINE_SANDBOX, /* the migrator's whole sandbox_enter() */
};

/*
 * An x509 migration over @channels, both ends in a child confined as
 * @how after the credentials and memfds were made (as the migrator does):
 * the child's wait status, 0 when it completed with RAM equal.
 */
static int tls_migration_confined(enum confine how, unsigned int channels)
{
	const char *dir = creds("good", &good);
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct mig_tls_config c = {.x509_dir = dir, .authz = SOURCE_DN};
		/*
		 * The engine's own I/O timeout: up to 2 x 64 handshakes share two
		 * cores here, and a loaded host must not pass for a refusal.
		 */
		struct pair *p = pair_new_with(&c, &c, NULL, MIG_DEFAULT_IO_TIMEOUT_MS);
		struct mig_params prm;
		struct mig_info info;
		bool ok;

		for (struct tvm *t = &p->src; t; t = t == &p->src ? &p->dst : NULL) {
			mig_session_get_params(t->s, &prm);
			prm.multifd_channels = channels;
			if (mig_session_set_params(t->s, &prm))
				_exit(2);
		}
		/*
		 * Trapping: a refused call kills the child.  Sanitizer runtimes make
		 * calls of their own (TSan opens files): there, as in the real
		 * processes, refusals are logged instead; the plain build decides.
		 */
		if (how == CONFINE_SANDBOX && sandbox_enter(SANDBOX_MIGRATOR))
			_exit(3);
		if (how == CONFINE_POLICY &&
		    sandbox_seccomp_install(sandbox_policy_get(SANDBOX_MIGRATOR),
					    sandbox_sanitizer_build() ? 0 : SANDBOX_F_TRAP))
			_exit(3);
		if (mig_session_migrate(p->src.s, p->uri) || mig_session_wait(p->src.s, 20000) ||
		    mig_session_wait(p->dst.s, 20000))
			_exit(4);
		mig_session_query(p->dst.s, &info);
		ok = info.status == MIG_STATUS_COMPLETED && !tvm_ram_cmp(&p->src, &p->dst);
		pair_free(p); /* every thread joined, under the filter too */
		_exit(ok ? 0 : 5);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	return status;
}

/*
 * The migrator's seccomp policy lets TLS work: a whole x509 migration
 * under cleave-migrator's filter.  A refused call kills the child with
 * SIGSYS and names the syscall on stderr.
 */
static void test_tls_under_migrator_policy(void **state)
{
	int status = tls_migration_confined(CONFINE_POLICY, 4);

	(void)state;
	if (status)
		fail_msg("TLS migration under the migrator's policy: status 0x%x", status);
}

/*
 * The migrator's whole sandbox (policy, RLIMIT_AS and the other limits)
 * holds a TLS migration at the most channels: both ends in one child, so
 * twice the channel threads, stacks and buffers one migrator needs.  A
 * limit too small for them fails the migration (or kills the child).
 */
static void test_tls_under_migrator_sandbox(void **state)
{
	/*
	 * Sanitizer builds set no RLIMIT_AS (shadow memory), so the most
	 * channels would test nothing there, and 128 TLS threads under TSan
	 * outrun the channels' deadlines on a small host.
	 */
	unsigned int channels = sandbox_sanitizer_build() ? 4 : MIG_MAX_CHANNELS;
	int status = tls_migration_confined(CONFINE_SANDBOX, channels);

	(void)state;
	if (status)
		fail_msg("TLS migration, %u channels, in the migrator's sandbox: status 0x%x",
			 channels, status);
}

/* Loading refuses what cannot work, with a message. */
static void test_load_errors(void **state)
{
	struct mig_tls_config none = {0}, both = {.x509_dir = "/nonexistent", .psk_file = "/x"},
			      nodir = {.x509_dir = "/nonexistent"};
	struct mig_tls *t = NULL;
	char err[256], keys[128];

	(void)state;
	assert_int_equal(mig_tls_load(&t, &none, err, sizeof(err)), -EINVAL);
	assert_int_equal(mig_tls_load(&t, &both, err, sizeof(err)), -EINVAL);
	err[0] = '\0';
	assert_true(mig_tls_load(&t, &nodir, err, sizeof(err)) < 0);
	assert_non_null(strstr(err, "ca-cert.pem"));
	snprintf(keys, sizeof(keys), "%s/bad.psk", scratch);
	assert_int_equal(tls_psk_make(keys, "no colon here\n"), 0);
	none.psk_file = keys;
	assert_int_equal(mig_tls_load(&t, &none, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "IDENTITY:HEXKEY"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_x509_migration),
		cmocka_unit_test(test_x509_dirty_zero_pages),
		cmocka_unit_test(test_psk_migration),
		cmocka_unit_test(test_x509_over_unix),
		cmocka_unit_test(test_wrong_ca),
		cmocka_unit_test(test_wrong_hostname),
		cmocka_unit_test(test_not_authorized),
		cmocka_unit_test(test_expired_certificate),
		cmocka_unit_test(test_wrong_psk),
		cmocka_unit_test(test_plaintext_mismatch),
		cmocka_unit_test(test_hijack_without_credentials),
		cmocka_unit_test(test_plaintext_off_host),
		cmocka_unit_test(test_qmp_params_migration),
		cmocka_unit_test(test_qmp_params_more_creds),
		cmocka_unit_test(test_qmp_params_wrong_authz),
		cmocka_unit_test(test_qmp_params_refused),
		cmocka_unit_test(test_qmp_params_survive_restart),
		cmocka_unit_test(test_tls_under_migrator_policy),
		cmocka_unit_test(test_tls_under_migrator_sandbox),
	};

	log_init("test-tls");
	log_set_verbose(getenv("MIG_TEST_VERBOSE") != NULL);
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
