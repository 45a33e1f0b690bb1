import Glibc
import GunnCore

/// A complete request as a handler sees it: the checked head, the whole body (bounded by
/// `HTTPLimits.maxBodyBytes`), the trailers of a chunked body, and the route's path parameters.
public struct HTTPRequest: Sendable {
    public var head: HTTPRequestHead
    public var body: [UInt8]
    public var trailers: HTTPHeaders
    /// Values of the route pattern's `:name` and `*name` segments, percent-decoded.
    public var params: [String: String]
    /// The peer, as "address:port".
    public var remote: String

    public var method: String { head.method }
    public var path: String { head.path }
    public var headers: HTTPHeaders { head.headers }

    /// A path parameter converted to `T` (Int, UInt64, Double, String …), or nil when it is
    /// missing or does not convert.
    public func param<T: LosslessStringConvertible>(_ name: String, as: T.Type = T.self) -> T? {
        params[name].flatMap(T.init)
    }

    /// The query's `name=value` pairs, percent-decoded (`+` is a space), in order.
    public var queryItems: [(name: String, value: String)] {
        guard let q = head.query else { return [] }
        return q.split(separator: "&").map { item in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]).replacingOccurrences(of: "+", with: " ")) ?? String(parts[0])
            let value = parts.count > 1 ? (percentDecode(String(parts[1]).replacingOccurrences(of: "+", with: " ")) ?? String(parts[1])) : ""
            return (name, value)
        }
    }

    public func query(_ name: String) -> String? { queryItems.first { $0.name == name }?.value }

    /// The body parsed as JSON by GunnCore's parser (strict RFC 8259, no duplicate keys), or the
    /// error to answer with (INVALID_JSON, 400).
    public func json() throws(GunnError) -> JSONValue {
        do { return try JSONParser.parse(body) } catch { throw error.gunnError }
    }
}

/// Percent-decoding of a path segment or query part; nil when an escape is malformed or the
/// result is not UTF-8.
public func percentDecode(_ s: String) -> String? {
    guard s.utf8.contains(0x25) else { return s }
    var out: [UInt8] = []
    var it = Array(s.utf8)[...]
    while let b = it.popFirst() {
        if b == 0x25 {
            guard let h = it.popFirst(), let l = it.popFirst(), let hv = hexValue(h), let lv = hexValue(l) else { return nil }
            out.append(UInt8(hv << 4 | lv))
        } else {
            out.append(b)
        }
    }
    return String(validating: out, as: UTF8.self)
}

/// A response with its whole body. The server adds `Server`, `Date`, `Content-Length` and, when
/// the connection ends with it, `Connection: close`.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: HTTPHeaders
    public var body: [UInt8]

    public init(status: Int = 200, headers: [(String, String)] = [], body: [UInt8] = []) {
        self.status = status
        self.headers = HTTPHeaders(headers)
        self.body = body
    }

    /// A JSON body written by GunnCore's encoder (canonical form, RFC 8785).
    public static func json(_ value: JSONValue, status: Int = 200, headers: [(String, String)] = []) -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", "application/json")] + headers, body: CanonicalJSON.encode(value))
    }

    public static func text(_ text: String, status: Int = 200, contentType: String = "text/plain; charset=utf-8") -> HTTPResponse {
        HTTPResponse(status: status, headers: [("Content-Type", contentType)], body: Array(text.utf8))
    }

    /// The error body every gunn HTTP answer uses: `{code, name, message, retry_after_ms}` with
    /// the status from docs/errors.md (or `status` when the code's table status is not the one
    /// the situation needs).
    public static func error(_ code: ErrorCode, _ message: String, retryAfterMs: UInt64? = nil, status: Int? = nil,
                             headers: [(String, String)] = []) -> HTTPResponse {
        var obj = JSONObject()
        obj["code"] = .number(Double(code.code))
        obj["name"] = .string(code.name)
        obj["message"] = .string(message)
        obj["retry_after_ms"] = retryAfterMs.map { .number(Double($0)) } ?? .null
        var extra = headers
        if let retryAfterMs { extra.append(("Retry-After", String((retryAfterMs + 999) / 1000))) }
        return json(.object(obj), status: status ?? code.httpStatus, headers: extra)
    }

    public static func error(_ e: GunnError, status: Int? = nil) -> HTTPResponse {
        error(e.code, e.message, retryAfterMs: e.retryAfterMs, status: status)
    }

    static func error(_ e: HTTPParseError) -> HTTPResponse { error(e.code, e.message, status: e.status) }
}

/// Reason phrases of the statuses gunn sends.
func reasonPhrase(_ status: Int) -> String {
    switch status {
    case 100: return "Continue"
    case 101: return "Switching Protocols"
    case 200: return "OK"
    case 201: return "Created"
    case 202: return "Accepted"
    case 204: return "No Content"
    case 304: return "Not Modified"
    case 400: return "Bad Request"
    case 401: return "Unauthorized"
    case 403: return "Forbidden"
    case 404: return "Not Found"
    case 405: return "Method Not Allowed"
    case 408: return "Request Timeout"
    case 409: return "Conflict"
    case 413: return "Content Too Large"
    case 414: return "URI Too Long"
    case 417: return "Expectation Failed"
    case 422: return "Unprocessable Content"
    case 426: return "Upgrade Required"
    case 428: return "Precondition Required"
    case 429: return "Too Many Requests"
    case 431: return "Request Header Fields Too Large"
    case 500: return "Internal Server Error"
    case 501: return "Not Implemented"
    case 502: return "Bad Gateway"
    case 503: return "Service Unavailable"
    case 504: return "Gateway Timeout"
    case 505: return "HTTP Version Not Supported"
    case 507: return "Insufficient Storage"
    default: return "Status \(status)"
    }
}

/// The IMF-fixdate of the current second (RFC 9110 §5.6.7), recomputed at most once a second.
/// Wall time, for display in the `Date` header only. One per event loop thread.
final class DateCache {
    private var second: time_t = 0
    private(set) var value: [UInt8] = []

    func current() -> [UInt8] {
        let now = time(nil)
        if now != second {
            second = now
            var t = now
            var tm = Glibc.tm()
            gmtime_r(&t, &tm)
            let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            func two(_ n: Int32) -> String { n < 10 ? "0\(n)" : "\(n)" }
            let s = "\(days[Int(tm.tm_wday)]), \(two(tm.tm_mday)) \(months[Int(tm.tm_mon)]) \(tm.tm_year + 1900) \(two(tm.tm_hour)):\(two(tm.tm_min)):\(two(tm.tm_sec)) GMT"
            value = Array(s.utf8)
        }
        return value
    }
}

extension Array where Element == UInt8 {
    @inline(__always) mutating func appendASCII(_ s: StaticString) {
        s.withUTF8Buffer { append(contentsOf: $0) }
    }
    @inline(__always) mutating func appendString(_ s: String) { append(contentsOf: s.utf8) }
    mutating func appendDecimal(_ v: Int) {
        if v == 0 { append(0x30); return }
        let start = count
        var n = v
        while n > 0 { append(UInt8(0x30 + n % 10)); n /= 10 }
        self[start...].reverse()
    }
}

/// Writes a response head: status line, `Server`, `Date`, the response's own fields, framing.
func serializeHead(status: Int, headers: HTTPHeaders, contentLength: Int?, chunked: Bool, close: Bool, keepAlive: Bool = false,
                   serverName: [UInt8], date: [UInt8], into out: inout [UInt8]) {
    out.appendASCII("HTTP/1.1 ")
    out.appendDecimal(status)
    out.append(0x20)
    out.appendString(reasonPhrase(status))
    out.appendASCII("\r\nServer: ")
    out.append(contentsOf: serverName)
    out.appendASCII("\r\nDate: ")
    out.append(contentsOf: date)
    out.appendASCII("\r\n")
    for (name, value) in headers.fields {
        // Framing and connection fields are the server's to write.
        if name == "content-length" || name == "transfer-encoding" || name == "connection" || name == "date" || name == "server" { continue }
        // A name that is not a token could split the response: such a field is left out.
        if name.isEmpty || !name.utf8.allSatisfy(isTChar) { continue }
        out.appendString(canonicalHeaderName(name))
        out.appendASCII(": ")
        // A CR or LF in a value would split the response (header injection): replaced by a space.
        for b in value.utf8 { out.append(b == 0x0D || b == 0x0A ? 0x20 : b) }
        out.appendASCII("\r\n")
    }
    if let contentLength {
        out.appendASCII("Content-Length: ")
        out.appendDecimal(contentLength)
        out.appendASCII("\r\n")
    }
    if chunked { out.appendASCII("Transfer-Encoding: chunked\r\n") }
    if close { out.appendASCII("Connection: close\r\n") } else if keepAlive { out.appendASCII("Connection: keep-alive\r\n") }
    out.appendASCII("\r\n")
}

/// `content-type` → `Content-Type` (names are case-insensitive; this is the conventional spelling).
func canonicalHeaderName(_ name: String) -> String {
    switch name {
    case "content-type": return "Content-Type"
    case "allow": return "Allow"
    case "retry-after": return "Retry-After"
    case "upgrade": return "Upgrade"
    case "location": return "Location"
    case "cache-control": return "Cache-Control"
    case "sec-websocket-accept": return "Sec-WebSocket-Accept"
    case "sec-websocket-protocol": return "Sec-WebSocket-Protocol"
    case "sec-websocket-version": return "Sec-WebSocket-Version"
    default:
        var out: [UInt8] = []
        var upper = true
        for b in name.utf8 {
            out.append(upper && b >= 0x61 && b <= 0x7A ? b - 0x20 : b)
            upper = b == 0x2D
        }
        return String(decoding: out, as: UTF8.self)
    }
}
