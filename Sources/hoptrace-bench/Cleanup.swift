import Foundation

/// What a Ctrl-C or a `kill` must undo before the bench exits: the processes it
/// started (observers with programs attached, servers) and its lab. Signals end a
/// process without running `defer`, so without this an interrupted bench would leave
/// namespaces, attached programs and bpftrace behind.
final class Cleanup: @unchecked Sendable {
    static let shared = Cleanup()

    private let lock = NSLock()
    private var processes: [Process] = []
    private var finalizers: [@Sendable () -> Void] = []
    private var sources: [DispatchSourceSignal] = []
    private var stopping = false

    /// Takes over SIGINT and SIGTERM. A no-op C handler rather than SIG_IGN: ignored
    /// signals stay ignored in the programs we start, caught ones go back to default.
    func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { _ in }
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { [self] in interrupted(by: sig) }
            source.resume()
            sources.append(source)
        }
    }

    /// Interrupts `process` (SIGINT) if the bench is interrupted while it runs.
    func track(_ process: Process) {
        let late = lock.withLock {
            processes.removeAll { !$0.isRunning }
            processes.append(process)
            return stopping
        }
        if late { process.interrupt() } // started while the cleanup was running
    }

    /// Runs `body` (last registered first) when the bench is interrupted.
    func atInterrupt(_ body: @escaping @Sendable () -> Void) {
        lock.withLock { finalizers.append(body) }
    }

    private func interrupted(by sig: Int32) {
        let (running, undo) = lock.withLock {
            stopping = true
            return (processes.filter(\.isRunning), finalizers.reversed())
        }
        FileHandle.standardError.write(Data("bench: interrupted: stopping \(running.count) processes, removing the lab\n".utf8))
        for p in running { p.interrupt() }
        // they detach and exit on SIGINT; give them time before their namespaces go
        let deadline = Date().addingTimeInterval(10)
        while running.contains(where: \.isRunning), Date() < deadline { usleep(50_000) }
        for body in undo { body() }
        exit(128 + sig)
    }
}
