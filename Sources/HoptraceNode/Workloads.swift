import Foundation
import HoptraceCore

/// Names the workload of a process from files a node already has: its cgroup path
/// (`/proc/PID/cgroup`), kubelet's pod log directories (`/var/log/pods`), and the
/// container runtimes' state files. No runtime socket, no API server, no network.
/// Every path is read under `root` (`--host-root`), so an agent in a container
/// can read the host's. Unknown or malformed files name nothing; they never fail.
public final class WorkloadResolver: @unchecked Sendable {
    public let root: String
    private lazy var pods: [String: PodDirectory] = Self.podDirectories(root + "var/log/pods")
    private lazy var podmanNames: [String: String] = Self.podmanNames(root)
    private lazy var nerdctlNames: [String: String] = Self.nerdctlNames(root)
    private var dockerNames: [String: String?] = [:]

    public init(root: String = "/") {
        self.root = root.hasSuffix("/") ? root : root + "/"
    }

    /// A pod's directory under /var/log/pods: `<namespace>_<name>_<uid>`, holding a
    /// directory per container.
    struct PodDirectory: Equatable {
        var pod: Workload.Pod
        var containers: [String]
    }

    /// What a cgroup path says about its process: the pod's UID (kubelet's slices or
    /// directories), the container runtime and id, or the systemd unit.
    struct CgroupIdentity: Equatable {
        var podUID: String?
        var runtime = ""
        var containerID: String?
        var service: String?
    }

    /// The workload of a process whose `/proc/PID/cgroup` reads `cgroup`, if any.
    public func workload(cgroup: String) -> Workload? {
        let id = Self.identity(cgroup: cgroup)
        if let uid = id.podUID {
            // the pod's name from kubelet's log directories; a pod whose directory is
            // gone is still a pod, by its UID
            let dir = pods[uid]
            let pod = dir?.pod ?? Workload.Pod(namespace: "", name: "pod-\(uid.prefix(8))", uid: uid)
            // the pod's network namespace is shared by its containers: named by the
            // container only when the pod has just one
            let only = dir?.containers.count == 1 ? dir!.containers[0] : ""
            let container = id.containerID.map { Workload.Container(name: only, id: $0, runtime: id.runtime) }
            return Workload(pod: pod, container: container)
        }
        if let cid = id.containerID {
            let name = switch id.runtime {
            case "docker": dockerName(cid)
            case "podman", "cri-o": podmanNames[cid] // both keep containers/storage's containers.json
            case "containerd": nerdctlNames[cid]
            default: String?.none
            }
            return Workload(container: Workload.Container(name: name ?? "", id: cid, runtime: id.runtime))
        }
        if let service = id.service { return Workload(service: service) }
        return nil
    }

    /// Parses a cgroup file (v1: a line per hierarchy; v2: `0::/path`). Layouts:
    /// systemd driver `kubepods[-<qos>].slice/kubepods-<qos>-pod<uid with _>.slice/
    /// <runtime>-<id>.scope`; cgroupfs driver `/kubepods[/<qos>]/pod<uid>/<id>`;
    /// Docker `/system.slice/docker-<id>.scope` or `/docker/<id>`; Podman
    /// `.../libpod-<id>.scope`; services `.../<unit>.service`.
    static func identity(cgroup text: String) -> CgroupIdentity {
        let ids = text.split(separator: "\n").compactMap { line -> CgroupIdentity? in
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            return fields.count == 3 ? identity(path: fields[2]) : nil
        }
        // v1 has a line per controller, some at the root: the one that says most
        return ids.first { $0.podUID != nil } ?? ids.first { $0.containerID != nil } ?? ids.first { $0.service != nil }
            ?? CgroupIdentity()
    }

    static func identity(path: Substring) -> CgroupIdentity {
        var id = CgroupIdentity()
        let parts = path.split(separator: "/")
        var inKubepods = false
        for part in parts {
            if part.hasPrefix("kubepods") { inKubepods = true }
            if part.hasPrefix("kubepods"), part.hasSuffix(".slice"), let r = part.range(of: "-pod") {
                // systemd driver: '-' in the UID became '_'
                id.podUID = String(part[r.upperBound...].dropLast(".slice".count)).replacingOccurrences(of: "_", with: "-")
            } else if inKubepods, part.hasPrefix("pod"), part.count > 3 {
                id.podUID = String(part.dropFirst(3))
            }
            if part.hasSuffix(".scope") {
                let name = part.dropLast(".scope".count)
                for (prefix, runtime) in scopeRuntimes where name.hasPrefix(prefix) {
                    let hex = name.dropFirst(prefix.count)
                    if !runtime.isEmpty, isContainerID(hex) { // "" : a monitor's scope (conmon)
                        id.containerID = String(hex)
                        id.runtime = runtime
                    }
                    break
                }
            } else if isContainerID(part) {
                // cgroupfs driver: the id is the directory; the runtime only outside kubelet
                id.containerID = String(part)
                if let i = parts.firstIndex(of: part), i > 0 { id.runtime = ["docker": "docker", "libpod": "podman"][String(parts[i - 1])] ?? "" }
            }
            if part.hasSuffix(".service") { id.service = String(part) }
        }
        if id.podUID != nil || id.containerID != nil { id.service = nil }
        return id
    }

    /// Scope names of container runtimes (conmon scopes are the monitor, not the container).
    static let scopeRuntimes: [(String, String)] = [
        ("cri-containerd-", "containerd"), ("crio-conmon-", ""), ("crio-", "cri-o"), ("docker-", "docker"),
        ("libpod-conmon-", ""), ("libpod-", "podman"), ("nerdctl-", "containerd"),
    ]

    static func isContainerID<S: StringProtocol>(_ s: S) -> Bool {
        s.count == 64 && s.allSatisfy { $0.isHexDigit && !$0.isUppercase }
    }

    /// Pods by UID from `/var/log/pods/<namespace>_<name>_<uid>/<container>/`.
    /// Namespaces and pod names cannot hold '_' (DNS labels and subdomains).
    static func podDirectories(_ dir: String) -> [String: PodDirectory] {
        var out: [String: PodDirectory] = [:]
        let fm = FileManager.default
        for entry in (try? fm.contentsOfDirectory(atPath: dir)) ?? [] {
            let f = entry.split(separator: "_", omittingEmptySubsequences: false)
            guard f.count == 3, !f[0].isEmpty, !f[1].isEmpty, f[2].count >= 8 else { continue }
            let containers = ((try? fm.contentsOfDirectory(atPath: dir + "/" + entry)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
            out[String(f[2])] = PodDirectory(pod: Workload.Pod(namespace: String(f[0]), name: String(f[1]), uid: String(f[2])),
                                             containers: containers)
        }
        return out
    }

    /// A Docker container's name from `/var/lib/docker/containers/<id>/config.v2.json`.
    private func dockerName(_ id: String) -> String? {
        if let known = dockerNames[id] { return known }
        struct Config: Decodable { var Name: String? }
        let path = root + "var/lib/docker/containers/\(id)/config.v2.json"
        let name = FileManager.default.contents(atPath: path)
            .flatMap { try? JSONDecoder().decode(Config.self, from: $0) }?.Name
            .map { $0.hasPrefix("/") ? String($0.dropFirst()) : $0 }
        dockerNames[id] = name
        return name
    }

    /// containerd's containers outside Kubernetes (made by nerdctl) by id: nerdctl
    /// keeps a file per name, `/var/lib/nerdctl/<store>/names/<namespace>/<name>`,
    /// holding the container's id.
    static func nerdctlNames(_ root: String) -> [String: String] {
        let fm = FileManager.default, base = root + "var/lib/nerdctl/"
        var out: [String: String] = [:]
        for store in (try? fm.contentsOfDirectory(atPath: base)) ?? [] {
            let names = base + store + "/names/"
            for namespace in (try? fm.contentsOfDirectory(atPath: names)) ?? [] {
                for name in (try? fm.contentsOfDirectory(atPath: names + namespace)) ?? [] {
                    guard let id = try? String(contentsOfFile: names + namespace + "/" + name, encoding: .utf8) else { continue }
                    let trimmed = id.trimmingCharacters(in: .whitespacesAndNewlines)
                    if isContainerID(trimmed) { out[trimmed] = name }
                }
            }
        }
        return out
    }

    /// Podman's (and CRI-O's outside Kubernetes: containers/storage) names by id, from
    /// `containers.json` of the root and the run storage.
    static func podmanNames(_ root: String) -> [String: String] {
        struct Entry: Decodable { var id: String; var names: [String]? }
        var out: [String: String] = [:]
        for path in ["var/lib/containers/storage/overlay-containers/containers.json",
                     "run/containers/storage/overlay-containers/containers.json"] {
            guard let data = FileManager.default.contents(atPath: root + path),
                  let entries = try? JSONDecoder().decode([Entry].self, from: data) else { continue }
            for e in entries { if let name = e.names?.first { out[e.id] = name } }
        }
        return out
    }
}
