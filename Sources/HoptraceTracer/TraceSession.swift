import Foundation
import HoptraceCore
import HoptraceNode
import HoptraceRecording

/// Where a session's records go besides its aggregate.
public enum RecordingTarget {
    /// Every record, to a recording file.
    case file(RecordingWriter)
    /// Only the windows around incidents, through a flight recorder (to its writer).
    case flightRecorder(FlightRecorder)

    /// The recording being written (for a flight recorder with a file per incident,
    /// the open incident's, if any).
    public var writer: RecordingWriter? {
        switch self {
        case .file(let w): w
        case .flightRecorder(let f): f.writer
        }
    }

    var sink: RecordSink {
        switch self {
        case .file(let w): w
        case .flightRecorder(let f): f
        }
    }
}

/// What a session's window loop saw, for the command to tell the user.
public enum SessionEvent: Sendable {
    /// The flight recorder started writing an incident.
    case incident(String)
    /// The recording failed (full disk, I/O error); tracing stopped there.
    case recordingStopped(String)
}

/// One trace from start to report: loads the tracer, attaches it, drains records
/// into the aggregate on a dedicated thread, closes windows (a recording's status
/// chunks, the flight recorder's decisions) and turns the result into a report.
/// Every command that traces (trace, record, demo, the agent) runs one; the drain
/// thread's lock stays inside. Whatever happens, `stop()` (or deinit) detaches
/// everything.
public final class TraceSession: @unchecked Sendable {
    /// The devices attached now (the agent's change as the node does).
    public var devices: [DeviceSelection] { lock.withLock { attachments.map(\.device) } }
    private var attachments: [(device: DeviceSelection, attachment: Tracer.Attachment)] = []
    public let options: TracerOptions
    public var names: NameTable
    private let tracer: Tracer
    private var drain: DrainThread?
    private let lock = NSLock()
    private var aggregate: TraceAggregate
    private var kept: [HopRecord] = []
    private let keepRecords: Int
    private let topFlows: Int
    private let recording: RecordingTarget?
    private let sink: RecordSink?
    private var decodeError: RecordDecodingError?
    private var startWall = Date()
    private var startStats: [Tracer.ProgramStats] = []
    private var statsAvailable = false
    private var drainCPUNs: UInt64?
    private lazy var dropReasons = DropReasons.running()

    /// Loads the BPF programs and attaches them to `devices` (needs root).
    /// `keepRecords` keeps up to that many raw records for `records` (tests, exports).
    /// Whether net_dev_start_xmit is attached: left off while no traced device has a
    /// queue, attached (from the drain thread) once one has.
    private var transmitAttached: Bool
    private var queuesCheckedAt = Date()
    /// Hop ends the node was read again for (`refreshNamesIfUnknown`).
    private var namesLookedFor = Set<Endpoint>()

    /// Where the host's /proc etc. are, to name namespaces that appear during the trace.
    private let hostRoot: String

    public init(devices: [DeviceSelection], options: TracerOptions = TracerOptions(), names: NameTable = NameTable(),
                flowCapacity: Int = FlowTable.defaultCapacity, topFlows: Int = Report.defaultTopFlows, keepRecords: Int = 0,
                recording: RecordingTarget? = nil, hostRoot: String = "/") throws(TracerError) {
        self.hostRoot = hostRoot
        self.topFlows = topFlows
        self.recording = recording
        sink = recording?.sink
        // the hook that ends the qdisc segment only while a traced device has a queue
        var options = options
        if options.transmitHook && Discovery.devicesWithQueue(devices).isEmpty { options.transmitHook = false }
        self.options = options
        self.names = names
        self.keepRecords = keepRecords
        aggregate = TraceAggregate(flowCapacity: flowCapacity)
        transmitAttached = options.transmitHook
        tracer = try Tracer(options: options)
        do {
            try tracer.attachTracepoints()
            if options.softirq { try tracer.attachSoftirq() }
            // all at once; clsact filters a killed hoptrace left are removed first
            for (d, result) in zip(devices, tracer.attach(devices: devices)) { attachments.append((d, try result.get())) }
        } catch {
            tracer.close()
            throw error
        }
        statsAvailable = options.runTimeStats && (try? tracer.enableRunTimeStats()) != nil
    }

    deinit { tracer.close() }

    public func start() {
        startWall = Date()
        startStats = (try? tracer.programStats()) ?? []
        let d = DrainThread(tracer: tracer, tick: { [self] in attachTransmitHookIfQueued() }) { [self] batch in
            lock.withLock {
                do throws(RecordDecodingError) {
                    let columns = try aggregate.add(batch: batch)
                    sink?.append(columns)
                    for i in 0..<min(columns.count, keepRecords - kept.count) { kept.append(columns[i]) }
                } catch {
                    decodeError = error
                }
            }
        }
        drain = d
        d.start()
    }

    /// On the drain thread, once a second while net_dev_start_xmit is off: a qdisc
    /// added to a traced device (`tc qdisc add ... tbf`) gets the hook attached, so
    /// its qdisc segment is measured from then on (packets it held before were
    /// counted unseen).
    private func attachTransmitHookIfQueued() {
        guard !transmitAttached, Date().timeIntervalSince(queuesCheckedAt) >= 1 else { return }
        queuesCheckedAt = Date()
        if !Discovery.devicesWithQueue(self.devices).isEmpty, (try? tracer.attachTransmitHook()) != nil {
            transmitAttached = true
        }
    }

    /// Traces until `deadline`, or until `stopRequested()` says so, closing a window
    /// every `windowNs`: the recording gets a status chunk (counters, softirq time)
    /// per window, or the flight recorder decides whether an incident starts (and
    /// takes `incidentRequested()`, e.g. SIGUSR1, as one). `wait(seconds)` sleeps and
    /// may return early (a signal, the work finishing). A failed recording stops the
    /// loop. Returns when done; `stop()` then gives the report.
    public func run(until deadline: Date, windowNs: UInt64, wait: (Double) -> Void, stopRequested: () -> Bool,
                    incidentRequested: () -> String? = { nil }, onEvent: (SessionEvent) -> Void = { _ in }) {
        let window = Double(max(windowNs, 1_000_000)) / 1e9
        var nextWindow = Date().addingTimeInterval(window)
        while !stopRequested() {
            let now = Date()
            if now >= deadline { break }
            if now < nextWindow {
                wait(min(nextWindow, deadline).timeIntervalSince(now))
                continue
            }
            nextWindow = nextWindow.addingTimeInterval(window)
            let events = closeWindow(incidentRequested: incidentRequested())
            for e in events { onEvent(e) }
            if events.contains(where: { if case .recordingStopped = $0 { true } else { false } }) { break }
        }
    }

    /// One window's work, at its end: names for hops that reach unknown ends, and
    /// the recording's status chunk or the flight recorder's decision (`why`: an
    /// incident asked for, e.g. SIGUSR1). Returns what happened; a failed recording
    /// is `.recordingStopped` (stop tracing then).
    public func closeWindow(incidentRequested why: String? = nil) -> [SessionEvent] {
        refreshNamesIfUnknown()
        guard let recording else { return [] }
        let status = RecordingStatus(monotonicNs: monotonicNs(), counters: counters(), softirqRunNs: softirqRunNs())
        var events: [SessionEvent] = []
        let fired: String? = lock.withLock {
            switch recording {
            case .file(let w):
                w.write(status: status)
                return nil
            case .flightRecorder(let f):
                if let why { f.request(why) }
                f.names = names
                return f.closeWindow(status: status)
            }
        }
        if let fired { events.append(.incident(fired)) }
        if let e = lock.withLock({ recording.writer?.error }) { events.append(.recordingStopped("\(e)")) }
        return events
    }

    /// Whether the flight recorder is writing an incident (its after-windows).
    public var isWritingIncident: Bool {
        guard case .flightRecorder(let f) = recording else { return false }
        return lock.withLock { f.isWriting }
    }

    /// What `follow` changed.
    public struct DeviceChanges: Sendable {
        public var attached: [DeviceSelection] = []
        public var detached: [DeviceSelection] = []
        /// Devices that could not be attached (gone meanwhile, or a kernel refusal), with why.
        public var failed: [(device: DeviceSelection, error: String)] = []
        /// Wanted devices left for a later call (`maxNew`).
        public var pending = 0
        public var isEmpty: Bool { attached.isEmpty && detached.isEmpty && failed.isEmpty }
    }

    /// Follows the node (the agent): attaches the devices of `wanted` not attached
    /// yet and detaches those attached and no longer wanted, matching devices by
    /// endpoint (their labels change as names are learnt) and ingress. The hops and
    /// drops of devices that left (`gone`) are forgotten: their series end. `newNames`
    /// (the node read again) win over the names known, which stay for what is gone.
    /// Works paused too: new devices' tcx programs pause with the rest (the switch
    /// is global).
    /// At most `maxNew` devices are attached per call (`pending` says how many wait):
    /// a tcx attach waits for an RCU grace period under the RTNL lock, about 15 ms
    /// each here, so the agent attaches a node's worth in batches and serves meanwhile.
    public func follow(devices wanted: [DeviceSelection], gone: Set<Endpoint>, names newNames: NameTable,
                       maxNew: Int = .max) -> DeviceChanges {
        struct Key: Hashable { var endpoint: Endpoint?, ifname: String, netnsPath: String, ingress: Bool }
        func key(_ d: DeviceSelection) -> Key {
            // by endpoint where discovery gave one, else by place
            d.endpoint.map { Key(endpoint: $0, ifname: "", netnsPath: "", ingress: d.ingress) }
                ?? Key(endpoint: nil, ifname: d.ifname, netnsPath: d.netnsPath, ingress: d.ingress)
        }
        var changes = DeviceChanges()
        let wantedKeys = Set(wanted.map(key))
        let current = lock.withLock { attachments }
        let currentKeys = Set(current.map { key($0.device) })
        var kept: [(device: DeviceSelection, attachment: Tracer.Attachment)] = []
        for a in current {
            if wantedKeys.contains(key(a.device)) {
                kept.append(a)
            } else {
                tracer.detach(a.attachment)
                changes.detached.append(a.device)
            }
        }
        let new = wanted.filter { !currentKeys.contains(key($0)) }
        changes.pending = max(0, new.count - maxNew)
        let now = Array(new.prefix(maxNew))
        for (d, result) in zip(now, tracer.attach(devices: now)) {
            switch result {
            case .success(let a):
                kept.append((d, a))
                changes.attached.append(d)
            case .failure(let error):
                changes.failed.append((d, error.description))
            }
        }
        lock.withLock {
            attachments = kept
            aggregate.forget(endpoints: gone)
            var merged = newNames
            merged.merge(names)
            names = merged
        }
        return changes
    }

    /// Stops tracing without detaching (the agent's budget): see `Tracer.pause`.
    public func pause() { tracer.pause() }

    /// Traces again after `pause`.
    public func resume() throws(TracerError) { try tracer.resume() }

    public var isPaused: Bool { tracer.isPaused }

    /// Kernel counters so far.
    public func counters() -> TracerCounters { (try? tracer.counters()) ?? TracerCounters() }

    /// NET_RX + NET_TX run time per CPU since the start, nanoseconds (empty when off).
    public func softirqRunNs() -> [UInt64] {
        guard options.softirq, let perCPU = try? tracer.softirqCounters() else { return [] }
        return perCPU.map { $0.reduce(0) { $0 + $1.runNs } }
    }

    /// Softirq counters per CPU and vector since load (nil when off).
    public func softirqCounters() -> [[SoftirqCounters]]? {
        guard options.softirq else { return nil }
        return try? tracer.softirqCounters()
    }

    /// Records seen so far (up to `keepRecords`).
    public var records: [HopRecord] { lock.withLock { kept } }

    /// Names namespaces and devices the records reach that were not on the node when
    /// the trace started (a pod made since, a veth added): the node is read again when
    /// a hop names a device or namespace not yet looked for. Each unknown end causes
    /// one read, so one that cannot be named (gone already) is not read for every
    /// window. Names known already stay as they were. Called at every window and at
    /// the end; returns whether the node was read.
    @discardableResult
    public func refreshNamesIfUnknown() -> Bool {
        let hops = lock.withLock { aggregate.hops.keys }
        var unknown = Set<Endpoint>()
        for h in hops {
            for e in [h.from, h.to] where (names.netns[e.netns] == nil || names.devices[e] == nil) && !namesLookedFor.contains(e) {
                unknown.insert(e)
            }
        }
        guard !unknown.isEmpty else { return false }
        namesLookedFor.formUnion(unknown)
        let found = Discovery.topology(root: hostRoot).names
        lock.withLock { names.merge(found) }
        return true
    }

    /// Reads the aggregate and the names as they are now (under the drain's lock:
    /// keep `body` short, e.g. copy what is needed).
    public func withAggregate<T>(_ body: (TraceAggregate, NameTable) -> T) -> T {
        lock.withLock { body(aggregate, names) }
    }

    /// The counts so far, for the live view (`LiveInterval` of two of these). Copies
    /// each hop's total under the drain's lock: a few KiB a hop.
    public func liveSample() -> LiveSample {
        let softirq = softirqCounters(), bpf = statsAvailable ? bpfRunNs() : nil, consumer = drainCPUNsSoFar
        return lock.withLock {
            LiveSample(monotonicNs: monotonicNs(), aggregate: aggregate, names: names, softirq: softirq,
                       consumerCPUNs: consumer, bpfRunNs: bpf,
                       sampling: options.sampling)
        }
    }

    /// The names of the running kernel's drop reasons (from its BTF).
    public var kernelDropReasons: DropReasons { lock.withLock { dropReasons } }

    /// BPF run time of this session's programs since it started, nanoseconds (0 when
    /// run-time statistics are off).
    public func bpfRunNs() -> UInt64 {
        guard statsAvailable, let now = try? tracer.programStats() else { return 0 }
        let before = Dictionary(startStats.map { ($0.name, $0.runTimeNs) }, uniquingKeysWith: { a, _ in a })
        return now.reduce(UInt64(0)) { $0 + ($1.runTimeNs &- (before[$1.name] ?? 0)) }
    }

    /// CPU time of the drain thread so far, nanoseconds.
    public var drainCPUNsSoFar: UInt64 { drainCPUNs ?? drain?.cpuNs ?? 0 }

    /// A report of what has been seen so far, without stopping.
    public func snapshot() -> Report { makeReport() }

    /// Stops draining, detaches everything, finishes the recording (its end chunk)
    /// and returns the report. A recording that cannot be finished throws
    /// `RecordingError` (the file is readable up to its last complete chunk).
    public func stop() throws -> Report {
        drain?.stop()
        if let e = drain?.error { tracer.close(); throw e }
        drainCPUNs = drain?.cpuNs
        drain = nil
        refreshNamesIfUnknown()
        let report = makeReport()
        // the recording is finished before the devices are let go: detaching a
        // node's worth of tcx links takes seconds (an RCU grace period each), and
        // a SIGKILL meanwhile must not cost the file its end
        defer { tracer.close() }
        if let e = lock.withLock({ decodeError }) { throw e }
        if let recording {
            let status = RecordingStatus(monotonicNs: monotonicNs(), counters: report.counters, softirqRunNs: [])
            if case .flightRecorder(let f) = recording, case .store = f.output {
                f.finish(status: status)
            } else {
                try recording.writer?.finish(RecordingEnd(status: status, durationSeconds: report.durationSeconds,
                                                          softirq: report.softirq, names: names))
            }
        }
        return report
    }

    /// The metadata of a recording of a session on `devices`: what a report made
    /// later elsewhere needs (host, kernel, names, drop reasons, settings). Made
    /// before the session, so the file exists before anything is attached.
    public static func recordingMetadata(devices: [DeviceSelection], names: NameTable, options: TracerOptions,
                                         windowNs: UInt64, version: String) -> RecordingMetadata {
        var uts = utsname()
        uname(&uts)
        let host = withUnsafeBytes(of: &uts.nodename) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return RecordingMetadata(
            toolVersion: version, host: host, kernel: DropReasons.runningKernel(),
            startUnixNs: UInt64(Date().timeIntervalSince1970 * 1e9), startMonotonicNs: monotonicNs(), windowNs: windowNs,
            sampling: options.sampling, devices: devices.map(\.label),
            softirq: options.softirq, names: names, dropReasons: .running(), settings: options.settings)
    }

    private func makeReport() -> Report {
        let seconds = Date().timeIntervalSince(startWall)
        let cpu = Double(drainCPUNs ?? drain?.cpuNs ?? 0) / 1e9
        let counters = (try? tracer.counters()) ?? TracerCounters()
        let packets = lock.withLock { aggregate.packetsFollowed }
        var cost = TracerCost(consumerCPUPercent: seconds > 0 ? 100 * cpu / seconds : 0)
        if statsAvailable {
            let bpfNs = bpfRunNs()
            cost.bpfCPUPercent = seconds > 0 ? 100 * Double(bpfNs) / 1e9 / seconds : 0
            if packets > 0 { cost.bpfNsPerPacket = Double(bpfNs) / Double(packets) }
        }
        var softirq = SoftirqReport.disabled
        if options.softirq, let perCPU = try? tracer.softirqCounters() {
            softirq = SoftirqReport(perCPU: perCPU, seconds: seconds)
        }
        return lock.withLock {
            Report(aggregate: aggregate, names: names, durationSeconds: seconds, counters: counters,
                   sampling: options.sampling, tracerCost: cost,
                   topFlows: topFlows, softirq: softirq, dropReasons: dropReasons)
        }
    }

    /// BPF program run counts and times since load (for benchmarks).
    public func programStats() -> [Tracer.ProgramStats] { (try? tracer.programStats()) ?? [] }
}

/// CLOCK_MONOTONIC now, nanoseconds: the clock of the kernel's records.
public func monotonicNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
