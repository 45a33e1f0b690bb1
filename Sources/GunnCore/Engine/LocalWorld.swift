import Synchronization

/// Where the host's time comes from. GunnCore never reads a clock itself: an embedder passes a
/// wall clock, a test a `ManualClock`.
public protocol HostClock: Sendable {
    func now() -> HostTime
}

/// A clock that moves only when told to, for tests and deterministic runs.
public final class ManualClock: HostClock {
    private let time: Mutex<HostTime>
    public init(_ start: HostTime = 0) { time = Mutex(start) }
    public func now() -> HostTime { time.withLock { $0 } }
    public func advance(by seconds: Double) { time.withLock { $0 += seconds } }
    public func set(_ t: HostTime) { time.withLock { $0 = max($0, t) } }
}

/// An engine hosted in-process: it serialises access, timestamps inputs with the injected clock,
/// keeps each intent's outcome for its submitter and each subscriber's message stream. The
/// in-process facades (`RLFacade`, `MessageFacade`, `AgentHandle`) are views onto one of these.
public final class LocalWorld: Sendable {
    struct State: Sendable {
        var engine: Engine
        var outcomes: [OutcomeKey: IntentOutcome] = [:]
        var outcomeOrder: [OutcomeKey] = []
        var subscriptions: [AgentID: Set<String>] = [:]
        var messages: [AgentID: FIFO<Effect>] = [:]
        var droppedMessages: [AgentID: Int] = [:]
    }

    struct OutcomeKey: Hashable, Sendable { let agent: AgentID; let req: ReqID }
    struct ObservedKey: Hashable, Sendable { let agent: AgentID; let seq: GlobalSeq }

    /// Outcomes kept for pickup, and messages kept per subscriber, before the oldest are dropped.
    public let maxKeptOutcomes: Int
    public let maxMessagesPerAgent: Int
    private let state: Mutex<State>
    public let clock: any HostClock

    public init(engine: Engine, clock: any HostClock, maxKeptOutcomes: Int = 100_000, maxMessagesPerAgent: Int = 10_000) {
        self.state = Mutex(State(engine: engine))
        self.clock = clock
        self.maxKeptOutcomes = maxKeptOutcomes
        self.maxMessagesPerAgent = maxMessagesPerAgent
    }

    /// Hands one input to the engine at the clock's time and routes what comes out.
    @discardableResult
    public func handle(_ input: EngineInput) -> [EngineOutput] {
        let now = clock.now()
        return state.withLock { s in
            let out = s.engine.handle(input, at: now)
            route(out, &s)
            return out
        }
    }

    /// Closes the open quantum now.
    @discardableResult
    public func flush() -> [EngineOutput] {
        let now = clock.now()
        return state.withLock { s in
            let out = s.engine.flushNow(at: now)
            route(out, &s)
            return out
        }
    }

    public func withEngine<R>(_ body: (Engine) -> R) -> R { state.withLock { body($0.engine) } }

    func outcome(agent: AgentID, req: ReqID) -> IntentOutcome? {
        state.withLock { $0.outcomes[OutcomeKey(agent: agent, req: req)] }
    }

    func subscribe(_ agent: AgentID, kinds: Set<String>) {
        state.withLock { $0.subscriptions[agent] = kinds }
    }

    func nextObservation(_ agent: AgentID) -> ObservationDelta? {
        let now = clock.now()
        return state.withLock { $0.engine.nextObservation(for: agent, at: now) }
    }

    func resync(_ agent: AgentID) -> View? {
        state.withLock { $0.engine.resync(agent) }
    }

    func drainMessages(_ agent: AgentID, max: Int) -> [Effect] {
        state.withLock { s in
            var out: [Effect] = []
            while out.count < max, let e = s.messages[agent]?.pop() { out.append(e) }
            return out
        }
    }

    private func route(_ outputs: [EngineOutput], _ s: inout State) {
        // Subscribers that are agents get only the effects they observed, with hidden fields removed.
        var observed: Set<ObservedKey> = []
        for o in outputs { if case let .observationQueued(agent, _, seq, _) = o { observed.insert(ObservedKey(agent: agent, seq: seq)) } }
        for o in outputs {
            switch o {
            case let .intentCommitted(agent, req, effect): keep(.committed(effect), OutcomeKey(agent: agent, req: req), &s)
            case let .intentRejected(agent, req, error): keep(.rejected(error), OutcomeKey(agent: agent, req: req), &s)
            case .effectCommitted(let entry):
                for (agent, kinds) in s.subscriptions where kinds.isEmpty || kinds.contains(entry.effect.kind) {
                    var effect = entry.effect
                    if let registration = s.engine.registration(of: agent) {
                        guard observed.contains(ObservedKey(agent: agent, seq: effect.globalSeq)) else { continue }
                        let hidden = registration.observation.hiddenFields
                        if !hidden.isEmpty, case .object(var payload) = effect.payload, case .object(var entity)? = payload["entity"] {
                            for f in hidden { entity.removeValue(forKey: f) }
                            payload["entity"] = .object(entity)
                            effect.payload = .object(payload)
                        }
                    }
                    var q = s.messages[agent] ?? FIFO()
                    if q.count >= maxMessagesPerAgent {
                        _ = q.pop()
                        s.droppedMessages[agent, default: 0] += 1
                    }
                    q.push(effect)
                    s.messages[agent] = q
                }
            default: break
            }
        }
    }

    private func keep(_ outcome: IntentOutcome, _ key: OutcomeKey, _ s: inout State) {
        if s.outcomes.updateValue(outcome, forKey: key) == nil { s.outcomeOrder.append(key) }
        if s.outcomeOrder.count > maxKeptOutcomes {
            let drop = s.outcomeOrder.count - maxKeptOutcomes
            for k in s.outcomeOrder.prefix(drop) { s.outcomes[k] = nil }
            s.outcomeOrder.removeFirst(drop)
        }
    }
}

/// PettingZoo-like access for RL loops: `observe` an agent's view, `step` an intent and get back
/// the effect the log committed (never a synthesized one) with the outcome and the new view.
public struct RLFacade: Sendable {
    public let world: LocalWorld
    public init(world: LocalWorld) { self.world = world }

    public struct StepResult: Sendable {
        public let outcome: IntentOutcome
        public let effect: Effect?
        public let view: View?
    }

    public func observe(_ agent: AgentID) -> View? { world.withEngine { $0.view(of: agent) } }

    /// Submits and closes the quantum at once, so the outcome is known on return.
    public func step(_ intent: Intent) -> StepResult {
        let out = world.handle(.submitIntent(intent))
        var outcome = world.outcome(agent: intent.agentID, req: intent.reqID)
        if outcome == nil || out.contains(.intentPending(agent: intent.agentID, reqID: intent.reqID)) {
            // Queued behind others: close quanta until it is served (each serves at least one intent).
            var rounds = 0
            while rounds < 1_000_000 {
                world.flush()
                if let o = world.outcome(agent: intent.agentID, req: intent.reqID) { outcome = o; break }
                rounds += 1
            }
        }
        let final = outcome ?? .rejected(GunnError(.internalError, "intent \(intent.reqID) was neither committed nor rejected"))
        return StepResult(outcome: final, effect: final.effect, view: observe(intent.agentID))
    }
}

/// Message-style access: emit drafts, and read per-agent streams of committed effects filtered
/// by kind. A subscriber that is a registered agent receives only the effects it observed (its
/// observation policy), with its hidden fields removed from entity payloads.
public struct MessageFacade: Sendable {
    public let world: LocalWorld
    public init(world: LocalWorld) { self.world = world }

    /// Hands a draft to the engine; the result says whether it was refused on arrival.
    @discardableResult
    public func emit(_ draft: EffectDraft) -> GunnError? {
        for o in world.handle(.emit(draft)) {
            if case let .emitRejected(_, _, error) = o { return error }
        }
        return nil
    }

    /// From now on, committed effects of these kinds (all kinds if empty) go to the agent's stream.
    public func subscribe(_ agent: AgentID, kinds: Set<String> = []) { world.subscribe(agent, kinds: kinds) }

    /// Takes up to `max` messages from the agent's stream, oldest first.
    public func messages(for agent: AgentID, max: Int = .max) -> [Effect] { world.drainMessages(agent, max: max) }
}

/// One agent's handle: submit intents, withdraw a queued one, read its view position.
public struct AgentHandle: Sendable {
    public let agentID: AgentID
    public let world: LocalWorld
    public init(agentID: AgentID, world: LocalWorld) { self.agentID = agentID; self.world = world }

    public var viewSeq: ViewSeq { world.withEngine { $0.viewSeq(of: agentID) } ?? 0 }

    /// Submits an intent; returns its outcome if it is already known (always, with quantum 0).
    @discardableResult
    public func submitIntent(_ kind: IntentKind, _ payload: JSONValue, reqID: ReqID, contextSeq: ViewSeq? = nil, priority: Int = 0) -> IntentOutcome? {
        let intent = Intent(kind: kind, payload: payload, contextSeq: contextSeq ?? viewSeq, reqID: reqID, agentID: agentID, priority: priority)
        world.handle(.submitIntent(intent))
        return world.outcome(agent: agentID, req: reqID)
    }

    /// The outcome of an earlier submission, once known.
    public func outcome(of reqID: ReqID) -> IntentOutcome? { world.outcome(agent: agentID, req: reqID) }

    /// Withdraws a still-queued intent (it is answered GENERATION_CANCELLED).
    public func cancel(_ reqID: ReqID) { world.handle(.cancelIntent(agentID, reqID)) }

    /// The next observation whose latency has passed, in view_seq order; nil when none is due.
    public func nextObservation() -> ObservationDelta? { world.nextObservation(agentID) }

    /// The whole current view; the observations that follow it continue from its view_seq.
    public func resync() -> View? { world.resync(agentID) }

    /// Starts a generation: a cancel token bound to the current view, or the refusal.
    public func issueCancelToken(_ reqID: ReqID, deadlineMs: Double? = nil, tokenBudget: Int? = nil, focus: [String] = []) -> Result<CancelToken, GunnError> {
        let out = world.handle(.beginGeneration(GenerationRequest(agentID: agentID, reqID: reqID, deadlineMs: deadlineMs, tokenBudget: tokenBudget, focus: focus)))
        for o in out {
            if case .cancelTokenIssued(let t) = o { return .success(t) }
            if case .generationRefused(_, _, let e) = o { return .failure(e) }
        }
        return .failure(GunnError(.internalError, "no answer to beginGeneration"))
    }
}
