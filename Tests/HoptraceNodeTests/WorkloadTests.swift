import Foundation
import XCTest

import HoptraceCore
@testable import HoptraceNode

/// Workloads named from fixture trees in the layouts kubelet, the container
/// runtimes and systemd really write (issue 11).
final class WorkloadTests: XCTestCase {
    var root = ""
    let fm = FileManager.default
    let podUID = "6f2c1a4e-8b3d-4c2a-9e1f-0a1b2c3d4e5f"
    let crioUID = "0d1e2f3a-4b5c-4d6e-8f70-81a2b3c4d5e6"
    let v1UID = "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"
    func id(_ c: Character) -> String { String(repeating: c, count: 64) }

    override func setUpWithError() throws {
        root = NSTemporaryDirectory() + "hoptrace-workloads-\(getpid())-\(UUID().uuidString)/"
        func dir(_ path: String) throws { try fm.createDirectory(atPath: root + path, withIntermediateDirectories: true) }
        func file(_ path: String, _ text: String) throws {
            try dir((path as NSString).deletingLastPathComponent)
            try text.write(toFile: root + path, atomically: true, encoding: .utf8)
        }
        // kubelet's pod log directories: <namespace>_<name>_<uid>/<container>/
        try dir("var/log/pods/default_web-7d9f_\(podUID)/nginx")
        try dir("var/log/pods/shop_cart-0_\(crioUID)/cart")
        try dir("var/log/pods/shop_cart-0_\(crioUID)/envoy")
        try dir("var/log/pods/kube-system_dns-5c_\(v1UID)/coredns")
        try dir("var/log/pods/not-a-pod-dir")
        // Docker and Podman state
        try file("var/lib/docker/containers/\(id("d"))/config.v2.json", #"{"ID":"ddd","Name":"/redis","State":{}}"#)
        try file("var/lib/docker/containers/\(id("e"))/config.v2.json", "{not json")
        try file("var/lib/nerdctl/1935db59/names/default/cache", id("9"))
        try file("var/lib/containers/storage/overlay-containers/containers.json",
                 #"[{"id":"\#(id("f"))","names":["db"],"image":"x"}]"#)
    }

    override func tearDownWithError() throws { try? fm.removeItem(atPath: root) }

    func testKubeletContainerdSystemdDriverCgroupV2() {
        let uid = podUID.replacingOccurrences(of: "-", with: "_")
        let w = WorkloadResolver(root: root).workload(cgroup:
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uid).slice/cri-containerd-\(id("a")).scope\n")
        XCTAssertEqual(w?.pod, Workload.Pod(namespace: "default", name: "web-7d9f", uid: podUID))
        XCTAssertEqual(w?.container, Workload.Container(name: "nginx", id: id("a"), runtime: "containerd"))
        XCTAssertEqual(w?.label, "default/web-7d9f")
    }

    /// A pod of two containers shares one namespace: named by the pod, the container
    /// left unnamed (the sandbox's process, pause, holds it).
    func testKubeletCrioPodOfTwoContainers() {
        let uid = crioUID.replacingOccurrences(of: "-", with: "_")
        let w = WorkloadResolver(root: root).workload(cgroup:
            "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uid).slice/crio-\(id("b")).scope\n")
        XCTAssertEqual(w?.pod?.name, "cart-0")
        XCTAssertEqual(w?.pod?.namespace, "shop")
        XCTAssertEqual(w?.container, Workload.Container(name: "", id: id("b"), runtime: "cri-o"))
        // the conmon scope is the monitor, not the container
        XCTAssertNil(WorkloadResolver.identity(cgroup: "0::/system.slice/crio-conmon-\(id("b")).scope").containerID)
    }

    func testKubeletCgroupfsDriverCgroupV1() {
        let path = "/kubepods/pod\(v1UID)/\(id("c"))"
        let cgroup = ["12:pids:\(path)", "11:memory:\(path)", "4:cpu,cpuacct:\(path)", "1:name=systemd:\(path)", "0::/"]
            .joined(separator: "\n")
        let w = WorkloadResolver(root: root).workload(cgroup: cgroup)
        XCTAssertEqual(w?.pod, Workload.Pod(namespace: "kube-system", name: "dns-5c", uid: v1UID))
        XCTAssertEqual(w?.container?.name, "coredns")
        XCTAssertEqual(w?.container?.id, id("c"))
        // burstable and besteffort pods sit one level down
        XCTAssertEqual(WorkloadResolver.identity(cgroup: "3:memory:/kubepods/burstable/pod\(v1UID)/\(id("c"))").podUID, v1UID)
    }

    func testDockerPodmanAndServices() {
        let r = WorkloadResolver(root: root)
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/docker-\(id("d")).scope")?.container,
                       Workload.Container(name: "redis", id: id("d"), runtime: "docker"))
        // cgroupfs driver, v1
        XCTAssertEqual(r.workload(cgroup: "9:memory:/docker/\(id("d"))\n1:name=systemd:/docker/\(id("d"))")?.label, "redis")
        XCTAssertEqual(r.workload(cgroup: "0::/machine.slice/libpod-\(id("f")).scope")?.container,
                       Workload.Container(name: "db", id: id("f"), runtime: "podman"))
        // CRI-O outside Kubernetes keeps the same containers/storage
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/crio-\(id("f")).scope")?.label, "db")
        // containerd outside Kubernetes (nerdctl)
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/nerdctl-\(id("9")).scope")?.container,
                       Workload.Container(name: "cache", id: id("9"), runtime: "containerd"))
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/nginx.service")?.service, "nginx.service")
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/nginx.service")?.label, "nginx.service")
        XCTAssertNil(r.workload(cgroup: "0::/user.slice/user-0.slice/session-1.scope"))
    }

    /// Unknown or malformed files name what they can, and never fail.
    func testGarbageGivesUnknownNotAnError() {
        let r = WorkloadResolver(root: root)
        XCTAssertNil(r.workload(cgroup: ""))
        XCTAssertNil(r.workload(cgroup: "garbage\n\u{0}\u{1}::::"))
        XCTAssertNil(r.workload(cgroup: "0::/kubepods.slice/kubepods-pod"))
        // a Docker container whose config does not parse: by runtime and id
        XCTAssertEqual(r.workload(cgroup: "0::/system.slice/docker-\(id("e")).scope")?.label, "docker:eeeeeeeeeeee")
        // a pod whose log directory is gone: a pod all the same, by its UID
        let gone = "11111111-2222-4333-8444-555555555555"
        let w = r.workload(cgroup: "0::/kubepods.slice/kubepods-pod\(gone.replacingOccurrences(of: "-", with: "_")).slice/cri-containerd-\(id("a")).scope")
        XCTAssertEqual(w?.pod?.uid, gone)
        XCTAssertEqual(w?.pod?.name, "pod-11111111")
        // an unreadable tree: nothing at all
        XCTAssertNil(WorkloadResolver(root: root + "no/such/").workload(cgroup: "0::/system.slice/docker-\(id("d")).scope")?.container?.name.nilIfEmpty)
    }

    /// The scanner names a pod's namespace by the pod, and the name table (what a
    /// report and a recording carry) keeps the workload.
    func testScannerNamesPodNamespaces() throws {
        try fm.createDirectory(atPath: root + "proc/1/ns", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "proc/1/ns/net", withDestinationPath: "net:[4026531840]")
        try fm.createDirectory(atPath: root + "proc/4242/ns", withIntermediateDirectories: true)
        try fm.createSymbolicLink(atPath: root + "proc/4242/ns/net", withDestinationPath: "net:[4026532777]")
        let uid = podUID.replacingOccurrences(of: "-", with: "_")
        try "0::/kubepods.slice/kubepods-pod\(uid).slice/cri-containerd-\(id("a")).scope\n"
            .write(toFile: root + "proc/4242/cgroup", atomically: true, encoding: .utf8)
        let found = NamespaceScanner(root: root).scan()
        let pod = try XCTUnwrap(found.first { $0.inode == 4026532777 })
        XCTAssertEqual(pod.kind, .pod)
        XCTAssertEqual(pod.name, "default/web-7d9f")
        let names = NodeTopology(namespaces: found, devices: []).names
        XCTAssertEqual(names.workloads[4026532777]?.pod?.uid, podUID)
        // and a name table from before workloads existed still decodes
        let old = try JSONDecoder().decode(NameTable.self, from: Data(#"{"netns":[],"devices":[]}"#.utf8))
        XCTAssertEqual(old.workloads, [:])
    }
}

extension WorkloadTests {
    /// `--pod`, `--container` and `--namespace` select the veths of those workloads,
    /// pod side and host side; a workload not on the node is one clear error.
    func testSelectionByWorkload() throws {
        func veth(_ ns: UInt32, _ i: UInt32, _ name: String, peer: Endpoint) -> DeviceInfo {
            DeviceInfo(endpoint: Endpoint(netns: ns, ifindex: i), name: name, kind: "veth", master: nil, peer: peer, state: "UP")
        }
        let host = NetnsInfo(inode: 1, name: "host", kind: .host, path: "/proc/1/ns/net")
        let web = NetnsInfo(inode: 2, name: "default/web", kind: .pod, path: "/proc/20/ns/net",
                            workload: Workload(pod: Workload.Pod(namespace: "default", name: "web", uid: "u1")))
        let cart = NetnsInfo(inode: 3, name: "shop/cart", kind: .pod, path: "/proc/30/ns/net",
                             workload: Workload(pod: Workload.Pod(namespace: "shop", name: "cart", uid: "u2"),
                                                container: Workload.Container(name: "cart", id: id("c"), runtime: "cri-o")))
        let topo = NodeTopology(namespaces: [host, web, cart], devices: [
            veth(2, 2, "eth0", peer: Endpoint(netns: 1, ifindex: 10)), veth(1, 10, "veth10", peer: Endpoint(netns: 2, ifindex: 2)),
            veth(3, 2, "eth0", peer: Endpoint(netns: 1, ifindex: 11)), veth(1, 11, "veth11", peer: Endpoint(netns: 3, ifindex: 2)),
        ])
        func labels(_ w: WorkloadSelection) throws -> [String] {
            try topo.select(allVeth: false, netns: nil, interfaces: [], workloads: w).map(\.label).sorted()
        }
        XCTAssertEqual(try labels(WorkloadSelection(pods: ["default/web"])), ["default/web/eth0", "host/veth10"])
        XCTAssertEqual(try labels(WorkloadSelection(containers: ["cart"])), ["host/veth11", "shop/cart/eth0"])
        XCTAssertEqual(try labels(WorkloadSelection(kubernetesNamespaces: ["shop"])), ["host/veth11", "shop/cart/eth0"])
        XCTAssertThrowsError(try labels(WorkloadSelection(pods: ["default/nope"]))) { e in
            XCTAssertTrue("\(e)".contains("no pod 'default/nope' on this node"), "\(e)")
        }
    }
}

extension String {
    var nilIfEmpty: String? { isEmpty ? nil : self }
}
