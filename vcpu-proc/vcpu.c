// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPU threads and run control.  A vCPU runs only while vm->state is
 * VM_RUNNING and it is not held; otherwise it parks on vm->cond.  Kickers
 * set kvm_run->immediate_exit and send VCPU_KICK_SIGNAL: a thread inside
 * KVM_RUN leaves with EINTR, one about to enter returns at once.  Before
 * parking, a thread whose last exit KVM completes on re-entry (IO, MMIO)
 * re-enters once with immediate_exit set, so a parked vCPU's state is
 * consistent for save (Documentation/virt/kvm/api.rst, KVM_RUN).
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "guest/ucall.h"
#include "log/log.h"
#include "vcpu-proc/clock.h"
#include "vcpu-proc/state.h"
#include "vcpu-proc/ucall.h"
#include "vcpu-proc/vm.h"

#define VCPU_KICK_SIGNAL     SIGUSR1
#define VM_THROTTLE_SLICE_NS 10000000ull /* 10 ms */

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

static void vcpu_kick_locked(struct vcpu *v)
{
	/* Pairs with the read KVM does at KVM_RUN entry. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (v->thread_started && !v->exited && !v->parked)
		pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

static void vm_kick_all_locked(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		vcpu_kick_locked(&vm->vcpus[i]);
}

static bool vm_all_parked_locked(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		if (v->thread_started && !v->exited && !v->parked)
			return false;
	}
	return true;
}

static void vm_wait_parked_locked(struct vm *vm)
{
	while (!vm_all_parked_locked(vm))
		pthread_cond_wait(&vm->cond, &vm->lock);
}

/* Stops the guest in @st (SHUTDOWN, INTERNAL_ERROR) without waiting. */
static void vm_stop_locked(struct vm *vm, enum vm_run_state st)
{
	vm->state = st;
	vm_kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
}

void vm_set_state(struct vm *vm, enum vm_run_state st)
{
	pthread_mutex_lock(&vm->lock);
	vm->state = st;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	vm_state_announce(vm);
}

void vm_state_announce(struct vm *vm)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__RunStateChanged rs = CLEAVE__EVENTS__RUN_STATE_CHANGED__INIT;

	/* One announcer at a time, so two changes are never published out of order. */
	pthread_mutex_lock(&vm->announce_lock);
	pthread_mutex_lock(&vm->lock);
	rs.state = (uint32_t)vm->state;
	pthread_mutex_unlock(&vm->lock);
	if (rs.state != (uint32_t)vm->announced) {
		vm->announced = (enum vm_run_state)rs.state;
		ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RUN_STATE_CHANGED;
		ev.run_state_changed = &rs;
		vm_publish(vm, &ev);
		vm->announced_seq = ev.seq; /* set by the publisher, dropped or not */
	}
	pthread_mutex_unlock(&vm->announce_lock);
}

enum vm_run_state vm_get_state(struct vm *vm)
{
	enum vm_run_state st;

	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	pthread_mutex_unlock(&vm->lock);
	return st;
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
	struct vm *vm = v->vm;

	log_err("vcpu %u: %s; internal error", v->index, what);
	pthread_mutex_lock(&vm->lock);
	v->hold = true;
	vm_stop_locked(vm, VM_INTERNAL_ERROR);
	pthread_mutex_unlock(&vm->lock);
	vm_state_announce(vm);
	vm_request_exit(vm, VM_EXIT_ERROR, VM_EXIT_FAILURE);
}

/* Completes a pending IO/MMIO exit without running guest code. */
static void vcpu_complete(struct vcpu *v)
{
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	if (ioctl(v->fd, KVM_RUN, 0) == 0 || (errno != EINTR && errno != EAGAIN))
		log_warn("vcpu %u: completing the last exit: unexpected %s", v->index,
			 strerror(errno));
	v->need_completion = false;
}

/* Returns false when the thread must exit. */
static bool vcpu_park(struct vcpu *v)
{
	struct vm *vm = v->vm;

	pthread_mutex_lock(&vm->lock);
	while (!vm->quit && (vm->state != VM_RUNNING || v->hold)) {
		if (v->need_completion) {
			pthread_mutex_unlock(&vm->lock);
			vcpu_complete(v);
			pthread_mutex_lock(&vm->lock);
			continue;
		}
		if (!v->parked) {
			v->parked = true;
			pthread_cond_broadcast(&vm->cond);
		}
		pthread_cond_wait(&vm->cond, &vm->lock);
	}
	v->parked = false;
	if (vm->quit) {
		v->exited = true;
		pthread_cond_broadcast(&vm->cond);
		pthread_mutex_unlock(&vm->lock);
		return false;
	}
	/* Under the lock: a pause sets state before kicking, so no kick is lost. */
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	v->ran = true;
	pthread_mutex_unlock(&vm->lock);
	return true;
}

static void vcpu_throttle(struct vcpu *v)
{
	unsigned int pct;
	struct timespec ts;
	uint64_t ns;

	if (!__atomic_exchange_n(&v->throttle_pending, 0, __ATOMIC_ACQ_REL))
		return;
	pct = __atomic_load_n(&v->vm->throttle_percent, __ATOMIC_RELAXED);
	ns = VM_THROTTLE_SLICE_NS * pct / 100;
	ts.tv_sec = (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	while (ns && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static void vcpu_poweroff(struct vcpu *v, uint32_t code)
{
	struct vm *vm = v->vm;
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Shutdown sd = CLEAVE__EVENTS__SHUTDOWN__INIT;
	int status = code > 125 ? 125 : (int)code;

	log_info("guest poweroff: isa-debug-exit code %u", code);
	pthread_mutex_lock(&vm->lock);
	vm->guest_exit_code = (int)code;
	v->hold = true;
	vm_stop_locked(vm, VM_SHUTDOWN);
	pthread_mutex_unlock(&vm->lock);
	vm_state_announce(vm);
	serial_flush(&vm->serial);
	sd.guest = true;
	sd.reason = "guest-shutdown";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_SHUTDOWN;
	ev.shutdown = &sd;
	vm_publish(vm, &ev);
	vm_request_exit(vm, VM_EXIT_POWEROFF, status);
}

/* Triple fault or guest reset request: main resets the VM (vm_wait). */
static void vcpu_request_reset(struct vcpu *v, const char *why)
{
	struct vm *vm = v->vm;

	ratelimit_log(&vm->guest_log, LOG_WARN, "vcpu %u: %s: resetting the guest", v->index, why);
	pthread_mutex_lock(&vm->lock);
	v->hold = true;
	vm->reset_requested = true;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
}

static void vcpu_ucall(struct vcpu *v, uint32_t gpa)
{
	struct ucall uc;
	char line[512];
	int ret;

	/* A guest can make these as fast as it can exit: at most guest_log's rate. */
	ret = vcpu_ucall_read(&v->vm->regions, gpa, &uc);
	if (ret) {
		ratelimit_log(&v->vm->guest_log, LOG_WARN, "vcpu %u: ucall at gpa 0x%x: %s",
			      v->index, gpa,
			      ret == -EFAULT ? "not in guest RAM" : "unknown command");
		return;
	}
	vcpu_ucall_format(&uc, v->index, line, sizeof(line));
	ratelimit_log(&v->vm->guest_log, uc.cmd == UCALL_ASSERT ? LOG_ERR : LOG_INFO, "%s", line);
}

static uint32_t vcpu_io_value(const uint8_t *p, unsigned int size)
{
	uint32_t val = 0;

	memcpy(&val, p, size > 4 ? 4 : size);
	return val;
}

static void vcpu_io_one(struct vcpu *v, uint16_t port, bool out, unsigned int size, uint8_t *p)
{
	struct vm *vm = v->vm;

	if (port >= SERIAL_COM1_PORT && port < SERIAL_COM1_PORT + SERIAL_NR_PORTS) {
		for (unsigned int b = 0; b < size && port + b < SERIAL_COM1_PORT + SERIAL_NR_PORTS;
		     b++) {
			unsigned int off = port + b - SERIAL_COM1_PORT;

			if (out)
				serial_write(&vm->serial, off, p[b]);
			else
				p[b] = serial_read(&vm->serial, off);
		}
		return;
	}
	if (port == UCALL_PORT && out && size == 4) {
		vcpu_ucall(v, vcpu_io_value(p, size));
		return;
	}
	if (port == DEBUG_EXIT_PORT && out) {
		vcpu_poweroff(v, vcpu_io_value(p, size));
		return;
	}
	/* Unassigned port: reads float high, writes vanish (as on a PC). */
	if (!out)
		memset(p, 0xff, size);
	ratelimit_log(&vm->guest_log, LOG_DEBUG, "vcpu %u: unassigned port 0x%x %s size %u",
		      v->index, port, out ? "out" : "in", size);
}

static void vcpu_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;

	for (uint32_t i = 0; i < run->io.count; i++)
		vcpu_io_one(v, run->io.port, out, run->io.size, data + (size_t)i * run->io.size);
}

static void vcpu_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
	if (!__atomic_exchange_n(&v->vm->mmio_warned, 1, __ATOMIC_RELAXED))
		log_warn("vcpu %u: %s of %u bytes at unassigned gpa 0x%llx ignored (logged once)",
			 v->index, run->mmio.is_write ? "write" : "read", run->mmio.len,
			 (unsigned long long)run->mmio.phys_addr);
}

/* Registers and KVM's extra words, for internal errors. */
static void vcpu_dump(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	char words[160] = "";
	size_t off = 0;

	for (uint32_t i = 0; i < run->internal.ndata && i < 8 && off < sizeof(words); i++)
		off += (size_t)snprintf(words + off, sizeof(words) - off, " 0x%llx",
					(unsigned long long)run->internal.data[i]);
	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0)
		return;
	log_err("vcpu %u: rip 0x%llx rsp 0x%llx rflags 0x%llx cs 0x%x/%d cr0 0x%llx cr3 0x%llx "
		"cr4 0x%llx efer 0x%llx data:%s",
		v->index, (unsigned long long)regs.rip, (unsigned long long)regs.rsp,
		(unsigned long long)regs.rflags, sregs.cs.selector, sregs.cs.l,
		(unsigned long long)sregs.cr0, (unsigned long long)sregs.cr3,
		(unsigned long long)sregs.cr4, (unsigned long long)sregs.efer, words);
}

static void vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char what[128];

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		v->need_completion = true;
		vcpu_io(v);
		break;
	case KVM_EXIT_MMIO:
		v->need_completion = true;
		vcpu_mmio(v);
		break;
	case KVM_EXIT_HLT:
		/* Only without an in-kernel LAPIC; re-entering is harmless. */
		break;
	case KVM_EXIT_SHUTDOWN:
		vcpu_request_reset(v, "triple fault");
		break;
	case KVM_EXIT_SYSTEM_EVENT:
		if (run->system_event.type == KVM_SYSTEM_EVENT_SHUTDOWN) {
			vcpu_poweroff(v, 0);
		} else if (run->system_event.type == KVM_SYSTEM_EVENT_RESET) {
			vcpu_request_reset(v, "system reset event");
		} else {
			snprintf(what, sizeof(what), "system event %u", run->system_event.type);
			vcpu_fail(v, what);
		}
		break;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(what, sizeof(what), "KVM_EXIT_INTERNAL_ERROR suberror %u",
			 run->internal.suberror);
		vcpu_dump(v);
		vcpu_fail(v, what);
		break;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(what, sizeof(what), "KVM_EXIT_FAIL_ENTRY reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fail(v, what);
		break;
	default:
		snprintf(what, sizeof(what), "unexpected exit reason %u", run->exit_reason);
		vcpu_fail(v, what);
		break;
	}
}

static void *vcpu_thread_run(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	snprintf(name, sizeof(name), "vcpu/%u", v->index);
	log_set_thread(name);
	pthread_setname_np(pthread_self(), name);
	__atomic_store_n(&v->tid, gettid(), __ATOMIC_RELEASE);

	while (vcpu_park(v)) {
		vcpu_throttle(v);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* KVM completed any pending IO before returning. */
				v->need_completion = false;
				continue;
			}
			log_err("vcpu %u: KVM_RUN: %s", v->index, strerror(errno));
			vcpu_fail(v, "KVM_RUN failed");
			continue;
		}
		vcpu_handle_exit(v);
	}
	return NULL;
}

int vm_vcpus_start(struct vm *vm)
{
	/*
	 * SA_RESTART keeps other syscalls (log and serial writes) from failing
	 * with EINTR; KVM_RUN still returns EINTR, KVM does not restart it.
	 */
	struct sigaction sa = {.sa_handler = vcpu_kick_handler, .sa_flags = SA_RESTART};
	int ret;

	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return -errno;
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];

		pthread_mutex_lock(&vm->lock);
		ret = -pthread_create(&v->thread, NULL, vcpu_thread_run, v);
		v->thread_started = ret == 0;
		pthread_mutex_unlock(&vm->lock);
		if (ret) {
			log_err("vcpu %u: pthread_create: %s", i, strerror(-ret));
			return ret;
		}
	}
	/* The state is not RUNNING yet: every thread parks, with its tid known. */
	pthread_mutex_lock(&vm->lock);
	vm_wait_parked_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void vm_vcpus_stop(struct vm *vm)
{
	bool join_throttle;

	pthread_mutex_lock(&vm->lock);
	vm->quit = true;
	vm_kick_all_locked(vm);
	pthread_cond_broadcast(&vm->cond);
	join_throttle = vm->throttle_running;
	pthread_mutex_unlock(&vm->lock);
	if (join_throttle)
		pthread_join(vm->throttle_thread, NULL);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = &vm->vcpus[i];
		bool started;

		pthread_mutex_lock(&vm->lock);
		started = v->thread_started;
		pthread_mutex_unlock(&vm->lock);
		if (!started)
			continue;
		pthread_join(v->thread, NULL);
		pthread_mutex_lock(&vm->lock);
		v->thread_started = false;
		pthread_mutex_unlock(&vm->lock);
	}
	pthread_mutex_lock(&vm->lock);
	vm->throttle_running = false;
	pthread_mutex_unlock(&vm->lock);
	serial_end(&vm->serial);
	ratelimit_log_drain(&vm->guest_log);
}

static void vm_publish_simple(struct vm *vm, Cleave__Events__Event__BodyCase body)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Stop stop = CLEAVE__EVENTS__STOP__INIT;
	Cleave__Events__Resume resume = CLEAVE__EVENTS__RESUME__INIT;

	ev.body_case = body;
	if (body == CLEAVE__EVENTS__EVENT__BODY_STOP)
		ev.stop = &stop;
	else
		ev.resume = &resume;
	vm_publish(vm, &ev);
}

/* Caller holds ctrl_lock. */
static int vm_pause_ctrl(struct vm *vm, enum vm_run_state target, bool *stopped)
{
	int ret = 0;

	*stopped = false;
	pthread_mutex_lock(&vm->lock);
	switch (vm->state) {
	case VM_RUNNING:
		vm->resume_state = VM_RUNNING;
		vm->state = target;
		vm_kick_all_locked(vm);
		pthread_cond_broadcast(&vm->cond);
		*stopped = true;
		break;
	case VM_PAUSED:
	case VM_FINISH_MIGRATE:
	case VM_POSTMIGRATE:
		vm->state = target;
		break;
	case VM_PRELAUNCH:
	case VM_INMIGRATE:
		break; /* nothing runs yet */
	default:
		ret = -EINVAL;
		break;
	}
	vm_wait_parked_locked(vm);
	pthread_mutex_unlock(&vm->lock);
	return ret;
}

int vm_pause(struct vm *vm, enum vm_run_state target)
{
	bool stopped;
	int ret;

	if (target != VM_PAUSED && target != VM_FINISH_MIGRATE && target != VM_POSTMIGRATE)
		return -EINVAL;
	pthread_mutex_lock(&vm->ctrl_lock);
	ret = vm_pause_ctrl(vm, target, &stopped);
	pthread_mutex_unlock(&vm->ctrl_lock);
	vm_state_announce(vm);
	serial_flush(&vm->serial);
	if (stopped) {
		log_info("paused");
		vm_publish_simple(vm, CLEAVE__EVENTS__EVENT__BODY_STOP);
	}
	return ret;
}

/* Caller holds ctrl_lock; the vCPUs are parked. */
static int vm_resume_ctrl(struct vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	switch (vm->state) {
	case VM_RUNNING:
		pthread_mutex_unlock(&vm->lock);
		return 0;
	case VM_PAUSED:
	case VM_FINISH_MIGRATE:
	case VM_POSTMIGRATE:
		break;
	case VM_INMIGRATE:
		if (vm->state_loaded)
			break;
		/* fallthrough */
	default:
		pthread_mutex_unlock(&vm->lock);
		return -EINVAL;
	}
	pthread_mutex_unlock(&vm->lock);
	/* Invariant 3: the guest learns it was stopped (PVCLOCK_GUEST_STOPPED). */
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		int ret = vcpu_clock_notify_stopped(vm->vcpus[i].fd);

		if (ret)
			log_warn("vcpu %u: KVM_KVMCLOCK_CTRL: %s", i, strerror(-ret));
	}
	vm_set_state(vm, VM_RUNNING);
	return 1;
}

int vm_resume(struct vm *vm)
{
	int ret;

	pthread_mutex_lock(&vm->ctrl_lock);
	ret = vm_resume_ctrl(vm);
	pthread_mutex_unlock(&vm->ctrl_lock);
	if (ret == 1) {
		log_info("resumed");
		vm_publish_simple(vm, CLEAVE__EVENTS__EVENT__BODY_RESUME);
		ret = 0;
	}
	return ret;
}

static void *vm_throttle_run(void *arg)
{
	struct vm *vm = arg;

	log_set_thread("throttle");
	pthread_mutex_lock(&vm->lock);
	while (!vm->quit && vm->throttle_percent > 0) {
		struct timespec ts;

		if (vm->state == VM_RUNNING) {
			for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
				__atomic_store_n(&vm->vcpus[i].throttle_pending, 1,
						 __ATOMIC_RELEASE);
				vcpu_kick_locked(&vm->vcpus[i]);
			}
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)VM_THROTTLE_SLICE_NS;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int vm_throttle_set(struct vm *vm, unsigned int percent)
{
	bool join = false;
	int ret = 0;

	if (percent > 99)
		return -EINVAL;
	pthread_mutex_lock(&vm->ctrl_lock);
	pthread_mutex_lock(&vm->lock);
	__atomic_store_n(&vm->throttle_percent, percent, __ATOMIC_RELAXED);
	pthread_cond_broadcast(&vm->cond);
	if (percent > 0 && !vm->throttle_running && !vm->quit) {
		ret = -pthread_create(&vm->throttle_thread, NULL, vm_throttle_run, vm);
		vm->throttle_running = ret == 0;
	} else if (percent == 0 && vm->throttle_running) {
		join = true;
		vm->throttle_running = false;
	}
	pthread_mutex_unlock(&vm->lock);
	if (join)
		pthread_join(vm->throttle_thread, NULL);
	pthread_mutex_unlock(&vm->ctrl_lock);
	if (ret)
		log_err("throttle: pthread_create: %s", strerror(-ret));
	return ret;
}

int vm_reset(struct vm *vm, bool guest)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	Cleave__Events__Reset rs = CLEAVE__EVENTS__RESET__INIT;
	enum vm_run_state prev;
	int ret = 0;

	pthread_mutex_lock(&vm->ctrl_lock);
	pthread_mutex_lock(&vm->lock);
	prev = vm->state;
	if (prev == VM_INMIGRATE || prev == VM_SHUTDOWN || prev == VM_INTERNAL_ERROR) {
		pthread_mutex_unlock(&vm->lock);
		pthread_mutex_unlock(&vm->ctrl_lock);
		return -EBUSY;
	}
	if (prev == VM_RUNNING) {
		vm->state = VM_PAUSED;
		vm_kick_all_locked(vm);
	}
	vm_wait_parked_locked(vm);
	pthread_mutex_unlock(&vm->lock);

	for (unsigned int i = 0; i < vm->nr_vcpus && !ret; i++) {
		ret = vcpu_state_load(vm->kvm_fd, vm->vcpus[i].fd, &vm->vcpus[i].reset_state);
		if (ret)
			log_err("vcpu %u: loading the reset state: %s", i, strerror(-ret));
	}
	serial_reset(&vm->serial);
	if (!ret)
		ret = vm_load_guest(vm);

	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		vm->vcpus[i].hold = false;
		vm->vcpus[i].ran = false;
	}
	if (ret) {
		vm_stop_locked(vm, VM_INTERNAL_ERROR);
	} else {
		vm->state = prev == VM_PRELAUNCH ? VM_RUNNING : prev;
		pthread_cond_broadcast(&vm->cond);
	}
	pthread_mutex_unlock(&vm->lock);
	pthread_mutex_unlock(&vm->ctrl_lock);
	vm_state_announce(vm);
	if (ret)
		return ret;
	if (guest) /* a guest that resets in a loop is a guest event like any */
		ratelimit_log(&vm->guest_log, LOG_INFO, "reset (guest)");
	else
		log_info("reset (host request)");
	rs.guest = guest;
	rs.reason = guest ? "guest-reset" : "host-qmp-system-reset";
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_RESET;
	ev.reset = &rs;
	vm_publish(vm, &ev);
	return 0;
}
