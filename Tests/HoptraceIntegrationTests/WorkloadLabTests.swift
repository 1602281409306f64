import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTestSupport
import XCTest

/// Pods on a lab (issue 11): each container namespace holds a process placed in a
/// cgroup laid out as kubelet lays them out (the systemd driver on the cgroup v2
/// hierarchy, the cgroupfs driver on the v1 pids controller), with kubelet's
/// /var/log/pods directories beside. `list`, `trace --pod` and a recording name
/// both pods. Everything made here is removed in every exit path.
final class WorkloadLabTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRootAndBPF()
        Lab.sweepOrphans()
    }

    /// A kubelet-like pod: its cgroup, its log directory and a process in its namespace.
    final class FakePod {
        let namespace: String, name: String, uid: String
        let cgroup: String
        let logDir: String
        var made: [String] = []
        var process: Process?

        init(namespace: String, name: String, uid: String, cgroup: String) {
            self.namespace = namespace
            self.name = name
            self.uid = uid
            self.cgroup = cgroup
            logDir = "/var/log/pods/\(namespace)_\(name)_\(uid)"
        }

        /// Makes the cgroup (each directory it adds, remembered) and the log directory,
        /// and starts `sleep` in `netns`, moved into the cgroup.
        func start(netns: String, container: String) throws {
            let fm = FileManager.default
            var path = ""
            for part in cgroup.split(separator: "/") {
                path += "/" + part
                if !fm.fileExists(atPath: path) {
                    try fm.createDirectory(atPath: path, withIntermediateDirectories: false)
                    made.append(path)
                }
            }
            try fm.createDirectory(atPath: logDir + "/" + container, withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["ip", "netns", "exec", netns, "sleep", "120"]
            try p.run()
            process = p
            usleep(200_000) // ip has exec'd sleep: same pid
            try "\(p.processIdentifier)\n".write(toFile: cgroup + "/cgroup.procs", atomically: false, encoding: .utf8)
        }

        func stop() {
            if let p = process, p.isRunning {
                kill(p.processIdentifier, SIGKILL)
                p.waitUntilExit()
            }
            for dir in made.reversed() {
                for _ in 0..<50 where rmdir(dir) != 0 && errno == EBUSY { usleep(20_000) }
            }
            try? FileManager.default.removeItem(atPath: logDir)
        }
    }

    func testPodsAreNamedInListTraceAndRecordings() throws {
        let fm = FileManager.default
        let logsExisted = fm.fileExists(atPath: "/var/log/pods")
        let v2 = "/sys/fs/cgroup/unified", v1 = "/sys/fs/cgroup/pids"
        guard fm.fileExists(atPath: v2 + "/cgroup.procs") && fm.fileExists(atPath: v1 + "/cgroup.procs") else {
            try notRun("no cgroup v2 hierarchy at \(v2) and v1 pids controller at \(v1) to lay pods out in")
        }
        let lab = try Lab(containers: 2)
        let tag = "\(getpid())"
        // pod a: systemd driver, cgroup v2; pod b: cgroupfs driver, cgroup v1; `run`
        // tells the UIDs and container ids of one incarnation from another's
        func pods(run: Int) -> (web: FakePod, cart: FakePod) {
            let uidA = "6f2c1a4e-8b3d-4c2a-9e1f-\(String(format: "%06x%06x", run, getpid()))"
            let uidB = "0d1e2f3a-4b5c-4d6e-8f70-\(String(format: "%06x%06x", run, getpid()))"
            let idA = String(repeating: "a", count: 50) + String(format: "%06x%08x", run, getpid())
            let idB = String(repeating: "b", count: 50) + String(format: "%06x%08x", run, getpid())
            let systemdUID = uidA.replacingOccurrences(of: "-", with: "_")
            return (FakePod(namespace: "default", name: "web-\(tag)", uid: uidA,
                            cgroup: v2 + "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(systemdUID).slice/cri-containerd-\(idA).scope"),
                    FakePod(namespace: "shop", name: "cart-\(tag)", uid: uidB, cgroup: v1 + "/kubepods/besteffort/pod\(uidB)/\(idB)"))
        }
        let (a, b) = pods(run: 1)
        let uidA = a.uid, uidB = b.uid
        defer {
            a.stop()
            b.stop()
            lab.teardown()
            if !logsExisted { try? fm.removeItem(atPath: "/var/log/pods") }
        }
        try a.start(netns: lab.containers[0].netns, container: "nginx")
        try b.start(netns: lab.containers[1].netns, container: "cart")

        // list: both pods by name, with their containers
        let list = try runHoptrace(["list", "--json"])
        XCTAssertEqual(list.status, 0, list.stderr)
        let rows = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        let podOf = Dictionary(rows.compactMap { r -> (String, String)? in
            guard let pod = r["pod"] as? [String: Any], let ns = pod["namespace"] as? String, let name = pod["name"] as? String
            else { return nil }
            return ("\(r["netns"]!)/\(r["device"]!)", "\(ns)/\(name)")
        }, uniquingKeysWith: { x, _ in x })
        XCTAssertEqual(podOf["default/web-\(tag)/eth0"], "default/web-\(tag)", list.stdout)
        XCTAssertEqual(podOf["shop/cart-\(tag)/eth0"], "shop/cart-\(tag)", list.stdout)
        let webRow = try XCTUnwrap(rows.first { $0["netns"] as? String == "default/web-\(tag)" })
        XCTAssertEqual((webRow["container"] as? [String: Any])?["name"] as? String, "nginx")
        XCTAssertEqual((webRow["container"] as? [String: Any])?["runtime"] as? String, "containerd")

        // --host-root: the same node seen through another root (an agent's /host): its
        // /proc and /run are the node's, its pod directories say other names
        let hostRoot = NSTemporaryDirectory() + "hoptrace-host-root-\(tag)"
        defer { try? fm.removeItem(atPath: hostRoot) }
        try fm.createDirectory(atPath: hostRoot + "/var/log/pods/staging_web-\(tag)_\(uidA)/nginx", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: hostRoot + "/proc", withDestinationPath: "/proc")
        try fm.createSymbolicLink(atPath: hostRoot + "/run", withDestinationPath: "/run")
        let rooted = try runHoptrace(["list", "--host-root", hostRoot])
        XCTAssertEqual(rooted.status, 0, rooted.stderr)
        XCTAssertTrue(rooted.stdout.contains("staging/web-\(tag)"), rooted.stdout)
        XCTAssertFalse(rooted.stdout.contains("default/web-\(tag)"), rooted.stdout)

        // trace --pod: the pod's veths, and every hop end says which pod it is
        let c0 = lab.containers[0], c1 = lab.containers[1]
        let path = NSTemporaryDirectory() + "hoptrace-pods-\(tag).hoptrace"
        defer { unlink(path) }
        let recorder = try startTracing(["record", "-o", path, "--force", "--pod", "default/web-\(tag)", "--pod", "shop/cart-\(tag)",
                                         "--duration", "20s", "--window", "500ms"])
        _ = try Traffic.udp(client: c0.netnsPath, server: c1.netnsPath, serverAddress: c1.address, port: 9500, count: 300, intervalUs: 100)
        kill(recorder.processIdentifier, SIGINT)
        recorder.waitUntilExit()
        XCTAssertEqual(recorder.terminationStatus, 0)
        let report = try runHoptrace(["report", path, "--json"])
        XCTAssertEqual(report.status, 0, report.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        let hops = try XCTUnwrap(json["hops"] as? [[String: Any]])
        let fromWeb = hops.first { (($0["from"] as? [String: Any])?["pod"] as? [String: Any])?["name"] as? String == "web-\(tag)" }
        XCTAssertNotNil(fromWeb, "no hop from the web pod: \(hops.map { "\($0["from"]!)" })")
        XCTAssertEqual((fromWeb?["from"] as? [String: Any])?["netns_name"] as? String, "default/web-\(tag)")
        XCTAssertTrue(hops.contains { (($0["to"] as? [String: Any])?["pod"] as? [String: Any])?["uid"] as? String == uidB },
                      "no hop into the cart pod")
        // flow ends too, by their addresses
        let flows = try XCTUnwrap(json["flows"] as? [[String: Any]])
        let udp = try XCTUnwrap(flows.first { $0["destination_port"] as? Int == 9500 }, "\(flows)")
        XCTAssertEqual((udp["source_pod"] as? [String: Any])?["name"] as? String, "web-\(tag)")
        XCTAssertEqual((udp["destination_pod"] as? [String: Any])?["name"] as? String, "cart-\(tag)")
        // the recording keeps the names: the pods are gone by the time it is read again
        a.stop()
        b.stop()
        lab.teardown()
        let later = try runHoptrace(["report", path])
        XCTAssertTrue(later.stdout.contains("HOP default/web-\(tag)/eth0 -> "), later.stdout)
        let csv = try runHoptrace(["export", path, "--format", "csv", "-o", "-"])
        XCTAssertEqual(csv.status, 0, csv.stderr)
        XCTAssertTrue(csv.stdout.contains(",default/web-\(tag),eth0,"), String(csv.stdout.prefix(600)))

        // a rollout: both pods made again under their names, in new namespaces with
        // new veths and new UIDs, on the same "host" (the hub); compare matches their
        // hops across the two runs
        let lab2 = try Lab(containers: 2, hub: lab.hub)
        let (a2, b2) = pods(run: 2)
        defer {
            a2.stop()
            b2.stop()
            lab2.teardown()
        }
        try a2.start(netns: lab2.containers[0].netns, container: "nginx")
        try b2.start(netns: lab2.containers[1].netns, container: "cart")
        let path2 = NSTemporaryDirectory() + "hoptrace-pods-after-\(tag).hoptrace"
        defer { unlink(path2) }
        let recorder2 = try startTracing(["record", "-o", path2, "--force", "--pod", "default/web-\(tag)", "--pod", "shop/cart-\(tag)",
                                          "--duration", "20s", "--window", "500ms"])
        _ = try Traffic.udp(client: lab2.containers[0].netnsPath, server: lab2.containers[1].netnsPath,
                            serverAddress: lab2.containers[1].address, port: 9500, count: 300, intervalUs: 100)
        kill(recorder2.processIdentifier, SIGINT)
        recorder2.waitUntilExit()
        XCTAssertEqual(recorder2.terminationStatus, 0)
        let compared = try runHoptrace(["compare", path, path2, "--json"])
        XCTAssertEqual(compared.status, 0, compared.stderr)
        let comparison = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(compared.stdout.utf8)) as? [String: Any])
        let entries = try XCTUnwrap(comparison["entries"] as? [[String: Any]])
        let webTotal = entries.filter { ($0["hop"] as? String)?.hasPrefix("default/web-\(tag)/eth0 -> ") == true && $0["segment"] as? String == "total" }
        XCTAssertFalse(webTotal.isEmpty, compared.stdout)
        for e in webTotal {
            XCTAssertFalse(["only in before", "only in after"].contains(e["verdict"] as? String ?? ""), "\(e)")
        }
    }
}
