import Dispatch
import Foundation
import Glibc

/// Why the server could not listen, in one line that says what to do.
public struct HTTPServerError: Error, CustomStringConvertible, Sendable {
    /// The address as given to `HTTPServer(listen:)`.
    public let listen: String
    /// errno of the call that failed; 0 when `listen` is not an address.
    public let code: Int32
    public let description: String

    init(listen: String, call: String, code: Int32) {
        let reason = switch code {
        case 0: "not ADDRESS:PORT (use 127.0.0.1:9479, 0.0.0.0:9479, [::1]:9479, [::]:9479 or localhost:9479)"
        case EADDRINUSE: "address in use (another hoptrace serve? choose --listen with another port)"
        case EACCES: "permission denied (a port below 1024 needs CAP_NET_BIND_SERVICE; choose --listen with a higher port)"
        case EADDRNOTAVAIL: "no interface of this node has that address (choose --listen with 127.0.0.1, 0.0.0.0 or one of its addresses)"
        case EAFNOSUPPORT: "IPv6 is disabled on this node (choose --listen with 127.0.0.1 or 0.0.0.0)"
        case EMFILE, ENFILE: "too many open files (raise the process's limit, e.g. LimitNOFILE=)"
        default: "\(call): \(String(cString: strerror(code)))"
        }
        self.listen = listen
        self.code = code
        description = "cannot listen on \(listen): \(reason)"
    }
}

/// The agent's HTTP/1.0 and 1.1 server: one thread, non-blocking sockets, poll(2).
///
/// `listen` is "ADDRESS:PORT" with a numeric address: "127.0.0.1:9479", "0.0.0.0:9479",
/// "[::1]:9479", or "[::]:9479", which takes IPv4 too (as ::ffff:a.b.c.d) whatever
/// net.ipv6.bindv6only says. "localhost:9479" is 127.0.0.1 only: no resolver, so a
/// node's /etc/hosts cannot move it. Port 0 picks a free port (see `port`).
///
/// One request per connection: every response says `Connection: close` and the server
/// closes after it (Prometheus reconnects at each scrape anyway). Each connection is
/// bounded in time (`requestTimeout` to send its request, `writeTimeout` to take the
/// response, then a one-second linger), in memory (about maxHeaderBytes +
/// maxBodyBytes) and in number (`maxConnections`), so a slow or hostile client holds
/// one slot for seconds and never the loop. No chunked request bodies (501).
///
/// The handler runs on the server's thread between two polls: it must return quickly
/// (the agent's handlers copy a cached buffer), since a slow handler delays every client.
public final class HTTPServer: @unchecked Sendable {
    public struct Limits: Sendable {
        /// Request line and headers, with their line ends; over it: 431.
        public var maxHeaderBytes: Int
        /// Content-Length; over it: 413.
        public var maxBodyBytes: Int
        /// From accept until the whole request has arrived; past it: 408.
        public var requestTimeout: Duration
        /// Connections open at once; each one past it gets 503 and is closed.
        public var maxConnections: Int
        /// From the response being ready until the client has taken all of it; past it the connection is closed.
        public var writeTimeout: Duration

        public init(maxHeaderBytes: Int = 8192, maxBodyBytes: Int = 65536, requestTimeout: Duration = .seconds(5),
                    maxConnections: Int = 64, writeTimeout: Duration = .seconds(10)) {
            self.maxHeaderBytes = maxHeaderBytes
            self.maxBodyBytes = maxBodyBytes
            self.requestTimeout = requestTimeout
            self.maxConnections = maxConnections
            self.writeTimeout = writeTimeout
        }
    }

    /// The bound port (the one the kernel picked for port 0).
    public let port: UInt16
    private let limits: Limits
    private let handler: @Sendable (HTTPRequest) -> HTTPResponse
    private let listener: Int32
    /// stop() sends a byte on `wakeSender`; the loop polls `wakeReceiver`. A socket pair,
    /// as Swift's Glibc module hides pipe2 and eventfd (and SOCK_CLOEXEC sets
    /// close-on-exec at creation, where pipe + fcntl would leave a window).
    private let wakeReceiver: Int32, wakeSender: Int32

    private enum Phase { case created, running, stopped }
    /// Guards `phase`; held for the whole of stop(), so a second stop() returns only
    /// once the thread is gone too.
    private let lock = NSLock()
    private var phase = Phase.created
    private let loopFinished = DispatchSemaphore(value: 0)

    /// The loop's receive buffer (used by the server thread only).
    private var scratch = [UInt8](repeating: 0, count: 65536)
    /// After the response, how long a connection is read and discarded before it is closed.
    private static let lingerTimeout = Duration.seconds(1)
    /// How long the listener is left out of poll when accept fails for want of file
    /// descriptors or memory: a ready listener would wake poll again at once.
    private static let acceptPause = Duration.milliseconds(100)

    /// Binds and listens at once, so that a busy port is an error here; serves after `start()`.
    public init(listen: String, limits: Limits = Limits(), handler: @escaping @Sendable (HTTPRequest) -> HTTPResponse) throws(HTTPServerError) {
        guard let address = SocketAddress(listen: listen) else { throw HTTPServerError(listen: listen, call: "", code: 0) }
        let fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { throw HTTPServerError(listen: listen, call: "socket", code: errno) }
        var on: Int32 = 1, off: Int32 = 0
        let size = socklen_t(MemoryLayout<Int32>.size)
        // a restarted agent binds again while the last run's connections are in TIME_WAIT
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, size)
        if address.family == AF_INET6 { _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &off, size) }
        let bound = address.withSockaddr { bind(fd, $0, $1) } == 0 && Glibc.listen(fd, 128) == 0
        var local = SocketAddress()
        guard bound, local.withMutableSockaddr({ getsockname(fd, $0, $1) }) == 0 else {
            let code = errno
            close(fd)
            throw HTTPServerError(listen: listen, call: "bind", code: code)
        }
        var pair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0, &pair) == 0 else {
            let code = errno
            close(fd)
            throw HTTPServerError(listen: listen, call: "socketpair", code: code)
        }
        self.port = local.port
        self.limits = limits
        self.handler = handler
        listener = fd
        wakeReceiver = pair[0]
        wakeSender = pair[1]
    }

    deinit { stop() }

    /// Serves on a thread of its own ("hoptrace-http"), not the Swift concurrency pool.
    /// Does nothing when already started or stopped.
    public func start() {
        lock.withLock {
            guard phase == .created else { return }
            phase = .running
            let thread = Thread { [self] in
                run()
                loopFinished.signal()
            }
            thread.name = "hoptrace-http"
            thread.start()
        }
    }

    /// Closes every connection and the listener, and returns when the thread has
    /// finished; the port is free again. Safe to call more than once, from any thread
    /// but the server's own (a handler calling it would wait for itself).
    public func stop() {
        lock.withLock {
            switch phase {
            case .stopped:
                return
            case .running:
                var byte: UInt8 = 1
                _ = send(wakeSender, &byte, 1, Int32(MSG_NOSIGNAL))
                loopFinished.wait()
            case .created:
                break
            }
            phase = .stopped
            close(listener)
            close(wakeReceiver)
            close(wakeSender)
        }
    }

    // MARK: The loop (server thread only)

    private func run() {
        var connections: [Connection] = []
        var listenerPausedUntil: UInt64 = 0
        while true {
            let now = monotonicNanoseconds()
            for connection in connections where connection.deadline <= now { expire(connection, now: now) }
            connections.removeAll { $0.fd < 0 }

            let listening = now >= listenerPausedUntil
            var pollFDs = [pollfd(fd: listening ? listener : -1, events: Int16(POLLIN), revents: 0),
                           pollfd(fd: wakeReceiver, events: Int16(POLLIN), revents: 0)]
            for connection in connections {
                let events = if case .writing = connection.state { POLLOUT } else { POLLIN }
                pollFDs.append(pollfd(fd: connection.fd, events: Int16(events), revents: 0))
            }
            let nextDeadline = min(connections.map(\.deadline).min() ?? .max, listening ? .max : listenerPausedUntil)
            // rounded up, so the loop does not wake just before a deadline and spin
            let timeoutMs = nextDeadline == .max ? -1 : Int32(clamping: (nextDeadline - now + 999_999) / 1_000_000)
            if poll(&pollFDs, nfds_t(pollFDs.count), timeoutMs) < 0 {
                if errno != EINTR { usleep(10_000) }  // ENOMEM: try again shortly rather than spin
                continue
            }
            if pollFDs[1].revents != 0 { break }

            let afterPoll = monotonicNanoseconds()
            for (index, connection) in connections.enumerated() where pollFDs[index + 2].revents != 0 {
                if case .writing = connection.state { write(connection, now: afterPoll) } else { read(connection, now: afterPoll) }
            }
            connections.removeAll { $0.fd < 0 }  // before counting them against maxConnections
            if pollFDs[0].revents != 0, !acceptPending(into: &connections, now: afterPoll) {
                listenerPausedUntil = afterPoll + Self.acceptPause.nanoseconds
            }
        }
        for connection in connections { connection.close() }
    }

    /// Accepts a bounded batch from the listen queue. False when out of file
    /// descriptors or memory.
    private func acceptPending(into connections: inout [Connection], now: UInt64) -> Bool {
        for _ in 0..<64 {
            var peer = SocketAddress()
            let fd = peer.withMutableSockaddr { acceptNonBlockingCloseOnExec(listener, $0, $1) }
            if fd < 0 {
                switch errno {
                case EINTR, ECONNABORTED, EPROTO: continue
                case EMFILE, ENFILE, ENOBUFS, ENOMEM: return false
                default: return true  // EAGAIN: the queue is empty
                }
            }
            guard connections.count < limits.maxConnections else {
                refuse(fd, now: now)
                continue
            }
            connections.append(Connection(fd: fd, peer: peer.description, peerIsLoopback: peer.isLoopback,
                                          deadline: now + limits.requestTimeout.nanoseconds))
        }
        return true
    }

    /// A connection past maxConnections: 503 in one send (a fresh socket's buffer takes
    /// it whole) and closed, keeping nothing. Best effort: what the client already sent
    /// is read first, since closing with unread bytes resets the connection, which can
    /// drop the 503 before the client reads it.
    private func refuse(_ fd: Int32, now: UInt64) {
        _ = scratch.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        let response = HTTPResponse.text("too many connections\n", status: 503).serialized(includeBody: true, date: httpDate(secondsSinceEpoch: time(nil)))
        _ = response.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        _ = shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }

    private func read(_ connection: Connection, now: UInt64) {
        let count = scratch.withUnsafeMutableBytes { recv(connection.fd, $0.baseAddress, $0.count, 0) }
        if count == 0 { return connection.close() }  // the client closed: done, or gone mid-request
        if count < 0 {
            if errno != EAGAIN, errno != EWOULDBLOCK, errno != EINTR { connection.close() }
            return
        }
        if case .lingering = connection.state { return }  // discarded
        connection.input += scratch[..<count]
        advance(connection, now: now)
    }

    /// Parses what has arrived and, once the request is complete, answers it.
    private func advance(_ connection: Connection, now: UInt64) {
        do throws(RejectedRequest) {
            if case .readingHead = connection.state {
                let tooLarge = RejectedRequest(status: 431, reason: "request head larger than \(limits.maxHeaderBytes) bytes")
                guard let end = endOfHead(connection.input, from: connection.headSearchFrom) else {
                    if connection.input.count > limits.maxHeaderBytes { throw tooLarge }
                    connection.headSearchFrom = connection.input.count - 2  // a line end may be cut after its LF
                    return
                }
                guard end <= limits.maxHeaderBytes else { throw tooLarge }
                let head = try parseHead(connection.input[..<end])
                let length = try head.bodyLength(limit: limits.maxBodyBytes)
                connection.state = .readingBody(head, bodyStart: end, length: length)
                // a client that asks before sending its body (older curl, for one over 1 KB)
                // would otherwise wait a second for the answer
                if head.minorVersion == 1, head.headers["expect"]?.lowercased() == "100-continue", connection.input.count < end + length {
                    let interim = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)
                    // nothing has been sent yet, so the socket buffer takes it whole
                    guard interim.withUnsafeBytes({ send(connection.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == interim.count else {
                        return connection.close()
                    }
                }
            }
            if case .readingBody(let head, let start, let length) = connection.state, connection.input.count >= start + length {
                let request = HTTPRequest(method: head.method, path: head.path, query: head.query, headers: head.headers,
                                          body: Array(connection.input[start..<start + length]),
                                          peerIsLoopback: connection.peerIsLoopback, peer: connection.peer)
                respond(connection, handler(request), includeBody: head.method != "HEAD", now: now)
            }
        } catch {
            respond(connection, .text("\(error.reason)\n", status: error.status), includeBody: true, now: now)
        }
    }

    private func respond(_ connection: Connection, _ response: HTTPResponse, includeBody: Bool, now: UInt64) {
        connection.output = response.serialized(includeBody: includeBody, date: httpDate(secondsSinceEpoch: time(nil)))
        connection.written = 0
        connection.input = []
        connection.state = .writing
        connection.deadline = now + limits.writeTimeout.nanoseconds
        write(connection, now: now)  // most responses fit the socket buffer: no wait for POLLOUT
    }

    private func write(_ connection: Connection, now: UInt64) {
        while connection.written < connection.output.count {
            let count = connection.output.withUnsafeBytes {
                send(connection.fd, $0.baseAddress! + connection.written, $0.count - connection.written, Int32(MSG_NOSIGNAL))
            }
            if count < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN, errno != EWOULDBLOCK { connection.close() }  // the client went away
                return
            }
            connection.written += count
        }
        // Lingering: closing now, with bytes of the client unread (a body refused with
        // 413), would reset the connection and could drop the response before it is read.
        _ = shutdown(connection.fd, Int32(SHUT_WR))
        connection.output = []
        connection.state = .lingering
        connection.deadline = now + Self.lingerTimeout.nanoseconds
    }

    private func expire(_ connection: Connection, now: UInt64) {
        switch connection.state {
        case .readingHead, .readingBody:
            let response = HTTPResponse.text("request not complete within \(limits.requestTimeout)\n", status: 408)
            respond(connection, response, includeBody: true, now: now)
        case .writing:
            // reset: the unsent bytes are freed now, not left to an orphaned socket
            connection.close(reset: true)
        case .lingering:
            connection.close()
        }
    }
}

/// One client's connection and where its exchange stands.
private final class Connection {
    enum State {
        /// Until the empty line that ends the head.
        case readingHead
        /// Until `length` bytes have come after the head, which ends at `bodyStart`.
        case readingBody(RequestHead, bodyStart: Int, length: Int)
        /// Sending `output`.
        case writing
        /// Response sent and the write side shut: reading and discarding until the client closes.
        case lingering
    }

    /// -1 once closed.
    private(set) var fd: Int32
    let peer: String
    let peerIsLoopback: Bool
    var state = State.readingHead
    /// When the current state has run out of time (monotonic nanoseconds).
    var deadline: UInt64
    var input: [UInt8] = []
    /// Where to look for the end of the head next (bytes before it have been searched).
    var headSearchFrom = 0
    var output: [UInt8] = []
    var written = 0

    init(fd: Int32, peer: String, peerIsLoopback: Bool, deadline: UInt64) {
        self.fd = fd
        self.peer = peer
        self.peerIsLoopback = peerIsLoopback
        self.deadline = deadline
    }

    func close(reset: Bool = false) {
        guard fd >= 0 else { return }
        if reset {
            var option = linger(l_onoff: 1, l_linger: 0)
            _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        }
        Glibc.close(fd)
        fd = -1
    }
}

/// An IPv4 or IPv6 socket address.
struct SocketAddress: CustomStringConvertible {
    private var storage = sockaddr_storage()

    init() {}

    /// "ADDRESS:PORT" (see HTTPServer); nil when `listen` is not one.
    init?(listen: String) {
        let host: Substring, portText: Substring
        if listen.hasPrefix("[") {
            guard let close = listen.firstIndex(of: "]"), listen[close...].hasPrefix("]:") else { return nil }
            host = listen[listen.index(after: listen.startIndex)..<close]
            portText = listen[listen.index(close, offsetBy: 2)...]
        } else {
            guard let colon = listen.lastIndex(of: ":") else { return nil }
            host = listen[..<colon] == "localhost" ? "127.0.0.1" : listen[..<colon]
            portText = listen[listen.index(after: colon)...]
        }
        guard !portText.isEmpty, portText.allSatisfy(\.isASCII), portText.allSatisfy(\.isNumber), let port = UInt16(portText) else { return nil }
        let family = listen.hasPrefix("[") ? AF_INET6 : AF_INET
        storage.ss_family = sa_family_t(family)
        let parsed = withUnsafeMutableBytes(of: &storage) { bytes in
            // the port (network order) is at offset 2 in both sockaddr_in and sockaddr_in6
            bytes.storeBytes(of: port.bigEndian, toByteOffset: 2, as: UInt16.self)
            let addressOffset = family == AF_INET ? MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)! : MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!
            return inet_pton(family, String(host), bytes.baseAddress! + addressOffset)
        }
        guard parsed == 1 else { return nil }
    }

    var family: Int32 { Int32(storage.ss_family) }
    var port: UInt16 { withUnsafeBytes(of: storage) { UInt16(bigEndian: $0.load(fromByteOffset: 2, as: UInt16.self)) } }

    /// The address's bytes, 4 or 16 (network order).
    var addressBytes: [UInt8] {
        withUnsafeBytes(of: storage) { bytes in
            switch family {
            case AF_INET: Array(bytes[MemoryLayout<sockaddr_in>.offset(of: \.sin_addr)!...].prefix(4))
            case AF_INET6: Array(bytes[MemoryLayout<sockaddr_in6>.offset(of: \.sin6_addr)!...].prefix(16))
            default: []
            }
        }
    }

    var isLoopback: Bool { isLoopbackAddress(addressBytes) }

    /// "127.0.0.1:53122" or "[::1]:53122".
    var description: String {
        var bytes = addressBytes
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard !bytes.isEmpty, inet_ntop(family, &bytes, &text, socklen_t(text.count)) != nil else { return "unknown" }
        let address = text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        return family == AF_INET6 ? "[\(address)]:\(port)" : "\(address):\(port)"
    }

    var length: socklen_t { socklen_t(family == AF_INET6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size) }

    func withSockaddr<T>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> T) -> T {
        withUnsafeBytes(of: storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), length) }
    }

    mutating func withMutableSockaddr<T>(_ body: (UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> T) -> T {
        var capacity = socklen_t(MemoryLayout<sockaddr_storage>.size)
        return withUnsafeMutableBytes(of: &storage) { body($0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &capacity) }
    }
}

/// 127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104 (how a dual-stack "[::]" listener sees
/// 127.0.0.1); `bytes` is an IPv4 or IPv6 address in network order.
func isLoopbackAddress(_ bytes: [UInt8]) -> Bool {
    switch bytes.count {
    case 4: bytes[0] == 127
    case 16: bytes == [UInt8](repeating: 0, count: 15) + [1] || (bytes.prefix(12) == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff] && bytes[12] == 127)
    default: false
    }
}

/// accept(2) with SOCK_NONBLOCK | SOCK_CLOEXEC set atomically, so no fork/exec on
/// another thread (the agent runs processes) inherits a connection. glibc has had
/// accept4 since 2.10, but Swift's Glibc module hides it behind _GNU_SOURCE: it is
/// looked up once, with accept + fcntl where it is missing.
private typealias Accept4 = @convention(c) (Int32, UnsafeMutablePointer<sockaddr>?, UnsafeMutablePointer<socklen_t>?, Int32) -> Int32
private let accept4: Accept4? = dlsym(dlopen(nil, RTLD_NOW), "accept4").map { unsafeBitCast($0, to: Accept4.self) }

private func acceptNonBlockingCloseOnExec(_ listener: Int32, _ address: UnsafeMutablePointer<sockaddr>, _ length: UnsafeMutablePointer<socklen_t>) -> Int32 {
    if let accept4 { return accept4(listener, address, length, Int32(SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue)) }
    let fd = accept(listener, address, length)
    if fd >= 0 {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        _ = fcntl(fd, F_SETFL, O_NONBLOCK)
    }
    return fd
}

private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

extension Duration {
    /// Whole nanoseconds, 0 for a negative duration.
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds / 1_000_000_000))
    }
}
