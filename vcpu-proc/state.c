// SPDX-License-Identifier: GPL-2.0-only
/*
 * vCPU state save/load as raw KVM structures (see state.h).
 *
 * The fixed-size parts are described once in state_blobs[] and handled by
 * the same code for save, validation and load; MSRs and their quirks
 * (unreadable indices, the deferred TSC deadline, the wall-clock MSRs that
 * write guest RAM) are handled separately below.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <asm/kvm_para.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "log/log.h"
#include "vcpu-proc/state.h"

#define MSR_IA32_TSC_DEADLINE 0x000006e0

/* KVM_GET_MSR_INDEX_LIST is a few hundred entries; this bounds a bad blob. */
#define STATE_MAX_MSRS 4096

enum state_blob_id {
	BLOB_REGS,
	BLOB_SREGS,
	BLOB_XSAVE,
	BLOB_XCRS,
	BLOB_LAPIC,
	BLOB_EVENTS,
	BLOB_MP_STATE,
	BLOB_DEBUGREGS,
	BLOB_COUNT,
};

/* One fixed-size KVM structure of the vCPU state. */
struct state_blob {
	const char *name;      /* proto field name, for messages */
	size_t field;	       /* offset of its ProtobufCBinaryData in VcpuState */
	unsigned long get_req; /* KVM_GET_* ioctl */
	const char *get_name;  /* its name, for messages */
	unsigned long set_req; /* KVM_SET_* ioctl */
	const char *set_name;  /* its name, for messages */
	size_t size;	       /* structure size; 0 for XSAVE (asked of KVM) */
	int cap;	       /* KVM_CAP_* that must be present, 0 if always */
};

#define BLOB(id_, field_, get_, set_, type_, cap_)                                                 \
	[id_] = {.name = #field_,                                                                  \
		 .field = offsetof(Cleave__Vcpu__VcpuState, field_),                               \
		 .get_req = get_,                                                                  \
		 .get_name = #get_,                                                                \
		 .set_req = set_,                                                                  \
		 .set_name = #set_,                                                                \
		 .size = sizeof(type_),                                                            \
		 .cap = cap_}

static const struct state_blob state_blobs[BLOB_COUNT] = {
	BLOB(BLOB_REGS, regs, KVM_GET_REGS, KVM_SET_REGS, struct kvm_regs, 0),
	BLOB(BLOB_SREGS, sregs, KVM_GET_SREGS, KVM_SET_SREGS, struct kvm_sregs, 0),
	/* get_req and size are replaced by state_xsave_size() at run time. */
	BLOB(BLOB_XSAVE, xsave, KVM_GET_XSAVE, KVM_SET_XSAVE, struct kvm_xsave, KVM_CAP_XSAVE),
	BLOB(BLOB_XCRS, xcrs, KVM_GET_XCRS, KVM_SET_XCRS, struct kvm_xcrs, KVM_CAP_XCRS),
	/* Present only with an in-kernel irqchip; see state_blob_resolve(). */
	BLOB(BLOB_LAPIC, lapic, KVM_GET_LAPIC, KVM_SET_LAPIC, struct kvm_lapic_state,
	     KVM_CAP_IRQCHIP),
	BLOB(BLOB_EVENTS, events, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, struct kvm_vcpu_events,
	     KVM_CAP_VCPU_EVENTS),
	BLOB(BLOB_MP_STATE, mp_state, KVM_GET_MP_STATE, KVM_SET_MP_STATE, struct kvm_mp_state,
	     KVM_CAP_MP_STATE),
	BLOB(BLOB_DEBUGREGS, debugregs, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, struct kvm_debugregs,
	     KVM_CAP_DEBUGREGS),
};

/*
 * Load order, after QEMU's kvm_arch_put_registers() and the selftests'
 * vcpu_load_state():
 *  - sregs first: CR0/CR4/EFER and the APIC base decide how later state is
 *    interpreted (XCR0 needs the CPU mode, the LAPIC needs x2APIC or not);
 *  - MSRs (without the TSC deadline) before the LAPIC, whose reset of the
 *    timer would lose the deadline, which goes after it;
 *  - regs before events: KVM_SET_REGS drops a pending (not yet injected)
 *    exception, which KVM_SET_VCPU_EVENTS then restores;
 *  - MP state after the LAPIC, since INIT/SIPI states live in the LAPIC.
 * STATE_STEP_MSRS and STATE_STEP_MSRS_LATE mark the two MSR batches.
 */
enum { STATE_STEP_MSRS = BLOB_COUNT, STATE_STEP_MSRS_LATE };
static const int state_load_order[] = {
	BLOB_SREGS, STATE_STEP_MSRS,	  BLOB_XCRS,	 BLOB_XSAVE,  BLOB_REGS,
	BLOB_LAPIC, STATE_STEP_MSRS_LATE, BLOB_MP_STATE, BLOB_EVENTS, BLOB_DEBUGREGS,
};

static ProtobufCBinaryData *state_field(Cleave__Vcpu__VcpuState *s, const struct state_blob *b)
{
	return (ProtobufCBinaryData *)((char *)s + b->field);
}

static const ProtobufCBinaryData *state_field_const(const Cleave__Vcpu__VcpuState *s,
						    const struct state_blob *b)
{
	return (const ProtobufCBinaryData *)((const char *)s + b->field);
}

static int kvm_cap(int kvm_fd, int cap)
{
	int r = ioctl(kvm_fd, KVM_CHECK_EXTENSION, cap);

	return r < 0 ? 0 : r;
}

/*
 * XSAVE buffer size and get ioctl of the running KVM: KVM_GET_XSAVE2 with the
 * KVM_CAP_XSAVE2 size when there is one (it covers dynamically enabled
 * features such as AMX), else the legacy 4 KiB KVM_GET_XSAVE.  0 if neither.
 */
static size_t state_xsave_size(int kvm_fd, unsigned long *get_req, const char **get_name)
{
	int size = kvm_cap(kvm_fd, KVM_CAP_XSAVE2);

	if (size >= (int)sizeof(struct kvm_xsave)) {
		*get_req = KVM_GET_XSAVE2;
		*get_name = "KVM_GET_XSAVE2";
		return (size_t)size;
	}
	*get_req = KVM_GET_XSAVE;
	*get_name = "KVM_GET_XSAVE";
	return kvm_cap(kvm_fd, KVM_CAP_XSAVE) ? sizeof(struct kvm_xsave) : 0;
}

/*
 * The blob as the running KVM and this vCPU have it: *b is a copy of the
 * table entry with size and get ioctl resolved; size 0 means the part does
 * not exist here (capability missing, or no in-kernel LAPIC).  Probing the
 * LAPIC reads it, which has no side effect.
 */
static int state_blob_resolve(int kvm_fd, int vcpu_fd, enum state_blob_id id, struct state_blob *b)
{
	struct kvm_lapic_state lapic;

	*b = state_blobs[id];
	if (id == BLOB_XSAVE) {
		b->size = state_xsave_size(kvm_fd, &b->get_req, &b->get_name);
		return 0;
	}
	if (b->cap && !kvm_cap(kvm_fd, b->cap)) {
		b->size = 0;
		return 0;
	}
	if (id == BLOB_LAPIC && ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0) {
		int err = -errno;

		/* KVM's answer for a VM without KVM_CREATE_IRQCHIP (ENXIO in older ones). */
		if (err != -EINVAL && err != -ENXIO) {
			log_err("KVM_GET_LAPIC: %s", strerror(-err));
			return err;
		}
		b->size = 0;
	}
	return 0;
}

/* ---- MSRs ---- */

/* The MSR indices this KVM saves and restores; *list is malloc'd. */
static int state_msr_index_list(int kvm_fd, struct kvm_msr_list **list)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	struct kvm_msr_list *l;

	/* Asking with room for none returns E2BIG and the count. */
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG) {
		int err = -errno;

		log_err("KVM_GET_MSR_INDEX_LIST: %s", strerror(-err));
		return err;
	}
	l = calloc(1, sizeof(*l) + probe.nmsrs * sizeof(l->indices[0]));
	if (!l)
		return -ENOMEM;
	l->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, l) < 0) {
		int err = -errno;

		log_err("KVM_GET_MSR_INDEX_LIST (%u entries): %s", probe.nmsrs, strerror(errno));
		free(l);
		return err;
	}
	*list = l;
	return 0;
}

static struct kvm_msrs *state_msrs_alloc(size_t n)
{
	return calloc(1, sizeof(struct kvm_msrs) + n * sizeof(struct kvm_msr_entry));
}

/*
 * KVM_GET_MSRS of every listed index.  KVM stops at the first index it cannot
 * read and returns how many it did; such an index (a feature this host or
 * backend does not have) is dropped and the read retried, so what is saved is
 * exactly what KVM can give back.
 */
static int state_msrs_save(int kvm_fd, int vcpu_fd, unsigned int index,
			   Cleave__Vcpu__VcpuState *out)
{
	struct kvm_msr_list *list = NULL;
	struct kvm_msrs *msrs;
	unsigned int skipped = 0;
	size_t i;
	int ret, r;

	ret = state_msr_index_list(kvm_fd, &list);
	if (ret)
		return ret;
	msrs = state_msrs_alloc(list->nmsrs);
	if (!msrs) {
		ret = -ENOMEM;
		goto err_list;
	}
	msrs->nmsrs = list->nmsrs;
	for (i = 0; i < list->nmsrs; i++)
		msrs->entries[i].index = list->indices[i];

	for (;;) {
		r = ioctl(vcpu_fd, KVM_GET_MSRS, msrs);
		if (r < 0) {
			ret = -errno;
			log_err("KVM_GET_MSRS vcpu %u (%u MSRs): %s", index, msrs->nmsrs,
				strerror(errno));
			goto err_msrs;
		}
		if ((unsigned int)r >= msrs->nmsrs)
			break;
		log_debug("KVM_GET_MSRS vcpu %u: MSR 0x%x not readable, not saved", index,
			  msrs->entries[r].index);
		memmove(&msrs->entries[r], &msrs->entries[r + 1],
			(msrs->nmsrs - (unsigned int)r - 1) * sizeof(msrs->entries[0]));
		msrs->nmsrs--;
		skipped++;
	}
	if (skipped)
		log_debug("vcpu %u: saved %u MSRs, skipped %u unreadable", index, msrs->nmsrs,
			  skipped);

	out->msrs = calloc(msrs->nmsrs ? msrs->nmsrs : 1, sizeof(out->msrs[0]));
	if (!out->msrs) {
		ret = -ENOMEM;
		goto err_msrs;
	}
	for (i = 0; i < msrs->nmsrs; i++) {
		Cleave__Vcpu__Msr *m = malloc(sizeof(*m));

		if (!m) {
			ret = -ENOMEM;
			goto err_msrs; /* the caller releases the entries made so far */
		}
		cleave__vcpu__msr__init(m);
		m->index = msrs->entries[i].index;
		m->data = msrs->entries[i].data;
		out->msrs[out->n_msrs++] = m;
	}
	ret = 0;
err_msrs:
	free(msrs);
err_list:
	free(list);
	return ret;
}

static bool state_msr_listed(const struct kvm_msr_list *list, uint32_t index)
{
	for (uint32_t i = 0; i < list->nmsrs; i++) {
		if (list->indices[i] == index)
			return true;
	}
	return false;
}

/*
 * The wall-clock MSRs are not loaded: a write makes KVM write the wall clock
 * into guest RAM at once, at whatever GPA the guest last named, and the guest
 * writes the MSR again each time it wants the value (Linux does in
 * kvm_get_wallclock()), so restoring it only risks a host write into memory
 * the guest may have reused (docs/INVARIANTS.md, invariant 3).
 */
static bool state_msr_skip_on_load(uint32_t index)
{
	return index == MSR_KVM_WALL_CLOCK || index == MSR_KVM_WALL_CLOCK_NEW;
}

/* Checks every MSR of *in against this KVM; no ioctl with side effects. */
static int state_msrs_validate(int kvm_fd, const Cleave__Vcpu__VcpuState *in)
{
	struct kvm_msr_list *list = NULL;
	int ret;

	if (in->n_msrs > STATE_MAX_MSRS) {
		log_err("vcpu %u state: %zu MSRs, more than %u", in->index, in->n_msrs,
			STATE_MAX_MSRS);
		return -EINVAL;
	}
	ret = state_msr_index_list(kvm_fd, &list);
	if (ret)
		return ret;
	for (size_t i = 0; i < in->n_msrs; i++) {
		if (!in->msrs[i]) {
			log_err("vcpu %u state: MSR entry %zu missing", in->index, i);
			ret = -EINVAL;
			break;
		}
		if (!state_msr_listed(list, in->msrs[i]->index)) {
			log_err("vcpu %u state: MSR 0x%x is not in this KVM's MSR index list",
				in->index, in->msrs[i]->index);
			ret = -EINVAL;
			break;
		}
	}
	free(list);
	return ret;
}

/*
 * Where an MSR goes in the load.  KVM applies KVM_SET_MSRS entries in order,
 * so within the early batch the async-PF enable follows its interrupt vector
 * (as in QEMU: enabling can queue "page ready" notifications at once).  The
 * TSC deadline is loaded after the LAPIC, whose KVM_SET_LAPIC resets it.
 */
enum state_msr_batch {
	MSR_BATCH_EARLY,      /* before the LAPIC */
	MSR_BATCH_EARLY_LAST, /* before the LAPIC, after the rest of the batch */
	MSR_BATCH_AFTER_LAPIC,
	MSR_BATCH_NONE, /* not loaded */
};

static enum state_msr_batch state_msr_batch(uint32_t index)
{
	if (state_msr_skip_on_load(index))
		return MSR_BATCH_NONE;
	if (index == MSR_IA32_TSC_DEADLINE)
		return MSR_BATCH_AFTER_LAPIC;
	if (index == MSR_KVM_ASYNC_PF_EN)
		return MSR_BATCH_EARLY_LAST;
	return MSR_BATCH_EARLY;
}

/*
 * Removes from *msrs (order kept) the entries the vCPU already holds.  KVM
 * lets some MSRs be read but refuses any write in some VM configurations
 * (MSR_KVM_ASYNC_PF_INT, even 0, without an in-kernel LAPIC), and writing a
 * value the vCPU holds changes nothing, so only differences are written.  An
 * index KVM_GET_MSRS stops at, and everything after it, is kept.
 */
static int state_msrs_drop_unchanged(int vcpu_fd, struct kvm_msrs *msrs)
{
	size_t bytes = msrs->nmsrs * sizeof(msrs->entries[0]);
	struct kvm_msrs *cur;
	unsigned int nread, kept = 0;
	int r;

	cur = state_msrs_alloc(msrs->nmsrs);
	if (!cur)
		return -ENOMEM;
	cur->nmsrs = msrs->nmsrs;
	memcpy(cur->entries, msrs->entries, bytes);
	r = ioctl(vcpu_fd, KVM_GET_MSRS, cur);
	nread = r < 0 ? 0 : (unsigned int)r;
	for (unsigned int i = 0; i < msrs->nmsrs; i++) {
		if (i < nread && cur->entries[i].data == msrs->entries[i].data)
			continue;
		msrs->entries[kept++] = msrs->entries[i];
	}
	msrs->nmsrs = kept;
	free(cur);
	return 0;
}

/*
 * KVM_SET_MSRS of the saved MSRs that go in the early batch (late false) or
 * after the LAPIC (late true).  KVM returns how many it set and stops at the
 * first one it rejects; that one is named in the error.
 */
static int state_msrs_load(int vcpu_fd, const Cleave__Vcpu__VcpuState *in, bool late)
{
	static const enum state_msr_batch early[] = {MSR_BATCH_EARLY, MSR_BATCH_EARLY_LAST};
	static const enum state_msr_batch after[] = {MSR_BATCH_AFTER_LAPIC};
	const enum state_msr_batch *batches = late ? after : early;
	size_t nbatches = late ? 1 : 2;
	struct kvm_msrs *msrs;
	int ret = 0, r;

	msrs = state_msrs_alloc(in->n_msrs);
	if (!msrs)
		return -ENOMEM;
	for (size_t b = 0; b < nbatches; b++) {
		for (size_t i = 0; i < in->n_msrs; i++) {
			if (state_msr_batch(in->msrs[i]->index) != batches[b])
				continue;
			msrs->entries[msrs->nmsrs].index = in->msrs[i]->index;
			msrs->entries[msrs->nmsrs].data = in->msrs[i]->data;
			msrs->nmsrs++;
		}
	}
	ret = state_msrs_drop_unchanged(vcpu_fd, msrs);
	if (ret || !msrs->nmsrs)
		goto out;
	r = ioctl(vcpu_fd, KVM_SET_MSRS, msrs);
	if (r < 0) {
		ret = -errno;
		log_err("KVM_SET_MSRS vcpu %u (%u MSRs): %s", in->index, msrs->nmsrs,
			strerror(errno));
	} else if ((unsigned int)r < msrs->nmsrs) {
		ret = -EINVAL;
		log_err("KVM_SET_MSRS vcpu %u: MSR 0x%x = 0x%llx rejected (%d of %u set)",
			in->index, msrs->entries[r].index,
			(unsigned long long)msrs->entries[r].data, r, msrs->nmsrs);
	}
out:
	free(msrs);
	return ret;
}

/* ---- the whole vCPU ---- */

void vcpu_state_release(Cleave__Vcpu__VcpuState *s)
{
	for (int i = 0; i < BLOB_COUNT; i++)
		free(state_field(s, &state_blobs[i])->data);
	for (size_t i = 0; i < s->n_msrs; i++)
		free(s->msrs[i]);
	free(s->msrs);
	cleave__vcpu__vcpu_state__init(s);
}

int vcpu_state_save(int kvm_fd, int vcpu_fd, unsigned int index, Cleave__Vcpu__VcpuState *out)
{
	struct state_blob b;
	int ret;

	cleave__vcpu__vcpu_state__init(out);
	out->index = index;
	for (int id = 0; id < BLOB_COUNT; id++) {
		ProtobufCBinaryData *f = state_field(out, &state_blobs[id]);

		ret = state_blob_resolve(kvm_fd, vcpu_fd, id, &b);
		if (ret)
			goto err_release;
		if (!b.size) {
			log_debug("vcpu %u: no %s in this KVM/VM, not saved", index, b.name);
			continue;
		}
		f->data = calloc(1, b.size);
		if (!f->data) {
			ret = -ENOMEM;
			goto err_release;
		}
		f->len = b.size;
		if (ioctl(vcpu_fd, b.get_req, f->data) < 0) {
			ret = -errno;
			log_err("%s vcpu %u: %s", b.get_name, index, strerror(errno));
			goto err_release;
		}
	}
	ret = state_msrs_save(kvm_fd, vcpu_fd, index, out);
	if (ret)
		goto err_release;
	return 0;

err_release:
	vcpu_state_release(out);
	return ret;
}

/* Every blob has the size the running KVM expects, or is absent on both sides. */
static int state_validate(int kvm_fd, int vcpu_fd, const Cleave__Vcpu__VcpuState *in,
			  struct state_blob resolved[BLOB_COUNT])
{
	int ret;

	for (int id = 0; id < BLOB_COUNT; id++) {
		const ProtobufCBinaryData *f = state_field_const(in, &state_blobs[id]);
		struct state_blob *b = &resolved[id];

		ret = state_blob_resolve(kvm_fd, vcpu_fd, id, b);
		if (ret)
			return ret;
		if (f->len != b->size) {
			log_err("vcpu %u state: %s is %zu bytes, this KVM/VM expects %zu",
				in->index, b->name, f->len, b->size);
			return -EINVAL;
		}
		if (f->len && !f->data) {
			log_err("vcpu %u state: %s has no data", in->index, b->name);
			return -EINVAL;
		}
	}
	return state_msrs_validate(kvm_fd, in);
}

int vcpu_state_load(int kvm_fd, int vcpu_fd, const Cleave__Vcpu__VcpuState *in)
{
	struct state_blob resolved[BLOB_COUNT];
	int ret;

	ret = state_validate(kvm_fd, vcpu_fd, in, resolved);
	if (ret)
		return ret;

	for (size_t i = 0; i < sizeof(state_load_order) / sizeof(state_load_order[0]); i++) {
		int step = state_load_order[i];
		const ProtobufCBinaryData *f;

		if (step == STATE_STEP_MSRS || step == STATE_STEP_MSRS_LATE) {
			ret = state_msrs_load(vcpu_fd, in, step == STATE_STEP_MSRS_LATE);
			if (ret)
				return ret;
			continue;
		}
		f = state_field_const(in, &state_blobs[step]);
		if (!f->len)
			continue; /* absent here too, checked by state_validate() */
		/*
		 * The blobs go back as KVM gave them: KVM_GET_VCPU_EVENTS already
		 * flags the NMI state valid, and reports no SIPI vector to restore.
		 */
		if (ioctl(vcpu_fd, resolved[step].set_req, f->data) < 0) {
			ret = -errno;
			log_err("%s vcpu %u: %s", resolved[step].set_name, in->index,
				strerror(-ret));
			return ret;
		}
	}
	return 0;
}
