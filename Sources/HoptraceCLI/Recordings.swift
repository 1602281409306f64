import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceRecording
import HoptraceViews

/// Reads a recording, or throws one line saying why it cannot (exit status `code`).
func load(_ path: String, code: Int32 = 1) throws -> RecordedTrace {
    do { return try RecordedTrace(path: path) } catch { throw CLIError("\(path): \(error)", code: code) }
}

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "The report of a recording, as live, plus a timeline that flags slow windows.",
        discussion: """
        With --html, the page is written instead of the text: one self-contained file
        (inline SVG and CSS, no script, nothing fetched) that opens offline and can be
        attached to a ticket (docs/html.md).

        Examples:
          hoptrace report before.hoptrace
          hoptrace report before.hoptrace --json
          hoptrace report before.hoptrace --html before.html
        """
    )

    @Argument(help: "A recording made by 'hoptrace record'.")
    var file: String

    @Option(help: "Flows listed, slowest p99 first.")
    var top: Int = Report.defaultTopFlows

    @Flag(help: "Print JSON: the live report's schema plus 'recording' and 'timeline'.")
    var json = false

    @OptionGroup var page: HTMLOutput

    func validate() throws {
        try page.validate()
        if json && page.html != nil { throw ValidationError("--json and --html: choose one") }
    }

    func run() throws {
        let trace = try load(file)
        if let why = trace.contents.cutShort { progress("\(file) was cut short: \(why); reporting what it holds") }
        if page.html != nil { return try page.write(ReportPage(trace: trace, source: file, topFlows: top).html()) }
        let report = trace.report(topFlows: top)
        let timeline = trace.timeline
        let m = trace.contents.metadata
        if json {
            var object = try JSONSerialization.jsonObject(with: Data(report.json().utf8)) as! [String: Any]
            object["timeline"] = try JSONSerialization.jsonObject(with: JSONEncoder().encode(timeline))
            var recording = try JSONSerialization.jsonObject(with: JSONEncoder().encode(m)) as! [String: Any]
            recording["cut_short"] = trace.contents.cutShort ?? NSNull()
            recording["incidents"] = trace.contents.statuses.compactMap(\.trigger)
            recording["file_bytes"] = trace.contents.fileBytes
            object["recording"] = recording
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys]), as: UTF8.self))
            return
        }
        let started = Date(timeIntervalSince1970: Double(m.startUnixNs) / 1e9)
        print("recording \(file): host \(m.host), kernel \(m.kernel), started \(started), hoptrace \(m.toolVersion)"
              + (trace.contents.cutShort != nil ? " (CUT SHORT)" : ""))
        print(report.text(), terminator: "")
        print(timeline.text(), terminator: "")
        let incidents = trace.contents.statuses.filter { $0.trigger != nil }
        if !incidents.isEmpty {
            print("INCIDENTS (flight recorder)")
            for s in incidents {
                let at = s.monotonicNs > m.startMonotonicNs ? Double(s.monotonicNs - m.startMonotonicNs) / 1e9 : 0
                print("  at \(String(format: "%.1f", at)) s: \(s.trigger!)")
            }
        }
    }
}

struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Compare two recordings: per hop and segment, what changed, with confidence.",
        discussion: """
        Windows, not packets, are resampled (packets of one second are not independent);
        see docs/compare.md. Exit status: 0, or 1 when --fail-if-slower is exceeded,
        2 when a recording cannot be read.

        With --html, the page is written instead of the text (docs/html.md); the exit
        status is the same.

        Examples:
          hoptrace compare before.hoptrace after.hoptrace
          hoptrace compare before.hoptrace after.hoptrace --fail-if-slower 10%
          hoptrace compare before.hoptrace after.hoptrace --html compare.html --fail-if-slower 10%
        """
    )

    @Argument(help: "The recording before the change.")
    var before: String

    @Argument(help: "The recording after the change.")
    var after: String

    @Option(help: "Exit 1 if any hop's p99 got significantly slower by at least this much, e.g. 10%.")
    var failIfSlower: String?

    @Flag(help: "Print JSON.")
    var json = false

    @OptionGroup var page: HTMLOutput

    var threshold: Double? { failIfSlower.flatMap { Double($0.hasSuffix("%") ? String($0.dropLast()) : $0) } }

    func validate() throws {
        if failIfSlower != nil, threshold == nil || threshold! < 0 {
            throw ValidationError("bad --fail-if-slower '\(failIfSlower!)': a percentage, e.g. 10%")
        }
        try page.validate()
        if json && page.html != nil { throw ValidationError("--json and --html: choose one") }
    }

    func run() throws {
        let a = try load(before, code: 2), b = try load(after, code: 2)
        for (path, t) in [(before, a), (after, b)] where t.contents.cutShort != nil {
            progress("\(path) was cut short: \(t.contents.cutShort!)")
        }
        let comparison = Comparison(before: a.comparisonRun, after: b.comparisonRun)
        if page.html != nil {
            try page.write(ComparePage(before: a, after: b, comparison: comparison, beforeSource: before, afterSource: after).html(),
                           failureCode: 2)
        } else if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(comparison), as: UTF8.self))
        } else {
            print(comparison.text(), terminator: "")
        }
        if let t = threshold {
            let slower = comparison.slower(byAtLeast: t)
            if !slower.isEmpty {
                progress("\(slower.count) hops got slower by at least \(t)% (p99): \(slower.map(\.hop).joined(separator: "; "))")
                throw ExitCode(1)
            }
        }
    }
}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export a recording's records: csv, jsonl, hdrlog (HdrHistogram interval log), perfetto.",
        discussion: """
        Examples:
          hoptrace export before.hoptrace --format csv -o before.csv
          hoptrace export before.hoptrace --format perfetto -o before.json   # open in ui.perfetto.dev
          hoptrace export before.hoptrace --format hdrlog -o before.hlog
        """
    )

    @Argument(help: "A recording made by 'hoptrace record'.")
    var file: String

    @Option(help: "csv, jsonl, hdrlog or perfetto.")
    var format: String

    @Option(name: .shortAndLong, help: "Output file ('-' for standard output).")
    var output: String

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    func validate() throws {
        guard Export.Format(rawValue: format) != nil else {
            throw ValidationError("bad --format '\(format)': use \(Export.Format.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        if output != "-" && !force && FileManager.default.fileExists(atPath: output) {
            throw ValidationError("\(output) exists; use --force to overwrite it")
        }
    }

    func run() throws {
        let handle: FileHandle
        if output == "-" {
            handle = FileHandle.standardOutput
        } else {
            guard FileManager.default.createFile(atPath: output, contents: nil), let h = FileHandle(forWritingAtPath: output) else {
                throw CLIError("cannot create \(output)")
            }
            handle = h
        }
        var writer: Export.Writer?
        let contents: RecordingContents
        do {
            // names learnt during the recording (pods made while it ran) are in its
            // end; read it first, so every record is written with them
            let learnt = try RecordingReader.read(path: file) { _ in }.end?.names
            contents = try RecordingReader.read(path: file) { r in writer?.add(r) } metadataHook: { m in
                var names = m.names
                if let learnt { names.merge(learnt) }
                writer = Export.Writer(format: Export.Format(rawValue: format)!, to: handle, metadata: m, names: names,
                                       reasons: m.reasons())
            }
        } catch {
            throw CLIError("\(file): \(error)")
        }
        writer?.finish(softirq: contents.end?.softirq)
        if let why = contents.cutShort { progress("\(file) was cut short: \(why); exported what it holds") }
        if output != "-" { try? handle.close() }
        progress("exported \(contents.records) records as \(format) to \(output)")
    }
}

/// `--html FILE [--force]` of `report` and `compare`: where the page goes.
struct HTMLOutput: ParsableArguments {
    @Option(help: ArgumentHelp("Write a self-contained HTML page (inline SVG, no network) to FILE instead of the text.",
                               valueName: "file"))
    var html: String?

    @Flag(help: "Overwrite an existing --html file.")
    var force = false

    func validate() throws {
        if let html, !force && FileManager.default.fileExists(atPath: html) {
            throw ValidationError("\(html) exists; use --force to overwrite it")
        }
    }

    /// Writes `page` to a temporary file beside the target, then renames it there: a
    /// reader never sees half a page, and a failed write leaves the old file. A
    /// failure exits `failureCode` (compare's 1 means slower: it passes 2).
    func write(_ page: String, failureCode: Int32 = 1) throws {
        guard let html else { return }
        let temporary = html + ".tmp-\(getpid())"
        do {
            try Data(page.utf8).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, html) == 0 else {
                throw CLIError("cannot write \(html): \(String(cString: strerror(errno)))", code: failureCode)
            }
        } catch let e as CLIError {
            unlink(temporary)
            throw e
        } catch {
            unlink(temporary)
            throw CLIError("cannot write \(html): \(error.localizedDescription)", code: failureCode)
        }
        progress("wrote \(html) (\(page.utf8.count) bytes)")
    }
}
