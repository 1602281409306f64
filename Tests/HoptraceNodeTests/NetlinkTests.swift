import Foundation
import HoptraceCore
import XCTest

@testable import HoptraceNode

/// Parsing of rtnetlink replies: real dumps captured from a lab, and messages built here
/// for what a small lab does not show (errors, interrupted and multi-part dumps).
final class NetlinkTests: XCTestCase {
    /// The devices in Fixtures/links-NAME.bin: the reply, as received, to the request
    /// `RouteSocket.links()` sends (sequence 1), captured as root in each namespace of a
    /// lab made with `ip`: hub (br0 up; v0 and v1 up, on br0, peers of a's and b's
    /// eth0, up), dumped first, so the hub's nsids are a 0 and b 1, and theirs for it 0.
    static func fixtureDump(_ name: String, datagramPerMessage: Bool = false) throws -> [LinkMessage] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/links-\(name).bin")
        let bytes = [UInt8](try Data(contentsOf: url))
        var dump = LinkDump(sequence: 1)
        try bytes.withUnsafeBytes { raw in
            guard datagramPerMessage else { return try dump.take(raw) }
            // as a dump too large for one datagram arrives: a message at a time
            for message in try NetlinkMessage.messages(in: raw, operation: "test") {
                let start = message.payload.baseAddress! - RTNetlink.headerSize - raw.baseAddress!
                try dump.take(UnsafeRawBufferPointer(rebasing: raw[start..<(start + RTNetlink.headerSize + message.payload.count)]))
            }
        }
        XCTAssertTrue(dump.isComplete, "\(name): no NLMSG_DONE")
        XCTAssertFalse(dump.isInterrupted)
        return dump.links
    }

    func testRealDumpsParseAsIpPrintsThem() throws {
        // what `ip -json -details link show` printed in the same namespaces
        XCTAssertEqual(try Self.fixtureDump("hub"), [
            LinkMessage(ifindex: 1, name: "lo", kind: "", operstate: "UNKNOWN"),
            LinkMessage(ifindex: 2, name: "br0", kind: "bridge", operstate: "UP"),
            LinkMessage(ifindex: 3, name: "v0", kind: "veth", operstate: "UP", masterIndex: 2, linkIndex: 2, linkNetnsID: 0),
            LinkMessage(ifindex: 4, name: "v1", kind: "veth", operstate: "UP", masterIndex: 2, linkIndex: 2, linkNetnsID: 1),
        ])
        XCTAssertEqual(try Self.fixtureDump("a"), [
            LinkMessage(ifindex: 1, name: "lo", kind: "", operstate: "UNKNOWN"),
            LinkMessage(ifindex: 2, name: "eth0", kind: "veth", operstate: "UP", linkIndex: 3, linkNetnsID: 0),
        ])
        for name in ["hub", "a", "b"] {
            XCTAssertEqual(try Self.fixtureDump(name, datagramPerMessage: true), try Self.fixtureDump(name), name)
        }
    }

    /// A reply message as the kernel sends it for one device.
    func newLink(_ w: inout NetlinkWriter, sequence: UInt32 = 7, flags: UInt16 = RTNetlink.multi, ifindex: Int32,
                 _ attributes: (inout NetlinkWriter) -> Void) {
        w.message(type: RTNetlink.newLink, flags: flags, sequence: sequence) { m in
            m.append(UInt8(0)); m.append(UInt8(0)); m.append(UInt16(1)) // family, pad, ARPHRD_ETHER
            m.append(ifindex); m.append(UInt32(0)); m.append(UInt32(0)) // index, flags, change
            attributes(&m)
        }
    }

    func done(_ w: inout NetlinkWriter, sequence: UInt32 = 7, error: Int32 = 0, flags: UInt16 = RTNetlink.multi) {
        w.message(type: RTNetlink.done, flags: flags, sequence: sequence) { $0.append(error) }
    }

    func take(_ w: NetlinkWriter, into dump: inout LinkDump) throws {
        try w.bytes.withUnsafeBytes { try dump.take($0) }
    }

    func testBuiltMessagesAcrossDatagrams() throws {
        var first = NetlinkWriter(), second = NetlinkWriter()
        newLink(&first, ifindex: 5) { m in
            m.attribute(RTNetlink.ifname, string: "x0")
            m.attribute(RTNetlink.operstate, UInt8(3))
            m.attribute(RTNetlink.link, UInt32(6))
            m.attribute(RTNetlink.master, UInt32(9))
            // nested, with NLA_F_NESTED set as some kernels do
            m.attribute(RTNetlink.linkInfo | 0x8000) { $0.attribute(RTNetlink.infoKind, string: "veth") }
        }
        newLink(&first, sequence: 6, ifindex: 99) { $0.attribute(RTNetlink.ifname, string: "not-ours") } // an older request's
        newLink(&second, ifindex: 6) { m in
            m.attribute(RTNetlink.ifname, string: "x1")
            m.attribute(RTNetlink.operstate, UInt8(42)) // a state newer than this code
            m.attribute(RTNetlink.link, UInt32(0)) // its peer is gone
            m.attribute(200, [1, 2, 3]) // an attribute we do not know, unaligned
        }
        done(&second)
        var dump = LinkDump(sequence: 7)
        try take(first, into: &dump)
        XCTAssertFalse(dump.isComplete)
        try take(second, into: &dump)
        XCTAssertTrue(dump.isComplete)
        XCTAssertEqual(dump.links, [
            LinkMessage(ifindex: 5, name: "x0", kind: "veth", operstate: "LOWERLAYERDOWN", masterIndex: 9, linkIndex: 6),
            LinkMessage(ifindex: 6, name: "x1", kind: "", operstate: "42"),
        ])
    }

    /// RTM_GETADDR replies: IFA_LOCAL before IFA_ADDRESS, both families, and the
    /// addresses that do not tell a flow's ends apart (loopback, link-local).
    func testAddressDump() throws {
        var w = NetlinkWriter()
        func newAddress(family: Int32, ifindex: UInt32, _ attributes: (inout NetlinkWriter) -> Void) {
            w.message(type: RTNetlink.newAddress, flags: RTNetlink.multi, sequence: 3) { m in
                m.append(UInt8(family)); m.append(UInt8(24)); m.append(UInt8(0)); m.append(UInt8(0)) // family, prefix, flags, scope
                m.append(ifindex)
                attributes(&m)
            }
        }
        newAddress(family: AF_INET, ifindex: 2) { m in
            m.attribute(RTNetlink.ifaAddress, [10, 0, 0, 99] as [UInt8]) // the peer's, on point-to-point
            m.attribute(RTNetlink.ifaLocal, [10, 0, 0, 1] as [UInt8])
        }
        newAddress(family: AF_INET, ifindex: 1) { $0.attribute(RTNetlink.ifaAddress, [127, 0, 0, 1] as [UInt8]) }
        newAddress(family: AF_INET6, ifindex: 2) { $0.attribute(RTNetlink.ifaAddress, [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]) }
        newAddress(family: AF_INET6, ifindex: 2) { $0.attribute(RTNetlink.ifaAddress, [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [7]) }
        newAddress(family: AF_INET, ifindex: 3) { $0.attribute(RTNetlink.ifaAddress, [1, 2] as [UInt8]) } // cut short: skipped
        w.message(type: RTNetlink.done, flags: RTNetlink.multi, sequence: 3) { $0.append(Int32(0)) }
        var dump = Dump<AddressMessage>(sequence: 3)
        try w.bytes.withUnsafeBytes { try dump.take($0) }
        XCTAssertTrue(dump.isComplete)
        XCTAssertEqual(dump.items.map(\.address), [IPAddress(bytes: [10, 0, 0, 1]), IPAddress(bytes: [127, 0, 0, 1]),
                                                   IPAddress(bytes: [0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]),
                                                   IPAddress(bytes: [0xfd, 0] + [UInt8](repeating: 0, count: 13) + [7])])
        XCTAssertEqual(dump.items.map(\.isLoopbackOrLinkLocal), [false, true, true, false])
    }

    func testErrorsInterruptedDumpsAndMalformedReplies() throws {
        var error = NetlinkWriter()
        error.message(type: RTNetlink.error, flags: 0, sequence: 7) { $0.append(-EPERM); $0.zeros(16) }
        var dump = LinkDump(sequence: 7)
        XCTAssertThrowsError(try take(error, into: &dump)) { e in
            XCTAssertEqual(e as? NetlinkError, NetlinkError("RTM_GETLINK dump", code: EPERM))
            XCTAssertEqual("\(e)", "RTM_GETLINK dump: Operation not permitted")
        }

        var failedDone = NetlinkWriter()
        done(&failedDone, error: -EINTR)
        dump = LinkDump(sequence: 7)
        XCTAssertThrowsError(try take(failedDone, into: &dump))

        var interrupted = NetlinkWriter()
        newLink(&interrupted, flags: RTNetlink.multi | RTNetlink.dumpInterrupted, ifindex: 1) { $0.attribute(RTNetlink.ifname, string: "lo") }
        done(&interrupted)
        dump = LinkDump(sequence: 7)
        try take(interrupted, into: &dump)
        XCTAssertTrue(dump.isInterrupted && dump.isComplete)

        var cut = NetlinkWriter()
        newLink(&cut, ifindex: 1) { $0.attribute(RTNetlink.ifname, string: "lo") }
        dump = LinkDump(sequence: 7)
        XCTAssertThrowsError(try cut.bytes.dropLast(4).withUnsafeBytes { try dump.take($0) }) { e in
            XCTAssertEqual("\(e)", "RTM_GETLINK dump: malformed reply")
        }
    }

    func testRequestsAndNetnsIDReplies() throws {
        let request = NetlinkWriter.linkDumpRequest(sequence: 3)
        XCTAssertEqual(request.count, 16 + 16 + 8)
        request.withUnsafeBytes { raw in
            XCTAssertEqual(raw.loadUnaligned(as: UInt32.self), 40)
            XCTAssertEqual(raw.loadUnaligned(fromByteOffset: 4, as: UInt16.self), RTNetlink.getLink)
            XCTAssertEqual(raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self), 0x301) // NLM_F_REQUEST | NLM_F_DUMP
            XCTAssertEqual(raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self), 3)
            XCTAssertEqual(raw.loadUnaligned(fromByteOffset: 36, as: UInt32.self), RTNetlink.skipStats)
        }
        XCTAssertEqual(NetlinkWriter.netnsIDRequest(sequence: 4, netnsFD: 9).count, 16 + 4 + 8)

        func reply(_ nsid: Int32) throws -> NetnsIDReply {
            var w = NetlinkWriter()
            w.message(type: RTNetlink.newNetnsID, flags: 0, sequence: 4) { m in
                m.append(UInt32(0))
                m.attribute(RTNetlink.netnsID, nsid)
            }
            var r = NetnsIDReply(sequence: 4)
            try w.bytes.withUnsafeBytes { try r.take($0) }
            return r
        }
        XCTAssertEqual(try reply(5).netnsID, 5)
        XCTAssertTrue(try reply(5).isComplete)
        XCTAssertNil(try reply(-1).netnsID, "NETNSA_NSID_NOT_ASSIGNED")
    }

    /// Two labs alike: both hubs have v0 (ifindex 3) linked to an eth0 (ifindex 2) that
    /// links back to 3. The indexes fit both ways; the nsids tell the pairs apart.
    func testAmbiguousPeersResolvedByNetnsID() {
        let ns = [NetnsInfo(inode: 10, name: "hub1", kind: .named, path: "/run/netns/hub1"),
                  NetnsInfo(inode: 11, name: "a1", kind: .named, path: "/run/netns/a1"),
                  NetnsInfo(inode: 20, name: "hub2", kind: .named, path: "/run/netns/hub2"),
                  NetnsInfo(inode: 21, name: "a2", kind: .named, path: "/run/netns/a2")]
        let hub = [LinkMessage(ifindex: 3, name: "v0", kind: "veth", linkIndex: 2, linkNetnsID: 0),
                   // a veth pair inside the namespace: no nsid, peer beside it
                   LinkMessage(ifindex: 4, name: "x0", kind: "veth", linkIndex: 5),
                   LinkMessage(ifindex: 5, name: "x1", kind: "veth", linkIndex: 4)]
        let container = [LinkMessage(ifindex: 2, name: "eth0", kind: "veth", linkIndex: 3, linkNetnsID: 0)]
        let links: [UInt32: [LinkMessage]] = [10: hub, 11: container, 20: hub, 21: container]
        // each namespace's nsid 0 is its own partner
        let partner: [UInt32: UInt32] = [10: 11, 11: 10, 20: 21, 21: 20]
        var asked = 0
        let t = NodeTopology(namespaces: ns, links: links) { namespace, seenFrom in
            asked += 1
            return partner[seenFrom.inode] == namespace.inode ? 0 : 7
        }
        XCTAssertEqual(t.device(Endpoint(netns: 10, ifindex: 3))?.peer, Endpoint(netns: 11, ifindex: 2))
        XCTAssertEqual(t.device(Endpoint(netns: 20, ifindex: 3))?.peer, Endpoint(netns: 21, ifindex: 2))
        XCTAssertEqual(t.device(Endpoint(netns: 21, ifindex: 2))?.peer, Endpoint(netns: 20, ifindex: 3))
        XCTAssertEqual(t.device(Endpoint(netns: 10, ifindex: 4))?.peer, Endpoint(netns: 10, ifindex: 5))
        XCTAssertEqual(asked, 8, "only the four ambiguous ends ask, about their two candidates each")
        // without nsids the ambiguous ends stay unpaired rather than guessed
        let unresolved = NodeTopology(namespaces: ns, links: links)
        XCTAssertNil(unresolved.device(Endpoint(netns: 10, ifindex: 3))?.peer)
        XCTAssertEqual(unresolved.device(Endpoint(netns: 20, ifindex: 5))?.peer, Endpoint(netns: 20, ifindex: 4))
    }
}
