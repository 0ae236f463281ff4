/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * The migration engine alone, in one process: two sets of memfds, real
 * loopback TCP, no vcpu-proc (the VM ops are the unit tests' in-process
 * ones).  Prints total time, downtime, bytes and wire throughput for an
 * idle RAM image (1 GiB, 256 MiB of data, 64 MiB of zero pages, the rest
 * holes) with 1, 2 and 4 channels; medians of --runs (default 5).  With
 * --tls, each row is measured in the same run in plaintext and with mutual
 * TLS 1.3 (x509 credentials made at start, ECDSA P-256), and the TLS cost
 * is printed.
 *
 * With --unix, each row also over a unix socket (unix:PATH).
 *
 * With --fd, each row also over fd: (docs/MIGRATION.md, "fd: URIs"): one
 * socketpair handed to both sessions, every connection a stream of it.
 *
 * usage: bench-migrator-engine [RUNS] [--tls] [--unix] [--fd] [--channels N]
 * (--channels: that row only, e.g. for perf record)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log/log.h"
#include "migrator/session-internal.h"
#include "migrator/tls.h"
#include "migrator/wire.h"
#include "tls-certs.h"
#include "tvm.h"

#define MIB (1ull << 20)

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t median(uint64_t *v, unsigned int n)
{
	qsort(v, n, sizeof(*v), cmp_u64);
	return v[n / 2];
}

/* @unix_path: over that unix socket instead of loopback TCP; "fd": over fd: (a socketpair). */
static int one_run(unsigned int channels, const struct mig_tls *tls, const char *unix_path,
		   uint64_t *total_us, uint64_t *down_ms, uint64_t *bytes)
{
	static const struct shm_ctl_layout layout = {.nr_regions = 1, .size = {1024 * MIB}};
	struct mig_caps caps = {.multifd = channels > 1};
	struct mig_params params = {.multifd_channels = channels, .downtime_limit = 300};
	struct tvm *src = calloc(1, sizeof(*src)), *dst = calloc(1, sizeof(*dst));
	struct mig_info si;
	char uri[128];
	bool over_fd = unix_path && !strcmp(unix_path, "fd");
	uint64_t t0;
	int ret = -1, sp[2];

	if (over_fd)
		snprintf(uri, sizeof(uri), "fd:bench");
	else if (unix_path)
		snprintf(uri, sizeof(uri), "unix:%s", unix_path);
	else
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:0");
	if (tvm_init_tls(src, &layout, NULL, 0, tls) || tvm_init_tls(dst, &layout, NULL, 0, tls))
		goto out;
	if (over_fd && (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) ||
			mig_session_fd_add(src->s, "bench", sp[0]) ||
			mig_session_fd_add(dst->s, "bench", sp[1])))
		goto out;
	tvm_fill(src, 0, 0, 256 * MIB / SHM_PAGE_SIZE, false);
	tvm_fill(src, 0, 512 * MIB / SHM_PAGE_SIZE, 64 * MIB / SHM_PAGE_SIZE, true);
	if (mig_session_set_caps(src->s, &caps) || mig_session_set_params(src->s, &params) ||
	    mig_session_set_caps(dst->s, &caps) || mig_session_incoming(dst->s, uri))
		goto out;
	if (!unix_path)
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%u", mig_session_incoming_port(dst->s));
	t0 = mig_now_ns();
	if (mig_session_migrate(src->s, uri) || mig_session_wait(src->s, 60000) ||
	    mig_session_wait(dst->s, 60000))
		goto out;
	*total_us = (mig_now_ns() - t0) / 1000;
	mig_session_query(src->s, &si);
	if (si.status != MIG_STATUS_COMPLETED || tvm_ram_cmp(src, dst)) {
		fprintf(stderr, "run failed: %s %s\n", mig_status_name(si.status), si.error_desc);
		goto out;
	}
	*down_ms = si.downtime_ms;
	*bytes = si.transferred;
	ret = 0;
out:
	tvm_fini(src);
	tvm_fini(dst);
	free(src);
	free(dst);
	return ret;
}

/* Medians of @runs; false when every run failed. */
static bool measure(unsigned int channels, const struct mig_tls *tls, const char *unix_path,
		    unsigned int runs, uint64_t *t, uint64_t *d, uint64_t *b, bool *partial)
{
	uint64_t tot[100], down[100], bytes[100];
	unsigned int ok = 0;

	for (unsigned int r = 0; r < runs; r++)
		if (!one_run(channels, tls, unix_path, &tot[ok], &down[ok], &bytes[ok]))
			ok++;
	if (!ok)
		return false;
	*t = median(tot, ok);
	*d = median(down, ok);
	*b = median(bytes, ok);
	*partial = ok < runs;
	return true;
}

static void print_row(const char *mode, unsigned int channels, uint64_t t, uint64_t d, uint64_t b,
		      bool partial)
{
	printf("%-6s %-9u %10.1f %9lu %10.1f %12.2f%s\n", mode, channels, (double)t / 1000,
	       (unsigned long)d, (double)b / MIB,
	       (double)b / (double)(1ull << 30) / ((double)t / 1e6),
	       partial ? "  (some runs failed)" : "");
}

/* x509 credentials for both ends in a scratch dir (removed again by the caller). */
static struct mig_tls *bench_tls(char *dir)
{
	const struct tls_certs c = {
		.ca_name = "bench CA", .server_ip = "127.0.0.1", .client_dn = "CN=bench source"};
	struct mig_tls_config cfg = {.x509_dir = dir};
	struct mig_tls *t = NULL;
	char err[256];

	if (!mkdtemp(dir) || tls_certs_make(dir, &c) || mig_tls_load(&t, &cfg, err, sizeof(err))) {
		fprintf(stderr, "TLS credentials: %s\n", err);
		return NULL;
	}
	return t;
}

int main(int argc, char **argv)
{
	unsigned int runs = argc > 1 && argv[1][0] != '-' ? (unsigned int)atoi(argv[1]) : 5;
	static const unsigned int chans[] = {1, 2, 4};
	char dir[] = "/tmp/cleave-bench-tls-XXXXXX", cmd[64];
	char udir[] = "/tmp/cleave-bench-unix-XXXXXX", upath[64] = "";
	struct mig_tls *tls = NULL;
	unsigned int only = 0;
	bool with_tls = false, with_unix = false, with_fd = false;

	for (int i = 1; i < argc; i++) {
		with_tls |= !strcmp(argv[i], "--tls");
		with_unix |= !strcmp(argv[i], "--unix");
		with_fd |= !strcmp(argv[i], "--fd");
		if (!strcmp(argv[i], "--channels") && i + 1 < argc)
			only = (unsigned int)atoi(argv[++i]);
	}
	log_init("bench-migrator-engine");
	log_set_verbose(getenv("MIG_BENCH_VERBOSE") != NULL);
	if (runs < 1 || runs > 100)
		runs = 5;
	if (with_tls && !(tls = bench_tls(dir)))
		return 1;
	if (with_unix) {
		if (!mkdtemp(udir))
			return 1;
		snprintf(upath, sizeof(upath), "%s/mig.sock", udir);
	}
	printf("engine in one process, loopback TCP, 1 GiB RAM: 256 MiB data, 64 MiB zero, "
	       "rest holes; medians of %u runs\n",
	       runs);
	printf("%-6s %-9s %10s %9s %10s %12s\n", "mode", "channels", "total ms", "down ms",
	       "MiB sent", "GiB/s wire");
	for (unsigned int c = 0; c < sizeof(chans) / sizeof(chans[0]); c++) {
		uint64_t t, d, b, tt, td, tb;
		bool partial, tpartial;

		if (only && chans[c] != only)
			continue;
		if (!measure(chans[c], NULL, NULL, runs, &t, &d, &b, &partial)) {
			printf("%-6s %-9u all runs failed\n", "plain", chans[c]);
			continue;
		}
		print_row("plain", chans[c], t, d, b, partial);
		if (with_unix && measure(chans[c], NULL, upath, runs, &tt, &td, &tb, &tpartial)) {
			print_row("unix", chans[c], tt, td, tb, tpartial);
			printf("%-6s %-9u unix socket throughput %.0f %% of loopback TCP\n", "",
			       chans[c],
			       100.0 * ((double)tb / (double)tt) / ((double)b / (double)t));
		}
		if (with_fd && measure(chans[c], NULL, "fd", runs, &tt, &td, &tb, &tpartial)) {
			print_row("fd", chans[c], tt, td, tb, tpartial);
			printf("%-6s %-9u fd: (one socketpair) throughput %.0f %% of %u loopback "
			       "TCP "
			       "connections\n",
			       "", chans[c],
			       100.0 * ((double)tb / (double)tt) / ((double)b / (double)t),
			       chans[c] + 1);
		}
		if (!tls)
			continue;
		if (!measure(chans[c], tls, NULL, runs, &tt, &td, &tb, &tpartial)) {
			printf("%-6s %-9u all runs failed\n", "tls", chans[c]);
			continue;
		}
		print_row("tls", chans[c], tt, td, tb, tpartial);
		printf("%-6s %-9u TLS throughput %.0f %% of plaintext\n", "", chans[c],
		       100.0 * ((double)tb / (double)tt) / ((double)b / (double)t));
	}
	if (with_unix)
		rmdir(udir);
	if (tls) {
		mig_tls_free(tls);
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
		if (system(cmd))
			fprintf(stderr, "could not remove %s\n", dir);
	}
	return 0;
}
