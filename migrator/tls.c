/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Mutual TLS for the migration wire (see tls.h).  GnuTLS, as QEMU uses for
 * the same credential objects and layouts: TLS 1.3 only, no session
 * tickets (nothing is resumed: every connection, reconnects included,
 * authenticates afresh).
 */
#include <errno.h>
#include <fnmatch.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/record.h"
#include "migrator/tls.h"
#include "tls/tls.h"

#define TLS_EXPORTER "EXPORTER-cleave-migration-channel"

/*
 * Immutable after mig_tls_load / mig_tls_derive: shared by every connection
 * that uses it.  A derived one borrows its base's credentials (the base
 * outlives it) and has its own settings.
 */
struct mig_tls {
	bool psk;
	const struct mig_tls *base; /* NULL: loaded here, owns the credentials below */
	/* x509: whichever of the two ends the directory holds (a migrator may be either). */
	gnutls_certificate_credentials_t server, client;
	/* PSK */
	gnutls_psk_server_credentials_t psk_server;
	gnutls_psk_client_credentials_t psk_client; /* always owned: bound to one identity */
	struct tls_psk_keys keys;		    /* borrowed from base when derived */
	char *path;		/* what was loaded: the x509 directory or the PSK file */
	char *identity;		/* the source's PSK identity, NULL: "qemu" */
	unsigned int endpoints; /* MIG_TLS_END_* this context may serve */
	/* Authorization: the first rule that matches decides, else authz_allow. */
	struct mig_tls_rule *rules;
	size_t nr_rules;
	bool authz_allow;
	char *authz_id; /* tls-authz, for messages; NULL or "" when none */
	char *hostname;
};

/*
 * The session of each fd that carries TLS.  Written when a connection gets
 * or loses its session (by the thread that owns the fd); read on every
 * send and receive.  Protected by reg_lock.
 */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static gnutls_session_t *reg;
static size_t reg_len;

static gnutls_session_t reg_get(int fd)
{
	gnutls_session_t s = NULL;

	pthread_mutex_lock(&reg_lock);
	if (fd >= 0 && (size_t)fd < reg_len)
		s = reg[fd];
	pthread_mutex_unlock(&reg_lock);
	return s;
}

static int reg_set(int fd, gnutls_session_t s)
{
	int ret = 0;

	pthread_mutex_lock(&reg_lock);
	if ((size_t)fd >= reg_len) {
		size_t n = (size_t)fd + 64;
		gnutls_session_t *grown = realloc(reg, n * sizeof(*reg));

		if (!grown) {
			ret = -ENOMEM;
			goto out;
		}
		memset(grown + reg_len, 0, (n - reg_len) * sizeof(*reg));
		reg = grown;
		reg_len = n;
	}
	reg[fd] = s;
out:
	pthread_mutex_unlock(&reg_lock);
	return ret;
}

void mig_tls_detach(int fd)
{
	gnutls_session_t s = reg_get(fd);

	if (s) {
		reg_set(fd, NULL);
		gnutls_deinit(s);
	}
}

bool mig_tls_on(int fd)
{
	return reg_get(fd) != NULL;
}

/*
 * Why this thread's last server handshake refused the peer's certificate
 * (the verify callback cannot return a text; the handshake runs on the
 * thread that reads it back).
 */
static __thread char verify_err[256];

/* ---- credentials ------------------------------------------------------- */

static int peer_authorized(gnutls_session_t s, char *err, size_t errlen);

/*
 * The destination's check of the source's certificate, during the
 * handshake: signed by our CA, valid now, and authorized.  A refusal fails
 * the handshake with an alert, so the source learns it was refused.
 */
static int server_verify(gnutls_session_t s)
{
	unsigned int status = 0;
	gnutls_datum_t out = {NULL, 0};

	verify_err[0] = '\0';
	if (gnutls_certificate_verify_peers3(s, NULL, &status) < 0) {
		snprintf(verify_err, sizeof(verify_err), "the peer presented no certificate");
		return GNUTLS_E_CERTIFICATE_ERROR;
	}
	if (status) {
		if (!gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &out, 0))
			snprintf(verify_err, sizeof(verify_err), "%s", (char *)out.data);
		gnutls_free(out.data);
		return GNUTLS_E_CERTIFICATE_ERROR;
	}
	return peer_authorized(s, verify_err, sizeof(verify_err)) ? GNUTLS_E_CERTIFICATE_ERROR : 0;
}

static int file_exists(const char *dir, const char *name, char *path, size_t len)
{
	snprintf(path, len, "%s/%s", dir, name);
	return access(path, R_OK) == 0;
}

static int load_x509(struct mig_tls *t, const char *dir, char *err, size_t errlen)
{
	char ca[4096], cert[4096], key[4096];
	int ret;

	if (!file_exists(dir, "ca-cert.pem", ca, sizeof(ca))) {
		snprintf(err, errlen, "%s: no readable ca-cert.pem", dir);
		return -ENOENT;
	}
	if (file_exists(dir, "server-cert.pem", cert, sizeof(cert)) &&
	    file_exists(dir, "server-key.pem", key, sizeof(key))) {
		if (gnutls_certificate_allocate_credentials(&t->server))
			return -ENOMEM;
		gnutls_certificate_set_verify_function(t->server, server_verify);
		ret = tls_x509_load(t->server, dir, "server", err, errlen);
		if (ret)
			return ret;
	}
	if (file_exists(dir, "client-cert.pem", cert, sizeof(cert)) &&
	    file_exists(dir, "client-key.pem", key, sizeof(key))) {
		if (gnutls_certificate_allocate_credentials(&t->client))
			return -ENOMEM;
		ret = tls_x509_load(t->client, dir, "client", err, errlen);
		if (ret)
			return ret;
	}
	if (!t->server && !t->client) {
		snprintf(err, errlen,
			 "%s: neither server-cert.pem + server-key.pem nor client-cert.pem + "
			 "client-key.pem",
			 dir);
		return -ENOENT;
	}
	return 0;
}

/* QEMU's authz-list check: the first matching rule's policy, else the default. */
static bool authorized(const struct mig_tls *t, const char *who)
{
	for (size_t i = 0; i < t->nr_rules; i++) {
		const struct mig_tls_rule *r = &t->rules[i];

		if (r->glob ? !fnmatch(r->match, who, 0) : !strcmp(r->match, who))
			return r->allow;
	}
	return t->authz_allow;
}

/* " (tls-authz 'ID')" when a QMP authorization object decided, else "". */
static void authz_suffix(const struct mig_tls *t, char *buf, size_t len)
{
	buf[0] = '\0';
	if (t->authz_id && t->authz_id[0] && t->authz_id[0] != '#')
		snprintf(buf, len, " (tls-authz '%s')", t->authz_id);
}

/* The server's key lookup: the identity must be in keys.psk (and authorized). */
static int psk_server_key(gnutls_session_t s, const char *identity, gnutls_datum_t *key)
{
	const struct mig_tls *t = gnutls_session_get_ptr(s);
	const struct tls_psk_key *k = tls_psk_keys_find(&t->keys, identity);
	char why[96];

	if (!k || !authorized(t, identity)) {
		authz_suffix(t, why, sizeof(why));
		snprintf(verify_err, sizeof(verify_err), "PSK identity '%s' is %s%s", identity,
			 k ? "not authorized" : "unknown", k ? why : "");
		return -1;
	}
	key->data = gnutls_malloc(k->key.size);
	if (!key->data)
		return -1;
	memcpy(key->data, k->key.data, k->key.size);
	key->size = k->key.size;
	return 0;
}

/* As the source: @identity's key, if the keys hold it (else t has no client end). */
static int psk_client_set(struct mig_tls *t, const char *identity, char *err, size_t errlen)
{
	const struct tls_psk_key *mine = tls_psk_keys_find(&t->keys, identity);

	if (!mine)
		return 0;
	if (gnutls_psk_allocate_client_credentials(&t->psk_client))
		return -ENOMEM;
	if (gnutls_psk_set_client_credentials(t->psk_client, identity, &mine->key,
					      GNUTLS_PSK_KEY_RAW) < 0) {
		snprintf(err, errlen, "the key of '%s' is not valid", identity);
		return -EINVAL;
	}
	return 0;
}

static int load_psk(struct mig_tls *t, const struct mig_tls_config *cfg, char *err, size_t errlen)
{
	int ret = tls_psk_keys_load(&t->keys, cfg->psk_file, err, errlen);

	if (ret)
		return ret;
	if (gnutls_psk_allocate_server_credentials(&t->psk_server))
		return -ENOMEM;
	gnutls_psk_set_server_credentials_function(t->psk_server, psk_server_key);
	return psk_client_set(t, cfg->psk_identity ? cfg->psk_identity : TLS_PSK_DEFAULT_IDENTITY,
			      err, errlen);
}

int mig_tls_load(struct mig_tls **out, const struct mig_tls_config *cfg, char *err, size_t errlen)
{
	struct mig_tls *t;
	int ret;

	if (!cfg->x509_dir == !cfg->psk_file) {
		snprintf(err, errlen, "TLS needs exactly one of an x509 directory and a PSK file");
		return -EINVAL;
	}
	/* What the session record holds of them must fit there (mig-limits.h). */
	if (mig_check_tls_string("tls-x509-dir", cfg->x509_dir ? cfg->x509_dir : "",
				 MIG_TLS_PATH_LEN, err, errlen) ||
	    mig_check_tls_string("tls-psk-file", cfg->psk_file ? cfg->psk_file : "",
				 MIG_TLS_PATH_LEN, err, errlen) ||
	    mig_check_tls_string("tls-hostname", cfg->hostname ? cfg->hostname : "",
				 MIG_TLS_HOSTNAME_LEN, err, errlen) ||
	    mig_check_tls_string("tls-psk-identity", cfg->psk_identity ? cfg->psk_identity : "",
				 MIG_TLS_ID_LEN, err, errlen))
		return -EINVAL;
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->psk = cfg->psk_file != NULL;
	t->endpoints = MIG_TLS_END_CLIENT | MIG_TLS_END_SERVER;
	t->authz_allow = true;
	ret = t->psk ? load_psk(t, cfg, err, errlen) : load_x509(t, cfg->x509_dir, err, errlen);
	if (!ret && !(t->path = strdup(t->psk ? cfg->psk_file : cfg->x509_dir)))
		ret = -ENOMEM;
	if (!ret && cfg->psk_identity && !(t->identity = strdup(cfg->psk_identity)))
		ret = -ENOMEM;
	if (!ret && cfg->hostname && !(t->hostname = strdup(cfg->hostname)))
		ret = -ENOMEM;
	if (!ret && cfg->authz) {
		char *list = strdup(cfg->authz), *save = NULL, *tok;

		/* An allow list: only the names given (exact), nobody else. */
		t->rules = calloc(MIG_TLS_MAX_RULES, sizeof(*t->rules));
		t->authz_allow = false;
		if (!list || !t->rules)
			ret = -ENOMEM;
		/* Names hold commas ("CN=a,O=b"): entries are separated by ';' or by newlines. */
		for (tok = ret ? NULL : strtok_r(list, ";\n", &save); tok && !ret;
		     tok = strtok_r(NULL, ";\n", &save)) {
			if (t->nr_rules == MIG_TLS_MAX_RULES) {
				snprintf(err, errlen, "more than %d authorized names",
					 MIG_TLS_MAX_RULES);
				ret = -E2BIG;
			} else if (strlen(tok) >= MIG_TLS_MATCH_LEN) {
				snprintf(err, errlen, "an authorized name is longer than %d bytes",
					 MIG_TLS_MATCH_LEN - 1);
				ret = -E2BIG;
			} else {
				t->rules[t->nr_rules].allow = 1;
				snprintf(t->rules[t->nr_rules++].match, MIG_TLS_MATCH_LEN, "%s",
					 tok);
			}
		}
		free(list);
	}
	if (ret) {
		if (ret == -ENOMEM && !err[0])
			snprintf(err, errlen, "out of memory");
		mig_tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void mig_tls_free(struct mig_tls *t)
{
	if (!t)
		return;
	if (t->psk_client)
		gnutls_psk_free_client_credentials(t->psk_client);
	if (!t->base) {
		if (t->server)
			gnutls_certificate_free_credentials(t->server);
		if (t->client)
			gnutls_certificate_free_credentials(t->client);
		if (t->psk_server)
			gnutls_psk_free_server_credentials(t->psk_server);
		tls_psk_keys_free(&t->keys);
	}
	free(t->rules);
	free(t->path);
	free(t->identity);
	free(t->authz_id);
	free(t->hostname);
	free(t);
}

int mig_tls_derive(struct mig_tls **out, const struct mig_tls *base, const struct mig_tls_params *p,
		   char *err, size_t errlen)
{
	struct mig_tls *t;
	int ret = 0;

	if (base->base)
		base = base->base;
	if (p->nr_rules > MIG_TLS_MAX_RULES) {
		snprintf(err, errlen, "more than %d authorization rules", MIG_TLS_MAX_RULES);
		return -E2BIG;
	}
	t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->base = base;
	t->psk = base->psk;
	t->server = base->server;
	t->client = base->client;
	t->psk_server = base->psk_server;
	t->keys = base->keys;
	t->endpoints = p->endpoints;
	t->authz_allow = !p->authz[0] || p->authz_allow;
	if (p->authz[0] && p->nr_rules) {
		t->rules = calloc(p->nr_rules, sizeof(*t->rules));
		if (t->rules)
			memcpy(t->rules, p->rules, p->nr_rules * sizeof(*t->rules));
		t->nr_rules = p->nr_rules;
	}
	t->authz_id = strdup(p->authz);
	t->hostname = p->hostname[0] ? strdup(p->hostname) : NULL;
	t->identity = p->username[0] ? strdup(p->username) : NULL;
	t->path = strdup(base->path);
	if ((p->authz[0] && p->nr_rules && !t->rules) || !t->authz_id || !t->path ||
	    (p->hostname[0] && !t->hostname) || (p->username[0] && !t->identity))
		ret = -ENOMEM;
	if (!ret && t->psk)
		ret = psk_client_set(t, t->identity ? t->identity : TLS_PSK_DEFAULT_IDENTITY, err,
				     errlen);
	if (ret) {
		if (ret == -ENOMEM)
			snprintf(err, errlen, "out of memory");
		mig_tls_free(t);
		return ret;
	}
	*out = t;
	return 0;
}

void mig_tls_preset(const struct mig_tls *t, struct mig_tls_params *p)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->creds, sizeof(p->creds), "%s", MIG_TLS_RUN_ID);
	snprintf(p->hostname, sizeof(p->hostname), "%s", t->hostname ? t->hostname : "");
	snprintf(p->authz, sizeof(p->authz), "%s", t->nr_rules ? MIG_TLS_RUN_ID : "");
	p->kind = t->psk ? MIG_TLS_PSK : MIG_TLS_X509;
	p->endpoints = t->endpoints;
	snprintf(p->path, sizeof(p->path), "%s", t->path);
	snprintf(p->username, sizeof(p->username), "%s", t->identity ? t->identity : "");
	p->authz_allow = t->authz_allow;
	p->nr_rules = (uint32_t)t->nr_rules;
	if (t->nr_rules)
		memcpy(p->rules, t->rules, t->nr_rules * sizeof(*t->rules));
}

const char *mig_tls_path(const struct mig_tls *t)
{
	return t->path;
}

bool mig_tls_serves(const struct mig_tls *t, bool server)
{
	return t->endpoints & (server ? MIG_TLS_END_SERVER : MIG_TLS_END_CLIENT);
}

const char *mig_tls_kind(const struct mig_tls *t)
{
	return t->psk ? "psk" : "x509";
}

bool mig_tls_needs_hostname(const struct mig_tls *t)
{
	return !t->psk && !t->hostname;
}

/* ---- sessions ---------------------------------------------------------- */

static int session_new(const struct mig_tls *t, int fd, bool server, const char *hostname,
		       gnutls_session_t *out, char *err, size_t errlen)
{
	gnutls_session_t s;
	int ret;

	if (server ? (t->psk ? !t->psk_server : !t->server)
		   : (t->psk ? !t->psk_client : !t->client)) {
		snprintf(err, errlen, "no %s credentials for the %s end", t->psk ? "PSK" : "x509",
			 server ? "destination (server)" : "source (client)");
		return -ENOKEY;
	}
	/* GnuTLS's own socket I/O, with MSG_NOSIGNAL: a vanished peer is an error, not SIGPIPE. */
	ret = gnutls_init(&s, (server ? GNUTLS_SERVER : GNUTLS_CLIENT) | GNUTLS_NO_TICKETS |
				      GNUTLS_NO_SIGNAL);
	if (ret) {
		snprintf(err, errlen, "gnutls_init: %s", gnutls_strerror(ret));
		return -ENOMEM;
	}
	gnutls_session_set_ptr(s, (void *)t);
	ret = gnutls_priority_set_direct(s, t->psk ? TLS_PRIO_PSK : TLS_PRIO_X509, NULL);
	if (!ret && t->psk)
		ret = gnutls_credentials_set(
			s, GNUTLS_CRD_PSK, server ? (void *)t->psk_server : (void *)t->psk_client);
	else if (!ret)
		ret = gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE,
					     server ? t->server : t->client);
	if (!ret && !t->psk && server) {
		/* Mutual: the source must present a certificate (server_verify checks it). */
		gnutls_certificate_server_set_request(s, GNUTLS_CERT_REQUIRE);
	} else if (!ret && !t->psk) {
		if (t->hostname)
			hostname = t->hostname;
		if (hostname)
			ret = gnutls_server_name_set(s, GNUTLS_NAME_DNS, hostname,
						     strlen(hostname));
		gnutls_session_set_verify_cert(s, hostname, 0);
	}
	if (ret) {
		snprintf(err, errlen, "TLS session setup: %s", gnutls_strerror(ret));
		gnutls_deinit(s);
		return -EINVAL;
	}
	gnutls_transport_set_int(s, fd);
	*out = s;
	return 0;
}

/* After the handshake: the peer is one we authorize (the destination's check). */
static int peer_authorized(gnutls_session_t s, char *err, size_t errlen)
{
	const struct mig_tls *t = gnutls_session_get_ptr(s);
	unsigned int n = 0;
	char *dn;
	bool ok;

	if (t->psk) {
		const char *who = gnutls_psk_server_get_username(s);

		ok = who && authorized(t, who);
		if (!ok) {
			char why[96];

			authz_suffix(t, why, sizeof(why));
			snprintf(err, errlen, "TLS: PSK identity '%s' is not authorized%s",
				 who ? who : "?", why);
		}
		return ok ? 0 : -EACCES;
	}
	if (!gnutls_certificate_get_peers(s, &n) || !n) {
		snprintf(err, errlen, "TLS: the peer presented no certificate");
		return -EACCES;
	}
	dn = tls_peer_dn(s);
	if (!dn) {
		snprintf(err, errlen, "TLS: the peer's certificate has no readable name");
		return -EACCES;
	}
	ok = authorized(t, dn);
	if (!ok) {
		char why[96];

		authz_suffix(t, why, sizeof(why));
		snprintf(err, errlen, "TLS: certificate '%s' is not in the authorization list%s",
			 dn, why);
	}
	gnutls_free(dn);
	return ok ? 0 : -EACCES;
}

/*
 * A timeout or a cut may be the network (retriable); anything else is a
 * refusal (certificate, name, key, authorization) that a retry would meet
 * again.
 */
static int handshake_errno(int ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
		return -ETIMEDOUT;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PULL_ERROR:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_UNEXPECTED_PACKET_LENGTH:
		return -ECONNRESET;
	default:
		return -EACCES;
	}
}

static int handshake_blocking(gnutls_session_t s, bool server, unsigned int timeout_ms, char *err,
			      size_t errlen)
{
	int ret;

	verify_err[0] = '\0';
	gnutls_handshake_set_timeout(s, timeout_ms);
	do
		ret = gnutls_handshake(s);
	while (ret == GNUTLS_E_INTERRUPTED ||
	       (ret < 0 && !gnutls_error_is_fatal(ret) && ret != GNUTLS_E_AGAIN));
	if (ret < 0) {
		tls_handshake_error(s, ret, "peer", verify_err, err, errlen);
		/* Tell the peer why, as TLS can (bad certificate, unknown CA...). */
		gnutls_alert_send_appropriate(s, ret);
		return handshake_errno(ret);
	}
	return server ? peer_authorized(s, err, errlen) : 0;
}

static int attach(const struct mig_tls *t, int fd, bool server, const char *hostname,
		  unsigned int timeout_ms, bool blocking, char *err, size_t errlen)
{
	gnutls_session_t s;
	int ret = session_new(t, fd, server, hostname, &s, err, errlen);

	if (ret)
		return ret;
	if (blocking) {
		ret = handshake_blocking(s, server, timeout_ms, err, errlen);
		if (ret) {
			gnutls_deinit(s);
			return ret;
		}
	}
	ret = reg_set(fd, s);
	if (ret)
		gnutls_deinit(s);
	return ret;
}

int mig_tls_connect(const struct mig_tls *t, int fd, const char *hostname, unsigned int timeout_ms,
		    char *err, size_t errlen)
{
	return attach(t, fd, false, hostname, timeout_ms, true, err, errlen);
}

int mig_tls_accept(const struct mig_tls *t, int fd, unsigned int timeout_ms, char *err,
		   size_t errlen)
{
	return attach(t, fd, true, NULL, timeout_ms, true, err, errlen);
}

int mig_tls_accept_start(const struct mig_tls *t, int fd)
{
	char err[128];

	return attach(t, fd, true, NULL, 0, false, err, sizeof(err));
}

int mig_tls_step(int fd, short *events, char *err, size_t errlen)
{
	gnutls_session_t s = reg_get(fd);
	int ret;

	if (!s)
		return -ENOTCONN;
	verify_err[0] = '\0';
	ret = gnutls_handshake(s);
	if (ret == GNUTLS_E_AGAIN || ret == GNUTLS_E_INTERRUPTED) {
		*events = gnutls_record_get_direction(s) ? POLLOUT : POLLIN;
		return -EAGAIN;
	}
	if (ret < 0) {
		tls_handshake_error(s, ret, "peer", verify_err, err, errlen);
		gnutls_alert_send_appropriate(s, ret);
		return handshake_errno(ret);
	}
	return peer_authorized(s, err, errlen);
}

/* ---- records ----------------------------------------------------------- */

static ssize_t record_errno(ssize_t ret)
{
	switch (ret) {
	case GNUTLS_E_AGAIN:
		errno = EAGAIN;
		break;
	case GNUTLS_E_INTERRUPTED:
		errno = EINTR;
		break;
	case GNUTLS_E_PREMATURE_TERMINATION:
	case GNUTLS_E_PUSH_ERROR:
	case GNUTLS_E_PULL_ERROR:
		errno = ECONNRESET;
		break;
	case GNUTLS_E_FATAL_ALERT_RECEIVED:
		/* TLS 1.3: a server refuses our certificate after our handshake ended. */
		errno = EKEYREJECTED;
		break;
	default:
		errno = EPROTO; /* a bad record, a bad MAC: the stream cannot go on */
		break;
	}
	return -1;
}

/*
 * A send found the connection reset.  Under TLS 1.3 a server refuses our
 * certificate only after our handshake ended: its alert may be waiting,
 * unread, in front of the reset.  Then say so (EKEYREJECTED).
 */
static void send_failed(gnutls_session_t s, int fd)
{
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	char c;

	if (errno != ECONNRESET)
		return;
	if (poll(&pfd, 1, 0) > 0 && gnutls_record_recv(s, &c, 1) == GNUTLS_E_FATAL_ALERT_RECEIVED)
		errno = EKEYREJECTED;
	else
		errno = ECONNRESET;
}

ssize_t mig_tls_send(int fd, const void *buf, size_t len)
{
	gnutls_session_t s = reg_get(fd);
	ssize_t n;

	if (!s) {
		errno = ENOTCONN;
		return -1;
	}
	n = gnutls_record_send(s, buf, len);
	if (n < 0) {
		record_errno(n);
		send_failed(s, fd);
		return -1;
	}
	return n;
}

ssize_t mig_tls_recv(int fd, void *buf, size_t len)
{
	gnutls_session_t s = reg_get(fd);
	ssize_t n;

	if (!s) {
		errno = ENOTCONN;
		return -1;
	}
	n = gnutls_record_recv(s, buf, len);
	return n < 0 ? record_errno(n) : n;
}

size_t mig_tls_pending(int fd)
{
	gnutls_session_t s = reg_get(fd);

	return s ? gnutls_record_check_pending(s) : 0;
}

int mig_tls_sendv(int fd, const struct iovec *iov, int iovcnt)
{
	gnutls_session_t s = reg_get(fd);
	ssize_t n;

	if (!s)
		return -ENOTCONN;
	/* Corked: the pages of a packet go out as full 16 KiB records, not one each. */
	gnutls_record_cork(s);
	for (int i = 0; i < iovcnt; i++) {
		n = gnutls_record_send(s, iov[i].iov_base, iov[i].iov_len);
		if (n < 0) {
			gnutls_record_uncork(s, 0);
			record_errno(n);
			send_failed(s, fd);
			return errno == EAGAIN ? -ETIMEDOUT : -errno;
		}
	}
	/* Not GNUTLS_RECORD_WAIT: it would retry a send timeout (EAGAIN) for ever. */
	do
		n = gnutls_record_uncork(s, 0);
	while (n == GNUTLS_E_INTERRUPTED);
	if (n < 0) {
		record_errno(n);
		send_failed(s, fd);
		return errno == EAGAIN ? -ETIMEDOUT : -errno;
	}
	return 0;
}

int mig_tls_channel_token(int fd, const uint8_t sid[16], uint8_t out[16])
{
	gnutls_session_t s = reg_get(fd);

	if (!s)
		return -ENOTCONN;
	return gnutls_prf_rfc5705(s, sizeof(TLS_EXPORTER) - 1, TLS_EXPORTER, 16, (const char *)sid,
				  16, (char *)out)
		       ? -EIO
		       : 0;
}
