import Foundation
import GunnCore
import GunnIO
import GunnOrchestratorServer
import GunnWire
import Synchronization

/// A remote world over `orchestrator.sock`: register agents, submit intents, emit drafts, and keep
/// each agent's view by applying the observations it receives. It reconnects by itself (backoff),
/// registers its agents again, resynchronises their views, and a retried intent keeps its req_id,
/// so an intent is never executed twice. Every delta is checked against the digest the
/// orchestrator computed (`HeldViews`); on a mismatch the client fetches one whole view (counted
/// in `resyncs`). Its queues are bounded: per agent at most `maxQueuedPushes` observations,
/// cancellations and token chunks wait to be taken (the oldest is dropped beyond, counted in
/// `droppedPushes`; the held view itself never misses a delta), and the last `maxPushedErrors`
/// pushed errors are kept.
public final class GunnClient: Sendable {
    public let path: String
    public let name: String
    let loop: EventLoop

    struct State: Sendable {
        var conn: FramedConnection?
        /// The connection being opened, which every concurrent caller awaits: one connection at a
        /// time, so an agent is never registered on one connection and used on another.
        var connecting: Task<FramedConnection, any Error>?
        var pending: [UInt64: PendingReply] = [:]
        var nextID: UInt64 = 0
        var registrations: [AgentID: JSONValue] = [:]
        var held = HeldViews()
        var resyncs = 0
        /// Agents whose whole view was asked for: deltas wait (are passed over) until it lands.
        var resyncPending: Set<AgentID> = []
        var observations = PushQueues<Observation>(limit: GunnClient.maxQueuedPushes)
        var cancels = PushQueues<Cancel>(limit: GunnClient.maxQueuedPushes)
        /// Partial speech of the agents this client's agents see, in arrival order.
        var tokens = PushQueues<TokenChunk>(limit: GunnClient.maxQueuedPushes)
        /// Errors the orchestrator pushed (frame id 0): refusals of fire-and-forget frames.
        var pushedErrors: [WireErrorMessage] = []
        var droppedErrors = 0
        var connects = 0
    }
    private let state = Mutex(State())

    /// Pushed items waiting per agent (and per queue) at most; beyond, the oldest is dropped.
    public static let maxQueuedPushes = 4096
    /// Pushed errors kept at most (the newest).
    public static let maxPushedErrors = 256

    /// Hello capabilities this client asks for (e.g. `spectate_speech`: hear every agent's partial speech).
    public let capabilities: [String]
    /// Whether a whole view that replaces an agent's held view (a resync, a re-registration, a
    /// resumed stream after a restart) is also queued for `nextObservation`, as an observation
    /// whose patch replaces the root (`Self.isWholeView`). A reader that forwards the deltas (the
    /// web adapter) needs it: the deltas after it follow the new view, not the one before.
    public let queuesWholeViews: Bool

    public init(path: String, loop: EventLoop, name: String = "client", capabilities: [String] = [], queuesWholeViews: Bool = false) {
        self.capabilities = capabilities
        self.queuesWholeViews = queuesWholeViews
        self.path = path; self.loop = loop; self.name = name
    }

    /// Connections opened after the first (each a recovery from a lost link).
    public var reconnects: Int { state.withLock { max(0, $0.connects - 1) } }

    /// Re-registrations the orchestrator answered with a delta from the view this client held.
    public var resumedWithDelta: Int { state.withLock { $0.held.resumedWithDelta } }

    /// Whole views fetched because a delta did not apply or did not have its digest.
    public var resyncs: Int { state.withLock { $0.resyncs } }

    /// Pushed items dropped because nobody took them (per-agent queues at their bound), and pushed errors dropped.
    public var droppedPushes: Int {
        state.withLock { $0.observations.dropped + $0.cancels.dropped + $0.tokens.dropped + $0.droppedErrors }
    }

    /// The agent's view as this client holds it: the last whole view plus every delta since.
    public func view(of agent: AgentID) -> (seq: ViewSeq, doc: JSONValue)? {
        state.withLock { s in s.held.views[agent].map { ($0.seq, $0.doc) } }
    }

    /// The last effect (global_seq) the agent's held view reflects.
    public func viewGlobalSeq(of agent: AgentID) -> GlobalSeq? { state.withLock { $0.held.views[agent]?.globalSeq } }

    // MARK: - Connection

    func connection(deadlineSeconds: Double = 10) async throws -> FramedConnection {
        let task = state.withLock { s -> Task<FramedConnection, any Error>? in
            if let c = s.conn, c.closeReason == nil { return nil }
            if let t = s.connecting { return t }
            let t = Task { [self] in
                defer { state.withLock { $0.connecting = nil } }
                return try await establish(deadlineSeconds: deadlineSeconds)
            }
            s.connecting = t
            return t
        }
        guard let task else {
            if let c = state.withLock({ $0.conn }), c.closeReason == nil { return c }
            return try await connection(deadlineSeconds: deadlineSeconds)
        }
        return try await task.value
    }

    private func establish(deadlineSeconds: Double) async throws -> FramedConnection {
        var backoff = Backoff(baseSeconds: 0.02, capSeconds: 0.5)
        let until = Date().timeIntervalSince1970 + deadlineSeconds
        while true {
            do {
                let c = try await FramedConnection.connect(path: path, loop: loop, hello: Hello(protocolMajor: 1, protocolMinor: 0, role: "agent", clientName: name,
                                                                                                    capabilities: capabilities))
                let again = state.withLock { s -> [RegisterAgent] in
                    s.connects += 1
                    s.observations.reopen(); s.cancels.reopen(); s.tokens.reopen()
                    s.resyncPending.removeAll() // the re-registration brings a view of its own
                    return s.registrations.sorted { $0.key < $1.key }.map { id, json in s.held.reRegistration(id, json) }
                }
                startReader(c)
                for r in again { try await reRegister(r, on: c, until: until) }
                // Published only now: nobody uses the connection before its agents are registered on it.
                state.withLock { $0.conn = c }
                return c
            } catch {
                let delay = backoff.next()
                if Date().timeIntervalSince1970 + delay > until { throw error }
                try await Task.sleep(nanoseconds: UInt64(delay * 1e9))
            }
        }
    }

    /// Registers an agent again on a new connection; a refusal the orchestrator says to retry
    /// (its log writer away, a full queue) is retried after its retry_after until `until`, and
    /// any other refusal fails the connection attempt, so an agent is never silently left
    /// unregistered after a reconnect.
    private func reRegister(_ r: RegisterAgent, on c: FramedConnection, until: Double) async throws {
        while true {
            let reply = try await send(c, .registerAgent(r))
            guard case .error(let e)? = reply.body else { return }
            let error = WireJSON.gunnError(e)
            let retryable: Set<ErrorCode> = [.adapterUnavailable, .queueFull, .logStorageFailure, .quotaExceeded]
            let wait = Double(max(20, min(e.retryAfterMs, 5_000))) / 1000
            guard retryable.contains(error.code), Date().timeIntervalSince1970 + wait < until else {
                c.close()
                throw ConnectionError(error.code, "re-registering \(r.agentID): \(error.message)")
            }
            try await Task.sleep(nanoseconds: UInt64(wait * 1e9))
        }
    }

    private func startReader(_ c: FramedConnection) {
        Task {
            // Frames are taken in batches: one hop onto the loop for all that one read brought.
            while case let frames = await c.receive(upTo: 256), !frames.isEmpty { for f in frames { route(f) } }
            let waiting = state.withLock { s -> [PendingReply] in
                if s.conn === c { s.conn = nil }
                let w = Array(s.pending.values)
                s.pending.removeAll()
                return w
            }
            for w in waiting { w.fulfil(.failure(c.closeReason ?? ConnectionError(.adapterUnavailable, "connection closed"))) }
        }
    }

    /// The held view of `agent` as an observation replacing the root: what a reader of
    /// `nextObservation` rebases its deltas on (when the client queues whole views).
    private static func wholeView(_ agent: AgentID, _ s: State) -> Observation? {
        guard let h = s.held.views[agent] else { return nil }
        var o = Observation()
        o.agentID = agent.rawValue; o.viewSeq = h.seq; o.globalSeq = h.globalSeq; o.contextDigest = h.digest
        o.patches = CanonicalJSON.encode([["op": "replace", "path": "", "value": h.doc]])
        return o
    }

    /// The canonical bytes every whole view's patch starts with (`[{"op":"replace","path":"","value":`).
    static let wholeViewPrefix = Array(#"[{"op":"replace","path":"","value":"#.utf8)

    /// Whether an observation replaces the whole view (one root replace, as this client and the
    /// orchestrator write it: canonical JSON): the deltas after it follow it, whatever came before.
    /// A look at the first bytes, not a parse: it runs for every observation a reader forwards.
    public static func isWholeView(_ o: Observation) -> Bool { o.patches.starts(with: wholeViewPrefix) }

    private func route(_ f: Frame) {
        let wholeViews = queuesWholeViews
        // A reply first (the whole view that follows a registration reply is a push: its request
        // was already answered).
        if f.id != 0, let (c, rebase) = state.withLock({ s -> (PendingReply, (CheckedContinuation<Observation?, Never>, Observation)?)? in
            guard let c = s.pending.removeValue(forKey: f.id) else { return nil }
            // A resync's whole view is applied here, in the order frames arrived, so the deltas
            // that follow it apply to it.
            if case .view(let v)? = f.body, s.resyncPending.remove(AgentID(v.agentID)) != nil, s.held.whole(v) == .applied,
               wholeViews, let o = Self.wholeView(AgentID(v.agentID), s) {
                return (c, s.observations.push(o, for: AgentID(v.agentID)).map { ($0, o) })
            }
            return (c, nil)
        }) {
            if let (waiter, o) = rebase { waiter.resume(returning: o) }
            c.fulfil(.success(f))
            return
        }
        switch f.body {
        case .view(let v)?:
            let (outcome, rebase) = state.withLock { s -> (HeldViews.Outcome, (CheckedContinuation<Observation?, Never>, Observation)?) in
                s.resyncPending.remove(AgentID(v.agentID))
                let outcome = s.held.whole(v)
                guard outcome == .applied, wholeViews, let o = Self.wholeView(AgentID(v.agentID), s) else { return (outcome, nil) }
                return (outcome, s.observations.push(o, for: AgentID(v.agentID)).map { ($0, o) })
            }
            if let (waiter, o) = rebase { waiter.resume(returning: o) }
            if case .resync = outcome { resync(AgentID(v.agentID)) }
        case .observation(let o)?:
            let agent = AgentID(o.agentID)
            // An observation answering a registration (id ≠ 0) resumes from the view held here,
            // whatever its view_seq: a restarted orchestrator numbers views afresh. A reader that
            // takes whole views gets the view it produced as one (its view_seq may go back).
            let resume = f.id != 0
            let (waiter, outcome, queued) = state.withLock { s -> (CheckedContinuation<Observation?, Never>?, HeldViews.Outcome, Observation) in
                let outcome = s.resyncPending.contains(agent) ? .ignored : s.held.delta(o, resume: resume)
                guard wholeViews else { return (s.observations.push(o, for: agent), outcome, o) }
                // A reader that rebases gets only what the held view took: a refused delta, or one
                // while a resync is pending, is not queued (the resync's whole view will be), and a
                // resumed one comes as the view it made.
                guard outcome == .applied else { return (nil, outcome, o) }
                let queued = resume ? Self.wholeView(agent, s) ?? o : o
                return (s.observations.push(queued, for: agent), outcome, queued)
            }
            if case .resync = outcome { resync(agent) }
            waiter?.resume(returning: queued)
        case .tokenChunk(let t)?:
            let waiter = state.withLock { $0.tokens.push(t, for: Self.anyAgent) }
            waiter?.resume(returning: t)
        case .error(let e)? where f.id == 0:
            state.withLock { s in
                if s.pushedErrors.count >= Self.maxPushedErrors { s.pushedErrors.removeFirst(); s.droppedErrors += 1 }
                s.pushedErrors.append(e)
            }
        case .cancel(let c)?:
            let waiter = state.withLock { $0.cancels.push(c, for: AgentID(c.agentID)) }
            waiter?.resume(returning: c)
        default:
            break
        }
    }

    /// A delta did not fit the held view: one whole view from the orchestrator replaces it. The
    /// orchestrator answers a view request from durable state at the agent's current view_seq, so
    /// deltas still in flight (at or below it) are ignored and later ones follow it.
    private func resync(_ agent: AgentID) {
        let first = state.withLock { s -> Bool in
            guard s.resyncPending.insert(agent).inserted else { return false }
            s.resyncs += 1
            return true
        }
        guard first else { return }
        Task {
            var request = ViewSnapshot()
            request.agentID = agent.rawValue
            // The reply is applied by the reader (route); a failed request lifts the wait.
            // An error reply (the log writer away) or a lost request lifts the wait too; the next
            // mismatch asks again.
            let reply = try? await self.request(.view(request))
            if case .view? = reply?.body {} else { state.withLock { _ = $0.resyncPending.remove(agent) } }
        }
    }

    private func send(_ c: FramedConnection, _ body: Frame.Body, traceparent: String = "") async throws -> Frame {
        try await send(c, [body], traceparent: traceparent)[0].value()
    }

    /// Sends requests in one hop and one write; their replies are waited for apart. Each reply
    /// is expected before the frame goes out, so the reader never sees a reply nobody waits for.
    private func send(_ c: FramedConnection, _ bodies: [Frame.Body], traceparent: String = "") async throws -> [PendingReply] {
        let (first, replies) = state.withLock { s -> (UInt64, [PendingReply]) in
            let first = s.nextID + 1
            s.nextID += UInt64(bodies.count)
            let replies = bodies.indices.map { _ in PendingReply() }
            for (k, r) in replies.enumerated() { s.pending[first + UInt64(k)] = r }
            return (first, replies)
        }
        do {
            try await c.send(frames: bodies.enumerated().map { Frame(id: first + UInt64($0.offset), traceparent: traceparent, $0.element) })
        } catch {
            let lost = state.withLock { s in (0..<UInt64(bodies.count)).compactMap { s.pending.removeValue(forKey: first + $0) } }
            for r in lost { r.fulfil(.failure(error)) }
        }
        return replies
    }

    /// A request, re-sent on a new connection if the old one is lost before the reply.
    func request(_ body: Frame.Body, deadlineSeconds: Double = 10, traceparent: String = "") async throws -> Frame {
        let until = Date().timeIntervalSince1970 + deadlineSeconds
        while true {
            do {
                let c = try await connection(deadlineSeconds: max(0.1, until - Date().timeIntervalSince1970))
                return try await send(c, body, traceparent: traceparent)
            } catch let e as ConnectionError where e.code == .adapterUnavailable && Date().timeIntervalSince1970 < until {
                try await Task.sleep(nanoseconds: 20_000_000)
            }
        }
    }

    // MARK: - The facade

    /// Registers an agent (again after every reconnect) and returns its whole view.
    @discardableResult
    public func register(_ registration: JSONValue) async throws -> (seq: ViewSeq, doc: JSONValue)? {
        guard case .string(let id)? = registration["agent_id"] else { throw GunnError(.invalidAgentID, "registration needs agent_id") }
        let reply = try await request(.registerAgent(RegisterAgent(agentID: id, json: registration)))
        if case .error(let e)? = reply.body { throw WireJSON.gunnError(e) }
        // Remembered only once registered, so that the connection this call opened does not
        // register it a second time; from now on every reconnect registers it again.
        state.withLock { $0.registrations[AgentID(id)] = registration }
        // The whole view follows the reply on the same connection.
        for _ in 0..<200 {
            if let v = view(of: AgentID(id)) { return v }
            try await Task.sleep(nanoseconds: 5_000_000)
        }
        return view(of: AgentID(id))
    }

    /// Submits an intent; retried on a new connection with the same req_id if the link drops, so
    /// the world executes it at most once. `traceparent` (a W3C trace context) makes the
    /// orchestrator's and the log writer's spans part of the caller's trace when they trace.
    public func submit(_ intent: Intent, deadlineSeconds: Double = 10, traceparent: String = "") async throws -> IntentOutcome {
        let bytes = CanonicalJSON.encode(intent.json)
        let reply = try await request(.submitIntent(JSONPayload(bytes)), deadlineSeconds: deadlineSeconds, traceparent: traceparent)
        return try Self.outcome(of: reply)
    }

    /// Sends intents without waiting for their outcomes: one hop and one write for all of them;
    /// each ticket's `outcome()` waits for its own. The orchestrator answers a connection's frames
    /// in the order they came and reads at most its in-flight bound of them ahead, so a caller
    /// that sends faster than the world commits waits here for credit (backpressure), not in memory.
    public func send(_ intents: [Intent]) async throws -> [IntentTicket] {
        let payloads = intents.map { CanonicalJSON.encode($0.json) }
        let c = try await connection()
        let replies = try await send(c, payloads.map { .submitIntent(JSONPayload($0)) })
        return zip(payloads, replies).map { IntentTicket(client: self, payload: $0, reply: $1) }
    }

    static func outcome(of reply: Frame) throws -> IntentOutcome {
        switch reply.body {
        case .intentResult(let r)?:
            if r.committed, let json = try? JSONParser.parse(r.effect) { return .committed(try Effect(json: json)) }
            if let e = r.error { return .rejected(WireJSON.gunnError(e)) }
            return .rejected(GunnError(.internalError, "an intent result with neither effect nor error"))
        case .error(let e)?: return .rejected(WireJSON.gunnError(e))
        default: return .rejected(GunnError(.unknownMessage, "unexpected reply to an intent"))
        }
    }

    /// An intent on its way (from `send(_:)`): its outcome, once the orchestrator answered (it
    /// may be asked for more than once). If the connection is lost first, or the frame could not
    /// be queued (QUEUE_FULL: the orchestrator's credit did not come back in time), the intent is
    /// sent again with the same req_id — the world executes it at most once, and a copy that did
    /// go out is answered with the same outcome. `deadlineSeconds` bounds that second sending.
    public struct IntentTicket: Sendable {
        let client: GunnClient
        let payload: [UInt8]
        let reply: PendingReply

        public func outcome(deadlineSeconds: Double = 10) async throws -> IntentOutcome {
            do { return try GunnClient.outcome(of: try await reply.value()) } catch let e as ConnectionError where e.code == .adapterUnavailable || e.code == .queueFull {
                return try GunnClient.outcome(of: try await client.request(.submitIntent(JSONPayload(payload)), deadlineSeconds: deadlineSeconds))
            }
        }
    }

    /// Emits an effect draft; nil when accepted.
    public func emit(_ draft: EffectDraft) async throws -> GunnError? {
        let reply = try await request(.emit(JSONPayload(CanonicalJSON.encode(WireJSON.draftJSON(draft)))))
        switch reply.body {
        case .emitResult(let r)?: return r.accepted ? nil : r.error.map(WireJSON.gunnError)
        case .error(let e)?: return WireJSON.gunnError(e)
        default: return GunnError(.unknownMessage, "unexpected reply to an emit")
        }
    }

    /// Sends effect drafts in one write, in order, without waiting for their answers: the next
    /// batch can go out at once (an engine's ticks come faster than one round trip). Each ticket
    /// gives the draft's answer. A lost connection fails the tickets (drafts are not sent again:
    /// an emit has no request id that would make a second sending safe).
    public func sendEmits(_ drafts: [EffectDraft]) async throws -> [EmitTicket] {
        guard !drafts.isEmpty else { return [] }
        let c = try await connection()
        let replies = try await send(c, drafts.map { .emit(JSONPayload(CanonicalJSON.encode(WireJSON.draftJSON($0)))) })
        return replies.map { EmitTicket(reply: $0) }
    }

    public struct EmitTicket: Sendable {
        let reply: PendingReply
        /// nil when the draft was accepted, else why not.
        public func result() async -> GunnError? {
            do {
                let f = try await reply.value()
                switch f.body {
                case .emitResult(let r)?: return r.accepted ? nil : r.error.map(WireJSON.gunnError)
                case .error(let e)?: return WireJSON.gunnError(e)
                default: return GunnError(.unknownMessage, "unexpected reply to an emit")
                }
            } catch {
                return GunnError(.adapterUnavailable, "the orchestrator connection was lost before the emit was answered: \(error)")
            }
        }
    }

    /// `filter(world)` for the agent, computed afresh by the orchestrator (for checking views).
    public func filteredView(of agent: AgentID) async throws -> (seq: ViewSeq, doc: JSONValue) {
        var request = ViewSnapshot()
        request.agentID = agent.rawValue
        let reply = try await self.request(.view(request))
        switch reply.body {
        case .view(let v)?: return (v.viewSeq, try JSONParser.parse(v.view))
        case .error(let e)?: throw WireJSON.gunnError(e)
        default: throw GunnError(.unknownMessage, "unexpected reply to a view request")
        }
    }

    /// The orchestrator's introspection: agents, queue depths, breakers, head, world digest.
    public func status() async throws -> StatusResult {
        let reply = try await request(.status(Empty()))
        guard case .statusResult(let s)? = reply.body else { throw GunnError(.unknownMessage, "unexpected reply to status") }
        return s
    }

    public func head() async throws -> (seq: UInt64, checksum: String) {
        let reply = try await request(.head(Empty()))
        guard case .headResult(let h)? = reply.body else { throw GunnError(.unknownMessage, "unexpected reply to head") }
        return (h.seq, h.checksum)
    }

    /// The agent's next observation (waits for one).
    public func nextObservation(for agent: AgentID) async -> Observation? {
        await withCheckedContinuation { (c: CheckedContinuation<Observation?, Never>) in
            if let ready = state.withLock({ $0.observations.take(for: agent, orWait: c) }) { c.resume(returning: ready) }
        }
    }

    /// Starts a generation: the cancel token bound to the agent's current view.
    public func beginGeneration(_ agent: AgentID, reqID: ReqID, deadlineMs: UInt32 = 0, tokenBudget: UInt32 = 0, focus: [String] = []) async throws -> CancelTokenMessage {
        var g = BeginGeneration()
        g.agentID = agent.rawValue; g.reqID = reqID.rawValue; g.deadlineMs = deadlineMs; g.tokenBudget = tokenBudget; g.focus = focus
        let reply = try await request(.beginGeneration(g))
        switch reply.body {
        case .cancelToken(let t)?: return t
        case .error(let e)?: throw WireJSON.gunnError(e)
        default: throw GunnError(.unknownMessage, "unexpected reply to beginGeneration")
        }
    }

    /// Retires a generation (it finished or halted).
    public func endGeneration(_ reqID: ReqID, agent: AgentID? = nil, tokensEmitted: UInt32 = 0, haltLatencyUs: UInt64 = 0, cancelled: Bool = false) async throws {
        var h = Halted()
        h.reqID = reqID.rawValue
        h.agentID = agent?.rawValue ?? ""
        h.tokensEmitted = tokensEmitted
        h.haltLatencyUs = haltLatencyUs
        h.cancelled = cancelled
        let c = try await connection()
        try await c.send(.halted(h))
    }

    static let anyAgent = AgentID("*")

    /// Relays one token of a live generation to the agents that see `agent` (fire and forget:
    /// a refusal comes back in `pushedErrors`).
    public func relayToken(_ agent: AgentID, reqID: ReqID, index: UInt32, text: String) async throws {
        var t = TokenChunk()
        t.agentID = agent.rawValue; t.reqID = reqID.rawValue; t.index = index; t.text = text
        let c = try await connection()
        try await c.send(.tokenChunk(t))
    }

    /// `relayToken` without waiting, from any thread, in call order: false when there is no
    /// connection now (the token is dropped: partial speech is a best-effort preview, the
    /// committed Speak is what counts).
    @discardableResult
    public func postToken(_ agent: AgentID, reqID: ReqID, index: UInt32, text: String) -> Bool {
        var t = TokenChunk()
        t.agentID = agent.rawValue; t.reqID = reqID.rawValue; t.index = index; t.text = text
        guard let c = state.withLock({ $0.conn }), c.closeReason == nil else { return false }
        c.post([Frame(.tokenChunk(t))])
        return true
    }

    /// `endGeneration` without waiting (the halt report right after a Cancel); false when there is
    /// no connection (the orchestrator then logs the cancellation when it sees the connection go).
    @discardableResult
    public func postHalted(_ reqID: ReqID, agent: AgentID, tokensEmitted: UInt32, haltLatencyUs: UInt64, cancelled: Bool) -> Bool {
        var h = Halted()
        h.reqID = reqID.rawValue; h.agentID = agent.rawValue; h.tokensEmitted = tokensEmitted; h.haltLatencyUs = haltLatencyUs; h.cancelled = cancelled
        guard let c = state.withLock({ $0.conn }), c.closeReason == nil else { return false }
        c.post([Frame(.halted(h))])
        return true
    }

    /// The next relayed token of any agent this client's agents see (waits; nil once closed).
    public func nextTokenChunk() async -> TokenChunk? {
        await withCheckedContinuation { (c: CheckedContinuation<TokenChunk?, Never>) in
            if let ready = state.withLock({ $0.tokens.take(for: Self.anyAgent, orWait: c) }) { c.resume(returning: ready) }
        }
    }

    /// Errors the orchestrator pushed for fire-and-forget frames, oldest first.
    public var pushedErrors: [WireErrorMessage] { state.withLock { $0.pushedErrors } }

    /// The next cancellation pushed for the agent (waits for one); nil once the client is closed.
    public func nextCancel(for agent: AgentID) async -> Cancel? {
        await withCheckedContinuation { (c: CheckedContinuation<Cancel?, Never>) in
            if let ready = state.withLock({ $0.cancels.take(for: agent, orWait: c) }) { c.resume(returning: ready) }
        }
    }

    /// Closes the connection and ends every wait for an observation or a cancellation (they
    /// return nil). The client can still be used afterwards: a request opens a new connection.
    public func close() {
        let (conn, observers, cancellers, listeners) = state.withLock { s in (s.conn, s.observations.wakeAll(), s.cancels.wakeAll(), s.tokens.wakeAll()) }
        conn?.close()
        for w in observers { w.resume(returning: nil) }
        for w in cancellers { w.resume(returning: nil) }
        for w in listeners { w.resume(returning: nil) }
    }
}


/// A reply on its way: fulfilled once by the reader (or failed with the connection), possibly
/// before anyone waits; every wait, before or after, gets the same result.
final class PendingReply: Sendable {
    private enum State { case waiting([CheckedContinuation<Frame, any Error>]), done(Result<Frame, any Error>) }
    private let state = Mutex(State.waiting([]))

    func fulfil(_ r: Result<Frame, any Error>) {
        let waiters = state.withLock { s -> [CheckedContinuation<Frame, any Error>] in
            guard case .waiting(let w) = s else { return [] }
            s = .done(r)
            return w
        }
        for w in waiters { w.resume(with: r) }
    }

    func value() async throws -> Frame {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<Frame, any Error>) in
            let ready = state.withLock { s -> Result<Frame, any Error>? in
                switch s {
                case .waiting(let w): s = .waiting(w + [c]); return nil
                case .done(let r): return r
                }
            }
            if let ready { c.resume(with: ready) }
        }
    }
}

/// Items pushed per agent, each agent with at most one waiter; callers resume outside their lock.
struct PushQueues<Item: Sendable>: Sendable {
    /// One agent's items, oldest first from `head`: pushing, dropping the oldest and taking are
    /// O(1) (amortised), so a full queue that keeps dropping costs no more than an empty one.
    struct Queue: Sendable {
        var items: [Item] = []
        var head = 0
        var count: Int { items.count - head }
        mutating func popFirst() -> Item? {
            guard head < items.count else { return nil }
            let first = items[head]
            head += 1
            if head >= 1024 && head * 2 >= items.count { items.removeFirst(head); head = 0 }
            return first
        }
    }
    private var items: [AgentID: Queue] = [:]
    private var waiters: [AgentID: CheckedContinuation<Item?, Never>] = [:]
    /// Items queued per agent at most; beyond, the oldest is dropped.
    let limit: Int
    private(set) var dropped = 0

    init(limit: Int) { self.limit = limit }

    /// Hands the item to the waiting taker (returned, to be resumed) or queues it.
    mutating func push(_ item: Item, for agent: AgentID) -> CheckedContinuation<Item?, Never>? {
        if let w = waiters.removeValue(forKey: agent) { return w }
        if items[agent, default: Queue()].count >= limit { _ = items[agent]!.popFirst(); dropped += 1 }
        items[agent, default: Queue()].items.append(item)
        return nil
    }

    /// The oldest queued item, or nil after registering `waiter` for the next one.
    mutating func take(for agent: AgentID, orWait waiter: CheckedContinuation<Item?, Never>) -> Item? {
        if let first = items[agent]?.popFirst() { return first }
        // Closed: the wait ends at once (resuming only schedules the waiter; safe under the lock).
        if closed { waiter.resume(returning: nil); return nil }
        waiters[agent] = waiter
        return nil
    }

    /// Set by `wakeAll` (the client closed), cleared when a new connection opens.
    private(set) var closed = false

    /// Every waiting taker, removed (to be resumed with nil: the client closed); later takes end at once.
    mutating func wakeAll() -> [CheckedContinuation<Item?, Never>] {
        closed = true
        defer { waiters.removeAll() }
        return Array(waiters.values)
    }

    mutating func reopen() { closed = false }
}
