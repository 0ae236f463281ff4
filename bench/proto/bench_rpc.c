/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * Control-plane figures: RPC round trip over ipc:// to a server in another
 * process (median, p99), calls per second from 1 and 4 threads, and events
 * per second through pub/sub.
 *
 *   bench-rpc [calls] [events]        (defaults: 20000, 100000)
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>

#include "log/log.h"
#include "proto/rpc.h"
#include "tests/unit/proto/rpc-fixture.h"

static uint64_t bench_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int bench_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static int bench_status(struct rpc_client *c)
{
	Cleave__Vcpu__StatusRequest req = CLEAVE__VCPU__STATUS_REQUEST__INIT;
	ProtobufCMessage *out;
	int ret;

	ret = rpc_call(c, CLEAVE__VCPU__METHOD__METHOD_STATUS, &req.base,
		       &cleave__vcpu__status_reply__descriptor, &out, 5000, NULL, 0);
	if (!ret)
		rpc_msg_free(out);
	return ret;
}

static int bench_round_trip(struct rpc_client *c, size_t calls)
{
	uint64_t *lat = calloc(calls, sizeof(*lat));
	uint64_t start, total;

	if (!lat)
		return -ENOMEM;
	start = bench_now_ns();
	for (size_t i = 0; i < calls; i++) {
		uint64_t t0 = bench_now_ns();
		int ret = bench_status(c);

		if (ret) {
			fprintf(stderr, "call %zu: %s\n", i, strerror(-ret));
			free(lat);
			return ret;
		}
		lat[i] = bench_now_ns() - t0;
	}
	total = bench_now_ns() - start;
	qsort(lat, calls, sizeof(*lat), bench_cmp_u64);
	printf("rpc round trip (StatusRequest -> StatusReply, server in another process, %zu "
	       "calls):\n",
	       calls);
	printf("  median %.1f us, p99 %.1f us, p99.9 %.1f us, max %.1f us\n", lat[calls / 2] / 1e3,
	       lat[calls * 99 / 100] / 1e3, lat[calls * 999 / 1000] / 1e3, lat[calls - 1] / 1e3);
	printf("  1 thread: %.0f calls/s\n", calls / (total / 1e9));
	free(lat);
	return 0;
}

struct bench_thread {
	struct rpc_client *c;
	size_t calls;
	int ret;
};

static void *bench_thread_run(void *opaque)
{
	struct bench_thread *t = opaque;

	for (size_t i = 0; i < t->calls && !t->ret; i++)
		t->ret = bench_status(t->c);
	return NULL;
}

static int bench_threads(struct rpc_client *c, size_t calls, int nr)
{
	struct bench_thread t[8];
	pthread_t th[8];
	uint64_t start = bench_now_ns(), total;
	int ret = 0;

	for (int i = 0; i < nr; i++) {
		t[i] = (struct bench_thread){.c = c, .calls = calls / (size_t)nr};
		pthread_create(&th[i], NULL, bench_thread_run, &t[i]);
	}
	for (int i = 0; i < nr; i++) {
		pthread_join(th[i], NULL);
		if (t[i].ret)
			ret = t[i].ret;
	}
	total = bench_now_ns() - start;
	if (!ret)
		printf("  %d threads sharing one client: %.0f calls/s\n", nr,
		       (double)(calls / (size_t)nr * (size_t)nr) / (total / 1e9));
	return ret;
}

/* Publishes on its own thread, at most `window` events ahead of the reader. */
struct bench_pub {
	struct rpc_pub *p;
	size_t events, window;
	atomic_size_t received; /* written by the reader */
	int ret;
};

static void *bench_pub_run(void *opaque)
{
	struct bench_pub *b = opaque;
	Cleave__Events__MigrationPass mp = CLEAVE__EVENTS__MIGRATION_PASS__INIT;
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT;
	struct timespec pause = {.tv_nsec = 20000};

	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_MIGRATION_PASS;
	ev.migration_pass = &mp;
	for (size_t i = 0; i < b->events && !b->ret; i++) {
		while (i - atomic_load(&b->received) >= b->window)
			nanosleep(&pause, NULL);
		mp.pass = i;
		b->ret = rpc_pub_send(b->p, &ev);
	}
	return NULL;
}

/* Sends @events through @p to @s; returns received events and lost ones. */
static int bench_pubsub(struct rpc_pub *p, struct rpc_sub *s, size_t events, size_t window,
			const char *what)
{
	struct bench_pub b = {.p = p, .events = events, .window = window};
	Cleave__Events__Event *in;
	uint64_t missed, lost = 0, start, total;
	pthread_t th;
	size_t got = 0;

	start = bench_now_ns();
	pthread_create(&th, NULL, bench_pub_run, &b);
	while (got + lost < events && !rpc_sub_recv(s, &in, &missed, 1000)) {
		lost += missed;
		got++;
		atomic_store(&b.received, got + lost);
		rpc_msg_free(&in->base);
	}
	total = bench_now_ns() - start;
	pthread_join(th, NULL);
	printf("  %s: %zu sent, %zu received, %lu missed, %.0f events/s\n", what, events, got,
	       (unsigned long)lost, got / (total / 1e9));
	return b.ret;
}

static int bench_events(const char *dir, size_t events)
{
	Cleave__Events__Event ev = CLEAVE__EVENTS__EVENT__INIT, *in;
	Cleave__Events__Stop stop = CLEAVE__EVENTS__STOP__INIT;
	struct rpc_pub *p;
	struct rpc_sub *s = NULL;
	char url[128];
	uint64_t missed;
	int ret;

	fixture_url(url, sizeof(url), dir, "events.sock");
	ret = rpc_pub_open(&p, url, "bench");
	if (ret)
		return ret;
	ret = rpc_sub_open(&s);
	if (!ret)
		ret = rpc_sub_dial(s, url);
	if (ret)
		goto out;
	ev.body_case = CLEAVE__EVENTS__EVENT__BODY_STOP;
	ev.stop = &stop;
	/* Until the subscription is live, events go nowhere. */
	for (int i = 0; i < 500; i++) {
		rpc_pub_send(p, &ev);
		if (!rpc_sub_recv(s, &in, &missed, 10)) {
			rpc_msg_free(&in->base);
			break;
		}
	}
	while (!rpc_sub_recv(s, &in, &missed, 50))
		rpc_msg_free(&in->base);

	printf("pub/sub over ipc (same process; the subscriber drains on its own thread):\n");
	ret = bench_pubsub(p, s, 10000, SIZE_MAX, "burst of 10000, no pacing");
	if (!ret)
		ret = bench_pubsub(p, s, events, SIZE_MAX, "burst, no pacing");
	if (!ret)
		ret = bench_pubsub(p, s, events, 4096, "paced, <= 4096 in flight");
out:
	rpc_sub_close(s);
	rpc_pub_close(p);
	return ret;
}

int main(int argc, char **argv)
{
	size_t calls = 20000, events = 100000;
	char dir[64], url[128];
	struct rpc_client *c;
	pid_t server;
	int ret;

	if (argc == 3 && !strcmp(argv[1], "serve"))
		return fixture_server_main(argv[2]);
	if (argc > 1)
		calls = strtoul(argv[1], NULL, 0);
	if (argc > 2)
		events = strtoul(argv[2], NULL, 0);
	if (calls < 100)
		calls = 100;
	signal(SIGPIPE, SIG_IGN);
	log_init("bench-rpc");
	if (fixture_dir_make(dir, sizeof(dir))) {
		perror("mkdtemp");
		return 1;
	}
	fixture_url(url, sizeof(url), dir, "rpc.sock");
	server = fixture_server_spawn(url);
	if (server < 0) {
		fprintf(stderr, "spawn: %s\n", strerror((int)-server));
		return 1;
	}
	ret = rpc_client_open(&c, url);
	if (ret)
		goto out_server;
	for (int i = 0; i < 200 && !ret; i++)
		ret = bench_status(c); /* warm-up, and waits for the server */
	if (!ret)
		ret = bench_round_trip(c, calls);
	if (!ret)
		ret = bench_threads(c, calls, 4);
	rpc_client_close(c);
	if (!ret)
		ret = bench_events(dir, events);
out_server:
	fixture_server_kill(server);
	fixture_dir_remove(dir);
	if (ret)
		fprintf(stderr, "bench-rpc: %s\n", strerror(-ret));
	return ret ? 1 : 0;
}
