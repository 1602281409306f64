import Foundation
import Glibc
@testable import HoptraceHTTP
import XCTest

/// The server over loopback: every server listens on port 0 and is stopped in
/// tearDown; every client is closed by the test that opened it.
final class HTTPServerTests: XCTestCase {
    private var servers: [HTTPServer] = []

    override func tearDown() {
        for server in servers { server.stop() }
        servers = []
    }

    static let metricsBody = Array("hoptrace_hops_total 1\n".utf8)
    static let largeBody = [UInt8](repeating: UInt8(ascii: "x"), count: 16 << 20)
    static let cachedBody = [UInt8](repeating: UInt8(ascii: "m"), count: 100 * 1024)

    /// The routes the tests use, in the manner of the agent's: quick, from prepared buffers.
    static func route(_ request: HTTPRequest) -> HTTPResponse {
        switch (request.method, request.path) {
        case ("GET", "/metrics"), ("HEAD", "/metrics"):
            return HTTPResponse(contentType: "text/plain; version=0.0.4; charset=utf-8", body: metricsBody)
        case ("GET", "/large"):
            return HTTPResponse(contentType: "application/octet-stream", body: largeBody)
        case ("GET", "/cached"):
            return HTTPResponse(contentType: "text/plain", body: cachedBody)
        case (_, "/echo"), (_, "/echo dir/a+b"):
            let query = request.query.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
            return .text("""
                method=\(request.method)
                path=\(request.path)
                query=\(query)
                body=\(String(decoding: request.body, as: UTF8.self))
                loopback=\(request.peerIsLoopback)
                peer=\(request.peer)
                user-agent=\(request.headers["user-agent"] ?? "")
                expect=\(request.headers["expect"] ?? "")
                """)
        case ("POST", "/trigger"):
            return request.peerIsLoopback ? .json("{\"triggered\":true}", status: 202) : .text("loopback only\n", status: 403)
        case (_, "/trigger"):
            return .methodNotAllowed(allow: ["POST"])
        default:
            return .notFound
        }
    }

    private func startServer(_ listen: String = "127.0.0.1:0", limits: HTTPServer.Limits = .init()) throws -> HTTPServer {
        let server = try HTTPServer(listen: listen, limits: limits, handler: Self.route)
        servers.append(server)
        server.start()
        return server
    }

    // MARK: Requests and responses

    func testGetAndHead() throws {
        let server = try startServer()
        let get = try exchange("GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", port: server.port)
        XCTAssertEqual(get.statusLine, "HTTP/1.1 200 OK")
        XCTAssertEqual(get.body, Self.metricsBody)
        XCTAssertEqual(get.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(get.headers["content-length"], String(Self.metricsBody.count))
        XCTAssertEqual(get.headers["connection"], "close")
        XCTAssertTrue(get.headers["date"]?.hasSuffix(" GMT") ?? false, "\(get.headers)")

        let head = try exchange("HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n", port: server.port)
        XCTAssertEqual(head.status, 200)
        XCTAssertEqual(head.headers["content-length"], String(Self.metricsBody.count))
        XCTAssertEqual(head.body, [])

        // HTTP/1.0 needs no Host; a bare LF ends lines too
        let old = try exchange("GET /metrics HTTP/1.0\n\n", port: server.port)
        XCTAssertEqual(old.status, 200)
        XCTAssertEqual(old.body, Self.metricsBody)
    }

    func testNotFoundAndMethodNotAllowedFromTheHandler() throws {
        let server = try startServer()
        XCTAssertEqual(try exchange("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 404)
        let get = try exchange("GET /trigger HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port)
        XCTAssertEqual(get.statusLine, "HTTP/1.1 405 Method Not Allowed")
        XCTAssertEqual(get.headers["allow"], "POST")
    }

    func testPathAndQueryArePercentDecoded() throws {
        let server = try startServer()
        let response = try exchange("GET /echo%20dir/a+b?window=10s&flow=a%2Bb&note=two+words&flag&k%3D=%C3%A9 HTTP/1.1\r\n"
                                    + "Host: x\r\nUser-Agent:  Prometheus/2.45 \t\r\n\r\n", port: server.port)
        XCTAssertEqual(response.status, 200)
        XCTAssertEqual(response.text, """
            method=GET
            path=/echo dir/a+b
            query=flag=&flow=a+b&k==é&note=two words&window=10s
            body=
            loopback=true
            peer=\(response.peerLine)
            user-agent=Prometheus/2.45
            expect=
            """)
        XCTAssertTrue(response.peerLine.hasPrefix("127.0.0.1:"), response.peerLine)
        XCTAssertEqual(try exchange("GET /echo%zz HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 400)
        XCTAssertEqual(try exchange("GET /echo?a=%ff HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 400, "not UTF-8")
    }

    func testPostWithBody() throws {
        let server = try startServer()
        let response = try exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world", port: server.port)
        XCTAssertTrue(response.text.contains("method=POST\n"), response.text)
        XCTAssertTrue(response.text.contains("body=hello world\n"), response.text)

        // the body in a later packet than the head
        let client = try TestClient(port: server.port)
        defer { client.close() }
        try client.send("POST /trigger HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
        usleep(50_000)
        try client.send("{}")
        let trigger = try XCTUnwrap(TestResponse(client.readToEnd().bytes))
        XCTAssertEqual(trigger.statusLine, "HTTP/1.1 202 Accepted")
        XCTAssertEqual(trigger.text, "{\"triggered\":true}")
    }

    func testCurl() throws {
        let curl = "/usr/bin/curl"
        guard FileManager.default.isExecutableFile(atPath: curl) else {
            print("HTTP: no \(curl) on this machine; the server was not tried with curl")
            throw XCTSkip("no \(curl)")
        }
        let server = try startServer()
        func run(_ arguments: [String]) throws -> String {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: curl)
            process.arguments = ["--silent", "--show-error", "--max-time", "5"] + arguments
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return text
        }
        let base = "http://127.0.0.1:\(server.port)"
        XCTAssertEqual(try run([base + "/metrics"]), String(decoding: Self.metricsBody, as: UTF8.self))
        XCTAssertEqual(try run(["--head", "--output", "/dev/null", "--write-out", "%{http_code} %{size_download}", base + "/metrics"]), "200 0")
        // older curl sends Expect: 100-continue for a body over 1 KB (newer ones over 1 MB),
        // then waits a second for the 100 unless it comes
        let body = String(repeating: "j", count: 2000)
        let begin = ContinuousClock.now
        let echo = try run(["--header", "Content-Type: application/json", "--header", "Expect: 100-continue",
                            "--data-binary", body, base + "/echo?from=curl"])
        XCTAssertLessThan(seconds(since: begin), 0.5)
        XCTAssertTrue(echo.contains("body=\(body)\n"), echo)
        XCTAssertTrue(echo.contains("query=from=curl\n"), echo)
        XCTAssertTrue(echo.hasSuffix("expect=100-continue"), echo)
    }

    // MARK: Refusals and limits

    func testMalformedRequestsAreRefused() throws {
        let server = try startServer()
        let cases: [(request: String, status: Int)] = [
            ("garbage\r\n\r\n", 400),
            ("\u{1}\u{2}\u{3} / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
            ("GET /metrics\r\n\r\n", 400),                                      // HTTP/0.9
            ("GET  /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),                 // two spaces
            ("GET http://x/metrics HTTP/1.1\r\nHost: x\r\n\r\n", 400),          // absolute-form
            ("GET /metrics HTTP/2.0\r\nHost: x\r\n\r\n", 505),
            ("GET /metrics HTTP/1.1\r\n\r\n", 400),                             // no Host
            ("GET /metrics HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n folded\r\n\r\n", 400), // obs-fold
            ("GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", 400),                 // space before colon
            ("GET /metrics HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400),
            ("GET /metrics HTTP/1.1\r\nHost: x\rX: y\r\n\r\n", 400),            // bare CR
            ("GET /metrics HTTP/1.1\r\nHost: x\r\nX: a\u{7}b\r\n\r\n", 400),    // control byte
            ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
            ("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", 400),
            ("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 501),
        ]
        for (request, status) in cases {
            XCTAssertEqual(try exchange(request, port: server.port).status, status, request.debugDescription)
        }
    }

    func testMangledRequestsNeverStopTheServer() throws {
        let server = try startServer()
        var random = SplitMix64(seed: 0x6874_7470)
        let valid = Array("POST /echo?a=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".utf8)
        let alphabet = Array("\r\n :%?&=/\t\0\u{7f}GETHTP1.0Content-Length9".utf8) + [0x80, 0xff]
        var statuses: [Int: Int] = [:]
        for _ in 0..<300 {
            var request = valid
            for _ in 0..<(1 + random.next() % 4) {
                let at = Int(random.next() % UInt64(request.count))
                let byte = alphabet[Int(random.next() % UInt64(alphabet.count))]
                switch random.next() % 3 {
                case 0: request[at] = byte
                case 1: request.insert(byte, at: at)
                default: request.remove(at: at)
                }
            }
            let client = try TestClient(port: server.port)
            try client.send(request)
            client.shutdownWrite()  // an incomplete request ends here: closed without an answer
            let (bytes, _) = client.readToEnd()
            client.close()
            let status = bytes.isEmpty ? 0 : try XCTUnwrap(TestResponse(bytes), "\(request)").status
            statuses[status, default: 0] += 1
        }
        XCTAssertTrue(Set(statuses.keys).isSubset(of: [0, 200, 400, 404, 405, 413, 501, 505]), "\(statuses)")
        XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 200)
        print("HTTP: 300 mangled requests answered (status: count, 0 for closed) \(statuses.sorted { $0.key < $1.key })")
    }

    func testOversizedHeadGets431() throws {
        let server = try startServer()
        // never ending: refused once past the limit
        let endless = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " + String(repeating: "a", count: 9000)
        XCTAssertEqual(try exchange(endless, port: server.port).status, 431)
        // complete, but past the limit
        let complete = "GET /metrics HTTP/1.1\r\nHost: x\r\n" + String(repeating: "X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", count: 200) + "\r\n"
        XCTAssertEqual(try exchange(complete, port: server.port).status, 431)
        // just under it is fine
        let under = "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Filler: " + String(repeating: "a", count: 8000) + "\r\n\r\n"
        XCTAssertEqual(try exchange(under, port: server.port).status, 200)
    }

    func testOversizedBodyGets413() throws {
        let server = try startServer()
        // the whole body is sent: the server reads and discards it after its answer,
        // so closing does not reset the connection before the 413 is read
        let body = String(repeating: "b", count: 70_000)
        let response = try exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)", port: server.port)
        XCTAssertEqual(response.statusLine, "HTTP/1.1 413 Content Too Large")
        let limit = try exchange("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n" + String(repeating: "b", count: 65536), port: server.port)
        XCTAssertEqual(limit.status, 200)
    }

    func testIdleClientGets408WhileOthersAreServed() throws {
        let server = try startServer(limits: .init(requestTimeout: .milliseconds(300)))
        let start = ContinuousClock.now
        let idle = try TestClient(port: server.port)
        defer { idle.close() }
        let trickling = try TestClient(port: server.port)
        defer { trickling.close() }
        let request = Array("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".utf8)
        var worst = 0.0
        for (index, byte) in request.prefix(5).enumerated() {
            try trickling.send([byte])  // one byte per 50 ms
            let begin = ContinuousClock.now
            let other = try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port)
            let took = seconds(since: begin)
            worst = max(worst, took)
            XCTAssertEqual(other.status, 200, "request \(index)")
            XCTAssertLessThan(took, 0.1, "request \(index) waited for a slow client")
            usleep(50_000)
        }
        let timedOut = try XCTUnwrap(TestResponse(idle.readToEnd().bytes))
        let waited = seconds(since: start)
        XCTAssertEqual(timedOut.statusLine, "HTTP/1.1 408 Request Timeout")
        XCTAssertGreaterThanOrEqual(waited, 0.29)
        XCTAssertLessThan(waited, 1.5)
        XCTAssertEqual(try XCTUnwrap(TestResponse(trickling.readToEnd().bytes)).status, 408)
        print("HTTP: idle client answered 408 after \(ms(waited)) ms; others served meanwhile in at most \(ms(worst)) ms")
    }

    func testClientThatDoesNotReadDoesNotBlockOthers() throws {
        let server = try startServer(limits: .init(writeTimeout: .milliseconds(500)))
        let stuck = try TestClient(port: server.port, receiveBuffer: 4096)
        defer { stuck.close() }
        try stuck.send("GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        usleep(50_000)  // the server has filled the socket buffers and waits for POLLOUT
        for index in 0..<5 {
            let begin = ContinuousClock.now
            XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 200)
            XCTAssertLessThan(seconds(since: begin), 0.1, "request \(index) waited for a client that does not read")
        }
        usleep(700_000)  // past the write timeout: the server has dropped the connection
        let (received, ended) = stuck.readToEnd()
        XCTAssertNotEqual(ended, .timedOut, "the connection was not closed after writeTimeout")
        XCTAssertLessThan(received.count, Self.largeBody.count)
        print("HTTP: a client that did not read got \(received.count) of \(Self.largeBody.count) bytes, then \(ended)")
    }

    func testMoreThanMaxConnectionsGet503() throws {
        let server = try startServer(limits: .init(requestTimeout: .seconds(3), maxConnections: 3))
        let idle = try (0..<3).map { _ in try TestClient(port: server.port) }
        usleep(100_000)  // accepted
        for _ in 0..<5 {
            XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).statusLine,
                           "HTTP/1.1 503 Service Unavailable")
        }
        idle[0].close()
        usleep(100_000)  // the server has seen the close
        XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port).status, 200)
        for client in idle { client.close() }
    }

    func testStopWithClientsConnectedIsPromptAndFreesThePort() throws {
        let server = try startServer()
        let port = server.port
        let idle = try (0..<3).map { _ in try TestClient(port: port) }
        let stuck = try TestClient(port: port, receiveBuffer: 4096)
        try stuck.send("GET /large HTTP/1.1\r\nHost: x\r\n\r\n")
        let half = try TestClient(port: port)
        try half.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
        usleep(100_000)

        let begin = ContinuousClock.now
        server.stop()
        let took = seconds(since: begin)
        XCTAssertLessThan(took, 0.5)
        server.stop()  // idempotent
        for client in idle + [half] {
            XCTAssertEqual(client.readToEnd().bytes, [], "closed without a response")
        }
        for client in idle + [stuck, half] { client.close() }

        let again = try startServer("127.0.0.1:\(port)")
        XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: again.port).status, 200)
        print("HTTP: stop() with 5 clients connected took \(ms(took)) ms")
    }

    // MARK: Listening

    func testAddressInUseSaysWhatToDo() throws {
        let server = try startServer()
        XCTAssertThrowsError(try HTTPServer(listen: "127.0.0.1:\(server.port)") { _ in .notFound }) { error in
            let error = error as! HTTPServerError
            XCTAssertEqual(error.code, EADDRINUSE)
            XCTAssertEqual(error.description, "cannot listen on 127.0.0.1:\(server.port): address in use "
                           + "(another hoptrace serve? choose --listen with another port)")
        }
    }

    func testListenAddresses() throws {
        for bad in ["9479", "127.0.0.1", ":9479", "::1:9479", "[::1]9479", "[::1]", "node.example:9479", "127.0.0.1:65536",
                    "127.0.0.1:-1", "127.0.0.1:+1", "1.2.3:9479", "[127.0.0.1]:9479", "127.0.0.1:９"] {
            XCTAssertThrowsError(try HTTPServer(listen: bad) { _ in .notFound }, bad) { error in
                XCTAssertEqual((error as! HTTPServerError).code, 0, bad)
                XCTAssertTrue("\(error)".hasPrefix("cannot listen on \(bad): not ADDRESS:PORT (use 127.0.0.1:9479"), "\(error)")
            }
        }
        for good in ["localhost:0", "0.0.0.0:0", "127.0.0.2:0"] {
            let server = try startServer(good)
            XCTAssertNotEqual(server.port, 0)
            XCTAssertEqual(try exchange("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", port: server.port,
                                        host: good.hasPrefix("127.0.0.2") ? "127.0.0.2" : "127.0.0.1").status, 200, good)
        }
    }

    func testIPv6Loopback() throws {
        let server: HTTPServer
        do {
            server = try startServer("[::1]:0")
        } catch {
            print("HTTP: no IPv6 loopback on this machine (\(error)); IPv6 not tested")
            throw XCTSkip("no ::1 on this machine: \(error)")
        }
        let echo = try exchange("GET /echo HTTP/1.1\r\nHost: [::1]\r\n\r\n", port: server.port, host: "::1")
        XCTAssertTrue(echo.text.contains("loopback=true"), echo.text)
        XCTAssertTrue(echo.peerLine.hasPrefix("[::1]:"), echo.peerLine)

        // "[::]" takes IPv4 too, and sees 127.0.0.1 as ::ffff:127.0.0.1: still loopback
        let dual = try startServer("[::]:0")
        let mapped = try exchange("GET /echo HTTP/1.1\r\nHost: x\r\n\r\n", port: dual.port, host: "127.0.0.1")
        XCTAssertTrue(mapped.text.contains("loopback=true"), mapped.text)
        XCTAssertTrue(mapped.peerLine.hasPrefix("[::ffff:127.0.0.1]:"), mapped.peerLine)
        XCTAssertEqual(try exchange("POST /trigger HTTP/1.1\r\nHost: x\r\n\r\n", port: dual.port, host: "::1").status, 202)
    }

    // MARK: Pieces

    func testLoopbackAddresses() {
        XCTAssertTrue(isLoopbackAddress([127, 0, 0, 1]))
        XCTAssertTrue(isLoopbackAddress([127, 8, 9, 10]))
        XCTAssertFalse(isLoopbackAddress([10, 0, 0, 1]))
        XCTAssertFalse(isLoopbackAddress([128, 0, 0, 1]))
        XCTAssertTrue(isLoopbackAddress([UInt8](repeating: 0, count: 15) + [1]))
        XCTAssertFalse(isLoopbackAddress([UInt8](repeating: 0, count: 16)))  // ::
        XCTAssertTrue(isLoopbackAddress([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 127, 0, 0, 1]))
        XCTAssertFalse(isLoopbackAddress([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 1]))
        XCTAssertFalse(isLoopbackAddress([0xfe, 0x80] + [UInt8](repeating: 0, count: 13) + [1]))
    }

    func testEndOfHeadAcrossReads() {
        let head = Array("GET / HTTP/1.1\r\nHost: x\r\n\r\nbody".utf8)
        XCTAssertEqual(endOfHead(head, from: 0), head.count - 4)
        // searching again from where the last read ended (less 2) finds a CRLFCRLF cut in two
        XCTAssertNil(endOfHead(Array(head.prefix(26)), from: 0))
        XCTAssertEqual(endOfHead(head, from: 26 - 2), head.count - 4)
        XCTAssertEqual(endOfHead(Array("GET / HTTP/1.0\n\n".utf8), from: 0), 16)
    }

    func testHTTPDate() {
        XCTAssertEqual(httpDate(secondsSinceEpoch: 784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT")
    }

    // MARK: Throughput (printed, not asserted)

    func testThroughputOf100KBCachedBody() throws {
        let server = try startServer()
        let request = "GET /cached HTTP/1.1\r\nHost: x\r\n\r\n"
        var count = 0
        let begin = ContinuousClock.now
        while count < 5000, seconds(since: begin) < 2 {
            let response = try exchange(request, port: server.port)
            XCTAssertEqual(response.body.count, Self.cachedBody.count)
            count += 1
        }
        let took = seconds(since: begin)
        let rate = Double(count) / took
        print("HTTP: \(count) sequential requests for a 100 KB body over loopback in \(ms(took)) ms: "
              + "\(Int(rate)) requests/s, \(Int(rate * Double(Self.cachedBody.count) / 1e6)) MB/s, one connection each")
    }
}

// MARK: A blocking test client

private func seconds(since start: ContinuousClock.Instant) -> Double {
    let (whole, attoseconds) = (ContinuousClock.now - start).components
    return Double(whole) + Double(attoseconds) / 1e18
}

private func ms(_ seconds: Double) -> String { String(format: "%.1f", seconds * 1000) }

struct TestClientError: Error, CustomStringConvertible {
    let description: String
}

/// A blocking loopback client; receives time out after 5 s, so a broken server fails
/// a test rather than hanging it.
final class TestClient {
    private var fd: Int32

    enum End: Equatable { case closed, reset, timedOut }

    /// `receiveBuffer`: a small one (set before connecting) keeps the window small,
    /// as for a client that does not read.
    init(port: UInt16, host: String = "127.0.0.1", receiveBuffer: Int32? = nil) throws {
        let listen = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        guard let address = SocketAddress(listen: listen) else { throw TestClientError(description: "bad address \(listen)") }
        fd = socket(address.family, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        if var size = receiveBuffer { setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size)) }
        guard address.withSockaddr({ connect(fd, $0, $1) }) == 0 else {
            let error = TestClientError(description: "connect to \(listen): \(String(cString: strerror(errno)))")
            close()
            throw error
        }
    }

    deinit { close() }

    func send(_ text: String) throws { try send(Array(text.utf8)) }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let count = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
            guard count > 0 else { throw TestClientError(description: "send: \(String(cString: strerror(errno)))") }
            sent += count
        }
    }

    /// Everything until the server closes (or resets, or 5 s pass without a byte).
    func readToEnd() -> (bytes: [UInt8], ended: End) {
        var received: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count > 0 { received += buffer[..<count]; continue }
            if count == 0 { return (received, .closed) }
            if errno == EINTR { continue }
            return (received, errno == EAGAIN ? .timedOut : .reset)
        }
    }

    func shutdownWrite() { _ = shutdown(fd, Int32(SHUT_WR)) }

    func close() {
        if fd >= 0 { Glibc.close(fd) }
        fd = -1
    }
}

/// A seeded generator, so a failing mangled request can be found again.
struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A response as a test reads it.
struct TestResponse {
    let statusLine: String
    let status: Int
    let headers: [String: String]
    let body: [UInt8]

    init?(_ bytes: [UInt8]) {
        guard let end = endOfHead(bytes, from: 0) else { return nil }
        let lines = String(decoding: bytes[..<end], as: UTF8.self).components(separatedBy: "\r\n").filter { !$0.isEmpty }
        guard let first = lines.first, first.split(separator: " ").count >= 2, let status = Int(first.split(separator: " ")[1]) else { return nil }
        statusLine = first
        self.status = status
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            headers[parts[0].lowercased()] = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        }
        self.headers = headers
        body = Array(bytes[end...])
    }

    var text: String { String(decoding: body, as: UTF8.self) }
    /// The peer the echo route saw.
    var peerLine: String { text.split(separator: "\n").first { $0.hasPrefix("peer=") }.map { String($0.dropFirst(5)) } ?? "" }
}

/// One request on a fresh connection; the response read until the server closes.
func exchange(_ request: String, port: UInt16, host: String = "127.0.0.1") throws -> TestResponse {
    let client = try TestClient(port: port, host: host)
    defer { client.close() }
    try client.send(request)
    let (bytes, ended) = client.readToEnd()
    guard let response = TestResponse(bytes) else {
        throw TestClientError(description: "no response to \(request.prefix(60).debugDescription) (\(bytes.count) bytes, then \(ended))")
    }
    return response
}
