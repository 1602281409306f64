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

    /// The interval shown: the latest, or the one shown when paused.
    public var latest: LiveInterval? {
        if let frozen { return frozen.latest }
        return received
    }
    /// The latest interval taken (paused or not).
    private var received: LiveInterval?
    /// While paused: what the screen showed when it was paused.
    private var frozen: (latest: LiveInterval?, history: [String: [UInt64?]])?
    public private(set) var sort: SortColumn = .p99
    /// Hops shown are those whose name contains this (case-insensitive); empty: all.
    public private(set) var filter = ""
    /// The filter being typed after `/`; nil when not typing.
    public private(set) var filterDraft: String?
    public var paused: Bool { frozen != nil }
    /// Each hop's p99 per interval, oldest first, the same length for every hop
    /// (nil: no packet in that interval). Kept while paused, so the minute after a
    /// pause is a minute.
    public private(set) var history: [String: [UInt64?]] = [:]
    /// The history shown (frozen with the screen while paused).
    var shownHistory: [String: [UInt64?]] { frozen?.history ?? history }
    /// Intervals the sparkline covers: 60 s worth.
    public let historyLength: Int

    public init(intervalSeconds: Double, historySeconds: Double = 60) {
        historyLength = max(1, Int((historySeconds / max(intervalSeconds, 0.001)).rounded()))
    }

    /// Takes the interval just closed (while paused it is kept, not shown).
    public mutating func show(_ interval: LiveInterval) {
        received = interval
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
        case .character(" "): frozen = paused ? nil : (received, history)
        case .character("r"):
            history = [:]
            frozen?.history = [:]
        case .escape: filter = ""
        default: return .none
        }
        return .redraw
    }

    /// The hops shown: those of the interval, and those silent in it that had packets
    /// in the last minute (no figures: `records` 0), so an intermittent hop stays put.
    var allRows: [LiveInterval.Hop] {
        let active = latest?.hops ?? []
        let seen = Set(active.map(\.hop))
        let idle = shownHistory.keys.filter { !seen.contains($0) }.map { name in
            LiveInterval.Hop(hop: name, from: "", to: "", packetsPerSecond: 0, records: 0, p50Ns: 0, p99Ns: 0, maxNs: 0,
                             dropsPerSecond: 0, topDropReason: nil)
        }
        return active + idle
    }

    /// The hops that pass the filter, in the sort's order (silent ones last but by name).
    public var rows: [LiveInterval.Hop] { rows(of: allRows) }

    func rows(of all: [LiveInterval.Hop]) -> [LiveInterval.Hop] {
        let needle = filter.lowercased()
        let hops = needle.isEmpty ? all : all.filter { $0.hop.lowercased().contains(needle) }
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

    /// Widths of a row's columns for a terminal `width` wide.
    struct Layout {
        /// Each figure: "999.9us" or "12.3k" with a space before.
        static let number = 8
        var hop: Int
        var spark: Int
        var reason: Int

        init(width: Int, longestHop: Int, historyLength: Int) {
            let figures = 5 * Self.number
            // the name whole (at least 16 wide) while a sparkline of 8 still fits; else
            // what is left, cut in the middle
            hop = max(8, min(max(longestHop + 1, 16), width - figures - 2 - 8))
            var left = width - hop - figures
            reason = 0
            // the reason once the sparkline has half a minute (it is in --json anyway)
            if left >= 2 + 30 + 2 + 18 {
                reason = 18
                left -= 2 + reason
            }
            spark = left >= 2 + 8 ? min(historyLength, left - 2) : 0
        }
    }

    /// The screen as `height` lines of at most `width` characters. `context` says
    /// what is traced (devices); `clock` the time of the interval shown. Laid out for
    /// at least 40x6; a smaller terminal gets its top-left corner of that.
    public func lines(width: Int, height: Int, context: String, clock: String) -> [Line] {
        let screen = (width: max(width, 1), height: max(height, 1))
        let width = max(width, 40), height = max(height, 6)
        var out: [Line] = []
        func add(_ text: String, _ style: Line.Style = .plain) { out.append(Line(text: fit(text, screen.width), style: style)) }

        let everyRow = allRows
        let rows = rows(of: everyRow)
        let all = everyRow.count
        var title = "hoptrace top  \(clock)  \(context)  \(all) hops"
        if !filter.isEmpty { title += " (\(rows.count) match '\(filter)')" }
        // what the rates are of: estimates from 1 packet in N, or only the slow hops
        if let sampling = latest?.sampling {
            if sampling.every > 1 { title += "  1 in \(sampling.every) sampled (rates x\(sampling.every))" }
            if sampling.minLatencyNs > 0 { title += "  hops >= \(formatNs(sampling.minLatencyNs)) only" }
        }
        title += "  sort: \(sort.rawValue)"
        if paused { title += "  PAUSED" }
        add(title, .title)

        // columns: hop | pkt/s p50 p99 max drops/s | sparkline | top drop reason. The
        // hop's name and the figures always; then the sparkline (up to a minute), then
        // the reason, each only with room to be read
        let layout = Layout(width: width, longestHop: rows.lazy.map(\.hop.count).max() ?? 0, historyLength: historyLength)
        let seconds = Int((Double(historyLength) * (latest?.seconds ?? 1)).rounded())
        add(pad("HOP", layout.hop) + ["PKT/S", "P50", "P99", "MAX", "DROPS/S"].map { lpad($0, Layout.number) }.joined()
            + (layout.spark > 0 ? "  " + pad(layout.spark >= 12 ? "P99 LAST \(seconds)S" : "P99 \(seconds)S", layout.spark) : "")
            + (layout.reason > 0 ? "  TOP DROP" : ""), .header)

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
            // a hop silent in the interval: no figures, its sparkline still
            let figures = h.records == 0 && h.dropsPerSecond == 0 ? ["-", "-", "-", "-", "-"]
                : [Self.rate(h.packetsPerSecond)] + (h.records == 0 ? ["-", "-", "-"] : [h.p50Ns, h.p99Ns, h.maxNs].map(formatNs))
                    + [h.dropsPerSecond > 0 ? Self.rate(h.dropsPerSecond) : "0"]
            let line = pad(middleTruncated(h.hop, layout.hop - 1), layout.hop) + figures.map { lpad($0, Layout.number) }.joined()
                + (layout.spark > 0 ? "  " + Self.sparkline(shownHistory[h.hop] ?? [], width: layout.spark) : "")
                + (layout.reason > 0 ? "  " + (h.topDropReason ?? "") : "")
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
        return Array(out.prefix(screen.height))
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
/// `s` in at most `n` characters, control characters shown as "?": names come from
/// the node (an interface may be named with an escape sequence), never sent raw.
private func fit(_ s: String, _ n: Int) -> String {
    func isControl(_ c: Unicode.Scalar) -> Bool { c.value < 0x20 || (0x7f...0x9f).contains(c.value) }
    // a scan without copying first: lines without control characters are nearly all
    var safe = s
    if s.unicodeScalars.contains(where: isControl) {
        safe = String(String.UnicodeScalarView(s.unicodeScalars.map { isControl($0) ? "?" : $0 }))
    }
    return safe.count > n ? String(safe.prefix(n)) : safe
}

/// `s` in at most `n` characters, its middle elided: both ends of a hop name matter.
private func middleTruncated(_ s: String, _ n: Int) -> String {
    guard s.count > n, n > 3 else { return s }
    let keep = n - 1, head = keep / 2
    return String(s.prefix(head)) + "…" + String(s.suffix(keep - head))
}
