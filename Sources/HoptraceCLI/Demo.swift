import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTracer

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build a namespace lab, run built-in traffic through it, trace it, report.",
        discussion: """
        Two container namespaces joined by a bridge in a hub namespace (or by routing
        with --routed). Traffic: TCP request/response, TCP bulk and UDP, all built in.
        The lab is removed afterwards, also on Ctrl-C, unless --keep.

        Examples:
          sudo hoptrace demo
          sudo hoptrace demo --routed --json
          sudo hoptrace demo --keep      # then: hoptrace list
        """
    )

    @Flag(help: "Leave the lab up afterwards.")
    var keep = false

    @Flag(help: "Join the containers by routing instead of a bridge.")
    var routed = false

    @Flag(help: "Print the report as JSON.")
    var json = false

    @Option(help: "Request/response exchanges.")
    var requests: Int = 5000

    @Option(help: "Seconds of TCP bulk traffic.")
    var bulkSeconds: Double = 2

    @Option(help: "UDP datagrams.")
    var datagrams: Int = 5000

    func validate() throws {
        guard requests >= 1, datagrams >= 1 else { throw ValidationError("--requests and --datagrams must be at least 1") }
        guard bulkSeconds > 0, bulkSeconds <= 20 else { throw ValidationError("--bulk-seconds must be in (0, 20]") }
    }

    func run() throws {
        // first: a Ctrl-C while the lab is being built still removes it
        let interruption = Interruption.install()
        try requireRoot()
        let swept = Lab.sweepOrphans()
        if !swept.isEmpty { progress("removed \(swept.count) namespaces left by a killed run") }
        progress("building a lab: 2 containers \(routed ? "routed through" : "on a bridge in") a hub namespace")
        let lab: Lab
        do { lab = try Lab(containers: 2, topology: routed ? .routed : .bridge, persistent: keep) } catch {
            try interruption.checkDuringSetup("building the lab")
            throw CLIError("could not build the lab: \(error)")
        }
        defer { if !keep || interruption.received != 0 { lab.teardown() } }
        try interruption.checkDuringSetup("building the lab")
        let a = lab.containers[0], b = lab.containers[1]
        var options = try TraceOptions.parse(["--bpf-stats"]) // the demo shows what tracing costs
        options.json = json
        var tracer = options.tracer.tracerOptions(allVeth: true) // every veth of the lab is traced
        tracer.runTimeStats = true
        let summary = TrafficSummary()
        let report = try runTrace(devices: lab.devices, names: Discovery.topology().names, maxFlows: options.tracer.maxFlows,
                                  topFlows: options.top, tracer: tracer,
                                  interruption: interruption) { session in
            let done = Done()
            let traffic = Thread {
                summary.run(a: a, b: b, requests: requests, bulkSeconds: bulkSeconds, datagrams: datagrams)
                done.set()
                interruption.finish()
            }
            traffic.start()
            session.run(until: Date().addingTimeInterval(60), windowNs: 1_000_000_000, wait: interruption.wait,
                        stopRequested: { interruption.received != 0 || done.isSet })
        }
        if interruption.received != 0 { progress("interrupted: \(keep ? "lab removed anyway" : "lab removed")") }
        if json {
            print(report.json())
        } else {
            print(report.text(), terminator: "")
            print(summary.text)
        }
        if keep && interruption.received == 0 {
            progress("lab kept: namespaces \(lab.namespaces.joined(separator: " ")); remove with 'ip netns del NAME'")
        }
    }
}

/// A flag one thread sets and another reads.
final class Done: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    func set() { lock.withLock { value = true } }
    var isSet: Bool { lock.withLock { value } }
}

/// Runs the demo's traffic and keeps what the applications measured.
final class TrafficSummary: @unchecked Sendable {
    private let lock = NSLock()
    private var lines: [String] = []

    var text: String { lock.withLock { "TRAFFIC (as the applications saw it)\n" + lines.map { "  " + $0 }.joined(separator: "\n") + "\n" } }

    private func add(_ s: String) { lock.withLock { lines.append(s) } }

    func run(a: Lab.Container, b: Lab.Container, requests: Int, bulkSeconds: Double, datagrams: Int) {
        do {
            let rr = try Traffic.tcpRequestResponse(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address,
                                                    port: 7001, requests: requests)
            var h = Histogram()
            rr.roundTripsNs.forEach { h.record($0) }
            add("tcp request/response \(a.name)->\(b.name): \(requests) x 64 B, round trip p50 \(formatNs(h.value(atQuantile: 0.5))), p99 \(formatNs(h.value(atQuantile: 0.99)))")
            let bulk = try Traffic.tcpBulk(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address,
                                           port: 7002, seconds: bulkSeconds)
            add("tcp bulk \(a.name)->\(b.name): \(bulk.bytesReceived >> 20) MiB in \(String(format: "%.1f", bulk.seconds)) s, \(String(format: "%.2f", bulk.gbitPerSecond)) Gbit/s, \(bulk.bytesReceived == bulk.bytesSent ? "all bytes arrived" : "LOST \(bulk.bytesSent - bulk.bytesReceived) bytes")")
            let udp = try Traffic.udp(client: a.netnsPath, server: b.netnsPath, serverAddress: b.address,
                                      port: 7003, count: datagrams, intervalUs: 50)
            add("udp \(a.name)->\(b.name): \(udp.received) of \(udp.sent) datagrams arrived")
        } catch {
            add("traffic failed: \(error)")
        }
    }
}
