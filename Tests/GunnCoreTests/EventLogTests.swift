import XCTest
@testable import GunnCore

final class EventLogTests: XCTestCase {
    func populated(_ n: Int, snapshotEvery: Int = 10) -> EngineDriver {
        var c = EngineDriver.immediate()
        c.snapshotEvery = snapshotEvery
        var d = EngineDriver(config: c)
        d.register("a"); d.register("b", at: Position(x: 1, y: 1, z: 2))
        for i in 0..<n {
            if i % 3 == 0 {
                d.submit("a", .move, ["to": [.number(Double(i)), 1]], req: ReqID("m\(i)"))
            } else if i % 3 == 1 {
                d.submit("b", .speak, ["text": .string("line \(i)")], req: ReqID("s\(i)"))
            } else {
                d.handle(.emit(EffectDraft(kind: "RelationshipSet", payload: ["from": "a", "to": "b", "value": .number(Double(i))], sourceID: "script")))
            }
        }
        return d
    }

    func testEntriesSinceReturnsTheTail() {
        let d = populated(30)
        XCTAssertEqual(d.engine.log.entries(since: 0).count, 32)
        XCTAssertEqual(d.engine.log.entries(since: 30).map(\.globalSeq), [31, 32])
        XCTAssertTrue(d.engine.log.entries(since: 32).isEmpty)
        XCTAssertTrue(d.engine.log.entries(since: 99).isEmpty)
    }

    func testIntegrityValidationReportsFirstBadSeqAndGaps() {
        let d = populated(30)
        let entries = d.engine.log.entries
        XCTAssertTrue(IntegrityReport.check(entries[...]).isValid)
        var tampered = entries
        tampered[11].effect.payload = ["agent_id": "a", "to": [666, 0, 0]]
        XCTAssertEqual(IntegrityReport.check(tampered[...]).firstBadSeq, 12)
        var gapped = entries
        gapped.remove(at: 20)
        let report = IntegrityReport.check(gapped[...])
        XCTAssertEqual(report.gaps, [IntegrityReport.SequenceGap(expected: 21, found: 22)])
        XCTAssertEqual(report.firstBadSeq, 22, "the entry after a gap does not chain to its predecessor")
        XCTAssertThrowsError(try Replay.replay(tampered[...])) { XCTAssertEqual(($0 as? GunnError)?.code, .logIntegrityViolation) }
        XCTAssertThrowsError(try Replay.replay(gapped[...])) { XCTAssertEqual(($0 as? GunnError)?.code, .sequenceGap) }
    }

    func testReplayReproducesStateSeqsAndDigest() throws {
        let d = populated(100)
        let replayed = try Replay.replay(d.engine.log.entries[...])
        XCTAssertEqual(replayed, d.engine.world)
        XCTAssertEqual(replayed.digest, d.engine.world.digest)
        XCTAssertEqual(replayed.lastGlobalSeq, d.engine.headSeq)
    }

    func testSnapshotsEveryNAndReplayFromASnapshot() throws {
        let d = populated(100, snapshotEvery: 25)
        let snaps = d.engine.log.snapshots
        XCTAssertEqual(snaps.map(\.globalSeq), [25, 50, 75, 100])
        let snap = snaps[2]
        // Through the snapshot's JSON form, as it would be stored.
        let restored = try WorldState(json: JSONParser.parse(CanonicalJSON.encode(snap.state.json)))
        XCTAssertEqual(restored, snap.state)
        let prev = d.engine.log.entries[Int(snap.globalSeq) - 1].checksum
        let replayed = try Replay.replay(d.engine.log.entries(since: snap.globalSeq), from: restored, previousChecksum: prev)
        XCTAssertEqual(replayed.digest, d.engine.world.digest)
    }

    func testReducersForEveryBuiltInKind() throws {
        var d = EngineDriver()
        let emits: [(String, JSONValue)] = [
            ("EntityUpsert", ["id": "x", "entity": ["pos": [0, 0], "hp": 3]]),
            ("EntityUpsert", ["id": "y", "entity": ["pos": [1, 0, 5]]]),
            ("Move", ["agent_id": "x", "to": [2, 2]]),
            ("Speak", ["agent_id": "x", "text": "hey"]),
            ("Interact", ["agent_id": "x", "target": "y", "action": "poke"]),
            ("RelationshipSet", ["from": "x", "to": "y", "value": "friend"]),
            ("Collision", ["a": "x", "b": "y"]),
            ("TimeTick", ["sim_time": 5000]),
            ("JSONPatch", ["patch": [["op": "add", "path": "/weather", "value": "rain"]]]),
            ("RelationshipRemove", ["from": "x", "to": "y"]),
            ("EntityRemove", ["id": "y"]),
        ]
        for (kind, payload) in emits {
            let out = d.handle(.emit(EffectDraft(kind: kind, payload: payload, sourceID: "test")))
            XCTAssertEqual(EngineDriver.entries(out).count, 1, "\(kind): \(out)")
        }
        let w = d.engine.world
        XCTAssertEqual(w.entities["x"]?["pos"], [2, 2, 0])
        XCTAssertEqual(w.entities["x"]?["last_speech"]?["text"], "hey")
        XCTAssertEqual(w.entities["x"]?["last_collision"]?["with"], "y")
        XCTAssertNil(w.entities["y"])
        XCTAssertTrue(w.relationships.isEmpty)
        XCTAssertEqual(w.custom, ["weather": "rain"])
        XCTAssertEqual(w.simTime, 5000)
        // A reducer that refuses changes nothing and consumes no global_seq.
        let head = d.engine.headSeq, digest = w.digest
        for (kind, payload) in [("EntityRemove", ["id": "nope"]), ("Move", ["agent_id": "x", "to": "up"]),
                                ("JSONPatch", ["patch": [["op": "remove", "path": "/nothing"]]]), ("RelationshipRemove", ["from": "x", "to": "q"])] as [(String, JSONValue)] {
            let out = d.handle(.emit(EffectDraft(kind: kind, payload: payload, sourceID: "test")))
            guard case .emitRejected? = out.first else { return XCTFail("\(kind) accepted") }
        }
        XCTAssertEqual(d.engine.headSeq, head)
        XCTAssertEqual(d.engine.world.digest, digest)
    }
}

final class EffectEncodingTests: XCTestCase {
    func testHandWrittenCanonicalBytesEqualTheGenericEncoder() {
        var rng = SplitMix64(seed: 11)
        for i in 0..<500 {
            let e = Effect(uuid: "u-\(i)", kind: ["Move", "Speak", "x\"y"][i % 3], payload: JSONDiffTests.randomDocument(&rng),
                           globalSeq: rng.next() >> 12, simTime: Double(bitPattern: rng.next() >> 2), sourceID: "src\u{e9}\(i)")
            XCTAssertEqual(e.canonicalBytes, CanonicalJSON.encode(e.json))
        }
        let i = Intent(kind: .speak, payload: ["text": "hi"], contextSeq: 3, reqID: "r", agentID: "a")
        XCTAssertEqual(i.fingerprint, CanonicalJSON.encode(["context_seq": 3, "kind": "Speak", "payload": ["text": "hi"]]))
    }
}
