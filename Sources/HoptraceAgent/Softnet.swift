import Foundation

/// Packets the kernel dropped because a CPU's backlog was full (the second column
/// of /proc/net/softnet_stat, one row per CPU, hexadecimal): drops no tracepoint
/// names a hop for, and a trigger of the agent.
public enum Softnet {
    /// The sum over CPUs, or nil when the file cannot be read.
    public static func backlogDrops(procRoot: String = "/proc") -> UInt64? {
        guard let text = try? String(contentsOfFile: procRoot + "/net/softnet_stat", encoding: .utf8) else { return nil }
        return backlogDrops(parsing: text)
    }

    public static func backlogDrops(parsing text: String) -> UInt64? {
        var total: UInt64 = 0
        var rows = 0
        for line in text.split(separator: "\n") {
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            guard columns.count >= 2, let dropped = UInt64(columns[1], radix: 16) else { return nil }
            total &+= dropped
            rows += 1
        }
        return rows > 0 ? total : nil
    }
}
