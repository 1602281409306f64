// SPDX-License-Identifier: GPL-2.0
/* The baseline for `make bench`: a minimal libbpf ring-buffer consumer (count the
 * records, nothing else) draining the same producer the Swift consumer drains.
 * It loads the object through the C module (which makes the per-CPU rings) and
 * reads the rings with libbpf's ring_buffer, one ring_buffer__add per CPU.
 *   c_consumer ROUNDS RECORDS   drain a pre-filled ring, median records/s
 *   c_consumer live SECONDS     drain while the producer runs, records/s */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/libbpf.h>
#include "hoptrace_bpf.h"

static long seen;

static int on_record(void *ctx, void *data, size_t size)
{
	seen++;
	return 0;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static volatile int producing;

/* The live producer: the never-attached fill program, run back to back. */
static void *produce(void *arg)
{
	struct ht_tracer *t = arg;

	while (producing)
		ht_bench_fill(t, 4096, NULL);
	return NULL;
}

/* With `live SECONDS`: records/s drained while the producer runs on another CPU. */
static int live(struct ht_tracer *t, struct ring_buffer *rb, double seconds)
{
	pthread_t th;
	double t0;

	producing = 1;
	pthread_create(&th, NULL, produce, t);
	t0 = now();
	seen = 0;
	while (now() - t0 < seconds)
		ring_buffer__poll(rb, 100);
	producing = 0;
	pthread_join(th, NULL);
	printf("%.0f\n", seen / (now() - t0));
	return 0;
}

int main(int argc, char **argv)
{
	int is_live = argc > 2 && !strcmp(argv[1], "live");
	int rounds = argc > 1 && !is_live ? atoi(argv[1]) : 5;
	int per_round = argc > 2 ? atoi(argv[2]) : 60000; /* fits one CPU's ring */
	struct ht_knobs knobs = { .sample_every = 1, .packet_sets = 1 << 14, .wakeup_bytes = 256 << 10,
				  .max_state_age_ns = 10000000000ULL, .ring_bytes_per_cpu = 8 << 20 };
	struct ht_tracer *t;
	struct ring_buffer *rb = NULL;
	struct ht_error err;
	double rates[64];
	int fds[1024], nfds;

	if (ht_open(&knobs, &t, &err) || (!is_live && (rounds < 1 || rounds > 64))) {
		fprintf(stderr, "c_consumer: cannot load the BPF object (root?): %s: %d\n", err.call, err.code);
		return 1;
	}
	nfds = ht_ring_fds(t, fds, 1024);
	for (int i = 0; i < nfds; i++) {
		if (!rb)
			rb = ring_buffer__new(fds[i], on_record, NULL, NULL);
		else if (ring_buffer__add(rb, fds[i], on_record, NULL))
			return 1;
		if (!rb)
			return 1;
	}
	if (is_live)
		return live(t, rb, atof(argv[2]));
	for (int i = 0; i < rounds; i++) {
		double t0;

		seen = 0;
		if (ht_bench_fill(t, (uint32_t)per_round, &err))
			return 1;
		t0 = now();
		while (ring_buffer__consume(rb) > 0)
			;
		rates[i] = seen / (now() - t0);
		if (seen != per_round)
			fprintf(stderr, "c_consumer: round %d drained %ld of %d\n", i, seen, per_round);
	}
	qsort(rates, rounds, sizeof(rates[0]), cmp);
	printf("%.0f\n", rates[rounds / 2]);
	ring_buffer__free(rb);
	ht_close(t);
	return 0;
}
