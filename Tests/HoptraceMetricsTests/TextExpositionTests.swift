import Foundation
import HoptraceCore
@testable import HoptraceMetrics
import XCTest

final class TextExpositionTests: XCTestCase {
    let familyNames = [
        "hoptrace_hop_latency_seconds", "hoptrace_segment_latency_seconds", "hoptrace_hop_packets_total",
        "hoptrace_drops_total", "hoptrace_softirq_seconds_total", "hoptrace_softirq_delay_seconds",
        "hoptrace_lost_records_total", "hoptrace_unseen_packets_total", "hoptrace_bpf_run_seconds_total",
        "hoptrace_consumer_cpu_seconds_total", "hoptrace_tracing_active_ratio", "hoptrace_incidents_total",
    ]

    func text(_ snapshot: MetricsSnapshot = sampleSnapshot()) -> String {
        String(decoding: Exposition.encode(snapshot, format: .prometheusText), as: UTF8.self)
    }

    func testFamiliesHaveHelpAndTypeOnceInOrderBeforeTheirSamples() throws {
        let lines = try parseExposition(text())
        var helps: [String] = [], types: [String: String] = [:], typeOrder: [String] = []
        var current: String?
        for line in lines {
            switch line {
            case let .help(name, text):
                XCTAssertFalse(helps.contains(name), "HELP twice for \(name)")
                XCTAssertFalse(text.isEmpty)
                helps.append(name)
                current = name
            case let .type(name, type):
                XCTAssertNil(types[name], "TYPE twice for \(name)")
                XCTAssertEqual(name, current, "TYPE right after its HELP")
                types[name] = type
                typeOrder.append(name)
            case let .sample(name, _, _, _):
                let family = current ?? ""
                let isOwn = name == family || (types[family] == "histogram"
                    && ["_bucket", "_sum", "_count"].contains { name == family + $0 })
                XCTAssertTrue(isOwn, "\(name) written under \(family)")
            case .unit, .eof:
                XCTFail("no \(line) in text 0.0.4")
            }
        }
        XCTAssertEqual(helps, familyNames)
        XCTAssertEqual(typeOrder, familyNames)
        XCTAssertEqual(types["hoptrace_hop_latency_seconds"], "histogram")
        XCTAssertEqual(types["hoptrace_drops_total"], "counter")
        XCTAssertEqual(types["hoptrace_tracing_active_ratio"], "gauge")
    }

    func testHistogramsAreCumulativeInSecondsAndEndWithTheCount() throws {
        let snapshot = sampleSnapshot()
        let lines = try parseExposition(text(snapshot))
        var buckets: [String: [(le: Double, count: UInt64)]] = [:]
        var sums: [String: Double] = [:], counts: [String: UInt64] = [:]
        for case let .sample(name, labels, _, value) in lines {
            let series = "\(name.replacingOccurrences(of: "_bucket", with: "").replacingOccurrences(of: "_sum", with: "").replacingOccurrences(of: "_count", with: "")) \(labels.filter { $0.key != "le" }.sorted { $0.key < $1.key })"
            if name.hasSuffix("_bucket") {
                let le = try XCTUnwrap(prometheusFloat(labels["le"] ?? ""), "le of \(labels)")
                buckets[series, default: []].append((le, try XCTUnwrap(UInt64(value))))
            } else if name.hasSuffix("_sum") {
                sums[series] = try XCTUnwrap(prometheusFloat(value))
            } else if name.hasSuffix("_count") {
                counts[series] = try XCTUnwrap(UInt64(value))
            }
        }
        // 2 hops, 5 + 1 segments, 3 softirq delays
        XCTAssertEqual(buckets.count, 11)
        let expectedBounds = (-22...2).map { Double(sign: .plus, exponent: $0, significand: 1) } + [.infinity]
        for (series, points) in buckets {
            XCTAssertEqual(points.map(\.le), expectedBounds, series)
            XCTAssertEqual(points.map(\.count), points.map(\.count).sorted(), "cumulative counts of \(series) never fall")
            XCTAssertEqual(points.last?.count, counts[series], "+Inf of \(series) is its count")
            XCTAssertNotNil(sums[series], series)
        }
        // _sum is in seconds
        let hop = snapshot.hops[0]
        let hopSeries = buckets.keys.first { $0.hasPrefix("hoptrace_hop_latency_seconds ") && $0.contains("default/web/eth0") }!
        XCTAssertEqual(sums[hopSeries]!, Double(hop.latency.sum) / 1e9, accuracy: 1e-12)
        XCTAssertEqual(counts[hopSeries], hop.latency.count)
        // 7.5 s is above the last bound: only +Inf has it
        XCTAssertEqual(buckets[hopSeries]![24].count, 6)
        XCTAssertEqual(buckets[hopSeries]![25].count, 7)
    }

    func testLabelValuesAreEscapedAndReadBack() throws {
        let output = text()
        XCTAssertTrue(output.contains(#"from="team \"a\"/web\\1\nnext""#), "escaped in place")
        let lines = try parseExposition(output)
        let awkward = lines.filter {
            if case let .sample(_, labels, _, _) = $0 { return labels["from"] == awkwardName }
            return false
        }
        // whole hop (26 buckets, sum, count), its veth segment (28), its packets
        XCTAssertEqual(awkward.count, 28 + 28 + 1)
    }

    func testHelpIsEscaped() {
        var bytes: [UInt8] = []
        TextEncoder.appendEscaped("a\\b\nc\"d", escapingQuotes: false, to: &bytes)
        XCTAssertEqual(String(decoding: bytes, as: UTF8.self), #"a\\b\nc"d"#)
    }

    func testNoSeriesTwiceAndSeriesSortedByLabels() throws {
        var snapshot = sampleSnapshot()
        // the same hop reported twice is merged, not written twice
        snapshot.hops.append(snapshot.hops[0])
        snapshot.drops.append(snapshot.drops[0])
        let lines = try parseExposition(text(snapshot))
        var seen = Set<String>()
        for case let .sample(name, labels, order, _) in lines {
            let key = "\(name){\(order.map { "\($0)=\(labels[$0]!)" }.joined(separator: ","))}"
            XCTAssertTrue(seen.insert(key).inserted, "\(key) twice")
        }
        let packets: [(String, String)] = lines.compactMap {
            if case let .sample("hoptrace_hop_packets_total", labels, _, value) = $0 { return (labels["from"]!, value) }
            return nil
        }
        XCTAssertEqual(packets.map(\.0), [awkwardName, "default/web"].sorted())
        XCTAssertEqual(packets.first { $0.0 == "default/web" }?.1, "14")
        let drops = lines.first {
            if case .sample("hoptrace_drops_total", _, _, _) = $0 { return true }
            return false
        }
        XCTAssertEqual(drops, .sample(name: "hoptrace_drops_total",
                                      labels: ["from": "default/web", "to": "default/web/eth0", "reason": "NETFILTER_DROP"],
                                      labelOrder: ["from", "to", "reason"], value: "6"))
        // CPUs in numeric order, then vector
        let cpus: [String] = lines.compactMap {
            if case let .sample("hoptrace_softirq_seconds_total", labels, _, _) = $0 { return "\(labels["cpu"]!) \(labels["vector"]!)" }
            return nil
        }
        XCTAssertEqual(cpus, ["2 net_rx", "2 net_tx", "10 net_rx"])
    }

    func testScalarsAndFloats() throws {
        let output = text()
        for line in [
            "hoptrace_lost_records_total 5", "hoptrace_unseen_packets_total 7", "hoptrace_bpf_run_seconds_total 0.25",
            "hoptrace_consumer_cpu_seconds_total 1.5", "hoptrace_tracing_active_ratio 0.75",
            #"hoptrace_incidents_total{trigger="drop:NETFILTER_DROP"} 1"#, #"hoptrace_incidents_total{trigger="p99>2ms"} 2"#,
            #"hoptrace_softirq_seconds_total{cpu="2",vector="net_rx"} 1.75"#,
        ] {
            XCTAssertTrue(output.contains("\n" + line + "\n"), "missing: \(line)")
        }
        XCTAssertEqual(TextEncoder.formatted(1, .prometheus), Array("1".utf8))
        XCTAssertEqual(TextEncoder.formatted(0x1p-22, .prometheus), Array("2.384185791015625e-07".utf8))
        XCTAssertEqual(TextEncoder.formatted(.infinity, .prometheus), Array("+Inf".utf8))
        XCTAssertEqual(TextEncoder.formatted(-.infinity, .prometheus), Array("-Inf".utf8))
        XCTAssertEqual(TextEncoder.formatted(.nan, .prometheus), Array("NaN".utf8))
        XCTAssertEqual(TextEncoder.formatted(1e21, .prometheus), Array("1e+21".utf8))
        XCTAssertEqual(TextEncoder.formatted(4, .openMetrics), Array("4.0".utf8))
    }

    func testEmptySnapshotHasOnlyTheScalars() throws {
        let lines = try parseExposition(text(MetricsSnapshot()))
        let names: [String] = lines.compactMap { if case let .type(name, _) = $0 { return name } else { return nil } }
        XCTAssertEqual(names, ["hoptrace_lost_records_total", "hoptrace_unseen_packets_total", "hoptrace_bpf_run_seconds_total",
                               "hoptrace_consumer_cpu_seconds_total", "hoptrace_tracing_active_ratio"])
    }

    func testSameSnapshotSameBytes() {
        XCTAssertEqual(Exposition.encode(sampleSnapshot(), format: .prometheusText),
                       Exposition.encode(sampleSnapshot(), format: .prometheusText))
    }

    /// Prometheus' own checker (and linter) accepts the output.
    func testPromtoolAcceptsIt() throws {
        try requireTool("/usr/bin/promtool", package: "prometheus")
        let result = try runProcess("/usr/bin/promtool", ["check", "metrics"],
                                    input: Exposition.encode(sampleSnapshot(), format: .prometheusText))
        XCTAssertEqual(result.status, 0, "promtool check metrics: \(result.output)")
        XCTAssertEqual(result.output.trimmingCharacters(in: .whitespacesAndNewlines), "", "no lint problems")
    }
}
