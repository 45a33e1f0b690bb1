import GunnCore
import GunnWire

/// Conversions between the engine's types and their wire forms (canonical JSON in bytes fields).
public enum WireJSON {
    public static func logEntry(_ e: EventLogEntry) -> LogEntry {
        var l = LogEntry()
        l.globalSeq = e.globalSeq; l.simTime = e.simTime; l.wallTime = e.wallTime
        l.effect = e.canonicalEffect; l.checksum = e.checksum
        l.reqID = e.reqID?.rawValue ?? ""; l.agentID = e.agentID?.rawValue ?? ""; l.worldID = e.worldID
        return l
    }

    public static func eventLogEntry(_ l: LogEntry) throws(GunnError) -> EventLogEntry {
        let json: JSONValue
        do { json = try JSONParser.parse(l.effect) } catch { throw error.gunnError }
        let effect = try Effect(json: json)
        // The writer's bytes are the canonical form (it checked them), and the chain is over them.
        return EventLogEntry(globalSeq: l.globalSeq, simTime: l.simTime, wallTime: l.wallTime, effect: effect, worldID: l.worldID,
                             agentID: l.agentID.isEmpty ? nil : AgentID(l.agentID), reqID: l.reqID.isEmpty ? nil : ReqID(l.reqID), checksum: l.checksum,
                             canonicalEffect: l.effect)
    }

    public static func error(_ e: GunnError) -> WireErrorMessage {
        WireErrorMessage(code: UInt32(e.code.code), name: e.code.name, message: e.message, retryAfterMs: e.retryAfterMs ?? 0)
    }

    /// A snapshot's world, once its bytes match its digest and hold a world at its seq: what the
    /// orchestrator recovers from, gunnctl replays from and the dashboard follows from.
    public static func verifiedSnapshot(_ s: SnapshotMessage) throws(GunnError) -> WorldState {
        guard HashChain.checksum(previous: nil, canonicalEffect: s.state) == s.digest, !s.chainChecksum.isEmpty else {
            throw GunnError(.worldStateCorrupted, "its state does not match its digest, or it has no chain checksum")
        }
        let json: JSONValue
        do { json = try JSONParser.parse(s.state) } catch { throw GunnError(.worldStateCorrupted, "its state is not JSON: \(error)") }
        let world = try WorldState(json: json)
        guard world.lastGlobalSeq == s.globalSeq else {
            throw GunnError(.worldStateCorrupted, "its world is at \(world.lastGlobalSeq), not \(s.globalSeq)")
        }
        return world
    }

    public static func gunnError(_ e: WireErrorMessage) -> GunnError {
        GunnError(ErrorCode.byCode(Int(e.code)) ?? .internalError, e.message, retryAfterMs: e.retryAfterMs == 0 ? nil : e.retryAfterMs)
    }

    /// A registration, read strictly (every field named in docs/orchestrator.md; an unknown key,
    /// a wrong type or a value out of range is INVALID_FIELD naming the field):
    /// `{"agent_id", "spawn"?, "entity"?, "tenant"?, "weight"?, "staleness_threshold"?,
    ///   "distance_limit"?, "hidden_fields"?, "require_relationship"?, "relationship_values"?,
    ///   "latency_ms"?, "jitter_ms"?, "max_patch_ops"?, "interrupt"?, "debounce_ms"?}`.
    public static func registration(_ json: JSONValue) throws(GunnError) -> AgentRegistration {
        var f = try StrictFields(json, what: "registration")
        guard case .string(let id)? = f.value("agent_id") else {
            throw GunnError(.invalidAgentID, "registration needs a string agent_id")
        }
        var policy = ObservationPolicy()
        policy.distanceLimit = try f.number("distance_limit", in: 0...1e12)
        if let hidden = try f.strings("hidden_fields", maxCount: 64) { policy.hiddenFields = Set(hidden) }
        policy.requireRelationship = try f.bool("require_relationship") ?? false
        if let values = try f.strings("relationship_values", maxCount: 64) { policy.relationshipValues = Set(values) }
        policy.latency = LatencyModel(baseMs: try f.number("latency_ms", in: 0...60_000) ?? 0, jitterMs: try f.number("jitter_ms", in: 0...60_000) ?? 0)
        policy.maxPatchOps = Int(try f.integer("max_patch_ops", in: 1...100_000) ?? Int64(policy.maxPatchOps))
        if let v = try f.string("interrupt", maxBytes: 32) {
            guard let p = InterruptPolicy(rawValue: v) else {
                throw GunnError(.invalidField, "registration field \"interrupt\" must be \"always\" or \"only_conflict\", not \"\(v)\"")
            }
            policy.interrupt = p
        }
        policy.debounceMs = try f.number("debounce_ms", in: 0...3_600_000) ?? 0
        let spawn = try f.position("spawn")
        var entity = try f.object("entity") ?? JSONObject()
        for reserved in ["pos", "id"] where entity[reserved] != nil {
            throw GunnError(.invalidField, "registration field \"entity\" may not set \"\(reserved)\" (use spawn for the position)")
        }
        if spawn == nil && !entity.isEmpty {
            throw GunnError(.invalidField, "registration field \"entity\" needs a spawn: an agent without one has no entity")
        }
        let tenant = try f.string("tenant", maxBytes: 128) ?? "default"
        guard !tenant.isEmpty else { throw GunnError(.invalidField, "registration field \"tenant\" must not be empty") }
        let weight = try f.integer("weight", in: 1...1000) ?? 1
        let threshold = try f.integer("staleness_threshold", in: 0...(1 << 30)).map { Int($0) }
        try f.finish()
        if entity["kind"] == nil, spawn != nil { entity["kind"] = "agent" }
        return AgentRegistration(agentID: AgentID(id), tenant: tenant, weight: Int(weight), stalenessThreshold: threshold,
                                 spawn: spawn, entityFields: entity, observation: policy)
    }

    /// An observation policy's filtering fields, as a registration would name them: what
    /// `registration` reads back into the same filter (the dashboard computes views with it).
    public static func policyJSON(_ p: ObservationPolicy) -> JSONValue {
        var o = JSONObject()
        if let d = p.distanceLimit { o["distance_limit"] = .number(d) }
        if !p.hiddenFields.isEmpty { o["hidden_fields"] = .array(p.hiddenFields.sorted().map { .string($0) }) }
        if p.requireRelationship { o["require_relationship"] = true }
        if let v = p.relationshipValues { o["relationship_values"] = .array(v.sorted().map { .string($0) }) }
        return .object(o)
    }

    public static func registrationJSON(agentID: String, spawn: Position? = nil, distanceLimit: Double? = nil) -> JSONValue {
        var o: JSONObject = ["agent_id": .string(agentID)]
        if let spawn { o["spawn"] = spawn.json }
        if let distanceLimit { o["distance_limit"] = .number(distanceLimit) }
        return .object(o)
    }

    /// An effect draft, read strictly: `{"kind", "source_id", "payload"?, "priority"?, "sim_time"?,
    /// "draft_id"?, "schema_version"?}`; anything else, or a wrong type, is INVALID_FIELD naming it.
    public static func draft(_ json: JSONValue) throws(GunnError) -> EffectDraft {
        var f = try StrictFields(json, what: "effect draft")
        let kind = try f.string("kind", required: true, maxBytes: 128)!
        let source = try f.string("source_id", required: true, maxBytes: 128)!
        guard !kind.isEmpty, !source.isEmpty else { throw GunnError(.invalidField, "effect draft fields \"kind\" and \"source_id\" must not be empty") }
        let payload = try f.object("payload") ?? JSONObject()
        let priority = try f.integer("priority", in: -1000...1000) ?? 0
        let simTime = try f.number("sim_time", in: 0...1e15)
        let draftID = try f.string("draft_id", maxBytes: 256)
        let version = try f.string("schema_version", maxBytes: 32) ?? SchemaVersion.current.description
        try f.finish()
        return EffectDraft(kind: kind, payload: .object(payload), sourceID: source, priority: Int(priority), simTime: simTime,
                           draftID: draftID, schemaVersion: version)
    }

    public static func draftJSON(_ d: EffectDraft) -> JSONValue {
        var o: JSONObject = ["kind": .string(d.kind), "payload": d.payload, "source_id": .string(d.sourceID), "priority": .number(Double(d.priority))]
        if let t = d.simTime { o["sim_time"] = .number(t) }
        if let id = d.draftID { o["draft_id"] = .string(id) }
        return .object(o)
    }
}
