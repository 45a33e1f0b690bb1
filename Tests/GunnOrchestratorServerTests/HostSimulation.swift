import Foundation
import GunnClient
import GunnCore
@testable import GunnOrchestratorServer
import GunnWire

/// A seeded simulation of the host layer, after TigerBeetle's VOPR: the orchestrator's core (its
/// batching, commit before publish, ownership, resume), a simulated log writer (delayed, lost and
/// duplicated acks, refusals, outages, restarts), simulated connections (ordered, delayed, cut),
/// orchestrator crashes with recovery from the writer's log, and clients that keep their views
/// with the same `HeldViews` GunnClient uses, re-register with resume marks after every
/// reconnect and retry unanswered intents with the same req_id. One seed, one run, exactly
/// reproducible; `problems` lists every broken invariant.
struct HostSimulation {
    var rng: SplitMix64
    let seed: UInt64
    var now: HostTime = 1_000
    var problems: [String] = []

    // Simulated time: events ordered by (time, insertion).
    enum Event {
        case toCore(ConnID, Frame)
        case toClient(ConnID, Frame)
        case closedAtCore(ConnID, incarnation: Int)
        case writerTakes(batch: UInt64, entries: [LogEntry], incarnation: Int)
        case writerReply(batch: UInt64, result: Result<UInt64, GunnError>, incarnation: Int, mayBeStored: Bool = false)
        case retry(incarnation: Int)
        case timer(incarnation: Int)
        case clientActs(Int)
        case clientConnects(Int)
        case clientRegisters(Int, AgentID, ConnID)
        case restartOrchestrator
    }
    var events = EventHeap()
    var order = 0

    // The log writer: what it holds is durable.
    var durable: [LogEntry] = []
    /// Durable snapshots the writer stored: the world right after its seq.
    var snapshots: [WorldState] = []
    /// The log's world at the last snapshot checked.
    var checkedWorld = WorldState()
    var writerDownUntil: HostTime = 0
    /// The incarnation of the newest orchestrator that connected to the writer.
    var writerFence = 0
    var writerRefusesUntil: HostTime = 0
    /// When the writer takes the last append sent (appends are taken in order).
    var lastWriterTake: HostTime = 0
    var lastWriterReply: HostTime = 0

    // The orchestrator.
    var core: OrchestratorCore?
    var incarnation = 0
    let settings: OrchestratorCore.Settings
    var nextConn: UInt64 = 0
    /// Frames waiting at the core per connection: like the shell, the host takes a connection's
    /// frames (several at once) while fewer than the core's in-flight bound are unanswered.
    var coreInbox: [ConnID: [Frame]] = [:]
    var liveConns: Set<ConnID> = []
    var lastDelivery: [ConnID: HostTime] = [:]

    // Clients.
    struct Client {
        var name: String
        var agents: [AgentID: JSONValue] = [:]
        var registered: Set<AgentID> = []
        var held = HeldViews()
        var conn: ConnID?
        var nextReq = 0
        var nextFrame: UInt64 = 0
        /// Requests sent and not answered: re-sent on the next connection (the same req_id).
        var unanswered: [UInt64: Frame] = [:]
        var committed: [(AgentID, ReqID, GlobalSeq)] = []
        var liveGenerations: [(AgentID, ReqID)] = []
        var cancelsSeen: [(AgentID, ReqID, incarnation: Int)] = []
    }
    var clients: [Client] = []
    /// Cancellations sent, by the incarnation that sent them; `exempt` once that orchestrator lost
    /// its generations (a crash, or a rollback after the writer refused a batch).
    var cancelsSent: [(agent: AgentID, req: ReqID, incarnation: Int, exempt: Bool)] = []
    var crashedIncarnations: Set<Int> = []
    var rollbacksSeen = 0
    var faultsOn = true
    var stats: [String: Int] = [:]

    init(seed: UInt64) {
        self.seed = seed
        rng = SplitMix64(seed: seed)
        var s = OrchestratorCore.Settings()
        s.worldID = "sim"
        s.worldSeed = seed
        s.engine.agentQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
        s.engine.tenantQuota = TokenBucket(capacity: 1_000_000, refillPerSecond: 1_000_000)
        s.maxBatchItems = 1 + Int(seed % 7)
        s.maxInFlightPerConnection = 1 + Int((seed / 7) % 4)
        s.maxBatchesInFlight = 1 + Int((seed / 28) % 3)
        s.minItemsBehind = 1 + Int((seed / 84) % 3)
        // A small log window and frequent durable snapshots: trimming, rollback over a trimmed
        // window and recovery from a snapshot all happen within a run.
        s.engine.snapshotEvery = 3 + Int((seed / 252) % 9)
        s.engine.memory.snapshots = 1 + Int((seed / 7) % 3)
        s.durableSnapshotEvery = Int((seed / 3) % 4) * s.engine.snapshotEvery
        s.engine.memory.viewCacheBytes = seed % 5 == 0 ? 0 : 1 << 30
        s.engine.memory.viewCacheCheckEvery = 1 + Int(seed % 4)
        settings = s
    }

    mutating func chance(_ p: Double) -> Bool { Double(rng.next() >> 11) / Double(1 << 53) < p }
    mutating func int(_ n: Int) -> Int { Int(rng.next(below: UInt64(n))) }
    mutating func delay(_ maxMs: Double) -> HostTime { Double(int(Int(maxMs * 1000) + 1)) / 1e6 }

    mutating func schedule(_ e: Event, after seconds: HostTime) {
        order += 1
        events.push(now + seconds, order, e)
    }

    // MARK: - Running

    mutating func run() -> [String] {
        restartOrchestrator()
        let clientCount = 2 + int(3)
        for i in 0..<clientCount {
            var c = Client(name: "c\(i)")
            for j in 0..<(1 + int(2)) {
                let id = AgentID("c\(i)a\(j)")
                var reg: JSONObject = ["agent_id": .string(id.rawValue), "spawn": [.number(Double(int(20))), .number(Double(int(20)))],
                                       "staleness_threshold": .number(Double(int(4)))]
                if chance(0.5) { reg["distance_limit"] = .number(Double(4 + int(12))) }
                if chance(0.3) { reg["hidden_fields"] = ["secret"] }
                c.agents[id] = .object(reg)
            }
            clients.append(c)
            schedule(.clientConnects(i), after: delay(5))
        }
        for i in clients.indices { schedule(.clientActs(i), after: 0.01 + delay(20)) }
        // The faulty phase, then a calm one in which everything must drain and agree.
        let faultyUntil = now + 2.0
        var steps = 0
        while let e = popEvent(), steps < 200_000 {
            steps += 1
            if faultsOn && now > faultyUntil {
                faultsOn = false
                writerDownUntil = 0; writerRefusesUntil = 0
                for i in clients.indices where clients[i].conn == nil { schedule(.clientConnects(i), after: 0.001) }
            }
            handle(e)
        }
        checkFinal()
        return problems
    }

    mutating func popEvent() -> Event? {
        guard let e = events.pop() else { return nil }
        now = max(now, e.at)
        return e.event
    }

    mutating func handle(_ e: Event) {
        switch e {
        case let .toCore(conn, frame):
            guard liveConns.contains(conn), core != nil else { return }
            coreInbox[conn, default: []].append(frame)
            feedCore(conn)
        case let .toClient(conn, frame):
            guard let i = clients.firstIndex(where: { $0.conn == conn }) else { return }
            clientReceives(i, frame)
        case let .closedAtCore(conn, inc):
            guard inc == incarnation, core != nil else { return }
            coreInbox[conn] = nil
            perform(core!.closed(conn, now: now))
        case let .writerTakes(batch, entries, inc):
            writerTakes(batch, entries, inc)
        case let .writerReply(batch, result, inc, mayBeStored):
            guard inc == incarnation, core != nil else { return }
            if ProcessInfo.processInfo.environment["GUNN_HOST_SIM_TRACE"] != nil { print("t=\(now) inc\(inc) reply batch \(batch) \(result) durable \(durable.count) core batches \(core!.batches.map { ($0.id, $0.entries.first?.globalSeq ?? 0, $0.entries.last?.globalSeq ?? 0) }) failure \(core!.failure != nil)") }
            switch result {
            case .success(let seq): perform(core!.appendAcknowledged(batch: batch, lastSeq: seq, now: now))
            case .failure(let error): perform(core!.appendFailed(batch: batch, error: error, mayBeStored: mayBeStored, now: now))
            }
        case .retry(let inc):
            guard inc == incarnation, core != nil else { return }
            perform(core!.retryAppend(now: now))
        case .timer(let inc):
            guard inc == incarnation, core != nil else { return }
            perform(core!.timer(now: now))
        case .clientActs(let i):
            clientActs(i)
        case .clientConnects(let i):
            clientConnects(i)
        case let .clientRegisters(i, agent, conn):
            if clients[i].conn == conn { register(i, agent) }
        case .restartOrchestrator:
            restartOrchestrator()
        }
    }

    // MARK: - The orchestrator

    mutating func restartOrchestrator() {
        incarnation += 1
        writerFence = incarnation
        coreInbox = [:]
        do {
            // Like the shell: the newest snapshot, the entries after it, and the writer's
            // idempotency table (every request of the log; the TTL is long here).
            let snap = snapshots.last
            let from = Int(snap?.lastGlobalSeq ?? 0)
            let entries = try durable[from...].map { try WireJSON.eventLogEntry($0) }
            let requests = try durable.compactMap { l -> RecoveredRequest? in
                guard !l.reqID.isEmpty else { return nil }
                let e = try WireJSON.eventLogEntry(l)
                return RecoveredRequest(agentID: e.agentID!, reqID: e.reqID!, effect: e.effect, expiresAt: l.wallTime + settings.engine.idempotencyTTLSeconds)
            }
            core = try OrchestratorCore(settings: settings, snapshot: snap.map { ($0, durable[from - 1].checksum) }, entries: entries,
                                        requests: requests, now: now)
            if snap != nil { stats["recoveries from a snapshot", default: 0] += 1 }
            rollbacksSeen = 0
        } catch {
            problems.append("recovery from the writer's log failed: \(error)")
            core = nil
        }
    }

    mutating func crashOrchestrator() {
        stats["orchestrator crashes", default: 0] += 1
        crashedIncarnations.insert(incarnation)
        core = nil
        incarnation += 1 // fences every event of the dead incarnation
        for conn in liveConns.sorted() { cut(conn) }
        schedule(.restartOrchestrator, after: 0.005 + delay(30))
    }

    mutating func feedCore(_ conn: ConnID) {
        guard let core, var inbox = coreInbox[conn], !inbox.isEmpty else { return }
        let room = settings.maxInFlightPerConnection - core.inFlight(of: conn)
        guard room > 0 else { return }
        let frames = Array(inbox.prefix(room))
        inbox.removeFirst(frames.count)
        coreInbox[conn] = inbox
        perform(self.core!.receive(frames, from: conn, now: now))
    }

    mutating func perform(_ actions: [CoreAction]) {
        let inc = incarnation
        if let core, core.rollbacks != rollbacksSeen {
            rollbacksSeen = core.rollbacks
            stats["rollbacks", default: 0] += 1
            for k in cancelsSent.indices where cancelsSent[k].incarnation == inc { cancelsSent[k].exempt = true }
        }
        // Like the shell, connections whose frames were answered are read again after this turn,
        // not in the middle of performing it (the appends of one turn leave in the core's order).
        var readAgain: [ConnID] = []
        defer { for conn in readAgain where core != nil && incarnation == inc { feedCore(conn) } }
        for a in actions {
            switch a {
            case let .send(conn, frames):
                for f in frames { checkDurable(f) }
                guard liveConns.contains(conn) else { continue }
                for f in frames {
                    if case .cancel(let c)? = f.body { cancelsSent.append((AgentID(c.agentID), ReqID(c.reqID), inc, c.reason == "log_refused")) }
                    deliver(.toClient(conn, f), on: conn)
                }
            case let .append(batch, entries):
                // One ordered link: the writer takes appends in the order they were sent.
                let at = max(now + delay(3), lastWriterTake)
                lastWriterTake = at
                if ProcessInfo.processInfo.environment["GUNN_HOST_SIM_TRACE"] != nil { print("t=\(now) inc\(inc) send batch \(batch) \(entries.first?.globalSeq ?? 0)...\(entries.last?.globalSeq ?? 0)") }
                order += 1
                events.push(at, order, .writerTakes(batch: batch, entries: entries, incarnation: inc))
            case .retryAfter(let ms):
                schedule(.retry(incarnation: inc), after: Double(ms) / 1000)
            case .wake(let t):
                schedule(.timer(incarnation: inc), after: max(0, t - now))
            case .snapshot(let world):
                // Only a durable state is stored, and it is the state the log gives at its seq.
                let seq = Int(world.lastGlobalSeq)
                guard seq <= durable.count, seq > Int(snapshots.last?.lastGlobalSeq ?? 0) else {
                    problems.append("seed \(seed): a snapshot at \(seq) with \(durable.count) durable (last at \(snapshots.last?.lastGlobalSeq ?? 0))")
                    continue
                }
                do {
                    // Replayed on from the last snapshot checked (the log only grows).
                    let from = Int(checkedWorld.lastGlobalSeq)
                    checkedWorld = try Replay.replay(durable[from..<seq].map { try WireJSON.eventLogEntry($0) }[...], from: checkedWorld,
                                                     previousChecksum: from == 0 ? nil : durable[from - 1].checksum)
                    if checkedWorld.digest != world.digest { problems.append("seed \(seed): the snapshot at \(seq) differs from the log's world there") }
                } catch { problems.append("seed \(seed): replay for the snapshot at \(seq) failed: \(error)") }
                snapshots.append(world)
                stats["durable snapshots", default: 0] += 1
            case .log:
                stats["core log lines", default: 0] += 1
            case .answered(let conn, _):
                readAgain.append(conn)
            case .fatal(let e):
                stats["orchestrator exits on divergence (\(e.code.name))", default: 0] += 1
                if ProcessInfo.processInfo.environment["GUNN_HOST_SIM_DEBUG"] != nil { print("seed \(seed) fatal: \(e)") }
                crashOrchestrator()
                return
            }
        }
        if faultsOn && core != nil && chance(0.002) { crashOrchestrator() }
    }

    /// Ordered delivery on one connection, with a random delay.
    mutating func deliver(_ e: Event, on conn: ConnID) {
        let at = max(now + delay(2), lastDelivery[conn] ?? 0)
        lastDelivery[conn] = at
        order += 1
        events.push(at, order, e)
    }

    /// Invariant: nothing that leaves the orchestrator reveals an effect the writer does not hold.
    mutating func checkDurable(_ f: Frame) {
        var seqs: [GlobalSeq] = []
        switch f.body {
        case .observation(let o)?: seqs.append(o.globalSeq)
        case .view(let v)?: seqs.append(v.globalSeq)
        case .headResult(let h)?: seqs.append(h.seq)
        case .statusResult(let s)?: seqs.append(s.headSeq)
        case .intentResult(let r)? where r.committed:
            if let e = try? Effect(json: JSONParser.parse(r.effect)) {
                seqs.append(e.globalSeq)
                if e.globalSeq >= 1 && e.globalSeq <= UInt64(durable.count) && durable[Int(e.globalSeq) - 1].effect != r.effect {
                    problems.append("seed \(seed): the committed effect of \(r.agentID)/\(r.reqID) differs from the log's entry \(e.globalSeq)")
                }
            }
        case .cancel(let c)?:
            if c.reason.hasPrefix("stale_due_to:"), let n = UInt64(c.reason.dropFirst(13)) { seqs.append(n) }
        default: break
        }
        for s in seqs where s > UInt64(durable.count) {
            problems.append("seed \(seed): a \(f.bodyFieldNumber ?? 0) frame revealed global_seq \(s) with only \(durable.count) durable")
        }
    }

    // MARK: - The log writer

    mutating func writerTakes(_ batch: UInt64, _ entries: [LogEntry], _ inc: Int) {
        let replyDelay = delay(3)
        if faultsOn && now < writerDownUntil {
            // Away: nothing taken; the host's request times out.
            replyInOrder(.writerReply(batch: batch, result: .failure(GunnError(.adapterUnavailable, "sim: writer away", retryAfterMs: 50)), incarnation: inc),
                         after: 0.02)
            return
        }
        if faultsOn && chance(0.03) { writerDownUntil = now + delay(60); stats["writer outages", default: 0] += 1 }
        if faultsOn && (now < writerRefusesUntil || chance(0.02)) {
            if now >= writerRefusesUntil { writerRefusesUntil = now + delay(30) }
            stats["writer refusals", default: 0] += 1
            replyInOrder(.writerReply(batch: batch, result: .failure(GunnError(.logStorageFailure, "sim: disk full")), incarnation: inc), after: replyDelay)
            return
        }
        // The writer fences older orchestrators once a newer one connected (recovered): only the
        // newest may append. A dead one's append that arrives before that is still taken.
        if inc < writerFence {
            stats["fenced appends", default: 0] += 1
            return
        }
        // Validated as the store does, all or nothing: a resent prefix must be identical, the
        // rest contiguous and chained. A refusal from a dead incarnation's late append is normal;
        // from the live one it means the orchestrator diverged (it then restarts, see .fatal).
        var expected = UInt64(durable.count) + 1
        var previous = durable.last?.checksum
        var fresh: [LogEntry] = []
        var refusal: GunnError?
        for e in entries {
            if e.globalSeq < expected && fresh.isEmpty {
                if durable[Int(e.globalSeq) - 1] != e { refusal = GunnError(.logIntegrityViolation, "sim: seq \(e.globalSeq) resent with other content"); break }
                continue
            }
            guard e.globalSeq == expected else { refusal = GunnError(.sequenceGap, "sim: \(e.globalSeq) after \(expected - 1)"); break }
            guard HashChain.checksum(previous: previous, canonicalEffect: e.effect) == e.checksum else {
                refusal = GunnError(.logIntegrityViolation, "sim: seq \(e.globalSeq) does not continue the chain"); break
            }
            previous = e.checksum
            fresh.append(e)
            expected += 1
        }
        if let refusal {
            stats["writer integrity refusals", default: 0] += 1
            return replyInOrder(.writerReply(batch: batch, result: .failure(refusal), incarnation: inc), after: replyDelay)
        }
        durable += fresh
        let last = entries.last?.globalSeq ?? UInt64(durable.count)
        if faultsOn && chance(0.05) {
            // The ack is lost: the host's request times out although the entries are durable.
            stats["lost acks", default: 0] += 1
            replyInOrder(.writerReply(batch: batch, result: .failure(GunnError(.adapterUnavailable, "sim: ack lost", retryAfterMs: 20)), incarnation: inc,
                                      mayBeStored: true), after: 0.02)
            return
        }
        replyInOrder(.writerReply(batch: batch, result: .success(last), incarnation: inc), after: replyDelay)
        if faultsOn && chance(0.05) {
            stats["duplicated acks", default: 0] += 1
            replyInOrder(.writerReply(batch: batch, result: .success(last), incarnation: inc), after: replyDelay + delay(3))
        }
        if faultsOn && chance(0.003) { crashOrchestratorLater() }
    }

    /// The writer answers on one ordered link: replies (and timeouts) reach the host in the order
    /// the appends were sent.
    mutating func replyInOrder(_ e: Event, after seconds: HostTime) {
        let at = max(now + seconds, lastWriterReply)
        lastWriterReply = at
        order += 1
        events.push(at, order, e)
    }

    mutating func crashOrchestratorLater() { if core != nil { crashOrchestrator() } }

    // MARK: - Clients

    mutating func cut(_ conn: ConnID) {
        liveConns.remove(conn)
        lastDelivery[conn] = nil
        if let i = clients.firstIndex(where: { $0.conn == conn }) {
            clients[i].conn = nil
            clients[i].registered = []
            clients[i].liveGenerations = [] // the orchestrator cancels them (worker_lost)
            schedule(.clientConnects(i), after: 0.002 + delay(20))
        }
        schedule(.closedAtCore(conn, incarnation: incarnation), after: delay(1))
    }

    mutating func clientConnects(_ i: Int) {
        guard clients[i].conn == nil else { return }
        guard let c = core else { return schedule(.clientConnects(i), after: 0.01) }
        let hello = Hello(protocolMajor: 1, protocolMinor: 0, role: "agent", worldID: "sim", clientName: clients[i].name)
        guard case .success(let welcome) = OrchestratorCore.admit(hello, settings: settings, head: c.durableHead) else {
            return problems.append("seed \(seed): the Hello of \(clients[i].name) was refused")
        }
        if welcome.latestGlobalSeq > UInt64(durable.count) { problems.append("seed \(seed): Welcome names head \(welcome.latestGlobalSeq) beyond the durable \(durable.count)") }
        nextConn += 1
        let conn = ConnID(nextConn)
        liveConns.insert(conn)
        core!.opened(conn, role: "agent", name: clients[i].name, pid: 0)
        clients[i].conn = conn
        // Registrations first (with the held views' marks); every unanswered request again once
        // all of them are registered.
        clients[i].unanswered = clients[i].unanswered.filter { !isRegistration($0.value) }
        for id in clients[i].agents.keys.sorted() { register(i, id) }
    }

    mutating func register(_ i: Int, _ id: AgentID) {
        clientSends(i, .registerAgent(clients[i].held.reRegistration(id, clients[i].agents[id]!)))
    }

    mutating func resendUnanswered(_ i: Int) {
        guard let conn = clients[i].conn else { return }
        for (fid, f) in clients[i].unanswered.sorted(by: { $0.key < $1.key }) where !isRegistration(f) {
            deliver(.toCore(conn, Frame(id: fid, f.body!)), on: conn)
        }
    }

    func isRegistration(_ f: Frame) -> Bool { if case .registerAgent? = f.body { return true } else { return false } }

    mutating func clientSends(_ i: Int, _ body: Frame.Body, expectReply: Bool = true) {
        guard let conn = clients[i].conn else { return }
        clients[i].nextFrame += 1
        let f = Frame(id: clients[i].nextFrame, body)
        if expectReply { clients[i].unanswered[f.id] = f }
        deliver(.toCore(conn, f), on: conn)
    }

    mutating func clientActs(_ i: Int) {
        defer { if faultsOn { schedule(.clientActs(i), after: 0.002 + delay(15)) } }
        let mine = clients[i].registered.sorted()
        guard faultsOn, clients[i].conn != nil, !mine.isEmpty else { return }
        let agent = mine[int(mine.count)]
        let ctx = clients[i].held.views[agent]?.seq ?? 0
        clients[i].nextReq += 1
        let req = ReqID("\(clients[i].name)-r\(clients[i].nextReq)")
        switch int(10) {
        case 0...4:
            let intent = Intent(kind: .move, payload: ["to": [.number(Double(int(20))), .number(Double(int(20)))]], contextSeq: ctx, reqID: req, agentID: agent)
            clientSends(i, .submitIntent(JSONPayload(CanonicalJSON.encode(intent.json))))
        case 5, 6:
            let intent = Intent(kind: .speak, payload: ["text": .string("hello \(req)")], contextSeq: ctx, reqID: req, agentID: agent)
            clientSends(i, .submitIntent(JSONPayload(CanonicalJSON.encode(intent.json))))
        case 7:
            var g = BeginGeneration()
            g.agentID = agent.rawValue; g.reqID = req.rawValue
            clientSends(i, .beginGeneration(g))
        case 8:
            let draft = EffectDraft(kind: "EntityUpsert", payload: ["id": .string("rock\(int(3))"),
                                    "entity": ["kind": "rock", "pos": [.number(Double(int(20))), .number(Double(int(20)))], "secret": "s"]],
                                    sourceID: "sim-\(clients[i].name)", draftID: req.rawValue)
            clientSends(i, .emit(JSONPayload(CanonicalJSON.encode(WireJSON.draftJSON(draft)))))
        default:
            if chance(0.2), let conn = clients[i].conn { stats["client disconnects", default: 0] += 1; cut(conn); return }
            if let k = clients[i].liveGenerations.firstIndex(where: { clients[i].registered.contains($0.0) }) {
                let (a, r) = clients[i].liveGenerations.remove(at: k)
                var h = Halted()
                h.agentID = a.rawValue; h.reqID = r.rawValue
                clientSends(i, .halted(h), expectReply: false)
            }
        }
    }

    mutating func clientReceives(_ i: Int, _ f: Frame) {
        let request = f.id != 0 ? clients[i].unanswered.removeValue(forKey: f.id) : nil
        var registration: AgentID?
        if case .registerAgent(let r)? = request?.body { registration = AgentID(r.agentID) }
        switch f.body {
        case .controlResult(let r)?:
            if r.ok, r.message.hasPrefix("registered "), let id = r.message.split(separator: " ").last {
                clients[i].registered.insert(AgentID(String(id)))
                if clients[i].registered.count == clients[i].agents.count { resendUnanswered(i) }
            }
        case .view(let v)?:
            if case .resync(let why) = clients[i].held.whole(v) { problems.append("seed \(seed): \(why)") }
        case .observation(let o)?:
            if case .resync(let why) = clients[i].held.delta(o, resume: f.id != 0) { problems.append("seed \(seed): \(why)") }
        case .intentResult(let r)?:
            if r.committed, let e = try? Effect(json: JSONParser.parse(r.effect)) {
                clients[i].committed.append((AgentID(r.agentID), ReqID(r.reqID), e.globalSeq))
            } else if let e = r.error {
                stats["intents refused \(e.name)", default: 0] += 1
            }
        case .cancelToken(let t)?:
            clients[i].liveGenerations.append((AgentID(t.agentID), ReqID(t.reqID)))
        case .cancel(let c)?:
            clients[i].cancelsSeen.append((AgentID(c.agentID), ReqID(c.reqID), incarnation))
            clients[i].liveGenerations.removeAll { $0 == (AgentID(c.agentID), ReqID(c.reqID)) }
            var h = Halted()
            h.agentID = c.agentID; h.reqID = c.reqID; h.cancelled = true; h.tokensEmitted = 3
            clientSends(i, .halted(h), expectReply: false)
        case .error(let e)? where registration != nil:
            // A refused registration (the writer is away): again after retry_after.
            stats["registrations refused \(e.name)", default: 0] += 1
            if e.name == ErrorCode.forbidden.name { problems.append("seed \(seed): registration of \(registration!) refused: \(e.message)") }
            if let conn = clients[i].conn {
                schedule(.clientRegisters(i, registration!, conn), after: Double(max(e.retryAfterMs, 5)) / 1000)
            }
        case .error(let e)?:
            stats["errors \(e.name)", default: 0] += 1
            if e.name == ErrorCode.forbidden.name || e.name == ErrorCode.internalError.name { problems.append("seed \(seed): \(clients[i].name) was refused: \(e.message)") }
        default: break
        }
    }

    // MARK: - Invariants after the calm phase

    mutating func checkFinal() {
        guard let core else { return problems.append("seed \(seed): no orchestrator at the end") }
        // The writer and the orchestrator agree.
        if core.engine.headSeq != UInt64(durable.count) {
            problems.append("seed \(seed): orchestrator head \(core.engine.headSeq), durable \(durable.count) after draining")
        }
        if core.engine.log.headChecksum != durable.last?.checksum { problems.append("seed \(seed): head checksums differ") }
        // Every acknowledged intent is in the log exactly once; no intent is in it twice.
        var seen: [String: Int] = [:]
        for e in durable where !e.reqID.isEmpty { seen["\(e.agentID)|\(e.reqID)", default: 0] += 1 }
        for (key, n) in seen where n > 1 { problems.append("seed \(seed): intent \(key) is in the log \(n) times") }
        for c in clients {
            for (agent, req, seq) in c.committed {
                let key = "\(agent)|\(req)"
                if seen[key] != 1 { problems.append("seed \(seed): acknowledged intent \(key) is in the log \(seen[key] ?? 0) times") }
                if seq == 0 || seq > UInt64(durable.count) || durable[Int(seq) - 1].reqID != req.rawValue {
                    problems.append("seed \(seed): acknowledged intent \(key) at seq \(seq) is not the log's entry there")
                }
            }
            // Every client view equals filter(world) once drained.
            for agent in c.agents.keys.sorted() {
                guard let held = c.held.views[agent] else { problems.append("seed \(seed): \(agent) holds no view"); continue }
                if core.engine.filteredView(of: agent) != held.doc {
                    problems.append("seed \(seed): \(agent)'s view (view_seq \(held.seq), global_seq \(held.globalSeq)) differs from filter(world) "
                                    + "after draining (orchestrator view_seq \(core.engine.viewSeq(of: agent) ?? 0), head \(core.engine.headSeq), "
                                    + "registered here \(c.registered.contains(agent)), owner \(core.owners[agent].map { "\($0)" } ?? "none"), conn \(c.conn.map { "\($0)" } ?? "none"))"
                                    + (ProcessInfo.processInfo.environment["GUNN_HOST_SIM_SEED"] == nil ? "" :
                                        "\nheld: \(String(decoding: CanonicalJSON.encode(held.doc), as: UTF8.self))\nworld: \(String(decoding: CanonicalJSON.encode(core.engine.filteredView(of: agent) ?? .null), as: UTF8.self))"))
                }
            }
        }
        // Every cancellation sent by an orchestrator that lived on is logged (a crash between a
        // Cancel and its halt report loses the generation with the process: see the docs).
        var logged: Set<String> = []
        for e in durable {
            if let v = try? JSONParser.parse(e.effect), v["kind"] == "GenerationCancelled",
               case .string(let a)? = v["payload"]?["agent_id"], case .string(let r)? = v["payload"]?["req_id"] { logged.insert("\(a)|\(r)") }
        }
        for c in cancelsSent where !c.exempt && !crashedIncarnations.contains(c.incarnation) && !logged.contains("\(c.agent)|\(c.req)") {
            problems.append("seed \(seed): the cancellation of \(c.agent)/\(c.req) is not in the log")
        }
        if core.queuedCount != 0 || core.failure != nil { problems.append("seed \(seed): the core did not drain") }
    }
}

/// The simulation's agenda: a binary min-heap on (time, insertion order), so equal times keep
/// the order they were scheduled in.
struct EventHeap {
    private var items: [(at: HostTime, order: Int, event: HostSimulation.Event)] = []

    mutating func push(_ at: HostTime, _ order: Int, _ event: HostSimulation.Event) {
        items.append((at, order, event))
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard less(i, parent) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> (at: HostTime, order: Int, event: HostSimulation.Event)? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var i = 0
        while true {
            let l = 2 * i + 1, r = l + 1
            var m = i
            if l < items.count && less(l, m) { m = l }
            if r < items.count && less(r, m) { m = r }
            if m == i { break }
            items.swapAt(i, m)
            i = m
        }
        return top
    }

    private func less(_ a: Int, _ b: Int) -> Bool { (items[a].at, items[a].order) < (items[b].at, items[b].order) }
}
