import Foundation
import HoptraceCore
import HoptraceRecording

/// A latency distribution: % of packets per bin of equal width on a log time axis,
/// with marks at p50, p90, p99, p99.9 and the maximum. One histogram (a report) or
/// two overlaid (before and after, a comparison) on the same axes.
public enum DistributionChart {
    public static let width = 400
    public static let height = 230
    /// Bins per decade: the histograms' buckets (about 100 or 200 a decade) merged
    /// into bins wide enough to read, narrow enough to show a second mode.
    public static let binsPerDecade = 20
    /// The plot area inside the chart: left, right, top, bottom.
    static let plot = (left: 58.0, right: 376.0, top: 48.0, bottom: 180.0)

    /// The x axis of every distribution on a page: one scale, so charts compare at a glance.
    public static func scale(covering histograms: [Histogram]) -> LogScale {
        let seen = histograms.filter { $0.count > 0 }
        return LogScale.decades(covering: seen.map(\.min).min() ?? 1, seen.map(\.max).max() ?? 1_000,
                                from: plot.left, to: plot.right)
    }

    /// % of `h`'s values in each bin of `scale` (bin k: the k-th 1/`binsPerDecade` of a
    /// decade from `scale.low`); a bucket goes to the bin of its midpoint.
    public static func binPercents(_ h: Histogram, scale: LogScale) -> [Double] {
        let bins = Int((log10(scale.high / scale.low) * Double(binsPerDecade)).rounded())
        var counts = [UInt64](repeating: 0, count: bins)
        guard h.count > 0, bins > 0 else { return counts.map { Double($0) } }
        for (i, c) in h.counts.enumerated() where c > 0 {
            let r = h.bucketRange(i)
            let mid = max(Double(r.lowerBound) + Double(r.upperBound - r.lowerBound) / 2, 1)
            let k = Int(floor(log10(mid / scale.low) * Double(binsPerDecade)))
            counts[min(max(k, 0), bins - 1)] += c
        }
        return counts.map { 100 * Double($0) / Double(h.count) }
    }

    /// The chart. `series` are (name, histogram, CSS class): one, or before and after.
    static func svg(hop: String, segment: String, series: [(name: String, histogram: Histogram, cls: String)],
                    scale: LogScale) -> String {
        var chart = SVGChart(kind: "distribution", width: width, height: height,
                             title: "\(segment) latency of \(hop): % of packets by latency",
                             data: ["hop": hop, "segment": segment])
        let percents = series.map { binPercents($0.histogram, scale: scale) }
        let y = LinearScale(high: max(percents.joined().max() ?? 0, 1), from: plot.bottom, to: plot.top, tickCount: 4)
        chart.grid(y, x1: plot.left, x2: plot.right)
        let packets = series.map { "\($0.name.isEmpty ? "" : $0.name + " ")\($0.histogram.count)" }.joined(separator: ", ")
        chart.text("\(segment) (\(packets) packets)", x: textLeft, y: 14, cls: "chart-heading")
        for (s, p) in zip(series, percents) {
            chart.path(stepArea(p, scale: scale, y: y), cls: "area \(s.cls)", closed: true)
        }
        for (n, s) in series.enumerated() { marks(s, into: &chart, scale: scale, row: n, rows: series.count) }
        chart.bottomAxis(scale, y: plot.bottom, label: "latency (log scale)")
        chart.leftAxis(y, x: plot.left, label: "packets (%)")
        return chart.svg
    }

    /// The outline of `percents` as steps, closed along the x axis.
    static func stepArea(_ percents: [Double], scale: LogScale, y: LinearScale) -> [(x: Double, y: Double)] {
        guard let first = percents.firstIndex(where: { $0 > 0 }), let last = percents.lastIndex(where: { $0 > 0 }) else { return [] }
        func edge(_ k: Int) -> Double { scale.position(scale.low * pow(10, Double(k) / Double(binsPerDecade))) }
        var points: [(x: Double, y: Double)] = [(edge(first), y.from)]
        for k in first...last {
            points.append((edge(k), y.position(percents[k])))
            points.append((edge(k + 1), y.position(percents[k])))
        }
        points.append((edge(last + 1), y.from))
        return points
    }

    static let quantiles: [(name: String, q: Double)] = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p99.9", 0.999), ("max", 1)]
    /// Where the heading and the written quantiles start: the chart's left edge, not
    /// the plot's, so a line of five values fits in 400 px.
    static let textLeft = 4.0

    /// Vertical marks at the quantiles (exact values in their titles) and a line of
    /// them written out, one line per series, under the heading. Two series write
    /// four values each, not p90: "before: " and five values of 999.9us are wider
    /// than the chart (the p90 mark keeps its title).
    static func marks(_ s: (name: String, histogram: Histogram, cls: String), into chart: inout SVGChart,
                      scale: LogScale, row: Int, rows: Int) {
        guard s.histogram.count > 0 else { return }
        var written: [String] = []
        for (name, q) in quantiles {
            let v = s.histogram.value(atQuantile: q)
            let x = scale.position(Double(v))
            let who = s.name.isEmpty ? "" : s.name + " "
            chart.line(x1: x, y1: plot.top - 4, x2: x, y2: plot.bottom, cls: "mark \(s.cls)", title: "\(who)\(name): \(exactNs(v))")
            if rows == 1 || name != "p90" { written.append("\(name) \(formatNs(v))") }
        }
        let prefix = rows > 1 ? s.name + ": " : ""
        chart.text(prefix + written.joined(separator: "  "), x: textLeft, y: 28 + Double(row) * 12, cls: "marks-legend \(s.cls)")
    }
}

/// Per hop: where the time goes, each segment's p50 (one bar) and p99 (another)
/// stacked in `Views.segmentOrder`. Each segment's own percentile: the sum is not the
/// hop's total percentile (the slowest packets of two segments are seldom the same).
public enum BreakdownChart {
    public static let width = 1200
    public static let height = 112
    static let plot = (left: 64.0, right: 1120.0, top: 24.0, bottom: 76.0)

    /// The x axis every hop's bars share: up to the largest p99 stack.
    public static func scale(maxStackNs: UInt64) -> LinearScale {
        LinearScale(high: max(Double(maxStackNs), 1), from: plot.left, to: plot.right, tickCount: 8) { tickLabel($0) }
    }

    /// The stacked p50 and p99 of each segment in `segments` (by segment name);
    /// `title` is the heading (`hop` with its workloads, `Page.hopTitle`), `hop` its data-hop.
    static func svg(hop: String, title: String, segments: [String: LatencySummary], scale: LinearScale) -> String {
        var chart = SVGChart(kind: "breakdown", width: width, height: height,
                             title: "Where the time of \(title) goes: each segment's p50 and p99, stacked",
                             data: ["hop": hop])
        chart.text(title, x: plot.left, y: 14, cls: "chart-heading")
        for (row, (name, pick)) in [("p50", \LatencySummary.p50Ns), ("p99", \LatencySummary.p99Ns)].enumerated() {
            let y = plot.top + Double(row) * 26
            chart.text(name, x: plot.left - 8, y: y + 15, cls: "tick", anchor: "end")
            var x = scale.position(0)
            var sum: UInt64 = 0
            for segment in Views.segmentOrder {
                guard let s = segments[segment.name] else { continue }
                let v = s[keyPath: pick]
                let w = scale.position(Double(sum + v)) - x
                chart.rect(x: x, y: y, width: w, height: 22, cls: "seg-\(segment.name)",
                           title: "\(segment.name) \(name): \(exactNs(v))")
                x += w
                sum += v
            }
            chart.text(formatNs(sum), x: x + 4, y: y + 15, cls: "tick")
        }
        chart.bottomAxis(scale, y: plot.bottom + 4, label: "time in the hop (each segment's own percentile, stacked)")
        return chart.svg
    }
}

/// Consecutive windows merged into at most `maxColumns` columns per timeline, so a
/// 1-hour recording draws 600 columns, not 3,600 points with their titles.
public struct TimelineColumns: Sendable, Equatable {
    public static let maxColumns = 600
    public let windows: Int
    public let windowsPerColumn: Int

    public init(windows: Int, maxColumns: Int = TimelineColumns.maxColumns) {
        self.windows = max(windows, 1)
        windowsPerColumn = (self.windows + maxColumns - 1) / maxColumns
    }

    public var count: Int { (windows + windowsPerColumn - 1) / windowsPerColumn }
    public func windows(of column: Int) -> Range<Int> {
        column * windowsPerColumn..<min((column + 1) * windowsPerColumn, windows)
    }
    public func column(of window: Int) -> Int { window / windowsPerColumn }
}

/// One hop's total latency per column: its windows' histograms merged, so a column's
/// p99 is exact for its span (not a mean of p99s).
public struct ColumnPoint: Sendable, Equatable {
    public var column: Int
    public var count: UInt64
    public var p50Ns: UInt64
    public var p99Ns: UInt64
    public var maxNs: UInt64

    public static func points(_ w: WindowedAggregate, hop: Int, columns: TimelineColumns) -> [ColumnPoint] {
        let cells = w.cells[hop]
        return (0..<columns.count).compactMap { c in
            let span = columns.windows(of: c).clamped(to: cells.indices)
            var h = Histogram(precisionBits: WindowedAggregate.precisionBits)
            for i in span { h.merge(cells[i].total) }
            guard h.count > 0 else { return nil }
            return ColumnPoint(column: c, count: h.count, p50Ns: h.value(atQuantile: 0.5), p99Ns: h.value(atQuantile: 0.99),
                               maxNs: h.max)
        }
    }
}

/// Per hop: p50 and p99 of each column over the recording's time, columns holding
/// a flagged window shaded (and titled with what the flag found).
public enum TimelineChart {
    public static let width = 1200
    public static let height = 190
    static let plot = (left: 64.0, right: 1180.0, top: 22.0, bottom: 146.0)

    /// The time axis of a recording's timelines: seconds since its start, ending
    /// where the recording ends (not at the next round tick: an hour fills the width).
    static func timeScale(_ columns: TimelineColumns, windowNs: UInt64) -> LinearScale {
        LinearScale(high: Double(columns.windows) * Double(windowNs) / 1e9, from: plot.left, to: plot.right, tickCount: 10,
                    roundHigh: false)
    }

    /// `title` is the heading (`hop` with its workloads, `Page.hopTitle`).
    static func svg(hop: String, title: String, run: String?, points: [ColumnPoint], flags: [Int: String],
                    columns: TimelineColumns, windowNs: UInt64) -> String {
        let x = timeScale(columns, windowNs: windowNs)
        let name = run.map { "\($0): " } ?? ""
        var data: KeyValuePairs<String, String> = ["hop": hop]
        if let run { data = ["hop": hop, "run": run] }
        var chart = SVGChart(kind: "timeline", width: width, height: height,
                             title: "\(name)p50 and p99 of \(title) over time", data: data)
        let y = LogScale.decades(covering: points.map(\.p50Ns).min() ?? 1, points.map(\.p99Ns).max() ?? 1_000,
                                 from: plot.bottom, to: plot.top)
        let seconds = Double(windowNs) / 1e9
        func left(_ c: Int) -> Double { x.position(Double(columns.windows(of: c).lowerBound) * seconds) }
        func right(_ c: Int) -> Double { x.position(Double(columns.windows(of: c).upperBound) * seconds) }
        chart.grid(y, x1: plot.left, x2: plot.right)
        for (c, why) in flags.sorted(by: { $0.key < $1.key }) {
            chart.rect(x: left(c), y: plot.top, width: max(right(c) - left(c), 2), height: plot.bottom - plot.top,
                       cls: "flag", title: why)
        }
        chart.text("\(name)\(title)", x: plot.left, y: 14, cls: "chart-heading")
        for (pick, cls) in [(\ColumnPoint.p99Ns, "p99"), (\ColumnPoint.p50Ns, "p50")] {
            for stretch in consecutive(points) {
                chart.path(stretch.map { ((left($0.column) + right($0.column)) / 2, y.position(Double($0[keyPath: pick]))) },
                           cls: "line \(cls)")
            }
        }
        // one transparent column a point to hover, titled with its figures: formatNs's
        // three digits are as exact as the windows' histograms (within 1.6 %), and
        // 600 of them per hop must stay small
        chart.group("hover")
        for p in points {
            let span = columns.windows(of: p.column)
            chart.rect(x: left(p.column), y: plot.top, width: right(p.column) - left(p.column), height: plot.bottom - plot.top,
                       cls: nil, title: "\(timeSpan(span, seconds: seconds)): p50 \(formatNs(p.p50Ns)), p99 \(formatNs(p.p99Ns)), "
                       + "max \(formatNs(p.maxNs)), \(p.count) records")
        }
        chart.endGroup()
        chart.bottomAxis(x, y: plot.bottom, label: "time since the start (s)")
        chart.leftAxis(y, x: plot.left, label: "latency (log)")
        return chart.svg
    }

    /// Runs of points in adjacent columns: a line breaks where a column had no data.
    static func consecutive(_ points: [ColumnPoint]) -> [[ColumnPoint]] {
        var runs: [[ColumnPoint]] = []
        for p in points {
            if let last = runs.last?.last, last.column + 1 == p.column { runs[runs.count - 1].append(p) } else { runs.append([p]) }
        }
        return runs
    }

    /// "12-13 s" (window 12 of 1 s windows) or "12-18 s" (windows 12 to 17).
    static func timeSpan(_ span: Range<Int>, seconds: Double) -> String {
        "\(LinearScale.plain(Double(span.lowerBound) * seconds))-\(LinearScale.plain(Double(span.upperBound) * seconds)) s"
    }
}

/// A node-wide figure per column beneath the timelines (drops, softirq busy), as bars.
public enum NodeStripChart {
    public static let height = 120
    static let plot = (top: 18.0, bottom: 76.0)

    static func svg(kind: String, heading: String, yLabel: String, values: [Double], titles: [String],
                    columns: TimelineColumns, windowNs: UInt64, run: String?) -> String {
        let x = TimelineChart.timeScale(columns, windowNs: windowNs)
        var data: KeyValuePairs<String, String> = ["hop": "all"]
        if let run { data = ["hop": "all", "run": run] }
        var chart = SVGChart(kind: "strip \(kind)", width: TimelineChart.width, height: height,
                             title: (run.map { "\($0): " } ?? "") + heading, data: data)
        let y = LinearScale(high: max(values.max() ?? 0, 1), from: plot.bottom, to: plot.top, tickCount: 2)
        chart.text((run.map { "\($0): " } ?? "") + heading, x: x.from, y: 12, cls: "chart-heading")
        let seconds = Double(windowNs) / 1e9
        for (c, v) in values.enumerated() where v > 0 {
            let span = columns.windows(of: c)
            let l = x.position(Double(span.lowerBound) * seconds), r = x.position(Double(span.upperBound) * seconds)
            chart.rect(x: l, y: y.position(v), width: max(r - l, 1), height: y.from - y.position(v), cls: "bar \(kind)",
                       title: "\(TimelineChart.timeSpan(span, seconds: seconds)): \(titles[c])")
        }
        chart.bottomAxis(x, y: plot.bottom, label: "time since the start (s)")
        chart.leftAxis(y, x: x.from, label: yLabel)
        return chart.svg
    }
}

/// Per hop of a comparison: each segment's p99 change with its 95 % interval, a
/// row each, coloured by verdict.
public enum ChangeChart {
    public static let width = 1200
    static let rowHeight = 22.0
    static let plot = (left: 90.0, right: 700.0, top: 24.0)

    /// Interval ends past this (%) do not widen the axis: one hop's few windows can
    /// give [-97 %, +3800 %] and would squash every other change to a dot at zero.
    static let intervalCap = 100.0

    /// A symmetric % axis for every change of the page and every interval up to
    /// ±`intervalCap` (at least ±10 %); an interval past it runs off the axis's end.
    public static func scale(_ entries: [Comparison.Entry]) -> LinearScale {
        let widest = entries.filter(\.verdict.hasChange).flatMap { e in
            [abs(e.p99ChangePercent)] + (e.verdict.hasInterval ? [e.p99LowPercent, e.p99HighPercent].map { min(abs($0), intervalCap) } : [])
        }.max() ?? 0
        let m = LinearScale.roundUp(max(widest, 10))
        return LinearScale(low: -m, high: m, from: plot.left, to: plot.right, tickCount: 4) { v in
            v > 0 ? "+\(LinearScale.plain(v))" : LinearScale.plain(v)
        }
    }

    /// Right of the plot, a row's verdict, then its figures (p99 before -> after, the
    /// change and its interval): the verdict first, as it is the shorter and the one read.
    static let verdictLeft = plot.right + 16, figuresLeft = plot.right + 196

    /// `title` is the heading (`hop` with its workloads, `Page.hopTitle`).
    static func svg(hop: String, title: String, entries: [Comparison.Entry], scale: LinearScale) -> String {
        let bottom = plot.top + rowHeight * Double(entries.count) + 6
        var chart = SVGChart(kind: "change", width: width, height: Int(bottom) + 40,
                             title: "p99 change of \(title) by segment, with 95 % intervals", data: ["hop": hop])
        chart.text(title, x: plot.left, y: 14, cls: "chart-heading")
        chart.line(x1: scale.position(0), y1: plot.top, x2: scale.position(0), y2: bottom, cls: "zero")
        for (row, e) in entries.enumerated() {
            let y = plot.top + rowHeight * (Double(row) + 0.5)
            let cls = verdictClass(e.verdict)
            chart.text(e.segment, x: plot.left - 8, y: y + 4, cls: "tick", anchor: "end")
            let interval = e.verdict.hasInterval ? " [\(percent(e.p99LowPercent)), \(percent(e.p99HighPercent))]" : ""
            if e.verdict.hasInterval {
                chart.line(x1: scale.position(e.p99LowPercent), y1: y, x2: scale.position(e.p99HighPercent), y2: y,
                           cls: "interval \(cls)", title: "\(e.segment): 95 % interval of the p99 change\(interval)")
                // an end past the axis: an arrowhead at the axis's end says it goes on
                for (end, edge, dir) in [(e.p99LowPercent, scale.low, -1.0), (e.p99HighPercent, scale.high, 1.0)]
                where dir * end > dir * edge {
                    let x = scale.position(edge)
                    chart.path([(x - dir * 7, y - 5), (x, y), (x - dir * 7, y + 5)], cls: "interval \(cls) clipped", closed: true,
                               title: "\(e.segment): the interval goes on to \(percent(end))")
                }
            }
            if e.verdict.hasChange {
                chart.rect(x: scale.position(e.p99ChangePercent) - 4, y: y - 4, width: 8, height: 8, cls: "estimate \(cls)",
                           title: "\(e.segment): p99 \(exactNs(e.beforeP99Ns)) -> \(exactNs(e.afterP99Ns)), "
                           + "\(percent(e.p99ChangePercent))\(interval)")
            }
            let figures = e.verdict.hasChange
                ? "p99 \(formatNs(e.beforeP99Ns)) -> \(formatNs(e.afterP99Ns))  \(percent(e.p99ChangePercent))\(interval)"
                : "p99 \(formatNs(max(e.beforeP99Ns, e.afterP99Ns)))"
            chart.text(e.verdict.rawValue.uppercased(), x: verdictLeft, y: y + 4, cls: "verdict \(cls)")
            chart.text(figures, x: figuresLeft, y: y + 4, cls: "tick")
        }
        chart.bottomAxis(scale, y: bottom, label: "p99 change, after vs before (%)")
        return chart.svg
    }

    static func percent(_ v: Double) -> String { String(format: "%+.1f%%", v) }

    /// The CSS class of a verdict: slower red, faster green, the rest grey.
    static func verdictClass(_ v: Comparison.Verdict) -> String {
        switch v {
        case .slower: "slower"
        case .faster: "faster"
        case .unchanged: "unchanged"
        case .onlyBefore, .onlyAfter, .tooFewWindows: "other"
        }
    }
}
