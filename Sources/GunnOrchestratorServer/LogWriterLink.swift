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
        // The client name carries this process's start on the machine's monotonic clock: the log
        // writer lets only the newest orchestrator append (a dead predecessor's late frames are fenced).
        let incarnation = UInt64(EventLoop.now() * 1e6)
        link = ReconnectingLink(path: path, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: worldID,
                                                                     clientName: "orchestrator#\(incarnation)"),
                                options: options, breaker: breaker, backoff: Backoff(baseSeconds: 0.02, capSeconds: 0.5))
    }

    func nextID() -> UInt64 { ids.withLock { $0 += 1; return $0 } }

    /// A request went out and no reply came: the writer may have acted on it.
    struct Unanswered: Error { let reason: String }

    /// One request, one reply (the orchestrator keeps at most one request in flight), within the
    /// deadline. Thrown after the request was sent: `Unanswered`.
    func request(_ body: Frame.Body) async throws -> Frame {
        let c = try await link.connection()
        let id = nextID()
        try await c.send(body, id: id)
        do { return try await reply(on: c, id: id) } catch { throw Unanswered(reason: "\(error)") }
    }

    /// The request waiting for its reply: its connection and when it went out (monotonic).
    private let inFlight = Mutex<(conn: FramedConnection, since: Double)?>(nil)
    private let watchdogStarted = Mutex(false)

    private func reply(on c: FramedConnection, id: UInt64) async throws -> Frame {
        startWatchdog()
        inFlight.withLock { $0 = (c, EventLoop.now()) }
        defer { inFlight.withLock { $0 = nil } }
        while let f = await c.receive() {
            if f.id == id { return f }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection or did not answer within \(Int(requestTimeoutSeconds * 1000)) ms")
    }

    /// One task for the link's whole life (not one per request, which the hot path would pay
    /// for): it closes the connection of a request past its deadline, which ends that receive,
    /// so no late reply is ever taken for a later request.
    private func startWatchdog() {
        guard watchdogStarted.withLock({ started in defer { started = true }; return !started }) else { return }
        let timeout = requestTimeoutSeconds
        Task { [weak self] in
            while let self {
                try? await Task.sleep(nanoseconds: UInt64(min(timeout, 0.25) * 1e9 / 2))
                let late = self.inFlight.withLock { r -> FramedConnection? in
                    guard let r, EventLoop.now() - r.since > timeout else { return nil }
                    return r.conn
                }
                late?.close()
            }
        }
    }

    /// Why an append did not go through, and whether some attempt went out unanswered (the
    /// writer may then hold part of the batch).
    struct AppendFailure: Error { let error: GunnError; let unanswered: Bool }

    /// Appends until acknowledged or `deadlineSeconds` pass; a refusal by the writer (its own
    /// code: LOG_STORAGE_FAILURE, LOG_INTEGRITY_VIOLATION, WORLD_MISMATCH…) ends it at once.
    func append(_ entries: [LogEntry], deadlineSeconds: Double) async throws(AppendFailure) -> AppendAck {
        let until = EventLoop.now() + deadlineSeconds
        var last = GunnError(.adapterUnavailable, "the log writer is unavailable", retryAfterMs: 200)
        var unanswered = false
        repeat {
            do {
                let reply = try await request(.append(LogEntries(entries: entries)))
                switch reply.body {
                case .appendAck(let a)?: return a
                case .error(let e)?: throw AppendFailure(error: WireJSON.gunnError(e), unanswered: unanswered)
                default: throw AppendFailure(error: GunnError(.unknownMessage, "unexpected reply to an append"), unanswered: unanswered)
                }
            } catch let e as AppendFailure {
                throw e // refused by the writer: retrying the same batch at once cannot help
            } catch {
                if error is Unanswered { unanswered = true }
                last = GunnError(.adapterUnavailable, "the log writer is unavailable: \(error)", retryAfterMs: 200)
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        } while EventLoop.now() < until
        throw AppendFailure(error: last, unanswered: unanswered)
    }

    /// Every entry the writer holds, oldest first.
    func readAll() async throws -> [LogEntry] {
        let c = try await link.connectWithRetry(deadlineSeconds: 10)
        let id = nextID()
        try await c.send(.readRange(SeqRange(from: 1, to: 0, maxBatch: 512)), id: id)
        // Under the same watchdog as appends: each batch of the read must come within the deadline.
        startWatchdog()
        inFlight.withLock { $0 = (c, EventLoop.now()) }
        defer { inFlight.withLock { $0 = nil } }
        var out: [LogEntry] = []
        while let f = await c.receive() {
            guard f.id == id else { continue }
            inFlight.withLock { $0 = (c, EventLoop.now()) }
            switch f.body {
            case .entries(let e)?:
                out += e.entries
                if e.done { return out }
            case .error(let e)?: throw WireJSON.gunnError(e)
            default: throw ConnectionError(.unknownMessage, "unexpected reply to a read")
            }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection or did not answer within "
                              + "\(Int(requestTimeoutSeconds * 1000)) ms during recovery")
    }
}
