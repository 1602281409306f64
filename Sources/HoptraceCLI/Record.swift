import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceRecording
import HoptraceTracer

struct Record: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trace to a recording file (docs/recording-format.md), for report, compare and export.",
        discussion: """
        The file is written in chunks at least once per window, so a crash, kill -9 or
        a full disk leaves it readable up to its last complete chunk.

        Examples:
          hoptrace record -o before.hoptrace --all-veth --duration 60s
          hoptrace record -o web.hoptrace --netns web --iface eth0 --window 500ms
          hoptrace report before.hoptrace
        """
    )

    @Option(name: .shortAndLong, help: "The recording file to write (mode 0600).")
    var output: String

    @Flag(help: "Overwrite an existing file.")
    var force = false

    @Option(help: "Length of the timeline's windows, e.g. 1s, 500ms.")
    var window: String = "1s"

    @OptionGroup var selection: DeviceOptions
    @OptionGroup var options: TraceOptions

    func validate() throws {
        guard let w = DurationParser.nanoseconds(window), w >= 10_000_000 else {
            throw ValidationError("bad --window '\(window)': at least 10ms, e.g. 1s or 500ms")
        }
        if !force && FileManager.default.fileExists(atPath: output) {
            throw ValidationError("\(output) exists; use --force to overwrite it")
        }
    }

    func run() throws {
        requireRoot()
        let (devices, names) = selection.resolve()
        let windowNs = DurationParser.nanoseconds(window)!
        var uts = utsname()
        uname(&uts)
        func field<T>(_ v: inout T) -> String { withUnsafeBytes(of: &v) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) } }
        let tracer = options.tracerOptions
        let metadata = RecordingMetadata(
            toolVersion: hoptraceVersion, host: field(&uts.nodename), kernel: field(&uts.release),
            startUnixNs: UInt64(Date().timeIntervalSince1970 * 1e9), startMonotonicNs: monotonicNs(), windowNs: windowNs,
            sampling: Sampling(every: tracer.sampleEvery, minLatencyNs: tracer.minLatencyNs), devices: devices.map(\.label),
            softirq: tracer.softirq, names: names)
        let writer: RecordingWriter
        do { writer = try RecordingWriter(path: output, metadata: metadata, force: force) } catch { fail(error.description) }
        let start = Date()
        let report = runTrace(devices: devices, names: names, options: options, sink: writer) { interruption, session in
            let end = Date().addingTimeInterval(Double(options.durationNs) / 1e9)
            while Date() < end && interruption.received == 0 {
                interruption.wait(seconds: min(Double(windowNs) / 1e9, end.timeIntervalSinceNow))
                let status = RecordingStatus(monotonicNs: monotonicNs(), counters: session.counters(),
                                             softirqRunNs: session.softirqRunNs(), final: false)
                session.synchronized { writer.write(status: status) }
                if let e = session.synchronized({ writer.error }) {
                    progress("recording stopped: \(e); the file is readable up to its last complete chunk")
                    break
                }
            }
        }
        let end = RecordingEnd(status: RecordingStatus(monotonicNs: monotonicNs(), counters: report.counters,
                                                       softirqRunNs: [], final: true),
                               durationSeconds: Date().timeIntervalSince(start), softirq: report.softirq)
        do { try writer.finish(end) } catch { fail("\(error); \(output) is readable up to its last complete chunk") }
        let perRecord = writer.recordsWritten > 0 ? Double(writer.bytesWritten) / Double(writer.recordsWritten) : 0
        progress("recorded \(writer.recordsWritten) records in \(writer.bytesWritten) bytes "
                 + "(\(String(format: "%.1f", perRecord)) bytes per record, \(report.lostEvents) lost) to \(output)")
    }
}

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
