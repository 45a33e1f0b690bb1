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

    /// Reads the seed's JSON spelling strictly: a missing, ill-typed or out-of-range field, or a
    /// field the spelling does not have, is INVALID_INTENT naming the field.
    public init(json: JSONValue) throws(GunnError) {
        var f = try StrictFields(json, what: "intent", code: .invalidIntent)
        guard let kind = IntentKind(rawValue: try f.string("kind", required: true, maxBytes: 16)!) else {
            throw GunnError(.invalidIntent, "intent field \"kind\" must be one of Speak, Move, Interact, Custom")
        }
        let ctx = try f.integer("context_seq", required: true, in: 0...Int64(1) << 53)!
        let req = try f.string("req_id", required: true, maxBytes: 256)!
        guard !req.isEmpty else { throw GunnError(.invalidIntent, "intent field \"req_id\" must be a string of 1 to 256 bytes") }
        let agent = try f.string("agent_id", required: true, maxBytes: 128)!
        let priority = try f.integer("priority", in: -1000...1000) ?? 0
        let version = try f.string("schema_version", maxBytes: 32) ?? SchemaVersion.current.description
        let payload = try f.object("payload") ?? JSONObject()
        try f.finish()
        self.init(kind: kind, payload: .object(payload), contextSeq: UInt64(ctx), reqID: ReqID(req),
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
