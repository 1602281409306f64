import Foundation
import HoptraceCore
import HoptraceNode

/// A process that attaches BPF programs and keeps them attached until stopped:
/// bpftrace, `hoptrace trace`, the bare tc loader.
struct Observer {
    let process: Process
    let stdout: Pipe
    let stderr: Pipe?
    /// What it printed up to and including the ready line.
    let banner: String

    /// Interrupts it (each detaches on SIGINT) and returns what it printed on stdout.
    @discardableResult
    func stop() -> String {
        process.interrupt()
        let out = stdout.fileHandleForReading.readDataToEndOfFile()
        _ = stderr?.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: out, as: UTF8.self)
    }
}

/// Starts `argv` and waits until it prints `ready` (on stderr if `readyOnStderr`,
/// else stdout): its programs are attached from then on. Nil if it exits or stays
/// silent for `timeout` seconds. `cpus` (a taskset list) keeps its own threads off the CPU a
/// measurement is pinned to.
func startObserver(_ argv: [String], ready: String, readyOnStderr: Bool = false, cpus: String? = nil,
                   timeout: Double = 20) throws -> Observer? {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = (cpus.map { ["taskset", "-c", $0] } ?? []) + argv
    let out = Pipe(), err = readyOnStderr ? Pipe() : nil
    p.standardOutput = out
    p.standardError = err ?? FileHandle.nullDevice
    p.standardInput = FileHandle.nullDevice
    try p.run()
    Cleanup.shared.track(p)
    let watched = (err ?? out).fileHandleForReading.fileDescriptor
    var seen = ""
    let deadline = nowSeconds() + timeout
    while !seen.contains(ready), nowSeconds() < deadline {
        // poll first: a read would block past the deadline on a silent process
        var fd = pollfd(fd: watched, events: Int16(POLLIN), revents: 0)
        guard poll(&fd, 1, 200) >= 0 else { break }
        if fd.revents == 0 { continue }
        var buf = [UInt8](repeating: 0, count: 4096)
        let n = read(watched, &buf, buf.count)
        if n <= 0 { break } // it exited
        seen += String(decoding: buf[0..<n], as: UTF8.self)
    }
    let observer = Observer(process: p, stdout: out, stderr: err, banner: seen)
    guard seen.contains(ready) else {
        say("\(argv[0]) did not start: \(seen.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300))")
        observer.stop()
        return nil
    }
    return observer
}

/// Starts a bpftrace `script` (see startObserver).
func startBpftrace(_ script: String, cpus: String? = nil) throws -> Observer? {
    // bpftrace reads the tracepoints' formats there
    if !FileManager.default.fileExists(atPath: "/sys/kernel/tracing/events") {
        _ = try? Command.run(["mount", "-t", "tracefs", "nodev", "/sys/kernel/tracing"])
    }
    return try startObserver(["bpftrace", script], ready: "Attaching", cpus: cpus)
}

/// One loaded BPF program as `bpftool -j prog show` lists it. Run counts and times
/// grow only while bpf_stats is on.
struct LoadedProgram {
    var id: Int
    var name: String
    var type: String
    var runs: UInt64
    var runTimeNs: UInt64
}

func loadedPrograms() throws -> [LoadedProgram] {
    let json = try Command.run(["bpftool", "-j", "prog", "show"])
    let progs = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] ?? []
    return progs.compactMap { p in
        guard let id = p["id"] as? Int else { return nil }
        return LoadedProgram(id: id, name: p["name"] as? String ?? "", type: p["type"] as? String ?? "",
                             runs: UInt64(p["run_cnt"] as? Int ?? 0), runTimeNs: UInt64(p["run_time_ns"] as? Int ?? 0))
    }
}

/// Ids of the BPF programs a process holds open (its fds' /proc fdinfo), so a figure
/// counts one observer's programs and not those of another run on the node.
func programIDs(heldBy pid: Int32) -> Set<Int> {
    let dir = "/proc/\(pid)/fdinfo"
    var ids = Set<Int>()
    for fd in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        guard let info = try? String(contentsOfFile: "\(dir)/\(fd)", encoding: .utf8) else { continue }
        for line in info.split(separator: "\n") where line.hasPrefix("prog_id:") {
            if let id = Int(line.dropFirst("prog_id:".count).trimmingCharacters(in: .whitespaces)) { ids.insert(id) }
        }
    }
    return ids
}

/// Tracepoint programs attached on the node besides `ours` (`bpftool link show`),
/// e.g. by another hoptrace's integration tests: they run for every packet of the
/// node, the bench's included, whatever the bench attaches itself.
func otherTracepointPrograms(besides ours: Set<Int>) throws -> [String] {
    let json = try Command.run(["bpftool", "-j", "link", "show"])
    let links = try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [[String: Any]] ?? []
    return links.compactMap { l in
        guard let type = l["type"] as? String, ["raw_tracepoint", "tracing", "perf_event"].contains(type),
              let prog = l["prog_id"] as? Int, !ours.contains(prog) else { return nil }
        return l["tp_name"] as? String ?? type
    }
}

/// Run count and time of bpftrace's softirq programs (type tracepoint, named after
/// their probes; hoptrace's are tp_btf programs named ht_*).
func bpftraceProgramTotals() throws -> (runs: UInt64, ns: UInt64) {
    var runs: UInt64 = 0, ns: UInt64 = 0
    for p in try loadedPrograms()
    where p.type == "tracepoint" && ["softirq_raise", "softirq_entry", "softirq_exit"].contains(p.name) {
        runs += p.runs
        ns += p.runTimeNs
    }
    return (runs, ns)
}
