/// Segments of a hop, in the order a packet crosses them (ABI: `enum ht_segment`).
public enum Segment: Int, CaseIterable, Codable, Sendable {
    /// Arrival in a namespace until queued on the next device (bridge or routing).
    case forward = 0
    /// Queued on the sending device until the driver starts transmitting it.
    case qdisc = 1
    /// The veth driver handing the packet to its peer.
    case veth = 2
    /// On the peer's backlog, waiting for the NET_RX softirq.
    case backlog = 3
    /// Stack and socket queue until the application's first read.
    case deliver = 4

    public var name: String {
        switch self {
        case .forward: "forward"
        case .qdisc: "qdisc"
        case .veth: "veth"
        case .backlog: "backlog"
        case .deliver: "deliver"
        }
    }

    /// The segments a hop record carries; `deliver` comes in its own record.
    public static let hopSegments: [Segment] = [.forward, .qdisc, .veth, .backlog]
}

/// A device in a network namespace: what a hop leaves from or arrives at.
public struct Endpoint: Hashable, Comparable, Codable, Sendable {
    public var netns: UInt32
    public var ifindex: UInt32

    public init(netns: UInt32, ifindex: UInt32) {
        self.netns = netns
        self.ifindex = ifindex
    }

    public static func < (a: Endpoint, b: Endpoint) -> Bool {
        (a.netns, a.ifindex) < (b.netns, b.ifindex)
    }
}

/// An IPv4 or IPv6 address as the kernel's 16 bytes (IPv4 in the first four).
public struct IPAddress: Hashable, Codable, Sendable {
    public var high: UInt64
    public var low: UInt64

    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    public init(bytes: [UInt8]) {
        precondition(bytes.count <= 16)
        var b = bytes + [UInt8](repeating: 0, count: 16 - bytes.count)
        high = 0
        low = 0
        for i in 0..<8 { high = high << 8 | UInt64(b[i]) }
        for i in 8..<16 { low = low << 8 | UInt64(b[i]) }
        b.removeAll()
    }

    public var bytes: [UInt8] {
        (0..<8).map { UInt8(truncatingIfNeeded: high >> UInt64(56 - 8 * $0)) }
            + (0..<8).map { UInt8(truncatingIfNeeded: low >> UInt64(56 - 8 * $0)) }
    }

    public func formatted(family: UInt8) -> String {
        let b = bytes
        if family == 4 { return b[0..<4].map(String.init).joined(separator: ".") }
        var groups: [String] = []
        for i in stride(from: 0, to: 16, by: 2) {
            groups.append(String(UInt16(b[i]) << 8 | UInt16(b[i + 1]), radix: 16))
        }
        // compress the longest run of zero groups, as RFC 5952 asks
        var best = (start: -1, len: 0), cur = (start: -1, len: 0)
        for (i, g) in groups.enumerated() {
            if g == "0" {
                cur = cur.start < 0 ? (i, 1) : (cur.start, cur.len + 1)
                if cur.len > best.len { best = cur }
            } else { cur = (-1, 0) }
        }
        if best.len < 2 { return groups.joined(separator: ":") }
        let head = groups[..<best.start].joined(separator: ":")
        let tail = groups[(best.start + best.len)...].joined(separator: ":")
        return head + "::" + tail
    }
}

/// The 5-tuple of a packet (ABI: `struct ht_flow_key`). Ports in host order.
public struct FlowKey: Hashable, Sendable {
    public var source: IPAddress
    public var destination: IPAddress
    public var sourcePort: UInt16
    public var destinationPort: UInt16
    public var proto: UInt8
    /// 4 or 6; 0 when the packet was not IP.
    public var family: UInt8

    public init(source: IPAddress, destination: IPAddress, sourcePort: UInt16, destinationPort: UInt16,
                proto: UInt8, family: UInt8) {
        self.source = source
        self.destination = destination
        self.sourcePort = sourcePort
        self.destinationPort = destinationPort
        self.proto = proto
        self.family = family
    }

    /// A cheap 64-bit mix of all fields: one word for Hasher instead of eight, and
    /// the slot of the flow table's lookup cache.
    @inline(__always)
    public var mixed: UInt64 {
        var x = source.high ^ (source.low &* 0x9E37_79B9_7F4A_7C15)
        x ^= destination.high &* 0xBF58_476D_1CE4_E5B9 ^ (destination.low &* 0x94D0_49BB_1331_11EB)
        x ^= UInt64(sourcePort) << 48 | UInt64(destinationPort) << 32 | UInt64(proto) << 8 | UInt64(family)
        x = (x ^ (x >> 31)) &* 0x7FB5_D329_728E_A185
        return x ^ (x >> 27)
    }

    public func hash(into hasher: inout Hasher) { hasher.combine(mixed) }

    public var protoName: String {
        switch proto {
        case 6: "tcp"
        case 17: "udp"
        case 1: "icmp"
        case 58: "icmpv6"
        case 0 where family == 6: "ipv6-hopopt"
        default: "ip\(proto)"
        }
    }

    public var description: String {
        if family == 0 { return "non-ip" }
        let s = source.formatted(family: family), d = destination.formatted(family: family)
        let hasPorts = proto == 6 || proto == 17
        if family == 6 {
            return hasPorts ? "\(protoName) [\(s)]:\(sourcePort) -> [\(d)]:\(destinationPort)"
                : "\(protoName) \(s) -> \(d)"
        }
        return hasPorts ? "\(protoName) \(s):\(sourcePort) -> \(d):\(destinationPort)" : "\(protoName) \(s) -> \(d)"
    }
}

/// One record from the kernel: a packet's completed hop, or its delivery.
public struct HopRecord: Sendable, Equatable {
    public enum Kind: UInt8, Sendable {
        case hop = 1
        case deliver = 2
        /// The kernel dropped the packet (kfree_skb) on its way from `from`; `to` is
        /// the device it was at, `dropReason` the kernel's `enum skb_drop_reason`.
        case drop = 3
    }

    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt8
        public init(rawValue: UInt8) { self.rawValue = rawValue }
        /// The packet's first hop: packets are counted here.
        public static let firstHop = Flags(rawValue: 1)
        /// The peer's receive hook did not fire; veth time is inside backlog.
        public static let noRx = Flags(rawValue: 2)
        /// Queued on a device without a queue (noqueue): sent in the same call, so
        /// the hop crossed no qdisc segment. (Recordings of format 2 and earlier used
        /// this bit for IPv6; their reader clears it.)
        public static let noQdisc = Flags(rawValue: 4)
        /// The hop began in a namespace the packet had arrived in: it crossed the
        /// forward segment. (Recordings made before this flag existed: forward > 0.)
        public static let forwarded = Flags(rawValue: 8)
    }

    /// Whether a record crossed `segment`: the one rule for every aggregate, report
    /// and export, so a segment that did not happen is absent, never a zero.
    @inlinable @inline(__always)
    public static func crossed(_ segment: Segment, kind: Kind, flags: Flags, forwardNs: UInt32) -> Bool {
        switch segment {
        case .forward: kind == .hop && (flags.contains(.forwarded) || forwardNs > 0)
        case .qdisc: kind == .hop && !flags.contains(.noQdisc)
        case .backlog: kind == .hop
        case .veth: kind == .hop && !flags.contains(.noRx)
        case .deliver: kind == .deliver
        }
    }

    /// Whether this record crossed `segment`.
    public func crossed(_ segment: Segment) -> Bool {
        Self.crossed(segment, kind: kind, flags: flags, forwardNs: forwardNs)
    }

    /// CLOCK_MONOTONIC nanoseconds when the hop started.
    public var timestampNs: UInt64
    public var forwardNs: UInt32
    public var qdiscNs: UInt32
    public var vethNs: UInt32
    public var backlogNs: UInt32
    public var deliverNs: UInt32
    /// For `.drop` records: the kernel's `enum skb_drop_reason` (the ABI carries it
    /// in the deliver slot, which a dropped packet never reaches). 0 otherwise.
    public var dropReason: UInt32
    public var length: UInt32
    public var from: Endpoint
    public var to: Endpoint
    public var gsoSegments: UInt16
    public var kind: Kind
    public var flags: Flags
    public var cpu: UInt16
    public var hopIndex: UInt16
    public var flow: FlowKey

    public init(timestampNs: UInt64, forwardNs: UInt32 = 0, qdiscNs: UInt32 = 0, vethNs: UInt32 = 0,
                backlogNs: UInt32 = 0, deliverNs: UInt32 = 0, dropReason: UInt32 = 0, length: UInt32 = 0, from: Endpoint,
                to: Endpoint, gsoSegments: UInt16 = 1, kind: Kind = .hop, flags: Flags = [],
                cpu: UInt16 = 0, hopIndex: UInt16 = 0, flow: FlowKey) {
        self.timestampNs = timestampNs
        self.forwardNs = forwardNs
        self.qdiscNs = qdiscNs
        self.vethNs = vethNs
        self.backlogNs = backlogNs
        self.deliverNs = deliverNs
        self.dropReason = dropReason
        self.length = length
        self.from = from
        self.to = to
        self.gsoSegments = gsoSegments
        self.kind = kind
        self.flags = flags
        self.cpu = cpu
        self.hopIndex = hopIndex
        self.flow = flow
    }

    public subscript(segment: Segment) -> UInt32 {
        switch segment {
        case .forward: forwardNs
        case .qdisc: qdiscNs
        case .veth: vethNs
        case .backlog: backlogNs
        case .deliver: deliverNs
        }
    }

    /// Sum of all segments of this record.
    public var totalNs: UInt64 {
        UInt64(forwardNs) + UInt64(qdiscNs) + UInt64(vethNs) + UInt64(backlogNs) + UInt64(deliverNs)
    }

    /// When the hop ended: arrival for a hop, the application's read for a delivery.
    public var endNs: UInt64 { timestampNs + totalNs }
}

/// Decodes the kernel's `struct ht_hop_record` from raw bytes.
///
/// The offsets are this type's contract with `hoptrace_abi.h`; a test compares them
/// with the C header so the two cannot drift apart silently.
public enum RecordLayout {
    public static let abiVersion = 4
    public static let size = 96
    public static let timestamp = 0
    public static let segments = 8
    public static let length = 28
    public static let fromNetns = 32
    public static let toNetns = 36
    public static let fromIfindex = 40
    public static let toIfindex = 44
    public static let gsoSegments = 48
    public static let kind = 50
    public static let flags = 51
    public static let cpu = 52
    public static let hopIndex = 54
    public static let flow = 56
    // inside struct ht_flow_key
    public static let flowSource = 0
    public static let flowDestination = 16
    public static let flowSourcePort = 32
    public static let flowDestinationPort = 34
    public static let flowProto = 36
    public static let flowFamily = 37
}

public enum RecordDecodingError: Error, Equatable, CustomStringConvertible {
    case truncated(bytes: Int)
    case unknownKind(UInt8, offset: Int)

    public var description: String {
        switch self {
        case .truncated(let n): "record batch of \(n) bytes is not a whole number of \(RecordLayout.size)-byte records"
        case .unknownKind(let k, let off): "record at byte \(off) has unknown kind \(k) (ABI mismatch?)"
        }
    }
}

extension HopRecord {
    @inline(__always)
    static func bigEndianAddress(_ raw: UnsafeRawBufferPointer, _ offset: Int) -> IPAddress {
        IPAddress(high: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self)),
                  low: UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)))
    }

    /// Decodes one record at `offset`; `raw` must hold at least `offset + RecordLayout.size` bytes.
    /// Multi-byte integers are in the host's order (the kernel wrote them), addresses in network order.
    @inline(__always)
    public init(decoding raw: UnsafeRawBufferPointer, at offset: Int) throws(RecordDecodingError) {
        typealias L = RecordLayout
        func u32(_ o: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: offset + o, as: UInt32.self) }
        func u16(_ o: Int) -> UInt16 { raw.loadUnaligned(fromByteOffset: offset + o, as: UInt16.self) }
        func u8(_ o: Int) -> UInt8 { raw[offset + o] }
        guard let kind = Kind(rawValue: u8(L.kind)) else { throw .unknownKind(u8(L.kind), offset: offset) }
        let lastSlot = u32(L.segments + 16)
        let hop = HopKey(decoding: raw, at: offset)
        self.init(
            timestampNs: raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self),
            forwardNs: u32(L.segments), qdiscNs: u32(L.segments + 4), vethNs: u32(L.segments + 8),
            backlogNs: u32(L.segments + 12), deliverNs: kind == .drop ? 0 : lastSlot,
            dropReason: kind == .drop ? lastSlot : 0, length: u32(L.length), from: hop.from, to: hop.to,
            gsoSegments: u16(L.gsoSegments), kind: kind, flags: Flags(rawValue: u8(L.flags)),
            cpu: u16(L.cpu), hopIndex: u16(L.hopIndex), flow: FlowKey(decoding: raw, at: offset))
    }

    /// Encodes in the kernel's layout; the inverse of `init(decoding:at:)` (tests, files).
    public func encode(into raw: UnsafeMutableRawBufferPointer, at offset: Int) {
        typealias L = RecordLayout
        func put<T: FixedWidthInteger>(_ v: T, _ o: Int) { raw.storeBytes(of: v, toByteOffset: offset + o, as: T.self) }
        put(timestampNs, L.timestamp)
        let lastSlot = kind == .drop ? dropReason : deliverNs
        for (i, v) in [forwardNs, qdiscNs, vethNs, backlogNs, lastSlot].enumerated() { put(v, L.segments + 4 * i) }
        put(length, L.length)
        put(from.netns, L.fromNetns)
        put(to.netns, L.toNetns)
        put(from.ifindex, L.fromIfindex)
        put(to.ifindex, L.toIfindex)
        put(gsoSegments, L.gsoSegments)
        put(kind.rawValue, L.kind)
        put(flags.rawValue, L.flags)
        put(cpu, L.cpu)
        put(hopIndex, L.hopIndex)
        let f = offset + L.flow
        raw.storeBytes(of: flow.source.high.bigEndian, toByteOffset: f + L.flowSource, as: UInt64.self)
        raw.storeBytes(of: flow.source.low.bigEndian, toByteOffset: f + L.flowSource + 8, as: UInt64.self)
        raw.storeBytes(of: flow.destination.high.bigEndian, toByteOffset: f + L.flowDestination, as: UInt64.self)
        raw.storeBytes(of: flow.destination.low.bigEndian, toByteOffset: f + L.flowDestination + 8, as: UInt64.self)
        raw.storeBytes(of: flow.sourcePort, toByteOffset: f + L.flowSourcePort, as: UInt16.self)
        raw.storeBytes(of: flow.destinationPort, toByteOffset: f + L.flowDestinationPort, as: UInt16.self)
        raw[f + L.flowProto] = flow.proto
        raw[f + L.flowFamily] = flow.family
        raw[f + L.flowFamily + 1] = 0
        raw[f + L.flowFamily + 2] = 0
    }
}

extension FlowKey {
    /// The flow of the kernel record at `offset` in `raw`.
    @inline(__always)
    init(decoding raw: UnsafeRawBufferPointer, at offset: Int) {
        typealias L = RecordLayout
        let f = offset + L.flow
        self.init(source: HopRecord.bigEndianAddress(raw, f + L.flowSource),
                  destination: HopRecord.bigEndianAddress(raw, f + L.flowDestination),
                  sourcePort: raw.loadUnaligned(fromByteOffset: f + L.flowSourcePort, as: UInt16.self),
                  destinationPort: raw.loadUnaligned(fromByteOffset: f + L.flowDestinationPort, as: UInt16.self),
                  proto: raw[f + L.flowProto], family: raw[f + L.flowFamily])
    }
}

extension HopKey {
    /// The hop of the kernel record at `offset` in `raw`.
    @inline(__always)
    init(decoding raw: UnsafeRawBufferPointer, at offset: Int) {
        typealias L = RecordLayout
        func u32(_ o: Int) -> UInt32 { raw.loadUnaligned(fromByteOffset: offset + o, as: UInt32.self) }
        self.init(from: Endpoint(netns: u32(L.fromNetns), ifindex: u32(L.fromIfindex)),
                  to: Endpoint(netns: u32(L.toNetns), ifindex: u32(L.toIfindex)))
    }
}

extension RecordColumns {
    /// Decodes a batch of raw kernel records column by column, numbering their
    /// flows and hops in `numbering`.
    public init(decoding raw: UnsafeRawBufferPointer, numbering: inout RecordNumbering) throws(RecordDecodingError) {
        typealias L = RecordLayout
        guard raw.count % L.size == 0 else { throw .truncated(bytes: raw.count) }
        let n = raw.count / L.size
        func column<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> [T] {
            [T](unsafeUninitializedCapacity: n) { values, count in
                for i in 0..<n { values[i] = raw.loadUnaligned(fromByteOffset: i &* L.size &+ offset, as: T.self) }
                count = n
            }
        }
        self.init()
        for i in 0..<n where HopRecord.Kind(rawValue: raw[i * L.size + L.kind]) == nil {
            throw .unknownKind(raw[i * L.size + L.kind], offset: i * L.size)
        }
        kindFlags = [UInt8](unsafeUninitializedCapacity: n) { values, count in
            for i in 0..<n { values[i] = raw[i &* L.size &+ L.kind] << 4 | raw[i &* L.size &+ L.flags] & 0x0f }
            count = n
        }
        timestampNs = column(L.timestamp, UInt64.self)
        forwardNs = column(L.segments, UInt32.self)
        qdiscNs = column(L.segments + 4, UInt32.self)
        vethNs = column(L.segments + 8, UInt32.self)
        backlogNs = column(L.segments + 12, UInt32.self)
        lastSlot = column(L.segments + 16, UInt32.self)
        length = column(L.length, UInt32.self)
        gsoSegments = column(L.gsoSegments, UInt16.self)
        cpu = column(L.cpu, UInt16.self)
        hopIndex = column(L.hopIndex, UInt16.self)
        flowIDs = [Int32](unsafeUninitializedCapacity: n) { values, count in
            for i in 0..<n { values[i] = numbering.id(FlowKey(decoding: raw, at: i &* L.size)) }
            count = n
        }
        hopIDs = [Int32](unsafeUninitializedCapacity: n) { values, count in
            for i in 0..<n { values[i] = numbering.id(HopKey(decoding: raw, at: i &* L.size)) }
            count = n
        }
        numbering.finish(&self)
    }
}
