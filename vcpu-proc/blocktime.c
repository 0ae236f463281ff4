// SPDX-License-Identifier: GPL-2.0-only
/* Postcopy blocktime bookkeeping (blocktime.h); the caller holds the lock. */
#include "vcpu-proc/blocktime.h"

#include <errno.h>
#include <stdlib.h>

int blocktime_set_vcpus(struct blocktime *bt, const pid_t *tids, unsigned int n)
{
	struct blocktime_vcpu *v = n ? calloc(n, sizeof(*v)) : NULL;

	blocktime_fini(bt);
	if (n && !v)
		return -ENOMEM;
	for (unsigned int i = 0; i < n; i++)
		v[i].tid = tids[i];
	bt->v = v;
	bt->nr = n;
	return 0;
}

void blocktime_fini(struct blocktime *bt)
{
	free(bt->v);
	*bt = (struct blocktime){0};
}

void blocktime_fault(struct blocktime *bt, pid_t tid, uint32_t region, uint64_t page,
		     uint64_t now_ns)
{
	for (unsigned int i = 0; i < bt->nr; i++) {
		struct blocktime_vcpu *v = &bt->v[i];

		if (v->tid != tid)
			continue;
		v->region = region;
		v->page = page;
		if (v->blocked)
			return;
		v->blocked = true;
		v->since_ns = now_ns;
		if (++bt->nr_blocked == bt->nr)
			bt->all_since_ns = now_ns;
		return;
	}
}

void blocktime_woken(struct blocktime *bt, uint32_t region, uint64_t first, uint64_t n,
		     uint64_t now_ns)
{
	for (unsigned int i = 0; i < bt->nr; i++) {
		struct blocktime_vcpu *v = &bt->v[i];

		if (!v->blocked || v->region != region || v->page < first || v->page - first >= n)
			continue;
		if (bt->nr_blocked == bt->nr && now_ns > bt->all_since_ns)
			bt->all_total_ns += now_ns - bt->all_since_ns;
		if (now_ns > v->since_ns)
			v->total_ns += now_ns - v->since_ns;
		v->blocked = false;
		bt->nr_blocked--;
	}
}

static uint32_t blocktime_ms(uint64_t ns)
{
	uint64_t ms = ns / 1000000;

	return ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
}

void blocktime_read(const struct blocktime *bt, uint64_t now_ns, uint32_t *vcpu_ms,
		    uint32_t *all_ms)
{
	uint64_t all = bt->all_total_ns;

	for (unsigned int i = 0; i < bt->nr; i++) {
		const struct blocktime_vcpu *v = &bt->v[i];
		uint64_t t = v->total_ns;

		if (v->blocked && now_ns > v->since_ns)
			t += now_ns - v->since_ns;
		vcpu_ms[i] = blocktime_ms(t);
	}
	if (bt->nr && bt->nr_blocked == bt->nr && now_ns > bt->all_since_ns)
		all += now_ns - bt->all_since_ns;
	*all_ms = blocktime_ms(all);
}
