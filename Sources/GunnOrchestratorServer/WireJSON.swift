import GunnCore
import GunnWire

/// Conversions between the engine's types and their wire forms (canonical JSON in bytes fields).
public enum WireJSON {
    public static func logEntry(_ e: EventLogEntry) -> LogEntry {
        var l = LogEntry()
        l.globalSeq = e.globalSeq; l.simTime = e.simTime; l.wallTime = e.wallTime
        l.effect = e.effect.canonicalBytes; l.checksum = e.checksum
        l.reqID = e.reqID?.rawValue ?? ""; l.agentID = e.agentID?.rawValue ?? ""; l.worldID = e.worldID
        return l
    }

    public static func eventLogEntry(_ l: LogEntry) throws(GunnError) -> EventLogEntry {
        let json: JSONValue
        do { json = try JSONParser.parse(l.effect) } catch { throw error.gunnError }
        let effect = try Effect(json: json)
        return EventLogEntry(globalSeq: l.globalSeq, simTime: l.simTime, wallTime: l.wallTime, effect: effect, worldID: l.worldID,
                             agentID: l.agentID.isEmpty ? nil : AgentID(l.agentID), reqID: l.reqID.isEmpty ? nil : ReqID(l.reqID), checksum: l.checksum)
    }

    public static func error(_ e: GunnError) -> WireErrorMessage {
        WireErrorMessage(code: UInt32(e.code.code), name: e.code.name, message: e.message, retryAfterMs: e.retryAfterMs ?? 0)
    }

    public static func gunnError(_ e: WireErrorMessage) -> GunnError {
        GunnError(ErrorCode.byCode(Int(e.code)) ?? .internalError, e.message, retryAfterMs: e.retryAfterMs == 0 ? nil : e.retryAfterMs)
    }

    /// `{"agent_id", "spawn": [x,y(,z)]?, "tenant"?, "distance_limit"?, "hidden_fields"?, "weight"?, "staleness_threshold"?}`.
    public static func registration(_ json: JSONValue) throws(GunnError) -> AgentRegistration {
        guard case .string(let id)? = json["agent_id"] else { throw GunnError(.invalidAgentID, "registration needs a string agent_id") }
        var policy = ObservationPolicy()
        if case .number(let d)? = json["distance_limit"] { policy.distanceLimit = d }
        if case .array(let hidden)? = json["hidden_fields"] { policy.hiddenFields = Set(hidden.compactMap(\.stringValue)) }
        if let i = json["interrupt"] {
            guard let v = i.stringValue, let p = InterruptPolicy(rawValue: v) else {
                throw GunnError(.invalidJSON, "registration \"interrupt\" must be \"always\" or \"only_conflict\"")
            }
            policy.interrupt = p
        }
        if let d = json["debounce_ms"] {
            guard let v = d.numberValue, v >= 0, v.isFinite else { throw GunnError(.invalidJSON, "registration \"debounce_ms\" must be a number ≥ 0") }
            policy.debounceMs = v
        }
        let spawn = json["spawn"].flatMap(Position.init(json:))
        let threshold = json["staleness_threshold"]?.int64Value.map { Int(max(0, min($0, 1 << 30))) }
        return AgentRegistration(agentID: AgentID(id), tenant: json["tenant"]?.stringValue ?? "default",
                                 weight: Int(json["weight"]?.int64Value ?? 1), stalenessThreshold: threshold, spawn: spawn, observation: policy)
    }

    public static func registrationJSON(agentID: String, spawn: Position? = nil, distanceLimit: Double? = nil) -> JSONValue {
        var o: JSONObject = ["agent_id": .string(agentID)]
        if let spawn { o["spawn"] = spawn.json }
        if let distanceLimit { o["distance_limit"] = .number(distanceLimit) }
        return .object(o)
    }

    public static func draft(_ json: JSONValue) throws(GunnError) -> EffectDraft {
        guard case .string(let kind)? = json["kind"], case .string(let source)? = json["source_id"] else {
            throw GunnError(.invalidJSON, "an effect draft needs string kind and source_id")
        }
        return EffectDraft(kind: kind, payload: json["payload"] ?? .object(JSONObject()), sourceID: source,
                           priority: Int(json["priority"]?.int64Value ?? 0), simTime: json["sim_time"]?.numberValue, draftID: json["draft_id"]?.stringValue)
    }

    public static func draftJSON(_ d: EffectDraft) -> JSONValue {
        var o: JSONObject = ["kind": .string(d.kind), "payload": d.payload, "source_id": .string(d.sourceID), "priority": .number(Double(d.priority))]
        if let t = d.simTime { o["sim_time"] = .number(t) }
        if let id = d.draftID { o["draft_id"] = .string(id) }
        return .object(o)
    }
}
