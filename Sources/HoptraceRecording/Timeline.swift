import HoptraceCore

/// Per-window latency of each hop, so a slowdown of two seconds in a ten-minute
/// run stands out instead of vanishing in the whole-run histogram.
public struct WindowedAggregate: Sendable {
    /// Window histograms are within 1.6 %: fine enough for comparisons, small enough
    /// for hours of windows (typically 2-3 KiB each).
    public static let precisionBits = 6

    /// One hop in one window.
    public struct Cell: Sendable {
        /// The hop's segments and total in this window (the aggregation of the whole run).
        public var stats = HopStats(precisionBits: WindowedAggregate.precisionBits)
        /// The slowest flows (up to three, by their slowest hop).
        public var slowFlows: [(flow: FlowKey, maxNs: UInt64)] = []
        /// The smallest of `slowFlows`' maxima: a record must beat it to get in.
        var slowestFlowFloor: UInt64 = 0

        public var total: Histogram { stats.total }

        /// Adds runs of hop records and deliveries of this hop and window.
        mutating func add(_ c: RecordColumns, hops run: ArraySlice<Int32>, deliveries: ArraySlice<Int32>, gather: Gather) {
            stats.add(c, hops: run, deliveries: deliveries, gather: gather)
            // the slowest flows, kept only when a record could be one of them
            for r in run {
                let i = Int(r), ns = c.totalNs(i)
                if slowFlows.count < 3 || ns > slowestFlowFloor { keepSlow(c.flows[Int(c.flowIDs[i])], ns) }
            }
        }

        mutating func keepSlow(_ flow: FlowKey, _ ns: UInt64) {
            if let i = slowFlows.firstIndex(where: { $0.flow == flow }) {
                slowFlows[i].maxNs = max(slowFlows[i].maxNs, ns)
            } else if slowFlows.count < 3 {
                slowFlows.append((flow, ns))
            } else if let i = slowFlows.indices.min(by: { slowFlows[$0].maxNs < slowFlows[$1].maxNs }) {
                slowFlows[i] = (flow, ns)
            }
            slowestFlowFloor = slowFlows.count < 3 ? 0 : slowFlows.lazy.map(\.maxNs).min() ?? 0
        }
    }

    public let windowNs: UInt64
    public let startNs: UInt64
    public private(set) var hopKeys: [HopKey] = []
    /// `cells[hop][window]`, parallel to `hopKeys`.
    public private(set) var cells: [[Cell]] = []
    private var hopIndex: [HopKey: Int] = [:]
    /// Dropped wire packets by window.
    public private(set) var drops: [UInt64] = []
    public private(set) var lastWindow = 0

    public init(windowNs: UInt64, startNs: UInt64) {
        self.windowNs = max(windowNs, 1)
        self.startNs = startNs
    }

    public func window(of ns: UInt64) -> Int { ns <= startNs ? 0 : Int((ns - startNs) / windowNs) }

    private mutating func hop(_ key: HopKey) -> Int {
        if let i = hopIndex[key] { return i }
        hopIndex[key] = hopKeys.count
        hopKeys.append(key)
        cells.append([])
        return hopKeys.count - 1
    }

    public mutating func add(_ r: HopRecord) { add(RecordColumns([r])) }

    /// Adds a batch: each hop's records, a run of one window at a time (a recording's
    /// chunks are in time order, so a hop's records in a chunk are a run or two).
    /// `byHop` if the caller has grouped the batch already (for the aggregate too).
    public mutating func add(_ c: RecordColumns, byHop: HopRows? = nil) {
        let byHop = byHop ?? HopRows(c)
        let gather = Gather(capacity: c.count)
        for id in c.hops.indices {
            let hopRows = byHop.hops(id), deliveries = byHop.deliveries(id)
            if hopRows.isEmpty && deliveries.isEmpty { continue }
            let h = hop(c.hops[id])
            for (w, run) in windowRuns(hopRows, c, hop: h) {
                cells[h][w].add(c, hops: run, deliveries: [], gather: gather)
            }
            for (w, run) in windowRuns(deliveries, c, hop: h) {
                cells[h][w].add(c, hops: [], deliveries: run, gather: gather)
            }
        }
        for r in byHop.drops {
            let w = window(of: c.timestampNs[Int(r)])
            lastWindow = max(lastWindow, w)
            if w >= drops.count { drops.append(contentsOf: repeatElement(0, count: w + 1 - drops.count)) }
            drops[w] += UInt64(c.gsoSegments[Int(r)])
        }
    }

    /// `rows` (of hop `h`) split into runs of the same window, `h`'s cells grown to hold them.
    private mutating func windowRuns(_ rows: ArraySlice<Int32>, _ c: RecordColumns,
                                     hop h: Int) -> [(window: Int, rows: ArraySlice<Int32>)] {
        var runs: [(window: Int, rows: ArraySlice<Int32>)] = []
        var start = rows.startIndex
        while start < rows.endIndex {
            let w = window(of: c.timestampNs[Int(rows[start])])
            var end = start + 1
            while end < rows.endIndex && window(of: c.timestampNs[Int(rows[end])]) == w { end += 1 }
            runs.append((w, rows[start..<end]))
            start = end
        }
        let top = runs.lazy.map(\.window).max() ?? 0
        lastWindow = max(lastWindow, top)
        if top >= cells[h].count { cells[h].append(contentsOf: repeatElement(Cell(), count: top + 1 - cells[h].count)) }
        return runs
    }

    /// Adds what another aggregate of the same windows saw (reading a file on several threads).
    public mutating func merge(_ o: WindowedAggregate) {
        precondition(o.windowNs == windowNs && o.startNs == startNs, "merging windows of different runs")
        for (key, other) in zip(o.hopKeys, o.cells) {
            let h = hop(key)
            if other.count > cells[h].count {
                cells[h].append(contentsOf: repeatElement(Cell(), count: other.count - cells[h].count))
            }
            for (w, c) in other.enumerated() where c.stats.records > 0 || c.stats.segments.contains(where: { $0.count > 0 }) {
                cells[h][w].stats.merge(c.stats)
                for f in c.slowFlows where cells[h][w].slowFlows.count < 3 || f.maxNs > cells[h][w].slowestFlowFloor {
                    cells[h][w].keepSlow(f.flow, f.maxNs)
                }
            }
        }
        if o.drops.count > drops.count { drops.append(contentsOf: repeatElement(0, count: o.drops.count - drops.count)) }
        for (w, n) in o.drops.enumerated() { drops[w] += n }
        lastWindow = max(lastWindow, o.lastWindow)
    }

    /// One hop's windows merged: the whole run's figures of that hop, at the windows' precision.
    public func merged(_ hopIndex: Int) -> HopStats {
        cells[hopIndex].reduce(into: HopStats(precisionBits: Self.precisionBits)) { $0.merge($1.stats) }
    }

    /// Windows with data of `hop`, by index, for one segment (nil: the hop's total).
    public func series(_ hopIndex: Int, segment: Segment?) -> [(window: Int, histogram: Histogram)] {
        cells[hopIndex].enumerated().compactMap { w, c in
            let h = segment.map { c.stats.segments[$0.rawValue] } ?? c.total
            return h.count > 0 ? (w, h) : nil
        }
    }
}

/// The timeline section of a report from a recording.
public struct Timeline: Codable, Sendable {
    public struct Point: Codable, Sendable {
        public var window: Int
        public var count: UInt64
        public var p50Ns: UInt64
        public var p99Ns: UInt64
        public var maxNs: UInt64

        enum CodingKeys: String, CodingKey { case window, count, p50Ns = "p50_ns", p99Ns = "p99_ns", maxNs = "max_ns" }
    }

    public struct HopLine: Codable, Sendable {
        public var hop: String
        public var points: [Point]
    }

    /// A window where a hop's p99 jumped well above its own baseline, with what else
    /// happened then.
    public struct Flag: Codable, Sendable {
        public var window: Int
        public var hop: String
        public var p99Ns: UInt64
        public var baselineP99Ns: UInt64
        /// Per CPU: NET_RX + NET_TX run time in that window, % (from the status chunks).
        public var softirqBusyPercent: [Double]
        public var drops: UInt64
        public var slowFlows: [String]

        enum CodingKeys: String, CodingKey {
            case window, hop, p99Ns = "p99_ns", baselineP99Ns = "baseline_p99_ns"
            case softirqBusyPercent = "softirq_busy_percent", drops, slowFlows = "slow_flows"
        }
    }

    public var windowNs: UInt64
    public var windows: Int
    public var hops: [HopLine]
    public var flagged: [Flag]

    enum CodingKeys: String, CodingKey { case windowNs = "window_ns", windows, hops, flagged }

    /// The flag rule (docs/recording-format.md): a window with at least 20 records whose
    /// p99 is at least 3x the hop's baseline (the median of its windows' p99) and at
    /// least 50 us above it.
    public static let minRecords: UInt64 = 20
    public static let factor = 3.0
    public static let minJumpNs: UInt64 = 50_000

    public init(_ w: WindowedAggregate, names: NameTable, statuses: [RecordingStatus]) {
        windowNs = w.windowNs
        windows = w.lastWindow + 1
        var lines: [HopLine] = [], flags: [Flag] = []
        for (index, key) in w.hopKeys.enumerated().sorted(by: { $0.element < $1.element }) {
            let label = names.label(key)
            let points = w.series(index, segment: nil).map { i, h in
                Point(window: i, count: h.count, p50Ns: h.value(atQuantile: 0.5), p99Ns: h.value(atQuantile: 0.99), maxNs: h.max)
            }
            if points.isEmpty { continue }
            lines.append(HopLine(hop: label, points: points))
            let full = points.filter { $0.count >= Self.minRecords }.map(\.p99Ns).sorted()
            guard full.count >= 3 else { continue }
            let baseline = full[full.count / 2]
            for p in points where p.count >= Self.minRecords && Double(p.p99Ns) >= Self.factor * Double(baseline)
                && p.p99Ns >= baseline + Self.minJumpNs {
                let slow = w.cells[index][p.window].slowFlows.sorted { $0.maxNs > $1.maxNs }
                    .map { "\($0.flow.description) (max \(formatNs($0.maxNs)))" }
                flags.append(Flag(window: p.window, hop: label, p99Ns: p.p99Ns, baselineP99Ns: baseline,
                                  softirqBusyPercent: Self.softirqBusy(window: p.window, w: w, statuses: statuses),
                                  drops: p.window < w.drops.count ? w.drops[p.window] : 0, slowFlows: slow))
            }
        }
        hops = lines
        flagged = flags.sorted { ($0.window, $0.hop) < ($1.window, $1.hop) }
    }

    /// Softirq busy % per CPU over the status snapshots that bracket the window.
    static func softirqBusy(window: Int, w: WindowedAggregate, statuses: [RecordingStatus]) -> [Double] {
        let start = w.startNs + UInt64(window) * w.windowNs
        return softirqBusy(fromNs: start, toNs: start + w.windowNs, statuses: statuses)
    }

    /// Softirq busy % per CPU (NET_RX + NET_TX run time, to 0.1 %) over the status
    /// snapshots that bracket `fromNs..<toNs` (CLOCK_MONOTONIC); empty without two.
    public static func softirqBusy(fromNs start: UInt64, toNs end: UInt64, statuses: [RecordingStatus]) -> [Double] {
        guard let a = statuses.last(where: { $0.monotonicNs <= start }) ?? statuses.first,
              let b = statuses.first(where: { $0.monotonicNs >= end }) ?? statuses.last,
              b.monotonicNs > a.monotonicNs, a.softirqRunNs.count == b.softirqRunNs.count else { return [] }
        let span = Double(b.monotonicNs - a.monotonicNs)
        return zip(a.softirqRunNs, b.softirqRunNs).map { (100 * Double($1 &- $0) / span * 10).rounded() / 10 }
    }

    public func text() -> String {
        var out = "TIMELINE (\(formatNs(windowNs)) windows, hop total p50 / p99)\n"
        let shown = windows <= 60 ? Array(0..<windows) : Array(stride(from: 0, to: windows, by: windows / 60 + 1))
        for line in hops {
            out += "  \(line.hop)\n   "
            let byWindow = Dictionary(uniqueKeysWithValues: line.points.map { ($0.window, $0) })
            for (n, i) in shown.enumerated() {
                if let p = byWindow[i] { out += " \(i):\(formatNs(p.p50Ns))/\(formatNs(p.p99Ns))" } else { out += " \(i):-" }
                if n % 6 == 5 { out += "\n   " }
            }
            out += "\n"
        }
        if flagged.isEmpty {
            out += "  no window where a hop's p99 jumped to \(Int(Self.factor))x its baseline\n"
        }
        for f in flagged {
            out += "  FLAG window \(f.window): \(f.hop) p99 \(formatNs(f.p99Ns)) vs baseline \(formatNs(f.baselineP99Ns))"
            if !f.softirqBusyPercent.isEmpty {
                out += "; softirq busy " + f.softirqBusyPercent.enumerated().map { "CPU\($0) \($1)%" }.joined(separator: " ")
            }
            out += "; drops \(f.drops)"
            if !f.slowFlows.isEmpty { out += "; slowest flows: " + f.slowFlows.joined(separator: ", ") }
            out += "\n"
        }
        return out
    }
}
