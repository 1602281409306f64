/// A log-linear latency histogram: exact below `2^precisionBits`, then each power of
/// two split into `2^(precisionBits-1)` buckets, so any value is reported within
/// `2^-(precisionBits)` of itself (0.8 % at the default of 7 bits).
///
/// Memory is bounded by the largest value seen: at most
/// `(65 - precisionBits) * 2^(precisionBits-1) + 2^(precisionBits-1)` counters.
/// Histograms with the same precision merge exactly.
public struct Histogram: Sendable, Equatable {
    public let precisionBits: Int
    // stored as @usableFromInline so `record` inlines into other modules (recordings
    // are read at millions of records per second); read through the public getters
    @usableFromInline var _counts: [UInt64] = []
    @usableFromInline var _count: UInt64 = 0
    @usableFromInline var _sum: UInt64 = 0
    @usableFromInline var _min: UInt64 = .max
    @usableFromInline var _max: UInt64 = 0

    public var counts: [UInt64] { _counts }
    public var count: UInt64 { _count }
    public var sum: UInt64 { _sum }
    public var min: UInt64 { _min }
    public var max: UInt64 { _max }

    public init(precisionBits: Int = 7) {
        precondition((2...16).contains(precisionBits), "precisionBits must be in 2...16")
        self.precisionBits = precisionBits
    }

    @inlinable @inline(__always)
    public func bucketIndex(_ value: UInt64) -> Int { Self.bucketIndex(value, precisionBits: precisionBits) }

    @inlinable @inline(__always)
    static func bucketIndex(_ value: UInt64, precisionBits: Int) -> Int {
        // wrapping operators: every shift is in 0..<64 here, and no check per value
        // is left in the loops that record millions of them
        if value < UInt64(1) &<< UInt64(precisionBits) { return Int(truncatingIfNeeded: value) }
        let msb = 63 &- value.leadingZeroBitCount
        let shift = msb &- (precisionBits &- 1)
        return (shift &<< (precisionBits &- 1)) &+ Int(truncatingIfNeeded: value &>> UInt64(truncatingIfNeeded: shift))
    }

    /// The lowest and highest value that land in bucket `index`.
    public func bucketRange(_ index: Int) -> ClosedRange<UInt64> {
        let exact = 1 << precisionBits
        if index < exact { return UInt64(index)...UInt64(index) }
        let half = 1 << (precisionBits - 1)
        let shift = index / half - 1
        let mantissa = UInt64(index - shift * half)
        return (mantissa << UInt64(shift))...(((mantissa + 1) << UInt64(shift)) - 1)
    }

    @inlinable @inline(__always)
    public mutating func record(_ value: UInt64, count n: UInt64 = 1) {
        let i = bucketIndex(value)
        if i >= _counts.count { _counts.append(contentsOf: repeatElement(0, count: i + 1 - _counts.count)) }
        _counts[i] &+= n
        _count &+= n
        _sum &+= value &* n
        if value < _min { _min = value }
        if value > _max { _max = value }
    }

    /// Records a run of values: the counters grow once, for the largest, and are
    /// then added to without a check per value (reading recordings, whole chunks).
    @inlinable
    public mutating func record(_ values: UnsafeBufferPointer<UInt64>) {
        var lo = UInt64.max, hi: UInt64 = 0, sum: UInt64 = 0
        for v in values {
            lo = Swift.min(lo, v)
            hi = Swift.max(hi, v)
            sum &+= v
        }
        record(values, min: lo, max: hi, sum: sum)
    }

    /// `record(_:)` when the caller has the run's extremes and sum already.
    @inlinable
    mutating func record(_ values: UnsafeBufferPointer<UInt64>, min lo: UInt64, max hi: UInt64, sum: UInt64) {
        guard !values.isEmpty else { return }
        let top = bucketIndex(hi)
        if top >= _counts.count { _counts.append(contentsOf: repeatElement(0, count: top + 1 - _counts.count)) }
        let bits = precisionBits
        _counts.withUnsafeMutableBufferPointer { counts in
            // every value's bucket is at most the largest value's: in bounds
            for v in values { counts.baseAddress![Self.bucketIndex(v, precisionBits: bits)] &+= 1 }
        }
        _count &+= UInt64(values.count)
        _sum &+= sum
        if lo < _min { _min = lo }
        if hi > _max { _max = hi }
    }

    public mutating func merge(_ other: Histogram) {
        precondition(other.precisionBits == precisionBits, "merging histograms of different precision")
        if other._count == 0 { return }
        if other._counts.count > _counts.count {
            _counts.append(contentsOf: repeatElement(0, count: other._counts.count - _counts.count))
        }
        for (i, c) in other._counts.enumerated() where c != 0 { _counts[i] &+= c }
        _count &+= other._count
        _sum &+= other._sum
        _min = Swift.min(_min, other._min)
        _max = Swift.max(_max, other._max)
    }

    /// What was recorded since `earlier`, a copy of this histogram taken before
    /// (the live view's interval from two cumulative snapshots). Counts and sum are
    /// exact. The extremes are the interval's own where the cumulative ones moved,
    /// else the bounds of its lowest and highest bucket (within the precision).
    /// An `earlier` this one does not `follow` (it was started afresh in between)
    /// gives all of this one.
    public func subtracting(_ earlier: Histogram) -> Histogram {
        precondition(earlier.precisionBits == precisionBits, "subtracting histograms of different precision")
        guard follows(earlier) else { return self }
        var d = Histogram(precisionBits: precisionBits)
        guard _count > earlier._count else { return d }
        d._counts = _counts
        for (i, c) in earlier._counts.enumerated() where c != 0 { d._counts[i] &-= c }
        while d._counts.last == 0 { d._counts.removeLast() }
        d._count = _count &- earlier._count
        d._sum = _sum &- earlier._sum
        let low = d._counts.firstIndex { $0 != 0 } ?? 0, high = d._counts.count - 1
        d._min = _min < earlier._min ? _min : Swift.max(_min, bucketRange(low).lowerBound)
        d._max = _max > earlier._max ? _max : Swift.min(_max, bucketRange(high).upperBound)
        return d
    }

    /// Whether this could be `earlier` with values added: no bucket holds fewer.
    public func follows(_ earlier: Histogram) -> Bool {
        earlier._count <= _count && earlier._counts.count <= _counts.count
            && zip(earlier._counts, _counts).allSatisfy { $0 <= $1 }
    }

    /// The same values at a coarser precision: exact, since each bucket of
    /// `bits` is a union of buckets of this precision.
    public func reduced(toPrecision bits: Int) -> Histogram {
        precondition(bits <= precisionBits, "a histogram can only be reduced to a coarser precision")
        var r = Histogram(precisionBits: bits)
        guard _count > 0 else { return r }
        for (i, c) in _counts.enumerated() where c != 0 {
            let j = r.bucketIndex(bucketRange(i).lowerBound)
            if j >= r._counts.count { r._counts.append(contentsOf: repeatElement(0, count: j + 1 - r._counts.count)) }
            r._counts[j] &+= c
        }
        r._count = _count
        r._sum = _sum
        r._min = _min
        r._max = _max
        return r
    }

    public var mean: Double { count == 0 ? 0 : Double(sum) / Double(count) }

    /// The value at quantile `q` (0...1): the midpoint of the bucket holding the
    /// `ceil(q * count)`-th smallest value, clamped to the exact min and max.
    public func value(atQuantile q: Double) -> UInt64 {
        if count == 0 { return 0 }
        if q >= 1 { return max }
        let rank = Swift.max(1, UInt64((q * Double(count)).rounded(.up)))
        var seen: UInt64 = 0
        for (i, c) in counts.enumerated() where c != 0 {
            seen += c
            if seen >= rank {
                let r = bucketRange(i)
                let mid = r.lowerBound + (r.upperBound - r.lowerBound) / 2
                return Swift.min(Swift.max(mid, min), max)
            }
        }
        return max
    }

    /// Bytes of counters held, for the memory bound.
    public var footprintBytes: Int { counts.count * MemoryLayout<UInt64>.stride }
}

/// The summary every report prints for a latency: count, mean and percentiles.
public struct LatencySummary: Codable, Sendable, Equatable {
    public var count: UInt64
    public var meanNs: UInt64
    public var p50Ns: UInt64
    public var p90Ns: UInt64
    public var p99Ns: UInt64
    public var p999Ns: UInt64
    public var maxNs: UInt64

    enum CodingKeys: String, CodingKey {
        case count, meanNs = "mean_ns", p50Ns = "p50_ns", p90Ns = "p90_ns", p99Ns = "p99_ns"
        case p999Ns = "p999_ns", maxNs = "max_ns"
    }

    public init(_ h: Histogram) {
        count = h.count
        meanNs = UInt64(h.mean.rounded())
        p50Ns = h.value(atQuantile: 0.5)
        p90Ns = h.value(atQuantile: 0.9)
        p99Ns = h.value(atQuantile: 0.99)
        p999Ns = h.value(atQuantile: 0.999)
        maxNs = h.count == 0 ? 0 : h.max
    }
}
