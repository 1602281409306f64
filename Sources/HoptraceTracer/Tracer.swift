import CHoptraceBPF
import Foundation
import HoptraceCore

/// A failure of the kernel side, with the message a user needs.
public struct TracerError: Error, CustomStringConvertible, Sendable {
    /// Negative errno from the C module.
    public let code: Int32
    /// The call that failed, as the C module named it.
    public let call: String
    /// What was being done, e.g. "attaching to web/eth0".
    public let context: String

    public init(code: Int32, call: String, context: String) {
        self.code = code
        self.call = call
        self.context = context
    }

    public var errnoName: String { String(cString: strerror(-code)) }

    public var description: String {
        let detail = "\(call): \(errnoName)"
        switch -code {
        case EPERM, EACCES:
            return "\(context): permission denied (\(detail)); run as root or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN"
        case ENODEV where call == "if_nametoindex":
            return "\(context): no such device (\(detail)); 'hoptrace list' shows the veth devices"
        case ENOENT where call == "open(netns)":
            return "\(context): no such network namespace (\(detail)); 'ip netns list' shows the names"
        case EINVAL where call.hasPrefix("bpf_link_create"):
            return "\(context): the kernel refused the tcx link (\(detail)); tcx needs Linux 6.6, try --attach clsact"
        default:
            return "\(context): \(detail)"
        }
    }
}

/// How to load and attach the BPF side: the one home of every default (the C
/// module assigns each knob as given).
public struct TracerOptions: Sendable, Equatable {
    /// Follow one packet in N (whole packets: chosen by a hash of their headers).
    public var sampleEvery: UInt32 = 1
    /// Hops faster than this are counted, not recorded.
    public var minLatencyNs: UInt64 = 0
    /// Packets the kernel follows at once (its per-packet table; rounded up to a power of two).
    public var maxPackets: UInt32 = 65_536
    /// Ring buffer budget, shared out into one ring per CPU (each a power of two of at
    /// least 1 MiB: a record per hop at the consumer's full rate fills that in 20 ms).
    public var ringBytes: UInt32 = 16 << 20
    /// Force a consumer wake-up once this much is waiting (at most a quarter of a
    /// CPU's ring); below it the consumer polls, so a busy ring costs no wake-up per record.
    public var wakeupBytes: UInt64 = 256 << 10
    /// Per-packet state untouched for longer is dead. Generous: a packet that waits
    /// a second in a starved backlog is the one a user looks for.
    public var maxStateAgeNs: UInt64 = 10_000_000_000
    public var attachMode: AttachMode = .auto
    /// Start hops on devices that are not traced too (the net_dev_queue tracepoint,
    /// which fires for every packet queued on the node). Needed when the selection
    /// leaves veths untraced that followed packets may be forwarded to; with every
    /// veth traced, their tcx egress programs start every hop, one hook less per hop.
    public var hopsFromUntracedDevices = true
    /// Attach net_dev_start_xmit, which ends the qdisc segment. Only packets on a
    /// device with a queue need it: one without (noqueue, veth's default) sends in
    /// the call that queued, and its tcx egress program stamps both. A trace
    /// session leaves it off while no traced device has a queue, and attaches it
    /// when one gets one (`TraceSession`).
    public var transmitHook = true
    /// Turn on the kernel's BPF run-time accounting so the report can state the
    /// tracer's cost. It adds two clock reads to every program run, so it is off
    /// unless asked for (and benchmarks of traffic overhead leave it off).
    public var runTimeStats = false
    /// Trace NET_RX/NET_TX softirqs and NAPI polls (cost per softirq run, none when off).
    public var softirq = true
    /// Benchmarks only: every program returns as soon as it is called, so the cost
    /// of the hooks themselves (tracepoint and tcx dispatch) can be measured apart
    /// from the work done in them. Nothing is traced.
    public var hooksOnly = false

    public enum AttachMode: Int32, Sendable, CaseIterable {
        case auto = 0, tcx = 1, clsact = 2
    }

    public init() {}

    /// Sets of the per-packet table: `maxPackets` rounded up to whole sets, a power of two.
    var packetSets: UInt32 {
        let ways = UInt32(HT_PKT_WAYS)
        var sets: UInt32 = 1
        while sets * ways < maxPackets && sets < 1 << 24 { sets <<= 1 }
        return sets
    }

    /// Each CPU's ring: the largest power of two that fits the budget, at least 1 MiB.
    func ringBytesPerCPU(cpus: Int) -> UInt32 {
        var per: UInt64 = 1 << 20
        while per * 2 * UInt64(max(cpus, 1)) <= UInt64(ringBytes) && per < 1 << 30 { per <<= 1 }
        return UInt32(per)
    }

    /// The tp_btf programs of packet tracing, in the order a packet meets them.
    var packetPrograms: [String] {
        (hopsFromUntracedDevices ? ["ht_net_dev_queue"] : []) + (transmitHook ? [Self.transmitProgram] : [])
            + ["ht_netif_rx", "ht_napi_gro_receive_entry", "ht_netif_receive_skb",
               "ht_skb_copy_datagram_iovec", "ht_consume_skb", "ht_kfree_skb"]
    }

    static let transmitProgram = "ht_net_dev_start_xmit"
    static let softirqPrograms = ["ht_softirq_raise", "ht_softirq_entry", "ht_softirq_exit", "ht_napi_poll"]

    /// The settings a recording states, as text.
    public var settings: [String: String] {
        ["sample_every": String(sampleEvery), "min_latency_ns": String(minLatencyNs), "max_packets": String(maxPackets),
         "attach": ["auto", "tcx", "clsact"][Int(attachMode.rawValue)], "softirq": softirq ? "on" : "off",
         "hops_from_untraced_devices": String(hopsFromUntracedDevices), "max_state_age_ns": String(maxStateAgeNs),
         "transmit_hook": String(transmitHook)]
    }
}

/// The loaded BPF object, its links and its ring buffer. Confines the C pointer:
/// use from one thread at a time (the drain thread, or the owner when it is stopped).
extension TracerOptions {
    /// Which packets are followed and recorded, as reports, recordings and the live view say it.
    public var sampling: Sampling { Sampling(every: sampleEvery, minLatencyNs: minLatencyNs) }
}

public final class Tracer: @unchecked Sendable {
    private var handle: OpaquePointer?
    public let options: TracerOptions
    /// Devices attached now, in attach order.
    public private(set) var attached: [Attachment] = []
    private var statsFD: Int32 = -1

    private static func check(_ rc: Int32, _ err: ht_error, _ context: String) throws(TracerError) {
        if rc < 0 {
            var e = err
            let call = withUnsafeBytes(of: &e.call) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            throw TracerError(code: err.code != 0 ? err.code : rc, call: call, context: context)
        }
    }

    /// Opens and loads the embedded BPF object (needs root).
    public init(options: TracerOptions = TracerOptions()) throws(TracerError) {
        self.options = options
        guard ht_record_size() == RecordLayout.size else {
            throw TracerError(code: -EPROTO, call: "ht_record_size",
                              context: "the embedded BPF object's record size \(ht_record_size()) differs from \(RecordLayout.size): rebuild with 'make bpf'")
        }
        let ring = options.ringBytesPerCPU(cpus: Int(ht_num_cpus()))
        var knobs = ht_knobs(sample_every: max(1, options.sampleEvery), packet_sets: options.packetSets,
                             min_latency_ns: options.minLatencyNs,
                             wakeup_bytes: max(1, min(options.wakeupBytes, UInt64(ring / 4))),
                             max_state_age_ns: options.maxStateAgeNs, ring_bytes_per_cpu: ring,
                             hooks_only: options.hooksOnly ? 1 : 0)
        var err = ht_error()
        var h: OpaquePointer?
        try Self.check(ht_open(&knobs, &h, &err), err, "loading the BPF programs")
        handle = h
    }

    deinit { close() }

    /// Attaches the tracepoint programs (packets are followed once a device picks them up).
    public func attachTracepoints() throws(TracerError) {
        for name in options.packetPrograms { try attachProgram(name, "attaching the tracepoints") }
    }

    /// Attaches net_dev_start_xmit when it was left off at load (`TracerOptions.transmitHook`).
    public func attachTransmitHook() throws(TracerError) {
        try attachProgram(TracerOptions.transmitProgram, "attaching net_dev_start_xmit")
    }

    /// Attaches the softirq and NAPI programs.
    public func attachSoftirq() throws(TracerError) {
        for name in TracerOptions.softirqPrograms { try attachProgram(name, "attaching the softirq tracepoints") }
    }

    // The tracepoint programs attached, and those a pause detached (to attach again
    // on resume). Guarded: the drain thread attaches net_dev_start_xmit, the agent
    // pauses and resumes from its own.
    private let programsLock = NSLock()
    private var programsAttached: [String] = []
    private var programsPaused: [String]?
    private var statsPaused = false

    private func attachProgram(_ name: String, _ context: String) throws(TracerError) {
        programsLock.lock()
        defer { programsLock.unlock() }
        // while paused, a program asked for is attached on resume
        if programsPaused != nil {
            programsPaused!.append(name)
            return
        }
        var err = ht_error()
        try Self.check(ht_attach_program(handle, name, &err), err, context)
        programsAttached.append(name)
    }

    /// Whether the hooks are paused (`pause()`).
    public var isPaused: Bool { programsLock.withLock { programsPaused != nil } }

    /// Stops tracing without letting go of anything: the tracepoint programs are
    /// detached (they then cost nothing) and the tcx programs, which stay attached to
    /// their devices, return at once. For the agent's CPU budget. Idempotent.
    public func pause() {
        programsLock.withLock {
            guard programsPaused == nil else { return }
            ht_pause_devices(handle, 1)
            // bpf_stats adds two clock reads to every run, the paused tcx programs'
            // included: off while paused, on again at resume
            statsPaused = statsFD >= 0
            if statsPaused {
                Glibc.close(statsFD)
                statsFD = -1
            }
            for name in programsAttached {
                var err = ht_error()
                _ = ht_detach_program(handle, name, &err)
            }
            programsPaused = programsAttached
            programsAttached = []
        }
    }

    /// Tracing again after `pause()`: the programs attached as they were. Idempotent.
    public func resume() throws(TracerError) {
        programsLock.lock()
        defer { programsLock.unlock() }
        guard var left = programsPaused else { return }
        // the devices trace again whatever happens below; a program that fails to
        // attach stays listed, so the next resume tries it again
        defer {
            programsPaused = left.isEmpty ? nil : left
            ht_pause_devices(handle, 0)
            if statsPaused {
                statsPaused = false
                try? enableRunTimeStats()
            }
        }
        while let name = left.first {
            var err = ht_error()
            let rc = ht_attach_program(handle, name, &err)
            // EEXIST: a pause that could not detach it left it attached
            if rc != 0 && err.code != -EEXIST { try Self.check(rc, err, "attaching \(name) again") }
            programsAttached.append(name)
            left.removeFirst()
        }
    }

    /// Softirq counters since load, `[cpu][vector]`.
    public func softirqCounters() throws(TracerError) -> [[SoftirqCounters]] {
        let cpus = Int(ht_num_cpus())
        guard cpus > 0 else { throw TracerError(code: -EINVAL, call: "ht_num_cpus", context: "reading softirq counters") }
        var raw = [ht_softirq_cpu](repeating: ht_softirq_cpu(), count: cpus)
        var err = ht_error()
        let n = raw.withUnsafeMutableBufferPointer { ht_read_softirq(handle, $0.baseAddress, Int32(cpus), &err) }
        try Self.check(n, err, "reading softirq counters")
        precondition(MemoryLayout<ht_softirq_stats>.stride == SoftirqCounters.size, "softirq ABI mismatch")
        let stride = MemoryLayout<ht_softirq_cpu>.stride
        return raw.withUnsafeBytes { bytes in
            (0..<cpus).map { cpu in
                (0..<Int(HT_SIRQ_COUNT.rawValue)).map { vec in
                    SoftirqCounters(decoding: bytes, at: cpu * stride + vec * SoftirqCounters.size)
                }
            }
        }
    }

    /// A device the tcx programs are attached to.
    public struct Attachment: Sendable {
        public var id: Int32
        public var label: String
        public var ifindex: Int32
        public var mode: TracerOptions.AttachMode
    }

    /// Attaches the tcx programs to `ifname` in the namespace opened by `netnsPath`
    /// (nil: ours). `label` names it in errors, e.g. "web/eth0". Egress picks up
    /// every packet the device sends; ingress is only needed where the sender's
    /// side is not traced (a veth whose peer is not selected).
    @discardableResult
    public func attach(device ifname: String, netnsPath: String?, label: String, ingress: Bool = true) throws(TracerError) -> Attachment {
        var err = ht_error()
        var out = ht_attachment()
        let directions = Int32(HT_DIR_EGRESS.rawValue | (ingress ? HT_DIR_INGRESS.rawValue : 0))
        try Self.check(ht_attach_device(handle, netnsPath, ifname, options.attachMode.rawValue, directions, &out, &err),
                       err, "attaching to \(label)")
        let a = Attachment(id: out.id, label: label, ifindex: out.ifindex, mode: TracerOptions.AttachMode(rawValue: out.mode) ?? .tcx)
        attached.append(a)
        return a
    }

    /// Attaches the tcx programs to many devices at once, in parallel (a tcx attach
    /// waits for an RCU grace period, which attaches in flight share: 1,000 devices
    /// one by one take some 15 s, together well under one). Each first loses any
    /// clsact filters a killed hoptrace left on it. One result per device, in order.
    public func attach(devices: [DeviceSelection]) -> [Result<Attachment, TracerError>] {
        guard !devices.isEmpty else { return [] }
        // the C strings live until the call returns
        let paths = devices.map { strdup($0.netnsPath) }, names = devices.map { strdup($0.ifname) }
        defer { (paths + names).forEach { free($0) } }
        var requests = devices.indices.map { i in
            ht_device_request(netns_path: paths[i], ifname: names[i], mode: options.attachMode.rawValue,
                              directions: Int32(HT_DIR_EGRESS.rawValue | (devices[i].ingress ? HT_DIR_INGRESS.rawValue : 0)),
                              sweep_first: 1)
        }
        var out = [ht_attachment](repeating: ht_attachment(), count: devices.count)
        var errs = [ht_error](repeating: ht_error(), count: devices.count)
        _ = ht_attach_devices(handle, &requests, Int32(devices.count), &out, &errs)
        return devices.indices.map { i in
            do throws(TracerError) {
                try Self.check(errs[i].code, errs[i], "attaching to \(devices[i].label)")
            } catch {
                return .failure(error)
            }
            let a = Attachment(id: out[i].id, label: devices[i].label, ifindex: out[i].ifindex,
                               mode: TracerOptions.AttachMode(rawValue: out[i].mode) ?? .tcx)
            attached.append(a)
            return .success(a)
        }
    }

    /// Detaches a device attached by `attach` (one that is gone already is fine).
    public func detach(_ a: Attachment) {
        var err = ht_error()
        _ = ht_detach_device(handle, a.id, &err)
        attached.removeAll { $0.id == a.id }
    }

    /// Copies waiting records into `buffer`, waiting up to `timeoutMs` if none are ready.
    /// Returns the number of bytes (whole records).
    public func drain(into buffer: UnsafeMutableRawBufferPointer, timeoutMs: Int32) throws(TracerError) -> Int {
        var err = ht_error()
        let n = ht_drain(handle, buffer.baseAddress, buffer.count, timeoutMs, &err)
        if n < 0 { try Self.check(Int32(n), err, "reading the ring buffer") }
        return n
    }

    public func counters() throws(TracerError) -> TracerCounters {
        var raw = [UInt64](repeating: 0, count: Int(HT_CTR_COUNT.rawValue))
        var err = ht_error()
        let rc = raw.withUnsafeMutableBufferPointer { ht_read_counters(handle, $0.baseAddress, &err) }
        try Self.check(rc, err, "reading counters")
        return TracerCounters(raw: raw)
    }

    /// Turns on the kernel's run-time accounting of BPF programs for this tracer's life.
    public func enableRunTimeStats() throws(TracerError) {
        if statsFD >= 0 { return }
        var err = ht_error()
        let fd = ht_enable_stats(&err)
        try Self.check(fd, err, "enabling BPF run-time statistics")
        statsFD = fd
    }

    public struct ProgramStats: Sendable {
        public var name: String
        public var runs: UInt64
        public var runTimeNs: UInt64
    }

    public func programStats() throws(TracerError) -> [ProgramStats] {
        var stats = [ht_prog_stat](repeating: ht_prog_stat(), count: 32)
        var err = ht_error()
        let n = stats.withUnsafeMutableBufferPointer { ht_prog_stats(handle, $0.baseAddress, 32, &err) }
        try Self.check(n, err, "reading BPF program statistics")
        return stats.prefix(Int(n)).map { s in
            var s = s
            let name = withUnsafeBytes(of: &s.name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            return ProgramStats(name: name, runs: s.run_cnt, runTimeNs: s.run_time_ns)
        }
    }

    /// Benchmarks and self-tests: fills the ring buffer with `records` synthetic
    /// records from the never-attached producer program.
    public func benchFill(records: UInt32) throws(TracerError) {
        var err = ht_error()
        try Self.check(ht_bench_fill(handle, records, &err), err, "filling the ring buffer")
    }

    /// Detaches everything. Idempotent; also done by deinit and, for tcx links, by
    /// the kernel when the process dies.
    public func close() {
        if let h = handle { ht_close(h) }
        handle = nil
        if statsFD >= 0 { Glibc.close(statsFD) }
        statsFD = -1
    }
}

/// Runs the drain loop on a dedicated thread (never the cooperative pool) and hands
/// each batch of raw records to `body` on that thread.
public final class DrainThread: @unchecked Sendable {
    private let tracer: Tracer
    private let body: (UnsafeRawBufferPointer) -> Void
    private let tick: () -> Void
    private let lock = NSLock()
    private var stopping = false
    private let done = DispatchSemaphore(value: 0)
    public private(set) var error: TracerError?
    /// CPU time the drain thread has used, nanoseconds (updated after each batch).
    public var cpuNs: UInt64 { lock.withLock { threadCPUNs } }
    private var threadCPUNs: UInt64 = 0
    /// Batch buffer: a quarter of the ring, so one drain takes a large share of it.
    private let buffer: UnsafeMutableRawBufferPointer

    /// `body` gets each batch; `tick` runs on the drain thread after each wait (at
    /// least every 50 ms), for work that must use the tracer while it drains.
    public init(tracer: Tracer, tick: @escaping () -> Void = {}, body: @escaping (UnsafeRawBufferPointer) -> Void) {
        self.tracer = tracer
        self.body = body
        self.tick = tick
        let size = max(Int(tracer.options.ringBytes) / 4, 64 * RecordLayout.size)
        buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: size - size % RecordLayout.size, alignment: 16)
    }

    deinit { buffer.deallocate() }

    public func start() {
        let t = Thread { [self] in
            run()
            done.signal()
        }
        t.name = "hoptrace-drain"
        t.start()
    }

    private var shouldStop: Bool { lock.withLock { stopping } }

    private func run() {
        do {
            while !shouldStop {
                let n = try tracer.drain(into: buffer, timeoutMs: 50)
                if n > 0 { body(UnsafeRawBufferPointer(rebasing: buffer[0..<n])) }
                tick()
                let cpu = Self.threadCPUTime()
                lock.withLock { threadCPUNs = cpu }
            }
            // what was submitted before stop() still gets counted
            while true {
                let n = try tracer.drain(into: buffer, timeoutMs: 0)
                if n == 0 { break }
                body(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            }
        } catch {
            lock.withLock { self.error = error }
        }
    }

    /// CPU time of the calling thread, nanoseconds.
    public static func threadCPUTime() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    /// Stops after draining what is waiting; returns when the thread has finished.
    public func stop() {
        lock.withLock { stopping = true }
        done.wait()
    }
}
