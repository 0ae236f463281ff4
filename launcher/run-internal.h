/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The resources `cleave run` creates before any child starts.  Each comes
 * with its release function; every fd returned is CLOEXEC (spawn hands it
 * over explicitly).  Return values: 0 or a negative errno, with the reason
 * logged.
 */
#ifndef CLEAVE_LAUNCHER_RUN_INTERNAL_H
#define CLEAVE_LAUNCHER_RUN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "launcher/options.h"
#include "sandbox/sandbox.h"

/* statedir.c ------------------------------------------------------------ */

/*
 * The children's ipc:// sockets, one directory per pair of processes that
 * talk: the serving side binds it writable into its jail (it creates the
 * sockets there), the calling side read-only (connect() needs no write
 * access to the mount), no other child at all (docs/SECURITY.md, "Who can
 * reach which socket").
 */
enum run_pair {
	RUN_PAIR_VCPU_MIGRATOR,	   /* "vcpu-mig/rpc": cleave-vcpu serves the migrator */
	RUN_PAIR_VCPU_MONITOR,	   /* "vcpu-mon/rpc", "vcpu-mon/events" */
	RUN_PAIR_MIGRATOR_MONITOR, /* "mig-mon/rpc", "mig-mon/events" */
	RUN_NR_PAIRS,
};

/* The state dir, exclusively locked for the launcher's lifetime. */
struct run_state_dir {
	char path[RUN_SUN_PATH_MAX];
	char pairs[RUN_NR_PAIRS][RUN_SUN_PATH_MAX]; /* each pair's directory, full path */
	bool created; /* we made the leaf directory: remove it at the end */
	int lock_fd;  /* flock()ed "<dir>/lock", -1 when not held */
};

/*
 * Creates @path (and missing parents) mode 0700, or checks that an existing
 * one is a directory owned by us and makes it 0700, then locks it so a
 * second VM with the same state dir fails with -EBUSY, and makes the pairs'
 * directories in it (0700, ours, no symbolic link).  Every component
 * on the way is opened without following symbolic links and checked by fd:
 * owned by root or us, writable by no one else unless sticky (/tmp).  A
 * refusal is logged with the component and why: -ELOOP (a symbolic link),
 * -ENOTDIR (a file on the way), -EPERM (owner, mode, or not a directory).
 */
int run_state_dir_create(struct run_state_dir *d, const char *path);
/* Unlinks the sockets cleave's processes create in it, the pairs' dirs, the lock, the dir. */
void run_state_dir_remove(struct run_state_dir *d);
/*
 * Binds into @j (the jail of a @proc child) the directory of each pair
 * @proc is in, and no other: writable where it serves, read-only where it
 * calls.  So cleave-vcpu cannot reach the migrator (no MIGRATE), the
 * migrator cannot replace cleave-vcpu's sockets, and the rest of the state
 * dir (the lock) is not there at all.
 */
struct sandbox_jail;
int run_state_dir_jail_bind(const struct run_state_dir *d, struct sandbox_jail *j,
			    enum sandbox_proc proc);
/* Whether @proc is in @pair, and (*@serves) whether it is the side that listens. */
bool run_pair_member(enum run_pair pair, enum sandbox_proc proc, bool *serves);
enum sandbox_proc run_pair_server(enum run_pair pair);
/*
 * With --uid-base: each pair's directory is owned by its server's uid and
 * the pair's group, mode 02770 (setgid: the sockets get the pair's group;
 * the children's umask 007 gives that group write, which connect() needs).
 */
int run_state_dir_pairs_own(const struct run_state_dir *d, uid_t base);
/* "ipc://<dir>/<pair>/<name>" into @buf; the options parser guaranteed it fits. */
void run_state_dir_url(const struct run_state_dir *d, enum run_pair pair, const char *name,
		       char *buf, size_t len);

/* ids.c ------------------------------------------------------------------ */

/*
 * --uid-base N (docs/SECURITY.md, "Users"): N cleave-vcpu, N+1
 * cleave-migrator, N+2 cleave-monitor, each with a group of the same
 * number; N+3 + pair: the group of each pair's socket directory.
 */
_Static_assert(RUN_IDS_PER_VM == 3 + RUN_NR_PAIRS, "--uid-base reserves one id per child and pair");
uid_t run_ids_uid(uid_t base, enum sandbox_proc proc);
gid_t run_ids_pair_gid(uid_t base, enum run_pair pair);
/*
 * The group every VM's migrator joins to share --migrate-socket-dir @dir
 * (unix: migrations between VMs of different users): @dir's group when
 * the directory is setgid and group-writable (mode 2770, so the sockets
 * made in it take that group), never root's; 0: none.
 */
gid_t run_ids_share_gid(const char *dir);
/*
 * Gives @j (a @proc child's jail) its user, its group and the groups of its
 * pairs; cleave-vcpu also gets the groups of /dev/kvm and /dev/userfaultfd,
 * cleave-migrator @share_gid (run_ids_share_gid(), 0: none).
 * -EACCES (logged) when /dev/kvm would not let that user open it.
 */
int run_ids_jail(struct sandbox_jail *j, enum sandbox_proc proc, uid_t base, gid_t share_gid);
/*
 * The launcher joins every pair's group (before its own policy): it removes
 * the sockets at the end and calls cleave-vcpu for a migrator that is gone.
 */
int run_ids_launcher(uid_t base);
/*
 * May @proc's user (its uid, its pairs' groups, and @share_gid for the
 * migrator) access @path with
 * @mode (access(2)'s R_OK, W_OK, X_OK)?  Asked of the kernel in a forked
 * child that takes those ids (root only): 0 or the negative errno.
 */
int run_ids_access(uid_t base, enum sandbox_proc proc, gid_t share_gid, const char *path, int mode);

/* qmp-listen.c ---------------------------------------------------------- */

/*
 * Creates the listening socket for @ep: unix (a stale socket file nobody
 * listens on is replaced; anything else at the path is an error; mode 0600)
 * or TCP on loopback.  The backlog is large so clients queue while the
 * monitor restarts.
 */
int run_qmp_listen(const struct run_endpoint *ep, int *fd);
/* Closes @fd and unlinks a unix socket's path. */
void run_qmp_close(const struct run_endpoint *ep, int fd);

/* guest-blob.c ---------------------------------------------------------- */

/*
 * The guest ELF as an fd: @path opened read-only, or (NULL) the embedded
 * guest copied into a sealed memfd "cleave-guest".
 */
int run_guest_open(const char *path, int *fd);
/* Bytes of the embedded guest; 0 when this cleave was built without one. */
size_t run_guest_embedded_size(void);

/* libexec.c ------------------------------------------------------------- */

/*
 * Finds child binary @name: only in $CLEAVE_LIBEXEC_DIR when set, else next
 * to cleave (/proc/self/exe), else in the build tree's @build_subdir
 * ("../vcpu-proc" relative to cleave's directory).  -ENOENT when absent.
 */
int run_libexec_find(const char *name, const char *build_subdir, char *buf, size_t len);

struct shm_ctl;

/* migrator-gone.c: ends the recorded migration once the migrator is given up. */
void run_migrator_gave_up(struct shm_ctl *ctl, const char *vcpu_rpc);

#endif
