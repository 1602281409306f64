import Synchronization
import XCTest

@testable import HoptraceAgent

/// A fixed sequence in 0..<1 (the tests must not flake).
final class FixedRandom: Sendable {
    private let state: Mutex<UInt64>
    init(seed: UInt64) { state = Mutex(seed) }
    func next() -> Double {
        state.withLock { s in
            s = s &* 6364136223846793005 &+ 1442695040888963407
            return Double(s >> 11) / Double(1 << 53)
        }
    }
}

final class DutyCycleTests: XCTestCase {
    /// Simulates `periods` periods: tracing costs `costWhileOn` CPU-seconds per second
    /// traced and `costWhileOff` per second paused; returns the cost per second of the
    /// last `measured` periods and the share the cycle settled on.
    func simulate(budget: Double, costWhileOn: Double, costWhileOff: Double = 0, periods: Int = 30,
                  measured: Int = 10, forcedAt: ClosedRange<Double>? = nil) -> (costRate: Double, share: Double, onRatio: Double) {
        let random = FixedRandom(seed: 42)
        var d = DutyCycle(budget: budget, period: 10, random: { random.next() })
        var cost = 0.0, t = 0.0, on = true
        let step = 0.1, end = Double(periods) * 10, from = end - Double(measured) * 10
        var costFrom = 0.0, onTime = 0.0
        while t < end {
            if t >= from && t - step < from { costFrom = cost }
            on = d.tracing(now: t, cost: { cost }, forced: forcedAt?.contains(t) ?? false)
            cost += (on ? costWhileOn : costWhileOff) * step
            if t >= from && on { onTime += step }
            t += step
        }
        return ((cost - costFrom) / (end - from), d.share, onTime / (end - from))
    }

    /// A busy node: tracing would cost 25 % of a CPU; the budget of 0.04 CPU
    /// (2 % of 2 CPUs) holds, within a tenth, and the share is what it buys.
    func testCostStaysWithinTheBudget() {
        let r = simulate(budget: 0.04, costWhileOn: 0.25, costWhileOff: 0.002)
        XCTAssertLessThanOrEqual(r.costRate, 0.04 * 1.1, "\(r)")
        XCTAssertGreaterThan(r.costRate, 0.04 * 0.7, "the budget should be used, not wasted: \(r)")
        XCTAssertEqual(r.share, 0.04 / 0.25, accuracy: 0.03, "\(r)")
    }

    /// A flood after a quiet spell: the share grew to 1 while tracing was cheap, and
    /// the period the flood starts in still keeps to its budget (the hooks pause
    /// once it is spent), as does every period after.
    func testBurstAfterQuietKeepsEachPeriodsBudget() {
        let random = FixedRandom(seed: 3)
        var d = DutyCycle(budget: 0.04, period: 10, random: { random.next() })
        var cost = 0.0, perTick: [Double] = []
        let step = 0.1
        for i in 0..<2000 {
            let t = Double(i) * step
            let rate = t < 60 ? 0.001 : 0.5 // quiet, then tracing costs half a CPU
            let on = d.tracing(now: t, cost: { cost })
            perTick.append((on ? rate : 0) * step)
            cost += perTick.last!
        }
        // any 10 s holds parts of at most two periods, each within its budget (and a
        // tick or two of tracing past it, the granularity here)
        let slack = 2 * 0.5 * step
        for start in stride(from: 600, to: 1900, by: 10) {
            let window = perTick[start..<start + 100].reduce(0, +)
            XCTAssertLessThanOrEqual(window, 2 * (0.04 * 10 + slack), "10 s from \(Double(start) * step) s: \(window)")
        }
        let flood = perTick[600...].reduce(0, +) / (Double(perTick.count - 600) * step)
        XCTAssertLessThanOrEqual(flood, 0.04 * 1.15, "cost per second during the flood")
        XCTAssertLessThanOrEqual(perTick[600..<700].reduce(0, +), 0.04 * 10 + slack, "the period the flood starts in")
    }

    /// A quiet node: tracing is cheap, so it is continuous.
    func testCheapTracingIsContinuous() {
        let r = simulate(budget: 0.04, costWhileOn: 0.01)
        XCTAssertEqual(r.share, 1)
        XCTAssertEqual(r.onRatio, 1, accuracy: 0.02)
    }

    /// When even the least share costs more than the budget, the budget wins: each
    /// period traces until its budget is spent (a tick here), then pauses.
    func testBudgetWinsOverTheMinimumShare() {
        let r = simulate(budget: 0.001, costWhileOn: 1.0)
        XCTAssertEqual(r.share, 0.02, accuracy: 0.001)
        XCTAssertGreaterThan(r.onRatio, 0)
        XCTAssertLessThanOrEqual(r.costRate, 0.001 + 0.1 / 10, "at most a tick of tracing a period")
    }

    /// The traced stretch moves within the period (never the same part of it), so a
    /// periodic burst is not always missed or always caught.
    func testTracedStretchMoves() {
        let random = FixedRandom(seed: 7)
        var d = DutyCycle(budget: 0.04, period: 10, random: { random.next() })
        var cost = 0.0, starts = Set<Int>(), wasOn = true
        for i in 0..<3000 {
            let t = Double(i) * 0.1
            let on = d.tracing(now: t, cost: { cost })
            cost += on ? 0.025 : 0 // 0.25 CPU while on
            if on && !wasOn { starts.insert(Int(t.truncatingRemainder(dividingBy: 10))) }
            wasOn = on
        }
        XCTAssertGreaterThan(starts.count, 4, "offsets within the period: \(starts.sorted())")
    }

    /// An incident traces continuously whatever the budget.
    func testForcedIsOn() {
        let r = simulate(budget: 0.001, costWhileOn: 1.0, periods: 10, measured: 2, forcedAt: 80...100)
        XCTAssertEqual(r.onRatio, 1, accuracy: 0.02)
    }

    func testSoftnetStat() {
        let text = """
        0000a1b2 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
        0000c3d4 00000010 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000001
        """
        XCTAssertEqual(Softnet.backlogDrops(parsing: text), 0x13)
        XCTAssertNil(Softnet.backlogDrops(parsing: "garbage"))
        XCTAssertNil(Softnet.backlogDrops(parsing: ""))
        XCTAssertNotNil(Softnet.backlogDrops(), "this machine's /proc/net/softnet_stat")
    }

    func testTriggerLabelsAreFew() {
        XCTAssertEqual(Agent.triggerLabel("p99>2.00ms (5.12ms)"), "p99>2.00ms")
        XCTAssertEqual(Agent.triggerLabel("drop NO_SOCKET"), "drop:NO_SOCKET")
        XCTAssertEqual(Agent.triggerLabel("http"), "http")
    }

    /// The set the agent keeps is the one its DaemonSet and unit grant (deploy/capabilities).
    func testCapabilitySetIsTheDeployedOne() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("deploy/capabilities").path
        let listed = try String(contentsOfFile: file, encoding: .utf8).split(separator: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty && !$0.hasPrefix("#") }
        XCTAssertEqual(Privileges.kept.map(\.name).sorted(), listed.sorted())
    }
}
