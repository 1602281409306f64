// SPDX-License-Identifier: GPL-2.0
/* hoptrace: per-hop latency of packets crossing network namespaces.
 *
 * A packet is picked up by the tcx programs on the selected veth devices and then
 * followed by skb address through the tracepoints every kernel we target has:
 *
 *   net_dev_queue -> net_dev_start_xmit -> netif_rx | napi_gro_receive_entry
 *     -> netif_receive_skb  (one hop: left from_netns, arrived in to_netns)
 *     -> net_dev_queue on the next device (forward) ... -> skb_copy_datagram_iovec
 *
 * One record per packet per completed hop goes to the ring buffer, with wake-ups
 * batched. Per-packet state lives in a bounded set-associative table keyed by skb
 * address; since the slab reuses addresses within microseconds and not every free
 * fires a tracepoint we can see, every later match is validated against skb->head
 * and age.
 * Only tracepoints (tp_btf) and tcx: no kprobes, no fentry.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "hoptrace_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_HLEN 14
#define TCX_NEXT (-1)
#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17
/* netif_receive_skb and tcx ingress run in one call chain: far closer than this */
#define JUST_RECEIVED_NS 100000

/* Knobs, set by userspace between open and load. */
const volatile __u32 sample_every = 1;        /* follow 1 packet in N (1 = all) */
const volatile __u64 min_latency_ns = 0;      /* emit hops whose total is at least this */
const volatile __u64 wakeup_bytes = 1 << 20;  /* force a consumer wake-up past this backlog */
/* Per-packet state untouched for longer is dead. Generous: a packet that waits
 * a second in a starved backlog is the one a user looks for, and is still the
 * same packet (validated by head, length and headers besides). */
const volatile __u64 max_state_age_ns = 10000000000ULL;
const volatile __u32 pkt_set_mask = 0; /* sets in `pkts` - 1 (a power of two - 1) */
/* Benchmarks: every program returns at once, so `make bench` can tell the cost of
 * the hooks themselves (tracepoint and tcx dispatch) from the work done in them.
 * Off, it costs each run one load of a read-only value and a branch never taken
 * (the verifier keeps the test: its target is the programs' common exit). */
const volatile __u32 hooks_only = 0;

enum pkt_phase {
	P_ARRIVED = 1, /* received in a namespace: next queue is a forward, or delivery */
	P_QUEUED = 2,  /* queued on a device (its tcx egress, or net_dev_queue on an untraced one) */
	P_XMIT = 3,
	P_RX = 4,
	P_DONE = 5,    /* delivered to the application */
};

struct pkt {
	__u64 head;     /* skb->head when tracking started: detects a reused skb address */
	__u64 t_start;  /* start of the current hop (arrival of the previous one) */
	__u64 t_queue;
	__u64 t_xmit;
	__u64 t_rx;
	__u32 fp;       /* fingerprint of the packet's headers (IP id, TCP seq / UDP checksum) */
	__u32 sent_netns;   /* after arrival: where the last hop left from (drops and deliveries) */
	__u32 sent_ifindex;
	/* in the first cache line with head: every hook that finds the packet reads them,
	 * and consume_skb reads nothing else */
	__u8 phase;
	__u8 flags;
	__u8 traced_egress; /* this hop was queued at the tcx egress of a device we trace */
	__u8 pad;
	__u32 netns;    /* where the packet is: sending netns while in flight, arrival netns after */
	__u32 ifindex;
	__u32 len;
	__u32 forward_ns;
	__u16 gso_segs;
	__u16 hop_index;
	__u8 pad2[4];
	struct ht_flow_key flow;
	__u8 pad3[8];
};

/* Per-packet state: a set-associative table in an array, HT_PKT_WAYS packets per set,
 * the set chosen by a hash of the skb address. Not an LRU hash map: its update
 * and delete take two IRQ-saving locks each, and a lookup calls a hash function;
 * here a lookup is an inlined array index and four compares, a delete one store.
 * Ways are written without locks: two CPUs inserting into one set at the same
 * instant may pick the same way, and the later writer wins; the other packet's
 * later hooks then fail validation (key, head, fingerprint) and it is counted
 * stale. A live packet pushed out of a full set is counted as evicted. */
struct pkt_set {
	/* a scan reads one cache line: the keys and ages of the set's packets */
	__u64 skb[HT_PKT_WAYS];    /* skb address (key), 0 for a free way */
	__u64 t_last[HT_PKT_WAYS]; /* last hook that touched the packet */
	struct pkt way[HT_PKT_WAYS];
};

_Static_assert(sizeof(struct pkt) == 128 && sizeof(struct pkt_set) % 64 == 0, "sets span whole cache lines");
_Static_assert(__builtin_offsetof(struct pkt, phase) < 64 && __builtin_offsetof(struct pkt, traced_egress) < 64,
	       "phase and traced_egress share the first cache line with head");

/* A packet's place in the table. */
struct pkt_ref {
	struct pkt_set *set; /* NULL: not in the table */
	__u32 w;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 16384); /* sets; resized by userspace before load */
	__type(key, __u32);
	__type(value, struct pkt_set);
} pkts SEC(".maps");

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

extern void *bpf_cast_to_kern_ctx(void *) __ksym;

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

static __always_inline __u32 dev_netns(const struct net_device *dev)
{
	return dev->nd_net.net->ns.inum;
}

/* Time from `then` to `now`, 0 if `then` is later: `then` may come from another
 * CPU, whose clock read can be a little ahead of ours, or be written there after
 * we read ours. Unsigned subtraction would make that 2^64 ns: a live packet taken
 * for stale, a segment of 4 s. */
static __always_inline __u64 elapsed(__u64 now, __u64 then)
{
	return now > then ? now - then : 0;
}

/* The key of an skb: its address as a number. The verifier forbids arithmetic
 * on kernel pointers (the hash below) but lets a privileged program subtract two
 * pointers, which yields a number: subtract the fixed address of a global. */
static __always_inline __u64 skb_key(const void *skb)
{
	return (__u64)skb - (__u64)&pkt_set_mask;
}

/* The set an skb address belongs to. Slab objects are 256-byte aligned: a
 * multiplicative hash spreads them over the sets. */
static __always_inline struct pkt_set *set_of(__u64 key)
{
	__u32 i = (__u32)((key * 0x9E3779B97F4A7C15ULL) >> 32) & pkt_set_mask;

	return bpf_map_lookup_elem(&pkts, &i);
}

static __always_inline struct pkt *pkt_of(struct pkt_ref r)
{
	return &r.set->way[r.w & (HT_PKT_WAYS - 1)];
}

static __always_inline __u64 *last_of(struct pkt_ref r)
{
	return &r.set->t_last[r.w & (HT_PKT_WAYS - 1)];
}

/* Stop following the packet: its way is free. */
static __always_inline void forget(struct pkt_ref r)
{
	r.set->skb[r.w & (HT_PKT_WAYS - 1)] = 0;
}

/* Where `key` is in the table; .set is NULL when it is not. */
static __always_inline struct pkt_ref find(__u64 key)
{
	struct pkt_ref r = { .set = set_of(key) };

	if (!r.set)
		return r;
#pragma unroll
	for (int w = 0; w < HT_PKT_WAYS; w++)
		if (r.set->skb[w] == key) {
			r.w = w;
			return r;
		}
	r.set = NULL;
	return r;
}

/* Still has a segment to measure: inside a hop, or a TCP packet waiting to be
 * read (its deliver segment). */
static __always_inline int in_flight(const struct pkt *p)
{
	return p->phase != P_DONE && (p->phase != P_ARRIVED || p->flow.proto == IPPROTO_TCP_);
}

/* Inside a hop: queued, sent or received by the peer, not yet arrived. */
static __always_inline int in_hop(const struct pkt *p)
{
	return p->phase == P_QUEUED || p->phase == P_XMIT || p->phase == P_RX;
}

/* A hop of the packet we follow that cannot be measured: the packet turned up
 * further on with the hop's tracepoints not run for it (the kernel does not
 * always run tracepoint programs: on some machines NET_RX work done on top of
 * certain tasks runs none of them, while tcx programs and ftrace still see the
 * packet), or ended mid-hop (cut into segments in software, redirected). Counted
 * in wire packets; a first hop never recorded is counted here instead of in its
 * flow, so a flow's count is never short by more than this. */
static __always_inline void hop_unseen(struct pkt *p)
{
	count_n(HT_CTR_UNSEEN, p->gso_segs);
	p->flags &= ~HT_F_FIRST_HOP;
	p->hop_index++;
}

/* The packet's state if `skb` still names the packet that started it. */
static __always_inline struct pkt *lookup(const struct sk_buff *skb, __u64 now, struct pkt_ref *ref)
{
	struct pkt_ref r = find(skb_key(skb));
	struct pkt *p;

	*ref = r;
	if (!r.set)
		return NULL;
	p = pkt_of(r);
	if (p->head != (__u64)skb->head) {
		count(HT_CTR_STALE);
		forget(r);
		return NULL;
	}
	if (elapsed(now, *last_of(r)) > max_state_age_ns) {
		count(in_flight(p) ? HT_CTR_EXPIRED : HT_CTR_STALE);
		forget(r);
		return NULL;
	}
	*last_of(r) = now;
	return p;
}

/* A way being filled by a claimer: it matches no skb, and no other claimer takes it. */
#define WAY_CLAIMED 1
/* Arrived, not TCP, idle this long: delivered (UDP frees its skbs unseen), nothing
 * left to measure. */
#define RESTING_NS 100000000ULL

/* A way for a new packet in `key`'s set, taken for it (WAY_CLAIMED until the
 * caller stores the key). In order: a free or dead way; a packet at rest (nothing
 * left to measure), longest idle first; else the packet in flight touched longest
 * ago, counted as evicted. The take is a compare-and-swap, so two CPUs never fill
 * one way; the loser of a race does not follow its packet and counts it as
 * evicted. */
static __always_inline struct pkt_ref claim(__u64 key, __u64 now)
{
	struct pkt_ref r = { .set = set_of(key) };
	__u64 best_idle = 0, seen = WAY_CLAIMED;
	int best_class = 3;

	if (!r.set)
		return r;
#pragma unroll
	for (int w = 0; w < HT_PKT_WAYS; w++) {
		__u64 k = r.set->skb[w];
		__u64 idle = elapsed(now, r.set->t_last[w]);
		int class;

		if (k == WAY_CLAIMED)
			continue;
		if (!k || idle > max_state_age_ns)
			class = 0;
		else if (idle > RESTING_NS && !in_flight(&r.set->way[w]))
			class = 1;
		else
			class = 2;
		if (class < best_class || (class == best_class && idle > best_idle)) {
			best_class = class;
			best_idle = idle;
			r.w = w;
			seen = k;
		}
	}
	if (seen == WAY_CLAIMED ||
	    __sync_val_compare_and_swap(&r.set->skb[r.w & (HT_PKT_WAYS - 1)], seen, WAY_CLAIMED) != seen) {
		count(HT_CTR_EVICTED); /* every way being filled, or lost the race for this one */
		r.set = NULL;
		return r;
	}
	if (best_class == 2)
		count(HT_CTR_EVICTED);
	return r;
}

/* Parse the 5-tuple with direct packet access (the headers of packets on veth
 * are in the linear area; when they are not, the packet is reported as non-IP).
 * Returns a fingerprint that is the same at every hop (IP id or IPv6 length, TCP
 * sequence or UDP length+checksum): it tells a packet from a recycled skb, and
 * 1-in-N sampling on it picks whole packets, never single hops. */
static __always_inline __u32 parse_flow(struct __sk_buff *ctx, struct ht_flow_key *k)
{
	void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *l3 = eth + 1, *l4;
	__u16 proto;
	__u32 mix;

	if (l3 > end)
		return 0;
	proto = eth->h_proto;
	if (proto == bpf_htons(ETH_P_8021Q)) {
		if (l3 + 4 > end)
			return 0;
		proto = *(__u16 *)(l3 + 2);
		l3 += 4;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end)
			return 0;
		k->family = 4;
		__builtin_memcpy(k->saddr, &ip->saddr, 4);
		__builtin_memcpy(k->daddr, &ip->daddr, 4);
		k->proto = ip->protocol;
		mix = ip->id;
		if (ip->frag_off & bpf_htons(0x1fff)) /* not the first fragment: no ports */
			return mix * 2654435761u;
		l4 = l3 + ((*(__u8 *)ip & 0xf) << 2);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		if ((void *)(ip6 + 1) > end)
			return 0;
		k->family = 6;
		__builtin_memcpy(k->saddr, &ip6->saddr, 16);
		__builtin_memcpy(k->daddr, &ip6->daddr, 16);
		k->proto = ip6->nexthdr;
		mix = ip6->payload_len;
		l4 = ip6 + 1;
	} else {
		return 0;
	}
	if ((k->proto == IPPROTO_TCP_ || k->proto == IPPROTO_UDP_) && l4 + 8 <= end) {
		k->sport = bpf_ntohs(*(__u16 *)l4);
		k->dport = bpf_ntohs(*(__u16 *)(l4 + 2));
		mix ^= *(__u32 *)(l4 + 4); /* TCP sequence number, or UDP length+checksum */
	}
	return mix * 2654435761u;
}

/* The next hop starts: the packet, arrived in a namespace, is queued on device
 * `ifindex` there (forwarded by a bridge or routing). */
static __always_inline void forward_queued(struct pkt *p, __u64 now, __u32 ifindex, __u8 traced_egress)
{
	p->forward_ns = elapsed(now, p->t_start);
	p->flags |= HT_F_FORWARDED;
	p->ifindex = ifindex;
	p->t_queue = now;
	p->traced_egress = traced_egress;
	p->phase = P_QUEUED;
}

/* The packet in `ctx` at a traced device: queued there (egress, `phase`
 * P_QUEUED) or arrived there from a path we do not follow (ingress, P_ARRIVED).
 * Egress is where a hop starts: tcx egress runs just before the kernel's
 * net_dev_queue tracepoint, so on traced devices it does that hook's work and the
 * tracepoint is only attached where a hop can start on an untraced device (one
 * hook firing less per hop). A tcx hook also sees packets we follow (forwarded to
 * the next device), so an existing entry counts only if its fingerprint matches:
 * the slab hands a freed skb's address, and often its head, to the next packet
 * within microseconds, and UDP frees skbs without a tracepoint we can see. */
static __always_inline void track(struct __sk_buff *ctx, __u8 phase)
{
	struct sk_buff *skb = bpf_cast_to_kern_ctx(ctx);
	__u64 now = bpf_ktime_get_ns();
	__u64 key = skb_key(skb);
	struct ht_flow_key flow = {};
	struct pkt_ref r = find(key);
	struct pkt *old = r.set ? pkt_of(r) : NULL, *p;
	__u32 hash, netns, sent_netns = 0, sent_ifindex = 0;
	__u16 hop_index = 0;
	__u8 flags = HT_F_FIRST_HOP, same;

	/* at ingress, a packet we follow was received by netif_receive_skb a moment
	 * ago, in the same call chain: skip the parse */
	if (old && phase == P_ARRIVED && old->phase == P_ARRIVED && old->head == (__u64)skb->head &&
	    elapsed(now, old->t_start) < JUST_RECEIVED_NS)
		return;
	hash = parse_flow(ctx, &flow);
	netns = dev_netns(skb->dev);
	/* The packet we follow, at a device of the namespace it is in (forwarded on,
	 * or seen again at ingress)? A match of address, head and headers alone is not
	 * enough: TCP retransmits a segment in a clone at the same address (the
	 * fclone companion of the queued original), with the same head and sequence,
	 * while the state of the first transmission still sits at the receiver. */
	if (old) {
		same = old->fp == hash && old->head == (__u64)skb->head &&
		       elapsed(now, *last_of(r)) <= max_state_age_ns;
		if (same && old->netns == netns && old->phase == P_ARRIVED) {
			*last_of(r) = now;
			if (phase == P_QUEUED) /* forwarded: the next hop starts here */
				forward_queued(old, now, ctx->ifindex, 1);
			return;
		}
		if (same && old->netns != netns && in_hop(old)) {
			/* still the same packet, one hop further than we saw: follow it on */
			hop_unseen(old);
			flags = old->flags;
			hop_index = old->hop_index;
			sent_netns = old->netns;
			sent_ifindex = old->ifindex;
		} else {
			count(HT_CTR_STALE);
		}
	}
	if (sample_every > 1 && (hash >> 8) % sample_every != 0) {
		count(HT_CTR_SAMPLED_OUT);
		if (old)
			forget(r);
		return;
	}
	if (!old)
		r = claim(key, now);
	if (!r.set)
		return;
	p = pkt_of(r);
	/* every field: the way may hold another packet's leftovers */
	p->head = (__u64)skb->head;
	p->t_start = now;
	p->t_queue = now;
	p->t_xmit = 0;
	p->t_rx = 0;
	p->fp = hash;
	p->sent_netns = sent_netns;
	p->sent_ifindex = sent_ifindex;
	p->netns = netns;
	p->ifindex = ctx->ifindex;
	p->len = ctx->len;
	p->forward_ns = 0;
	p->gso_segs = ctx->gso_segs ? ctx->gso_segs : 1;
	p->hop_index = hop_index;
	p->phase = phase;
	p->traced_egress = phase == P_QUEUED;
	p->flags = (flags & HT_F_FIRST_HOP) | (flow.family == 6 ? HT_F_IPV6 : 0);
	p->flow = flow;
	*last_of(r) = now;
	r.set->skb[r.w & (HT_PKT_WAYS - 1)] = key; /* last: the way is not this packet's until its fields are */
}

static __always_inline void emit(struct pkt *p, __u8 kind, __u32 from_netns, __u32 from_ifindex,
				 __u32 to_netns, __u32 to_ifindex, __u32 qdisc, __u32 veth, __u32 backlog,
				 __u32 deliver, __u8 flags)
{
	struct ht_hop_record *r;
	__u64 total = (__u64)p->forward_ns + qdisc + veth + backlog + deliver;
	void *ring;

	if (kind != HT_REC_DROP && total < min_latency_ns) {
		count(HT_CTR_BELOW_MIN);
		return;
	}
	ring = this_ring();
	r = ring ? bpf_ringbuf_reserve(ring, sizeof(*r), 0) : NULL;
	if (!r) {
		count(HT_CTR_LOST);
		return;
	}
	r->ts_ns = p->t_start;
	r->seg_ns[HT_SEG_FORWARD] = kind == HT_REC_HOP ? p->forward_ns : 0; /* HT_SEG_DELIVER carries a drop's reason */
	r->seg_ns[HT_SEG_QDISC] = qdisc;
	r->seg_ns[HT_SEG_VETH] = veth;
	r->seg_ns[HT_SEG_BACKLOG] = backlog;
	r->seg_ns[HT_SEG_DELIVER] = deliver;
	r->len = p->len;
	r->from_netns = from_netns;
	r->from_ifindex = from_ifindex;
	r->to_netns = to_netns;
	r->to_ifindex = to_ifindex;
	r->gso_segs = p->gso_segs;
	r->kind = kind;
	r->flags = flags;
	r->cpu = bpf_get_smp_processor_id();
	r->hop_index = p->hop_index;
	r->flow = p->flow;
	bpf_ringbuf_submit(r, bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= wakeup_bytes
				      ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
}

SEC("tc")
int ht_tcx_egress(struct __sk_buff *ctx)
{
	if (hooks_only)
		return TCX_NEXT;
	track(ctx, P_QUEUED);
	return TCX_NEXT; /* never alter or drop traffic */
}

/* Packets arriving on a selected device from a path we do not follow (the host
 * stack, a physical NIC): follow them from here, through forward and delivery. */
SEC("tc")
int ht_tcx_ingress(struct __sk_buff *ctx)
{
	if (hooks_only)
		return TCX_NEXT;
	track(ctx, P_ARRIVED);
	return TCX_NEXT;
}

/* Attached only where a hop can start on a device we do not trace (a selection
 * that leaves veths untraced): on traced devices tcx egress has done this. */
SEC("tp_btf/net_dev_queue")
int BPF_PROG(ht_net_dev_queue, struct sk_buff *skb)
{
	if (hooks_only)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);
	__u32 netns;

	if (!p || p->phase != P_ARRIVED)
		return 0;
	/* a packet queued again is forwarded from the namespace it arrived in, with
	 * the length (L2 header included) it started with; anything else is a new
	 * skb at a recycled address (UDP frees skbs with no tracepoint we see) */
	netns = dev_netns(skb->dev);
	if (skb->len != p->len || netns != p->netns) {
		count(HT_CTR_STALE);
		forget(r);
		return 0;
	}
	forward_queued(p, now, skb->dev->ifindex, 0);
	return 0;
}

SEC("tp_btf/net_dev_start_xmit")
int BPF_PROG(ht_net_dev_start_xmit, const struct sk_buff *skb, const struct net_device *dev)
{
	if (hooks_only)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);

	if (p && p->phase == P_QUEUED) {
		p->t_xmit = now;
		p->phase = P_XMIT;
	}
	return 0;
}

static __always_inline void on_rx(const struct sk_buff *skb)
{
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);

	if (p && p->phase == P_XMIT) {
		p->t_rx = now;
		p->phase = P_RX;
	}
}

SEC("tp_btf/netif_rx")
int BPF_PROG(ht_netif_rx, struct sk_buff *skb)
{
	if (hooks_only)
		return 0;
	on_rx(skb);
	return 0;
}

/* veth with NAPI (GRO or XDP enabled) hands packets to GRO instead of netif_rx. */
SEC("tp_btf/napi_gro_receive_entry")
int BPF_PROG(ht_napi_gro_receive_entry, const struct sk_buff *skb)
{
	if (hooks_only)
		return 0;
	on_rx(skb);
	return 0;
}

SEC("tp_btf/netif_receive_skb")
int BPF_PROG(ht_netif_receive_skb, struct sk_buff *skb)
{
	if (hooks_only)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);
	__u32 netns, ifindex, veth = 0, backlog;
	__u8 flags;

	if (!p)
		return 0;
	netns = dev_netns(skb->dev);
	ifindex = skb->dev->ifindex;
	if ((p->phase == P_QUEUED || p->phase == P_ARRIVED) && netns != p->netns) {
		/* arrived in another namespace, but its xmit (or queue: a device we do
		 * not trace, net_dev_queue not attached) hooks did not run: hop lost */
		hop_unseen(p);
		goto arrived;
	}
	if (p->phase != P_XMIT && p->phase != P_RX)
		return 0;
	flags = p->flags;
	if (p->phase == P_RX) {
		veth = elapsed(p->t_rx, p->t_xmit);
		backlog = elapsed(now, p->t_rx);
	} else {
		flags |= HT_F_NO_RX;
		backlog = elapsed(now, p->t_xmit);
	}
	emit(p, HT_REC_HOP, p->netns, p->ifindex, netns, ifindex, elapsed(p->t_xmit, p->t_queue), veth, backlog, 0, flags);
	p->hop_index++;
	p->flags &= ~HT_F_FIRST_HOP;
arrived:
	p->flags &= ~HT_F_FORWARDED;
	p->sent_netns = p->netns;
	p->sent_ifindex = p->ifindex;
	p->netns = netns;
	p->ifindex = ifindex;
	p->t_start = now;
	p->forward_ns = 0;
	p->traced_egress = 0;
	p->phase = P_ARRIVED;
	return 0;
}

SEC("tp_btf/skb_copy_datagram_iovec")
int BPF_PROG(ht_skb_copy_datagram_iovec, const struct sk_buff *skb, int len)
{
	if (hooks_only)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);

	if (!p || p->phase != P_ARRIVED || p->hop_index == 0)
		return 0;
	/* under the hop that brought it: from where that hop left */
	emit(p, HT_REC_DELIVER, p->sent_netns ? p->sent_netns : p->netns, p->sent_netns ? p->sent_ifindex : p->ifindex,
	     p->netns, p->ifindex, 0, 0, 0, elapsed(now, p->t_start), p->flags);
	p->phase = P_DONE;
	return 0;
}

/* Every skb freed anywhere passes here: a set scan, and one store for packets
 * we follow. One freed normally after a traced device picked it up but before
 * the device sent it (cut into segments in software, redirected by another
 * program, or its hooks not run) leaves that hop unmeasured: counted. Not so one
 * queued on a device we do not trace (a NIC cutting it up on its way out of the
 * node), or one freed after the send: it left where we do not follow. */
SEC("tp_btf/consume_skb")
int BPF_PROG(ht_consume_skb, struct sk_buff *skb)
{
	if (hooks_only)
		return 0;
	struct pkt_ref r = find(skb_key(skb));
	struct pkt *p;

	if (!r.set)
		return 0;
	p = pkt_of(r);
	if (p->traced_egress && p->phase == P_QUEUED)
		hop_unseen(p);
	forget(r);
	return 0;
}

/* A drop of a packet we follow becomes a record, with the kernel's reason. Frees
 * with reason NOT_SPECIFIED after arrival are part of normal receive processing
 * (the stack's own bookkeeping), not losses of user data, so they only end tracking. */
SEC("tp_btf/kfree_skb")
int BPF_PROG(ht_kfree_skb, struct sk_buff *skb, void *location, enum skb_drop_reason reason)
{
	if (hooks_only)
		return 0;
	__u64 now = bpf_ktime_get_ns();
	struct pkt_ref r;
	struct pkt *p = lookup(skb, now, &r);
	struct net_device *dev;
	__u32 at_netns, at_ifindex;

	if (!p)
		return 0;
	if (p->phase != P_DONE && !(p->phase == P_ARRIVED &&
	    reason == bpf_core_enum_value(enum skb_drop_reason, SKB_DROP_REASON_NOT_SPECIFIED))) {
		dev = skb->dev;
		at_netns = p->netns;
		at_ifindex = p->ifindex;
		barrier_var(at_netns); /* keep the map and kernel loads apart for the verifier */
		if (dev) {
			at_netns = dev_netns(dev);
			at_ifindex = dev->ifindex;
		}
		if (p->phase == P_ARRIVED)
			p->t_start = now; /* dropped where it was: no time spent in flight */
		if (p->phase == P_ARRIVED && p->hop_index > 0)
			/* dropped by the stack after arrival: on the hop that brought it */
			emit(p, HT_REC_DROP, p->sent_netns, p->sent_ifindex, at_netns, at_ifindex, 0, 0, 0,
			     (__u32)reason, p->flags);
		else
			emit(p, HT_REC_DROP, p->netns, p->ifindex, at_netns, at_ifindex, 0, 0, 0,
			     (__u32)reason, p->flags);
	}
	forget(r);
	return 0;
}

/* ---- Softirq cost: NET_RX and NET_TX only, all state per CPU, no locks ---- */

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
	bpf_ringbuf_submit(r, bpf_ringbuf_query(ring, BPF_RB_AVAIL_DATA) >= wakeup_bytes
				      ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
	return 0;
}

SEC("syscall")
int ht_bench_fill(void *ctx)
{
	bpf_loop(bench_records, bench_one, NULL, 0);
	return 0;
}
