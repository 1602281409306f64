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

    @Option(help: "Length of the timeline's windows, e.g. 1s, 500ms. (default: 1s)",
            transform: { try parsePositiveDuration($0, "--window", example: "1s or 500ms") })
    var window = DurationArgument(ns: 1_000_000_000)

    @Option(help: "Keep only the last DURATION in memory and write it when a trigger fires, e.g. 30s.",
            transform: { try parsePositiveDuration($0, "--flight-recorder", example: "30s") })
    var flightRecorder: DurationArgument?

    @Option(help: "With --flight-recorder: p99>DURATION, max>DURATION, drop or drop:REASON (repeatable). SIGUSR1 always triggers.",
            transform: { text in
                guard let t = Trigger(text) else {
                    throw ValidationError("bad --trigger '\(text)': use p99>2ms, max>10ms, drop or drop:NO_SOCKET")
                }
                return t
            })
    var trigger: [Trigger] = []

    @Option(help: "With --flight-recorder: how long to keep writing after a trigger. (default: 5s)",
            transform: { try parseDuration($0, "--after", example: "5s") })
    var after = DurationArgument(ns: 5_000_000_000)

    @Option(help: "With --flight-recorder: how long triggers rest after an incident (rate limit). (default: 30s)",
            transform: { try parseDuration($0, "--cooldown", example: "30s") })
    var cooldown = DurationArgument(ns: 30_000_000_000)

    @OptionGroup var selection: DeviceOptions
    @OptionGroup var options: TraceOptions

    func validate() throws {
        if flightRecorder == nil && !trigger.isEmpty { throw ValidationError("--trigger needs --flight-recorder DURATION") }
        guard window.ns >= 10_000_000 else {
            throw ValidationError("bad --window '\(formatNs(window.ns))': at least 10ms, e.g. 1s or 500ms")
        }
        if !force && FileManager.default.fileExists(atPath: output) {
            throw ValidationError("\(output) exists; use --force to overwrite it")
        }
    }

    func run() throws {
        let interruption = Interruption.install()
        try requireRoot()
        let chosen = try selection.resolve()
        let (devices, names) = (chosen.devices, chosen.names)
        let tracer = options.tracer.tracerOptions(allVeth: chosen.everyVeth)
        let metadata = TraceSession.recordingMetadata(devices: devices, names: names, options: tracer,
                                                      windowNs: window.ns, version: hoptraceVersion)
        let writer: RecordingWriter
        do { writer = try RecordingWriter(path: output, metadata: metadata, force: force) } catch { throw CLIError(error.description) }
        var target = RecordingTarget.file(writer)
        if let f = flightRecorder {
            func windows(_ ns: UInt64) -> Int { Int((ns + window.ns - 1) / window.ns) }
            let flight = FlightRecorder(writer: writer, triggers: trigger, keepWindows: windows(f.ns),
                                        afterWindows: windows(after.ns), cooldownWindows: windows(cooldown.ns),
                                        reasons: DropReasons.running())
            target = .flightRecorder(flight)
            progress("flight recorder: keeping the last \(flight.keepWindows) windows; triggers: "
                     + (trigger.map(\.description) + ["SIGUSR1"]).joined(separator: ", "))
        }
        let usr1 = SignalFlag(SIGUSR1)
        let report = try runTrace(devices: devices, names: names, maxFlows: options.tracer.maxFlows, topFlows: options.top,
                                  tracer: tracer,
                                  interruption: interruption, recording: target, hostRoot: selection.hostRoot) { session in
            session.run(until: Date().addingTimeInterval(options.duration.seconds), windowNs: window.ns,
                        wait: interruption.wait, stopRequested: { interruption.received != 0 },
                        incidentRequested: { usr1.take() ? "SIGUSR1" : nil }) { event in
                switch event {
                case .incident(let why):
                    if case .flightRecorder(let f) = target {
                        progress("flight recorder: \(why): writing the last \(f.keepWindows) windows and \(f.afterWindows) more")
                    }
                case .recordingStopped(let why):
                    progress("recording stopped: \(why); the file is readable up to its last complete chunk")
                }
            }
        }
        let perRecord = writer.recordsWritten > 0 ? Double(writer.bytesWritten) / Double(writer.recordsWritten) : 0
        var incidents = ""
        if case .flightRecorder(let f) = target { incidents = " in \(f.incidents.count) incidents" }
        progress("recorded \(writer.recordsWritten) records in \(writer.bytesWritten) bytes "
                 + "(\(String(format: "%.1f", perRecord)) bytes per record, \(report.lostEvents) lost) to \(output)" + incidents)
    }
}
