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

    func drainMessages(_ agent: AgentID, max: Int) -> [Effect] {
        state.withLock { s in
            var out: [Effect] = []
            while out.count < max, let e = s.messages[agent]?.pop() { out.append(e) }
            return out
        }
    }

    private func route(_ outputs: [EngineOutput], _ s: inout State) {
        for o in outputs {
            switch o {
            case let .intentCommitted(agent, req, effect): keep(.committed(effect), OutcomeKey(agent: agent, req: req), &s)
            case let .intentRejected(agent, req, error): keep(.rejected(error), OutcomeKey(agent: agent, req: req), &s)
            case .effectCommitted(let entry):
                for (agent, kinds) in s.subscriptions where kinds.isEmpty || kinds.contains(entry.effect.kind) {
                    var q = s.messages[agent] ?? FIFO()
                    if q.count >= maxMessagesPerAgent {
                        _ = q.pop()
                        s.droppedMessages[agent, default: 0] += 1
                    }
                    q.push(entry.effect)
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
/// by kind.
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
}
