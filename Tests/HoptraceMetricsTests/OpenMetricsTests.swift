import HoptraceCore
import HoptraceMetrics
import XCTest

final class OpenMetricsTests: XCTestCase {
    func openMetrics() -> String {
        String(decoding: Exposition.encode(sampleSnapshot(), format: .openMetrics), as: UTF8.self)
    }

    func testEndsWithEOF() throws {
        let output = openMetrics()
        XCTAssertTrue(output.hasSuffix("\n# EOF\n"))
        XCTAssertEqual(output.components(separatedBy: "# EOF").count, 2, "one EOF")
        XCTAssertEqual(try parseExposition(output).last, .eof)
        XCTAssertEqual(String(decoding: Exposition.encode(MetricsSnapshot(), format: .openMetrics), as: UTF8.self).suffix(6), "# EOF\n")
    }

    func testCountersAreNamedWithoutTotalInMetadataAndWithItInSamples() throws {
        let lines = try parseExposition(openMetrics())
        var types: [String: String] = [:], units: [String: String] = [:], helps = Set<String>()
        var family: String?
        for line in lines {
            switch line {
            case let .type(name, type):
                XCTAssertNil(types[name], "TYPE twice for \(name)")
                types[name] = type
                family = name
            case let .unit(name, unit):
                XCTAssertEqual(name, family)
                XCTAssertTrue(name.hasSuffix("_" + unit), "OpenMetrics: a family with a unit ends in it")
                units[name] = unit
            case let .help(name, _):
                XCTAssertEqual(name, family)
                XCTAssertTrue(helps.insert(name).inserted)
            case let .sample(name, labels, _, value):
                let f = try XCTUnwrap(family)
                switch types[f] {
                case "counter": XCTAssertEqual(name, f + "_total")
                case "gauge": XCTAssertEqual(name, f)
                case "histogram":
                    XCTAssertTrue(["_bucket", "_count", "_sum"].contains { name == f + $0 }, name)
                    if name.hasSuffix("_bucket") { XCTAssertNotNil(labels["le"]) }
                    if name.hasSuffix("_count") { XCTAssertNotNil(UInt64(value), "a histogram's count is an integer") }
                default: XCTFail("sample \(name) of an unknown family")
                }
            case .eof:
                break
            }
        }
        XCTAssertEqual(types["hoptrace_hop_packets"], "counter")
        XCTAssertEqual(types["hoptrace_drops"], "counter")
        XCTAssertEqual(types["hoptrace_incidents"], "counter")
        XCTAssertEqual(types["hoptrace_softirq_seconds"], "counter")
        XCTAssertFalse(types.keys.contains { $0.hasSuffix("_total") })
        XCTAssertEqual(types.count, 12)
        XCTAssertEqual(units, [
            "hoptrace_hop_latency_seconds": "seconds", "hoptrace_segment_latency_seconds": "seconds",
            "hoptrace_softirq_seconds": "seconds", "hoptrace_softirq_delay_seconds": "seconds",
            "hoptrace_bpf_run_seconds": "seconds", "hoptrace_consumer_cpu_seconds": "seconds",
        ])
    }

    func testCanonicalBucketBoundsAndEscaping() {
        let output = openMetrics()
        XCTAssertTrue(output.contains(#"hoptrace_hop_latency_seconds_bucket{from="default/web",to="default/web/eth0",le="1.0"} "#))
        XCTAssertTrue(output.contains(#"le="2.384185791015625e-07"} "#))
        XCTAssertTrue(output.contains(#"le="+Inf"} "#))
        XCTAssertTrue(output.contains(#"from="team \"a\"/web\\1\nnext""#))
        XCTAssertTrue(output.contains("\nhoptrace_bpf_run_seconds_total 0.25\n"))
        XCTAssertTrue(output.contains("\nhoptrace_lost_records_total 5\n"))
    }
}
