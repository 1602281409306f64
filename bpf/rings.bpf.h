// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once, after the knobs): what userspace reads,
 * the per-CPU ring buffers that carry the records and the per-CPU counters of
 * what did not become one. */
#ifndef HOPTRACE_RINGS_BPF_H
#define HOPTRACE_RINGS_BPF_H

/* One ring buffer per CPU, made and put in here by userspace after load: a
 * producer takes only its own ring's lock and cache lines (one shared ring cost
 * 300 ns a record here, its lock and positions bouncing between CPUs). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1); /* CPUs; set by userspace */
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_RINGBUF);
		__uint(max_entries, 1 << 20); /* per CPU; set by userspace */
	});
} rings SEC(".maps");

/* This CPU's ring, or NULL. */
static __always_inline void *this_ring(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&rings, &cpu);
}

struct counters {
	__u64 v[HT_CTR_COUNT];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct counters);
} counters SEC(".maps");

static __always_inline void count_n(int idx, __u64 n)
{
	__u32 zero = 0;
	struct counters *c = bpf_map_lookup_elem(&counters, &zero);

	if (c && idx >= 0 && idx < HT_CTR_COUNT)
		c->v[idx] += n;
}

static __always_inline void count(int idx)
{
	count_n(idx, 1);
}

/* Hand a reserved record to the consumer, waking it only past `wakeup_bytes` of
 * backlog: a wake-up per record costs microseconds in a VM and caps the consumer
 * near tens of thousands of records a second. */
static __always_inline void submit(void *ring, void *rec)
{
	bpf_ringbuf_submit(rec, bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= wakeup_bytes
					? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

#endif /* HOPTRACE_RINGS_BPF_H */
