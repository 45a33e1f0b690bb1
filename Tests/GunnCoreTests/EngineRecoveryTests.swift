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
        XCTAssertEqual(u, Engine.uuid(worldSeed: 1, globalSeq: 7))
        XCTAssertNotEqual(u, Engine.uuid(worldSeed: 1, globalSeq: 8))
        XCTAssertNotEqual(u, Engine.uuid(worldSeed: 2, globalSeq: 7))
        let parts = u.split(separator: "-").map(\.count)
        XCTAssertEqual(parts, [8, 4, 4, 4, 12])
        XCTAssertEqual(Array(u)[14], "4")
    }
}
