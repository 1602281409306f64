import Foundation
import HoptraceCore
import HoptraceMetrics
import HoptraceTestSupport
import XCTest

/// A workload name with every character the text formats must escape.
let awkwardName = "team \"a\"/web\\1\nnext"

func histogram(_ valuesNs: [UInt64]) -> Histogram {
    var h = Histogram()
    for v in valuesNs { h.record(v) }
    return h
}

/// Two hops with segments (one named awkwardly), a drop, softirq on three CPUs,
/// incidents and the self-cost figures.
func sampleSnapshot() -> MetricsSnapshot {
    var s = MetricsSnapshot()
    let hop1Values: [UInt64] = [300, 1_000, 3_000_000, 45_000, 45_000, 120_000, 7_500_000_000]
    s.hops = [
        .init(from: "default/web", to: "default/web/eth0", latency: histogram(hop1Values),
              segments: [(.forward, histogram([200, 800, 1_000_000])), (.qdisc, histogram([0, 5_000])),
                         (.veth, histogram([1_500])), (.backlog, histogram([9_000, 9_100])), (.deliver, histogram([30_000]))],
              packets: 7),
        .init(from: awkwardName, to: "host/eth0", latency: histogram([2_000, 4_000_000]),
              segments: [(.veth, histogram([900, 1_100]))], packets: 2),
    ]
    s.drops = [.init(from: "default/web", to: "default/web/eth0", reason: "NETFILTER_DROP", packets: 3)]
    s.softirq = [
        .init(cpu: 10, vector: "net_rx", runSeconds: 0.5, delay: histogram([2_000, 70_000])),
        .init(cpu: 2, vector: "net_tx", runSeconds: 0.125, delay: histogram([500])),
        .init(cpu: 2, vector: "net_rx", runSeconds: 1.75, delay: histogram([])),
    ]
    s.lostRecords = 5
    s.unseenPackets = 7
    s.bpfRunSeconds = 0.25
    s.consumerCPUSeconds = 1.5
    s.tracingActiveRatio = 0.75
    s.incidents = ["p99>2ms": 2, "drop:NETFILTER_DROP": 1]
    return s
}

/// A line of text exposition, parsed independently of the encoder.
enum TextLine: Equatable {
    case help(name: String, text: String)
    case type(name: String, type: String)
    case unit(name: String, unit: String)
    case eof
    case sample(name: String, labels: [String: String], labelOrder: [String], value: String)
}

struct ParseError: Error, CustomStringConvertible {
    var description: String
}

/// Parses text 0.0.4 or OpenMetrics, unescaping label values (`\\`, `\"`, `\n`).
func parseExposition(_ text: String) throws -> [TextLine] {
    var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard lines.last == "" else { throw ParseError(description: "the exposition does not end with a newline") }
    lines.removeLast()
    return try lines.map { line in
        if line == "# EOF" { return .eof }
        if line.hasPrefix("# ") {
            let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 4 else { throw ParseError(description: "bad metadata line: \(line)") }
            switch parts[1] {
            case "HELP": return .help(name: parts[2], text: parts[3])
            case "TYPE": return .type(name: parts[2], type: parts[3])
            case "UNIT": return .unit(name: parts[2], unit: parts[3])
            default: throw ParseError(description: "unknown metadata: \(line)")
            }
        }
        return try parseSample(line)
    }
}

private func parseSample(_ line: String) throws -> TextLine {
    let chars = Array(line)
    var i = 0
    var name = ""
    while i < chars.count, chars[i] != "{", chars[i] != " " { name.append(chars[i]); i += 1 }
    var labels: [String: String] = [:]
    var order: [String] = []
    if i < chars.count, chars[i] == "{" {
        i += 1
        while i < chars.count, chars[i] != "}" {
            var labelName = ""
            while i < chars.count, chars[i] != "=" { labelName.append(chars[i]); i += 1 }
            i += 1
            guard i < chars.count, chars[i] == "\"" else { throw ParseError(description: "no quote in \(line)") }
            i += 1
            var value = ""
            while i < chars.count, chars[i] != "\"" {
                if chars[i] == "\\" {
                    i += 1
                    guard i < chars.count else { throw ParseError(description: "dangling escape in \(line)") }
                    switch chars[i] {
                    case "\\": value.append("\\")
                    case "\"": value.append("\"")
                    case "n": value.append("\n")
                    default: throw ParseError(description: "bad escape \\\(chars[i]) in \(line)")
                    }
                } else {
                    value.append(chars[i])
                }
                i += 1
            }
            i += 1  // closing quote
            guard labels[labelName] == nil else { throw ParseError(description: "label \(labelName) twice in \(line)") }
            labels[labelName] = value
            order.append(labelName)
            if i < chars.count, chars[i] == "," { i += 1 }
        }
        i += 1  // closing brace
    }
    guard i < chars.count, chars[i] == " " else { throw ParseError(description: "no value in \(line)") }
    let value = String(chars[(i + 1)...])
    guard !value.isEmpty, !value.contains(" ") else { throw ParseError(description: "bad value in \(line)") }
    return .sample(name: name, labels: labels, labelOrder: order, value: value)
}

/// Parses a float as Prometheus does (Go's ParseFloat plus the `+Inf` spelling).
func prometheusFloat(_ s: String) -> Double? {
    switch s {
    case "+Inf", "Inf", "+inf", "inf": return .infinity
    case "-Inf", "-inf": return -.infinity
    case "NaN": return .nan
    default: return Double(s)
    }
}

func runProcess(_ path: String, _ arguments: [String], input: [UInt8]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe()
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = stdout
    try process.run()
    stdin.fileHandleForWriting.write(Data(input))
    try stdin.fileHandleForWriting.close()
    let output = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: output, as: UTF8.self))
}

/// A tool the tests need: missing, it is said loudly, and under CI (CI=true) the test fails rather than skips.
func requireTool(_ path: String, package: String) throws {
    if FileManager.default.isExecutableFile(atPath: path) { return }
    try notRun("\(path) not found: install Debian's '\(package)' package (make deps does)")
}
