import HoptraceCore

/// Prometheus exposition of the agent's snapshot: text 0.0.4, OpenMetrics 1.0, and
/// protobuf with native histograms. Latencies are histograms in seconds on the wire.
///
/// Families, in this order: `hoptrace_hop_latency_seconds{from,to}`,
/// `hoptrace_segment_latency_seconds{from,to,segment}`, `hoptrace_hop_packets_total{from,to}`,
/// `hoptrace_drops_total{from,to,reason}`, `hoptrace_softirq_seconds_total{cpu,vector}`,
/// `hoptrace_softirq_delay_seconds{cpu,vector}`, `hoptrace_lost_records_total`,
/// `hoptrace_unseen_packets_total`, `hoptrace_bpf_run_seconds_total`,
/// `hoptrace_consumer_cpu_seconds_total`, `hoptrace_tracing_active_ratio`,
/// `hoptrace_incidents_total{trigger}` (see `MetricFamily.families(of:)`). A family
/// with no series (no drops yet) is left out.
///
/// Histograms have the classic buckets `le` = 2^-22 s ... 2^2 s and +Inf (see
/// `ClassicBuckets`, and `BucketBounds` for how HDR counts map to them and the
/// error that makes); over protobuf they also carry native buckets (`NativeBuckets`).
public enum Exposition {
    public enum Format: Sendable, Equatable {
        case prometheusText
        case openMetrics
        case protobuf

        public var contentType: String {
            switch self {
            case .prometheusText: "text/plain; version=0.0.4; charset=utf-8"
            case .openMetrics: "application/openmetrics-text; version=1.0.0; charset=utf-8"
            case .protobuf: "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
        }

        /// From the request's Accept header (nil: text). protobuf only when
        /// `nativeHistograms` is on and the header asks for it (with q-values
        /// respected); OpenMetrics when asked; otherwise text 0.0.4.
        ///
        /// Of the media ranges we can serve, the one with the highest q wins, the
        /// first listed among equals; q=0 refuses. Served: the protobuf delimited
        /// MetricFamily stream, `application/openmetrics-text` of version 1.0.0 (or
        /// none), `text/plain` of version 0.0.4 (or none), and `text/*` and `*/*` as
        /// text. A header that asks for nothing of these gets text, as from Go's client.
        public static func negotiate(accept: String?, nativeHistograms: Bool) -> Format {
            guard let accept else { return .prometheusText }
            var best: (format: Format, q: Double)?
            for range in accept.split(separator: ",") {
                let (mediaType, parameters) = parseMediaRange(range)
                let q = parameters["q"].flatMap { Double($0) }.map { min(max($0, 0), 1) } ?? 1
                guard q > 0, let format = servedFormat(mediaType, parameters, nativeHistograms: nativeHistograms) else {
                    continue
                }
                if best == nil || q > best!.q { best = (format, q) }
            }
            return best?.format ?? .prometheusText
        }

        private static func servedFormat(_ mediaType: String, _ parameters: [String: String], nativeHistograms: Bool) -> Format? {
            switch mediaType {
            case "application/vnd.google.protobuf":
                let delimitedFamilies = parameters["proto"] == "io.prometheus.client.MetricFamily"
                    && parameters["encoding"] == "delimited"
                return nativeHistograms && delimitedFamilies ? .protobuf : nil
            case "application/openmetrics-text":
                return [nil, "1.0.0"].contains(parameters["version"]) ? .openMetrics : nil
            case "text/plain":
                return [nil, "0.0.4"].contains(parameters["version"]) ? .prometheusText : nil
            case "text/*", "*/*":
                return .prometheusText
            default:
                return nil
            }
        }

        /// `type/subtype;name=value;...` to the lowercased type and its parameters
        /// (names lowercased, values unquoted, case kept: `proto=` names a message).
        private static func parseMediaRange(_ range: Substring) -> (String, [String: String]) {
            let parts = range.split(separator: ";", omittingEmptySubsequences: false)
            let mediaType = parts.first.map { trimmed($0).lowercased() } ?? ""
            var parameters: [String: String] = [:]
            for part in parts.dropFirst() {
                guard let equals = part.firstIndex(of: "=") else { continue }
                let name = trimmed(part[..<equals]).lowercased()
                var value = trimmed(part[part.index(after: equals)...])
                if value.count >= 2 && value.hasPrefix("\"") && value.hasSuffix("\"") {
                    value = String(value.dropFirst().dropLast())
                }
                // the first occurrence counts
                if parameters[name] == nil { parameters[name] = value }
            }
            return (mediaType, parameters)
        }

        private static func trimmed(_ s: Substring) -> String {
            String(s.drop { $0 == " " || $0 == "\t" }.reversed().drop { $0 == " " || $0 == "\t" }.reversed())
        }
    }

    /// The native histogram schema used unless told otherwise: buckets grow by 2^(1/8)
    /// (~9 %), coarser than the HDR buckets they are made from (~1.6 %).
    public static let defaultNativeSchema = NativeBuckets.defaultSchema

    /// The snapshot in `format`. `nativeSchema` (0...8) is the native histograms'
    /// resolution, for `.protobuf` only: bucket `i` covers (2^((i-1)/2^s), 2^(i/2^s)] s.
    public static func encode(_ snapshot: MetricsSnapshot, format: Format, nativeSchema: Int = defaultNativeSchema) -> [UInt8] {
        let families = MetricFamily.families(of: snapshot)
        switch format {
        case .prometheusText:
            var encoder = TextEncoder(dialect: .prometheus)
            encoder.encode(families)
            return encoder.bytes
        case .openMetrics:
            var encoder = TextEncoder(dialect: .openMetrics)
            encoder.encode(families)
            return encoder.bytes
        case .protobuf:
            return ProtobufEncoder(nativeSchema: nativeSchema).encode(families)
        }
    }
}
