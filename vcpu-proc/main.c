// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-vcpu: owns the KVM VM (docs/PROCESSES.md).  init -> run until the
 * guest powers off, QUIT arrives or something fails -> exit with the status
 * PROCESSES.md defines.
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log/log.h"
#include "vcpu-proc/fault.h"
#include "vcpu-proc/postcopy-link.h"
#include "sandbox/sandbox.h"
#include "vcpu-proc/vm.h"

#define EXIT_USAGE	    2
#define QUIT_REPLY_GRACE_US 300000 /* lets the QUIT reply leave before the process exits */

/* The RPC server at exit, kept reachable for leak checkers; see the end of main. */
static struct rpc_server *exit_server;

/*
 * LeakSanitizer hook (used only in sanitizer builds).  At exit the RPC and
 * event threads are not joined (see the end of main), so an NNG statistics
 * snapshot one of them holds at that instant is reported although
 * rpc_endpoint_check() frees it when it returns.  Nothing else is hidden.
 */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
	return "leak:nng_stats_get\n";
}

struct options {
	struct vm_config vm;
	struct vm_service_urls rpc; /* at least one */
	const char *events_url;
	const char *name;
	bool incoming;
	int postcopy_link_fd; /* -1: none (only a VM that waits for a migration has one) */
	/* /dev/userfaultfd opened by cleave run (-1: opened here, if this user may). */
	int uffd_dev_fd;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: cleave-vcpu --ctl-fd N --ram-fds A[,B...] --guest-fd G --vcpus N\n"
		"                   [--append STR] [--serial-fd F] [--name NAME]\n"
		"                   --events URL [--incoming [--postcopy-link-fd N\n"
		"                   [--userfaultfd-dev-fd N]]] [-v]\n"
		"                   [--rpc-migrator URL] [--rpc-monitor URL]  one listener per "
		"caller,\n"
		"                       each with only that caller's methods (docs/SECURITY.md)\n"
		"                   [--rpc URL]  a listener for every method (a cleave-vcpu run "
		"alone)\n"
		"                   [--guest-log-rate N]  guest-caused log lines a second "
		"(default %u, bursts of twice as many; 0: no limit)\n",
		VM_GUEST_LOG_RATE);
}

static int parse_uint(const char *s, unsigned int max, unsigned int *out)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > max)
		return -EINVAL;
	*out = (unsigned int)v;
	return 0;
}

static int parse_fds(const char *s, struct vm_config *cfg)
{
	char *copy = strdup(s), *save = NULL, *tok;
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		unsigned int fd;

		if (cfg->nr_ram_fds == SHM_MAX_REGIONS || parse_uint(tok, 1 << 20, &fd))
			ret = -EINVAL;
		else
			cfg->ram_fds[cfg->nr_ram_fds++] = (int)fd;
	}
	free(copy);
	return ret || cfg->nr_ram_fds == 0 ? -EINVAL : 0;
}

static int parse_args(int argc, char **argv, struct options *o)
{
	static const struct option longopts[] = {
		{"ctl-fd", required_argument, NULL, 'c'},
		{"ram-fds", required_argument, NULL, 'r'},
		{"guest-fd", required_argument, NULL, 'g'},
		{"vcpus", required_argument, NULL, 'n'},
		{"append", required_argument, NULL, 'a'},
		{"serial-fd", required_argument, NULL, 's'},
		{"name", required_argument, NULL, 'N'},
		{"rpc", required_argument, NULL, 'R'},
		{"rpc-migrator", required_argument, NULL, 'M'},
		{"rpc-monitor", required_argument, NULL, 'O'},
		{"events", required_argument, NULL, 'E'},
		{"incoming", no_argument, NULL, 'i'},
		{"postcopy-link-fd", required_argument, NULL, 'P'},
		{"userfaultfd-dev-fd", required_argument, NULL, 'U'},
		{"guest-log-rate", required_argument, NULL, 'L'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	unsigned int v;
	int c;

	memset(o, 0, sizeof(*o));
	o->vm.ctl_fd = o->vm.guest_fd = -1;
	o->vm.serial_fd = STDOUT_FILENO;
	o->vm.nr_vcpus = 1;
	o->vm.cmdline = "";
	o->vm.guest_log_rate = VM_GUEST_LOG_RATE;
	o->postcopy_link_fd = o->uffd_dev_fd = -1;
	while ((c = getopt_long(argc, argv, "vh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
		case 'g':
		case 's':
			if (parse_uint(optarg, 1 << 20, &v)) {
				log_err("bad fd number '%s'", optarg);
				return -EINVAL;
			}
			*(c == 'c'   ? &o->vm.ctl_fd
			  : c == 'g' ? &o->vm.guest_fd
				     : &o->vm.serial_fd) = (int)v;
			break;
		case 'r':
			if (parse_fds(optarg, &o->vm)) {
				log_err("bad --ram-fds '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'n':
			if (parse_uint(optarg, 4096, &o->vm.nr_vcpus) || o->vm.nr_vcpus == 0) {
				log_err("bad --vcpus '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'a':
			o->vm.cmdline = optarg;
			break;
		case 'N':
			o->name = optarg;
			break;
		case 'R':
			o->rpc.any = optarg;
			break;
		case 'M':
			o->rpc.migrator = optarg;
			break;
		case 'O':
			o->rpc.monitor = optarg;
			break;
		case 'E':
			o->events_url = optarg;
			break;
		case 'i':
			o->incoming = true;
			break;
		case 'P':
		case 'U':
			if (parse_uint(optarg, 1 << 20, &v)) {
				log_err("bad fd number '%s'", optarg);
				return -EINVAL;
			}
			*(c == 'P' ? &o->postcopy_link_fd : &o->uffd_dev_fd) = (int)v;
			break;
		case 'L':
			if (parse_uint(optarg, 1000000, &o->vm.guest_log_rate)) {
				log_err("bad --guest-log-rate '%s'", optarg);
				return -EINVAL;
			}
			break;
		case 'v':
			log_set_verbose(true);
			break;
		default:
			return -EINVAL;
		}
	}
	if (optind != argc || o->vm.ctl_fd < 0 || o->vm.guest_fd < 0 || !o->vm.nr_ram_fds ||
	    !(o->rpc.any || o->rpc.migrator || o->rpc.monitor) || !o->events_url ||
	    (o->postcopy_link_fd >= 0 && !o->incoming) ||
	    (o->uffd_dev_fd >= 0 && o->postcopy_link_fd < 0)) {
		log_err("missing or extra arguments");
		return -EINVAL;
	}
	return 0;
}

static void on_signal(int sig)
{
	(void)sig;
	vm_note_signal();
}

/*
 * The vCPU threads, parked with their tids known, are the threads whose
 * faults count for the postcopy blocktime; the RPC service reads it.
 */
static void vcpus_to_faults(struct vm *vm, struct fault_service *faults)
{
	pid_t *tids = calloc(vm->nr_vcpus, sizeof(*tids));

	if (tids) {
		for (unsigned int i = 0; i < vm->nr_vcpus; i++)
			tids[i] = __atomic_load_n(&vm->vcpus[i].tid, __ATOMIC_ACQUIRE);
	}
	if (!tids || fault_service_set_vcpus(faults, tids, vm->nr_vcpus))
		log_warn("postcopy blocktime not measured: out of memory");
	free(tids);
	vm->faults = faults;
}

/* The RPC service outlives the fault service: it stops reading it first. */
static void faults_stop(struct vm *vm, struct fault_service *faults)
{
	pthread_mutex_lock(&vm->ctrl_lock);
	vm->faults = NULL;
	pthread_mutex_unlock(&vm->ctrl_lock);
	fault_service_stop(faults);
}

static void publish_shutdown(struct vm *vm, enum vm_exit_reason why)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Shutdown sd = CLEAVE__EVENTS__SHUTDOWN__INIT;

	if (why != VM_EXIT_QUIT && why != VM_EXIT_SIGNAL)
		return; /* guest shutdowns were published by the vCPU */
	sd.guest = false;
	sd.reason = why == VM_EXIT_QUIT ? "host-qmp-quit" : "host-signal";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN;
	ev.shutdown = &sd;
	vm_publish(vm, &ev);
}

int main(int argc, char **argv)
{
	struct sigaction sa = {.sa_handler = on_signal};
	struct rpc_server *server = NULL;
	struct fault_service *faults = NULL;
	struct pclink_server *pclink = NULL;
	enum vm_exit_reason why;
	struct options opt;
	static struct vm vm; /* outlives main: see its end */
	int status = VM_EXIT_FAILURE, ret;

	log_init("cleave-vcpu");
	/* Guest RAM is mapped before sandbox_enter(): hidden from siblings from the start. */
	if (sandbox_undumpable())
		return VM_EXIT_FAILURE;
	if (parse_args(argc, argv, &opt)) {
		usage();
		return EXIT_USAGE;
	}
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN); /* a closed serial reader is an EPIPE, not death */

	ret = vm_init(&vm, &opt.vm);
	if (ret)
		goto out_fini;
	/*
	 * NNG starts here, before the policy: it names its threads through
	 * /proc.  The publisher takes no input (subscribers send none).
	 */
	ret = rpc_pub_open(&vm.pub, opt.events_url, "vcpu");
	if (ret) {
		log_err("events %s: %s", opt.events_url, strerror(-ret));
		goto out_fini;
	}
	/*
	 * Postcopy (docs/MIGRATION.md, "Postcopy"): the fault service opens its
	 * userfaultfd now, which the policy refuses later; its thread reads
	 * only the kernel's fault events.  Without one, the link is not
	 * served and a postcopy switch fails (the source's guest runs on).
	 */
	if (opt.postcopy_link_fd >= 0 &&
	    fault_service_start_dev(&faults, &vm.regions, NULL, opt.uffd_dev_fd))
		log_warn("postcopy unavailable: no userfaultfd for guest RAM");
	/* The device made the one userfaultfd this process needs: no more from it. */
	if (opt.uffd_dev_fd >= 0)
		close(opt.uffd_dev_fd);
	/*
	 * Every device and memfd is open: from here on, the policy.  Before
	 * the first guest instruction and before the first RPC byte.
	 */
	ret = sandbox_enter(SANDBOX_VCPU);
	if (ret)
		goto out_vcpus;
	/* The link's first byte is read under the policy. */
	if (faults) {
		ret = pclink_server_start(&pclink, opt.postcopy_link_fd, &vm.regions, &vm.ctl,
					  faults);
		if (ret) {
			log_err("postcopy link: %s", strerror(-ret));
			goto out_vcpus;
		}
	}
	ret = vm_vcpus_start(&vm);
	if (ret)
		goto out_vcpus;
	if (faults)
		vcpus_to_faults(&vm, faults);
	/* The state is final before the first request can read it. */
	if (opt.incoming) {
		vm_set_state(&vm, VM_INMIGRATE);
	} else {
		ret = vm_load_guest(&vm);
		if (ret)
			goto out_vcpus;
		vm_set_state(&vm, VM_RUNNING);
	}
	ret = vm_service_start(&vm, &opt.rpc, &server);
	if (ret) {
		log_err("rpc: %s", strerror(-ret));
		goto out_vcpus;
	}
	log_info("%s: %u vCPUs %s", opt.name ? opt.name : "vm", vm.nr_vcpus,
		 opt.incoming ? "waiting for incoming state" : "running");

	why = vm_wait(&vm, &status);
	publish_shutdown(&vm, why);
	vm_vcpus_stop(&vm);
	/* No vCPU runs any more: whatever is still registered may go. */
	pclink_server_stop(pclink, true);
	faults_stop(&vm, faults);
	/* NNG has no flush: give the QUIT reply (and the event) time to leave. */
	if (why == VM_EXIT_QUIT)
		usleep(QUIT_REPLY_GRACE_US);
	/*
	 * The guest is stopped and its output flushed.  The RPC server and the
	 * publisher are left for process exit to reclaim: closing a listening
	 * NNG socket that has peers can panic inside NNG's own threads
	 * (nanomsg/nng#2110; here about one exit in forty), turning a clean exit
	 * into SIGABRT.  vm is static, so a request still being served while
	 * the process exits only ever sees a live (stopped) VM.
	 */
	exit_server = server;
	return status;

out_vcpus:
	vm_vcpus_stop(&vm);
	pclink_server_stop(pclink, true);
	faults_stop(&vm, faults);
	rpc_pub_close(vm.pub);
	vm.pub = NULL;
out_fini:
	vm_fini(&vm);
	if (ret)
		status = VM_EXIT_FAILURE;
	return status;
}
