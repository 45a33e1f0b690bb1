/// Something the host hands to the engine.
public enum EngineInput: Sendable {
    case registerAgent(AgentRegistration)
    case submitIntent(Intent)
    /// The agent withdraws an intent that is still queued.
    case cancelIntent(AgentID, ReqID)
    /// An effect draft from the message facade or an external engine.
    case emit(EffectDraft)
    /// An external engine's clock reading (used when sim time authority is `externalTicks`).
    case tick(SimTime)
    /// The host's timer: close the current quantum if it is due, end generations past their deadline.
    case flush
    /// An agent starts generating: issue a cancel token bound to its current view.
    case beginGeneration(GenerationRequest)
    /// How many tokens the generation has produced so far (checked against its budget).
    case generationProgress(AgentID, ReqID, tokensEmitted: Int)
    /// The generation finished (its intent is submitted separately); its token is retired.
    case endGeneration(AgentID, ReqID)
    /// The worker stopped a generation: finished by itself (`cancelled` false; like `endGeneration`)
    /// or halted after a `generationCancelled` — then the cancellation is committed to the log as a
    /// `GenerationCancelled` effect with its reason and the tokens discarded.
    case generationHalted(AgentID, ReqID, tokensEmitted: Int, haltLatencyUs: UInt64)
    /// The worker that ran the agent's generations is gone (its connection closed): its live
    /// generations are cancelled with reason `worker_lost`, and every cancellation still waiting
    /// for a halt report is logged with the tokens the host saw relayed (`relayed[req]`).
    case workerLost(AgentID, relayed: [ReqID: Int])
}

/// Something the host must carry out: replies, log entries to persist and publish, signals, timers.
public enum EngineOutput: Hashable, Sendable {
    case agentRegistered(AgentID)
    case registrationRejected(AgentID, GunnError)
    case intentCommitted(agent: AgentID, reqID: ReqID, effect: Effect)
    case intentRejected(agent: AgentID, reqID: ReqID, error: GunnError)
    /// The same req_id is already queued; its outcome will follow once.
    case intentPending(agent: AgentID, reqID: ReqID)
    /// Held in the overflow list of the `defer` policy; its outcome will follow.
    case intentDeferred(agent: AgentID, reqID: ReqID)
    case emitRejected(sourceID: String, draftID: String?, error: GunnError)
    /// A new log entry: persist it, then publish.
    case effectCommitted(EventLogEntry)
    /// The agent's queue crossed its high watermark (`high`) or fell back below its low one.
    case backpressure(agent: AgentID, queueDepth: Int, high: Bool)
    case warning(String)
    /// Call `handle(.flush, at:)` at this host time.
    case wakeAt(HostTime)
    /// An observation for the agent is queued; take it with `nextObservation` from `deliverAt` on.
    case observationQueued(agent: AgentID, viewSeq: ViewSeq, globalSeq: GlobalSeq, deliverAt: HostTime)
    case cancelTokenIssued(CancelToken)
    case generationRefused(agent: AgentID, reqID: ReqID, error: GunnError)
    /// A generation must halt: `reason` is `stale_due_to:<global_seq>`, `deadline` or `token_budget`.
    case generationCancelled(agent: AgentID, reqID: ReqID, reason: String, error: GunnError)
}

/// The deterministic heart of gunn: world state, the two-phase intent pipeline, ordering, the
/// hash-chained log. No I/O, no clock, no global randomness: `handle(input, at:)` returns what
/// the host must do, and the same inputs at the same times give the same log, byte for byte.
public struct Engine: Sendable {
    public let config: EngineConfig
    public let worldID: String
    public let worldSeed: UInt64
    public private(set) var world = WorldState()
    public private(set) var log: InMemoryEventLog
    public private(set) var reducers = ReducerRegistry()
    private let validator: any EffectValidator
    private var idempotency: IdempotencyTable
    /// The memory bounds' accounting and the view cache's eviction policy.
    public private(set) var memory: MemoryManager
    /// Agents by id → index into `agentStates` (one hash lookup per input; then array access).
    private var agentIndex: [AgentID: Int] = [:]
    private var agentStates: [AgentState] = []
    private var tenantBuckets: [String: TokenBucket] = [:]
    private var observers: ObserverRegistry
    private var observedScratch: [ObserverRegistry.Observed] = []
    /// Generations with a deadline: `(deadline, agent index, req_id)`.
    private var deadlines: [(at: HostTime, agent: Int, req: ReqID)] = []
    private var quantumEnd: HostTime?
    private var pendingEmits: [PendingEmit] = []
    /// Indices of agents with queued intents (each also flagged `scheduled`).
    private var agentsWithWork: [Int] = []
    private var externalSimTime: SimTime = 0
    private var lastHostTime: HostTime = -.infinity
    private var outputs: [EngineOutput] = []
    /// Cancelled generations whose halt was not reported yet: (agent index, req) → reason, oldest first.
    private var awaitingHalt: [(agent: Int, req: ReqID, reason: String)] = []
    /// At most this many cancellations wait for their halt (a worker that never answers cannot grow it).
    static let maxAwaitingHalt = 4096

    struct PendingIntent: Sendable {
        var intent: Intent
        var fingerprint: [UInt8]
    }

    struct PendingEmit: Sendable {
        var draft: EffectDraft
        var tiebreak: String
    }

    struct AgentState: Sendable {
        var registration: AgentRegistration
        var bucket: TokenBucket
        var backpressure: BackpressureConfig
        var queue = FIFO<PendingIntent>()
        var deferred = FIFO<PendingIntent>()
        var highSignalled = false
        var scheduled = false
        var lastActionSimTime: [IntentKind: SimTime] = [:]
    }

    public init(config: EngineConfig = EngineConfig(), worldID: String, worldSeed: UInt64,
                validator: any EffectValidator = DefaultEffectValidator()) {
        self.config = config
        self.worldID = worldID
        self.worldSeed = worldSeed
        self.validator = validator
        self.log = InMemoryEventLog(worldID: worldID, snapshotEvery: config.snapshotEvery, snapshotsKept: config.memory.snapshots)
        self.memory = MemoryManager(limits: config.memory)
        self.idempotency = IdempotencyTable(ttlSeconds: config.idempotencyTTLSeconds, maxEntries: config.idempotencyMaxEntries)
        self.observers = ObserverRegistry(cellSize: config.spatialCellSize, seed: worldSeed)
    }

    /// Adds a reducer for a custom effect kind. Register the same reducers wherever the log is replayed.
    public mutating func registerReducer(kind: String, _ reducer: @escaping Reducer) throws(GunnError) {
        try reducers.register(kind: kind, reducer)
    }

    // MARK: - Reading

    public var headSeq: GlobalSeq { log.headSeq }
    public var registeredAgents: [AgentID] { agentIndex.keys.sorted() }
    public func registration(of agent: AgentID) -> AgentRegistration? { agentIndex[agent].map { agentStates[$0].registration } }
    public func queueDepth(of agent: AgentID) -> Int { agentIndex[agent].map { agentStates[$0].queue.count + agentStates[$0].deferred.count } ?? 0 }
    public var idempotencyEntries: Int { idempotency.count }

    /// The agent's current position in its view stream.
    public func viewSeq(of agent: AgentID) -> ViewSeq? {
        agentIndex[agent].map { observers.agents[$0].viewSeq }
    }

    /// The global seq of the last observation delivered to the agent (0: none yet).
    public func viewGlobalSeq(of agent: AgentID) -> GlobalSeq? {
        agentIndex[agent].map { observers.agents[$0].deliveredGlobalSeq }
    }

    /// What the agent sees now, by its observation policy.
    public func view(of agent: AgentID) -> View? {
        agentIndex[agent].map { observers.view(of: $0) }
    }

    /// `filter(world)` computed afresh for the agent, without the incremental bookkeeping: what
    /// its view must equal after every delta.
    public func filteredView(of agent: AgentID) -> JSONValue? {
        guard let i = agentIndex[agent] else { return nil }
        let (e, r) = ObserverRegistry.filter(agent.rawValue, agentStates[i].registration.observation, world, SpatialGrid.full(world, cellSize: config.spatialCellSize))
        return ObserverRegistry.document(e, r)
    }

    /// Takes the agent's next observation that is due at `now` (its latency has passed), in
    /// view_seq order, with the digest of the view it produces.
    public mutating func nextObservation(for agent: AgentID, at now: HostTime) -> ObservationDelta? {
        guard let i = agentIndex[agent] else { return nil }
        return observers.nextObservation(i, at: now)
    }

    /// Starts the agent's stream afresh (a client attaching or resynchronising): the current whole
    /// view; queued observations are dropped, and the next one taken follows this view.
    /// `heldViewSeq` is the view_seq of a view the client already holds (from this engine or a
    /// predecessor): numbering continues after it, so view_seq never goes backwards for the client.
    public mutating func resync(_ agent: AgentID, heldViewSeq: ViewSeq = 0) -> View? {
        guard let i = agentIndex[agent] else { return nil }
        if heldViewSeq > 0 && heldViewSeq >= observers.agents[i].viewSeq { observers.agents[i].viewSeq = heldViewSeq + 1 }
        observers.resync(i)
        return observers.view(of: i)
    }

    /// The world as it was right after `seq`, rebuilt from the nearest snapshot in memory and the
    /// entries of the window; nil when `seq` is past the head or before the window (the host then
    /// rebuilds it from the log writer's snapshot and entries, and passes it to `resume`).
    public func world(at seq: GlobalSeq) -> WorldState? {
        if seq == world.lastGlobalSeq { return world }
        return log.world(at: seq, reducers: reducers)
    }

    /// The oldest seq `world(at:)` can rebuild from memory.
    public var windowStart: GlobalSeq { log.windowStart }

    /// The durable head, as the host knows it: the log window never trims past it (a rollback
    /// rebuilds the durable state from the window's base and the entries up to it).
    public mutating func setTrimFloor(_ seq: GlobalSeq) {
        guard log.trimFloor != seq else { return }
        log.trimFloor = seq
        log.trim()
    }

    /// Resumes an agent's stream from a view it already holds — the view it was delivered after
    /// `globalSeq`, whose digest is `digest` — with one delta to its current view instead of the
    /// whole view. nil when that view cannot be rebuilt from the log or its digest differs (the
    /// caller then sends the whole view). Queued observations are dropped, as on a resync.
    ///
    /// `heldViewSeq` is the view_seq of the client's view. A restarted orchestrator numbers an
    /// agent's views afresh; when the client's number is not behind, the stream continues after
    /// it, so view_seq never goes backwards for the client, and an intent decided on the held view
    /// counts the resume delta as one change it had not seen (staleness, not INVALID_VIEW_SEQ).
    /// `past`, when given, is the world right after `globalSeq` rebuilt by the host from the log
    /// writer (a view from before the window).
    public mutating func resume(_ agent: AgentID, fromGlobalSeq globalSeq: GlobalSeq, digest: String, heldViewSeq: ViewSeq = 0,
                                past given: WorldState? = nil) -> ObservationDelta? {
        guard let i = agentIndex[agent], let past = given ?? world(at: globalSeq), past.lastGlobalSeq == globalSeq else { return nil }
        let policy = agentStates[i].registration.observation
        let (e, r) = ObserverRegistry.filter(agent.rawValue, policy, past, SpatialGrid.full(past, cellSize: config.spatialCellSize))
        let old = ObserverRegistry.document(e, r)
        guard SHA256Digest.of(old) == digest else { return nil }
        if heldViewSeq >= observers.agents[i].viewSeq { observers.agents[i].viewSeq = heldViewSeq + 1 }
        observers.resync(i)
        let now = observers.agents[i].delivered
        return ObservationDelta(viewSeq: observers.agents[i].viewSeq, patches: JSONDiff.diff(old, now, maxOps: policy.maxPatchOps),
                                contextDigest: SHA256Digest.of(now), globalSeq: world.lastGlobalSeq)
    }

    /// Agents whose current view holds `entity` (those who see it, e.g. hear it speak), in
    /// registration order.
    public func agentsSeeing(_ entity: String) -> [AgentID] {
        observers.agents.filter { $0.entities[entity] != nil }.map(\.agentID)
    }

    /// Observations queued for the agent and not yet taken.
    public func pendingObservations(of agent: AgentID) -> Int { agentIndex[agent].map { observers.pendingCount($0) } ?? 0 }

    /// The agent's cancelled generations whose halt was not reported yet.
    public func cancelledAwaitingHalt(of agent: AgentID) -> [ReqID] {
        guard let i = agentIndex[agent] else { return [] }
        return awaitingHalt.filter { $0.agent == i }.map(\.req)
    }

    /// Live cancel tokens of the agent.
    public func activeGenerations(of agent: AgentID) -> [CancelToken] {
        agentIndex[agent].map { observers.agents[$0].generations.map(\.token) } ?? []
    }

    // MARK: - Handling input

    public mutating func handle(_ input: EngineInput, at now: HostTime) -> [EngineOutput] {
        outputs.removeAll(keepingCapacity: true)
        // Host time never runs backwards inside the engine, whatever the host passes.
        let now = max(now, lastHostTime)
        lastHostTime = now
        if let end = quantumEnd, now >= end { closeQuantum(at: now) }
        if !deadlines.isEmpty { expireDeadlines(at: now) }
        switch input {
        case .registerAgent(let r): register(r, at: now)
        case .submitIntent(let intent): submit(intent, at: now)
        case let .cancelIntent(agent, req): cancel(agent, req, at: now)
        case .emit(let draft): emit(draft, at: now)
        case .tick(let t):
            if t > externalSimTime { externalSimTime = t }
        case .flush:
            if quantumEnd != nil && config.quantumMs > 0 && now >= quantumEnd! { closeQuantum(at: now) }
        case .beginGeneration(let request): beginGeneration(request, at: now)
        case let .generationProgress(agent, req, tokens): generationProgress(agent, req, tokens, at: now)
        case let .endGeneration(agent, req):
            if let i = agentIndex[agent] { retireGeneration(i, req) }
        case let .generationHalted(agent, req, tokens, latency): generationHalted(agent, req, tokens, latency, at: now)
        case let .workerLost(agent, relayed):
            if let i = agentIndex[agent] {
                for req in observers.agents[i].generations.map(\.token.reqID) {
                    cancelGeneration(i, req, reason: "worker_lost", GunnError(.adapterUnavailable, "the worker of agent \(agent) is gone"), at: now)
                }
                for req in cancelledAwaitingHalt(of: agent) { generationHalted(agent, req, relayed[req] ?? 0, 0, at: now) }
            }
        }
        if config.quantumMs == 0 && (!agentsWithWork.isEmpty || !pendingEmits.isEmpty) { closeQuantum(at: now) }
        #if DEBUG
        checkInvariants()
        #endif
        return outputs
    }

    /// Closes the open quantum now, whether or not it is due (the RL facade's `step`).
    public mutating func flushNow(at now: HostTime) -> [EngineOutput] {
        outputs.removeAll(keepingCapacity: true)
        let now = max(now, lastHostTime)
        lastHostTime = now
        if quantumEnd != nil || !agentsWithWork.isEmpty || !pendingEmits.isEmpty { closeQuantum(at: now) }
        return outputs
    }

    private mutating func register(_ r: AgentRegistration, at now: HostTime) {
        guard r.agentID.isValid else {
            outputs.append(.registrationRejected(r.agentID, GunnError(.invalidAgentID, "agent id \"\(r.agentID)\" must be 1 to 128 ASCII letters, digits, '-', '_', '.', ':'")))
            return
        }
        let bp = r.agentClass.flatMap { config.agentClasses[$0] } ?? config.backpressure
        if let i = agentIndex[r.agentID] {
            agentStates[i].registration = r
            agentStates[i].backpressure = bp
            observers.register(index: i, agentID: r.agentID, policy: r.observation, world: world)
        } else {
            agentIndex[r.agentID] = agentStates.count
            observers.register(index: agentStates.count, agentID: r.agentID, policy: r.observation, world: world)
            agentStates.append(AgentState(registration: r, bucket: config.agentQuota, backpressure: bp))
        }
        outputs.append(.agentRegistered(r.agentID))
        // Spawn places a new agent only: an agent whose entity the world already holds (a client
        // re-registering after a reconnect or an orchestrator restart) keeps its position and fields.
        if let spawn = r.spawn, world.entities[r.agentID.rawValue] == nil {
            var entity = r.entityFields
            entity["kind"] = entity["kind"] ?? "agent"
            entity["pos"] = spawn.json
            _ = try? commit(kind: "EntityUpsert", payload: ["id": .string(r.agentID.rawValue), "entity": .object(entity)],
                            simTime: simTimeNow(at: now), sourceID: "engine", agent: nil, req: nil, at: now)
        }
    }

    private mutating func reject(_ intent: Intent, _ error: GunnError, record fingerprint: [UInt8]?, at now: HostTime) {
        if let fingerprint {
            idempotency.record(agent: intent.agentID, req: intent.reqID, fingerprint: fingerprint, outcome: .rejected(error), at: now)
        }
        outputs.append(.intentRejected(agent: intent.agentID, reqID: intent.reqID, error: error))
    }

    private mutating func submit(_ intent: Intent, at now: HostTime) {
        // Form: a known agent and a readable schema version. Nothing is recorded for these.
        guard let ai = agentIndex[intent.agentID] else {
            return reject(intent, GunnError(.invalidAgentID, "agent \"\(intent.agentID)\" is not registered in world \(worldID)"), record: nil, at: now)
        }
        do {
            if let warning = try SchemaVersion.check(intent.schemaVersion, record: "intent") { outputs.append(.warning(warning)) }
        } catch {
            return reject(intent, error, record: nil, at: now)
        }
        // 1. Idempotency.
        let fingerprint = intent.fingerprint
        switch idempotency.lookup(agent: intent.agentID, req: intent.reqID, fingerprint: fingerprint, at: now) {
        case .done(let outcome):
            switch outcome {
            case .committed(let e): outputs.append(.intentCommitted(agent: intent.agentID, reqID: intent.reqID, effect: e))
            case .rejected(let e): outputs.append(.intentRejected(agent: intent.agentID, reqID: intent.reqID, error: e))
            }
            return
        case .pending:
            outputs.append(.intentPending(agent: intent.agentID, reqID: intent.reqID))
            return
        case .conflict:
            return reject(intent, GunnError(.duplicateReqID, "req_id \(intent.reqID) of agent \(intent.agentID) was used for a different intent"), record: nil, at: now)
        case .new:
            break
        }
        // 2. Quota: the agent's bucket, then its tenant's. Transient: the id stays free.
        if let waitMs = agentStates[ai].bucket.take(at: now) {
            return reject(intent, GunnError(.quotaExceeded, "agent \(intent.agentID) is over its quota", retryAfterMs: waitMs), record: nil, at: now)
        }
        let tenant = agentStates[ai].registration.tenant
        var tenantBucket = tenantBuckets[tenant] ?? config.tenantQuota
        if let waitMs = tenantBucket.take(at: now) {
            agentStates[ai].bucket.refund()
            tenantBuckets[tenant] = tenantBucket
            return reject(intent, GunnError(.quotaExceeded, "tenant \(tenant) is over its quota", retryAfterMs: waitMs), record: nil, at: now)
        }
        tenantBuckets[tenant] = tenantBucket
        // 3. Backpressure: a full queue under drop_newest refuses now; the other policies act on admission.
        // (Fields are read one by one: a copy of the whole agent state would make the queue push below copy its storage.)
        let bp = agentStates[ai].backpressure
        let full = agentStates[ai].queue.count >= bp.maxQueueDepth
        if full && (bp.policy == .dropNewest || (bp.policy == .defer && agentStates[ai].deferred.count >= bp.maxDeferred)) {
            return reject(intent, GunnError(.queueFull, "agent \(intent.agentID)'s queue is at its bound of \(bp.maxQueueDepth)",
                                            retryAfterMs: UInt64(max(1, config.quantumMs))), record: nil, at: now)
        }
        // 4. Staleness against what this agent could see.
        let viewSeq = observers.agents[ai].viewSeq
        if intent.contextSeq > viewSeq {
            return reject(intent, GunnError(.invalidViewSeq, "context_seq \(intent.contextSeq) is ahead of agent \(intent.agentID)'s view_seq \(viewSeq)"), record: fingerprint, at: now)
        }
        let threshold = agentStates[ai].registration.stalenessThreshold ?? config.stalenessThreshold
        let own = observers.agents[ai].ownViewSeqs.reversed().prefix { $0 > intent.contextSeq }.count
        let missed = Int(viewSeq - intent.contextSeq) - own
        if missed > threshold {
            return reject(intent, GunnError(.staleContext, "agent \(intent.agentID) decided at view_seq \(intent.contextSeq) and has since observed \(missed) effects of others (threshold \(threshold)); view_seq is \(viewSeq)"),
                          record: fingerprint, at: now)
        }
        // Admission.
        idempotency.markPending(agent: intent.agentID, req: intent.reqID, fingerprint: fingerprint)
        let pending = PendingIntent(intent: intent, fingerprint: fingerprint)
        if full {
            switch bp.policy {
            case .shedOldest:
                if let shed = agentStates[ai].queue.pop() {
                    idempotency.release(agent: shed.intent.agentID, req: shed.intent.reqID)
                    outputs.append(.intentRejected(agent: shed.intent.agentID, reqID: shed.intent.reqID,
                                                   error: GunnError(.queueFull, "shed: a newer intent of agent \(intent.agentID) took its place in a full queue",
                                                                    retryAfterMs: UInt64(max(1, config.quantumMs)))))
                }
                agentStates[ai].queue.push(pending)
            case .defer:
                agentStates[ai].deferred.push(pending)
                outputs.append(.intentDeferred(agent: intent.agentID, reqID: intent.reqID))
            case .dropNewest:
                preconditionFailure("drop_newest refuses before admission")
            }
        } else {
            agentStates[ai].queue.push(pending)
        }
        if !agentStates[ai].scheduled {
            agentStates[ai].scheduled = true
            agentsWithWork.append(ai)
        }
        signalWatermark(ai)
        openQuantum(at: now)
    }

    private mutating func cancel(_ agentID: AgentID, _ req: ReqID, at now: HostTime) {
        guard let ai = agentIndex[agentID] else { return }
        let removed = agentStates[ai].queue.remove { $0.intent.reqID == req } ?? agentStates[ai].deferred.remove { $0.intent.reqID == req }
        guard let removed else {
            outputs.append(.warning("cancel: req_id \(req) of agent \(agentID) is not queued"))
            return
        }
        reject(removed.intent, GunnError(.generationCancelled, "cancelled by agent \(agentID) before it was processed"), record: removed.fingerprint, at: now)
        signalWatermark(ai)
    }

    private mutating func emit(_ draft: EffectDraft, at now: HostTime) {
        do {
            if let warning = try SchemaVersion.check(draft.schemaVersion, record: "effect draft") { outputs.append(.warning(warning)) }
        } catch {
            return outputs.append(.emitRejected(sourceID: draft.sourceID, draftID: draft.draftID, error: error))
        }
        guard reducers.knows(draft.kind) else {
            return outputs.append(.emitRejected(sourceID: draft.sourceID, draftID: draft.draftID,
                                                error: GunnError(.unknownEffectKind, "no reducer for effect kind \"\(draft.kind)\"")))
        }
        guard pendingEmits.count < config.maxPendingEmits else {
            return outputs.append(.emitRejected(sourceID: draft.sourceID, draftID: draft.draftID,
                                                error: GunnError(.queueFull, "\(config.maxPendingEmits) drafts already wait for this quantum", retryAfterMs: UInt64(max(1, config.quantumMs)))))
        }
        // Drafts without an id are ordered by their content, so arrival order never matters.
        let tiebreak = draft.draftID ?? (config.quantumMs == 0 ? "" : HashChain.checksum(previous: nil, effect:
            ["kind": .string(draft.kind), "payload": draft.payload, "source_id": .string(draft.sourceID)]))
        pendingEmits.append(PendingEmit(draft: draft, tiebreak: tiebreak))
        openQuantum(at: now)
    }

    private mutating func openQuantum(at now: HostTime) {
        guard config.quantumMs > 0, quantumEnd == nil else { return }
        let q = config.quantumMs / 1000
        let end = ((now / q).rounded(.down) + 1) * q
        quantumEnd = end
        outputs.append(.wakeAt(end))
    }

    private func simTimeNow(at now: HostTime) -> SimTime {
        switch config.simTimeAuthority {
        case .hostWallTime: return now
        // A committed TimeTick advances the world's clock too, so a recovered engine goes on from it.
        case .externalTicks: return max(externalSimTime, world.simTime)
        }
    }

    // MARK: - Closing a quantum

    private enum Work {
        case intent(PendingIntent)
        case emit(PendingEmit)
    }

    private mutating func closeQuantum(at now: HostTime) {
        let simTime: SimTime
        switch config.simTimeAuthority {
        case .hostWallTime: simTime = quantumEnd ?? now
        case .externalTicks: simTime = max(externalSimTime, world.simTime)
        }
        quantumEnd = nil

        // 5. Fairness: weighted round robin over agents with queued intents, in id order.
        var batch: [(key: OrderKey, work: Work)] = []
        var budget = config.maxIntentsPerQuantum
        let order = agentsWithWork.count > 1
            ? agentsWithWork.sorted { agentStates[$0].registration.agentID < agentStates[$1].registration.agentID } : agentsWithWork
        var active = order
        while budget > 0 && !active.isEmpty {
            var stillActive: [Int] = []
            for i in active where budget > 0 {
                var taken = 0
                let weight = agentStates[i].registration.weight
                while taken < weight && budget > 0, let p = agentStates[i].queue.pop() {
                    batch.append((OrderKey(simTime: simTime, priority: p.intent.priority, sourceID: p.intent.agentID.rawValue, tiebreak: p.intent.reqID.rawValue), .intent(p)))
                    taken += 1
                    budget -= 1
                    // Room in the queue admits the oldest deferred intent.
                    if agentStates[i].queue.count < agentStates[i].backpressure.maxQueueDepth, let d = agentStates[i].deferred.pop() { agentStates[i].queue.push(d) }
                }
                if !agentStates[i].queue.isEmpty { stillActive.append(i) }
            }
            active = stillActive
        }
        agentsWithWork.removeAll(keepingCapacity: true)
        for i in order {
            signalWatermark(i)
            if agentStates[i].queue.isEmpty && agentStates[i].deferred.isEmpty {
                agentStates[i].scheduled = false
            } else {
                agentsWithWork.append(i)
            }
        }
        for e in pendingEmits {
            batch.append((OrderKey(simTime: e.draft.simTime ?? simTime, priority: e.draft.priority, sourceID: e.draft.sourceID, tiebreak: e.tiebreak), .emit(e)))
        }
        pendingEmits.removeAll(keepingCapacity: true)

        // 7. Order by (sim_time, priority desc, source_id, tiebreak); uuids are drawn in this order.
        if batch.count > 1 { batch.sort { $0.key < $1.key } }
        for (key, work) in batch {
            switch work {
            case .intent(let p): process(p, simTime: key.simTime, at: now)
            case .emit(let e):
                do {
                    _ = try commit(kind: e.draft.kind, payload: e.draft.payload, simTime: key.simTime, sourceID: e.draft.sourceID, agent: nil, req: nil, at: now)
                } catch {
                    outputs.append(.emitRejected(sourceID: e.draft.sourceID, draftID: e.draft.draftID, error: error))
                }
            }
        }
        if !agentsWithWork.isEmpty { openQuantum(at: now) }
    }

    private mutating func process(_ p: PendingIntent, simTime: SimTime, at now: HostTime) {
        let intent = p.intent
        guard let ai = agentIndex[intent.agentID] else { return }
        let agent = agentStates[ai]
        // 6. Validator.
        let context = ValidationContext(world: world, agent: agent.registration, simTime: simTime,
                                        lastActionSimTime: agent.lastActionSimTime, limits: config.limits, reducers: reducers)
        if let error = validator.validate(intent, context: context) {
            return reject(intent, error, record: p.fingerprint, at: now)
        }
        let kind: String, payload: JSONValue
        do {
            // The Move (or accepted custom intent) of an agent whose entity is an engine body
            // becomes a command for that engine (EngineBodies).
            (kind, payload) = try EngineBodies.commandContent(of: intent, world: world) ?? Self.effectContent(of: intent)
        } catch {
            return reject(intent, error, record: p.fingerprint, at: now)
        }
        do {
            let effect = try commit(kind: kind, payload: payload, simTime: simTime, sourceID: intent.agentID.rawValue,
                                    agent: intent.agentID, req: intent.reqID, at: now)
            agentStates[ai].lastActionSimTime[intent.kind] = simTime
            idempotency.recordCommitted(agent: intent.agentID, req: intent.reqID, fingerprint: p.fingerprint,
                                        canonicalEffect: log.entries.last!.canonicalEffect, at: now)
            outputs.append(.intentCommitted(agent: intent.agentID, reqID: intent.reqID, effect: effect))
        } catch {
            reject(intent, error, record: p.fingerprint, at: now)
        }
    }

    /// The effect an accepted intent becomes. Positions are normalised to 3D (2D gets z = 0).
    static func effectContent(of intent: Intent) -> (kind: String, payload: JSONValue) {
        let agent = JSONValue.string(intent.agentID.rawValue)
        switch intent.kind {
        case .move:
            let to = intent.payload["to"].flatMap(Position.init(json:))!
            return ("Move", ["agent_id": agent, "to": to.json])
        case .speak:
            return ("Speak", ["agent_id": agent, "text": intent.payload["text"]!])
        case .interact:
            return ("Interact", ["agent_id": agent, "target": intent.payload["target"]!, "action": intent.payload["action"] ?? .null])
        case .custom:
            return (intent.payload["kind"]!.stringValue!, ["agent_id": agent, "data": intent.payload["data"] ?? .null])
        }
    }

    /// Steps 7-9: uuid, global_seq, reducer, log append, observation.
    private mutating func commit(kind: String, payload: JSONValue, simTime: SimTime, sourceID: String,
                                 agent: AgentID?, req: ReqID?, at now: HostTime) throws(GunnError) -> Effect {
        let effect = Effect(uuid: Engine.uuid(worldSeed: worldSeed, globalSeq: log.headSeq + 1), kind: kind, payload: payload,
                            globalSeq: log.headSeq + 1, simTime: simTime, sourceID: sourceID)
        try reducers.apply(effect, to: &world)
        assert(world.lastGlobalSeq == effect.globalSeq)
        let entry = log.append(effect, wallTime: now, agentID: agent, reqID: req)
        log.snapshotIfDue(world)
        if memory.effectCommitted() { enforceViewCache() }
        outputs.append(.effectCommitted(entry))
        // Observers: deltas for the agents whose view changed, then interruption of their generations.
        let changes = world.takeChanges()
        observedScratch.removeAll(keepingCapacity: true)
        observers.observe(changes, effect: effect, world: world, at: now, into: &observedScratch)
        for o in observedScratch {
            let id = agentStates[o.agent].registration.agentID
            outputs.append(.observationQueued(agent: id, viewSeq: o.viewSeq, globalSeq: effect.globalSeq, deliverAt: o.deliverAt))
            if !observers.agents[o.agent].generations.isEmpty { interrupt(o.agent, by: effect, changes, at: now) }
        }
        return effect
    }

    // MARK: - Generations

    private mutating func beginGeneration(_ request: GenerationRequest, at now: HostTime) {
        guard let i = agentIndex[request.agentID] else {
            return outputs.append(.generationRefused(agent: request.agentID, reqID: request.reqID,
                                                     error: GunnError(.invalidAgentID, "agent \"\(request.agentID)\" is not registered in world \(worldID)")))
        }
        if observers.agents[i].generations.contains(where: { $0.token.reqID == request.reqID }) {
            return outputs.append(.generationRefused(agent: request.agentID, reqID: request.reqID,
                                                     error: GunnError(.duplicateReqID, "a generation for req_id \(request.reqID) is already live")))
        }
        guard observers.agents[i].generations.count < AgentObservation.maxGenerations else {
            return outputs.append(.generationRefused(agent: request.agentID, reqID: request.reqID,
                                                     error: GunnError(.queueFull, "agent \(request.agentID) already has \(AgentObservation.maxGenerations) live generations")))
        }
        let deadlineAt = request.deadlineMs.map { now + max(0, $0) / 1000 }
        let token = CancelToken(agentID: request.agentID, reqID: request.reqID, contextSeq: observers.agents[i].viewSeq,
                                contextDigest: SHA256Digest.of(observers.agents[i].document), issuedAt: now,
                                deadlineAt: deadlineAt, tokenBudget: request.tokenBudget)
        observers.agents[i].generations.append(ActiveGeneration(token: token, focus: Set(request.focus)))
        outputs.append(.cancelTokenIssued(token))
        if let deadlineAt {
            deadlines.append((deadlineAt, i, request.reqID))
            outputs.append(.wakeAt(deadlineAt))
        }
    }

    private mutating func generationProgress(_ agent: AgentID, _ req: ReqID, _ tokens: Int, at now: HostTime) {
        guard let i = agentIndex[agent], let g = observers.agents[i].generations.firstIndex(where: { $0.token.reqID == req }) else { return }
        observers.agents[i].generations[g].tokensEmitted = max(observers.agents[i].generations[g].tokensEmitted, tokens)
        if let budget = observers.agents[i].generations[g].token.tokenBudget, tokens > budget {
            cancelGeneration(i, req, reason: "token_budget",
                             GunnError(.tokenBudgetExceeded, "generation \(req) of agent \(agent) emitted \(tokens) tokens, over its budget of \(budget)"), at: now)
        }
    }

    private mutating func expireDeadlines(at now: HostTime) {
        var due: [(at: HostTime, agent: Int, req: ReqID)] = []
        deadlines.removeAll { d in
            if d.at <= now { due.append(d); return true }
            return false
        }
        for d in due.sorted(by: { ($0.at, $0.agent) < ($1.at, $1.agent) })
        where observers.agents[d.agent].generations.contains(where: { $0.token.reqID == d.req }) {
            let agent = agentStates[d.agent].registration.agentID
            cancelGeneration(d.agent, d.req, reason: "deadline",
                             GunnError(.operationTimeout, "generation \(d.req) of agent \(agent) passed its deadline"), at: now)
        }
    }

    /// Applies the agent's interrupt policy to an effect it just observed.
    private mutating func interrupt(_ i: Int, by effect: Effect, _ changes: WorldState.ChangeSet, at now: HostTime) {
        let agent = agentStates[i].registration.agentID.rawValue
        guard !effect.sourceID.utf8.elementsEqual(agent.utf8) else { return } // its own effects never interrupt it
        let policy = observers.agents[i].policy
        let threshold = agentStates[i].registration.stalenessThreshold ?? config.stalenessThreshold
        var stale: [ReqID] = []
        for g in observers.agents[i].generations.indices {
            let gen = observers.agents[i].generations[g]
            if policy.interrupt == .onlyConflict {
                let touched = changes.entityIDs.contains { $0.utf8.elementsEqual(agent.utf8) || gen.focus.contains($0) }
                    || changes.relationshipPairs.contains { $0.from == agent || $0.to == agent || gen.focus.contains($0.from) || gen.focus.contains($0.to) }
                guard touched else { continue }
            }
            observers.agents[i].generations[g].staleCount += 1
            if observers.agents[i].generations[g].staleCount > threshold { stale.append(gen.token.reqID) }
        }
        guard !stale.isEmpty else { return }
        if let last = observers.agents[i].lastCancelAt, now - last < policy.debounceMs / 1000 { return } // debounced
        for req in stale {
            cancelGeneration(i, req, reason: "stale_due_to:\(effect.globalSeq)",
                             GunnError(.generationCancelled, "stale_due_to:\(effect.globalSeq)"), at: now)
        }
    }

    private mutating func cancelGeneration(_ i: Int, _ req: ReqID, reason: String, _ error: GunnError, at now: HostTime) {
        guard observers.agents[i].generations.contains(where: { $0.token.reqID == req }) else { return }
        retireGeneration(i, req)
        observers.agents[i].lastCancelAt = now
        if awaitingHalt.count >= Engine.maxAwaitingHalt { awaitingHalt.removeFirst() }
        awaitingHalt.append((i, req, reason))
        outputs.append(.generationCancelled(agent: agentStates[i].registration.agentID, reqID: req, reason: reason, error: error))
    }

    /// A halt report: after a cancellation, the cancellation is logged (record, never re-sample: a
    /// replay reads what was discarded from the log); otherwise the generation simply ends.
    private mutating func generationHalted(_ agent: AgentID, _ req: ReqID, _ tokens: Int, _ latency: UInt64, at now: HostTime) {
        guard let i = agentIndex[agent] else { return }
        guard let k = awaitingHalt.firstIndex(where: { $0.agent == i && $0.req == req }) else {
            return retireGeneration(i, req)
        }
        let reason = awaitingHalt.remove(at: k).reason
        let payload: JSONValue = ["agent_id": .string(agent.rawValue), "req_id": .string(req.rawValue), "reason": .string(reason),
                                  "tokens_discarded": .number(Double(max(0, tokens))), "halt_latency_us": .number(Double(latency))]
        // Committed at once, like a registration's entity: a record of what happened, not a change
        // competing with the quantum's intents. The entry names the agent (not the req_id, which
        // keys intents' idempotency).
        do {
            _ = try commit(kind: "GenerationCancelled", payload: payload, simTime: simTimeNow(at: now), sourceID: agent.rawValue, agent: agent, req: nil, at: now)
        } catch {
            outputs.append(.warning("cannot log the cancellation of \(req) of agent \(agent): \(error)"))
        }
    }

    private mutating func retireGeneration(_ i: Int, _ req: ReqID) {
        observers.agents[i].generations.removeAll { $0.token.reqID == req }
        deadlines.removeAll { $0.agent == i && $0.req == req }
    }

    private mutating func signalWatermark(_ i: Int) {
        let depth = agentStates[i].queue.count + agentStates[i].deferred.count
        let id = agentStates[i].registration.agentID
        if !agentStates[i].highSignalled && depth >= agentStates[i].backpressure.highWatermark {
            agentStates[i].highSignalled = true
            outputs.append(.backpressure(agent: id, queueDepth: depth, high: true))
        } else if agentStates[i].highSignalled && depth <= agentStates[i].backpressure.lowWatermark {
            agentStates[i].highSignalled = false
            outputs.append(.backpressure(agent: id, queueDepth: depth, high: false))
        }
    }

    /// The effect uuid for `globalSeq`: a version-4-shaped UUID from a generator seeded by the world
    /// seed and the seq. A pure function of the two, so a restarted engine continues the same uuids
    /// and a refused effect (which consumes no seq) leaves no hole.
    public static func uuid(worldSeed: UInt64, globalSeq: GlobalSeq) -> String {
        var rng = SplitMix64(seed: worldSeed ^ (globalSeq &* 0x9E37_79B9_7F4A_7C15))
        var hi = rng.next(), lo = rng.next()
        hi = (hi & ~0xF000) | 0x4000                       // version 4
        lo = (lo & ~(0xC000 << 48)) | (0x8000 << 48)        // RFC 4122 variant
        var out = [UInt8]()
        out.reserveCapacity(36)
        func hex(_ v: UInt64) -> UInt8 { v < 10 ? UInt8(v) + 0x30 : UInt8(v) + 0x57 }
        for (i, shift) in stride(from: 60, through: 0, by: -4).enumerated() {
            if i == 8 || i == 12 { out.append(UInt8(ascii: "-")) }
            out.append(hex((hi >> UInt64(shift)) & 0xF))
        }
        for (i, shift) in stride(from: 60, through: 0, by: -4).enumerated() {
            if i == 0 || i == 4 { out.append(UInt8(ascii: "-")) }
            out.append(hex((lo >> UInt64(shift)) & 0xF))
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Recovery: a fresh engine takes over a log (the entries the log writer holds, oldest first):
    /// the chain and sequence are checked, the world is rebuilt by the reducers, `global_seq`
    /// continues from the head, and every request id still inside its TTL (by the entry's wall
    /// time) answers a retry with its committed effect instead of a second one. Agents register
    /// again when their clients reconnect; their views start afresh.
    public mutating func restore(from entries: [EventLogEntry], at now: HostTime) throws(GunnError) {
        let requests = entries.compactMap { e -> RecoveredRequest? in
            guard let agent = e.agentID, let req = e.reqID else { return nil }
            return RecoveredRequest(agentID: agent, reqID: req, canonicalEffect: e.canonicalEffect, expiresAt: e.wallTime + config.idempotencyTTLSeconds)
        }
        try restore(snapshot: nil, entries: entries, requests: requests, at: now)
    }

    /// Recovery from a durable snapshot: the world right after `snapshot.globalSeq` (its chain
    /// checksum there), then the entries after it, checked and replayed. Idempotency comes from
    /// `requests` (the log writer's table: each request's committed effect and when its TTL
    /// ends), not from the entries, so it reaches back before the snapshot; expired ones are
    /// skipped, and at most the table's bound are kept (the newest).
    public mutating func restore(snapshot: (state: WorldState, checksum: String)?, entries: [EventLogEntry],
                                 requests: [RecoveredRequest], at now: HostTime) throws(GunnError) {
        precondition(log.headSeq == 0 && agentStates.isEmpty, "restore into a fresh engine only")
        let start = snapshot?.state ?? WorldState()
        // Replayed in segments ending at the multiples of snapshotEvery, whose worlds become the
        // window's snapshots (so it can trim as it grows).
        var state = start
        var previous = snapshot?.checksum
        var snapshots: [WorldState] = []
        var rest = entries[...]
        while !rest.isEmpty {
            var n = rest.count
            if config.snapshotEvery > 0 {
                let every = UInt64(config.snapshotEvery)
                n = min(n, Int(every - state.lastGlobalSeq % every))
            }
            state = try Replay.replay(rest.prefix(n), from: state, previousChecksum: previous, reducers: reducers)
            previous = rest[rest.startIndex + n - 1].checksum
            rest = rest.dropFirst(n)
            if config.snapshotEvery > 0 && state.lastGlobalSeq % UInt64(config.snapshotEvery) == 0 { snapshots.append(state) }
        }
        world = state
        // The spatial index must know the restored entities, or an agent registered now would
        // see only those that move later (found by the host simulation).
        observers.reindex(world)
        log.load(base: (start.lastGlobalSeq, snapshot?.checksum, start), entries, snapshots: snapshots)
        for r in requests.suffix(idempotency.maxEntries) where r.expiresAt > now {
            idempotency.recordRecovered(agent: r.agentID, req: r.reqID, canonicalEffect: r.canonicalEffect, expiresAt: r.expiresAt)
        }
        lastHostTime = max(lastHostTime, now)
    }

    /// Takes over the request ids another engine of this world answered (a rollback's fresh
    /// engine keeps those of the durable batches): `forgetting` the requests of the batches
    /// rolled back, and every id still pending (its queue is gone).
    /// A key whose committed effect is at or below `durableHead` is kept (that commit is durable).
    public mutating func adoptIdempotency(of other: Engine, forgetting keys: [(AgentID, ReqID)], durableHead: GlobalSeq) {
        idempotency = other.idempotency
        idempotency.dropPending()
        for (agent, req) in keys { idempotency.forgetUnlessCommitted(agent: agent, req: req, upTo: durableHead) }
    }

    // MARK: - Memory

    /// Measures the delivered views and evicts the least recently delivered over the limit.
    mutating func enforceViewCache() {
        for i in memory.evictions(observers.cachedViews()) { observers.evictDelivered(i) }
        memory.wholeViewsAfterEviction = observers.wholeViewsAfterEviction
    }

    /// Evicts every agent's delivered view over `bytes` now (an operator's or a test's pressure).
    public mutating func evictViewCache(downTo bytes: Int) {
        var m = MemoryManager(limits: MemoryLimits(snapshots: config.memory.snapshots, viewCacheBytes: bytes))
        for i in m.evictions(observers.cachedViews()) { observers.evictDelivered(i) }
        memory.viewsEvicted += m.viewsEvicted
        memory.viewCacheBytes = m.viewCacheBytes
    }

    /// Every memory bound: what it holds, its limit (0: unbounded), the most it held.
    public var memoryGauges: [MemoryGauge] {
        let queueMax = agentStates.map { $0.queue.count + $0.deferred.count }.max() ?? 0
        let queueLimit = agentStates.map { $0.backpressure.maxQueueDepth + $0.backpressure.maxDeferred }.max() ?? config.backpressure.maxQueueDepth
        let pendingMax = observers.agents.indices.map { observers.pendingCount($0) }.max() ?? 0
        let pendingLimit = observers.agents.map(\.policy.maxPendingObservations).max() ?? 0
        let window = UInt64(config.snapshotEvery * (config.memory.snapshots + 1))
        return [MemoryGauge(name: "log_window_entries", value: UInt64(log.entries.count), limit: config.memory.snapshots == 0 ? 0 : window, highWater: 0),
                MemoryGauge(name: "snapshots_in_memory", value: UInt64(log.snapshots.count), limit: UInt64(config.memory.snapshots), highWater: 0),
                MemoryGauge(name: "view_cache_bytes", value: UInt64(memory.viewCacheBytes), limit: UInt64(config.memory.viewCacheBytes),
                            highWater: UInt64(memory.viewCacheHighWater)),
                // Counters (limit 0): what the bounds cost so far.
                MemoryGauge(name: "views_evicted", value: UInt64(memory.viewsEvicted), limit: 0, highWater: UInt64(memory.viewsEvicted)),
                MemoryGauge(name: "whole_views_after_eviction", value: UInt64(observers.wholeViewsAfterEviction), limit: 0,
                            highWater: UInt64(observers.wholeViewsAfterEviction)),
                MemoryGauge(name: "idempotency_entries", value: UInt64(idempotency.count), limit: UInt64(idempotency.maxEntries), highWater: 0),
                MemoryGauge(name: "idempotency_evicted_early", value: UInt64(idempotency.evictedBeforeExpiry), limit: 0,
                            highWater: UInt64(idempotency.evictedBeforeExpiry)),
                MemoryGauge(name: "agent_queue_max", value: UInt64(queueMax), limit: UInt64(queueLimit), highWater: 0),
                MemoryGauge(name: "pending_observations_max", value: UInt64(pendingMax), limit: UInt64(pendingLimit), highWater: 0)]
    }

    /// The invariants that must hold after every step; traps on a broken one (our bug, not input).
    public func checkInvariants() {
        precondition(world.lastGlobalSeq == log.headSeq, "world is at \(world.lastGlobalSeq), log head at \(log.headSeq)")
        precondition(agentIndex.count == agentStates.count)
        for (i, a) in agentStates.enumerated() {
            let id = a.registration.agentID
            precondition(agentIndex[id] == i, "agent index out of step for \(id)")
            precondition(a.queue.count <= a.backpressure.maxQueueDepth, "agent \(id) queue over its bound")
            precondition(a.deferred.count <= a.backpressure.maxDeferred, "agent \(id) overflow over its bound")
            precondition(a.queue.isEmpty && a.deferred.isEmpty || a.scheduled, "agent \(id) has work but is not scheduled")
            precondition(a.scheduled == agentsWithWork.contains(i), "agent \(id) scheduled flag disagrees with the work list")
        }
        precondition(config.quantumMs == 0 || agentsWithWork.isEmpty && pendingEmits.isEmpty || quantumEnd != nil, "queued work without an open quantum")
    }
}

/// The order of effects within a quantum: sim_time, then priority (higher first), then source id,
/// then a stable per-input id (req_id, draft id, or the draft's content digest).
struct OrderKey: Comparable, Sendable {
    var simTime: SimTime
    var priority: Int
    var sourceID: String
    var tiebreak: String

    static func < (a: OrderKey, b: OrderKey) -> Bool {
        if a.simTime != b.simTime { return a.simTime < b.simTime }
        if a.priority != b.priority { return a.priority > b.priority }
        if !a.sourceID.utf8.elementsEqual(b.sourceID.utf8) { return a.sourceID.utf8.lexicographicallyPrecedes(b.sourceID.utf8) }
        return a.tiebreak.utf8.lexicographicallyPrecedes(b.tiebreak.utf8)
    }

    static func == (a: OrderKey, b: OrderKey) -> Bool { !(a < b) && !(b < a) }
}
