// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave run` option parsing.  A small table-driven parser instead of
 * getopt_long: no global state (the unit tests parse many command lines in
 * one process) and every error message is ours.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/host-check.h"
#include "launcher/options.h"
#include "monitor/qmp-limits.h"
#include "shm/shm.h"

enum opt_id {
	OPT_NAME,
	OPT_MEMORY,
	OPT_VCPUS,
	OPT_GUEST,
	OPT_APPEND,
	OPT_SERIAL,
	OPT_QMP,
	OPT_STATE_DIR,
	OPT_INCOMING,
	OPT_TLS_X509,
	OPT_TLS_PSK,
	OPT_TLS_MORE,
	OPT_TLS_PSK_IDENTITY,
	OPT_TLS_AUTHZ,
	OPT_TLS_HOSTNAME,
	OPT_INSECURE_PLAINTEXT,
	OPT_MIGRATE_NETNS,
	OPT_SNAPSHOT_DIR,
	OPT_MIGRATE_SOCKET_DIR,
	OPT_UID_BASE,
	OPT_RESTART_LIMIT,
	OPT_QMP_MAX_CLIENTS,
	OPT_QMP_INPUT_LIMIT,
	OPT_QMP_HANDSHAKE_TIMEOUT,
	OPT_QMP_PARTIAL_TIMEOUT,
	OPT_QMP_INSECURE_TCP,
	OPT_QMP_TLS_X509,
	OPT_QMP_TLS_PSK,
	OPT_QMP_TLS_AUTHZ,
	OPT_NO_SANDBOX,
	OPT_VERBOSE,
	OPT_HELP,
};

struct opt_def {
	const char *name; /* long form, without "--" */
	char short_name;  /* 0: none */
	bool has_arg;
	enum opt_id id;
};

static const struct opt_def opt_table[] = {
	{"name", 0, true, OPT_NAME},
	{"memory", 'm', true, OPT_MEMORY},
	{"vcpus", 0, true, OPT_VCPUS},
	{"guest", 0, true, OPT_GUEST},
	{"append", 0, true, OPT_APPEND},
	{"serial", 0, true, OPT_SERIAL},
	{"qmp", 0, true, OPT_QMP},
	{"state-dir", 0, true, OPT_STATE_DIR},
	{"incoming", 0, true, OPT_INCOMING},
	{"migrate-tls-x509", 0, true, OPT_TLS_X509},
	{"migrate-tls-psk", 0, true, OPT_TLS_PSK},
	{"migrate-tls-creds", 0, true, OPT_TLS_MORE},
	{"migrate-tls-psk-identity", 0, true, OPT_TLS_PSK_IDENTITY},
	{"migrate-tls-authz", 0, true, OPT_TLS_AUTHZ},
	{"migrate-tls-hostname", 0, true, OPT_TLS_HOSTNAME},
	{"migrate-insecure-plaintext", 0, false, OPT_INSECURE_PLAINTEXT},
	{"migrate-netns", 0, true, OPT_MIGRATE_NETNS},
	{"snapshot-dir", 0, true, OPT_SNAPSHOT_DIR},
	{"migrate-socket-dir", 0, true, OPT_MIGRATE_SOCKET_DIR},
	{"uid-base", 0, true, OPT_UID_BASE},
	{"restart-limit", 0, true, OPT_RESTART_LIMIT},
	{"qmp-max-clients", 0, true, OPT_QMP_MAX_CLIENTS},
	{"qmp-input-limit", 0, true, OPT_QMP_INPUT_LIMIT},
	{"qmp-handshake-timeout", 0, true, OPT_QMP_HANDSHAKE_TIMEOUT},
	{"qmp-partial-timeout", 0, true, OPT_QMP_PARTIAL_TIMEOUT},
	{"qmp-insecure-tcp", 0, false, OPT_QMP_INSECURE_TCP},
	{"qmp-tls-x509", 0, true, OPT_QMP_TLS_X509},
	{"qmp-tls-psk", 0, true, OPT_QMP_TLS_PSK},
	{"qmp-tls-authz", 0, true, OPT_QMP_TLS_AUTHZ},
	{"no-sandbox", 0, false, OPT_NO_SANDBOX},
	{"verbose", 'v', false, OPT_VERBOSE},
	{"help", 'h', false, OPT_HELP},
};

void run_options_usage(FILE *out)
{
	fprintf(out,
		"Usage: cleave run [OPTIONS]\n"
		"Boot a VM as supervised processes (cleave-vcpu, cleave-migrator, "
		"cleave-monitor).\n"
		"\n"
		"  --name NAME            VM name, [A-Za-z0-9._-], up to %d chars (default "
		"vm-<pid>)\n"
		"  -m, --memory SIZE      guest RAM; K/M/G/T suffix, bare number = MiB (default "
		"512M);\n"
		"                         page aligned, %lluM..%lluG\n"
		"  --vcpus N              vCPUs, 1..KVM_CAP_MAX_VCPUS of this host (default 1)\n"
		"  --guest FILE           guest ELF to boot (default: the embedded guest)\n"
		"  --append STR           guest command line; \"cpus=N\" is appended\n"
		"  --serial stdio|file:PATH\n"
		"                         where the guest's COM1 output goes (default stdio)\n"
		"  --qmp unix:PATH|tcp:ADDR:PORT\n"
		"                         QMP listening socket; repeatable (up to %d); tcp needs\n"
		"                         --qmp-tls-x509 or --qmp-tls-psk (any IPv4 address), or\n"
		"                         --qmp-insecure-tcp (loopback only)\n"
		"  --qmp-tls-x509 DIR     mutual TLS on tcp: QMP sockets: ca-cert.pem,\n"
		"                         server-cert.pem, server-key.pem; clients need a\n"
		"                         certificate the CA signed\n"
		"  --qmp-tls-psk FILE     mutual TLS with pre-shared keys (IDENTITY:HEXKEY lines)\n"
		"  --qmp-tls-authz 'DN;DN...'\n"
		"                         client certificate names (or PSK identities) that may\n"
		"                         use QMP over TCP (default: any the CA signed)\n"
		"  --qmp-insecure-tcp     allow --qmp tcp: on loopback without TLS (no\n"
		"                         authentication; any local user can reach loopback)\n"
		"  --qmp-max-clients N    QMP clients at once, plus one slot kept for the "
		"operator\n"
		"                         (default %d, at most %d)\n"
		"  --qmp-input-limit SIZE input held for all QMP clients' unfinished messages;\n"
		"                         K/M/G suffix, bare number = MiB (default %uM)\n"
		"  --qmp-handshake-timeout MS\n"
		"                         close a QMP client without qmp_capabilities after MS\n"
		"                         (default %d, 0: never)\n"
		"  --qmp-partial-timeout MS\n"
		"                         close a QMP client whose message stays unfinished for\n"
		"                         MS (default %d, 0: never)\n"
		"  --state-dir DIR        runtime sockets (default /run/cleave/NAME as root, else\n"
		"                         $XDG_RUNTIME_DIR/cleave/NAME or /tmp/cleave-UID/NAME)\n"
		"  --incoming tcp:HOST:PORT|unix:PATH|file:PATH|defer\n"
		"                         wait for an incoming migration instead of booting,\n"
		"                         or restore the snapshot PATH (see --snapshot-dir)\n"
		"  --migrate-tls-x509 DIR mutual TLS for migrations: ca-cert.pem, "
		"server-cert.pem,\n"
		"                         server-key.pem, client-cert.pem, client-key.pem\n"
		"  --migrate-tls-psk FILE mutual TLS with pre-shared keys (IDENTITY:HEXKEY lines)\n"
		"  --migrate-tls-creds DIR|FILE\n"
		"                         further x509 directories or keys.psk files that QMP's\n"
		"                         tls-creds objects may name (up to %d; not used until "
		"one\n"
		"                         does)\n"
		"  --migrate-tls-psk-identity NAME\n"
		"                         this VM's PSK identity as a source (default qemu)\n"
		"  --migrate-tls-authz 'DN;DN...'\n"
		"                         certificate names (or PSK identities) that may send\n"
		"                         this VM a migration (default: any the CA signed)\n"
		"  --migrate-tls-hostname NAME\n"
		"                         the name the destination's certificate must carry\n"
		"                         (default: the host of the migration URI)\n"
		"  --migrate-insecure-plaintext\n"
		"                         allow migrations without TLS to or from non-loopback\n"
		"                         addresses\n"
		"  --migrate-netns NAME|PATH\n"
		"                         run the migrator in this network namespace (NAME:\n"
		"                         /run/netns/NAME, as 'ip netns add' makes it); needs the\n"
		"                         jail (root)\n"
		"  --snapshot-dir DIR     QMP migrate \"file:DIR/NAME\" saves the VM there (the\n"
		"                         migrator can create files in DIR and nowhere else)\n"
		"  --migrate-socket-dir DIR\n"
		"                         unix: migration sockets (migrate, migrate-incoming)\n"
		"                         are in DIR, which the migrator's jail shows\n"
		"  --uid-base N           run each child as a user of its own: uids and groups\n"
		"                         N..N+%d, reserved for this VM (root, sandbox on)\n"
		"  --restart-limit N/SECONDS\n"
		"                         give a dead cleave-migrator or cleave-monitor up after "
		"N\n"
		"                         restarts within SECONDS (default 10/60; N at most %d)\n"
		"  --no-sandbox           run the children without seccomp/namespaces\n"
		"  -v, --verbose          debug logs, in cleave and its children\n"
		"  -h, --help             this text\n"
		"\n"
		"Exit status: the guest's exit code when it powers off (0..125), 0 after QMP\n"
		"quit or SIGTERM/SIGINT/SIGHUP, 1 when the VM failed (cleave-vcpu died or "
		"failed),\n"
		"2 for bad options.  See docs/OPERATOR.md.\n",
		RUN_NAME_MAX, (unsigned long long)(RUN_MEMORY_MIN >> 20),
		(unsigned long long)(RUN_MEMORY_MAX >> 30), RUN_QMP_MAX, MON_MAX_CLIENTS_DEFAULT,
		MON_MAX_CLIENTS_MAX, MON_IN_TOTAL_DEFAULT >> 20, MON_HANDSHAKE_MS_DEFAULT,
		MON_PARTIAL_MS_DEFAULT, MIG_TLS_MORE_MAX, RUN_IDS_PER_VM - 1,
		RUN_RESTART_LIMIT_MAX);
}

static int opt_error(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int opt_error(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int run_size_parse(const char *s, uint64_t *bytes)
{
	uint64_t v = 0, shift = 20;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*p && p[1])
		return -EINVAL;
	if (v > (UINT64_MAX >> shift))
		return -ERANGE;
	*bytes = v << shift;
	return 0;
}

unsigned int run_kvm_max_vcpus(const struct host_kvm *k)
{
	return k->max_vcpus ? k->max_vcpus : RUN_VCPUS_FALLBACK;
}

unsigned int run_host_max_vcpus(void)
{
	struct host_kvm k;

	host_kvm_probe_default(&k);
	return run_kvm_max_vcpus(&k);
}

static int opt_parse_name(struct run_options *o, const char *v, char *err, size_t errlen)
{
	size_t len = strlen(v);

	if (len == 0 || len > RUN_NAME_MAX)
		return opt_error(err, errlen, "--name '%s': must be 1..%d characters", v,
				 RUN_NAME_MAX);
	if (v[0] == '.' || v[0] == '-')
		return opt_error(err, errlen, "--name '%s': must not start with '.' or '-'", v);
	if (strspn(v, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != len)
		return opt_error(err, errlen, "--name '%s': only letters, digits, '.', '_', '-'",
				 v);
	memcpy(o->name, v, len + 1);
	return 0;
}

static int opt_parse_memory(struct run_options *o, const char *v, char *err, size_t errlen)
{
	uint64_t bytes;
	int ret;

	ret = run_size_parse(v, &bytes);
	if (ret == -ERANGE)
		return opt_error(err, errlen, "--memory '%s': too large (at most %lluG)", v,
				 (unsigned long long)(RUN_MEMORY_MAX >> 30));
	if (ret)
		return opt_error(err, errlen,
				 "--memory '%s': not a size (digits with an optional K, M, G or T "
				 "suffix)",
				 v);
	if (bytes % SHM_PAGE_SIZE)
		return opt_error(err, errlen, "--memory '%s': not a multiple of the %llu-byte page",
				 v, (unsigned long long)SHM_PAGE_SIZE);
	if (bytes < RUN_MEMORY_MIN)
		return opt_error(err, errlen, "--memory '%s': too small (at least %lluM)", v,
				 (unsigned long long)(RUN_MEMORY_MIN >> 20));
	if (bytes > RUN_MEMORY_MAX)
		return opt_error(err, errlen, "--memory '%s': too large (at most %lluG)", v,
				 (unsigned long long)(RUN_MEMORY_MAX >> 30));
	o->memory = bytes;
	return 0;
}

static int opt_parse_vcpus(struct run_options *o, const char *v, unsigned int max_vcpus, char *err,
			   size_t errlen)
{
	unsigned long n;
	char *end;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end || errno)
		return opt_error(err, errlen, "--vcpus '%s': not a number", v);
	if (n < 1 || n > max_vcpus)
		return opt_error(err, errlen, "--vcpus '%s': must be 1..%u on this host", v,
				 max_vcpus);
	o->vcpus = (unsigned int)n;
	return 0;
}

static int opt_parse_port(const char *s, uint16_t *port)
{
	unsigned long n;
	char *end;

	errno = 0;
	n = strtoul(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end || errno || n < 1 || n > 65535)
		return -EINVAL;
	*port = (uint16_t)n;
	return 0;
}

static int opt_parse_qmp(struct run_options *o, const char *v, char *err, size_t errlen)
{
	struct run_endpoint *ep;
	struct in_addr in;
	char host[64];
	const char *colon;

	if (o->nr_qmp == RUN_QMP_MAX)
		return opt_error(err, errlen, "--qmp '%s': at most %d QMP sockets", v, RUN_QMP_MAX);
	ep = &o->qmp[o->nr_qmp];
	memset(ep, 0, sizeof(*ep));
	ep->text = v;
	if (!strncmp(v, "unix:", 5)) {
		const char *path = v + 5;

		if (!*path)
			return opt_error(err, errlen, "--qmp '%s': empty socket path", v);
		if (strlen(path) >= sizeof(ep->path))
			return opt_error(err, errlen,
					 "--qmp '%s': socket path longer than %zu bytes", v,
					 sizeof(ep->path) - 1);
		ep->kind = RUN_EP_UNIX;
		strcpy(ep->path, path);
	} else if (!strncmp(v, "tcp:", 4)) {
		colon = strrchr(v + 4, ':');
		if (!colon || (size_t)(colon - (v + 4)) >= sizeof(host))
			return opt_error(err, errlen, "--qmp '%s': expected tcp:ADDR:PORT", v);
		memcpy(host, v + 4, (size_t)(colon - (v + 4)));
		host[colon - (v + 4)] = '\0';
		if (!strcmp(host, "localhost"))
			strcpy(host, "127.0.0.1");
		if (inet_pton(AF_INET, host, &in) != 1)
			return opt_error(err, errlen,
					 "--qmp '%s': '%s' is not an IPv4 address (expected "
					 "tcp:ADDR:PORT)",
					 v, host);
		/* Whether the address may be used depends on TLS: opt_check_qmp_tcp(). */
		if (opt_parse_port(colon + 1, &ep->port))
			return opt_error(err, errlen, "--qmp '%s': port must be 1..65535", v);
		ep->kind = RUN_EP_TCP;
		ep->addr = ntohl(in.s_addr);
	} else {
		return opt_error(err, errlen, "--qmp '%s': expected unix:PATH or tcp:ADDR:PORT", v);
	}
	o->nr_qmp++;
	return 0;
}

static int opt_parse_serial(struct run_options *o, const char *v, char *err, size_t errlen)
{
	if (!strcmp(v, "stdio")) {
		o->serial = RUN_SERIAL_STDIO;
		o->serial_path = NULL;
	} else if (!strncmp(v, "file:", 5) && v[5]) {
		o->serial = RUN_SERIAL_FILE;
		o->serial_path = v + 5;
	} else {
		return opt_error(err, errlen, "--serial '%s': expected stdio or file:PATH", v);
	}
	return 0;
}

/* "tcp:HOST:PORT" with HOST a loopback literal or localhost (plaintext may stay there). */
static bool opt_uri_loopback(const char *uri)
{
	const char *h = uri + 4, *colon = strrchr(h, ':');
	struct in6_addr a6;
	struct in_addr a4;
	char host[128];

	if (!colon || (size_t)(colon - h) >= sizeof(host))
		return false;
	snprintf(host, sizeof(host), "%.*s", (int)(colon - h), h);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = '\0';
	}
	if (!strcmp(host, "localhost"))
		return true;
	if (inet_pton(AF_INET, host, &a4) == 1)
		return ntohl(a4.s_addr) >> 24 == 127;
	return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

/*
 * --incoming unix:PATH: the socket does not exist yet, its directory must;
 * kept absolute ("unix:" + the directory's real path + the name).
 */
static int opt_parse_incoming_unix(struct run_options *o, const char *v, char *err, size_t errlen)
{
	const char *path = v + 5, *slash = strrchr(path, '/'), *name = slash ? slash + 1 : path;
	char dir[PATH_MAX], real[PATH_MAX];
	struct stat st;
	int n;

	if (!*name || !strcmp(name, ".") || !strcmp(name, ".."))
		return opt_error(err, errlen, "--incoming '%s': expected unix:PATH of a socket", v);
	snprintf(dir, sizeof(dir), "%.*s", slash ? (int)(slash - path) : 1,
		 slash ? (slash == path ? "/" : path) : ".");
	if (!realpath(dir, real) || stat(real, &st))
		return opt_error(err, errlen, "--incoming '%s': %s: %s", v, dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return opt_error(err, errlen, "--incoming '%s': %s is not a directory", v, dir);
	n = snprintf(o->incoming_file, sizeof(o->incoming_file), "unix:%s/%s",
		     strcmp(real, "/") ? real : "", name);
	/* The migrator binds it: sun_path's 108 bytes. */
	if (n < 0 || (size_t)n >= sizeof(o->incoming_file) || strlen(o->incoming_file + 5) >= 108)
		return opt_error(err, errlen, "--incoming '%s': path too long for a socket", v);
	o->incoming = RUN_INCOMING_UNIX;
	o->incoming_uri = o->incoming_file;
	return 0;
}

static int opt_parse_incoming(struct run_options *o, const char *v, char *err, size_t errlen)
{
	const char *colon;
	uint16_t port;

	if (!strcmp(v, "defer")) {
		o->incoming = RUN_INCOMING_DEFER;
		o->incoming_uri = NULL;
		return 0;
	}
	if (!strncmp(v, "unix:", 5))
		return opt_parse_incoming_unix(o, v, err, errlen);
	if (!strncmp(v, "file:", 5)) {
		char real[PATH_MAX];
		struct stat st;

		if (!realpath(v + 5, real) || stat(real, &st))
			return opt_error(err, errlen, "--incoming '%s': %s", v, strerror(errno));
		if (!S_ISREG(st.st_mode))
			return opt_error(err, errlen, "--incoming '%s': not a regular file", v);
		if (strlen(real) + 5 >= sizeof(o->incoming_file))
			return opt_error(err, errlen, "--incoming '%s': path too long", v);
		snprintf(o->incoming_file, sizeof(o->incoming_file), "file:%s", real);
		o->incoming = RUN_INCOMING_FILE;
		o->incoming_uri = o->incoming_file;
		return 0;
	}
	colon = strncmp(v, "tcp:", 4) ? NULL : strrchr(v + 4, ':');
	if (!colon || colon == v + 4)
		return opt_error(
			err, errlen,
			"--incoming '%s': expected tcp:HOST:PORT, unix:PATH, file:PATH or defer",
			v);
	if (opt_parse_port(colon + 1, &port))
		return opt_error(err, errlen, "--incoming '%s': port must be 1..65535", v);
	o->incoming = RUN_INCOMING_TCP;
	o->incoming_uri = v;
	return 0;
}

/*
 * --incoming file:PATH restores from the snapshot directory, --incoming
 * unix:PATH listens in the migration socket directory: PATH's own
 * directory when that option is not given, else it must be that one (the
 * migrator's jail shows no other).
 */
static int opt_check_incoming_dir(struct run_options *o, char *err, size_t errlen)
{
	bool file = o->incoming == RUN_INCOMING_FILE;
	char *dir = file ? o->snapshot_dir : o->migrate_socket_dir;
	const char *path = o->incoming_file + 5, *slash = strrchr(path, '/');
	size_t dlen = slash > path ? (size_t)(slash - path) : 1;

	if (file && slash[1] == '.')
		return opt_error(err, errlen,
				 "--incoming '%s': a snapshot's name does not start with '.'",
				 o->incoming_file);
	if (!dir[0]) {
		if (dlen >= sizeof(o->snapshot_dir))
			return opt_error(err, errlen, "--incoming '%s': path too long",
					 o->incoming_file);
		memcpy(dir, path, dlen);
		dir[dlen] = '\0';
		return 0;
	}
	if (strlen(dir) != dlen || strncmp(dir, path, dlen))
		return opt_error(err, errlen, "--incoming '%s': not directly in %s %s",
				 o->incoming_file, file ? "--snapshot-dir" : "--migrate-socket-dir",
				 dir);
	return 0;
}

static int opt_parse_state_dir(struct run_options *o, const char *v, char *err, size_t errlen)
{
	/* The children listen on ipc://<dir>/<sock>; the longest must fit sun_path. */
	if (!*v)
		return opt_error(err, errlen, "--state-dir: empty path");
	if (strlen(v) + 1 + strlen(RUN_STATE_SOCK_NAME) >= sizeof(o->state_dir))
		return opt_error(err, errlen,
				 "--state-dir '%s': too long for the sockets inside (at most %zu "
				 "bytes)",
				 v, sizeof(o->state_dir) - 2 - strlen(RUN_STATE_SOCK_NAME));
	strcpy(o->state_dir, v);
	return 0;
}

static int opt_default_state_dir(struct run_options *o, char *err, size_t errlen)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[sizeof(o->state_dir) + RUN_NAME_MAX + 32];

	if (geteuid() == 0)
		snprintf(dir, sizeof(dir), "/run/cleave/%s", o->name);
	else if (xdg && xdg[0] == '/')
		snprintf(dir, sizeof(dir), "%s/cleave/%s", xdg, o->name);
	else
		snprintf(dir, sizeof(dir), "/tmp/cleave-%u/%s", (unsigned int)geteuid(), o->name);
	return opt_parse_state_dir(o, dir, err, errlen);
}

/* A decimal number in [min, max] for option @opt. */
static int opt_parse_uint(const char *opt, const char *v, unsigned long min, unsigned long max,
			  unsigned long *out, char *err, size_t errlen)
{
	unsigned long n;
	char *end;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end || errno || n < min || n > max)
		return opt_error(err, errlen, "%s '%s': must be a number %lu..%lu", opt, v, min,
				 max);
	*out = n;
	return 0;
}

/* The QMP limits of docs/QMP.md, checked against the monitor's own bounds. */
static int opt_parse_qmp_limit(struct run_options *o, enum opt_id id, const char *v, char *err,
			       size_t errlen)
{
	unsigned long n = 0; /* set by opt_parse_uint on success; -O3 cannot see it */
	uint64_t bytes;
	int ret;

	switch (id) {
	case OPT_QMP_MAX_CLIENTS:
		ret = opt_parse_uint("--qmp-max-clients", v, 1, MON_MAX_CLIENTS_MAX, &n, err,
				     errlen);
		if (!ret)
			o->qmp_max_clients = (unsigned int)n;
		return ret;
	case OPT_QMP_INPUT_LIMIT:
		ret = run_size_parse(v, &bytes);
		if (ret || bytes < MON_IN_TOTAL_MIN || bytes > MON_IN_TOTAL_MAX)
			return opt_error(
				err, errlen,
				"--qmp-input-limit '%s': must be a size %uM..%lluG (digits "
				"with an optional K, M or G suffix)",
				v, MON_IN_TOTAL_MIN >> 20, MON_IN_TOTAL_MAX >> 30);
		o->qmp_input_limit = bytes;
		return 0;
	case OPT_QMP_HANDSHAKE_TIMEOUT:
	case OPT_QMP_PARTIAL_TIMEOUT:
		ret = opt_parse_uint(id == OPT_QMP_HANDSHAKE_TIMEOUT ? "--qmp-handshake-timeout"
								     : "--qmp-partial-timeout",
				     v, 0, MON_DEADLINE_MS_MAX, &n, err, errlen);
		if (!ret)
			*(id == OPT_QMP_HANDSHAKE_TIMEOUT ? &o->qmp_handshake_ms
							  : &o->qmp_partial_ms) = (int)n;
		return ret;
	default:
		return opt_error(err, errlen, "internal: option %d", (int)id);
	}
}

/* A credentials directory (@dir) or file, made absolute: the migrator's jail binds it. */
static int opt_parse_real_path(const char *v, const char *opt, bool dir, char *out, size_t len,
			       char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;

	if (!realpath(v, real) || stat(real, &st))
		return opt_error(err, errlen, "%s '%s': %s", opt, v, strerror(errno));
	if (dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))
		return opt_error(err, errlen, "%s '%s': not a %s", opt, v,
				 dir ? "directory" : "regular file");
	if (strlen(real) >= len)
		return opt_error(err, errlen, "%s '%s': path too long", opt, v);
	snprintf(out, len, "%s", real);
	return 0;
}

/*
 * --migrate-tls-creds: a credentials directory (x509) or a keys.psk file,
 * absolute, up to MIG_TLS_MORE_MAX; only QMP's tls-creds objects use them.
 */
static int opt_parse_tls_more(struct run_options *o, const char *v, char *err, size_t errlen)
{
	char real[PATH_MAX];
	struct stat st;

	if (o->nr_tls_more == MIG_TLS_MORE_MAX)
		return opt_error(err, errlen, "--migrate-tls-creds: at most %d", MIG_TLS_MORE_MAX);
	if (!realpath(v, real) || stat(real, &st))
		return opt_error(err, errlen, "--migrate-tls-creds '%s': %s", v, strerror(errno));
	if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode))
		return opt_error(err, errlen,
				 "--migrate-tls-creds '%s': neither a directory (x509) nor a file "
				 "(keys.psk)",
				 v);
	if (strlen(real) >= sizeof(o->tls_more[0]))
		return opt_error(err, errlen, "--migrate-tls-creds '%s': path too long", v);
	snprintf(o->tls_more[o->nr_tls_more++], sizeof(o->tls_more[0]), "%s", real);
	return 0;
}

/*
 * A network namespace for the migrator: a path, or a name in /run/netns as
 * `ip netns add` makes them.  That it is one is checked when the jail opens
 * it (sandbox_jail_net_ns), before any child starts.
 */
static int opt_parse_netns(struct run_options *o, const char *v, char *err, size_t errlen)
{
	struct stat st;
	int n;

	if (!*v || !strcmp(v, ".") || !strcmp(v, ".."))
		return opt_error(err, errlen, "--migrate-netns '%s': give a name or a path", v);
	n = strchr(v, '/')
		    ? snprintf(o->migrate_netns, sizeof(o->migrate_netns), "%s", v)
		    : snprintf(o->migrate_netns, sizeof(o->migrate_netns), "/run/netns/%s", v);
	if (n < 0 || (size_t)n >= sizeof(o->migrate_netns))
		return opt_error(err, errlen, "--migrate-netns '%s': too long", v);
	if (stat(o->migrate_netns, &st))
		return opt_error(err, errlen, "--migrate-netns '%s': %s: %s", v, o->migrate_netns,
				 strerror(errno));
	return 0;
}

/* A range of RUN_IDS_PER_VM ids that starts above 0 and ends below (uid_t)-1. */
static int opt_parse_uid_base(struct run_options *o, const char *v, char *err, size_t errlen)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || *v == '-' || n == 0 ||
	    n + RUN_IDS_PER_VM - 1 >= (unsigned long long)(uid_t)-1)
		return opt_error(err, errlen,
				 "--uid-base '%s': a number from 1 to %u (it and the next %d ids "
				 "are this VM's)",
				 v, (unsigned int)((uid_t)-1 - RUN_IDS_PER_VM), RUN_IDS_PER_VM - 1);
	o->uid_base = (uid_t)n;
	return 0;
}

/* "N/SECONDS": restarts within a window, both from 1. */
static int opt_parse_restart_limit(struct run_options *o, const char *v, char *err, size_t errlen)
{
	unsigned long n, secs;
	char *end, *end2;

	errno = 0;
	n = strtoul(v, &end, 10);
	if (!errno && end != v && *end == '/' && isdigit((unsigned char)end[1]))
		secs = strtoul(end + 1, &end2, 10);
	else
		end2 = end, secs = 0;
	if (errno || *v == '-' || *end != '/' || *end2 || n == 0 || n > RUN_RESTART_LIMIT_MAX ||
	    secs == 0 || secs > RUN_RESTART_WINDOW_S_MAX)
		return opt_error(err, errlen,
				 "--restart-limit '%s': N/SECONDS, N restarts (1..%d) within "
				 "SECONDS (1..%d)",
				 v, RUN_RESTART_LIMIT_MAX, RUN_RESTART_WINDOW_S_MAX);
	o->restart_limit = (unsigned int)n;
	o->restart_window_s = (unsigned int)secs;
	return 0;
}

static int opt_dispatch(struct run_options *o, enum opt_id id, const char *v,
			unsigned int max_vcpus, const char **append, char *err, size_t errlen)
{
	struct stat st;

	switch (id) {
	case OPT_NAME:
		return opt_parse_name(o, v, err, errlen);
	case OPT_MEMORY:
		return opt_parse_memory(o, v, err, errlen);
	case OPT_VCPUS:
		return opt_parse_vcpus(o, v, max_vcpus, err, errlen);
	case OPT_GUEST:
		if (stat(v, &st))
			return opt_error(err, errlen, "--guest '%s': %s", v, strerror(errno));
		if (!S_ISREG(st.st_mode))
			return opt_error(err, errlen, "--guest '%s': not a regular file", v);
		o->guest = v;
		return 0;
	case OPT_APPEND:
		*append = v;
		return 0;
	case OPT_SERIAL:
		return opt_parse_serial(o, v, err, errlen);
	case OPT_QMP:
		return opt_parse_qmp(o, v, err, errlen);
	case OPT_STATE_DIR:
		return opt_parse_state_dir(o, v, err, errlen);
	case OPT_INCOMING:
		return opt_parse_incoming(o, v, err, errlen);
	case OPT_TLS_X509:
		return opt_parse_real_path(v, "--migrate-tls-x509", true, o->tls_x509_dir,
					   sizeof(o->tls_x509_dir), err, errlen);
	case OPT_TLS_PSK:
		return opt_parse_real_path(v, "--migrate-tls-psk", false, o->tls_psk_file,
					   sizeof(o->tls_psk_file), err, errlen);
	case OPT_TLS_MORE:
		return opt_parse_tls_more(o, v, err, errlen);
	case OPT_TLS_PSK_IDENTITY:
		o->tls_psk_identity = v;
		return 0;
	case OPT_TLS_AUTHZ:
		o->tls_authz = v;
		return 0;
	case OPT_TLS_HOSTNAME:
		o->tls_hostname = v;
		return 0;
	case OPT_INSECURE_PLAINTEXT:
		o->insecure_plaintext = true;
		return 0;
	case OPT_MIGRATE_NETNS:
		return opt_parse_netns(o, v, err, errlen);
	case OPT_SNAPSHOT_DIR:
		return opt_parse_real_path(v, "--snapshot-dir", true, o->snapshot_dir,
					   sizeof(o->snapshot_dir), err, errlen);
	case OPT_MIGRATE_SOCKET_DIR:
		return opt_parse_real_path(v, "--migrate-socket-dir", true, o->migrate_socket_dir,
					   sizeof(o->migrate_socket_dir), err, errlen);
	case OPT_UID_BASE:
		return opt_parse_uid_base(o, v, err, errlen);
	case OPT_RESTART_LIMIT:
		return opt_parse_restart_limit(o, v, err, errlen);
	case OPT_QMP_MAX_CLIENTS:
	case OPT_QMP_INPUT_LIMIT:
	case OPT_QMP_HANDSHAKE_TIMEOUT:
	case OPT_QMP_PARTIAL_TIMEOUT:
		return opt_parse_qmp_limit(o, id, v, err, errlen);
	case OPT_QMP_INSECURE_TCP:
		o->qmp_insecure_tcp = true;
		return 0;
	case OPT_QMP_TLS_X509:
		return opt_parse_real_path(v, "--qmp-tls-x509", true, o->qmp_tls_x509_dir,
					   sizeof(o->qmp_tls_x509_dir), err, errlen);
	case OPT_QMP_TLS_PSK:
		return opt_parse_real_path(v, "--qmp-tls-psk", false, o->qmp_tls_psk_file,
					   sizeof(o->qmp_tls_psk_file), err, errlen);
	case OPT_QMP_TLS_AUTHZ:
		o->qmp_tls_authz = v;
		return 0;
	case OPT_NO_SANDBOX:
		o->no_sandbox = true;
		return 0;
	case OPT_VERBOSE:
		o->verbose = true;
		return 0;
	case OPT_HELP:
		o->help = true;
		return 0;
	}
	return opt_error(err, errlen, "internal: option %d", (int)id);
}

/*
 * QMP over TCP hands whoever connects quit, migrate and the guest's RAM.
 * With TLS credentials every tcp: QMP socket requires a client the
 * operator authorized, on any address.  Without, plaintext QMP has no
 * authentication and loopback is open to every local user (and to
 * containers sharing the host's network namespace): it is the operator's
 * explicit choice (--qmp-insecure-tcp), and never beyond loopback.
 */
static int opt_check_qmp_tcp(const struct run_options *o, char *err, size_t errlen)
{
	bool tls = o->qmp_tls_x509_dir[0] || o->qmp_tls_psk_file[0], tcp = false;
	unsigned int i;

	if (o->qmp_tls_x509_dir[0] && o->qmp_tls_psk_file[0])
		return opt_error(err, errlen,
				 "--qmp-tls-x509 and --qmp-tls-psk: one kind of credentials");
	if (o->qmp_tls_authz && !tls)
		return opt_error(err, errlen,
				 "--qmp-tls-authz needs credentials (--qmp-tls-x509 or "
				 "--qmp-tls-psk)");
	if (tls && o->qmp_insecure_tcp)
		return opt_error(err, errlen,
				 "--qmp-insecure-tcp contradicts the QMP TLS credentials given");
	for (i = 0; i < o->nr_qmp; i++) {
		const struct run_endpoint *ep = &o->qmp[i];

		if (ep->kind != RUN_EP_TCP)
			continue;
		tcp = true;
		if (tls)
			continue;
		if (ep->addr >> 24 != 127)
			return opt_error(
				err, errlen,
				"--qmp '%s': a non-loopback address needs TLS credentials "
				"(--qmp-tls-x509 DIR or --qmp-tls-psk FILE); plaintext QMP "
				"stays on loopback",
				ep->text);
		if (!o->qmp_insecure_tcp)
			return opt_error(err, errlen,
					 "--qmp '%s': QMP over TCP without TLS has no "
					 "authentication and any local user can reach loopback; "
					 "give --qmp-tls-x509 DIR or --qmp-tls-psk FILE, use a "
					 "unix: socket (mode 0600), or --qmp-insecure-tcp",
					 ep->text);
	}
	if (tls && !tcp)
		return opt_error(err, errlen,
				 "--qmp-tls-x509 / --qmp-tls-psk: no --qmp tcp: socket to use "
				 "them (unix: sockets need none)");
	return 0;
}

/* Finds @arg's definition; sets *@inline_val for "--opt=value". */
static const struct opt_def *opt_lookup(const char *arg, const char **inline_val)
{
	size_t i, len;

	*inline_val = NULL;
	if (arg[0] == '-' && arg[1] && arg[1] != '-' && !arg[2]) {
		for (i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++)
			if (opt_table[i].short_name == arg[1])
				return &opt_table[i];
		return NULL;
	}
	if (strncmp(arg, "--", 2))
		return NULL;
	arg += 2;
	len = strcspn(arg, "=");
	for (i = 0; i < sizeof(opt_table) / sizeof(opt_table[0]); i++) {
		if (strlen(opt_table[i].name) != len || strncmp(opt_table[i].name, arg, len))
			continue;
		if (arg[len] == '=')
			*inline_val = arg + len + 1;
		return &opt_table[i];
	}
	return NULL;
}

int run_options_parse(struct run_options *o, int argc, char **argv, unsigned int max_vcpus,
		      char *err, size_t errlen)
{
	const char *append = NULL, *v;
	const struct opt_def *def;
	int i, ret, n;

	memset(o, 0, sizeof(*o));
	o->memory = RUN_MEMORY_DEFAULT;
	o->vcpus = 1;
	o->serial = RUN_SERIAL_STDIO;
	o->qmp_handshake_ms = -1;
	o->qmp_partial_ms = -1;
	err[0] = '\0';

	for (i = 1; i < argc; i++) {
		def = opt_lookup(argv[i], &v);
		if (!def)
			return opt_error(err, errlen,
					 argv[i][0] == '-' ? "unknown option '%s'"
							   : "unexpected argument '%s'",
					 argv[i]);
		if (def->has_arg && !v) {
			if (i + 1 >= argc)
				return opt_error(err, errlen, "option '%s' needs a value", argv[i]);
			v = argv[++i];
		} else if (!def->has_arg && v) {
			return opt_error(err, errlen, "option '--%s' takes no value", def->name);
		}
		ret = opt_dispatch(o, def->id, v, max_vcpus, &append, err, errlen);
		if (ret)
			return ret;
	}
	if (o->help)
		return 0;
	ret = opt_check_qmp_tcp(o, err, errlen);
	if (ret)
		return ret;
	if (o->tls_x509_dir[0] && o->tls_psk_file[0])
		return opt_error(
			err, errlen,
			"--migrate-tls-x509 and --migrate-tls-psk: one kind of credentials");
	if ((o->tls_x509_dir[0] || o->tls_psk_file[0]) && o->insecure_plaintext)
		return opt_error(
			err, errlen,
			"--migrate-insecure-plaintext contradicts the TLS credentials given");
	if (o->incoming == RUN_INCOMING_TCP && !opt_uri_loopback(o->incoming_uri) &&
	    !o->tls_x509_dir[0] && !o->tls_psk_file[0] && !o->insecure_plaintext)
		return opt_error(err, errlen,
				 "--incoming '%s': a non-loopback address needs TLS credentials "
				 "(--migrate-tls-x509 DIR or --migrate-tls-psk FILE), or "
				 "--migrate-insecure-plaintext",
				 o->incoming_uri);
	if (o->incoming == RUN_INCOMING_FILE || o->incoming == RUN_INCOMING_UNIX) {
		ret = opt_check_incoming_dir(o, err, errlen);
		if (ret)
			return ret;
	}
	if ((o->tls_psk_identity && !o->tls_psk_file[0]) ||
	    ((o->tls_authz || o->tls_hostname) && !o->tls_x509_dir[0] && !o->tls_psk_file[0]))
		return opt_error(err, errlen,
				 "--migrate-tls-* options need credentials "
				 "(--migrate-tls-x509 or --migrate-tls-psk)");

	if (!o->name[0])
		snprintf(o->name, sizeof(o->name), "vm-%d", (int)getpid());
	if (!o->state_dir[0]) {
		ret = opt_default_state_dir(o, err, errlen);
		if (ret)
			return ret;
	}
	n = snprintf(o->cmdline, sizeof(o->cmdline), "%s%scpus=%u", append ? append : "",
		     append && append[0] ? " " : "", o->vcpus);
	if (n < 0 || (size_t)n >= sizeof(o->cmdline))
		return opt_error(err, errlen, "--append: guest command line longer than %zu bytes",
				 sizeof(o->cmdline) - 1);
	return 0;
}
