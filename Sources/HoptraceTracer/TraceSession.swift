import Foundation
import HoptraceCore

/// One trace from start to report: loads the tracer, attaches it, drains records
/// into the aggregate on a dedicated thread, and turns the result into a report.
/// Whatever happens, `stop()` (or deinit) detaches everything.
public final class TraceSession: @unchecked Sendable {
    public let devices: [DeviceSelection]
    public let options: TracerOptions
    public var names: NameTable
    private let tracer: Tracer
    private var drain: DrainThread?
    private let lock = NSLock()
    private var aggregate: TraceAggregate
    private var kept: [HopRecord] = []
    private let keepRecords: Int
    private let topFlows: Int
    private let sink: RecordSink?
    private var decodeError: RecordDecodingError?
    private var startWall = Date()
    private var startStats: [Tracer.ProgramStats] = []
    private var statsAvailable = false
    private var drainCPUNs: UInt64?
    private lazy var dropReasons = DropReasons.running()

    /// Loads the BPF programs and attaches them to `devices` (needs root).
    /// `keepRecords` keeps up to that many raw records for `records` (tests, exports).
    public init(devices: [DeviceSelection], options: TracerOptions = TracerOptions(), names: NameTable = NameTable(),
                flowCapacity: Int = 10_000, topFlows: Int = 10, keepRecords: Int = 0,
                sink: RecordSink? = nil) throws(TracerError) {
        self.topFlows = topFlows
        self.sink = sink
        self.devices = devices
        self.options = options
        self.names = names
        self.keepRecords = keepRecords
        aggregate = TraceAggregate(flowCapacity: flowCapacity)
        // clsact filters survive a killed hoptrace; remove ours before attaching anew
        for d in devices { _ = Tracer.sweepClsact(device: d.ifname, netnsPath: d.netnsPath) }
        tracer = try Tracer(options: options)
        do {
            try tracer.attachTracepoints()
            if options.softirq { try tracer.attachSoftirq() }
            for d in devices { try tracer.attach(device: d.ifname, netnsPath: d.netnsPath, label: d.label, ingress: d.ingress) }
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
        let d = DrainThread(tracer: tracer) { [self] batch in
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

    /// Runs `body` while the drain thread is not handing records over (to write
    /// to the sink from another thread).
    public func synchronized<T>(_ body: () throws -> T) rethrows -> T { try lock.withLock { try body() } }

    /// Kernel counters so far.
    public func counters() -> TracerCounters { (try? tracer.counters()) ?? TracerCounters() }

    /// NET_RX + NET_TX run time per CPU since the start, nanoseconds (empty when off).
    public func softirqRunNs() -> [UInt64] {
        guard options.softirq, let perCPU = try? tracer.softirqCounters() else { return [] }
        return perCPU.map { $0.reduce(0) { $0 + $1.runNs } }
    }

    /// Records seen so far (up to `keepRecords`).
    public var records: [HopRecord] { lock.withLock { kept } }

    /// A report of what has been seen so far, without stopping.
    public func snapshot() -> Report { makeReport() }

    /// Stops draining, detaches everything and returns the report.
    public func stop() throws -> Report {
        drain?.stop()
        if let e = drain?.error { tracer.close(); throw e }
        drainCPUNs = drain?.cpuNs
        drain = nil
        let report = makeReport()
        tracer.close()
        if let e = lock.withLock({ decodeError }) { throw e }
        return report
    }

    private func makeReport() -> Report {
        let seconds = Date().timeIntervalSince(startWall)
        let cpu = Double(drainCPUNs ?? drain?.cpuNs ?? 0) / 1e9
        let counters = (try? tracer.counters()) ?? TracerCounters()
        let packets = lock.withLock { aggregate.packetsFollowed }
        var cost = TracerCost(consumerCPUPercent: seconds > 0 ? 100 * cpu / seconds : 0)
        if statsAvailable, let now = try? tracer.programStats() {
            let before = Dictionary(startStats.map { ($0.name, $0.runTimeNs) }, uniquingKeysWith: { a, _ in a })
            let bpfNs = now.reduce(UInt64(0)) { $0 + ($1.runTimeNs &- (before[$1.name] ?? 0)) }
            cost.bpfCPUPercent = seconds > 0 ? 100 * Double(bpfNs) / 1e9 / seconds : 0
            if packets > 0 { cost.bpfNsPerPacket = Double(bpfNs) / Double(packets) }
        }
        var softirq = SoftirqReport.disabled
        if options.softirq, let perCPU = try? tracer.softirqCounters() {
            softirq = SoftirqReport(perCPU: perCPU, seconds: seconds)
        }
        return lock.withLock {
            Report(aggregate: aggregate, names: names, durationSeconds: seconds, counters: counters,
                   sampling: Sampling(every: options.sampleEvery, minLatencyNs: options.minLatencyNs), tracerCost: cost,
                   topFlows: topFlows, softirq: softirq, dropReasons: dropReasons)
        }
    }

    /// BPF program run counts and times since load (for benchmarks).
    public func programStats() -> [Tracer.ProgramStats] { (try? tracer.programStats()) ?? [] }
}
