import ArgumentParser
import Foundation
import HoptraceCore
import HoptraceTracer
import HoptraceViews
import Synchronization

struct Top: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "A live view of the hops: packets/s, p50, p99, max, the last minute's p99, drops and softirqs.",
        discussion: """
        Full screen, refreshed every --interval: one row per hop (the last interval's
        packets/s, p50, p99 and max, a sparkline of p99 over the last 60 s, drops/s
        and their commonest reason), a line per CPU for network softirqs (busy %,
        NET_RX raise -> run p99, ksoftirqd share), and what hoptrace costs.
        Keys: s cycles the sort column, / filters hops by name (Enter applies, Esc
        clears), space pauses, r resets the sparklines, q quits. Ctrl-C and SIGTERM
        quit too; the terminal is restored and nothing stays attached.
        When standard output is not a terminal (or with --json) it prints one JSON
        object per interval instead (JSON lines; schema in docs/top.md).

        Examples:
          hoptrace top --all-veth
          hoptrace top --pod default/web-7d9f --interval 2s
          hoptrace top --all-veth --duration 30s | jq -c '.hops[] | [.hop, .p99_ns]'
        """
    )

    @OptionGroup var selection: DeviceOptions

    @Option(help: "How often the view is refreshed, e.g. 1s, 500ms, 5s.",
            transform: { try parsePositiveDuration($0, "--interval", example: "1s") })
    var interval = DurationArgument(ns: 1_000_000_000)

    @Option(help: "Quit after this long, e.g. 30s (default: run until q, Ctrl-C or SIGTERM).",
            transform: { try parsePositiveDuration($0, "--duration", example: "30s") })
    var duration: DurationArgument?

    @Flag(help: "Print JSON lines even on a terminal.")
    var json = false

    @OptionGroup var tracer: TracerArguments

    func validate() throws {
        guard interval.ns >= 100_000_000 else { throw ValidationError("--interval must be at least 100ms") }
    }

    func run() throws {
        // the terminal going away (SIGHUP) and Ctrl-\ (SIGQUIT) end it as SIGTERM does:
        // the terminal restored, nothing left attached
        let interruption = Interruption.install(also: [SIGHUP, SIGQUIT])
        // a reader that goes away (`| head`) must end the loop, not kill the process
        // before it detaches (clsact filters would stay)
        signal(SIGPIPE, SIG_IGN)
        try requireRoot()
        let chosen = try selection.resolve()
        let interactive = Terminal.isInteractive && !json
        let context = "\(chosen.devices.count) devices"
        _ = try runTrace(devices: chosen.devices, names: chosen.names, maxFlows: tracer.maxFlows,
                         tracer: tracer.tracerOptions(allVeth: chosen.everyVeth), interruption: interruption,
                         hostRoot: selection.hostRoot) { session in
            let loop = TopLoop(session: session, intervalSeconds: interval.seconds,
                               deadline: duration.map { Date().addingTimeInterval($0.seconds) },
                               stopRequested: { interruption.received != 0 })
            if interactive {
                let terminal = Terminal()
                terminal.enter()
                defer { terminal.restore() }
                loop.runFullScreen(terminal, context: context)
            } else {
                try loop.runJSONLines(wait: interruption.wait)
            }
        }
    }
}

/// `top`'s loop: a sample of the session per interval, the interval's figures, and
/// the screen (or a JSON line) from them.
struct TopLoop {
    let session: TraceSession
    let intervalSeconds: Double
    let deadline: Date?
    let stopRequested: () -> Bool

    private var done: Bool { stopRequested() || deadline.map { Date() >= $0 } ?? false }

    /// Samples on time; in between, keys and resizes are handled as they come.
    func runFullScreen(_ terminal: Terminal, context: String) {
        var screen = TopScreen(intervalSeconds: intervalSeconds)
        var sampler = Sampler(session: session)
        var next = Date().addingTimeInterval(intervalSeconds)
        var clearFirst = true
        func draw() {
            let (w, h) = terminal.size
            terminal.draw(screen.lines(width: w, height: h, context: context, clock: sampler.clock), clearFirst: clearFirst)
            clearFirst = false
        }
        draw()
        while !done {
            let now = Date()
            if now >= next {
                next = max(next.addingTimeInterval(intervalSeconds), now)
                screen.show(sampler.take())
                draw()
                continue
            }
            for key in terminal.keys(within: min(next.timeIntervalSince(now), 0.25)) {
                switch screen.press(key) {
                case .quit: return
                case .redraw: draw()
                case .none: break
                }
            }
            if terminal.takeResize() {
                clearFirst = true
                draw()
            }
        }
    }

    /// One JSON object per interval on standard output, until done or the reader leaves.
    func runJSONLines(wait: (Double) -> Void) throws {
        var sampler = Sampler(session: session)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var next = Date().addingTimeInterval(intervalSeconds)
        while !done {
            let now = Date()
            if now < next {
                wait(next.timeIntervalSince(now))
                continue
            }
            next = max(next.addingTimeInterval(intervalSeconds), now)
            var line = try encoder.encode(sampler.take())
            line.append(0x0a)
            let written = line.withUnsafeBytes { write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if written != line.count { return } // EPIPE: nobody reads any more
        }
    }
}

/// Takes the session's sample at each interval and gives the interval since the
/// previous one, with the view's own CPU time (this thread) as part of the cost.
struct Sampler {
    let session: TraceSession
    private let names: NameRefresher
    private var before: LiveSample
    private var viewCPUBefore: UInt64
    private let reasons: DropReasons
    private(set) var clock = "--:--:--"
    private let clockFormat: DateFormatter = {
        let f = DateFormatter()
        f.dateFormat = "HH:mm:ss"
        return f
    }()

    init(session: TraceSession) {
        self.session = session
        names = NameRefresher(session: session)
        before = session.liveSample()
        viewCPUBefore = DrainThread.threadCPUTime()
        reasons = session.kernelDropReasons
    }

    mutating func take() -> LiveInterval {
        names.refresh()
        let now = session.liveSample()
        var interval = LiveInterval(from: before, to: now, unixTime: Date().timeIntervalSince1970, dropReasons: reasons)
        let cpu = DrainThread.threadCPUTime()
        if interval.seconds > 0 { interval.cost.viewPercent = 100 * Double(cpu &- viewCPUBefore) / 1e9 / interval.seconds }
        before = now
        viewCPUBefore = cpu
        clock = clockFormat.string(from: Date())
        return interval
    }
}

/// Names for hops that reach ends not known yet (a pod made since), looked up off
/// the drawing thread: a lookup runs `ip` in every namespace, seconds on a big node,
/// and keys and redraws must not wait for it. Its names show from the next interval.
final class NameRefresher: Sendable {
    private let session: TraceSession
    private let queue = DispatchQueue(label: "hoptrace.top.names")
    private let running = Atomic<Bool>(false)

    init(session: TraceSession) { self.session = session }

    /// Starts a lookup unless one is running (one at a time: the session's lookup
    /// is not made to run concurrently with itself).
    func refresh() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        queue.async { [self] in
            _ = session.refreshNamesIfUnknown()
            running.store(false, ordering: .releasing)
        }
    }
}
