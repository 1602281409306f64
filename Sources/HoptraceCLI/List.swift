import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceNode

struct List: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the veth pairs on the node: both ends, their namespaces, bridge.",
        discussion: """
        Examples:
          hoptrace list
          hoptrace list --all     # every device, not only veth
          hoptrace list --json
          hoptrace list --host-root /host   # in a container, the host's /proc etc. under /host
        """
    )

    @Flag(help: "Show every device, not only veth.")
    var all = false

    @Flag(help: "Print JSON.")
    var json = false

    @Option(help: "Where the host's /proc, /run, /var/log/pods and container runtime state are (an agent in a container: /host).")
    var hostRoot: String = "/"

    func validate() throws {
        if let why = Discovery.problem(withHostRoot: hostRoot) { throw ValidationError(why) }
    }

    struct Row: Codable {
        var netns: String
        var netnsInode: UInt32
        var device: String
        var ifindex: UInt32
        var kind: String
        var state: String
        var master: String?
        var peerNetns: String?
        var peerDevice: String?
        /// The pod and container whose namespace the device is in, where known.
        var pod: Workload.Pod?
        var container: Workload.Container?

        enum CodingKeys: String, CodingKey {
            case netns, netnsInode = "netns_inode", device, ifindex, kind, state, master
            case peerNetns = "peer_netns", peerDevice = "peer_device", pod, container
        }
    }

    func run() throws {
        if geteuid() != 0 { progress("not root: namespaces of other users' processes may be missing") }
        let topo = Discovery.topology(root: hostRoot)
        let names = topo.names
        let rows = topo.devices.filter { all || $0.isVeth }.map { d in
            Row(netns: names.netnsName(d.endpoint.netns), netnsInode: d.endpoint.netns, device: d.name,
                ifindex: d.endpoint.ifindex, kind: d.kind.isEmpty ? "device" : d.kind, state: d.state, master: d.master,
                peerNetns: d.peer.map { names.netnsName($0.netns) }, peerDevice: d.peer.map { names.deviceName($0) },
                pod: names.workloads[d.endpoint.netns]?.pod, container: names.workloads[d.endpoint.netns]?.container)
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(rows), as: UTF8.self))
            return
        }
        if rows.isEmpty {
            print(all ? "no devices found" : "no veth devices on this node ('hoptrace demo --keep' builds a lab)")
            return
        }
        let header = ["NETNS", "DEVICE", "IFINDEX", "KIND", "STATE", "MASTER", "PEER", "POD", "CONTAINER"]
        let table = rows.map { r in
            [r.netns, r.device, String(r.ifindex), r.kind, r.state, r.master ?? "-",
             r.peerDevice.map { "\(r.peerNetns ?? "?")/\($0)" } ?? "-",
             r.pod.map { "\($0.namespace)/\($0.name)" } ?? "-",
             r.container.map { $0.name.isEmpty ? "\($0.runtime):\($0.id.prefix(12))" : $0.name } ?? "-"]
        }
        let widths = header.indices.map { i in ([header[i]] + table.map { $0[i] }).map(\.count).max()! }
        for row in [header] + table {
            print(row.enumerated().map { $1.padding(toLength: widths[$0], withPad: " ", startingAt: 0) }
                .joined(separator: "  ").trimmingCharacters(in: .whitespaces))
        }
    }
}
