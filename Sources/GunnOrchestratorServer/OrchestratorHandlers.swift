import GunnCore
import GunnWire

/// One function per message kind, behind three shared steps: `work(for:)` parses a frame once,
/// `process` runs its input through the engine (ownership checked first), and `answer` replies
/// once the batch is durable. `publish` carries out what the engine's outputs ask for.
extension OrchestratorCore {
    // MARK: Parsing (before the queue)

    /// `maxPayloadBytes` (the engine's limit for intent payloads) bounds a registration entity and a
    /// draft payload too, so one request can never make an effect the log writer refuses.
    static func work(for frame: Frame, maxPayloadBytes: Int) -> Work {
        let body = frame.bodyFieldNumber ?? 0
        guard let b = frame.body else {
            return .refused(GunnError(.unknownMessage, "the orchestrator does not know frame body \(body)"), body: body)
        }
        do {
            switch b {
            case .registerAgent(let r):
                let reg = try WireJSON.registration(try parse(r.registration))
                guard r.resumeViewSeq <= 1 << 53, r.resumeGlobalSeq <= 1 << 53 else {
                    throw GunnError(.invalidField, "RegisterAgent.resume_view_seq and resume_global_seq must be at most 2^53")
                }
                guard CanonicalJSON.encode(.object(reg.entityFields)).count <= maxPayloadBytes else {
                    throw GunnError(.payloadTooLarge, "registration field \"entity\" is over \(maxPayloadBytes) bytes")
                }
                guard r.agentID.isEmpty || r.agentID == reg.agentID.rawValue else {
                    throw GunnError(.invalidField, "RegisterAgent.agent_id \"\(r.agentID)\" differs from the registration's \"\(reg.agentID)\"")
                }
                return .register(reg, r)
            case .submitIntent(let p): return .submit(try Intent(json: try parse(p.json)))
            case .emit(let p):
                let draft = try WireJSON.draft(try parse(p.json))
                guard CanonicalJSON.encode(draft.payload).count <= maxPayloadBytes else {
                    throw GunnError(.payloadTooLarge, "effect draft payload is over \(maxPayloadBytes) bytes")
                }
                return .emit(draft)
            case .beginGeneration(let g):
                guard !g.reqID.isEmpty, g.reqID.utf8.count <= 256 else {
                    throw GunnError(.invalidField, "BeginGeneration.req_id must be 1 to 256 bytes")
                }
                guard g.focus.count <= 64 else { throw GunnError(.invalidField, "BeginGeneration.focus has \(g.focus.count) entries, over 64") }
                return .begin(GenerationRequest(agentID: AgentID(g.agentID), reqID: ReqID(g.reqID),
                                                deadlineMs: g.deadlineMs == 0 ? nil : Double(g.deadlineMs),
                                                tokenBudget: g.tokenBudget == 0 ? nil : Int(g.tokenBudget), focus: g.focus))
            case .progress(let p): return .progress(p)
            case .halted(let h): return .halted(h)
            case .tokenChunk(let t): return .relay(t)
            case .view(let v): return .view(AgentID(v.agentID))
            case .status: return .status
            case .head: return .head
            default:
                throw GunnError(.unknownMessage, "the orchestrator does not serve frame body \(body)")
            }
        } catch let e as GunnError {
            return .refused(e, body: body)
        } catch {
            return .refused(GunnError(.internalError, "\(error)"), body: body)
        }
    }

    static func parse(_ bytes: [UInt8]) throws(GunnError) -> JSONValue {
        do { return try JSONParser.parse(bytes) } catch { throw error.gunnError }
    }

    // MARK: Processing (inside a batch)

    /// Why `conn` may not act for `agent`, or nil when it may (it registered the agent).
    func forbidden(_ agent: AgentID, _ conn: ConnID?, _ what: String) -> GunnError? {
        guard engine.registration(of: agent) != nil else { return nil } // unknown: the engine says INVALID_AGENT_ID
        if let owner = owners[agent], owner == conn { return nil }
        return GunnError(.forbidden, owners[agent] == nil
            ? "agent \(agent)'s connection is gone; register it again before it may \(what)"
            : "this connection did not register agent \(agent); it may not \(what)")
    }

    mutating func process(_ item: inout Item) {
        guard item.refusal == nil else { return }
        switch item.work {
        case let .register(reg, _):
            if let owner = owners[reg.agentID], owner != item.conn {
                item.refusal = GunnError(.forbidden, "agent \(reg.agentID) is registered by another connection, which is still open")
                return
            }
            item.outputs = engine.handle(.registerAgent(reg), at: now)
            if item.outputs.contains(.agentRegistered(reg.agentID)), let c = item.conn { owners[reg.agentID] = c }
        case .submit(let intent):
            // Operators (gunnctl submit, role ctl) may submit for any agent until tokens carry
            // permissions; the intent still passes every check of the engine.
            let operatorConn = item.conn.flatMap { sessions[$0]?.role } == "ctl"
            if !operatorConn, let e = forbidden(intent.agentID, item.conn, "submit its intents") { item.refusal = e; return }
            guard waiterCount < settings.maxWaiters else {
                item.refusal = GunnError(.queueFull, "\(settings.maxWaiters) intents already wait for their outcome",
                                         retryAfterMs: settings.retryAfterMs)
                return
            }
            if let c = item.conn {
                waiters[WaiterKey(agent: intent.agentID, req: intent.reqID), default: []].append((c, item.frameID))
                waiterCount += 1
                waiterHighWater = max(waiterHighWater, waiterCount)
            }
            item.outputs = engine.handle(.submitIntent(intent), at: now)
        case .emit(let draft):
            item.outputs = engine.handle(.emit(draft), at: now)
        case .begin(let g):
            if let e = forbidden(g.agentID, item.conn, "begin its generations") { item.refusal = e; return }
            item.outputs = engine.handle(.beginGeneration(g), at: now)
        case .progress(let p):
            if let e = forbidden(AgentID(p.agentID), item.conn, "report its generations' progress") { item.refusal = e; return }
            item.outputs = engine.handle(.generationProgress(AgentID(p.agentID), ReqID(p.reqID), tokensEmitted: Int(p.tokensEmitted)), at: now)
        case .halted(let h):
            // The worker stopped (finished or halted): the generation's token is retired; after a
            // Cancel the engine logs the cancellation with the tokens discarded.
            let agent = h.agentID.isEmpty ? owners.filter({ $0.value == item.conn }).map(\.key).min() : AgentID(h.agentID)
            guard let agent, engine.registration(of: agent) != nil, owners[agent] == item.conn else {
                item.refusal = GunnError(.forbidden, "this connection did not register agent \(h.agentID); it may not end its generations")
                return
            }
            relayed[GenerationKey(agent: agent, req: h.reqID)] = nil
            let input = EngineInput.generationHalted(agent, ReqID(h.reqID), tokensEmitted: Int(h.tokensEmitted), haltLatencyUs: h.haltLatencyUs)
            item.outputs = engine.handle(input, at: now)
        case .closed:
            guard let conn = item.conn else { return }
            sessions[conn] = nil
            spectators.remove(conn)
            // Its agents' generations will never be reported halted: the live ones are cancelled
            // (worker_lost) and every cancellation is logged with the tokens that were relayed.
            for agent in owners.filter({ $0.value == conn }).map(\.key).sorted() { // sorted: the records' order in the log
                owners[agent] = nil
                var counts: [ReqID: Int] = [:]
                for req in engine.activeGenerations(of: agent).map(\.reqID) + engine.cancelledAwaitingHalt(of: agent) {
                    counts[req] = relayed.removeValue(forKey: GenerationKey(agent: agent, req: req.rawValue)) ?? 0
                }
                if !counts.isEmpty { item.outputs += engine.handle(.workerLost(agent, relayed: counts), at: now) }
                relayed = relayed.filter { $0.key.agent != agent }
            }
        case .flush:
            item.outputs = engine.handle(.flush, at: now)
        case .relay, .view, .status, .head, .refused:
            break // answered from the durable state at completion
        }
    }

    // MARK: Answering (the batch is durable)

    mutating func refuse(_ conn: ConnID?, _ id: UInt64, _ error: GunnError) {
        send(conn, [Frame(id: id, .error(WireJSON.error(error)))])
    }

    mutating func send(_ conn: ConnID?, _ frames: [Frame]) {
        guard let conn, !frames.isEmpty else { return }
        actions.append(.send(conn, frames))
    }

    mutating func answer(_ item: Item) {
        let id = item.frameID
        if let e = item.refusal {
            switch item.work {
            case .submit(let intent):
                var r = IntentResult()
                r.agentID = intent.agentID.rawValue; r.reqID = intent.reqID.rawValue; r.error = WireJSON.error(e)
                send(item.conn, [Frame(id: id, .intentResult(r))])
            case .refused(_, body: 20):
                // A SubmitIntent that could not be read: the same reply form as any other refusal.
                var r = IntentResult()
                r.error = WireJSON.error(e)
                send(item.conn, [Frame(id: id, .intentResult(r))])
            case .emit(let d):
                var r = EmitResult()
                r.draftID = d.draftID ?? ""; r.error = WireJSON.error(e)
                send(item.conn, [Frame(id: id, .emitResult(r))])
            case .refused(_, body: 22):
                var r = EmitResult()
                r.error = WireJSON.error(e)
                send(item.conn, [Frame(id: id, .emitResult(r))])
            case .closed, .flush:
                break
            default:
                send(item.conn, [Frame(id: id, .error(WireJSON.error(e)))])
            }
            return
        }
        switch item.work {
        case let .register(reg, request): registered(reg.agentID, request, item.outputs, conn: item.conn, id: id)
        case .submit(let intent):
            // Decided by this input (quantum 0): answered here, in the order the frames came.
            // Otherwise the outcome is published to the waiters when its quantum closes.
            for o in item.outputs {
                switch o {
                case let .intentCommitted(agent, req, _), let .intentRejected(agent, req, _):
                    if agent == intent.agentID && req == intent.reqID { replyOutcome(o, canonical: Self.canonicalBytes(item.outputs)) }
                default: break
                }
            }
        case .emit(let d):
            var r = EmitResult()
            r.draftID = d.draftID ?? ""
            let refusal = item.outputs.lazy.compactMap { o -> GunnError? in if case let .emitRejected(_, _, e) = o { return e } else { return nil } }
            if let e = refusal.first {
                r.error = WireJSON.error(e)
            } else {
                r.accepted = true
            }
            send(item.conn, [Frame(id: id, .emitResult(r))])
        case .begin:
            for o in item.outputs {
                if case .cancelTokenIssued(let t) = o {
                    var m = CancelTokenMessage()
                    m.agentID = t.agentID.rawValue; m.reqID = t.reqID.rawValue; m.contextSeq = t.contextSeq; m.contextDigest = t.contextDigest
                    send(item.conn, [Frame(id: id, .cancelToken(m))])
                } else if case .generationRefused(_, _, let e) = o {
                    send(item.conn, [Frame(id: id, .error(WireJSON.error(e)))])
                }
            }
        case .relay(let t): relay(t, from: item.conn, id: id)
        case .view(let agent): answerView(agent, conn: item.conn, id: id)
        case .status: answerStatus(item, durable: true)
        case .head:
            var h = HeadResult()
            h.seq = engine.headSeq; h.checksum = engine.log.headChecksum ?? ""; h.count = UInt64(engine.log.entries.count)
            send(item.conn, [Frame(id: id, .headResult(h))])
        case .progress, .halted, .closed, .flush, .refused:
            break
        }
        // Refusals no request waits for (a draft refused when its quantum closed) are logged.
        if case .emit = item.work { return }
        for o in item.outputs {
            if case let .emitRejected(source, draft, e) = o {
                actions.append(.log("\(e.code.name) (\(e.code.code)): draft \(draft ?? "-") of \(source) refused: \(e.message)"))
            }
        }
    }

    /// The registration's reply followed by the agent's view: one delta from the view the client
    /// already holds when it asked to resume and the log still holds what is needed to rebuild
    /// that view, else the whole view.
    mutating func registered(_ agent: AgentID, _ request: RegisterAgent, _ out: [EngineOutput], conn: ConnID?, id: UInt64) {
        for o in out {
            if case .registrationRejected(_, let e) = o { return send(conn, [Frame(id: id, .error(WireJSON.error(e)))]) }
        }
        if let r = engine.registration(of: agent) {
            // Answered once durable: a batch formed ahead keeps it until then.
            if holding != nil { holding!.heldRegistrations.append((agent, r, conn)) } else { answeredRegistrations[agent] = (r, conn) }
        }
        var ok = ControlResult()
        ok.ok = true
        ok.message = "registered \(agent)"
        var frames = [Frame(id: id, .controlResult(ok))]
        let past = pastWorlds.last { $0.seq == request.resumeGlobalSeq }?.world
        if !request.resumeDigest.isEmpty,
           let d = engine.resume(agent, fromGlobalSeq: request.resumeGlobalSeq, digest: request.resumeDigest, heldViewSeq: request.resumeViewSeq,
                                 past: request.resumeGlobalSeq < engine.windowStart ? past : nil) {
            resumedWithDelta += 1
            if request.resumeGlobalSeq < engine.windowStart { resumedFromLog += 1 }
            frames.append(Frame(id: id, .observation(Self.observation(agent, d))))
        } else if let view = engine.resync(agent, heldViewSeq: request.resumeViewSeq) {
            var v = ViewSnapshot()
            v.agentID = agent.rawValue; v.viewSeq = view.viewSeq; v.view = CanonicalJSON.encode(view.document); v.contextDigest = view.contextDigest
            v.globalSeq = engine.world.lastGlobalSeq
            frames.append(Frame(id: id, .view(v)))
        }
        send(conn, frames)
    }

    /// A view request: filter(world) computed afresh, at the agent's current view_seq. The owner
    /// and operator tools (role ctl or supervisor) may read it.
    mutating func answerView(_ agent: AgentID, conn: ConnID?, id: UInt64) {
        guard let doc = engine.filteredView(of: agent), let seq = engine.viewSeq(of: agent) else {
            return send(conn, [Frame(id: id, .error(WireJSON.error(GunnError(.invalidAgentID, "agent \(agent) is not registered"))))])
        }
        let role = conn.flatMap { sessions[$0]?.role } ?? ""
        if owners[agent] != conn && role != "ctl" && role != "supervisor" {
            return refuse(conn, id, GunnError(.forbidden, "this connection did not register agent \(agent); it may not read its view"))
        }
        var r = ViewSnapshot()
        r.agentID = agent.rawValue; r.viewSeq = seq; r.view = CanonicalJSON.encode(doc)
        r.contextDigest = HashChain.checksum(previous: nil, canonicalEffect: r.view)
        r.globalSeq = engine.world.lastGlobalSeq
        send(conn, [Frame(id: id, .view(r))])
    }

    /// Introspection for gunnctl: agents, queues, the log link's breaker, head and digest. While
    /// the writer fails, only what is durable: the acknowledged head, no digest, no view_seq.
    mutating func answerStatus(_ item: Item, durable: Bool) {
        var st = StatusResult()
        st.headSeq = durable ? engine.headSeq : durableHead
        st.worldDigest = durable ? engine.world.digest : ""
        for id in durable ? engine.registeredAgents : answeredRegistrations.keys.sorted() {
            var a = AgentStatus()
            a.agentID = id.rawValue
            if durable {
                a.viewSeq = engine.viewSeq(of: id) ?? 0
                a.queueDepth = UInt32(engine.queueDepth(of: id)); a.pendingObservations = UInt32(engine.pendingObservations(of: id))
                a.viewGlobalSeq = engine.viewGlobalSeq(of: id) ?? 0
                a.activeGenerations = UInt32(engine.activeGenerations(of: id).count)
                if let r = engine.registration(of: id) { a.policy = CanonicalJSON.encodeString(WireJSON.policyJSON(r.observation)) }
            }
            a.connected = durable ? owners[id] != nil : answeredRegistrations[id]?.conn.map { sessions[$0] != nil } ?? false
            st.agents.append(a)
        }
        var b = BreakerStatus()
        b.name = "eventlog"; b.state = linkBreakerState
        st.breakers = [b]
        st.gauges = gauges
        // Every client session, so the supervisor can show what was attached by hand.
        for (_, s) in sessions.sorted(by: { $0.key < $1.key }) {
            var cs = ChildStatus()
            cs.name = s.name; cs.pid = s.pid; cs.state = s.role
            st.children.append(cs)
        }
        send(item.conn, [Frame(id: item.frameID, .statusResult(st))])
    }

    mutating func answerStatusWhileFailing(_ item: Item) {
        answerStatus(item, durable: false)
        answered([item])
    }

    /// Partial speech: relayed at once to every other agent that sees the speaker, once per
    /// connection; never logged (the committed Speak is). Only the connection that registered the
    /// agent may speak for it, and only inside a live generation — a token after a Cancel goes nowhere.
    mutating func relay(_ t: TokenChunk, from conn: ConnID?, id: UInt64) {
        let speaker = AgentID(t.agentID)
        guard owners[speaker] == conn, conn != nil else {
            return refuse(conn, id, GunnError(.forbidden, "this connection did not register agent \(speaker); it may not relay its tokens"))
        }
        guard engine.activeGenerations(of: speaker).contains(where: { $0.reqID.rawValue == t.reqID }) else {
            return refuse(conn, id, GunnError(.generationCancelled, "no live generation \(t.reqID) for agent \(speaker): the token is not relayed"))
        }
        relayed[GenerationKey(agent: speaker, req: t.reqID), default: 0] += 1
        var seen: [ConnID] = [conn!]
        for other in engine.agentsSeeing(speaker.rawValue) where other != speaker {
            guard let sink = owners[other], !seen.contains(sink) else { continue }
            seen.append(sink)
            send(sink, [Frame(.tokenChunk(t))])
        }
        for sink in spectators.sorted() where !seen.contains(sink) { send(sink, [Frame(.tokenChunk(t))]) }
    }

    // MARK: Publishing

    /// Replies to waiting submitters and pushes due observations; cancels leave after the
    /// observations, so an agent sees the change before the Cancel it caused.
    mutating func publish(_ outputs: [EngineOutput]) {
        var observers: [AgentID] = []
        var cancels: [(ConnID, Frame)] = []
        // Built once per publish (not per intent): the bytes the log entries already hold.
        lazy var canonical = Self.canonicalBytes(outputs)
        metrics?.published(outputs)
        for o in outputs {
            switch o {
            case .intentCommitted, .intentRejected:
                replyOutcome(o, canonical: canonical) // to the waiters not answered yet (a quantum's)
            case let .observationQueued(agent, _, _, _):
                if !observers.contains(agent) { observers.append(agent) }
            case let .generationCancelled(agent, req, reason, error):
                var c = Cancel()
                c.agentID = agent.rawValue; c.reqID = req.rawValue; c.reason = reason; c.code = UInt32(error.code.code)
                c.issuedAtMicros = UInt64(max(0, now) * 1e6)
                if let sink = owners[agent] { cancels.append((sink, Frame(.cancel(c)))) }
            case .wakeAt(let t):
                actions.append(.wake(at: t))
            case .warning(let w):
                actions.append(.log("warning: \(w)"))
            case let .backpressure(agent, depth, high):
                actions.append(.log("\(ErrorCode.queueFull.name) (\(ErrorCode.queueFull.code)): agent \(agent) queue depth \(depth) "
                                    + (high ? "reached its high watermark" : "fell below its low watermark")))
            default: break
            }
        }
        for agent in observers {
            guard let conn = owners[agent] else { continue }
            var frames: [Frame] = []
            while let d = engine.nextObservation(for: agent, at: now) {
                var ob = Self.observation(agent, d)
                ob.committedAtMicros = UInt64(max(0, now) * 1e6)
                metrics?.delta(d, bytes: ob.patches.count)
                frames.append(Frame(.observation(ob)))
            }
            send(conn, frames)
        }
        for (conn, frame) in cancels { send(conn, [frame]) }
    }

    /// The canonical bytes the log entries among `outputs` already hold, by global_seq.
    static func canonicalBytes(_ outputs: [EngineOutput]) -> [GlobalSeq: [UInt8]] {
        var bytes: [GlobalSeq: [UInt8]] = [:]
        for o in outputs { if case .effectCommitted(let e) = o { bytes[e.globalSeq] = e.canonicalEffect } }
        return bytes
    }

    /// An intent's outcome to its waiters (none left once answered). A committed effect is sent
    /// as the canonical bytes its log entry already holds (`canonical`), not encoded again.
    mutating func replyOutcome(_ o: EngineOutput, canonical: [GlobalSeq: [UInt8]]) {
        var r = IntentResult()
        switch o {
        case let .intentCommitted(agent, req, effect):
            guard waiters[WaiterKey(agent: agent, req: req)] != nil else { return }
            r.agentID = agent.rawValue; r.reqID = req.rawValue; r.committed = true
            r.effect = canonical[effect.globalSeq] ?? effect.canonicalBytes
        case let .intentRejected(agent, req, error):
            r.agentID = agent.rawValue; r.reqID = req.rawValue; r.error = WireJSON.error(error)
        default: return
        }
        reply(WaiterKey(agent: AgentID(r.agentID), req: ReqID(r.reqID)), .intentResult(r))
    }

    mutating func reply(_ key: WaiterKey, _ body: Frame.Body) {
        guard let ws = waiters.removeValue(forKey: key) else { return }
        waiterCount -= ws.count
        for (conn, id) in ws {
            send(conn, [Frame(id: id, body)])
            holding?.heldOutcomes.append((conn, id, key.agent, key.req))
        }
    }

    static func observation(_ agent: AgentID, _ d: ObservationDelta) -> Observation {
        var ob = Observation()
        ob.agentID = agent.rawValue; ob.viewSeq = d.viewSeq; ob.patches = CanonicalJSON.encode(d.patches.json)
        ob.contextDigest = d.contextDigest; ob.schemaVersion = d.schemaVersion; ob.globalSeq = d.globalSeq
        return ob
    }
}
