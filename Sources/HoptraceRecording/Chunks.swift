import HoptraceCore

/// Encodes records column by column (each column compresses well on its own):
/// timestamps as zigzag deltas, flows and hops as ids into dictionaries that
/// grow through the file (a chunk carries the entries it adds), the rest as varints.
struct RecordEncoder {
    private var flowIDs: [FlowKey: UInt32] = [:]
    private var hopIDs: [HopKey: UInt32] = [:]
    private var newFlows: [FlowKey] = []
    private var newHops: [HopKey] = []
    private var pending: [HopRecord] = []

    var count: Int { pending.count }

    mutating func add(_ r: HopRecord) {
        if flowIDs[r.flow] == nil {
            flowIDs[r.flow] = UInt32(flowIDs.count)
            newFlows.append(r.flow)
        }
        let hop = HopKey(from: r.from, to: r.to)
        if hopIDs[hop] == nil {
            hopIDs[hop] = UInt32(hopIDs.count)
            newHops.append(hop)
        }
        pending.append(r)
    }

    /// The chunk payload for what was added since the last call, and resets.
    /// Records are stored in time order (the kernel hands them over per CPU), which
    /// keeps the timestamp deltas small; analysis never depends on file order.
    mutating func take() -> [UInt8] {
        pending.sort { $0.timestampNs < $1.timestampNs }
        var w = ByteWriter()
        w.varint(UInt64(pending.count))
        w.varint(UInt64(newFlows.count))
        for f in newFlows {
            w.u64(f.source.high); w.u64(f.source.low); w.u64(f.destination.high); w.u64(f.destination.low)
            w.u16(f.sourcePort); w.u16(f.destinationPort); w.u8(f.proto); w.u8(f.family)
        }
        w.varint(UInt64(newHops.count))
        for h in newHops { w.u32(h.from.netns); w.u32(h.from.ifindex); w.u32(h.to.netns); w.u32(h.to.ifindex) }
        w.u64(pending.first?.timestampNs ?? 0)
        for r in pending { w.u8(r.kind.rawValue << 4 | r.flags.rawValue) }
        var last = Int64(bitPattern: pending.first?.timestampNs ?? 0)
        for r in pending {
            let ts = Int64(bitPattern: r.timestampNs)
            w.zigzag(ts &- last)
            last = ts
        }
        for r in pending { w.varint(UInt64(flowIDs[r.flow]!)) }
        for r in pending { w.varint(UInt64(hopIDs[HopKey(from: r.from, to: r.to)]!)) }
        for r in pending { w.varint(UInt64(r.forwardNs)) }
        for r in pending { w.varint(UInt64(r.qdiscNs)) }
        for r in pending { w.varint(UInt64(r.vethNs)) }
        for r in pending { w.varint(UInt64(r.backlogNs)) }
        for r in pending { w.varint(UInt64(r.kind == .drop ? r.dropReason : r.deliverNs)) }
        for r in pending { w.varint(UInt64(r.length)) }
        for r in pending { w.varint(UInt64(r.gsoSegments)) }
        for r in pending { w.varint(UInt64(r.cpu)) }
        for r in pending { w.varint(UInt64(r.hopIndex)) }
        pending.removeAll(keepingCapacity: true)
        newFlows.removeAll()
        newHops.removeAll()
        return w.bytes
    }
}

/// Decodes what `RecordEncoder` wrote, keeping the dictionaries across chunks.
struct RecordDecoder {
    private var flows: [FlowKey] = []
    private var hops: [HopKey] = []

    mutating func decode(_ payload: [UInt8], _ body: (HopRecord) -> Void) throws(RecordingError) {
        var r = ByteReader(payload)
        // every record takes at least 14 bytes of columns: a count beyond that is corrupt
        let n = try r.varint(as: Int.self, max: payload.count / 14 + 1)
        let newFlows = try r.varint(as: Int.self, max: payload.count / 40 + 1)
        for _ in 0..<newFlows {
            let sh = try r.u64(), sl = try r.u64(), dh = try r.u64(), dl = try r.u64()
            let sp = try r.u16(), dp = try r.u16(), proto = try r.u8(), family = try r.u8()
            flows.append(FlowKey(source: IPAddress(high: sh, low: sl), destination: IPAddress(high: dh, low: dl),
                                 sourcePort: sp, destinationPort: dp, proto: proto, family: family))
        }
        let newHops = try r.varint(as: Int.self, max: payload.count / 16 + 1)
        for _ in 0..<newHops {
            let a = try r.u32(), b = try r.u32(), c = try r.u32(), d = try r.u32()
            hops.append(HopKey(from: Endpoint(netns: a, ifindex: b), to: Endpoint(netns: c, ifindex: d)))
        }
        var ts = try r.u64()
        let kindFlags = Array(try r.take(n))
        var times = [UInt64](repeating: 0, count: n)
        for i in 0..<n {
            ts = UInt64(bitPattern: Int64(bitPattern: ts) &+ (try r.zigzag()))
            times[i] = ts
        }
        func column<T: FixedWidthInteger>(_: T.Type, max: T = .max) throws(RecordingError) -> [T] {
            var out = [T](repeating: 0, count: n)
            for i in 0..<n { out[i] = try r.varint(as: T.self, max: max) }
            return out
        }
        let flowIDs = try column(Int.self, max: max(0, flows.count - 1))
        let hopIDs = try column(Int.self, max: max(0, hops.count - 1))
        let fwd = try column(UInt32.self), qd = try column(UInt32.self), ve = try column(UInt32.self)
        let bl = try column(UInt32.self), last = try column(UInt32.self), len = try column(UInt32.self)
        let gso = try column(UInt16.self), cpu = try column(UInt16.self), idx = try column(UInt16.self)
        guard n == 0 || (!flows.isEmpty && !hops.isEmpty) else { throw .corrupt("records without flows or hops") }
        for i in 0..<n {
            guard let kind = HopRecord.Kind(rawValue: kindFlags[i] >> 4) else { throw .corrupt("unknown record kind") }
            let hop = hops[hopIDs[i]]
            body(HopRecord(timestampNs: times[i], forwardNs: fwd[i], qdiscNs: qd[i], vethNs: ve[i], backlogNs: bl[i],
                           deliverNs: kind == .drop ? 0 : last[i], dropReason: kind == .drop ? last[i] : 0,
                           length: len[i], from: hop.from, to: hop.to, gsoSegments: gso[i], kind: kind,
                           flags: HopRecord.Flags(rawValue: kindFlags[i] & 0x0f), cpu: cpu[i], hopIndex: idx[i],
                           flow: flows[flowIDs[i]]))
        }
        guard r.remaining == 0 else { throw .corrupt("\(r.remaining) stray bytes after the records") }
    }
}
