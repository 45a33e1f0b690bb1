import XCTest
@testable import GunnCore

/// A scripted scenario of mixed inputs whose final chain head is recorded here: any change to
/// ordering, uuids, canonical JSON, reducers or the pipeline shows up as a different head.
final class GoldenTraceTests: XCTestCase {
    static let recordedHead = "d65cb8673a2da9ebe3577a51ba254dd57803af3aab81b02b88f2477ded89cf2c" // re-recorded when uuids became a function of (world_seed, global_seq)

    struct Counts { var committed = 0, rejected: [ErrorCode: Int] = [:], replays = 0, deferred = 0 }

    static func run() -> (EngineDriver, Counts) {
        var c = EngineConfig()
        c.quantumMs = 20
        c.maxIntentsPerQuantum = 8
        c.agentQuota = TokenBucket(capacity: 6, refillPerSecond: 20)
        c.stalenessThreshold = 2
        c.snapshotEvery = 50
        c.backpressure = BackpressureConfig(maxQueueDepth: 6, policy: .dropNewest)
        c.agentClasses["crowd"] = BackpressureConfig(maxQueueDepth: 4, policy: .shedOldest)
        c.agentClasses["patient"] = BackpressureConfig(maxQueueDepth: 3, policy: .defer, maxDeferred: 2)
        var d = EngineDriver(config: c, seed: 0x6775_6E6E)
        d.now = 100.0
        let names: [AgentID] = ["ada", "bo", "cy", "dee", "eli"]
        for (i, n) in names.enumerated() {
            d.register(n, at: Position(x: Double(i), y: 0), agentClass: i == 3 ? "crowd" : i == 4 ? "patient" : nil, weight: i == 0 ? 2 : 1)
        }
        var counts = Counts()
        var inputs = 0
        func note(_ out: [EngineOutput]) {
            for o in out {
                switch o {
                case .intentCommitted: counts.committed += 1
                case .intentRejected(_, _, let e): counts.rejected[e.code, default: 0] += 1
                case .intentDeferred: counts.deferred += 1
                default: break
                }
            }
        }
        var lastContext: [AgentID: ViewSeq] = [:]
        for step in 0..<80 {
            let a = names[step % names.count]
            let ctx = d.engine.viewSeq(of: a)!
            // Every agent acts each round; some rounds add a twist.
            let kind = step % 3
            let payload: JSONValue = kind == 0 ? ["to": [.number(Double(step % 7)), .number(Double(step % 5))]]
                : kind == 1 ? ["text": .string("step \(step) from \(a)")] : ["target": .string(names[(step + 1) % names.count].rawValue), "action": "wave"]
            let ik: IntentKind = kind == 0 ? .move : kind == 1 ? .speak : .interact
            note(d.submit(a, ik, payload, req: ReqID("\(a)-\(step)"), context: ctx, advance: 0.004)); inputs += 1
            if step % 4 == 0 { // a retry of the same request
                note(d.submit(a, ik, payload, req: ReqID("\(a)-\(step)"), context: ctx, advance: 0.001)); inputs += 1
            }
            if step % 6 == 5, let old = lastContext[a] { // an intent decided on an old view
                note(d.submit(a, .speak, ["text": "late"], req: ReqID("\(a)-late-\(step)"), context: old, advance: 0.001)); inputs += 1
            }
            if step % 10 == 9 { // a flood by one agent, in one quantum
                let f = names[(step / 10) % names.count]
                for k in 0..<8 {
                    note(d.submit(f, .speak, ["text": .string("flood \(k)")], req: ReqID("\(f)-flood-\(step)-\(k)"), context: d.engine.viewSeq(of: f)!, advance: 0.0005))
                    inputs += 1
                }
            }
            if step % 5 == 0 { // the world emits
                note(d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": .string("crate\(step % 3)"), "entity": ["pos": [.number(Double(step % 4)), 1]]], sourceID: "world"))))
                inputs += 1
            }
            lastContext[a] = ctx
            if step % 2 == 1 { note(d.handle(.flush, advance: 0.02)); inputs += 1 }
        }
        for _ in 0..<10 { note(d.handle(.flush, advance: 0.05)); inputs += 1 }
        precondition(inputs >= 200, "the scenario must have at least 200 inputs, has \(inputs)")
        return (d, counts)
    }

    func testGoldenTraceHeadReplayAndByteIdenticalRerun() throws {
        let (d, counts) = Self.run()
        let head = try XCTUnwrap(d.engine.log.headChecksum)
        print("golden trace: head \(head) at global_seq \(d.engine.headSeq); committed \(counts.committed), rejected \(counts.rejected), deferred \(counts.deferred)")
        XCTAssertEqual(head, Self.recordedHead, "the golden trace changed")
        // The scenario exercised what it claims to.
        for code in [ErrorCode.staleContext, .quotaExceeded, .queueFull, .intentValidationFailed] {
            XCTAssertGreaterThan(counts.rejected[code] ?? 0, 0, "no \(code.name) in the trace")
        }
        XCTAssertGreaterThan(counts.committed, 100)
        // Replay of the log reproduces the world digest.
        let replayed = try Replay.replay(d.engine.log.entries[...])
        XCTAssertEqual(replayed.digest, d.engine.world.digest)
        XCTAssertTrue(d.engine.log.validateIntegrity().isValid)
        // A second run gives a byte-identical log.
        let (again, _) = Self.run()
        XCTAssertEqual(again.logBytes, d.logBytes)
    }
}
