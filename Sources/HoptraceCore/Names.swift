import Foundation

/// A network namespace on the node and the best name we know for it.
public struct NetnsInfo: Hashable, Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// The namespace of PID 1.
        case host
        /// Named by `ip netns` (a file under /run/netns).
        case named
        /// Held by a process whose cgroup names a container.
        case container
        /// Held by some other process.
        case process
    }

    public var inode: UInt32
    public var name: String
    public var kind: Kind
    /// A file that opens this namespace (for setns).
    public var path: String

    public init(inode: UInt32, name: String, kind: Kind, path: String) {
        self.inode = inode
        self.name = name
        self.kind = kind
        self.path = path
    }
}

/// Finds the network namespaces of a node from a /proc and /run tree (the real one
/// at "/", or a fixture tree in tests).
public struct NamespaceScanner: Sendable {
    public var root: String

    public init(root: String = "/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    /// The inode in a link like `net:[4026531840]`.
    public static func inode(fromNsLink link: String) -> UInt32? {
        guard link.hasPrefix("net:["), link.hasSuffix("]") else { return nil }
        return UInt32(link.dropFirst(5).dropLast())
    }

    /// A container id in a cgroup path (docker, containerd, cri-o, podman: 64 hex digits).
    public static func containerID(fromCgroup text: String) -> String? {
        for line in text.split(separator: "\n") {
            let path = line.split(separator: ":", maxSplits: 2).last ?? ""
            for part in path.split(whereSeparator: { "/-.".contains($0) }).reversed()
            where part.count == 64 && part.allSatisfy(\.isHexDigit) {
                return String(part.prefix(12))
            }
        }
        return nil
    }

    public func scan() -> [NetnsInfo] {
        let fm = FileManager.default
        var found: [UInt32: NetnsInfo] = [:]
        func offer(_ info: NetnsInfo) {
            let rank: [NetnsInfo.Kind: Int] = [.host: 0, .named: 1, .container: 2, .process: 3]
            if let old = found[info.inode], rank[old.kind]! <= rank[info.kind]! { return }
            found[info.inode] = info
        }
        // the host is PID 1's namespace; where PID 1 is hidden from us (some
        // sandboxes), the one we run in
        for pid in ["1", "self"] {
            if let link = try? fm.destinationOfSymbolicLink(atPath: root + "proc/\(pid)/ns/net"),
               let ino = Self.inode(fromNsLink: link) {
                offer(NetnsInfo(inode: ino, name: "host", kind: .host, path: root + "proc/\(pid)/ns/net"))
                break
            }
        }
        for name in ((try? fm.contentsOfDirectory(atPath: root + "run/netns")) ?? []).sorted() {
            let path = root + "run/netns/" + name
            var st = stat()
            if stat(path, &st) == 0 { offer(NetnsInfo(inode: UInt32(truncatingIfNeeded: st.st_ino), name: name, kind: .named, path: path)) }
        }
        let pids = ((try? fm.contentsOfDirectory(atPath: root + "proc")) ?? []).compactMap { Int($0) }.sorted()
        for pid in pids {
            let base = root + "proc/\(pid)/"
            guard let link = try? fm.destinationOfSymbolicLink(atPath: base + "ns/net"),
                  let ino = Self.inode(fromNsLink: link), found[ino] == nil || found[ino]!.kind == .process
            else { continue }
            let cgroup = (try? String(contentsOfFile: base + "cgroup", encoding: .utf8)) ?? ""
            if let id = Self.containerID(fromCgroup: cgroup) {
                offer(NetnsInfo(inode: ino, name: "container:\(id)", kind: .container, path: base + "ns/net"))
            } else {
                let comm = ((try? String(contentsOfFile: base + "comm", encoding: .utf8)) ?? "pid")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                offer(NetnsInfo(inode: ino, name: "\(comm):\(pid)", kind: .process, path: base + "ns/net"))
            }
        }
        return found.values.sorted { ($0.kind == .host ? 0 : 1, $0.name) < ($1.kind == .host ? 0 : 1, $1.name) }
    }
}

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

/// Names for the inodes and ifindexes in records; what a report prints.
public struct NameTable: Codable, Sendable, Equatable {
    public var netns: [UInt32: String] = [:]
    public var devices: [Endpoint: String] = [:]

    public init() {}

    public func netnsName(_ inode: UInt32) -> String { netns[inode] ?? "netns:\(inode)" }
    public func deviceName(_ e: Endpoint) -> String { devices[e] ?? "if\(e.ifindex)" }
    public func label(_ e: Endpoint) -> String { "\(netnsName(e.netns))/\(deviceName(e))" }

    public mutating func merge(_ o: NameTable) {
        netns.merge(o.netns) { a, _ in a }
        devices.merge(o.devices) { a, _ in a }
    }
}
