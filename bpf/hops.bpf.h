// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once, after the packet table): the packet
 * programs. tcx on the traced devices starts following a packet; the packet
 * tracepoints advance it hop by hop and emit one record per completed hop, a
 * delivery or a drop. */
#ifndef HOPTRACE_HOPS_BPF_H
#define HOPTRACE_HOPS_BPF_H

#define TCX_NEXT (-1)

/* netif_receive_skb and tcx ingress run in one call chain: far closer than this */
#define JUST_RECEIVED_NS 100000

extern void *bpf_cast_to_kern_ctx(void *) __ksym;

static __always_inline __u32 dev_netns(const struct net_device *dev)
{
	return dev->nd_net.net->ns.inum;
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

/* The packet is queued on `dev` now. A device without a queue (root qdisc
 * noqueue: no enqueue, veth's default) sends it in this same call: its xmit is
 * now, and net_dev_start_xmit need only be attached where a traced device has a
 * queue (one hook firing less per hop). */
static __always_inline void queued(struct pkt *p, const struct net_device *dev, __u64 now)
{
	struct Qdisc *q = dev->qdisc;

	p->ifindex = dev->ifindex;
	p->t_queue = now;
	if (q && !q->enqueue) {
		p->t_xmit = now;
		p->flags |= HT_F_NO_QDISC;
		p->phase = P_XMIT;
	} else {
		p->phase = P_QUEUED;
	}
}

/* The next hop starts: the packet, arrived in a namespace, is queued on `dev`
 * there (forwarded by a bridge or routing). */
static __always_inline void forward_queued(struct pkt *p, const struct net_device *dev, __u64 now, __u8 traced_egress)
{
	p->forward_ns = elapsed(now, p->t_start);
	p->flags |= HT_F_FORWARDED;
	p->traced_egress = traced_egress;
	queued(p, dev, now);
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
				forward_queued(old, skb->dev, now, 1);
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
	p->flags = flags & HT_F_FIRST_HOP;
	p->flow = flow;
	if (phase == P_QUEUED)
		queued(p, skb->dev, now);
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
	submit(ring, r);
}

SEC("tc")
int ht_tcx_egress(struct __sk_buff *ctx)
{
	if (hooks_only || tcx_paused)
		return TCX_NEXT;
	track(ctx, P_QUEUED);
	return TCX_NEXT; /* never alter or drop traffic */
}

/* Packets arriving on a selected device from a path we do not follow (the host
 * stack, a physical NIC): follow them from here, through forward and delivery. */
SEC("tc")
int ht_tcx_ingress(struct __sk_buff *ctx)
{
	if (hooks_only || tcx_paused)
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
	forward_queued(p, skb->dev, now, 0);
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
	p->flags &= ~(HT_F_FORWARDED | HT_F_NO_QDISC);
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
	/* a packet a device without a queue "sent at once" (P_XMIT) and freed before
	 * its peer had it was not sent either */
	if (p->traced_egress && (p->phase == P_QUEUED || (p->phase == P_XMIT && (p->flags & HT_F_NO_QDISC))))
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

#endif /* HOPTRACE_HOPS_BPF_H */
