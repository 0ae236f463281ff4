/* SPDX-License-Identifier: GPL-2.0-only */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tvm.h"

static struct tvm *arg_tvm(void *arg)
{
	return arg;
}

static int op_pause(void *arg, enum mig_pause_state state)
{
	struct tvm *t = arg_tvm(arg);

	pthread_mutex_lock(&t->lock);
	t->paused = true;
	t->pause_calls++;
	t->last_pause_state = state;
	/* Like vcpu-proc: returns once every "vCPU" is parked. */
	while (t->dirtier_live && !t->parked)
		pthread_cond_wait(&t->cond, &t->lock);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int op_resume(void *arg)
{
	struct tvm *t = arg_tvm(arg);

	pthread_mutex_lock(&t->lock);
	t->paused = false;
	t->resume_calls++;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int op_dirty_log(void *arg, bool enable)
{
	struct tvm *t = arg_tvm(arg);

	pthread_mutex_lock(&t->lock);
	t->dirty_log = enable;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int op_harvest(void *arg, uint64_t *dirty)
{
	struct tvm *t = arg_tvm(arg);

	bool busy;

	/*
	 * The dirtier already set the bits; this counts rounds, and lets a
	 * busy dirtier run a little so every round has something to send.
	 */
	uint64_t w0;

	pthread_mutex_lock(&t->lock);
	busy = t->dirtier_live && !t->paused && t->stop_after && t->harvests < t->stop_after;
	w0 = t->writes;
	pthread_mutex_unlock(&t->lock);
	/* Wait (up to 200 ms, slow sanitizer builds) until the guest wrote a few pages. */
	for (int i = 0; busy && i < 200; i++) {
		usleep(1000);
		pthread_mutex_lock(&t->lock);
		busy = t->writes < w0 + 256;
		pthread_mutex_unlock(&t->lock);
	}
	pthread_mutex_lock(&t->lock);
	t->harvests++;
	busy = t->dirtier_live && !t->stop_after;
	pthread_mutex_unlock(&t->lock);
	if (busy)
		usleep(2000);
	*dirty = 0;
	return 0;
}

static int op_save_state(void *arg, void **blob, size_t *len)
{
	struct tvm *t = arg_tvm(arg);
	unsigned int delay;

	pthread_mutex_lock(&t->lock);
	delay = t->save_delay_ms;
	pthread_mutex_unlock(&t->lock);
	if (delay)
		usleep(delay * 1000);
	*blob = strdup("vmstate:cpu0");
	*len = strlen("vmstate:cpu0");
	return *blob ? 0 : -ENOMEM;
}

static int op_load_state(void *arg, const void *blob, size_t len)
{
	struct tvm *t = arg_tvm(arg);
	unsigned int delay;
	int ret;

	pthread_mutex_lock(&t->lock);
	delay = t->load_delay_ms;
	t->loading = delay > 0;
	pthread_mutex_unlock(&t->lock);
	if (delay)
		usleep(delay * 1000);
	pthread_mutex_lock(&t->lock);
	t->loading = false;
	ret = t->fail_load;
	if (!ret && len <= sizeof(t->blob)) {
		memcpy(t->blob, blob, len);
		t->blob_len = len;
		t->loads++;
	}
	pthread_mutex_unlock(&t->lock);
	return ret;
}

static int op_throttle(void *arg, unsigned int percent)
{
	struct tvm *t = arg_tvm(arg);

	pthread_mutex_lock(&t->lock);
	t->throttle = percent;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static int op_run_state(void *arg, int *state)
{
	struct tvm *t = arg_tvm(arg);

	pthread_mutex_lock(&t->lock);
	/* A destination that never ran waits in inmigrate, as cleave-vcpu --incoming. */
	*state = t->run_state_override ? t->run_state_override
		 : t->loads	       ? 2 /* running */
				       : MIG_RUN_STATE_INMIGRATE;
	pthread_mutex_unlock(&t->lock);
	return 0;
}

static const struct mig_vm_ops tvm_ops = {
	.run_state = op_run_state,
	.pause = op_pause,
	.resume = op_resume,
	.dirty_log = op_dirty_log,
	.harvest = op_harvest,
	.save_state = op_save_state,
	.load_state = op_load_state,
	.throttle = op_throttle,
};

const struct mig_vm_ops *tvm_vm_ops(void)
{
	return &tvm_ops;
}

static void on_event(void *arg, const struct mig_event *ev)
{
	struct tvm *t = arg;

	pthread_mutex_lock(&t->lock);
	/* A detail event ("resumed", ...) is recorded by its detail, a status change by its status.
	 */
	if (ev->status && t->nr_events < 32)
		snprintf(t->events[t->nr_events++], sizeof(t->events[0]), "%s",
			 ev->detail ? ev->detail : ev->status);
	else if (!ev->status)
		t->passes++;
	pthread_mutex_unlock(&t->lock);
}

int tvm_init(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
	     unsigned int io_timeout_ms)
{
	return tvm_init_tls(t, layout, hooks, io_timeout_ms, NULL);
}

int tvm_init_tls(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
		 unsigned int io_timeout_ms, const struct mig_tls *tls)
{
	struct mig_env env = {.tls = tls, .snapshot_dirfd = -1};

	return tvm_init_env(t, layout, hooks, io_timeout_ms, &env);
}

int tvm_init_snapshot(struct tvm *t, const struct shm_ctl_layout *layout,
		      const struct mig_hooks *hooks, const char *dir, int dirfd)
{
	struct mig_env env = {.snapshot_dir = dir, .snapshot_dirfd = dirfd};

	return tvm_init_env(t, layout, hooks, 0, &env);
}

int tvm_init_env(struct tvm *t, const struct shm_ctl_layout *layout, const struct mig_hooks *hooks,
		 unsigned int io_timeout_ms, const struct mig_env *base)
{
	struct mig_env env = *base;
	int ret;

	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	ret = shm_ctl_create(&t->ctl, layout);
	if (ret)
		return ret;
	t->nr_regions = layout->nr_regions;
	for (unsigned int i = 0; i < layout->nr_regions; i++) {
		ret = shm_region_create(&t->ram[i], i, layout->size[i]);
		if (ret)
			return ret;
	}
	env.ctl = &t->ctl;
	env.ram = t->ram;
	env.ops = base->ops ? base->ops : &tvm_ops;
	env.ops_arg = t;
	env.event = on_event;
	env.event_arg = t;
	env.io_timeout_ms = io_timeout_ms;
#ifdef CLEAVE_FAULT_INJECTION
	if (hooks)
		env.hooks = *hooks;
#endif
	return mig_session_alloc(&t->s, &env);
}

void tvm_fini(struct tvm *t)
{
	tvm_dirtier_stop(t);
	mig_session_free(t->s);
	for (unsigned int i = 0; i < t->nr_regions; i++)
		shm_region_close(&t->ram[i]);
	shm_ctl_close(&t->ctl);
	pthread_cond_destroy(&t->cond);
	pthread_mutex_destroy(&t->lock);
}

static void page_pattern(uint8_t *buf, uint64_t seed)
{
	uint64_t *w = (uint64_t *)buf;

	for (unsigned int i = 0; i < SHM_PAGE_SIZE / 8; i++)
		w[i] = seed * 0x9e3779b97f4a7c15ull + i;
}

void tvm_fill(struct tvm *t, unsigned int region, uint64_t first, uint64_t nr, bool zero)
{
	uint8_t buf[SHM_PAGE_SIZE];

	for (uint64_t p = first; p < first + nr; p++) {
		if (zero)
			memset(buf, 0, sizeof(buf));
		else
			page_pattern(buf, (region + 1) * 1000003ull + p);
		/* pwrite, like a vCPU writing through its own mapping: invisible to TSan. */
		if (pwrite(t->ram[region].fd, buf, sizeof(buf), (off_t)(p * SHM_PAGE_SIZE)) !=
		    (ssize_t)sizeof(buf))
			abort();
	}
}

static void *dirtier_main(void *arg)
{
	struct tvm *t = arg;
	uint64_t *dirty = shm_ctl_dirty_bitmap(&t->ctl, 0);
	uint8_t buf[SHM_PAGE_SIZE];
	uint64_t x = 88172645463325252ull, n = 0;

	for (;;) {
		uint64_t page;
		bool idle;
		unsigned int thr;

		pthread_mutex_lock(&t->lock);
		while (t->paused && !t->stop) {
			t->parked = true;
			pthread_cond_broadcast(&t->cond);
			pthread_cond_wait(&t->cond, &t->lock);
		}
		t->parked = false;
		if (t->stop) {
			pthread_mutex_unlock(&t->lock);
			break;
		}
		idle = t->stop_after && t->harvests >= t->stop_after;
		thr = t->throttle;
		t->writes = n;
		pthread_mutex_unlock(&t->lock);
		if (idle) {
			usleep(1000);
			continue;
		}
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		page = x % t->hot_pages;
		if (t->zero_every && n % t->zero_every == 0)
			memset(buf, 0, sizeof(buf));
		else
			page_pattern(buf, x);
		if (pwrite(t->ram[0].fd, buf, sizeof(buf), (off_t)(page * SHM_PAGE_SIZE)) !=
		    (ssize_t)sizeof(buf))
			abort();
		/* After the write, as KVM's dirty log: a harvest never misses it. */
		shm_bitmap_set(dirty, page);
		n++;
		if (thr && (n % 64) == 0)
			usleep(thr * 20);
	}
	return NULL;
}

void tvm_dirtier_start(struct tvm *t, uint64_t hot_pages, unsigned int stop_after)
{
	t->hot_pages = hot_pages;
	t->stop_after = stop_after;
	t->stop = false;
	if (pthread_create(&t->dirtier, NULL, dirtier_main, t))
		abort();
	pthread_mutex_lock(&t->lock);
	t->dirtier_live = true;
	pthread_mutex_unlock(&t->lock);
}

void tvm_dirtier_stop(struct tvm *t)
{
	bool live;

	pthread_mutex_lock(&t->lock);
	live = t->dirtier_live;
	t->stop = true;
	pthread_cond_broadcast(&t->cond);
	pthread_mutex_unlock(&t->lock);
	if (live)
		pthread_join(t->dirtier, NULL);
	pthread_mutex_lock(&t->lock);
	t->dirtier_live = false;
	pthread_mutex_unlock(&t->lock);
}

int tvm_ram_cmp(struct tvm *a, struct tvm *b)
{
	if (a->nr_regions != b->nr_regions)
		return -1;
	for (unsigned int i = 0; i < a->nr_regions; i++) {
		if (a->ram[i].size != b->ram[i].size)
			return -1;
		/* Compare through pread: the other side's writes were kernel copies too. */
		for (uint64_t off = 0; off < a->ram[i].size; off += 1 << 20) {
			static uint8_t ba[1 << 20], bb[1 << 20];
			size_t n =
				a->ram[i].size - off < (1 << 20) ? a->ram[i].size - off : 1 << 20;

			if (pread(a->ram[i].fd, ba, n, (off_t)off) != (ssize_t)n ||
			    pread(b->ram[i].fd, bb, n, (off_t)off) != (ssize_t)n)
				return -1;
			if (memcmp(ba, bb, n)) {
				for (size_t k = 0; k < n; k++)
					if (ba[k] != bb[k]) {
						fprintf(stderr,
							"RAM differs: region %u offset 0x%llx\n", i,
							(unsigned long long)(off + k));
						break;
					}
				return 1;
			}
		}
	}
	return 0;
}

bool tvm_saw_event(struct tvm *t, const char *status)
{
	bool seen = false;

	pthread_mutex_lock(&t->lock);
	for (unsigned int i = 0; i < t->nr_events; i++)
		seen |= !strcmp(t->events[i], status);
	pthread_mutex_unlock(&t->lock);
	return seen;
}
