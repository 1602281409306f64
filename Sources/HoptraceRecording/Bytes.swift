import CZlib
import CZstd
import Foundation
import HoptraceCore

/// Appends little-endian integers and LEB128 varints.
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }

    @inline(__always)
    mutating func varint(_ value: UInt64) { bytes.appendVarint(value) }

    /// Signed values as zigzag varints (small magnitudes stay short).
    mutating func zigzag(_ v: Int64) { varint(UInt64(bitPattern: (v << 1) ^ (v >> 63))) }
}

/// Reads what `ByteWriter` wrote; every read is bounds-checked and throws on
/// truncated or malformed input, never traps.
struct ByteReader {
    let bytes: [UInt8]
    var at = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - at }

    mutating func take(_ n: Int) throws(RecordingError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= remaining else { throw .corrupt("field runs past the end of its chunk") }
        defer { at += n }
        return bytes[at..<(at + n)]
    }

    mutating func u8() throws(RecordingError) -> UInt8 { try take(1).first! }

    mutating func u16() throws(RecordingError) -> UInt16 {
        let s = try take(2)
        return UInt16(s[s.startIndex]) | UInt16(s[s.startIndex + 1]) << 8
    }

    mutating func u32() throws(RecordingError) -> UInt32 {
        let s = try take(4)
        var v: UInt32 = 0
        for (i, b) in s.enumerated() { v |= UInt32(b) << (8 * UInt32(i)) }
        return v
    }

    mutating func u64() throws(RecordingError) -> UInt64 {
        UInt64(try u32()) | UInt64(try u32()) << 32
    }

    /// The varint at `at` in `b`, advancing `at`; nil (and why) when malformed.
    @inline(__always)
    static func varint(_ b: UnsafeBufferPointer<UInt8>, _ at: inout Int, _ problem: inout String?) -> UInt64? {
        var v: UInt64 = 0, shift: UInt64 = 0
        while true {
            guard at < b.count else { problem = "varint runs past the end of its chunk"; return nil }
            guard shift < 64 else { problem = "varint longer than 64 bits"; return nil }
            let byte = b[at]
            at += 1
            v |= UInt64(byte & 0x7f) << shift
            if byte < 0x80 { return v }
            shift += 7
        }
    }

    mutating func varint() throws(RecordingError) -> UInt64 {
        try varints(1, as: UInt64.self)[0]
    }

    /// `n` varints that must each fit `T` and be at most `max`: a column, read in
    /// one tight loop over the bytes (the bulk of reading a recording).
    mutating func varints<T: FixedWidthInteger>(_ n: Int, as: T.Type, max: T = .max) throws(RecordingError) -> [T] {
        var out = [T](repeating: 0, count: n)
        var at = self.at
        var problem: String?
        let limit = UInt64(max)
        bytes.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<n {
                    guard let v = Self.varint(b, &at, &problem) else { return }
                    guard v <= limit else { problem = "value \(v) out of range"; return }
                    o[i] = T(truncatingIfNeeded: v)
                }
            }
        }
        if let problem { throw .corrupt(problem) }
        self.at = at
        return out
    }

    /// `n` timestamps stored as zigzag deltas, the first from `first`, in one loop.
    mutating func deltaColumn(_ n: Int, from first: UInt64) throws(RecordingError) -> [UInt64] {
        var out = [UInt64](repeating: 0, count: n)
        var at = self.at
        var problem: String?
        var ts = Int64(bitPattern: first)
        bytes.withUnsafeBufferPointer { b in
            out.withUnsafeMutableBufferPointer { o in
                for i in 0..<n {
                    guard let u = Self.varint(b, &at, &problem) else { return }
                    ts &+= Int64(bitPattern: u >> 1) ^ -Int64(bitPattern: u & 1)
                    o[i] = UInt64(bitPattern: ts)
                }
            }
        }
        if let problem { throw .corrupt(problem) }
        self.at = at
        return out
    }

    /// A varint that must fit `T` (a count or id), else the input is corrupt.
    mutating func varint<T: FixedWidthInteger>(as: T.Type, max: T = .max) throws(RecordingError) -> T {
        let v = try varint()
        guard v <= UInt64(max) else { throw .corrupt("value \(v) out of range") }
        return T(v)
    }
}

/// zlib, for chunk payloads, and CRC-32 for their checksums.
enum Zlib {
    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { UInt32(CZlib.crc32(0, $0.baseAddress, uInt($0.count))) }
    }

    static func compress(_ input: [UInt8], level: Int32 = 6) -> [UInt8] {
        var outLen = compressBound(uLong(input.count))
        var out = [UInt8](repeating: 0, count: Int(outLen))
        let rc = out.withUnsafeMutableBufferPointer { o in
            input.withUnsafeBufferPointer { i in compress2(o.baseAddress, &outLen, i.baseAddress, uLong(i.count), level) }
        }
        precondition(rc == Z_OK, "compress2 failed: \(rc)")
        return Array(out.prefix(Int(outLen)))
    }

    static func decompress(_ input: ArraySlice<UInt8>, rawLength: Int) throws(RecordingError) -> [UInt8] {
        guard rawLength >= 0, rawLength <= RecordingFormat.maxChunkBytes else { throw .corrupt("chunk length \(rawLength) out of range") }
        var out = [UInt8](repeating: 0, count: rawLength)
        var outLen = uLong(rawLength)
        let rc = out.withUnsafeMutableBufferPointer { o in
            Array(input).withUnsafeBufferPointer { i in uncompress(o.baseAddress, &outLen, i.baseAddress, uLong(i.count)) }
        }
        guard rc == Z_OK, Int(outLen) == rawLength else { throw .corrupt("chunk does not decompress (zlib \(rc))") }
        return out
    }
}

/// zstd, for chunk payloads from format version 2 on: at level 3 it compresses a
/// recording's columns 3.4 times faster than zlib at level 3 (134 vs 40 MB/s on the
/// demo's, for 5 % more bytes) and decompresses faster.
enum Zstd {
    static func compress(_ input: [UInt8], level: Int32) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let n = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_compress(o.baseAddress, o.count, i.baseAddress, i.count, level) }
        }
        precondition(ZSTD_isError(n) == 0, "ZSTD_compress failed: \(String(cString: ZSTD_getErrorName(n)))")
        return Array(out.prefix(n))
    }

    static func decompress(_ input: [UInt8], rawLength: Int) throws(RecordingError) -> [UInt8] {
        guard rawLength >= 0, rawLength <= RecordingFormat.maxChunkBytes else { throw .corrupt("chunk length \(rawLength) out of range") }
        var out = [UInt8](repeating: 0, count: rawLength)
        let n = out.withUnsafeMutableBytes { o in
            input.withUnsafeBytes { i in ZSTD_decompress(o.baseAddress, o.count, i.baseAddress, i.count) }
        }
        guard ZSTD_isError(n) == 0, n == rawLength else { throw .corrupt("chunk does not decompress (zstd)") }
        return out
    }
}
