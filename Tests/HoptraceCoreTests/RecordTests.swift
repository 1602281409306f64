import CHoptraceABI
import XCTest

@testable import HoptraceCore

final class RecordTests: XCTestCase {
    static let flowA = FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                               sourcePort: 40000, destinationPort: 80, proto: 6, family: 4)

    /// The Swift decoder's offsets are the C header's: a change to one without the
    /// other fails here.
    func testLayoutMatchesABIHeader() {
        XCTAssertEqual(MemoryLayout<ht_hop_record>.size, RecordLayout.size)
        XCTAssertEqual(Int(HT_ABI_VERSION), RecordLayout.abiVersion)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.ts_ns), RecordLayout.timestamp)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.seg_ns), RecordLayout.segments)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.len), RecordLayout.length)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.from_netns), RecordLayout.fromNetns)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.to_netns), RecordLayout.toNetns)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.from_ifindex), RecordLayout.fromIfindex)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.to_ifindex), RecordLayout.toIfindex)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.gso_segs), RecordLayout.gsoSegments)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.kind), RecordLayout.kind)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.flags), RecordLayout.flags)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.cpu), RecordLayout.cpu)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.hop_index), RecordLayout.hopIndex)
        XCTAssertEqual(MemoryLayout<ht_hop_record>.offset(of: \.flow), RecordLayout.flow)
        XCTAssertEqual(MemoryLayout<ht_flow_key>.offset(of: \.daddr), RecordLayout.flowDestination)
        XCTAssertEqual(MemoryLayout<ht_flow_key>.offset(of: \.sport), RecordLayout.flowSourcePort)
        XCTAssertEqual(MemoryLayout<ht_flow_key>.offset(of: \.dport), RecordLayout.flowDestinationPort)
        XCTAssertEqual(MemoryLayout<ht_flow_key>.offset(of: \.proto), RecordLayout.flowProto)
        XCTAssertEqual(MemoryLayout<ht_flow_key>.offset(of: \.family), RecordLayout.flowFamily)
        XCTAssertEqual(Int(HT_SEG_COUNT.rawValue), Segment.allCases.count)
        XCTAssertEqual(MemoryLayout<ht_softirq_stats>.size, SoftirqCounters.size)
        XCTAssertEqual(MemoryLayout<ht_softirq_cpu>.offset(of: \.vec), 0)
        XCTAssertEqual(Int(HT_SIRQ_BUCKETS), SoftirqCounters.buckets)
        XCTAssertEqual(Int(HT_SEG_BACKLOG.rawValue), Segment.backlog.rawValue)
    }

    /// Decoding a record the C compiler laid out gives back every field.
    func testDecodesAStructBuiltInC() throws {
        var c = ht_hop_record()
        c.ts_ns = 123_456_789_000
        c.seg_ns = (11, 22, 33, 44, 55)
        c.len = 1514
        c.from_netns = 4026532001
        c.to_netns = 4026532002
        c.from_ifindex = 3
        c.to_ifindex = 7
        c.gso_segs = 4
        c.kind = UInt8(HT_REC_HOP.rawValue)
        c.flags = UInt8(HT_F_FIRST_HOP.rawValue)
        c.cpu = 1
        c.hop_index = 2
        c.flow.saddr.0 = 10; c.flow.saddr.3 = 1
        c.flow.daddr.0 = 10; c.flow.daddr.3 = 2
        c.flow.sport = 40000
        c.flow.dport = 80
        c.flow.proto = 6
        c.flow.family = 4
        let r = try withUnsafeBytes(of: &c) { try HopRecord(decoding: $0, at: 0) }
        XCTAssertEqual(r.timestampNs, 123_456_789_000)
        let segments: [UInt32] = [r.forwardNs, r.qdiscNs, r.vethNs, r.backlogNs, r.deliverNs]
        XCTAssertEqual(segments, [11, 22, 33, 44, 55])
        XCTAssertEqual(r.length, 1514)
        XCTAssertEqual(r.from, Endpoint(netns: 4026532001, ifindex: 3))
        XCTAssertEqual(r.to, Endpoint(netns: 4026532002, ifindex: 7))
        XCTAssertEqual(r.gsoSegments, 4)
        XCTAssertEqual(r.kind, .hop)
        XCTAssertEqual(r.flags, .firstHop)
        XCTAssertEqual(r.hopIndex, 2)
        XCTAssertEqual(r.flow, Self.flowA)
        XCTAssertEqual(r.flow.description, "tcp 10.0.0.1:40000 -> 10.0.0.2:80")
        XCTAssertEqual(r.totalNs, UInt64(165))
    }

    func testEncodeDecodeRoundTripAndBatch() throws {
        let v6 = FlowKey(source: IPAddress(bytes: [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
                         destination: IPAddress(bytes: [0xfd] + [UInt8](repeating: 0, count: 14) + [2]),
                         sourcePort: 1, destinationPort: 2, proto: 17, family: 6)
        var records: [HopRecord] = []
        for i in 0..<50 {
            let kind: HopRecord.Kind = i % 5 == 0 ? .deliver : .hop
            let flags: HopRecord.Flags = i % 2 == 0 ? [.firstHop] : []
            let flow = i % 2 == 0 ? Self.flowA : v6
            records.append(HopRecord(timestampNs: UInt64(i) * 1000, forwardNs: UInt32(i), qdiscNs: 7, vethNs: 8,
                                     backlogNs: 9, length: 100, from: Endpoint(netns: 1, ifindex: 2),
                                     to: Endpoint(netns: 3, ifindex: 4), gsoSegments: 1, kind: kind, flags: flags,
                                     cpu: 1, hopIndex: UInt16(i % 3), flow: flow))
        }
        var bytes = [UInt8](repeating: 0xff, count: records.count * RecordLayout.size)
        bytes.withUnsafeMutableBytes { raw in
            for (i, r) in records.enumerated() { r.encode(into: raw, at: i * RecordLayout.size) }
        }
        let decoded = try bytes.withUnsafeBytes { raw in
            try (0..<records.count).map { try HopRecord(decoding: raw, at: $0 * RecordLayout.size) }
        }
        XCTAssertEqual(decoded, records)
        XCTAssertEqual(v6.description, "udp [fd00::1]:1 -> [fd00::2]:2")

        // the column decoder (what a live trace uses) gives the same records
        var numbering = RecordNumbering()
        let columns = try bytes.withUnsafeBytes { try RecordColumns(decoding: $0, numbering: &numbering) }
        XCTAssertEqual((0..<columns.count).map { columns[$0] }, records)
        XCTAssertEqual(columns.flows.count, 2)
        XCTAssertEqual(columns.hops.count, 1)
        XCTAssertNotEqual(columns.numbering, 0)

        var agg = TraceAggregate()
        let handed = try bytes.withUnsafeBytes { try agg.add(batch: $0) }
        XCTAssertEqual((0..<handed.count).map { handed[$0] }, records)
        XCTAssertEqual(agg.records, 50)
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try agg.add(batch: UnsafeRawBufferPointer(rebasing: $0[0..<100])) })
    }

    func testUnknownKindIsAnError() {
        var bytes = [UInt8](repeating: 0, count: RecordLayout.size)
        bytes[RecordLayout.kind] = 9
        XCTAssertThrowsError(try bytes.withUnsafeBytes { try HopRecord(decoding: $0, at: 0) }) { e in
            XCTAssertEqual(e as? RecordDecodingError, .unknownKind(9, offset: 0))
        }
        var batch = [UInt8](repeating: 0, count: 3 * RecordLayout.size)
        for i in 0..<3 { batch[i * RecordLayout.size + RecordLayout.kind] = 1 }
        var numbering = RecordNumbering()
        // 0x11: a kind whose low four bits are a known one is still unknown
        for bad: UInt8 in [9, 0x11] {
            batch[2 * RecordLayout.size + RecordLayout.kind] = bad
            XCTAssertThrowsError(try batch.withUnsafeBytes { try RecordColumns(decoding: $0, numbering: &numbering) }) { e in
                XCTAssertEqual(e as? RecordDecodingError, .unknownKind(bad, offset: 2 * RecordLayout.size))
            }
        }
    }
}
