import Glibc
import Foundation
import Synchronization
import GunnCore
import GunnIO

/// Settings of an HTTP server. Every bound has a default; docs/http.md lists them.
public struct HTTPServerConfiguration: Sendable {
    /// A numeric address to listen on (IPv4 or IPv6).
    public var host = "127.0.0.1"
    /// 0: the kernel picks a free port (read it from `HTTPServer.port`).
    public var port: UInt16 = 0
    public var backlog: Int32 = 511
    /// Called on the loop for every response written (not for an upgrade's 101 or a stream):
    /// the route pattern that matched (or `not_found`, `method_not_allowed`, `not_implemented`,
    /// `unparsable`, `websocket`), the method (`OTHER` past the known ones), the status, and the
    /// seconds from the request's head to its response (monotonic). Metrics hang here.
    public var onResponse: (@Sendable (_ route: String, _ method: String, _ status: Int, _ seconds: Double) -> Void)?
    public var limits = HTTPLimits()
    /// From a request's first byte to the end of its head (slowloris headers: 408, close).
    public var headerTimeout: Double = 10
    /// From a request's first byte to the end of its body, however steadily it drips (408, close).
    public var requestTimeout: Double = 120
    /// Between two pieces of a body (slowloris bodies: 408, close).
    public var bodyTimeout: Double = 10
    /// A keep-alive connection with nothing in progress is closed after this long.
    public var idleTimeout: Double = 60
    /// Output waiting with no byte accepted by the peer for this long: the peer is not reading; closed.
    public var writeTimeout: Double = 10
    /// A handler that has not answered after this long is answered 504 OPERATION_TIMEOUT.
    public var handlerTimeout: Double = 30
    /// How long a closing connection waits for the peer (lingering close, WebSocket close handshake).
    public var closeTimeout: Double = 2
    /// A WebSocket peer silent this long gets a ping; silent twice as long, its connection is closed.
    public var webSocketPingInterval: Double = 30
    /// Open connections at most; the one past it is answered 503 TOO_MANY_CONNECTIONS and closed.
    public var maxConnections = 1024
    /// Requests read ahead of their responses on one connection (pipelining); reading pauses there.
    public var maxPipelined = 32
    /// Bytes queued for one connection's peer at most. HTTP: reading pauses past it. WebSocket
    /// and streams: a message past it is refused under `slowConsumer`.
    public var maxOutboundBytes = 8 << 20
    /// What a WebSocket or stream send does when the peer's queue is full: `.shed` drops that
    /// message (counted), `.disconnect` closes the connection (1008 / end of stream). The wait is
    /// not used: sends never block the event loop.
    public var slowConsumer: SlowConsumerPolicy = .disconnect(waitMs: 0)
    /// The `Server` header.
    public var serverName = "gunn"
    /// Event loop threads serving connections (the listener runs on the first).
    public var threads = 1
    /// TLS (https, wss) with this context; nil serves plain TCP.
    public var tls: TLSServerContext?
    /// How often deadlines are checked.
    public var sweepInterval: Double = 0.25
    public init() {}

    /// Sets `host` and `port` from `HOST:PORT` (`[v6]:PORT` too), as the adapters' `--listen` takes them.
    public mutating func setListen(_ text: String) throws(GunnError) {
        guard let colon = text.lastIndex(of: ":"), let p = UInt16(text[text.index(after: colon)...]) else {
            throw GunnError(.configInvalid, "--listen must be HOST:PORT, got \(text)")
        }
        var h = String(text[..<colon])
        if h.hasPrefix("[") && h.hasSuffix("]") { h = String(h.dropFirst().dropLast()) }
        host = h
        port = p
    }

    /// `host` as a URL writes it (an IPv6 address in brackets).
    public var urlHost: String { host.contains(":") ? "[\(host)]" : host }
}

/// A server that cannot start: a certificate or key that does not load (CONFIG_INVALID), or the
/// like; the message names the file or setting.
public struct HTTPServerError: Error, Sendable, CustomStringConvertible {
    public let code: ErrorCode
    public let message: String
    public init(_ message: String, code: ErrorCode = .configInvalid) { self.code = code; self.message = message }
    public var description: String { "\(code.name) (\(code.code)): \(message)" }
}

/// Counters of one server, read with `HTTPServer.stats`.
public struct HTTPServerStats: Sendable, Equatable {
    public var accepted = 0
    public var refusedOverCap = 0
    public var acceptErrors = 0
    public var requests = 0
    public var parseErrors = 0
    public var timeouts = 0
    public var webSockets = 0
    public var shedMessages = 0
    public var slowConsumerCloses = 0
    /// The most bytes any closed connection had queued for its peer at once.
    public var outboundHighWater = 0
}

/// An HTTP/1.1 and WebSocket server on GunnIO event loops (one `poll(2)` thread each). See
/// docs/http.md for the design, the limits and the conformance results.
public final class HTTPServer: @unchecked Sendable {
    // `@unchecked Sendable` is safe: `configuration`, `router`, `loops`, `listenFD` and `port` are
    // set in init and never change; `contexts[i]` is touched only on `loops[i]`'s thread; the
    // counters are Atomic/Mutex.
    public let configuration: HTTPServerConfiguration
    let router: Router
    let loops: [EventLoop]
    let contexts: [LoopContext]
    let listenFD: Int32
    /// The port the server listens on.
    public let port: UInt16
    let open = Atomic<Int>(0)
    let statsBox = Mutex(HTTPServerStats())
    private let nextLoop = Atomic<Int>(0)
    let stopping = Atomic<Bool>(false)
    let serverNameBytes: [UInt8]

    public init(configuration: HTTPServerConfiguration = HTTPServerConfiguration(), router: Router) throws {
        self.configuration = configuration
        self.router = router
        serverNameBytes = Array(configuration.serverName.utf8.filter { $0 >= 0x20 && $0 < 0x7F })
        let (fd, port) = try Sys.listenTCP(host: configuration.host, port: configuration.port, backlog: configuration.backlog)
        listenFD = fd
        self.port = port
        var loops: [EventLoop] = []
        do {
            for i in 0..<max(1, configuration.threads) { loops.append(try EventLoop(name: "gunn-http-\(i)")) }
        } catch {
            Sys.close(fd)
            for l in loops { l.shutdown() }
            throw error
        }
        self.loops = loops
        contexts = loops.map { LoopContext(loop: $0) }
        for (i, loop) in loops.enumerated() {
            let box = Confined(contexts[i])
            loop.execute { [self] in
                let ctx = box.value
                // libssl writes with write(2): a peer gone mid-write must be EPIPE, not SIGPIPE.
                var set = sigset_t()
                sigemptyset(&set)
                sigaddset(&set, SIGPIPE)
                pthread_sigmask(SIG_BLOCK, &set, nil)
                self.scheduleSweep(ctx)
                if i == 0 { loop.register(fd, events: Int16(POLLIN)) { [self] _ in self.acceptReady() } }
            }
        }
    }

    /// Open connections now (WebSockets included).
    public var connectionCount: Int { open.load(ordering: .relaxed) }
    public var stats: HTTPServerStats { statsBox.withLock { $0 } }

    func count(_ body: (inout HTTPServerStats) -> Void) { statsBox.withLock { body(&$0) } }

    /// Stops accepting, closes every connection, stops the loops and waits until their threads
    /// have left them. Call it before dropping the server: the loops run until then.
    public func stop() async {
        guard !stopping.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for (i, loop) in loops.enumerated() {
            let box = Confined(contexts[i])
            await loop.submit { [self] in
                let ctx = box.value
                if let t = ctx.sweepTimer { loop.cancelTimer(t) }
                if i == 0 { loop.deregister(listenFD); Sys.close(listenFD) }
                for c in Array(ctx.connections.values) { c.abort() }
            }
            loop.shutdown()
            await loop.waitUntilStopped()
        }
    }

    private func scheduleSweep(_ ctx: LoopContext) {
        guard !stopping.load(ordering: .relaxed) else { return }
        ctx.sweepTimer = ctx.loop.schedule(after: configuration.sweepInterval) { [weak self, unowned ctx] in
            guard let self else { return }
            let now = EventLoop.now()
            for c in Array(ctx.connections.values) { c.checkDeadlines(now) }
            self.scheduleSweep(ctx)
        }
    }

    private func acceptReady() {
        for _ in 0..<64 {
            let accepted: Int32?
            do { accepted = try Sys.accept(listenFD) } catch {
                // Out of descriptors (EMFILE/ENFILE) or memory: stop polling the listener for a
                // moment instead of spinning on it; the backlog holds the waiting clients.
                count { $0.acceptErrors += 1 }
                let loop = loops[0]
                loop.setEvents(listenFD, 0)
                loop.schedule(after: 0.1) { [weak self] in
                    guard let self, !self.stopping.load(ordering: .relaxed) else { return }
                    self.loops[0].setEvents(self.listenFD, Int16(POLLIN))
                }
                return
            }
            guard let fd = accepted else { return }
            count { $0.accepted += 1 }
            try? Sys.setNoDelay(fd)
            let remote = peerAddress(fd)
            if open.load(ordering: .relaxed) >= configuration.maxConnections || stopping.load(ordering: .relaxed) {
                count { $0.refusedOverCap += 1 }
                refuse(fd, remote: remote)
                continue
            }
            open.add(1, ordering: .relaxed)
            let k = nextLoop.add(1, ordering: .relaxed).oldValue % loops.count
            let ctx = contexts[k]
            let tls = configuration.tls
            let start = { [self] in
                let transport: Transport
                if let tls {
                    guard let t = TLSTransport(fd: fd, context: tls) else { Sys.close(fd); open.subtract(1, ordering: .relaxed); return }
                    transport = t
                } else {
                    transport = Transport(fd: fd)
                }
                let c = HTTPConnection(server: self, ctx: ctx, transport: transport, remote: remote)
                ctx.connections[fd] = c
                c.start()
            }
            if k == 0 { start() } else {
                let box = Confined(start)
                ctx.loop.execute { box.value() }
            }
        }
    }

    /// Past the connection cap: a 503 written at once and a lingering close on the listener's loop
    /// (the refused connection counts against a small separate bound, past which it is just closed).
    private func refuse(_ fd: Int32, remote: String) {
        let ctx = contexts[0]
        guard ctx.refusing < 64, configuration.tls == nil else { Sys.close(fd); return }
        ctx.refusing += 1
        let c = HTTPConnection(server: self, ctx: ctx, transport: Transport(fd: fd), remote: remote, counted: false)
        ctx.connections[fd] = c
        c.refuse(HTTPResponse.error(.tooManyConnections, "the server holds its maximum of \(configuration.maxConnections) connections", retryAfterMs: 1000))
    }
}

/// Carries a loop-confined value through a `@Sendable` closure to its own loop.
/// `@unchecked Sendable` is safe: the value is used only inside closures that run on the event loop
/// thread that owns it (every use is in `loop.execute`/`schedule` of that loop).
struct Confined<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}

/// Per event loop: the one read buffer its connections share (they run one at a time), the
/// date cache, and its connections.
final class LoopContext {
    let loop: EventLoop
    let readBuffer: UnsafeMutableRawBufferPointer
    let date = DateCache()
    var connections: [Int32: HTTPConnection] = [:]
    var refusing = 0
    var sweepTimer: UInt64?

    init(loop: EventLoop) {
        self.loop = loop
        readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 10, alignment: 16)
    }

    deinit { readBuffer.deallocate() }
}

func peerAddress(_ fd: Int32) -> String {
    var storage = sockaddr_storage()
    var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
    let ok = withUnsafeMutablePointer(to: &storage) { p in
        p.withMemoryRebound(to: sockaddr.self, capacity: 1) { getpeername(fd, $0, &length) == 0 }
    }
    guard ok else { return "?" }
    var host = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN) + 1)
    switch Int32(storage.ss_family) {
    case AF_INET:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { a in
                var addr = a.pointee.sin_addr
                inet_ntop(AF_INET, &addr, &host, socklen_t(host.count))
                return "\(String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)):\(UInt16(bigEndian: a.pointee.sin_port))"
            }
        }
    case AF_INET6:
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { a in
                var addr = a.pointee.sin6_addr
                inet_ntop(AF_INET6, &addr, &host, socklen_t(host.count))
                return "[\(String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))]:\(UInt16(bigEndian: a.pointee.sin6_port))"
            }
        }
    default:
        return "?"
    }
}
