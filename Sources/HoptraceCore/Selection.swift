/// A device to attach to: its name, the namespace file that opens its netns, and a
/// label for messages ("web/eth0").
public struct DeviceSelection: Hashable, Sendable {
    public var ifname: String
    public var netnsPath: String
    public var label: String
    /// Attach at ingress too. Only needed when the device's veth peer is not
    /// traced: a packet arriving from a traced peer was picked up at its egress.
    public var ingress: Bool
    /// The device as the kernel's records name it (namespace inode, ifindex), where
    /// discovery found it: what the agent follows a device by while its label (the
    /// namespace's name) and path (a process holding it) may change.
    public var endpoint: Endpoint?

    public init(ifname: String, netnsPath: String, label: String, ingress: Bool = true, endpoint: Endpoint? = nil) {
        self.ifname = ifname
        self.netnsPath = netnsPath
        self.label = label
        self.ingress = ingress
        self.endpoint = endpoint
    }
}

/// Where a trace's records go besides the aggregate (a recording file).
public protocol RecordSink: AnyObject {
    func append(_ record: HopRecord)
    /// A batch as the drain decoded it; by default a record at a time.
    func append(_ batch: RecordColumns)
}

extension RecordSink {
    public func append(_ batch: RecordColumns) {
        for i in 0..<batch.count { append(batch[i]) }
    }
}
