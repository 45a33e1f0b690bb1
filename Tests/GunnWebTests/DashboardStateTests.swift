import XCTest
import Synchronization
@testable import GunnWeb
import GunnClient
import GunnCore
import GunnIO
import GunnOrchestratorServer
import GunnTelemetry
import GunnWire

/// The dashboard's state, fed log entries and tokens by hand (no process behind it): what pages
/// get first and in batches, the speech bubbles, the bounds, and the per-page scope.
final class DashboardStateTests: XCTestCase {
    var dashboard: Dashboard!
    var chain: String?
    var seq: UInt64 = 0

    override func setUpWithError() throws {
        let loop = try EventLoop(name: "dash-test")
        let client = GunnClient(path: "/nonexistent/orchestrator.sock", loop: loop)
        dashboard = Dashboard(home: "/nonexistent", loop: loop, client: client) { MetricsGatherer.Result() }
    }

    /// Appends one entry to the hand-made chain and feeds it to the dashboard.
    func commit(_ kind: String, _ payload: JSONValue, agent: String? = nil, req: String? = nil) {
        seq += 1
        let effect = Effect(uuid: "u\(seq)", kind: kind, payload: payload, globalSeq: seq, simTime: Double(seq), sourceID: agent ?? "test")
        let checksum = HashChain.checksum(previous: chain, canonicalEffect: effect.canonicalBytes)
        chain = checksum
        let agentID: AgentID? = agent.map { AgentID($0) }
        let reqID: ReqID? = req.map { ReqID($0) }
        let e = EventLogEntry(globalSeq: seq, simTime: Double(seq), wallTime: 0, effect: effect, worldID: "w", agentID: agentID, reqID: reqID, checksum: checksum)
        dashboard.take(WireJSON.logEntry(e))
    }

    final class Inbox: Sendable {
        let messages = Mutex<[JSONValue]>([])
        var all: [JSONValue] { messages.withLock { $0 } }
        func of(_ type: String) -> [JSONValue] { all.filter { $0["type"]?.stringValue == type } }
        func send(_ text: String) -> Bool {
            guard let v = try? JSONParser.parse(Array(text.utf8)) else {
                XCTFail("the dashboard sent a message that is not JSON: \(text.prefix(200))")
                return true
            }
            messages.withLock { $0.append(v) }
            return true
        }
    }

    func testAPageGetsTheWholePictureThenBatchesOfWhatChanged() throws {
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2]]])
        commit("EntityUpsert", ["id": "bob", "entity": ["kind": "agent", "pos": [5, 5]]])
        let inbox = Inbox()
        let id = try XCTUnwrap(dashboard.attach(allowed: nil) { inbox.send($0) })
        let hello = try XCTUnwrap(inbox.of("hello").first)
        XCTAssertEqual(hello["seq"]?.numberValue, 2)
        XCTAssertEqual(hello["entities"]?["ann"]?["pos"], [1, 2, 0])
        XCTAssertEqual(hello["tail"]?.arrayValue?.count, 2)
        commit("Move", ["agent_id": "ann", "to": [3, 3]], agent: "ann", req: "m1")
        commit("Move", ["agent_id": "ann", "to": [4, 4]], agent: "ann", req: "m2")
        dashboard.flush()
        let batch = try XCTUnwrap(inbox.of("batch").last)
        XCTAssertEqual(batch["seq"]?.numberValue, 4)
        XCTAssertNotNil(batch["entities"]?["bob"], "what changed before the page came is in it again (harmless: the same values)")
        XCTAssertEqual(batch["entities"]?["ann"]?["pos"], [4, 4, 0], "two moves of one agent are one change in the batch")
        XCTAssertEqual(batch["tail"]?.arrayValue?.map { $0["seq"]?.numberValue }, [3, 4])
        XCTAssertEqual(batch["tail"]?.arrayValue?.first?["checksum"]?.stringValue?.count, 12)
        dashboard.flush()
        XCTAssertEqual(inbox.of("batch").count, 1, "nothing changed: no batch")
        commit("EntityRemove", ["id": "bob"])
        dashboard.flush()
        XCTAssertEqual(inbox.of("batch").last?["entities"], ["bob": .null], "a removal is a null")
        dashboard.detach(id)
        XCTAssertEqual(dashboard.pages, 0)
    }

    func testSpeechStreamsIsStruckOutWithItsReasonAndIsSaidAgain() throws {
        commit("EntityUpsert", ["id": "A", "entity": ["kind": "agent", "pos": [0, 0]]])
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        for (i, t) in ["Let ", "me ", "tell"].enumerated() { dashboard.token(speaker: "A", reqID: "a-1", index: UInt32(i), text: t) }
        dashboard.flush()
        let speaking = try XCTUnwrap(inbox.of("batch").last?["speech"]?.arrayValue?.first)
        XCTAssertEqual(speaking["state"], "speaking")
        XCTAssertEqual(speaking["text"], "Let me tell")
        XCTAssertEqual(speaking["tokens"]?.numberValue, 3)
        commit("GenerationCancelled", ["agent_id": "A", "req_id": "a-1", "reason": "stale_due_to:7", "tokens_discarded": 3, "halt_latency_us": 10], agent: "A")
        dashboard.token(speaker: "A", reqID: "a-1", index: 3, text: " late")
        dashboard.flush()
        let cancelled = try XCTUnwrap(inbox.of("batch").last?["speech"]?.arrayValue?.first)
        XCTAssertEqual(cancelled["state"], "cancelled")
        XCTAssertEqual(cancelled["reason"], "stale_due_to:7")
        XCTAssertEqual(cancelled["stale_seq"]?.numberValue, 7)
        XCTAssertEqual(cancelled["text"], "Let me tell", "a token after the cancellation is not added")
        commit("Speak", ["agent_id": "A", "text": "Then the river path."], agent: "A", req: "a-2")
        dashboard.flush()
        let said = try XCTUnwrap(inbox.of("batch").last?["speech"]?.arrayValue?.first)
        XCTAssertEqual(said["state"], "said")
        XCTAssertGreaterThan(said["order"]?.numberValue ?? 0, cancelled["order"]?.numberValue ?? .infinity)
    }

    func testBubblesAreBoundedAndACancellationOutlivesOrdinarySpeech() throws {
        commit("GenerationCancelled", ["agent_id": "A", "req_id": "a-1", "reason": "stale_due_to:1", "tokens_discarded": 0, "halt_latency_us": 0], agent: "A")
        for i in 0..<(Dashboard.bubblesKept * 2) { commit("Speak", ["agent_id": .string("c\(i)"), "text": "hi"], agent: "c\(i)", req: "r\(i)") }
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        let speech = try XCTUnwrap(inbox.of("hello").first?["speech"]?.arrayValue)
        XCTAssertEqual(speech.count, Dashboard.bubblesKept)
        XCTAssertTrue(speech.contains { $0["state"] == "cancelled" }, "the cancellation is kept over newer ordinary speech")
        XCTAssertEqual(inbox.of("hello").first?["tail"]?.arrayValue?.count, Dashboard.bubblesKept * 2 + 1 > Dashboard.tailKept ? Dashboard.tailKept : Dashboard.bubblesKept * 2 + 1)
    }

    /// More cancellations than bubbles are kept: the bound holds (the newest kept), nothing traps,
    /// and speech goes on being heard after.
    func testManyCancellationsKeepTheBoundAndNewSpeechIsStillHeard() throws {
        for i in 0..<(Dashboard.bubblesKept + 10) {
            commit("GenerationCancelled", ["agent_id": .string("a\(i)"), "req_id": "r", "reason": "stale_due_to:1", "tokens_discarded": 0, "halt_latency_us": 0],
                   agent: "a\(i)")
        }
        dashboard.token(speaker: "zed", reqID: "z-1", index: 0, text: "still here")
        commit("Speak", ["agent_id": "zed", "text": "still here"], agent: "zed", req: "z-1")
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        let speech = try XCTUnwrap(inbox.of("hello").first?["speech"]?.arrayValue)
        XCTAssertEqual(speech.count, Dashboard.bubblesKept)
        XCTAssertEqual(speech.last?["agent_id"], "zed", "the newest bubble is kept")
        XCTAssertEqual(speech.last?["state"], "said")
    }

    /// A gap in what the log writer sends stops the world at the last entry it continued and
    /// says so; an entry sent twice (a resubscription) is listed once.
    func testAGapStopsTheWorldWithItsCodeAndARepeatIsIgnored() throws {
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2]]])
        let first = seq
        commit("Move", ["agent_id": "ann", "to": [2, 2]], agent: "ann", req: "m1")
        // The same entry again: ignored.
        var again = seq
        seq = first
        chain = nil
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2]]])
        seq = again
        // Entry seq+1 never comes: seq+2 is a gap.
        seq += 1
        again = seq
        commit("Move", ["agent_id": "ann", "to": [7, 7]], agent: "ann", req: "m3")
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        let hello = try XCTUnwrap(inbox.of("hello").first)
        XCTAssertEqual(hello["seq"]?.numberValue, 2)
        XCTAssertEqual(hello["entities"]?["ann"]?["pos"], [2, 2, 0])
        XCTAssertEqual(hello["tail"]?.arrayValue?.map { $0["seq"]?.numberValue }, [1, 2, Double(again + 1)], "listed once each, the gap's entry too")
        XCTAssertTrue(hello["follow_error"]?.stringValue?.hasPrefix("SEQUENCE_GAP at \(again + 1)") == true, "\(hello)")
    }

    /// A generation that goes quiet with no line and no cancellation (a halt) ends its bubble.
    func testAQuietGenerationEnds() throws {
        let quick = Dashboard(home: "/nonexistent", loop: dashboard.loop, client: dashboard.client, quietSeconds: 0) { MetricsGatherer.Result() }
        let inbox = Inbox()
        _ = quick.attach(allowed: nil) { inbox.send($0) }
        quick.token(speaker: "A", reqID: "a-1", index: 0, text: "Hm")
        quick.flush()
        XCTAssertEqual(inbox.of("batch").last?["speech"]?.arrayValue?.first?["state"], "ended")
    }

    func testLongTextIsCutOnACharacter() {
        XCTAssertEqual(Dashboard.capped("ééé", 5), "éé", "within the bytes, never inside a character")
        XCTAssertEqual(Dashboard.capped("abc", 5), "abc")
        dashboard.token(speaker: "A", reqID: "a-1", index: 0, text: String(repeating: "é", count: 5000))
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        XCTAssertLessThanOrEqual(inbox.of("hello").first?["speech"]?.arrayValue?.first?["text"]?.stringValue?.utf8.count ?? .max, Dashboard.maxBubbleText)
    }

    func testAScopedPageGetsNoWorldAndMayLookOnlyThroughItsAgents() throws {
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2], "secret": 1]])
        let inbox = Inbox()
        let id = try XCTUnwrap(dashboard.attach(allowed: ["ann"]) { inbox.send($0) })
        let hello = try XCTUnwrap(inbox.of("hello").first)
        XCTAssertEqual(hello["scope"], "agents")
        XCTAssertNil(hello["entities"], "no world for an observe token")
        XCTAssertNil(hello["tail"], "no log for an observe token")
        XCTAssertEqual(dashboard.select(id, "bob")?.code, .forbidden)
        XCTAssertNil(dashboard.select(id, "ann"))
        // No orchestrator answered a status yet: the policy is not known, and the page is told so.
        XCTAssertEqual(inbox.of("eyes").last?["known"], false)
        commit("Move", ["agent_id": "ann", "to": [2, 2]], agent: "ann", req: "m")
        dashboard.flush()
        XCTAssertTrue(inbox.of("batch").isEmpty, "batches are the world: not for an observe token")
    }

    /// On a dashboard that has nothing yet (seq 0, no status), a selection is still answered.
    func testASelectionIsAnsweredBeforeAnything() throws {
        let inbox = Inbox()
        let id = try XCTUnwrap(dashboard.attach(allowed: nil) { inbox.send($0) })
        XCTAssertNil(dashboard.select(id, "ann"))
        XCTAssertEqual(inbox.of("eyes").first?["known"], false)
    }

    /// After the world stopped (a broken chain), a page that comes then gets no entry twice: its
    /// first batch starts after the tail of its first picture.
    func testAPageAfterAStoppedWorldGetsNoEntryTwice() throws {
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2]]])
        chain = "0000"
        commit("Move", ["agent_id": "ann", "to": [9, 9]], agent: "ann", req: "m")
        commit("Move", ["agent_id": "ann", "to": [8, 8]], agent: "ann", req: "m2")
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        commit("Move", ["agent_id": "ann", "to": [7, 7]], agent: "ann", req: "m3")
        dashboard.flush()
        XCTAssertEqual(inbox.of("hello").first?["tail"]?.arrayValue?.map { $0["seq"]?.numberValue }, [1, 2, 3])
        XCTAssertEqual(inbox.of("batch").last?["tail"]?.arrayValue?.map { $0["seq"]?.numberValue }, [4])
    }

    func testPagesAreBounded() {
        for _ in 0..<Dashboard.maxPages { XCTAssertNotNil(dashboard.attach(allowed: nil) { _ in true }) }
        XCTAssertNil(dashboard.attach(allowed: nil) { _ in true })
    }

    func testABrokenChainStopsTheWorldButNotTheTail() throws {
        commit("EntityUpsert", ["id": "ann", "entity": ["kind": "agent", "pos": [1, 2]]])
        chain = "0000"
        commit("Move", ["agent_id": "ann", "to": [9, 9]], agent: "ann", req: "m")
        let inbox = Inbox()
        _ = dashboard.attach(allowed: nil) { inbox.send($0) }
        let hello = try XCTUnwrap(inbox.of("hello").first)
        XCTAssertEqual(hello["seq"]?.numberValue, 1, "the world stays at the last entry that continued the chain")
        XCTAssertEqual(hello["entities"]?["ann"]?["pos"], [1, 2, 0])
        XCTAssertTrue(hello["follow_error"]?.stringValue?.hasPrefix("LOG_INTEGRITY_VIOLATION at 2") == true, "\(hello)")
        XCTAssertEqual(hello["tail"]?.arrayValue?.count, 2)
    }

    func testKeyMetricsSumSeriesAndTakeTheP99OfHistograms() {
        let snap: JSONValue = ["process": "orchestrator", "families": [
            ["name": "gunn_intents_total", "type": "counter", "labels": ["outcome"], "series": [["labels": ["committed"], "value": 10], ["labels": ["rejected"], "value": 5]]],
            ["name": "gunn_intent_seconds", "type": "histogram", "labels": [], "series": [
                ["labels": [], "buckets": [0.001, 0.01, 0.1], "counts": [90, 99, 100, 100], "sum": 1, "count": 100]]],
            ["name": "gunn_empty_seconds", "type": "histogram", "labels": [], "series": []],
            ["name": "gunn_queue_depth", "type": "gauge", "labels": ["queue"], "series": [["labels": ["queued_items"], "value": 3], ["labels": ["rss_bytes"], "value": 5e7]]]]]
        let k = Dashboard.keyMetrics(snap)
        XCTAssertEqual(k["gunn_intents_total"]?.numberValue, 15)
        XCTAssertEqual(k["gunn_intent_seconds:p99"]?.numberValue, 0.01)
        XCTAssertEqual(k["gunn_empty_seconds:p99"]?.numberValue, 0)
        XCTAssertEqual(k["gunn_queue_depth{queued_items}"]?.numberValue, 3, "a gauge's series apart: the sum mixes bounds")
    }

    func testThePolicyGoesThroughStatusAndBackUnchanged() throws {
        var p = ObservationPolicy()
        p.distanceLimit = 6; p.hiddenFields = ["secret", "hp"]; p.requireRelationship = true; p.relationshipValues = ["friend"]
        guard case .object(var o) = WireJSON.policyJSON(p) else { return XCTFail("not an object") }
        o["agent_id"] = "x"
        let back = try WireJSON.registration(.object(o)).observation
        XCTAssertEqual(back.distanceLimit, 6)
        XCTAssertEqual(back.hiddenFields, ["secret", "hp"])
        XCTAssertEqual(back.requireRelationship, true)
        XCTAssertEqual(back.relationshipValues, ["friend"])
    }
}
