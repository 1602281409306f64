import Foundation
import HoptraceCore
import HoptraceNode
import HoptraceLab

/// The CPU-bound per-packet cost of observing (`--pinned-only`): 64-byte UDP from
/// container a to container b through the hub bridge, with the sender, the NET_RX
/// softirq and the receiver on one CPU (bench/udp_pps.c), so every nanosecond an
/// observer adds to a packet's path is a nanosecond less for sending the next one.
///
/// The headline divides the packets by the CPU time the sender and receiver threads
/// used (the softirq runs in the sender's context, so it is in it), not by the wall
/// time: on this shared machine other work takes anywhere from 0 to half of the
/// pinned CPU, which moves packets per wall second by up to 2x from one untraced run
/// to the next, while packets per CPU second stay within about 5 %. Both are reported.
final class PinnedBench {
    let lab: Lab
    /// Where `make bench` puts udp_pps, bare_tc and bare_tc.bpf.o.
    let tools: String
    /// The real `hoptrace` binary, run as a user would run it.
    let hoptrace: String
    let rounds: Int
    let seconds: Double
    let warmup = 0.5
    let port = 7201
    /// The measured CPU: not CPU 0 when there is another (the one more interrupts
    /// and housekeeping land on); observers' own threads go to the others.
    let cpu: Int
    let observerCPUs: String?
    /// Seconds left to wait for other tracers to go (see `undisturbed`).
    var patience = 120.0

    init(lab: Lab, tools: String, hoptrace: String, rounds: Int, seconds: Double) {
        self.lab = lab
        self.tools = tools
        self.hoptrace = hoptrace
        self.rounds = rounds
        self.seconds = seconds
        let cpus = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        cpu = cpus > 1 ? 1 : 0
        observerCPUs = cpus > 1 ? (0..<cpus).filter { $0 != 1 }.map(String.init).joined(separator: ",") : nil
    }

    /// One run of udp_pps: what the receiver read in the timed window, and the CPU
    /// time its two threads used in it (the softirq included: it runs in the
    /// sender's context), so a share of the CPU taken by other work on this shared
    /// machine can be told apart from a slower path.
    struct Rate {
        var sent: UInt64, received: UInt64, seconds: Double, cpuSeconds: Double
        /// The whole run, warm-up and drain included: what bpf_stats counts over.
        var totalReceived: UInt64
        var pps: Double { Double(received) / seconds }
        var nsPerPacket: Double { seconds * 1e9 / Double(received) }
        var cpuPps: Double { Double(received) / cpuSeconds }
        var cpuNsPerPacket: Double { cpuSeconds * 1e9 / Double(received) }
        /// The share of the pinned CPU the measurement had (the rest went to other work).
        var cpuShare: Double { cpuSeconds / seconds }
        /// Someone else's tracepoint programs were attached around it (see `run`).
        var disturbed = false
    }

    struct NoTraffic: Error, CustomStringConvertible {
        var description: String
    }

    func measure() throws -> Rate {
        let a = lab.containers[0], b = lab.containers[1]
        let out = try Command.run(["taskset", "-c", String(cpu), "\(tools)/udp_pps", a.netnsPath, b.netnsPath, b.address,
                                   String(port), String(warmup), String(seconds)])
        let f = out.split(separator: " ").map { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0 }
        guard f.count == 6, f[1] > 0 else { throw NoTraffic(description: "udp_pps: nothing received: '\(out)'") }
        let rate = Rate(sent: UInt64(f[0]), received: UInt64(f[1]), seconds: f[2], cpuSeconds: f[3], totalReceived: UInt64(f[5]))
        // the sender stays at most 256 datagrams ahead: anything more is a drop
        if Double(rate.sent) > Double(rate.received) * 1.03 || Double(rate.received) > Double(rate.sent) * 1.03 {
            say("pinned: sent \(rate.sent) but received \(rate.received) in the window")
        }
        return rate
    }

    /// An observer, or none (untraced): its name and how to start it.
    struct Variant {
        var name: String
        /// Its key in the results JSON.
        var key: String
        /// `hoptrace trace`: its report is checked after the run.
        var isHoptrace = false
        var start: (() throws -> Observer?)?
    }

    /// `hoptrace trace` on both veth pairs of the lab (selecting the hub's ends
    /// selects their peers in a and b), with `extra` options.
    func hoptraceArguments(_ extra: [String]) -> [String] {
        [hoptrace, "trace", "--netns", lab.hub, "--iface", lab.containers[0].hubDevice,
         "--iface", lab.containers[1].hubDevice, "--duration", "1h", "--json"] + extra
    }

    func hoptraceVariant(_ name: String, _ key: String, _ extra: [String]) -> Variant {
        Variant(name: name, key: key, isHoptrace: true) { [self] in
            try startObserver(hoptraceArguments(extra), ready: "hoptrace: tracing", readyOnStderr: true, cpus: observerCPUs)
        }
    }

    let untracedRun = Variant(name: "untraced", key: "untraced", start: nil)

    /// What is measured against untraced runs.
    var observers: [Variant] {
        let devices = lab.containers.flatMap { [$0.netnsPath, "eth0", lab.hubPath, $0.hubDevice] }
        return [
            hoptraceVariant("trace", "trace", []),
            hoptraceVariant("trace --sample 100", "trace_sample_100", ["--sample", "100"]),
            hoptraceVariant("trace --softirq off", "trace_softirq_off", ["--softirq", "off"]),
            // the agent at its default budget (2 % of the node); periods of 2 s (10 s by
            // default) so that each measurement holds whole ones
            Variant(name: "serve (2 % budget)", key: "serve") { [self] in
                let o = try startObserver([hoptrace, "serve", "--listen", "127.0.0.1:0", "--budget-period", "2s"],
                                          ready: "devices attached in", readyOnStderr: true, cpus: observerCPUs)
                // the budget's first period traces a quarter of itself before anything is
                // measured: the agent's steady state is three periods on, with this traffic
                if o != nil { usleep(6_000_000) }
                return o
            },
            Variant(name: "bpftrace peer.bt", key: "bpftrace_peer") { [self] in try startBpftrace("bench/peer.bt", cpus: observerCPUs) },
            Variant(name: "bare tc", key: "bare_tc") { [self] in
                try startObserver(["\(tools)/bare_tc", "\(tools)/bare_tc.bpf.o"] + devices, ready: "attached", cpus: observerCPUs)
            },
        ]
    }

    struct ObserverFailed: Error, CustomStringConvertible {
        var description: String
    }

    /// One measurement under `variant`: attach, settle, measure (`measuring`, given
    /// the observer), detach.
    func run(_ variant: Variant, measuring: ((Observer?) throws -> Rate)? = nil) throws -> Rate {
        var observer: Observer?
        if let start = variant.start {
            guard let o = try start() else { throw ObserverFailed(description: "\(variant.name) did not start") }
            observer = o
        }
        // the kernel's work after attaching, and after the last variant's detach
        // (programs and maps freed in deferred work), must not land in the window
        usleep(500_000)
        var rate: Rate
        do {
            rate = try undisturbed(observer, variant.name) { try measuring?(observer) ?? measure() }
        } catch {
            observer?.stop()
            throw error
        }
        if let observer, variant.isHoptrace {
            try checkTraced(observer, variant.name)
        } else {
            observer?.stop()
        }
        return rate
    }

    /// Runs `measure` while no one else's tracepoint programs are attached: another
    /// engineer's hoptrace tests on this machine attach a dozen, which every packet
    /// then pays for (about 1.5 us here), in whichever variant happens to be running.
    /// Waits for them to go, measures, and measures again (three tries) when some
    /// were attached by the end; what stays disturbed is marked. All the waits of a
    /// bench together are bounded (`patience`): tests that never stop must not make
    /// it endless.
    func undisturbed(_ observer: Observer?, _ name: String, _ measure: () throws -> Rate) throws -> Rate {
        let ours = observer.map { programIDs(heldBy: $0.process.processIdentifier) } ?? []
        var rate: Rate?
        for _ in 0..<3 {
            let start = nowSeconds()
            var others = try otherTracepointPrograms(besides: ours)
            while !others.isEmpty, nowSeconds() - start < patience {
                usleep(500_000)
                others = try otherTracepointPrograms(besides: ours)
            }
            patience -= nowSeconds() - start
            rate = try measure()
            others += try otherTracepointPrograms(besides: ours)
            if others.isEmpty { return rate! }
            rate!.disturbed = true
            say("pinned: \(name): other programs on \(Set(others).sorted().prefix(4).joined(separator: ", ")) were attached")
            if patience <= 0 { break }
        }
        return rate!
    }

    /// A hoptrace run that followed nothing measured nothing; one that hooked fewer
    /// than the lab's four veth ends measured less than it should.
    func checkTraced(_ observer: Observer, _ name: String) throws {
        if let n = observer.banner.firstMatch(of: /tracing (\d+) devices/)?.1, n != "4" {
            say("pinned: hoptrace \(name) traced \(n) of the lab's 4 veth ends (a peer it could not match is left out)")
        }
        let report = observer.stop()
        let json = try? JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any]
        guard let records = json?["records"] as? Int, records > 0 else {
            throw ObserverFailed(description: "hoptrace \(name) recorded nothing: \(report.prefix(300))")
        }
        if let lost = json?["lost_events"] as? Int, lost > 0 { say("pinned: hoptrace \(name) lost \(lost) records") }
    }

    /// An observer's run with the untraced runs just before and after it: drift on
    /// this machine is slow next to a run (seconds) but not next to a round (a minute).
    struct Paired {
        var observed: Rate, before: Rate, after: Rate

        /// `perPacket` of the observed run minus the mean of the untraced ones.
        func added(_ perPacket: (Rate) -> Double) -> Double {
            perPacket(observed) - (perPacket(before) + perPacket(after)) / 2
        }

        /// Packets per second observed / untraced, from the time per packet.
        func ratio(_ perPacket: (Rate) -> Double) -> Double {
            (perPacket(before) + perPacket(after)) / 2 / perPacket(observed)
        }
    }

    /// Per round: an untraced run, then each observer once followed by an untraced
    /// run, the observers in an order that rotates from round to round.
    func rates() throws -> (untraced: [Rate], observers: [(Variant, [Paired])]) {
        let observers = self.observers
        var untraced: [Rate] = [], paired = [[Paired]](repeating: [], count: observers.count)
        for round in 0..<rounds {
            var last = try run(untracedRun)
            untraced.append(last)
            let r = try rotated(round, observers.map { v in { [self] in
                let observed = try run(v), before = last
                last = try run(untracedRun)
                untraced.append(last)
                return Paired(observed: observed, before: before, after: last)
            } })
            for (i, p) in r.enumerated() { paired[i].append(p) }
            say("pinned: round \(round + 1) of \(rounds), CPU ns added per packet: " + zip(observers, r).map {
                "\($0.0.name) \(String(format: "%+.0f", $0.1.added(\.cpuNsPerPacket)))"
            }.joined(separator: ", "))
        }
        return (untraced, Array(zip(observers, paired)))
    }

    /// One hoptrace program's share of a packet: how often it runs and what a run costs.
    struct ProgramCost {
        var name: String
        var runsPerPacket: Double
        var nsPerRun: Double
        var nsPerPacket: Double { runsPerPacket * nsPerRun }
    }

    /// `hoptrace trace --bpf-stats` over one udp_pps run: run_cnt and run_time_ns
    /// deltas of its programs (by id: another hoptrace on the node has the same
    /// names) divided by the datagrams received. Tracepoints fire for every packet
    /// of the node, so other traffic meanwhile counts too.
    func programCosts(_ variant: Variant? = nil) throws -> (packets: UInt64, programs: [ProgramCost]) {
        var before: [Int: LoadedProgram] = [:], after: [LoadedProgram] = []
        let rate = try run(variant ?? hoptraceVariant("trace --bpf-stats", "", ["--bpf-stats"])) { [self] observer in
            let ours = programIDs(heldBy: observer!.process.processIdentifier)
            before = Dictionary(uniqueKeysWithValues: try loadedPrograms().filter { ours.contains($0.id) }.map { ($0.id, $0) })
            let rate = try measure()
            after = try loadedPrograms().filter { ours.contains($0.id) }
            return rate
        }
        let packets = Double(rate.totalReceived)
        var costs: [ProgramCost] = []
        for p in after {
            guard let b = before[p.id], p.runs > b.runs else { continue }
            let runs = Double(p.runs - b.runs)
            costs.append(ProgramCost(name: p.name, runsPerPacket: runs / packets, nsPerRun: Double(p.runTimeNs - b.runTimeNs) / runs))
        }
        return (rate.totalReceived, costs.sorted { $0.nsPerPacket > $1.nsPerPacket })
    }

    /// Runs it all, prints the tables, returns the figures for the results JSON.
    func results() throws -> [String: Any] {
        say("pinned: 64-byte UDP a -> b, sender + softirq + receiver on CPU \(cpu), observers on CPUs \(observerCPUs ?? "-"), "
            + "\(rounds) rounds of \(observers.count) observers, each between untraced runs, \(seconds) s after \(warmup) s of warm-up")
        let (untraced, observed) = try rates()
        var figures: [String: Any] = [:]
        var rows = [["variant", "packets/CPU-s", "[min..max]", "vs untraced", "ns added/packet", "[min..max]", "best runs",
                     "packets/s", "wall ns added", "CPU share", "disturbed"]]
        let best = untraced.map(\.cpuNsPerPacket).min()!
        func describe(_ variant: Variant, _ rates: [Rate], _ paired: [Paired]?) {
            let cpuPps = Spread(rates.map(\.cpuPps)), pps = Spread(rates.map(\.pps)), share = median(rates.map(\.cpuShare))
            let disturbed = rates.filter(\.disturbed).count
            var f: [String: Any] = ["packets_per_cpu_second": cpuPps.json, "packets_per_second": pps.json,
                                    "cpu_share": (share * 100).rounded() / 100, "disturbed_runs": disturbed]
            var row = [variant.name, cpuPps.text("%.0f"), cpuPps.range("%.0f"), "1", "-", "", "-", pps.text("%.0f"), "-",
                       String(format: "%.2f", share), "\(disturbed)"]
            if let paired {
                let ratio = median(paired.map { $0.ratio(\.cpuNsPerPacket) }), added = Spread(paired.map { $0.added(\.cpuNsPerPacket) })
                let wallRatio = median(paired.map { $0.ratio(\.nsPerPacket) }), wallAdded = median(paired.map { $0.added(\.nsPerPacket) })
                // interference only ever slows a run down: the fastest runs are the least disturbed
                let bestAdded = rates.map(\.cpuNsPerPacket).min()! - best
                f["vs_untraced"] = (ratio * 1000).rounded() / 1000
                f["ns_added_per_packet"] = added.json
                f["ns_added_per_packet_best_runs"] = bestAdded.rounded()
                f["wall_vs_untraced"] = (wallRatio * 1000).rounded() / 1000
                f["wall_ns_added_per_packet"] = wallAdded.rounded()
                row[3...6] = [String(format: "%.3f", ratio), added.text("%+.0f"), added.range("%+.0f"), String(format: "%+.0f", bestAdded)]
                row[8] = String(format: "%+.0f", wallAdded)
            }
            figures[variant.key] = f
            rows.append(row)
        }
        describe(untracedRun, untraced, nil)
        for (variant, paired) in observed { describe(variant, paired.map(\.observed), paired) }
        printTable(rows)

        say("pinned: hoptrace trace --bpf-stats, one run: runs per packet and ns per run of each program")
        let (packets, costs) = try programCosts()
        var programRows = [["program", "runs/packet", "ns/run", "ns/packet"]]
        var programs: [String: Any] = [:]
        for c in costs {
            programRows.append([c.name, String(format: "%.2f", c.runsPerPacket), String(format: "%.0f", c.nsPerRun),
                                String(format: "%.0f", c.nsPerPacket)])
            programs[c.name] = ["runs_per_packet": (c.runsPerPacket * 100).rounded() / 100, "ns_per_run": c.nsPerRun.rounded()]
        }
        let runs = costs.reduce(0) { $0 + $1.runsPerPacket }, ns = costs.reduce(0) { $0 + $1.nsPerPacket }
        programRows.append(["all", String(format: "%.2f", runs), runs > 0 ? String(format: "%.0f", ns / runs) : "-",
                            String(format: "%.0f", ns)])
        printTable(programRows)

        // the agent's BPF time per packet over runs of its budget periods (it keeps
        // bpf_stats on itself): what its hooks cost the path, free of the noise that
        // packets per CPU-second carry on a shared machine
        var serveNs: [Double] = []
        for _ in 0..<3 {
            guard let serve = observers.first(where: { $0.key == "serve" }) else { break }
            serveNs.append(try programCosts(serve).programs.reduce(0) { $0 + $1.nsPerPacket })
        }
        let serveMedian = serveNs.isEmpty ? 0 : median(serveNs)
        say(String(format: "pinned: serve (2 %% budget): BPF time per packet %.0f ns (runs: %@) against trace's %.0f: %.3f of it",
                   serveMedian, serveNs.map { String(format: "%.0f", $0) }.joined(separator: ", "), ns, ns > 0 ? serveMedian / ns : 0))
        return ["cpu": cpu, "rounds": rounds, "seconds": seconds, "payload_bytes": 64, "variants": figures,
                "bpf_stats": ["packets": packets, "programs": programs, "runs_per_packet": (runs * 100).rounded() / 100,
                              "bpf_ns_per_packet": ns.rounded()],
                "serve_bpf_ns_per_packet": serveNs.map { $0.rounded() }]
    }
}

/// Median and range of a figure over the rounds.
struct Spread {
    var median: Double, min: Double, max: Double

    init(_ xs: [Double]) {
        median = hoptrace_bench.median(xs) // the function, not this property
        min = xs.min() ?? .nan
        max = xs.max() ?? .nan
    }

    var json: [String: Double] { ["median": median.rounded(), "min": min.rounded(), "max": max.rounded()] }
    func text(_ format: String) -> String { String(format: format, median) }
    func range(_ format: String) -> String { "[" + String(format: format, min) + ".." + String(format: format, max) + "]" }
}

/// Prints rows as left-aligned columns on stderr, with the progress lines.
func printTable(_ rows: [[String]]) {
    let widths = rows[0].indices.map { i in rows.map { $0[i].count }.max()! }
    for row in rows {
        let line = zip(row, widths).map { $0.padding(toLength: $1, withPad: " ", startingAt: 0) }.joined(separator: "  ")
        FileHandle.standardError.write(Data("  \(line.trimmingCharacters(in: .whitespaces))\n".utf8))
    }
}
