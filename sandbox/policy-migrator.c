// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-migrator from the moment RAM is opened and the control segment mapped
 * and its TLS credentials read, before its RPC client, server and event
 * publisher exist and before it resumes a recorded session or listens for
 * a migration: nothing untrusted reaches it unfiltered.  It opens TCP
 * connections (the main channel and multifd channels, either direction),
 * reads guest RAM from its memfds (the source: splice() into its channels,
 * or pread() for TLS), writes it with pwrite() (the destination; RAM is
 * never mapped), and punches holes in RAM memfds.  A save (migrate
 * file:) writes one file in the snapshot directory the launcher handed it
 * as an fd, and nothing else of the file system.  It has
 * no KVM: no ioctl beyond the fd ones in the base table, and /dev/kvm is
 * neither in its mount namespace nor openable read-write.
 */
#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/socket.h>

#include "sandbox/policy-internal.h"

static const struct sandbox_rule migrator_rules[] = {
	ALLOW_IF("socket", ARG_EQ32(0, AF_INET), "migration channels over IPv4"),
	ALLOW_IF("socket", ARG_EQ32(0, AF_INET6), "migration channels over IPv6"),
	ALLOW("bind", "migrate-incoming listens after start"),
	ALLOW("listen", "migrate-incoming listens after start"),
	ALLOW_IF("fallocate", ARG_EQ32(1, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE),
		 "destination drops RAM pages that are zero at the source"),
	ALLOW("splice", "source: RAM memfd pages into a channel's pipe (referenced, not copied), "
			"and the pipe into the channel socket"),
	ALLOW_IF("openat", ARG_EQ32(0, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		 "migrate file: creates its file in the snapshot directory, by name"),
	ALLOW_IF2("renameat", ARG_EQ32(0, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		  ARG_EQ32(2, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		  "a complete save replaces the snapshot of its name"),
	ALLOW_IF("unlinkat", ARG_EQ32(0, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD),
		 "a failed save removes its partial file"),
	ALLOW("ftruncate", "a save sizes its (sparse) file; RAM memfds are sealed against it"),
	ALLOW("fdatasync", "a save is on disk before its header says complete"),
	ALLOW("fsync", "the snapshot directory, after the rename"),
	ALLOW_IF("socketpair", ARG_EQ32(0, AF_UNIX),
		 "fd: URIs: a local pair per stream multiplexed over the one fd (migrator/mux.c)"),
	ALLOW("uname", "getaddrinfo (resolver) of a migration URI"),
	ALLOW("sendmmsg", "the DNS resolver sends its A and AAAA queries at once"),
};
static const struct sandbox_table migrator_table = SANDBOX_TABLE("migrator", migrator_rules);

const struct sandbox_policy sandbox_policy_migrator = {
	.name = "cleave-migrator",
	.tables = {&sandbox_table_base, &sandbox_table_mmap, &sandbox_table_nng, &migrator_table},
};
