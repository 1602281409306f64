import Foundation
import HoptraceCore

/// A directory of incident recordings, one file per incident, named by the time it
/// fired and its trigger ("20261201T034512Z-p99-2ms.hoptrace"), each written as any
/// recording is (mode 0600, chunk by chunk: a crash leaves a file readable up to its
/// last complete chunk). The total size is kept under `keepBytes` by deleting the
/// oldest files first, whenever an incident ends.
public final class IncidentStore: @unchecked Sendable {
    public let directory: String
    public let keepBytes: UInt64
    /// The metadata of a new incident's recording (names and settings as they are now).
    private let metadata: () -> RecordingMetadata
    private let lock = NSLock()

    /// One incident file.
    public struct File: Codable, Sendable, Equatable {
        public var name: String
        public var bytes: UInt64
        public var modifiedUnixSeconds: Double
    }

    /// Makes `directory` (0700) if it does not exist.
    public init(directory: String, keepBytes: UInt64, metadata: @escaping () -> RecordingMetadata) throws(RecordingError) {
        self.directory = directory
        self.keepBytes = keepBytes
        self.metadata = metadata
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o700])
        } catch {
            throw .io("cannot create the incidents directory \(directory): \(error.localizedDescription)")
        }
        guard access(directory, W_OK) == 0 else { throw .io("cannot write to the incidents directory \(directory)") }
    }

    /// A file name for an incident that fired now because of `why`: the UTC time,
    /// then the trigger with every character outside [A-Za-z0-9.] made '-'.
    static func fileName(at date: Date, why: String) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyyMMdd'T'HHmmss'Z'"
        var slug = String(why.map { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == ".") ? $0 : "-" })
        while slug.contains("--") { slug = slug.replacingOccurrences(of: "--", with: "-") }
        slug = String(slug.trimmingCharacters(in: CharacterSet(charactersIn: "-")).prefix(60))
        return "\(f.string(from: date))-\(slug.isEmpty ? "incident" : slug).hoptrace"
    }

    /// A writer for a new incident's recording (a second incident in the same second
    /// gets a numbered name).
    public func open(why: String, at date: Date = Date()) throws(RecordingError) -> RecordingWriter {
        let base = Self.fileName(at: date, why: why)
        var path = directory + "/" + base
        var n = 1
        while FileManager.default.fileExists(atPath: path) {
            n += 1
            path = directory + "/" + base.replacingOccurrences(of: ".hoptrace", with: "-\(n).hoptrace")
        }
        return try RecordingWriter(path: path, metadata: metadata())
    }

    /// The incident files, oldest first.
    public func files() -> [File] {
        lock.withLock {
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            return names.filter { $0.hasSuffix(".hoptrace") }.compactMap { name -> File? in
                var st = stat()
                guard stat(directory + "/" + name, &st) == 0 else { return nil }
                return File(name: name, bytes: UInt64(st.st_size),
                            modifiedUnixSeconds: Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9)
            }.sorted { ($0.modifiedUnixSeconds, $0.name) < ($1.modifiedUnixSeconds, $1.name) }
        }
    }

    /// Deletes the oldest files until the rest fit in `keepBytes`, never `keeping`
    /// (the incident being written). Returns the names deleted.
    @discardableResult
    public func prune(keeping: String? = nil) -> [String] {
        var all = files()
        var total = all.reduce(UInt64(0)) { $0 + $1.bytes }
        var deleted: [String] = []
        while total > keepBytes, let i = all.firstIndex(where: { directory + "/" + $0.name != keeping }) {
            let f = all.remove(at: i)
            if unlink(directory + "/" + f.name) == 0 || errno == ENOENT {
                deleted.append(f.name)
                total -= f.bytes
            } else {
                break
            }
        }
        return deleted
    }
}
