import XCTest

@testable import HoptraceCore

final class FlowTableTests: XCTestCase {
    static func flow(_ i: Int) -> FlowKey {
        FlowKey(source: IPAddress(bytes: [10, 1, UInt8(i >> 8 & 0xff), UInt8(i & 0xff)]),
                destination: IPAddress(bytes: [10, 2, 0, 1]), sourcePort: UInt16(1024 + i % 50_000),
                destinationPort: 80, proto: 6, family: 4)
    }

    func record(flow i: Int, ts: UInt64, total: UInt32 = 1000, gso: UInt16 = 1) -> HopRecord {
        let key = Self.flow(i)
        return HopRecord(timestampNs: ts, qdiscNs: total, length: 100, from: Endpoint(netns: 1, ifindex: 2),
                         to: Endpoint(netns: 3, ifindex: 4), gsoSegments: gso, flags: [.firstHop], flow: key)
    }

    /// 30,000 flows through a 10,000-flow table: never more than 10,000 kept, the
    /// idlest folded, and no packet lost from the totals.
    func testBoundedAndNothingDroppedSilently() {
        var t = FlowTable(capacity: 10_000)
        var maxCount = 0
        for i in 0..<30_000 {
            t.add(record(flow: i, ts: UInt64(i), gso: 2))
            maxCount = max(maxCount, t.count)
        }
        XCTAssertLessThanOrEqual(maxCount, 10_000)
        XCTAssertEqual(t.stats.reduce(0) { $0 + $1.packets } + t.folded.packets, 60_000)
        XCTAssertEqual(UInt64(t.count) + t.foldedFlows, 30_000)
        // the most recent flows survive, the oldest are folded
        XCTAssertNotNil(t[record(flow: 29_999, ts: 0).flow])
        XCTAssertNil(t[record(flow: 0, ts: 0).flow])
        // histogram memory: a few KiB per flow at most
        XCTAssertLessThan(t.histogramBytes, 10_001 * 4096)
    }

    func testActiveFlowIsNotFolded() {
        var t = FlowTable(capacity: 16)
        for i in 0..<100 {
            t.add(record(flow: 0, ts: UInt64(i * 2)))       // flow 0 stays busy
            t.add(record(flow: i + 1, ts: UInt64(i * 2 + 1)))
        }
        XCTAssertEqual(t[record(flow: 0, ts: 0).flow]?.packets, 100)
    }

    func testAggregateByHopAndDelivery() {
        var a = TraceAggregate()
        let hop1 = HopKey(from: Endpoint(netns: 1, ifindex: 2), to: Endpoint(netns: 3, ifindex: 4))
        for i in 0..<10 {
            var r = record(flow: 1, ts: UInt64(i))
            r.vethNs = 500
            a.add(r)
            var d = r
            d.kind = .deliver
            d.deliverNs = 2000
            d.qdiscNs = 0
            d.vethNs = 0
            d.flags = []
            a.add(d) // under the hop that brought the packet (its `from`)
        }
        XCTAssertEqual(a[hop1]?.records, 10)
        XCTAssertEqual(a[hop1]?.packets, 10)
        XCTAssertEqual(a[hop1]?.segments[Segment.veth.rawValue].max, 500)
        XCTAssertEqual(a[hop1]?.segment(.deliver)?.count, 10)
        XCTAssertEqual(a.packetsFollowed, 10)
        let report = Report(aggregate: a, names: NameTable(), durationSeconds: 1, counters: TracerCounters(),
                            sampling: Sampling())
        XCTAssertEqual(report.hops.count, 1)
        XCTAssertEqual(report.hops[0].segments["deliver"]?.count, 10)
        XCTAssertEqual(report.hops[0].total.p50Ns, 1500)
        XCTAssertEqual(report.flows.first?.packets, 10)
    }
}
