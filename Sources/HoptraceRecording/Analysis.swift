import Foundation
import HoptraceCore

/// A recording read back: the same aggregate a live trace builds, its windows, and
/// what the file said about itself.
public struct RecordedTrace: Sendable {
    public var contents: RecordingContents
    public var aggregate: TraceAggregate
    public var windows: WindowedAggregate

    /// Reads `path` in one pass. The whole-run aggregate and the windows are
    /// independent: the aggregate is built on a second thread from batches of the
    /// records this one decodes (and puts into windows), which nearly halves the
    /// time a long recording takes to report.
    public init(path: String, flowCapacity: Int = 10_000) throws(RecordingError) {
        let handoff = RecordBatches()
        let aggregated = Thread { [handoff] in
            var aggregate = TraceAggregate(flowCapacity: flowCapacity)
            while let batch = handoff.next() {
                for r in batch { aggregate.add(r) }
            }
            handoff.finish(aggregate)
        }
        aggregated.start()
        var windows: WindowedAggregate?
        var start: UInt64 = 0, windowNs: UInt64 = 1_000_000_000
        var batch: [HopRecord] = []
        batch.reserveCapacity(RecordBatches.size)
        let contents: RecordingContents
        do {
            contents = try RecordingReader.read(path: path) { r in
                if windows == nil { windows = WindowedAggregate(windowNs: windowNs, startNs: start) }
                windows!.add(r)
                batch.append(r)
                if batch.count == RecordBatches.size {
                    handoff.put(batch)
                    batch.removeAll(keepingCapacity: true)
                }
            } metadataHook: { m in
                start = m.startMonotonicNs
                windowNs = m.windowNs
            }
        } catch {
            handoff.close()
            _ = handoff.result()
            throw error
        }
        handoff.put(batch)
        handoff.close()
        self.contents = contents
        self.aggregate = handoff.result()
        self.windows = windows ?? WindowedAggregate(windowNs: contents.metadata.windowNs, startNs: contents.metadata.startMonotonicNs)
    }

    /// The counters at the end, or at the last status before the recording was cut.
    public var counters: TracerCounters { contents.end?.status.counters ?? contents.statuses.last?.counters ?? TracerCounters() }

    public var durationSeconds: Double {
        if let d = contents.end?.durationSeconds { return d }
        let last = max(contents.statuses.last?.monotonicNs ?? 0, aggregate.lastNs)
        return last > contents.metadata.startMonotonicNs ? Double(last - contents.metadata.startMonotonicNs) / 1e9 : 0
    }

    /// The same report a live trace prints, from the file.
    public func report(topFlows: Int = 10, dropReasons: DropReasons = .running()) -> Report {
        Report(aggregate: aggregate, names: contents.metadata.names, durationSeconds: durationSeconds, counters: counters,
               sampling: contents.metadata.sampling, tracerCost: nil, topFlows: topFlows,
               softirq: contents.end?.softirq ?? .disabled, dropReasons: dropReasons)
    }

    public var timeline: Timeline { Timeline(windows, names: contents.metadata.names, statuses: contents.statuses) }

    public var comparisonRun: Comparison.Run {
        Comparison.Run(windows: windows, names: contents.metadata.names, host: contents.metadata.host)
    }
}

/// Batches of records from the reading thread to the aggregating one: at most
/// `depth` waiting, so memory stays bounded whichever thread is slower.
final class RecordBatches: @unchecked Sendable {
    static let size = 16_384
    static let depth = 4
    private let cond = NSCondition()
    private var queue: [[HopRecord]] = []
    private var closed = false
    private var aggregate: TraceAggregate?

    func put(_ batch: [HopRecord]) {
        cond.lock()
        while queue.count >= Self.depth { cond.wait() }
        queue.append(batch)
        cond.broadcast()
        cond.unlock()
    }

    func close() {
        cond.lock()
        closed = true
        cond.broadcast()
        cond.unlock()
    }

    /// The next batch, or nil once closed and empty.
    func next() -> [HopRecord]? {
        cond.lock()
        defer { cond.unlock() }
        while queue.isEmpty && !closed { cond.wait() }
        if queue.isEmpty { return nil }
        cond.broadcast()
        return queue.removeFirst()
    }

    func finish(_ a: TraceAggregate) {
        cond.lock()
        aggregate = a
        cond.broadcast()
        cond.unlock()
    }

    /// The aggregate, once the aggregating thread is done.
    func result() -> TraceAggregate {
        cond.lock()
        defer { cond.unlock() }
        while aggregate == nil { cond.wait() }
        return aggregate!
    }
}
