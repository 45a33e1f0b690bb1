/// When an agent's generation is interrupted by what it observes.
public enum InterruptPolicy: String, Hashable, Sendable {
    /// Any observed effect of another source counts toward staleness.
    case always
    /// Only conflicting effects count: effects of another source that change the agent's own
    /// entity or an entity in the generation's focus set (e.g. the one it is talking to or about
    /// to act on).
    case onlyConflict = "only_conflict"
}

/// How long an observation takes to reach an agent: `baseMs` plus a uniform jitter in
/// `[0, jitterMs]` drawn from the world's seeded generator.
public struct LatencyModel: Hashable, Sendable {
    public var baseMs: Double
    public var jitterMs: Double
    public init(baseMs: Double = 0, jitterMs: Double = 0) {
        self.baseMs = max(0, baseMs)
        self.jitterMs = max(0, jitterMs)
    }
}

/// What one agent sees of the world and how it hears about changes.
///
/// An entity is visible to an agent when it is the agent itself, or when every filter that is set
/// lets it through: within `distanceLimit` (both positioned; distance in 3D), and related to the
/// agent (`relationships[agent][entity]` exists, and its value is one of `relationshipValues`
/// when that is set). A relationship is visible when both its ends are. Fields named in
/// `hiddenFields` are removed from every entity before it enters a view or a delta.
public struct ObservationPolicy: Hashable, Sendable {
    public var distanceLimit: Double?
    public var requireRelationship: Bool
    public var relationshipValues: Set<String>?
    public var hiddenFields: Set<String>
    public var latency: LatencyModel
    /// Above this many operations a delta is the whole view instead (one `replace` of the root).
    public var maxPatchOps: Int
    public var interrupt: InterruptPolicy
    /// After a cancellation, further stale triggers within this window cancel nothing.
    public var debounceMs: Double
    /// Observed deltas held for delivery; on overflow the queue collapses into one whole view.
    public var maxPendingObservations: Int

    public init(distanceLimit: Double? = nil, requireRelationship: Bool = false, relationshipValues: Set<String>? = nil,
                hiddenFields: Set<String> = [], latency: LatencyModel = LatencyModel(), maxPatchOps: Int = 64,
                interrupt: InterruptPolicy = .always, debounceMs: Double = 0, maxPendingObservations: Int = 256) {
        precondition(maxPatchOps >= 1 && maxPendingObservations >= 1)
        self.distanceLimit = distanceLimit
        self.requireRelationship = requireRelationship
        self.relationshipValues = relationshipValues
        self.hiddenFields = hiddenFields
        self.latency = latency
        self.maxPatchOps = maxPatchOps
        self.interrupt = interrupt
        self.debounceMs = max(0, debounceMs)
        self.maxPendingObservations = maxPendingObservations
    }

    /// `filter(world)`: what `agent` sees of `world` under this policy.
    public func filter(_ world: WorldState, for agent: AgentID, viewSeq: ViewSeq = 0) -> View {
        let (ents, rels) = ObserverRegistry.filter(agent.rawValue, self, world, SpatialGrid.full(world, cellSize: 64))
        var e = JSONObject()
        for (id, v) in ents { e[id] = .object(v) }
        guard case .object(let r) = ObserverRegistry.relationshipsDocument(rels) else { preconditionFailure() }
        return View(agentID: agent, viewSeq: viewSeq, entities: e, relationships: r)
    }

    /// Whether `agent` observes `effect`, given the world before and after it: true exactly when
    /// the agent's filtered view changed. (The engine decides the same incrementally, touching only
    /// the agents near the change.)
    public func shouldObserve(_ effect: Effect, agent: AgentID, before: WorldState, after: WorldState) -> Bool {
        filter(before, for: agent).document != filter(after, for: agent).document
    }

    /// Whether `entity` (with its position) is visible to `agent` standing at `here`.
    func sees(_ entity: String, agent: String, here: Position?, there: Position?, world: WorldState) -> Bool {
        if entity.utf8.elementsEqual(agent.utf8) { return true }
        if let limit = distanceLimit {
            guard let here, let there, here.distance(to: there) <= limit else { return false }
        }
        if requireRelationship {
            guard let value = world.relationships[agent]?[entity] else { return false }
            if let allowed = relationshipValues {
                guard case .string(let s) = value, allowed.contains(s) else { return false }
            }
        }
        return true
    }

    /// The entity as this agent may see it.
    func filtered(_ entity: JSONObject) -> JSONObject {
        guard !hiddenFields.isEmpty else { return entity }
        var e = entity
        for f in hiddenFields { e.removeValue(forKey: f) }
        return e
    }
}
