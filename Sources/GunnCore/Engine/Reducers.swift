/// Applies one committed effect to the world. A reducer checks everything before it changes
/// anything, so a thrown error leaves the state as it was.
public typealias Reducer = @Sendable (inout WorldState, Effect) throws(GunnError) -> Void

/// The built-in effect kinds and any custom ones registered by a world. An effect whose kind has
/// no reducer is refused with UNKNOWN_EFFECT_KIND, never silently ignored.
public struct ReducerRegistry: Sendable {
    public static let builtInKinds: [String] = [
        "Move", "Speak", "Interact", "EntityUpsert", "EntityRemove", "RelationshipSet", "RelationshipRemove",
        "TimeTick", "Collision", "JSONPatch", "GenerationCancelled", "AgentQuarantined", "AgentReleased",
        "BodyUpdate", "EngineCommand", "EngineCommandResult", "EngineLink",
    ]

    private var custom: [String: Reducer] = [:]

    public init() {}

    /// Registers a reducer for a new kind. Built-in kinds cannot be replaced.
    public mutating func register(kind: String, _ reducer: @escaping Reducer) throws(GunnError) {
        guard !ReducerRegistry.builtInKinds.contains(kind) else { throw GunnError(.invalidIntent, "effect kind \(kind) is built in and cannot be replaced") }
        guard !kind.isEmpty, kind.utf8.count <= 64 else { throw GunnError(.invalidIntent, "effect kind must be 1 to 64 bytes") }
        custom[kind] = reducer
    }

    public func knows(_ kind: String) -> Bool { ReducerRegistry.builtInKinds.contains(kind) || custom[kind] != nil }

    public func apply(_ effect: Effect, to state: inout WorldState) throws(GunnError) {
        switch effect.kind {
        case "Move": try Self.move(&state, effect)
        case "Speak": try Self.speak(&state, effect)
        case "Interact": try Self.interact(&state, effect)
        case "EntityUpsert": try Self.entityUpsert(&state, effect)
        case "EntityRemove": try Self.entityRemove(&state, effect)
        case "RelationshipSet": try Self.relationshipSet(&state, effect)
        case "RelationshipRemove": try Self.relationshipRemove(&state, effect)
        case "TimeTick": try Self.timeTick(&state, effect)
        case "Collision": try Self.collision(&state, effect)
        case "JSONPatch": try Self.jsonPatch(&state, effect)
        case "GenerationCancelled": try Self.generationCancelled(effect)
        case "AgentQuarantined", "AgentReleased": try Self.quarantineRecord(effect)
        case "BodyUpdate": try EngineBodies.bodyUpdate(&state, effect)
        case "EngineCommand": try EngineBodies.command(&state, effect)
        case "EngineCommandResult": try EngineBodies.commandResult(&state, effect)
        case "EngineLink": try EngineBodies.link(&state, effect)
        default:
            guard let reducer = custom[effect.kind] else {
                throw GunnError(.unknownEffectKind, "no reducer for effect kind \"\(effect.kind)\"")
            }
            try reducer(&state, effect)
        }
        state.lastGlobalSeq = effect.globalSeq
        if effect.simTime > state.simTime { state.simTime = effect.simTime }
    }

    static func string(_ effect: Effect, _ name: String) throws(GunnError) -> String {
        guard case .string(let s)? = effect.payload[name] else {
            throw GunnError(.invalidIntent, "\(effect.kind) effect needs a string \"\(name)\"")
        }
        return s
    }

    static func existing(_ state: WorldState, _ id: String, _ effect: Effect) throws(GunnError) -> JSONObject {
        guard let e = state.entities[id] else { throw GunnError(.intentValidationFailed, "\(effect.kind): no entity \"\(id)\"") }
        return e
    }

    static func move(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let id = try string(effect, "agent_id")
        var entity = try existing(state, id, effect)
        guard let to = effect.payload["to"], let pos = Position(json: to) else {
            throw GunnError(.invalidIntent, "Move effect needs \"to\": [x, y] or [x, y, z] of finite numbers")
        }
        entity["pos"] = pos.json
        state.setEntity(id, entity)
    }

    static func speak(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let id = try string(effect, "agent_id")
        let text = try string(effect, "text")
        // Speech is an event first; it is also remembered on the speaker when it is an entity.
        if var entity = state.entities[id] {
            entity["last_speech"] = ["text": .string(text), "global_seq": .number(Double(effect.globalSeq))]
            state.setEntity(id, entity)
        }
    }

    /// A record, not a change: a generation was halted (`reason`, `tokens_discarded`). The world
    /// is untouched, so no view changes and nothing is interrupted by it.
    /// A record only (the world does not change): the web adapter quarantined an agent after
    /// repeated refusals of its token, or an operator released it (gunnctl token release).
    static func quarantineRecord(_ effect: Effect) throws(GunnError) {
        _ = try string(effect, "agent_id")
        _ = try string(effect, "reason")
    }

    static func generationCancelled(_ effect: Effect) throws(GunnError) {
        _ = try string(effect, "agent_id")
        _ = try string(effect, "req_id")
        _ = try string(effect, "reason")
        guard case .number(let n)? = effect.payload["tokens_discarded"], n >= 0, n == n.rounded() else {
            throw GunnError(.invalidIntent, "GenerationCancelled effect needs a whole number \"tokens_discarded\"")
        }
    }

    static func interact(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let id = try string(effect, "agent_id")
        let target = try string(effect, "target")
        var entity = try existing(state, target, effect)
        entity["last_interaction"] = ["by": .string(id), "action": effect.payload["action"] ?? .null,
                                      "global_seq": .number(Double(effect.globalSeq))]
        state.setEntity(target, entity)
    }

    static func entityUpsert(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let id = try string(effect, "id")
        guard AgentID(id).isValid else { throw GunnError(.invalidIntent, "entity id \"\(id)\" is not a valid identifier") }
        guard case .object(var entity)? = effect.payload["entity"] else { throw GunnError(.invalidIntent, "EntityUpsert needs an object \"entity\"") }
        if let p = entity["pos"] {
            guard let parsed = Position(json: p) else { throw GunnError(.invalidIntent, "entity \"pos\" must be [x, y] or [x, y, z] of finite numbers") }
            entity["pos"] = parsed.json
        }
        entity["id"] = .string(id)
        state.setEntity(id, entity)
    }

    static func entityRemove(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let id = try string(effect, "id")
        _ = try existing(state, id, effect)
        state.setEntity(id, nil)
    }

    static func relationshipSet(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let from = try string(effect, "from"), to = try string(effect, "to")
        state.setRelationship(from: from, to: to, effect.payload["value"] ?? .bool(true))
    }

    static func relationshipRemove(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let from = try string(effect, "from"), to = try string(effect, "to")
        guard state.relationships[from]?[to] != nil else { throw GunnError(.intentValidationFailed, "no relationship \(from) -> \(to) to remove") }
        state.setRelationship(from: from, to: to, nil)
    }

    static func timeTick(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        guard case .number(let t)? = effect.payload["sim_time"], t.isFinite else { throw GunnError(.invalidIntent, "TimeTick needs a finite \"sim_time\"") }
        if t > state.simTime { state.simTime = t }
    }

    static func collision(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let a = try string(effect, "a"), b = try string(effect, "b")
        var ea = try existing(state, a, effect)
        var eb = try existing(state, b, effect)
        ea["last_collision"] = ["with": .string(b), "global_seq": .number(Double(effect.globalSeq))]
        eb["last_collision"] = ["with": .string(a), "global_seq": .number(Double(effect.globalSeq))]
        state.setEntity(a, ea)
        state.setEntity(b, eb)
    }

    static func jsonPatch(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        guard let p = effect.payload["patch"] else { throw GunnError(.invalidIntent, "JSONPatch effect needs \"patch\"") }
        do {
            let patch = try JSONPatch(json: p)
            state.custom = try patch.apply(to: state.custom)
        } catch {
            throw GunnError(.intentValidationFailed, "JSONPatch effect: \(error)")
        }
    }
}
