import Foundation
import HoptraceRecording
import HoptraceViews

/// `--html-only`: the HTML pages of a 1-hour recording (3,600 one-second windows, 10
/// hops, slow spells with drops; `SyntheticRecording`): seconds to read it, seconds
/// to render the report page and the compare page (against a run with slower
/// backlog waits), and their sizes. Targets: render < 3 s, page < 3 MB.
/// `keep`: a directory to leave the recordings and the two pages in, to look at them.
func htmlBench(rounds: Int, keep: String?) throws -> [String: Any] {
    let dir = keep ?? NSTemporaryDirectory() + "hoptrace-bench-html-\(getpid())"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { if keep == nil { try? FileManager.default.removeItem(atPath: dir) } }
    let beforePath = dir + "/before.hoptrace", afterPath = dir + "/after.hoptrace"
    let hour = SyntheticRecording(windows: 3_600, hops: 10, recordsPerHop: 50)
    var slower = hour
    slower.backlogFactor = 1.2
    slower.seed = 2
    try hour.write(to: beforePath)
    try slower.write(to: afterPath)

    var read: [Double] = [], report: [Double] = [], compare: [Double] = []
    var reportBytes = 0, compareBytes = 0, records: UInt64 = 0
    for _ in 0..<rounds {
        var t0 = nowSeconds()
        let before = try RecordedTrace(path: beforePath)
        read.append(nowSeconds() - t0)
        let after = try RecordedTrace(path: afterPath)
        records = before.contents.records
        t0 = nowSeconds()
        let page = ReportPage(trace: before, source: beforePath).html()
        report.append(nowSeconds() - t0)
        reportBytes = page.utf8.count
        // the comparison's bootstrap is `compare`'s own cost, not the page's: timed apart
        let comparison = Comparison(before: before.comparisonRun, after: after.comparisonRun)
        t0 = nowSeconds()
        let comparePage = ComparePage(before: before, after: after, comparison: comparison, beforeSource: beforePath,
                                      afterSource: afterPath).html()
        compare.append(nowSeconds() - t0)
        compareBytes = comparePage.utf8.count
        if let keep {
            try page.write(toFile: keep + "/report.html", atomically: true, encoding: .utf8)
            try comparePage.write(toFile: keep + "/compare.html", atomically: true, encoding: .utf8)
        }
    }
    let results: [String: Any] = [
        "windows": hour.windows, "hops": hour.hops, "records": records,
        "read_seconds": (median(read) * 1000).rounded() / 1000,
        "report_render_seconds": (median(report) * 1000).rounded() / 1000, "report_bytes": reportBytes,
        "compare_render_seconds": (median(compare) * 1000).rounded() / 1000, "compare_bytes": compareBytes,
    ]
    say("html: 1 h, \(hour.hops) hops, \(records) records: read \(median(read)) s; report page \(median(report)) s, "
        + "\(reportBytes) bytes; compare page \(median(compare)) s, \(compareBytes) bytes (medians of \(rounds))")
    return results
}
