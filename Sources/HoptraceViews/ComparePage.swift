import Foundation
import HoptraceCore
import HoptraceRecording

/// `hoptrace compare --html`: two recordings as one self-contained HTML page
/// (docs/html.md): per hop, each segment's p99 change with its interval and verdict,
/// the before and after distributions overlaid, and both timelines.
public struct ComparePage {
    public var before: RecordedTrace
    public var after: RecordedTrace
    public var comparison: Comparison
    /// The recordings' paths as the user gave them (shown, not opened).
    public var beforeSource: String
    public var afterSource: String

    public init(before: RecordedTrace, after: RecordedTrace, comparison: Comparison, beforeSource: String, afterSource: String) {
        self.before = before
        self.after = after
        self.comparison = comparison
        self.beforeSource = beforeSource
        self.afterSource = afterSource
    }

    /// Rows of a hop in the order the pages show segments: the total first.
    static let segmentNames = ["total"] + Views.segmentOrder.map(\.name)

    public func html() -> String {
        let byHop = Dictionary(grouping: comparison.entries, by: \.hop).mapValues { entries in
            entries.sorted { Self.segmentNames.firstIndex(of: $0.segment) ?? 99 < Self.segmentNames.firstIndex(of: $1.segment) ?? 99 }
        }
        let hops = byHop.keys.sorted()
        let titles = hopTitles()
        var body = header()
        body += Page.section(id: "changes", title: "p99 change by hop and segment", changes(hops, byHop, titles: titles))
        body += Page.section(id: "distributions", title: "Distributions, before and after", distributions(hops, titles: titles))
        // two timelines share the columns one report has: the page stays as small
        let columns = TimelineColumns.maxColumns / 2
        body += Page.section(id: "timeline-before", title: "Timeline before: \(beforeSource)",
                             Page.timelines(before, run: "before", maxColumns: columns))
        body += Page.section(id: "timeline-after", title: "Timeline after: \(afterSource)",
                             Page.timelines(after, run: "after", maxColumns: columns))
        return Page.document(title: "hoptrace compare: \(beforeSource) vs \(afterSource)", body: body)
    }

    /// Each compared hop's heading (`Page.hopTitle`), with the after run's names where
    /// both runs have the hop (the newer names).
    func hopTitles() -> [String: String] {
        var out: [String: String] = [:]
        for trace in [before, after] {
            let run = trace.comparisonRun
            for key in run.windows.hopKeys {
                let label = run.label(key)
                out[label] = Page.hopTitle(label, key, names: run.names)
            }
        }
        return out
    }

    func header() -> String {
        func describe(_ t: RecordedTrace, _ path: String) -> String {
            let m = t.contents.metadata
            return "\(path): host \(m.host), kernel \(m.kernel), started \(Page.utc(m.startUnixNs)), "
                + "\(String(format: "%.1f", t.durationSeconds)) s, \(t.contents.records) records"
                + (t.contents.cutShort.map { " (cut short: \($0))" } ?? "")
        }
        var out = "<header><h1>hoptrace compare</h1>\n"
        out += "<p class=\"lead\">before: \(escapeMarkup(describe(before, beforeSource)))<br>"
            + "after: \(escapeMarkup(describe(after, afterSource)))</p>\n"
        out += Page.caption("Method (docs/compare.md): per hop, matched by workload and device names, and per segment, the "
                            + "relative change of the p99 with a 95 % bootstrap interval over time windows. Slower or faster "
                            + "when the interval excludes zero and the change is at least "
                            + "\(Int(Comparison.minEffect * 100)) %.")
        out += comparison.notes.map { "<p class=\"warning\">note: \(escapeMarkup($0))</p>\n" }.joined()
        return out + "</header>\n"
    }

    func changes(_ hops: [String], _ byHop: [String: [Comparison.Entry]], titles: [String: String]) -> String {
        guard !hops.isEmpty else { return Page.caption("Neither recording has a hop.") }
        let scale = ChangeChart.scale(comparison.entries)
        var out = Page.caption("Square: the p99 change; bar: its 95 % interval; red slower, green faster, grey no significant "
                               + "change. One scale for all hops.")
        for hop in hops { out += ChangeChart.svg(hop: hop, title: titles[hop] ?? hop, entries: byHop[hop] ?? [], scale: scale) }
        let entries = hops.flatMap { byHop[$0] ?? [] }
        let rows = entries.map { e in
            // a hop or segment one run lacks: "-" on that side, not 0ns
            let inBefore = e.verdict != .onlyAfter, inAfter = e.verdict != .onlyBefore
            return [e.hop, e.segment, inBefore ? formatNs(e.beforeP50Ns) : "-", inAfter ? formatNs(e.afterP50Ns) : "-",
                    inBefore ? formatNs(e.beforeP99Ns) : "-", inAfter ? formatNs(e.afterP99Ns) : "-",
                    e.verdict.hasChange ? ChangeChart.percent(e.p99ChangePercent) : "",
                    e.verdict.hasInterval ? "[\(ChangeChart.percent(e.p99LowPercent)), \(ChangeChart.percent(e.p99HighPercent))]" : "",
                    "\(e.windowsBefore) / \(e.windowsAfter)", e.verdict.rawValue]
        }
        out += Page.table(["hop", "segment", "p50 before", "p50 after", "p99 before", "p99 after", "p99 change", "95 % interval",
                           "windows", "verdict"], rows, numeric: Set(2...8),
                          classes: [9: { ChangeChart.verdictClass(entries[$0].verdict) }])
        return out
    }

    func distributions(_ hops: [String], titles: [String: String]) -> String {
        let a = before.comparisonRun.mergedSeries(), b = after.comparisonRun.mergedSeries()
        let scale = DistributionChart.scale(covering: (Array(a.values) + Array(b.values)).flatMap { Array($0.values) })
        var out = Page.caption("Share of packets by latency, before (grey) and after (red), on one log scale for every chart; "
                               + "dashed marks at p50, p90, p99, p99.9 and max of each (hover for exact values).")
        for hop in hops {
            out += "<h3>\(escapeMarkup(titles[hop] ?? hop))</h3>\n<div class=\"grid\">"
            for segment in Views.segmentOrder.map(\.name) + ["total"] {
                let pair = [("before", a[hop]?[segment], "before"), ("after", b[hop]?[segment], "after")]
                let series = pair.compactMap { name, h, cls in h.map { (name: name, histogram: $0, cls: cls) } }
                if series.isEmpty { continue }
                out += DistributionChart.svg(hop: hop, segment: segment, series: series, scale: scale)
            }
            out += "</div>\n"
        }
        return out
    }
}
