// SPDX-License-Identifier: GPL-2.0-only
/* CPUID the guest sees: what KVM supports, with topology and KVM leaves fixed. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log/log.h"
#include "vcpu-proc/vm.h"

#define KVM_CPUID_SIGNATURE	     0x40000000u
#define KVM_CPUID_FEATURES	     0x40000001u
#define KVM_FEATURE_CLOCKSOURCE2_BIT 3
#define CPUID_MAX_ENTRIES	     1024

int vm_cpuid_init(struct vm *vm)
{
	struct kvm_cpuid2 *c = NULL;
	unsigned int n = 64;

	for (;;) {
		c = calloc(1, sizeof(*c) + (n + 2) * sizeof(c->entries[0]));
		if (!c)
			return -ENOMEM;
		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0)
			break;
		free(c);
		if (errno != E2BIG || n >= CPUID_MAX_ENTRIES) {
			int err = -errno;

			log_err("KVM_GET_SUPPORTED_CPUID: %s", strerror(errno));
			return err;
		}
		n *= 2;
	}
	vm->cpuid = c;
	return 0;
}

static struct kvm_cpuid_entry2 *cpuid_find(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		if (e->function == fn &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == idx))
			return e;
	}
	return NULL;
}

/* Adds a leaf; the template was allocated with two spare entries. */
static struct kvm_cpuid_entry2 *cpuid_add(struct kvm_cpuid2 *c, uint32_t fn)
{
	struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];

	memset(e, 0, sizeof(*e));
	e->function = fn;
	return e;
}

static unsigned int cpuid_order(unsigned int n)
{
	unsigned int s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

int vcpu_cpuid_set(struct vcpu *v)
{
	struct vm *vm = v->vm;
	size_t sz = sizeof(*vm->cpuid) + (vm->cpuid->nent + 2) * sizeof(vm->cpuid->entries[0]);
	unsigned int ncpu = vm->nr_vcpus, shift = cpuid_order(ncpu);
	struct kvm_cpuid_entry2 *e;
	struct kvm_cpuid2 *c;
	int ret = 0;

	c = malloc(sz);
	if (!c)
		return -ENOMEM;
	memcpy(c, vm->cpuid, sz);

	/* One package, ncpu cores, one thread each; APIC id == vCPU index. */
	e = cpuid_find(c, 1, 0);
	if (e) {
		e->ebx = (e->ebx & 0x0000ffffu) | (v->index << 24) | ((ncpu & 0xff) << 16);
		if (ncpu > 1)
			e->edx |= 1u << 28; /* HTT: the count field is valid */
	}
	for (uint32_t i = 0; i < c->nent; i++) {
		e = &c->entries[i];
		if (e->function == 4 && (e->eax & 0x1f)) {
			/* cores per package - 1 in [31:26]; caches shared by all cores */
			e->eax = (e->eax & 0x03ffffffu) | ((ncpu - 1) << 26);
			e->eax = (e->eax & ~0x03ffc000u) | ((ncpu - 1) << 14);
		} else if (e->function == 0xb || e->function == 0x1f) {
			e->edx = v->index;
			if (e->index == 0) {
				e->eax = 0; /* SMT level: no threads */
				e->ebx = 1;
				e->ecx = (1u << 8) | 0;
			} else if (e->index == 1) {
				e->eax = shift;
				e->ebx = ncpu;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
		}
	}

	/* The KVM paravirt leaves: kvmclock needs the signature and CLOCKSOURCE2. */
	e = cpuid_find(c, KVM_CPUID_SIGNATURE, 0);
	if (!e)
		e = cpuid_add(c, KVM_CPUID_SIGNATURE);
	e->eax = KVM_CPUID_FEATURES;
	memcpy(&e->ebx, "KVMK", 4);
	memcpy(&e->ecx, "VMKV", 4);
	memcpy(&e->edx, "M\0\0\0", 4);
	e = cpuid_find(c, KVM_CPUID_FEATURES, 0);
	if (!e)
		e = cpuid_add(c, KVM_CPUID_FEATURES);
	e->eax |= 1u << KVM_FEATURE_CLOCKSOURCE2_BIT;

	if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) {
		ret = -errno;
		log_err("KVM_SET_CPUID2 vcpu %u: %s", v->index, strerror(errno));
	}
	free(c);
	return ret;
}
