import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceRecording
import HoptraceTracer

/// The `hoptrace` command: subcommands only, each a thin shell over the libraries.
public struct HoptraceCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "hoptrace",
        abstract: "Per-hop packet latency between network namespaces, traced with eBPF.",
        discussion: """
        hoptrace follows packets across veth pairs, bridges and routing between
        network namespaces (containers) and reports, per hop, where they wait:
        qdisc, veth crossing, backlog (NET_RX softirq), forward, delivery to the socket.

        Examples:
          hoptrace doctor
          hoptrace list
          hoptrace trace --all-veth --duration 10s
          hoptrace trace --netns web --iface eth0 --json
          hoptrace top --all-veth
          hoptrace record -o before.hoptrace --all-veth --duration 60s
          hoptrace report before.hoptrace
          hoptrace compare before.hoptrace after.hoptrace --fail-if-slower 10%
          hoptrace export before.hoptrace --format perfetto -o before.json
          hoptrace serve --listen 0.0.0.0:9479 --incidents /var/lib/hoptrace
          hoptrace demo
        """,
        version: hoptraceVersion,
        subcommands: [Doctor.self, List.self, Trace.self, Top.self, Record.self, ReportCommand.self, Compare.self,
                      ExportCommand.self, Serve.self, Demo.self]
    )

    public init() {}

    /// Parses and runs a command. A `CLIError` prints its one line on stderr and
    /// exits with its code; it is thrown, never `exit()`ed from inside a command, so
    /// every `defer` (a lab's teardown, detaching) has run by then.
    public static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch let e as CLIError {
            FileHandle.standardError.write(Data("hoptrace: \(e.message)\n".utf8))
            Foundation.exit(e.code)
        } catch {
            exit(withError: error)
        }
    }
}

public let hoptraceVersion = "0.2.0"

/// A duration as people write it: 10s, 500ms, 2m, 1.5s, 250us.
struct DurationArgument: ExpressibleByArgument, Sendable {
    var ns: UInt64
    var seconds: Double { Double(ns) / 1e9 }

    init(ns: UInt64) { self.ns = ns }

    init?(argument: String) {
        guard let ns = DurationParser.nanoseconds(argument) else { return nil }
        self.ns = ns
    }

    var defaultValueDescription: String { formatNs(ns) }
}

/// `--attach`, as the user writes it.
enum AttachChoice: String, CaseIterable, ExpressibleByArgument, Sendable {
    case auto, tcx, clsact

    var mode: TracerOptions.AttachMode {
        switch self {
        case .auto: .auto
        case .tcx: .tcx
        case .clsact: .clsact
        }
    }
}

enum Switch: String, CaseIterable, ExpressibleByArgument, Sendable {
    case on, off
}

/// Options every tracing command shares, typed here at the edge and parsed once.
struct TraceOptions: ParsableArguments {
    @Option(help: "How long to trace, e.g. 10s, 500ms, 2m. (default: 10s)",
            transform: { try parsePositiveDuration($0, "duration", example: "10s, 500ms, 2m") })
    var duration = DurationArgument(ns: 10_000_000_000)

    @Option(help: "Flows listed in the report's text, slowest p99 first (--json lists all).")
    var top: Int = Report.defaultTopFlows

    @Flag(help: "Print the report as JSON (schema in docs/report-schema.md).")
    var json = false

    @OptionGroup var tracer: TracerArguments

    func validate() throws {
        guard top >= 0 else { throw ValidationError("--top must not be negative") }
    }
}

/// How to trace, whatever is done with it: shared by trace, record, demo and top.
struct TracerArguments: ParsableArguments {
    @Option(help: "Follow one packet in N (1 = every packet).")
    var sample: UInt32 = TracerOptions().sampleEvery

    @Option(help: "Record only hops at least this slow, e.g. 50us. (default: 0: every hop)", transform: { try parseDuration($0, "--min-latency", example: "50us") })
    var minLatency = DurationArgument(ns: TracerOptions().minLatencyNs)

    @Option(help: "Flows kept apart before the idlest are folded into one aggregate (bounds memory).")
    var maxFlows: Int = FlowTable.defaultCapacity

    @Option(help: "Packets followed at once (the kernel's per-packet table, rounded up to a power of two; 144 bytes each).")
    var maxPackets: UInt32 = TracerOptions().maxPackets

    @Option(help: "How to hook the devices: auto (tcx, clsact where tcx is missing), tcx, clsact.")
    var attach: AttachChoice = .auto

    @Option(help: "Trace NET_RX/NET_TX softirqs and NAPI polls: on or off (off saves their per-run cost).")
    var softirq: Switch = .on

    @Flag(help: "Measure the BPF programs' own run time (bpf_stats) for the report's tracer cost. It adds two clock reads to every program run, so it is off unless asked for.")
    var bpfStats = false

    func validate() throws {
        guard sample >= 1 else { throw ValidationError("--sample must be at least 1") }
        guard maxFlows >= 8 else { throw ValidationError("--max-flows must be at least 8") }
        guard (1024...4_194_304).contains(maxPackets) else { throw ValidationError("--max-packets must be between 1024 and 4194304") }
    }

    /// The tracer's options; `allVeth`: every veth is traced, so hops start at tcx
    /// egress and the node-wide net_dev_queue hook is not needed.
    func tracerOptions(allVeth: Bool) -> TracerOptions {
        var o = TracerOptions()
        o.sampleEvery = sample
        o.minLatencyNs = minLatency.ns
        o.maxPackets = maxPackets
        o.attachMode = attach.mode
        o.softirq = softirq == .on
        o.runTimeStats = bpfStats
        o.hopsFromUntracedDevices = !allVeth
        return o
    }
}

/// Parses a duration option, or says in one line what is wrong and what to write.
func parseDuration(_ text: String, _ name: String, example: String) throws -> DurationArgument {
    guard let d = DurationArgument(argument: text) else {
        throw ValidationError("bad \(name) '\(text)': give a number with a unit, e.g. \(example)")
    }
    return d
}

func parsePositiveDuration(_ text: String, _ name: String, example: String) throws -> DurationArgument {
    let d = try parseDuration(text, name, example: example)
    guard d.ns > 0 else { throw ValidationError("bad \(name) '\(text)': give a positive number with a unit, e.g. \(example)") }
    return d
}

/// A user error: one line on stderr and an exit status, after every cleanup ran.
struct CLIError: Error, CustomStringConvertible {
    var message: String
    var code: Int32

    init(_ message: String, code: Int32 = 1) {
        self.message = message
        self.code = code
    }

    var description: String { message }
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("hoptrace: \(message)\n".utf8))
}
