import Foundation
import Glibc
import HoptraceCore

/// Reads the node's namespaces and devices (needs root to enter other namespaces).
public enum Discovery {
    /// Every network namespace we can see, with the devices in each, read over
    /// rtnetlink from a socket made inside each namespace (no process per namespace).
    /// Runs on the calling thread, which is back in its own namespace on return. A
    /// namespace that goes away during the scan is left out; one we may not enter
    /// (not root) is listed without devices.
    public static func topology(root: String = "/") -> NodeTopology {
        let here = NamespaceScanner.inode(ofNetnsFile: "/proc/thread-self/ns/net")
        var namespaces: [NetnsInfo] = [], links: [UInt32: [LinkMessage]] = [:], seen: [IPAddress: UInt32?] = [:]
        for ns in NamespaceScanner(root: root).scan() {
            do throws(NetlinkError) {
                let socket = try routeSocket(in: ns, here: here)
                links[ns.inode] = try socket.links()
                for a in (try? socket.addresses()) ?? [] where !a.isLoopbackOrLinkLocal {
                    // an address in two namespaces (isolated labs alike) names neither
                    switch seen[a.address] {
                    case nil: seen[a.address] = ns.inode
                    case let owner?? where owner != ns.inode: seen[a.address] = .some(nil)
                    default: break
                    }
                }
            } catch where [ENOENT, ESRCH].contains(error.code) {
                continue // its process exited, or its name was deleted
            } catch {
                // not ours to enter (not root): listed by name, without devices
            }
            namespaces.append(ns)
        }
        var nsids = NetnsIDs(here: here)
        var topology = NodeTopology(namespaces: namespaces, links: links) { nsids.id(of: $0, seenFrom: $1) }
        topology.addresses = seen.compactMapValues { $0 }
        return topology
    }

    /// Why `root` cannot be a host root (no proc/ in it), or nil.
    public static func problem(withHostRoot root: String) -> String? {
        var isDirectory: ObjCBool = false
        let proc = (root.hasSuffix("/") ? root : root + "/") + "proc"
        guard FileManager.default.fileExists(atPath: proc, isDirectory: &isDirectory), isDirectory.boolValue else {
            return "bad --host-root '\(root)': there is no \(proc); mount the host's /proc there (e.g. -v /proc:/host/proc:ro)"
        }
        return nil
    }

    /// The devices of `devices` that have a queue: a root qdisc other than noqueue
    /// (veth's default, which sends in the call that queued). Packets wait only
    /// there, so only they need the hook that ends the qdisc segment. A device
    /// whose namespace cannot be read counts as having one.
    public static func devicesWithQueue(_ devices: [DeviceSelection]) -> [DeviceSelection] {
        var byNamespace: [String: [DeviceSelection]] = [:]
        for d in devices { byNamespace[d.netnsPath, default: []].append(d) }
        var queued: [DeviceSelection] = []
        let here = NamespaceScanner.inode(ofNetnsFile: "/proc/thread-self/ns/net")
        for (path, inNamespace) in byNamespace {
            let isOurs = here != nil && NamespaceScanner.inode(ofNetnsFile: path) == here
            guard let socket = try? RouteSocket(netnsPath: isOurs ? nil : path), let qdiscs = try? socket.rootQdiscs(),
                  let links = try? socket.links() else {
                queued += inNamespace
                continue
            }
            let kinds = Dictionary(qdiscs.map { ($0.ifindex, $0.kind) }, uniquingKeysWith: { a, _ in a })
            let byName = Dictionary(links.map { ($0.name, $0.ifindex) }, uniquingKeysWith: { a, _ in a })
            queued += inNamespace.filter { d in byName[d.ifname].map { kinds[$0] != "noqueue" } ?? true }
        }
        return queued
    }

    /// A socket in `ns`. Our own namespace (`here`) needs no setns, nor the rights for
    /// it; that is asked of the namespace's file, which may have gone since the scan.
    static func routeSocket(in ns: NetnsInfo, here: UInt32?) throws(NetlinkError) -> RouteSocket {
        let isOurs = here != nil && NamespaceScanner.inode(ofNetnsFile: ns.path) == here
        return try RouteSocket(netnsPath: isOurs ? nil : ns.path)
    }
}

/// The nsids namespaces have for each other, asked over rtnetlink as veth matching
/// needs them (rarely: only when several namespaces have a fitting peer), each pair once.
private struct NetnsIDs {
    struct Pair: Hashable { var namespace, seenFrom: UInt32 }
    let here: UInt32?
    private var sockets: [UInt32: RouteSocket] = [:]
    private var answers: [Pair: Int32?] = [:]

    init(here: UInt32?) { self.here = here }

    mutating func id(of namespace: NetnsInfo, seenFrom: NetnsInfo) -> Int32? {
        let pair = Pair(namespace: namespace.inode, seenFrom: seenFrom.inode)
        if let known = answers[pair] { return known }
        var answer: Int32?
        if let socket = sockets[seenFrom.inode] ?? (try? Discovery.routeSocket(in: seenFrom, here: here)) {
            sockets[seenFrom.inode] = socket
            answer = try? socket.netnsID(of: namespace.path)
        }
        answers[pair] = answer
        return answer
    }
}
