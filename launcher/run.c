// SPDX-License-Identifier: GPL-2.0-only
/*
 * `cleave run`: create the VM's memory, guest image, sockets and state dir,
 * start cleave-vcpu, cleave-migrator and cleave-monitor with exactly their
 * fds (docs/PROCESSES.md), supervise them until the VM ends, clean up.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/capability.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "launcher/commands.h"
#include "launcher/host-check.h"
#include "launcher/options.h"
#include "launcher/run-internal.h"
#include "launcher/spawn.h"
#include "launcher/supervise.h"
#include "log/log.h"
#include "sandbox/sandbox.h"
#include "shm/shm.h"

_Static_assert(RUN_RESTART_LIMIT_MAX == SUP_RESTART_LIMIT_MAX,
	       "--restart-limit is bounded by the supervisor's ring of restart times");

#define RUN_LOW_RAM_MAX	 (3ULL << 30) /* region 0 ends below the 32-bit MMIO hole */
#define RUN_HIGH_RAM_GPA (4ULL << 30)

enum run_child {
	RUN_CHILD_VCPU,
	RUN_CHILD_MIGRATOR,
	RUN_CHILD_MONITOR,
	RUN_NR_CHILDREN,
};

static const struct {
	const char *name;	  /* binary and log name */
	const char *build_subdir; /* where meson builds it, relative to cleave's dir */
} run_child_bins[RUN_NR_CHILDREN] = {
	[RUN_CHILD_VCPU] = {"cleave-vcpu", "../vcpu-proc"},
	[RUN_CHILD_MIGRATOR] = {"cleave-migrator", "../migrator"},
	[RUN_CHILD_MONITOR] = {"cleave-monitor", "../monitor"},
};

/* Everything one `cleave run` owns; released by run_vm_fini in reverse. */
struct run_vm {
	struct run_options opt;
	struct run_state_dir state;
	struct shm_ctl ctl;
	int ram_fds[SHM_MAX_REGIONS]; /* RAM memfds, never mapped here */
	unsigned int nr_ram;
	int guest_fd;
	int serial_fd; /* a file we opened, -1 for stdio */
	int qmp_fds[RUN_QMP_MAX];
	/*
	 * The postcopy link (proto/postcopy-link.h) of a VM that waits for a
	 * migration: [0] cleave-vcpu's end, [1] the migrator's; both kept
	 * here for restarted children.  A socketpair: nobody else can reach
	 * it, no path in the state directory.  -1: none.
	 */
	int pclink_fds[2];
	/*
	 * /dev/userfaultfd, opened here for the cleave-vcpu of a VM with a
	 * postcopy link: its fault service makes its userfaultfd from this fd
	 * (one that sees KVM's own faults), so cleave-vcpu's user needs no
	 * access to the device and cleave-vcpu never opens it.  Kept for a
	 * restarted cleave-vcpu.  -1: none (no device, or no postcopy).
	 */
	int uffd_dev_fd;
	/*
	 * The fd link (proto/fd-link.h) of a VM with QMP: [0] cleave-monitor's
	 * end, [1] the migrator's, both kept here for restarted children (a
	 * restarted monitor or migrator finds its peer's end unchanged).  -1:
	 * none.
	 */
	int fdlink_fds[2];
	/* ipc:// URLs in the pairs' directories of the state dir (run-internal.h) */
	char vcpu_rpc_mig[RUN_SUN_PATH_MAX + 32]; /* cleave-vcpu serving the migrator */
	char vcpu_rpc_mon[RUN_SUN_PATH_MAX + 32]; /* cleave-vcpu serving the monitor */
	char vcpu_events[RUN_SUN_PATH_MAX + 32];
	char mig_rpc[RUN_SUN_PATH_MAX + 32];
	char mig_events[RUN_SUN_PATH_MAX + 32];
	char bins[RUN_NR_CHILDREN][PATH_MAX];
	struct spawn_cmd cmds[RUN_NR_CHILDREN];
	bool cmds_ready[RUN_NR_CHILDREN];
	struct sup sup;
	bool sup_ready;
	bool jailed;  /* children get namespaces and a new root (sandbox/jail.c) */
	int pidns_fd; /* pidfd of the children's PID namespace holder, -1 if none */
	struct sandbox_jail jails[RUN_NR_CHILDREN];
};

static void run_vm_fini(struct run_vm *vm)
{
	unsigned int i;

	/* Children first: nothing may use a socket or memfd we release below. */
	if (vm->sup_ready)
		sup_fini(&vm->sup);
	vm->sup_ready = false;
	sandbox_jail_pid_ns_destroy(vm->pidns_fd);
	vm->pidns_fd = -1;
	for (i = 0; i < RUN_NR_CHILDREN; i++) {
		if (vm->cmds_ready[i])
			spawn_cmd_fini(&vm->cmds[i]);
		sandbox_jail_fini(&vm->jails[i]);
	}
	memset(vm->cmds_ready, 0, sizeof(vm->cmds_ready));
	for (i = 0; i < vm->opt.nr_qmp; i++) {
		run_qmp_close(&vm->opt.qmp[i], vm->qmp_fds[i]);
		vm->qmp_fds[i] = -1;
	}
	if (vm->serial_fd >= 0)
		close(vm->serial_fd);
	vm->serial_fd = -1;
	if (vm->guest_fd >= 0)
		close(vm->guest_fd);
	vm->guest_fd = -1;
	if (vm->uffd_dev_fd >= 0)
		close(vm->uffd_dev_fd);
	vm->uffd_dev_fd = -1;
	for (i = 0; i < 2; i++) {
		if (vm->pclink_fds[i] >= 0)
			close(vm->pclink_fds[i]);
		vm->pclink_fds[i] = -1;
		if (vm->fdlink_fds[i] >= 0)
			close(vm->fdlink_fds[i]);
		vm->fdlink_fds[i] = -1;
	}
	for (i = 0; i < vm->nr_ram; i++)
		close(vm->ram_fds[i]);
	vm->nr_ram = 0;
	shm_ctl_close(&vm->ctl);
	run_state_dir_remove(&vm->state);
}

/*
 * Guest RAM per docs/PROCESSES.md: region 0 at GPA 0 up to 3 GiB, the rest
 * at 4 GiB.  The launcher keeps only the memfds: it never maps guest RAM.
 */
static int run_vm_memory_create(struct run_vm *vm)
{
	struct shm_ctl_layout layout = {0};
	uint64_t low = vm->opt.memory < RUN_LOW_RAM_MAX ? vm->opt.memory : RUN_LOW_RAM_MAX;
	struct shm_region r;
	unsigned int i;
	int ret;

	layout.gpa[0] = 0;
	layout.size[0] = low;
	layout.nr_regions = 1;
	if (vm->opt.memory > low) {
		layout.gpa[1] = RUN_HIGH_RAM_GPA;
		layout.size[1] = vm->opt.memory - low;
		layout.nr_regions = 2;
	}
	for (i = 0; i < layout.nr_regions; i++) {
		ret = shm_region_create(&r, i, layout.size[i]);
		if (ret)
			return ret;
		munmap(r.base, r.size);
		vm->ram_fds[vm->nr_ram++] = r.fd;
	}
	ret = shm_ctl_create(&vm->ctl, &layout);
	if (ret)
		return ret;
	log_debug("RAM %llu MiB in %u region(s), control segment %llu KiB",
		  (unsigned long long)(vm->opt.memory >> 20), vm->nr_ram,
		  (unsigned long long)(vm->ctl.size >> 10));
	return 0;
}

static int run_vm_serial_open(struct run_vm *vm)
{
	if (vm->opt.serial != RUN_SERIAL_FILE)
		return 0;
	vm->serial_fd = open(vm->opt.serial_path,
			     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY, 0600);
	if (vm->serial_fd < 0) {
		int ret = -errno;

		log_err("--serial file:%s: %s", vm->opt.serial_path, strerror(-ret));
		return ret;
	}
	return 0;
}

static int run_vm_resources_create(struct run_vm *vm)
{
	unsigned int i;
	int ret;

	ret = run_state_dir_create(&vm->state, vm->opt.state_dir);
	if (ret)
		return ret;
	run_state_dir_url(&vm->state, RUN_PAIR_VCPU_MIGRATOR, "rpc", vm->vcpu_rpc_mig,
			  sizeof(vm->vcpu_rpc_mig));
	run_state_dir_url(&vm->state, RUN_PAIR_VCPU_MONITOR, "rpc", vm->vcpu_rpc_mon,
			  sizeof(vm->vcpu_rpc_mon));
	run_state_dir_url(&vm->state, RUN_PAIR_VCPU_MONITOR, "events", vm->vcpu_events,
			  sizeof(vm->vcpu_events));
	run_state_dir_url(&vm->state, RUN_PAIR_MIGRATOR_MONITOR, "rpc", vm->mig_rpc,
			  sizeof(vm->mig_rpc));
	run_state_dir_url(&vm->state, RUN_PAIR_MIGRATOR_MONITOR, "events", vm->mig_events,
			  sizeof(vm->mig_events));
	ret = run_vm_memory_create(vm);
	if (ret)
		return ret;
	ret = run_guest_open(vm->opt.guest, &vm->guest_fd);
	if (ret)
		return ret;
	ret = run_vm_serial_open(vm);
	if (ret)
		return ret;
	/* Only a destination takes postcopy. */
	if (vm->opt.incoming != RUN_INCOMING_NONE &&
	    socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, vm->pclink_fds))
		return -errno;
	if (vm->pclink_fds[0] >= 0) {
		vm->uffd_dev_fd = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
		if (vm->uffd_dev_fd < 0)
			log_info("/dev/userfaultfd: %s; cleave-vcpu falls back to the "
				 "userfaultfd() syscall for postcopy",
				 strerror(errno));
	}
	/* Only QMP's getfd hands fds over (migrate "fd:NAME"). */
	if (vm->opt.nr_qmp && socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, vm->fdlink_fds))
		return -errno;
	for (i = 0; i < vm->opt.nr_qmp; i++) {
		ret = run_qmp_listen(&vm->opt.qmp[i], &vm->qmp_fds[i]);
		if (ret)
			return ret;
	}
	return 0;
}

/* "--ram-fds A,B": the child's numbers of the RAM memfds, in region order. */
static void run_cmd_ram_fds(struct run_vm *vm, struct spawn_cmd *c)
{
	char list[SHM_MAX_REGIONS * 12] = "";
	size_t off = 0;
	unsigned int i;

	for (i = 0; i < vm->nr_ram; i++)
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%d", i ? "," : "",
					spawn_cmd_fd(c, vm->ram_fds[i]));
	spawn_cmd_arg(c, "--ram-fds");
	spawn_cmd_arg(c, "%s", list);
}

static void run_cmd_vcpu(struct run_vm *vm, struct spawn_cmd *c)
{
	spawn_cmd_arg(c, "--ctl-fd");
	spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->ctl.fd));
	run_cmd_ram_fds(vm, c);
	spawn_cmd_arg(c, "--guest-fd");
	spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->guest_fd));
	spawn_cmd_arg(c, "--vcpus");
	spawn_cmd_arg(c, "%u", vm->opt.vcpus);
	spawn_cmd_arg(c, "--append");
	spawn_cmd_arg(c, "%s", vm->opt.cmdline);
	spawn_cmd_arg(c, "--serial-fd");
	spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->serial_fd >= 0 ? vm->serial_fd : STDOUT_FILENO));
	spawn_cmd_arg(c, "--name");
	spawn_cmd_arg(c, "%s", vm->opt.name);
	spawn_cmd_arg(c, "--rpc-migrator");
	spawn_cmd_arg(c, "%s", vm->vcpu_rpc_mig);
	if (vm->opt.nr_qmp) {
		spawn_cmd_arg(c, "--rpc-monitor");
		spawn_cmd_arg(c, "%s", vm->vcpu_rpc_mon);
	}
	spawn_cmd_arg(c, "--events");
	spawn_cmd_arg(c, "%s", vm->vcpu_events);
	if (vm->opt.incoming != RUN_INCOMING_NONE)
		spawn_cmd_arg(c, "--incoming");
	if (vm->pclink_fds[0] >= 0) {
		spawn_cmd_arg(c, "--postcopy-link-fd");
		spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->pclink_fds[0]));
		if (vm->uffd_dev_fd >= 0) {
			spawn_cmd_arg(c, "--userfaultfd-dev-fd");
			spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->uffd_dev_fd));
		}
	}
}

static void run_cmd_migrator(struct run_vm *vm, struct spawn_cmd *c)
{
	spawn_cmd_arg(c, "--ctl-fd");
	spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->ctl.fd));
	run_cmd_ram_fds(vm, c);
	spawn_cmd_arg(c, "--vcpu-rpc");
	spawn_cmd_arg(c, "%s", vm->vcpu_rpc_mig);
	spawn_cmd_arg(c, "--rpc");
	spawn_cmd_arg(c, "%s", vm->mig_rpc);
	spawn_cmd_arg(c, "--events");
	spawn_cmd_arg(c, "%s", vm->mig_events);
	if (vm->opt.incoming == RUN_INCOMING_TCP || vm->opt.incoming == RUN_INCOMING_FILE ||
	    vm->opt.incoming == RUN_INCOMING_UNIX) {
		spawn_cmd_arg(c, "--incoming");
		spawn_cmd_arg(c, "%s", vm->opt.incoming_uri);
	}
	if (vm->opt.tls_x509_dir[0]) {
		spawn_cmd_arg(c, "--tls-x509-dir");
		spawn_cmd_arg(c, "%s", vm->opt.tls_x509_dir);
	}
	if (vm->opt.tls_psk_file[0]) {
		spawn_cmd_arg(c, "--tls-psk-file");
		spawn_cmd_arg(c, "%s", vm->opt.tls_psk_file);
	}
	for (unsigned int i = 0; i < vm->opt.nr_tls_more; i++) {
		spawn_cmd_arg(c, "--tls-more");
		spawn_cmd_arg(c, "%s", vm->opt.tls_more[i]);
	}
	if (vm->opt.tls_psk_identity) {
		spawn_cmd_arg(c, "--tls-psk-identity");
		spawn_cmd_arg(c, "%s", vm->opt.tls_psk_identity);
	}
	if (vm->opt.tls_authz) {
		spawn_cmd_arg(c, "--tls-authz");
		spawn_cmd_arg(c, "%s", vm->opt.tls_authz);
	}
	if (vm->opt.tls_hostname) {
		spawn_cmd_arg(c, "--tls-hostname");
		spawn_cmd_arg(c, "%s", vm->opt.tls_hostname);
	}
	if (vm->opt.insecure_plaintext)
		spawn_cmd_arg(c, "--insecure-plaintext");
	if (vm->opt.snapshot_dir[0]) {
		spawn_cmd_arg(c, "--snapshot-dir");
		spawn_cmd_arg(c, "%s", vm->opt.snapshot_dir);
	}
	if (vm->pclink_fds[1] >= 0) {
		spawn_cmd_arg(c, "--postcopy-link-fd");
		spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->pclink_fds[1]));
	}
	if (vm->fdlink_fds[1] >= 0) {
		spawn_cmd_arg(c, "--fd-link-fd");
		spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->fdlink_fds[1]));
	}
}

static void run_cmd_monitor(struct run_vm *vm, struct spawn_cmd *c)
{
	unsigned int i;

	for (i = 0; i < vm->opt.nr_qmp; i++) {
		spawn_cmd_arg(c, "--qmp-fd");
		spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->qmp_fds[i]));
	}
	spawn_cmd_arg(c, "--vcpu-rpc");
	spawn_cmd_arg(c, "%s", vm->vcpu_rpc_mon);
	spawn_cmd_arg(c, "--vcpu-events");
	spawn_cmd_arg(c, "%s", vm->vcpu_events);
	spawn_cmd_arg(c, "--migrator-rpc");
	spawn_cmd_arg(c, "%s", vm->mig_rpc);
	spawn_cmd_arg(c, "--migrator-events");
	spawn_cmd_arg(c, "%s", vm->mig_events);
	if (vm->fdlink_fds[0] >= 0) {
		spawn_cmd_arg(c, "--fd-link-fd");
		spawn_cmd_arg(c, "%d", spawn_cmd_fd(c, vm->fdlink_fds[0]));
	}
	spawn_cmd_arg(c, "--name");
	spawn_cmd_arg(c, "%s", vm->opt.name);
	/* Only named, for query-chardev: the monitor never touches the serial. */
	spawn_cmd_arg(c, "--serial");
	if (vm->opt.serial == RUN_SERIAL_FILE)
		spawn_cmd_arg(c, "file:%s", vm->opt.serial_path);
	else
		spawn_cmd_arg(c, "stdio");
	if (vm->opt.qmp_max_clients) {
		spawn_cmd_arg(c, "--max-clients");
		spawn_cmd_arg(c, "%u", vm->opt.qmp_max_clients);
	}
	if (vm->opt.qmp_input_limit) {
		spawn_cmd_arg(c, "--input-limit");
		spawn_cmd_arg(c, "%llu", (unsigned long long)vm->opt.qmp_input_limit);
	}
	if (vm->opt.qmp_handshake_ms >= 0) {
		spawn_cmd_arg(c, "--handshake-timeout");
		spawn_cmd_arg(c, "%d", vm->opt.qmp_handshake_ms);
	}
	if (vm->opt.qmp_partial_ms >= 0) {
		spawn_cmd_arg(c, "--partial-timeout");
		spawn_cmd_arg(c, "%d", vm->opt.qmp_partial_ms);
	}
	/* TLS on every tcp: socket (the monitor tells them by their address family). */
	if (vm->opt.qmp_tls_x509_dir[0]) {
		spawn_cmd_arg(c, "--tls-x509-dir");
		spawn_cmd_arg(c, "%s", vm->opt.qmp_tls_x509_dir);
	}
	if (vm->opt.qmp_tls_psk_file[0]) {
		spawn_cmd_arg(c, "--tls-psk-file");
		spawn_cmd_arg(c, "%s", vm->opt.qmp_tls_psk_file);
	}
	if (vm->opt.qmp_tls_authz) {
		spawn_cmd_arg(c, "--tls-authz");
		spawn_cmd_arg(c, "%s", vm->opt.qmp_tls_authz);
	}
}

static const enum sandbox_proc run_child_procs[RUN_NR_CHILDREN] = {
	[RUN_CHILD_VCPU] = SANDBOX_VCPU,
	[RUN_CHILD_MIGRATOR] = SANDBOX_MIGRATOR,
	[RUN_CHILD_MONITOR] = SANDBOX_MONITOR,
};

/*
 * Sandbox on by default (docs/SECURITY.md): each child enters its own
 * policy; as root they also get namespaces and a new root, all in one new
 * PID namespace.  SANDBOX_ENV_DISABLE is how --no-sandbox reaches the
 * children; it is cleared otherwise so a stray environment cannot turn the
 * sandbox off.
 */
static int run_sandbox_prepare(struct run_vm *vm)
{
	int ret;

	if (vm->opt.no_sandbox) {
		log_warn("--no-sandbox: no process runs with seccomp, namespaces or dropped "
			 "capabilities");
		return setenv(SANDBOX_ENV_DISABLE, "1", 1) ? -errno : 0;
	}
	unsetenv(SANDBOX_ENV_DISABLE);
	if (!sandbox_jail_supported()) {
		log_info("sandbox: seccomp, no_new_privs, rlimits, no capabilities; no namespaces "
			 "(%s)",
			 geteuid() ? "not root" : "the kernel refused them here");
		return 0;
	}
	ret = sandbox_jail_pid_ns_create(&vm->pidns_fd);
	if (ret) {
		log_info("sandbox: no PID namespace (%s): children run without namespaces",
			 strerror(-ret));
		return 0;
	}
	vm->jailed = true;
	log_debug("sandbox: seccomp, no_new_privs, rlimits, no capabilities, own namespaces "
		  "(mount, PID, IPC, net but for the migrator) and root");
	return 0;
}

/* One check of run_ids_check_paths: the error names the child, its user and the option. */
static int run_ids_check(const struct run_vm *vm, enum sandbox_proc proc, const char *path,
			 int mode, const char *opt)
{
	uid_t uid = run_ids_uid(vm->opt.uid_base, proc);
	int ret = run_ids_access(vm->opt.uid_base, proc,
				 run_ids_share_gid(vm->opt.migrate_socket_dir), path, mode);

	if (ret)
		log_err("--uid-base: %s (uid %u) cannot %s%s%s %s (%s): %s; give that user or "
			"group access",
			proc == SANDBOX_MIGRATOR ? "cleave-migrator" : "cleave-monitor",
			(unsigned int)uid, mode & R_OK ? "read" : "", mode & W_OK ? " write" : "",
			mode & X_OK ? " search" : "", path, opt, strerror(-ret));
	return ret;
}

/*
 * What each child must reach under its own user, checked before any
 * starts: a credential or a directory it cannot use is a clear error now,
 * not a child that fails in its jail later.
 */
static int run_ids_check_paths(const struct run_vm *vm)
{
	static const char *const x509_files[] = {"ca-cert.pem",	    "ca-crl.pem",
						 "server-cert.pem", "server-key.pem",
						 "client-cert.pem", "client-key.pem"};
	const struct {
		enum sandbox_proc proc;
		const char *path, *opt;
		int mode;
		bool x509; /* a credentials directory: its files too */
	} need[] = {
		{SANDBOX_MIGRATOR, vm->opt.tls_x509_dir, "--migrate-tls-x509", R_OK | X_OK, true},
		{SANDBOX_MIGRATOR, vm->opt.tls_psk_file, "--migrate-tls-psk", R_OK, false},
		{SANDBOX_MONITOR, vm->opt.qmp_tls_x509_dir, "--qmp-tls-x509", R_OK | X_OK, true},
		{SANDBOX_MONITOR, vm->opt.qmp_tls_psk_file, "--qmp-tls-psk", R_OK, false},
		{SANDBOX_MIGRATOR, vm->opt.snapshot_dir, "--snapshot-dir", R_OK | W_OK | X_OK,
		 false},
		{SANDBOX_MIGRATOR, vm->opt.migrate_socket_dir, "--migrate-socket-dir", W_OK | X_OK,
		 false},
	};
	int ret = 0;

	for (unsigned int k = 0; !ret && k < vm->opt.nr_tls_more; k++) {
		struct stat st;
		bool dir = !stat(vm->opt.tls_more[k], &st) && S_ISDIR(st.st_mode);

		ret = run_ids_check(vm, SANDBOX_MIGRATOR, vm->opt.tls_more[k],
				    dir ? R_OK | X_OK : R_OK, "--migrate-tls-creds");
		for (size_t f = 0; !ret && dir && f < sizeof(x509_files) / sizeof(x509_files[0]);
		     f++) {
			char file[PATH_MAX];

			snprintf(file, sizeof(file), "%s/%s", vm->opt.tls_more[k], x509_files[f]);
			if (!access(file, F_OK))
				ret = run_ids_check(vm, SANDBOX_MIGRATOR, file, R_OK,
						    "--migrate-tls-creds");
		}
	}
	for (size_t i = 0; !ret && i < sizeof(need) / sizeof(need[0]); i++) {
		if (!need[i].path[0])
			continue;
		ret = run_ids_check(vm, need[i].proc, need[i].path, need[i].mode, need[i].opt);
		for (size_t f = 0;
		     !ret && need[i].x509 && f < sizeof(x509_files) / sizeof(x509_files[0]); f++) {
			char file[PATH_MAX];

			snprintf(file, sizeof(file), "%s/%s", need[i].path, x509_files[f]);
			if (!access(file, F_OK))
				ret = run_ids_check(vm, need[i].proc, file, R_OK, need[i].opt);
		}
	}
	return ret;
}

/*
 * --uid-base: the pairs' directories become their users', the launcher
 * joins their groups.  Only in the jail: there each child's view of the
 * state dir is its pairs' directories; without it they could not reach
 * them through the root-only state dir at all.
 */
static int run_users_prepare(struct run_vm *vm)
{
	int ret;

	if (!vm->opt.uid_base)
		return 0;
	if (!vm->jailed) {
		log_err("--uid-base needs the jail: run as root with the sandbox on, on a kernel "
			"that allows namespaces (cleave check-host)");
		return -EPERM;
	}
	ret = run_state_dir_pairs_own(&vm->state, vm->opt.uid_base);
	if (!ret)
		ret = run_ids_launcher(vm->opt.uid_base);
	if (!ret)
		ret = run_ids_check_paths(vm);
	if (!ret)
		log_debug("users: cleave-vcpu %u, cleave-migrator %u, cleave-monitor %u",
			  (unsigned int)run_ids_uid(vm->opt.uid_base, SANDBOX_VCPU),
			  (unsigned int)run_ids_uid(vm->opt.uid_base, SANDBOX_MIGRATOR),
			  (unsigned int)run_ids_uid(vm->opt.uid_base, SANDBOX_MONITOR));
	return ret;
}

/* Builds each child's command line and registers it, vcpu first: it listens. */
static void run_migrator_gone(void *arg)
{
	struct run_vm *vm = arg;

	/* It finishes the migrator's work: through the migrator's socket, with its rights. */
	run_migrator_gave_up(&vm->ctl, vm->vcpu_rpc_mig);
}

static int run_vm_children_add(struct run_vm *vm)
{
	unsigned int i;
	int ret;

	if (vm->opt.snapshot_dir[0] && !vm->jailed)
		log_warn("--snapshot-dir without the jail (root, sandbox on): a compromised "
			 "migrator could write beyond %s through '..'",
			 vm->opt.snapshot_dir);
	for (i = 0; i < RUN_NR_CHILDREN; i++) {
		struct spawn_cmd *c = &vm->cmds[i];

		/* Without a QMP socket nobody can talk to a monitor. */
		if (i == RUN_CHILD_MONITOR && !vm->opt.nr_qmp)
			continue;
		if (vm->jailed) {
			ret = sandbox_jail_init(&vm->jails[i], run_child_procs[i], vm->bins[i]);
			if (!ret)
				ret = run_state_dir_jail_bind(&vm->state, &vm->jails[i],
							      run_child_procs[i]);
			/* The migrator reads its TLS credentials, read-only, and no more. */
			if (!ret && i == RUN_CHILD_MIGRATOR && vm->opt.tls_x509_dir[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.tls_x509_dir, false,
							false);
			if (!ret && i == RUN_CHILD_MIGRATOR && vm->opt.tls_psk_file[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.tls_psk_file, false,
							false);
			for (unsigned int k = 0;
			     !ret && i == RUN_CHILD_MIGRATOR && k < vm->opt.nr_tls_more; k++)
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.tls_more[k], false,
							false);
			/*
			 * Its snapshot directory, writable: the jail is what keeps a
			 * compromised migrator's openat(dirfd, "../...") inside it.
			 */
			if (!ret && i == RUN_CHILD_MIGRATOR && vm->opt.snapshot_dir[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.snapshot_dir, true,
							false);
			/* And where its unix: migration sockets are (it binds them there). */
			if (!ret && i == RUN_CHILD_MIGRATOR && vm->opt.migrate_socket_dir[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.migrate_socket_dir,
							true, false);
			/* So does the monitor its QMP ones. */
			if (!ret && i == RUN_CHILD_MONITOR && vm->opt.qmp_tls_x509_dir[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.qmp_tls_x509_dir,
							false, false);
			if (!ret && i == RUN_CHILD_MONITOR && vm->opt.qmp_tls_psk_file[0])
				ret = sandbox_jail_bind(&vm->jails[i], vm->opt.qmp_tls_psk_file,
							false, false);
			if (ret) {
				log_err("%s jail: %s", run_child_bins[i].name, strerror(-ret));
				return ret;
			}
			if (vm->opt.uid_base) {
				ret = run_ids_jail(&vm->jails[i], run_child_procs[i],
						   vm->opt.uid_base,
						   run_ids_share_gid(vm->opt.migrate_socket_dir));
				if (ret)
					return ret;
			}
			if (i == RUN_CHILD_MIGRATOR && vm->opt.migrate_netns[0]) {
				ret = sandbox_jail_net_ns(&vm->jails[i], vm->opt.migrate_netns);
				if (ret) {
					log_err("--migrate-netns %s: %s", vm->opt.migrate_netns,
						ret == -EINVAL ? "not a network namespace"
							       : strerror(-ret));
					return ret;
				}
			}
		} else if (i == RUN_CHILD_MIGRATOR && vm->opt.migrate_netns[0]) {
			/* Never quietly on the host's network when another was asked for. */
			log_err("--migrate-netns needs the jail: run as root with the sandbox on, "
				"on a kernel that allows namespaces (cleave check-host)");
			return -EPERM;
		}
		/* Not jailed (jails[i].enabled false), a child still starts without capabilities.
		 */
		/* Jailed, the binary is exec'd by its canonical path: the one bound. */
		ret = spawn_cmd_init(c, vm->jailed ? vm->jails[i].exe : vm->bins[i],
				     run_child_bins[i].name);
		if (ret)
			return ret;
		vm->cmds_ready[i] = true;
		c->jail = vm->opt.no_sandbox ? NULL : &vm->jails[i];
		if (i == RUN_CHILD_VCPU)
			run_cmd_vcpu(vm, c);
		else if (i == RUN_CHILD_MIGRATOR)
			run_cmd_migrator(vm, c);
		else
			run_cmd_monitor(vm, c);
		if (vm->opt.verbose)
			spawn_cmd_arg(c, "-v");
		if (c->err) {
			log_err("%s command line: %s", run_child_bins[i].name, strerror(-c->err));
			return c->err;
		}
		ret = sup_child_add(&vm->sup, run_child_bins[i].name, c, i == RUN_CHILD_VCPU);
		if (ret)
			return ret;
		if (i == RUN_CHILD_MIGRATOR)
			sup_child_on_give_up(&vm->sup, vm->sup.nr_children - 1, run_migrator_gone,
					     vm);
	}
	return 0;
}

static int run_bins_find(struct run_vm *vm)
{
	unsigned int i;
	int ret;

	for (i = 0; i < RUN_NR_CHILDREN; i++) {
		if (i == RUN_CHILD_MONITOR && !vm->opt.nr_qmp)
			continue;
		ret = run_libexec_find(run_child_bins[i].name, run_child_bins[i].build_subdir,
				       vm->bins[i], sizeof(vm->bins[i]));
		if (ret)
			return ret;
		log_debug("%s: %s", run_child_bins[i].name, vm->bins[i]);
	}
	return 0;
}

int cmd_run_main(int argc, char **argv)
{
	static struct run_vm vm; /* large (paths); one per process */
	struct sup_policy policy;
	struct host_kvm kvm;
	char err[256];
	int ret, status = 1;
	unsigned int i;

	log_init("cleave");
	/*
	 * A closed stderr (cleave run | head) must not kill the launcher: its
	 * children would die with it.  spawn resets SIGPIPE for them.
	 */
	signal(SIGPIPE, SIG_IGN);
	vm.guest_fd = -1;
	vm.serial_fd = -1;
	vm.pidns_fd = -1;
	vm.pclink_fds[0] = vm.pclink_fds[1] = -1;
	vm.uffd_dev_fd = -1;
	vm.fdlink_fds[0] = vm.fdlink_fds[1] = -1;
	for (i = 0; i < RUN_QMP_MAX; i++)
		vm.qmp_fds[i] = -1;
	vm.state.lock_fd = -1;
	vm.ctl.fd = -1;

	/* One probe of the KVM device: its vCPU limit for the options, then the preflight. */
	host_kvm_probe_default(&kvm);
	if (run_options_parse(&vm.opt, argc, argv, run_kvm_max_vcpus(&kvm), err, sizeof(err))) {
		log_err("run: %s", err);
		fprintf(stderr, "Try 'cleave run --help'.\n");
		return 2;
	}
	if (vm.opt.help) {
		run_options_usage(stdout);
		return 0;
	}
	log_set_verbose(vm.opt.verbose);
	if (!vm.opt.guest && !run_guest_embedded_size()) {
		log_err("run: this cleave was built without an embedded guest; pass --guest FILE");
		return 2;
	}
	/* Before any jail or child: without KVM they would only fail less clearly. */
	if (!host_kvm_preflight(&kvm))
		return HOST_EXIT_UNFIT;
	if (run_bins_find(&vm))
		return 1;

	/* Signals blocked before anything exists, so Ctrl-C always cleans up. */
	policy = sup_policy_default;
	if (vm.opt.restart_limit) {
		policy.restart_limit = vm.opt.restart_limit;
		policy.restart_window_ms = vm.opt.restart_window_s * 1000u;
	}
	ret = sup_init(&vm.sup, &policy);
	if (ret)
		return 1;
	vm.sup_ready = true;
	ret = run_vm_resources_create(&vm);
	if (ret)
		goto out;
	ret = run_sandbox_prepare(&vm);
	if (!ret)
		ret = run_users_prepare(&vm);
	if (ret)
		goto out;
	ret = run_vm_children_add(&vm);
	if (ret)
		goto out;
	log_info("VM %s: %llu MiB, %u vCPU(s), state dir %s", vm.opt.name,
		 (unsigned long long)(vm.opt.memory >> 20), vm.opt.vcpus, vm.state.path);
	ret = sup_start(&vm.sup);
	if (ret)
		goto out;
	/* Children started: from here on the launcher supervises under its own policy. */
	if (!vm.opt.no_sandbox) {
		ret = sandbox_enter_keep_caps(SANDBOX_LAUNCHER,
					      vm.jailed ? 1ULL << CAP_SYS_ADMIN : 0);
		if (ret)
			goto out;
	}
	status = sup_run(&vm.sup);
out:
	run_vm_fini(&vm);
	return status;
}
