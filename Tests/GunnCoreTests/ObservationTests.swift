import XCTest
@testable import GunnCore
import GunnCrypto

/// Partial observation, deltas and per-agent delivery.
final class ObservationTests: XCTestCase {
    func observers(_ out: [EngineOutput]) -> [AgentID] {
        out.compactMap { if case let .observationQueued(a, _, _, _) = $0 { return a } else { return nil } }
    }

    func register(_ d: inout EngineDriver, _ id: AgentID, _ x: Double, _ y: Double, _ policy: ObservationPolicy = ObservationPolicy()) {
        d.handle(.registerAgent(AgentRegistration(agentID: id, spawn: Position(x: x, y: y), observation: policy)))
    }

    func testAgentOutOfRangeOfAMoveGetsNoDelta() throws {
        var d = EngineDriver()
        register(&d, "near", 0, 0, ObservationPolicy(distanceLimit: 5))
        register(&d, "walker", 100, 0)
        let start = d.engine.resync("near")!
        XCTAssertNil(start.entities["walker"])
        XCTAssertTrue(observers(d.submit("walker", .move, ["to": [101, 0]], req: "m1")).allSatisfy { $0 != "near" })
        XCTAssertNil(d.engine.nextObservation(for: "near", at: d.now))
        // Walking into range: an add of the entity it did not have.
        XCTAssertTrue(observers(d.submit("walker", .move, ["to": [3, 0]], req: "m2")).contains("near"))
        let delta = try XCTUnwrap(d.engine.nextObservation(for: "near", at: d.now))
        XCTAssertEqual(delta.patches.operations.count, 1)
        guard case .add(let path, _) = delta.patches.operations[0] else { return XCTFail("\(delta.patches.json)") }
        XCTAssertEqual(path.description, "/entities/walker")
        let view = try delta.patches.apply(to: start.document)
        XCTAssertEqual(view, d.engine.filteredView(of: "near"))
        // And out again: a remove.
        _ = d.submit("walker", .move, ["to": [50, 0]], req: "m3")
        let gone = try XCTUnwrap(d.engine.nextObservation(for: "near", at: d.now))
        XCTAssertEqual(gone.patches.operations, [.remove(path: try JSONPointer("/entities/walker"))])
    }

    func testAMoveTouchesOnlyAgentsNearItsOldAndNewPositions() {
        var c = EngineDriver.immediate()
        c.spatialCellSize = 10
        var d = EngineDriver(config: c)
        // 100 agents on a 10 x 10 lattice 100 apart, each seeing 15 around it.
        for i in 0..<100 { register(&d, AgentID("a\(i)"), Double(i % 10) * 100, Double(i / 10) * 100, ObservationPolicy(distanceLimit: 15)) }
        register(&d, "mover", 500, 510)
        // From near a55 (500, 500) to near a0 (0, 0): exactly those two agents and the mover observe it.
        let out = d.submit("mover", .move, ["to": [5, 5]], req: "m")
        XCTAssertEqual(Set(observers(out)), ["a55", "a0", "mover"])
    }

    func testAgentWithoutARelationshipDoesNotSeeTheRelatedEntity() throws {
        var d = EngineDriver()
        register(&d, "spy", 0, 0, ObservationPolicy(requireRelationship: true))
        register(&d, "other", 1, 0)
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "vault", "entity": ["pos": [1, 1]]], sourceID: "world")))
        let start = d.engine.resync("spy")!
        XCTAssertEqual(start.entities.sortedKeys, ["spy"])
        XCTAssertNil(d.engine.view(of: "spy")?.entities["vault"])
        XCTAssertNotNil(d.engine.view(of: "other")?.entities["vault"], "others without the filter see it")
        // A relationship makes it visible; removing it hides it again.
        d.handle(.emit(EffectDraft(kind: "RelationshipSet", payload: ["from": "spy", "to": "vault", "value": "knows"], sourceID: "world")))
        var view = start.document
        while let delta = d.engine.nextObservation(for: "spy", at: d.now) { view = try delta.patches.apply(to: view) }
        XCTAssertNotNil(view["entities"]?["vault"])
        XCTAssertEqual(view["relationships"]?["spy"]?["vault"], "knows")
        d.handle(.emit(EffectDraft(kind: "RelationshipRemove", payload: ["from": "spy", "to": "vault"], sourceID: "world")))
        while let delta = d.engine.nextObservation(for: "spy", at: d.now) { view = try delta.patches.apply(to: view) }
        XCTAssertNil(view["entities"]?["vault"])
        XCTAssertEqual(view, d.engine.filteredView(of: "spy"))
    }

    func testHiddenFieldsNeverAppearInAViewOrDelta() throws {
        var c = EngineDriver.immediate()
        c.quantumMs = 0
        let world = LocalWorld(engine: Engine(config: c, worldID: "w", worldSeed: 3), clock: ManualClock(1))
        world.handle(.registerAgent(AgentRegistration(agentID: "blind", spawn: Position(x: 0, y: 0), observation: ObservationPolicy(hiddenFields: ["secret", "hp"]))))
        world.handle(.registerAgent(AgentRegistration(agentID: "seer", spawn: Position(x: 1, y: 0))))
        let blind = AgentHandle(agentID: "blind", world: world)
        let messages = MessageFacade(world: world)
        messages.subscribe("blind")
        var view = try XCTUnwrap(blind.resync()).document
        messages.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "chest", "entity": ["pos": [1, 1], "secret": "gold", "hp": 3, "name": "chest"]], sourceID: "world"))
        messages.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "chest", "entity": ["pos": [1, 2], "secret": "more gold", "hp": 2, "name": "chest"]], sourceID: "world"))
        var deltas = 0
        while let delta = blind.nextObservation() {
            deltas += 1
            let text = CanonicalJSON.encodeString(delta.patches.json)
            XCTAssertFalse(text.contains("gold") || text.contains("\"hp\""), text)
            view = try delta.patches.apply(to: view)
        }
        XCTAssertEqual(deltas, 2)
        XCTAssertEqual(view["entities"]?["chest"], ["pos": [1, 2, 0], "name": "chest", "id": "chest"])
        XCTAssertFalse(CanonicalJSON.encodeString(world.withEngine { $0.view(of: "blind")!.json }).contains("gold"))
        XCTAssertEqual(world.withEngine { $0.view(of: "seer")?.entities["chest"]?["secret"] }, "more gold")
        for m in messages.messages(for: "blind") { XCTAssertFalse(CanonicalJSON.encodeString(m.payload).contains("gold")) }
    }

    func testLatencyDelaysOneAgentWithoutDelayingAnother() throws {
        var d = EngineDriver()
        register(&d, "slow", 0, 0, ObservationPolicy(latency: LatencyModel(baseMs: 100)))
        register(&d, "fast", 1, 0)
        _ = d.engine.resync("slow"); _ = d.engine.resync("fast")
        let out = d.submit("fast", .move, ["to": [2, 0]], req: "m")
        let slowAt = out.compactMap { if case let .observationQueued("slow", _, _, at) = $0 { return at } else { return nil } }.first
        XCTAssertEqual(slowAt, d.now + 0.1)
        XCTAssertNotNil(d.engine.nextObservation(for: "fast", at: d.now))
        XCTAssertNil(d.engine.nextObservation(for: "slow", at: d.now + 0.05))
        XCTAssertNotNil(d.engine.nextObservation(for: "slow", at: d.now + 0.1))
    }

    func testDeliveryQueueIsBoundedAndCollapsesIntoAWholeView() throws {
        var d = EngineDriver()
        register(&d, "idle", 0, 0, ObservationPolicy(maxPendingObservations: 3))
        register(&d, "busy", 1, 0)
        let start = d.engine.resync("idle")!
        for i in 0..<20 {
            _ = d.submit("busy", .move, ["to": [.number(Double(i % 5)), 0]], req: ReqID("m\(i)"))
            XCTAssertLessThanOrEqual(d.engine.pendingObservations(of: "idle"), 3)
        }
        var view = start.document
        var last: ViewSeq = start.viewSeq
        while let delta = d.engine.nextObservation(for: "idle", at: d.now) {
            XCTAssertGreaterThan(delta.viewSeq, last)
            last = delta.viewSeq
            view = try delta.patches.apply(to: view)
        }
        XCTAssertEqual(view, d.engine.filteredView(of: "idle"))
        XCTAssertEqual(last, d.engine.viewSeq(of: "idle"))
    }

    /// Over the view cache's limit the least recently delivered views are evicted; an evicted
    /// agent's next delivery is its whole view (counted), and deltas follow again after it.
    func testTheViewCacheEvictsTheLeastRecentlyDeliveredAndTheNextDeliveryIsAWholeView() throws {
        var c = EngineDriver.immediate()
        c.memory = MemoryLimits(snapshots: 4, viewCacheBytes: 1, viewCacheCheckEvery: 1_000_000)
        var d = EngineDriver(config: c)
        register(&d, "old", 0, 0)
        register(&d, "recent", 1, 0)
        register(&d, "mover", 2, 0)
        var views: [AgentID: JSONValue] = [:]
        for a in ["old", "recent"] as [AgentID] { views[a] = d.engine.resync(a)!.document }
        _ = d.submit("mover", .move, ["to": [3, 0]], req: "m0")
        for a in ["recent"] as [AgentID] { while let o = d.engine.nextObservation(for: a, at: d.now) { views[a] = try o.patches.apply(to: views[a]!) } }
        // "old" was delivered least recently: with room for one view, it goes first.
        let bytesOfRecent = d.engine.view(of: "recent")!.document.estimatedBytes
        d.engine.evictViewCache(downTo: bytesOfRecent * 3 / 2)
        XCTAssertEqual(d.engine.memory.viewsEvicted, 2, "mover (never delivered since registering), then old")
        _ = d.submit("mover", .move, ["to": [4, 0]], req: "m1")
        for a in ["old", "recent"] as [AgentID] {
            var deltas: [ObservationDelta] = []
            while let o = d.engine.nextObservation(for: a, at: d.now) { deltas.append(o); views[a] = try o.patches.apply(to: views[a]!) }
            XCTAssertEqual(views[a], d.engine.filteredView(of: a))
            XCTAssertEqual(deltas.count, 1)
            XCTAssertEqual(JSONDiff.isWholeReplace(deltas[0].patches), a == "old", "\(a)")
        }
        XCTAssertEqual(d.engine.memoryGauges.first { $0.name == "whole_views_after_eviction" }?.value, 1)
        // After its whole view, "old" gets deltas again.
        _ = d.submit("mover", .move, ["to": [5, 0]], req: "m2")
        let next = try XCTUnwrap(d.engine.nextObservation(for: "old", at: d.now))
        XCTAssertFalse(JSONDiff.isWholeReplace(next.patches))
        XCTAssertEqual(try next.patches.apply(to: views["old"]!), d.engine.filteredView(of: "old"))
        // The engine's own check evicts over the configured limit (1 byte: every view).
        var e = EngineDriver(config: { var k = c; k.memory.viewCacheCheckEvery = 1; return k }())
        register(&e, "a", 0, 0)
        register(&e, "b", 1, 0)
        XCTAssertGreaterThanOrEqual(e.engine.memory.viewsEvicted, 1)
        XCTAssertEqual(e.engine.memoryGauges.first { $0.name == "view_cache_bytes" }?.limit, 1)
    }

    func testLargeChangesBecomeAWholeViewAboveMaxPatchOps() throws {
        var d = EngineDriver()
        register(&d, "watcher", 0, 0, ObservationPolicy(maxPatchOps: 2))
        let start = d.engine.resync("watcher")!
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "box", "entity": ["pos": [1, 1], "a": 1, "b": 2, "c": 3]], sourceID: "w")))
        _ = try XCTUnwrap(d.engine.nextObservation(for: "watcher", at: d.now))
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "box", "entity": ["pos": [1, 1], "a": 9, "b": 8, "c": 7]], sourceID: "w")))
        let big = try XCTUnwrap(d.engine.nextObservation(for: "watcher", at: d.now))
        XCTAssertTrue(JSONDiff.isWholeReplace(big.patches))
        XCTAssertEqual(try big.patches.apply(to: start.document), d.engine.filteredView(of: "watcher"))
    }

    func testViewDigestIsSHA256OfCanonicalView() {
        var d = EngineDriver()
        register(&d, "a", 0, 0)
        let v = d.engine.view(of: "a")!
        XCTAssertEqual(v.contextDigest, SHA256.hash(CanonicalJSON.encode(v.document)).hex)
        XCTAssertEqual(v.document, d.engine.filteredView(of: "a"))
    }
}

final class ObservationPolicyTests: XCTestCase {
    func testFilterAndShouldObserveAgreeWithTheEngine() throws {
        var d = EngineDriver()
        let policy = ObservationPolicy(distanceLimit: 5, hiddenFields: ["hp"])
        d.handle(.registerAgent(AgentRegistration(agentID: "a", spawn: Position(x: 0, y: 0), observation: policy)))
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "rock", "entity": ["pos": [3, 0], "hp": 9]], sourceID: "w")))
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "far", "entity": ["pos": [30, 0]]], sourceID: "w")))
        let before = d.engine.world
        XCTAssertEqual(policy.filter(before, for: "a").document, d.engine.filteredView(of: "a"))
        XCTAssertNil(policy.filter(before, for: "a").entities["rock"]?["hp"])
        let farMove = d.handle(.emit(EffectDraft(kind: "Move", payload: ["agent_id": "far", "to": [31, 0]], sourceID: "w")))
        let farEffect = try XCTUnwrap(EngineDriver.entries(farMove).first?.effect)
        XCTAssertFalse(policy.shouldObserve(farEffect, agent: "a", before: before, after: d.engine.world))
        let mid = d.engine.world
        let nearMove = d.handle(.emit(EffectDraft(kind: "Move", payload: ["agent_id": "far", "to": [4, 0]], sourceID: "w")))
        let nearEffect = try XCTUnwrap(EngineDriver.entries(nearMove).first?.effect)
        XCTAssertTrue(policy.shouldObserve(nearEffect, agent: "a", before: mid, after: d.engine.world))
        XCTAssertTrue(nearMove.contains { if case .observationQueued(agent: "a", _, _, _) = $0 { return true } else { return false } })
    }
}

final class PolicyChangeTests: XCTestCase {
    func testReRegisteringWithANewPolicyDeliversTheNewViewWhole() throws {
        var d = EngineDriver()
        d.handle(.registerAgent(AgentRegistration(agentID: "a", spawn: Position(x: 0, y: 0))))
        d.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": "box", "entity": ["pos": [1, 1], "secret": "x"]], sourceID: "w")))
        let start = d.engine.resync("a")!
        XCTAssertEqual(start.entities["box"]?["secret"], "x")
        d.handle(.registerAgent(AgentRegistration(agentID: "a", spawn: nil, observation: ObservationPolicy(hiddenFields: ["secret"]))))
        let delta = try XCTUnwrap(d.engine.nextObservation(for: "a", at: d.now))
        XCTAssertEqual(delta.viewSeq, start.viewSeq + 1)
        let view = try delta.patches.apply(to: start.document)
        XCTAssertNil(view["entities"]?["box"]?["secret"])
        XCTAssertEqual(view, d.engine.filteredView(of: "a"))
    }
}
