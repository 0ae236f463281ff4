/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cleave-migrator: init (arguments, control segment and RAM mappings, RPC
 * client to vcpu-proc, RPC server, event publisher, session) -> work (serve
 * until SIGTERM/SIGINT; --incoming listens at once) -> exit.
 *
 * cleave-migrator --ctl-fd N --ram-fds A[,B...] --vcpu-rpc URL
 *                 --rpc URL --events URL [--incoming URI] [-v]
 *                 [--snapshot-dir PATH] (see usage())
 */
#include <errno.h>
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "log/log.h"
#include "migrator/migrator-process.h"
#include "migrator/fd-link.h"
#include "migrator/postcopy-link.h"
#include "migrator/tls.h"
#include "sandbox/sandbox.h"

struct options {
	int ctl_fd;
	int ram_fds[SHM_MAX_REGIONS];
	unsigned int nr_ram_fds;
	const char *vcpu_rpc, *rpc, *events, *incoming;
	struct mig_tls_config tls; /* both paths NULL: no TLS */
	const char *snapshot_dir;  /* migrate file: saves there (absolute) */
	/* Further credentials for QMP's tls-creds objects: x509 directories or PSK files. */
	const char *tls_more[MIG_TLS_MORE_MAX];
	unsigned int nr_tls_more;
	bool insecure_plaintext;
	bool verbose;
	int postcopy_link_fd; /* -1: none */
	int fd_link_fd;	      /* -1: none (no fd: URIs) */
};

static void usage(FILE *f)
{
	fprintf(f, "usage: cleave-migrator --ctl-fd N --ram-fds A[,B...] --vcpu-rpc URL\n"
		   "                       --rpc URL --events URL [--incoming URI] [-v]\n"
		   "                       [--tls-x509-dir DIR | --tls-psk-file FILE\n"
		   "                        [--tls-psk-identity NAME]] [--tls-authz LIST]\n"
		   "                       [--tls-hostname NAME] [--insecure-plaintext]\n"
		   "                       [--snapshot-dir PATH] [--tls-more DIR|FILE]...\n"
		   "                       [--postcopy-link-fd N] [--fd-link-fd N]\n");
}

static int parse_fd(const char *s, int *fd)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || end == s || v < 0 || v > (1 << 20))
		return -EINVAL;
	*fd = (int)v;
	return 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"ctl-fd", required_argument, NULL, 'c'},
		{"ram-fds", required_argument, NULL, 'r'},
		{"vcpu-rpc", required_argument, NULL, 'V'},
		{"rpc", required_argument, NULL, 'R'},
		{"events", required_argument, NULL, 'e'},
		{"incoming", required_argument, NULL, 'i'},
		{"tls-x509-dir", required_argument, NULL, 'X'},
		{"tls-psk-file", required_argument, NULL, 'P'},
		{"tls-psk-identity", required_argument, NULL, 'I'},
		{"tls-authz", required_argument, NULL, 'A'},
		{"tls-hostname", required_argument, NULL, 'H'},
		{"insecure-plaintext", no_argument, NULL, 'U'},
		{"snapshot-dir", required_argument, NULL, 'S'},
		{"tls-more", required_argument, NULL, 'M'},
		{"postcopy-link-fd", required_argument, NULL, 'L'},
		{"fd-link-fd", required_argument, NULL, 'F'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	char *tok, *save, *list;
	int c;

	o->ctl_fd = -1;
	o->postcopy_link_fd = -1;
	o->fd_link_fd = -1;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (parse_fd(optarg, &o->ctl_fd))
				goto err_value;
			break;
		case 'r':
			list = strdupa(optarg);
			for (tok = strtok_r(list, ",", &save); tok;
			     tok = strtok_r(NULL, ",", &save)) {
				if (o->nr_ram_fds == SHM_MAX_REGIONS ||
				    parse_fd(tok, &o->ram_fds[o->nr_ram_fds]))
					goto err_value;
				o->nr_ram_fds++;
			}
			break;
		case 'V':
			o->vcpu_rpc = optarg;
			break;
		case 'R':
			o->rpc = optarg;
			break;
		case 'e':
			o->events = optarg;
			break;
		case 'i':
			o->incoming = optarg;
			break;
		case 'X':
			o->tls.x509_dir = optarg;
			break;
		case 'P':
			o->tls.psk_file = optarg;
			break;
		case 'I':
			o->tls.psk_identity = optarg;
			break;
		case 'A':
			o->tls.authz = optarg;
			break;
		case 'H':
			o->tls.hostname = optarg;
			break;
		case 'U':
			o->insecure_plaintext = true;
			break;
		case 'S':
			o->snapshot_dir = optarg;
			break;
		case 'M':
			if (o->nr_tls_more == MIG_TLS_MORE_MAX) {
				log_err("--tls-more: at most %d", MIG_TLS_MORE_MAX);
				return -EINVAL;
			}
			o->tls_more[o->nr_tls_more++] = optarg;
			break;
		case 'L':
			if (parse_fd(optarg, &o->postcopy_link_fd))
				goto err_value;
			break;
		case 'F':
			if (parse_fd(optarg, &o->fd_link_fd))
				goto err_value;
			break;
		case 'v':
			o->verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			return -EINVAL;
		}
	}
	if (optind != argc || o->ctl_fd < 0 || !o->nr_ram_fds || !o->vcpu_rpc || !o->rpc ||
	    !o->events || (o->snapshot_dir && o->snapshot_dir[0] != '/')) {
		log_err("missing or extra arguments");
		usage(stderr);
		return -EINVAL;
	}
	return 0;
err_value:
	log_err("bad value for --%s: '%s'",
		c == 'c'   ? "ctl-fd"
		: c == 'L' ? "postcopy-link-fd"
		: c == 'F' ? "fd-link-fd"
			   : "ram-fds",
		optarg);
	return -EINVAL;
}

/*
 * The snapshot directory, opened here (inside the jail, where cleave run
 * bound it: ".." from it stays in the jail) at the fd number the sandbox's
 * filter names (SANDBOX_MIGRATOR_SNAPSHOT_DIRFD), which must be free.
 */
static int snapshot_dir_open(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);

	if (fd < 0) {
		log_err("--snapshot-dir %s: %s", path, strerror(errno));
		return -errno;
	}
	if (fcntl(SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, F_GETFD) >= 0 ||
	    dup3(fd, SANDBOX_MIGRATOR_SNAPSHOT_DIRFD, O_CLOEXEC) < 0) {
		log_err("--snapshot-dir: fd %d is taken or cannot be made",
			SANDBOX_MIGRATOR_SNAPSHOT_DIRFD);
		close(fd);
		return -EBADF;
	}
	close(fd);
	return 0;
}

/* --tls-more: a directory is x509 credentials, a file a PSK keys file (as cleave run checked). */
static int tls_more_load(struct mig_tls **out, const char *path)
{
	struct mig_tls_config cfg = {0};
	char err[512] = "";
	struct stat st;
	int ret;

	if (stat(path, &st)) {
		log_err("TLS credentials %s: %s", path, strerror(errno));
		return -errno;
	}
	if (S_ISDIR(st.st_mode))
		cfg.x509_dir = path;
	else
		cfg.psk_file = path;
	ret = mig_tls_load(out, &cfg, err, sizeof(err));
	if (ret)
		log_err("TLS credentials %s: %s", path, err[0] ? err : strerror(-ret));
	return ret;
}

/* Session events -> events.proto, sent from whichever session thread changed state. */
static void publish_event(void *arg, const struct mig_event *ev)
{
	Cleave__Events__Event e = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Migration m = CLEAVE__EVENTS__MIGRATION__INIT;
	Cleave__Events__MigrationPass p = CLEAVE__EVENTS__MIGRATION_PASS__INIT;
	int ret;

	if (ev->status) {
		m.status = (char *)ev->status;
		m.detail = (char *)(ev->detail ? ev->detail : "");
		m.restarts = ev->restarts;
		m.resumes = ev->resumes;
		m.resent_bytes = ev->resent_bytes;
		e.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION;
		e.migration = &m;
	} else {
		p.pass = ev->pass;
		e.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
		e.migration_pass = &p;
	}
	ret = rpc_pub_send(arg, &e);
	if (ret)
		log_warn("publish event: %s", strerror(-ret));
}

int main(int argc, char **argv)
{
	struct shm_region ram[SHM_MAX_REGIONS] = {0};
	struct options o = {0};
	struct shm_ctl ctl = {.fd = -1};
	struct rpc_client *vcpu = NULL;
	struct mig_pclink *link = NULL;
	struct mig_fdlink *fdlink = NULL;
	struct migrator_vm vm;
	struct rpc_server *server = NULL;
	struct rpc_pub *pub = NULL;
	struct mig_session *s = NULL;
	struct mig_tls *tls = NULL;
	struct mig_env env = {0};
	struct mig_info info;
	sigset_t sigs;
	int ret, sig, status = 1;

	env.process_start_ns = mig_now_ns(); /* before anything: resume time of a takeover */
	log_init("cleave-migrator");
	log_set_thread("main");
	/* Undumpable before RAM and the control segment are opened. */
	if (sandbox_undumpable())
		return 1;
	if (parse_args(argc, argv, &o))
		return 2;
	/*
	 * A unix: listener's socket is then its group's too: the migrator of
	 * another VM (another user, with --uid-base) connects to it through
	 * the group of a shared --migrate-socket-dir.  Snapshots are 0600.
	 */
	umask(007);
	log_set_verbose(o.verbose);
	/*
	 * glibc reserves 64 MiB of address space per malloc arena, up to 8 per
	 * CPU, and the channel threads would each get one on a large host:
	 * 8 keep the reservation inside the sandbox's RLIMIT_AS
	 * (SANDBOX_MIGRATOR_AS_MAX) whatever the host's CPU count.
	 */
	if (!mallopt(M_ARENA_MAX, 8))
		log_warn("mallopt(M_ARENA_MAX): refused");
	/* Signals are taken by sigwait in main only; every thread inherits the mask. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	/* Credentials are read now, while the jail still shows them (docs/SECURITY.md). */
	if (o.tls.x509_dir || o.tls.psk_file) {
		char err[512] = "";

		ret = mig_tls_load(&tls, &o.tls, err, sizeof(err));
		if (ret) {
			log_err("TLS credentials: %s", err[0] ? err : strerror(-ret));
			goto out;
		}
		log_info("migrations use mutual TLS (%s)", mig_tls_kind(tls));
	}
	if (o.snapshot_dir && snapshot_dir_open(o.snapshot_dir))
		goto out;
	for (unsigned int i = 0; i < o.nr_tls_more; i++) {
		struct mig_tls *t = NULL;

		if (tls_more_load(&t, o.tls_more[i]))
			goto out;
		env.tls_more[env.nr_tls_more++] = t;
	}
	ret = shm_ctl_open(&ctl, o.ctl_fd);
	if (ret) {
		log_err("control segment fd %d: %s", o.ctl_fd, strerror(-ret));
		goto out;
	}
	if (o.nr_ram_fds != ctl.hdr->nr_regions) {
		log_err("--ram-fds has %u fds, the control segment %u regions", o.nr_ram_fds,
			ctl.hdr->nr_regions);
		goto out;
	}
	/*
	 * Guest RAM is never mapped here: the source splices and preads it,
	 * the destination pwrites it (send.c, recv.c), so no bug of this
	 * process can read or scribble on it through a pointer.
	 */
	for (unsigned int i = 0; i < o.nr_ram_fds; i++) {
		ret = shm_region_open(&ram[i], o.ram_fds[i], ctl.hdr->regions[i].size, PROT_NONE);
		if (ret) {
			log_err("RAM region %u fd %d: %s", i, o.ram_fds[i], strerror(-ret));
			goto out;
		}
	}
	ret = rpc_client_open(&vcpu, o.vcpu_rpc);
	if (ret) {
		log_err("vcpu-proc RPC %s: %s", o.vcpu_rpc, strerror(-ret));
		goto out;
	}
	/* A destination takes postcopy only with cleave-vcpu's end of this link. */
	if (o.postcopy_link_fd >= 0) {
		ret = mig_pclink_open(&link, o.postcopy_link_fd, MIG_DEFAULT_IO_TIMEOUT_MS);
		if (ret) {
			log_err("postcopy link fd %d: %s", o.postcopy_link_fd, strerror(-ret));
			goto out;
		}
	}
	ret = rpc_pub_open(&pub, o.events, "migrator");
	if (ret) {
		log_err("events %s: %s", o.events, strerror(-ret));
		goto out;
	}
	/*
	 * RAM opened, the control segment mapped, credentials loaded, NNG started
	 * (its threads are named from outside, through /proc, which the filter
	 * refuses), nothing read yet: the policy goes in now, before anything
	 * untrusted arrives (the recorded session a takeover resumes, the
	 * network, RPC callers).
	 */
	if (sandbox_enter(SANDBOX_MIGRATOR))
		goto out;
	env.ctl = &ctl;
	env.ram = ram;
	vm.rpc = vcpu;
	vm.link = link;
	env.ops = link ? &migrator_vm_ops_postcopy : &migrator_vm_ops;
	env.ops_arg = &vm;
	env.event = publish_event;
	env.event_arg = pub;
	env.tls = tls;
	env.insecure_plaintext = o.insecure_plaintext;
	env.snapshot_dir = o.snapshot_dir;
	env.snapshot_dirfd = o.snapshot_dir ? SANDBOX_MIGRATOR_SNAPSHOT_DIRFD : -1;
#ifdef CLEAVE_FAULT_INJECTION
	mig_hooks_from_env(&env.hooks); /* test builds only (test-hooks.h) */
#endif
	ret = mig_session_alloc(&s, &env);
	if (ret) {
		log_err("session: %s", strerror(-ret));
		goto out;
	}
	/*
	 * A restart: the session in the control segment continues (its own
	 * listener, if incoming).  Listening before the RPC server answers: a
	 * peer may connect as soon as we are up.
	 */
	ret = mig_session_resume(s);
	if (ret < 0) {
		log_err("taking over the recorded migration: %s", strerror(-ret));
		goto out;
	}
	mig_session_query(s, &info);
	/* --incoming is for the first start only: a recorded session already used it. */
	if (!ret && o.incoming && info.role == MIG_ROLE_NONE) {
		ret = mig_session_incoming(s, o.incoming);
		if (ret) {
			log_err("--incoming %s: %s", o.incoming, strerror(-ret));
			goto out;
		}
		log_info("waiting for an incoming migration on %s", o.incoming);
	}
	/* cleave-monitor's end hands over the sockets of fd: URIs (QMP getfd). */
	if (o.fd_link_fd >= 0) {
		ret = mig_fdlink_start(&fdlink, o.fd_link_fd, s);
		if (ret) {
			log_err("fd link fd %d: %s", o.fd_link_fd, strerror(-ret));
			goto out;
		}
	}
	ret = migrator_server_start(&server, o.rpc, s);
	if (ret) {
		log_err("RPC server %s: %s", o.rpc, strerror(-ret));
		goto out;
	}

	sig = 0;
	while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
		;
	log_debug("signal %d: exiting", sig);
	status = 0;
	/*
	 * SIGTERM is how an operator upgrades or moves the migrator as well as
	 * how the launcher ends the VM: an unfinished migration is left in its
	 * record to the next migrator, exactly as a SIGKILL leaves it, instead
	 * of being cancelled (or, after a commit, waited for) by the free.
	 */
	rpc_server_stop(server);
	server = NULL;
	if (mig_session_hand_over(s)) {
		log_info("exiting with the migration unfinished: the next migrator takes it over");
		fflush(NULL);
		_exit(0);
	}
out:
	/* Server first: no handler may run on a session being freed. */
	rpc_server_stop(server);
	mig_fdlink_stop(fdlink);
	mig_session_free(s);
	rpc_pub_close(pub);
	rpc_client_close(vcpu);
	mig_pclink_close(link);
	mig_tls_free(tls);
	for (unsigned int i = 0; i < env.nr_tls_more; i++)
		mig_tls_free((struct mig_tls *)env.tls_more[i]);
	for (unsigned int i = 0; i < SHM_MAX_REGIONS; i++)
		shm_region_close(&ram[i]);
	shm_ctl_close(&ctl);
	return status;
}
