import HoptraceCore
import HoptraceViews
import XCTest

/// `hoptrace top`'s screen without a terminal: rows, keys, sparklines, layout.
final class TopScreenTests: XCTestCase {
    static func hop(_ name: String, pps: Double, p50: UInt64, p99: UInt64, drops: Double = 0) -> LiveInterval.Hop {
        LiveInterval.Hop(hop: name, from: String(name.split(separator: " ")[0]), to: String(name.split(separator: " ")[2]),
                         packetsPerSecond: pps, records: UInt64(pps), p50Ns: p50, p99Ns: p99, maxNs: p99 * 2,
                         dropsPerSecond: drops, topDropReason: drops > 0 ? "NO_SOCKET" : nil)
    }

    static func interval(_ hops: [LiveInterval.Hop], cpus: Int = 2) -> LiveInterval {
        LiveInterval(time: 0, seconds: 1, hops: hops,
                     softirq: (0..<cpus).map { LiveInterval.CPU(cpu: $0, busyPercent: Double($0) * 10, raiseToRunP99Ns: 3_000,
                                                                ksoftirqdPercent: 5) },
                     cost: LiveInterval.Cost(consumerPercent: 0.4, viewPercent: 0.1))
    }

    let three = [hop("web/eth0 -> host/veth1", pps: 100, p50: 5_000, p99: 90_000),
                 hop("db/eth0 -> host/veth2", pps: 9_000, p50: 7_000, p99: 20_000, drops: 3),
                 hop("host/veth1 -> web/eth0", pps: 50, p50: 40_000, p99: 50_000)]

    func testRowsFollowTheSortAndSCyclesIt() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval(three))
        XCTAssertEqual(s.sort, .p99)
        XCTAssertEqual(s.rows.map(\.p99Ns), [90_000, 50_000, 20_000])
        XCTAssertEqual(s.press(.character("s")), .redraw)
        XCTAssertEqual(s.sort, .p50)
        XCTAssertEqual(s.rows.map(\.p50Ns), [40_000, 7_000, 5_000])
        _ = s.press(.character("s")) // max
        _ = s.press(.character("s")) // packets
        XCTAssertEqual(s.sort, .packets)
        XCTAssertEqual(s.rows.first?.hop, "db/eth0 -> host/veth2")
        for _ in 0..<3 { _ = s.press(.character("s")) }
        XCTAssertEqual(s.sort, .p99, "s cycles back to the first column")
    }

    func testFilterIsTypedAfterSlashAndEscapeClearsIt() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval(three))
        _ = s.press(.character("/"))
        for c in "WEB" { _ = s.press(.character(c)) }
        XCTAssertEqual(s.filterDraft, "WEB")
        XCTAssertEqual(s.rows.count, 3, "the filter applies on Enter")
        XCTAssertEqual(s.press(.character("q")), .redraw, "q while typing is text, not quit")
        _ = s.press(.backspace)
        _ = s.press(.enter)
        XCTAssertEqual(s.filter, "WEB")
        XCTAssertEqual(Set(s.rows.map(\.hop)), ["web/eth0 -> host/veth1", "host/veth1 -> web/eth0"])
        let text = s.lines(width: 120, height: 20, context: "4 devices", clock: "12:00:00").map(\.text).joined(separator: "\n")
        XCTAssertTrue(text.contains("2 match 'WEB'"))
        _ = s.press(.escape)
        XCTAssertEqual(s.filter, "")
        XCTAssertEqual(s.rows.count, 3)
    }

    func testPauseKeepsTheScreenAndQuitQuits() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval(three))
        _ = s.press(.character(" "))
        s.show(Self.interval([]))
        XCTAssertEqual(s.rows.count, 3, "paused: the interval shown stays")
        XCTAssertTrue(s.lines(width: 100, height: 20, context: "", clock: "").first!.text.contains("PAUSED"))
        _ = s.press(.character(" "))
        XCTAssertEqual(s.rows.filter { $0.records > 0 }.count, 0, "unpaused: the latest interval, in which no hop had a packet")
        XCTAssertEqual(s.press(.character("q")), .quit)
        XCTAssertEqual(s.press(.character("x")), .none)
    }

    /// The sparklines go on while paused (the minute after a pause is a minute), and
    /// the screen shows what it showed when paused until unpaused.
    func testPauseFreezesTheScreenNotTheHistory() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval([three[0]]))
        _ = s.press(.character(" "))
        let before = s.lines(width: 120, height: 12, context: "", clock: "")
        for _ in 0..<3 { s.show(Self.interval([Self.hop("web/eth0 -> host/veth1", pps: 10, p50: 1_000, p99: 400_000)])) }
        XCTAssertEqual(s.lines(width: 120, height: 12, context: "", clock: ""), before, "paused: the same screen")
        XCTAssertEqual(s.history["web/eth0 -> host/veth1"], [90_000, 400_000, 400_000, 400_000])
        _ = s.press(.character(" "))
        XCTAssertEqual(s.rows.first?.p99Ns, 400_000)
        // space before any interval pauses an empty screen, which stays empty
        var t = TopScreen(intervalSeconds: 1)
        _ = t.press(.character(" "))
        t.show(Self.interval(three))
        XCTAssertNil(t.latest)
        XCTAssertTrue(t.lines(width: 100, height: 10, context: "", clock: "").contains { $0.text.contains("waiting") })
    }

    /// A hop silent for an interval keeps its row (no figures, its sparkline) until a
    /// minute passes without a packet: intermittent hops do not blink.
    func testSilentHopsStayForAMinute() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval(three))
        s.show(Self.interval([three[1]]))
        XCTAssertEqual(s.rows.count, 3)
        XCTAssertEqual(s.rows.first?.hop, "db/eth0 -> host/veth2", "the hop with figures first, silent ones after")
        let text = s.lines(width: 120, height: 12, context: "", clock: "").map(\.text)
        let web = try! XCTUnwrap(text.first { $0.hasPrefix("web/eth0 -> host/veth1") })
        XCTAssertTrue(web.contains("       -       -       -"), web)
        XCTAssertTrue(text[0].contains("3 hops"))
        for _ in 0..<59 { s.show(Self.interval([three[1]])) }
        XCTAssertEqual(s.rows.map(\.hop), ["db/eth0 -> host/veth2"], "silent for a minute: gone")
    }

    /// A long hop name stays whole on a wide terminal (the tests' lab names are 40
    /// characters and more), and is cut in the middle only when the figures and a
    /// short sparkline would not fit.
    func testLongNamesStayWholeWhenThereIsRoom() {
        var s = TopScreen(intervalSeconds: 1)
        let name = "ht-204770-29-a/eth0 -> ht-204770-29-hub/veth-long-name"
        s.show(Self.interval([Self.hop(name, pps: 10, p50: 1_000, p99: 2_000)]))
        let wide = s.lines(width: 200, height: 10, context: "", clock: "").map(\.text)
        XCTAssertTrue(wide.contains { $0.hasPrefix(name + " ") }, wide.joined(separator: "\n"))
        XCTAssertTrue(wide[1].contains(" 60S"), "and a sparkline: \(wide[1])")
        let narrow = s.lines(width: 80, height: 10, context: "", clock: "").map(\.text)
        XCTAssertTrue(narrow.contains { $0.hasPrefix("ht-204770-29-a") && $0.contains("…") }, narrow.joined(separator: "\n"))
    }

    /// Names come from the node: an interface named with an escape sequence is drawn
    /// with "?" for its control characters, never sent to the terminal.
    func testControlCharactersInNamesAreNotSent() {
        var s = TopScreen(intervalSeconds: 1)
        s.show(Self.interval([Self.hop("pod/\u{1b}[2J\u{1b}]0;x\u{07} -> host/veth\u{9b}1", pps: 10, p50: 1_000, p99: 2_000)]))
        for line in s.lines(width: 120, height: 10, context: "", clock: "") {
            XCTAssertFalse(line.text.unicodeScalars.contains { $0.value < 0x20 || (0x7f...0x9f).contains($0.value) }, line.text)
        }
        XCTAssertTrue(s.lines(width: 120, height: 10, context: "", clock: "").contains { $0.text.hasPrefix("pod/?[2J?]0;x? -> host/veth?1") })
    }

    /// Each hop keeps a minute of p99s; a hop absent for an interval has a gap;
    /// r forgets them.
    func testSparklineHistory() {
        var s = TopScreen(intervalSeconds: 1)
        XCTAssertEqual(s.historyLength, 60)
        for i in 0..<70 {
            let hops = i == 65 ? [three[0]] : [Self.hop("web/eth0 -> host/veth1", pps: 10, p50: 1_000, p99: UInt64(1_000 * (i + 1))), three[1]]
            s.show(Self.interval(hops))
        }
        XCTAssertEqual(s.history["web/eth0 -> host/veth1"]?.count, 60)
        XCTAssertEqual(s.history["db/eth0 -> host/veth2"]?[60 - 5], nil, "absent in that interval")
        let line = TopScreen.sparkline(s.history["web/eth0 -> host/veth1"]!, width: 60)
        XCTAssertEqual(line.count, 60)
        XCTAssertEqual(Array(line)[55], "█", "the slowest interval (90us, 5 intervals ago)")
        XCTAssertEqual(line.last, "▇")
        XCTAssertEqual(line.first, "▁")
        _ = s.press(.character("r"))
        XCTAssertTrue(s.history.isEmpty)
        // a steady hop is flat and low, not amplified jitter
        let steady = TopScreen.sparkline([100, 104, 98, nil, 101], width: 8)
        XCTAssertEqual(steady.count, 8)
        XCTAssertTrue(steady.hasPrefix("   "))
        XCTAssertTrue(steady.allSatisfy { " ▆▇█".contains($0) }, steady)
    }

    /// The screen fills the terminal exactly, every line within its width, and
    /// what does not fit says so.
    func testLayoutFitsTheTerminal() {
        var s = TopScreen(intervalSeconds: 1)
        let many = (0..<40).map { Self.hop("pod-\($0)/eth0 -> host/veth\($0)", pps: 10, p50: 1_000, p99: UInt64(1_000 + $0)) }
        s.show(Self.interval(many, cpus: 16))
        for (w, h) in [(80, 24), (160, 50), (200, 12), (40, 6)] {
            let lines = s.lines(width: w, height: h, context: "80 devices", clock: "12:00:00")
            XCTAssertTrue(w < 80 || lines[1].text.contains(" 60S"), "a sparkline from 80 columns: \(lines[1].text)")
            XCTAssertTrue(w < 160 || lines[1].text.hasSuffix("TOP DROP"), "the drop reason with room: \(lines[1].text)")
            let row = lines.first { $0.text.hasPrefix("pod-39/eth0 -> host/veth39") }
            XCTAssertTrue(w < 80 || row != nil, "the whole hop name at \(w) columns")
            XCTAssertEqual(lines.count, h, "\(w)x\(h)")
            for l in lines { XCTAssertLessThanOrEqual(l.text.count, w, "\(w)x\(h): \(l.text)") }
            XCTAssertTrue(lines.last!.text.hasPrefix("q quit"), "\(w)x\(h)")
            XCTAssertTrue(h >= 45 || lines.contains { $0.text.contains("more hops") }, "\(w)x\(h):\n" + lines.map(\.text).joined(separator: "\n"))
            XCTAssertTrue(lines.contains { $0.text.hasPrefix("SOFTIRQ") }, "\(w)x\(h)")
        }
        // a terminal under 40x6: its size, no more (nothing wraps or scrolls)
        let tiny = s.lines(width: 30, height: 4, context: "", clock: "")
        XCTAssertEqual(tiny.count, 4)
        XCTAssertTrue(tiny.allSatisfy { $0.text.count <= 30 })
        let big = s.lines(width: 160, height: 80, context: "", clock: "").map(\.text)
        XCTAssertEqual(big.filter { $0.contains(" -> ") }.count, 40, "all hops fit on a tall screen")
        XCTAssertEqual(big.filter { $0.hasPrefix("        ") && $0.hasSuffix("%") }.count, 16, "a line per CPU")
        XCTAssertTrue(big.last!.contains("consumer 0.4%") && big.last!.contains("view 0.1%"))
        XCTAssertTrue(big.contains { $0.hasPrefix("pod-39/eth0 -> host/veth39") }, "sorted by p99: slowest first")
    }

    /// Sampled rates and a minimum latency say so in the title.
    func testTitleSaysWhatTheRatesAreOf() {
        var s = TopScreen(intervalSeconds: 1)
        var i = Self.interval(three)
        i.sampling = Sampling(every: 100, minLatencyNs: 50_000)
        s.show(i)
        let title = s.lines(width: 200, height: 10, context: "", clock: "")[0].text
        XCTAssertTrue(title.contains("1 in 100 sampled (rates x100)"), title)
        XCTAssertTrue(title.contains("hops >= 50.0us only"), title)
    }

    func testEmptyAndWaiting() {
        var s = TopScreen(intervalSeconds: 1)
        XCTAssertTrue(s.lines(width: 100, height: 10, context: "", clock: "").contains { $0.text.contains("waiting for the first interval") })
        s.show(Self.interval([]))
        XCTAssertTrue(s.lines(width: 100, height: 10, context: "", clock: "").contains { $0.text.contains("no packet crossed") })
    }

    func testRates() {
        XCTAssertEqual(TopScreen.rate(0), "0.0")
        XCTAssertEqual(TopScreen.rate(2.5), "2.5")
        XCTAssertEqual(TopScreen.rate(850), "850")
        XCTAssertEqual(TopScreen.rate(12_345), "12.3k")
        XCTAssertEqual(TopScreen.rate(1_250_000), "1.2M")
    }
}
