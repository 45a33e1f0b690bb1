/// Bodies owned by a game engine (docs/engine.md). An entity is an engine body when its `engine`
/// field names the engine that owns it; the engine bridge writes these effects:
///
/// - `BodyUpdate {engine, id, pos?, fields?, commands?}` (or `{engine, bodies: [{id, …}, …]}`, one
///   engine step's changes in one effect) creates each body or merges into it (the engine's
///   position and fields; the fields gunn keeps below are never overwritten).
/// - `EngineCommand {engine, agent_id, command, to? | data?}` is what a `Move` (or a custom intent
///   the body accepts) of an agent whose entity is a body becomes: it is pending under
///   `commands_pending["<global_seq>"]` until the engine answers.
/// - `EngineCommandResult {engine, agent_id, command_seq, status, reason?}`: the engine's answer
///   (`done`, `blocked`, `failed`). Only a pending command can be answered, once; the answer is
///   kept as `last_command`.
/// - `EngineLink {engine, state, code?, name?, reason?}`: the engine connected or was lost; while
///   lost its bodies carry `engine_link: "lost"` and their agents' commands are refused.
public enum EngineBodies {
    /// Commands pending on one body at most; a further one is refused.
    public static let maxPendingCommands = 16
    /// Fields of a body that gunn keeps and the engine's updates cannot set.
    public static let reservedFields: Set<String> = ["id", "pos", "engine", "engine_commands", "commands_pending", "last_command", "engine_link"]
    public static let statuses: Set<String> = ["done", "blocked", "failed"]

    /// What an accepted intent of `agent` becomes when its entity is an engine body: an
    /// `EngineCommand` for a `Move` or for a custom intent whose kind the body accepts; nil when
    /// the intent is not an engine command. A body whose engine is lost refuses with
    /// UNITY_CONNECTION_LOST and a retry-after.
    public static func commandContent(of intent: Intent, world: WorldState) throws(GunnError) -> (kind: String, payload: JSONValue)? {
        guard let body = world.entities[intent.agentID.rawValue], case .string(let engine)? = body["engine"] else { return nil }
        var payload: JSONObject = ["engine": .string(engine), "agent_id": .string(intent.agentID.rawValue)]
        switch intent.kind {
        case .move:
            guard let to = intent.payload["to"].flatMap(Position.init(json:)) else { return nil }
            payload["command"] = "move"
            payload["to"] = to.json
        case .custom:
            guard case .string(let kind)? = intent.payload["kind"], case .array(let accepted)? = body["engine_commands"],
                  accepted.contains(.string(kind)) else { return nil }
            payload["command"] = .string(kind)
            payload["data"] = intent.payload["data"] ?? .null
        case .speak, .interact:
            return nil
        }
        if body["engine_link"] == "lost" {
            throw GunnError(.unityConnectionLost, "the engine \(engine) that owns \(intent.agentID.rawValue)'s body is not connected", retryAfterMs: 1000)
        }
        if case .object(let pending)? = body["commands_pending"], pending.count >= maxPendingCommands {
            throw GunnError(.queueFull, "\(intent.agentID.rawValue) has \(maxPendingCommands) engine commands pending", retryAfterMs: 100)
        }
        return ("EngineCommand", .object(payload))
    }

    static func string(_ effect: Effect, _ name: String) throws(GunnError) -> String {
        guard case .string(let s)? = effect.payload[name], !s.isEmpty else { throw GunnError(.invalidIntent, "\(effect.kind) effect needs a non-empty string \"\(name)\"") }
        return s
    }

    /// The body `id` owned by `engine`; a body of another engine is refused.
    static func body(_ state: WorldState, _ id: String, engine: String, _ effect: Effect) throws(GunnError) -> JSONObject {
        guard let e = state.entities[id] else { throw GunnError(.intentValidationFailed, "\(effect.kind): no body \"\(id)\"") }
        guard e["engine"] == .string(engine) else { throw GunnError(.intentValidationFailed, "\(effect.kind): \"\(id)\" is not a body of the engine \(engine)") }
        return e
    }

    /// One body (`id`, `pos`, `fields`, `commands` in the payload) or many (`bodies`: an array of
    /// such objects, what one engine step changed). Every body is checked before any changes.
    /// Only the bridge of `engine` writes its records: an emitter with another source is refused.
    static func requireSource(_ effect: Effect, engine: String) throws(GunnError) {
        guard effect.sourceID == "engine:" + engine else {
            throw GunnError(.forbidden, "\(effect.kind) of the engine \(engine) must come from engine:\(engine), not \(effect.sourceID)")
        }
    }

    static func bodyUpdate(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let engine = try string(effect, "engine")
        try requireSource(effect, engine: engine)
        let items: [JSONValue]
        if let many = effect.payload["bodies"] {
            guard case .array(let a) = many, !a.isEmpty, a.count <= 10_000, effect.payload["id"] == nil else {
                throw GunnError(.invalidIntent, "BodyUpdate \"bodies\" must be an array of 1 to 10000 bodies (and no \"id\" beside it)")
            }
            items = a
        } else {
            items = [effect.payload]
        }
        var prepared: [(String, JSONObject)] = []
        var index: [String: Int] = [:]
        for item in items {
            guard case .string(let id)? = item["id"], !id.isEmpty else { throw GunnError(.invalidIntent, "BodyUpdate needs a non-empty string \"id\" for each body") }
            let base = index[id].map { prepared[$0].1 } ?? state.entities[id]
            let entity = try merged(base, id: id, engine: engine, item)
            if let k = index[id] { prepared[k].1 = entity } else { index[id] = prepared.count; prepared.append((id, entity)) }
        }
        for (id, entity) in prepared { state.setEntity(id, entity) }
    }

    /// `existing` with one body's update applied (nothing is changed in the world).
    static func merged(_ existing: JSONObject?, id: String, engine: String, _ item: JSONValue) throws(GunnError) -> JSONObject {
        guard AgentID(id).isValid else { throw GunnError(.invalidIntent, "body id \"\(id)\" is not a valid identifier") }
        var entity = existing ?? ["kind": "body"]
        if case .string(let owner)? = entity["engine"], owner != engine {
            throw GunnError(.intentValidationFailed, "BodyUpdate: \"\(id)\" is a body of the engine \(owner), not \(engine)")
        }
        if let p = item["pos"] {
            guard let pos = Position(json: p) else { throw GunnError(.invalidIntent, "BodyUpdate \"pos\" must be [x, y] or [x, y, z] of finite numbers") }
            entity["pos"] = pos.json
        }
        if let f = item["fields"] {
            guard case .object(let fields) = f else { throw GunnError(.invalidIntent, "BodyUpdate \"fields\" must be an object") }
            for (k, v) in fields {
                guard !reservedFields.contains(k) else { throw GunnError(.invalidIntent, "BodyUpdate cannot set the field \"\(k)\"") }
                entity[k] = v
            }
        }
        if let c = item["commands"] {
            guard case .array(let kinds) = c, kinds.count <= 64, kinds.allSatisfy({ if case .string(let k) = $0 { return !k.isEmpty && k.utf8.count <= 64 } else { return false } }) else {
                throw GunnError(.invalidIntent, "BodyUpdate \"commands\" must be at most 64 command names")
            }
            entity["engine_commands"] = c
        }
        entity["engine"] = .string(engine)
        entity["id"] = .string(id)
        return entity
    }

    static func command(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let engine = try string(effect, "engine"), id = try string(effect, "agent_id"), command = try string(effect, "command")
        // A command is what an agent's own intent became, never an emitted effect.
        guard effect.sourceID == id else { throw GunnError(.forbidden, "an EngineCommand comes from its agent's intent, not from \(effect.sourceID)") }
        var entity = try body(state, id, engine: engine, effect)
        var pending: JSONObject
        if case .object(let p)? = entity["commands_pending"] { pending = p } else { pending = JSONObject() }
        guard pending.count < maxPendingCommands else { throw GunnError(.queueFull, "\(id) has \(maxPendingCommands) engine commands pending") }
        var held: JSONObject = ["command": .string(command)]
        if command == "move" {
            guard let to = effect.payload["to"].flatMap(Position.init(json:)) else { throw GunnError(.invalidIntent, "EngineCommand move needs \"to\"") }
            held["to"] = to.json
        } else {
            held["data"] = effect.payload["data"] ?? .null
        }
        pending[String(effect.globalSeq)] = .object(held)
        entity["commands_pending"] = .object(pending)
        state.setEntity(id, entity)
    }

    static func commandResult(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let engine = try string(effect, "engine"), id = try string(effect, "agent_id"), status = try string(effect, "status")
        try requireSource(effect, engine: engine)
        guard statuses.contains(status) else { throw GunnError(.invalidIntent, "EngineCommandResult \"status\" must be done, blocked or failed") }
        guard case .number(let n)? = effect.payload["command_seq"], n >= 1, n == n.rounded(), n < 9.007e15 else {
            throw GunnError(.invalidIntent, "EngineCommandResult needs a whole number \"command_seq\"")
        }
        var entity = try body(state, id, engine: engine, effect)
        let key = String(UInt64(n))
        guard case .object(var pending)? = entity["commands_pending"], case .object(let held)? = pending[key] else {
            throw GunnError(.unknownCommand, "\(id) has no pending engine command \(key)")
        }
        pending[key] = nil
        entity["commands_pending"] = pending.isEmpty ? nil : .object(pending)
        var last: JSONObject = ["seq": .number(n), "command": held["command"] ?? .null, "status": .string(status)]
        if case .string(let reason)? = effect.payload["reason"] { last["reason"] = .string(reason) }
        entity["last_command"] = .object(last)
        state.setEntity(id, entity)
    }

    static func link(_ state: inout WorldState, _ effect: Effect) throws(GunnError) {
        let engine = try string(effect, "engine"), link = try string(effect, "state")
        try requireSource(effect, engine: engine)
        guard link == "connected" || link == "lost" else { throw GunnError(.invalidIntent, "EngineLink \"state\" must be connected or lost") }
        for id in state.entities.keys.sorted() {
            guard var e = state.entities[id], e["engine"] == .string(engine) else { continue }
            let lost = e["engine_link"] == "lost"
            if link == "lost" && !lost { e["engine_link"] = "lost"; state.setEntity(id, e) }
            if link == "connected" && lost { e["engine_link"] = nil; state.setEntity(id, e) }
        }
    }
}
