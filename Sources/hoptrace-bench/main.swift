// hoptrace-bench: what `make bench` runs. Every figure is a ratio against a
// baseline taken in the same run on the same machine (discovery: times against
// targets), and every figure is the median of repeated runs (the machines are
// shared and noisy).
import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceRecording
import HoptraceTracer

let args = CommandLine.arguments
func option(_ name: String, _ fallback: String) -> String {
    if let i = args.firstIndex(of: name), i + 1 < args.count { return args[i + 1] }
    return fallback
}
let repeats = Int(option("--repeats", "5")) ?? 5
let seconds = Double(option("--seconds", "3")) ?? 3
let cConsumer = option("--c-consumer", ".build/bench/c_consumer")
/// `--pinned-only`: just the CPU-bound per-packet cost of each observer (Pinned.swift).
let pinnedOnly = args.contains("--pinned-only")
let output = option("--json", pinnedOnly ? ".build/bench-pinned-results.json" : ".build/bench-results.json")
let rounds = Int(option("--rounds", "5")) ?? 5
let pinnedSeconds = Double(option("--pinned-seconds", "3")) ?? 3
/// udp_pps, bare_tc and its object, as `make bench` builds them.
let tools = option("--tools", ".build/bench")
/// The hoptrace next to this bench binary: the same build.
let hoptraceBinary = option("--hoptrace", URL(fileURLWithPath: args[0]).deletingLastPathComponent().appendingPathComponent("hoptrace").path)

func say(_ s: String) { FileHandle.standardError.write(Data("bench: \(s)\n".utf8)) }
func median(_ xs: [Double]) -> Double {
    let s = xs.sorted()
    return s.isEmpty ? .nan : s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
func nowSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
/// Writes the figures to `output` and prints them.
func writeResults(_ results: [String: Any]) throws {
    let data = try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys])
    try data.write(to: URL(fileURLWithPath: output))
    print(String(decoding: data, as: UTF8.self))
    say("written to \(output)")
}
/// Runs each of `variants` once, in an order that rotates from round to round:
/// run-to-run drift (iperf3 here varies by +-20 %) must not favour one of them.
/// The results come back in the variants' order.
func rotated<T>(_ round: Int, _ variants: [() throws -> T]) throws -> [T] {
    var results = [T?](repeating: nil, count: variants.count)
    for i in variants.indices {
        let v = (round + i) % variants.count
        results[v] = try variants[v]()
    }
    return results.map { $0! }
}

var results: [String: Any] = ["repeats": repeats, "seconds_per_run": seconds]
Cleanup.shared.install()
Lab.sweepOrphans() // what a killed run left

// MARK: the Swift consumer's own work, without the kernel: decode + histograms

/// Records like the producer's: 1,000 flows, 4 hops, random latencies.
func syntheticBatch(count: Int) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count * RecordLayout.size)
    var seed: UInt64 = 12345
    bytes.withUnsafeMutableBytes { raw in
        for i in 0..<count {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let rnd = UInt32(truncatingIfNeeded: seed >> 33)
            let hop = UInt32(i & 3)
            let flow = FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                               sourcePort: UInt16(10000 + (i >> 2) % 1000), destinationPort: 80, proto: 6, family: 4)
            HopRecord(timestampNs: UInt64(i) * 100, forwardNs: hop == 0 ? 0 : rnd & 0xfff, qdiscNs: 300 + (rnd >> 20),
                      vethNs: 200 + ((rnd >> 8) & 0x3ff), backlogNs: 500 + ((rnd >> 4) & 0x1fff), length: 1514,
                      from: Endpoint(netns: 4026532000 + hop, ifindex: 2), to: Endpoint(netns: 4026532001 + hop, ifindex: 3),
                      gsoSegments: 1, kind: .hop, flags: hop == 0 ? [.firstHop] : [], cpu: 0, hopIndex: UInt16(hop),
                      flow: flow).encode(into: raw, at: i * RecordLayout.size)
        }
    }
    return bytes
}

func aggregateOnlyNsPerRecord(rounds: Int) throws -> Double {
    let batch = syntheticBatch(count: 150_000)
    var times: [Double] = []
    for _ in 0..<rounds {
        var aggregate = TraceAggregate()
        let t0 = nowSeconds()
        _ = try batch.withUnsafeBytes { try aggregate.add(batch: $0) }
        times.append((nowSeconds() - t0) / 150_000 * 1e9)
    }
    return median(times)
}

/// Read rate of `report`: a synthetic recording of `count` records, read back
/// (decode only) and into the full report state (aggregate + windows).
func recordingReadRates(count: Int) throws -> (write: Double, decode: Double, report: Double, reportOneThread: Double,
                                               bytesPerRecord: Double) {
    let path = NSTemporaryDirectory() + "hoptrace-bench-\(getpid()).hoptrace"
    defer { unlink(path) }
    let batch = syntheticBatch(count: 100_000)
    let meta = RecordingMetadata(toolVersion: "bench", host: "bench", kernel: "", startUnixNs: 0, startMonotonicNs: 0,
                                 windowNs: 1_000_000_000, sampling: Sampling(), devices: [], softirq: false, names: NameTable())
    let writer = try RecordingWriter(path: path, metadata: meta, force: true)
    let writeStart = nowSeconds()
    for round in 0..<(count / 100_000) {
        try batch.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                var r = try HopRecord(decoding: raw, at: off)
                r.timestampNs += UInt64(round) * 10_000_000 // 100 rounds per 1 s window
                writer.append(r)
                off += RecordLayout.size
            }
        }
    }
    writer.flush()
    writer.sync()
    // the rate of appending (encode, compress, write); the final fsync is once per file
    let writeRate = Double(writer.recordsWritten) / (nowSeconds() - writeStart)
    try writer.finish(RecordingEnd(status: RecordingStatus(monotonicNs: 0, counters: TracerCounters(), softirqRunNs: []),
                                   durationSeconds: 1, softirq: .disabled))
    var decodeRates: [Double] = [], reportRates: [Double] = [], oneThreadRates: [Double] = []
    for _ in 0..<3 {
        var t0 = nowSeconds()
        var n = 0
        _ = try RecordingReader.read(path: path) { _ in n += 1 }
        decodeRates.append(Double(n) / (nowSeconds() - t0))
        t0 = nowSeconds()
        let trace = try RecordedTrace(path: path)
        reportRates.append(Double(trace.contents.records) / (nowSeconds() - t0))
        t0 = nowSeconds()
        let oneThread = try RecordedTrace(path: path, threads: 1)
        oneThreadRates.append(Double(oneThread.contents.records) / (nowSeconds() - t0))
    }
    return (writeRate, median(decodeRates), median(reportRates), median(oneThreadRates),
            Double(writer.bytesWritten) / Double(writer.recordsWritten))
}

if args.contains("--recording-only") {
    let r = try recordingReadRates(count: 2_000_000)
    print("write \(r.write.rounded()) records/s (decoding raw records included), decode \(r.decode.rounded()) records/s, "
          + "report \(r.report.rounded()) records/s (one aggregating thread: \(r.reportOneThread.rounded())), \(r.bytesPerRecord) bytes/record")
    exit(0)
}

if args.contains("--html-only") {
    let html = try htmlBench(rounds: 3, keep: args.contains("--html-keep") ? option("--html-keep", ".") : nil)
    print(String(decoding: try JSONSerialization.data(withJSONObject: html, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
    exit(0)
}

if args.contains("--aggregate-only") {
    print(try aggregateOnlyNsPerRecord(rounds: repeats))
    exit(0)
}

// MARK: consumer speed: drain a ring buffer filled by the same producer

func swiftConsumerRate(rounds: Int, perRound: UInt32) throws -> (rate: Double, perRecordNs: Double) {
    let tracer = try Tracer()
    defer { tracer.close() }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(tracer.options.ringBytes) / 4, alignment: 16)
    defer { buffer.deallocate() }
    var rates: [Double] = []
    for _ in 0..<rounds {
        try tracer.benchFill(records: perRound)
        var aggregate = TraceAggregate()
        let t0 = nowSeconds()
        var n = 0
        while true {
            let bytes = try tracer.drain(into: buffer, timeoutMs: 0)
            if bytes == 0 { break }
            try aggregate.add(batch: UnsafeRawBufferPointer(rebasing: buffer[0..<bytes]))
            n += bytes / RecordLayout.size
        }
        rates.append(Double(n) / (nowSeconds() - t0))
        if n != Int(perRound) { say("swift consumer drained \(n) of \(perRound)") }
    }
    let rate = median(rates)
    return (rate, 1e9 / rate)
}

/// Records/s the real consumer path (DrainThread, epoll wake-ups, decode,
/// histograms) takes from a producer running flat out on the other CPU.
func swiftLiveRate(seconds: Double, recordTo path: String? = nil) throws -> (rate: Double, lost: UInt64) {
    let tracer = try Tracer()
    defer { tracer.close() }
    let box = LiveCount()
    if let path {
        box.writer = try RecordingWriter(path: path, metadata: RecordingMetadata(
            toolVersion: "bench", host: "bench", kernel: "", startUnixNs: 0, startMonotonicNs: 0, windowNs: 1_000_000_000,
            sampling: Sampling(), devices: [], softirq: false, names: NameTable()), force: true)
    }
    let drain = DrainThread(tracer: tracer) { batch in
        box.add(batch)
    }
    let producing = LiveFlag()
    let producer = Thread {
        while producing.isOn { try? tracer.benchFill(records: 4096) }
        producing.finished.signal()
    }
    drain.start()
    let t0 = nowSeconds()
    producer.start()
    usleep(UInt32(seconds * 1e6))
    producing.stop()
    producing.finished.wait()
    drain.stop()
    let elapsed = nowSeconds() - t0
    return (Double(box.records) / elapsed, (try? tracer.counters().lost) ?? 0)
}

final class LiveFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var on = true
    let finished = DispatchSemaphore(value: 0)
    var isOn: Bool { lock.withLock { on } }
    func stop() { lock.withLock { on = false } }
}

/// What the drain thread's body does in a trace: decode and histogram.
final class LiveCount: @unchecked Sendable {
    private var aggregate = TraceAggregate()
    private(set) var records = 0
    var writer: RecordingWriter?
    func add(_ batch: UnsafeRawBufferPointer) {
        // as TraceSession: the batch decoded once, into the aggregate and the recording
        if let columns = try? aggregate.add(batch: batch) { writer?.append(columns) }
        records += batch.count / RecordLayout.size
    }
}

/// `--overhead-only`: just the traffic overhead of tracing (throughput and latency,
/// traced and hooks only, against untraced), for quick before/after checks.
let overheadOnly = args.contains("--overhead-only")
/// `--discovery-only`: just the discovery figures (`Discovery.topology()` and `hoptrace list`).
let discoveryOnly = args.contains("--discovery-only")
/// `--serve-only`: just the agent's figures (attach, hot-plug, memory, scrape, idle CPU).
let serveOnly = args.contains("--serve-only")
/// `--top-only`: just what `hoptrace top` costs itself (TopBench.swift).
let topOnly = args.contains("--top-only")
if topOnly || (!overheadOnly && !discoveryOnly && !pinnedOnly && !serveOnly && !args.contains("--consumer-only")) {
    say("top: hoptrace top full screen under tmux, 60 veth pairs, 20 talking")
    results["top"] = try topFigures(pairs: 60, talkers: 20, seconds: 20, hoptrace: hoptraceBinary)
    if topOnly {
        print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        exit(0)
    }
}
if !overheadOnly && !discoveryOnly && !pinnedOnly && !serveOnly {
    say("consumer: Swift drain+decode+histograms vs minimal C libbpf consumer, \(repeats) rounds of 60000 records")
    let swift = try swiftConsumerRate(rounds: repeats, perRound: 60_000)
    var consumer: [String: Any] = ["swift_records_per_second": swift.rate.rounded(),
                                   "swift_aggregate_only_ns_per_record": (try aggregateOnlyNsPerRecord(rounds: repeats) * 10).rounded() / 10,
                                   "swift_ns_per_record": (swift.perRecordNs * 10).rounded() / 10,
                                   "ring_bytes_per_record": RecordLayout.size + 8]
    if let out = try? Command.run([cConsumer, String(repeats), "60000"]), let c = Double(out.trimmingCharacters(in: .whitespacesAndNewlines)) {
        consumer["c_records_per_second"] = c.rounded()
        consumer["swift_vs_c"] = (swift.rate / c * 1000).rounded() / 1000
    } else {
        say("no C consumer at \(cConsumer): build it with 'make bench'")
    }
    say("consumer, live: producer flat out on one CPU, consumer on the other, \(repeats) runs of 2 s")
    var liveSwift: [Double] = [], liveC: [Double] = [], liveLost: UInt64 = 0
    for _ in 0..<repeats {
        let s = try swiftLiveRate(seconds: 2)
        liveSwift.append(s.rate)
        liveLost += s.lost
        if let out = try? Command.run([cConsumer, "live", "2"]), let c = Double(out.trimmingCharacters(in: .whitespacesAndNewlines)) {
            liveC.append(c)
        }
    }
    say("consumer, live, recording to a file as well, \(repeats) runs of 2 s")
    var liveRecording: [Double] = [], liveRecordingLost: UInt64 = 0
    for _ in 0..<repeats {
        let path = NSTemporaryDirectory() + "hoptrace-bench-live-\(getpid()).hoptrace"
        defer { unlink(path) }
        let s = try swiftLiveRate(seconds: 2, recordTo: path)
        liveRecording.append(s.rate)
        liveRecordingLost += s.lost
    }
    consumer["live_recording_records_per_second"] = median(liveRecording).rounded()
    consumer["live_recording_lost_records"] = liveRecordingLost
    consumer["live_swift_records_per_second"] = median(liveSwift).rounded()
    consumer["live_swift_lost_records"] = liveLost
    if !liveC.isEmpty {
        consumer["live_c_records_per_second"] = median(liveC).rounded()
        consumer["live_swift_vs_c"] = (median(liveSwift) / median(liveC) * 1000).rounded() / 1000
    }
    results["consumer"] = consumer
    if args.contains("--consumer-only") {
        print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        exit(0)
    }
}

// MARK: discovery: a node with 100 and 500 veth pairs

if !overheadOnly && !pinnedOnly && !serveOnly {
    results["discovery"] = try discoveryBench(runs: 3, hoptrace: hoptraceBinary)
    if discoveryOnly {
        print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        exit(0)
    }
}

// MARK: the agent on 500 veth pairs

if serveOnly || (!overheadOnly && !pinnedOnly && !discoveryOnly) {
    say("serve: hoptrace serve on 500 veth pairs")
    var serve = try serveFigures(pairs: 500, hoptrace: hoptraceBinary)
    serve["scrape_1000_hops"] = try scrapeFigures(hops: 1000)
    results["serve"] = serve
    if serveOnly {
        print(String(decoding: try JSONSerialization.data(withJSONObject: results, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
        exit(0)
    }
}

// MARK: traffic overhead in a lab

let lab = try Lab(containers: 2)
defer { lab.teardown() }
Cleanup.shared.atInterrupt { lab.teardown() }
let a = lab.containers[0], b = lab.containers[1]

// MARK: CPU-bound per-packet cost, sender + softirq + receiver on one CPU

// four minutes: not part of the quick --overhead-only checks
if !overheadOnly {
    do {
        results["pinned"] = try PinnedBench(lab: lab, tools: tools, hoptrace: hoptraceBinary, rounds: rounds, seconds: pinnedSeconds).results()
    } catch {
        say("pinned benchmark failed: \(error)")
    }
}
if pinnedOnly {
    lab.teardown() // exit() runs no defer
    try writeResults(results)
    exit(results["pinned"] == nil ? 1 : 0)
}

let names = Discovery.topology().names

func background(_ netns: String, _ argv: [String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["ip", "netns", "exec", netns] + argv
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    Cleanup.shared.track(p)
    return p
}

func iperf() throws -> Double {
    let server = try background(b.netns, ["iperf3", "-s", "-1", "-B", b.address, "-p", "5201"])
    usleep(300_000)
    let out = try Command.run(["ip", "netns", "exec", a.netns, "iperf3", "-c", b.address, "-p", "5201", "-t", String(Int(seconds)), "-J"])
    server.waitUntilExit()
    let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
    let end = json?["end"] as? [String: Any], recv = end?["sum_received"] as? [String: Any]
    return (recv?["bits_per_second"] as? Double ?? 0) / 1e9
}

let sockperfServer = try background(b.netns, ["sockperf", "server", "-i", b.address, "-p", "11111"])
defer { sockperfServer.terminate() }
usleep(300_000)
func sockperfP50() throws -> Double {
    let out = try Command.run(["ip", "netns", "exec", a.netns, "sockperf", "ping-pong", "-i", b.address, "-p", "11111", "-t", String(Int(seconds))])
    for line in out.split(separator: "\n") where line.contains("percentile 50.000") {
        return Double(line.split(separator: "=").last!.trimmingCharacters(in: .whitespaces)) ?? .nan
    }
    return .nan
}

/// Runs `body` traced by hoptrace; returns its result and the BPF cost figures.
/// `hooksOnly`: every program attached but returning at once (the hooks' own cost).
func traced<T>(stats: Bool = false, softirq: Bool = true, hooksOnly: Bool = false,
               _ body: () throws -> T) throws -> (T, Report, [Tracer.ProgramStats]) {
    var options = TracerOptions()
    options.runTimeStats = stats
    options.softirq = softirq
    options.hooksOnly = hooksOnly
    let session = try TraceSession(devices: lab.devices, options: options, names: names)
    session.start()
    // the kernel's own work after attaching (and after the previous session's
    // teardown: programs, maps and rings freed in deferred work) must not land in
    // the measurement
    usleep(500_000)
    let value = try body()
    let stats = session.programStats()
    let report = try session.stop()
    return (value, report, stats)
}

say("throughput: iperf3 TCP a->b, untraced vs traced vs hooks only, \(repeats) rounds of \(Int(seconds)) s (BPF run-time stats off)")
var plain: [Double] = [], withTrace: [Double] = [], ratios: [Double] = [], hooksRatios: [Double] = []
var lostBulk: UInt64 = 0
/// The three variants of the iperf3 and sockperf rounds, in rotating order.
func rotated<T>(_ round: Int, untraced: @escaping () throws -> T, traced: @escaping () throws -> T,
                hooksOnly: @escaping () throws -> T) throws -> (untraced: T, traced: T, hooksOnly: T) {
    let r = try rotated(round, [untraced, traced, hooksOnly])
    return (r[0], r[1], r[2])
}
for round in 0..<repeats {
    var report: Report?
    let r = try rotated(round, untraced: { try iperf() }, traced: {
        let (t, rep, _) = try traced { try iperf() }
        report = rep
        return t
    }, hooksOnly: { try traced(hooksOnly: true) { try iperf() }.0 })
    plain.append(r.untraced); withTrace.append(r.traced)
    ratios.append(r.traced / r.untraced); hooksRatios.append(r.hooksOnly / r.untraced)
    lostBulk += report?.lostEvents ?? 0
}
/// CPU time (all CPUs, from /proc/stat, in seconds) the node spends during `body`.
func cpuSeconds(_ body: () throws -> Void) throws -> Double {
    func busy() throws -> Double {
        let stat = try String(contentsOfFile: "/proc/stat", encoding: .utf8)
        let f = stat.split(separator: "\n").first { $0.hasPrefix("cpu ") }!.split(separator: " ").dropFirst().compactMap { Double($0) }
        return (f[0] + f[1] + f[2] + f[5] + f[6]) / 100 // user nice system irq softirq, USER_HZ
    }
    let before = try busy()
    try body()
    return try busy() - before
}

/// iperf3 at a fixed rate (below what either run can reach): CPU seconds per Gbit
/// moved. Steadier than peak throughput on a shared VM, and what overhead costs.
func cpuPerGbit(rate: String) throws -> Double {
    var gbit = 0.0
    let cpu = try cpuSeconds {
        let server = try background(b.netns, ["iperf3", "-s", "-1", "-B", b.address, "-p", "5202"])
        usleep(300_000)
        let out = try Command.run(["ip", "netns", "exec", a.netns, "iperf3", "-c", b.address, "-p", "5202", "-t",
                                   String(Int(seconds)), "-b", rate, "-J"])
        server.waitUntilExit()
        let json = try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any]
        let end = json?["end"] as? [String: Any], recv = end?["sum_received"] as? [String: Any]
        gbit = (recv?["bytes"] as? Double ?? 0) * 8 / 1e9
    }
    return gbit > 0 ? cpu / gbit : .nan
}

say("cpu cost: iperf3 at 3 Gbit/s, CPU seconds per Gbit, untraced vs traced vs hooks only, \(repeats) rounds")
var cpuRatios: [Double] = [], cpuHooksRatios: [Double] = [], cpuPlain: [Double] = []
for round in 0..<repeats {
    let r = try rotated(round, untraced: { try cpuPerGbit(rate: "3G") }, traced: { try traced { try cpuPerGbit(rate: "3G") }.0 },
                        hooksOnly: { try traced(hooksOnly: true) { try cpuPerGbit(rate: "3G") }.0 })
    cpuPlain.append(r.untraced)
    cpuRatios.append(r.traced / r.untraced)
    cpuHooksRatios.append(r.hooksOnly / r.untraced)
}

say("softirq tracing: iperf3 traced with softirq on vs off, \(repeats) pairs")
var softirqRatios: [Double] = []
for _ in 0..<(overheadOnly ? 0 : repeats) {
    let (off, _, _) = try traced(softirq: false) { try iperf() }
    let (on, _, _) = try traced(softirq: true) { try iperf() }
    softirqRatios.append(on / off)
}
say("bpf_stats: ns per program run and per packet, \(repeats) traced iperf3 runs with run-time stats on")
var bpfPerPacketBulk: [Double] = [], statsRatios: [Double] = []
var perProgram: [String: (runs: UInt64, ns: UInt64)] = [:]
for _ in 0..<(overheadOnly ? 0 : repeats) {
    let u = try iperf()
    let (t, report, stats) = try traced(stats: true) { try iperf() }
    statsRatios.append(t / u)
    if let n = report.tracerCost?.bpfNsPerPacket { bpfPerPacketBulk.append(n) }
    for s in stats { perProgram[s.name, default: (0, 0)].runs += s.runs; perProgram[s.name, default: (0, 0)].ns += s.runTimeNs }
}
results["throughput"] = ["untraced_gbit_s": median(plain), "traced_gbit_s": median(withTrace),
                         "traced_vs_untraced": (median(ratios) * 1000).rounded() / 1000, "lost_records": lostBulk,
                         "hooks_only_vs_untraced": (median(hooksRatios) * 1000).rounded() / 1000,
                         "bpf_ns_per_packet_with_stats": median(bpfPerPacketBulk).rounded(),
                         "traced_with_stats_vs_untraced": (median(statsRatios) * 1000).rounded() / 1000,
                         "softirq_on_vs_off": (median(softirqRatios) * 1000).rounded() / 1000,
                         "cpu_s_per_gbit_untraced_at_3g": (median(cpuPlain) * 1000).rounded() / 1000,
                         "cpu_per_gbit_traced_vs_untraced_at_3g": (median(cpuRatios) * 1000).rounded() / 1000,
                         "cpu_per_gbit_hooks_only_vs_untraced_at_3g": (median(cpuHooksRatios) * 1000).rounded() / 1000]
if overheadOnly {
    say("throughput: traced \(median(ratios)), hooks only \(median(hooksRatios)) of untraced \(median(plain)) Gbit/s")
    say("cpu per Gbit at 3 Gbit/s: traced \(median(cpuRatios)), hooks only \(median(cpuHooksRatios)) of untraced")
}
results["bpf_ns_per_run"] = Dictionary(uniqueKeysWithValues: perProgram.filter { $0.value.runs > 0 }
    .map { ($0.key, (Double($0.value.ns) / Double($0.value.runs)).rounded()) })

say("latency: sockperf UDP ping-pong a->b p50, untraced vs traced vs hooks only, \(repeats) rounds (run-time stats off)")
var p50Plain: [Double] = [], p50Traced: [Double] = [], p50Delta: [Double] = [], p50HooksDelta: [Double] = []
var bpfPerPacketRR: [Double] = []
for round in 0..<repeats {
    let r = try rotated(round, untraced: { try sockperfP50() }, traced: { try traced { try sockperfP50() }.0 },
                        hooksOnly: { try traced(hooksOnly: true) { try sockperfP50() }.0 })
    p50Plain.append(r.untraced); p50Traced.append(r.traced)
    p50Delta.append(r.traced - r.untraced); p50HooksDelta.append(r.hooksOnly - r.untraced)
}
for _ in 0..<(overheadOnly ? 0 : repeats) {
    let (_, report, _) = try traced(stats: true) { try sockperfP50() }
    if let n = report.tracerCost?.bpfNsPerPacket { bpfPerPacketRR.append(n) }
}
if overheadOnly {
    say("latency p50: untraced \(median(p50Plain)) us, traced +\(median(p50Delta)) us, hooks only +\(median(p50HooksDelta)) us")
    sockperfServer.terminate() // exit() runs no defer
    lab.teardown()
    exit(0)
}
results["latency"] = ["untraced_p50_us": median(p50Plain), "traced_p50_us": median(p50Traced),
                      "traced_minus_untraced_p50_us": (median(p50Delta) * 100).rounded() / 100,
                      "hooks_only_minus_untraced_p50_us": (median(p50HooksDelta) * 100).rounded() / 100,
                      "bpf_ns_per_packet_with_stats": median(bpfPerPacketRR).rounded()]

// MARK: recordings: bytes per hop record vs tcpdump, read rate, recording at full rate

say("recording: demo traffic recorded by hoptrace (all lab veths) and by tcpdump -s 96 -w (a's eth0)")
do {
    let pcap = NSTemporaryDirectory() + "hoptrace-bench-\(getpid()).pcap"
    let file = NSTemporaryDirectory() + "hoptrace-bench-\(getpid())-demo.hoptrace"
    defer { unlink(pcap); unlink(file) }
    let dump = try background(a.netns, ["tcpdump", "-i", "eth0", "-s", "96", "-U", "-w", pcap])
    usleep(500_000)
    let meta = RecordingMetadata(toolVersion: "bench", host: "bench", kernel: "", startUnixNs: 0, startMonotonicNs: 0,
                                 windowNs: 1_000_000_000, sampling: Sampling(), devices: lab.devices.map(\.label),
                                 softirq: true, names: names)
    let writer = try RecordingWriter(path: file, metadata: meta, force: true)
    let session = try TraceSession(devices: lab.devices, names: names, recording: .file(writer))
    session.start()
    _ = try Traffic.tcpRequestResponse(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 7101, requests: 5000)
    _ = try Traffic.tcpBulk(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 7102, seconds: 2)
    _ = try Traffic.udp(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 7103, count: 5000, intervalUs: 50)
    let report = try session.stop()
    usleep(300_000)
    dump.interrupt()
    dump.waitUntilExit()
    let pcapBytes = (try? FileManager.default.attributesOfItem(atPath: pcap)[.size] as? UInt64) ?? 0
    let packets = ((try? Command.run(["tcpdump", "-r", pcap, "-n", "-q"])) ?? "").split(separator: "\n").count
    var rec: [String: Any] = [
        "demo_hop_records": writer.recordsWritten,
        "demo_bytes_per_hop_record": (Double(writer.bytesWritten) / Double(max(1, writer.recordsWritten)) * 100).rounded() / 100,
        "demo_lost_records": report.lostEvents,
        "tcpdump_packets": packets,
        "tcpdump_bytes_per_packet": packets > 0 ? (Double(pcapBytes) / Double(packets) * 10).rounded() / 10 : 0,
    ]
    let rates = try recordingReadRates(count: 2_000_000)
    rec["read_decode_records_per_second"] = rates.decode.rounded()
    rec["read_report_records_per_second"] = rates.report.rounded()
    rec["read_report_one_thread_records_per_second"] = rates.reportOneThread.rounded()
    results["recording"] = rec
} catch {
    say("recording benchmark failed: \(error)")
}

// MARK: the peer: the same per-hop measurement as a bpftrace script

if (try? Command.run(["which", "bpftrace"])) != nil {
    say("peer: iperf3 under bpftrace (bench/peer.bt), \(repeats) runs")
    var peerRatios: [Double] = []
    for _ in 0..<repeats {
        let u = try iperf()
        guard let bt = try startBpftrace("bench/peer.bt") else { say("bpftrace did not start"); break }
        usleep(500_000)
        let t = try iperf()
        bt.stop()
        peerRatios.append(t / u)
    }
    var peer: [String: Any] = [:]
    if !peerRatios.isEmpty { peer["traced_vs_untraced"] = (median(peerRatios) * 1000).rounded() / 1000 }

    // the softirq peer: ns per event of bpftrace's softirq programs vs ours, both
    // measured by bpf_stats under the same iperf3 load
    say("peer: softirq programs, bpftrace (bench/peer-softirq.bt) vs hoptrace, ns per event, \(repeats) runs")
    let stats = try Tracer()
    try stats.enableRunTimeStats()
    var peerNs: [Double] = []
    for _ in 0..<repeats {
        guard let bt = try startBpftrace("bench/peer-softirq.bt") else { say("bpftrace did not start"); break }
        let before = try bpftraceProgramTotals()
        _ = try iperf()
        let after = try bpftraceProgramTotals()
        bt.stop()
        if after.runs > before.runs { peerNs.append(Double(after.ns - before.ns) / Double(after.runs - before.runs)) }
    }
    stats.close()
    let ours = perProgram.filter { ["ht_softirq_raise", "ht_softirq_entry", "ht_softirq_exit"].contains($0.key) }
    let ourRuns = ours.values.reduce(UInt64(0)) { $0 + $1.runs }, ourNs = ours.values.reduce(UInt64(0)) { $0 + $1.ns }
    if !peerNs.isEmpty, ourRuns > 0 {
        let mine = Double(ourNs) / Double(ourRuns)
        peer["softirq_bpftrace_ns_per_event"] = median(peerNs).rounded()
        peer["softirq_hoptrace_ns_per_event"] = mine.rounded()
        peer["softirq_hoptrace_vs_bpftrace"] = (mine / median(peerNs) * 1000).rounded() / 1000
    }
    results["peer_bpftrace"] = peer
}

// MARK: report

try writeResults(results)
