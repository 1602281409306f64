import HoptraceCore

/// The two text formats: Prometheus text 0.0.4 and OpenMetrics 1.0. They differ
/// only in metadata lines, a counter family's name there, how a whole float is
/// written, HELP escaping and the final `# EOF`; everything else is this one writer.
struct TextEncoder {
    enum Dialect { case prometheus, openMetrics }

    let dialect: Dialect
    private(set) var bytes: [UInt8] = []
    /// The end of each classic bucket line before its count, `<le>"} `, one after
    /// the other (+Inf last); bucket `k`'s is `leEnds[leStarts[k] ..< leStarts[k + 1]]`.
    /// Formatted once per encoding, and flat, so writing a line copies bytes only.
    private let leEnds: [UInt8]
    private let leStarts: [Int]

    init(dialect: Dialect) {
        self.dialect = dialect
        var ends: [UInt8] = [], starts: [Int] = []
        for bound in ClassicBuckets.upperBoundsSeconds + [.infinity] {
            starts.append(ends.count)
            ends += Self.formatted(bound, dialect) + Array("\"} ".utf8)
        }
        starts.append(ends.count)
        leEnds = ends
        leStarts = starts
    }

    mutating func encode(_ families: [MetricFamily]) {
        // room for it all at once: the output of a large node is megabytes, which
        // growing by doubling would copy again and again
        var estimate = 64
        for family in families {
            let labels: Int = family.series.first?.labelValues.reduce(0) { $0 + $1.utf8.count + 12 } ?? 0
            let line: Int = family.name.utf8.count + 40 + labels
            let linesPerSeries = family.kind == .histogram ? 28 : 1
            estimate += 256 + family.series.count * linesPerSeries * line * 5 / 4
        }
        bytes.reserveCapacity(estimate)
        for family in families { write(family) }
        if dialect == .openMetrics { append("# EOF\n") }
    }

    private mutating func write(_ family: MetricFamily) {
        let type: String = switch family.kind {
        case .counter: "counter"
        case .gauge: "gauge"
        case .histogram: "histogram"
        }
        switch dialect {
        case .prometheus:
            // 0.0.4 has no family name apart from the samples': a counter's keeps `_total`
            append("# HELP \(family.sampleName) ")
            appendEscaped(family.help, escapingQuotes: false)
            append("\n# TYPE \(family.sampleName) \(type)\n")
        case .openMetrics:
            // OpenMetrics names the family without `_total`; its samples carry it
            append("# TYPE \(family.name) \(type)\n")
            if let unit = family.unit { append("# UNIT \(family.name) \(unit)\n") }
            append("# HELP \(family.name) ")
            appendEscaped(family.help, escapingQuotes: true)
            append("\n")
        }
        let name = Array(family.sampleName.utf8)
        for series in family.series {
            let labels = labelPairs(family.labelNames, series.labelValues)
            switch series.value {
            case .count(let n):
                appendSampleStart(name, suffix: "", labels: labels)
                appendUInt(n)
                bytes.append(Self.newline)
            case .real(let x):
                appendSampleStart(name, suffix: "", labels: labels)
                bytes.append(contentsOf: Self.formatted(x, dialect))
                bytes.append(Self.newline)
            case .latency(let histogram):
                let cumulative = ClassicBuckets.cumulativeCounts(of: histogram)
                // `name_bucket{labels,le="`, the same on each of the series' bucket lines
                var lineStart = name + Array("_bucket{".utf8)
                if !labels.isEmpty { lineStart += labels + [Self.comma] }
                lineStart += Array("le=\"".utf8)
                lineStart.withUnsafeBufferPointer { lineStart in
                    leEnds.withUnsafeBufferPointer { leEnds in
                        for (k, count) in cumulative.enumerated() {
                            bytes.append(contentsOf: lineStart)
                            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: leEnds[leStarts[k] ..< leStarts[k + 1]]))
                            appendUInt(count)
                            bytes.append(Self.newline)
                        }
                    }
                }
                appendSampleStart(name, suffix: "_sum", labels: labels)
                bytes.append(contentsOf: Self.formatted(Double(histogram.sum) / 1e9, dialect))
                bytes.append(Self.newline)
                appendSampleStart(name, suffix: "_count", labels: labels)
                appendUInt(histogram.count)
                bytes.append(Self.newline)
            }
        }
    }

    // MARK: pieces

    private static let newline = UInt8(ascii: "\n")
    private static let comma = UInt8(ascii: ",")

    /// `name="value",...` with values escaped, without braces: built once per series
    /// and repeated on each of a histogram's lines.
    private func labelPairs(_ names: [String], _ values: [String]) -> [UInt8] {
        var pairs: [UInt8] = []
        for (i, (name, value)) in zip(names, values).enumerated() {
            if i > 0 { pairs.append(Self.comma) }
            pairs.append(contentsOf: name.utf8)
            pairs.append(contentsOf: "=\"".utf8)
            Self.appendEscaped(value, escapingQuotes: true, to: &pairs)
            pairs.append(UInt8(ascii: "\""))
        }
        return pairs
    }

    /// `name{labels} ` or `name ` when there are none.
    private mutating func appendSampleStart(_ name: [UInt8], suffix: String, labels: [UInt8]) {
        append(name, suffix)
        if !labels.isEmpty {
            bytes.append(UInt8(ascii: "{"))
            bytes.append(contentsOf: labels)
            bytes.append(UInt8(ascii: "}"))
        }
        bytes.append(UInt8(ascii: " "))
    }

    private mutating func append(_ s: String) { bytes.append(contentsOf: s.utf8) }

    private mutating func append(_ name: [UInt8], _ suffix: String) {
        bytes.append(contentsOf: name)
        bytes.append(contentsOf: suffix.utf8)
    }

    private mutating func appendEscaped(_ s: String, escapingQuotes: Bool) {
        Self.appendEscaped(s, escapingQuotes: escapingQuotes, to: &bytes)
    }

    /// Backslash and newline always (label values and HELP of both formats); the
    /// double quote in label values, and in OpenMetrics' HELP too.
    static func appendEscaped(_ s: String, escapingQuotes: Bool, to bytes: inout [UInt8]) {
        let plain = !s.utf8.contains { $0 == UInt8(ascii: "\\") || $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\"") }
        if plain {  // the common case, copied whole
            bytes.append(contentsOf: s.utf8)
            return
        }
        for byte in s.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\\")])
            case UInt8(ascii: "\n"): bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "n")])
            case UInt8(ascii: "\"") where escapingQuotes: bytes.append(contentsOf: [UInt8(ascii: "\\"), UInt8(ascii: "\"")])
            default: bytes.append(byte)
            }
        }
    }

    /// Decimal digits, without going through String.
    private mutating func appendUInt(_ value: UInt64) {
        if value < 10 { // the common case: buckets below the first value are 0
            bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value))
            return
        }
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var v = value
            var first = digits.count
            while v > 0 {
                first -= 1
                digits[first] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[first...]))
        }
    }

    /// A float as both formats parse it, independent of any locale: Swift's shortest
    /// round-trip form (`0.5`, `2.384185791015625e-07`, `1e+16`), `+Inf`, `-Inf`, `NaN`.
    /// A whole number is `1` in text 0.0.4 (as Go's client writes it, so `le`
    /// values match other exporters') and `1.0` in OpenMetrics (its canonical form).
    static func formatted(_ x: Double, _ dialect: Dialect) -> [UInt8] {
        if x.isNaN { return Array("NaN".utf8) }
        if x.isInfinite { return Array((x > 0 ? "+Inf" : "-Inf").utf8) }
        var text = Array(x.description.utf8)
        if dialect == .prometheus && text.count > 2 && text.suffix(2).elementsEqual(".0".utf8) {
            text.removeLast(2)
        }
        return text
    }
}
