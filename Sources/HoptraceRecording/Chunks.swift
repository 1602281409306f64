import HoptraceCore

/// Encodes records column by column (each column compresses well on its own):
/// timestamps as zigzag deltas, flows and hops as ids into dictionaries that
/// grow through the file (a chunk carries the entries it adds), the rest as varints.
struct RecordEncoder {
    private var numbering = RecordNumbering()
    private var newFlowsFrom = 0
    private var newHopsFrom = 0
    private var pending = RecordColumns()

    var count: Int { pending.count }

    mutating func add(_ r: HopRecord) { numbering.append(r, to: &pending) }

    mutating func add(_ c: RecordColumns, rows: Range<Int>) { numbering.append(c, rows: rows, to: &pending) }

    /// What was added since the last call, with the dictionary entries it added,
    /// ready to encode (on any thread), and resets.
    mutating func takeChunk() -> RecordChunk {
        let chunk = RecordChunk(columns: pending, newFlows: Array(numbering.flows[newFlowsFrom...]),
                                newHops: Array(numbering.hops[newHopsFrom...]))
        newFlowsFrom = numbering.flows.count
        newHopsFrom = numbering.hops.count
        pending = RecordColumns()
        pending.reserveCapacity(chunk.columns.count)
        return chunk
    }
}

/// One chunk's records, numbered in the file's numbering, before encoding.
struct RecordChunk: Sendable {
    var columns: RecordColumns
    var newFlows: [FlowKey]
    var newHops: [HopKey]

    /// The chunk payload. Records are stored in time order (the kernel hands them
    /// over per CPU), which keeps the timestamp deltas small; analysis never
    /// depends on file order.
    func encoded() -> [UInt8] {
        let c = columns
        // sort an index, not the columns (nearly sorted already: per-CPU runs)
        let order = (0..<c.count).sorted { c.timestampNs[$0] < c.timestampNs[$1] }
        var w = ByteWriter()
        w.bytes.reserveCapacity(c.count * 16 + newFlows.count * 40 + 64)
        w.varint(UInt64(c.count))
        w.varint(UInt64(newFlows.count))
        for f in newFlows {
            w.u64(f.source.high); w.u64(f.source.low); w.u64(f.destination.high); w.u64(f.destination.low)
            w.u16(f.sourcePort); w.u16(f.destinationPort); w.u8(f.proto); w.u8(f.family)
        }
        w.varint(UInt64(newHops.count))
        for h in newHops { w.u32(h.from.netns); w.u32(h.from.ifindex); w.u32(h.to.netns); w.u32(h.to.ifindex) }
        let first = order.first.map { c.timestampNs[$0] } ?? 0
        w.u64(first)
        for i in order { w.u8(c.kindFlags[i]) }
        var last = Int64(bitPattern: first)
        for i in order {
            let ts = Int64(bitPattern: c.timestampNs[i])
            w.zigzag(ts &- last)
            last = ts
        }
        func column<T: FixedWidthInteger>(_ values: [T]) { for i in order { w.varint(UInt64(values[i])) } }
        column(c.flowIDs)
        column(c.hopIDs)
        column(c.forwardNs)
        column(c.qdiscNs)
        column(c.vethNs)
        column(c.backlogNs)
        column(c.lastSlot)
        column(c.length)
        column(c.gsoSegments)
        column(c.cpu)
        column(c.hopIndex)
        return w.bytes
    }
}

/// Decodes what `RecordEncoder` wrote, keeping the dictionaries across chunks.
struct RecordDecoder {
    /// Flag bits the file's version used for something else, cleared when read
    /// (format 2 and 1 set 4 for IPv6; it now means "no qdisc").
    var retiredFlags: UInt8 = 0
    private var flows: [FlowKey] = []
    private var hops: [HopKey] = []
    /// File id -> id in the chunk being decoded (-1 between chunks).
    private var flowInChunk: [Int32] = []
    private var hopInChunk: [Int32] = []

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
        let first = try r.u64()
        c.kindFlags = Array(try r.take(n))
        for k in c.kindFlags where HopRecord.Kind(rawValue: k >> 4) == nil { throw .corrupt("unknown record kind") }
        if retiredFlags != 0 { for i in c.kindFlags.indices { c.kindFlags[i] &= ~retiredFlags } }
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
        // the chunk carries only the flows and hops it uses, numbered on their own:
        // handing each chunk the file's tables would copy them whole for every chunk
        // still queued, and cost every chunk the size of the file's tables
        (c.flowIDs, c.flows) = Self.inChunk(c.flowIDs, of: flows, map: &flowInChunk)
        (c.hopIDs, c.hops) = Self.inChunk(c.hopIDs, of: hops, map: &hopInChunk)
        return c
    }

    /// `ids` renumbered from 0 in the order they first appear, with their keys.
    private static func inChunk<Key>(_ ids: [Int32], of table: [Key], map: inout [Int32]) -> ([Int32], [Key]) {
        if map.count < table.count { map.append(contentsOf: repeatElement(-1, count: table.count - map.count)) }
        var keys: [Key] = [], used: [Int32] = []
        let renumbered = ids.map { id -> Int32 in
            let i = Int(id)
            if map[i] < 0 {
                map[i] = Int32(keys.count)
                keys.append(table[i])
                used.append(id)
            }
            return map[i]
        }
        for id in used { map[Int(id)] = -1 }
        return (renumbered, keys)
    }
}
