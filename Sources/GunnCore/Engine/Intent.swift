/// What an agent asks for. Nothing happens until every check of the two-phase pipeline passed and
/// the engine turned it into an `Effect`.
public enum IntentKind: String, Sendable, CaseIterable, Comparable {
    case speak = "Speak"
    case move = "Move"
    case interact = "Interact"
    case custom = "Custom"

    public static func < (a: IntentKind, b: IntentKind) -> Bool { a.rawValue < b.rawValue }

    /// The permission an agent needs to submit this kind (besides `submit_intent`).
    public var permission: String { "intent:\(rawValue)" }
}

public struct Intent: Hashable, Sendable {
    public var kind: IntentKind
    public var payload: JSONValue
    /// The agent's `view_seq` when it decided: staleness is measured from here.
    public var contextSeq: ViewSeq
    public var reqID: ReqID
    public var agentID: AgentID
    public var priority: Int
    public var schemaVersion: String

    public init(kind: IntentKind, payload: JSONValue, contextSeq: ViewSeq, reqID: ReqID, agentID: AgentID,
                priority: Int = 0, schemaVersion: String = SchemaVersion.current.description) {
        self.kind = kind; self.payload = payload; self.contextSeq = contextSeq; self.reqID = reqID
        self.agentID = agentID; self.priority = priority; self.schemaVersion = schemaVersion
    }

    /// The seed's JSON spelling.
    public var json: JSONValue {
        ["kind": .string(kind.rawValue), "payload": payload, "context_seq": .number(Double(contextSeq)),
         "req_id": .string(reqID.rawValue), "agent_id": .string(agentID.rawValue),
         "priority": .number(Double(priority)), "schema_version": .string(schemaVersion)]
    }

    /// Reads the seed's JSON spelling, refusing missing or ill-typed fields with INVALID_INTENT.
    public init(json: JSONValue) throws(GunnError) {
        func field(_ name: String) throws(GunnError) -> JSONValue {
            guard let v = json[name] else { throw GunnError(.invalidIntent, "intent has no \"\(name)\"") }
            return v
        }
        guard case .string(let k) = try field("kind"), let kind = IntentKind(rawValue: k) else {
            throw GunnError(.invalidIntent, "intent kind must be one of Speak, Move, Interact, Custom")
        }
        guard let ctx = try field("context_seq").int64Value, ctx >= 0 else { throw GunnError(.invalidIntent, "context_seq must be a non-negative integer") }
        guard case .string(let req) = try field("req_id"), !req.isEmpty, req.utf8.count <= 256 else { throw GunnError(.invalidIntent, "req_id must be a string of 1 to 256 bytes") }
        guard case .string(let agent) = try field("agent_id") else { throw GunnError(.invalidIntent, "agent_id must be a string") }
        let priority = json["priority"]?.int64Value ?? 0
        guard priority >= -1000 && priority <= 1000 else { throw GunnError(.invalidIntent, "priority must be an integer in -1000...1000") }
        let version = json["schema_version"]?.stringValue ?? SchemaVersion.current.description
        self.init(kind: kind, payload: json["payload"] ?? .object(JSONObject()), contextSeq: UInt64(ctx), reqID: ReqID(req),
                  agentID: AgentID(agent), priority: Int(priority), schemaVersion: version)
    }

    /// What identifies "the same intent" for idempotency: a retry must carry the same kind,
    /// payload and context; anything else under the same req_id is DUPLICATE_REQ_ID.
    var fingerprint: [UInt8] {
        // Canonical JSON of {"context_seq", "kind", "payload"}, written in member order.
        var out: [UInt8] = [UInt8(ascii: "{")]
        CanonicalJSON.appendKey("context_seq", into: &out)
        CanonicalJSON.appendNumber(Double(contextSeq), into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("kind", into: &out)
        CanonicalJSON.appendString(kind.rawValue, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("payload", into: &out)
        CanonicalJSON.encode(payload, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }
}
