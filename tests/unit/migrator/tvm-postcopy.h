/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The destination VM side of postcopy for the engine's test VM, as in
 * production: the migrator's end of the postcopy link as the engine's
 * postcopy ops, over a socketpair to cleave-vcpu's link server and its
 * page-fault service (vcpu-proc/postcopy-link.c, fault.c) on the tvm's RAM
 * mappings.  Only the RPCs (pause, resume, load state) stay in-process.
 * Test threads play the vCPUs: they touch guest RAM through
 * tvm.ram[].base, and a first touch of a page still at the source blocks
 * until the migration placed it.
 */
#ifndef CLEAVE_TEST_TVM_POSTCOPY_H
#define CLEAVE_TEST_TVM_POSTCOPY_H

#include "tvm.h"
#include "vcpu-proc/fault.h"

/* Whether this host lets the process open a userfaultfd (else a postcopy test skips). */
bool tvm_postcopy_usable(void);
/* tvm_init_env()'s @base->ops for a tvm that can take postcopy. */
const struct mig_vm_ops *tvm_postcopy_vm_ops(void);
/* The VM side for @t (after tvm_init_env with tvm_postcopy_vm_ops()). */
int tvm_postcopy_init(struct tvm *t);
/* Stops the fault service if the migration left it running (a failed one); before tvm_fini. */
void tvm_postcopy_fini(struct tvm *t);
/* The fault service's figures: live, or as it stopped. */
void tvm_postcopy_stats(struct tvm *t, struct fault_stats *st);
/* Whether the VM side is registered (between listen and end). */
bool tvm_postcopy_listening(struct tvm *t);
/* From now on place() fails with @err (a negative errno), or works again (0). */
void tvm_postcopy_fail_place(struct tvm *t, int err);

#endif
