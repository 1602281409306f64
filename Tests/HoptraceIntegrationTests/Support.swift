import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTracer
import HoptraceTestSupport
import XCTest

/// Integration tests need root and BPF. Without them they say so loudly and skip;
/// under CI (CI=true) they fail instead, so a CI that cannot run them is red.
func requireRootAndBPF() throws {
    var reason: String?
    if geteuid() != 0 {
        reason = "not root"
    } else {
        do { _ = try Tracer() } catch { reason = "cannot load BPF: \(error)" }
    }
    guard let reason else { return }
    try notRun("integration tests (\(reason)): run 'sudo make test' on a machine with BPF")
}

/// The package's root folder (for the built binary and scripts).
let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent()

/// The hoptrace binary `swift build` made for these tests.
func hoptraceBinary() throws -> String {
    for config in ["debug", "release"] {
        let path = packageRoot.appendingPathComponent(".build/\(config)/hoptrace").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
    XCTFail("no built hoptrace binary under .build/: run 'swift build' first")
    throw XCTSkip("no binary")
}

/// A counter from the namespace's /proc/net/snmp, e.g. ("Tcp", "OutSegs").
func snmp(_ netns: String, _ proto: String, _ field: String) throws -> UInt64 {
    let text = try Command.run(["ip", "netns", "exec", netns, "cat", "/proc/net/snmp"])
    let lines = text.split(separator: "\n").filter { $0.hasPrefix(proto + ":") }
    guard lines.count >= 2 else { throw TestFailure(description: "no \(proto) in snmp") }
    let names = lines[0].split(separator: " "), values = lines[1].split(separator: " ")
    guard let i = names.firstIndex(where: { $0 == field }), let v = UInt64(values[i]) else {
        throw TestFailure(description: "no \(proto) \(field) in snmp")
    }
    return v
}

/// The result of running the hoptrace binary.
struct TestFailure: Error, CustomStringConvertible {
    var description: String
}

struct RunResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs the binary to completion (with a time limit), capturing both streams.
func runHoptrace(_ args: [String], prefix: [String] = [], timeout: Double = 60) throws -> RunResult {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = prefix + [try hoptraceBinary()] + args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let killer = DispatchWorkItem { if p.isRunning { p.interrupt(); kill(p.processIdentifier, SIGKILL) } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
    let o = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    killer.cancel()
    return RunResult(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                     stderr: String(decoding: e, as: UTF8.self))
}

/// Starts the binary and returns once it says it is tracing (every device attached).
func startTracing(_ args: [String]) throws -> Process { try startHoptrace(args, until: "tracing").process }

/// Starts the binary and returns once its stderr shows `until`, with what it said so far.
func startHoptrace(_ args: [String], until: String) throws -> (process: Process, said: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try hoptraceBinary())
    p.arguments = args
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    var seen = ""
    let deadline = Date().addingTimeInterval(20)
    while !seen.contains(until), Date() < deadline, p.isRunning {
        seen += String(decoding: err.fileHandleForReading.availableData, as: UTF8.self)
    }
    XCTAssertTrue(seen.contains(until), "never said '\(until)': \(seen)")
    return (p, seen)
}

/// Namespaces on the node whose names start with `prefix`.
func namespaces(startingWith prefix: String) throws -> [String] {
    try Command.run(["ip", "netns", "list"]).split(separator: "\n").map { String($0.split(separator: " ")[0]) }
        .filter { $0.hasPrefix(prefix) }
}

/// Programs of hoptrace still loaded after up to 3 s: the kernel frees the objects
/// of a process that exited (or was killed) asynchronously.
func hoptraceProgramsLeft() throws -> [String] {
    var left = try loadedHoptracePrograms()
    for _ in 0..<30 where !left.isEmpty {
        usleep(100_000)
        left = try loadedHoptracePrograms()
    }
    return left
}

/// Programs of hoptrace attached by a link (tp_btf, tcx) anywhere on the node:
/// loaded is not attached, and only attached programs cost anything.
func attachedHoptracePrograms() throws -> Set<String> {
    let progs = try JSONSerialization.jsonObject(with: Data(try Command.run(["bpftool", "-j", "prog", "show"]).utf8))
        as? [[String: Any]] ?? []
    var names: [Int: String] = [:]
    for p in progs { if let id = p["id"] as? Int, let name = p["name"] as? String, name.hasPrefix("ht_") { names[id] = name } }
    let links = try JSONSerialization.jsonObject(with: Data(try Command.run(["bpftool", "-j", "link", "show"]).utf8))
        as? [[String: Any]] ?? []
    return Set(links.compactMap { ($0["prog_id"] as? Int).flatMap { names[$0] } })
}

/// Programs of hoptrace (named ht_*) loaded anywhere on the node.
func loadedHoptracePrograms() throws -> [String] {
    let json = try Command.run(["bpftool", "-j", "prog", "show"])
    let progs = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] ?? []
    return progs.compactMap { $0["name"] as? String }.filter { $0.hasPrefix("ht_") }
}

extension Report {
    func hop(_ from: String, _ to: String) -> HopReport? {
        hops.first { "\($0.from.netnsName)/\($0.from.device)" == from && "\($0.to.netnsName)/\($0.to.device)" == to }
    }
}

/// A lab traced on all of its veth devices for the length of `body`.
func traceLab(_ lab: Lab, devices: [DeviceSelection]? = nil, keepRecords: Int = 0, options: TracerOptions = TracerOptions(),
              _ body: () throws -> Void) throws -> (Report, [HopRecord]) {
    let session = try TraceSession(devices: devices ?? lab.devices, options: options, names: Discovery.topology().names,
                                   topFlows: .max, keepRecords: keepRecords)
    session.start()
    do {
        try body()
    } catch {
        _ = try? session.stop()
        throw error
    }
    let report = try session.stop()
    return (report, session.records)
}
