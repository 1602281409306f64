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
          hoptrace record -o before.hoptrace --all-veth --duration 60s
          hoptrace report before.hoptrace
          hoptrace compare before.hoptrace after.hoptrace --fail-if-slower 10%
          hoptrace export before.hoptrace --format perfetto -o before.json
          hoptrace demo
        """,
        version: hoptraceVersion,
        subcommands: [Doctor.self, List.self, Trace.self, Record.self, ReportCommand.self, Compare.self,
                      ExportCommand.self, Demo.self]
    )

    public init() {}
}

public let hoptraceVersion = "0.1.0"

/// Options every tracing command shares.
struct TraceOptions: ParsableArguments {
    @Option(help: "How long to trace, e.g. 10s, 500ms, 2m.")
    var duration: String = "10s"

    @Option(help: "Follow one packet in N (1 = every packet).")
    var sample: UInt32 = 1

    @Option(help: "Record only hops at least this slow, e.g. 50us.")
    var minLatency: String = "0ns"

    @Option(help: "Flows listed in the report, slowest p99 first.")
    var top: Int = 10

    @Option(help: "Flows kept apart before the idlest are folded into one aggregate (bounds memory).")
    var maxFlows: Int = 10_000

    @Option(help: "Packets followed at once (the kernel's per-packet table, rounded up to a power of two; 144 bytes each).")
    var maxPackets: UInt32 = 65_536

    @Option(help: "How to hook the devices: auto (tcx, clsact where tcx is missing), tcx, clsact.")
    var attach: String = "auto"

    @Option(help: "Trace NET_RX/NET_TX softirqs and NAPI polls: on or off (off saves their per-run cost).")
    var softirq: String = "on"

    @Flag(help: "Measure the BPF programs' own run time (bpf_stats) for the report's tracer cost. It adds two clock reads to every program run, so it is off unless asked for.")
    var bpfStats = false

    @Flag(help: "Print the report as JSON (schema in docs/report-schema.md).")
    var json = false

    var durationNs: UInt64 { DurationParser.nanoseconds(duration) ?? 0 }

    func validate() throws {
        guard let d = DurationParser.nanoseconds(duration), d > 0 else {
            throw ValidationError("bad duration '\(duration)': give a positive number with a unit, e.g. 10s, 500ms, 2m")
        }
        guard DurationParser.nanoseconds(minLatency) != nil else {
            throw ValidationError("bad --min-latency '\(minLatency)': give a number with a unit, e.g. 50us")
        }
        guard sample >= 1 else { throw ValidationError("--sample must be at least 1") }
        guard maxFlows >= 8 else { throw ValidationError("--max-flows must be at least 8") }
        guard top >= 0 else { throw ValidationError("--top must not be negative") }
        guard (1024...4_194_304).contains(maxPackets) else { throw ValidationError("--max-packets must be between 1024 and 4194304") }
        guard attachMode != nil else { throw ValidationError("bad --attach '\(attach)': use auto, tcx or clsact") }
        guard ["on", "off"].contains(softirq) else { throw ValidationError("bad --softirq '\(softirq)': use on or off") }
    }

    var attachMode: TracerOptions.AttachMode? {
        ["auto": .auto, "tcx": .tcx, "clsact": .clsact][attach]
    }

    var tracerOptions: TracerOptions {
        var o = TracerOptions()
        o.sampleEvery = sample
        o.minLatencyNs = DurationParser.nanoseconds(minLatency) ?? 0
        o.maxPackets = maxPackets
        o.attachMode = attachMode ?? .auto
        o.softirq = softirq == "on"
        o.runTimeStats = bpfStats
        return o
    }
}

/// Prints one line to stderr and exits non-zero: the shape of every user error.
func fail(_ message: String, code: Int32 = 1) -> Never {
    FileHandle.standardError.write(Data("hoptrace: \(message)\n".utf8))
    exit(code)
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("hoptrace: \(message)\n".utf8))
}
