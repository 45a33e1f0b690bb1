import Foundation
import GunnAuth
import GunnClient
import GunnCore
import GunnHTTP
import GunnIO
import Synchronization

/// The bridge's settings (gunn-adapter-unity's flags).
public struct EngineBridgeConfig: Sendable {
    public var worldID: String
    /// "free" (the engine steps at its own pace) or "lockstep" (it waits for each TickAck).
    public var timeMode = "free"
    /// Stage deadlines: the engine's Hello after the upgrade, its SyncDone after the Welcome.
    public var helloTimeout: Double = 5
    public var syncTimeout: Double = 5
    public var heartbeatMs: UInt32 = 1000
    /// A command unanswered this long counts as a failure of the link's breaker.
    public var commandTimeout: Double = 10
    /// Consecutive failures (unanswered commands, failed handshakes) that open the breaker.
    public var breakerFailures = 3
    /// Physics contacts taken per second (a token bucket; past it they are dropped and counted).
    public var contactsPerSecond: Double = 2000
    /// Frames of one engine read and not yet handled; past it the engine is cut off (1008).
    public var maxQueuedFrames = 4096
    public init(worldID: String) { self.worldID = worldID }
}

/// What one engine link looks like (run/engine.status.json, `gunnctl status`).
public struct EngineLinkStatus: Sendable, Equatable {
    public var engine = ""
    /// "connected" (synced), "syncing", "lost" or "none" (no engine has connected yet).
    public var link = "none"
    public var breaker = "closed"
    public var code = ""
    public var reason = ""
    public var sessions = 0
    public var commandsSent = 0
    public var commandsAnswered = 0
    public var ticks = 0
    public var contactsDropped = 0
    public var framesRefused = 0

    public var json: JSONValue {
        ["engine": .string(engine), "link": .string(link), "breaker": .string(breaker), "code": .string(code), "reason": .string(reason),
         "sessions": .number(Double(sessions)), "commands_sent": .number(Double(commandsSent)), "commands_answered": .number(Double(commandsAnswered)),
         "ticks": .number(Double(ticks)), "contacts_dropped": .number(Double(contactsDropped)), "frames_refused": .number(Double(framesRefused))]
    }
}

/// gunn-adapter-unity's logic: game engines connect over WebSocket (subprotocol
/// `gunn.engine.v1+proto` or `+json`), say Hello, are welcomed and synced, then report ticks,
/// bodies and contacts (emitted as effects) and receive the commands that their bodies' agents'
/// intents became (`EngineCommand`), answering each once. Commands are found in the view of an
/// observer agent that sees the whole world, so what is pending survives any restart: it is in the
/// log. docs/engine.md.
public final class EngineBridge: Sendable {
    public static let subprotocols = ["gunn.engine.v1+proto", "gunn.engine.v1+json"]
    public static let protocolMajor: UInt32 = 1, protocolMinor: UInt32 = 0
    public static let capabilities = ["lockstep", "free", "contacts", "custom_commands", "heartbeat", "resume"]

    let client: GunnClient
    let auth: Authenticator
    let config: EngineBridgeConfig
    let statusPath: String?
    public let observer: AgentID
    let state: Mutex<BridgeState>
    /// The monotonic clock (seconds).
    let now: @Sendable () -> Double

    struct BridgeState {
        var nextSession: UInt64 = 1
        var sessions: [UInt64: EngineSession] = [:]
        /// The synced or syncing session of each engine name.
        var current: [String: UInt64] = [:]
        var links: [String: EngineLinkStatus] = [:]
        var breaker: CircuitBreaker
        var bucket: (tokens: Double, at: Double) = (0, 0)
        /// Engines whose link was reported lost in this process, so it is reported once.
        var reportedLost: Set<String> = []
        var startupChecked = false
    }

    public init(client: GunnClient, auth: Authenticator, config: EngineBridgeConfig, statusPath: String?,
                now: @escaping @Sendable () -> Double = { EventLoop.now() }) {
        self.client = client
        self.auth = auth
        self.config = config
        self.statusPath = statusPath
        self.now = now
        observer = AgentID("engine-bridge")
        var b = CircuitBreakerConfig()
        b.consecutiveFailuresThreshold = config.breakerFailures
        b.minimumCalls = 1_000_000  // only consecutive failures open it
        b.openBaseSeconds = 1
        b.openMaxSeconds = 10
        b.halfOpenProbes = 1
        b.probeDeadlineSeconds = config.helloTimeout + config.syncTimeout + 1
        state = Mutex(BridgeState(breaker: CircuitBreaker(name: "engine", config: b)))
    }

    /// Registers the observer and follows its view: every change may carry new commands.
    public func start() async throws {
        // One step's changes are one delta, however many bodies moved.
        _ = try await client.register(["agent_id": .string(observer.rawValue), "interrupt": "only_conflict", "max_patch_ops": 100_000])
        writeStatus()
        Task { [self] in
            while await client.nextObservation(for: observer) != nil { pump() }
        }
        Task { [self] in
            while true {
                try? await Task.sleep(nanoseconds: 250_000_000)
                sweep()
            }
        }
        pump()
    }

    /// The WebSocket endpoint engines connect to.
    public func endpoint() -> WebSocketEndpoint {
        var options = WebSocketOptions()
        options.maxMessageBytes = EngineCodec.maxFrameBytes
        return WebSocketEndpoint(subprotocols: Self.subprotocols, requireSubprotocol: true, options: options) { [self] ws, _ in open(ws) }
    }

    // MARK: - The observer's view

    /// Entities of the held view (the observer sees everything).
    func entities() -> JSONObject {
        guard case .object(let e)? = client.view(of: observer)?.doc["entities"] else { return JSONObject() }
        return e
    }

    var headSeq: UInt64 { client.viewGlobalSeq(of: observer) ?? 0 }

    /// The pending commands of `engine`'s bodies, oldest first.
    static func pendingCommands(_ entities: JSONObject, engine: String) -> [(seq: UInt64, body: String, held: JSONValue)] {
        var out: [(UInt64, String, JSONValue)] = []
        for (id, e) in entities {
            guard e["engine"] == .string(engine), case .object(let pending)? = e["commands_pending"] else { continue }
            for (k, v) in pending { if let seq = UInt64(k) { out.append((seq, id, v)) } }
        }
        return out.sorted { $0.0 < $1.0 }
    }

    /// Sends every pending command a running session has not been sent; at the first view after a
    /// start, reports engines whose bodies are in the world but which are not connected as lost.
    func pump() {
        let ents = entities()
        let firstView = state.withLock { s -> Bool in
            guard !s.startupChecked, client.view(of: observer) != nil else { return false }
            s.startupChecked = true
            return true
        }
        if firstView {
            var engines = Set<String>()
            for (_, e) in ents { if case .string(let name)? = e["engine"], e["engine_link"] != "lost" { engines.insert(name) } }
            for name in engines.sorted() where state.withLock({ $0.current[name] == nil }) {
                reportLost(name, code: .unityConnectionLost, reason: "the adapter started and no engine \(name) is connected")
            }
        }
        let running = state.withLock { s in s.current.values.compactMap { s.sessions[$0] }.filter { $0.stage == EngineSession.Stage.running } }
        for session in running { session.sendPending(Self.pendingCommands(ents, engine: session.engineName), head: headSeq) }
    }

    // MARK: - Sessions

    func open(_ ws: WebSocket) {
        let binary = ws.subprotocol == Self.subprotocols[0]
        let id = state.withLock { s -> UInt64 in
            let id = s.nextSession
            s.nextSession += 1
            return id
        }
        let session = EngineSession(id: id, ws: ws, binary: binary, bridge: self)
        state.withLock { $0.sessions[id] = session }
        ws.onMessage = { [weak session] m in session?.received(m) }
        ws.onClose = { [weak self] code, reason in self?.closed(id, code: code, reason: reason) }
        session.startInbox()
        let deadline = config.helloTimeout
        Task { [weak session] in
            try? await Task.sleep(nanoseconds: UInt64(deadline * 1e9))
            guard let session, session.stage == EngineSession.Stage.awaitingHello else { return }
            session.fail(GunnError(.operationTimeout, "stage hello: no EngineHello within \(Int(deadline * 1000)) ms of the upgrade"), close: 4408)
        }
    }

    func closed(_ id: UInt64, code: UInt16, reason: String) {
        let (session, wasCurrent) = state.withLock { s -> (EngineSession?, Bool) in
            guard let session = s.sessions.removeValue(forKey: id) else { return (nil, false) }
            let current = s.current[session.engineName] == id
            if current { s.current[session.engineName] = nil }
            return (session, current)
        }
        guard let session else { return }
        session.finish()
        if wasCurrent {
            reportLost(session.engineName, code: .unityConnectionLost, reason: "the engine's connection closed (\(code)\(reason.isEmpty ? "" : ": " + reason))")
        }
    }

    /// EngineLink lost in the log (once per loss) and in the status file.
    func reportLost(_ engine: String, code: ErrorCode, reason: String) {
        let first = state.withLock { s -> Bool in
            var l = s.links[engine] ?? EngineLinkStatus()
            l.engine = engine; l.link = "lost"; l.code = code.name; l.reason = reason; l.breaker = s.breaker.state.rawValue
            s.links[engine] = l
            return s.reportedLost.insert(engine).inserted
        }
        writeStatus()
        guard first else { return }
        let draft = EffectDraft(kind: "EngineLink", payload: ["engine": .string(engine), "state": "lost", "code": .number(Double(code.code)),
                                                             "name": .string(code.name), "reason": .string(reason)], sourceID: "engine:" + engine)
        Task { [client] in _ = try? await client.emit(draft) }
    }

    /// Hello: version, token, breaker; then Welcome, the answers the engine held, WorldSync.
    func hello(_ session: EngineSession, _ h: JSONValue) async {
        let major = UInt32(h["protocol_major"]?.numberValue ?? 0), minor = UInt32(h["protocol_minor"]?.numberValue ?? 0)
        guard major == Self.protocolMajor else {
            return session.fail(GunnError(.versionMismatch, "the engine speaks gunn.engine protocol \(major).\(minor); this adapter speaks \(Self.protocolMajor).\(Self.protocolMinor)"), close: 4426)
        }
        guard case .string(let name)? = h["engine_name"], AgentID(name).isValid, name.utf8.count <= 64 else {
            return session.fail(GunnError(.invalidField, "engine_name must be a valid identifier of 1 to 64 bytes"), close: 4400)
        }
        do {
            let claims = try auth.claims(token: h["token"]?.stringValue ?? "")
            try Authenticator.require(claims, .emit)
        } catch {
            return session.fail(error, close: error.code == .unauthorized ? 4401 : 4403)
        }
        let t = now()
        let (decision, _) = state.withLock { $0.breaker.acquire(at: t) }
        guard case .allowed(let permit) = decision else {
            var retry: UInt64 = 1000
            if case .rejected(let ms) = decision { retry = ms }
            return session.fail(GunnError(.adapterUnavailable, "the engine link's breaker is open after repeated failures", retryAfterMs: retry), close: 4503)
        }
        var offered: [String] = []
        if case .array(let caps)? = h["capabilities"] { offered = caps.compactMap(\.stringValue) }
        let agreed = Self.capabilities.filter(offered.contains)
        let mode = agreed.contains(config.timeMode) ? config.timeMode : "free"
        // A newer connection of the same engine replaces the older one.
        let older = state.withLock { s -> EngineSession? in
            let old = s.current[name].flatMap { s.sessions[$0] }
            s.current[name] = session.id
            var l = s.links[name] ?? EngineLinkStatus()
            l.engine = name; l.link = "syncing"; l.sessions += 1; l.breaker = s.breaker.state.rawValue
            s.links[name] = l
            return old
        }
        older?.fail(GunnError(.unityConnectionLost, "a newer connection of the engine \(name) replaced this one"), close: 4409)
        session.welcomed(name: name, permit: permit, lockstep: mode == "lockstep")
        writeStatus()
        var welcome: JSONObject = ["protocol_major": .number(Double(Self.protocolMajor)), "protocol_minor": .number(Double(Self.protocolMinor)),
                                   "capabilities": .array(agreed.map { .string($0) }), "world_id": .string(config.worldID),
                                   "session_id": .string("\(name)-\(session.id)"), "time_mode": .string(mode),
                                   "heartbeat_ms": .number(Double(config.heartbeatMs)), "global_seq": .number(Double(headSeq)),
                                   "adapter_version": "gunn-adapter-unity 1.0", "sync_deadline_ms": .number(config.syncTimeout * 1000)]
        if welcome["capabilities"] == .array([]) { welcome["capabilities"] = nil }
        session.send(["welcome": .object(welcome)])
        // The link is up again in the world (its bodies' agents may command them).
        let link = EffectDraft(kind: "EngineLink", payload: ["engine": .string(name), "state": "connected",
                                                            "reason": .string("engine \(h["engine_version"]?.stringValue ?? "") session \(session.id)")],
                               sourceID: "engine:" + name)
        _ = try? await client.emit(link)
        state.withLock { _ = $0.reportedLost.remove(name) }
        // Answers the engine kept for commands it executed: recorded when still pending.
        let pendingNow = Self.pendingCommands(entities(), engine: name)
        let pendingSeqs = Set(pendingNow.map(\.seq))
        var answered = Set<UInt64>()
        if case .array(let results)? = h["results"] {
            for r in results {
                guard let seq = r["command_seq"]?.numberValue.map({ UInt64($0) }), pendingSeqs.contains(seq) else { continue }
                if await commandResult(session, r, pending: pendingNow) { answered.insert(seq) }
            }
        }
        let commands = pendingNow.filter { !answered.contains($0.seq) }
        session.markSent(commands.map(\.seq))
        var bodies: [JSONValue] = []
        for (id, e) in entities() where e["engine"] == .string(name) { bodies.append(.string(id)) }
        bodies.sort { ($0.stringValue ?? "") < ($1.stringValue ?? "") }
        session.send(["sync": ["commands": .array(commands.map { Self.commandFrame($0, head: headSeq) }), "global_seq": .number(Double(headSeq)),
                               "bodies": .array(bodies)]])
        let deadline = config.syncTimeout
        Task { [weak session] in
            try? await Task.sleep(nanoseconds: UInt64(deadline * 1e9))
            guard let session, session.stage == EngineSession.Stage.syncing else { return }
            session.fail(GunnError(.operationTimeout, "stage world_sync: no SyncDone within \(Int(deadline * 1000)) ms of the Welcome"), close: 4408)
        }
    }

    static func commandFrame(_ c: (seq: UInt64, body: String, held: JSONValue), head: UInt64) -> JSONValue {
        var o: JSONObject = ["command_seq": .number(Double(c.seq)), "body_id": .string(c.body), "kind": c.held["command"] ?? "move",
                             "global_seq": .number(Double(head))]
        if case .array(let to)? = c.held["to"] { o["to"] = .array(to) }
        if let d = c.held["data"], d != .null { o["data_json"] = .string(CanonicalJSON.encodeString(d)) }
        return .object(o)
    }

    func syncDone(_ session: EngineSession) {
        guard session.stage == EngineSession.Stage.syncing else { return }
        session.setStage(.running)
        state.withLock { s in
            if let p = session.permit { _ = s.breaker.record(p, success: true, at: now()) }
            var l = s.links[session.engineName] ?? EngineLinkStatus()
            l.link = "connected"; l.code = ""; l.reason = ""; l.breaker = s.breaker.state.rawValue
            s.links[session.engineName] = l
        }
        writeStatus()
        pump()
    }

    /// A failed handshake or an unanswered command counts against the breaker.
    func breakerFailure(_ session: EngineSession?, reason: String) {
        let opened = state.withLock { s -> Bool in
            let before = s.breaker.state
            if let p = session?.permit { _ = s.breaker.record(p, success: false, at: now()) }
            else if case (.allowed(let p), _) = s.breaker.acquire(at: now()) { _ = s.breaker.record(p, success: false, at: now()) }
            for k in s.links.keys { s.links[k]?.breaker = s.breaker.state.rawValue }
            return before != .open && s.breaker.state == .open
        }
        writeStatus()
        if opened, let session {
            session.fail(GunnError(.adapterUnavailable, "the engine link's breaker opened: \(reason)"), close: 4503)
        }
    }

    // MARK: - What the engine reports

    func source(_ engine: String) -> String { "engine:" + engine }

    /// Sends drafts in one write, in order, and returns their tickets without waiting.
    func post(_ drafts: [EffectDraft]) async -> Result<[GunnClient.EmitTicket], GunnError> {
        do { return .success(try await client.sendEmits(drafts)) } catch {
            return .failure(GunnError(.adapterUnavailable, "the orchestrator did not take the effects: \(error)"))
        }
    }

    /// Emits drafts (in order, one write) and waits for their answers; returns the refusals.
    func emitAll(_ drafts: [EffectDraft]) async -> [GunnError] {
        switch await post(drafts) {
        case .failure(let e): return [e]
        case .success(let tickets):
            var out: [GunnError] = []
            for t in tickets { if let e = await t.result() { out.append(e) } }
            return out
        }
    }

    /// One body of a tick or a `bodies` frame, checked, as BodyUpdate takes it.
    func bodyItem(_ b: JSONValue) throws(GunnError) -> JSONValue {
        guard case .string(let id)? = b["id"], AgentID(id).isValid else { throw GunnError(.invalidField, "a body needs a valid id") }
        var item: JSONObject = ["id": .string(id)]
        if let p = b["pos"] {
            guard Position(json: p) != nil else { throw GunnError(.invalidField, "body \(id): pos must be [x, y] or [x, y, z]") }
            item["pos"] = p
        }
        if let f = b["fields"] {
            if case .object(let o) = f, let bad = o.sortedKeys.first(where: { EngineBodies.reservedFields.contains($0) }) {
                throw GunnError(.invalidField, "body \(id): the field \(bad) is kept by gunn")
            }
            item["fields"] = f
        }
        if let c = b["commands"] { item["commands"] = c }
        return .object(item)
    }

    /// The changed bodies of one step as one BodyUpdate (one effect, one observation per agent).
    func bodiesDraft(_ session: EngineSession, _ bodies: JSONValue?, simTime: Double?, id: String, errors: inout [GunnError], fresh: inout Set<String>) -> EffectDraft? {
        guard case .array(let list)? = bodies else { return nil }
        var items: [JSONValue] = []
        for b in list {
            do {
                let item = try bodyItem(b)
                guard session.changed(item) else { continue }
                items.append(item)
                if let id = item["id"]?.stringValue { fresh.insert(id) }
            } catch { errors.append(error) }
        }
        guard !items.isEmpty else { return nil }
        return EffectDraft(kind: "BodyUpdate", payload: ["engine": .string(session.engineName), "bodies": .array(items)],
                           sourceID: source(session.engineName), priority: 2, simTime: simTime, draftID: id)
    }

    func contactDraft(_ engine: String, _ c: JSONValue, known: (String) -> Bool, simTime: Double?, index: Int, tick: UInt64) throws(GunnError) -> EffectDraft {
        guard case .string(let a)? = c["a"], case .string(let b)? = c["b"] else { throw GunnError(.invalidField, "a contact needs a and b") }
        for id in [a, b] where !known(id) { throw GunnError(.invalidField, "the contact names \(id), which is not a body or entity of this world") }
        var payload: JSONObject = ["a": .string(a), "b": .string(b), "engine": .string(engine)]
        if let at = c["at"] { payload["at"] = at }
        if let i = c["impulse"] { payload["impulse"] = i }
        return EffectDraft(kind: "Collision", payload: .object(payload), sourceID: source(engine), priority: 1, simTime: simTime,
                           draftID: "\(engine):\(tick):c\(index)")
    }

    /// Takes up to `n` contacts from the shared bucket.
    func takeContacts(_ n: Int) -> Int {
        let t = now()
        return state.withLock { s in
            let rate = config.contactsPerSecond
            s.bucket.tokens = min(rate, s.bucket.tokens + (t - s.bucket.at) * rate)
            if s.bucket.at == 0 { s.bucket.tokens = rate }
            s.bucket.at = t
            let k = min(n, Int(s.bucket.tokens))
            s.bucket.tokens -= Double(k)
            return k
        }
    }

    func tick(_ session: EngineSession, _ t: JSONValue) async {
        let engine = session.engineName
        let tick = UInt64(t["tick"]?.numberValue ?? 0)
        let sim = t["sim_time"]?.numberValue ?? 0
        var drafts: [EffectDraft] = []
        var errors: [GunnError] = []
        let ents = entities()
        var fresh = Set<String>()
        if let d = bodiesDraft(session, t["bodies"], simTime: sim, id: "\(engine):\(tick):b", errors: &errors, fresh: &fresh) { drafts.append(d) }
        if case .array(let contacts)? = t["contacts"], !contacts.isEmpty {
            let allowed = takeContacts(contacts.count)
            if allowed < contacts.count {
                state.withLock { $0.links[engine]?.contactsDropped += contacts.count - allowed }
                errors.append(GunnError(.quotaExceeded, "\(contacts.count - allowed) contacts of tick \(tick) dropped: past \(Int(config.contactsPerSecond)) contacts/s",
                                        retryAfterMs: 1000))
            }
            for (i, c) in contacts.prefix(allowed).enumerated() {
                do { drafts.append(try contactDraft(engine, c, known: { ents[$0] != nil || fresh.contains($0) }, simTime: sim, index: i, tick: tick)) }
                catch { errors.append(error) }
            }
        }
        drafts.append(EffectDraft(kind: "TimeTick", payload: ["sim_time": .number(sim), "tick": .number(Double(tick)), "engine": .string(engine)],
                                  sourceID: source(engine), priority: 0, simTime: sim, draftID: "\(engine):\(tick):t"))
        // The next frame is handled as soon as this tick's effects are written: an engine steps
        // faster than one round trip to the orchestrator. At most `maxTicksInFlight` wait for
        // their answers; past that this waits (and the engine's frames queue behind it).
        await session.tickSlot()
        let posted = await post(drafts)
        state.withLock { $0.links[engine]?.ticks += 1 }
        let early = errors
        Task { [self] in
            var errors = early
            switch posted {
            case .failure(let e): errors.append(e)
            case .success(let tickets): for t in tickets { if let e = await t.result() { errors.append(e) } }
            }
            session.tickDone()
            for e in errors.prefix(8) { session.sendError(e, ref: tick) }
            // Commands committed before this tick go out before its ack (lock-step: the engine's
            // next step sees them).
            pump()
            session.send(["tick_ack": ["tick": .number(Double(tick)), "global_seq": .number(Double(headSeq))]])
        }
    }

    func bodies(_ session: EngineSession, _ batch: JSONValue) async {
        var errors: [GunnError] = []
        var fresh = Set<String>()
        let draft = bodiesDraft(session, batch["bodies"], simTime: nil, id: "\(session.engineName):f\(session.nextFrameNumber())", errors: &errors, fresh: &fresh)
        if let draft { errors += await emitAll([draft]) }
        for e in errors.prefix(8) { session.sendError(e, ref: 0) }
    }

    func remove(_ session: EngineSession, _ r: JSONValue) async {
        let engine = session.engineName
        let ents = entities()
        var drafts: [EffectDraft] = []
        if case .array(let ids)? = r["ids"] {
            for v in ids {
                guard let id = v.stringValue, ents[id]?["engine"] == .string(engine) else {
                    session.sendError(GunnError(.invalidField, "body_remove names \(v.stringValue ?? "?"), which is not a body of the engine \(engine)"), ref: 0)
                    continue
                }
                drafts.append(EffectDraft(kind: "EntityRemove", payload: ["id": .string(id)], sourceID: source(engine)))
                session.forget(id)
            }
        }
        for e in await emitAll(drafts) { session.sendError(e, ref: 0) }
    }

    func contact(_ session: EngineSession, _ c: JSONValue) async {
        let engine = session.engineName
        guard takeContacts(1) == 1 else {
            state.withLock { $0.links[engine]?.contactsDropped += 1 }
            return
        }
        let ents = entities()
        do {
            let d = try contactDraft(engine, c, known: { ents[$0] != nil }, simTime: nil, index: 0, tick: session.nextFrameNumber())
            for e in await emitAll([d]) { session.sendError(e, ref: 0) }
        } catch { session.sendError(error, ref: 0) }
    }

    /// The engine's answer to a command: recorded once when it is pending on this engine's body.
    @discardableResult
    func commandResult(_ session: EngineSession, _ r: JSONValue, pending: [(seq: UInt64, body: String, held: JSONValue)]? = nil) async -> Bool {
        let engine = session.engineName
        guard let n = r["command_seq"]?.numberValue, n >= 1 else {
            session.sendError(GunnError(.invalidField, "command_result needs a command_seq"), ref: 0)
            return false
        }
        let seq = UInt64(n)
        let status = r["status"]?.stringValue ?? ""
        guard EngineBodies.statuses.contains(status) else {
            session.sendError(GunnError(.invalidField, "command_result status must be done, blocked or failed, not \"\(status)\""), ref: seq)
            return false
        }
        let list = pending ?? Self.pendingCommands(entities(), engine: engine)
        guard let c = list.first(where: { $0.seq == seq }) else {
            session.sendError(GunnError(.unknownCommand, "no command \(seq) is pending on a body of the engine \(engine)"), ref: seq)
            return false
        }
        var payload: JSONObject = ["engine": .string(engine), "agent_id": .string(c.body), "command_seq": .number(n), "status": .string(status)]
        if case .string(let reason)? = r["reason"], !reason.isEmpty { payload["reason"] = .string(String(reason.prefix(256))) }
        let error = await emitAll([EffectDraft(kind: "EngineCommandResult", payload: .object(payload), sourceID: source(engine), draftID: "\(engine):r\(seq)")]).first
        session.answered(seq)
        if let error {
            session.sendError(error, ref: seq)
            return false
        }
        state.withLock { $0.links[engine]?.commandsAnswered += 1 }
        return true
    }

    /// Unanswered commands past their deadline, silent engines, the status file.
    func sweep() {
        let t = now()
        let sessions = state.withLock { Array($0.sessions.values) }
        for s in sessions {
            let stage = s.stage
            if stage != EngineSession.Stage.closed, stage != EngineSession.Stage.awaitingHello, t - s.lastHeard > Double(config.heartbeatMs) * 3 / 1000 {
                s.fail(GunnError(.unityConnectionLost, "no frame from the engine for \(config.heartbeatMs * 3) ms (3 heartbeats)"), close: 4408)
                continue
            }
            if stage == EngineSession.Stage.running || stage == EngineSession.Stage.syncing { s.heartbeat() }
            if let late = s.overdue(now: t, after: config.commandTimeout) {
                breakerFailure(s, reason: "command \(late) unanswered for \(Int(config.commandTimeout * 1000)) ms")
            }
        }
        writeStatus()
    }

    public var linkStatus: [EngineLinkStatus] { state.withLock { s in s.links.keys.sorted().compactMap { s.links[$0] } } }

    func noteSent(_ engine: String, _ n: Int) { state.withLock { $0.links[engine]?.commandsSent += n } }
    func noteRefused(_ engine: String) { state.withLock { $0.links[engine]?.framesRefused += 1 } }

    func writeStatus() {
        guard let statusPath else { return }
        let links = linkStatus
        let breaker = state.withLock { $0.breaker.state.rawValue }
        let doc: JSONValue = ["breaker": .string(breaker), "engines": .array(links.map(\.json))]
        let tmp = statusPath + ".tmp"
        if FileManager.default.createFile(atPath: tmp, contents: Data((CanonicalJSON.encodeString(doc) + "\n").utf8)) { _ = rename(tmp, statusPath) }
    }
}
