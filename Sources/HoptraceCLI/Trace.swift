import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceNode
import HoptraceRecording
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
          hoptrace trace --pod default/web-7d9f --duration 30s
          hoptrace trace --namespace shop --json
        """
    )

    @OptionGroup var selection: DeviceOptions
    @OptionGroup var options: TraceOptions

    func run() throws {
        let interruption = Interruption.install()
        try requireRoot()
        let chosen = try selection.resolve()
        let report = try runTrace(devices: chosen.devices, names: chosen.names, maxFlows: options.tracer.maxFlows,
                                  topFlows: options.top, tracer: options.tracer.tracerOptions(allVeth: chosen.everyVeth),
                                  interruption: interruption,
                                  hostRoot: selection.hostRoot) { session in
            session.run(until: Date().addingTimeInterval(options.duration.seconds), windowNs: 1_000_000_000,
                        wait: interruption.wait, stopRequested: { interruption.received != 0 })
        }
        print(options.json ? report.json() : report.text(), terminator: options.json ? "\n" : "")
    }
}

/// Starts a session on `devices`, runs `body` (which traces while traffic flows),
/// and returns the report. A signal during set-up exits cleanly; one later still
/// reports. Errors are thrown as one line.
func runTrace(devices: [DeviceSelection], names: NameTable, maxFlows: Int, topFlows: Int = Report.defaultTopFlows,
              tracer: TracerOptions,
              interruption: Interruption, recording: RecordingTarget? = nil, hostRoot: String = "/",
              body: (TraceSession) throws -> Void) throws -> Report {
    let session: TraceSession
    do {
        session = try TraceSession(devices: devices, options: tracer, names: names, flowCapacity: maxFlows,
                                   topFlows: topFlows, recording: recording, hostRoot: hostRoot)
    } catch {
        throw CLIError(error.description)
    }
    if interruption.received != 0 {
        _ = try? session.stop()
        try interruption.checkDuringSetup("attaching")
    }
    progress("tracing \(devices.count) devices (\(devices.map(\.label).prefix(6).joined(separator: ", "))"
             + (devices.count > 6 ? ", ..." : "") + "); Ctrl-C to stop early")
    session.start()
    do {
        try body(session)
    } catch {
        _ = try? session.stop()
        throw error
    }
    do {
        let report = try session.stop()
        if interruption.received != 0 { progress("interrupted: reporting what was traced") }
        return report
    } catch let e as RecordingError {
        throw CLIError("\(e); \(recording?.writer?.path ?? "the recording") is readable up to its last complete chunk")
    } catch {
        throw CLIError("trace failed: \(error)")
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

    @Option(help: "A Kubernetes pod to trace, NAMESPACE/NAME: its veths, pod side and host side (repeatable).")
    var pod: [String] = []

    @Option(help: "A container to trace, by name (repeatable).")
    var container: [String] = []

    @Option(name: .customLong("namespace"), help: "Trace every pod of this Kubernetes namespace (repeatable).")
    var kubernetesNamespace: [String] = []

    @Option(help: "Where the host's /proc, /run, /var/log/pods and container runtime state are (an agent in a container: /host).")
    var hostRoot: String = "/"

    var workloads: WorkloadSelection {
        WorkloadSelection(pods: pod, containers: container, kubernetesNamespaces: kubernetesNamespace)
    }

    func validate() throws {
        let ways = [allVeth, !interfaces.isEmpty, !workloads.isEmpty].filter { $0 }.count
        if ways > 1 { throw ValidationError("choose devices one way: --all-veth, --iface, or --pod/--container/--namespace") }
        if ways == 0 {
            throw ValidationError("choose devices: --all-veth, --iface NAME (with --netns NAME), --pod NAMESPACE/NAME, "
                                  + "--container NAME or --namespace NS; 'hoptrace list' shows them")
        }
        if let why = Discovery.problem(withHostRoot: hostRoot) { throw ValidationError(why) }
        for p in pod where p.split(separator: "/").count != 2 {
            throw ValidationError("bad --pod '\(p)': give NAMESPACE/NAME, e.g. default/web-7d9f")
        }
    }

    /// What was chosen: the devices, the node's names, and whether they are every
    /// veth of the node (then hops start only at traced devices: no hook is needed
    /// for hops from untraced ones).
    struct Resolved {
        var devices: [DeviceSelection]
        var names: NameTable
        var everyVeth: Bool
    }

    func resolve() throws -> Resolved {
        let topology = Discovery.topology(root: hostRoot)
        do {
            let devices = try topology.select(allVeth: allVeth, netns: netns, interfaces: interfaces, workloads: workloads)
            let veths = Set(((try? topology.select(allVeth: true, netns: nil, interfaces: [])) ?? []).map(\.label))
            return Resolved(devices: devices, names: topology.names, everyVeth: veths.isSubset(of: devices.map(\.label)))
        } catch {
            throw CLIError(error.description)
        }
    }
}

func requireRoot() throws {
    if geteuid() != 0 {
        throw CLIError("tracing needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN); run with sudo")
    }
}
