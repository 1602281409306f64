import Dispatch
import Foundation
import Synchronization

/// The first SIGINT or SIGTERM the process caught, 0 if none: set in the signal
/// handler itself (an atomic store is async-signal-safe), so a command checking it
/// right after a step of its set-up sees a signal that has already arrived.
private let caughtSignal = Atomic<Int32>(0)

/// Waits for a deadline, an early finish, or SIGINT/SIGTERM, so every command can
/// clean up (detach, remove labs) on Ctrl-C and on `kill`. Installed first thing
/// in a command (`install()`), so a signal during set-up (a lab being built, BPF
/// being loaded) is caught too and the command unwinds through its cleanup.
final class Interruption: @unchecked Sendable {
    private static let lock = NSLock()
    nonisolated(unsafe) private static var installed: Interruption?
    private let wake = DispatchSemaphore(value: 0)

    /// The process's one handler of SIGINT and SIGTERM, and of `also` (SIGHUP for a
    /// full-screen view: its terminal went away).
    static func install(also: [Int32] = []) -> Interruption {
        lock.withLock {
            if let i = installed { return i }
            for sig in [SIGINT, SIGTERM] + also {
                signal(sig) { sig in _ = caughtSignal.compareExchange(expected: 0, desired: sig, ordering: .relaxed) }
            }
            let i = Interruption()
            installed = i
            return i
        }
    }

    private init() {}

    /// The signal that arrived, or 0.
    var received: Int32 { caughtSignal.load(ordering: .relaxed) }

    /// Wakes `wait` early (work finished).
    func finish() { wake.signal() }

    /// Returns after `seconds`, at `finish()`, or at a signal (noticed within 20 ms:
    /// a semaphore cannot be signalled from a signal handler).
    func wait(seconds: Double) {
        let end = DispatchTime.now() + seconds
        while received == 0 {
            let slice = min(end, .now() + 0.02)
            if wake.wait(timeout: slice) == .success || slice >= end { return }
        }
    }

    /// Exit status for a run cut short by a signal (128 + signal number).
    var exitCode: Int32 { 128 + received }

    /// Throws the exit of a command cut short by a signal during set-up.
    func checkDuringSetup(_ what: String) throws {
        if received != 0 { throw CLIError("interrupted while \(what); nothing left behind", code: exitCode) }
    }
}

/// A signal that only sets a flag (SIGUSR1 for the flight recorder).
final class SignalFlag: @unchecked Sendable {
    private let source: DispatchSourceSignal
    private let lock = NSLock()
    private var raised = false

    init(_ sig: Int32) {
        signal(sig, SIG_IGN)
        source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        source.setEventHandler { [self] in lock.withLock { raised = true } }
        source.resume()
    }

    /// Whether the signal came since the last call.
    func take() -> Bool {
        lock.withLock {
            defer { raised = false }
            return raised
        }
    }
}
