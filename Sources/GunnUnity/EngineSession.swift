import GunnAuth
import GunnCore
import GunnHTTP
import Synchronization

/// One engine's WebSocket: its frames are decoded on the socket's loop and handled in order by one
/// task; what was sent to it and what it answered are kept here.
final class EngineSession: Sendable {
    enum Stage: Sendable { case awaitingHello, syncing, running, closed }

    let id: UInt64
    let ws: WebSocket
    let binary: Bool
    unowned let bridge: EngineBridge
    private let inbox: AsyncStream<(JSONValue, Int)>.Continuation
    private let frames: AsyncStream<(JSONValue, Int)>
    private let state: Mutex<State>

    struct State {
        var stage = Stage.awaitingHello
        var engineName = ""
        var permit: CircuitBreaker.Permit?
        var lockstep = false
        /// What the token may drive: a body id outside it is refused.
        var claims: TokenClaims?
        var lastHeard: Double
        var lastHeartbeat: Double = 0
        /// Heartbeats start once the Welcome and the Sync went out: the engine reads those two first.
        var heartbeating = false
        var queued = 0
        var queuedBytes = 0
        /// Commands sent in this session (by seq) and when; answered ones until the view drops them.
        var sent: [UInt64: Double] = [:]
        var answered: Set<UInt64> = []
        /// The last tick's ack, so acks go out in order.
        var lastAck: Task<Void, Never>?
        /// The last state of each body sent to the log in this session.
        var lastBody: [String: JSONValue] = [:]
        var frameNumber: UInt64 = 0
        var nonce: UInt64 = 0
        var errorsSent = 0
        var ticksInFlight = 0
    }

    init(id: UInt64, ws: WebSocket, binary: Bool, bridge: EngineBridge) {
        self.id = id
        self.ws = ws
        self.binary = binary
        self.bridge = bridge
        // Unbounded here, bounded by `received` (frames and bytes queued).
        (frames, inbox) = AsyncStream<(JSONValue, Int)>.makeStream(bufferingPolicy: .unbounded)
        state = Mutex(State(lastHeard: bridge.now()))
    }

    var stage: Stage { state.withLock { $0.stage } }
    var engineName: String { state.withLock { $0.engineName } }
    var permit: CircuitBreaker.Permit? { state.withLock { $0.permit } }
    var lastHeard: Double { state.withLock { $0.lastHeard } }
    var claims: TokenClaims? { state.withLock { $0.claims } }

    /// Moves from `from` to `to` only if the session is still at `from` (a timer or the sweep may
    /// have closed it meanwhile).
    func transition(from: Stage, to: Stage) -> Bool {
        state.withLock { s in
            guard s.stage == from else { return false }
            s.stage = to
            return true
        }
    }

    /// Bytes of frames read and not yet handled, at most.
    static let maxQueuedBytes = 64 << 20
    /// Bodies one session reports at most (each is remembered to skip unchanged ones).
    static let maxBodies = 10_000

    /// On the socket's loop: decode, refuse what cannot be read (the engine is told why), queue the rest.
    func received(_ m: WebSocketMessage) {
        let over = state.withLock { s -> Bool in
            s.lastHeard = bridge.now()
            s.queued += 1
            s.queuedBytes += m.bytes.count
            return s.queued > bridge.config.maxQueuedFrames || s.queuedBytes > Self.maxQueuedBytes
        }
        if over {
            return fail(GunnError(.queueFull, "more than \(bridge.config.maxQueuedFrames) frames or \(Self.maxQueuedBytes >> 20) MiB waiting: the engine sends faster than gunn takes them"), close: 1008)
        }
        let isBinary = !m.isText
        guard isBinary == binary else {
            dequeued(m.bytes.count)
            bridge.noteRefused(engineName)
            return sendError(GunnError(.malformedFrame, "a \(isBinary ? "binary" : "text") message on the \(binary ? "+proto" : "+json") subprotocol"), ref: 0)
        }
        do {
            let frame = binary ? try EngineCodec.decodeBinary(m.bytes) : try EngineCodec.decodeJSON(m.bytes)
            inbox.yield((frame, m.bytes.count))
        } catch {
            dequeued(m.bytes.count)
            bridge.noteRefused(engineName)
            sendError(error, ref: 0)
        }
    }

    private func dequeued(_ bytes: Int) { state.withLock { $0.queued -= 1; $0.queuedBytes -= bytes } }

    func startInbox() {
        Task { [self] in
            for await (frame, bytes) in frames {
                await handle(frame)
                dequeued(bytes)
            }
        }
    }

    func handle(_ frame: JSONValue) async {
        let (name, body) = EngineCodec.body(frame)
        let stage = self.stage
        switch (stage, name) {
        case (.closed, _): return
        case (_, "heartbeat"):
            if body["reply"] != .bool(true) { send(["heartbeat": ["nonce": body["nonce"] ?? 0, "reply": true]]) }
        case (_, "error"):
            return  // the engine reports a problem; it is in its own log
        case (.awaitingHello, "hello"):
            guard transition(from: .awaitingHello, to: .syncing) else { return }
            await bridge.hello(self, body)
        case (.awaitingHello, _):
            fail(GunnError(.handshakeRequired, "the first frame must be hello, not \(name)"), close: 4428)
        case (_, "hello"):
            sendError(GunnError(.unknownMessage, "hello was already received"), ref: frame["id"]?.numberValue.map { UInt64($0) } ?? 0)
        case (.syncing, "sync_done"), (.running, "sync_done"):
            bridge.syncDone(self)
        case (.syncing, "bodies"), (.running, "bodies"): await bridge.bodies(self, body)
        case (.syncing, "tick"), (.running, "tick"): await bridge.tick(self, body)
        case (.syncing, "body_remove"), (.running, "body_remove"): await bridge.remove(self, body)
        case (.syncing, "contact"), (.running, "contact"): await bridge.contact(self, body)
        case (.syncing, "command_result"), (.running, "command_result"): await bridge.commandResult(self, body)
        default:
            sendError(GunnError(.unknownMessage, "an engine does not send \(name)"), ref: frame["id"]?.numberValue.map { UInt64($0) } ?? 0)
        }
    }

    func welcomed(name: String, permit: CircuitBreaker.Permit, lockstep: Bool, claims: TokenClaims) {
        state.withLock { $0.engineName = name; $0.permit = permit; $0.lockstep = lockstep; $0.claims = claims }
    }

    func send(_ frame: JSONValue) {
        if binary { ws.send(binary: EngineCodec.encodeBinary(frame)) } else { ws.send(text: EngineCodec.encodeJSON(frame)) }
    }

    /// An error frame; at most 1000 per session (a flood of bad input is not answered forever).
    func sendError(_ e: GunnError, ref: UInt64) {
        let ok = state.withLock { s -> Bool in
            s.errorsSent += 1
            return s.errorsSent <= 1000
        }
        guard ok else { return }
        var o: JSONObject = ["code": .number(Double(e.code.code)), "name": .string(e.code.name), "message": .string(e.message)]
        if let r = e.retryAfterMs { o["retry_after_ms"] = .number(Double(r)) }
        if ref > 0 { o["ref"] = .number(Double(ref)) }
        send(["error": .object(o)])
    }

    /// Tells the engine why, then closes with `close` (4000 + the HTTP status of the code, by convention).
    func fail(_ e: GunnError, close: UInt16) {
        let was = state.withLock { s -> Stage in
            let was = s.stage
            s.stage = .closed
            return was
        }
        guard was != .closed else { return }
        sendError(e, ref: 0)
        ws.close(code: close, reason: String(e.code.name.prefix(100)))
    }

    func finish() {
        state.withLock { $0.stage = .closed }
        inbox.finish()
    }

    /// Marks the commands of `pending` not yet sent (nor answered) in this session as sent and
    /// returns them, in one step, so two pumps never send a command twice. Answered commands the
    /// view no longer lists are forgotten.
    func claim(_ pending: [(seq: UInt64, body: String, held: JSONValue)]) -> [(seq: UInt64, body: String, held: JSONValue)] {
        let t = bridge.now()
        let fresh = state.withLock { s -> [(seq: UInt64, body: String, held: JSONValue)] in
            let listed = Set(pending.map(\.seq))
            s.answered = s.answered.filter(listed.contains)
            let fresh = pending.filter { s.sent[$0.seq] == nil && !s.answered.contains($0.seq) }
            for c in fresh { s.sent[c.seq] = t }
            return fresh
        }
        if !fresh.isEmpty { bridge.noteSent(engineName, fresh.count) }
        return fresh
    }

    /// Sends the commands of `pending` not yet sent in this session.
    func sendPending(_ pending: [(seq: UInt64, body: String, held: JSONValue)], head: UInt64) {
        for c in claim(pending) { send(["command": EngineBridge.commandFrame(c, head: head)]) }
    }

    func answered(_ seq: UInt64) {
        state.withLock { s in
            s.sent[seq] = nil
            s.answered.insert(seq)
        }
    }

    /// The oldest command sent more than `after` seconds ago and still pending in the world,
    /// once (its clock restarts); commands the world no longer holds (their body was removed) are
    /// dropped.
    func overdue(now: Double, after: Double, pending: Set<UInt64>) -> UInt64? {
        state.withLock { s in
            s.sent = s.sent.filter { pending.contains($0.key) }
            guard let (seq, _) = s.sent.filter({ now - $0.value > after }).min(by: { $0.key < $1.key }) else { return nil }
            s.sent[seq] = now
            return seq
        }
    }

    /// Whether a body differs from what this session last sent for it (an unchanged one is not logged again).
    func changed(_ body: JSONValue) throws(GunnError) -> Bool {
        guard let id = body["id"]?.stringValue else { return true }
        return try state.withLock { s throws(GunnError) -> Bool in
            if s.lastBody[id] == body { return false }
            guard s.lastBody[id] != nil || s.lastBody.count < Self.maxBodies else {
                throw GunnError(.invalidField, "body \(id): this engine reports more than \(Self.maxBodies) bodies")
            }
            s.lastBody[id] = body
            return true
        }
    }

    /// Whether this session reported the body (its update may not be in the observer's view yet).
    func reported(_ id: String) -> Bool { state.withLock { $0.lastBody[id] != nil } }

    /// Forgets what was last sent for these bodies (their update was refused: the next report is sent again).
    func forget(_ ids: [String]) { state.withLock { s in for id in ids { s.lastBody[id] = nil } } }

    func nextFrameNumber() -> UInt64 { state.withLock { s in s.frameNumber += 1; return s.frameNumber } }

    /// Ticks whose effects are written and not yet answered, at most.
    static let maxTicksInFlight = 64

    /// Waits for room among the ticks in flight; false when the session closed meanwhile (the
    /// tick is then dropped). A slot taken is given back with `tickDone`.
    func tickSlot() async -> Bool {
        while true {
            let taken = state.withLock { s -> Bool? in
                if s.stage == .closed { return nil }
                guard s.ticksInFlight < Self.maxTicksInFlight else { return false }
                s.ticksInFlight += 1
                return true
            }
            guard let taken else { return false }
            if taken { return true }
            // Only under backpressure: the orchestrator answers slower than the engine steps.
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
    }

    func tickDone() { state.withLock { $0.ticksInFlight -= 1 } }

    /// Runs `send` after the previous tick's ack went out, so acks keep the ticks' order.
    func ackInOrder(_ send: @escaping @Sendable () async -> Void) {
        state.withLock { s in
            let previous = s.lastAck
            s.lastAck = Task {
                await previous?.value
                await send()
            }
        }
    }

    /// From now on the sweep sends heartbeats (called after the Welcome and the Sync are sent).
    func startHeartbeats(now: Double) {
        state.withLock { $0.heartbeating = true; $0.lastHeartbeat = now }
    }

    /// A heartbeat when `interval` seconds passed since the last one.
    func heartbeat(now: Double, interval: Double) {
        let n = state.withLock { s -> UInt64? in
            guard s.heartbeating, now - s.lastHeartbeat >= interval else { return nil }
            s.lastHeartbeat = now
            s.nonce += 1
            return s.nonce
        }
        if let n { send(["heartbeat": ["nonce": .number(Double(n))]]) }
    }
}
