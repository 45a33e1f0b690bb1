import XCTest
@testable import GunnCore

final class EnginePipelineTests: XCTestCase {
    func code(_ out: [EngineOutput]) -> ErrorCode? { EngineDriver.rejected(out).first?.1.code }

    func testMoveCommitsAnEffectWithChainedEntryAndNormalisesTo3D() throws {
        var d = EngineDriver()
        d.register("a1")
        let out = d.submit("a1", .move, ["to": [3, 4]], req: "r1")
        let effects = EngineDriver.committed(out)
        XCTAssertEqual(effects.count, 1)
        XCTAssertEqual(effects[0].kind, "Move")
        XCTAssertEqual(effects[0].payload["to"], [3, 4, 0])
        XCTAssertEqual(effects[0].globalSeq, 2) // 1 is the agent's spawn
        XCTAssertEqual(d.engine.world.positions["a1"], Position(x: 3, y: 4, z: 0))
        let entries = d.engine.log.entries
        XCTAssertEqual(entries.map(\.globalSeq), [1, 2])
        XCTAssertEqual(entries[1].checksum, HashChain.checksum(previous: entries[0].checksum, effect: entries[1].effect.json))
        XCTAssertEqual(entries[1].sourceMetadata["world_id"], "w1")
        XCTAssertEqual(entries[1].reqID, "r1")
        XCTAssertTrue(d.engine.log.validateIntegrity().isValid)
    }

    func testUnknownAgentIsInvalidAgentID() {
        var d = EngineDriver()
        XCTAssertEqual(code(d.submit("ghost", .speak, ["text": "hi"], req: "r")), .invalidAgentID)
        XCTAssertEqual(d.engine.headSeq, 0)
        let bad = d.handle(.registerAgent(AgentRegistration(agentID: "bad id/with slash")))
        guard case .registrationRejected(_, let e)? = bad.first else { return XCTFail("\(bad)") }
        XCTAssertEqual(e.code, .invalidAgentID)
    }

    func testRetriedRequestIdCreatesNoSecondEffectAndGetsTheFirstOutcome() {
        var d = EngineDriver()
        d.register("a1")
        let first = EngineDriver.committed(d.submit("a1", .speak, ["text": "hello"], req: "r1", context: 1))
        let head = d.engine.headSeq
        let again = d.submit("a1", .speak, ["text": "hello"], req: "r1", context: 1)
        XCTAssertEqual(EngineDriver.committed(again), first)
        XCTAssertTrue(EngineDriver.entries(again).isEmpty)
        XCTAssertEqual(d.engine.headSeq, head)
        // The same id for a different intent is a coded error, not a silent replay.
        XCTAssertEqual(code(d.submit("a1", .speak, ["text": "other"], req: "r1", context: 1)), .duplicateReqID)
        // A failed intent's retry gets the same failure.
        let failed = d.submit("a1", .speak, ["text": ""], req: "r2")
        XCTAssertEqual(code(failed), .intentValidationFailed)
        XCTAssertEqual(EngineDriver.rejected(d.submit("a1", .speak, ["text": ""], req: "r2")).first?.1, EngineDriver.rejected(failed).first?.1)
    }

    func testQuotaRefusalDoesNotBurnTheRequestId() {
        var c = EngineDriver.immediate()
        c.agentQuota = TokenBucket(capacity: 2, refillPerSecond: 1)
        var d = EngineDriver(config: c)
        d.register("a1", at: nil)
        XCTAssertEqual(EngineDriver.committed(d.submit("a1", .speak, ["text": "1"], req: "r1")).count, 1)
        XCTAssertEqual(EngineDriver.committed(d.submit("a1", .speak, ["text": "2"], req: "r2")).count, 1)
        let refused = EngineDriver.rejected(d.submit("a1", .speak, ["text": "3"], req: "r3", context: 0))
        XCTAssertEqual(refused.first?.1.code, .quotaExceeded)
        XCTAssertEqual(refused.first?.1.retryAfterMs, 1000)
        // After the bucket refilled, the same req_id executes (it was not burned).
        let retried = d.submit("a1", .speak, ["text": "3"], req: "r3", context: 0, advance: 1.0)
        XCTAssertEqual(EngineDriver.committed(retried).count, 1, "\(retried)")
    }

    func testQuotasRefillAtTheirRate() {
        var c = EngineDriver.immediate()
        c.agentQuota = TokenBucket(capacity: 5, refillPerSecond: 10)
        var d = EngineDriver(config: c)
        d.register("a1", at: nil)
        var accepted = 0, n = 0
        // 33 attempts, one every 1/16 s, over exactly 2 s: 5 from the full bucket + 10/s * 2 s of refill.
        for _ in 0..<33 {
            n += 1
            accepted += EngineDriver.committed(d.submit("a1", .speak, ["text": "x"], req: ReqID("q\(n)"), context: 0, advance: 0.0625)).count
        }
        XCTAssertEqual(accepted, 5 + 20, "accepted \(accepted)")
        // Tenant bucket: two agents of one tenant share it.
        var t = EngineDriver.immediate()
        t.tenantQuota = TokenBucket(capacity: 3, refillPerSecond: 1)
        var d2 = EngineDriver(config: t)
        d2.register("a", at: nil); d2.register("b", at: nil)
        let results = (0..<4).map { i in d2.submit(i % 2 == 0 ? "a" : "b", .speak, ["text": "x"], req: ReqID("t\(i)")) }
        XCTAssertEqual(results.filter { !EngineDriver.committed($0).isEmpty }.count, 3)
        XCTAssertEqual(EngineDriver.rejected(results[3]).first?.1.code, .quotaExceeded)
    }

    func testStalenessCountsOnlyWhatThisAgentCouldSeeFromOthers() {
        var d = EngineDriver()
        d.register("a"); d.register("b")
        let ctx = d.engine.viewSeq(of: "a")!
        // a's own effects do not make its context stale...
        XCTAssertEqual(EngineDriver.committed(d.submit("a", .move, ["to": [1, 0]], req: "a1", context: ctx)).count, 1)
        XCTAssertEqual(EngineDriver.committed(d.submit("a", .move, ["to": [2, 0]], req: "a2", context: ctx)).count, 1)
        // ...another agent's effect does (threshold 0).
        _ = d.submit("b", .move, ["to": [5, 5]], req: "b1")
        let stale = d.submit("a", .move, ["to": [3, 0]], req: "a3", context: ctx)
        XCTAssertEqual(code(stale), .staleContext)
        XCTAssertEqual(code(d.submit("a", .move, ["to": [3, 0]], req: "a3", context: ctx)), .staleContext, "first outcome again")
        XCTAssertEqual(code(d.submit("a", .move, ["to": [3, 0]], req: "a4", context: 999)), .invalidViewSeq)
        // A threshold of 1 tolerates one missed effect.
        var t = EngineDriver()
        t.register("a", threshold: 1); t.register("b")
        let c0 = t.engine.viewSeq(of: "a")!
        _ = t.submit("b", .speak, ["text": "x"], req: "b1")
        XCTAssertEqual(EngineDriver.committed(t.submit("a", .speak, ["text": "y"], req: "a1", context: c0)).count, 1)
        _ = t.submit("b", .speak, ["text": "x"], req: "b2")
        XCTAssertEqual(code(t.submit("a", .speak, ["text": "y"], req: "a2", context: c0)), .staleContext)
    }

    func testValidatorRefusalsReachTheSubmitter() {
        var c = EngineDriver.immediate()
        c.limits.maxSpeakScalars = 5
        c.limits.cooldownSeconds[.interact] = 10
        var d = EngineDriver(config: c)
        d.register("a")
        d.register("walker", at: nil)
        d.register("mute", permissions: [AgentRegistration.submitPermission, IntentKind.move.permission])
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "rock", "entity": ["pos": [1, 1]]], sourceID: "world")))
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "far", "entity": ["pos": [100, 0]]], sourceID: "world")))
        XCTAssertEqual(code(d.submit("walker", .move, ["to": [1, 1]], req: "1")), .intentValidationFailed, "mover not in the world")
        XCTAssertEqual(code(d.submit("a", .move, ["to": ["x", 1]], req: "2")), .intentValidationFailed)
        XCTAssertEqual(code(d.submit("a", .move, ["to": [1, 2, 3, 4]], req: "3")), .intentValidationFailed)
        XCTAssertEqual(code(d.submit("a", .speak, ["text": "too long"], req: "4")), .intentValidationFailed)
        XCTAssertEqual(code(d.submit("a", .speak, [:], req: "5")), .intentValidationFailed)
        XCTAssertEqual(code(d.submit("mute", .speak, ["text": "hi"], req: "6")), .forbidden)
        XCTAssertEqual(code(d.submit("a", .interact, ["target": "far"], req: "7")), .intentValidationFailed)
        XCTAssertEqual(code(d.submit("a", .interact, ["target": "nobody"], req: "8")), .intentValidationFailed)
        XCTAssertEqual(EngineDriver.committed(d.submit("a", .interact, ["target": "rock", "action": "kick"], req: "9")).count, 1)
        let cooling = EngineDriver.rejected(d.submit("a", .interact, ["target": "rock"], req: "10", advance: 1))
        XCTAssertEqual(cooling.first?.1.code, .intentValidationFailed)
        XCTAssertNotNil(cooling.first?.1.retryAfterMs)
        XCTAssertEqual(EngineDriver.committed(d.submit("a", .interact, ["target": "rock"], req: "11", advance: 10)).count, 1)
        XCTAssertEqual(code(d.submit("a", .custom, ["kind": "Dance"], req: "12")), .unknownEffectKind)
        XCTAssertEqual(d.engine.world.entities["rock"]?["last_interaction"]?["by"], "a")
    }

    func testSchemaVersionsMajorRefusedOldMinorWarned() {
        var d = EngineDriver()
        d.register("a", at: nil)
        var i = d.intent("a", .speak, ["text": "hi"], req: "r1")
        i.schemaVersion = "2.0.0"
        XCTAssertEqual(code(d.handle(.submitIntent(i))), .unsupportedSchemaVersion)
        i.schemaVersion = "1.0.3"
        let out = d.handle(.submitIntent(i))
        XCTAssertEqual(EngineDriver.committed(out).count, 1)
        XCTAssertTrue(out.contains { if case .warning(let w) = $0 { return w.contains("deprecated") } else { return false } })
        XCTAssertThrowsError(try SchemaVersion(parsing: "1.0"))
        XCTAssertThrowsError(try SchemaVersion(parsing: "01.0.0"))
        XCTAssertEqual(try SchemaVersion(parsing: "1.10.2"), SchemaVersion(1, 10, 2))
    }

    func testIntentJSONReadsTheSeedSpellingAndRefusesBadFields() throws {
        let i = try Intent(json: JSONParser.parse(#"{"kind":"Move","payload":{"to":[1,2]},"context_seq":3,"req_id":"r","agent_id":"a","priority":2,"schema_version":"1.1.0"}"#))
        XCTAssertEqual(i.kind, .move)
        XCTAssertEqual(try Intent(json: i.json), i)
        for bad in [#"{"kind":"Fly","context_seq":0,"req_id":"r","agent_id":"a"}"#, #"{"kind":"Move","context_seq":-1,"req_id":"r","agent_id":"a"}"#,
                    #"{"kind":"Move","context_seq":0,"req_id":"","agent_id":"a"}"#, #"{"kind":"Move","context_seq":0,"req_id":"r"}"#] {
            XCTAssertThrowsError(try Intent(json: JSONParser.parse(bad)), bad) { XCTAssertEqual(($0 as? GunnError)?.code, .invalidIntent) }
        }
    }

    func testEmitOfUnknownKindIsRefusedNeverIgnored() {
        var d = EngineDriver()
        let out = d.handle(.emit(EffectDraft(kind: "Teleport", payload: [:], sourceID: "unity")))
        guard case .emitRejected(_, _, let e)? = out.first else { return XCTFail("\(out)") }
        XCTAssertEqual(e.code, .unknownEffectKind)
        XCTAssertEqual(d.engine.headSeq, 0)
    }

    func testCustomReducerAndCustomIntent() throws {
        var d = EngineDriver()
        try d.engine.registerReducer(kind: "Score") { state, effect throws(GunnError) in
            guard case .string(let who)? = effect.payload["agent_id"], var e = state.entities[who] else { throw GunnError(.intentValidationFailed, "no scorer") }
            let points = e["score"]?.numberValue ?? 0
            e["score"] = .number(points + (effect.payload["data"]?["points"]?.numberValue ?? 0))
            state.setEntity(who, e)
        }
        XCTAssertThrowsError(try d.engine.registerReducer(kind: "Move") { _, _ throws(GunnError) in })
        d.register("a")
        _ = d.submit("a", .custom, ["kind": "Score", "data": ["points": 3]], req: "1")
        _ = d.submit("a", .custom, ["kind": "Score", "data": ["points": 4]], req: "2")
        XCTAssertEqual(d.engine.world.entities["a"]?["score"], 7)
    }

    func testCancelWithdrawsAQueuedIntent() {
        var c = EngineConfig()
        c.quantumMs = 20
        var d = EngineDriver(config: c)
        d.register("a", at: nil)
        _ = d.submit("a", .speak, ["text": "one"], req: "r1", context: 0)
        _ = d.submit("a", .speak, ["text": "two"], req: "r2", context: 0)
        let cancelled = d.handle(.cancelIntent("a", "r1"))
        XCTAssertEqual(code(cancelled), .generationCancelled)
        let out = d.handle(.flush, advance: 0.05)
        XCTAssertEqual(EngineDriver.committed(out).map { $0.payload["text"] }, ["two"])
    }
}
