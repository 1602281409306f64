import Foundation

/// Counters the kernel side keeps (ABI: `enum ht_counter`).
public struct TracerCounters: Codable, Sendable, Equatable {
    /// Records that could not be reserved in the ring buffer.
    public var lost: UInt64 = 0
    /// Packets not followed because of 1-in-N sampling.
    public var sampledOut: UInt64 = 0
    /// Hops not recorded because they were faster than the minimum latency.
    public var belowMinimum: UInt64 = 0
    /// Per-packet state found stale (a recycled skb address) and started afresh.
    public var stale: UInt64 = 0
    /// Packets no longer followed because the per-packet table's set was full
    /// (`--max-packets` too small for the packets in flight).
    public var evicted: UInt64 = 0
    /// Packets no longer followed because they sat untouched for longer than the
    /// state's lifetime (10 s) on their way.
    public var expired: UInt64 = 0
    /// Wire packets one of whose hops was not measured: the skb followed went on
    /// without the hop's tracepoints running for it, or ended mid-hop (cut into
    /// segments in software, redirected). A first hop lost so is counted here and
    /// not in its flow.
    public var unseen: UInt64 = 0

    public init() {}

    /// From the raw counter array, in ABI order.
    public init(raw: [UInt64]) {
        func at(_ i: Int) -> UInt64 { i < raw.count ? raw[i] : 0 }
        lost = at(0); sampledOut = at(1); belowMinimum = at(2); stale = at(3); evicted = at(4); expired = at(5); unseen = at(6)
    }

    enum CodingKeys: String, CodingKey {
        case lost, sampledOut = "sampled_out", belowMinimum = "below_minimum", stale, evicted, expired, unseen
    }

    /// Recordings made before `evicted`, `expired` and `unseen` existed decode with 0.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        lost = try c.decode(UInt64.self, forKey: .lost)
        sampledOut = try c.decode(UInt64.self, forKey: .sampledOut)
        belowMinimum = try c.decode(UInt64.self, forKey: .belowMinimum)
        stale = try c.decode(UInt64.self, forKey: .stale)
        evicted = try c.decodeIfPresent(UInt64.self, forKey: .evicted) ?? 0
        expired = try c.decodeIfPresent(UInt64.self, forKey: .expired) ?? 0
        unseen = try c.decodeIfPresent(UInt64.self, forKey: .unseen) ?? 0
    }
}

/// How the trace was thinned.
public struct Sampling: Codable, Sendable, Equatable {
    /// One packet in `every` is followed.
    public var every: UInt32
    public var minLatencyNs: UInt64

    public init(every: UInt32 = 1, minLatencyNs: UInt64 = 0) {
        self.every = every
        self.minLatencyNs = minLatencyNs
    }

    enum CodingKeys: String, CodingKey { case every, minLatencyNs = "min_latency_ns" }
}

/// What hoptrace itself cost while tracing.
public struct TracerCost: Codable, Sendable, Equatable {
    /// CPU time of the consumer (the drain thread: decoding and histograms) as % of one CPU.
    public var consumerCPUPercent: Double
    /// Kernel time in hoptrace's BPF programs, as % of one CPU (from bpf_stats).
    public var bpfCPUPercent: Double?
    /// BPF run time of all programs divided by the packets followed, nanoseconds.
    public var bpfNsPerPacket: Double?
    /// The agent's CPU budget: the share of the last period traced (1: continuous),
    /// so counts in the report are of that share of the time. Nil outside the agent.
    public var tracingShare: Double?

    public init(consumerCPUPercent: Double, bpfCPUPercent: Double? = nil, bpfNsPerPacket: Double? = nil) {
        self.consumerCPUPercent = consumerCPUPercent
        self.bpfCPUPercent = bpfCPUPercent
        self.bpfNsPerPacket = bpfNsPerPacket
    }

    enum CodingKeys: String, CodingKey {
        case consumerCPUPercent = "consumer_cpu_percent", bpfCPUPercent = "bpf_cpu_percent"
        case bpfNsPerPacket = "bpf_ns_per_packet", tracingShare = "tracing_share"
    }
}

/// The namespace-hop report: what `trace` prints and `--json` emits.
public struct Report: Codable, Sendable {
    public struct EndpointReport: Codable, Sendable, Equatable {
        public var netns: UInt32
        public var netnsName: String
        public var device: String
        public var ifindex: UInt32
        /// The Kubernetes pod and the container whose namespace it is, where known.
        public var pod: Workload.Pod?
        public var container: Workload.Container?

        enum CodingKeys: String, CodingKey { case netns, netnsName = "netns_name", device, ifindex, pod, container }
    }

    public struct HopReport: Codable, Sendable {
        public var from: EndpointReport
        public var to: EndpointReport
        public var packets: UInt64
        public var records: UInt64
        public var segments: [String: LatencySummary]
        public var total: LatencySummary
        /// The hop's backlog wait by the CPU that ran NET_RX for it, joined with that
        /// CPU's softirq figures (absent when softirq tracing was off).
        public var softirq: [BacklogOnCPU]?
    }

    /// How much of a hop's backlog wait on one CPU the NET_RX raise -> run delay explains.
    public struct BacklogOnCPU: Codable, Sendable {
        public var cpu: Int
        public var records: UInt64
        public var backlogMeanNs: UInt64
        public var backlogP99Ns: UInt64
        public var raiseToRunMeanNs: UInt64
        public var raiseToRunP99Ns: UInt64
        /// NET_RX + NET_TX run time on that CPU, % of its time.
        public var cpuSoftirqPercent: Double
        /// Mean raise -> run delay / mean backlog wait, capped at 100.
        public var explainedPercent: Double

        enum CodingKeys: String, CodingKey {
            case cpu, records, backlogMeanNs = "backlog_mean_ns", backlogP99Ns = "backlog_p99_ns"
            case raiseToRunMeanNs = "raise_to_run_mean_ns", raiseToRunP99Ns = "raise_to_run_p99_ns"
            case cpuSoftirqPercent = "cpu_softirq_percent", explainedPercent = "explained_percent"
        }
    }

    public struct FlowReport: Codable, Sendable {
        public var flow: String
        public var proto: String
        public var source: String
        public var destination: String
        public var sourcePort: UInt16
        public var destinationPort: UInt16
        public var packets: UInt64
        public var bytes: UInt64
        public var dropped: UInt64
        public var hop: LatencySummary
        /// The workloads at the flow's ends, where their addresses are known.
        public var sourcePod: Workload.Pod?
        public var sourceContainer: Workload.Container?
        public var destinationPod: Workload.Pod?
        public var destinationContainer: Workload.Container?

        enum CodingKeys: String, CodingKey {
            case flow, proto, source, destination, sourcePort = "source_port"
            case destinationPort = "destination_port", packets, bytes, dropped, hop
            case sourcePod = "source_pod", sourceContainer = "source_container"
            case destinationPod = "destination_pod", destinationContainer = "destination_container"
        }

        /// Hops measured before a flow's p99 means something: fewer and it is its
        /// maximum, so a 4-packet neighbour discovery would outrank a busy flow.
        public static let minRecordsForP99: UInt64 = 100

        /// Slowest first among flows with a p99, then the rest slowest first; ties in
        /// a stable order so the same records give the same report.
        public static func ranked(_ a: FlowReport, _ b: FlowReport) -> Bool {
            let aFew = a.hop.count < minRecordsForP99, bFew = b.hop.count < minRecordsForP99
            return (aFew ? 1 : 0, b.hop.p99Ns, b.packets, a.flow) < (bFew ? 1 : 0, a.hop.p99Ns, a.packets, b.flow)
        }
    }

    public struct DropReport: Codable, Sendable {
        public var from: EndpointReport
        /// The device the packet was at when the kernel dropped it.
        public var at: EndpointReport
        public var reason: UInt32
        /// The reason's name in the running kernel's BTF, e.g. "NO_SOCKET".
        public var reasonName: String
        public var packets: UInt64

        enum CodingKeys: String, CodingKey { case from, at, reason, reasonName = "reason_name", packets }
    }

    /// What was folded out of the flow table to bound memory, as one aggregate.
    public struct FoldedFlows: Codable, Sendable {
        public var flows: UInt64
        public var packets: UInt64
        public var bytes: UInt64
        public var dropped: UInt64
        public var hop: LatencySummary
    }

    public var schemaVersion = 2
    public var durationSeconds: Double
    public var records: UInt64
    public var hops: [HopReport]
    /// Every flow kept (at most --max-flows), busiest-to-rank first: flows with a
    /// p99 (at least `FlowReport.minRecordsForP99` hops measured) by p99, then the rest.
    public var flows: [FlowReport]
    public var drops: [DropReport]
    public var softirq: SoftirqReport
    /// Flows folded into one aggregate when the flow table was full.
    public var foldedFlows: UInt64
    /// Their figures together (absent when none were folded).
    public var folded: FoldedFlows?
    /// Flows the text lists by default (`--top`): the one home of that default.
    public static let defaultTopFlows = 10
    /// Flows the text lists (--top); machine-readable output has them all.
    public var topFlows = Report.defaultTopFlows
    public var lostEvents: UInt64
    public var sampling: Sampling
    public var counters: TracerCounters
    public var tracerCost: TracerCost?

    enum CodingKeys: String, CodingKey {
        case schemaVersion = "schema_version", durationSeconds = "duration_seconds", records, hops, flows, drops, softirq
        case foldedFlows = "folded_flows", folded, lostEvents = "lost_events", sampling, counters
        case tracerCost = "tracer_cost"
    }

    /// Builds the report. Hops are ordered by source then destination names, for a
    /// stable output. `topFlows` only shapes the text; every flow kept is in `flows`.
    public init(aggregate a: TraceAggregate, names: NameTable, durationSeconds: Double, counters: TracerCounters,
                sampling: Sampling, tracerCost: TracerCost? = nil, topFlows: Int = Report.defaultTopFlows,
                softirq: SoftirqReport = .disabled, dropReasons: DropReasons = DropReasons()) {
        func endpoint(_ e: Endpoint) -> EndpointReport {
            EndpointReport(netns: e.netns, netnsName: names.netnsName(e.netns), device: names.deviceName(e), ifindex: e.ifindex,
                           pod: names.workloads[e.netns]?.pod, container: names.workloads[e.netns]?.container)
        }
        var hops: [HopReport] = []
        for (key, s) in zip(a.hops.keys, a.hops.stats) {
            var segments: [String: LatencySummary] = [:]
            for seg in Segment.allCases { if let h = s.segment(seg) { segments[seg.name] = LatencySummary(h) } }
            var shares: [BacklogOnCPU]?
            if softirq.enabled {
                shares = s.backlogByCPU.enumerated().compactMap { cpu, h -> BacklogOnCPU? in
                    guard h.count > 0, cpu < softirq.cpus.count else { return nil }
                    let c = softirq.cpus[cpu], delay = c.netRX.raiseToRun
                    let explained = h.mean > 0 ? min(100, 100 * Double(delay.meanNs) / h.mean) : 0
                    return BacklogOnCPU(cpu: cpu, records: h.count, backlogMeanNs: UInt64(h.mean.rounded()),
                                        backlogP99Ns: h.value(atQuantile: 0.99), raiseToRunMeanNs: delay.meanNs,
                                        raiseToRunP99Ns: delay.p99Ns,
                                        cpuSoftirqPercent: c.netRX.runPercent + c.netTX.runPercent,
                                        explainedPercent: (explained * 10).rounded() / 10)
                }
            }
            hops.append(HopReport(from: endpoint(key.from), to: endpoint(key.to), packets: s.packets,
                                  records: s.records, segments: segments, total: LatencySummary(s.total), softirq: shares))
        }
        hops.sort { ($0.from.netnsName, $0.from.device, $0.to.netnsName, $0.to.device, $0.from.netns)
            < ($1.from.netnsName, $1.from.device, $1.to.netnsName, $1.to.device, $1.from.netns) }
        var flows: [FlowReport] = []
        for (i, k) in a.flows.keys.enumerated() where a.flows.stats[i].hopRecords + a.flows.stats[i].dropped > 0 {
            let s = a.flows.stats[i]
            let from = names.workload(of: k.source), to = names.workload(of: k.destination)
            flows.append(FlowReport(flow: k.description, proto: k.protoName, source: k.source.formatted(family: k.family),
                                    destination: k.destination.formatted(family: k.family), sourcePort: k.sourcePort,
                                    destinationPort: k.destinationPort, packets: s.packets, bytes: s.bytes,
                                    dropped: s.dropped, hop: LatencySummary(s.hopTotal), sourcePod: from?.pod,
                                    sourceContainer: from?.container, destinationPod: to?.pod, destinationContainer: to?.container))
        }
        flows.sort(by: FlowReport.ranked)
        self.durationSeconds = durationSeconds
        self.records = a.records
        self.hops = hops
        self.softirq = softirq
        self.drops = a.drops.map { DropReport(from: endpoint($0.key.hop.from), at: endpoint($0.key.hop.to),
                                              reason: $0.key.reason, reasonName: dropReasons.name($0.key.reason),
                                              packets: $0.value) }
            .sorted { ($1.packets, $0.reason, $0.from.netns, $0.from.ifindex, $0.at.netns, $0.at.ifindex)
                < ($0.packets, $1.reason, $1.from.netns, $1.from.ifindex, $1.at.netns, $1.at.ifindex) }
        self.flows = flows
        self.topFlows = topFlows
        self.foldedFlows = a.flows.foldedFlows
        let f = a.flows.folded
        if a.flows.foldedFlows > 0 {
            folded = FoldedFlows(flows: a.flows.foldedFlows, packets: f.packets, bytes: f.bytes, dropped: f.dropped,
                                 hop: LatencySummary(f.hopTotal))
        }
        self.lostEvents = counters.lost
        self.sampling = sampling
        self.counters = counters
        self.tracerCost = tracerCost
    }

    public func json() -> String {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try! enc.encode(self), as: UTF8.self)
    }
}

/// Formats nanoseconds for people: 850ns, 12.3us, 4.56ms, 1.23s.
public func formatNs(_ ns: UInt64) -> String {
    let v = Double(ns)
    if ns < 1_000 { return "\(ns)ns" }
    if ns < 1_000_000 { return String(format: v < 10_000 ? "%.2fus" : "%.1fus", v / 1e3) }
    if ns < 1_000_000_000 { return String(format: v < 10_000_000 ? "%.2fms" : "%.1fms", v / 1e6) }
    return String(format: "%.2fs", v / 1e9)
}

extension Report {
    /// The human report: one block per hop with its segments, then the top flows.
    public func text() -> String {
        var out = ""
        func line(_ s: String = "") { out += s + "\n" }
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
        let samplingText = sampling.every == 1 ? "every packet" : "1 packet in \(sampling.every)"
        line("hoptrace: \(String(format: "%.1f", durationSeconds)) s traced, \(records) records, "
             + "\(lostEvents) lost, \(samplingText)"
             + (sampling.minLatencyNs > 0 ? ", hops under \(formatNs(sampling.minLatencyNs)) not recorded" : ""))
        if let c = tracerCost {
            var s = "tracer cost: \(String(format: "%.1f", c.consumerCPUPercent)) % of a CPU in the consumer"
            if let b = c.bpfCPUPercent { s += ", \(String(format: "%.2f", b)) % in BPF programs" }
            if let n = c.bpfNsPerPacket { s += " (\(String(format: "%.0f", n)) ns per packet followed)" }
            if c.bpfCPUPercent == nil { s += "; BPF run time not measured (--bpf-stats)" }
            line(s)
        }
        if counters.expired > 0 {
            line("WARNING: \(counters.expired) packets stopped being followed after waiting over 10 s somewhere on their way")
        }
        if counters.evicted > 0 {
            line("WARNING: \(counters.evicted) packets stopped being followed (per-packet table full): raise --max-packets")
        }
        if counters.unseen > 0 {
            line("WARNING: \(counters.unseen) packets had a hop that could not be measured (cut into segments "
                 + "in software, redirected, or tracepoints not run): first hops among them are missing from flow counts")
        }
        if lostEvents > 0 {
            line("WARNING: \(lostEvents) records were lost (ring buffer full): latencies are from the rest")
        }
        line()
        if hops.isEmpty {
            line("No packets crossed a traced device. Check the device selection (hoptrace list) and that traffic flows.")
        }
        let header = pad("segment", 10) + ["count", "p50", "p90", "p99", "p99.9", "max"].map { lpad($0, 10) }.joined()
        for h in hops {
            if h.from == h.to { // deliveries in a recording from before they named their hop
                line("DELIVERED at \(h.to.netnsName)/\(h.to.device)   (hop not recorded)")
            } else {
                line("HOP \(h.from.netnsName)/\(h.from.device) -> \(h.to.netnsName)/\(h.to.device)   (\(h.packets) packets)")
            }
            line("  " + header)
            func row(_ name: String, _ s: LatencySummary) {
                line("  " + pad(name, 10) + lpad(String(s.count), 10)
                     + [s.p50Ns, s.p90Ns, s.p99Ns, s.p999Ns, s.maxNs].map { lpad(formatNs($0), 10) }.joined())
            }
            for seg in Segment.allCases { if let s = h.segments[seg.name] { row(seg.name, s) } }
            if h.records > 0 { row("total", h.total) }
            for c in (h.softirq ?? []) where c.records * 10 >= h.records {
                line("  backlog on CPU \(c.cpu): mean \(formatNs(c.backlogMeanNs)), p99 \(formatNs(c.backlogP99Ns)); "
                     + "NET_RX raise->run there: mean \(formatNs(c.raiseToRunMeanNs)), p99 \(formatNs(c.raiseToRunP99Ns)) "
                     + "(explains \(String(format: "%.0f", c.explainedPercent)) % of the wait); "
                     + "CPU \(c.cpu) spent \(String(format: "%.1f", c.cpuSoftirqPercent)) % in network softirqs")
            }
            line()
        }
        if softirq.enabled {
            line("SOFTIRQ (network softirqs while tracing)")
            line("  " + pad("cpu", 6) + pad("vector", 8) + ["runs", "busy", "run p50", "run p99", "run max", "wait p50",
                 "wait p99", "wait max", "ksoftirqd", "squeezed"].map { lpad($0, 10) }.joined())
            func vrow(_ cpu: String, _ name: String, _ v: SoftirqReport.Vector) {
                line("  " + pad(cpu, 6) + pad(name, 8) + lpad(String(v.runs), 10)
                     + lpad(String(format: "%.1f%%", v.runPercent), 10)
                     + [v.run.p50Ns, v.run.p99Ns, v.run.maxNs, v.raiseToRun.p50Ns, v.raiseToRun.p99Ns, v.raiseToRun.maxNs]
                        .map { lpad(formatNs($0), 10) }.joined()
                     + lpad(String(format: "%.0f%%", v.ksoftirqdPercent), 10) + lpad(String(v.napiBudgetExhausted), 10))
            }
            for c in softirq.cpus {
                vrow(String(c.cpu), "NET_RX", c.netRX)
                vrow(String(c.cpu), "NET_TX", c.netTX)
            }
            for vec in SoftirqVector.allCases.reversed() { if let v = softirq.total[vec.key] { vrow("all", vec.name, v) } }
            line("  (busy: run time as % of the CPU's time; wait: raise -> run; ksoftirqd: share of run time in "
                 + "ksoftirqd; squeezed: NAPI polls that used their whole budget)")
            line()
        } else {
            line("SOFTIRQ: not traced (--softirq off)")
            line()
        }
        if !drops.isEmpty {
            line("DROPS (packets the kernel freed as dropped, by reason)")
            for d in drops {
                line("  \(d.from.netnsName)/\(d.from.device) -> \(d.at.netnsName)/\(d.at.device): "
                     + "\(d.packets) packets \(d.reasonName)")
            }
            line()
        }
        if !flows.isEmpty && topFlows > 0 {
            line("TOP FLOWS by p99 of hop latency (flows with under \(FlowReport.minRecordsForP99) hops measured last)")
            line("  " + pad("flow", 52) + ["packets", "p50", "p99", "max"].map { lpad($0, 10) }.joined())
            for f in flows.prefix(topFlows) {
                line("  " + pad(f.flow, 52) + lpad(String(f.packets), 10)
                     + [f.hop.p50Ns, f.hop.p99Ns, f.hop.maxNs].map { lpad(formatNs($0), 10) }.joined())
            }
            if flows.count > topFlows { line("  (\(flows.count - topFlows) more flows: --top N, or --json for all)") }
            if foldedFlows > 0 { line("  (\(foldedFlows) idle flows folded into an aggregate to bound memory)") }
        }
        return out
    }
}

/// Parses durations as people write them: 10s, 500ms, 2m, 1.5s, 250us.
public enum DurationParser {
    public static func nanoseconds(_ text: String) -> UInt64? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let units: [(String, Double)] = [("ns", 1), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9), ("m", 60e9), ("h", 3600e9)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            let number = t.dropLast(suffix.count)
            // "ms" ends in "s" too: only accept a plain number before the suffix
            guard let v = Double(number), v >= 0, v.isFinite else { continue }
            let ns = v * scale
            return ns < 1.8e19 ? UInt64(ns) : nil
        }
        return nil
    }
}
