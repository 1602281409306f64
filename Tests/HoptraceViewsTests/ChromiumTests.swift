import CZlib
import Foundation
import HoptraceCore
import HoptraceRecording
import HoptraceTestSupport
import HoptraceViews
import XCTest

/// Headless Chromium (Debian's `chromium`) opens each page from a file in a network
/// namespace of its own (`unshare -n`: no network at all), takes a screenshot that
/// must not be blank, and dumps the DOM it built, which must hold one distribution
/// chart per hop and segment with labelled axes. Root (for unshare) and chromium
/// are needed; without them the tests say so (`notRun`).
final class ChromiumTests: XCTestCase {
    static let chromium = "/usr/bin/chromium"
    /// Seconds chromium may take (a cold start on a busy 2-CPU machine takes several).
    static let timeout = 40

    func testReportPageRendersOfflineAndIsNotBlank() throws {
        let html = ReportPage(trace: try Fixture.trace(), source: "fixture.hoptrace").html()
        try check(html, kind: "report")
    }

    func testComparePageRendersOfflineAndIsNotBlank() throws {
        let a = try Fixture.trace(), b = try Fixture.trace(qdiscFactor: 15)
        let html = ComparePage(before: a, after: b, comparison: Comparison(before: a.comparisonRun, after: b.comparisonRun),
                               beforeSource: "before.hoptrace", afterSource: "after.hoptrace").html()
        try check(html, kind: "compare")
    }

    func check(_ html: String, kind: String) throws {
        guard FileManager.default.isExecutableFile(atPath: Self.chromium) else { try notRun("no \(Self.chromium) (make deps)") }
        guard getuid() == 0 else { try notRun("not root: 'unshare -n' (chromium without a network) needs root") }
        let dir = try temporaryDirectory()
        defer {
            killLeftovers(dir)
            try? FileManager.default.removeItem(atPath: dir)
        }
        let page = dir + "/\(kind).html", shot = dir + "/\(kind).png"
        try Data(html.utf8).write(to: URL(fileURLWithPath: page))

        _ = try runChromium(dir: dir, ["--screenshot=\(shot)", "file://\(page)"])
        let png = try PNG(decoding: [UInt8](Data(contentsOf: URL(fileURLWithPath: shot))))
        XCTAssertEqual([png.width, png.height], [1280, 2400])
        let look = png.look()
        XCTAssertGreaterThan(look.inkShare, 0.03, "\(kind): the screenshot is (nearly) blank")
        XCTAssertGreaterThan(look.colours, 8, "\(kind): the screenshot has too few colours for charts")

        let dom = try runChromium(dir: dir, ["--dump-dom", "file://\(page)"])
        let expected = distributionCharts(html)
        XCTAssertFalse(expected.isEmpty)
        XCTAssertEqual(distributionCharts(dom), expected, "\(kind): the browser's DOM lacks distribution charts")
        let charts = count(dom, "<svg class=\"chart ")
        XCTAssertEqual(charts, count(html, "<svg class=\"chart "))
        XCTAssertGreaterThanOrEqual(count(dom, "class=\"axis-label\""), charts, "\(kind): a chart without a labelled axis")
    }

    /// Runs chromium headless in a new network namespace, under `timeout` (which kills
    /// its whole process group), with a profile and HOME in `dir`; its standard output.
    func runChromium(dir: String, _ arguments: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/unshare")
        p.arguments = ["-n", "--", "timeout", "-k", "5", String(Self.timeout), Self.chromium, "--headless", "--no-sandbox",
                       "--disable-gpu", "--hide-scrollbars", "--window-size=1280,2400", "--user-data-dir=\(dir)/profile",
                       "--no-first-run", "--disable-extensions"] + arguments
        p.environment = ["HOME": dir, "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // read both pipes to the end before waiting: a full pipe would stall chromium
        let errors = ErrorText()
        let reader = Thread { errors.set(err.fileHandleForReading.readDataToEndOfFile()) }
        reader.start()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        while !errors.done { usleep(10_000) }
        guard p.terminationStatus == 0 else {
            throw ChromiumFailed(status: p.terminationStatus, stderr: String(errors.text.suffix(2_000)))
        }
        return String(decoding: stdout, as: UTF8.self)
    }

    func temporaryDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "hoptrace-chromium-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { throw ChromiumFailed(status: errno, stderr: "mkdtemp") }
        return String(cString: made)
    }

    /// Any process still running with our profile directory in its command line
    /// (chromium's helpers), killed by its id: no chromium stays behind a test.
    func killLeftovers(_ dir: String) {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else { return }
        for pid in entries.compactMap(Int32.init) {
            guard let cmdline = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/cmdline")),
                  String(decoding: cmdline, as: UTF8.self).contains(dir) else { continue }
            kill(pid, SIGKILL)
        }
    }
}

struct ChromiumFailed: Error, CustomStringConvertible {
    var status: Int32
    var stderr: String
    var description: String { "chromium exited with \(status): \(stderr)" }
}

/// Chromium's stderr, read on another thread.
final class ErrorText: @unchecked Sendable {
    private let lock = NSLock()
    private var data: Data?
    func set(_ d: Data) { lock.withLock { data = d } }
    var done: Bool { lock.withLock { data != nil } }
    var text: String { lock.withLock { String(decoding: data ?? Data(), as: UTF8.self) } }
}

/// The pixels of an 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes):
/// IDAT inflated with zlib, rows un-filtered.
struct PNG {
    var width = 0
    var height = 0
    var channels = 0
    /// Row after row, `channels` bytes a pixel.
    var pixels: [UInt8] = []

    struct Unsupported: Error { var why: String }

    init(decoding bytes: [UInt8]) throws {
        guard bytes.count > 8, bytes[0..<8] == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] else { throw Unsupported(why: "not a PNG") }
        func u32(_ at: Int) -> Int { bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) } }
        var at = 8, compressed: [UInt8] = []
        while at + 8 <= bytes.count {
            let length = u32(at), type = String(decoding: bytes[at + 4..<at + 8], as: UTF8.self), data = at + 8
            guard data + length + 4 <= bytes.count else { throw Unsupported(why: "truncated \(type)") }
            if type == "IHDR" {
                width = u32(data)
                height = u32(data + 4)
                guard bytes[data + 8] == 8, [2, 6].contains(bytes[data + 9]), bytes[data + 12] == 0 else {
                    throw Unsupported(why: "depth \(bytes[data + 8]), colour type \(bytes[data + 9]), interlace \(bytes[data + 12])")
                }
                channels = bytes[data + 9] == 6 ? 4 : 3
            } else if type == "IDAT" {
                compressed += bytes[data..<data + length]
            }
            at = data + length + 4
        }
        let stride = width * channels
        var raw = [UInt8](repeating: 0, count: height * (stride + 1))
        var rawLength = uLongf(raw.count)
        let status = raw.withUnsafeMutableBufferPointer { r in
            compressed.withUnsafeBufferPointer { c in uncompress(r.baseAddress, &rawLength, c.baseAddress, uLong(c.count)) }
        }
        guard status == Z_OK, Int(rawLength) == raw.count else { throw Unsupported(why: "IDAT: zlib \(status), \(rawLength) bytes") }
        pixels = Self.unfilter(raw, height: height, stride: stride, bpp: channels)
    }

    /// Undoes each row's filter (None, Sub, Up, Average, Paeth; PNG spec 9.2).
    static func unfilter(_ raw: [UInt8], height: Int, stride: Int, bpp: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: height * stride)
        for y in 0..<height {
            let filter = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride
            for x in 0..<stride {
                let a = x >= bpp ? Int(out[row + x - bpp]) : 0
                let b = y > 0 ? Int(out[row - stride + x]) : 0
                let c = x >= bpp && y > 0 ? Int(out[row - stride + x - bpp]) : 0
                let predicted: Int
                switch filter {
                case 1: predicted = a
                case 2: predicted = b
                case 3: predicted = (a + b) / 2
                case 4:
                    let p = a + b - c, pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
                    predicted = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
                default: predicted = 0
                }
                out[row + x] = UInt8(truncatingIfNeeded: Int(raw[src + x]) + predicted)
            }
        }
        return out
    }

    /// The share of pixels that are not (near) white, and the distinct colours
    /// (to 4 bits a channel) among them: a blank or failed page has neither.
    func look() -> (inkShare: Double, colours: Int) {
        var ink = 0
        var colours = Set<Int>()
        for i in stride(from: 0, to: pixels.count, by: channels) {
            let r = Int(pixels[i]), g = Int(pixels[i + 1]), b = Int(pixels[i + 2])
            if min(r, g, b) < 240 {
                ink += 1
                colours.insert(((r >> 4) << 8) | ((g >> 4) << 4) | (b >> 4))
            }
        }
        return (Double(ink) / Double(max(width * height, 1)), colours.count)
    }
}
