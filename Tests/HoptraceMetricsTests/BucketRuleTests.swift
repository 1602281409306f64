import Foundation
import HoptraceCore
@testable import HoptraceMetrics
import XCTest

final class BucketRuleTests: XCTestCase {
    let boundsSeconds = (-22...2).map { Double(sign: .plus, exponent: $0, significand: 1) }

    /// The classic bucket one value is counted in: the index of the first bound whose
    /// cumulative count has it (25 for +Inf only).
    func classicIndex(ofValue ns: UInt64, precisionBits: Int = 7) -> Int {
        var h = Histogram(precisionBits: precisionBits)
        h.record(ns)
        let cumulative = ClassicBuckets.cumulativeCounts(of: h)
        XCTAssertEqual(cumulative.count, 26)
        XCTAssertEqual(cumulative.last, 1)
        return cumulative.firstIndex(of: 1)!
    }

    func testKnownValuesLandInTheirBuckets() {
        XCTAssertEqual(ClassicBuckets.upperBoundsSeconds, boundsSeconds)
        XCTAssertEqual(ClassicBuckets.bounds.upperBoundsNs.first, 238)  // 2^-22 s = 238.4 ns
        XCTAssertEqual(ClassicBuckets.bounds.upperBoundsNs.last, 4_000_000_000)
        // 0 ns: the first bucket
        XCTAssertEqual(classicIndex(ofValue: 0), 0)
        // 300 ns: le = 2^-21 s (476.8 ns)
        XCTAssertEqual(classicIndex(ofValue: 300), 1)
        // 1 us: le = 2^-19 s (1.907 us), above 2^-20 s (953.7 ns)
        XCTAssertEqual(classicIndex(ofValue: 1_000), 3)
        // 3 ms: le = 2^-8 s (3.906 ms), above 2^-9 s (1.953 ms)
        XCTAssertEqual(classicIndex(ofValue: 3_000_000), 14)
        // 1 s exactly: le = 1 s (its HDR bucket [998244352, 1006632959] straddles it: next)
        XCTAssertEqual(classicIndex(ofValue: 1_000_000_000), 23)
        XCTAssertEqual(classicIndex(ofValue: 990_000_000), 22)
        // above 4 s: +Inf only
        XCTAssertEqual(classicIndex(ofValue: 5_000_000_000), 25)
    }

    /// The documented error: a value is never counted under a bound below it, and is
    /// counted one bucket up only when it lies within one HDR bucket's width under
    /// the bound (at most 2^-(precisionBits-1) of the value: 1.6 % at 7 bits).
    func testErrorIsAtMostOneHdrBucketWidth() {
        for bits in [7, 5] {
            var rng = SystemRandomNumberGenerator()
            var movedUp = 0
            var values = (0..<1_000).map { _ in UInt64.random(in: 1...5_000_000_000, using: &rng) }
            // and the values right at and under every bound, where the error happens
            for b in boundsSeconds {
                let ns = UInt64((b * 1e9).rounded(.down))
                values += [ns, ns - 1, ns - ns / 100]
            }
            for v in values {
                let exact = boundsSeconds.firstIndex { Double(v) <= $0 * 1e9 } ?? 25
                let counted = classicIndex(ofValue: v, precisionBits: bits)
                if counted == exact { continue }
                movedUp += 1
                XCTAssertEqual(counted, exact + 1, "\(v) ns at \(bits) bits: never more than one bucket up, never down")
                let width = Double(v) * Double(sign: .plus, exponent: -(bits - 1), significand: 1)
                XCTAssertLessThan(boundsSeconds[exact] * 1e9 - Double(v), width, "\(v) ns at \(bits) bits: within one HDR bucket of the bound")
            }
            XCTAssertGreaterThan(movedUp, 0, "the values at the bounds show the error")
        }
    }

    func testNativeBucketsByTheSameRule() {
        let native = NativeBuckets(schema: 3)
        XCTAssertEqual(native.firstIndex, -239)
        func index(ofValue ns: UInt64) -> Int? {
            let (zero, buckets) = native.buckets(of: histogram([ns]))
            if zero == 1 { return nil }
            XCTAssertEqual(buckets.count, 1)
            return buckets[0].index
        }
        XCTAssertNil(index(ofValue: 0), "0 ns is in the zero bucket")
        XCTAssertEqual(index(ofValue: 1), -239)  // (2^-30, 2^-29.875] s = (0.93, 1.01] ns
        XCTAssertEqual(index(ofValue: 100_000), -106)  // (94.0, 102.5] us
        XCTAssertEqual(index(ofValue: 1_000_000), -79)  // (976.6, 1064.2] us
        XCTAssertEqual(index(ofValue: 3_000_000_000), 13)  // its HDR bucket ends at 3.0199 s: (2.83, 3.08] s
        XCTAssertEqual(index(ofValue: .max / 2), 265)  // its HDR bucket ends at 2^63 - 1 ns = 2^33.1 s
        // any value: the index of its HDR bucket's highest value, 2^s * log2(seconds) rounded up
        var rng = SystemRandomNumberGenerator()
        for schema in [0, 3, 8] {
            let native = NativeBuckets(schema: schema)
            for _ in 0..<500 {
                let v = UInt64.random(in: 1...10_000_000_000, using: &rng)
                let h = histogram([v])
                let highest = h.bucketRange(h.bucketIndex(v)).upperBound
                let exact = log2(Double(highest) / 1e9) * Double(1 << schema)
                // skip the few whose highest value is a rounding error away from a bound
                if abs(exact - exact.rounded()) < 1e-9 { continue }
                XCTAssertEqual(native.buckets(of: h).buckets.map(\.index), [Int(exact.rounded(.up))], "\(v) ns, schema \(schema)")
            }
        }
    }

    func testNativeBucketsHoldTheWholeCount() {
        var h = Histogram()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<10_000 { h.record(UInt64.random(in: 0...2_000_000, using: &rng)) }
        h.record(0, count: 5)
        h.record(.max / 2)
        let (zero, buckets) = NativeBuckets(schema: 3).buckets(of: h)
        XCTAssertGreaterThanOrEqual(zero, 5)
        XCTAssertEqual(zero + buckets.reduce(0) { $0 + $1.count }, h.count)
        XCTAssertEqual(buckets.map(\.index), buckets.map(\.index).sorted())
        XCTAssertEqual(Set(buckets.map(\.index)).count, buckets.count)
    }

    func testUpperBoundsOfNativeBuckets() {
        XCTAssertEqual(NativeBuckets.upperBoundSeconds(index: 0, schema: 3), 1)
        XCTAssertEqual(NativeBuckets.upperBoundSeconds(index: -8, schema: 3), 0.5)
        XCTAssertEqual(NativeBuckets.upperBoundSeconds(index: -9, schema: 3), pow(2, -9.0 / 8), accuracy: 1e-15)
        XCTAssertEqual(NativeBuckets.upperBoundSeconds(index: 13, schema: 3), pow(2, 13.0 / 8), accuracy: 1e-15)
        XCTAssertEqual(NativeBuckets.upperBoundSeconds(index: -240, schema: 3), NativeBuckets.zeroThresholdSeconds)
    }
}
