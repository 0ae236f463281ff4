// SPDX-License-Identifier: GPL-2.0-only
/*
 * A migrator SIGKILLed during postcopy: how long the destination's vCPU
 * waits for its next page, counted from the start of the new process.
 * Two real cleave-migrators under their filters with stand-in vcpu-procs
 * (tests/integration/migrator/proc-nodes.h); the destination's cleave-vcpu
 * side (fault service on real userfaultfd, postcopy link server) runs in
 * this process, and a thread of it plays the destination's vCPU (no KVM
 * needed): it reads one word of a random page of the destination's RAM
 * every PACE_US, blocking while the page is missing.  Postcopy starts
 * right after migrate with the push capped at CAP_BYTES/s, so most pages
 * are still at the source during the kills and come on demand.
 *
 * Each round SIGKILLs the source's migrator, the destination's or both
 * (each block of three rounds a seeded permutation of the three), with the
 * vCPU touching missing pages back to back from just before the kill, and
 * starts each again with the same command line RESTART_DELAY_MS later, as
 * the launcher does.  From the fork of the new process (the first fork
 * when both were killed):
 *
 *   rpc          the restarted migrator answers a QUERY
 *   active       its QUERY shows postcopy-active with one more resume
 *                (both restarted ones, when both were killed)
 *   fault        the first touch of a missing page that completes after
 *                the fork: the vCPU's next resolved fault
 *   resume-time  what the restarted migrator reports (counter
 *                resume_time_ms: its process start to the resumed
 *                transfer; the larger of the two when both were killed)
 *
 * and whether the vCPU was blocked on a missing page at the kill and at
 * the fork.  Then p50 and max per victim, against the ceiling: fork+exec
 * of a migrator with no migration to its first QUERY answer, watched the
 * same way.  At the end the cap is lifted, the migration completes, and
 * every page must equal the source's (exit 1 if not).
 *
 * Usage: bench-migrator-postcopy-kill CLEAVE_MIGRATOR [KILLS [SEED]]
 * (meson: bench/migrator; not part of the test suite; needs /dev/userfaultfd).
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "proto/migrator-info.h"
#include "tests/integration/migrator/proc-nodes.h"

#define RAM_SIZE	 (64ull << 20) /* 16384 pages: enough left missing for every round */
#define CAP_BYTES	 (256u << 10)  /* the push: 64 pages/s */
#define RECONNECT_MS	 20000
#define RESTART_DELAY_MS 20    /* kill to new process: the peer notices the loss */
#define PACE_US		 5000  /* between the vCPU's touches, but while armed */
#define BLOCKED_NS	 20000 /* a touch of a missing page this long waited for it */
#define MAX_KILLS	 200
#define MAX_TOUCHES	 (1u << 20)
#define WAIT_NS		 (20ull * 1000000000ull) /* any one wait of a round */

enum victim { V_SRC, V_DST, V_BOTH, V_KINDS };
static const char *const victim_names[V_KINDS] = {"source", "destination", "both"};

/* A touch of a missing page that waited: when it began and when the word was read. */
struct touch {
	uint64_t start_ns, end_ns;
};

/* The destination's vCPU. */
struct bvcpu {
	struct pc_pair *pp;
	pthread_t thread;
	atomic_bool stop;
	atomic_bool armed;	  /* touch missing pages back to back */
	_Atomic uint64_t blocked; /* start of the touch of a missing page in progress, or 0 */
	struct touch *log;	  /* touches that waited, in completion order */
	atomic_uint nlog;
	atomic_uint bad; /* words that are not the source's */
	atomic_ulong touches;
};

struct sample {
	enum victim victim;
	uint64_t missing; /* pages, at the kill */
	bool blocked_kill, blocked_fork, same_touch;
	double rpc, active, fault; /* ms from the fork */
	uint64_t resume_time;
};

/* The word every 8 bytes of source page @p hold (proc-nodes.c's pattern). */
static uint64_t page_word(uint64_t p)
{
	return 0x0101010101010101ull * ((p % 251) + 1);
}

static uint64_t xorshift(uint64_t *x)
{
	*x ^= *x << 13;
	*x ^= *x >> 7;
	*x ^= *x << 17;
	return *x;
}

static void *bvcpu_main(void *arg)
{
	struct bvcpu *c = arg;
	struct snap_node *dst = &c->pp->dst;
	const uint64_t *needed = shm_ctl_dirty_bitmap(&dst->ctl, 0);
	const uint8_t *ram = dst->ram.base;
	uint64_t pages = dst->ram.size / SHM_PAGE_SIZE, x = 0x2545f4914f6cdd1dull;

	/* The guest runs here from the Commit (the stand-in's RESUME). */
	while (!__atomic_load_n(&dst->v.resumes, __ATOMIC_ACQUIRE) && !atomic_load(&c->stop))
		usleep(1000);
	while (!atomic_load(&c->stop)) {
		bool armed = atomic_load(&c->armed), missing;
		uint64_t p = xorshift(&x) % pages, t0, t1, word;

		if (armed) {
			uint64_t q = shm_bitmap_find_next(needed, pages, p);

			if (q == pages)
				q = shm_bitmap_find_next(needed, pages, 0);
			if (q == pages) { /* every page is in: nothing can block */
				usleep(PACE_US);
				continue;
			}
			p = q;
		}
		missing = shm_bitmap_test(needed, p);
		t0 = proc_now_ns();
		if (missing)
			atomic_store(&c->blocked, t0);
		word = *(const volatile uint64_t *)(ram + p * SHM_PAGE_SIZE +
						    (xorshift(&x) % (SHM_PAGE_SIZE / 8)) * 8);
		t1 = proc_now_ns();
		atomic_store(&c->blocked, 0);
		if (word != page_word(p))
			atomic_fetch_add(&c->bad, 1);
		atomic_fetch_add(&c->touches, 1);
		if (missing && t1 - t0 >= BLOCKED_NS) {
			unsigned int i = atomic_load(&c->nlog);

			if (i < MAX_TOUCHES) {
				c->log[i] = (struct touch){t0, t1};
				atomic_store(&c->nlog, i + 1); /* release: the entry first */
			}
		}
		if (!armed)
			usleep(PACE_US);
	}
	return NULL;
}

/* The socket file of @n's RPC server: which one it is (0,0: none yet). */
static void rpc_sock_id(const struct snap_node *n, struct stat *st)
{
	char path[96];

	snprintf(path, sizeof(path), "%s/migrator.rpc", n->dir);
	if (stat(path, st))
		memset(st, 0, sizeof(*st));
}

/*
 * One restarted migrator watched: its RPC socket bound anew (polled with
 * stat(), which costs it nothing, where an RPC client would redial only
 * after NNG's 10-100 ms backoff), then QUERY until the first answer and,
 * with @want_active, until postcopy-active with more resumes than
 * @resumes0.
 */
struct watch {
	struct snap_node *n;
	struct stat old;
	uint64_t resumes0;
	bool want_active;
	struct rpc_client *client;
	int state; /* 0: not bound yet, 1: answered, waiting for active, 2: done */
	uint64_t rpc_ns, active_ns, resume_time;
};

static void watch_init(struct watch *w, struct snap_node *n, bool want_active, uint64_t resumes0)
{
	memset(w, 0, sizeof(*w));
	w->n = n;
	w->want_active = want_active;
	w->resumes0 = resumes0;
	rpc_sock_id(n, &w->old);
}

/* One step; true once done. */
static bool watch_step(struct watch *w)
{
	Cleave__Migrator__MigrationInfo *mi = NULL;
	char url[96], err[256];
	struct stat st;
	uint64_t now;
	int ret;

	if (w->state == 2)
		return true;
	if (!w->client) {
		rpc_sock_id(w->n, &st);
		if (!st.st_ino ||
		    (st.st_ino == w->old.st_ino && st.st_ctim.tv_sec == w->old.st_ctim.tv_sec &&
		     st.st_ctim.tv_nsec == w->old.st_ctim.tv_nsec))
			return false;
		snprintf(url, sizeof(url), "ipc://%s/migrator.rpc", w->n->dir);
		assert_int_equal(rpc_client_open(&w->client, url), 0);
	}
	ret = rpc_call(w->client, CLEAVE__MIGRATOR__METHOD__METHOD_QUERY, NULL,
		       &cleave__migrator__migration_info__descriptor, (ProtobufCMessage **)&mi,
		       2000, err, sizeof(err));
	now = proc_now_ns();
	if (ret)
		return false;
	if (!w->state) {
		w->rpc_ns = now;
		w->state = 1;
	}
	if (!w->want_active || (!strcmp(mi->status, "postcopy-active") &&
				mig_info_counter(mi, "resumes") > w->resumes0)) {
		w->active_ns = now;
		w->resume_time = mig_info_counter(mi, "resume_time_ms");
		w->state = 2;
	} else if (strcmp(mi->status, "postcopy-active") && strcmp(mi->status, "postcopy-paused")) {
		fprintf(stderr, "%s: status %s '%s'\n", w->n->dir, mi->status, mi->error_desc);
		exit(1);
	}
	rpc_msg_free(&mi->base);
	return w->state == 2;
}

static void watch_fini(struct watch *w)
{
	rpc_client_close(w->client);
	w->client = NULL;
}

/* Every watch done, polled together (two restarted at once start together). */
static void watch_all(struct watch *w, unsigned int n)
{
	uint64_t t0 = proc_now_ns();

	for (;;) {
		bool done = true, bound = true;

		for (unsigned int i = 0; i < n; i++) {
			done &= watch_step(&w[i]);
			bound &= !!w[i].client;
		}
		if (done)
			break;
		if (proc_now_ns() - t0 > WAIT_NS) {
			fprintf(stderr, "a restarted migrator did not resume within %llu s\n",
				WAIT_NS / 1000000000ull);
			exit(1);
		}
		usleep(bound ? 1000 : 200);
	}
	for (unsigned int i = 0; i < n; i++)
		watch_fini(&w[i]);
}

static double ms_since(uint64_t t, uint64_t from)
{
	return (double)(t - from) / 1e6;
}

static void kill_reap(struct snap_node *n)
{
	int status;

	assert_int_equal(kill(n->pid, SIGKILL), 0);
	assert_int_equal(waitpid(n->pid, &status, 0), n->pid);
}

/* One kill round against @victim; false when no page was left missing to block on. */
static bool kill_round(struct pc_pair *pp, struct bvcpu *c, enum victim victim, struct sample *s)
{
	struct snap_node *nodes[2];
	Cleave__Migrator__MigrationInfo *si = mig_query(pp->src.dir), *di = mig_query(pp->dst.dir);
	struct watch w[2];
	uint64_t blocked_kill, blocked_fork, t_fork, t0;
	unsigned int nv = 0, first;

	if (victim != V_DST)
		nodes[nv++] = &pp->src;
	if (victim != V_SRC)
		nodes[nv++] = &pp->dst;
	s->victim = victim;
	s->missing = di->postcopy_missing;
	for (unsigned int i = 0; i < nv; i++)
		watch_init(&w[i], nodes[i], true,
			   mig_info_counter(nodes[i] == &pp->src ? si : di, "resumes"));
	rpc_msg_free(&si->base);
	rpc_msg_free(&di->base);
	if (s->missing < 64)
		return false;
	/* The vCPU on a missing page at the kill. */
	atomic_store(&c->armed, true);
	for (t0 = proc_now_ns(); !atomic_load(&c->blocked); usleep(50))
		if (proc_now_ns() - t0 > 2000000000ull) {
			atomic_store(&c->armed, false);
			return false;
		}
	blocked_kill = atomic_load(&c->blocked);
	first = atomic_load(&c->nlog);
	for (unsigned int i = 0; i < nv; i++)
		assert_int_equal(kill(nodes[i]->pid, SIGKILL), 0);
	/* Before the reap: a dying migrator runs nothing, an answer may still be placed. */
	s->blocked_kill = blocked_kill && atomic_load(&c->blocked) == blocked_kill;
	for (unsigned int i = 0; i < nv; i++)
		assert_int_equal(waitpid(nodes[i]->pid, NULL, 0), nodes[i]->pid);
	usleep(RESTART_DELAY_MS * 1000);
	for (unsigned int i = 0; i < nv; i++)
		snap_node_exec(nodes[i]);
	t_fork = nodes[0]->forked_ns;
	blocked_fork = atomic_load(&c->blocked);
	s->blocked_fork = blocked_fork && blocked_fork < t_fork;
	s->same_touch = s->blocked_kill && blocked_fork == blocked_kill;

	watch_all(w, nv);
	s->rpc = s->active = 0;
	s->resume_time = 0;
	for (unsigned int i = 0; i < nv; i++) {
		if (ms_since(w[i].rpc_ns, t_fork) > s->rpc)
			s->rpc = ms_since(w[i].rpc_ns, t_fork);
		if (ms_since(w[i].active_ns, t_fork) > s->active)
			s->active = ms_since(w[i].active_ns, t_fork);
		if (w[i].resume_time > s->resume_time)
			s->resume_time = w[i].resume_time;
	}
	/* The first touch that waited for a missing page and ended after the fork. */
	for (t0 = proc_now_ns();; usleep(200)) {
		unsigned int n = atomic_load(&c->nlog), i;

		for (i = first; i < n && c->log[i].end_ns <= t_fork; i++)
			;
		if (i < n) {
			s->fault = ms_since(c->log[i].end_ns, t_fork);
			break;
		}
		if (proc_now_ns() - t0 > WAIT_NS) {
			fprintf(stderr, "no fault resolved within %llu s of the restart\n",
				WAIT_NS / 1000000000ull);
			exit(1);
		}
	}
	atomic_store(&c->armed, false);
	/* The peer of a single kill resumed too before the next round. */
	wait_status(pp->src.dir, "postcopy-active");
	wait_status(pp->dst.dir, "postcopy-active");
	return true;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* p50 (nearest rank) and max of @n values. */
static void p50_max(double *v, unsigned int n, double *p50, double *max)
{
	qsort(v, n, sizeof(*v), cmp_double);
	*p50 = n ? v[(n - 1) / 2] : 0;
	*max = n ? v[n - 1] : 0;
}

static void summary(const struct sample *s, unsigned int n, int victim)
{
	double rpc[MAX_KILLS], active[MAX_KILLS], fault[MAX_KILLS], rt[MAX_KILLS];
	double r50, rmax, a50, amax, f50, fmax, t50, tmax;
	unsigned int k = 0, within = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (victim >= 0 && s[i].victim != (enum victim)victim)
			continue;
		rpc[k] = s[i].rpc;
		active[k] = s[i].active;
		fault[k] = s[i].fault;
		rt[k] = (double)s[i].resume_time;
		within += s[i].fault <= 100.0;
		k++;
	}
	if (!k)
		return;
	p50_max(rpc, k, &r50, &rmax);
	p50_max(active, k, &a50, &amax);
	p50_max(fault, k, &f50, &fmax);
	p50_max(rt, k, &t50, &tmax);
	printf("%-12s %3u  %6.1f / %6.1f  %6.1f / %6.1f  %6.1f / %6.1f  %6.0f / %6.0f  %3u/%u\n",
	       victim < 0 ? "all" : victim_names[victim], k, r50, rmax, a50, amax, f50, fmax, t50,
	       tmax, within, k);
}

/* fork+exec of a migrator with no migration to its first QUERY answer, @n times. */
static void ceiling(const char *snaps, unsigned int n, double *p50, double *max)
{
	struct snap_node node = {.ram_size = RAM_SIZE};
	double v[MAX_KILLS];
	struct watch w;

	snap_node_start(&node, snaps, NULL, CLEAVE__VCPU__RUN_STATE__RUN_STATE_RUNNING);
	watch_init(&w, &node, false, 0);
	w.old.st_ino = 0; /* fresh: any socket is the new one */
	watch_all(&w, 1);
	for (unsigned int i = 0; i < n; i++) {
		watch_init(&w, &node, false, 0);
		kill_reap(&node);
		usleep(RESTART_DELAY_MS * 1000);
		snap_node_exec(&node);
		watch_all(&w, 1);
		v[i] = ms_since(w.rpc_ns, node.forked_ns);
	}
	snap_node_stop(&node);
	p50_max(v, n, p50, max);
	printf("# ceiling: fork+exec to the first QUERY answer, no migration, %u restarts: "
	       "p50 %.1f ms, max %.1f ms\n",
	       n, *p50, *max);
}

int main(int argc, char **argv)
{
	static struct sample s[MAX_KILLS];
	Cleave__Migrator__MigrateRequest req = CLEAVE__MIGRATOR__MIGRATE_REQUEST__INIT;
	unsigned int want = 20, n = 0, bk = 0, bf = 0, same = 0, bad_pages = 0;
	struct pc_pair pp = {.src.ram_size = RAM_SIZE, .dst.ram_size = RAM_SIZE};
	struct bvcpu c = {.pp = &pp};
	enum victim order[V_KINDS] = {V_SRC, V_DST, V_BOTH};
	char st[32], err[512];
	uint8_t page[SHM_PAGE_SIZE];
	uint64_t seed, x;
	double ceil50, ceilmax;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s CLEAVE_MIGRATOR [KILLS [SEED]]\n", argv[0]);
		return 2;
	}
	if (access("/dev/userfaultfd", R_OK | W_OK)) {
		printf("SKIP: /dev/userfaultfd: %s\n", strerror(errno));
		return 77;
	}
	migrator_bin = argv[1];
	if (argc > 2)
		want = (unsigned int)atoi(argv[2]);
	if (want < 1 || want > MAX_KILLS)
		want = 20;
	seed = argc > 3 ? strtoull(argv[3], NULL, 0) : (uint64_t)time(NULL);
	x = seed | 1;
	signal(SIGPIPE, SIG_IGN);
	c.log = calloc(MAX_TOUCHES, sizeof(*c.log));
	if (!c.log)
		return 1;
	printf("# %u kill rounds, seed %" PRIu64 " (SEED replays the victims and instants)\n"
	       "# %llu MiB of RAM, push capped at %u KiB/s, restart %u ms after the kill, "
	       "vCPU touch every %u us\n",
	       want, seed, RAM_SIZE >> 20, CAP_BYTES >> 10, RESTART_DELAY_MS, PACE_US);
	fflush(stdout);

	pc_pair_start(&pp);
	ceiling(pp.snaps, want, &ceil50, &ceilmax);
	set_params(pp.dst.dir, 0, RECONNECT_MS);
	set_params(pp.src.dir, CAP_BYTES, RECONNECT_MS);
	req.uri = pp.uri;
	if (call(pp.src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_MIGRATE, &req.base, NULL, NULL, err,
		 sizeof(err)))
		fail_msg("migrate: %s", err);
	/* At once: nearly every page is still at the source when the guest runs here. */
	if (call_empty(pp.src.dir, CLEAVE__MIGRATOR__METHOD__METHOD_START_POSTCOPY, err,
		       sizeof(err)))
		fail_msg("migrate-start-postcopy: %s", err);
	assert_int_equal(pthread_create(&c.thread, NULL, bvcpu_main, &c), 0);
	wait_status(pp.dst.dir, "postcopy-active");
	wait_status(pp.src.dir, "postcopy-active");

	printf("%-5s %-12s %7s %5s %4s %4s %8s %8s %8s %7s\n", "round", "killed", "missing", "kill",
	       "fork", "same", "rpc ms", "active", "fault", "resume");
	while (n < want) {
		enum victim v;

		if (n % V_KINDS == 0) /* a seeded permutation per block of three */
			for (unsigned int i = V_KINDS - 1; i > 0; i--) {
				unsigned int j = (unsigned int)(xorshift(&x) % (i + 1));

				v = order[i];
				order[i] = order[j];
				order[j] = v;
			}
		v = order[n % V_KINDS];
		usleep((useconds_t)(150 + xorshift(&x) % 300) * 1000);
		if (!kill_round(&pp, &c, v, &s[n])) {
			printf("# too few pages left missing: stopped after %u rounds\n", n);
			break;
		}
		printf("%5u %-12s %7" PRIu64 " %5s %4s %4s %8.1f %8.1f %8.1f %7" PRIu64 "\n", n + 1,
		       victim_names[v], s[n].missing, s[n].blocked_kill ? "yes" : "no",
		       s[n].blocked_fork ? "yes" : "no", s[n].same_touch ? "yes" : "no", s[n].rpc,
		       s[n].active, s[n].fault, s[n].resume_time);
		fflush(stdout);
		bk += s[n].blocked_kill;
		bf += s[n].blocked_fork;
		same += s[n].same_touch;
		n++;
	}

	printf("# from the fork of the new process, ms: p50 / max (resume: the migrator's own "
	       "resume_time_ms)\n");
	printf("%-12s %3s  %15s  %15s  %15s  %15s  %s\n", "killed", "n", "rpc", "active", "fault",
	       "resume", "fault<=100");
	for (int v = 0; v < V_KINDS; v++)
		summary(s, n, v);
	summary(s, n, -1);
	printf("%-12s %3u  %6.1f / %6.1f  (fork+exec to the first QUERY answer, no migration)\n",
	       "ceiling", want, ceil50, ceilmax);
	printf("# vCPU blocked on a missing page at the kill %u/%u, at the fork %u/%u, the same "
	       "touch across both %u/%u\n",
	       bk, n, bf, n, same, n);

	/* The rest at full speed; every page must be the source's. */
	set_params(pp.src.dir, 0, RECONNECT_MS);
	snap_node_wait(&pp.src, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("source: %s '%s'", st, err);
	snap_node_wait(&pp.dst, st, sizeof(st), err, sizeof(err));
	if (strcmp(st, "completed"))
		fail_msg("destination: %s '%s'", st, err);
	atomic_store(&c.stop, true);
	pthread_join(c.thread, NULL);
	for (uint64_t p = 0; p < pp.src.ram.size / SHM_PAGE_SIZE; p++)
		bad_pages += !pc_pair_page_same(&pp, p, page);
	printf("# completed: %u of %llu pages differ from the source's; the vCPU read %lu words, "
	       "%u not the source's; %llu pages pulled, %llu pushed\n",
	       bad_pages, (unsigned long long)(pp.src.ram.size / SHM_PAGE_SIZE),
	       (unsigned long)atomic_load(&c.touches), atomic_load(&c.bad),
	       (unsigned long long)mig_counter(pp.dst.dir, "postcopy_pulled"),
	       (unsigned long long)mig_counter(pp.dst.dir, "postcopy_pushed"));
	pc_pair_stop(&pp);
	free(c.log);
	return bad_pages || atomic_load(&c.bad) ? 1 : 0;
}
