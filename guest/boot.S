/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * cleave-guest ring-0 entry: PVH 32-bit entry -> long mode -> ring 3, plus
 * the interrupt stubs.  Every instruction here is emulated on the PVM host,
 * so the page tables for 0-4 GiB are built by the assembler, not at run time.
 */
#include "guest.h"

#define CR0_PE 0x00000001
#define CR0_WP 0x00010000
#define CR0_NW 0x20000000
#define CR0_CD 0x40000000
#define CR0_PG 0x80000000
#define CR4_PAE 0x00000020
#define EFER_LME 0x00000100
#define PTE_PWU 0x07 /* present, writable, user: ring 3 reaches all of RAM */
#define PTE_PS 0x80
#define PTE_PCD_PWT 0x18

/* The Xen PVH note: QEMU and cleave enter at this 32-bit physical address. */
	.section .note.pvh, "a"
	.p2align 2
	.long 4, 4, 18 /* namesz, descsz, XEN_ELFNOTE_PHYS32_ENTRY */
	.asciz "Xen"
	.long pvh_entry32

	.section .text.boot, "ax"
	.code32
	.globl pvh_entry32, common32
/* BSP: 32-bit protected mode, paging off, flat segments, EBX = start_info. */
pvh_entry32:
	movl %ebx, boot_start_info
	/* TSC at entry, so cpu 0 can report how long ring-0 set-up took. */
	rdtsc
	movl %eax, boot_tsc
	movl %edx, boot_tsc + 4

/* BSP and APs (from ap_entry32): PAE + our page tables + EFER.LME + paging. */
common32:
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	/* APs come out of INIT with CD|NW set: clear them along with enabling paging. */
	movl %cr0, %eax
	andl $~(CR0_CD | CR0_NW), %eax
	orl $(CR0_PG | CR0_PE | CR0_WP), %eax
	movl %eax, %cr0
	/* Now in compatibility mode: load our GDT and jump to its 64-bit code segment. */
	lgdt gdt_ptr
	ljmp $KERNEL_CS, $start64

	.code64
start64:
	/* Flat data segments; FS/GS unused. */
	movl $KERNEL_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	/* Claim a cpu index: the BSP gets 0 because it arrives before any SIPI. */
	movl $1, %eax
	lock xaddl %eax, cpu_next
	cmpl $MAX_CPUS, %eax
	jae park
	/* This cpu's ring-0 stack: kstacks[idx + 1]. */
	movl %eax, %ebx
	leaq 1(%rbx), %rsp
	imulq $KSTACK_SIZE, %rsp, %rsp
	addq $kstacks, %rsp
	movl %ebx, %edi
	call cpu_init_ring0 /* returns the ring-3 stack top */
	/* iretq to ring3_main(idx) in ring 3, RFLAGS_USER (IOPL 0, IF 0). */
	pushq $USER_DS
	pushq %rax
	pushq $RFLAGS_USER
	pushq $USER_CS
	pushq $ring3_main
	movl %ebx, %edi
	iretq

/* More vCPUs than MAX_CPUS: keep the extra ones halted forever. */
park:
	cli
	hlt
	jmp park

/*
 * Exceptions: every vector reports and powers off (exc_fatal).  Stubs push a
 * zero where the CPU pushes no error code so the frame is uniform.
 */
	.macro EXC vec, err
	.p2align 4
exc_\vec:
	.if \err == 0
	pushq $0
	.endif
	pushq $\vec
	jmp exc_common
	.endm

	.irp v, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
	EXC \v, 0
	.endr
	.irp v, 8,10,11,12,13,14,17,21,29,30
	EXC \v, 1
	.endr

exc_common:
	/* Save the GPRs as struct exc_frame (cpu.c) and report; never returns. */
	pushq %rax
	pushq %rbx
	pushq %rcx
	pushq %rdx
	pushq %rsi
	pushq %rdi
	pushq %rbp
	pushq %r8
	pushq %r9
	pushq %r10
	pushq %r11
	pushq %r12
	pushq %r13
	pushq %r14
	pushq %r15
	movq %rsp, %rdi
	call exc_fatal

/* LAPIC timer: it only has to end the hlt of the sleep gate; EOI and return. */
	.globl timer_entry, spurious_entry, ud_entry
timer_entry:
	pushq %rax
	movl $(LAPIC_BASE + 0xb0), %eax
	movl $0, (%rax)
	popq %rax
	iretq

spurious_entry:
	iretq

/*
 * #UD: either the ring-3 gate (ud2 with r11d = GATE_MAGIC, see guest.h) or
 * a real invalid opcode, which is fatal.  Gate calls clobber rax, rcx, rdx
 * and r11.
 */
ud_entry:
	cmpl $GATE_MAGIC, %r11d
	jne exc_6
	/* Consume the magic so a later stray ud2 cannot pass for a gate call. */
	xorl %r11d, %r11d
	addq $2, (%rsp) /* return past the ud2 */
	cmpl $GATE_OUTB, %ecx
	je 1f
	cmpl $GATE_OUTL, %ecx
	je 2f
	cmpl $GATE_SLEEP, %ecx
	je 3f
	inb %dx, %al
	iretq
1:	outb %al, %dx
	iretq
2:	outl %eax, %dx
	iretq
	/*
	 * Sleep: arm the TSC deadline in rdi and halt until an interrupt.
	 * sti's one-instruction shadow makes sti;hlt atomic, so a deadline
	 * already past still ends the hlt.
	 */
3:	movl $MSR_TSC_DEADLINE, %ecx
	movl %edi, %eax
	movq %rdi, %rdx
	shrq $32, %rdx
	wrmsr
	sti
	hlt
	cli
	iretq

	.globl exc_stubs
	.section .rodata
	.p2align 3
/* exc_stubs[v]: entry of exception vector v (cpu.c builds the IDT from it). */
exc_stubs:
	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.quad exc_\v
	.endr

	.data
/* cpu index allocator for start64. */
cpu_next:
	.long 0
	.globl boot_start_info, boot_tsc
boot_start_info:
	.long 0
	.p2align 3
boot_tsc:
	.quad 0

	.p2align 4
	.globl gdt, gdt_ptr
gdt:
	.quad 0
	.quad 0x00af9a000000ffff /* 0x08 ring-0 code, 64-bit */
	.quad 0x00cf92000000ffff /* 0x10 ring-0 data, flat */
	.quad 0x00cf9a000000ffff /* 0x18 ring-0 code, 32-bit flat (AP trampoline) */
	.quad 0x00cff2000000ffff /* 0x20 ring-3 data */
	.quad 0x00affa000000ffff /* 0x28 ring-3 code, 64-bit */
	.fill 2 * MAX_CPUS, 8, 0 /* 0x30: one TSS descriptor per cpu (cpu.c) */
gdt_end:
/* 10 bytes: 32-bit lgdt reads the low 6, 64-bit lgdt all of it. */
gdt_ptr:
	.word gdt_end - gdt - 1
	.quad gdt

/*
 * Identity map of 0-4 GiB with 2 MiB pages, built at assembly time.  The
 * page holding the LAPIC is uncached.  pdpt[4..15] (RAM above 4 GiB) are
 * filled by cpu.c from the memory map.
 */
	.p2align 12
	.globl pml4, pdpt
pml4:
	.quad pdpt + PTE_PWU
	.fill 511, 8, 0
pdpt:
	.quad pd_low + PTE_PWU
	.quad pd_low + 0x1000 + PTE_PWU
	.quad pd_low + 0x2000 + PTE_PWU
	.quad pd_low + 0x3000 + PTE_PWU
	.fill 508, 8, 0
pd_low:
	.set i, 0
	.rept 2048
	.quad (i << 21) | PTE_PS | PTE_PWU | ((i == (LAPIC_BASE >> 21)) & PTE_PCD_PWT)
	.set i, i + 1
	.endr

	.section .note.GNU-stack, "", @progbits
