import Foundation
import XCTest

@testable import HoptraceCore
@testable import HoptraceRecording

final class FlightRecorderTests: XCTestCase {
    func record(window: Int, i: Int, latency: UInt32, drop: Bool = false) -> HopRecord {
        HopRecord(timestampNs: 1_000_000_000_000 + UInt64(window) * 1_000_000_000 + UInt64(i) * 1000, qdiscNs: latency,
                  dropReason: drop ? 3 : 0, from: Endpoint(netns: 1, ifindex: 2), to: Endpoint(netns: 3, ifindex: 4),
                  kind: drop ? .drop : .hop, flags: [.firstHop],
                  flow: FlowKey(source: IPAddress(bytes: [10, 0, 0, 1]), destination: IPAddress(bytes: [10, 0, 0, 2]),
                                sourcePort: UInt16(i % 100), destinationPort: 80, proto: 6, family: 4))
    }

    func status(_ w: Int) -> RecordingStatus {
        RecordingStatus(monotonicNs: 1_000_000_000_000 + UInt64(w + 1) * 1_000_000_000, counters: TracerCounters(),
                        softirqRunNs: [])
    }

    func testTriggersParse() {
        XCTAssertEqual(Trigger("p99>2ms"), .p99(above: 2_000_000))
        XCTAssertEqual(Trigger("max > 10ms"), .max(above: 10_000_000))
        XCTAssertEqual(Trigger("drop"), .drop(reason: nil))
        XCTAssertEqual(Trigger("drop:no_socket"), .drop(reason: "NO_SOCKET"))
        XCTAssertNil(Trigger("p99<2ms"))
        XCTAssertNil(Trigger("p99>fast"))
    }

    /// 30 windows, slow ones at 12 and 14 (inside the cooldown) and 25: two incidents,
    /// each with the kept windows before it and the windows after it, nothing else.
    func testWritesBufferedAndFollowingWindowsRateLimited() throws {
        let path = tempPath("flight")
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, metadata: metadata())
        let flight = FlightRecorder(writer: writer, triggers: [.p99(above: 2_000_000)], keepWindows: 3, afterWindows: 2,
                                    cooldownWindows: 5, reasons: DropReasons(names: [3: "NO_SOCKET"]))
        var fired: [Int] = []
        for w in 0..<30 {
            let slow = w == 12 || w == 14 || w == 25
            for i in 0..<200 { flight.append(record(window: w, i: i, latency: slow ? 5_000_000 : 10_000)) }
            if flight.closeWindow(status: status(w)) != nil { fired.append(w) }
        }
        try writer.finish(RecordingEnd(status: status(30), durationSeconds: 30, softirq: .disabled))
        XCTAssertEqual(fired, [12, 25])
        XCTAssertEqual(flight.incidents.count, 2)
        var windows = Set<Int>()
        let contents = try RecordingReader.read(path: path) { r in
            windows.insert(Int((r.timestampNs - 1_000_000_000_000) / 1_000_000_000))
        }
        // incident 1: windows 9...12 kept (3 before + the slow one), 13-14 after;
        // incident 2: 22...25, 26-27 after
        XCTAssertEqual(windows, Set([9, 10, 11, 12, 13, 14, 22, 23, 24, 25, 26, 27]))
        XCTAssertEqual(contents.statuses.compactMap(\.trigger).count, 2)
        XCTAssertTrue(contents.statuses.compactMap(\.trigger)[0].hasPrefix("p99>2.00ms"))
    }

    /// The agent's store: a file per incident, each a whole recording with its kept
    /// and after windows and an end; the oldest deleted once the directory is over
    /// its bound, never the incident being written.
    func testIncidentStoreWritesAFileEachAndDeletesTheOldest() throws {
        let dir = tempPath("incidents")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = try IncidentStore(directory: dir, keepBytes: 1 << 30) { metadata() }
        let flight = FlightRecorder(output: .store(store), triggers: [.p99(above: 2_000_000)], keepWindows: 2, afterWindows: 1,
                                    cooldownWindows: 0)
        for w in 0..<12 {
            let slow = w == 3 || w == 8
            for i in 0..<200 { flight.append(record(window: w, i: i, latency: slow ? 5_000_000 : 10_000)) }
            if w == 10 { flight.request("http") }
            flight.closeWindow(status: status(w))
        }
        flight.finish(status: status(12))
        XCTAssertNil(flight.storeError)
        let files = store.files()
        XCTAssertEqual(files.count, 3, "\(files)")
        XCTAssertTrue(files[0].name.contains("-p99-2.00ms"), "\(files)")
        XCTAssertTrue(files.contains { $0.name.hasSuffix("-http.hoptrace") }, "\(files)")
        var written: [[Int]] = []
        for f in files {
            let st = try FileManager.default.attributesOfItem(atPath: dir + "/" + f.name)
            XCTAssertEqual((st[.posixPermissions] as? Int) ?? 0, 0o600)
            var windows = Set<Int>()
            let contents = try RecordingReader.read(path: dir + "/" + f.name) { r in
                windows.insert(Int((r.timestampNs - 1_000_000_000_000) / 1_000_000_000))
            }
            XCTAssertNotNil(contents.end, "\(f.name) has no end")
            XCTAssertNil(contents.cutShort)
            written.append(windows.sorted())
        }
        // 2 kept and the firing window, 1 after; the request at 10 has only what came
        // since the last incident ended
        XCTAssertEqual(written, [[1, 2, 3, 4], [6, 7, 8, 9], [10, 11]])
        // over the bound: the oldest go, until the rest fit
        let small = try IncidentStore(directory: dir, keepBytes: files[2].bytes) { metadata() }
        let deleted = small.prune()
        XCTAssertEqual(deleted, [files[0].name, files[1].name])
        XCTAssertEqual(small.files().map(\.name), [files[2].name])
    }

    func testDropTriggerAndExplicitRequest() throws {
        let path = tempPath("flight-drop")
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, metadata: metadata())
        let flight = FlightRecorder(writer: writer, triggers: [.drop(reason: "NO_SOCKET")], keepWindows: 1, afterWindows: 0,
                                    cooldownWindows: 0, reasons: DropReasons(names: [3: "NO_SOCKET"]))
        for w in 0..<10 {
            for i in 0..<50 { flight.append(record(window: w, i: i, latency: 1000, drop: w == 4 && i == 7)) }
            if w == 7 { flight.request("SIGUSR1") }
            flight.closeWindow(status: status(w))
        }
        XCTAssertEqual(flight.incidents, ["drop NO_SOCKET", "SIGUSR1"])
    }

    /// Memory stays within the bound however many records arrive, the oldest go first.
    func testMemoryBound() throws {
        let path = tempPath("flight-bound")
        defer { unlink(path) }
        let flight = FlightRecorder(writer: try RecordingWriter(path: path, metadata: metadata()), triggers: [],
                                    keepWindows: 100, afterWindows: 0, cooldownWindows: 0, maxRecords: 5000)
        var peak = 0
        for w in 0..<20 {
            for i in 0..<1000 {
                flight.append(record(window: w, i: i, latency: 1000))
                peak = max(peak, flight.recordsInMemory)
            }
            flight.closeWindow(status: status(w))
        }
        XCTAssertLessThanOrEqual(peak, 5000)
        XCTAssertGreaterThan(flight.evicted, 0)
    }
}
