/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cleave-guest: shared definitions of the embedded test guest.
 *
 * The guest is one freestanding ELF: ring-0 code (boot.S, smp.S, cpu.c)
 * sets up long mode, descriptor tables, kvmclock and the local APIC and
 * then drops every vCPU to ring 3, where everything else runs (main.c,
 * pages.c, pvclock.c, serial.c, ucall.c).  Ring 0 is emulated on the PVM
 * host (~1 us per instruction), ring 3 runs natively, so ring 0 does as
 * little as possible.  docs/GUEST.md describes the boot ABI.
 *
 * This header is included by assembly too; C-only parts are guarded.
 */
#ifndef CLEAVE_GUEST_GUEST_H
#define CLEAVE_GUEST_GUEST_H

#define MAX_CPUS    16
#define KSTACK_SIZE 8192  /* ring 0: interrupts, sleep syscall, fatal exceptions */
#define USTACK_SIZE 16384 /* ring 3: all the C code after boot */

/* GDT selectors (boot.S builds the table). */
#define KERNEL_CS   0x08
#define KERNEL_DS   0x10
#define KERNEL_CS32 0x18 /* 32-bit code, for the AP trampoline's first far jump */
#define USER_DS	    0x23 /* 0x20 | RPL 3 */
#define USER_CS	    0x2b /* 0x28 | RPL 3 */
#define GDT_TSS	    0x30 /* cpu i's 16-byte TSS descriptor at GDT_TSS + 16 * i */

/*
 * Ring 3 runs with IF = 0 and IOPL = 0.  IOPL 3 would let it do port I/O
 * directly, but the PVM host runs guest ring 3 natively with the host's
 * IOPL 0 (RFLAGS.IOPL reads back 0), so port I/O goes through the gate.
 */
#define RFLAGS_USER 0x0002

#define VEC_TIMER    0xec /* LAPIC TSC-deadline timer: EOI and return */
#define VEC_SPURIOUS 0xff

/*
 * Ring 3 -> ring 0 gate.  On PVM `int n` from ring 3 raises #UD (and KVM's
 * emulator cannot run `int n` in ring 0), but exceptions are delivered
 * through the IDT.  So ring 3 calls ring 0 with `ud2` and r11d = GATE_MAGIC;
 * the #UD handler (boot.S) serves ecx = GATE_*, then skips the ud2.
 */
#define GATE_MAGIC 0x45544147 /* "GATE" */
#define GATE_INB   0	      /* al = inb(dx) */
#define GATE_OUTB  1	      /* outb(al, dx) */
#define GATE_OUTL  2	      /* outl(eax, dx) */
#define GATE_SLEEP 3	      /* arm the TSC deadline rdi, hlt until an interrupt */

#define TRAMP_PA   0x8000 /* AP real-mode entry, SIPI vector 0x08 */
#define IMAGE_BASE 0x100000
#define LAPIC_BASE 0xfee00000

#define MSR_EFER		0xc0000080
#define MSR_TSC_DEADLINE	0x6e0
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01

#ifndef __ASSEMBLER__

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ucall.h"

#define PAGE_SIZE 4096UL
#define MIB	  (1024UL * 1024UL)
#define NSEC	  1000000000UL

/* struct hvm_start_info (Xen public arch-x86/hvm/start_info.h), version 1. */
#define HVM_START_MAGIC 0x336ec578
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr; /* version >= 1 */
	uint32_t memmap_entries;
	uint32_t reserved;
};

struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* 1 = RAM */
	uint32_t reserved;
};

/* KVM's per-vCPU clock page (Documentation/virt/kvm/x86/msr.rst). */
struct pvclock_vcpu_time_info {
	uint32_t version; /* odd while KVM updates the fields */
	uint32_t pad0;
	uint64_t tsc_timestamp;
	uint64_t system_time; /* ns at tsc_timestamp */
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags; /* bit 0: TSC stable across vCPUs */
	uint8_t pad[2];
};
#define PVCLOCK_TSC_STABLE    0x01
#define PVCLOCK_GUEST_STOPPED 0x02 /* set by the host's KVM_KVMCLOCK_CTRL after a pause */

/* 64-bit TSS; the I/O bitmap is absent, so IOPL alone gates ring-3 `in`/`out`. */
struct tss {
	uint32_t reserved0;
	uint64_t rsp0; /* ring-0 stack for interrupts taken in ring 3 */
	uint64_t rsp1, rsp2;
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

enum guest_mode { MODE_IDLE, MODE_DIRTY, MODE_POWEROFF };

/* The command line, parsed once by cpu 0 before the other vCPUs are released. */
struct guest_config {
	enum guest_mode mode;
	uint64_t mib;	  /* size of the test area */
	uint64_t rate;	  /* MiB/s for the whole guest, 0 = unlimited (dirty mode) */
	uint32_t cpus;	  /* vCPUs to wait for, 0 = whoever answers */
	bool report;	  /* UCALL_WRITES after each pass */
	uint64_t seconds; /* power off after this much guest time, 0 = never */
	uint64_t hb_ms;	  /* heartbeat period */
	uint32_t crash;	  /* test hook after READY on cpu 0: 1 ud2, 2 corrupt a page */
};

/* A contiguous piece of the test area. */
struct area_extent {
	uint64_t gpa;
	uint64_t first; /* area page index of gpa */
	uint64_t pages;
};
#define AREA_MAX_EXTENTS 8

/*
 * Per-vCPU state, one page each.  Only its own vCPU writes it after boot,
 * except pvti, which KVM writes.
 */
struct gcpu {
	struct pvclock_vcpu_time_info pvti; /* first: 32-byte aligned, KVM writes it */
	struct ucall uc;		    /* reports to the host (ucall.c) */
	struct tss tss;
	uint32_t idx;	     /* cpu index as the guest numbers it */
	uint64_t last_ns;    /* last kvmclock value read here: never goes back */
	uint64_t next_hb_ns; /* next heartbeat due */
	uint64_t gen;	     /* generation of the last completed pass */
	uint64_t first_page; /* share of the area: [first_page, first_page + pages) */
	uint64_t pages;
	uint64_t verify_next; /* idle mode: where the next verify slice starts */
	uint64_t ns_per_page; /* dirty-mode pacing, 0 = unlimited */
	uint64_t pace_t0_ns;  /* pacing epoch and pages written since */
	uint64_t paced_pages;
} __attribute__((aligned(4096)));

/*
 * The guest's one global.  Fields written in ring 0 by cpu 0 during boot are
 * read-only afterwards; `online`, `go` and `clock_last` are shared atomics.
 */
struct guest {
	struct gcpu cpu[MAX_CPUS];
	/* Features found by cpu 0 in ring 0 (CPUID is not trusted in ring 3). */
	bool has_kvmclock;
	bool has_apic;
	bool can_halt; /* TSC-deadline timer usable: ring 3 may use GATE_SLEEP */
	bool has_1g_pages;
	uint64_t mapped_top; /* page tables identity-map [0, mapped_top) */
	/* Set by cpu 0 in ring 3 before `go`. */
	struct guest_config cfg;
	uint32_t ncpus; /* vCPUs that work; later arrivals park */
	struct area_extent ext[AREA_MAX_EXTENTS];
	uint32_t next_ext;
	uint64_t area_pages;
	uint64_t t0_ns;	     /* kvmclock at boot, for seconds= */
	uint32_t online;     /* vCPUs that reached ring 3 (atomic) */
	uint32_t go;	     /* release flag, pairs with the acquire loads in ap_main */
	uint64_t clock_last; /* largest kvmclock value any vCPU read (atomic max) */
	uint32_t serial_lock;
};

extern struct guest g;
extern uint32_t boot_start_info; /* EBX at the PVH entry (boot.S) */
extern uint64_t boot_tsc;	 /* TSC at the PVH entry (boot.S) */
extern char _end[], smp_tramp_start[], smp_tramp_end[];
extern uint8_t kstacks[MAX_CPUS][KSTACK_SIZE];

/* cpu.c: ring 0 */
uint64_t cpu_init_ring0(uint32_t idx);
struct exc_frame;
void exc_fatal(struct exc_frame *f) __attribute__((noreturn));

/* main.c */
void ring3_main(uint32_t idx) __attribute__((noreturn));
void worker_tick(struct gcpu *c, uint64_t pages_written);

/* pvclock.c: ring 3 */
uint64_t clock_ns(struct gcpu *c);
uint64_t clock_tsc_to_ns(struct gcpu *c, uint64_t tsc_delta);
void clock_sleep_until(struct gcpu *c, uint64_t until_ns);

/* serial.c */
void serial_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int gfmt(char *buf, size_t size, const char *fmt, __builtin_va_list ap);
int gsnprintf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void serial_write_locked(const char *s, bool may_wait);

/* ucall.c */
void ucall(struct gcpu *c, uint64_t cmd, const uint64_t *args, int nargs, const char *text);
void guest_fail(struct gcpu *c, const char *file, int line, const char *what, uint64_t a,
		uint64_t b) __attribute__((noreturn));
void guest_poweroff(uint32_t code) __attribute__((noreturn));

#define GUEST_ASSERT(c, cond, a, b)                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			guest_fail((c), "guest/" __FILE_NAME__, __LINE__, #cond, (a), (b));        \
	} while (0)

/* pages.c: ring 3 */
void area_layout(void);
void pages_write_pass(struct gcpu *c, uint64_t gen, bool verify_prev);
void pages_verify_slice(struct gcpu *c, uint64_t max_pages);
void pages_report(struct gcpu *c, uint64_t gen);
void pages_corrupt(struct gcpu *c);

static inline bool cpu_in_ring0(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	return (cs & 3) == 0;
}

/* One ring-0 service from ring 3 (see GATE_MAGIC); clobbers rax, rcx, rdx, r11. */
static inline uint32_t gate_call(uint32_t op, uint16_t port, uint32_t v, uint64_t rdi)
{
	register uint64_t magic __asm__("r11") = GATE_MAGIC;
	uint64_t rcx = op, rdx = port;

	__asm__ volatile("ud2" : "+a"(v), "+c"(rcx), "+d"(rdx) : "r"(magic), "D"(rdi) : "memory");
	return v;
}

/*
 * Port I/O: through the gate from ring 3, directly in ring 0 (boot and the
 * fatal path).  IOPL 3 would allow it in ring 3, but PVM runs guest ring 3
 * with the host's IOPL 0.
 */
static inline uint32_t pio(uint32_t op, uint16_t port, uint32_t v)
{
	if (!cpu_in_ring0())
		return gate_call(op, port, v, 0);
	if (op == GATE_INB) {
		uint8_t b;
		__asm__ volatile("inb %1, %0" : "=a"(b) : "Nd"(port) : "memory");
		return b;
	}
	if (op == GATE_OUTB)
		__asm__ volatile("outb %b0, %1" : : "a"(v), "Nd"(port) : "memory");
	else
		__asm__ volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
	return v;
}

static inline void outb(uint16_t port, uint8_t v)
{
	pio(GATE_OUTB, port, v);
}

static inline void outl(uint16_t port, uint32_t v)
{
	pio(GATE_OUTL, port, v);
}

static inline uint8_t inb(uint16_t port)
{
	return (uint8_t)pio(GATE_INB, port, 0);
}

static inline void cpu_relax(void)
{
	__asm__ volatile("pause" ::: "memory");
}

static inline uint64_t rdtsc_ordered(void)
{
	uint32_t lo, hi;
	/* lfence: the TSC is read after every earlier load has completed. */
	__asm__ volatile("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return ((uint64_t)hi << 32) | lo;
}

void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
size_t strlen(const char *s);

#endif /* __ASSEMBLER__ */
#endif
