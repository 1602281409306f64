import HoptraceCore

/// The smallest protobuf writer the exposition needs: varints, zigzag, doubles and
/// length-delimited fields. A nested message is written in place, after a byte kept
/// for its length (see `lengthPrefixed`), so no message is built in a buffer of its own.
struct ProtobufWriter {
    private(set) var bytes: [UInt8] = []

    enum WireType: UInt64 {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
    }

    mutating func reserveCapacity(_ n: Int) { bytes.reserveCapacity(n) }

    @inline(__always)
    mutating func varint(_ value: UInt64) { bytes.appendVarint(value) }

    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inline(__always)
    mutating func tag(_ field: Int, _ wireType: WireType) {
        varint(UInt64(field) << 3 | wireType.rawValue)
    }

    @inline(__always)
    mutating func uint64Field(_ field: Int, _ value: UInt64) {
        tag(field, .varint)
        varint(value)
    }

    /// sint32 and sint64 alike: zigzag, then varint.
    @inline(__always)
    mutating func sintField(_ field: Int, _ value: Int64) {
        tag(field, .varint)
        varint(Self.zigzag(value))
    }

    @inline(__always)
    mutating func doubleField(_ field: Int, _ value: Double) {
        tag(field, .fixed64)
        let bits = value.bitPattern
        for shift in stride(from: 0, to: 64, by: 8) { bytes.append(UInt8(truncatingIfNeeded: bits >> UInt64(shift))) }
    }

    mutating func append<Bytes: Collection<UInt8>>(_ bytes: Bytes) {
        self.bytes.append(contentsOf: bytes)
    }

    mutating func stringField(_ field: Int, _ value: String) {
        tag(field, .lengthDelimited)
        varint(UInt64(value.utf8.count))
        bytes.append(contentsOf: value.utf8)
    }

    /// A length-delimited field (a message, or packed scalars) written by `body`.
    mutating func lengthDelimitedField(_ field: Int, _ body: (inout ProtobufWriter) -> Void) {
        tag(field, .lengthDelimited)
        lengthPrefixed(body)
    }

    /// What `body` writes, preceded by its length as a varint (also the framing of
    /// each MetricFamily in the `encoding=delimited` stream). One byte is kept for
    /// the length, enough below 128 bytes (labels, buckets, spans); a longer body
    /// is moved up by the bytes its length needs beyond that.
    mutating func lengthPrefixed(_ body: (inout ProtobufWriter) -> Void) {
        let lengthAt = bytes.count
        bytes.append(0)
        body(&self)
        var length = UInt64(bytes.count - lengthAt - 1)
        var lengthSize = 1
        while length >> (7 * UInt64(lengthSize)) != 0 { lengthSize += 1 }
        if lengthSize > 1 {
            bytes.insert(contentsOf: repeatElement(0, count: lengthSize - 1), at: lengthAt + 1)
        }
        for i in 0..<lengthSize {
            bytes[lengthAt + i] = UInt8(truncatingIfNeeded: length) | (i < lengthSize - 1 ? 0x80 : 0)
            length >>= 7
        }
    }
}

/// MetricFamily messages of io.prometheus.client's metrics.proto, each preceded by
/// its length (`encoding=delimited`). Histograms carry both the classic buckets and
/// the native ones: a server that ingests native histograms takes those, one that
/// keeps classic histograms from protobuf scrapes (or both) finds the `le` buckets.
struct ProtobufEncoder {
    // Field numbers of metrics.proto (prometheus/client_model), checked against it.
    private enum Field {
        enum MetricFamily { static let name = 1, help = 2, type = 3, metric = 4 }
        enum Metric { static let label = 1, gauge = 2, counter = 3, histogram = 7 }
        enum LabelPair { static let name = 1, value = 2 }
        /// Of Gauge and Counter alike.
        static let value = 1
        enum Histogram {
            static let sampleCount = 1, sampleSum = 2, bucket = 3, schema = 5, zeroThreshold = 6, zeroCount = 7
            static let positiveSpan = 12, positiveDelta = 13
        }
        enum Bucket { static let cumulativeCount = 1, upperBound = 2 }
        enum BucketSpan { static let offset = 1, length = 2 }
    }

    /// MetricType of metrics.proto.
    private static func metricType(_ kind: MetricFamily.Kind) -> UInt64 {
        switch kind {
        case .counter: 0
        case .gauge: 1
        case .histogram: 4
        }
    }

    let native: NativeBuckets
    /// Each classic bucket's upper_bound field (tag and double: 9 bytes), the same in
    /// every histogram, one after the other, +Inf last.
    private static let classicUpperBoundFields: [UInt8] = {
        var w = ProtobufWriter()
        for bound in ClassicBuckets.upperBoundsSeconds + [.infinity] { w.doubleField(Field.Bucket.upperBound, bound) }
        return w.bytes
    }()

    init(nativeSchema: Int) {
        native = nativeSchema == NativeBuckets.defaultSchema ? .standard : NativeBuckets(schema: nativeSchema)
    }

    func encode(_ families: [MetricFamily]) -> [UInt8] {
        var writer = ProtobufWriter()
        writer.reserveCapacity(families.reduce(0) { $0 + 128 + $1.series.count * ($1.kind == .histogram ? 800 : 80) })
        for family in families {
            writer.lengthPrefixed { w in
                w.stringField(Field.MetricFamily.name, family.sampleName)
                w.stringField(Field.MetricFamily.help, family.help)
                w.uint64Field(Field.MetricFamily.type, Self.metricType(family.kind))
                for series in family.series {
                    w.lengthDelimitedField(Field.MetricFamily.metric) { w in
                        writeMetric(series, of: family, to: &w)
                    }
                }
            }
        }
        return writer.bytes
    }

    private func writeMetric(_ series: MetricFamily.Series, of family: MetricFamily, to w: inout ProtobufWriter) {
        for (name, value) in zip(family.labelNames, series.labelValues) {
            w.lengthDelimitedField(Field.Metric.label) { w in
                w.stringField(Field.LabelPair.name, name)
                w.stringField(Field.LabelPair.value, value)
            }
        }
        let valueField = family.kind == .gauge ? Field.Metric.gauge : Field.Metric.counter
        switch series.value {
        case .count(let n):
            w.lengthDelimitedField(valueField) { $0.doubleField(Field.value, Double(n)) }
        case .real(let x):
            w.lengthDelimitedField(valueField) { $0.doubleField(Field.value, x) }
        case .latency(let histogram):
            w.lengthDelimitedField(Field.Metric.histogram) { w in writeHistogram(histogram, to: &w) }
        }
    }

    private func writeHistogram(_ histogram: Histogram, to w: inout ProtobufWriter) {
        w.uint64Field(Field.Histogram.sampleCount, histogram.count)
        w.doubleField(Field.Histogram.sampleSum, Double(histogram.sum) / 1e9)
        // classic buckets, +Inf included (optional in the format, explicit here)
        let cumulative = ClassicBuckets.cumulativeCounts(of: histogram)
        Self.classicUpperBoundFields.withUnsafeBufferPointer { upperBoundFields in
            for (k, count) in cumulative.enumerated() {
                w.lengthDelimitedField(Field.Histogram.bucket) { w in
                    w.uint64Field(Field.Bucket.cumulativeCount, count)
                    w.append(UnsafeBufferPointer(rebasing: upperBoundFields[k * 9 ..< k * 9 + 9]))
                }
            }
        }
        // native buckets; a zero threshold above 0 also marks the histogram as native
        // for Prometheus even when it is empty
        w.sintField(Field.Histogram.schema, Int64(native.schema))
        w.doubleField(Field.Histogram.zeroThreshold, NativeBuckets.zeroThresholdSeconds)
        // Spans: a run of consecutive indices is one span; a gap starts a new span whose
        // offset is the number of indices skipped (the first span's is its index).
        // Deltas, packed: each bucket's count minus the previous bucket's (0 before
        // the first), across spans; gathered while the spans are written.
        var zeroCount: UInt64 = 0
        var span: (offset: Int, length: Int)?
        var previousIndex = 0
        var previousCount: Int64 = 0
        var deltas = ProtobufWriter()
        func writeSpan(_ span: (offset: Int, length: Int), to w: inout ProtobufWriter) {
            w.lengthDelimitedField(Field.Histogram.positiveSpan) { w in
                w.sintField(Field.BucketSpan.offset, Int64(span.offset))
                w.uint64Field(Field.BucketSpan.length, UInt64(span.length))
            }
        }
        native.forEachBucket(of: histogram) { index, count in
            guard let index else { zeroCount = count; return }
            if let current = span, index == previousIndex + 1 {
                span = (current.offset, current.length + 1)
            } else {
                if let current = span { writeSpan(current, to: &w) }
                span = (span == nil ? index : index - previousIndex - 1, 1)
            }
            previousIndex = index
            deltas.varint(ProtobufWriter.zigzag(Int64(bitPattern: count) &- previousCount))
            previousCount = Int64(bitPattern: count)
        }
        if let current = span { writeSpan(current, to: &w) }
        w.uint64Field(Field.Histogram.zeroCount, zeroCount)
        if !deltas.bytes.isEmpty {
            w.lengthDelimitedField(Field.Histogram.positiveDelta) { $0.append(deltas.bytes) }
        }
    }
}
