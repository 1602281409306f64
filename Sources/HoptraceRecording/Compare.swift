import HoptraceCore

/// Before/after comparison of two recordings (docs/compare.md).
///
/// Method: packets within a run are not independent (a slow second slows many
/// packets), so the unit of resampling is the time window. For each hop (matched by
/// the names of its devices and namespaces) and each segment, the statistic is the
/// relative change of the p99 (and p50) between the runs' merged histograms. Its
/// 95 % interval comes from a bootstrap that resamples each run's windows with
/// replacement (`resamples` times, fixed seed). A change is significant when the
/// interval excludes zero and the estimate is at least `minEffect` (5 %): slower or
/// faster; otherwise "no significant change".
public struct Comparison: Codable, Sendable {
    public enum Verdict: String, Codable, Sendable {
        case slower, faster
        case unchanged = "no significant change"
        case onlyBefore = "only in before"
        case onlyAfter = "only in after"
        case tooFewWindows = "too few windows"

        /// Whether both runs have it, so there is a change (an estimate).
        public var hasChange: Bool { self != .onlyBefore && self != .onlyAfter }
        /// Whether the change has a 95 % interval (the bootstrap ran).
        public var hasInterval: Bool { self == .slower || self == .faster || self == .unchanged }
    }

    public struct Entry: Codable, Sendable {
        public var hop: String
        public var segment: String
        public var beforeP50Ns: UInt64
        public var afterP50Ns: UInt64
        public var beforeP99Ns: UInt64
        public var afterP99Ns: UInt64
        /// Relative change of the p99, %, and its 95 % interval.
        public var p99ChangePercent: Double
        public var p99LowPercent: Double
        public var p99HighPercent: Double
        public var p50ChangePercent: Double
        public var verdict: Verdict
        public var windowsBefore: Int
        public var windowsAfter: Int

        enum CodingKeys: String, CodingKey {
            case hop, segment, beforeP50Ns = "before_p50_ns", afterP50Ns = "after_p50_ns"
            case beforeP99Ns = "before_p99_ns", afterP99Ns = "after_p99_ns", p99ChangePercent = "p99_change_percent"
            case p99LowPercent = "p99_ci_low_percent", p99HighPercent = "p99_ci_high_percent"
            case p50ChangePercent = "p50_change_percent", verdict, windowsBefore = "windows_before"
            case windowsAfter = "windows_after"
        }
    }

    public static let minEffect = 0.05
    public static let minWindows = 3

    public var entries: [Entry]
    public var notes: [String]

    /// A run to compare: its windows and the names to match hops by.
    public struct Run: Sendable {
        public var windows: WindowedAggregate
        public var names: NameTable
        public var host: String

        public init(windows: WindowedAggregate, names: NameTable, host: String) {
            self.windows = windows
            self.names = names
            self.host = host
        }

        /// What hops are matched by: by workload where one is known (a restarted pod
        /// is the same pod), by namespace and device names otherwise.
        public func label(_ key: HopKey) -> String {
            "\(names.stableLabel(key.from)) -> \(names.stableLabel(key.to))"
        }

        /// hop label -> segment name -> per-window histograms.
        func series() -> [String: [String: [Histogram]]] {
            var out: [String: [String: [Histogram]]] = [:]
            for (i, key) in windows.hopKeys.enumerated() {
                let label = label(key)
                out[label, default: [:]]["total"] = windows.series(i, segment: nil).map(\.histogram)
                for segment in Segment.allCases {
                    let s = windows.series(i, segment: segment).map(\.histogram)
                    if !s.isEmpty { out[label, default: [:]][segment.name] = s }
                }
            }
            return out
        }

        /// hop label -> segment name ("total" too) -> the run's windows merged: what
        /// `series()` resamples, whole (the before/after distributions of a page).
        public func mergedSeries() -> [String: [String: Histogram]] {
            series().mapValues { segments in
                segments.mapValues { windows in
                    windows.reduce(into: Histogram(precisionBits: WindowedAggregate.precisionBits)) { $0.merge($1) }
                }
            }
        }
    }

    public init(before: Run, after: Run, resamples: Int = 400, seed: UInt64 = 0x5eed) {
        let a = before.series(), b = after.series()
        var entries: [Entry] = [], notes: [String] = []
        if before.host != after.host { notes.append("recordings come from different hosts (\(before.host), \(after.host)): hops are matched by namespace and device names") }
        var rng = SplitMix(state: seed)
        for hop in Set(a.keys).union(b.keys).sorted() {
            guard let sa = a[hop] else {
                entries.append(Self.missing(hop, segment: "total", .onlyAfter, b[hop]?["total"] ?? [], after: true))
                continue
            }
            guard let sb = b[hop] else {
                entries.append(Self.missing(hop, segment: "total", .onlyBefore, sa["total"] ?? [], after: false))
                continue
            }
            for segment in ["total"] + Segment.allCases.map(\.name) {
                switch (sa[segment], sb[segment]) {
                case let (wa?, wb?):
                    entries.append(Self.compare(hop: hop, segment: segment, wa, wb, resamples: resamples, rng: &rng))
                case let (nil, wb?): // crossed only after, e.g. a qdisc added to a device that had no queue
                    entries.append(Self.missing(hop, segment: segment, .onlyAfter, wb, after: true))
                case let (wa?, nil):
                    entries.append(Self.missing(hop, segment: segment, .onlyBefore, wa, after: false))
                case (nil, nil):
                    break
                }
            }
        }
        let onlyOne = entries.filter { $0.segment == "total" && ($0.verdict == .onlyBefore || $0.verdict == .onlyAfter) }
        if !onlyOne.isEmpty {
            notes.append("\(onlyOne.count) hops appear in one recording only: their devices or namespaces differ (renamed, added or removed)")
        }
        self.entries = entries
        self.notes = notes
    }

    /// A hop, or a segment of one, that only one recording has: its figures on that side.
    static func missing(_ hop: String, segment: String, _ v: Verdict, _ windows: [Histogram], after: Bool) -> Entry {
        var m = Histogram(precisionBits: windows.first?.precisionBits ?? 6)
        windows.forEach { m.merge($0) }
        let p50 = m.value(atQuantile: 0.5), p99 = m.value(atQuantile: 0.99)
        return Entry(hop: hop, segment: segment, beforeP50Ns: after ? 0 : p50, afterP50Ns: after ? p50 : 0,
                     beforeP99Ns: after ? 0 : p99, afterP99Ns: after ? p99 : 0, p99ChangePercent: 0, p99LowPercent: 0,
                     p99HighPercent: 0, p50ChangePercent: 0, verdict: v, windowsBefore: after ? 0 : windows.count,
                     windowsAfter: after ? windows.count : 0)
    }

    /// The top of each window's histogram (the buckets from `cut` up) and its total:
    /// enough for any quantile above the cut, and resampling then sums a few dozen
    /// buckets per window instead of hundreds.
    struct Tails {
        /// windows x width counts, flat (row w holds window w's buckets from `cut` up).
        var counts: [UInt64]
        var totals: [UInt64]
        let width: Int
        let cut: Int
        let template: Histogram

        init(_ windows: [Histogram], cut: Int, width total: Int) {
            self.cut = cut
            width = max(0, total - cut)
            template = windows.first.map { Histogram(precisionBits: $0.precisionBits) } ?? Histogram()
            counts = [UInt64](repeating: 0, count: windows.count * width)
            for (w, h) in windows.enumerated() {
                for i in 0..<width where cut + i < h.counts.count { counts[w * width + i] = h.counts[cut + i] }
            }
            totals = windows.map(\.count)
        }

        /// The `q` quantile (bucket midpoint) of the windows in `pick` merged.
        func quantile(_ pick: [Int], _ q: Double) -> Double {
            var tail = [UInt64](repeating: 0, count: width)
            var n: UInt64 = 0
            tail.withUnsafeMutableBufferPointer { t in
                counts.withUnsafeBufferPointer { c in
                    for w in pick {
                        n &+= totals[w]
                        let row = w * width
                        var i = 0
                        while i < width {
                            t[i] &+= c[row + i]
                            i += 1
                        }
                    }
                }
            }
            if n == 0 { return 0 }
            let rank = max(1, UInt64((q * Double(n)).rounded(.up)))
            let fromTop = n - rank + 1
            var seen: UInt64 = 0
            var i = width - 1
            while i >= 0 {
                seen += tail[i]
                if seen >= fromTop {
                    let r = template.bucketRange(cut + i)
                    return Double(r.lowerBound) + Double(r.upperBound - r.lowerBound) / 2
                }
                i -= 1
            }
            return Double(template.bucketRange(cut).lowerBound) // below the cut: not reached for q above it
        }
    }

    static func compare(hop: String, segment: String, _ wa: [Histogram], _ wb: [Histogram], resamples: Int,
                        rng: inout SplitMix) -> Entry {
        let bits = wa.first?.precisionBits ?? 6
        var ma = Histogram(precisionBits: bits), mb = Histogram(precisionBits: bits)
        wa.forEach { ma.merge($0) }
        wb.forEach { mb.merge($0) }
        let a50 = ma.value(atQuantile: 0.5), b50 = mb.value(atQuantile: 0.5)
        let a99 = ma.value(atQuantile: 0.99), b99 = mb.value(atQuantile: 0.99)
        func rel(_ x: Double, _ y: Double) -> Double { x > 0 ? y / x - 1 : 0 }
        let est = rel(Double(a99), Double(b99))
        var entry = Entry(hop: hop, segment: segment, beforeP50Ns: a50, afterP50Ns: b50, beforeP99Ns: a99, afterP99Ns: b99,
                          p99ChangePercent: est * 100, p99LowPercent: 0, p99HighPercent: 0,
                          p50ChangePercent: rel(Double(a50), Double(b50)) * 100, verdict: .unchanged,
                          windowsBefore: wa.count, windowsAfter: wb.count)
        guard wa.count >= minWindows, wb.count >= minWindows else {
            entry.verdict = .tooFewWindows
            return entry
        }
        let width = max(ma.counts.count, mb.counts.count)
        // resampled p99s stay far above the pooled p90s: cut the histograms there
        let cut = min(ma.bucketIndex(ma.value(atQuantile: 0.9)), mb.bucketIndex(mb.value(atQuantile: 0.9)))
        let ta = Tails(wa, cut: cut, width: width), tb = Tails(wb, cut: cut, width: width)
        var stats: [Double] = []
        stats.reserveCapacity(resamples)
        for _ in 0..<resamples {
            let pa = (0..<wa.count).map { _ in Int(rng.next() % UInt64(wa.count)) }
            let pb = (0..<wb.count).map { _ in Int(rng.next() % UInt64(wb.count)) }
            stats.append(rel(ta.quantile(pa, 0.99), tb.quantile(pb, 0.99)))
        }
        stats.sort()
        let lo = stats[Int(0.025 * Double(resamples))], hi = stats[min(resamples - 1, Int(0.975 * Double(resamples)))]
        entry.p99LowPercent = lo * 100
        entry.p99HighPercent = hi * 100
        if lo > 0 && est >= minEffect {
            entry.verdict = .slower
        } else if hi < 0 && est <= -minEffect {
            entry.verdict = .faster
        }
        return entry
    }

    /// Whether a hop's total got slower by at least `percent` (for --fail-if-slower).
    public func slower(byAtLeast percent: Double) -> [Entry] {
        entries.filter { $0.segment == "total" && $0.verdict == .slower && $0.p99ChangePercent >= percent }
    }

    public func text() -> String {
        var out = "COMPARE (p99 change with 95 % interval, by hop and segment; method: docs/compare.md)\n"
        func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
        for n in notes { out += "  note: \(n)\n" }
        var lastHop = ""
        for e in entries {
            if e.hop != lastHop {
                out += "  \(e.hop)\n"
                lastHop = e.hop
            }
            let change = !e.verdict.hasChange ? "" : String(format: "%+.1f%%", e.p99ChangePercent)
                + (e.verdict.hasInterval ? String(format: " [%+.1f%%, %+.1f%%]", e.p99LowPercent, e.p99HighPercent) : "")
            out += "    " + pad(e.segment, 9) + pad("p99 \(formatNs(e.beforeP99Ns)) -> \(formatNs(e.afterP99Ns))", 30)
                + pad(change, 34) + e.verdict.rawValue.uppercased() + "\n"
        }
        return out
    }
}

/// A small deterministic generator: the bootstrap gives the same interval every run.
public struct SplitMix: RandomNumberGenerator, Sendable {
    public var state: UInt64
    public init(state: UInt64) { self.state = state }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
