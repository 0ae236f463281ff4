/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * `cleave run` options: parsed and validated completely before anything is
 * created, so a bad value costs nothing but an error message and exit 2.
 */
#ifndef CLEAVE_LAUNCHER_OPTIONS_H
#define CLEAVE_LAUNCHER_OPTIONS_H

#include "migrator/mig-limits.h"
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

struct host_kvm; /* launcher/host-check.h */

#define RUN_NAME_MAX	   64
#define RUN_QMP_MAX	   8
#define RUN_MEMORY_MIN	   (2ULL << 20) /* room for the embedded guest's image and tables */
#define RUN_MEMORY_MAX	   (1ULL << 40) /* 1 TiB: far below any host's guest-physical limit */
#define RUN_MEMORY_DEFAULT (512ULL << 20)
#define RUN_VCPUS_FALLBACK 256	/* cap when /dev/kvm cannot be asked */
#define RUN_APPEND_MAX	   2048 /* whole guest command line, "cpus=N" included */
/* Ids --uid-base reserves: one per child, one per pair of them (launcher/ids.c). */
#define RUN_IDS_PER_VM	 6
#define RUN_SUN_PATH_MAX (sizeof(((struct sockaddr_un *)0)->sun_path))
/* --restart-limit bounds: the supervisor's ring (SUP_RESTART_LIMIT_MAX), an hour. */
#define RUN_RESTART_LIMIT_MAX	 64
#define RUN_RESTART_WINDOW_S_MAX 3600
/* Longest socket path the launcher puts below the state dir (launcher/statedir.c). */
#define RUN_STATE_SOCK_NAME "vcpu-mon/events"

enum run_serial {
	RUN_SERIAL_STDIO, /* the guest's COM1 goes to cleave's stdout */
	RUN_SERIAL_FILE,  /* ... to serial_path, truncated at start */
};

enum run_endpoint_kind {
	RUN_EP_UNIX,
	RUN_EP_TCP,
};

/* A QMP listening address as given on the command line. */
struct run_endpoint {
	enum run_endpoint_kind kind;
	char path[RUN_SUN_PATH_MAX]; /* RUN_EP_UNIX: socket path */
	uint32_t addr;		     /* RUN_EP_TCP: IPv4 address, host order */
	uint16_t port;		     /* RUN_EP_TCP: 1..65535 */
	const char *text;	     /* the argument, for messages */
};

enum run_incoming {
	RUN_INCOMING_NONE,  /* boot the guest */
	RUN_INCOMING_TCP,   /* wait for a migration on incoming_uri */
	RUN_INCOMING_DEFER, /* wait; the URI comes later over QMP */
	RUN_INCOMING_FILE,  /* restore from incoming_uri "file:PATH" (in snapshot_dir) */
	RUN_INCOMING_UNIX,  /* wait on incoming_uri "unix:PATH" (in migrate_socket_dir) */
};

struct run_options {
	char name[RUN_NAME_MAX + 1];
	uint64_t memory; /* bytes, page aligned */
	unsigned int vcpus;
	const char *guest;	      /* ELF path, NULL: the embedded guest */
	char cmdline[RUN_APPEND_MAX]; /* --append plus " cpus=N" */
	enum run_serial serial;
	const char *serial_path; /* RUN_SERIAL_FILE */
	struct run_endpoint qmp[RUN_QMP_MAX];
	unsigned int nr_qmp;
	char state_dir[RUN_SUN_PATH_MAX]; /* every socket path inside must fit sun_path */
	enum run_incoming incoming;
	const char *incoming_uri; /* RUN_INCOMING_TCP: "tcp:HOST:PORT"; _FILE: incoming_file */
	char incoming_file[RUN_SUN_PATH_MAX + 8]; /* "file:"/"unix:" and an absolute path */
	/*
	 * Migration TLS (docs/MIGRATION.md, "Authentication"), handed to the
	 * migrator; paths absolute (the migrator's jail binds them read-only).
	 */
	char tls_x509_dir[RUN_SUN_PATH_MAX]; /* "": none */
	char tls_psk_file[RUN_SUN_PATH_MAX]; /* "": none */
	/* --migrate-tls-creds: further credentials QMP's tls-creds objects may name. */
	char tls_more[MIG_TLS_MORE_MAX][RUN_SUN_PATH_MAX];
	unsigned int nr_tls_more;
	const char *tls_psk_identity;
	const char *tls_authz;
	const char *tls_hostname;
	bool insecure_plaintext;      /* plaintext to or from a non-loopback address */
	char migrate_netns[PATH_MAX]; /* "": the host's network namespace */
	/* migrate "file:" saves here (absolute, bound into the migrator's jail). "": none */
	char snapshot_dir[RUN_SUN_PATH_MAX];
	/* unix: migration sockets live here (absolute, bound likewise). "": none */
	char migrate_socket_dir[RUN_SUN_PATH_MAX];
	uid_t uid_base; /* 0: the children stay uid 0 (without capabilities) */
	/*
	 * --restart-limit N/SECONDS: a restartable child (cleave-migrator,
	 * cleave-monitor) is given up after N restarts within SECONDS.  0: not
	 * given, the supervisor's default (launcher/supervise.h).
	 */
	unsigned int restart_limit;
	unsigned int restart_window_s;
	/*
	 * QMP limits handed to the monitor (docs/QMP.md, "Limits"; bounds in
	 * monitor/qmp-limits.h); 0 / -1: not given, the monitor's default.
	 */
	unsigned int qmp_max_clients;
	uint64_t qmp_input_limit;
	int qmp_handshake_ms;  /* -1: not given; 0: no deadline */
	int qmp_partial_ms;    /* -1: not given; 0: no deadline */
	bool qmp_insecure_tcp; /* --qmp tcp: allowed: QMP on loopback, no authentication */
	/*
	 * QMP TLS (docs/QMP.md, "TCP and TLS") on every tcp: QMP socket, handed
	 * to the monitor; paths absolute (its jail binds them read-only).
	 */
	char qmp_tls_x509_dir[RUN_SUN_PATH_MAX]; /* "": none */
	char qmp_tls_psk_file[RUN_SUN_PATH_MAX]; /* "": none */
	const char *qmp_tls_authz;		 /* DNs or PSK identities, ';'-separated */
	bool no_sandbox;
	bool verbose;
	bool help; /* --help given: print run_options_usage() and exit 0 */
};

/*
 * Parses `cleave run` arguments (argv[0] is "run") into @o.  @max_vcpus is
 * the host limit (run_host_max_vcpus()).  Returns 0, or -EINVAL with a
 * one-line reason in @err.  Pointers in @o point into @argv.
 */
int run_options_parse(struct run_options *o, int argc, char **argv, unsigned int max_vcpus,
		      char *err, size_t errlen);
void run_options_usage(FILE *out);

/*
 * Parses a size: digits with an optional K, M, G or T suffix (powers of
 * 1024, either case); a bare number means MiB, as with QEMU's -m.
 * Returns 0, -EINVAL (syntax) or -ERANGE (overflows 64 bits).
 */
int run_size_parse(const char *s, uint64_t *bytes);

/*
 * KVM_CAP_MAX_VCPUS of a probed KVM device (launcher/host-check.h), or
 * RUN_VCPUS_FALLBACK if it could not be asked; run_host_max_vcpus() probes
 * host_kvm_device() for it.
 */
unsigned int run_kvm_max_vcpus(const struct host_kvm *k);
unsigned int run_host_max_vcpus(void);

#endif
