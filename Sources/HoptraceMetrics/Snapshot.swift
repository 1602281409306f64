import HoptraceCore

/// What the agent exposes at one moment, built from its aggregates on a timer (never
/// at scrape time). Every value is cumulative since the agent started (Prometheus
/// counters and histograms), except the gauges. Latencies are in nanoseconds here and
/// in seconds on the wire. Labels are never per flow (cardinality): flows stay in
/// recordings.
public struct MetricsSnapshot: Sendable, Equatable {
    /// One hop, named by its two ends: the workload where known ("default/web",
    /// a container or `ip netns` name, "host") and the device, e.g. "default/web/eth0".
    public struct Hop: Sendable, Equatable {
        public var from: String
        public var to: String
        /// Whole-hop latency of every measured packet, nanoseconds.
        public var latency: Histogram
        /// Per segment the hop crossed (absent segments are left out), nanoseconds.
        public var segments: [(segment: Segment, latency: Histogram)]
        public var packets: UInt64

        public init(from: String, to: String, latency: Histogram, segments: [(segment: Segment, latency: Histogram)], packets: UInt64) {
            self.from = from
            self.to = to
            self.latency = latency
            self.segments = segments
            self.packets = packets
        }

        public static func == (a: Hop, b: Hop) -> Bool {
            a.from == b.from && a.to == b.to && a.latency == b.latency && a.packets == b.packets
                && a.segments.map(\.segment) == b.segments.map(\.segment) && a.segments.map(\.latency) == b.segments.map(\.latency)
        }
    }

    public struct Drops: Sendable, Equatable {
        public var from: String
        public var to: String
        /// The kernel's drop reason name, e.g. "NETFILTER_DROP".
        public var reason: String
        public var packets: UInt64
        public init(from: String, to: String, reason: String, packets: UInt64) {
            self.from = from
            self.to = to
            self.reason = reason
            self.packets = packets
        }
    }

    /// NET_RX or NET_TX on one CPU.
    public struct Softirq: Sendable, Equatable {
        public var cpu: Int
        /// "net_rx" or "net_tx".
        public var vector: String
        public var runSeconds: Double
        /// Raise-to-run delay, nanoseconds.
        public var delay: Histogram
        public init(cpu: Int, vector: String, runSeconds: Double, delay: Histogram) {
            self.cpu = cpu
            self.vector = vector
            self.runSeconds = runSeconds
            self.delay = delay
        }
    }

    public var hops: [Hop] = []
    public var drops: [Drops] = []
    public var softirq: [Softirq] = []
    public var lostRecords: UInt64 = 0
    public var unseenPackets: UInt64 = 0
    /// Self cost: BPF program run time (bpf_stats) and the consumer thread's CPU.
    public var bpfRunSeconds: Double = 0
    public var consumerCPUSeconds: Double = 0
    /// Share of the last budget period the hooks were attached (1 = continuous).
    public var tracingActiveRatio: Double = 1
    /// Incidents since start, by trigger ("p99>2ms", "drop:NETFILTER_DROP", "softnet_backlog", "signal", "http").
    public var incidents: [String: UInt64] = [:]
    /// Unix time this snapshot was built, seconds (for OpenMetrics created/timestamps only where needed).
    public var builtAtUnixSeconds: Double = 0

    public init() {}
}
