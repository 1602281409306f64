import Foundation  // pow, once per table: never per scrape or per histogram
import HoptraceCore

/// Exposition buckets (seconds on the wire) over the tracer's HDR histograms
/// (nanoseconds), and the one rule that moves counts from the latter to the former.
///
/// The rule: an HDR bucket is counted, whole, in the first exposition bucket whose
/// upper bound is at or above the HDR bucket's highest value. Bounds are kept here
/// as whole nanoseconds, `floor(bound_seconds * 1e9)`: HDR values are integers, so
/// "highest value <= floor(bound * 1e9)" is the same test as "highest value <=
/// bound * 1e9", done without floating point.
///
/// The error this makes: a value is never counted under a bound below it (its HDR
/// bucket's highest value is at least the value itself), but a value at or just
/// under a bound is counted in the next bucket when its HDR bucket straddles the
/// bound. So the count at `le = b` is exact for some threshold between
/// `b - w` and `b`, where `w` is the width of the HDR bucket holding `b`: at most
/// `2^-(precisionBits-1)` of the value, about 1.6 % at the default 7 precision bits
/// (values below `2^precisionBits` ns are exact). Said per value: each value is
/// counted as if it were at most one HDR bucket's width larger than it is.
struct BucketBounds: Sendable {
    /// Upper bounds in whole nanoseconds, ascending.
    let upperBoundsNs: [UInt64]
    /// The rule in HDR index space, per HDR precision (indexed by `precisionBits`):
    /// per bound, the last HDR index counted under it. HDR buckets are contiguous, so
    /// that is the index before the bucket of `bound + 1` (`Int.max` for a bound at
    /// the largest value). Counting then only sums runs of HDR counters.
    private let lastHdrIndices: [[Int]]

    init(upperBoundsNs: [UInt64]) {
        self.upperBoundsNs = upperBoundsNs
        lastHdrIndices = (0...16).map { bits in
            guard bits >= 2 else { return [] }  // Histogram's precisions are 2...16
            let probe = Histogram(precisionBits: bits)
            return upperBoundsNs.map { $0 == .max ? .max : probe.bucketIndex($0 + 1) - 1 }
        }
    }

    /// Calls `body(boundIndex, count)` once for every exposition bucket that gets a
    /// count, in ascending order, with the count that lands in it (not cumulative).
    /// `boundIndex == upperBoundsNs.count` stands for the values above the last bound.
    @inline(__always)
    func forEachBucket(of histogram: Histogram, _ body: (_ boundIndex: Int, _ count: UInt64) -> Void) {
        guard histogram.count > 0 else { return }
        let lastHdrIndex = lastHdrIndices[histogram.precisionBits]
        histogram.counts.withUnsafeBufferPointer { counts in
            // the counters below the smallest value are 0: not even read (reading the
            // counters is most of the time an encoding takes)
            let first = histogram.bucketIndex(histogram.min)
            // the first bound that counts the first nonempty HDR bucket (binary search:
            // native bounds are hundreds)
            var low = 0, high = lastHdrIndex.count
            while low < high {
                let middle = (low + high) / 2
                if lastHdrIndex[middle] < first { low = middle + 1 } else { high = middle }
            }
            var bound = low
            var start = first
            while start < counts.count {
                let end = bound < lastHdrIndex.count ? min(lastHdrIndex[bound], counts.count - 1) : counts.count - 1
                if end >= start {  // bounds narrower than an HDR bucket can have none
                    var sum: UInt64 = 0
                    for i in start...end { sum &+= counts[i] }
                    if sum != 0 { body(bound, sum) }
                    start = end + 1
                }
                bound += 1
            }
        }
    }

    /// `floor(seconds * 1e9)`, saturating at the largest nanosecond value.
    static func wholeNanoseconds(_ seconds: Double) -> UInt64 {
        let ns = (seconds * 1e9).rounded(.down)
        return ns >= 0x1p64 ? .max : UInt64(ns)
    }
}

/// The classic (`le`) buckets: powers of two from 2^-22 s (~238 ns) to 2^2 s (4 s),
/// 25 bounds, then +Inf. Fixed, so series keep the same buckets from scrape to scrape
/// and agent to agent (`histogram_quantile` over a sum needs that).
enum ClassicBuckets {
    static let lowestExponent = -22
    static let highestExponent = 2

    /// The bounds in seconds, exact powers of two.
    static let upperBoundsSeconds: [Double] = (lowestExponent...highestExponent).map {
        Double(sign: .plus, exponent: $0, significand: 1)
    }

    static let bounds = BucketBounds(upperBoundsNs: upperBoundsSeconds.map(BucketBounds.wholeNanoseconds))

    /// Cumulative counts for each bound, then for +Inf (which is the histogram's count):
    /// `upperBoundsSeconds.count + 1` values.
    static func cumulativeCounts(of histogram: Histogram) -> [UInt64] {
        var cumulative = [UInt64](repeating: 0, count: upperBoundsSeconds.count + 1)
        bounds.forEachBucket(of: histogram) { boundIndex, count in cumulative[boundIndex] &+= count }
        for i in cumulative.indices.dropFirst() { cumulative[i] &+= cumulative[i - 1] }
        return cumulative
    }
}

/// Prometheus native (sparse, exponential) buckets of one schema: bucket `i` covers
/// `(2^((i-1) / 2^schema), 2^(i / 2^schema)]` seconds, and the zero bucket
/// `[0, zeroThresholdSeconds]`. HDR buckets go to them by the same rule as the classic
/// buckets, so the same error bound holds (plus nothing: a native bucket narrower
/// than an HDR bucket just stays empty).
struct NativeBuckets: Sendable {
    /// 2^-30 s (~0.93 ns): only a recorded 0 ns falls in the zero bucket.
    static let zeroThresholdSeconds = 0x1p-30
    static let defaultSchema = 3
    /// The default schema's buckets, made once per process rather than per encoding.
    static let standard = NativeBuckets(schema: defaultSchema)
    /// Schemas offered: 2^(1/2^schema) growth from 2 (0) down to ~0.27 % (8). Negative
    /// schemas (growth 4, 16, ...) are coarser than anything useful for latency here.
    static let schemas = 0...8

    let schema: Int
    /// The first native index: the bucket just above the zero threshold.
    let firstIndex: Int
    /// Position 0 is the zero bucket; position `k > 0` is native index `firstIndex + k - 1`.
    /// The last bound is at or above the largest nanosecond value, so nothing lands
    /// above them all.
    let bounds: BucketBounds

    init(schema: Int) {
        precondition(Self.schemas.contains(schema), "native histogram schema must be in \(Self.schemas)")
        self.schema = schema
        let perPowerOfTwo = 1 << schema
        // 2^-30 s is the upper bound of native index -30 * 2^schema
        firstIndex = -30 * perPowerOfTwo + 1
        // 2^35 s is above 2^64 ns (~2^34.1 s)
        let lastIndex = 35 * perPowerOfTwo
        var boundsNs = [BucketBounds.wholeNanoseconds(Self.zeroThresholdSeconds)]
        boundsNs.reserveCapacity(lastIndex - firstIndex + 2)
        for index in firstIndex...lastIndex {
            boundsNs.append(BucketBounds.wholeNanoseconds(Self.upperBoundSeconds(index: index, schema: schema)))
        }
        bounds = BucketBounds(upperBoundsNs: boundsNs)
    }

    /// `2^(index / 2^schema)`: exact where the exponent is whole, `pow` elsewhere.
    static func upperBoundSeconds(index: Int, schema: Int) -> Double {
        let perPowerOfTwo = 1 << schema
        let whole = index >= 0 ? index / perPowerOfTwo : -((-index + perPowerOfTwo - 1) / perPowerOfTwo)
        let fraction = index - whole * perPowerOfTwo  // 0 ..< perPowerOfTwo
        let significand = fraction == 0 ? 1 : pow(2, Double(fraction) / Double(perPowerOfTwo))
        return Double(sign: .plus, exponent: whole, significand: significand)
    }

    /// Calls `body(index, count)` for each nonempty bucket in ascending order, `index`
    /// nil for the zero bucket (which comes first).
    @inline(__always)
    func forEachBucket(of histogram: Histogram, _ body: (_ index: Int?, _ count: UInt64) -> Void) {
        bounds.forEachBucket(of: histogram) { position, count in
            body(position == 0 ? nil : firstIndex + position - 1, count)
        }
    }

    /// A histogram's native buckets: the zero bucket's count, and the nonempty buckets
    /// in ascending index order (the encoder streams them through `forEachBucket`;
    /// this is the plain form, for tests and inspection).
    func buckets(of histogram: Histogram) -> (zeroCount: UInt64, buckets: [(index: Int, count: UInt64)]) {
        var zeroCount: UInt64 = 0
        var buckets: [(index: Int, count: UInt64)] = []
        forEachBucket(of: histogram) { index, count in
            if let index { buckets.append((index, count)) } else { zeroCount = count }
        }
        return (zeroCount, buckets)
    }
}
