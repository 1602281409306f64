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

    /// The inode of the namespace a file opens (/run/netns/NAME, /proc/PID/ns/net):
    /// the namespace's identity, as records carry it.
    public static func inode(ofNetnsFile path: String) -> UInt32? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt32(truncatingIfNeeded: st.st_ino) : nil
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
            if let ino = Self.inode(ofNetnsFile: path) { offer(NetnsInfo(inode: ino, name: name, kind: .named, path: path)) }
        }
        // a namespace is named after the first process found in it (the lowest pid,
        // usually its first): cgroup and comm are read once a namespace, not once for
        // every process in it
        let pids = ((try? fm.contentsOfDirectory(atPath: root + "proc")) ?? []).compactMap { Int($0) }.sorted()
        for pid in pids {
            let base = root + "proc/\(pid)/"
            guard let link = try? fm.destinationOfSymbolicLink(atPath: base + "ns/net"),
                  let ino = Self.inode(fromNsLink: link), found[ino] == nil
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
