/// What happens to an intent that arrives when its agent's queue is full.
public enum BackpressurePolicy: String, Hashable, Sendable {
    /// Hold the new intent in a bounded overflow list and admit it when the queue has room.
    case `defer`
    /// Refuse the oldest queued intent with QUEUE_FULL and queue the new one.
    case shedOldest = "shed_oldest"
    /// Refuse the new intent with QUEUE_FULL.
    case dropNewest = "drop_newest"
}

/// Queue bounds for one class of agents.
public struct BackpressureConfig: Hashable, Sendable {
    public var maxQueueDepth: Int
    public var policy: BackpressurePolicy
    /// Depth at which a high-watermark signal goes out, and below which it is cleared.
    public var highWatermark: Int
    public var lowWatermark: Int
    /// Bound of the overflow list of the `defer` policy.
    public var maxDeferred: Int

    public init(maxQueueDepth: Int = 64, policy: BackpressurePolicy = .dropNewest, highWatermark: Int? = nil,
                lowWatermark: Int? = nil, maxDeferred: Int = 64) {
        precondition(maxQueueDepth > 0 && maxDeferred >= 0)
        self.maxQueueDepth = maxQueueDepth
        self.policy = policy
        self.highWatermark = highWatermark ?? max(1, maxQueueDepth * 3 / 4)
        self.lowWatermark = lowWatermark ?? maxQueueDepth / 4
        self.maxDeferred = maxDeferred
    }
}

/// Where simulation time comes from.
public enum SimTimeAuthority: Hashable, Sendable {
    /// The host's wall time given with each input.
    case hostWallTime
    /// An external engine's ticks (`EngineInput.tick`); sim time stands still between ticks.
    case externalTicks
}

/// The engine's settings. Every bound has a name and a default.
public struct EngineConfig: Sendable {
    /// Inputs arriving within one quantum are ordered together; 0 processes each input at once.
    public var quantumMs: Double = 20
    /// Intents served per quantum across all agents, shared by weighted round robin.
    public var maxIntentsPerQuantum: Int = 4096
    /// Emitted drafts held for one quantum; more are refused with QUEUE_FULL.
    public var maxPendingEmits: Int = 65_536
    public var idempotencyTTLSeconds: Double = 600
    /// Request ids remembered in memory at most (the newest; the log writer's table holds every
    /// one inside the TTL and gives the newest this many back after a restart). Ids evicted before
    /// their TTL ended are counted (`idempotency_evicted_early` in status): a retry of one is
    /// taken as a new intent.
    public var idempotencyMaxEntries: Int = 100_000
    /// Per agent and per tenant token buckets (capacity, refill per second of host time).
    public var agentQuota = TokenBucket(capacity: 200, refillPerSecond: 100)
    public var tenantQuota = TokenBucket(capacity: 20_000, refillPerSecond: 10_000)
    public var backpressure = BackpressureConfig()
    /// Backpressure per agent class (`AgentRegistration.agentClass`); others use `backpressure`.
    public var agentClasses: [String: BackpressureConfig] = [:]
    /// Observed effects by others an intent's context may miss before it is STALE_CONTEXT.
    public var stalenessThreshold: Int = 0
    /// A world snapshot is kept in memory every this many effects (0 = never); with
    /// `memory.snapshots` it sets the log window the engine holds.
    public var snapshotEvery: Int = 5000
    /// What the engine holds in memory at most (docs/orchestrator.md, "Memory").
    public var memory = MemoryLimits()
    public var limits = ValidationLimits()
    public var simTimeAuthority: SimTimeAuthority = .hostWallTime
    /// Side of a cell of the spatial grid that finds the observers near a change.
    public var spatialCellSize: Double = 16

    public init() {}
}

/// An agent's identity and rights in the world.
public struct AgentRegistration: Hashable, Sendable {
    public static let submitPermission = "submit_intent"
    public static let defaultPermissions: Set<String> = Set([submitPermission] + IntentKind.allCases.map(\.permission))

    public var agentID: AgentID
    public var tenant: String
    public var permissions: Set<String>
    public var agentClass: String?
    /// Share of the per-quantum service in weighted round robin (at least 1).
    public var weight: Int
    /// Overrides `EngineConfig.stalenessThreshold` for this agent.
    public var stalenessThreshold: Int?
    /// Where the agent appears in the world as an entity; nil keeps it out of the world (it can
    /// still speak, but not move).
    public var spawn: Position?
    /// Extra fields of its entity.
    public var entityFields: JSONObject
    /// What it sees, how its observations are delivered, and when its generations are interrupted.
    public var observation: ObservationPolicy

    public init(agentID: AgentID, tenant: String = "default", permissions: Set<String> = AgentRegistration.defaultPermissions,
                agentClass: String? = nil, weight: Int = 1, stalenessThreshold: Int? = nil, spawn: Position? = nil,
                entityFields: JSONObject = JSONObject(), observation: ObservationPolicy = ObservationPolicy()) {
        self.agentID = agentID; self.tenant = tenant; self.permissions = permissions; self.agentClass = agentClass
        self.weight = max(1, weight); self.stalenessThreshold = stalenessThreshold; self.spawn = spawn; self.entityFields = entityFields
        self.observation = observation
    }
}
