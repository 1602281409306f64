import HoptraceCore

/// Why a device selection could not be made; the message says what to do.
public struct SelectionError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Workloads to trace: Kubernetes pods ("namespace/name"), containers by name, and
/// every pod of Kubernetes namespaces.
public struct WorkloadSelection: Sendable, Equatable {
    public var pods: [String]
    public var containers: [String]
    public var kubernetesNamespaces: [String]

    public init(pods: [String] = [], containers: [String] = [], kubernetesNamespaces: [String] = []) {
        self.pods = pods
        self.containers = containers
        self.kubernetesNamespaces = kubernetesNamespaces
    }

    public var isEmpty: Bool { pods.isEmpty && containers.isEmpty && kubernetesNamespaces.isEmpty }
}

extension NodeTopology {
    /// The network namespaces of the selected workloads; throws naming the first
    /// that is not on this node.
    func namespaces(of w: WorkloadSelection) throws(SelectionError) -> [NetnsInfo] {
        var out: [NetnsInfo] = []
        func pick(_ what: String, _ matches: (Workload) -> Bool) throws(SelectionError) {
            let found = namespaces.filter { $0.workload.map(matches) ?? false }
            if found.isEmpty { throw SelectionError("no \(what) on this node; 'hoptrace list' shows pods and containers") }
            out += found
        }
        for p in w.pods {
            try pick("pod '\(p)'") { $0.pod.map { "\($0.namespace)/\($0.name)" == p } ?? false }
        }
        for c in w.containers { try pick("container '\(c)'") { $0.container?.name == c } }
        for n in w.kubernetesNamespaces { try pick("pod in Kubernetes namespace '\(n)'") { $0.pod?.namespace == n } }
        return out
    }

    /// The devices to attach to: every veth (`allVeth`), or the named devices in
    /// `netns` (the host's when nil) together with their veth peers, so traffic in
    /// both directions through the chosen device is followed from its first hop.
    /// Or the veths of `workloads` (pod side and host side).
    public func select(allVeth: Bool, netns: String?, interfaces: [String],
                       workloads: WorkloadSelection = WorkloadSelection()) throws(SelectionError) -> [DeviceSelection] {
        var chosenEndpoints = Set<Endpoint>()
        func selection(_ d: DeviceInfo) -> DeviceSelection? {
            guard let ns = namespace(d.endpoint.netns) else { return nil }
            let peerTraced = d.peer.map { chosenEndpoints.contains($0) } ?? false
            return DeviceSelection(ifname: d.name, netnsPath: ns.path, label: "\(ns.name)/\(d.name)", ingress: !peerTraced,
                                   endpoint: d.endpoint)
        }
        var chosen: [DeviceInfo] = []
        if allVeth {
            chosen = devices.filter(\.isVeth)
            if chosen.isEmpty { throw SelectionError("no veth devices on this node; 'hoptrace list' shows what there is") }
        } else if !workloads.isEmpty {
            for ns in try namespaces(of: workloads) {
                for d in devices where d.isVeth && d.endpoint.netns == ns.inode {
                    chosen.append(d)
                    if let p = d.peer, let peer = device(p) { chosen.append(peer) }
                }
            }
            if chosen.isEmpty { throw SelectionError("the selected workloads have no veth devices; 'hoptrace list' shows them") }
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
