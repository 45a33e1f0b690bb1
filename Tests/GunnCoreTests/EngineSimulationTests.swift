import Foundation
import XCTest
@testable import GunnCore

/// Deterministic simulation: seeded random scenarios (agents joining, moving, speaking, retrying,
/// flooding, the world emitting), each checked against the invariants of the design. A failing
/// seed is printed; rerun it alone with GUNN_DST_SEED=<seed>.
final class EngineSimulationTests: XCTestCase {
    struct Submission { let intent: Intent; let headAtSubmit: GlobalSeq; var admitted: Bool }

    // 1,000 seeds in four parts, so that the parallel runner spreads them over the cores.
    func testSeeds1To250HoldTheInvariants() { run(1...250) }
    func testSeeds251To500HoldTheInvariants() { run(251...500) }
    func testSeeds501To750HoldTheInvariants() { run(501...750) }
    func testSeeds751To1000HoldTheInvariants() { run(751...1000) }

    func run(_ range: ClosedRange<UInt64>) {
        let seeds: [UInt64]
        if let one = ProcessInfo.processInfo.environment["GUNN_DST_SEED"], let s = UInt64(one) {
            seeds = range.contains(s) ? [s] : []
        } else {
            seeds = Array(range)
        }
        var failures = 0
        for seed in seeds {
            let problems = Self.simulate(seed: seed)
            if !problems.isEmpty {
                failures += 1
                XCTFail("seed \(seed) broke invariants (rerun: GUNN_DST_SEED=\(seed) swift test --filter EngineSimulationTests): \(problems.prefix(5))")
                if failures >= 5 { break }
            }
        }
    }

    static func simulate(seed: UInt64) -> [String] {
        var rng = SplitMix64(seed: seed)
        var c = EngineConfig()
        c.quantumMs = [0, 5, 20][rng.next(in: 0...2)]
        c.maxIntentsPerQuantum = rng.next(in: 1...16)
        c.agentQuota = TokenBucket(capacity: Double(rng.next(in: 1...10)), refillPerSecond: Double(rng.next(in: 5...50)))
        c.tenantQuota = TokenBucket(capacity: Double(rng.next(in: 5...40)), refillPerSecond: Double(rng.next(in: 20...200)))
        c.stalenessThreshold = rng.next(in: 0...3)
        c.snapshotEvery = rng.next(in: 5...40)
        // A bounded window (1 to 3 snapshots) and a view cache small enough to be evicted.
        c.memory = MemoryLimits(snapshots: rng.next(in: 1...3), viewCacheBytes: rng.next(in: 0...4) * 400, viewCacheCheckEvery: rng.next(in: 1...8))
        c.idempotencyTTLSeconds = 1e9
        let policy: [BackpressurePolicy] = [.dropNewest, .shedOldest, .defer]
        c.backpressure = BackpressureConfig(maxQueueDepth: rng.next(in: 1...6), policy: policy[rng.next(in: 0...2)], maxDeferred: rng.next(in: 0...3))
        c.limits.interactRange = 3
        var d = EngineDriver(config: c, seed: seed)
        d.now = Double(rng.next(in: 0...1000))

        var joined: [AgentID] = []
        var policies: [AgentID: ObservationPolicy] = [:]
        /// What each agent observed: view_seq -> global_seq, from the engine's outputs.
        var observedAt: [AgentID: [ViewSeq: GlobalSeq]] = [:]
        /// Each agent's view as a client holds it: the view at registration plus every delta taken.
        var clientViews: [AgentID: (seq: ViewSeq, doc: JSONValue)] = [:]
        var submissions: [Submission] = []
        var outcomes: [String: [(outcome: IntentOutcome, life: Int)]] = [:]   // "agent|req" -> outcomes in order, by engine life
        /// Which engine (0, then one more per restore) an outcome came from.
        var life = 0
        /// Requests that were waiting in a queue when the engine was restored (lost with it, like
        /// a crash: the client retries them).
        var lostAtRestore: Set<String> = []
        /// The global_seq of the view each client holds (to resume from after a restore).
        var clientGlobal: [AgentID: GlobalSeq] = [:]
        var sentIntents: [String: Intent] = [:]
        var problems: [String] = []

        func record(_ out: [EngineOutput]) {
            for o in out {
                switch o {
                case let .intentCommitted(a, r, e): outcomes["\(a)|\(r)", default: []].append((.committed(e), life))
                case let .intentRejected(a, r, e): outcomes["\(a)|\(r)", default: []].append((.rejected(e), life))
                case let .observationQueued(a, v, g, _):
                    if observedAt[a]?[v] != nil { problems.append("\(a) got view_seq \(v) twice") }
                    observedAt[a, default: [:]][v] = g
                    // (After a restore view_seq continues the client's numbering, past any global_seq.)
                    if v > g && life == 0 { problems.append("\(a) view_seq \(v) ahead of global_seq \(g)") }
                default: break
                }
            }
        }
        func submit(_ intent: Intent, advance: Double) {
            // Close a due quantum first, so that `head` is what the engine evaluates this intent against.
            record(d.handle(.flush, advance: advance))
            let head = d.engine.headSeq
            sentIntents["\(intent.agentID)|\(intent.reqID)"] = intent
            let out = d.handle(.submitIntent(intent))
            record(out)
            // Admitted: evaluated afresh and queued or committed now (not pending, not a replayed outcome).
            let admitted = !out.contains { o in
                switch o {
                case let .intentPending(a, r), let .intentRejected(a, r, _): return a == intent.agentID && r == intent.reqID
                case let .intentCommitted(a, r, e): return a == intent.agentID && r == intent.reqID && e.globalSeq <= head
                default: return false
                }
            }
            submissions.append(Submission(intent: intent, headAtSubmit: head, admitted: admitted))
        }

        /// Takes every due observation of every agent and applies it, strictly, to the client's view.
        func drain() {
            for a in joined {
                let bound = policies[a]!.maxPendingObservations
                if d.engine.pendingObservations(of: a) > bound { problems.append("\(a) queue \(d.engine.pendingObservations(of: a)) over its bound \(bound)") }
                while let delta = d.engine.nextObservation(for: a, at: d.now) {
                    var client = clientViews[a]!
                    if delta.viewSeq <= client.seq { problems.append("\(a) view_seq went from \(client.seq) to \(delta.viewSeq)") }
                    do {
                        client.doc = try delta.patches.apply(to: client.doc)
                    } catch {
                        problems.append("\(a) delta \(delta.viewSeq) does not apply: \(error)")
                        return
                    }
                    if policies[a]!.hiddenFields.contains("secret"), CanonicalJSON.encodeString(delta.patches.json).contains("s3cr3t") {
                        problems.append("\(a) received a hidden field")
                    }
                    if delta.contextDigest != HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(client.doc)) {
                        problems.append("\(a) delta \(delta.viewSeq) digest does not match the view it produces")
                    }
                    client.seq = delta.viewSeq
                    clientViews[a] = client
                    clientGlobal[a] = delta.globalSeq
                }
                if d.engine.pendingObservations(of: a) == 0, let c = clientViews[a], c.doc != d.engine.filteredView(of: a) {
                    problems.append("\(a) at view_seq \(c.seq): client view differs from filter(world)")
                }
            }
        }

        let steps = rng.next(in: 60...160)
        for step in 0..<steps {
            let advance = Double(rng.next(in: 0...30)) / 1000
            let roll = rng.next(in: 0...99)
            if joined.isEmpty || roll < 6 {
                let id = AgentID("ag\(joined.count)")
                let spawn = rng.next(below: 5) == 0 ? nil : Position(x: Double(rng.next(in: 0...5)), y: Double(rng.next(in: 0...5)))
                let policy = ObservationPolicy(
                    distanceLimit: rng.next(below: 2) == 0 ? nil : Double(rng.next(in: 1...4)),
                    requireRelationship: rng.next(below: 4) == 0,
                    hiddenFields: rng.next(below: 2) == 0 ? ["secret"] : [],
                    latency: LatencyModel(baseMs: Double(rng.next(in: 0...5)), jitterMs: Double(rng.next(in: 0...5))),
                    maxPatchOps: rng.next(in: 1...12),
                    maxPendingObservations: rng.next(in: 1...8))
                policies[id] = policy
                let out = d.handle(.registerAgent(AgentRegistration(agentID: id, weight: rng.next(in: 1...3), spawn: spawn, observation: policy)), advance: advance)
                record(out)
                // The client attaches: a whole view, then the deltas that follow it.
                let start = d.engine.resync(id)!
                clientViews[id] = (start.viewSeq, start.document)
                clientGlobal[id] = d.engine.headSeq
                joined.append(id)
                continue
            }
            if roll == 6 && rng.next(below: 3) == 0 {
                // Restore: a fresh engine from a durable snapshot at a random seq (checked against
                // the old engine's world(at:) where its window holds it), the entries after it and
                // the writer's idempotency table; agents register again and each client resumes
                // from the view it holds (from the log when it is older than the window).
                let entries = d.committed
                let at = GlobalSeq(rng.next(in: 0...entries.count))
                let snap: (state: WorldState, checksum: String)?
                do {
                    let w = try Replay.replay(entries[..<Int(at)], reducers: d.engine.reducers)
                    if let mem = d.engine.world(at: at), mem != w { problems.append("world(at: \(at)) differs from the replay") }
                    if at >= d.engine.windowStart && d.engine.world(at: at) == nil { problems.append("world(at: \(at)) nil inside the window") }
                    snap = at == 0 ? nil : (w, entries[Int(at) - 1].checksum)
                } catch { problems.append("replay to \(at) failed: \(error)"); break }
                let requests = entries.compactMap { e in
                    e.reqID.map { RecoveredRequest(agentID: e.agentID!, reqID: $0, effect: e.effect, expiresAt: e.wallTime + c.idempotencyTTLSeconds) }
                }
                var fresh = Engine(config: c, worldID: "w1", worldSeed: seed)
                do { try fresh.restore(snapshot: snap, entries: Array(entries[Int(at)...]), requests: requests, at: d.now) } catch {
                    problems.append("restore from \(at) failed: \(error)"); break
                }
                if fresh.world.digest != d.engine.world.digest || fresh.headSeq != d.engine.headSeq { problems.append("restore from \(at) gives another world") }
                for key in sentIntents.keys where outcomes[key] == nil { lostAtRestore.insert(key) }
                let old = d.engine
                d.engine = fresh
                life += 1
                for a in joined {
                    record(d.handle(.registerAgent(AgentRegistration(agentID: a, observation: policies[a]!))))
                    let held = clientViews[a]!
                    let g = clientGlobal[a]!
                    // What the old engine numbered but never delivered is gone with it.
                    observedAt[a] = (observedAt[a] ?? [:]).filter { $0.key <= held.seq }
                    let past = g < d.engine.windowStart ? try? Replay.replay(entries[..<Int(g)], reducers: d.engine.reducers) : nil
                    let digest = HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(held.doc))
                    if let delta = d.engine.resume(a, fromGlobalSeq: g, digest: digest, heldViewSeq: held.seq, past: past) {
                        do { clientViews[a] = (delta.viewSeq, try delta.patches.apply(to: held.doc)) } catch {
                            problems.append("\(a) resume delta does not apply: \(error)")
                        }
                        if delta.viewSeq <= held.seq { problems.append("\(a) resumed at view_seq \(delta.viewSeq) after holding \(held.seq)") }
                    } else {
                        problems.append("\(a) could not resume from \(g) (window \(d.engine.windowStart), old window \(old.windowStart))")
                        let v = d.engine.resync(a, heldViewSeq: held.seq)!
                        clientViews[a] = (v.viewSeq, v.document)
                    }
                    clientGlobal[a] = d.engine.headSeq
                    if clientViews[a]!.doc != d.engine.filteredView(of: a) { problems.append("\(a) view after resume differs from filter(world)") }
                }
                continue
            }
            if roll == 7 {
                // Memory pressure: some or all delivered views evicted now.
                d.engine.evictViewCache(downTo: rng.next(in: 0...2) * 300)
            }
            let a = joined[rng.next(in: 0...(joined.count - 1))]
            let view = d.engine.viewSeq(of: a)!
            let context = rng.next(below: 4) == 0 ? view - min(view, UInt64(rng.next(in: 0...4))) : view
            switch roll {
            case 6..<40:
                submit(Intent(kind: .move, payload: ["to": [.number(Double(rng.next(in: 0...6))), .number(Double(rng.next(in: 0...6)))]],
                              contextSeq: context, reqID: ReqID("s\(step)"), agentID: a), advance: advance)
            case 40..<65:
                let text: JSONValue = rng.next(below: 10) == 0 ? "" : .string("hello \(step)")
                submit(Intent(kind: .speak, payload: ["text": text], contextSeq: context, reqID: ReqID("s\(step)"), agentID: a, priority: rng.next(in: -1...1)), advance: advance)
            case 65..<75:
                let target = joined[rng.next(in: 0...(joined.count - 1))]
                submit(Intent(kind: .interact, payload: ["target": .string(target.rawValue)], contextSeq: context, reqID: ReqID("s\(step)"), agentID: a), advance: advance)
            case 75..<85:
                // Retry an earlier request of any agent, unchanged.
                if !submissions.isEmpty { submit(submissions[rng.next(in: 0...(submissions.count - 1))].intent, advance: advance) }
            case 85..<90:
                for k in 0..<rng.next(in: 3...12) {
                    submit(Intent(kind: .speak, payload: ["text": "flood"], contextSeq: d.engine.viewSeq(of: a)!, reqID: ReqID("f\(step)-\(k)"), agentID: a), advance: 0)
                }
            case 90..<93:
                record(d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": .string("obj\(rng.next(in: 0...3))"),
                    "entity": ["pos": [.number(Double(rng.next(in: 0...6))), .number(Double(rng.next(in: 0...6)))], "secret": "s3cr3t", "hp": .number(Double(rng.next(in: 0...9)))]], sourceID: "world")), advance: advance))
            case 93..<95:
                let from = joined[rng.next(in: 0...(joined.count - 1))].rawValue
                let to = rng.next(below: 2) == 0 ? "obj\(rng.next(in: 0...3))" : joined[rng.next(in: 0...(joined.count - 1))].rawValue
                let kind = rng.next(below: 3) == 0 ? "RelationshipRemove" : "RelationshipSet"
                record(d.handle(.emit(EffectDraft(kind: kind, payload: ["from": .string(from), "to": .string(to), "value": "knows"], sourceID: "world")), advance: advance))
            default:
                record(d.handle(.flush, advance: advance + 0.03))
            }
            drain()
        }
        for _ in 0..<200 { record(d.handle(.flush, advance: 0.05)) }
        d.now += 1 // every latency has passed
        drain()
        for a in joined {
            if d.engine.pendingObservations(of: a) != 0 { problems.append("\(a) has observations left") }
            if let c = clientViews[a], c.doc != d.engine.filteredView(of: a) { problems.append("\(a)'s view after all deltas differs from filter(world)") }
            if let c = clientViews[a], c.seq != d.engine.viewSeq(of: a) { problems.append("\(a) client at view_seq \(c.seq), engine at \(d.engine.viewSeq(of: a)!)") }
        }

        let entries = d.committed
        if d.engine.log.entries.count > c.snapshotEvery * (c.memory.snapshots + 1) + 64 {
            problems.append("the window holds \(d.engine.log.entries.count) entries, over \(c.snapshotEvery) x (\(c.memory.snapshots) + 1)")
        }
        // Strictly increasing global_seq, no gaps, valid chain.
        for (i, e) in entries.enumerated() where e.globalSeq != UInt64(i + 1) { problems.append("entry \(i) has global_seq \(e.globalSeq)") }
        let report = d.engine.log.validateIntegrity()
        if !report.isValid { problems.append("integrity: \(report)") }
        // Replay equal.
        do {
            let replayed = try Replay.replay(entries[...])
            if replayed.digest != d.engine.world.digest { problems.append("replay digest differs") }
        } catch { problems.append("replay failed: \(error)") }
        // No duplicate effect for a req_id; every intent effect belongs to a submitted intent that
        // passed every check.
        var seen: Set<String> = []
        for e in entries {
            guard let req = e.reqID, case .string(let agent)? = e.sourceMetadata["agent_id"] else { continue }
            let key = "\(agent)|\(req)"
            if !seen.insert(key).inserted { problems.append("second effect for \(key)") }
            guard let intent = sentIntents[key] else { problems.append("effect for \(key) that nobody submitted"); continue }
            // A refusal is not durable: after a restore the request is evaluated afresh.
            if let first = outcomes[key]?.first(where: { $0.outcome.error.map { ![.quotaExceeded, .queueFull].contains($0.code) } ?? true }),
               first.outcome.effect == nil, outcomes[key]!.contains(where: { $0.outcome.effect?.globalSeq == e.globalSeq && $0.life == first.life }) {
                problems.append("\(key) committed after a final rejection \(first)")
            }
            let expectedKind = intent.kind == .custom ? nil : intent.kind.rawValue
            if let expectedKind, e.effect.kind != expectedKind { problems.append("\(key) became \(e.effect.kind)") }
            if intent.kind == .speak, e.effect.payload["text"] == "" { problems.append("\(key) empty speech passed the validator") }
            // Staleness was checked against what this agent observed from others before it submitted.
            if let sub = submissions.last(where: { $0.admitted && "\($0.intent.agentID)|\($0.intent.reqID)" == key && $0.headAtSubmit < e.globalSeq }) {
                let foreign = (observedAt[intent.agentID] ?? [:]).filter { view, g in
                    view > sub.intent.contextSeq && g <= sub.headAtSubmit && entries[Int(g) - 1].effect.sourceID != intent.agentID.rawValue
                }.count
                if foreign > c.stalenessThreshold { problems.append("\(key) committed with \(foreign) missed effects (threshold \(c.stalenessThreshold))") }
            }
        }
        // A retried req_id gets its first final outcome every time after.
        // (A committed outcome holds across restores; a refusal within the engine that gave it.)
        for (key, list) in outcomes {
            guard let firstFinal = list.firstIndex(where: { $0.outcome.error.map { ![.quotaExceeded, .queueFull].contains($0.code) } ?? true }) else { continue }
            let first = list[firstFinal]
            for later in list[(firstFinal + 1)...] where later.outcome != first.outcome && (first.outcome.effect != nil || later.life == first.life) {
                problems.append("\(key): first outcome \(first.outcome) then \(later.outcome)")
            }
        }
        // Nothing left hanging: every submitted intent got an answer (or was lost in a restore).
        for key in sentIntents.keys where outcomes[key] == nil && !lostAtRestore.contains(key) { problems.append("\(key) never answered") }
        return problems
    }
}
