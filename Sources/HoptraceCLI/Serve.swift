import ArgumentParser
import Foundation
import HoptraceAgent
import HoptraceCore
import HoptraceHTTP
import HoptraceMetrics
import HoptraceNode
import HoptraceRecording

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run as the node agent: trace every veth within a CPU budget, serve Prometheus metrics, record incidents.",
        discussion: """
        Stays on: follows veths as pods come and go, traces for a share of each
        period sized to keep its cost under --cpu-budget (continuously while an
        incident is recorded), and serves, from what the last window built:
          /metrics    Prometheus text 0.0.4 (OpenMetrics, or native histograms over
                      protobuf with --native-histograms, when the Accept header asks)
          /healthz    200 while windows close on time
          /report     the current report as JSON (the schema of 'trace --json')
          /incidents  incident files and counts, as JSON
          /trigger    POST, from a loopback address only: record an incident now
        SIGUSR1 records an incident too. SIGTERM or SIGINT: the incident being
        written is finished, everything detached, exit 0.

        Examples:
          hoptrace serve
          hoptrace serve --listen 0.0.0.0:9479 --incidents /var/lib/hoptrace --trigger 'p99>2ms' --keep 2GiB
          hoptrace serve --incidents /var/lib/hoptrace --trigger backlog-drops --trigger drop:NETFILTER_DROP
          hoptrace serve --host-root /host --cpu-budget 1%        # in a container (deploy/kubernetes/hoptrace.yaml)
          curl -s localhost:9479/metrics | grep hoptrace_hop_latency
          curl -s -X POST localhost:9479/trigger
        """
    )

    @Option(help: "Address and port to serve on, e.g. 127.0.0.1:9479, 0.0.0.0:9479, [::1]:9479.")
    var listen = "127.0.0.1:9479"

    @Option(help: "Where the host's /proc, /run, /var/log/pods and runtime state are (an agent in a container: /host).")
    var hostRoot = "/"

    @Option(help: "CPU the tracing may cost, percent of the node's CPUs, e.g. 2% (100%: trace continuously).",
            transform: { try parsePercent($0, "--cpu-budget") })
    var cpuBudget = 2.0

    @Option(help: "The budget's period: each traces for its share of it, at a random offset.",
            transform: { try parsePositiveDuration($0, "--budget-period", example: "10s") })
    var budgetPeriod = DurationArgument(ns: 10_000_000_000)

    @Option(help: "Write incident recordings here, a file each (mode 0600). Without it incidents are counted, not written.")
    var incidents: String?

    @Option(help: "Keep the incident files under this size, deleting the oldest first, e.g. 2GiB, 500MiB.",
            transform: { try parseBytes($0, "--keep") })
    var keep: UInt64 = 2 << 30

    @Option(help: "Trigger an incident: p99>DURATION, max>DURATION, drop, drop:REASON or backlog-drops (packets dropped on a full CPU backlog, /proc/net/softnet_stat) (repeatable). SIGUSR1 and POST /trigger always do.",
            transform: { text in
                if text == "backlog-drops" { return .backlogDrops }
                guard let t = Trigger(text) else {
                    throw ValidationError("bad --trigger '\(text)': use p99>2ms, max>10ms, drop, drop:NO_SOCKET or backlog-drops")
                }
                return .window(t)
            })
    var trigger: [ServeTrigger] = []

    @Option(help: "Records kept in memory before a trigger, written with the incident.",
            transform: { try parsePositiveDuration($0, "--before", example: "30s") })
    var before = DurationArgument(ns: 30_000_000_000)

    @Option(help: "How long an incident traces continuously (whatever the budget) and records after its trigger.",
            transform: { try parsePositiveDuration($0, "--max-incident", example: "30s") })
    var maxIncident = DurationArgument(ns: 30_000_000_000)

    @Option(help: "After an incident, how long before another can start.",
            transform: { try parseDuration($0, "--cooldown", example: "60s") })
    var cooldown = DurationArgument(ns: 60_000_000_000)

    @Option(help: "Window: the unit of triggers and incidents, and how often metrics are rebuilt.",
            transform: { try parsePositiveDuration($0, "--window", example: "1s") })
    var window = DurationArgument(ns: 1_000_000_000)

    @Flag(help: "Serve Prometheus native histograms (protobuf exposition) to servers that ask for them.")
    var nativeHistograms = false

    @Option(help: "Trace NET_RX/NET_TX softirqs and NAPI polls: on or off.")
    var softirq: Switch = .on

    @Option(help: "How to hook the veths: auto (tcx, clsact where tcx is missing), tcx, clsact. A tcx link waits an RCU grace period to attach and to detach (some 15 ms each here: 1,000 veth ends take 15 s each way); clsact filters take a fraction of that but outlive a SIGKILL (the next start removes them).")
    var attach: AttachChoice = .auto

    @Flag(help: "Keep every capability (no drop to the agent's set after loading); for debugging.")
    var keepCapabilities = false

    func validate() throws {
        guard window.ns >= 100_000_000 else { throw ValidationError("bad --window '\(formatNs(window.ns))': at least 100ms, e.g. 1s") }
        guard maxIncident.ns <= 600_000_000_000 else { throw ValidationError("bad --max-incident: at most 10m") }
        if let problem = Discovery.problem(withHostRoot: hostRoot) { throw ValidationError(problem) }
    }

    func run() throws {
        let interruption = Interruption.install()
        try requireRoot()
        var o = AgentOptions()
        o.hostRoot = hostRoot
        o.cpuBudgetPercent = cpuBudget
        o.budgetPeriodSeconds = budgetPeriod.seconds
        o.windowNs = window.ns
        o.triggers = trigger.compactMap { if case .window(let t) = $0 { t } else { nil } }
        o.softnetTrigger = trigger.contains { if case .backlogDrops = $0 { true } else { false } }
        o.incidentsDirectory = incidents
        o.keepBytes = keep
        o.beforeSeconds = before.seconds
        o.maxIncidentSeconds = maxIncident.seconds
        o.cooldownSeconds = cooldown.seconds
        o.tracer.softirq = softirq == .on
        o.tracer.attachMode = attach.mode
        o.tracer.hopsFromUntracedDevices = false // every veth is traced
        o.version = hoptraceVersion
        let started = Date()
        let agent: Agent
        do { agent = try Agent(options: o) } catch { throw CLIError(error.description) }
        defer { agent.stop() }
        try interruption.checkDuringSetup("loading the BPF programs")
        let native = nativeHistograms
        let server: HTTPServer
        do {
            server = try HTTPServer(listen: listen) { request in Self.respond(to: request, agent: agent, nativeHistograms: native) }
        } catch {
            throw CLIError(error.description)
        }
        // loaded and listening: from here on only what following the node needs.
        // Capabilities are per thread, and threads made later inherit them: dropped
        // before any other thread exists (the drain, the HTTP server, dispatch's)
        if !keepCapabilities {
            do { try Privileges.dropToKept() } catch { throw CLIError(error.description) }
        }
        let usr1 = SignalFlag(SIGUSR1)
        agent.start()
        server.start()
        defer { server.stop() }
        progress(String(format: "serving on %@ (port %d) %.0f ms after start; CPU budget %g%%",
                        listen, Int(server.port), Date().timeIntervalSince(started) * 1000, cpuBudget)
                 + (incidents.map { "; incidents in \($0)" } ?? ""))
        agent.onAttached = { count, seconds in
            progress(String(format: "%d devices attached in %.0f ms (every veth on the node; new ones as they come)", count, seconds * 1000))
        }
        agent.run(stopRequested: { interruption.received != 0 }, signalRequested: { usr1.take() })
        progress("stopping (\(interruption.received == SIGTERM ? "SIGTERM" : "interrupted")): finishing incidents, "
                 + "detaching \(agent.devices.count) devices")
    }

    /// The routes. Every answer is a copy of what the agent built at its last window.
    static func respond(to r: HTTPRequest, agent: Agent, nativeHistograms: Bool) -> HTTPResponse {
        let get = r.method == "GET" || r.method == "HEAD"
        switch r.path {
        case "/metrics":
            guard get else { return .methodNotAllowed(allow: ["GET", "HEAD"]) }
            let format = Exposition.Format.negotiate(accept: r.headers["accept"], nativeHistograms: nativeHistograms)
            return HTTPResponse(contentType: format.contentType, body: agent.metrics(format))
        case "/healthz":
            guard get else { return .methodNotAllowed(allow: ["GET", "HEAD"]) }
            let h = agent.health
            return .text(h.text, status: h.ok ? 200 : 503)
        case "/report":
            guard get else { return .methodNotAllowed(allow: ["GET", "HEAD"]) }
            return HTTPResponse(contentType: "application/json", body: agent.report)
        case "/incidents":
            guard get else { return .methodNotAllowed(allow: ["GET", "HEAD"]) }
            return HTTPResponse(contentType: "application/json", body: agent.incidentsJSON)
        case "/trigger":
            guard r.method == "POST" else { return .methodNotAllowed(allow: ["POST"]) }
            guard r.peerIsLoopback else { return .text("POST /trigger is accepted from the node itself (loopback) only\n", status: 403) }
            agent.request("http")
            return .text("incident requested: it starts at the next window, unless one is being written or cooling down (see /incidents)\n",
                         status: 202)
        case "/":
            guard get else { return .methodNotAllowed(allow: ["GET", "HEAD"]) }
            return .text("hoptrace \(hoptraceVersion): /metrics /healthz /report /incidents, POST /trigger\n")
        default:
            return .notFound
        }
    }
}

/// What `serve --trigger` accepts: a trigger checked on each window's hops, or
/// the node's backlog drops.
enum ServeTrigger {
    case window(Trigger)
    case backlogDrops
}

/// "2%" or "2": a percentage in (0, 100].
func parsePercent(_ text: String, _ name: String) throws -> Double {
    let t = text.hasSuffix("%") ? String(text.dropLast()) : text
    guard let v = Double(t), v > 0, v <= 100 else {
        throw ValidationError("bad \(name) '\(text)': a percentage above 0 and at most 100, e.g. 2%")
    }
    return v
}

/// "2GiB", "500MiB", "1G", "4096": bytes (powers of 1024 for K/M/G/T, with or without "iB"/"B").
func parseBytes(_ text: String, _ name: String) throws -> UInt64 {
    let units: [(String, UInt64)] = [("TIB", 1 << 40), ("GIB", 1 << 30), ("MIB", 1 << 20), ("KIB", 1 << 10),
                                     ("TB", 1 << 40), ("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10),
                                     ("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10), ("B", 1)]
    let t = text.uppercased().replacingOccurrences(of: " ", with: "")
    for (suffix, factor) in units + [("", 1)] where t.hasSuffix(suffix) {
        if let v = Double(t.dropLast(suffix.count)), v > 0, v * Double(factor) < 1.8e19 { return UInt64(v * Double(factor)) }
        break
    }
    throw ValidationError("bad \(name) '\(text)': a size such as 2GiB, 500MiB or 1048576")
}
