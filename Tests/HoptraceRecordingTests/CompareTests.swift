import Foundation
import HoptraceTestSupport
import XCTest

@testable import HoptraceCore
@testable import HoptraceRecording

/// The comparison's error rates on synthetic runs whose truth is known. Windows
/// carry their own noise (a per-window scale), as real runs do, which is why the
/// method resamples windows rather than packets.
final class CompareTests: XCTestCase {
    /// `windows` windows (a minute of 1 s windows) of `perWindow` latencies: log-normal around 20 us, each
    /// window scaled by its own factor, everything by `shift`.
    func run(_ rng: inout SplitMix, windows: Int = 60, perWindow: Int = 1000, shift: Double = 1) -> [Histogram] {
        (0..<windows).map { _ in
            var h = Histogram(precisionBits: WindowedAggregate.precisionBits)
            let windowScale = exp(0.05 * normal(&rng))
            for _ in 0..<perWindow {
                h.record(UInt64(20_000 * shift * windowScale * exp(0.6 * normal(&rng))))
            }
            return h
        }
    }

    func normal(_ rng: inout SplitMix) -> Double {
        let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-12), u2 = Double(rng.next() >> 11) / Double(1 << 53)
        return sqrt(-2 * log(u1)) * cos(2 * .pi * u2)
    }

    func verdicts(shift: Double, trials: Int, seed: UInt64) -> [Comparison.Verdict] {
        var data = SplitMix(state: seed), boot = SplitMix(state: seed ^ 0xabc)
        return (0..<trials).map { _ in
            let a = run(&data), b = run(&data, shift: shift)
            return Comparison.compare(hop: "h", segment: "total", a, b, resamples: 200, rng: &boot).verdict
        }
    }

    /// A/A: the same distribution twice is called changed in at most 5 % of 100 trials.
    func testSameDistributionRarelyFlagged() {
        let v = verdicts(shift: 1, trials: 100, seed: 11)
        let flagged = v.filter { $0 == .slower || $0 == .faster }.count
        print("A/A: flagged \(flagged) of 100")
        XCTAssertLessThanOrEqual(flagged, 5)
    }

    /// A 10 % shift of the p99 is detected, as slower, in at least 95 % of 100 trials.
    func testTenPercentShiftDetected() {
        let v = verdicts(shift: 1.10, trials: 100, seed: 12)
        let detected = v.filter { $0 == .slower }.count
        print("10% shift: detected \(detected) of 100")
        XCTAssertGreaterThanOrEqual(detected, 95)
        XCTAssertEqual(v.filter { $0 == .faster }.count, 0)
    }

    func testHopsMatchedByNamesAndMissingOnesExplained() throws {
        let pathA = tempPath("a"), pathB = tempPath("b")
        defer { unlink(pathA); unlink(pathB) }
        try writeRecording(syntheticRecords(windows: 5, perWindow: 800), to: pathA)
        // the after run lacks the hop from ns3
        try writeRecording(syntheticRecords(windows: 5, perWindow: 800, seed: 2).filter { $0.from.netns != 4026532003 }, to: pathB)
        let c = Comparison(before: try RecordedTrace(path: pathA).comparisonRun, after: try RecordedTrace(path: pathB).comparisonRun)
        XCTAssertEqual(c.entries.filter { $0.verdict == .onlyBefore }.map(\.hop), ["ns3/eth0 -> ns4/veth4"])
        XCTAssertTrue(c.notes.contains { $0.contains("appear in one recording only") })
        XCTAssertTrue(c.text().contains("ONLY IN BEFORE"))
        XCTAssertEqual(c.slower(byAtLeast: 10).count, 0, "same distribution")
    }

    /// The hdrlog export decodes with the PyPI `hdrhistogram` package (HdrHistogram's
    /// Python port) to the same counts and percentiles.
    func testHdrLogReadByHdrHistogramPython() throws {
        let check = "import hdrh.histogram"
        if (try? runPython(["-c", check])) == nil {
            try notRun("python3 with the 'hdrhistogram' package is needed (make deps installs it)")
        }
        var h = Histogram(precisionBits: 8)
        var rng = SplitMix(state: 5)
        for _ in 0..<10_000 { h.record(1_000 + rng.next() % 2_000_000) }
        let encoded = HdrLog.encode(h)
        let script = """
            import sys
            from hdrh.histogram import HdrHistogram
            h = HdrHistogram.decode(sys.argv[1])
            print(h.get_total_count(), h.get_value_at_percentile(50), h.get_value_at_percentile(99), h.get_max_value())
            """
        let out = try runPython(["-c", script, encoded]).split(separator: " ").compactMap { UInt64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        XCTAssertEqual(out.count, 4)
        XCTAssertEqual(out[0], h.count)
        for (got, q) in zip(out[1...2], [0.5, 0.99]) {
            XCTAssertEqual(Double(got), Double(h.value(atQuantile: q)), accuracy: Double(h.value(atQuantile: q)) * 0.01)
        }
        // and a whole interval log through the package's log reader
        let log = HdrLog.text(windows: [0: ["hop": h], 1: ["hop": h]], windowNs: 1_000_000_000, startUnixNs: 1_700_000_000_000_000_000)
        let path = tempPath("log.hlog")
        defer { unlink(path) }
        try log.write(toFile: path, atomically: true, encoding: .utf8)
        let reader = """
            import sys
            from hdrh.histogram import HdrHistogram
            from hdrh.log import HistogramLogReader
            r = HistogramLogReader(sys.argv[1], HdrHistogram(1, 1 << 62, 2))
            n = total = 0
            while True:
                h = r.get_next_interval_histogram()
                if h is None: break
                n += 1
                total += h.get_total_count()
            print(n, total)
            """
        XCTAssertEqual(try runPython(["-c", reader, path]).trimmingCharacters(in: .whitespacesAndNewlines), "2 \(2 * h.count)")
    }

    func runPython(_ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3"] + args
        let out = Pipe()
        p.standardOutput = out
        p.standardError = FileHandle.nullDevice
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw NSError(domain: "python", code: Int(p.terminationStatus)) }
        return String(decoding: data, as: UTF8.self)
    }

    /// A pod restarted between the runs (a rollout) has a new namespace and a new
    /// host-side veth: its hops are matched by the workload all the same (issue 11).
    func testRestartedPodIsComparedAsTheSamePod() {
        let flow = FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                           sourcePort: 1, destinationPort: 2, proto: 17, family: 4)
        let web = Workload(pod: Workload.Pod(namespace: "default", name: "web", uid: "u"))
        func run(podNetns: UInt32, hostVeth: UInt32, backlog: UInt32) -> Comparison.Run {
            var names = NameTable()
            names.netns = [1: "host", podNetns: "default/web"]
            let pod = Endpoint(netns: podNetns, ifindex: 2), host = Endpoint(netns: 1, ifindex: hostVeth)
            names.devices = [pod: "eth0", host: "veth\(hostVeth)"]
            names.workloads[podNetns] = web
            names.peers = [pod: host, host: pod]
            var w = WindowedAggregate(windowNs: 1_000_000_000, startNs: 0)
            var rng = SplitMix(state: UInt64(hostVeth))
            for i in 0..<20_000 {
                let jitter = UInt32(rng.next() % 2000)
                w.add(HopRecord(timestampNs: UInt64(i) * 1_000_000, qdiscNs: 1, backlogNs: backlog + jitter, from: pod, to: host,
                                flow: flow))
            }
            return Comparison.Run(windows: w, names: names, host: "node")
        }
        let c = Comparison(before: run(podNetns: 100, hostVeth: 5, backlog: 10_000),
                           after: run(podNetns: 200, hostVeth: 7, backlog: 30_000))
        let total = c.entries.filter { $0.segment == "total" }
        XCTAssertEqual(total.map(\.hop), ["default/web/eth0 -> host/veth→default/web"], c.text())
        XCTAssertEqual(total.first?.verdict, .slower, c.text())
        XCTAssertTrue(c.notes.isEmpty, "\(c.notes)")
    }
}
