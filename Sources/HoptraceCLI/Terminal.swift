import Foundation
import HoptraceViews
import Synchronization

/// Set by SIGWINCH: the terminal was resized (an atomic store is async-signal-safe).
private let resized = Atomic<Bool>(false)

/// The terminal of a full-screen view: raw keys, the alternate screen, no cursor.
/// `restore()` puts everything back and is idempotent; the command calls it on every
/// way out (q, Ctrl-C and SIGTERM end the loop, errors unwind through a defer).
/// Ctrl-C still raises SIGINT (ISIG stays on), so it is handled as in every command.
final class Terminal {
    /// The terminal's settings before, if it is one (else nothing to restore).
    private var saved: termios?
    private var active = false

    /// Whether standard output is a terminal (else `top` prints JSON lines).
    static var isInteractive: Bool { isatty(STDOUT_FILENO) == 1 }

    /// Enters the full screen: keys one at a time without echo, the alternate screen.
    func enter() {
        var settings = termios()
        if isatty(STDIN_FILENO) == 1, tcgetattr(STDIN_FILENO, &settings) == 0 {
            saved = settings
            var raw = settings
            raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
            // no XON/XOFF: Ctrl-S would block the next frame's write, and with it q and Ctrl-C
            raw.c_iflag &= ~tcflag_t(IXON)
            withUnsafeMutableBytes(of: &raw.c_cc) { cc in
                cc[Int(VMIN)] = 0
                cc[Int(VTIME)] = 0
            }
            tcsetattr(STDIN_FILENO, TCSANOW, &raw)
        }
        signal(SIGWINCH) { _ in resized.store(true, ordering: .relaxed) }
        // Ctrl-Z would stop top with the terminal still full screen and raw
        signal(SIGTSTP, SIG_IGN)
        active = true
        write("\u{1b}[?1049h\u{1b}[?25l\u{1b}[2J")
    }

    /// Leaves the full screen and restores the terminal's settings as they were.
    func restore() {
        guard active else { return }
        active = false
        write("\u{1b}[0m\u{1b}[?25h\u{1b}[?1049l")
        if var settings = saved { tcsetattr(STDIN_FILENO, TCSANOW, &settings) }
        signal(SIGWINCH, SIG_DFL)
        signal(SIGTSTP, SIG_DFL)
    }

    deinit { restore() }

    /// Columns and rows now (80x24 if the terminal does not say).
    var size: (width: Int, height: Int) {
        var w = winsize()
        guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &w) == 0, w.ws_col > 0, w.ws_row > 0 else { return (80, 24) }
        return (Int(w.ws_col), Int(w.ws_row))
    }

    /// Whether the terminal was resized since the last call.
    func takeResize() -> Bool { resized.exchange(false, ordering: .relaxed) }

    /// Keys typed within `seconds` (returns at the first keys, a signal, or the timeout).
    func keys(within seconds: Double) -> [TopScreen.Key] {
        var fd = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
        guard isatty(STDIN_FILENO) == 1 else {
            usleep(useconds_t(max(0, min(seconds, 0.25)) * 1e6))
            return []
        }
        guard poll(&fd, 1, Int32(max(0, seconds) * 1000)) > 0 else { return [] }
        var buffer = [UInt8](repeating: 0, count: 64)
        let n = read(STDIN_FILENO, &buffer, buffer.count)
        return n > 0 ? Self.decode(Array(buffer[0..<n])) : []
    }

    /// Bytes from the terminal as keys: Esc alone is Escape, an escape sequence
    /// (arrows, function keys) is dropped, DEL and BS are Backspace.
    static func decode(_ bytes: [UInt8]) -> [TopScreen.Key] {
        var keys: [TopScreen.Key] = []
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            switch b {
            case 0x1b:
                if i + 1 < bytes.count && (bytes[i + 1] == UInt8(ascii: "[") || bytes[i + 1] == UInt8(ascii: "O")) {
                    i += 2
                    while i < bytes.count && !(0x40...0x7e).contains(bytes[i]) { i += 1 }
                } else {
                    keys.append(.escape)
                }
            case 0x7f, 0x08: keys.append(.backspace)
            case 0x0d, 0x0a: keys.append(.enter)
            case 0x20...0x7e: keys.append(.character(Character(UnicodeScalar(b))))
            default: break
            }
            i += 1
        }
        return keys
    }

    /// Draws `lines` over the whole screen in one write (no flicker: each line is
    /// overwritten and its rest cleared, not the screen first).
    func draw(_ lines: [TopScreen.Line], clearFirst: Bool) {
        var out = clearFirst ? "\u{1b}[2J" : ""
        out += "\u{1b}[H"
        for (n, line) in lines.enumerated() {
            switch line.style {
            case .title: out += "\u{1b}[7m"
            case .header: out += "\u{1b}[1m"
            case .warning: out += "\u{1b}[33m"
            case .plain: break
            }
            out += line.text + "\u{1b}[K\u{1b}[0m"
            if n < lines.count - 1 { out += "\r\n" }
        }
        write(out)
    }

    private func write(_ s: String) {
        var bytes = Array(s.utf8)[...]
        while !bytes.isEmpty {
            let n = bytes.withUnsafeBytes { Glibc.write(STDOUT_FILENO, $0.baseAddress, $0.count) }
            if n <= 0 { if errno == EINTR { continue }; return }
            bytes = bytes.dropFirst(n)
        }
    }
}
