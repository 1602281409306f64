/// A hop: the packet left `from` (queued there) and arrived at `to` (received there).
public struct HopKey: Hashable, Comparable, Sendable {
    public var from: Endpoint
    public var to: Endpoint

    public init(from: Endpoint, to: Endpoint) {
        self.from = from
        self.to = to
    }

    public static func < (a: HopKey, b: HopKey) -> Bool { (a.from, a.to) < (b.from, b.to) }
}

/// Where a packet was dropped and why.
public struct DropKey: Hashable, Sendable {
    /// Left `hop.from`, was at `hop.to` when dropped.
    public var hop: HopKey
    /// The kernel's `enum skb_drop_reason`.
    public var reason: UInt32
}

/// Latencies of one hop: each segment it crossed and the hop's total. The one
/// aggregation of hop records: the whole run, each window of a recording, the
/// flight recorder and the agent all add records through `add`, so their figures
/// agree exactly (a whole run is the merge of its windows).
public struct HopStats: Sendable, Equatable {
    /// By `Segment.rawValue`; a segment no record crossed has count 0 (reports leave it out).
    public var segments: [Histogram]
    /// forward + qdisc + veth + backlog of each hop record (delivery is its own segment).
    public var total: Histogram
    /// Backlog waits by the CPU that ran NET_RX for them (index: CPU), joined with
    /// that CPU's softirq figures in the report. Kept only when asked for (`byCPU`).
    public var backlogByCPU: [Histogram] = []
    /// Wire packets (GSO segments) that completed this hop.
    public var packets: UInt64 = 0
    /// Hop records (skbs) of this hop.
    public var records: UInt64 = 0
    public let byCPU: Bool

    public init(precisionBits: Int = 7, byCPU: Bool = false) {
        segments = Array(repeating: Histogram(precisionBits: precisionBits), count: Segment.allCases.count)
        total = Histogram(precisionBits: precisionBits)
        self.byCPU = byCPU
    }

    public var precisionBits: Int { total.precisionBits }

    /// The segment's latencies, or nil if no record crossed it.
    public func segment(_ s: Segment) -> Histogram? { segments[s.rawValue].count > 0 ? segments[s.rawValue] : nil }

    /// Adds `hops` (hop records of this hop) and `deliveries` (delivery records of
    /// packets it brought) of `c`, a segment at a time.
    public mutating func add(_ c: RecordColumns, hops rows: ArraySlice<Int32>, deliveries: ArraySlice<Int32>,
                             gather: Gather) {
        if !deliveries.isEmpty {
            gather.run(deliveries, into: &segments[Segment.deliver.rawValue]) { UInt64(c.lastSlot[$0]) }
        }
        guard !rows.isEmpty else { return }
        records += UInt64(rows.count)
        for r in rows { packets += UInt64(c.gsoSegments[Int(r)]) }
        gather.run(rows, into: &segments[Segment.forward.rawValue], where: { c.crossed(.forward, $0) }) {
            UInt64(c.forwardNs[$0])
        }
        gather.run(rows, into: &segments[Segment.qdisc.rawValue], where: { c.crossed(.qdisc, $0) }) { UInt64(c.qdiscNs[$0]) }
        gather.run(rows, into: &segments[Segment.veth.rawValue], where: { c.crossed(.veth, $0) }) { UInt64(c.vethNs[$0]) }
        gather.run(rows, into: &segments[Segment.backlog.rawValue]) { UInt64(c.backlogNs[$0]) }
        gather.run(rows, into: &total) { c.totalNs($0) }
        guard byCPU else { return }
        let cpus = (rows.lazy.map { Int(c.cpu[Int($0)]) }.max() ?? 0) + 1
        if cpus > backlogByCPU.count {
            backlogByCPU.append(contentsOf: repeatElement(Histogram(precisionBits: 5), count: cpus - backlogByCPU.count))
        }
        let onCPU = RecordColumns.group(count: rows.count, keys: cpus) { Int(c.cpu[Int(rows[rows.startIndex + $0])]) }
        for cpu in 0..<cpus where onCPU.starts[cpu] < onCPU.starts[cpu + 1] {
            let positions = onCPU.rows[onCPU.starts[cpu]..<onCPU.starts[cpu + 1]]
            gather.run(positions, into: &backlogByCPU[cpu]) { UInt64(c.backlogNs[Int(rows[rows.startIndex + $0])]) }
        }
    }

    public mutating func merge(_ o: HopStats) {
        for i in segments.indices { segments[i].merge(o.segments[i]) }
        total.merge(o.total)
        for (cpu, h) in o.backlogByCPU.enumerated() {
            if cpu >= backlogByCPU.count { backlogByCPU.append(h) } else { backlogByCPU[cpu].merge(h) }
        }
        packets += o.packets
        records += o.records
    }

    /// The same figures at a coarser precision (exact: each coarser bucket is a
    /// union of finer ones), e.g. a whole run's to compare with its windows'.
    public func reduced(toPrecision bits: Int) -> HopStats {
        var r = HopStats(precisionBits: bits)
        r.segments = segments.map { $0.reduced(toPrecision: bits) }
        r.total = total.reduced(toPrecision: bits)
        r.packets = packets
        r.records = records
        return r
    }
}

/// Per-flow figures: packets counted at the first hop, latency of every hop.
public struct FlowStats: Sendable {
    /// Flow histograms are coarser (within 3 %) to keep 10,000 flows in a few MiB.
    public static let precisionBits = 5
    /// Wire packets sent: counted at the first hop, whether it completed or was dropped.
    public var packets: UInt64 = 0
    public var bytes: UInt64 = 0
    /// Wire packets the kernel dropped on the way.
    public var dropped: UInt64 = 0
    public var hopRecords: UInt64 = 0
    public var hopTotal = Histogram(precisionBits: FlowStats.precisionBits)
    public var lastSeenNs: UInt64 = 0

    public init() {}

    /// Adds `rows` of `c`, all of this flow.
    mutating func add(_ c: RecordColumns, rows: ArraySlice<Int32>, gather: Gather) {
        // on the raw kind byte: this runs for every record of a recording
        let deliver = HopRecord.Kind.deliver.rawValue, drop = HopRecord.Kind.drop.rawValue
        let first = HopRecord.Flags.firstHop.rawValue
        for r in rows {
            let i = Int(r), kindFlags = c.kindFlags[i], kind = kindFlags >> 4
            lastSeenNs = Swift.max(lastSeenNs, c.timestampNs[i])
            if kind == deliver { continue }
            if kindFlags & first != 0 {
                packets += UInt64(c.gsoSegments[i])
                bytes += UInt64(c.length[i])
            }
            if kind == drop {
                dropped += UInt64(c.gsoSegments[i])
            } else {
                hopRecords += 1
            }
        }
        let hop = HopRecord.Kind.hop.rawValue
        gather.run(rows, into: &hopTotal, where: { c.kindFlags[$0] >> 4 == hop }) { c.totalNs($0) }
    }

    mutating func merge(_ o: FlowStats) {
        packets += o.packets
        bytes += o.bytes
        dropped += o.dropped
        hopRecords += o.hopRecords
        hopTotal.merge(o.hopTotal)
        lastSeenNs = Swift.max(lastSeenNs, o.lastSeenNs)
    }
}

/// Flows with bounded memory: past `capacity` flows the least recently seen eighth
/// is folded into `folded`, so nothing is dropped silently and memory stays under
/// `capacity` flow entries (each at most ~4 KiB of histogram, typically < 1 KiB).
public struct FlowTable: Sendable {
    public let capacity: Int
    public private(set) var keys: [FlowKey] = []
    public private(set) var stats: [FlowStats] = []
    private var index: [FlowKey: Int] = [:]
    /// Slots by the flows' ids in `numbering` (-1: not looked up yet): most records
    /// find their flow's slot with one array read.
    private var slotByID: [Int32] = []
    private var numbering = 0
    /// Everything folded out of the table, and how many flows that was.
    public private(set) var folded = FlowStats()
    public private(set) var foldedFlows: UInt64 = 0

    /// Flows kept apart by default (`--max-flows`): the one home of that default.
    public static let defaultCapacity = 10_000

    public init(capacity: Int = FlowTable.defaultCapacity) {
        precondition(capacity >= 8, "flow table capacity must be at least 8")
        self.capacity = capacity
        index.reserveCapacity(capacity)
    }

    public var count: Int { keys.count }

    public mutating func add(_ r: HopRecord) { add(RecordColumns([r])) }

    public mutating func add(_ c: RecordColumns) {
        if c.numbering == 0 || c.numbering != numbering {
            numbering = c.numbering
            slotByID.removeAll(keepingCapacity: true)
        }
        if slotByID.count < c.flows.count { slotByID.append(contentsOf: repeatElement(-1, count: c.flows.count - slotByID.count)) }
        // by flow, as the rest: a flow's records in a batch are one run for its
        // histogram (counted into place when the ids are few for the batch, else sorted)
        let rows = c.flows.count <= 4 * c.count + 64
            ? RecordColumns.group(count: c.count, keys: c.flows.count) { Int(c.flowIDs[$0]) }.rows
            : (0..<Int32(c.count)).sorted { (c.flowIDs[Int($0)], $0) < (c.flowIDs[Int($1)], $1) }
        let gather = Gather(capacity: c.count)
        var start = 0
        while start < rows.count {
            let id = Int(c.flowIDs[Int(rows[start])])
            var end = start + 1
            while end < rows.count && Int(c.flowIDs[Int(rows[end])]) == id { end += 1 }
            var slot = Int(slotByID[id])
            if slot < 0 {
                slot = self.slot(c.flows[id])
                slotByID[id] = Int32(slot)
            }
            stats[slot].add(c, rows: rows[start..<end], gather: gather)
            start = end
        }
    }

    /// The slot of `flow`, added if new (which may fold the idlest flows first).
    private mutating func slot(_ flow: FlowKey) -> Int {
        if let i = index[flow] { return i }
        if keys.count >= capacity { foldOldest() }
        index[flow] = keys.count
        keys.append(flow)
        stats.append(FlowStats())
        return keys.count - 1
    }

    public subscript(key: FlowKey) -> FlowStats? { index[key].map { stats[$0] } }

    /// Adds another table's flows (a flow folded in one table and kept in the other
    /// is counted in both `foldedFlows` and `count`).
    public mutating func merge(_ o: FlowTable) {
        for (k, s) in zip(o.keys, o.stats) {
            stats[slot(k)].merge(s)
        }
        folded.merge(o.folded)
        foldedFlows += o.foldedFlows
    }

    private mutating func foldOldest() {
        let order = stats.indices.sorted { stats[$0].lastSeenNs > stats[$1].lastSeenNs }
        let keep = capacity - capacity / 8
        var newKeys: [FlowKey] = [], newStats: [FlowStats] = []
        newKeys.reserveCapacity(capacity)
        newStats.reserveCapacity(capacity)
        for (rank, i) in order.enumerated() {
            if rank < keep {
                newKeys.append(keys[i])
                newStats.append(stats[i])
            } else {
                folded.merge(stats[i])
                foldedFlows += 1
            }
        }
        keys = newKeys
        stats = newStats
        index.removeAll(keepingCapacity: true)
        for (i, k) in keys.enumerated() { index[k] = i }
        for i in slotByID.indices { slotByID[i] = -1 }
    }

    /// Bytes held by flow histograms, for the stated memory bound.
    public var histogramBytes: Int { stats.reduce(folded.hopTotal.footprintBytes) { $0 + $1.hopTotal.footprintBytes } }
}

/// Hops and their figures (`HopStats`), found by key: the per-hop half of every
/// aggregate (a whole run, a flight recorder's window, the agent's windows).
public struct HopTable: Sendable {
    public private(set) var keys: [HopKey] = []
    public private(set) var stats: [HopStats] = []
    private var index: [HopKey: Int] = [:]
    /// Slots by the hops' ids in `numbering` (-1: not looked up yet): most batches
    /// find a hop's slot with one array read.
    private var slotByID: [Int32] = []
    private var numbering = 0
    public let precisionBits: Int
    public let byCPU: Bool

    public init(precisionBits: Int = 7, byCPU: Bool = false) {
        self.precisionBits = precisionBits
        self.byCPU = byCPU
    }

    public var isEmpty: Bool { keys.isEmpty }

    public subscript(hop: HopKey) -> HopStats? { index[hop].map { stats[$0] } }

    /// Adds the hop records and deliveries of a batch, grouped by hop.
    public mutating func add(_ c: RecordColumns, byHop: HopRows, gather: Gather) {
        if c.numbering == 0 || c.numbering != numbering {
            numbering = c.numbering
            slotByID.removeAll(keepingCapacity: true)
        }
        for id in c.hops.indices {
            let hopRows = byHop.hops(id), deliveries = byHop.deliveries(id)
            if hopRows.isEmpty && deliveries.isEmpty { continue }
            stats[slot(id, c)].add(c, hops: hopRows, deliveries: deliveries, gather: gather)
        }
    }

    /// The slot of hop `id` of `c`, added if new.
    private mutating func slot(_ id: Int, _ c: RecordColumns) -> Int {
        if id < slotByID.count, slotByID[id] >= 0 { return Int(slotByID[id]) }
        let slot = slot(c.hops[id])
        if id >= slotByID.count { slotByID.append(contentsOf: repeatElement(-1, count: id + 1 - slotByID.count)) }
        slotByID[id] = Int32(slot)
        return slot
    }

    private mutating func slot(_ key: HopKey) -> Int {
        if let i = index[key] { return i }
        index[key] = keys.count
        keys.append(key)
        stats.append(HopStats(precisionBits: precisionBits, byCPU: byCPU))
        return keys.count - 1
    }

    /// Adds what another table saw (of other records).
    public mutating func merge(_ o: HopTable) {
        for (key, s) in zip(o.keys, o.stats) { stats[slot(key)].merge(s) }
    }

    /// Removes the hops `gone` says are gone (the agent: a device that left the node).
    public mutating func removeAll(where gone: (HopKey) -> Bool) {
        let keep = keys.indices.filter { !gone(keys[$0]) }
        guard keep.count < keys.count else { return }
        keys = keep.map { keys[$0] }
        stats = keep.map { stats[$0] }
        index = Dictionary(uniqueKeysWithValues: keys.enumerated().map { ($1, $0) })
        slotByID.removeAll(keepingCapacity: true) // slots moved: looked up again
    }
}

/// Everything a trace has seen so far: per hop, per segment, per flow.
public struct TraceAggregate: Sendable {
    public private(set) var hops = HopTable(byCPU: true)
    /// Dropped wire packets by where they were going and the kernel's reason.
    public private(set) var drops: [DropKey: UInt64] = [:]
    public private(set) var flows: FlowTable
    public private(set) var records: UInt64 = 0
    /// Packets (skbs) followed: records of a packet's first hop.
    public private(set) var packetsFollowed: UInt64 = 0
    public private(set) var firstNs: UInt64 = .max
    public private(set) var lastNs: UInt64 = 0
    /// Numbers the flows and hops of raw batches from the kernel.
    private var kernelNumbering = RecordNumbering()

    public init(flowCapacity: Int = FlowTable.defaultCapacity) {
        flows = FlowTable(capacity: flowCapacity)
    }

    /// Forgets the hops and drops that start or end at `endpoints` (devices that left
    /// the node: the agent deletes their series). Flows age out on their own.
    public mutating func forget(endpoints: Set<Endpoint>) {
        guard !endpoints.isEmpty else { return }
        hops.removeAll { endpoints.contains($0.from) || endpoints.contains($0.to) }
        drops = drops.filter { !endpoints.contains($0.key.hop.from) && !endpoints.contains($0.key.hop.to) }
    }

    public mutating func add(_ r: HopRecord) { add(RecordColumns([r])) }

    /// Adds a batch; `byHop` if the caller has grouped it already (for the windows too).
    public mutating func add(_ c: RecordColumns, byHop: HopRows? = nil) {
        let n = c.count
        guard n > 0 else { return }
        records += UInt64(n)
        for i in 0..<n {
            if c.kindFlags[i] & HopRecord.Flags.firstHop.rawValue != 0 { packetsFollowed += 1 }
            let ts = c.timestampNs[i]
            if ts < firstNs { firstNs = ts }
            if ts > lastNs { lastNs = ts }
        }
        flows.add(c)
        let byHop = byHop ?? HopRows(c)
        hops.add(c, byHop: byHop, gather: Gather(capacity: c.count))
        for r in byHop.drops {
            let i = Int(r)
            drops[DropKey(hop: c.hops[Int(c.hopIDs[i])], reason: c.lastSlot[i]), default: 0] += UInt64(c.gsoSegments[i])
        }
    }

    /// Decodes and adds every record in a batch of raw kernel records; returns them
    /// (for a live trace's recording). Batches from the kernel share a numbering of
    /// flows and hops, started anew past `flowsNumbered` flows so its tables stay bounded.
    /// A record of unknown kind (an ABI mismatch: then all are) refuses the whole batch.
    @discardableResult
    public mutating func add(batch raw: UnsafeRawBufferPointer) throws(RecordDecodingError) -> RecordColumns {
        if kernelNumbering.flowCount > Self.flowsNumbered { kernelNumbering = RecordNumbering() }
        let c = try RecordColumns(decoding: raw, numbering: &kernelNumbering)
        add(c)
        return c
    }

    static let flowsNumbered = 100_000

    public subscript(hop: HopKey) -> HopStats? { hops[hop] }

    /// Adds what another aggregate saw (of other records: reading a file on several threads).
    public mutating func merge(_ o: TraceAggregate) {
        hops.merge(o.hops)
        for (drop, n) in o.drops { drops[drop, default: 0] += n }
        flows.merge(o.flows)
        records += o.records
        packetsFollowed += o.packetsFollowed
        firstNs = min(firstNs, o.firstNs)
        lastNs = max(lastNs, o.lastNs)
    }
}

/// A batch's rows by hop: each hop's hop records and the deliveries at its device
/// (both in row order), and the drops.
public struct HopRows: Sendable {
    private let rows: [Int32]
    private let starts: [Int]
    private let hopCount: Int

    public init(_ c: RecordColumns) {
        let h = c.hops.count
        hopCount = h
        (rows, starts) = RecordColumns.group(count: c.count, keys: 2 * h + 1) { i in
            switch c.kind(i) {
            case .hop: 2 * Int(c.hopIDs[i])
            case .deliver: 2 * Int(c.hopIDs[i]) + 1
            case .drop: 2 * h
            }
        }
    }

    public func hops(_ id: Int) -> ArraySlice<Int32> { rows[starts[2 * id]..<starts[2 * id + 1]] }
    public func deliveries(_ id: Int) -> ArraySlice<Int32> { rows[starts[2 * id + 1]..<starts[2 * id + 2]] }
    public var drops: ArraySlice<Int32> { rows[starts[2 * hopCount]..<starts[2 * hopCount + 1]] }
}
