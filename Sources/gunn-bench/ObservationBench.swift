import Foundation
import GunnCore

/// `gunn-bench observe`: effects committed with delta computation for every observer, in a 2D
/// world of 10,000 entities (1,000 x 1,000, observers see 50 around them), for 10 and for 1,000
/// agents; then delivery (patch applied to the delivered view + its context digest).
enum ObservationBench {
    struct Figures: Codable {
        var agents: Int
        var entities: Int
        var effects: Int
        var effectsPerSecond: Double
        var commitWithDeltasP50Micros: Double
        var commitWithDeltasP99Micros: Double
        var deltasPerEffect: Double
        var deliveryP50Micros: Double
        var deliveryP99Micros: Double
    }

    static func run(agents: Int, entities: Int, effects: Int) -> Figures {
        var c = EngineBench.config(quantumMs: 0)
        c.spatialCellSize = 50
        var engine = Engine(config: c, worldID: "observe", worldSeed: 5)
        var rng = SplitMix64(seed: 5)
        var now: HostTime = 1
        let policy = ObservationPolicy(distanceLimit: 50, maxPendingObservations: 1 << 16)
        let ids = (0..<agents).map { AgentID("agent-\($0)") }
        for id in ids {
            let p = Position(x: Double(rng.next(below: 1000)), y: Double(rng.next(below: 1000)))
            _ = engine.handle(.registerAgent(AgentRegistration(agentID: id, spawn: p, observation: policy)), at: now)
        }
        for e in 0..<(entities - agents) {
            _ = engine.handle(.emit(EffectDraft(kind: "EntityUpsert", payload: ["id": .string("e\(e)"),
                "entity": ["pos": [.number(Double(rng.next(below: 1000))), .number(Double(rng.next(below: 1000)))], "kind": "tree", "hp": 10]], sourceID: "setup")), at: now)
        }
        for id in ids { _ = engine.resync(id) }
        let clock = ContinuousClock()
        var commit: [Double] = [], delivery: [Double] = []
        var deltas = 0
        let start = clock.now
        var deliveryTotal = 0.0
        for k in 0..<effects {
            // Something moves a short way: an agent (its own view changes) or another entity.
            let mover = k % 4 == 0 ? ids[Int(rng.next(below: UInt64(agents)))].rawValue : "e\(rng.next(below: UInt64(entities - agents)))"
            let draft = EffectDraft(kind: "Move", payload: ["agent_id": .string(mover),
                "to": [.number(Double(rng.next(below: 1000))), .number(Double(rng.next(below: 1000)))]], sourceID: "physics")
            now += 0.000_01
            let t0 = clock.now
            let out = engine.handle(.emit(draft), at: now)
            commit.append(EngineBench.seconds(clock.now - t0))
            for o in out { if case .observationQueued = o { deltas += 1 } }
            if k % 64 == 63 || k == effects - 1 {
                let d0 = clock.now
                for id in ids {
                    while true {
                        let t = clock.now
                        guard engine.nextObservation(for: id, at: now) != nil else { break }
                        delivery.append(EngineBench.seconds(clock.now - t))
                    }
                }
                deliveryTotal += EngineBench.seconds(clock.now - d0)
            }
        }
        let total = EngineBench.seconds(clock.now - start) - deliveryTotal
        commit.sort(); delivery.sort()
        func pct(_ a: [Double], _ p: Int) -> Double { a.isEmpty ? 0 : a[min(a.count - 1, a.count * p / 100)] * 1e6 }
        return Figures(agents: agents, entities: entities, effects: effects, effectsPerSecond: Double(effects) / total,
                       commitWithDeltasP50Micros: pct(commit, 50), commitWithDeltasP99Micros: pct(commit, 99),
                       deltasPerEffect: Double(deltas) / Double(effects), deliveryP50Micros: pct(delivery, 50), deliveryP99Micros: pct(delivery, 99))
    }

    static func run(arguments: [String]) -> [Figures] {
        print("observe: effects committed with per-observer RFC 6902 deltas (2D world 1000x1000, 10,000 entities, view radius 50)")
        print("  upstream (BASELINE.md): observation delivery, 10 agents, in one process: p50 630 us, p99 1450 us, ~1,130 events/s")
        var all: [Figures] = []
        var shapes = [10, 1000]
        if let i = arguments.firstIndex(of: "--agents"), i + 1 < arguments.count, let n = Int(arguments[i + 1]) { shapes = [n] }
        for agents in shapes {
            let f = run(agents: agents, entities: 10_000, effects: 20_000)
            all.append(f)
            print(String(format: "  %4d agents: %8.0f effects/s   commit+deltas p50 %6.1f us  p99 %6.1f us   %.2f deltas/effect   delivery (apply+digest) p50 %5.1f us  p99 %6.1f us",
                         f.agents, f.effectsPerSecond, f.commitWithDeltasP50Micros, f.commitWithDeltasP99Micros, f.deltasPerEffect,
                         f.deliveryP50Micros, f.deliveryP99Micros))
        }
        return all
    }
}
