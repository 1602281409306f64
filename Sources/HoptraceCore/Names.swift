/// The workload a network namespace belongs to, as far as the node's own files say:
/// a Kubernetes pod, a container, or a systemd service.
public struct Workload: Codable, Hashable, Sendable {
    public struct Pod: Codable, Hashable, Sendable {
        public var namespace: String
        public var name: String
        public var uid: String

        public init(namespace: String, name: String, uid: String) {
            self.namespace = namespace
            self.name = name
            self.uid = uid
        }
    }

    public struct Container: Codable, Hashable, Sendable {
        /// Empty when the runtime's files did not name it.
        public var name: String
        public var id: String
        /// "containerd", "cri-o", "docker", "podman", or "" when the cgroup path does not say.
        public var runtime: String

        public init(name: String, id: String, runtime: String) {
            self.name = name
            self.id = id
            self.runtime = runtime
        }
    }

    public var pod: Pod?
    public var container: Container?
    /// A systemd unit ("nginx.service") whose processes hold the namespace.
    public var service: String?

    public init(pod: Pod? = nil, container: Container? = nil, service: String? = nil) {
        self.pod = pod
        self.container = container
        self.service = service
    }

    /// What people call it: "namespace/pod", the container's name, or the unit; nil
    /// when nothing names it.
    public var label: String? {
        if let pod { return "\(pod.namespace)/\(pod.name)" }
        if let c = container, !c.name.isEmpty { return c.name }
        if let service { return service }
        if let c = container { return "\(c.runtime.isEmpty ? "container" : c.runtime):\(c.id.prefix(12))" }
        return nil
    }
}

/// Names for the inodes and ifindexes in records; what a report prints. Stored in
/// recordings, so a file read elsewhere keeps the names it was made with.
public struct NameTable: Codable, Sendable, Equatable {
    public var netns: [UInt32: String] = [:]
    public var devices: [Endpoint: String] = [:]
    /// The workloads of namespaces, where known.
    public var workloads: [UInt32: Workload] = [:]
    /// Each veth's peer (both ends), so a host-side veth can be named by the workload
    /// at its other end: its own name changes when the pod is made again.
    public var peers: [Endpoint: Endpoint] = [:]
    /// The namespace each address of the node is in (addresses found in one
    /// namespace only; not loopback, not link-local): a flow's ends by workload.
    public var addresses: [IPAddress: UInt32] = [:]

    /// The workload whose namespace holds `address`, if known.
    public func workload(of address: IPAddress) -> Workload? { addresses[address].flatMap { workloads[$0] } }

    public init() {}

    public func netnsName(_ inode: UInt32) -> String { netns[inode] ?? "netns:\(inode)" }
    public func deviceName(_ e: Endpoint) -> String { devices[e] ?? "if\(e.ifindex)" }
    public func label(_ e: Endpoint) -> String { "\(netnsName(e.netns))/\(deviceName(e))" }
    /// A hop as every view names it: "web/eth0 -> host/veth1".
    public func label(_ hop: HopKey) -> String { "\(label(hop.from)) -> \(label(hop.to))" }

    public mutating func merge(_ o: NameTable) {
        netns.merge(o.netns) { a, _ in a }
        devices.merge(o.devices) { a, _ in a }
        workloads.merge(o.workloads) { a, _ in a }
        peers.merge(o.peers) { a, _ in a }
        addresses.merge(o.addresses) { a, _ in a }
    }

    /// `label(e)`, but a device outside any workload whose veth peer is in one is
    /// named by that workload ("host/veth→default/web"): what stays the same when a
    /// pod is restarted (new namespace, new host-side veth), for matching runs.
    public func stableLabel(_ e: Endpoint) -> String {
        if workloads[e.netns] == nil, let p = peers[e], let w = workloads[p.netns]?.label {
            return "\(netnsName(e.netns))/veth→\(w)"
        }
        return label(e)
    }

    enum CodingKeys: String, CodingKey { case netns, devices, workloads, peers, addresses }

    /// Recordings made before workloads and peers were stored decode with none.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        netns = try c.decode([UInt32: String].self, forKey: .netns)
        devices = try c.decode([Endpoint: String].self, forKey: .devices)
        workloads = try c.decodeIfPresent([UInt32: Workload].self, forKey: .workloads) ?? [:]
        peers = try c.decodeIfPresent([Endpoint: Endpoint].self, forKey: .peers) ?? [:]
        addresses = try c.decodeIfPresent([IPAddress: UInt32].self, forKey: .addresses) ?? [:]
    }
}
