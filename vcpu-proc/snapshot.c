// SPDX-License-Identifier: GPL-2.0-only
/*
 * The VmState blob: every vCPU's KVM state plus the VM clock.  Saved only
 * with the vCPUs parked; loaded only into an incoming VM whose vCPUs have
 * never run, after all of its RAM is final (the caller sends LOAD_STATE
 * once the last page has landed): vm_clock_load, then each vCPU
 * (docs/CLOCK.md; docs/INVARIANTS.md, invariant 3).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log/log.h"
#include "vcpu-proc/clock.h"
#include "vcpu-proc/state.h"
#include "vcpu-proc/vm.h"

#define VM_STATE_VERSION 1

int vm_state_save(struct vm *vm, uint8_t **buf, size_t *len)
{
	Cleave__Vcpu__VmState vs = CLEAVE__VCPU__VM_STATE__INIT;
	Cleave__Vcpu__VcpuState *cpus = NULL, **ptrs = NULL;
	enum vm_run_state st;
	unsigned int saved = 0;
	int ret = 0;

	*buf = NULL;
	*len = 0;
	pthread_mutex_lock(&vm->ctrl_lock);
	pthread_mutex_lock(&vm->lock);
	st = vm->state;
	vs.run_state = (Cleave__Vcpu__RunState)vm->resume_state;
	pthread_mutex_unlock(&vm->lock);
	if (st != VM_PAUSED && st != VM_FINISH_MIGRATE && st != VM_POSTMIGRATE) {
		ret = -EBUSY;
		goto out;
	}
	cpus = calloc(vm->nr_vcpus, sizeof(*cpus));
	ptrs = calloc(vm->nr_vcpus, sizeof(*ptrs));
	if (!cpus || !ptrs) {
		ret = -ENOMEM;
		goto out;
	}
	for (; saved < vm->nr_vcpus; saved++) {
		ret = vcpu_state_save(vm->kvm_fd, vm->vcpus[saved].fd, saved, &cpus[saved]);
		if (ret) {
			log_err("vcpu %u: saving state: %s", saved, strerror(-ret));
			goto out;
		}
		ptrs[saved] = &cpus[saved];
	}
	ret = vm_clock_save(vm->vm_fd, &vs);
	if (ret) {
		log_err("saving the VM clock: %s", strerror(-ret));
		goto out;
	}
	vs.version = VM_STATE_VERSION;
	vs.n_vcpus = vm->nr_vcpus;
	vs.vcpus = ptrs;
	*len = cleave__vcpu__vm_state__get_packed_size(&vs);
	*buf = malloc(*len ? *len : 1);
	if (!*buf) {
		ret = -ENOMEM;
		*len = 0;
		goto out;
	}
	cleave__vcpu__vm_state__pack(&vs, *buf);
	log_info("state saved: %u vCPUs, clock %llu ns, %zu bytes", vm->nr_vcpus,
		 (unsigned long long)vs.clock_ns, *len);
out:
	for (unsigned int i = 0; i < saved; i++)
		vcpu_state_release(&cpus[i]);
	free(cpus);
	free(ptrs);
	pthread_mutex_unlock(&vm->ctrl_lock);
	return ret;
}

static int vm_state_check(struct vm *vm, const Cleave__Vcpu__VmState *vs, char *err, size_t errlen)
{
	if (vs->version != VM_STATE_VERSION) {
		snprintf(err, errlen, "state version %u, expected %u", vs->version,
			 VM_STATE_VERSION);
		return -EINVAL;
	}
	if (vs->n_vcpus != vm->nr_vcpus) {
		snprintf(err, errlen, "state has %zu vCPUs, this VM %u", vs->n_vcpus, vm->nr_vcpus);
		return -EINVAL;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		if (vs->vcpus[i]->index != i) {
			snprintf(err, errlen, "state vCPU %u has index %u", i, vs->vcpus[i]->index);
			return -EINVAL;
		}
	}
	return 0;
}

int vm_state_load(struct vm *vm, const uint8_t *buf, size_t len, char *err, size_t errlen)
{
	Cleave__Vcpu__VmState *vs = NULL;
	bool ran = false;
	int ret = 0;

	pthread_mutex_lock(&vm->ctrl_lock);
	pthread_mutex_lock(&vm->lock);
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		ran |= vm->vcpus[i].ran;
	/*
	 * Again after a load is fine while nothing ran: a restarted migrator
	 * repeats the load when it cannot know whether its predecessor's landed.
	 */
	if (vm->state != VM_INMIGRATE || ran) {
		snprintf(err, errlen, "LOAD_STATE needs an incoming VM whose vCPUs never ran");
		ret = -EBUSY;
	}
	pthread_mutex_unlock(&vm->lock);
	if (ret)
		goto out;
	vs = cleave__vcpu__vm_state__unpack(NULL, len, buf);
	if (!vs) {
		snprintf(err, errlen, "malformed VmState (%zu bytes)", len);
		ret = -EINVAL;
		goto out;
	}
	ret = vm_state_check(vm, vs, err, errlen);
	if (ret)
		goto out;
	/* RAM is final (caller's contract); clock first, then vCPUs. */
	ret = vm_clock_load(vm->vm_fd, vs);
	if (ret) {
		snprintf(err, errlen, "loading the VM clock: %s", strerror(-ret));
		goto out;
	}
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		ret = vcpu_state_load(vm->kvm_fd, vm->vcpus[i].fd, vs->vcpus[i]);
		if (ret) {
			snprintf(err, errlen, "loading vCPU %u: %s", i, strerror(-ret));
			goto out;
		}
	}
	pthread_mutex_lock(&vm->lock);
	vm->state_loaded = true;
	vm->resume_state = (enum vm_run_state)vs->run_state;
	pthread_mutex_unlock(&vm->lock);
	log_info("state loaded: %u vCPUs, clock %llu ns", vm->nr_vcpus,
		 (unsigned long long)vs->clock_ns);
out:
	if (vs)
		cleave__vcpu__vm_state__free_unpacked(vs, NULL);
	pthread_mutex_unlock(&vm->ctrl_lock);
	return ret;
}
