import XCTest

@testable import HoptraceCore

/// A small deterministic generator so the tests see the same values on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

final class HistogramTests: XCTestCase {
    func exactQuantile(_ sorted: [UInt64], _ q: Double) -> UInt64 {
        sorted[max(0, Int((q * Double(sorted.count)).rounded(.up)) - 1)]
    }

    /// Every reported percentile is within the stated relative error of the exact one.
    func testQuantilesWithinStatedPrecision() {
        var rng = SplitMix64(state: 42)
        for bits in [5, 7] {
            var h = Histogram(precisionBits: bits)
            // log-uniform from 100 ns to 100 ms: the range hop latencies live in
            let values = (0..<200_000).map { _ in UInt64(exp(Double.random(in: log(100)...log(1e8), using: &rng))) }
            values.forEach { h.record($0) }
            let sorted = values.sorted()
            let tolerance = 1.0 / Double(1 << (bits - 1))
            for q in [0.5, 0.9, 0.99, 0.999] {
                let exact = Double(exactQuantile(sorted, q)), got = Double(h.value(atQuantile: q))
                XCTAssertLessThanOrEqual(abs(got - exact) / exact, tolerance, "bits \(bits) q \(q): \(got) vs \(exact)")
            }
            XCTAssertEqual(h.max, sorted.last)
            XCTAssertEqual(h.min, sorted.first)
            XCTAssertEqual(h.count, 200_000)
            XCTAssertEqual(h.value(atQuantile: 1), sorted.last)
            XCTAssertEqual(h.mean, Double(values.reduce(0, +)) / 200_000, accuracy: 1e-6)
        }
    }

    func testSmallValuesAreExact() {
        var h = Histogram()
        for v in 0..<128 { h.record(UInt64(v)) }
        XCTAssertEqual(h.value(atQuantile: 0.5), 63)
        XCTAssertEqual(h.value(atQuantile: 0.01), 1)
    }

    func testBucketRangesTileTheLine() {
        let h = Histogram(precisionBits: 7)
        var next: UInt64 = 0
        for i in 0..<3000 {
            let r = h.bucketRange(i)
            XCTAssertEqual(r.lowerBound, next, "bucket \(i)")
            XCTAssertEqual(h.bucketIndex(r.lowerBound), i)
            XCTAssertEqual(h.bucketIndex(r.upperBound), i)
            next = r.upperBound + 1
        }
    }

    /// Merging two histograms gives exactly the histogram of all the values.
    func testMergeIsExact() {
        var rng = SplitMix64(state: 7)
        var a = Histogram(), b = Histogram(), all = Histogram()
        for i in 0..<50_000 {
            let v = UInt64.random(in: 0...5_000_000, using: &rng)
            if i % 3 == 0 { a.record(v) } else { b.record(v) }
            all.record(v)
        }
        a.merge(b)
        XCTAssertEqual(a, all)
        var empty = Histogram()
        empty.merge(Histogram())
        XCTAssertEqual(empty.count, 0)
        XCTAssertEqual(LatencySummary(empty).maxNs, 0)
    }

    /// A run of values recorded at once is the same histogram as the values one by one,
    /// from 0 to the largest 64-bit value, run after run into the same histogram.
    func testRecordingARunEqualsRecordingEachValue() {
        var rng = SplitMix64(state: 11)
        for bits in [5, 6, 7] {
            var runs = Histogram(precisionBits: bits), each = Histogram(precisionBits: bits)
            for size in [0, 1, 7, 1000, 20_000] {
                var values = (0..<size).map { _ in UInt64.random(in: 0...1 << UInt64.random(in: 1...40, using: &rng), using: &rng) }
                if size == 7 { values += [0, .max, 1 << 63] }
                values.withUnsafeBufferPointer { runs.record($0) }
                values.forEach { each.record($0) }
                XCTAssertEqual(runs, each, "\(bits) bits, run of \(size)")
            }
        }
    }

    func testMemoryIsBoundedByLargestValue() {
        var h = Histogram(precisionBits: 7)
        h.record(UInt64(UInt32.max))
        // 2^32 ns needs (32 - 6 + 1) * 64 + 64 buckets at most
        XCTAssertLessThanOrEqual(h.counts.count, 27 * 64 + 64)
        h.record(.max)
        XCTAssertLessThanOrEqual(h.counts.count, (65 - 7) * 64 + 64)
    }
}
