import XCTest

@testable import HoptraceCore

/// The live view's intervals: the difference of two cumulative samples is what
/// happened between them, whatever happened before.
final class LiveTests: XCTestCase {
    /// A histogram minus an earlier copy of itself is the histogram of what came since.
    func testSubtractingGivesTheValuesRecordedSince() {
        var rng = SystemRandomNumberGenerator()
        var cumulative = Histogram(), since = Histogram()
        for _ in 0..<20_000 { cumulative.record(UInt64.random(in: 100...80_000, using: &rng)) }
        let earlier = cumulative
        for _ in 0..<5_000 {
            let v = UInt64.random(in: 1_000...9_000, using: &rng)
            cumulative.record(v)
            since.record(v)
        }
        let d = cumulative.subtracting(earlier)
        XCTAssertEqual(d.count, since.count)
        XCTAssertEqual(d.sum, since.sum)
        XCTAssertEqual(d.counts.count, since.counts.count)
        XCTAssertEqual(d.counts, since.counts)
        for q in [0.5, 0.9, 0.99] { XCTAssertEqual(d.value(atQuantile: q), since.value(atQuantile: q), "q \(q)") }
        // the extremes did not move overall, so they are the buckets' bounds: within the precision
        XCTAssertEqual(Double(d.max), Double(since.max), accuracy: Double(since.max) / 64)
        XCTAssertEqual(Double(d.min), Double(since.min), accuracy: Double(since.min) / 64)
        // a new overall maximum is the interval's own, exactly
        cumulative.record(1_000_000)
        XCTAssertEqual(cumulative.subtracting(earlier).max, 1_000_000)
        XCTAssertEqual(cumulative.subtracting(cumulative).count, 0)
        // started afresh in between (a hop forgotten and seen again): all of it, even
        // with more values than before, as long as one bucket lost some
        var afresh = Histogram()
        for v in stride(from: UInt64(1_000), to: 9_000_000, by: 300) { afresh.record(v) }
        XCTAssertGreaterThan(afresh.count, earlier.count)
        XCTAssertFalse(afresh.follows(earlier))
        XCTAssertEqual(afresh.subtracting(earlier), afresh)
        XCTAssertTrue(cumulative.follows(earlier))
    }

    static let a = Endpoint(netns: 1, ifindex: 2), b = Endpoint(netns: 3, ifindex: 4)
    static let flow = FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                              sourcePort: 1000, destinationPort: 80, proto: 17, family: 4)

    func sample(_ aggregate: TraceAggregate, at seconds: Double, consumerNs: UInt64 = 0,
                softirq: [[SoftirqCounters]]? = nil) -> LiveSample {
        var names = NameTable()
        names.netns = [1: "web", 3: "host"]
        names.devices = [Self.a: "eth0", Self.b: "veth1"]
        return LiveSample(monotonicNs: UInt64(seconds * 1e9), aggregate: aggregate, names: names, softirq: softirq,
                          consumerCPUNs: consumerNs, bpfRunNs: nil)
    }

    /// Packets/s, percentiles, drops/s and their reason are those of the interval only.
    func testIntervalCountsOnlyWhatCameBetweenTheSamples() {
        var agg = TraceAggregate()
        // before: 1,000 slow packets
        for i in 0..<1_000 { agg.add(HopRecord(timestampNs: UInt64(i), backlogNs: 900_000, from: Self.a, to: Self.b, flow: Self.flow)) }
        let first = sample(agg, at: 10)
        // the interval (2 s): 400 fast packets, 2 of them GSO pairs, and 6 drops of two reasons
        for i in 0..<400 {
            agg.add(HopRecord(timestampNs: UInt64(2_000 + i), backlogNs: UInt32(10_000 + i), from: Self.a, to: Self.b,
                              gsoSegments: i < 2 ? 2 : 1, flow: Self.flow))
        }
        for r: UInt32 in [2, 2, 2, 2, 5, 5] {
            agg.add(HopRecord(timestampNs: 3_000, dropReason: r, from: Self.a, to: Self.b, kind: .drop, flow: Self.flow))
        }
        let interval = LiveInterval(from: first, to: sample(agg, at: 12, consumerNs: 20_000_000), unixTime: 0,
                                    dropReasons: DropReasons(names: [2: "NO_SOCKET", 5: "OTHER"]))
        XCTAssertEqual(interval.seconds, 2)
        XCTAssertEqual(interval.hops.count, 1)
        let h = interval.hops[0]
        XCTAssertEqual(h.hop, "web/eth0 -> host/veth1")
        XCTAssertEqual(h.records, 400)
        XCTAssertEqual(h.packetsPerSecond, 201)
        XCTAssertLessThan(h.p99Ns, 10_500) // the slow packets before do not count
        XCTAssertGreaterThanOrEqual(h.p50Ns, 10_000)
        XCTAssertEqual(Double(h.maxNs), 10_399, accuracy: 10_399.0 / 64)
        XCTAssertEqual(h.dropsPerSecond, 3)
        XCTAssertEqual(h.topDropReason, "NO_SOCKET")
        XCTAssertEqual(interval.cost.consumerPercent, 1, accuracy: 1e-9)
        XCTAssertNil(interval.cost.bpfPercent)
        // 1 packet in 10 followed: each stands for 10, packets and drops alike
        var sampledBefore = first, sampledNow = sample(agg, at: 12)
        sampledBefore.sampling = Sampling(every: 10)
        sampledNow.sampling = Sampling(every: 10)
        let sampled = LiveInterval(from: sampledBefore, to: sampledNow, unixTime: 0, dropReasons: DropReasons())
        XCTAssertEqual(sampled.hops[0].packetsPerSecond, 2_010)
        XCTAssertEqual(sampled.hops[0].dropsPerSecond, 30)
        XCTAssertEqual(sampled.hops[0].records, 400, "records stay what was measured")
        XCTAssertEqual(sampled.sampling.every, 10)
        // BPF cost only between two readings that worked: a failed one (0) gives none, not 1e21 %
        var bpfBefore = first, bpfNow = sample(agg, at: 12)
        bpfBefore.bpfRunNs = 5_000_000
        bpfNow.bpfRunNs = 25_000_000
        XCTAssertEqual(LiveInterval(from: bpfBefore, to: bpfNow, unixTime: 0, dropReasons: DropReasons()).cost.bpfPercent ?? 0,
                       1, accuracy: 1e-9)
        bpfNow.bpfRunNs = 0
        XCTAssertNil(LiveInterval(from: bpfBefore, to: bpfNow, unixTime: 0, dropReasons: DropReasons()).cost.bpfPercent)
        // nothing more: the hop is left out of the next interval
        let later = LiveInterval(from: sample(agg, at: 12), to: sample(agg, at: 13), unixTime: 0, dropReasons: DropReasons())
        XCTAssertTrue(later.hops.isEmpty)
    }

    /// Softirq figures per CPU are of the interval: busy %, ksoftirqd share, raise -> run p99.
    func testSoftirqOfTheInterval() {
        func counters(runNs: UInt64, ksoftirqdNs: UInt64, delays: [UInt64]) -> [[SoftirqCounters]] {
            var rx = SoftirqCounters()
            rx.runNs = runNs
            rx.ksoftirqdNs = ksoftirqdNs
            rx.delayBuckets = Array(repeating: 0, count: SoftirqCounters.buckets)
            rx.runBuckets = rx.delayBuckets
            for d in delays { rx.delayBuckets[SoftirqCounters.bucket(d)] += 1; rx.maxDelayNs = max(rx.maxDelayNs, d) }
            rx.delays = UInt64(delays.count)
            var tx = SoftirqCounters()
            tx.runBuckets = rx.runBuckets
            tx.delayBuckets = rx.runBuckets
            return [[tx, rx]]
        }
        let before = counters(runNs: 5_000_000_000, ksoftirqdNs: 5_000_000_000, delays: Array(repeating: 900_000, count: 100))
        let now = counters(runNs: 5_000_000_000 + 100_000_000, ksoftirqdNs: 5_000_000_000 + 25_000_000,
                           delays: Array(repeating: 900_000, count: 100) + Array(repeating: 2_000, count: 1_000))
        let agg = TraceAggregate()
        let interval = LiveInterval(from: sample(agg, at: 1, softirq: before), to: sample(agg, at: 2, softirq: now),
                                    unixTime: 0, dropReasons: DropReasons())
        XCTAssertEqual(interval.softirq.count, 1)
        XCTAssertEqual(interval.softirq[0].busyPercent, 10)
        XCTAssertEqual(interval.softirq[0].ksoftirqdPercent, 25)
        // the slow raises of before are not in this interval's p99
        XCTAssertEqual(Double(interval.softirq[0].raiseToRunP99Ns), 2_000, accuracy: 2_000 * 0.125)
    }
}
