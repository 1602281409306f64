import Glibc
import HoptraceCore

/// The rtnetlink numbers discovery uses, from linux/netlink.h, linux/rtnetlink.h,
/// linux/if_link.h and linux/net_namespace.h: Swift's Glibc module imports none of
/// these headers.
enum RTNetlink {
    /// Size of struct nlmsghdr; of struct ifinfomsg; of struct rtgenmsg padded to 4.
    static let headerSize = 16, ifinfoSize = 16, rtgenSize = 4

    // nlmsg_type
    static let error: UInt16 = 2, done: UInt16 = 3, overrun: UInt16 = 4
    static let newLink: UInt16 = 16, getLink: UInt16 = 18
    static let newNetnsID: UInt16 = 88, getNetnsID: UInt16 = 90
    static let newQdisc: UInt16 = 36, getQdisc: UInt16 = 38
    static let newAddress: UInt16 = 20, getAddress: UInt16 = 22
    /// Size of struct ifaddrmsg; IFA_ADDRESS, IFA_LOCAL.
    static let ifaddrSize = 8, ifaAddress: UInt16 = 1, ifaLocal: UInt16 = 2
    /// Size of struct tcmsg; TC_H_ROOT, the parent of a device's root qdisc; TCA_KIND.
    static let tcmsgSize = 20, rootHandle: UInt32 = 0xFFFF_FFFF, tcaKind: UInt16 = 1

    // nlmsg_flags
    static let request: UInt16 = 0x1, multi: UInt16 = 0x2, dumpInterrupted: UInt16 = 0x10, dump: UInt16 = 0x300

    // IFLA_* attributes of a link, and IFLA_INFO_* inside IFLA_LINKINFO
    static let ifname: UInt16 = 3, link: UInt16 = 5, master: UInt16 = 10, operstate: UInt16 = 16
    static let linkInfo: UInt16 = 18, extMask: UInt16 = 29, linkNetnsID: UInt16 = 37
    static let infoKind: UInt16 = 1
    /// IFLA_EXT_MASK bit RTEXT_FILTER_SKIP_STATS: replies without the counters, which
    /// discovery does not read (a good part of each reply's bytes).
    static let skipStats: UInt32 = 1 << 3

    // NETNSA_* attributes of RTM_GETNSID / RTM_NEWNSID
    static let netnsID: UInt16 = 1, netnsFD: UInt16 = 3

    /// nla_type carries two flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER) above the type.
    static let attributeTypeMask: UInt16 = 0x3fff

    /// The IF_OPER_* states as `ip` prints them.
    static let operstates = ["UNKNOWN", "NOTPRESENT", "DOWN", "LOWERLAYERDOWN", "TESTING", "DORMANT", "UP"]
}

/// A netlink request or reply that failed; says what and why in one line.
public struct NetlinkError: Error, CustomStringConvertible, Equatable {
    /// What failed, e.g. "RTM_GETLINK dump".
    public var operation: String
    /// The errno; nil for a reply we could not parse.
    public var code: Int32?

    public init(_ operation: String, code: Int32?) {
        self.operation = operation
        self.code = code
    }

    public var description: String {
        "\(operation): \(code.map { String(cString: strerror($0)) } ?? "malformed reply")"
    }
}

/// One netlink message of a datagram: its header fields and the bytes after the header.
struct NetlinkMessage {
    var type: UInt16
    var flags: UInt16
    var sequence: UInt32
    var payload: UnsafeRawBufferPointer

    /// The messages of one datagram (each 4-byte aligned, `nlmsg_len` long).
    static func messages(in datagram: UnsafeRawBufferPointer, operation: String) throws(NetlinkError) -> [NetlinkMessage] {
        var messages: [NetlinkMessage] = []
        var offset = 0
        while datagram.count - offset >= RTNetlink.headerSize {
            let length = Int(datagram.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
            guard length >= RTNetlink.headerSize, length <= datagram.count - offset else {
                throw NetlinkError(operation, code: nil)
            }
            messages.append(NetlinkMessage(
                type: datagram.loadUnaligned(fromByteOffset: offset + 4, as: UInt16.self),
                flags: datagram.loadUnaligned(fromByteOffset: offset + 6, as: UInt16.self),
                sequence: datagram.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self),
                payload: UnsafeRawBufferPointer(rebasing: datagram[(offset + RTNetlink.headerSize)..<(offset + length)])))
            offset += (length + 3) & ~3
        }
        return messages
    }

    /// Throws the error an NLMSG_ERROR or NLMSG_DONE message carries: a negative errno
    /// at the start of the payload (0 in an acknowledgement, and in a DONE that ends a
    /// dump well; old kernels send a DONE without one).
    func throwIfFailed(_ operation: String) throws(NetlinkError) {
        let code = payload.count >= 4 ? payload.loadUnaligned(as: Int32.self) : 0
        if code < 0 { throw NetlinkError(operation, code: -code) }
    }
}

/// The attributes (struct nlattr) in a run of bytes: type (flags masked off) and value.
/// A truncated attribute ends the walk.
struct NetlinkAttributes: Sequence, IteratorProtocol {
    private var rest: UnsafeRawBufferPointer

    init(_ bytes: UnsafeRawBufferPointer) { rest = bytes }

    mutating func next() -> (type: UInt16, value: UnsafeRawBufferPointer)? {
        guard rest.count >= 4 else { return nil }
        let length = Int(rest.loadUnaligned(as: UInt16.self))
        guard length >= 4, length <= rest.count else { return nil }
        let type = rest.loadUnaligned(fromByteOffset: 2, as: UInt16.self) & RTNetlink.attributeTypeMask
        let value = UnsafeRawBufferPointer(rebasing: rest[4..<length])
        rest = UnsafeRawBufferPointer(rebasing: rest[Swift.min(rest.count, (length + 3) & ~3)...])
        return (type, value)
    }
}

/// One device as an RTM_NEWLINK message describes it (the fields discovery uses).
public struct LinkMessage: Hashable, Sendable {
    public var ifindex: UInt32
    /// IFLA_IFNAME.
    public var name: String
    /// IFLA_INFO_KIND ("veth", "bridge", ...); empty for a device without one (lo).
    public var kind: String
    /// IFLA_OPERSTATE as `ip` prints it ("UP", "DOWN", "LOWERLAYERDOWN", ...).
    public var operstate: String
    /// IFLA_MASTER: the ifindex of the device this one is enslaved to (its bridge).
    public var masterIndex: UInt32?
    /// IFLA_LINK: the ifindex of the device this one is linked to; a veth's peer.
    public var linkIndex: UInt32?
    /// IFLA_LINK_NETNSID: the namespace of `linkIndex` as an nsid of this device's
    /// namespace; nil when it is in the same namespace.
    public var linkNetnsID: Int32?

    public init(ifindex: UInt32, name: String, kind: String = "", operstate: String = "UNKNOWN", masterIndex: UInt32? = nil,
                linkIndex: UInt32? = nil, linkNetnsID: Int32? = nil) {
        self.ifindex = ifindex
        self.name = name
        self.kind = kind
        self.operstate = operstate
        self.masterIndex = masterIndex
        self.linkIndex = linkIndex
        self.linkNetnsID = linkNetnsID
    }

    /// Parses the payload of an RTM_NEWLINK message (struct ifinfomsg, then attributes).
    init?(payload: UnsafeRawBufferPointer) {
        guard payload.count >= RTNetlink.ifinfoSize else { return nil }
        self.init(ifindex: UInt32(bitPattern: payload.loadUnaligned(fromByteOffset: 4, as: Int32.self)), name: "")
        for (type, value) in NetlinkAttributes(UnsafeRawBufferPointer(rebasing: payload[RTNetlink.ifinfoSize...])) {
            switch type {
            case RTNetlink.ifname: name = Self.string(value)
            case RTNetlink.operstate where value.count >= 1:
                let state = Int(value[0])
                operstate = state < RTNetlink.operstates.count ? RTNetlink.operstates[state] : String(state)
            case RTNetlink.master where value.count >= 4: masterIndex = value.loadUnaligned(as: UInt32.self)
            // 0: a veth whose peer is gone (`ip` prints no link then either)
            case RTNetlink.link where value.count >= 4:
                let index = value.loadUnaligned(as: UInt32.self)
                linkIndex = index == 0 ? nil : index
            case RTNetlink.linkNetnsID where value.count >= 4: linkNetnsID = value.loadUnaligned(as: Int32.self)
            case RTNetlink.linkInfo:
                for (infoType, infoValue) in NetlinkAttributes(value) where infoType == RTNetlink.infoKind {
                    kind = Self.string(infoValue)
                }
            default: break
            }
        }
    }

    /// A NUL-terminated string attribute.
    static func string(_ value: UnsafeRawBufferPointer) -> String {
        String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
    }
}

/// What one dump request returns (RTM_GETLINK, RTM_GETQDISC), collected from the
/// datagrams the kernel sends for it: a dump of many spans several, and ends with
/// NLMSG_DONE.
struct Dump<Item> {
    let sequence: UInt32
    /// The message type the items come in, and how one is read from its payload.
    let itemType: UInt16
    let operation: String
    let parse: (UnsafeRawBufferPointer) -> Item?
    private(set) var items: [Item] = []
    private(set) var isComplete = false
    /// The list changed while the kernel dumped it (NLM_F_DUMP_INTR): an item may be
    /// missing or repeated. Ask again.
    private(set) var isInterrupted = false

    /// Takes one datagram of the reply; throws on an NLMSG_ERROR or a malformed message.
    mutating func take(_ datagram: UnsafeRawBufferPointer) throws(NetlinkError) {
        for message in try NetlinkMessage.messages(in: datagram, operation: operation) where !isComplete {
            // a late reply to an earlier request on the same socket is not ours
            guard message.sequence == sequence else { continue }
            if message.flags & RTNetlink.dumpInterrupted != 0 { isInterrupted = true }
            switch message.type {
            case itemType:
                if let item = parse(message.payload) { items.append(item) }
            case RTNetlink.done, RTNetlink.error:
                try message.throwIfFailed(operation)
                isComplete = true
            case RTNetlink.overrun:
                throw NetlinkError(operation, code: ENOBUFS)
            default:
                break
            }
        }
    }
}

/// The devices of one RTM_GETLINK dump.
typealias LinkDump = Dump<LinkMessage>

extension Dump<LinkMessage> {
    init(sequence: UInt32) {
        self.init(sequence: sequence, itemType: RTNetlink.newLink, operation: "RTM_GETLINK dump") { LinkMessage(payload: $0) }
    }

    var links: [LinkMessage] { items }
}

/// A device's root queueing discipline (RTM_NEWQDISC with parent TC_H_ROOT).
public struct QdiscMessage: Hashable, Sendable {
    public var ifindex: UInt32
    /// "noqueue" (veth's default: sends at once), "pfifo_fast", "tbf", "mq", ...
    public var kind: String

    /// Parses the payload of an RTM_NEWQDISC message (struct tcmsg, then attributes);
    /// nil for a qdisc that is not a device's root.
    init?(payload: UnsafeRawBufferPointer) {
        guard payload.count >= RTNetlink.tcmsgSize,
              payload.loadUnaligned(fromByteOffset: 12, as: UInt32.self) == RTNetlink.rootHandle else { return nil }
        ifindex = payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        kind = ""
        for (type, value) in NetlinkAttributes(UnsafeRawBufferPointer(rebasing: payload[RTNetlink.tcmsgSize...]))
        where type == RTNetlink.tcaKind {
            kind = LinkMessage.string(value)
        }
    }
}

/// An address of a device (RTM_NEWADDR): IPv4 in the first 4 bytes, as flow keys hold it.
public struct AddressMessage: Hashable, Sendable {
    public var ifindex: UInt32
    public var family: UInt8
    public var address: IPAddress

    /// Parses the payload of an RTM_NEWADDR message (struct ifaddrmsg, then
    /// attributes): IFA_LOCAL where present (the device's own address on
    /// point-to-point links), else IFA_ADDRESS.
    init?(payload: UnsafeRawBufferPointer) {
        guard payload.count >= RTNetlink.ifaddrSize else { return nil }
        let family = payload[0]
        guard family == UInt8(AF_INET) || family == UInt8(AF_INET6) else { return nil }
        ifindex = payload.loadUnaligned(fromByteOffset: 4, as: UInt32.self)
        self.family = family == UInt8(AF_INET) ? 4 : 6
        var local: [UInt8]?, address: [UInt8]?
        for (type, value) in NetlinkAttributes(UnsafeRawBufferPointer(rebasing: payload[RTNetlink.ifaddrSize...]))
        where value.count == (family == UInt8(AF_INET) ? 4 : 16) {
            if type == RTNetlink.ifaLocal { local = Array(value) }
            if type == RTNetlink.ifaAddress { address = Array(value) }
        }
        guard let bytes = local ?? address else { return nil }
        self.address = IPAddress(bytes: bytes)
    }
}

extension AddressMessage {
    /// 127.0.0.0/8, ::1 and fe80::/10: not where a flow's ends are told apart.
    var isLoopbackOrLinkLocal: Bool {
        if family == 4 { return address.high >> 56 == 127 }
        return (address.high == 0 && address.low == 1) || address.high >> 54 == 0x3FA
    }
}

extension Dump<AddressMessage> {
    init(sequence: UInt32) {
        self.init(sequence: sequence, itemType: RTNetlink.newAddress, operation: "RTM_GETADDR dump") { AddressMessage(payload: $0) }
    }
}

extension Dump<QdiscMessage> {
    init(sequence: UInt32) {
        self.init(sequence: sequence, itemType: RTNetlink.newQdisc, operation: "RTM_GETQDISC dump") { QdiscMessage(payload: $0) }
    }
}

/// Builds netlink messages in host byte order, attributes 4-byte aligned: our
/// requests, and the kernel's replies in tests.
struct NetlinkWriter {
    private(set) var bytes: [UInt8] = []

    /// Appends a message: header, then what `body` writes; the length is filled in after.
    mutating func message(type: UInt16, flags: UInt16, sequence: UInt32, _ body: (inout NetlinkWriter) -> Void) {
        let start = bytes.count
        append(UInt32(0))
        append(type)
        append(flags)
        append(sequence)
        append(UInt32(0)) // nlmsg_pid: 0, the kernel
        body(&self)
        patchLength(at: start, as: UInt32.self)
        pad()
    }

    /// Appends an attribute with `value` as its bytes.
    mutating func attribute(_ type: UInt16, _ value: some Collection<UInt8>) {
        attribute(type) { $0.bytes.append(contentsOf: value) }
    }

    mutating func attribute<T: FixedWidthInteger>(_ type: UInt16, _ value: T) {
        attribute(type) { $0.append(value) }
    }

    /// Appends a NUL-terminated string attribute.
    mutating func attribute(_ type: UInt16, string: String) {
        attribute(type, Array(string.utf8) + [0])
    }

    /// Appends an attribute whose value `body` writes (nested attributes).
    mutating func attribute(_ type: UInt16, _ body: (inout NetlinkWriter) -> Void) {
        let start = bytes.count
        append(UInt16(0))
        append(type)
        body(&self)
        patchLength(at: start, as: UInt16.self)
        pad()
    }

    mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    /// Appends `count` zero bytes: a C struct of the message left all zero.
    mutating func zeros(_ count: Int) {
        bytes.append(contentsOf: repeatElement(0, count: count))
    }

    private mutating func patchLength<T: FixedWidthInteger>(at start: Int, as: T.Type) {
        withUnsafeBytes(of: T(bytes.count - start)) { length in
            for (i, byte) in length.enumerated() { bytes[start + i] = byte }
        }
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }
}

extension NetlinkWriter {
    /// An RTM_GETLINK request for every device of the namespace, without counters.
    static func linkDumpRequest(sequence: UInt32) -> [UInt8] {
        var w = NetlinkWriter()
        w.message(type: RTNetlink.getLink, flags: RTNetlink.request | RTNetlink.dump, sequence: sequence) { m in
            m.zeros(RTNetlink.ifinfoSize) // struct ifinfomsg: any family, any device
            m.attribute(RTNetlink.extMask, RTNetlink.skipStats)
        }
        return w.bytes
    }

    /// An RTM_GETADDR request for every address of the namespace.
    static func addressDumpRequest(sequence: UInt32) -> [UInt8] {
        var w = NetlinkWriter()
        w.message(type: RTNetlink.getAddress, flags: RTNetlink.request | RTNetlink.dump, sequence: sequence) { m in
            m.zeros(RTNetlink.ifaddrSize) // struct ifaddrmsg: any family, any device
        }
        return w.bytes
    }

    /// An RTM_GETQDISC request for every qdisc of the namespace.
    static func qdiscDumpRequest(sequence: UInt32) -> [UInt8] {
        var w = NetlinkWriter()
        w.message(type: RTNetlink.getQdisc, flags: RTNetlink.request | RTNetlink.dump, sequence: sequence) { m in
            m.zeros(RTNetlink.tcmsgSize) // struct tcmsg: any family, any device
        }
        return w.bytes
    }

    /// An RTM_GETNSID request: the nsid the socket's namespace has for the one `netnsFD` opens.
    static func netnsIDRequest(sequence: UInt32, netnsFD: Int32) -> [UInt8] {
        var w = NetlinkWriter()
        w.message(type: RTNetlink.getNetnsID, flags: RTNetlink.request, sequence: sequence) { m in
            m.zeros(RTNetlink.rtgenSize) // struct rtgenmsg: any family
            m.attribute(RTNetlink.netnsFD, UInt32(bitPattern: netnsFD))
        }
        return w.bytes
    }
}

/// The answer to an RTM_GETNSID request, from the datagrams the kernel sends for it.
struct NetnsIDReply {
    let sequence: UInt32
    private(set) var isComplete = false
    /// The nsid; nil when the namespace has none for that one.
    private(set) var netnsID: Int32?

    static let operation = "RTM_GETNSID"

    init(sequence: UInt32) { self.sequence = sequence }

    mutating func take(_ datagram: UnsafeRawBufferPointer) throws(NetlinkError) {
        for message in try NetlinkMessage.messages(in: datagram, operation: Self.operation) where message.sequence == sequence {
            switch message.type {
            case RTNetlink.newNetnsID where message.payload.count >= RTNetlink.rtgenSize:
                var id: Int32?
                for (type, value) in NetlinkAttributes(UnsafeRawBufferPointer(rebasing: message.payload[RTNetlink.rtgenSize...]))
                where type == RTNetlink.netnsID && value.count >= 4 {
                    id = value.loadUnaligned(as: Int32.self)
                }
                // NETNSA_NSID_NOT_ASSIGNED (-1): this namespace has no id for that one
                netnsID = id.flatMap { $0 < 0 ? nil : $0 }
                isComplete = true
            case RTNetlink.error:
                try message.throwIfFailed(Self.operation)
                isComplete = true // an acknowledgement without an answer: no nsid
            default:
                break
            }
        }
    }
}
