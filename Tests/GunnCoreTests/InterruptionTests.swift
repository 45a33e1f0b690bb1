import XCTest
@testable import GunnCore

/// Cancel tokens: staleness by observation, interrupt policies, debounce, deadlines, budgets.
final class InterruptionTests: XCTestCase {
    static func cancellations(_ out: [EngineOutput]) -> [(AgentID, ReqID, String, ErrorCode)] {
        out.compactMap { if case let .generationCancelled(a, r, reason, e) = $0 { return (a, r, reason, e.code) } else { return nil } }
    }

    func token(_ out: [EngineOutput]) -> CancelToken? {
        out.lazy.compactMap { if case .cancelTokenIssued(let t) = $0 { return t } else { return nil } }.first
    }

    /// Client-side view: start from a resync, apply every delta strictly.
    struct Client {
        var seq: ViewSeq
        var doc: JSONValue
        var seqs: [ViewSeq] = []
        mutating func take(_ engine: inout Engine, _ agent: AgentID, at now: HostTime) throws {
            while let d = engine.nextObservation(for: agent, at: now) {
                XCTAssertGreaterThan(d.viewSeq, seq)
                doc = try d.patches.apply(to: doc)
                XCTAssertEqual(d.contextDigest, HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(doc)))
                seq = d.viewSeq
                seqs.append(d.viewSeq)
            }
        }
    }

    /// The conversation of the issue, returned as the log bytes and what C received.
    func conversation() throws -> (log: [UInt8], cSeqs: [ViewSeq], cancelled: String, bSeq: GlobalSeq, aSpeech: Effect) {
        var d = EngineDriver(seed: 2026)
        for (i, id) in (["A", "B", "C"] as [AgentID]).enumerated() { d.register(id, at: Position(x: Double(i), y: 0)) }
        let start = d.engine.resync("C")!
        var c = Client(seq: start.viewSeq, doc: start.document)
        // A starts generating against its current view.
        let t1 = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "a-1")))))
        XCTAssertEqual(t1.contextSeq, d.engine.viewSeq(of: "A"))
        XCTAssertEqual(t1.contextDigest, d.engine.view(of: "A")!.contextDigest)
        // B speaks: A's token is cancelled, naming B's effect.
        let bOut = d.submit("B", .speak, ["text": "the bridge is out"], req: "b-1", advance: 0.01)
        let bEffect = try XCTUnwrap(EngineDriver.committed(bOut).first)
        let cancels = Self.cancellations(bOut)
        XCTAssertEqual(cancels.count, 1)
        XCTAssertEqual(cancels.first?.0, "A")
        XCTAssertEqual(cancels.first?.1, "a-1")
        XCTAssertEqual(cancels.first?.2, "stale_due_to:\(bEffect.globalSeq)")
        XCTAssertEqual(cancels.first?.3, .generationCancelled)
        XCTAssertTrue(d.engine.activeGenerations(of: "A").isEmpty)
        // A regenerates against the new view, and its Speak commits.
        let t2 = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "a-2")), advance: 0.01)))
        XCTAssertGreaterThan(t2.contextSeq, t1.contextSeq)
        d.handle(.generationProgress("A", "a-2", tokensEmitted: 7))
        d.handle(.endGeneration("A", "a-2"))
        let aOut = d.submit("A", .speak, ["text": "then we take the ford"], req: "a-2", context: t2.contextSeq, advance: 0.01)
        let aEffect = try XCTUnwrap(EngineDriver.committed(aOut).first, "\(aOut)")
        // C received both, in order, with increasing view_seq, and its view is filter(world).
        try c.take(&d.engine, "C", at: d.now)
        XCTAssertEqual(c.doc["entities"]?["B"]?["last_speech"]?["text"], "the bridge is out")
        XCTAssertEqual(c.doc["entities"]?["A"]?["last_speech"]?["text"], "then we take the ford")
        XCTAssertEqual(c.doc, d.engine.filteredView(of: "C"))
        return (d.logBytes, c.seqs, cancels[0].2, bEffect.globalSeq, aEffect)
    }

    func testConversationCancelsStaleGenerationRegeneratesAndReplaysIdentically() throws {
        let first = try conversation()
        XCTAssertEqual(first.cSeqs.count, 2)
        XCTAssertLessThan(first.cSeqs[0], first.cSeqs[1])
        XCTAssertGreaterThan(first.aSpeech.globalSeq, first.bSeq)
        let second = try conversation()
        XCTAssertEqual(second.log, first.log, "a second run with the same seed gives a byte-identical log")
        XCTAssertEqual(second.cSeqs, first.cSeqs)
    }

    func testOnlyConflictIgnoresUnrelatedEffectsAndCancelsOnConflicting() throws {
        var d = EngineDriver()
        d.handle(.registerAgent(AgentRegistration(agentID: "A", spawn: Position(x: 0, y: 0), observation: ObservationPolicy(interrupt: .onlyConflict))))
        d.register("B", at: Position(x: 1, y: 0))
        d.register("C", at: Position(x: 2, y: 0))
        _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g", focus: ["B"])))))
        // C moving is observed by A but unrelated to what it is generating about.
        let unrelated = d.submit("C", .move, ["to": [2, 1]], req: "c1", advance: 0.01)
        XCTAssertTrue(unrelated.contains { if case .observationQueued(agent: "A", _, _, _) = $0 { return true } else { return false } })
        XCTAssertTrue(Self.cancellations(unrelated).isEmpty)
        // Someone touching A itself conflicts...
        let touch = d.submit("C", .interact, ["target": "A", "action": "tap"], req: "c2", advance: 0.01)
        XCTAssertEqual(Self.cancellations(touch).map(\.2), ["stale_due_to:\(EngineDriver.committed(touch)[0].globalSeq)"])
        // ...and so does a change to the focus entity.
        _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g2", focus: ["B"])), advance: 0.01)))
        let focus = d.submit("B", .move, ["to": [1, 1]], req: "b1", advance: 0.01)
        XCTAssertEqual(Self.cancellations(focus).map(\.1), ["g2"])
    }

    func testBurstInsideDebounceCancelsOnce() throws {
        var d = EngineDriver()
        d.handle(.registerAgent(AgentRegistration(agentID: "A", spawn: Position(x: 0, y: 0), observation: ObservationPolicy(debounceMs: 100))))
        d.register("B", at: Position(x: 1, y: 0))
        _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g1")))))
        var cancelled = 0
        for i in 0..<5 { // a burst: one every 10 ms
            let out = d.submit("B", .speak, ["text": .string("b\(i)")], req: ReqID("b\(i)"), advance: 0.01)
            cancelled += Self.cancellations(out).count
            if i == 0 { // A regenerates at once
                _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g2")))))
            }
        }
        XCTAssertEqual(cancelled, 1, "the burst cancels once")
        XCTAssertEqual(d.engine.activeGenerations(of: "A").map(\.reqID), ["g2"])
        // After the window, a new stale trigger cancels again.
        let later = d.submit("B", .speak, ["text": "later"], req: "b9", advance: 0.2)
        XCTAssertEqual(Self.cancellations(later).map(\.1), ["g2"])
    }

    func testDeadlineEndsGenerationWithOperationTimeout() throws {
        var d = EngineDriver()
        d.register("A")
        let out = d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g", deadlineMs: 50)))
        let t = try XCTUnwrap(token(out))
        XCTAssertTrue(out.contains(.wakeAt(t.deadlineAt!)))
        XCTAssertTrue(Self.cancellations(d.handle(.flush, advance: 0.04)).isEmpty)
        let due = Self.cancellations(d.handle(.flush, advance: 0.02))
        XCTAssertEqual(due.map(\.2), ["deadline"])
        XCTAssertEqual(due.map(\.3), [.operationTimeout])
        XCTAssertTrue(d.engine.activeGenerations(of: "A").isEmpty)
    }

    func testTokenBudgetEndsGenerationWithTokenBudgetExceeded() throws {
        var d = EngineDriver()
        d.register("A")
        _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g", tokenBudget: 5)))))
        XCTAssertTrue(Self.cancellations(d.handle(.generationProgress("A", "g", tokensEmitted: 5))).isEmpty)
        let over = Self.cancellations(d.handle(.generationProgress("A", "g", tokensEmitted: 6)))
        XCTAssertEqual(over.map(\.3), [.tokenBudgetExceeded])
        XCTAssertEqual(over.map(\.2), ["token_budget"])
    }

    func testOwnEffectsNeverInterruptAndTokensAreRefusedWhenInvalid() throws {
        var d = EngineDriver()
        d.register("A"); d.register("B")
        _ = try XCTUnwrap(token(d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g")))))
        XCTAssertTrue(Self.cancellations(d.submit("A", .move, ["to": [1, 1]], req: "a1")).isEmpty)
        let dup = d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g")))
        guard case .generationRefused(_, _, let e)? = dup.first else { return XCTFail("\(dup)") }
        XCTAssertEqual(e.code, .duplicateReqID)
        let ghost = d.handle(.beginGeneration(GenerationRequest(agentID: "ghost", reqID: "g")))
        guard case .generationRefused(_, _, let e2)? = ghost.first else { return XCTFail("\(ghost)") }
        XCTAssertEqual(e2.code, .invalidAgentID)
    }
}

/// Cancellations in the log: after a Cancel, the worker's halt report is committed as a
/// GenerationCancelled effect (reason, tokens discarded); a generation that simply finished is not.
final class CancellationRecordTests: XCTestCase {
    func cancelledRecords(_ out: [EngineOutput]) -> [Effect] {
        EngineDriver.entries(out).map(\.effect).filter { $0.kind == "GenerationCancelled" }
    }

    func testAHaltAfterACancelIsLoggedWithReasonAndTokensDiscarded() throws {
        var d = EngineDriver(seed: 5)
        d.register("A", at: Position(x: 0, y: 0))
        d.register("B", at: Position(x: 1, y: 0))
        d.register("C", at: Position(x: 0, y: 1))
        d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "a-1")))
        let b = d.submit("B", .speak, ["text": "stop"], req: "b-1", advance: 0.01)
        let bSeq = try XCTUnwrap(EngineDriver.committed(b).first).globalSeq
        XCTAssertTrue(cancelledRecords(b).isEmpty, "nothing is logged before the worker reports the halt")
        XCTAssertEqual(d.engine.cancelledAwaitingHalt(of: "A"), ["a-1"])
        let entitiesBefore = d.engine.world.entities
        let viewSeqs = ["A", "B", "C"].map { d.engine.viewSeq(of: AgentID($0)) }
        let halted = d.handle(.generationHalted("A", "a-1", tokensEmitted: 9, haltLatencyUs: 640), advance: 0.001)
        let record = try XCTUnwrap(cancelledRecords(halted).first)
        XCTAssertEqual(record.payload, ["agent_id": "A", "req_id": "a-1", "reason": .string("stale_due_to:\(bSeq)"), "tokens_discarded": 9, "halt_latency_us": 640])
        XCTAssertEqual(record.sourceID, "A")
        XCTAssertGreaterThan(record.globalSeq, bSeq)
        XCTAssertEqual(d.engine.cancelledAwaitingHalt(of: "A"), [])
        // A record, not a change: no view moves, nobody is interrupted, the entities are as they were.
        XCTAssertEqual(["A", "B", "C"].map { d.engine.viewSeq(of: AgentID($0)) }, viewSeqs)
        XCTAssertFalse(halted.contains { if case .observationQueued = $0 { return true } else { return false } })
        XCTAssertEqual(d.engine.world.entities, entitiesBefore)
        // A second report of the same halt logs nothing more.
        XCTAssertTrue(cancelledRecords(d.handle(.generationHalted("A", "a-1", tokensEmitted: 9, haltLatencyUs: 0))).isEmpty)
        // A generation that finished by itself: its halt report only retires it.
        d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "a-2")))
        XCTAssertTrue(cancelledRecords(d.handle(.generationHalted("A", "a-2", tokensEmitted: 12, haltLatencyUs: 0))).isEmpty)
        XCTAssertTrue(d.engine.activeGenerations(of: "A").isEmpty)
        // Replaying the log gives the same world.
        var replayed = Engine(config: EngineDriver.immediate(), worldID: "w1", worldSeed: 5)
        try replayed.restore(from: d.engine.log.entries, at: d.now)
        XCTAssertEqual(replayed.world.digest, d.engine.world.digest)
    }

    func testADeadlineCancellationIsLoggedWithItsReason() throws {
        var d = EngineDriver()
        d.register("A")
        d.handle(.beginGeneration(GenerationRequest(agentID: "A", reqID: "g", deadlineMs: 50)))
        let expired = d.handle(.flush, advance: 0.1)
        XCTAssertEqual(InterruptionTests.cancellations(expired).map(\.2), ["deadline"])
        let record = try XCTUnwrap(cancelledRecords(d.handle(.generationHalted("A", "g", tokensEmitted: 3, haltLatencyUs: 0))).first)
        XCTAssertEqual(record.payload["reason"], "deadline")
    }

    func testAMalformedRecordIsRefused() {
        var d = EngineDriver()
        d.register("A")
        for payload: JSONValue in [["agent_id": "A", "req_id": "r", "reason": "x"], ["agent_id": "A", "req_id": "r", "reason": "x", "tokens_discarded": -1],
                                   ["agent_id": "A", "reason": "x", "tokens_discarded": 1]] {
            let out = d.handle(.emit(EffectDraft(kind: "GenerationCancelled", payload: payload, sourceID: "ext")))
            XCTAssertTrue(out.contains { if case .emitRejected = $0 { return true } else { return false } }, "\(payload): \(out)")
        }
    }
}
