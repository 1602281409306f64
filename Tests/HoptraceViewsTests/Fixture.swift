import Foundation
import HoptraceCore
import HoptraceRecording

/// A fixed, hand-built recording for the page tests: 12 one-second windows, two hops
/// (pod web's eth0 -> the host's veth, then the host's bridge -> pod db), window 8 a
/// slow spell (backlog 40x, three drops), deliveries at db. Every value follows from
/// the record's index: the same file every run, so the pages are the same bytes.
enum Fixture {
    static let start: UInt64 = 5_000_000_000_000
    static let web = Endpoint(netns: 4_026_531_001, ifindex: 2)
    static let hostVeth = Endpoint(netns: 4_026_531_000, ifindex: 7)
    static let bridge = Endpoint(netns: 4_026_531_000, ifindex: 3)
    static let db = Endpoint(netns: 4_026_531_002, ifindex: 2)

    static func names(webName: String = "web") -> NameTable {
        var n = NameTable()
        n.netns = [web.netns: "cni-web", hostVeth.netns: "host", db.netns: "cni-db"]
        n.devices = [web: "eth0", hostVeth: "vethweb", bridge: "br0", db: "eth0"]
        n.workloads[web.netns] = Workload(pod: Workload.Pod(namespace: "shop", name: webName, uid: "u1"))
        n.workloads[db.netns] = Workload(pod: Workload.Pod(namespace: "shop", name: "db", uid: "u2"))
        // the flows' ends: web's address in its namespace; db's unknown (its end shows "-")
        n.addresses[IPAddress(bytes: [10, 1, 0, 5])] = web.netns
        return n
    }

    static func metadata(webName: String = "web") -> RecordingMetadata {
        RecordingMetadata(toolVersion: "fixture", host: "node-1", kernel: "6.18.0", startUnixNs: 1_735_689_600_000_000_000,
                          startMonotonicNs: start, windowNs: 1_000_000_000, sampling: Sampling(),
                          devices: ["cni-web/eth0", "host/br0"], softirq: true, names: names(webName: webName),
                          settings: ["attach": "tcx"])
    }

    static func records(qdiscFactor: UInt32) -> [HopRecord] {
        var out: [HopRecord] = []
        for w in 0..<12 {
            for i in 0..<40 {
                let at = start + UInt64(w) * 1_000_000_000 + UInt64(i) * 20_000_000
                let flow = FlowKey(source: IPAddress(bytes: [10, 1, 0, 5]), destination: IPAddress(bytes: [10, 1, 0, 9]),
                                   sourcePort: UInt16(40_000 + i % 4), destinationPort: 5432, proto: 6, family: 4)
                let jitter = UInt32((i * 37 + w * 11) % 50)
                let backlog = (2_000 + jitter * 60) * (w == 8 ? 40 : 1)
                out.append(HopRecord(timestampNs: at, qdiscNs: (800 + jitter * 10) * qdiscFactor / 10, vethNs: 400 + jitter * 4, backlogNs: backlog,
                                     length: 1_448, from: web, to: hostVeth, flags: [.firstHop], cpu: 0, flow: flow))
                out.append(HopRecord(timestampNs: at + 30_000, forwardNs: 3_000 + jitter * 20, qdiscNs: 0,
                                     vethNs: 500 + jitter * 5, backlogNs: 1_500 + jitter * 30, length: 1_448, from: bridge, to: db,
                                     flags: [.forwarded, .noQdisc], cpu: 1, hopIndex: 1, flow: flow))
                if i % 2 == 0 {
                    out.append(HopRecord(timestampNs: at + 60_000, deliverNs: 30_000 + jitter * 400, from: bridge, to: db,
                                         kind: .deliver, hopIndex: 2, flow: flow))
                }
                if w == 8 && i < 3 {
                    out.append(HopRecord(timestampNs: at + 1_000, dropReason: 3, from: web, to: hostVeth, kind: .drop, flow: flow))
                }
            }
        }
        return out
    }

    /// Writes the fixture to a new temporary file and reads it back. `qdiscFactor` in
    /// tenths: 10 as recorded, 15 a run whose web qdisc waits are half as long again
    /// (a shaper). The file's size is left out (0): its metadata's JSON has
    /// dictionaries in no fixed order, so it compresses to a few bytes more or less.
    static func trace(qdiscFactor: UInt32 = 10, webName: String = "web") throws -> RecordedTrace {
        let path = NSTemporaryDirectory() + "hoptrace-views-\(getpid())-\(UUID().uuidString.prefix(8)).hoptrace"
        defer { unlink(path) }
        let writer = try RecordingWriter(path: path, metadata: metadata(webName: webName))
        var busy: [UInt64] = [0, 0]
        var window = 0
        for r in records(qdiscFactor: qdiscFactor) {
            let w = Int((r.timestampNs - start) / 1_000_000_000)
            while window < w {
                busy[0] += window == 8 ? 300_000_000 : 30_000_000 // window 8 (8-9 s): CPU 0 30 % busy
                busy[1] += 10_000_000
                window += 1
                writer.write(status: RecordingStatus(monotonicNs: start + UInt64(window) * 1_000_000_000,
                                                     counters: TracerCounters(), softirqRunNs: busy))
            }
            writer.append(r)
        }
        let end = start + 12_000_000_000
        try writer.finish(RecordingEnd(status: RecordingStatus(monotonicNs: end, counters: TracerCounters(), softirqRunNs: busy),
                                       durationSeconds: 12, softirq: .disabled))
        var trace = try RecordedTrace(path: path, threads: 1)
        trace.contents.fileBytes = 0
        return trace
    }
}
