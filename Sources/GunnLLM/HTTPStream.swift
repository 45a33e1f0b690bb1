import CTLS
import Foundation
import Glibc
import GunnCore
import GunnIO
import Synchronization

/// A streaming HTTP/1.1 POST over TCP, plain or TLS (OpenSSL's libssl: TLS 1.2 or later, the
/// server's certificate verified against the system's roots or `caFile`, and its name checked):
/// the status and headers, then the body's bytes as they arrive (Content-Length, chunked, or
/// until close). Runs on its own thread with blocking reads; `cancel()` shuts the socket down at
/// once, which ends the read — the server sees the connection close and stops generating. Every
/// failure (refused, a bad certificate, a non-2xx status, malformed framing, a stall longer than
/// `stallSeconds`) is an LLM_SERVICE_ERROR.
public final class HTTPStream: Sendable {
    public struct Request: Sendable {
        /// How long a TCP connect may take before it is an LLM_SERVICE_ERROR: a black-holed
        /// endpoint (SYNs dropped) would otherwise hold the attempt for the kernel's minutes of
        /// retransmissions.
        public static let defaultConnectTimeoutSeconds: Double = 10

        public var host: String
        public var port: UInt16
        public var path: String
        public var body: [UInt8]
        public var headers: [(String, String)] = [("Content-Type", "application/json")]
        public var stallSeconds: Double = 30
        public var connectTimeoutSeconds = Request.defaultConnectTimeoutSeconds
        /// TLS (https): certificates are checked against `caFile` when set, else the system's roots.
        public var tls = false
        public var caFile: String?
        public init(host: String, port: UInt16, path: String, body: [UInt8]) {
            self.host = host; self.port = port; self.path = path; self.body = body
        }
    }

    /// The socket (for `cancel()` to shut down) and the eventfd that wakes a connect in progress;
    /// -1 when there is none. Only the stream's thread opens and closes them, under this lock.
    private let descriptors = Mutex<(socket: Int32, wake: Int32)>((-1, -1))
    private let cancelled = Atomic<Bool>(false)

    public init() {}

    /// Whether `cancel()` was called.
    public var isCancelled: Bool { cancelled.load(ordering: .sequentiallyConsistent) }

    /// Closes the connection now — or ends a connect still in progress — and the reading thread
    /// ends with `onEnd(nil)` if nothing failed first.
    public func cancel() {
        cancelled.store(true, ordering: .sequentiallyConsistent)
        descriptors.withLock { d in
            if d.socket >= 0 { Sys.shutdown(d.socket) }
            if d.wake >= 0 { Sys.signalEventFD(d.wake) }
        }
    }

    /// Starts the request on a thread of its own. `onBody` gets the body's bytes in order (never
    /// after `cancel()` returns... except one chunk already being handed over); `onEnd` is called
    /// once: nil for a complete body (or a cancellation), else the error.
    public func start(_ request: Request, onBody: @escaping @Sendable ([UInt8]) -> Void, onEnd: @escaping @Sendable (GunnError?) -> Void) {
        let t = Thread { [self] in
            // libssl writes with write(2), not send(MSG_NOSIGNAL): a peer gone mid-write must be
            // EPIPE on this thread, not a SIGPIPE that kills the process.
            var pipe = sigset_t()
            sigemptyset(&pipe)
            sigaddset(&pipe, SIGPIPE)
            pthread_sigmask(SIG_BLOCK, &pipe, nil)
            do {
                try run(request, onBody)
                onEnd(nil)
            } catch let e as GunnError {
                onEnd(cancelled.load(ordering: .sequentiallyConsistent) ? nil : e)
            } catch {
                onEnd(GunnError(.llmServiceError, "\(error)"))
            }
            closeDescriptors()
        }
        t.name = "http-stream"
        t.start()
    }

    private func closeDescriptors() {
        descriptors.withLock { d in
            if d.socket >= 0 { Sys.close(d.socket); d.socket = -1 }
            if d.wake >= 0 { Sys.close(d.wake); d.wake = -1 }
        }
    }

    private func fail(_ message: String) -> GunnError { GunnError(.llmServiceError, message) }

    private func run(_ r: Request, _ deliverBody: @Sendable ([UInt8]) -> Void) throws {
        // Nothing is handed over once cancel() was called, even bytes already read and buffered.
        func onBody(_ part: [UInt8]) throws {
            guard !cancelled.load(ordering: .sequentiallyConsistent) else { throw fail("cancelled") }
            deliverBody(part)
        }
        let s = try connectTCP(r.host, r.port, timeoutSeconds: r.connectTimeoutSeconds)
        if cancelled.load(ordering: .sequentiallyConsistent) { return }
        do throws(Errno) {
            // From here on the thread blocks in reads and writes, each bounded by the stall limit.
            try Sys.setNonBlocking(s, false)
            try Sys.setIOTimeout(s, seconds: r.stallSeconds)
        } catch {
            throw fail("cannot set up the connection to \(r.host):\(r.port): \(error)")
        }
        let link: Link = r.tls ? try TLSLink(fd: s, host: r.host, caFile: r.caFile) : PlainLink(fd: s)
        var head = "POST \(r.path) HTTP/1.1\r\nHost: \(r.host):\(r.port)\r\nAccept: text/event-stream, application/x-ndjson, application/json\r\n"
        for (k, v) in r.headers { head += "\(k): \(v)\r\n" }
        head += "Content-Length: \(r.body.count)\r\nConnection: close\r\n\r\n"
        try link.sendAll(Array(head.utf8) + r.body)
        var reader = HTTPResponseReader(stallSeconds: r.stallSeconds) { buffer in try link.receive(&buffer) }
        try reader.readResponse(from: "\(r.host):\(r.port)\(r.path)", onBody: onBody)
    }

    /// A connected socket to `host`:`port`, trying each address in turn, all within one deadline.
    /// The connect is non-blocking and waits in poll(2) for the socket or for `cancel()`, so a
    /// black-holed endpoint costs at most `timeoutSeconds` and a cancel ends the wait at once.
    private func connectTCP(_ host: String, _ port: UInt16, timeoutSeconds: Double) throws -> Int32 {
        let addresses: [Sys.SocketAddress]
        switch Sys.resolveStream(host: host, port: port) {
        case .success(let a): addresses = a
        case .failure(let e): throw fail("\(e)")
        }
        let wake: Int32
        do { wake = try Sys.eventFD() } catch { throw fail("cannot connect to \(host):\(port): \(error)") }
        descriptors.withLock { $0.wake = wake }
        let deadline = EventLoop.now() + timeoutSeconds
        var lastError = "no address"
        for address in addresses {
            // Set under the lock, then checked: a cancel() either sees this socket or was seen here.
            let s: Int32
            do { s = try Sys.socket(for: address) } catch { lastError = "\(error)"; continue }
            descriptors.withLock { $0.socket = s }
            guard !cancelled.load(ordering: .sequentiallyConsistent) else { throw fail("cancelled") }
            do {
                if try Sys.connect(s, to: address) { return s }
                var fds = [pollfd(fd: s, events: Int16(POLLOUT), revents: 0), pollfd(fd: wake, events: Int16(POLLIN), revents: 0)]
                while true {
                    let remainingMs = (deadline - EventLoop.now()) * 1000
                    guard remainingMs > 0 else {
                        throw fail("cannot connect to \(host):\(port): no answer within the connect timeout of \(Int(timeoutSeconds * 1000)) ms")
                    }
                    _ = try Sys.poll(&fds, timeoutMs: Int32(min(remainingMs.rounded(.up), 60_000)))
                    if cancelled.load(ordering: .sequentiallyConsistent) { throw fail("cancelled") }
                    if fds[0].revents != 0 { break }
                }
                let e = Sys.socketError(s)
                if e == 0 { return s }
                lastError = String(cString: strerror(e))
            } catch let e as Errno {
                lastError = "\(e)"
            }
            descriptors.withLock { d in Sys.close(d.socket); d.socket = -1 }
        }
        throw fail("cannot connect to \(host):\(port): \(lastError)")
    }
}

/// The byte stream under HTTP: the socket itself, or TLS over it.
protocol Link {
    func sendAll(_ bytes: [UInt8]) throws
    /// Bytes read into `buffer` (0 at the end of the stream), or nil after the stall limit.
    func receive(_ buffer: inout [UInt8]) throws -> Int?
}

struct PlainLink: Link {
    let fd: Int32

    func sendAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n: Int?
            do {
                n = try bytes.withUnsafeBytes { (b) throws(Errno) -> Int? in try Sys.write(fd, UnsafeRawBufferPointer(rebasing: b[off...])) }
            } catch {
                throw GunnError(.llmServiceError, "sending the request failed: \(error)")
            }
            guard let n else { throw GunnError(.llmServiceError, "sending the request stalled: the server takes no bytes") }
            off += n
        }
    }

    func receive(_ buffer: inout [UInt8]) throws -> Int? {
        do { return try buffer.withUnsafeMutableBytes { (b) throws(Errno) -> Int? in try Sys.receive(fd, b) } } catch {
            throw GunnError(.llmServiceError, "reading the response failed: \(error)")
        }
    }
}

/// TLS through OpenSSL's libssl on the connected socket: TLS 1.2 or later, SNI, the certificate
/// chain verified and the host name (or IP address) checked. Lives on the stream's one thread.
final class TLSLink: Link {
    let ctx: OpaquePointer
    let ssl: OpaquePointer

    init(fd: Int32, host: String, caFile: String?) throws {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw Self.failure("TLS setup failed") }
        self.ctx = ctx
        guard let ssl = SSL_new(ctx) else { SSL_CTX_free(ctx); throw Self.failure("TLS setup failed") }
        self.ssl = ssl
        _ = gunn_ssl_ctx_min_tls12(ctx)
        gunn_ssl_ctx_ignore_unexpected_eof(ctx)
        SSL_set_verify(ssl, SSL_VERIFY_PEER, nil)
        let loaded = caFile.map { SSL_CTX_load_verify_locations(ctx, $0, nil) } ?? SSL_CTX_set_default_verify_paths(ctx)
        guard loaded == 1 else { throw Self.failure("cannot load the CA certificates \(caFile ?? "of the system")") }
        var v4 = in_addr(), v6 = in6_addr()
        if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 {
            guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else { throw Self.failure("bad IP address \(host)") }
        } else {
            _ = gunn_ssl_set_sni(ssl, host)
            guard SSL_set1_host(ssl, host) == 1 else { throw Self.failure("bad host name \(host)") }
        }
        SSL_set_fd(ssl, fd)
        ERR_clear_error()
        guard SSL_connect(ssl) == 1 else {
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK { throw Self.failure("TLS handshake with \(host) failed: certificate: \(String(cString: X509_verify_cert_error_string(verify)))") }
            throw Self.failure("TLS handshake with \(host) failed")
        }
    }

    deinit {
        SSL_free(ssl)
        SSL_CTX_free(ctx)
    }

    /// The reason of the last OpenSSL error, after `message`.
    static func failure(_ message: String) -> GunnError {
        var reasons: [String] = []
        while case let e = ERR_get_error(), e != 0 {
            var buf = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(e, &buf, buf.count)
            reasons.append(String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return GunnError(.llmServiceError, reasons.isEmpty ? message : message + ": " + reasons.joined(separator: "; "))
    }

    func sendAll(_ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress! + off, Int32(bytes.count - off)) }
            guard n > 0 else { throw Self.failure("sending the request over TLS failed") }
            off += Int(n)
        }
    }

    func receive(_ buffer: inout [UInt8]) throws -> Int? {
        while true {
            ERR_clear_error()
            let n = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
            if n > 0 { return Int(n) }
            let err = SSL_get_error(ssl, n)
            switch err {
            case SSL_ERROR_ZERO_RETURN: return 0
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
                if errno == EINTR { continue }
                return nil
            case SSL_ERROR_SYSCALL:
                if errno == EINTR { continue }
                if errno == EAGAIN || errno == EWOULDBLOCK { return nil }
                if n == 0 || errno == 0 { return 0 }
                throw GunnError(.llmServiceError, "reading the TLS response failed: \(String(cString: strerror(errno)))")
            default:
                throw Self.failure("reading the TLS response failed")
            }
        }
    }
}
