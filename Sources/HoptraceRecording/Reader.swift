import Foundation
import HoptraceCore

/// What reading a recording found besides its records.
public struct RecordingContents: Sendable {
    public var metadata: RecordingMetadata
    public var statuses: [RecordingStatus] = []
    public var end: RecordingEnd?
    public var records: UInt64 = 0
    public var chunks = 0
    /// Why reading stopped before the end chunk (crash, kill -9, full disk, damage), or nil.
    public var cutShort: String?
    public var fileBytes: UInt64 = 0
}

/// Reads recordings. Malformed input never traps or hangs: every length is checked
/// against the file and a bound, every chunk against its CRC, and reading stops at
/// the first bad chunk with the reason in `cutShort`.
public enum RecordingReader {
    /// Reads `path`, handing each record to `body` in file order.
    /// `metadataHook` sees the metadata before the first record.
    public static func read(path: String, _ body: (HopRecord) -> Void,
                            metadataHook: (RecordingMetadata) -> Void = { _ in }) throws(RecordingError) -> RecordingContents {
        try readChunks(path: path, { c in for i in 0..<c.count { body(c[i]) } }, metadataHook: metadataHook)
    }

    /// Reads `path`, handing each records chunk to `body` decoded into columns, in file order.
    static func readChunks(path: String, _ body: (RecordColumns) -> Void,
                           metadataHook: (RecordingMetadata) -> Void = { _ in }) throws(RecordingError) -> RecordingContents {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .io("cannot open \(path): \(String(cString: strerror(errno)))")
        }
        defer { try? handle.close() }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? UInt64) ?? 0
        func read(_ n: Int) -> [UInt8] { (try? handle.read(upToCount: n)).map { [UInt8]($0) } ?? [] }
        let header = read(RecordingFormat.fileHeaderBytes)
        guard !header.isEmpty else { throw .notARecording("empty file") }
        guard header.count == RecordingFormat.fileHeaderBytes, Array(header.prefix(8)) == RecordingFormat.magic else {
            throw .notARecording("no HOPTRACE header")
        }
        var hr = ByteReader(Array(header.dropFirst(8)))
        let version = try hr.u16()
        guard version <= RecordingFormat.version else { throw .newerVersion(version) }
        guard version >= 1 else { throw .corrupt("version 0") }

        var offset = UInt64(RecordingFormat.fileHeaderBytes)
        /// The next chunk, or why there is none.
        func nextChunk() -> Result<(RecordingFormat.ChunkType, [UInt8])?, RecordingError> {
            let h = read(RecordingFormat.chunkHeaderBytes)
            if h.isEmpty { return .success(nil) }
            guard h.count == RecordingFormat.chunkHeaderBytes else { return .failure(.corrupt("chunk header cut at byte \(offset)")) }
            var r = ByteReader(h)
            do {
                guard try r.u32() == RecordingFormat.chunkMagic else { return .failure(.corrupt("no chunk at byte \(offset)")) }
                let typeRaw = try r.u8(), codecRaw = try r.u8()
                _ = try r.u16()
                let storedLen = Int(try r.u32()), rawLen = Int(try r.u32()), crc = try r.u32()
                guard storedLen <= RecordingFormat.maxChunkBytes, UInt64(storedLen) <= size &- offset else {
                    return .failure(.corrupt("chunk at byte \(offset) is cut short"))
                }
                let stored = read(storedLen)
                guard stored.count == storedLen else { return .failure(.corrupt("chunk at byte \(offset) is cut short")) }
                guard Zlib.crc32(stored) == crc else { return .failure(.corrupt("checksum mismatch in the chunk at byte \(offset)")) }
                offset += UInt64(RecordingFormat.chunkHeaderBytes + storedLen)
                guard let type = RecordingFormat.ChunkType(rawValue: typeRaw),
                      let codec = RecordingFormat.Codec(rawValue: codecRaw) else {
                    return .failure(.corrupt("unknown chunk type \(typeRaw) or codec \(codecRaw)"))
                }
                let payload: [UInt8]
                switch codec {
                case .raw: payload = stored
                case .zlib: payload = try Zlib.decompress(stored[...], rawLength: rawLen)
                case .zstd: payload = try Zstd.decompress(stored, rawLength: rawLen)
                }
                return .success((type, payload))
            } catch {
                return .failure(error)
            }
        }

        guard case .success(let first?) = nextChunk(), first.0 == .metadata,
              let metadata = try? JSONDecoder().decode(RecordingMetadata.self, from: Data(first.1)) else {
            throw .corrupt("the metadata chunk is missing or damaged")
        }
        metadataHook(metadata)
        var contents = RecordingContents(metadata: metadata)
        contents.fileBytes = size
        contents.chunks = 1
        var decoder = RecordDecoder()
        if version < 3 { decoder.retiredFlags = HopRecord.Flags.noQdisc.rawValue }
        // no window after this one: windows are kept densely, so a corrupt timestamp
        // far in the future would otherwise ask for billions of them
        let span = max(metadata.windowNs, 1).multipliedReportingOverflow(by: UInt64(RecordingFormat.maxWindows))
        let end = metadata.startMonotonicNs.addingReportingOverflow(span.overflow ? .max : span.partialValue)
        let latest = end.overflow ? UInt64.max : end.partialValue
        while true {
            switch nextChunk() {
            case .success(nil):
                if contents.end == nil { contents.cutShort = "the recording ends without its end chunk (the recorder was stopped abruptly)" }
                return contents
            case .failure(let e):
                contents.cutShort = e.description
                return contents
            case .success(let (type, payload)?):
                contents.chunks += 1
                switch type {
                case .records:
                    do throws(RecordingError) {
                        let columns = try decoder.decode(payload)
                        if let late = columns.timestampNs.first(where: { $0 > latest }) {
                            throw .corrupt("a record at \(late - metadata.startMonotonicNs) ns, more than "
                                           + "\(RecordingFormat.maxWindows) windows after the start")
                        }
                        contents.records += UInt64(columns.count)
                        body(columns)
                    } catch {
                        contents.cutShort = error.description
                        return contents
                    }
                case .status:
                    if let s = try? JSONDecoder().decode(RecordingStatus.self, from: Data(payload)) { contents.statuses.append(s) }
                case .end:
                    contents.end = try? JSONDecoder().decode(RecordingEnd.self, from: Data(payload))
                case .metadata:
                    contents.cutShort = "a second metadata chunk at byte \(offset)"
                    return contents
                }
            }
        }
    }
}
