import HoptraceCore

/// Why a device selection could not be made; the message says what to do.
public struct SelectionError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

extension NodeTopology {
    /// The devices to attach to: every veth (`allVeth`), or the named devices in
    /// `netns` (the host's when nil) together with their veth peers, so traffic in
    /// both directions through the chosen device is followed from its first hop.
    public func select(allVeth: Bool, netns: String?, interfaces: [String]) throws(SelectionError) -> [DeviceSelection] {
        var chosenEndpoints = Set<Endpoint>()
        func selection(_ d: DeviceInfo) -> DeviceSelection? {
            guard let ns = namespace(d.endpoint.netns) else { return nil }
            let peerTraced = d.peer.map { chosenEndpoints.contains($0) } ?? false
            return DeviceSelection(ifname: d.name, netnsPath: ns.path, label: "\(ns.name)/\(d.name)", ingress: !peerTraced)
        }
        var chosen: [DeviceInfo] = []
        if allVeth {
            chosen = devices.filter(\.isVeth)
            if chosen.isEmpty { throw SelectionError("no veth devices on this node; 'hoptrace list' shows what there is") }
        } else {
            guard !interfaces.isEmpty else {
                throw SelectionError("choose devices with --all-veth or --iface NAME (with --netns NAME for a namespace)")
            }
            let nsName = netns ?? "host"
            guard let ns = namespace(named: nsName) else {
                let known = namespaces.map(\.name).prefix(8).joined(separator: ", ")
                throw SelectionError("no network namespace named '\(nsName)' (known: \(known)); 'ip netns list' or 'hoptrace list' shows them")
            }
            for name in interfaces {
                guard let d = devices.first(where: { $0.endpoint.netns == ns.inode && $0.name == name }) else {
                    throw SelectionError("no device '\(name)' in netns '\(ns.name)'; 'hoptrace list' shows the veth devices")
                }
                chosen.append(d)
                if let p = d.peer, let peer = device(p) { chosen.append(peer) }
            }
        }
        var seen = Set<Endpoint>()
        chosen = chosen.filter { seen.insert($0.endpoint).inserted }
        chosenEndpoints = seen
        return chosen.compactMap(selection)
    }
}
