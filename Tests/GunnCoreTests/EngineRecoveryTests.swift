import XCTest
@testable import GunnCore

final class EngineRecoveryTests: XCTestCase {
    func testARestoredEngineContinuesTheLogExactlyAsTheOriginalWould() throws {
        // The original runs 40 inputs, then 10 more.
        var original = EngineDriver(seed: 31)
        original.register("a"); original.register("b", at: Position(x: 2, y: 0))
        for i in 0..<40 {
            original.submit(i % 2 == 0 ? "a" : "b", i % 3 == 0 ? .move : .speak,
                            i % 3 == 0 ? ["to": [.number(Double(i % 5)), 1]] : ["text": .string("t\(i)")], req: ReqID("r\(i)"), advance: 0.01)
        }
        let cut = original.engine.log.entries
        // A new engine takes over the log at that point (the orchestrator after a restart).
        var restored = EngineDriver(seed: 31)
        restored.now = original.now
        try restored.engine.restore(from: cut, at: original.now)
        XCTAssertEqual(restored.engine.headSeq, original.engine.headSeq)
        XCTAssertEqual(restored.engine.world.digest, original.engine.world.digest)
        XCTAssertEqual(restored.engine.log.headChecksum, original.engine.log.headChecksum)
        // A retried request answers with its committed effect and adds nothing.
        restored.register("a", at: nil); restored.register("b", at: nil)
        let head = restored.engine.headSeq
        let retry = restored.submit("a", .speak, ["text": "t2"], req: "r2")
        XCTAssertEqual(EngineDriver.committed(retry).first, original.engine.log.entries.first { $0.reqID == "r2" }?.effect)
        XCTAssertEqual(restored.engine.headSeq, head)
        // New effects continue global_seq and uuids as the original would have drawn them.
        let o = original.handle(.emit(EffectDraft(kind: "TimeTick", payload: ["sim_time": 99], sourceID: "clock")), advance: 0.01)
        let r = restored.handle(.emit(EffectDraft(kind: "TimeTick", payload: ["sim_time": 99], sourceID: "clock")), advance: 0.01)
        XCTAssertEqual(EngineDriver.entries(r).first?.effect.uuid, EngineDriver.entries(o).first?.effect.uuid)
        XCTAssertEqual(EngineDriver.entries(r).first?.globalSeq, head + 1)
        XCTAssertTrue(restored.engine.log.validateIntegrity().isValid)
    }

    /// An agent's stream resumed from a view it held at an earlier global_seq: one delta that
    /// turns that view into the current one, rebuilt from the nearest snapshot or from the start;
    /// nil for a wrong digest or a seq past the head (the caller then sends the whole view).
    func testResumeFromAnEarlierViewIsOneDeltaRebuiltFromTheLog() throws {
        var config = EngineDriver.immediate()
        config.snapshotEvery = 7
        var d = EngineDriver(config: config, seed: 3)
        d.register("a"); d.register("b", at: Position(x: 1, y: 1), threshold: 1_000_000)
        // What a client holds: the whole view at registration, then every delta applied to it.
        var delivered = try XCTUnwrap(d.engine.resync("a")).document
        var held: [(seq: GlobalSeq, view: JSONValue)] = []
        for i in 0..<30 {
            d.submit("b", .move, ["to": [.number(Double(i % 9)), .number(Double(i % 4))]], req: ReqID("m\(i)"), context: 0)
            while let o = d.engine.nextObservation(for: "a", at: d.now) {
                delivered = try o.patches.apply(to: delivered)
                held.append((o.globalSeq, delivered))
            }
        }
        XCTAssertEqual(d.engine.headSeq, 32)
        XCTAssertEqual(d.engine.log.snapshots.map(\.globalSeq), [7, 14, 21, 28])
        let current = try XCTUnwrap(d.engine.filteredView(of: "a"))
        var checked = 0
        for (seq, view) in held where seq > 0 {
            var e = d.engine
            let digest = HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(view))
            let delta = try XCTUnwrap(e.resume("a", fromGlobalSeq: seq, digest: digest), "resume from \(seq)")
            XCTAssertEqual(try delta.patches.apply(to: view), current, "from \(seq)")
            XCTAssertEqual(delta.globalSeq, d.engine.headSeq)
            XCTAssertEqual(delta.contextDigest, HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(current)))
            // After the resume the next observation continues from the current view.
            XCTAssertNil(e.nextObservation(for: "a", at: d.now))
            checked += 1
        }
        XCTAssertGreaterThan(checked, 20)
        var e = d.engine
        XCTAssertNil(e.resume("a", fromGlobalSeq: held[3].seq, digest: String(repeating: "0", count: 64)), "a view the client does not hold")
        XCTAssertNil(e.resume("a", fromGlobalSeq: d.engine.headSeq + 5, digest: "x"), "a seq past the head")
        XCTAssertNil(e.resume("ghost", fromGlobalSeq: 1, digest: "x"))
        // A restored engine (no snapshots) rebuilds from the start of the log.
        var r = EngineDriver(config: config, seed: 3)
        try r.engine.restore(from: d.engine.log.entries, at: d.now)
        r.register("a", at: nil)
        let (seq, view) = held[5]
        let delta = try XCTUnwrap(r.engine.resume("a", fromGlobalSeq: seq, digest: HashChain.checksum(previous: nil, canonicalEffect: CanonicalJSON.encode(view)), heldViewSeq: 40))
        XCTAssertEqual(try delta.patches.apply(to: view), r.engine.filteredView(of: "a"))
        XCTAssertEqual(delta.viewSeq, 41, "the stream continues after the client's view_seq")
        XCTAssertEqual(r.engine.viewSeq(of: "a"), 41)
        // An intent decided on the held view: one change unseen (the resume) — stale only under a threshold of 0.
        let out = r.submit("a", .speak, ["text": "late"], req: "late", context: 40)
        XCTAssertEqual(EngineDriver.committed(out).count + EngineDriver.rejected(out).filter { $0.1.code == .staleContext }.count, 1)
        XCTAssertTrue(EngineDriver.rejected(out).allSatisfy { $0.1.code != .invalidViewSeq })
    }

    func testRestoreRefusesABrokenLog() {
        var d = EngineDriver()
        d.register("a")
        for i in 0..<5 { d.submit("a", .speak, ["text": .string("\(i)")], req: ReqID("\(i)")) }
        var entries = d.engine.log.entries
        entries.remove(at: 2)
        var fresh = EngineDriver()
        XCTAssertThrowsError(try fresh.engine.restore(from: entries, at: 0)) { XCTAssertEqual(($0 as? GunnError)?.code, .sequenceGap) }
    }

    func testUUIDsArePerSeqAndWellFormed() {
        let u = Engine.uuid(worldSeed: 1, globalSeq: 7)
        // Computed independently (Python: SplitMix64 by its published constants, seeded with
        // world_seed ^ (global_seq * 0x9E3779B97F4A7C15 mod 2^64), two outputs as the 128 bits with
        // the version and variant bits set, formatted by Python's uuid module): replay on any
        // machine must give these exact uuids.
        XCTAssertEqual(u, "405da438-a39e-4064-84fe-a708156e0c84")
        XCTAssertEqual(Engine.uuid(worldSeed: 1, globalSeq: 8), "491718de-357e-4da8-8b43-5c8e74616796")
        XCTAssertEqual(Engine.uuid(worldSeed: 2, globalSeq: 7), "1e2b53fb-7bd6-4f05-a4b3-7710c55c43d9")
        XCTAssertEqual(Engine.uuid(worldSeed: 0, globalSeq: 1), "6e789e6a-a1b9-45f4-86c4-5d188009454f")
        XCTAssertEqual(Engine.uuid(worldSeed: 2026, globalSeq: 123_456_789), "72658e76-0672-476d-85cf-d786ce6b6e15")
        XCTAssertNotEqual(u, Engine.uuid(worldSeed: 1, globalSeq: 8))
        XCTAssertNotEqual(u, Engine.uuid(worldSeed: 2, globalSeq: 7))
        let parts = u.split(separator: "-").map(\.count)
        XCTAssertEqual(parts, [8, 4, 4, 4, 12])
        XCTAssertEqual(Array(u)[14], "4")
    }
}
