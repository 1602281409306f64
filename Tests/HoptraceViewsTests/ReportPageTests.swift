import Foundation
import HoptraceCore
@testable import HoptraceRecording
import XCTest

@testable import HoptraceViews

/// The HTML pages without a browser: geometry of the scales and bars, the golden
/// pages of the fixture, what every page must (not) contain, and the size of an hour.
///
/// The golden files pin the pages' bytes for `Fixture` (values to coordinates). After
/// an intended change of the pages, regenerate them and review the diff:
///     HOPTRACE_UPDATE_GOLDEN=1 swift test --skip-build --filter HoptraceViewsTests.ReportPageTests
final class ReportPageTests: XCTestCase {
    static let golden = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Golden")

    func testLogScalePutsADecadeAtAThirdOfThreeDecades() {
        let s = LogScale(low: 1_000, high: 1_000_000, from: 40, to: 340)
        XCTAssertEqual(s.position(10_000), 40 + 300.0 / 3, accuracy: 1e-9)
        XCTAssertEqual(s.position(1_000), 40, accuracy: 1e-9)
        XCTAssertEqual(s.position(1_000_000), 340, accuracy: 1e-9)
        XCTAssertEqual(s.position(5), 40, "clamped below the domain")
        XCTAssertEqual(s.ticks.map(\.label), ["1us", "10us", "100us", "1ms"])
        let d = LogScale.decades(covering: 1_500, 250_000, from: 0, to: 100)
        XCTAssertEqual([d.low, d.high], [1_000, 1_000_000])
    }

    func testLinearScaleRoundsUpToATick() {
        let s = LinearScale(high: 87, from: 100, to: 0, tickCount: 4)
        XCTAssertEqual(s.high, 100)
        XCTAssertEqual(s.ticks.map(\.label), ["0", "50", "100"])
        XCTAssertEqual(s.position(50), 50, accuracy: 1e-9)
    }

    func testBarsAreAsWideAsTheirValues() throws {
        let scale = BreakdownChart.scale(maxStackNs: 10_000)
        var s = LatencySummary(Histogram())
        s.p50Ns = 1_000
        s.p99Ns = 4_000
        var t = s
        t.p50Ns = 2_000
        t.p99Ns = 6_000
        let svg = BreakdownChart.svg(hop: "a -> b", title: "a -> b", segments: ["qdisc": s, "backlog": t], scale: scale)
        let widths = try rects(svg).map(\.width)
        let unit = (scale.to - scale.from) / scale.high // pixels per ns
        XCTAssertEqual(widths.count, 4, "qdisc and backlog, at p50 and at p99")
        for (w, ns) in zip(widths, [1_000.0, 2_000, 4_000, 6_000]) { XCTAssertEqual(w, ns * unit, accuracy: 0.11) }
        // qdisc first, backlog from where it ends (Views.segmentOrder)
        XCTAssertEqual(try rects(svg)[1].x, try rects(svg)[0].x + widths[0], accuracy: 0.11)
    }

    func testTimeAxisEndsWithTheRecording() {
        let x = TimelineChart.timeScale(TimelineColumns(windows: 3_600), windowNs: 1_000_000_000)
        XCTAssertEqual(x.high, 3_600, "an hour fills the width, no empty 3600-4000 s")
        XCTAssertEqual(x.ticks.map(\.label), ["0", "500", "1000", "1500", "2000", "2500", "3000", "3500"])
        XCTAssertEqual(x.position(3_600), x.to, accuracy: 1e-9)
        XCTAssertEqual(TimelineChart.timeScale(TimelineColumns(windows: 12), windowNs: 1_000_000_000).ticks.last?.label, "12")
    }

    /// The fixture's 3 drops of window 8 stand as high as the strip's axis says.
    func testDropBarsAreAsTallAsTheirCounts() throws {
        let html = ReportPage(trace: try Fixture.trace(), source: "fixture.hoptrace").html()
        let strip = try XCTUnwrap(chart(html, "strip drops"))
        let bars = try rects(strip)
        XCTAssertEqual(bars.count, 1, "one column with drops")
        let y = LinearScale(high: 3, from: NodeStripChart.plot.bottom, to: NodeStripChart.plot.top, tickCount: 2)
        XCTAssertEqual(bars[0].height, y.from - y.position(3), accuracy: 0.11)
        XCTAssertGreaterThan(bars[0].height, 10)
        XCTAssertTrue(strip.contains("<title>8-9 s: 3 packets dropped</title>"))
    }

    /// One wide interval (few windows) does not squash the other changes to zero:
    /// the axis holds the changes and intervals up to ±100 %, and an interval past
    /// it ends in an arrowhead at the axis's end. Without an interval, no bar.
    func testChangeAxisIsNotStretchedByOneWideInterval() throws {
        func entry(_ segment: String, _ change: Double, _ low: Double, _ high: Double, _ v: Comparison.Verdict) -> Comparison.Entry {
            Comparison.Entry(hop: "a -> b", segment: segment, beforeP50Ns: 1_000, afterP50Ns: 1_000, beforeP99Ns: 2_000,
                             afterP99Ns: 3_000, p99ChangePercent: change, p99LowPercent: low, p99HighPercent: high,
                             p50ChangePercent: 0, verdict: v, windowsBefore: 12, windowsAfter: 12)
        }
        let entries = [entry("total", 50, 40, 60, .slower), entry("qdisc", 120, -97.5, 3_848, .unchanged),
                       entry("veth", 5, 0, 0, .tooFewWindows)]
        let scale = ChangeChart.scale(entries)
        XCTAssertEqual(scale.high, 200, "the largest change (120 %), not the interval's +3848 %")
        XCTAssertEqual(scale.position(50) - scale.position(0), (scale.to - scale.from) / 8, accuracy: 1e-9)
        let svg = ChangeChart.svg(hop: "a -> b", title: "a -> b", entries: entries, scale: scale)
        XCTAssertEqual(count(svg, "class=\"interval unchanged clipped\""), 1, "qdisc's interval runs off the +200 end only")
        XCTAssertTrue(svg.contains("the interval goes on to +3848.0%"))
        XCTAssertEqual(count(svg, "<line class=\"interval"), 2, "no interval bar for too few windows")
        XCTAssertTrue(svg.contains(">p99 2.00us -&gt; 3.00us  +5.0%</text>"), "its change, no [+0.0%, +0.0%]")
        XCTAssertEqual(ChangeChart.scale([entry("total", 3, -2, 8, .unchanged)]).high, 10, "at least ±10 %")
    }

    func testBinsHoldEveryPacket() {
        var h = Histogram()
        for v in stride(from: UInt64(500), to: 900_000, by: 997) { h.record(v) }
        let scale = DistributionChart.scale(covering: [h])
        let bins = DistributionChart.binPercents(h, scale: scale)
        XCTAssertEqual(bins.reduce(0, +), 100, accuracy: 1e-6)
        XCTAssertEqual(bins.count, DistributionChart.binsPerDecade * 4, "100ns..1ms: four decades")
    }

    func testColumnsMergeAnHourIntoSixHundredAndKeepFlags() {
        let c = TimelineColumns(windows: 3_600)
        XCTAssertEqual(c.windowsPerColumn, 6)
        XCTAssertEqual(c.count, 600)
        XCTAssertEqual(c.windows(of: 599), 3_594..<3_600)
        XCTAssertEqual(c.column(of: 1_234), 205)
        XCTAssertEqual(TimelineColumns(windows: 12).windowsPerColumn, 1)
    }

    func testReportPageMatchesGolden() throws {
        let html = ReportPage(trace: try Fixture.trace(), source: "fixture.hoptrace").html()
        try matchGolden(html, "report.html")
    }

    func testComparePageMatchesGolden() throws {
        let html = try comparePage()
        try matchGolden(html, "compare.html")
    }

    func testReportPageHasAChartPerHopAndSegment() throws {
        let trace = try Fixture.trace()
        let html = ReportPage(trace: trace, source: "fixture.hoptrace").html()
        let charts = distributionCharts(html)
        let web = "cni-web/eth0 -> host/vethweb", db = "host/br0 -> cni-db/eth0"
        XCTAssertEqual(charts[web], ["qdisc", "veth", "backlog", "total"], "no forward on a first hop, no delivery")
        XCTAssertEqual(charts[db], ["veth", "backlog", "forward", "deliver", "total"], "no qdisc on a noqueue device")
        XCTAssertEqual(count(html, "class=\"chart breakdown\""), 2)
        XCTAssertEqual(count(html, "class=\"chart timeline\""), 2)
        XCTAssertEqual(count(html, "class=\"chart strip drops\""), 1)
        XCTAssertEqual(count(html, "class=\"chart strip softirq\""), 1)
        XCTAssertTrue(html.contains("latency (log scale)") && html.contains("packets (%)") && html.contains("time since the start (s)"))
        // window 8 of web's hop is flagged: one shaded column, titled with the flag
        XCTAssertEqual(count(html, "<rect class=\"flag\""), 1)
        XCTAssertTrue(html.contains("FLAG window 8:"))
        // the workloads in every heading of the hop: breakdown, distributions, timeline
        let title = "cni-web/eth0 -&gt; host/vethweb  (shop/web -&gt; -)"
        XCTAssertTrue(html.contains("<h3>\(title)</h3>"))
        XCTAssertTrue(html.contains("<text class=\"chart-heading\" x=\"64\" y=\"14\" text-anchor=\"start\">\(title)</text>"))
        XCTAssertEqual(count(html, ">\(title)</text>"), 2, "breakdown and timeline")
        // the flows' ends by workload, "-" where unknown
        XCTAssertTrue(html.contains("<th>flow</th><th>from</th><th>to</th><th>packets</th>"))
        XCTAssertTrue(html.contains("<td>tcp 10.1.0.5:40003 -&gt; 10.1.0.9:5432</td><td>shop/web</td><td>-</td>"))
    }

    func testComparePageOverlaysBothRunsAndColoursVerdicts() throws {
        let html = try comparePage()
        let charts = distributionCharts(html)
        XCTAssertEqual(charts.count, 2)
        XCTAssertEqual(count(html, "class=\"area before\""), count(html, "class=\"area after\""))
        XCTAssertEqual(count(html, "class=\"chart change\""), 2)
        XCTAssertEqual(count(html, "data-run=\"before\""), count(html, "data-run=\"after\""))
        XCTAssertTrue(html.contains("class=\"verdict slower\""), "web's qdisc got 50 % slower")
        let title = "cni-web/eth0 -&gt; host/vethweb  (shop/web -&gt; -)"
        XCTAssertTrue(html.contains("<h3>\(title)</h3>"), "workload names in the distributions' headings")
        XCTAssertTrue(html.contains("class=\"chart change\" width=\"1200\"") && html.contains(">\(title)</text>"))
        // the verdict, then the figures, without overlap: NO SIGNIFICANT CHANGE in 11 px
        // DejaVu Sans Bold (Debian's default font) is 157 px wide
        XCTAssertLessThan(ChangeChart.verdictLeft + 170, ChangeChart.figuresLeft)
        XCTAssertTrue(html.contains("<td class=\"slower\">slower</td>"))
    }

    func testPagesAreSelfContainedAndEscapeNames() throws {
        let hostile = "web<script>alert('x')</script>&\"q\""
        let trace = try Fixture.trace(webName: hostile)
        let pages = [ReportPage(trace: trace, source: "<b>.hoptrace").html(),
                     ComparePage(before: trace, after: trace, comparison: Comparison(before: trace.comparisonRun, after: trace.comparisonRun),
                                 beforeSource: "a", afterSource: "b").html()]
        for html in pages {
            for banned in ["<script", "http://", "https://", "url(", "@import", "<link", "<img", "<b>"] {
                XCTAssertFalse(html.lowercased().contains(banned), "the page contains \(banned)")
            }
            XCTAssertTrue(html.contains("@media print"))
        }
        XCTAssertTrue(pages[0].contains("web&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;q&quot;"))
    }

    /// A page's size grows with its timeline columns (at most 600 per hop, as many as
    /// an hour of 1 s windows gets) and its hops: 600 windows of 10 hops make as many
    /// columns as an hour, at a sixth of the records to write and read in a debug
    /// build. Under 3 MB (`hoptrace-bench --html-only` renders a real hour and times it).
    func testSixHundredColumnsOfTenHopsAreUnderThreeMegabytes() throws {
        let path = NSTemporaryDirectory() + "hoptrace-views-600-\(getpid()).hoptrace"
        defer { unlink(path) }
        try SyntheticRecording(windows: 600, hops: 10, recordsPerHop: 20, slowEvery: 50).write(to: path)
        let trace = try RecordedTrace(path: path)
        XCTAssertEqual(TimelineColumns(windows: trace.windows.lastWindow + 1).count, TimelineColumns(windows: 3_600).count)
        let report = ReportPage(trace: trace, source: path).html()
        XCTAssertLessThan(report.utf8.count, 3_000_000)
        XCTAssertEqual(count(report, "class=\"chart timeline\""), 10)
        XCTAssertGreaterThan(count(report, "<rect class=\"flag\""), 5)
        XCTAssertTrue(report.contains("<th>flow</th><th>packets</th>"), "no workload known at any flow's end: no from and to columns")
        let compare = ComparePage(before: trace, after: trace,
                                  comparison: Comparison(before: trace.comparisonRun, after: trace.comparisonRun, resamples: 50),
                                  beforeSource: path, afterSource: path).html()
        XCTAssertLessThan(compare.utf8.count, 3_000_000)
        print("600 columns of 10 hops: report \(report.utf8.count) bytes, compare \(compare.utf8.count) bytes")
    }

    // MARK: helpers

    func comparePage() throws -> String {
        let a = try Fixture.trace(), b = try Fixture.trace(qdiscFactor: 15)
        return ComparePage(before: a, after: b, comparison: Comparison(before: a.comparisonRun, after: b.comparisonRun),
                           beforeSource: "before.hoptrace", afterSource: "after.hoptrace").html()
    }

    func matchGolden(_ html: String, _ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = Self.golden.appendingPathComponent(name)
        if ProcessInfo.processInfo.environment["HOPTRACE_UPDATE_GOLDEN"] == "1" {
            try FileManager.default.createDirectory(at: Self.golden, withIntermediateDirectories: true)
            try Data(html.utf8).write(to: url)
            return
        }
        guard let expected = try? String(contentsOf: url, encoding: .utf8) else {
            return XCTFail("no golden \(url.path): run with HOPTRACE_UPDATE_GOLDEN=1", file: file, line: line)
        }
        if html != expected {
            let a = html.split(separator: "\n", omittingEmptySubsequences: false)
            let b = expected.split(separator: "\n", omittingEmptySubsequences: false)
            let at = zip(a, b).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(a.count, b.count)
            XCTFail("\(name) differs from its golden file at line \(at + 1) (HOPTRACE_UPDATE_GOLDEN=1 to accept)",
                    file: file, line: line)
        }
    }
}

/// How often `needle` occurs in `text`.
func count(_ text: String, _ needle: String) -> Int { text.components(separatedBy: needle).count - 1 }

/// hop -> its distribution charts' segments, in page order (from the page's text or a browser's DOM).
func distributionCharts(_ html: String) -> [String: [String]] {
    var out: [String: [String]] = [:]
    for piece in html.components(separatedBy: "class=\"chart distribution\"").dropFirst() {
        guard let hop = attribute(piece, "data-hop"), let segment = attribute(piece, "data-segment") else { continue }
        out[hop, default: []].append(segment)
    }
    return out
}

/// The value of `name="..."` in the first tag of `text`, unescaped as far as the tests need.
func attribute(_ text: String, _ name: String) -> String? {
    let tag = text.prefix { $0 != ">" }
    guard let r = tag.range(of: name + "=\"") else { return nil }
    return String(tag[r.upperBound...].prefix { $0 != "\"" }).replacingOccurrences(of: "&gt;", with: ">")
}

struct Unparsable: Error { var piece: String }

/// The box of every `<rect>` in `svg`, in order.
func rects(_ svg: String) throws -> [(x: Double, y: Double, width: Double, height: Double)] {
    try svg.components(separatedBy: "<rect ").dropFirst().map { piece in
        let box = ["x", "y", "width", "height"].map { attribute(piece, $0).flatMap { Double($0) } }
        guard let x = box[0], let y = box[1], let w = box[2], let h = box[3] else { throw Unparsable(piece: String(piece.prefix(80))) }
        return (x, y, w, h)
    }
}

/// The first `<svg>` of `html` whose opening tag holds `marker`, to its end.
func chart(_ html: String, _ marker: String) -> String? {
    guard let open = html.range(of: "<svg class=\"chart \(marker)") else { return nil }
    guard let close = html.range(of: "</svg>", range: open.upperBound..<html.endIndex) else { return nil }
    return String(html[open.lowerBound..<close.upperBound])
}
