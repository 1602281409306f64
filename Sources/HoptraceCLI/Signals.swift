import Dispatch
import Foundation

/// Waits for a deadline, an early finish, or SIGINT/SIGTERM, so every command can
/// clean up (detach, remove labs) on Ctrl-C and on `kill`.
final class Interruption: @unchecked Sendable {
    private let wake = DispatchSemaphore(value: 0)
    private var sources: [DispatchSourceSignal] = []
    private let lock = NSLock()
    private var signalNumber: Int32 = 0

    init() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            s.setEventHandler { [self] in
                lock.withLock { if signalNumber == 0 { signalNumber = sig } }
                wake.signal()
            }
            s.resume()
            sources.append(s)
        }
    }

    /// The signal that arrived, or 0.
    var received: Int32 { lock.withLock { signalNumber } }

    /// Wakes `wait` early (work finished).
    func finish() { wake.signal() }

    /// Returns after `seconds`, at `finish()`, or at a signal.
    func wait(seconds: Double) {
        _ = wake.wait(timeout: .now() + seconds)
    }

    /// Exit status for a run cut short by a signal (128 + signal number).
    var exitCode: Int32 { 128 + received }
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
