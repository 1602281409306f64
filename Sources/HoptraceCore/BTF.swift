import Foundation

/// Reads enum values from a BTF blob (the format of /sys/kernel/btf/vmlinux), so
/// names like the kernel's drop reasons are right for the running kernel rather
/// than a table compiled in.
public enum BTF {
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case notBTF
        case truncated
        case unknownKind(UInt32)

        public var description: String {
            switch self {
            case .notBTF: "not a BTF blob (bad magic)"
            case .truncated: "BTF blob is truncated"
            case .unknownKind(let k): "BTF type kind \(k) is unknown to this reader"
            }
        }
    }

    /// The values of `enum name` (ENUM or ENUM64), value to enumerator name.
    public static func enumValues(named name: String, in data: Data) throws(Failure) -> [UInt64: String] {
        let bytes = [UInt8](data)
        func u32(_ o: Int) throws(Failure) -> UInt32 {
            guard o >= 0, o + 4 <= bytes.count else { throw .truncated }
            return UInt32(bytes[o]) | UInt32(bytes[o + 1]) << 8 | UInt32(bytes[o + 2]) << 16 | UInt32(bytes[o + 3]) << 24
        }
        guard bytes.count >= 24, bytes[0] == 0x9f, bytes[1] == 0xeb else { throw .notBTF }
        let headerLength = Int(try u32(4))
        let typeOff = headerLength + Int(try u32(8)), typeLen = Int(try u32(12))
        let strOff = headerLength + Int(try u32(16)), strLen = Int(try u32(20))
        guard typeOff + typeLen <= bytes.count, strOff + strLen <= bytes.count else { throw .truncated }
        func string(_ off: UInt32) -> String {
            var i = strOff + Int(off)
            let start = i
            while i < strOff + strLen, bytes[i] != 0 { i += 1 }
            return String(decoding: bytes[start..<i], as: UTF8.self)
        }
        var at = typeOff
        let end = typeOff + typeLen
        while at + 12 <= end {
            let nameOff = try u32(at), info = try u32(at + 4)
            let kind = (info >> 24) & 0x1f, vlen = Int(info & 0xffff)
            at += 12
            let extra: Int
            switch kind {
            case 1, 14, 17: extra = 4                       // INT, VAR, DECL_TAG
            case 2, 7, 8, 9, 10, 11, 12, 16, 18: extra = 0  // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG
            case 3: extra = 12                               // ARRAY
            case 4, 5: extra = 12 * vlen                     // STRUCT, UNION
            case 6, 13: extra = 8 * vlen                     // ENUM, FUNC_PROTO
            case 15: extra = 12 * vlen                       // DATASEC
            case 19: extra = 12 * vlen                       // ENUM64
            default: throw .unknownKind(kind)
            }
            if (kind == 6 || kind == 19), string(nameOff) == name {
                var values: [UInt64: String] = [:]
                let step = kind == 6 ? 8 : 12
                for i in 0..<vlen {
                    let e = at + i * step
                    let v = kind == 6 ? UInt64(try u32(e + 4)) : UInt64(try u32(e + 4)) | UInt64(try u32(e + 8)) << 32
                    values[v] = string(try u32(e))
                }
                return values
            }
            at += extra
        }
        return [:]
    }
}

/// Names of the kernel's `enum skb_drop_reason`, as "NO_SOCKET" for
/// SKB_DROP_REASON_NO_SOCKET.
public struct DropReasons: Sendable {
    public var names: [UInt32: String]

    public init(names: [UInt32: String] = [:]) { self.names = names }

    /// From a BTF blob (normally /sys/kernel/btf/vmlinux); empty when it has none.
    public init(btf: Data) {
        let values = (try? BTF.enumValues(named: "skb_drop_reason", in: btf)) ?? [:]
        var names: [UInt32: String] = [:]
        for (v, n) in values where v <= UInt64(UInt32.max) {
            names[UInt32(v)] = n.hasPrefix("SKB_DROP_REASON_") ? String(n.dropFirst("SKB_DROP_REASON_".count)) : n
        }
        self.names = names
    }

    /// The running kernel's reasons.
    public static func running() -> DropReasons {
        guard let data = FileManager.default.contents(atPath: "/sys/kernel/btf/vmlinux") else { return DropReasons() }
        return DropReasons(btf: data)
    }

    public func name(_ reason: UInt32) -> String { names[reason] ?? "reason \(reason)" }

    /// The running kernel's release (uname -r), which the reasons belong to.
    public static func runningKernel() -> String {
        var uts = utsname()
        uname(&uts)
        return withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
