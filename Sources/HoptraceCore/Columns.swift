import Synchronization

/// Records as columns, one array per field: the form the aggregates take them in.
/// A recording stores its chunks so, a batch from the kernel is put so once, and
/// every histogram is then fed a run of values at a time instead of a record at a
/// time (the difference between about 5 and over 10 M records/s reading a file).
///
/// Flows and hops are numbered: `flowIDs[i]` indexes `flows`, `hopIDs[i]` `hops`.
/// Batches from one source (a live trace, a recording) share a numbering, so the
/// aggregates can find a flow's or hop's slot by its number instead of its key.
public struct RecordColumns: Sendable {
    /// Which numbering the ids are in; 0 for a batch numbered on its own.
    public var numbering = 0
    public var count: Int { kindFlags.count }
    /// `kind << 4 | flags`.
    public var kindFlags: [UInt8] = []
    public var timestampNs: [UInt64] = []
    public var forwardNs: [UInt32] = [], qdiscNs: [UInt32] = [], vethNs: [UInt32] = [], backlogNs: [UInt32] = []
    /// The deliver segment, or a drop's reason (as in the kernel's record).
    public var lastSlot: [UInt32] = []
    public var length: [UInt32] = []
    public var gsoSegments: [UInt16] = [], cpu: [UInt16] = [], hopIndex: [UInt16] = []
    public var flowIDs: [Int32] = []
    public var hopIDs: [Int32] = []
    /// The tables the ids index: the numbering's as they stood after this batch (they
    /// only grow), or, for a recording's chunk (numbered on its own), the ones it uses.
    public var flows: [FlowKey] = []
    public var hops: [HopKey] = []

    public init() {}

    /// `records` numbered on their own (tests, single records).
    public init(_ records: [HopRecord]) {
        var n = RecordNumbering(shared: false)
        for r in records { n.append(r, to: &self) }
        n.finish(&self)
    }

    public mutating func reserveCapacity(_ n: Int) {
        kindFlags.reserveCapacity(n); timestampNs.reserveCapacity(n)
        forwardNs.reserveCapacity(n); qdiscNs.reserveCapacity(n); vethNs.reserveCapacity(n); backlogNs.reserveCapacity(n)
        lastSlot.reserveCapacity(n); length.reserveCapacity(n)
        gsoSegments.reserveCapacity(n); cpu.reserveCapacity(n); hopIndex.reserveCapacity(n)
        flowIDs.reserveCapacity(n); hopIDs.reserveCapacity(n)
    }

    @inlinable @inline(__always) public func kind(_ i: Int) -> HopRecord.Kind { HopRecord.Kind(rawValue: kindFlags[i] >> 4) ?? .hop }
    @inlinable @inline(__always) public func flags(_ i: Int) -> HopRecord.Flags { HopRecord.Flags(rawValue: kindFlags[i] & 0x0f) }

    /// Whether record `i` crossed `segment` (`HopRecord.crossed`).
    @inlinable @inline(__always)
    public func crossed(_ segment: Segment, _ i: Int) -> Bool {
        HopRecord.crossed(segment, kind: kind(i), flags: flags(i), forwardNs: forwardNs[i])
    }

    /// All segments of record `i`, as `HopRecord.totalNs`.
    @inlinable @inline(__always)
    public func totalNs(_ i: Int) -> UInt64 {
        UInt64(forwardNs[i]) &+ UInt64(qdiscNs[i]) &+ UInt64(vethNs[i]) &+ UInt64(backlogNs[i])
            &+ (kindFlags[i] >> 4 == HopRecord.Kind.drop.rawValue ? 0 : UInt64(lastSlot[i]))
    }

    /// Record `i`.
    public subscript(i: Int) -> HopRecord {
        let kind = kind(i)
        let hop = hops[Int(hopIDs[i])]
        return HopRecord(timestampNs: timestampNs[i], forwardNs: forwardNs[i], qdiscNs: qdiscNs[i], vethNs: vethNs[i],
                         backlogNs: backlogNs[i], deliverNs: kind == .drop ? 0 : lastSlot[i],
                         dropReason: kind == .drop ? lastSlot[i] : 0, length: length[i], from: hop.from, to: hop.to,
                         gsoSegments: gsoSegments[i], kind: kind, flags: flags(i), cpu: cpu[i],
                         hopIndex: hopIndex[i], flow: flows[Int(flowIDs[i])])
    }

    /// Rows grouped by `key(row)` (in `0..<keys`), each group in row order:
    /// `rows[starts[k]..<starts[k + 1]]` are the rows of key `k`.
    public static func group(count: Int, keys: Int, _ key: (Int) -> Int) -> (rows: [Int32], starts: [Int]) {
        var keyOf = [Int32](repeating: 0, count: count)
        var starts = [Int](repeating: 0, count: keys + 1)
        for i in 0..<count {
            let k = key(i)
            keyOf[i] = Int32(k)
            starts[k + 1] += 1
        }
        for k in 0..<keys { starts[k + 1] += starts[k] }
        var next = starts
        var rows = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let k = Int(keyOf[i])
            rows[next[k]] = Int32(i)
            next[k] += 1
        }
        return (rows, starts)
    }
}

/// Numbers the flows and hops of a stream of records (a live trace, a recording
/// being written), putting each record into columns.
public struct RecordNumbering: Sendable {
    private static let sources = Atomic<Int>(0)

    public let numbering: Int
    public private(set) var flows: [FlowKey] = []
    public private(set) var hops: [HopKey] = []
    private var flowIDs: [FlowKey: Int32] = [:]
    private var hopIDs: [HopKey: Int32] = [:]
    /// Direct-mapped cache in front of `flowIDs` (slot from the key's mix): most
    /// records repeat a recent flow and skip hashing.
    private var flowCache = [Int32](repeating: -1, count: 4096)
    private var lastHop: Int32 = -1
    /// Ids here of another numbering's flows and hops (-1: not yet looked up).
    private var translated = 0
    private var flowFrom: [Int32] = []
    private var hopFrom: [Int32] = []

    /// `shared`: the ids stay the same across batches (the aggregates may cache by them).
    public init(shared: Bool = true) {
        // a number no other numbering in this process has
        numbering = shared ? Self.sources.add(1, ordering: .relaxed).newValue : 0
    }

    /// The id of `flow`, numbering it if new.
    @inline(__always)
    public mutating func id(_ flow: FlowKey) -> Int32 {
        let slot = Int(truncatingIfNeeded: flow.mixed) & (flowCache.count - 1)
        let cached = flowCache[slot]
        if cached >= 0 && flows[Int(cached)] == flow { return cached }
        let id: Int32
        if let known = flowIDs[flow] {
            id = known
        } else {
            id = Int32(flows.count)
            flowIDs[flow] = id
            flows.append(flow)
        }
        flowCache[slot] = id
        return id
    }

    /// The id of `hop`, numbering it if new.
    @inline(__always)
    public mutating func id(_ hop: HopKey) -> Int32 {
        if lastHop >= 0 && hops[Int(lastHop)] == hop { return lastHop }
        // a node has few hops: a scan of them beats hashing; the dictionary is for many
        if hops.count <= 32, let i = hops.firstIndex(of: hop) {
            lastHop = Int32(i)
        } else if hops.count > 32, let known = hopIDs[hop] {
            lastHop = known
        } else {
            lastHop = Int32(hops.count)
            hopIDs[hop] = lastHop
            hops.append(hop)
        }
        return lastHop
    }

    @inline(__always)
    public mutating func append(_ r: HopRecord, to c: inout RecordColumns) {
        c.kindFlags.append(r.kind.rawValue << 4 | r.flags.rawValue)
        c.timestampNs.append(r.timestampNs)
        c.forwardNs.append(r.forwardNs)
        c.qdiscNs.append(r.qdiscNs)
        c.vethNs.append(r.vethNs)
        c.backlogNs.append(r.backlogNs)
        c.lastSlot.append(r.kind == .drop ? r.dropReason : r.deliverNs)
        c.length.append(r.length)
        c.gsoSegments.append(r.gsoSegments)
        c.cpu.append(r.cpu)
        c.hopIndex.append(r.hopIndex)
        c.flowIDs.append(id(r.flow))
        c.hopIDs.append(id(HopKey(from: r.from, to: r.to)))
    }

    /// Takes `rows` of `c`, numbered in another numbering, into `into`, numbered
    /// here: a batch from the drain into a recording's chunk, column by column.
    public mutating func append(_ c: RecordColumns, rows: Range<Int>, to into: inout RecordColumns) {
        if c.numbering == 0 || c.numbering != translated {
            translated = c.numbering
            flowFrom.removeAll(keepingCapacity: true)
            hopFrom.removeAll(keepingCapacity: true)
        }
        if flowFrom.count < c.flows.count { flowFrom.append(contentsOf: repeatElement(-1, count: c.flows.count - flowFrom.count)) }
        if hopFrom.count < c.hops.count { hopFrom.append(contentsOf: repeatElement(-1, count: c.hops.count - hopFrom.count)) }
        into.kindFlags += c.kindFlags[rows]
        into.timestampNs += c.timestampNs[rows]
        into.forwardNs += c.forwardNs[rows]
        into.qdiscNs += c.qdiscNs[rows]
        into.vethNs += c.vethNs[rows]
        into.backlogNs += c.backlogNs[rows]
        into.lastSlot += c.lastSlot[rows]
        into.length += c.length[rows]
        into.gsoSegments += c.gsoSegments[rows]
        into.cpu += c.cpu[rows]
        into.hopIndex += c.hopIndex[rows]
        for i in rows {
            let f = Int(c.flowIDs[i]), h = Int(c.hopIDs[i])
            if flowFrom[f] < 0 { flowFrom[f] = id(c.flows[f]) }
            if hopFrom[h] < 0 { hopFrom[h] = id(c.hops[h]) }
            into.flowIDs.append(flowFrom[f])
            into.hopIDs.append(hopFrom[h])
        }
    }

    /// Hands `c` the tables its ids index; call once its records are appended.
    public func finish(_ c: inout RecordColumns) {
        c.numbering = numbering
        c.flows = flows
        c.hops = hops
    }

    /// Flows numbered so far: a long trace starts a new numbering past a bound, so
    /// the tables stay bounded like the aggregates' flow tables.
    public var flowCount: Int { flows.count }
}

/// A buffer the aggregates gather a column's values into, so a histogram takes
/// them as one run. One per batch: it holds as many values as the batch has rows.
public final class Gather {
    @usableFromInline let values: UnsafeMutablePointer<UInt64>
    @usableFromInline let capacity: Int

    public init(capacity: Int) {
        self.capacity = max(1, capacity)
        values = .allocate(capacity: self.capacity)
    }

    deinit { values.deallocate() }

    /// Records `value(row)` of every row in `rows` that `keep`s into `h`.
    @inlinable @inline(__always)
    public func run(_ rows: ArraySlice<Int32>, into h: inout Histogram,
                    where keep: (Int) -> Bool = { _ in true }, _ value: (Int) -> UInt64) {
        precondition(rows.count <= capacity, "more rows than the batch has")
        var n = 0, lo = UInt64.max, hi: UInt64 = 0, sum: UInt64 = 0
        rows.withUnsafeBufferPointer { rows in
            for r in rows where keep(Int(r)) {
                let v = value(Int(r))
                values[n] = v
                n &+= 1
                lo = min(lo, v)
                hi = max(hi, v)
                sum &+= v
            }
        }
        h.record(UnsafeBufferPointer(start: values, count: n), min: lo, max: hi, sum: sum)
    }
}
