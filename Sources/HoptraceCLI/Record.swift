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

        With --flight-recorder, only the last N seconds are kept in memory; when a
        trigger fires (or on SIGUSR1) they are written with --after seconds more,
        then triggers rest for --cooldown. Several incidents go into one file.

        Examples:
          hoptrace record -o before.hoptrace --all-veth --duration 60s
          hoptrace record -o web.hoptrace --netns web --iface eth0 --window 500ms
          hoptrace record -o incident.hoptrace --all-veth --duration 1h --flight-recorder 30s --trigger 'p99>2ms'
          hoptrace record -o drops.hoptrace --all-veth --duration 1h --flight-recorder 10s --trigger drop:NO_SOCKET
          hoptrace report before.hoptrace
        """
    )

    @Option(name: .shortAndLong, help: "The recording file to write (mode 0600).")
    var output: String

    @Flag(help: "Overwrite an existing file.")
    var force = false

    @Option(help: "Length of the timeline's windows, e.g. 1s, 500ms.")
    var window: String = "1s"

    @Option(help: "Keep only the last DURATION in memory and write it when a trigger fires, e.g. 30s.")
    var flightRecorder: String?

    @Option(help: "With --flight-recorder: p99>DURATION, max>DURATION, drop or drop:REASON (repeatable). SIGUSR1 always triggers.")
    var trigger: [String] = []

    @Option(help: "With --flight-recorder: how long to keep writing after a trigger.")
    var after: String = "5s"

    @Option(help: "With --flight-recorder: how long triggers rest after an incident (rate limit).")
    var cooldown: String = "30s"

    @OptionGroup var selection: DeviceOptions
    @OptionGroup var options: TraceOptions

    var triggers: [Trigger] { trigger.compactMap(Trigger.init) }

    func validate() throws {
        if let f = flightRecorder {
            guard let ns = DurationParser.nanoseconds(f), ns > 0 else {
                throw ValidationError("bad --flight-recorder '\(f)': a duration, e.g. 30s")
            }
            for (name, v) in [("--after", after), ("--cooldown", cooldown)] where DurationParser.nanoseconds(v) == nil {
                throw ValidationError("bad \(name) '\(v)': a duration, e.g. 5s")
            }
        } else if !trigger.isEmpty {
            throw ValidationError("--trigger needs --flight-recorder DURATION")
        }
        for t in trigger where Trigger(t) == nil {
            throw ValidationError("bad --trigger '\(t)': use p99>2ms, max>10ms, drop or drop:NO_SOCKET")
        }
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
        var flight: FlightRecorder?
        if let f = flightRecorder.flatMap(DurationParser.nanoseconds) {
            func windows(_ ns: UInt64) -> Int { Int((ns + windowNs - 1) / windowNs) }
            flight = FlightRecorder(writer: writer, triggers: triggers, keepWindows: windows(f),
                                    afterWindows: windows(DurationParser.nanoseconds(after)!),
                                    cooldownWindows: windows(DurationParser.nanoseconds(cooldown)!),
                                    reasons: DropReasons.running())
            progress("flight recorder: keeping the last \(f / windowNs) windows; triggers: "
                     + (triggers.map(\.description) + ["SIGUSR1"]).joined(separator: ", "))
        }
        let usr1 = SignalFlag(SIGUSR1)
        let report = runTrace(devices: devices, names: names, options: options, sink: flight ?? writer) { interruption, session in
            let end = Date().addingTimeInterval(Double(options.durationNs) / 1e9)
            while Date() < end && interruption.received == 0 {
                interruption.wait(seconds: min(Double(windowNs) / 1e9, end.timeIntervalSinceNow))
                let status = RecordingStatus(monotonicNs: monotonicNs(), counters: session.counters(),
                                             softirqRunNs: session.softirqRunNs())
                if let flight {
                    if usr1.take() { session.synchronized { flight.request("SIGUSR1") } }
                    if let why = session.synchronized({ flight.closeWindow(status: status) }) {
                        progress("flight recorder: \(why): writing the last \(flight.keepWindows) windows and \(flight.afterWindows) more")
                    }
                } else {
                    session.synchronized { writer.write(status: status) }
                }
                if let e = session.synchronized({ writer.error }) {
                    progress("recording stopped: \(e); the file is readable up to its last complete chunk")
                    break
                }
            }
        }
        let end = RecordingEnd(status: RecordingStatus(monotonicNs: monotonicNs(), counters: report.counters,
                                                       softirqRunNs: []),
                               durationSeconds: Date().timeIntervalSince(start), softirq: report.softirq)
        do { try writer.finish(end) } catch { fail("\(error); \(output) is readable up to its last complete chunk") }
        let perRecord = writer.recordsWritten > 0 ? Double(writer.bytesWritten) / Double(writer.recordsWritten) : 0
        progress("recorded \(writer.recordsWritten) records in \(writer.bytesWritten) bytes "
                 + "(\(String(format: "%.1f", perRecord)) bytes per record, \(report.lostEvents) lost) to \(output)"
                 + (flight.map { " in \($0.incidents.count) incidents" } ?? ""))
    }
}

func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
