import Foundation
import HoptraceTestSupport
import XCTest

/// The deployment files under deploy/: the DaemonSet validates against the Kubernetes
/// schemas (offline), the systemd unit passes `systemd-analyze verify`, and both hold
/// exactly the capabilities listed in deploy/capabilities, the one list the agent uses.
final class DeployTests: XCTestCase {
    /// The Kubernetes version the manifest is validated against: the oldest it supports
    /// (securityContext.appArmorProfile is new in 1.30), as shipped offline by the
    /// kubernetes-validate package.
    static let kubernetesVersion = "1.30.0"

    // MARK: the capability list

    func testCapabilityListIsWellFormed() throws {
        let caps = try capabilityList()
        XCTAssertFalse(caps.isEmpty)
        XCTAssertEqual(Set(caps).count, caps.count, "a capability listed twice: \(caps)")
        for cap in caps {
            XCTAssertNotNil(cap.range(of: #"^CAP_[A-Z_]+$"#, options: .regularExpression), "not a capability name: '\(cap)'")
        }
    }

    // MARK: Kubernetes

    /// kubernetes-validate with the schemas it ships (no network), strict: unknown
    /// fields are errors, so a field that version does not have fails.
    func testManifestValidates() throws {
        let validate = try requireTool("kubernetes-validate", install: "make deps (pip install kubernetes-validate)")
        let r = try run(validate, ["--strict", "-k", Self.kubernetesVersion, manifestPath])
        XCTAssertEqual(r.status, 0, "kubernetes-validate failed:\n\(r.output)")
        for resource in ["namespace/hoptrace", "serviceaccount/hoptrace", "daemonset/hoptrace"] {
            XCTAssertTrue(r.output.contains("passed for resource \(resource)"), "\(resource) not validated:\n\(r.output)")
        }
    }

    /// The validator does fail a broken manifest (so the test above can fail).
    func testValidatorRejectsAnUnknownField() throws {
        let validate = try requireTool("kubernetes-validate", install: "make deps (pip install kubernetes-validate)")
        let text = try String(contentsOfFile: manifestPath, encoding: .utf8)
            .replacingOccurrences(of: "hostNetwork: true", with: "hostNetwork: true\n      hostNetworking: true")
        let dir = try temporaryDirectory()
        let broken = dir.appendingPathComponent("broken.yaml").path
        try text.write(toFile: broken, atomically: true, encoding: .utf8)
        let r = try run(validate, ["--strict", "-k", Self.kubernetesVersion, broken])
        XCTAssertNotEqual(r.status, 0, "an unknown field passed:\n\(r.output)")
    }

    func testDaemonSetSecurity() throws {
        let ds = try daemonSet()
        let spec = try XCTUnwrap(dict(ds, "spec", "template", "spec"))
        let container = try XCTUnwrap((spec["containers"] as? [[String: Any]])?.first { $0["name"] as? String == "hoptrace" })
        let sc = try XCTUnwrap(container["securityContext"] as? [String: Any])

        XCTAssertEqual(sc["privileged"] as? Bool, false)
        XCTAssertEqual(sc["allowPrivilegeEscalation"] as? Bool, false)
        XCTAssertEqual(sc["readOnlyRootFilesystem"] as? Bool, true)
        let caps = try XCTUnwrap(sc["capabilities"] as? [String: Any])
        XCTAssertEqual(caps["drop"] as? [String], ["ALL"])
        // Kubernetes names capabilities without the CAP_ prefix
        let added = try XCTUnwrap(caps["add"] as? [String])
        XCTAssertEqual(added.count, Set(added).count, "a capability added twice: \(added)")
        XCTAssertEqual(Set(added.map { "CAP_" + $0 }), Set(try capabilityList()),
                       "capabilities.add differs from deploy/capabilities")

        XCTAssertEqual(spec["hostNetwork"] as? Bool, true)
        XCTAssertEqual(spec["dnsPolicy"] as? String, "ClusterFirstWithHostNet")
        XCTAssertNil(spec["hostPID"], "the host's /proc is mounted instead")
        let tolerations = spec["tolerations"] as? [[String: Any]] ?? []
        XCTAssertTrue(tolerations.contains { $0["operator"] as? String == "Exists" && $0["key"] == nil },
                      "no toleration of every taint: \(tolerations)")
        XCTAssertEqual(spec["terminationGracePeriodSeconds"] as? Int, 10)

        let args = container["args"] as? [String] ?? []
        XCTAssertEqual(args.first, "serve")
        XCTAssertTrue(hasOption(args, "--host-root", "/host"), "\(args)")
        XCTAssertTrue(hasOption(args, "--listen", "0.0.0.0:9479"), "\(args)")
        XCTAssertTrue(hasOption(args, "--incidents", "/var/lib/hoptrace/incidents"), "\(args)")

        for probe in ["livenessProbe", "readinessProbe"] {
            XCTAssertEqual(dict(container, probe, "httpGet")?["path"] as? String, "/healthz", probe)
            XCTAssertEqual(dict(container, probe, "httpGet")?["port"] as? Int, 9479, probe)
        }
        let annotations = try XCTUnwrap(dict(ds, "spec", "template", "metadata", "annotations") as? [String: String])
        XCTAssertEqual(annotations["prometheus.io/scrape"], "true")
        XCTAssertEqual(annotations["prometheus.io/port"], "9479")
        XCTAssertEqual(annotations["prometheus.io/path"], "/metrics")
    }

    /// Every host path is mounted read-only but the incidents directory, and every
    /// mount under /host comes from the host.
    func testHostPathsAreReadOnlyButIncidents() throws {
        let ds = try daemonSet()
        let spec = try XCTUnwrap(dict(ds, "spec", "template", "spec"))
        let volumes = spec["volumes"] as? [[String: Any]] ?? []
        var hostPaths: [String: String] = [:] // volume name -> host path
        for v in volumes {
            if let name = v["name"] as? String, let path = (v["hostPath"] as? [String: Any])?["path"] as? String {
                hostPaths[name] = path
            }
        }
        let container = try XCTUnwrap((spec["containers"] as? [[String: Any]])?.first)
        let mounts = container["volumeMounts"] as? [[String: Any]] ?? []
        var incidents = 0
        for m in mounts {
            let name = m["name"] as? String ?? "", mountPath = m["mountPath"] as? String ?? ""
            let readOnly = m["readOnly"] as? Bool ?? false
            if mountPath.hasPrefix("/host/") {
                XCTAssertNotNil(hostPaths[name], "\(mountPath) is not a host path")
                XCTAssertTrue(readOnly, "\(mountPath) is writable")
                // /host mirrors the host: /host/X is the host's X
                XCTAssertEqual(hostPaths[name].map { "/host" + $0 }, mountPath)
            } else if hostPaths[name] != nil {
                if mountPath == "/var/lib/hoptrace" {
                    incidents += 1
                    XCTAssertFalse(readOnly, "the incidents directory must be writable")
                } else {
                    XCTAssertTrue(readOnly, "host path \(hostPaths[name]!) at \(mountPath) is writable")
                }
            }
        }
        XCTAssertEqual(incidents, 1, "the incidents directory is mounted once")
        for needed in ["/host/proc", "/host/var/log/pods", "/host/run/netns", "/host/sys/fs/cgroup"] {
            XCTAssertTrue(mounts.contains { $0["mountPath"] as? String == needed }, "\(needed) not mounted")
        }
    }

    // MARK: systemd

    /// `systemd-analyze verify` on the unit. It checks that ExecStart's binary exists,
    /// and /usr/local/bin/hoptrace is not installed where tests run, so a copy of the
    /// unit runs /bin/true instead; every other line is verified as written.
    func testUnitVerifies() throws {
        let analyze = try requireTool("systemd-analyze", install: "apt-get install systemd")
        let unit = try String(contentsOfFile: unitPath, encoding: .utf8)
        XCTAssertTrue(unit.contains("\nExecStart=/usr/local/bin/hoptrace serve"), "ExecStart changed: update this test")
        let copy = unit.replacingOccurrences(of: "\nExecStart=/usr/local/bin/hoptrace ", with: "\nExecStart=/bin/true ")
        let dir = try temporaryDirectory()
        let path = dir.appendingPathComponent("hoptrace.service").path
        try copy.write(toFile: path, atomically: true, encoding: .utf8)
        let r = try run(analyze, ["verify", path])
        XCTAssertEqual(r.status, 0, "systemd-analyze verify failed:\n\(r.output)")
        // it may warn about the machine's own units; none of its lines may be about ours
        XCTAssertFalse(r.output.contains("hoptrace.service"), "systemd-analyze verify:\n\(r.output)")
    }

    func testUnitCapabilitiesAndHardening() throws {
        let settings = try unitSettings()
        let expected = Set(try capabilityList())
        for key in ["CapabilityBoundingSet", "AmbientCapabilities"] {
            let values = settings[key] ?? []
            XCTAssertEqual(values.count, 1, "\(key) set \(values.count) times")
            let caps = values.joined(separator: " ").split(separator: " ").map(String.init)
            XCTAssertEqual(caps.count, Set(caps).count, "\(key) lists a capability twice")
            XCTAssertEqual(Set(caps), expected, "\(key) differs from deploy/capabilities")
        }
        XCTAssertEqual(settings["NoNewPrivileges"], ["yes"])
        XCTAssertEqual(settings["ProtectSystem"], ["strict"])
        XCTAssertEqual(settings["StateDirectory"], ["hoptrace"])
        XCTAssertEqual(settings["LimitMEMLOCK"], ["infinity"])
        XCTAssertEqual(settings["KillSignal"], ["SIGTERM"])
        // a private network namespace would hide the host's veths
        XCTAssertNil(settings["PrivateNetwork"])
    }

    // MARK: helpers

    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    var manifestPath: String { root.appendingPathComponent("deploy/kubernetes/hoptrace.yaml").path }
    var unitPath: String { root.appendingPathComponent("deploy/systemd/hoptrace.service").path }

    /// deploy/capabilities: the CAP_ names, one a line ('#' comments, blank lines).
    func capabilityList() throws -> [String] {
        try String(contentsOfFile: root.appendingPathComponent("deploy/capabilities").path, encoding: .utf8)
            .split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
            .filter { !$0.isEmpty && !$0.hasPrefix("#") }
    }

    /// The unit's `Key=value` lines (comments and sections skipped), values per key.
    func unitSettings() throws -> [String: [String]] {
        var settings: [String: [String]] = [:]
        for line in try String(contentsOfFile: unitPath, encoding: .utf8).split(separator: "\n") {
            let l = line.trimmingCharacters(in: .whitespaces)
            guard !l.hasPrefix("#"), !l.hasPrefix(";"), !l.hasPrefix("["), let eq = l.firstIndex(of: "=") else { continue }
            settings[String(l[..<eq]), default: []].append(String(l[l.index(after: eq)...]))
        }
        return settings
    }

    /// The manifest's DaemonSet, parsed by PyYAML (which kubernetes-validate depends
    /// on) into JSON.
    func daemonSet() throws -> [String: Any] {
        let python = try requireTool("python3", install: "apt-get install python3")
        let script = "import sys, json, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))"
        let r = try run(python, ["-c", script, manifestPath])
        if r.status != 0 {
            try missing("python3 with PyYAML (\(r.output.split(separator: "\n").last ?? ""))",
                        install: "make deps (kubernetes-validate brings PyYAML)")
        }
        let docs = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [Any])
        let objects = docs.compactMap { $0 as? [String: Any] }
        XCTAssertEqual(objects.map { $0["kind"] as? String ?? "" }, ["Namespace", "ServiceAccount", "DaemonSet"])
        return try XCTUnwrap(objects.first { $0["kind"] as? String == "DaemonSet" })
    }

    func dict(_ object: [String: Any], _ keys: String...) -> [String: Any]? {
        var current: [String: Any]? = object
        for key in keys { current = current?[key] as? [String: Any] }
        return current
    }

    /// `option value` appears in args as two consecutive arguments.
    func hasOption(_ args: [String], _ option: String, _ value: String) -> Bool {
        zip(args, args.dropFirst()).contains { $0 == option && $1 == value }
    }

    /// The tool's path on PATH. Missing: said loudly; a failure under CI (CI=true),
    /// where `make deps` must have installed it, a skip elsewhere.
    func requireTool(_ name: String, install: String) throws -> String {
        let dirs = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":")
        for dir in dirs {
            let path = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        try missing(name, install: install)
    }

    func missing(_ what: String, install: String) throws -> Never {
        try notRun("deploy test: \(what) is missing (\(install))")
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var output: String { stdout + stderr }
    }

    func run(_ executable: String, _ arguments: [String]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: executable)
        p.arguments = arguments
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        // stderr is read on another thread while stdout is read here, so that neither
        // pipe fills up and blocks the child
        let errHandle = err.fileHandleForReading, errData = LockedData(), group = DispatchGroup()
        DispatchQueue.global().async(group: group) { errData.set(errHandle.readDataToEndOfFile()) }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        group.wait()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData.get(), as: UTF8.self))
    }

    func temporaryDirectory() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("hoptrace-deploy-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(at: dir) }
        return dir
    }
}

/// Data handed over from the stderr reader.
final class LockedData: @unchecked Sendable {
    private let lock = NSLock()
    private var data = Data()
    func set(_ d: Data) { lock.withLock { data = d } }
    func get() -> Data { lock.withLock { data } }
}
