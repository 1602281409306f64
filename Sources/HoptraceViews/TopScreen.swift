import Foundation
import HoptraceCore

/// The screen of `hoptrace top`: the latest interval, each hop's p99 over the last
/// minute (the sparkline), the sort, the filter and pause. Pure: the command feeds
/// it intervals and keys and draws the lines it returns, so all of it is tested
/// without a terminal.
public struct TopScreen: Sendable {
    /// The columns `s` cycles through, each sorted slowest (or busiest) first.
    public enum SortColumn: String, CaseIterable, Sendable {
        case p99, p50, max, packets = "pkt/s", drops = "drops/s", hop
    }

    /// A key as the terminal gave it.
    public enum Key: Equatable, Sendable {
        case character(Character), enter, escape, backspace
    }

    /// What the command does after a key.
    public enum Action: Equatable, Sendable {
        case none, redraw, quit
    }

    /// A line to draw and how to show it (the command maps styles to the terminal's).
    public struct Line: Equatable, Sendable {
        public enum Style: Sendable { case title, header, plain, warning }
        public var text: String
        public var style: Style
    }

    public private(set) var latest: LiveInterval?
    public private(set) var sort: SortColumn = .p99
    /// Hops shown are those whose name contains this (case-insensitive); empty: all.
    public private(set) var filter = ""
    /// The filter being typed after `/`; nil when not typing.
    public private(set) var filterDraft: String?
    public private(set) var paused = false
    /// Each hop's p99 per interval, oldest first, the same length for every hop
    /// (nil: no packet in that interval).
    public private(set) var history: [String: [UInt64?]] = [:]
    /// Intervals the sparkline covers: 60 s worth.
    public let historyLength: Int

    public init(intervalSeconds: Double, historySeconds: Double = 60) {
        historyLength = max(1, Int((historySeconds / max(intervalSeconds, 0.001)).rounded()))
    }

    /// Takes the interval just closed (ignored while paused: the screen stays as it was).
    public mutating func show(_ interval: LiveInterval) {
        guard !paused else { return }
        latest = interval
        let p99 = Dictionary(interval.hops.map { ($0.hop, $0.records > 0 ? $0.p99Ns : nil) }, uniquingKeysWith: { a, _ in a })
        let length = history.values.first?.count ?? 0
        for hop in p99.keys where history[hop] == nil { history[hop] = Array(repeating: nil, count: length) }
        for hop in Array(history.keys) {
            var h = history[hop]!
            h.append(p99[hop] ?? nil)
            if h.count > historyLength { h.removeFirst(h.count - historyLength) }
            // a hop silent for the whole minute leaves the screen
            if h.allSatisfy({ $0 == nil }) { history[hop] = nil } else { history[hop] = h }
        }
    }

    /// Handles one key; while a filter is typed, keys are its text.
    public mutating func press(_ key: Key) -> Action {
        if let draft = filterDraft {
            switch key {
            case .enter: filter = draft; filterDraft = nil
            case .escape: filterDraft = nil
            case .backspace: filterDraft = String(draft.dropLast())
            case .character(let c): filterDraft = draft + String(c)
            }
            return .redraw
        }
        switch key {
        case .character("q"), .character("Q"): return .quit
        case .character("s"):
            let all = SortColumn.allCases
            sort = all[(all.firstIndex(of: sort)! + 1) % all.count]
        case .character("/"): filterDraft = filter
        case .character(" "): paused.toggle()
        case .character("r"): history = [:]
        case .escape: filter = ""
        default: return .none
        }
        return .redraw
    }

    /// The hops of the latest interval that pass the filter, in the sort's order.
    public var rows: [LiveInterval.Hop] {
        let needle = filter.lowercased()
        let hops = (latest?.hops ?? []).filter { needle.isEmpty || $0.hop.lowercased().contains(needle) }
        func ordered(_ a: LiveInterval.Hop, _ b: LiveInterval.Hop) -> Bool {
            switch sort {
            case .p99: (b.p99Ns, a.hop) < (a.p99Ns, b.hop)
            case .p50: (b.p50Ns, a.hop) < (a.p50Ns, b.hop)
            case .max: (b.maxNs, a.hop) < (a.maxNs, b.hop)
            case .packets: (b.packetsPerSecond, a.hop) < (a.packetsPerSecond, b.hop)
            case .drops: (b.dropsPerSecond, a.hop) < (a.dropsPerSecond, b.hop)
            case .hop: a.hop < b.hop
            }
        }
        return hops.sorted(by: ordered)
    }

    static let levels: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// The last `width` values as a sparkline, log scale from the row's own lowest
    /// to highest (at least a factor of two, so jitter stays low); blank where the
    /// hop had no packet.
    public static func sparkline(_ values: [UInt64?], width: Int) -> String {
        let shown = values.suffix(width)
        let present = shown.compactMap { $0 }.filter { $0 > 0 }
        guard let high = present.max(), let low = present.min() else {
            return String(repeating: " ", count: max(0, width - shown.count)) + String(repeating: " ", count: shown.count)
        }
        let top = log(Double(high)), bottom = min(log(Double(low)), top - log(2.0))
        let marks = shown.map { v -> Character in
            guard let v, v > 0 else { return " " }
            let level = Int(((log(Double(v)) - bottom) / (top - bottom) * Double(levels.count - 1)).rounded())
            return levels[min(levels.count - 1, max(0, level))]
        }
        return String(repeating: " ", count: max(0, width - shown.count)) + String(marks)
    }

    /// The screen as `height` lines of at most `width` characters. `context` says
    /// what is traced (devices); `clock` the time of the interval shown.
    public func lines(width: Int, height: Int, context: String, clock: String) -> [Line] {
        let width = max(width, 40), height = max(height, 6)
        var out: [Line] = []
        func add(_ text: String, _ style: Line.Style = .plain) { out.append(Line(text: fit(text, width), style: style)) }

        let rows = rows
        let all = latest?.hops.count ?? 0
        var title = "hoptrace top  \(clock)  \(context)  \(all) hops"
        if !filter.isEmpty { title += " (\(rows.count) match '\(filter)')" }
        title += "  sort: \(sort.rawValue)"
        if paused { title += "  PAUSED" }
        add(title, .title)

        // columns: hop | pkt/s p50 p99 max | sparkline | drops/s top drop reason
        // the hop's name first (up to its longest), then the sparkline (up to a minute)
        let numbers = 4 * 9, drops = 9, reason = 18
        let room = width - numbers - drops - reason - 4
        let longest = rows.lazy.map(\.hop.count).max() ?? 0
        let hopWidth = max(12, min(max(longest + 1, 24), room - 10))
        let spark = max(1, min(historyLength, room - hopWidth))
        add(pad("HOP", hopWidth) + ["PKT/S", "P50", "P99", "MAX"].map { lpad($0, 9) }.joined() + "  "
            + pad("P99 LAST \(Int((Double(historyLength) * (latest?.seconds ?? 1)).rounded()))S", spark)
            + lpad("DROPS/S", drops) + "  " + "TOP DROP", .header)

        let cpus = latest?.softirq ?? []
        let footerLines = 1
        let softirqWanted = cpus.isEmpty ? 1 : 1 + cpus.count
        let roomBelowTitle = height - out.count - footerLines
        // the hops come first: softirq lines get what is left, at least a header and one CPU
        let softirqLines = min(softirqWanted, max(cpus.isEmpty ? 1 : 2, roomBelowTitle - max(rows.count, 1) - 1))
        let hopLines = max(1, roomBelowTitle - softirqLines - 1)

        if latest == nil {
            add("  waiting for the first interval...")
        } else if rows.isEmpty {
            add(all == 0 ? "  no packet crossed a traced device in the last interval"
                         : "  no hop matches '\(filter)' (Esc clears the filter)")
        }
        let fits = rows.count <= hopLines ? rows.count : hopLines - 1
        for h in rows.prefix(fits) {
            let line = pad(middleTruncated(h.hop, hopWidth - 1), hopWidth)
                + [Self.rate(h.packetsPerSecond), formatNs(h.p50Ns), formatNs(h.p99Ns), formatNs(h.maxNs)]
                    .map { lpad($0, 9) }.joined() + "  "
                + Self.sparkline(history[h.hop] ?? [], width: spark)
                + lpad(h.dropsPerSecond > 0 ? Self.rate(h.dropsPerSecond) : "0", drops) + "  " + (h.topDropReason ?? "")
            add(line, h.dropsPerSecond > 0 ? .warning : .plain)
        }
        if fits < rows.count { add("  ... \(rows.count - fits) more hops: / filters, s sorts") }
        while out.count < height - footerLines - softirqLines { add("") }

        if cpus.isEmpty {
            add("SOFTIRQ not traced (--softirq off)", .header)
        } else {
            add(pad("SOFTIRQ CPU", 14) + lpad("BUSY", 8) + lpad("RAISE->RUN P99", 16) + lpad("KSOFTIRQD", 11), .header)
            // the busiest CPUs when not all fit
            let shown = cpus.count <= softirqLines - 1 ? cpus
                : Array(cpus.sorted { ($1.busyPercent, $0.cpu) < ($0.busyPercent, $1.cpu) }.prefix(max(0, softirqLines - 2)))
            for c in shown {
                add(pad("        \(c.cpu)", 14) + lpad(String(format1(c.busyPercent)) + "%", 8)
                    + lpad(c.raiseToRunP99Ns > 0 ? formatNs(c.raiseToRunP99Ns) : "-", 16)
                    + lpad(format1(c.ksoftirqdPercent) + "%", 11))
            }
            if shown.count < cpus.count { add("        (\(cpus.count - shown.count) more CPUs, less busy)") }
        }
        while out.count < height - footerLines { add("") }
        out = Array(out.prefix(height - footerLines))

        if let draft = filterDraft {
            add("filter: \(draft)_   (Enter applies, Esc cancels)", .title)
        } else {
            var cost = "cost"
            if let c = latest?.cost {
                cost += ": consumer \(format1(c.consumerPercent))%"
                cost += c.bpfPercent.map { ", BPF \(format1($0))%" } ?? ", BPF not measured (--bpf-stats)"
                if let v = c.viewPercent { cost += ", view \(format1(v))%" }
                cost += " of a CPU"
            }
            // the keys first: a narrow terminal cuts the end
            add("q quit  s sort  / filter  space pause  r reset   " + cost, .title)
        }
        return out
    }

    /// Packets per second as people read them: 850, 12.3k, 1.25M.
    public static func rate(_ v: Double) -> String {
        if v < 10 { return format1(v) }
        if v < 1_000 { return String(Int(v.rounded())) }
        if v < 1_000_000 { return format1(v / 1e3) + "k" }
        return format1(v / 1e6) + "M"
    }
}

/// One decimal.
private func format1(_ v: Double) -> String { String(format: "%.1f", v) }

private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? String(s.prefix(n)) : s + String(repeating: " ", count: n - s.count) }
private func lpad(_ s: String, _ n: Int) -> String { s.count >= n ? s : String(repeating: " ", count: n - s.count) + s }
private func fit(_ s: String, _ n: Int) -> String { s.count > n ? String(s.prefix(n)) : s }

/// `s` in at most `n` characters, its middle elided: both ends of a hop name matter.
private func middleTruncated(_ s: String, _ n: Int) -> String {
    guard s.count > n, n > 3 else { return s }
    let keep = n - 1, head = keep / 2
    return String(s.prefix(head)) + "…" + String(s.suffix(keep - head))
}
