/// Something that will happen, before the engine ordered it and gave it a `global_seq`: what the
/// message facade emits, what an external engine reports, and what an accepted intent becomes.
public struct EffectDraft: Hashable, Sendable {
    public var kind: String
    public var payload: JSONValue
    public var sourceID: String
    public var priority: Int
    /// Explicit simulation time (an external engine's); nil takes the engine's current sim time.
    public var simTime: SimTime?
    /// A caller-chosen stable id for the draft; with no id the draft's content orders it.
    public var draftID: String?
    public var schemaVersion: String

    public init(kind: String, payload: JSONValue, sourceID: String, priority: Int = 0, simTime: SimTime? = nil,
                draftID: String? = nil, schemaVersion: String = SchemaVersion.current.description) {
        self.kind = kind; self.payload = payload; self.sourceID = sourceID; self.priority = priority
        self.simTime = simTime; self.draftID = draftID; self.schemaVersion = schemaVersion
    }
}

/// A committed change to the world, with its place in the log.
public struct Effect: Hashable, Sendable {
    public var uuid: String
    public var kind: String
    public var payload: JSONValue
    public var globalSeq: GlobalSeq
    public var simTime: SimTime
    public var sourceID: String
    public var schemaVersion: String

    public init(uuid: String, kind: String, payload: JSONValue, globalSeq: GlobalSeq, simTime: SimTime, sourceID: String,
                schemaVersion: String = SchemaVersion.current.description) {
        self.uuid = uuid; self.kind = kind; self.payload = payload; self.globalSeq = globalSeq
        self.simTime = simTime; self.sourceID = sourceID; self.schemaVersion = schemaVersion
    }

    /// The seed's JSON spelling; the hash chain is computed over its canonical bytes.
    public var json: JSONValue {
        ["uuid": .string(uuid), "kind": .string(kind), "payload": payload, "global_seq": .number(Double(globalSeq)),
         "sim_time": .number(simTime), "source_id": .string(sourceID), "schema_version": .string(schemaVersion)]
    }

    /// `CanonicalJSON.encode(json)`, written directly in canonical member order (the log's hot path).
    public var canonicalBytes: [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(160)
        out.append(UInt8(ascii: "{"))
        CanonicalJSON.appendKey("global_seq", into: &out)
        CanonicalJSON.appendNumber(Double(globalSeq), into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("kind", into: &out)
        CanonicalJSON.appendString(kind, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("payload", into: &out)
        CanonicalJSON.encode(payload, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("schema_version", into: &out)
        CanonicalJSON.appendString(schemaVersion, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("sim_time", into: &out)
        CanonicalJSON.appendNumber(simTime, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("source_id", into: &out)
        CanonicalJSON.appendString(sourceID, into: &out)
        out.append(UInt8(ascii: ","))
        CanonicalJSON.appendKey("uuid", into: &out)
        CanonicalJSON.appendString(uuid, into: &out)
        out.append(UInt8(ascii: "}"))
        return out
    }

    public init(json: JSONValue) throws(GunnError) {
        guard case .string(let uuid)? = json["uuid"], case .string(let kind)? = json["kind"],
              let seq = json["global_seq"]?.int64Value, seq > 0, case .number(let t)? = json["sim_time"],
              case .string(let source)? = json["source_id"], case .string(let version)? = json["schema_version"] else {
            throw GunnError(.invalidJSON, "effect JSON lacks uuid, kind, global_seq, sim_time, source_id or schema_version")
        }
        _ = try SchemaVersion.check(version, record: "effect")
        self.init(uuid: uuid, kind: kind, payload: json["payload"] ?? .null, globalSeq: UInt64(seq), simTime: t, sourceID: source, schemaVersion: version)
    }
}

/// One entry of the append-only log: the effect, where it came from, and the chain checksum.
public struct EventLogEntry: Hashable, Sendable {
    public var globalSeq: GlobalSeq
    public var simTime: SimTime
    /// Host time when committed; recorded for audit, outside the hash.
    public var wallTime: HostTime
    public var effect: Effect { didSet { canonicalEffect = effect.canonicalBytes } }
    /// `effect.canonicalBytes`, computed once (the chain, the log writer's entry and the reply all use it).
    public private(set) var canonicalEffect: [UInt8]
    public var worldID: String
    /// The submitting agent, for effects of intents.
    public var agentID: AgentID?
    public var reqID: ReqID?
    /// `HashChain.checksum(previous:canonicalEffect:)` of this entry.
    public var checksum: String

    public init(globalSeq: GlobalSeq, simTime: SimTime, wallTime: HostTime, effect: Effect, worldID: String, agentID: AgentID?, reqID: ReqID?, checksum: String,
                canonicalEffect: [UInt8]? = nil) {
        self.globalSeq = globalSeq; self.simTime = simTime; self.wallTime = wallTime; self.effect = effect
        self.canonicalEffect = canonicalEffect ?? effect.canonicalBytes
        self.worldID = worldID; self.agentID = agentID; self.reqID = reqID; self.checksum = checksum
    }

    /// `world_id` always; `agent_id` and `req_id` for effects of intents.
    public var sourceMetadata: JSONObject {
        var meta: JSONObject = ["world_id": .string(worldID)]
        if let agentID { meta["agent_id"] = .string(agentID.rawValue) }
        if let reqID { meta["req_id"] = .string(reqID.rawValue) }
        return meta
    }

    public var json: JSONValue {
        var o: JSONObject = ["global_seq": .number(Double(globalSeq)), "sim_time": .number(simTime), "wall_time": .number(wallTime),
                             "effect": effect.json, "source_metadata": .object(sourceMetadata), "checksum": .string(checksum)]
        if let reqID { o["req_id"] = .string(reqID.rawValue) }
        return .object(o)
    }
}
