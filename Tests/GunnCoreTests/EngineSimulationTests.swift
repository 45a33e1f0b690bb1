import Foundation
import XCTest
@testable import GunnCore

/// Deterministic simulation: seeded random scenarios (agents joining, moving, speaking, retrying,
/// flooding, the world emitting), each checked against the invariants of the design. A failing
/// seed is printed; rerun it alone with GUNN_DST_SEED=<seed>.
final class EngineSimulationTests: XCTestCase {
    struct Submission { let intent: Intent; let headAtSubmit: GlobalSeq; var admitted: Bool }

    func testThousandSeedsHoldTheInvariants() {
        let seeds: [UInt64]
        if let one = ProcessInfo.processInfo.environment["GUNN_DST_SEED"], let s = UInt64(one) { seeds = [s] } else { seeds = Array(1...1000) }
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
        c.idempotencyTTLSeconds = 1e9
        let policy: [BackpressurePolicy] = [.dropNewest, .shedOldest, .defer]
        c.backpressure = BackpressureConfig(maxQueueDepth: rng.next(in: 1...6), policy: policy[rng.next(in: 0...2)], maxDeferred: rng.next(in: 0...3))
        c.limits.interactRange = 3
        var d = EngineDriver(config: c, seed: seed)
        d.now = Double(rng.next(in: 0...1000))

        var joined: [AgentID] = []
        var registeredAtHead: [AgentID: GlobalSeq] = [:]
        var submissions: [Submission] = []
        var outcomes: [String: [IntentOutcome]] = [:]   // "agent|req" -> outcomes in order
        var sentIntents: [String: Intent] = [:]
        var problems: [String] = []

        func record(_ out: [EngineOutput]) {
            for o in out {
                switch o {
                case let .intentCommitted(a, r, e): outcomes["\(a)|\(r)", default: []].append(.committed(e))
                case let .intentRejected(a, r, e): outcomes["\(a)|\(r)", default: []].append(.rejected(e))
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

        let steps = rng.next(in: 60...160)
        for step in 0..<steps {
            let advance = Double(rng.next(in: 0...30)) / 1000
            let roll = rng.next(in: 0...99)
            if joined.isEmpty || roll < 6 {
                let id = AgentID("ag\(joined.count)")
                let spawn = rng.next(below: 5) == 0 ? nil : Position(x: Double(rng.next(in: 0...5)), y: Double(rng.next(in: 0...5)))
                record(d.handle(.registerAgent(AgentRegistration(agentID: id, weight: rng.next(in: 1...3), spawn: spawn)), advance: advance))
                // The agent's view starts at the head when it registered (a due quantum closes first; its spawn comes after).
                registeredAtHead[id] = d.engine.headSeq - (spawn == nil ? 0 : 1)
                joined.append(id)
                continue
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
            case 90..<95:
                record(d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": .string("obj\(rng.next(in: 0...3))"), "entity": ["pos": [1, 1]]], sourceID: "world")), advance: advance))
            default:
                record(d.handle(.flush, advance: advance + 0.03))
            }
        }
        for _ in 0..<200 { record(d.handle(.flush, advance: 0.05)) }

        let entries = d.engine.log.entries
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
            if let first = outcomes[key]?.first(where: { $0.error.map { ![.quotaExceeded, .queueFull].contains($0.code) } ?? true }), first.effect == nil {
                problems.append("\(key) committed after a final rejection \(first)")
            }
            let expectedKind = intent.kind == .custom ? nil : intent.kind.rawValue
            if let expectedKind, e.effect.kind != expectedKind { problems.append("\(key) became \(e.effect.kind)") }
            if intent.kind == .speak, e.effect.payload["text"] == "" { problems.append("\(key) empty speech passed the validator") }
            // Staleness was checked against what this agent could see from others when it submitted:
            // its view position p is the global position base + p (all observe all in part 1).
            if let sub = submissions.last(where: { $0.admitted && "\($0.intent.agentID)|\($0.intent.reqID)" == key && $0.headAtSubmit < e.globalSeq }),
               let base = registeredAtHead[intent.agentID] {
                let from = base + sub.intent.contextSeq
                let foreign = entries.filter { $0.globalSeq > from && $0.globalSeq <= sub.headAtSubmit && $0.effect.sourceID != intent.agentID.rawValue }.count
                if foreign > c.stalenessThreshold, ProcessInfo.processInfo.environment["GUNN_DST_DEBUG"] != nil {
                    for x in submissions where "\(x.intent.agentID)|\(x.intent.reqID)" == key { print("  sub head \(x.headAtSubmit) admitted \(x.admitted) ctx \(x.intent.contextSeq)") }
                    print("  outcomes \(outcomes[key]!.map { $0.effect?.globalSeq.description ?? $0.error!.code.name })")
                    print("DEBUG key \(key) base \(base) ctx \(sub.intent.contextSeq) headAtSubmit \(sub.headAtSubmit) commit \(e.globalSeq) quantum \(c.quantumMs)")
                    for x in entries where x.globalSeq > from - 2 && x.globalSeq <= e.globalSeq { print("  \(x.globalSeq) \(x.effect.kind) src=\(x.effect.sourceID) req=\(x.reqID?.rawValue ?? "-")") }
                }
                if foreign > c.stalenessThreshold { problems.append("\(key) committed with \(foreign) missed effects (threshold \(c.stalenessThreshold))") }
            }
        }
        // A retried req_id gets its first final outcome every time after.
        for (key, list) in outcomes {
            guard let firstFinal = list.firstIndex(where: { $0.error.map { ![.quotaExceeded, .queueFull].contains($0.code) } ?? true }) else { continue }
            for later in list[(firstFinal + 1)...] where later != list[firstFinal] {
                problems.append("\(key): first outcome \(list[firstFinal]) then \(later)")
            }
        }
        // Nothing left hanging: every submitted intent got an answer.
        for key in sentIntents.keys where outcomes[key] == nil { problems.append("\(key) never answered") }
        return problems
    }
}
