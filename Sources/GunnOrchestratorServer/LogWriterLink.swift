import Foundation
import GunnCore
import GunnIO
import GunnWire
import Synchronization

/// The orchestrator's side of `eventlog.sock`: appends that are re-sent until acknowledged (the
/// writer acknowledges a resent entry again, so nothing is duplicated), and reads for recovery.
final class LogWriterLink: Sendable {
    let link: ReconnectingLink
    private let ids = Mutex(UInt64(0))

    init(path: String, loop: EventLoop, worldID: String) {
        var breaker = CircuitBreakerConfig()
        breaker.consecutiveFailuresThreshold = 3
        breaker.openBaseSeconds = 0.05
        breaker.openMaxSeconds = 1
        breaker.halfOpenProbes = 1
        link = ReconnectingLink(path: path, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: worldID, clientName: "orchestrator"),
                                breaker: breaker, backoff: Backoff(baseSeconds: 0.02, capSeconds: 0.5))
    }

    func nextID() -> UInt64 { ids.withLock { $0 += 1; return $0 } }

    /// One request, one reply (the orchestrator keeps at most one request in flight).
    func request(_ body: Frame.Body) async throws -> Frame {
        let c = try await link.connection()
        let id = nextID()
        try await c.send(body, id: id)
        while let f = await c.receive() {
            if f.id == id { return f }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection")
    }

    /// Appends until acknowledged or `deadlineSeconds` pass.
    func append(_ entries: [LogEntry], deadlineSeconds: Double) async throws -> AppendAck {
        let until = Date().timeIntervalSince1970 + deadlineSeconds
        var lastError: any Error = ConnectionError(.adapterUnavailable, "no attempt")
        while Date().timeIntervalSince1970 < until {
            do {
                let reply = try await request(.append(LogEntries(entries: entries)))
                switch reply.body {
                case .appendAck(let a)?: return a
                case .error(let e)?: throw WireJSON.gunnError(e)
                default: throw ConnectionError(.unknownMessage, "unexpected reply to an append")
                }
            } catch let e as GunnError {
                throw e // refused by the writer: retrying the same batch cannot help
            } catch {
                lastError = error
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
        throw lastError
    }

    /// Every entry the writer holds, oldest first.
    func readAll() async throws -> [LogEntry] {
        let c = try await link.connectWithRetry(deadlineSeconds: 10)
        let id = nextID()
        try await c.send(.readRange(SeqRange(from: 1, to: 0, maxBatch: 512)), id: id)
        var out: [LogEntry] = []
        while let f = await c.receive() {
            guard f.id == id else { continue }
            guard case .entries(let e)? = f.body else { throw ConnectionError(.unknownMessage, "unexpected reply to a read") }
            out += e.entries
            if e.done { return out }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection during recovery")
    }
}
