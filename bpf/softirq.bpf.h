// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once): softirq cost, NET_RX and NET_TX only,
 * all state per CPU, no locks. Independent of the packet programs. */
#ifndef HOPTRACE_SOFTIRQ_BPF_H
#define HOPTRACE_SOFTIRQ_BPF_H

#define NET_TX_SOFTIRQ 2
#define NET_RX_SOFTIRQ 3
#define PF_KTHREAD_ 0x00200000
#define KSOFTIRQ_NAME 0x71726974666f736bULL /* "ksoftirq", little-endian */

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct ht_softirq_cpu);
} softirqs SEC(".maps");

/* HT_SIRQ_NET_* for the vectors we account, HT_SIRQ_COUNT for the others. */
static __always_inline __u32 sirq_index(unsigned int vec)
{
	return vec == NET_RX_SOFTIRQ ? HT_SIRQ_NET_RX : vec == NET_TX_SOFTIRQ ? HT_SIRQ_NET_TX : HT_SIRQ_COUNT;
}

static __always_inline __u32 sirq_bucket(__u64 v)
{
	__u32 msb = 0, b;
	__u64 x = v;

	if (v < 8)
		return v;
	if (x >> 32) { x >>= 32; msb += 32; }
	if (x >> 16) { x >>= 16; msb += 16; }
	if (x >> 8) { x >>= 8; msb += 8; }
	if (x >> 4) { x >>= 4; msb += 4; }
	if (x >> 2) { x >>= 2; msb += 2; }
	if (x >> 1) { msb += 1; }
	b = (msb - 1) * 4 + ((v >> (msb - 2)) & 3);
	return b < HT_SIRQ_BUCKETS ? b : HT_SIRQ_BUCKETS - 1;
}

/* One more duration `d` into a count, a sum, a maximum and a histogram. */
static __always_inline void tally(__u64 *n, __u64 *sum, __u64 *max, __u32 *hist, __u64 d)
{
	(*n)++;
	*sum += d;
	if (d > *max)
		*max = d;
	hist[sirq_bucket(d)]++;
}

/* This CPU's softirq value and the vector index, or NULL for other vectors. */
static __always_inline struct ht_softirq_cpu *sirq_this_cpu(unsigned int vec, __u32 *i)
{
	__u32 zero = 0;

	*i = sirq_index(vec);
	if (*i >= HT_SIRQ_COUNT)
		return NULL;
	return bpf_map_lookup_elem(&softirqs, &zero);
}

SEC("tp_btf/softirq_raise")
int BPF_PROG(ht_softirq_raise, unsigned int vec)
{
	if (hooks_only)
		return 0;
	__u32 i;
	struct ht_softirq_cpu *c = sirq_this_cpu(vec, &i);

	if (!c)
		return 0;
	c->vec[i & 1].raises++;
	if (!c->raised_at[i & 1]) /* the first raise since the last run starts the wait */
		c->raised_at[i & 1] = bpf_ktime_get_ns();
	return 0;
}

SEC("tp_btf/softirq_entry")
int BPF_PROG(ht_softirq_entry, unsigned int vec)
{
	if (hooks_only)
		return 0;
	__u32 i;
	struct ht_softirq_cpu *c = sirq_this_cpu(vec, &i);
	struct ht_softirq_stats *st;
	struct task_struct *task;
	__u64 now;

	if (!c)
		return 0;
	st = &c->vec[i & 1];
	now = bpf_ktime_get_ns();
	c->entered_at[i & 1] = now;
	if (c->raised_at[i & 1]) {
		tally(&st->delays, &st->delay_ns, &st->max_delay_ns, st->delay_hist, now - c->raised_at[i & 1]);
		c->raised_at[i & 1] = 0;
	}
	/* run by a ksoftirqd thread, not on interrupt exit or bh enable: a kernel
	 * thread named "ksoftirqd/N", read in place (copying the name with
	 * bpf_get_current_comm cost 100 ns a run; the per-CPU ksoftirqd pointer is
	 * not in kallsyms on kernels without KALLSYMS_ALL) */
	task = bpf_get_current_task_btf();
	c->in_ksoftirqd[i & 1] = (task->flags & PF_KTHREAD_) && *(__u64 *)task->comm == KSOFTIRQ_NAME;
	return 0;
}

/* The costly hook elsewhere: here one lookup, arithmetic, no helper but the clock. */
SEC("tp_btf/softirq_exit")
int BPF_PROG(ht_softirq_exit, unsigned int vec)
{
	if (hooks_only)
		return 0;
	__u32 i;
	struct ht_softirq_cpu *c = sirq_this_cpu(vec, &i);
	struct ht_softirq_stats *st;
	__u64 d;

	if (!c || !c->entered_at[i & 1])
		return 0;
	st = &c->vec[i & 1];
	d = bpf_ktime_get_ns() - c->entered_at[i & 1];
	c->entered_at[i & 1] = 0;
	tally(&st->runs, &st->run_ns, &st->max_run_ns, st->run_hist, d);
	if (c->in_ksoftirqd[i & 1]) {
		st->ksoftirqd_runs++;
		st->ksoftirqd_ns += d;
	}
	return 0;
}

SEC("tp_btf/napi_poll")
int BPF_PROG(ht_napi_poll, struct napi_struct *napi, int work, int budget)
{
	if (hooks_only)
		return 0;
	__u32 i;
	struct ht_softirq_cpu *c = sirq_this_cpu(NET_RX_SOFTIRQ, &i);
	struct ht_softirq_stats *st;

	if (!c)
		return 0;
	st = &c->vec[HT_SIRQ_NET_RX];
	st->napi_polls++;
	st->napi_packets += work;
	if (work >= budget)
		st->napi_exhausted++;
	return 0;
}

#endif /* HOPTRACE_SOFTIRQ_BPF_H */
