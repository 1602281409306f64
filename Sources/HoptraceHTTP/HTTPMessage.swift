import Glibc

/// A request as the handler sees it: complete, parsed and percent-decoded.
public struct HTTPRequest: Sendable {
    /// As sent, e.g. "GET" (methods are case-sensitive).
    public var method: String
    /// Percent-decoded path, without the query, e.g. "/metrics".
    public var path: String
    /// Percent-decoded query parameters ("+" is a space); of a repeated name, the last value.
    public var query: [String: String]
    /// Header names lowercased; a repeated header's values joined with ", ".
    public var headers: [String: String]
    public var body: [UInt8]
    /// The peer is 127.0.0.0/8, ::1 or ::ffff:127.0.0.0/104 (what may POST /trigger).
    public var peerIsLoopback: Bool
    /// "127.0.0.1:53122" or "[::1]:53122", for logs.
    public var peer: String

    public init(method: String = "GET", path: String, query: [String: String] = [:], headers: [String: String] = [:],
                body: [UInt8] = [], peerIsLoopback: Bool = true, peer: String = "127.0.0.1:0") {
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.peerIsLoopback = peerIsLoopback
        self.peer = peer
    }
}

/// What the handler returns. The server adds Content-Length, Connection: close and
/// Date itself (the handler's own headers of those names are left out).
public struct HTTPResponse: Sendable {
    public var status: Int
    /// Sent in order; Content-Type is the first.
    public var headers: [(String, String)]
    /// Also the length a HEAD request is told; a HEAD response carries no body.
    public var body: [UInt8]

    public init(status: Int = 200, contentType: String, body: [UInt8]) {
        self.status = status
        self.headers = [("Content-Type", contentType)]
        self.body = body
    }

    public static func text(_ text: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "text/plain; charset=utf-8", body: Array(text.utf8))
    }

    public static func json(_ json: String, status: Int = 200) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: Array(json.utf8))
    }

    public static var notFound: HTTPResponse { .text("not found\n", status: 404) }

    public static func methodNotAllowed(allow: [String]) -> HTTPResponse {
        var response = HTTPResponse.text("method not allowed\n", status: 405)
        response.headers.append(("Allow", allow.joined(separator: ", ")))
        return response
    }

    /// Status line, headers and (unless `includeBody` is false, for HEAD) the body.
    func serialized(includeBody: Bool, date: String) -> [UInt8] {
        var head = "HTTP/1.1 \(status) \(Self.reasonPhrase(status))\r\n"
        let serverOwned: Set<String> = ["content-length", "connection", "date", "transfer-encoding"]
        for (name, value) in headers where !serverOwned.contains(name.lowercased()) {
            // a CR or LF from a handler would let it forge headers or a second response
            if name.utf8.contains(where: { $0 < 0x21 || $0 == UInt8(ascii: ":") }) || value.utf8.contains(where: { $0 == 0x0d || $0 == 0x0a }) {
                continue
            }
            head += "\(name): \(value)\r\n"
        }
        head += "Content-Length: \(body.count)\r\nConnection: close\r\nDate: \(date)\r\n\r\n"
        return Array(head.utf8) + (includeBody ? body : [])
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 201: "Created"
        case 202: "Accepted"
        case 204: "No Content"
        case 400: "Bad Request"
        case 403: "Forbidden"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 409: "Conflict"
        case 411: "Length Required"
        case 413: "Content Too Large"
        case 429: "Too Many Requests"
        case 431: "Request Header Fields Too Large"
        case 500: "Internal Server Error"
        case 501: "Not Implemented"
        case 503: "Service Unavailable"
        case 505: "HTTP Version Not Supported"
        default: ""  // the reason phrase may be empty (RFC 9112 §4)
        }
    }
}

/// An IMF-fixdate for the Date header, e.g. "Sun, 06 Nov 1994 08:49:37 GMT", written
/// out by hand: strftime would follow the process's locale.
func httpDate(secondsSinceEpoch: Int) -> String {
    var seconds = time_t(secondsSinceEpoch)
    var t = tm()
    gmtime_r(&seconds, &t)
    let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
    return "\(days[Int(t.tm_wday)]), \(two(t.tm_mday)) \(months[Int(t.tm_mon)]) \(1900 + t.tm_year) "
        + "\(two(t.tm_hour)):\(two(t.tm_min)):\(two(t.tm_sec)) GMT"
}
