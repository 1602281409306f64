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

/// Latencies of one hop: each segment and the hop's total.
public struct HopStats: Sendable {
    public var segments: [Histogram]
    public var total = Histogram()
    /// Backlog waits by the CPU that ran NET_RX for them (index: CPU), joined with
    /// that CPU's softirq figures in the report.
    public var backlogByCPU: [Histogram] = []
    /// Wire packets (GSO segments) that completed this hop.
    public var packets: UInt64 = 0
    public var records: UInt64 = 0

    public init() {
        segments = Array(repeating: Histogram(), count: Segment.allCases.count)
    }

    @inline(__always)
    mutating func add(_ r: HopRecord) {
        records += 1
        packets += UInt64(r.gsoSegments)
        segments[Segment.forward.rawValue].record(UInt64(r.forwardNs))
        segments[Segment.qdisc.rawValue].record(UInt64(r.qdiscNs))
        if !r.flags.contains(.noRx) { segments[Segment.veth.rawValue].record(UInt64(r.vethNs)) }
        segments[Segment.backlog.rawValue].record(UInt64(r.backlogNs))
        let cpu = Int(r.cpu)
        if cpu >= backlogByCPU.count {
            backlogByCPU.append(contentsOf: repeatElement(Histogram(precisionBits: 5), count: cpu + 1 - backlogByCPU.count))
        }
        backlogByCPU[cpu].record(UInt64(r.backlogNs))
        total.record(r.totalNs)
    }

    mutating func merge(_ o: HopStats) {
        for i in segments.indices { segments[i].merge(o.segments[i]) }
        total.merge(o.total)
        for (cpu, h) in o.backlogByCPU.enumerated() {
            if cpu >= backlogByCPU.count { backlogByCPU.append(h) } else { backlogByCPU[cpu].merge(h) }
        }
        packets += o.packets
        records += o.records
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

    @inline(__always)
    mutating func add(_ r: HopRecord) {
        lastSeenNs = Swift.max(lastSeenNs, r.timestampNs)
        if r.kind == .deliver { return }
        if r.flags.contains(.firstHop) {
            packets += UInt64(r.gsoSegments)
            bytes += UInt64(r.length)
        }
        if r.kind == .drop {
            dropped += UInt64(r.gsoSegments)
            return
        }
        hopRecords += 1
        hopTotal.record(r.totalNs)
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
    /// Direct-mapped cache in front of `index` (slot from `FlowKey.mixed`): most
    /// records hit it and skip hashing altogether.
    private var cache = [Int32](repeating: -1, count: FlowTable.cacheSlots)
    static let cacheSlots = 4096
    /// Everything folded out of the table, and how many flows that was.
    public private(set) var folded = FlowStats()
    public private(set) var foldedFlows: UInt64 = 0

    public init(capacity: Int = 10_000) {
        precondition(capacity >= 8, "flow table capacity must be at least 8")
        self.capacity = capacity
        index.reserveCapacity(capacity)
    }

    public var count: Int { keys.count }

    @inline(__always)
    public mutating func add(_ r: HopRecord) {
        let slot = Int(truncatingIfNeeded: r.flow.mixed) & (Self.cacheSlots - 1)
        let cached = Int(cache[slot])
        if cached >= 0, keys[cached] == r.flow {
            stats[cached].add(r)
            return
        }
        if let i = index[r.flow] {
            cache[slot] = Int32(i)
            stats[i].add(r)
            return
        }
        if keys.count >= capacity { foldOldest() }
        cache[slot] = Int32(keys.count)
        index[r.flow] = keys.count
        keys.append(r.flow)
        var s = FlowStats()
        s.add(r)
        stats.append(s)
    }

    public subscript(key: FlowKey) -> FlowStats? { index[key].map { stats[$0] } }

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
        for i in cache.indices { cache[i] = -1 }
    }

    /// Bytes held by flow histograms, for the stated memory bound.
    public var histogramBytes: Int { stats.reduce(folded.hopTotal.footprintBytes) { $0 + $1.hopTotal.footprintBytes } }
}

/// Everything a trace has seen so far: per hop, per segment, per flow.
public struct TraceAggregate: Sendable {
    public private(set) var hopKeys: [HopKey] = []
    public private(set) var hops: [HopStats] = []
    private var hopIndex: [HopKey: Int] = [:]
    /// Delivery to the application, by the device the packet arrived on.
    public private(set) var deliveries: [Endpoint: Histogram] = [:]
    /// Dropped wire packets by where they were going and the kernel's reason.
    public private(set) var drops: [DropKey: UInt64] = [:]
    public private(set) var flows: FlowTable
    public private(set) var records: UInt64 = 0
    /// Packets (skbs) followed: records of a packet's first hop.
    public private(set) var packetsFollowed: UInt64 = 0
    public private(set) var firstNs: UInt64 = .max
    public private(set) var lastNs: UInt64 = 0
    private var lastHop = -1

    public init(flowCapacity: Int = 10_000) {
        flows = FlowTable(capacity: flowCapacity)
    }

    @inline(__always)
    public mutating func add(_ r: HopRecord) {
        records += 1
        if r.flags.contains(.firstHop) { packetsFollowed += 1 }
        if r.timestampNs < firstNs { firstNs = r.timestampNs }
        if r.timestampNs > lastNs { lastNs = r.timestampNs }
        flows.add(r)
        switch r.kind {
        case .deliver:
            deliveries[r.to, default: Histogram()].record(UInt64(r.deliverNs))
            return
        case .drop:
            drops[DropKey(hop: HopKey(from: r.from, to: r.to), reason: r.dropReason), default: 0] += UInt64(r.gsoSegments)
            return
        case .hop:
            break
        }
        let key = HopKey(from: r.from, to: r.to)
        // a node has few hops: a scan of them beats hashing; the dictionary is for many
        if lastHop < 0 || hopKeys[lastHop] != key {
            if hopKeys.count <= 32, let i = hopKeys.firstIndex(of: key) {
                lastHop = i
            } else if hopKeys.count > 32, let i = hopIndex[key] {
                lastHop = i
            } else {
                lastHop = hops.count
                hopIndex[key] = lastHop
                hopKeys.append(key)
                hops.append(HopStats())
            }
        }
        hops[lastHop].add(r)
    }

    /// Decodes and adds every record in a batch of raw kernel records.
    public mutating func add(batch raw: UnsafeRawBufferPointer) throws(RecordDecodingError) {
        guard raw.count % RecordLayout.size == 0 else { throw .truncated(bytes: raw.count) }
        var off = 0
        while off < raw.count {
            add(try HopRecord(decoding: raw, at: off))
            off += RecordLayout.size
        }
    }

    public subscript(hop: HopKey) -> HopStats? { hopIndex[hop].map { hops[$0] } }
}
