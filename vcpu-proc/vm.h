/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The VM owned by cleave-vcpu: KVM fds, memory regions, vCPU threads, run
 * state, devices.  One struct vm per process, created by main and passed by
 * pointer.  docs/LOCKING.md gives the lock order; fields say what guards them.
 *
 * Threads: main (lifecycle, guest-requested resets), "rpc" (every control
 * request, one at a time), "vcpu/N" (KVM_RUN loops), "throttle" (while
 * throttling).  Control operations (pause, resume, reset, state save/load,
 * dirty log) are serialised by vm->ctrl_lock.
 *
 * Lifetime: vm_init -> vm_vcpus_start -> (vm_boot | incoming) -> ... ->
 * vm_vcpus_stop -> vm_fini.  vm_vcpus_stop returns once every vCPU thread is
 * joined; vm_fini asserts that.
 */
#ifndef CLEAVE_VCPU_VM_H
#define CLEAVE_VCPU_VM_H

#include <linux/kvm.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "proto/rpc.h"
#include "proto/vcpu.pb-c.h"
#include "shm/shm.h"
#include "vcpu-proc/ratelimit.h"
#include "vcpu-proc/region.h"
#include "vcpu-proc/serial.h"

/* Exit status of cleave-vcpu on a VMM-side failure (docs/PROCESSES.md). */
#define VM_EXIT_FAILURE 126

/*
 * Log lines a guest can cause (ucalls, bad ucalls, unassigned ports, guest
 * resets): this many a second after a burst of twice as many, by default
 * (--guest-log-rate; 0 lifts the limit).
 */
#define VM_GUEST_LOG_RATE 10

/* Same numbers as Cleave__Vcpu__RunState. */
enum vm_run_state {
	VM_PRELAUNCH = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PRELAUNCH,
	VM_RUNNING = CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING,
	VM_PAUSED = CLEAVE__VCPU__RUN_STATE__RUN_STATE_PAUSED,
	VM_SHUTDOWN = CLEAVE__VCPU__RUN_STATE__RUN_STATE_SHUTDOWN,
	VM_INTERNAL_ERROR = CLEAVE__VCPU__RUN_STATE__RUN_STATE_INTERNAL_ERROR,
	VM_INMIGRATE = CLEAVE__VCPU__RUN_STATE__RUN_STATE_INMIGRATE,
	VM_FINISH_MIGRATE = CLEAVE__VCPU__RUN_STATE__RUN_STATE_FINISH_MIGRATE,
	VM_POSTMIGRATE = CLEAVE__VCPU__RUN_STATE__RUN_STATE_POSTMIGRATE,
};

/* Why main should end the process. */
enum vm_exit_reason {
	VM_EXIT_NONE,
	VM_EXIT_POWEROFF, /* guest isa-debug-exit */
	VM_EXIT_QUIT,	  /* QUIT request */
	VM_EXIT_ERROR,	  /* internal error, KVM failure */
	VM_EXIT_SIGNAL,	  /* SIGTERM/SIGINT */
};

struct vm;

struct vcpu {
	struct vm *vm;
	unsigned int index;  /* == KVM vCPU id == APIC id; immutable */
	int fd;		     /* KVM vCPU fd */
	struct kvm_run *run; /* mmap of fd; immediate_exit written by kickers (atomic) */
	pthread_t thread;
	bool thread_started;  /* protected by vm->lock */
	pid_t tid;	      /* host TID, set by the thread before it parks (atomic) */
	bool parked;	      /* out of KVM_RUN, waiting on vm->cond; protected by vm->lock */
	bool exited;	      /* thread left its loop; protected by vm->lock */
	bool hold;	      /* stay parked until main clears it; protected by vm->lock */
	bool ran;	      /* has entered KVM_RUN since load/reset; protected by vm->lock */
	bool need_completion; /* last exit needs a KVM_RUN to complete; vCPU thread only */
	int throttle_pending; /* a throttle tick to serve (atomic) */
	Cleave__Vcpu__VcpuState reset_state; /* state at creation, for RESET; immutable */
	bool have_reset_state;
};

struct vm {
	bool alive;   /* from vm_init's first steps until vm_fini; main thread only */
	int kvm_fd;   /* /dev/kvm */
	int vm_fd;    /* KVM_CREATE_VM */
	int run_size; /* KVM_GET_VCPU_MMAP_SIZE */
	unsigned int max_vcpus;
	struct shm_ctl ctl;			/* mapped control segment */
	struct shm_region ram[SHM_MAX_REGIONS]; /* mapped RAM memfds */
	unsigned int nr_ram;
	struct region_table regions;		/* one region per RAM memfd */
	uint64_t *harvest_map[SHM_MAX_REGIONS]; /* scratch dirty bitmaps; ctrl_lock */
	struct serial serial;			/* COM1 */
	struct ratelimit guest_log;		/* lines a guest causes; its own lock */
	struct kvm_cpuid2 *cpuid;		/* template, per-vCPU ids patched */
	struct rpc_pub *pub;			/* events; NULL when not publishing */
	/*
	 * Postcopy's page faults (fault.h); NULL without.  Set by main before
	 * the RPC service starts, cleared under ctrl_lock before it stops.
	 */
	struct fault_service *faults;

	const uint8_t *image; /* guest ELF, owned; read once at start */
	size_t image_size;
	const char *cmdline; /* not owned (argv) */

	unsigned int nr_vcpus;
	struct vcpu *vcpus; /* [nr_vcpus] */

	/* Serialises control operations (rpc thread vs main's resets). */
	pthread_mutex_t ctrl_lock;
	/*
	 * Protects state, resume_state, state_loaded, exit_*, reset_requested,
	 * dirty_log, throttle_percent, throttle_running and every vcpu's
	 * parked/exited/hold/ran/thread_started.  Innermost lock but serial's.
	 */
	pthread_mutex_t lock;
	pthread_cond_t cond; /* broadcast on any change of what lock protects */
	enum vm_run_state state;
	enum vm_run_state resume_state; /* what a saved state returns to */
	bool quit;			/* vCPU threads must leave their loops */
	bool state_loaded;		/* LOAD_STATE done (incoming) */
	enum vm_exit_reason exit_reason;
	int exit_status;
	int guest_exit_code;  /* isa-debug-exit value once state is SHUTDOWN */
	bool reset_requested; /* a vCPU asked main for a guest reset */
	bool dirty_log;
	unsigned int throttle_percent;
	bool throttle_running;
	pthread_t throttle_thread;
	int mmio_warned; /* unassigned MMIO logged once (atomic) */
	/*
	 * The last run state published (RunStateChanged), so each change is
	 * published once and in order: protected by announce_lock, taken
	 * outside lock (vm_state_announce()).
	 */
	pthread_mutex_t announce_lock;
	enum vm_run_state announced;
	uint64_t announced_seq; /* its event's seq; protected by announce_lock */
};

struct vm_config {
	int ctl_fd;
	int ram_fds[SHM_MAX_REGIONS];
	unsigned int nr_ram_fds;
	int guest_fd;
	unsigned int nr_vcpus;
	const char *cmdline;
	int serial_fd;
	unsigned int guest_log_rate; /* lines a second a guest may cause; 0: no limit */
};

/*
 * vm.c: VM, memory and devices.  vm_init() leaves a partly built VM for
 * vm_fini() on failure; vm_fini() is safe to call twice and asserts that
 * every vCPU thread was joined (vm_vcpus_stop).
 */
int vm_init(struct vm *vm, const struct vm_config *cfg);
void vm_fini(struct vm *vm);
/* Loads the guest image and points the BSP at its entry (vCPUs parked). */
int vm_load_guest(struct vm *vm);
/* KVM_GET_CLOCK */
int vm_clock_now(struct vm *vm, uint64_t *ns);
void vm_request_exit(struct vm *vm, enum vm_exit_reason why, int status);
/* Blocks until an exit is requested; serves guest resets meanwhile. */
enum vm_exit_reason vm_wait(struct vm *vm, int *status);
void vm_publish(struct vm *vm, Cleave__Events__Event *ev);
/* Async-signal-safe: makes vm_wait() return VM_EXIT_SIGNAL. */
void vm_note_signal(void);
/* (Re)registers @r's memslot with r->flags; caller holds @r exclusive. */
int vm_memslot_set(struct vm *vm, struct region *r);

/* cpuid.c */
int vm_cpuid_init(struct vm *vm);
int vcpu_cpuid_set(struct vcpu *v);

/* vcpu.c: threads and run control. */
int vm_vcpus_start(struct vm *vm);
void vm_vcpus_stop(struct vm *vm);
/* Parks every vCPU and sets @target (PAUSED, FINISH_MIGRATE, POSTMIGRATE). */
int vm_pause(struct vm *vm, enum vm_run_state target);
int vm_resume(struct vm *vm);
/* Sets the run state (vCPUs run only in VM_RUNNING); wakes the threads. */
void vm_set_state(struct vm *vm, enum vm_run_state st);
/*
 * Publishes the run state (RunStateChanged) if it changed since the last
 * time: called after every change, outside vm->lock, before the STOP,
 * RESUME or SHUTDOWN event that goes with it.
 */
void vm_state_announce(struct vm *vm);
enum vm_run_state vm_get_state(struct vm *vm);
int vm_throttle_set(struct vm *vm, unsigned int percent);
/* Guest or host reset: vCPUs back to their creation state, image reloaded. */
int vm_reset(struct vm *vm, bool guest);

/* dirty.c */
int vm_dirty_log_set(struct vm *vm, bool enable);
int vm_dirty_harvest(struct vm *vm, uint64_t *newly_dirty);
/* Marks [gpa, gpa + len) dirty in the shm bitmaps (host writes to guest RAM). */
void vm_dirty_mark(struct vm *vm, uint64_t gpa, uint64_t len);

/* snapshot.c: vCPU + clock state (VM must be paused / never run). */
int vm_state_save(struct vm *vm, uint8_t **buf, size_t *len);
int vm_state_load(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen);

/*
 * service.c: RPC methods of vcpu.proto, one listener per caller class; a
 * NULL url has no listener.  Each class may call only the methods it needs
 * (docs/SECURITY.md, "Who can reach which socket").
 */
struct vm_service_urls {
	const char *migrator; /* the migrator, and the launcher ending its migration */
	const char *monitor;  /* QMP's run-state commands */
	const char *any;      /* every method: a cleave-vcpu run on its own (tests) */
};
int vm_service_start(struct vm *vm, const struct vm_service_urls *urls, struct rpc_server **out);

#endif
