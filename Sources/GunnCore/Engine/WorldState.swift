import GunnCrypto

/// A point in the world. 2D positions are stored with z = 0.
public struct Position: Hashable, Sendable {
    public var x: Double, y: Double, z: Double
    public init(x: Double, y: Double, z: Double = 0) { self.x = x; self.y = y; self.z = z }

    public var json: JSONValue { [.number(x), .number(y), .number(z)] }

    /// Reads `[x, y]` or `[x, y, z]` of finite numbers; nil for anything else.
    public init?(json: JSONValue) {
        guard case .array(let a) = json, a.count == 2 || a.count == 3 else { return nil }
        var c: [Double] = []
        for v in a {
            guard case .number(let d) = v, d.isFinite else { return nil }
            c.append(d)
        }
        self.init(x: c[0], y: c[1], z: c.count == 3 ? c[2] : 0)
    }

    public func distance(to other: Position) -> Double {
        let dx = x - other.x, dy = y - other.y, dz = z - other.z
        return (dx * dx + dy * dy + dz * dz).squareRoot()
    }
}

/// The shared world: entities (JSON objects keyed by id, each with an optional `pos`),
/// relationships between ids, a free-form `custom` document for custom worlds, and the simulation
/// clock. It changes only through reducers applying committed effects, and only through the
/// mutators below, which record what changed so observers can be told.
public struct WorldState: Hashable, Sendable {
    public private(set) var entities: [String: JSONObject] = [:]
    public private(set) var positions: [String: Position] = [:]
    /// `relationships[from][to] = value`.
    public private(set) var relationships: [String: [String: JSONValue]] = [:]
    public var custom: JSONValue = .object(JSONObject())
    public internal(set) var simTime: SimTime = 0
    public internal(set) var lastGlobalSeq: GlobalSeq = 0
    /// What the effect being applied changed; read and cleared by the engine after each effect.
    var changes = ChangeSet()

    struct ChangeSet: Sendable {
        var entityIDs: [String] = []
        var seen: Set<String> = []
        /// Position of each changed entity before the effect (nil: it had none).
        var oldPositions: [String: Position?] = [:]
        var relationshipPairs: [(from: String, to: String)] = []
        var isEmpty: Bool { entityIDs.isEmpty && relationshipPairs.isEmpty }
    }

    public static func == (a: WorldState, b: WorldState) -> Bool {
        a.entities == b.entities && a.relationships == b.relationships && a.custom == b.custom
            && a.simTime == b.simTime && a.lastGlobalSeq == b.lastGlobalSeq
    }

    public func hash(into h: inout Hasher) {
        h.combine(entities.count); h.combine(relationships.count); h.combine(custom); h.combine(simTime); h.combine(lastGlobalSeq)
    }

    /// Creates, replaces (`entity` non-nil) or removes (nil) an entity; its `pos`, when present and
    /// valid, indexes it. Removing an entity also removes its relationships.
    public mutating func setEntity(_ id: String, _ entity: JSONObject?) {
        noteEntity(id)
        if let entity {
            entities[id] = entity
            positions[id] = entity["pos"].flatMap(Position.init(json:))
        } else {
            entities[id] = nil
            positions[id] = nil
            if let out = relationships.removeValue(forKey: id) {
                for to in out.keys.sorted() { changes.relationshipPairs.append((id, to)) }
            }
            for from in relationships.keys.sorted() where relationships[from]?[id] != nil {
                relationships[from]![id] = nil
                if relationships[from]!.isEmpty { relationships[from] = nil }
                changes.relationshipPairs.append((from, id))
            }
        }
    }

    /// Sets (non-nil) or removes (nil) the relationship `from → to`.
    public mutating func setRelationship(from: String, to: String, _ value: JSONValue?) {
        changes.relationshipPairs.append((from, to))
        if let value {
            relationships[from, default: [:]][to] = value
        } else if relationships[from]?[to] != nil {
            relationships[from]![to] = nil
            if relationships[from]!.isEmpty { relationships[from] = nil }
        }
    }

    private mutating func noteEntity(_ id: String) {
        if changes.seen.insert(id).inserted {
            changes.entityIDs.append(id)
            changes.oldPositions[id] = .some(positions[id])
        }
    }

    mutating func takeChanges() -> ChangeSet {
        defer { changes = ChangeSet() }
        return changes
    }

    public init() {}

    /// The state as one JSON document (the snapshot form).
    public var json: JSONValue {
        var ents = JSONObject()
        for (id, e) in entities { ents[id] = .object(e) }
        var rels = JSONObject()
        for (from, targets) in relationships {
            var t = JSONObject()
            for (to, v) in targets { t[to] = v }
            rels[from] = .object(t)
        }
        return ["entities": .object(ents), "relationships": .object(rels), "custom": custom,
                "sim_time": .number(simTime), "last_global_seq": .number(Double(lastGlobalSeq))]
    }

    /// Rebuilds a state from its snapshot form.
    public init(json: JSONValue) throws(GunnError) {
        guard case .object(let ents)? = json["entities"], case .object(let rels)? = json["relationships"],
              case .number(let t)? = json["sim_time"], let seq = json["last_global_seq"]?.int64Value else {
            throw GunnError(.worldStateCorrupted, "snapshot lacks entities, relationships, sim_time or last_global_seq")
        }
        for (id, e) in ents {
            guard case .object(let o) = e else { throw GunnError(.worldStateCorrupted, "entity \(id) is not an object") }
            entities[id] = o
            if let p = o["pos"], let pos = Position(json: p) { positions[id] = pos }
        }
        for (from, targets) in rels {
            guard case .object(let o) = targets else { throw GunnError(.worldStateCorrupted, "relationships of \(from) are not an object") }
            var m: [String: JSONValue] = [:]
            for (to, v) in o { m[to] = v }
            relationships[from] = m
        }
        custom = json["custom"] ?? .object(JSONObject())
        simTime = t
        lastGlobalSeq = UInt64(seq)
    }

    /// SHA-256 of the canonical JSON of the state, lowercase hex: equal states, equal digests.
    public var digest: String { SHA256.hash(CanonicalJSON.encode(json)).hex }
}

/// What one agent sees: the entities and relationships its observation policy lets through.
public struct View: Hashable, Sendable {
    public var agentID: AgentID
    public var viewSeq: ViewSeq
    public var entities: JSONObject
    public var relationships: JSONObject
    /// SHA-256 of the canonical JSON of `json` without the digest itself.
    public var contextDigest: String
    public var schemaVersion: String = SchemaVersion.current.description

    public init(agentID: AgentID, viewSeq: ViewSeq, entities: JSONObject, relationships: JSONObject) {
        self.agentID = agentID; self.viewSeq = viewSeq; self.entities = entities; self.relationships = relationships
        self.contextDigest = SHA256.hash(CanonicalJSON.encode(View.document(entities, relationships))).hex
    }

    /// The part of the view that deltas patch: `{"entities": …, "relationships": …}`.
    public var document: JSONValue { View.document(entities, relationships) }

    static func document(_ entities: JSONObject, _ relationships: JSONObject) -> JSONValue {
        ["entities": .object(entities), "relationships": .object(relationships)]
    }

    public var json: JSONValue {
        ["agent_id": .string(agentID.rawValue), "view_seq": .number(Double(viewSeq)), "entities": .object(entities),
         "relationships": .object(relationships), "context_digest": .string(contextDigest), "schema_version": .string(schemaVersion)]
    }
}

/// How an agent's view changed: an RFC 6902 patch from its previous view (filled by the
/// observation layer).
public struct ObservationDelta: Hashable, Sendable {
    public var viewSeq: ViewSeq
    public var patches: JSONPatch
    public var contextDigest: String
    public var schemaVersion: String = SchemaVersion.current.description
    /// The last effect reflected in the view this delta produces: the view equals
    /// `filter(world after global_seq)`. A client keeps it to resume from the log after a reconnect.
    public var globalSeq: GlobalSeq = 0

    public init(viewSeq: ViewSeq, patches: JSONPatch, contextDigest: String, globalSeq: GlobalSeq = 0) {
        self.viewSeq = viewSeq; self.patches = patches; self.contextDigest = contextDigest; self.globalSeq = globalSeq
    }

    public var json: JSONValue {
        ["view_seq": .number(Double(viewSeq)), "patches": patches.json, "context_digest": .string(contextDigest),
         "schema_version": .string(schemaVersion)]
    }
}
