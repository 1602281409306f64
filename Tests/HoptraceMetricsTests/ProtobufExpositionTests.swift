import Foundation
import HoptraceCore
import HoptraceMetrics
import XCTest

/// A generic protobuf reader, written apart from the encoder: a message is a list
/// of (field number, value) whatever the schema; the tests give the fields meaning.
struct DecodedMessage {
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes([UInt8])
        case fixed32(UInt32)
    }

    var fields: [(number: Int, value: Value)] = []

    struct Malformed: Error { var why: String }

    init(_ bytes: ArraySlice<UInt8>) throws {
        var reader = Reader(bytes: bytes)
        while !reader.atEnd {
            let key = try reader.varint()
            let number = Int(key >> 3)
            guard number > 0 else { throw Malformed(why: "field number 0") }
            switch key & 7 {
            case 0: fields.append((number, .varint(try reader.varint())))
            case 1: fields.append((number, .fixed64(try reader.littleEndian(8))))
            case 2:
                let length = Int(try reader.varint())
                fields.append((number, .bytes(Array(try reader.take(length)))))
            case 5: fields.append((number, .fixed32(UInt32(try reader.littleEndian(4)))))
            default: throw Malformed(why: "wire type \(key & 7)")
            }
        }
    }

    struct Reader {
        var bytes: ArraySlice<UInt8>
        var atEnd: Bool { bytes.isEmpty }

        mutating func varint() throws -> UInt64 {
            var result: UInt64 = 0
            for shift in stride(from: 0, to: 70, by: 7) {
                guard let byte = bytes.popFirst() else { throw Malformed(why: "varint cut short") }
                result |= UInt64(byte & 0x7f) << UInt64(shift)
                if byte < 0x80 { return result }
            }
            throw Malformed(why: "varint too long")
        }

        mutating func littleEndian(_ n: Int) throws -> UInt64 {
            try take(n).reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }

        mutating func take(_ n: Int) throws -> ArraySlice<UInt8> {
            guard n >= 0, n <= bytes.count else { throw Malformed(why: "length \(n) past the end") }
            defer { bytes = bytes.dropFirst(n) }
            return bytes.prefix(n)
        }
    }

    func all(_ number: Int) -> [Value] { fields.filter { $0.number == number }.map(\.value) }

    func uint(_ number: Int) -> UInt64? {
        if case let .varint(v)? = all(number).last { return v }
        return nil
    }

    func sint(_ number: Int) -> Int64? {
        uint(number).map { Int64(bitPattern: $0 >> 1) ^ -Int64(bitPattern: $0 & 1) }
    }

    func double(_ number: Int) -> Double? {
        if case let .fixed64(v)? = all(number).last { return Double(bitPattern: v) }
        return nil
    }

    func string(_ number: Int) -> String? {
        if case let .bytes(b)? = all(number).last { return String(decoding: b, as: UTF8.self) }
        return nil
    }

    func messages(_ number: Int) throws -> [DecodedMessage] {
        try all(number).map {
            guard case let .bytes(b) = $0 else { throw Malformed(why: "field \(number) is not length-delimited") }
            return try DecodedMessage(b[...])
        }
    }

    /// A repeated sint64, packed or not.
    func sints(_ number: Int) throws -> [Int64] {
        var values: [UInt64] = []
        for value in all(number) {
            switch value {
            case let .varint(v): values.append(v)
            case let .bytes(b):
                var reader = Reader(bytes: b[...])
                while !reader.atEnd { values.append(try reader.varint()) }
            default: throw Malformed(why: "field \(number) is not a varint")
            }
        }
        return values.map { Int64(bitPattern: $0 >> 1) ^ -Int64(bitPattern: $0 & 1) }
    }
}

/// The `encoding=delimited` stream: each message preceded by its length as a varint.
func decodeDelimited(_ bytes: [UInt8]) throws -> [DecodedMessage] {
    var reader = DecodedMessage.Reader(bytes: bytes[...])
    var messages: [DecodedMessage] = []
    while !reader.atEnd {
        let length = Int(try reader.varint())
        messages.append(try DecodedMessage(try reader.take(length)))
    }
    return messages
}

/// metrics.proto's MetricFamily and Metric, read from a DecodedMessage.
struct DecodedFamily {
    var name: String, help: String, type: UInt64
    var metrics: [(labels: [String: String], message: DecodedMessage)]

    init(_ m: DecodedMessage) throws {
        name = m.string(1) ?? ""
        help = m.string(2) ?? ""
        type = m.uint(3) ?? 0
        metrics = try m.messages(4).map { metric in
            var labels: [String: String] = [:]
            for pair in try metric.messages(1) { labels[pair.string(1) ?? ""] = pair.string(2) ?? "" }
            return (labels, metric)
        }
    }
}

/// Native buckets expanded from spans and deltas: index to count.
func expandNative(_ histogram: DecodedMessage) throws -> [Int: UInt64] {
    let spans = try histogram.messages(12).map { (offset: Int($0.sint(1) ?? 0), length: Int($0.uint(2) ?? 0)) }
    let deltas = try histogram.sints(13)
    XCTAssertEqual(spans.reduce(0) { $0 + $1.length }, deltas.count, "one delta per bucket of the spans")
    var buckets: [Int: UInt64] = [:]
    var index = 0, count: Int64 = 0, d = 0
    for (n, span) in spans.enumerated() {
        index += n == 0 ? span.offset : span.offset + 1
        for k in 0..<span.length {
            if k > 0 { index += 1 }
            count += deltas[d]
            d += 1
            XCTAssertGreaterThanOrEqual(count, 0, "a bucket's count")
            XCTAssertNil(buckets[index], "index \(index) twice")
            buckets[index] = UInt64(count)
        }
    }
    return buckets
}

final class ProtobufExpositionTests: XCTestCase {
    func families(_ snapshot: MetricsSnapshot = sampleSnapshot(), schema: Int = 3) throws -> [DecodedFamily] {
        try decodeDelimited(Exposition.encode(snapshot, format: .protobuf, nativeSchema: schema)).map(DecodedFamily.init)
    }

    func testFamiliesNamesTypesAndLabels() throws {
        let fs = try families()
        XCTAssertEqual(fs.map(\.name), [
            "hoptrace_hop_latency_seconds", "hoptrace_segment_latency_seconds", "hoptrace_hop_packets_total",
            "hoptrace_drops_total", "hoptrace_softirq_seconds_total", "hoptrace_softirq_delay_seconds",
            "hoptrace_lost_records_total", "hoptrace_unseen_packets_total", "hoptrace_bpf_run_seconds_total",
            "hoptrace_consumer_cpu_seconds_total", "hoptrace_tracing_active_ratio", "hoptrace_incidents_total",
        ])
        // COUNTER 0, GAUGE 1, HISTOGRAM 4
        XCTAssertEqual(fs.map(\.type), [4, 4, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0])
        XCTAssertTrue(fs.allSatisfy { !$0.help.isEmpty })
        let segments = fs[1].metrics.map(\.labels)
        XCTAssertEqual(segments.count, 6)
        XCTAssertTrue(segments.contains(["from": awkwardName, "to": "host/eth0", "segment": "veth"]), "label values raw, not escaped")
        XCTAssertEqual(Set(segments.filter { $0["from"] == "default/web" }.compactMap { $0["segment"] }),
                       ["forward", "qdisc", "veth", "backlog", "deliver"])
        // counters and the gauge: Counter (3) or Gauge (2), value 1 a double
        let drops = try XCTUnwrap(fs[3].metrics.first)
        XCTAssertEqual(drops.labels, ["from": "default/web", "to": "default/web/eth0", "reason": "NETFILTER_DROP"])
        XCTAssertEqual(try drops.message.messages(3).first?.double(1), 3)
        XCTAssertEqual(try fs[4].metrics.map { try $0.message.messages(3).first?.double(1) }, [1.75, 0.125, 0.5])
        XCTAssertEqual(try fs[10].metrics.first?.message.messages(2).first?.double(1), 0.75)
        XCTAssertEqual(try fs[10].metrics.first?.message.messages(3).count, 0)
        XCTAssertEqual(fs[11].metrics.map { $0.labels["trigger"] }, ["drop:NETFILTER_DROP", "p99>2ms"])
    }

    func testHistogramsClassicAndNative() throws {
        let snapshot = sampleSnapshot()
        let hop = snapshot.hops[0]
        let fs = try families(snapshot)
        let metric = try XCTUnwrap(fs[0].metrics.first { $0.labels["from"] == "default/web" })
        let h = try XCTUnwrap(try metric.message.messages(7).first)
        XCTAssertEqual(h.uint(1), hop.latency.count)
        XCTAssertEqual(h.double(2)!, Double(hop.latency.sum) / 1e9, accuracy: 1e-12)
        // classic: the 25 bounds and +Inf, cumulative, +Inf = count
        let buckets = try h.messages(3).map { (count: $0.uint(1) ?? 0, upperBound: $0.double(2) ?? .nan) }
        XCTAssertEqual(buckets.map(\.upperBound), (-22...2).map { Double(sign: .plus, exponent: $0, significand: 1) } + [.infinity])
        XCTAssertEqual(buckets.map(\.count), buckets.map(\.count).sorted())
        XCTAssertEqual(buckets.last?.count, hop.latency.count)
        // 300 ns, 1 us, 3 ms, 45 us x2, 120 us, 7.5 s
        XCTAssertEqual(buckets[1].count, 1)   // 2^-21 s: 300 ns
        XCTAssertEqual(buckets[3].count, 2)   // 2^-19 s: 1 us
        XCTAssertEqual(buckets[14].count, 6)  // 2^-8 s: 3 ms
        XCTAssertEqual(buckets[24].count, 6)  // 4 s
        // native
        XCTAssertEqual(h.sint(5), 3)
        XCTAssertEqual(h.double(6), 0x1p-30)
        XCTAssertEqual(h.uint(7), 0)
        let native = try expandNative(h)
        XCTAssertEqual(native.values.reduce(0, +), hop.latency.count - (h.uint(7) ?? 0))
        // indices by ceil(8 log2(seconds)) of each value's HDR bucket's highest value
        XCTAssertEqual(native, [
            -173: 1,  // 300 ns (HDR bucket [300, 303] ns: 8 log2(303e-9) = -173.2)
            -159: 1,  // 1 us ([1000, 1007] ns: -159.4)
            -115: 2,  // 45 us ([44544, 45055] ns: -115.5)
            -104: 1,  // 120 us ([119808, 120831] ns: -104.1)
            -66: 1,   // 3 ms ([2981888, 3014655] ns: -66.99)
            24: 1,    // 7.5 s ([7449083904, 7516192767] ns: 23.3)
        ])
    }

    func testZeroBucketAndEmptyHistograms() throws {
        let fs = try families()
        // the qdisc segment recorded a 0 ns value
        let qdisc = try XCTUnwrap(fs[1].metrics.first { $0.labels["segment"] == "qdisc" })
        let h = try XCTUnwrap(try qdisc.message.messages(7).first)
        XCTAssertEqual(h.uint(7), 1)
        XCTAssertEqual(try expandNative(h).values.reduce(0, +), 1)
        // an empty histogram still says it is native (schema, zero threshold), with no buckets
        let empty = try XCTUnwrap(fs[5].metrics.first { $0.labels == ["cpu": "2", "vector": "net_rx"] })
        let e = try XCTUnwrap(try empty.message.messages(7).first)
        XCTAssertEqual(e.uint(1), 0)
        XCTAssertEqual(e.double(6), 0x1p-30)
        XCTAssertEqual(try e.messages(12).count, 0)
        XCTAssertEqual(try e.messages(3).map { $0.uint(1) ?? 0 }, Array(repeating: 0, count: 26))
    }

    func testSpansAndDeltasOverManyValuesAndSchemas() throws {
        var snapshot = MetricsSnapshot()
        var h = Histogram()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<20_000 { h.record(UInt64.random(in: 0...100_000, using: &rng)) }
        // far from the rest: a gap of empty buckets, then more
        for _ in 0..<100 { h.record(UInt64.random(in: 2_000_000_000...3_000_000_000, using: &rng)) }
        snapshot.hops = [.init(from: "a", to: "b", latency: h, segments: [], packets: 1)]
        for schema in [0, 3, 8] {
            let m = try XCTUnwrap(try families(snapshot, schema: schema)[0].metrics.first?.message.messages(7).first)
            XCTAssertEqual(m.sint(5), Int64(schema))
            let native = try expandNative(m)
            XCTAssertEqual(native.values.reduce(0, +) + (m.uint(7) ?? 0), h.count)
            XCTAssertGreaterThan(try m.messages(12).count, 1, "a gap starts another span")
            // each native bucket holds exactly the values the rule sends there
            var expected: [Int: UInt64] = [:]
            for (i, c) in h.counts.enumerated() where c != 0 {
                let highest = Double(h.bucketRange(i).upperBound) / 1e9
                if highest <= 0x1p-30 { continue }
                expected[Int((log2(highest) * Double(1 << schema)).rounded(.up)), default: 0] += c
            }
            XCTAssertEqual(native, expected, "schema \(schema)")
        }
    }
}
