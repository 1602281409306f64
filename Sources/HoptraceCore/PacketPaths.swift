/// Rebuilds each packet's path from its records: within a flow, hop k+1 starts
/// (`timestampNs`) at the very nanosecond hop k ended (`endNs`: the kernel stamps
/// both from one clock read), and a delivery starts when the last hop ended.
public enum PacketPaths {
    struct Key: Hashable {
        var flow: FlowKey
        var ns: UInt64
    }

    /// Paths that start at a packet's first hop, in record order. Records whose
    /// predecessor is missing (sampled, lost, or before the trace) start no path.
    public static func join(_ records: [HopRecord]) -> [[HopRecord]] {
        var endingAt: [Key: Int] = [:]
        endingAt.reserveCapacity(records.count)
        for (i, r) in records.enumerated() where r.kind == .hop { endingAt[Key(flow: r.flow, ns: r.endNs)] = i }
        var next: [Int: Int] = [:]
        for (i, r) in records.enumerated() where !r.flags.contains(.firstHop) {
            if let prev = endingAt[Key(flow: r.flow, ns: r.timestampNs)], prev != i { next[prev] = i }
        }
        var paths: [[HopRecord]] = []
        for (i, r) in records.enumerated() where r.flags.contains(.firstHop) && r.kind == .hop {
            var path = [r], at = i
            while let n = next[at], path.count < 64 {
                path.append(records[n])
                at = n
            }
            paths.append(path)
        }
        return paths
    }
}
