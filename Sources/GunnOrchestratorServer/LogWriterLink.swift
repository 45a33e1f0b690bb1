import Foundation
import GunnCore
import GunnIO
import GunnWire
import Synchronization

/// The orchestrator's side of `eventlog.sock`: appends that are re-sent until acknowledged (the
/// writer acknowledges a resent entry again, so nothing is duplicated), and reads for recovery.
/// Every request has a deadline: a writer that stops answering (wedged, SIGSTOPped) costs one
/// timeout, its connection is dropped, and reconnecting goes through the link's breaker.
final class LogWriterLink: Sendable {
    let link: ReconnectingLink
    private let ids = Mutex(UInt64(0))
    /// How long one request waits for its reply before the connection is given up.
    let requestTimeoutSeconds: Double

    init(path: String, loop: EventLoop, worldID: String, requestTimeoutSeconds: Double = 1) {
        var breaker = CircuitBreakerConfig()
        breaker.consecutiveFailuresThreshold = 3
        breaker.openBaseSeconds = 0.05
        breaker.openMaxSeconds = 1
        breaker.halfOpenProbes = 1
        var options = ConnectionOptions()
        options.handshakeTimeoutMs = requestTimeoutSeconds * 1000
        self.requestTimeoutSeconds = requestTimeoutSeconds
        link = ReconnectingLink(path: path, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: worldID, clientName: "orchestrator"),
                                options: options, breaker: breaker, backoff: Backoff(baseSeconds: 0.02, capSeconds: 0.5))
    }

    func nextID() -> UInt64 { ids.withLock { $0 += 1; return $0 } }

    /// One request, one reply (the orchestrator keeps at most one request in flight), within the deadline.
    func request(_ body: Frame.Body) async throws -> Frame {
        let c = try await link.connection()
        let id = nextID()
        try await c.send(body, id: id)
        let timeout = requestTimeoutSeconds
        let watchdog = Task {
            try await Task.sleep(nanoseconds: UInt64(timeout * 1e9))
            c.close() // the receive below then ends: no late reply is ever taken for a later request
        }
        defer { watchdog.cancel() }
        while let f = await c.receive() {
            if f.id == id { return f }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection or did not answer within \(Int(timeout * 1000)) ms")
    }

    /// Appends until acknowledged or `deadlineSeconds` pass; a refusal by the writer (its own
    /// code: LOG_STORAGE_FAILURE, LOG_INTEGRITY_VIOLATION, WORLD_MISMATCH…) is thrown at once.
    func append(_ entries: [LogEntry], deadlineSeconds: Double) async throws(GunnError) -> AppendAck {
        let until = EventLoop.now() + deadlineSeconds
        var last = GunnError(.adapterUnavailable, "the log writer is unavailable", retryAfterMs: 200)
        var unanswered = false
        repeat {
            do {
                let reply = try await request(.append(LogEntries(entries: entries)))
                switch reply.body {
                case .appendAck(let a)?: return a
                case .error(let e)?: throw WireJSON.gunnError(e)
                default: throw GunnError(.unknownMessage, "unexpected reply to an append")
                }
            } catch let e as GunnError {
                // Refused by the writer: retrying the same batch at once cannot help. After an
                // unanswered attempt the writer may hold part of it, which the caller must know.
                if unanswered { throw GunnError(.adapterUnavailable, "refused after an unanswered attempt: \(e)", retryAfterMs: 200) }
                throw e
            } catch {
                unanswered = true
                last = GunnError(.adapterUnavailable, "the log writer is unavailable: \(error)", retryAfterMs: 200)
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        } while EventLoop.now() < until
        throw last
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
