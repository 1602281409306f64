import Foundation
import HoptraceCore

/// A made-up recording of a node: a chain of `hops` namespace hops between pods,
/// one-second windows, latencies of the usual sizes with a tail, slow spells where
/// the backlog wait jumps (flagged by the timeline) with drops, and softirq time.
/// For what must read or draw long recordings without a kernel: `hoptrace-bench
/// --html-only` and the size test of the HTML pages. The same arguments give the
/// same file.
public struct SyntheticRecording: Sendable {
    public var windows: Int
    public var hops: Int
    /// Hop records per hop per window (the timeline flags windows of 20 or more).
    public var recordsPerHop: Int
    /// Every `slowEvery`-th window (from the 30th on) is a slow spell.
    public var slowEvery: Int
    /// How much slower the backlog wait is (a tuning run to compare against: 1.2).
    public var backlogFactor: Double
    public var seed: UInt64

    public static let startMonotonicNs: UInt64 = 1_000_000_000_000
    static let firstNetns: UInt32 = 4_026_532_000

    public init(windows: Int, hops: Int = 10, recordsPerHop: Int = 24, slowEvery: Int = 300, backlogFactor: Double = 1,
                seed: UInt64 = 1) {
        self.windows = windows
        self.hops = hops
        self.recordsPerHop = recordsPerHop
        self.slowEvery = max(slowEvery, 1)
        self.backlogFactor = backlogFactor
        self.seed = seed
    }

    public func isSlow(_ window: Int) -> Bool { window >= 30 && window % slowEvery == 30 % slowEvery }

    /// Names of the chain: namespace i is pod `default/app-i`, its eth0 ifindex 2, the next hop's end ifindex 3.
    public var names: NameTable {
        var n = NameTable()
        for i in 0...hops {
            let netns = Self.firstNetns + UInt32(i)
            n.netns[netns] = "cni-\(i)"
            n.devices[Endpoint(netns: netns, ifindex: 2)] = "eth0"
            n.devices[Endpoint(netns: netns, ifindex: 3)] = "veth\(i)"
            n.workloads[netns] = Workload(pod: Workload.Pod(namespace: "default", name: "app-\(i)", uid: "uid-\(i)"))
        }
        return n
    }

    public var metadata: RecordingMetadata {
        RecordingMetadata(toolVersion: "synthetic", host: "synthetic-node", kernel: "6.18.0", startUnixNs: 1_735_689_600_000_000_000,
                          startMonotonicNs: Self.startMonotonicNs, windowNs: 1_000_000_000, sampling: Sampling(),
                          devices: (0..<hops).map { "cni-\($0)/eth0" }, softirq: true, names: names,
                          settings: ["attach": "tcx"])
    }

    /// Writes the recording to `path` (replacing a file there).
    public func write(to path: String) throws(RecordingError) {
        let writer = try RecordingWriter(path: path, metadata: metadata, force: true)
        var rng = SplitMix(state: seed)
        var softirqNs: [UInt64] = [0, 0]
        for w in 0..<windows {
            let start = Self.startMonotonicNs + UInt64(w) * 1_000_000_000
            for r in records(window: w, start: start, rng: &rng) { writer.append(r) }
            // two CPUs: 2-4 % busy in network softirqs, 40 % in a slow spell
            softirqNs[0] += isSlow(w) ? 400_000_000 : 20_000_000 + rng.next() % 20_000_000
            softirqNs[1] += 10_000_000 + rng.next() % 10_000_000
            writer.write(status: RecordingStatus(monotonicNs: start + 1_000_000_000, counters: TracerCounters(),
                                                 softirqRunNs: softirqNs))
        }
        let end = Self.startMonotonicNs + UInt64(windows) * 1_000_000_000
        try writer.finish(RecordingEnd(status: RecordingStatus(monotonicNs: end, counters: TracerCounters(), softirqRunNs: softirqNs),
                                       durationSeconds: Double(windows), softirq: softirq(softirqNs)))
    }

    /// One window's records, in time order: each hop's, deliveries at the last hop, drops in slow spells.
    func records(window w: Int, start: UInt64, rng: inout SplitMix) -> [HopRecord] {
        var out: [HopRecord] = []
        let slow = isSlow(w)
        for i in 0..<recordsPerHop {
            let flowIndex = Int(rng.next() % 16)
            let flow = FlowKey(source: IPAddress(bytes: [10, 0, 0, UInt8(1 + flowIndex)]), destination: IPAddress(bytes: [10, 0, 1, 2]),
                               sourcePort: UInt16(30000 + flowIndex), destinationPort: 8080, proto: 6, family: 4)
            let at = start + UInt64(i) * (1_000_000_000 / UInt64(recordsPerHop))
            for h in 0..<hops {
                let r = rng.next()
                // one packet in 500 waits 8x longer: a tail, below the timeline's flag rule
                let tail: UInt64 = r % 500 == 0 ? 8 : 1
                let backlog = Double(1_000 + r % 4_000) * Double(tail) * backlogFactor * (slow ? 60 : 1)
                out.append(HopRecord(
                    timestampNs: at + UInt64(h) * 10_000, forwardNs: h == 0 ? 0 : UInt32(2_000 + (r >> 16) % 1_500),
                    qdiscNs: UInt32(300 + (r >> 24) % 700), vethNs: UInt32(250 + (r >> 32) % 300), backlogNs: UInt32(backlog),
                    length: 1_448, from: Endpoint(netns: Self.firstNetns + UInt32(h), ifindex: 2),
                    to: Endpoint(netns: Self.firstNetns + UInt32(h + 1), ifindex: 3), kind: .hop,
                    flags: h == 0 ? [.firstHop] : [.forwarded], cpu: UInt16(r & 1), hopIndex: UInt16(h), flow: flow))
            }
            if i % 4 == 0 {
                let last = Endpoint(netns: Self.firstNetns + UInt32(hops), ifindex: 3)
                out.append(HopRecord(timestampNs: at + UInt64(hops) * 10_000, deliverNs: UInt32(20_000 + rng.next() % 30_000),
                                     from: Endpoint(netns: Self.firstNetns + UInt32(hops - 1), ifindex: 2), to: last,
                                     kind: .deliver, hopIndex: UInt16(hops), flow: flow))
            }
            if slow && i % 3 == 0 {
                out.append(HopRecord(timestampNs: at + 5_000, dropReason: 3, from: Endpoint(netns: Self.firstNetns, ifindex: 2),
                                     to: Endpoint(netns: Self.firstNetns + 1, ifindex: 3), kind: .drop, flow: flow))
            }
        }
        return out.sorted { $0.timestampNs < $1.timestampNs }
    }

    /// The end chunk's softirq table: NET_RX and NET_TX on two CPUs, from the run time written.
    func softirq(_ runNs: [UInt64]) -> SoftirqReport {
        let perCPU = runNs.map { ns -> [SoftirqCounters] in
            var rx = SoftirqCounters(), tx = SoftirqCounters()
            rx.runs = UInt64(windows) * 1_000
            rx.runNs = ns * 9 / 10
            rx.maxRunNs = 2_000_000
            rx.raises = rx.runs
            tx.runs = UInt64(windows) * 100
            tx.runNs = ns / 10
            tx.maxRunNs = 200_000
            // by SoftirqVector.rawValue: NET_TX 0, NET_RX 1
            return [tx, rx]
        }
        return SoftirqReport(perCPU: perCPU, seconds: Double(windows))
    }
}
