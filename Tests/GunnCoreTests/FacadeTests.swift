import XCTest
@testable import GunnCore

final class FacadeTests: XCTestCase {
    func makeWorld(quantumMs: Double = 20) -> (LocalWorld, ManualClock) {
        var c = EngineDriver.immediate()
        c.quantumMs = quantumMs
        let clock = ManualClock(100)
        return (LocalWorld(engine: Engine(config: c, worldID: "w", worldSeed: 1), clock: clock), clock)
    }

    func testRLStepReturnsTheCommittedEffectFromTheLog() {
        let (world, _) = makeWorld()
        world.handle(.registerAgent(AgentRegistration(agentID: "rl", spawn: Position(x: 0, y: 0))))
        let rl = RLFacade(world: world)
        let v0 = rl.observe("rl")!
        XCTAssertEqual(v0.entities["rl"]?["pos"], [0, 0, 0])
        let result = rl.step(Intent(kind: .move, payload: ["to": [1, 2]], contextSeq: v0.viewSeq, reqID: "s1", agentID: "rl"))
        guard let effect = result.effect else { return XCTFail("\(result.outcome)") }
        let logged = world.withEngine { $0.log.entries.last!.effect }
        XCTAssertEqual(effect, logged)
        XCTAssertEqual(result.view?.entities["rl"]?["pos"], [1, 2, 0])
        XCTAssertEqual(result.view?.viewSeq, v0.viewSeq + 1)
        let bad = rl.step(Intent(kind: .move, payload: ["to": "nowhere"], contextSeq: result.view!.viewSeq, reqID: "s2", agentID: "rl"))
        XCTAssertEqual(bad.outcome.error?.code, .intentValidationFailed)
        XCTAssertNil(bad.effect)
    }

    func testMessageStreamsAreFilteredByKind() {
        let (world, clock) = makeWorld(quantumMs: 0)
        let messages = MessageFacade(world: world)
        messages.subscribe("listener", kinds: ["Speak"])
        messages.subscribe("all")
        world.handle(.registerAgent(AgentRegistration(agentID: "talker", spawn: Position(x: 0, y: 0))))
        let talker = AgentHandle(agentID: "talker", world: world)
        XCTAssertNotNil(talker.submitIntent(.speak, ["text": "hello"], reqID: "1")?.effect)
        clock.advance(by: 0.01)
        XCTAssertNotNil(talker.submitIntent(.move, ["to": [1, 1]], reqID: "2")?.effect)
        XCTAssertNil(messages.emit(EffectDraft(kind: "Speak", payload: ["agent_id": "narrator", "text": "meanwhile"], sourceID: "narrator")))
        XCTAssertEqual(messages.emit(EffectDraft(kind: "Nope", payload: [:], sourceID: "x"))?.code, .unknownEffectKind)
        XCTAssertEqual(messages.messages(for: "listener").map { $0.payload["text"] }, ["hello", "meanwhile"])
        XCTAssertEqual(messages.messages(for: "all").map(\.kind), ["EntityUpsert", "Speak", "Move", "Speak"])
        XCTAssertTrue(messages.messages(for: "listener").isEmpty, "drained")
    }

    func testAgentHandleSubmitCancelAndViewSeq() {
        let (world, clock) = makeWorld(quantumMs: 20)
        world.handle(.registerAgent(AgentRegistration(agentID: "h", spawn: Position(x: 0, y: 0))))
        let h = AgentHandle(agentID: "h", world: world)
        XCTAssertEqual(h.viewSeq, 1)
        XCTAssertNil(h.submitIntent(.speak, ["text": "a"], reqID: "1"), "queued until the quantum closes")
        XCTAssertNil(h.submitIntent(.speak, ["text": "b"], reqID: "2"))
        h.cancel("2")
        XCTAssertEqual(h.outcome(of: "2")?.error?.code, .generationCancelled)
        clock.advance(by: 0.05)
        world.handle(.flush)
        XCTAssertNotNil(h.outcome(of: "1")?.effect)
        XCTAssertEqual(h.viewSeq, 2)
    }
}
