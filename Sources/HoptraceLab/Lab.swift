import Foundation
import HoptraceCore
import HoptraceNode

/// A namespace lab: N "container" namespaces joined through a hub namespace, by a
/// bridge (like docker0/cni0) or by routing (like Calico). Every object is unique to
/// this lab; `teardown()` removes all of it and is safe to call more than once.
///
///     container a: eth0 ─veth─ hub: v0 ┐
///                                       br0 (or IP forwarding)
///     container b: eth0 ─veth─ hub: v1 ┘
public final class Lab: @unchecked Sendable {
    public enum Topology: String, Sendable, CaseIterable {
        case bridge, routed
    }

    public struct Container: Sendable {
        public var name: String
        public var netns: String
        public var address: String
        public var hubDevice: String
        public var netnsPath: String { "/run/netns/\(netns)" }
    }

    /// Prefix of every lab namespace: "ht-<pid>-<n>-". The pid lets a later run remove
    /// what a killed one left.
    public static let prefix = "ht-"
    public let id: String
    public let topology: Topology
    public let hub: String
    public private(set) var containers: [Container] = []
    private var created: [String] = []
    private let lock = NSLock()

    public var hubPath: String { "/run/netns/\(hub)" }
    public var namespaces: [String] { [hub] + containers.map(\.netns) }

    private nonisolated(unsafe) static var counter = 0
    private static let counterLock = NSLock()

    /// Prefix of labs meant to outlive their process (`demo --keep`): never swept.
    public static let keptPrefix = "htkeep-"

    /// Builds the lab. On any failure what was made is removed before the error is
    /// thrown. A `persistent` lab is left up when this object goes and is not swept
    /// as an orphan later. `hub` names the hub namespace as an earlier lab's that is
    /// gone: the same "host" for pods made again (a rollout, for comparing runs).
    public init(containers count: Int = 2, topology: Topology = .bridge, persistent: Bool = false, hub: String? = nil) throws {
        precondition((1...50).contains(count), "a lab has 1 to 50 containers")
        let n = Self.counterLock.withLock { Self.counter += 1; return Self.counter }
        id = "\(persistent ? Self.keptPrefix : Self.prefix)\(getpid())-\(n)"
        removeOnDeinit = !persistent
        self.topology = topology
        let hub = hub ?? "\(id)-hub"
        self.hub = hub
        // a /24 per lab from the pid, so concurrent labs never share addresses
        let subnet = Int(getpid() % 200) + 20
        do {
            try addNetns(hub)
            try ip(hub, "link", "set", "lo", "up")
            if topology == .bridge {
                try ip(hub, "link", "add", "br0", "type", "bridge")
                try ip(hub, "link", "set", "br0", "up")
            } else {
                try Command.run(["ip", "netns", "exec", hub, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
            }
            for i in 0..<count {
                let letter = String(UnicodeScalar(UInt8(97 + i % 26))) + (i >= 26 ? "\(i / 26)" : "")
                let ns = "\(id)-\(letter)", dev = "v\(i)"
                try addNetns(ns)
                try ip(ns, "link", "set", "lo", "up")
                try ip(hub, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", ns)
                let address: String
                if topology == .bridge {
                    address = "10.213.\(subnet).\(10 + i)"
                    try ip(hub, "link", "set", dev, "master", "br0")
                    try ip(ns, "addr", "add", "\(address)/24", "dev", "eth0")
                } else {
                    address = "10.214.\(subnet + i).2"
                    try ip(hub, "addr", "add", "10.214.\(subnet + i).1/24", "dev", dev)
                    try ip(ns, "addr", "add", "\(address)/24", "dev", "eth0")
                }
                try ip(hub, "link", "set", dev, "up")
                try ip(ns, "link", "set", "eth0", "up")
                if topology == .routed {
                    try ip(ns, "route", "add", "default", "via", "10.214.\(subnet + i).1")
                }
                containers.append(Container(name: letter, netns: ns, address: address, hubDevice: dev))
            }
        } catch {
            teardown()
            throw error
        }
    }

    /// Whether the lab goes when this object does.
    public let removeOnDeinit: Bool

    deinit { if removeOnDeinit { teardown() } }

    private func addNetns(_ name: String) throws {
        try Command.run(["ip", "netns", "add", name])
        lock.withLock { created.append(name) }
    }

    private func ip(_ netns: String, _ args: String...) throws {
        try Command.run(["ip", "-n", netns] + args)
    }

    /// Both ends of every veth pair of the lab, ready to attach to (egress only:
    /// each end's peer is traced too).
    public var devices: [DeviceSelection] {
        containers.flatMap { c in
            [DeviceSelection(ifname: "eth0", netnsPath: c.netnsPath, label: "\(c.netns)/eth0", ingress: false),
             DeviceSelection(ifname: c.hubDevice, netnsPath: hubPath, label: "\(hub)/\(c.hubDevice)", ingress: false)]
        }
    }

    /// Adds a qdisc to a device in the lab, e.g. a TBF shaper: ["tbf", "rate", "10mbit", ...].
    public func setQdisc(netns: String, device: String, _ spec: [String]) throws {
        try Command.run(["tc", "-n", netns, "qdisc", "replace", "dev", device, "root"] + spec)
    }

    /// Removes every namespace of the lab (their veths and bridge go with them).
    public func teardown() {
        let names: [String] = lock.withLock {
            defer { created.removeAll() }
            return created.reversed()
        }
        for name in names { _ = try? Command.run(["ip", "netns", "del", name]) }
    }

    /// Names of lab namespaces whose process is gone (killed before it could clean up).
    public static func orphans(existing: [String], procRoot: String = "/proc") -> [String] {
        existing.filter { name in
            guard name.hasPrefix(prefix) else { return false }
            let pid = name.dropFirst(prefix.count).prefix { $0.isNumber }
            guard let p = Int32(pid), p != getpid() else { return false }
            return processGone(p, procRoot: procRoot)
        }
    }

    /// Whether process `pid` has ended: no longer there, or a zombie. A process
    /// killed with SIGKILL is a zombie (or still tearing down its threads and BPF
    /// objects) for a while after its killer returned, and `kill(pid, 0)` succeeds
    /// on it: a run started right after it would leave its lab in place.
    public static func processGone(_ pid: Int32, procRoot: String = "/proc") -> Bool {
        guard let stat = try? String(contentsOfFile: "\(procRoot)/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        // "pid (comm) S ...": the state follows the last ')' (comm may hold one)
        let state = stat[stat.index(after: close)...].drop { $0 == " " }.first
        return state == "Z" || state == "X" || state == "x"
    }

    /// Removes the namespaces of labs whose process died; returns their names.
    @discardableResult
    public static func sweepOrphans() -> [String] {
        let existing = (try? FileManager.default.contentsOfDirectory(atPath: "/run/netns")) ?? []
        let dead = orphans(existing: existing)
        for name in dead { _ = try? Command.run(["ip", "netns", "del", name]) }
        return dead
    }
}
