// SPDX-License-Identifier: GPL-2.0
/* The floor for a tc-based hop tracer, for `make bench`: the least a program can do
 * to time a packet across a veth hop. Egress stores a timestamp under a key taken
 * from the packet, ingress on the far end looks it up and deletes it. Keyed by the
 * IPv4 id and the UDP ports, which egress and ingress of one packet share (the skb
 * address would do as well for a tracepoint, but tc sees no stable one). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define TC_ACT_OK 0
#define ETH_P_IP 0x0800
#define ETH_HLEN 14
#define IPPROTO_UDP_ 17

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 10240);
	__type(key, __u64);
	__type(value, __u64);
} sent SEC(".maps");

/* id << 32 | source port << 16 | destination port, or 0 for anything but UDP/IPv4
 * without options (all the bench sends). */
static __always_inline __u64 packet_key(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_HLEN;
	struct udphdr *udp = (void *)(ip + 1);

	if ((void *)(udp + 1) > end || skb->protocol != bpf_htons(ETH_P_IP))
		return 0;
	if (ip->ihl != 5 || ip->protocol != IPPROTO_UDP_)
		return 0;
	return (__u64)ip->id << 32 | (__u32)udp->source << 16 | udp->dest;
}

SEC("tc")
int bare_egress(struct __sk_buff *skb)
{
	__u64 key = packet_key(skb), ts;

	if (key) {
		ts = bpf_ktime_get_ns();
		bpf_map_update_elem(&sent, &key, &ts, BPF_ANY);
	}
	return TC_ACT_OK;
}

SEC("tc")
int bare_ingress(struct __sk_buff *skb)
{
	__u64 key = packet_key(skb);

	if (key && bpf_map_lookup_elem(&sent, &key))
		bpf_map_delete_elem(&sent, &key);
	return TC_ACT_OK;
}
