import Foundation
import HoptraceCore

/// One device as `ip -json -details link show` prints it (the fields we use).
public struct IPLink: Decodable, Sendable {
    public struct LinkInfo: Decodable, Sendable {
        public var info_kind: String?
    }

    public var ifindex: UInt32
    public var ifname: String
    public var link_index: UInt32?
    public var link_netnsid: Int?
    public var master: String?
    public var operstate: String?
    public var linkinfo: LinkInfo?

    public var kind: String { linkinfo?.info_kind ?? "" }
}

/// A device on the node: where it is, what it is, and its veth peer if it has one.
public struct DeviceInfo: Hashable, Codable, Sendable {
    public var endpoint: Endpoint
    public var name: String
    public var kind: String
    public var master: String?
    public var peer: Endpoint?
    public var state: String

    public var isVeth: Bool { kind == "veth" }
}

/// The namespaces and devices of a node, with veth pairs matched.
public struct NodeTopology: Sendable {
    public var namespaces: [NetnsInfo]
    public var devices: [DeviceInfo]

    public init(namespaces: [NetnsInfo], devices: [DeviceInfo]) {
        self.namespaces = namespaces
        self.devices = devices
    }

    /// Builds the topology from each namespace's `ip -json -details link` output.
    /// A veth's peer is the veth whose ifindex is our `link_index` and whose
    /// `link_index` is our ifindex: in the same namespace when `link_netnsid` is
    /// absent, in another one otherwise (nsids are per-namespace, so we match by the
    /// pair of indexes and prefer a unique candidate).
    public init(namespaces: [NetnsInfo], links: [UInt32: [IPLink]]) {
        self.namespaces = namespaces
        var devices: [DeviceInfo] = []
        for ns in namespaces {
            for l in links[ns.inode] ?? [] {
                devices.append(DeviceInfo(endpoint: Endpoint(netns: ns.inode, ifindex: l.ifindex), name: l.ifname,
                                          kind: l.kind, master: l.master, peer: nil, state: l.operstate ?? "UNKNOWN"))
            }
        }
        var raw: [Endpoint: IPLink] = [:]
        for ns in namespaces { for l in links[ns.inode] ?? [] { raw[Endpoint(netns: ns.inode, ifindex: l.ifindex)] = l } }
        for i in devices.indices where devices[i].isVeth {
            let me = devices[i].endpoint
            guard let l = raw[me], let peerIndex = l.link_index else { continue }
            let candidates = devices.filter { d in
                d.isVeth && d.endpoint != me && d.endpoint.ifindex == peerIndex
                    && (l.link_netnsid == nil ? d.endpoint.netns == me.netns : d.endpoint.netns != me.netns)
                    && raw[d.endpoint]?.link_index == me.ifindex
            }
            if candidates.count == 1 { devices[i].peer = candidates[0].endpoint }
        }
        self.devices = devices
    }

    public func namespace(_ inode: UInt32) -> NetnsInfo? { namespaces.first { $0.inode == inode } }
    public func namespace(named name: String) -> NetnsInfo? { namespaces.first { $0.name == name } }
    public func device(_ e: Endpoint) -> DeviceInfo? { devices.first { $0.endpoint == e } }

    public var names: NameTable {
        var t = NameTable()
        for ns in namespaces { t.netns[ns.inode] = ns.name }
        for d in devices { t.devices[d.endpoint] = d.name }
        return t
    }
}
