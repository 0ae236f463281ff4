// SPDX-License-Identifier: GPL-2.0-only
/*
 * Resume figures (docs/INVARIANTS.md, invariant 6): how fast a restarted
 * cleave-migrator resumes a migration, and how much it sends again.  Real
 * cleave-vcpu + cleave-migrator pairs (tests/integration/migrator/mig-harness),
 * a dirtying 2-vCPU guest, a bandwidth limit so each migration lasts
 * several seconds; the source and the destination migrator are SIGKILLed
 * in turn in the middle of the transfer and started again after 20 ms with
 * the same argv, as the launcher does.  For every kill:
 *
 *   resume-time  what the killed side reports (MigrationInfo.resume_time:
 *                from its process start to the resumed transfer)
 *   observed     from the respawn until a QUERY of the killed side shows
 *                one more resume (includes exec, RPC start and polling)
 *   resent       source resent_bytes growth across the resume
 *   inflight     source inflight_bytes: sent or queued, not acknowledged
 *   allowance    inflight + what the guest may have dirtied meanwhile
 *                (guest rate x kill-to-resumed time): resent should stay
 *                within it
 *
 * Usage: bench-migrator-resume CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR [KILLS [SEED]]
 * (meson: bench/migrator; not part of the test suite, needs /dev/kvm).
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/migrator-info.h"
#include "tests/integration/migrator/mig-harness.h"

#define RAM	      (256ull << 20)
#define CPUS	      2
#define RATE_MIB      8
#define BANDWIDTH     (16ull << 20) /* 64 MiB: ~4 s of round 0 */
#define RESTART_DELAY 20	    /* ms, between the kill and the new process */
#define MAX_KILLS     64

static const char *vcpu_bin, *guest_path;

struct bvm {
	struct vt vm;
	struct mproc mig;
	char uri[64];
};

struct sample {
	bool dst;	      /* the destination migrator was killed */
	uint64_t resume_time; /* ms, reported by the killed side */
	uint64_t src_resume;  /* ms, reported by the source */
	uint64_t observed;    /* ms, respawn to a QUERY showing the resume */
	uint64_t resent;      /* bytes */
	uint64_t inflight;    /* bytes */
	uint64_t allowance;   /* bytes */
};

static struct bvm *bvm_new(bool incoming)
{
	struct bvm *b = calloc(1, sizeof(*b));

	if (!b || vt_init(&b->vm, vcpu_bin, RAM, 0) || vt_guest_open(&b->vm, guest_path))
		goto fail;
	if (vt_spawn(&b->vm, CPUS, "mode=dirty mib=64 hb=200 rate=8 cpus=2", incoming, NULL))
		goto fail;
	if (incoming) {
		snprintf(b->uri, sizeof(b->uri), "tcp:127.0.0.1:%u", mig_free_port());
		if (mig_spawn(&b->vm, &b->mig, b->uri, NULL))
			goto fail;
		return b;
	}
	if (vt_expect(&b->vm, &b->vm.serial, 0, "HB 1 ", 15000) < 0 ||
	    mig_spawn(&b->vm, &b->mig, NULL, NULL))
		goto fail;
	return b;
fail:
	fprintf(stderr, "cannot start a VM and its migrator\n");
	exit(1);
}

static void bvm_free(struct bvm *b)
{
	int st;

	mig_stop(&b->mig);
	vt_simple(&b->vm, CLEAVE__VCPU__METHOD__METHOD_QUIT);
	if (vt_wait(&b->vm, 5000, &st))
		vt_kill(&b->vm);
	vt_fini(&b->vm);
	free(b);
}

static Cleave__Migrator__MigrationInfo *query_until(struct mproc *m, uint64_t deadline)
{
	Cleave__Migrator__MigrationInfo *mi;

	while (!(mi = mig_query_try(m, 200))) {
		if (vt_now_ms() > deadline) {
			fprintf(stderr, "migrator does not answer\n");
			mig_log_dump(m, "migrator log", 4000);
			exit(1);
		}
	}
	return mi;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(const struct sample *s, unsigned int n, size_t off, int side)
{
	uint64_t v[MAX_KILLS];
	unsigned int k = 0;

	for (unsigned int i = 0; i < n; i++)
		if (side < 0 || s[i].dst == (side == 1))
			v[k++] = *(const uint64_t *)((const char *)&s[i] + off);
	if (!k)
		return 0;
	qsort(v, k, sizeof(v[0]), cmp_u64);
	return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
}

/*
 * Kills the source (!@dst) or destination migrator of a running migration,
 * starts it again and waits for the resume; false if the migration ended
 * meanwhile (the sample is not kept).
 */
static bool kill_one(struct bvm *src, struct bvm *dst, bool kill_dst, struct sample *s)
{
	struct mproc *victim = kill_dst ? &dst->mig : &src->mig;
	Cleave__Migrator__MigrationInfo *si, *vi;
	uint64_t resent0, resumes0, src_resumes0, t_kill, deadline;
	bool ok = false;

	si = query_until(&src->mig, vt_now_ms() + 5000);
	vi = kill_dst ? query_until(&dst->mig, vt_now_ms() + 5000) : NULL;
	if (strcmp(si->status, "active")) {
		rpc_msg_free(&si->base);
		if (vi)
			rpc_msg_free(&vi->base);
		return false;
	}
	resent0 = mig_info_counter(si, "resent_bytes");
	src_resumes0 = mig_info_counter(si, "resumes");
	resumes0 = kill_dst ? mig_info_counter(vi, "resumes") : mig_info_counter(si, "resumes");
	rpc_msg_free(&si->base);
	if (vi)
		rpc_msg_free(&vi->base);

	t_kill = vt_now_ms();
	mig_kill(victim);
	usleep(RESTART_DELAY * 1000);
	if (mig_respawn(victim)) {
		fprintf(stderr, "respawn failed\n");
		exit(1);
	}
	deadline = vt_now_ms() + 30000;
	for (;;) {
		vi = mig_query_try(victim, 100);
		if (vi &&
		    (mig_info_counter(vi, "resumes") > resumes0 || !mig_status_running(vi->status)))
			break;
		if (vi)
			rpc_msg_free(&vi->base);
		if (vt_now_ms() > deadline) {
			fprintf(stderr, "no resume within 30 s\n");
			mig_log_dump(&src->mig, "source migrator log", 4000);
			mig_log_dump(&dst->mig, "destination migrator log", 4000);
			exit(1);
		}
		vt_drain(&src->vm, 0);
		vt_drain(&dst->vm, 0);
		usleep(2000);
	}
	s->observed = vt_now_ms() - victim->spawn_ms;
	if (mig_info_counter(vi, "resumes") > resumes0) {
		s->dst = kill_dst;
		s->resume_time = mig_info_counter(vi, "resume_time_ms");
		/* The source resumes its side a moment later: its figures are the resent ones. */
		si = vi;
		while (kill_dst) {
			si = query_until(&src->mig, vt_now_ms() + 5000);
			if (mig_info_counter(si, "resumes") > src_resumes0 ||
			    !mig_status_running(si->status) || vt_now_ms() > deadline)
				break;
			rpc_msg_free(&si->base);
			usleep(2000);
		}
		s->src_resume = mig_info_counter(si, "resume_time_ms");
		s->resent = mig_info_counter(si, "resent_bytes") - resent0;
		s->inflight = mig_info_counter(si, "inflight_bytes");
		s->allowance =
			s->inflight + ((uint64_t)RATE_MIB << 20) * (vt_now_ms() - t_kill) / 1000;
		if (si != vi)
			rpc_msg_free(&si->base);
		ok = true;
	}
	rpc_msg_free(&vi->base);
	return ok;
}

int main(int argc, char **argv)
{
	static struct sample s[MAX_KILLS];
	unsigned int want = 12, n = 0, migs = 0, within = 0, fast = 0;
	uint64_t seed;
	struct bvm *src, *dst;

	if (argc < 4) {
		fprintf(stderr, "usage: %s CLEAVE_VCPU GUEST_ELF CLEAVE_MIGRATOR [KILLS [SEED]]\n",
			argv[0]);
		return 1;
	}
	vt_require_kvm();
	vcpu_bin = argv[1];
	guest_path = argv[2];
	mig_harness_init(argv[3]);
	if (argc > 4)
		want = (unsigned int)atoi(argv[4]);
	if (want < 2 || want > MAX_KILLS)
		want = 12;
	seed = argc > 5 ? strtoull(argv[5], NULL, 0) : vt_now_ms();
	srandom((unsigned int)seed);
	signal(SIGPIPE, SIG_IGN);
	printf("# %u kills, seed %" PRIu64 ", guest 2 vCPUs dirtying %u MiB/s, max-bandwidth %llu "
	       "MiB/s, restart after %u ms\n",
	       want, seed, RATE_MIB, BANDWIDTH >> 20, RESTART_DELAY);
	src = bvm_new(false);
	while (n < want) {
		Cleave__Migrator__MigrateRequest mreq = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
		Cleave__Migrator__MigrationInfo *mi;
		uint64_t t0;

		dst = bvm_new(true);
		mig_configure(&src->mig, 2, BANDWIDTH, -1);
		mreq.uri = dst->uri;
		if (mig_call(&src->mig, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &mreq.base, NULL,
			     NULL))
			return 1;
		t0 = vt_now_ms();
		/* Up to 3 kills a migration, 400-900 ms of transfer before each. */
		for (unsigned int k = 0; k < 3 && n < want; k++) {
			usleep((useconds_t)(400 + random() % 500) * 1000);
			if (kill_one(src, dst, n % 2, &s[n])) {
				printf("kill %2u: %s, resume-time %" PRIu64 " ms (source %" PRIu64
				       " ms), observed %" PRIu64 " ms, resent %" PRIu64
				       " KiB, inflight %" PRIu64 " KiB, allowance %" PRIu64
				       " KiB\n",
				       n + 1, s[n].dst ? "destination" : "source", s[n].resume_time,
				       s[n].src_resume, s[n].observed, s[n].resent >> 10,
				       s[n].inflight >> 10, s[n].allowance >> 10);
				fflush(stdout);
				within += s[n].resent <= s[n].allowance;
				fast += s[n].resume_time <= 100;
				n++;
			}
		}
		do {
			vt_drain(&src->vm, 20);
			vt_drain(&dst->vm, 0);
			mi = query_until(&src->mig, vt_now_ms() + 15000);
			if (!mig_status_running(mi->status))
				break;
			rpc_msg_free(&mi->base);
		} while (vt_now_ms() - t0 < 120000);
		printf("# migration %u: %s after %" PRIu64 " ms%s%s\n", ++migs, mi->status,
		       vt_now_ms() - t0, mi->error_desc && mi->error_desc[0] ? ": " : "",
		       mi->error_desc ? mi->error_desc : "");
		if (strcmp(mi->status, "completed"))
			return 1;
		rpc_msg_free(&mi->base);
		bvm_free(src);
		src = dst;
	}
	bvm_free(src);

	printf("# medians over %u kills (source %u, destination %u)\n", n, (n + 1) / 2, n / 2);
	printf("%-12s %8s %8s %8s\n", "", "all", "source", "dest");
#define ROW(label, field, shift)                                                                   \
	printf("%-12s %8" PRIu64 " %8" PRIu64 " %8" PRIu64 "\n", label,                            \
	       median(s, n, offsetof(struct sample, field), -1) >> (shift),                        \
	       median(s, n, offsetof(struct sample, field), 0) >> (shift),                         \
	       median(s, n, offsetof(struct sample, field), 1) >> (shift))
	ROW("resume ms", resume_time, 0);
	ROW("observed ms", observed, 0);
	ROW("resent KiB", resent, 10);
	ROW("inflight KiB", inflight, 10);
	ROW("allow. KiB", allowance, 10);
	printf("# resent <= inflight + dirtied meanwhile: %u of %u; resumed within 100 ms of the "
	       "new process: %u of %u\n",
	       within, n, fast, n);
	return 0;
}
