// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPU state save/load and the VM clock (vcpu-proc/state.c, clock.c)
 * against the real /dev/kvm, KVM selftests style: a tiny flat 32-bit guest
 * enables kvmclock, then counts in EBX and reports each count with `out`.
 * One VM runs a few rounds and is saved; a second VM gets its RAM and the
 * state and must continue the count exactly where the first stopped.
 *
 * Skips (exit 77) without a usable /dev/kvm.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <asm/kvm_para.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "log/log.h"
#include "tests/util/test-util.h"
#include "vcpu-proc/clock.h"
#include "vcpu-proc/state.h"

#define RAM_SIZE      (2u << 20)
#define CODE_GPA      0x100000u
#define KVMCLOCK_GPA  0x2000u /* the guest's pvclock_vcpu_time_info */
#define WALLCLOCK_GPA 0x3000u /* the guest's pvclock_wall_clock */
#define COUNT_PORT    0x10
#define POISON	      0xa5

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_ADJUST   0x3b
#define MSR_IA32_TSC_DEADLINE 0x6e0
#define APIC_LVTT	      0x320
#define APIC_LVTT_DEADLINE    (2u << 17)
#define APIC_LVT_MASKED	      (1u << 16)
#define PVCLOCK_GUEST_STOPPED (1 << 1)

/*
 * The guest, 32-bit protected mode, CPL 0:
 *	mov ecx, MSR_KVM_SYSTEM_TIME_NEW; mov eax, KVMCLOCK_GPA | 1; xor edx, edx; wrmsr
 *	mov ecx, MSR_KVM_WALL_CLOCK_NEW;  mov eax, WALLCLOCK_GPA; wrmsr
 *	xor ebx, ebx
 * loop:	inc ebx; mov eax, ebx; out COUNT_PORT, al; jmp loop
 */
static const uint8_t guest_code[] = {
	0xb9, 0x01, 0x4d, 0x56, 0x4b, /* mov ecx, 0x4b564d01 */
	0xb8, 0x01, 0x20, 0x00, 0x00, /* mov eax, 0x2001 */
	0x31, 0xd2,		      /* xor edx, edx */
	0x0f, 0x30,		      /* wrmsr */
	0xb9, 0x00, 0x4d, 0x56, 0x4b, /* mov ecx, 0x4b564d00 */
	0xb8, 0x00, 0x30, 0x00, 0x00, /* mov eax, 0x3000 */
	0x0f, 0x30,		      /* wrmsr */
	0x31, 0xdb,		      /* xor ebx, ebx */
	/* loop: */
	0x43,		  /* inc ebx */
	0x89, 0xd8,	  /* mov eax, ebx */
	0xe6, COUNT_PORT, /* out COUNT_PORT, al */
	0xeb, 0xf9,	  /* jmp loop */
};
#define GUEST_LOOP_GPA (CODE_GPA + 28)
#define GUEST_OUT_GPA  (GUEST_LOOP_GPA + 3)

static int kvm_fd = -1;

/* One test VM: one vCPU, RAM_SIZE of anonymous RAM at GPA 0. */
struct tvm {
	int vm_fd;	     /* KVM_CREATE_VM */
	int vcpu_fd;	     /* vCPU 0 */
	uint8_t *ram;	     /* guest RAM, GPA 0 */
	struct kvm_run *run; /* the vCPU's shared run page */
	size_t run_size;     /* its mapping size */
};

static uint64_t now_realtime_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void tvm_set_cpuid(struct tvm *t)
{
	struct kvm_cpuid2 *cpuid;
	int nent = 256;

	cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(cpuid->entries[0]));
	assert_non_null(cpuid);
	cpuid->nent = (uint32_t)nent;
	assert_int_equal(ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid), 0);
	/* KVM emulates the TSC-deadline timer but leaves advertising it to us. */
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		if (cpuid->entries[i].function == 1 &&
		    ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
			cpuid->entries[i].ecx |= 1u << 24;
	}
	assert_int_equal(ioctl(t->vcpu_fd, KVM_SET_CPUID2, cpuid), 0);
	free(cpuid);
}

/* A VM with one fresh vCPU; with_guest also loads the code and boot state. */
static void tvm_create(struct tvm *t, bool with_guest)
{
	struct kvm_userspace_memory_region mem = {0};
	struct kvm_segment cs = {0}, ds = {0};
	struct kvm_sregs sregs;
	struct kvm_regs regs = {0};
	int run_size;

	t->vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	assert_true(t->vm_fd >= 0);
	t->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(t->ram != MAP_FAILED);
	mem.slot = 0;
	mem.guest_phys_addr = 0;
	mem.memory_size = RAM_SIZE;
	mem.userspace_addr = (uintptr_t)t->ram;
	assert_int_equal(ioctl(t->vm_fd, KVM_SET_USER_MEMORY_REGION, &mem), 0);
	/* In-kernel LAPIC, as vcpu-proc has, so its state is part of the test. */
	assert_int_equal(ioctl(t->vm_fd, KVM_CREATE_IRQCHIP, 0), 0);
	t->vcpu_fd = ioctl(t->vm_fd, KVM_CREATE_VCPU, 0);
	assert_true(t->vcpu_fd >= 0);
	run_size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(run_size > 0);
	t->run_size = (size_t)run_size;
	t->run = mmap(NULL, t->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, t->vcpu_fd, 0);
	assert_true(t->run != MAP_FAILED);
	tvm_set_cpuid(t);
	if (!with_guest)
		return;

	memcpy(t->ram + CODE_GPA, guest_code, sizeof(guest_code));
	assert_int_equal(ioctl(t->vcpu_fd, KVM_GET_SREGS, &sregs), 0);
	cs.base = 0;
	cs.limit = 0xffffffff;
	cs.selector = 0x8;
	cs.type = 11;
	cs.present = 1;
	cs.s = 1;
	cs.db = 1;
	cs.g = 1;
	ds = cs;
	ds.selector = 0x10;
	ds.type = 3;
	sregs.cs = cs;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = ds;
	sregs.cr0 = 0x11; /* PE | ET */
	assert_int_equal(ioctl(t->vcpu_fd, KVM_SET_SREGS, &sregs), 0);
	regs.rip = CODE_GPA;
	regs.rflags = 2;
	regs.rsp = CODE_GPA;
	assert_int_equal(ioctl(t->vcpu_fd, KVM_SET_REGS, &regs), 0);
}

static void tvm_destroy(struct tvm *t)
{
	munmap(t->run, t->run_size);
	close(t->vcpu_fd);
	close(t->vm_fd);
	munmap(t->ram, RAM_SIZE);
}

/* Runs to the next `out` to COUNT_PORT and returns the byte written. */
static uint8_t tvm_run_to_count(struct tvm *t)
{
	for (;;) {
		int r = ioctl(t->vcpu_fd, KVM_RUN, 0);

		if (r < 0 && errno == EINTR)
			continue;
		assert_int_equal(r, 0);
		if (t->run->exit_reason == KVM_EXIT_IO && t->run->io.port == COUNT_PORT) {
			assert_int_equal(t->run->io.direction, KVM_EXIT_IO_OUT);
			assert_int_equal(t->run->io.size, 1);
			return *((uint8_t *)t->run + t->run->io.data_offset);
		}
		fail_msg("unexpected exit %u", t->run->exit_reason);
	}
}

/* Lets KVM finish the pending `out` without entering the guest (state.h). */
static void tvm_complete_exit(struct tvm *t)
{
	int r;

	t->run->immediate_exit = 1;
	r = ioctl(t->vcpu_fd, KVM_RUN, 0);
	assert_int_equal(r, -1);
	assert_int_equal(errno, EINTR);
	t->run->immediate_exit = 0;
}

static uint64_t tvm_get_msr(struct tvm *t, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = {.hdr.nmsrs = 1, .e.index = index};

	assert_int_equal(ioctl(t->vcpu_fd, KVM_GET_MSRS, &m), 1);
	return m.e.data;
}

static void tvm_set_msr(struct tvm *t, uint32_t index, uint64_t data)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} m = {.hdr.nmsrs = 1, .e.index = index, .e.data = data};

	assert_int_equal(ioctl(t->vcpu_fd, KVM_SET_MSRS, &m), 1);
}

static uint64_t vm_get_clock(int vm_fd)
{
	struct kvm_clock_data d;

	memset(&d, 0, sizeof(d));
	assert_int_equal(ioctl(vm_fd, KVM_GET_CLOCK, &d), 0);
	return d.clock;
}

static const Cleave__Vcpu__Msr *state_find_msr(const Cleave__Vcpu__VcpuState *s, uint32_t index)
{
	for (size_t i = 0; i < s->n_msrs; i++) {
		if (s->msrs[i]->index == index)
			return s->msrs[i];
	}
	return NULL;
}

static bool ram_is_poison(const struct tvm *t, uint32_t gpa, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (t->ram[gpa + i] != POISON)
			return false;
	}
	return true;
}

/* system_time of the vCPU's pvclock_vcpu_time_info, as the guest would read it. */
static uint64_t pvclock_system_time(const struct tvm *t)
{
	uint64_t v;

	memcpy(&v, t->ram + KVMCLOCK_GPA + 16, sizeof(v));
	return v;
}

/* The source: runs `rounds` counts with kvmclock on, stops cleanly, saves. */
static void source_run_and_save(struct tvm *src, unsigned int rounds, Cleave__Vcpu__VcpuState *vs)
{
	struct kvm_lapic_state lapic;
	struct kvm_regs regs;
	uint32_t lvtt;

	tvm_create(src, true);
	for (unsigned int i = 1; i <= rounds; i++)
		assert_int_equal(tvm_run_to_count(src), i);
	tvm_complete_exit(src);
	/* Host-side TSC_ADJUST write: must travel as is (docs/CLOCK.md). */
	tvm_set_msr(src, MSR_IA32_TSC_ADJUST, 12345);
	/*
	 * An armed (masked, far-future) TSC-deadline timer: the deadline MSR only
	 * survives a load that sets it after the LAPIC is in deadline mode.
	 */
	assert_int_equal(ioctl(src->vcpu_fd, KVM_GET_LAPIC, &lapic), 0);
	lvtt = APIC_LVTT_DEADLINE | APIC_LVT_MASKED | 0xec;
	memcpy(&lapic.regs[APIC_LVTT], &lvtt, sizeof(lvtt));
	assert_int_equal(ioctl(src->vcpu_fd, KVM_SET_LAPIC, &lapic), 0);
	tvm_set_msr(src, MSR_IA32_TSC_DEADLINE, tvm_get_msr(src, MSR_IA32_TSC) + (1ull << 50));
	assert_int_not_equal(tvm_get_msr(src, MSR_IA32_TSC_DEADLINE), 0);
	assert_int_equal(vcpu_state_save(kvm_fd, src->vcpu_fd, 0, vs), 0);

	memcpy(&regs, vs->regs.data, sizeof(regs));
	assert_int_equal(regs.rbx, rounds);
	assert_int_equal(regs.rip, GUEST_OUT_GPA + 2); /* the `out` completed */
}

/* ---- tests ---- */

/*
 * Save, pack, unpack, load into a second VM, run: the count continues, RIP
 * is right, the kvmclock MSR is there, guest time has not gone backwards,
 * and no host write reached guest RAM that the load order says is not
 * final yet (docs/INVARIANTS.md invariant 3, docs/CLOCK.md).
 */
static void test_state_continues_in_second_vm(void **unused)
{
	Cleave__Vcpu__VcpuState vs, *vsp = &vs;
	Cleave__Vcpu__VmState st = CLEAVE__VCPU__VM_STATE__INIT, *got;
	struct tvm src, dst;
	struct kvm_regs regs;
	const Cleave__Vcpu__Msr *m;
	uint64_t src_tsc, src_system_time;
	uint8_t *packed;
	size_t len;

	source_run_and_save(&src, 5, &vs);
	assert_int_equal(vs.index, 0);
	m = state_find_msr(&vs, MSR_KVM_SYSTEM_TIME_NEW);
	assert_non_null(m);
	assert_int_equal(m->data, KVMCLOCK_GPA | 1);
	/* KVM keeps the source's clock page current: proof kvmclock is live. */
	src_system_time = pvclock_system_time(&src);
	assert_int_not_equal(src_system_time, 0);
	m = state_find_msr(&vs, MSR_IA32_TSC);
	assert_non_null(m);
	src_tsc = m->data;
	assert_int_equal(vm_clock_save(src.vm_fd, &st), 0);

	st.n_vcpus = 1;
	st.vcpus = &vsp;
	len = cleave__vcpu__vm_state__get_packed_size(&st);
	packed = malloc(len);
	assert_non_null(packed);
	cleave__vcpu__vm_state__pack(&st, packed);
	got = cleave__vcpu__vm_state__unpack(NULL, len, packed);
	assert_non_null(got);
	assert_int_equal(got->n_vcpus, 1);

	/*
	 * Destination.  The clock pages hold stale bytes: KVM_SET_CLOCK must not
	 * touch them, and the wall-clock page must never be written by a load.
	 * The system-time page may be (the MSR load itself bumps its version on
	 * some kernels), which is why RAM is final before vcpu_state_load().
	 */
	tvm_create(&dst, false);
	memcpy(dst.ram, src.ram, RAM_SIZE);
	memset(dst.ram + KVMCLOCK_GPA, POISON, 32);
	memset(dst.ram + WALLCLOCK_GPA, POISON, 12);
	assert_int_equal(vm_clock_load(dst.vm_fd, got), 0);
	assert_true(ram_is_poison(&dst, KVMCLOCK_GPA, 32));
	assert_int_equal(vcpu_state_load(kvm_fd, dst.vcpu_fd, got->vcpus[0]), 0);
	assert_true(ram_is_poison(&dst, WALLCLOCK_GPA, 12));

	assert_int_equal(tvm_get_msr(&dst, MSR_KVM_SYSTEM_TIME_NEW), KVMCLOCK_GPA | 1);
	assert_int_equal(tvm_get_msr(&dst, MSR_IA32_TSC_ADJUST), 12345);
	assert_true(tvm_get_msr(&dst, MSR_IA32_TSC) >= src_tsc);

	/* The count goes on from 5 in the second VM, the first one untouched. */
	assert_int_equal(tvm_run_to_count(&dst), 6);
	tvm_complete_exit(&dst);
	assert_int_equal(ioctl(dst.vcpu_fd, KVM_GET_REGS, &regs), 0);
	assert_int_equal(regs.rbx, 6);
	assert_int_equal(regs.rip, GUEST_OUT_GPA + 2);
	assert_int_equal(tvm_run_to_count(&dst), 7);
	/* A whole, current clock page, not before the source's; no wall clock. */
	assert_int_equal(*(uint32_t *)(dst.ram + KVMCLOCK_GPA) & 1, 0); /* version even */
	assert_int_not_equal(*(uint32_t *)(dst.ram + KVMCLOCK_GPA + 24), 0xa5a5a5a5);
	assert_true(pvclock_system_time(&dst) >= src_system_time);
	assert_true(ram_is_poison(&dst, WALLCLOCK_GPA, 12));

	cleave__vcpu__vm_state__free_unpacked(got, NULL);
	free(packed);
	vcpu_state_release(&vs);
	vcpu_state_release(&vs); /* twice is safe */
	tvm_destroy(&dst);
	tvm_destroy(&src);
}

/* Every blob and every MSR but the time-driven ones reads back as loaded. */
static void test_state_round_trip(void **unused)
{
	Cleave__Vcpu__VcpuState vs, back;
	struct kvm_vcpu_events ev;
	struct tvm src, dst;

	source_run_and_save(&src, 3, &vs);
	/* A pending NMI, which KVM_GET_VCPU_EVENTS reports but does not flag. */
	assert_int_equal(ioctl(src.vcpu_fd, KVM_GET_VCPU_EVENTS, &ev), 0);
	ev.nmi.pending = 1;
	ev.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING;
	assert_int_equal(ioctl(src.vcpu_fd, KVM_SET_VCPU_EVENTS, &ev), 0);
	vcpu_state_release(&vs);
	assert_int_equal(vcpu_state_save(kvm_fd, src.vcpu_fd, 0, &vs), 0);
	assert_int_equal(((struct kvm_vcpu_events *)vs.events.data)->nmi.pending, 1);

	tvm_create(&dst, false);
	memcpy(dst.ram, src.ram, RAM_SIZE);
	assert_int_equal(vcpu_state_load(kvm_fd, dst.vcpu_fd, &vs), 0);
	assert_int_equal(vcpu_state_save(kvm_fd, dst.vcpu_fd, 0, &back), 0);

#define SAME_BLOB(f)                                                                               \
	do {                                                                                       \
		assert_int_equal(back.f.len, vs.f.len);                                            \
		assert_memory_equal(back.f.data, vs.f.data, vs.f.len);                             \
	} while (0)
	SAME_BLOB(regs);
	SAME_BLOB(sregs);
	SAME_BLOB(xsave);
	SAME_BLOB(xcrs);
	SAME_BLOB(events);
	SAME_BLOB(mp_state);
	SAME_BLOB(debugregs);
	assert_int_equal(back.lapic.len, vs.lapic.len);
	assert_true(vs.lapic.len > 0);
#undef SAME_BLOB
	assert_int_equal(back.n_msrs, vs.n_msrs);
	assert_int_not_equal(state_find_msr(&vs, MSR_IA32_TSC_DEADLINE)->data, 0);
	for (size_t i = 0; i < vs.n_msrs; i++) {
		uint32_t idx = vs.msrs[i]->index;
		const Cleave__Vcpu__Msr *b = state_find_msr(&back, idx);

		assert_non_null(b);
		if (idx == MSR_IA32_TSC || idx == MSR_KVM_WALL_CLOCK ||
		    idx == MSR_KVM_WALL_CLOCK_NEW)
			continue;
		if (b->data != vs.msrs[i]->data)
			fail_msg("MSR 0x%x: loaded 0x%llx, reads 0x%llx", idx,
				 (unsigned long long)vs.msrs[i]->data, (unsigned long long)b->data);
	}
	vcpu_state_release(&back);
	vcpu_state_release(&vs);
	tvm_destroy(&dst);
	tvm_destroy(&src);
}

/* A blob of the wrong size, or an MSR this KVM does not know: -EINVAL, nothing loaded. */
static void test_state_rejects_bad_blob(void **unused)
{
	static const size_t fields[] = {
		offsetof(Cleave__Vcpu__VcpuState, regs),
		offsetof(Cleave__Vcpu__VcpuState, sregs),
		offsetof(Cleave__Vcpu__VcpuState, xsave),
		offsetof(Cleave__Vcpu__VcpuState, xcrs),
		offsetof(Cleave__Vcpu__VcpuState, lapic),
		offsetof(Cleave__Vcpu__VcpuState, events),
		offsetof(Cleave__Vcpu__VcpuState, mp_state),
		offsetof(Cleave__Vcpu__VcpuState, debugregs),
	};
	static const long deltas[] = {-1, +1, -1000000};
	Cleave__Vcpu__VcpuState vs, fresh, after;
	Cleave__Vcpu__Msr bogus = CLEAVE__VCPU__MSR__INIT, *saved_msr;
	struct tvm src, dst;
	uint8_t *big;

	source_run_and_save(&src, 2, &vs);
	tvm_create(&dst, false);
	assert_int_equal(vcpu_state_save(kvm_fd, dst.vcpu_fd, 0, &fresh), 0);
	big = calloc(1, 1 << 16);
	assert_non_null(big);

	for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++) {
		for (size_t d = 0; d < sizeof(deltas) / sizeof(deltas[0]); d++) {
			ProtobufCBinaryData *b = (ProtobufCBinaryData *)((char *)&vs + fields[f]);
			ProtobufCBinaryData keep = *b;
			long len = (long)keep.len + deltas[d];

			b->len = len < 0 ? 0 : (size_t)len;
			b->data = big;
			assert_int_equal(vcpu_state_load(kvm_fd, dst.vcpu_fd, &vs), -EINVAL);
			*b = keep;
		}
	}
	/* An MSR index this KVM does not list. */
	saved_msr = vs.msrs[vs.n_msrs - 1];
	bogus.index = 0xdeadbeef;
	vs.msrs[vs.n_msrs - 1] = &bogus;
	assert_int_equal(vcpu_state_load(kvm_fd, dst.vcpu_fd, &vs), -EINVAL);
	vs.msrs[vs.n_msrs - 1] = saved_msr;

	/* Nothing of the rejected loads reached the vCPU. */
	assert_int_equal(vcpu_state_save(kvm_fd, dst.vcpu_fd, 0, &after), 0);
	assert_memory_equal(after.regs.data, fresh.regs.data, fresh.regs.len);
	assert_memory_equal(after.sregs.data, fresh.sregs.data, fresh.sregs.len);
	assert_memory_equal(after.xsave.data, fresh.xsave.data, fresh.xsave.len);
	assert_int_equal(tvm_get_msr(&dst, MSR_KVM_SYSTEM_TIME_NEW), 0);
	assert_int_equal(tvm_get_msr(&dst, MSR_IA32_TSC_ADJUST), 0);

	/* And the intact state still loads into that vCPU. */
	assert_int_equal(vcpu_state_load(kvm_fd, dst.vcpu_fd, &vs), 0);
	assert_int_equal(tvm_get_msr(&dst, MSR_KVM_SYSTEM_TIME_NEW), KVMCLOCK_GPA | 1);

	free(big);
	vcpu_state_release(&after);
	vcpu_state_release(&fresh);
	vcpu_state_release(&vs);
	tvm_destroy(&dst);
	tvm_destroy(&src);
}

/* Without an in-kernel irqchip there is no LAPIC to save; both sides must agree. */
static void test_state_without_irqchip(void **unused)
{
	Cleave__Vcpu__VcpuState vs;
	struct tvm with;
	int vm[2], vcpu[2];

	for (int i = 0; i < 2; i++) {
		vm[i] = ioctl(kvm_fd, KVM_CREATE_VM, 0);
		assert_true(vm[i] >= 0);
		vcpu[i] = ioctl(vm[i], KVM_CREATE_VCPU, 0);
		assert_true(vcpu[i] >= 0);
	}
	assert_int_equal(vcpu_state_save(kvm_fd, vcpu[0], 0, &vs), 0);
	assert_int_equal(vs.lapic.len, 0);
	assert_non_null(vs.regs.data);
	assert_int_equal(vcpu_state_load(kvm_fd, vcpu[1], &vs), 0);
	tvm_create(&with, false);
	assert_int_equal(vcpu_state_load(kvm_fd, with.vcpu_fd, &vs), -EINVAL);

	tvm_destroy(&with);
	vcpu_state_release(&vs);
	for (int i = 0; i < 2; i++) {
		close(vcpu[i]);
		close(vm[i]);
	}
}

/* Guest time after load >= time at save + the realtime that passed. */
static void test_clock_advances_by_downtime(void **unused)
{
	/*
	 * A source whose vCPU never ran (KVM reports no KVM_CLOCK_REALTIME here,
	 * so vm_clock_save samples realtime itself) and one whose vCPU ran
	 * (KVM's own paired sample, where the host clocksource allows).
	 */
	for (int ran = 0; ran < 2; ran++) {
		Cleave__Vcpu__VmState st = CLEAVE__VCPU__VM_STATE__INIT;
		struct tvm src, dst;
		uint64_t rt_before, got, elapsed_max;

		tvm_create(&src, ran);
		if (ran)
			assert_int_equal(tvm_run_to_count(&src), 1);
		tvm_create(&dst, false);
		assert_int_equal(vm_clock_save(src.vm_fd, &st), 0);
		assert_true(st.realtime_ns > 0);
		usleep(50 * 1000);
		rt_before = now_realtime_ns();
		assert_int_equal(vm_clock_load(dst.vm_fd, &st), 0);
		got = vm_get_clock(dst.vm_fd);
		elapsed_max = now_realtime_ns() - st.realtime_ns;

		assert_true(got >= st.clock_ns + (rt_before - st.realtime_ns));
		/* Not more than the realtime elapsed, bar a few ms of rate difference. */
		assert_true(got <= st.clock_ns + elapsed_max + 5000000);
		tvm_destroy(&dst);
		tvm_destroy(&src);
	}
}

/* Unknown realtime, or a source realtime in the future: never backwards. */
static void test_clock_never_backwards(void **unused)
{
	Cleave__Vcpu__VmState st = CLEAVE__VCPU__VM_STATE__INIT;
	struct tvm t;
	uint64_t got;

	tvm_create(&t, false);
	/* A clock far ahead of this fresh VM's. */
	st.clock_ns = vm_get_clock(t.vm_fd) + 3600ull * 1000000000ull;
	st.realtime_ns = 0;
	assert_int_equal(vm_clock_load(t.vm_fd, &st), 0);
	got = vm_get_clock(t.vm_fd);
	assert_true(got >= st.clock_ns);
	assert_true(got < st.clock_ns + 1000000000ull);

	/* Source host's realtime 10 s ahead of ours: no advance, no rewind. */
	st.clock_ns += 10ull * 1000000000ull;
	st.realtime_ns = now_realtime_ns() + 10ull * 1000000000ull;
	assert_int_equal(vm_clock_load(t.vm_fd, &st), 0);
	got = vm_get_clock(t.vm_fd);
	assert_true(got >= st.clock_ns);
	assert_true(got < st.clock_ns + 1000000000ull);
	tvm_destroy(&t);
}

static void test_notify_stopped(void **unused)
{
	struct tvm fresh, live;
	uint8_t flags;

	/* No kvmclock enabled by the guest: KVM says -EINVAL, we say fine. */
	tvm_create(&fresh, false);
	assert_int_equal(vcpu_clock_notify_stopped(fresh.vcpu_fd), 0);

	/* With kvmclock: the guest sees PVCLOCK_GUEST_STOPPED on its next entry. */
	tvm_create(&live, true);
	assert_int_equal(tvm_run_to_count(&live), 1);
	flags = live.ram[KVMCLOCK_GPA + 29];
	assert_int_equal(flags & PVCLOCK_GUEST_STOPPED, 0);
	assert_int_equal(vcpu_clock_notify_stopped(live.vcpu_fd), 0);
	assert_int_equal(tvm_run_to_count(&live), 2);
	flags = live.ram[KVMCLOCK_GPA + 29];
	assert_int_not_equal(flags & PVCLOCK_GUEST_STOPPED, 0);
	tvm_destroy(&live);
	tvm_destroy(&fresh);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_continues_in_second_vm),
		cmocka_unit_test(test_state_round_trip),
		cmocka_unit_test(test_state_rejects_bad_blob),
		cmocka_unit_test(test_state_without_irqchip),
		cmocka_unit_test(test_clock_advances_by_downtime),
		cmocka_unit_test(test_clock_never_backwards),
		cmocka_unit_test(test_notify_stopped),
	};
	int vm_fd;

	log_init("test-state");
	if (getenv("CLEAVE_TEST_VERBOSE"))
		log_set_verbose(true);
	test_require_kvm();
	kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(kvm_fd >= 0);
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	if (vm_fd < 0) {
		printf("SKIP: KVM_CREATE_VM: %s\n", strerror(errno));
		return 77;
	}
	close(vm_fd);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
