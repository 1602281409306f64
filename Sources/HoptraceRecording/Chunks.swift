import HoptraceCore

/// Encodes records column by column (each column compresses well on its own):
/// timestamps as zigzag deltas, flows and hops as ids into dictionaries that
/// grow through the file (a chunk carries the entries it adds), the rest as varints.
struct RecordEncoder {
    private var flowIDs: [FlowKey: UInt32] = [:]
    private var hopIDs: [HopKey: UInt32] = [:]
    private var flows: [FlowKey] = []
    private var hops: [HopKey] = []
    /// Direct-mapped caches in front of the dictionaries (slot from the key's
    /// mix): most records repeat a recent flow and hop and skip hashing.
    private var flowCache = [Int32](repeating: -1, count: 4096)
    private var lastHop: Int32 = -1
    private var newFlowsFrom = 0
    private var newHopsFrom = 0
    private var pending = RecordChunk()

    var count: Int { pending.records.count }

    mutating func add(_ r: HopRecord) {
        let slot = Int(truncatingIfNeeded: r.flow.mixed) & (flowCache.count - 1)
        var flow = flowCache[slot]
        if flow < 0 || flows[Int(flow)] != r.flow {
            if let id = flowIDs[r.flow] {
                flow = Int32(id)
            } else {
                flow = Int32(flows.count)
                flowIDs[r.flow] = UInt32(flow)
                flows.append(r.flow)
            }
            flowCache[slot] = flow
        }
        let hop = HopKey(from: r.from, to: r.to)
        if lastHop < 0 || hops[Int(lastHop)] != hop {
            if let id = hopIDs[hop] {
                lastHop = Int32(id)
            } else {
                lastHop = Int32(hops.count)
                hopIDs[hop] = UInt32(lastHop)
                hops.append(hop)
            }
        }
        pending.records.append(r)
        pending.flowIDs.append(UInt32(flow))
        pending.hopIDs.append(UInt32(lastHop))
    }

    /// What was added since the last call, with the dictionary entries it added,
    /// ready to encode (on any thread), and resets.
    mutating func takeChunk() -> RecordChunk {
        var chunk = pending
        chunk.newFlows = Array(flows[newFlowsFrom...])
        chunk.newHops = Array(hops[newHopsFrom...])
        newFlowsFrom = flows.count
        newHopsFrom = hops.count
        pending = RecordChunk()
        pending.records.reserveCapacity(chunk.records.count)
        pending.flowIDs.reserveCapacity(chunk.records.count)
        pending.hopIDs.reserveCapacity(chunk.records.count)
        return chunk
    }
}

/// One chunk's records and the flow and hop ids they use, before encoding.
struct RecordChunk: Sendable {
    var records: [HopRecord] = []
    var flowIDs: [UInt32] = []
    var hopIDs: [UInt32] = []
    var newFlows: [FlowKey] = []
    var newHops: [HopKey] = []

    /// The chunk payload. Records are stored in time order (the kernel hands them
    /// over per CPU), which keeps the timestamp deltas small; analysis never
    /// depends on file order.
    func encoded() -> [UInt8] {
        // sort an index, not the 100-byte records
        let order = records.indices.sorted { records[$0].timestampNs < records[$1].timestampNs }
        let pending = order.lazy.map { records[$0] }
        var w = ByteWriter()
        w.bytes.reserveCapacity(records.count * 12 + newFlows.count * 40 + 64)
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
        for i in order { w.varint(UInt64(flowIDs[i])) }
        for i in order { w.varint(UInt64(hopIDs[i])) }
        for r in pending { w.varint(UInt64(r.forwardNs)) }
        for r in pending { w.varint(UInt64(r.qdiscNs)) }
        for r in pending { w.varint(UInt64(r.vethNs)) }
        for r in pending { w.varint(UInt64(r.backlogNs)) }
        for r in pending { w.varint(UInt64(r.kind == .drop ? r.dropReason : r.deliverNs)) }
        for r in pending { w.varint(UInt64(r.length)) }
        for r in pending { w.varint(UInt64(r.gsoSegments)) }
        for r in pending { w.varint(UInt64(r.cpu)) }
        for r in pending { w.varint(UInt64(r.hopIndex)) }
        return w.bytes
    }
}

/// Decodes what `RecordEncoder` wrote, keeping the dictionaries across chunks.
struct RecordDecoder {
    private var flows: [FlowKey] = []
    private var hops: [HopKey] = []
    /// A file's ids are one numbering: the aggregates cache slots by them.
    private let numbering = RecordNumbering.unique()

    mutating func decode(_ payload: [UInt8]) throws(RecordingError) -> RecordColumns {
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
        guard n == 0 || (!flows.isEmpty && !hops.isEmpty) else { throw .corrupt("records without flows or hops") }
        var c = RecordColumns()
        c.numbering = numbering
        let first = try r.u64()
        c.kindFlags = Array(try r.take(n))
        for k in c.kindFlags where HopRecord.Kind(rawValue: k >> 4) == nil { throw .corrupt("unknown record kind") }
        c.timestampNs = try r.deltaColumn(n, from: first)
        func column<T: FixedWidthInteger>(_: T.Type, max: T = .max) throws(RecordingError) -> [T] {
            try r.varints(n, as: T.self, max: max)
        }
        c.flowIDs = try column(Int32.self, max: Int32(clamping: max(0, flows.count - 1)))
        c.hopIDs = try column(Int32.self, max: Int32(clamping: max(0, hops.count - 1)))
        c.forwardNs = try column(UInt32.self)
        c.qdiscNs = try column(UInt32.self)
        c.vethNs = try column(UInt32.self)
        c.backlogNs = try column(UInt32.self)
        c.lastSlot = try column(UInt32.self)
        c.length = try column(UInt32.self)
        c.gsoSegments = try column(UInt16.self)
        c.cpu = try column(UInt16.self)
        c.hopIndex = try column(UInt16.self)
        guard r.remaining == 0 else { throw .corrupt("\(r.remaining) stray bytes after the records") }
        c.flows = flows
        c.hops = hops
        return c
    }
}
