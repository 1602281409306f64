import CZlib
import Foundation
import HoptraceCore

/// Exports of a recording's records for other tools.
public enum Export {
    public enum Format: String, CaseIterable, Sendable {
        case csv, jsonl, hdrlog, perfetto
    }

    /// A streaming exporter: feed records in file order, then `finish`.
    public final class Writer {
        let format: Format
        let names: NameTable
        let metadata: RecordingMetadata
        let reasons: DropReasons
        var out: FileHandle
        var buffer = ""
        var firstEvent = true
        // hdrlog: per window, per hop label, HdrHistogram-layout histograms
        var windows: [Int: [String: Histogram]] = [:]

        /// `names`: the recording's names, its metadata's and those its end learnt
        /// (namespaces made during the recording); the metadata's when not given.
        public init(format: Format, to out: FileHandle, metadata: RecordingMetadata, names: NameTable? = nil,
                    reasons: DropReasons = DropReasons()) {
            self.format = format
            self.out = out
            self.metadata = metadata
            self.names = names ?? metadata.names
            self.reasons = reasons
            switch format {
            case .csv:
                buffer = "ts_ns,kind,from_netns,from_device,to_netns,to_device,proto,source,source_port,destination,"
                    + "destination_port,length,gso_segments,cpu,hop_index,forward_ns,qdisc_ns,veth_ns,backlog_ns,deliver_ns,total_ns,drop_reason\n"
            case .perfetto:
                buffer = "{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n"
            case .jsonl, .hdrlog:
                break
            }
        }

        func flushIfLarge() {
            if buffer.utf8.count > 1 << 20 {
                out.write(Data(buffer.utf8))
                buffer = ""
            }
        }

        static func json(_ s: String) -> String {
            var o = "\""
            for c in s.unicodeScalars {
                switch c {
                case "\"": o += "\\\""
                case "\\": o += "\\\\"
                case _ where c.value < 0x20: o += String(format: "\\u%04x", c.value)
                default: o.unicodeScalars.append(c)
                }
            }
            return o + "\""
        }

        static func csv(_ s: String) -> String { s.contains(",") || s.contains("\"") ? "\"" + s.replacingOccurrences(of: "\"", with: "\"\"") + "\"" : s }

        public func add(_ r: HopRecord) {
            let kind = r.kind == .hop ? "hop" : r.kind == .deliver ? "deliver" : "drop"
            let f = r.flow
            switch format {
            case .csv:
                let fields: [String] = [
                    String(r.timestampNs), kind, Self.csv(names.netnsName(r.from.netns)), Self.csv(names.deviceName(r.from)),
                    Self.csv(names.netnsName(r.to.netns)), Self.csv(names.deviceName(r.to)), f.protoName,
                    f.source.formatted(family: f.family), String(f.sourcePort), f.destination.formatted(family: f.family),
                    String(f.destinationPort), String(r.length), String(r.gsoSegments), String(r.cpu), String(r.hopIndex),
                ] + Segment.allCases.map { r.crossed($0) ? String(r[$0]) : "" } // empty: not crossed
                    + [String(r.totalNs), r.kind == .drop ? reasons.name(r.dropReason) : ""]
                buffer += fields.joined(separator: ",") + "\n"
            case .jsonl:
                var line = "{\"ts_ns\":\(r.timestampNs),\"kind\":\"\(kind)\",\"from\":\(Self.json(names.label(r.from))),"
                line += "\"to\":\(Self.json(names.label(r.to))),\"flow\":\(Self.json(f.description)),\"length\":\(r.length),"
                line += "\"gso_segments\":\(r.gsoSegments),\"cpu\":\(r.cpu),\"hop_index\":\(r.hopIndex),"
                // only the segments the packet crossed
                line += "\"segments_ns\":{" + Segment.allCases.filter { r.crossed($0) }.map { "\"\($0.name)\":\(r[$0])" }
                    .joined(separator: ",") + "},\"total_ns\":\(r.totalNs)"
                if r.kind == .drop { line += ",\"drop_reason\":\(Self.json(reasons.name(r.dropReason)))" }
                buffer += line + "}\n"
            case .perfetto:
                // one slice per segment on the packet's flow track; hops as named slices around them
                let base = Double(r.timestampNs &- metadata.startMonotonicNs) / 1000
                let tid = Int(truncatingIfNeeded: f.mixed & 0x7fff_ffff)
                var at = base
                var events: [String] = []
                let label = r.kind == .hop ? "\(names.label(r.from)) -> \(names.label(r.to))"
                    : r.kind == .deliver ? "deliver in \(names.netnsName(r.to.netns))" : "DROP \(reasons.name(r.dropReason))"
                events.append("{\"name\":\(Self.json(label)),\"cat\":\"\(kind)\",\"ph\":\"X\",\"ts\":\(base),\"dur\":\(Double(r.totalNs) / 1000),\"pid\":1,\"tid\":\(tid)}")
                for s in Segment.allCases where r.crossed(s) {
                    events.append("{\"name\":\"\(s.name)\",\"cat\":\"segment\",\"ph\":\"X\",\"ts\":\(at),\"dur\":\(Double(r[s]) / 1000),\"pid\":1,\"tid\":\(tid)}")
                    at += Double(r[s]) / 1000
                }
                for e in events {
                    buffer += (firstEvent ? "" : ",\n") + e
                    firstEvent = false
                }
            case .hdrlog:
                guard r.kind == .hop else { return }
                let w = r.timestampNs <= metadata.startMonotonicNs ? 0
                    : Int((r.timestampNs - metadata.startMonotonicNs) / max(metadata.windowNs, 1))
                let label = "\(names.label(r.from))->\(names.label(r.to))".replacingOccurrences(of: ",", with: ";")
                    .replacingOccurrences(of: " ", with: "_")
                // precision 8 is HdrHistogram's own layout for 2 significant digits
                windows[w, default: [:]][label, default: Histogram(precisionBits: 8)].record(r.totalNs)
            }
            flushIfLarge()
        }

        /// Adds the softirq runs of the end chunk as slices (perfetto only).
        public func finish(softirq: SoftirqReport?) {
            switch format {
            case .perfetto:
                if let s = softirq, s.enabled {
                    for c in s.cpus {
                        let e = "{\"name\":\"NET_RX busy \(String(format: "%.1f", c.netRX.runPercent))%\",\"ph\":\"C\",\"ts\":0,\"pid\":2,\"args\":{\"cpu\(c.cpu)_net_rx_percent\":\(c.netRX.runPercent)}}"
                        buffer += (firstEvent ? "" : ",\n") + e
                        firstEvent = false
                    }
                }
                buffer += "\n]}\n"
            case .hdrlog:
                buffer = HdrLog.text(windows: windows, windowNs: metadata.windowNs, startUnixNs: metadata.startUnixNs)
            case .csv, .jsonl:
                break
            }
            out.write(Data(buffer.utf8))
            buffer = ""
        }
    }
}

/// HdrHistogram interval logs (the format HdrHistogram's tools and libraries read):
/// one line per window and hop, `Tag=HOP,start,length,max,BASE64` where BASE64 is
/// a V2-encoded, deflate-compressed histogram. Values are nanoseconds; a histogram
/// of precision 8 has exactly HdrHistogram's bucket layout for 2 significant digits
/// and lowest discernible value 1, so its counts are written as they are.
public enum HdrLog {
    static let encodingCookie: UInt32 = 0x1c84_9303 | 0x10
    static let compressedCookie: UInt32 = 0x1c84_9304 | 0x10

    public static func text(windows: [Int: [String: Histogram]], windowNs: UInt64, startUnixNs: UInt64) -> String {
        let start = Double(startUnixNs) / 1e9
        var out = "#[Histogram log format version 1.3]\n"
        out += "#[StartTime: \(String(format: "%.3f", start)) (seconds since epoch)]\n"
        out += "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\"\n"
        for w in windows.keys.sorted() {
            for (tag, h) in windows[w]!.sorted(by: { $0.key < $1.key }) {
                let begin = Double(UInt64(w) * windowNs) / 1e9, length = Double(windowNs) / 1e9
                out += "Tag=\(tag),\(String(format: "%.3f", begin)),\(String(format: "%.3f", length)),"
                out += "\(String(format: "%.3f", Double(h.max))),\(encode(h))\n"
            }
        }
        return out
    }

    /// The V2 encoding (counts as ZigZag LEB128, runs of zeros as negative
    /// lengths), deflated, behind the compressed cookie, in base64.
    public static func encode(_ h: Histogram) -> String {
        precondition(h.precisionBits == 8, "HdrHistogram layout needs precision 8")
        var payload = ByteWriter()
        var i = 0
        let counts = h.counts
        while i < counts.count {
            if counts[i] == 0 {
                var zeros = 0
                while i < counts.count && counts[i] == 0 { zeros += 1; i += 1 }
                if i < counts.count { payload.zigzag(-Int64(zeros)) } // trailing zeros are implied
            } else {
                payload.zigzag(Int64(counts[i]))
                i += 1
            }
        }
        var w = ByteWriter()
        func be32(_ v: UInt32) { w.bytes += [UInt8(v >> 24), UInt8((v >> 16) & 0xff), UInt8((v >> 8) & 0xff), UInt8(v & 0xff)] }
        func be64(_ v: UInt64) { be32(UInt32(v >> 32)); be32(UInt32(v & 0xffff_ffff)) }
        be32(encodingCookie)
        be32(UInt32(payload.bytes.count))
        be32(0)                                 // normalizing index offset
        be32(2)                                 // significant value digits
        be64(1)                                 // lowest discernible value
        be64(max(h.max, 2) <= (1 << 62) ? UInt64(1) << 62 : UInt64.max >> 1) // highest trackable value
        be64(Double(1).bitPattern)              // integer to double conversion ratio
        w.bytes += payload.bytes
        let deflated = Zlib.compress(w.bytes)
        var out = ByteWriter()
        let c = compressedCookie, n = UInt32(deflated.count)
        out.bytes += [UInt8(c >> 24), UInt8((c >> 16) & 0xff), UInt8((c >> 8) & 0xff), UInt8(c & 0xff)]
        out.bytes += [UInt8(n >> 24), UInt8((n >> 16) & 0xff), UInt8((n >> 8) & 0xff), UInt8(n & 0xff)]
        out.bytes += deflated
        return Data(out.bytes).base64EncodedString()
    }
}
