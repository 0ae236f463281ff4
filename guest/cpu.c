// SPDX-License-Identifier: GPL-2.0-only
/*
 * cleave-guest ring-0 set-up in C: CPU features, page tables above 4 GiB,
 * IDT, TSS, kvmclock, local APIC and AP start.  Runs once per vCPU at boot,
 * emulated on PVM, so every loop here is short; the fatal exception
 * handler is the only other ring-0 C code.
 */
#include "guest.h"

#define PTE_PWU 0x07ULL
#define PTE_PS	0x80ULL

#define LAPIC_TPR	0x080
#define LAPIC_SVR	0x0f0
#define LAPIC_ICR_LO	0x300
#define LAPIC_ICR_HI	0x310
#define LAPIC_LVT_TIMER 0x320
#define ICR_BUSY	(1u << 12)
#define ICR_INIT_ALL	0x000c4500 /* INIT, level assert, all excluding self */
#define ICR_SIPI_ALL	0x000c4600 /* | vector */

struct idt_gate {
	uint16_t off_lo;
	uint16_t sel;
	uint8_t ist;
	uint8_t type; /* 0x8e: ring-0 interrupt gate, 0xee: callable from ring 3 */
	uint16_t off_mid;
	uint32_t off_hi;
	uint32_t zero;
};

/* What exc_common in boot.S leaves on the ring-0 stack. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8, rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

struct guest g;
uint8_t kstacks[MAX_CPUS][KSTACK_SIZE] __attribute__((aligned(4096)));
static uint8_t ustacks[MAX_CPUS][USTACK_SIZE] __attribute__((aligned(4096)));
static struct idt_gate idt[256] __attribute__((aligned(16)));
/* Page directories for RAM between 4 and 16 GiB when 1 GiB pages are missing. */
static uint64_t pd_high[12][512] __attribute__((aligned(4096)));

extern uint64_t pdpt[512];
extern uint64_t gdt[];
extern const uint64_t exc_stubs[32];
extern char timer_entry[], spurious_entry[], ud_entry[];

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b, uint32_t *c, uint32_t *d)
{
	__asm__ volatile("cpuid" : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d) : "a"(leaf), "c"(0));
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ volatile("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32)));
}

static inline void lapic_write(uint32_t reg, uint32_t v)
{
	*(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg) = v;
}

static inline uint32_t lapic_read(uint32_t reg)
{
	return *(volatile uint32_t *)(uintptr_t)(LAPIC_BASE + reg);
}

/* CPUID is read here, in ring 0: in ring 3 on PVM it may report the host's. */
static void cpu_probe(void)
{
	uint32_t a, b, c, d;

	cpuid(1, &a, &b, &c, &d);
	g.has_apic = d & (1u << 9);
	g.can_halt = g.has_apic && (c & (1u << 24)); /* TSC-deadline timer */
	cpuid(0x80000000, &a, &b, &c, &d);
	if (a >= 0x80000001) {
		cpuid(0x80000001, &a, &b, &c, &d);
		g.has_1g_pages = d & (1u << 26);
	}
	/* "KVMKVMKVM\0\0\0" and KVM_FEATURE_CLOCKSOURCE2 (bit 3). */
	cpuid(0x40000000, &a, &b, &c, &d);
	if (b == 0x4b4d564b && c == 0x564b4d56 && d == 0x4d) {
		cpuid(0x40000001, &a, &b, &c, &d);
		g.has_kvmclock = a & (1u << 3);
	}
}

/*
 * Identity-map RAM between 4 and 16 GiB (boot.S mapped 0-4 GiB): one PDPT
 * entry per GiB with 1 GiB pages, otherwise 512 2 MiB entries per GiB.
 */
static void pt_map_high(const struct hvm_start_info *si)
{
	const struct hvm_memmap_table_entry *e;
	uint64_t top = 4ULL << 30;

	if (si->magic != HVM_START_MAGIC || si->version < 1 || !si->memmap_paddr)
		goto out;
	e = (const void *)(uintptr_t)si->memmap_paddr;
	for (uint32_t i = 0; i < si->memmap_entries; i++) {
		uint64_t end = e[i].addr + e[i].size;
		if (e[i].type == 1 && end > top)
			top = end;
	}
	top = (top + (1ULL << 30) - 1) & ~((1ULL << 30) - 1);
	if (top > (16ULL << 30))
		top = 16ULL << 30;
	for (uint64_t gib = 4; gib < (top >> 30); gib++) {
		if (g.has_1g_pages) {
			pdpt[gib] = (gib << 30) | PTE_PS | PTE_PWU;
			continue;
		}
		uint64_t *pd = pd_high[gib - 4];
		for (uint64_t j = 0; j < 512; j++)
			pd[j] = (gib << 30) + (j << 21) + (PTE_PS | PTE_PWU);
		pdpt[gib] = (uint64_t)(uintptr_t)pd | PTE_PWU;
	}
out:
	g.mapped_top = top;
}

static void idt_set(unsigned vec, const void *fn, uint8_t type)
{
	uint64_t off = (uint64_t)(uintptr_t)fn;

	idt[vec] = (struct idt_gate){.off_lo = (uint16_t)off,
				     .sel = KERNEL_CS,
				     .type = type,
				     .off_mid = (uint16_t)(off >> 16),
				     .off_hi = (uint32_t)(off >> 32)};
}

static void idt_build(void)
{
	for (unsigned v = 0; v < 32; v++)
		idt_set(v, (const void *)(uintptr_t)exc_stubs[v], 0x8e);
	idt_set(6, ud_entry, 0x8e); /* #UD doubles as the ring-3 gate */
	idt_set(VEC_TIMER, timer_entry, 0x8e);
	idt_set(VEC_SPURIOUS, spurious_entry, 0x8e);
}

/* Fill and load cpu idx's TSS: RSP0 is where ring-3 interrupts land. */
static void tss_load(struct gcpu *c, uint32_t idx)
{
	uint64_t base = (uint64_t)(uintptr_t)&c->tss;
	uint64_t limit = sizeof(c->tss) - 1;
	unsigned slot = (GDT_TSS >> 3) + 2 * idx;

	c->tss.rsp0 = (uint64_t)(uintptr_t)kstacks[idx] + KSTACK_SIZE;
	c->tss.iomap_base = sizeof(c->tss); /* no bitmap: IOPL decides */
	gdt[slot] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		    (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[slot + 1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(GDT_TSS + 16 * idx));
}

static void lapic_wait_icr(void)
{
	for (int i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
		;
}

/* INIT-SIPI-SIPI to every other CPU; KVM needs no delays between them. */
static void smp_start_aps(void)
{
	memcpy((void *)(uintptr_t)TRAMP_PA, smp_tramp_start,
	       (size_t)(smp_tramp_end - smp_tramp_start));
	lapic_write(LAPIC_ICR_HI, 0);
	lapic_write(LAPIC_ICR_LO, ICR_INIT_ALL);
	lapic_wait_icr();
	lapic_write(LAPIC_ICR_LO, ICR_SIPI_ALL | (TRAMP_PA >> 12));
	lapic_wait_icr();
	lapic_write(LAPIC_ICR_LO, ICR_SIPI_ALL | (TRAMP_PA >> 12));
	lapic_wait_icr();
}

/* Called by start64 on each vCPU's ring-0 stack; returns its ring-3 stack top. */
uint64_t cpu_init_ring0(uint32_t idx)
{
	struct gcpu *c = &g.cpu[idx];
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr = {sizeof(idt) - 1, (uint64_t)(uintptr_t)idt};

	if (idx == 0) {
		cpu_probe();
		pt_map_high((const void *)(uintptr_t)boot_start_info);
		idt_build();
	}
	c->idx = idx;
	tss_load(c, idx);
	__asm__ volatile("lidt %0" : : "m"(idtr));
	if (g.has_kvmclock)
		wrmsr(MSR_KVM_SYSTEM_TIME_NEW, (uint64_t)(uintptr_t)&c->pvti | 1);
	if (g.has_apic) {
		/* Software-enable the LAPIC; its timer fires VEC_TIMER at the TSC deadline. */
		lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
		lapic_write(LAPIC_TPR, 0);
		lapic_write(LAPIC_LVT_TIMER, VEC_TIMER | (2u << 17));
		if (idx == 0)
			smp_start_aps();
	}
	return (uint64_t)(uintptr_t)ustacks[idx] + USTACK_SIZE;
}

/* Any exception is a bug (or an injected test crash): report and power off. */
void exc_fatal(struct exc_frame *f)
{
	uint64_t kbase = (uint64_t)(uintptr_t)kstacks;
	uint32_t idx = (uint32_t)(((uint64_t)(uintptr_t)f - kbase) / KSTACK_SIZE);
	uint64_t cr2;
	char what[96];

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	if (idx >= MAX_CPUS)
		idx = 0;
	gsnprintf(what, sizeof(what),
		  "exception vec=%lu err=0x%lx cs=0x%lx rfl=0x%lx rsp=0x%lx cr2=0x%lx", f->vec,
		  f->err, f->cs, f->rflags, f->rsp, cr2);
	/* The assert path only does port I/O, which ring 0 may do as well. */
	guest_fail(&g.cpu[idx], "guest/cpu.c", __LINE__, what, f->vec, f->rip);
}
