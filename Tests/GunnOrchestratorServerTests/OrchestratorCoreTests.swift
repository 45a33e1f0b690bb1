import XCTest
import GunnCore
@testable import GunnOrchestratorServer
import GunnWire

/// The core's pipeline without sockets: what leaves before and after an acknowledgement, what is
/// held while the writer is away, what a refusal rolls back.
final class OrchestratorCoreTests: XCTestCase {
    let c1 = ConnID(1), c2 = ConnID(2), ctl = ConnID(3)

    func core() throws -> OrchestratorCore {
        var s = OrchestratorCore.Settings()
        s.worldID = "w"
        var core = try OrchestratorCore(settings: s, recovered: [], now: 100)
        core.opened(c1, role: "agent", name: "one", pid: 0)
        core.opened(c2, role: "agent", name: "two", pid: 0)
        core.opened(ctl, role: "ctl", name: "ctl", pid: 0)
        return core
    }

    func register(_ agent: String, _ x: Double) -> Frame.Body {
        .registerAgent(RegisterAgent(agentIDForTest: agent, json: ["agent_id": .string(agent), "spawn": [.number(x), 0]]))
    }

    func appends(_ actions: [CoreAction]) -> [(UInt64, [LogEntry])] {
        actions.compactMap { if case let .append(b, e) = $0 { return (b, e) } else { return nil } }
    }

    func sent(_ actions: [CoreAction], to conn: ConnID) -> [Frame] {
        actions.flatMap { a -> [Frame] in if case let .send(c, f) = a, c == conn { return f } else { return [] } }
    }

    /// Acknowledges every append in `actions` (and what that starts), returning all actions.
    func ackAll(_ core: inout OrchestratorCore, _ actions: [CoreAction], now: HostTime = 101) -> [CoreAction] {
        var out: [CoreAction] = []
        var pending = appends(actions)
        while let (b, entries) = pending.first {
            pending.removeFirst()
            let next = core.appendAcknowledged(batch: b, lastSeq: entries.last!.globalSeq, now: now)
            out += next
            pending += appends(next)
        }
        return out
    }

    func testReadsAreAnsweredOnlyOnceTheirBatchIsDurable() throws {
        var core = try self.core()
        let reg = core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100)
        XCTAssertEqual(appends(reg).count, 1, "the registration's entity goes to the writer")
        XCTAssertEqual(sent(reg, to: c1), [], "no reply before the ack")
        var view = ViewSnapshot()
        view.agentID = "a"
        var held: [CoreAction] = []
        held += core.receive(Frame(id: 2, .head(Empty())), from: ctl, now: 100)
        held += core.receive(Frame(id: 3, .status(Empty())), from: ctl, now: 100)
        held += core.receive(Frame(id: 4, .view(view)), from: ctl, now: 100)
        XCTAssertEqual(sent(held, to: ctl), [], "head, status and view wait for the batch")
        XCTAssertEqual(core.engine.headSeq, 1, "the engine already holds the batch")
        let after = ackAll(&core, reg)
        XCTAssertEqual(sent(after, to: c1).first.map { if case .controlResult? = $0.body { return true } else { return false } }, true)
        let answers = sent(after, to: ctl)
        XCTAssertEqual(answers.map(\.id), [2, 3, 4])
        guard case .headResult(let h)? = answers[0].body, case .statusResult(let st)? = answers[1].body, case .view(let v)? = answers[2].body else {
            return XCTFail("\(answers)")
        }
        XCTAssertEqual(h.seq, 1)
        XCTAssertEqual(st.headSeq, 1)
        XCTAssertEqual(v.globalSeq, 1)
        XCTAssertEqual(core.durableHead, 1)
    }

    /// An agent that accepts intents from any context (the tests' intents all say context 0).
    func registerTolerant(_ agent: String) -> Frame.Body {
        .registerAgent(RegisterAgent(agentIDForTest: agent, json: ["agent_id": .string(agent), "spawn": [0, 0], "staleness_threshold": 1_000_000_000]))
    }

    func speak(_ agent: String, _ req: String, _ id: UInt64) -> Frame {
        let i = Intent(kind: .speak, payload: ["text": .string(req)], contextSeq: 0, reqID: ReqID(req), agentID: AgentID(agent))
        return Frame(id: id, .submitIntent(JSONPayload(CanonicalJSON.encode(i.json))))
    }

    func committedSeq(_ f: Frame) -> UInt64? {
        guard case .intentResult(let r)? = f.body, r.committed, let e = try? Effect(json: JSONParser.parse(r.effect)) else { return nil }
        return e.globalSeq
    }

    /// Two batches with the writer: the second is formed (the engine runs ahead) while the first
    /// is being committed, but nothing of it — reply, read, delta — leaves before it is durable,
    /// and what it answers was computed from exactly the state it leaves.
    func testABatchFormedBehindAnotherIsHeldUntilItIsDurable() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, registerTolerant("a")), from: c1, now: 100))
        let first = core.receive([speak("a", "r1", 2)], from: c1, now: 100)
        guard let (b1, e1) = appends(first).first else { return XCTFail("no first append") }
        // 64 inputs wait (minItemsBehind): a second batch goes out behind the first.
        let frames = (0..<63).map { speak("a", "s\($0)", UInt64(10 + $0)) } + [Frame(id: 99, .head(Empty()))]
        let second = core.receive(frames, from: c1, now: 100)
        guard let (b2, e2) = appends(second).first else { return XCTFail("no second append: \(second)") }
        XCTAssertEqual(e2.first?.globalSeq, e1.last!.globalSeq + 1)
        XCTAssertEqual(sent(first + second, to: c1), [], "nothing leaves before an ack")
        XCTAssertEqual(core.inFlight(of: c1), 65)
        // The first is durable: its reply leaves, the second's do not.
        let ack1 = core.appendAcknowledged(batch: b1, lastSeq: e1.last!.globalSeq, now: 101)
        XCTAssertEqual(sent(ack1, to: c1).compactMap(committedSeq), [e1.last!.globalSeq])
        XCTAssertFalse(sent(ack1, to: c1).contains { $0.id >= 10 }, "a reply of the second batch left before it was durable")
        XCTAssertEqual(core.inFlight(of: c1), 64)
        // The second is durable: its replies in order, and the head it read is its own last seq.
        let ack2 = core.appendAcknowledged(batch: b2, lastSeq: e2.last!.globalSeq, now: 102)
        let replies = sent(ack2, to: c1).filter { $0.id != 0 } // without the pushed observations
        XCTAssertEqual(replies.map(\.id), (10..<73).map { UInt64($0) } + [99])
        guard case .headResult(let h)? = replies.last?.body else { return XCTFail("no head reply") }
        XCTAssertEqual(h.seq, e2.last!.globalSeq)
        XCTAssertEqual(core.inFlight(of: c1), 0)
    }

    /// A refusal of the first of two batches (nothing written) rolls both back: every intent of
    /// both is answered with the writer's code, none with the outcome computed ahead.
    func testARefusalRollsBackTheBatchesBehindItToo() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, registerTolerant("a")), from: c1, now: 100))
        let head = core.durableHead
        let first = core.receive([speak("a", "r1", 2)], from: c1, now: 100)
        let second = core.receive((0..<64).map { speak("a", "s\($0)", UInt64(10 + $0)) }, from: c1, now: 100)
        guard let (b1, _) = appends(first).first, let (b2, _) = appends(second).first else { return XCTFail("two appends expected") }
        let refused = core.appendFailed(batch: b1, error: GunnError(.logStorageFailure, "disk full"), mayBeStored: false, now: 101)
        let answers = sent(refused, to: c1).filter { $0.id >= 2 }
        XCTAssertEqual(Set(answers.map(\.id)), Set([2] + (10..<74).map { UInt64($0) }))
        XCTAssertEqual(answers.count, 65, "an intent answered twice or not at all")
        for f in answers {
            guard case .intentResult(let r)? = f.body else { return XCTFail("\(f)") }
            XCTAssertFalse(r.committed, "frame \(f.id) was answered with an outcome that is not durable")
            XCTAssertEqual(r.error?.name, "LOG_STORAGE_FAILURE")
        }
        XCTAssertEqual(core.engine.headSeq, head, "the engine did not return to the durable head")
        XCTAssertEqual(core.inFlight(of: c1), 0)
        // The second batch's late refusal (it followed a batch that was not written) changes nothing.
        let late = core.appendFailed(batch: b2, error: GunnError(.sequenceGap, "gap"), mayBeStored: false, now: 101)
        XCTAssertEqual(late, [])
    }

    func testRecordsAreHeldWhileTheWriterIsAwayAndLoggedWithTheBatch() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        _ = ackAll(&core, core.receive(Frame(id: 1, register("b", 1)), from: c2, now: 100))
        var g = BeginGeneration()
        g.agentID = "a"; g.reqID = "g1"
        _ = core.receive(Frame(id: 2, .beginGeneration(g)), from: c1, now: 100)
        // b moves: a sees it, its generation goes stale; the writer does not answer.
        let move = Intent(kind: .move, payload: ["to": [2, 2]], contextSeq: core.engine.viewSeq(of: "b")!, reqID: "m", agentID: "b")
        let sub = core.receive(Frame(id: 3, .submitIntent(JSONPayload(CanonicalJSON.encode(move.json)))), from: c2, now: 100)
        guard let (batch, _) = appends(sub).first else { return XCTFail("no append") }
        let failed = core.appendFailed(batch: batch, error: GunnError(.adapterUnavailable, "away"), mayBeStored: false, now: 106)
        XCTAssertTrue(failed.contains(.retryAfter(ms: 200)))
        XCTAssertEqual(sent(failed, to: c1).filter { if case .cancel? = $0.body { return true } else { return false } }, [],
                       "the Cancel reveals the move: it waits for the batch")
        // While the writer is away: a request is refused with retry_after; a halt report is held.
        let refused = core.receive(Frame(id: 4, register("c", 3)), from: c1, now: 106)
        guard case .error(let e)? = sent(refused, to: c1).first?.body else { return XCTFail("\(refused)") }
        XCTAssertEqual(e.name, "ADAPTER_UNAVAILABLE")
        XCTAssertGreaterThan(e.retryAfterMs, 0)
        // The cancel was issued inside the held batch: report the halt for it now.
        var h = Halted()
        h.agentID = "a"; h.reqID = "g1"; h.cancelled = true; h.tokensEmitted = 4
        XCTAssertEqual(core.receive(Frame(.halted(h)), from: c1, now: 106).filter { if case .send = $0 { return true } else { return false } }, [])
        // Back: the retry carries the move and the cancellation record.
        let retry = core.retryAppend(now: 107)
        guard let (b2, entries) = appends(retry).first else { return XCTFail("no retry append") }
        let kinds = entries.compactMap { try? JSONParser.parse($0.effect)["kind"]?.stringValue ?? "" }
        XCTAssertEqual(kinds, ["Move", "GenerationCancelled"])
        let done = core.appendAcknowledged(batch: b2, lastSeq: entries.last!.globalSeq, now: 107)
        XCTAssertTrue(sent(done, to: c1).contains { if case .cancel(let c)? = $0.body { return c.reqID == "g1" } else { return false } })
        XCTAssertTrue(sent(done, to: c2).contains { if case .intentResult(let r)? = $0.body { return r.committed } else { return false } })
    }

    func testAWorkerLostWhileTheWriterIsAwayIsLoggedOnceItIsBack() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        var g = BeginGeneration()
        g.agentID = "a"; g.reqID = "g1"
        _ = core.receive(Frame(id: 2, .beginGeneration(g)), from: c1, now: 100)
        let speak = Intent(kind: .speak, payload: ["text": "x"], contextSeq: core.engine.viewSeq(of: "a")!, reqID: "s", agentID: "a")
        let sub = core.receive(Frame(id: 3, .submitIntent(JSONPayload(CanonicalJSON.encode(speak.json)))), from: c1, now: 100)
        guard let (batch, _) = appends(sub).first else { return XCTFail("no append") }
        _ = core.appendFailed(batch: batch, error: GunnError(.adapterUnavailable, "away"), mayBeStored: false, now: 106)
        // The worker goes away while the writer is away: its live generation is cancelled
        // (worker_lost) and the record is held, not dropped.
        _ = core.closed(c1, now: 106)
        guard let (b2, entries) = appends(core.retryAppend(now: 107)).first else { return XCTFail("no retry") }
        let records = entries.compactMap { try? JSONParser.parse($0.effect) }.filter { $0["kind"] == "GenerationCancelled" }
        XCTAssertEqual(records.first?["payload"]?["reason"], "worker_lost")
        XCTAssertEqual(records.first?["payload"]?["req_id"], "g1")
        _ = core.appendAcknowledged(batch: b2, lastSeq: entries.last!.globalSeq, now: 107)
        XCTAssertEqual(core.durableHead, entries.last!.globalSeq)
    }

    func testBackpressureCrossingsGoToTheLogWithTheirCode() throws {
        var s = OrchestratorCore.Settings()
        s.engine.quantumMs = 1000 // intents queue until the quantum closes
        s.engine.backpressure = BackpressureConfig(maxQueueDepth: 4, policy: .dropNewest, maxDeferred: 0)
        var core = try OrchestratorCore(settings: s, recovered: [], now: 100)
        core.opened(c1, role: "agent", name: "one", pid: 0)
        var lines: [String] = []
        var all = core.receive(Frame(id: 1, .registerAgent(RegisterAgent(agentIDForTest: "a", json: ["agent_id": "a"]))), from: c1, now: 100)
        for n in 0..<6 {
            let i = Intent(kind: .speak, payload: ["text": "x"], contextSeq: 0, reqID: ReqID("r\(n)"), agentID: "a")
            all += core.receive(Frame(id: UInt64(10 + n), .submitIntent(JSONPayload(CanonicalJSON.encode(i.json)))), from: c1, now: 100)
        }
        lines = all.compactMap { if case .log(let l) = $0 { return l } else { return nil } }
        XCTAssertTrue(lines.contains { $0.hasPrefix("QUEUE_FULL (3002): agent a queue depth") }, "\(lines)")
    }

    func testAWriterRefusalRollsBackTheBatchAndAnswersWithItsCode() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        let head = core.engine.headSeq
        let digest = core.engine.world.digest
        let move = Intent(kind: .move, payload: ["to": [5, 5]], contextSeq: core.engine.viewSeq(of: "a")!, reqID: "m", agentID: "a")
        let sub = core.receive(Frame(id: 2, .submitIntent(JSONPayload(CanonicalJSON.encode(move.json)))), from: c1, now: 100)
        guard let (batch, _) = appends(sub).first else { return XCTFail("no append") }
        let refused = core.appendFailed(batch: batch, error: GunnError(.logStorageFailure, "disk full"), mayBeStored: false, now: 101)
        let frames = sent(refused, to: c1)
        guard case .intentResult(let r)? = frames.first(where: { $0.id == 2 })?.body else { return XCTFail("\(frames)") }
        XCTAssertEqual(r.error?.name, "LOG_STORAGE_FAILURE")
        XCTAssertEqual(core.engine.headSeq, head, "the engine is back at the durable head")
        XCTAssertEqual(core.engine.world.digest, digest)
        XCTAssertEqual(core.engine.registeredAgents, ["a"], "the agent keeps its registration")
        guard case .view(let v)? = frames.first(where: { if case .view? = $0.body { return true } else { return false } })?.body else {
            return XCTFail("no whole view after the rollback: \(frames)")
        }
        XCTAssertEqual(try JSONParser.parse(v.view)["entities"]?["a"]?["pos"], [0, 0, 0])
        // The next request probes the writer again after retry_after and commits.
        _ = core.retryAppend(now: 102)
        var fresh = move
        fresh.contextSeq = core.engine.viewSeq(of: "a")!
        let again = core.receive(Frame(id: 3, .submitIntent(JSONPayload(CanonicalJSON.encode(fresh.json)))), from: c1, now: 102)
        XCTAssertEqual(appends(again).count, 1)
    }

    /// A retry of a durable commit that rides in a refused batch is answered with the writer's
    /// code, and the commit stays remembered: the next retry gets the same effect, no second one.
    /// A fresh intent of the refused batch is forgotten and commits when sent again.
    func testARollbackKeepsTheDurableCommitsOfRetriesInTheRefusedBatch() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        let move = Intent(kind: .move, payload: ["to": [5, 5]], contextSeq: core.engine.viewSeq(of: "a")!, reqID: "m", agentID: "a")
        let first = ackAll(&core, core.receive(Frame(id: 2, .submitIntent(JSONPayload(CanonicalJSON.encode(move.json)))), from: c1, now: 100))
        guard case .intentResult(let committed)? = sent(first, to: c1).first(where: { $0.id == 2 })?.body, committed.committed else {
            return XCTFail("not committed: \(first)")
        }
        let effect = committed.effect
        let head = core.engine.headSeq
        // The reply was lost: the client retries m, and sends a new intent n, in one batch the writer refuses.
        let fresh = Intent(kind: .speak, payload: ["text": "new"], contextSeq: core.engine.viewSeq(of: "a")!, reqID: "n", agentID: "a")
        let both = core.receive([Frame(id: 3, .submitIntent(JSONPayload(CanonicalJSON.encode(move.json)))),
                                 Frame(id: 4, .submitIntent(JSONPayload(CanonicalJSON.encode(fresh.json))))], from: c1, now: 101)
        guard let (batch, _) = appends(both).first else { return XCTFail("no append: \(both)") }
        _ = core.appendFailed(batch: batch, error: GunnError(.logStorageFailure, "disk full"), mayBeStored: false, now: 102)
        XCTAssertEqual(core.engine.headSeq, head)
        _ = core.retryAppend(now: 103)
        let asked = core.receive(Frame(id: 5, .submitIntent(JSONPayload(CanonicalJSON.encode(move.json)))), from: c1, now: 103)
        XCTAssertTrue(appends(asked).isEmpty, "a retry answered from the table writes nothing")
        let retry = asked + ackAll(&core, asked)
        guard case .intentResult(let again)? = sent(retry, to: c1).first(where: { $0.id == 5 })?.body else { return XCTFail("\(retry)") }
        XCTAssertTrue(again.committed, "\(again)")
        XCTAssertEqual(again.effect, effect, "the durable commit's effect, not a second one")
        XCTAssertEqual(core.engine.headSeq, head)
        var n = fresh
        n.contextSeq = core.engine.viewSeq(of: "a")!
        let resent = ackAll(&core, core.receive(Frame(id: 6, .submitIntent(JSONPayload(CanonicalJSON.encode(n.json)))), from: c1, now: 104))
        guard case .intentResult(let nr)? = sent(resent, to: c1).first(where: { $0.id == 6 })?.body else { return XCTFail("\(resent)") }
        XCTAssertTrue(nr.committed, "the refused batch's own intent was forgotten and commits now: \(nr)")
        XCTAssertEqual(core.engine.headSeq, head + 1)
    }

    func testDeprecationWarningsGoToTheLog() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        let newer = Intent(kind: .speak, payload: ["text": "hi"], contextSeq: core.engine.viewSeq(of: "a")!, reqID: "s", agentID: "a",
                           schemaVersion: "\(SchemaVersion.current.major).\(SchemaVersion.current.minor - 1).0") // deprecated: a warning
        let sub = core.receive(Frame(id: 2, .submitIntent(JSONPayload(CanonicalJSON.encode(newer.json)))), from: c1, now: 100)
        let out = sub + ackAll(&core, sub) // the log line leaves when the request is processed
        let lines = out.compactMap { if case .log(let l) = $0 { return l } else { return nil } }
        XCTAssertTrue(lines.contains { $0.hasPrefix("warning:") }, "\(lines)")
    }

    /// A connection whose Hello says `spectate_speech` hears every agent's partial speech, even a
    /// speaker none of its agents sees; at most 16 connections spectate, and one that closed hears
    /// nothing more. An ordinary connection still hears only speakers its agents see.
    func testSpectatorsHearEveryTokenAndAreBounded() throws {
        var core = try self.core()
        _ = ackAll(&core, core.receive(Frame(id: 1, register("a", 0)), from: c1, now: 100))
        let far = RegisterAgent(agentIDForTest: "b", json: ["agent_id": "b", "spawn": [500, 0], "distance_limit": 5])
        _ = ackAll(&core, core.receive(Frame(id: 1, .registerAgent(far)), from: c2, now: 100))
        let spectators = (0..<17).map { ConnID(UInt64(100 + $0)) }
        for s in spectators { core.opened(s, role: "agent", name: "dashboard", pid: 0, capabilities: [OrchestratorCore.spectateSpeech]) }
        var g = BeginGeneration()
        g.agentID = "a"; g.reqID = "a-1"
        _ = ackAll(&core, core.receive(Frame(id: 2, .beginGeneration(g)), from: c1, now: 100))
        var t = TokenChunk()
        t.agentID = "a"; t.reqID = "a-1"; t.index = 0; t.text = "Hel"
        let heard = core.receive(Frame(id: 0, .tokenChunk(t)), from: c1, now: 101)
        func tokens(_ actions: [CoreAction], _ conn: ConnID) -> [String] {
            sent(actions, to: conn).compactMap { if case .tokenChunk(let c)? = $0.body { return c.text } else { return nil } }
        }
        for s in spectators.prefix(16) { XCTAssertEqual(tokens(heard, s), ["Hel"], "spectator \(s)") }
        XCTAssertEqual(tokens(heard, spectators[16]), [], "past 16, a connection does not spectate")
        XCTAssertEqual(tokens(heard, c2), [], "b does not see a, and c2 is no spectator")
        XCTAssertEqual(tokens(heard, c1), [], "never back to the speaker's own connection")
        _ = core.closed(spectators[0], now: 102)
        t.index = 1; t.text = "lo"
        let later = core.receive(Frame(id: 0, .tokenChunk(t)), from: c1, now: 103)
        XCTAssertEqual(tokens(later, spectators[0]), [], "a closed spectator hears nothing")
        XCTAssertEqual(tokens(later, spectators[1]), ["lo"])
    }
}

extension RegisterAgent {
    init(agentIDForTest agent: String, json: JSONValue) {
        self.init()
        agentID = agent
        registration = CanonicalJSON.encode(json)
    }
}
