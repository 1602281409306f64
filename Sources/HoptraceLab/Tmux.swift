import Foundation
import HoptraceNode

/// A real terminal for a full-screen program (`hoptrace top`), for tests and the
/// bench: a tmux server of its own (its own socket), one session, keys sent as typed
/// and the screen read back. The server is killed when this goes.
public final class Tmux: @unchecked Sendable {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    public let socket = "ht-tmux-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    private let session = "main"

    public init() {}

    public static var isInstalled: Bool { (try? Command.run(["tmux", "-V"])) != nil }

    public func run(_ args: [String]) throws -> String { try Command.run(["tmux", "-L", socket] + args) }

    /// Starts the server and its session running `script` (with `sh -c`) in a terminal
    /// of `width` x `height`. Spawned and waited for directly: Foundation's Process
    /// learns that a child exited when a socket it passes down closes, and the server
    /// tmux leaves behind would keep it open.
    public func start(_ script: String, width: Int = 200, height: Int = 40) throws {
        let args = ["tmux", "-L", socket, "new-session", "-d", "-s", session, "-x", String(width), "-y", String(height),
                    "sh", "-c", script]
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for fd in [STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO] {
            posix_spawn_file_actions_addopen(&actions, fd, "/dev/null", fd == STDIN_FILENO ? O_RDONLY : O_WRONLY, 0)
        }
        var argv = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        guard posix_spawnp(&pid, "tmux", &actions, nil, &argv, environ) == 0 else { throw Failure(description: "cannot run tmux") }
        var status: Int32 = 0
        waitpid(pid, &status, 0)
        guard status == 0 else { throw Failure(description: "tmux new-session failed (status \(status))") }
    }

    /// Types `keys` (tmux key names: "q", "C-c", "Enter").
    public func send(_ keys: String...) throws { _ = try run(["send-keys", "-t", session] + keys) }

    /// The screen as text, a line per row.
    public func screen() -> String { (try? run(["capture-pane", "-p", "-t", session])) ?? "" }

    /// A tmux format about the pane, e.g. "#{alternate_on}", "#{cursor_flag}", "#{pane_pid}".
    public func value(_ format: String) -> String {
        ((try? run(["display-message", "-p", "-t", session, format])) ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Polls the screen until `done` holds, up to `seconds`; returns whether it did.
    public func wait(_ seconds: Double, until done: (String) -> Bool) -> Bool {
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            if done(screen()) { return true }
            usleep(100_000)
        }
        return done(screen())
    }

    /// Where the server listens: tmux leaves the socket file after kill-server.
    public var socketPath: String {
        (ProcessInfo.processInfo.environment["TMUX_TMPDIR"] ?? "/tmp") + "/tmux-\(getuid())/\(socket)"
    }

    deinit {
        _ = try? Command.run(["tmux", "-L", socket, "kill-server"])
        unlink(socketPath)
    }
}
