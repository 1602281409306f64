import Foundation
import HoptraceCore
import HoptraceRecording

/// `hoptrace report --html`: a recording as one self-contained HTML page
/// (docs/html.md): where each hop's time goes, the distributions of each hop and
/// segment, the timeline, the softirq table, drops, top flows and the metadata.
public struct ReportPage {
    public var trace: RecordedTrace
    /// The recording's path as the user gave it (shown, not opened).
    public var source: String
    public var topFlows: Int

    public init(trace: RecordedTrace, source: String, topFlows: Int = Report.defaultTopFlows) {
        self.trace = trace
        self.source = source
        self.topFlows = topFlows
    }

    /// A hop of the page: its key, its label (as the timeline names it), its title
    /// (`Page.hopTitle`) and its whole-run figures.
    struct Hop {
        var key: HopKey
        var label: String
        var title: String
        var stats: HopStats
        var report: Report.HopReport
    }

    public func html() -> String {
        let report = trace.report(topFlows: topFlows)
        let hops = Self.hops(report, trace.aggregate, names: trace.names)
        var body = header(report)
        body += Page.section(id: "breakdown", title: "Where the time goes", breakdown(hops))
        body += Page.section(id: "distributions", title: "Latency distributions by hop and segment", distributions(hops))
        body += Page.section(id: "timeline", title: "Timeline", Page.timelines(trace, run: nil))
        body += Page.section(id: "softirq", title: "Network softirqs", Self.softirqTable(report.softirq))
        body += Page.section(id: "drops", title: "Drops", Self.dropsTable(report.drops))
        body += Page.section(id: "flows", title: "Top flows", flowsTable(report))
        body += Page.section(id: "recording", title: "Recording", metadata(report))
        return Page.document(title: "hoptrace report: \(source)", body: body)
    }

    /// The report's hops in its order (by names), each with its key and full-precision stats.
    static func hops(_ report: Report, _ aggregate: TraceAggregate, names: NameTable) -> [Hop] {
        let byKey = Dictionary(zip(aggregate.hops.keys, aggregate.hops.stats), uniquingKeysWith: { a, _ in a })
        return report.hops.compactMap { h in
            let key = HopKey(from: Endpoint(netns: h.from.netns, ifindex: h.from.ifindex),
                             to: Endpoint(netns: h.to.netns, ifindex: h.to.ifindex))
            guard let stats = byKey[key] else { return nil }
            let label = names.label(key)
            return Hop(key: key, label: label, title: Page.hopTitle(label, key, names: names), stats: stats, report: h)
        }
    }

    func header(_ report: Report) -> String {
        let m = trace.contents.metadata
        var out = "<header><h1>hoptrace report</h1>\n<p class=\"lead\">"
            + escapeMarkup("\(source): host \(m.host), kernel \(m.kernel), started \(Page.utc(m.startUnixNs)), "
                           + "\(String(format: "%.1f", report.durationSeconds)) s, \(report.records) records, "
                           + "\(report.hops.count) hops")
            + "</p>\n"
        var warnings: [String] = []
        if let why = trace.contents.cutShort { warnings.append("The recording was cut short (\(why)): this is what it holds.") }
        if report.lostEvents > 0 { warnings.append("\(report.lostEvents) records were lost (ring buffer full): latencies are from the rest.") }
        if report.counters.unseen > 0 { warnings.append("\(report.counters.unseen) packets had a hop that could not be measured.") }
        if report.counters.evicted > 0 { warnings.append("\(report.counters.evicted) packets stopped being followed (per-packet table full).") }
        out += warnings.map { "<p class=\"warning\">\(escapeMarkup($0))</p>\n" }.joined()
        return out + "</header>\n"
    }

    func breakdown(_ hops: [Hop]) -> String {
        guard !hops.isEmpty else { return Page.caption("No packets crossed a traced device.") }
        let widest = hops.map { h in Views.segmentOrder.reduce(UInt64(0)) { $0 + (h.report.segments[$1.name]?.p99Ns ?? 0) } }.max() ?? 0
        let scale = BreakdownChart.scale(maxStackNs: widest)
        var out = Page.caption("Each bar stacks every segment's own p50 (upper) or p99 (lower): the sum is not the hop's total "
                               + "percentile, since one packet is seldom slowest in every segment. One scale for all hops.")
        out += Page.segmentLegend
        for h in hops { out += BreakdownChart.svg(hop: h.label, title: h.title, segments: h.report.segments, scale: scale) }
        return out
    }

    func distributions(_ hops: [Hop]) -> String {
        let all = hops.flatMap { h in h.stats.segments + [h.stats.total] }
        let scale = DistributionChart.scale(covering: all)
        var out = Page.caption("Share of packets by latency, in bins of 1/\(DistributionChart.binsPerDecade) of a decade on one "
                               + "log scale for every chart; dashed marks at p50, p90, p99, p99.9 and max (hover for exact values). "
                               + "Segments a hop did not cross are left out.")
        for h in hops {
            out += "<h3>\(escapeMarkup(h.title))</h3>\n<div class=\"grid\">"
            for segment in Views.segmentOrder {
                guard let histogram = h.stats.segment(segment) else { continue }
                out += DistributionChart.svg(hop: h.label, segment: segment.name, series: [("", histogram, "one")], scale: scale)
            }
            if h.stats.total.count > 0 {
                out += DistributionChart.svg(hop: h.label, segment: "total", series: [("", h.stats.total, "one")], scale: scale)
            }
            out += "</div>\n"
        }
        return out
    }

    static func softirqTable(_ s: SoftirqReport) -> String {
        guard s.enabled else { return Page.caption("Softirqs were not traced (--softirq off).") }
        var rows: [[String]] = []
        func row(_ cpu: String, _ name: String, _ v: SoftirqReport.Vector) {
            rows.append([cpu, name, String(v.runs), String(format: "%.1f%%", v.runPercent)]
                        + [v.run.p50Ns, v.run.p99Ns, v.run.maxNs, v.raiseToRun.p50Ns, v.raiseToRun.p99Ns, v.raiseToRun.maxNs].map(formatNs)
                        + [String(format: "%.0f%%", v.ksoftirqdPercent), String(v.napiBudgetExhausted)])
        }
        for c in s.cpus {
            row(String(c.cpu), "NET_RX", c.netRX)
            row(String(c.cpu), "NET_TX", c.netTX)
        }
        for vec in SoftirqVector.allCases.reversed() { if let v = s.total[vec.key] { row("all", vec.name, v) } }
        return Page.table(["CPU", "vector", "runs", "busy", "run p50", "run p99", "run max", "wait p50", "wait p99", "wait max",
                           "ksoftirqd", "squeezed"], rows, numeric: Set(2...11))
            + Page.caption("busy: run time as % of the CPU's time; wait: raise to run; ksoftirqd: share of run time in "
                           + "ksoftirqd; squeezed: NAPI polls that used their whole budget.")
    }

    static func dropsTable(_ drops: [Report.DropReport]) -> String {
        guard !drops.isEmpty else { return Page.caption("The kernel dropped no traced packet.") }
        return Page.table(["from", "at", "reason", "packets"], drops.map { d in
            ["\(d.from.netnsName)/\(d.from.device)", "\(d.at.netnsName)/\(d.at.device)", d.reasonName, String(d.packets)]
        }, numeric: [3])
    }

    func flowsTable(_ report: Report) -> String {
        guard !report.flows.isEmpty else { return Page.caption("No flows.") }
        func workload(_ pod: Workload.Pod?, _ container: Workload.Container?) -> String? {
            Workload(pod: pod, container: container).label
        }
        let flows = report.flows.prefix(topFlows)
        let ends = flows.map { f in [workload(f.sourcePod, f.sourceContainer), workload(f.destinationPod, f.destinationContainer)] }
        // the from and to columns only when some flow's end is a known workload
        let named = ends.contains { $0.contains { $0 != nil } }
        let rows = zip(flows, ends).map { f, ends in
            [f.flow] + (named ? ends.map { $0 ?? "-" } : [])
                + [String(f.packets), String(f.bytes), String(f.dropped), formatNs(f.hop.p50Ns), formatNs(f.hop.p99Ns),
                   formatNs(f.hop.maxNs)]
        }
        var out = Page.caption("By p99 of hop latency, slowest first (flows with under \(Report.FlowReport.minRecordsForP99) "
                               + "hops measured last); \(rows.count) of \(report.flows.count) flows.")
        let first = named ? 3 : 1
        out += Page.table(["flow"] + (named ? ["from", "to"] : []) + ["packets", "bytes", "dropped", "p50", "p99", "max"], rows,
                          numeric: Set(first...first + 5))
        if report.foldedFlows > 0 { out += Page.caption("\(report.foldedFlows) idle flows were folded into one aggregate to bound memory.") }
        return out
    }

    func metadata(_ report: Report) -> String {
        let m = trace.contents.metadata, c = report.counters
        var rows: [[String]] = [
            ["file", source], ["file size", "\(trace.contents.fileBytes) bytes"], ["host", m.host], ["kernel", m.kernel],
            ["hoptrace", m.toolVersion], ["format version", String(m.formatVersion)], ["started", Page.utc(m.startUnixNs)],
            ["duration", String(format: "%.1f s", report.durationSeconds)], ["window", formatNs(m.windowNs)],
            ["sampling", m.sampling.every == 1 ? "every packet" : "1 packet in \(m.sampling.every)"],
            ["minimum latency", m.sampling.minLatencyNs == 0 ? "none" : formatNs(m.sampling.minLatencyNs)],
            ["softirq traced", m.softirq ? "yes" : "no"], ["devices", m.devices.joined(separator: ", ")],
            ["counters", "lost \(c.lost), sampled out \(c.sampledOut), below minimum \(c.belowMinimum), stale \(c.stale), "
             + "evicted \(c.evicted), expired \(c.expired), unseen \(c.unseen)"],
            ["cut short", trace.contents.cutShort ?? "no"],
        ]
        rows += m.settings.sorted { $0.key < $1.key }.map { ["setting: \($0.key)", $0.value] }
        let start = m.startMonotonicNs
        rows += trace.contents.statuses.compactMap { s in
            s.trigger.map { ["incident", "at \(String(format: "%.1f", s.monotonicNs > start ? Double(s.monotonicNs - start) / 1e9 : 0)) s: \($0)"] }
        }
        return Page.table(["", ""], rows)
    }
}
