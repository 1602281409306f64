/// Names for the inodes and ifindexes in records; what a report prints.
public struct NameTable: Codable, Sendable, Equatable {
    public var netns: [UInt32: String] = [:]
    public var devices: [Endpoint: String] = [:]

    public init() {}

    public func netnsName(_ inode: UInt32) -> String { netns[inode] ?? "netns:\(inode)" }
    public func deviceName(_ e: Endpoint) -> String { devices[e] ?? "if\(e.ifindex)" }
    public func label(_ e: Endpoint) -> String { "\(netnsName(e.netns))/\(deviceName(e))" }

    public mutating func merge(_ o: NameTable) {
        netns.merge(o.netns) { a, _ in a }
        devices.merge(o.devices) { a, _ in a }
    }
}
