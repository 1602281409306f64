import Foundation
import HoptraceCore

/// A recording read back: the same aggregate a live trace builds, its windows, and
/// what the file said about itself.
public struct RecordedTrace: Sendable {
    public var contents: RecordingContents
    public var aggregate: TraceAggregate
    public var windows: WindowedAggregate

    /// Reads `path` in one pass.
    public init(path: String, flowCapacity: Int = 10_000) throws(RecordingError) {
        var aggregate = TraceAggregate(flowCapacity: flowCapacity)
        var windows: WindowedAggregate?
        var start: UInt64 = 0, windowNs: UInt64 = 1_000_000_000
        let contents = try RecordingReader.read(path: path) { r in
            if windows == nil { windows = WindowedAggregate(windowNs: windowNs, startNs: start) }
            aggregate.add(r)
            windows!.add(r)
        } metadataHook: { m in
            start = m.startMonotonicNs
            windowNs = m.windowNs
        }
        self.contents = contents
        self.aggregate = aggregate
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
