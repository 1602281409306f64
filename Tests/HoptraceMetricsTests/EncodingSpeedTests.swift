import HoptraceCore
import HoptraceMetrics
import XCTest

/// How long a scrape's encoding takes for a large node: 1,000 hops with 5 segments
/// each. Prints the figures; asserts nothing (a debug build is far slower than the
/// agent's release build, whose target is under 5 ms).
final class EncodingSpeedTests: XCTestCase {
    func testEncodingThousandHops() {
        var rng = SystemRandomNumberGenerator()
        func latencies(_ n: Int, _ range: ClosedRange<UInt64>) -> Histogram {
            var h = Histogram()
            for _ in 0..<n { h.record(UInt64.random(in: range, using: &rng)) }
            return h
        }
        var snapshot = MetricsSnapshot()
        snapshot.hops = (0..<1_000).map { i in
            .init(from: "namespace-\(i % 40)/pod-\(i)", to: "namespace-\(i % 40)/pod-\(i)/eth0",
                  latency: latencies(200, 5_000...2_000_000),
                  segments: Segment.allCases.map { ($0, latencies(50, 500...500_000)) },
                  packets: 200)
        }
        #if DEBUG
        let build = "debug", runs = 1  // a figure to compare with earlier debug runs only
        #else
        let build = "release", runs = 5
        #endif
        for format in [Exposition.Format.prometheusText, .openMetrics, .protobuf] {
            var best = Duration.seconds(1_000)
            var size = 0
            for _ in 0..<runs {
                let clock = ContinuousClock()
                let start = clock.now
                size = Exposition.encode(snapshot, format: format).count
                best = min(best, clock.now - start)
            }
            print("encoding 1000 hops x 5 segments, \(format), \(build): best of \(runs) \(best), \(size) bytes")
        }
    }
}
