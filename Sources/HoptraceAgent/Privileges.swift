import Glibc
import CHoptracePrivileges

/// What the agent keeps of root's powers once it has loaded its programs: the
/// capability set of its DaemonSet and systemd unit (deploy/capabilities is the
/// same list; a test holds them together), and no_new_privs.
public enum Privileges {
    /// Each capability the agent needs while it runs, and why.
    public static let kept: [(name: String, number: Int, why: String)] = [
        ("CAP_DAC_READ_SEARCH", 2, "read other processes' /proc files (their namespaces and cgroups)"),
        ("CAP_NET_ADMIN", 12, "attach tcx programs to devices as they appear"),
        ("CAP_SYS_PTRACE", 19, "open other processes' namespace files (/proc/PID/ns/net)"),
        ("CAP_SYS_ADMIN", 21, "enter network namespaces (setns) and turn on BPF run-time statistics"),
        ("CAP_SYS_RESOURCE", 24, "raise the locked-memory limit for maps on older kernels"),
        ("CAP_PERFMON", 38, "attach tracepoint programs again after a pause (the CPU budget)"),
        ("CAP_BPF", 39, "BPF links, maps and program statistics"),
    ]

    public static var keptMask: UInt64 { kept.reduce(0) { $0 | (1 << UInt64($1.number)) } }

    /// Drops every capability but `kept` and sets no_new_privs. Throws a line that
    /// says what failed.
    public static func dropToKept() throws(AgentError) {
        var call = [CChar](repeating: 0, count: 32)
        let rc = ht_keep_capabilities(keptMask, &call)
        guard rc == 0 else {
            let what = String(decoding: call.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            throw AgentError("could not drop capabilities (\(what): \(String(cString: strerror(-rc))))")
        }
    }

    /// The calling thread's effective capabilities, as names (unknown ones by number).
    public static func effective() -> [String] {
        var err: Int32 = 0
        let mask = ht_effective_capabilities(&err)
        let names = Dictionary(uniqueKeysWithValues: kept.map { ($0.number, $0.name) })
        return (0..<64).filter { mask & (1 << UInt64($0)) != 0 }.map { names[$0] ?? "cap \($0)" }
    }
}

/// An agent failure, one line that says what is wrong and what to do.
public struct AgentError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
