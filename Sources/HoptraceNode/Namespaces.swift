import Foundation
import HoptraceCore

/// A network namespace on the node and the best name we know for it.
public struct NetnsInfo: Hashable, Codable, Sendable {
    public enum Kind: String, Codable, Sendable {
        /// The namespace of PID 1.
        case host
        /// Named by `ip netns` (a file under /run/netns).
        case named
        /// Held by a Kubernetes pod (kubelet's cgroup layout).
        case pod
        /// Held by a process whose cgroup names a container.
        case container
        /// Held by a systemd service.
        case service
        /// Held by some other process.
        case process
    }

    public var inode: UInt32
    public var name: String
    public var kind: Kind
    /// A file that opens this namespace (for setns).
    public var path: String
    /// The pod, container or service that holds it, where the node's files say.
    public var workload: Workload?

    public init(inode: UInt32, name: String, kind: Kind, path: String, workload: Workload? = nil) {
        self.inode = inode
        self.name = name
        self.kind = kind
        self.path = path
        self.workload = workload
    }
}

/// Finds the network namespaces of a node from a /proc and /run tree (the real one
/// at "/", or a fixture tree in tests).
public struct NamespaceScanner: Sendable {
    public var root: String
    private let workloads: WorkloadResolver

    /// `root`: where the host's /proc, /run, /var/log/pods and runtime state are
    /// (`--host-root`; a fixture tree in tests).
    public init(root: String = "/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
        workloads = WorkloadResolver(root: self.root)
    }

    /// The inode in a link like `net:[4026531840]`.
    public static func inode(fromNsLink link: String) -> UInt32? {
        guard link.hasPrefix("net:["), link.hasSuffix("]") else { return nil }
        return UInt32(link.dropFirst(5).dropLast())
    }

    /// The inode of the namespace a file opens (/run/netns/NAME, /proc/PID/ns/net):
    /// the namespace's identity, as records carry it.
    public static func inode(ofNetnsFile path: String) -> UInt32? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt32(truncatingIfNeeded: st.st_ino) : nil
    }

    public func scan() -> [NetnsInfo] {
        let fm = FileManager.default
        var found: [UInt32: NetnsInfo] = [:]
        func offer(_ info: NetnsInfo) {
            let rank: [NetnsInfo.Kind: Int] = [.host: 0, .pod: 1, .container: 2, .service: 3, .named: 4, .process: 5]
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
            if let ino = Self.inode(ofNetnsFile: path) { offer(NetnsInfo(inode: ino, name: name, kind: .named, path: path)) }
        }
        // a namespace is named after the first process found in it (the lowest pid,
        // usually its first): cgroup and comm are read once a namespace, not once for
        // every process in it. A workload's name wins over an `ip netns` name (CNI
        // plugins name pods' namespaces cni-<uuid>), whose file stays the path.
        let pids = ((try? fm.contentsOfDirectory(atPath: root + "proc")) ?? []).compactMap { Int($0) }.sorted()
        var examined = Set<UInt32>()
        for pid in pids {
            let base = root + "proc/\(pid)/"
            guard let link = try? fm.destinationOfSymbolicLink(atPath: base + "ns/net"),
                  let ino = Self.inode(fromNsLink: link), found[ino] == nil || found[ino]?.kind == .named,
                  examined.insert(ino).inserted
            else { continue }
            let cgroup = (try? String(contentsOfFile: base + "cgroup", encoding: .utf8)) ?? ""
            if let w = workloads.workload(cgroup: cgroup), let label = w.label {
                let kind: NetnsInfo.Kind = w.pod != nil ? .pod : w.container != nil ? .container : .service
                found[ino] = NetnsInfo(inode: ino, name: label, kind: kind, path: found[ino]?.path ?? base + "ns/net", workload: w)
            } else if found[ino] == nil {
                let comm = ((try? String(contentsOfFile: base + "comm", encoding: .utf8)) ?? "pid")
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                offer(NetnsInfo(inode: ino, name: "\(comm):\(pid)", kind: .process, path: base + "ns/net"))
            }
        }
        return found.values.sorted { ($0.kind == .host ? 0 : 1, $0.name) < ($1.kind == .host ? 0 : 1, $1.name) }
    }
}
