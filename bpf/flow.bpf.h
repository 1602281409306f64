// SPDX-License-Identifier: GPL-2.0
/* Part of hoptrace.bpf.c (included once): a packet's flow key and fingerprint,
 * read from its headers once, where a tcx program first sees it. */
#ifndef HOPTRACE_FLOW_BPF_H
#define HOPTRACE_FLOW_BPF_H

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100

#define IPPROTO_TCP_ 6
#define IPPROTO_UDP_ 17

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

#endif /* HOPTRACE_FLOW_BPF_H */
