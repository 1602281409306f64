import Foundation
import XCTest

@testable import HoptraceCore

final class ReportTests: XCTestCase {
    func sampleReport() -> Report {
        var a = TraceAggregate()
        var names = NameTable()
        names.netns[1] = "web"
        names.netns[2] = "host"
        names.devices[Endpoint(netns: 1, ifindex: 2)] = "eth0"
        names.devices[Endpoint(netns: 2, ifindex: 9)] = "veth9"
        for i in 0..<1000 {
            a.add(HopRecord(timestampNs: UInt64(i), qdiscNs: 300, vethNs: 400, backlogNs: UInt32(1000 + i), length: 1500,
                            from: Endpoint(netns: 1, ifindex: 2), to: Endpoint(netns: 2, ifindex: 9), gsoSegments: 2,
                            flags: [.firstHop], flow: FlowTableTests.flow(i % 3)))
        }
        var c = TracerCounters()
        c.lost = 3
        return Report(aggregate: a, names: names, durationSeconds: 2, counters: c, sampling: Sampling(every: 4),
                      tracerCost: TracerCost(consumerCPUPercent: 1.5, bpfCPUPercent: 0.2, bpfNsPerPacket: 250))
    }

    /// The JSON carries the documented schema (docs/report-schema.md).
    func testJSONSchema() throws {
        let json = try JSONSerialization.jsonObject(with: Data(sampleReport().json().utf8)) as! [String: Any]
        for key in ["schema_version", "hops", "flows", "lost_events", "sampling", "duration_seconds", "records",
                    "folded_flows", "counters", "tracer_cost"] {
            XCTAssertNotNil(json[key], "missing \(key)")
        }
        XCTAssertEqual(json["lost_events"] as? Int, 3)
        XCTAssertEqual((json["sampling"] as? [String: Any])?["every"] as? Int, 4)
        let hop = (json["hops"] as! [[String: Any]])[0]
        let from = hop["from"] as! [String: Any], to = hop["to"] as! [String: Any]
        XCTAssertEqual(from["netns_name"] as? String, "web")
        XCTAssertEqual(from["device"] as? String, "eth0")
        XCTAssertEqual(from["ifindex"] as? Int, 2)
        XCTAssertEqual(from["netns"] as? Int, 1)
        XCTAssertEqual(to["device"] as? String, "veth9")
        XCTAssertEqual(hop["packets"] as? Int, 2000)
        let segments = hop["segments"] as! [String: [String: Any]]
        // not forwarded: no forward segment (absent, not a histogram of zeros)
        XCTAssertEqual(Set(segments.keys), ["qdisc", "veth", "backlog"])
        let summaryKeys: Set = ["count", "mean_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"]
        for (_, s) in segments { XCTAssertEqual(Set(s.keys), summaryKeys) }
        XCTAssertEqual(Set((hop["total"] as! [String: Any]).keys), summaryKeys)
        XCTAssertEqual(segments["qdisc"]?["p50_ns"] as? Int, 300)
        let flows = json["flows"] as! [[String: Any]]
        XCTAssertEqual(flows.count, 3)
        XCTAssertEqual(Set((flows[0]["hop"] as! [String: Any]).keys), summaryKeys)
    }

    /// Counters come from the kernel's array in ABI order; recordings written before a
    /// counter existed decode it as 0; the report says when hops were not measured.
    func testCountersInABIOrderOldRecordingsAndUnseenWarning() throws {
        let c = TracerCounters(raw: [1, 2, 3, 4, 5, 6, 7])
        XCTAssertEqual([c.lost, c.sampledOut, c.belowMinimum, c.stale, c.evicted, c.expired, c.unseen], [1, 2, 3, 4, 5, 6, 7])
        let old = try JSONDecoder().decode(TracerCounters.self,
                                           from: Data(#"{"lost":1,"sampled_out":0,"below_minimum":0,"stale":2}"#.utf8))
        XCTAssertEqual(old.unseen, 0)
        XCTAssertEqual(old.expired, 0)
        let json = try JSONSerialization.jsonObject(with: Data(sampleReport().json().utf8)) as! [String: Any]
        XCTAssertNotNil((json["counters"] as? [String: Any])?["unseen"], "documented in docs/report-schema.md")
        var report = sampleReport()
        XCTAssertFalse(report.text().contains("could not be measured"))
        report.counters.unseen = 45
        XCTAssertTrue(report.text().contains("WARNING: 45 packets had a hop that could not be measured"), report.text())
    }

    func testTextReport() {
        let text = sampleReport().text()
        XCTAssertTrue(text.contains("HOP web/eth0 -> host/veth9   (2000 packets)"), text)
        XCTAssertTrue(text.contains("3 lost"), text)
        XCTAssertTrue(text.contains("WARNING: 3 records were lost"), text)
        XCTAssertTrue(text.contains("1 packet in 4"), text)
        XCTAssertFalse(text.contains("forward"), "an all-zero segment is not printed:\n\(text)")
        XCTAssertEqual(formatNs(850), "850ns")
        XCTAssertEqual(formatNs(12_345), "12.3us")
        XCTAssertEqual(formatNs(4_560_000), "4.56ms")
    }

    /// Machine-readable output holds every flow kept, folded ones as one aggregate;
    /// `--top` only shapes the text, where flows with too few hops for a p99 do not
    /// outrank busy ones (issue 10, defect 5: a busy redis flow was hidden behind ten
    /// 4-packet neighbour discoveries).
    func testJSONHoldsEveryFlowAndTextRanksBusyFlowsFirst() throws {
        var a = TraceAggregate(flowCapacity: 64)
        let from = Endpoint(netns: 1, ifindex: 2), to = Endpoint(netns: 2, ifindex: 9)
        let busy = FlowTableTests.flow(0)
        for f in 1...10 { // ten 4-packet flows, each slower than the busy one
            for i in 0..<4 {
                a.add(HopRecord(timestampNs: UInt64(5000 + i), backlogNs: 500_000, from: from, to: to, flags: [.firstHop],
                                flow: FlowTableTests.flow(f)))
            }
        }
        for f in 11..<200 { // enough flows to fold some
            a.add(HopRecord(timestampNs: UInt64(3000 + f), backlogNs: 1000, from: from, to: to, flags: [.firstHop],
                            flow: FlowTableTests.flow(f)))
        }
        for i in 0..<1000 { // a busy flow, the most recent (idle ones are folded first): p99 about 30 us
            a.add(HopRecord(timestampNs: UInt64(10_000 + i), backlogNs: UInt32(10_000 + 20 * i), from: from, to: to,
                            flags: [.firstHop], flow: busy))
        }
        let report = Report(aggregate: a, names: NameTable(), durationSeconds: 1, counters: TracerCounters(),
                            sampling: Sampling(), topFlows: 3)
        XCTAssertGreaterThan(report.foldedFlows, 0)
        let json = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        let flows = json["flows"] as! [[String: Any]]
        XCTAssertEqual(flows.count, a.flows.count, "every flow kept, not the top 3")
        XCTAssertEqual(flows.first?["flow"] as? String, busy.description, "the busy flow ranks first")
        let folded = try XCTUnwrap(json["folded"] as? [String: Any])
        XCTAssertEqual(folded["flows"] as? Int, Int(report.foldedFlows))
        XCTAssertEqual(UInt64(flows.count) + report.foldedFlows, 200)
        let text = report.text()
        let listed = text.split(separator: "\n").drop { !$0.hasPrefix("TOP FLOWS") }.dropFirst(2).prefix(3)
        XCTAssertTrue(listed.first?.contains(busy.description) ?? false, text)
        XCTAssertTrue(text.contains("more flows: --top N, or --json for all"), text)
    }

    /// Each hop end names its pod and container where known (issue 11), and the name
    /// table that carries them survives the JSON a recording stores it as.
    func testEndpointsNameTheirWorkload() throws {
        var a = TraceAggregate()
        var names = NameTable()
        names.netns[1] = "shop/cart-0"
        let pod = Workload.Pod(namespace: "shop", name: "cart-0", uid: "0d1e2f3a-4b5c-4d6e-8f70-81a2b3c4d5e6")
        names.workloads[1] = Workload(pod: pod, container: Workload.Container(name: "", id: "abc", runtime: "cri-o"))
        a.add(HopRecord(timestampNs: 1, qdiscNs: 1, backlogNs: 5, from: Endpoint(netns: 1, ifindex: 2),
                        to: Endpoint(netns: 2, ifindex: 9), flags: [.firstHop], flow: FlowTableTests.flow(1)))
        let report = Report(aggregate: a, names: names, durationSeconds: 1, counters: TracerCounters(), sampling: Sampling())
        let json = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
        let hop = (json["hops"] as! [[String: Any]])[0]
        let from = hop["from"] as! [String: Any], to = hop["to"] as! [String: Any]
        XCTAssertEqual((from["pod"] as? [String: Any])?["name"] as? String, "cart-0")
        XCTAssertEqual((from["container"] as? [String: Any])?["runtime"] as? String, "cri-o")
        XCTAssertNil(to["pod"], "unknown workloads are left out")
        // a flow's ends by the namespaces their addresses are in
        var withAddresses = names
        withAddresses.addresses[FlowTableTests.flow(1).source] = 1
        let flows = Report(aggregate: a, names: withAddresses, durationSeconds: 1, counters: TracerCounters(),
                           sampling: Sampling()).flows
        XCTAssertEqual(flows.first?.sourcePod, pod)
        XCTAssertNil(flows.first?.destinationPod)
        let decoded = try JSONDecoder().decode(NameTable.self, from: JSONEncoder().encode(withAddresses))
        XCTAssertEqual(decoded, withAddresses)
    }
}
