import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import XCTest

/// Discovery over rtnetlink against what `ip` prints for the same namespaces.
final class DiscoveryTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRootAndBPF()
        Lab.sweepOrphans()
    }

    /// One device as `ip -json -details link show` prints it (the fields compared).
    struct IPLink: Decodable {
        struct LinkInfo: Decodable {
            var info_kind: String?
        }

        var ifindex: UInt32
        var ifname: String
        /// The peer's ifindex, in the namespace `link_netnsid` names.
        var link_index: UInt32?
        var link_netnsid: Int32?
        /// The peer's name, when it is in the same namespace.
        var link: String?
        var master: String?
        var operstate: String
        var linkinfo: LinkInfo?
    }

    /// An nsid of a namespace, as `ip -json netns list-id` prints it.
    struct IPNetnsID: Decodable {
        var nsid: Int32
        var name: String?
    }

    /// A device in the terms both sides can give: the peer as "namespace/ifindex".
    struct Row: Equatable, CustomStringConvertible {
        var ifindex: UInt32
        var name: String, kind: String, master: String?, state: String, peer: String?
        var description: String { "\(ifindex) \(name) \(kind) master=\(master ?? "-") \(state) peer=\(peer ?? "-")" }
    }

    /// For each namespace whose devices differ: what discovery found and what `ip` printed.
    func differencesFromIp(_ topology: NodeTopology, namespaces: [String]) throws -> [String] {
        let names = topology.names
        var differences: [String] = []
        for netns in namespaces {
            guard let ours = topology.namespace(named: netns) else {
                differences.append("\(netns): not found")
                continue
            }
            // the link dump first: it gives the nsids that list-id then shows
            let links = try JSONDecoder().decode([IPLink].self, from: Data(
                try Command.run(["ip", "-n", netns, "-json", "-details", "link", "show"]).utf8))
            let ids = try JSONDecoder().decode([IPNetnsID].self, from: Data(
                try Command.run(["ip", "-n", netns, "-json", "netns", "list-id"]).utf8))
            let namespaceOfNsid = Dictionary(ids.map { ($0.nsid, $0.name ?? "?") }, uniquingKeysWith: { first, _ in first })
            let indexOfName = Dictionary(links.map { ($0.ifname, $0.ifindex) }, uniquingKeysWith: { first, _ in first })
            let expected = links.map { l in
                let kind = l.linkinfo?.info_kind ?? ""
                var peer: String?
                if kind == "veth" {
                    if let nsid = l.link_netnsid, let index = l.link_index {
                        peer = "\(namespaceOfNsid[nsid] ?? "nsid \(nsid)")/\(index)"
                    } else if let name = l.link, let index = indexOfName[name] {
                        peer = "\(netns)/\(index)"
                    }
                }
                return Row(ifindex: l.ifindex, name: l.ifname, kind: kind, master: l.master, state: l.operstate, peer: peer)
            }
            let found = topology.devices.filter { $0.endpoint.netns == ours.inode }.map { d in
                Row(ifindex: d.endpoint.ifindex, name: d.name, kind: d.kind, master: d.master, state: d.state,
                    peer: d.peer.map { "\(names.netnsName($0.netns))/\($0.ifindex)" })
            }
            if found != expected { differences.append("\(netns): found \(found), ip printed \(expected)") }
        }
        return differences
    }

    /// Two labs alike in their indexes (a bridged hub's v0 and a routed hub's v1 are
    /// both ifindex 3 linked to an ifindex 2 that links back to 3), so only the nsids
    /// can pair them, and a veth pair inside one namespace with one end down: every
    /// namespace's devices, kinds, masters, states and veth peers as `ip` prints them.
    func testTopologyMatchesIp() throws {
        let bridged = try Lab(containers: 2)
        defer { bridged.teardown() }
        let routed = try Lab(containers: 2, topology: .routed)
        defer { routed.teardown() }
        try Command.run(["ip", "-n", bridged.hub, "link", "add", "x0", "type", "veth", "peer", "name", "x1"])
        try Command.run(["ip", "-n", bridged.hub, "link", "set", "x0", "up"])
        let labNamespaces = bridged.namespaces + routed.namespaces

        // a device's operstate follows its carrier a moment later (the kernel's link
        // watch batches changes for up to a second): compare again until things settle
        var topology = Discovery.topology()
        var differences = try differencesFromIp(topology, namespaces: labNamespaces)
        for _ in 0..<5 where !differences.isEmpty {
            sleep(1)
            topology = Discovery.topology()
            differences = try differencesFromIp(topology, namespaces: labNamespaces)
        }
        XCTAssertEqual(differences, [])
        let hub = try XCTUnwrap(topology.namespace(named: bridged.hub))
        XCTAssertEqual(topology.devices.first { $0.endpoint.netns == hub.inode && $0.name == "x0" }?.state, "LOWERLAYERDOWN")
    }
}
