import Foundation
import GunnAuth
import GunnClient
import GunnCore
import GunnHTTP
import GunnIO
import Synchronization

/// The bridge's settings (gunn-adapter-unity's flags). Durations are in seconds.
public struct EngineBridgeConfig: Sendable {
    public var worldID: String
    /// "free" (the engine steps at its own pace) or "lockstep" (it waits for each TickAck).
    public var timeMode = "free"
    /// Whether the world's clock is the engine's (the orchestrator runs `--sim-time engine`): only
    /// then do the engine's effects carry its sim time.
    public var engineTime = false
    /// Stage deadlines: the engine's Hello after the upgrade, its SyncDone after the Welcome.
    public var helloTimeoutSeconds: Double = 5
    public var syncTimeoutSeconds: Double = 5
    public var heartbeatMs: UInt32 = 1000
    /// A command unanswered this long counts as a failure of its engine's breaker.
    public var commandTimeoutSeconds: Double = 10
    /// Consecutive unanswered commands that open an engine's breaker.
    public var breakerFailures = 3
    /// How long a breaker stays open the first time (it doubles on each reopening, up to 10 s or this).
    public var breakerOpenSeconds: Double = 1
    /// Physics contacts taken per second (a token bucket; past it they are dropped and counted).
    public var contactsPerSecond: Double = 2000
    /// Frames of one engine read and not yet handled; past it the engine is cut off (1008).
    public var maxQueuedFrames = 4096
    /// Engine names known at once (each has a breaker and a status line).
    public var maxEngines = 256
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
         "sessions": .number(Double(sessions)), "commands_sent": .number(Double(commandsSent)),
         "commands_answered": .number(Double(commandsAnswered)), "ticks": .number(Double(ticks)),
         "contacts_dropped": .number(Double(contactsDropped)), "frames_refused": .number(Double(framesRefused))]
    }
}

/// gunn-adapter-unity's logic: game engines connect over WebSocket (subprotocol
/// `gunn.engine.v1+proto` or `+json`), say Hello, are welcomed and synced, then report ticks,
/// bodies and contacts (emitted as effects) and receive the commands that their bodies' agents'
/// intents became (`EngineCommand`), answering each once. Commands are found in the view of an
/// observer agent that sees the whole world, so what is pending survives any restart: it is in the
/// log. docs/engine.md.
///
/// Concurrency: socket callbacks run on GunnHTTP's loop; each session's frames are handled in
/// order by one task; `state` (a Mutex) holds what the sessions share; link changes reach the log
/// through one serial task, in the order they happened.
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
    let breakerConfig: CircuitBreakerConfig
    let linkEvents: AsyncStream<LinkEvent>.Continuation
    /// The last status document written (so an unchanged one is not written again).
    let statusLock = Mutex<String>("")

    struct LinkEvent: Sendable { var engine: String; var state: String; var payload: JSONValue }

    struct BridgeState {
        var nextSession: UInt64 = 1
        var sessions: [UInt64: EngineSession] = [:]
        /// The synced or syncing session of each engine name.
        var current: [String: UInt64] = [:]
        var links: [String: EngineLinkStatus] = [:]
        var breakers: [String: CircuitBreaker] = [:]
        var bucket: (tokens: Double, at: Double) = (0, 0)
        /// The observer's first view has arrived (before it, Hellos wait: nothing pending is known).
        var viewReady = false
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
        b.openBaseSeconds = config.breakerOpenSeconds
        b.openMaxSeconds = max(10, config.breakerOpenSeconds)
        b.halfOpenProbes = 1
        b.probeDeadlineSeconds = config.helloTimeoutSeconds + config.syncTimeoutSeconds + 1
        b.slowCallSeconds = .infinity
        breakerConfig = b
        state = Mutex(BridgeState())
        // At most one pending link change per engine matters; the bound keeps a storm finite.
        let (events, continuation) = AsyncStream<LinkEvent>.makeStream(bufferingPolicy: .bufferingNewest(4096))
        linkEvents = continuation
        Task { [client] in
            // Serial: the log gets each engine's link changes in the order they happened, each
            // retried while the orchestrator is away, and a repeat of the last state is skipped.
            var last: [String: String] = [:]
            for await e in events {
                if last[e.engine] == e.state { continue }
                let draft = EffectDraft(kind: "EngineLink", payload: e.payload, sourceID: "engine:" + e.engine)
                for attempt in 1...20 {
                    // A refusal is final; only a lost orchestrator connection is worth a retry.
                    do {
                        _ = try await client.emit(draft)
                        last[e.engine] = e.state
                        break
                    } catch {
                        try? await Task.sleep(nanoseconds: UInt64(100_000_000 * attempt))
                    }
                }
            }
        }
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
                try? await Task.sleep(nanoseconds: 100_000_000)
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

    typealias Pending = (seq: UInt64, body: String, held: JSONValue)

    /// The pending commands of `engine`'s bodies, oldest first.
    static func pendingCommands(_ entities: JSONObject, engine: String) -> [Pending] {
        var out: [Pending] = []
        for (id, e) in entities {
            guard e["engine"] == .string(engine), case .object(let pending)? = e["commands_pending"] else { continue }
            for (k, v) in pending { if let seq = UInt64(k) { out.append((seq, id, v)) } }
        }
        return out.sorted { $0.seq < $1.seq }
    }

    /// Sends every pending command a running session has not been sent; at the first view after a
    /// start, reports engines whose bodies are in the world but which are not connected as lost.
    func pump() {
        guard client.view(of: observer) != nil else { return }
        let ents = entities()
        if !state.withLock({ $0.viewReady }) {
            var engines = Set<String>()
            for (_, e) in ents { if case .string(let name)? = e["engine"], e["engine_link"] != "lost" { engines.insert(name) } }
            // Decided in the lock that lets Hellos in, so no "connected" can be queued before these.
            let lost = state.withLock { s -> [String] in
                guard !s.viewReady else { return [] }
                s.viewReady = true
                return engines.sorted().filter { s.current[$0] == nil }
            }
            for name in lost { reportLost(name, code: .unityConnectionLost, reason: "the adapter started and no engine \(name) is connected") }
        }
        let running = state.withLock { s in s.current.values.compactMap { s.sessions[$0] }.filter { $0.stage == EngineSession.Stage.running } }
        for session in running { session.sendPending(Self.pendingCommands(ents, engine: session.engineName), head: headSeq) }
    }

    // MARK: - Sessions

    func open(_ ws: WebSocket) {
        let binary = ws.subprotocol == Self.subprotocols[0]
        let id = state.withLock { s -> UInt64 in
            defer { s.nextSession += 1 }
            return s.nextSession
        }
        let session = EngineSession(id: id, ws: ws, binary: binary, bridge: self)
        state.withLock { $0.sessions[id] = session }
        ws.onMessage = { [weak session] m in session?.received(m) }
        ws.onClose = { [weak self] code, reason in self?.closed(id, code: code, reason: reason) }
        session.startInbox()
        let deadline = config.helloTimeoutSeconds
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

    /// A link change for the log, queued in order (`linkEvents`).
    /// Called under `state`'s lock by whoever decided the change, so the queue has the changes in
    /// the order they were decided (`yield` does not block).
    func linkChanged(_ engine: String, _ payload: JSONObject) {
        var p = payload
        p["engine"] = .string(engine)
        linkEvents.yield(LinkEvent(engine: engine, state: p["state"]?.stringValue ?? "", payload: .object(p)))
    }

    /// EngineLink lost in the log and in the status file.
    func reportLost(_ engine: String, code: ErrorCode, reason: String) {
        state.withLock { s in
            var l = s.links[engine] ?? EngineLinkStatus()
            l.engine = engine; l.link = "lost"; l.code = code.name; l.reason = reason
            l.breaker = s.breakers[engine]?.state.rawValue ?? "closed"
            s.links[engine] = l
            linkChanged(engine, ["state": "lost", "code": .number(Double(code.code)), "name": .string(code.name), "reason": .string(reason)])
        }
        writeStatus()
    }

    /// Hello: version, observer, name, token, breaker; then Welcome, the answers the engine held,
    /// WorldSync.
    func hello(_ session: EngineSession, _ h: JSONValue) async {
        let major = UInt32(clamping: Int(h["protocol_major"]?.numberValue ?? 0))
        let minor = UInt32(clamping: Int(h["protocol_minor"]?.numberValue ?? 0))
        guard major == Self.protocolMajor else {
            return session.fail(GunnError(.versionMismatch, "the engine speaks gunn.engine protocol \(major).\(minor); "
                                          + "this adapter speaks \(Self.protocolMajor).\(Self.protocolMinor)"), close: 4426)
        }
        guard state.withLock({ $0.viewReady }) else {
            return session.fail(GunnError(.adapterUnavailable, "the adapter is still reading the world", retryAfterMs: 500), close: 4503)
        }
        guard case .string(let name)? = h["engine_name"], AgentID(name).isValid, name.utf8.count <= 64 else {
            return session.fail(GunnError(.invalidField, "engine_name must be a valid identifier of 1 to 64 bytes"), close: 4400)
        }
        let claims: TokenClaims
        do {
            claims = try auth.claims(token: h["token"]?.stringValue ?? "")
            try Authenticator.require(claims, .emit)
        } catch {
            return session.fail(error, close: error.code == .unauthorized ? 4401 : 4403)
        }
        let t = now()
        let decision = state.withLock { s -> CircuitBreaker.Decision? in
            guard s.breakers[name] != nil || s.breakers.count < config.maxEngines else { return nil }
            var b = s.breakers[name] ?? CircuitBreaker(name: "engine:" + name, config: breakerConfig)
            let (d, _) = b.acquire(at: t)
            s.breakers[name] = b
            return d
        }
        guard let decision else {
            return session.fail(GunnError(.adapterUnavailable, "more than \(config.maxEngines) engine names", retryAfterMs: 10_000), close: 4503)
        }
        guard case .allowed(let permit) = decision else {
            var retry: UInt64 = 1000
            if case .rejected(let ms) = decision { retry = ms }
            return session.fail(GunnError(.adapterUnavailable, "the engine link's breaker is open after repeated failures", retryAfterMs: retry), close: 4503)
        }
        var offered: [String] = []
        if case .array(let caps)? = h["capabilities"] { offered = caps.compactMap(\.stringValue) }
        let agreed = Self.capabilities.filter(offered.contains)
        let mode = agreed.contains(config.timeMode) ? config.timeMode : "free"
        session.welcomed(name: name, permit: permit, lockstep: mode == "lockstep", claims: claims)
        // A newer connection of the same engine replaces the older one (unless this one closed meanwhile).
        let version = h["engine_version"]?.stringValue ?? ""
        let (taken, older) = state.withLock { s -> (Bool, EngineSession?) in
            // `closed` removes a session from `sessions` before it marks it closed.
            guard session.stage != EngineSession.Stage.closed, s.sessions[session.id] != nil else { return (false, nil) }
            let old = s.current[name].flatMap { s.sessions[$0] }
            s.current[name] = session.id
            var l = s.links[name] ?? EngineLinkStatus()
            l.engine = name; l.link = "syncing"; l.sessions += 1; l.breaker = s.breakers[name]?.state.rawValue ?? "closed"
            s.links[name] = l
            // The link is up again in the world (its bodies' agents may command them).
            linkChanged(name, ["state": "connected", "reason": .string("engine \(version) session \(session.id)")])
            return (true, old)
        }
        guard taken else { return }
        older?.fail(GunnError(.unityConnectionLost, "a newer connection of the engine \(name) replaced this one"), close: 4409)
        writeStatus()
        var welcome: JSONObject = ["protocol_major": .number(Double(Self.protocolMajor)), "protocol_minor": .number(Double(Self.protocolMinor)),
                                   "world_id": .string(config.worldID), "session_id": .string("\(name)-\(session.id)"), "time_mode": .string(mode),
                                   "heartbeat_ms": .number(Double(config.heartbeatMs)), "global_seq": .number(Double(headSeq)),
                                   "adapter_version": "gunn-adapter-unity 1.0", "sync_deadline_ms": .number(config.syncTimeoutSeconds * 1000)]
        if !agreed.isEmpty { welcome["capabilities"] = .array(agreed.map { .string($0) }) }
        session.send(["welcome": .object(welcome)])
        // Answers the engine kept for commands it executed: recorded when still pending.
        let pendingNow = Self.pendingCommands(entities(), engine: name)
        let pendingSeqs = Set(pendingNow.map(\.seq))
        if case .array(let results)? = h["results"] {
            for r in results {
                guard let n = r["command_seq"]?.numberValue, n >= 1, pendingSeqs.contains(UInt64(n)) else { continue }
                await commandResult(session, r, pending: pendingNow)
            }
        }
        let commands = session.claim(pendingNow)
        var bodies: [JSONValue] = []
        for (id, e) in entities() where e["engine"] == .string(name) { bodies.append(.string(id)) }
        session.send(["sync": ["commands": .array(commands.map { Self.commandFrame($0, head: headSeq) }), "global_seq": .number(Double(headSeq)),
                               "bodies": .array(bodies)]])
        session.startHeartbeats(now: now())
        let deadline = config.syncTimeoutSeconds
        Task { [weak session] in
            try? await Task.sleep(nanoseconds: UInt64(deadline * 1e9))
            guard let session, session.stage == EngineSession.Stage.syncing else { return }
            session.fail(GunnError(.operationTimeout, "stage world_sync: no SyncDone within \(Int(deadline * 1000)) ms of the Welcome"), close: 4408)
        }
    }

    static func commandFrame(_ c: Pending, head: UInt64) -> JSONValue {
        var o: JSONObject = ["command_seq": .number(Double(c.seq)), "body_id": .string(c.body), "kind": c.held["command"] ?? "move",
                             "global_seq": .number(Double(head))]
        if case .array(let to)? = c.held["to"] { o["to"] = .array(to) }
        if let d = c.held["data"], d != .null { o["data_json"] = .string(CanonicalJSON.encodeString(d)) }
        return .object(o)
    }

    func syncDone(_ session: EngineSession) {
        guard session.transition(from: .syncing, to: .running) else { return }
        let name = session.engineName
        state.withLock { s in
            if let p = session.permit { _ = s.breakers[name]?.record(p, success: true, at: now()) }
            var l = s.links[name] ?? EngineLinkStatus()
            l.link = "connected"; l.code = ""; l.reason = ""; l.breaker = s.breakers[name]?.state.rawValue ?? "closed"
            s.links[name] = l
        }
        writeStatus()
        pump()
    }

    /// An unanswered command counts against its engine's breaker (a fresh permit each time, so a
    /// failure counts whatever transitions came before); an opened breaker cuts the link.
    func breakerFailure(_ session: EngineSession, reason: String) {
        let name = session.engineName
        let t = now()
        let opened = state.withLock { s -> Bool in
            guard var b = s.breakers[name] else { return false }
            let before = b.state
            if case (.allowed(let p), _) = b.acquire(at: t) { _ = b.record(p, success: false, at: t) }
            s.breakers[name] = b
            s.links[name]?.breaker = b.state.rawValue
            return before != .open && b.state == .open
        }
        writeStatus()
        if opened { session.fail(GunnError(.adapterUnavailable, "the engine link's breaker opened: \(reason)"), close: 4503) }
    }

    /// Unanswered commands past their deadline, silent engines, heartbeats, the status file.
    func sweep() {
        let t = now()
        let sessions = state.withLock { Array($0.sessions.values) }
        let ents = entities()
        let heartbeat = Double(config.heartbeatMs) / 1000
        for s in sessions {
            let stage = s.stage
            guard stage == EngineSession.Stage.running || stage == EngineSession.Stage.syncing else { continue }
            if t - s.lastHeard > heartbeat * 3 {
                s.fail(GunnError(.unityConnectionLost, "no frame from the engine for \(config.heartbeatMs * 3) ms (3 heartbeats)"), close: 4408)
                continue
            }
            s.heartbeat(now: t, interval: heartbeat)
            let pending = Set(Self.pendingCommands(ents, engine: s.engineName).map(\.seq))
            if let late = s.overdue(now: t, after: config.commandTimeoutSeconds, pending: pending) {
                breakerFailure(s, reason: "command \(late) unanswered for \(Int(config.commandTimeoutSeconds * 1000)) ms")
            }
        }
        writeStatus()
    }

    public var linkStatus: [EngineLinkStatus] { state.withLock { s in s.links.keys.sorted().compactMap { s.links[$0] } } }

    func noteSent(_ engine: String, _ n: Int) { state.withLock { $0.links[engine]?.commandsSent += n } }
    func noteRefused(_ engine: String) { state.withLock { $0.links[engine]?.framesRefused += 1 } }

    /// run/engine.status.json, written whole (one writer at a time; readers see the old or the new).
    func writeStatus() {
        guard let statusPath else { return }
        statusLock.withLock { lastWritten in
            // The snapshot is taken under the writer's lock, so an older one never replaces a newer.
            let links = linkStatus
            let breaker = links.contains { $0.breaker == "open" } ? "open" : links.contains { $0.breaker == "half_open" } ? "half_open" : "closed"
            let text = CanonicalJSON.encodeString(["pid": .number(Double(getpid())), "engines": .array(links.map(\.json)), "breaker": .string(breaker)]) + "\n"
            guard text != lastWritten else { return }
            let tmp = statusPath + ".tmp"
            if FileManager.default.createFile(atPath: tmp, contents: Data(text.utf8)) { _ = rename(tmp, statusPath) }
            lastWritten = text
        }
    }
}
