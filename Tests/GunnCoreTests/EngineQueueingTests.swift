import XCTest
@testable import GunnCore

/// Backpressure policies, fairness and quantum ordering.
final class EngineQueueingTests: XCTestCase {
    func flooded(_ policy: BackpressurePolicy) -> (EngineDriver, [EngineOutput]) {
        var c = EngineDriver.immediate()
        c.quantumMs = 20
        c.maxIntentsPerQuantum = 2
        c.agentClasses["npc"] = BackpressureConfig(maxQueueDepth: 4, policy: policy, highWatermark: 3, lowWatermark: 1, maxDeferred: 3)
        var d = EngineDriver(config: c)
        d.now = 10.001
        d.register("f", at: nil, agentClass: "npc")
        var out: [EngineOutput] = []
        for i in 0..<10 {
            out += d.submit("f", .speak, ["text": .string("m\(i)")], req: ReqID("r\(i)"), context: 0)
            XCTAssertLessThanOrEqual(d.engine.queueDepth(of: "f"), 4 + 3, "queue bounded")
        }
        return (d, out)
    }

    func drain(_ d: inout EngineDriver) -> [EngineOutput] {
        var out: [EngineOutput] = []
        for _ in 0..<20 { out += d.handle(.flush, advance: 0.02) }
        return out
    }

    func texts(_ out: [EngineOutput]) -> [String] {
        EngineDriver.committed(out).compactMap { $0.payload["text"]?.stringValue }
    }

    func testDropNewestRefusesWhatArrivesAtAFullQueue() {
        var (d, out) = flooded(.dropNewest)
        XCTAssertEqual(EngineDriver.rejected(out).map(\.0), ["r4", "r5", "r6", "r7", "r8", "r9"])
        XCTAssertTrue(EngineDriver.rejected(out).allSatisfy { $0.1.code == .queueFull && $0.1.retryAfterMs != nil })
        XCTAssertTrue(out.contains(.backpressure(agent: "f", queueDepth: 3, high: true)))
        let served = drain(&d)
        XCTAssertEqual(texts(served), ["m0", "m1", "m2", "m3"])
        XCTAssertTrue(served.contains(.backpressure(agent: "f", queueDepth: 0, high: false)))
        XCTAssertEqual(d.engine.queueDepth(of: "f"), 0)
    }

    func testShedOldestRefusesTheOldestQueuedAndKeepsTheNewest() {
        var (d, out) = flooded(.shedOldest)
        XCTAssertEqual(EngineDriver.rejected(out).map(\.0), ["r0", "r1", "r2", "r3", "r4", "r5"])
        XCTAssertEqual(texts(drain(&d)), ["m6", "m7", "m8", "m9"])
        // A shed id is free again: retrying it executes.
        let retry = d.submit("f", .speak, ["text": "m0"], req: "r0", context: 0)
        XCTAssertEqual(texts(retry + drain(&d)), ["m0"])
    }

    func testDeferHoldsOverflowBoundedAndServesItLater() {
        var (d, out) = flooded(.defer)
        let deferred = out.compactMap { if case .intentDeferred(_, let r) = $0 { return r } else { return nil } }
        XCTAssertEqual(deferred, ["r4", "r5", "r6"])
        XCTAssertEqual(EngineDriver.rejected(out).map(\.0), ["r7", "r8", "r9"], "the overflow list is bounded too")
        XCTAssertEqual(texts(drain(&d)), ["m0", "m1", "m2", "m3", "m4", "m5", "m6"])
    }

    func testWeightedRoundRobinSharesEachQuantumByWeight() {
        var c = EngineDriver.immediate()
        c.quantumMs = 20
        c.maxIntentsPerQuantum = 6
        var d = EngineDriver(config: c)
        d.now = 10.001
        d.register("heavy", at: nil, weight: 2)
        d.register("light", at: nil, weight: 1)
        d.register("flood", at: nil, weight: 1)
        for i in 0..<30 { d.submit("flood", .speak, ["text": "f"], req: ReqID("f\(i)"), context: 0) }
        for i in 0..<6 { d.submit("heavy", .speak, ["text": "h"], req: ReqID("h\(i)"), context: 0) }
        for i in 0..<6 { d.submit("light", .speak, ["text": "l"], req: ReqID("l\(i)"), context: 0) }
        let first = d.handle(.flush, advance: 0.02)
        let bySource = Dictionary(grouping: EngineDriver.committed(first), by: \.sourceID).mapValues(\.count)
        // Per round: flood 1, heavy 2, light 1 (id order); budget 6 = one round of 4, then flood 1 and heavy 1.
        // The flooding agent gets no more than its weight's share however much it queued.
        XCTAssertEqual(bySource, ["heavy": 3, "flood": 2, "light": 1])
        XCTAssertTrue(first.contains { if case .wakeAt = $0 { return true } else { return false } }, "work left: the next quantum is scheduled")
    }

    /// Builds the same quantum's inputs in the given order and returns the log.
    func runQuantum(order: [Int]) -> [UInt8] {
        var c = EngineDriver.immediate()
        c.quantumMs = 20
        var d = EngineDriver(config: c, seed: 99)
        d.now = 5.0
        for id in ["a", "b", "c"] as [AgentID] { d.register(id, at: Position(x: 0, y: 0)) }
        d.now = 6.0 // a fresh quantum [6.00, 6.02)
        let inputs: [EngineInput] = [
            .submitIntent(d.intent("a", .move, ["to": [1, 1]], req: "a1")),
            .submitIntent(d.intent("b", .speak, ["text": "hi"], req: "b1", priority: 5)),
            .submitIntent(d.intent("c", .move, ["to": [2, 2]], req: "c1")),
            .submitIntent(d.intent("a", .speak, ["text": "yo"], req: "a2")),
            .emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "tree", "entity": ["pos": [9, 9]]], sourceID: "unity")),
            .emit(EffectDraft(kind: "Collision", payload: ["a": "a", "b": "c"], sourceID: "unity", priority: 1)),
            .emit(EffectDraft(kind: "TimeTick", payload: ["sim_time": 6.01], sourceID: "clock", simTime: 6.005)),
        ]
        for (k, i) in order.enumerated() { d.handle(inputs[i], advance: k == 0 ? 0 : 0.001) }
        d.handle(.flush, advance: 0.05)
        XCTAssertEqual(d.engine.headSeq, 3 + 7)
        return d.logBytes
    }

    func testInputsWithinOneQuantumInAnyOrderProduceTheSameLog() {
        let reference = runQuantum(order: Array(0..<7))
        var rng = SplitMix64(seed: 3)
        for _ in 0..<50 {
            var order = Array(0..<7)
            for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, Int(rng.next(below: UInt64(i + 1)))) }
            XCTAssertEqual(runQuantum(order: order), reference, "order \(order)")
        }
    }

    func testQuantumOrderIsSimTimeThenPriorityThenSource() throws {
        var c = EngineDriver.immediate()
        c.quantumMs = 20
        var d = EngineDriver(config: c)
        d.now = 1.0
        d.register("a", at: nil); d.register("b", at: nil)
        d.now = 2.0
        d.submit("b", .speak, ["text": "b-low"], req: "1")
        d.submit("a", .speak, ["text": "a-low"], req: "2")
        d.submit("b", .speak, ["text": "b-high"], req: "3", priority: 9)
        d.handle(.emit(EffectDraft(kind: "TimeTick", payload: ["sim_time": 1.5], sourceID: "z", simTime: 1.5)))
        let out = d.handle(.flush, advance: 0.1)
        let kinds = EngineDriver.entries(out).map { $0.effect.payload["text"]?.stringValue ?? $0.effect.kind }
        XCTAssertEqual(kinds, ["TimeTick", "b-high", "a-low", "b-low"])
        XCTAssertEqual(EngineDriver.entries(out).map(\.globalSeq), [1, 2, 3, 4])
    }
}
