import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceViews

/// What `hoptrace top` costs itself (`--top-only`): the release binary full screen in
/// a real terminal (tmux, 200x60) on `pairs` veth pairs of which `talkers` send UDP
/// to each other, for `seconds`; the view's CPU (sampling, drawing, keys) as its
/// footer shows it each second, and the whole process's CPU from /proc. Then the
/// screen alone: building the lines of 1,000 hops.
func topFigures(pairs: Int, talkers: Int, seconds: Int, hoptrace: String) throws -> [String: Any] {
    let lab = try DiscoveryLab(pairs: pairs)
    defer { lab.remove() }
    Cleanup.shared.atInterrupt { lab.remove() }
    for (i, ns) in lab.namespaces.prefix(talkers).enumerated() {
        try Command.run(["ip", "-n", ns, "addr", "add", "10.78.0.\(i + 1)/24", "dev", "eth0"])
        try Command.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    }
    // each talker sends 200 datagrams a second to the next one, for the whole run
    var senders: [Process] = []
    defer { senders.forEach { $0.terminate() } }
    for (i, ns) in lab.namespaces.prefix(talkers).enumerated() {
        let script = """
        import socket, time
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        end = time.time() + \(seconds + 15)
        while time.time() < end:
            u.sendto(b"x" * 64, ("10.78.0.\((i + 1) % talkers + 1)", 9))
            time.sleep(0.005)
        """
        senders.append(try background(ns, ["python3", "-c", script]))
    }
    let tmux = Tmux()
    try tmux.start("\(hoptrace) top --all-veth 2>/dev/null", width: 200, height: 60)
    guard tmux.wait(60, until: { $0.contains(" hops ") && $0.contains("view ") }) else {
        throw BenchFailure(description: "top did not draw: \(tmux.screen())")
    }
    let pid = Int32(try Command.run(["pgrep", "-P", tmux.value("#{pane_pid}"), "-f", "hoptrace top"])
        .split(separator: "\n").first ?? "") ?? 0
    sleep(3) // the hops of every talker on screen
    var view: [Double] = [], consumer: [Double] = [], hops: [Int] = []
    let cpu0 = processCPUSeconds(pid), t0 = nowSeconds()
    for _ in 0..<seconds {
        sleep(1)
        let screen = tmux.screen()
        if let v = screen.firstMatch(of: /view (\d+\.\d)%/).flatMap({ Double($0.1) }) { view.append(v) }
        if let c = screen.firstMatch(of: /consumer (\d+\.\d)%/).flatMap({ Double($0.1) }) { consumer.append(c) }
        if let h = screen.firstMatch(of: /(\d+) hops/).flatMap({ Int($0.1) }) { hops.append(h) }
    }
    let processPercent = (processCPUSeconds(pid) - cpu0) / (nowSeconds() - t0) * 100
    try? tmux.send("q")
    _ = tmux.wait(10) { !$0.contains("hoptrace top") }
    say(String(format: "top: %d hops on screen; view %.2f %% of a CPU (median of %d seconds, max %.1f), consumer %.2f %%, "
               + "whole process %.2f %%", hops.max() ?? 0, median(view), view.count, view.max() ?? 0, median(consumer),
               processPercent))

    // the screen alone, 1,000 hops
    var screen = TopScreen(intervalSeconds: 1)
    let many = (0..<1000).map {
        LiveInterval.Hop(hop: "pod-\($0)/eth0 -> host/veth\($0)", from: "pod-\($0)/eth0", to: "host/veth\($0)",
                         packetsPerSecond: 100, records: 100, p50Ns: 4_000, p99Ns: UInt64(9_000 + $0), maxNs: 20_000,
                         dropsPerSecond: 0, topDropReason: nil)
    }
    let interval = LiveInterval(time: 0, seconds: 1, hops: many, softirq: [], cost: LiveInterval.Cost(consumerPercent: 0))
    for _ in 0..<60 { screen.show(interval) }
    var frameUs: [Double] = []
    for _ in 0..<20 {
        let t = nowSeconds()
        _ = screen.lines(width: 200, height: 60, context: "", clock: "")
        frameUs.append((nowSeconds() - t) * 1e6)
    }
    say(String(format: "top: one frame of 1,000 hops (sort, sparklines, layout): %.0f us (median of 20)", median(frameUs)))
    return ["hops": hops.max() ?? 0, "view_cpu_percent_median": (median(view) * 100).rounded() / 100,
            "view_cpu_percent_max": view.max() ?? 0, "consumer_cpu_percent_median": (median(consumer) * 100).rounded() / 100,
            "process_cpu_percent": (processPercent * 100).rounded() / 100,
            "frame_1000_hops_us": median(frameUs).rounded()]
}
