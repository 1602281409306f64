/// Parsing of a request's head (request line and headers), strict where leniency has
/// caused request smuggling elsewhere: obsolete line folding, whitespace before a
/// colon, bare CRs and Transfer-Encoding are refused, not repaired.

/// A request the server answers itself with `status`, without calling the handler.
struct RejectedRequest: Error, Equatable {
    let status: Int
    let reason: String
}

/// The request line and headers of a request.
struct RequestHead {
    var method: String
    var path: String
    var query: [String: String]
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    var minorVersion: Int
    /// Lowercased names.
    var headers: [String: String]

    /// The Content-Length, 0 when there is none (a request without one has no body).
    func bodyLength(limit: Int) throws(RejectedRequest) -> Int {
        if headers["transfer-encoding"] != nil {
            throw RejectedRequest(status: 501, reason: "Transfer-Encoding (chunked bodies) is not supported; send Content-Length")
        }
        guard let text = headers["content-length"] else { return 0 }
        // digits only: "+5", " 5" or "5, 5" (a repeated header) are refused
        guard !text.isEmpty, text.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
            throw RejectedRequest(status: 400, reason: "invalid Content-Length")
        }
        guard text.utf8.count <= 18, let length = Int(text), length <= limit else {
            throw RejectedRequest(status: 413, reason: "body larger than \(limit) bytes")
        }
        return length
    }
}

private let CR: UInt8 = 0x0d, LF: UInt8 = 0x0a, SP: UInt8 = 0x20, HT: UInt8 = 0x09

/// The index just past the empty line that ends a head, looking at line ends from
/// `start` on; nil while it has not arrived. Lines end in CRLF, or a bare LF (which
/// RFC 9112 §2.2 lets a server accept).
func endOfHead(_ bytes: [UInt8], from start: Int) -> Int? {
    var i = max(start, 0)
    while i < bytes.count {
        if bytes[i] == LF {
            if i + 1 < bytes.count, bytes[i + 1] == LF { return i + 2 }
            if i + 2 < bytes.count, bytes[i + 1] == CR, bytes[i + 2] == LF { return i + 3 }
        }
        i += 1
    }
    return nil
}

/// `head` is everything up to and including the empty line (see `endOfHead`).
func parseHead(_ head: ArraySlice<UInt8>) throws(RejectedRequest) -> RequestHead {
    var lines = head.split(separator: LF, omittingEmptySubsequences: false).map { $0.last == CR ? $0.dropLast() : $0 }
    lines.removeLast(2)  // the empty line and the nothing after its LF
    guard let requestLine = lines.first else { throw RejectedRequest(status: 400, reason: "empty request") }
    guard !lines.contains(where: { $0.contains(CR) }) else { throw RejectedRequest(status: 400, reason: "bare CR in the head") }

    // request-line = method SP request-target SP HTTP-version
    let parts = requestLine.split(separator: SP, omittingEmptySubsequences: false)
    guard parts.count == 3, !parts[0].isEmpty, parts[0].allSatisfy(isTokenByte) else {
        throw RejectedRequest(status: 400, reason: "malformed request line")
    }
    let minorVersion: Int
    switch String(decoding: parts[2], as: UTF8.self) {
    case "HTTP/1.1": minorVersion = 1
    case "HTTP/1.0": minorVersion = 0
    case let v where v.hasPrefix("HTTP/"): throw RejectedRequest(status: 505, reason: "only HTTP/1.0 and HTTP/1.1")
    default: throw RejectedRequest(status: 400, reason: "malformed request line")
    }
    // origin-form only ("/path?query"): what every scraper and curl send to a server
    let target = parts[1]
    guard target.first == UInt8(ascii: "/"), target.allSatisfy({ $0 > SP && $0 < 0x7f }) else {
        throw RejectedRequest(status: 400, reason: "request target must be a path")
    }
    let pathBytes = target.prefix { $0 != UInt8(ascii: "?") }
    guard let path = percentDecoded(pathBytes, plusIsSpace: false) else {
        throw RejectedRequest(status: 400, reason: "bad percent-encoding in the path")
    }
    var query: [String: String] = [:]
    for pair in target.dropFirst(pathBytes.count + 1).split(separator: UInt8(ascii: "&")) {
        let name = pair.prefix { $0 != UInt8(ascii: "=") }
        guard let key = percentDecoded(name, plusIsSpace: true),
              let value = percentDecoded(pair.dropFirst(name.count + 1), plusIsSpace: true) else {
            throw RejectedRequest(status: 400, reason: "bad percent-encoding in the query")
        }
        query[key] = value
    }

    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        // a line starting with whitespace continues the previous one (obs-fold): refused
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), line.first != SP, line.first != HT else {
            throw RejectedRequest(status: 400, reason: "malformed header line")
        }
        let name = line[..<colon], rawValue = line[(colon + 1)...]
        // field-value: visible bytes, spaces and tabs, and obs-text (>= 0x80); no controls
        guard !name.isEmpty, name.allSatisfy(isTokenByte),
              rawValue.allSatisfy({ $0 == HT || ($0 >= SP && $0 != 0x7f) }) else {
            throw RejectedRequest(status: 400, reason: "malformed header line")
        }
        var trimmed = rawValue.drop { $0 == SP || $0 == HT }
        while let last = trimmed.last, last == SP || last == HT { trimmed = trimmed.dropLast() }
        let value = String(decoding: trimmed, as: UTF8.self)
        let key = String(decoding: name, as: UTF8.self).lowercased()
        headers[key] = headers[key].map { "\($0), \(value)" } ?? value
    }
    if minorVersion == 1, headers["host"] == nil {
        throw RejectedRequest(status: 400, reason: "HTTP/1.1 request without Host")
    }
    return RequestHead(method: String(decoding: parts[0], as: UTF8.self), path: path, query: query,
                       minorVersion: minorVersion, headers: headers)
}

/// tchar of RFC 9110 §5.6.2: the bytes of methods and header names.
private func isTokenByte(_ byte: UInt8) -> Bool {
    switch byte {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"):
        true
    default:
        Array("!#$%&'*+-.^_`|~".utf8).contains(byte)
    }
}

/// `%XX` decoded (and `+` as a space in a query); nil for a bad escape or bytes that
/// are not UTF-8.
func percentDecoded(_ bytes: ArraySlice<UInt8>, plusIsSpace: Bool) -> String? {
    func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): byte - UInt8(ascii: "A") + 10
        default: nil
        }
    }
    var decoded: [UInt8] = []
    decoded.reserveCapacity(bytes.count)
    var i = bytes.startIndex
    while i < bytes.endIndex {
        switch bytes[i] {
        case UInt8(ascii: "%"):
            guard i + 2 < bytes.endIndex, let high = hexValue(bytes[i + 1]), let low = hexValue(bytes[i + 2]) else { return nil }
            decoded.append(high << 4 | low)
            i += 3
        case UInt8(ascii: "+") where plusIsSpace:
            decoded.append(SP)
            i += 1
        case let byte:
            decoded.append(byte)
            i += 1
        }
    }
    return String(validating: decoded, as: UTF8.self)
}
