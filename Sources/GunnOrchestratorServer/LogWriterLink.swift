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
    let hello: Hello
    let options: ConnectionOptions

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
        hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "orchestrator", worldID: worldID, clientName: "orchestrator#\(incarnation)")
        self.options = options
        link = ReconnectingLink(path: path, loop: loop, hello: hello, options: options, breaker: breaker, backoff: Backoff(baseSeconds: 0.02, capSeconds: 0.5))
    }

    func nextID() -> UInt64 { ids.withLock { $0 += 1; return $0 } }

    /// Why an append did not go through, and whether some attempt went out unanswered (the
    /// writer may then hold part of the batch).
    struct AppendFailure: Error { let error: GunnError; let unanswered: Bool }

    /// Sends `body` on a connection of its own (never the appends' connection, whose reader
    /// takes every reply there) and collects the replies until `last` says one was the last.
    /// Each reply must come within the request timeout, or the connection is closed and the
    /// exchange fails. `waitSeconds` > 0: the writer may still be starting (recovery), connecting
    /// is retried that long.
    private func exchange(_ body: Frame.Body, waitSeconds: Double = 0, last: (Frame.Body) throws -> Bool) async throws -> [Frame.Body] {
        if waitSeconds > 0 { _ = try await link.connectWithRetry(deadlineSeconds: waitSeconds) }
        let c = try await FramedConnection.connect(path: link.path, loop: link.loop, hello: hello, options: options)
        defer { c.close() }
        let id = nextID()
        let progress = Mutex(EventLoop.now())
        let timeout = requestTimeoutSeconds
        // This exchange's own watchdog: no reply within the timeout closes its connection.
        let watchdog = Task {
            while !Task.isCancelled {
                try? await Task.sleep(nanoseconds: UInt64(min(timeout, 0.25) * 1e9 / 2))
                if EventLoop.now() - progress.withLock({ $0 }) > timeout { c.close(); return }
            }
        }
        defer { watchdog.cancel() }
        try await c.send(body, id: id)
        var out: [Frame.Body] = []
        while let f = await c.receive() {
            guard f.id == id, let b = f.body else { continue }
            progress.withLock { $0 = EventLoop.now() }
            if case .error(let e) = b { throw WireJSON.gunnError(e) }
            out.append(b)
            if try last(b) { return out }
        }
        throw ConnectionError(.adapterUnavailable, "the log writer closed the connection or did not answer within "
                              + "\(Int(requestTimeoutSeconds * 1000)) ms")
    }

    /// The entries from `from` to `to` (0: the head), oldest first.
    func read(from: UInt64, to: UInt64 = 0, waitSeconds: Double = 0) async throws -> [LogEntry] {
        var out: [LogEntry] = []
        _ = try await exchange(.readRange(SeqRange(from: from, to: to, maxBatch: 512)), waitSeconds: waitSeconds) { b in
            guard case .entries(let e) = b else { throw ConnectionError(.unknownMessage, "unexpected reply to a read") }
            out += e.entries
            return e.done
        }
        return out
    }

    /// The newest durable snapshot at or before `seq` (nil: none).
    func snapshot(atOrBefore seq: UInt64, waitSeconds: Double = 0) async throws -> SnapshotMessage? {
        let replies = try await exchange(.snapshotRequest(Nonce(seq)), waitSeconds: waitSeconds) { _ in true }
        guard case .snapshot(let s)? = replies.first else { throw ConnectionError(.unknownMessage, "unexpected reply to a snapshot request") }
        return s.globalSeq == 0 ? nil : s
    }

    /// Stores a durable snapshot with the writer (on a connection of its own, with this
    /// process's name, so the writer's fence admits it); throws the writer's refusal.
    func saveSnapshot(_ m: SnapshotMessage) async throws {
        _ = try await exchange(.snapshotSave(m)) { b in
            guard case .controlResult = b else { throw ConnectionError(.unknownMessage, "unexpected reply to a snapshot") }
            return true
        }
    }

    /// The newest `limit` requests of the writer's idempotency table still inside their TTL.
    func idempotencyRecords(limit: Int, waitSeconds: Double = 0) async throws -> [IdempotencyRecord] {
        var out: [IdempotencyRecord] = []
        _ = try await exchange(.idempotencyRequest(Nonce(UInt64(limit))), waitSeconds: waitSeconds) { b in
            guard case .idempotencyRecords(let r) = b else { throw ConnectionError(.unknownMessage, "unexpected reply to an idempotency request") }
            out += r.records
            return r.done
        }
        return out
    }
}

/// The core's appends, pipelined on the log link: each is sent as soon as the core asks (several
/// may be out at once), in the order asked, on one ordered connection, and the writer answers
/// them in that order. Outcomes are recorded in order and the actor takes them in one hop
/// (`takeOutcomes`), so sending never waits for the actor.
///
/// - A lost connection (or a request unanswered past the request timeout, which closes it)
///   marks every append sent on it as unanswered, and all unacknowledged appends are sent again,
///   in order, on the next connection (the writer acknowledges a resent entry again, so nothing
///   is duplicated); the oldest keeps trying for up to `deadlineSeconds`, then it fails with
///   ADAPTER_UNAVAILABLE.
/// - A refusal by the writer (its own code) fails that append at once.
/// - Either way every append still waiting is dropped with it, each with a failure of its own
///   (every append asked for gets exactly one outcome, or is covered by a later acknowledgement):
///   the core then holds everything unacknowledged as one batch and sends it again itself, after
///   `reset()` dropped whatever it had asked for meanwhile (merged into that batch).
/// The table holds what the core has out at once (at most `maxBatchesInFlight` plus a retry).
final class Appender: Sendable {
    typealias Outcome = (batch: UInt64, result: Result<UInt64, LogWriterLink.AppendFailure>)
    private struct Pending {
        var batch: UInt64
        var entries: [LogEntry]
        /// When the core asked for it (monotonic): the deadline runs from here.
        var since: Double
        var requestID: UInt64 = 0
        var sentOn: ObjectIdentifier?
        var sentAt: Double = 0
        /// Went out on a connection that was lost before its reply.
        var unanswered = false
    }
    private struct State {
        var pending: [Pending] = []
        var conn: FramedConnection?
        var connecting = false
        var outcomes: [Outcome] = []
        var draining = false
        /// When the current connection last brought a reply (a writer that answers is working).
        var lastReply: Double = 0
        var started = false
    }
    private let state = Mutex(State())
    private let log: LogWriterLink
    private let deadlineSeconds: Double
    private let wake = Mutex<(@Sendable () -> Void)?>(nil)

    init(log: LogWriterLink, deadlineSeconds: Double) {
        self.log = log
        self.deadlineSeconds = deadlineSeconds
    }

    /// `wake` is called (from any thread) when outcomes wait and no drain is under way.
    func start(wake: @escaping @Sendable () -> Void) {
        self.wake.withLock { $0 = wake }
        guard state.withLock({ s in defer { s.started = true }; return !s.started }) else { return }
        let timeout = log.requestTimeoutSeconds
        Task { [weak self] in
            // The watchdog: the oldest append unanswered past the request timeout — counted from
            // when it went out or from the last reply, whichever is later — closes the connection
            // (and so everything unacknowledged is sent again).
            while true {
                try? await Task.sleep(nanoseconds: UInt64(min(timeout, 0.25) * 1e9 / 2))
                guard let self else { return }
                let late = self.state.withLock { s -> FramedConnection? in
                    guard let c = s.conn, let oldest = s.pending.first(where: { $0.sentOn == ObjectIdentifier(c) }),
                          EventLoop.now() - max(oldest.sentAt, s.lastReply) > timeout else { return nil }
                    return c
                }
                late?.close()
            }
        }
    }

    /// The core took a failure and holds everything unacknowledged itself: what it asked for
    /// meanwhile (merged into its held batch) is dropped, each with a failure the core passes over.
    func reset() {
        let dropped = state.withLock { s -> Bool in
            guard !s.pending.isEmpty else { return false }
            dropAll(&s, GunnError(.adapterUnavailable, "dropped: an earlier append failed", retryAfterMs: 200))
            return true
        }
        if dropped { wakeIfNeeded() }
    }

    /// Every pending append fails with `error` (and leaves the table).
    private func dropAll(_ s: inout State, _ error: GunnError) {
        for p in s.pending { record(&s, (p.batch, .failure(LogWriterLink.AppendFailure(error: error, unanswered: p.unanswered)))) }
        s.pending.removeAll()
    }

    func enqueue(_ batch: UInt64, _ entries: [LogEntry]) {
        state.withLock { $0.pending.append(Pending(batch: batch, entries: entries, since: EventLoop.now())) }
        pump()
    }

    /// Every outcome recorded so far, oldest first; nil (and the drain ends) when none waits.
    func takeOutcomes() -> [Outcome]? {
        state.withLock { s in
            guard !s.outcomes.isEmpty else { s.draining = false; return nil }
            defer { s.outcomes.removeAll(keepingCapacity: true) }
            return s.outcomes
        }
    }

    /// Sends what is not yet out on the open connection, in order, or starts connecting.
    private func pump() {
        let connect = state.withLock { s -> Bool in
            guard let c = s.conn, c.closeReason == nil else {
                if s.pending.isEmpty || s.connecting { return false }
                s.connecting = true
                return true
            }
            let id = ObjectIdentifier(c)
            var frames: [Frame] = []
            for i in s.pending.indices where s.pending[i].sentOn != id {
                // Sent before on a connection since lost, with no reply: the writer may hold it.
                if s.pending[i].sentOn != nil { s.pending[i].unanswered = true }
                let request = log.nextID()
                s.pending[i].requestID = request
                s.pending[i].sentOn = id
                s.pending[i].sentAt = EventLoop.now()
                frames.append(Frame(id: request, .append(LogEntries(entries: s.pending[i].entries))))
            }
            // Posted under the lock: the loop takes posts in call order, so appends leave in order.
            if !frames.isEmpty { c.post(frames) }
            return false
        }
        if connect { Task { await self.connect() } }
    }

    private func connect() async {
        while true {
            if failOldestIfPastDeadline() { return }
            do {
                let c = try await log.link.connection()
                state.withLock { s in s.conn = c; s.connecting = false; s.lastReply = EventLoop.now() }
                startReader(c)
                pump()
                return
            } catch {
                try? await Task.sleep(nanoseconds: 20_000_000)
            }
        }
    }

    /// The oldest append has tried for `deadlineSeconds`: it fails (and every append with it).
    private func failOldestIfPastDeadline() -> Bool {
        let fired = state.withLock { s -> Bool in
            guard let first = s.pending.first else { s.connecting = false; return true }
            guard EventLoop.now() - first.since > deadlineSeconds else { return false }
            let error = GunnError(.adapterUnavailable, "the log writer is unavailable (no acknowledgement within \(Int(deadlineSeconds * 1000)) ms)",
                                  retryAfterMs: 200)
            record(&s, (first.batch, .failure(LogWriterLink.AppendFailure(error: error, unanswered: s.pending.contains { $0.unanswered }))))
            s.pending.removeFirst()
            dropAll(&s, GunnError(.adapterUnavailable, "dropped: an earlier append failed", retryAfterMs: 200))
            s.connecting = false
            return true
        }
        if fired { wakeIfNeeded() }
        return fired
    }

    private func record(_ s: inout State, _ o: Outcome) {
        s.outcomes.append(o)
    }

    private func wakeIfNeeded() {
        let first = state.withLock { s -> Bool in
            guard !s.outcomes.isEmpty, !s.draining else { return false }
            s.draining = true
            return true
        }
        if first { wake.withLock { $0 }?() }
    }

    private func startReader(_ c: FramedConnection) {
        Task {
            let id = ObjectIdentifier(c)
            while case let frames = await c.receive(upTo: 64), !frames.isEmpty {
                state.withLock { s in
                    if let current = s.conn, current === c { s.lastReply = EventLoop.now() }
                    for f in frames {
                        guard let i = s.pending.firstIndex(where: { $0.sentOn == id && $0.requestID == f.id }) else { continue }
                        let p = s.pending[i]
                        switch f.body {
                        case .appendAck(let a)?:
                            // In order: anything before it is acknowledged by it too (the log is contiguous).
                            s.pending.removeFirst(i + 1)
                            record(&s, (p.batch, .success(a.lastSeq)))
                        case .error(let e)?:
                            record(&s, (p.batch, .failure(LogWriterLink.AppendFailure(error: WireJSON.gunnError(e), unanswered: p.unanswered))))
                            s.pending.remove(at: i)
                            dropAll(&s, GunnError(.adapterUnavailable, "dropped: an earlier append was refused", retryAfterMs: 200))
                        default:
                            record(&s, (p.batch, .failure(LogWriterLink.AppendFailure(error: GunnError(.unknownMessage, "unexpected reply to an append"),
                                                                                      unanswered: p.unanswered))))
                            s.pending.remove(at: i)
                            dropAll(&s, GunnError(.adapterUnavailable, "dropped: an earlier append failed", retryAfterMs: 200))
                        }
                    }
                }
                wakeIfNeeded()
            }
            // Closed: what went out on it is unanswered and goes again on the next connection.
            let again = state.withLock { s -> Bool in
                if let current = s.conn, current === c { s.conn = nil }
                for i in s.pending.indices where s.pending[i].sentOn == id {
                    s.pending[i].unanswered = true
                    s.pending[i].sentOn = nil
                }
                return !s.pending.isEmpty
            }
            if again { pump() }
        }
    }
}
