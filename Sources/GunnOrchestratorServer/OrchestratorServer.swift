import Foundation
import GunnCore
import GunnIO
import GunnWire

/// The world as a process: hosts the `Engine`, serves `orchestrator.sock`, and is a client of
/// `eventlog.sock`. Commit before publish: effects go to the log writer first; replies and
/// observation deltas leave only after the `AppendAck` that covers them. On start it rebuilds the
/// engine from the log (world, global_seq, idempotency inside its TTL).
public actor OrchestratorServer {
    public struct Settings: Sendable {
        public var home: String
        public var worldID = "world"
        public var worldSeed: UInt64 = 0
        public var engine = EngineConfig()
        /// How long an append may keep retrying while the log writer is away before intents are refused.
        public var appendDeadlineSeconds: Double = 5
        public init(home: String) {
            self.home = home
            engine.quantumMs = 0
        }
        public var socketPath: String { home + "/run/orchestrator.sock" }
        public var eventlogPath: String { home + "/run/eventlog.sock" }
    }

    public let settings: Settings
    let loop: EventLoop
    let log: LogWriterLink
    var engine: Engine
    var server: UnixSocketServer?
    /// Agent id → the connection its observations go to.
    var sinks: [AgentID: FramedConnection] = [:]
    /// "agent|req" → who waits for the outcome (connection, frame id).
    var waiters: [String: [(FramedConnection, UInt64)]] = [:]
    /// Entries committed by the engine whose append was not acknowledged yet, and the outputs held with them.
    var unacked: [LogEntry] = []
    var held: [EngineOutput] = []
    public private(set) var recoveredEntries = 0

    public init(settings: Settings) throws {
        self.settings = settings
        loop = try EventLoop(name: "orchestrator-io")
        log = LogWriterLink(path: settings.eventlogPath, loop: loop, worldID: settings.worldID)
        engine = Engine(config: settings.engine, worldID: settings.worldID, worldSeed: settings.worldSeed)
    }

    static func now() -> Double { Date().timeIntervalSince1970 }

    /// Recovers from the log writer, then serves.
    public func start() async throws {
        let entries = try await log.readAll().map { try WireJSON.eventLogEntry($0) }
        try engine.restore(from: entries, at: Self.now())
        recoveredEntries = entries.count
        try FileManager.default.createDirectory(atPath: settings.home + "/run", withIntermediateDirectories: true)
        server = try await UnixSocketServer(path: settings.socketPath, loop: loop) { [settings] hello in
            var w = Welcome()
            w.role = "orchestrator"
            w.worldID = settings.worldID
            w.sessionID = "\(settings.worldID)-\(hello.clientName)"
            return .success(w)
        } onConnection: { [weak self] conn in
            guard let self else { return }
            Task { await self.serve(conn) }
        }
    }

    public func stop() async { await server?.stop() }

    public var headSeq: UInt64 { engine.headSeq }

    // MARK: - Steps

    /// Inputs wait here while a batch is with the log writer; the next batch takes all of them, so
    /// under load batches grow (one append, one fsync, for many inputs) and at rest an input is
    /// committed alone at once. Steps never overlap: an actor lets another call in while one awaits
    /// the log writer, and two batches must not race on the engine or the link.
    var queued: [(input: EngineInput, then: Published?, done: CheckedContinuation<[EngineOutput], Never>)] = []
    var draining = false
    /// Inputs in one batch at most.
    let maxBatchInputs = 512
    /// Work that must see the engine exactly as the input's batch left it (committed and
    /// acknowledged, no later batch applied yet): runs on the actor right after the batch is
    /// published, before the next batch starts.
    typealias Published = (isolated OrchestratorServer, [EngineOutput]) -> Void

    /// Runs one input: engine, then the append of what it committed, then publication.
    func step(_ input: EngineInput, then: Published? = nil) async -> [EngineOutput] {
        await withCheckedContinuation { c in
            queued.append((input, then, c))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !queued.isEmpty {
            let batch = Array(queued.prefix(maxBatchInputs))
            queued.removeFirst(batch.count)
            let results = await runBatch(batch.map(\.input))
            for (item, out) in zip(batch, results) {
                item.then?(self, out)
                item.done.resume(returning: out)
            }
        }
        draining = false
    }

    private func runBatch(_ inputs: [EngineInput]) async -> [[EngineOutput]] {
        if !unacked.isEmpty {
            // The log writer was away: what is committed but unacknowledged goes first.
            guard await flushUnacked() else {
                return inputs.map { refusal(for: $0, GunnError(.adapterUnavailable, "the log writer is unavailable", retryAfterMs: 200)) }
            }
        }
        var results: [[EngineOutput]] = []
        var entries: [LogEntry] = []
        var all: [EngineOutput] = []
        for input in inputs {
            let outputs = engine.handle(input, at: Self.now())
            for o in outputs { if case .effectCommitted(let e) = o { entries.append(WireJSON.logEntry(e)) } }
            results.append(outputs)
            all += outputs
        }
        if entries.isEmpty {
            publish(all)
            return results
        }
        unacked = entries
        held = all
        _ = await flushUnacked()
        return results
    }

    /// Appends the unacknowledged entries; on success publishes what was held with them.
    func flushUnacked() async -> Bool {
        guard !unacked.isEmpty else { return true }
        do {
            _ = try await log.append(unacked, deadlineSeconds: settings.appendDeadlineSeconds)
        } catch {
            return false
        }
        unacked = []
        let outputs = held
        held = []
        publish(outputs)
        return true
    }

    func refusal(for input: EngineInput, _ error: GunnError) -> [EngineOutput] {
        switch input {
        case .submitIntent(let i):
            let out: [EngineOutput] = [.intentRejected(agent: i.agentID, reqID: i.reqID, error: error)]
            publish(out)
            return out
        case .emit(let d): return [.emitRejected(sourceID: d.sourceID, draftID: d.draftID, error: error)]
        case .registerAgent(let r): return [.registrationRejected(r.agentID, error)]
        case .beginGeneration(let g): return [.generationRefused(agent: g.agentID, reqID: g.reqID, error: error)]
        default: return []
        }
    }

    /// Replies to waiting submitters and pushes due observations, without waiting on any peer.
    func publish(_ outputs: [EngineOutput]) {
        var observers: [AgentID] = []
        // Everything this publication sends leaves in one hop onto the I/O loop.
        var posts: [(FramedConnection, [Frame])] = []
        // Cancels leave after the observations, so an agent sees the change before the Cancel it caused.
        var cancels: [(FramedConnection, [Frame])] = []
        defer { FramedConnection.post(posts + cancels) }
        for o in outputs {
            switch o {
            case let .intentCommitted(agent, req, effect):
                var r = IntentResult()
                r.agentID = agent.rawValue; r.reqID = req.rawValue; r.committed = true; r.effect = effect.canonicalBytes
                reply("\(agent)|\(req)", .intentResult(r), into: &posts)
            case let .intentRejected(agent, req, error):
                var r = IntentResult()
                r.agentID = agent.rawValue; r.reqID = req.rawValue; r.error = WireJSON.error(error)
                reply("\(agent)|\(req)", .intentResult(r), into: &posts)
            case let .observationQueued(agent, _, _, _):
                if !observers.contains(agent) { observers.append(agent) }
            case let .generationCancelled(agent, req, reason, error):
                var c = Cancel()
                c.agentID = agent.rawValue; c.reqID = req.rawValue; c.reason = reason; c.code = UInt32(error.code.code)
                c.issuedAtMicros = UInt64(Self.now() * 1e6)
                if let sink = sinks[agent] { cancels.append((sink, [Frame(.cancel(c))])) }
            case .wakeAt(let t):
                let delay = max(0, t - Self.now())
                Task { [weak self] in
                    try? await Task.sleep(nanoseconds: UInt64(delay * 1e9))
                    _ = await self?.step(.flush)
                }
            default: break
            }
        }
        let now = Self.now()
        for agent in observers {
            guard let conn = sinks[agent] else { continue }
            var frames: [Frame] = []
            while let d = engine.nextObservation(for: agent, at: now) {
                var ob = Self.observation(agent, d)
                ob.committedAtMicros = UInt64(now * 1e6)
                frames.append(Frame(.observation(ob)))
            }
            if !frames.isEmpty { posts.append((conn, frames)) }
        }
    }

    func reply(_ key: String, _ body: Frame.Body, into posts: inout [(FramedConnection, [Frame])]) {
        guard let ws = waiters.removeValue(forKey: key) else { return }
        for (conn, id) in ws { posts.append((conn, [Frame(id: id, body)])) }
    }

    /// Answers a registration: the error, or the reply followed by the agent's view — one delta
    /// from the view the client already holds when it asked to resume and the log still holds
    /// what is needed to rebuild that view, else the whole view.
    func registered(_ agent: AgentID, _ request: RegisterAgent, _ out: [EngineOutput], conn: FramedConnection, id: UInt64) {
        for o in out {
            if case .registrationRejected(_, let e) = o {
                conn.post([Frame(id: id, .error(WireJSON.error(e)))])
                return
            }
        }
        sinks[agent] = conn
        var ok = ControlResult()
        ok.ok = true
        ok.message = "registered \(agent)"
        var frames = [Frame(id: id, .controlResult(ok))]
        if !request.resumeDigest.isEmpty, let d = engine.resume(agent, fromGlobalSeq: request.resumeGlobalSeq, digest: request.resumeDigest, heldViewSeq: request.resumeViewSeq) {
            resumedWithDelta += 1
            frames.append(Frame(id: id, .observation(Self.observation(agent, d))))
        } else if let view = engine.resync(agent) {
            var v = ViewSnapshot()
            v.agentID = agent.rawValue; v.viewSeq = view.viewSeq; v.view = CanonicalJSON.encode(view.document); v.contextDigest = view.contextDigest
            v.globalSeq = engine.world.lastGlobalSeq
            frames.append(Frame(id: id, .view(v)))
        }
        conn.post(frames)
    }

    /// Registrations answered with a delta from the client's own view rather than a whole view.
    public private(set) var resumedWithDelta = 0

    static func observation(_ agent: AgentID, _ d: ObservationDelta) -> Observation {
        var ob = Observation()
        ob.agentID = agent.rawValue; ob.viewSeq = d.viewSeq; ob.patches = CanonicalJSON.encode(d.patches.json)
        ob.contextDigest = d.contextDigest; ob.schemaVersion = d.schemaVersion; ob.globalSeq = d.globalSeq
        return ob
    }

    // MARK: - Serving a client

    /// Open client connections.
    var sessions: [FramedConnection] = []

    func serve(_ conn: FramedConnection) async {
        sessions.append(conn)
        defer { sessions.removeAll { $0 === conn } }
        while let frame = await conn.receive() {
            guard let body = frame.body else { continue }
            switch body {
            case .registerAgent(let r):
                do {
                    let json = try JSONParser.parse(r.registration)
                    let reg = try WireJSON.registration(json)
                    // The reply and the view leave from inside the pipeline, so the view is the one
                    // the log acknowledged, never one a later, unacknowledged batch already changed.
                    _ = await step(.registerAgent(reg)) { server, out in
                        server.registered(reg.agentID, r, out, conn: conn, id: frame.id)
                    }
                } catch let e as GunnError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e)))])
                } catch let e as JSONParseError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e.gunnError)))])
                } catch {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.internalError, "\(error)"))))])
                }
            case .submitIntent(let p):
                let intent: Intent
                do { intent = try Intent(json: JSONParser.parse(p.json)) } catch let e as GunnError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e)))]); continue
                } catch let e as JSONParseError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e.gunnError)))]); continue
                } catch { continue }
                waiters["\(intent.agentID)|\(intent.reqID)", default: []].append((conn, frame.id))
                _ = await step(.submitIntent(intent))
            case .emit(let p):
                do {
                    let draft = try WireJSON.draft(JSONParser.parse(p.json))
                    let out = await step(.emit(draft))
                    var r = EmitResult()
                    r.draftID = draft.draftID ?? ""
                    if case let .emitRejected(_, _, e)? = out.first(where: { if case .emitRejected = $0 { return true } else { return false } }) {
                        r.error = WireJSON.error(e)
                    } else {
                        r.accepted = true
                    }
                    conn.post([Frame(id: frame.id, .emitResult(r))])
                } catch let e as GunnError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e)))])
                } catch let e as JSONParseError {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(e.gunnError)))])
                } catch {}
            case .beginGeneration(let g):
                let request = GenerationRequest(agentID: AgentID(g.agentID), reqID: ReqID(g.reqID), deadlineMs: g.deadlineMs == 0 ? nil : Double(g.deadlineMs),
                                                tokenBudget: g.tokenBudget == 0 ? nil : Int(g.tokenBudget), focus: g.focus)
                let out = await step(.beginGeneration(request))
                for o in out {
                    if case .cancelTokenIssued(let t) = o {
                        var m = CancelTokenMessage()
                        m.agentID = t.agentID.rawValue; m.reqID = t.reqID.rawValue; m.contextSeq = t.contextSeq; m.contextDigest = t.contextDigest
                        conn.post([Frame(id: frame.id, .cancelToken(m))])
                    } else if case .generationRefused(_, _, let e) = o {
                        conn.post([Frame(id: frame.id, .error(WireJSON.error(e)))])
                    }
                }
            case .progress(let p):
                _ = await step(.generationProgress(AgentID(p.agentID), ReqID(p.reqID), tokensEmitted: Int(p.tokensEmitted)))
            case .halted(let h):
                // The worker stopped (finished or halted): the generation's token is retired; after a
                // Cancel the engine logs the cancellation with the tokens discarded.
                let agent = h.agentID.isEmpty ? sinks.first(where: { $0.value === conn })?.key : AgentID(h.agentID)
                guard let agent, sinks[agent] === conn else {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.forbidden, "this connection did not register agent \(h.agentID); it may not end its generations"))))])
                    continue
                }
                relayed[GenerationKey(agent: agent, req: h.reqID)] = nil
                _ = await step(.generationHalted(agent, ReqID(h.reqID), tokensEmitted: Int(h.tokensEmitted), haltLatencyUs: h.haltLatencyUs))
            case .view(let v):
                // A view request: filter(world) computed afresh, at the agent's current view_seq.
                let agent = AgentID(v.agentID)
                guard let doc = engine.filteredView(of: agent), let seq = engine.viewSeq(of: agent) else {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.invalidAgentID, "agent \(agent) is not registered"))))])
                    continue
                }
                var r = ViewSnapshot()
                r.agentID = v.agentID; r.viewSeq = seq; r.view = CanonicalJSON.encode(doc); r.contextDigest = HashChain.checksum(previous: nil, canonicalEffect: r.view)
                r.globalSeq = engine.world.lastGlobalSeq
                conn.post([Frame(id: frame.id, .view(r))])
            case .status:
                // Introspection for gunnctl: agents, queues, the log link's breaker, head and digest.
                var st = StatusResult()
                st.headSeq = engine.headSeq
                st.worldDigest = engine.world.digest
                for id in engine.registeredAgents {
                    var a = AgentStatus()
                    a.agentID = id.rawValue; a.viewSeq = engine.viewSeq(of: id) ?? 0
                    a.queueDepth = UInt32(engine.queueDepth(of: id)); a.pendingObservations = UInt32(engine.pendingObservations(of: id))
                    a.connected = sinks[id] != nil
                    st.agents.append(a)
                }
                var b = BreakerStatus()
                b.name = "eventlog"; b.state = log.link.breakerState.rawValue
                st.breakers = [b]
                // Every client session, so the supervisor can show what was attached by hand.
                for c in sessions {
                    var cs = ChildStatus()
                    cs.name = c.peerHello?.clientName ?? ""; cs.pid = c.peerCredentials?.pid ?? 0; cs.state = c.peerHello?.role ?? ""
                    st.children.append(cs)
                }
                conn.post([Frame(id: frame.id, .statusResult(st))])
            case .tokenChunk(let t):
                // Partial speech: relayed at once to every other agent that sees the speaker, once
                // per connection; never logged (the committed Speak is). Only the connection that
                // registered the agent may speak for it, and only inside a live generation — a
                // token after a Cancel goes nowhere.
                let speaker = AgentID(t.agentID)
                guard sinks[speaker] === conn else {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.forbidden, "this connection did not register agent \(speaker); it may not relay its tokens"))))])
                    continue
                }
                guard engine.activeGenerations(of: speaker).contains(where: { $0.reqID.rawValue == t.reqID }) else {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.generationCancelled, "no live generation \(t.reqID) for agent \(speaker): the token is not relayed"))))])
                    continue
                }
                relayed[GenerationKey(agent: speaker, req: t.reqID), default: 0] += 1
                var seen: [ObjectIdentifier] = [ObjectIdentifier(conn)]
                var posts: [(FramedConnection, [Frame])] = []
                for id in engine.agentsSeeing(speaker.rawValue) where id != speaker {
                    guard let sink = sinks[id], !seen.contains(ObjectIdentifier(sink)) else { continue }
                    seen.append(ObjectIdentifier(sink))
                    posts.append((sink, [Frame(.tokenChunk(t))]))
                }
                FramedConnection.post(posts)
            case .breakerControl(let bc):
                // gunnctl breaker open|close|reset eventlog: manual control of the log link.
                let actions: [Int32: BreakerAction] = [BreakerControl.forceOpen: .open, BreakerControl.forceClose: .close, BreakerControl.reset: .reset]
                guard bc.name == "eventlog", let action = actions[bc.action] else {
                    conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.unknownMessage, "breaker \"\(bc.name)\" action \(bc.action): the orchestrator has one breaker, \"eventlog\", with actions open, close, reset"))))])
                    continue
                }
                var r = ControlResult()
                r.ok = true
                r.message = "breaker eventlog \(log.link.control(action).rawValue)"
                conn.post([Frame(id: frame.id, .controlResult(r))])
            case .head:
                var h = HeadResult()
                h.seq = engine.headSeq; h.checksum = engine.log.headChecksum ?? ""; h.count = UInt64(engine.log.entries.count)
                conn.post([Frame(id: frame.id, .headResult(h))])
            default:
                conn.post([Frame(id: frame.id, .error(WireJSON.error(GunnError(.unknownMessage, "the orchestrator does not serve frame body \(frame.bodyFieldNumber ?? 0) yet"))))])
            }
        }
        // Its agents' generations will never be reported halted: the live ones are cancelled
        // (worker_lost) and every cancellation is logged with the tokens that were relayed.
        for (agent, c) in sinks.sorted(by: { $0.key < $1.key }) where c === conn { // sorted: the records' order in the log
            sinks[agent] = nil
            var counts: [ReqID: Int] = [:]
            for req in engine.activeGenerations(of: agent).map(\.reqID) + engine.cancelledAwaitingHalt(of: agent) {
                counts[req] = relayed.removeValue(forKey: GenerationKey(agent: agent, req: req.rawValue)) ?? 0
            }
            if !counts.isEmpty { _ = await step(.workerLost(agent, relayed: counts)) }
        }
    }

    /// Token chunks relayed per live generation, for a worker that leaves without a halt report.
    var relayed: [GenerationKey: Int] = [:]
    struct GenerationKey: Hashable { let agent: AgentID; let req: String }
}
