// SPDX-License-Identifier: GPL-2.0-only
/*
 * QMP over TCP with mutual TLS (docs/QMP.md, "TCP and TLS"), against a
 * real cleave-monitor process on loopback, in its sandbox, without
 * backends.  The client is GnuTLS in this process; credentials are made
 * at run time (tests/util/tls-certs.c).
 *
 * An authorized client gets its greeting after the handshake and a
 * working session.  Refused, each with its cause in the monitor's log and
 * TLS's alert at the client: no client certificate, a certificate of
 * another CA, an expired one, a name not in the authorization list, an
 * unknown or unauthorized PSK identity, a wrong key.  A plaintext client
 * gets no greeting and is closed; a client that stalls mid-handshake is
 * closed at the handshake deadline; the others keep their sessions
 * meanwhile.  The limits hold for TLS clients, and input GnuTLS holds
 * where epoll cannot see it is read.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <linux/sockios.h>

#include "tests/integration/monitor/mon-proc.h"
#include "tests/util/test-util.h"
#include "tls-certs.h"

#define T_MS	   3000 /* generous wait for what the monitor must send */
#define CLIENT_DN  "CN=qmp-client,O=cleave tests"
#define NEGOTIATE  "{\"execute\": \"qmp_capabilities\"}"
#define QUERY_NAME "{\"execute\": \"query-name\", \"id\": 7}"
#define NAME_REPLY "{\"return\": {\"name\": \"testvm\"}, \"id\": 7}\r\n"
#define PSK_GOOD   "0123456789abcdef0123456789abcdef"
#define PSK_WRONG  "fedcba9876543210fedcba9876543210"

static const char *monitor_exe;

/* Credentials of the group: made once, read by every test's monitor. */
static char scratch[64];
static char good[128];	  /* the monitor's CA and server; a client it signed */
static char other[128];	  /* another CA and a client it signed, same name */
static char expired[128]; /* a CA whose client certificate has expired */
static char psk_file[128];

struct env {
	char dir[64];
	char log[128]; /* the monitor's stderr (-v) */
	struct mon_proc mp;
	int port; /* its TLS port */
	int started;
};

/* A TLS client (blocking socket, bounded waits). */
struct tcli {
	int fd;
	gnutls_session_t s;
	gnutls_certificate_credentials_t x509;
	gnutls_psk_client_credentials_t psk;
	int hs; /* what the handshake returned */
	char in[16384];
	size_t in_len;
};

static int group_setup(void **state)
{
	struct tls_certs c = {
		.ca_name = "qmp-ca", .server_ip = "127.0.0.1", .client_dn = CLIENT_DN};

	(void)state;
	if (test_dir_make(scratch, "qmp-tls"))
		return -1;
	snprintf(good, sizeof(good), "%s/good", scratch);
	snprintf(other, sizeof(other), "%s/other", scratch);
	snprintf(expired, sizeof(expired), "%s/expired", scratch);
	snprintf(psk_file, sizeof(psk_file), "%s/keys.psk", scratch);
	if (tls_certs_make(good, &c))
		return -1;
	c.ca_name = "other-ca";
	if (tls_certs_make(other, &c))
		return -1;
	c.ca_name = "expired-ca";
	c.client_expired = true;
	if (tls_certs_make(expired, &c))
		return -1;
	return tls_psk_make(psk_file,
			    "# QMP clients\nqmp-client:" PSK_GOOD "\nbystander:" PSK_GOOD "\n");
}

static int group_teardown(void **state)
{
	(void)state;
	return test_dir_remove(scratch);
}

static int env_alloc(void **state)
{
	struct env *e = calloc(1, sizeof(*e));

	assert_non_null(e);
	assert_int_equal(test_dir_make(e->dir, "qmp-tls-env"), 0);
	snprintf(e->log, sizeof(e->log), "%s/monitor.log", e->dir);
	*state = e;
	return 0;
}

static int env_teardown(void **state)
{
	struct env *e = *state;

	if (e->started) {
		/* Whatever the test did, the monitor survived it and exits 0 on SIGTERM. */
		assert_true(mon_proc_alive(&e->mp));
		assert_int_equal(mon_proc_stop(&e->mp, 0), 0);
		mon_proc_fini(&e->mp);
	}
	test_dir_remove(e->dir);
	free(e);
	return 0;
}

/* A loopback TCP port that was free a moment ago. */
static int free_tcp_port(void)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port;

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

/*
 * Starts the monitor with its unix socket (plaintext, for the readiness
 * check and bystanders) and a TLS port: @tls are the credential options,
 * @extra more options; both NULL-terminated.
 */
static void env_start(struct env *e, const char *const *tls, const char *const *extra)
{
	static char spec[64];
	const char *argv[28];
	int n = 0;

	e->port = free_tcp_port();
	snprintf(spec, sizeof(spec), "tcp:127.0.0.1:%d", e->port);
	argv[n++] = "--qmp";
	argv[n++] = spec;
	argv[n++] = "-v";
	while (tls && *tls)
		argv[n++] = *tls++;
	while (extra && *extra)
		argv[n++] = *extra++;
	argv[n] = NULL;
	e->mp.log_path = e->log;
	assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->dir, NULL, 0, argv), 0);
	e->started = 1;
}

static void env_start_x509(struct env *e, const char *dir, const char *authz,
			   const char *const *extra)
{
	const char *tls[] = {"--tls-x509-dir", dir, authz ? "--tls-authz" : NULL, authz, NULL};

	env_start(e, tls, extra);
}

/* The monitor's log holds @what (within T_MS: it is written as things happen). */
static void expect_logged(struct env *e, const char *what)
{
	int64_t end = test_now_ms() + T_MS;
	char *log;

	for (;;) {
		log = test_file_read(e->log);
		if (strstr(log, what)) {
			free(log);
			return;
		}
		if (test_now_ms() > end)
			break;
		free(log);
		test_sleep_ms(20);
	}
	fprintf(stderr, "---- monitor log ----\n%s\n----\n", log);
	free(log);
	fail_msg("the monitor's log does not say '%s'", what);
}

static int tcp_connect(int port)
{
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	sin.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	return fd;
}

static void tcli_session(struct tcli *c, int port, const char *prio)
{
	memset(c, 0, sizeof(*c));
	c->fd = tcp_connect(port);
	/* MSG_NOSIGNAL: the monitor closes clients it refuses while they may still send. */
	assert_int_equal(gnutls_init(&c->s, GNUTLS_CLIENT | GNUTLS_NO_SIGNAL), 0);
	assert_int_equal(gnutls_priority_set_direct(c->s, prio, NULL), 0);
	gnutls_transport_set_int(c->s, c->fd);
	gnutls_handshake_set_timeout(c->s, T_MS);
}

static void tcli_handshake(struct tcli *c)
{
	do
		c->hs = gnutls_handshake(c->s);
	while (c->hs < 0 && !gnutls_error_is_fatal(c->hs));
}

/*
 * An x509 client: it checks the monitor's certificate against @ca_dir's CA
 * (and 127.0.0.1), and presents @cert_dir's client certificate (NULL:
 * none).  The handshake is run; its result is in c->hs.
 */
static void tcli_x509(struct tcli *c, int port, const char *ca_dir, const char *cert_dir)
{
	char ca[160], cert[160], key[160];

	tcli_session(c, port, "NORMAL:-VERS-ALL:+VERS-TLS1.3");
	assert_int_equal(gnutls_certificate_allocate_credentials(&c->x509), 0);
	snprintf(ca, sizeof(ca), "%s/ca-cert.pem", ca_dir);
	assert_true(gnutls_certificate_set_x509_trust_file(c->x509, ca, GNUTLS_X509_FMT_PEM) > 0);
	if (cert_dir) {
		snprintf(cert, sizeof(cert), "%s/client-cert.pem", cert_dir);
		snprintf(key, sizeof(key), "%s/client-key.pem", cert_dir);
		assert_int_equal(gnutls_certificate_set_x509_key_file(c->x509, cert, key,
								      GNUTLS_X509_FMT_PEM),
				 0);
	}
	assert_int_equal(gnutls_credentials_set(c->s, GNUTLS_CRD_CERTIFICATE, c->x509), 0);
	gnutls_session_set_verify_cert(c->s, "127.0.0.1", 0);
	tcli_handshake(c);
}

static void tcli_psk(struct tcli *c, int port, const char *identity, const char *hexkey)
{
	gnutls_datum_t key = {(unsigned char *)hexkey, (unsigned int)strlen(hexkey)};

	tcli_session(c, port, "NORMAL:-VERS-ALL:+VERS-TLS1.3:+ECDHE-PSK:+DHE-PSK:+PSK");
	assert_int_equal(gnutls_psk_allocate_client_credentials(&c->psk), 0);
	assert_int_equal(
		gnutls_psk_set_client_credentials(c->psk, identity, &key, GNUTLS_PSK_KEY_HEX), 0);
	assert_int_equal(gnutls_credentials_set(c->s, GNUTLS_CRD_PSK, c->psk), 0);
	tcli_handshake(c);
}

static void tcli_close(struct tcli *c)
{
	gnutls_deinit(c->s);
	if (c->x509)
		gnutls_certificate_free_credentials(c->x509);
	if (c->psk)
		gnutls_psk_free_client_credentials(c->psk);
	close(c->fd);
}

/*
 * The next line (with its "\r\n") into @buf within @timeout_ms.  Returns
 * its length, 0 at the end of the stream, GNUTLS_E_AGAIN on timeout, or
 * GnuTLS's error (an alert from the monitor: GNUTLS_E_FATAL_ALERT_RECEIVED).
 */
static int tcli_line(struct tcli *c, char *buf, size_t cap, int timeout_ms)
{
	int64_t end = test_now_ms() + timeout_ms;
	ssize_t n;
	char *nl;

	for (;;) {
		nl = memmem(c->in, c->in_len, "\r\n", 2);
		if (nl) {
			size_t len = (size_t)(nl + 2 - c->in);

			assert_true(len < cap);
			memcpy(buf, c->in, len);
			buf[len] = '\0';
			memmove(c->in, c->in + len, c->in_len - len);
			c->in_len -= len;
			return (int)len;
		}
		assert_true(c->in_len < sizeof(c->in));
		if (!gnutls_record_check_pending(c->s)) {
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			int64_t left = end - test_now_ms();

			if (left <= 0 || poll(&pfd, 1, (int)left) != 1)
				return GNUTLS_E_AGAIN;
		}
		n = gnutls_record_recv(c->s, c->in + c->in_len, sizeof(c->in) - c->in_len);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		if (n <= 0)
			return (int)n;
		c->in_len += (size_t)n;
	}
}

static void tcli_send(struct tcli *c, const char *data, size_t len)
{
	size_t off = 0;
	ssize_t n;

	while (off < len) {
		n = gnutls_record_send(c->s, data + off, len - off);
		if (n == GNUTLS_E_AGAIN || n == GNUTLS_E_INTERRUPTED)
			continue;
		assert_true(n > 0);
		off += (size_t)n;
	}
}

/* @c completed its handshake and reads the greeting: nothing came before it. */
static void tcli_expect_greeting(struct tcli *c)
{
	char line[512];
	int n;

	if (c->hs)
		fail_msg("handshake: %s", gnutls_strerror(c->hs));
	n = tcli_line(c, line, sizeof(line), T_MS);
	if (n <= 0)
		fail_msg("no greeting: %s", n ? gnutls_strerror(n) : "end of stream");
	assert_true(!strncmp(line, "{\"QMP\": {\"version\": ", 20));
}

static void tcli_expect_line(struct tcli *c, const char *want)
{
	char line[512];
	int n = tcli_line(c, line, sizeof(line), T_MS);

	if (n <= 0)
		fail_msg("want %s, got %s", want, n ? gnutls_strerror(n) : "end of stream");
	assert_string_equal(line, want);
}

/* A negotiated session that answers a command. */
static void tcli_expect_session(struct tcli *c)
{
	tcli_expect_greeting(c);
	tcli_send(c, NEGOTIATE, strlen(NEGOTIATE));
	tcli_expect_line(c, "{\"return\": {}}\r\n");
	tcli_send(c, QUERY_NAME, strlen(QUERY_NAME));
	tcli_expect_line(c, NAME_REPLY);
}

/*
 * The monitor refused @c: no greeting, its alert @alert instead (under
 * TLS 1.3 the client's handshake may have completed before the monitor
 * checked its certificate, then the alert is what it reads next).
 */
static void tcli_expect_refused(struct tcli *c, gnutls_alert_description_t alert)
{
	char line[512];
	int n = c->hs;

	if (!n)
		n = tcli_line(c, line, sizeof(line), T_MS);
	if (n > 0)
		fail_msg("refused client got a line: %s", line);
	if (n != GNUTLS_E_FATAL_ALERT_RECEIVED)
		fail_msg("want the alert '%s', got %s", gnutls_alert_get_strname(alert),
			 n ? gnutls_strerror(n) : "end of stream");
	if (gnutls_alert_get(c->s) != alert)
		fail_msg("want the alert '%s', got '%s'", gnutls_alert_get_strname(alert),
			 gnutls_alert_get_strname(gnutls_alert_get(c->s)));
}

/* A plaintext unix client of the same monitor: greeting, negotiation, an answer. */
static int unix_session(struct env *e)
{
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct tcli u = {0};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	ssize_t n;

	assert_true(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", e->mp.path);
	assert_int_equal(connect(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	/* Line reads without TLS: one byte at a time is plenty here. */
	for (int lines = 0; lines < 2;) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		assert_int_equal(poll(&pfd, 1, T_MS), 1);
		n = recv(fd, u.in + u.in_len, 1, 0);
		assert_int_equal(n, 1);
		u.in_len++;
		if (u.in_len >= 2 && !memcmp(u.in + u.in_len - 2, "\r\n", 2)) {
			u.in[u.in_len] = '\0';
			if (!lines)
				assert_true(!strncmp(u.in, "{\"QMP\": ", 8));
			else
				assert_string_equal(u.in, "{\"return\": {}}\r\n");
			if (!lines)
				assert_int_equal(
					send(fd, NEGOTIATE, strlen(NEGOTIATE), MSG_NOSIGNAL),
					(ssize_t)strlen(NEGOTIATE));
			lines++;
			u.in_len = 0;
		}
	}
	return fd;
}

/* Milliseconds until the monitor closed @fd (EOF or reset), or -1 after @timeout_ms. */
static int wait_closed(int fd, int timeout_ms, char *seen, size_t seen_cap)
{
	int64_t start = test_now_ms();
	size_t seen_len = 0;
	char buf[4096];
	ssize_t n;

	while (test_now_ms() - start < timeout_ms) {
		struct pollfd pfd = {.fd = fd, .events = POLLIN};

		if (poll(&pfd, 1, 20) != 1)
			continue;
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		if (n > 0 && seen) {
			size_t k = (size_t)n < seen_cap - 1 - seen_len ? (size_t)n
								       : seen_cap - 1 - seen_len;

			memcpy(seen + seen_len, buf, k);
			seen_len += k;
			seen[seen_len] = '\0';
		}
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return (int)(test_now_ms() - start);
	}
	return -1;
}

/* ---- an authorized client ------------------------------------------------------ */

/* Greeting only after the handshake; a negotiated session; the peer's name logged. */
static void test_x509_session(void **state)
{
	struct env *e = *state;
	struct tcli c;
	int u;

	env_start_x509(e, good, "CN=somebody else;" CLIENT_DN, NULL);
	tcli_x509(&c, e->port, good, good);
	tcli_expect_session(&c);
	expect_logged(e, "TLS peer '" CLIENT_DN "' authorized");
	/* The unix socket stays plaintext beside it. */
	u = unix_session(e);
	close(u);
	tcli_close(&c);
}

/* ---- refusals: each closed alone, its cause in the log and in the alert ------------ */

static void test_no_certificate(void **state)
{
	struct env *e = *state;
	struct tcli c, ok;

	env_start_x509(e, good, NULL, NULL);
	tcli_x509(&c, e->port, good, NULL);
	tcli_expect_refused(&c, GNUTLS_A_CERTIFICATE_REQUIRED);
	expect_logged(e, "refused: TLS: client refused: it presented no certificate");
	tcli_close(&c);
	tcli_x509(&ok, e->port, good, good);
	tcli_expect_session(&ok);
	tcli_close(&ok);
}

static void test_other_ca(void **state)
{
	struct env *e = *state;
	struct tcli c;

	env_start_x509(e, good, NULL, NULL);
	/* Same name, signed by a CA the monitor does not trust. */
	tcli_x509(&c, e->port, good, other);
	tcli_expect_refused(&c, GNUTLS_A_UNKNOWN_CA);
	expect_logged(e, "client certificate: The certificate is NOT trusted. The certificate "
			 "issuer is unknown");
	tcli_close(&c);
}

static void test_expired(void **state)
{
	struct env *e = *state;
	struct tcli c;

	env_start_x509(e, expired, NULL, NULL);
	tcli_x509(&c, e->port, expired, expired);
	tcli_expect_refused(&c, GNUTLS_A_CERTIFICATE_EXPIRED);
	expect_logged(e, "client certificate: The certificate is NOT trusted. The certificate "
			 "chain uses expired certificate");
	tcli_close(&c);
}

static void test_not_authorized(void **state)
{
	struct env *e = *state;
	struct tcli c;

	env_start_x509(e, good, "CN=somebody else,O=cleave tests", NULL);
	tcli_x509(&c, e->port, good, good);
	tcli_expect_refused(&c, GNUTLS_A_ACCESS_DENIED);
	expect_logged(e, "client certificate '" CLIENT_DN
			 "' is not in the authorization list (qmp-tls-authz)");
	tcli_close(&c);
}

static void test_psk(void **state)
{
	static const char *const tls[] = {"--tls-psk-file", psk_file, "--tls-authz", "qmp-client",
					  NULL};
	struct env *e = *state;
	struct tcli c;

	env_start(e, tls, NULL);
	tcli_psk(&c, e->port, "qmp-client", PSK_GOOD);
	tcli_expect_session(&c);
	tcli_close(&c);
	/* In keys.psk, not authorized. */
	tcli_psk(&c, e->port, "bystander", PSK_GOOD);
	assert_true(c.hs < 0 || tcli_line(&c, c.in, sizeof(c.in), T_MS) < 0);
	expect_logged(e, "PSK identity 'bystander' is not in the authorization list");
	tcli_close(&c);
	tcli_psk(&c, e->port, "stranger", PSK_GOOD);
	assert_true(c.hs < 0 || tcli_line(&c, c.in, sizeof(c.in), T_MS) < 0);
	expect_logged(e, "PSK identity 'stranger' is unknown");
	tcli_close(&c);
	/* The right identity with another key: the handshake cannot complete. */
	tcli_psk(&c, e->port, "qmp-client", PSK_WRONG);
	assert_true(c.hs < 0 || tcli_line(&c, c.in, sizeof(c.in), T_MS) < 0);
	expect_logged(e, "refused: TLS");
	tcli_close(&c);
	tcli_psk(&c, e->port, "qmp-client", PSK_GOOD);
	tcli_expect_session(&c);
	tcli_close(&c);
}

/*
 * A plaintext QMP client on the TLS port: its JSON is not a ClientHello,
 * it gets no greeting and is closed at once; a TLS session open meanwhile
 * goes on.
 */
static void test_plaintext_client(void **state)
{
	struct env *e = *state;
	struct tcli c;
	char seen[512] = "";
	int fd, ms;

	env_start_x509(e, good, NULL, NULL);
	tcli_x509(&c, e->port, good, good);
	tcli_expect_session(&c);
	fd = tcp_connect(e->port);
	assert_int_equal(send(fd, NEGOTIATE, strlen(NEGOTIATE), MSG_NOSIGNAL),
			 (ssize_t)strlen(NEGOTIATE));
	ms = wait_closed(fd, T_MS, seen, sizeof(seen));
	assert_true(ms >= 0);
	/* At most a TLS alert record (type 21), never QMP text. */
	assert_null(strstr(seen, "QMP"));
	assert_null(strstr(seen, "{"));
	close(fd);
	expect_logged(e, "not a TLS client hello");
	tcli_send(&c, QUERY_NAME, strlen(QUERY_NAME));
	tcli_expect_line(&c, NAME_REPLY);
	tcli_close(&c);
}

/*
 * A client that starts a ClientHello and stops: closed at the handshake
 * deadline (1 s here), while another client handshakes and is served.
 */
static void test_stalled_handshake(void **state)
{
	static const char *const extra[] = {"--handshake-timeout", "1000", NULL};
	/* A handshake record announcing 512 bytes, and 4 of them. */
	static const unsigned char part[] = {0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc};
	struct env *e = *state;
	int64_t t0, served_ms;
	struct tcli c;
	int fd, ms;

	env_start_x509(e, good, NULL, extra);
	fd = tcp_connect(e->port);
	t0 = test_now_ms();
	assert_int_equal(send(fd, part, sizeof(part), MSG_NOSIGNAL), (ssize_t)sizeof(part));
	tcli_x509(&c, e->port, good, good);
	tcli_expect_session(&c);
	served_ms = test_now_ms() - t0;
	assert_true(wait_closed(fd, T_MS, NULL, 0) >= 0);
	ms = (int)(test_now_ms() - t0);
	/* Served while the other waited; the stalled one closed by its deadline, not before. */
	assert_true(served_ms < 900);
	assert_true(ms >= 900 && ms < T_MS);
	close(fd);
	expect_logged(e, "TLS handshake timeout: not completed within 1000 ms "
			 "(qmp-handshake-timeout)");
	tcli_send(&c, QUERY_NAME, strlen(QUERY_NAME));
	tcli_expect_line(&c, NAME_REPLY);
	tcli_close(&c);
}

/* ---- limits, for TLS clients ---------------------------------------------------- */

/*
 * One ordinary slot and the operator's: a third TLS client gets no
 * greeting (no QMP line either: it never got a TLS session), and the two
 * sessions go on.
 */
static void test_client_limit(void **state)
{
	static const char *const extra[] = {"--max-clients", "1", NULL};
	struct env *e = *state;
	struct tcli a, b, c;
	char line[512];
	int n;

	env_start_x509(e, good, NULL, extra);
	tcli_x509(&a, e->port, good, good);
	tcli_expect_session(&a);
	tcli_x509(&b, e->port, good, good);
	tcli_expect_session(&b);
	tcli_x509(&c, e->port, good, good);
	n = c.hs ? c.hs : tcli_line(&c, line, sizeof(line), T_MS);
	if (n > 0)
		fail_msg("a client past the limit got a line: %s", line);
	assert_true(n != GNUTLS_E_AGAIN);
	tcli_close(&c);
	expect_logged(e, "too many QMP clients");
	tcli_send(&a, QUERY_NAME, strlen(QUERY_NAME));
	tcli_expect_line(&a, NAME_REPLY);
	tcli_send(&b, QUERY_NAME, strlen(QUERY_NAME));
	tcli_expect_line(&b, NAME_REPLY);
	tcli_close(&a);
	tcli_close(&b);
}

/* An unfinished message over TLS: the error line comes through TLS, then the close. */
static void test_partial_deadline(void **state)
{
	static const char *const extra[] = {"--partial-timeout", "500", NULL};
	static const char half[] = "{\"execute\": \"query-na";
	struct env *e = *state;
	struct tcli c;
	char line[512];
	int n;

	env_start_x509(e, good, NULL, extra);
	tcli_x509(&c, e->port, good, good);
	tcli_expect_session(&c);
	tcli_send(&c, half, strlen(half));
	n = tcli_line(&c, line, sizeof(line), T_MS);
	assert_true(n > 0);
	assert_non_null(strstr(line, "(qmp-partial-timeout)"));
	n = tcli_line(&c, line, sizeof(line), T_MS);
	assert_true(n == 0 || n == GNUTLS_E_PREMATURE_TERMINATION);
	tcli_close(&c);
}

/* The monitor's end acknowledged all @fd sent (then it reads it at once). */
static void wait_taken(int fd)
{
	int64_t end = test_now_ms() + T_MS;
	int q = 1;

	while (test_now_ms() < end) {
		assert_int_equal(ioctl(fd, SIOCOUTQ, &q), 0);
		if (q == 0) {
			test_sleep_ms(20);
			return;
		}
		test_sleep_ms(5);
	}
	fail_msg("the monitor left %d bytes unread", q);
}

/*
 * 4 MiB of input for all: four TLS clients' unfinished 1 MB messages fit,
 * the fifth gets the error line and is closed, the four go on.
 */
static void test_input_limit(void **state)
{
	static const char *const extra[] = {"--input-limit",
					    "4194304",
					    "--partial-timeout",
					    "0",
					    "--handshake-timeout",
					    "0",
					    NULL};
	static const char head[] = "{\"execute\": \"query-name\", \"arguments\": {\"x\": \"";
	struct env *e = *state;
	size_t len = 1000000;
	char *msg = malloc(len), line[512];
	struct tcli c[5];
	int i, n;

	assert_non_null(msg);
	memset(msg, 'a', len);
	memcpy(msg, head, strlen(head));
	env_start_x509(e, good, NULL, extra);
	for (i = 0; i < 5; i++) {
		tcli_x509(&c[i], e->port, good, good);
		tcli_expect_session(&c[i]);
	}
	for (i = 0; i < 4; i++) {
		tcli_send(&c[i], msg, len);
		wait_taken(c[i].fd);
	}
	/* The fifth may find its socket closed before it sent it all. */
	for (size_t off = 0; off < len;) {
		ssize_t k = gnutls_record_send(c[4].s, msg + off,
					       len - off > 16384 ? 16384 : len - off);

		if (k == GNUTLS_E_AGAIN || k == GNUTLS_E_INTERRUPTED)
			continue;
		if (k < 0)
			break;
		off += (size_t)k;
	}
	n = tcli_line(&c[4], line, sizeof(line), T_MS);
	if (n <= 0)
		fail_msg("no error line: %s", n ? gnutls_strerror(n) : "end of stream");
	assert_non_null(strstr(line, "(qmp-input-limit)"));
	tcli_close(&c[4]);
	for (i = 0; i < 4; i++) {
		/* Ends the string and the message: the session goes on. */
		tcli_send(&c[i], "\"}}", 3);
		n = tcli_line(&c[i], line, sizeof(line), T_MS);
		assert_true(n > 0);
		assert_non_null(strstr(line, "\"error\""));
		tcli_send(&c[i], QUERY_NAME, strlen(QUERY_NAME));
		tcli_expect_line(&c[i], NAME_REPLY);
		tcli_close(&c[i]);
	}
	free(msg);
}

/*
 * Input GnuTLS took off the socket but has not handed over (a record cut
 * at the end of the monitor's 64 KiB read) wakes no epoll.  Seven records
 * of 10,000 bytes arrive while the monitor is stopped: the first read
 * takes six and a part of the seventh, the rest is only in GnuTLS.  Every
 * command must be answered.
 */
static void test_records_held_by_gnutls(void **state)
{
	struct env *e = *state;
	char *burst = malloc(70000), line[512], want[128];
	size_t len = 0;
	int i, nr, n;
	struct tcli c;

	assert_non_null(burst);
	for (nr = 0; len + 64 < 70000; nr++)
		len += (size_t)sprintf(burst + len, "{\"execute\": \"query-name\", \"id\": %d}",
				       nr);
	memset(burst + len, ' ', 70000 - len);
	len = 70000;
	env_start_x509(e, good, NULL, NULL);
	tcli_x509(&c, e->port, good, good);
	tcli_expect_greeting(&c);
	tcli_send(&c, NEGOTIATE, strlen(NEGOTIATE));
	tcli_expect_line(&c, "{\"return\": {}}\r\n");
	kill(e->mp.pid, SIGSTOP);
	for (i = 0; i < 7; i++)
		tcli_send(&c, burst + i * 10000, 10000);
	test_sleep_ms(50);
	kill(e->mp.pid, SIGCONT);
	for (i = 0; i < nr; i++) {
		snprintf(want, sizeof(want), "{\"return\": {\"name\": \"testvm\"}, \"id\": %d}\r\n",
			 i);
		n = tcli_line(&c, line, sizeof(line), T_MS);
		if (n <= 0)
			fail_msg("answer %d of %d missing: %s", i, nr,
				 n ? gnutls_strerror(n) : "end of stream");
		assert_string_equal(line, want);
	}
	tcli_close(&c);
	free(burst);
}

/* ---- options ------------------------------------------------------------------- */

/*
 * Refused at start: the process exits before it serves.  (That TLS lets a
 * TCP socket off loopback is not tried here: the tests stay on loopback.)
 */
static void test_bad_options(void **state)
{
	struct env *e = *state;
	char nodir[128], noca[160];
	const char *bad[][7] = {
		/* Plaintext QMP stays on loopback; TLS opens other addresses. */
		{"--qmp", "tcp:0.0.0.0:0", NULL},
		{"--tls-x509-dir", nodir, "--qmp", "tcp:127.0.0.1:0", NULL},
		{"--tls-x509-dir", good, "--tls-psk-file", psk_file, "--qmp", "tcp:127.0.0.1:0",
		 NULL},
		{"--tls-authz", CLIENT_DN, "--qmp", "tcp:127.0.0.1:0", NULL},
		/* Credentials no TCP socket would use. */
		{"--tls-x509-dir", good, NULL},
		{"--tls-x509-dir", noca, "--qmp", "tcp:127.0.0.1:0", NULL},
	};
	size_t i;

	snprintf(nodir, sizeof(nodir), "%s/absent", scratch);
	/* A directory without ca-cert.pem. */
	snprintf(noca, sizeof(noca), "%s/noca", e->dir);
	assert_int_equal(mkdir(noca, 0700), 0);
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		e->mp.log_path = e->log;
		assert_int_equal(mon_proc_start(&e->mp, monitor_exe, e->dir, NULL, 0, bad[i]),
				 -ECHILD);
		mon_proc_fini(&e->mp);
	}
	expect_logged(e, "QMP over TCP without TLS listens on loopback (127.0.0.0/8) only");
	expect_logged(e, "absent/ca-cert.pem: No such file or directory");
	expect_logged(e, "noca/ca-cert.pem: No such file or directory");
	expect_logged(e, "no TCP QMP socket to use them");
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_x509_session, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_no_certificate, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_other_ca, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_expired, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_not_authorized, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_psk, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_plaintext_client, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_stalled_handshake, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_client_limit, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_partial_deadline, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_input_limit, env_alloc, env_teardown),
		cmocka_unit_test_setup_teardown(test_records_held_by_gnutls, env_alloc,
						env_teardown),
		cmocka_unit_test_setup_teardown(test_bad_options, env_alloc, env_teardown),
	};

	if (argc < 2) {
		fprintf(stderr, "usage: %s CLEAVE-MONITOR\n", argv[0]);
		return 2;
	}
	monitor_exe = argv[1];
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
