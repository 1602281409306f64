import Foundation
import HoptraceCore

/// A recording read back: the same aggregate a live trace builds, its windows, and
/// what the file said about itself.
public struct RecordedTrace: Sendable {
    public var contents: RecordingContents
    public var aggregate: TraceAggregate
    public var windows: WindowedAggregate

    /// Reads `path` in one pass. This thread reads and decodes the chunks; `threads`
    /// others each add whole chunks to their own aggregate and windows, merged at the
    /// end (the order records are added in changes nothing but which flows are folded
    /// past `flowCapacity`).
    public init(path: String, flowCapacity: Int = FlowTable.defaultCapacity,
                threads: Int = min(4, ProcessInfo.processInfo.activeProcessorCount)) throws(RecordingError) {
        let queue = ChunkQueue(depth: 2 * max(1, threads))
        var workers: [Thread] = []
        let partials = Partials(max(1, threads))
        let contents: RecordingContents
        do {
            contents = try RecordingReader.readChunks(path: path) { columns in
                queue.put(columns)
            } metadataHook: { m in
                for w in 0..<max(1, threads) {
                    let t = Thread { [queue, partials] in
                        var aggregate = TraceAggregate(flowCapacity: flowCapacity)
                        var windows = WindowedAggregate(windowNs: m.windowNs, startNs: m.startMonotonicNs)
                        while let c = queue.next() {
                            let byHop = HopRows(c)
                            aggregate.add(c, byHop: byHop)
                            windows.add(c, byHop: byHop)
                        }
                        partials.finish(w, aggregate, windows)
                    }
                    t.stackSize = 1 << 20
                    workers.append(t)
                    t.start()
                }
            }
        } catch {
            queue.close()
            if !workers.isEmpty { _ = partials.merged() }
            throw error
        }
        queue.close()
        self.contents = contents
        (aggregate, windows) = partials.merged()
    }

    /// The counters at the end, or at the last status before the recording was cut.
    public var counters: TracerCounters { contents.end?.status.counters ?? contents.statuses.last?.counters ?? TracerCounters() }

    public var durationSeconds: Double {
        if let d = contents.end?.durationSeconds { return d }
        let last = max(contents.statuses.last?.monotonicNs ?? 0, aggregate.lastNs)
        return last > contents.metadata.startMonotonicNs ? Double(last - contents.metadata.startMonotonicNs) / 1e9 : 0
    }

    /// The same report a live trace prints, from the file; drops named as on the
    /// recording machine (`RecordingMetadata.reasons`).
    public func report(topFlows: Int = Report.defaultTopFlows, dropReasons: DropReasons? = nil) -> Report {
        Report(aggregate: aggregate, names: names, durationSeconds: durationSeconds, counters: counters,
               sampling: contents.metadata.sampling, tracerCost: nil, topFlows: topFlows,
               softirq: contents.end?.softirq ?? .disabled, dropReasons: dropReasons ?? contents.metadata.reasons())
    }

    public var timeline: Timeline { Timeline(windows, names: names, statuses: contents.statuses) }

    /// The names the recording knew: its metadata's, and those learnt while it ran.
    public var names: NameTable {
        var n = contents.metadata.names
        if let later = contents.end?.names { n.merge(later) }
        return n
    }

    public var comparisonRun: Comparison.Run {
        Comparison.Run(windows: windows, names: names, host: contents.metadata.host)
    }
}

/// Decoded chunks from the reading thread to the aggregating ones: at most `depth`
/// waiting, so memory stays bounded whichever side is slower.
final class ChunkQueue: @unchecked Sendable {
    private let depth: Int
    private let cond = NSCondition()
    private var queue: [RecordColumns] = []
    private var head = 0
    private var closed = false

    init(depth: Int) { self.depth = depth }

    func put(_ chunk: RecordColumns) {
        cond.lock()
        while queue.count - head >= depth { cond.wait() }
        queue.append(chunk)
        cond.broadcast()
        cond.unlock()
    }

    func close() {
        cond.lock()
        closed = true
        cond.broadcast()
        cond.unlock()
    }

    /// The next chunk, or nil once closed and empty.
    func next() -> RecordColumns? {
        cond.lock()
        defer { cond.unlock() }
        while queue.count == head && !closed { cond.wait() }
        if queue.count == head { return nil }
        let c = queue[head]
        queue[head] = RecordColumns()
        head += 1
        if head == queue.count { queue.removeAll(keepingCapacity: true); head = 0 }
        cond.broadcast()
        return c
    }
}

/// What each aggregating thread built, merged once all are done.
final class Partials: @unchecked Sendable {
    private let cond = NSCondition()
    private var done: [(TraceAggregate, WindowedAggregate)?]

    init(_ threads: Int) { done = Array(repeating: nil, count: threads) }

    func finish(_ thread: Int, _ a: TraceAggregate, _ w: WindowedAggregate) {
        cond.lock()
        done[thread] = (a, w)
        cond.broadcast()
        cond.unlock()
    }

    /// Waits for every thread, then merges in thread order.
    func merged() -> (TraceAggregate, WindowedAggregate) {
        cond.lock()
        while done.contains(where: { $0 == nil }) { cond.wait() }
        let parts = done.map { $0! }
        cond.unlock()
        var (aggregate, windows) = parts[0]
        for (a, w) in parts.dropFirst() {
            aggregate.merge(a)
            windows.merge(w)
        }
        return (aggregate, windows)
    }
}
