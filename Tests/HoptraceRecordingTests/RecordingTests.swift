import Foundation
import XCTest

@testable import HoptraceCore
@testable import HoptraceRecording

/// Synthetic traces: `windows` seconds of records over 4 hops and `flows` flows.
func syntheticRecords(windows: Int, perWindow: Int, flows: Int = 50, seed: UInt64 = 1, start: UInt64 = 1_000_000_000_000) -> [HopRecord] {
    var rng = SplitMix(state: seed)
    var out: [HopRecord] = []
    for w in 0..<windows {
        for i in 0..<perWindow {
            let hop = UInt32(i & 3)
            let flowIndex = Int(rng.next() % UInt64(flows))
            let flow = FlowKey(source: IPAddress(bytes: [10, 0, 0, UInt8(flowIndex % 200)]), destination: IPAddress(bytes: [10, 0, 1, 2]),
                               sourcePort: UInt16(20000 + flowIndex), destinationPort: 80, proto: i % 7 == 0 ? 17 : 6, family: 4)
            let r = UInt32(truncatingIfNeeded: rng.next())
            let kind: HopRecord.Kind = i % 97 == 0 ? .drop : i % 11 == 0 ? .deliver : .hop
            out.append(HopRecord(
                timestampNs: start + UInt64(w) * 1_000_000_000 + UInt64(i) * (1_000_000_000 / UInt64(perWindow)) + UInt64(r % 1000),
                forwardNs: hop == 0 ? 0 : 2000 + r % 500, qdiscNs: kind == .hop ? 400 + r % 300 : 0,
                vethNs: kind == .hop ? 350 + (r >> 8) % 200 : 0, backlogNs: kind == .hop ? 800 + (r >> 4) % 3000 : 0,
                deliverNs: kind == .deliver ? 40_000 + r % 9000 : 0, dropReason: kind == .drop ? 3 : 0, length: 1514,
                from: Endpoint(netns: 4026532000 + hop, ifindex: 2), to: Endpoint(netns: 4026532001 + hop, ifindex: 3),
                gsoSegments: i % 5 == 0 ? 44 : 1, kind: kind, flags: hop == 0 ? [.firstHop] : [.forwarded], cpu: UInt16(i & 1),
                hopIndex: UInt16(hop), flow: flow))
        }
    }
    return out
}

func metadata(start: UInt64 = 1_000_000_000_000, windowNs: UInt64 = 1_000_000_000) -> RecordingMetadata {
    var names = NameTable()
    for i in 0..<5 {
        names.netns[4026532000 + UInt32(i)] = "ns\(i)"
        names.devices[Endpoint(netns: 4026532000 + UInt32(i), ifindex: 2)] = "eth0"
        names.devices[Endpoint(netns: 4026532000 + UInt32(i), ifindex: 3)] = "veth\(i)"
    }
    return RecordingMetadata(toolVersion: "test", host: "testhost", kernel: "6.18", startUnixNs: 1_700_000_000_000_000_000,
                             startMonotonicNs: start, windowNs: windowNs, sampling: Sampling(), devices: ["ns0/eth0"],
                             softirq: false, names: names)
}

/// The chunks of a recording's bytes, as their headers say: where each starts, its
/// type, and its payload (stored bytes decompressed from zstd).
func chunks(of bytes: [UInt8]) throws -> [(at: Int, type: UInt8, payload: [UInt8])] {
    var out: [(at: Int, type: UInt8, payload: [UInt8])] = []
    var at = RecordingFormat.fileHeaderBytes
    while at < bytes.count {
        var r = ByteReader(Array(bytes[at..<(at + RecordingFormat.chunkHeaderBytes)]))
        _ = try r.u32()
        let type = try r.u8()
        XCTAssertEqual(try r.u8(), RecordingFormat.Codec.zstd.rawValue)
        _ = try r.u16()
        let stored = Int(try r.u32()), raw = Int(try r.u32())
        let start = at + RecordingFormat.chunkHeaderBytes
        out.append((at, type, try Zstd.decompress(Array(bytes[start..<(start + stored)]), rawLength: raw)))
        at = start + stored
    }
    XCTAssertEqual(at, bytes.count)
    return out
}

func tempPath(_ name: String) -> String {
    NSTemporaryDirectory() + "hoptrace-test-\(getpid())-\(UUID().uuidString.prefix(8))-\(name)"
}

/// Writes `records` (with a status per window and an end chunk unless `end` is false).
@discardableResult
func writeRecording(_ records: [HopRecord], to path: String, end: Bool = true,
                    metadata m: RecordingMetadata = metadata()) throws -> RecordingWriter {
    let w = try RecordingWriter(path: path, metadata: m)
    var window = 0
    for r in records {
        let rw = Int((r.timestampNs - 1_000_000_000_000) / 1_000_000_000)
        if rw > window {
            window = rw
            w.write(status: RecordingStatus(monotonicNs: r.timestampNs, counters: TracerCounters(), softirqRunNs: [1, 2]))
        }
        w.append(r)
    }
    if end {
        try w.finish(RecordingEnd(status: RecordingStatus(monotonicNs: 0, counters: TracerCounters(), softirqRunNs: []),
                                  durationSeconds: 10, softirq: .disabled))
    } else {
        w.flush()
        w.sync()
    }
    return w
}

final class RecordingTests: XCTestCase {
    func testRoundTripGivesTheSameRecordsAndReport() throws {
        let records = syntheticRecords(windows: 10, perWindow: 5000)
        let path = tempPath("roundtrip")
        defer { unlink(path) }
        let writer = try writeRecording(records, to: path)
        var st = stat()
        XCTAssertEqual(stat(path, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "recordings are private")
        var read: [HopRecord] = []
        let contents = try RecordingReader.read(path: path) { read.append($0) }
        XCTAssertNil(contents.cutShort)
        XCTAssertEqual(contents.records, UInt64(records.count))
        // chunks keep records in time order; the set of records is the same
        XCTAssertEqual(read.sorted { $0.timestampNs < $1.timestampNs }, records.sorted { $0.timestampNs < $1.timestampNs })
        XCTAssertEqual(contents.metadata, metadata())
        XCTAssertEqual(contents.statuses.count, 9)
        XCTAssertNotNil(contents.end)
        // the report from the file equals the report of the same records live
        var live = TraceAggregate()
        records.forEach { live.add($0) }
        let fromFile = try RecordedTrace(path: path)
        let a = Report(aggregate: live, names: metadata().names, durationSeconds: 10, counters: TracerCounters(), sampling: Sampling())
        let b = Report(aggregate: fromFile.aggregate, names: metadata().names, durationSeconds: 10, counters: TracerCounters(), sampling: Sampling())
        XCTAssertEqual(a.json(), b.json())
        // read on any number of threads, the file gives the same report and timeline
        // as the records added one by one
        var windows = WindowedAggregate(windowNs: 1_000_000_000, startNs: 1_000_000_000_000)
        records.forEach { windows.add($0) }
        let timeline = Timeline(windows, names: metadata().names, statuses: contents.statuses)
        let json = JSONEncoder()
        json.outputFormatting = .sortedKeys
        for threads in [1, 2, 3] {
            let t = try RecordedTrace(path: path, threads: threads)
            let r = Report(aggregate: t.aggregate, names: metadata().names, durationSeconds: 10, counters: TracerCounters(), sampling: Sampling())
            XCTAssertEqual(r.json(), a.json(), "\(threads) threads")
            XCTAssertEqual(String(decoding: try json.encode(t.timeline), as: UTF8.self),
                           String(decoding: try json.encode(timeline), as: UTF8.self), "\(threads) threads")
            XCTAssertEqual(t.windows.drops, windows.drops)
        }
        print("bytes per record (synthetic, random latencies): \(Double(writer.bytesWritten) / Double(records.count))")
    }

    /// Batches appended as columns (a live trace's drain) make the same chunks, with
    /// the same records, as the records appended one by one.
    func testBatchesAppendedAsColumnsMakeTheSameChunks() throws {
        let records = syntheticRecords(windows: 4, perWindow: 30_000, flows: 300)
        let one = tempPath("one"), batched = tempPath("batched")
        defer { unlink(one); unlink(batched) }
        let a = try RecordingWriter(path: one, metadata: metadata()), b = try RecordingWriter(path: batched, metadata: metadata())
        // batches numbered as the kernel drain numbers them: one numbering across batches
        var numbering = RecordNumbering()
        for start in stride(from: 0, to: records.count, by: 7777) {
            let slice = records[start..<min(records.count, start + 7777)]
            slice.forEach { a.append($0) }
            var c = RecordColumns()
            for r in slice { numbering.append(r, to: &c) }
            numbering.finish(&c)
            b.append(c)
        }
        // and a batch numbered on its own
        let tail = syntheticRecords(windows: 1, perWindow: 500, seed: 9, start: 1_000_000_000_000 + 4_000_000_000)
        tail.forEach { a.append($0) }
        b.append(RecordColumns(tail))
        let end = RecordingEnd(status: RecordingStatus(monotonicNs: 0, counters: TracerCounters(), softirqRunNs: []),
                               durationSeconds: 5, softirq: .disabled)
        try a.finish(end)
        try b.finish(end)
        var fromOne: [HopRecord] = [], fromBatched: [HopRecord] = []
        let ca = try RecordingReader.read(path: one) { fromOne.append($0) }
        let cb = try RecordingReader.read(path: batched) { fromBatched.append($0) }
        XCTAssertEqual(ca.chunks, cb.chunks)
        XCTAssertEqual(fromBatched.count, records.count + tail.count)
        XCTAssertEqual(fromOne, fromBatched)
        // each chunk carries only the flows and hops its records use
        _ = try RecordingReader.readChunks(path: batched) { c in
            XCTAssertEqual(Set(c.flowIDs).count, c.flows.count)
            XCTAssertEqual(Set(c.hopIDs).count, c.hops.count)
        }
    }

    /// A batch whose times are near the end of the clock still ends (a chunk's window
    /// end saturates), and a reader refuses records beyond the windows a recording
    /// can span, in one line.
    func testTimesFarAwayEndChunksAndAreRefusedByTheReader() throws {
        let path = tempPath("far")
        defer { unlink(path) }
        let w = try RecordingWriter(path: path, metadata: metadata())
        var far = syntheticRecords(windows: 1, perWindow: 100)
        far[50].timestampNs = .max - 10
        far[51].timestampNs = .max
        w.append(RecordColumns(far))
        XCTAssertEqual(w.recordsWritten, 100)
        try w.finish(RecordingEnd(status: RecordingStatus(monotonicNs: 0, counters: TracerCounters(), softirqRunNs: []),
                                  durationSeconds: 1, softirq: .disabled))
        let contents = try RecordingReader.read(path: path) { _ in }
        XCTAssertEqual(contents.records, 50)
        XCTAssertTrue(contents.cutShort?.contains("windows after the start") ?? false, contents.cutShort ?? "not cut")
        XCTAssertNoThrow(try RecordedTrace(path: path))
    }

    /// Files of format version 1 (zlib chunks) still read, to the same records.
    func testVersionOneFilesWithZlibChunksStillRead() throws {
        let records = syntheticRecords(windows: 3, perWindow: 3000)
        let path = tempPath("v2"), old = tempPath("v1")
        defer { unlink(path); unlink(old) }
        try writeRecording(records, to: path)
        // rewrite every chunk as version 1 wrote it: zlib, its checksum, version 1
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var out = Array(bytes.prefix(RecordingFormat.fileHeaderBytes))
        out[8] = 1
        out[9] = 0
        for chunk in try chunks(of: bytes) {
            out += RecordingWriter.stored(RecordingFormat.ChunkType(rawValue: chunk.type)!, chunk.payload, codec: .zlib)
        }
        try Data(out).write(to: URL(fileURLWithPath: old))
        var fromOld: [HopRecord] = [], fromNew: [HopRecord] = []
        let contents = try RecordingReader.read(path: old) { fromOld.append($0) }
        _ = try RecordingReader.read(path: path) { fromNew.append($0) }
        XCTAssertNil(contents.cutShort)
        XCTAssertEqual(fromOld.count, records.count)
        XCTAssertEqual(fromOld, fromNew)
        // and a version this reader does not know is refused in one line
        var newer = out
        newer[8] = 4
        try Data(newer).write(to: URL(fileURLWithPath: old))
        XCTAssertThrowsError(try RecordingReader.read(path: old) { _ in }) { e in
            XCTAssertEqual(e as? RecordingError, .newerVersion(4))
        }
    }

    /// One aggregation (issue 10, defect 2): a run's whole-run figures equal the
    /// merge of its windows exactly (counts and histograms, at the windows'
    /// precision); deliveries sit under the hop that brought the packet in both; a
    /// segment no record crossed is absent from the report, the windows, the
    /// comparison and the exports alike (defect 1: it was a histogram of zeros).
    func testWholeRunEqualsTheMergeOfItsWindowsAndAbsentSegmentsStayAbsent() throws {
        let records = syntheticRecords(windows: 5, perWindow: 4000)
        var whole = TraceAggregate()
        var windows = WindowedAggregate(windowNs: 1_000_000_000, startNs: 1_000_000_000_000)
        for at in stride(from: 0, to: records.count, by: 777) {
            let batch = RecordColumns(Array(records[at..<min(at + 777, records.count)]))
            whole.add(batch)
            windows.add(batch)
        }
        XCTAssertEqual(Set(whole.hops.keys), Set(windows.hopKeys))
        XCTAssertEqual(whole.hops.keys.count, 4)
        for (i, key) in windows.hopKeys.enumerated() {
            let run = try XCTUnwrap(whole[key])
            XCTAssertEqual(run.reduced(toPrecision: WindowedAggregate.precisionBits), windows.merged(i), "\(key)")
            XCTAssertGreaterThan(run.segment(.deliver)?.count ?? 0, 0, "deliveries under the hop that brought them")
            XCTAssertEqual(run.segment(.deliver)?.count, windows.merged(i).segment(.deliver)?.count)
        }
        let hop0 = HopKey(from: Endpoint(netns: 4026532000, ifindex: 2), to: Endpoint(netns: 4026532001, ifindex: 3))
        XCTAssertNil(whole[hop0]?.segment(.forward), "hop 0 is never forwarded")
        XCTAssertNotNil(whole[hop0]?.segment(.qdisc))
        let h0 = try XCTUnwrap(windows.hopKeys.firstIndex(of: hop0))
        XCTAssertNil(windows.merged(h0).segment(.forward))
        XCTAssertTrue(windows.series(h0, segment: .forward).isEmpty)
        let report = Report(aggregate: whole, names: metadata().names, durationSeconds: 5, counters: TracerCounters(),
                            sampling: Sampling())
        let r0 = try XCTUnwrap(report.hops.first { $0.from.netns == 4026532000 })
        XCTAssertNil(r0.segments["forward"])
        XCTAssertEqual(report.hops.filter { $0.segments["forward"] != nil }.count, 3)
        let run = Comparison.Run(windows: windows, names: metadata().names, host: "h")
        let comparison = Comparison(before: run, after: run)
        XCTAssertFalse(comparison.entries.contains { $0.hop.hasPrefix("ns0/") && $0.segment == "forward" })
        XCTAssertTrue(comparison.entries.contains { $0.hop.hasPrefix("ns1/") && $0.segment == "forward" })
    }

    /// A writer let go without `finish` (its owner crashed out of a loop, or forgot)
    /// still writes what it sent off and leaves a file that reads up to its last
    /// chunk, cut short; and being released from its own io queue (the last chunk's
    /// block holding the last reference) must not trap.
    func testWriterReleasedWithoutFinishLeavesReadableFile() throws {
        let path = tempPath("released.hoptrace")
        defer { unlink(path) }
        let records = syntheticRecords(windows: 2, perWindow: 40_000)
        do {
            let w = try RecordingWriter(path: path, metadata: metadata())
            for r in records { w.append(r) }
            w.flush()
        }
        let expected = UInt64(records.count)
        var contents: RecordingContents?
        for _ in 0..<200 { // the io queue finishes on its own
            usleep(10_000)
            contents = try? RecordingReader.read(path: path) { _ in }
            if contents?.records == expected { break }
        }
        XCTAssertEqual(contents?.records, expected)
        XCTAssertNotNil(contents?.cutShort)
    }

    func testExistingFileIsNotOverwrittenWithoutForce() throws {
        let path = tempPath("exists")
        defer { unlink(path) }
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("keep me".utf8)))
        XCTAssertThrowsError(try RecordingWriter(path: path, metadata: metadata())) { e in
            XCTAssertTrue("\(e)".contains("use --force"), "\(e)")
        }
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "keep me")
        _ = try RecordingWriter(path: path, metadata: metadata(), force: true)
    }

    /// Cut at every chunk boundary and in the middle of every chunk: the reader
    /// returns the complete chunks before the cut and says the file was cut short.
    func testTruncationAtEveryChunkBoundaryAndMidChunk() throws {
        let records = syntheticRecords(windows: 6, perWindow: 2000)
        let path = tempPath("full")
        defer { unlink(path) }
        try writeRecording(records, to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        // chunk boundaries, from the headers
        var boundaries: [Int] = [RecordingFormat.fileHeaderBytes]
        var recordsBefore: [Int: UInt64] = [RecordingFormat.fileHeaderBytes: 0]
        var seen: UInt64 = 0
        let all = try chunks(of: bytes)
        for (i, chunk) in all.enumerated() {
            if chunk.type == RecordingFormat.ChunkType.records.rawValue {
                var pr = ByteReader(chunk.payload)
                seen += try pr.varint()
            }
            let end = i + 1 < all.count ? all[i + 1].at : bytes.count
            boundaries.append(end)
            recordsBefore[end] = seen
        }
        XCTAssertGreaterThan(boundaries.count, 8)
        let cutPath = tempPath("cut")
        defer { unlink(cutPath) }
        for (i, boundary) in boundaries.enumerated() where boundary > RecordingFormat.fileHeaderBytes {
            let previous = boundaries[i - 1]
            for cut in [boundary, previous + (boundary - previous) / 2, previous + 7] where cut <= bytes.count {
                try Data(bytes[0..<cut]).write(to: URL(fileURLWithPath: cutPath))
                if cut < boundaries[1] { // inside the metadata chunk: nothing to report
                    XCTAssertThrowsError(try RecordingReader.read(path: cutPath) { _ in })
                    continue
                }
                let whole = boundaries.last { $0 <= cut }!
                let contents = try RecordingReader.read(path: cutPath) { _ in }
                XCTAssertEqual(contents.records, recordsBefore[whole]!, "cut at \(cut)")
                if cut == bytes.count {
                    XCTAssertNil(contents.cutShort)
                } else {
                    XCTAssertNotNil(contents.cutShort, "cut at \(cut) must be reported")
                }
            }
        }
    }

    /// Flipped bits are caught by the checksums (or header checks): never a crash,
    /// never more records than written, and a flip inside a chunk cuts it off.
    func testBitFlips() throws {
        let records = syntheticRecords(windows: 4, perWindow: 2000)
        let path = tempPath("flip")
        defer { unlink(path) }
        try writeRecording(records, to: path)
        let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        var rng = SplitMix(state: 99)
        let flipped = tempPath("flipped")
        defer { unlink(flipped) }
        var detected = 0
        for _ in 0..<300 {
            var copy = bytes
            let at = Int(rng.next() % UInt64(copy.count))
            copy[at] ^= UInt8(1 << (rng.next() % 8))
            try Data(copy).write(to: URL(fileURLWithPath: flipped))
            do {
                let c = try RecordingReader.read(path: flipped) { _ in }
                XCTAssertLessThanOrEqual(c.records, UInt64(records.count))
                if c.cutShort != nil { detected += 1 }
            } catch {
                detected += 1
            }
        }
        XCTAssertGreaterThan(detected, 290, "almost every flip lands in a checksummed byte")
    }

    func testBadFilesGiveOneClearError() throws {
        let path = tempPath("bad")
        defer { unlink(path) }
        func error(_ bytes: [UInt8]) -> String {
            try? Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                _ = try RecordingReader.read(path: path) { _ in }
                return "no error"
            } catch {
                return error.description
            }
        }
        XCTAssertEqual(error([]), "not a hoptrace recording (empty file)")
        XCTAssertEqual(error(Array("just some text file\n".utf8)), "not a hoptrace recording (no HOPTRACE header)")
        XCTAssertEqual(error(Array("HOPTRACE".utf8) + [9, 0, 0, 0, 0, 0, 0, 0]),
                       "recording format version 9 is newer than this hoptrace reads (3); upgrade hoptrace")
        XCTAssertTrue(error(Array("HOPTRACE".utf8) + [1, 0, 0, 0, 0, 0, 0, 0]).contains("metadata chunk is missing"))
        XCTAssertTrue(error(Array("HOPTRACE".utf8) + [1]).contains("not a hoptrace recording"))
        XCTAssertThrowsError(try RecordingReader.read(path: "/nonexistent/x.hoptrace") { _ in })
    }

    /// A randomized fuzz of the reader for a bounded time: mutated files, and chunks
    /// of random bytes with a valid checksum (so the decoder itself is exercised).
    func testFuzzReaderBounded() throws {
        let seconds = Double(ProcessInfo.processInfo.environment["HOPTRACE_FUZZ_SECONDS"] ?? "") ?? 5
        let records = syntheticRecords(windows: 2, perWindow: 300)
        let path = tempPath("seed")
        defer { unlink(path) }
        try writeRecording(records, to: path)
        let seed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
        let headerAndMeta: [UInt8] = {
            var r = ByteReader(Array(seed[16..<36]))
            _ = try? r.u32(); _ = try? r.u8(); _ = try? r.u8(); _ = try? r.u16()
            let stored = Int((try? r.u32()) ?? 0)
            return Array(seed[0..<(36 + stored)])
        }()
        var rng = SplitMix(state: UInt64(Date().timeIntervalSince1970))
        let fuzzPath = tempPath("fuzz")
        defer { unlink(fuzzPath) }
        let deadline = Date().addingTimeInterval(seconds)
        var cases = 0
        while Date() < deadline {
            var input: [UInt8]
            switch rng.next() % 3 {
            case 0: // mutate a valid file
                input = seed
                for _ in 0..<(1 + rng.next() % 8) {
                    let at = Int(rng.next() % UInt64(input.count))
                    input[at] = UInt8(truncatingIfNeeded: rng.next())
                }
                if rng.next() % 2 == 0 { input = Array(input.prefix(Int(rng.next() % UInt64(input.count + 1)))) }
            default: // a well-formed chunk of garbage, raw or "compressed"
                let n = Int(rng.next() % 300)
                var payload = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if rng.next() % 2 == 0, n > 4 { payload[0] = UInt8(rng.next() % 4) } // small counts reach deeper
                var w = ByteWriter()
                w.u32(RecordingFormat.chunkMagic)
                w.u8(UInt8(1 + rng.next() % 4))
                let codec = UInt8(rng.next() % 3)
                w.u8(codec)
                w.u16(0)
                w.u32(UInt32(payload.count))
                w.u32(UInt32(rng.next() % 1000))
                w.u32(Zlib.crc32(payload))
                input = headerAndMeta + w.bytes + payload
            }
            try Data(input).write(to: URL(fileURLWithPath: fuzzPath))
            _ = try? RecordingReader.read(path: fuzzPath) { _ in }
            cases += 1
        }
        print("fuzzed the reader with \(cases) inputs in \(seconds) s")
        XCTAssertGreaterThan(cases, 50)
    }

    /// Exports: CSV and JSON lines carry every record; Perfetto is valid trace JSON.
    func testExports() throws {
        let records = syntheticRecords(windows: 3, perWindow: 200)
        let path = tempPath("export")
        defer { unlink(path) }
        try writeRecording(records, to: path)
        for format in Export.Format.allCases {
            let out = tempPath("out.\(format.rawValue)")
            defer { unlink(out) }
            XCTAssertTrue(FileManager.default.createFile(atPath: out, contents: nil))
            let handle = FileHandle(forWritingAtPath: out)!
            var writer: Export.Writer?
            let c = try RecordingReader.read(path: path) { writer!.add($0) } metadataHook: { m in
                writer = Export.Writer(format: format, to: handle, metadata: m)
            }
            writer!.finish(softirq: c.end?.softirq)
            try handle.close()
            let text = try String(contentsOfFile: out, encoding: .utf8)
            switch format {
            case .csv:
                let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
                XCTAssertEqual(lines.count, records.count + 1)
                XCTAssertTrue(text.hasPrefix("ts_ns,kind,from_netns"))
                // a segment not crossed is an empty field, never 0
                let header = lines[0].split(separator: ",").map(String.init)
                let forward = try XCTUnwrap(header.firstIndex(of: "forward_ns")), hopIndex = try XCTUnwrap(header.firstIndex(of: "hop_index"))
                for l in lines.dropFirst() {
                    let f = l.split(separator: ",", omittingEmptySubsequences: false)
                    XCTAssertEqual(f.count, header.count)
                    if f[1] == "hop" { XCTAssertEqual(f[forward].isEmpty, f[hopIndex] == "0", String(l)) }
                }
            case .jsonl:
                let lines = text.split(separator: "\n")
                XCTAssertEqual(lines.count, records.count)
                for l in lines {
                    let o = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(l.utf8)) as? [String: Any])
                    let segments = try XCTUnwrap(o["segments_ns"] as? [String: Int])
                    if o["kind"] as? String == "hop" {
                        XCTAssertEqual(segments["forward"] == nil, o["hop_index"] as? Int == 0)
                    }
                    if o["kind"] as? String == "drop" { XCTAssertTrue(segments.isEmpty) }
                }
            case .perfetto:
                let json = try JSONSerialization.jsonObject(with: Data(text.utf8)) as! [String: Any]
                XCTAssertGreaterThan((json["traceEvents"] as! [Any]).count, records.count)
            case .hdrlog:
                XCTAssertTrue(text.hasPrefix("#[Histogram log format version 1.3]"))
                XCTAssertEqual(text.split(separator: "\n").filter { $0.hasPrefix("Tag=") }.count, 3 * 4)
            }
        }
    }

    /// Drop reasons are named as on the recording machine (issue 10, defect 3): its
    /// names are stored in the recording; a recording from before they were stored
    /// is named by this machine only when it runs the same kernel, else by number.
    func testDropReasonsAreNamedAsOnTheRecordingMachine() throws {
        let records = syntheticRecords(windows: 2, perWindow: 500)
        let path = tempPath("reasons")
        defer { unlink(path) }
        var m = metadata()
        m.dropReasons = [3: "RECORDED_THERE"]
        try writeRecording(records, to: path, metadata: m)
        let trace = try RecordedTrace(path: path)
        XCTAssertEqual(trace.contents.metadata.dropReasons, [3: "RECORDED_THERE"])
        let report = trace.report()
        XCTAssertFalse(report.drops.isEmpty)
        XCTAssertTrue(report.drops.allSatisfy { $0.reasonName == "RECORDED_THERE" })
        // whatever this machine's BTF says
        XCTAssertEqual(m.reasons(running: DropReasons(names: [3: "HERE"]), runningKernel: m.kernel).name(3), "RECORDED_THERE")
        var old = m
        old.dropReasons = nil
        XCTAssertEqual(old.reasons(running: DropReasons(names: [3: "HERE"]), runningKernel: "other").name(3), "reason 3")
        XCTAssertEqual(old.reasons(running: DropReasons(names: [3: "HERE"]), runningKernel: m.kernel).name(3), "HERE")
        // and a metadata chunk from before drop_reasons existed still reads
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m)) as! [String: Any]
        json["drop_reasons"] = nil
        json["settings"] = nil
        let decoded = try JSONDecoder().decode(RecordingMetadata.self, from: JSONSerialization.data(withJSONObject: json))
        XCTAssertNil(decoded.dropReasons)
        XCTAssertEqual(decoded.settings, [:])
    }
}
