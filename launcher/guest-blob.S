/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The default guest ELF, embedded in the cleave binary.  CLEAVE_GUEST_ELF is
 * the path of guest/'s build output (meson passes it with -D); without it
 * the blob is empty and `cleave run` needs --guest.
 */
	.section .rodata.cleave_guest, "a"
	.balign 16
	.globl cleave_guest_blob_start
	.globl cleave_guest_blob_end
cleave_guest_blob_start:
#ifdef CLEAVE_GUEST_ELF
	.incbin CLEAVE_GUEST_ELF
#endif
cleave_guest_blob_end:

	.section .note.GNU-stack, "", @progbits
