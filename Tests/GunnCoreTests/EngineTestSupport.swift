@testable import GunnCore

/// Small helpers for driving an `Engine` directly.
struct EngineDriver {
    var engine: Engine
    var now: HostTime = 1000
    var outputs: [EngineOutput] = []
    /// Every entry committed, whatever the engine's window still holds (the log writer's view).
    var committed: [EventLogEntry] = []

    init(config: EngineConfig = EngineDriver.immediate(), seed: UInt64 = 7, worldID: String = "w1") {
        engine = Engine(config: config, worldID: worldID, worldSeed: seed)
    }

    /// Quantum 0 and generous quotas: every input is processed at once.
    static func immediate() -> EngineConfig {
        var c = EngineConfig()
        c.quantumMs = 0
        c.agentQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
        c.tenantQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
        c.backpressure = BackpressureConfig(maxQueueDepth: 1024)
        return c
    }

    @discardableResult
    mutating func handle(_ input: EngineInput, advance: Double = 0) -> [EngineOutput] {
        now += advance
        let out = engine.handle(input, at: now)
        outputs += out
        for o in out { if case .effectCommitted(let e) = o { committed.append(e) } }
        return out
    }

    @discardableResult
    mutating func register(_ id: AgentID, at spawn: Position? = Position(x: 0, y: 0), permissions: Set<String> = AgentRegistration.defaultPermissions,
                           agentClass: String? = nil, weight: Int = 1, threshold: Int? = nil) -> [EngineOutput] {
        handle(.registerAgent(AgentRegistration(agentID: id, permissions: permissions, agentClass: agentClass, weight: weight,
                                                stalenessThreshold: threshold, spawn: spawn)))
    }

    mutating func intent(_ agent: AgentID, _ kind: IntentKind, _ payload: JSONValue, req: ReqID, context: ViewSeq? = nil, priority: Int = 0) -> Intent {
        Intent(kind: kind, payload: payload, contextSeq: context ?? engine.viewSeq(of: agent) ?? 0, reqID: req, agentID: agent, priority: priority)
    }

    @discardableResult
    mutating func submit(_ agent: AgentID, _ kind: IntentKind, _ payload: JSONValue, req: ReqID, context: ViewSeq? = nil,
                         priority: Int = 0, advance: Double = 0) -> [EngineOutput] {
        let i = intent(agent, kind, payload, req: req, context: context, priority: priority)
        return handle(.submitIntent(i), advance: advance)
    }

    static func committed(_ out: [EngineOutput]) -> [Effect] {
        out.compactMap { if case let .intentCommitted(_, _, e) = $0 { return e } else { return nil } }
    }

    static func rejected(_ out: [EngineOutput]) -> [(ReqID, GunnError)] {
        out.compactMap { if case let .intentRejected(_, r, e) = $0 { return (r, e) } else { return nil } }
    }

    static func entries(_ out: [EngineOutput]) -> [EventLogEntry] {
        out.compactMap { if case let .effectCommitted(e) = $0 { return e } else { return nil } }
    }

    /// The whole log as canonical bytes, for byte-identical comparisons.
    var logBytes: [UInt8] { CanonicalJSON.encode(.array(engine.log.entries.map(\.json))) }
}
