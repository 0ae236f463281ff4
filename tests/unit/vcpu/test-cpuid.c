// SPDX-License-Identifier: GPL-2.0-only
/* The CPUID each vCPU gets: APIC ids, topology and the KVM paravirt leaves (needs /dev/kvm). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "log/log.h"
#include "tests/util/test-util.h"
#include "vcpu-proc/vm.h"

#define NR 2

struct fixture {
	struct vm vm;
	struct vcpu vcpus[NR];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->vm.kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(f->vm.kvm_fd >= 0);
	f->vm.vm_fd = ioctl(f->vm.kvm_fd, KVM_CREATE_VM, 0);
	assert_true(f->vm.vm_fd >= 0);
	f->vm.nr_vcpus = NR;
	f->vm.vcpus = f->vcpus;
	assert_int_equal(vm_cpuid_init(&f->vm), 0);
	for (unsigned int i = 0; i < NR; i++) {
		f->vcpus[i].vm = &f->vm;
		f->vcpus[i].index = i;
		f->vcpus[i].fd = ioctl(f->vm.vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		assert_true(f->vcpus[i].fd >= 0);
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (unsigned int i = 0; i < NR; i++)
		close(f->vcpus[i].fd);
	close(f->vm.vm_fd);
	close(f->vm.kvm_fd);
	free(f->vm.cpuid);
	free(f);
	return 0;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		if (c->entries[i].function == fn && c->entries[i].index == idx)
			return &c->entries[i];
	}
	return NULL;
}

static void test_cpuid_per_vcpu(void **state)
{
	struct fixture *f = *state;

	for (unsigned int i = 0; i < NR; i++) {
		struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + 1024 * sizeof(c->entries[0]));
		const struct kvm_cpuid_entry2 *e;
		char sig[13] = "";

		assert_int_equal(vcpu_cpuid_set(&f->vcpus[i]), 0);
		c->nent = 1024;
		assert_int_equal(ioctl(f->vcpus[i].fd, KVM_GET_CPUID2, c), 0);
		e = find(c, 1, 0);
		assert_non_null(e);
		assert_int_equal(e->ebx >> 24, i);	     /* initial APIC id */
		assert_int_equal((e->ebx >> 16) & 0xff, NR); /* logical processors */
		assert_true(e->edx & (1u << 28));	     /* HTT */
		e = find(c, 0x40000000, 0);
		assert_non_null(e);
		memcpy(sig, &e->ebx, 4);
		memcpy(sig + 4, &e->ecx, 4);
		memcpy(sig + 8, &e->edx, 4);
		assert_string_equal(sig, "KVMKVMKVM");
		assert_true(e->eax >= 0x40000001);
		e = find(c, 0x40000001, 0);
		assert_non_null(e);
		assert_true(e->eax & (1u << 3)); /* KVM_FEATURE_CLOCKSOURCE2 */
		e = find(c, 0xb, 1);
		if (e) {
			assert_int_equal(e->edx, i); /* x2APIC id */
			assert_int_equal(e->ebx, NR);
		}
		free(c);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cpuid_per_vcpu, setup, teardown),
	};

	test_require_kvm();
	log_init("test-cpuid");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
