import Foundation
import HoptraceCore
import HoptraceRecording

/// What both HTML pages are made of: the document with its inline style, tables, the
/// segment legend, and the timeline section. Self-contained by rule (docs/html.md):
/// no script, no URL, no web font, so a page works offline and attached to a ticket.
enum Page {
    static func document(title: String, body: String) -> String {
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            + "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            + "<title>\(escapeMarkup(title))</title><style>\(style)</style></head>\n<body>\n\(body)</body></html>\n"
    }

    /// Sized for a 1280 px window (three distributions a row); black on white in print,
    /// and no chart or table cut by a page break.
    static let style = """
    body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px auto;max-width:1240px;padding:0 12px;\
    color:#111;background:#fff}
    h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;border-bottom:1px solid #ccc;margin:28px 0 8px}\
    h3{font-size:14px;margin:16px 0 4px;font-weight:600}
    p.caption,p.lead{color:#333;margin:4px 0 8px;max-width:1200px}p.warning{color:#a32;font-weight:600;margin:2px 0}
    div.grid{display:grid;grid-template-columns:repeat(3,400px);gap:6px 14px}
    svg.chart{display:block;background:#fff;margin:4px 0}
    .chart text{font-size:11px;fill:#222}.chart .chart-heading{font-size:12px;font-weight:600}
    .chart .axis-label{fill:#444}.chart .marks-legend{font-size:10px}
    .axis{stroke:#444}.gridline{stroke:#e6e6e6}.zero{stroke:#888;stroke-dasharray:2 2}
    .area{fill-opacity:.35;stroke-width:1.2}.mark{stroke-width:1.5;stroke-dasharray:3 2}
    .one{fill:#4e79a7;stroke:#4e79a7}.before{fill:#8a8a8a;stroke:#555}.after{fill:#e15759;stroke:#b8322f}
    .chart text.one,.chart text.before,.chart text.after{stroke:none}
    .seg-qdisc{fill:#4e79a7}.seg-veth{fill:#f28e2b}.seg-backlog{fill:#e15759}.seg-forward{fill:#76b7b2}\
    .seg-deliver{fill:#59a14f}
    .line{fill:none;stroke-width:1.5}.p50{stroke:#4e79a7}.p99{stroke:#d62728}
    .flag{fill:#ffcc33;fill-opacity:.55}.hover{fill:transparent}
    .bar.drops{fill:#b03a2e}.bar.softirq{fill:#7b5e99}
    .interval{stroke-width:3}.interval.clipped{stroke-width:1}.slower{fill:#c0392b;stroke:#c0392b}.faster{fill:#2e7d32;stroke:#2e7d32}\
    .unchanged,.other{fill:#777;stroke:#777}.chart text.verdict{font-weight:600;stroke:none}
    .chart text.slower{fill:#c0392b}.chart text.faster{fill:#2e7d32}.chart text.unchanged,.chart text.other{fill:#666}
    table{border-collapse:collapse;font-size:13px;margin:4px 0}th,td{padding:2px 10px;border-bottom:1px solid #e4e4e4;\
    text-align:left;vertical-align:top}th{font-weight:600;border-bottom:1px solid #999}\
    td.n{text-align:right;font-variant-numeric:tabular-nums}
    td.slower{color:#c0392b;font-weight:600}td.faster{color:#2e7d32;font-weight:600}
    span.key{display:inline-block;margin-right:14px}svg.swatch{display:inline-block;vertical-align:-1px;margin-right:4px}
    @media print{body{max-width:none;margin:0;color:#000;background:#fff}div.grid{grid-template-columns:repeat(2,400px)}\
    svg.chart,table,h3{break-inside:avoid;page-break-inside:avoid}h2,h3{break-after:avoid;page-break-after:avoid}\
    .hover{display:none}*{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
    """

    static func section(id: String, title: String, _ content: String) -> String {
        "<section id=\"\(id)\"><h2>\(escapeMarkup(title))</h2>\n\(content)</section>\n"
    }

    static func caption(_ text: String) -> String { "<p class=\"caption\">\(escapeMarkup(text))</p>\n" }

    /// A table of text cells (escaped here); columns in `numeric` align right.
    static func table(_ header: [String], _ rows: [[String]], numeric: Set<Int> = [], classes: [Int: (Int) -> String] = [:])
        -> String {
        var out = "<table><thead><tr>" + header.map { "<th>\(escapeMarkup($0))</th>" }.joined() + "</tr></thead><tbody>\n"
        for (r, row) in rows.enumerated() {
            out += "<tr>"
            for (i, cell) in row.enumerated() {
                var cls = numeric.contains(i) ? ["n"] : []
                if let extra = classes[i]?(r) { cls.append(extra) }
                out += cls.isEmpty ? "<td>" : "<td class=\"\(cls.joined(separator: " "))\">"
                out += escapeMarkup(cell) + "</td>"
            }
            out += "</tr>\n"
        }
        return out + "</tbody></table>\n"
    }

    /// Swatches naming the colours of the segments, in `Views.segmentOrder`.
    static var segmentLegend: String {
        "<p class=\"caption\">" + Views.segmentOrder.map { s in
            "<span class=\"key\"><svg class=\"swatch\" width=\"12\" height=\"12\"><rect class=\"seg-\(s.name)\" width=\"12\""
                + " height=\"12\"/></svg>\(s.name)</span>"
        }.joined() + "</p>\n"
    }

    /// What a hop is called on the pages, in every heading of it: `label` (its
    /// devices), then the workloads at either end where one is known ("-" the other).
    static func hopTitle(_ label: String, _ key: HopKey, names: NameTable) -> String {
        let workloads = [key.from, key.to].map { names.workloads[$0.netns]?.label ?? "-" }
        return workloads.allSatisfy { $0 == "-" } ? label : "\(label)  (\(workloads.joined(separator: " -> ")))"
    }

    /// The timeline of one recording: per hop, p50 and p99 by column with flagged
    /// windows shaded; beneath, drops and the busiest CPU's softirq time by column.
    /// `run` names the recording on a comparison page ("before", "after"), which has
    /// two timelines of at most `maxColumns` columns each.
    static func timelines(_ trace: RecordedTrace, run: String?, maxColumns: Int = TimelineColumns.maxColumns) -> String {
        let w = trace.windows, timeline = trace.timeline, names = trace.names
        let columns = TimelineColumns(windows: w.lastWindow + 1, maxColumns: maxColumns)
        var out = caption(timelineCaption(columns, maxColumns: maxColumns, windowNs: w.windowNs, flags: timeline.flagged.count))
        let flagsByHop = Dictionary(grouping: timeline.flagged, by: \.hop)
        for (index, key) in w.hopKeys.enumerated().sorted(by: { $0.element < $1.element }) {
            let label = names.label(key)
            let title = hopTitle(label, key, names: names)
            let points = ColumnPoint.points(w, hop: index, columns: columns)
            if points.isEmpty { continue }
            // a column's first flag in full, and how many more it holds: the titles of
            // a recording flagged all along stay a line a column
            let byColumn = Dictionary(grouping: flagsByHop[label] ?? [], by: { columns.column(of: $0.window) })
            let flags = byColumn.mapValues { f in flagText(f[0]) + (f.count > 1 ? " (and \(f.count - 1) more flagged windows)" : "") }
            out += TimelineChart.svg(hop: label, title: title, run: run, points: points, flags: flags, columns: columns, windowNs: w.windowNs)
        }
        let drops = (0..<columns.count).map { c in
            columns.windows(of: c).reduce(UInt64(0)) { $0 + ($1 < w.drops.count ? w.drops[$1] : 0) }
        }
        out += NodeStripChart.svg(kind: "drops", heading: "packets dropped", yLabel: "packets", values: drops.map { Double($0) },
                                  titles: drops.map { "\($0) packets dropped" }, columns: columns, windowNs: w.windowNs, run: run)
        let busy = (0..<columns.count).map { c -> [Double] in
            let span = columns.windows(of: c)
            return Timeline.softirqBusy(fromNs: w.startNs + UInt64(span.lowerBound) * w.windowNs,
                                        toNs: w.startNs + UInt64(span.upperBound) * w.windowNs, statuses: trace.contents.statuses)
        }
        if busy.contains(where: { !$0.isEmpty }) {
            out += NodeStripChart.svg(kind: "softirq", heading: "network softirq time of the busiest CPU",
                                      yLabel: "busy (%)", values: busy.map { $0.max() ?? 0 },
                                      titles: busy.map { b in b.enumerated().map { "CPU\($0) \($1)%" }.joined(separator: " ") },
                                      columns: columns, windowNs: w.windowNs, run: run)
        } else {
            out += caption("No softirq time by window: the recording has fewer than two status snapshots.")
        }
        return out
    }

    static func timelineCaption(_ columns: TimelineColumns, maxColumns: Int, windowNs: UInt64, flags: Int) -> String {
        var text = "\(columns.windows) windows of \(formatNs(windowNs)); lines: each column's p50 (blue) and p99 (red) "
            + "of the hop's total latency; shaded: columns holding a window whose p99 jumped to \(Int(Timeline.factor))x "
            + "the hop's baseline (\(flags) flagged). Hover a column for its exact values."
        if columns.windowsPerColumn > 1 {
            text += " Each column merges \(columns.windowsPerColumn) consecutive windows (their histograms merged, so its "
                + "p99 is exact for its span) to keep at most \(maxColumns) columns."
        }
        return text
    }

    /// What a flag found, as the text timeline says it (the slowest of its flows only).
    static func flagText(_ f: Timeline.Flag) -> String {
        var s = "FLAG window \(f.window): p99 \(exactNs(f.p99Ns)) vs baseline \(formatNs(f.baselineP99Ns)); drops \(f.drops)"
        if !f.softirqBusyPercent.isEmpty {
            s += "; softirq busy " + f.softirqBusyPercent.enumerated().map { "CPU\($0) \($1)%" }.joined(separator: " ")
        }
        if let slowest = f.slowFlows.first { s += "; slowest flow: " + slowest }
        return s
    }

    /// "2025-01-31 12:00:00 UTC" from Unix nanoseconds, the same on every machine.
    static func utc(_ unixNs: UInt64) -> String {
        var t = time_t(unixNs / 1_000_000_000)
        var parts = tm()
        gmtime_r(&t, &parts)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d UTC", parts.tm_year + 1900, parts.tm_mon + 1, parts.tm_mday,
                      parts.tm_hour, parts.tm_min, parts.tm_sec)
    }
}
