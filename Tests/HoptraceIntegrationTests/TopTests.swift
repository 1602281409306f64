import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTestSupport
import XCTest

/// `hoptrace top` as people use it: full screen in a real terminal (tmux), keys
/// sent as typed, the screen read back; and piped, as JSON lines.
final class TopTests: XCTestCase {
    func requireTmux() throws {
        try requireRootAndBPF()
        if !Tmux.isInstalled { try notRun("tmux is not installed: run 'make deps'") }
    }

    /// Request/response traffic from the lab's first container to its second, for
    /// about `seconds`; wait on the group before the lab goes.
    func traffic(_ lab: Lab, seconds: Double) -> DispatchGroup {
        let a = lab.containers[0], b = lab.containers[1]
        let group = DispatchGroup()
        group.enter()
        Thread {
            _ = try? Traffic.tcpRequestResponse(client: a.netns, server: b.netns, serverAddress: b.address, port: 7300,
                                                requests: Int(seconds * 1_500), intervalUs: 400)
            group.leave()
        }.start()
        return group
    }

    /// The rows of the screen that are hops: (name, p50 in ns).
    static func hopRows(_ screen: String) -> [(hop: String, p50Ns: UInt64)] {
        screen.split(separator: "\n").compactMap { line in
            guard line.contains(" -> ") else { return nil }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let arrow = fields.firstIndex(of: "->"), fields.count > arrow + 4,
                  let p50 = DurationParser.nanoseconds(String(fields[arrow + 3])) else { return nil }
            return (fields[0...arrow + 1].joined(separator: " "), p50)
        }
    }

    /// Shows the lab's hops within 3 s of traffic, sorts on s, and quits on q,
    /// Ctrl-C and SIGTERM with the terminal as it was and nothing attached.
    func testFullScreenUnderTmux() throws {
        try requireTmux()
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0]
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ht-top-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let binary = try hoptraceBinary()

        var sockets: [String] = []
        for exit in ["q", "C-c", "SIGTERM"] {
            let tmux = Tmux()
            sockets.append(tmux.socketPath)
            // the pane's shell keeps the terminal's settings before and after, and top's exit
            // status; it outlives Ctrl-C as a login shell does (a trap, reset for top at exec)
            // the SIGTERM run samples every 30 s: a redraw after a resize is SIGWINCH's
            let interval = exit == "SIGTERM" ? "30s" : "1s"
            let script = "trap : INT; stty -g > \(dir)/before; \(binary) top --netns \(a.netns) --iface eth0 --interval \(interval) "
                + "2>\(dir)/stderr; "
                + "echo $? > \(dir)/status; stty -g > \(dir)/after; sleep 600"
            for f in ["before", "after", "status"] { try? FileManager.default.removeItem(atPath: "\(dir)/\(f)") }
            try tmux.start(script)
            XCTAssertTrue(tmux.wait(20) { $0.contains("hoptrace top") }, "\(exit): top never drew: \(tmux.screen())")
            XCTAssertEqual(tmux.value("#{alternate_on}"), "1", "\(exit): full screen on the alternate screen")

            if exit == "q" {
                let started = Date()
                let t = traffic(lab, seconds: 6)
                defer { _ = t.wait(timeout: .now() + 20) }
                let shown = tmux.wait(3) { Self.hopRows($0).contains { $0.hop.hasPrefix("\(a.netns)/eth0 -> ") } }
                XCTAssertTrue(shown, "the lab's hops within 3 s of traffic:\n\(tmux.screen())")
                print("top: the lab's hops shown \(String(format: "%.2f", Date().timeIntervalSince(started))) s after traffic started")
                XCTAssertTrue(tmux.screen().contains("sort: p99"))
                XCTAssertGreaterThanOrEqual(Self.hopRows(tmux.screen()).count, 2, tmux.screen())
                try tmux.send("s")
                XCTAssertTrue(tmux.wait(2) { $0.contains("sort: p50") }, "s sorts by the next column:\n\(tmux.screen())")
                // after the next interval too, rows are slowest p50 first
                usleep(1_200_000)
                let rows = Self.hopRows(tmux.screen())
                XCTAssertEqual(rows.map(\.p50Ns), rows.map(\.p50Ns).sorted(by: >), "sorted by p50:\n\(tmux.screen())")
                try tmux.send("q")
            } else if exit == "C-c" {
                try tmux.send("C-c")
            } else {
                // resized: redrawn at once at the new size (no interval ends for 30 s),
                // the footer on the last of its 20 rows, the title within its 100 columns
                _ = try tmux.run(["resize-window", "-t", "main", "-x", "100", "-y", "20"])
                let redrawn = tmux.wait(1.5) { screen in
                    let rows = screen.split(separator: "\n", omittingEmptySubsequences: false).prefix(20)
                    return rows.count == 20 && rows.last?.hasPrefix("q quit") == true && rows.contains { $0.hasPrefix("SOFTIRQ") }
                }
                XCTAssertTrue(redrawn, "redrawn at 100x20:\n\(tmux.screen())")
                let shell = tmux.value("#{pane_pid}")
                let top = try Command.run(["pgrep", "-P", shell, "-f", "hoptrace top"]).split(separator: "\n").first.map(String.init)
                XCTAssertNotNil(top, "top's pid")
                if let top, let pid = Int32(top) { kill(pid, SIGTERM) }
            }

            var status = ""
            for _ in 0..<100 where status.isEmpty {
                usleep(100_000)
                status = (try? String(contentsOfFile: "\(dir)/status", encoding: .utf8)) ?? ""
            }
            let stderr = (try? String(contentsOfFile: "\(dir)/stderr", encoding: .utf8)) ?? ""
            XCTAssertEqual(status.trimmingCharacters(in: .whitespacesAndNewlines), "0", "\(exit): exit status; stderr: \(stderr)")
            usleep(200_000)
            XCTAssertEqual(tmux.value("#{alternate_on}"), "0", "\(exit): back on the normal screen")
            XCTAssertEqual(tmux.value("#{cursor_flag}"), "1", "\(exit): the cursor is shown again")
            let before = try? String(contentsOfFile: "\(dir)/before", encoding: .utf8)
            let after = try? String(contentsOfFile: "\(dir)/after", encoding: .utf8)
            XCTAssertNotNil(before)
            XCTAssertEqual(before, after, "\(exit): the terminal's settings are restored")
            XCTAssertEqual(try hoptraceProgramsLeft(), [], "\(exit): nothing left loaded or attached")
        }
        for socket in sockets { XCTAssertFalse(FileManager.default.fileExists(atPath: socket), "\(socket) left behind") }
    }

    /// Piped, top prints one JSON object per interval, with the lab's hops.
    func testJSONLinesWhenPiped() throws {
        try requireRootAndBPF()
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let a = lab.containers[0]
        let t = traffic(lab, seconds: 5)
        defer { _ = t.wait(timeout: .now() + 20) }
        let r = try runHoptrace(["top", "--netns", a.netns, "--iface", "eth0", "--duration", "3500ms", "--interval", "1s"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let lines = r.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 3, "one line per interval:\n\(r.stdout)")
        var hopsSeen = Set<String>()
        for line in lines {
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            XCTAssertNotNil(object, "a JSON object per line: \(line)")
            guard let object else { continue }
            XCTAssertEqual(object["interval_s"] as? Double ?? 0, 1, accuracy: 0.2)
            XCTAssertNotNil(object["cost"] as? [String: Any])
            XCTAssertEqual((object["softirq"] as? [Any])?.count, ProcessInfo.processInfo.activeProcessorCount)
            for hop in object["hops"] as? [[String: Any]] ?? [] where (hop["records"] as? Int ?? 0) > 0 {
                hopsSeen.insert(hop["hop"] as? String ?? "")
                XCTAssertGreaterThan(hop["p99_ns"] as? Int ?? 0, 0)
                XCTAssertGreaterThanOrEqual(hop["max_ns"] as? Int ?? 0, hop["p99_ns"] as? Int ?? 0)
            }
        }
        XCTAssertTrue(hopsSeen.contains { $0.hasPrefix("\(a.netns)/eth0 -> ") }, "the lab's hops: \(hopsSeen)")
        XCTAssertEqual(try hoptraceProgramsLeft(), [])
    }
}
