import Foundation
import HoptraceCore
import HoptraceMetrics
import HoptraceNode
import HoptraceRecording
import HoptraceTracer

/// How the agent runs (`hoptrace serve`'s options).
public struct AgentOptions: Sendable {
    /// Where the host's /proc, /run, /var/log/pods ... are (the container's /host).
    public var hostRoot = "/"
    public var tracer = TracerOptions()
    /// What tracing may cost, percent of the node's CPU (all of its CPUs).
    public var cpuBudgetPercent = 2.0
    public var budgetPeriodSeconds = 10.0
    /// Windows: the triggers' and incident recordings' unit, and the metrics' refresh.
    public var windowNs: UInt64 = 1_000_000_000
    public var triggers: [Trigger] = []
    /// Backlog drops in /proc/net/softnet_stat trigger an incident (off unless asked:
    /// a flood that overruns a backlog now and then would keep tracing continuous).
    public var softnetTrigger = false
    /// Incident recordings go here, a file each (none when nil).
    public var incidentsDirectory: String?
    public var keepBytes: UInt64 = 2 << 30
    /// Kept in memory before a trigger, and traced continuously after it.
    public var beforeSeconds = 30.0
    public var maxIncidentSeconds = 30.0
    public var cooldownSeconds = 60.0
    /// The node is read again this often even without a notification (a safety net).
    public var rescanSeconds = 30.0
    public var flowCapacity = 10_000
    public var version = ""

    public init() {}
}

/// The node agent: one trace session, loaded once, that follows the node's veths
/// as they come and go, stays within a CPU budget, watches triggers, writes
/// incidents, and keeps what it serves (metrics in each format asked for, the
/// report, the incident list) ready in memory, rebuilt each window, so a request
/// only copies bytes. `run` is its loop, on the caller's thread; the other public
/// methods may be called from any thread (the HTTP server's).
public final class Agent: @unchecked Sendable {
    public let options: AgentOptions
    private let session: TraceSession
    private let watcher: NodeWatcher
    private var duty: DutyCycle
    private let flight: FlightRecorder
    public let store: IncidentStore?
    private let startedAt = Date()
    private var lastRescan = Date.distantPast
    /// Devices attached per pass of the loop: about a second of tcx attaches here.
    static let attachBatch = 64
    /// Wanted devices not attached yet.
    private var pending = 0
    private var firstAttachDone: Date?
    /// Called once every device found at start is attached: how many, seconds since start.
    public var onAttached: ((Int, Double) -> Void)?
    private var softnetDrops: UInt64?

    /// Guards what the HTTP side reads and asks for.
    private let lock = NSLock()
    private var snapshot = MetricsSnapshot()
    private var encoded: [String: [UInt8]] = [:]      // by content type
    private var formatsAsked: [String: Exposition.Format] = [:]
    private var lastServed: [String: Date] = [:]
    private let reportLock = NSLock()
    private var reportJSON: [UInt8] = Array("{}".utf8)
    private var reportMadeAt = Date.distantPast
    private var incidentCounts: [String: UInt64] = [:]
    private var requested: String?
    private var lastWindowAt = Date()
    private var devicesTraced = 0
    private var devicesPending = 0
    private var lastChanges: String = ""
    private var incidentError: String?
    private var activeRatio = 1.0
    /// The kernel's drop reason names, read from its BTF once.
    private let dropReasons = DropReasons.running()

    /// Reads the node, loads the programs and attaches to every veth (none is fine:
    /// pods come later). Needs root (or the capabilities `Privileges.kept` lists
    /// plus CAP_SYS_ADMIN at load).
    public init(options: AgentOptions) throws(AgentError) {
        self.options = options
        let cpus = max(1, ProcessInfo.processInfo.activeProcessorCount)
        duty = DutyCycle(budget: options.cpuBudgetPercent / 100 * Double(cpus), period: options.budgetPeriodSeconds)
        let topology = Discovery.topology(root: options.hostRoot)
        var tracer = options.tracer
        tracer.runTimeStats = true // the budget is measured, not guessed
        let windows = { (seconds: Double) in max(1, Int((seconds * 1e9 / Double(options.windowNs)).rounded(.up))) }
        let names = topology.names
        let context = context
        var store: IncidentStore?
        if let dir = options.incidentsDirectory {
            do throws(RecordingError) {
                store = try IncidentStore(directory: dir, keepBytes: options.keepBytes) { [context, windowNs = options.windowNs,
                                                                                          version = options.version, budget = options.cpuBudgetPercent] in
                    // called under the session's lock (from its window): only the context here
                    let now = context.read()
                    var m = TraceSession.recordingMetadata(devices: now.devices, names: now.names ?? names,
                                                           options: tracer, windowNs: windowNs, version: version)
                    // what was traced before the trigger: the budget's share of it
                    m.settings["cpu_budget_percent"] = String(budget)
                    m.settings["tracing_share"] = String(format: "%.3f", now.share)
                    return m
                }
            } catch {
                throw AgentError("\(error); choose another --incidents directory")
            }
        }
        self.store = store
        flight = FlightRecorder(output: store.map { .store($0) } ?? .discard, triggers: options.triggers,
                                keepWindows: windows(options.beforeSeconds), afterWindows: windows(options.maxIncidentSeconds),
                                cooldownWindows: windows(options.cooldownSeconds), maxRecords: 500_000, reasons: DropReasons.running())
        do {
            // devices are attached by `run`, in batches, while the agent serves
            session = try TraceSession(devices: [], options: tracer, names: names, flowCapacity: options.flowCapacity,
                                       recording: .flightRecorder(flight), hostRoot: options.hostRoot)
        } catch {
            throw AgentError("cannot start tracing: \(error)")
        }
        watcher = NodeWatcher(root: options.hostRoot)
        watcher.watch(namespaces: topology.namespaces)
        softnetDrops = Softnet.backlogDrops(procRoot: Self.procRoot(options.hostRoot))
    }

    private static func procRoot(_ hostRoot: String) -> String { (hostRoot.hasSuffix("/") ? hostRoot : hostRoot + "/") + "proc" }

    static func monotonicSeconds() -> Double { Double(monotonicNs()) / 1e9 }

    /// Devices attached now.
    public var devices: [DeviceSelection] { session.devices }

    /// What a new incident's metadata says of the agent: the devices and names as of
    /// the last read of the node, the budget's share. Kept apart from the session:
    /// an incident starts under the session's lock.
    final class IncidentContext: @unchecked Sendable {
        private let lock = NSLock()
        private var devices: [DeviceSelection] = []
        private var names: NameTable?
        private var share = 1.0
        func update(devices: [DeviceSelection]? = nil, names: NameTable? = nil, share: Double? = nil) {
            lock.withLock {
                if let devices { self.devices = devices }
                if let names { self.names = names }
                if let share { self.share = share }
            }
        }
        func read() -> (devices: [DeviceSelection], names: NameTable?, share: Double) { lock.withLock { (devices, names, share) } }
    }
    private let context = IncidentContext()

    /// Runs (after `start`) until `stopRequested()`: follows the node, keeps the budget, closes a
    /// window each `windowNs` (triggers, incidents, metrics). `signalRequested()`
    /// (SIGUSR1) asks for an incident. Returns promptly (within ~100 ms) once asked.
    /// Starts draining and builds the first snapshot: before the HTTP server's
    /// thread reads anything of the session.
    public func start() {
        session.start()
        rebuild()
    }

    public func run(stopRequested: () -> Bool, signalRequested: () -> Bool = { false }) {
        let window = Double(max(options.windowNs, 10_000_000)) / 1e9
        var nextWindow = Date().addingTimeInterval(window)
        while !stopRequested() {
            // link notifications, devices still to attach, or the safety-net rescan:
            // follow the node. Waits at most 100 ms, less when the budget's next pause
            // or resume is sooner, not at all while devices wait to be attached.
            let untilChange = duty.nextChange - Self.monotonicSeconds()
            let changed = watcher.wait(timeoutMs: pending > 0 ? 0 : Int32(max(1, min(100, untilChange * 1000))))
            if changed || pending > 0 || Date().timeIntervalSince(lastRescan) >= options.rescanSeconds {
                if changed { _ = watcher.wait(timeoutMs: 50) } // a pod's veths come in a burst
                followNode()
            }
            keepBudget()
            if signalRequested() { request("signal") }
            if Date() >= nextWindow {
                nextWindow = Date().addingTimeInterval(window)
                closeWindow()
            }
        }
    }

    /// Reads the node again and attaches to new veths, detaches from gone ones.
    private func followNode() {
        lastRescan = Date()
        let topology = Discovery.topology(root: options.hostRoot)
        let wanted = (try? topology.select(allVeth: true, netns: nil, interfaces: [])) ?? []
        let present = Set(topology.devices.map(\.endpoint))
        let gone = Set(session.devices.compactMap(\.endpoint).filter { !present.contains($0) })
        let changes = session.follow(devices: wanted, gone: gone, names: topology.names, maxNew: Self.attachBatch)
        watcher.watch(namespaces: topology.namespaces)
        pending = changes.pending
        context.update(devices: session.devices, names: session.withAggregate { $1 })
        if !changes.isEmpty || changes.pending > 0 {
            lock.withLock {
                devicesTraced = session.devices.count
                devicesPending = changes.pending
                lastChanges = "+\(changes.attached.count) -\(changes.detached.count)"
                    + (changes.failed.isEmpty ? "" : " failed: " + changes.failed.map { "\($0.device.label): \($0.error)" }.joined(separator: "; "))
            }
        }
        if changes.pending == 0 && firstAttachDone == nil {
            firstAttachDone = Date()
            onAttached?(session.devices.count, firstAttachDone!.timeIntervalSince(startedAt))
        }
    }

    /// What tracing has cost so far: BPF run time and this process's CPU, seconds.
    private func costSoFar() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        let cpu = Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
        return Double(session.bpfRunNs()) / 1e9 + cpu
    }

    private func keepBudget() {
        let now = Self.monotonicSeconds()
        // a budget of 100 % is no budget: continuous
        let on = duty.tracing(now: now, cost: costSoFar,
                              forced: options.cpuBudgetPercent >= 100 || session.isWritingIncident || hasRequest)
        lock.withLock { activeRatio = duty.lastPeriodActiveRatio }
        context.update(share: duty.share)
        if on && session.isPaused {
            try? session.resume()
        } else if !on && !session.isPaused {
            session.pause()
        }
    }

    private var hasRequest: Bool { lock.withLock { requested != nil } }

    /// Asks for an incident at the next window (SIGUSR1, POST /trigger).
    public func request(_ why: String) {
        lock.withLock { if requested == nil { requested = why } }
        // traced from now on, so the incident holds what follows the request
        if session.isPaused { try? session.resume() }
    }

    private func closeWindow() {
        var why = lock.withLock { () -> String? in
            defer { requested = nil }
            return requested
        }
        if options.softnetTrigger, let now = Softnet.backlogDrops(procRoot: Self.procRoot(options.hostRoot)) {
            if let before = softnetDrops, now > before, why == nil { why = "backlog-drops" }
            softnetDrops = now
        }
        for event in session.closeWindow(incidentRequested: why) {
            if case .incident(let fired) = event {
                lock.withLock { incidentCounts[Self.triggerLabel(fired), default: 0] += 1 }
            }
        }
        // an incident file that could not be made or finished (a full disk): said by /healthz
        if let e = flight.storeError { lock.withLock { incidentError = "\(e)" } }
        rebuild()
    }

    /// The `trigger` label of an incident: the trigger as configured, without the
    /// value that fired it ("p99>2.00ms (5.1ms)" -> "p99>2.00ms", "drop NO_SOCKET" ->
    /// "drop:NO_SOCKET"), so the label's values are few.
    static func triggerLabel(_ why: String) -> String {
        if let paren = why.range(of: " (") { return String(why[..<paren.lowerBound]) }
        if why.hasPrefix("drop ") { return "drop:" + why.dropFirst(5) }
        return why
    }

    /// Builds the snapshot and re-encodes every format asked for so far.
    private func rebuild() {
        var s = session.withAggregate { aggregate, names in Self.metrics(aggregate, names: names, reasons: dropReasons) }
        let counters = session.counters()
        s.lostRecords = counters.lost
        s.unseenPackets = counters.unseen
        s.bpfRunSeconds = Double(session.bpfRunNs()) / 1e9
        s.consumerCPUSeconds = Double(session.drainCPUNsSoFar) / 1e9
        s.tracingActiveRatio = duty.lastPeriodActiveRatio
        if let perCPU = session.softirqCounters() {
            for (cpu, vectors) in perCPU.enumerated() {
                for v in SoftirqVector.allCases where v.rawValue < vectors.count {
                    let c = vectors[v.rawValue]
                    guard c.runs > 0 || c.delays > 0 else { continue }
                    s.softirq.append(.init(cpu: cpu, vector: v.key, runSeconds: Double(c.runNs) / 1e9, delay: c.delayHistogram))
                }
            }
        }
        s.builtAtUnixSeconds = Date().timeIntervalSince1970
        s.incidents = lock.withLock { incidentCounts }
        // encoded outside the lock (a scrape meanwhile gets the last window's bytes),
        // only in the formats served in the last minute: 1,000 hops encode in some
        // 40 ms, not to be spent each window for a format nobody reads any more
        let formats = lock.withLock {
            formatsAsked = formatsAsked.filter { Date().timeIntervalSince(lastServed[$0.key] ?? .distantPast) < 60 }
            return formatsAsked
        }
        let fresh = formats.mapValues { Exposition.encode(s, format: $0) }
        lock.withLock {
            snapshot = s
            encoded = fresh
            lastWindowAt = Date()
        }
    }

    /// The snapshot of an aggregate: per hop its latency, segments and packets, drops
    /// by reason; ends named by workload and device.
    static func metrics(_ a: TraceAggregate, names: NameTable, reasons: DropReasons) -> MetricsSnapshot {
        var s = MetricsSnapshot()
        for (key, stats) in zip(a.hops.keys, a.hops.stats) where stats.records > 0 {
            let segments = Segment.allCases.compactMap { seg in stats.segment(seg).map { (segment: seg, latency: $0) } }
            s.hops.append(.init(from: names.label(key.from), to: names.label(key.to), latency: stats.total, segments: segments,
                                packets: stats.packets))
        }
        for (key, count) in a.drops {
            s.drops.append(.init(from: names.label(key.hop.from), to: names.label(key.hop.to), reason: reasons.name(key.reason),
                                 packets: count))
        }
        return s
    }

    // MARK: what the HTTP side serves (any thread)

    /// The metrics in `format`, from the last window's snapshot. A format asked for
    /// the first time is encoded now, and then at every window.
    public func metrics(_ format: Exposition.Format) -> [UInt8] {
        lock.withLock {
            lastServed[format.contentType] = Date()
            if let bytes = encoded[format.contentType] { return bytes }
            formatsAsked[format.contentType] = format
            let bytes = Exposition.encode(snapshot, format: format)
            encoded[format.contentType] = bytes
            return bytes
        }
    }

    /// The current report (schema of `hoptrace trace --json`). Made when asked (it
    /// ranks every flow: too much to make every window for a page rarely read), at
    /// most once a second.
    public var report: [UInt8] {
        reportLock.withLock {
            if Date().timeIntervalSince(reportMadeAt) >= 1 {
                let enc = JSONEncoder()
                enc.outputFormatting = [.sortedKeys]
                var report = session.snapshot()
                report.tracerCost?.tracingShare = lock.withLock { activeRatio }
                reportJSON = (try? enc.encode(report)).map { Array($0) } ?? Array("{}".utf8)
                reportMadeAt = Date()
            }
            return reportJSON
        }
    }

    /// Incident files, oldest first, as JSON.
    public var incidentsJSON: [UInt8] {
        struct Listing: Encodable {
            var directory: String?
            var keepBytes: UInt64
            var files: [IncidentStore.File]
            var incidents: [String: UInt64]
        }
        let listing = Listing(directory: store?.directory, keepBytes: options.keepBytes, files: store?.files() ?? [],
                              incidents: lock.withLock { incidentCounts })
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        enc.keyEncodingStrategy = .convertToSnakeCase
        return (try? enc.encode(listing)).map { Array($0) } ?? []
    }

    /// Healthy while windows close on time (the loop is alive); the text says how
    /// the agent is doing.
    public var health: (ok: Bool, text: String) {
        lock.withLock {
            let late = Date().timeIntervalSince(lastWindowAt)
            let ok = late < 10 * Double(options.windowNs) / 1e9 + 5
            let text = "\(ok ? "ok" : "stalled: no window closed for \(Int(late)) s"); devices \(devicesTraced); "
                + (devicesPending > 0 ? "attaching \(devicesPending) more; " : "")
                + "tracing share \(String(format: "%.2f", context.read().share)); incidents \(incidentCounts.values.reduce(0, +))"
                + (lastChanges.isEmpty ? "" : "; last change \(lastChanges)")
                + (incidentError.map { "; incident files failing: \($0)" } ?? "") + "\n"
            return (ok, text)
        }
    }

    /// Stops tracing: detaches everything, ends an incident being written.
    public func stop() {
        _ = try? session.stop()
    }
}
