import Foundation
import HoptraceCore

/// The recording file (docs/recording-format.md): a 16-byte file header, then
/// chunks, each self-contained, checksummed and (payload) compressed, so a file cut
/// anywhere is readable up to its last complete chunk.
public enum RecordingFormat {
    public static let magic: [UInt8] = Array("HOPTRACE".utf8)
    /// 3: flag 4 of a record means "no qdisc" (2 and 1: IPv6, cleared when read);
    /// 2: chunk payloads are zstd (1: zlib; still read).
    public static let version: UInt16 = 3
    public static let chunkMagic: UInt32 = 0x4B43_5448 // "HTCK"
    public static let fileHeaderBytes = 16
    public static let chunkHeaderBytes = 20
    /// No chunk is larger than this (raw or stored): guards readers against lengths from corrupt input.
    public static let maxChunkBytes = 64 << 20
    /// A reader takes no record later than this many windows after the start (46
    /// days of 1 s windows): windows are kept densely, one cell a hop each.
    public static let maxWindows = 4_000_000
    /// A records chunk is written at this many records, or at each window boundary.
    public static let recordsPerChunk = 65_536

    public enum ChunkType: UInt8, Sendable {
        case metadata = 1
        case records = 2
        case status = 3
        case end = 4
    }

    public enum Codec: UInt8, Sendable {
        case raw = 0
        case zlib = 1
        case zstd = 2
    }
}

public enum RecordingError: Error, Equatable, CustomStringConvertible {
    case notARecording(String)
    case newerVersion(UInt16)
    case corrupt(String)
    case io(String)

    public var description: String {
        switch self {
        case .notARecording(let why): "not a hoptrace recording (\(why))"
        case .newerVersion(let v): "recording format version \(v) is newer than this hoptrace reads (\(RecordingFormat.version)); upgrade hoptrace"
        case .corrupt(let why): "recording is corrupt: \(why)"
        case .io(let why): why
        }
    }
}

/// What a recording says about itself, so a report made later elsewhere is complete.
public struct RecordingMetadata: Codable, Sendable, Equatable {
    public var formatVersion: Int
    public var toolVersion: String
    public var host: String
    public var kernel: String
    /// Wall-clock start, Unix nanoseconds, and the CLOCK_MONOTONIC time of the same moment.
    public var startUnixNs: UInt64
    public var startMonotonicNs: UInt64
    public var windowNs: UInt64
    public var sampling: Sampling
    public var devices: [String]
    public var softirq: Bool
    public var names: NameTable
    /// The recording machine's names of `enum skb_drop_reason` (its BTF), so drops
    /// are named as they were there; nil in recordings made before they were stored.
    public var dropReasons: [UInt32: String]?
    /// How the tracer was set up (sets a report reader may want: max packets,
    /// attach mode, which hooks), as text.
    public var settings: [String: String]

    public init(toolVersion: String, host: String, kernel: String, startUnixNs: UInt64, startMonotonicNs: UInt64,
                windowNs: UInt64, sampling: Sampling, devices: [String], softirq: Bool, names: NameTable,
                dropReasons: DropReasons = DropReasons(), settings: [String: String] = [:]) {
        formatVersion = Int(RecordingFormat.version)
        self.toolVersion = toolVersion
        self.host = host
        self.kernel = kernel
        self.startUnixNs = startUnixNs
        self.startMonotonicNs = startMonotonicNs
        self.windowNs = windowNs
        self.sampling = sampling
        self.devices = devices
        self.softirq = softirq
        self.names = names
        self.dropReasons = dropReasons.names
        self.settings = settings
    }

    enum CodingKeys: String, CodingKey {
        case formatVersion = "format_version", toolVersion = "tool_version", host, kernel
        case startUnixNs = "start_unix_ns", startMonotonicNs = "start_monotonic_ns", windowNs = "window_ns"
        case sampling, devices, softirq, names, dropReasons = "drop_reasons", settings
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        toolVersion = try c.decode(String.self, forKey: .toolVersion)
        host = try c.decode(String.self, forKey: .host)
        kernel = try c.decode(String.self, forKey: .kernel)
        startUnixNs = try c.decode(UInt64.self, forKey: .startUnixNs)
        startMonotonicNs = try c.decode(UInt64.self, forKey: .startMonotonicNs)
        windowNs = try c.decode(UInt64.self, forKey: .windowNs)
        sampling = try c.decode(Sampling.self, forKey: .sampling)
        devices = try c.decode([String].self, forKey: .devices)
        softirq = try c.decode(Bool.self, forKey: .softirq)
        names = try c.decode(NameTable.self, forKey: .names)
        // reason numbers as JSON object keys ("3": "NO_SOCKET")
        dropReasons = try c.decodeIfPresent([String: String].self, forKey: .dropReasons).map { text in
            Dictionary(text.compactMap { k, v in UInt32(k).map { ($0, v) } }, uniquingKeysWith: { a, _ in a })
        }
        settings = try c.decodeIfPresent([String: String].self, forKey: .settings) ?? [:]
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(formatVersion, forKey: .formatVersion)
        try c.encode(toolVersion, forKey: .toolVersion)
        try c.encode(host, forKey: .host)
        try c.encode(kernel, forKey: .kernel)
        try c.encode(startUnixNs, forKey: .startUnixNs)
        try c.encode(startMonotonicNs, forKey: .startMonotonicNs)
        try c.encode(windowNs, forKey: .windowNs)
        try c.encode(sampling, forKey: .sampling)
        try c.encode(devices, forKey: .devices)
        try c.encode(softirq, forKey: .softirq)
        try c.encode(names, forKey: .names)
        try c.encodeIfPresent(dropReasons.map { Dictionary(uniqueKeysWithValues: $0.map { (String($0), $1) }) },
                              forKey: .dropReasons)
        try c.encode(settings, forKey: .settings)
    }

    /// The names to give the recording's drop reasons: its own; for a recording made
    /// before they were stored, this machine's only when it runs the same kernel
    /// (else reasons are shown by number).
    public func reasons(running: @autoclosure () -> DropReasons = .running(), runningKernel: String = DropReasons.runningKernel())
        -> DropReasons {
        if let dropReasons { return DropReasons(names: dropReasons) }
        return runningKernel == kernel ? running() : DropReasons()
    }
}

/// A snapshot written at each window boundary and at the end: the kernel-side
/// counters and softirq totals so far, for the timeline and the final report.
public struct RecordingStatus: Codable, Sendable, Equatable {
    public var monotonicNs: UInt64
    public var counters: TracerCounters
    /// Per CPU: NET_RX + NET_TX run time since the start, nanoseconds.
    public var softirqRunNs: [UInt64]
    /// Set when the flight recorder started an incident here: what fired.
    public var trigger: String?

    public init(monotonicNs: UInt64, counters: TracerCounters, softirqRunNs: [UInt64], trigger: String? = nil) {
        self.monotonicNs = monotonicNs
        self.counters = counters
        self.softirqRunNs = softirqRunNs
        self.trigger = trigger
    }

    enum CodingKeys: String, CodingKey {
        case monotonicNs = "monotonic_ns", counters, softirqRunNs = "softirq_run_ns", trigger
    }
}
