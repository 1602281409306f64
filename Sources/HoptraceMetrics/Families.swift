import HoptraceCore

/// One metric family as every format writes it. This file is the one place that
/// names, documents, orders and labels what the agent exposes; the encoders only
/// spell it out.
struct MetricFamily {
    enum Kind { case counter, gauge, histogram }

    enum Value {
        /// A count of events, written as an integer where the format has text.
        case count(UInt64)
        case real(Double)
        /// Nanoseconds; written in seconds.
        case latency(Histogram)
    }

    struct Series {
        /// In the order of the family's `labelNames`.
        var labelValues: [String]
        var value: Value
    }

    /// Without the `_total` of a counter's samples (OpenMetrics' family name); see `sampleName`.
    let name: String
    let help: String
    let kind: Kind
    /// "seconds" for latencies and durations (OpenMetrics' `# UNIT`; the name ends in it).
    let unit: String?
    let labelNames: [String]
    var series: [Series]

    /// The name the samples carry: a counter's with `_total`. Text 0.0.4 and protobuf
    /// use it as the family name too.
    var sampleName: String { kind == .counter ? name + "_total" : name }
}

extension MetricFamily {
    /// The families of a snapshot that have series, in the order they are written. Within a family,
    /// series are sorted by their label values and series with the same labels are
    /// merged (a duplicate would make Prometheus reject the whole scrape).
    static func families(of snapshot: MetricsSnapshot) -> [MetricFamily] {
        let hops = snapshot.hops
        var segmentSeries: [Series] = []
        segmentSeries.reserveCapacity(hops.reduce(0) { $0 + $1.segments.count })
        for hop in hops {
            for (segment, latency) in hop.segments {
                segmentSeries.append(Series(labelValues: [hop.from, hop.to, segment.name], value: .latency(latency)))
            }
        }
        let families = [
            MetricFamily(
                name: "hoptrace_hop_latency_seconds",
                help: "Latency of each measured packet over a whole hop, from leaving one device (from) to reaching the next (to), in seconds.",
                kind: .histogram, unit: "seconds", labelNames: ["from", "to"],
                series: hops.map { Series(labelValues: [$0.from, $0.to], value: .latency($0.latency)) }),
            MetricFamily(
                name: "hoptrace_segment_latency_seconds",
                help: "Latency of each measured packet in one segment of a hop (forward, qdisc, veth, backlog, deliver), in seconds.",
                kind: .histogram, unit: "seconds", labelNames: ["from", "to", "segment"],
                series: segmentSeries),
            MetricFamily(
                name: "hoptrace_hop_packets",
                help: "Packets whose hop latency was measured.",
                kind: .counter, unit: nil, labelNames: ["from", "to"],
                series: hops.map { Series(labelValues: [$0.from, $0.to], value: .count($0.packets)) }),
            MetricFamily(
                name: "hoptrace_drops",
                help: "Packets the kernel dropped on a hop, by the kernel's drop reason.",
                kind: .counter, unit: nil, labelNames: ["from", "to", "reason"],
                series: snapshot.drops.map { Series(labelValues: [$0.from, $0.to, $0.reason], value: .count($0.packets)) }),
            MetricFamily(
                name: "hoptrace_softirq_seconds",
                help: "Time the network softirqs (vector net_rx or net_tx) ran on each CPU, in seconds.",
                kind: .counter, unit: "seconds", labelNames: ["cpu", "vector"],
                series: snapshot.softirq.map { Series(labelValues: [String($0.cpu), $0.vector], value: .real($0.runSeconds)) }),
            MetricFamily(
                name: "hoptrace_softirq_delay_seconds",
                help: "Delay from raising a network softirq (vector net_rx or net_tx) to running it on each CPU, in seconds.",
                kind: .histogram, unit: "seconds", labelNames: ["cpu", "vector"],
                series: snapshot.softirq.map { Series(labelValues: [String($0.cpu), $0.vector], value: .latency($0.delay)) }),
            MetricFamily(
                name: "hoptrace_lost_records",
                help: "Trace records lost because the ring buffer was full; latencies are from the rest.",
                kind: .counter, unit: nil, labelNames: [],
                series: [Series(labelValues: [], value: .count(snapshot.lostRecords))]),
            MetricFamily(
                name: "hoptrace_unseen_packets",
                help: "Packets one of whose hops could not be measured (cut into segments in software, redirected, or tracepoints not run).",
                kind: .counter, unit: nil, labelNames: [],
                series: [Series(labelValues: [], value: .count(snapshot.unseenPackets))]),
            MetricFamily(
                name: "hoptrace_bpf_run_seconds",
                help: "Time the tracer's BPF programs ran in the kernel (bpf_stats), in seconds.",
                kind: .counter, unit: "seconds", labelNames: [],
                series: [Series(labelValues: [], value: .real(snapshot.bpfRunSeconds))]),
            MetricFamily(
                name: "hoptrace_consumer_cpu_seconds",
                help: "CPU time of the agent's thread that reads trace records, in seconds.",
                kind: .counter, unit: "seconds", labelNames: [],
                series: [Series(labelValues: [], value: .real(snapshot.consumerCPUSeconds))]),
            MetricFamily(
                name: "hoptrace_tracing_active_ratio",
                help: "Share of the last budget period the tracing hooks were attached (1 means continuous tracing).",
                kind: .gauge, unit: nil, labelNames: [],
                series: [Series(labelValues: [], value: .real(snapshot.tracingActiveRatio))]),
            MetricFamily(
                name: "hoptrace_incidents",
                help: "Incidents recorded since the agent started, by what triggered them.",
                kind: .counter, unit: nil, labelNames: ["trigger"],
                series: snapshot.incidents.map { Series(labelValues: [$0.key], value: .count($0.value)) }),
        ]
        // a family without series is left out, metadata and all (as Go's client does)
        return families.filter { !$0.series.isEmpty }.map { family in
            var family = family
            family.series = sortedMergingDuplicates(family.series)
            return family
        }
    }

    /// Series sorted by label values (label by label, as bytes; whole numbers such
    /// as a CPU compare as numbers, so cpu 2 comes before cpu 10), the same labels merged.
    static func sortedMergingDuplicates(_ series: [Series]) -> [Series] {
        // Sorted through byte keys made once and kept in one buffer, as a node may have
        // thousands of series: comparing them is then a loop over bytes.
        var keyBytes: [UInt8] = []
        var keyStarts: [Int] = []
        for s in series {
            keyStarts.append(keyBytes.count)
            appendSortKey(s.labelValues, to: &keyBytes)
        }
        keyStarts.append(keyBytes.count)
        let order: [Int] = keyBytes.withUnsafeBufferPointer { keyBytes in
            keyStarts.withUnsafeBufferPointer { keyStarts in
                // through pointers: the sort's comparisons retain nothing
                series.indices.sorted { a, b in
                    let x = keyBytes.baseAddress! + keyStarts[a], xCount = keyStarts[a + 1] - keyStarts[a]
                    let y = keyBytes.baseAddress! + keyStarts[b], yCount = keyStarts[b + 1] - keyStarts[b]
                    for i in 0 ..< min(xCount, yCount) where x[i] != y[i] { return x[i] < y[i] }
                    return xCount < yCount
                }
            }
        }
        func sameKey(_ a: Int, _ b: Int) -> Bool {
            keyBytes[keyStarts[a] ..< keyStarts[a + 1]] == keyBytes[keyStarts[b] ..< keyStarts[b + 1]]
        }
        var merged: [Series] = []
        merged.reserveCapacity(series.count)
        var previous: Int?
        for i in order {
            if let p = previous, sameKey(p, i) {
                merged[merged.count - 1].value = Self.merged(merged[merged.count - 1].value, series[i].value)
            } else {
                merged.append(series[i])
            }
            previous = i
        }
        return merged
    }

    /// Label values as bytes, each ended by 0 (so "a" sorts before "ab"); whole
    /// numbers (digits, no leading zero) left-padded with "0" to 20 digits, so they
    /// sort as numbers and no two values share a key.
    private static func appendSortKey(_ labelValues: [String], to key: inout [UInt8]) {
        for value in labelValues {
            let utf8 = value.utf8
            let isWholeNumber = !utf8.isEmpty && utf8.count <= 20 && (utf8.first != 0x30 || utf8.count == 1)
                && utf8.allSatisfy { (0x30...0x39).contains($0) }
            if isWholeNumber {
                key.append(contentsOf: repeatElement(0x30, count: 20 - utf8.count))
            }
            key.append(contentsOf: utf8)
            key.append(0)
        }
    }

    private static func merged(_ a: Value, _ b: Value) -> Value {
        switch (a, b) {
        case let (.count(x), .count(y)): return .count(x &+ y)
        case let (.real(x), .real(y)): return .real(x + y)
        case let (.latency(x), .latency(y)):
            // histograms of different precision merge at the coarser one (exactly)
            let bits = min(x.precisionBits, y.precisionBits)
            var m = x.precisionBits == bits ? x : x.reduced(toPrecision: bits)
            m.merge(y.precisionBits == bits ? y : y.reduced(toPrecision: bits))
            return .latency(m)
        default:
            preconditionFailure("series of one family hold one kind of value")
        }
    }
}
