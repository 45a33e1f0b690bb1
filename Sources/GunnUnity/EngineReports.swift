import GunnAuth
import GunnClient
import GunnCore

/// What an engine reports (ticks, bodies, removals, contacts, command results), as effects.
extension EngineBridge {
    /// Bodies of one BodyUpdate at most (the reducer's bound).
    static let maxBodiesPerUpdate = 10_000
    /// Error frames answered per refused frame at most.
    static let maxErrorsPerFrame = 8

    func source(_ engine: String) -> String { "engine:" + engine }

    /// A step's key among the drafts of one quantum: zero-padded, so step 10 sorts after step 9.
    static func stepID(_ engine: String, _ n: UInt64, _ part: String) -> String {
        let digits = String(n)
        return "\(engine):\(String(repeating: "0", count: max(0, 20 - digits.count)) + digits):\(part)"
    }

    /// Sends drafts in one write, in order, and returns their tickets without waiting.
    func post(_ drafts: [EffectDraft]) async -> Result<[GunnClient.EmitTicket], GunnError> {
        do { return .success(try await client.sendEmits(drafts)) } catch {
            return .failure(GunnError(.adapterUnavailable, "the orchestrator did not take the effects: \(error)"))
        }
    }

    /// Emits drafts (in order, one write) and waits for their answers; returns the refusals.
    func emitAll(_ drafts: [EffectDraft]) async -> [GunnError] {
        switch await post(drafts) {
        case .failure(let e): return [e]
        case .success(let tickets):
            var out: [GunnError] = []
            for t in tickets { if let e = await t.result() { out.append(e) } }
            return out
        }
    }

    /// One body of a tick or a `bodies` frame, checked as the reducer will check it, so one bad
    /// body is refused alone and does not take its step's other bodies with it.
    func bodyItem(_ b: JSONValue, engine: String, claims: TokenClaims?, world: JSONObject) throws(GunnError) -> JSONValue {
        guard case .string(let id)? = b["id"], AgentID(id).isValid else { throw GunnError(.invalidField, "a body needs a valid id") }
        if let claims, !claims.covers(agent: id) {
            throw GunnError(.forbidden, "body \(id): the engine's token \(claims.id) does not cover it")
        }
        if case .string(let owner)? = world[id]?["engine"], owner != engine {
            throw GunnError(.invalidField, "body \(id) belongs to the engine \(owner)")
        }
        var item: JSONObject = ["id": .string(id)]
        if let p = b["pos"] {
            guard Position(json: p) != nil else { throw GunnError(.invalidField, "body \(id): pos must be [x, y] or [x, y, z]") }
            item["pos"] = p
        }
        if let f = b["fields"] {
            if case .object(let o) = f, let bad = o.sortedKeys.first(where: { EngineBodies.reservedFields.contains($0) }) {
                throw GunnError(.invalidField, "body \(id): the field \(bad) is kept by gunn")
            }
            item["fields"] = f
        }
        if let c = b["commands"] {
            guard case .array(let kinds) = c, kinds.count <= 64,
                  kinds.allSatisfy({ if case .string(let k) = $0 { return !k.isEmpty && k.utf8.count <= 64 } else { return false } }) else {
                throw GunnError(.invalidField, "body \(id): commands must be at most 64 names of 1 to 64 bytes")
            }
            item["commands"] = c
        }
        return .object(item)
    }

    /// The changed bodies of one step as one BodyUpdate (one effect, one observation per agent),
    /// and their ids (forgotten again if the update is refused, so the next report is sent).
    func bodiesDraft(_ session: EngineSession, _ bodies: JSONValue?, simTime: Double?, id: String, world: JSONObject,
                     errors: inout [GunnError], fresh: inout Set<String>) -> (EffectDraft, [String])? {
        guard case .array(let list)? = bodies else { return nil }
        guard list.count <= Self.maxBodiesPerUpdate else {
            errors.append(GunnError(.invalidField, "\(list.count) bodies in one step; at most \(Self.maxBodiesPerUpdate)"))
            return nil
        }
        let engine = session.engineName, claims = session.claims
        var items: [JSONValue] = []
        var ids: [String] = []
        for b in list {
            do {
                let item = try bodyItem(b, engine: engine, claims: claims, world: world)
                guard try session.changed(item) else { continue }
                items.append(item)
                if let id = item["id"]?.stringValue { fresh.insert(id); ids.append(id) }
            } catch { errors.append(error) }
        }
        guard !items.isEmpty else { return nil }
        let draft = EffectDraft(kind: "BodyUpdate", payload: ["engine": .string(engine), "bodies": .array(items)],
                                sourceID: source(engine), priority: 2, simTime: simTime, draftID: id)
        return (draft, ids)
    }

    func contactDraft(_ engine: String, _ c: JSONValue, known: (String) -> Bool, simTime: Double?, id: String) throws(GunnError) -> EffectDraft {
        guard case .string(let a)? = c["a"], case .string(let b)? = c["b"] else { throw GunnError(.invalidField, "a contact needs a and b") }
        for x in [a, b] where !known(x) { throw GunnError(.invalidField, "the contact names \(x), which is not a body or entity of this world") }
        var payload: JSONObject = ["a": .string(a), "b": .string(b), "engine": .string(engine)]
        if let at = c["at"] { payload["at"] = at }
        if let i = c["impulse"] { payload["impulse"] = i }
        return EffectDraft(kind: "Collision", payload: .object(payload), sourceID: source(engine), priority: 1, simTime: simTime, draftID: id)
    }

    /// Takes up to `n` contacts from the shared bucket.
    func takeContacts(_ n: Int) -> Int {
        let t = now()
        return state.withLock { s in
            let rate = config.contactsPerSecond
            s.bucket.tokens = s.bucket.at == 0 ? rate : min(rate, s.bucket.tokens + (t - s.bucket.at) * rate)
            s.bucket.at = t
            let k = min(n, Int(s.bucket.tokens))
            s.bucket.tokens -= Double(k)
            return k
        }
    }

    func tick(_ session: EngineSession, _ t: JSONValue) async {
        let engine = session.engineName
        let tick = UInt64(t["tick"]?.numberValue ?? 0)
        // The engine's clock orders its effects only when it is the world's clock.
        let sim: Double? = config.engineTime ? (t["sim_time"]?.numberValue ?? 0) : nil
        var drafts: [EffectDraft] = []
        var errors: [GunnError] = []
        let world = entities()
        var fresh = Set<String>()
        var bodyIDs: [String] = []
        if let (d, ids) = bodiesDraft(session, t["bodies"], simTime: sim, id: Self.stepID(engine, tick, "b"), world: world, errors: &errors, fresh: &fresh) {
            drafts.append(d)
            bodyIDs = ids
        }
        if case .array(let contacts)? = t["contacts"], !contacts.isEmpty {
            let allowed = takeContacts(contacts.count)
            if allowed < contacts.count {
                state.withLock { $0.links[engine]?.contactsDropped += contacts.count - allowed }
                errors.append(GunnError(.quotaExceeded, "\(contacts.count - allowed) contacts of tick \(tick) dropped: past \(Int(config.contactsPerSecond)) contacts/s",
                                        retryAfterMs: 1000))
            }
            for (i, c) in contacts.prefix(allowed).enumerated() {
                do {
                    drafts.append(try contactDraft(engine, c, known: { world[$0] != nil || fresh.contains($0) || session.reported($0) }, simTime: sim,
                                                   id: Self.stepID(engine, tick, "c\(i)")))
                } catch { errors.append(error) }
            }
        }
        drafts.append(EffectDraft(kind: "TimeTick", payload: ["sim_time": .number(t["sim_time"]?.numberValue ?? 0), "tick": .number(Double(tick)),
                                                             "engine": .string(engine)],
                                  sourceID: source(engine), priority: 0, simTime: sim, draftID: Self.stepID(engine, tick, "t")))
        // The next frame is handled as soon as this tick's effects are written: an engine steps
        // faster than one round trip to the orchestrator. At most `maxTicksInFlight` wait for
        // their answers; past that this waits (and the engine's frames queue behind it).
        guard await session.tickSlot() else { return }
        let posted = await post(drafts)
        state.withLock { $0.links[engine]?.ticks += 1 }
        let early = errors
        let sentBodies = bodyIDs
        session.ackInOrder { [self] in
            var errors = early
            switch posted {
            case .failure(let e):
                errors.append(e)
                session.forget(sentBodies)
            case .success(let tickets):
                for (k, ticket) in tickets.enumerated() {
                    guard let e = await ticket.result() else { continue }
                    errors.append(e)
                    if k == 0 && !sentBodies.isEmpty { session.forget(sentBodies) }
                }
            }
            session.tickDone()
            for e in errors.prefix(Self.maxErrorsPerFrame) { session.sendError(e, ref: tick) }
            // Commands the observer's view holds go out before the ack (lock-step: the engine's
            // next step sees them); only this session's engine is looked at.
            if session.stage == EngineSession.Stage.running {
                session.sendPending(Self.pendingCommands(entities(), engine: engine), head: headSeq)
            }
            session.send(["tick_ack": ["tick": .number(Double(tick)), "global_seq": .number(Double(headSeq))]])
        }
    }

    func bodies(_ session: EngineSession, _ batch: JSONValue) async {
        var errors: [GunnError] = []
        var fresh = Set<String>()
        let id = Self.stepID(session.engineName, session.nextFrameNumber(), "f")
        if let (draft, ids) = bodiesDraft(session, batch["bodies"], simTime: nil, id: id, world: entities(), errors: &errors, fresh: &fresh) {
            let refused = await emitAll([draft])
            if !refused.isEmpty { session.forget(ids) }
            errors += refused
        }
        for e in errors.prefix(Self.maxErrorsPerFrame) { session.sendError(e, ref: 0) }
    }

    func remove(_ session: EngineSession, _ r: JSONValue) async {
        let engine = session.engineName
        let world = entities()
        var drafts: [EffectDraft] = []
        var ids: [String] = []
        if case .array(let list)? = r["ids"] {
            for v in list {
                guard let id = v.stringValue, world[id]?["engine"] == .string(engine) || session.reported(id) else {
                    session.sendError(GunnError(.invalidField, "body_remove names \(v.stringValue ?? "?"), which is not a body of the engine \(engine)"), ref: 0)
                    continue
                }
                drafts.append(EffectDraft(kind: "EntityRemove", payload: ["id": .string(id)], sourceID: source(engine)))
                ids.append(id)
            }
        }
        session.forget(ids)
        for e in await emitAll(drafts) { session.sendError(e, ref: 0) }
    }

    func contact(_ session: EngineSession, _ c: JSONValue) async {
        let engine = session.engineName
        guard takeContacts(1) == 1 else {
            state.withLock { $0.links[engine]?.contactsDropped += 1 }
            return
        }
        let world = entities()
        do {
            let d = try contactDraft(engine, c, known: { world[$0] != nil || session.reported($0) }, simTime: nil, id: Self.stepID(engine, session.nextFrameNumber(), "k"))
            for e in await emitAll([d]) { session.sendError(e, ref: 0) }
        } catch { session.sendError(error, ref: 0) }
    }

    /// The engine's answer to a command: recorded once when it is pending on this engine's body.
    @discardableResult
    func commandResult(_ session: EngineSession, _ r: JSONValue, pending: [Pending]? = nil) async -> Bool {
        let engine = session.engineName
        guard let n = r["command_seq"]?.numberValue, n >= 1 else {
            session.sendError(GunnError(.invalidField, "command_result needs a command_seq"), ref: 0)
            return false
        }
        let seq = UInt64(n)
        let status = r["status"]?.stringValue ?? ""
        guard EngineBodies.statuses.contains(status) else {
            session.sendError(GunnError(.invalidField, "command_result status must be done, blocked or failed, not \"\(status)\""), ref: seq)
            return false
        }
        let list = pending ?? Self.pendingCommands(entities(), engine: engine)
        guard let c = list.first(where: { $0.seq == seq }) else {
            session.sendError(GunnError(.unknownCommand, "no command \(seq) is pending on a body of the engine \(engine)"), ref: seq)
            return false
        }
        var payload: JSONObject = ["engine": .string(engine), "agent_id": .string(c.body), "command_seq": .number(n), "status": .string(status)]
        if case .string(let reason)? = r["reason"], !reason.isEmpty { payload["reason"] = .string(String(reason.prefix(256))) }
        // Marked before the answer goes out, so no pump sends the command again meanwhile.
        session.answered(seq)
        let draft = EffectDraft(kind: "EngineCommandResult", payload: .object(payload), sourceID: source(engine), draftID: "\(engine):r\(seq)")
        if let error = await emitAll([draft]).first {
            session.sendError(error, ref: seq)
            return false
        }
        state.withLock { $0.links[engine]?.commandsAnswered += 1 }
        return true
    }
}
