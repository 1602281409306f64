import Foundation
import HoptraceCore

/// The end of a recording: final counters and softirq figures. Its absence means
/// the recording was cut short (crash, kill -9, full disk).
public struct RecordingEnd: Codable, Sendable {
    public var status: RecordingStatus
    public var durationSeconds: Double
    public var softirq: SoftirqReport
    /// Names learnt during the recording (namespaces and devices that appeared after
    /// it started); the metadata's names come first. Absent in older recordings.
    public var names: NameTable?

    public init(status: RecordingStatus, durationSeconds: Double, softirq: SoftirqReport, names: NameTable? = nil) {
        self.status = status
        self.durationSeconds = durationSeconds
        self.softirq = softirq
        self.names = names
    }

    enum CodingKeys: String, CodingKey { case status, durationSeconds = "duration_seconds", softirq, names }
}

/// Writes a recording. Chunks go out whole in one write each, at most a window (or
/// 65,536 records) apart, so a crash loses at most the chunks being built and
/// written. After a write error (a full disk) it stops writing and keeps the
/// error; the file stays readable up to the last complete chunk.
///
/// Records are appended on the caller's thread (the drain thread: ids and copies
/// only); chunks are encoded and compressed in parallel and written in order on a
/// serial queue, at most `chunksInFlight` behind, so a slow disk or a big chunk
/// holds the caller back (and the kernel then counts lost records) rather than
/// growing memory.
public final class RecordingWriter: RecordSink, @unchecked Sendable {
    public let path: String
    private let fd: Int32
    private var encoder = RecordEncoder()
    let windowNs: UInt64
    private var chunkStartNs: UInt64?
    public private(set) var recordsWritten: UInt64 = 0
    private var closed = false
    /// Chunks handed off and not yet written: one more than the CPUs encoding them
    /// (each at most `recordsPerChunk` records, about 6 MiB before encoding).
    static let chunksInFlight = min(8, ProcessInfo.processInfo.activeProcessorCount + 1)
    private let encoding = DispatchQueue(label: "hoptrace.recording.encode", attributes: .concurrent)
    private let io = DispatchQueue(label: "hoptrace.recording.io")
    private let inFlight = DispatchSemaphore(value: RecordingWriter.chunksInFlight)
    /// Guards `_error` and `_bytesWritten`, which the io queue sets.
    private let lock = NSLock()
    private var _error: RecordingError?
    private var _bytesWritten: UInt64 = 0

    /// The first write error, if any.
    public var error: RecordingError? { lock.withLock { _error } }
    /// Bytes in the file so far (chunks still being encoded not counted).
    public var bytesWritten: UInt64 { lock.withLock { _bytesWritten } }

    /// Creates the file (mode 0600). An existing file is an error unless `force`.
    public init(path: String, metadata: RecordingMetadata, force: Bool = false) throws(RecordingError) {
        self.path = path
        windowNs = max(metadata.windowNs, 1_000_000)
        let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL)
        let fd = open(path, flags, 0o600)
        guard fd >= 0 else {
            let e = errno
            if e == EEXIST { throw .io("\(path) exists; use --force to overwrite it") }
            throw .io("cannot create \(path): \(String(cString: strerror(e)))")
        }
        fchmod(fd, 0o600)
        self.fd = fd
        var header = ByteWriter()
        header.bytes.append(contentsOf: RecordingFormat.magic)
        header.u16(RecordingFormat.version)
        header.u16(0)
        header.u32(0)
        try writeAll(header.bytes)
        let json = (try? JSONEncoder().encode(metadata)) ?? Data()
        try writeChunk(.metadata, Array(json))
        if let e = error { throw e }
    }

    // Every chunk queued on `io` holds a reference: when this runs, none is left
    // (and it may run on `io` itself, as the last chunk's block is released).
    deinit { if !closed { Glibc.close(fd) } }

    private func writeAll(_ bytes: [UInt8]) throws(RecordingError) {
        var off = 0
        while off < bytes.count {
            let n = bytes[off...].withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                let e = RecordingError.io("writing \(path): \(String(cString: strerror(errno)))")
                lock.withLock { if _error == nil { _error = e } }
                throw e
            }
            off += n
            lock.withLock { _bytesWritten += UInt64(n) }
        }
    }

    /// Encodes and compresses a chunk on `encoding` (chunks in parallel, as many as
    /// there are CPUs), then writes it on the io queue, after the ones queued before it.
    private func enqueue(_ type: RecordingFormat.ChunkType, _ raw: @escaping @Sendable () -> [UInt8]) {
        inFlight.wait()
        let stored = StoredChunk()
        encoding.async(group: stored.done) { stored.bytes = Self.stored(type, raw()) }
        io.async { [self] in
            defer { inFlight.signal() }
            stored.done.wait()
            guard error == nil else { return }
            try? writeAll(stored.bytes)
        }
    }

    /// A chunk being encoded: its bytes once `done`.
    private final class StoredChunk: @unchecked Sendable {
        let done = DispatchGroup()
        var bytes: [UInt8] = []
    }

    /// zstd at level 3 (its default): on the demo's records 5 % larger than zlib at
    /// level 3 and 3.4 times faster to compress (level 1: 15 % larger, 7 times
    /// faster, and over the 8 bytes a record the format promises); the writer must
    /// keep up with the drain thread.
    static let compressionLevel: Int32 = 3

    private func writeChunk(_ type: RecordingFormat.ChunkType, _ raw: [UInt8]) throws(RecordingError) {
        try writeAll(Self.stored(type, raw))
    }

    /// A chunk as it is stored: header, then the compressed payload (zlib only for
    /// the tests' version 1 files).
    static func stored(_ type: RecordingFormat.ChunkType, _ raw: [UInt8],
                       codec: RecordingFormat.Codec = .zstd) -> [UInt8] {
        let stored = switch codec {
        case .zstd: Zstd.compress(raw, level: Self.compressionLevel)
        case .zlib: Zlib.compress(raw, level: 3)
        case .raw: raw
        }
        var h = ByteWriter()
        h.u32(RecordingFormat.chunkMagic)
        h.u8(type.rawValue)
        h.u8(codec.rawValue)
        h.u16(0)
        h.u32(UInt32(stored.count))
        h.u32(UInt32(raw.count))
        h.u32(Zlib.crc32(stored))
        return h.bytes + stored
    }

    /// Adds a record; a chunk is written when the current one spans a window or is full.
    public func append(_ r: HopRecord) {
        guard error == nil, !closed else { return }
        if let start = chunkStartNs, r.timestampNs > chunkEnd(start) || encoder.count >= RecordingFormat.recordsPerChunk {
            flush()
        }
        if chunkStartNs == nil { chunkStartNs = r.timestampNs }
        encoder.add(r)
        recordsWritten += 1
    }

    /// The last timestamp a chunk started at `start` takes (saturating: a chunk
    /// always takes its first record).
    private func chunkEnd(_ start: UInt64) -> UInt64 {
        let (end, overflow) = start.addingReportingOverflow(windowNs)
        return overflow ? .max : end
    }

    /// Adds a batch, split into chunks as `append(_:)` splits records one by one.
    public func append(_ batch: RecordColumns) {
        var start = 0
        while start < batch.count && error == nil && !closed {
            if chunkStartNs == nil { chunkStartNs = batch.timestampNs[start] }
            let limit = chunkEnd(chunkStartNs!)
            let room = RecordingFormat.recordsPerChunk - encoder.count
            var end = start
            while end < batch.count && end - start < room && batch.timestampNs[end] <= limit { end += 1 }
            encoder.add(batch, rows: start..<end)
            recordsWritten += UInt64(end - start)
            if end < batch.count { flush() }
            start = end
        }
    }

    /// Sends the records gathered so far off to be written as a chunk.
    public func flush() {
        guard encoder.count > 0, error == nil else { return }
        let chunk = encoder.takeChunk()
        enqueue(.records) { chunk.encoded() }
        chunkStartNs = nil
    }

    /// Waits until every chunk sent off so far is in the file (or failed).
    public func sync() { io.sync {} }

    /// Writes a status snapshot (once per window: the timeline's softirq load and counters).
    public func write(status: RecordingStatus) {
        guard error == nil, !closed else { return }
        flush()
        if let json = try? JSONEncoder().encode(status) { enqueue(.status) { Array(json) } }
    }

    /// Writes the end chunk and closes the file; throws the first write error, if any.
    public func finish(_ end: RecordingEnd) throws(RecordingError) {
        guard !closed else { return }
        flush()
        if let json = try? JSONEncoder().encode(end) { enqueue(.end) { Array(json) } }
        sync()
        closed = true
        fsync(fd)
        Glibc.close(fd)
        if let e = error { throw e }
    }
}
