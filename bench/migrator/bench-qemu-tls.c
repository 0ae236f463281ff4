/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * QEMU 7.2's migration over loopback, plaintext against mutual TLS (its
 * tls-creds-x509 objects, the same credentials layout cleave reads), with
 * 1 channel and with 4 multifd channels: the reference for cleave's own
 * TLS cost (bench-migrator-engine --tls), on the same host.
 *
 * The image is bench-migrator-engine's: 1 GiB of guest RAM holding 256 MiB
 * of data, the rest zero (qemu-ref.h).  Prints medians of RUNS (default 3)
 * of total time and throughput (bytes transferred / total time).
 *
 * usage: bench-qemu-tls [RUNS]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qemu-ref.h"
#include "tls-certs.h"

#define MAX_RUNS 16
#define PORT	 47311

static char scratch[] = "/tmp/cleave-bench-qemu-tls-XXXXXX";

static void setup(struct qemu_ref *q, bool tls, unsigned int channels)
{
	json_decref(qemu_ref_cmd(q, "migrate-set-capabilities",
				 json_pack("{s:[{s:s,s:b}]}", "capabilities", "capability",
					   "multifd", "state", channels > 1)));
	json_decref(qemu_ref_cmd(q, "migrate-set-parameters",
				 json_pack("{s:s,s:i,s:I,s:I}", "tls-creds", tls ? "tls0" : "",
					   "multifd-channels", channels > 1 ? channels : 2,
					   "max-bandwidth", (json_int_t)(100ll << 30),
					   "downtime-limit", (json_int_t)300)));
}

/* One migration: total time (ms) and bytes transferred. */
static void one_run(bool tls, unsigned int channels, double *ms, double *bytes)
{
	char creds_src[256], creds_dst[256], loader[256], uri[64];
	const char *src_args[] = {"-device", loader, tls ? "-object" : NULL, creds_src, NULL};
	const char *dst_args[] = {"-incoming", "defer", tls ? "-object" : NULL, creds_dst, NULL};
	struct qemu_ref src, dst;
	json_t *info;

	snprintf(creds_src, sizeof(creds_src),
		 "tls-creds-x509,id=tls0,dir=%s,endpoint=client,verify-peer=on", scratch);
	snprintf(creds_dst, sizeof(creds_dst),
		 "tls-creds-x509,id=tls0,dir=%s,endpoint=server,verify-peer=on", scratch);
	snprintf(loader, sizeof(loader), "loader,file=%s/data.bin,addr=0x1000000,force-raw=on",
		 scratch);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", PORT);
	qemu_ref_start(&dst, scratch, "dst", dst_args);
	qemu_ref_start(&src, scratch, "src", src_args);
	setup(&dst, tls, channels);
	setup(&src, tls, channels);
	json_decref(qemu_ref_cmd(&dst, "migrate-incoming", json_pack("{s:s}", "uri", uri)));
	json_decref(qemu_ref_cmd(&src, "migrate", json_pack("{s:s}", "uri", uri)));
	info = qemu_ref_wait_migration(&src);
	*ms = (double)json_integer_value(json_object_get(info, "total-time"));
	*bytes = (double)json_integer_value(
		json_object_get(json_object_get(info, "ram"), "transferred"));
	json_decref(info);
	qemu_ref_stop(&src);
	qemu_ref_stop(&dst);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const struct tls_certs certs = {.ca_name = "bench CA",
					.server_dns = "localhost",
					.server_ip = "127.0.0.1",
					.client_dn = "CN=source,O=cleave bench"};
	unsigned int runs = argc > 1 ? (unsigned int)atoi(argv[1]) : 3;
	static const unsigned int chans[] = {1, 4};
	char path[160], cmdline[128];

	if (!runs || runs > MAX_RUNS) {
		fprintf(stderr, "usage: bench-qemu-tls [RUNS<=%d]\n", MAX_RUNS);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(scratch) || tls_certs_make(scratch, &certs)) {
		fprintf(stderr, "bench-qemu-tls: credentials in %s: %s\n", scratch,
			strerror(errno));
		return 1;
	}
	snprintf(path, sizeof(path), "%s/data.bin", scratch);
	qemu_ref_data_file(path);
	printf("QEMU 7.2 (%s, -S), loopback TCP, 1 GiB RAM with %d MiB of data; medians of %u\n",
	       qemu_ref_accel(), QEMU_REF_DATA_MIB, runs);
	printf("%-6s %-9s %10s %12s\n", "mode", "channels", "total ms", "MB/s");
	for (unsigned int c = 0; c < sizeof(chans) / sizeof(chans[0]); c++) {
		double mbps[2];

		for (int tls = 0; tls < 2; tls++) {
			double ms[MAX_RUNS], bytes = 0, rate[MAX_RUNS];

			for (unsigned int i = 0; i < runs; i++) {
				one_run(tls, chans[c], &ms[i], &bytes);
				rate[i] = bytes / (ms[i] / 1e3) / 1e6;
			}
			qsort(ms, runs, sizeof(ms[0]), cmp_double);
			qsort(rate, runs, sizeof(rate[0]), cmp_double);
			mbps[tls] = rate[runs / 2];
			printf("%-6s %-9u %10.1f %12.1f\n", tls ? "tls" : "plain", chans[c],
			       ms[runs / 2], mbps[tls]);
		}
		printf("%-6s %-9u TLS throughput %.0f %% of plaintext\n", "", chans[c],
		       100.0 * mbps[1] / mbps[0]);
	}
	snprintf(cmdline, sizeof(cmdline), "rm -rf '%s'", scratch);
	if (system(cmdline))
		fprintf(stderr, "could not remove %s\n", scratch);
	return 0;
}
