/// What a running trace has counted so far, taken at one instant: the live view
/// (`hoptrace top`) takes one per interval and shows the difference of two.
/// Cumulative, so an interval is exact whatever the drain did in between.
public struct LiveSample: Sendable {
    /// CLOCK_MONOTONIC when taken.
    public var monotonicNs: UInt64
    /// Each hop's wire packets and hop totals so far.
    public var hops: [HopKey: (packets: UInt64, total: Histogram)]
    public var drops: [DropKey: UInt64]
    /// Softirq counters per CPU and vector since load; nil when softirq tracing is off.
    public var softirq: [[SoftirqCounters]]?
    /// CPU time of the consumer (drain thread) so far.
    public var consumerCPUNs: UInt64
    /// BPF run time so far; nil when run-time statistics are off (--bpf-stats).
    public var bpfRunNs: UInt64?
    public var names: NameTable
    /// Which packets the trace follows and records (--sample, --min-latency).
    public var sampling: Sampling

    public init(monotonicNs: UInt64, aggregate: TraceAggregate, names: NameTable, softirq: [[SoftirqCounters]]?,
                consumerCPUNs: UInt64, bpfRunNs: UInt64?, sampling: Sampling = Sampling()) {
        self.monotonicNs = monotonicNs
        var hops: [HopKey: (packets: UInt64, total: Histogram)] = [:]
        for (key, s) in zip(aggregate.hops.keys, aggregate.hops.stats) { hops[key] = (s.packets, s.total) }
        self.hops = hops
        drops = aggregate.drops
        self.softirq = softirq
        self.consumerCPUNs = consumerCPUNs
        self.bpfRunNs = bpfRunNs
        self.names = names
        self.sampling = sampling
    }
}

/// One interval of the live view: per hop and per CPU, what happened between two
/// samples. Encodes as one JSON object (the JSON lines `top` prints when piped).
public struct LiveInterval: Codable, Sendable {
    public struct Hop: Codable, Sendable {
        public var hop: String
        public var from: String
        public var to: String
        /// Packets (GSO segments counted) per second: with 1-in-N sampling, N times
        /// those followed (an estimate); with a minimum latency, those at or above it.
        public var packetsPerSecond: Double
        /// Hop records (skbs) measured in the interval.
        public var records: UInt64
        public var p50Ns: UInt64
        public var p99Ns: UInt64
        /// The interval's slowest hop (within a bucket of the histogram, 1.6 %).
        public var maxNs: UInt64
        /// Drops of the packets followed per second, N times them with 1-in-N sampling.
        public var dropsPerSecond: Double
        /// The commonest drop reason of the interval, if any packet was dropped.
        public var topDropReason: String?

        public init(hop: String, from: String, to: String, packetsPerSecond: Double, records: UInt64, p50Ns: UInt64,
                    p99Ns: UInt64, maxNs: UInt64, dropsPerSecond: Double, topDropReason: String?) {
            self.hop = hop
            self.from = from
            self.to = to
            self.packetsPerSecond = packetsPerSecond
            self.records = records
            self.p50Ns = p50Ns
            self.p99Ns = p99Ns
            self.maxNs = maxNs
            self.dropsPerSecond = dropsPerSecond
            self.topDropReason = topDropReason
        }

        enum CodingKeys: String, CodingKey {
            case hop, from, to, packetsPerSecond = "packets_per_s", records, p50Ns = "p50_ns", p99Ns = "p99_ns"
            case maxNs = "max_ns", dropsPerSecond = "drops_per_s", topDropReason = "top_drop_reason"
        }
    }

    /// Network softirqs (NET_RX + NET_TX) on one CPU in the interval.
    public struct CPU: Codable, Sendable {
        public var cpu: Int
        /// Run time, % of the interval.
        public var busyPercent: Double
        /// NET_RX raise -> run delay, p99 (within the kernel buckets' 12.5 %); 0 when none ran.
        public var raiseToRunP99Ns: UInt64
        /// Share of the run time spent in ksoftirqd, %.
        public var ksoftirqdPercent: Double

        public init(cpu: Int, busyPercent: Double, raiseToRunP99Ns: UInt64, ksoftirqdPercent: Double) {
            self.cpu = cpu
            self.busyPercent = busyPercent
            self.raiseToRunP99Ns = raiseToRunP99Ns
            self.ksoftirqdPercent = ksoftirqdPercent
        }

        enum CodingKeys: String, CodingKey {
            case cpu, busyPercent = "busy_percent", raiseToRunP99Ns = "raise_to_run_p99_ns"
            case ksoftirqdPercent = "ksoftirqd_percent"
        }
    }

    /// hoptrace's own cost in the interval, % of one CPU.
    public struct Cost: Codable, Sendable {
        /// The drain thread: decoding and histograms.
        public var consumerPercent: Double
        /// Kernel time in the BPF programs; nil when not measured (--bpf-stats).
        public var bpfPercent: Double?
        /// The view itself: sampling, drawing, keys (set by the command).
        public var viewPercent: Double?

        public init(consumerPercent: Double, bpfPercent: Double? = nil, viewPercent: Double? = nil) {
            self.consumerPercent = consumerPercent
            self.bpfPercent = bpfPercent
            self.viewPercent = viewPercent
        }

        enum CodingKeys: String, CodingKey {
            case consumerPercent = "consumer_cpu_percent", bpfPercent = "bpf_cpu_percent"
            case viewPercent = "view_cpu_percent"
        }
    }

    /// Unix time at the end of the interval, seconds.
    public var time: Double
    public var seconds: Double
    public var hops: [Hop]
    /// Empty when softirq tracing is off.
    public var softirq: [CPU]
    public var cost: Cost
    /// What the rates are of (--sample, --min-latency).
    public var sampling: Sampling

    enum CodingKeys: String, CodingKey { case time, seconds = "interval_s", hops, softirq, cost, sampling }

    public init(time: Double, seconds: Double, hops: [Hop], softirq: [CPU], cost: Cost, sampling: Sampling = Sampling()) {
        self.time = time
        self.seconds = seconds
        self.hops = hops
        self.softirq = softirq
        self.cost = cost
        self.sampling = sampling
    }

    /// The difference of `now` and `before` (a sample of the same trace taken
    /// earlier). Hops with no packet and no drop in the interval are left out; the
    /// first interval of a hop counts everything it had (it was not in `before`).
    public init(from before: LiveSample, to now: LiveSample, unixTime: Double, dropReasons: DropReasons) {
        time = unixTime
        seconds = Double(now.monotonicNs &- before.monotonicNs) / 1e9
        sampling = now.sampling
        // 1 packet in N followed: each counts for N (drops too: only followed packets' are seen)
        let perSecond = seconds > 0 ? Double(max(now.sampling.every, 1)) / seconds : 0
        var dropsByHop: [HopKey: [UInt32: UInt64]] = [:]
        for (key, n) in now.drops {
            let d = n &- (before.drops[key] ?? 0)
            if d > 0 && n >= d { dropsByHop[key.hop, default: [:]][key.reason, default: 0] += d }
        }
        var hops: [Hop] = []
        for key in Set(now.hops.keys).union(dropsByHop.keys) {
            var total = Histogram(), packets: UInt64 = 0
            if let n = now.hops[key] {
                let b = before.hops[key]
                // a hop forgotten and seen again (the agent's devices) starts afresh
                if let b, n.total.follows(b.total) {
                    total = n.total.subtracting(b.total)
                    packets = n.packets &- b.packets
                } else {
                    total = n.total
                    packets = n.packets
                }
            }
            let drops = dropsByHop[key] ?? [:]
            let dropped = drops.values.reduce(0, +)
            if total.count == 0 && dropped == 0 { continue }
            let top = drops.max { ($0.value, $1.key) < ($1.value, $0.key) }
            hops.append(Hop(hop: now.names.label(key),
                            from: now.names.label(key.from), to: now.names.label(key.to),
                            packetsPerSecond: Double(packets) * perSecond, records: total.count,
                            p50Ns: total.value(atQuantile: 0.5), p99Ns: total.value(atQuantile: 0.99),
                            maxNs: total.count == 0 ? 0 : total.max, dropsPerSecond: Double(dropped) * perSecond,
                            topDropReason: top.map { dropReasons.name($0.key) }))
        }
        self.hops = hops.sorted { $0.hop < $1.hop }
        softirq = Self.softirq(before.softirq, now.softirq, seconds: seconds)
        let seconds = seconds
        func percent(_ ns: UInt64) -> Double { seconds > 0 ? 100 * Double(ns) / 1e9 / seconds : 0 }
        // BPF run time only between two readings that both worked (a failed one reads 0)
        var bpf: Double?
        if let n = now.bpfRunNs, let b = before.bpfRunNs, n >= b, b > 0 { bpf = percent(n - b) }
        cost = Cost(consumerPercent: percent(now.consumerCPUNs &- before.consumerCPUNs), bpfPercent: bpf)
    }

    /// Per CPU: busy %, NET_RX raise -> run p99 and ksoftirqd share of the interval.
    static func softirq(_ before: [[SoftirqCounters]]?, _ now: [[SoftirqCounters]]?, seconds: Double) -> [CPU] {
        guard let now, seconds > 0 else { return [] }
        return now.enumerated().map { cpu, vectors in
            let earlier = before.flatMap { cpu < $0.count ? $0[cpu] : nil }
            func since(_ v: SoftirqVector) -> SoftirqCounters {
                let n = vectors[v.rawValue]
                guard let e = earlier?[v.rawValue] else { return n }
                return n.subtracting(e)
            }
            let rx = since(.netRX), tx = since(.netTX)
            let run = rx.runNs + tx.runNs, ksoftirqd = rx.ksoftirqdNs + tx.ksoftirqdNs
            let delay = rx.delayHistogram
            return CPU(cpu: cpu, busyPercent: (1000 * Double(run) / 1e9 / seconds).rounded() / 10,
                       raiseToRunP99Ns: delay.count == 0 ? 0 : Swift.min(delay.value(atQuantile: 0.99), rx.maxDelayNs),
                       ksoftirqdPercent: run == 0 ? 0 : (1000 * Double(ksoftirqd) / Double(run)).rounded() / 10)
        }
    }
}

extension SoftirqCounters {
    /// What was counted since `earlier` (the same CPU and vector, read before).
    /// The maxima are the cumulative ones: the kernel keeps no interval maximum.
    public func subtracting(_ earlier: SoftirqCounters) -> SoftirqCounters {
        var d = self
        d.runs = runs &- earlier.runs; d.runNs = runNs &- earlier.runNs
        d.ksoftirqdRuns = ksoftirqdRuns &- earlier.ksoftirqdRuns; d.ksoftirqdNs = ksoftirqdNs &- earlier.ksoftirqdNs
        d.raises = raises &- earlier.raises; d.delays = delays &- earlier.delays; d.delayNs = delayNs &- earlier.delayNs
        d.napiPolls = napiPolls &- earlier.napiPolls; d.napiExhausted = napiExhausted &- earlier.napiExhausted
        d.napiPackets = napiPackets &- earlier.napiPackets
        for i in d.runBuckets.indices where i < earlier.runBuckets.count { d.runBuckets[i] &-= earlier.runBuckets[i] }
        for i in d.delayBuckets.indices where i < earlier.delayBuckets.count { d.delayBuckets[i] &-= earlier.delayBuckets[i] }
        return d
    }
}
