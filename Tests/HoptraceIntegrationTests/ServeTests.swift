import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTestSupport
import XCTest

/// `hoptrace serve` (issue 12) on namespace labs, scraped by a real Prometheus
/// (Debian's, started here on loopback). Everything started is stopped, and every
/// lab removed, in every exit path.
final class ServeTests: XCTestCase {
    override func setUpWithError() throws {
        try requireRootAndBPF()
        Lab.sweepOrphans()
    }

    /// A free TCP port on 127.0.0.1.
    func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// GET (or POST) on loopback with curl: (status, body).
    func http(_ url: String, method: String = "GET", headers: [String] = []) throws -> (status: Int, body: String) {
        let out = try Command.run(["curl", "-s", "-m", "5", "-X", method, "-w", "\n%{http_code}"] + headers.flatMap { ["-H", $0] } + [url])
        let lines = out.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? 0, lines.dropLast().joined(separator: "\n"))
    }

    /// A running `hoptrace serve`, stopped by SIGTERM in `stop()` (or SIGKILL if it hangs).
    final class Agent {
        let process: Process
        let port: Int
        init(port: Int, _ args: [String], prefix: [String] = []) throws {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = prefix + [try hoptraceBinary(), "serve", "--listen", "127.0.0.1:\(port)"] + args
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            process = p
            self.port = port
        }

        /// SIGTERM; the exit status and how long it took.
        func stop() -> (status: Int32, seconds: Double) {
            guard process.isRunning else { return (process.terminationStatus, 0) }
            let t = Date()
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(10)
            while process.isRunning && Date() < deadline { usleep(10_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            return (process.terminationStatus, Date().timeIntervalSince(t))
        }
    }

    /// Waits until `check` holds (polling every 100 ms), up to `seconds`.
    func eventually(_ seconds: Double, _ check: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            if try check() { return true }
            usleep(100_000)
        } while Date() < deadline
        return false
    }

    /// Waits until the agent on `port` serves and has attached at least `devices`
    /// devices, none waiting (it attaches in batches after it starts serving).
    func ready(_ port: Int, devices: Int) -> Bool {
        eventually(30) { devicesAttached(port).map { $0 >= devices } ?? false }
    }

    /// Devices the agent on `port` has attached, from /healthz; nil while it is not
    /// healthy or still attaching.
    func devicesAttached(_ port: Int) -> Int? {
        guard let h = try? http("http://127.0.0.1:\(port)/healthz"), h.status == 200, !h.body.contains("attaching") else { return nil }
        return h.body.range(of: "devices ").flatMap { Int(h.body[$0.upperBound...].prefix { $0.isNumber }) }
    }

    /// A Prometheus server scraping `target` every second, its data in a temporary
    /// directory; stopped (and the directory removed) by `stop()`.
    final class Prometheus {
        let process: Process
        let port: Int
        let dir: String
        init(scraping target: String, port: Int, nativeHistograms: Bool = false) throws {
            dir = NSTemporaryDirectory() + "hoptrace-prom-\(getpid())-\(port)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try """
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: hoptrace
                static_configs:
                  - targets: ['\(target)']
            """.write(toFile: dir + "/prometheus.yml", atomically: true, encoding: .utf8)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
            p.arguments = ["--config.file=\(dir)/prometheus.yml", "--storage.tsdb.path=\(dir)/data",
                           "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"]
                + (nativeHistograms ? ["--enable-feature=native-histograms"] : [])
            p.standardOutput = FileHandle.nullDevice
            p.standardError = FileHandle.nullDevice
            try p.run()
            process = p
            self.port = port
        }

        func stop() {
            if process.isRunning {
                process.terminate()
                process.waitUntilExit()
            }
            try? FileManager.default.removeItem(atPath: dir)
        }

        /// An instant query: each result's labels and value.
        func query(_ q: String) throws -> [(labels: [String: String], value: Double)] {
            var c = URLComponents(string: "http://127.0.0.1:\(port)/api/v1/query")!
            c.queryItems = [URLQueryItem(name: "query", value: q)]
            let body = try Command.run(["curl", "-s", "-m", "5", c.url!.absoluteString])
            guard let json = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any],
                  let data = json["data"] as? [String: Any], let result = data["result"] as? [[String: Any]] else {
                throw TestFailure(description: "prometheus answered \(body)")
            }
            return result.compactMap { r in
                guard let m = r["metric"] as? [String: String], let v = r["value"] as? [Any], v.count == 2,
                      let s = v[1] as? String, let d = Double(s) else { return nil }
                return (m, d)
            }
        }
    }

    func requirePrometheus() throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/prometheus") else {
            try notRun("no /usr/bin/prometheus (Debian's prometheus package; 'make deps' installs it)")
        }
    }

    /// The agent follows the lab as it changes and Prometheus sees what it sees: per
    /// hop, Prometheus's p99 from the buckets is within one bucket (a factor of 2) of
    /// the agent's own p99; a namespace added after start shows up; one deleted
    /// disappears within two scrapes. Triggers write incidents `report` reads; bad
    /// requests get 4xx; SIGTERM exits 0 within 2 s and leaves nothing attached.
    func testPrometheusScrapesTheAgentAsTheNodeChanges() throws {
        try requirePrometheus()
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let port = freePort(), promPort = freePort()
        let incidents = NSTemporaryDirectory() + "hoptrace-incidents-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: incidents) }
        let agent = try Agent(port: port, ["--window", "500ms", "--cpu-budget", "100%", "--incidents", incidents, "--before", "2s",
                                          "--max-incident", "1s", "--cooldown", "0s"])
        var stopped: (status: Int32, seconds: Double)?
        defer { if stopped == nil { _ = agent.stop() } }
        XCTAssertTrue(ready(port, devices: 4), "the agent never attached the lab")
        let prom = try Prometheus(scraping: "127.0.0.1:\(port)", port: promPort)
        defer { prom.stop() }
        XCTAssertTrue(eventually(30) { (try? prom.query("up{job=\"hoptrace\"}"))?.first?.value == 1 }, "prometheus never scraped the agent")

        // traffic for a few seconds, scraped throughout
        let c0 = lab.containers[0], c1 = lab.containers[1]
        _ = try Traffic.udp(client: c0.netnsPath, server: c1.netnsPath, serverAddress: c1.address, port: 9600, count: 20_000, intervalUs: 200)
        sleep(3) // two more scrapes after the last packet
        let report = try JSONSerialization.jsonObject(with: Data(try http("http://127.0.0.1:\(port)/report").body.utf8)) as? [String: Any]
        let hops = try XCTUnwrap(report?["hops"] as? [[String: Any]])
        func label(_ end: Any?) -> String {
            let e = end as? [String: Any] ?? [:]
            return "\(e["netns_name"] ?? "")/\(e["device"] ?? "")"
        }
        // the report says what share of the time it holds (here all of it: a 100 % budget)
        XCTAssertEqual((report?["tracer_cost"] as? [String: Any])?["tracing_share"] as? Double, 1)
        let fromC0 = hops.filter { label($0["from"]).hasPrefix(c0.netns + "/") && ($0["packets"] as? Int ?? 0) > 1000 }
        XCTAssertFalse(fromC0.isEmpty, "no busy hop from \(c0.netns) in /report: \(hops.map { label($0["from"]) })")
        let promP99 = try prom.query("histogram_quantile(0.99, sum by (le, from, to) (rate(hoptrace_hop_latency_seconds_bucket[30s])))")
        for hop in fromC0 {
            let from = label(hop["from"]), to = label(hop["to"])
            let own = Double(((hop["total"] as? [String: Any])?["p99_ns"] as? Int) ?? 0) / 1e9
            let theirs = try XCTUnwrap(promP99.first { $0.labels["from"] == from && $0.labels["to"] == to }?.value,
                                       "no p99 from prometheus for \(from) -> \(to): \(promP99.map(\.labels))")
            XCTAssertGreaterThan(own, 0)
            XCTAssertLessThanOrEqual(abs(log2(theirs / own)), 1, "\(from) -> \(to): prometheus p99 \(theirs) s, hoptrace \(own) s")
        }

        // a namespace made after start: its veth is attached, its hop scraped
        func devicesNow() -> Int { devicesAttached(port) ?? -1 }
        let devicesBefore = devicesNow()
        let late = "ht-\(getpid())-late"
        try Command.run(["ip", "netns", "add", late])
        defer { _ = try? Command.run(["ip", "netns", "del", late]) }
        let madeAt = Date()
        try Command.run(["ip", "-n", lab.hub, "link", "add", "vlate", "type", "veth", "peer", "name", "eth0", "netns", late])
        try Command.run(["ip", "-n", lab.hub, "link", "set", "vlate", "master", "br0", "up"])
        let lateAddress = c1.address.split(separator: ".").dropLast().joined(separator: ".") + ".99"
        try Command.run(["ip", "-n", late, "addr", "add", "\(lateAddress)/24", "dev", "eth0"])
        try Command.run(["ip", "-n", late, "link", "set", "eth0", "up"])
        XCTAssertTrue(eventually(5) { devicesNow() == devicesBefore + 2 },
                      "the new veth pair was not attached: \(devicesBefore) devices before, \(devicesNow()) now")
        let attachedIn = Date().timeIntervalSince(madeAt)
        XCTAssertLessThan(attachedIn, 1.5, "attached after \(attachedIn) s")
        _ = try Traffic.udp(client: c0.netnsPath, server: "/run/netns/\(late)", serverAddress: lateAddress, port: 9601, count: 500, intervalUs: 200)
        XCTAssertTrue(try eventually(10) { !(try prom.query("hoptrace_hop_packets_total{to=\"\(late)/eth0\"}")).isEmpty },
                      "prometheus never saw the hop into \(late)")
        // ... and deleted: its series disappear within two scrapes (and a window)
        try Command.run(["ip", "netns", "del", late])
        let deletedAt = Date()
        XCTAssertTrue(try eventually(10) { (try prom.query("hoptrace_hop_packets_total{to=\"\(late)/eth0\"}")).isEmpty },
                      "the hop into \(late) is still scraped")
        XCTAssertLessThan(Date().timeIntervalSince(deletedAt), 3.5, "gone from prometheus only after \(Date().timeIntervalSince(deletedAt)) s")

        // incidents: POST /trigger from loopback writes one that report reads
        XCTAssertEqual(try http("http://127.0.0.1:\(port)/trigger", method: "POST").status, 202)
        XCTAssertTrue(eventually(10) {
            (try? FileManager.default.contentsOfDirectory(atPath: incidents))?.contains { $0.hasSuffix("-http.hoptrace") } ?? false
        }, "no incident file")
        XCTAssertTrue(try eventually(5) { try http("http://127.0.0.1:\(port)/incidents").body.contains("-http.hoptrace") })
        XCTAssertTrue(try eventually(10) { (try prom.query("hoptrace_incidents_total{trigger=\"http\"}")).first?.value == 1 })

        // bad requests
        XCTAssertEqual(try http("http://127.0.0.1:\(port)/nope").status, 404)
        XCTAssertEqual(try http("http://127.0.0.1:\(port)/metrics", method: "POST").status, 405)
        XCTAssertEqual(try http("http://127.0.0.1:\(port)/metrics", headers: ["X-Big: " + String(repeating: "a", count: 10_000)]).status, 431)
        XCTAssertTrue(try http("http://127.0.0.1:\(port)/metrics", headers: ["Accept: application/openmetrics-text;version=1.0.0"]).body
            .trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix("# EOF"))

        // SIGTERM: the incident in writing finished, exit 0 within 2 s, nothing left
        stopped = agent.stop()
        XCTAssertEqual(stopped?.status, 0)
        XCTAssertLessThan(stopped?.seconds ?? 99, 2)
        XCTAssertEqual(try hoptraceProgramsLeft(), [])
        let file = try XCTUnwrap(try FileManager.default.contentsOfDirectory(atPath: incidents).first { $0.hasSuffix("-http.hoptrace") })
        let read = try runHoptrace(["report", incidents + "/" + file])
        XCTAssertEqual(read.status, 0, read.stderr)
        XCTAssertTrue(read.stdout.contains("HOP "), read.stdout)
    }

    /// With --native-histograms, a Prometheus that scrapes native histograms gets
    /// them (protobuf) and answers quantiles from them, finer than the classic
    /// buckets: within a factor of 1.41 of hoptrace's own p99 (the classic ones are
    /// held to a factor of 2; schema 3 buckets are 9 % wide, and the p99 of a few
    /// thousand packets sits in a sparse tail).
    func testNativeHistogramsReachPrometheus() throws {
        try requirePrometheus()
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let port = freePort(), promPort = freePort()
        let agent = try Agent(port: port, ["--window", "500ms", "--cpu-budget", "100%", "--native-histograms"])
        defer { _ = agent.stop() }
        XCTAssertTrue(ready(port, devices: 4), "the agent never attached the lab")
        let prom = try Prometheus(scraping: "127.0.0.1:\(port)", port: promPort, nativeHistograms: true)
        defer { prom.stop() }
        XCTAssertTrue(eventually(30) { (try? prom.query("up{job=\"hoptrace\"}"))?.first?.value == 1 }, "prometheus never scraped the agent")
        let c0 = lab.containers[0], c1 = lab.containers[1]
        _ = try Traffic.udp(client: c0.netnsPath, server: c1.netnsPath, serverAddress: c1.address, port: 9604, count: 10_000, intervalUs: 200)
        sleep(3)
        let report = try JSONSerialization.jsonObject(with: Data(try http("http://127.0.0.1:\(port)/report").body.utf8)) as? [String: Any]
        let hops = try XCTUnwrap(report?["hops"] as? [[String: Any]])
        func label(_ end: Any?) -> String {
            let e = end as? [String: Any] ?? [:]
            return "\(e["netns_name"] ?? "")/\(e["device"] ?? "")"
        }
        let busy = hops.filter { label($0["from"]).hasPrefix(c0.netns + "/") && ($0["packets"] as? Int ?? 0) > 1000 }
        XCTAssertFalse(busy.isEmpty)
        // a native histogram is queried by its name, without _bucket
        let native = try prom.query("histogram_quantile(0.99, sum by (from, to) (rate(hoptrace_hop_latency_seconds[30s])))")
        for hop in busy {
            let from = label(hop["from"]), to = label(hop["to"])
            let own = Double(((hop["total"] as? [String: Any])?["p99_ns"] as? Int) ?? 0) / 1e9
            let theirs = try XCTUnwrap(native.first { $0.labels["from"] == from && $0.labels["to"] == to }?.value,
                                       "no native p99 for \(from) -> \(to): \(native.map(\.labels))")
            print("ServeTests: native p99 \(from) -> \(to): prometheus \(theirs) s, hoptrace \(own) s")
            XCTAssertLessThanOrEqual(abs(log2(theirs / own)), 0.5, "\(from) -> \(to): prometheus \(theirs) s, hoptrace \(own) s")
        }
    }

    /// However the agent ends (SIGINT, SIGKILL), nothing of it stays attached.
    func testNothingStaysAttachedAfterSIGINTOrSIGKILL() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        for signal in [SIGINT, SIGKILL] {
            let port = freePort()
            let agent = try Agent(port: port, ["--window", "500ms"])
            XCTAssertTrue(ready(port, devices: 4), "the agent never attached the lab")
            XCTAssertFalse(try attachedHoptracePrograms().isEmpty)
            kill(agent.process.processIdentifier, signal)
            agent.process.waitUntilExit()
            XCTAssertEqual(agent.process.terminationStatus, signal == SIGINT ? 0 : SIGKILL, "signal \(signal)")
            XCTAssertEqual(try hoptraceProgramsLeft(), [], "after signal \(signal)")
        }
    }

    /// Started with exactly the DaemonSet's capabilities (inheritable, ambient and
    /// bounding sets, as a container runtime sets them), the agent traces a lab, and
    /// after start holds no more than them, with no_new_privs.
    func testRunsWithTheDaemonSetsCapabilities() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        // the DaemonSet's set, less what this machine's root lacks (a container's
        // root may not have CAP_SYS_RESOURCE: it is only for the locked-memory limit
        // of kernels before 5.11, and setpriv cannot grant what it does not hold)
        let daemonSet: [(name: String, bit: UInt64)] = [("bpf", 39), ("perfmon", 38), ("net_admin", 12), ("sys_admin", 21),
                                                        ("sys_ptrace", 19), ("dac_read_search", 2), ("sys_resource", 24)]
        let own = try String(contentsOfFile: "/proc/self/status", encoding: .utf8).split(separator: "\n")
            .first { $0.hasPrefix("CapBnd:") }.flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) } ?? 0
        let missing = daemonSet.filter { own & (1 << $0.bit) == 0 }.map(\.name)
        if !missing.isEmpty { print("ServeTests: this machine's root lacks \(missing); started without them") }
        let caps = daemonSet.filter { own & (1 << $0.bit) != 0 }.map { "+" + $0.name }.joined(separator: ",")
        let port = freePort()
        let agent = try Agent(port: port, ["--window", "500ms", "--cpu-budget", "100%"],
                              prefix: ["setpriv", "--inh-caps=-all,\(caps)", "--ambient-caps=-all,\(caps)", "--bounding-set=-all,\(caps)"])
        defer { _ = agent.stop() }
        XCTAssertTrue(ready(port, devices: 4), "the agent never attached the lab")
        let c0 = lab.containers[0], c1 = lab.containers[1]
        _ = try Traffic.udp(client: c0.netnsPath, server: c1.netnsPath, serverAddress: c1.address, port: 9602, count: 2000, intervalUs: 100)
        XCTAssertTrue(try eventually(5) {
            let m = try http("http://127.0.0.1:\(port)/metrics").body
            return m.split(separator: "\n").contains { $0.hasPrefix("hoptrace_hop_packets_total{from=\"\(c0.netns)/eth0\"") && !$0.hasSuffix(" 0") }
        }, "no hop from \(c0.netns) in the metrics")
        // the agent's process is setpriv's child (exec'd: the same pid); capabilities
        // are per thread, so every thread of it is looked at (the HTTP server's too)
        let pid = agent.process.processIdentifier
        let tasks = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")
        XCTAssertGreaterThan(tasks.count, 2, "the drain and HTTP threads")
        let allowed: UInt64 = [2, 12, 19, 21, 24, 38, 39].reduce(0) { $0 | (1 << $1) }
        for task in tasks {
            let status = try String(contentsOfFile: "/proc/\(pid)/task/\(task)/status", encoding: .utf8)
            func field(_ name: String) -> String {
                status.split(separator: "\n").first { $0.hasPrefix(name + ":") }.map { String($0.split(separator: "\t").last ?? "") } ?? ""
            }
            let effective = UInt64(field("CapEff"), radix: 16) ?? .max
            XCTAssertEqual(effective & ~allowed, 0, "thread \(task) (\(field("Name"))): CapEff \(field("CapEff")) holds more than the DaemonSet's set")
            XCTAssertEqual(UInt64(field("CapInh"), radix: 16), 0, "thread \(task)")
            XCTAssertEqual(UInt64(field("CapAmb"), radix: 16), 0, "thread \(task)")
            XCTAssertEqual(field("NoNewPrivs"), "1", "thread \(task)")
        }
        let s = agent.stop()
        XCTAssertEqual(s.status, 0)
        XCTAssertEqual(try hoptraceProgramsLeft(), [])
    }

    /// A flood the budget cannot pay for continuously: the agent pauses its hooks
    /// for most of each period (the tracepoints detached), the cost measured over
    /// whole periods stays near the budget, the active ratio says so; an incident
    /// request traces continuously again.
    func testBudgetPausesTracingAndStaysWithinIt() throws {
        let lab = try Lab(containers: 2)
        defer { lab.teardown() }
        let port = freePort()
        // the default budget, 2 % of the node; 5 s periods (10 s by default) to keep the test short
        let budgetPercent = 2.0, period = 5.0
        let agent = try Agent(port: port, ["--window", "500ms", "--budget-period", "5s"])
        defer { _ = agent.stop() }
        XCTAssertTrue(ready(port, devices: 4), "the agent never attached the lab")
        let c0 = lab.containers[0], c1 = lab.containers[1]
        func metric(_ name: String) throws -> Double {
            let lines = try http("http://127.0.0.1:\(port)/metrics").body.split(separator: "\n")
            return lines.first { $0.hasPrefix(name + " ") }.flatMap { Double($0.split(separator: " ").last ?? "") } ?? -1
        }
        func processCPU() throws -> Double {
            let stat = try String(contentsOfFile: "/proc/\(agent.process.processIdentifier)/stat", encoding: .utf8)
            let fields = stat[stat.range(of: ") ")!.upperBound...].split(separator: " ")
            return (Double(fields[11])! + Double(fields[12])!) / Double(sysconf(Int32(_SC_CLK_TCK)))
        }
        let floodDone = DispatchSemaphore(value: 0)
        Thread {
            _ = try? Traffic.tcpBulk(client: c0.netnsPath, server: c1.netnsPath, serverAddress: c1.address, port: 9603, seconds: 30)
            floodDone.signal()
        }.start()
        defer { floodDone.wait() } // before the lab goes
        // the first period traces all of it (the measure the next is sized from), the
        // second settles; measure three whole periods from there
        usleep(UInt32(2 * period * 1e6))
        let bpf0 = try metric("hoptrace_bpf_run_seconds_total"), cpu0 = try processCPU(), t0 = Date()
        var sawPaused = false
        while Date().timeIntervalSince(t0) < 3 * period {
            if !sawPaused { sawPaused = !(try attachedHoptracePrograms()).contains("ht_netif_receive_skb") }
            usleep(200_000)
        }
        let bpf1 = try metric("hoptrace_bpf_run_seconds_total"), cpu1 = try processCPU()
        let seconds = Date().timeIntervalSince(t0)
        let cpus = Double(ProcessInfo.processInfo.activeProcessorCount)
        let costPercent = 100 * ((bpf1 - bpf0) + (cpu1 - cpu0)) / seconds / cpus
        let ratio = try metric("hoptrace_tracing_active_ratio")
        print("ServeTests: budget \(budgetPercent) %: measured cost \(String(format: "%.2f", costPercent)) % of the node over "
              + "\(String(format: "%.1f", seconds)) s (BPF \(String(format: "%.3f", bpf1 - bpf0)) s, process \(String(format: "%.3f", cpu1 - cpu0)) s); "
              + "active ratio \(ratio)")
        XCTAssertTrue(sawPaused, "the tracepoints were never detached")
        XCTAssertLessThan(ratio, 1)
        XCTAssertGreaterThan(ratio, 0)
        // whole periods hold the budget; a tolerance for the partial ones measured
        XCTAssertLessThan(costPercent, budgetPercent * 1.5, "cost \(costPercent) % of the node against a budget of \(budgetPercent) %")
        XCTAssertEqual(try http("http://127.0.0.1:\(port)/trigger", method: "POST").status, 202)
        XCTAssertTrue(try eventually(3) { try attachedHoptracePrograms().contains("ht_netif_receive_skb") },
                      "an incident did not trace continuously")
        XCTAssertEqual(agent.stop().status, 0)
    }
}
