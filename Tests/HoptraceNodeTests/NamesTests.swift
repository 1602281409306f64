import Foundation
import XCTest

import HoptraceCore
@testable import HoptraceNode

final class NamesTests: XCTestCase {
    var root = ""

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "hoptrace-fixture-\(getpid())-\(UUID().uuidString)/"
        let fm = FileManager.default
        func proc(_ pid: Int, ns: String, cgroup: String? = nil, comm: String? = nil) throws {
            try fm.createDirectory(atPath: root + "proc/\(pid)/ns", withIntermediateDirectories: true)
            try fm.createSymbolicLink(atPath: root + "proc/\(pid)/ns/net", withDestinationPath: ns)
            if let cgroup { try cgroup.write(toFile: root + "proc/\(pid)/cgroup", atomically: true, encoding: .utf8) }
            if let comm { try comm.write(toFile: root + "proc/\(pid)/comm", atomically: true, encoding: .utf8) }
        }
        try proc(1, ns: "net:[4026531840]", comm: "systemd\n")
        try proc(77, ns: "net:[4026531840]", comm: "sshd\n")   // host namespace again: stays "host"
        try proc(123, ns: "net:[4026532001]",
                 cgroup: "0::/system.slice/docker-3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d0c1b2a3f4e.scope\n")
        try proc(456, ns: "net:[4026532002]", cgroup: "0::/user.slice\n", comm: "nginx\n")
        try fm.createDirectory(atPath: root + "run/netns", withIntermediateDirectories: true)
        XCTAssertTrue(fm.createFile(atPath: root + "run/netns/web", contents: Data()))
        try fm.createDirectory(atPath: root + "proc/self", withIntermediateDirectories: true) // not a pid: ignored
    }

    override func tearDownWithError() throws {
        try? FileManager.default.removeItem(atPath: root)
    }

    func testScansHostNamedContainerAndProcessNamespaces() throws {
        let found = NamespaceScanner(root: root).scan()
        var st = stat()
        XCTAssertEqual(stat(root + "run/netns/web", &st), 0)
        let webInode = UInt32(truncatingIfNeeded: st.st_ino)
        let byInode = Dictionary(uniqueKeysWithValues: found.map { ($0.inode, $0) })
        XCTAssertEqual(byInode[4026531840]?.name, "host")
        XCTAssertEqual(byInode[4026531840]?.kind, .host)
        XCTAssertEqual(byInode[4026532001]?.name, "docker:3f4e5d6c7b8a") // no config.v2.json in the fixture: by id
        XCTAssertEqual(byInode[4026532001]?.kind, .container)
        XCTAssertEqual(byInode[4026532002]?.name, "nginx:456")
        XCTAssertEqual(byInode[webInode]?.name, "web")
        XCTAssertEqual(byInode[webInode]?.path, root + "run/netns/web")
        XCTAssertEqual(found.first?.kind, .host)
        XCTAssertEqual(found.count, 4)
    }

    /// A namespace whose file has gone by the time discovery opens it (its process
    /// exited) is left out; one that cannot be entered is listed without devices.
    func testDiscoveryLeavesOutNamespacesThatAreGone() {
        // the fixture's /proc links point nowhere; run/netns/web is a plain file
        let t = Discovery.topology(root: root)
        XCTAssertEqual(t.namespaces.map(\.name), ["web"])
        XCTAssertEqual(t.devices, [])
    }

    func testContainerIDFormats() {
        let id = String(repeating: "ab", count: 32)
        XCTAssertEqual(WorkloadResolver.identity(cgroup: "0::/kubepods/burstable/pod1234/\(id)\n").containerID, id)
        XCTAssertEqual(WorkloadResolver.identity(cgroup: "0::/system.slice/cri-containerd-\(id).scope").containerID, id)
        XCTAssertNil(WorkloadResolver.identity(cgroup: "0::/user.slice/user-0.slice/session-1.scope").containerID)
        XCTAssertEqual(NamespaceScanner.inode(fromNsLink: "net:[4026531840]"), 4026531840)
        XCTAssertNil(NamespaceScanner.inode(fromNsLink: "mnt:[4026531840]"))
    }

    /// The devices of a real bridged lab (hub: br0, v0, v1; a and b: eth0), from the
    /// RTM_GETLINK dumps the kernel sent for them (see `NetlinkTests.fixtureDump`).
    static func fixtureTopology() throws -> NodeTopology {
        let ns = [NetnsInfo(inode: 100, name: "hub", kind: .named, path: "/run/netns/hub"),
                  NetnsInfo(inode: 101, name: "a", kind: .named, path: "/run/netns/a"),
                  NetnsInfo(inode: 102, name: "b", kind: .named, path: "/run/netns/b")]
        return NodeTopology(namespaces: ns, links: [100: try NetlinkTests.fixtureDump("hub"), 101: try NetlinkTests.fixtureDump("a"),
                                                    102: try NetlinkTests.fixtureDump("b")])
    }

    func testVethPeersMatchedAcrossNamespaces() throws {
        let t = try Self.fixtureTopology()
        let v0 = t.devices.first { $0.name == "v0" }!
        let v1 = t.devices.first { $0.name == "v1" }!
        XCTAssertEqual(v0.peer, Endpoint(netns: 101, ifindex: 2))
        XCTAssertEqual(v1.peer, Endpoint(netns: 102, ifindex: 2))
        XCTAssertEqual(v0.master, "br0")
        XCTAssertEqual(t.device(Endpoint(netns: 101, ifindex: 2))?.peer, v0.endpoint)
        XCTAssertNil(t.devices.first { $0.name == "br0" }?.peer)
        XCTAssertEqual(t.names.label(Endpoint(netns: 102, ifindex: 2)), "b/eth0")
        XCTAssertEqual(t.names.label(Endpoint(netns: 9, ifindex: 5)), "netns:9/if5")
    }

    func testSelection() throws {
        let t = try Self.fixtureTopology()
        XCTAssertEqual(try t.select(allVeth: true, netns: nil, interfaces: []).count, 4)
        let one = try t.select(allVeth: false, netns: "a", interfaces: ["eth0"])
        XCTAssertEqual(one.map(\.label), ["a/eth0", "hub/v0"]) // the peer comes with it
        XCTAssertEqual(one.first?.netnsPath, "/run/netns/a")
        XCTAssertEqual(one.map(\.ingress), [false, false], "each end's sender is traced at its egress")
        var lonely = t
        lonely.devices.removeAll { $0.name == "v0" } // a/eth0's peer is gone from view
        XCTAssertEqual(try lonely.select(allVeth: false, netns: "a", interfaces: ["eth0"]).map(\.ingress), [true])
        XCTAssertThrowsError(try t.select(allVeth: false, netns: "web", interfaces: ["eth0"])) { e in
            XCTAssertTrue("\(e)".contains("no network namespace named 'web'"), "\(e)")
        }
        XCTAssertThrowsError(try t.select(allVeth: false, netns: "a", interfaces: ["eth9"])) { e in
            XCTAssertTrue("\(e)".contains("no device 'eth9' in netns 'a'"), "\(e)")
        }
        XCTAssertThrowsError(try t.select(allVeth: false, netns: nil, interfaces: []))
    }
}
