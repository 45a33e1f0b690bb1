/// What an intent finally came to: committed as an effect, or refused with a coded error.
/// A request the log writer's idempotency table holds: its committed effect, until `expiresAt`.
/// The effect is kept as its canonical JSON and parsed only when a retry asks for it (a
/// restart takes the newest 100,000 without parsing one).
public struct RecoveredRequest: Hashable, Sendable {
    public var agentID: AgentID
    public var reqID: ReqID
    public var canonicalEffect: [UInt8]
    public var expiresAt: HostTime
    public init(agentID: AgentID, reqID: ReqID, canonicalEffect: [UInt8], expiresAt: HostTime) {
        self.agentID = agentID; self.reqID = reqID; self.canonicalEffect = canonicalEffect; self.expiresAt = expiresAt
    }
    public init(agentID: AgentID, reqID: ReqID, effect: Effect, expiresAt: HostTime) {
        self.init(agentID: agentID, reqID: reqID, canonicalEffect: effect.canonicalBytes, expiresAt: expiresAt)
    }
}

public enum IntentOutcome: Hashable, Sendable {
    case committed(Effect)
    case rejected(GunnError)

    public var effect: Effect? { if case .committed(let e) = self { return e } else { return nil } }
    public var error: GunnError? { if case .rejected(let e) = self { return e } else { return nil } }
}

/// Remembers `(world_id, agent_id, req_id)` → the first final outcome, for `ttl` seconds of host
/// time and at most `maxEntries` entries (oldest evicted first). A retry with the same id and the
/// same intent gets that outcome again and creates nothing; the same id with a different intent
/// is DUPLICATE_REQ_ID. Transient refusals (quota, queue full) are not recorded, so the id stays
/// usable for the retry their `retry_after_ms` invites.
public struct IdempotencyTable: Sendable {
    struct Key: Hashable, Sendable { let agent: AgentID; let req: ReqID }
    enum Entry: Sendable {
        case pending(fingerprint: [UInt8])
        case done(fingerprint: [UInt8], outcome: IntentOutcome, expiresAt: HostTime)
        /// A committed intent, its effect kept as canonical JSON (a fifth of the memory of the
        /// parsed effect; parsed again only for a retry).
        case committed(fingerprint: [UInt8], canonicalEffect: [UInt8], expiresAt: HostTime)
        /// Rebuilt from the log after a restart: the intent's fingerprint is not in the log, so
        /// any retry under this id gets the committed outcome.
        case recovered(outcome: IntentOutcome, expiresAt: HostTime)
        /// The same, with the effect still as the log writer's bytes (parsed on the first retry).
        case recoveredBytes([UInt8], expiresAt: HostTime)
    }

    public let ttlSeconds: Double
    public let maxEntries: Int
    private var entries: [Key: Entry] = [:]
    /// Completed keys in completion order, which with a fixed TTL is also expiry order.
    private var order: [Key] = []
    private var orderHead = 0
    public private(set) var evictedBeforeExpiry = 0

    public init(ttlSeconds: Double, maxEntries: Int) {
        precondition(ttlSeconds > 0 && maxEntries > 0)
        self.ttlSeconds = ttlSeconds
        self.maxEntries = maxEntries
    }

    public var count: Int { entries.count }

    enum Lookup { case new, pending, done(IntentOutcome), conflict }

    mutating func lookup(agent: AgentID, req: ReqID, fingerprint: [UInt8], at now: HostTime) -> Lookup {
        expire(at: now)
        switch entries[Key(agent: agent, req: req)] {
        case nil: return .new
        case .pending(let f)?: return f == fingerprint ? .pending : .conflict
        case let .done(f, outcome, _)?: return f == fingerprint ? .done(outcome) : .conflict
        case let .committed(f, bytes, _)?:
            guard f == fingerprint else { return .conflict }
            return .done(Self.parse(bytes, agent: agent, req: req))
        case let .recovered(outcome, _)?: return .done(outcome)
        case let .recoveredBytes(bytes, _)?: return .done(Self.parse(bytes, agent: agent, req: req))
        }
    }

    static func parse(_ bytes: [UInt8], agent: AgentID, req: ReqID) -> IntentOutcome {
        do { return .committed(try Effect(json: try JSONParser.parse(bytes))) } catch {
            return .rejected(GunnError(.worldStateCorrupted, "the recorded effect of req_id \(req) of agent \(agent) does not parse: \(error)"))
        }
    }

    /// Records a committed intent by its effect's canonical bytes.
    mutating func recordCommitted(agent: AgentID, req: ReqID, fingerprint: [UInt8], canonicalEffect: [UInt8], at now: HostTime) {
        let key = Key(agent: agent, req: req)
        entries[key] = .committed(fingerprint: fingerprint, canonicalEffect: canonicalEffect, expiresAt: now + ttlSeconds)
        order.append(key)
        expire(at: now)
    }

    mutating func markPending(agent: AgentID, req: ReqID, fingerprint: [UInt8]) {
        entries[Key(agent: agent, req: req)] = .pending(fingerprint: fingerprint)
    }

    /// Forgets a pending id (its intent met a transient refusal).
    mutating func release(agent: AgentID, req: ReqID) {
        let key = Key(agent: agent, req: req)
        if case .pending? = entries[key] { entries[key] = nil }
    }

    /// Forgets an id (its outcome was rolled back with its batch) unless it records a commit at
    /// or below `seq` (durable; a retry in the rolled-back batch was answered from it).
    mutating func forgetUnlessCommitted(agent: AgentID, req: ReqID, upTo seq: GlobalSeq) {
        let key = Key(agent: agent, req: req)
        switch entries[key] {
        case .recovered?, .recoveredBytes?: return
        case let .committed(_, bytes, _)?:
            if case .committed(let e) = Self.parse(bytes, agent: agent, req: req), e.globalSeq <= seq { return }
        case let .done(_, .committed(e), _)? where e.globalSeq <= seq: return
        default: break
        }
        entries[key] = nil
    }

    /// Forgets every pending id (the queues that held them are gone).
    mutating func dropPending() {
        for (k, v) in entries { if case .pending = v { entries[k] = nil } }
    }

    mutating func recordRecovered(agent: AgentID, req: ReqID, canonicalEffect: [UInt8], expiresAt: HostTime) {
        let key = Key(agent: agent, req: req)
        entries[key] = .recoveredBytes(canonicalEffect, expiresAt: expiresAt)
        order.append(key)
    }

    mutating func recordRecovered(agent: AgentID, req: ReqID, outcome: IntentOutcome, expiresAt: HostTime) {
        let key = Key(agent: agent, req: req)
        entries[key] = .recovered(outcome: outcome, expiresAt: expiresAt)
        order.append(key)
    }

    mutating func record(agent: AgentID, req: ReqID, fingerprint: [UInt8], outcome: IntentOutcome, at now: HostTime) {
        let key = Key(agent: agent, req: req)
        entries[key] = .done(fingerprint: fingerprint, outcome: outcome, expiresAt: now + ttlSeconds)
        order.append(key)
        expire(at: now)
    }

    private mutating func expire(at now: HostTime) {
        while orderHead < order.count {
            let key = order[orderHead]
            let expiresAt: HostTime
            switch entries[key] {
            case let .done(_, _, e)?: expiresAt = e
            case let .committed(_, _, e)?: expiresAt = e
            case let .recovered(_, e)?: expiresAt = e
            case let .recoveredBytes(_, e)?: expiresAt = e
            default: orderHead += 1; continue
            }
            let overfull = entries.count > maxEntries
            guard expiresAt <= now || overfull else { break }
            if expiresAt > now { evictedBeforeExpiry += 1 }
            entries[key] = nil
            orderHead += 1
        }
        if orderHead > 4096 && orderHead * 2 > order.count {
            order.removeFirst(orderHead)
            orderHead = 0
        }
    }
}
