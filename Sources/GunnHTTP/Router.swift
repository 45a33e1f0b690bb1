import Foundation
import GunnCore
import GunnCrypto

/// Routes requests by method and path pattern to handlers. Patterns are `/`-separated segments:
/// a literal, `:name` (one segment, captured) or, last, `*name` (the rest of the path, captured).
/// Built before the server starts and immutable after.
///
/// No route for the path → 404 NOT_FOUND; a route for the path but not the method → 405
/// METHOD_NOT_ALLOWED with `Allow`; a method outside RFC 9110's nine and QUERY (the safe method
/// with a body being standardised) → 501 NOT_IMPLEMENTED.
/// HEAD is answered by a GET route (the body is left out).
public struct Router: Sendable {
    /// Handles one request on the server's event loop thread; answer through the responder, now or
    /// later, from any thread.
    public typealias Handler = @Sendable (HTTPRequest, HTTPResponder) -> Void

    enum Segment: Sendable, Equatable { case literal(String), param(String), rest(String) }

    struct Route: Sendable {
        let method: String
        let segments: [Segment]
        let handler: Handler
        let pattern: String
    }

    struct SocketRoute: Sendable {
        let segments: [Segment]
        let endpoint: WebSocketEndpoint
    }

    private var routes: [Route] = []
    private var sockets: [SocketRoute] = []

    public static let knownMethods: Set<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE", "QUERY"]

    public init() {}

    /// Adds a route; a pattern that does not start with `/`, or a `*` segment that is not last, traps
    /// (a programming error, found at start-up).
    public mutating func on(_ method: String, _ pattern: String, _ handler: @escaping Handler) {
        routes.append(Route(method: method.uppercased(), segments: Self.compile(pattern), handler: handler, pattern: pattern))
    }

    /// A synchronous handler: the response is returned at once.
    public mutating func on(_ method: String, _ pattern: String, respond: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        on(method, pattern) { req, res in res.respond(respond(req)) }
    }

    public mutating func get(_ pattern: String, _ respond: @escaping @Sendable (HTTPRequest) -> HTTPResponse) { on("GET", pattern, respond: respond) }
    public mutating func post(_ pattern: String, _ respond: @escaping @Sendable (HTTPRequest) -> HTTPResponse) { on("POST", pattern, respond: respond) }

    /// A typed JSON route: the body is parsed by GunnCore's JSON layer (an invalid one is answered
    /// 400 INVALID_JSON before the handler runs); the handler returns a value or throws a GunnError,
    /// answered with its code's status.
    public mutating func json(_ method: String, _ pattern: String, _ handle: @escaping @Sendable (HTTPRequest, JSONValue) throws(GunnError) -> (Int, JSONValue)) {
        on(method, pattern) { req, res in
            do throws(GunnError) {
                let body = req.body.isEmpty ? JSONValue.null : try req.json()
                let (status, value) = try handle(req, body)
                res.respond(.json(value, status: status))
            } catch {
                res.respond(.error(error))
            }
        }
    }

    /// A WebSocket endpoint at `pattern` (GET with an RFC 6455 upgrade).
    public mutating func webSocket(_ pattern: String, _ endpoint: WebSocketEndpoint) {
        sockets.append(SocketRoute(segments: Self.compile(pattern), endpoint: endpoint))
    }

    static func compile(_ pattern: String) -> [Segment] {
        precondition(pattern.hasPrefix("/"), "a route pattern starts with /: \(pattern)")
        let parts = pattern.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        return parts.enumerated().map { i, p in
            if p.hasPrefix(":") { return .param(String(p.dropFirst())) }
            if p.hasPrefix("*") {
                precondition(i == parts.count - 1, "a * segment must be last: \(pattern)")
                return .rest(String(p.dropFirst()))
            }
            return .literal(p)
        }
    }

    static func match(_ segments: [Segment], _ path: [Substring]) -> [String: String]? {
        var params: [String: String] = [:]
        var i = 0
        for (k, s) in segments.enumerated() {
            switch s {
            case .literal(let l):
                guard i < path.count, path[i] == l else { return nil }
                i += 1
            case .param(let name):
                guard i < path.count, let v = percentDecode(String(path[i])) else { return nil }
                params[name] = v
                i += 1
            case .rest(let name):
                _ = k
                guard let v = percentDecode(path[i...].joined(separator: "/")) else { return nil }
                params[name] = v
                i = path.count
            }
        }
        return i == path.count ? params : nil
    }

    public enum Match {
        /// The handler, the path's parameters, and the pattern that matched (a metric's route label).
        case handler(Handler, [String: String], pattern: String)
        case webSocket(WebSocketEndpoint, [String: String])
        case methodNotAllowed(allow: [String])
        case notFound
        case notImplemented
    }

    public func route(method: String, path: String, wantsUpgrade: Bool) -> Match {
        let parts = path.split(separator: "/", omittingEmptySubsequences: true)
        if wantsUpgrade && method == "GET" {
            for s in sockets { if let p = Self.match(s.segments, parts) { return .webSocket(s.endpoint, p) } }
        }
        var allow: [String] = []
        for r in routes {
            guard let p = Self.match(r.segments, parts) else { continue }
            if r.method == method || (method == "HEAD" && r.method == "GET") { return .handler(r.handler, p, pattern: r.pattern) }
            allow.append(r.method)
        }
        // A plain GET on a WebSocket path goes to the handshake, which refuses it with 400.
        if method == "GET" {
            for s in sockets { if let p = Self.match(s.segments, parts) { return .webSocket(s.endpoint, p) } }
        }
        if sockets.contains(where: { Self.match($0.segments, parts) != nil }) { allow.append("GET") }
        guard Self.knownMethods.contains(method) else { return .notImplemented }
        if allow.isEmpty { return .notFound }
        if allow.contains("GET") && !allow.contains("HEAD") { allow.append("HEAD") }
        return .methodNotAllowed(allow: Array(Set(allow)).sorted())
    }
}

/// A WebSocket endpoint: the subprotocols it speaks (in preference order), whether a client must
/// pick one, the `Origin` check, the session options, and what to do with an accepted socket.
public struct WebSocketEndpoint: Sendable {
    public var subprotocols: [String]
    public var requireSubprotocol: Bool
    /// Called with the request's Origin (nil when absent); false refuses with 403 FORBIDDEN.
    public var checkOrigin: (@Sendable (String?) -> Bool)?
    public var options: WebSocketOptions
    /// Runs on the event loop once the 101 is sent, before any message is read: set the socket's
    /// handlers here.
    public var onOpen: @Sendable (WebSocket, HTTPRequest) -> Void

    public init(subprotocols: [String] = [], requireSubprotocol: Bool = false, checkOrigin: (@Sendable (String?) -> Bool)? = nil,
                options: WebSocketOptions = WebSocketOptions(), onOpen: @escaping @Sendable (WebSocket, HTTPRequest) -> Void) {
        self.subprotocols = subprotocols
        self.requireSubprotocol = requireSubprotocol
        self.checkOrigin = checkOrigin
        self.options = options
        self.onOpen = onOpen
    }
}

/// The server side of the RFC 6455 §4.2 opening handshake.
public enum WebSocketHandshake {
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// Sec-WebSocket-Accept for a client's key: base64(SHA-1(key + GUID)).
    public static func acceptValue(forKey key: String) -> String {
        Data(SHA1.hash(key + guid).bytes).base64EncodedString()
    }

    /// The 101 response for `head`, or the refusal to send instead.
    public static func respond(to head: HTTPRequestHead, endpoint: WebSocketEndpoint) -> Result<(HTTPResponse, String?), HTTPParseError> {
        let fail = { (m: String) in Result<(HTTPResponse, String?), HTTPParseError>.failure(HTTPParseError(.webSocketHandshakeFailed, m)) }
        guard head.method == "GET" else { return fail("a WebSocket upgrade must be a GET") }
        guard head.minorVersion == 1 else { return fail("a WebSocket upgrade needs HTTP/1.1") }
        guard head.upgrade.map({ $0.split(separator: ",").contains { trimOWS($0).lowercased() == "websocket" } }) == true else {
            return fail("Upgrade does not name websocket")
        }
        let version = head.headers.values("sec-websocket-version")
        guard version == ["13"] else {
            return .failure(HTTPParseError(.versionMismatch, "Sec-WebSocket-Version \(version.joined(separator: ",")) is not supported; this server speaks 13", status: 426))
        }
        let keys = head.headers.values("sec-websocket-key")
        guard keys.count == 1, let raw = Data(base64Encoded: keys[0]), raw.count == 16 else {
            return fail("Sec-WebSocket-Key is missing or not 16 bytes in base64")
        }
        if let check = endpoint.checkOrigin, !check(head.headers["origin"]) {
            return .failure(HTTPParseError(.forbidden, "the Origin \(head.headers["origin"] ?? "(none)") is not allowed"))
        }
        let offered = head.headers.tokens("sec-websocket-protocol")
        let chosen = endpoint.subprotocols.first { offered.contains($0.lowercased()) }
        if chosen == nil && endpoint.requireSubprotocol {
            return fail("no offered subprotocol is spoken here (offered: \(offered.joined(separator: ", ")); spoken: \(endpoint.subprotocols.joined(separator: ", ")))")
        }
        var headers: [(String, String)] = [("Upgrade", "websocket"), ("Sec-WebSocket-Accept", acceptValue(forKey: keys[0]))]
        if let chosen { headers.append(("Sec-WebSocket-Protocol", chosen)) }
        return .success((HTTPResponse(status: 101, headers: headers), chosen))
    }
}
