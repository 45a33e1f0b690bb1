/// One agent's side of observation: its policy, its current view, what is queued for delivery,
/// what it has been delivered, and its live generations.
struct AgentObservation: Sendable {
    let agentID: AgentID
    var policy: ObservationPolicy
    var entities: [String: JSONObject] = [:]
    var relationships: [String: [String: JSONValue]] = [:]
    var viewSeq: ViewSeq = 0
    /// The agent's own effects, as positions in its view stream (newest last, bounded).
    var ownViewSeqs: [ViewSeq] = []
    var pending = FIFO<PendingObservation>()
    /// The view as the agent holds it after the deltas delivered so far.
    var delivered: JSONValue = .null
    var deliveredSeq: ViewSeq = 0
    /// The global seq of the last observation delivered: how far the view the agent holds reaches.
    var deliveredGlobalSeq: GlobalSeq = 0
    var generations: [ActiveGeneration] = []
    var lastCancelAt: HostTime?
    var collapsedDeliveries = 0
    /// `delivered` was dropped by the memory manager: the next delivery is the whole view.
    var evicted = false
    /// When the agent last took a delivery (the registry's use clock): the eviction order.
    var lastUse: UInt64 = 0

    static let ownHistoryBound = 256
    static let maxGenerations = 8

    var document: JSONValue { ObserverRegistry.document(entities, relationships) }
}

struct PendingObservation: Sendable {
    var viewSeq: ViewSeq
    var globalSeq: GlobalSeq
    /// nil: the whole view as it is when delivered (what an overflowing queue collapses into).
    var patch: JSONPatch?
    var deliverAt: HostTime
}

/// Who observes what: per-agent views, the spatial index that keeps a move from touching every
/// agent, delta computation, delivery queues and generation interruption.
struct ObserverRegistry: Sendable {
    var agents: [AgentObservation] = []
    private var indexByID: [String: Int] = [:]
    private var entityGrid: SpatialGrid
    private var agentGrid: SpatialGrid
    private var maxDistanceLimit: Double = 0
    private var unlimited: [Int] = []
    private var latencyRNG: SplitMix64
    private var mark: [UInt32] = []
    private var markGeneration: UInt32 = 0
    private var useClock: UInt64 = 0
    /// Whole views delivered because the agent's delivered view had been evicted.
    private(set) var wholeViewsAfterEviction = 0

    init(cellSize: Double, seed: UInt64) {
        entityGrid = SpatialGrid(cellSize: cellSize)
        agentGrid = SpatialGrid(cellSize: cellSize)
        latencyRNG = SplitMix64(seed: seed ^ 0x6F62_7365_7276_6572) // a stream of its own: uuids stay independent
    }

    static func document(_ entities: [String: JSONObject], _ relationships: [String: [String: JSONValue]]) -> JSONValue {
        var ents = JSONObject()
        for (id, e) in entities { ents[id] = .object(e) }
        return ["entities": .object(ents), "relationships": relationshipsDocument(relationships)]
    }

    static func relationshipsDocument(_ relationships: [String: [String: JSONValue]]) -> JSONValue {
        var rels = JSONObject()
        for (from, targets) in relationships {
            var t = JSONObject()
            for (to, v) in targets { t[to] = v }
            rels[from] = .object(t)
        }
        return .object(rels)
    }

    // MARK: - Agents

    mutating func register(index: Int, agentID: AgentID, policy: ObservationPolicy, world: WorldState) {
        if index < agents.count {
            // Re-registration: a new policy; the view is recomputed and the change delivered as a whole view.
            let old = agents[index].policy
            agents[index].policy = policy
            if old.distanceLimit != nil || policy.distanceLimit != nil { rebuildAgentIndexes(world) }
            let (ents, rels) = ObserverRegistry.filter(agentID.rawValue, policy, world, entityGrid)
            if ents != agents[index].entities || rels != agents[index].relationships {
                agents[index].entities = ents
                agents[index].relationships = rels
                agents[index].viewSeq += 1
                enqueue(PendingObservation(viewSeq: agents[index].viewSeq, globalSeq: world.lastGlobalSeq, patch: nil, deliverAt: -.infinity), for: index)
            }
            return
        }
        precondition(index == agents.count)
        var a = AgentObservation(agentID: agentID, policy: policy)
        let (ents, rels) = ObserverRegistry.filter(agentID.rawValue, policy, world, entityGrid)
        a.entities = ents
        a.relationships = rels
        a.delivered = a.document
        agents.append(a)
        mark.append(0)
        indexByID[agentID.rawValue] = index
        if policy.distanceLimit == nil { unlimited.append(index) } else { rebuildAgentIndexes(world) }
    }

    /// Indexes every entity of `world` (a world restored from the log, which no `observe` saw).
    mutating func reindex(_ world: WorldState) {
        entityGrid = SpatialGrid.full(world, cellSize: entityGrid.cellSize)
        rebuildAgentIndexes(world)
    }

    private mutating func rebuildAgentIndexes(_ world: WorldState) {
        unlimited = agents.indices.filter { agents[$0].policy.distanceLimit == nil }
        maxDistanceLimit = agents.compactMap(\.policy.distanceLimit).max() ?? 0
        agentGrid = SpatialGrid(cellSize: agentGrid.cellSize)
        for a in agents where a.policy.distanceLimit != nil {
            agentGrid.move(a.agentID.rawValue, to: world.positions[a.agentID.rawValue])
        }
    }

    /// `filter(world)` for one agent: its visible entities (hidden fields removed) and the
    /// relationships between them.
    static func filter(_ agent: String, _ policy: ObservationPolicy, _ world: WorldState, _ grid: SpatialGrid)
        -> ([String: JSONObject], [String: [String: JSONValue]]) {
        var ents: [String: JSONObject] = [:]
        let here = world.positions[agent]
        for id in visibleCandidates(agent, policy, world, grid) {
            guard let e = world.entities[id], policy.sees(id, agent: agent, here: here, there: world.positions[id], world: world) else { continue }
            ents[id] = policy.filtered(e)
        }
        return (ents, relationships(among: ents, world))
    }

    /// A superset of what `agent` may see: near it with a distance limit, its relations when a
    /// relationship is required, else everything.
    static func visibleCandidates(_ agent: String, _ policy: ObservationPolicy, _ world: WorldState, _ grid: SpatialGrid) -> [String] {
        var out: [String] = [agent]
        if let limit = policy.distanceLimit {
            if let here = world.positions[agent] { grid.candidates(near: here, radius: limit, into: &out) }
        } else if policy.requireRelationship {
            out.append(contentsOf: world.relationships[agent]?.keys ?? [:].keys)
        } else {
            out.append(contentsOf: world.entities.keys)
        }
        return out
    }

    static func relationships(among ents: [String: JSONObject], _ world: WorldState) -> [String: [String: JSONValue]] {
        var rels: [String: [String: JSONValue]] = [:]
        guard !world.relationships.isEmpty else { return rels }
        for from in ents.keys {
            guard let targets = world.relationships[from] else { continue }
            for (to, v) in targets where ents[to] != nil { rels[from, default: [:]][to] = v }
        }
        return rels
    }

    func view(of index: Int) -> View {
        var ents = JSONObject()
        for (id, e) in agents[index].entities { ents[id] = .object(e) }
        guard case .object(let rels) = ObserverRegistry.relationshipsDocument(agents[index].relationships) else { preconditionFailure() }
        return View(agentID: agents[index].agentID, viewSeq: agents[index].viewSeq, entities: ents, relationships: rels)
    }

    // MARK: - Effects

    struct Observed: Sendable {
        var agent: Int
        var viewSeq: ViewSeq
        var deliverAt: HostTime
    }

    /// Updates the indexes for what an effect changed and computes each observer's delta.
    mutating func observe(_ changes: WorldState.ChangeSet, effect: Effect, world: WorldState, at now: HostTime,
                          into observed: inout [Observed]) {
        for id in changes.entityIDs {
            entityGrid.move(id, to: world.positions[id])
            if let i = indexByID[id], agents[i].policy.distanceLimit != nil { agentGrid.move(id, to: world.positions[id]) }
        }
        guard !changes.isEmpty else { return }
        // Candidate observers: agents near where something changed, agents that changed, agents
        // at either end of a changed relationship, and every agent without a distance limit.
        markGeneration &+= 1
        var candidates: [Int] = []
        func add(_ i: Int) {
            if mark[i] != markGeneration { mark[i] = markGeneration; candidates.append(i) }
        }
        var near: [String] = []
        func addNear(_ p: Position?) {
            guard let p, agentGrid.count > 0 else { return }
            near.removeAll(keepingCapacity: true)
            agentGrid.candidates(near: p, radius: maxDistanceLimit, into: &near)
            for id in near { if let i = indexByID[id] { add(i) } }
        }
        for id in changes.entityIDs {
            if let i = indexByID[id] { add(i) }
            addNear(changes.oldPositions[id] ?? nil)
            addNear(world.positions[id])
        }
        for pair in changes.relationshipPairs {
            if let i = indexByID[pair.from] { add(i) }
            if let i = indexByID[pair.to] { add(i) }
            addNear(world.positions[pair.from])
            addNear(world.positions[pair.to])
        }
        for i in unlimited { add(i) }
        candidates.sort() // registration order: deterministic
        for i in candidates {
            guard let patch = delta(for: i, changes, world) else { continue }
            agents[i].viewSeq += 1
            let seq = agents[i].viewSeq
            if effect.sourceID.utf8.elementsEqual(agents[i].agentID.rawValue.utf8) {
                agents[i].ownViewSeqs.append(seq)
                if agents[i].ownViewSeqs.count >= 2 * AgentObservation.ownHistoryBound {
                    agents[i].ownViewSeqs.removeFirst(agents[i].ownViewSeqs.count - AgentObservation.ownHistoryBound)
                }
            }
            let latency = agents[i].policy.latency
            let jitter = latency.jitterMs > 0 ? latencyRNG.nextUnitDouble() * latency.jitterMs : 0
            let deliverAt = now + (latency.baseMs + jitter) / 1000
            enqueue(PendingObservation(viewSeq: seq, globalSeq: effect.globalSeq, patch: patch, deliverAt: deliverAt), for: i)
            observed.append(Observed(agent: i, viewSeq: seq, deliverAt: deliverAt))
        }
    }

    /// The patch from agent `i`'s current view to its view of `world`, or nil if nothing it sees
    /// changed. Updates the stored view.
    private mutating func delta(for i: Int, _ changes: WorldState.ChangeSet, _ world: WorldState) -> JSONPatch? {
        let agent = agents[i].agentID.rawValue
        let policy = agents[i].policy
        // Which entities to look at again: the changed ones; everything it saw or may now see when
        // its own position or relations changed.
        let keys: [String]
        let selfMoved = changes.seen.contains(agent) && (changes.oldPositions[agent] ?? nil) != world.positions[agent]
        let relationsChanged = policy.requireRelationship && changes.relationshipPairs.contains { $0.from.utf8.elementsEqual(agent.utf8) }
        if selfMoved || relationsChanged {
            var set = Set(agents[i].entities.keys)
            for id in ObserverRegistry.visibleCandidates(agent, policy, world, entityGrid) { set.insert(id) }
            for id in changes.entityIDs { set.insert(id) }
            keys = Array(set)
        } else {
            keys = changes.entityIDs
        }
        // Evaluate in any order; only what changed is sorted (by id), so the patch is deterministic
        // and a large neighbourhood costs one pass, not a sort.
        var changed: [(id: String, old: JSONObject?, now: JSONObject?)] = []
        let here = world.positions[agent]
        var newEntities = agents[i].entities
        agents[i].entities = [:] // keep newEntities uniquely referenced while it changes
        for id in keys {
            let old = newEntities[id]
            var now: JSONObject?
            if let e = world.entities[id], policy.sees(id, agent: agent, here: here, there: world.positions[id], world: world) {
                // An entity the effect did not change and that stays in view needs no comparison.
                if old != nil && !changes.seen.contains(id) { continue }
                now = policy.filtered(e)
            }
            if old == nil && now == nil { continue }
            if let o = old, let n = now, o == n { continue }
            newEntities[id] = now
            changed.append((id, old, now))
        }
        changed.sort { $0.id.utf8.lexicographicallyPrecedes($1.id.utf8) }
        var ops: [PatchOperation] = []
        var overflow = false
        var visibilityChanged = false
        for c in changed {
            switch (c.old, c.now) {
            case (nil, let n?):
                visibilityChanged = true
                ops.append(.add(path: JSONPointer(tokens: ["entities", c.id]), value: .object(n)))
            case (_?, nil):
                visibilityChanged = true
                ops.append(.remove(path: JSONPointer(tokens: ["entities", c.id])))
            case let (o?, n?):
                if !overflow && !JSONDiff.appendDiff(.object(o), .object(n), at: ["entities", c.id], maxOps: policy.maxPatchOps + 1, into: &ops) { overflow = true }
            case (nil, nil):
                break
            }
            if ops.count > policy.maxPatchOps { overflow = true; break }
        }
        if overflow { // still account for visibility, for the relationship map below
            visibilityChanged = changed.contains { ($0.old == nil) != ($0.now == nil) }
        }
        agents[i].entities = newEntities
        if visibilityChanged || !changes.relationshipPairs.isEmpty {
            let newRels = ObserverRegistry.relationships(among: newEntities, world)
            if newRels != agents[i].relationships {
                if !overflow && !JSONDiff.appendDiff(ObserverRegistry.relationshipsDocument(agents[i].relationships),
                                                     ObserverRegistry.relationshipsDocument(newRels), at: ["relationships"],
                                                     maxOps: policy.maxPatchOps + 1, into: &ops) { overflow = true }
                agents[i].relationships = newRels
            }
        }
        if overflow || ops.count > policy.maxPatchOps {
            return JSONPatch([.replace(path: .root, value: agents[i].document)])
        }
        return ops.isEmpty ? nil : JSONPatch(ops)
    }

    /// Bounded delivery: on overflow the queue collapses into one whole view at the newest view_seq,
    /// so a slow agent costs memory in proportion to its view, never to the world's traffic.
    private mutating func enqueue(_ p: PendingObservation, for i: Int) {
        if agents[i].evicted && agents[i].pending.isEmpty {
            // No delivered view to patch: the whole view, built at delivery.
            var whole = p
            whole.patch = nil
            agents[i].pending.push(whole)
        } else if let last = agents[i].pending.last, last.patch == nil {
            // Already collapsed: the pending whole view absorbs this change too (built at delivery).
            agents[i].pending.updateLast { $0.viewSeq = p.viewSeq; $0.globalSeq = p.globalSeq; $0.deliverAt = max($0.deliverAt, p.deliverAt) }
        } else if agents[i].pending.count >= agents[i].policy.maxPendingObservations {
            agents[i].pending = FIFO()
            agents[i].collapsedDeliveries += 1
            var whole = p
            whole.patch = nil
            agents[i].pending.push(whole)
        } else {
            agents[i].pending.push(p)
        }
    }

    /// The next observation due at `now` for agent `i`, with the digest of the view it produces.
    mutating func nextObservation(_ i: Int, at now: HostTime) -> ObservationDelta? {
        guard let p = agents[i].pending.first, p.deliverAt <= now else { return nil }
        _ = agents[i].pending.pop()
        useClock += 1
        agents[i].lastUse = useClock
        guard let patch = p.patch else {
            if agents[i].evicted { wholeViewsAfterEviction += 1; agents[i].evicted = false }
            // A collapsed queue: the whole current view (nothing is queued behind it).
            let doc = agents[i].document
            agents[i].delivered = doc
            agents[i].deliveredSeq = agents[i].viewSeq
            agents[i].deliveredGlobalSeq = p.globalSeq
            return ObservationDelta(viewSeq: agents[i].viewSeq, patches: JSONPatch([.replace(path: .root, value: doc)]), contextDigest: SHA256Digest.of(doc),
                                    globalSeq: p.globalSeq)
        }
        var doc = agents[i].delivered
        agents[i].delivered = .null
        do { try patch.applyInPlace(to: &doc) } catch {
            preconditionFailure("the engine's own delta \(p.viewSeq) for \(agents[i].agentID) does not apply to the delivered view: \(error)")
        }
        agents[i].delivered = doc
        agents[i].deliveredSeq = p.viewSeq
        agents[i].deliveredGlobalSeq = p.globalSeq
        return ObservationDelta(viewSeq: p.viewSeq, patches: patch, contextDigest: SHA256Digest.of(doc), globalSeq: p.globalSeq)
    }

    mutating func resync(_ i: Int) {
        useClock += 1
        agents[i].lastUse = useClock
        agents[i].evicted = false
        agents[i].pending = FIFO()
        agents[i].delivered = agents[i].document
        agents[i].deliveredSeq = agents[i].viewSeq
    }

    /// Drops agent `i`'s delivered view (the memory manager's eviction): what is queued for it
    /// collapses into one whole view at the newest view_seq, and so does the next change.
    mutating func evictDelivered(_ i: Int) {
        guard !agents[i].evicted else { return }
        agents[i].evicted = true
        agents[i].delivered = .null
        if let last = agents[i].pending.last {
            var whole = last
            whole.patch = nil
            // Not before any change it holds is due (the latency model holds for whole views too).
            whole.deliverAt = agents[i].pending.elements.map(\.deliverAt).max()!
            agents[i].pending = FIFO()
            agents[i].pending.push(whole)
        }
    }

    /// The delivered views held: agent index, estimated bytes, last use.
    func cachedViews() -> [(agent: Int, bytes: Int, lastUse: UInt64)] {
        agents.indices.compactMap { i in agents[i].evicted ? nil : (i, agents[i].delivered.estimatedBytes, agents[i].lastUse) }
    }

    func nextDeliveryTime(_ i: Int) -> HostTime? { agents[i].pending.first?.deliverAt }
    func pendingCount(_ i: Int) -> Int { agents[i].pending.count }
}

/// `context_digest`: SHA-256 of the canonical JSON of a view document, lowercase hex.
enum SHA256Digest {
    static func of(_ document: JSONValue) -> String { HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(document)) }
}
