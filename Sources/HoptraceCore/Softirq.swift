/// The network softirq vectors hoptrace accounts (ABI: `enum ht_softirq`).
public enum SoftirqVector: Int, CaseIterable, Codable, Sendable {
    case netTX = 0
    case netRX = 1

    public var name: String { self == .netRX ? "NET_RX" : "NET_TX" }
    public var key: String { self == .netRX ? "net_rx" : "net_tx" }
}

/// One vector's counters on one CPU, as the kernel keeps them
/// (ABI: `struct ht_softirq_stats`), since the programs were loaded.
public struct SoftirqCounters: Sendable, Equatable {
    public var runs: UInt64 = 0
    public var runNs: UInt64 = 0
    public var maxRunNs: UInt64 = 0
    public var ksoftirqdRuns: UInt64 = 0
    public var ksoftirqdNs: UInt64 = 0
    public var raises: UInt64 = 0
    public var delays: UInt64 = 0
    public var delayNs: UInt64 = 0
    public var maxDelayNs: UInt64 = 0
    public var napiPolls: UInt64 = 0
    public var napiExhausted: UInt64 = 0
    public var napiPackets: UInt64 = 0
    public var runBuckets: [UInt32] = []
    public var delayBuckets: [UInt32] = []

    public init() {}

    /// Layout of `struct ht_softirq_stats`: twelve u64 counters, then the two histograms.
    public static let buckets = 168
    public static let size = 12 * 8 + 2 * buckets * 4

    public init(decoding raw: UnsafeRawBufferPointer, at offset: Int) {
        func u64(_ i: Int) -> UInt64 { raw.loadUnaligned(fromByteOffset: offset + 8 * i, as: UInt64.self) }
        runs = u64(0); runNs = u64(1); maxRunNs = u64(2); ksoftirqdRuns = u64(3); ksoftirqdNs = u64(4)
        raises = u64(5); delays = u64(6); delayNs = u64(7); maxDelayNs = u64(8)
        napiPolls = u64(9); napiExhausted = u64(10); napiPackets = u64(11)
        let hist = offset + 96
        runBuckets = (0..<Self.buckets).map { raw.loadUnaligned(fromByteOffset: hist + 4 * $0, as: UInt32.self) }
        delayBuckets = (0..<Self.buckets).map { raw.loadUnaligned(fromByteOffset: hist + 4 * (Self.buckets + $0), as: UInt32.self) }
    }

    /// The values bucket `b` of the kernel's log-linear histogram holds.
    public static func bucketRange(_ b: Int) -> ClosedRange<UInt64> {
        if b < 8 { return UInt64(b)...UInt64(b) }
        let shift = UInt64(b / 4 - 1), sub = UInt64(b % 4)
        return ((4 + sub) << shift)...(((5 + sub) << shift) - 1)
    }

    /// The kernel's bucket for `v` (the BPF side's `sirq_bucket`, for tests).
    public static func bucket(_ v: UInt64) -> Int {
        if v < 8 { return Int(v) }
        let msb = 63 - v.leadingZeroBitCount
        return min((msb - 1) * 4 + Int((v >> UInt64(msb - 2)) & 3), buckets - 1)
    }

    /// A summary of kernel buckets: percentiles at bucket midpoints (within 12.5 %),
    /// exact max and mean.
    static func summary(_ buckets: [UInt32], count: UInt64, sum: UInt64, max: UInt64) -> LatencySummary {
        var s = LatencySummary(histogram(buckets))
        s.count = count
        s.meanNs = count == 0 ? 0 : sum / count
        s.maxNs = max
        for kp in [\LatencySummary.p50Ns, \.p90Ns, \.p99Ns, \.p999Ns] { s[keyPath: kp] = Swift.min(s[keyPath: kp], max) }
        return s
    }

    /// Kernel buckets as a histogram, each bucket's count at its midpoint (within
    /// 12.5 % of the values it holds).
    static func histogram(_ buckets: [UInt32]) -> Histogram {
        var h = Histogram(precisionBits: 7)
        for (b, c) in buckets.enumerated() where c > 0 {
            let r = bucketRange(b)
            h.record(r.lowerBound + (r.upperBound - r.lowerBound) / 2, count: UInt64(c))
        }
        return h
    }

    /// Raise-to-run delays as a histogram (the agent's metric).
    public var delayHistogram: Histogram { Self.histogram(delayBuckets) }

    public var runSummary: LatencySummary { Self.summary(runBuckets, count: runs, sum: runNs, max: maxRunNs) }
    public var delaySummary: LatencySummary { Self.summary(delayBuckets, count: delays, sum: delayNs, max: maxDelayNs) }

    /// Adds another CPU's counters (for totals).
    public mutating func merge(_ o: SoftirqCounters) {
        runs += o.runs; runNs += o.runNs; maxRunNs = Swift.max(maxRunNs, o.maxRunNs)
        ksoftirqdRuns += o.ksoftirqdRuns; ksoftirqdNs += o.ksoftirqdNs; raises += o.raises
        delays += o.delays; delayNs += o.delayNs; maxDelayNs = Swift.max(maxDelayNs, o.maxDelayNs)
        napiPolls += o.napiPolls; napiExhausted += o.napiExhausted; napiPackets += o.napiPackets
        if runBuckets.isEmpty { runBuckets = o.runBuckets; delayBuckets = o.delayBuckets; return }
        for i in runBuckets.indices where i < o.runBuckets.count { runBuckets[i] &+= o.runBuckets[i] }
        for i in delayBuckets.indices where i < o.delayBuckets.count { delayBuckets[i] &+= o.delayBuckets[i] }
    }
}

/// What the kernel spent in network softirqs while tracing: per CPU and in total.
public struct SoftirqReport: Codable, Sendable {
    public struct Vector: Codable, Sendable {
        public var runs: UInt64
        /// Run time as % of the wall-clock time of the CPUs it covers.
        public var runPercent: Double
        public var run: LatencySummary
        public var raiseToRun: LatencySummary
        public var raises: UInt64
        public var ksoftirqdRuns: UInt64
        /// Share of the run time spent in ksoftirqd rather than on interrupt exit.
        public var ksoftirqdPercent: Double
        public var napiPolls: UInt64
        /// Polls that used their whole budget (time squeeze); NET_RX only.
        public var napiBudgetExhausted: UInt64

        enum CodingKeys: String, CodingKey {
            case runs, runPercent = "run_percent", run, raiseToRun = "raise_to_run", raises
            case ksoftirqdRuns = "ksoftirqd_runs", ksoftirqdPercent = "ksoftirqd_percent"
            case napiPolls = "napi_polls", napiBudgetExhausted = "napi_budget_exhausted"
        }

        init(_ c: SoftirqCounters, seconds: Double, cpus: Int) {
            runs = c.runs
            runPercent = seconds > 0 ? 100 * Double(c.runNs) / 1e9 / (seconds * Double(cpus)) : 0
            run = c.runSummary
            raiseToRun = c.delaySummary
            raises = c.raises
            ksoftirqdRuns = c.ksoftirqdRuns
            ksoftirqdPercent = c.runNs == 0 ? 0 : 100 * Double(c.ksoftirqdNs) / Double(c.runNs)
            napiPolls = c.napiPolls
            napiBudgetExhausted = c.napiExhausted
        }
    }

    public struct CPU: Codable, Sendable {
        public var cpu: Int
        public var netRX: Vector
        public var netTX: Vector

        enum CodingKeys: String, CodingKey { case cpu, netRX = "net_rx", netTX = "net_tx" }
    }

    /// Whether softirq tracing was on; when off the rest is empty.
    public var enabled: Bool
    public var cpus: [CPU]
    public var total: [String: Vector]

    public static let disabled = SoftirqReport(enabled: false, cpus: [], total: [:])

    init(enabled: Bool, cpus: [CPU], total: [String: Vector]) {
        self.enabled = enabled
        self.cpus = cpus
        self.total = total
    }

    /// From the per-CPU counters, `perCPU[cpu][vector.rawValue]`, over `seconds`.
    public init(perCPU: [[SoftirqCounters]], seconds: Double) {
        enabled = true
        var totals = [SoftirqCounters](repeating: SoftirqCounters(), count: SoftirqVector.allCases.count)
        cpus = perCPU.enumerated().map { cpu, v in
            for vec in SoftirqVector.allCases { totals[vec.rawValue].merge(v[vec.rawValue]) }
            return CPU(cpu: cpu, netRX: Vector(v[SoftirqVector.netRX.rawValue], seconds: seconds, cpus: 1),
                       netTX: Vector(v[SoftirqVector.netTX.rawValue], seconds: seconds, cpus: 1))
        }
        total = Dictionary(uniqueKeysWithValues: SoftirqVector.allCases.map {
            ($0.key, Vector(totals[$0.rawValue], seconds: seconds, cpus: max(1, perCPU.count)))
        })
    }
}
