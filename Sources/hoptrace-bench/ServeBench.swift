import Foundation
import HoptraceCore
import HoptraceHTTP
import HoptraceLab
import HoptraceMetrics
import HoptraceNode

/// The agent on a node's worth of veths (`--serve-only`): `hoptrace serve` started on
/// `pairs` veth pairs (attach time at start), a pair added (time until it is
/// traced), 10,000 flows sent through it (its memory then), a scrape of the metrics
/// it then serves (time and size), and its CPU while idle.
func serveFigures(pairs: Int, hoptrace: String) throws -> [String: Any] {
    let lab = try DiscoveryLab(pairs: pairs)
    defer { lab.remove() }
    Cleanup.shared.atInterrupt { lab.remove() }
    // addresses on the first namespaces, for traffic between them
    let talkers = 20
    for (i, ns) in lab.namespaces.prefix(talkers).enumerated() {
        try Command.run(["ip", "-n", ns, "addr", "add", "10.77.0.\(i + 1)/24", "dev", "eth0"])
        try Command.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
    }
    let port = 19_000 + Int(getpid() % 1000)
    let t0 = nowSeconds()
    guard let agent = try startObserver([hoptrace, "serve", "--listen", "127.0.0.1:\(port)", "--cpu-budget", "100%"],
                                        ready: "devices attached in", readyOnStderr: true, timeout: 120) else {
        throw BenchFailure(description: "hoptrace serve did not start")
    }
    defer { agent.stop() }
    let startSeconds = nowSeconds() - t0
    let banner = agent.banner
    let attached = Int(banner.firstMatch(of: /(\d+) devices attached/)?.1 ?? "") ?? 0
    let attachMs = Double(banner.firstMatch(of: /attached in (\d+) ms/)?.1 ?? "") ?? 0
    let servingMs = Double(banner.firstMatch(of: /(\d+) ms after start/)?.1 ?? "") ?? 0
    say("serve: serving \(Int(servingMs)) ms after start; \(attached) devices attached in \(Int(attachMs)) ms "
        + "(process start to all attached: \(Int(startSeconds * 1000)) ms)")

    func get(_ path: String) -> (body: String, seconds: Double) {
        let t = nowSeconds()
        let body = httpGet(port: port, path: path)
        return (body, nowSeconds() - t)
    }
    func devices() -> Int {
        let h = get("/healthz").body
        return h.range(of: "devices ").flatMap { Int(h[$0.upperBound...].prefix { $0.isNumber }) } ?? -1
    }

    // a pair added: how long until both ends are traced
    let before = devices()
    let late = "\(lab.hub)-late"
    try Command.run(["ip", "netns", "add", late])
    defer { _ = try? Command.run(["ip", "netns", "del", late]) }
    let added = nowSeconds()
    try Command.run(["ip", "-n", lab.hub, "link", "add", "vlate", "type", "veth", "peer", "name", "eth0", "netns", late])
    var hotPlugMs = -1.0
    while nowSeconds() - added < 5 {
        if devices() >= before + 2 {
            hotPlugMs = (nowSeconds() - added) * 1000
            break
        }
        usleep(10_000)
    }
    say("serve: a new veth pair traced \(Int(hotPlugMs)) ms after it was made (polled every 10 ms)")

    // 10,000 flows: one datagram from each of 10,000 source ports, spread over the talkers
    let script = """
    import socket
    s = []
    for i in range(10000):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("10.77.0.1", 20000 + i))
        u.sendto(b"x" * 32, ("10.77.0.%d" % (2 + i % \(talkers - 1)), 9))
        u.close()
    """
    try Command.run(["ip", "netns", "exec", lab.namespaces[0], "python3", "-c", script])
    sleep(3) // a window or two: the flows in the aggregate, the metrics rebuilt
    let status = (try? String(contentsOfFile: "/proc/\(agent.process.processIdentifier)/status", encoding: .utf8)) ?? ""
    let rssKiB = Double(status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }?.split(separator: " ").dropFirst().first ?? "") ?? 0
    let report = get("/report").body
    let flows = ((try? JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any])?["flows"] as? [Any])?.count ?? 0
    say("serve: RSS \(Int(rssKiB / 1024)) MiB with \(attached + 2) devices and \(flows) flows")

    // a scrape: the first encodes the format, the next ones copy it
    var scrapes: [Double] = []
    var body = ""
    for _ in 0..<10 {
        let r = get("/metrics")
        scrapes.append(r.seconds * 1000)
        body = r.body
    }
    let hopSeries = body.split(separator: "\n").filter { $0.hasPrefix("hoptrace_hop_packets_total{") }.count
    let series = body.split(separator: "\n").filter { !$0.hasPrefix("#") }.count
    say("serve: /metrics with \(hopSeries) hops (\(series) series, \(body.utf8.count / 1024) KiB): "
        + String(format: "median %.1f ms, first %.1f ms (connect to last byte, in process)", median(scrapes), scrapes[0]))

    // idle: its CPU over 10 s with no traffic
    func cpuSeconds() -> Double { processCPUSeconds(agent.process.processIdentifier) }
    let c0 = cpuSeconds()
    sleep(10)
    let idlePercent = (cpuSeconds() - c0) / 10 * 100
    say(String(format: "serve: idle on %d devices: %.2f %% of a CPU", attached + 2, idlePercent))

    return ["pairs": pairs, "devices_attached": attached, "attach_ms": attachMs, "serving_ms": servingMs, "start_to_serving_ms": (startSeconds * 1000).rounded(),
            "new_veth_traced_ms": hotPlugMs.rounded(), "flows": flows, "rss_mib": (rssKiB / 1024).rounded(),
            "scrape_hops": hopSeries, "scrape_series": series, "scrape_kib": body.utf8.count / 1024,
            "scrape_ms_median": (median(scrapes) * 10).rounded() / 10, "scrape_ms_first": (scrapes[0] * 10).rounded() / 10,
            "idle_cpu_percent": (idlePercent * 100).rounded() / 100]
}

/// GET `path` from 127.0.0.1:`port` over a plain socket, the body (the server closes
/// after each response): a scrape's time without a process spawned to make it.
func httpGet(port: Int, path: String) -> String {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return "" }
    defer { close(fd) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = UInt16(port).bigEndian
    a.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &a) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else { return "" }
    let request = Array("GET \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".utf8)
    _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    var response: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 1 << 16)
    while true {
        let n = recv(fd, &buf, buf.count, 0)
        if n <= 0 { break }
        response.append(contentsOf: buf[0..<n])
    }
    let text = String(decoding: response, as: UTF8.self)
    return text.range(of: "\r\n\r\n").map { String(text[$0.upperBound...]) } ?? ""
}

/// A scrape of `hops` hops' series (each with its five segments), as the agent
/// serves it: the snapshot encoded once (what each window costs the agent), then
/// the cached bytes served by the agent's HTTP server and read over loopback.
func scrapeFigures(hops: Int) throws -> [String: Any] {
    var snapshot = MetricsSnapshot()
    var seed: UInt64 = 1
    func latency() -> UInt64 {
        seed = seed &* 6364136223846793005 &+ 1442695040888963407
        // 2 us to ~130 us, log-uniform: each hop's histogram spans a few octaves
        return UInt64(2000 * pow(2, Double(seed >> 11) / Double(1 << 53) * 6))
    }
    for h in 0..<hops {
        func histogram() -> Histogram {
            var x = Histogram()
            for _ in 0..<2000 { x.record(latency()) }
            return x
        }
        snapshot.hops.append(.init(from: "default/web-\(h)/eth0", to: "host/veth\(h)", latency: histogram(),
                                   segments: [Segment.qdisc, .veth, .backlog, .forward, .deliver].map { ($0, histogram()) },
                                   packets: 2000))
    }
    var encodeMs: [Double] = []
    var body: [UInt8] = []
    for _ in 0..<5 {
        let t = nowSeconds()
        body = Exposition.encode(snapshot, format: .prometheusText)
        encodeMs.append((nowSeconds() - t) * 1000)
    }
    let cached = body
    let server = try HTTPServer(listen: "127.0.0.1:0") { _ in HTTPResponse(contentType: Exposition.Format.prometheusText.contentType, body: cached) }
    server.start()
    defer { server.stop() }
    var scrapeMs: [Double] = []
    for _ in 0..<10 {
        let t = nowSeconds()
        let got = httpGet(port: Int(server.port), path: "/metrics")
        scrapeMs.append((nowSeconds() - t) * 1000)
        if got.utf8.count != cached.count { say("scrape: read \(got.utf8.count) of \(cached.count) bytes") }
    }
    say(String(format: "serve: %d hops (%d KiB of text): encoded in %.1f ms (each window), scraped in %.1f ms (median of 10)",
               hops, cached.count / 1024, median(encodeMs), median(scrapeMs)))
    return ["hops": hops, "kib": cached.count / 1024, "encode_ms": (median(encodeMs) * 10).rounded() / 10,
            "scrape_ms": (median(scrapeMs) * 10).rounded() / 10]
}

/// User + system CPU time of process `pid` so far, seconds (0 if it is gone).
func processCPUSeconds(_ pid: Int32) -> Double {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.range(of: ") ") else { return 0 }
    let f = stat[close.upperBound...].split(separator: " ")
    return ((Double(f[11]) ?? 0) + (Double(f[12]) ?? 0)) / Double(sysconf(Int32(_SC_CLK_TCK)))
}
