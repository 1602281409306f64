import HoptraceCore

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
    /// Addresses by the namespace they are in (those in exactly one).
    public var addresses: [IPAddress: UInt32] = [:]

    public init(namespaces: [NetnsInfo], devices: [DeviceInfo]) {
        self.namespaces = namespaces
        self.devices = devices
    }

    /// Builds the topology from each namespace's devices.
    ///
    /// A veth's peer is the veth whose ifindex is our `linkIndex` and whose `linkIndex`
    /// is our ifindex: in the same namespace when `linkNetnsID` is nil, in another one
    /// otherwise. An nsid means something only inside the namespace that holds it, so
    /// the pair of indexes decides; only when veths in several namespaces fit does
    /// `netnsID(candidate, ours)` (the nsid our namespace has for a candidate's) pick
    /// the one our `linkNetnsID` names.
    public init(namespaces: [NetnsInfo], links: [UInt32: [LinkMessage]],
                netnsID: (_ namespace: NetnsInfo, _ seenFrom: NetnsInfo) -> Int32? = { _, _ in nil }) {
        self.namespaces = namespaces
        var devices: [DeviceInfo] = [], messages: [LinkMessage] = []
        for ns in namespaces {
            let own = links[ns.inode] ?? []
            // a master is a device of the same namespace
            let names = Dictionary(own.map { ($0.ifindex, $0.name) }, uniquingKeysWith: { first, _ in first })
            for l in own {
                devices.append(DeviceInfo(endpoint: Endpoint(netns: ns.inode, ifindex: l.ifindex), name: l.name, kind: l.kind,
                                          master: l.masterIndex.flatMap { names[$0] }, peer: nil, state: l.operstate))
                messages.append(l)
            }
        }
        struct Ends: Hashable { var ifindex, linkIndex: UInt32 }
        var vethsByEnds: [Ends: [Int]] = [:]
        for i in devices.indices where devices[i].isVeth {
            if let peer = messages[i].linkIndex { vethsByEnds[Ends(ifindex: messages[i].ifindex, linkIndex: peer), default: []].append(i) }
        }
        let namespaceByInode = Dictionary(namespaces.map { ($0.inode, $0) }, uniquingKeysWith: { first, _ in first })
        for i in devices.indices where devices[i].isVeth {
            guard let peerIndex = messages[i].linkIndex else { continue }
            let me = devices[i].endpoint, nsid = messages[i].linkNetnsID
            var candidates = (vethsByEnds[Ends(ifindex: peerIndex, linkIndex: me.ifindex)] ?? []).filter { j in
                j != i && (nsid == nil) == (devices[j].endpoint.netns == me.netns)
            }
            if candidates.count > 1, let nsid, let mine = namespaceByInode[me.netns] {
                candidates = candidates.filter { j in
                    namespaceByInode[devices[j].endpoint.netns].map { netnsID($0, mine) == nsid } ?? false
                }
            }
            if candidates.count == 1 { devices[i].peer = devices[candidates[0]].endpoint }
        }
        self.devices = devices
    }

    public func namespace(_ inode: UInt32) -> NetnsInfo? { namespaces.first { $0.inode == inode } }
    public func namespace(named name: String) -> NetnsInfo? { namespaces.first { $0.name == name } }
    public func device(_ e: Endpoint) -> DeviceInfo? { devices.first { $0.endpoint == e } }

    public var names: NameTable {
        var t = NameTable()
        for ns in namespaces {
            t.netns[ns.inode] = ns.name
            if let w = ns.workload { t.workloads[ns.inode] = w }
        }
        t.addresses = addresses
        for d in devices {
            t.devices[d.endpoint] = d.name
            if let p = d.peer { t.peers[d.endpoint] = p }
        }
        return t
    }
}
