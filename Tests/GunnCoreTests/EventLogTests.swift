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

    /// A live follower applies entry by entry: the same world as a replay at every seq, the ids
    /// each entry changed, and the refusals of a replay (a gap, a broken chain) leave it untouched.
    func testFollowingEntryByEntryIsAReplayAndNamesWhatChanged() throws {
        let d = populated(30)
        let entries = d.engine.log.entries
        var world = WorldState()
        var prev: String?
        for (i, e) in entries.enumerated() {
            let ids = try Replay.follow(e, world: &world, previousChecksum: prev)
            prev = e.checksum
            XCTAssertEqual(world, try Replay.replay(entries[...i]), "at \(e.globalSeq)")
            switch e.effect.kind {
            case "Move", "Speak", "EntityUpsert": XCTAssertEqual(ids, [e.effect.payload["agent_id"]?.stringValue ?? e.effect.payload["id"]?.stringValue ?? "?"])
            case "RelationshipSet": XCTAssertEqual(ids, [], "relationships change no entity")
            default: break
            }
        }
        let before = world
        var tampered = entries[5]
        tampered.effect.payload = ["agent_id": "a", "to": [666, 0, 0]]
        var w = try Replay.replay(entries[..<5])
        XCTAssertThrowsError(try Replay.follow(tampered, world: &w, previousChecksum: entries[4].checksum)) {
            XCTAssertEqual(($0 as? GunnError)?.code, .logIntegrityViolation)
        }
        XCTAssertEqual(w, try Replay.replay(entries[..<5]), "a refused entry changes nothing")
        XCTAssertThrowsError(try Replay.follow(entries[3], world: &world, previousChecksum: prev)) { XCTAssertEqual(($0 as? GunnError)?.code, .sequenceGap) }
        XCTAssertEqual(world, before)
        // A kind without a reducer here, on a sound chain: refused, and the world is as it was.
        let seq = world.lastGlobalSeq + 1
        let odd = Effect(uuid: "u", kind: "NoSuchKind", payload: ["x": 1], globalSeq: seq, simTime: 0, sourceID: "t")
        let entry = EventLogEntry(globalSeq: seq, simTime: 0, wallTime: 0, effect: odd, worldID: "w", agentID: nil, reqID: nil,
                                  checksum: HashChain.checksum(previous: prev, canonicalEffect: odd.canonicalBytes))
        XCTAssertThrowsError(try Replay.follow(entry, world: &world, previousChecksum: prev)) { XCTAssertEqual(($0 as? GunnError)?.code, .worldStateCorrupted) }
        XCTAssertEqual(world, before)
    }

    func testReplayReproducesStateSeqsAndDigest() throws {
        let d = populated(100)
        let replayed = try Replay.replay(d.committed[...])
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

    /// The window: at most `memory.snapshots` snapshots over a base, the entries after the base;
    /// the world at any seq inside it rebuilt from memory, before it nil (read from the writer).
    func testTheLogWindowIsBoundedAndRebuildsTheWorldAtAnySeqInsideIt() throws {
        let d = populated(200, snapshotEvery: 10)
        let log = d.engine.log
        XCTAssertEqual(log.snapshots.count, 4)
        XCTAssertEqual(log.base.globalSeq, 160)
        XCTAssertEqual(log.entries.first?.globalSeq, 161)
        XCTAssertEqual(log.headSeq, 202)
        XCTAssertEqual(log.trimmed, 160)
        XCTAssertEqual(log.base.checksum, d.committed[159].checksum)
        XCTAssertTrue(log.validateIntegrity().isValid)
        for seq in [160, 161, 175, 199, 200, 201] as [GlobalSeq] {
            let expected = try Replay.replay(d.committed[..<Int(seq)])
            XCTAssertEqual(d.engine.world(at: seq), expected, "world at \(seq)")
        }
        XCTAssertNil(d.engine.world(at: 159))
        XCTAssertNil(d.engine.world(at: 203))
        XCTAssertEqual(d.engine.log.entry(170)?.checksum, d.committed[169].checksum)
        XCTAssertNil(d.engine.log.entry(160))
    }

    /// The host's floor holds the window back (a rollback rebuilds from the base), and raising it
    /// trims at once.
    func testTheTrimFloorHoldsTheWindowBack() {
        var c = EngineDriver.immediate()
        c.snapshotEvery = 10
        var d = EngineDriver(config: c)
        d.engine.setTrimFloor(15)
        d.register("a")
        for i in 0..<99 { d.submit("a", .speak, ["text": .string("line \(i)")], req: ReqID("s\(i)")) }
        XCTAssertEqual(d.engine.log.base.globalSeq, 10, "not past the floor")
        XCTAssertEqual(d.engine.log.entries.count, 90)
        d.engine.setTrimFloor(100)
        XCTAssertEqual(d.engine.log.base.globalSeq, 60)
        XCTAssertEqual(d.engine.log.snapshots.map(\.globalSeq), [70, 80, 90, 100])
    }

    /// Restoring from a snapshot equals restoring from the whole log: the same world, head and
    /// uuids after it; the request ids come from the given table (also from before the snapshot).
    func testRestoreFromASnapshotContinuesLikeTheWholeLog() throws {
        let d = populated(120, snapshotEvery: 10)
        let entries = d.committed
        let at = 57
        let snap = try Replay.replay(entries[..<at])
        let requests = entries.compactMap { e in e.reqID.map { RecoveredRequest(agentID: e.agentID!, reqID: $0, effect: e.effect, expiresAt: 1e12) } }
        var fromSnap = EngineDriver(config: d.engine.config)
        try fromSnap.engine.restore(snapshot: (snap, entries[at - 1].checksum), entries: Array(entries[at...]), requests: requests, at: d.now)
        var whole = EngineDriver(config: d.engine.config)
        try whole.engine.restore(from: entries, at: d.now)
        XCTAssertEqual(fromSnap.engine.world, whole.engine.world)
        XCTAssertEqual(fromSnap.engine.headSeq, 122)
        XCTAssertEqual(fromSnap.engine.log.snapshots.map(\.globalSeq), [90, 100, 110, 120], "the window's snapshots are rebuilt")
        // A retry of a request committed before the snapshot gets its effect, not a second one.
        fromSnap.now = d.now
        fromSnap.register("a")
        let retry = fromSnap.submit("a", .move, ["to": [.number(0), 1]], req: "m0")
        XCTAssertEqual(EngineDriver.committed(retry).first, entries.first { $0.reqID == "m0" }?.effect)
        XCTAssertEqual(fromSnap.engine.headSeq, 122)
        // A broken chain from the snapshot's checksum is refused.
        var broken = EngineDriver(config: d.engine.config)
        XCTAssertThrowsError(try broken.engine.restore(snapshot: (snap, entries[at].checksum), entries: Array(entries[at...]), requests: [], at: d.now)) {
            XCTAssertEqual(($0 as? GunnError)?.code, .logIntegrityViolation)
        }
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
