/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * AP start-up.  cpu.c copies smp_tramp_start..smp_tramp_end to TRAMP_PA and
 * sends INIT-SIPI-SIPI with vector TRAMP_PA >> 12; each AP starts here in
 * real mode at CS:IP = 0x0800:0000 and joins the BSP's path in boot.S.
 */
#include "guest.h"

	.set gdt_end_minus_1, 6 * 8 + 16 * MAX_CPUS - 1

	.section .rodata
	.code16
	.globl smp_tramp_start, smp_tramp_end
smp_tramp_start:
	/* Real mode, position-independent: DS = CS so offsets address the copy. */
	cli
	movw %cs, %ax
	movw %ax, %ds
	lgdtl (tramp_gdt_ptr - smp_tramp_start)
	/* Protected mode, then a far jump into the image's 32-bit code segment. */
	movl %cr0, %eax
	orl $1, %eax
	movl %eax, %cr0
	ljmpl $KERNEL_CS32, $ap_entry32
	.p2align 2
tramp_gdt_ptr:
	.word gdt_end_minus_1
	.long gdt
smp_tramp_end:

	.text
	.code32
/* 32-bit protected mode with our GDT: flat data, then the BSP's long-mode path. */
ap_entry32:
	movl $KERNEL_DS, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	jmp common32

	.section .note.GNU-stack, "", @progbits
