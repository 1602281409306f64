import CHoptraceNetns
import Glibc

/// A NETLINK_ROUTE socket made inside one network namespace: what it asks about is
/// that namespace, from whichever thread asks.
final class RouteSocket {
    private let fd: Int32
    private var sequence: UInt32 = 0
    /// The kernel fills dump datagrams up to the largest buffer it has seen us read
    /// into, capped at 32 KiB: fewer, fuller datagrams.
    private let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 32 << 10, alignment: 8)

    /// A socket in the namespace that `netnsPath` opens, or in the calling thread's
    /// own namespace when it is nil. The thread leaves and comes back inside the C
    /// call, so any thread may make one.
    init(netnsPath: String?) throws(NetlinkError) {
        let type = Int32(SOCK_RAW.rawValue | SOCK_CLOEXEC.rawValue), netlinkRoute: Int32 = 0
        let fd: Int32
        if let netnsPath {
            fd = ht_socket_in_netns(netnsPath, AF_NETLINK, type, netlinkRoute)
        } else {
            let made = socket(AF_NETLINK, type, netlinkRoute)
            fd = made < 0 ? -errno : made
        }
        guard fd >= 0 else {
            buffer.deallocate()
            throw NetlinkError("netlink socket in \(netnsPath ?? "this namespace")", code: -fd)
        }
        self.fd = fd
    }

    deinit {
        close(fd)
        buffer.deallocate()
    }

    /// Every device of the namespace (an RTM_GETLINK dump). A dump the kernel marks as
    /// interrupted by a change to the device list is asked for again, a few times.
    func links() throws(NetlinkError) -> [LinkMessage] {
        try dump(NetlinkWriter.linkDumpRequest) { LinkDump(sequence: $0) }
    }

    /// Every address of the namespace's devices (an RTM_GETADDR dump).
    func addresses() throws(NetlinkError) -> [AddressMessage] {
        try dump(NetlinkWriter.addressDumpRequest) { Dump<AddressMessage>(sequence: $0) }
    }

    /// The root qdisc of every device of the namespace (an RTM_GETQDISC dump).
    func rootQdiscs() throws(NetlinkError) -> [QdiscMessage] {
        try dump(NetlinkWriter.qdiscDumpRequest) { Dump<QdiscMessage>(sequence: $0) }
    }

    private func dump<Item>(_ request: (UInt32) -> [UInt8], _ reply: (UInt32) -> Dump<Item>) throws(NetlinkError) -> [Item] {
        func once() throws(NetlinkError) -> Dump<Item> {
            var dump = reply(nextSequence())
            try send(request(dump.sequence), operation: dump.operation)
            while !dump.isComplete { try dump.take(receive(operation: dump.operation)) }
            return dump
        }
        var dump = try once()
        for _ in 0..<2 where dump.isInterrupted { dump = try once() }
        return dump.items
    }

    /// The nsid this namespace has for the namespace that `path` opens (RTM_GETNSID);
    /// nil when it has none.
    func netnsID(of path: String) throws(NetlinkError) -> Int32? {
        let netnsFD = open(path, O_RDONLY | O_CLOEXEC)
        guard netnsFD >= 0 else { throw NetlinkError("open \(path)", code: errno) }
        defer { close(netnsFD) }
        var reply = NetnsIDReply(sequence: nextSequence())
        try send(NetlinkWriter.netnsIDRequest(sequence: reply.sequence, netnsFD: netnsFD), operation: NetnsIDReply.operation)
        while !reply.isComplete { try reply.take(receive(operation: NetnsIDReply.operation)) }
        return reply.netnsID
    }

    private func nextSequence() -> UInt32 {
        sequence &+= 1
        return sequence
    }

    private func send(_ request: [UInt8], operation: String) throws(NetlinkError) {
        while true {
            // no address: an unbound, unconnected netlink socket sends to the kernel (port 0)
            let sent = request.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
            if sent == request.count { return }
            if sent < 0 && errno == EINTR { continue }
            throw NetlinkError(operation, code: sent < 0 ? errno : EIO)
        }
    }

    /// The next datagram of a reply (valid until the next call).
    private func receive(operation: String) throws(NetlinkError) -> UnsafeRawBufferPointer {
        while true {
            // MSG_TRUNC: the datagram's real length, to tell a cut one from a full buffer
            let count = recv(fd, buffer.baseAddress, buffer.count, Int32(MSG_TRUNC))
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { throw NetlinkError(operation, code: count < 0 ? errno : EIO) }
            guard count <= buffer.count else { throw NetlinkError(operation, code: EMSGSIZE) }
            return UnsafeRawBufferPointer(rebasing: buffer[..<count])
        }
    }
}
