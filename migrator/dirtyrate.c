/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * calc-dirty-rate / query-dirty-rate (QEMU's, with its checks and texts):
 * how fast the guest dirties its RAM, measured in the background by one
 * thread of the session.
 *
 *   page-sampling  (QEMU's default) sample-pages random pages per GiB are
 *                  read and checksummed, then again after calc-time; the
 *                  share that changed, times guest RAM, per second.  Reads
 *                  RAM only (pread, as the migrator always does): it may
 *                  run beside a migration.
 *   dirty-bitmap   KVM's dirty log, exact: every page written during
 *                  calc-time.  The dirty bitmaps are a migration's, so it
 *                  needs the session idle, and a migration waits for it
 *                  (mig_session_bitmaps_claim).
 *   dirty-ring     refused: cleave logs dirty pages in bitmaps.
 *
 * A measurement killed with its migrator leaves nothing to clean up but,
 * in dirty-bitmap mode, vcpu-proc's dirty logging, which the next
 * migration or measurement turns on and off again anyway.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "shm/snapfile.h"

#define DR_CALC_MIN_S	   1 /* QEMU 7.2's MIN/MAX_FETCH_DIRTYRATE_TIME_SEC */
#define DR_CALC_MAX_S	   60
#define DR_SAMPLES_MIN	   128 /* QEMU's MIN/MAX_SAMPLE_PAGE_COUNT */
#define DR_SAMPLES_MAX	   16384
#define DR_SAMPLES_DEFAULT 512

static const char *const dr_mode_names[] = {
	[MIG_DIRTY_RATE_PAGE_SAMPLING] = "page-sampling",
	[MIG_DIRTY_RATE_DIRTY_RING] = "dirty-ring",
	[MIG_DIRTY_RATE_DIRTY_BITMAP] = "dirty-bitmap",
};

const char *mig_dirty_rate_mode_name(enum mig_dirty_rate_mode m)
{
	return dr_mode_names[m];
}

int mig_dirty_rate_mode_parse(const char *name, enum mig_dirty_rate_mode *m)
{
	for (unsigned int i = 0; i < sizeof(dr_mode_names) / sizeof(dr_mode_names[0]); i++)
		if (!strcmp(name, dr_mode_names[i])) {
			*m = (enum mig_dirty_rate_mode)i;
			return 0;
		}
	return -EINVAL;
}

const char *mig_dirty_rate_status_name(enum mig_dirty_rate_status st)
{
	return st == MIG_DIRTY_RATE_MEASURING  ? "measuring"
	       : st == MIG_DIRTY_RATE_MEASURED ? "measured"
					       : "unstarted";
}

void mig_dirty_rate_init(struct mig_dirty_rate *dr)
{
	memset(dr, 0, sizeof(*dr));
	pthread_mutex_init(&dr->lock, NULL);
	pthread_cond_init(&dr->cond, NULL);
}

/* Joins a finished (or stopped) measurement thread. */
static void dr_reap(struct mig_dirty_rate *dr)
{
	bool live;

	pthread_mutex_lock(&dr->lock);
	live = dr->live;
	dr->live = false;
	pthread_mutex_unlock(&dr->lock);
	if (live)
		pthread_join(dr->thread, NULL);
}

void mig_dirty_rate_fini(struct mig_dirty_rate *dr)
{
	pthread_mutex_lock(&dr->lock);
	dr->stop = true;
	pthread_cond_broadcast(&dr->cond);
	pthread_mutex_unlock(&dr->lock);
	dr_reap(dr);
	pthread_cond_destroy(&dr->cond);
	pthread_mutex_destroy(&dr->lock);
}

/* Sleeps until @deadline_ns (mig_now_ns) or a stop: true when stopped. */
static bool dr_wait(struct mig_dirty_rate *dr, uint64_t deadline_ns)
{
	bool stop;

	pthread_mutex_lock(&dr->lock);
	while (!dr->stop && mig_now_ns() < deadline_ns) {
		struct timespec ts;
		uint64_t left_ms = (deadline_ns - mig_now_ns()) / 1000000 + 1;

		mig_deadline_after_ms(&ts, (unsigned int)left_ms);
		pthread_cond_timedwait(&dr->cond, &dr->lock, &ts);
	}
	stop = dr->stop;
	pthread_mutex_unlock(&dr->lock);
	return stop;
}

static int dr_page_crc(struct mig_session *s, unsigned int r, uint64_t page, uint32_t *crc)
{
	uint8_t buf[SHM_PAGE_SIZE];

	if (pread(s->env.ram[r].fd, buf, sizeof(buf), (off_t)(page * SHM_PAGE_SIZE)) !=
	    (ssize_t)sizeof(buf))
		return -EIO;
	*crc = snap_crc32c(0, buf, sizeof(buf));
	return 0;
}

/* page-sampling: the share of sampled pages that changed, scaled to guest RAM. */
static int dr_sample(struct mig_session *s, const struct mig_dirty_rate_info *cfg, int64_t *rate)
{
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	uint64_t total = 0, changed = 0, x = 0, n = 0;
	struct {
		unsigned int region;
		uint64_t page;
		uint32_t crc;
	} * smp;
	int ret = 0;

	for (unsigned int r = 0; r < h->nr_regions; r++) {
		uint64_t k = cfg->sample_pages * h->regions[r].size >> 30;

		total += k ? k : 1;
	}
	smp = calloc(total, sizeof(*smp));
	if (!smp)
		return -ENOMEM;
	if (getrandom(&x, sizeof(x), 0) != sizeof(x) || !x)
		x = mig_now_ns() | 1;
	for (unsigned int r = 0; r < h->nr_regions && !ret; r++) {
		uint64_t k = cfg->sample_pages * h->regions[r].size >> 30;

		for (uint64_t i = 0; i < (k ? k : 1) && !ret; i++, n++) {
			x ^= x << 13; /* xorshift64: sampling, not secrecy */
			x ^= x >> 7;
			x ^= x << 17;
			smp[n].region = r;
			smp[n].page = x % h->regions[r].nr_pages;
			ret = dr_page_crc(s, r, smp[n].page, &smp[n].crc);
		}
	}
	if (!ret && dr_wait(&s->dr, mig_now_ns() + (uint64_t)cfg->calc_time * 1000000000ull))
		ret = -ECANCELED;
	for (uint64_t i = 0; i < total && !ret; i++) {
		uint32_t crc;

		ret = dr_page_crc(s, smp[i].region, smp[i].page, &crc);
		changed += !ret && crc != smp[i].crc;
	}
	free(smp);
	if (!ret)
		*rate = (int64_t)((double)changed / (double)total * (double)(h->ram_size >> 20) /
				  (double)cfg->calc_time);
	return ret;
}

/* Takes every bit of the dirty bitmaps; their count. */
static uint64_t dr_take_bits(struct mig_session *s)
{
	const struct shm_ctl_header *h = s->env.ctl->hdr;
	uint64_t n = 0;

	for (unsigned int r = 0; r < h->nr_regions; r++)
		for (uint64_t w = 0; w < SHM_BITMAP_WORDS(h->regions[r].nr_pages); w++)
			n += (uint64_t)__builtin_popcountll(shm_bitmap_fetch_clear_word(
				shm_ctl_dirty_bitmap(s->env.ctl, r), w));
	return n;
}

/* dirty-bitmap: the pages KVM logged as written during calc-time (QEMU's formula). */
static int dr_bitmap(struct mig_session *s, const struct mig_dirty_rate_info *cfg, int64_t *rate)
{
	const struct mig_vm_ops *ops = s->env.ops;
	uint64_t pages, n;
	int ret;

	dr_take_bits(s); /* a previous migration's leftovers */
	ret = ops->dirty_log(s->env.ops_arg, true);
	/* What the guest wrote before this instant is not ours to count. */
	if (!ret)
		ret = ops->harvest(s->env.ops_arg, &n);
	if (ret)
		goto out;
	dr_take_bits(s);
	if (dr_wait(&s->dr, mig_now_ns() + (uint64_t)cfg->calc_time * 1000000000ull)) {
		ret = -ECANCELED;
		goto out;
	}
	ret = ops->harvest(s->env.ops_arg, &n);
	pages = dr_take_bits(s);
	if (!ret)
		*rate = (int64_t)((pages * SHM_PAGE_SIZE) >> 20) * 1000 / (cfg->calc_time * 1000);
out:
	if (ops->dirty_log(s->env.ops_arg, false))
		log_warn("dirty rate: vcpu-proc DIRTY_LOG off failed");
	return ret;
}

static void *dr_main(void *arg)
{
	struct mig_session *s = arg;
	struct mig_dirty_rate *dr = &s->dr;
	struct mig_dirty_rate_info cfg;
	int64_t rate = 0;
	int ret;

	log_set_thread("mig/dirtyrate");
	pthread_mutex_lock(&dr->lock);
	cfg = dr->info;
	pthread_mutex_unlock(&dr->lock);
	if (cfg.mode == MIG_DIRTY_RATE_DIRTY_BITMAP) {
		ret = dr_bitmap(s, &cfg, &rate);
		mig_session_bitmaps_release(s);
	} else {
		ret = dr_sample(s, &cfg, &rate);
	}
	if (ret && ret != -ECANCELED)
		log_warn("dirty rate (%s): %s", mig_dirty_rate_mode_name(cfg.mode), strerror(-ret));
	pthread_mutex_lock(&dr->lock);
	/* A failed measurement has no rate to show: as if never started. */
	dr->info.status = ret ? MIG_DIRTY_RATE_UNSTARTED : MIG_DIRTY_RATE_MEASURED;
	dr->info.has_dirty_rate = !ret;
	dr->info.dirty_rate = rate;
	pthread_mutex_unlock(&dr->lock);
	return NULL;
}

int mig_dirty_rate_start(struct mig_session *s, int64_t calc_time, bool has_sample_pages,
			 int64_t sample_pages, enum mig_dirty_rate_mode mode, char *err,
			 size_t errlen)
{
	struct mig_dirty_rate *dr = &s->dr;
	bool measuring;
	int ret;

	pthread_mutex_lock(&dr->lock);
	measuring = dr->info.status == MIG_DIRTY_RATE_MEASURING;
	pthread_mutex_unlock(&dr->lock);
	/* QEMU 7.2's checks, in its order and words. */
	if (measuring) {
		snprintf(err, errlen, "the dirty rate is already being measured.");
		return -EBUSY;
	}
	if (calc_time < DR_CALC_MIN_S || calc_time > DR_CALC_MAX_S) {
		snprintf(err, errlen, "calc-time is out of range[%d, %d].", DR_CALC_MIN_S,
			 DR_CALC_MAX_S);
		return -ERANGE;
	}
	if (has_sample_pages && mode == MIG_DIRTY_RATE_DIRTY_RING) {
		snprintf(err, errlen, "either sample-pages or dirty-ring can be specified.");
		return -EINVAL;
	}
	if (has_sample_pages && (sample_pages < DR_SAMPLES_MIN || sample_pages > DR_SAMPLES_MAX)) {
		snprintf(err, errlen, "sample-pages is out of range[%d, %d].", DR_SAMPLES_MIN,
			 DR_SAMPLES_MAX);
		return -ERANGE;
	}
	if (mode == MIG_DIRTY_RATE_DIRTY_RING) {
		snprintf(err, errlen, "mode %s is not enabled, use other method instead.",
			 mig_dirty_rate_mode_name(mode));
		return -EOPNOTSUPP;
	}
	/* cleave's own: the dirty bitmaps belong to a running migration. */
	if (mode == MIG_DIRTY_RATE_DIRTY_BITMAP) {
		ret = mig_session_bitmaps_claim(s);
		if (ret == -ENODATA) {
			snprintf(err, errlen,
				 "mode dirty-bitmap needs the dirty bitmaps, which hold the pages "
				 "a postcopy migration never brought: use page-sampling");
			return -EBUSY;
		}
		if (ret) {
			snprintf(err, errlen,
				 "mode dirty-bitmap needs the dirty log, which a migration uses "
				 "now: use page-sampling, or measure when it ended");
			return -EBUSY;
		}
	}
	dr_reap(dr); /* the last measurement's thread has ended: its status said so */
	pthread_mutex_lock(&dr->lock);
	dr->stop = false;
	dr->info = (struct mig_dirty_rate_info){
		.status = MIG_DIRTY_RATE_MEASURING,
		.mode = mode,
		.start_time = (int64_t)(mig_now_ns() / 1000000000ull),
		.calc_time = calc_time,
		.sample_pages = has_sample_pages ? (uint64_t)sample_pages : DR_SAMPLES_DEFAULT,
	};
	ret = -pthread_create(&dr->thread, NULL, dr_main, s);
	dr->live = !ret;
	if (ret)
		dr->info.status = MIG_DIRTY_RATE_UNSTARTED;
	pthread_mutex_unlock(&dr->lock);
	if (ret) {
		if (mode == MIG_DIRTY_RATE_DIRTY_BITMAP)
			mig_session_bitmaps_release(s);
		snprintf(err, errlen, "init dirty rate calculation state failed.");
	}
	return ret;
}

void mig_dirty_rate_query(struct mig_session *s, struct mig_dirty_rate_info *info)
{
	pthread_mutex_lock(&s->dr.lock);
	*info = s->dr.info;
	pthread_mutex_unlock(&s->dr.lock);
}
