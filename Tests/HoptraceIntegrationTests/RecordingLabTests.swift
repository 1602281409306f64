import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceRecording
import HoptraceTracer
import XCTest

/// Recordings of real traces: round trip, crash and full-disk safety, compare.
final class RecordingLabTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRootAndBPF()
        Lab.sweepOrphans()
    }

    func metadata(_ lab: Lab, names: NameTable, windowNs: UInt64 = 1_000_000_000) -> RecordingMetadata {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return RecordingMetadata(toolVersion: "test", host: "lab", kernel: "k",
                                 startUnixNs: UInt64(Date().timeIntervalSince1970 * 1e9),
                                 startMonotonicNs: UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec), windowNs: windowNs,
                                 sampling: Sampling(), devices: lab.devices.map(\.label), softirq: true, names: names)
    }

    /// Record -> report gives the same numbers as the live trace of the same run.
    func testReportFromRecordingEqualsLiveReport() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0], b = lab.containers[1]
        let names = Discovery.topology().names
        let path = NSTemporaryDirectory() + "hoptrace-lab-\(getpid()).hoptrace"
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, metadata: metadata(lab, names: names))
        let session = try TraceSession(devices: lab.devices, names: names, topFlows: .max, recording: .file(writer))
        session.start()
        _ = try Traffic.udp(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 9700, count: 1000, intervalUs: 50)
        _ = try Traffic.tcpRequestResponse(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 9701, requests: 500)
        let live = try session.stop()
        let recorded = try RecordedTrace(path: path)
        XCTAssertNil(recorded.contents.cutShort)
        XCTAssertEqual(recorded.contents.records, live.records)
        let fromFile = recorded.report(topFlows: .max)
        XCTAssertEqual(fromFile.hops.count, live.hops.count)
        for h in live.hops {
            let f = try XCTUnwrap(fromFile.hops.first { $0.from == h.from && $0.to == h.to })
            XCTAssertEqual(f.packets, h.packets)
            XCTAssertEqual(f.total, h.total)
            XCTAssertEqual(f.segments, h.segments)
        }
        XCTAssertEqual(fromFile.flows.map(\.packets).sorted(), live.flows.map(\.packets).sorted())
        let bytesPerRecord = Double(writer.bytesWritten) / Double(max(1, writer.recordsWritten))
        print("recording: \(writer.recordsWritten) records, \(String(format: "%.2f", bytesPerRecord)) bytes per record")
    }

    /// A full disk (a 256 KiB tmpfs) stops the recording with an error, and the file
    /// stays readable up to its last complete chunk.
    func testFullDiskLeavesAReadableFile() throws {
        let dir = NSTemporaryDirectory() + "hoptrace-enospc-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try Command.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir])
        defer {
            _ = try? Command.run(["umount", dir])
            try? FileManager.default.removeItem(atPath: dir)
        }
        let path = dir + "/full.hoptrace"
        let writer = try RecordingWriter(path: path, metadata: RecordingMetadata(
            toolVersion: "test", host: "h", kernel: "k", startUnixNs: 0, startMonotonicNs: 0, windowNs: 1_000_000_000,
            sampling: Sampling(), devices: [], softirq: false, names: NameTable()))
        var rng = SystemRandomNumberGenerator()
        var n: UInt64 = 0
        while writer.error == nil && n < 5_000_000 {
            // random latencies: barely compressible, so the disk fills quickly
            writer.append(HopRecord(timestampNs: n * 1000, qdiscNs: UInt32.random(in: 0...UInt32.max, using: &rng),
                                    vethNs: UInt32.random(in: 0...1_000_000, using: &rng), from: Endpoint(netns: 1, ifindex: 2),
                                    to: Endpoint(netns: 3, ifindex: 4), flags: [.firstHop],
                                    flow: FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                                                  sourcePort: UInt16(n % 60000), destinationPort: 80, proto: 6, family: 4)))
            n += 1
            if n % 10_000 == 0 { writer.flush() }
        }
        XCTAssertNotNil(writer.error, "the disk should have filled")
        XCTAssertTrue(writer.error!.description.contains("No space left"), writer.error!.description)
        XCTAssertThrowsError(try writer.finish(RecordingEnd(status: RecordingStatus(monotonicNs: 0, counters: TracerCounters(),
                                                                                    softirqRunNs: []),
                                                            durationSeconds: 1, softirq: .disabled)))
        let contents = try RecordingReader.read(path: path) { _ in }
        XCTAssertNotNil(contents.cutShort)
        XCTAssertGreaterThanOrEqual(contents.records, 10_000, "complete chunks before the disk filled are readable")
    }

    /// kill -9 during `hoptrace record`: `report` reads what was written and says the
    /// recording was cut short; nothing stays attached.
    func testKilledRecorderLeavesAReadableRecording() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0], b = lab.containers[1]
        let path = NSTemporaryDirectory() + "hoptrace-killed-\(getpid()).hoptrace"
        defer { unlink(path) }
        let p = try startTracing(["record", "-o", path, "--netns", a.netns, "--iface", "eth0", "--duration", "60s", "--window", "200ms"])
        _ = try Traffic.udp(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 9800, count: 2000, intervalUs: 200)
        usleep(500_000)
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        let r = try runHoptrace(["report", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("cut short"), r.stderr)
        XCTAssertTrue(r.stdout.contains("CUT SHORT"))
        let contents = try RecordingReader.read(path: path) { _ in }
        XCTAssertGreaterThan(contents.records, 1000, "records up to the last window before the kill")
        var left = try loadedHoptracePrograms()
        for _ in 0..<20 where !left.isEmpty { usleep(100_000); left = try loadedHoptracePrograms() }
        XCTAssertEqual(left, [])
    }

    /// The flight recorder writes on a drop of the chosen reason and on SIGUSR1, and
    /// `report` lists the incidents.
    func testFlightRecorderTriggers() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0], b = lab.containers[1]
        let path = NSTemporaryDirectory() + "hoptrace-flight-\(getpid()).hoptrace"
        defer { unlink(path) }
        let p = try startTracing(["record", "-o", path, "--netns", a.netns, "--iface", "eth0", "--duration", "60s", "--window", "200ms",
                                  "--flight-recorder", "1s", "--after", "400ms", "--cooldown", "0s", "--trigger", "drop:NO_SOCKET"])
        _ = try Traffic.udp(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address, port: 9810, count: 300, intervalUs: 200)
        try Traffic.sendDatagrams(client: a.netnsPath, to: b.address, port: 9811, count: 1) // closed port: NO_SOCKET
        usleep(1_500_000)
        kill(p.processIdentifier, SIGUSR1)
        usleep(1_500_000)
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0)
        let r = try runHoptrace(["report", path])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("INCIDENTS"), r.stdout)
        XCTAssertTrue(r.stdout.contains("drop NO_SOCKET"), r.stdout)
        XCTAssertTrue(r.stdout.contains("SIGUSR1"), r.stdout)
        let contents = try RecordingReader.read(path: path) { _ in }
        XCTAssertGreaterThan(contents.records, 100, "the buffered second before the drop was written")
        XCTAssertNil(contents.cutShort)
    }

    /// Bad input to the recording commands: one line, a non-zero exit.
    func testRecordingCommandsRejectBadInput() throws {
        let empty = NSTemporaryDirectory() + "hoptrace-empty-\(getpid())"
        let foreign = NSTemporaryDirectory() + "hoptrace-foreign-\(getpid())"
        defer { unlink(empty); unlink(foreign) }
        XCTAssertTrue(FileManager.default.createFile(atPath: empty, contents: Data()))
        XCTAssertTrue(FileManager.default.createFile(atPath: foreign, contents: Data("GIF89a not a recording".utf8)))
        let cases: [([String], Int32, String)] = [
            (["report", empty], 1, "not a hoptrace recording (empty file)"),
            (["report", foreign], 1, "no HOPTRACE header"),
            (["report", "/nonexistent.hoptrace"], 1, "cannot open"),
            (["compare", foreign, empty], 2, "not a hoptrace recording"),
            (["compare", empty, empty, "--fail-if-slower", "ten"], 64, "bad --fail-if-slower"),
            (["report", empty, "--json", "--html", "/tmp/ht-x.html"], 64, "--json and --html: choose one"),
            (["compare", empty, empty, "--html", foreign], 64, "exists; use --force"),
            (["export", empty, "--format", "xml", "-o", "/tmp/x"], 64, "bad --format 'xml'"),
            (["record", "-o", foreign, "--all-veth"], 64, "exists; use --force"),
            (["record", "-o", "/tmp/ht-x", "--all-veth", "--trigger", "p99>1ms"], 64, "--trigger needs --flight-recorder"),
            (["record", "-o", "/tmp/ht-x", "--all-veth", "--flight-recorder", "5s", "--trigger", "slow"], 64, "bad --trigger 'slow'"),
        ]
        for (args, status, expect) in cases {
            let r = try runHoptrace(args)
            XCTAssertEqual(r.status, status, "\(args): \(r.stderr)")
            XCTAssertTrue(r.stderr.contains(expect), "\(args): \(r.stderr)")
        }
    }

    /// A lab run with a TBF shaper against one without: the shaped hop is slower,
    /// `--fail-if-slower` says so in the exit status.
    func testCompareShapedAgainstUnshaped() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0], b = lab.containers[1]
        let names = Discovery.topology().names
        func record(_ path: String) throws {
            let writer = try RecordingWriter(path: path, metadata: metadata(lab, names: names, windowNs: 250_000_000))
            let session = try TraceSession(devices: lab.devices, names: names, recording: .file(writer))
            session.start()
            // bursts of 20 datagrams every 10 ms for 3 s: 12 windows
            for _ in 0..<300 {
                try Traffic.sendDatagrams(client: a.netnsPath, to: b.address, port: 9900, count: 20, size: 200)
                usleep(10_000)
            }
            _ = try session.stop()
        }
        let before = NSTemporaryDirectory() + "hoptrace-before-\(getpid()).hoptrace"
        let after = NSTemporaryDirectory() + "hoptrace-after-\(getpid()).hoptrace"
        defer { unlink(before); unlink(after) }
        try record(before)
        try lab.setQdisc(netns: lab.hub, device: b.hubDevice, ["tbf", "rate", "5mbit", "burst", "2kb", "latency", "100ms"])
        try record(after)
        let c = Comparison(before: try RecordedTrace(path: before).comparisonRun, after: try RecordedTrace(path: after).comparisonRun)
        let hop = c.entries.filter { $0.hop.hasPrefix("\(lab.hub)/\(b.hubDevice) -> ") }
        // the veth had no queue before (no qdisc segment); the shaper's queue is new
        let qdisc = try XCTUnwrap(hop.first { $0.segment == "qdisc" }, c.text())
        XCTAssertEqual(qdisc.verdict, .onlyAfter, c.text())
        XCTAssertGreaterThan(qdisc.afterP99Ns, 100_000, c.text())
        XCTAssertEqual(hop.first { $0.segment == "total" }?.verdict, .slower, c.text())
        // the other hops' queues did not change by anything like the shaper's delay
        for e in c.entries where !e.hop.hasPrefix("\(lab.hub)/\(b.hubDevice) -> ") && e.segment == "qdisc" {
            XCTAssertLessThan(e.afterP99Ns, 1_000_000, "\(e.hop) qdisc\n\(c.text())")
        }
        print(c.text())
        let r = try runHoptrace(["compare", before, after, "--fail-if-slower", "50%"])
        XCTAssertEqual(r.status, 1, r.stdout + r.stderr)
        XCTAssertTrue(r.stderr.contains("got slower"), r.stderr)

        // the same as pages: compare's keeps its exit status; a page that cannot be
        // written exits 2, not 1 (slower), and leaves nothing
        let page = NSTemporaryDirectory() + "hoptrace-compare-\(getpid()).html"
        let reportPage = NSTemporaryDirectory() + "hoptrace-report-\(getpid()).html"
        defer { unlink(page); unlink(reportPage) }
        let h = try runHoptrace(["compare", before, after, "--fail-if-slower", "50%", "--html", page])
        XCTAssertEqual(h.status, 1, h.stderr)
        XCTAssertTrue(h.stdout.isEmpty, "the page instead of the text: \(h.stdout)")
        XCTAssertTrue(h.stderr.contains("wrote \(page)"), h.stderr)
        let html = try String(contentsOfFile: page, encoding: .utf8)
        XCTAssertTrue(html.contains("data-hop=\"\(lab.hub)/\(b.hubDevice) -&gt; "), "the shaped hop's charts")
        XCTAssertTrue(html.contains("class=\"verdict slower\""))
        let unwritable = try runHoptrace(["compare", before, after, "--html", "/nonexistent-ht-dir/c.html"])
        XCTAssertEqual(unwritable.status, 2, unwritable.stderr)
        XCTAssertTrue(unwritable.stderr.contains("cannot write /nonexistent-ht-dir/c.html"), unwritable.stderr)
        let rp = try runHoptrace(["report", after, "--html", reportPage])
        XCTAssertEqual(rp.status, 0, rp.stderr)
        let report = try String(contentsOfFile: reportPage, encoding: .utf8)
        XCTAssertTrue(report.contains("class=\"chart distribution\"") && report.contains("class=\"chart timeline\""))
        XCTAssertEqual(try runHoptrace(["report", after, "--html", reportPage]).status, 64, "exists without --force")
        XCTAssertEqual(try runHoptrace(["report", after, "--html", reportPage, "--force"]).status, 0)
    }
}
