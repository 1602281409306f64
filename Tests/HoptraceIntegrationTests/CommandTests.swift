import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import XCTest

/// The hoptrace binary as users run it: bad input, exit paths, the demo.
final class CommandTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRootAndBPF()
        Lab.sweepOrphans()
    }

    /// Bad input: one clear line on stderr, a non-zero exit, nothing attached.
    func testBadInputGivesOneClearLineAndNonZeroExit() throws {
        let lab = try Lab(containers: 1)
        defer { lab.teardown() }
        let c = lab.containers[0]
        let cases: [(args: [String], prefix: [String], expect: String)] = [
            (["trace", "--netns", c.netns, "--iface", "nosuch0", "--duration", "1s"], [], "no device 'nosuch0' in netns '\(c.netns)'"),
            (["trace", "--netns", "ht-no-such-netns", "--iface", "eth0", "--duration", "1s"], [], "no network namespace named 'ht-no-such-netns'"),
            (["trace", "--all-veth", "--duration", "abc"], [], "bad duration 'abc'"),
            (["trace", "--all-veth", "--duration", "0s"], [], "bad duration '0s'"),
            (["trace", "--duration", "1s"], [], "choose devices"),
            (["trace", "--all-veth", "--attach", "magic"], [], "'magic' is invalid for '--attach"),
            (["trace", "--all-veth", "--duration", "1s"], ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"], "needs root"),
        ]
        for t in cases {
            let r = try runHoptrace(t.args, prefix: t.prefix, timeout: 30)
            XCTAssertNotEqual(r.status, 0, "\(t.args) should fail")
            XCTAssertTrue(r.stderr.contains(t.expect), "\(t.args): stderr was:\n\(r.stderr)")
            XCTAssertTrue(r.stdout.isEmpty, "\(t.args) printed a report:\n\(r.stdout)")
            XCTAssertEqual(try loadedHoptracePrograms(), [], "\(t.args) left programs loaded")
        }
    }

    /// Starts `hoptrace trace` on the lab, waits until it has attached, sends
    /// `signal` (0: let it finish), and returns its exit status.
    func runAndSignal(_ lab: Lab, signal: Int32, extra: [String] = []) throws -> Int32 {
        let c = lab.containers[0]
        let p = try startTracing(["trace", "--netns", c.netns, "--iface", "eth0", "--duration", signal == 0 ? "1s" : "60s"] + extra)
        if signal != 0 {
            XCTAssertFalse(try loadedHoptracePrograms().isEmpty, "programs should be loaded while tracing")
            kill(p.processIdentifier, signal)
        }
        p.waitUntilExit()
        return p.terminationStatus
    }

    /// After a normal exit, Ctrl-C, SIGTERM and kill -9, nothing of hoptrace stays
    /// attached or loaded (tcx links die with the process).
    func testNothingLeftBehindOnEveryExitPath() throws {
        let lab = try Lab(containers: 1)
        defer { lab.teardown() }
        for (sig, name) in [(Int32(0), "normal exit"), (SIGINT, "SIGINT"), (SIGTERM, "SIGTERM"), (SIGKILL, "SIGKILL")] {
            let status = try runAndSignal(lab, signal: sig)
            if sig == 0 || sig == SIGINT || sig == SIGTERM { XCTAssertEqual(status, 0, "\(name): still reports and exits 0") }
            let left = try hoptraceProgramsLeft()
            XCTAssertEqual(left, [], "after \(name)")
        }
    }

    /// clsact filters (the fallback for kernels without tcx) outlive a killed
    /// process; the next start sweeps them.
    func testClsactLeftoversAreSweptAtNextStart() throws {
        let lab = try Lab(containers: 1)
        defer { lab.teardown() }
        let c = lab.containers[0]
        func filters() throws -> String {
            try Command.run(["tc", "-n", c.netns, "filter", "show", "dev", "eth0", "ingress"])
                + Command.run(["tc", "-n", c.netns, "filter", "show", "dev", "eth0", "egress"])
        }
        _ = try runAndSignal(lab, signal: SIGKILL, extra: ["--attach", "clsact"])
        XCTAssertTrue(try filters().contains("ht_tcx"), "a killed clsact run leaves its filters (that is why we sweep)")
        XCTAssertEqual(try runAndSignal(lab, signal: 0, extra: ["--attach", "clsact"]), 0)
        XCTAssertEqual(try filters().trimmingCharacters(in: .whitespacesAndNewlines), "")
        XCTAssertEqual(try hoptraceProgramsLeft(), [])
    }

    /// No lab outlives its run (issue 10, defect 4). `timeout -s KILL` kills the
    /// demo and returns at once, while the killed process may still be exiting or a
    /// zombie: the next run, started right away, removes its lab all the same. A
    /// Ctrl-C while the lab is being built, or at any time, leaves nothing either.
    func testLabsDoNotOutliveTheirRun() throws {
        let long = ["demo", "--requests", "1000000", "--bulk-seconds", "20"]
        let killed = try runHoptrace(long, prefix: ["timeout", "-s", "KILL", "3"], timeout: 30)
        XCTAssertNotEqual(killed.status, 0)
        let pid = try XCTUnwrap(killed.stderr.firstMatch(of: /tracing 4 devices \(ht-(\d+)-/)?.1, killed.stderr)
        let next = try runHoptrace(["demo", "--requests", "20", "--bulk-seconds", "0.2", "--datagrams", "20"], timeout: 60)
        XCTAssertEqual(next.status, 0, next.stderr)
        XCTAssertEqual(try namespaces(startingWith: "ht-\(pid)-"), [], "the killed run's lab is still there:\n\(next.stderr)")
        // Ctrl-C while the lab is being built
        let (p, _) = try startHoptrace(["demo"], until: "building a lab")
        kill(p.processIdentifier, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 130, "interrupted during set-up: 128 + SIGINT")
        XCTAssertEqual(try namespaces(startingWith: "ht-\(p.processIdentifier)-"), [])
        // and the issue's own reproduction: Ctrl-C after one second, wherever it is then
        let one = try runHoptrace(["demo"], prefix: ["timeout", "-s", "INT", "1"], timeout: 60)
        XCTAssertEqual(Lab.orphans(existing: try namespaces(startingWith: Lab.prefix)), [], "left by a dead run:\n\(one.stderr)")
        XCTAssertEqual(try hoptraceProgramsLeft(), [])
    }

    /// `demo` builds its lab, runs traffic, reports every hop without losing a
    /// record, and removes the lab.
    func testDemoReportsEveryHopAndCleansUp() throws {
        let before = Set(try Command.run(["ip", "netns", "list"]).split(separator: "\n").map { String($0.split(separator: " ")[0]) })
        let r = try runHoptrace(["demo", "--json", "--requests", "300", "--bulk-seconds", "0.5", "--datagrams", "300"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        XCTAssertEqual(json["lost_events"] as? Int, 0)
        let hops = try XCTUnwrap(json["hops"] as? [[String: Any]])
        XCTAssertEqual(hops.count, 4, "a->hub, hub->b and back: \(hops.map { "\($0["from"]!) -> \($0["to"]!)" })")
        for hop in hops { XCTAssertGreaterThan(hop["packets"] as? Int ?? 0, 0) }
        let after = Set(try Command.run(["ip", "netns", "list"]).split(separator: "\n").map { String($0.split(separator: " ")[0]) })
        XCTAssertEqual(after.subtracting(before), [], "demo left namespaces behind")
        XCTAssertEqual(try loadedHoptracePrograms(), [])
    }

    /// `demo --keep` leaves its three namespaces up (and says how to remove them).
    func testDemoKeepLeavesTheLab() throws {
        let before = Set(try Command.run(["ip", "netns", "list"]).split(separator: "\n").map { String($0.split(separator: " ")[0]) })
        let r = try runHoptrace(["demo", "--keep", "--requests", "50", "--bulk-seconds", "0.2", "--datagrams", "50"], timeout: 60)
        XCTAssertEqual(r.status, 0, r.stderr)
        let after = Set(try Command.run(["ip", "netns", "list"]).split(separator: "\n").map { String($0.split(separator: " ")[0]) })
        let kept = after.subtracting(before)
        for name in kept { _ = try? Command.run(["ip", "netns", "del", name]) }
        XCTAssertEqual(kept.count, 3, "hub, a and b: \(kept)")
        XCTAssertTrue(r.stderr.contains("lab kept"), r.stderr)
    }
}
