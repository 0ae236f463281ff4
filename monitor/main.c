// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-monitor: the QMP server (docs/PROCESSES.md, docs/QMP.md).
 * init (options, signals, rlimit, sockets) -> serve -> exit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stddef.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "log/log.h"
#include "monitor/qmp-limits.h"
#include "monitor/qmp-tls.h"
#include "monitor/server.h"
#include "sandbox/sandbox.h"

#define MON_MAX_LISTEN 16

static void usage(void)
{
	fprintf(stderr, "usage: cleave-monitor --qmp-fd N (repeatable) | --qmp "
			"unix:PATH|tcp:HOST:PORT\n"
			"                      [--tls-x509-dir DIR | --tls-psk-file FILE] "
			"[--tls-authz 'DN;DN...']\n"
			"                         mutual TLS on every TCP socket (required off "
			"loopback)\n"
			"                      --vcpu-rpc URL --vcpu-events URL\n"
			"                      --migrator-rpc URL --migrator-events URL\n"
			"                      [--name NAME] [--rpc-timeout MS] [--out-limit "
			"BYTES] [-v]\n"
			"                      [--max-clients N] [--input-limit BYTES]\n"
			"                      [--handshake-timeout MS] [--partial-timeout MS]\n"
			"                      [--serial stdio|file:PATH]  the guest serial, for "
			"query-chardev\n"
			"                      [--fd-link-fd N]  the socketpair end that hands "
			"getfd's fds to the migrator\n");
}

/* A decimal number in [min, max], or an error naming the option. */
static int mon_opt_number(const char *opt, const char *v, unsigned long long min,
			  unsigned long long max, unsigned long long *out)
{
	unsigned long long n;
	char *end;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (v[0] < '0' || v[0] > '9' || *end || errno || n < min || n > max) {
		log_err("--%s '%s': must be a number %llu..%llu", opt, v, min, max);
		return -EINVAL;
	}
	*out = n;
	return 0;
}

/* The limits of docs/QMP.md "Limits"; 0 turns a deadline off. */
static int mon_opt_limit(struct mon_config *cfg, int c, const char *v)
{
	unsigned long long n;

	switch (c) {
	case 'M':
		if (mon_opt_number("max-clients", v, 1, MON_MAX_CLIENTS_MAX, &n))
			return -EINVAL;
		cfg->max_clients = (size_t)n;
		return 0;
	case 'I':
		if (mon_opt_number("input-limit", v, MON_IN_TOTAL_MIN, MON_IN_TOTAL_MAX, &n))
			return -EINVAL;
		cfg->in_limit = (size_t)n;
		return 0;
	case 'H':
	case 'P':
		if (mon_opt_number(c == 'H' ? "handshake-timeout" : "partial-timeout", v, 0,
				   MON_DEADLINE_MS_MAX, &n))
			return -EINVAL;
		*(c == 'H' ? &cfg->handshake_ms : &cfg->partial_ms) = n ? (int)n : -1;
		return 0;
	}
	return -EINVAL;
}

/* An inherited listening socket: checked, made non-blocking and close-on-exec. */
static int mon_inherited_fd(const char *arg)
{
	int fd, acc = 0;
	socklen_t len = sizeof(acc);
	char *end;
	long v = strtol(arg, &end, 10);

	if (*end || v < 0 || v > 65535)
		return -EINVAL;
	fd = (int)v;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &len) || !acc) {
		log_err("--qmp-fd %d: not a listening socket", fd);
		return -EBADF;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) || fcntl(fd, F_SETFD, FD_CLOEXEC))
		return -errno;
	return fd;
}

/*
 * The address a QMP listener is bound to, as QEMU's chardev filename
 * starts ("unix:PATH", "tcp:HOST:PORT"): read from the socket itself, so
 * an inherited one is named as truly as one opened here.
 */
static void mon_listen_name(int fd, char *buf, size_t len)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char host[INET6_ADDRSTRLEN] = "?";

	snprintf(buf, len, "unknown");
	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return;
	if (ss.ss_family == AF_UNIX) {
		const struct sockaddr_un *su = (const void *)&ss;

		snprintf(buf, len, "unix:%.*s", (int)(sl - offsetof(struct sockaddr_un, sun_path)),
			 su->sun_path);
	} else if (ss.ss_family == AF_INET) {
		const struct sockaddr_in *si = (const void *)&ss;

		inet_ntop(AF_INET, &si->sin_addr, host, sizeof(host));
		snprintf(buf, len, "tcp:%s:%u", host, ntohs(si->sin_port));
	} else if (ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *si = (const void *)&ss;

		inet_ntop(AF_INET6, &si->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "tcp:[%s]:%u", host, ntohs(si->sin6_port));
	}
}

/*
 * Whether clients of listener @fd speak TLS: every TCP listener does when
 * there are credentials.  Without them a TCP listener must be on loopback,
 * inherited or not (the launcher checks that too): plaintext QMP has no
 * authentication.  0 / 1, or -EADDRNOTAVAIL.
 */
static int mon_listen_tls(int fd, const struct mon_tls *tls)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	char name[160];

	if (getsockname(fd, (struct sockaddr *)&ss, &sl))
		return -errno;
	if (ss.ss_family != AF_INET && ss.ss_family != AF_INET6)
		return 0;
	if (tls)
		return 1;
	if (ss.ss_family == AF_INET &&
	    ntohl(((const struct sockaddr_in *)&ss)->sin_addr.s_addr) >> 24 == 127)
		return 0;
	if (ss.ss_family == AF_INET6 &&
	    IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&ss)->sin6_addr))
		return 0;
	mon_listen_name(fd, name, sizeof(name));
	log_err("QMP socket %s: not on loopback and no TLS credentials (--tls-x509-dir or "
		"--tls-psk-file)",
		name);
	return -EADDRNOTAVAIL;
}

/* --fd-link-fd N: an inherited SOCK_SEQPACKET socket (proto/fd-link.h), or -1. */
static int mon_fd_link_arg(const char *v)
{
	unsigned long long n;
	socklen_t len;
	int type;

	if (mon_opt_number("fd-link-fd", v, 3, 65535, &n))
		return -1;
	len = sizeof(type);
	if (getsockopt((int)n, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_SEQPACKET) {
		log_err("--fd-link-fd %llu: not a SOCK_SEQPACKET socket", n);
		return -1;
	}
	return (int)n;
}

/* One fd per client: take everything the hard limit allows. */
static void mon_rlimit_raise(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl))
			log_warn("setrlimit RLIMIT_NOFILE: %s", strerror(errno));
	}
}

/*
 * The client limit is only what the fds allow (the sandbox caps them):
 * say so at start rather than let accepts pause on EMFILE unexplained.
 */
static void mon_fd_budget_check(size_t max_clients)
{
	struct rlimit rl;

	/* Listeners, epoll, eventfds, signalfd, NNG pipes, stdio: 64 is plenty. */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    rl.rlim_cur < max_clients + 1 + 64)
		log_warn("--max-clients %zu: RLIMIT_NOFILE %llu leaves room for about %llu "
			 "clients; beyond, accepts pause until fds are free",
			 max_clients, (unsigned long long)rl.rlim_cur,
			 rl.rlim_cur > 64 ? (unsigned long long)rl.rlim_cur - 64 : 0ull);
}

/* SIGPIPE ignored (writes use MSG_NOSIGNAL too); stop signals read from an fd. */
static int mon_signals_init(void)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	/* Blocked before any thread starts, so every thread inherits the mask. */
	if (pthread_sigmask(SIG_BLOCK, &set, NULL))
		return -EINVAL;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"qmp-fd", required_argument, NULL, 'f'},
		{"qmp", required_argument, NULL, 'q'},
		{"vcpu-rpc", required_argument, NULL, 'r'},
		{"vcpu-events", required_argument, NULL, 'e'},
		{"migrator-rpc", required_argument, NULL, 'R'},
		{"migrator-events", required_argument, NULL, 'E'},
		{"name", required_argument, NULL, 'n'},
		{"serial", required_argument, NULL, 's'},
		{"rpc-timeout", required_argument, NULL, 't'},
		{"out-limit", required_argument, NULL, 'o'},
		{"max-clients", required_argument, NULL, 'M'},
		{"input-limit", required_argument, NULL, 'I'},
		{"handshake-timeout", required_argument, NULL, 'H'},
		{"partial-timeout", required_argument, NULL, 'P'},
		{"tls-x509-dir", required_argument, NULL, 'X'},
		{"tls-psk-file", required_argument, NULL, 'K'},
		{"tls-authz", required_argument, NULL, 'A'},
		{"fd-link-fd", required_argument, NULL, 'F'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{0},
	};
	static char names[MON_MAX_LISTEN][sizeof(((struct sockaddr_un *)0)->sun_path) + 8];
	static const char *name_list[MON_MAX_LISTEN + 1];
	struct mon_config cfg = {.stop_fd = -1};
	struct mon_tls_config tls_cfg = {0};
	const char *specs[MON_MAX_LISTEN]; /* --qmp-fd N or --qmp SPEC, in order */
	bool inherited[MON_MAX_LISTEN], listen_tls[MON_MAX_LISTEN];
	int fds[MON_MAX_LISTEN];
	struct mon_tls *tls = NULL;
	struct mon_server *s;
	size_t nr_specs = 0, nr_fds = 0, i;
	char err[512];
	int c, fd, ret;

	log_init("cleave-monitor");
	while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		fd = -1;
		switch (c) {
		case 'f':
		case 'q':
			/* Opened after all options: whether TLS is on decides what tcp: may be. */
			if (nr_specs == MON_MAX_LISTEN) {
				log_err("at most %d QMP sockets", MON_MAX_LISTEN);
				goto err_usage;
			}
			inherited[nr_specs] = c == 'f';
			specs[nr_specs++] = optarg;
			break;
		case 'X':
			tls_cfg.x509_dir = optarg;
			break;
		case 'K':
			tls_cfg.psk_file = optarg;
			break;
		case 'A':
			tls_cfg.authz = optarg;
			break;
		case 's':
			cfg.serial = optarg;
			break;
		case 'F':
			cfg.fd_link_fd = mon_fd_link_arg(optarg);
			if (cfg.fd_link_fd < 0)
				goto err_usage;
			break;
		case 'r':
			cfg.vcpu_rpc = optarg;
			break;
		case 'e':
			cfg.vcpu_events = optarg;
			break;
		case 'R':
			cfg.migrator_rpc = optarg;
			break;
		case 'E':
			cfg.migrator_events = optarg;
			break;
		case 'n':
			cfg.name = optarg;
			break;
		case 't':
			cfg.rpc_timeout_ms = atoi(optarg);
			break;
		case 'o':
			cfg.out_limit = strtoull(optarg, NULL, 0);
			break;
		case 'M':
		case 'I':
		case 'H':
		case 'P':
			if (mon_opt_limit(&cfg, c, optarg))
				goto err_usage;
			break;
		case 'v':
			log_set_verbose(true);
			break;
		case 'h':
			usage();
			ret = 0;
			goto out_fds;
		default:
			goto err_usage;
		}
	}
	if (optind != argc || nr_specs == 0) {
		log_err("need at least one --qmp-fd or --qmp");
		goto err_usage;
	}
	if (tls_cfg.authz && !tls_cfg.x509_dir && !tls_cfg.psk_file) {
		log_err("--tls-authz needs --tls-x509-dir or --tls-psk-file");
		goto err_usage;
	}
	/* Credentials are read now, before the sandbox closes the filesystem. */
	if (tls_cfg.x509_dir || tls_cfg.psk_file) {
		ret = mon_tls_load(&tls, &tls_cfg, err, sizeof(err));
		if (ret) {
			log_err("QMP TLS credentials: %s", err);
			goto err_fds;
		}
	}
	for (i = 0; i < nr_specs; i++) {
		fd = inherited[i] ? mon_inherited_fd(specs[i]) : mon_listen_open(specs[i], tls);
		if (fd < 0) {
			log_err("QMP socket %s: %s", specs[i], strerror(-fd));
			goto err_fds;
		}
		fds[nr_fds++] = fd;
		ret = mon_listen_tls(fd, tls);
		if (ret < 0)
			goto err_fds;
		listen_tls[i] = ret;
		mon_listen_name(fd, names[i], sizeof(names[i]));
		name_list[i] = names[i];
		if (listen_tls[i])
			log_debug("QMP socket %s: mutual TLS (%s)", names[i], mon_tls_kind(tls));
	}
	for (i = 0; tls && i < nr_fds && !listen_tls[i]; i++)
		;
	if (tls && i == nr_fds) {
		log_err("--tls-x509-dir / --tls-psk-file: no TCP QMP socket to use them");
		goto err_fds;
	}
	mon_rlimit_raise();
	cfg.stop_fd = mon_signals_init();
	if (cfg.stop_fd < 0) {
		log_err("signalfd: %s", strerror(errno));
		goto err_fds;
	}
	cfg.listen_fds = fds;
	cfg.listen_tls = listen_tls;
	cfg.tls = tls;
	cfg.qmp_names = name_list;
	cfg.nr_listen_fds = nr_fds;
	ret = mon_server_alloc(&s, &cfg);
	nr_fds = 0; /* the server owns the listeners now, even on failure */
	if (ret) {
		log_err("starting the QMP server: %s", strerror(-ret));
		close(cfg.stop_fd);
		mon_tls_free(tls);
		return 1;
	}
	log_debug("serving QMP");
	/* Listeners and signalfd exist, RPC dialers set up: from here on, the policy. */
	/* Before the policy, which refuses prlimit64; its cap (4096) fits MON_MAX_CLIENTS_MAX. */
	mon_fd_budget_check(cfg.max_clients ? cfg.max_clients : MON_MAX_CLIENTS_DEFAULT);
	ret = sandbox_enter(SANDBOX_MONITOR);
	if (ret)
		log_err("sandbox_enter: %s", strerror(-ret));
	else
		ret = mon_server_run(s);
	mon_server_free(s);
	mon_tls_free(tls);
	close(cfg.stop_fd);
	return ret ? 1 : 0;

err_usage:
	usage();
err_fds:
	ret = 2;
out_fds:
	for (i = 0; i < nr_fds; i++)
		close(fds[i]);
	mon_tls_free(tls);
	return ret;
}
