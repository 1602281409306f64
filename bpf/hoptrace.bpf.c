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
 *
 * One object, one compilation unit: this file holds the knobs and includes the
 * parts, each after the ones it uses (the skeleton embeds a single object, and
 * static inline helpers and maps need no linking across files):
 *
 *   rings.bpf.h         per-CPU ring buffers and counters: what userspace reads
 *   flow.bpf.h          a packet's 5-tuple and fingerprint, from its headers
 *   packet_table.bpf.h  per-packet state, keyed by skb address
 *   hops.bpf.h          the packet programs: tcx and the packet tracepoints
 *   softirq.bpf.h       the NET_RX / NET_TX softirq programs
 *   bench.bpf.h         the never-attached benchmark producer
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include "hoptrace_abi.h"

char LICENSE[] SEC("license") = "GPL";

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
/* The agent's CPU budget: between its tracing shares the tracepoints are detached
 * and the tcx programs, which stay attached (re-attaching hundreds of devices each
 * period would cost more than it saves), return at once. Written by userspace
 * through the mapped .bss; a plain load per run. */
volatile __u32 tcx_paused = 0;

#include "rings.bpf.h"
#include "flow.bpf.h"
#include "packet_table.bpf.h"
#include "hops.bpf.h"
#include "softirq.bpf.h"
#include "bench.bpf.h"
