// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once, after rings.bpf.h and flow.bpf.h): the
 * state of each packet we follow, keyed by skb address, and the validation that
 * an address still names the packet that started it. */
#ifndef HOPTRACE_PACKET_TABLE_BPF_H
#define HOPTRACE_PACKET_TABLE_BPF_H

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

#endif /* HOPTRACE_PACKET_TABLE_BPF_H */
