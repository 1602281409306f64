import Foundation
import HoptraceLab
import HoptraceNode

/// A node's worth of namespaces for the discovery figures: `pairs` namespaces, each
/// with a veth pair to one hub namespace, the hub's ends on a bridge.
///
/// Made and removed with one `ip -batch` process each way: an `ip` per command would
/// take minutes at 500 pairs. Every name starts with `Lab.prefix` and the bench's
/// pid, so `Lab.sweepOrphans()` removes what a killed bench left.
struct DiscoveryLab {
    let hub: String
    let namespaces: [String]

    init(pairs: Int) throws {
        let base = "\(Lab.prefix)\(getpid())-disc"
        hub = "\(base)-hub"
        namespaces = (0..<pairs).map { "\(base)-\($0)" }
        var inHost = ["netns add \(hub)"]
        for (i, ns) in namespaces.enumerated() {
            inHost.append("netns add \(ns)")
            inHost.append("link add v\(i) netns \(hub) type veth peer name eth0 netns \(ns)")
        }
        let inHub = ["link add br0 type bridge", "link set br0 up"]
            + namespaces.indices.map { "link set v\($0) master br0 up" }
        do {
            try Command.run(["ip", "-batch", "-"], input: inHost.joined(separator: "\n") + "\n")
            try Command.run(["ip", "-n", hub, "-batch", "-"], input: inHub.joined(separator: "\n") + "\n")
        } catch {
            remove()
            throw error
        }
    }

    /// Removes every namespace (their veths and the bridge go with them); names that
    /// were never made are passed over (`-force` goes on after an error).
    func remove() {
        let commands = ([hub] + namespaces).map { "netns del \($0)" }
        _ = try? Command.run(["ip", "-force", "-batch", "-"], input: commands.joined(separator: "\n") + "\n")
    }
}

/// What discovery costs on a node with `pairs` veth pairs, in milliseconds, medians of
/// `runs`: `Discovery.topology()` in this process, and the wall time of `hoptrace list`
/// (process start, discovery, printing the table).
func discoveryFigures(pairs: Int, runs: Int, hoptrace: String) throws -> (inProcessMs: Double, listMs: Double) {
    let lab = try DiscoveryLab(pairs: pairs)
    defer { lab.remove() }
    let labNamespaces = Set([lab.hub] + lab.namespaces)
    var inProcess: [Double] = [], list: [Double] = []
    for _ in 0..<runs {
        let t0 = nowSeconds()
        let topology = Discovery.topology()
        inProcess.append((nowSeconds() - t0) * 1000)
        // a fast discovery that misses devices proves nothing: every end must be found, with its peer
        let inLab = Set(topology.namespaces.filter { labNamespaces.contains($0.name) }.map(\.inode))
        let paired = topology.devices.filter { inLab.contains($0.endpoint.netns) && $0.isVeth && $0.peer != nil }.count
        if paired != 2 * pairs { say("discovery found \(paired) of \(2 * pairs) veth ends with their peers") }
        list.append(try wallTimeMs([hoptrace, "list"]))
    }
    return (median(inProcess), median(list))
}

/// Wall time of running `argv` to completion (its output to /dev/null), in
/// milliseconds. Spawned directly: Foundation's Process took some 45 ms more here to
/// start and reap a child (`hoptrace list` at 100 pairs: 77 ms through it, 31 ms
/// spawned directly, 20-27 ms from the shell), which is not the binary's time.
func wallTimeMs(_ argv: [String]) throws -> Double {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
    let cArgs = argv.map { strdup($0) } + [nil]
    defer { cArgs.forEach { free($0) } }
    var pid: pid_t = 0
    let t0 = nowSeconds()
    let rc = posix_spawn(&pid, argv[0], &actions, nil, cArgs, environ)
    guard rc == 0 else { throw BenchFailure(description: "\(argv[0]): \(String(cString: strerror(rc)))") }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let ms = (nowSeconds() - t0) * 1000
    guard status == 0 else { throw BenchFailure(description: "\(argv.joined(separator: " ")) exited with wait status \(status)") }
    return ms
}

/// Why a step of the bench could not run.
struct BenchFailure: Error, CustomStringConvertible {
    var description: String
}

/// The discovery figures for 100 and 500 veth pairs, with their targets (for `hoptrace
/// list`: 300 ms and 1 s).
func discoveryBench(runs: Int, hoptrace: String) throws -> [String: Any] {
    Lab.sweepOrphans()
    var figures: [String: Any] = [:]
    for (pairs, targetMs) in [(100, 300.0), (500, 1000.0)] {
        say("discovery: \(pairs) veth pairs to a hub, Discovery.topology() in-process and 'hoptrace list', median of \(runs)")
        let f = try discoveryFigures(pairs: pairs, runs: runs, hoptrace: hoptrace)
        say(String(format: "discovery, %d pairs: in-process %.1f ms, hoptrace list %.1f ms (target < %.0f ms: %@)",
                   pairs, f.inProcessMs, f.listMs, targetMs, f.listMs < targetMs ? "met" : "NOT met"))
        figures["pairs_\(pairs)"] = ["in_process_ms": (f.inProcessMs * 10).rounded() / 10, "list_ms": (f.listMs * 10).rounded() / 10,
                                     "list_target_ms": targetMs, "list_target_met": f.listMs < targetMs]
    }
    let ms = try workloadResolutionMs(processes: 5000, pods: 250, runs: runs)
    say(String(format: "discovery: 5000 processes in 250 pods (a /proc, cgroup and /var/log/pods tree), named in %.1f ms "
               + "(target < 100 ms: %@)", ms, ms < 100 ? "met" : "NOT met"))
    figures["workloads_5000_processes_ms"] = (ms * 10).rounded() / 10
    return figures
}

/// The time to scan a node of `processes` processes in `pods` Kubernetes pods (the
/// systemd driver's cgroup paths, kubelet's pod log directories) and name every
/// namespace by its pod: a tree laid out in a temporary directory (`--host-root`),
/// so the figure is the scanner's, not this machine's process count. Median of `runs`.
func workloadResolutionMs(processes: Int, pods: Int, runs: Int) throws -> Double {
    let fm = FileManager.default
    let root = NSTemporaryDirectory() + "hoptrace-bench-workloads-\(getpid())/"
    defer { try? fm.removeItem(atPath: root) }
    for pod in 0..<pods {
        let uid = String(format: "%08x-0000-4000-8000-%012x", pod, pod)
        try fm.createDirectory(atPath: root + "var/log/pods/bench_pod-\(pod)_\(uid)/app", withIntermediateDirectories: true)
    }
    for pid in 1...processes {
        let dir = root + "proc/\(pid)/"
        try fm.createDirectory(atPath: dir + "ns", withIntermediateDirectories: true)
        let pod = pid % pods
        let uid = String(format: "%08x_0000_4000_8000_%012x", pod, pod)
        try fm.createSymbolicLink(atPath: dir + "ns/net", withDestinationPath: pid == 1 ? "net:[4026531840]" : "net:[\(4026600000 + pod)]")
        try "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uid).slice/cri-containerd-\(String(repeating: "c", count: 64)).scope\n"
            .write(toFile: dir + "cgroup", atomically: false, encoding: .utf8)
        try "app\n".write(toFile: dir + "comm", atomically: false, encoding: .utf8)
    }
    var times: [Double] = []
    for _ in 0..<max(1, runs) {
        let t0 = nowSeconds()
        let found = NamespaceScanner(root: root).scan()
        times.append((nowSeconds() - t0) * 1000)
        guard found.filter({ $0.kind == .pod }).count == pods else {
            throw BenchFailure(description: "workload scan found \(found.filter { $0.kind == .pod }.count) pods of \(pods)")
        }
    }
    return median(times)
}
