// SPDX-License-Identifier: GPL-2.0
/* The baseline for `make bench`: a minimal libbpf ring-buffer consumer (count the
 * records, nothing else) draining the same producer the Swift consumer drains.
 *   c_consumer ROUNDS RECORDS   drain a pre-filled ring, median records/s
 *   c_consumer live SECONDS     drain while the producer runs, records/s */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "hoptrace.skel.h"

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
	struct hoptrace_bpf *skel = arg;
	DECLARE_LIBBPF_OPTS(bpf_test_run_opts, opts);

	while (producing)
		bpf_prog_test_run_opts(bpf_program__fd(skel->progs.ht_bench_fill), &opts);
	return NULL;
}

/* With `live SECONDS`: records/s drained while the producer runs on another CPU. */
static int live(struct hoptrace_bpf *skel, struct ring_buffer *rb, double seconds)
{
	pthread_t th;
	double t0;

	skel->bss->bench_records = 4096;
	producing = 1;
	pthread_create(&th, NULL, produce, skel);
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
	int rounds = argc > 1 ? atoi(argv[1]) : 5;
	int per_round = argc > 2 ? atoi(argv[2]) : 150000;
	struct hoptrace_bpf *skel = hoptrace_bpf__open_and_load();
	struct ring_buffer *rb;
	double rates[64];

	int is_live = argc > 2 && !strcmp(argv[1], "live");

	if (!skel || (!is_live && (rounds < 1 || rounds > 64))) {
		fprintf(stderr, "c_consumer: cannot load the BPF object (root?)\n");
		return 1;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), on_record, NULL, NULL);
	if (!rb)
		return 1;
	if (is_live)
		return live(skel, rb, atof(argv[2]));
	for (int i = 0; i < rounds; i++) {
		DECLARE_LIBBPF_OPTS(bpf_test_run_opts, opts);
		double t0;

		seen = 0;
		skel->bss->bench_records = per_round;
		if (bpf_prog_test_run_opts(bpf_program__fd(skel->progs.ht_bench_fill), &opts))
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
	hoptrace_bpf__destroy(skel);
	return 0;
}
