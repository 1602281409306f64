import CHoptraceNetns
import Foundation
import HoptraceCore

/// Built-in traffic between lab namespaces, so `demo` and the tests need no
/// external tools. Sockets are created on a short-lived thread that entered the
/// namespace (a socket stays in the namespace it was made in); all I/O then runs on
/// ordinary threads.
public enum Traffic {
    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    /// Runs `body` on a new thread inside the network namespace at `path`.
    public static func inNetns<T: Sendable>(_ path: String, _ body: @escaping @Sendable () -> T) throws -> T {
        let box = Box<Result<T, Failure>>()
        let thread = Thread {
            let rc = ht_enter_netns(path)
            guard rc == 0 else {
                return box.finish(.failure(Failure(description: "entering netns \(path): \(String(cString: strerror(-rc)))")))
            }
            box.finish(.success(body()))
        }
        thread.start()
        return try box.wait().get()
    }

    static func errnoText() -> String { String(cString: strerror(errno)) }

    static func ipv4(_ address: String, port: UInt16) -> sockaddr_in {
        var sa = sockaddr_in()
        sa.sin_family = sa_family_t(AF_INET)
        sa.sin_port = port.bigEndian
        inet_pton(AF_INET, address, &sa.sin_addr)
        return sa
    }

    static func socketIn(_ netns: String, type: Int32) throws -> Int32 {
        let fd = try inNetns(netns) { socket(AF_INET, type | Int32(SOCK_CLOEXEC.rawValue), 0) }
        guard fd >= 0 else { throw Failure(description: "socket: \(errnoText())") }
        return fd
    }

    static func bindListen(_ fd: Int32, _ address: String, _ port: UInt16, listen doListen: Bool) throws {
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var sa = ipv4(address, port: port)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Failure(description: "bind \(address):\(port): \(errnoText())") }
        if doListen, listen(fd, 16) != 0 { throw Failure(description: "listen: \(errnoText())") }
    }

    static func connectTo(_ fd: Int32, _ address: String, _ port: UInt16) throws {
        var sa = ipv4(address, port: port)
        let rc = withUnsafePointer(to: &sa) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else { throw Failure(description: "connect \(address):\(port): \(errnoText())") }
    }

    /// The local port a socket is bound to.
    static func localPort(_ fd: Int32) -> UInt16 {
        var local = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &local) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return UInt16(bigEndian: local.sin_port)
    }

    static func setTimeout(_ fd: Int32, seconds: Int) {
        var tv = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    static func readFull(_ fd: Int32, _ buf: UnsafeMutableRawPointer, _ n: Int) -> Bool {
        var got = 0
        while got < n {
            let r = recv(fd, buf + got, n - got, 0)
            if r <= 0 { return false }
            got += r
        }
        return true
    }

    static func nowNs() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }

    // MARK: - TCP request/response

    public struct RequestResponseResult: Sendable {
        /// Round trip of each request as the client measured it.
        public var roundTripsNs: [UInt64]
        public var clientPort: UInt16
    }

    /// `requests` request/response exchanges of `size` bytes over one TCP connection,
    /// from `client` to `server` (namespaces), paced by `intervalUs` between requests.
    public static func tcpRequestResponse(client: String, server: String, serverAddress: String, port: UInt16,
                                          requests: Int, size: Int = 64, intervalUs: UInt32 = 0) throws -> RequestResponseResult {
        let lfd = try socketIn(server, type: Int32(SOCK_STREAM.rawValue))
        defer { close(lfd) }
        try bindListen(lfd, serverAddress, port, listen: true)
        let serverDone = Box<Void>()
        Thread {
            defer { serverDone.finish(()) }
            setTimeout(lfd, seconds: 10)
            let c = accept(lfd, nil, nil)
            guard c >= 0 else { return }
            defer { close(c) }
            setTimeout(c, seconds: 10)
            var one: Int32 = 1
            setsockopt(c, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
            let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
            defer { buf.deallocate() }
            while readFull(c, buf, size) { if send(c, buf, size, Int32(MSG_NOSIGNAL)) != size { break } }
        }.start()
        let fd = try socketIn(client, type: Int32(SOCK_STREAM.rawValue))
        defer { close(fd) }
        setTimeout(fd, seconds: 10)
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        try connectTo(fd, serverAddress, port)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buf.deallocate() }
        memset(buf, 0x5a, size)
        var rtts: [UInt64] = []
        rtts.reserveCapacity(requests)
        for _ in 0..<requests {
            let t0 = nowNs()
            guard send(fd, buf, size, Int32(MSG_NOSIGNAL)) == size, readFull(fd, buf, size) else {
                throw Failure(description: "request/response broke after \(rtts.count) of \(requests): \(errnoText())")
            }
            rtts.append(nowNs() - t0)
            if intervalUs > 0 { usleep(intervalUs) }
        }
        shutdown(fd, Int32(SHUT_RDWR))
        serverDone.wait()
        return RequestResponseResult(roundTripsNs: rtts, clientPort: localPort(fd))
    }

    // MARK: - TCP bulk

    public struct BulkResult: Sendable {
        public var bytesSent: UInt64
        public var bytesReceived: UInt64
        public var seconds: Double
        public var gbitPerSecond: Double { seconds > 0 ? Double(bytesReceived) * 8 / seconds / 1e9 : 0 }
    }

    /// Sends for `seconds` (or `bytes`, whichever first) over one TCP connection and
    /// checks every byte arrived.
    public static func tcpBulk(client: String, server: String, serverAddress: String, port: UInt16,
                               seconds: Double, bytes: UInt64 = .max) throws -> BulkResult {
        let lfd = try socketIn(server, type: Int32(SOCK_STREAM.rawValue))
        defer { close(lfd) }
        try bindListen(lfd, serverAddress, port, listen: true)
        let received = Box<UInt64>()
        Thread {
            setTimeout(lfd, seconds: 10)
            let c = accept(lfd, nil, nil)
            guard c >= 0 else { return received.finish(0) }
            defer { close(c) }
            setTimeout(c, seconds: 10)
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 16, alignment: 8)
            defer { buf.deallocate() }
            var total: UInt64 = 0
            while true {
                let r = recv(c, buf, 1 << 16, 0)
                if r <= 0 { break }
                total += UInt64(r)
            }
            received.finish(total)
        }.start()
        let fd = try socketIn(client, type: Int32(SOCK_STREAM.rawValue))
        defer { close(fd) }
        setTimeout(fd, seconds: 10)
        try connectTo(fd, serverAddress, port)
        let chunk = 1 << 16
        let buf = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 8)
        defer { buf.deallocate() }
        memset(buf, 0xa5, chunk)
        let start = nowNs(), end = start + UInt64(seconds * 1e9)
        var sent: UInt64 = 0
        while nowNs() < end && sent < bytes {
            let n = send(fd, buf, Int(min(UInt64(chunk), bytes - sent)), Int32(MSG_NOSIGNAL))
            if n <= 0 { throw Failure(description: "bulk send failed after \(sent) bytes: \(errnoText())") }
            sent += UInt64(n)
        }
        shutdown(fd, Int32(SHUT_WR))
        let got = received.wait()
        return BulkResult(bytesSent: sent, bytesReceived: got, seconds: Double(nowNs() - start) / 1e9)
    }

    // MARK: - UDP

    /// Sends `count` datagrams with nobody bound to receive them on purpose (the
    /// receiver may be absent or filtered: tests of drops). `sendBufferBytes` lets
    /// the datagrams wait in a slow qdisc without blocking the sender.
    public static func sendDatagrams(client: String, to address: String, port: UInt16, count: Int, size: Int = 100,
                                     sendBufferBytes: Int32? = nil) throws {
        let fd = try socketIn(client, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        if var bytes = sendBufferBytes,
           setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, socklen_t(MemoryLayout<Int32>.size)) != 0 {
            throw Failure(description: "setsockopt(SO_SNDBUFFORCE): \(errnoText())")
        }
        var sa = ipv4(address, port: port)
        let buf = [UInt8](repeating: 0x44, count: size)
        for _ in 0..<count {
            let n = withUnsafePointer(to: &sa) { p in
                p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, buf, size, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            guard n == size else { throw Failure(description: "sendto \(address):\(port): \(errnoText())") }
        }
    }

    public struct DatagramResult: Sendable {
        public var sent: Int
        public var received: Int
        public var clientPort: UInt16
    }

    /// Sends `count` datagrams of `size` bytes, `intervalUs` apart, and counts what arrives.
    public static func udp(client: String, server: String, serverAddress: String, port: UInt16,
                           count: Int, size: Int = 200, intervalUs: UInt32 = 100) throws -> DatagramResult {
        let sfd = try socketIn(server, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(sfd) }
        try bindListen(sfd, serverAddress, port, listen: false)
        var bufSize: Int32 = 4 << 20
        setsockopt(sfd, SOL_SOCKET, SO_RCVBUF, &bufSize, socklen_t(MemoryLayout<Int32>.size))
        let received = Box<Int>()
        let expected = count
        Thread {
            var tv = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
            let buf = UnsafeMutableRawPointer.allocate(byteCount: 65536, alignment: 8)
            defer { buf.deallocate() }
            var n = 0
            while n < expected {
                if recv(sfd, buf, 65536, 0) < 0 { break } // a second of silence: the sender is done
                n += 1
            }
            received.finish(n)
        }.start()
        let fd = try socketIn(client, type: Int32(SOCK_DGRAM.rawValue))
        defer { close(fd) }
        try connectTo(fd, serverAddress, port)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 8)
        defer { buf.deallocate() }
        memset(buf, 0x42, size)
        var sent = 0
        for _ in 0..<count {
            if send(fd, buf, size, 0) == size { sent += 1 }
            if intervalUs > 0 { usleep(intervalUs) }
        }
        return DatagramResult(sent: sent, received: received.wait(), clientPort: localPort(fd))
    }
}

/// A value handed from one thread to another exactly once.
final class Box<T>: @unchecked Sendable {
    private var value: T?
    private let ready = DispatchSemaphore(value: 0)

    func finish(_ v: T) {
        value = v
        ready.signal()
    }

    func wait() -> T {
        ready.wait()
        return value!
    }
}
