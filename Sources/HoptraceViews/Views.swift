import HoptraceCore

/// What the live view and the HTML pages share.
public enum Views {
    /// Segments in the order the views show them (the issue's, and a stacked bar's
    /// from left to right): qdisc, veth, backlog, forward, deliver.
    public static let segmentOrder: [Segment] = [.qdisc, .veth, .backlog, .forward, .deliver]
}
