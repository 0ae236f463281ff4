/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Postcopy in the engine, in one process over loopback TCP: a 1 GiB guest
 * whose 256 MiB of data a dirtier thread rewrites at random as fast as it
 * can, migrated with postcopy started at once (the switch comes after the
 * first pass), the destination's faults served by cleave-vcpu's own fault
 * service on real userfaultfd (tests/unit/migrator/tvm-postcopy.c), and a
 * thread playing the destination's vCPU: from the moment the guest runs
 * there it touches pages of the 256 MiB at random until every page is in.
 * Printed, medians of RUNS: total time, the time the guest was paused,
 * the postcopy phase, what a touch of a page still at the source costs the
 * vCPU (p50/p99 of its touches of pages the destination's needed map had
 * set) and the service's own wait
 * (fault read to page placed), pages pulled on request and pushed.
 * Then the same guest with precopy alone, which cannot finish within the
 * time limit while the dirtier runs (or says how long it took), and the
 * host's ceiling for one request: a 16-byte request answered with a 4 KiB
 * page over a loopback TCP connection, with no cleave in it.
 *
 * With --static: no dirtier and no vCPU, postcopy started with the
 * migration: the switch and the push alone, as bench-qemu-postcopy
 * measures QEMU 7.2's (whose stopped guests neither dirty nor fault).
 *
 * usage: bench-migrator-postcopy [RUNS] [--channels N] [--cap MIB_PER_S] [--static]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "tvm-postcopy.h"
#include "tvm.h"

#define MIB	    (1ull << 20)
#define DATA_PAGES  (256 * MIB / SHM_PAGE_SIZE)
#define MAX_TOUCHES (1u << 20)
#define PRECOPY_MS  30000 /* precopy alone: given up after this long */

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The @pct-th percentile of @v[0..n) (sorted here). */
static uint64_t pctl(uint64_t *v, size_t n, unsigned int pct)
{
	if (!n)
		return 0;
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[(n - 1) * pct / 100];
}

static const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {1024 * MIB}};

struct run {
	struct tvm *src, *dst;
	pthread_t vcpu;
	atomic_bool done;
	uint64_t *waits; /* ns of each touch of a page still at the source */
	size_t nr_waits;
};

/* The destination's vCPU: touches data pages at random while the migration runs. */
static void *vcpu_main(void *arg)
{
	struct run *r = arg;
	const volatile uint8_t *ram = r->dst->ram[0].base;
	/* The destination's needed map (its ctl dirty bitmap): set while a page is still due. */
	const uint64_t *needed = shm_ctl_dirty_bitmap(&r->dst->ctl, 0);
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (;;) {
		bool running;

		pthread_mutex_lock(&r->dst->lock);
		running = r->dst->resume_calls > 0;
		pthread_mutex_unlock(&r->dst->lock);
		if (running || atomic_load(&r->done))
			break;
		usleep(100);
	}
	while (!atomic_load(&r->done) && r->nr_waits < MAX_TOUCHES) {
		uint64_t t0, dt, page;
		bool due;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		page = x % DATA_PAGES;
		due = shm_bitmap_test(needed, page);
		t0 = mig_now_ns();
		(void)ram[page * SHM_PAGE_SIZE];
		dt = mig_now_ns() - t0;
		if (due)
			r->waits[r->nr_waits++] = dt;
	}
	return NULL;
}

struct figures {
	uint64_t total_ms, down_ms, postcopy_ms, touch_p50, touch_p99, svc_p50, svc_p99;
	uint64_t pulled, pushed, waits;
};

static bool static_image; /* --static */

static int one_run(unsigned int channels, uint64_t cap, bool postcopy, struct figures *f)
{
	struct mig_caps caps = {.multifd = channels > 1, .postcopy_ram = postcopy};
	struct mig_params params;
	struct mig_env base = {.ops = tvm_postcopy_vm_ops(), .snapshot_dirfd = -1};
	struct run r = {.src = calloc(1, sizeof(*r.src)), .dst = calloc(1, sizeof(*r.dst))};
	struct mig_info si, di;
	struct fault_stats st;
	uint64_t t0, t_commit = 0, t_end;
	char uri[64];
	int ret = -1;

	r.waits = malloc(MAX_TOUCHES * sizeof(*r.waits));
	if (!r.src || !r.dst || !r.waits || tvm_init(r.src, &layout, NULL, 0) ||
	    tvm_init_env(r.dst, &layout, NULL, 0, &base) || tvm_postcopy_init(r.dst))
		goto out;
	mig_session_get_params(r.src->s, &params);
	params.multifd_channels = channels;
	params.max_bandwidth = cap;
	params.downtime_limit = 50;
	if (mig_session_set_caps(r.src->s, &caps) || mig_session_set_params(r.src->s, &params) ||
	    mig_session_set_caps(r.dst->s, &caps) ||
	    mig_session_incoming(r.dst->s, "tcp:127.0.0.1:0"))
		goto out;
	tvm_fill(r.src, 0, 0, DATA_PAGES, false);
	if (!static_image)
		tvm_dirtier_start(r.src, DATA_PAGES, 0);
	else
		atomic_store(&r.done, true); /* no vCPU touches anything */
	if (pthread_create(&r.vcpu, NULL, vcpu_main, &r))
		goto out;
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(r.dst->s));
	t0 = mig_now_ns();
	if (mig_session_migrate(r.src->s, uri) ||
	    (postcopy && mig_session_start_postcopy(r.src->s)))
		goto join;
	for (;;) {
		mig_session_query(r.dst->s, &di);
		if (!t_commit && di.status == MIG_STATUS_POSTCOPY_ACTIVE)
			t_commit = mig_now_ns();
		if (di.status == MIG_STATUS_COMPLETED || di.status == MIG_STATUS_FAILED ||
		    mig_now_ns() - t0 > PRECOPY_MS * 1000000ull)
			break;
		usleep(200);
	}
	t_end = mig_now_ns();
	mig_session_cancel(r.src->s); /* precopy that did not finish in time */
	mig_session_wait(r.src->s, 10000);
	f->total_ms = (t_end - t0) / 1000000;
	mig_session_query(r.src->s, &si);
	mig_session_query(r.dst->s, &di);
	if (si.status != MIG_STATUS_COMPLETED || di.status != MIG_STATUS_COMPLETED) {
		if (postcopy)
			fprintf(stderr, "run failed: source %s (%s), destination %s (%s)\n",
				mig_status_name(si.status), si.error_desc,
				mig_status_name(di.status), di.error_desc);
		ret = 1; /* did not finish */
		goto join;
	}
	if (tvm_ram_cmp(r.src, r.dst)) {
		fprintf(stderr, "run failed: RAM differs\n");
		goto join;
	}
	f->down_ms = si.downtime_ms;
	f->postcopy_ms = t_commit ? (t_end - t_commit) / 1000000 : 0;
	f->pulled = di.postcopy_pulled;
	f->pushed = di.postcopy_pushed;
	tvm_postcopy_stats(r.dst, &st);
	f->svc_p50 = st.wait_p50_ns;
	f->svc_p99 = st.wait_p99_ns;
	ret = 0;
join:
	atomic_store(&r.done, true);
	pthread_join(r.vcpu, NULL);
	if (!ret) {
		f->waits = r.nr_waits;
		f->touch_p50 = pctl(r.waits, r.nr_waits, 50);
		f->touch_p99 = pctl(r.waits, r.nr_waits, 99);
	}
out:
	if (r.src && r.dst) {
		tvm_dirtier_stop(r.src);
		mig_session_free(r.src->s);
		r.src->s = NULL;
		mig_session_free(r.dst->s);
		r.dst->s = NULL;
		tvm_postcopy_fini(r.dst);
		tvm_fini(r.src);
		tvm_fini(r.dst);
	}
	free(r.src);
	free(r.dst);
	free(r.waits);
	return ret;
}

/* One loopback TCP connection: 16-byte requests, each answered with a 4 KiB page. */
static void *echo_main(void *arg)
{
	int fd = *(int *)arg;
	uint8_t req[16], page[4096] = {1};

	while (recv(fd, req, sizeof(req), MSG_WAITALL) == sizeof(req))
		if (send(fd, page, sizeof(page), 0) != sizeof(page))
			break;
	close(fd);
	return NULL;
}

static void ceiling(unsigned int n)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s, one = 1;
	uint8_t req[16] = {0}, page[4096];
	uint64_t *v = malloc(n * sizeof(*v));
	pthread_t t;

	if (!v || l < 0 || c < 0 || bind(l, (void *)&a, sizeof(a)) || listen(l, 1) ||
	    getsockname(l, (void *)&a, &len) || connect(c, (void *)&a, sizeof(a)) ||
	    (s = accept(l, NULL, NULL)) < 0 || pthread_create(&t, NULL, echo_main, &s)) {
		printf("ceiling: could not set up loopback TCP\n");
		free(v);
		return;
	}
	setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	for (unsigned int i = 0; i < n; i++) {
		uint64_t t0 = mig_now_ns();

		if (send(c, req, sizeof(req), 0) != sizeof(req) ||
		    recv(c, page, sizeof(page), MSG_WAITALL) != sizeof(page))
			break;
		v[i] = mig_now_ns() - t0;
	}
	shutdown(c, SHUT_RDWR);
	pthread_join(t, NULL);
	printf("ceiling, one request over loopback TCP (16 B out, 4 KiB back), %u round trips: "
	       "p50 %.1f us, p99 %.1f us\n",
	       n, (double)pctl(v, n, 50) / 1000, (double)pctl(v, n, 99) / 1000);
	close(c);
	close(l);
	free(v);
}

#define MED(field) (sort_field(runs, ok, offsetof(struct figures, field)))

static uint64_t sort_field(struct figures *f, unsigned int n, size_t off)
{
	uint64_t v[100];

	for (unsigned int i = 0; i < n; i++)
		v[i] = *(const uint64_t *)((const uint8_t *)&f[i] + off);
	return pctl(v, n, 50);
}

int main(int argc, char **argv)
{
	unsigned int nruns = argc > 1 && argv[1][0] != '-' ? (unsigned int)atoi(argv[1]) : 3;
	unsigned int channels = 2, ok = 0;
	uint64_t cap = 0;
	struct figures runs[100], pre;
	int ret;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--channels") && i + 1 < argc)
			channels = (unsigned int)atoi(argv[++i]);
		if (!strcmp(argv[i], "--cap") && i + 1 < argc)
			cap = strtoull(argv[++i], NULL, 10) * MIB;
		static_image |= !strcmp(argv[i], "--static");
	}
	if (nruns < 1 || nruns > 100)
		nruns = 3;
	log_init("bench-migrator-postcopy");
	log_set_verbose(getenv("MIG_BENCH_VERBOSE") != NULL);
	if (access("/dev/userfaultfd", R_OK | W_OK)) {
		printf("no usable /dev/userfaultfd: postcopy cannot run here\n");
		return 0;
	}
	printf("postcopy, engine in one process over loopback TCP: 1 GiB RAM, 256 MiB of data "
	       "%s; %u channel(s), max-bandwidth %s; medians of %u runs\n",
	       static_image ? "(static, nothing touched: postcopy from the start)"
			    : "rewritten at random by a dirtier",
	       channels, cap ? "capped" : "unlimited", nruns);
	if (cap)
		printf("  (cap %llu MiB/s)\n", (unsigned long long)(cap / MIB));
	for (unsigned int i = 0; i < nruns; i++)
		if (!one_run(channels, cap, true, &runs[ok]))
			ok++;
	if (!ok) {
		printf("every postcopy run failed\n");
		return 1;
	}
	printf("total %llu ms, guest paused %llu ms, postcopy phase %llu ms\n",
	       (unsigned long long)MED(total_ms), (unsigned long long)MED(down_ms),
	       (unsigned long long)MED(postcopy_ms));
	printf("vCPU touches of a page still at the source: %llu, p50 %.1f us, p99 %.1f us\n",
	       (unsigned long long)MED(waits), (double)MED(touch_p50) / 1000,
	       (double)MED(touch_p99) / 1000);
	printf("fault service wait (fault read -> page placed): p50 %.1f us, p99 %.1f us\n",
	       (double)MED(svc_p50) / 1000, (double)MED(svc_p99) / 1000);
	printf("pages pulled on request %llu, pushed %llu\n", (unsigned long long)MED(pulled),
	       (unsigned long long)MED(pushed));
	if (static_image)
		return 0;
	ret = one_run(channels, cap, false, &pre);
	if (ret > 0)
		printf("precopy alone: not finished after %d s (cancelled)\n", PRECOPY_MS / 1000);
	else if (!ret)
		printf("precopy alone: %llu ms, downtime %llu ms\n",
		       (unsigned long long)pre.total_ms, (unsigned long long)pre.down_ms);
	else
		printf("precopy alone: failed\n");
	ceiling(20000);
	return 0;
}
