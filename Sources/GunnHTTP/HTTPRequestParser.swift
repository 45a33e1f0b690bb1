#if canImport(GunnCore)
import GunnCore
#endif

/// Bounds on what one HTTP/1.1 request may carry. Every one has a status and a code in
/// docs/errors.md; the server answers with it and closes the connection.
public struct HTTPLimits: Sendable, Equatable {
    /// The request line, CRLF excluded (414 URI_TOO_LONG).
    public var maxRequestLineBytes = 8192
    /// The header section after the request line, trailers included (431 HEADERS_TOO_LARGE).
    public var maxHeaderBytes = 16384
    /// Header fields, trailers included (431 HEADERS_TOO_LARGE).
    public var maxHeaderCount = 100
    /// A request body, however framed (413 PAYLOAD_TOO_LARGE).
    public var maxBodyBytes = 1 << 20
    /// One chunk-size line with its extensions (400 MALFORMED_HTTP).
    public var maxChunkLineBytes = 1024
    public init() {}
}

/// A refused request: the HTTP status to answer with, the code from docs/errors.md, and what was wrong.
public struct HTTPParseError: Error, Equatable, Sendable, CustomStringConvertible {
    public let status: Int
    public let code: ErrorCode
    public let message: String
    public init(_ code: ErrorCode, _ message: String, status: Int? = nil) {
        self.code = code
        self.message = message
        self.status = status ?? code.httpStatus
    }
    public var description: String { "\(status) \(code.name): \(message)" }
}

/// Header fields in arrival order. Names are kept lowercased (they are case-insensitive), values
/// with surrounding whitespace removed.
public struct HTTPHeaders: Sendable, Equatable, Sequence {
    public private(set) var fields: [(name: String, value: String)] = []
    public init() {}
    public init(_ fields: [(String, String)]) { for (n, v) in fields { add(n, v) } }

    public mutating func add(_ name: String, _ value: String) { fields.append((name.lowercased(), value)) }
    /// The first value of `name` (any case), or nil.
    public subscript(_ name: String) -> String? {
        let n = name.lowercased()
        return fields.first { $0.name == n }?.value
    }
    /// Every value of `name`, in order.
    public func values(_ name: String) -> [String] {
        let n = name.lowercased()
        return fields.filter { $0.name == n }.map(\.value)
    }
    /// The comma-separated tokens of every `name` field, lowercased, empty elements dropped.
    public func tokens(_ name: String) -> [String] {
        values(name).flatMap { $0.split(separator: ",") }.map { trimOWS(Substring($0)).lowercased() }.filter { !$0.isEmpty }
    }
    public var count: Int { fields.count }
    public func makeIterator() -> IndexingIterator<[(name: String, value: String)]> { fields.makeIterator() }
    public static func == (a: HTTPHeaders, b: HTTPHeaders) -> Bool {
        a.fields.count == b.fields.count && zip(a.fields, b.fields).allSatisfy { $0.name == $1.name && $0.value == $1.value }
    }
}

func trimOWS(_ s: Substring) -> String {
    var u = s.utf8[...]
    while let f = u.first, f == 0x20 || f == 0x09 { u = u.dropFirst() }
    while let l = u.last, l == 0x20 || l == 0x09 { u = u.dropLast() }
    return String(decoding: u, as: UTF8.self)
}

/// How a request's body is framed.
public enum HTTPBodyFraming: Sendable, Equatable {
    case none
    case length(Int)
    case chunked
}

/// The request line and header section of one request, checked.
public struct HTTPRequestHead: Sendable, Equatable {
    public var method: String
    /// The request target as sent (origin form `/path?query`, `*`, or absolute form).
    public var target: String
    /// The path part of the target (absolute form reduced to its path), without the query.
    public var path: String
    public var query: String?
    /// 0 for HTTP/1.0, 1 for HTTP/1.1 (and any later 1.x, answered as 1.1).
    public var minorVersion: Int
    public var headers: HTTPHeaders
    public var framing: HTTPBodyFraming
    /// The connection stays open after this exchange (1.1 unless `close`; 1.0 only with `keep-alive`).
    public var keepAlive: Bool
    /// `Expect: 100-continue` on a 1.1 request with a body.
    public var expectContinue: Bool
    /// The protocol named in `Upgrade` when `Connection` lists `upgrade`, lowercased.
    public var upgrade: String?
}

/// What the parser finds, in order, for each request: its head, its body in pieces, then its end
/// with the trailers of a chunked body.
public enum HTTPParseEvent {
    case head(HTTPRequestHead)
    /// Body bytes; the buffer is valid only during the callback.
    case body(UnsafeRawBufferPointer)
    case end(trailers: HTTPHeaders)
}

/// Parses HTTP/1.1 requests (RFC 9112) pushed to it in pieces of any size; the events and errors
/// do not depend on where the input was cut. A state machine over single bytes with every limit
/// checked at the byte that crosses it, so the same input gives the same verdict at the same
/// offset. No I/O and no allocation beyond the current line and header list.
///
/// Strict where leniency lets two parsers disagree (request smuggling): CR must precede every LF,
/// folded lines, whitespace before a colon, control characters, duplicate or malformed
/// Content-Length, Transfer-Encoding with Content-Length, and chunked not last are all refused.
/// After an error the parser stays failed: the connection cannot be resynchronised and must close.
public struct HTTPRequestParser {
    public let limits: HTTPLimits

    enum State: Equatable {
        case requestLine
        case headerLine
        case body(remaining: Int)
        case chunkSize
        case chunkData(remaining: Int)
        case chunkDataCR
        case chunkDataLF
        case trailerLine
        case failed
    }

    private var state: State = .requestLine
    private var line: [UInt8] = []
    private var sawCR = false
    private var emptyLines = 0
    private var headerBytes = 0
    private var method = "", target = "", minor = 1
    private var headers = HTTPHeaders()
    private var trailers = HTTPHeaders()
    private var bodySeen = 0
    private var failure: HTTPParseError?

    public init(limits: HTTPLimits = HTTPLimits()) {
        self.limits = limits
        line.reserveCapacity(256)
    }

    /// True between requests: nothing of a next request has arrived yet.
    public var isIdle: Bool { state == .requestLine && line.isEmpty && !sawCR }

    /// Parses from `bytes` until one request ends (its `.end` event was sent) or the bytes run
    /// out; returns how many bytes were consumed. Call again with the rest for the next request.
    public mutating func parse(_ bytes: UnsafeRawBufferPointer, _ sink: (HTTPParseEvent) -> Void) throws(HTTPParseError) -> Int {
        if let failure { throw failure }
        do {
            return try run(bytes, sink)
        } catch {
            state = .failed
            failure = error
            throw error
        }
    }

    private mutating func run(_ bytes: UnsafeRawBufferPointer, _ sink: (HTTPParseEvent) -> Void) throws(HTTPParseError) -> Int {
        var i = 0
        let n = bytes.count
        while i < n {
            switch state {
            case .requestLine, .headerLine, .trailerLine, .chunkSize:
                let b = bytes[i]
                i += 1
                if sawCR {
                    guard b == 0x0A else { throw HTTPParseError(.malformedHTTP, "a CR not followed by LF") }
                    sawCR = false
                    if try endOfLine(sink) { return i }
                    continue
                }
                if b == 0x0D { sawCR = true; continue }
                if b == 0x0A { throw HTTPParseError(.malformedHTTP, "a line ended by LF without CR") }
                line.append(b)
                try checkLineLength()
            case .body(let remaining):
                let take = min(remaining, n - i)
                sink(.body(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])))
                i += take
                if remaining - take == 0 {
                    finishMessage(sink, trailers: HTTPHeaders())
                    return i
                }
                state = .body(remaining: remaining - take)
            case .chunkData(let remaining):
                let take = min(remaining, n - i)
                sink(.body(UnsafeRawBufferPointer(rebasing: bytes[i..<(i + take)])))
                i += take
                state = remaining - take == 0 ? .chunkDataCR : .chunkData(remaining: remaining - take)
            case .chunkDataCR:
                guard bytes[i] == 0x0D else { throw HTTPParseError(.malformedHTTP, "chunk data not followed by CRLF") }
                i += 1
                state = .chunkDataLF
            case .chunkDataLF:
                guard bytes[i] == 0x0A else { throw HTTPParseError(.malformedHTTP, "chunk data not followed by CRLF") }
                i += 1
                state = .chunkSize
            case .failed:
                throw failure ?? HTTPParseError(.internalError, "parser failed")
            }
        }
        return i
    }

    private func checkLineLength() throws(HTTPParseError) {
        switch state {
        case .requestLine:
            if line.count > limits.maxRequestLineBytes {
                throw HTTPParseError(.uriTooLong, "the request line is longer than \(limits.maxRequestLineBytes) bytes")
            }
        case .headerLine, .trailerLine:
            if headerBytes + line.count > limits.maxHeaderBytes {
                throw HTTPParseError(.headersTooLarge, "the header section is larger than \(limits.maxHeaderBytes) bytes")
            }
        case .chunkSize:
            if line.count > limits.maxChunkLineBytes {
                throw HTTPParseError(.malformedHTTP, "a chunk-size line is longer than \(limits.maxChunkLineBytes) bytes")
            }
        default: break
        }
    }

    /// Handles one complete line; true when a request ended with it.
    private mutating func endOfLine(_ sink: (HTTPParseEvent) -> Void) throws(HTTPParseError) -> Bool {
        defer { line.removeAll(keepingCapacity: true) }
        switch state {
        case .requestLine:
            // RFC 9112 §2.2: empty lines before a request line are ignored (bounded by the line limit).
            if line.isEmpty {
                emptyLines += 1
                if emptyLines > 8 { throw HTTPParseError(.malformedHTTP, "more than 8 empty lines before a request line") }
                return false
            }
            emptyLines = 0
            try parseRequestLine()
            state = .headerLine
            return false
        case .headerLine:
            if line.isEmpty { return try endOfHead(sink) }
            let (n, v) = try field()
            headers.add(n, v)
            return false
        case .trailerLine:
            if line.isEmpty {
                finishMessage(sink, trailers: trailers)
                return true
            }
            let (n, v) = try field()
            trailers.add(n, v)
            return false
        case .chunkSize:
            let size = try parseChunkSize()
            if size == 0 {
                state = .trailerLine
                return false
            }
            bodySeen += size
            if bodySeen > limits.maxBodyBytes {
                throw HTTPParseError(.payloadTooLarge, "the chunked body is larger than \(limits.maxBodyBytes) bytes")
            }
            state = .chunkData(remaining: size)
            return false
        default:
            return false
        }
    }

    private mutating func finishMessage(_ sink: (HTTPParseEvent) -> Void, trailers t: HTTPHeaders) {
        sink(.end(trailers: t))
        state = .requestLine
        headerBytes = 0
        headers = HTTPHeaders()
        trailers = HTTPHeaders()
        bodySeen = 0
    }

    // MARK: request line

    private mutating func parseRequestLine() throws(HTTPParseError) {
        // method SP request-target SP HTTP-version, exactly one space each.
        guard let sp1 = line.firstIndex(of: 0x20) else { throw HTTPParseError(.malformedHTTP, "the request line has no spaces") }
        guard let sp2 = line[(sp1 + 1)...].firstIndex(of: 0x20) else { throw HTTPParseError(.malformedHTTP, "the request line has no HTTP version") }
        let m = line[..<sp1], t = line[(sp1 + 1)..<sp2], v = line[(sp2 + 1)...]
        guard !m.isEmpty, m.allSatisfy(isTChar) else { throw HTTPParseError(.malformedHTTP, "the method is not a token") }
        guard !t.isEmpty, t.allSatisfy({ $0 > 0x20 && $0 < 0x7F }) else { throw HTTPParseError(.malformedHTTP, "the request target is empty or has a space or control character") }
        let vb = Array(v)
        guard vb.count == 8, vb[0] == 0x48, vb[1] == 0x54, vb[2] == 0x54, vb[3] == 0x50, vb[4] == 0x2F,
              isDigit(vb[5]), vb[6] == 0x2E, isDigit(vb[7]) else {
            throw HTTPParseError(.malformedHTTP, "the HTTP version is not HTTP/<digit>.<digit>")
        }
        guard vb[5] == 0x31 else {
            throw HTTPParseError(.httpVersionNotSupported, "HTTP/\(vb[5] - 0x30).\(vb[7] - 0x30) is not supported; send HTTP/1.1")
        }
        method = String(decoding: m, as: UTF8.self)
        target = String(decoding: t, as: UTF8.self)
        minor = vb[7] == 0x30 ? 0 : 1
        let first = t.first!
        if first == 0x2A {
            guard t.count == 1, method == "OPTIONS" else { throw HTTPParseError(.malformedHTTP, "the target * is for OPTIONS only") }
        } else if first != 0x2F {
            let lower = target.lowercased()
            if method == "CONNECT" {
                // authority form: answered by the router (405/501), never tunnelled.
            } else if !(lower.hasPrefix("http://") || lower.hasPrefix("https://")) {
                throw HTTPParseError(.malformedHTTP, "the request target is not a path, an absolute URI or *")
            }
        }
    }

    // MARK: header fields

    private mutating func field() throws(HTTPParseError) -> (String, String) {
        headerBytes += line.count + 2
        if headerBytes > limits.maxHeaderBytes {
            throw HTTPParseError(.headersTooLarge, "the header section is larger than \(limits.maxHeaderBytes) bytes")
        }
        if headers.count + trailers.count >= limits.maxHeaderCount {
            throw HTTPParseError(.headersTooLarge, "more than \(limits.maxHeaderCount) header fields")
        }
        let first = line[0]
        if first == 0x20 || first == 0x09 { throw HTTPParseError(.malformedHTTP, "a folded or indented header line (obs-fold)") }
        guard let colon = line.firstIndex(of: 0x3A) else { throw HTTPParseError(.malformedHTTP, "a header line without a colon") }
        let name = line[..<colon]
        guard !name.isEmpty, name.allSatisfy(isTChar) else {
            throw HTTPParseError(.malformedHTTP, "a header name that is empty, not a token, or followed by whitespace before the colon")
        }
        var start = colon + 1, end = line.count
        while start < end, line[start] == 0x20 || line[start] == 0x09 { start += 1 }
        while end > start, line[end - 1] == 0x20 || line[end - 1] == 0x09 { end -= 1 }
        for b in line[start..<end] where (b < 0x20 && b != 0x09) || b == 0x7F {
            throw HTTPParseError(.malformedHTTP, "a control character in the value of \(String(decoding: name, as: UTF8.self))")
        }
        return (String(decoding: name, as: UTF8.self), String(decoding: line[start..<end], as: UTF8.self))
    }

    // MARK: end of head: framing and connection semantics (RFC 9112 §6, §9; RFC 9110 §7.2, §10.1.1)

    private mutating func endOfHead(_ sink: (HTTPParseEvent) -> Void) throws(HTTPParseError) -> Bool {
        let hosts = headers.values("host")
        if minor == 1 && hosts.count != 1 {
            throw HTTPParseError(.malformedHTTP, hosts.isEmpty ? "an HTTP/1.1 request without Host" : "more than one Host field")
        }
        if minor == 0 && hosts.count > 1 { throw HTTPParseError(.malformedHTTP, "more than one Host field") }
        if let h = hosts.first, !h.utf8.allSatisfy(isHostByte) {
            throw HTTPParseError(.malformedHTTP, "the Host field is not a host[:port]")
        }

        let te = headers.tokens("transfer-encoding")
        let cls = headers.values("content-length")
        var framing = HTTPBodyFraming.none
        if !headers.values("transfer-encoding").isEmpty {
            guard cls.isEmpty else { throw HTTPParseError(.malformedHTTP, "both Transfer-Encoding and Content-Length (a request smuggling pattern)") }
            guard minor == 1 else { throw HTTPParseError(.malformedHTTP, "Transfer-Encoding in an HTTP/1.0 request") }
            guard te.last == "chunked" else { throw HTTPParseError(.malformedHTTP, "Transfer-Encoding does not end with chunked") }
            guard te.count == 1 else {
                if te.filter({ $0 == "chunked" }).count > 1 { throw HTTPParseError(.malformedHTTP, "chunked applied more than once") }
                throw HTTPParseError(.notImplemented, "transfer coding \(te.dropLast().joined(separator: ", ")) is not supported; send chunked only")
            }
            framing = .chunked
        } else if !cls.isEmpty {
            guard cls.count == 1 else { throw HTTPParseError(.malformedHTTP, "more than one Content-Length field") }
            let v = cls[0].utf8
            guard !v.isEmpty, v.count <= 18, v.allSatisfy(isDigit) else { throw HTTPParseError(.malformedHTTP, "Content-Length is not a decimal number") }
            let length = Int(cls[0])!
            if length > limits.maxBodyBytes {
                throw HTTPParseError(.payloadTooLarge, "the body of \(length) bytes is larger than \(limits.maxBodyBytes)")
            }
            if length > 0 { framing = .length(length) }
        }

        let connection = headers.tokens("connection")
        let keepAlive = minor == 1 ? !connection.contains("close") : connection.contains("keep-alive") && !connection.contains("close")
        var expectContinue = false
        if minor == 1, let expect = headers["expect"] {
            guard expect.lowercased() == "100-continue" else { throw HTTPParseError(.expectationFailed, "the expectation \"\(expect)\" is not supported") }
            expectContinue = framing != .none
        }
        var upgrade: String? = nil
        // Upgrade is ignored in HTTP/1.0 (RFC 9110 §7.8).
        if minor == 1, connection.contains("upgrade"), let u = headers["upgrade"] { upgrade = u.lowercased() }

        var path = target, query: String? = nil
        if let q = target.firstIndex(of: "?") {
            path = String(target[..<q])
            query = String(target[target.index(after: q)...])
        }
        if path.first != "/" && path != "*" {
            // absolute form: scheme://authority/path
            let u = Array(path.utf8)
            if let colon = u.firstIndex(of: 0x3A), colon + 2 < u.count, u[colon + 1] == 0x2F, u[colon + 2] == 0x2F {
                let rest = u[(colon + 3)...]
                path = rest.firstIndex(of: 0x2F).map { String(decoding: u[$0...], as: UTF8.self) } ?? "/"
            }
        }

        let head = HTTPRequestHead(method: method, target: target, path: path, query: query, minorVersion: minor,
                                   headers: headers, framing: framing, keepAlive: keepAlive,
                                   expectContinue: expectContinue, upgrade: upgrade)
        sink(.head(head))
        switch framing {
        case .none:
            finishMessage(sink, trailers: HTTPHeaders())
            return true
        case .length(let n):
            state = .body(remaining: n)
        case .chunked:
            state = .chunkSize
        }
        return false
    }

    private func parseChunkSize() throws(HTTPParseError) -> Int {
        var size = 0, i = 0
        while i < line.count, let d = hexValue(line[i]) {
            guard size <= (Int.max >> 4) - 16 else { throw HTTPParseError(.payloadTooLarge, "a chunk size overflows") }
            size = size << 4 | d
            i += 1
            if size > limits.maxBodyBytes { throw HTTPParseError(.payloadTooLarge, "a chunk of more than \(limits.maxBodyBytes) bytes") }
        }
        guard i > 0 else { throw HTTPParseError(.malformedHTTP, "a chunk size is not hexadecimal") }
        // Extensions (ignored): BWS ";" ... with no control characters.
        var j = i
        while j < line.count, line[j] == 0x20 || line[j] == 0x09 { j += 1 }
        if j < line.count {
            guard line[j] == 0x3B else { throw HTTPParseError(.malformedHTTP, "junk after a chunk size") }
            for b in line[j...] where (b < 0x20 && b != 0x09) || b == 0x7F {
                throw HTTPParseError(.malformedHTTP, "a control character in a chunk extension")
            }
        } else if j > i {
            throw HTTPParseError(.malformedHTTP, "whitespace after a chunk size without an extension")
        }
        return size
    }
}

@inline(__always) func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

/// RFC 3986 host (reg-name, IPv4, IP-literal in brackets) and an optional port: unreserved,
/// sub-delims, "%", ":", "[" and "]".
@inline(__always) func isHostByte(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case 0x2D, 0x2E, 0x5F, 0x7E: return true                                     // - . _ ~
    case 0x21, 0x24, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x3B, 0x3D: return true // sub-delims but ","
    case 0x25, 0x3A, 0x5B, 0x5D: return true                                     // % : [ ]
    default: return false
    }
}

@inline(__always) func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 0x30...0x39: return Int(b - 0x30)
    case 0x41...0x46: return Int(b - 0x41 + 10)
    case 0x61...0x66: return Int(b - 0x61 + 10)
    default: return nil
    }
}

/// RFC 9110 §5.6.2 tchar.
@inline(__always) func isTChar(_ b: UInt8) -> Bool {
    switch b {
    case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
    case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
    default: return false
    }
}
