import Glibc
import GunnCore
import GunnWire
import Synchronization

/// Listens on a Unix socket (file mode 0600), checks each peer's uid with SO_PEERCRED, runs the
/// server side of the handshake, and hands every opened connection to `onConnection` (on the loop
/// thread). A connection that fails — bad frames, wrong version, no handshake — is closed alone.
///
/// `@unchecked Sendable` is safe: `connections` and `listenFD` are touched only on `loop`'s thread;
/// everything else is immutable or atomic.
public final class UnixSocketServer: @unchecked Sendable {
    public let path: String
    public let loop: EventLoop
    public let options: ConnectionOptions
    private let admit: @Sendable (Hello) -> Result<Welcome, ConnectionError>
    private let onConnection: @Sendable (FramedConnection) -> Void
    private var listenFD: Int32 = -1
    private var connections: [ObjectIdentifier: FramedConnection] = [:]
    private let refused = Atomic<Int>(0)
    /// Peers refused for their uid so far.
    public var refusedPeers: Int { refused.load(ordering: .relaxed) }

    /// Connections open now (read on the loop).
    public func openConnections() async -> Int { await loop.submit { [self] in connections.count } }

    /// Binds and starts accepting. `admit` builds the Welcome for a Hello (or refuses it, e.g.
    /// UNAUTHORIZED for a bad token).
    public init(path: String, loop: EventLoop, options: ConnectionOptions = ConnectionOptions(),
                admit: @escaping @Sendable (Hello) -> Result<Welcome, ConnectionError> = { _ in .success(Welcome()) },
                onConnection: @escaping @Sendable (FramedConnection) -> Void) async throws {
        self.path = path; self.loop = loop; self.options = options; self.admit = admit; self.onConnection = onConnection
        let result: Result<Void, Errno> = await loop.submit { [self] in
            do throws(Errno) { try self.listenOnLoop(); return .success(()) } catch { return .failure(error) }
        }
        try result.get()
    }

    private func listenOnLoop() throws(Errno) {
        Sys.unlink(path) // a stale socket file from a previous run
        let fd = try Sys.socketUnix()
        do {
            try Sys.bind(fd, path: path)
            try Sys.chmod(path, 0o600)
            try Sys.listen(fd)
        } catch {
            Sys.close(fd)
            throw error
        }
        listenFD = fd
        loop.register(fd, events: Int16(POLLIN)) { [self] _ in acceptAll() }
    }

    private func acceptAll() {
        while true {
            let fd: Int32?
            do { fd = try Sys.accept(listenFD) } catch { return }
            guard let fd else { return }
            let conn = FramedConnection(fd: fd, role: .server, loop: loop, options: options)
            let creds = try? Sys.peerCredentials(fd)
            conn.setPeerCredentials(creds)
            if let allowed = options.allowedUIDs, creds.map({ !allowed.contains($0.uid) }) ?? true {
                refused.add(1, ordering: .relaxed)
                conn.start()
                conn.fail(.unauthorized, "peer uid \(creds.map { String($0.uid) } ?? "unknown") may not connect")
                continue
            }
            conn.admit = admit
            conn.onOpen = { [self] c in onConnection(c) }
            conn.onClose = { [self] c in connections[ObjectIdentifier(c)] = nil }
            connections[ObjectIdentifier(conn)] = conn
            conn.start()
        }
    }

    /// Stops accepting and closes the socket file (open connections stay open).
    public func stop() async {
        await loop.submit { [self] in
            if listenFD >= 0 { loop.deregister(listenFD); Sys.close(listenFD); listenFD = -1 }
            Sys.unlink(path)
        }
    }
}

extension FramedConnection {
    /// Connects to a Unix socket and runs the client side of the handshake.
    public static func connect(path: String, loop: EventLoop, hello: Hello, options: ConnectionOptions = ConnectionOptions()) async throws -> FramedConnection {
        let fd = try Sys.socketUnix()
        let connected: Bool
        do { connected = try Sys.connect(fd, path: path) } catch {
            Sys.close(fd)
            throw ConnectionError(.adapterUnavailable, "cannot connect to \(path): \(error)")
        }
        guard connected else {
            Sys.close(fd)
            throw ConnectionError(.adapterUnavailable, "\(path): the server's accept backlog is full")
        }
        let conn = FramedConnection(fd: fd, role: .client, loop: loop, options: options)
        var h = hello
        if h.protocolMajor == 0 { h.protocolMajor = ProtocolVersion.major; h.protocolMinor = ProtocolVersion.minor }
        h.capabilities = h.capabilities.isEmpty ? options.capabilities : h.capabilities
        let sending = h
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in
            loop.execute { conn.beginClientHandshake(sending, c) }
        }
        return conn
    }
}
