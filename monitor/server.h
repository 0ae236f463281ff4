/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The QMP server: one epoll loop serving any number of clients on any
 * number of listening sockets, backend workers for RPCs, and the event
 * subscriber.  Each client has its own greeting, input framer and output
 * buffer; a client whose socket fails or whose output exceeds out_limit is
 * closed alone (docs/INVARIANTS.md, invariant 4).
 */
#ifndef CLEAVE_MONITOR_SERVER_H
#define CLEAVE_MONITOR_SERVER_H

#include <stdbool.h>
#include <stddef.h>

struct mon_tls; /* monitor/qmp-tls.h */

#define MON_OUT_LIMIT_DEFAULT (4u << 20) /* bytes queued to one client */

struct mon_config {
	const char *name;      /* --name, or NULL */
	const int *listen_fds; /* listening sockets; the server takes ownership */
	size_t nr_listen_fds;
	/* Per listener: its clients speak TLS first (NULL: none does); needs tls. */
	const bool *listen_tls;
	const struct mon_tls *tls; /* credentials of TLS listeners; not owned, outlive the server */
	const char *vcpu_rpc;	   /* NULL: vcpu-proc commands fail "not running" */
	const char *vcpu_events;
	const char *migrator_rpc;
	const char *migrator_events;
	int rpc_timeout_ms; /* deadline of each backend call */
	size_t out_limit;   /* per-client output limit in bytes */
	int stop_fd;	    /* readable (signalfd) when the server should stop; -1: none */
	/* docs/QMP.md "Limits"; defaults in monitor/qmp-limits.h. */
	size_t max_clients; /* 0: MON_MAX_CLIENTS_DEFAULT; one more slot is the operator's */
	size_t in_limit;    /* input bytes held for all clients; 0: MON_IN_TOTAL_DEFAULT */
	int handshake_ms;   /* 0: MON_HANDSHAKE_MS_DEFAULT; < 0: no deadline */
	int partial_ms;	    /* 0: MON_PARTIAL_MS_DEFAULT; < 0: no deadline */
	/* query-chardev: each listener's address ("unix:PATH"), NULL-terminated; the serial. */
	const char *const *qmp_names;
	const char *serial; /* "stdio", "file:PATH", or NULL: not known */
	/* The fd link to the migrator (proto/fd-link.h), not owned; <= 0: none. */
	int fd_link_fd;
};

struct mon_server;

/*
 * Opens a listening socket for "unix:PATH" or "tcp:HOST:PORT" (numeric
 * IPv4 address).  Without @tls a TCP address must be in 127.0.0.0/8
 * (anything else is -EADDRNOTAVAIL: plaintext QMP stays on this host).
 * Returns the fd or a negative errno.
 */
int mon_listen_open(const char *spec, bool tls);

/* alloc/free pair.  alloc starts the workers and the event subscriber. */
int mon_server_alloc(struct mon_server **out, const struct mon_config *cfg);
/* Serves until stop_fd becomes readable.  Returns 0 or a negative errno. */
int mon_server_run(struct mon_server *s);
/* Stops the threads, closes every client and listener, frees.  NULL-safe. */
void mon_server_free(struct mon_server *s);

#endif
