import Foundation
import GunnCore
import GunnIO
import GunnWire
import Synchronization

/// The home's sockets, each request bounded by one deadline: a peer that does not answer (stopped,
/// wedged) costs `timeoutMs` and ends in exit 5 naming it, never a hang.
struct Endpoints: Sendable {
    let home: String
    let timeoutMs: Double
    /// One loop for the life of the process (it is never shut down: the process exits instead).
    /// Creating it fails only when the system refuses a thread or an eventfd — no input reaches
    /// it — and then gunnctl says so and exits 70 rather than trapping.
    static let sharedLoop: EventLoop = {
        do { return try EventLoop(name: "gunnctl") } catch {
            FileHandle.standardError.write(Data("gunnctl: INTERNAL_ERROR (9001): cannot start its I/O loop: \(error)\n".utf8))
            exit(70)
        }
    }()

    func path(_ name: String) -> String { home + "/run/\(name).sock" }

    func timedOut(_ name: String, _ what: String) -> GunnCtl.Exit {
        GunnCtl.Exit(code: 5, message: "\(ErrorCode.operationTimeout.name): \(name) (\(path(name))) did not answer \(what) "
                     + "within \(Int(timeoutMs)) ms")
    }

    func connect(_ name: String) async throws -> Link {
        let path = path(name)
        guard FileManager.default.fileExists(atPath: path) else {
            throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): gunn is not running under \(home) (no \(path))")
        }
        var options = ConnectionOptions()
        options.handshakeTimeoutMs = timeoutMs
        do {
            let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "ctl", clientName: "gunnctl")
            let conn = try await FramedConnection.connect(path: path, loop: Self.sharedLoop, hello: hello, options: options)
            return Link(conn: conn, name: name, endpoints: self)
        } catch let e as ConnectionError where e.code == .handshakeRequired {
            // The handshake timer: the socket accepted, the process behind it did not answer.
            throw timedOut(name, "the handshake")
        } catch let e as ConnectionError where e.code != .adapterUnavailable {
            // The process answered, with a coded refusal of our Hello.
            throw GunnCtl.Exit(code: 4, message: "\(path) refused the handshake: \(e)")
        } catch {
            throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): \(path) does not answer (\(error))")
        }
    }

    /// Connects, sends one request and returns its reply (a coded error reply becomes exit 4).
    func call(_ name: String, _ body: Frame.Body, _ what: String) async throws -> Frame.Body {
        let link = try await connect(name)
        defer { link.close() }
        return try await link.request(body, what)
    }

    /// `call`, as a value: for asking several processes at once.
    func result(_ name: String, _ body: Frame.Body, _ what: String) async -> Result<Frame.Body, GunnCtl.Exit> {
        do { return .success(try await call(name, body, what)) } catch let e as GunnCtl.Exit { return .failure(e) } catch {
            return .failure(GunnCtl.Exit(code: 4, message: "\(error)"))
        }
    }
}

/// One connection of gunnctl to one process, every wait on it bounded by the deadline.
final class Link: Sendable {
    let conn: FramedConnection
    let name: String
    let endpoints: Endpoints
    private let lastID = Mutex<UInt64>(0)

    init(conn: FramedConnection, name: String, endpoints: Endpoints) { self.conn = conn; self.name = name; self.endpoints = endpoints }

    func close() { conn.close() }

    func nextID() -> UInt64 { lastID.withLock { $0 += 1; return $0 } }

    func send(_ body: Frame.Body, id: UInt64) async throws { try await conn.send(body, id: id) }

    /// The next frame, or nil when the peer closed; exit 5 when none came within the deadline.
    func receive(_ what: String) async throws -> Frame? {
        let expired = Flag()
        let conn = conn
        let timer = Task {
            try? await Task.sleep(nanoseconds: UInt64(endpoints.timeoutMs * 1e6))
            guard !Task.isCancelled else { return }
            expired.set()
            conn.close()
        }
        defer { timer.cancel() }
        let f = await conn.receive()
        if f == nil && expired.isSet { throw endpoints.timedOut(name, what) }
        return f
    }

    /// One request, its reply (a coded error reply becomes exit 4).
    func request(_ body: Frame.Body, _ what: String) async throws -> Frame.Body {
        let id = nextID()
        try await conn.send(body, id: id)
        while let f = try await receive(what) {
            guard f.id == id, let b = f.body else { continue }
            if case .error(let e) = b { throw GunnCtl.Exit(code: 4, message: "\(e.name) (\(e.code)): \(e.message)") }
            return b
        }
        throw GunnCtl.Exit(code: 3, message: "\(ErrorCode.notRunning.name): \(name) closed the connection before the reply to \(what)")
    }
}

