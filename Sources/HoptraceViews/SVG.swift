import Foundation
import HoptraceCore

/// Text made safe for HTML and SVG, in content and in quoted attribute values:
/// names on the pages come from the node (pod and device names), never trusted.
public func escapeMarkup(_ text: String) -> String {
    var out = ""
    out.reserveCapacity(text.utf8.count)
    for c in text.unicodeScalars {
        switch c {
        case "&": out += "&amp;"
        case "<": out += "&lt;"
        case ">": out += "&gt;"
        case "\"": out += "&quot;"
        case "'": out += "&#39;"
        default: out.unicodeScalars.append(c)
        }
    }
    return out
}

/// A coordinate as the pages write it: one decimal, without a trailing ".0", so the
/// same input gives the same bytes and a 1-hour page stays small.
func coordinate(_ v: Double) -> String {
    let tenths = (v * 10).rounded()
    if tenths.truncatingRemainder(dividingBy: 10) == 0 { return String(Int(tenths / 10)) }
    return String(format: "%.1f", tenths / 10)
}

/// `formatNs` for an axis tick: "1us" rather than "1.00us" (ticks are round values).
func tickLabel(_ ns: Double) -> String {
    let text = formatNs(UInt64(ns.rounded()))
    guard let unit = text.firstIndex(where: { $0.isLetter }) else { return text }
    var number = String(text[..<unit])
    if number.contains(".") {
        while number.hasSuffix("0") { number.removeLast() }
        if number.hasSuffix(".") { number.removeLast() }
    }
    return number + text[unit...]
}

/// The exact value for a hover title: people's form, then nanoseconds.
func exactNs(_ ns: UInt64) -> String { "\(formatNs(ns)) (\(ns) ns)" }

/// Maps values to pixels along one axis, with the ticks to label it.
protocol Scale {
    /// The pixel of `value`; values outside the domain are clamped to its ends.
    func position(_ value: Double) -> Double
    /// Pixels of the domain's low and high ends (`to` < `from` for a y axis, drawn upwards).
    var from: Double { get }
    var to: Double { get }
    var ticks: [(value: Double, label: String)] { get }
}

/// A logarithmic latency axis whose ends are powers of ten of nanoseconds, ticked at
/// each power: latencies span decades (a 500 ns veth crossing beside a 20 ms shaper).
public struct LogScale: Scale {
    /// The domain, nanoseconds, both powers of ten.
    public let low: Double
    public let high: Double
    public let from: Double
    public let to: Double

    public init(low: Double, high: Double, from: Double, to: Double) {
        self.low = low
        self.high = max(high, low * 10)
        self.from = from
        self.to = to
    }

    /// The smallest range of whole decades holding `minNs...maxNs` (values below 1 ns count as 1 ns).
    public static func decades(covering minNs: UInt64, _ maxNs: UInt64, from: Double, to: Double) -> LogScale {
        let lo = pow(10, floor(log10(Double(max(minNs, 1)))))
        let hi = pow(10, ceil(log10(Double(max(maxNs, 1)) * 1.0001)))
        return LogScale(low: lo, high: hi, from: from, to: to)
    }

    public func position(_ value: Double) -> Double {
        let v = min(max(value, low), high)
        return from + (to - from) * log10(v / low) / log10(high / low)
    }

    var ticks: [(value: Double, label: String)] {
        var out: [(Double, String)] = []
        var v = low
        while v <= high * 1.0001 {
            out.append((v, tickLabel(v)))
            v *= 10
        }
        return out
    }
}

/// A linear axis from `low` to a round `high`, ticked at 1, 2 or 5 times a power of ten.
public struct LinearScale: Scale {
    public let low: Double
    public let high: Double
    public let step: Double
    public let from: Double
    public let to: Double
    let label: (Double) -> String

    /// `high` is raised to a multiple of a round step, about `tickCount` steps above
    /// `low`, unless `roundHigh` is false: then the axis ends at `high` and its last
    /// tick is the last multiple of the step before it (a time axis ends with its data).
    public init(low: Double = 0, high: Double, from: Double, to: Double, tickCount: Int = 5, roundHigh: Bool = true,
                label: @escaping (Double) -> String = LinearScale.plain) {
        let span = max(high - low, 1e-9)
        let step = Self.roundUp(span / Double(max(tickCount, 1)))
        self.low = low
        self.high = roundHigh ? low + (span / step).rounded(.up) * step : low + span
        self.step = step
        self.from = from
        self.to = to
        self.label = label
    }

    /// The smallest of 1, 2 or 5 times a power of ten that is at least `value` (> 0).
    public static func roundUp(_ value: Double) -> Double {
        let power = pow(10, floor(log10(value)))
        return [1.0, 2, 5, 10].map { $0 * power }.first { $0 >= value } ?? 10 * power
    }

    /// A tick's number as people write it: no decimals for whole numbers.
    public static func plain(_ v: Double) -> String {
        v.rounded() == v ? String(Int(v)) : String(format: "%g", v)
    }

    public func position(_ value: Double) -> Double {
        let v = min(max(value, low), high)
        return from + (to - from) * (v - low) / (high - low)
    }

    var ticks: [(value: Double, label: String)] {
        // the last step at or under `high` (a rounding's width over it counts as on it)
        let n = Int(((high - low) / step + 1e-9).rounded(.down))
        return (0...n).map { i in
            let v = low + Double(i) * step
            return (v, label(v))
        }
    }
}

/// One `<svg class="chart ...">`: elements in drawing order, each optionally with a
/// `<title>` that browsers show on hover (exact values, no script).
struct SVGChart {
    private var body = ""
    private let head: String

    /// `kind` adds to the class ("chart distribution"); `data` become `data-*` attributes
    /// (hop, segment) so tests and people can find a chart; `title` is its accessible name.
    init(kind: String, width: Int, height: Int, title: String, data: KeyValuePairs<String, String> = [:]) {
        var h = "<svg class=\"chart \(kind)\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\""
        for (k, v) in data { h += " data-\(k)=\"\(escapeMarkup(v))\"" }
        h += " role=\"img\"><title>\(escapeMarkup(title))</title>"
        head = h
    }

    private static func titled(_ open: String, _ title: String?) -> String {
        guard let title else { return open + "/>" }
        return open + "><title>\(escapeMarkup(title))</title></" + open.dropFirst().prefix { $0 != " " } + ">"
    }

    /// Elements until `endGroup()` share `cls` (one class for hundreds of columns).
    mutating func group(_ cls: String) { body += "<g class=\"\(cls)\">" }
    mutating func endGroup() { body += "</g>" }

    /// A rectangle; `cls` nil when its group gives the class.
    mutating func rect(x: Double, y: Double, width: Double, height: Double, cls: String?, title: String? = nil) {
        body += Self.titled("<rect" + (cls.map { " class=\"\($0)\"" } ?? "") + " x=\"\(coordinate(x))\" y=\"\(coordinate(y))\" width=\"\(coordinate(width))\""
                            + " height=\"\(coordinate(height))\"", title)
    }

    mutating func line(x1: Double, y1: Double, x2: Double, y2: Double, cls: String, title: String? = nil) {
        body += Self.titled("<line class=\"\(cls)\" x1=\"\(coordinate(x1))\" y1=\"\(coordinate(y1))\" x2=\"\(coordinate(x2))\""
                            + " y2=\"\(coordinate(y2))\"", title)
    }

    /// A path through `points` (a polyline; `closed` fills it as an area).
    mutating func path(_ points: [(x: Double, y: Double)], cls: String, closed: Bool = false, title: String? = nil) {
        guard let first = points.first else { return }
        var d = "M\(coordinate(first.x)) \(coordinate(first.y))"
        for p in points.dropFirst() { d += "L\(coordinate(p.x)) \(coordinate(p.y))" }
        if closed { d += "Z" }
        body += Self.titled("<path class=\"\(cls)\" d=\"\(d)\"", title)
    }

    mutating func text(_ s: String, x: Double, y: Double, cls: String = "label", anchor: String = "start",
                       rotate: Bool = false) {
        let turn = rotate ? " transform=\"rotate(-90 \(coordinate(x)) \(coordinate(y)))\"" : ""
        body += "<text class=\"\(cls)\" x=\"\(coordinate(x))\" y=\"\(coordinate(y))\" text-anchor=\"\(anchor)\"\(turn)>"
            + escapeMarkup(s) + "</text>"
    }

    /// A horizontal axis at `y`: its line, ticks labelled below, and `label` under them.
    mutating func bottomAxis(_ s: some Scale, y: Double, label: String) {
        line(x1: s.from, y1: y, x2: s.to, y2: y, cls: "axis")
        for t in s.ticks {
            let x = s.position(t.value)
            line(x1: x, y1: y, x2: x, y2: y + 4, cls: "axis")
            text(t.label, x: x, y: y + 15, cls: "tick", anchor: "middle")
        }
        text(label, x: (s.from + s.to) / 2, y: y + 30, cls: "axis-label", anchor: "middle")
    }

    /// A vertical axis at `x`: its line, ticks labelled left of it, `label` turned upright.
    mutating func leftAxis(_ s: some Scale, x: Double, label: String) {
        line(x1: x, y1: s.from, x2: x, y2: s.to, cls: "axis")
        for t in s.ticks {
            let y = s.position(t.value)
            line(x1: x - 4, y1: y, x2: x, y2: y, cls: "axis")
            text(t.label, x: x - 6, y: y + 4, cls: "tick", anchor: "end")
        }
        text(label, x: x - 44, y: (s.from + s.to) / 2, cls: "axis-label", anchor: "middle", rotate: true)
    }

    /// Light horizontal lines at the ticks of `s`, from `x1` to `x2`, behind the data.
    mutating func grid(_ s: some Scale, x1: Double, x2: Double) {
        for t in s.ticks { line(x1: x1, y1: s.position(t.value), x2: x2, y2: s.position(t.value), cls: "gridline") }
    }

    var svg: String { head + body + "</svg>" }
}
