import Foundation
import HoptraceCore

/// What makes the flight recorder write: a hop's p99 or max in a window over a
/// threshold, a drop (of a given reason or any), or an explicit request (SIGUSR1).
public enum Trigger: Equatable, Sendable, CustomStringConvertible {
    case p99(above: UInt64)
    case max(above: UInt64)
    case drop(reason: String?)

    /// Parses "p99>2ms", "max>10ms", "drop", "drop:NO_SOCKET".
    public init?(_ text: String) {
        let t = text.replacingOccurrences(of: " ", with: "")
        if t == "drop" { self = .drop(reason: nil); return }
        if t.hasPrefix("drop:"), t.count > 5 { self = .drop(reason: String(t.dropFirst(5)).uppercased()); return }
        for (prefix, make) in [("p99>", { Trigger.p99(above: $0) }), ("max>", { Trigger.max(above: $0) })] as [(String, (UInt64) -> Trigger)] {
            if t.hasPrefix(prefix), let ns = DurationParser.nanoseconds(String(t.dropFirst(prefix.count))), ns > 0 {
                self = make(ns)
                return
            }
        }
        return nil
    }

    /// Whether it needs the window's latencies (not only its drops).
    var watchesLatency: Bool {
        if case .drop = self { return false }
        return true
    }

    public var description: String {
        switch self {
        case .p99(let ns): "p99>\(formatNs(ns))"
        case .max(let ns): "max>\(formatNs(ns))"
        case .drop(let r): r.map { "drop:\($0)" } ?? "drop"
        }
    }
}

/// Keeps the last `keepWindows` windows of records in memory (never more than
/// `maxRecords`: the oldest windows go first) and writes them, plus `afterWindows`
/// more, when a trigger fires; then waits `cooldownWindows` before it can fire again.
/// Incidents go either into one recording, each marked by a status chunk, or each
/// into a file of its own in an `IncidentStore` (the agent), finished when its
/// after-windows are written. Records are kept as the drain's batches (columns); a window's hops are summed by
/// the same aggregation as the report's (`HopTable`), so a trigger sees the figures
/// the report will show.
public final class FlightRecorder: RecordSink {
    /// Where incidents are written: one recording, or a file each.
    public enum Output {
        case recording(RecordingWriter)
        case store(IncidentStore)
        /// Nothing kept or written: only the triggers are watched (the agent without
        /// an incidents directory still traces continuously through an incident).
        case discard
    }
    public let output: Output
    /// The recording being written: always the one recording; in a store, the open
    /// incident's file (nil between incidents).
    public private(set) var writer: RecordingWriter?
    /// The names an incident's file ends with, in a store (namespaces made since the
    /// store's metadata was written): the session sets them at each window.
    public var names: NameTable?
    /// Windows written into the open incident.
    private var incidentWindows = 0
    /// The first error opening or finishing an incident's file in a store.
    public private(set) var storeError: RecordingError?
    let triggers: [Trigger]
    public let keepWindows: Int
    public let afterWindows: Int
    let cooldownWindows: Int
    let maxRecords: Int
    let reasons: DropReasons
    /// Batches by window, oldest first; the last is the open window.
    private var buffered: [[RecordColumns]] = [[]]
    private var bufferedCount = 0
    /// The open window's hops.
    private var window = HopTable(precisionBits: WindowedAggregate.precisionBits)
    private var writingLeft = 0
    private var cooldownLeft = 0
    private var requested: String?
    /// Incidents written so far, with what triggered them.
    public private(set) var incidents: [String] = []
    /// Records dropped from memory to honour `maxRecords`.
    public private(set) var evicted: UInt64 = 0

    public convenience init(writer: RecordingWriter, triggers: [Trigger], keepWindows: Int, afterWindows: Int, cooldownWindows: Int,
                            maxRecords: Int = 1_000_000, reasons: DropReasons = DropReasons()) {
        self.init(output: .recording(writer), triggers: triggers, keepWindows: keepWindows, afterWindows: afterWindows,
                  cooldownWindows: cooldownWindows, maxRecords: maxRecords, reasons: reasons)
    }

    public init(output: Output, triggers: [Trigger], keepWindows: Int, afterWindows: Int, cooldownWindows: Int,
                maxRecords: Int = 1_000_000, reasons: DropReasons = DropReasons()) {
        self.output = output
        if case .recording(let w) = output { writer = w }
        self.triggers = triggers
        self.keepWindows = max(1, keepWindows)
        self.afterWindows = max(0, afterWindows)
        self.cooldownWindows = max(0, cooldownWindows)
        self.maxRecords = max(1000, maxRecords)
        self.reasons = reasons
    }

    public var isWriting: Bool { writingLeft > 0 }
    public var recordsInMemory: Int { bufferedCount }

    public func append(_ r: HopRecord) { append(RecordColumns([r])) }

    public func append(_ batch: RecordColumns) {
        if writingLeft > 0 {
            writer?.append(batch)
            return
        }
        guard batch.count > 0 else { return }
        if triggers.contains(where: \.watchesLatency) {
            window.add(batch, byHop: HopRows(batch), gather: Gather(capacity: batch.count))
        }
        if case .discard = output {
            // the drop triggers look at the open window's batches only
            if triggers.contains(where: { !$0.watchesLatency }) { buffered[buffered.count - 1].append(batch) }
            return
        }
        buffered[buffered.count - 1].append(batch)
        bufferedCount += batch.count
        // over the bound: the oldest batches go, whole windows first
        while bufferedCount > maxRecords, let w = buffered.indices.first(where: { !buffered[$0].isEmpty }),
              w < buffered.count - 1 || buffered[w].count > 1 {
            let gone = buffered[w].removeFirst()
            bufferedCount -= gone.count
            evicted += UInt64(gone.count)
        }
    }

    /// An explicit request (SIGUSR1): fires at the next window boundary.
    public func request(_ why: String) { requested = why }

    /// What in the window just closed fires a trigger, if anything.
    func firing(_ batches: [RecordColumns]) -> String? {
        for t in triggers {
            switch t {
            case .drop(let reason):
                for c in batches {
                    for i in 0..<c.count where c.kind(i) == .drop {
                        let name = reasons.name(c.lastSlot[i])
                        if reason == nil || name == reason { return "drop \(name)" }
                    }
                }
            case .p99(let limit), .max(let limit):
                for h in window.stats where h.records > 0 {
                    let v: UInt64
                    if case .p99 = t { v = h.total.value(atQuantile: 0.99) } else { v = h.total.max }
                    if v > limit { return "\(t) (\(formatNs(v)))" }
                }
            }
        }
        return nil
    }

    /// Closes the current window (call once per window). Returns what fired, if a
    /// new incident started.
    @discardableResult
    public func closeWindow(status: RecordingStatus) -> String? {
        defer { window = HopTable(precisionBits: WindowedAggregate.precisionBits) }
        if writingLeft > 0 {
            writingLeft -= 1
            incidentWindows += 1
            writer?.write(status: status)
            if writingLeft == 0 {
                cooldownLeft = cooldownWindows
                finishIncident(status: status)
            }
            return nil
        }
        var fired: String?
        if cooldownLeft > 0 {
            cooldownLeft -= 1
            requested = nil
        } else {
            fired = requested ?? firing(buffered[buffered.count - 1])
            requested = nil
        }
        if let why = fired {
            if case .store(let store) = output {
                do throws(RecordingError) { writer = try store.open(why: why) } catch { storeError = storeError ?? error }
            }
            var marked = status
            marked.trigger = why
            for w in buffered { for batch in w { writer?.append(batch) } }
            incidentWindows = buffered.count
            writer?.write(status: marked)
            incidents.append(why)
            buffered = [[]]
            bufferedCount = 0
            writingLeft = afterWindows
            if writingLeft == 0 {
                cooldownLeft = cooldownWindows
                finishIncident(status: status)
            }
            return why
        }
        if case .discard = output {
            buffered = [[]]
            return nil
        }
        buffered.append([])
        while buffered.count > keepWindows + 1 {
            bufferedCount -= buffered[0].reduce(0) { $0 + $1.count }
            buffered.removeFirst()
        }
        return nil
    }

    /// In a store, ends the open incident's file and keeps the directory within its
    /// bound. Nothing for one recording (the session finishes it).
    private func finishIncident(status: RecordingStatus) {
        guard case .store(let store) = output, let w = writer else { return }
        let end = RecordingEnd(status: status, durationSeconds: Double(incidentWindows) * Double(w.windowNs) / 1e9,
                               softirq: .disabled, names: names)
        do throws(RecordingError) { try w.finish(end) } catch { storeError = storeError ?? error }
        writer = nil
        // an incident larger than the bound is kept: it is the newest
        store.prune(keeping: w.path)
    }

    /// At the end of a session: an incident still being written is ended where it is.
    public func finish(status: RecordingStatus) {
        guard writingLeft > 0 else { return }
        writingLeft = 0
        finishIncident(status: status)
    }
}
