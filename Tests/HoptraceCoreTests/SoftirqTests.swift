import Foundation
import XCTest

@testable import HoptraceCore

final class SoftirqTests: XCTestCase {
    /// The kernel's buckets (the BPF side's `sirq_bucket`, mirrored) tile the line and
    /// every value lands in the bucket whose range holds it, within 12.5 %.
    func testKernelBucketsHoldTheirValues() {
        var rng = SplitMix64(state: 3)
        for _ in 0..<100_000 {
            let v = UInt64.random(in: 0...(1 << 40), using: &rng) >> UInt64.random(in: 0...40, using: &rng)
            let r = SoftirqCounters.bucketRange(SoftirqCounters.bucket(v))
            XCTAssertTrue(r.contains(v), "\(v) not in \(r)")
            XCTAssertLessThanOrEqual(Double(r.upperBound - r.lowerBound), 0.25 * Double(max(r.lowerBound, 8)))
        }
        var next: UInt64 = 8
        for b in 8..<SoftirqCounters.buckets {
            XCTAssertEqual(SoftirqCounters.bucketRange(b).lowerBound, next, "bucket \(b)")
            next = SoftirqCounters.bucketRange(b).upperBound + 1
        }
    }

    func counters(runs: UInt64, runNs: UInt64, delays: [UInt64]) -> SoftirqCounters {
        var c = SoftirqCounters()
        c.runs = runs
        c.runNs = runNs
        c.maxRunNs = runNs / max(runs, 1)
        c.runBuckets = [UInt32](repeating: 0, count: SoftirqCounters.buckets)
        c.runBuckets[SoftirqCounters.bucket(runNs / max(runs, 1))] = UInt32(runs)
        c.delayBuckets = [UInt32](repeating: 0, count: SoftirqCounters.buckets)
        for d in delays { c.delayBuckets[SoftirqCounters.bucket(d)] += 1 }
        c.delays = UInt64(delays.count)
        c.delayNs = delays.reduce(0, +)
        c.maxDelayNs = delays.max() ?? 0
        c.ksoftirqdRuns = runs / 4
        c.ksoftirqdNs = runNs / 4
        return c
    }

    func testReportPercentagesAndTotals() throws {
        let rx0 = counters(runs: 1000, runNs: 500_000_000, delays: Array(repeating: 10_000, count: 99) + [1_000_000])
        let rx1 = counters(runs: 10, runNs: 10_000_000, delays: [])
        let r = SoftirqReport(perCPU: [[SoftirqCounters(), rx0], [SoftirqCounters(), rx1]], seconds: 2)
        XCTAssertTrue(r.enabled)
        XCTAssertEqual(r.cpus[0].netRX.runPercent, 25, accuracy: 1e-9)  // 0.5 s of 2 s
        XCTAssertEqual(r.cpus[1].netRX.runPercent, 0.5, accuracy: 1e-9)
        XCTAssertEqual(r.total["net_rx"]!.runPercent, 12.75, accuracy: 1e-9) // 0.51 s of 4 CPU-seconds
        XCTAssertEqual(r.cpus[0].netRX.ksoftirqdPercent, 25, accuracy: 1e-9)
        let wait = r.cpus[0].netRX.raiseToRun
        XCTAssertEqual(wait.maxNs, 1_000_000)
        XCTAssertEqual(Double(wait.p50Ns), 10_000, accuracy: 1_250)
        XCTAssertEqual(wait.count, 100)
        XCTAssertEqual(r.total["net_rx"]!.runs, 1010)
        let json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(r)) as! [String: Any]
        let cpu0 = (json["cpus"] as! [[String: Any]])[0]["net_rx"] as! [String: Any]
        for key in ["runs", "run_percent", "run", "raise_to_run", "raises", "ksoftirqd_runs", "ksoftirqd_percent",
                    "napi_polls", "napi_budget_exhausted"] {
            XCTAssertNotNil(cpu0[key], key)
        }
    }

    /// A BTF blob with one INT and one ENUM, laid out as the kernel lays out vmlinux's.
    static func btfBlob() -> Data {
        var strings: [UInt8] = [0]
        func str(_ s: String) -> UInt32 {
            let off = UInt32(strings.count)
            strings += Array(s.utf8) + [0]
            return off
        }
        var types: [UInt32] = []
        types += [str("int"), 1 << 24, 4, 0x0100_0020]                       // INT, 4 bytes, 32 bits
        types += [str("other"), 6 << 24 | 1, 4, str("OTHER_A"), 7]          // ENUM other { OTHER_A = 7 }
        types += [str("skb_drop_reason"), 6 << 24 | 3, 4,
                  str("SKB_DROP_REASON_NOT_SPECIFIED"), 2, str("SKB_DROP_REASON_NO_SOCKET"), 3,
                  str("SKB_DROP_REASON_NETFILTER_DROP"), 9]
        var header: [UInt32] = [0, 24, 0, UInt32(types.count * 4), UInt32(types.count * 4), UInt32(strings.count)]
        header[0] = 0x0001_eb9f // magic 0xeb9f, version 1, flags 0
        var data = Data()
        for w in header + types { withUnsafeBytes(of: w.littleEndian) { data.append(contentsOf: $0) } }
        data.append(contentsOf: strings)
        return data
    }

    func testDropReasonNamesFromBTF() throws {
        let reasons = DropReasons(btf: Self.btfBlob())
        XCTAssertEqual(reasons.name(3), "NO_SOCKET")
        XCTAssertEqual(reasons.name(9), "NETFILTER_DROP")
        XCTAssertEqual(reasons.name(77), "reason 77")
        XCTAssertEqual(try BTF.enumValues(named: "other", in: Self.btfBlob()), [7: "OTHER_A"])
        XCTAssertThrowsError(try BTF.enumValues(named: "x", in: Data([1, 2, 3])))
        XCTAssertThrowsError(try BTF.enumValues(named: "x", in: Self.btfBlob().prefix(40)))
    }

    /// The running kernel's BTF, where there is one, names the reasons DESIGN.md saw.
    func testRunningKernelReasons() throws {
        guard FileManager.default.isReadableFile(atPath: "/sys/kernel/btf/vmlinux") else {
            throw XCTSkip("no /sys/kernel/btf/vmlinux")
        }
        let reasons = DropReasons.running()
        XCTAssertEqual(reasons.name(2), "NOT_SPECIFIED")
        XCTAssertEqual(reasons.name(3), "NO_SOCKET")
    }
}
