import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceLab
import HoptraceNode
import HoptraceTracer

struct Doctor: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check what this kernel supports and what hoptrace will use.",
        discussion: """
        Loads the BPF programs for real and attaches a tcx link in a scratch network
        namespace (removed again), so each 'ok' has been tried, not guessed.

        Example:
          sudo hoptrace doctor
        """
    )

    @Flag(help: "Print JSON.")
    var json = false

    struct Check: Codable {
        var name: String
        var status: String  // ok, missing, info
        var detail: String
    }

    func run() throws {
        var checks: [Check] = []
        func add(_ name: String, _ ok: Bool?, _ detail: String) {
            checks.append(Check(name: name, status: ok == nil ? "info" : (ok! ? "ok" : "missing"), detail: detail))
        }
        var uts = utsname()
        uname(&uts)
        let release = withUnsafeBytes(of: &uts.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        add("kernel", nil, release)

        let caps = Self.effectiveCapabilities()
        let hasCaps = geteuid() == 0 || (caps & (1 << 39) != 0 && caps & (1 << 38) != 0 && caps & (1 << 12) != 0)
        add("privileges", hasCaps, geteuid() == 0 ? "root" : "CapEff=\(String(caps, radix: 16)) (need CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN)")

        let btf = FileManager.default.fileExists(atPath: "/sys/kernel/btf/vmlinux")
        add("btf", btf, btf ? "/sys/kernel/btf/vmlinux (CO-RE and tp_btf)" : "no /sys/kernel/btf/vmlinux: kernel built without CONFIG_DEBUG_INFO_BTF")

        var rl = rlimit()
        getrlimit(__rlimit_resource_t(8), &rl) // RLIMIT_MEMLOCK (hidden by Glibc's module)
        add("memlock", nil, rl.rlim_cur == __rlim_t.max ? "unlimited" : "\(rl.rlim_cur / 1024) KiB (kernels since 5.11 charge BPF memory to the cgroup instead)")

        if hasCaps {
            do {
                let tracer = try Tracer()
                add("bpf load", true, "tp_btf programs, per-packet table, ring buffer, bpf_cast_to_kern_ctx verified")
                do {
                    try tracer.attachTracepoints()
                    add("tracepoints", true, "net_dev_queue, net_dev_start_xmit, netif_rx, napi_gro_receive_entry, netif_receive_skb, skb_copy_datagram_iovec, consume_skb, kfree_skb")
                } catch { add("tracepoints", false, error.description) }
                do {
                    try tracer.attachSoftirq()
                    add("softirq", true, "softirq_raise, softirq_entry, softirq_exit, napi_poll")
                } catch { add("softirq", false, error.description) }
                let reasons = DropReasons.running().names.count
                add("drop reasons", reasons > 0 ? true : nil, reasons > 0 ? "\(reasons) names of enum skb_drop_reason from BTF"
                    : "no enum skb_drop_reason in BTF: drops are reported by number")
                add("bpf_stats", (try? tracer.enableRunTimeStats()) != nil, "run time per program (tracer cost in reports)")
                tracer.close()
            } catch { add("bpf load", false, error.description) }
            checks.append(contentsOf: Self.probeAttach())
        }
        add("kprobes/fentry", nil, "not used: hoptrace needs only tracepoints and tcx")
        // discovery reads rtnetlink itself; only the demo's lab runs these
        for tool in ["ip", "tc"] {
            let found = (try? Command.run(["which", tool])) != nil
            add(tool, found ? true : nil, found ? "found (builds the demo's lab)" : "not found: 'hoptrace demo' needs iproute2; tracing does not")
        }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try enc.encode(checks), as: UTF8.self))
        } else {
            for c in checks {
                print("\(c.status.padding(toLength: 8, withPad: " ", startingAt: 0))\(c.name.padding(toLength: 16, withPad: " ", startingAt: 0))\(c.detail)")
            }
        }
        if checks.contains(where: { $0.status == "missing" }) { throw ExitCode(1) }
    }

    /// Attaches tcx (and clsact) in a scratch namespace to see which works here.
    static func probeAttach() -> [Check] {
        let ns = "\(Lab.prefix)\(getpid())-doctor"
        guard (try? Command.run(["ip", "netns", "add", ns])) != nil else {
            return [Check(name: "tcx", status: "missing", detail: "could not make a scratch namespace to try it in")]
        }
        defer { _ = try? Command.run(["ip", "netns", "del", ns]) }
        var out: [Check] = []
        for (mode, name, note) in [(TracerOptions.AttachMode.tcx, "tcx", "tcx links (die with the process); hoptrace will use these"),
                                   (.clsact, "clsact", "fallback for kernels without tcx (swept at the next start)")] {
            var o = TracerOptions()
            o.attachMode = mode
            do {
                let t = try Tracer(options: o)
                try t.attach(device: "lo", netnsPath: "/run/netns/\(ns)", label: "\(ns)/lo")
                t.close()
                out.append(Check(name: name, status: "ok", detail: note))
            } catch {
                out.append(Check(name: name, status: mode == .tcx ? "missing" : "info", detail: error.description))
            }
        }
        return out
    }

    static func effectiveCapabilities() -> UInt64 {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("CapEff:") {
            return UInt64(line.dropFirst(7).trimmingCharacters(in: .whitespaces), radix: 16) ?? 0
        }
        return 0
    }
}
