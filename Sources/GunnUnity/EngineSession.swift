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
    private let inbox: AsyncStream<JSONValue>.Continuation
    private let frames: AsyncStream<JSONValue>
    private let state: Mutex<State>

    struct State {
        var stage = Stage.awaitingHello
        var engineName = ""
        var permit: CircuitBreaker.Permit?
        var lockstep = false
        var lastHeard: Double
        var queued = 0
        /// Commands sent in this session (by seq) and when.
        var sent: [UInt64: Double] = [:]
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
        (frames, inbox) = AsyncStream<JSONValue>.makeStream(bufferingPolicy: .unbounded)
        state = Mutex(State(lastHeard: bridge.now()))
    }

    var stage: Stage { state.withLock { $0.stage } }
    var engineName: String { state.withLock { $0.engineName } }
    var permit: CircuitBreaker.Permit? { state.withLock { $0.permit } }
    var lastHeard: Double { state.withLock { $0.lastHeard } }
    func setStage(_ s: Stage) { state.withLock { $0.stage = s } }

    /// On the socket's loop: decode, refuse what cannot be read (the engine is told why), queue the rest.
    func received(_ m: WebSocketMessage) {
        let over = state.withLock { s -> Bool in
            s.lastHeard = bridge.now()
            s.queued += 1
            return s.queued > bridge.config.maxQueuedFrames
        }
        if over { return fail(GunnError(.queueFull, "more than \(bridge.config.maxQueuedFrames) frames waiting: the engine sends faster than gunn takes them"), close: 1008) }
        let isBinary = !m.isText
        guard isBinary == binary else {
            state.withLock { $0.queued -= 1 }
            bridge.noteRefused(engineName)
            return sendError(GunnError(.malformedFrame, "a \(isBinary ? "binary" : "text") message on the \(binary ? "+proto" : "+json") subprotocol"), ref: 0)
        }
        do {
            let frame = binary ? try EngineCodec.decodeBinary(m.bytes) : try EngineCodec.decodeJSON(m.bytes)
            inbox.yield(frame)
        } catch {
            state.withLock { $0.queued -= 1 }
            bridge.noteRefused(engineName)
            sendError(error, ref: 0)
        }
    }

    func startInbox() {
        Task { [self] in
            for await frame in frames {
                await handle(frame)
                state.withLock { $0.queued -= 1 }
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
            setStage(.syncing)
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

    func welcomed(name: String, permit: CircuitBreaker.Permit, lockstep: Bool) {
        state.withLock { $0.engineName = name; $0.permit = permit; $0.lockstep = lockstep }
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

    func markSent(_ seqs: [UInt64]) {
        let t = bridge.now()
        state.withLock { s in for q in seqs { s.sent[q] = t } }
        if !seqs.isEmpty { bridge.noteSent(engineName, seqs.count) }
    }

    /// Sends the commands of `pending` not yet sent in this session.
    func sendPending(_ pending: [(seq: UInt64, body: String, held: JSONValue)], head: UInt64) {
        let fresh = state.withLock { s in pending.filter { s.sent[$0.seq] == nil } }
        guard !fresh.isEmpty else { return }
        markSent(fresh.map(\.seq))
        for c in fresh { send(["command": EngineBridge.commandFrame(c, head: head)]) }
    }

    func answered(_ seq: UInt64) { state.withLock { _ = $0.sent.removeValue(forKey: seq) } }

    /// The oldest command sent more than `after` seconds ago, once (its clock restarts).
    func overdue(now: Double, after: Double) -> UInt64? {
        state.withLock { s in
            guard let (seq, _) = s.sent.filter({ now - $0.value > after }).min(by: { $0.key < $1.key }) else { return nil }
            s.sent[seq] = now
            return seq
        }
    }

    /// Whether a body differs from what this session last sent for it (an unchanged one is not logged again).
    func changed(_ body: JSONValue) -> Bool {
        guard let id = body["id"]?.stringValue else { return true }
        return state.withLock { s in
            if s.lastBody[id] == body { return false }
            s.lastBody[id] = body
            return true
        }
    }

    func forget(_ id: String) { state.withLock { _ = $0.lastBody.removeValue(forKey: id) } }

    func nextFrameNumber() -> UInt64 { state.withLock { s in s.frameNumber += 1; return s.frameNumber } }

    /// Ticks whose effects are written and not yet answered, at most.
    static let maxTicksInFlight = 64

    /// Waits for room among the ticks in flight.
    func tickSlot() async {
        while true {
            let ok = state.withLock { s -> Bool in
                guard s.ticksInFlight < Self.maxTicksInFlight else { return false }
                s.ticksInFlight += 1
                return true
            }
            if ok || stage == .closed { return }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
    }

    func tickDone() { state.withLock { $0.ticksInFlight -= 1 } }

    func heartbeat() {
        let n = state.withLock { s in s.nonce += 1; return s.nonce }
        send(["heartbeat": ["nonce": .number(Double(n))]])
    }
}
