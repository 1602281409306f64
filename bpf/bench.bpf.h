// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once, after rings.bpf.h and flow.bpf.h). */
#ifndef HOPTRACE_BENCH_BPF_H
#define HOPTRACE_BENCH_BPF_H

/* Benchmark and self-test producer: never attached. BPF_PROG_TEST_RUN runs it to
 * fill the ring buffer with `bench_records` synthetic records (1,000 flows, 4 hops,
 * random latencies), so a consumer's drain rate can be measured without traffic. */
__u32 bench_records = 0;

static long bench_one(__u64 i, void *ctx)
{
	void *ring = this_ring();
	struct ht_hop_record *r = ring ? bpf_ringbuf_reserve(ring, sizeof(*r), 0) : NULL;
	__u32 rnd = bpf_get_prandom_u32();

	if (!r) {
		count(HT_CTR_LOST);
		return 1; /* ring full: stop */
	}
	__builtin_memset(r, 0, sizeof(*r));
	r->ts_ns = bpf_ktime_get_ns();
	r->seg_ns[HT_SEG_FORWARD] = (i & 3) ? (rnd & 0xfff) : 0;
	r->seg_ns[HT_SEG_QDISC] = 300 + (rnd >> 20);
	r->seg_ns[HT_SEG_VETH] = 200 + ((rnd >> 8) & 0x3ff);
	r->seg_ns[HT_SEG_BACKLOG] = 500 + ((rnd >> 4) & 0x1fff);
	r->len = 1514;
	r->from_netns = 4026532000u + (i & 3);
	r->to_netns = 4026532001u + (i & 3);
	r->from_ifindex = 2;
	r->to_ifindex = 3;
	r->gso_segs = 1;
	r->kind = HT_REC_HOP;
	r->flags = (i & 3) == 0 ? HT_F_FIRST_HOP : 0;
	r->hop_index = i & 3;
	r->flow.family = 4;
	r->flow.proto = IPPROTO_TCP_;
	r->flow.saddr[0] = 10;
	r->flow.saddr[3] = 1;
	r->flow.daddr[0] = 10;
	r->flow.daddr[3] = 2;
	r->flow.sport = 10000 + (i >> 2) % 1000;
	r->flow.dport = 80;
	submit(ring, r);
	return 0;
}

SEC("syscall")
int ht_bench_fill(void *ctx)
{
	bpf_loop(bench_records, bench_one, NULL, 0);
	return 0;
}

#endif /* HOPTRACE_BENCH_BPF_H */
