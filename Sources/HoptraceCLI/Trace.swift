import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceNode
import HoptraceTracer

struct Trace: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Trace packets crossing namespaces, then print the per-hop report.",
        discussion: """
        Selecting a device also selects its veth peer, so packets are followed in both
        directions from their first hop. Ctrl-C ends the trace early and still prints
        the report; nothing stays attached after hoptrace exits.

        Examples:
          hoptrace trace --all-veth --duration 10s
          hoptrace trace --netns web --iface eth0 --json
          hoptrace trace --all-veth --sample 10 --min-latency 50us
        """
    )

    @OptionGroup var selection: DeviceOptions
    @OptionGroup var options: TraceOptions

    func run() throws {
        requireRoot()
        let (devices, names) = selection.resolve()
        let report = runTrace(devices: devices, names: names, options: options) { interruption, _ in
            interruption.wait(seconds: Double(options.durationNs) / 1e9)
        }
        print(options.json ? report.json() : report.text(), terminator: options.json ? "\n" : "")
    }
}

/// Attaches to `devices`, runs `body` (which waits while traffic flows), and returns
/// the report. Errors print one line and exit non-zero; a signal still reports.
func runTrace(devices: [DeviceSelection], names: NameTable, options: TraceOptions, sink: RecordSink? = nil,
              body: (Interruption, TraceSession) -> Void) -> Report {
    let interruption = Interruption()
    let session: TraceSession
    do {
        session = try TraceSession(devices: devices, options: options.tracerOptions, names: names,
                                   flowCapacity: options.maxFlows, topFlows: options.top, sink: sink)
    } catch {
        fail(error.description)
    }
    progress("tracing \(devices.count) devices (\(devices.map(\.label).prefix(6).joined(separator: ", "))"
             + (devices.count > 6 ? ", ..." : "") + "); Ctrl-C to stop early")
    session.start()
    body(interruption, session)
    do {
        let report = try session.stop()
        if interruption.received != 0 { progress("interrupted: reporting what was traced") }
        return report
    } catch {
        fail("trace failed: \(error)")
    }
}

/// Which devices to trace: shared by `trace` and `record`.
struct DeviceOptions: ParsableArguments {
    @Flag(help: "Trace every veth device on the node.")
    var allVeth = false

    @Option(help: "Network namespace of the --iface devices: an 'ip netns' name, 'host', or a name from 'hoptrace list'.")
    var netns: String?

    @Option(name: .customLong("iface"), help: "A device to trace (repeatable).")
    var interfaces: [String] = []

    func validate() throws {
        if allVeth && !interfaces.isEmpty { throw ValidationError("use either --all-veth or --iface, not both") }
        if !allVeth && interfaces.isEmpty {
            throw ValidationError("choose devices: --all-veth, or --iface NAME (with --netns NAME); 'hoptrace list' shows them")
        }
    }

    /// The devices and the node's names; a bad selection prints one line and exits.
    func resolve() -> ([DeviceSelection], NameTable) {
        let topology = Discovery.topology()
        do {
            return (try topology.select(allVeth: allVeth, netns: netns, interfaces: interfaces), topology.names)
        } catch {
            fail(error.description)
        }
    }
}

func requireRoot() {
    if geteuid() != 0 {
        fail("tracing needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); run with sudo")
    }
}
