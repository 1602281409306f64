/* hoptrace ABI: the one definition of what crosses the kernel/user boundary.
 *
 * Included by the BPF programs (bpf/hoptrace.bpf.c), the C module over libbpf
 * (Sources/CHoptraceBPF) and, for layout checks only, the Swift tests. The Swift
 * core decodes records by the offsets below and a test asserts they match this
 * header, so a change here without a version bump fails the build's tests.
 *
 * Fixed-width types only; every struct is padded explicitly so BPF (clang
 * -target bpf) and the host compiler agree on the layout.
 */
#ifndef HOPTRACE_ABI_H
#define HOPTRACE_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* Bump on any change to a struct or enum below. */
#define HT_ABI_VERSION 4

/* Segments of a hop, in the order a packet crosses them. */
enum ht_segment {
	HT_SEG_FORWARD = 0, /* arrival in a namespace -> queued on the next device (bridge/routing) */
	HT_SEG_QDISC = 1,   /* net_dev_queue -> net_dev_start_xmit on the sending device */
	HT_SEG_VETH = 2,    /* start_xmit -> netif_rx/GRO entry on the peer (driver crossing) */
	HT_SEG_BACKLOG = 3, /* netif_rx -> netif_receive_skb (wait for the NET_RX softirq) */
	HT_SEG_DELIVER = 4, /* netif_receive_skb -> first copy to the application */
	HT_SEG_COUNT = 5,
};

enum ht_record_kind {
	HT_REC_HOP = 1,     /* the packet left from_* and arrived at to_* */
	HT_REC_DELIVER = 2, /* the application read the packet in to_netns (only HT_SEG_DELIVER set);
			     * from_*: where the hop that brought it left (to_* again when unknown) */
	HT_REC_DROP = 3,    /* the kernel freed the packet as dropped (kfree_skb) on its way from
			     * from_* (to_*: the device it was at); seg_ns[HT_SEG_DELIVER] holds
			     * the kernel's enum skb_drop_reason, the other segments are zero */
};

enum ht_record_flags {
	HT_F_FIRST_HOP = 1,  /* first hop seen of this packet: count packets here */
	HT_F_NO_RX = 2,      /* the peer's rx hook did not fire (veth+backlog merged into backlog) */
	HT_F_NO_QDISC = 4,   /* queued on a device without a queue (noqueue, veth's default): sent in the
			      * same call, so HT_SEG_QDISC was not crossed (absent, not 0 ns) */
	HT_F_FORWARDED = 8,  /* the hop began in a namespace the packet had arrived in: HT_SEG_FORWARD
			      * was crossed (absent, not 0 ns, when this flag is clear) */
};

/* IPv4 addresses occupy the first 4 bytes of saddr/daddr. Ports in host order. */
struct ht_flow_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__u16 sport;
	__u16 dport;
	__u8 proto;
	__u8 family; /* 4 or 6; 0 = not IP */
	__u8 pad[2];
};

/* One record per packet per completed hop (or per delivery). 96 bytes. */
struct ht_hop_record {
	__u64 ts_ns;                  /* CLOCK_MONOTONIC when the hop started */
	__u32 seg_ns[HT_SEG_COUNT];   /* duration of each segment, 0 if not crossed */
	__u32 len;                    /* skb->len when tracking started */
	__u32 from_netns;             /* netns inode the packet left */
	__u32 to_netns;               /* netns inode the packet arrived in */
	__u32 from_ifindex;           /* device it was queued on (in from_netns) */
	__u32 to_ifindex;             /* device it was received on (in to_netns) */
	__u16 gso_segs;               /* wire packets this skb stands for (>= 1) */
	__u8 kind;                    /* enum ht_record_kind */
	__u8 flags;                   /* enum ht_record_flags */
	__u16 cpu;                    /* CPU that completed the hop */
	__u16 hop_index;              /* 0 for the packet's first hop */
	struct ht_flow_key flow;
};

/* Packets per set of the per-packet state table (`pkts`, set-associative). */
#define HT_PKT_WAYS 4

/* Per-CPU counters, index into the `counters` map. */
enum ht_counter {
	HT_CTR_LOST = 0,        /* records that could not be reserved in the ring buffer */
	HT_CTR_SAMPLED_OUT = 1, /* packets skipped by 1-in-N sampling */
	HT_CTR_BELOW_MIN = 2,   /* hops not emitted: total below min_latency_ns */
	HT_CTR_STALE = 3,       /* per-packet state found stale or reused and restarted */
	HT_CTR_EVICTED = 4,     /* packets in flight no longer followed: state pushed out of a full set */
	HT_CTR_EXPIRED = 5,     /* packets in flight no longer followed: untouched for max_state_age_ns */
	HT_CTR_UNSEEN = 6,      /* wire packets whose hop was not measured: the skb followed turned up
	                         * further on without the hop's tracepoints having run for it, or
	                         * ended mid-hop (segmented in software, redirected) */
	HT_CTR_COUNT = 7,
};

/* Softirq accounting: kept in the kernel per CPU (a record per softirq run would
 * cost more than the run). Index into the `softirqs` map. */
enum ht_softirq {
	HT_SIRQ_NET_TX = 0,
	HT_SIRQ_NET_RX = 1,
	HT_SIRQ_COUNT = 2,
};

/* Log-linear buckets with 2 sub-bits: exact below 8 ns, then each power of two in
 * 4 buckets (within 12.5 %). Bucket b >= 8 holds [(4 + b % 4) << (b / 4 - 1),
 * (5 + b % 4) << (b / 4 - 1)); the last one also holds everything above. */
#define HT_SIRQ_BUCKETS 168

struct ht_softirq_stats {
	__u64 runs;             /* softirq_entry .. softirq_exit pairs */
	__u64 run_ns;           /* their total duration */
	__u64 max_run_ns;
	__u64 ksoftirqd_runs;   /* of those, run by ksoftirqd instead of on irq exit */
	__u64 ksoftirqd_ns;
	__u64 raises;           /* softirq_raise events */
	__u64 delays;           /* runs whose raise was seen: raise -> run delay measured */
	__u64 delay_ns;
	__u64 max_delay_ns;
	__u64 napi_polls;       /* napi_poll events (NET_RX only) */
	__u64 napi_exhausted;   /* polls that used their whole budget (time squeeze) */
	__u64 napi_packets;     /* work done by those polls */
	__u32 run_hist[HT_SIRQ_BUCKETS];
	__u32 delay_hist[HT_SIRQ_BUCKETS];
};

/* The one per-CPU value of the `softirqs` map: both vectors' statistics and the
 * hooks' own state, so each softirq event costs a single map lookup. */
struct ht_softirq_cpu {
	struct ht_softirq_stats vec[HT_SIRQ_COUNT];
	__u64 raised_at[HT_SIRQ_COUNT];  /* first raise since the last run, 0 if none */
	__u64 entered_at[HT_SIRQ_COUNT]; /* start of the current run, 0 if none */
	__u8 in_ksoftirqd[HT_SIRQ_COUNT];
	__u8 pad[6];
};

#endif /* HOPTRACE_ABI_H */
