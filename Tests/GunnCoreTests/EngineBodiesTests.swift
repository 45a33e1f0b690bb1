import XCTest
@testable import GunnCore

/// Engine bodies (EngineBodies): a Move of an agent whose entity a game engine owns becomes an
/// EngineCommand, answered once by EngineCommandResult; a lost engine refuses its agents' commands;
/// engine ticks drive sim time when the engine is the authority.
final class EngineBodiesTests: XCTestCase {
    /// Emits as the bridge of the payload's engine does (source `engine:<name>`), or as `source`.
    func emit(_ d: inout EngineDriver, _ kind: String, _ payload: JSONValue, simTime: SimTime? = nil, source: String? = nil) -> GunnError? {
        let from = source ?? "engine:" + (payload["engine"]?.stringValue ?? "godot")
        let out = d.handle(.emit(EffectDraft(kind: kind, payload: payload, sourceID: from, simTime: simTime)))
        for o in out { if case .emitRejected(_, _, let e) = o { return e } }
        return nil
    }

    func testAMoveOfAnEngineBodyBecomesACommandAnsweredOnce() throws {
        var d = EngineDriver()
        d.register("ann", at: Position(x: 0, y: 0))
        d.register("bob", at: Position(x: 5, y: 0))
        XCTAssertNil(emit(&d, "BodyUpdate", ["engine": "godot", "id": "ann", "pos": [0.5, 0], "fields": ["shape": "circle"], "commands": ["jump"]]))
        let ann = try XCTUnwrap(d.engine.world.entities["ann"])
        XCTAssertEqual(ann["engine"], "godot")
        XCTAssertEqual(ann["shape"], "circle")
        XCTAssertEqual(ann["pos"], [0.5, 0, 0])

        // ann's Move is a command, her position does not jump; bob (no body) moves as before.
        let move = EngineDriver.committed(d.submit("ann", .move, ["to": [3, 0]], req: "m1"))
        XCTAssertEqual(move.first?.kind, "EngineCommand")
        XCTAssertEqual(move.first?.payload["to"], [3, 0, 0])
        XCTAssertEqual(d.engine.world.entities["ann"]?["pos"], [0.5, 0, 0])
        let seq = try XCTUnwrap(move.first?.globalSeq)
        XCTAssertEqual(d.engine.world.entities["ann"]?["commands_pending"]?[String(seq)]?["command"], "move")
        XCTAssertEqual(EngineDriver.committed(d.submit("bob", .move, ["to": [6, 0]], req: "b1")).first?.kind, "Move")
        // A custom intent the body accepts is a command too; one it does not accept stays custom.
        XCTAssertEqual(EngineDriver.committed(d.submit("ann", .custom, ["kind": "jump", "data": ["h": 2]], req: "j1")).first?.kind, "EngineCommand")
        XCTAssertEqual(EngineDriver.rejected(d.submit("ann", .custom, ["kind": "fly", "data": 1], req: "f1")).first?.1.code, .unknownEffectKind)

        // The engine answers once; a second answer, or one for a command never sent, is refused.
        XCTAssertNil(emit(&d, "EngineCommandResult", ["engine": "godot", "agent_id": "ann", "command_seq": .number(Double(seq)), "status": "blocked", "reason": "wall"]))
        XCTAssertEqual(d.engine.world.entities["ann"]?["last_command"], ["seq": .number(Double(seq)), "command": "move", "status": "blocked", "reason": "wall"])
        XCTAssertEqual(emit(&d, "EngineCommandResult", ["engine": "godot", "agent_id": "ann", "command_seq": .number(Double(seq)), "status": "done"])?.code, .unknownCommand)
        XCTAssertEqual(emit(&d, "EngineCommandResult", ["engine": "godot", "agent_id": "ann", "command_seq": 999, "status": "done"])?.code, .unknownCommand)
        XCTAssertEqual(emit(&d, "EngineCommandResult", ["engine": "godot", "agent_id": "ann", "command_seq": 999, "status": "maybe"])?.code, .invalidIntent)
        // Another engine cannot touch the body; reserved fields cannot be set.
        XCTAssertEqual(emit(&d, "BodyUpdate", ["engine": "unity", "id": "ann", "pos": [9, 9]])?.code, .intentValidationFailed)
        XCTAssertEqual(emit(&d, "BodyUpdate", ["engine": "godot", "id": "ann", "fields": ["commands_pending": [:]]])?.code, .invalidIntent)
        // Only an agent's intent becomes a command; only the engine's bridge writes its records.
        XCTAssertEqual(emit(&d, "EngineCommand", ["engine": "godot", "agent_id": "ann", "command": "move", "to": [1, 1]])?.code, .forbidden)
        XCTAssertEqual(emit(&d, "EngineLink", ["engine": "godot", "state": "lost"], source: "web-client")?.code, .forbidden)
        XCTAssertEqual(emit(&d, "BodyUpdate", ["engine": "godot", "id": "ann", "pos": [9, 9]], source: "engine:unity")?.code, .forbidden)
    }

    func testALostEngineRefusesItsAgentsCommandsWithARetryAfterAndPendingOnesStay() throws {
        var d = EngineDriver()
        d.register("ann", at: Position(x: 0, y: 0))
        XCTAssertNil(emit(&d, "BodyUpdate", ["engine": "godot", "id": "ann", "pos": [0, 0]]))
        let first = try XCTUnwrap(EngineDriver.committed(d.submit("ann", .move, ["to": [1, 0]], req: "m1")).first)
        XCTAssertNil(emit(&d, "EngineLink", ["engine": "godot", "state": "lost", "code": 5003, "name": "UNITY_CONNECTION_LOST"]))
        XCTAssertEqual(d.engine.world.entities["ann"]?["engine_link"], "lost")
        let refused = try XCTUnwrap(EngineDriver.rejected(d.submit("ann", .move, ["to": [2, 0]], req: "m2")).first?.1)
        XCTAssertEqual(refused.code, .unityConnectionLost)
        XCTAssertEqual(refused.retryAfterMs, 1000)
        // Speech does not need the engine.
        XCTAssertEqual(EngineDriver.committed(d.submit("ann", .speak, ["text": "hi"], req: "s1")).first?.kind, "Speak")
        XCTAssertNil(emit(&d, "EngineLink", ["engine": "godot", "state": "connected"]))
        XCTAssertNil(d.engine.world.entities["ann"]?["engine_link"])
        XCTAssertNotNil(d.engine.world.entities["ann"]?["commands_pending"]?[String(first.globalSeq)], "the pending command survived the loss")
        XCTAssertEqual(EngineDriver.committed(d.submit("ann", .move, ["to": [2, 0]], req: "m2b")).first?.kind, "EngineCommand")
    }

    func testOneStepsBodiesAreOneEffectAppliedWholeOrNotAtAll() {
        var d = EngineDriver()
        XCTAssertNil(emit(&d, "BodyUpdate", ["engine": "unity", "id": "other", "pos": [9, 9]]))
        XCTAssertNil(emit(&d, "BodyUpdate", ["engine": "godot", "bodies": [["id": "a", "pos": [1, 0]], ["id": "b", "pos": [2, 0], "fields": ["k": "v"]]]]))
        XCTAssertEqual(d.engine.world.entities["a"]?["pos"], [1, 0, 0])
        XCTAssertEqual(d.engine.world.entities["b"]?["k"], "v")
        // One body of another engine refuses the whole step: a does not move.
        XCTAssertEqual(emit(&d, "BodyUpdate", ["engine": "godot", "bodies": [["id": "a", "pos": [5, 0]], ["id": "other", "pos": [0, 0]]]])?.code, .intentValidationFailed)
        XCTAssertEqual(d.engine.world.entities["a"]?["pos"], [1, 0, 0])
        XCTAssertEqual(emit(&d, "BodyUpdate", ["engine": "godot", "bodies": []])?.code, .invalidIntent)
    }

    func testPendingCommandsAreBounded() {
        var d = EngineDriver()
        d.register("ann", at: Position(x: 0, y: 0))
        XCTAssertNil(emit(&d, "BodyUpdate", ["engine": "godot", "id": "ann"]))
        for i in 0..<EngineBodies.maxPendingCommands {
            XCTAssertEqual(EngineDriver.committed(d.submit("ann", .move, ["to": [.number(Double(i)), 0]], req: ReqID("m\(i)"))).count, 1)
        }
        XCTAssertEqual(EngineDriver.rejected(d.submit("ann", .move, ["to": [1, 1]], req: "over")).first?.1.code, .queueFull)
    }

    func testEngineTicksDriveSimTimeAndOrderIntents() throws {
        var config = EngineDriver.immediate()
        config.simTimeAuthority = .externalTicks
        var d = EngineDriver(config: config)
        d.register("ann", at: Position(x: 0, y: 0))
        XCTAssertNil(emit(&d, "TimeTick", ["sim_time": 2.5, "tick": 150], simTime: 2.5))
        let speak = try XCTUnwrap(EngineDriver.committed(d.submit("ann", .speak, ["text": "hi"], req: "s1", advance: 7)).first)
        XCTAssertEqual(speak.simTime, 2.5, "an intent is stamped with the engine's time, not the host's")
        XCTAssertEqual(d.engine.world.simTime, 2.5)
        // A restored engine (the orchestrator after a restart, no game engine needed) goes on from
        // the logged clock: its next intent is stamped 2.5 too, not 0.
        var restored = EngineDriver(config: config)
        restored.now = d.now
        try restored.engine.restore(from: d.committed, at: d.now)
        XCTAssertEqual(restored.engine.world.digest, d.engine.world.digest)
        restored.register("ann", at: nil)
        XCTAssertEqual(EngineDriver.committed(restored.submit("ann", .speak, ["text": "again"], req: "s2")).first?.simTime, 2.5)
    }
}
